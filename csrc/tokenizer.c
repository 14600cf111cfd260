/* tokenizer.c: byte-level BPE and WordPiece, matching Hugging Face
 * `tokenizers` id for id (see tokenizer.h for the pipeline).
 *
 * BPE works on raw bytes: at load every token is turned back from GPT-2's
 * byte-to-unicode spelling into the bytes it stands for, each merge becomes
 * (left id, right id) -> (rank, merged id) in a hash table, and a word is
 * merged with a min-heap of candidate pairs ordered by (rank, position),
 * exactly the order HF's word.merge_all uses. Pre-tokenisation regexes are
 * hand-written scanners that reproduce the regexes' leftmost-alternative,
 * greedy-with-backtracking semantics. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "unicode.h"

#define TOK_ADDED 1
#define TOK_SPECIAL 2

typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t id;
} pair_entry;

struct ecm_tokenizer {
    ecm_tok_config cfg;
    int32_t n_vocab;
    char *text;           /* token strings as in the file, concatenated     */
    int64_t *text_off;    /* (n_vocab + 1)                                  */
    uint8_t *bytes;       /* what each token decodes to (byte-level: bytes) */
    int64_t *bytes_off;   /* (n_vocab + 1)                                  */
    uint8_t *flags;       /* (n_vocab) TOK_ADDED | TOK_SPECIAL              */
    int32_t *vmap;        /* string -> id, open addressing, -1 empty        */
    uint64_t vmap_mask;
    pair_entry *pairs;    /* BPE merges                                     */
    uint64_t pairs_mask;
    int32_t byte_id[256]; /* byte-level BPE: symbol of each byte, -1 none   */
    int32_t n_added;
    int32_t *added;       /* added token ids, grouped by first byte         */
    int32_t added_start[257];
};

void ecm_tok_config_default(ecm_tok_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->model = ECM_TOK_BPE;
    cfg->pre = ECM_PRE_GPT2;
    cfg->byte_level = 1;
    cfg->unk_id = -1;
    cfg->max_input_chars_per_word = 100;
    cfg->bos_id = -1;
    cfg->eos_id = -1;
}

/* ------------------------------------------------------------ utilities */

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 29);
}

/* Make room for `need` elements of `elem` bytes in *p (capacity *cap). */
static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem) return 0;
        c *= 2;
    }
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

void ecm_tok_ids_free(ecm_tok_ids *v) {
    free(v->ids);
    free(v->type_ids);
    memset(v, 0, sizeof *v);
}

static int ids_reserve(ecm_tok_ids *v, size_t extra) {
    size_t need = v->n + extra;
    if (need <= v->cap) return 1;
    size_t c = v->cap ? v->cap : 64;
    while (c < need) c *= 2;
    int32_t *a = realloc(v->ids, c * sizeof *a);
    if (!a) return 0;
    v->ids = a;
    uint8_t *b = realloc(v->type_ids, c);
    if (!b) return 0;
    v->type_ids = b;
    v->cap = c;
    return 1;
}

static inline int ids_push(ecm_tok_ids *v, int32_t id, uint8_t type) {
    if (v->n == v->cap && !ids_reserve(v, 1)) return 0;
    v->ids[v->n] = id;
    v->type_ids[v->n] = type;
    v->n++;
    return 1;
}

/* GPT-2's byte-to-unicode: printable bytes keep their code point, the rest
 * are moved to 256 + k in byte order. */
static void byte_to_unicode(uint32_t b2u[256]) {
    int k = 0;
    for (int b = 0; b < 256; b++) {
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) b2u[b] = (uint32_t)b;
        else b2u[b] = 256 + (uint32_t)k++;
    }
}

/* Per-thread scratch space, reused across words and texts. */
typedef struct {
    int32_t *sym;   /* per symbol: id, prev, next, alive (4 ints)          */
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_cap;
    int64_t *spans; /* pre-tokeniser pieces: start, end                    */
    size_t spans_cap, n_spans;
    uint32_t *cpa, *cpb;
    size_t cpa_cap, cpb_cap;
    uint8_t *wbuf;
    size_t wbuf_cap;
    ecm_tok_ids a, b; /* the two sequences before the template            */
} work;

static void work_free(work *w) {
    free(w->sym);
    free(w->heap);
    free(w->spans);
    free(w->cpa);
    free(w->cpb);
    free(w->wbuf);
    ecm_tok_ids_free(&w->a);
    ecm_tok_ids_free(&w->b);
}

static inline int span_push(work *w, size_t s, size_t e) {
    if (!grow((void **)&w->spans, &w->spans_cap, 2 * (w->n_spans + 1), sizeof(int64_t)))
        return 0;
    w->spans[2 * w->n_spans] = (int64_t)s;
    w->spans[2 * w->n_spans + 1] = (int64_t)e;
    w->n_spans++;
    return 1;
}

/* -------------------------------------------------------- vocabulary */

static inline const char *tok_str(const ecm_tokenizer *t, int32_t id, size_t *n) {
    *n = (size_t)(t->text_off[id + 1] - t->text_off[id]);
    return t->text + t->text_off[id];
}

static int32_t vmap_find(const ecm_tokenizer *t, const uint8_t *s, size_t n) {
    if (!t->vmap) return -1;
    uint64_t i = hash_bytes(s, n) & t->vmap_mask;
    for (;;) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        size_t m;
        const char *ts = tok_str(t, id, &m);
        if (m == n && memcmp(ts, s, n) == 0) return id;
        i = (i + 1) & t->vmap_mask;
    }
}

static pair_entry *pair_find(const ecm_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t i = hash_pair(key) & t->pairs_mask;
    for (;;) {
        pair_entry *e = &t->pairs[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->pairs_mask;
    }
}

int ecm_tokenizer_vocab_size(const ecm_tokenizer *tok) { return tok->n_vocab; }

int32_t ecm_tokenizer_token_to_id(const ecm_tokenizer *tok, const char *s, size_t n) {
    return vmap_find(tok, (const uint8_t *)s, n);
}

const char *ecm_tokenizer_id_to_token(const ecm_tokenizer *tok, int32_t id, size_t *n) {
    if (id < 0 || id >= tok->n_vocab) return NULL;
    const char *s = tok_str(tok, id, n);
    return *n ? s : NULL;
}

int ecm_tokenizer_is_special(const ecm_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_vocab && (tok->flags[id] & TOK_SPECIAL);
}

const uint8_t *ecm_tokenizer_token_bytes(const ecm_tokenizer *tok, int32_t id, size_t *n) {
    if (id < 0 || id >= tok->n_vocab) return NULL;
    *n = (size_t)(tok->bytes_off[id + 1] - tok->bytes_off[id]);
    return tok->bytes + tok->bytes_off[id];
}

void ecm_tokenizer_free(ecm_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->text_off);
    free(t->bytes);
    free(t->bytes_off);
    free(t->flags);
    free(t->vmap);
    free(t->pairs);
    free(t->added);
    free(t);
}

static ecm_status check_strlist(const ecm_strlist *l, const char *what) {
    if (l->n < 0 || l->n > INT32_MAX - 1)
        return ecm_fail(ECM_ERR_FORMAT, "%s: bad count %lld", what, (long long)l->n);
    if (l->n == 0) return ECM_OK;
    if (!l->offsets || !l->data)
        return ecm_fail(ECM_ERR_FORMAT, "%s: missing data", what);
    if (l->offsets[0] != 0) return ecm_fail(ECM_ERR_FORMAT, "%s: offsets must start at 0", what);
    for (int64_t i = 0; i < l->n; i++)
        if (l->offsets[i + 1] < l->offsets[i])
            return ecm_fail(ECM_ERR_FORMAT, "%s: offsets must not decrease", what);
    return ECM_OK;
}

static uint64_t pow2_above(uint64_t n) {
    uint64_t c = 16;
    while (c < n * 2) c *= 2;
    return c;
}

ecm_status ecm_tokenizer_init(ecm_tokenizer **out, const ecm_tok_config *cfg,
                              const ecm_strlist *vocab, const ecm_strlist *merges,
                              const int32_t *added_ids, const uint8_t *added_special,
                              int n_added) {
    *out = NULL;
    ecm_status st = check_strlist(vocab, "vocabulary");
    if (st) return st;
    if (merges && (st = check_strlist(merges, "merges"))) return st;
    if (cfg->model != ECM_TOK_BPE && cfg->model != ECM_TOK_WORDPIECE)
        return ecm_fail(ECM_ERR_VALUE, "unknown tokenizer model %d", cfg->model);
    if (cfg->pre < ECM_PRE_NONE || cfg->pre > ECM_PRE_BERT)
        return ecm_fail(ECM_ERR_VALUE, "unknown pre-tokenizer %d", cfg->pre);
    if (vocab->n == 0) return ecm_fail(ECM_ERR_FORMAT, "the vocabulary is empty");
    int32_t V = (int32_t)vocab->n;
    const int ids_in_range[] = {cfg->unk_id, cfg->bos_id, cfg->eos_id};
    const char *names[] = {"unk token id", "bos token id", "eos token id"};
    for (int i = 0; i < 3; i++)
        if (ids_in_range[i] < -1 || ids_in_range[i] >= V)
            return ecm_fail(ECM_ERR_FORMAT, "%s %d is outside the vocabulary (size %d)",
                            names[i], ids_in_range[i], V);
    if (cfg->model == ECM_TOK_WORDPIECE && cfg->unk_id < 0)
        return ecm_fail(ECM_ERR_FORMAT, "a WordPiece tokenizer needs an unk token");
    if (cfg->max_input_chars_per_word < 1)
        return ecm_fail(ECM_ERR_FORMAT, "max_input_chars_per_word must be >= 1");
    if (n_added < 0 || (n_added > 0 && !added_ids))
        return ecm_fail(ECM_ERR_FORMAT, "bad added-token list");

    ecm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    t->cfg = *cfg;
    t->n_vocab = V;
    size_t total = (size_t)vocab->offsets[V];
    t->text = malloc(total + 1);
    t->text_off = malloc(((size_t)V + 1) * sizeof(int64_t));
    t->bytes = malloc(total + 1); /* decoded forms are never longer */
    t->bytes_off = malloc(((size_t)V + 1) * sizeof(int64_t));
    t->flags = calloc((size_t)V, 1);
    t->vmap_mask = pow2_above((uint64_t)V) - 1;
    t->vmap = malloc((t->vmap_mask + 1) * sizeof(int32_t));
    if (!t->text || !t->text_off || !t->bytes || !t->bytes_off || !t->flags || !t->vmap) {
        st = ecm_fail(ECM_ERR_NOMEM, "out of memory loading a vocabulary of %d tokens", V);
        goto fail;
    }
    memcpy(t->text, vocab->data, total);
    memcpy(t->text_off, vocab->offsets, ((size_t)V + 1) * sizeof(int64_t));
    memset(t->vmap, 0xFF, (t->vmap_mask + 1) * sizeof(int32_t));

    uint32_t b2u[256];
    int32_t u2b[512];
    byte_to_unicode(b2u);
    for (int i = 0; i < 512; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) u2b[b2u[b]] = b;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;

    size_t bo = 0;
    for (int32_t id = 0; id < V; id++) {
        size_t n;
        const uint8_t *s = (const uint8_t *)tok_str(t, id, &n);
        t->bytes_off[id] = (int64_t)bo;
        if (ecm_utf8_valid_prefix(s, n) != n) {
            st = ecm_fail(ECM_ERR_FORMAT, "token %d is not valid UTF-8", id);
            goto fail;
        }
        if (n == 0) continue; /* a hole: no token has this id */
        /* string -> id; the first spelling wins on duplicates */
        uint64_t h = hash_bytes(s, n) & t->vmap_mask;
        int dup = 0;
        while (t->vmap[h] >= 0) {
            size_t m;
            const char *o = tok_str(t, t->vmap[h], &m);
            if (m == n && memcmp(o, s, n) == 0) { dup = 1; break; }
            h = (h + 1) & t->vmap_mask;
        }
        if (!dup) t->vmap[h] = id;
        /* decoded bytes: byte-level tokens map char by char when every char
         * is in the table (HF's ByteLevel decoder), else stay as they are */
        size_t start = bo, i = 0;
        int mapped = cfg->model == ECM_TOK_BPE && cfg->byte_level;
        while (mapped && i < n) {
            uint32_t c = ecm_utf8_next(s, n, &i);
            if (c >= 512 || u2b[c] < 0) mapped = 0;
            else t->bytes[bo++] = (uint8_t)u2b[c];
        }
        if (!mapped) {
            bo = start;
            memcpy(t->bytes + bo, s, n);
            bo += n;
        }
        if (cfg->model == ECM_TOK_BPE && cfg->byte_level) {
            i = 0;
            uint32_t c = ecm_utf8_next(s, n, &i);
            if (i == n && c < 512 && u2b[c] >= 0 && t->byte_id[u2b[c]] < 0)
                t->byte_id[u2b[c]] = id;
        }
    }
    t->bytes_off[V] = (int64_t)bo;

    /* added tokens, grouped by first byte for the scan */
    if (n_added > 0) {
        t->added = malloc((size_t)n_added * sizeof(int32_t));
        if (!t->added) { st = ecm_fail(ECM_ERR_NOMEM, "out of memory"); goto fail; }
        int32_t count[256] = {0};
        for (int i = 0; i < n_added; i++) {
            int32_t id = added_ids[i];
            if (id < 0 || id >= V) {
                st = ecm_fail(ECM_ERR_FORMAT, "added token id %d is outside the vocabulary (size %d)", id, V);
                goto fail;
            }
            size_t n;
            const char *s = tok_str(t, id, &n);
            if (n == 0) {
                st = ecm_fail(ECM_ERR_FORMAT, "added token id %d has no text", id);
                goto fail;
            }
            if (t->flags[id] & TOK_ADDED) continue;
            t->flags[id] |= TOK_ADDED | (added_special && added_special[i] ? TOK_SPECIAL : 0);
            count[(uint8_t)s[0]]++;
        }
        t->added_start[0] = 0;
        for (int b = 0; b < 256; b++) t->added_start[b + 1] = t->added_start[b] + count[b];
        int32_t fill[256];
        memcpy(fill, t->added_start, sizeof fill);
        for (int32_t id = 0; id < V; id++) {
            if (!(t->flags[id] & TOK_ADDED)) continue;
            size_t n;
            const char *s = tok_str(t, id, &n);
            t->added[fill[(uint8_t)s[0]]++] = id;
        }
        t->n_added = t->added_start[256];
    }

    /* merges: (left, right) -> (rank, merged) */
    if (cfg->model == ECM_TOK_BPE) {
        int64_t M = merges ? merges->n / 2 : 0;
        if (merges && merges->n % 2)
            { st = ecm_fail(ECM_ERR_FORMAT, "merges: odd number of strings"); goto fail; }
        t->pairs_mask = pow2_above((uint64_t)M + 1) - 1;
        t->pairs = malloc((t->pairs_mask + 1) * sizeof(pair_entry));
        if (!t->pairs) { st = ecm_fail(ECM_ERR_NOMEM, "out of memory loading merges"); goto fail; }
        for (uint64_t i = 0; i <= t->pairs_mask; i++) t->pairs[i].key = UINT64_MAX;
        uint8_t *cat = NULL;
        size_t cat_cap = 0;
        for (int64_t r = 0; r < M; r++) {
            const uint8_t *a = (const uint8_t *)merges->data + merges->offsets[2 * r];
            size_t na = (size_t)(merges->offsets[2 * r + 1] - merges->offsets[2 * r]);
            const uint8_t *b = (const uint8_t *)merges->data + merges->offsets[2 * r + 1];
            size_t nb = (size_t)(merges->offsets[2 * r + 2] - merges->offsets[2 * r + 1]);
            int32_t ia = vmap_find(t, a, na), ib = vmap_find(t, b, nb);
            if (ia < 0 || ib < 0) {
                free(cat);
                st = ecm_fail(ECM_ERR_FORMAT, "merge %lld: '%.*s' is not in the vocabulary",
                              (long long)r, (int)(ia < 0 ? (na > 64 ? 64 : na) : (nb > 64 ? 64 : nb)),
                              (const char *)(ia < 0 ? a : b));
                goto fail;
            }
            if (!grow((void **)&cat, &cat_cap, na + nb, 1)) {
                free(cat);
                st = ecm_fail(ECM_ERR_NOMEM, "out of memory");
                goto fail;
            }
            memcpy(cat, a, na);
            memcpy(cat + na, b, nb);
            int32_t im = vmap_find(t, cat, na + nb);
            if (im < 0) {
                free(cat);
                st = ecm_fail(ECM_ERR_FORMAT, "merge %lld: '%.*s%.*s' is not in the vocabulary",
                              (long long)r, (int)(na > 64 ? 64 : na), (const char *)a,
                              (int)(nb > 64 ? 64 : nb), (const char *)b);
                goto fail;
            }
            uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
            uint64_t i = hash_pair(key) & t->pairs_mask;
            while (t->pairs[i].key != UINT64_MAX && t->pairs[i].key != key)
                i = (i + 1) & t->pairs_mask;
            t->pairs[i].key = key; /* a repeated pair keeps its last rank */
            t->pairs[i].rank = (int32_t)r;
            t->pairs[i].id = im;
        }
        free(cat);
    }
    *out = t;
    return ECM_OK;
fail:
    ecm_tokenizer_free(t);
    return st;
}

/* --------------------------------------------------- pre-tokenisation */

static inline uint32_t cp_at(const uint8_t *s, size_t e, size_t i, size_t *next) {
    *next = i;
    return ecm_utf8_next(s, e, next);
}

#define uflags ecm_uc_flags

#define IS_OTHER(f) (!((f) & (ECM_UC_WS | ECM_UC_L | ECM_UC_N)))

/* End of the run of chars starting at i whose flags satisfy the test. */
#define RUN(cond)                                                \
    do {                                                         \
        while (k < e) {                                          \
            size_t kn;                                           \
            uint16_t g = uflags(cp_at(s, e, k, &kn));            \
            (void)g;                                             \
            if (!(cond)) break;                                  \
            k = kn;                                              \
        }                                                        \
    } while (0)

/* Whitespace alternatives shared by both families: \s+(?!\S)|\s+ at i. */
static size_t ws_tail(const uint8_t *s, size_t i, size_t e) {
    size_t k = i, last = i;
    while (k < e) {
        size_t kn;
        if (!(uflags(cp_at(s, e, k, &kn)) & ECM_UC_WS)) break;
        last = k;
        k = kn;
    }
    if (k == e) return e;
    return last > i ? last : k;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int pre_gpt2(work *w, const uint8_t *s, size_t b, size_t e) {
    size_t i = b;
    while (i < e) {
        size_t j;
        uint32_t c = cp_at(s, e, i, &j);
        uint16_t f = uflags(c);
        size_t k;
        if (c == '\'' && j < e) {
            uint8_t c1 = s[j];
            if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
                if (!span_push(w, i, j + 1)) return 0;
                i = j + 1;
                continue;
            }
            if (j + 1 < e) {
                uint8_t c2 = s[j + 1];
                if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
                    if (!span_push(w, i, j + 2)) return 0;
                    i = j + 2;
                    continue;
                }
            }
        }
        size_t from = i;
        uint16_t g0 = f;
        if (c == ' ' && j < e) {
            size_t jn;
            uint16_t g = uflags(cp_at(s, e, j, &jn));
            if (!(g & ECM_UC_WS)) { from = j; g0 = g; }
        }
        k = from;
        if (g0 & ECM_UC_L) RUN(g & ECM_UC_L);
        else if (g0 & ECM_UC_N) RUN(g & ECM_UC_N);
        else if (IS_OTHER(g0)) RUN(IS_OTHER(g));
        else k = ws_tail(s, i, e);
        if (!span_push(w, i, k)) return 0;
        i = k;
    }
    return 1;
}

/* Llama-3 (max_digits 3) and Qwen2 (1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static int pre_llama3(work *w, const uint8_t *s, size_t b, size_t e, int max_digits) {
    size_t i = b;
    while (i < e) {
        size_t j;
        uint32_t c = cp_at(s, e, i, &j);
        uint16_t f = uflags(c);
        size_t k;
        if (c == '\'' && j < e) {
            size_t j2;
            uint32_t c1 = cp_at(s, e, j, &j2);
            uint32_t l1 = c1 < 128 ? (c1 | 0x20) : c1;
            /* Oniguruma folds U+017F LATIN SMALL LETTER LONG S to 's' */
            if (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd' || c1 == 0x17F) {
                if (!span_push(w, i, j2)) return 0;
                i = j2;
                continue;
            }
            if (j2 < e && c1 < 128) {
                uint8_t l2 = s[j2] | 0x20;
                if (s[j2] < 128 && ((l1 == 'r' && l2 == 'e') || (l1 == 'v' && l2 == 'e') ||
                                    (l1 == 'l' && l2 == 'l'))) {
                    if (!span_push(w, i, j2 + 1)) return 0;
                    i = j2 + 1;
                    continue;
                }
            }
        }
        if (f & ECM_UC_L) {
            k = j;
            RUN(g & ECM_UC_L);
        } else if (c != '\r' && c != '\n' && !(f & ECM_UC_N) && j < e &&
                   (uflags(cp_at(s, e, j, &k)) & ECM_UC_L)) {
            k = j;
            RUN(g & ECM_UC_L);
        } else if (f & ECM_UC_N) {
            k = j;
            int nd = 1;
            while (k < e && nd < max_digits) {
                size_t kn;
                if (!(uflags(cp_at(s, e, k, &kn)) & ECM_UC_N)) break;
                k = kn;
                nd++;
            }
        } else {
            size_t from = i;
            uint16_t g0 = f;
            if (c == ' ' && j < e) {
                size_t jn;
                uint16_t g = uflags(cp_at(s, e, j, &jn));
                if (IS_OTHER(g)) { from = j; g0 = g; }
            }
            if (IS_OTHER(g0)) {
                k = from;
                RUN(IS_OTHER(g));
                while (k < e && (s[k] == '\r' || s[k] == '\n')) k++;
            } else {
                /* c is whitespace: \s*[\r\n]+ up to the run's last newline */
                size_t q = i, nl = SIZE_MAX;
                while (q < e) {
                    size_t qn;
                    if (!(uflags(cp_at(s, e, q, &qn)) & ECM_UC_WS)) break;
                    if (s[q] == '\r' || s[q] == '\n') nl = q;
                    q = qn;
                }
                k = nl != SIZE_MAX ? nl + 1 : ws_tail(s, i, e);
            }
        }
        if (!span_push(w, i, k)) return 0;
        i = k;
    }
    return 1;
}

/* Pieces of a valid-UTF-8 segment s[b:e] for BPE. */
static int pre_bpe(const ecm_tokenizer *t, work *w, const uint8_t *s, size_t b, size_t e) {
    const ecm_tok_config *c = &t->cfg;
    if (c->split_digits) {
        /* HF Digits(individual_digits): every numeric char is its own piece,
         * the regex then runs on the stretches between them */
        size_t i = b, seg = b;
        while (i < e) {
            size_t j;
            uint16_t f = uflags(cp_at(s, e, i, &j));
            if (f & ECM_UC_N) {
                if (seg < i) {
                    int ok = c->pre == ECM_PRE_GPT2 ? pre_gpt2(w, s, seg, i)
                           : c->pre == ECM_PRE_NONE ? span_push(w, seg, i)
                                                    : pre_llama3(w, s, seg, i, c->pre == ECM_PRE_QWEN2 ? 1 : 3);
                    if (!ok) return 0;
                }
                if (!span_push(w, i, j)) return 0;
                seg = j;
            }
            i = j;
        }
        b = seg;
        if (b >= e) return 1;
    }
    switch (c->pre) {
    case ECM_PRE_GPT2: return pre_gpt2(w, s, b, e);
    case ECM_PRE_LLAMA3: return pre_llama3(w, s, b, e, 3);
    case ECM_PRE_QWEN2: return pre_llama3(w, s, b, e, 1);
    default: return span_push(w, b, e);
    }
}

/* ------------------------------------------------------------------ BPE */

static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= m) break;
        if (l + 1 < m && h[l + 1] < h[l]) l++;
        if (h[l] >= v) break;
        h[i] = h[l];
        i = l;
    }
    if (m) h[i] = v;
    return top;
}

#define S_ID(p) w->sym[4 * (p)]
#define S_PREV(p) w->sym[4 * (p) + 1]
#define S_NEXT(p) w->sym[4 * (p) + 2]
#define S_LIVE(p) w->sym[4 * (p) + 3]

static inline void push_pair(const ecm_tokenizer *t, work *w, size_t *hn, int32_t p) {
    int32_t q = S_NEXT(p);
    if (q < 0) return;
    pair_entry *pe = pair_find(t, S_ID(p), S_ID(q));
    if (pe) heap_push(w->heap, hn, ((uint64_t)(uint32_t)pe->rank << 32) | (uint32_t)p);
}

/* Merge the symbols of one piece and append the ids (type `type`). */
static int bpe_piece(const ecm_tokenizer *t, work *w, const uint8_t *p, size_t n,
                     ecm_tok_ids *out, uint8_t type) {
    if (!grow((void **)&w->sym, &w->sym_cap, 4 * (n + 1), sizeof(int32_t))) return 0;
    int32_t ns = 0;
    if (t->cfg.byte_level) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = t->byte_id[p[i]];
            if (id < 0) id = t->cfg.unk_id;
            if (id < 0) continue; /* HF drops a symbol it cannot name */
            S_ID(ns) = id;
            ns++;
        }
    } else {
        size_t i = 0;
        while (i < n) {
            size_t j = i;
            ecm_utf8_next(p, n, &j);
            int32_t id = vmap_find(t, p + i, j - i);
            if (id < 0) id = t->cfg.unk_id;
            i = j;
            if (id < 0) continue;
            S_ID(ns) = id;
            ns++;
        }
    }
    if (ns == 0) return 1;
    if (ns == 1) return ids_push(out, S_ID(0), type);
    for (int32_t i = 0; i < ns; i++) {
        S_PREV(i) = i - 1;
        S_NEXT(i) = i + 1 < ns ? i + 1 : -1;
        S_LIVE(i) = 1;
    }
    if (!grow((void **)&w->heap, &w->heap_cap, 3 * (size_t)ns, sizeof(uint64_t))) return 0;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) push_pair(t, w, &hn, i);
    while (hn) {
        uint64_t top = heap_pop(w->heap, &hn);
        int32_t a = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32);
        if (!S_LIVE(a)) continue;
        int32_t b = S_NEXT(a);
        if (b < 0) continue;
        pair_entry *pe = pair_find(t, S_ID(a), S_ID(b));
        if (!pe || pe->rank != rank) continue; /* stale: a neighbour changed */
        S_ID(a) = pe->id;
        S_NEXT(a) = S_NEXT(b);
        if (S_NEXT(b) >= 0) S_PREV(S_NEXT(b)) = a;
        S_LIVE(b) = 0;
        if (hn + 2 > w->heap_cap &&
            !grow((void **)&w->heap, &w->heap_cap, hn + 2, sizeof(uint64_t)))
            return 0;
        if (S_PREV(a) >= 0) push_pair(t, w, &hn, S_PREV(a));
        push_pair(t, w, &hn, a);
    }
    if (!ids_reserve(out, (size_t)ns)) return 0;
    for (int32_t i = 0; i >= 0; i = S_NEXT(i)) {
        out->ids[out->n] = S_ID(i);
        out->type_ids[out->n] = type;
        out->n++;
    }
    return 1;
}

static ecm_status encode_bpe_segment(const ecm_tokenizer *t, work *w, const uint8_t *s,
                                     size_t b, size_t e, ecm_tok_ids *out, uint8_t type) {
    w->n_spans = 0;
    if (!pre_bpe(t, w, s, b, e)) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->n_spans; i++) {
        size_t ps = (size_t)w->spans[2 * i], pe = (size_t)w->spans[2 * i + 1];
        if (!bpe_piece(t, w, s + ps, pe - ps, out, type))
            return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    }
    return ECM_OK;
}

/* ------------------------------------------------------------ WordPiece */

static inline int is_chinese_char(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static inline int is_bert_punct(uint32_t c, uint16_t f) {
    if (c < 128)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    return (f & ECM_UC_P) != 0;
}

/* HF BertNormalizer on s[b:e]: result as code points in w->cpa (count *nc). */
static int bert_normalize(const ecm_tokenizer *t, work *w, const uint8_t *s, size_t b,
                          size_t e, size_t *nc) {
    const ecm_tok_config *c = &t->cfg;
    size_t cap_need = 3 * (e - b) + 4;
    if (!grow((void **)&w->cpa, &w->cpa_cap, cap_need, sizeof(uint32_t))) return 0;
    size_t n = 0, i = b;
    int any_decomp = 0, any_lower = 0;
    while (i < e) {
        uint32_t cp = ecm_utf8_next(s, e, &i);
        uint16_t f = uflags(cp);
        if (c->clean_text) {
            if (cp == 0 || cp == 0xFFFD) continue;
            /* HF's is_control: Cc Cf Co Cs (its tables leave out Cn) */
            if (cp != '\t' && cp != '\n' && cp != '\r' && (f & (ECM_UC_C | ECM_UC_CN)) == ECM_UC_C)
                continue;
            if (f & ECM_UC_WS) { w->cpa[n++] = ' '; continue; }
        }
        any_decomp |= (f & (ECM_UC_DECOMP | ECM_UC_MN | ECM_UC_CCC)) != 0 || (cp >= 0xAC00 && cp <= 0xD7A3);
        any_lower |= (f & ECM_UC_LOWER) != 0;
        if (c->handle_chinese_chars && is_chinese_char(cp)) {
            w->cpa[n++] = ' ';
            w->cpa[n++] = cp;
            w->cpa[n++] = ' ';
            continue;
        }
        w->cpa[n++] = cp;
    }
    if (c->strip_accents && any_decomp) {
        /* NFD (full decomposition, canonical order), then drop Mn */
        size_t need = 4 * n + 4;
        if (!grow((void **)&w->cpb, &w->cpb_cap, need, sizeof(uint32_t))) return 0;
        size_t m = 0;
        for (size_t k = 0; k < n; k++) {
            uint32_t d[4];
            int nd = ecm_uc_nfd(w->cpa[k], d);
            for (int q = 0; q < nd; q++) {
                uint32_t x = d[q];
                int cc = ecm_uc_ccc(x);
                size_t pos = m;
                if (cc) /* canonical ordering: stable insertion by class */
                    while (pos > 0) {
                        int pc = ecm_uc_ccc(w->cpb[pos - 1]);
                        if (pc <= cc) break;
                        w->cpb[pos] = w->cpb[pos - 1];
                        pos--;
                    }
                w->cpb[pos] = x;
                m++;
            }
        }
        if (!grow((void **)&w->cpa, &w->cpa_cap, m + 4, sizeof(uint32_t))) return 0;
        n = 0;
        for (size_t k = 0; k < m; k++) {
            uint32_t x = w->cpb[k];
            if (uflags(x) & ECM_UC_MN) continue;
            if (uflags(x) & ECM_UC_LOWER) any_lower = 1;
            w->cpa[n++] = x;
        }
    }
    if (c->lowercase && any_lower) {
        if (!grow((void **)&w->cpb, &w->cpb_cap, 3 * n + 4, sizeof(uint32_t))) return 0;
        size_t m = 0;
        for (size_t k = 0; k < n; k++) {
            uint32_t l[3];
            int nl = ecm_uc_lower(w->cpa[k], l);
            for (int q = 0; q < nl; q++) w->cpb[m++] = l[q];
        }
        uint32_t *tmp = w->cpa;
        size_t tc = w->cpa_cap;
        w->cpa = w->cpb;
        w->cpa_cap = w->cpb_cap;
        w->cpb = tmp;
        w->cpb_cap = tc;
        n = m;
    } else if (c->lowercase) {
        for (size_t k = 0; k < n; k++)
            if (w->cpa[k] >= 'A' && w->cpa[k] <= 'Z') w->cpa[k] += 32;
    }
    *nc = n;
    return 1;
}

/* Greedy longest-match-first over one word (UTF-8 in wb[0:n], nchars). */
static int wordpiece_word(const ecm_tokenizer *t, work *w, size_t n, size_t nchars,
                          ecm_tok_ids *out, uint8_t type) {
    if (nchars > (size_t)t->cfg.max_input_chars_per_word) return ids_push(out, t->cfg.unk_id, type);
    size_t mark = out->n, start = 0;
    uint8_t *wb = w->wbuf;   /* the word                                    */
    uint8_t *cont = wb + n;  /* "##" + its rest from `start`, for look-ups  */
    cont[0] = '#';
    cont[1] = '#';
    while (start < n) {
        size_t end = n;
        int32_t id = -1;
        if (start > 0) memcpy(cont + 2, wb + start, n - start);
        while (end > start) {
            id = start == 0 ? vmap_find(t, wb, end) : vmap_find(t, cont, end - start + 2);
            if (id >= 0) break;
            end--;
            while (end > start && (wb[end] & 0xC0) == 0x80) end--;
        }
        if (id < 0) {
            out->n = mark;
            return ids_push(out, t->cfg.unk_id, type);
        }
        if (!ids_push(out, id, type)) return 0;
        start = end;
    }
    return 1;
}

static ecm_status encode_wp_segment(const ecm_tokenizer *t, work *w, const uint8_t *s,
                                    size_t b, size_t e, ecm_tok_ids *out, uint8_t type,
                                    int collect_spans) {
    size_t nc;
    if (!bert_normalize(t, w, s, b, e, &nc)) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    /* words: split on whitespace (dropped) and punctuation (kept alone) */
    if (!grow((void **)&w->wbuf, &w->wbuf_cap, 4 * nc + 8 + 4 * nc + 8, 1))
        return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    size_t k = 0;
    while (k < nc) {
        uint32_t cp = w->cpa[k];
        uint16_t f = uflags(cp);
        if (f & ECM_UC_WS) { k++; continue; }
        size_t n = 0, nchars = 0;
        if (is_bert_punct(cp, f)) {
            n = (size_t)ecm_utf8_put(w->wbuf, cp);
            nchars = 1;
            k++;
        } else {
            while (k < nc) {
                uint32_t x = w->cpa[k];
                uint16_t g = uflags(x);
                if ((g & ECM_UC_WS) || is_bert_punct(x, g)) break;
                n += (size_t)ecm_utf8_put(w->wbuf + n, x);
                nchars++;
                k++;
            }
        }
        if (collect_spans) {
            /* tests: hand the normalised word back through out as bytes */
            if (!ids_reserve(out, n)) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
            for (size_t q = 0; q < n; q++) ids_push(out, w->wbuf[q], 0);
            if (!span_push(w, 0, out->n)) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
            continue;
        }
        if (!wordpiece_word(t, w, n, nchars, out, type))
            return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    }
    return ECM_OK;
}

/* ------------------------------------------------------------- encode */

/* Longest added token starting at s[i], or -1. */
static inline int32_t added_at(const ecm_tokenizer *t, const uint8_t *s, size_t n, size_t i,
                               size_t *len) {
    int32_t lo = t->added_start[s[i]], hi = t->added_start[s[i] + 1], best = -1;
    size_t bl = 0;
    for (int32_t k = lo; k < hi; k++) {
        int32_t id = t->added[k];
        size_t m;
        const char *a = tok_str(t, id, &m);
        if (m > bl && m <= n - i && memcmp(a, s + i, m) == 0) {
            best = id;
            bl = m;
        }
    }
    *len = bl;
    return best;
}

/* One sequence without the template: added tokens, then the model. */
static ecm_status encode_sequence(const ecm_tokenizer *t, work *w, const uint8_t *s,
                                  size_t n, ecm_tok_ids *out, uint8_t type) {
    size_t seg = 0, i = 0;
    ecm_status st;
    if (t->n_added) {
        while (i < n) {
            if (t->added_start[s[i]] == t->added_start[s[i] + 1]) { i++; continue; }
            size_t len;
            int32_t id = added_at(t, s, n, i, &len);
            if (id < 0) { i++; continue; }
            if (seg < i) {
                st = t->cfg.model == ECM_TOK_BPE ? encode_bpe_segment(t, w, s, seg, i, out, type)
                                                 : encode_wp_segment(t, w, s, seg, i, out, type, 0);
                if (st) return st;
            }
            if (!ids_push(out, id, type)) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
            i += len;
            seg = i;
        }
    }
    if (seg < n)
        return t->cfg.model == ECM_TOK_BPE ? encode_bpe_segment(t, w, s, seg, n, out, type)
                                           : encode_wp_segment(t, w, s, seg, n, out, type, 0);
    return ECM_OK;
}

static ecm_status encode_with(const ecm_tokenizer *t, work *w, const uint8_t *text, size_t n,
                              const uint8_t *pair, size_t pair_n, int add_special,
                              int max_length, ecm_tok_ids *out) {
    ecm_status st = ECM_OK;
    uint8_t *clean = NULL, *clean_pair = NULL;
    size_t cn, cpn = 0;
    if ((st = ecm_utf8_sanitize(text, n, &clean, &cn))) return st;
    if (clean) text = clean, n = cn;
    if (pair && (st = ecm_utf8_sanitize(pair, pair_n, &clean_pair, &cpn))) goto done;
    if (clean_pair) pair = clean_pair, pair_n = cpn;
    w->a.n = 0;
    w->b.n = 0;
    if ((st = encode_sequence(t, w, text, n, &w->a, 0))) goto done;
    if (pair && (st = encode_sequence(t, w, pair, pair_n, &w->b, 1))) goto done;

    const ecm_tok_config *c = &t->cfg;
    int bos = add_special && c->add_bos && c->bos_id >= 0;
    int eos = add_special && c->add_eos && c->eos_id >= 0;
    int pbos = pair && bos && c->pair_bos;
    size_t n_special = (size_t)(bos + eos + (pair ? pbos + eos : 0));
    size_t na = w->a.n, nb = w->b.n;
    if (max_length > 0) {
        if ((size_t)max_length < n_special) {
            st = ecm_fail(ECM_ERR_VALUE, "max_length %d is less than the %zu special tokens",
                          max_length, n_special);
            goto done;
        }
        size_t room = (size_t)max_length - n_special;
        /* HF's LongestFirst: the shorter sequence keeps up to half the room,
         * the longer one gets the rest (the first counts as shorter on a tie) */
        if (na + nb > room) {
            if (na > nb) {
                nb = nb < room / 2 ? nb : room / 2;
                na = room - nb;
            } else {
                na = na < room / 2 ? na : room / 2;
                nb = room - na;
            }
        }
    }
    if (!ids_reserve(out, na + nb + n_special)) {
        st = ecm_fail(ECM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (bos) ids_push(out, c->bos_id, 0);
    if (na) {
        memcpy(out->ids + out->n, w->a.ids, na * sizeof(int32_t));
        memset(out->type_ids + out->n, 0, na);
        out->n += na;
    }
    if (eos) ids_push(out, c->eos_id, 0);
    if (pair) {
        if (pbos) ids_push(out, c->bos_id, 1);
        if (nb) {
            memcpy(out->ids + out->n, w->b.ids, nb * sizeof(int32_t));
            memset(out->type_ids + out->n, 1, nb);
            out->n += nb;
        }
        if (eos) ids_push(out, c->eos_id, 1);
    }
done:
    free(clean);
    free(clean_pair);
    return st;
}

ecm_status ecm_tokenizer_encode(const ecm_tokenizer *tok, const uint8_t *text, size_t n,
                                const uint8_t *pair, size_t pair_n, int add_special,
                                int max_length, ecm_tok_ids *out) {
    work w;
    memset(&w, 0, sizeof w);
    ecm_status st = encode_with(tok, &w, text, n, pair, pair_n, add_special, max_length, out);
    work_free(&w);
    return st;
}

ecm_status ecm_tokenizer_encode_batch(const ecm_tokenizer *tok, const uint8_t *const *texts,
                                      const size_t *lens, const uint8_t *const *pairs,
                                      const size_t *pair_lens, int64_t n_texts,
                                      int add_special, int max_length, int n_threads,
                                      int64_t *offsets, ecm_tok_ids *out) {
    if (n_texts < 0) return ecm_fail(ECM_ERR_VALUE, "negative batch size");
    ecm_tok_ids *each = calloc((size_t)n_texts + 1, sizeof *each);
    if (!each) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    ecm_status first = ECM_OK;
    int64_t first_at = -1;
    if (n_threads < 1) n_threads = 1;
    if (n_texts < 2 * n_threads) n_threads = n_texts > 1 ? (int)(n_texts / 2) : 1;
#pragma omp parallel num_threads(n_threads)
    {
        work w;
        memset(&w, 0, sizeof w);
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < n_texts; i++) {
            ecm_status st = encode_with(tok, &w, texts[i], lens[i], pairs ? pairs[i] : NULL,
                                        pairs ? pair_lens[i] : 0, add_special, max_length,
                                        &each[i]);
            if (st) {
#pragma omp critical(ecm_tok_batch_err)
                if (first_at < 0 || i < first_at) {
                    first = st;
                    first_at = i;
                }
            }
        }
        work_free(&w);
    }
    ecm_status st = ECM_OK;
    if (first_at >= 0) {
        /* the message was written on a worker thread: reproduce it here */
        work w;
        memset(&w, 0, sizeof w);
        ecm_tok_ids tmp = {0};
        st = encode_with(tok, &w, texts[first_at], lens[first_at],
                         pairs ? pairs[first_at] : NULL, pairs ? pair_lens[first_at] : 0,
                         add_special, max_length, &tmp);
        if (st == ECM_OK) st = ecm_fail(first, "encoding text %lld failed", (long long)first_at);
        ecm_tok_ids_free(&tmp);
        work_free(&w);
        goto done;
    }
    size_t total = 0;
    offsets[0] = 0;
    for (int64_t i = 0; i < n_texts; i++) {
        total += each[i].n;
        offsets[i + 1] = (int64_t)total;
    }
    if (!ids_reserve(out, total + 1)) {
        st = ecm_fail(ECM_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n_texts; i++) {
        if (each[i].n) {
            memcpy(out->ids + out->n, each[i].ids, each[i].n * sizeof(int32_t));
            memcpy(out->type_ids + out->n, each[i].type_ids, each[i].n);
        }
        out->n += each[i].n;
    }
done:
    for (int64_t i = 0; i < n_texts; i++) ecm_tok_ids_free(&each[i]);
    free(each);
    return st;
}

ecm_status ecm_tokenizer_pretokenize(const ecm_tokenizer *tok, const uint8_t *text, size_t n,
                                     uint8_t **buf, size_t *buf_n, int64_t **ends,
                                     size_t *n_pieces) {
    *buf = NULL;
    *ends = NULL;
    *buf_n = *n_pieces = 0;
    work w;
    memset(&w, 0, sizeof w);
    uint8_t *clean = NULL;
    size_t cn;
    ecm_status st = ecm_utf8_sanitize(text, n, &clean, &cn);
    if (st) return st;
    if (clean) text = clean, n = cn;
    ecm_tok_ids bytes = {0};
    if (tok->cfg.model == ECM_TOK_BPE) {
        if (!pre_bpe(tok, &w, text, 0, n)) { st = ecm_fail(ECM_ERR_NOMEM, "out of memory"); goto done; }
        *buf = malloc(n + 1);
        *ends = malloc((w.n_spans + 1) * sizeof(int64_t));
        if (!*buf || !*ends) { st = ecm_fail(ECM_ERR_NOMEM, "out of memory"); goto done; }
        size_t o = 0;
        for (size_t i = 0; i < w.n_spans; i++) {
            size_t a = (size_t)w.spans[2 * i], b = (size_t)w.spans[2 * i + 1];
            memcpy(*buf + o, text + a, b - a);
            o += b - a;
            (*ends)[i] = (int64_t)o;
        }
        *buf_n = o;
        *n_pieces = w.n_spans;
    } else {
        if ((st = encode_wp_segment(tok, &w, text, 0, n, &bytes, 0, 1))) goto done;
        *buf = malloc(bytes.n + 1);
        *ends = malloc((w.n_spans + 1) * sizeof(int64_t));
        if (!*buf || !*ends) { st = ecm_fail(ECM_ERR_NOMEM, "out of memory"); goto done; }
        for (size_t i = 0; i < bytes.n; i++) (*buf)[i] = (uint8_t)bytes.ids[i];
        for (size_t i = 0; i < w.n_spans; i++) (*ends)[i] = w.spans[2 * i + 1];
        *buf_n = bytes.n;
        *n_pieces = w.n_spans;
    }
done:
    if (st) {
        free(*buf);
        free(*ends);
        *buf = NULL;
        *ends = NULL;
    }
    ecm_tok_ids_free(&bytes);
    work_free(&w);
    free(clean);
    return st;
}

/* ------------------------------------------------------------- decode */

/* HF's WordPiece decoder cleanup, applied to each token after its space. */
static size_t wp_cleanup(uint8_t *s, size_t n) {
    static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not",
                                 " 's", " 've", " 're"};
    static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
    for (int r = 0; r < 11; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), o = 0, i = 0;
        while (i < n) {
            if (i + fl <= n && memcmp(s + i, from[r], fl) == 0) {
                memcpy(s + o, to[r], tl); /* tl <= fl: never overruns */
                o += tl;
                i += fl;
            } else {
                s[o++] = s[i++];
            }
        }
        n = o;
    }
    return n;
}

ecm_status ecm_tokenizer_decode(const ecm_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special, uint8_t **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_vocab)
            return ecm_fail(ECM_ERR_VALUE, "ids[%zu] = %d is outside the vocabulary (size %d)",
                            i, ids[i], tok->n_vocab);
        total += (size_t)(tok->text_off[ids[i] + 1] - tok->text_off[ids[i]]) + 1;
    }
    uint8_t *d = malloc(total);
    if (!d) return ecm_fail(ECM_ERR_NOMEM, "out of memory");
    size_t o = 0, k = 0;
    int wp = tok->cfg.model == ECM_TOK_WORDPIECE;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (skip_special && (tok->flags[id] & TOK_SPECIAL)) continue;
        size_t m = 0;
        if (!wp) {
            const uint8_t *b = ecm_tokenizer_token_bytes(tok, id, &m);
            memcpy(d + o, b, m);
            o += m;
            continue;
        }
        const char *s = tok_str(tok, id, &m);
        size_t start = o;
        if (k > 0) {
            if (m >= 2 && s[0] == '#' && s[1] == '#') {
                s += 2;
                m -= 2;
            } else {
                d[o++] = ' ';
            }
        }
        memcpy(d + o, s, m);
        o += m;
        o = start + wp_cleanup(d + start, o - start);
        k++;
    }
    *out = d;
    *out_n = o;
    return ECM_OK;
}
