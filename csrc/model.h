/* model.h: configuration, weights, KV cache and forward passes of the three
 * architectures (gpt2, llama, bert). The architecture files only compose the
 * kernels of ecm.h; model.c owns memory and validation.
 *
 * Weights arrive by name through ecm_model_set_tensor (the Python layer maps
 * a checkpoint's names to these slot names, fusing q/k/v and gate/up):
 *   tok_embd (V, C)   pos_embd (max_pos, C)   type_embd (type_vocab, C)
 *   emb_norm.weight/.bias (C)                                  bert
 *   layers.N.attn_norm.weight/.bias (C)                        gpt2, llama
 *   layers.N.qkv.weight (NH*HD + 2*NKV*HD, C), .bias
 *   layers.N.proj.weight (C, NH*HD), .bias
 *   layers.N.attn_out_norm.weight/.bias (C)                    bert (post-LN)
 *   layers.N.ffn_norm.weight/.bias (C)                         gpt2, llama
 *   layers.N.up.weight (F, C) or (2F, C) gate-then-up for llama, .bias
 *   layers.N.down.weight (C, F), .bias
 *   layers.N.ffn_out_norm.weight/.bias (C)                     bert (post-LN)
 *   norm.weight/.bias (C)                                      gpt2, llama
 *   lm_head.weight (V, C)                                      gpt2, llama
 */
#ifndef ECM_MODEL_H
#define ECM_MODEL_H

#include "ecm.h"

typedef enum { ECM_ARCH_GPT2 = 0, ECM_ARCH_LLAMA = 1, ECM_ARCH_BERT = 2 } ecm_arch;

typedef struct {
    int arch;
    int n_layer;     /* L   */
    int d_model;     /* C   */
    int n_head;      /* NH  */
    int n_kv_head;   /* NKV */
    int head_dim;    /* HD  */
    int d_ff;        /* F   */
    int vocab;       /* V   */
    int max_pos;     /* learned positions (gpt2, bert) / context length (llama) */
    int type_vocab;  /* bert token types */
    float norm_eps;
    int attn_bias;   /* qkv carries a bias (llama family)   */
    int proj_bias;   /* proj carries a bias (llama family)  */
    int mlp_bias;    /* up and down carry biases  */
    int rope_interleaved; /* rotate pairs (2i, 2i+1) as GGUF's llama weights expect */
    ecm_rope_config rope;
} ecm_config;

/* A linear layer out = x @ w^T + b, w (N, K): packed fp32 panels, or N rows
 * of GGML-quantised blocks used as they are (qtype != 0). */
typedef struct {
    int N, K;
    int qtype;    /* 0: fp32 in w; else a GGML type id, data in q */
    ecm_packed w;
    void *q;      /* (N, row bytes) quantised rows, or NULL */
    float *b;     /* (N) or NULL */
} ecm_linear;

/* How a slot's weight is stored: "layers.3.qkv.weight" -> GGML type id. */
typedef struct {
    const char *name;
    int qtype;
} ecm_weight_type;

typedef struct {
    float *attn_norm_w, *attn_norm_b; /* (C) */
    ecm_linear qkv;                   /* (NH*HD + 2*NKV*HD, C) */
    ecm_linear proj;                  /* (C, NH*HD) */
    float *attn_out_norm_w, *attn_out_norm_b;
    float *ffn_norm_w, *ffn_norm_b;
    ecm_linear up;                    /* (F, C) or (2F, C) */
    ecm_linear down;                  /* (C, F) */
    float *ffn_out_norm_w, *ffn_out_norm_b;
} ecm_layer;

typedef enum { ECM_SLOT_VECTOR = 0, ECM_SLOT_TABLE = 1, ECM_SLOT_LINEAR = 2 } ecm_slot_kind;

typedef struct {
    char name[64];
    int kind;        /* ecm_slot_kind */
    int n_dims;
    int shape[2];
    float *dst;      /* VECTOR / TABLE: where the floats go */
    ecm_linear *lin; /* LINEAR: the layer whose packed weight this is */
    int set;
} ecm_slot;

typedef struct {
    ecm_config cfg;
    float *tok_embd;                  /* (V, C); NULL when tok_embd_q holds the table */
    ecm_linear tok_embd_q;            /* (V, C) in quantised rows (qtype != 0), read a row at a time */
    float *pos_embd;                  /* (max_pos, C) */
    float *type_embd;                 /* (type_vocab, C) */
    float *emb_norm_w, *emb_norm_b;   /* (C) */
    ecm_layer *layers;                /* (L) */
    float *norm_w, *norm_b;           /* (C) */
    ecm_linear lm_head;               /* (V, C) */
    float *inv_freq;                  /* (HD/2) */
    float *slab;                      /* every float above lives here */
    size_t slab_floats;
    ecm_slot *slots;
    int n_slots;
    int n_threads;
} ecm_model;

/* Validate cfg and allocate the weight slab (zeroed, slots unset). Linear
 * weights named in types (may be NULL) keep that GGML type; others are fp32. */
ecm_status ecm_model_init(ecm_model *m, const ecm_config *cfg, const ecm_weight_type *types, int n_types);
void ecm_model_free(ecm_model *m);
int ecm_model_find_slot(const ecm_model *m, const char *name);
/* Copy (and pack) slot i from src: shape (shape[0], shape[1]) of dtype t, or
 * the transpose (shape[1], shape[0]) when transposed != 0. */
ecm_status ecm_model_set_tensor(ecm_model *m, int slot, const void *src, ecm_dtype t, int transposed);
/* Set slot i from GGML-quantised rows (nbytes must match its shape): kept
 * as they are for a linear slot of that type, dequantised for the others. */
ecm_status ecm_model_set_tensor_quant(ecm_model *m, int slot, const void *src, size_t nbytes, int qtype);
/* All slots set? Names the first missing one. */
ecm_status ecm_model_check_complete(const ecm_model *m);
size_t ecm_model_n_params(const ecm_model *m);

/* KV cache of a decoder: k, v (L, max_T, NKV*HD), filled up to n_past. */
typedef struct {
    int n_layer, max_T, kv_dim;
    int n_past;
    float *k, *v;
} ecm_kvcache;

ecm_status ecm_kvcache_init(ecm_kvcache *c, const ecm_model *m, int max_T);
void ecm_kvcache_free(ecm_kvcache *c);

/* Decoder forward of T tokens appended to the cache (positions n_past ..).
 * logits: (T, V) when all_logits, else (1, V) for the last token only. */
ecm_status ecm_model_forward(ecm_model *m, ecm_kvcache *cache, const int32_t *ids, int T, float *logits,
                             int all_logits);

/* Several sequences in one pass over the weights: sequence s appends
 * n_tokens[s] tokens (ids concatenated, R = sum n_tokens rows) to caches[s].
 * The linear layers see all R rows at once; attention stays within each
 * sequence. logits: (R, V) when all_logits, else (n_seq, V), the last token
 * of each sequence. Nothing is appended unless every check passes. */
ecm_status ecm_model_forward_batch(ecm_model *m, ecm_kvcache **caches, const int *n_tokens, int n_seq,
                                   const int32_t *ids, float *logits, int all_logits);

/* Copy the first n tokens of src into dst (same model); dst->n_past = n. */
ecm_status ecm_kvcache_copy(ecm_kvcache *dst, const ecm_kvcache *src, int n);

typedef enum { ECM_POOL_MEAN = 0, ECM_POOL_CLS = 1 } ecm_pooling;

/* Encoder (bert): ids, mask, type_ids (B, T) (type_ids may be NULL) to
 * out (B, C) pooled sentence embeddings, L2-normalised if normalize. */
ecm_status ecm_model_embed(ecm_model *m, const int32_t *ids, const int32_t *mask, const int32_t *type_ids,
                           int B, int T, float *out, int pooling, int normalize);

ecm_status ecm_linear_forward(float *out, const float *x, const ecm_linear *lin, int M, int accumulate);
/* dst[C] = the token embedding of id, dequantised when the table is kept
 * quantised (GGUF files: 4x less memory than fp32 for Q8_0). */
void ecm_model_token_row(float *dst, const ecm_model *m, int id);

/* A batch of sequences as the decoder bodies see it: rows seq_start[s] ..
 * seq_start[s+1] of the (R, C) activations belong to caches[s]; pos[r] is
 * row r's position. */
typedef struct {
    ecm_kvcache **caches;
    const int *seq_start; /* (n_seq + 1) */
    const int32_t *pos;   /* (R) */
    int n_seq, R;
} ecm_batch;

/* Write rows' k, v (row stride ld, at offsets koff, voff) into each
 * sequence's cache of layer l, then attend. */
ecm_status ecm_batch_attention(const ecm_batch *b, int l, float *att, int ldatt, const float *qkv, int ldqkv,
                               int koff, int voff, int NH, int NKV, int HD);

/* Architecture bodies (model_gpt2.c, model_llama.c, model_bert.c). */
ecm_status ecm_gpt2_forward(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all);
ecm_status ecm_llama_forward(ecm_model *m, const ecm_batch *b, const int32_t *ids, float *logits, int all);
ecm_status ecm_bert_encode(ecm_model *m, const int32_t *ids, const int32_t *pos, const int32_t *types,
                           const int *seq_start, int n_seq, int R, float *hidden);

#endif
