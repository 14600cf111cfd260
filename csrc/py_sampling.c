/* py_sampling.c: _core.Sampler, the sampling state of one sequence (its
 * parameters, seeded generator and scratch buffers). */
#include "py_common.h"
#include "sampling.h"

typedef struct {
    PyObject_HEAD
    ecm_sampling p;
    uint64_t rng[4];
    int V;
    int32_t *bias_ids;
    float *bias_vals;
    int n_bias;
    void *work;      /* ecm_sampling_work_bytes(V) */
    int32_t *counts; /* (V) zeroed */
    float *row;      /* (V) */
    int busy;
} SamplerObject;

static int sampler_init(SamplerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"vocab", "seed", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                             "presence_penalty", "frequency_penalty", "logit_bias", NULL};
    int V;
    unsigned long long seed = 0;
    ecm_sampling p = {1.0f, 0, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f};
    PyObject *bias = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "i|KfifffffO", kwlist, &V, &seed, &p.temperature, &p.top_k, &p.top_p,
                                     &p.min_p, &p.repetition_penalty, &p.presence_penalty, &p.frequency_penalty,
                                     &bias))
        return -1;
    if (V <= 0 || V > (1 << 24)) {
        ecm_py_bad_request("vocab must be in [1, %d], got %d", 1 << 24, V);
        return -1;
    }
    ecm_status st = ecm_sampling_check(&p);
    if (st != ECM_OK) {
        ecm_py_raise(st);
        return -1;
    }
    free(self->bias_ids);
    free(self->bias_vals);
    ecm_free(self->work);
    ecm_free(self->counts);
    ecm_free(self->row);
    self->bias_ids = NULL;
    self->bias_vals = NULL;
    self->n_bias = 0;
    self->work = ecm_alloc(ecm_sampling_work_bytes(V));
    self->counts = ecm_alloc((size_t)V * sizeof(int32_t));
    self->row = ecm_alloc((size_t)V * sizeof(float));
    if (!self->work || !self->counts || !self->row) {
        ecm_py_raise(ECM_ERR_NOMEM);
        return -1;
    }
    if (bias != Py_None) {
        if (!PyDict_Check(bias)) {
            ecm_py_bad_request("logit_bias must be a dict of token id to bias");
            return -1;
        }
        Py_ssize_t n = PyDict_Size(bias), pos = 0, i = 0;
        if (n > 300) {
            ecm_py_bad_request("logit_bias may hold at most 300 tokens, got %zd", n);
            return -1;
        }
        self->bias_ids = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
        self->bias_vals = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!self->bias_ids || !self->bias_vals) {
            PyErr_NoMemory();
            return -1;
        }
        PyObject *k, *v;
        while (PyDict_Next(bias, &pos, &k, &v)) {
            long id = PyLong_AsLong(k);
            double b = PyFloat_AsDouble(v);
            if (PyErr_Occurred()) {
                PyErr_Clear();
                ecm_py_bad_request("logit_bias must map integer token ids to numbers");
                return -1;
            }
            if (id < 0 || id >= V) {
                ecm_py_bad_request("logit_bias token %ld is out of range [0, %d)", id, V);
                return -1;
            }
            if (!(b >= -100.0 && b <= 100.0) && !isinf(b)) {
                char num[32];               /* PyUnicode_FromFormat has no %g */
                snprintf(num, sizeof num, "%g", b);
                ecm_py_bad_request("logit_bias values must be in [-100, 100], got %s for token %ld", num, id);
                return -1;
            }
            /* OpenAI: -100 bans a token, +100 forces it. */
            self->bias_ids[i] = (int32_t)id;
            self->bias_vals[i] = b <= -100.0 ? -INFINITY : (float)b;
            i++;
        }
        self->n_bias = (int)n;
    }
    self->p = p;
    self->V = V;
    ecm_rng_seed(self->rng, seed);
    return 0;
}

static void sampler_dealloc(SamplerObject *self) {
    free(self->bias_ids);
    free(self->bias_vals);
    ecm_free(self->work);
    ecm_free(self->counts);
    ecm_free(self->row);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* sample(logits (V,), history=None, top_logprobs=0, banned=None)
 *   -> (token, logprob, top_ids, top_logprobs)
 * logprob values are log-softmax of the raw logits; banned: extra token ids
 * excluded for this draw only (constrained decoding). */
static PyObject *sampler_sample(SamplerObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"logits", "history", "top_logprobs", "banned", NULL};
    PyObject *lo, *ho = Py_None, *bo = Py_None;
    int ntop = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OiO", kwlist, &lo, &ho, &ntop, &bo)) return NULL;
    if (!self->work) return ecm_py_bad_request("the sampler is not initialised");
    if (ntop < 0 || ntop > 20) return ecm_py_bad_request("top_logprobs must be in [0, 20], got %d", ntop);
    if (self->busy) return ecm_py_bad_request("the sampler is in use by another thread");
    PyArrayObject *l = ecm_py_array(lo, NPY_FLOAT32, 1, 1, "logits"), *h = NULL, *ban = NULL;
    PyObject *ret = NULL;
    if (!l) return NULL;
    if (PyArray_DIM(l, 0) != self->V) {
        ecm_py_bad_request("logits must have %d entries, got %ld", self->V, (long)PyArray_DIM(l, 0));
        goto done;
    }
    if (ho != Py_None && !(h = ecm_py_array(ho, NPY_INT32, 1, 1, "history"))) goto done;
    if (bo != Py_None && !(ban = ecm_py_array(bo, NPY_INT32, 1, 1, "banned"))) goto done;
    int nb = ban ? (int)PyArray_DIM(ban, 0) : 0;
    const int32_t *bans = ban ? PyArray_DATA(ban) : NULL;
    for (int i = 0; i < nb; i++)
        if (bans[i] < 0 || bans[i] >= self->V) {
            ecm_py_bad_request("banned token %d is out of range", bans[i]);
            goto done;
        }
    npy_intp dims[1] = {ntop};
    PyArrayObject *tid = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT32);
    PyArrayObject *tlp = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    if (!tid || !tlp) {
        Py_XDECREF(tid);
        Py_XDECREF(tlp);
        goto done;
    }
    int token = -1;
    float lp = 0.0f;
    ecm_status st;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    memcpy(self->row, PyArray_DATA(l), (size_t)self->V * sizeof(float));
    st = ecm_logits_penalize(self->row, self->V, &self->p, h ? PyArray_DATA(h) : NULL,
                             h ? (int)PyArray_DIM(h, 0) : 0, self->bias_ids, self->bias_vals, self->n_bias,
                             self->counts);
    if (st == ECM_OK) {
        for (int i = 0; i < nb; i++) self->row[bans[i]] = -INFINITY;
        token = ecm_sample_token(self->row, self->V, &self->p, self->rng, self->work);
        ecm_log_softmax_top(PyArray_DATA(l), self->V, ntop, PyArray_DATA(tid), PyArray_DATA(tlp), token, &lp,
                            self->work);
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (st != ECM_OK) {
        Py_DECREF(tid);
        Py_DECREF(tlp);
        ecm_py_raise(st);
        goto done;
    }
    ret = Py_BuildValue("(idNN)", token, (double)lp, tid, tlp);
done:
    Py_XDECREF(l);
    Py_XDECREF(h);
    Py_XDECREF(ban);
    return ret;
}

static PyObject *sampler_get_state(SamplerObject *self, void *c) {
    (void)c;
    return Py_BuildValue("(KKKK)", (unsigned long long)self->rng[0], (unsigned long long)self->rng[1],
                         (unsigned long long)self->rng[2], (unsigned long long)self->rng[3]);
}

static int sampler_set_state(SamplerObject *self, PyObject *v, void *c) {
    (void)c;
    unsigned long long s[4];
    if (!v || !PyArg_ParseTuple(v, "KKKK", &s[0], &s[1], &s[2], &s[3])) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "state must be 4 integers");
        return -1;
    }
    for (int i = 0; i < 4; i++) self->rng[i] = s[i];
    return 0;
}

static PyMethodDef sampler_methods[] = {
    {"sample", (PyCFunction)(void (*)(void))sampler_sample, METH_VARARGS | METH_KEYWORDS,
     "sample(logits, history=None, top_logprobs=0, banned=None) -> (token, logprob, top_ids, top_logprobs)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sampler_getset[] = {
    {"rng_state", (getter)sampler_get_state, (setter)sampler_set_state, "the generator's state", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SamplerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ecomlm._core.Sampler",
    .tp_basicsize = sizeof(SamplerObject),
    .tp_dealloc = (destructor)sampler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sampler(vocab, seed=0, temperature=1, top_k=0, top_p=1, min_p=0, repetition_penalty=1, "
              "presence_penalty=0, frequency_penalty=0, logit_bias=None): sampling state of one sequence.",
    .tp_methods = sampler_methods,
    .tp_getset = sampler_getset,
    .tp_init = (initproc)sampler_init,
    .tp_new = PyType_GenericNew,
};

int ecm_py_sampling_init(PyObject *module) {
    if (PyType_Ready(&SamplerType) < 0) return -1;
    Py_INCREF(&SamplerType);
    if (PyModule_AddObject(module, "Sampler", (PyObject *)&SamplerType) < 0) {
        Py_DECREF(&SamplerType);
        return -1;
    }
    return 0;
}
