/* model_llama.c: the Llama decoder (SmolLM2, TinyLlama, Llama 3 shapes).
 * RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP with gate
 * and up fused into one (2F, C) matrix, tied or untied lm_head.
 * Composition of kernels only. */
#include "model.h"

#include <string.h>

ecm_status ecm_llama_forward(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim, F = c->d_ff;
    int R = b->R, QD = NH * HD, KVD = NKV * HD, QKV = QD + 2 * KVD;
    size_t n = (size_t)R * (2 * C + QKV + QD + 3 * F);
    float *x = ecm_scratch(ECM_SCRATCH_ACT, n * sizeof(float)); /* (R, C) residual stream */
    if (!x) return ECM_ERR_NOMEM;
    float *xn = x + (size_t)R * C;      /* (R, C) */
    float *qkv = xn + (size_t)R * C;    /* (R, QKV): q | k | v */
    float *att = qkv + (size_t)R * QKV; /* (R, QD) */
    float *gu = att + (size_t)R * QD;   /* (R, 2F): gate | up */
    float *h = gu + (size_t)R * 2 * F;  /* (R, F) */

    for (int r = 0; r < R; r++) ecm_model_token_row(x + (size_t)r * C, m, ids[r]);
    ecm_status st = ECM_OK;
    for (int l = 0; l < c->n_layer && st == ECM_OK; l++) {
        const ecm_layer *ly = &m->layers[l];
        ecm_rmsnorm_forward(xn, x, ly->attn_norm_w, R, C, c->norm_eps);
        if (st == ECM_OK) st = ecm_linear_forward(qkv, xn, &ly->qkv, R, 0);
        ecm_rope_forward(qkv, QKV, b->pos, m->inv_freq, R, NH, HD, c->rope_interleaved);       /* q */
        ecm_rope_forward(qkv + QD, QKV, b->pos, m->inv_freq, R, NKV, HD, c->rope_interleaved); /* k */
        if (st == ECM_OK) st = ecm_batch_attention(b, l, att, QD, qkv, QKV, QD, QD + KVD, NH, NKV, HD);
        if (st == ECM_OK) st = ecm_linear_forward(x, att, &ly->proj, R, 1);   /* x += att @ Wo^T */
        ecm_rmsnorm_forward(xn, x, ly->ffn_norm_w, R, C, c->norm_eps);
        if (st == ECM_OK) st = ecm_linear_forward(gu, xn, &ly->up, R, 0);
        ecm_swiglu_forward(h, gu, R, F);
        if (st == ECM_OK) st = ecm_linear_forward(x, h, &ly->down, R, 1);     /* x += swiglu @ Wd^T */
    }
    if (st == ECM_OK) {
        int rows = all ? R : b->n_seq;
        if (!all) /* the last token of each sequence, gathered into xn's rows */
            for (int s = 0; s < b->n_seq; s++)
                memcpy(xn + (size_t)s * C, x + (size_t)(b->seq_start[s + 1] - 1) * C, (size_t)C * sizeof(float));
        ecm_rmsnorm_forward(xn, all ? x : xn, m->norm_w, rows, C, c->norm_eps);
        st = ecm_linear_forward(logits, xn, &m->lm_head, rows, 0);
    }
    return st;
}
