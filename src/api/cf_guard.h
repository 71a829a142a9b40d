/* SPDX-License-Identifier: Apache-2.0
 * The safety cascade on the inference path (internal to api/contentfilter.c; docs/guard-models.md): for each
 * screened text and each check whose policy names a guard, the in-process score decides below and above the band
 * and the guard decides inside it (src/guard).
 *
 * Guard calls are asynchronous on the worker's loop. contentfilter.c screens in two passes: a collect pass (no side
 * effects: no PII rewriting, nothing answered) gathers the questions in screening order; once every verdict is in
 * (cached ones at once), the apply pass screens again -- the in-process models are deterministic and take
 * microseconds -- and takes the k-th verdict at the k-th question. Default-mode streams do the same per upstream event
 * (the windows it would release). asynchronous_filter streams screen each window in the DEFER phase (the in-process
 * rule decides now; the questions go out afterwards and their verdicts become later annotation frames). Phase NONE
 * (a stream the backend cut while a window waited) uses the in-process rule.
 *
 * Threading: one custos_cfgd_t per request, on the worker thread that owns it. Question texts are heap copies freed
 * with the state; nothing of them is logged or counted. */
#ifndef CUSTOS_API_CF_GUARD_H
#define CUSTOS_API_CF_GUARD_H

#include "api/gateway.h"
#include "guard/guard.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct custos_cfgd custos_cfgd_t;

/* DEFER (asynchronous_filter streams): the in-process rule decides now; the questions are asked afterwards
 * (custos_cfgd_start_deferred) and their verdicts reported later. */
typedef enum { CUSTOS_CFGD_NONE = 0, CUSTOS_CFGD_COLLECT, CUSTOS_CFGD_APPLY, CUSTOS_CFGD_DEFER } custos_cfgd_phase_t;

/* What the cascade did for one screened text (merged per prompt / choice; goes into the annotation). */
typedef struct custos_cfgd_note {
    bool asked;        /* a guard gave (or was asked for) a verdict */
    bool err;          /* a guard gave none (timeout, error, circuit open, busy) */
    bool unsafe;       /* a guard flagged it */
    bool disagreed;    /* a guard decided differently from the in-process model alone */
    uint32_t other;    /* Llama Guard codes outside the four categories (S2, S5, ...) */
    const char *guard; /* name of the (last) guard asked; config-owned */
} custos_cfgd_note_t;

/* State for a request under pol, or NULL when the policy names no guard. */
custos_cfgd_t *custos_cfgd_new(custos_worker_t *w, const custos_rai_policy_config_t *pol);
/* Cancels calls in flight and frees everything. NULL-safe. */
void custos_cfgd_free(custos_cfgd_t *g);
/* True when some check of direction src uses a guard. NULL-safe. */
bool custos_cfgd_has(const custos_cfgd_t *g, int src);
/* Starts a pass (COLLECT forgets earlier questions; APPLY rewinds to the first question). NULL-safe. */
void custos_cfgd_begin(custos_cfgd_t *g, custos_cfgd_phase_t phase);
custos_cfgd_phase_t custos_cfgd_phase(const custos_cfgd_t *g); /* NONE for NULL */

/* Harm for one text: score[k] the in-process calibrated score, sev[k] its severity, changed in place to carry the
 * cascade's decision under the policy's threshold (filtered <=> sev >= threshold; a grading guard's own severity). */
void custos_cfgd_harm(custos_cfgd_t *g, int src, const char *text, size_t len, const float score[4], int sev[4],
                      custos_cfgd_note_t *note);
/* A prompt shield (guard check JAILBREAK or INDIRECT) for one text: returns the decision ("detected"). */
bool custos_cfgd_shield(custos_cfgd_t *g, custos_guard_check_t check, const char *text, size_t len, float score,
                        bool detected, custos_cfgd_note_t *note);

/* After a collect pass: asks the guards. Returns 0 when every verdict is known now (go on with the apply pass), or
 * 1 when some are in flight: done(ud) runs once on the loop when the last arrives. */
int custos_cfgd_start(custos_cfgd_t *g, void (*done)(void *ud), void *ud);

/* The guard's decision on a text screened in the DEFER phase. */
typedef struct custos_cfgd_async {
    bool block;           /* the text is filtered (a category the guard flagged, or on_error: closed) */
    bool harm_block[4];   /* per harm category */
    uint8_t threshold[4]; /* the policy's threshold of each category asked */
    unsigned asked;       /* bit k: category k was asked */
    custos_cfgd_note_t note;
} custos_cfgd_async_t;

/* After screening a text in the DEFER phase: asks its questions. Returns 0 (no question), 2 (every verdict known now:
 * *now filled) or 1 (asked: done(ud, result) runs once on the loop later, unless custos_cfgd_free comes first).
 * Several may be in flight at once. */
int custos_cfgd_start_deferred(custos_cfgd_t *g, void (*done)(void *ud, const custos_cfgd_async_t *r), void *ud,
                               custos_cfgd_async_t *now);

void custos_cfgd_note_merge(custos_cfgd_note_t *into, const custos_cfgd_note_t *n);
/* Adds the custos extension "guard": {"name", "flagged", "other_categories": ["S2", ...], "error"?} to an annotation
 * when a guard was asked. */
void custos_cfgd_annotate(const custos_cfgd_note_t *n, json_object *annotation);

#endif
