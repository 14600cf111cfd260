/* fuzz_tokenizer.c: libFuzzer harness for csrc/tokenizer.c and its loader.
 *
 * Input layout: byte 0 picks the configuration (model, pre-tokeniser, digit
 * isolation, normaliser flags, template, and whether to use a built-in
 * vocabulary). With a built-in vocabulary the rest of the input is the text;
 * otherwise the rest is split into sections by lines equal to "%%":
 *   vocab lines  %%  merge lines ("a b")  %%  added-token lines (id mod V)  %%  text
 * so both the loader's validation and the encoder see hostile input.
 * Every path is exercised: encode (with and without a pair, truncation),
 * encode_batch, decode of the result and of arbitrary ids, pretokenize.
 *
 * Build and run: see fuzz/README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* GPT-2 byte-to-unicode spelling of byte b, UTF-8, into out (<= 2 bytes). */
static int b2u_utf8(int b, char *out) {
    int k = 0, cp = -1;
    for (int x = 0; x < 256; x++) {
        int keep = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174;
        int c = keep ? x : 256 + k++;
        if (x == b) { cp = c; break; }
    }
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct {
    char *data;
    int64_t *offs;
    int64_t n, cap, bytes, bcap;
} list;

static void list_add(list *l, const char *s, size_t n) {
    if (l->n + 2 > l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->offs = realloc(l->offs, (size_t)l->cap * sizeof(int64_t));
    }
    if (l->bytes + (int64_t)n + 1 > l->bcap) {
        while (l->bytes + (int64_t)n + 1 > l->bcap) l->bcap = l->bcap ? 2 * l->bcap : 1024;
        l->data = realloc(l->data, (size_t)l->bcap);
    }
    if (l->n == 0) l->offs[0] = 0;
    memcpy(l->data + l->bytes, s, n);
    l->bytes += (int64_t)n;
    l->n++;
    l->offs[l->n] = l->bytes;
}

static void list_free(list *l) {
    free(l->data);
    free(l->offs);
}

static const char *BPE_MERGES[] = {
    "Ġ t", "h e", "i n", "Ġt he", "e r", "Ġ a", "o n", "r e", "Ġ s", "a t", "e n", "o r",
    "Ġ w", "e s", "i s", "Ġ c", "Ġ 1", "1 2", "Ġ Ġ", "ĠĠ ĠĠ", "Ċ Ċ", "ä ½", "ä½ ł", "' s",
    "Ã ©", "ð Ł", "ðŁ ĺ", "ðŁĺ Ģ", "i ng", "Ġ in", "Ġa n", "Ġan d",
};

static const char *WP_VOCAB[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "un", "##aff", "##able", "hello",
    "world", "##ing", "##s", "a", "b", "c", "e", "##a", "##b", "##c", "##e", ",", ".", "!",
    "'", "1", "##1", "2", "##2", "你", "好", "é", "##é", "x", "##x", "i", "##̇",
};

static ecm_tokenizer *builtin(int model, ecm_tok_config *c) {
    list v = {0}, m = {0};
    int32_t added[2];
    uint8_t spec[2] = {1, 0};
    if (model == ECM_TOK_BPE) {
        char buf[64];
        for (int b = 0; b < 256; b++) list_add(&v, buf, (size_t)b2u_utf8(b, buf));
        for (size_t i = 0; i < sizeof BPE_MERGES / sizeof *BPE_MERGES; i++) {
            const char *s = BPE_MERGES[i], *sp = strchr(s, ' ');
            list_add(&m, s, (size_t)(sp - s));
            list_add(&m, sp + 1, strlen(sp + 1));
            size_t a = (size_t)(sp - s);
            memcpy(buf, s, a);
            strcpy(buf + a, sp + 1);
            list_add(&v, buf, strlen(buf));
        }
        added[0] = (int32_t)v.n;
        list_add(&v, "<|im_start|>", 12);
        added[1] = (int32_t)v.n;
        list_add(&v, "<x>", 3);
        c->bos_id = added[0];
        c->eos_id = added[0];
    } else {
        for (size_t i = 0; i < sizeof WP_VOCAB / sizeof *WP_VOCAB; i++)
            list_add(&v, WP_VOCAB[i], strlen(WP_VOCAB[i]));
        added[0] = 2;
        added[1] = 4;
        c->unk_id = 1;
        c->bos_id = 2;
        c->eos_id = 3;
    }
    ecm_strlist vl = {v.data, v.offs, v.n}, ml = {m.data, m.offs, m.n};
    ecm_tokenizer *t = NULL;
    ecm_tokenizer_init(&t, c, &vl, model == ECM_TOK_BPE ? &ml : NULL, added, spec, 2);
    list_free(&v);
    list_free(&m);
    return t;
}

static void exercise(const ecm_tokenizer *t, const uint8_t *text, size_t n, int max_length) {
    ecm_tok_ids ids = {0};
    if (ecm_tokenizer_encode(t, text, n, NULL, 0, 1, 0, &ids) == ECM_OK) {
        uint8_t *out;
        size_t on;
        if (ecm_tokenizer_decode(t, ids.ids, ids.n, 0, &out, &on) == ECM_OK) free(out);
        if (ecm_tokenizer_decode(t, ids.ids, ids.n, 1, &out, &on) == ECM_OK) free(out);
    }
    ecm_tok_ids_free(&ids);
    size_t half = n / 2;
    if (ecm_tokenizer_encode(t, text, half, text + half, n - half, 1, max_length, &ids) == ECM_OK)
        ecm_tok_ids_free(&ids);
    ecm_tok_ids_free(&ids);
    const uint8_t *texts[3] = {text, text + half, text};
    size_t lens[3] = {half, n - half, n};
    int64_t offs[4];
    if (ecm_tokenizer_encode_batch(t, texts, lens, NULL, NULL, 3, 0, 0, 1, offs, &ids) == ECM_OK)
        ecm_tok_ids_free(&ids);
    ecm_tok_ids_free(&ids);
    /* arbitrary ids, in and out of range */
    int32_t raw[16];
    size_t nr = n / 4 < 16 ? n / 4 : 16;
    memcpy(raw, text, nr * 4);
    uint8_t *out;
    size_t on;
    if (ecm_tokenizer_decode(t, raw, nr, 0, &out, &on) == ECM_OK) free(out);
    for (size_t i = 0; i < nr; i++) raw[i] = (int32_t)((uint32_t)raw[i] % (uint32_t)ecm_tokenizer_vocab_size(t));
    if (ecm_tokenizer_decode(t, raw, nr, 1, &out, &on) == ECM_OK) free(out);
    uint8_t *buf;
    int64_t *ends;
    size_t bn, np;
    if (ecm_tokenizer_pretokenize(t, text, n, &buf, &bn, &ends, &np) == ECM_OK) {
        free(buf);
        free(ends);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t sel = data[0], sel2 = data[1];
    data += 2;
    size -= 2;
    ecm_tok_config c;
    ecm_tok_config_default(&c);
    c.model = (sel & 1) ? ECM_TOK_WORDPIECE : ECM_TOK_BPE;
    c.pre = c.model == ECM_TOK_WORDPIECE ? ECM_PRE_BERT : (sel >> 1) % 4;
    c.split_digits = (sel >> 3) & 1;
    c.byte_level = c.model == ECM_TOK_BPE ? !((sel2 >> 6) & 1) : 0;
    c.clean_text = (sel >> 4) & 1;
    c.handle_chinese_chars = (sel >> 5) & 1;
    c.strip_accents = (sel2 >> 0) & 1;
    c.lowercase = (sel2 >> 1) & 1;
    c.add_bos = (sel2 >> 2) & 1;
    c.add_eos = (sel2 >> 3) & 1;
    c.pair_bos = (sel2 >> 4) & 1;
    c.max_input_chars_per_word = 1 + (sel2 >> 5) * 7;
    int max_length = (sel >> 6) ? (int)(sel2 % 24) : 0;
    if (sel & 0x80 || size < 4) {
        ecm_tokenizer *t = builtin(c.model, &c);
        if (t) {
            exercise(t, data, size, max_length);
            ecm_tokenizer_free(t);
        }
        return 0;
    }
    /* sections separated by "%%" lines */
    list sec[3] = {{0}, {0}, {0}};
    int s = 0;
    size_t i = 0;
    while (i < size && s < 3) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size;
        if (e - i == 2 && data[i] == '%' && data[i + 1] == '%') {
            s++;
        } else if (s == 1) {
            const uint8_t *sp = memchr(data + i, ' ', e - i);
            size_t a = sp ? (size_t)(sp - (data + i)) : e - i;
            list_add(&sec[1], (const char *)data + i, a);
            list_add(&sec[1], sp ? (const char *)sp + 1 : "", sp ? e - i - a - 1 : 0);
        } else {
            list_add(&sec[s], (const char *)data + i, e - i);
        }
        i = e + 1;
    }
    int32_t added[64];
    uint8_t spec[64];
    int n_added = 0;
    for (int64_t k = 0; k < sec[2].n && n_added < 64; k++) {
        added[n_added] = (int32_t)((sec[2].offs[k + 1] - sec[2].offs[k]) * 7 + k);
        if (sec[0].n) added[n_added] %= (int32_t)sec[0].n;
        spec[n_added] = (uint8_t)(k & 1);
        n_added++;
    }
    c.unk_id = sec[0].n ? (int)((sel2 * 3) % sec[0].n) : -1;
    c.bos_id = c.eos_id = sec[0].n ? (int)(sel2 % sec[0].n) : -1;
    ecm_strlist vl = {sec[0].data, sec[0].offs, sec[0].n};
    ecm_strlist ml = {sec[1].data, sec[1].offs, sec[1].n};
    ecm_tokenizer *t = NULL;
    if (ecm_tokenizer_init(&t, &c, &vl, &ml, added, spec, n_added) == ECM_OK) {
        const uint8_t *text = i < size ? data + i : data;
        exercise(t, text, i < size ? size - i : 0, max_length);
        ecm_tokenizer_free(t);
    }
    for (int k = 0; k < 3; k++) list_free(&sec[k]);
    return 0;
}
