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
 *   gate-up  each thread computes gate and up for the same columns of h
 *            (whole activation blocks of down: 32 or 256), then
 *            silu(gate) * up, quantised for down
 *   down     x += h @ Wd^T, output tiles split
 * RMSNorm and its quantisation are done for all rows by every thread when
 * there are few rows (a private copy costs less than a barrier), split
 * otherwise. Every value is computed by the same kernels and expressions as
 * the per-kernel path (ecm_llama_forward's loop below, which prompts take),
 * so a sequence's logits do not depend on the path, the batch or the thread
 * count. */

#define NORM_PRIVATE_ROWS 2 /* up to this many rows, each thread normalises every row itself */

/* A linear layer the team can split: tiled, or quantised activations
 * (K-quants). Output ranges split at multiples of 8 rows (a tile). */
static int team_linear(const ecm_linear *lin) { return lin->qtype != 0 && ecm_act_block(lin->qtype) > 0; }

static int team_fits(const ecm_model *m, const ecm_batch *b) {
    const ecm_config *c = &m->cfg;
    const int HD = c->head_dim;
    if (HD % 8 || HD > 1024) return 0;
    for (int s = 0; s < b->n_seq; s++)
        if (b->seq_start[s + 1] - b->seq_start[s] > ECM_ATTENTION_DIRECT_ROWS) return 0;
    for (int l = 0; l < c->n_layer; l++) {
        const ecm_layer *ly = &m->layers[l];
        if (!team_linear(&ly->qkv) || !team_linear(&ly->proj) || !team_linear(&ly->up) || !team_linear(&ly->down))
            return 0;
        if (HD % ecm_act_block(ly->proj.qtype) || ecm_act_block(ly->down.qtype) % 8) return 0;
    }
    return team_linear(&m->lm_head);
}

typedef struct {
    const ecm_model *m;
    const ecm_batch *b;
    ecm_team *team;
    int R, rows_out;           /* rows_out: logits rows */
    const int *row_seq;        /* (R) sequence of each row */
    const int *out_row;        /* (rows_out) the row whose logits each output row holds */
    const float *rope_cs, *rope_sn; /* (R, HD/2) */
    float *x, *qkv, *att, *gu, *h; /* (R, C) (R, QKV) (R, QD) (R, 2F) (R, F) */
    float *xn;                 /* (nt, C) a normalised row before quantisation */
    uint8_t *an;               /* (R, an_row) normalised x quantised for its next linear, shared */
    uint8_t *an_priv;          /* (nt, NORM_PRIVATE_ROWS, an_row) the same, each thread's own */
    uint8_t *aatt, *ah;        /* (R, QD) quantised for proj, (R, F) for down */
    size_t an_row;             /* bytes of a row of an: the widest of qkv, up, lm_head */
    float *scores;             /* (nt, S_max) */
    int S_max;
    float *logits;
} team_step;

/* Output columns [n0, n1) of lin from M quantised activation rows. */
static void linear_part(float *out, int ldo, const void *act, const ecm_linear *lin, int M, int accumulate, int n0,
                        int n1) {
    if (n0 >= n1) return;
    if (ecm_tiled_type(lin->qtype))
        ecm_matmul_tiled_part(out, ldo, act, lin->q, lin->qtype, lin->b, lin->N, lin->K, M, accumulate, n0 / 8,
                              (n1 + 7) / 8);
    else
        ecm_matmul_quant_part(out, ldo, act, lin->q, lin->qtype, lin->b, lin->N, lin->K, M, accumulate, n0, n1);
}

/* Thread ith's share of lin's N outputs, whole tiles of 8. */
static void split_rows(int N, int ith, int nth, int *n0, int *n1) {
    ecm_team_split((N + 7) / 8, ith, nth, n0, n1);
    *n0 *= 8;
    *n1 = *n1 * 8 < N ? *n1 * 8 : N;
}

/* RMSNorm of rows of src (rows[i], or i when rows is NULL), quantised for
 * lin, into the activations that thread ith reads next: its private copy of
 * every row, or its share of the shared buffer followed by a barrier. */
static const uint8_t *norm_rows(const team_step *st, int ith, int nth, const float *src, const int *rows, int n_rows,
                                const float *w, const ecm_linear *lin) {
    const ecm_config *c = &st->m->cfg;
    const int C = c->d_model, priv = n_rows <= NORM_PRIVATE_ROWS;
    uint8_t *an = priv ? st->an_priv + (size_t)ith * NORM_PRIVATE_ROWS * st->an_row : st->an;
    const size_t arow = ecm_act_row_bytes(lin->qtype, C);
    float *tmp = st->xn + (size_t)ith * C;
    int r0 = 0, r1 = n_rows;
    if (!priv) ecm_team_split(n_rows, ith, nth, &r0, &r1);
    for (int i = r0; i < r1; i++) {
        ecm_rmsnorm_forward(tmp, src + (size_t)(rows ? rows[i] : i) * C, w, 1, C, c->norm_eps);
        ecm_quantize_act(an + (size_t)i * arow, tmp, lin->qtype, C);
    }
    if (!priv) ecm_team_sync(st->team, ith);
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
    const uint8_t *an = norm_rows(st, ith, nth, st->x, NULL, R, ly->attn_norm_w, &ly->qkv);
    ecm_team_split(NH + 2 * NKV, ith, nth, &lo, &hi);
    linear_part(st->qkv, QKV, an, &ly->qkv, R, 0, lo * HD, hi * HD);
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
    ecm_team_sync(st->team, ith);

    /* attention: (row, head) tasks; each quantises its own output head */
    const float scale = 1.0f / sqrtf((float)HD);
    const size_t prow = ecm_act_row_bytes(ly->proj.qtype, QD), phead = ecm_act_row_bytes(ly->proj.qtype, HD);
    float *scores = st->scores + (size_t)ith * st->S_max;
    ecm_team_split(R * NH, ith, nth, &lo, &hi);
    for (int task = lo; task < hi; task++) {
        const int r = task / NH, h = task % NH, kvh = h / (NH / NKV);
        const ecm_kvcache *kc = b->caches[st->row_seq[r]];
        const size_t lay = (size_t)l * kc->max_T * KVD;
        float *o = st->att + (size_t)r * QD + (size_t)h * HD;
        ecm_attention_row(o, st->qkv + (size_t)r * QKV + (size_t)h * HD, kc->k + lay + (size_t)kvh * HD, KVD,
                          kc->v + lay + (size_t)kvh * HD, KVD, b->pos[r] + 1, HD, scale, scores);
        ecm_quantize_act(st->aatt + (size_t)r * prow + (size_t)h * phead, o, ly->proj.qtype, HD);
    }
    ecm_team_sync(st->team, ith);

    /* proj: x += att @ Wo^T */
    split_rows(C, ith, nth, &lo, &hi);
    linear_part(st->x, C, st->aatt, &ly->proj, R, 1, lo, hi);
    ecm_team_sync(st->team, ith);

    /* gate-up: the same columns of gate and of up, whole activation blocks
     * of down, then silu(gate) * up quantised for down */
    an = norm_rows(st, ith, nth, st->x, NULL, R, ly->ffn_norm_w, &ly->up);
    const int ab = ecm_act_block(ly->down.qtype);
    const size_t hrow = ecm_act_row_bytes(ly->down.qtype, F), hblk = ecm_act_row_bytes(ly->down.qtype, ab);
    ecm_team_split(F / ab, ith, nth, &lo, &hi);
    if (lo < hi) {
        const int j0 = lo * ab, j1 = hi * ab;
        linear_part(st->gu, 2 * F, an, &ly->up, R, 0, j0, j1);
        linear_part(st->gu, 2 * F, an, &ly->up, R, 0, F + j0, F + j1);
        for (int r = 0; r < R; r++) {
            const float *g = st->gu + (size_t)r * 2 * F;
            float *hr = st->h + (size_t)r * F;
            ecm_swiglu_row(hr + j0, g + j0, g + F + j0, j1 - j0);
            ecm_quantize_act(st->ah + (size_t)r * hrow + (size_t)lo * hblk, hr + j0, ly->down.qtype, j1 - j0);
        }
    }
    ecm_team_sync(st->team, ith);

    /* down: x += h @ Wd^T */
    split_rows(C, ith, nth, &lo, &hi);
    linear_part(st->x, C, st->ah, &ly->down, R, 1, lo, hi);
    ecm_team_sync(st->team, ith);
}

static void team_run(const team_step *st, int ith, int nth) {
    const ecm_model *m = st->m;
    for (int l = 0; l < m->cfg.n_layer; l++) team_layer(st, l, ith, nth);
    const uint8_t *an = norm_rows(st, ith, nth, st->x, st->out_row, st->rows_out, m->norm_w, &m->lm_head);
    int lo, hi;
    split_rows(m->cfg.vocab, ith, nth, &lo, &hi);
    linear_part(st->logits, m->cfg.vocab, an, &m->lm_head, st->rows_out, 0, lo, hi);
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static ecm_status llama_forward_team(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all) {
    const ecm_config *c = &m->cfg;
    const int C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim, F = c->d_ff, R = b->R;
    const int QD = NH * HD, QKV = QD + 2 * NKV * HD, rows_out = all ? R : b->n_seq;
#ifdef _OPENMP
    const int nt = omp_get_max_threads();
#else
    const int nt = 1;
#endif
    int S_max = 1;
    for (int r = 0; r < R; r++) S_max = b->pos[r] + 1 > S_max ? b->pos[r] + 1 : S_max;
    size_t an_row = ecm_act_row_bytes(m->lm_head.qtype, C), att_row = 0, h_row = 0;
    for (int l = 0; l < c->n_layer; l++) {
        const ecm_layer *ly = &m->layers[l];
        an_row = max_size(an_row, max_size(ecm_act_row_bytes(ly->qkv.qtype, C), ecm_act_row_bytes(ly->up.qtype, C)));
        att_row = max_size(att_row, ecm_act_row_bytes(ly->proj.qtype, QD));
        h_row = max_size(h_row, ecm_act_row_bytes(ly->down.qtype, F));
    }
    /* one scratch slab: floats, then quantised activations, then ints (each part 64-byte aligned) */
    const size_t nf = (size_t)R * (C + QKV + QD + 3 * F + HD) + (size_t)nt * (C + S_max);
    const size_t nq = (size_t)(R + nt * NORM_PRIVATE_ROWS) * an_row + (size_t)R * (att_row + h_row);
    const size_t fb = (nf * sizeof(float) + 63) & ~(size_t)63, qb = (nq + 63) & ~(size_t)63;
    uint8_t *slab = ecm_scratch(ECM_SCRATCH_ACT, fb + qb + (size_t)(R + rows_out) * sizeof(int));
    if (!slab) return ECM_ERR_NOMEM;
    team_step st = {m, b, NULL, R, rows_out};
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
    uint8_t *q = slab + fb;
    st.an_row = an_row;
    st.an = q, q += (size_t)R * an_row;
    st.an_priv = q, q += (size_t)nt * NORM_PRIVATE_ROWS * an_row;
    st.aatt = q, q += (size_t)R * att_row;
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
        ecm_team_enter(&team, ith);
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
