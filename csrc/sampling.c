/* sampling.c: turn one row of logits into the next token.
 *
 * Order, as the common engines do it: penalties (repetition, presence,
 * frequency) and logit bias on the raw logits; temperature (0 = greedy);
 * top-k; min-p; top-p; then a draw from the renormalised survivors with a
 * per-sequence xoshiro256** generator, so a seed gives the same text on any
 * thread count. Top-p sorts only the tokens that can matter: tokens far
 * below the maximum are set aside first, and are sorted only if the kept
 * ones do not already reach top_p.
 */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void ecm_rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ecm_rng_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ecm_rng_uniform(uint64_t s[4]) { return (double)(ecm_rng_next(s) >> 11) * 0x1.0p-53; }

ecm_status ecm_sampling_check(const ecm_sampling *p) {
    if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
        return ecm_fail(ECM_ERR_VALUE, "temperature must be in [0, 100], got %g", (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return ecm_fail(ECM_ERR_VALUE, "top_p must be in (0, 1], got %g", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return ecm_fail(ECM_ERR_VALUE, "min_p must be in [0, 1], got %g", (double)p->min_p);
    if (p->top_k < 0) return ecm_fail(ECM_ERR_VALUE, "top_k must be >= 0, got %d", p->top_k);
    if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= 100.0f))
        return ecm_fail(ECM_ERR_VALUE, "repetition_penalty must be in (0, 100], got %g", (double)p->repetition_penalty);
    if (!(fabsf(p->presence_penalty) <= 2.0f))
        return ecm_fail(ECM_ERR_VALUE, "presence_penalty must be in [-2, 2], got %g", (double)p->presence_penalty);
    if (!(fabsf(p->frequency_penalty) <= 2.0f))
        return ecm_fail(ECM_ERR_VALUE, "frequency_penalty must be in [-2, 2], got %g", (double)p->frequency_penalty);
    return ECM_OK;
}

ecm_status ecm_logits_penalize(float *logits, int V, const ecm_sampling *p, const int32_t *hist, int n_hist,
                               const int32_t *bias_ids, const float *bias_vals, int n_bias, int32_t *counts) {
    for (int i = 0; i < n_bias; i++)
        if (bias_ids[i] < 0 || bias_ids[i] >= V)
            return ecm_fail(ECM_ERR_VALUE, "logit_bias token %d is out of range [0, %d)", bias_ids[i], V);
    for (int i = 0; i < n_hist; i++)
        if (hist[i] < 0 || hist[i] >= V)
            return ecm_fail(ECM_ERR_VALUE, "history token %d is out of range [0, %d)", hist[i], V);
    int penal = p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
    if (penal && n_hist > 0) {
        /* counts (V) is zero on entry and left zero on exit */
        for (int i = 0; i < n_hist; i++) counts[hist[i]]++;
        for (int i = 0; i < n_hist; i++) {
            int t = hist[i], c = counts[t];
            if (c == 0) continue; /* already applied for this token */
            float l = logits[t];
            if (p->repetition_penalty != 1.0f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
            l -= p->presence_penalty + p->frequency_penalty * (float)c;
            logits[t] = l;
            counts[t] = 0;
        }
    }
    for (int i = 0; i < n_bias; i++) logits[bias_ids[i]] += bias_vals[i];
    return ECM_OK;
}

typedef struct {
    float p;
    int32_t id;
} cand;

static int cmp_cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id - y->id; /* ties: lower id first, for determinism */
}

/* Partition c[0:n] so the k largest come first (unordered). */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_cand_desc(&c[i], &pivot) < 0) i++;
            while (cmp_cand_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

#ifdef ECM_X86
/* The scans below run once or twice per generated token over the whole
 * vocabulary (49k for SmolLM2): vectorised, they cost ~10 us instead of ~60. */
static AVX2_ATTR float max_avx2(const float *x, int n, int *done) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0); /* a NaN entry leaves m unchanged */
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    }
    float t[8], mx = -INFINITY;
    _mm256_storeu_ps(t, _mm256_max_ps(m0, m1));
    for (int j = 0; j < 8; j++) mx = t[j] > mx ? t[j] : mx;
    *done = i;
    return mx;
}

static AVX2_ATTR int find_avx2(const float *x, int n, float v, int *done) {
    const __m256 vv = _mm256_set1_ps(v);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), vv, _CMP_EQ_OQ));
        if (mask) return i + __builtin_ctz((unsigned)mask);
    }
    *done = i;
    return -1;
}

static AVX2_ATTR double sum_avx2(const float *x, int n, int *done) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    *done = i;
    return (t[0] + t[1]) + (t[2] + t[3]);
}
#endif

/* The first index of the maximum (NaN never wins; all NaN or -inf: 0). */
int ecm_argmax(const float *x, int n) {
    float mx = -INFINITY;
    int i = 0;
#ifdef ECM_X86
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2) mx = max_avx2(x, n, &i);
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    i = 0;
#ifdef ECM_X86
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2) {
        int at = find_avx2(x, n, mx, &i);
        if (at >= 0) return at;
    }
#endif
    for (; i < n; i++)
        if (x[i] == mx) return i;
    return 0;
}

/* sum of x[n] in double, in a fixed order for a given machine: the same
 * result on every run and thread count */
static double sum_f64(const float *x, int n) {
    double s = 0.0;
    int i = 0;
#ifdef ECM_X86
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2) s = sum_avx2(x, n, &i);
#endif
    for (; i < n; i++) s += x[i];
    return s;
}

int ecm_sample_token(const float *logits, int V, const ecm_sampling *p, uint64_t rng[4], void *work) {
    if (p->temperature <= 0.0f || p->top_k == 1) return ecm_argmax(logits, V);
    cand *c = work; /* (V) */
    float mx = logits[ecm_argmax(logits, V)];
    if (mx == -INFINITY) return ecm_argmax(logits, V); /* everything banned: nothing better to do */
    float inv_t = 1.0f / p->temperature;
    float *e = (float *)(c + V); /* (V) */
    for (int i = 0; i < V; i++) e[i] = (logits[i] - mx) * inv_t; /* -inf stays -inf */
    ecm_vexp(e, e, (size_t)V);
    if (p->top_k <= 0 && p->min_p <= 0.0f && p->top_p >= 1.0f) {
        /* plain temperature sampling: draw straight from e (banned: 0) */
        double u = ecm_rng_uniform(rng) * sum_f64(e, V), cum = 0.0;
        int last = 0;
        for (int i = 0; i < V; i++) {
            if (e[i] == 0.0f) continue;
            cum += e[i];
            last = i;
            if (u < cum) return i;
        }
        return last;
    }
    int n = 0;
    for (int i = 0; i < V; i++) {
        if (logits[i] == -INFINITY || e[i] == 0.0f) continue;
        c[n].p = e[i];
        c[n].id = i;
        n++;
    }
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    if (p->min_p > 0.0f) { /* the maximum has p == 1 */
        int m = 0;
        for (int i = 0; i < n; i++)
            if (c[i].p >= p->min_p) c[m++] = c[i];
        n = m;
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i].p;
    if (p->top_p < 1.0f) {
        /* Sort the tokens within e^-20 of the maximum first; if they reach
         * top_p the rest lies past the cut anyway, else sort everything. */
        int m = 0;
        float floor = expf(-20.0f);
        for (int i = 0; i < n; i++)
            if (c[i].p >= floor) {
                cand t = c[m];
                c[m] = c[i];
                c[i] = t;
                m++;
            }
        for (int pass = 0; pass < 2; pass++) {
            int k = pass == 0 ? m : n;
            qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
            double cum = 0.0, target = p->top_p * total;
            int cut = -1;
            for (int i = 0; i < k; i++) {
                cum += c[i].p;
                if (cum >= target) {
                    cut = i + 1;
                    break;
                }
            }
            if (cut > 0) {
                n = cut;
                break;
            }
        }
        total = 0.0;
        for (int i = 0; i < n; i++) total += c[i].p;
    }
    double u = ecm_rng_uniform(rng) * total, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}

void ecm_log_softmax_top(const float *logits, int V, int k, int32_t *ids, float *lps, int chosen, float *chosen_lp,
                         void *work) {
    float mx = logits[ecm_argmax(logits, V)];
    /* exp in fp32 (vectorised: a scalar double exp per entry costs ~1 ms on
     * a 49k vocabulary, per token), summed in double */
    float *e = (float *)((cand *)work + V);
    for (int i = 0; i < V; i++) e[i] = logits[i] - mx;
    ecm_vexp(e, e, (size_t)V);
    double z = sum_f64(e, V);
    float lz = (float)(log(z) + mx);
    if (chosen >= 0 && chosen_lp) *chosen_lp = logits[chosen] - lz;
    if (k <= 0) return;
    cand *c = work;
    for (int i = 0; i < V; i++) {
        c[i].p = logits[i];
        c[i].id = i;
    }
    if (k > V) k = V;
    select_top(c, V, k);
    qsort(c, (size_t)k, sizeof *c, cmp_cand_desc);
    for (int i = 0; i < k; i++) {
        ids[i] = c[i].id;
        lps[i] = c[i].p - lz;
    }
}

size_t ecm_sampling_work_bytes(int V) { return (size_t)V * (sizeof(cand) + sizeof(float)); }
