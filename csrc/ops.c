/* ops.c: the elementwise and row-wise operations of a transformer: norms,
 * activations, softmax, residual add, embedding lookup.
 *
 * The transcendental functions (exp, and GELU/SiLU built on it) have AVX2
 * versions because a 512-token GPT-2 prefill evaluates ~20 M of each, which
 * libm would spend longer on than the matmuls' share allows. Every SIMD path
 * has a scalar twin using libm that the tests compare against.
 * Row and element loops run in parallel unless already inside a parallel
 * region; each thread writes its own rows, so results do not depend on the
 * thread count.
 */
#include "ecm.h"

#include <math.h>
#include <string.h>

#define PAR_MIN_ELEMS 32768 /* below this, threads cost more than they save */

/* -------------------------------------------------------- vector exp (AVX2)
 * exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2],
 * exp(r) by a degree-6 polynomial (Cephes coefficients): ~1 ulp on the range. */
#ifdef ECM_X86
static inline AVX2_ATTR __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-88.3762626647949f);
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n: n in [-127, 127] after the clamp; n = -127 would be a denormal
     * scale, so results below exp(-87.3) are flushed to 0 explicitly. */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 res = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, res);
}

static AVX2_ATTR void vexp_avx2(float *out, const float *inp, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, exp256(_mm256_loadu_ps(inp + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, inp + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(buf, exp256(_mm256_loadu_ps(buf)));
        memcpy(out + i, buf, (n - i) * sizeof(float));
    }
}

/* x * sigmoid(c * x * (1 + d x^2)): GELU-tanh with c = 2 sqrt(2/pi), d = 0.044715
 * (0.5 (1 + tanh u) == sigmoid(2u)); SiLU with c = 1, d = 0. */
static AVX2_ATTR void xsigmoid_avx2(float *out, const float *inp, size_t n, float c, float d) {
    const __m256 one = _mm256_set1_ps(1.0f), vc = _mm256_set1_ps(-c), vd = _mm256_set1_ps(d);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i);
        __m256 u = _mm256_mul_ps(_mm256_mul_ps(vc, x), _mm256_fmadd_ps(_mm256_mul_ps(vd, x), x, one));
        _mm256_storeu_ps(out + i, _mm256_div_ps(x, _mm256_add_ps(one, exp256(u))));
    }
    for (; i < n; i++) {
        float x = inp[i];
        out[i] = x / (1.0f + expf(-c * x * (1.0f + d * x * x)));
    }
}

/* GELU-erf: 0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26
 * (|error| <= 1.5e-7). */
static AVX2_ATTR void gelu_erf_avx2(float *out, const float *inp, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i);
        __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
        __m256 az = _mm256_andnot_ps(sign_mask, z);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
        __m256 p = _mm256_set1_ps(1.061405429f);
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
        p = _mm256_mul_ps(p, t);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(az, az)));
        __m256 erf_abs = _mm256_fnmadd_ps(p, e, one);
        __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(sign_mask, z));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, erf)));
    }
    for (; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * 0.70710678118654752f));
}
#endif

static int use_avx2(void) { return ecm_simd_level_get() >= ECM_SIMD_AVX2; }

void ecm_vexp(float *out, const float *inp, size_t n) {
#ifdef ECM_X86
    if (use_avx2()) {
        vexp_avx2(out, inp, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) out[i] = expf(inp[i]);
}

/* Split n elements into chunks of whole 8-float groups across threads. */
#define PARALLEL_CHUNKS(n, body)                                                        \
    do {                                                                                \
        size_t n_ = (n);                                                                \
        int nch_ = (n_ >= PAR_MIN_ELEMS && !ecm_in_parallel()) ? 64 : 1;                \
        _Pragma("omp parallel for schedule(static) if (nch_ > 1)")                      \
        for (int ch_ = 0; ch_ < nch_; ch_++) {                                          \
            size_t lo_ = (n_ * ch_ / nch_) & ~(size_t)7, hi_ = (ch_ == nch_ - 1) ? n_ : ((n_ * (ch_ + 1) / nch_) & ~(size_t)7); \
            size_t off = lo_, len = hi_ - lo_;                                          \
            body;                                                                       \
        }                                                                               \
    } while (0)

void ecm_gelu_tanh_forward(float *out, const float *inp, size_t n) {
    const float c = 1.5957691216057308f; /* 2 sqrt(2/pi) */
#ifdef ECM_X86
    if (use_avx2()) {
        PARALLEL_CHUNKS(n, xsigmoid_avx2(out + off, inp + off, len, c, 0.044715f));
        return;
    }
#endif
    PARALLEL_CHUNKS(n, {
        for (size_t i = off; i < off + len; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        }
    });
}

void ecm_gelu_erf_forward(float *out, const float *inp, size_t n) {
#ifdef ECM_X86
    if (use_avx2()) {
        PARALLEL_CHUNKS(n, gelu_erf_avx2(out + off, inp + off, len));
        return;
    }
#endif
    PARALLEL_CHUNKS(n, {
        for (size_t i = off; i < off + len; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * 0.70710678118654752f));
    });
}

void ecm_silu_forward(float *out, const float *inp, size_t n) {
#ifdef ECM_X86
    if (use_avx2()) {
        PARALLEL_CHUNKS(n, xsigmoid_avx2(out + off, inp + off, len, 1.0f, 0.0f));
        return;
    }
#endif
    PARALLEL_CHUNKS(n, {
        for (size_t i = off; i < off + len; i++) out[i] = inp[i] / (1.0f + expf(-inp[i]));
    });
}

void ecm_swiglu_row(float *o, const float *g, const float *u, int n) {
#ifdef ECM_X86
    if (use_avx2()) {
        xsigmoid_avx2(o, g, (size_t)n, 1.0f, 0.0f);
        for (int i = 0; i < n; i++) o[i] *= u[i];
        return;
    }
#endif
    for (int i = 0; i < n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void ecm_swiglu_forward(float *out, const float *gu, int T, int F) {
    int par = (size_t)T * F >= PAR_MIN_ELEMS && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int t = 0; t < T; t++) ecm_swiglu_row(out + (size_t)t * F, gu + (size_t)t * 2 * F, gu + (size_t)t * 2 * F + F, F);
}

void ecm_layernorm_forward(float *out, const float *inp, const float *weight, const float *bias, int T, int C,
                           float eps) {
    int par = (size_t)T * C >= PAR_MIN_ELEMS && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        float mean = 0.0f;
        for (int i = 0; i < C; i++) mean += x[i];
        mean /= (float)C;
        float var = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = x[i] - mean;
            var += d * d;
        }
        var /= (float)C;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < C; i++)
            o[i] = (x[i] - mean) * rstd * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f);
    }
}

void ecm_rmsnorm_forward(float *out, const float *inp, const float *weight, int T, int C, float eps) {
    int par = (size_t)T * C >= PAR_MIN_ELEMS && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
        float rstd = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++) o[i] = x[i] * rstd * (weight ? weight[i] : 1.0f);
    }
}

void ecm_softmax_forward(float *x, int rows, int n, int stride) {
    int par = (size_t)rows * n >= PAR_MIN_ELEMS && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * stride;
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) mx = row[i] > mx ? row[i] : mx;
        if (mx == -INFINITY) { /* every entry masked: attend to nothing */
            memset(row, 0, (size_t)n * sizeof(float));
            continue;
        }
        for (int i = 0; i < n; i++) row[i] -= mx;
        ecm_vexp(row, row, (size_t)n);
        float sum = 0.0f;
        for (int i = 0; i < n; i++) sum += row[i];
        float inv = 1.0f / sum;
        for (int i = 0; i < n; i++) row[i] *= inv;
    }
}

void ecm_add_forward(float *out, const float *a, const float *b, size_t n) {
    PARALLEL_CHUNKS(n, {
        for (size_t i = off; i < off + len; i++) out[i] = a[i] + b[i];
    });
}

ecm_status ecm_embedding_forward(float *out, const float *table, const int32_t *ids, int T, int C, int V) {
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= V)
            return ecm_fail(ECM_ERR_VALUE, "token id %d at position %d is out of range [0, %d)", ids[t], t, V);
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * C, table + (size_t)ids[t] * C, (size_t)C * sizeof(float));
    return ECM_OK;
}

void ecm_l2norm_rows(float *x, int rows, int C) {
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)row[i] * row[i];
        /* sentence-transformers' Normalize: x / max(||x||, 1e-12) */
        double nrm = sqrt(ss);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        for (int i = 0; i < C; i++) row[i] *= inv;
    }
}
