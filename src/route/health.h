/* SPDX-License-Identifier: Apache-2.0
 * Backend health shared by every worker thread: a circuit breaker fed by passive outlier detection
 * (consecutive failed attempts eject a backend for base × 2^n ms, capped), active probe results
 * (healthy / unhealthy thresholds), and the count of attempts in flight (for least-outstanding balancing).
 *
 * Breaker: CLOSED (serving) → OPEN after `consecutive_failures` failed attempts in a row (ejected until
 * open_until) → HALF_OPEN once the ejection has run out: exactly one trial attempt is let through; its
 * success closes the breaker, its failure re-opens it with the next, longer ejection. An active probe
 * reaching its healthy threshold also closes the breaker (re-admission). A backend whose probes reached
 * their unhealthy threshold is not selectable whatever its breaker says.
 *
 * Thread-safety: every function may be called from any thread. Reads on the request path (selection) are
 * atomic loads; a successful attempt is one atomic load (and a store only after a failure streak);
 * transitions (eject, trial, close) take the backend's own small mutex, which is never held while doing
 * anything else. Time is passed in (monotonic ms) so the logic is testable with an injected clock. */
#ifndef CUSTOS_ROUTE_HEALTH_H
#define CUSTOS_ROUTE_HEALTH_H

#include "config/config.h"
#include "util/buf.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define CUSTOS_HEALTH_MAX_ENTRIES 4096     /* backend names remembered over the process' life (reloads add) */
#define CUSTOS_HEALTH_TRIAL_STALE_MS 60000 /* a trial claimed longer ago than this is presumed lost */

typedef enum {
    CUSTOS_BREAKER_CLOSED = 0,
    CUSTOS_BREAKER_OPEN,
    CUSTOS_BREAKER_HALF_OPEN,
} custos_breaker_t;

/* What /readyz and custos_backend_state report. */
typedef enum {
    CUSTOS_BACKEND_HEALTHY = 0, /* breaker closed, probes (if any) passing */
    CUSTOS_BACKEND_HALF_OPEN,   /* ejection over: the next attempt is a trial */
    CUSTOS_BACKEND_EJECTED,     /* breaker open (passive outlier detection) */
    CUSTOS_BACKEND_UNHEALTHY,   /* active probes failing */
} custos_backend_state_t;
#define CUSTOS_BACKEND_NSTATES 4

typedef enum {
    CUSTOS_OUTCOME_SUCCESS = 0, /* a response below 500 other than 429 */
    CUSTOS_OUTCOME_FAILURE,     /* connect error, timeout, reset, malformed response, 5xx */
    CUSTOS_OUTCOME_NEUTRAL,     /* says nothing about the backend (429, cancelled, our own limits) */
} custos_outcome_t;

/* Passive outlier detection settings (upstream.outlier_detection). consecutive_failures 0 = off. */
typedef struct custos_outlier_params {
    unsigned consecutive_failures;
    uint64_t base_ejection_ms;
    uint64_t max_ejection_ms;
} custos_outlier_params_t;

typedef struct custos_backend_health {
    char name[72];
    pthread_mutex_t lock; /* transitions only */
    atomic_int breaker;   /* custos_breaker_t */
    atomic_uint_fast64_t open_until_ms;
    atomic_uint consecutive_failures;
    atomic_bool trial_busy;
    atomic_uint_fast64_t trial_since_ms;
    atomic_bool probe_down; /* active probes reached the unhealthy threshold */
    atomic_uint probe_ok_run, probe_fail_run;
    atomic_int_fast64_t outstanding; /* attempts in flight, all workers */
    atomic_uint_fast64_t ejections, probes_ok, probes_failed, trials;
    /* under lock */
    unsigned eject_streak; /* ejections without a long enough healthy spell in between */
    uint64_t closed_at_ms; /* when the breaker last closed */
} custos_backend_health_t;

/* The process-wide registry, keyed by backend name: state survives config reloads (a renamed backend
 * starts fresh). */
typedef struct custos_health custos_health_t;

int custos_health_new(custos_health_t **out);
/* Frees the registry and every entry. No other thread may use it any more. NULL-safe. */
void custos_health_free(custos_health_t *h);

/* Entry for name, created (healthy) on first use. Returns NULL when the registry is full or out of memory.
 * Takes the registry lock: call it when building routing tables, not per request. The pointer stays valid
 * until custos_health_free. */
custos_backend_health_t *custos_health_get(custos_health_t *h, const char *name);
/* Same without creating: NULL when unknown. */
custos_backend_health_t *custos_health_find(custos_health_t *h, const char *name);

/* Initialises a standalone entry (unit tests, benches); custos_health_entry_dispose releases it. */
void custos_health_entry_init(custos_backend_health_t *b, const char *name);
void custos_health_entry_dispose(custos_backend_health_t *b);

/* Selectable right now without a trial: breaker closed and probes not failing. Two atomic loads. */
static inline bool custos_health_available(const custos_backend_health_t *b)
{
    return atomic_load_explicit(&b->breaker, memory_order_acquire) == CUSTOS_BREAKER_CLOSED &&
           !atomic_load_explicit(&b->probe_down, memory_order_relaxed);
}
/* True if b could take a trial attempt now (ejection over, no trial running, probes not failing). No claim. */
bool custos_health_trial_ready(const custos_backend_health_t *b, uint64_t now_ms);
/* Claims the single trial attempt of a backend whose ejection is over: on true the breaker is HALF_OPEN
 * and the caller must report the attempt with trial = true. */
bool custos_health_try_trial(custos_backend_health_t *b, uint64_t now_ms);

/* Attempt bookkeeping: begin before the attempt is sent, end exactly once when it is over. */
void custos_health_begin(custos_backend_health_t *b);
/* Reports the outcome of an attempt begun with custos_health_begin (trial: it was claimed with
 * custos_health_try_trial). p may be NULL (no passive detection). */
void custos_health_end(custos_backend_health_t *b, const custos_outlier_params_t *p, custos_outcome_t o, bool trial,
                       uint64_t now_ms);

/* Outlier bookkeeping alone (what custos_health_end does besides the outstanding count). */
void custos_health_report(custos_backend_health_t *b, const custos_outlier_params_t *p, custos_outcome_t o, bool trial,
                          uint64_t now_ms);

/* One active probe result (the prober thread). */
void custos_health_probe_result(custos_backend_health_t *b, bool ok, unsigned healthy_threshold,
                                unsigned unhealthy_threshold, uint64_t now_ms);

/* Forgets the probe verdict (the backend's health_check was removed): probes no longer hold it out. */
void custos_health_probe_reset(custos_backend_health_t *b);

custos_backend_state_t custos_health_state(const custos_backend_health_t *b, uint64_t now_ms);
const char *custos_health_state_name(custos_backend_state_t s);

/* Appends, for every backend of cfg: custos_backend_up, custos_backend_state{state}, custos_backend_
 * outstanding_requests, custos_backend_ejections_total, custos_backend_probes_total (docs/metrics.md). */
int custos_health_render_metrics(custos_health_t *h, const custos_config_t *cfg, uint64_t now_ms, custos_buf_t *out);
/* Appends a JSON object {"NAME":{"state":"healthy","outstanding":0,"ejections":0},...} for cfg's backends. */
int custos_health_render_json(custos_health_t *h, const custos_config_t *cfg, uint64_t now_ms, custos_buf_t *out);

#endif
