/* tokenizer.h: byte-level BPE (GPT-2, Llama-3, SmolLM2) and WordPiece (BERT)
 * tokenizers, token for token identical to Hugging Face `tokenizers`.
 *
 * The Python layer parses tokenizer.json / vocab.txt / GGUF metadata and
 * hands the engine plain arrays: the vocabulary (id -> token string as the
 * file spells it), the BPE merges (pairs of token strings), the added tokens
 * and a config. Everything is validated here; nothing the caller passes is
 * trusted.
 *
 * Pipeline of encode(text):
 *   invalid UTF-8 -> U+FFFD (each maximal ill-formed subpart, as Python's
 *   bytes.decode("utf-8", "replace")), split out added tokens (longest
 *   match, leftmost first, on the raw text), then per remaining segment:
 *   BPE:       pre-tokenise (family regex, optional digit isolation), map
 *              each piece's bytes to symbols, merge by rank.
 *   WordPiece: BERT normaliser (clean text, CJK spacing, NFD + strip Mn,
 *              lower-case), split on whitespace and punctuation, greedy
 *              longest-match-first with the "##" continuation prefix.
 *   then the template: [bos] A [eos]  /  [bos] A [eos] B [eos].
 *
 * A tokenizer is read-only after init: any number of threads may encode and
 * decode with it at once. */
#ifndef ECM_TOKENIZER_H
#define ECM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "ecm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ECM_TOK_BPE = 1,
    ECM_TOK_WORDPIECE = 2,
} ecm_tok_model;

typedef enum {
    ECM_PRE_NONE = 0,   /* the whole segment is one piece                     */
    ECM_PRE_GPT2 = 1,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
                           ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+                    */
    ECM_PRE_LLAMA3 = 2, /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
                           \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
                           \s+(?!\S)|\s+                                      */
    ECM_PRE_QWEN2 = 3,  /* Llama-3's with \p{N} (one digit a piece)           */
    ECM_PRE_BERT = 4,   /* split on whitespace, isolate punctuation           */
} ecm_tok_pre;

typedef struct {
    int model;          /* ecm_tok_model                                     */
    int pre;            /* ecm_tok_pre                                       */
    int split_digits;   /* isolate each \p{N} before the regex (SmolLM2)     */
    int byte_level;     /* BPE over bytes; vocab in GPT-2 byte-to-unicode form */
    int unk_id;         /* -1: none (BPE drops unknown symbols)              */
    /* WordPiece / BERT normaliser */
    int clean_text;
    int handle_chinese_chars;
    int strip_accents;
    int lowercase;
    int max_input_chars_per_word; /* longer words become unk (HF: 100)      */
    /* template, applied when encode's add_special is set */
    int bos_id, eos_id; /* -1: none                                          */
    int add_bos, add_eos;
    int pair_bos;       /* also put bos before the second sequence           */
} ecm_tok_config;

void ecm_tok_config_default(ecm_tok_config *cfg);

/* n strings; string i is data[offsets[i] : offsets[i+1]]. */
typedef struct {
    const char *data;
    const int64_t *offsets; /* (n + 1) */
    int64_t n;
} ecm_strlist;

typedef struct ecm_tokenizer ecm_tokenizer;

/* vocab: id -> token as spelled in the file (empty string: no token has this
 * id). merges: 2 * n_merges strings, left then right of each merge, rank =
 * index (BPE only; a repeated pair keeps its last rank, as HF does).
 * added_ids / added_special: tokens matched verbatim in the raw text before
 * anything else (special ones are dropped by decode(skip_special=1)). */
ecm_status ecm_tokenizer_init(ecm_tokenizer **out, const ecm_tok_config *cfg,
                              const ecm_strlist *vocab, const ecm_strlist *merges,
                              const int32_t *added_ids, const uint8_t *added_special,
                              int n_added);
void ecm_tokenizer_free(ecm_tokenizer *tok);

int ecm_tokenizer_vocab_size(const ecm_tokenizer *tok);
/* Id of a token spelled as in the file, or -1. */
int32_t ecm_tokenizer_token_to_id(const ecm_tokenizer *tok, const char *s, size_t n);
/* The token as spelled in the file (NULL for an id out of range / a hole). */
const char *ecm_tokenizer_id_to_token(const ecm_tokenizer *tok, int32_t id, size_t *n);
/* 1 if id is an added token marked special. */
int ecm_tokenizer_is_special(const ecm_tokenizer *tok, int32_t id);

/* Growable token buffer: ids with their token-type ids (0 first sequence,
 * 1 second). */
typedef struct {
    int32_t *ids;
    uint8_t *type_ids;
    size_t n, cap;
} ecm_tok_ids;

void ecm_tok_ids_free(ecm_tok_ids *v);

/* Append the tokens of text[n] (any bytes) to out. pair may be NULL. With
 * max_length > 0 the result (specials included) is truncated to it, longest
 * sequence first, from the right. */
ecm_status ecm_tokenizer_encode(const ecm_tokenizer *tok, const uint8_t *text, size_t n,
                                const uint8_t *pair, size_t pair_n, int add_special,
                                int max_length, ecm_tok_ids *out);

/* Encode n_texts texts (pairs may be NULL) on n_threads OpenMP threads.
 * Output: offsets[n_texts + 1] (int64, caller-allocated), ids / type_ids
 * concatenated in *out (owned by the caller, free with ecm_tok_ids_free). */
ecm_status ecm_tokenizer_encode_batch(const ecm_tokenizer *tok, const uint8_t *const *texts,
                                      const size_t *lens, const uint8_t *const *pairs,
                                      const size_t *pair_lens, int64_t n_texts,
                                      int add_special, int max_length, int n_threads,
                                      int64_t *offsets, ecm_tok_ids *out);

/* Pieces of the pre-tokeniser for a text segment (no added-token split, no
 * normalisation for BPE; BERT-normalised for WordPiece), for tests: appends
 * the UTF-8 of each piece to *buf and its end offset to *ends. */
ecm_status ecm_tokenizer_pretokenize(const ecm_tokenizer *tok, const uint8_t *text, size_t n,
                                     uint8_t **buf, size_t *buf_n, int64_t **ends,
                                     size_t *n_pieces);

/* Decode ids to text bytes. Byte-level BPE gives the raw bytes (possibly
 * invalid UTF-8 when a character is split between tokens: the caller decides
 * how to show it); WordPiece follows HF's decoder (join with spaces, glue
 * "##" pieces, clean up spaces before punctuation). An id out of range is an
 * ECM_ERR_VALUE. Result in *out (ecm_free it), length *out_n. */
ecm_status ecm_tokenizer_decode(const ecm_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special, uint8_t **out, size_t *out_n);

/* The bytes one token contributes to a byte-level decode (its text as is for
 * other models); NULL when id is out of range. */
const uint8_t *ecm_tokenizer_token_bytes(const ecm_tokenizer *tok, int32_t id, size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* ECM_TOKENIZER_H */
