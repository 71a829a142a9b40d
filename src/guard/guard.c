/* SPDX-License-Identifier: Apache-2.0
 * The guard hub (guard.h): per guard name, a circuit breaker and in-flight count shared by every worker
 * (route/health.h, the same breaker backends use), a verdict cache (behind its own mutex, taken only for guard
 * questions), and the metric families.
 * A call runs on the worker's own loop through its upstream client: nothing here blocks the loop. */
#include "guard/guard.h"

#include "route/health.h"
#include "util/err.h"
#include "util/time.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SLOTS 256 /* guard names remembered over the process' life (reloads add) */

typedef struct gslot {
    char name[72];
    custos_backend_health_t health;  /* breaker and in-flight count (all workers) */
    pthread_mutex_t cache_lock;      /* guards cache: held for a lookup or an insert (guard calls are rare) */
    custos_guard_cache_t *cache;     /* shared by the workers; NULL until first used or when caching is off */
    custos_metric_series_t **by_err; /* [CUSTOS_GUARD_NERRS] custos_guard_errors_total{guard, kind} */
    custos_metric_series_t *latency, *hit, *miss;
} gslot_t;

struct custos_guard_hub {
    pthread_mutex_t lock; /* slot creation only */
    gslot_t *slots[MAX_SLOTS];
    atomic_size_t n;
    unsigned nworkers;
    custos_metric_family_t *checks, *errors, *latency, *cache, *compared, *disagree, *steps;
};

struct custos_guard_call {
    custos_guard_hub_t *h;
    gslot_t *slot;
    unsigned worker;
    custos_upstream_t *up;
    const custos_guard_config_t *g; /* borrowed from the caller's config reference */
    custos_guard_check_t check;
    custos_guard_key_t key;
    bool keyed, trial;
    unsigned attempts;
    int status;
    custos_buf_t path, body, resp;
    custos_upstream_req_t *ur;
    custos_guard_done_fn fn;
    void *ud;
    uint64_t started_ns;
};

int custos_guard_hub_new(custos_metrics_t *reg, unsigned nworkers, custos_guard_hub_t **out)
{
    static const double lat[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    static const char *const l_gcr[] = {"guard", "check", "result"};
    static const char *const l_gk[] = {"guard", "kind"};
    static const char *const l_g[] = {"guard"};
    static const char *const l_gr[] = {"guard", "result"};
    static const char *const l_gc[] = {"guard", "check"};
    static const char *const l_pcd[] = {"policy", "check", "decision"};
    *out = NULL;
    custos_guard_hub_t *h = calloc(1, sizeof(*h));
    if (!h)
        return CUSTOS_ENOMEM;
    pthread_mutex_init(&h->lock, NULL);
    h->nworkers = nworkers ? nworkers : 1;
    int rc = 0;
    if (reg) {
        rc = custos_metrics_counter(reg, "custos_guard_checks_total",
                                    "Checks answered by external guard models (result: safe, unsafe, error).", l_gcr, 3,
                                    &h->checks);
        rc = rc ? rc
                : custos_metrics_counter(reg, "custos_guard_errors_total", "Guard checks that got no verdict, by kind.",
                                         l_gk, 2, &h->errors);
        rc = rc ? rc
                : custos_metrics_histogram(reg, "custos_guard_latency_seconds",
                                           "Time from asking a guard to its verdict (retries included).", lat,
                                           sizeof(lat) / sizeof(lat[0]), l_g, 1, &h->latency);
        rc = rc ? rc
                : custos_metrics_counter(reg, "custos_guard_cache_total", "Guard verdict cache lookups (hit, miss).",
                                         l_gr, 2, &h->cache);
        rc = rc ? rc
                : custos_metrics_counter(reg, "custos_guard_compared_total",
                                         "Guard verdicts compared with the in-process model's own decision.", l_gc, 2,
                                         &h->compared);
        rc = rc ? rc
                : custos_metrics_counter(reg, "custos_guard_disagreements_total",
                                         "Guard verdicts that differ from the in-process model's own decision.", l_gc,
                                         2, &h->disagree);
        rc = rc ? rc
                : custos_metrics_counter(reg, "custos_cascade_decisions_total",
                                         "Cascade steps per screened text (allow, block: in-process; guard: asked).",
                                         l_pcd, 3, &h->steps);
    }
    if (rc < 0) {
        custos_guard_hub_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void custos_guard_hub_free(custos_guard_hub_t *h)
{
    if (!h)
        return;
    size_t n = atomic_load(&h->n);
    for (size_t i = 0; i < n; i++) {
        gslot_t *s = h->slots[i];
        custos_guard_cache_free(s->cache);
        pthread_mutex_destroy(&s->cache_lock);
        free(s->by_err);
        custos_health_entry_dispose(&s->health);
        free(s);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* The slot for a guard name, created on first use. */
static gslot_t *slot_get(custos_guard_hub_t *h, const char *name)
{
    size_t n = atomic_load_explicit(&h->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(h->slots[i]->name, name) == 0)
            return h->slots[i];
    pthread_mutex_lock(&h->lock);
    gslot_t *s = NULL;
    n = atomic_load_explicit(&h->n, memory_order_acquire);
    for (size_t i = 0; i < n && !s; i++)
        if (strcmp(h->slots[i]->name, name) == 0)
            s = h->slots[i];
    if (!s && n < MAX_SLOTS && strlen(name) < sizeof(s->name) && (s = calloc(1, sizeof(*s)))) {
        s->by_err = calloc(CUSTOS_GUARD_NERRS, sizeof(*s->by_err));
        if (!s->by_err) {
            free(s);
            s = NULL;
        } else {
            memcpy(s->name, name, strlen(name) + 1); /* fits: checked above */
            pthread_mutex_init(&s->cache_lock, NULL);
            custos_health_entry_init(&s->health, name);
            const char *lg[1] = {s->name};
            const char *lh[2] = {s->name, "hit"}, *lm[2] = {s->name, "miss"};
            s->latency = h->latency ? custos_metrics_series(h->latency, lg) : NULL;
            s->hit = h->cache ? custos_metrics_series(h->cache, lh) : NULL;
            s->miss = h->cache ? custos_metrics_series(h->cache, lm) : NULL;
            for (int e = 1; e < CUSTOS_GUARD_NERRS && h->errors; e++) {
                const char *le[2] = {s->name, custos_guard_err_name((custos_guard_err_t)e)};
                s->by_err[e] = custos_metrics_series(h->errors, le);
            }
            h->slots[n] = s;
            atomic_store_explicit(&h->n, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return s;
}

/* The guard's cache, (re)created when the configured size changed; call with cache_lock held. NULL: caching off. */
static custos_guard_cache_t *cache_locked(gslot_t *s, const custos_guard_config_t *g)
{
    if (!g->cache_entries)
        return NULL;
    custos_guard_cache_t **c = &s->cache;
    if (*c && custos_guard_cache_capacity(*c) < g->cache_entries) {
        custos_guard_cache_free(*c);
        *c = NULL;
    }
    if (!*c && custos_guard_cache_new(g->cache_entries, (uint64_t)g->cache_ttl_s * 1000, c) < 0)
        *c = NULL;
    return *c;
}

static bool cache_get(gslot_t *s, const custos_guard_config_t *g, const custos_guard_key_t *k,
                      custos_guard_verdict_t *out)
{
    pthread_mutex_lock(&s->cache_lock);
    custos_guard_cache_t *c = cache_locked(s, g);
    bool hit = c && custos_guard_cache_get(c, k, custos_now_ms(), out);
    pthread_mutex_unlock(&s->cache_lock);
    return hit;
}

static void cache_put(gslot_t *s, const custos_guard_config_t *g, const custos_guard_key_t *k,
                      const custos_guard_verdict_t *v)
{
    pthread_mutex_lock(&s->cache_lock);
    custos_guard_cache_t *c = cache_locked(s, g);
    if (c)
        custos_guard_cache_put(c, k, custos_now_ms(), v);
    pthread_mutex_unlock(&s->cache_lock);
}

static void count_verdict(custos_guard_hub_t *h, gslot_t *s, unsigned worker, const custos_guard_config_t *g,
                          custos_guard_check_t check, const custos_guard_verdict_t *v)
{
    if (!h)
        return;
    if (h->checks) {
        const char *l[3] = {g->name, custos_guard_check_name(check), v->err ? "error" : v->unsafe ? "unsafe" : "safe"};
        custos_metrics_inc(custos_metrics_series(h->checks, l), worker, 1);
    }
    if (v->err && s && s->by_err[v->err])
        custos_metrics_inc(s->by_err[v->err], worker, 1);
}

static void call_free(custos_guard_call_t *c)
{
    custos_buf_dispose(&c->path);
    custos_buf_dispose(&c->body);
    custos_buf_dispose(&c->resp);
    free(c);
}

static int on_head(void *ud, int status, const custos_http_header_t *hd, size_t n)
{
    (void)hd;
    (void)n;
    custos_guard_call_t *c = ud;
    c->status = status;
    custos_buf_reset(&c->resp);
    return 0;
}

static int on_body(void *ud, const char *data, size_t len)
{
    custos_guard_call_t *c = ud;
    return custos_buf_append(&c->resp, data, len) < 0 ? CUSTOS_ETOOBIG : 0;
}

static int start(custos_guard_call_t *c);

static void on_done(void *ud, int rc)
{
    custos_guard_call_t *c = ud;
    c->ur = NULL;
    const custos_guard_config_t *g = c->g;
    custos_guard_verdict_t v;
    memset(&v, 0, sizeof(v));
    memset(v.severity, -1, sizeof(v.severity));
    if (rc == 0 && c->status == 200) {
        custos_guard_parse(g, c->check, custos_buf_peek(&c->resp), custos_buf_size(&c->resp), &v);
    } else if (rc == 0) {
        v.err = CUSTOS_GUARD_ERR_HTTP;
    } else {
        v.err = rc == CUSTOS_ETIMEDOUT ? CUSTOS_GUARD_ERR_TIMEOUT
                : rc == CUSTOS_ETOOBIG ? CUSTOS_GUARD_ERR_PARSE
                                       : CUSTOS_GUARD_ERR_CONNECT;
    }
    bool failure = v.err != CUSTOS_GUARD_OK && !(v.err == CUSTOS_GUARD_ERR_HTTP && c->status < 500 && c->status != 429);
    custos_outlier_params_t op = {g->cb_failures, g->cb_base_ms, g->cb_max_ms};
    custos_health_end(&c->slot->health, &op, failure ? CUSTOS_OUTCOME_FAILURE : CUSTOS_OUTCOME_SUCCESS, c->trial,
                      custos_now_ms());
    c->trial = false;
    bool retryable = v.err == CUSTOS_GUARD_ERR_TIMEOUT || v.err == CUSTOS_GUARD_ERR_CONNECT ||
                     (v.err == CUSTOS_GUARD_ERR_HTTP && (c->status >= 500 || c->status == 429));
    if (retryable && c->attempts <= g->retries && custos_health_available(&c->slot->health) && start(c) == 0)
        return; /* retried at once; the breaker is consulted first */
    v.latency_ns = custos_now_ns() - c->started_ns;
    if (c->slot->latency && v.err == CUSTOS_GUARD_OK)
        custos_metrics_observe(c->slot->latency, c->worker, (double)v.latency_ns / 1e9);
    count_verdict(c->h, c->slot, c->worker, g, c->check, &v);
    if (c->keyed && v.err == CUSTOS_GUARD_OK)
        cache_put(c->slot, g, &c->key, &v);
    custos_guard_done_fn fn = c->fn;
    void *fud = c->ud;
    call_free(c);
    fn(fud, &v);
}

/* One attempt. Returns 0 (in flight) or a negative code (nothing started; counters settled). */
static int start(custos_guard_call_t *c)
{
    const custos_guard_config_t *g = c->g;
    custos_http_header_t hd[5];
    size_t n = 0;
    char *auth = NULL;
    hd[n++] = (custos_http_header_t){"content-type", 12, "application/json", 16};
    hd[n++] = (custos_http_header_t){"accept", 6, "application/json", 16};
    hd[n++] = (custos_http_header_t){"user-agent", 10, "custos/0.1", 10};
    if (g->api_key) {
        if (g->type == CUSTOS_GUARD_AZURE_CONTENT_SAFETY) {
            hd[n++] = (custos_http_header_t){"ocp-apim-subscription-key", 25, g->api_key, g->api_key_len};
        } else {
            auth = malloc(g->api_key_len + 8);
            if (!auth)
                return CUSTOS_ENOMEM;
            memcpy(auth, "Bearer ", 7);
            memcpy(auth + 7, g->api_key, g->api_key_len);
            hd[n++] = (custos_http_header_t){"authorization", 13, auth, g->api_key_len + 7};
        }
    }
    custos_upstream_target_t t;
    custos_upstream_target_init(&t);
    t.name = g->name;
    t.host = g->host;
    t.port = g->port;
    t.tls = g->https;
    t.ca_file = g->ca_file;
    t.verify = g->tls_verify;
    t.max_connections = g->max_concurrency;
    custos_upstream_timeouts_t to = {g->timeout_ms, g->timeout_ms, g->timeout_ms};
    static const custos_upstream_cbs_t cbs = {on_head, on_body, on_done};
    c->status = 0;
    custos_buf_reset(&c->resp);
    custos_health_begin(&c->slot->health);
    c->attempts++;
    int rc = custos_upstream_request(c->up, &t, "POST", custos_buf_peek(&c->path), hd, n, custos_buf_peek(&c->body),
                                     custos_buf_size(&c->body), &to, &cbs, c, &c->ur);
    if (auth) {
        memset(auth, 0, g->api_key_len + 7);
        free(auth);
    }
    if (rc < 0) {
        c->ur = NULL;
        custos_outlier_params_t op = {g->cb_failures, g->cb_base_ms, g->cb_max_ms};
        custos_health_end(&c->slot->health, &op,
                          rc == CUSTOS_EUNAVAIL || rc == CUSTOS_ENOMEM ? CUSTOS_OUTCOME_NEUTRAL
                                                                       : CUSTOS_OUTCOME_FAILURE,
                          c->trial, custos_now_ms());
        c->trial = false;
    }
    return rc;
}

static void verdict_err(custos_guard_verdict_t *v, custos_guard_err_t e)
{
    memset(v, 0, sizeof(*v));
    memset(v->severity, -1, sizeof(v->severity));
    v->err = e;
}

int custos_guard_ask(custos_guard_hub_t *h, unsigned worker, custos_loop_t *loop, custos_upstream_t *up,
                     const custos_guard_query_t *q, custos_guard_done_fn fn, void *ud, custos_guard_call_t **call,
                     custos_guard_verdict_t *now)
{
    (void)loop;
    const custos_guard_config_t *g = q->guard;
    *call = NULL;
    gslot_t *s = h ? slot_get(h, g->name) : NULL;
    if (!s || !up) {
        verdict_err(now, CUSTOS_GUARD_ERR_INTERNAL);
        count_verdict(h, s, worker, g, q->check, now);
        return 1;
    }
    custos_guard_key_t key;
    bool keyed = false;
    if (g->cache_entries &&
        custos_guard_key(q->policy ? q->policy : "", g->name, q->check, q->src, q->text, q->len, &key) == 0) {
        keyed = true;
        if (cache_get(s, g, &key, now)) {
            custos_metrics_inc(s->hit, worker, 1);
            return 1;
        }
        custos_metrics_inc(s->miss, worker, 1);
    }
    uint64_t now_ms = custos_now_ms();
    bool trial = false;
    if (!custos_health_available(&s->health)) {
        if (!custos_health_try_trial(&s->health, now_ms)) {
            verdict_err(now, CUSTOS_GUARD_ERR_OPEN);
            count_verdict(h, s, worker, g, q->check, now);
            return 1;
        }
        trial = true;
    }
    if (atomic_load_explicit(&s->health.outstanding, memory_order_relaxed) >= (int_fast64_t)g->max_concurrency) {
        if (trial) /* give the trial back: nothing was tried */
            custos_health_report(&s->health, NULL, CUSTOS_OUTCOME_NEUTRAL, true, now_ms);
        verdict_err(now, CUSTOS_GUARD_ERR_BUSY);
        count_verdict(h, s, worker, g, q->check, now);
        return 1;
    }
    custos_guard_call_t *c = calloc(1, sizeof(*c));
    if (!c) {
        verdict_err(now, CUSTOS_GUARD_ERR_INTERNAL);
        count_verdict(h, s, worker, g, q->check, now);
        return 1;
    }
    c->h = h;
    c->slot = s;
    c->worker = worker;
    c->up = up;
    c->g = g;
    c->check = q->check;
    c->key = key;
    c->keyed = keyed;
    c->trial = trial;
    c->fn = fn;
    c->ud = ud;
    c->started_ns = custos_now_ns();
    custos_buf_init(&c->path, 8192);
    custos_buf_init(&c->body, 2 * CUSTOS_GUARD_MAX_TEXT + 8192);
    custos_buf_init(&c->resp, CUSTOS_GUARD_MAX_RESPONSE);
    int rc = custos_guard_build(g, q->check, q->src, q->text, q->len, &c->path, &c->body);
    if (rc == 0)
        rc = start(c);
    if (rc < 0) {
        if (c->trial) /* the trial never went out */
            custos_health_report(&s->health, NULL, CUSTOS_OUTCOME_NEUTRAL, true, now_ms);
        verdict_err(now, rc == CUSTOS_EINVAL || rc == CUSTOS_ENOMEM || rc == CUSTOS_ETOOBIG ? CUSTOS_GUARD_ERR_INTERNAL
                                                                                            : CUSTOS_GUARD_ERR_CONNECT);
        count_verdict(h, s, worker, g, q->check, now);
        call_free(c);
        return 1;
    }
    *call = c;
    return 0;
}

void custos_guard_cancel(custos_guard_call_t *c)
{
    if (!c)
        return;
    if (c->ur) {
        custos_upstream_req_cancel(c->ur);
        c->ur = NULL;
        custos_outlier_params_t op = {c->g->cb_failures, c->g->cb_base_ms, c->g->cb_max_ms};
        custos_health_end(&c->slot->health, &op, CUSTOS_OUTCOME_NEUTRAL, c->trial, custos_now_ms());
    }
    call_free(c);
}

void custos_guard_note_comparison(custos_guard_hub_t *h, unsigned worker, const custos_guard_config_t *g,
                                  custos_guard_check_t check, bool disagree)
{
    if (!h || !h->compared)
        return;
    const char *l[2] = {g->name, custos_guard_check_name(check)};
    custos_metrics_inc(custos_metrics_series(h->compared, l), worker, 1);
    if (disagree)
        custos_metrics_inc(custos_metrics_series(h->disagree, l), worker, 1);
}

void custos_guard_note_step(custos_guard_hub_t *h, unsigned worker, const char *policy, custos_guard_check_t check,
                            custos_cascade_step_t step)
{
    static const char *const names[] = {"allow", "block", "guard", "in_process"};
    if (!h || !h->steps || step == CUSTOS_CASCADE_STEP_LOCAL)
        return;
    const char *l[3] = {policy, custos_guard_check_name(check), names[step]};
    custos_metrics_inc(custos_metrics_series(h->steps, l), worker, 1);
}
