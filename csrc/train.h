/* train.h: fine-tuning in C. Backward kernels, the training GEMMs, AdamW,
 * LoRA adapters and the training state of the gpt2 and llama decoders and of
 * the bert encoder with a sequence-classification head (train_bert.c).
 *
 * Size letters as in ecm.h, plus BT = B * T (rows of a batch) and R (LoRA rank).
 * Conventions (llm.c): every op is a forward/backward pair; outputs first,
 * then inputs, then sizes; parameter gradients accumulate with +=, so
 * gradient accumulation is free; input gradients are written (=) unless the
 * comment says +=. Backward kernels parallelise over the output each thread
 * writes, never with float atomics, so a result depends only on its inputs.
 */
#ifndef ECM_TRAIN_H
#define ECM_TRAIN_H

#include "ecm.h"
#include "model.h"

/* ------------------------------------------------ training GEMMs (matmul.c)
 * out[M, N] (= or += when accumulate) a[M, K] (row stride lda) @ op(b) (+ bias[N]),
 * op(b) = b^T for b [N, K] (b_trans = 0) or b for b [K, N] (b_trans = 1),
 * b unpacked (row stride ldb), packed on the fly into work
 * (ecm_gemm_work_floats(N, K) floats). Parallel over output panels (or row
 * blocks when there are few panels); each element is computed the same way
 * whatever the thread count. */
size_t ecm_gemm_work_floats(int N, int K);
void ecm_gemm_f32(float *out, int ldo, const float *a, int lda, const float *b, int ldb, int b_trans,
                  const float *bias, int M, int N, int K, int accumulate, float *work);
/* dw[N, K] (row stride ldw) += dy[M, N]^T (row stride ldy) @ x[M, K] (row stride ldx):
 * the weight gradient of a linear layer. work: ecm_gemm_tn_work_floats(M, N, K). */
size_t ecm_gemm_tn_work_floats(int M, int N, int K);
void ecm_gemm_tn_f32(float *dw, int ldw, const float *dy, int ldy, const float *x, int ldx, int M, int N, int K,
                     float *work);
/* dst[cols, rows] = src[rows, cols]^T (src row stride lds). */
void ecm_transpose_f32(float *dst, const float *src, int lds, int rows, int cols);

/* ------------------------------------------------ backward ops (ops_backward.c) */

/* Forward that keeps its statistics: out[BT, C], mean[BT], rstd[BT]. */
void ecm_layernorm_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                 const float *bias, int BT, int C, float eps);
void ecm_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int BT, int C);
void ecm_rmsnorm_forward_train(float *out, float *rstd, const float *inp, const float *weight, int BT, int C,
                               float eps);
void ecm_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                          const float *rstd, int BT, int C);
void ecm_gelu_tanh_backward(float *dinp, const float *inp, const float *dout, size_t n);
/* GELU-erf (bert): dinp = dout * (Phi(x) + x phi(x)); dinp may be dout. */
void ecm_gelu_erf_backward(float *dinp, const float *inp, const float *dout, size_t n);
void ecm_swiglu_backward(float *dgu, const float *gu, const float *dout, int BT, int F);
/* db[N] += sum over rows of dy[M, N]. */
void ecm_bias_backward(float *db, const float *dy, int M, int N);
/* Embedding: dtable[ids[t], :] += dout[t, :], and dpos[pos t % T, :] when dpos. */
void ecm_embedding_backward(float *dtable, float *dpos, const float *dout, const int32_t *ids, int BT, int T,
                            int C, int V);
/* Fused softmax + cross-entropy over the rows of logits[BT, V]:
 * losses[t] = logsumexp(logits[t]) - logits[t, targets[t]] for rows with
 * mask[t] != 0 (0 otherwise); logits are replaced by softmax probabilities.
 * Returns the number of counted rows. */
int ecm_crossentropy_forward(float *losses, float *logits, const int32_t *targets, const uint8_t *mask, int BT,
                             int V);
/* In place: probs[BT, V] -> dlogits = (probs - onehot(target)) * scale on
 * counted rows, 0 elsewhere. */
void ecm_crossentropy_backward(float *probs, const int32_t *targets, const uint8_t *mask, float scale, int BT,
                               int V);

/* ------------------------------------------ attention (attention_backward.c) */

/* Causal self-attention of B sequences of T tokens, keeping the log-sum-exp
 * of every score row for the backward pass. q/k/v carved from qkv[BT, QKV]
 * at columns 0, NH*HD and (NH+NKV)*HD; out[BT, NH*HD]; lse[B, NH, T].
 * work: ecm_attention_train_work_floats(T, HD) floats per thread. */
size_t ecm_attention_train_work_floats(int T, int HD);
ecm_status ecm_attention_forward_train(float *out, float *lse, const float *qkv, int B, int T, int NH, int NKV,
                                       int HD, float scale, float *work, int max_threads);
/* dqkv[BT, QKV] (written) from dout[BT, NH*HD]; recomputes the scores.
 * Both use at most max_threads threads, each with its own slice of work. */
ecm_status ecm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                  const float *lse, int B, int T, int NH, int NKV, int HD, float scale, float *work,
                                  int max_threads);
/* The same for bidirectional (causal = 0) or causal attention over the
 * first lens[b] keys of sequence b (lens NULL: all T; every lens[b] >= 1):
 * right padding is masked as keys. Padded query rows attend to the valid
 * keys, as a Hugging Face encoder computes them. */
ecm_status ecm_attention_forward_train_masked(float *out, float *lse, const float *qkv, const int32_t *lens,
                                              int causal, int B, int T, int NH, int NKV, int HD, float scale,
                                              float *work, int max_threads);
ecm_status ecm_attention_backward_masked(float *dqkv, const float *dout, const float *qkv, const float *out,
                                         const float *lse, const int32_t *lens, int causal, int B, int T, int NH,
                                         int NKV, int HD, float scale, float *work, int max_threads);
/* Rotary embeddings undone for a gradient: rotate by -angle, in place. */
void ecm_rope_backward(float *dx, int stride, const int32_t *pos, const float *inv_freq, int T, int n_heads,
                       int HD);

/* --------------------------------------------------------- AdamW (optim.c) */

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} ecm_adamw;

/* One AdamW step (PyTorch's formula, decoupled weight decay when decay != 0)
 * over n parameters; t is the step number after this update (1-based). */
void ecm_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, const ecm_adamw *h, int t,
                      int decay);
/* sqrt(sum g^2) over n floats; deterministic for any thread count. */
double ecm_grad_sumsq(const float *g, size_t n);
void ecm_scale_f32(float *x, float s, size_t n);
/* Linear warm-up to lr over `warmup` steps, then cosine to min_lr at `total`. */
float ecm_lr_schedule(int step, float lr, float min_lr, int warmup, int total);

/* ---------------------------------------------------------- LoRA (lora.c) */

enum { ECM_LORA_Q = 0, ECM_LORA_K, ECM_LORA_V, ECM_LORA_O, ECM_LORA_GATE, ECM_LORA_UP, ECM_LORA_DOWN,
       ECM_LORA_N_TARGETS };
extern const char *const ecm_lora_target_names[ECM_LORA_N_TARGETS];

/* One adapter on rows [n0, n0 + n) of a linear layer with K inputs:
 * out[:, n0:n0+n] += scale * dropout(x) @ A^T @ B^T. */
typedef struct {
    int target, layer;
    int lin;        /* 0 qkv, 1 proj, 2 up, 3 down */
    int n0, n, K, R;
    float *W;       /* the base weight (N, K) it adapts */
    float *A, *B;   /* (R, K), (n, R) in the parameter slab */
    float *dA, *dB; /* gradients, same shapes */
    float *xa;      /* activation (BT, R): scale * dropout(x) @ A^T */
} ecm_lora;

typedef struct {
    int rank;
    float alpha, dropout;
    uint64_t seed;
    unsigned targets; /* bit i: ecm_lora_target i */
} ecm_lora_config;

/* Forward of an adapter: out (row stride ldo, columns from n0) += ...;
 * xd is scratch (BT, K) used when dropout > 0. stream names the draw. */
void ecm_lora_forward(ecm_lora *a, float *out, int ldo, const float *x, int BT, float scale, float dropout,
                      uint64_t stream, float *xd, float *work);
/* Backward: dA, dB +=; dx[BT, K] += the adapter's share. dxa (BT, R) scratch. */
void ecm_lora_backward(ecm_lora *a, float *dx, const float *dout, int ldo, const float *x, int BT, float scale,
                       float dropout, uint64_t stream, float *xd, float *dxa, float *work);
/* w[n0:n0+n, :] += scale * B @ A, w (N, K) row-major. */
void ecm_lora_merge(float *w, const ecm_lora *a, float scale);
/* Inverted dropout with a mask named by stream (no mask is stored; the
 * same stream regenerates it): out[i] = x[i] / (1 - p) when
 * splitmix64's finaliser of stream + 0x9e3779b97f4a7c15 * (i + 1) >= p * 2^64,
 * else 0. In place is fine. Its backward is the same call on the gradient. */
void ecm_dropout_apply(float *out, const float *x, size_t n, float p, uint64_t stream);
/* A ~ U(-1/sqrt(K), 1/sqrt(K)) (PEFT's kaiming-uniform), B = 0. */
void ecm_lora_init(ecm_lora *a, uint64_t seed);

/* ------------------------------------------------- training state (train.c) */

/* A block's tensors. bert (post-LN) keeps its attn_out_norm in attn_norm_*
 * and its ffn_out_norm in ffn_norm_*. */
typedef struct {
    float *attn_norm_w, *attn_norm_b; /* (C) */
    float *qkv_w, *qkv_b;             /* (QKV, C), (QKV) */
    float *proj_w, *proj_b;           /* (C, NH*HD), (C) */
    float *ffn_norm_w, *ffn_norm_b;   /* (C) */
    float *up_w, *up_b;               /* (F or 2F, C) */
    float *down_w, *down_b;           /* (C, F) */
} ecm_tlayer;

typedef struct {
    float *tok_embd;  /* (V, C) */
    float *pos_embd;  /* (max_pos, C) gpt2 */
    ecm_tlayer *layers;
    float *norm_w, *norm_b; /* (C) */
    float *lm_head;         /* (V, C), == tok_embd when tied */
    /* bert */
    float *type_embd;             /* (type_vocab, C) */
    float *emb_norm_w, *emb_norm_b; /* (C) */
    float *pool_w, *pool_b;       /* (C, C), (C): pooler dense, tanh on the [CLS] row */
    float *cls_w, *cls_b;         /* (NL, C), (NL): classifier */
} ecm_tparams;

/* A named tensor of the parameter slab. */
typedef struct {
    char name[64];
    int rows, cols;   /* cols == 0: a vector */
    float *p, *g;     /* g NULL when frozen */
    float *m, *v;     /* Adam moments, NULL when frozen */
    int decay;        /* weight decay applies (matrices) */
    int set;          /* loaded (or initialised) */
} ecm_ttensor;

/* Activations of a batch (BT rows), carved from one slab, and the
 * backward pass's scratch. */
typedef struct {
    float *res;                          /* (L+1, BT, C) residual stream entering each layer, and out */
    float *ln1, *ln1_mean, *ln1_rstd;    /* (L, BT, C), (L, BT), (L, BT) */
    float *qkv;                          /* (L, BT, QKV) q | k | v, after RoPE */
    float *atty;                         /* (L, BT, NH*HD) attention output */
    float *lse;                          /* (L, B, NH, T) log-sum-exp of the score rows */
    float *resmid;                       /* (L, BT, C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;    /* (L, BT, C), (L, BT), (L, BT) */
    float *fch;                          /* (L, BT, FU) MLP pre-activation, FU = F or 2F */
    float *fact;                         /* (L, BT, F) MLP activation */
    float *lnf, *lnf_mean, *lnf_rstd;    /* (BT, C), (BT), (BT) */
    float *logits;                       /* (BT, V) logits, then probabilities, then dlogits */
    float *losses;                       /* (BT) */
    float *lora_xa;                      /* (n_lora, BT, R) */
    /* backward scratch */
    float *dres, *dtmp, *dln;            /* (BT, C) */
    float *dqkv;                         /* (BT, QKV) */
    float *datty;                        /* (BT, NH*HD) */
    float *dfch;                         /* (BT, FU) */
    float *dfact;                        /* (BT, F) */
    float *xd;                           /* (BT, max K) LoRA dropout scratch */
    float *dxa;                          /* (BT, R) */
} ecm_tacts;

/* Activations of a bert batch (train_bert.c). NL = number of labels. The
 * LoRA buffers (lora_xa, xd, dxa) stay in ecm_tacts for both families. */
typedef struct {
    float *emb, *emb_mean, *emb_rstd;    /* (BT, C) embedding sum before its norm, (BT), (BT) */
    float *x;                            /* (L+1, BT, C) stream entering each layer, and out */
    float *qkv;                          /* (L, BT, 3C) */
    float *atty;                         /* (L, BT, C) attention output */
    float *lse;                          /* (L, B, NH, T) */
    float *h1, *ln1_mean, *ln1_rstd;     /* (L, BT, C) x + attention (before attn_out_norm), (L, BT) x2 */
    float *mid;                          /* (L, BT, C) attn_out_norm(h1) */
    float *fch, *fact;                   /* (L, BT, F) MLP pre-activation, GELU */
    float *h2, *ln2_mean, *ln2_rstd;     /* (L, BT, C) mid + MLP (before ffn_out_norm), (L, BT) x2 */
    float *pool;                         /* (B, C) tanh(pooler([CLS])) */
    float *pool_drop;                    /* (B, C) dropout(pool), the classifier's input when dropping */
    float *dtmp;                         /* (BT, C) gradient of a dropped branch */
    int dropped;                         /* the last forward applied dropout */
    float *logits, *probs;               /* (B, NL); probs become dlogits in backward */
    float *losses;                       /* (B) */
    float *dx, *dh;                      /* (BT, C) */
    float *dqkv;                         /* (BT, 3C) */
    float *datty;                        /* (BT, C) */
    float *dfch;                         /* (BT, F) */
    float *dpool;                        /* (B, C) */
    int32_t *types, *lens, *labels;      /* (BT), (B), (B) */
    float *values;                       /* (B) regression targets, or (B, NL) multi-label targets */
    /* capacity of the buffers behind them: a batch that fits is carved anew
     * without reallocating (dynamic padding changes T from batch to batch) */
    size_t cap_acts, cap_work, cap_attn, cap_ints;
} ecm_tacts_bert;

typedef struct {
    ecm_config cfg;
    int n_labels;             /* bert: classes of the head (1: regression, MSE); 0 for decoders */
    float hidden_dropout;     /* bert: dropout of labelled (training) forwards, HF's hidden_dropout_prob */
    int multi_label;          /* bert: n_labels independent sigmoids, binary cross-entropy */
    int tied;                 /* lm_head is tok_embd */
    int lora_on;
    ecm_lora_config lcfg;
    float lora_scale;         /* alpha / rank */
    ecm_tparams P, G;         /* parameters and gradients (G fields NULL when frozen) */
    ecm_lora *lora;           /* (n_lora) */
    int n_lora;
    ecm_ttensor *tensors;
    int n_tensors;
    float *params, *grads, *adam_m, *adam_v; /* slabs */
    size_t n_params, n_trainable; /* numbers of floats */
    size_t grad_floats;        /* the gradient / moment slabs' length */
    float *inv_freq;          /* (HD/2) */
    int adam_t;               /* optimizer steps taken */
    uint64_t fwd_count;       /* forward passes: names dropout draws */
    int n_threads;
    /* activations, planned for (B, T) at the first forward */
    int B, T;
    ecm_tacts A;
    ecm_tacts_bert BA;        /* bert */
    float *acts;              /* the slab behind A */
    size_t acts_floats;
    float *work;              /* GEMM packing + scratch */
    float *attn_work;         /* attention scratch, one slice per thread */
    int planned_threads;
    size_t work_floats;
    int32_t *ids, *targets, *pos; /* (BT) */
    uint8_t *mask;            /* (BT) */
    int n_counted;            /* rows counted by the last loss */
    int have_fwd;             /* activations hold a forward of this batch */
} ecm_train;

ecm_status ecm_train_init(ecm_train *tr, const ecm_config *cfg, int tied, const ecm_lora_config *lora);
/* Any family; bert needs n_labels >= 1 (its classification head), the
 * decoders n_labels == 0. */
ecm_status ecm_train_init_head(ecm_train *tr, const ecm_config *cfg, int tied, int n_labels,
                               const ecm_lora_config *lora);
void ecm_train_free(ecm_train *tr);
/* Free the activation slab and scratch (planned again by the next forward). */
void ecm_train_release_activations(ecm_train *tr);
int ecm_train_find(const ecm_train *tr, const char *name);
ecm_status ecm_train_check_complete(const ecm_train *tr);
/* Forward of a batch: ids, targets (BT) and mask (BT, may be NULL: all
 * counted); *loss = mean cross-entropy over counted rows. */
ecm_status ecm_train_forward(ecm_train *tr, const int32_t *ids, const int32_t *targets, const uint8_t *mask, int B,
                             int T, float *loss);
/* Backward of the last forward; gradients += grad_scale * d(loss). */
ecm_status ecm_train_backward(ecm_train *tr, float grad_scale);
void ecm_train_zero_grad(ecm_train *tr);
/* Clip to max_norm (if > 0) then one AdamW step; *norm = the norm before clipping. */
ecm_status ecm_train_step(ecm_train *tr, const ecm_adamw *h, float max_norm, float *norm);
/* Copy tensor i into dst (rows, cols), LoRA adapters merged in when merged. */
void ecm_train_export(const ecm_train *tr, int i, float *dst, int merged);

/* bert with a sequence-classification head (train_bert.c). Forward of B
 * sequences of T tokens: ids (B, T); types (B, T) token types or NULL (all 0);
 * attn_mask (B, T) or NULL: each row 1..1 0..0 (right padding, >= 1 token);
 * labels (B) classes in [0, n_labels) when n_labels > 1, values (B) targets
 * of the regression (n_labels == 1, mean squared error), or with
 * tr->multi_label values (B, n_labels) in [0, 1] (binary cross-entropy of
 * each logit); both NULL: logits only (*loss = 0, no backward). *loss: the
 * mean over the batch (and the labels for multi-label), as
 * BertForSequenceClassification computes it. */
ecm_status ecm_bert_train_forward(ecm_train *tr, const int32_t *ids, const int32_t *types, const uint8_t *attn_mask,
                                  const int32_t *labels, const float *values, int B, int T, float *loss);
ecm_status ecm_bert_train_backward(ecm_train *tr, float grad_scale);

/* ------------------------------------ shared by train.c and train_bert.c */

/* Carving the parameter slab: a first pass counts, a second assigns. */
typedef struct {
    ecm_train *tr;
    int assign;       /* second pass: pointers and names are written */
    size_t pn, gn;    /* floats carved so far: parameters, trainable */
    int nt;           /* tensors so far */
    int overflow;
} ecm_layout;

/* The next tensor of the slab (*grad: its gradient, NULL when frozen). */
float *ecm_layout_tensor(ecm_layout *lc, const char *name, int rows, int cols, int trainable, int decay,
                         float **grad);
/* The LoRA adapters of every layer, on P->layers' qkv, proj, up, down. */
void ecm_layout_lora(ecm_layout *lc);
void ecm_bert_layout(ecm_layout *lc);
/* Adapters of layer l on linear lin (0 qkv, 1 proj, 2 up, 3 down). */
void ecm_train_lora_forward(ecm_train *tr, int l, int lin, float *out, int ldo, const float *x, int BT);
void ecm_train_lora_backward(ecm_train *tr, int l, int lin, float *dx, const float *dout, int ldo, const float *x,
                             int BT);
size_t ecm_train_linear_work(int BT, int N, int K);
/* omp_set_num_threads(tr->n_threads) for the calling thread. */
void ecm_train_set_threads(const ecm_train *tr);
/* out[M, N] (row stride ldo) (= or +=) x[M, K] (row stride ldx) @ w[N, K]^T + b */
void ecm_train_linear(ecm_train *tr, float *out, int ldo, const float *x, int ldx, const float *w, const float *b,
                      int M, int N, int K, int accumulate);
/* Backward of out = x @ w^T + b: dx (row stride lddx) (= or += when acc) dout @ w (if dx),
 * dw += dout^T @ x (if dw), db += sum dout (if db). */
void ecm_train_linear_bwd(ecm_train *tr, float *dx, int lddx, int acc, float *dw, float *db, const float *dout,
                          const float *x, int ldx, const float *w, int M, int N, int K);

#endif
