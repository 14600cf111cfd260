/* common.c: errors, checked sizes, aligned memory, CPU feature dispatch,
 * scalar dtype conversion and read-only file mapping. */
#define _GNU_SOURCE
#include "ecm.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ errors */

static _Thread_local char err_buf[1024];

ecm_status ecm_fail(ecm_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return status;
}

const char *ecm_last_error(void) { return err_buf[0] ? err_buf : "unknown error"; }
void ecm_clear_error(void) { err_buf[0] = 0; }

void ecm_assert_failed(const char *cond, const char *file, int line) {
    /* An internal invariant broke: this is a bug in ecomlm, not bad input. */
    fprintf(stderr, "ecomlm internal error: %s (%s:%d)\n", cond, file, line);
    abort();
}

int ecm_mul_size(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int ecm_add_size(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

void *ecm_alloc(size_t bytes) {
    size_t rounded;
    if (!ecm_add_size(bytes, 63, &rounded)) {
        ecm_fail(ECM_ERR_NOMEM, "allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    rounded &= ~(size_t)63;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        ecm_fail(ECM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}

void ecm_free(void *p) { free(p); }

typedef struct {
    void *p[ECM_SCRATCH_SLOTS];
    size_t cap[ECM_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *v) {
    scratch_set *s = v;
    for (int i = 0; i < ECM_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_destroy); }

void *ecm_scratch(int slot, size_t bytes) {
    ECM_ASSERT(slot >= 0 && slot < ECM_SCRATCH_SLOTS);
    pthread_once(&scratch_once, scratch_key_init);
    scratch_set *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            ecm_fail(ECM_ERR_NOMEM, "out of memory for scratch buffers");
            return NULL;
        }
    }
    if (bytes <= s->cap[slot]) return s->p[slot];
    size_t want = bytes + bytes / 4; /* some headroom: lengths grow a token at a time */
    if (want < bytes || want > SIZE_MAX - 63) want = bytes;
    want = (want + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, want ? want : 64);
    if (!p) {
        ecm_fail(ECM_ERR_NOMEM, "out of memory allocating %zu bytes of scratch", bytes);
        return NULL;
    }
    free(s->p[slot]);
    s->p[slot] = p;
    s->cap[slot] = want;
    return p;
}

/* ------------------------------------------------------------- cpu / simd */

static int simd_cached = -1;
static int simd_forced = -1;

ecm_simd_level ecm_simd_level_detected(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return ECM_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return ECM_SIMD_AVX2;
#endif
    return ECM_SIMD_SCALAR;
}

ecm_simd_level ecm_simd_level_get(void) {
    if (simd_forced >= 0) return (ecm_simd_level)simd_forced;
    if (simd_cached < 0) {
        ecm_simd_level lvl = ecm_simd_level_detected();
        const char *env = getenv("ECOMLM_SIMD");
        if (env) {
            ecm_simd_level want = lvl;
            if (!strcmp(env, "scalar")) want = ECM_SIMD_SCALAR;
            else if (!strcmp(env, "avx2")) want = ECM_SIMD_AVX2;
            else if (!strcmp(env, "avx512")) want = ECM_SIMD_AVX512;
            if (want < lvl) lvl = want; /* never above what the CPU has */
        }
        simd_cached = (int)lvl;
    }
    return (ecm_simd_level)simd_cached;
}

void ecm_simd_level_set(ecm_simd_level level) {
    ecm_simd_level hw = ecm_simd_level_detected();
    simd_forced = (int)(level < hw ? level : hw);
}

const char *ecm_simd_level_name(ecm_simd_level level) {
    switch (level) {
    case ECM_SIMD_AVX512: return "avx512";
    case ECM_SIMD_AVX2: return "avx2";
    default: return "scalar";
    }
}

int ecm_in_parallel(void) {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

int ecm_default_threads(void) {
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---------------------------------------------------------- dtype helpers */

size_t ecm_dtype_size(ecm_dtype t) {
    static const size_t sizes[ECM_DTYPE_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
    return (unsigned)t < ECM_DTYPE_COUNT ? sizes[t] : 0;
}

const char *ecm_dtype_name(ecm_dtype t) {
    static const char *names[ECM_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "I64",
                                                 "I32", "I16", "I8", "U8", "BOOL"};
    return (unsigned)t < ECM_DTYPE_COUNT ? names[t] : "?";
}

float ecm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ecm_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = 1u << (shift - 1);
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++; /* may carry into exp: ok */
    return (uint16_t)(sign | r);
}

float ecm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ecm_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

ecm_status ecm_convert_to_f32(float *dst, const void *src, ecm_dtype t, size_t n) {
    switch (t) {
    case ECM_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return ECM_OK;
    case ECM_DTYPE_F16: {
        const uint16_t *s = (const uint16_t *)src;
        for (size_t i = 0; i < n; i++) dst[i] = ecm_f16_to_f32(s[i]);
        return ECM_OK;
    }
    case ECM_DTYPE_BF16: {
        const uint16_t *s = (const uint16_t *)src;
        for (size_t i = 0; i < n; i++) dst[i] = ecm_bf16_to_f32(s[i]);
        return ECM_OK;
    }
    case ECM_DTYPE_F64: {
        const double *s = (const double *)src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return ECM_OK;
    }
    default:
        return ecm_fail(ECM_ERR_VALUE, "cannot convert dtype %s to float32", ecm_dtype_name(t));
    }
}

/* ------------------------------------------------------------------- mmap */

ecm_status ecm_mmap_open(ecm_mmap *m, const char *path) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return ecm_fail(ECM_ERR_NOT_FOUND, "no such file: %s", path);
        return ecm_fail(ECM_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ecm_fail(ECM_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ecm_fail(ECM_ERR_IO, "%s is not a regular file", path);
    }
    if (st.st_size == 0) { /* mmap of 0 bytes fails; an empty file is valid to map */
        close(fd);
        return ECM_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return ecm_fail(ECM_ERR_IO, "cannot mmap %s: %s", path, strerror(e));
    m->data = (uint8_t *)p;
    m->size = (size_t)st.st_size;
    return ECM_OK;
}

void ecm_mmap_close(ecm_mmap *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
    m->size = 0;
}
