/* optim.c: AdamW with decoupled weight decay, the global gradient norm for
 * clipping, and the learning-rate schedule (linear warm-up, cosine decay).
 *
 * The update follows torch.optim.AdamW (foreach=False) operation by
 * operation, so the loss curve of a run can be compared with PyTorch's step
 * by step:
 *   p *= 1 - lr * wd
 *   m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 */
#include "train.h"

#include <math.h>

#define NCHUNK 64 /* fixed partition of a norm: the same sum for any thread count */

#if defined(__x86_64__)
/* The same operations as the scalar loop, 8 lanes at a time (no FMA
 * contraction: each product is rounded as in the scalar code). */
static AVX2_ATTR void adamw_avx2(float *param, const float *grad, float *m, float *v, size_t n, float b1, float b2,
                                 float keep, float step, float bc2_sqrt, float eps) {
    const __m256 vb1 = _mm256_set1_ps(1.0f - b1), vb2 = _mm256_set1_ps(b2), vb2c = _mm256_set1_ps(1.0f - b2);
    const __m256 vkeep = _mm256_set1_ps(keep), vstep = _mm256_set1_ps(step), vbc = _mm256_set1_ps(bc2_sqrt);
    const __m256 veps = _mm256_set1_ps(eps);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(grad + i), mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i);
        __m256 p = _mm256_mul_ps(_mm256_loadu_ps(param + i), vkeep);
        mi = _mm256_add_ps(mi, _mm256_mul_ps(vb1, _mm256_sub_ps(g, mi)));
        vi = _mm256_add_ps(_mm256_mul_ps(vi, vb2), _mm256_mul_ps(_mm256_mul_ps(vb2c, g), g));
        __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc), veps);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(param + i, _mm256_sub_ps(p, _mm256_mul_ps(vstep, _mm256_div_ps(mi, den))));
    }
    for (; i < n; i++) {
        float g = grad[i], p = param[i] * keep;
        float mi = m[i] + (1.0f - b1) * (g - m[i]);
        float vi = v[i] * b2 + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - step * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
#endif

void ecm_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, const ecm_adamw *h, int t,
                      int decay) {
    float b1 = h->beta1, b2 = h->beta2;
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t); /* as Python computes them */
    float step = (float)(h->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float keep = decay ? 1.0f - h->lr * h->weight_decay : 1.0f;
    int par = n >= 32768 && !ecm_in_parallel();
#if defined(__x86_64__)
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2) {
        size_t nch = (n + 65535) / 65536;
#pragma omp parallel for schedule(static) if (par)
        for (size_t c = 0; c < nch; c++) {
            size_t i0 = c * 65536, len = n - i0 < 65536 ? n - i0 : 65536;
            adamw_avx2(param + i0, grad + i0, m + i0, v + i0, len, b1, b2, keep, step, bc2_sqrt, h->eps);
        }
        return;
    }
#endif
#pragma omp parallel for schedule(static) if (par)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * keep;
        float mi = m[i] + (1.0f - b1) * (g - m[i]); /* torch's lerp */
        float vi = v[i] * b2 + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - step * (mi / (sqrtf(vi) / bc2_sqrt + h->eps));
    }
}

double ecm_grad_sumsq(const float *g, size_t n) {
    double part[NCHUNK];
    int par = n >= 65536 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < NCHUNK; c++) {
        size_t i0 = n * (size_t)c / NCHUNK, i1 = n * (size_t)(c + 1) / NCHUNK;
        /* four independent double accumulators: the loop is not bound by add latency */
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        size_t i = i0;
        for (; i + 4 <= i1; i += 4) {
            s0 += (double)g[i] * g[i];
            s1 += (double)g[i + 1] * g[i + 1];
            s2 += (double)g[i + 2] * g[i + 2];
            s3 += (double)g[i + 3] * g[i + 3];
        }
        for (; i < i1; i++) s0 += (double)g[i] * g[i];
        part[c] = (s0 + s1) + (s2 + s3);
    }
    double s = 0.0;
    for (int c = 0; c < NCHUNK; c++) s += part[c];
    return s;
}

void ecm_scale_f32(float *x, float s, size_t n) {
    int par = n >= 65536 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

float ecm_lr_schedule(int step, float lr, float min_lr, int warmup, int total) {
    if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (total <= warmup) return lr;
    float progress = (float)(step - warmup) / (float)(total - warmup);
    if (progress > 1.0f) progress = 1.0f;
    return min_lr + 0.5f * (lr - min_lr) * (1.0f + cosf((float)M_PI * progress));
}
