/* attention.c: rotary position embeddings and scaled dot-product attention
 * (causal or bidirectional, grouped-query, over a KV cache).
 *
 * Attention for one query head and a block of up to QB queries is two GEMMs
 * around a softmax: scores = q_blk @ k^T, then out_blk = softmax(scores) @ v.
 * Keys and values of the head are packed into GEMM panels once per task, and
 * a causal block multiplies only the prefix of keys it may see. Tasks
 * (head, query block) run in parallel; each writes its own slice of `out`.
 */
#include "ecm.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Decoding (a few query rows against the cache) skips the packing: each row
 * dots the cached keys where they lie and sums the cached values, reading K
 * and V once instead of copying them into panels first. */
#define DIRECT_MAX_T ECM_ATTENTION_DIRECT_ROWS

#define QB 64 /* queries per task */

void ecm_rope_inv_freq(float *inv_freq, int HD, const ecm_rope_config *rc) {
    int half = HD / 2;
    for (int i = 0; i < half; i++) {
        /* as Hugging Face computes it, in float32: 1 / theta^(2i / HD) */
        float expo = (float)(2 * i) / (float)HD;
        inv_freq[i] = 1.0f / powf(rc->theta, expo);
    }
    if (rc->scaling == ECM_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] /= rc->factor;
    } else if (rc->scaling == ECM_ROPE_LLAMA3) {
        float old_ctx = (float)rc->original_max_pos;
        float low_wavelen = old_ctx / rc->low_freq_factor;
        float high_wavelen = old_ctx / rc->high_freq_factor;
        for (int i = 0; i < half; i++) {
            float f = inv_freq[i];
            float wavelen = 2.0f * (float)M_PI / f;
            float scaled = wavelen > low_wavelen ? f / rc->factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (old_ctx / wavelen - rc->low_freq_factor) /
                               (rc->high_freq_factor - rc->low_freq_factor);
                scaled = (1.0f - smooth) * scaled / rc->factor + smooth * scaled;
            }
            inv_freq[i] = scaled;
        }
    }
}

void ecm_rope_table(float *cs, float *sn, int pos, const float *inv_freq, int HD) {
    for (int i = 0; i < HD / 2; i++) {
        float ang = (float)pos * inv_freq[i];
        cs[i] = cosf(ang);
        sn[i] = sinf(ang);
    }
}

void ecm_rope_head(float *v, const float *cs, const float *sn, int HD, int interleaved) {
    int half = HD / 2;
    if (interleaved) { /* pairs (2i, 2i+1): GGUF's llama layout */
        for (int i = 0; i < half; i++) {
            float x1 = v[2 * i], x2 = v[2 * i + 1];
            v[2 * i] = x1 * cs[i] - x2 * sn[i];
            v[2 * i + 1] = x2 * cs[i] + x1 * sn[i];
        }
        return;
    }
    for (int i = 0; i < half; i++) { /* pairs (i, i + HD/2): rotate-half */
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * cs[i] - x2 * sn[i];
        v[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

void ecm_rope_forward(float *x, int stride, const int32_t *pos, const float *inv_freq, int T, int n_heads,
                      int HD, int interleaved) {
    int par = (size_t)T * n_heads * HD >= 16384 && !ecm_in_parallel();
#pragma omp parallel for schedule(static) if (par)
    for (int t = 0; t < T; t++) {
        float cs[512], sn[512]; /* HD <= 1024 is checked when a model loads */
        ecm_rope_table(cs, sn, pos[t], inv_freq, HD);
        for (int h = 0; h < n_heads; h++) ecm_rope_head(x + (size_t)t * stride + (size_t)h * HD, cs, sn, HD, interleaved);
    }
}

static void attend_block(float *out, int ldo, const float *q, int ldq, const float *k, int ldk, const float *v,
                         int ldv, const uint8_t *key_mask, int t0, int mb, int P, int S, int HD, float scale,
                         int causal, float *kp, float *vp, float *scores) {
    int n_keys = causal ? P + t0 + mb : S;
    ecm_pack_panels(kp, k, ldk, 0, n_keys, HD);
    ecm_matmul_prepacked(scores, n_keys, q, ldq, kp, (size_t)HD, HD, n_keys, mb);
    for (int i = 0; i < mb; i++) {
        float *row = scores + (size_t)i * n_keys;
        int visible = causal ? P + t0 + i + 1 : n_keys;
        for (int j = 0; j < visible; j++) row[j] = (key_mask && !key_mask[j]) ? -INFINITY : row[j] * scale;
        for (int j = visible; j < n_keys; j++) row[j] = -INFINITY;
    }
    ecm_softmax_forward(scores, mb, n_keys, n_keys);
    ecm_pack_panels(vp, v, ldv, 1, HD, n_keys);
    ecm_matmul_prepacked(out, ldo, scores, n_keys, vp, (size_t)n_keys, n_keys, HD, mb);
}

/* One query row of one head: out[HD] = softmax(scale * q . k_j) @ v_j over
 * the n_keys keys (rows of k and v with strides ldk, ldv). scores[n_keys]. */
static inline __attribute__((always_inline)) void attend_row_body(float *out, const float *q, const float *k, int ldk,
                                                                  const float *v, int ldv, const uint8_t *key_mask,
                                                                  int n_keys, int HD, float scale, float *scores) {
    float mx = -INFINITY;
    for (int j = 0; j < n_keys; j++) {
        const float *kj = k + (size_t)j * ldk;
        float s = 0.0f;
        for (int d = 0; d < HD; d++) s += q[d] * kj[d];
        s = (key_mask && !key_mask[j]) ? -INFINITY : s * scale;
        scores[j] = s;
        mx = s > mx ? s : mx;
    }
    for (int d = 0; d < HD; d++) out[d] = 0.0f;
    if (mx == -INFINITY) return; /* every key masked: attend to nothing */
    for (int j = 0; j < n_keys; j++) scores[j] -= mx;
    ecm_vexp(scores, scores, (size_t)n_keys);
    float sum = 0.0f;
    for (int j = 0; j < n_keys; j++) sum += scores[j];
    const float inv = 1.0f / sum;
    for (int j = 0; j < n_keys; j++) {
        const float p = scores[j] * inv, *vj = v + (size_t)j * ldv;
        for (int d = 0; d < HD; d++) out[d] += p * vj[d];
    }
}

static void attend_row_ref(float *out, const float *q, const float *k, int ldk, const float *v, int ldv,
                           const uint8_t *key_mask, int n_keys, int HD, float scale, float *scores) {
    attend_row_body(out, q, k, ldk, v, ldv, key_mask, n_keys, HD, scale, scores);
}

#ifdef ECM_X86
static inline __attribute__((always_inline)) AVX2_ATTR float hsum8_att(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* HD a multiple of 8 (and at most 256: the row lives in registers / L1). */
static AVX2_ATTR void attend_row_avx2(float *out, const float *q, const float *k, int ldk, const float *v, int ldv,
                                      const uint8_t *key_mask, int n_keys, int HD, float scale, float *scores) {
    float mx = -INFINITY;
    for (int j = 0; j < n_keys; j++) {
        const float *kj = k + (size_t)j * ldk;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int d = 0;
        for (; d + 16 <= HD; d += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(kj + d + 8), a1);
        }
        if (d < HD) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), a0);
        float s = hsum8_att(_mm256_add_ps(a0, a1));
        s = (key_mask && !key_mask[j]) ? -INFINITY : s * scale;
        scores[j] = s;
        mx = s > mx ? s : mx;
    }
    for (int d = 0; d < HD; d++) out[d] = 0.0f;
    if (mx == -INFINITY) return;
    for (int j = 0; j < n_keys; j++) scores[j] -= mx;
    ecm_vexp(scores, scores, (size_t)n_keys);
    float sum = 0.0f;
    for (int j = 0; j < n_keys; j++) sum += scores[j];
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int d = 0; d < HD; d += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int j = 0; j < n_keys; j++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scores[j]), _mm256_loadu_ps(v + (size_t)j * ldv + d), acc);
        _mm256_storeu_ps(out + d, _mm256_mul_ps(acc, inv));
    }
}
#endif

void ecm_attention_row(float *out, const float *q, const float *k, int ldk, const float *v, int ldv, int n_keys,
                       int HD, float scale, float *scores) {
#ifdef ECM_X86
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2 && HD % 8 == 0 && HD <= 256) {
        attend_row_avx2(out, q, k, ldk, v, ldv, NULL, n_keys, HD, scale, scores);
        return;
    }
#endif
    attend_row_ref(out, q, k, ldk, v, ldv, NULL, n_keys, HD, scale, scores);
}

/* Few query rows: (head, row) tasks reading the cache in place. */
static ecm_status attention_direct(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                                   const float *v, int ldv, const uint8_t *key_mask, int T, int P, int NH, int NKV,
                                   int HD, float scale, int causal) {
    const int S = P + T, group = NH / NKV, n_tasks = NH * T;
    void (*row)(float *, const float *, const float *, int, const float *, int, const uint8_t *, int, int, float,
                float *) = attend_row_ref;
#ifdef ECM_X86
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2 && HD % 8 == 0 && HD <= 256) row = attend_row_avx2;
#endif
    const int par = n_tasks > 1 && (size_t)n_tasks * S * HD >= 8192 && !ecm_in_parallel();
#ifdef _OPENMP
    const int nt = par ? omp_get_max_threads() : 1;
#else
    const int nt = 1;
#endif
    float *ws = ecm_alloc((size_t)nt * S * sizeof(float));
    if (!ws) return ECM_ERR_NOMEM;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
    for (int task = 0; task < n_tasks; task++) {
#ifdef _OPENMP
        float *scores = ws + (size_t)omp_get_thread_num() * S;
#else
        float *scores = ws;
#endif
        const int h = task % NH, t = task / NH, kvh = h / group;
        row(out + (size_t)t * ldo + (size_t)h * HD, q + (size_t)t * ldq + (size_t)h * HD, k + (size_t)kvh * HD, ldk,
            v + (size_t)kvh * HD, ldv, key_mask, causal ? P + t + 1 : S, HD, scale, scores);
    }
    ecm_free(ws);
    return ECM_OK;
}

ecm_status ecm_attention_forward(float *out, int ldo, const float *q, int ldq, const float *k, int ldk,
                                 const float *v, int ldv, const uint8_t *key_mask, int T, int P, int NH, int NKV,
                                 int HD, float scale, int causal) {
    if (T <= DIRECT_MAX_T)
        return attention_direct(out, ldo, q, ldq, k, ldk, v, ldv, key_mask, T, P, NH, NKV, HD, scale, causal);
    int S = P + T;
    int group = NH / NKV;
    int n_blocks = (T + QB - 1) / QB;
    int n_tasks = NH * n_blocks;
    size_t kp_floats = ecm_matmul_work_floats(S, HD);
    size_t vp_floats = ecm_matmul_work_floats(HD, S);
    size_t per_thread = kp_floats + vp_floats + (size_t)QB * S;
    int par = n_tasks > 1 && !ecm_in_parallel();
#ifdef _OPENMP
    int nt = par ? omp_get_max_threads() : 1;
#else
    int nt = 1;
#endif
    if (nt > n_tasks) nt = n_tasks;
    size_t ws_floats;
    if (!ecm_mul_size((size_t)nt, per_thread, &ws_floats) || ws_floats > SIZE_MAX / sizeof(float))
        return ecm_fail(ECM_ERR_NOMEM, "attention workspace size overflows");
    float *ws = ecm_scratch(ECM_SCRATCH_ATTN, ws_floats * sizeof(float));
    if (!ws) return ECM_ERR_NOMEM;
#pragma omp parallel num_threads(nt) if (par)
    {
#ifdef _OPENMP
        float *kp = ws + (size_t)omp_get_thread_num() * per_thread;
#else
        float *kp = ws;
#endif
        float *vp = kp + kp_floats, *scores = vp + vp_floats;
        /* Later query blocks see more keys: hand tasks out dynamically,
         * longest first. Each task writes only its own slice of out. */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            int h = task % NH, b = n_blocks - 1 - task / NH;
            int t0 = b * QB, mb = T - t0 < QB ? T - t0 : QB;
            int kvh = h / group;
            attend_block(out + (size_t)t0 * ldo + (size_t)h * HD, ldo, q + (size_t)t0 * ldq + (size_t)h * HD, ldq,
                         k + (size_t)kvh * HD, ldk, v + (size_t)kvh * HD, ldv, key_mask, t0, mb, P, S, HD, scale,
                         causal, kp, vp, scores);
        }
    }
    return ECM_OK;
}
