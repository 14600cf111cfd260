/* model_gpt2.c: the GPT-2 decoder. Learned positions, pre-LayerNorm,
 * GELU-tanh MLP, fused qkv, lm_head tied to the token embedding (the Python
 * layer hands the same table to both slots). Composition of kernels only. */
#include "model.h"

#include <math.h>
#include <string.h>

ecm_status ecm_gpt2_forward(ecm_model *m, ecm_kvcache *cache, const int32_t *ids, int T, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, HD = c->head_dim, F = c->d_ff, V = c->vocab;
    int QKV = 3 * NH * HD, KVD = NH * HD, P = cache->n_past;
    if (P + T > c->max_pos)
        return ecm_fail(ECM_ERR_VALUE, "position %d exceeds the model's %d learned positions", P + T - 1, c->max_pos);
    size_t n = (size_t)T * (2 * C + QKV + KVD + F);
    float *x = ecm_alloc(n * sizeof(float)); /* (T, C) residual stream */
    if (!x) return ECM_ERR_NOMEM;
    float *xn = x + (size_t)T * C;           /* (T, C) normalised */
    float *qkv = xn + (size_t)T * C;         /* (T, QKV) */
    float *att = qkv + (size_t)T * QKV;      /* (T, NH*HD) */
    float *h = att + (size_t)T * KVD;        /* (T, F) */

    for (int t = 0; t < T; t++) {
        const float *te = m->tok_embd + (size_t)ids[t] * C, *pe = m->pos_embd + (size_t)(P + t) * C;
        for (int i = 0; i < C; i++) x[(size_t)t * C + i] = te[i] + pe[i];
    }
    ecm_status st = ECM_OK;
    for (int l = 0; l < c->n_layer && st == ECM_OK; l++) {
        const ecm_layer *ly = &m->layers[l];
        float *kc = cache->k + ((size_t)l * cache->max_T) * KVD, *vc = cache->v + ((size_t)l * cache->max_T) * KVD;
        ecm_layernorm_forward(xn, x, ly->attn_norm_w, ly->attn_norm_b, T, C, c->norm_eps);
        ecm_linear_forward(qkv, xn, &ly->qkv, T, 0);
        for (int t = 0; t < T; t++) {
            memcpy(kc + (size_t)(P + t) * KVD, qkv + (size_t)t * QKV + KVD, (size_t)KVD * sizeof(float));
            memcpy(vc + (size_t)(P + t) * KVD, qkv + (size_t)t * QKV + 2 * KVD, (size_t)KVD * sizeof(float));
        }
        st = ecm_attention_forward(att, KVD, qkv, QKV, kc, KVD, vc, KVD, NULL, T, P, NH, NH, HD,
                                   1.0f / sqrtf((float)HD), 1);
        ecm_linear_forward(x, att, &ly->proj, T, 1); /* x += att @ Wo^T + bo */
        ecm_layernorm_forward(xn, x, ly->ffn_norm_w, ly->ffn_norm_b, T, C, c->norm_eps);
        ecm_linear_forward(h, xn, &ly->up, T, 0);
        ecm_gelu_tanh_forward(h, h, (size_t)T * F);
        ecm_linear_forward(x, h, &ly->down, T, 1);   /* x += gelu(...) @ Wd^T + bd */
    }
    if (st == ECM_OK) {
        int rows = all ? T : 1;
        const float *src = all ? x : x + (size_t)(T - 1) * C;
        ecm_layernorm_forward(xn, src, m->norm_w, m->norm_b, rows, C, c->norm_eps);
        ecm_matmul_packed(logits, V, xn, C, &m->lm_head.w, NULL, rows, 0);
    }
    ecm_free(x);
    return st;
}
