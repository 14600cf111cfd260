/* unicode.h: the few Unicode services the tokenizers need: per-code-point
 * class flags, full lower-casing, canonical decomposition (NFD) and UTF-8
 * decoding with a defined result for invalid bytes. Tables are generated
 * (tools/gen_unicode_tables.py); the Unicode version is ECM_UNICODE_VERSION. */
#ifndef ECM_UNICODE_H
#define ECM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "ecm.h"

enum {
    ECM_UC_L = 1 << 0,      /* \p{L}: Lu Ll Lt Lm Lo                         */
    ECM_UC_N = 1 << 1,      /* \p{N}: Nd Nl No                               */
    ECM_UC_WS = 1 << 2,     /* White_Space (Oniguruma \s, Rust is_whitespace) */
    ECM_UC_P = 1 << 3,      /* \p{P}: Pc Pd Ps Pe Pi Pf Po                   */
    ECM_UC_C = 1 << 4,      /* \p{C}: Cc Cf Cs Co Cn                         */
    ECM_UC_MN = 1 << 5,     /* Mn (what BERT's accent stripping removes)     */
    ECM_UC_LOWER = 1 << 6,  /* lower-casing changes it                       */
    ECM_UC_DECOMP = 1 << 7, /* NFD changes it                                */
    ECM_UC_CCC = 1 << 8,    /* canonical combining class is not 0            */
    ECM_UC_CN = 1 << 9,     /* Cn: unassigned (in ECM_UNICODE_VERSION)        */
};

extern const uint16_t ecm_uc_stage1[];
extern const uint16_t ecm_uc_stage2[];
static inline uint16_t ecm_uc_flags(uint32_t cp) {
    if (cp >= 0x110000) return ECM_UC_C;
    return ecm_uc_stage2[(size_t)ecm_uc_stage1[cp >> 8] * 256 + (cp & 255)];
}
/* Full lower-case mapping (SpecialCasing, no context): writes 1..3 code points. */
int ecm_uc_lower(uint32_t cp, uint32_t out[3]);
/* Full canonical decomposition: writes 1..4 code points (not reordered). */
int ecm_uc_nfd(uint32_t cp, uint32_t out[4]);
int ecm_uc_ccc(uint32_t cp);

/* Decode one code point of valid UTF-8 at s[*i] (s has n bytes) and advance. */
static inline uint32_t ecm_utf8_next(const uint8_t *s, size_t n, size_t *i) {
    size_t k = *i;
    uint32_t c = s[k];
    if (c < 0x80) { *i = k + 1; return c; }
    if (c < 0xE0 && k + 1 < n) { *i = k + 2; return ((c & 0x1F) << 6) | (s[k + 1] & 0x3F); }
    if (c < 0xF0 && k + 2 < n) {
        *i = k + 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(s[k + 1] & 0x3F) << 6) | (s[k + 2] & 0x3F);
    }
    if (k + 3 < n) {
        *i = k + 4;
        return ((c & 0x07) << 18) | ((uint32_t)(s[k + 1] & 0x3F) << 12) |
               ((uint32_t)(s[k + 2] & 0x3F) << 6) | (s[k + 3] & 0x3F);
    }
    *i = n; /* unreachable on validated input */
    return 0xFFFD;
}

/* Append the UTF-8 form of cp to out (room for 4 bytes); returns bytes written. */
int ecm_utf8_put(uint8_t *out, uint32_t cp);

/* Length of the valid UTF-8 prefix of s. */
size_t ecm_utf8_valid_prefix(const uint8_t *s, size_t n);

/* Replace each maximal ill-formed subpart of s by U+FFFD (what Python's
 * bytes.decode("utf-8", "replace") and Rust's from_utf8_lossy do). Returns
 * ECM_OK with *out = NULL when s is already valid, else a new buffer (free
 * with ecm_free) in *out / *out_n. */
ecm_status ecm_utf8_sanitize(const uint8_t *s, size_t n, uint8_t **out, size_t *out_n);

#endif
