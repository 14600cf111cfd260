/* train.c: the training state of the gpt2 and llama decoders (and the
 * parts the bert encoder of train_bert.c shares with them): fp32 master
 * parameters, gradients and Adam moments, each one slab carved into named
 * tensors; an activation slab planned for (B, T); the training forward,
 * backward, gradient zeroing and the optimizer step. Full fine-tuning trains
 * every tensor; with LoRA the base is frozen (no gradient or moment memory)
 * and only the adapters train.
 *
 * Weights arrive under the slot names of model.h (ecm_train_find), in
 * row-major (N, K) for linear layers. Tensors are kept unpacked because they
 * change every step; the GEMMs pack them on the fly (matmul.c).
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

typedef ecm_layout layout_ctx;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static float *tensor(layout_ctx *lc, const char *name, int rows, int cols, int trainable, int decay, float **grad) {
    size_t n;
    if (!ecm_mul_size((size_t)rows, (size_t)(cols ? cols : 1), &n)) lc->overflow = 1;
    size_t pofs = lc->pn, gofs = lc->gn;
    if (!ecm_add_size(lc->pn, round16(n), &lc->pn)) lc->overflow = 1;
    if (trainable && !ecm_add_size(lc->gn, round16(n), &lc->gn)) lc->overflow = 1;
    float *p = NULL;
    if (lc->assign) {
        ecm_train *tr = lc->tr;
        ecm_ttensor *t = &tr->tensors[lc->nt];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->rows = rows;
        t->cols = cols;
        t->p = p = tr->params + pofs;
        t->g = trainable ? tr->grads + gofs : NULL;
        t->m = trainable ? tr->adam_m + gofs : NULL;
        t->v = trainable ? tr->adam_v + gofs : NULL;
        t->decay = decay;
        t->set = 0;
        if (grad) *grad = t->g;
    } else if (grad) {
        *grad = NULL;
    }
    lc->nt++;
    return p;
}

static int qkv_rows(const ecm_config *c) { return (c->n_head + 2 * c->n_kv_head) * c->head_dim; }
static int up_rows(const ecm_config *c) { return c->arch == ECM_ARCH_LLAMA ? 2 * c->d_ff : c->d_ff; }

static void layout(layout_ctx *lc) {
    ecm_train *tr = lc->tr;
    const ecm_config *c = &tr->cfg;
    int C = c->d_model, QD = c->n_head * c->head_dim, QKV = qkv_rows(c), F = c->d_ff, FU = up_rows(c);
    int llama = c->arch == ECM_ARCH_LLAMA, full = !tr->lora_on;
    int qkv_b = !llama || c->attn_bias, proj_b = !llama || c->proj_bias, mlp_b = !llama || c->mlp_bias;
    ecm_tparams *P = &tr->P, *G = &tr->G;
    char nm[64];
    if (c->arch == ECM_ARCH_BERT) {
        ecm_bert_layout(lc);
        ecm_layout_lora(lc);
        return;
    }
    P->tok_embd = tensor(lc, "tok_embd", c->vocab, C, full, 1, &G->tok_embd);
    P->pos_embd = G->pos_embd = NULL;
    if (!llama) P->pos_embd = tensor(lc, "pos_embd", c->max_pos, C, full, 1, &G->pos_embd);
    for (int l = 0; l < c->n_layer; l++) {
        ecm_tlayer *p = &P->layers[l], *g = &G->layers[l];
        memset(p, 0, sizeof *p);
        memset(g, 0, sizeof *g);
#define NAME(s) (snprintf(nm, sizeof nm, "layers.%d." s, l), nm)
        p->attn_norm_w = tensor(lc, NAME("attn_norm.weight"), C, 0, full, 0, &g->attn_norm_w);
        if (!llama) p->attn_norm_b = tensor(lc, NAME("attn_norm.bias"), C, 0, full, 0, &g->attn_norm_b);
        p->qkv_w = tensor(lc, NAME("qkv.weight"), QKV, C, full, 1, &g->qkv_w);
        if (qkv_b) p->qkv_b = tensor(lc, NAME("qkv.bias"), QKV, 0, full, 0, &g->qkv_b);
        p->proj_w = tensor(lc, NAME("proj.weight"), C, QD, full, 1, &g->proj_w);
        if (proj_b) p->proj_b = tensor(lc, NAME("proj.bias"), C, 0, full, 0, &g->proj_b);
        p->ffn_norm_w = tensor(lc, NAME("ffn_norm.weight"), C, 0, full, 0, &g->ffn_norm_w);
        if (!llama) p->ffn_norm_b = tensor(lc, NAME("ffn_norm.bias"), C, 0, full, 0, &g->ffn_norm_b);
        p->up_w = tensor(lc, NAME("up.weight"), FU, C, full, 1, &g->up_w);
        if (mlp_b) p->up_b = tensor(lc, NAME("up.bias"), FU, 0, full, 0, &g->up_b);
        p->down_w = tensor(lc, NAME("down.weight"), C, F, full, 1, &g->down_w);
        if (mlp_b) p->down_b = tensor(lc, NAME("down.bias"), C, 0, full, 0, &g->down_b);
#undef NAME
    }
    P->norm_w = tensor(lc, "norm.weight", C, 0, full, 0, &G->norm_w);
    P->norm_b = G->norm_b = NULL;
    if (!llama) P->norm_b = tensor(lc, "norm.bias", C, 0, full, 0, &G->norm_b);
    if (tr->tied) {
        P->lm_head = P->tok_embd;
        G->lm_head = G->tok_embd;
    } else {
        P->lm_head = tensor(lc, "lm_head.weight", c->vocab, C, full, 1, &G->lm_head);
    }
    ecm_layout_lora(lc);
}

float *ecm_layout_tensor(ecm_layout *lc, const char *name, int rows, int cols, int trainable, int decay,
                         float **grad) {
    return tensor(lc, name, rows, cols, trainable, decay, grad);
}

void ecm_layout_lora(ecm_layout *lc) {
    ecm_train *tr = lc->tr;
    const ecm_config *c = &tr->cfg;
    int C = c->d_model, QD = c->n_head * c->head_dim, F = c->d_ff, llama = c->arch == ECM_ARCH_LLAMA;
    ecm_tparams *P = &tr->P;
    char nm[64];
    /* adapters, layer by layer, in target order */
    int ai = 0;
    for (int l = 0; l < c->n_layer && tr->lora_on; l++) {
        for (int t = 0; t < ECM_LORA_N_TARGETS; t++) {
            if (!(tr->lcfg.targets & (1u << t))) continue;
            ecm_lora *a = &tr->lora[ai++];
            ecm_tlayer *p = &P->layers[l];
            a->target = t;
            a->layer = l;
            a->R = tr->lcfg.rank;
            switch (t) {
            case ECM_LORA_Q: a->lin = 0; a->n0 = 0; a->n = QD; a->K = C; a->W = p->qkv_w; break;
            case ECM_LORA_K: a->lin = 0; a->n0 = QD; a->n = c->n_kv_head * c->head_dim; a->K = C; a->W = p->qkv_w; break;
            case ECM_LORA_V:
                a->lin = 0; a->n0 = QD + c->n_kv_head * c->head_dim; a->n = c->n_kv_head * c->head_dim; a->K = C;
                a->W = p->qkv_w;
                break;
            case ECM_LORA_O: a->lin = 1; a->n0 = 0; a->n = C; a->K = QD; a->W = p->proj_w; break;
            case ECM_LORA_GATE: a->lin = 2; a->n0 = 0; a->n = F; a->K = C; a->W = p->up_w; break;
            case ECM_LORA_UP: a->lin = 2; a->n0 = llama ? F : 0; a->n = F; a->K = C; a->W = p->up_w; break;
            default: a->lin = 3; a->n0 = 0; a->n = C; a->K = F; a->W = p->down_w; break;
            }
            snprintf(nm, sizeof nm, "layers.%d.lora_%s.A", l, ecm_lora_target_names[t]);
            a->A = tensor(lc, nm, a->R, a->K, 1, 1, &a->dA);
            snprintf(nm, sizeof nm, "layers.%d.lora_%s.B", l, ecm_lora_target_names[t]);
            a->B = tensor(lc, nm, a->n, a->R, 1, 1, &a->dB);
        }
    }
}

static ecm_status check(const ecm_config *c, int tied, int n_labels, const ecm_lora_config *lora) {
    if (c->arch != ECM_ARCH_GPT2 && c->arch != ECM_ARCH_LLAMA && c->arch != ECM_ARCH_BERT)
        return ecm_fail(ECM_ERR_VALUE, "training supports the gpt2, llama and bert architectures, got id %d", c->arch);
    if (c->arch == ECM_ARCH_BERT && (n_labels < 1 || n_labels > (1 << 20)))
        return ecm_fail(ECM_ERR_VALUE, "bert trains with a classification head: num_labels must be in [1, 2^20], "
                                       "got %d", n_labels);
    if (c->arch != ECM_ARCH_BERT && n_labels != 0)
        return ecm_fail(ECM_ERR_VALUE, "num_labels applies to bert only (decoders train their language-model head)");
    if (c->arch == ECM_ARCH_BERT && (c->n_kv_head != c->n_head || c->type_vocab < 1 || c->type_vocab > (1 << 20)))
        return ecm_fail(ECM_ERR_VALUE, "config: bert needs n_kv_head == n_head and type_vocab in [1, 2^20]");
    if (c->n_layer < 1 || c->n_layer > 1024 || c->d_model < 1 || c->d_model > 65536 || c->n_head < 1 ||
        c->n_head > 1024 || c->n_kv_head < 1 || c->head_dim < 1 || c->head_dim > 1024 || c->d_ff < 1 ||
        c->d_ff > (1 << 20) || c->vocab < 1 || c->vocab > (1 << 24) || c->max_pos < 1 || c->max_pos > (1 << 24))
        return ecm_fail(ECM_ERR_VALUE, "config: a size is out of range");
    if (c->n_head % c->n_kv_head)
        return ecm_fail(ECM_ERR_VALUE, "config: n_head (%d) must be a multiple of n_kv_head (%d)", c->n_head,
                        c->n_kv_head);
    if (c->arch == ECM_ARCH_LLAMA && c->head_dim % 2)
        return ecm_fail(ECM_ERR_VALUE, "config: head_dim must be even for rotary embeddings");
    if (c->arch == ECM_ARCH_GPT2 && c->n_kv_head != c->n_head)
        return ecm_fail(ECM_ERR_VALUE, "config: gpt2 needs n_kv_head == n_head");
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f)) return ecm_fail(ECM_ERR_VALUE, "config: norm_eps out of range");
    (void)tied;
    if (lora) {
        if (lora->rank < 1 || lora->rank > 4096)
            return ecm_fail(ECM_ERR_VALUE, "lora rank must be in [1, 4096], got %d", lora->rank);
        if (!(lora->dropout >= 0.0f && lora->dropout < 1.0f))
            return ecm_fail(ECM_ERR_VALUE, "lora dropout must be in [0, 1), got %g", (double)lora->dropout);
        if (!(lora->alpha > 0.0f && isfinite(lora->alpha)))
            return ecm_fail(ECM_ERR_VALUE, "lora alpha must be positive, got %g", (double)lora->alpha);
        if (lora->targets == 0 || lora->targets >= (1u << ECM_LORA_N_TARGETS))
            return ecm_fail(ECM_ERR_VALUE, "lora needs at least one target among q, k, v, o, gate, up, down");
        if (c->arch != ECM_ARCH_LLAMA && (lora->targets & (1u << ECM_LORA_GATE)))
            return ecm_fail(ECM_ERR_VALUE, "%s has no gate projection (lora targets: q, k, v, o, up, down)",
                            c->arch == ECM_ARCH_GPT2 ? "gpt2" : "bert");
    }
    return ECM_OK;
}

ecm_status ecm_train_init(ecm_train *tr, const ecm_config *cfg, int tied, const ecm_lora_config *lora) {
    return ecm_train_init_head(tr, cfg, tied, 0, lora);
}

ecm_status ecm_train_init_head(ecm_train *tr, const ecm_config *cfg, int tied, int n_labels,
                               const ecm_lora_config *lora) {
    memset(tr, 0, sizeof *tr);
    ecm_status st = check(cfg, tied, n_labels, lora);
    if (st != ECM_OK) return st;
    tr->cfg = *cfg;
    tr->n_labels = n_labels;
    tr->tied = tied != 0;
    tr->n_threads = ecm_default_threads();
    if (lora) {
        tr->lora_on = 1;
        tr->lcfg = *lora;
        tr->lora_scale = lora->alpha / (float)lora->rank;
        for (int t = 0; t < ECM_LORA_N_TARGETS; t++) tr->n_lora += (lora->targets >> t) & 1;
        tr->n_lora *= cfg->n_layer;
    }
    tr->P.layers = calloc((size_t)cfg->n_layer, sizeof(ecm_tlayer));
    tr->G.layers = calloc((size_t)cfg->n_layer, sizeof(ecm_tlayer));
    tr->lora = tr->n_lora ? calloc((size_t)tr->n_lora, sizeof(ecm_lora)) : NULL;
    if (!tr->P.layers || !tr->G.layers || (tr->n_lora && !tr->lora)) {
        ecm_train_free(tr);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    }
    layout_ctx lc = {tr, 0, 0, 0, 0, 0};
    layout(&lc);
    size_t pb, gb;
    if (lc.overflow || !ecm_mul_size(lc.pn, 4, &pb) || !ecm_mul_size(lc.gn, 4, &gb)) {
        ecm_train_free(tr);
        return ecm_fail(ECM_ERR_VALUE, "config: the model's size overflows");
    }
    tr->tensors = calloc((size_t)lc.nt, sizeof(ecm_ttensor));
    tr->params = ecm_alloc(pb);
    tr->grads = lc.gn ? ecm_alloc(gb) : NULL;
    tr->adam_m = lc.gn ? ecm_alloc(gb) : NULL;
    tr->adam_v = lc.gn ? ecm_alloc(gb) : NULL;
    tr->inv_freq = ecm_alloc(((size_t)cfg->head_dim / 2 + 1) * sizeof(float));
    if (!tr->tensors || !tr->params || !tr->inv_freq || (lc.gn && (!tr->grads || !tr->adam_m || !tr->adam_v))) {
        ecm_train_free(tr);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory for %.1f MiB of parameters and %.1f MiB of training state",
                        (double)pb / (1 << 20), 3.0 * (double)gb / (1 << 20));
    }
    layout_ctx lc2 = {tr, 1, 0, 0, 0, 0};
    layout(&lc2);
    ECM_ASSERT(lc2.pn == lc.pn && lc2.gn == lc.gn && lc2.nt == lc.nt);
    tr->n_tensors = lc.nt;
    tr->n_params = lc.pn;
    tr->grad_floats = lc.gn;
    tr->n_trainable = 0;
    for (int i = 0; i < tr->n_tensors; i++)
        if (tr->tensors[i].g) tr->n_trainable += (size_t)tr->tensors[i].rows * (tr->tensors[i].cols ? tr->tensors[i].cols : 1);
    for (int i = 0; i < tr->n_lora; i++) {
        ecm_lora *a = &tr->lora[i];
        ecm_lora_init(a, lora->seed * 0x100000001b3ULL + (uint64_t)i * 0x9e3779b97f4a7c15ULL + 1);
        for (int j = 0; j < tr->n_tensors; j++)
            if (tr->tensors[j].p == a->A || tr->tensors[j].p == a->B) tr->tensors[j].set = 1;
    }
    if (cfg->arch == ECM_ARCH_LLAMA) ecm_rope_inv_freq(tr->inv_freq, cfg->head_dim, &cfg->rope);
    return ECM_OK;
}

static void free_acts(ecm_train *tr) {
    ecm_free(tr->acts);
    ecm_free(tr->work);
    ecm_free(tr->attn_work);
    free(tr->ids);
    tr->acts = tr->work = tr->attn_work = NULL;
    tr->ids = tr->targets = tr->pos = NULL;
    tr->mask = NULL;
    tr->B = tr->T = 0;
    tr->have_fwd = 0;
    memset(&tr->A, 0, sizeof tr->A);
    memset(&tr->BA, 0, sizeof tr->BA);
}

void ecm_train_release_activations(ecm_train *tr) { free_acts(tr); }

void ecm_train_free(ecm_train *tr) {
    free_acts(tr);
    ecm_free(tr->params);
    ecm_free(tr->grads);
    ecm_free(tr->adam_m);
    ecm_free(tr->adam_v);
    ecm_free(tr->inv_freq);
    free(tr->P.layers);
    free(tr->G.layers);
    free(tr->lora);
    free(tr->tensors);
    memset(tr, 0, sizeof *tr);
}

int ecm_train_find(const ecm_train *tr, const char *name) {
    for (int i = 0; i < tr->n_tensors; i++)
        if (!strcmp(tr->tensors[i].name, name)) return i;
    return -1;
}

ecm_status ecm_train_check_complete(const ecm_train *tr) {
    for (int i = 0; i < tr->n_tensors; i++)
        if (!tr->tensors[i].set) return ecm_fail(ECM_ERR_NOT_FOUND, "missing weight: %s", tr->tensors[i].name);
    return ECM_OK;
}

/* ------------------------------------------------------------ activations */

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

/* Workspace of the three products of a linear layer (N, K) over BT rows. */
static size_t linear_work(int BT, int N, int K) {
    size_t w = ecm_gemm_work_floats(N, K);             /* forward: x @ W^T   */
    w = maxz(w, ecm_gemm_work_floats(K, N));            /* dX = dY @ W        */
    w = maxz(w, ecm_gemm_tn_work_floats(BT, N, K));     /* dW += dY^T @ X     */
    return w;
}

size_t ecm_train_linear_work(int BT, int N, int K) { return linear_work(BT, N, K); }

static ecm_status plan(ecm_train *tr, int B, int T) {
    free_acts(tr);
    const ecm_config *c = &tr->cfg;
    size_t BT = (size_t)B * T, L = (size_t)c->n_layer, C = (size_t)c->d_model;
    size_t QD = (size_t)c->n_head * c->head_dim, QKV = (size_t)qkv_rows(c), F = (size_t)c->d_ff;
    size_t FU = (size_t)up_rows(c), V = (size_t)c->vocab, R = tr->lora_on ? (size_t)tr->lcfg.rank : 0;
    size_t maxK = maxz(maxz(C, QD), F);
    /* Every size below is a product of config fields checked at init (each
     * < 2^24) and BT < 2^31: they fit size_t on 64-bit; the sum is checked. */
    struct { float **p; size_t n; } parts[] = {
        {&tr->A.res, (L + 1) * BT * C}, {&tr->A.ln1, L * BT * C}, {&tr->A.ln1_mean, L * BT},
        {&tr->A.ln1_rstd, L * BT}, {&tr->A.qkv, L * BT * QKV}, {&tr->A.atty, L * BT * QD},
        {&tr->A.lse, L * BT * (size_t)c->n_head}, {&tr->A.resmid, L * BT * C}, {&tr->A.ln2, L * BT * C},
        {&tr->A.ln2_mean, L * BT}, {&tr->A.ln2_rstd, L * BT}, {&tr->A.fch, L * BT * FU}, {&tr->A.fact, L * BT * F},
        {&tr->A.lnf, BT * C}, {&tr->A.lnf_mean, BT}, {&tr->A.lnf_rstd, BT}, {&tr->A.logits, BT * V},
        {&tr->A.losses, BT}, {&tr->A.lora_xa, (size_t)tr->n_lora * BT * R}, {&tr->A.dres, BT * C},
        {&tr->A.dtmp, BT * C}, {&tr->A.dln, BT * C}, {&tr->A.dqkv, BT * QKV}, {&tr->A.datty, BT * QD},
        {&tr->A.dfch, BT * FU}, {&tr->A.dfact, BT * F}, {&tr->A.xd, R ? BT * maxK : 0}, {&tr->A.dxa, BT * R},
    };
    size_t total = 0;
    int n_parts = (int)(sizeof parts / sizeof parts[0]);
    for (int i = 0; i < n_parts; i++)
        if (!ecm_add_size(total, round16(parts[i].n), &total))
            return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
    int bt = (int)BT, iC = (int)C, iQD = (int)QD, iQKV = (int)QKV, iF = (int)F, iFU = (int)FU, iV = (int)V;
    size_t work = linear_work(bt, iQKV, iC);
    work = maxz(work, linear_work(bt, iC, iQD));
    work = maxz(work, linear_work(bt, iFU, iC));
    work = maxz(work, linear_work(bt, iC, iF));
    work = maxz(work, linear_work(bt, iV, iC));
    for (int i = 0; i < tr->n_lora; i++) {
        const ecm_lora *a = &tr->lora[i];
        work = maxz(work, linear_work(bt, a->R, a->K));
        work = maxz(work, linear_work(bt, a->n, a->R));
    }
    size_t bytes;
    if (!ecm_mul_size(total, 4, &bytes)) return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
    tr->acts = ecm_alloc(bytes);
    tr->work = ecm_alloc(work * 4);
    tr->ids = malloc(BT * 3 * sizeof(int32_t) + BT);
    int nt = tr->n_threads > 0 ? tr->n_threads : 1;
    tr->attn_work = ecm_alloc((size_t)nt * ecm_attention_train_work_floats(T, c->head_dim) * 4);
    tr->planned_threads = nt;
    if (!tr->acts || !tr->work || !tr->ids || !tr->attn_work) {
        free_acts(tr);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory for the activations of a %d x %d batch (%.1f MiB)", B, T,
                        (double)bytes / (1 << 20));
    }
    size_t off = 0;
    for (int i = 0; i < n_parts; i++) {
        *parts[i].p = tr->acts + off;
        off += round16(parts[i].n);
    }
    tr->acts_floats = total;
    tr->work_floats = work;
    tr->targets = tr->ids + BT;
    tr->pos = tr->targets + BT;
    tr->mask = (uint8_t *)(tr->pos + BT);
    tr->B = B;
    tr->T = T;
    return ECM_OK;
}

/* ---------------------------------------------------------------- forward */

void ecm_train_set_threads(const ecm_train *tr) {
#ifdef _OPENMP
    omp_set_num_threads(tr->n_threads > 0 ? tr->n_threads : 1);
#else
    (void)tr;
#endif
}

static uint64_t lora_stream(const ecm_train *tr, int i) {
    return tr->lcfg.seed * 0xd1342543de82ef95ULL + tr->fwd_count * 0x9e3779b97f4a7c15ULL + (uint64_t)i * 0x2545f4914f6cdd1dULL;
}

static void lora_fwd(ecm_train *tr, int l, int lin, float *out, int ldo, const float *x, int BT) {
    for (int i = 0; i < tr->n_lora; i++) {
        ecm_lora *a = &tr->lora[i];
        if (a->layer != l || a->lin != lin) continue;
        a->xa = tr->A.lora_xa + (size_t)i * BT * a->R;
        ecm_lora_forward(a, out, ldo, x, BT, tr->lora_scale, tr->lcfg.dropout, lora_stream(tr, i), tr->A.xd, tr->work);
    }
}

static void lora_bwd(ecm_train *tr, int l, int lin, float *dx, const float *dout, int ldo, const float *x, int BT) {
    for (int i = 0; i < tr->n_lora; i++) {
        ecm_lora *a = &tr->lora[i];
        if (a->layer != l || a->lin != lin) continue;
        a->xa = tr->A.lora_xa + (size_t)i * BT * a->R;
        ecm_lora_backward(a, dx, dout, ldo, x, BT, tr->lora_scale, tr->lcfg.dropout, lora_stream(tr, i), tr->A.xd,
                          tr->A.dxa, tr->work);
    }
}

void ecm_train_lora_forward(ecm_train *tr, int l, int lin, float *out, int ldo, const float *x, int BT) {
    lora_fwd(tr, l, lin, out, ldo, x, BT);
}

void ecm_train_lora_backward(ecm_train *tr, int l, int lin, float *dx, const float *dout, int ldo, const float *x,
                             int BT) {
    lora_bwd(tr, l, lin, dx, dout, ldo, x, BT);
}

/* out[BT, N] (= or +=) x[BT, K] @ w[N, K]^T + b */
void ecm_train_linear(ecm_train *tr, float *out, int ldo, const float *x, int ldx, const float *w, const float *b,
                      int M, int N, int K, int accumulate) {
    ecm_gemm_f32(out, ldo, x, ldx, w, K, 0, b, M, N, K, accumulate, tr->work);
}

void ecm_train_linear_bwd(ecm_train *tr, float *dx, int lddx, int acc, float *dw, float *db, const float *dout,
                          const float *x, int ldx, const float *w, int M, int N, int K) {
    if (dx) ecm_gemm_f32(dx, lddx, dout, N, w, K, 1, NULL, M, K, N, acc, tr->work);
    if (dw) ecm_gemm_tn_f32(dw, K, dout, N, x, ldx, M, N, K, tr->work);
    if (db) ecm_bias_backward(db, dout, M, N);
}

/* The decoders' rows are contiguous: strides N and K, dx written. */
static void linear(ecm_train *tr, float *out, const float *x, const float *w, const float *b, int BT, int N, int K,
                   int accumulate) {
    ecm_train_linear(tr, out, N, x, K, w, b, BT, N, K, accumulate);
}

static void linear_bwd(ecm_train *tr, float *dx, float *dw, float *db, const float *dout, const float *x,
                       const float *w, int BT, int N, int K) {
    ecm_train_linear_bwd(tr, dx, K, 0, dw, db, dout, x, K, w, BT, N, K);
}

ecm_status ecm_train_forward(ecm_train *tr, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int B,
                             int T, float *loss) {
    const ecm_config *c = &tr->cfg;
    if (c->arch == ECM_ARCH_BERT)
        return ecm_fail(ECM_ERR_STATE, "a bert trainer takes labels (ecm_bert_train_forward), not next-token targets");
    if (B <= 0 || T <= 0) return ecm_fail(ECM_ERR_VALUE, "the batch must not be empty, got %d x %d", B, T);
    if (T > c->max_pos)
        return ecm_fail(ECM_ERR_VALUE, "sequence length %d exceeds the model's context length %d", T, c->max_pos);
    if ((size_t)B * T > (size_t)1 << 30) return ecm_fail(ECM_ERR_VALUE, "batch %d x %d is too large", B, T);
    int BT = B * T, C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim;
    int QD = NH * HD, QKV = qkv_rows(c), F = c->d_ff, FU = up_rows(c), V = c->vocab, L = c->n_layer;
    for (int t = 0; t < BT; t++) {
        if (ids[t] < 0 || ids[t] >= V)
            return ecm_fail(ECM_ERR_VALUE, "token id %d at (%d, %d) is out of range [0, %d)", ids[t], t / T, t % T, V);
        if (targets[t] >= V)
            return ecm_fail(ECM_ERR_VALUE, "target %d at (%d, %d) is out of range [0, %d)", targets[t], t / T, t % T,
                            V);
    }
    if (B != tr->B || T != tr->T || tr->planned_threads != (tr->n_threads > 0 ? tr->n_threads : 1)) {
        ecm_status st = plan(tr, B, T);
        if (st != ECM_OK) return st;
    }
    tr->have_fwd = 0;
    ecm_train_set_threads(tr);
    memcpy(tr->ids, ids, (size_t)BT * sizeof(int32_t));
    for (int t = 0; t < BT; t++) {
        tr->targets[t] = targets[t] < 0 ? -1 : targets[t];
        tr->mask[t] = mask ? mask[t] != 0 : 1;
        tr->pos[t] = t % T;
    }
    tr->fwd_count++;
    ecm_tacts *A = &tr->A;
    const ecm_tparams *P = &tr->P;
    int llama = c->arch == ECM_ARCH_LLAMA;
    float scale = 1.0f / sqrtf((float)HD);

    for (int t = 0; t < BT; t++) {
        float *x = A->res + (size_t)t * C;
        const float *te = P->tok_embd + (size_t)ids[t] * C;
        if (llama) memcpy(x, te, (size_t)C * sizeof(float));
        else {
            const float *pe = P->pos_embd + (size_t)(t % T) * C;
            for (int i = 0; i < C; i++) x[i] = te[i] + pe[i];
        }
    }
    for (int l = 0; l < L; l++) {
        const ecm_tlayer *p = &P->layers[l];
        float *res = A->res + (size_t)l * BT * C, *out = A->res + (size_t)(l + 1) * BT * C;
        float *ln1 = A->ln1 + (size_t)l * BT * C, *ln2 = A->ln2 + (size_t)l * BT * C;
        float *qkv = A->qkv + (size_t)l * BT * QKV, *atty = A->atty + (size_t)l * BT * QD;
        float *mid = A->resmid + (size_t)l * BT * C, *fch = A->fch + (size_t)l * BT * FU;
        float *fact = A->fact + (size_t)l * BT * F, *lse = A->lse + (size_t)l * BT * NH;
        if (llama) ecm_rmsnorm_forward_train(ln1, A->ln1_rstd + (size_t)l * BT, res, p->attn_norm_w, BT, C, c->norm_eps);
        else
            ecm_layernorm_forward_train(ln1, A->ln1_mean + (size_t)l * BT, A->ln1_rstd + (size_t)l * BT, res,
                                        p->attn_norm_w, p->attn_norm_b, BT, C, c->norm_eps);
        linear(tr, qkv, ln1, p->qkv_w, p->qkv_b, BT, QKV, C, 0);
        lora_fwd(tr, l, 0, qkv, QKV, ln1, BT);
        if (llama) {
            ecm_rope_forward(qkv, QKV, tr->pos, tr->inv_freq, BT, NH, HD, 0); /* rotate-half: HF weights */
            ecm_rope_forward(qkv + QD, QKV, tr->pos, tr->inv_freq, BT, NKV, HD, 0);
        }
        ecm_status st = ecm_attention_forward_train(atty, lse, qkv, B, T, NH, NKV, HD, scale, tr->attn_work,
                                                    tr->planned_threads);
        if (st != ECM_OK) return st;
        memcpy(mid, res, (size_t)BT * C * sizeof(float));
        linear(tr, mid, atty, p->proj_w, p->proj_b, BT, C, QD, 1); /* mid = res + atty @ Wo^T + bo */
        lora_fwd(tr, l, 1, mid, C, atty, BT);
        if (llama) ecm_rmsnorm_forward_train(ln2, A->ln2_rstd + (size_t)l * BT, mid, p->ffn_norm_w, BT, C, c->norm_eps);
        else
            ecm_layernorm_forward_train(ln2, A->ln2_mean + (size_t)l * BT, A->ln2_rstd + (size_t)l * BT, mid,
                                        p->ffn_norm_w, p->ffn_norm_b, BT, C, c->norm_eps);
        linear(tr, fch, ln2, p->up_w, p->up_b, BT, FU, C, 0);
        lora_fwd(tr, l, 2, fch, FU, ln2, BT);
        if (llama) ecm_swiglu_forward(fact, fch, BT, F);
        else ecm_gelu_tanh_forward(fact, fch, (size_t)BT * F);
        memcpy(out, mid, (size_t)BT * C * sizeof(float));
        linear(tr, out, fact, p->down_w, p->down_b, BT, C, F, 1); /* out = mid + fact @ Wd^T + bd */
        lora_fwd(tr, l, 3, out, C, fact, BT);
    }
    const float *last = A->res + (size_t)L * BT * C;
    if (llama) ecm_rmsnorm_forward_train(A->lnf, A->lnf_rstd, last, P->norm_w, BT, C, c->norm_eps);
    else ecm_layernorm_forward_train(A->lnf, A->lnf_mean, A->lnf_rstd, last, P->norm_w, P->norm_b, BT, C, c->norm_eps);
    linear(tr, A->logits, A->lnf, P->lm_head, NULL, BT, V, C, 0);
    tr->n_counted = ecm_crossentropy_forward(A->losses, A->logits, tr->targets, tr->mask, BT, V);
    double sum = 0.0;
    for (int t = 0; t < BT; t++) sum += A->losses[t];
    *loss = tr->n_counted ? (float)(sum / tr->n_counted) : 0.0f;
    tr->have_fwd = 1;
    return ECM_OK;
}

/* --------------------------------------------------------------- backward */

ecm_status ecm_train_backward(ecm_train *tr, float grad_scale) {
    if (tr->cfg.arch == ECM_ARCH_BERT) return ecm_bert_train_backward(tr, grad_scale);
    if (!tr->have_fwd) return ecm_fail(ECM_ERR_STATE, "backward() needs a forward() of the batch first");
    tr->have_fwd = 0; /* the logits become gradients: one backward per forward */
    const ecm_config *c = &tr->cfg;
    int B = tr->B, T = tr->T, BT = B * T, C = c->d_model, NH = c->n_head, NKV = c->n_kv_head, HD = c->head_dim;
    int QD = NH * HD, QKV = qkv_rows(c), F = c->d_ff, FU = up_rows(c), V = c->vocab, L = c->n_layer;
    int llama = c->arch == ECM_ARCH_LLAMA;
    float scale = 1.0f / sqrtf((float)HD);
    ecm_tacts *A = &tr->A;
    const ecm_tparams *P = &tr->P, *G = &tr->G;
    ecm_train_set_threads(tr);

    /* loss = sum_t losses[t] / n_counted */
    ecm_crossentropy_backward(A->logits, tr->targets, tr->mask, tr->n_counted ? grad_scale / tr->n_counted : 0.0f,
                              BT, V);
    float *dlnf = A->dln, *dres = A->dres, *dtmp = A->dtmp, *dln = A->dln;
    linear_bwd(tr, dlnf, G->lm_head, NULL, A->logits, A->lnf, P->lm_head, BT, V, C);
    const float *last = A->res + (size_t)L * BT * C;
    if (llama) ecm_rmsnorm_backward(dres, G->norm_w, dlnf, last, P->norm_w, A->lnf_rstd, BT, C);
    else ecm_layernorm_backward(dres, G->norm_w, G->norm_b, dlnf, last, P->norm_w, A->lnf_mean, A->lnf_rstd, BT, C);

    for (int l = L - 1; l >= 0; l--) {
        const ecm_tlayer *p = &P->layers[l], *g = &G->layers[l];
        const float *res = A->res + (size_t)l * BT * C;
        const float *ln1 = A->ln1 + (size_t)l * BT * C, *ln2 = A->ln2 + (size_t)l * BT * C;
        const float *qkv = A->qkv + (size_t)l * BT * QKV, *atty = A->atty + (size_t)l * BT * QD;
        const float *mid = A->resmid + (size_t)l * BT * C, *fch = A->fch + (size_t)l * BT * FU;
        const float *fact = A->fact + (size_t)l * BT * F, *lse = A->lse + (size_t)l * BT * NH;
        /* out = mid + fact @ Wd^T + bd: dres is d(out), and flows on to d(mid) */
        linear_bwd(tr, A->dfact, g->down_w, g->down_b, dres, fact, p->down_w, BT, C, F);
        lora_bwd(tr, l, 3, A->dfact, dres, C, fact, BT);
        if (llama) ecm_swiglu_backward(A->dfch, fch, A->dfact, BT, F);
        else ecm_gelu_tanh_backward(A->dfch, fch, A->dfact, (size_t)BT * F);
        linear_bwd(tr, dln, g->up_w, g->up_b, A->dfch, ln2, p->up_w, BT, FU, C);
        lora_bwd(tr, l, 2, dln, A->dfch, FU, ln2, BT);
        if (llama) ecm_rmsnorm_backward(dtmp, g->ffn_norm_w, dln, mid, p->ffn_norm_w, A->ln2_rstd + (size_t)l * BT, BT, C);
        else
            ecm_layernorm_backward(dtmp, g->ffn_norm_w, g->ffn_norm_b, dln, mid, p->ffn_norm_w,
                                   A->ln2_mean + (size_t)l * BT, A->ln2_rstd + (size_t)l * BT, BT, C);
        ecm_add_forward(dres, dres, dtmp, (size_t)BT * C); /* d(mid) */
        /* mid = res + atty @ Wo^T + bo */
        linear_bwd(tr, A->datty, g->proj_w, g->proj_b, dres, atty, p->proj_w, BT, C, QD);
        lora_bwd(tr, l, 1, A->datty, dres, C, atty, BT);
        ecm_status st = ecm_attention_backward(A->dqkv, A->datty, qkv, atty, lse, B, T, NH, NKV, HD, scale,
                                               tr->attn_work, tr->planned_threads);
        if (st != ECM_OK) return st;
        if (llama) {
            ecm_rope_backward(A->dqkv, QKV, tr->pos, tr->inv_freq, BT, NH, HD);
            ecm_rope_backward(A->dqkv + QD, QKV, tr->pos, tr->inv_freq, BT, NKV, HD);
        }
        linear_bwd(tr, dln, g->qkv_w, g->qkv_b, A->dqkv, ln1, p->qkv_w, BT, QKV, C);
        lora_bwd(tr, l, 0, dln, A->dqkv, QKV, ln1, BT);
        if (llama) ecm_rmsnorm_backward(dtmp, g->attn_norm_w, dln, res, p->attn_norm_w, A->ln1_rstd + (size_t)l * BT, BT, C);
        else
            ecm_layernorm_backward(dtmp, g->attn_norm_w, g->attn_norm_b, dln, res, p->attn_norm_w,
                                   A->ln1_mean + (size_t)l * BT, A->ln1_rstd + (size_t)l * BT, BT, C);
        ecm_add_forward(dres, dres, dtmp, (size_t)BT * C); /* d(res) */
    }
    if (G->tok_embd || G->pos_embd) ecm_embedding_backward(G->tok_embd, G->pos_embd, dres, tr->ids, BT, T, C, V);
    return ECM_OK;
}

/* -------------------------------------------------------------- optimizer */

void ecm_train_zero_grad(ecm_train *tr) {
    if (tr->grad_floats) memset(tr->grads, 0, tr->grad_floats * sizeof(float));
}

ecm_status ecm_train_step(ecm_train *tr, const ecm_adamw *h, float max_norm, float *norm) {
    if (!(h->lr >= 0.0f) || !(h->beta1 >= 0.0f && h->beta1 < 1.0f) || !(h->beta2 >= 0.0f && h->beta2 < 1.0f) ||
        !(h->eps > 0.0f) || !(h->weight_decay >= 0.0f))
        return ecm_fail(ECM_ERR_VALUE, "AdamW hyper-parameters out of range (lr >= 0, 0 <= betas < 1, eps > 0, "
                                       "weight_decay >= 0)");
    ecm_train_set_threads(tr);
    double ss = 0.0;
    for (int i = 0; i < tr->n_tensors; i++) {
        const ecm_ttensor *t = &tr->tensors[i];
        if (t->g) ss += ecm_grad_sumsq(t->g, (size_t)t->rows * (t->cols ? t->cols : 1));
    }
    float gn = (float)sqrt(ss);
    if (norm) *norm = gn;
    if (!isfinite(gn))
        return ecm_fail(ECM_ERR_STATE, "the gradient norm is not finite (%g): the step was skipped", (double)gn);
    float clip = 1.0f;
    if (max_norm > 0.0f) {
        float coef = max_norm / (gn + 1e-6f); /* torch.nn.utils.clip_grad_norm_ */
        if (coef < 1.0f) clip = coef;
    }
    tr->adam_t++;
    for (int i = 0; i < tr->n_tensors; i++) {
        ecm_ttensor *t = &tr->tensors[i];
        if (!t->g) continue;
        size_t n = (size_t)t->rows * (t->cols ? t->cols : 1);
        if (clip != 1.0f) ecm_scale_f32(t->g, clip, n);
        ecm_adamw_update(t->p, t->g, t->m, t->v, n, h, tr->adam_t, t->decay);
    }
    return ECM_OK;
}

void ecm_train_export(const ecm_train *tr, int i, float *dst, int merged) {
    const ecm_ttensor *t = &tr->tensors[i];
    size_t n = (size_t)t->rows * (t->cols ? t->cols : 1);
    memcpy(dst, t->p, n * sizeof(float));
    if (!merged) return;
    for (int j = 0; j < tr->n_lora; j++)
        if (tr->lora[j].W == t->p) ecm_lora_merge(dst, &tr->lora[j], tr->lora_scale);
}
