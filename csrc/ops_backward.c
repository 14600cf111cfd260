/* ops_backward.c: the training side of ops.c. Norm forwards that keep their
 * statistics, and the backward passes of the norms, GELU-tanh, GELU-erf, SwiGLU, bias,
 * embedding and the fused softmax + cross-entropy with a loss mask.
 *
 * Threads: row-wise input gradients parallelise over rows; parameter
 * gradients (a sum over rows) parallelise over channel chunks, each thread
 * summing all rows of its channels in order, so no float atomics and the same
 * result for any thread count.
 */
#include "train.h"

#include <math.h>
#include <string.h>

#define PAR_MIN 32768 /* elements below which threads cost more than they save */
#define CCHUNK 64     /* channels per task of a parameter-gradient reduction */

static int par_if(size_t n) { return n >= PAR_MIN && !ecm_in_parallel(); }

/* ---------------------------------------------------------------- layernorm */

void ecm_layernorm_forward_train(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                                 const float *bias, int BT, int C, float eps) {
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int t = 0; t < BT; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) m += x[i];
        m /= (float)C;
        float var = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            var += d * d;
        }
        var /= (float)C;
        float rs = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * rs * weight[i] + (bias ? bias[i] : 0.0f);
        mean[t] = m;
        rstd[t] = rs;
    }
}

/* Forward: out = (x - mean) * rstd * w + b.
 * dnorm = dout * w; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm));
 * dw += sum_t dout * norm; db += sum_t dout.  dinp is written. */
void ecm_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int BT, int C) {
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int t = 0; t < BT; t++) {
        const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
        float *dx = dinp + (size_t)t * C;
        float m = mean[t], rs = rstd[t];
        float dm = 0.0f, dmn = 0.0f;
        for (int i = 0; i < C; i++) {
            float n = (x[i] - m) * rs, dn = weight[i] * dy[i];
            dm += dn;
            dmn += dn * n;
        }
        dm /= (float)C;
        dmn /= (float)C;
        for (int i = 0; i < C; i++) {
            float n = (x[i] - m) * rs;
            dx[i] = (weight[i] * dy[i] - dm - n * dmn) * rs;
        }
    }
    if (!dweight && !dbias) return;
    int nch = (C + CCHUNK - 1) / CCHUNK;
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int ch = 0; ch < nch; ch++) {
        int c0 = ch * CCHUNK, c1 = c0 + CCHUNK < C ? c0 + CCHUNK : C;
        float dw[CCHUNK], db[CCHUNK];
        memset(dw, 0, sizeof dw);
        memset(db, 0, sizeof db);
        for (int t = 0; t < BT; t++) {
            const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
            float m = mean[t], rs = rstd[t];
            for (int i = c0; i < c1; i++) {
                dw[i - c0] += dy[i] * (x[i] - m) * rs;
                db[i - c0] += dy[i];
            }
        }
        for (int i = c0; i < c1; i++) {
            if (dweight) dweight[i] += dw[i - c0];
            if (dbias) dbias[i] += db[i - c0];
        }
    }
}

/* ------------------------------------------------------------------ rmsnorm */

void ecm_rmsnorm_forward_train(float *out, float *rstd, const float *inp, const float *weight, int BT, int C,
                               float eps) {
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int t = 0; t < BT; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += x[i] * x[i];
        float rs = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++) o[i] = x[i] * rs * weight[i];
        rstd[t] = rs;
    }
}

/* Forward: out = x * rstd * w, rstd = (mean(x^2) + eps)^-1/2.
 * dx_i = rstd * w_i dy_i - x_i * rstd^3 / C * sum_j w_j dy_j x_j;
 * dw += sum_t dy * x * rstd.  dinp is written. */
void ecm_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                          const float *rstd, int BT, int C) {
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int t = 0; t < BT; t++) {
        const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
        float *dx = dinp + (size_t)t * C;
        float rs = rstd[t], dot = 0.0f;
        for (int i = 0; i < C; i++) dot += weight[i] * dy[i] * x[i];
        float k = dot * rs * rs * rs / (float)C;
        for (int i = 0; i < C; i++) dx[i] = rs * weight[i] * dy[i] - x[i] * k;
    }
    if (!dweight) return;
    int nch = (C + CCHUNK - 1) / CCHUNK;
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int ch = 0; ch < nch; ch++) {
        int c0 = ch * CCHUNK, c1 = c0 + CCHUNK < C ? c0 + CCHUNK : C;
        float dw[CCHUNK];
        memset(dw, 0, sizeof dw);
        for (int t = 0; t < BT; t++) {
            const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
            float rs = rstd[t];
            for (int i = c0; i < c1; i++) dw[i - c0] += dy[i] * x[i] * rs;
        }
        for (int i = c0; i < c1; i++) dweight[i] += dw[i - c0];
    }
}

/* ------------------------------------------------------------- activations */

#define ACHUNK 2048 /* elements per task; sigmoid scratch lives on the stack */

/* Forward: y = x * sigmoid(u), u = c x (1 + d x^2), c = 2 sqrt(2/pi), d = 0.044715
 * (== 0.5 x (1 + tanh(u / 2))).
 * dy/dx = s + x s (1 - s) c (1 + 3 d x^2), s = sigmoid(u).  dinp is written. */
void ecm_gelu_tanh_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    const float c = 1.5957691216057308f, d = 0.044715f;
    size_t nch = (n + ACHUNK - 1) / ACHUNK;
#pragma omp parallel for schedule(static) if (par_if(n))
    for (size_t ch = 0; ch < nch; ch++) {
        size_t i0 = ch * ACHUNK, len = n - i0 < ACHUNK ? n - i0 : ACHUNK;
        float e[ACHUNK];
        const float *x = inp + i0;
        for (size_t i = 0; i < len; i++) e[i] = -c * x[i] * (1.0f + d * x[i] * x[i]);
        ecm_vexp(e, e, len);
        for (size_t i = 0; i < len; i++) {
            float s = 1.0f / (1.0f + e[i]);
            float g = s + x[i] * s * (1.0f - s) * c * (1.0f + 3.0f * d * x[i] * x[i]);
            dinp[i0 + i] = g * dout[i0 + i];
        }
    }
}

/* Forward: y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)) (bert's GELU).
 * dy/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
 * dinp is written; it may be dout (each element is read before it is written). */
void ecm_gelu_erf_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    const float r2 = 0.70710678118654752f, k = 0.39894228040143268f; /* 1/sqrt 2, 1/sqrt(2 pi) */
    size_t nch = (n + ACHUNK - 1) / ACHUNK;
#pragma omp parallel for schedule(static) if (par_if(n))
    for (size_t ch = 0; ch < nch; ch++) {
        size_t i0 = ch * ACHUNK, len = n - i0 < ACHUNK ? n - i0 : ACHUNK;
        float e[ACHUNK];
        const float *x = inp + i0;
        for (size_t i = 0; i < len; i++) e[i] = -0.5f * x[i] * x[i];
        ecm_vexp(e, e, len);
        for (size_t i = 0; i < len; i++) {
            float g = 0.5f * (1.0f + erff(x[i] * r2)) + x[i] * k * e[i];
            dinp[i0 + i] = g * dout[i0 + i];
        }
    }
}

/* Forward: out = silu(g) * u, gu[BT, 2F] = gate | up, silu(g) = g sigmoid(g).
 * dg = dout * u * s (1 + g (1 - s)), du = dout * g s.  dgu[BT, 2F] is written. */
void ecm_swiglu_backward(float *dgu, const float *gu, const float *dout, int BT, int F) {
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * F))
    for (int t = 0; t < BT; t++) {
        const float *g = gu + (size_t)t * 2 * F, *u = g + F, *dy = dout + (size_t)t * F;
        float *dg = dgu + (size_t)t * 2 * F, *du = dg + F;
        for (int i0 = 0; i0 < F; i0 += ACHUNK) {
            int len = F - i0 < ACHUNK ? F - i0 : ACHUNK;
            float e[ACHUNK];
            for (int i = 0; i < len; i++) e[i] = -g[i0 + i];
            ecm_vexp(e, e, (size_t)len);
            for (int i = 0; i < len; i++) {
                float gi = g[i0 + i], s = 1.0f / (1.0f + e[i]);
                dg[i0 + i] = dy[i0 + i] * u[i0 + i] * s * (1.0f + gi * (1.0f - s));
                du[i0 + i] = dy[i0 + i] * gi * s;
            }
        }
    }
}

/* ----------------------------------------------------------- bias, embedding */

/* Forward: out[t, :] = x[t, :] @ W^T + b.  db += sum_t dy[t, :]. */
void ecm_bias_backward(float *db, const float *dy, int M, int N) {
    int nch = (N + CCHUNK - 1) / CCHUNK;
#pragma omp parallel for schedule(static) if (par_if((size_t)M * N))
    for (int ch = 0; ch < nch; ch++) {
        int c0 = ch * CCHUNK, c1 = c0 + CCHUNK < N ? c0 + CCHUNK : N;
        float acc[CCHUNK];
        memset(acc, 0, sizeof acc);
        for (int t = 0; t < M; t++) {
            const float *row = dy + (size_t)t * N;
            for (int i = c0; i < c1; i++) acc[i - c0] += row[i];
        }
        for (int i = c0; i < c1; i++) db[i] += acc[i - c0];
    }
}

/* Forward: x[t, :] = table[ids[t], :] (+ pos[t % T, :]).
 * dtable[ids[t], :] += dout[t, :]; dpos[t % T, :] += dout[t, :].
 * Threads own channel chunks and walk the rows in order: a token repeated in
 * the batch is summed in the same order whatever the thread count. */
void ecm_embedding_backward(float *dtable, float *dpos, const float *dout, const int32_t *ids, int BT, int T,
                            int C, int V) {
    (void)V;
    int nch = (C + CCHUNK - 1) / CCHUNK;
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * C))
    for (int ch = 0; ch < nch; ch++) {
        int c0 = ch * CCHUNK, c1 = c0 + CCHUNK < C ? c0 + CCHUNK : C;
        for (int t = 0; t < BT; t++) {
            const float *src = dout + (size_t)t * C;
            if (dtable) {
                float *dst = dtable + (size_t)ids[t] * C;
                for (int i = c0; i < c1; i++) dst[i] += src[i];
            }
            if (dpos) {
                float *dst = dpos + (size_t)(t % T) * C;
                for (int i = c0; i < c1; i++) dst[i] += src[i];
            }
        }
    }
}

/* ------------------------------------------------- softmax + cross-entropy */

int ecm_crossentropy_forward(float *losses, float *logits, const int32_t *targets, const uint8_t *mask, int BT,
                             int V) {
    int counted = 0;
    for (int t = 0; t < BT; t++) counted += (!mask || mask[t]) && targets[t] >= 0;
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * V))
    for (int t = 0; t < BT; t++) {
        float *row = logits + (size_t)t * V;
        float mx = -INFINITY;
        for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
        float tl = targets[t] >= 0 ? row[targets[t]] : 0.0f;
        for (int i = 0; i < V; i++) row[i] -= mx;
        ecm_vexp(row, row, (size_t)V);
        double sum = 0.0;
        for (int i = 0; i < V; i++) sum += row[i];
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++) row[i] *= inv;
        int counts = (!mask || mask[t]) && targets[t] >= 0;
        losses[t] = counts ? (float)((double)mx + log(sum) - (double)tl) : 0.0f;
    }
    return counted;
}

/* Forward: loss = sum over counted t of (logsumexp(z_t) - z_t[y_t]) * scale.
 * dz_t = (softmax(z_t) - onehot(y_t)) * scale on counted rows, 0 elsewhere. */
void ecm_crossentropy_backward(float *probs, const int32_t *targets, const uint8_t *mask, float scale, int BT,
                               int V) {
#pragma omp parallel for schedule(static) if (par_if((size_t)BT * V))
    for (int t = 0; t < BT; t++) {
        float *row = probs + (size_t)t * V;
        if (!((!mask || mask[t]) && targets[t] >= 0)) {
            memset(row, 0, (size_t)V * sizeof(float));
            continue;
        }
        for (int i = 0; i < V; i++) row[i] *= scale;
        row[targets[t]] -= scale;
    }
}
