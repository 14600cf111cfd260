/* py_model.c: _core.Model (weights of one network, read-only once loaded,
 * shareable by threads) and _core.KVCache (per-sequence decoding state). */
#include "py_common.h"
#include "model.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    PyObject_HEAD
    ecm_model m;
    int ready;     /* all weights set */
    int in_flight; /* computations running with the GIL released */
} ModelObject;

typedef struct {
    PyObject_HEAD
    ecm_kvcache c;
    ModelObject *model; /* strong reference: the cache is shaped for it */
    int busy;           /* a forward is running on it (another thread) */
} KVCacheObject;

static PyTypeObject ModelType, KVCacheType;

/* ------------------------------------------------------------------ config */

int ecm_py_dict_int(PyObject *d, const char *key, int *out, int required, int dflt) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) {
        if (required) {
            ecm_py_bad_request("config: missing required field '%s'", key);
            return -1;
        }
        *out = dflt;
        return 0;
    }
    if (PyBool_Check(v)) {
        *out = v == Py_True;
        return 0;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        ecm_py_bad_request("config: field '%s' must be an integer", key);
        return -1;
    }
    if (x < -2147483647LL || x > 2147483647LL) {
        ecm_py_bad_request("config: field '%s' = %lld is out of range", key, x);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int ecm_py_dict_float(PyObject *d, const char *key, float *out, float dflt) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (!v || v == Py_None) {
        *out = dflt;
        return 0;
    }
    double x = PyFloat_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        ecm_py_bad_request("config: field '%s' must be a number", key);
        return -1;
    }
    *out = (float)x;
    return 0;
}

int ecm_py_parse_config(PyObject *d, ecm_config *c) {
    memset(c, 0, sizeof *c);
    if (!PyDict_Check(d)) {
        ecm_py_bad_request("config must be a dict");
        return -1;
    }
    if (ecm_py_dict_int(d, "arch", &c->arch, 1, 0) || ecm_py_dict_int(d, "n_layer", &c->n_layer, 1, 0) ||
        ecm_py_dict_int(d, "d_model", &c->d_model, 1, 0) || ecm_py_dict_int(d, "n_head", &c->n_head, 1, 0) ||
        ecm_py_dict_int(d, "n_kv_head", &c->n_kv_head, 0, c->n_head) || ecm_py_dict_int(d, "d_ff", &c->d_ff, 1, 0) ||
        ecm_py_dict_int(d, "vocab", &c->vocab, 1, 0) || ecm_py_dict_int(d, "max_pos", &c->max_pos, 1, 0) ||
        ecm_py_dict_int(d, "type_vocab", &c->type_vocab, 0, 2) || ecm_py_dict_int(d, "attn_bias", &c->attn_bias, 0, 0) ||
        ecm_py_dict_int(d, "proj_bias", &c->proj_bias, 0, 0) || ecm_py_dict_int(d, "mlp_bias", &c->mlp_bias, 0, 0) ||
        ecm_py_dict_int(d, "rope_scaling", &c->rope.scaling, 0, 0) ||
        ecm_py_dict_int(d, "rope_interleaved", &c->rope_interleaved, 0, 0) ||
        ecm_py_dict_int(d, "rope_original_max_pos", &c->rope.original_max_pos, 0, 0) ||
        ecm_py_dict_float(d, "norm_eps", &c->norm_eps, 1e-5f) || ecm_py_dict_float(d, "rope_theta", &c->rope.theta, 10000.0f) ||
        ecm_py_dict_float(d, "rope_factor", &c->rope.factor, 1.0f) ||
        ecm_py_dict_float(d, "rope_low_freq_factor", &c->rope.low_freq_factor, 1.0f) ||
        ecm_py_dict_float(d, "rope_high_freq_factor", &c->rope.high_freq_factor, 4.0f))
        return -1;
    if (c->n_head > 0 && c->d_model > 0 && !PyDict_GetItemString(d, "head_dim")) {
        if (c->d_model % c->n_head) {
            ecm_py_bad_request("config: d_model (%d) is not a multiple of n_head (%d)", c->d_model, c->n_head);
            return -1;
        }
        c->head_dim = c->d_model / c->n_head;
    } else if (ecm_py_dict_int(d, "head_dim", &c->head_dim, 0, 0)) { /* 0: rejected by the config check */
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------- Model */

static int model_init(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"config", "n_threads", "weight_types", NULL};
    PyObject *cfgobj, *nto = Py_None, *typesobj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO", kwlist, &cfgobj, &nto, &typesobj)) return -1;
    if (self->m.slab) { /* __init__ twice */
        ecm_model_free(&self->m);
        self->ready = 0;
    }
    ecm_config cfg;
    int nt;
    if (ecm_py_parse_config(cfgobj, &cfg) < 0 || ecm_py_threads(nto, &nt) < 0) return -1;
    /* weight_types: {slot name: GGML type id} for weights kept quantised */
    ecm_weight_type *types = NULL;
    Py_ssize_t n_types = 0;
    if (typesobj != Py_None) {
        if (!PyDict_Check(typesobj)) {
            ecm_py_bad_request("weight_types must be a dict of slot name to GGML type id");
            return -1;
        }
        n_types = PyDict_Size(typesobj);
        types = calloc((size_t)(n_types ? n_types : 1), sizeof *types);
        if (!types) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t pos = 0, i = 0;
        PyObject *k, *v;
        while (PyDict_Next(typesobj, &pos, &k, &v)) {
            const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
            long qt = PyLong_Check(v) ? PyLong_AsLong(v) : -1;
            if (!name || qt < 0 || qt > 1000) {
                PyErr_Clear();
                free(types);
                ecm_py_bad_request("weight_types must map slot names to GGML type ids");
                return -1;
            }
            types[i].name = name; /* borrowed from the dict, alive for this call */
            types[i].qtype = (int)qt;
            i++;
        }
    }
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_model_init(&self->m, &cfg, types, (int)n_types);
    Py_END_ALLOW_THREADS
    free(types);
    if (st != ECM_OK) {
        ecm_py_raise(st);
        return -1;
    }
    self->m.n_threads = nt;
    return 0;
}

static void model_dealloc(ModelObject *self) {
    ecm_model_free(&self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int model_check(ModelObject *self, int need_ready) {
    if (!self->m.slab) {
        ecm_py_bad_request("the model is closed");
        return 0;
    }
    if (need_ready && !self->ready) {
        ecm_py_bad_request("the model's weights are not all loaded (call finalize())");
        return 0;
    }
    return 1;
}

static PyObject *model_slots(ModelObject *self, PyObject *args) {
    (void)args;
    if (!model_check(self, 0)) return NULL;
    PyObject *list = PyList_New(self->m.n_slots);
    if (!list) return NULL;
    for (int i = 0; i < self->m.n_slots; i++) {
        const ecm_slot *s = &self->m.slots[i];
        PyObject *item = s->n_dims == 2 ? Py_BuildValue("(s(ii))", s->name, s->shape[0], s->shape[1])
                                        : Py_BuildValue("(s(i))", s->name, s->shape[0]);
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

/* set_tensor(name, array, transposed=False, bf16=False): array float32,
 * float16, float64, or uint16 holding bfloat16 bits when bf16 is true. */
static PyObject *model_set_tensor(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"name", "array", "transposed", "bf16", "qtype", NULL};
    const char *name;
    PyObject *arrobj;
    int transposed = 0, bf16 = 0, qtype = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|ppi", kwlist, &name, &arrobj, &transposed, &bf16, &qtype))
        return NULL;
    if (!model_check(self, 0)) return NULL;
    if (self->ready) return ecm_py_bad_request("weights are read-only once the model is finalized");
    int i = ecm_model_find_slot(&self->m, name);
    if (i < 0) {
        ecm_fail(ECM_ERR_NOT_FOUND, "the model has no weight named '%s'", name);
        return ecm_py_raise(ECM_ERR_NOT_FOUND);
    }
    if (!PyArray_Check(arrobj)) return ecm_py_bad_request("weight '%s' must be a NumPy array", name);
    if (qtype >= 0) { /* raw GGML rows as uint8 */
        PyArrayObject *raw = (PyArrayObject *)PyArray_FromAny(arrobj, PyArray_DescrFromType(NPY_UINT8), 0, 0,
                                                              NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED, NULL);
        if (!raw) return NULL;
        ecm_status st;
        Py_BEGIN_ALLOW_THREADS
        st = ecm_model_set_tensor_quant(&self->m, i, PyArray_DATA(raw), (size_t)PyArray_NBYTES(raw), qtype);
        Py_END_ALLOW_THREADS
        Py_DECREF(raw);
        if (st != ECM_OK) return ecm_py_raise(st);
        Py_RETURN_NONE;
    }
    PyArrayObject *in = (PyArrayObject *)arrobj;
    ecm_dtype dt;
    switch (PyArray_TYPE(in)) {
    case NPY_FLOAT32: dt = ECM_DTYPE_F32; break;
    case NPY_FLOAT16: dt = ECM_DTYPE_F16; break;
    case NPY_FLOAT64: dt = ECM_DTYPE_F64; break;
    case NPY_UINT16:
        if (bf16) {
            dt = ECM_DTYPE_BF16;
            break;
        }
        /* fall through */
    default: return ecm_py_bad_request("weight '%s' has unsupported dtype (float32, float16, bfloat16, float64)", name);
    }
    const ecm_slot *s = &self->m.slots[i];
    int nd = PyArray_NDIM(in);
    npy_intp d0 = nd >= 1 ? PyArray_DIM(in, 0) : -1, d1 = nd >= 2 ? PyArray_DIM(in, 1) : -1;
    int ok;
    if (s->n_dims == 1) ok = nd == 1 && d0 == s->shape[0];
    else if (transposed) ok = nd == 2 && d0 == s->shape[1] && d1 == s->shape[0];
    else ok = nd == 2 && d0 == s->shape[0] && d1 == s->shape[1];
    if (!ok) {
        if (s->n_dims == 1)
            return ecm_py_bad_request("weight '%s' must have shape (%d,), got %d dims (%ld, ...)", name, s->shape[0], nd,
                                      (long)d0);
        return ecm_py_bad_request("weight '%s' must have shape (%d, %d)%s, got %d dims (%ld, %ld)", name,
                                  transposed ? s->shape[1] : s->shape[0], transposed ? s->shape[0] : s->shape[1],
                                  transposed ? " (transposed)" : "", nd, (long)d0, (long)d1);
    }
    PyArrayObject *arr = (PyArrayObject *)PyArray_FromAny(arrobj, NULL, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED,
                                                          NULL);
    if (!arr) return NULL;
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    omp_set_num_threads(self->m.n_threads);
#endif
    st = ecm_model_set_tensor(&self->m, i, PyArray_DATA(arr), dt, transposed);
    Py_END_ALLOW_THREADS
    Py_DECREF(arr);
    if (st != ECM_OK) return ecm_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *model_finalize(ModelObject *self, PyObject *args) {
    (void)args;
    if (!model_check(self, 0)) return NULL;
    ecm_status st = ecm_model_check_complete(&self->m);
    if (st != ECM_OK) return ecm_py_raise(st);
    self->ready = 1;
    Py_RETURN_NONE;
}

static PyObject *model_close(ModelObject *self, PyObject *args) {
    (void)args;
    if (self->in_flight) return ecm_py_bad_request("cannot close the model while %d call(s) use it", self->in_flight);
    ecm_model_free(&self->m);
    self->ready = 0;
    Py_RETURN_NONE;
}

/* token ids: any integer sequence -> int32 array, values checked in C. */
static PyArrayObject *ids_array(PyObject *obj, int min_nd, int max_nd, const char *what) {
    PyArrayObject *probe = (PyArrayObject *)PyArray_FromAny(obj, NULL, 0, 0, 0, NULL);
    if (!probe) {
        PyErr_Clear();
        ecm_py_bad_request("%s must be a sequence of integers", what);
        return NULL;
    }
    int kind = PyArray_DESCR(probe)->kind;
    if (PyArray_SIZE(probe) > 0 && kind != 'i' && kind != 'u' && kind != 'b') {
        Py_DECREF(probe);
        ecm_py_bad_request("%s must contain integers", what);
        return NULL;
    }
    /* Values beyond int32 would wrap when cast: reject them by range first. */
    if (PyArray_SIZE(probe) > 0 && kind != 'b') {
        PyObject *mn = PyArray_Min(probe, NPY_RAVEL_AXIS, NULL), *mx = PyArray_Max(probe, NPY_RAVEL_AXIS, NULL);
        long long lo = mn ? PyLong_AsLongLong(mn) : 0, hi = mx ? PyLong_AsLongLong(mx) : 0;
        Py_XDECREF(mn);
        Py_XDECREF(mx);
        if (PyErr_Occurred() || lo < INT32_MIN || hi > INT32_MAX) {
            PyErr_Clear();
            Py_DECREF(probe);
            ecm_py_bad_request("%s holds a value outside the int32 range", what);
            return NULL;
        }
    }
    Py_DECREF(probe);
    PyArrayObject *arr = ecm_py_array(obj, NPY_INT32, min_nd, max_nd, what);
    return arr;
}

static PyObject *model_forward(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"token_ids", "cache", "all_logits", NULL};
    PyObject *idsobj;
    KVCacheObject *cache;
    int all = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!|p", kwlist, &idsobj, &KVCacheType, &cache, &all)) return NULL;
    if (!model_check(self, 1)) return NULL;
    if (cache->model != self) return ecm_py_bad_request("the KV cache belongs to a different model");
    if (cache->busy) return ecm_py_bad_request("the KV cache is in use by another thread");
    PyArrayObject *ids = ids_array(idsobj, 1, 1, "token_ids");
    if (!ids) return NULL;
    int T = (int)PyArray_DIM(ids, 0);
    if (T == 0) {
        Py_DECREF(ids);
        return ecm_py_bad_request("token_ids must not be empty");
    }
    npy_intp dims[2] = {all ? T : 1, self->m.cfg.vocab};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) {
        Py_DECREF(ids);
        return NULL;
    }
    ecm_status st;
    cache->busy = 1;
    self->in_flight++;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_model_forward(&self->m, &cache->c, PyArray_DATA(ids), T, PyArray_DATA(out), all);
    Py_END_ALLOW_THREADS
    self->in_flight--;
    cache->busy = 0;
    Py_DECREF(ids);
    if (st != ECM_OK) {
        Py_DECREF(out);
        return ecm_py_raise(st);
    }
    return (PyObject *)out;
}

/* forward_batch(list of token-id sequences, list of caches, all_logits=False)
 * -> logits (n_seq or R, vocab): several sequences, one pass over the weights. */
static PyObject *model_forward_batch(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"token_ids", "caches", "all_logits", NULL};
    PyObject *idsobj, *cachesobj;
    int all = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|p", kwlist, &idsobj, &cachesobj, &all)) return NULL;
    if (!model_check(self, 1)) return NULL;
    PyObject *seqs = PySequence_Fast(idsobj, "token_ids must be a list of token-id sequences");
    PyObject *cs = seqs ? PySequence_Fast(cachesobj, "caches must be a list of KVCache") : NULL;
    PyArrayObject **arrs = NULL;
    ecm_kvcache **caches = NULL;
    int *lens = NULL;
    int32_t *ids = NULL;
    PyArrayObject *out = NULL;
    Py_ssize_t n = 0, locked = 0;
    if (!cs) goto done;
    n = PySequence_Fast_GET_SIZE(seqs);
    if (n == 0 || n != PySequence_Fast_GET_SIZE(cs)) {
        ecm_py_bad_request("token_ids and caches must be non-empty lists of the same length");
        goto done;
    }
    if (n > 65536) {
        ecm_py_bad_request("at most 65536 sequences in one batch");
        goto done;
    }
    arrs = calloc((size_t)n, sizeof *arrs);
    caches = calloc((size_t)n, sizeof *caches);
    lens = calloc((size_t)n, sizeof *lens);
    if (!arrs || !caches || !lens) {
        PyErr_NoMemory();
        goto done;
    }
    long long R = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(cs, i);
        if (!PyObject_TypeCheck(c, &KVCacheType)) {
            ecm_py_bad_request("caches[%zd] is not a KVCache", i);
            goto done;
        }
        KVCacheObject *kc = (KVCacheObject *)c;
        if (kc->model != self) {
            ecm_py_bad_request("caches[%zd] belongs to a different model", i);
            goto done;
        }
        arrs[i] = ids_array(PySequence_Fast_GET_ITEM(seqs, i), 1, 1, "token_ids");
        if (!arrs[i]) goto done;
        lens[i] = (int)PyArray_DIM(arrs[i], 0);
        caches[i] = &kc->c;
        R += lens[i];
    }
    if (R > INT32_MAX) {
        ecm_py_bad_request("too many tokens in one batch");
        goto done;
    }
    ids = malloc((size_t)(R ? R : 1) * sizeof(int32_t));
    if (!ids) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0, r = 0; i < n; r += lens[i], i++)
        memcpy(ids + r, PyArray_DATA(arrs[i]), (size_t)lens[i] * sizeof(int32_t));
    npy_intp dims[2] = {all ? (npy_intp)R : (npy_intp)n, self->m.cfg.vocab};
    out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) goto done;
    for (locked = 0; locked < n; locked++) {
        KVCacheObject *kc = (KVCacheObject *)PySequence_Fast_GET_ITEM(cs, locked);
        if (kc->busy) {
            ecm_py_bad_request("caches[%zd] is in use (by another thread, or twice in this batch)", locked);
            Py_CLEAR(out);
            goto done;
        }
        kc->busy = 1;
    }
    ecm_status st;
    self->in_flight++;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_model_forward_batch(&self->m, caches, lens, (int)n, ids, PyArray_DATA(out), all);
    Py_END_ALLOW_THREADS
    self->in_flight--;
    if (st != ECM_OK) {
        Py_CLEAR(out);
        ecm_py_raise(st);
    }
done:
    for (Py_ssize_t i = 0; i < locked; i++) ((KVCacheObject *)PySequence_Fast_GET_ITEM(cs, i))->busy = 0;
    if (arrs)
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(arrs[i]);
    free(arrs);
    free(caches);
    free(lens);
    free(ids);
    Py_XDECREF(seqs);
    Py_XDECREF(cs);
    return (PyObject *)out;
}

static PyObject *model_embed(ModelObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"input_ids", "attention_mask", "token_type_ids", "pooling", "normalize", NULL};
    PyObject *idsobj, *maskobj = Py_None, *typeobj = Py_None;
    const char *pooling = "mean";
    int normalize = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOsp", kwlist, &idsobj, &maskobj, &typeobj, &pooling, &normalize))
        return NULL;
    if (!model_check(self, 1)) return NULL;
    int pool;
    if (!strcmp(pooling, "mean")) pool = ECM_POOL_MEAN;
    else if (!strcmp(pooling, "cls")) pool = ECM_POOL_CLS;
    else return ecm_py_bad_request("pooling must be 'mean' or 'cls', got '%s'", pooling);
    PyArrayObject *ids = NULL, *mask = NULL, *types = NULL, *out = NULL;
    ids = ids_array(idsobj, 2, 2, "input_ids");
    if (!ids) goto done;
    int B = (int)PyArray_DIM(ids, 0), T = (int)PyArray_DIM(ids, 1);
    if (B == 0 || T == 0) {
        ecm_py_bad_request("input_ids must not be empty");
        goto done;
    }
    if (maskobj != Py_None) {
        mask = ids_array(maskobj, 2, 2, "attention_mask");
        if (!mask) goto done;
        if (PyArray_DIM(mask, 0) != B || PyArray_DIM(mask, 1) != T) {
            ecm_py_bad_request("attention_mask must have the shape of input_ids (%d, %d)", B, T);
            goto done;
        }
    }
    if (typeobj != Py_None) {
        types = ids_array(typeobj, 2, 2, "token_type_ids");
        if (!types) goto done;
        if (PyArray_DIM(types, 0) != B || PyArray_DIM(types, 1) != T) {
            ecm_py_bad_request("token_type_ids must have the shape of input_ids (%d, %d)", B, T);
            goto done;
        }
    }
    npy_intp dims[2] = {B, self->m.cfg.d_model};
    out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) goto done;
    ecm_status st;
    self->in_flight++;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_model_embed(&self->m, PyArray_DATA(ids), mask ? PyArray_DATA(mask) : NULL,
                         types ? PyArray_DATA(types) : NULL, B, T, PyArray_DATA(out), pool, normalize);
    Py_END_ALLOW_THREADS
    self->in_flight--;
    if (st != ECM_OK) {
        Py_CLEAR(out);
        ecm_py_raise(st);
    }
done:
    Py_XDECREF(ids);
    Py_XDECREF(mask);
    Py_XDECREF(types);
    return (PyObject *)out;
}

static PyObject *model_get_n_threads(ModelObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->m.n_threads);
}

static int model_set_n_threads(ModelObject *self, PyObject *v, void *closure) {
    (void)closure;
    int nt;
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete n_threads");
        return -1;
    }
    if (ecm_py_threads(v, &nt) < 0) return -1;
    self->m.n_threads = nt;
    return 0;
}

static PyObject *model_get_n_params(ModelObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(ecm_model_n_params(&self->m));
}

static PyMethodDef model_methods[] = {
    {"slots", (PyCFunction)model_slots, METH_NOARGS, "[(name, shape)] of the weights this model needs."},
    {"set_tensor", (PyCFunction)(void (*)(void))model_set_tensor, METH_VARARGS | METH_KEYWORDS,
     "set_tensor(name, array, transposed=False, bf16=False, qtype=-1): qtype >= 0 takes raw GGML rows (uint8)"},
    {"finalize", (PyCFunction)model_finalize, METH_NOARGS, "Check every weight is set; weights are read-only after."},
    {"close", (PyCFunction)model_close, METH_NOARGS, "Free the weights."},
    {"forward", (PyCFunction)(void (*)(void))model_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(token_ids, cache, all_logits=True) -> float32 logits (T or 1, vocab)"},
    {"forward_batch", (PyCFunction)(void (*)(void))model_forward_batch, METH_VARARGS | METH_KEYWORDS,
     "forward_batch(token_ids_list, caches, all_logits=False) -> logits (n_seq or R, vocab)"},
    {"embed", (PyCFunction)(void (*)(void))model_embed, METH_VARARGS | METH_KEYWORDS,
     "embed(input_ids, attention_mask=None, token_type_ids=None, pooling='mean', normalize=True) -> (B, d)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef model_getset[] = {
    {"n_threads", (getter)model_get_n_threads, (setter)model_set_n_threads, "OpenMP threads per call", NULL},
    {"n_params", (getter)model_get_n_params, NULL, "parameters, lm_head excluded", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_dealloc = (destructor)model_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Model(config, n_threads=None): the weights of one network.",
    .tp_methods = model_methods,
    .tp_getset = model_getset,
    .tp_init = (initproc)model_init,
    .tp_new = PyType_GenericNew,
};

/* ----------------------------------------------------------------- KVCache */

static int cache_init(KVCacheObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"model", "max_tokens", NULL};
    ModelObject *model;
    int max_T;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!i", kwlist, &ModelType, &model, &max_T)) return -1;
    if (!model_check(model, 0)) return -1;
    ecm_kvcache_free(&self->c);
    Py_CLEAR(self->model);
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_kvcache_init(&self->c, &model->m, max_T);
    Py_END_ALLOW_THREADS
    if (st != ECM_OK) {
        ecm_py_raise(st);
        return -1;
    }
    Py_INCREF(model);
    self->model = model;
    return 0;
}

static void cache_dealloc(KVCacheObject *self) {
    ecm_kvcache_free(&self->c);
    Py_CLEAR(self->model);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *cache_get_n_past(KVCacheObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->c.n_past);
}

/* Rewind (never advance) the cache: keep the first n tokens, e.g. a shared
 * prompt prefix, and decode on from there. */
static int cache_set_n_past(KVCacheObject *self, PyObject *v, void *closure) {
    (void)closure;
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete n_past");
        return -1;
    }
    long n = PyLong_AsLong(v);
    if (n == -1 && PyErr_Occurred()) return -1;
    if (self->busy) {
        ecm_py_bad_request("the KV cache is in use by another thread");
        return -1;
    }
    if (n < 0 || n > self->c.n_past) {
        ecm_py_bad_request("n_past can only rewind: must be in [0, %d], got %ld", self->c.n_past, n);
        return -1;
    }
    self->c.n_past = (int)n;
    return 0;
}

static PyObject *cache_get_max(KVCacheObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->c.max_T);
}

/* copy_from(src, n=None): the first n tokens of src (default: all) become
 * this cache's content, e.g. a shared prompt prefix computed once. */
static PyObject *cache_copy_from(KVCacheObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"src", "n", NULL};
    KVCacheObject *src;
    int n = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|i", kwlist, &KVCacheType, &src, &n)) return NULL;
    if (self->model != src->model) return ecm_py_bad_request("the KV caches belong to different models");
    if (self->busy || src->busy) return ecm_py_bad_request("a KV cache is in use by another thread");
    if (n < 0) n = src->c.n_past;
    ecm_status st = ecm_kvcache_copy(&self->c, &src->c, n);
    if (st != ECM_OK) return ecm_py_raise(st);
    Py_RETURN_NONE;
}

static PyMethodDef cache_methods[] = {
    {"copy_from", (PyCFunction)(void (*)(void))cache_copy_from, METH_VARARGS | METH_KEYWORDS,
     "copy_from(src, n=None): take the first n tokens of another cache of the same model"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cache_getset[] = {
    {"n_past", (getter)cache_get_n_past, (setter)cache_set_n_past, "tokens held (settable to rewind)", NULL},
    {"max_tokens", (getter)cache_get_max, NULL, "capacity in tokens", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KVCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.KVCache",
    .tp_basicsize = sizeof(KVCacheObject),
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "KVCache(model, max_tokens): keys and values of one sequence being decoded.",
    .tp_getset = cache_getset,
    .tp_methods = cache_methods,
    .tp_init = (initproc)cache_init,
    .tp_new = PyType_GenericNew,
};

int ecm_py_model_init(PyObject *module) {
    if (PyType_Ready(&ModelType) < 0 || PyType_Ready(&KVCacheType) < 0) return -1;
    Py_INCREF(&ModelType);
    Py_INCREF(&KVCacheType);
    if (PyModule_AddObject(module, "Model", (PyObject *)&ModelType) < 0 ||
        PyModule_AddObject(module, "KVCache", (PyObject *)&KVCacheType) < 0)
        return -1;
    PyModule_AddIntConstant(module, "ARCH_GPT2", ECM_ARCH_GPT2);
    PyModule_AddIntConstant(module, "ARCH_LLAMA", ECM_ARCH_LLAMA);
    PyModule_AddIntConstant(module, "ARCH_BERT", ECM_ARCH_BERT);
    PyModule_AddIntConstant(module, "ROPE_NONE", ECM_ROPE_NONE);
    PyModule_AddIntConstant(module, "ROPE_LINEAR", ECM_ROPE_LINEAR);
    PyModule_AddIntConstant(module, "ROPE_LLAMA3", ECM_ROPE_LLAMA3);
    PyModule_AddIntConstant(module, "ATTENTION_DIRECT_ROWS", ECM_ATTENTION_DIRECT_ROWS);
    return 0;
}
