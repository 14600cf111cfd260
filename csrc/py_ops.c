/* py_ops.c: _core.op(name, x, ...) runs one engine kernel on NumPy arrays,
 * so the tests can hold every kernel against its NumPy / PyTorch twin. */
#include "py_common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* op(name, x, weight=None, bias=None, eps=1e-5, n_threads=None) -> new array
 * names: layernorm, rmsnorm (x 2-D, rows normalised), gelu_tanh, gelu_erf,
 * silu, exp (any shape), softmax (2-D, rows), swiglu (2-D [T, 2F] -> [T, F]),
 * rope (x [T, H, D], weight = positions int32 [T], eps = theta). */
static PyObject *py_op(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"name", "x", "weight", "bias", "eps", "n_threads", NULL};
    const char *name;
    PyObject *xo, *wo = Py_None, *bo = Py_None, *nto = Py_None;
    double eps = 1e-5;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|OOdO", kwlist, &name, &xo, &wo, &bo, &eps, &nto)) return NULL;
    int nt;
    if (ecm_py_threads(nto, &nt) < 0) return NULL;
    PyArrayObject *x = ecm_py_array(xo, NPY_FLOAT32, 1, 3, "x"), *w = NULL, *b = NULL, *out = NULL;
    if (!x) return NULL;
    npy_intp n = PyArray_SIZE(x);
    int rows = PyArray_NDIM(x) >= 2 ? (int)PyArray_DIM(x, 0) : 1;
    int cols = rows ? (int)(n / (rows ? rows : 1)) : 0;
    int is_rope = !strcmp(name, "rope");
    if (wo != Py_None) {
        w = ecm_py_array(wo, is_rope ? NPY_INT32 : NPY_FLOAT32, 1, 1, "weight");
        if (!w) goto done;
        if (PyArray_DIM(w, 0) != (is_rope ? rows : cols)) {
            ecm_py_bad_request("weight has %ld elements, expected %d", (long)PyArray_DIM(w, 0), is_rope ? rows : cols);
            goto done;
        }
    }
    if (bo != Py_None) {
        b = ecm_py_array(bo, NPY_FLOAT32, 1, 1, "bias");
        if (!b) goto done;
        if (PyArray_DIM(b, 0) != cols) {
            ecm_py_bad_request("bias has %ld elements, expected %d", (long)PyArray_DIM(b, 0), cols);
            goto done;
        }
    }
    if (!strcmp(name, "swiglu")) {
        if (PyArray_NDIM(x) != 2 || cols % 2) {
            ecm_py_bad_request("swiglu needs x of shape (T, 2F)");
            goto done;
        }
        npy_intp dims[2] = {rows, cols / 2};
        out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    } else {
        out = (PyArrayObject *)PyArray_NewLikeArray(x, NPY_CORDER, NULL, 0);
    }
    if (!out) goto done;
    float *o = PyArray_DATA(out);
    const float *xi = PyArray_DATA(x);
    const float *wp = (w && !is_rope) ? PyArray_DATA(w) : NULL, *bp = b ? PyArray_DATA(b) : NULL;
    int ok = 1;
    if (is_rope && (PyArray_NDIM(x) != 3 || !w || PyArray_DIM(x, 2) % 2 || PyArray_DIM(x, 2) > 1024)) {
        ecm_py_bad_request("rope needs x (T, H, D) with even D <= 1024 and positions as weight");
        Py_CLEAR(out);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    if (!strcmp(name, "layernorm")) ecm_layernorm_forward(o, xi, wp, bp, rows, cols, (float)eps);
    else if (!strcmp(name, "rmsnorm")) ecm_rmsnorm_forward(o, xi, wp, rows, cols, (float)eps);
    else if (!strcmp(name, "gelu_tanh")) ecm_gelu_tanh_forward(o, xi, (size_t)n);
    else if (!strcmp(name, "gelu_erf")) ecm_gelu_erf_forward(o, xi, (size_t)n);
    else if (!strcmp(name, "silu")) ecm_silu_forward(o, xi, (size_t)n);
    else if (!strcmp(name, "exp")) ecm_vexp(o, xi, (size_t)n);
    else if (!strcmp(name, "swiglu")) ecm_swiglu_forward(o, xi, rows, cols / 2);
    else if (!strcmp(name, "softmax")) {
        memcpy(o, xi, (size_t)n * sizeof(float));
        ecm_softmax_forward(o, rows, cols, cols);
    } else if (is_rope) {
        int T = (int)PyArray_DIM(x, 0), H = (int)PyArray_DIM(x, 1), D = (int)PyArray_DIM(x, 2);
        float inv_freq[512];
        ecm_rope_config rc = {(float)eps, ECM_ROPE_NONE, 1.0f, 1.0f, 4.0f, 0};
        ecm_rope_inv_freq(inv_freq, D, &rc);
        memcpy(o, xi, (size_t)n * sizeof(float));
        ecm_rope_forward(o, H * D, PyArray_DATA(w), inv_freq, T, H, D, 0);
    } else ok = 0;
    Py_END_ALLOW_THREADS
    if (!ok) {
        Py_CLEAR(out);
        ecm_py_bad_request("unknown op '%s'", name);
    }
done:
    Py_XDECREF(x);
    Py_XDECREF(w);
    Py_XDECREF(b);
    return (PyObject *)out;
}

static PyMethodDef ops_methods[] = {
    {"op", (PyCFunction)(void (*)(void))py_op, METH_VARARGS | METH_KEYWORDS,
     "op(name, x, weight=None, bias=None, eps=1e-5, n_threads=None): run one engine kernel (for tests)"},
    {NULL, NULL, 0, NULL},
};

int ecm_py_ops_init(PyObject *module) { return PyModule_AddFunctions(module, ops_methods); }
