/* model.c: configuration checks, the weight slab and its named slots, the
 * KV cache, and the entry points that dispatch to an architecture. */
#define _GNU_SOURCE
#include "model.h"
#include "quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ config */

static ecm_status check_config(const ecm_config *c) {
#define RANGE(field, lo, hi)                                                                       \
    if (c->field < (lo) || c->field > (hi))                                                        \
        return ecm_fail(ECM_ERR_VALUE, "config: %s must be in [%d, %d], got %d", #field, (int)(lo), \
                        (int)(hi), (int)c->field);
    if (c->arch != ECM_ARCH_GPT2 && c->arch != ECM_ARCH_LLAMA && c->arch != ECM_ARCH_BERT)
        return ecm_fail(ECM_ERR_VALUE, "config: unknown architecture id %d", c->arch);
    RANGE(n_layer, 1, 1024);
    RANGE(d_model, 1, 65536);
    RANGE(n_head, 1, 1024);
    RANGE(n_kv_head, 1, 1024);
    RANGE(head_dim, 1, 1024);
    RANGE(d_ff, 1, 1 << 20);
    RANGE(vocab, 1, 1 << 24);
    RANGE(max_pos, 1, 1 << 24);
    if (c->n_head % c->n_kv_head)
        return ecm_fail(ECM_ERR_VALUE, "config: n_head (%d) must be a multiple of n_kv_head (%d)", c->n_head,
                        c->n_kv_head);
    if (c->arch == ECM_ARCH_LLAMA && c->head_dim % 2)
        return ecm_fail(ECM_ERR_VALUE, "config: head_dim must be even for rotary embeddings, got %d", c->head_dim);
    if (c->arch != ECM_ARCH_LLAMA && c->n_kv_head != c->n_head)
        return ecm_fail(ECM_ERR_VALUE, "config: gpt2 and bert need n_kv_head == n_head");
    if (c->arch != ECM_ARCH_LLAMA && c->max_pos > (1 << 20))
        return ecm_fail(ECM_ERR_VALUE, "config: max_pos must be at most %d for learned positions, got %d", 1 << 20,
                        c->max_pos);
    if (c->arch == ECM_ARCH_BERT) RANGE(type_vocab, 1, 1024);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return ecm_fail(ECM_ERR_VALUE, "config: norm_eps must be in (0, 1), got %g", (double)c->norm_eps);
    if (c->arch == ECM_ARCH_LLAMA) {
        if (!(c->rope.theta > 1.0f && c->rope.theta < 1e12f))
            return ecm_fail(ECM_ERR_VALUE, "config: rope_theta must be in (1, 1e12), got %g", (double)c->rope.theta);
        if (c->rope.scaling != ECM_ROPE_NONE && !(c->rope.factor >= 1.0f && c->rope.factor <= 1024.0f))
            return ecm_fail(ECM_ERR_VALUE, "config: rope_scaling factor must be in [1, 1024], got %g",
                            (double)c->rope.factor);
        if (c->rope.scaling == ECM_ROPE_LLAMA3 &&
            !(c->rope.low_freq_factor > 0 && c->rope.high_freq_factor > c->rope.low_freq_factor &&
              c->rope.original_max_pos > 0))
            return ecm_fail(ECM_ERR_VALUE, "config: llama3 rope_scaling needs 0 < low_freq_factor < "
                                           "high_freq_factor and original_max_position_embeddings > 0");
    }
    return ECM_OK;
#undef RANGE
}

/* ------------------------------------------------------------ slots, slab */

typedef struct {
    ecm_model *m;
    const ecm_weight_type *types;
    int n_types;
    float *base;   /* NULL on the sizing pass */
    size_t used;   /* floats */
    int overflow;
    int n_slots;
} layout_ctx;

static float *carve(layout_ctx *lc, size_t n) {
    size_t aligned = (n + 15) & ~(size_t)15; /* keep every tensor 64-byte aligned */
    if (aligned < n || !ecm_add_size(lc->used, aligned, &lc->used)) lc->overflow = 1;
    return lc->base ? lc->base + (lc->used - aligned) : NULL;
}

static void add_slot(layout_ctx *lc, const char *name, int kind, int d0, int d1, float *dst, ecm_linear *lin) {
    if (lc->base) {
        ecm_slot *s = &lc->m->slots[lc->n_slots];
        snprintf(s->name, sizeof s->name, "%s", name);
        s->kind = kind;
        s->n_dims = d1 ? 2 : 1;
        s->shape[0] = d0;
        s->shape[1] = d1;
        s->dst = dst;
        s->lin = lin;
        s->set = 0;
    }
    lc->n_slots++;
}

static float *vec(layout_ctx *lc, const char *name, int n) {
    float *p = carve(lc, (size_t)n);
    add_slot(lc, name, ECM_SLOT_VECTOR, n, 0, p, NULL);
    return p;
}

static float *table(layout_ctx *lc, const char *name, int rows, int cols) {
    size_t n;
    if (!ecm_mul_size((size_t)rows, (size_t)cols, &n)) lc->overflow = 1;
    float *p = carve(lc, n);
    add_slot(lc, name, ECM_SLOT_TABLE, rows, cols, p, NULL);
    return p;
}

static int weight_type(const layout_ctx *lc, const char *name) {
    for (int i = 0; i < lc->n_types; i++)
        if (!strcmp(lc->types[i].name, name)) return lc->types[i].qtype;
    return 0;
}

static void linear(layout_ctx *lc, ecm_linear *lin, const char *prefix, int N, int K, int bias) {
    char name[64];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int qt = weight_type(lc, name);
    if (qt == 1 || qt == 30) qt = 0; /* F16 / BF16 weights are widened to packed fp32 */
    lin->N = N;
    lin->K = K;
    lin->qtype = qt;
    lin->w.N = N;
    lin->w.K = K;
    lin->w.data = NULL;
    lin->q = NULL;
    if (qt == 0) {
        lin->w.data = carve(lc, ecm_packed_floats(N, K));
    } else {
        size_t row = ecm_quant_row_bytes(qt, K), bytes;
        if (ecm_tiled_type(qt)) {
            if (!(bytes = ecm_tiled_bytes(qt, N, K))) lc->overflow = 1;
        } else if (!row || !ecm_mul_size(row, (size_t)N, &bytes)) {
            lc->overflow = 1, bytes = 0;
        }
        lin->q = carve(lc, (bytes + 3) / 4);
    }
    add_slot(lc, name, ECM_SLOT_LINEAR, N, K, NULL, lin);
    lin->b = NULL;
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        lin->b = vec(lc, name, N);
    }
}

static void layout(layout_ctx *lc) {
    ecm_model *m = lc->m;
    const ecm_config *c = &m->cfg;
    int C = c->d_model, HD = c->head_dim, QKV = (c->n_head + 2 * c->n_kv_head) * HD;
    int is_llama = c->arch == ECM_ARCH_LLAMA, is_bert = c->arch == ECM_ARCH_BERT;
    int has_bias = !is_llama; /* gpt2 and bert always have biases */
    int norm_bias = !is_llama;
    char p[64];
    int et = weight_type(lc, "tok_embd");
    if (et != 0 && et != 1 && et != 30 && !is_bert) { /* kept in its blocks; rows dequantised on lookup */
        ecm_linear *e = &m->tok_embd_q;
        size_t row = ecm_quant_row_bytes(et, C), bytes;
        if (ecm_tiled_type(et)) {
            if (!(bytes = ecm_tiled_bytes(et, c->vocab, C))) lc->overflow = 1;
        } else if (!row || !ecm_mul_size(row, (size_t)c->vocab, &bytes)) {
            lc->overflow = 1, bytes = 0;
        }
        memset(e, 0, sizeof *e);
        e->N = c->vocab;
        e->K = C;
        e->qtype = et;
        e->q = carve(lc, (bytes + 3) / 4);
        add_slot(lc, "tok_embd", ECM_SLOT_LINEAR, c->vocab, C, NULL, e);
        m->tok_embd = NULL;
    } else {
        m->tok_embd = table(lc, "tok_embd", c->vocab, C);
    }
    m->pos_embd = is_llama ? NULL : table(lc, "pos_embd", c->max_pos, C);
    m->type_embd = is_bert ? table(lc, "type_embd", c->type_vocab, C) : NULL;
    if (is_bert) {
        m->emb_norm_w = vec(lc, "emb_norm.weight", C);
        m->emb_norm_b = vec(lc, "emb_norm.bias", C);
    }
    for (int l = 0; l < c->n_layer; l++) {
        ecm_layer dummy, *ly = lc->base ? &m->layers[l] : &dummy;
        memset(ly, 0, sizeof *ly);
#define NAME(fmt) (snprintf(p, sizeof p, "layers.%d." fmt, l), p)
        if (!is_bert) {
            ly->attn_norm_w = vec(lc, NAME("attn_norm.weight"), C);
            if (norm_bias) ly->attn_norm_b = vec(lc, NAME("attn_norm.bias"), C);
        }
        linear(lc, &ly->qkv, NAME("qkv"), QKV, C, has_bias || c->attn_bias);
        linear(lc, &ly->proj, NAME("proj"), C, c->n_head * HD, has_bias || c->proj_bias);
        if (is_bert) {
            ly->attn_out_norm_w = vec(lc, NAME("attn_out_norm.weight"), C);
            ly->attn_out_norm_b = vec(lc, NAME("attn_out_norm.bias"), C);
        } else {
            ly->ffn_norm_w = vec(lc, NAME("ffn_norm.weight"), C);
            if (norm_bias) ly->ffn_norm_b = vec(lc, NAME("ffn_norm.bias"), C);
        }
        linear(lc, &ly->up, NAME("up"), is_llama ? 2 * c->d_ff : c->d_ff, C, has_bias || c->mlp_bias);
        linear(lc, &ly->down, NAME("down"), C, c->d_ff, has_bias || c->mlp_bias);
        if (is_bert) {
            ly->ffn_out_norm_w = vec(lc, NAME("ffn_out_norm.weight"), C);
            ly->ffn_out_norm_b = vec(lc, NAME("ffn_out_norm.bias"), C);
        }
#undef NAME
    }
    if (!is_bert) {
        m->norm_w = vec(lc, "norm.weight", C);
        if (norm_bias) m->norm_b = vec(lc, "norm.bias", C);
        linear(lc, &m->lm_head, "lm_head", c->vocab, C, 0);
    }
    m->inv_freq = carve(lc, (size_t)(HD / 2 + 1));
}

ecm_status ecm_model_init(ecm_model *m, const ecm_config *cfg, const ecm_weight_type *types, int n_types) {
    memset(m, 0, sizeof *m);
    ecm_status st = check_config(cfg);
    if (st != ECM_OK) return st;
    for (int i = 0; i < n_types; i++) {
        int qt = types[i].qtype;
        if (qt != 0 && qt != 1 && qt != 30 && (!ecm_type_traits_get(qt) || qt == 15))
            return ecm_fail(ECM_ERR_VALUE, "weight %s: GGML type %d (%s) is not supported", types[i].name, qt,
                            ecm_type_name(qt));
    }
    m->cfg = *cfg;
    m->n_threads = ecm_default_threads();
    layout_ctx lc = {m, types, n_types, NULL, 0, 0, 0};
    layout(&lc);
    size_t bytes;
    if (lc.overflow || !ecm_mul_size(lc.used, sizeof(float), &bytes))
        return ecm_fail(ECM_ERR_VALUE, "config: the model's size overflows, or a quantised weight's row "
                                       "is not a whole number of blocks");
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0 && bytes / (size_t)psize > (size_t)pages)
        return ecm_fail(ECM_ERR_VALUE, "config: the model needs %.1f GiB of weights, more than this machine's memory",
                        (double)bytes / (1 << 30));
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    m->slots = calloc((size_t)lc.n_slots, sizeof *m->slots);
    m->slab = ecm_alloc(bytes);
    if (!m->layers || !m->slots || !m->slab) {
        ecm_model_free(m);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory allocating %.1f MiB of weights", (double)bytes / (1 << 20));
    }
    m->slab_floats = lc.used;
    layout_ctx lc2 = {m, types, n_types, m->slab, 0, 0, 0};
    layout(&lc2);
    ECM_ASSERT(lc2.used == lc.used && lc2.n_slots == lc.n_slots);
    m->n_slots = lc2.n_slots;
    if (cfg->arch == ECM_ARCH_LLAMA) ecm_rope_inv_freq(m->inv_freq, cfg->head_dim, &cfg->rope);
    return ECM_OK;
}

void ecm_model_free(ecm_model *m) {
    ecm_free(m->slab);
    free(m->layers);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

int ecm_model_find_slot(const ecm_model *m, const char *name) {
    for (int i = 0; i < m->n_slots; i++)
        if (!strcmp(m->slots[i].name, name)) return i;
    return -1;
}

ecm_status ecm_model_set_tensor(ecm_model *m, int i, const void *src, ecm_dtype t, int transposed) {
    if (i < 0 || i >= m->n_slots) return ecm_fail(ECM_ERR_VALUE, "no weight slot %d", i);
    ecm_slot *s = &m->slots[i];
    ecm_status st;
    if (s->kind == ECM_SLOT_LINEAR && s->lin->qtype != 0)
        return ecm_fail(ECM_ERR_VALUE, "weight %s is stored as %s: set it from quantised rows", s->name,
                        ecm_type_name(s->lin->qtype));
    if (s->kind == ECM_SLOT_LINEAR) {
        st = ecm_pack_weights(&s->lin->w, s->lin->w.data, src, t, s->shape[0], s->shape[1], transposed);
    } else if (transposed && s->n_dims == 2) {
        int R = s->shape[0], Cc = s->shape[1];
        size_t es = ecm_dtype_size(t);
        st = ECM_OK;
        for (int r = 0; r < R && st == ECM_OK; r++)
            for (int c = 0; c < Cc && st == ECM_OK; c++)
                st = ecm_convert_to_f32(s->dst + (size_t)r * Cc + c, (const uint8_t *)src + ((size_t)c * R + r) * es,
                                        t, 1);
    } else {
        size_t n = (size_t)s->shape[0] * (size_t)(s->n_dims == 2 ? s->shape[1] : 1);
        st = ecm_convert_to_f32(s->dst, src, t, n);
    }
    if (st == ECM_OK) s->set = 1;
    return st;
}

ecm_status ecm_model_set_tensor_quant(ecm_model *m, int i, const void *src, size_t nbytes, int qtype) {
    if (i < 0 || i >= m->n_slots) return ecm_fail(ECM_ERR_VALUE, "no weight slot %d", i);
    ecm_slot *s = &m->slots[i];
    int rows = s->n_dims == 2 ? s->shape[0] : 1, K = s->n_dims == 2 ? s->shape[1] : s->shape[0];
    size_t row = ecm_quant_row_bytes(qtype, K);
    if (!row || !ecm_type_traits_get(qtype))
        return ecm_fail(ECM_ERR_VALUE, "weight %s: GGML type %s cannot hold rows of %d", s->name, ecm_type_name(qtype), K);
    if (nbytes != row * (size_t)rows)
        return ecm_fail(ECM_ERR_VALUE, "weight %s: %zu bytes given, %zu expected for %d rows of %s", s->name, nbytes,
                        row * (size_t)rows, rows, ecm_type_name(qtype));
    const uint8_t *p = src;
    ecm_status st = ECM_OK;
    if (s->kind == ECM_SLOT_LINEAR && s->lin->qtype != 0) {
        if (s->lin->qtype != qtype)
            return ecm_fail(ECM_ERR_VALUE, "weight %s was planned as %s, got %s", s->name, ecm_type_name(s->lin->qtype),
                            ecm_type_name(qtype));
        if (ecm_tiled_type(qtype)) st = ecm_tile_weights(s->lin->q, src, qtype, rows, K);
        else memcpy(s->lin->q, src, nbytes);
    } else if (s->kind == ECM_SLOT_LINEAR) { /* dequantise, then pack */
        float *tmp = ecm_alloc((size_t)rows * K * sizeof(float));
        if (!tmp) return ECM_ERR_NOMEM;
        for (int r = 0; r < rows && st == ECM_OK; r++) st = ecm_dequantize_row(tmp + (size_t)r * K, p + r * row, qtype, K);
        if (st == ECM_OK) st = ecm_pack_weights(&s->lin->w, s->lin->w.data, tmp, ECM_DTYPE_F32, rows, K, 0);
        ecm_free(tmp);
    } else {
        for (int r = 0; r < rows && st == ECM_OK; r++) st = ecm_dequantize_row(s->dst + (size_t)r * K, p + r * row, qtype, K);
    }
    if (st == ECM_OK) s->set = 1;
    return st;
}

ecm_status ecm_model_check_complete(const ecm_model *m) {
    for (int i = 0; i < m->n_slots; i++)
        if (!m->slots[i].set) return ecm_fail(ECM_ERR_NOT_FOUND, "missing weight: %s", m->slots[i].name);
    return ECM_OK;
}

size_t ecm_model_n_params(const ecm_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_slots; i++) {
        const ecm_slot *s = &m->slots[i];
        if (!strcmp(s->name, "lm_head.weight")) continue; /* counted once when tied; see Python */
        n += (size_t)s->shape[0] * (size_t)(s->n_dims == 2 ? s->shape[1] : 1);
    }
    return n;
}

/* ---------------------------------------------------------------- kv cache */

ecm_status ecm_kvcache_init(ecm_kvcache *c, const ecm_model *m, int max_T) {
    memset(c, 0, sizeof *c);
    if (m->cfg.arch == ECM_ARCH_BERT) return ecm_fail(ECM_ERR_VALUE, "an encoder model has no KV cache");
    if (max_T <= 0) return ecm_fail(ECM_ERR_VALUE, "max_tokens must be positive, got %d", max_T);
    if (max_T > m->cfg.max_pos)
        return ecm_fail(ECM_ERR_VALUE, "max_tokens %d exceeds the model's context length %d", max_T, m->cfg.max_pos);
    c->n_layer = m->cfg.n_layer;
    c->max_T = max_T;
    c->kv_dim = m->cfg.n_kv_head * m->cfg.head_dim;
    size_t n;
    if (!ecm_mul_size((size_t)c->n_layer * (size_t)max_T, (size_t)c->kv_dim, &n) || !ecm_mul_size(n, 4, &n))
        return ecm_fail(ECM_ERR_VALUE, "KV cache size overflows");
    c->k = ecm_alloc(n);
    c->v = c->k ? ecm_alloc(n) : NULL;
    if (!c->v) {
        ecm_kvcache_free(c);
        return ECM_ERR_NOMEM;
    }
    return ECM_OK;
}

void ecm_kvcache_free(ecm_kvcache *c) {
    ecm_free(c->k);
    ecm_free(c->v);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- forward */

ecm_status ecm_linear_forward(float *out, const float *x, const ecm_linear *lin, int M, int accumulate) {
    if (lin->qtype == 0) {
        ecm_matmul_packed(out, lin->N, x, lin->K, &lin->w, lin->b, M, accumulate);
        return ECM_OK;
    }
    if (ecm_tiled_type(lin->qtype))
        return ecm_matmul_tiled(out, lin->N, x, lin->K, lin->q, lin->qtype, lin->b, lin->N, lin->K, M, accumulate);
    return ecm_matmul_quant_ex(out, lin->N, x, lin->K, lin->q, lin->qtype, lin->b, lin->N, lin->K, M, accumulate);
}

void ecm_model_token_row(float *dst, const ecm_model *m, int id) {
    const int C = m->cfg.d_model;
    if (m->tok_embd) {
        memcpy(dst, m->tok_embd + (size_t)id * C, (size_t)C * sizeof(float));
        return;
    }
    const ecm_linear *e = &m->tok_embd_q;
    if (ecm_tiled_type(e->qtype)) ecm_tiled_dequantize_row(dst, e->q, e->qtype, C, id);
    else ecm_dequantize_row(dst, (const uint8_t *)e->q + (size_t)id * ecm_quant_row_bytes(e->qtype, C), e->qtype, C);
}

static void set_threads(const ecm_model *m) {
#ifdef _OPENMP
    omp_set_num_threads(m->n_threads > 0 ? m->n_threads : 1);
#else
    (void)m;
#endif
}

ecm_status ecm_model_forward_batch(ecm_model *m, ecm_kvcache **caches, const int *n_tokens, int n_seq,
                                   const int32_t *ids, float *logits, int all_logits) {
    const ecm_config *c = &m->cfg;
    if (c->arch == ECM_ARCH_BERT)
        return ecm_fail(ECM_ERR_VALUE, "an encoder (bert) model has no next-token logits; use embed()");
    if (n_seq <= 0) return ecm_fail(ECM_ERR_VALUE, "no sequences given");
    int R = 0;
    for (int s = 0; s < n_seq; s++) {
        ecm_kvcache *kc = caches[s];
        int T = n_tokens[s];
        if (T <= 0) return ecm_fail(ECM_ERR_VALUE, "token_ids of sequence %d must not be empty", s);
        if (kc->n_layer != c->n_layer || kc->kv_dim != c->n_kv_head * c->head_dim)
            return ecm_fail(ECM_ERR_VALUE, "the KV cache of sequence %d belongs to a different model", s);
        if (T > kc->max_T - kc->n_past)
            return ecm_fail(ECM_ERR_VALUE, "%d tokens do not fit: the KV cache holds %d and has %d free", T,
                            kc->max_T, kc->max_T - kc->n_past);
        if (c->arch == ECM_ARCH_GPT2 && kc->n_past + T > c->max_pos)
            return ecm_fail(ECM_ERR_VALUE, "position %d exceeds the model's %d learned positions", kc->n_past + T - 1,
                            c->max_pos);
        for (int t = 0; t < s; t++)
            if (caches[t] == kc) return ecm_fail(ECM_ERR_VALUE, "sequences %d and %d share one KV cache", t, s);
        if (R > INT32_MAX - T) return ecm_fail(ECM_ERR_VALUE, "too many tokens in one batch");
        R += T;
    }
    for (int r = 0; r < R; r++)
        if (ids[r] < 0 || ids[r] >= c->vocab)
            return ecm_fail(ECM_ERR_VALUE, "token id %d at position %d is out of range [0, %d)", ids[r], r, c->vocab);
    int *start = malloc((size_t)(n_seq + 1) * sizeof(int));
    int32_t *pos = malloc((size_t)R * sizeof(int32_t));
    if (!start || !pos) {
        free(start);
        free(pos);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    }
    for (int s = 0, r = 0; s < n_seq; s++) {
        start[s] = r;
        for (int t = 0; t < n_tokens[s]; t++) pos[r++] = caches[s]->n_past + t;
    }
    start[n_seq] = R;
    ecm_batch b = {caches, start, pos, n_seq, R};
    set_threads(m);
    ecm_status st = c->arch == ECM_ARCH_GPT2 ? ecm_gpt2_forward(m, &b, ids, logits, all_logits)
                                             : ecm_llama_forward(m, &b, ids, logits, all_logits);
    if (st == ECM_OK)
        for (int s = 0; s < n_seq; s++) caches[s]->n_past += n_tokens[s];
    free(start);
    free(pos);
    return st;
}

ecm_status ecm_model_forward(ecm_model *m, ecm_kvcache *cache, const int32_t *ids, int T, float *logits,
                             int all_logits) {
    return ecm_model_forward_batch(m, &cache, &T, 1, ids, logits, all_logits);
}

ecm_status ecm_batch_attention(const ecm_batch *b, int l, float *att, int ldatt, const float *qkv, int ldqkv,
                               int koff, int voff, int NH, int NKV, int HD) {
    int KVD = NKV * HD;
    for (int s = 0; s < b->n_seq; s++) {
        ecm_kvcache *kc = b->caches[s];
        float *kl = kc->k + (size_t)l * kc->max_T * KVD, *vl = kc->v + (size_t)l * kc->max_T * KVD;
        for (int r = b->seq_start[s]; r < b->seq_start[s + 1]; r++) {
            memcpy(kl + (size_t)b->pos[r] * KVD, qkv + (size_t)r * ldqkv + koff, (size_t)KVD * sizeof(float));
            memcpy(vl + (size_t)b->pos[r] * KVD, qkv + (size_t)r * ldqkv + voff, (size_t)KVD * sizeof(float));
        }
    }
    float scale = 1.0f / sqrtf((float)HD);
    ecm_status st = ECM_OK;
    /* Many short sequences (batched decoding): one sequence per thread.
     * Few or long ones: each attention call parallelises over its heads. */
    int outer = b->n_seq > 1 && b->R <= 4 * b->n_seq && !ecm_in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (outer)
    for (int s = 0; s < b->n_seq; s++) {
        ecm_kvcache *kc = b->caches[s];
        int r0 = b->seq_start[s], T = b->seq_start[s + 1] - r0, P = kc->n_past;
        ecm_status st1 = ecm_attention_forward(att + (size_t)r0 * ldatt, ldatt, qkv + (size_t)r0 * ldqkv, ldqkv,
                                               kc->k + (size_t)l * kc->max_T * KVD, KVD,
                                               kc->v + (size_t)l * kc->max_T * KVD, KVD, NULL, T, P, NH, NKV, HD,
                                               scale, 1);
        if (st1 != ECM_OK) {
#pragma omp critical(ecm_batch_status)
            st = st1;
        }
    }
    return st;
}

ecm_status ecm_kvcache_copy(ecm_kvcache *dst, const ecm_kvcache *src, int n) {
    if (dst->n_layer != src->n_layer || dst->kv_dim != src->kv_dim)
        return ecm_fail(ECM_ERR_VALUE, "the KV caches belong to different models");
    if (n < 0 || n > src->n_past) return ecm_fail(ECM_ERR_VALUE, "can copy at most %d tokens, asked %d", src->n_past, n);
    if (n > dst->max_T) return ecm_fail(ECM_ERR_VALUE, "%d tokens do not fit a cache of %d", n, dst->max_T);
    if (dst == src) {
        dst->n_past = n;
        return ECM_OK;
    }
    size_t row = (size_t)src->kv_dim * sizeof(float);
    for (int l = 0; l < src->n_layer; l++) {
        memcpy(dst->k + (size_t)l * dst->max_T * dst->kv_dim, src->k + (size_t)l * src->max_T * src->kv_dim, row * n);
        memcpy(dst->v + (size_t)l * dst->max_T * dst->kv_dim, src->v + (size_t)l * src->max_T * src->kv_dim, row * n);
    }
    dst->n_past = n;
    return ECM_OK;
}

ecm_status ecm_model_embed(ecm_model *m, const int32_t *ids, const int32_t *mask, const int32_t *type_ids, int B,
                           int T, float *out, int pooling, int normalize) {
    const ecm_config *c = &m->cfg;
    if (c->arch != ECM_ARCH_BERT) return ecm_fail(ECM_ERR_VALUE, "embed() needs an encoder (bert) model");
    if (B <= 0 || T <= 0) return ecm_fail(ECM_ERR_VALUE, "input_ids must not be empty");
    if (T > c->max_pos)
        return ecm_fail(ECM_ERR_VALUE, "sequence length %d exceeds the model's %d positions", T, c->max_pos);
    /* Gather the unmasked tokens of every sequence into one (R, C) batch for
     * the linear layers; attention stays within a sequence. Positions keep
     * their original index, as Hugging Face's position_ids do. */
    int *start = malloc((size_t)(B + 1) * sizeof(int));
    if (!start) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    int R = 0;
    for (int b = 0; b < B; b++) {
        start[b] = R;
        int n = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            if (mask && mask[i] == 0) continue;
            if (ids[i] < 0 || ids[i] >= c->vocab) {
                free(start);
                return ecm_fail(ECM_ERR_VALUE, "token id %d (sequence %d, position %d) is out of range [0, %d)",
                                ids[i], b, t, c->vocab);
            }
            if (type_ids && (type_ids[i] < 0 || type_ids[i] >= c->type_vocab)) {
                free(start);
                return ecm_fail(ECM_ERR_VALUE, "token type id %d (sequence %d) is out of range [0, %d)", type_ids[i],
                                b, c->type_vocab);
            }
            n++;
        }
        if (n == 0) {
            free(start);
            return ecm_fail(ECM_ERR_VALUE, "sequence %d has no unmasked tokens", b);
        }
        R += n;
    }
    start[B] = R;
    int32_t *g_ids = malloc((size_t)R * 3 * sizeof(int32_t));
    float *hidden = ecm_alloc((size_t)R * c->d_model * sizeof(float));
    if (!g_ids || !hidden) {
        free(start);
        free(g_ids);
        ecm_free(hidden);
        return ecm_fail(ECM_ERR_NOMEM, "out of memory for %d tokens", R);
    }
    int32_t *g_pos = g_ids + R, *g_type = g_pos + R;
    int r = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            if (mask && mask[i] == 0) continue;
            g_ids[r] = ids[i];
            g_pos[r] = t;
            g_type[r] = type_ids ? type_ids[i] : 0;
            r++;
        }
    set_threads(m);
    ecm_status st = ecm_bert_encode(m, g_ids, g_pos, g_type, start, B, R, hidden);
    if (st == ECM_OK) {
        int C = c->d_model;
        for (int b = 0; b < B; b++) {
            float *o = out + (size_t)b * C;
            const float *h = hidden + (size_t)start[b] * C;
            int n = start[b + 1] - start[b];
            if (pooling == ECM_POOL_CLS) {
                memcpy(o, h, (size_t)C * sizeof(float));
            } else {
                for (int i = 0; i < C; i++) o[i] = 0.0f;
                for (int t = 0; t < n; t++)
                    for (int i = 0; i < C; i++) o[i] += h[(size_t)t * C + i];
                for (int i = 0; i < C; i++) o[i] /= (float)n;
            }
        }
        if (normalize) ecm_l2norm_rows(out, B, C);
    }
    free(start);
    free(g_ids);
    ecm_free(hidden);
    return st;
}
