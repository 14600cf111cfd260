/* model_bert.c: the BERT encoder. Word + position + token-type embeddings,
 * post-LayerNorm blocks, bidirectional attention within each sequence,
 * GELU-erf MLP. Sequences arrive packed: rows seq_start[s] .. seq_start[s+1]
 * of the (R, C) batch belong to sequence s, so the linear layers see all
 * tokens at once. Composition of kernels only. */
#include "model.h"

#include <math.h>

ecm_status ecm_bert_encode(ecm_model *m, const int32_t *ids, const int32_t *pos, const int32_t *types,
                           const int *seq_start, int n_seq, int R, float *x) {
    const ecm_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, HD = c->head_dim, F = c->d_ff;
    int QD = NH * HD, QKV = 3 * QD;
    float *qkv = ecm_scratch(ECM_SCRATCH_ACT, (size_t)R * (QKV + QD + F) * sizeof(float)); /* (R, QKV) */
    if (!qkv) return ECM_ERR_NOMEM;
    float *att = qkv + (size_t)R * QKV; /* (R, QD) */
    float *h = att + (size_t)R * QD;    /* (R, F) */

    for (int r = 0; r < R; r++) { /* x (R, C) = word + position + type embeddings */
        const float *we = m->tok_embd + (size_t)ids[r] * C, *pe = m->pos_embd + (size_t)pos[r] * C;
        const float *te = m->type_embd + (size_t)types[r] * C;
        for (int i = 0; i < C; i++) x[(size_t)r * C + i] = we[i] + pe[i] + te[i];
    }
    ecm_layernorm_forward(x, x, m->emb_norm_w, m->emb_norm_b, R, C, c->norm_eps);
    ecm_status st = ECM_OK;
    float scale = 1.0f / sqrtf((float)HD);
    for (int l = 0; l < c->n_layer && st == ECM_OK; l++) {
        const ecm_layer *ly = &m->layers[l];
        if (st == ECM_OK) st = ecm_linear_forward(qkv, x, &ly->qkv, R, 0);
        /* Many short sequences: one sequence per thread; few long ones:
         * each attention call parallelises over its heads instead. */
        int outer = n_seq > 1 && !ecm_in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (outer)
        for (int s = 0; s < n_seq; s++) {
            size_t r0 = (size_t)seq_start[s];
            int T = seq_start[s + 1] - seq_start[s];
            ecm_status st1 = ecm_attention_forward(att + r0 * QD, QD, qkv + r0 * QKV, QKV, qkv + r0 * QKV + QD, QKV,
                                                   qkv + r0 * QKV + 2 * QD, QKV, NULL, T, 0, NH, NH, HD, scale, 0);
            if (st1 != ECM_OK) {
#pragma omp critical(ecm_bert_status)
                st = st1;
            }
        }
        if (st == ECM_OK) st = ecm_linear_forward(x, att, &ly->proj, R, 1); /* x = LN(x + att @ Wo^T + bo) */
        ecm_layernorm_forward(x, x, ly->attn_out_norm_w, ly->attn_out_norm_b, R, C, c->norm_eps);
        if (st == ECM_OK) st = ecm_linear_forward(h, x, &ly->up, R, 0);
        ecm_gelu_erf_forward(h, h, (size_t)R * F);
        if (st == ECM_OK) st = ecm_linear_forward(x, h, &ly->down, R, 1);  /* x = LN(x + gelu(...) @ Wd^T + bd) */
        ecm_layernorm_forward(x, x, ly->ffn_out_norm_w, ly->ffn_out_norm_b, R, C, c->norm_eps);
    }
    return st;
}
