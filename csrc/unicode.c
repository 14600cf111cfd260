/* unicode.c: table look-ups and UTF-8 handling for the tokenizers. */
#include "unicode.h"

#include <string.h>

#include "unicode_tables.h"

_Static_assert(ECM_UC_BLOCK == 256, "ecm_uc_flags assumes 256-entry blocks");

/* Binary search over a table whose rows start with a code point. */
static long find_row(const uint32_t *tab, size_t n_rows, size_t row_len, uint32_t cp) {
    size_t lo = 0, hi = n_rows;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t v = tab[mid * row_len];
        if (v == cp) return (long)mid;
        if (v < cp) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

int ecm_uc_lower(uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    if (ecm_uc_flags(cp) & ECM_UC_LOWER) {
        long r = find_row(&ecm_uc_lower_tab[0][0], ECM_UC_N_LOWER, 5, cp);
        if (r >= 0) {
            int n = (int)ecm_uc_lower_tab[r][1];
            for (int i = 0; i < n; i++) out[i] = ecm_uc_lower_tab[r][2 + i];
            return n;
        }
    }
    out[0] = cp;
    return 1;
}

int ecm_uc_nfd(uint32_t cp, uint32_t out[4]) {
    /* Hangul syllables decompose algorithmically (Unicode ch. 3.12). */
    if (cp >= 0xAC00 && cp <= 0xD7A3) {
        uint32_t s = cp - 0xAC00;
        out[0] = 0x1100 + s / 588;
        out[1] = 0x1161 + (s % 588) / 28;
        if (s % 28) {
            out[2] = 0x11A7 + s % 28;
            return 3;
        }
        return 2;
    }
    if (cp >= 0xC0 && (ecm_uc_flags(cp) & ECM_UC_DECOMP)) {
        long r = find_row(&ecm_uc_decomp[0][0], ECM_UC_N_DECOMP, 3, cp);
        if (r >= 0) {
            uint32_t off = ecm_uc_decomp[r][1], n = ecm_uc_decomp[r][2];
            for (uint32_t i = 0; i < n && i < 4; i++) out[i] = ecm_uc_decomp_pool[off + i];
            return (int)(n < 4 ? n : 4);
        }
    }
    out[0] = cp;
    return 1;
}

int ecm_uc_ccc(uint32_t cp) {
    if (!(ecm_uc_flags(cp) & ECM_UC_CCC)) return 0;
    long r = find_row(&ecm_uc_ccc_tab[0][0], ECM_UC_N_CCC, 2, cp);
    return r >= 0 ? (int)ecm_uc_ccc_tab[r][1] : 0;
}

int ecm_utf8_put(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed sequence at s[i], or 0 with *bad set to the
 * length of the maximal ill-formed subpart to replace (>= 1). Table 3-7 of
 * the Unicode standard. */
static size_t seq_len(const uint8_t *s, size_t n, size_t i, size_t *bad) {
    uint8_t c = s[i];
    if (c < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else { *bad = 1; return 0; }
    for (size_t k = 1; k <= need; k++) {
        if (i + k >= n) { *bad = k; return 0; }
        uint8_t b = s[i + k];
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) { *bad = k; return 0; }
    }
    return need + 1;
}

size_t ecm_utf8_valid_prefix(const uint8_t *s, size_t n) {
    size_t i = 0, bad;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        size_t l = seq_len(s, n, i, &bad);
        if (!l) break;
        i += l;
    }
    return i;
}

ecm_status ecm_utf8_sanitize(const uint8_t *s, size_t n, uint8_t **out, size_t *out_n) {
    *out = NULL;
    *out_n = n;
    size_t i = ecm_utf8_valid_prefix(s, n);
    if (i == n) return ECM_OK;
    size_t cap; /* each bad byte becomes at most 3 bytes */
    if (!ecm_mul_size(n, 3, &cap)) return ecm_fail(ECM_ERR_NOMEM, "text too large");
    uint8_t *d = ecm_alloc(cap + 1);
    if (!d) return ECM_ERR_NOMEM;
    memcpy(d, s, i);
    size_t o = i, bad;
    while (i < n) {
        size_t l = seq_len(s, n, i, &bad);
        if (l) {
            memcpy(d + o, s + i, l);
            o += l;
            i += l;
        } else {
            d[o++] = 0xEF; d[o++] = 0xBF; d[o++] = 0xBD;
            i += bad;
        }
    }
    *out = d;
    *out_n = o;
    return ECM_OK;
}
