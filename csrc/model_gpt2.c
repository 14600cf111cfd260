/* model_gpt2.c: the GPT-2 decoder. Learned positions, pre-LayerNorm,
 * GELU-tanh MLP, fused qkv, lm_head tied to the token embedding (the Python
 * layer hands the same table to both slots). Composition of kernels only. */
#include "model.h"

#include <string.h>

ecm_status ecm_gpt2_forward(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, HD = c->head_dim, F = c->d_ff, R = b->R;
    int KVD = NH * HD, QKV = 3 * KVD;
    size_t n = (size_t)R * (2 * C + QKV + KVD + F);
    float *x = ecm_scratch(ECM_SCRATCH_ACT, n * sizeof(float)); /* (R, C) residual stream */
    if (!x) return ECM_ERR_NOMEM;
    float *xn = x + (size_t)R * C;           /* (R, C) normalised */
    float *qkv = xn + (size_t)R * C;         /* (R, QKV) */
    float *att = qkv + (size_t)R * QKV;      /* (R, NH*HD) */
    float *h = att + (size_t)R * KVD;        /* (R, F) */

    for (int r = 0; r < R; r++) { /* x = wte[ids] + wpe[pos] */
        const float *pe = m->pos_embd + (size_t)b->pos[r] * C;
        ecm_model_token_row(x + (size_t)r * C, m, ids[r]);
        for (int i = 0; i < C; i++) x[(size_t)r * C + i] += pe[i];
    }
    ecm_status st = ECM_OK;
    for (int l = 0; l < c->n_layer && st == ECM_OK; l++) {
        const ecm_layer *ly = &m->layers[l];
        ecm_layernorm_forward(xn, x, ly->attn_norm_w, ly->attn_norm_b, R, C, c->norm_eps);
        if (st == ECM_OK) st = ecm_linear_forward(qkv, xn, &ly->qkv, R, 0);
        if (st == ECM_OK) st = ecm_batch_attention(b, l, att, KVD, qkv, QKV, KVD, 2 * KVD, NH, NH, HD);
        if (st == ECM_OK) st = ecm_linear_forward(x, att, &ly->proj, R, 1); /* x += att @ Wo^T + bo */
        ecm_layernorm_forward(xn, x, ly->ffn_norm_w, ly->ffn_norm_b, R, C, c->norm_eps);
        if (st == ECM_OK) st = ecm_linear_forward(h, xn, &ly->up, R, 0);
        ecm_gelu_tanh_forward(h, h, (size_t)R * F);
        if (st == ECM_OK) st = ecm_linear_forward(x, h, &ly->down, R, 1);   /* x += gelu(...) @ Wd^T + bd */
    }
    if (st == ECM_OK) {
        int rows = all ? R : b->n_seq;
        if (!all) /* the last token of each sequence, gathered into xn's rows */
            for (int s = 0; s < b->n_seq; s++)
                memcpy(xn + (size_t)s * C, x + (size_t)(b->seq_start[s + 1] - 1) * C, (size_t)C * sizeof(float));
        ecm_layernorm_forward(xn, all ? x : xn, m->norm_w, m->norm_b, rows, C, c->norm_eps);
        st = ecm_linear_forward(logits, xn, &m->lm_head, rows, 0);
    }
    return st;
}
