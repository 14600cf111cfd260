/* train_bert.c: training the bert encoder with a sequence-classification
 * head, as transformers' BertForSequenceClassification computes it (without
 * dropout): word + position + token-type embeddings and their LayerNorm,
 * post-LN blocks (bidirectional attention over the unpadded keys, biases
 * everywhere, GELU-erf MLP), the pooler (dense + tanh on the [CLS] row) and a
 * linear classifier; cross-entropy over the labels, the mean squared error
 * when there is one label (regression), or a binary cross-entropy per label
 * (multi-label).
 *
 * The slab, optimizer, LoRA adapters and export are train.c's; this file
 * lays out the bert tensors, plans the activations of a (B, T) batch and runs
 * the forward and backward passes, composing the kernels of ops_backward.c,
 * attention_backward.c and matmul.c. Padded rows are computed like the
 * others (the linear layers see B * T rows) but never reach the loss, so
 * their gradients are exactly zero: no parameter gradient depends on them.
 */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ layout */

void ecm_bert_layout(ecm_layout *lc) {
    ecm_train *tr = lc->tr;
    const ecm_config *c = &tr->cfg;
    int C = c->d_model, QD = c->n_head * c->head_dim, F = c->d_ff, NL = tr->n_labels;
    int full = !tr->lora_on;
    ecm_tparams *P = &tr->P, *G = &tr->G;
    char nm[64];
    P->tok_embd = ecm_layout_tensor(lc, "tok_embd", c->vocab, C, full, 1, &G->tok_embd);
    P->pos_embd = ecm_layout_tensor(lc, "pos_embd", c->max_pos, C, full, 1, &G->pos_embd);
    P->type_embd = ecm_layout_tensor(lc, "type_embd", c->type_vocab, C, full, 1, &G->type_embd);
    P->emb_norm_w = ecm_layout_tensor(lc, "emb_norm.weight", C, 0, full, 0, &G->emb_norm_w);
    P->emb_norm_b = ecm_layout_tensor(lc, "emb_norm.bias", C, 0, full, 0, &G->emb_norm_b);
    for (int l = 0; l < c->n_layer; l++) {
        ecm_tlayer *p = &P->layers[l], *g = &G->layers[l];
        memset(p, 0, sizeof *p);
        memset(g, 0, sizeof *g);
#define NAME(s) (snprintf(nm, sizeof nm, "layers.%d." s, l), nm)
        p->qkv_w = ecm_layout_tensor(lc, NAME("qkv.weight"), 3 * QD, C, full, 1, &g->qkv_w);
        p->qkv_b = ecm_layout_tensor(lc, NAME("qkv.bias"), 3 * QD, 0, full, 0, &g->qkv_b);
        p->proj_w = ecm_layout_tensor(lc, NAME("proj.weight"), C, QD, full, 1, &g->proj_w);
        p->proj_b = ecm_layout_tensor(lc, NAME("proj.bias"), C, 0, full, 0, &g->proj_b);
        p->attn_norm_w = ecm_layout_tensor(lc, NAME("attn_out_norm.weight"), C, 0, full, 0, &g->attn_norm_w);
        p->attn_norm_b = ecm_layout_tensor(lc, NAME("attn_out_norm.bias"), C, 0, full, 0, &g->attn_norm_b);
        p->up_w = ecm_layout_tensor(lc, NAME("up.weight"), F, C, full, 1, &g->up_w);
        p->up_b = ecm_layout_tensor(lc, NAME("up.bias"), F, 0, full, 0, &g->up_b);
        p->down_w = ecm_layout_tensor(lc, NAME("down.weight"), C, F, full, 1, &g->down_w);
        p->down_b = ecm_layout_tensor(lc, NAME("down.bias"), C, 0, full, 0, &g->down_b);
        p->ffn_norm_w = ecm_layout_tensor(lc, NAME("ffn_out_norm.weight"), C, 0, full, 0, &g->ffn_norm_w);
        p->ffn_norm_b = ecm_layout_tensor(lc, NAME("ffn_out_norm.bias"), C, 0, full, 0, &g->ffn_norm_b);
#undef NAME
    }
    /* With LoRA the pooler stays frozen and the classifier trains, as PEFT's
     * sequence-classification task does (modules_to_save = classifier). */
    P->pool_w = ecm_layout_tensor(lc, "pooler.weight", C, C, full, 1, &G->pool_w);
    P->pool_b = ecm_layout_tensor(lc, "pooler.bias", C, 0, full, 0, &G->pool_b);
    P->cls_w = ecm_layout_tensor(lc, "classifier.weight", NL, C, 1, 1, &G->cls_w);
    P->cls_b = ecm_layout_tensor(lc, "classifier.bias", NL, 0, 1, 0, &G->cls_b);
    P->norm_w = P->norm_b = P->lm_head = NULL;
    G->norm_w = G->norm_b = G->lm_head = NULL;
}

/* ------------------------------------------------------------ activations */

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

static ecm_status plan(ecm_train *tr, int B, int T) {
    const ecm_config *c = &tr->cfg;
    size_t BT = (size_t)B * T, L = (size_t)c->n_layer, C = (size_t)c->d_model, NH = (size_t)c->n_head;
    size_t QD = NH * c->head_dim, F = (size_t)c->d_ff, NL = (size_t)tr->n_labels;
    size_t R = tr->lora_on ? (size_t)tr->lcfg.rank : 0, maxK = maxz(maxz(C, QD), F), Bz = (size_t)B;
    ecm_tacts_bert *A = &tr->BA;
    /* Each size is a product of config fields checked at init (< 2^24) and
     * BT < 2^31: they fit size_t on 64-bit; the sum is checked. */
    struct { float **p; size_t n; } parts[] = {
        {&A->emb, BT * C}, {&A->emb_mean, BT}, {&A->emb_rstd, BT}, {&A->x, (L + 1) * BT * C},
        {&A->qkv, L * BT * 3 * QD}, {&A->atty, L * BT * QD}, {&A->lse, L * BT * NH}, {&A->h1, L * BT * C},
        {&A->ln1_mean, L * BT}, {&A->ln1_rstd, L * BT}, {&A->mid, L * BT * C}, {&A->fch, L * BT * F},
        {&A->fact, L * BT * F}, {&A->h2, L * BT * C}, {&A->ln2_mean, L * BT}, {&A->ln2_rstd, L * BT},
        {&A->pool, Bz * C}, {&A->pool_drop, Bz * C}, {&A->dtmp, BT * C}, {&A->logits, Bz * NL}, {&A->probs, Bz * NL}, {&A->losses, Bz}, {&A->dx, BT * C},
        {&A->dh, BT * C}, {&A->dqkv, BT * 3 * QD}, {&A->datty, BT * QD}, {&A->dfch, BT * F}, {&A->dpool, Bz * C},
        {&tr->A.lora_xa, (size_t)tr->n_lora * BT * R}, {&tr->A.xd, R ? BT * maxK : 0}, {&tr->A.dxa, BT * R},
    };
    size_t total = 0;
    int n_parts = (int)(sizeof parts / sizeof parts[0]);
    for (int i = 0; i < n_parts; i++)
        if (!ecm_add_size(total, round16(parts[i].n), &total))
            return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
    int bt = (int)BT, iC = (int)C, iQD = (int)QD, iF = (int)F, iNL = (int)NL;
    size_t work = ecm_train_linear_work(bt, 3 * iQD, iC);
    work = maxz(work, ecm_train_linear_work(bt, iC, iQD));
    work = maxz(work, ecm_train_linear_work(bt, iF, iC));
    work = maxz(work, ecm_train_linear_work(bt, iC, iF));
    work = maxz(work, ecm_train_linear_work(B, iC, iC));  /* pooler */
    work = maxz(work, ecm_train_linear_work(B, iNL, iC)); /* classifier */
    for (int i = 0; i < tr->n_lora; i++) {
        const ecm_lora *a = &tr->lora[i];
        work = maxz(work, ecm_train_linear_work(bt, a->R, a->K));
        work = maxz(work, ecm_train_linear_work(bt, a->n, a->R));
    }
    size_t bytes;
    if (!ecm_mul_size(total, 4, &bytes)) return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
    int nt = tr->n_threads > 0 ? tr->n_threads : 1;
    size_t attn = (size_t)nt * ecm_attention_train_work_floats(T, c->head_dim), ints = 2 * BT + 3 * Bz + Bz * NL;
    if (!(tr->acts && total <= A->cap_acts && work <= A->cap_work && attn <= A->cap_attn && ints <= A->cap_ints &&
          nt == tr->planned_threads)) {
        /* grow to hold this batch and the largest seen so far */
        total = maxz(total, A->cap_acts);
        work = maxz(work, A->cap_work);
        attn = maxz(attn, A->cap_attn);
        ints = maxz(ints, A->cap_ints);
        ecm_train_release_activations(tr); /* clears A */
        if (!ecm_mul_size(total, 4, &bytes)) return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
        tr->acts = ecm_alloc(bytes);
        tr->work = ecm_alloc(work * 4);
        tr->ids = malloc(ints * sizeof(int32_t)); /* ids, types | lens, labels, values */
        tr->attn_work = ecm_alloc(attn * 4);
        tr->planned_threads = nt;
        if (!tr->acts || !tr->work || !tr->ids || !tr->attn_work) {
            ecm_train_release_activations(tr);
            return ecm_fail(ECM_ERR_NOMEM, "out of memory for the activations of a %d x %d batch (%.1f MiB)", B, T,
                            (double)bytes / (1 << 20));
        }
        A->cap_acts = total;
        A->cap_work = work;
        A->cap_attn = attn;
        A->cap_ints = ints;
    }
    size_t off = 0;
    for (int i = 0; i < n_parts; i++) {
        *parts[i].p = tr->acts + off;
        off += round16(parts[i].n);
    }
    tr->acts_floats = A->cap_acts;
    tr->work_floats = A->cap_work;
    A->types = tr->ids + BT;
    A->lens = A->types + BT;
    A->labels = A->lens + B;
    A->values = (float *)(A->labels + B);
    tr->targets = tr->pos = NULL;
    tr->mask = NULL;
    tr->B = B;
    tr->T = T;
    return ECM_OK;
}

/* ---------------------------------------------------------------- helpers */

/* Dropout sites of BertForSequenceClassification (attention probabilities
 * aside): 0 the embeddings after their norm, 1 + 2l the attention output and
 * 2 + 2l the MLP output of layer l (before their residual adds), 1 + 2L the
 * pooled output. Site s of forward pass f (1-based) draws its mask from
 * stream f * 0x9e3779b97f4a7c15 + (s + 1) * 0xbf58476d1ce4e5b9. */
static uint64_t drop_stream(const ecm_train *tr, int site) {
    return tr->fwd_count * 0x9e3779b97f4a7c15ULL + (uint64_t)(site + 1) * 0xbf58476d1ce4e5b9ULL;
}

static void drop(const ecm_train *tr, float *x, size_t n, int site) {
    ecm_dropout_apply(x, x, n, tr->hidden_dropout, drop_stream(tr, site));
}

/* ---------------------------------------------------------------- forward */

static ecm_status check_batch(const ecm_train *tr, const int32_t *ids, const int32_t *types, const uint8_t *mask,
                              const int32_t *labels, const float *values, int B, int T) {
    const ecm_config *c = &tr->cfg;
    int NL = tr->n_labels;
    if (B <= 0 || T <= 0) return ecm_fail(ECM_ERR_VALUE, "the batch must not be empty, got %d x %d", B, T);
    if (T > c->max_pos)
        return ecm_fail(ECM_ERR_VALUE, "sequence length %d exceeds the model's %d positions", T, c->max_pos);
    if ((size_t)B * T > (size_t)1 << 30) return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
    for (size_t t = 0; t < (size_t)B * T; t++) {
        if (ids[t] < 0 || ids[t] >= c->vocab)
            return ecm_fail(ECM_ERR_VALUE, "input_ids: token id %d at (%d, %d) is out of range [0, %d)", ids[t],
                            (int)(t / T), (int)(t % T), c->vocab);
        if (types && (types[t] < 0 || types[t] >= c->type_vocab))
            return ecm_fail(ECM_ERR_VALUE, "token_type_ids: type %d at (%d, %d) is out of range [0, %d)", types[t],
                            (int)(t / T), (int)(t % T), c->type_vocab);
    }
    for (int b = 0; mask && b < B; b++) {
        const uint8_t *m = mask + (size_t)b * T;
        int n = 0;
        while (n < T && m[n]) n++;
        for (int j = n; j < T; j++)
            if (m[j])
                return ecm_fail(ECM_ERR_VALUE, "attention_mask: row %d is not 1..1 0..0 (padding must be on the "
                                               "right)", b);
        if (n == 0) return ecm_fail(ECM_ERR_VALUE, "attention_mask: row %d masks every token", b);
    }
    if (tr->multi_label) {
        if (labels) return ecm_fail(ECM_ERR_VALUE, "labels: a multi-label head takes (B, %d) targets in [0, 1]", NL);
        for (size_t i = 0; values && i < (size_t)B * NL; i++)
            if (!(values[i] >= 0.0f && values[i] <= 1.0f))
                return ecm_fail(ECM_ERR_VALUE, "labels: target %g of example %d, label %d is not in [0, 1]",
                                (double)values[i], (int)(i / NL), (int)(i % NL));
        return ECM_OK;
    }
    if (NL > 1 && values && !labels)
        return ecm_fail(ECM_ERR_VALUE, "labels: a classifier of %d classes takes class ids, not values", NL);
    if (NL == 1 && labels && !values)
        return ecm_fail(ECM_ERR_VALUE, "labels: a regression head (num_labels 1) takes float values");
    for (int b = 0; NL > 1 && labels && b < B; b++)
        if (labels[b] < 0 || labels[b] >= NL)
            return ecm_fail(ECM_ERR_VALUE, "labels: label %d of example %d is out of range [0, %d)", labels[b], b, NL);
    for (int b = 0; NL == 1 && values && b < B; b++)
        if (!isfinite(values[b])) return ecm_fail(ECM_ERR_VALUE, "labels: value of example %d is not finite", b);
    return ECM_OK;
}

ecm_status ecm_bert_train_forward(ecm_train *tr, const int32_t *ids, const int32_t *types, const uint8_t *attn_mask,
                                  const int32_t *labels, const float *values, int B, int T, float *loss) {
    const ecm_config *c = &tr->cfg;
    if (c->arch != ECM_ARCH_BERT) return ecm_fail(ECM_ERR_STATE, "not a bert trainer");
    ecm_status st = check_batch(tr, ids, types, attn_mask, labels, values, B, T);
    if (st != ECM_OK) return st;
    if (B != tr->B || T != tr->T || !tr->BA.x || tr->planned_threads != (tr->n_threads > 0 ? tr->n_threads : 1)) {
        st = plan(tr, B, T);
        if (st != ECM_OK) return st;
    }
    tr->have_fwd = 0;
    ecm_train_set_threads(tr);
    int BT = B * T, C = c->d_model, NH = c->n_head, HD = c->head_dim, QD = NH * HD, QKV = 3 * QD, F = c->d_ff;
    int L = c->n_layer, NL = tr->n_labels;
    ecm_tacts_bert *A = &tr->BA;
    const ecm_tparams *P = &tr->P;
    memcpy(tr->ids, ids, (size_t)BT * sizeof(int32_t));
    if (types) memcpy(A->types, types, (size_t)BT * sizeof(int32_t));
    else memset(A->types, 0, (size_t)BT * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int n = T;
        if (attn_mask)
            for (n = 0; n < T && attn_mask[(size_t)b * T + n];) n++;
        A->lens[b] = n;
        A->labels[b] = labels ? labels[b] : 0;
    }
    size_t n_values = tr->multi_label ? (size_t)B * tr->n_labels : (size_t)B;
    for (size_t i = 0; i < n_values; i++) A->values[i] = values ? values[i] : 0.0f;
    tr->fwd_count++;
    float scale = 1.0f / sqrtf((float)HD);
    int dropping = A->dropped = tr->hidden_dropout > 0.0f && (labels || values);

    /* emb = word + position + type; x[0] = LayerNorm(emb) */
    for (int t = 0; t < BT; t++) {
        float *e = A->emb + (size_t)t * C;
        const float *we = P->tok_embd + (size_t)ids[t] * C, *pe = P->pos_embd + (size_t)(t % T) * C;
        const float *te = P->type_embd + (size_t)A->types[t] * C;
        for (int i = 0; i < C; i++) e[i] = we[i] + pe[i] + te[i];
    }
    ecm_layernorm_forward_train(A->x, A->emb_mean, A->emb_rstd, A->emb, P->emb_norm_w, P->emb_norm_b, BT, C,
                                c->norm_eps);
    if (dropping) drop(tr, A->x, (size_t)BT * C, 0);
    float *branch = A->dh; /* a dropped branch's output, before its residual add (dh is backward scratch) */
    for (int l = 0; l < L; l++) {
        const ecm_tlayer *p = &P->layers[l];
        const float *x = A->x + (size_t)l * BT * C;
        float *out = A->x + (size_t)(l + 1) * BT * C;
        float *qkv = A->qkv + (size_t)l * BT * QKV, *atty = A->atty + (size_t)l * BT * QD;
        float *h1 = A->h1 + (size_t)l * BT * C, *mid = A->mid + (size_t)l * BT * C;
        float *fch = A->fch + (size_t)l * BT * F, *fact = A->fact + (size_t)l * BT * F;
        float *h2 = A->h2 + (size_t)l * BT * C, *lse = A->lse + (size_t)l * BT * NH;
        ecm_train_linear(tr, qkv, QKV, x, C, p->qkv_w, p->qkv_b, BT, QKV, C, 0);
        ecm_train_lora_forward(tr, l, 0, qkv, QKV, x, BT);
        st = ecm_attention_forward_train_masked(atty, lse, qkv, A->lens, 0, B, T, NH, NH, HD, scale, tr->attn_work,
                                                tr->planned_threads);
        if (st != ECM_OK) return st;
        if (dropping) { /* h1 = x + dropout(atty @ Wo^T + bo) */
            ecm_train_linear(tr, branch, C, atty, QD, p->proj_w, p->proj_b, BT, C, QD, 0);
            ecm_train_lora_forward(tr, l, 1, branch, C, atty, BT);
            drop(tr, branch, (size_t)BT * C, 1 + 2 * l);
            ecm_add_forward(h1, x, branch, (size_t)BT * C);
        } else {
            memcpy(h1, x, (size_t)BT * C * sizeof(float)); /* h1 = x + atty @ Wo^T + bo */
            ecm_train_linear(tr, h1, C, atty, QD, p->proj_w, p->proj_b, BT, C, QD, 1);
            ecm_train_lora_forward(tr, l, 1, h1, C, atty, BT);
        }
        ecm_layernorm_forward_train(mid, A->ln1_mean + (size_t)l * BT, A->ln1_rstd + (size_t)l * BT, h1,
                                    p->attn_norm_w, p->attn_norm_b, BT, C, c->norm_eps);
        ecm_train_linear(tr, fch, F, mid, C, p->up_w, p->up_b, BT, F, C, 0);
        ecm_train_lora_forward(tr, l, 2, fch, F, mid, BT);
        ecm_gelu_erf_forward(fact, fch, (size_t)BT * F);
        if (dropping) { /* h2 = mid + dropout(fact @ Wd^T + bd) */
            ecm_train_linear(tr, branch, C, fact, F, p->down_w, p->down_b, BT, C, F, 0);
            ecm_train_lora_forward(tr, l, 3, branch, C, fact, BT);
            drop(tr, branch, (size_t)BT * C, 2 + 2 * l);
            ecm_add_forward(h2, mid, branch, (size_t)BT * C);
        } else {
            memcpy(h2, mid, (size_t)BT * C * sizeof(float)); /* h2 = mid + fact @ Wd^T + bd */
            ecm_train_linear(tr, h2, C, fact, F, p->down_w, p->down_b, BT, C, F, 1);
            ecm_train_lora_forward(tr, l, 3, h2, C, fact, BT);
        }
        ecm_layernorm_forward_train(out, A->ln2_mean + (size_t)l * BT, A->ln2_rstd + (size_t)l * BT, h2,
                                    p->ffn_norm_w, p->ffn_norm_b, BT, C, c->norm_eps);
    }
    /* pool = tanh([CLS] @ Wp^T + bp): the [CLS] rows are every T-th row */
    const float *last = A->x + (size_t)L * BT * C;
    ecm_train_linear(tr, A->pool, C, last, T * C, P->pool_w, P->pool_b, B, C, C, 0);
    for (size_t i = 0; i < (size_t)B * C; i++) A->pool[i] = tanhf(A->pool[i]);
    const float *cls_in = A->pool;
    if (dropping) { /* logits = dropout(pool) @ Wc^T + bc */
        memcpy(A->pool_drop, A->pool, (size_t)B * C * sizeof(float));
        drop(tr, A->pool_drop, (size_t)B * C, 1 + 2 * L);
        cls_in = A->pool_drop;
    }
    ecm_train_linear(tr, A->logits, NL, cls_in, C, P->cls_w, P->cls_b, B, NL, C, 0);
    tr->n_counted = B;
    *loss = 0.0f;
    if (!labels && !values) return ECM_OK; /* inference: logits only */
    double sum = 0.0;
    if (tr->multi_label) { /* losses[b] = sum_j max(z, 0) - z y + log(1 + exp(-|z|)) */
        for (int b = 0; b < B; b++) {
            double s = 0.0;
            for (int j = 0; j < NL; j++) {
                double z = A->logits[(size_t)b * NL + j], y = A->values[(size_t)b * NL + j];
                s += (z > 0 ? z : 0.0) - z * y + log1p(exp(-fabs(z)));
            }
            A->losses[b] = (float)s;
        }
    } else if (NL > 1) {
        memcpy(A->probs, A->logits, (size_t)B * NL * sizeof(float));
        ecm_crossentropy_forward(A->losses, A->probs, A->labels, NULL, B, NL);
    } else {
        for (int b = 0; b < B; b++) {
            float d = A->logits[b] - A->values[b];
            A->losses[b] = d * d;
        }
    }
    for (int b = 0; b < B; b++) sum += A->losses[b];
    *loss = (float)(sum / (tr->multi_label ? (double)B * NL : (double)B));
    tr->have_fwd = 1;
    return ECM_OK;
}

/* --------------------------------------------------------------- backward */

ecm_status ecm_bert_train_backward(ecm_train *tr, float grad_scale) {
    if (!tr->have_fwd) return ecm_fail(ECM_ERR_STATE, "backward() needs a forward() of a labelled batch first");
    tr->have_fwd = 0; /* probs become gradients: one backward per forward */
    const ecm_config *c = &tr->cfg;
    int B = tr->B, T = tr->T, BT = B * T, C = c->d_model, NH = c->n_head, HD = c->head_dim, QD = NH * HD;
    int QKV = 3 * QD, F = c->d_ff, L = c->n_layer, NL = tr->n_labels;
    float scale = 1.0f / sqrtf((float)HD);
    ecm_tacts_bert *A = &tr->BA;
    const ecm_tparams *P = &tr->P, *G = &tr->G;
    ecm_train_set_threads(tr);

    /* loss = mean_b losses[b]: dlogits (B, NL) in probs */
    float *dlogits = A->probs;
    if (tr->multi_label) { /* loss = mean over B NL of BCE(z, y): dz = (sigmoid(z) - y) / (B NL) */
        float k = grad_scale / ((float)B * (float)NL);
        for (size_t i = 0; i < (size_t)B * NL; i++)
            dlogits[i] = (float)(1.0 / (1.0 + exp(-(double)A->logits[i])) - A->values[i]) * k;
    } else if (NL > 1) {
        ecm_crossentropy_backward(dlogits, A->labels, NULL, grad_scale / (float)B, B, NL);
    } else { /* losses[b] = (z_b - y_b)^2: dz_b = 2 (z_b - y_b) / B */
        for (int b = 0; b < B; b++) dlogits[b] = 2.0f * (A->logits[b] - A->values[b]) * (grad_scale / (float)B);
    }
    /* logits = [dropout](pool) @ Wc^T + bc */
    int dropping = A->dropped;
    ecm_train_linear_bwd(tr, A->dpool, C, 0, G->cls_w, G->cls_b, dlogits, dropping ? A->pool_drop : A->pool, C, P->cls_w, B,
               NL, C);
    if (dropping) drop(tr, A->dpool, (size_t)B * C, 1 + 2 * L);
    /* pool = tanh(u): du = dpool (1 - pool^2) */
    for (size_t i = 0; i < (size_t)B * C; i++) A->dpool[i] *= 1.0f - A->pool[i] * A->pool[i];
    /* u = cls @ Wp^T + bp: d(last) is zero but on the [CLS] rows */
    const float *last = A->x + (size_t)L * BT * C;
    memset(A->dx, 0, (size_t)BT * C * sizeof(float));
    ecm_train_linear_bwd(tr, A->dx, T * C, 0, G->pool_w, G->pool_b, A->dpool, last, T * C, P->pool_w, B, C, C);

    float *dx = A->dx, *dh = A->dh;
    int need_dx0 = G->tok_embd || G->pos_embd || G->type_embd || G->emb_norm_w;
    for (int l = L - 1; l >= 0; l--) {
        const ecm_tlayer *p = &P->layers[l], *g = &G->layers[l];
        const float *x = A->x + (size_t)l * BT * C;
        const float *qkv = A->qkv + (size_t)l * BT * QKV, *atty = A->atty + (size_t)l * BT * QD;
        const float *h1 = A->h1 + (size_t)l * BT * C, *mid = A->mid + (size_t)l * BT * C;
        const float *fch = A->fch + (size_t)l * BT * F, *fact = A->fact + (size_t)l * BT * F;
        const float *h2 = A->h2 + (size_t)l * BT * C, *lse = A->lse + (size_t)l * BT * NH;
        /* out = LN2(h2): dh = d(h2) */
        ecm_layernorm_backward(dh, g->ffn_norm_w, g->ffn_norm_b, dx, h2, p->ffn_norm_w, A->ln2_mean + (size_t)l * BT,
                               A->ln2_rstd + (size_t)l * BT, BT, C);
        /* h2 = mid + [dropout](fact @ Wd^T + bd): d(fact) into dfch */
        const float *dbr = dh;
        if (dropping) {
            drop(tr, memcpy(A->dtmp, dh, (size_t)BT * C * sizeof(float)), (size_t)BT * C, 2 + 2 * l);
            dbr = A->dtmp;
        }
        ecm_train_linear_bwd(tr, A->dfch, F, 0, g->down_w, g->down_b, dbr, fact, F, p->down_w, BT, C, F);
        ecm_train_lora_backward(tr, l, 3, A->dfch, dbr, C, fact, BT);
        /* fact = gelu(fch) */
        ecm_gelu_erf_backward(A->dfch, fch, A->dfch, (size_t)BT * F);
        /* fch = mid @ Wu^T + bu: d(mid) = dh + dfch @ Wu, into dx */
        memcpy(dx, dh, (size_t)BT * C * sizeof(float));
        ecm_train_linear_bwd(tr, dx, C, 1, g->up_w, g->up_b, A->dfch, mid, C, p->up_w, BT, F, C);
        ecm_train_lora_backward(tr, l, 2, dx, A->dfch, F, mid, BT);
        /* mid = LN1(h1): dh = d(h1) */
        ecm_layernorm_backward(dh, g->attn_norm_w, g->attn_norm_b, dx, h1, p->attn_norm_w,
                               A->ln1_mean + (size_t)l * BT, A->ln1_rstd + (size_t)l * BT, BT, C);
        /* h1 = x + [dropout](atty @ Wo^T + bo) */
        dbr = dh;
        if (dropping) {
            drop(tr, memcpy(A->dtmp, dh, (size_t)BT * C * sizeof(float)), (size_t)BT * C, 1 + 2 * l);
            dbr = A->dtmp;
        }
        ecm_train_linear_bwd(tr, A->datty, QD, 0, g->proj_w, g->proj_b, dbr, atty, QD, p->proj_w, BT, C, QD);
        ecm_train_lora_backward(tr, l, 1, A->datty, dbr, C, atty, BT);
        ecm_status st = ecm_attention_backward_masked(A->dqkv, A->datty, qkv, atty, lse, A->lens, 0, B, T, NH, NH,
                                                      HD, scale, tr->attn_work, tr->planned_threads);
        if (st != ECM_OK) return st;
        /* qkv = x @ Wqkv^T + b: d(x) = dh + dqkv @ Wqkv (skipped when nothing below trains) */
        int want_dx = l > 0 || need_dx0;
        if (want_dx) memcpy(dx, dh, (size_t)BT * C * sizeof(float));
        ecm_train_linear_bwd(tr, want_dx ? dx : NULL, C, 1, g->qkv_w, g->qkv_b, A->dqkv, x, C, p->qkv_w, BT, QKV, C);
        if (want_dx) ecm_train_lora_backward(tr, l, 0, dx, A->dqkv, QKV, x, BT);
        else ecm_train_lora_backward(tr, l, 0, dh, A->dqkv, QKV, x, BT); /* dA, dB only; dh is dead */
    }
    if (!need_dx0) return ECM_OK;
    /* x[0] = [dropout](LN(emb)); emb = word + position + type */
    if (dropping) drop(tr, dx, (size_t)BT * C, 0);
    ecm_layernorm_backward(dh, G->emb_norm_w, G->emb_norm_b, dx, A->emb, P->emb_norm_w, A->emb_mean, A->emb_rstd, BT,
                           C);
    ecm_embedding_backward(G->tok_embd, G->pos_embd, dh, tr->ids, BT, T, C, c->vocab);
    if (G->type_embd) ecm_embedding_backward(G->type_embd, NULL, dh, A->types, BT, T, C, c->type_vocab);
    return ECM_OK;
}
