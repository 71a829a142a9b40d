/* SPDX-License-Identifier: Apache-2.0
 * Counterfactual fairness evaluation (docs/rai-eval.md): sentence templates with an identity slot, expanded with
 * identity terms per group (gender, race and ethnicity, religion, nationality, disability, sexual orientation, age)
 * in several languages; every expanded sentence is judged by a caller-supplied policy (the gateway's checks), and
 * the flag rate on benign text and the detection rate on harmful text are compared across groups, with Wilson
 * intervals per group and Newcombe (hybrid score) intervals for the largest disparity.
 *
 * The judge is a callback so that this module needs only the safety models' callers (api/cli_fairness.c maps a
 * rai_policy onto it) and the tests can use a fake one. Everything here is single-threaded. */
#ifndef CUSTOS_SAFETY_FAIRNESS_H
#define CUSTOS_SAFETY_FAIRNESS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CUSTOS_FAIR_MAX_LINE 4096      /* bytes per template / term line */
#define CUSTOS_FAIR_MAX_ROWS 20000     /* templates + terms per set */
#define CUSTOS_FAIR_MAX_EXPANDED 8192  /* bytes of one expanded sentence */
#define CUSTOS_FAIR_MAX_EXAMPLES 5     /* flagged benign / missed harmful sentences kept per group */
#define CUSTOS_FAIR_Z95 1.959963984540 /* two-sided 95 % normal quantile */

/* What flagged a sentence (bits of the judge's verdict; any bit = flagged / detected). */
enum {
    CUSTOS_FAIR_HATE = 1u << 0,
    CUSTOS_FAIR_SEXUAL = 1u << 1,
    CUSTOS_FAIR_VIOLENCE = 1u << 2,
    CUSTOS_FAIR_SELF_HARM = 1u << 3,
    CUSTOS_FAIR_JAILBREAK = 1u << 4,
    CUSTOS_FAIR_PII = 1u << 5,
    CUSTOS_FAIR_NREASONS = 6,
};

/* Name of reason bit index i ("hate", ..., "pii"); NULL if out of range. */
const char *custos_fair_reason_name(int i);

/* Judges one sentence as the gateway would judge a user prompt: sets *flags to the CUSTOS_FAIR_* bits of every check
 * that would block it (0 = passes). Returns 0, or a negative code (the sentence counts as an error, not a flag). */
typedef int (*custos_fair_judge_fn)(void *ud, const char *text, size_t len, unsigned *flags);

typedef struct custos_fair_term {
    char *lang, *dim, *group; /* e.g. "en", "religion", "muslim" */
    char *sg, *pl;            /* singular noun phrase ("a Muslim person") and plural ("Muslim people") */
} custos_fair_term_t;

typedef struct custos_fair_template {
    char *id, *lang;
    bool harmful; /* kind "harmful" (else "benign") */
    char *text;   /* with {sg} / {pl} (or {Sg} / {Pl}: first letter upper-cased) slots */
} custos_fair_template_t;

/* A loaded template set (terms.jsonl + templates.jsonl of one directory). */
typedef struct custos_fair_set {
    custos_fair_term_t *terms;
    size_t n_terms;
    custos_fair_template_t *templates;
    size_t n_templates;
} custos_fair_set_t;

/* Loads DIR/terms.jsonl and DIR/templates.jsonl. Term lines: {"lang","dim","group","sg","pl"}; template lines:
 * {"id","lang","kind":"benign"|"harmful","text"}; blank lines and lines starting with '#' are skipped. Every
 * template must contain a slot, every slot must be known, and every template language must have terms. Returns 0
 * or CUSTOS_EIO / CUSTOS_EINVAL / CUSTOS_ENOMEM with "file:line: reason" in err. */
int custos_fair_set_load(const char *dir, custos_fair_set_t *set, char *err, size_t errlen);
/* The same from two open streams (tests, fuzzing); label names them in errors ("LABEL/terms.jsonl:3: ..."). */
int custos_fair_set_load_streams(FILE *terms, FILE *templates, const char *label, custos_fair_set_t *set, char *err,
                                 size_t errlen);
void custos_fair_set_dispose(custos_fair_set_t *set);

/* Expands template t with term u into out (cap bytes, NUL-terminated). Returns the length, or CUSTOS_ETOOBIG /
 * CUSTOS_EINVAL (unknown slot). */
int custos_fair_expand(const custos_fair_template_t *t, const custos_fair_term_t *u, char *out, size_t cap);

/* Wilson score interval for k successes out of n at normal quantile z; n = 0 gives [0, 1]. */
void custos_fair_wilson(unsigned k, unsigned n, double z, double *lo, double *hi);

/* Newcombe's hybrid score interval (method 10, 1998) for p1 - p2 from two independent proportions k1/n1, k2/n2. */
void custos_fair_newcombe(unsigned k1, unsigned n1, unsigned k2, unsigned n2, double z, double *lo, double *hi);

typedef struct custos_fair_opts {
    const char *langs;      /* comma-separated language filter; NULL = all */
    unsigned max_templates; /* per language and kind, the first N (0 = all): reduced sets for quick checks */
    double max_benign;      /* acceptable largest benign flag-rate disparity per language (fraction) */
    double max_harmful;     /* acceptable largest harmful detection-rate disparity per language (fraction) */
    custos_fair_judge_fn judge;
    void *judge_ud;
} custos_fair_opts_t;

/* Runs the evaluation and builds the result document (schema custos.rai-eval.fairness/1, docs/rai-eval.md) in
 * *out (caller owns it; the caller adds "policy", "models" and provenance fields). *pass says whether every
 * language's disparities are within the thresholds. Returns 0, CUSTOS_EINVAL (no template matches the language
 * filter) or CUSTOS_ENOMEM. */
int custos_fair_run(const custos_fair_set_t *set, const custos_fair_opts_t *o, json_object **out, bool *pass, char *err,
                    size_t errlen);

#endif
