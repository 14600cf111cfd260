/* model_llama.c: the Llama decoder (SmolLM2, TinyLlama, Llama 3 shapes).
 * RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP with gate
 * and up fused into one (2F, C) matrix, tied or untied lm_head.
 * Composition of kernels only. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ecm_status ecm_llama_forward(ecm_model *m, ecm_kvcache *cache, const int32_t *ids, int T, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim, F = c->d_ff, V = c->vocab;
    int QD = NH * HD, KVD = NKV * HD, QKV = QD + 2 * KVD, P = cache->n_past;
    size_t n = (size_t)T * (2 * C + QKV + QD + 3 * F);
    float *x = ecm_alloc(n * sizeof(float)); /* (T, C) residual stream */
    int32_t *pos = malloc((size_t)T * sizeof(int32_t));
    if (!x || !pos) {
        ecm_free(x);
        free(pos);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory for %d tokens", T);
    }
    float *xn = x + (size_t)T * C;      /* (T, C) */
    float *qkv = xn + (size_t)T * C;    /* (T, QKV): q | k | v */
    float *att = qkv + (size_t)T * QKV; /* (T, QD) */
    float *gu = att + (size_t)T * QD;   /* (T, 2F): gate | up */
    float *h = gu + (size_t)T * 2 * F;  /* (T, F) */
    for (int t = 0; t < T; t++) pos[t] = P + t;

    for (int t = 0; t < T; t++) memcpy(x + (size_t)t * C, m->tok_embd + (size_t)ids[t] * C, (size_t)C * sizeof(float));
    ecm_status st = ECM_OK;
    for (int l = 0; l < c->n_layer && st == ECM_OK; l++) {
        const ecm_layer *ly = &m->layers[l];
        float *kc = cache->k + ((size_t)l * cache->max_T) * KVD, *vc = cache->v + ((size_t)l * cache->max_T) * KVD;
        ecm_rmsnorm_forward(xn, x, ly->attn_norm_w, T, C, c->norm_eps);
        ecm_linear_forward(qkv, xn, &ly->qkv, T, 0);
        ecm_rope_forward(qkv, QKV, pos, m->inv_freq, T, NH, HD);       /* q */
        ecm_rope_forward(qkv + QD, QKV, pos, m->inv_freq, T, NKV, HD); /* k */
        for (int t = 0; t < T; t++) {
            memcpy(kc + (size_t)(P + t) * KVD, qkv + (size_t)t * QKV + QD, (size_t)KVD * sizeof(float));
            memcpy(vc + (size_t)(P + t) * KVD, qkv + (size_t)t * QKV + QD + KVD, (size_t)KVD * sizeof(float));
        }
        st = ecm_attention_forward(att, QD, qkv, QKV, kc, KVD, vc, KVD, NULL, T, P, NH, NKV, HD,
                                   1.0f / sqrtf((float)HD), 1);
        ecm_linear_forward(x, att, &ly->proj, T, 1);   /* x += att @ Wo^T */
        ecm_rmsnorm_forward(xn, x, ly->ffn_norm_w, T, C, c->norm_eps);
        ecm_linear_forward(gu, xn, &ly->up, T, 0);
        ecm_swiglu_forward(h, gu, T, F);
        ecm_linear_forward(x, h, &ly->down, T, 1);     /* x += swiglu @ Wd^T */
    }
    if (st == ECM_OK) {
        int rows = all ? T : 1;
        const float *src = all ? x : x + (size_t)(T - 1) * C;
        ecm_rmsnorm_forward(xn, src, m->norm_w, rows, C, c->norm_eps);
        ecm_matmul_packed(logits, V, xn, C, &m->lm_head.w, NULL, rows, 0);
    }
    free(pos);
    ecm_free(x);
    return st;
}
