/* safetensors.c: parse and validate a safetensors buffer.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the
 * data section. The JSON maps tensor names to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets relative to the data section), with
 * an optional "__metadata__" object of strings. Nothing in the header is
 * trusted: the header length, every offset, shape and dtype is checked
 * against the buffer before a tensor is handed out, tensors may not overlap,
 * and together they must cover the data section without holes.
 */
#include "ecm.h"

#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u * 1024u * 1024u) /* the format's own limit */

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int expect(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int read_hex4(cursor *c, unsigned *out) {
    if (c->end - c->p < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(c->p[i]);
        if (h < 0) return 0;
        v = v * 16 + (unsigned)h;
    }
    c->p += 4;
    *out = v;
    return 1;
}

static size_t put_utf8(char *dst, unsigned cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parse a JSON string; *out is malloc'd and NUL-terminated (NULL when out is
 * NULL: the string is only skipped). Returns 0 on a malformed string. */
static int parse_string(cursor *c, char **out) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    c->p++;
    /* Decoded text is never longer than the escaped source. */
    const char *start = c->p;
    size_t cap = 0;
    while (start + cap < c->end && start[cap] != '"') {
        if (start[cap] == '\\') cap++;
        cap++;
    }
    char *buf = NULL;
    if (out) {
        buf = malloc(cap + 1);
        if (!buf) return 0;
    }
    size_t n = 0;
    while (1) {
        if (c->p >= c->end) goto bad;
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') break;
        if (ch < 0x20) goto bad; /* control characters must be escaped */
        if (ch != '\\') {
            if (buf) buf[n] = (char)ch;
            n++;
            continue;
        }
        if (c->p >= c->end) goto bad;
        char e = *c->p++;
        unsigned cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!read_hex4(c, &cp)) goto bad;
            if (cp >= 0xd800 && cp < 0xdc00) {
                unsigned lo;
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u') goto bad;
                c->p += 2;
                if (!read_hex4(c, &lo) || lo < 0xdc00 || lo > 0xdfff) goto bad;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                goto bad;
            }
            break;
        default: goto bad;
        }
        /* \uXXXX (6 source bytes) decodes to at most 3 bytes, a surrogate
         * pair (12) to 4, so the buffer sized from the source suffices. */
        if (buf) n += put_utf8(buf + n, cp);
        else n += 4;
    }
    if (buf) {
        if (memchr(buf, 0, n)) { /* embedded NUL in a name: reject */
            free(buf);
            return 0;
        }
        buf[n] = 0;
        *out = buf;
    }
    return 1;
bad:
    free(buf);
    return 0;
}

/* A non-negative integer that fits in int64. */
static int parse_uint(cursor *c, uint64_t *out) {
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9') return 0;
    uint64_t v = 0;
    int digits = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (v > (UINT64_C(0x7fffffffffffffff) - d) / 10) return 0;
        v = v * 10 + d;
        c->p++;
        digits++;
    }
    if (digits > 1 && c->p[-digits] == '0') return 0; /* leading zero */
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) return 0;
    *out = v;
    return 1;
}

static int skip_value(cursor *c, int depth);

static int skip_literal(cursor *c, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n)) return 0;
    c->p += n;
    return 1;
}

static int skip_number(cursor *c) {
    const char *s = c->p;
    if (c->p < c->end && *c->p == '-') c->p++;
    while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '.' || *c->p == 'e' ||
                             *c->p == 'E' || *c->p == '+' || *c->p == '-'))
        c->p++;
    return c->p > s;
}

static int skip_value(cursor *c, int depth) {
    if (depth > 64) return 0;
    skip_ws(c);
    if (c->p >= c->end) return 0;
    char ch = *c->p;
    if (ch == '"') return parse_string(c, NULL);
    if (ch == '{') {
        c->p++;
        if (expect(c, '}')) return 1;
        do {
            if (!parse_string(c, NULL) || !expect(c, ':') || !skip_value(c, depth + 1)) return 0;
        } while (expect(c, ','));
        return expect(c, '}');
    }
    if (ch == '[') {
        c->p++;
        if (expect(c, ']')) return 1;
        do {
            if (!skip_value(c, depth + 1)) return 0;
        } while (expect(c, ','));
        return expect(c, ']');
    }
    if (ch == 't') return skip_literal(c, "true");
    if (ch == 'f') return skip_literal(c, "false");
    if (ch == 'n') return skip_literal(c, "null");
    return skip_number(c);
}

static int dtype_from_name(const char *s, ecm_dtype *out) {
    static const struct { const char *name; ecm_dtype t; } table[] = {
        {"F32", ECM_DTYPE_F32}, {"F16", ECM_DTYPE_F16}, {"BF16", ECM_DTYPE_BF16},
        {"F64", ECM_DTYPE_F64}, {"I64", ECM_DTYPE_I64}, {"I32", ECM_DTYPE_I32},
        {"I16", ECM_DTYPE_I16}, {"I8", ECM_DTYPE_I8},   {"U8", ECM_DTYPE_U8},
        {"BOOL", ECM_DTYPE_BOOL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(s, table[i].name)) {
            *out = table[i].t;
            return 1;
        }
    return 0;
}

/* Parse one tensor's info object; name already read. */
static ecm_status parse_tensor(cursor *c, ecm_st_tensor *t) {
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    uint64_t begin = 0, end = 0;
    if (!expect(c, '{')) return ecm_fail(ECM_ERR_FORMAT, "safetensors: tensor '%s' is not an object", t->name);
    if (!expect(c, '}')) {
        do {
            char *key = NULL;
            if (!parse_string(c, &key) || !expect(c, ':')) {
                free(key);
                return ecm_fail(ECM_ERR_FORMAT, "safetensors: malformed entry of tensor '%s'", t->name);
            }
            if (!strcmp(key, "dtype")) {
                char *dt = NULL;
                if (!parse_string(c, &dt)) {
                    free(key);
                    return ecm_fail(ECM_ERR_FORMAT, "safetensors: tensor '%s' dtype is not a string", t->name);
                }
                int ok = dtype_from_name(dt, &t->dtype);
                ecm_status st = ok ? ECM_OK
                                   : ecm_fail(ECM_ERR_FORMAT, "safetensors: tensor '%s' has unknown dtype '%.32s'",
                                              t->name, dt);
                free(dt);
                if (!ok) { free(key); return st; }
                have_dtype = 1;
            } else if (!strcmp(key, "shape")) {
                if (!expect(c, '[')) goto bad_shape;
                t->n_dims = 0;
                if (!expect(c, ']')) {
                    do {
                        uint64_t d;
                        if (t->n_dims >= ECM_MAX_DIMS || !parse_uint(c, &d)) goto bad_shape;
                        t->shape[t->n_dims++] = (int64_t)d;
                    } while (expect(c, ','));
                    if (!expect(c, ']')) goto bad_shape;
                }
                have_shape = 1;
            } else if (!strcmp(key, "data_offsets")) {
                if (!expect(c, '[') || !parse_uint(c, &begin) || !expect(c, ',') ||
                    !parse_uint(c, &end) || !expect(c, ']')) {
                    free(key);
                    return ecm_fail(ECM_ERR_FORMAT,
                                    "safetensors: tensor '%s' data_offsets must be [begin, end] integers",
                                    t->name);
                }
                have_offsets = 1;
            } else if (!skip_value(c, 1)) {
                free(key);
                return ecm_fail(ECM_ERR_FORMAT, "safetensors: malformed value in tensor '%s'", t->name);
            }
            free(key);
            continue;
        bad_shape:
            free(key);
            return ecm_fail(ECM_ERR_FORMAT,
                            "safetensors: tensor '%s' shape must be a list of at most %d non-negative integers",
                            t->name, ECM_MAX_DIMS);
        } while (expect(c, ','));
        if (!expect(c, '}')) return ecm_fail(ECM_ERR_FORMAT, "safetensors: malformed tensor '%s'", t->name);
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return ecm_fail(ECM_ERR_FORMAT, "safetensors: tensor '%s' lacks %s", t->name,
                        !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    if (begin > end)
        return ecm_fail(ECM_ERR_FORMAT, "safetensors: tensor '%s' data_offsets begin %llu > end %llu",
                        t->name, (unsigned long long)begin, (unsigned long long)end);
    size_t n = ecm_dtype_size(t->dtype);
    for (int i = 0; i < t->n_dims; i++)
        if (!ecm_mul_size(n, (size_t)t->shape[i], &n))
            return ecm_fail(ECM_ERR_FORMAT, "safetensors: tensor '%s' shape overflows", t->name);
    if (n != end - begin)
        return ecm_fail(ECM_ERR_FORMAT,
                        "safetensors: tensor '%s' shape and dtype need %zu bytes but data_offsets span %llu",
                        t->name, n, (unsigned long long)(end - begin));
    t->offset = (size_t)begin;
    t->nbytes = n;
    return ECM_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const ecm_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ecm_safetensors_free(ecm_safetensors *st) {
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    free(st->metadata_json);
    memset(st, 0, sizeof *st);
}

ecm_status ecm_safetensors_parse(ecm_safetensors *st, const uint8_t *buf, size_t size) {
    memset(st, 0, sizeof *st);
    if (size < 8)
        return ecm_fail(ECM_ERR_FORMAT, "safetensors: file of %zu bytes is too short for a header", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8)
        return ecm_fail(ECM_ERR_FORMAT, "safetensors: header length %llu runs past the end of the %zu-byte file",
                        (unsigned long long)hlen, size);
    if (hlen > ST_MAX_HEADER)
        return ecm_fail(ECM_ERR_FORMAT, "safetensors: header length %llu exceeds the 100 MB limit",
                        (unsigned long long)hlen);
    cursor c = {(const char *)buf + 8, (const char *)buf + 8 + hlen};
    st->data = buf + 8 + hlen;
    st->data_size = size - 8 - (size_t)hlen;

    int cap = 0;
    ecm_status status = ECM_OK;
    if (!expect(&c, '{')) {
        status = ecm_fail(ECM_ERR_FORMAT, "safetensors: header is not a JSON object");
        goto fail;
    }
    if (!expect(&c, '}')) {
        do {
            char *name = NULL;
            if (!parse_string(&c, &name) || !expect(&c, ':')) {
                free(name);
                status = ecm_fail(ECM_ERR_FORMAT, "safetensors: malformed header JSON near byte %ld",
                                  (long)(c.p - (const char *)buf));
                goto fail;
            }
            if (!strcmp(name, "__metadata__")) {
                free(name);
                skip_ws(&c);
                const char *s = c.p;
                if (c.p >= c.end || *c.p != '{' || !skip_value(&c, 0)) {
                    status = ecm_fail(ECM_ERR_FORMAT, "safetensors: __metadata__ must be an object");
                    goto fail;
                }
                free(st->metadata_json);
                st->metadata_json = malloc((size_t)(c.p - s) + 1);
                if (!st->metadata_json) {
                    status = ecm_fail(ECM_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                memcpy(st->metadata_json, s, (size_t)(c.p - s));
                st->metadata_json[c.p - s] = 0;
                continue;
            }
            if (st->n_tensors == cap) {
                int ncap = cap ? cap * 2 : 64;
                /* A tensor entry takes > 40 header bytes, so the header bounds the count. */
                if ((size_t)ncap > hlen / 8 + 64) ncap = (int)(hlen / 8 + 64);
                if (ncap <= cap) {
                    free(name);
                    status = ecm_fail(ECM_ERR_FORMAT, "safetensors: too many tensors for the header size");
                    goto fail;
                }
                ecm_st_tensor *nt = realloc(st->tensors, (size_t)ncap * sizeof *nt);
                if (!nt) {
                    free(name);
                    status = ecm_fail(ECM_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                st->tensors = nt;
                cap = ncap;
            }
            ecm_st_tensor *t = &st->tensors[st->n_tensors++];
            memset(t, 0, sizeof *t);
            t->name = name;
            status = parse_tensor(&c, t);
            if (status != ECM_OK) goto fail;
        } while (expect(&c, ','));
        if (!expect(&c, '}')) {
            status = ecm_fail(ECM_ERR_FORMAT, "safetensors: malformed header JSON near byte %ld",
                              (long)(c.p - (const char *)buf));
            goto fail;
        }
    }
    skip_ws(&c);
    if (c.p != c.end) {
        status = ecm_fail(ECM_ERR_FORMAT, "safetensors: trailing bytes after the header JSON");
        goto fail;
    }
    if (st->n_tensors > 1) qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_offset);
    size_t expect_off = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        ecm_st_tensor *t = &st->tensors[i];
        if (t->offset != expect_off) {
            status = ecm_fail(ECM_ERR_FORMAT,
                              t->offset < expect_off
                                  ? "safetensors: tensor '%s' overlaps the tensor before it"
                                  : "safetensors: hole in the data section before tensor '%s'",
                              t->name);
            goto fail;
        }
        if (t->nbytes > st->data_size - t->offset) {
            status = ecm_fail(ECM_ERR_FORMAT,
                              "safetensors: tensor '%s' (bytes %zu..%zu) runs past the end of the %zu-byte data section",
                              t->name, t->offset, t->offset + t->nbytes, st->data_size);
            goto fail;
        }
        expect_off = t->offset + t->nbytes;
    }
    if (expect_off != st->data_size) {
        status = ecm_fail(ECM_ERR_FORMAT, "safetensors: %zu bytes of the data section belong to no tensor",
                          st->data_size - expect_off);
        goto fail;
    }
    if (st->n_tensors > 1) { /* duplicate names: sort pointers by name, compare neighbours */
        const char **names = malloc((size_t)st->n_tensors * sizeof *names);
        if (!names) {
            status = ecm_fail(ECM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < st->n_tensors; i++) names[i] = st->tensors[i].name;
        qsort(names, (size_t)st->n_tensors, sizeof *names, cmp_name);
        for (int i = 1; i < st->n_tensors; i++)
            if (!strcmp(names[i - 1], names[i])) {
                status = ecm_fail(ECM_ERR_FORMAT, "safetensors: duplicate tensor '%s'", names[i]);
                free(names);
                goto fail;
            }
        free(names);
    }
    return ECM_OK;
fail:
    ecm_safetensors_free(st);
    return status;
}

int ecm_safetensors_find(const ecm_safetensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return i;
    return -1;
}
