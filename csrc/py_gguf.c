/* py_gguf.c: _core.GGUFFile, a validated, memory-mapped GGUF file whose
 * metadata becomes Python values and whose tensors are zero-copy NumPy
 * views; plus dequantize / quantize / matmul_quant over raw ggml blocks. */
#include "py_common.h"

#include "gguf.h"
#include "quants.h"
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    PyObject_HEAD
    ecm_mmap map;
    ecm_gguf g;
    int open;
} GGUFFileObject;

static int gf_init(GGUFFileObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", NULL};
    PyObject *pathobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&", kwlist, PyUnicode_FSConverter, &pathobj)) return -1;
    if (self->open) {
        ecm_gguf_free(&self->g);
        ecm_mmap_close(&self->map);
        self->open = 0;
    }
    const char *path = PyBytes_AS_STRING(pathobj);
    ecm_status s;
    Py_BEGIN_ALLOW_THREADS
    s = ecm_mmap_open(&self->map, path);
    if (s == ECM_OK) {
        s = ecm_gguf_parse(&self->g, self->map.data, self->map.size);
        if (s != ECM_OK) ecm_mmap_close(&self->map);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(pathobj);
    if (s != ECM_OK) {
        ecm_py_raise(s);
        return -1;
    }
    self->open = 1;
    return 0;
}

static void gf_dealloc(GGUFFileObject *self) {
    if (self->open) {
        ecm_gguf_free(&self->g);
        ecm_mmap_close(&self->map);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_open(GGUFFileObject *self) {
    if (!self->open) {
        ecm_py_bad_request("the GGUF file is not open");
        return 0;
    }
    return 1;
}

/* A GGUF string as str when it is valid UTF-8, else as bytes. */
static PyObject *str_to_py(const ecm_gguf_str *s) {
    PyObject *o = PyUnicode_DecodeUTF8(s->ptr, (Py_ssize_t)s->len, "strict");
    if (o) return o;
    PyErr_Clear();
    return PyBytes_FromStringAndSize(s->ptr, (Py_ssize_t)s->len);
}

static PyObject *value_to_py(const ecm_gguf_value *v, int depth) {
    switch (v->type) {
    case ECM_GGUF_UINT8: case ECM_GGUF_UINT16: case ECM_GGUF_UINT32: case ECM_GGUF_UINT64:
        return PyLong_FromUnsignedLongLong(v->v.u64);
    case ECM_GGUF_INT8: case ECM_GGUF_INT16: case ECM_GGUF_INT32: case ECM_GGUF_INT64:
        return PyLong_FromLongLong(v->v.i64);
    case ECM_GGUF_FLOAT32: case ECM_GGUF_FLOAT64: return PyFloat_FromDouble(v->v.f64);
    case ECM_GGUF_BOOL: return PyBool_FromLong((long)v->v.u64);
    case ECM_GGUF_STRING: return str_to_py(&v->v.str);
    case ECM_GGUF_ARRAY: {
        if (v->v.arr.count > (uint64_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
        PyObject *list = PyList_New((Py_ssize_t)v->v.arr.count);
        if (!list) return NULL;
        const uint8_t *p = v->v.arr.data;
        size_t left = v->v.arr.nbytes;
        for (uint64_t i = 0; i < v->v.arr.count; i++) {
            ecm_gguf_value item;
            size_t used = 0;
            ecm_status s = ecm_gguf_value_read(&item, v->v.arr.elem_type, p, left, &used, depth + 1);
            if (s != ECM_OK) { /* cannot happen after parse; stay safe anyway */
                Py_DECREF(list);
                return ecm_py_raise(s);
            }
            PyObject *o = value_to_py(&item, depth + 1);
            if (!o) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, o);
            p += used;
            left -= used;
        }
        return list;
    }
    default: return ecm_py_bad_request("unknown GGUF value type %d", v->type);
    }
}

static PyObject *gf_metadata(GGUFFileObject *self, PyObject *args) {
    (void)args;
    if (!check_open(self)) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int64_t i = 0; i < self->g.n_kv; i++) {
        const ecm_gguf_kv *kv = &self->g.kv[i];
        PyObject *k = str_to_py(&kv->key);
        PyObject *v = k ? value_to_py(&kv->value, 0) : NULL;
        if (!k || !v || PyDict_SetItem(d, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

/* {key: GGUF value type id}: lets writers and tests keep exact types. */
static PyObject *gf_metadata_types(GGUFFileObject *self, PyObject *args) {
    (void)args;
    if (!check_open(self)) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int64_t i = 0; i < self->g.n_kv; i++) {
        const ecm_gguf_kv *kv = &self->g.kv[i];
        PyObject *k = str_to_py(&kv->key);
        PyObject *v = NULL;
        if (k) {
            if (kv->value.type == ECM_GGUF_ARRAY)
                v = Py_BuildValue("(ii)", kv->value.type, kv->value.v.arr.elem_type);
            else
                v = Py_BuildValue("(i)", kv->value.type);
        }
        if (!k || !v || PyDict_SetItem(d, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

static PyObject *gf_tensors(GGUFFileObject *self, PyObject *args) {
    (void)args;
    if (!check_open(self)) return NULL;
    PyObject *list = PyList_New((Py_ssize_t)self->g.n_tensors);
    if (!list) return NULL;
    for (int64_t i = 0; i < self->g.n_tensors; i++) {
        const ecm_gguf_tensor *t = &self->g.tensors[i];
        PyObject *shape = PyTuple_New(t->n_dims);
        if (!shape) {
            Py_DECREF(list);
            return NULL;
        }
        for (int d = 0; d < t->n_dims; d++) /* PyTorch order: reversed ne */
            PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(t->ne[t->n_dims - 1 - d]));
        PyObject *tup = Py_BuildValue("(siNKn)", t->name, t->type, shape, (unsigned long long)t->offset,
                                      (Py_ssize_t)t->nbytes);
        if (!tup) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, tup);
    }
    return list;
}

static PyObject *gf_tensor_data(GGUFFileObject *self, PyObject *nameobj) {
    if (!check_open(self)) return NULL;
    const char *name = PyUnicode_AsUTF8(nameobj);
    if (!name) return NULL;
    int64_t i = ecm_gguf_find_tensor(&self->g, name);
    if (i < 0) {
        ecm_fail(ECM_ERR_NOT_FOUND, "no tensor named '%s' in the GGUF file", name);
        return ecm_py_raise(ECM_ERR_NOT_FOUND);
    }
    const ecm_gguf_tensor *t = &self->g.tensors[i];
    npy_intp dims[1] = {(npy_intp)t->nbytes};
    PyObject *arr = PyArray_New(&PyArray_Type, 1, dims, NPY_UINT8, NULL, (void *)ecm_gguf_tensor_data(&self->g, i),
                                0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED, NULL); /* read-only: no WRITEABLE */
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *gf_get_version(GGUFFileObject *self, void *closure) {
    (void)closure;
    if (!check_open(self)) return NULL;
    return PyLong_FromUnsignedLong(self->g.version);
}

static PyObject *gf_get_alignment(GGUFFileObject *self, void *closure) {
    (void)closure;
    if (!check_open(self)) return NULL;
    return PyLong_FromSize_t(self->g.alignment);
}

static PyObject *gf_get_data_offset(GGUFFileObject *self, void *closure) {
    (void)closure;
    if (!check_open(self)) return NULL;
    return PyLong_FromSize_t(self->g.data_offset);
}

static PyMethodDef gf_methods[] = {
    {"metadata", (PyCFunction)gf_metadata, METH_NOARGS,
     "metadata() -> {key: value}; arrays as lists, strings as str (bytes when not UTF-8)"},
    {"metadata_types", (PyCFunction)gf_metadata_types, METH_NOARGS,
     "metadata_types() -> {key: (type id,) or (ARRAY id, element type id)}"},
    {"tensors", (PyCFunction)gf_tensors, METH_NOARGS,
     "tensors() -> [(name, ggml type id, shape (PyTorch order), data offset, nbytes)] in file order"},
    {"tensor_data", (PyCFunction)gf_tensor_data, METH_O,
     "tensor_data(name) -> read-only uint8 view of the tensor's bytes (keeps the mapping alive)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef gf_getset[] = {
    {"version", (getter)gf_get_version, NULL, "GGUF version (2 or 3)", NULL},
    {"alignment", (getter)gf_get_alignment, NULL, "data alignment in bytes", NULL},
    {"data_offset", (getter)gf_get_data_offset, NULL, "file offset of the tensor data section", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GGUFFileType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.GGUFFile",
    .tp_basicsize = sizeof(GGUFFileObject),
    .tp_dealloc = (destructor)gf_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GGUFFile(path): a validated, memory-mapped GGUF file (versions 2 and 3).",
    .tp_methods = gf_methods,
    .tp_getset = gf_getset,
    .tp_init = (initproc)gf_init,
    .tp_new = PyType_GenericNew,
};

/* ----------------------------------------------------- module functions */

static const ecm_type_traits *traits_arg(int qtype) {
    const ecm_type_traits *tr = ecm_type_traits_get(qtype);
    if (!tr) ecm_py_bad_request("unsupported ggml type %s (id %d)", ecm_type_name(qtype), qtype);
    return tr;
}

/* Parse a shape sequence into dims; returns element count or -1. */
static int parse_shape(PyObject *shapeobj, npy_intp *dims, int *nd) {
    PyObject *seq = PySequence_Fast(shapeobj, "shape must be a sequence of integers");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > ECM_MAX_DIMS) {
        Py_DECREF(seq);
        ecm_py_bad_request("shape must have 1 to %d dimensions", ECM_MAX_DIMS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (v < 0 || v > INT32_MAX) {
            Py_DECREF(seq);
            ecm_py_bad_request("shape entries must be in 0..2^31-1, got %lld", v);
            return -1;
        }
        dims[i] = (npy_intp)v;
    }
    *nd = (int)n;
    Py_DECREF(seq);
    return 0;
}

/* dequantize(raw uint8, qtype, shape) -> float32 array of `shape`. */
static PyObject *py_dequantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rawobj, *shapeobj;
    int qtype;
    if (!PyArg_ParseTuple(args, "OiO", &rawobj, &qtype, &shapeobj)) return NULL;
    const ecm_type_traits *tr = traits_arg(qtype);
    if (!tr) return NULL;
    npy_intp dims[ECM_MAX_DIMS];
    int nd;
    if (parse_shape(shapeobj, dims, &nd) < 0) return NULL;
    if (dims[nd - 1] % tr->block_size)
        return ecm_py_bad_request("the last dimension (%ld) must be a multiple of the %s block size %d",
                                  (long)dims[nd - 1], tr->name, tr->block_size);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        if (!ecm_mul_size(n, (size_t)dims[i], &n)) return ecm_py_bad_request("shape too large");
    size_t need;
    if (!ecm_mul_size(n / (size_t)tr->block_size, tr->block_bytes, &need)) return ecm_py_bad_request("shape too large");
    PyArrayObject *raw = ecm_py_array(rawobj, NPY_UINT8, 1, 8, "raw");
    if (!raw) return NULL;
    if ((size_t)PyArray_NBYTES(raw) != need) {
        Py_DECREF(raw);
        return ecm_py_bad_request("raw holds %ld bytes but %zu %s elements need %zu", (long)PyArray_NBYTES(raw), n,
                                  tr->name, need);
    }
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_FLOAT32);
    if (!out) {
        Py_DECREF(raw);
        return NULL;
    }
    const uint8_t *src = PyArray_DATA(raw);
    float *dst = PyArray_DATA(out);
    Py_BEGIN_ALLOW_THREADS
    /* In chunks of 64 blocks, in parallel: large embeddings dequantise fast. */
    const int64_t nblocks = (int64_t)(n / (size_t)tr->block_size), chunk = 64;
#pragma omp parallel for schedule(static) if (nblocks > 4 * chunk)
    for (int64_t c = 0; c < (nblocks + chunk - 1) / chunk; c++) {
        int64_t b0 = c * chunk, nb = nblocks - b0 < chunk ? nblocks - b0 : chunk;
        tr->to_float(dst + b0 * tr->block_size, src + b0 * (int64_t)tr->block_bytes, nb * tr->block_size);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(raw);
    return (PyObject *)out;
}

/* quantize(float32 array, qtype) -> uint8 array, last dim in bytes. */
static PyObject *py_quantize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *xobj;
    int qtype;
    if (!PyArg_ParseTuple(args, "Oi", &xobj, &qtype)) return NULL;
    const ecm_type_traits *tr = traits_arg(qtype);
    if (!tr) return NULL;
    if (!tr->from_float_ref) return ecm_py_bad_request("cannot quantize to %s", tr->name);
    PyArrayObject *x = ecm_py_array(xobj, NPY_FLOAT32, 1, ECM_MAX_DIMS, "x");
    if (!x) return NULL;
    int nd = PyArray_NDIM(x);
    npy_intp dims[ECM_MAX_DIMS];
    for (int i = 0; i < nd; i++) dims[i] = PyArray_DIM(x, i);
    if (dims[nd - 1] % tr->block_size) {
        Py_DECREF(x);
        return ecm_py_bad_request("the last dimension (%ld) must be a multiple of the %s block size %d",
                                  (long)dims[nd - 1], tr->name, tr->block_size);
    }
    dims[nd - 1] = dims[nd - 1] / tr->block_size * (npy_intp)tr->block_bytes;
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(nd, dims, NPY_UINT8);
    if (!out) {
        Py_DECREF(x);
        return NULL;
    }
    const float *src = PyArray_DATA(x);
    uint8_t *dst = PyArray_DATA(out);
    const int64_t nblocks = (int64_t)(PyArray_SIZE(x) / tr->block_size);
    Py_BEGIN_ALLOW_THREADS
    const int64_t chunk = 16;
#pragma omp parallel for schedule(static) if (nblocks > 4 * chunk)
    for (int64_t c = 0; c < (nblocks + chunk - 1) / chunk; c++) {
        int64_t b0 = c * chunk, nb = nblocks - b0 < chunk ? nblocks - b0 : chunk;
        tr->from_float_ref(dst + b0 * (int64_t)tr->block_bytes, src + b0 * tr->block_size, nb * tr->block_size);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    return (PyObject *)out;
}

/* matmul_quant(x[M, K] float32, raw, qtype, N, K, n_threads=None, tiled=False) -> [M, N];
 * tiled: raw holds tile_weights(...) instead of standard blocks. */
static PyObject *py_matmul_quant(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"x", "w", "qtype", "N", "K", "n_threads", "tiled", NULL};
    PyObject *xobj, *wobj, *nto = Py_None;
    int qtype, N, K, tiled = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOiii|Op", kwlist, &xobj, &wobj, &qtype, &N, &K, &nto, &tiled))
        return NULL;
    int nt;
    if (ecm_py_threads(nto, &nt) < 0) return NULL;
    const ecm_type_traits *tr = traits_arg(qtype);
    if (!tr) return NULL;
    if (N <= 0 || K <= 0) return ecm_py_bad_request("N and K must be positive, got N=%d K=%d", N, K);
    size_t rb = ecm_quant_row_bytes(qtype, K);
    if (!rb) return ecm_py_bad_request("K=%d is not a multiple of the %s block size %d", K, tr->name, tr->block_size);
    if (tiled && !ecm_tiled_type(qtype)) return ecm_py_bad_request("%s weights have no tiled layout", tr->name);
    const size_t wbytes = tiled ? ecm_tiled_bytes(qtype, N, K) : rb * (size_t)N;
    PyArrayObject *x = NULL, *w = NULL, *out = NULL;
    x = ecm_py_array(xobj, NPY_FLOAT32, 1, 2, "x");
    if (!x) goto done;
    w = ecm_py_array(wobj, NPY_UINT8, 1, 8, "w");
    if (!w) goto done;
    npy_intp M = PyArray_NDIM(x) == 2 ? PyArray_DIM(x, 0) : 1;
    npy_intp xk = PyArray_DIM(x, PyArray_NDIM(x) - 1);
    if (xk != K) {
        ecm_py_bad_request("x has rows of %ld, expected K=%d", (long)xk, K);
        goto done;
    }
    if (M <= 0 || M > INT32_MAX) {
        ecm_py_bad_request("x must have 1 to 2^31-1 rows");
        goto done;
    }
    if ((size_t)PyArray_NBYTES(w) != wbytes) {
        ecm_py_bad_request("w holds %ld bytes, but %d rows of %d %s elements need %zu", (long)PyArray_NBYTES(w), N, K,
                           tr->name, wbytes);
        goto done;
    }
    npy_intp dims[2] = {M, N};
    out = (PyArrayObject *)PyArray_SimpleNew(PyArray_NDIM(x), PyArray_NDIM(x) == 2 ? dims : dims + 1, NPY_FLOAT32);
    if (!out) goto done;
    ecm_status s;
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    if (tiled)
        s = ecm_matmul_tiled(PyArray_DATA(out), N, PyArray_DATA(x), K, PyArray_DATA(w), qtype, NULL, N, K, (int)M, 0);
    else
        s = ecm_matmul_quant(PyArray_DATA(out), N, PyArray_DATA(x), K, PyArray_DATA(w), qtype, N, K, (int)M);
    Py_END_ALLOW_THREADS
    if (s != ECM_OK) {
        ecm_py_raise(s);
        Py_CLEAR(out);
    }
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    return (PyObject *)out;
}

/* tile_weights(raw, qtype, N, K) -> uint8 tiles; untile(tiles, qtype, N, K) -> float32 [N, K]
 * (the models' layout for Q4_0 / Q4_1 / Q8_0, see quants_tiled.c). */
static PyObject *py_tile_weights(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *wobj;
    int qtype, N, K, back = 0;
    if (!PyArg_ParseTuple(args, "Oiii|p", &wobj, &qtype, &N, &K, &back)) return NULL;
    const size_t tb = ecm_tiled_bytes(qtype, N, K), rb = ecm_quant_row_bytes(qtype, K);
    if (!tb) return ecm_py_bad_request("no tiled layout for %s rows N=%d K=%d", ecm_type_name(qtype), N, K);
    PyArrayObject *w = ecm_py_array(wobj, NPY_UINT8, 1, 8, "w");
    if (!w) return NULL;
    const size_t want = back ? tb : rb * (size_t)N;
    PyArrayObject *out = NULL;
    if ((size_t)PyArray_NBYTES(w) != want) {
        ecm_py_bad_request("w holds %ld bytes, expected %zu", (long)PyArray_NBYTES(w), want);
        goto done;
    }
    if (back) {
        npy_intp dims[2] = {N, K};
        out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
        if (!out) goto done;
        for (int r = 0; r < N; r++)
            ecm_tiled_dequantize_row((float *)PyArray_DATA(out) + (size_t)r * K, PyArray_DATA(w), qtype, K, r);
    } else {
        npy_intp n = (npy_intp)tb;
        out = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_UINT8);
        if (!out) goto done;
        ecm_status s = ecm_tile_weights(PyArray_DATA(out), PyArray_DATA(w), qtype, N, K);
        if (s != ECM_OK) {
            ecm_py_raise(s);
            Py_CLEAR(out);
        }
    }
done:
    Py_DECREF(w);
    return (PyObject *)out;
}

/* quant_row_bytes(qtype, K) and type_info(qtype) -> (name, block size, block bytes). */
static PyObject *py_quant_row_bytes(PyObject *self, PyObject *args) {
    (void)self;
    int qtype, K;
    if (!PyArg_ParseTuple(args, "ii", &qtype, &K)) return NULL;
    return PyLong_FromSize_t(ecm_quant_row_bytes(qtype, K));
}

static PyObject *py_type_info(PyObject *self, PyObject *arg) {
    (void)self;
    long t = PyLong_AsLong(arg);
    if (t == -1 && PyErr_Occurred()) return NULL;
    if (t < 0 || t >= ECM_TYPE_COUNT || !ecm_type_block_size((int)t))
        return ecm_py_bad_request("unknown ggml type id %ld", t);
    return Py_BuildValue("(snnO)", ecm_type_name((int)t), (Py_ssize_t)ecm_type_block_size((int)t),
                         (Py_ssize_t)ecm_type_block_bytes((int)t), ecm_type_traits_get((int)t) ? Py_True : Py_False);
}

static PyMethodDef gguf_functions[] = {
    {"dequantize", py_dequantize, METH_VARARGS,
     "dequantize(raw uint8 array, ggml type id, shape) -> float32 array (exactly as gguf.quants.dequantize)"},
    {"quantize", py_quantize, METH_VARARGS,
     "quantize(float32 array, ggml type id) -> uint8 array, last dim in bytes (llama.cpp reference quantisers)"},
    {"matmul_quant", (PyCFunction)(void (*)(void))py_matmul_quant, METH_VARARGS | METH_KEYWORDS,
     "matmul_quant(x[M, K], w raw, qtype, N, K, n_threads=None, tiled=False) -> x @ dequant(w)^T, [M, N]"},
    {"tile_weights", py_tile_weights, METH_VARARGS,
     "tile_weights(raw, qtype, N, K, back=False) -> the 8-row tiled layout of Q4_0/Q4_1/Q8_0 rows; "
     "back=True: tiles -> dequantised float32 [N, K]"},
    {"quant_row_bytes", py_quant_row_bytes, METH_VARARGS, "quant_row_bytes(qtype, K) -> bytes in a row (0 if invalid)"},
    {"type_info", py_type_info, METH_O,
     "type_info(qtype) -> (name, block size, block bytes, whether the engine computes with it)"},
    {NULL, NULL, 0, NULL},
};

int ecm_py_gguf_init(PyObject *module) {
    if (PyType_Ready(&GGUFFileType) < 0) return -1;
    Py_INCREF(&GGUFFileType);
    if (PyModule_AddObject(module, "GGUFFile", (PyObject *)&GGUFFileType) < 0) {
        Py_DECREF(&GGUFFileType);
        return -1;
    }
    return PyModule_AddFunctions(module, gguf_functions);
}
