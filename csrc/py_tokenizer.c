/* py_tokenizer.c: ecomlm._core.Tokenizer, the binding of csrc/tokenizer.c.
 *
 * Takes plain arrays from ecomlm.engine.tokenizer (which reads tokenizer.json,
 * vocab.txt or GGUF metadata), releases the GIL for every encode and decode,
 * and hands ids back as lists (one text) or flat NumPy arrays (a batch). */
#include "py_common.h"
#include "tokenizer.h"

typedef struct {
    PyObject_HEAD
    ecm_tokenizer *tok;
} PyTokenizer;

/* ----------------------------------------------------------- text input */

/* A text argument as UTF-8 bytes. str and bytes-like objects are accepted.
 * A str holding lone surrogates (which UTF-8 cannot carry) has each one
 * replaced by U+FFFD; invalid UTF-8 in bytes is replaced inside the engine.
 * *keep receives a new reference that owns the bytes (or NULL when they
 * live inside `obj`, which the caller keeps alive). */
static int text_arg(PyObject *obj, const char *what, const uint8_t **s, size_t *n,
                    PyObject **keep) {
    *keep = NULL;
    if (PyUnicode_Check(obj)) {
        Py_ssize_t len;
        const char *p = PyUnicode_AsUTF8AndSize(obj, &len);
        if (p) {
            *s = (const uint8_t *)p;
            *n = (size_t)len;
            return 0;
        }
        PyErr_Clear();
        PyObject *b = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
        if (!b) return -1;
        /* each surrogate is ED [A0-BF] [80-BF]: overwrite it with U+FFFD */
        uint8_t *q = (uint8_t *)PyBytes_AS_STRING(b);
        Py_ssize_t m = PyBytes_GET_SIZE(b);
        for (Py_ssize_t i = 0; i + 2 < m; i++)
            if (q[i] == 0xED && q[i + 1] >= 0xA0 && q[i + 1] <= 0xBF) {
                q[i] = 0xEF; q[i + 1] = 0xBF; q[i + 2] = 0xBD;
                i += 2;
            }
        *keep = b;
        *s = q;
        *n = (size_t)m;
        return 0;
    }
    if (PyBytes_Check(obj)) {
        *s = (const uint8_t *)PyBytes_AS_STRING(obj);
        *n = (size_t)PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyByteArray_Check(obj) || PyMemoryView_Check(obj)) {
        PyObject *b = PyBytes_FromObject(obj);
        if (!b) return -1;
        *keep = b;
        *s = (const uint8_t *)PyBytes_AS_STRING(b);
        *n = (size_t)PyBytes_GET_SIZE(b);
        return 0;
    }
    ecm_py_bad_request("%s must be a str or bytes, not %s", what, Py_TYPE(obj)->tp_name);
    return -1;
}

static int int_from(PyObject *dict, const char *key, int dflt, int *out) {
    PyObject *v = PyDict_GetItemString(dict, key); /* borrowed */
    if (!v || v == Py_None) {
        *out = dflt;
        return 0;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        ecm_py_bad_request("tokenizer config '%s' must be an integer", key);
        return -1;
    }
    if (x < INT32_MIN || x > INT32_MAX) {
        ecm_py_bad_request("tokenizer config '%s' is out of range", key);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* A string list from (bytes, int64 offsets). */
static int strlist_arg(PyObject *data, PyObject *offs, const char *what, ecm_strlist *l,
                       PyArrayObject **keep) {
    *keep = NULL;
    memset(l, 0, sizeof *l);
    if (data == Py_None) return 0;
    if (!PyBytes_Check(data)) {
        ecm_py_bad_request("%s must be bytes", what);
        return -1;
    }
    PyArrayObject *a = ecm_py_array(offs, NPY_INT64, 1, 1, what);
    if (!a) return -1;
    npy_intp k = PyArray_DIM(a, 0);
    const int64_t *o = PyArray_DATA(a);
    if (k < 1 || o[k - 1] != (int64_t)PyBytes_GET_SIZE(data) || o[0] != 0) {
        Py_DECREF(a);
        ecm_py_bad_request("%s offsets must run from 0 to the data's length", what);
        return -1;
    }
    l->data = PyBytes_AS_STRING(data);
    l->offsets = o;
    l->n = (int64_t)k - 1;
    *keep = a;
    return 0;
}

/* ------------------------------------------------------------ the type */

static int tok_init(PyTokenizer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"config", "vocab", "vocab_offsets", "merges", "merge_offsets",
                             "added_ids", "added_special", NULL};
    PyObject *cfgd, *vdata, *voffs, *mdata = Py_None, *moffs = Py_None, *aids = Py_None,
             *aspec = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!OO|OOOO", kwlist, &PyDict_Type, &cfgd,
                                     &vdata, &voffs, &mdata, &moffs, &aids, &aspec))
        return -1;
    if (self->tok) {
        ecm_tokenizer_free(self->tok);
        self->tok = NULL;
    }
    ecm_tok_config c;
    ecm_tok_config_default(&c);
    if (int_from(cfgd, "model", c.model, &c.model) || int_from(cfgd, "pre", c.pre, &c.pre) ||
        int_from(cfgd, "split_digits", c.split_digits, &c.split_digits) ||
        int_from(cfgd, "byte_level", c.byte_level, &c.byte_level) ||
        int_from(cfgd, "unk_id", c.unk_id, &c.unk_id) ||
        int_from(cfgd, "clean_text", c.clean_text, &c.clean_text) ||
        int_from(cfgd, "handle_chinese_chars", c.handle_chinese_chars, &c.handle_chinese_chars) ||
        int_from(cfgd, "strip_accents", c.strip_accents, &c.strip_accents) ||
        int_from(cfgd, "lowercase", c.lowercase, &c.lowercase) ||
        int_from(cfgd, "max_input_chars_per_word", c.max_input_chars_per_word,
                 &c.max_input_chars_per_word) ||
        int_from(cfgd, "bos_id", c.bos_id, &c.bos_id) ||
        int_from(cfgd, "eos_id", c.eos_id, &c.eos_id) ||
        int_from(cfgd, "add_bos", c.add_bos, &c.add_bos) ||
        int_from(cfgd, "add_eos", c.add_eos, &c.add_eos) ||
        int_from(cfgd, "pair_bos", c.pair_bos, &c.pair_bos))
        return -1;
    ecm_strlist vocab, merges;
    PyArrayObject *vk = NULL, *mk = NULL, *ai = NULL, *as = NULL;
    int rc = -1;
    if (strlist_arg(vdata, voffs, "vocab", &vocab, &vk) < 0) goto done;
    if (strlist_arg(mdata, moffs, "merges", &merges, &mk) < 0) goto done;
    int n_added = 0;
    if (aids != Py_None) {
        ai = ecm_py_array(aids, NPY_INT32, 1, 1, "added_ids");
        if (!ai) goto done;
        n_added = (int)PyArray_DIM(ai, 0);
        if (aspec != Py_None) {
            as = ecm_py_array(aspec, NPY_UINT8, 1, 1, "added_special");
            if (!as) goto done;
            if (PyArray_DIM(as, 0) != n_added) {
                ecm_py_bad_request("added_special must have as many entries as added_ids");
                goto done;
            }
        }
    }
    ecm_status st;
    ecm_tokenizer *t = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_tokenizer_init(&t, &c, &vocab, mdata == Py_None ? NULL : &merges,
                            ai ? PyArray_DATA(ai) : NULL, as ? PyArray_DATA(as) : NULL, n_added);
    Py_END_ALLOW_THREADS
    if (st) {
        ecm_py_raise(st);
        goto done;
    }
    self->tok = t;
    rc = 0;
done:
    Py_XDECREF(vk);
    Py_XDECREF(mk);
    Py_XDECREF(ai);
    Py_XDECREF(as);
    return rc;
}

static void tok_dealloc(PyTokenizer *self) {
    ecm_tokenizer_free(self->tok);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(PyTokenizer *self) {
    if (self->tok) return 1;
    ecm_py_bad_request("the tokenizer is not initialised");
    return 0;
}

static PyObject *ids_list(const int32_t *ids, size_t n) {
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLong(ids[i]);
        if (!v) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, v);
    }
    return l;
}

static int max_length_arg(PyObject *o, int *out) {
    if (o == Py_None) {
        *out = 0;
        return 0;
    }
    long v = PyLong_AsLong(o);
    if ((v == -1 && PyErr_Occurred()) || v < 1 || v > INT32_MAX) {
        PyErr_Clear();
        ecm_py_bad_request("max_length must be a positive integer or None");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* encode(text, pair=None, add_special_tokens=True, max_length=None, type_ids=False) */
static PyObject *tok_encode(PyTokenizer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"text", "pair", "add_special_tokens", "max_length", "type_ids", NULL};
    PyObject *text, *pair = Py_None, *mlo = Py_None;
    int add_special = 1, want_types = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OpOp", kwlist, &text, &pair, &add_special,
                                     &mlo, &want_types))
        return NULL;
    if (!ready(self)) return NULL;
    int max_length;
    if (max_length_arg(mlo, &max_length) < 0) return NULL;
    const uint8_t *s, *p = NULL;
    size_t n, pn = 0;
    PyObject *keep = NULL, *pkeep = NULL, *res = NULL;
    if (text_arg(text, "text", &s, &n, &keep) < 0) return NULL;
    if (pair != Py_None && text_arg(pair, "pair", &p, &pn, &pkeep) < 0) goto done;
    ecm_tok_ids out = {0};
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_tokenizer_encode(self->tok, s, n, p, pn, add_special, max_length, &out);
    Py_END_ALLOW_THREADS
    if (st) {
        ecm_py_raise(st);
    } else if (!want_types) {
        res = ids_list(out.ids, out.n);
    } else {
        PyObject *ids = ids_list(out.ids, out.n);
        PyObject *types = PyList_New((Py_ssize_t)out.n);
        if (ids && types) {
            for (size_t i = 0; i < out.n; i++)
                PyList_SET_ITEM(types, (Py_ssize_t)i, PyLong_FromLong(out.type_ids[i]));
            res = PyTuple_Pack(2, ids, types);
        }
        Py_XDECREF(ids);
        Py_XDECREF(types);
    }
    ecm_tok_ids_free(&out);
done:
    Py_XDECREF(keep);
    Py_XDECREF(pkeep);
    return res;
}

/* encode_batch(texts, pairs=None, add_special_tokens=True, max_length=None,
 *              n_threads=None) -> (ids int32[total], type_ids uint8[total],
 *              offsets int64[n + 1]) */
static PyObject *tok_encode_batch(PyTokenizer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"texts", "pairs", "add_special_tokens", "max_length", "n_threads", NULL};
    PyObject *texts, *pairs = Py_None, *mlo = Py_None, *nto = Py_None;
    int add_special = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OpOO", kwlist, &texts, &pairs, &add_special,
                                     &mlo, &nto))
        return NULL;
    if (!ready(self)) return NULL;
    int max_length, nt;
    if (max_length_arg(mlo, &max_length) < 0 || ecm_py_threads(nto, &nt) < 0) return NULL;
    if (PyUnicode_Check(texts) || PyBytes_Check(texts))
        return ecm_py_bad_request("texts must be a list of strings, not a single string");
    PyObject *tt = PySequence_Tuple(texts), *pt = NULL, *keeps = NULL, *res = NULL;
    if (!tt) {
        PyErr_Clear();
        return ecm_py_bad_request("texts must be a list of strings");
    }
    Py_ssize_t N = PyTuple_GET_SIZE(tt);
    const uint8_t **sp = NULL, **pp = NULL;
    size_t *sl = NULL, *pl = NULL;
    int64_t *offs = NULL;
    ecm_tok_ids out = {0};
    if (pairs != Py_None) {
        pt = PySequence_Tuple(pairs);
        if (!pt || PyTuple_GET_SIZE(pt) != N) {
            PyErr_Clear();
            ecm_py_bad_request("pairs must be a list with one string per text");
            goto done;
        }
    }
    keeps = PyList_New(0);
    sp = PyMem_Calloc((size_t)N + 1, sizeof *sp);
    sl = PyMem_Calloc((size_t)N + 1, sizeof *sl);
    pp = PyMem_Calloc((size_t)N + 1, sizeof *pp);
    pl = PyMem_Calloc((size_t)N + 1, sizeof *pl);
    offs = PyMem_Calloc((size_t)N + 1, sizeof *offs);
    if (!keeps || !sp || !sl || !pp || !pl || !offs) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < N; i++) {
        PyObject *k = NULL;
        char what[48];
        snprintf(what, sizeof what, "texts[%zd]", i);
        if (text_arg(PyTuple_GET_ITEM(tt, i), what, &sp[i], &sl[i], &k) < 0) goto done;
        if (k) { PyList_Append(keeps, k); Py_DECREF(k); }
        if (pt) {
            snprintf(what, sizeof what, "pairs[%zd]", i);
            if (text_arg(PyTuple_GET_ITEM(pt, i), what, &pp[i], &pl[i], &k) < 0) goto done;
            if (k) { PyList_Append(keeps, k); Py_DECREF(k); }
        }
    }
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_tokenizer_encode_batch(self->tok, sp, sl, pt ? pp : NULL, pt ? pl : NULL, N,
                                    add_special, max_length, nt, offs, &out);
    Py_END_ALLOW_THREADS
    if (st) {
        ecm_py_raise(st);
        goto done;
    }
    npy_intp total = (npy_intp)out.n, n1 = N + 1;
    PyArrayObject *ids = (PyArrayObject *)PyArray_SimpleNew(1, &total, NPY_INT32);
    PyArrayObject *types = (PyArrayObject *)PyArray_SimpleNew(1, &total, NPY_UINT8);
    PyArrayObject *off = (PyArrayObject *)PyArray_SimpleNew(1, &n1, NPY_INT64);
    if (ids && types && off) {
        if (total) {
            memcpy(PyArray_DATA(ids), out.ids, out.n * sizeof(int32_t));
            memcpy(PyArray_DATA(types), out.type_ids, out.n);
        }
        memcpy(PyArray_DATA(off), offs, (size_t)n1 * sizeof(int64_t));
        res = PyTuple_Pack(3, ids, types, off);
    }
    Py_XDECREF(ids);
    Py_XDECREF(types);
    Py_XDECREF(off);
done:
    ecm_tok_ids_free(&out);
    PyMem_Free(sp);
    PyMem_Free(sl);
    PyMem_Free(pp);
    PyMem_Free(pl);
    PyMem_Free(offs);
    Py_XDECREF(keeps);
    Py_XDECREF(pt);
    Py_DECREF(tt);
    return res;
}

/* decode(ids, skip_special_tokens=False) -> bytes (raw: may end mid-character) */
static PyObject *tok_decode(PyTokenizer *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"ids", "skip_special_tokens", NULL};
    PyObject *ido;
    int skip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", kwlist, &ido, &skip)) return NULL;
    if (!ready(self)) return NULL;
    PyArrayObject *a = NULL;
    if (PyList_Check(ido) || PyTuple_Check(ido)) {
        /* range-check before numpy casts: a huge int must not wrap into range */
        Py_ssize_t n = PySequence_Fast_GET_SIZE(ido);
        npy_intp dim = n;
        a = (PyArrayObject *)PyArray_SimpleNew(1, &dim, NPY_INT32);
        if (!a) return NULL;
        int32_t *d = PyArray_DATA(a);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = PySequence_Fast_GET_ITEM(ido, i);
            long x = PyLong_Check(v) ? PyLong_AsLong(v) : -1;
            if (!PyLong_Check(v) || (x == -1 && PyErr_Occurred()) || x < 0 ||
                x >= ecm_tokenizer_vocab_size(self->tok)) {
                PyErr_Clear();
                Py_DECREF(a);
                if (!PyLong_Check(v))
                    return ecm_py_bad_request("ids[%zd] must be an integer", i);
                return ecm_py_bad_request("ids[%zd] is outside the vocabulary (size %d)", i,
                                          ecm_tokenizer_vocab_size(self->tok));
            }
            d[i] = (int32_t)x;
        }
    } else {
        a = ecm_py_array(ido, NPY_INT64, 1, 1, "ids");
        if (!a) return NULL;
        npy_intp n = PyArray_DIM(a, 0);
        const int64_t *src = PyArray_DATA(a);
        PyArrayObject *b = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_INT32);
        if (!b) { Py_DECREF(a); return NULL; }
        int32_t *d = PyArray_DATA(b);
        for (npy_intp i = 0; i < n; i++) {
            if (src[i] < 0 || src[i] >= ecm_tokenizer_vocab_size(self->tok)) {
                Py_DECREF(a);
                Py_DECREF(b);
                return ecm_py_bad_request("ids[%zd] is outside the vocabulary (size %d)",
                                          (Py_ssize_t)i, ecm_tokenizer_vocab_size(self->tok));
            }
            d[i] = (int32_t)src[i];
        }
        Py_DECREF(a);
        a = b;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_tokenizer_decode(self->tok, PyArray_DATA(a), (size_t)PyArray_DIM(a, 0), skip,
                              &buf, &n);
    Py_END_ALLOW_THREADS
    Py_DECREF(a);
    if (st) return ecm_py_raise(st);
    PyObject *r = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)n);
    free(buf);
    return r;
}

static PyObject *tok_token_bytes(PyTokenizer *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    size_t n;
    const uint8_t *b = ecm_tokenizer_token_bytes(self->tok, (int32_t)id, &n);
    if (id < INT32_MIN || id > INT32_MAX || !b)
        return ecm_py_bad_request("token id %ld is outside the vocabulary (size %d)", id,
                                  ecm_tokenizer_vocab_size(self->tok));
    return PyBytes_FromStringAndSize((const char *)b, (Py_ssize_t)n);
}

static PyObject *tok_token_to_id(PyTokenizer *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s) {
        PyErr_Clear();
        return ecm_py_bad_request("token must be a str");
    }
    int32_t id = ecm_tokenizer_token_to_id(self->tok, s, (size_t)n);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *tok_id_to_token(PyTokenizer *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return ecm_py_bad_request("id must be an integer");
    }
    size_t n;
    const char *s = (id < INT32_MIN || id > INT32_MAX)
                        ? NULL : ecm_tokenizer_id_to_token(self->tok, (int32_t)id, &n);
    if (!s) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "replace");
}

static PyObject *tok_is_special(PyTokenizer *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    return PyBool_FromLong(id >= 0 && id <= INT32_MAX &&
                           ecm_tokenizer_is_special(self->tok, (int32_t)id));
}

/* pretokenize(text) -> list[str]: the pre-tokeniser's pieces (tests). */
static PyObject *tok_pretokenize(PyTokenizer *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    const uint8_t *s;
    size_t n;
    PyObject *keep;
    if (text_arg(arg, "text", &s, &n, &keep) < 0) return NULL;
    uint8_t *buf;
    size_t bn, np;
    int64_t *ends;
    ecm_status st = ecm_tokenizer_pretokenize(self->tok, s, n, &buf, &bn, &ends, &np);
    Py_XDECREF(keep);
    if (st) return ecm_py_raise(st);
    PyObject *l = PyList_New((Py_ssize_t)np);
    int64_t prev = 0;
    for (size_t i = 0; l && i < np; i++) {
        PyObject *v = PyUnicode_DecodeUTF8((const char *)buf + prev, (Py_ssize_t)(ends[i] - prev),
                                           "replace");
        if (!v) { Py_CLEAR(l); break; }
        PyList_SET_ITEM(l, (Py_ssize_t)i, v);
        prev = ends[i];
    }
    free(buf);
    free(ends);
    return l;
}

static PyObject *tok_vocab_size(PyTokenizer *self, void *closure) {
    (void)closure;
    if (!ready(self)) return NULL;
    return PyLong_FromLong(ecm_tokenizer_vocab_size(self->tok));
}

static PyMethodDef tok_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))tok_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, pair=None, add_special_tokens=True, max_length=None, type_ids=False)"},
    {"encode_batch", (PyCFunction)(void (*)(void))tok_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "encode_batch(texts, pairs=None, add_special_tokens=True, max_length=None, n_threads=None)"
     " -> (ids, type_ids, offsets)"},
    {"decode", (PyCFunction)(void (*)(void))tok_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(ids, skip_special_tokens=False) -> bytes"},
    {"token_bytes", (PyCFunction)tok_token_bytes, METH_O, "Bytes a token decodes to."},
    {"token_to_id", (PyCFunction)tok_token_to_id, METH_O, "Id of a token string, or None."},
    {"id_to_token", (PyCFunction)tok_id_to_token, METH_O, "Token string of an id, or None."},
    {"is_special", (PyCFunction)tok_is_special, METH_O, "Whether id is a special added token."},
    {"pretokenize", (PyCFunction)tok_pretokenize, METH_O, "Pre-tokeniser pieces (for tests)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tok_getset[] = {
    {"vocab_size", (getter)tok_vocab_size, NULL, "Number of ids.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PyTokenizerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.Tokenizer",
    .tp_basicsize = sizeof(PyTokenizer),
    .tp_dealloc = (destructor)tok_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C tokenizer (use ecomlm.engine.tokenizer.Tokenizer).",
    .tp_methods = tok_methods,
    .tp_getset = tok_getset,
    .tp_init = (initproc)tok_init,
    .tp_new = PyType_GenericNew,
};

int ecm_py_tokenizer_init(PyObject *module) {
    if (PyType_Ready(&PyTokenizerType) < 0) return -1;
    Py_INCREF(&PyTokenizerType);
    if (PyModule_AddObject(module, "Tokenizer", (PyObject *)&PyTokenizerType) < 0) {
        Py_DECREF(&PyTokenizerType);
        return -1;
    }
    return 0;
}
