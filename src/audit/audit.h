/* SPDX-License-Identifier: Apache-2.0
 * The audit subsystem: request records go from worker threads into each sink's bounded in-memory queue; each sink's
 * own thread encodes them, delivers batches through its driver (sink.h), and spools what the driver refuses to disk,
 * replaying it in order (also after a restart). Design and guarantees: docs/diagnostics.md. */
#ifndef CUSTOS_AUDIT_AUDIT_H
#define CUSTOS_AUDIT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/record.h"
#include "audit/sink.h"
#include "config/config.h"
#include "metrics/metrics.h"

typedef struct custos_audit custos_audit_t;

typedef struct custos_audit_options {
    const char *spool_dir;      /* each sink spools under spool_dir/<sink name>/ */
    uint64_t spool_max_bytes;   /* per sink */
    unsigned queue_max_records; /* per sink, in memory */
    bool mask_client_ip;        /* reported by custos_audit_mask_ip (the builder masks) */
    const char *resource_id;    /* resourceId of every record; NULL = "custos/<hostname>" */
    uint32_t retry_min_ms;      /* first retry delay after a failed delivery; 0 = 500 */
    uint32_t retry_max_ms;      /* backoff cap; 0 = 30000 */
} custos_audit_options_t;

/* Starts one thread per sink of cfg->diagnostics (drivers from custos_audit_sink_driver_find). Holds a reference to
 * cfg until freed. With no sinks configured, still returns a subsystem (sinks may be added by a reload; submit is then
 * a no-op); submit etc. also accept NULL. On failure (unknown
 * driver, a driver's open failed, spool directory unusable) returns a negative code with a message in err.
 * Existing spool data is replayed first. Call from the main thread before workers start. */
int custos_audit_new(custos_config_t *cfg, custos_audit_t **out, char *err, size_t errlen);

/* Same with explicit sinks and drivers (n of each; drivers[i] serves sinks[i]); sinks[] and the strings in opts are
 * borrowed and must outlive the subsystem. For tests and embedding. */
int custos_audit_new_with(const custos_audit_options_t *opts, const custos_audit_sink_config_t *sinks,
                          const custos_audit_sink_driver_t *const *drivers, size_t n, custos_audit_t **out, char *err,
                          size_t errlen);

/* Hands a finished record to every sink (copied). Never blocks on I/O and never does disk I/O: takes each sink's
 * queue lock briefly. A record that finds a sink's queue full is dropped for that sink and counted
 * (custos_audit_dropped_total{sink,reason="queue_full"}). Thread-safe; NULL a is a no-op. */
void custos_audit_submit(custos_audit_t *a, const custos_audit_record_t *r);

/* Whether any sink is active (callers skip building a record otherwise). Thread-safe; NULL a: false. */
bool custos_audit_enabled(custos_audit_t *a);

/* Whether records should carry masked caller addresses (diagnostics.mask_client_ip). NULL a: true. */
bool custos_audit_mask_ip(const custos_audit_t *a);

/* Waits until every record submitted before the call is delivered or spooled, or timeout_ms passed. Returns 0 or
 * CUSTOS_ETIMEDOUT. Thread-safe. */
int custos_audit_flush(custos_audit_t *a, uint32_t timeout_ms);

/* The subsystem's metrics registry (custos_audit_* families), for the /metrics scrape. NULL when a is NULL. */
custos_metrics_t *custos_audit_metrics(custos_audit_t *a);

/* Counters for tests: records delivered by the driver (directly or from the spool), appended to the spool, dropped,
 * for sink i. Thread-safe (approximate while running). */
typedef struct custos_audit_sink_stats {
    uint64_t delivered, spooled, replayed, dropped;
    uint64_t spool_bytes;
} custos_audit_sink_stats_t;
int custos_audit_sink_stats(custos_audit_t *a, size_t i, custos_audit_sink_stats_t *st);

/* True when the request-record settings of a and b differ (sinks, spool, queue, masking; governance_log is not
 * compared). Pure. */
bool custos_audit_config_changed(const custos_diagnostics_config_t *a, const custos_diagnostics_config_t *b);

/* Applies cfg->diagnostics on reload (SIGHUP), matching sinks by name: an unchanged sink keeps running; a new one
 * starts (its old spool, if any, is replayed first); a removed one delivers (one attempt) or spools what it holds and
 * stops; a changed one is replaced: from the swap on, records queue for the new version, the old one delivers or
 * spools what it holds through its old settings and stops, then the new one takes over the spool, replays it and
 * continues: nothing is lost or duplicated, order is kept. A new or changed sink whose driver cannot be opened is not
 * added / keeps its old settings (logged). queue_max_records and mask_client_ip apply at once; spool_dir and
 * spool_max_bytes only at a restart (logged). Holds a reference to cfg while a sink created from it lives. Blocks the
 * caller while old sinks drain (waits for custos_audit_flush calls in progress). Returns 0, or a negative code when
 * some sink could not be applied (the rest is applied). Call from one thread (the main thread). */
int custos_audit_reconfigure(custos_audit_t *a, custos_config_t *cfg);

/* Stops: every sink thread takes what is queued, delivers it (one attempt) or spools it, closes its driver, and
 * exits; then frees everything. Records still in the spool are replayed by the next custos_audit_new on the same
 * spool directory. NULL-safe. Call after workers stopped submitting. */
void custos_audit_free(custos_audit_t *a);

#endif
