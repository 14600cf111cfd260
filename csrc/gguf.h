/* gguf.h: parse and validate a GGUF file (versions 2 and 3) held in memory.
 *
 * Nothing in the buffer is trusted: every count, length, type id, dimension,
 * offset and the alignment are checked against the buffer's size before use,
 * so a hostile file fails fast with ECM_ERR_FORMAT and a message, never with
 * a huge allocation or an out-of-bounds read. After ecm_gguf_parse succeeds
 * the structure borrows the buffer (strings and values point into it): keep
 * the buffer alive and unchanged while the ecm_gguf is used.
 */
#ifndef ECM_GGUF_H
#define ECM_GGUF_H

#include "ecm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ECM_GGUF_MAGIC 0x46554747u /* "GGUF" read little-endian */
#define ECM_GGUF_DEFAULT_ALIGNMENT 32
#define ECM_GGUF_MAX_DIMS 4        /* GGML_MAX_DIMS */
#define ECM_GGUF_MAX_DEPTH 8       /* arrays of arrays nest at most this deep */
#define ECM_GGUF_MAX_NAME 256      /* bytes in a tensor name */

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum {
    ECM_GGUF_UINT8 = 0,
    ECM_GGUF_INT8 = 1,
    ECM_GGUF_UINT16 = 2,
    ECM_GGUF_INT16 = 3,
    ECM_GGUF_UINT32 = 4,
    ECM_GGUF_INT32 = 5,
    ECM_GGUF_FLOAT32 = 6,
    ECM_GGUF_BOOL = 7,
    ECM_GGUF_STRING = 8,
    ECM_GGUF_ARRAY = 9,
    ECM_GGUF_UINT64 = 10,
    ECM_GGUF_INT64 = 11,
    ECM_GGUF_FLOAT64 = 12,
    ECM_GGUF_TYPE_COUNT
} ecm_gguf_type;

/* A string inside the buffer: not NUL-terminated, may hold any bytes. */
typedef struct {
    const char *ptr;
    uint64_t len;
} ecm_gguf_str;

/* One metadata value. Scalars are decoded; a string points into the buffer;
 * an array records its element type, count and the byte span of its
 * elements, which ecm_gguf_value_read walks one element at a time (the span
 * was validated, recursively, by ecm_gguf_parse). */
typedef struct {
    int type;                   /* ecm_gguf_type */
    union {
        uint64_t u64;           /* UINT8/16/32/64 and BOOL (0 or 1) */
        int64_t i64;            /* INT8/16/32/64 */
        double f64;             /* FLOAT32/64 */
        ecm_gguf_str str;       /* STRING */
        struct {
            int elem_type;      /* ecm_gguf_type of every element */
            uint64_t count;
            const uint8_t *data;/* first element */
            size_t nbytes;      /* bytes spanned by all elements */
        } arr;                  /* ARRAY */
    } v;
} ecm_gguf_value;

typedef struct {
    ecm_gguf_str key;
    ecm_gguf_value value;
} ecm_gguf_kv;

typedef struct {
    char *name;                      /* NUL-terminated, owned */
    int type;                        /* GGML type id (ecm_qtype) */
    int n_dims;                      /* 1..4 */
    int64_t ne[ECM_GGUF_MAX_DIMS];   /* ggml order: ne[0] is the fastest dim; unused = 1 */
    uint64_t offset;                 /* from the start of the data section */
    size_t nbytes;
} ecm_gguf_tensor;

typedef struct {
    const uint8_t *buf;              /* the whole file (borrowed) */
    size_t size;
    uint32_t version;                /* 2 or 3 */
    size_t alignment;                /* general.alignment or 32 */
    int64_t n_kv;
    ecm_gguf_kv *kv;                 /* owned array, file order */
    int64_t n_tensors;
    ecm_gguf_tensor *tensors;        /* owned array, file order */
    size_t data_offset;              /* start of the tensor data section */
    const uint8_t *data;             /* buf + data_offset */
    size_t data_size;                /* size - data_offset */
} ecm_gguf;

/* Parse and validate a whole GGUF buffer. On failure nothing is owned and
 * the message names what was wrong and where. */
ecm_status ecm_gguf_parse(ecm_gguf *g, const uint8_t *buf, size_t size);
void ecm_gguf_free(ecm_gguf *g);

/* Index of a key / tensor, or -1. */
int64_t ecm_gguf_find_key(const ecm_gguf *g, const char *key);
int64_t ecm_gguf_find_tensor(const ecm_gguf *g, const char *name);
const uint8_t *ecm_gguf_tensor_data(const ecm_gguf *g, int64_t i);

/* Typed getters for model loaders: ECM_ERR_NOT_FOUND when the key is
 * missing, ECM_ERR_FORMAT when it has an incompatible type. Integers of any
 * width convert when the value fits. The string getter returns a pointer into
 * the buffer (not NUL-terminated) and its length. */
ecm_status ecm_gguf_get_int(const ecm_gguf *g, const char *key, int64_t *out);
ecm_status ecm_gguf_get_float(const ecm_gguf *g, const char *key, double *out);
ecm_status ecm_gguf_get_str(const ecm_gguf *g, const char *key, ecm_gguf_str *out);
ecm_status ecm_gguf_get_array(const ecm_gguf *g, const char *key, ecm_gguf_value *out);

/* Decode one value of `type` at p (at most `avail` bytes), with arrays
 * nested `depth` deep so far; *used gets the bytes it spans. Safe on any
 * input: used by the parser and to walk array elements. */
ecm_status ecm_gguf_value_read(ecm_gguf_value *v, int type, const uint8_t *p, size_t avail,
                               size_t *used, int depth);

const char *ecm_gguf_type_name(int type);

#ifdef __cplusplus
}
#endif
#endif /* ECM_GGUF_H */
