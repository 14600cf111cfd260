/* py_train.c: _core.Trainer, the training state of one decoder, or of a
 * bert encoder with a classification head (train.h),
 * and _core.lr_schedule. Parameters, gradients and Adam moments come back as
 * zero-copy NumPy views of the C slabs (they keep the Trainer alive). */
#include "py_common.h"
#include "train.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    PyObject_HEAD
    ecm_train tr;
    int ready; /* every tensor set */
    int closed; /* close() was called: the slabs live on until the last view is gone */
    int busy;  /* a computation runs with the GIL released */
} TrainerObject;

static PyTypeObject TrainerType;

/* The engine config dict (as _core.Model takes it) into an ecm_config. */
static int parse_lora(PyObject *d, ecm_lora_config *l) {
    memset(l, 0, sizeof *l);
    if (!PyDict_Check(d)) {
        ecm_py_bad_request("lora must be a dict (rank, alpha, dropout, targets, seed)");
        return -1;
    }
    int seed = 0;
    if (ecm_py_dict_int(d, "rank", &l->rank, 0, 8) || ecm_py_dict_float(d, "alpha", &l->alpha, 16.0f) ||
        ecm_py_dict_float(d, "dropout", &l->dropout, 0.0f) || ecm_py_dict_int(d, "seed", &seed, 0, 0))
        return -1;
    l->seed = (uint64_t)(uint32_t)seed;
    PyObject *targets = PyDict_GetItemString(d, "targets");
    if (!targets || targets == Py_None) {
        l->targets = (1u << ECM_LORA_Q) | (1u << ECM_LORA_V);
        return 0;
    }
    PyObject *seq = PySequence_Fast(targets, "lora targets must be a list of names");
    if (!seq) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        const char *name = PyUnicode_Check(PySequence_Fast_GET_ITEM(seq, i))
                               ? PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i))
                               : NULL;
        int found = -1;
        for (int t = 0; name && t < ECM_LORA_N_TARGETS; t++)
            if (!strcmp(name, ecm_lora_target_names[t])) found = t;
        if (found < 0) {
            Py_DECREF(seq);
            PyErr_Clear();
            ecm_py_bad_request("unknown lora target %R (q, k, v, o, gate, up, down)", PySequence_Fast_GET_ITEM(seq, i));
            return -1;
        }
        l->targets |= 1u << found;
    }
    Py_DECREF(seq);
    return 0;
}

static int trainer_init(TrainerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"config", "n_threads", "tie_embeddings", "lora", "num_labels", "multi_label", NULL};
    PyObject *cfgobj, *nto = Py_None, *loraobj = Py_None;
    int tied = 0, n_labels = 0, multi = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OpOip", kwlist, &cfgobj, &nto, &tied, &loraobj, &n_labels, &multi))
        return -1;
    if (self->busy) {
        ecm_py_bad_request("the trainer is busy");
        return -1;
    }
    ecm_train_free(&self->tr);
    self->ready = 0;
    self->closed = 0;
    ecm_config cfg;
    ecm_lora_config lcfg;
    int nt;
    if (ecm_py_parse_config(cfgobj, &cfg) < 0 || ecm_py_threads(nto, &nt) < 0) return -1;
    if (loraobj != Py_None && parse_lora(loraobj, &lcfg) < 0) return -1;
    ecm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_train_init_head(&self->tr, &cfg, tied, n_labels, loraobj != Py_None ? &lcfg : NULL);
    Py_END_ALLOW_THREADS
    if (st != ECM_OK) {
        ecm_py_raise(st);
        return -1;
    }
    self->tr.n_threads = nt;
    if (multi && cfg.arch != ECM_ARCH_BERT) {
        ecm_train_free(&self->tr);
        ecm_py_bad_request("multi_label applies to a bert classifier");
        return -1;
    }
    self->tr.multi_label = multi;
    return 0;
}

static void trainer_dealloc(TrainerObject *self) {
    ecm_train_free(&self->tr);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int usable(TrainerObject *self, int need_ready) {
    if (!self->tr.params || self->closed) {
        ecm_py_bad_request("the trainer is closed");
        return 0;
    }
    if (self->busy) {
        ecm_py_bad_request("the trainer is in use by another thread");
        return 0;
    }
    if (need_ready && !self->ready) {
        ecm_py_bad_request("the trainer's weights are not all loaded (call finalize())");
        return 0;
    }
    return 1;
}

static PyObject *trainer_slots(TrainerObject *self, PyObject *args) {
    (void)args;
    if (!usable(self, 0)) return NULL;
    PyObject *list = PyList_New(self->tr.n_tensors);
    if (!list) return NULL;
    for (int i = 0; i < self->tr.n_tensors; i++) {
        const ecm_ttensor *t = &self->tr.tensors[i];
        PyObject *item = t->cols ? Py_BuildValue("(s(ii))", t->name, t->rows, t->cols)
                                 : Py_BuildValue("(s(i))", t->name, t->rows);
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static int find(TrainerObject *self, const char *name) {
    int i = ecm_train_find(&self->tr, name);
    if (i < 0) {
        ecm_fail(ECM_ERR_NOT_FOUND, "the trainer has no tensor named '%s'", name);
        ecm_py_raise(ECM_ERR_NOT_FOUND);
    }
    return i;
}

/* set_tensor(name, array, transposed=False): any float array, copied as fp32. */
static PyObject *trainer_set_tensor(TrainerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"name", "array", "transposed", NULL};
    const char *name;
    PyObject *obj;
    int transposed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO|p", kwlist, &name, &obj, &transposed)) return NULL;
    if (!usable(self, 0)) return NULL;
    int i = find(self, name);
    if (i < 0) return NULL;
    ecm_ttensor *t = &self->tr.tensors[i];
    PyArrayObject *arr = ecm_py_array(obj, NPY_FLOAT32, t->cols ? 2 : 1, t->cols ? 2 : 1, name);
    if (!arr) return NULL;
    npy_intp r = PyArray_DIM(arr, 0), c = t->cols ? PyArray_DIM(arr, 1) : 0;
    int ok = t->cols ? (transposed ? (r == t->cols && c == t->rows) : (r == t->rows && c == t->cols)) : r == t->rows;
    if (!ok) {
        Py_DECREF(arr);
        return ecm_py_bad_request("tensor '%s' must have shape (%d, %d)%s", name, transposed && t->cols ? t->cols : t->rows,
                                  transposed && t->cols ? t->rows : t->cols, transposed ? " (transposed)" : "");
    }
    const float *src = PyArray_DATA(arr);
    if (t->cols && transposed) {
        for (int a = 0; a < t->rows; a++)
            for (int b = 0; b < t->cols; b++) t->p[(size_t)a * t->cols + b] = src[(size_t)b * t->rows + a];
    } else {
        memcpy(t->p, src, (size_t)t->rows * (t->cols ? t->cols : 1) * sizeof(float));
    }
    t->set = 1;
    Py_DECREF(arr);
    Py_RETURN_NONE;
}

static PyObject *trainer_finalize(TrainerObject *self, PyObject *args) {
    (void)args;
    if (!usable(self, 0)) return NULL;
    ecm_status st = ecm_train_check_complete(&self->tr);
    if (st != ECM_OK) return ecm_py_raise(st);
    self->ready = 1;
    Py_RETURN_NONE;
}

static PyObject *trainer_close(TrainerObject *self, PyObject *args) {
    (void)args;
    if (self->busy) return ecm_py_bad_request("the trainer is in use by another thread");
    /* NumPy views of the parameter slabs hold a reference to the trainer:
     * the slabs are freed with the object, the activations now. */
    ecm_train_release_activations(&self->tr);
    self->closed = 1;
    self->ready = 0;
    Py_RETURN_NONE;
}

/* The batch arrays: ids, targets (B, T) int; mask (B, T) or None. */
static int batch(PyObject *ido, PyObject *tgo, PyObject *mko, PyArrayObject **ids, PyArrayObject **tg,
                 PyArrayObject **mk) {
    *ids = *tg = *mk = NULL;
    *ids = ecm_py_array(ido, NPY_INT32, 1, 2, "input_ids");
    if (!*ids) return -1;
    *tg = ecm_py_array(tgo, NPY_INT32, 1, 2, "targets");
    if (!*tg) return -1;
    if (!PyArray_SAMESHAPE(*ids, *tg)) {
        ecm_py_bad_request("targets must have the shape of input_ids");
        return -1;
    }
    if (mko != Py_None) {
        *mk = ecm_py_array(mko, NPY_UINT8, 1, 2, "loss_mask");
        if (!*mk) return -1;
        if (!PyArray_SAMESHAPE(*ids, *mk)) {
            ecm_py_bad_request("loss_mask must have the shape of input_ids");
            return -1;
        }
    }
    if (PyArray_SIZE(*ids) == 0) {
        ecm_py_bad_request("input_ids must not be empty");
        return -1;
    }
    return 0;
}

/* bert: forward(input_ids, labels=None, attention_mask=None, token_type_ids=None, grad_scale=1.0).
 * input_ids (B, T) or (T); labels (B): class ids, or float values for a
 * regression head (num_labels 1); None: logits only (no backward). */
static PyObject *run_bert_batch(TrainerObject *self, PyObject *args, PyObject *kw, int do_backward) {
    static char *kwlist[] = {"input_ids", "labels", "attention_mask", "token_type_ids", "grad_scale", NULL};
    PyObject *ido, *lbo = Py_None, *mko = Py_None, *tyo = Py_None;
    float grad_scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOOf", kwlist, &ido, &lbo, &mko, &tyo, &grad_scale)) return NULL;
    if (!usable(self, 1)) return NULL;
    PyArrayObject *ids = NULL, *lb = NULL, *mk = NULL, *ty = NULL;
    PyObject *result = NULL;
    int multi = self->tr.multi_label, regression = self->tr.n_labels == 1 && !multi;
    ids = ecm_py_array(ido, NPY_INT32, 1, 2, "input_ids");
    if (!ids) goto done;
    int nd = PyArray_NDIM(ids);
    npy_intp B = nd == 2 ? PyArray_DIM(ids, 0) : 1, T = PyArray_DIM(ids, nd - 1);
    if (B == 0 || T == 0) {
        ecm_py_bad_request("input_ids must not be empty");
        goto done;
    }
    if (B > INT32_MAX || T > INT32_MAX) {
        ecm_py_bad_request("the batch is too large");
        goto done;
    }
    if (mko != Py_None) {
        mk = ecm_py_array(mko, NPY_UINT8, 1, 2, "attention_mask");
        if (!mk) goto done;
        if (!PyArray_SAMESHAPE(ids, mk)) {
            ecm_py_bad_request("attention_mask must have the shape of input_ids");
            goto done;
        }
    }
    if (tyo != Py_None) {
        ty = ecm_py_array(tyo, NPY_INT32, 1, 2, "token_type_ids");
        if (!ty) goto done;
        if (!PyArray_SAMESHAPE(ids, ty)) {
            ecm_py_bad_request("token_type_ids must have the shape of input_ids");
            goto done;
        }
    }
    if (lbo != Py_None) {
        if (!regression && !multi) { /* class ids: refuse floats rather than truncate them */
            PyArrayObject *raw = (PyArrayObject *)PyArray_FROM_O(lbo);
            if (!raw) {
                PyErr_Clear();
                ecm_py_bad_request("labels must be an array of class ids");
                goto done;
            }
            int kind = PyArray_DESCR(raw)->kind;
            npy_intp n = PyArray_SIZE(raw);
            Py_DECREF(raw);
            if (n > 0 && kind != 'i' && kind != 'u' && kind != 'b') {
                ecm_py_bad_request("labels must be integer class ids for a classifier of %d classes",
                                   self->tr.n_labels);
                goto done;
            }
        }
        lb = ecm_py_array(lbo, regression || multi ? NPY_FLOAT32 : NPY_INT32, multi ? 2 : 0, multi ? 2 : 1, "labels");
        if (!lb) goto done;
        if (multi && (PyArray_DIM(lb, 0) != B || PyArray_DIM(lb, 1) != self->tr.n_labels)) {
            ecm_py_bad_request("labels of a multi-label head must have shape (%ld, %d)", (long)B, self->tr.n_labels);
            goto done;
        }
        if (!multi && PyArray_SIZE(lb) != B) {
            ecm_py_bad_request("labels must have one entry per sequence: %ld, got %ld", (long)B,
                               (long)PyArray_SIZE(lb));
            goto done;
        }
    } else if (do_backward) {
        ecm_py_bad_request("forward_backward() needs labels");
        goto done;
    }
    float loss = 0.0f;
    ecm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_bert_train_forward(&self->tr, PyArray_DATA(ids), ty ? PyArray_DATA(ty) : NULL,
                                mk ? PyArray_DATA(mk) : NULL, lb && !regression && !multi ? PyArray_DATA(lb) : NULL,
                                lb && (regression || multi) ? PyArray_DATA(lb) : NULL, (int)B, (int)T, &loss);
    if (st == ECM_OK && do_backward) st = ecm_bert_train_backward(&self->tr, grad_scale);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ECM_OK) {
        ecm_py_raise(st);
        goto done;
    }
    if (lb) {
        result = PyFloat_FromDouble(loss);
    } else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    Py_XDECREF(ids);
    Py_XDECREF(lb);
    Py_XDECREF(mk);
    Py_XDECREF(ty);
    return result;
}

static PyObject *run_batch(TrainerObject *self, PyObject *args, PyObject *kw, int do_backward) {
    if (self->tr.cfg.arch == ECM_ARCH_BERT && self->tr.params) return run_bert_batch(self, args, kw, do_backward);
    static char *kwlist[] = {"input_ids", "targets", "loss_mask", "grad_scale", NULL};
    PyObject *ido, *tgo, *mko = Py_None;
    float grad_scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Of", kwlist, &ido, &tgo, &mko, &grad_scale)) return NULL;
    if (!usable(self, 1)) return NULL;
    PyArrayObject *ids, *tg, *mk;
    PyObject *result = NULL;
    if (batch(ido, tgo, mko, &ids, &tg, &mk) < 0) goto done;
    int nd = PyArray_NDIM(ids);
    npy_intp B = nd == 2 ? PyArray_DIM(ids, 0) : 1, T = PyArray_DIM(ids, nd - 1);
    if (B > INT32_MAX || T > INT32_MAX) {
        ecm_py_bad_request("the batch is too large");
        goto done;
    }
    float loss = 0.0f;
    ecm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_train_forward(&self->tr, PyArray_DATA(ids), PyArray_DATA(tg), mk ? PyArray_DATA(mk) : NULL, (int)B,
                           (int)T, &loss);
    if (st == ECM_OK && do_backward) st = ecm_train_backward(&self->tr, grad_scale);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ECM_OK) {
        ecm_py_raise(st);
        goto done;
    }
    result = PyFloat_FromDouble(loss);
done:
    Py_XDECREF(ids);
    Py_XDECREF(tg);
    Py_XDECREF(mk);
    return result;
}

static PyObject *trainer_forward(TrainerObject *self, PyObject *args, PyObject *kw) {
    return run_batch(self, args, kw, 0);
}

static PyObject *trainer_forward_backward(TrainerObject *self, PyObject *args, PyObject *kw) {
    return run_batch(self, args, kw, 1);
}

static PyObject *trainer_backward(TrainerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"grad_scale", NULL};
    float grad_scale = 1.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|f", kwlist, &grad_scale)) return NULL;
    if (!usable(self, 1)) return NULL;
    ecm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_train_backward(&self->tr, grad_scale);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ECM_OK) return ecm_py_raise(st);
    Py_RETURN_NONE;
}

/* logits() -> (B, num_labels) copy of the last bert forward's logits. */
static PyObject *trainer_logits(TrainerObject *self, PyObject *args) {
    (void)args;
    if (!usable(self, 1)) return NULL;
    if (self->tr.cfg.arch != ECM_ARCH_BERT) return ecm_py_bad_request("logits() is for a classifier (bert) trainer");
    if (!self->tr.BA.logits) return ecm_py_bad_request("logits() needs a forward() first");
    npy_intp dims[2] = {self->tr.B, self->tr.n_labels};
    PyObject *arr = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!arr) return NULL;
    memcpy(PyArray_DATA((PyArrayObject *)arr), self->tr.BA.logits, (size_t)dims[0] * dims[1] * sizeof(float));
    return arr;
}

static PyObject *trainer_zero_grad(TrainerObject *self, PyObject *args) {
    (void)args;
    if (!usable(self, 0)) return NULL;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    ecm_train_zero_grad(&self->tr);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    Py_RETURN_NONE;
}

static PyObject *trainer_step(TrainerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm", NULL};
    ecm_adamw h = {0.0f, 0.9f, 0.999f, 1e-8f, 0.0f};
    float max_norm = 0.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "f|fffff", kwlist, &h.lr, &h.beta1, &h.beta2, &h.eps,
                                     &h.weight_decay, &max_norm))
        return NULL;
    if (!usable(self, 1)) return NULL;
    float norm = 0.0f;
    ecm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    st = ecm_train_step(&self->tr, &h, max_norm, &norm);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ECM_OK) return ecm_py_raise(st);
    return PyFloat_FromDouble(norm);
}

static PyObject *view(TrainerObject *self, float *data, const ecm_ttensor *t) {
    npy_intp dims[2] = {t->rows, t->cols};
    PyObject *arr = PyArray_SimpleNewFromData(t->cols ? 2 : 1, dims, NPY_FLOAT32, data);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* which: 0 parameters, 1 gradients, 2 Adam m, 3 Adam v: {name: view}. */
static PyObject *views(TrainerObject *self, int which) {
    if (!usable(self, 0)) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (int i = 0; i < self->tr.n_tensors; i++) {
        const ecm_ttensor *t = &self->tr.tensors[i];
        float *data = which == 0 ? t->p : which == 1 ? t->g : which == 2 ? t->m : t->v;
        if (!data) continue;
        PyObject *a = view(self, data, t);
        if (!a || PyDict_SetItemString(d, t->name, a) < 0) {
            Py_XDECREF(a);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(a);
    }
    return d;
}

static PyObject *trainer_parameters(TrainerObject *self, PyObject *args) { (void)args; return views(self, 0); }
static PyObject *trainer_gradients(TrainerObject *self, PyObject *args) { (void)args; return views(self, 1); }
static PyObject *trainer_adam_m(TrainerObject *self, PyObject *args) { (void)args; return views(self, 2); }
static PyObject *trainer_adam_v(TrainerObject *self, PyObject *args) { (void)args; return views(self, 3); }

/* export(name, merged=True) -> a copy, LoRA adapters merged into base weights. */
static PyObject *trainer_export(TrainerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"name", "merged", NULL};
    const char *name;
    int merged = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p", kwlist, &name, &merged)) return NULL;
    if (!usable(self, 0)) return NULL;
    int i = find(self, name);
    if (i < 0) return NULL;
    const ecm_ttensor *t = &self->tr.tensors[i];
    npy_intp dims[2] = {t->rows, t->cols};
    PyObject *arr = PyArray_SimpleNew(t->cols ? 2 : 1, dims, NPY_FLOAT32);
    if (!arr) return NULL;
    ecm_train_export(&self->tr, i, PyArray_DATA((PyArrayObject *)arr), merged);
    return arr;
}

#define GETTER(fname, expr)                                                                                           \
    static PyObject *fname(TrainerObject *self, void *closure) {                                                      \
        (void)closure;                                                                                                \
        return expr;                                                                                                  \
    }
GETTER(get_n_threads, PyLong_FromLong(self->tr.n_threads))
GETTER(get_adam_step, PyLong_FromLong(self->tr.adam_t))
GETTER(get_n_trainable, PyLong_FromSize_t(self->tr.n_trainable))
GETTER(get_tied, PyBool_FromLong(self->tr.tied))
GETTER(get_num_labels, PyLong_FromLong(self->tr.n_labels))
GETTER(get_multi_label, PyBool_FromLong(self->tr.multi_label))
GETTER(get_lora_scale, PyFloat_FromDouble(self->tr.lora_on ? self->tr.lora_scale : 0.0))
GETTER(get_is_lora, PyBool_FromLong(self->tr.lora_on))
GETTER(get_forward_count, PyLong_FromUnsignedLongLong(self->tr.fwd_count))
GETTER(get_state_bytes,
       PyLong_FromSize_t((self->tr.n_params + 3 * self->tr.grad_floats + self->tr.acts_floats + self->tr.work_floats) * 4))

static int set_n_threads(TrainerObject *self, PyObject *v, void *closure) {
    (void)closure;
    int nt;
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete n_threads");
        return -1;
    }
    if (ecm_py_threads(v, &nt) < 0) return -1;
    self->tr.n_threads = nt;
    return 0;
}

static int set_long_field(PyObject *v, long lo, long *out, const char *what) {
    if (!v) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", what);
        return -1;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (x < lo || x > INT32_MAX) {
        ecm_py_bad_request("%s must be >= %ld", what, lo);
        return -1;
    }
    *out = x;
    return 0;
}

static PyObject *get_dropout(TrainerObject *self, void *closure) {
    (void)closure;
    return PyFloat_FromDouble(self->tr.hidden_dropout);
}

static int set_dropout(TrainerObject *self, PyObject *v, void *closure) {
    (void)closure;
    if (!v) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete dropout");
        return -1;
    }
    double p = PyFloat_AsDouble(v);
    if (p == -1.0 && PyErr_Occurred()) return -1;
    if (!(p >= 0.0 && p < 1.0)) {
        char num[32];                       /* PyUnicode_FromFormat has no %g */
        snprintf(num, sizeof num, "%g", p);
        ecm_py_bad_request("dropout must be in [0, 1), got %s", num);
        return -1;
    }
    if (p > 0.0 && self->tr.cfg.arch != ECM_ARCH_BERT) {
        ecm_py_bad_request("dropout applies to a bert classifier's trainer");
        return -1;
    }
    self->tr.hidden_dropout = (float)p;
    return 0;
}

/* Restored from a checkpoint: the Adam step count and the forward count
 * (which names the dropout draws) continue where the run stopped. */
static int set_adam_step(TrainerObject *self, PyObject *v, void *closure) {
    (void)closure;
    long x;
    if (set_long_field(v, 0, &x, "adam_step") < 0) return -1;
    self->tr.adam_t = (int)x;
    return 0;
}

static int set_forward_count(TrainerObject *self, PyObject *v, void *closure) {
    (void)closure;
    long x;
    if (set_long_field(v, 0, &x, "forward_count") < 0) return -1;
    self->tr.fwd_count = (uint64_t)x;
    return 0;
}

static PyMethodDef trainer_methods[] = {
    {"slots", (PyCFunction)trainer_slots, METH_NOARGS, "[(name, shape)] of every tensor (base and LoRA)."},
    {"set_tensor", (PyCFunction)(void (*)(void))trainer_set_tensor, METH_VARARGS | METH_KEYWORDS,
     "set_tensor(name, array, transposed=False)"},
    {"finalize", (PyCFunction)trainer_finalize, METH_NOARGS, "Check every tensor is set."},
    {"close", (PyCFunction)trainer_close, METH_NOARGS, "Free the training state."},
    {"forward", (PyCFunction)(void (*)(void))trainer_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(input_ids, targets, loss_mask=None) -> mean loss over the counted tokens"},
    {"backward", (PyCFunction)(void (*)(void))trainer_backward, METH_VARARGS | METH_KEYWORDS,
     "backward(grad_scale=1.0): gradients += grad_scale * d(loss) of the last forward"},
    {"forward_backward", (PyCFunction)(void (*)(void))trainer_forward_backward, METH_VARARGS | METH_KEYWORDS,
     "forward_backward(input_ids, targets, loss_mask=None, grad_scale=1.0) -> loss"},
    {"logits", (PyCFunction)trainer_logits, METH_NOARGS,
     "logits() -> (B, num_labels) logits of the last forward (bert classifier)"},
    {"zero_grad", (PyCFunction)trainer_zero_grad, METH_NOARGS, "Set every gradient to zero."},
    {"step", (PyCFunction)(void (*)(void))trainer_step, METH_VARARGS | METH_KEYWORDS,
     "step(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, max_grad_norm=0.0) -> gradient norm"},
    {"parameters", (PyCFunction)trainer_parameters, METH_NOARGS, "{name: writable view of the parameter}"},
    {"gradients", (PyCFunction)trainer_gradients, METH_NOARGS, "{name: view of the gradient} (trainable only)"},
    {"adam_m", (PyCFunction)trainer_adam_m, METH_NOARGS, "{name: view of Adam's first moment}"},
    {"adam_v", (PyCFunction)trainer_adam_v, METH_NOARGS, "{name: view of Adam's second moment}"},
    {"export", (PyCFunction)(void (*)(void))trainer_export, METH_VARARGS | METH_KEYWORDS,
     "export(name, merged=True) -> copy of a tensor, LoRA merged into base weights"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef trainer_getset[] = {
    {"n_threads", (getter)get_n_threads, (setter)set_n_threads, "OpenMP threads per call", NULL},
    {"adam_step", (getter)get_adam_step, (setter)set_adam_step, "optimizer steps taken", NULL},
    {"forward_count", (getter)get_forward_count, (setter)set_forward_count, "forward passes run", NULL},
    {"n_trainable", (getter)get_n_trainable, NULL, "trainable parameters", NULL},
    {"tied", (getter)get_tied, NULL, "lm_head shares tok_embd", NULL},
    {"multi_label", (getter)get_multi_label, NULL, "bert: independent sigmoids with binary cross-entropy", NULL},
    {"dropout", (getter)get_dropout, (setter)set_dropout,
     "bert: hidden dropout of labelled forwards (embeddings, attention and MLP outputs, pooled output); "
     "forwards without labels never drop", NULL},
    {"num_labels", (getter)get_num_labels, NULL, "classes of a bert classifier's head (1: regression), 0 for decoders",
     NULL},
    {"is_lora", (getter)get_is_lora, NULL, "LoRA over a frozen base", NULL},
    {"lora_scale", (getter)get_lora_scale, NULL, "alpha / rank", NULL},
    {"state_bytes", (getter)get_state_bytes, NULL, "bytes of parameters, gradients, moments, activations", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TrainerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.Trainer",
    .tp_basicsize = sizeof(TrainerObject),
    .tp_dealloc = (destructor)trainer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Trainer(config, n_threads=None, tie_embeddings=False, lora=None, num_labels=0, multi_label=False): "
              "training state of a decoder, or of a bert encoder with a classification head of num_labels classes "
              "(1: regression; multi_label: independent sigmoids, labels (B, num_labels) in [0, 1]).\n"
              "bert: forward(input_ids, labels=None, attention_mask=None, token_type_ids=None, grad_scale=1.0).",
    .tp_methods = trainer_methods,
    .tp_getset = trainer_getset,
    .tp_init = (initproc)trainer_init,
    .tp_new = PyType_GenericNew,
};

static PyObject *py_lr_schedule(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"step", "lr", "min_lr", "warmup", "total", NULL};
    int step, warmup = 0, total = 0;
    float lr, min_lr = 0.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "if|fii", kwlist, &step, &lr, &min_lr, &warmup, &total)) return NULL;
    return PyFloat_FromDouble(ecm_lr_schedule(step, lr, min_lr, warmup, total));
}

/* train_gemm(a[M,K], b, b_trans=False, out=None, n_threads=None): out (+)= a @ op(b),
 * op(b) = b^T for b [N, K], b for b [K, N] (b_trans); with out given, accumulates
 * into it. The training GEMM with on-the-fly packing, exposed for tests and benchmarks. */
static PyObject *py_train_gemm(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"a", "b", "b_trans", "out", "n_threads", NULL};
    PyObject *ao, *bo, *oo = Py_None, *nto = Py_None;
    int bt = 0, nt;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|pOO", kwlist, &ao, &bo, &bt, &oo, &nto)) return NULL;
    if (ecm_py_threads(nto, &nt) < 0) return NULL;
    PyArrayObject *a = ecm_py_array(ao, NPY_FLOAT32, 2, 2, "a"), *b = a ? ecm_py_array(bo, NPY_FLOAT32, 2, 2, "b") : NULL;
    PyArrayObject *out = NULL;
    float *work = NULL;
    if (!b) goto fail;
    npy_intp M = PyArray_DIM(a, 0), K = PyArray_DIM(a, 1), N = bt ? PyArray_DIM(b, 1) : PyArray_DIM(b, 0);
    if ((bt ? PyArray_DIM(b, 0) : PyArray_DIM(b, 1)) != K || M < 1 || N < 1 || K < 1 || M > INT32_MAX ||
        N > INT32_MAX || K > INT32_MAX) {
        ecm_py_bad_request("train_gemm: shapes do not match");
        goto fail;
    }
    if (oo != Py_None) {
        if (!PyArray_Check(oo) || PyArray_TYPE((PyArrayObject *)oo) != NPY_FLOAT32 ||
            !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)oo) || !PyArray_ISWRITEABLE((PyArrayObject *)oo) ||
            PyArray_NDIM((PyArrayObject *)oo) != 2 || PyArray_DIM((PyArrayObject *)oo, 0) != M ||
            PyArray_DIM((PyArrayObject *)oo, 1) != N) {
            ecm_py_bad_request("out must be a writable C-contiguous float32 array of shape (%ld, %ld)", (long)M, (long)N);
            goto fail;
        }
        out = (PyArrayObject *)oo;
        Py_INCREF(out);
    } else {
        npy_intp dims[2] = {M, N};
        out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
        if (!out) goto fail;
    }
    work = ecm_alloc(ecm_gemm_work_floats((int)N, (int)K) * sizeof(float));
    if (!work) {
        ecm_py_raise(ECM_ERR_NOMEM);
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    ecm_gemm_f32(PyArray_DATA(out), (int)N, PyArray_DATA(a), (int)K, PyArray_DATA(b), (int)(bt ? N : K), bt, NULL,
                 (int)M, (int)N, (int)K, oo != Py_None, work);
    Py_END_ALLOW_THREADS
    ecm_free(work);
    Py_DECREF(a);
    Py_DECREF(b);
    return (PyObject *)out;
fail:
    ecm_free(work);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(out);
    return NULL;
}

/* train_gemm_tn(dy[M,N], x[M,K], dw[N,K], n_threads=None): dw += dy^T @ x in place. */
static PyObject *py_train_gemm_tn(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"dy", "x", "dw", "n_threads", NULL};
    PyObject *dyo, *xo, *dwo, *nto = Py_None;
    int nt;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO!|O", kwlist, &dyo, &xo, &PyArray_Type, &dwo, &nto)) return NULL;
    if (ecm_py_threads(nto, &nt) < 0) return NULL;
    PyArrayObject *dy = ecm_py_array(dyo, NPY_FLOAT32, 2, 2, "dy"), *x = dy ? ecm_py_array(xo, NPY_FLOAT32, 2, 2, "x") : NULL;
    PyArrayObject *dw = (PyArrayObject *)dwo;
    float *work = NULL;
    PyObject *ret = NULL;
    if (!x) goto done;
    npy_intp M = PyArray_DIM(dy, 0), N = PyArray_DIM(dy, 1), K = PyArray_DIM(x, 1);
    if (PyArray_DIM(x, 0) != M || PyArray_TYPE(dw) != NPY_FLOAT32 || !PyArray_IS_C_CONTIGUOUS(dw) ||
        !PyArray_ISWRITEABLE(dw) || PyArray_NDIM(dw) != 2 || PyArray_DIM(dw, 0) != N || PyArray_DIM(dw, 1) != K ||
        M < 1 || N < 1 || K < 1 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
        ecm_py_bad_request("train_gemm_tn: dy (M, N), x (M, K) and a writable float32 dw (N, K) are needed");
        goto done;
    }
    work = ecm_alloc(ecm_gemm_tn_work_floats((int)M, (int)N, (int)K) * sizeof(float));
    if (!work) {
        ecm_py_raise(ECM_ERR_NOMEM);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    omp_set_num_threads(nt);
#endif
    ecm_gemm_tn_f32(PyArray_DATA(dw), (int)K, PyArray_DATA(dy), (int)N, PyArray_DATA(x), (int)K, (int)M, (int)N,
                    (int)K, work);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    ret = Py_None;
done:
    ecm_free(work);
    Py_XDECREF(dy);
    Py_XDECREF(x);
    return ret;
}

static PyMethodDef train_functions[] = {
    {"train_gemm", (PyCFunction)(void (*)(void))py_train_gemm, METH_VARARGS | METH_KEYWORDS,
     "train_gemm(a, b, b_trans=False, out=None, n_threads=None) -> a @ b.T (or a @ b), += into out"},
    {"train_gemm_tn", (PyCFunction)(void (*)(void))py_train_gemm_tn, METH_VARARGS | METH_KEYWORDS,
     "train_gemm_tn(dy, x, dw, n_threads=None): dw += dy.T @ x"},
    {"lr_schedule", (PyCFunction)(void (*)(void))py_lr_schedule, METH_VARARGS | METH_KEYWORDS,
     "lr_schedule(step, lr, min_lr=0, warmup=0, total=0): linear warm-up then cosine decay"},
    {NULL, NULL, 0, NULL},
};

int ecm_py_train_init(PyObject *module) {
    if (PyType_Ready(&TrainerType) < 0) return -1;
    Py_INCREF(&TrainerType);
    if (PyModule_AddObject(module, "Trainer", (PyObject *)&TrainerType) < 0) return -1;
    return PyModule_AddFunctions(module, train_functions);
}
