/* quants.h: ggml-compatible tensor types: block layouts, dequantisation,
 * reference quantisers, dot products on quantised blocks and the quantised
 * matrix product the models call.
 *
 * Type ids are GGML's, so a GGUF tensor's type field indexes this table
 * directly. A row of K elements of a block type is K / block_size
 * consecutive blocks (GGUF's layout: ggml's ne0 = K is the fast dimension).
 */
#ifndef ECM_QUANTS_H
#define ECM_QUANTS_H

#include "ecm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ECM_TYPE_F32 = 0,
    ECM_TYPE_F16 = 1,
    ECM_TYPE_Q4_0 = 2,
    ECM_TYPE_Q4_1 = 3,
    ECM_TYPE_Q5_0 = 6,
    ECM_TYPE_Q5_1 = 7,
    ECM_TYPE_Q8_0 = 8,
    ECM_TYPE_Q8_1 = 9,
    ECM_TYPE_Q2_K = 10,
    ECM_TYPE_Q3_K = 11,
    ECM_TYPE_Q4_K = 12,
    ECM_TYPE_Q5_K = 13,
    ECM_TYPE_Q6_K = 14,
    ECM_TYPE_Q8_K = 15,
    ECM_TYPE_BF16 = 30,
    ECM_TYPE_COUNT = 42, /* ids below this may be known to the GGUF reader */
} ecm_qtype;

#define ECM_QK 32    /* elements in a Q4_0 / Q4_1 / Q8_0 block */
#define ECM_QK_K 256 /* elements in a K-quant super-block      */
#define ECM_K_SCALE_SIZE 12

/* Block layouts, byte for byte as ggml stores them (fp16 fields as bits). */
typedef struct {
    uint16_t d;              /* scale (fp16)                           */
    uint8_t qs[ECM_QK / 2];  /* nibbles: x[j] low, x[j + 16] high      */
} ecm_block_q4_0;            /* x = d * (q - 8)                        */

typedef struct {
    uint16_t d, m;           /* scale, min (fp16)                      */
    uint8_t qs[ECM_QK / 2];
} ecm_block_q4_1;            /* x = d * q + m                          */

typedef struct {
    uint16_t d;
    int8_t qs[ECM_QK];
} ecm_block_q8_0;            /* x = d * q                              */

typedef struct {
    uint16_t d, dmin;                    /* super-block scales (fp16)          */
    uint8_t scales[ECM_K_SCALE_SIZE];    /* 8 x (6-bit scale, 6-bit min)       */
    uint8_t qs[ECM_QK_K / 2];            /* 4-bit quants                       */
} ecm_block_q4_K;                        /* x = d*sc*q - dmin*m per 32         */

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[ECM_K_SCALE_SIZE];
    uint8_t qh[ECM_QK_K / 8];            /* fifth bits                         */
    uint8_t qs[ECM_QK_K / 2];            /* low 4 bits                         */
} ecm_block_q5_K;

typedef struct {
    uint8_t ql[ECM_QK_K / 2];            /* low 4 bits                         */
    uint8_t qh[ECM_QK_K / 4];            /* high 2 bits                        */
    int8_t scales[ECM_QK_K / 16];        /* 8-bit scale per 16                 */
    uint16_t d;                          /* super-block scale (fp16)           */
} ecm_block_q6_K;                        /* x = d * sc * (q - 32)              */

typedef struct {
    float d;
    int8_t qs[ECM_QK_K];
    int16_t bsums[ECM_QK_K / 16];        /* sums of qs per 16                  */
} ecm_block_q8_K;                        /* activations for the K-quants       */

/* Activations for Q4_0 / Q4_1 / Q8_0 dot products: like ggml's Q8_1 but
 * with fp32 scale and sum, so the min term of Q4_1 loses nothing to fp16. */
typedef struct {
    float d;                 /* amax / 127                             */
    float s;                 /* d * sum(qs)                            */
    int8_t qs[ECM_QK];
} ecm_block_q8_a;

/* One row of weights against one row of quantised activations. */
typedef void (*ecm_vec_dot_fn)(int K, float *s, const void *w, const void *xq);
typedef void (*ecm_to_float_fn)(float *dst, const void *src, int64_t n);
typedef void (*ecm_from_float_fn)(void *dst, const float *src, int64_t n);

typedef struct {
    const char *name;
    int block_size;               /* elements per block (1 for F32/F16/BF16) */
    size_t block_bytes;
    ecm_to_float_fn to_float;     /* exact: matches gguf.quants.dequantize    */
    ecm_from_float_fn from_float_ref; /* llama.cpp's reference quantiser      */
    int act_type;                 /* activations: ECM_TYPE_F32, Q8_1 (our
                                     ecm_block_q8_a) or Q8_K                   */
    ecm_vec_dot_fn vec_dot_ref;   /* scalar                                   */
} ecm_type_traits;

/* Traits of a type this engine computes with (F32, F16, BF16, Q4_0, Q4_1,
 * Q8_0, Q4_K, Q5_K, Q6_K, Q8_K); NULL otherwise. */
const ecm_type_traits *ecm_type_traits_get(int qtype);
/* Block geometry of every GGML type id (0 for unknown ids): used to size
 * tensors of types we only read. */
size_t ecm_type_block_size(int qtype);
size_t ecm_type_block_bytes(int qtype);
const char *ecm_type_name(int qtype);

/* Bytes in a row of K elements (0 when K is not a whole number of blocks or
 * the type is unknown). */
size_t ecm_quant_row_bytes(int qtype, int K);
/* dst[K] = dequant(src row). ECM_ERR_VALUE for unsupported types or bad K. */
ecm_status ecm_dequantize_row(float *dst, const void *src, int qtype, int K);
/* dst = quant(src[n]) with the reference quantiser; n a multiple of the block. */
ecm_status ecm_quantize_ref(void *dst, const float *src, int qtype, int64_t n);

/* Activation quantisation for the dot products (one row of K). These pick
 * the SIMD path at run time; every path gives bit-identical blocks. */
void ecm_quantize_row_q8_a(ecm_block_q8_a *dst, const float *x, int K);
void ecm_quantize_row_q8_a_ref(ecm_block_q8_a *dst, const float *x, int K);
void ecm_quantize_row_q8_K_ref(ecm_block_q8_K *dst, const float *x, int K);

/* The dot product of one weight row (qtype) with activations x[K]: x is
 * quantised like the matmul does it, then vec_dot on the current SIMD path.
 * For tests and tools; the models call ecm_matmul_quant. */
ecm_status ecm_vec_dot_quant(float *out, const void *w, int qtype, const float *x, int K, int reference);

/* out[M, N] (row stride ldo) = x[M, K] (row stride ldx) @ dequant(w)^T, where
 * w holds N rows of K elements of type qtype. The rows of x are quantised
 * once into a buffer shared by the threads (Q8 blocks for the quantised
 * types; F32/F16/BF16 weights use x as it is); the N output rows are split
 * across OpenMP threads, or run serially inside a parallel region.
 * ECM_ERR_VALUE for unsupported types, K not a multiple of the block size or
 * non-positive sizes; ECM_ERR_NOMEM if the buffer cannot be allocated. */
ecm_status ecm_matmul_quant(float *out, int ldo, const float *x, int ldx, const void *w, int qtype,
                            int N, int K, int M);
/* The same with a bias[N] (or NULL) added, and accumulate != 0 adding the
 * result to out instead of overwriting it (the residual stream), in one pass. */
ecm_status ecm_matmul_quant_ex(float *out, int ldo, const float *x, int ldx, const void *w, int qtype,
                               const float *bias, int N, int K, int M, int accumulate);

/* Activations quantised for a weight type, for callers that quantise once
 * and multiply in parts: bytes of a row of K (0 when the type multiplies
 * float activations), elements per activation block (32, 256; 0 likewise),
 * and dst = the row x[n] (n a multiple of the block) quantised as
 * ecm_matmul_quant_ex and ecm_matmul_tiled quantise it. */
size_t ecm_act_row_bytes(int qtype, int K);
int ecm_act_block(int qtype);
void ecm_quantize_act(void *dst, const float *x, int qtype, int n);
/* One thread's share of ecm_matmul_quant_ex on standard (untiled) blocks:
 * output columns [n0, n1) from M rows of activations quantised by
 * ecm_quantize_act (rows of ecm_act_row_bytes). Sizes are the caller's to
 * check; no OpenMP here. */
void ecm_matmul_quant_part(float *out, int ldo, const void *act, const void *w, int qtype, const float *bias, int N,
                           int K, int M, int accumulate, int n0, int n1);

/* Q4_0, Q4_1 and Q8_0 weights in tiles of 8 interleaved rows (quants_tiled.c
 * has the layout and the arithmetic; models store these types this way).
 * ecm_matmul_quant(_ex) on standard blocks tiles a copy first. */
int ecm_tiled_type(int qtype);
/* Bytes of N rows of K in tiles (N rounded up to 8); 0 if not tiled or invalid. */
size_t ecm_tiled_bytes(int qtype, int N, int K);
/* Standard blocks (N rows of K) -> tiles; dst holds ecm_tiled_bytes. */
ecm_status ecm_tile_weights(void *dst, const void *src, int qtype, int N, int K);
/* dst[K] = dequant(row), bit-identical to ecm_dequantize_row on the blocks. */
void ecm_tiled_dequantize_row(float *dst, const void *tiles, int qtype, int K, int row);
/* ecm_matmul_quant_ex on tiled weights. */
ecm_status ecm_matmul_tiled(float *out, int ldo, const float *x, int ldx, const void *tiles, int qtype,
                            const float *bias, int N, int K, int M, int accumulate);
/* One thread's share of it, for a team inside a parallel region (no OpenMP
 * here): output columns of tiles [t0, t1) (rows 8 t0 .. 8 t1 of w), from M
 * activation rows already quantised by ecm_quantize_row_q8_a (act: M rows
 * of K / 32 blocks). Sizes are the caller's to check. Every output is
 * computed exactly as ecm_matmul_tiled computes it. */
void ecm_matmul_tiled_part(float *out, int ldo, const ecm_block_q8_a *act, const void *tiles, int qtype,
                           const float *bias, int N, int K, int M, int accumulate, int t0, int t1);

#ifdef __cplusplus
}
#endif
#endif /* ECM_QUANTS_H */
