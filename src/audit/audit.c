/* SPDX-License-Identifier: Apache-2.0
 * Sink framework: per-sink bounded MPSC queue (mutex + condvar, chunked), a thread per sink that encodes, batches,
 * delivers, spools on failure (spool.c), retries with exponential backoff and replays the spool in order.
 * Workers only copy a record under a lock; encoding and all I/O happen on the sink threads. */
#include "audit/audit.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit/spool.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

#define CHUNK_RECORDS 64
/* After a busy round the sink thread lingers this long for more records; producers wake it early only once
 * WAKE_DEPTH records wait. A steady stream then costs ~1000/LINGER_MS wake-ups a second, not one per record, and a
 * record reaches its sink at most ~LINGER_MS later (bench/audit: 20 ms / 1024 cut the sink thread's wake-ups 3x
 * against 5 ms / 256 at 20k records/s). */
#define LINGER_MS 20
#define WAKE_DEPTH 1024
#define MAX_SPARE 32
/* Metric shard slots: 2 shards per slot; a reload may hold the old and the new version of every sink at once. */
#define MAX_SLOTS (2 * CUSTOS_CONFIG_MAX_SINKS)

typedef struct chunk {
    struct chunk *next;
    unsigned n;
    custos_audit_record_t recs[CHUNK_RECORDS];
} chunk_t;

typedef struct sink {
    custos_audit_t *a;
    size_t idx;
    const custos_audit_sink_config_t *cfg;
    custos_config_t *cfg_ref; /* keeps cfg alive for sinks created on reload; NULL otherwise */
    const custos_audit_sink_driver_t *drv;
    void *state;
    bool opened;
    pthread_t thread;
    bool started;

    /* queue, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* wakes the sink thread */
    pthread_cond_t done_cv; /* wakes flush waiters */
    chunk_t *head, *tail;
    chunk_t *spare; /* free chunks (list), at most MAX_SPARE: no malloc churn at a steady rate */
    unsigned nspare;
    size_t depth;
    bool sleeping;  /* in a deep wait: the next record wakes it */
    bool lingering; /* in the short wait after a busy round: WAKE_DEPTH records wake it */
    bool stop;
    unsigned flush_waiters;
    uint64_t submitted; /* records accepted into the queue or dropped at the door */
    uint64_t done;      /* of those, records delivered, spooled or dropped */
    bool drop_logged;

    /* sink thread only */
    custos_spool_t *spool;
    char *spool_path;
    custos_buf_t enc;    /* encoded pending records, back to back */
    size_t *poff, *plen; /* pending record offsets/lengths in enc */
    size_t pcap, pstart, pcount;
    uint64_t oldest_ms;   /* when the oldest pending record was taken */
    uint64_t retry_at_ms; /* next replay attempt while the spool is not empty */
    uint32_t backoff_ms;
    bool outage_logged;
    uint64_t idle_at_ms; /* when the driver's idle hook wants to run (UINT64_MAX: not) */

    /* stats (atomics: read by tests) */
    atomic_uint_fast64_t delivered, spooled, replayed, dropped, spool_bytes;

    /* metrics: shard 2*idx is this thread's, 2*idx+1 is written under mu */
    custos_metric_series_t *m_delivered, *m_spooled, *m_replayed, *m_dropped_full, *m_dropped_queue, *m_spool_bytes,
        *m_depth;
    int64_t published_spool_bytes;
} sink_t;

struct custos_audit {
    custos_config_t *cfg; /* reference, or NULL */
    custos_audit_options_t opts;
    char *resource_id;
    /* Active sinks. Changed only by custos_audit_reconfigure, under reconf_mu and (the swap itself) the write lock;
     * submit reads them under the read lock, flush/stats/reconfigure under reconf_mu. */
    pthread_rwlock_t lock;
    pthread_mutex_t reconf_mu;
    sink_t **sinks;
    size_t n;
    atomic_size_t nactive;
    atomic_uint queue_max;
    atomic_bool mask_ip;
    pthread_mutex_t slots_mu;
    bool slot_used[MAX_SLOTS];
    custos_metrics_t *metrics;
    custos_metric_family_t *f_records, *f_dropped, *f_spool, *f_depth;
};

/* ---------- helpers ---------- */

static void deadline_ts(struct timespec *ts, uint64_t ms_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms_from_now / 1000);
    ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t at;
    if (pthread_condattr_init(&at) != 0)
        return CUSTOS_ENOMEM;
    pthread_condattr_setclock(&at, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(c, &at) == 0 ? 0 : CUSTOS_ENOMEM;
    pthread_condattr_destroy(&at);
    return rc;
}

static void publish_spool_bytes(sink_t *s)
{
    int64_t b = (int64_t)custos_spool_bytes(s->spool);
    atomic_store(&s->spool_bytes, (uint64_t)b);
    custos_metrics_gauge_add(s->m_spool_bytes, (unsigned)(2 * s->idx), b - s->published_spool_bytes);
    s->published_spool_bytes = b;
}

/* Marks k records as finished (delivered, spooled or dropped) and wakes flush waiters. */
static void mark_done(sink_t *s, size_t k)
{
    if (!k)
        return;
    pthread_mutex_lock(&s->mu);
    s->done += k;
    if (s->flush_waiters)
        pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
}

static void count_dropped(sink_t *s, size_t k, const char *why)
{
    if (!k)
        return;
    atomic_fetch_add(&s->dropped, k);
    custos_metrics_inc(s->m_dropped_full, (unsigned)(2 * s->idx), k);
    pthread_mutex_lock(&s->mu);
    bool first = !s->drop_logged;
    s->drop_logged = true;
    pthread_mutex_unlock(&s->mu);
    if (first)
        CUSTOS_ERROR("audit sink %s: dropped %zu record(s): %s (reported once; see custos_audit_dropped_total)",
                     s->cfg->name, k, why);
}

/* ---------- pending batch (sink thread) ---------- */

static int pending_push(sink_t *s, const custos_audit_record_t *r)
{
    if (s->pstart + s->pcount == s->pcap) {
        size_t nc = s->pcap ? s->pcap * 2 : 256;
        size_t *no = realloc(s->poff, nc * sizeof(*no));
        if (!no)
            return CUSTOS_ENOMEM;
        s->poff = no;
        size_t *nl = realloc(s->plen, nc * sizeof(*nl));
        if (!nl)
            return CUSTOS_ENOMEM;
        s->plen = nl;
        s->pcap = nc;
    }
    size_t off = s->enc.len;
    int rc = custos_audit_record_encode(r, s->a->resource_id, &s->enc);
    if (rc == 0 && (rc = custos_buf_append_lit(&s->enc, "\n")) != 0) /* sink.h: each record is followed by '\n' */
        s->enc.data[s->enc.len = off] = 0;
    if (rc != 0)
        return rc;
    s->poff[s->pstart + s->pcount] = off;
    s->plen[s->pstart + s->pcount] = s->enc.len - off - 1;
    s->pcount++;
    return 0;
}

static void pending_pop(sink_t *s, size_t k)
{
    s->pstart += k;
    s->pcount -= k;
    if (s->pcount == 0) {
        s->pstart = 0;
        custos_buf_reset(&s->enc);
    }
}

/* Pointers for pending records [pstart, pstart+k) (enc may have moved since they were encoded). */
static void pending_ptrs(sink_t *s, size_t k, const char **recs)
{
    for (size_t i = 0; i < k; i++)
        recs[i] = s->enc.data + s->poff[s->pstart + i];
}

/* Appends every pending record to the spool; what does not fit is dropped (counted). */
static void pending_to_spool(sink_t *s)
{
    size_t k = s->pcount;
    if (!k)
        return;
    const char **recs = malloc(k * sizeof(*recs));
    size_t appended = 0;
    int rc = CUSTOS_ENOMEM;
    if (recs) {
        pending_ptrs(s, k, recs);
        rc = custos_spool_append(s->spool, recs, s->plen + s->pstart, k, &appended);
        free(recs);
    }
    atomic_fetch_add(&s->spooled, appended);
    custos_metrics_inc(s->m_spooled, (unsigned)(2 * s->idx), appended);
    if (appended < k)
        count_dropped(s, k - appended, rc != 0 ? "the spool could not be written" : "the spool is full");
    pending_pop(s, k);
    publish_spool_bytes(s);
    mark_done(s, k);
}

static uint32_t retry_min(const sink_t *s)
{
    return s->a->opts.retry_min_ms ? s->a->opts.retry_min_ms : 500;
}

static uint32_t retry_max(const sink_t *s)
{
    return s->a->opts.retry_max_ms ? s->a->opts.retry_max_ms : 30000;
}

static void schedule_retry(sink_t *s, int rc)
{
    if (!s->outage_logged) {
        CUSTOS_WARN("audit sink %s: delivery failed (%s); spooling records and retrying", s->cfg->name,
                    custos_strerror(rc));
        s->outage_logged = true;
    }
    s->retry_at_ms = custos_now_ms() + s->backoff_ms;
    uint64_t nb = (uint64_t)s->backoff_ms * 2;
    s->backoff_ms = nb > retry_max(s) ? retry_max(s) : (uint32_t)nb;
}

/* True when new records wait or a stop was requested: replay yields to them. */
static bool should_yield(sink_t *s)
{
    pthread_mutex_lock(&s->mu);
    bool r = s->head != NULL || s->stop;
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* Replays the spool (oldest first) until it is empty, a delivery fails, new records wait or a stop was requested. */
static void replay(sink_t *s)
{
    size_t max = s->cfg->batch_max_records ? s->cfg->batch_max_records : 500;
    const char **recs = malloc(max * sizeof(*recs));
    size_t *lens = malloc(max * sizeof(*lens));
    custos_buf_t buf;
    custos_buf_init(&buf, 0);
    if (!recs || !lens)
        goto out;
    while (!custos_spool_empty(s->spool)) {
        size_t n = 0;
        int rc = custos_spool_peek(s->spool, max, &buf, recs, lens, &n);
        if (rc != 0) {
            CUSTOS_ERROR("audit sink %s: cannot read the spool (%s)", s->cfg->name, custos_strerror(rc));
            schedule_retry(s, rc);
            break;
        }
        if (n == 0)
            break;
        rc = s->drv->deliver(s->state, recs, lens, n);
        if (rc != 0) {
            schedule_retry(s, rc);
            break;
        }
        atomic_fetch_add(&s->replayed, n);
        custos_metrics_inc(s->m_replayed, (unsigned)(2 * s->idx), n);
        if ((rc = custos_spool_consume(s->spool)) != 0)
            CUSTOS_ERROR("audit sink %s: cannot update the spool cursor (%s); records may be delivered twice",
                         s->cfg->name, custos_strerror(rc));
        s->backoff_ms = retry_min(s);
        publish_spool_bytes(s);
        if (should_yield(s))
            break;
    }
    if (custos_spool_empty(s->spool) && s->outage_logged) {
        CUSTOS_INFO("audit sink %s: delivering again; spool replayed", s->cfg->name);
        s->outage_logged = false;
    }
out:
    custos_buf_dispose(&buf);
    free(recs);
    free(lens);
}

/* Moves pending records on: delivered directly when the spool is empty, else appended to the spool (order). */
static void process(sink_t *s, bool force)
{
    size_t max = s->cfg->batch_max_records ? s->cfg->batch_max_records : 500;
    if (!custos_spool_empty(s->spool)) {
        pending_to_spool(s);
        if (!force && custos_now_ms() >= s->retry_at_ms)
            replay(s);
        return;
    }
    while (s->pcount > 0) {
        if (!force && s->pcount < max && s->cfg->flush_ms > 0 && custos_now_ms() < s->oldest_ms + s->cfg->flush_ms)
            return;
        size_t k = s->pcount < max ? s->pcount : max;
        const char *recs[k];
        pending_ptrs(s, k, recs);
        int rc = s->drv->deliver(s->state, recs, s->plen + s->pstart, k);
        if (rc != 0) {
            pending_to_spool(s);
            schedule_retry(s, rc);
            return;
        }
        atomic_fetch_add(&s->delivered, k);
        custos_metrics_inc(s->m_delivered, (unsigned)(2 * s->idx), k);
        pending_pop(s, k);
        mark_done(s, k);
    }
}

static void *sink_main(void *arg)
{
    sink_t *s = arg;
    char name[16]; /* "audit-" and the sink's name, cut to the 15 bytes a thread name holds */
    snprintf(name, sizeof(name), "audit-%s", s->cfg->name);
    pthread_setname_np(pthread_self(), name);
    s->backoff_ms = retry_min(s);
    s->idle_at_ms = UINT64_MAX;
    /* records left from an earlier run go first */
    if (!custos_spool_empty(s->spool))
        replay(s);
    bool busy = false;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (busy && !s->stop && !s->flush_waiters && s->pcount == 0 && s->depth < WAKE_DEPTH &&
            custos_spool_empty(s->spool)) {
            struct timespec ts;
            deadline_ts(&ts, LINGER_MS);
            s->lingering = true;
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            s->lingering = false;
        }
        for (;;) {
            if (s->head || s->stop || (s->flush_waiters && s->pcount))
                break;
            uint64_t now = custos_now_ms(), deadline = UINT64_MAX;
            bool spooled = !custos_spool_empty(s->spool);
            if (s->pcount && !spooled)
                deadline = s->oldest_ms + s->cfg->flush_ms;
            if (spooled && s->retry_at_ms < deadline)
                deadline = s->retry_at_ms;
            if (!s->pcount && s->idle_at_ms < deadline)
                deadline = s->idle_at_ms;
            if (deadline <= now)
                break;
            s->sleeping = true;
            if (deadline == UINT64_MAX) {
                pthread_cond_wait(&s->cv, &s->mu);
            } else {
                struct timespec ts;
                deadline_ts(&ts, deadline - now);
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            }
            s->sleeping = false;
        }
        chunk_t *list = s->head;
        s->head = s->tail = NULL;
        size_t taken = s->depth;
        s->depth = 0;
        busy = taken > 0;
        if (taken)
            custos_metrics_gauge_add(s->m_depth, (unsigned)(2 * s->idx + 1), -(int64_t)taken);
        bool stop = s->stop, flush = s->flush_waiters > 0;
        pthread_mutex_unlock(&s->mu);

        if (taken && s->pcount == 0)
            s->oldest_ms = custos_now_ms();
        size_t failed = 0;
        while (list) {
            chunk_t *c = list;
            list = c->next;
            for (unsigned i = 0; i < c->n; i++)
                if (pending_push(s, &c->recs[i]) != 0)
                    failed++;
            pthread_mutex_lock(&s->mu);
            if (s->nspare < MAX_SPARE) {
                c->next = s->spare;
                s->spare = c;
                s->nspare++;
                c = NULL;
            }
            pthread_mutex_unlock(&s->mu);
            free(c);
        }
        if (failed) {
            count_dropped(s, failed, "out of memory while encoding");
            mark_done(s, failed);
        }
        process(s, stop || flush);
        if (s->drv->idle && s->pcount == 0 && custos_spool_empty(s->spool) &&
            (taken || custos_now_ms() >= s->idle_at_ms)) {
            uint32_t ms = s->drv->idle(s->state);
            s->idle_at_ms = ms ? custos_now_ms() + ms : UINT64_MAX;
        }
        if (stop) {
            pthread_mutex_lock(&s->mu);
            bool more = s->head != NULL;
            pthread_mutex_unlock(&s->mu);
            if (!more && s->pcount == 0)
                break;
        }
    }
    return NULL;
}

/* ---------- public ---------- */

void custos_audit_submit(custos_audit_t *a, const custos_audit_record_t *r)
{
    if (!a || atomic_load_explicit(&a->nactive, memory_order_relaxed) == 0)
        return;
    unsigned qmax = atomic_load_explicit(&a->queue_max, memory_order_relaxed);
    pthread_rwlock_rdlock(&a->lock);
    for (size_t i = 0; i < a->n; i++) {
        sink_t *s = a->sinks[i];
        pthread_mutex_lock(&s->mu);
        s->submitted++;
        if (s->depth >= qmax || s->stop) {
            s->done++;
            bool first = !s->drop_logged;
            s->drop_logged = true;
            atomic_fetch_add(&s->dropped, 1);
            custos_metrics_inc(s->m_dropped_queue, (unsigned)(2 * s->idx + 1), 1);
            pthread_mutex_unlock(&s->mu);
            if (first)
                CUSTOS_ERROR("audit sink %s: dropped a record: the in-memory queue is full (%u records; reported "
                             "once; see custos_audit_dropped_total)",
                             s->cfg->name, qmax);
            continue;
        }
        chunk_t *c = s->tail;
        if (!c || c->n == CHUNK_RECORDS) {
            if (s->spare) {
                c = s->spare;
                s->spare = c->next;
                s->nspare--;
            } else {
                c = malloc(sizeof(*c));
            }
            if (!c) {
                s->done++;
                atomic_fetch_add(&s->dropped, 1);
                custos_metrics_inc(s->m_dropped_queue, (unsigned)(2 * s->idx + 1), 1);
                pthread_mutex_unlock(&s->mu);
                continue;
            }
            c->next = NULL;
            c->n = 0;
            if (s->tail)
                s->tail->next = c;
            else
                s->head = c;
            s->tail = c;
        }
        c->recs[c->n++] = *r;
        s->depth++;
        custos_metrics_gauge_add(s->m_depth, (unsigned)(2 * s->idx + 1), 1);
        bool wake = s->sleeping || (s->lingering && s->depth == WAKE_DEPTH);
        s->sleeping = false; /* one wake-up per sleep */
        if (wake)
            pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_rwlock_unlock(&a->lock);
}

bool custos_audit_enabled(custos_audit_t *a)
{
    return a && atomic_load_explicit(&a->nactive, memory_order_relaxed) > 0;
}

bool custos_audit_mask_ip(const custos_audit_t *a)
{
    return a ? atomic_load_explicit(&a->mask_ip, memory_order_relaxed) : true;
}

custos_metrics_t *custos_audit_metrics(custos_audit_t *a)
{
    return a ? a->metrics : NULL;
}

int custos_audit_sink_stats(custos_audit_t *a, size_t i, custos_audit_sink_stats_t *st)
{
    if (!a)
        return CUSTOS_EINVAL;
    pthread_mutex_lock(&a->reconf_mu);
    if (i >= a->n) {
        pthread_mutex_unlock(&a->reconf_mu);
        return CUSTOS_EINVAL;
    }
    sink_t *s = a->sinks[i];
    st->delivered = atomic_load(&s->delivered);
    st->spooled = atomic_load(&s->spooled);
    st->replayed = atomic_load(&s->replayed);
    st->dropped = atomic_load(&s->dropped);
    st->spool_bytes = atomic_load(&s->spool_bytes);
    pthread_mutex_unlock(&a->reconf_mu);
    return 0;
}

int custos_audit_flush(custos_audit_t *a, uint32_t timeout_ms)
{
    if (!a)
        return 0;
    int rc = 0;
    uint64_t end = custos_now_ms() + timeout_ms;
    pthread_mutex_lock(&a->reconf_mu); /* sinks stay while we wait; a reload waits for the flush */
    for (size_t i = 0; i < a->n; i++) {
        sink_t *s = a->sinks[i];
        pthread_mutex_lock(&s->mu);
        uint64_t target = s->submitted;
        s->flush_waiters++;
        pthread_cond_signal(&s->cv);
        while (s->done < target) {
            uint64_t now = custos_now_ms();
            if (now >= end) {
                rc = CUSTOS_ETIMEDOUT;
                break;
            }
            struct timespec ts;
            deadline_ts(&ts, end - now);
            pthread_cond_timedwait(&s->done_cv, &s->mu, &ts);
        }
        s->flush_waiters--;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&a->reconf_mu);
    return rc;
}

/* Frees a sink whose thread was joined or never started: closes its driver and spool (unless handed over), releases
 * its metric slot and its configuration reference. */
static void sink_destroy(custos_audit_t *a, sink_t *s)
{
    if (!s)
        return;
    if (s->opened && s->drv->close)
        s->drv->close(s->state);
    custos_spool_close(s->spool);
    free(s->spool_path);
    custos_buf_dispose(&s->enc);
    free(s->poff);
    free(s->plen);
    while (s->head) {
        chunk_t *c = s->head;
        s->head = c->next;
        free(c);
    }
    while (s->spare) {
        chunk_t *c = s->spare;
        s->spare = c->next;
        free(c);
    }
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->done_cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_lock(&a->slots_mu);
    a->slot_used[s->idx] = false;
    pthread_mutex_unlock(&a->slots_mu);
    custos_config_unref(s->cfg_ref);
    free(s);
}

/* Asks a sink's thread to finish (deliver or spool what is queued, then exit). */
static void sink_stop(sink_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Joins a stopped sink's thread and reports what it leaves behind. */
static void sink_join(sink_t *s)
{
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = false;
    uint64_t d = atomic_load(&s->dropped);
    if (d)
        CUSTOS_WARN("audit sink %s: %" PRIu64 " record(s) dropped in total", s->cfg->name, d);
}

void custos_audit_free(custos_audit_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->sinks && i < a->n; i++)
        if (a->sinks[i] && a->sinks[i]->started)
            sink_stop(a->sinks[i]);
    for (size_t i = 0; a->sinks && i < a->n; i++) {
        sink_t *s = a->sinks[i];
        if (!s)
            continue;
        sink_join(s);
        if (s->spool && !custos_spool_empty(s->spool))
            CUSTOS_INFO("audit sink %s: %" PRIu64 " bytes left in the spool, replayed at the next start", s->cfg->name,
                        custos_spool_bytes(s->spool));
        sink_destroy(a, s);
    }
    free(a->sinks);
    custos_metrics_free(a->metrics);
    free(a->resource_id);
    custos_config_unref(a->cfg);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->reconf_mu);
    pthread_mutex_destroy(&a->slots_mu);
    free(a);
}

static int register_metrics(custos_audit_t *a)
{
    static const char *const l_so[] = {"sink", "outcome"};
    static const char *const l_sr[] = {"sink", "reason"};
    static const char *const l_s[] = {"sink"};
    a->metrics = custos_metrics_new((unsigned)(2 * MAX_SLOTS));
    if (!a->metrics)
        return CUSTOS_ENOMEM;
    int rc = custos_metrics_counter(a->metrics, "custos_audit_records_total",
                                    "Request records by sink and outcome (delivered, spooled, replayed).", l_so, 2,
                                    &a->f_records);
    rc = rc ? rc
            : custos_metrics_counter(a->metrics, "custos_audit_dropped_total",
                                     "Request records lost: the spool was full or unwritable, or the queue was full.",
                                     l_sr, 2, &a->f_dropped);
    rc = rc ? rc
            : custos_metrics_gauge(a->metrics, "custos_audit_spool_bytes", "Unreplayed bytes in the sink's spool.", l_s,
                                   1, &a->f_spool);
    rc = rc ? rc
            : custos_metrics_gauge(a->metrics, "custos_audit_queue_depth", "Records waiting in the sink's queue.", l_s,
                                   1, &a->f_depth);
    return rc;
}

/* A sink for cfg, not yet started: metric slot and series, queue. The same name gets the same series, so counters
 * continue across a reload. NULL when out of memory or out of metric slots. */
static sink_t *sink_alloc(custos_audit_t *a, const custos_audit_sink_config_t *cfg,
                          const custos_audit_sink_driver_t *drv)
{
    sink_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_lock(&a->slots_mu);
    size_t idx = MAX_SLOTS;
    for (size_t i = 0; i < MAX_SLOTS && idx == MAX_SLOTS; i++)
        if (!a->slot_used[i])
            idx = i;
    if (idx < MAX_SLOTS)
        a->slot_used[idx] = true;
    pthread_mutex_unlock(&a->slots_mu);
    if (idx == MAX_SLOTS) {
        free(s);
        return NULL;
    }
    s->a = a;
    s->idx = idx;
    s->cfg = cfg;
    s->drv = drv;
    pthread_mutex_init(&s->mu, NULL);
    custos_buf_init(&s->enc, 0);
    if (cond_init_mono(&s->cv) != 0 || cond_init_mono(&s->done_cv) != 0) {
        sink_destroy(a, s);
        return NULL;
    }
    const char *nm = cfg->name;
    const char *d[2] = {nm, "delivered"}, *sp[2] = {nm, "spooled"}, *rp[2] = {nm, "replayed"};
    const char *df[2] = {nm, "spool_full"}, *dq[2] = {nm, "queue_full"}, *one[1] = {nm};
    s->m_delivered = custos_metrics_series(a->f_records, d);
    s->m_spooled = custos_metrics_series(a->f_records, sp);
    s->m_replayed = custos_metrics_series(a->f_records, rp);
    s->m_dropped_full = custos_metrics_series(a->f_dropped, df);
    s->m_dropped_queue = custos_metrics_series(a->f_dropped, dq);
    s->m_spool_bytes = custos_metrics_series(a->f_spool, one);
    s->m_depth = custos_metrics_series(a->f_depth, one);
    return s;
}

/* Opens the sink's driver and, when with_spool, its spool directory. err gets a message. */
static int sink_open(custos_audit_t *a, sink_t *s, bool with_spool, char *err, size_t errlen)
{
    char derr[256];
    int rc;
    if (!s->drv) {
        if (err && errlen)
            snprintf(err, errlen, "diagnostics sink %s: type %s is not available in this build", s->cfg->name,
                     s->cfg->type_name ? s->cfg->type_name : "?");
        return CUSTOS_ENOTFOUND;
    }
    if (with_spool) {
        if (asprintf(&s->spool_path, "%s/%s", a->opts.spool_dir ? a->opts.spool_dir : "spool", s->cfg->name) < 0) {
            s->spool_path = NULL;
            if (err && errlen)
                snprintf(err, errlen, "diagnostics: out of memory");
            return CUSTOS_ENOMEM;
        }
        if ((rc = custos_spool_open(s->spool_path, a->opts.spool_max_bytes ? a->opts.spool_max_bytes : (1ull << 30),
                                    &s->spool)) != 0) {
            if (err && errlen)
                snprintf(err, errlen, "diagnostics sink %s: cannot open the spool directory %s: %s", s->cfg->name,
                         s->spool_path, rc == CUSTOS_EUNAVAIL ? "in use by another process" : strerror(errno));
            return rc;
        }
        publish_spool_bytes(s);
    }
    derr[0] = 0;
    if ((rc = s->drv->open(s->cfg, &s->state, derr, sizeof(derr))) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "diagnostics sink %s: %s", s->cfg->name, derr[0] ? derr : custos_strerror(rc));
        return rc;
    }
    s->opened = true;
    return 0;
}

/* Starts the sink's thread (it takes no signals: the main thread handles them). */
static int sink_start(sink_t *s)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, sink_main, s) == 0 ? 0 : CUSTOS_ENOMEM;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    s->started = rc == 0;
    return rc;
}

int custos_audit_new_with(const custos_audit_options_t *opts, const custos_audit_sink_config_t *sinks,
                          const custos_audit_sink_driver_t *const *drivers, size_t n, custos_audit_t **out, char *err,
                          size_t errlen)
{
    custos_audit_t *a = calloc(1, sizeof(*a));
    int rc = CUSTOS_ENOMEM;
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!a)
        goto oom;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* a reload's brief swap must not wait behind a steady stream of submitters */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&a->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&a->reconf_mu, NULL);
    pthread_mutex_init(&a->slots_mu, NULL);
    a->opts = *opts;
    if (a->opts.queue_max_records == 0)
        a->opts.queue_max_records = 65536;
    atomic_init(&a->queue_max, a->opts.queue_max_records);
    atomic_init(&a->mask_ip, a->opts.mask_client_ip);
    if (opts->resource_id) {
        a->resource_id = strdup(opts->resource_id);
    } else {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = 0;
        char safe[CUSTOS_AUDIT_NAME_MAX + 1];
        custos_audit_copy_name(safe, sizeof(safe), host);
        if (asprintf(&a->resource_id, "custos/%s", safe[0] ? safe : "localhost") < 0)
            a->resource_id = NULL;
    }
    if (!a->resource_id)
        goto oom;
    if (n > CUSTOS_CONFIG_MAX_SINKS) {
        rc = CUSTOS_EINVAL;
        if (err && errlen)
            snprintf(err, errlen, "diagnostics: at most %d sinks", CUSTOS_CONFIG_MAX_SINKS);
        goto fail;
    }
    a->sinks = calloc(CUSTOS_CONFIG_MAX_SINKS, sizeof(*a->sinks));
    if (!a->sinks || register_metrics(a) != 0)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        sink_t *s = sink_alloc(a, &sinks[i], drivers[i]);
        if (!s)
            goto oom;
        a->sinks[a->n++] = s;
        if ((rc = sink_open(a, s, true, err, errlen)) != 0)
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (sink_start(a->sinks[i]) != 0) {
            rc = CUSTOS_ENOMEM;
            if (err && errlen)
                snprintf(err, errlen, "diagnostics sink %s: cannot start its thread", a->sinks[i]->cfg->name);
            goto fail;
        }
    }
    atomic_store(&a->nactive, a->n);
    *out = a;
    return 0;
oom:
    rc = CUSTOS_ENOMEM;
    if (err && errlen)
        snprintf(err, errlen, "diagnostics: out of memory");
fail:
    custos_audit_free(a);
    return rc;
}

int custos_audit_new(custos_config_t *cfg, custos_audit_t **out, char *err, size_t errlen)
{
    const custos_diagnostics_config_t *d = &cfg->diagnostics;
    const custos_audit_sink_driver_t *drivers[CUSTOS_CONFIG_MAX_SINKS];
    *out = NULL;
    if (d->n_sinks > CUSTOS_CONFIG_MAX_SINKS)
        return CUSTOS_EINVAL;
    for (size_t i = 0; i < d->n_sinks; i++)
        drivers[i] = custos_audit_sink_driver_find(d->sinks[i].type);
    custos_audit_options_t o = {
        .spool_dir = d->spool_dir,
        .spool_max_bytes = d->spool_max_bytes,
        .queue_max_records = d->queue_max_records,
        .mask_client_ip = d->mask_client_ip,
    };
    int rc = custos_audit_new_with(&o, d->sinks, drivers, d->n_sinks, out, err, errlen);
    if (rc == 0)
        (*out)->cfg = custos_config_ref(cfg);
    return rc;
}

static bool str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool sink_same(const custos_audit_sink_config_t *a, const custos_audit_sink_config_t *b)
{
    if (a->type != b->type || !str_same(a->name, b->name) || a->batch_max_records != b->batch_max_records ||
        a->flush_ms != b->flush_ms || !str_same(a->path, b->path) || a->max_bytes != b->max_bytes ||
        a->max_files != b->max_files || a->max_age_s != b->max_age_s || a->fsync_interval_ms != b->fsync_interval_ms ||
        !str_same(a->address, b->address) || !str_same(a->app_name, b->app_name) || a->facility != b->facility ||
        !str_same(a->hostname, b->hostname) || !str_same(a->ca_file, b->ca_file) || !str_same(a->url, b->url) ||
        a->format != b->format || !str_same(a->token, b->token) || !str_same(a->index, b->index) ||
        a->gzip != b->gzip || a->timeout_ms != b->timeout_ms || !str_same(a->brokers, b->brokers) ||
        !str_same(a->topic, b->topic) || !str_same(a->client_id, b->client_id) || a->n_properties != b->n_properties)
        return false;
    for (size_t i = 0; i < a->n_properties; i++)
        if (!str_same(a->property_keys[i], b->property_keys[i]) ||
            !str_same(a->property_values[i], b->property_values[i]))
            return false;
    return true;
}

bool custos_audit_config_changed(const custos_diagnostics_config_t *a, const custos_diagnostics_config_t *b)
{
    if (a->mask_client_ip != b->mask_client_ip || !str_same(a->spool_dir, b->spool_dir) ||
        a->spool_max_bytes != b->spool_max_bytes || a->queue_max_records != b->queue_max_records ||
        a->n_sinks != b->n_sinks)
        return true;
    for (size_t i = 0; i < a->n_sinks; i++)
        if (!sink_same(&a->sinks[i], &b->sinks[i]))
            return true;
    return false;
}

int custos_audit_reconfigure(custos_audit_t *a, custos_config_t *cfg)
{
    if (!a || !cfg)
        return CUSTOS_EINVAL;
    const custos_diagnostics_config_t *d = &cfg->diagnostics;
    sink_t *next[CUSTOS_CONFIG_MAX_SINKS], *fresh[CUSTOS_CONFIG_MAX_SINKS], *pred[CUSTOS_CONFIG_MAX_SINKS];
    sink_t *leaving[CUSTOS_CONFIG_MAX_SINKS];
    size_t nn = 0, nleaving = 0;
    int rc = 0;
    char err[512];
    if (d->n_sinks > CUSTOS_CONFIG_MAX_SINKS)
        return CUSTOS_EINVAL;
    pthread_mutex_lock(&a->reconf_mu);
    if (!str_same(a->opts.spool_dir, d->spool_dir) || a->opts.spool_max_bytes != d->spool_max_bytes)
        CUSTOS_WARN("reload: diagnostics.spool_dir / spool_max_bytes changed; they apply at the next restart");
    /* 1. The new set: unchanged sinks are kept as they are; a changed one gets a successor (driver opened now, spool
     * handed over below); a new one is opened with its spool. A sink that cannot be opened keeps its old version (or
     * is not added), so a bad sink entry never silences a working one. */
    for (size_t i = 0; i < d->n_sinks; i++) {
        const custos_audit_sink_config_t *sc = &d->sinks[i];
        sink_t *old = NULL;
        for (size_t j = 0; j < a->n && !old; j++)
            if (strcmp(a->sinks[j]->cfg->name, sc->name) == 0)
                old = a->sinks[j];
        fresh[nn] = pred[nn] = NULL;
        if (old && sink_same(old->cfg, sc)) {
            next[nn++] = old;
            continue;
        }
        sink_t *s = sink_alloc(a, sc, custos_audit_sink_driver_find(sc->type));
        int orc = s ? sink_open(a, s, old == NULL, err, sizeof(err)) : CUSTOS_ENOMEM;
        if (!s)
            snprintf(err, sizeof(err), "diagnostics sink %s: out of memory", sc->name);
        if (orc != 0) {
            CUSTOS_ERROR("reload: %s; %s", err, old ? "keeping its previous settings" : "not added");
            if (s)
                sink_destroy(a, s);
            rc = orc;
            if (old)
                next[nn++] = old;
            continue;
        }
        s->cfg_ref = custos_config_ref(cfg);
        fresh[nn] = s;
        pred[nn] = old;
        next[nn++] = s;
    }
    for (size_t j = 0; j < a->n; j++) {
        bool kept = false;
        for (size_t i = 0; i < nn && !kept; i++)
            kept = next[i] == a->sinks[j];
        if (!kept)
            leaving[nleaving++] = a->sinks[j];
    }
    /* 2. Swap: from here on workers queue records to the new set (a successor's queue fills while its predecessor
     * drains; its thread starts only after the handover, so order is kept). */
    pthread_rwlock_wrlock(&a->lock);
    memcpy(a->sinks, next, nn * sizeof(*next));
    a->n = nn;
    atomic_store(&a->nactive, nn);
    pthread_rwlock_unlock(&a->lock);
    atomic_store(&a->queue_max, d->queue_max_records ? d->queue_max_records : 65536);
    atomic_store(&a->mask_ip, d->mask_client_ip);
    /* 3. Old versions and removed sinks deliver (one attempt) or spool what they hold, then stop. */
    for (size_t j = 0; j < nleaving; j++)
        sink_stop(leaving[j]);
    for (size_t j = 0; j < nleaving; j++)
        sink_join(leaving[j]);
    /* 4. Hand each predecessor's spool (with what it just spooled) to its successor, which replays it first. */
    for (size_t i = 0; i < nn; i++) {
        if (!fresh[i] || !pred[i])
            continue;
        sink_t *o = pred[i], *s = fresh[i];
        s->spool = o->spool;
        s->spool_path = o->spool_path;
        o->spool = NULL;
        o->spool_path = NULL;
        custos_metrics_gauge_add(o->m_spool_bytes, (unsigned)(2 * o->idx), -o->published_spool_bytes);
        publish_spool_bytes(s);
    }
    for (size_t j = 0; j < nleaving; j++) {
        sink_t *o = leaving[j];
        bool replaced = false;
        for (size_t i = 0; i < nn && !replaced; i++)
            replaced = pred[i] == o;
        if (!replaced)
            CUSTOS_INFO("reload: audit sink %s removed%s", o->cfg->name,
                        o->spool && !custos_spool_empty(o->spool) ? " (its spool is replayed if it comes back)" : "");
        sink_destroy(a, o);
    }
    for (size_t i = 0; i < nn; i++) {
        if (!fresh[i])
            continue;
        if (sink_start(fresh[i]) != 0) {
            CUSTOS_ERROR("reload: audit sink %s: cannot start its thread; its records wait in memory until a restart",
                         fresh[i]->cfg->name);
            rc = CUSTOS_ENOMEM;
            continue;
        }
        CUSTOS_INFO("reload: audit sink %s %s", fresh[i]->cfg->name,
                    pred[i] ? "re-created with new settings" : "added");
    }
    pthread_mutex_unlock(&a->reconf_mu);
    return rc;
}
