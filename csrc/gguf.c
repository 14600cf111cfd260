/* gguf.c: a validating GGUF (v2, v3) reader over a memory buffer.
 *
 * Layout (all little-endian): magic "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, n_kv x (string key, u32 type, value), n_tensors x (string name,
 * u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset), padding to the
 * alignment, then the tensor data. A string is u64 length + bytes; an array
 * is u32 element type + u64 count + elements.
 *
 * Every read goes through a cursor that knows how many bytes remain, and
 * every count is bounded by (bytes remaining / smallest possible element)
 * before anything is allocated, so a forged count fails at once.
 */
#include "gguf.h"

#include "quants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t left;
    size_t pos; /* offset from the start of the file, for messages */
} cursor;

static int take(cursor *c, void *dst, size_t n) {
    if (c->left < n) return 0;
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    c->pos += n;
    return 1;
}

static const char *type_names[ECM_GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64"};

const char *ecm_gguf_type_name(int type) {
    return (unsigned)type < ECM_GGUF_TYPE_COUNT ? type_names[type] : "?";
}

/* Bytes of a fixed-size scalar type; 0 for string and array. */
static size_t scalar_size(int type) {
    switch (type) {
    case ECM_GGUF_UINT8: case ECM_GGUF_INT8: case ECM_GGUF_BOOL: return 1;
    case ECM_GGUF_UINT16: case ECM_GGUF_INT16: return 2;
    case ECM_GGUF_UINT32: case ECM_GGUF_INT32: case ECM_GGUF_FLOAT32: return 4;
    case ECM_GGUF_UINT64: case ECM_GGUF_INT64: case ECM_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* The fewest bytes one element of `type` can take: bounds array counts. */
static size_t min_size(int type) {
    if (type == ECM_GGUF_STRING) return 8;
    if (type == ECM_GGUF_ARRAY) return 12;
    return scalar_size(type);
}

static ecm_status read_str(ecm_gguf_str *s, const uint8_t *p, size_t avail, size_t *used,
                           const char *what) {
    uint64_t len;
    if (avail < 8) return ecm_fail(ECM_ERR_FORMAT, "GGUF: %s: string length runs past the end of the file", what);
    memcpy(&len, p, 8);
    if (len > avail - 8)
        return ecm_fail(ECM_ERR_FORMAT,
                        "GGUF: %s: string length %llu runs past the end of the file (%zu bytes left)",
                        what, (unsigned long long)len, avail - 8);
    s->ptr = (const char *)p + 8;
    s->len = len;
    *used = 8 + (size_t)len;
    return ECM_OK;
}

ecm_status ecm_gguf_value_read(ecm_gguf_value *v, int type, const uint8_t *p, size_t avail,
                               size_t *used, int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    if ((unsigned)type >= ECM_GGUF_TYPE_COUNT)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: unknown metadata value type %u", (unsigned)type);
    size_t sz = scalar_size(type);
    if (sz) {
        if (avail < sz)
            return ecm_fail(ECM_ERR_FORMAT, "GGUF: a %s value runs past the end of the file",
                            type_names[type]);
        uint8_t b[8] = {0};
        memcpy(b, p, sz);
        switch (type) {
        case ECM_GGUF_UINT8: v->v.u64 = b[0]; break;
        case ECM_GGUF_INT8: v->v.i64 = (int8_t)b[0]; break;
        case ECM_GGUF_BOOL:
            if (b[0] > 1) return ecm_fail(ECM_ERR_FORMAT, "GGUF: bool value %u is not 0 or 1", b[0]);
            v->v.u64 = b[0];
            break;
        case ECM_GGUF_UINT16: { uint16_t x; memcpy(&x, b, 2); v->v.u64 = x; break; }
        case ECM_GGUF_INT16: { int16_t x; memcpy(&x, b, 2); v->v.i64 = x; break; }
        case ECM_GGUF_UINT32: { uint32_t x; memcpy(&x, b, 4); v->v.u64 = x; break; }
        case ECM_GGUF_INT32: { int32_t x; memcpy(&x, b, 4); v->v.i64 = x; break; }
        case ECM_GGUF_FLOAT32: { float x; memcpy(&x, b, 4); v->v.f64 = x; break; }
        case ECM_GGUF_UINT64: memcpy(&v->v.u64, b, 8); break;
        case ECM_GGUF_INT64: memcpy(&v->v.i64, b, 8); break;
        case ECM_GGUF_FLOAT64: memcpy(&v->v.f64, b, 8); break;
        }
        *used = sz;
        return ECM_OK;
    }
    if (type == ECM_GGUF_STRING) return read_str(&v->v.str, p, avail, used, "metadata value");
    /* ARRAY: u32 element type, u64 count, elements. */
    if (depth >= ECM_GGUF_MAX_DEPTH)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: arrays nested more than %d deep", ECM_GGUF_MAX_DEPTH);
    if (avail < 12) return ecm_fail(ECM_ERR_FORMAT, "GGUF: an array header runs past the end of the file");
    uint32_t et;
    uint64_t count;
    memcpy(&et, p, 4);
    memcpy(&count, p + 4, 8);
    if (et >= ECM_GGUF_TYPE_COUNT)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: array of unknown element type %u", et);
    size_t rest = avail - 12;
    if (count > rest / min_size((int)et))
        return ecm_fail(ECM_ERR_FORMAT,
                        "GGUF: array of %llu %s elements cannot fit in the %zu bytes left",
                        (unsigned long long)count, type_names[et], rest);
    v->v.arr.elem_type = (int)et;
    v->v.arr.count = count;
    v->v.arr.data = p + 12;
    size_t esz = scalar_size((int)et);
    size_t span = 0;
    if (esz) {
        span = (size_t)count * esz; /* bounded above */
        if (et == ECM_GGUF_BOOL)
            for (size_t i = 0; i < span; i++)
                if (p[12 + i] > 1)
                    return ecm_fail(ECM_ERR_FORMAT, "GGUF: bool array element %zu is %u, not 0 or 1",
                                    i, p[12 + i]);
    } else {
        for (uint64_t i = 0; i < count; i++) {
            ecm_gguf_value item;
            size_t u;
            ecm_status s = ecm_gguf_value_read(&item, (int)et, p + 12 + span, rest - span, &u, depth + 1);
            if (s != ECM_OK) return s;
            span += u;
        }
    }
    v->v.arr.nbytes = span;
    *used = 12 + span;
    return ECM_OK;
}

/* ------------------------------------------------------------------ parse */

static int str_cmp(const ecm_gguf_str *a, const ecm_gguf_str *b) {
    size_t n = a->len < b->len ? (size_t)a->len : (size_t)b->len;
    int c = memcmp(a->ptr, b->ptr, n);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int cmp_kv_ptr(const void *a, const void *b) {
    return str_cmp(&(*(ecm_gguf_kv *const *)a)->key, &(*(ecm_gguf_kv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(ecm_gguf_tensor *const *)a)->name, (*(ecm_gguf_tensor *const *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    uint64_t x = (*(ecm_gguf_tensor *const *)a)->offset, y = (*(ecm_gguf_tensor *const *)b)->offset;
    return x < y ? -1 : x > y;
}

static int key_is(const ecm_gguf_str *k, const char *s) {
    size_t n = strlen(s);
    return k->len == n && memcmp(k->ptr, s, n) == 0;
}

/* A printable prefix of a key for messages. */
static void key_text(char *dst, size_t cap, const ecm_gguf_str *k) {
    size_t n = k->len < cap - 1 ? (size_t)k->len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)k->ptr[i];
        dst[i] = (ch >= 32 && ch < 127) ? (char)ch : '?';
    }
    dst[n] = 0;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF):
 * tensor names become Python str keys, so they must decode. */
static int utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static ecm_status parse_tensor_info(ecm_gguf_tensor *t, cursor *c, int64_t index) {
    ecm_gguf_str name = {0};
    size_t used = 0;
    char what[64];
    snprintf(what, sizeof what, "tensor %lld name", (long long)index);
    ecm_status s = read_str(&name, c->p, c->left, &used, what);
    if (s != ECM_OK) return s;
    if (name.len == 0 || name.len >= ECM_GGUF_MAX_NAME)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor %lld has a name of %llu bytes (1 to %d allowed)",
                        (long long)index, (unsigned long long)name.len, ECM_GGUF_MAX_NAME - 1);
    if (memchr(name.ptr, 0, (size_t)name.len))
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor %lld name contains a NUL byte", (long long)index);
    if (!utf8_valid((const uint8_t *)name.ptr, (size_t)name.len))
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor %lld name is not valid UTF-8", (long long)index);
    c->p += used;
    c->left -= used;
    c->pos += used;
    t->name = malloc((size_t)name.len + 1);
    if (!t->name) return ecm_fail(ECM_ERR_NOMEM, "GGUF: out of memory for tensor names");
    memcpy(t->name, name.ptr, (size_t)name.len);
    t->name[name.len] = 0;
    uint32_t n_dims;
    if (!take(c, &n_dims, 4))
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' info runs past the end of the file", t->name);
    if (n_dims < 1 || n_dims > ECM_GGUF_MAX_DIMS)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' has %u dimensions (1 to %d allowed)", t->name,
                        n_dims, ECM_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    size_t n_elem = 1;
    for (int d = 0; d < ECM_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        int64_t ne;
        if (!take(c, &ne, 8))
            return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' info runs past the end of the file", t->name);
        if (ne < 0 || ne > INT32_MAX)
            return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' dimension %u is %lld (0 to 2^31-1 allowed)",
                            t->name, d, (long long)ne);
        t->ne[d] = ne;
        if (!ecm_mul_size(n_elem, (size_t)ne, &n_elem))
            return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' element count overflows", t->name);
    }
    uint32_t type;
    uint64_t offset;
    if (!take(c, &type, 4) || !take(c, &offset, 8))
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' info runs past the end of the file", t->name);
    size_t bs = ecm_type_block_size((int)type), bb = ecm_type_block_bytes((int)type);
    if (!bs || !bb)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' has unknown ggml type id %u", t->name, type);
    t->type = (int)type;
    if (t->ne[0] % (int64_t)bs)
        return ecm_fail(ECM_ERR_FORMAT,
                        "GGUF: tensor '%s' of type %s has a row of %lld elements, not a multiple of %zu",
                        t->name, ecm_type_name((int)type), (long long)t->ne[0], bs);
    size_t nbytes;
    if (!ecm_mul_size(n_elem / bs, bb, &nbytes))
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' byte size overflows", t->name);
    t->nbytes = nbytes;
    t->offset = offset;
    return ECM_OK;
}

ecm_status ecm_gguf_parse(ecm_gguf *g, const uint8_t *buf, size_t size) {
    memset(g, 0, sizeof *g);
    ecm_gguf_tensor **order = NULL;
    ecm_gguf_kv **korder = NULL;
    ecm_status s = ECM_OK;
    cursor c = {buf, size, 0};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    if (!buf && size) return ecm_fail(ECM_ERR_VALUE, "GGUF: no buffer");
    if (!take(&c, &magic, 4)) return ecm_fail(ECM_ERR_FORMAT, "GGUF: file of %zu bytes is too short for a header", size);
    if (magic != ECM_GGUF_MAGIC) return ecm_fail(ECM_ERR_FORMAT, "not a GGUF file (bad magic 0x%08x)", magic);
    if (!take(&c, &version, 4) || !take(&c, &n_tensors, 8) || !take(&c, &n_kv, 8))
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: file of %zu bytes is too short for a header", size);
    if (version == 1) return ecm_fail(ECM_ERR_FORMAT, "GGUF version 1 is not supported (only 2 and 3)");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version)
            return ecm_fail(ECM_ERR_FORMAT, "GGUF: big-endian files are not supported");
        return ecm_fail(ECM_ERR_FORMAT, "GGUF version %u is not supported (only 2 and 3)", version);
    }
    g->buf = buf;
    g->size = size;
    g->version = version;
    g->alignment = ECM_GGUF_DEFAULT_ALIGNMENT;
    /* A key-value pair takes at least 13 bytes, a tensor info at least 32. */
    if (n_kv > c.left / 13)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: %llu metadata entries cannot fit in a file of %zu bytes",
                        (unsigned long long)n_kv, size);
    if (n_tensors > c.left / 32)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: %llu tensors cannot fit in a file of %zu bytes",
                        (unsigned long long)n_tensors, size);
    if (n_kv) {
        g->kv = calloc((size_t)n_kv, sizeof *g->kv);
        if (!g->kv) return ecm_fail(ECM_ERR_NOMEM, "GGUF: out of memory for %llu metadata entries",
                                    (unsigned long long)n_kv);
    }
    g->n_kv = (int64_t)n_kv;
    for (uint64_t i = 0; i < n_kv; i++) {
        ecm_gguf_kv *kv = &g->kv[i];
        size_t used = 0;
        char what[64];
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        s = read_str(&kv->key, c.p, c.left, &used, what);
        if (s != ECM_OK) goto fail;
        c.p += used; c.left -= used; c.pos += used;
        char kt[80];
        key_text(kt, sizeof kt, &kv->key);
        if (kv->key.len == 0) {
            s = ecm_fail(ECM_ERR_FORMAT, "GGUF: metadata key %llu is empty", (unsigned long long)i);
            goto fail;
        }
        uint32_t type;
        if (!take(&c, &type, 4)) {
            s = ecm_fail(ECM_ERR_FORMAT, "GGUF: metadata '%s' runs past the end of the file", kt);
            goto fail;
        }
        s = ecm_gguf_value_read(&kv->value, (int)type, c.p, c.left, &used, 0);
        if (s != ECM_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ecm_last_error());
            s = ecm_fail(s, "%s (in metadata '%s' at byte %zu)", msg, kt, c.pos);
            goto fail;
        }
        c.p += used; c.left -= used; c.pos += used;
        if (key_is(&kv->key, "general.alignment")) {
            if (kv->value.type != ECM_GGUF_UINT32) {
                s = ecm_fail(ECM_ERR_FORMAT, "GGUF: general.alignment must be uint32, not %s",
                             ecm_gguf_type_name(kv->value.type));
                goto fail;
            }
            uint64_t a = kv->value.v.u64;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                s = ecm_fail(ECM_ERR_FORMAT, "GGUF: general.alignment %llu is not a power of two up to 2^20",
                             (unsigned long long)a);
                goto fail;
            }
            g->alignment = (size_t)a;
        }
    }
    if (n_kv > 1) { /* duplicate keys make lookups ambiguous: refuse them */
        korder = malloc((size_t)n_kv * sizeof *korder);
        if (!korder) { s = ecm_fail(ECM_ERR_NOMEM, "GGUF: out of memory"); goto fail; }
        for (uint64_t i = 0; i < n_kv; i++) korder[i] = &g->kv[i];
        qsort(korder, (size_t)n_kv, sizeof *korder, cmp_kv_ptr);
        for (uint64_t i = 1; i < n_kv; i++)
            if (str_cmp(&korder[i - 1]->key, &korder[i]->key) == 0) {
                char kt[80];
                key_text(kt, sizeof kt, &korder[i]->key);
                s = ecm_fail(ECM_ERR_FORMAT, "GGUF: duplicate metadata key '%s'", kt);
                goto fail;
            }
    }
    if (n_tensors > c.left / 32) {
        s = ecm_fail(ECM_ERR_FORMAT, "GGUF: %llu tensors cannot fit in the %zu bytes after the metadata",
                     (unsigned long long)n_tensors, c.left);
        goto fail;
    }
    if (n_tensors) {
        g->tensors = calloc((size_t)n_tensors, sizeof *g->tensors);
        if (!g->tensors) {
            s = ecm_fail(ECM_ERR_NOMEM, "GGUF: out of memory for %llu tensors", (unsigned long long)n_tensors);
            goto fail;
        }
    }
    g->n_tensors = (int64_t)n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++) {
        s = parse_tensor_info(&g->tensors[i], &c, (int64_t)i);
        if (s != ECM_OK) goto fail;
    }
    /* The data section starts at the next multiple of the alignment. */
    size_t data_off = c.pos, pad = (g->alignment - data_off % g->alignment) % g->alignment;
    if (n_tensors && pad > c.left) {
        s = ecm_fail(ECM_ERR_FORMAT, "GGUF: file ends before its tensor data section");
        goto fail;
    }
    data_off += pad > c.left ? c.left : pad;
    g->data_offset = data_off;
    g->data = buf + data_off;
    g->data_size = size - data_off;
    if (n_tensors) {
        order = malloc((size_t)n_tensors * sizeof *order);
        if (!order) { s = ecm_fail(ECM_ERR_NOMEM, "GGUF: out of memory"); goto fail; }
        for (uint64_t i = 0; i < n_tensors; i++) {
            ecm_gguf_tensor *t = &g->tensors[i];
            order[i] = t;
            if (t->offset % g->alignment) {
                s = ecm_fail(ECM_ERR_FORMAT, "GGUF: tensor '%s' offset %llu is not a multiple of the alignment %zu",
                             t->name, (unsigned long long)t->offset, g->alignment);
                goto fail;
            }
            if (t->offset > g->data_size || t->nbytes > g->data_size - t->offset) {
                s = ecm_fail(ECM_ERR_FORMAT,
                             "GGUF: tensor '%s' (%zu bytes at data offset %llu) runs past the end of the file "
                             "(data section of %zu bytes)",
                             t->name, t->nbytes, (unsigned long long)t->offset, g->data_size);
                goto fail;
            }
        }
        qsort(order, (size_t)n_tensors, sizeof *order, cmp_tensor_name);
        for (uint64_t i = 1; i < n_tensors; i++)
            if (!strcmp(order[i - 1]->name, order[i]->name)) {
                s = ecm_fail(ECM_ERR_FORMAT, "GGUF: duplicate tensor name '%s'", order[i]->name);
                goto fail;
            }
        qsort(order, (size_t)n_tensors, sizeof *order, cmp_tensor_offset);
        for (uint64_t i = 1; i < n_tensors; i++) {
            const ecm_gguf_tensor *a = order[i - 1], *b = order[i];
            if (a->nbytes && b->nbytes && a->offset + a->nbytes > b->offset) {
                s = ecm_fail(ECM_ERR_FORMAT, "GGUF: tensors '%s' and '%s' overlap", a->name, b->name);
                goto fail;
            }
        }
    }
    free(order);
    free(korder);
    return ECM_OK;
fail:
    free(order);
    free(korder);
    ecm_gguf_free(g);
    return s;
}

void ecm_gguf_free(ecm_gguf *g) {
    if (g->tensors)
        for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->kv);
    memset(g, 0, sizeof *g);
}

/* ----------------------------------------------------------------- lookup */

int64_t ecm_gguf_find_key(const ecm_gguf *g, const char *key) {
    size_t n = strlen(key);
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len == n && !memcmp(g->kv[i].key.ptr, key, n)) return i;
    return -1;
}

int64_t ecm_gguf_find_tensor(const ecm_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return i;
    return -1;
}

const uint8_t *ecm_gguf_tensor_data(const ecm_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_tensors) return NULL;
    return g->data + g->tensors[i].offset;
}

static ecm_status lookup(const ecm_gguf *g, const char *key, const ecm_gguf_value **v) {
    int64_t i = ecm_gguf_find_key(g, key);
    if (i < 0) return ecm_fail(ECM_ERR_NOT_FOUND, "GGUF: no metadata key '%s'", key);
    *v = &g->kv[i].value;
    return ECM_OK;
}

ecm_status ecm_gguf_get_int(const ecm_gguf *g, const char *key, int64_t *out) {
    const ecm_gguf_value *v = NULL;
    ecm_status s = lookup(g, key, &v);
    if (s != ECM_OK) return s;
    switch (v->type) {
    case ECM_GGUF_UINT8: case ECM_GGUF_UINT16: case ECM_GGUF_UINT32: case ECM_GGUF_UINT64: case ECM_GGUF_BOOL:
        if (v->v.u64 > INT64_MAX) break;
        *out = (int64_t)v->v.u64;
        return ECM_OK;
    case ECM_GGUF_INT8: case ECM_GGUF_INT16: case ECM_GGUF_INT32: case ECM_GGUF_INT64:
        *out = v->v.i64;
        return ECM_OK;
    default: break;
    }
    return ecm_fail(ECM_ERR_FORMAT, "GGUF: metadata '%s' is a %s, not an integer", key,
                    ecm_gguf_type_name(v->type));
}

ecm_status ecm_gguf_get_float(const ecm_gguf *g, const char *key, double *out) {
    const ecm_gguf_value *v = NULL;
    ecm_status s = lookup(g, key, &v);
    if (s != ECM_OK) return s;
    if (v->type == ECM_GGUF_FLOAT32 || v->type == ECM_GGUF_FLOAT64) {
        *out = v->v.f64;
        return ECM_OK;
    }
    int64_t i;
    if (ecm_gguf_get_int(g, key, &i) == ECM_OK) {
        *out = (double)i;
        return ECM_OK;
    }
    return ecm_fail(ECM_ERR_FORMAT, "GGUF: metadata '%s' is a %s, not a number", key,
                    ecm_gguf_type_name(v->type));
}

ecm_status ecm_gguf_get_str(const ecm_gguf *g, const char *key, ecm_gguf_str *out) {
    const ecm_gguf_value *v = NULL;
    ecm_status s = lookup(g, key, &v);
    if (s != ECM_OK) return s;
    if (v->type != ECM_GGUF_STRING)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: metadata '%s' is a %s, not a string", key,
                        ecm_gguf_type_name(v->type));
    *out = v->v.str;
    return ECM_OK;
}

ecm_status ecm_gguf_get_array(const ecm_gguf *g, const char *key, ecm_gguf_value *out) {
    const ecm_gguf_value *v = NULL;
    ecm_status s = lookup(g, key, &v);
    if (s != ECM_OK) return s;
    if (v->type != ECM_GGUF_ARRAY)
        return ecm_fail(ECM_ERR_FORMAT, "GGUF: metadata '%s' is a %s, not an array", key,
                        ecm_gguf_type_name(v->type));
    *out = *v;
    return ECM_OK;
}
