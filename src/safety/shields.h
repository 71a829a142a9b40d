/* SPDX-License-Identifier: Apache-2.0
 * Prompt shields: the jailbreak detector (user prompts) and the indirect-attack detector (documents): a two-head
 * hashed linear model (model.h, features of harm.h) over the text and its decoded segments, plus structural signals. */
#ifndef CUSTOS_SAFETY_SHIELDS_H
#define CUSTOS_SAFETY_SHIELDS_H

#include "safety/model.h"
#include "safety/normalize.h"

#include <stddef.h>

enum { CUSTOS_SHIELD_JAILBREAK, CUSTOS_SHIELD_INDIRECT, CUSTOS_SHIELD_NHEADS };

/* Decoded text scored per call is capped at this many bytes (the rest is ignored). */
#define CUSTOS_SHIELD_MAX_DECODED (64u * 1024)

typedef struct custos_shield_result {
    float score;      /* calibrated probability in [0,1] (max over the text, its decoded segments, signals) */
    int detected;     /* score >= the head's detection threshold (stored in the model, see docs/models/shields.md) */
    unsigned decoded; /* CUSTOS_DEC_* encodings found */
    unsigned signals; /* CUSTOS_SHIELD_SIG_* structural signals that fired */
} custos_shield_result_t;

enum {
    CUSTOS_SHIELD_SIG_TAGS = 1u << 0,   /* >= 8 Unicode tag characters (invisible text) */
    CUSTOS_SHIELD_SIG_ZW = 1u << 1,     /* a run of >= 8 zero-width characters */
    CUSTOS_SHIELD_SIG_EXFIL = 1u << 2,  /* markdown image to an outside URL with query data (documents) */
    CUSTOS_SHIELD_SIG_HIDDEN = 1u << 3, /* white-on-white / display:none HTML (documents) */
};

/* Head name ("jailbreak", "indirect_attack"); NULL if out of range. */
const char *custos_shield_name(int head);

/* Checks that m has the two shield heads in order. Returns 0 or CUSTOS_EINVAL. */
int custos_shields_model_check(const custos_model_t *m);

/* Detection threshold of a head (calibrated score). */
float custos_shield_threshold(const custos_model_t *m, int head);

/* Scores text[0..len) with head CUSTOS_SHIELD_JAILBREAK (user prompt) or CUSTOS_SHIELD_INDIRECT (document).
 * Thread-safe for a shared m; scratch is per thread. Allocates a bounded decode buffer only when the text holds
 * encoded segments. Returns 0, CUSTOS_EINVAL (bad head), CUSTOS_ETOOBIG (text > scratch max_input) or CUSTOS_ENOMEM. */
int custos_shields_score(const custos_model_t *m, int head, const char *text, size_t len, custos_shield_result_t *out,
                         custos_safety_scratch_t *scratch);

/* Model probability of head for one text without decoding or signals (trainer, eval). */
int custos_shields_raw(const custos_model_t *m, int head, const char *text, size_t len, float *score,
                       custos_safety_scratch_t *scratch);

#endif
