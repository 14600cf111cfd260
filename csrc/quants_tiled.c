/* quants_tiled.c: Q4_0, Q4_1 and Q8_0 weights stored in tiles of 8 rows, and
 * the matrix product out = x @ dequant(w)^T on them.
 *
 * Why tiles: in llama.cpp's block layout one vector of an integer dot
 * product holds 32 values of ONE row, so every block of every row ends with
 * a conversion, a scale product and an FMA (and a horizontal sum at the end).
 * Interleaving 8 rows so that one 32-byte vector holds 4 consecutive k of
 * each of 8 rows puts a block's integer sums for 8 rows in the 8 lanes of one
 * vector: one conversion, one scale product and one FMA serve 8 rows, and a
 * block costs 8 maddubs + 8 adds per activation row instead of 8 x 5 uops.
 * That is what makes batched decoding (16 sequences, one pass over the
 * weights) pay: the integer work is shared, the per-output float work is
 * cut by 8.
 *
 * Tile block (block i of a tile of rows 8t..8t+7), TB bytes:
 *   Q4_0: d[8] fp16 | qs[128]              (144 = 8 x 18)
 *   Q4_1: d[8] fp16 | m[8] fp16 | qs[128]  (160 = 8 x 20)
 *   Q8_0: d[8] fp16 | qs[256]              (272 = 8 x 34)
 * Q4 qs: chunk c (0..3) of 32 bytes, byte 4r + j = q[r][8c + j] | q[r][8c + 4 + j] << 4
 *        (low nibbles: k = 8c..8c+3, high nibbles: k = 8c+4..8c+7).
 * Q8 qs: group g (0..7) of 32 bytes, byte 4r + j = q[r][4g + j].
 * Rows past N in the last tile are zero. The tiles of N rows take exactly
 * the bytes of the blocks when N % 8 == 0.
 *
 * The arithmetic of one output, on every path (scalar, AVX2; any M, any
 * grouping of activation rows, any thread count), so a sequence decodes to
 * the same logits alone or batched with 15 others:
 *   acc = 0;  for each block i: acc = fma(dw[i] * dx[i], (float)isum[i], acc)
 *   mac = 0;  for each block i: mac = fma(mw[i] (Q4_1) or dw[i] (Q4_0), sx[i], mac)
 *   out = acc + mac (Q4_1), acc - 8 * mac (Q4_0), acc (Q8_0)
 * with isum the exact integer dot product of the block's weight codes (Q4:
 * unsigned 0..15) and the activation's 8-bit codes, dx / sx the activation
 * block's scale and scaled sum (ecm_block_q8_a).
 */
#pragma STDC FP_CONTRACT OFF
#include "quants.h"

#include <math.h>
#include <string.h>


#define TR 8  /* rows per tile */
#define NA 4  /* activation rows per kernel call */
#define MC 64 /* activation rows per pass over the weights (L2-resident) */

int ecm_tiled_type(int qtype) {
    return qtype == ECM_TYPE_Q4_0 || qtype == ECM_TYPE_Q4_1 || qtype == ECM_TYPE_Q8_0;
}

static int hdr_bytes(int qtype) { return qtype == ECM_TYPE_Q4_1 ? 32 : 16; }
static size_t tile_block_bytes(int qtype) { return (size_t)hdr_bytes(qtype) + (qtype == ECM_TYPE_Q8_0 ? 256 : 128); }

size_t ecm_tiled_bytes(int qtype, int N, int K) {
    if (!ecm_tiled_type(qtype) || N <= 0 || K <= 0 || K % ECM_QK) return 0;
    size_t n;
    if (!ecm_mul_size((size_t)(N + TR - 1) / TR, (size_t)(K / ECM_QK), &n) ||
        !ecm_mul_size(n, tile_block_bytes(qtype), &n))
        return 0;
    return n;
}

/* Code of element k of a standard block (Q4: 0..15, Q8: -128..127). */
static inline int std_code(const uint8_t *blk, int qtype, int k) {
    if (qtype == ECM_TYPE_Q8_0) return (int8_t)blk[2 + k];
    const uint8_t *qs = blk + (qtype == ECM_TYPE_Q4_1 ? 4 : 2);
    return k < ECM_QK / 2 ? qs[k] & 0x0F : qs[k - ECM_QK / 2] >> 4;
}

/* Code of element k of row r in a tile block's qs. */
static inline int tile_code(const uint8_t *qs, int qtype, int r, int k) {
    if (qtype == ECM_TYPE_Q8_0) return (int8_t)qs[32 * (k / 4) + 4 * r + k % 4];
    const int c = k / 8, j = k % 8;
    const uint8_t b = qs[32 * c + 4 * r + (j & 3)];
    return j < 4 ? b & 0x0F : b >> 4;
}

ecm_status ecm_tile_weights(void *dst, const void *src, int qtype, int N, int K) {
    const size_t total = ecm_tiled_bytes(qtype, N, K);
    if (!total)
        return ecm_fail(ECM_ERR_VALUE, "tile_weights: %s is not a tiled type or N=%d K=%d are invalid",
                        ecm_type_name(qtype), N, K);
    const int nb = K / ECM_QK, hb = hdr_bytes(qtype), T = (N + TR - 1) / TR;
    const size_t row = ecm_quant_row_bytes(qtype, K), bb = row / (size_t)nb, tbb = tile_block_bytes(qtype);
    uint8_t *out = dst;
    const uint8_t *in = src;
    memset(out, 0, total);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < nb; i++) {
            uint8_t *tb = out + ((size_t)t * nb + i) * tbb, *qs = tb + hb;
            for (int r = 0; r < TR && t * TR + r < N; r++) {
                const uint8_t *blk = in + (size_t)(t * TR + r) * row + (size_t)i * bb;
                memcpy(tb + 2 * r, blk, 2);
                if (qtype == ECM_TYPE_Q4_1) memcpy(tb + 16 + 2 * r, blk + 2, 2);
                if (qtype == ECM_TYPE_Q8_0) {
                    for (int k = 0; k < ECM_QK; k++) qs[32 * (k / 4) + 4 * r + k % 4] = (uint8_t)std_code(blk, qtype, k);
                } else {
                    for (int c = 0; c < 4; c++)
                        for (int j = 0; j < 4; j++)
                            qs[32 * c + 4 * r + j] =
                                (uint8_t)(std_code(blk, qtype, 8 * c + j) | std_code(blk, qtype, 8 * c + 4 + j) << 4);
                }
            }
        }
    return ECM_OK;
}

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return ecm_f16_to_f32(h);
}

/* The same expressions as the standard dequantisers: bit-identical values. */
NOCONTRACT void ecm_tiled_dequantize_row(float *dst, const void *tiles, int qtype, int K, int row) {
    const int nb = K / ECM_QK, r = row % TR, hb = hdr_bytes(qtype);
    const size_t tbb = tile_block_bytes(qtype);
    const uint8_t *t = (const uint8_t *)tiles + (size_t)(row / TR) * nb * tbb;
    for (int i = 0; i < nb; i++, dst += ECM_QK) {
        const uint8_t *tb = t + (size_t)i * tbb, *qs = tb + hb;
        const float d = h2f(tb + 2 * r);
        if (qtype == ECM_TYPE_Q4_0) {
            for (int k = 0; k < ECM_QK; k++) dst[k] = d * (float)(tile_code(qs, qtype, r, k) - 8);
        } else if (qtype == ECM_TYPE_Q4_1) {
            const float m = h2f(tb + 16 + 2 * r);
            for (int k = 0; k < ECM_QK; k++) {
                const float p = d * (float)tile_code(qs, qtype, r, k);
                dst[k] = p + m;
            }
        } else {
            for (int k = 0; k < ECM_QK; k++) dst[k] = (float)tile_code(qs, qtype, r, k) * d;
        }
    }
}

/* ------------------------------------------------------------ kernels */

/* One tile against one activation row: res[8], the arithmetic of the header. */
static NOCONTRACT void tile_ref(const uint8_t *w, int qtype, int nb, const ecm_block_q8_a *y, float *res) {
    const int hb = hdr_bytes(qtype);
    const size_t tbb = tile_block_bytes(qtype);
    for (int r = 0; r < TR; r++) {
        float acc = 0.0f, mac = 0.0f;
        for (int i = 0; i < nb; i++) {
            const uint8_t *tb = w + (size_t)i * tbb;
            int isum = 0;
            for (int k = 0; k < ECM_QK; k++) isum += tile_code(tb + hb, qtype, r, k) * y[i].qs[k];
            acc = fmaf(h2f(tb + 2 * r) * y[i].d, (float)isum, acc);
        }
        if (qtype != ECM_TYPE_Q8_0)
            for (int i = 0; i < nb; i++) {
                const uint8_t *tb = w + (size_t)i * tbb;
                mac = fmaf(h2f(tb + (qtype == ECM_TYPE_Q4_1 ? 16 : 0) + 2 * r), y[i].s, mac);
            }
        res[r] = qtype == ECM_TYPE_Q4_1 ? acc + mac : qtype == ECM_TYPE_Q4_0 ? acc - 8.0f * mac : acc;
    }
}

#ifdef ECM_X86
static inline __attribute__((always_inline)) AVX2_ATTR __m256i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* The scale terms shared by the Q4 and Q8 kernels: mins, then the result. */
static inline __attribute__((always_inline)) AVX2_ATTR __m256 finish(const uint8_t *w, size_t tbb, int qtype, int nb,
                                                                     const ecm_block_q8_a *y, __m256 acc) {
    if (qtype == ECM_TYPE_Q8_0) return acc;
    const int off = qtype == ECM_TYPE_Q4_1 ? 16 : 0;
    __m256 mac = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + (size_t)i * tbb + off)));
        mac = _mm256_fmadd_ps(mw, _mm256_set1_ps(y[i].s), mac);
    }
    if (qtype == ECM_TYPE_Q4_1) return _mm256_add_ps(acc, mac);
    return _mm256_sub_ps(acc, _mm256_mul_ps(_mm256_set1_ps(8.0f), mac));
}

/* Q4_0 / Q4_1: isum in int16 lanes (8 maddubs of codes <= 15 and <= 127 in
 * magnitude: |sum| <= 8 * 2 * 15 * 127 = 30480, no saturation), widened once. */
static inline __attribute__((always_inline)) AVX2_ATTR void tile_q4_avx2(const uint8_t *w, int qtype, int nb,
                                                                         const ecm_block_q8_a *const *y, int na,
                                                                         __m256 *res) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const size_t tbb = tile_block_bytes(qtype);
    const int hb = hdr_bytes(qtype);
    __m256 acc[NA];
    for (int a = 0; a < na; a++) acc[a] = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const uint8_t *tb = w + (size_t)i * tbb, *qs = tb + hb;
        __m256i s[NA];
        for (int a = 0; a < na; a++) s[a] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            for (int a = 0; a < na; a++) {
                const int8_t *xq = y[a][i].qs + 8 * c;
                s[a] = _mm256_add_epi16(s[a], _mm256_maddubs_epi16(lo, bcast4(xq)));
                s[a] = _mm256_add_epi16(s[a], _mm256_maddubs_epi16(hi, bcast4(xq + 4)));
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tb));
        for (int a = 0; a < na; a++)
            acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(y[a][i].d)),
                                     _mm256_cvtepi32_ps(_mm256_madd_epi16(s[a], ones)), acc[a]);
    }
    for (int a = 0; a < na; a++) res[a] = finish(w, tbb, qtype, nb, y[a], acc[a]);
}

/* Q8_0: maddubs needs an unsigned operand: |w| against x with w's sign
 * (pairs <= 2 * 128 * 127 = 32512, no saturation), widened per group. */
static inline __attribute__((always_inline)) AVX2_ATTR void tile_q8_avx2(const uint8_t *w, int nb,
                                                                         const ecm_block_q8_a *const *y, int na,
                                                                         __m256 *res) {
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t tbb = tile_block_bytes(ECM_TYPE_Q8_0);
    __m256 acc[NA];
    for (int a = 0; a < na; a++) acc[a] = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const uint8_t *tb = w + (size_t)i * tbb, *qs = tb + 16;
        __m256i s[NA];
        for (int a = 0; a < na; a++) s[a] = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
            const __m256i aw = _mm256_sign_epi8(wv, wv);
            for (int a = 0; a < na; a++) {
                const __m256i xs = _mm256_sign_epi8(bcast4(y[a][i].qs + 4 * g), wv);
                s[a] = _mm256_add_epi32(s[a], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones));
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tb));
        for (int a = 0; a < na; a++)
            acc[a] = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(y[a][i].d)), _mm256_cvtepi32_ps(s[a]), acc[a]);
    }
    for (int a = 0; a < na; a++) res[a] = acc[a];
}

#define TILE_CASES(CALL) \
    switch (na) {        \
    case 1: CALL(1); break; \
    case 2: CALL(2); break; \
    case 3: CALL(3); break; \
    default: CALL(4); break; \
    }

static AVX2_ATTR void tile_avx2(const uint8_t *w, int qtype, int nb, const ecm_block_q8_a *const *y, int na,
                                float res[NA][TR]) {
    __m256 v[NA];
    /* the type as a constant lets the compiler drop the other types' branches */
#define Q40(n) tile_q4_avx2(w, ECM_TYPE_Q4_0, nb, y, n, v)
#define Q41(n) tile_q4_avx2(w, ECM_TYPE_Q4_1, nb, y, n, v)
#define Q80(n) tile_q8_avx2(w, nb, y, n, v)
    if (qtype == ECM_TYPE_Q8_0) {
        TILE_CASES(Q80)
    } else if (qtype == ECM_TYPE_Q4_1) {
        TILE_CASES(Q41)
    } else {
        TILE_CASES(Q40)
    }
#undef Q40
#undef Q41
#undef Q80
    for (int a = 0; a < na; a++) _mm256_storeu_ps(res[a], v[a]);
}
#endif

/* ------------------------------------------------------------- matmul */

/* Tiles [t0, t1) against activation rows [m0, m1) (act: rows of nb blocks). */
static void tiles_rows(float *out, int ldo, const ecm_block_q8_a *act, const void *tiles, int qtype,
                       const float *bias, int N, int nb, int accumulate, int t0, int t1, int m0, int m1) {
#ifdef ECM_X86
    const int simd = ecm_simd_level_get() >= ECM_SIMD_AVX2;
#endif
    const size_t tstride = (size_t)nb * tile_block_bytes(qtype);
    for (int t = t0; t < t1; t++) {
        const uint8_t *w = (const uint8_t *)tiles + (size_t)t * tstride;
        const int rows = N - t * TR < TR ? N - t * TR : TR;
        for (int m = m0; m < m1; m += NA) {
            const int na = m1 - m < NA ? m1 - m : NA;
            const ecm_block_q8_a *y[NA];
            float res[NA][TR];
            for (int a = 0; a < na; a++) y[a] = act + (size_t)(m + a) * nb;
#ifdef ECM_X86
            if (simd) tile_avx2(w, qtype, nb, y, na, res);
            else
#endif
                for (int a = 0; a < na; a++) tile_ref(w, qtype, nb, y[a], res[a]);
            for (int a = 0; a < na; a++)
                for (int r = 0; r < rows; r++) {
                    const int n = t * TR + r;
                    float d = res[a][r];
                    if (bias) d += bias[n];
                    float *o = out + (size_t)(m + a) * ldo + n;
                    *o = accumulate ? *o + d : d;
                }
        }
    }
}

void ecm_matmul_tiled_part(float *out, int ldo, const ecm_block_q8_a *act, const void *tiles, int qtype,
                           const float *bias, int N, int K, int M, int accumulate, int t0, int t1) {
    const int nb = K / ECM_QK;
    for (int m0 = 0; m0 < M; m0 += MC)
        tiles_rows(out, ldo, act, tiles, qtype, bias, N, nb, accumulate, t0, t1, m0, m0 + MC < M ? m0 + MC : M);
}

ecm_status ecm_matmul_tiled(float *out, int ldo, const float *x, int ldx, const void *tiles, int qtype,
                            const float *bias, int N, int K, int M, int accumulate) {
    if (!ecm_tiled_type(qtype))
        return ecm_fail(ECM_ERR_VALUE, "matmul_tiled: %s weights are not tiled", ecm_type_name(qtype));
    if (N <= 0 || K <= 0 || M <= 0)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: sizes must be positive, got N=%d K=%d M=%d", N, K, M);
    if (K % ECM_QK)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: K=%d is not a multiple of the %s block size %d", K,
                        ecm_type_name(qtype), ECM_QK);
    if (ldo < N || ldx < K)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: row strides ldo=%d ldx=%d below N=%d, K=%d", ldo, ldx, N, K);
    const int nb = K / ECM_QK, T = (N + TR - 1) / TR;
    const size_t arow = (size_t)nb * sizeof(ecm_block_q8_a);
    size_t total;
    if (!ecm_mul_size(arow, (size_t)M, &total))
        return ecm_fail(ECM_ERR_NOMEM, "matmul_quant: activation buffer size overflows");
    uint8_t *act = ecm_alloc(total);
    if (!act) return ECM_ERR_NOMEM;
    const int serial = ecm_in_parallel();
#pragma omp parallel for schedule(static) if (M > 1 && !serial)
    for (int m = 0; m < M; m++) ecm_quantize_row_q8_a((ecm_block_q8_a *)(act + (size_t)m * arow), x + (size_t)m * ldx, K);
#pragma omp parallel if (!serial && T > 1)
    for (int m0 = 0; m0 < M; m0 += MC) {
        const int m1 = m0 + MC < M ? m0 + MC : M;
#pragma omp for schedule(static) nowait
        for (int t = 0; t < T; t++)
            tiles_rows(out, ldo, (const ecm_block_q8_a *)act, tiles, qtype, bias, N, nb, accumulate, t, t + 1, m0, m1);
    }
    ecm_free(act);
    return ECM_OK;
}
