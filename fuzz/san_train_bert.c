/* san_train_bert.c: a sanitizer smoke run of the bert classifier trainer
 * (train_bert.c, the masked training attention, GELU-erf backward, LoRA over
 * bert) with no Python in the way. Built with ASan + UBSan by
 * fuzz/build_san_train_bert.sh; exits non-zero on any failed check.
 *
 * Covers: full fine-tuning (3 classes) and regression (1 output) with
 * right padding down to a 1-token row, multi-label, LoRA with dropout and
 * hidden dropout, re-planning for a
 * new batch shape, logits-only forwards, bad batches (every one must fail
 * cleanly), a batch large enough for the threaded paths of every kernel, and
 * 1 vs 2 threads giving the same bits.
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static float frand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 0x2545f4914f6cdd1dULL) >> 40) / 8388608.0f - 1.0f;
}

static int failures = 0;
#define CHECK(cond)                                                                                                   \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, ecm_last_error());           \
            failures++;                                                                                               \
        }                                                                                                             \
    } while (0)

static ecm_config bert_config(int C, int NH, int F, int V, int max_pos) {
    ecm_config c;
    memset(&c, 0, sizeof c);
    c.arch = ECM_ARCH_BERT;
    c.n_layer = 2;
    c.d_model = C;
    c.n_head = c.n_kv_head = NH;
    c.head_dim = C / NH;
    c.d_ff = F;
    c.vocab = V;
    c.max_pos = max_pos;
    c.type_vocab = 2;
    c.norm_eps = 1e-12f;
    return c;
}

/* Random weights (norm weights near 1), every tensor marked set. */
static void fill(ecm_train *tr) {
    rng_state = 0x12345678ULL;
    for (int i = 0; i < tr->n_tensors; i++) {
        ecm_ttensor *t = &tr->tensors[i];
        size_t n = (size_t)t->rows * (t->cols ? t->cols : 1);
        int norm = strstr(t->name, "norm.weight") != NULL;
        for (size_t j = 0; j < n; j++) t->p[j] = norm ? 1.0f + 0.1f * frand() : 0.1f * frand();
        t->set = 1;
    }
}

typedef struct {
    int B, T;
    int32_t *ids, *types, *labels;
    uint8_t *mask;
    float *values;
} batch;

static batch make_batch(int B, int T, int V, int NL) {
    batch b = {B, T, malloc((size_t)B * T * 4), malloc((size_t)B * T * 4), malloc((size_t)B * 4),
               malloc((size_t)B * T), malloc((size_t)B * 4)};
    for (int s = 0; s < B; s++) {
        int len = s == 0 ? T : s == 1 ? 1 : 1 + (int)((frand() + 1.0f) * 0.5f * (T - 1));
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)s * T + t;
            b.mask[i] = t < len;
            b.ids[i] = b.mask[i] ? (int32_t)((frand() + 1.0f) * 0.5f * (V - 1)) : 0;
            b.types[i] = b.mask[i] && t > len / 2;
        }
        b.labels[s] = s % NL;
        b.values[s] = frand() * 3.0f;
    }
    return b;
}

static void free_batch(batch *b) {
    free(b->ids);
    free(b->types);
    free(b->labels);
    free(b->mask);
    free(b->values);
}

/* A few optimizer steps; returns the last loss, copies the final parameters to out. */
static float hidden_dropout = 0.0f;

static float train_steps(int n_threads, const ecm_config *cfg, int NL, const ecm_lora_config *lora, const batch *b,
                         int steps, float *out, size_t *n_out) {
    ecm_train tr;
    ecm_status st = ecm_train_init_head(&tr, cfg, 0, NL, lora);
    CHECK(st == ECM_OK);
    if (st != ECM_OK) return NAN;
    tr.n_threads = n_threads;
    tr.hidden_dropout = hidden_dropout;
    fill(&tr);
    if (lora) /* B starts at zero: give the adapters something to do */
        for (int i = 0; i < tr.n_lora; i++)
            for (int j = 0; j < tr.lora[i].n * tr.lora[i].R; j++) tr.lora[i].B[j] = 0.05f * frand();
    CHECK(ecm_train_check_complete(&tr) == ECM_OK);
    ecm_adamw h = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f};
    float loss = NAN, norm;
    for (int s = 0; s < steps; s++) {
        ecm_train_zero_grad(&tr);
        CHECK(ecm_bert_train_forward(&tr, b->ids, b->types, b->mask, NL > 1 ? b->labels : NULL,
                                     NL == 1 ? b->values : NULL, b->B, b->T, &loss) == ECM_OK);
        CHECK(isfinite(loss));
        CHECK(ecm_train_backward(&tr, 1.0f) == ECM_OK);
        CHECK(ecm_train_step(&tr, &h, 1.0f, &norm) == ECM_OK);
    }
    /* logits only: no loss, and no backward after it */
    float l0 = 1.0f;
    CHECK(ecm_bert_train_forward(&tr, b->ids, NULL, b->mask, NULL, NULL, b->B, b->T, &l0) == ECM_OK && l0 == 0.0f);
    CHECK(ecm_train_backward(&tr, 1.0f) == ECM_ERR_STATE);
    size_t k = 0;
    for (int i = 0; i < tr.n_tensors; i++) {
        size_t n = (size_t)tr.tensors[i].rows * (tr.tensors[i].cols ? tr.tensors[i].cols : 1);
        ecm_train_export(&tr, i, out + k, 1);
        k += n;
    }
    *n_out = k;
    ecm_train_free(&tr);
    return loss;
}

static void bad_batches(const ecm_config *cfg) {
    ecm_train tr;
    CHECK(ecm_train_init_head(&tr, cfg, 0, 3, NULL) == ECM_OK);
    fill(&tr);
    batch b = make_batch(3, 6, cfg->vocab, 3);
    float loss;
    b.labels[1] = 3;
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 3, 6, &loss) == ECM_ERR_VALUE);
    b.labels[1] = 1;
    b.ids[4] = cfg->vocab;
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 3, 6, &loss) == ECM_ERR_VALUE);
    b.ids[4] = 0;
    b.types[2] = 2;
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 3, 6, &loss) == ECM_ERR_VALUE);
    b.types[2] = 0;
    b.mask[0] = 0; /* left padding */
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 3, 6, &loss) == ECM_ERR_VALUE);
    b.mask[0] = 1;
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 3, cfg->max_pos + 1, &loss) ==
          ECM_ERR_VALUE);
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 0, 6, &loss) == ECM_ERR_VALUE);
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, NULL, b.values, 3, 6, &loss) == ECM_ERR_VALUE);
    CHECK(ecm_train_forward(&tr, b.ids, b.ids, NULL, 3, 6, &loss) == ECM_ERR_STATE); /* the decoder entry */
    CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 3, 6, &loss) == ECM_OK);
    CHECK(ecm_train_backward(&tr, 1.0f) == ECM_OK);
    ecm_train_release_activations(&tr);
    /* a new shape re-plans the activations */
    batch b2 = make_batch(2, 4, cfg->vocab, 3);
    CHECK(ecm_bert_train_forward(&tr, b2.ids, NULL, NULL, b2.labels, NULL, 2, 4, &loss) == ECM_OK);
    CHECK(ecm_train_backward(&tr, 0.5f) == ECM_OK);
    free_batch(&b);
    free_batch(&b2);
    ecm_train_free(&tr);
    ecm_train t2;
    CHECK(ecm_train_init_head(&t2, cfg, 0, 0, NULL) == ECM_ERR_VALUE); /* bert needs a head */
}

int main(void) {
    static float p1[1 << 21], p2[1 << 21];
    size_t n1, n2;
    /* small: every shape edge (1-token rows, head_dim 8, 2 layers) */
    ecm_config small = bert_config(24, 3, 40, 50, 16);
    bad_batches(&small);
    batch b = make_batch(4, 9, small.vocab, 3);
    float a = train_steps(1, &small, 3, NULL, &b, 3, p1, &n1);
    float c = train_steps(2, &small, 3, NULL, &b, 3, p2, &n2);
    CHECK(a == c && n1 == n2 && !memcmp(p1, p2, n1 * 4));
    a = train_steps(1, &small, 1, NULL, &b, 3, p1, &n1); /* regression */
    c = train_steps(2, &small, 1, NULL, &b, 3, p2, &n2);
    CHECK(a == c && !memcmp(p1, p2, n1 * 4));
    ecm_lora_config lora = {4, 8.0f, 0.1f, 7, (1u << ECM_LORA_Q) | (1u << ECM_LORA_K) | (1u << ECM_LORA_V) |
                                                  (1u << ECM_LORA_O) | (1u << ECM_LORA_UP) | (1u << ECM_LORA_DOWN)};
    hidden_dropout = 0.1f; /* from here on */
    a = train_steps(1, &small, 3, &lora, &b, 3, p1, &n1);
    c = train_steps(2, &small, 3, &lora, &b, 3, p2, &n2);
    CHECK(a == c && !memcmp(p1, p2, n1 * 4));
    /* multi-label: (B, NL) targets in [0, 1], binary cross-entropy */
    {
        ecm_train tr;
        CHECK(ecm_train_init_head(&tr, &small, 0, 3, NULL) == ECM_OK);
        tr.multi_label = 1;
        tr.n_threads = 2;
        fill(&tr);
        float y[4 * 3], loss = 0.0f;
        for (int i = 0; i < 12; i++) y[i] = (float)(i % 3 == 0);
        CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, NULL, y, 4, 9, &loss) == ECM_OK && loss > 0.0f);
        CHECK(ecm_train_backward(&tr, 1.0f) == ECM_OK);
        y[5] = 1.5f;
        CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, NULL, y, 4, 9, &loss) == ECM_ERR_VALUE);
        CHECK(ecm_bert_train_forward(&tr, b.ids, b.types, b.mask, b.labels, NULL, 4, 9, &loss) == ECM_ERR_VALUE);
        ecm_train_free(&tr);
    }
    free_batch(&b);
    /* large enough for the threaded paths (B T C >= 32768) */
    ecm_config big = bert_config(64, 4, 128, 300, 80);
    batch bb = make_batch(8, 70, big.vocab, 2);
    a = train_steps(1, &big, 2, NULL, &bb, 2, p1, &n1);
    c = train_steps(2, &big, 2, NULL, &bb, 2, p2, &n2);
    CHECK(a == c && n1 == n2 && !memcmp(p1, p2, n1 * 4));
    free_batch(&bb);
    printf("san_train_bert: %s (last loss %.6f)\n", failures ? "FAILED" : "ok", (double)a);
    return failures != 0;
}
