/* attention_backward.c: self-attention for training (forward that keeps
 * the log-sum-exp of each score row, and its backward), causal (decoders)
 * or bidirectional over the first len[b] keys of each sequence (encoders with
 * right padding), and the backward of rotary embeddings.
 *
 * Only the log-sum-exp (B, NH, T) is kept, not the (B, NH, T, T)
 * probabilities: the backward recomputes the scores with one GEMM, which
 * costs less than streaming T^2 floats per head through memory and keeps the
 * activation slab linear in T. Tasks are (sequence, KV head): a task owns
 * the dK and dV of its KV head and the dQ of the query heads of its group
 * (GQA), so no two threads write the same gradient.
 */
#include "train.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static size_t pack_offset(int T, int HD) { return (3 * (size_t)T * T + 2 * (size_t)T * HD + 15) & ~(size_t)15; }

size_t ecm_attention_train_work_floats(int T, int HD) {
    size_t pk = ecm_gemm_work_floats(T, HD), pv = ecm_gemm_work_floats(HD, T);
    size_t pack = pk > pv ? pk : pv;
    /* S, dP, a transposed T x T, two (T, HD) tiles, the packing buffer
     * (64-byte aligned: the GEMM kernels load panels with aligned loads) */
    return pack_offset(T, HD) + ((pack + 15) & ~(size_t)15);
}

static int threads_for(int n_tasks) {
#ifdef _OPENMP
    int nt = ecm_in_parallel() ? 1 : omp_get_max_threads();
#else
    int nt = 1;
#endif
    return nt < n_tasks ? nt : n_tasks;
}

/* Keys row i may see: [0, end), end = min(i + 1, len) when causal, else len. */
static inline int row_end(int i, int len, int causal) { return causal && i + 1 < len ? i + 1 : len; }

/* s[T, T] = scale * q_h @ k^T on the visible keys, -inf elsewhere. */
static void scores(float *s, const float *q, const float *k, int ld, int T, int HD, float scale, int len, int causal,
                   float *pack) {
    ecm_matmul_f32(s, T, q, ld, k, ld, 0, T, T, HD, pack);
    for (int i = 0; i < T; i++) {
        float *row = s + (size_t)i * T;
        int end = row_end(i, len, causal);
        for (int j = 0; j < end; j++) row[j] *= scale;
        for (int j = end; j < T; j++) row[j] = -INFINITY;
    }
}

ecm_status ecm_attention_forward_train(float *out, float *lse, const float *qkv, int B, int T, int NH, int NKV,
                                       int HD, float scale, float *work, int max_threads) {
    return ecm_attention_forward_train_masked(out, lse, qkv, NULL, 1, B, T, NH, NKV, HD, scale, work, max_threads);
}

ecm_status ecm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                  const float *lse, int B, int T, int NH, int NKV, int HD, float scale, float *work,
                                  int max_threads) {
    return ecm_attention_backward_masked(dqkv, dout, qkv, out, lse, NULL, 1, B, T, NH, NKV, HD, scale, work,
                                         max_threads);
}

ecm_status ecm_attention_forward_train_masked(float *out, float *lse, const float *qkv, const int32_t *lens,
                                              int causal, int B, int T, int NH, int NKV, int HD, float scale,
                                              float *work, int max_threads) {
    int QD = NH * HD, KVD = NKV * HD, QKV = QD + 2 * KVD, group = NH / NKV;
    int n_tasks = B * NH;
    int nt = threads_for(n_tasks);
    size_t per = ecm_attention_train_work_floats(T, HD);
    if (nt > max_threads) nt = max_threads;
    float *ws = work;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        float *s = ws + (size_t)omp_get_thread_num() * per;
#else
        float *s = ws;
#endif
        float *pack = s + pack_offset(T, HD);
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            int b = task / NH, h = task % NH, kvh = h / group;
            const float *base = qkv + (size_t)b * T * QKV;
            const float *q = base + (size_t)h * HD, *k = base + QD + (size_t)kvh * HD,
                        *v = base + QD + KVD + (size_t)kvh * HD;
            int len = lens ? lens[b] : T;
            scores(s, q, k, QKV, T, HD, scale, len, causal, pack);
            float *l = lse + ((size_t)b * NH + h) * T;
            for (int i = 0; i < T; i++) {
                float *row = s + (size_t)i * T;
                int end = row_end(i, len, causal);
                float mx = -INFINITY;
                for (int j = 0; j < end; j++) mx = row[j] > mx ? row[j] : mx;
                for (int j = 0; j < end; j++) row[j] -= mx;
                ecm_vexp(row, row, (size_t)end);
                float sum = 0.0f;
                for (int j = 0; j < end; j++) sum += row[j];
                float inv = 1.0f / sum;
                for (int j = 0; j < end; j++) row[j] *= inv;
                for (int j = end; j < T; j++) row[j] = 0.0f;
                l[i] = mx + logf(sum);
            }
            /* out_h[T, HD] = p[T, T] @ v[T, HD] */
            ecm_matmul_f32(out + (size_t)b * T * QD + (size_t)h * HD, QD, s, T, v, QKV, 1, T, HD, T, pack);
        }
    }
    return ECM_OK;
}

/* Forward (per head): s = scale q k^T (masked), p = softmax(s), out = p v.
 * Backward: dv += p^T dout; dp = dout v^T; ds = p * (dp - rowsum(p * dp));
 * dq = scale ds k; dk += scale ds^T q.  dqkv is written. */
ecm_status ecm_attention_backward_masked(float *dqkv, const float *dout, const float *qkv, const float *out,
                                         const float *lse, const int32_t *lens, int causal, int B, int T, int NH,
                                         int NKV, int HD, float scale, float *work, int max_threads) {
    (void)out;
    int QD = NH * HD, KVD = NKV * HD, QKV = QD + 2 * KVD, group = NH / NKV;
    int n_tasks = B * NKV;
    int nt = threads_for(n_tasks);
    size_t per = ecm_attention_train_work_floats(T, HD);
    if (nt > max_threads) nt = max_threads;
    float *ws = work;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        float *p = ws + (size_t)omp_get_thread_num() * per;
#else
        float *p = ws;
#endif
        float *dp = p + (size_t)T * T, *tr = dp + (size_t)T * T;
        float *dk_h = tr + (size_t)T * T, *dv_h = dk_h + (size_t)T * HD, *pack = p + pack_offset(T, HD);
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            int b = task / NKV, kvh = task % NKV, len = lens ? lens[b] : T;
            const float *base = qkv + (size_t)b * T * QKV;
            const float *k = base + QD + (size_t)kvh * HD, *v = base + QD + KVD + (size_t)kvh * HD;
            float *dbase = dqkv + (size_t)b * T * QKV;
            float *dk = dbase + QD + (size_t)kvh * HD, *dv = dbase + QD + KVD + (size_t)kvh * HD;
            for (int t = 0; t < T; t++) {
                memset(dk + (size_t)t * QKV, 0, (size_t)HD * sizeof(float));
                memset(dv + (size_t)t * QKV, 0, (size_t)HD * sizeof(float));
            }
            for (int h = kvh * group; h < (kvh + 1) * group; h++) {
                const float *q = base + (size_t)h * HD;
                const float *dO = dout + (size_t)b * T * QD + (size_t)h * HD;
                const float *l = lse + ((size_t)b * NH + h) * T;
                /* p = exp(scale q k^T - lse), recomputed */
                scores(p, q, k, QKV, T, HD, scale, len, causal, pack);
                for (int i = 0; i < T; i++) {
                    float *row = p + (size_t)i * T;
                    int end = row_end(i, len, causal);
                    for (int j = 0; j < end; j++) row[j] -= l[i];
                    ecm_vexp(row, row, (size_t)end);
                    for (int j = end; j < T; j++) row[j] = 0.0f;
                }
                /* dv_h[T, HD] = p^T @ dO */
                ecm_transpose_f32(tr, p, T, T, T);
                ecm_matmul_f32(dv_h, HD, tr, T, dO, QD, 1, T, HD, T, pack);
                /* dp[T, T] = dO @ v^T */
                ecm_matmul_f32(dp, T, dO, QD, v, QKV, 0, T, T, HD, pack);
                for (int i = 0; i < T; i++) {
                    float *pr = p + (size_t)i * T, *dr = dp + (size_t)i * T;
                    int end = row_end(i, len, causal);
                    float dot = 0.0f;
                    for (int j = 0; j < end; j++) dot += pr[j] * dr[j];
                    for (int j = 0; j < end; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
                    for (int j = end; j < T; j++) dr[j] = 0.0f;
                }
                /* dq[T, HD] = ds @ k (written: one task per query head) */
                ecm_matmul_f32(dbase + (size_t)h * HD, QKV, dp, T, k, QKV, 1, T, HD, T, pack);
                /* dk_h[T, HD] = ds^T @ q */
                ecm_transpose_f32(tr, dp, T, T, T);
                ecm_matmul_f32(dk_h, HD, tr, T, q, QKV, 1, T, HD, T, pack);
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < HD; i++) {
                        dk[(size_t)t * QKV + i] += dk_h[(size_t)t * HD + i];
                        dv[(size_t)t * QKV + i] += dv_h[(size_t)t * HD + i];
                    }
            }
        }
    }
    return ECM_OK;
}

/* Forward: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), an orthogonal
 * rotation; its backward is the rotation by -angle:
 * dx1 = dy1 cos + dy2 sin, dx2 = dy2 cos - dy1 sin.  In place. */
void ecm_rope_backward(float *dx, int stride, const int32_t *pos, const float *inv_freq, int T, int n_heads,
                       int HD) {
    int half = HD / 2;
    int par = (size_t)T * n_heads * HD >= 16384 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int t = 0; t < T; t++) {
        float cs[512], sn[512];
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[t] * inv_freq[i];
            cs[i] = cosf(ang);
            sn[i] = sinf(ang);
        }
        for (int h = 0; h < n_heads; h++) {
            float *v = dx + (size_t)t * stride + (size_t)h * HD;
            for (int i = 0; i < half; i++) {
                float y1 = v[i], y2 = v[i + half];
                v[i] = y1 * cs[i] + y2 * sn[i];
                v[i + half] = y2 * cs[i] - y1 * sn[i];
            }
        }
    }
}
