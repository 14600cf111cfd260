/* model_llama.c: the Llama decoder (SmolLM2, TinyLlama, Llama 3 shapes).
 * RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP with gate
 * and up fused into one (2F, C) matrix, tied or untied lm_head.
 * Composition of kernels only. */
#include "model.h"
#include "quants.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------- decode in one region
 * A decode step (every sequence appends at most ECM_ATTENTION_DIRECT_ROWS
 * tokens) is ~150 phases of 10-100 us; instead of a parallel region per
 * kernel, one region runs the whole step and its threads meet at team
 * barriers (team.c), five per layer:
 *   qkv      each thread computes whole heads of q | k | v, rotates them and
 *            writes its k, v heads into the caches
 *   attend   (row, head) tasks, each output head quantised where it lies
 *   proj     x += att @ Wo^T, output tiles split
 *   gate-up  each thread computes gate and up for the same 32 columns of h,
 *            then silu(gate) * up and its quantised blocks
 *   down     x += h @ Wd^T, output tiles split
 * RMSNorm and its quantisation are done for all rows by every thread when
 * there are few rows (a private copy costs less than a barrier), split
 * otherwise. Every value is computed by the same kernels and expressions as
 * the per-kernel path above, so a sequence's logits do not depend on the
 * path, the batch or the thread count. */

#define NORM_PRIVATE_ROWS 2 /* up to this many rows, each thread normalises every row itself */

static int team_fits(const ecm_model *m, const ecm_batch *b) {
    const ecm_config *c = &m->cfg;
    const int HD = c->head_dim;
    if (HD % ECM_QK || c->d_model % ECM_QK || c->d_ff % ECM_QK || HD > 1024) return 0;
    for (int s = 0; s < b->n_seq; s++)
        if (b->seq_start[s + 1] - b->seq_start[s] > ECM_ATTENTION_DIRECT_ROWS) return 0;
    for (int l = 0; l < c->n_layer; l++) {
        const ecm_layer *ly = &m->layers[l];
        if (!ecm_tiled_type(ly->qkv.qtype) || !ecm_tiled_type(ly->proj.qtype) || !ecm_tiled_type(ly->up.qtype) ||
            !ecm_tiled_type(ly->down.qtype))
            return 0;
    }
    return ecm_tiled_type(m->lm_head.qtype);
}

typedef struct {
    const ecm_model *m;
    const ecm_batch *b;
    ecm_team *team;
    int R, rows_out, nt;       /* rows_out: logits rows */
    const int *row_seq;        /* (R) sequence of each row */
    const int *out_row;        /* (rows_out) the row whose logits each output row holds */
    const float *rope_cs, *rope_sn; /* (R, HD/2) */
    float *x, *qkv, *att, *gu, *h; /* (R, C) (R, QKV) (R, QD) (R, 2F) (R, F) */
    float *xn;                 /* (nt, C) a normalised row before quantisation */
    ecm_block_q8_a *an;        /* (R, C/32) normalised x, shared */
    ecm_block_q8_a *an_priv;   /* (nt, NORM_PRIVATE_ROWS, C/32) the same, each thread's own */
    ecm_block_q8_a *aatt, *ah; /* (R, QD/32) (R, F/32) */
    float *scores;             /* (nt, S_max) */
    int S_max;
    float *logits;
} team_step;

/* RMSNorm of rows of src (rows[i], or i when rows is NULL) into the
 * quantised activations that thread ith reads next: its private copy of
 * every row, or its share of the shared buffer followed by a barrier. */
static const ecm_block_q8_a *norm_rows(const team_step *st, int ith, int nth, const float *src, const int *rows,
                                       int n_rows, const float *w) {
    const ecm_config *c = &st->m->cfg;
    const int C = c->d_model, nb = C / ECM_QK, priv = n_rows <= NORM_PRIVATE_ROWS;
    ecm_block_q8_a *an = priv ? st->an_priv + (size_t)ith * NORM_PRIVATE_ROWS * nb : st->an;
    float *tmp = st->xn + (size_t)ith * C;
    int r0 = 0, r1 = n_rows;
    if (!priv) ecm_team_split(n_rows, ith, nth, &r0, &r1);
    for (int i = r0; i < r1; i++) {
        ecm_rmsnorm_forward(tmp, src + (size_t)(rows ? rows[i] : i) * C, w, 1, C, c->norm_eps);
        ecm_quantize_row_q8_a(an + (size_t)i * nb, tmp, C);
    }
    if (!priv) ecm_team_sync(st->team);
    return an;
}

static void team_layer(const team_step *st, int l, int ith, int nth) {
    const ecm_model *m = st->m;
    const ecm_config *c = &m->cfg;
    const ecm_layer *ly = &m->layers[l];
    const ecm_batch *b = st->b;
    const int C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim, F = c->d_ff, R = st->R;
    const int QD = NH * HD, KVD = NKV * HD, QKV = QD + 2 * KVD, half = HD / 2;
    int lo, hi;

    /* qkv: whole heads per thread, so each rotates and stores what it computed */
    const ecm_block_q8_a *an = norm_rows(st, ith, nth, st->x, NULL, R, ly->attn_norm_w);
    ecm_team_split(NH + 2 * NKV, ith, nth, &lo, &hi);
    if (lo < hi)
        ecm_matmul_tiled_part(st->qkv, QKV, an, ly->qkv.q, ly->qkv.qtype, ly->qkv.b, QKV, C, R, 0, lo * HD / 8,
                              hi * HD / 8);
    for (int r = 0; r < R; r++) {
        ecm_kvcache *kc = b->caches[st->row_seq[r]];
        const size_t at = ((size_t)l * kc->max_T + (size_t)b->pos[r]) * KVD;
        for (int u = lo; u < hi; u++) {
            float *v = st->qkv + (size_t)r * QKV + (size_t)u * HD;
            if (u < NH + NKV)
                ecm_rope_head(v, st->rope_cs + (size_t)r * half, st->rope_sn + (size_t)r * half, HD,
                              c->rope_interleaved);
            if (u >= NH + NKV) memcpy(kc->v + at + (size_t)(u - NH - NKV) * HD, v, (size_t)HD * sizeof(float));
            else if (u >= NH) memcpy(kc->k + at + (size_t)(u - NH) * HD, v, (size_t)HD * sizeof(float));
        }
    }
    ecm_team_sync(st->team);

    /* attention: (row, head) tasks; each quantises its own output head */
    const float scale = 1.0f / sqrtf((float)HD);
    float *scores = st->scores + (size_t)ith * st->S_max;
    ecm_team_split(R * NH, ith, nth, &lo, &hi);
    for (int task = lo; task < hi; task++) {
        const int r = task / NH, h = task % NH, kvh = h / (NH / NKV);
        const ecm_kvcache *kc = b->caches[st->row_seq[r]];
        const size_t lay = (size_t)l * kc->max_T * KVD;
        float *o = st->att + (size_t)r * QD + (size_t)h * HD;
        ecm_attention_row(o, st->qkv + (size_t)r * QKV + (size_t)h * HD, kc->k + lay + (size_t)kvh * HD, KVD,
                          kc->v + lay + (size_t)kvh * HD, KVD, b->pos[r] + 1, HD, scale, scores);
        ecm_quantize_row_q8_a(st->aatt + (size_t)r * (QD / ECM_QK) + (size_t)h * (HD / ECM_QK), o, HD);
    }
    ecm_team_sync(st->team);

    /* proj: x += att @ Wo^T */
    ecm_team_split((C + 7) / 8, ith, nth, &lo, &hi);
    ecm_matmul_tiled_part(st->x, C, st->aatt, ly->proj.q, ly->proj.qtype, ly->proj.b, C, QD, R, 1, lo, hi);
    ecm_team_sync(st->team);

    /* gate-up: the same 32 columns of gate and of up, then silu(gate) * up */
    an = norm_rows(st, ith, nth, st->x, NULL, R, ly->ffn_norm_w);
    ecm_team_split(F / ECM_QK, ith, nth, &lo, &hi);
    if (lo < hi) {
        const int t0 = lo * ECM_QK / 8, t1 = hi * ECM_QK / 8;
        ecm_matmul_tiled_part(st->gu, 2 * F, an, ly->up.q, ly->up.qtype, ly->up.b, 2 * F, C, R, 0, t0, t1);
        ecm_matmul_tiled_part(st->gu, 2 * F, an, ly->up.q, ly->up.qtype, ly->up.b, 2 * F, C, R, 0, F / 8 + t0,
                              F / 8 + t1);
        const int j0 = lo * ECM_QK, n = (hi - lo) * ECM_QK;
        for (int r = 0; r < R; r++) {
            const float *g = st->gu + (size_t)r * 2 * F;
            float *hr = st->h + (size_t)r * F;
            ecm_swiglu_row(hr + j0, g + j0, g + F + j0, n);
            ecm_quantize_row_q8_a(st->ah + (size_t)r * (F / ECM_QK) + lo, hr + j0, n);
        }
    }
    ecm_team_sync(st->team);

    /* down: x += h @ Wd^T */
    ecm_team_split((C + 7) / 8, ith, nth, &lo, &hi);
    ecm_matmul_tiled_part(st->x, C, st->ah, ly->down.q, ly->down.qtype, ly->down.b, C, F, R, 1, lo, hi);
    ecm_team_sync(st->team);
}

static void team_run(const team_step *st, int ith, int nth) {
    const ecm_model *m = st->m;
    for (int l = 0; l < m->cfg.n_layer; l++) team_layer(st, l, ith, nth);
    const ecm_block_q8_a *an = norm_rows(st, ith, nth, st->x, st->out_row, st->rows_out, m->norm_w);
    int lo, hi;
    ecm_team_split((m->cfg.vocab + 7) / 8, ith, nth, &lo, &hi);
    ecm_matmul_tiled_part(st->logits, m->cfg.vocab, an, m->lm_head.q, m->lm_head.qtype, NULL, m->cfg.vocab,
                          m->cfg.d_model, st->rows_out, 0, lo, hi);
}

static ecm_status llama_forward_team(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    const int C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim, F = c->d_ff, R = b->R;
    const int QD = NH * HD, QKV = QD + 2 * NKV * HD, rows_out = all ? R : b->n_seq;
#ifdef _OPENMP
    int nt = omp_get_max_threads();
#else
    int nt = 1;
#endif
    int S_max = 1;
    for (int r = 0; r < R; r++) S_max = b->pos[r] + 1 > S_max ? b->pos[r] + 1 : S_max;
    /* one scratch slab: floats, then blocks, then ints (each part 64-byte aligned) */
    const size_t nf = (size_t)R * (C + QKV + QD + 3 * F + HD) + (size_t)nt * (C + S_max);
    const size_t nq = (size_t)(R + nt * NORM_PRIVATE_ROWS) * (C / ECM_QK) + (size_t)R * ((QD + F) / ECM_QK);
    const size_t fb = (nf * sizeof(float) + 63) & ~(size_t)63, qb = (nq * sizeof(ecm_block_q8_a) + 63) & ~(size_t)63;
    uint8_t *slab = ecm_scratch(ECM_SCRATCH_ACT, fb + qb + (size_t)(R + rows_out) * sizeof(int));
    if (!slab) return ECM_ERR_NOMEM;
    team_step st = {m, b, NULL, R, rows_out, nt};
    float *f = (float *)slab;
    st.x = f, f += (size_t)R * C;
    st.qkv = f, f += (size_t)R * QKV;
    st.att = f, f += (size_t)R * QD;
    st.gu = f, f += (size_t)R * 2 * F;
    st.h = f, f += (size_t)R * F;
    float *cs = f, *sn = f + (size_t)R * HD / 2;
    f += (size_t)R * HD;
    st.rope_cs = cs, st.rope_sn = sn;
    st.xn = f, f += (size_t)nt * C;
    st.scores = f, st.S_max = S_max;
    ecm_block_q8_a *q = (ecm_block_q8_a *)(slab + fb);
    st.an = q, q += (size_t)R * (C / ECM_QK);
    st.an_priv = q, q += (size_t)nt * NORM_PRIVATE_ROWS * (C / ECM_QK);
    st.aatt = q, q += (size_t)R * (QD / ECM_QK);
    st.ah = q;
    int *row_seq = (int *)(slab + fb + qb), *out_row = row_seq + R;
    for (int s = 0; s < b->n_seq; s++)
        for (int r = b->seq_start[s]; r < b->seq_start[s + 1]; r++) row_seq[r] = s;
    for (int i = 0; i < rows_out; i++) out_row[i] = all ? i : b->seq_start[i + 1] - 1;
    st.row_seq = row_seq, st.out_row = out_row, st.logits = logits;
    for (int r = 0; r < R; r++) {
        ecm_rope_table(cs + (size_t)r * HD / 2, sn + (size_t)r * HD / 2, b->pos[r], m->inv_freq, HD);
        ecm_model_token_row(st.x + (size_t)r * C, m, ids[r]);
    }
    ecm_team team;
    st.team = &team;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int ith = 0, nth = 1;
#endif
#pragma omp single
        ecm_team_init(&team, nth);
        team_run(&st, ith, nth);
    }
    return ECM_OK;
}

ecm_status ecm_llama_forward(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim, F = c->d_ff;
    int R = b->R, QD = NH * HD, KVD = NKV * HD, QKV = QD + 2 * KVD;
    if (team_fits(m, b) && !ecm_in_parallel()) return llama_forward_team(m, b, ids, logits, all);
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
