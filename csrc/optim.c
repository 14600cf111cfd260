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

void ecm_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, const ecm_adamw *h, int t,
                      int decay) {
    float b1 = h->beta1, b2 = h->beta2;
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t); /* as Python computes them */
    float step = (float)(h->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float keep = decay ? 1.0f - h->lr * h->weight_decay : 1.0f;
    int par = n >= 32768 && !ecm_in_parallel();
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
        double s = 0.0;
        for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
        part[c] = s;
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
