/* SPDX-License-Identifier: Apache-2.0
 * Prometheus metrics: counters, gauges and histograms kept in per-worker-thread shards (no atomic
 * read-modify-write on the hot path), summed at scrape time into the text exposition format 0.0.4.
 *
 * Label values must never be request content: they are route names, deployment names, status codes
 * and similar values from a small, operator-controlled set. Each family is still capped
 * (custos_metrics_set_max_series); label tuples past the cap share one series whose labels are all "_other". */
#ifndef CUSTOS_METRICS_METRICS_H
#define CUSTOS_METRICS_METRICS_H

#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

#define CUSTOS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define CUSTOS_METRICS_DEFAULT_MAX_SERIES 10000 /* per family, not counting the overflow series */
#define CUSTOS_METRICS_MAX_LABELS 8             /* label names per family */
#define CUSTOS_METRICS_MAX_LABEL_VALUE 256      /* longer label values go to the overflow series */
#define CUSTOS_METRICS_MAX_BOUNDS 64            /* histogram bucket bounds */
#define CUSTOS_METRICS_OVERFLOW_VALUE "_other"

typedef struct custos_metrics custos_metrics_t;
typedef struct custos_metric_family custos_metric_family_t;
typedef struct custos_metric_series custos_metric_series_t;

/* New registry with nshards shards (usually one per worker thread, plus one per other writer thread).
 * Returns NULL on allocation failure or nshards == 0. */
custos_metrics_t *custos_metrics_new(unsigned nshards);
/* Frees the registry with every family and series. No other thread may use it any more. NULL is a no-op. */
void custos_metrics_free(custos_metrics_t *m);
unsigned custos_metrics_nshards(const custos_metrics_t *m);
/* Cap on distinct label tuples per family for families registered afterwards (default 10000). */
void custos_metrics_set_max_series(custos_metrics_t *m, size_t max_series);

/* Register a family. Register everything up front, before workers start (registration itself is
 * thread-safe, but handles should be set up once). name: [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the registry;
 * label names: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", at most CUSTOS_METRICS_MAX_LABELS, and not
 * "le" for histograms. Strings are copied. *out is owned by the registry.
 * Returns 0, CUSTOS_EINVAL (bad or duplicate name) or CUSTOS_ENOMEM. */
int custos_metrics_counter(custos_metrics_t *m, const char *name, const char *help, const char *const *label_names,
                           size_t nlabels, custos_metric_family_t **out);
/* Gauges: each shard keeps a signed delta (custos_metrics_gauge_add); the value is their sum. */
int custos_metrics_gauge(custos_metrics_t *m, const char *name, const char *help, const char *const *label_names,
                         size_t nlabels, custos_metric_family_t **out);
/* Histograms: bounds are upper bucket limits (inclusive, "le"), finite and strictly increasing, in the
 * metric's unit (seconds for latencies); +Inf is implicit. At most CUSTOS_METRICS_MAX_BOUNDS. */
int custos_metrics_histogram(custos_metrics_t *m, const char *name, const char *help, const double *bounds,
                             size_t nbounds, const char *const *label_names, size_t nlabels,
                             custos_metric_family_t **out);

/* Series for a tuple of label values (nlabels of them, NULL entries read as ""; label_values may be NULL
 * when the family has no labels). Existing series are found under a read lock; a new one takes the family's
 * write lock. Past the cap, or with a value longer than CUSTOS_METRICS_MAX_LABEL_VALUE, returns the overflow
 * series. Handles stay valid until custos_metrics_free; cache them. Thread-safe. NULL on allocation failure
 * (the update functions below accept NULL and do nothing). */
custos_metric_series_t *custos_metrics_series(custos_metric_family_t *f, const char *const *label_values);

/* Updates. shard must be < nshards and be written by only one thread at a time (the caller's own shard);
 * an out-of-range shard is folded with modulo. Calling the wrong kind of update for a family is a no-op. */
void custos_metrics_inc(custos_metric_series_t *s, unsigned shard, uint64_t v);
void custos_metrics_gauge_add(custos_metric_series_t *s, unsigned shard, int64_t v);
/* value in the histogram's unit; NaN is ignored. */
void custos_metrics_observe(custos_metric_series_t *s, unsigned shard, double value);

/* Current totals over all shards (for tests and internal decisions). Thread-safe, lock-free. */
uint64_t custos_metrics_counter_value(const custos_metric_series_t *s);
int64_t custos_metrics_gauge_value(const custos_metric_series_t *s);
/* Histogram observation count and sum. */
uint64_t custos_metrics_histogram_count(const custos_metric_series_t *s);
double custos_metrics_histogram_sum(const custos_metric_series_t *s);

/* Appends the whole registry in Prometheus text format 0.0.4 to out: families in registration order,
 * series in creation order (the "_other" overflow series where it was first needed). Thread-safe against concurrent
 * updates and series creation. Returns 0 or the buffer's error (CUSTOS_ETOOBIG, CUSTOS_ENOMEM). */
int custos_metrics_render(custos_metrics_t *m, custos_buf_t *out);

#endif
