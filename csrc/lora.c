/* lora.c: low-rank adapters over a frozen linear layer (Hu et al., 2021, as
 * PEFT implements them): out += scale * dropout(x) @ A^T @ B^T with
 * A (R, K), B (n, R), scale = alpha / R, B starting at zero.
 *
 * An adapter covers a row range of a fused weight (q, k or v of qkv; gate or
 * up of the llama MLP), so targets can be chosen one by one. Dropout masks
 * are not stored: a counter-based hash of (seed, forward pass, adapter,
 * element) regenerates the same mask in the backward pass.
 */
#include "train.h"

#include <math.h>
#include <string.h>

const char *const ecm_lora_target_names[ECM_LORA_N_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};

static inline uint64_t mix64(uint64_t z) { /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* xd = x * keep / (1 - p), keep = hash(stream, i) >= p. */
static void dropout_apply(float *xd, const float *x, size_t n, float p, uint64_t stream) {
    uint64_t thresh = (uint64_t)((double)p * 18446744073709551616.0);
    float inv = 1.0f / (1.0f - p);
    int par = n >= 32768 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (size_t i = 0; i < n; i++) xd[i] = mix64(stream + 0x9e3779b97f4a7c15ULL * (i + 1)) >= thresh ? x[i] * inv : 0.0f;
}

void ecm_dropout_apply(float *out, const float *x, size_t n, float p, uint64_t stream) {
    dropout_apply(out, x, n, p, stream);
}

void ecm_lora_init(ecm_lora *a, uint64_t seed) {
    float bound = 1.0f / sqrtf((float)a->K);
    size_t n = (size_t)a->R * a->K;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(mix64(seed + 0x9e3779b97f4a7c15ULL * (i + 1)) >> 11) * (1.0 / 9007199254740992.0);
        a->A[i] = (float)((2.0 * u - 1.0) * bound);
    }
    memset(a->B, 0, (size_t)a->n * a->R * sizeof(float));
}

/* Forward: xa = scale * dropout(x) @ A^T  (BT, R);  out[:, n0:n0+n] += xa @ B^T. */
void ecm_lora_forward(ecm_lora *a, float *out, int ldo, const float *x, int BT, float scale, float dropout,
                      uint64_t stream, float *xd, float *work) {
    int K = a->K, R = a->R;
    const float *xin = x;
    if (dropout > 0.0f) {
        dropout_apply(xd, x, (size_t)BT * K, dropout, stream);
        xin = xd;
    }
    ecm_gemm_f32(a->xa, R, xin, K, a->A, K, 0, NULL, BT, R, K, 0, work);
    ecm_scale_f32(a->xa, scale, (size_t)BT * R);
    ecm_gemm_f32(out + a->n0, ldo, a->xa, R, a->B, R, 0, NULL, BT, a->n, R, 1, work);
}

/* Backward of the forward above, dy = dout[:, n0:n0+n]:
 * dB += dy^T @ xa;  dxa = scale * dy @ B;  dA += dxa^T @ dropout(x);
 * dx += dropout'(dxa @ A)  (the same mask, scaled by 1 / (1 - p)). */
void ecm_lora_backward(ecm_lora *a, float *dx, const float *dout, int ldo, const float *x, int BT, float scale,
                       float dropout, uint64_t stream, float *xd, float *dxa, float *work) {
    int K = a->K, R = a->R, n = a->n;
    const float *dy = dout + a->n0;
    ecm_gemm_tn_f32(a->dB, R, dy, ldo, a->xa, R, BT, n, R, work);
    ecm_gemm_f32(dxa, R, dy, ldo, a->B, R, 1, NULL, BT, R, n, 0, work);
    ecm_scale_f32(dxa, scale, (size_t)BT * R);
    const float *xin = x;
    if (dropout > 0.0f) {
        dropout_apply(xd, x, (size_t)BT * K, dropout, stream);
        xin = xd;
    }
    ecm_gemm_tn_f32(a->dA, K, dxa, R, xin, K, BT, R, K, work);
    if (dropout <= 0.0f) {
        ecm_gemm_f32(dx, K, dxa, R, a->A, K, 1, NULL, BT, K, R, 1, work);
        return;
    }
    /* The mask of element i is (xd[i] != 0 or x[i] == 0); regenerate it
     * rather than guess: apply dropout to the product itself. */
    ecm_gemm_f32(xd, K, dxa, R, a->A, K, 1, NULL, BT, K, R, 0, work);
    dropout_apply(xd, xd, (size_t)BT * K, dropout, stream);
    size_t total = (size_t)BT * K;
    int par = total >= 32768 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (size_t i = 0; i < total; i++) dx[i] += xd[i];
}

void ecm_lora_merge(float *w, const ecm_lora *a, float scale) {
    int K = a->K, R = a->R;
    for (int i = 0; i < a->n; i++) {
        float *row = w + (size_t)(a->n0 + i) * K;
        const float *b = a->B + (size_t)i * R;
        for (int r = 0; r < R; r++) {
            float c = scale * b[r];
            const float *ar = a->A + (size_t)r * K;
            for (int k = 0; k < K; k++) row[k] += c * ar[k];
        }
    }
}
