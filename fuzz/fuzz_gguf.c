/* fuzz_gguf.c: libFuzzer harness for the GGUF reader.
 *
 * Parses arbitrary bytes; when they pass validation, walks every metadata
 * value (arrays recursively, as the binding does), touches the first and last
 * byte of every tensor and dequantises the first row of each tensor of a type
 * the engine computes with. ASan / UBSan turn any read past the buffer or any
 * undefined arithmetic into a crash.
 *
 *   fuzz/build_gguf.sh && ./build/fuzz_gguf -max_total_time=600 build/corpus fuzz/seeds_gguf
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quants.h"

static volatile uint64_t sink;

static void walk(const ecm_gguf_value *v, int depth) {
    switch (v->type) {
    case ECM_GGUF_STRING:
        if (v->v.str.len) sink += (uint8_t)v->v.str.ptr[0] + (uint8_t)v->v.str.ptr[v->v.str.len - 1];
        break;
    case ECM_GGUF_ARRAY: {
        const uint8_t *p = v->v.arr.data;
        size_t left = v->v.arr.nbytes;
        for (uint64_t i = 0; i < v->v.arr.count; i++) {
            ecm_gguf_value item;
            size_t used = 0;
            if (ecm_gguf_value_read(&item, v->v.arr.elem_type, p, left, &used, depth + 1) != ECM_OK) abort();
            if (used > left) abort();
            walk(&item, depth + 1);
            p += used;
            left -= used;
        }
        if (left != 0) abort(); /* the recorded span must be exact */
        break;
    }
    default: sink += v->v.u64; break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy so that ASan sees the exact buffer bounds. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    ecm_gguf g;
    if (ecm_gguf_parse(&g, buf, size) == ECM_OK) {
        for (int64_t i = 0; i < g.n_kv; i++) {
            if (g.kv[i].key.len) sink += (uint8_t)g.kv[i].key.ptr[g.kv[i].key.len - 1];
            walk(&g.kv[i].value, 0);
        }
        for (int64_t i = 0; i < g.n_tensors; i++) {
            const ecm_gguf_tensor *t = &g.tensors[i];
            const uint8_t *p = ecm_gguf_tensor_data(&g, i);
            if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
            if (ecm_gguf_find_tensor(&g, t->name) != i) abort();
            int K = (int)t->ne[0];
            if (ecm_type_traits_get(t->type) && t->nbytes && K > 0 && K <= 4096 &&
                ecm_quant_row_bytes(t->type, K) <= t->nbytes) {
                float *row = malloc((size_t)K * sizeof(float));
                if (row && ecm_dequantize_row(row, p, t->type, K) == ECM_OK) sink += row[0] != 0.0f;
                free(row);
            }
        }
        int64_t v;
        ecm_gguf_get_int(&g, "general.alignment", &v);
        ecm_gguf_free(&g);
    }
    free(buf);
    return 0;
}
