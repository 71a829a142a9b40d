/* SPDX-License-Identifier: Apache-2.0
 * The loaded safety models, created once per process (and on reload) and shared read-only by all workers. Later
 * classifiers (shields, PII, groundedness) add their models here. */
#ifndef CUSTOS_SAFETY_SAFETY_H
#define CUSTOS_SAFETY_SAFETY_H

#include "safety/harm.h"
#include "safety/pii.h"

#include <stddef.h>

typedef struct custos_safety custos_safety_t;

typedef struct custos_safety_opts {
    const char *harm_model;     /* path; NULL = custos_safety_default_model("harm.model") */
    const char *shields_model;  /* path; NULL = default "shields.model", which may be absent (no shields) */
    const char *grounded_model; /* path; NULL = default "grounded.model", which may be absent (no groundedness) */
    const char *pii_mrn_format; /* organisation MRN pattern (pii.h); NULL = none */
    const char *pii_ner_model;  /* name / address tagger (pii_ner.h); NULL = default "pii_ner.model", which may be
                                   absent (then PII finds the structured types only) */
} custos_safety_opts_t;

/* Loads the models. Returns 0 or an error with a one-line reason in err. The result is immutable and thread-safe
 * to share; free it with custos_safety_free after every worker stopped using it. */
int custos_safety_new(const custos_safety_opts_t *opts, custos_safety_t **out, char *err, size_t errlen);
void custos_safety_free(custos_safety_t *s);

/* The harm model (never NULL for a successfully created object). */
const custos_harm_model_t *custos_safety_harm(const custos_safety_t *s);

/* The prompt-shield model (shields.h); NULL when no shields.model was found at the default path. */
const custos_model_t *custos_safety_shields(const custos_safety_t *s);

/* The PII scanner (never NULL for a successfully created object). */
const custos_pii_t *custos_safety_pii(const custos_safety_t *s);

/* The groundedness model (grounded.h); NULL when none was configured and none is at the default path. */
struct custos_grounded_model;
const struct custos_grounded_model *custos_safety_grounded(const custos_safety_t *s);

/* Resolves the default path of a shipped model file NAME into buf: $CUSTOS_MODEL_DIR/NAME, else
 * <dir of the running binary>/../models/NAME, <dir of the binary>/models/NAME, ./models/NAME (first that exists;
 * the last one if none does). Returns buf. */
const char *custos_safety_default_model(const char *name, char *buf, size_t cap);

#endif
