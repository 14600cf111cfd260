/* quants.c: ggml-compatible block types: geometry, dequantisation (exact,
 * matching the PyPI gguf package), llama.cpp's reference quantisers, dot
 * products on quantised blocks (scalar _ref, AVX2, AVX-512 VNNI) and the
 * quantised matrix product out = x @ dequant(w)^T (Q4_0, Q4_1 and Q8_0 go
 * through the 8-row tiles of quants_tiled.c).
 *
 * Dot products follow llama.cpp's scheme: activations are quantised on the
 * fly to 8 bits per 32 (ecm_block_q8_a, for Q4_0 / Q4_1 / Q8_0) or per 256
 * (ecm_block_q8_K, for the K-quants); integer products are summed exactly
 * inside a block and scaled once per block in fp32.
 *
 * Floating-point contraction is off in this file: dequantisation must round
 * each product and sum separately to equal NumPy bit for bit, and the SIMD
 * kernels use explicit FMA intrinsics where they want fused operations.
 */
#pragma STDC FP_CONTRACT OFF
#include "quants.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif


_Static_assert(sizeof(ecm_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(ecm_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(ecm_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(ecm_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(ecm_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(ecm_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(ecm_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(ecm_block_q8_a) == 40, "q8_a block");

#define F16(h) ecm_f16_to_f32(h)

/* ------------------------------------------------------------- geometry */

/* (elements per block, bytes per block, name) for every GGML type id. */
static const struct { int bs; int bb; const char *name; } geometry[ECM_TYPE_COUNT] = {
    [0] = {1, 4, "F32"},         [1] = {1, 2, "F16"},         [2] = {32, 18, "Q4_0"},
    [3] = {32, 20, "Q4_1"},      [6] = {32, 22, "Q5_0"},      [7] = {32, 24, "Q5_1"},
    [8] = {32, 34, "Q8_0"},      [9] = {32, 36, "Q8_1"},      [10] = {256, 84, "Q2_K"},
    [11] = {256, 110, "Q3_K"},   [12] = {256, 144, "Q4_K"},   [13] = {256, 176, "Q5_K"},
    [14] = {256, 210, "Q6_K"},   [15] = {256, 292, "Q8_K"},   [16] = {256, 66, "IQ2_XXS"},
    [17] = {256, 74, "IQ2_XS"},  [18] = {256, 98, "IQ3_XXS"}, [19] = {256, 50, "IQ1_S"},
    [20] = {32, 18, "IQ4_NL"},   [21] = {256, 110, "IQ3_S"},  [22] = {256, 82, "IQ2_S"},
    [23] = {256, 136, "IQ4_XS"}, [24] = {1, 1, "I8"},         [25] = {1, 2, "I16"},
    [26] = {1, 4, "I32"},        [27] = {1, 8, "I64"},        [28] = {1, 8, "F64"},
    [29] = {256, 56, "IQ1_M"},   [30] = {1, 2, "BF16"},       [34] = {256, 54, "TQ1_0"},
    [35] = {256, 66, "TQ2_0"},   [39] = {32, 17, "MXFP4"},    [40] = {64, 36, "NVFP4"},
    [41] = {128, 18, "Q1_0"},
};

size_t ecm_type_block_size(int t) { return (unsigned)t < ECM_TYPE_COUNT ? (size_t)geometry[t].bs : 0; }
size_t ecm_type_block_bytes(int t) { return (unsigned)t < ECM_TYPE_COUNT ? (size_t)geometry[t].bb : 0; }
const char *ecm_type_name(int t) {
    return (unsigned)t < ECM_TYPE_COUNT && geometry[t].name ? geometry[t].name : "unknown";
}

/* llama.cpp's nearest_int: round half to even through the float mantissa. */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define GROUP_MAX_EPS 1e-15f

/* ------------------------------------------------------ dequantisation
 * Each to_float rounds exactly where NumPy does in gguf.quants: a product
 * of two fp32 values, then a sum, never fused. */

static NOCONTRACT void to_float_f32(float *y, const void *src, int64_t n) { memcpy(y, src, (size_t)n * 4); }

static NOCONTRACT void to_float_f16(float *y, const void *src, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) y[i] = F16(s[i]);
}

static NOCONTRACT void to_float_bf16(float *y, const void *src, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) y[i] = ecm_bf16_to_f32(s[i]);
}

static NOCONTRACT void to_float_q4_0(float *y, const void *src, int64_t n) {
    const ecm_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / ECM_QK; i++, y += ECM_QK) {
        const float d = F16(b[i].d);
        for (int j = 0; j < ECM_QK / 2; j++) {
            y[j] = d * (float)((b[i].qs[j] & 0x0F) - 8);
            y[j + ECM_QK / 2] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

static NOCONTRACT void to_float_q4_1(float *y, const void *src, int64_t n) {
    const ecm_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / ECM_QK; i++, y += ECM_QK) {
        const float d = F16(b[i].d), m = F16(b[i].m);
        for (int j = 0; j < ECM_QK / 2; j++) {
            float p0 = d * (float)(b[i].qs[j] & 0x0F), p1 = d * (float)(b[i].qs[j] >> 4);
            y[j] = p0 + m;
            y[j + ECM_QK / 2] = p1 + m;
        }
    }
}

static NOCONTRACT void to_float_q8_0(float *y, const void *src, int64_t n) {
    const ecm_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / ECM_QK; i++, y += ECM_QK) {
        const float d = F16(b[i].d);
        for (int j = 0; j < ECM_QK; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

static NOCONTRACT void to_float_q4_K(float *y, const void *src, int64_t n) {
    const ecm_block_q4_K *b = src;
    for (int64_t i = 0; i < n / ECM_QK_K; i++) {
        const float d = F16(b[i].d), dmin = F16(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < ECM_QK_K / 32; j += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) {
                float p = d1 * (float)(q[l] & 0xF);
                *y++ = p - m1;
            }
            for (int l = 0; l < 32; l++) {
                float p = d2 * (float)(q[l] >> 4);
                *y++ = p - m2;
            }
        }
    }
}

static NOCONTRACT void to_float_q5_K(float *y, const void *src, int64_t n) {
    const ecm_block_q5_K *b = src;
    for (int64_t i = 0; i < n / ECM_QK_K; i++) {
        const float d = F16(b[i].d), dmin = F16(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < ECM_QK_K / 32; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            get_scale_min_k4(j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) {
                float p = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0));
                *y++ = p - m1;
            }
            for (int l = 0; l < 32; l++) {
                float p = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0));
                *y++ = p - m2;
            }
        }
    }
}

static NOCONTRACT void to_float_q6_K(float *y, const void *src, int64_t n) {
    const ecm_block_q6_K *b = src;
    for (int64_t i = 0; i < n / ECM_QK_K; i++) {
        const float d = F16(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int h = 0; h < ECM_QK_K; h += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                const int q1 = (int)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = (d * (float)sc[is + 0]) * (float)q1;
                y[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
                y[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
                y[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
            }
        }
    }
}

static NOCONTRACT void to_float_q8_K(float *y, const void *src, int64_t n) {
    const ecm_block_q8_K *b = src;
    for (int64_t i = 0; i < n / ECM_QK_K; i++, y += ECM_QK_K)
        for (int j = 0; j < ECM_QK_K; j++) y[j] = b[i].d * (float)b[i].qs[j];
}

/* ------------------------------------------------- reference quantisers
 * Transcriptions of ggml-quants.c's quantize_row_*_ref, so files we write
 * equal llama-quantize's (without an importance matrix). */

static NOCONTRACT void from_float_f32(void *dst, const float *x, int64_t n) { memcpy(dst, x, (size_t)n * 4); }

static NOCONTRACT void from_float_f16(void *dst, const float *x, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = ecm_f32_to_f16(x[i]);
}

static NOCONTRACT void from_float_bf16(void *dst, const float *x, int64_t n) {
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = ecm_f32_to_bf16(x[i]);
}

static NOCONTRACT void from_float_q4_0(void *dst, const float *x, int64_t n) {
    ecm_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / ECM_QK; i++, x += ECM_QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < ECM_QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ecm_f32_to_f16(d);
        for (int j = 0; j < ECM_QK / 2; j++) {
            const float x0 = x[j] * id, x1 = x[ECM_QK / 2 + j] * id;
            const uint8_t xi0 = (uint8_t)MIN(15, (int8_t)(x0 + 8.5f));
            const uint8_t xi1 = (uint8_t)MIN(15, (int8_t)(x1 + 8.5f));
            y[i].qs[j] = xi0 | (uint8_t)(xi1 << 4);
        }
    }
}

static NOCONTRACT void from_float_q4_1(void *dst, const float *x, int64_t n) {
    ecm_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / ECM_QK; i++, x += ECM_QK) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < ECM_QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ecm_f32_to_f16(d);
        y[i].m = ecm_f32_to_f16(min);
        for (int j = 0; j < ECM_QK / 2; j++) {
            const float x0 = (x[j] - min) * id, x1 = (x[ECM_QK / 2 + j] - min) * id;
            const uint8_t xi0 = (uint8_t)MIN(15, (int8_t)(x0 + 0.5f));
            const uint8_t xi1 = (uint8_t)MIN(15, (int8_t)(x1 + 0.5f));
            y[i].qs[j] = xi0 | (uint8_t)(xi1 << 4);
        }
    }
}

static NOCONTRACT void from_float_q8_0(void *dst, const float *x, int64_t n) {
    ecm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / ECM_QK; i++, x += ECM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < ECM_QK; j++) amax = MAX(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = ecm_f32_to_f16(d);
        for (int j = 0; j < ECM_QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static NOCONTRACT float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                                         float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                                         int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static NOCONTRACT float make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    /* rmse_type 1 (weights x^2) is the only one the Q6_K reference uses. */
    (void)rmse_type;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = MAX(-nmax, MIN(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + MAX(-nmax, MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Shared by Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins. */
static NOCONTRACT void quantize_k_scales(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                                         uint8_t scales_out[ECM_K_SCALE_SIZE], uint16_t *d_out,
                                         uint16_t *dmin_out) {
    uint8_t Laux[32];
    float weights[32], mins[ECM_QK_K / 32], scales[ECM_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < ECM_QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                     nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales_out, 0, ECM_K_SCALE_SIZE);
    for (int j = 0; j < ECM_QK_K / 32; ++j) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = MIN(63, ls);
        lm = MIN(63, lm);
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            scales_out[j - 4] |= ((ls >> 4) << 6);
            scales_out[j - 0] |= ((lm >> 4) << 6);
        }
    }
    *d_out = ecm_f32_to_f16(max_scale / 63.f);
    *dmin_out = ecm_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < ECM_QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = F16(*d_out) * sc;
        if (!d) continue;
        const float dm = F16(*dmin_out) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)MAX(0, MIN(nmax, l));
        }
    }
}

static NOCONTRACT void from_float_q4_K(void *dst, const float *x, int64_t n) {
    ecm_block_q4_K *y = dst;
    uint8_t L[ECM_QK_K];
    for (int64_t i = 0; i < n / ECM_QK_K; i++, x += ECM_QK_K) {
        quantize_k_scales(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < ECM_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (uint8_t)(L[j + l + 32] << 4);
    }
}

static NOCONTRACT void from_float_q5_K(void *dst, const float *x, int64_t n) {
    ecm_block_q5_K *y = dst;
    uint8_t L[ECM_QK_K];
    for (int64_t i = 0; i < n / ECM_QK_K; i++, x += ECM_QK_K) {
        quantize_k_scales(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, ECM_QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int nn = 0; nn < ECM_QK_K; nn += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[nn + j];
                if (l1 > 15) { l1 -= 16; qh[j] |= m1; }
                int l2 = L[nn + j + 32];
                if (l2 > 15) { l2 -= 16; qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

static NOCONTRACT void from_float_q6_K(void *dst, const float *x, int64_t n) {
    ecm_block_q6_K *y = dst;
    int8_t L[ECM_QK_K];
    float scales[ECM_QK_K / 16];
    for (int64_t i = 0; i < n / ECM_QK_K; i++, x += ECM_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < ECM_QK_K / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = ecm_f32_to_f16(0.f);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = ecm_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < ECM_QK_K / 16; ++ib) y[i].scales[ib] = (int8_t)MIN(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < ECM_QK_K / 16; ++j) {
            float d = F16(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = nearest_int(x[16 * j + ii] / d);
                l = MAX(-32, MIN(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < ECM_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = q1 | (uint8_t)(q3 << 4);
                ql[l + 32] = q2 | (uint8_t)(q4 << 4);
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

/* llama.cpp's quantize_row_q8_K_ref. */
void ecm_quantize_row_q8_K_ref(ecm_block_q8_K *y, const float *x, int K) {
    for (int i = 0; i < K / ECM_QK_K; i++, x += ECM_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < ECM_QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < ECM_QK_K; ++j) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)MIN(127, v);
        }
        for (int j = 0; j < ECM_QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

static void from_float_q8_K(void *dst, const float *x, int64_t n) { ecm_quantize_row_q8_K_ref(dst, x, (int)n); }

/* ---------------------------------------------- activations: ecm_block_q8_a
 * d = amax / 127, q = round-half-even(x * 127 / amax), s = d * sum(q). The
 * SIMD version computes the same operations, so blocks are bit-identical. */

void ecm_quantize_row_q8_a_ref(ecm_block_q8_a *y, const float *x, int K) {
    for (int i = 0; i < K / ECM_QK; i++, x += ECM_QK) {
        float amax = 0.0f;
        for (int j = 0; j < ECM_QK; j++) amax = MAX(amax, fabsf(x[j]));
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < ECM_QK; j++) {
            int q = (int)nearbyintf(x[j] * id);
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

/* ------------------------------------------------------ scalar dot products */

static void vec_dot_q4_0_ref(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q4_0 *b = w;
    const ecm_block_q8_a *y = xq;
    float sum = 0.0f;
    for (int i = 0; i < K / ECM_QK; i++) {
        int isum = 0;
        for (int j = 0; j < ECM_QK / 2; j++)
            isum += ((b[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((b[i].qs[j] >> 4) - 8) * y[i].qs[j + ECM_QK / 2];
        sum += F16(b[i].d) * y[i].d * (float)isum;
    }
    *s = sum;
}

static void vec_dot_q4_1_ref(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q4_1 *b = w;
    const ecm_block_q8_a *y = xq;
    float sum = 0.0f;
    for (int i = 0; i < K / ECM_QK; i++) {
        int isum = 0;
        for (int j = 0; j < ECM_QK / 2; j++)
            isum += (b[i].qs[j] & 0xF) * y[i].qs[j] + (b[i].qs[j] >> 4) * y[i].qs[j + ECM_QK / 2];
        sum += F16(b[i].d) * y[i].d * (float)isum + F16(b[i].m) * y[i].s;
    }
    *s = sum;
}

static void vec_dot_q8_0_ref(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q8_0 *b = w;
    const ecm_block_q8_a *y = xq;
    float sum = 0.0f;
    for (int i = 0; i < K / ECM_QK; i++) {
        int isum = 0;
        for (int j = 0; j < ECM_QK; j++) isum += b[i].qs[j] * y[i].qs[j];
        sum += F16(b[i].d) * y[i].d * (float)isum;
    }
    *s = sum;
}

static void vec_dot_q4_K_ref(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q4_K *b = w;
    const ecm_block_q8_K *y = xq;
    float sum = 0.0f;
    for (int i = 0; i < K / ECM_QK_K; i++) {
        const uint8_t *q = b[i].qs;
        const int8_t *a = y[i].qs;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j += 2, q += 32, a += 64) {
            uint8_t sc0, m0, sc1, m1;
            get_scale_min_k4(j, b[i].scales, &sc0, &m0);
            get_scale_min_k4(j + 1, b[i].scales, &sc1, &m1);
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0xF) * a[l];
                s1 += (q[l] >> 4) * a[l + 32];
            }
            sumi += sc0 * s0 + sc1 * s1;
            summ += m0 * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]) +
                    m1 * (y[i].bsums[2 * j + 2] + y[i].bsums[2 * j + 3]);
        }
        sum += F16(b[i].d) * y[i].d * (float)sumi - F16(b[i].dmin) * y[i].d * (float)summ;
    }
    *s = sum;
}

static void vec_dot_q5_K_ref(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q5_K *b = w;
    const ecm_block_q8_K *y = xq;
    float sum = 0.0f;
    for (int i = 0; i < K / ECM_QK_K; i++) {
        const uint8_t *q = b[i].qs, *qh = b[i].qh;
        const int8_t *a = y[i].qs;
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j += 2, q += 32, a += 64) {
            uint8_t sc0, m0, sc1, m1;
            get_scale_min_k4(j, b[i].scales, &sc0, &m0);
            get_scale_min_k4(j + 1, b[i].scales, &sc1, &m1);
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += ((q[l] & 0xF) | (((qh[l] >> j) & 1) << 4)) * a[l];
                s1 += ((q[l] >> 4) | (((qh[l] >> (j + 1)) & 1) << 4)) * a[l + 32];
            }
            sumi += sc0 * s0 + sc1 * s1;
            summ += m0 * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]) +
                    m1 * (y[i].bsums[2 * j + 2] + y[i].bsums[2 * j + 3]);
        }
        sum += F16(b[i].d) * y[i].d * (float)sumi - F16(b[i].dmin) * y[i].d * (float)summ;
    }
    *s = sum;
}

static void vec_dot_q6_K_ref(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q6_K *b = w;
    const ecm_block_q8_K *y = xq;
    float sum = 0.0f;
    for (int i = 0; i < K / ECM_QK_K; i++) {
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales, *a = y[i].qs;
        int sumi = 0;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, a += 128) {
            int part[8] = {0};
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                part[is + 0] += ((int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32) * a[l];
                part[is + 2] += ((int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32) * a[l + 32];
                part[is + 4] += ((int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * a[l + 64];
                part[is + 6] += ((int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * a[l + 96];
            }
            for (int k = 0; k < 8; k++) sumi += sc[k] * part[k];
        }
        sum += F16(b[i].d) * y[i].d * (float)sumi;
    }
    *s = sum;
}

static void vec_dot_f32_ref(int K, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    float sum = 0.0f;
    for (int k = 0; k < K; k++) sum += a[k] * b[k];
    *s = sum;
}

static void vec_dot_f16_ref(int K, float *s, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int k = 0; k < K; k++) sum += F16(a[k]) * b[k];
    *s = sum;
}

static void vec_dot_bf16_ref(int K, float *s, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    float sum = 0.0f;
    for (int k = 0; k < K; k++) sum += ecm_bf16_to_f32(a[k]) * b[k];
    *s = sum;
}

/* ------------------------------------------------------------- traits */

static const ecm_type_traits traits[ECM_TYPE_COUNT] = {
    [ECM_TYPE_F32] = {"F32", 1, 4, to_float_f32, from_float_f32, ECM_TYPE_F32, vec_dot_f32_ref},
    [ECM_TYPE_F16] = {"F16", 1, 2, to_float_f16, from_float_f16, ECM_TYPE_F32, vec_dot_f16_ref},
    [ECM_TYPE_BF16] = {"BF16", 1, 2, to_float_bf16, from_float_bf16, ECM_TYPE_F32, vec_dot_bf16_ref},
    [ECM_TYPE_Q4_0] = {"Q4_0", ECM_QK, sizeof(ecm_block_q4_0), to_float_q4_0, from_float_q4_0, ECM_TYPE_Q8_1,
                       vec_dot_q4_0_ref},
    [ECM_TYPE_Q4_1] = {"Q4_1", ECM_QK, sizeof(ecm_block_q4_1), to_float_q4_1, from_float_q4_1, ECM_TYPE_Q8_1,
                       vec_dot_q4_1_ref},
    [ECM_TYPE_Q8_0] = {"Q8_0", ECM_QK, sizeof(ecm_block_q8_0), to_float_q8_0, from_float_q8_0, ECM_TYPE_Q8_1,
                       vec_dot_q8_0_ref},
    [ECM_TYPE_Q4_K] = {"Q4_K", ECM_QK_K, sizeof(ecm_block_q4_K), to_float_q4_K, from_float_q4_K, ECM_TYPE_Q8_K,
                       vec_dot_q4_K_ref},
    [ECM_TYPE_Q5_K] = {"Q5_K", ECM_QK_K, sizeof(ecm_block_q5_K), to_float_q5_K, from_float_q5_K, ECM_TYPE_Q8_K,
                       vec_dot_q5_K_ref},
    [ECM_TYPE_Q6_K] = {"Q6_K", ECM_QK_K, sizeof(ecm_block_q6_K), to_float_q6_K, from_float_q6_K, ECM_TYPE_Q8_K,
                       vec_dot_q6_K_ref},
    [ECM_TYPE_Q8_K] = {"Q8_K", ECM_QK_K, sizeof(ecm_block_q8_K), to_float_q8_K, from_float_q8_K, ECM_TYPE_Q8_K,
                       NULL},
};

const ecm_type_traits *ecm_type_traits_get(int t) {
    if ((unsigned)t >= ECM_TYPE_COUNT || !traits[t].name) return NULL;
    return &traits[t];
}

size_t ecm_quant_row_bytes(int qtype, int K) {
    size_t bs = ecm_type_block_size(qtype), bb = ecm_type_block_bytes(qtype);
    if (!bs || K < 0 || (size_t)K % bs) return 0;
    return (size_t)K / bs * bb;
}

ecm_status ecm_dequantize_row(float *dst, const void *src, int qtype, int K) {
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    if (!tr) return ecm_fail(ECM_ERR_VALUE, "cannot dequantize type %s (id %d)", ecm_type_name(qtype), qtype);
    if (K < 0 || K % tr->block_size)
        return ecm_fail(ECM_ERR_VALUE, "%s rows must hold a multiple of %d elements, got %d", tr->name,
                        tr->block_size, K);
    tr->to_float(dst, src, K);
    return ECM_OK;
}

ecm_status ecm_quantize_ref(void *dst, const float *src, int qtype, int64_t n) {
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    if (!tr || !tr->from_float_ref)
        return ecm_fail(ECM_ERR_VALUE, "cannot quantize to type %s (id %d)", ecm_type_name(qtype), qtype);
    if (n < 0 || n % tr->block_size)
        return ecm_fail(ECM_ERR_VALUE, "%s needs a multiple of %d elements, got %lld", tr->name, tr->block_size,
                        (long long)n);
    tr->from_float_ref(dst, src, n);
    return ECM_OK;
}

/* ------------------------------------------------------ SIMD dot products
 * One body per kernel, instantiated twice: AVX2 (maddubs + madd) and
 * AVX-512 VNNI on 256-bit vectors (dpbusd). Within our value ranges maddubs
 * never saturates (|u8 * s8| pairs stay below 2^15), so both instances give
 * the same integer sums and, with the same fp32 operations after them,
 * bit-identical results. */

#ifdef ECM_X86
#define VNNI_ATTR __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

#define DOT_AVX2(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define DOT_VNNI(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))

/* 16 bytes of nibbles -> 32 bytes: low nibbles first, then high ones. */
static inline __attribute__((always_inline)) AVX2_ATTR __m256i nib32(const uint8_t *p) {
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

static inline __attribute__((always_inline)) AVX2_ATTR float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) AVX2_ATTR int hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* [d, m] of a Q4_0/Q4_1 block header as floats in lanes 0 and 1. */
static inline __attribute__((always_inline)) AVX2_ATTR __m128 load_f16x2(const uint16_t *p) {
    uint32_t bits;
    memcpy(&bits, p, 4);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)bits));
}

static inline __attribute__((always_inline)) AVX2_ATTR float f16_to_f32_fast(uint16_t h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

#define DEFINE_Q8_DOTS(SFX, ATTR, DOT)                                                                     \
    /* One activation row. Each row's arithmetic is exactly that of the         \
     * 4-row kernels below (one FMA chain, same scale products, same order),   \
     * so a row's result does not depend on how many rows share the matmul:    \
     * batched decoding gives the tokens decoding alone gives. */              \
    static ATTR void vec_dot_q4_1_##SFX(int K, float *s, const void *w, const void *xq) {                \
        const ecm_block_q4_1 *b = w;                                                                       \
        const ecm_block_q8_a *y = xq;                                                                      \
        __m256 a0 = _mm256_setzero_ps();                                                                   \
        float m0 = 0;                                                                                      \
        for (int i = 0; i < K / ECM_QK; i++) {                                                             \
            __m128 dm = load_f16x2(&b[i].d);                                                               \
            const __m256 dw = _mm256_broadcastss_ps(dm);                                                   \
            const float mw = _mm_cvtss_f32(_mm_movehdup_ps(dm));                                           \
            __m256i p0 = DOT(nib32(b[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));                \
            a0 = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&y[i].d)), _mm256_cvtepi32_ps(p0), a0); \
            m0 = fmaf(mw, y[i].s, m0);                                                                     \
        }                                                                                                  \
        *s = hsum8(a0) + m0;                                                                               \
    }                                                                                                      \
                                                                                                           \
    static ATTR void vec_dot_q4_0_##SFX(int K, float *s, const void *w, const void *xq) {                \
        const ecm_block_q4_0 *b = w;                                                                       \
        const ecm_block_q8_a *y = xq;                                                                      \
        __m256 a0 = _mm256_setzero_ps();                                                                   \
        float m0 = 0;                                                                                      \
        for (int i = 0; i < K / ECM_QK; i++) {                                                             \
            const float dws = f16_to_f32_fast(b[i].d);                                                     \
            const __m256 dw = _mm256_set1_ps(dws);                                                         \
            __m256i p0 = DOT(nib32(b[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));                \
            a0 = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&y[i].d)), _mm256_cvtepi32_ps(p0), a0); \
            m0 = fmaf(dws, y[i].s, m0);                                                                    \
        }                                                                                                  \
        *s = hsum8(a0) - 8.0f * m0;                                                                        \
    }                                                                                                      \
                                                                                                           \
    static ATTR void vec_dot_q8_0_##SFX(int K, float *s, const void *w, const void *xq) {                \
        const ecm_block_q8_0 *b = w;                                                                       \
        const ecm_block_q8_a *y = xq;                                                                      \
        __m256 a0 = _mm256_setzero_ps();                                                                   \
        for (int i = 0; i < K / ECM_QK; i++) {                                                             \
            const __m256 dw = _mm256_set1_ps(f16_to_f32_fast(b[i].d));                                     \
            const __m256i wq = _mm256_loadu_si256((const __m256i *)b[i].qs);                               \
            __m256i p0 = DOT(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y[i].qs), wq)); \
            a0 = _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_broadcast_ss(&y[i].d)), _mm256_cvtepi32_ps(p0), a0); \
        }                                                                                                  \
        *s = hsum8(a0);                                                                                    \
    }

DEFINE_Q8_DOTS(avx2, AVX2_ATTR, DOT_AVX2)
DEFINE_Q8_DOTS(vnni, VNNI_ATTR, DOT_VNNI)

/* Activations: the same operations as ecm_quantize_row_q8_a_ref, 32 at a time. */
static AVX2_ATTR void quantize_row_q8_a_avx2(ecm_block_q8_a *y, const float *x, int K) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < K / ECM_QK; i++, x += ECM_QK) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signbit, v0), _mm256_andnot_ps(signbit, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(signbit, v2), _mm256_andnot_ps(signbit, v3)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        const __m256 mul = _mm256_set1_ps(id);
#define RND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), RND));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), RND));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), RND));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), RND));
#undef RND
        const int sum = hsum8i(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_permutevar8x32_epi32(p, perm));
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

/* Q4_K x Q8_K: per 64 quants one 32-byte load gives two sub-blocks. */
static AVX2_ATTR void vec_dot_q4_K_avx2(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q4_K *b = w;
    const ecm_block_q8_K *y = xq;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0.0f;
    for (int i = 0; i < K / ECM_QK_K; i++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) get_scale_min_k4(j, b[i].scales, &sc[j], &mn[j]);
        const float dy = y[i].d;
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        accm = fmaf(f16_to_f32_fast(b[i].dmin) * dy, (float)summ, accm);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * j)));
            __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * j + 32)));
            plo = _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * j]));
            phi = _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32_fast(b[i].d) * dy), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum8(acc) - accm;
}

/* Q5_K x Q8_K: Q4_K plus a fifth bit per quant, picked out of qh by mask. */
static AVX2_ATTR void vec_dot_q5_K_avx2(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q5_K *b = w;
    const ecm_block_q8_K *y = xq;
    const __m256i m4 = _mm256_set1_epi8(0xF), sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    float accm = 0.0f;
    for (int i = 0; i < K / ECM_QK_K; i++) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) get_scale_min_k4(j, b[i].scales, &sc[j], &mn[j]);
        const float dy = y[i].d;
        int summ = 0;
        for (int j = 0; j < 8; j++) summ += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        accm = fmaf(f16_to_f32_fast(b[i].dmin) * dy, (float)summ, accm);
        const __m256i hb = _mm256_loadu_si256((const __m256i *)b[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            const __m256i mlo = _mm256_set1_epi8((char)(1 << (2 * j))), mhi = _mm256_set1_epi8((char)(2 << (2 * j)));
            const __m256i blo = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, mlo), mlo), sixteen);
            const __m256i bhi = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, mhi), mhi), sixteen);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), blo);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), bhi);
            __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * j)));
            __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y[i].qs + 64 * j + 32)));
            plo = _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * j]));
            phi = _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32_fast(b[i].d) * dy), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum8(acc) - accm;
}

/* Q6_K x Q8_K: q in 0..63 times activations, minus 32 * the block sums. */
static AVX2_ATTR void vec_dot_q6_K_avx2(int K, float *s, const void *w, const void *xq) {
    const ecm_block_q6_K *b = w;
    const ecm_block_q8_K *y = xq;
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < K / ECM_QK_K; i++) {
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales, *a = y[i].qs;
        int bsum = 0;
        for (int j = 0; j < 16; j++) bsum += sc[j] * y[i].bsums[j];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, a += 128) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(a + 32 * k)));
                const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
            }
        }
        const float d = f16_to_f32_fast(b[i].d) * y[i].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc = _mm256_sub_ps(acc, _mm256_setr_ps(d * (float)(32 * bsum), 0, 0, 0, 0, 0, 0, 0));
    }
    *s = hsum8(acc);
}

static AVX2_ATTR void vec_dot_f32_avx2(int K, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), acc1);
    }
    float sum = hsum8(_mm256_add_ps(acc0, acc1));
    for (; k < K; k++) sum += a[k] * b[k];
    *s = sum;
}

static AVX2_ATTR void vec_dot_f16_avx2(int K, float *s, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + k))), _mm256_loadu_ps(b + k), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + k + 8))),
                               _mm256_loadu_ps(b + k + 8), acc1);
    }
    float sum = hsum8(_mm256_add_ps(acc0, acc1));
    for (; k < K; k++) sum += F16(a[k]) * b[k];
    *s = sum;
}

static AVX2_ATTR void vec_dot_bf16_avx2(int K, float *s, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    __m256 acc0 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + k))), 16);
        acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(v), _mm256_loadu_ps(b + k), acc0);
    }
    float sum = hsum8(acc0);
    for (; k < K; k++) sum += ecm_bf16_to_f32(a[k]) * b[k];
    *s = sum;
}
#endif /* ECM_X86 */

/* ------------------------------------------------------------- dispatch */

typedef struct {
    ecm_vec_dot_fn dot;
    int avx2_act;     /* quantise activations with the AVX2 routine */
} kernels;

static int has_vnni(void) {
#ifdef ECM_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") ? 1 : 0;
    }
    return cached;
#else
    return 0;
#endif
}

static kernels pick_kernels(int qtype, const ecm_type_traits *tr) {
    kernels k = {tr->vec_dot_ref, 0};
#ifdef ECM_X86
    ecm_simd_level lvl = ecm_simd_level_get();
    if (lvl < ECM_SIMD_AVX2) return k;
    int vnni = lvl >= ECM_SIMD_AVX512 && has_vnni();
    k.avx2_act = 1;
    switch (qtype) {
    case ECM_TYPE_Q4_0:
        k.dot = vnni ? vec_dot_q4_0_vnni : vec_dot_q4_0_avx2;
        break;
    case ECM_TYPE_Q4_1:
        k.dot = vnni ? vec_dot_q4_1_vnni : vec_dot_q4_1_avx2;
        break;
    case ECM_TYPE_Q8_0:
        k.dot = vnni ? vec_dot_q8_0_vnni : vec_dot_q8_0_avx2;
        break;
    case ECM_TYPE_Q4_K: k.dot = vec_dot_q4_K_avx2; break;
    case ECM_TYPE_Q5_K: k.dot = vec_dot_q5_K_avx2; break;
    case ECM_TYPE_Q6_K: k.dot = vec_dot_q6_K_avx2; break;
    case ECM_TYPE_F32: k.dot = vec_dot_f32_avx2; break;
    case ECM_TYPE_F16: k.dot = vec_dot_f16_avx2; break;
    case ECM_TYPE_BF16: k.dot = vec_dot_bf16_avx2; break;
    default: break;
    }
#else
    (void)qtype;
#endif
    return k;
}

void ecm_quantize_row_q8_a(ecm_block_q8_a *dst, const float *x, int K) {
#ifdef ECM_X86
    if (ecm_simd_level_get() >= ECM_SIMD_AVX2) {
        quantize_row_q8_a_avx2(dst, x, K);
        return;
    }
#endif
    ecm_quantize_row_q8_a_ref(dst, x, K);
}

/* Bytes of one quantised activation row, 0 for float activations. */
static size_t act_row_bytes(int act_type, int K) {
    if (act_type == ECM_TYPE_Q8_1) return (size_t)(K / ECM_QK) * sizeof(ecm_block_q8_a);
    if (act_type == ECM_TYPE_Q8_K) return (size_t)(K / ECM_QK_K) * sizeof(ecm_block_q8_K);
    return 0;
}

static void quantize_act_row(void *dst, const float *x, int act_type, int K) {
    if (act_type == ECM_TYPE_Q8_1) ecm_quantize_row_q8_a(dst, x, K);
    else ecm_quantize_row_q8_K_ref(dst, x, K);
}

ecm_status ecm_vec_dot_quant(float *out, const void *w, int qtype, const float *x, int K, int reference) {
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    if (!tr || !tr->vec_dot_ref) return ecm_fail(ECM_ERR_VALUE, "no dot product for type %s", ecm_type_name(qtype));
    if (K <= 0 || K % tr->block_size)
        return ecm_fail(ECM_ERR_VALUE, "%s rows must hold a multiple of %d elements, got %d", tr->name,
                        tr->block_size, K);
    kernels kn = pick_kernels(qtype, tr);
    size_t ab = act_row_bytes(tr->act_type, K);
    void *buf = NULL;
    const void *act = x;
    if (ab) {
        buf = ecm_alloc(ab);
        if (!buf) return ECM_ERR_NOMEM;
        if (reference && tr->act_type == ECM_TYPE_Q8_1) ecm_quantize_row_q8_a_ref(buf, x, K);
        else quantize_act_row(buf, x, tr->act_type, K);
        act = buf;
    }
    (reference ? tr->vec_dot_ref : kn.dot)(K, out, w, act);
    ecm_free(buf);
    return ECM_OK;
}

/* Weight rows per task: enough to keep a tile of weights in L1 while the
 * activation rows stream past it. */
#define MC 64 /* activation rows per pass over the weights (L2-resident) */

/* out = (accumulate ? out : 0) + (x @ w^T + bias), the sum of each output
 * formed as d + bias first, so accumulate and bias cost no extra pass. */
static inline __attribute__((always_inline)) void put_out(float *o, float d, const float *bias, int n, int accumulate) {
    if (bias) d += bias[n];
    *o = accumulate ? *o + d : d;
}

ecm_status ecm_matmul_quant_ex(float *out, int ldo, const float *x, int ldx, const void *w, int qtype,
                               const float *bias, int N, int K, int M, int accumulate) {
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    if (!tr || !tr->vec_dot_ref)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: unsupported weight type %s (id %d)", ecm_type_name(qtype),
                        qtype);
    if (N <= 0 || K <= 0 || M <= 0)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: sizes must be positive, got N=%d K=%d M=%d", N, K, M);
    if (K % tr->block_size)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: K=%d is not a multiple of the %s block size %d", K, tr->name,
                        tr->block_size);
    if (ldo < N || ldx < K)
        return ecm_fail(ECM_ERR_VALUE, "matmul_quant: row strides ldo=%d ldx=%d below N=%d, K=%d", ldo, ldx, N, K);
    if (ecm_tiled_type(qtype)) { /* standard blocks in, the models' tiled kernels on a tiled copy */
        void *tiles = ecm_alloc(ecm_tiled_bytes(qtype, N, K));
        if (!tiles) return ECM_ERR_NOMEM;
        ecm_status st = ecm_tile_weights(tiles, w, qtype, N, K);
        if (st == ECM_OK) st = ecm_matmul_tiled(out, ldo, x, ldx, tiles, qtype, bias, N, K, M, accumulate);
        ecm_free(tiles);
        return st;
    }
    const kernels kn = pick_kernels(qtype, tr);
    const size_t wrow = ecm_quant_row_bytes(qtype, K);
    size_t arow = act_row_bytes(tr->act_type, K);
    const uint8_t *act = (const uint8_t *)x;
    uint8_t *buf = NULL;
    const int serial = ecm_in_parallel();
    if (arow) { /* quantise the activations once, shared by every thread */
        size_t total;
        if (!ecm_mul_size(arow, (size_t)M, &total))
            return ecm_fail(ECM_ERR_NOMEM, "matmul_quant: activation buffer size overflows");
        buf = ecm_alloc(total);
        if (!buf) return ECM_ERR_NOMEM;
#pragma omp parallel for schedule(static) if (M > 1 && !serial)
        for (int m = 0; m < M; m++)
            quantize_act_row(buf + (size_t)m * arow, x + (size_t)m * ldx, tr->act_type, K);
        act = buf;
    } else {
        arow = (size_t)ldx * sizeof(float);
    }
    const uint8_t *wb = (const uint8_t *)w;
    if (M == 1) {
        /* Decode: one pass over the weights, rows split evenly. */
#pragma omp parallel for schedule(static) if (N > 1 && !serial)
        for (int n = 0; n < N; n++) {
            float d;
            kn.dot(K, &d, wb + (size_t)n * wrow, act);
            put_out(out + n, d, bias, n, accumulate);
        }
    } else {
        int rb = (int)(16384 / wrow);
        if (rb < 1) rb = 1;
        if (rb > 64) rb = 64;
        const int nrb = (N + rb - 1) / rb;
#pragma omp parallel if (!serial && nrb > 1)
        for (int m0 = 0; m0 < M; m0 += MC) {
            const int m1 = m0 + MC < M ? m0 + MC : M;
#pragma omp for schedule(static) nowait
            for (int r = 0; r < nrb; r++) {
                const int n0 = r * rb, n1 = n0 + rb < N ? n0 + rb : N;
                for (int m = m0; m < m1; m++)
                    for (int n = n0; n < n1; n++) {
                        float d;
                        kn.dot(K, &d, wb + (size_t)n * wrow, act + (size_t)m * arow);
                        put_out(out + (size_t)m * ldo + n, d, bias, n, accumulate);
                    }
            }
        }
    }
    ecm_free(buf);
    return ECM_OK;
}

size_t ecm_act_row_bytes(int qtype, int K) {
    if (ecm_tiled_type(qtype)) return act_row_bytes(ECM_TYPE_Q8_1, K);
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    return tr ? act_row_bytes(tr->act_type, K) : 0;
}

int ecm_act_block(int qtype) {
    if (ecm_tiled_type(qtype)) return ECM_QK;
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    if (!tr) return 0;
    return tr->act_type == ECM_TYPE_Q8_1 ? ECM_QK : tr->act_type == ECM_TYPE_Q8_K ? ECM_QK_K : 0;
}

void ecm_quantize_act(void *dst, const float *x, int qtype, int n) {
    quantize_act_row(dst, x, ecm_tiled_type(qtype) ? ECM_TYPE_Q8_1 : ecm_type_traits_get(qtype)->act_type, n);
}

void ecm_matmul_quant_part(float *out, int ldo, const void *act, const void *w, int qtype, const float *bias, int N,
                           int K, int M, int accumulate, int n0, int n1) {
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    const kernels kn = pick_kernels(qtype, tr);
    const size_t wrow = ecm_quant_row_bytes(qtype, K), arow = act_row_bytes(tr->act_type, K);
    (void)N;
    for (int m = 0; m < M; m++)
        for (int n = n0; n < n1; n++) {
            float d;
            kn.dot(K, &d, (const uint8_t *)w + (size_t)n * wrow, (const uint8_t *)act + (size_t)m * arow);
            put_out(out + (size_t)m * ldo + n, d, bias, n, accumulate);
        }
}

ecm_status ecm_matmul_quant(float *out, int ldo, const float *x, int ldx, const void *w, int qtype, int N, int K,
                            int M) {
    return ecm_matmul_quant_ex(out, ldo, x, ldx, w, qtype, NULL, N, K, M, 0);
}
