/* module.c: the ecomlm._core extension module: shared binding helpers,
 * process-level functions, and registration of the types in py_*.c. */
#define ECM_PY_MAIN_FILE
#include "py_common.h"

#include <stdarg.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ecomlm.errors classes, looked up once at import. */
static PyObject *err_bad_request, *err_format, *err_not_found, *err_api;

PyObject *ecm_py_raise(ecm_status status) {
    PyObject *cls;
    switch (status) {
    case ECM_ERR_VALUE:
    case ECM_ERR_STATE: cls = err_bad_request; break;
    case ECM_ERR_FORMAT: cls = err_format; break;
    case ECM_ERR_NOT_FOUND: cls = err_not_found; break;
    case ECM_ERR_NOMEM:
        PyErr_SetString(PyExc_MemoryError, ecm_last_error());
        return NULL;
    default: cls = err_api; break;
    }
    PyErr_SetString(cls, ecm_last_error());
    return NULL;
}

/* fmt is PyUnicode_FromFormat's: %d %ld %zd %s %R ..., but no %g / %f
 * (format a double with snprintf first). */
PyObject *ecm_py_bad_request(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg) {
        PyErr_SetObject(err_bad_request, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

PyArrayObject *ecm_py_array(PyObject *obj, int type, int min_dims, int max_dims,
                            const char *what) {
    PyArray_Descr *descr = PyArray_DescrFromType(type);
    if (!descr) return NULL;
    PyArrayObject *arr = (PyArrayObject *)PyArray_FromAny(
        obj, descr, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST, NULL);
    if (!arr) {
        PyErr_Clear();
        ecm_py_bad_request("%s must be an array of numbers", what);
        return NULL;
    }
    int nd = PyArray_NDIM(arr);
    if (nd < min_dims || nd > max_dims) {
        Py_DECREF(arr);
        if (min_dims == max_dims)
            ecm_py_bad_request("%s must have %d dimension(s), got %d", what, min_dims, nd);
        else
            ecm_py_bad_request("%s must have %d to %d dimensions, got %d", what, min_dims,
                               max_dims, nd);
        return NULL;
    }
    return arr;
}

int ecm_py_threads(PyObject *obj, int *out) {
    if (obj == NULL || obj == Py_None) {
        *out = ecm_default_threads();
        return 0;
    }
    long n = PyLong_AsLong(obj);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        ecm_py_bad_request("n_threads must be an integer or None");
        return -1;
    }
    if (n > 1024) {
        ecm_py_bad_request("n_threads must be at most 1024, got %ld", n);
        return -1;
    }
    *out = n <= 0 ? ecm_default_threads() : (int)n;
    return 0;
}

/* ------------------------------------------------------ module functions */

static PyObject *py_simd_level(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyUnicode_FromString(ecm_simd_level_name(ecm_simd_level_get()));
}

static PyObject *py_simd_detected(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyUnicode_FromString(ecm_simd_level_name(ecm_simd_level_detected()));
}

static PyObject *py_set_simd_level(PyObject *self, PyObject *arg) {
    (void)self;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name) return NULL;
    ecm_simd_level lvl;
    if (!strcmp(name, "scalar")) lvl = ECM_SIMD_SCALAR;
    else if (!strcmp(name, "avx2")) lvl = ECM_SIMD_AVX2;
    else if (!strcmp(name, "avx512")) lvl = ECM_SIMD_AVX512;
    else return ecm_py_bad_request("unknown SIMD level '%s' (scalar, avx2, avx512)", name);
    ecm_simd_level_set(lvl);
    return PyUnicode_FromString(ecm_simd_level_name(ecm_simd_level_get()));
}

static PyObject *py_default_threads(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(ecm_default_threads());
}

static PyObject *py_has_openmp(PyObject *self, PyObject *args) {
    (void)self; (void)args;
#ifdef _OPENMP
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

/* matmul(a[M,K], b[N,K], bias=None, n_threads=None, packed=True) -> [M,N]:
 * the packed GEMM the models use, exposed for tests and benchmarks. */
static PyObject *py_matmul(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"a", "b", "bias", "n_threads", "reference", NULL};
    PyObject *ao, *bo, *biaso = Py_None, *nto = Py_None;
    int reference = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|OOp", kwlist, &ao, &bo, &biaso, &nto,
                                     &reference))
        return NULL;
    int nt;
    if (ecm_py_threads(nto, &nt) < 0) return NULL;
    PyArrayObject *a = NULL, *b = NULL, *bias = NULL, *out = NULL;
    float *storage = NULL;
    a = ecm_py_array(ao, NPY_FLOAT32, 2, 2, "a");
    if (!a) goto done;
    b = ecm_py_array(bo, NPY_FLOAT32, 2, 2, "b");
    if (!b) goto done;
    npy_intp M = PyArray_DIM(a, 0), K = PyArray_DIM(a, 1), N = PyArray_DIM(b, 0);
    if (PyArray_DIM(b, 1) != K) {
        ecm_py_bad_request("b must be [N, %ld] to match a, got [%ld, %ld]", (long)K,
                           (long)N, (long)PyArray_DIM(b, 1));
        goto done;
    }
    if (M <= 0 || N <= 0 || K <= 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
        ecm_py_bad_request("matmul sizes must be positive, got M=%ld N=%ld K=%ld", (long)M,
                           (long)N, (long)K);
        goto done;
    }
    if (biaso != Py_None) {
        bias = ecm_py_array(biaso, NPY_FLOAT32, 1, 1, "bias");
        if (!bias) goto done;
        if (PyArray_DIM(bias, 0) != N) {
            ecm_py_bad_request("bias must have %ld elements", (long)N);
            goto done;
        }
    }
    npy_intp dims[2] = {M, N};
    out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!out) goto done;
    const float *biasp = bias ? (const float *)PyArray_DATA(bias) : NULL;
    if (reference) {
        Py_BEGIN_ALLOW_THREADS
        ecm_matmul_ref(PyArray_DATA(out), PyArray_DATA(a), PyArray_DATA(b), biasp, (int)M,
                       (int)N, (int)K);
        Py_END_ALLOW_THREADS
        goto done;
    }
    storage = ecm_alloc(ecm_packed_floats((int)N, (int)K) * sizeof(float));
    if (!storage) {
        ecm_py_raise(ECM_ERR_NOMEM);
        Py_CLEAR(out);
        goto done;
    }
    ecm_packed pw;
    ecm_status st = ECM_OK;
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    st = ecm_pack_weights(&pw, storage, PyArray_DATA(b), ECM_DTYPE_F32, (int)N, (int)K, 0);
    if (st == ECM_OK)
        ecm_matmul_packed(PyArray_DATA(out), (int)N, PyArray_DATA(a), (int)K, &pw, biasp,
                          (int)M, 0);
    Py_END_ALLOW_THREADS
    if (st != ECM_OK) {
        ecm_py_raise(st);
        Py_CLEAR(out);
    }
done:
    ecm_free(storage);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(bias);
    return (PyObject *)out;
}

static PyMethodDef module_methods[] = {
    {"simd_level", py_simd_level, METH_NOARGS, "The SIMD path in use: scalar, avx2 or avx512."},
    {"simd_detected", py_simd_detected, METH_NOARGS, "The best SIMD path this CPU supports."},
    {"set_simd_level", py_set_simd_level, METH_O,
     "Force a SIMD path (capped by the CPU); for tests comparing kernels."},
    {"default_threads", py_default_threads, METH_NOARGS, "Cores this process may use."},
    {"has_openmp", py_has_openmp, METH_NOARGS, "Whether the engine was built with OpenMP."},
    {"matmul", (PyCFunction)(void (*)(void))py_matmul, METH_VARARGS | METH_KEYWORDS,
     "matmul(a, b, bias=None, n_threads=None, reference=False) -> a @ b.T (+ bias)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "ecomlm._core",
    "The C engine of ecomlm (thin binding; use ecomlm's Python API).", -1, module_methods,
};

static int load_errors(void) {
    PyObject *errors = PyImport_ImportModule("ecomlm.errors");
    if (!errors) return -1;
    err_bad_request = PyObject_GetAttrString(errors, "BadRequestError");
    err_format = PyObject_GetAttrString(errors, "ModelFormatError");
    err_not_found = PyObject_GetAttrString(errors, "NotFoundError");
    err_api = PyObject_GetAttrString(errors, "APIError");
    Py_DECREF(errors);
    return (err_bad_request && err_format && err_not_found && err_api) ? 0 : -1;
}

PyMODINIT_FUNC PyInit__core(void) {
    import_array();
    if (load_errors() < 0) return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (!m) return NULL;
    if (ecm_py_safetensors_init(m) < 0 || ecm_py_model_init(m) < 0 || ecm_py_ops_init(m) < 0 ||
        ecm_py_sampling_init(m) < 0 || ecm_py_tokenizer_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (ecm_py_gguf_init(m) < 0) { Py_DECREF(m); return NULL; }
    if (ecm_py_train_init(m) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
