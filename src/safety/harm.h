/* SPDX-License-Identifier: Apache-2.0
 * Harm classifier: hate, sexual, violence, self_harm scores (calibrated, [0,1]) and Azure 0..7 severities from a
 * hashed linear model (model.h) over word 1-2-grams and character 3-5-grams of the normalised text. */
#ifndef CUSTOS_SAFETY_HARM_H
#define CUSTOS_SAFETY_HARM_H

#include "safety/model.h"
#include "safety/normalize.h"

#include <stddef.h>
#include <stdint.h>

enum { CUSTOS_HARM_HATE, CUSTOS_HARM_SEXUAL, CUSTOS_HARM_VIOLENCE, CUSTOS_HARM_SELF_HARM, CUSTOS_HARM_NCAT };

/* Azure thresholds on the eight-level scale: a category is flagged at a threshold when severity >= the value. */
#define CUSTOS_HARM_SEV_LOW 2
#define CUSTOS_HARM_SEV_MEDIUM 4
#define CUSTOS_HARM_SEV_HIGH 6

typedef custos_model_t custos_harm_model_t;

typedef struct custos_harm_result {
    float score[CUSTOS_HARM_NCAT];  /* calibrated probability in [0,1] */
    int severity[CUSTOS_HARM_NCAT]; /* 0..7 */
    float logit[CUSTOS_HARM_NCAT];  /* raw (uncalibrated) model output */
} custos_harm_result_t;

/* Category name ("hate", "sexual", "violence", "self_harm") for index c; NULL if out of range. */
const char *custos_harm_category_name(int c);

/* Checks that m has the four harm heads in order. Returns 0 or CUSTOS_EINVAL. */
int custos_harm_model_check(const custos_harm_model_t *m);

/* Scores text[0..len) (any bytes). Thread-safe for a shared m; scratch is per thread. Returns 0,
 * CUSTOS_ETOOBIG (text larger than the scratch's max_input) or CUSTOS_ENOMEM. Empty text scores 0 / severity 0. */
/* Normalises text, hashes its features with m's feature settings and computes every head's raw logit (any model in
 * the hashed-linear format: harm, shields). Returns 1 with logit[0..n_heads) filled, 0 when the text has no
 * features (logit untouched), or a negative code. */
int custos_model_text_logits(const custos_model_t *m, const char *text, size_t len, float logit[CUSTOS_MODEL_MAX_HEADS],
                             custos_safety_scratch_t *scratch);

int custos_harm_score(const custos_harm_model_t *m, const char *text, size_t len, custos_harm_result_t *out,
                      custos_safety_scratch_t *scratch);

/* Most parts custos_harm_score_parts takes. */
#define CUSTOS_HARM_MAX_PARTS 512

/* Scores text[0..len) whole (into *whole, exactly as custos_harm_score) and each part k, the bytes
 * [seg[k][0], seg[k][1]) of it, into parts[k] exactly as custos_harm_score would score that substring alone, but
 * normalising the text once: a part that starts and ends at a sentence edge (text start or end, or a byte of
 * ".!?;\n" followed by ' ' or '\n'), where normalisation is local, and none of whose words the normalisation joined
 * with a word outside it (spaced letters "k. i l l"), is scored from the whole text's token stream; any other part is
 * scored on its own. Ends with the whole text's features in the scratch's cache (custos_model_text_logits). Returns
 * 0, CUSTOS_EINVAL (nseg > CUSTOS_HARM_MAX_PARTS) or an error of custos_harm_score. */
int custos_harm_score_parts(const custos_harm_model_t *m, const char *text, size_t len, const size_t (*seg)[2],
                            size_t nseg, custos_harm_result_t *whole, custos_harm_result_t *parts,
                            custos_safety_scratch_t *scratch);

/* Severity 0..7 of a calibrated score for head c (bands in the model). */
int custos_harm_severity(const custos_harm_model_t *m, int c, float score);

/* Feature configuration (copied from / into a model header). */
typedef struct custos_harm_fcfg {
    uint32_t hash_bits, hash_seed, norm_flags, word_ngrams, char_min, char_max;
} custos_harm_fcfg_t;

/* Extracts the feature hashes of normalised text n into scratch->feat; *count receives how many. Each hash:
 * bucket = h & (buckets - 1), sign = top bit (1 = negative). Used by the scorer and the trainer. */
int custos_harm_features(const custos_harm_fcfg_t *cfg, const custos_norm_t *n, custos_safety_scratch_t *scratch,
                         size_t *count);

/* Raw logits of all heads of m for a feature list (no calibration). */
void custos_harm_logits(const custos_harm_model_t *m, const uint64_t *feat, size_t count, float *logit);

/* Platt calibration of a raw logit for head c. */
float custos_harm_calibrate(const custos_harm_model_t *m, int c, float logit);

#endif
