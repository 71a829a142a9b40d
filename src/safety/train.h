/* SPDX-License-Identifier: Apache-2.0
 * Deterministic trainer of the harm model from shared/data-format JSONL (see docs/models/harm.md). */
#ifndef CUSTOS_SAFETY_TRAIN_H
#define CUSTOS_SAFETY_TRAIN_H

#include <stdint.h>
#include <stdio.h>

typedef struct custos_train_opts {
    const char *data_dir; /* holds MANIFEST.tsv and harm/ (only commercial_ok = yes files are read) */
    const char *out;      /* model path */
    const char *dev_out;  /* optional: dev-split rows written here as JSONL (same format) */
    const char *extra[4]; /* optional hand-written JSONL files (harm format), used for training only */
    uint32_t hash_bits;   /* default 19 */
    uint32_t epochs;      /* default 6 */
    uint32_t seed;        /* default 1 */
    float lr;             /* AdaGrad learning rate, default 0.2 */
    float aug_frac;       /* fraction of positives also trained obfuscated, 0..1; negative = default 0.3 */
    FILE *log;            /* progress and counts (no text); may be NULL */
} custos_train_opts_t;

/* Trains and writes the model. Same inputs and options -> byte-identical model. Returns 0 or a negative error with
 * a reason in err. */
int custos_train_harm(const custos_train_opts_t *opts, char *err, size_t errlen);

/* Trains the two-head prompt-shield model (shields.h) from attacks/ (commercial_ok = yes) plus opts->extra files
 * (attacks format, training only, weight 24); uses data_dir, out, dev_out, extra, hash_bits (default 18), epochs
 * (default 5), seed, lr. Deterministic like custos_train_harm. */
int custos_train_shields(const custos_train_opts_t *opts, char *err, size_t errlen);

/* Trains the groundedness model (grounded.h) from grounded/ (commercial_ok = yes); uses data_dir, out, dev_out (the
 * held-out dev split, cut by source) and lr (AdaGrad step, default 0.05). Deterministic (train_grounded.c). */
int custos_train_grounded(const custos_train_opts_t *opts, char *err, size_t errlen);

/* Trains the name / address tagger (pii_ner.h) from pii/ (commercial_ok = yes) plus sentences generated from
 * pii/resources; uses data_dir, out, dev_out (held-out wnut17 dev rows and generated rows of held-out templates and
 * identities), hash_bits (default 18), epochs (default 10), seed. Deterministic like custos_train_harm. */
int custos_train_pii(const custos_train_opts_t *opts, char *err, size_t errlen);

#endif
