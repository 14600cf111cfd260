/* py_common.h: shared helpers of the CPython binding (module.c and py_*.c).
 * Only binding files include Python.h; the engine never does. */
#ifndef ECM_PY_COMMON_H
#define ECM_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#ifndef ECM_PY_MAIN_FILE
#define NO_IMPORT_ARRAY
#endif
#define PY_ARRAY_UNIQUE_SYMBOL ecm_numpy_api
#include <numpy/arrayobject.h>

#include "ecm.h"
#include "model.h"

/* Raise the ecomlm.errors class that matches `status`, with the engine's
 * thread-local message, and return NULL. */
PyObject *ecm_py_raise(ecm_status status);
/* Raise ecomlm.errors.BadRequestError (a ValueError) with a formatted message. */
PyObject *ecm_py_bad_request(const char *fmt, ...);

/* Borrow a C-contiguous array of `type` from `obj` (converting when needed).
 * Returns a new reference or NULL with an exception set naming `what`. */
PyArrayObject *ecm_py_array(PyObject *obj, int type, int min_dims, int max_dims,
                            const char *what);

/* Thread-count argument: None or <= 0 means the default. */
int ecm_py_threads(PyObject *obj, int *out);

/* Config dicts (py_model.c): an int / float field of dict d, with a default
 * unless required; and a whole engine configuration. -1 with an exception
 * naming the field on failure. */
int ecm_py_dict_int(PyObject *d, const char *key, int *out, int required, int dflt);
int ecm_py_dict_float(PyObject *d, const char *key, float *out, float dflt);
int ecm_py_parse_config(PyObject *d, ecm_config *c);

/* Registration hooks: each py_*.c adds its types and functions. */
int ecm_py_safetensors_init(PyObject *module);
int ecm_py_gguf_init(PyObject *module);
int ecm_py_model_init(PyObject *module);
int ecm_py_ops_init(PyObject *module);
int ecm_py_sampling_init(PyObject *module);
int ecm_py_train_init(PyObject *module);
int ecm_py_tokenizer_init(PyObject *module);

#endif
