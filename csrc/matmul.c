/* matmul.c: fp32 GEMM, out[M, N] = x[M, K] @ w[N, K]^T.
 *
 * Weights are repacked once into column panels of NR = 16 outputs laid out
 * [K][16], so a micro-kernel streams one panel with unit stride while it
 * keeps an MR x 16 block of the output in registers (6 x 16 in twelve ymm
 * registers for AVX2, 12 x 16 in twelve zmm for AVX-512). The K dimension is
 * cut into KC-blocks so the MR rows of x stay in L1 while the panels of a
 * chunk stay in L2. Threads split the output panels: every thread writes its
 * own columns, so the result does not depend on the thread count.
 *
 * The SIMD kernels carry target attributes and are chosen at run time
 * (ecm_simd_level_get), so the default build runs on any x86-64.
 */
#include "ecm.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define NR ECM_NR
#define KC 256
#define PANELS_PER_CHUNK 16 /* 256 output columns: KC x 256 x 4 B = 256 KiB in L2 */

size_t ecm_packed_floats(int N, int K) {
    return (size_t)((N + NR - 1) / NR) * (size_t)K * NR;
}

size_t ecm_matmul_work_floats(int N, int K) { return ecm_packed_floats(N, K); }

/* Pack rows n0..n0+NR of w into one panel [K][NR], zero-padding past N. */
static void pack_panel_f32(float *dst, const float *w, int ldw, int transposed, int n0, int N, int K) {
    int nr = N - n0 < NR ? N - n0 : NR;
    if (transposed) { /* w is [K, N] (row stride ldw): a panel row is contiguous */
        for (int k = 0; k < K; k++) {
            const float *src = w + (size_t)k * ldw + n0;
            float *d = dst + (size_t)k * NR;
            memcpy(d, src, (size_t)nr * sizeof(float));
            if (nr < NR) memset(d + nr, 0, (size_t)(NR - nr) * sizeof(float));
        }
        return;
    }
    if (nr < NR) memset(dst, 0, (size_t)K * NR * sizeof(float));
    for (int j = 0; j < nr; j++) {
        const float *src = w + (size_t)(n0 + j) * ldw;
        for (int k = 0; k < K; k++) dst[(size_t)k * NR + j] = src[k];
    }
}

ecm_status ecm_pack_weights(ecm_packed *dst, float *storage, const void *w, ecm_dtype t, int N, int K,
                            int transposed) {
    if (N <= 0 || K <= 0) return ecm_fail(ECM_ERR_VALUE, "weight sizes must be positive, got [%d, %d]", N, K);
    dst->N = N;
    dst->K = K;
    dst->data = storage;
    int n_panels = (N + NR - 1) / NR;
    if (t == ECM_DTYPE_F32) {
#pragma omp parallel for schedule(static) if (n_panels > 1 && !ecm_in_parallel())
        for (int p = 0; p < n_panels; p++)
            pack_panel_f32(storage + (size_t)p * K * NR, (const float *)w, transposed ? N : K, transposed,
                           p * NR, N, K);
        return ECM_OK;
    }
    if (t != ECM_DTYPE_F16 && t != ECM_DTYPE_BF16 && t != ECM_DTYPE_F64)
        return ecm_fail(ECM_ERR_VALUE, "cannot pack weights of dtype %s", ecm_dtype_name(t));
    /* Convert panel by panel through a row buffer; no full fp32 copy. */
    size_t es = ecm_dtype_size(t);
    int status = ECM_OK;
#pragma omp parallel
    {
        float *row = ecm_alloc((size_t)(transposed ? N : K) * sizeof(float));
        if (!row) {
#pragma omp atomic write
            status = ECM_ERR_NOMEM;
        }
#pragma omp for schedule(static)
        for (int p = 0; p < n_panels; p++) {
            if (!row) continue;
            float *d = storage + (size_t)p * K * NR;
            int n0 = p * NR, nr = N - n0 < NR ? N - n0 : NR;
            memset(d, 0, (size_t)K * NR * sizeof(float));
            if (transposed) {
                for (int k = 0; k < K; k++) {
                    ecm_convert_to_f32(row, (const uint8_t *)w + ((size_t)k * N + n0) * es, t, (size_t)nr);
                    memcpy(d + (size_t)k * NR, row, (size_t)nr * sizeof(float));
                }
            } else {
                for (int j = 0; j < nr; j++) {
                    ecm_convert_to_f32(row, (const uint8_t *)w + (size_t)(n0 + j) * K * es, t, (size_t)K);
                    for (int k = 0; k < K; k++) d[(size_t)k * NR + j] = row[k];
                }
            }
        }
        ecm_free(row);
    }
    if (status != ECM_OK) return ecm_fail(ECM_ERR_NOMEM, "out of memory packing weights");
    return ECM_OK;
}

/* ------------------------------------------------------------ micro-kernels
 * uk(mr, kc, a, lda, b, c, ldc, nr, add, bias):
 *   c[0:mr, 0:nr] (=|+=) a[0:mr, 0:kc] @ b[0:kc, 0:NR] (+ bias[0:nr])
 * a: rows of x (stride lda); b: a panel slice [kc][NR]; add selects += . */
typedef void (*ukernel_fn)(int mr, int kc, const float *a, int lda, const float *b, float *c, int ldc,
                           int nr, int add, const float *bias);
/* rk(kc, a, b, pstride, c, add, bias): one row against four full panels. */
typedef void (*rowkernel_fn)(int kc, const float *a, const float *b, size_t pstride, float *c, int add,
                             const float *bias);

static void store_tile(float *c, int ldc, const float *tile, int mr, int nr, int add, const float *bias) {
    for (int i = 0; i < mr; i++) {
        float *ci = c + (size_t)i * ldc;
        const float *ti = tile + i * NR;
        if (add)
            for (int j = 0; j < nr; j++) ci[j] += ti[j] + (bias ? bias[j] : 0.0f);
        else
            for (int j = 0; j < nr; j++) ci[j] = ti[j] + (bias ? bias[j] : 0.0f);
    }
}

static void uk_scalar(int mr, int kc, const float *a, int lda, const float *b, float *c, int ldc, int nr,
                      int add, const float *bias) {
    float tile[12 * NR];
    memset(tile, 0, sizeof tile);
    for (int i = 0; i < mr; i++) {
        const float *ai = a + (size_t)i * lda;
        float *ti = tile + i * NR;
        for (int k = 0; k < kc; k++) {
            float av = ai[k];
            const float *bk = b + (size_t)k * NR;
            for (int j = 0; j < NR; j++) ti[j] += av * bk[j];
        }
    }
    store_tile(c, ldc, tile, mr, nr, add, bias);
}

#ifdef ECM_X86
#define AVX512_ATTR __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

/* MR rows x 16 columns in 2*MR ymm accumulators. The accumulators are
 * named variables, not an array: GCC keeps an array in memory and would
 * store it back every k-step. Rows past MR are dead code once inlined. */
#define UK_ROW(i)                                                                          \
    if (MR > i) {                                                                          \
        __m256 av = _mm256_broadcast_ss(a + (size_t)(i) * lda + k);                        \
        c##i##a = _mm256_fmadd_ps(av, b0, c##i##a);                                        \
        c##i##b = _mm256_fmadd_ps(av, b1, c##i##b);                                        \
    }
#define UK_OUT(i)                                                                          \
    if (MR > i) {                                                                          \
        float *ci = c + (size_t)(i) * ldc;                                                 \
        __m256 r0 = _mm256_add_ps(c##i##a, bb0), r1 = _mm256_add_ps(c##i##b, bb1);         \
        if (add) {                                                                         \
            r0 = _mm256_add_ps(r0, _mm256_loadu_ps(ci));                                   \
            r1 = _mm256_add_ps(r1, _mm256_loadu_ps(ci + 8));                               \
        }                                                                                  \
        _mm256_storeu_ps(ci, r0);                                                          \
        _mm256_storeu_ps(ci + 8, r1);                                                      \
    }
#define UK_TILE(i)                                                                         \
    if (MR > i) {                                                                          \
        _mm256_storeu_ps(tile + (i) * NR, c##i##a);                                        \
        _mm256_storeu_ps(tile + (i) * NR + 8, c##i##b);                                    \
    }

static inline __attribute__((always_inline)) AVX2_ATTR void uk_avx2_body(const int MR, int kc, const float *a,
                                                                           int lda, const float *b, float *c,
                                                                           int ldc, int nr, int add,
                                                                           const float *bias) {
    __m256 c0a = _mm256_setzero_ps(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a;
    __m256 c3a = c0a, c3b = c0a, c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a;
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(b + (size_t)k * NR);
        __m256 b1 = _mm256_load_ps(b + (size_t)k * NR + 8);
        UK_ROW(0) UK_ROW(1) UK_ROW(2) UK_ROW(3) UK_ROW(4) UK_ROW(5)
    }
    if (nr == NR) {
        __m256 bb0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
        __m256 bb1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
        UK_OUT(0) UK_OUT(1) UK_OUT(2) UK_OUT(3) UK_OUT(4) UK_OUT(5)
        return;
    }
    float tile[6 * NR];
    UK_TILE(0) UK_TILE(1) UK_TILE(2) UK_TILE(3) UK_TILE(4) UK_TILE(5)
    store_tile(c, ldc, tile, MR, nr, add, bias);
}
#undef UK_ROW
#undef UK_OUT
#undef UK_TILE

/* One row of x against four full panels (64 outputs): eight FMA chains in
 * flight, yet every output still sums its k terms in the same order as the
 * MR-row kernel, so a row's result does not depend on how many rows share
 * the call (batched decoding gives the same tokens as decoding alone). */
static AVX2_ATTR void rk_avx2(int kc, const float *a, const float *b, size_t pstride, float *c, int add,
                              const float *bias) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    const float *b0 = b, *b1 = b + pstride, *b2 = b + 2 * pstride, *b3 = b + 3 * pstride;
    for (int k = 0; k < kc; k++) {
        __m256 av = _mm256_broadcast_ss(a + k);
        size_t o = (size_t)k * NR;
        s0 = _mm256_fmadd_ps(av, _mm256_load_ps(b0 + o), s0);
        s1 = _mm256_fmadd_ps(av, _mm256_load_ps(b0 + o + 8), s1);
        s2 = _mm256_fmadd_ps(av, _mm256_load_ps(b1 + o), s2);
        s3 = _mm256_fmadd_ps(av, _mm256_load_ps(b1 + o + 8), s3);
        s4 = _mm256_fmadd_ps(av, _mm256_load_ps(b2 + o), s4);
        s5 = _mm256_fmadd_ps(av, _mm256_load_ps(b2 + o + 8), s5);
        s6 = _mm256_fmadd_ps(av, _mm256_load_ps(b3 + o), s6);
        s7 = _mm256_fmadd_ps(av, _mm256_load_ps(b3 + o + 8), s7);
    }
    __m256 acc[8] = {s0, s1, s2, s3, s4, s5, s6, s7};
    for (int j = 0; j < 8; j++) {
        __m256 r = _mm256_add_ps(acc[j], bias ? _mm256_loadu_ps(bias + 8 * j) : _mm256_setzero_ps());
        if (add) r = _mm256_add_ps(r, _mm256_loadu_ps(c + 8 * j));
        _mm256_storeu_ps(c + 8 * j, r);
    }
}

static AVX2_ATTR void uk_avx2(int mr, int kc, const float *a, int lda, const float *b, float *c, int ldc,
                              int nr, int add, const float *bias) {
    switch (mr) {
    case 6: uk_avx2_body(6, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 5: uk_avx2_body(5, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 4: uk_avx2_body(4, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 3: uk_avx2_body(3, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 2: uk_avx2_body(2, kc, a, lda, b, c, ldc, nr, add, bias); break;
    default: uk_avx2_body(1, kc, a, lda, b, c, ldc, nr, add, bias); break;
    }
}

/* MR rows x 16 columns in MR zmm accumulators (named, as in the AVX2 kernel). */
#define UK_ROW(i) if (MR > i) c##i = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)(i) * lda + k]), bk, c##i);
#define UK_OUT(i)                                                                          \
    if (MR > i) {                                                                          \
        float *ci = c + (size_t)(i) * ldc;                                                 \
        __m512 r = _mm512_add_ps(c##i, bb);                                                \
        if (add) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mask, ci));                    \
        _mm512_mask_storeu_ps(ci, mask, r);                                                \
    }
static inline __attribute__((always_inline)) AVX512_ATTR void uk_avx512_body(const int MR, int kc,
                                                                               const float *a, int lda,
                                                                               const float *b, float *c,
                                                                               int ldc, int nr, int add,
                                                                               const float *bias) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (int k = 0; k < kc; k++) {
        __m512 bk = _mm512_load_ps(b + (size_t)k * NR);
        UK_ROW(0) UK_ROW(1) UK_ROW(2) UK_ROW(3) UK_ROW(4) UK_ROW(5)
        UK_ROW(6) UK_ROW(7) UK_ROW(8) UK_ROW(9) UK_ROW(10) UK_ROW(11)
    }
    __mmask16 mask = (__mmask16)((1u << nr) - 1u);
    __m512 bb = bias ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
    UK_OUT(0) UK_OUT(1) UK_OUT(2) UK_OUT(3) UK_OUT(4) UK_OUT(5)
    UK_OUT(6) UK_OUT(7) UK_OUT(8) UK_OUT(9) UK_OUT(10) UK_OUT(11)
}
#undef UK_ROW
#undef UK_OUT

/* One row against four full panels, same per-output order as uk_avx512_body. */
static AVX512_ATTR void rk_avx512(int kc, const float *a, const float *b, size_t pstride, float *c, int add,
                                  const float *bias) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int k = 0; k < kc; k++) {
        __m512 av = _mm512_set1_ps(a[k]);
        size_t o = (size_t)k * NR;
        s0 = _mm512_fmadd_ps(av, _mm512_load_ps(b + o), s0);
        s1 = _mm512_fmadd_ps(av, _mm512_load_ps(b + pstride + o), s1);
        s2 = _mm512_fmadd_ps(av, _mm512_load_ps(b + 2 * pstride + o), s2);
        s3 = _mm512_fmadd_ps(av, _mm512_load_ps(b + 3 * pstride + o), s3);
    }
    __m512 acc[4] = {s0, s1, s2, s3};
    for (int j = 0; j < 4; j++) {
        __m512 r = _mm512_add_ps(acc[j], bias ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps());
        if (add) r = _mm512_add_ps(r, _mm512_loadu_ps(c + 16 * j));
        _mm512_storeu_ps(c + 16 * j, r);
    }
}

static AVX512_ATTR void uk_avx512(int mr, int kc, const float *a, int lda, const float *b, float *c, int ldc,
                                  int nr, int add, const float *bias) {
    switch (mr) {
    case 12: uk_avx512_body(12, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 11: uk_avx512_body(11, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 10: uk_avx512_body(10, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 9: uk_avx512_body(9, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 8: uk_avx512_body(8, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 7: uk_avx512_body(7, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 6: uk_avx512_body(6, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 5: uk_avx512_body(5, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 4: uk_avx512_body(4, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 3: uk_avx512_body(3, kc, a, lda, b, c, ldc, nr, add, bias); break;
    case 2: uk_avx512_body(2, kc, a, lda, b, c, ldc, nr, add, bias); break;
    default: uk_avx512_body(1, kc, a, lda, b, c, ldc, nr, add, bias); break;
    }
}
#endif /* ECM_X86 */

typedef struct {
    ukernel_fn uk;
    rowkernel_fn rk; /* NULL: use uk with mr = 1 */
    int mr_max;
} kernels;

static kernels pick_kernel(void) {
#ifdef ECM_X86
    switch (ecm_simd_level_get()) {
    case ECM_SIMD_AVX512: return (kernels){uk_avx512, rk_avx512, 12};
    case ECM_SIMD_AVX2: return (kernels){uk_avx2, rk_avx2, 6};
    default: break;
    }
#endif
    return (kernels){uk_scalar, NULL, 6};
}

/* out[M, cols of panels p0..p1) = x[M, 0:K] @ panels^T; panel p starts at
 * w + p * kstride * NR and only its first K rows are used. */
static void gemm_panels(float *out, int ldo, const float *x, int ldx, const float *w, size_t kstride, int K,
                        int N, int p0, int p1, int M, const float *bias, int accumulate, kernels kn) {
    /* A few rows (decoding) reuse nothing from cache: finish each group of
     * panels over all of K before the next, so the weights stream in long
     * sequential runs. The KC-blocked sums stay the same, so a row's result
     * still does not depend on how many rows share the call. */
    int chunk = M <= 4 ? 4 : PANELS_PER_CHUNK;
    for (int pc0 = p0; pc0 < p1; pc0 += chunk) {
        int pc1 = pc0 + chunk < p1 ? pc0 + chunk : p1;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            int add = accumulate || k0 > 0;
            for (int i0 = 0; i0 < M; i0 += kn.mr_max) {
                int mr = M - i0 < kn.mr_max ? M - i0 : kn.mr_max;
                const float *a = x + (size_t)i0 * ldx + k0;
                for (int p = pc0; p < pc1;) {
                    int n0 = p * NR, nr = N - n0 < NR ? N - n0 : NR;
                    const float *b = w + ((size_t)p * kstride + (size_t)k0) * NR;
                    const float *bb = (k0 == 0 && bias) ? bias + n0 : NULL;
                    if (mr == 1 && kn.rk && p + 4 <= pc1 && n0 + 4 * NR <= N) {
                        kn.rk(kc, a, b, kstride * NR, out + (size_t)i0 * ldo + n0, add, bb);
                        p += 4;
                        continue;
                    }
                    kn.uk(mr, kc, a, ldx, b, out + (size_t)i0 * ldo + n0, ldo, nr, add, bb);
                    p++;
                }
            }
        }
    }
}

void ecm_matmul_packed(float *out, int ldo, const float *x, int ldx, const ecm_packed *w, const float *bias,
                       int M, int accumulate) {
    kernels kn = pick_kernel();
    int n_panels = (w->N + NR - 1) / NR;
    if (ecm_in_parallel()) {
        gemm_panels(out, ldo, x, ldx, w->data, (size_t)w->K, w->K, w->N, 0, n_panels, M, bias, accumulate, kn);
        return;
    }
#pragma omp parallel
    {
#ifdef _OPENMP
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
#else
        int nt = 1, tid = 0;
#endif
        /* Contiguous panel ranges, balanced to within one panel. */
        int p0 = (int)((long)n_panels * tid / nt), p1 = (int)((long)n_panels * (tid + 1) / nt);
        if (p1 > p0)
            gemm_panels(out, ldo, x, ldx, w->data, (size_t)w->K, w->K, w->N, p0, p1, M, bias, accumulate, kn);
    }
}

void ecm_matmul_f32(float *out, int ldo, const float *a, int lda, const float *b, int ldb, int b_trans, int M,
                    int N, int K, float *work) {
    kernels kn = pick_kernel();
    int n_panels = (N + NR - 1) / NR;
    for (int p = 0; p < n_panels; p++)
        pack_panel_f32(work + (size_t)p * K * NR, b, ldb, b_trans, p * NR, N, K);
    gemm_panels(out, ldo, a, lda, work, (size_t)K, K, N, 0, n_panels, M, NULL, 0, kn);
}

void ecm_matmul_prepacked(float *out, int ldo, const float *a, int lda, const float *panels, size_t kstride,
                          int K, int N, int M) {
    kernels kn = pick_kernel();
    gemm_panels(out, ldo, a, lda, panels, kstride, K, N, 0, (N + NR - 1) / NR, M, NULL, 0, kn);
}
void ecm_pack_panels(float *dst, const float *b, int ldb, int b_trans, int N, int K) {
    int n_panels = (N + NR - 1) / NR;
    for (int p = 0; p < n_panels; p++) pack_panel_f32(dst + (size_t)p * K * NR, b, ldb, b_trans, p * NR, N, K);
}

void ecm_matmul_ref(float *out, const float *a, const float *b, const float *bias, int M, int N, int K) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = bias ? bias[j] : 0.0;
            for (int k = 0; k < K; k++) s += (double)a[(size_t)i * K + k] * b[(size_t)j * K + k];
            out[(size_t)i * N + j] = (float)s;
        }
}

/* ------------------------------------------------------ training GEMMs
 * The three products of a linear layer in training (issue 6), on unpacked
 * fp32 matrices that change every step: the operand b is packed on the fly
 * into a caller-provided workspace, each thread packing the panels it then
 * multiplies, so no thread waits for another. When there are fewer panels
 * than threads can share (LoRA's rank-R products), the threads pack all the
 * panels together and split the rows instead, in blocks of the kernel's MR
 * rows, so every element is computed the same way for any thread count. */
#include "train.h"

size_t ecm_gemm_work_floats(int N, int K) { return ecm_packed_floats(N, K); }

/* gemm_panels with the MR x KC block of rows of x copied to a contiguous
 * buffer first: rows lda floats apart (768 or 3072 floats in GPT-2) alias in
 * L1 (a multiple of 4 KiB) and make six prefetch streams; one copy per block,
 * reused across the chunk's panels, turns them into one. Same arithmetic. */
/* Blocking of the training path (tunable with -D when building): the KC-slice
 * and the panels per chunk, as for the inference GEMM. */
#ifndef TKC
#define TKC KC
#endif
#ifndef TPPC
#define TPPC PANELS_PER_CHUNK
#endif
static void gemm_panels_pa(float *out, int ldo, const float *x, int ldx, int a_trans, const float *w,
                           size_t kstride, int K, int N, int p0, int p1, int M, const float *bias, int accumulate,
                           ukernel_fn uk, int mr_max) {
    float abuf[12 * TKC] __attribute__((aligned(64)));
    for (int pc0 = p0; pc0 < p1; pc0 += TPPC) {
        int pc1 = pc0 + TPPC < p1 ? pc0 + TPPC : p1;
        for (int k0 = 0; k0 < K; k0 += TKC) {
            int kc = K - k0 < TKC ? K - k0 : TKC;
            int add = accumulate || k0 > 0;
            for (int i0 = 0; i0 < M; i0 += mr_max) {
                int mr = M - i0 < mr_max ? M - i0 : mr_max;
                if (a_trans) /* row i of a is column i of x [K, M]: gather it, a short run per row of x */
                    for (int k = 0; k < kc; k++) {
                        const float *src = x + (size_t)(k0 + k) * ldx + i0;
                        for (int i = 0; i < mr; i++) abuf[(size_t)i * kc + k] = src[i];
                    }
                else
                    for (int i = 0; i < mr; i++)
                        memcpy(abuf + (size_t)i * kc, x + (size_t)(i0 + i) * ldx + k0, (size_t)kc * sizeof(float));
                for (int p = pc0; p < pc1; p++) {
                    int n0 = p * NR, nr = N - n0 < NR ? N - n0 : NR;
                    const float *b = w + ((size_t)p * kstride + (size_t)k0) * NR;
                    uk(mr, kc, abuf, kc, b, out + (size_t)i0 * ldo + n0, ldo, nr, add,
                       (k0 == 0 && bias) ? bias + n0 : NULL);
                }
            }
        }
    }
}

/* a_trans: a is given as [K, M] (row stride lda) and read transposed. */
static void gemm_f32_impl(float *out, int ldo, const float *a, int lda, int a_trans, const float *b, int ldb,
                          int b_trans, const float *bias, int M, int N, int K, int accumulate, float *work) {
    kernels kn = pick_kernel();
    ukernel_fn uk = kn.uk;
    int mr_max = kn.mr_max;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty product: out = bias (or unchanged) */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *o = out + (size_t)i * ldo + j;
                *o = (accumulate ? *o : 0.0f) + (bias ? bias[j] : 0.0f);
            }
        return;
    }
    int n_panels = (N + NR - 1) / NR;
    int n_rblocks = (M + mr_max - 1) / mr_max;
#ifdef _OPENMP
    int nt = ecm_in_parallel() ? 1 : omp_get_max_threads();
#else
    int nt = 1;
#endif
    if (nt == 1) {
        for (int p = 0; p < n_panels; p++) pack_panel_f32(work + (size_t)p * K * NR, b, ldb, b_trans, p * NR, N, K);
        gemm_panels_pa(out, ldo, a, lda, a_trans, work, (size_t)K, K, N, 0, n_panels, M, bias, accumulate, uk, mr_max);
        return;
    }
    if (n_panels >= 2 * nt || n_rblocks < 2) {
#pragma omp parallel num_threads(nt)
        {
#ifdef _OPENMP
            int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
            int tid = 0, nth = 1;
#endif
            int p0 = (int)((long)n_panels * tid / nth), p1 = (int)((long)n_panels * (tid + 1) / nth);
            for (int p = p0; p < p1; p++)
                pack_panel_f32(work + (size_t)p * K * NR, b, ldb, b_trans, p * NR, N, K);
            if (p1 > p0)
                gemm_panels_pa(out, ldo, a, lda, a_trans, work, (size_t)K, K, N, p0, p1, M, bias, accumulate, uk,
                               mr_max);
        }
        return;
    }
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int p = 0; p < n_panels; p++) pack_panel_f32(work + (size_t)p * K * NR, b, ldb, b_trans, p * NR, N, K);
        /* the implicit barrier: every panel is packed */
#pragma omp for schedule(static)
        for (int rb = 0; rb < n_rblocks; rb++) {
            int i0 = rb * mr_max, mb = M - i0 < mr_max ? M - i0 : mr_max;
            gemm_panels_pa(out + (size_t)i0 * ldo, ldo, a_trans ? a + i0 : a + (size_t)i0 * lda, lda, a_trans, work,
                           (size_t)K, K, N, 0, n_panels, mb, bias, accumulate, uk, mr_max);
        }
    }
}

void ecm_gemm_f32(float *out, int ldo, const float *a, int lda, const float *b, int ldb, int b_trans,
                  const float *bias, int M, int N, int K, int accumulate, float *work) {
    gemm_f32_impl(out, ldo, a, lda, 0, b, ldb, b_trans, bias, M, N, K, accumulate, work);
}

void ecm_transpose_f32(float *dst, const float *src, int lds, int rows, int cols) {
    enum { TB = 32 };
    int nrb = (rows + TB - 1) / TB, ncb = (cols + TB - 1) / TB;
    int par = (size_t)rows * cols >= 65536 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int cb = 0; cb < ncb; cb++)
        for (int rb = 0; rb < nrb; rb++) {
            int r1 = rb * TB + TB < rows ? rb * TB + TB : rows, c1 = cb * TB + TB < cols ? cb * TB + TB : cols;
            for (int c = cb * TB; c < c1; c++)
                for (int r = rb * TB; r < r1; r++) dst[(size_t)c * rows + r] = src[(size_t)r * lds + c];
        }
}

size_t ecm_gemm_tn_work_floats(int M, int N, int K) {
    (void)N;
    return ecm_packed_floats(K, M);
}

void ecm_gemm_tn_f32(float *dw, int ldw, const float *dy, int ldy, const float *x, int ldx, int M, int N, int K,
                     float *work) {
    if (M <= 0) return;
    /* dw[N, K] += dy^T[N, M] @ x[M, K]: dy^T is the row operand, read
     * transposed block by block (no transposed copy of dy), x the panel
     * operand with inner dimension M ([K_in = M, N_out = K], b_trans). */
    gemm_f32_impl(dw, ldw, dy, ldy, 1, x, ldx, 1, NULL, N, K, M, 1, work);
}
