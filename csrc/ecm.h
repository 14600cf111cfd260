/* ecm.h: the public face of the ecomlm C engine.
 *
 * Plain C11 + OpenMP; nothing here knows about Python. Every fallible function
 * returns an ecm_status and, on failure, leaves a message in a thread-local
 * buffer (ecm_last_error) that the binding turns into a Python exception.
 *
 * Size letters used in shape comments throughout csrc/:
 *   B  batch (sequences)          T  time (tokens in this call)
 *   P  past tokens in a KV cache  S  T + P, keys visible to a query
 *   C  channels (d_model)         F  feed-forward width
 *   NH query heads                NKV key/value heads   HD head dim
 *   V  vocabulary size            L  layers
 *   M, N, K                        GEMM: out[M, N] = a[M, K] @ w[N, K]^T
 */
#ifndef ECM_H
#define ECM_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

typedef enum {
    ECM_OK = 0,
    ECM_ERR_VALUE,     /* a bad argument: shape, range, empty input        */
    ECM_ERR_FORMAT,    /* a malformed or hostile file / buffer             */
    ECM_ERR_NOT_FOUND, /* a missing tensor, key, file                      */
    ECM_ERR_NOMEM,     /* allocation failed or a size would overflow       */
    ECM_ERR_IO,        /* open / mmap / read / write failed                */
    ECM_ERR_STATE,     /* the object cannot do this now (cache full, ...)  */
} ecm_status;

/* Record a message for the calling thread and return `status`, so that
 * `return ecm_fail(ECM_ERR_VALUE, "x must be > 0, got %d", x);` reads well. */
ecm_status ecm_fail(ecm_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *ecm_last_error(void);
void ecm_clear_error(void);

/* Internal invariants only: never for bad input. */
#define ECM_ASSERT(cond) \
    do { if (!(cond)) ecm_assert_failed(#cond, __FILE__, __LINE__); } while (0)
void ecm_assert_failed(const char *cond, const char *file, int line);

/* Checked size arithmetic: return 0 on overflow. */
int ecm_mul_size(size_t a, size_t b, size_t *out);
int ecm_add_size(size_t a, size_t b, size_t *out);

/* 64-byte aligned allocation, zeroed; NULL on failure (message set). */
void *ecm_alloc(size_t bytes);
void ecm_free(void *p);

/* Per-thread scratch buffers for the hot path: slot `slot` of the calling
 * thread, grown to at least `bytes`, 64-byte aligned, NOT zeroed, kept for
 * the next call (a decode step allocates nothing, so faults no fresh pages)
 * and freed when the thread exits. Valid until the same thread asks for the
 * same slot again; NULL on failure (message set). */
enum { ECM_SCRATCH_ACT = 0, ECM_SCRATCH_ATTN = 1, ECM_SCRATCH_LINEAR = 2, ECM_SCRATCH_SLOTS = 4 };
void *ecm_scratch(int slot, size_t bytes);

/* ------------------------------------------------------------------- team
 * A decode step runs as one OpenMP parallel region whose threads split each
 * phase's work (ecm_team_split) and meet at ecm_team_sync between phases
 * (team.c says why this is not libgomp's barrier). */

#define ECM_TEAM_TRACK 64 /* threads whose progress a waiting thread can see */

typedef struct {
    _Alignas(64) atomic_int arrived; /* threads at the current barrier */
    _Alignas(64) atomic_int phase;   /* barriers passed; waiters watch it */
    atomic_int sleepers;             /* waiters asleep on phase */
    int n;                           /* threads in the team */
    struct {
        _Alignas(64) atomic_int at;  /* barriers this thread has reached */
        atomic_int clock_set;
        clockid_t clock;             /* its CPU-time clock */
    } member[ECM_TEAM_TRACK];
} ecm_team;

/* One thread calls init; then every thread calls enter before its first sync. */
void ecm_team_init(ecm_team *t, int n);
void ecm_team_enter(ecm_team *t, int ith);
/* Thread ith waits until all n threads of the team have arrived. */
void ecm_team_sync(ecm_team *t, int ith);
/* [lo, hi): thread ith's contiguous share of n items, in order. */
void ecm_team_split(int n, int ith, int nth, int *lo, int *hi);

/* ------------------------------------------------------------- cpu / simd */

typedef enum {
    ECM_SIMD_SCALAR = 0,
    ECM_SIMD_AVX2 = 1,   /* AVX2 + FMA + F16C                              */
    ECM_SIMD_AVX512 = 2, /* AVX-512 F/BW/VL/DQ                             */
} ecm_simd_level;

/* Best level this CPU supports, capped by $ECOMLM_SIMD (scalar|avx2|avx512)
 * and by ecm_simd_set_level. Read once, then cached. */
ecm_simd_level ecm_simd_level_get(void);
ecm_simd_level ecm_simd_level_detected(void);
void ecm_simd_level_set(ecm_simd_level level); /* for tests: force a path */
const char *ecm_simd_level_name(ecm_simd_level level);

/* Kernel files compile their SIMD functions with target attributes and call
 * them only when ecm_simd_level_get() allows, so one build runs anywhere.
 * AVX2_ATTR is what ECM_SIMD_AVX2 guarantees; NOCONTRACT keeps a function's
 * a * b + c as two roundings where bit-exact results are promised. */
#if defined(__x86_64__)
#include <immintrin.h>
#define ECM_X86 1
#define AVX2_ATTR __attribute__((target("avx2,fma,f16c")))
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define NOCONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define NOCONTRACT
#endif

/* Nonzero inside an OpenMP parallel region (kernels then stay serial). */
int ecm_in_parallel(void);

/* Default thread count: the cores this process may use. */
int ecm_default_threads(void);

/* ---------------------------------------------------------- dtype helpers */

typedef enum {
    ECM_DTYPE_F32 = 0,
    ECM_DTYPE_F16,
    ECM_DTYPE_BF16,
    ECM_DTYPE_F64,
    ECM_DTYPE_I64,
    ECM_DTYPE_I32,
    ECM_DTYPE_I16,
    ECM_DTYPE_I8,
    ECM_DTYPE_U8,
    ECM_DTYPE_BOOL,
    ECM_DTYPE_COUNT
} ecm_dtype;

size_t ecm_dtype_size(ecm_dtype t);
const char *ecm_dtype_name(ecm_dtype t);

float ecm_f16_to_f32(uint16_t h);
uint16_t ecm_f32_to_f16(float f);
float ecm_bf16_to_f32(uint16_t h);
uint16_t ecm_f32_to_bf16(float f); /* round to nearest even, NaN kept */

/* Convert n elements of `src` (dtype t) to fp32. F32/F16/BF16/F64 only. */
ecm_status ecm_convert_to_f32(float *dst, const void *src, ecm_dtype t, size_t n);

/* ------------------------------------------------------------ safetensors */

#define ECM_MAX_DIMS 8

typedef struct {
    char *name;                  /* NUL-terminated, owned                    */
    ecm_dtype dtype;
    int n_dims;
    int64_t shape[ECM_MAX_DIMS];
    size_t offset;               /* from the start of the data section       */
    size_t nbytes;
} ecm_st_tensor;

typedef struct {
    const uint8_t *data;         /* start of the data section (borrowed)     */
    size_t data_size;
    int n_tensors;
    ecm_st_tensor *tensors;      /* owned, sorted by offset                  */
    char *metadata_json;         /* the "__metadata__" object as text, or NULL */
} ecm_safetensors;

/* Parse and validate a whole safetensors buffer (header + data). Every
 * offset, shape and dtype is checked against the buffer's size; tensors may
 * not overlap and must cover the data section exactly, as the format says.
 * On success `st` borrows `buf`: keep the buffer alive while st is used. */
ecm_status ecm_safetensors_parse(ecm_safetensors *st, const uint8_t *buf, size_t size);
void ecm_safetensors_free(ecm_safetensors *st);
int ecm_safetensors_find(const ecm_safetensors *st, const char *name);

/* ------------------------------------------------------------------- mmap */

typedef struct {
    uint8_t *data;
    size_t size;
} ecm_mmap;

ecm_status ecm_mmap_open(ecm_mmap *m, const char *path);
void ecm_mmap_close(ecm_mmap *m);

/* ------------------------------------------------------------------ matmul */

/* Weights for out = x @ w^T, w given as [N, K], repacked once into column
 * panels of ECM_NR outputs: panel p holds w[p*NR:(p+1)*NR, :] transposed to
 * [K][NR], zero-padded past N. */
#define ECM_NR 16

typedef struct {
    int N, K;
    float *data;  /* (ceil(N/NR), K, NR), 64-byte aligned; owned or carved */
} ecm_packed;

size_t ecm_packed_floats(int N, int K);
/* Pack w (dtype t, [N, K] row-major or, with transposed=1, [K, N]) into dst. */
ecm_status ecm_pack_weights(ecm_packed *dst, float *storage, const void *w,
                            ecm_dtype t, int N, int K, int transposed);

/* out[M, N] (row stride ldo) = x[M, K] (row stride ldx) @ w^T (+ bias[N]),
 * accumulate != 0 adds to out instead of overwriting.
 * Parallel over output panels with the current OpenMP thread count; when
 * called inside a parallel region it runs on the calling thread alone. */
void ecm_matmul_packed(float *out, int ldo, const float *x, int ldx,
                       const ecm_packed *w, const float *bias, int M, int accumulate);

/* General out[M, N] = a[M, K] @ b^T with b [N, K] (b_trans=0), or a @ b with
 * b [K, N] (b_trans=1). Packs b into `work` (ecm_matmul_work_floats(N, K)
 * floats). Single-threaded: made for use inside parallel regions (attention). */
size_t ecm_matmul_work_floats(int N, int K);
void ecm_matmul_f32(float *out, int ldo, const float *a, int lda,
                    const float *b, int ldb, int b_trans,
                    int M, int N, int K, float *work);

/* Pack b ([N, K] rows, or [K, N] with b_trans) into panels at dst
 * (ecm_matmul_work_floats(N, K) floats), and multiply by such panels using
 * only their first K rows (panel stride kstride rows): attention packs a
 * head's keys once and multiplies each query block by a prefix of them.
 * Both single-threaded. */
void ecm_pack_panels(float *dst, const float *b, int ldb, int b_trans, int N, int K);
void ecm_matmul_prepacked(float *out, int ldo, const float *a, int lda, const float *panels,
                          size_t kstride, int K, int N, int M);

/* Scalar reference: out[M, N] = a[M, K] @ b[N, K]^T (+bias). */
void ecm_matmul_ref(float *out, const float *a, const float *b, const float *bias,
                    int M, int N, int K);

/* --------------------------------------------------------------------- ops */

/* Each op: outputs first, then inputs, then sizes. In-place is allowed where
 * the comment says so. */
void ecm_layernorm_forward(float *out, const float *inp, const float *weight,
                           const float *bias, int T, int C, float eps); /* in-place ok */
void ecm_rmsnorm_forward(float *out, const float *inp, const float *weight,
                         int T, int C, float eps);                    /* in-place ok */
void ecm_gelu_tanh_forward(float *out, const float *inp, size_t n);  /* in-place ok */
void ecm_gelu_erf_forward(float *out, const float *inp, size_t n);   /* in-place ok */
void ecm_silu_forward(float *out, const float *inp, size_t n);       /* in-place ok */
/* out[T, F] = silu(gate) * up, where gu[T, 2F] holds gate then up per row. */
void ecm_swiglu_forward(float *out, const float *gu, int T, int F);
/* o[n] = silu(g[n]) * u[n]: one row (or a slice starting at a multiple of 8)
 * of ecm_swiglu_forward, computed as it computes it. No OpenMP. */
void ecm_swiglu_row(float *o, const float *g, const float *u, int n);
/* Row-wise softmax over the first n of each row, in place. */
void ecm_softmax_forward(float *x, int rows, int n, int stride);
void ecm_add_forward(float *out, const float *a, const float *b, size_t n); /* in-place ok */
/* out[T, C] = table[ids[t], :] */
ecm_status ecm_embedding_forward(float *out, const float *table, const int32_t *ids,
                                 int T, int C, int V);
/* L2-normalise each row in place. */
void ecm_l2norm_rows(float *x, int rows, int C);

/* Vectorised exp over n floats (accurate to ~2 ulp), in place ok. */
void ecm_vexp(float *out, const float *inp, size_t n);

/* -------------------------------------------------------------- attention */

typedef enum {
    ECM_ROPE_NONE = 0,
    ECM_ROPE_LINEAR = 1,
    ECM_ROPE_LLAMA3 = 2,
} ecm_rope_scaling;

typedef struct {
    float theta;
    int scaling;              /* ecm_rope_scaling                           */
    float factor;             /* linear / llama3                            */
    float low_freq_factor;    /* llama3                                     */
    float high_freq_factor;   /* llama3                                     */
    int original_max_pos;     /* llama3                                     */
} ecm_rope_config;

/* inv_freq[HD/2] for this configuration. */
void ecm_rope_inv_freq(float *inv_freq, int HD, const ecm_rope_config *rc);
/* Rotate x[T, n_heads, HD] (row stride `stride` floats) in place, positions
 * pos[t]: rotate-half pairs (i, i + HD/2) as Hugging Face Llama does, or
 * with interleaved != 0 adjacent pairs (2i, 2i+1) as llama.cpp does for
 * GGUF llama weights (whose q/k rows the converter permuted to match). */
void ecm_rope_forward(float *x, int stride, const int32_t *pos, const float *inv_freq,
                      int T, int n_heads, int HD, int interleaved);
/* The pieces of ecm_rope_forward, for callers that rotate a head at a time:
 * cs, sn[HD/2] for position pos, and one head v[HD] rotated by them. */
void ecm_rope_table(float *cs, float *sn, int pos, const float *inv_freq, int HD);
void ecm_rope_head(float *v, const float *cs, const float *sn, int HD, int interleaved);

/* Up to this many query rows, attention reads the cache in place (a row
 * path); above, it packs keys and values for GEMMs. The two round
 * differently, so callers that must reproduce a prefill exactly (prefix-cache
 * reuse) keep more rows than this to compute. */
#define ECM_ATTENTION_DIRECT_ROWS 8

/* Scaled dot-product attention for one sequence.
 * q[T, NH*HD] (stride ldq), k/v[S, NKV*HD] (stride ldk / ldv), out[T, NH*HD]
 * (stride ldo). Query t sits at position P + t among the S = P + T keys; with
 * causal != 0 it sees keys 0..P+t. key_mask[S] (may be NULL) zero = hidden.
 * Runs parallel over heads and query blocks unless already in a parallel region. */
ecm_status ecm_attention_forward(float *out, int ldo, const float *q, int ldq,
                                 const float *k, int ldk, const float *v, int ldv,
                                 const uint8_t *key_mask, int T, int P, int NH, int NKV,
                                 int HD, float scale, int causal);

/* One query row of one head against n_keys cached keys, as
 * ecm_attention_forward computes each row of up to ECM_ATTENTION_DIRECT_ROWS
 * (causal: n_keys = its position + 1): out[HD] = softmax(scale q.k_j) @ v_j,
 * k, v rows of stride ldk, ldv; scores[n_keys] is workspace. No OpenMP. */
void ecm_attention_row(float *out, const float *q, const float *k, int ldk, const float *v, int ldv, int n_keys,
                       int HD, float scale, float *scores);

#ifdef __cplusplus
}
#endif
#endif /* ECM_H */
