/* SPDX-License-Identifier: Apache-2.0
 * Backend selection inside a deployment's boundary: which eligible backend takes the next attempt.
 *
 *   eligible   = inside the residency boundary and meeting the deployment's `requires` (route/router.h);
 *                nothing else is ever returned, whatever the health of the eligible ones.
 *   groups     = eligible backends by `priority` (lower first); a group is used only when no backend of a
 *                lower-numbered group is selectable (healthy, or due for its half-open trial) and untried.
 *   in a group = a backend due for its half-open trial first (route/health.h), else by the sticky header's
 *                weighted rendezvous hash when the deployment has one and the request carries it, else by
 *                the deployment's policy: smooth weighted round-robin or least outstanding requests.
 *
 * A routing table is built per worker and per config snapshot (custos_route_table_new); it holds the
 * eligible lists, per-worker round-robin state and pointers into the shared health registry. It is used
 * by one thread only (its refcount is not atomic); health entries are shared and atomic. */
#ifndef CUSTOS_ROUTE_BALANCE_H
#define CUSTOS_ROUTE_BALANCE_H

#include "config/config.h"
#include "route/health.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct custos_route_table custos_route_table_t;

/* One attempt's hold on a backend, from custos_route_pick to custos_route_attempt_end. */
typedef struct custos_route_attempt {
    custos_backend_health_t *h;
    bool trial;  /* the breaker's half-open trial */
    bool active; /* begun and not yet ended */
} custos_route_attempt_t;

/* Builds the table for cfg (keeps a reference to cfg) with entries from h. Returns 0 or CUSTOS_ENOMEM. */
int custos_route_table_new(custos_config_t *cfg, custos_health_t *h, custos_route_table_t **out);
custos_route_table_t *custos_route_table_ref(custos_route_table_t *t);
/* Drops a reference; at zero frees the table and releases its config reference. NULL-safe. */
void custos_route_table_unref(custos_route_table_t *t);
const custos_config_t *custos_route_table_config(const custos_route_table_t *t);

/* The eligible backends of d (a deployment of the table's config), in priority order; indices returned by
 * custos_route_pick refer to this order. Writes up to max, returns the count (0: nothing eligible). */
size_t custos_route_table_eligible(const custos_route_table_t *t, const custos_deployment_config_t *d,
                                   const custos_backend_config_t **out, size_t max);

/* Sticky key hash of a header value (64-bit, stable across processes). */
uint64_t custos_route_key_hash(const char *s, size_t n);

/* Picks the backend for the next attempt of a request for d, skipping indices set in tried (bit i = eligible
 * index i). has_key/key_hash: the sticky header's hash. On success returns the index and begins the attempt
 * in *a (counted in flight; a half-open trial claimed); the caller must call custos_route_attempt_end once.
 * Returns -1 when no untried eligible backend is selectable now. now_ms: monotonic. */
int custos_route_pick(custos_route_table_t *t, const custos_deployment_config_t *d, uint64_t tried, bool has_key,
                      uint64_t key_hash, uint64_t now_ms, custos_route_attempt_t *a);

/* True if custos_route_pick would find an untried backend now (claims nothing). */
bool custos_route_any_selectable(const custos_route_table_t *t, const custos_deployment_config_t *d, uint64_t tried,
                                 uint64_t now_ms);

/* The attempt got a good response head (below 500, not 429): a half-open trial closes the breaker now rather
 * than when a long stream ends. The attempt stays in flight until custos_route_attempt_end. */
void custos_route_attempt_answered(const custos_route_table_t *t, custos_route_attempt_t *a, uint64_t now_ms);

/* Ends the attempt (idempotent: only the first call after a pick counts): in-flight count, and the outcome for
 * outlier detection with the table config's upstream.outlier_detection settings. */
void custos_route_attempt_end(const custos_route_table_t *t, custos_route_attempt_t *a, custos_outcome_t o,
                              uint64_t now_ms);

#endif
