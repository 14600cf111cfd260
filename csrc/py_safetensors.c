/* py_safetensors.c: _core.SafeTensors, a validated, memory-mapped
 * safetensors file whose tensors are handed out as zero-copy NumPy views. */
#include "py_common.h"

typedef struct {
    PyObject_HEAD
    ecm_mmap map;
    ecm_safetensors st;
    int open;
} SafeTensorsObject;

static int npy_type_of(ecm_dtype t) {
    switch (t) {
    case ECM_DTYPE_F32: return NPY_FLOAT32;
    case ECM_DTYPE_F16: return NPY_FLOAT16;
    case ECM_DTYPE_BF16: return NPY_UINT16; /* raw bits; ecomlm converts */
    case ECM_DTYPE_F64: return NPY_FLOAT64;
    case ECM_DTYPE_I64: return NPY_INT64;
    case ECM_DTYPE_I32: return NPY_INT32;
    case ECM_DTYPE_I16: return NPY_INT16;
    case ECM_DTYPE_I8: return NPY_INT8;
    case ECM_DTYPE_U8: return NPY_UINT8;
    case ECM_DTYPE_BOOL: return NPY_BOOL;
    default: return -1;
    }
}

static int st_init(SafeTensorsObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", NULL};
    PyObject *pathobj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&", kwlist, PyUnicode_FSConverter, &pathobj))
        return -1;
    if (self->open) {
        ecm_safetensors_free(&self->st);
        ecm_mmap_close(&self->map);
        self->open = 0;
    }
    const char *path = PyBytes_AS_STRING(pathobj);
    ecm_status s;
    Py_BEGIN_ALLOW_THREADS
    s = ecm_mmap_open(&self->map, path);
    if (s == ECM_OK) {
        s = ecm_safetensors_parse(&self->st, self->map.data, self->map.size);
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

static void st_dealloc(SafeTensorsObject *self) {
    if (self->open) {
        ecm_safetensors_free(&self->st);
        ecm_mmap_close(&self->map);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_open(SafeTensorsObject *self) {
    if (!self->open) {
        ecm_py_bad_request("the safetensors file is closed");
        return 0;
    }
    return 1;
}

static PyObject *st_names(SafeTensorsObject *self, PyObject *args) {
    (void)args;
    if (!check_open(self)) return NULL;
    PyObject *list = PyList_New(self->st.n_tensors);
    if (!list) return NULL;
    for (int i = 0; i < self->st.n_tensors; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(self->st.tensors[i].name, (Py_ssize_t)strlen(self->st.tensors[i].name),
                                           "surrogateescape");
        if (!s) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, s);
    }
    return list;
}

static const ecm_st_tensor *lookup(SafeTensorsObject *self, PyObject *nameobj) {
    if (!check_open(self)) return NULL;
    const char *name = PyUnicode_AsUTF8(nameobj);
    if (!name) return NULL;
    int i = ecm_safetensors_find(&self->st, name);
    if (i < 0) {
        ecm_fail(ECM_ERR_NOT_FOUND, "no tensor named '%s' in the safetensors file", name);
        ecm_py_raise(ECM_ERR_NOT_FOUND);
        return NULL;
    }
    return &self->st.tensors[i];
}

static PyObject *st_info(SafeTensorsObject *self, PyObject *nameobj) {
    const ecm_st_tensor *t = lookup(self, nameobj);
    if (!t) return NULL;
    PyObject *shape = PyTuple_New(t->n_dims);
    if (!shape) return NULL;
    for (int d = 0; d < t->n_dims; d++) PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(t->shape[d]));
    return Py_BuildValue("(sN)", ecm_dtype_name(t->dtype), shape);
}

static PyObject *st_tensor(SafeTensorsObject *self, PyObject *nameobj) {
    const ecm_st_tensor *t = lookup(self, nameobj);
    if (!t) return NULL;
    npy_intp dims[ECM_MAX_DIMS];
    for (int d = 0; d < t->n_dims; d++) dims[d] = (npy_intp)t->shape[d];
    int type = npy_type_of(t->dtype);
    const uint8_t *p = self->st.data + t->offset;
    size_t esize = ecm_dtype_size(t->dtype);
    PyObject *arr;
    if (((uintptr_t)p % esize) != 0) {
        /* The format does not promise alignment: copy rather than hand NumPy a
         * misaligned view. */
        arr = PyArray_SimpleNew(t->n_dims, dims, type);
        if (!arr) return NULL;
        memcpy(PyArray_DATA((PyArrayObject *)arr), p, t->nbytes);
        PyArray_CLEARFLAGS((PyArrayObject *)arr, NPY_ARRAY_WRITEABLE); /* same contract as a view */
        return arr;
    }
    arr = PyArray_New(&PyArray_Type, t->n_dims, dims, type, NULL, (void *)p, 0,
                      NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED, NULL);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *st_metadata(SafeTensorsObject *self, PyObject *args) {
    (void)args;
    if (!check_open(self)) return NULL;
    if (!self->st.metadata_json) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(self->st.metadata_json, (Py_ssize_t)strlen(self->st.metadata_json),
                                "replace");
}

static PyMethodDef st_methods[] = {
    {"names", (PyCFunction)st_names, METH_NOARGS, "Tensor names, in file order."},
    {"info", (PyCFunction)st_info, METH_O, "info(name) -> (dtype name, shape)"},
    {"tensor", (PyCFunction)st_tensor, METH_O,
     "tensor(name) -> read-only NumPy view (BF16 comes back as uint16 bits)"},
    {"metadata_json", (PyCFunction)st_metadata, METH_NOARGS, "The __metadata__ object as JSON text, or None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SafeTensorsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.SafeTensors",
    .tp_basicsize = sizeof(SafeTensorsObject),
    .tp_dealloc = (destructor)st_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SafeTensors(path): a validated, memory-mapped safetensors file.",
    .tp_methods = st_methods,
    .tp_init = (initproc)st_init,
    .tp_new = PyType_GenericNew,
};

int ecm_py_safetensors_init(PyObject *module) {
    if (PyType_Ready(&SafeTensorsType) < 0) return -1;
    Py_INCREF(&SafeTensorsType);
    if (PyModule_AddObject(module, "SafeTensors", (PyObject *)&SafeTensorsType) < 0) {
        Py_DECREF(&SafeTensorsType);
        return -1;
    }
    return 0;
}
