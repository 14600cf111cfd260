/* sampling.h: penalties, logit bias, temperature / top-k / min-p / top-p
 * sampling with a seeded per-sequence generator, and log-probabilities. */
#ifndef ECM_SAMPLING_H
#define ECM_SAMPLING_H

#include "ecm.h"

typedef struct {
    float temperature;        /* 0: greedy */
    int top_k;                /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off */
    float repetition_penalty; /* 1: off (Hugging Face's: divide positive logits, multiply negative) */
    float presence_penalty;   /* OpenAI's: minus this once a token has appeared */
    float frequency_penalty;  /* OpenAI's: minus this times the token's count */
} ecm_sampling;

ecm_status ecm_sampling_check(const ecm_sampling *p);

void ecm_rng_seed(uint64_t s[4], uint64_t seed);
uint64_t ecm_rng_next(uint64_t s[4]);
double ecm_rng_uniform(uint64_t s[4]);

/* Penalties over hist (the tokens so far) and bias, on logits (V) in place.
 * counts: V int32 of scratch, zero on entry and on exit. */
ecm_status ecm_logits_penalize(float *logits, int V, const ecm_sampling *p, const int32_t *hist, int n_hist,
                               const int32_t *bias_ids, const float *bias_vals, int n_bias, int32_t *counts);
/* The next token. work: ecm_sampling_work_bytes(V) bytes. */
int ecm_sample_token(const float *logits, int V, const ecm_sampling *p, uint64_t rng[4], void *work);
size_t ecm_sampling_work_bytes(int V);
int ecm_argmax(const float *x, int n);
/* log-softmax of logits: the chosen token's value, and the k best (sorted). */
void ecm_log_softmax_top(const float *logits, int V, int k, int32_t *ids, float *lps, int chosen, float *chosen_lp,
                         void *work);

#endif
