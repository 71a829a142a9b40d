/* SPDX-License-Identifier: Apache-2.0 */
#include "route/health.h"

#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS (CUSTOS_HEALTH_MAX_ENTRIES * 2) /* open addressing, load factor <= 1/2 */

struct custos_health {
    pthread_mutex_t lock; /* guards n, the index and additions; entries are never moved or freed early */
    size_t n;
    custos_backend_health_t *e[CUSTOS_HEALTH_MAX_ENTRIES];
    custos_backend_health_t *slot[SLOTS]; /* name hash index */
};

static size_t name_slot(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return (size_t)(h % SLOTS);
}

int custos_health_new(custos_health_t **out)
{
    custos_health_t *h = calloc(1, sizeof(*h));
    if (!h)
        return CUSTOS_ENOMEM;
    pthread_mutex_init(&h->lock, NULL);
    *out = h;
    return 0;
}

void custos_health_free(custos_health_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        custos_health_entry_dispose(h->e[i]);
        free(h->e[i]);
    }
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void custos_health_entry_init(custos_backend_health_t *b, const char *name)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->name, sizeof(b->name), "%s", name);
    pthread_mutex_init(&b->lock, NULL);
    atomic_init(&b->breaker, CUSTOS_BREAKER_CLOSED);
    atomic_init(&b->open_until_ms, 0);
    atomic_init(&b->consecutive_failures, 0);
    atomic_init(&b->trial_busy, false);
    atomic_init(&b->trial_since_ms, 0);
    atomic_init(&b->probe_down, false);
    atomic_init(&b->probe_ok_run, 0);
    atomic_init(&b->probe_fail_run, 0);
    atomic_init(&b->outstanding, 0);
    atomic_init(&b->ejections, 0);
    atomic_init(&b->probes_ok, 0);
    atomic_init(&b->probes_failed, 0);
    atomic_init(&b->trials, 0);
}

void custos_health_entry_dispose(custos_backend_health_t *b)
{
    pthread_mutex_destroy(&b->lock);
}

/* The slot holding name, or the empty slot where it would go. */
static size_t probe_locked(const custos_health_t *h, const char *name)
{
    size_t i = name_slot(name);
    while (h->slot[i] && strcmp(h->slot[i]->name, name) != 0)
        i = (i + 1) % SLOTS;
    return i;
}

static custos_backend_health_t *find_locked(custos_health_t *h, const char *name)
{
    return h->slot[probe_locked(h, name)];
}

custos_backend_health_t *custos_health_find(custos_health_t *h, const char *name)
{
    pthread_mutex_lock(&h->lock);
    custos_backend_health_t *b = find_locked(h, name);
    pthread_mutex_unlock(&h->lock);
    return b;
}

custos_backend_health_t *custos_health_get(custos_health_t *h, const char *name)
{
    pthread_mutex_lock(&h->lock);
    size_t i = probe_locked(h, name);
    custos_backend_health_t *b = h->slot[i];
    if (!b && h->n < CUSTOS_HEALTH_MAX_ENTRIES && (b = malloc(sizeof(*b))) != NULL) {
        custos_health_entry_init(b, name);
        h->e[h->n++] = b;
        h->slot[i] = b;
    }
    pthread_mutex_unlock(&h->lock);
    return b;
}

bool custos_health_trial_ready(const custos_backend_health_t *b, uint64_t now_ms)
{
    if (atomic_load_explicit(&b->probe_down, memory_order_relaxed))
        return false;
    int st = atomic_load_explicit(&b->breaker, memory_order_acquire);
    if (st == CUSTOS_BREAKER_CLOSED)
        return false;
    if (st == CUSTOS_BREAKER_OPEN && now_ms < atomic_load_explicit(&b->open_until_ms, memory_order_relaxed))
        return false;
    if (atomic_load_explicit(&b->trial_busy, memory_order_relaxed) &&
        now_ms - atomic_load_explicit(&b->trial_since_ms, memory_order_relaxed) < CUSTOS_HEALTH_TRIAL_STALE_MS)
        return false;
    return true;
}

bool custos_health_try_trial(custos_backend_health_t *b, uint64_t now_ms)
{
    if (!custos_health_trial_ready(b, now_ms))
        return false;
    bool won = false;
    pthread_mutex_lock(&b->lock);
    /* re-check under the lock: another thread may have claimed it or closed the breaker */
    if (custos_health_trial_ready(b, now_ms)) {
        atomic_store(&b->trial_busy, true);
        atomic_store(&b->trial_since_ms, now_ms);
        atomic_store_explicit(&b->breaker, CUSTOS_BREAKER_HALF_OPEN, memory_order_release);
        atomic_fetch_add_explicit(&b->trials, 1, memory_order_relaxed);
        won = true;
    }
    pthread_mutex_unlock(&b->lock);
    return won;
}

/* lock held */
static void close_locked(custos_backend_health_t *b, uint64_t now_ms)
{
    if (atomic_load(&b->breaker) != CUSTOS_BREAKER_CLOSED)
        b->closed_at_ms = now_ms;
    atomic_store(&b->consecutive_failures, 0);
    atomic_store(&b->trial_busy, false);
    atomic_store_explicit(&b->breaker, CUSTOS_BREAKER_CLOSED, memory_order_release);
}

/* lock held: ejects for base × 2^streak, capped; the streak restarts after a healthy spell of max_ejection. */
static void eject_locked(custos_backend_health_t *b, const custos_outlier_params_t *p, uint64_t now_ms)
{
    if (atomic_load(&b->breaker) == CUSTOS_BREAKER_CLOSED && now_ms - b->closed_at_ms >= p->max_ejection_ms)
        b->eject_streak = 0;
    uint64_t d = p->base_ejection_ms;
    for (unsigned i = 0; i < b->eject_streak && d < p->max_ejection_ms; i++)
        d *= 2;
    if (d > p->max_ejection_ms)
        d = p->max_ejection_ms;
    if (b->eject_streak < 63)
        b->eject_streak++;
    atomic_store(&b->open_until_ms, now_ms + d);
    atomic_store(&b->consecutive_failures, 0);
    atomic_store(&b->trial_busy, false);
    atomic_store(&b->probe_ok_run, 0); /* re-admission by probes counts successes after the ejection only */
    atomic_fetch_add(&b->ejections, 1);
    atomic_store_explicit(&b->breaker, CUSTOS_BREAKER_OPEN, memory_order_release);
}

void custos_health_report(custos_backend_health_t *b, const custos_outlier_params_t *p, custos_outcome_t o, bool trial,
                          uint64_t now_ms)
{
    switch (o) {
    case CUSTOS_OUTCOME_SUCCESS:
        if (atomic_load_explicit(&b->consecutive_failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&b->consecutive_failures, 0, memory_order_relaxed);
        if (trial || atomic_load_explicit(&b->breaker, memory_order_relaxed) == CUSTOS_BREAKER_HALF_OPEN) {
            pthread_mutex_lock(&b->lock);
            close_locked(b, now_ms);
            pthread_mutex_unlock(&b->lock);
        }
        return;
    case CUSTOS_OUTCOME_FAILURE: {
        unsigned n = atomic_fetch_add_explicit(&b->consecutive_failures, 1, memory_order_relaxed) + 1;
        bool off = !p || p->consecutive_failures == 0;
        if (trial) {
            pthread_mutex_lock(&b->lock);
            if (off)
                close_locked(b, now_ms); /* detection was switched off by a reload: nothing to hold it open */
            else if (atomic_load(&b->breaker) == CUSTOS_BREAKER_HALF_OPEN)
                eject_locked(b, p, now_ms);
            else
                atomic_store(&b->trial_busy, false);
            pthread_mutex_unlock(&b->lock);
            return;
        }
        if (off || n < p->consecutive_failures)
            return;
        pthread_mutex_lock(&b->lock);
        if (atomic_load(&b->breaker) == CUSTOS_BREAKER_CLOSED &&
            atomic_load(&b->consecutive_failures) >= p->consecutive_failures)
            eject_locked(b, p, now_ms);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    case CUSTOS_OUTCOME_NEUTRAL:
        if (trial)
            atomic_store(&b->trial_busy, false); /* stays half-open: the next attempt is the trial */
        return;
    }
}

void custos_health_begin(custos_backend_health_t *b)
{
    atomic_fetch_add_explicit(&b->outstanding, 1, memory_order_relaxed);
}

void custos_health_end(custos_backend_health_t *b, const custos_outlier_params_t *p, custos_outcome_t o, bool trial,
                       uint64_t now_ms)
{
    atomic_fetch_sub_explicit(&b->outstanding, 1, memory_order_relaxed);
    custos_health_report(b, p, o, trial, now_ms);
}

void custos_health_probe_result(custos_backend_health_t *b, bool ok, unsigned healthy_threshold,
                                unsigned unhealthy_threshold, uint64_t now_ms)
{
    if (ok) {
        atomic_fetch_add(&b->probes_ok, 1);
        atomic_store(&b->probe_fail_run, 0);
        unsigned run = atomic_fetch_add(&b->probe_ok_run, 1) + 1;
        if (run < healthy_threshold)
            return;
        if (atomic_load(&b->probe_down))
            atomic_store(&b->probe_down, false);
        if (atomic_load(&b->breaker) != CUSTOS_BREAKER_CLOSED) {
            pthread_mutex_lock(&b->lock);
            close_locked(b, now_ms); /* re-admission: the backend answers its health check again */
            pthread_mutex_unlock(&b->lock);
        }
        return;
    }
    atomic_fetch_add(&b->probes_failed, 1);
    atomic_store(&b->probe_ok_run, 0);
    unsigned run = atomic_fetch_add(&b->probe_fail_run, 1) + 1;
    if (run >= unhealthy_threshold && !atomic_load(&b->probe_down))
        atomic_store(&b->probe_down, true);
}

void custos_health_probe_reset(custos_backend_health_t *b)
{
    atomic_store(&b->probe_ok_run, 0);
    atomic_store(&b->probe_fail_run, 0);
    atomic_store(&b->probe_down, false);
}

custos_backend_state_t custos_health_state(const custos_backend_health_t *b, uint64_t now_ms)
{
    if (atomic_load(&b->probe_down))
        return CUSTOS_BACKEND_UNHEALTHY;
    switch (atomic_load(&b->breaker)) {
    case CUSTOS_BREAKER_CLOSED:
        return CUSTOS_BACKEND_HEALTHY;
    case CUSTOS_BREAKER_HALF_OPEN:
        return CUSTOS_BACKEND_HALF_OPEN;
    default:
        return now_ms >= atomic_load(&b->open_until_ms) ? CUSTOS_BACKEND_HALF_OPEN : CUSTOS_BACKEND_EJECTED;
    }
}

const char *custos_health_state_name(custos_backend_state_t s)
{
    switch (s) {
    case CUSTOS_BACKEND_HEALTHY:
        return "healthy";
    case CUSTOS_BACKEND_HALF_OPEN:
        return "half_open";
    case CUSTOS_BACKEND_EJECTED:
        return "ejected";
    case CUSTOS_BACKEND_UNHEALTHY:
        return "unhealthy";
    }
    return "unknown";
}

/* Backend names are [A-Za-z0-9._-]{1,64} (config): safe in label values and JSON strings as they are. */

int custos_health_render_metrics(custos_health_t *h, const custos_config_t *cfg, uint64_t now_ms, custos_buf_t *out)
{
    static const char *const fams[][3] = {
        {"custos_backend_up", "gauge", "1 if the backend can be selected now (healthy), else 0."},
        {"custos_backend_state", "gauge", "1 for the backend's current state: healthy, half_open, ejected, unhealthy."},
        {"custos_backend_outstanding_requests", "gauge", "Backend attempts in flight, all workers."},
        {"custos_backend_ejections_total", "counter", "Times passive outlier detection opened the circuit breaker."},
        {"custos_backend_probes_total", "counter", "Active health probes by result."},
    };
    int rc = 0;
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]) && !rc; f++) {
        rc = custos_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f][0], fams[f][2], fams[f][0], fams[f][1]);
        for (size_t i = 0; i < cfg->n_backends && !rc; i++) {
            const char *name = cfg->backends[i].name;
            custos_backend_health_t *b = custos_health_find(h, name);
            custos_backend_state_t st = b ? custos_health_state(b, now_ms) : CUSTOS_BACKEND_HEALTHY;
            switch (f) {
            case 0:
                rc = custos_buf_appendf(out, "%s{backend=\"%s\"} %d\n", fams[f][0], name,
                                        st == CUSTOS_BACKEND_HEALTHY ? 1 : 0);
                break;
            case 1:
                for (int s = 0; s < CUSTOS_BACKEND_NSTATES && !rc; s++)
                    rc = custos_buf_appendf(out, "%s{backend=\"%s\",state=\"%s\"} %d\n", fams[f][0], name,
                                            custos_health_state_name((custos_backend_state_t)s), (int)st == s ? 1 : 0);
                break;
            case 2:
                rc = custos_buf_appendf(out, "%s{backend=\"%s\"} %lld\n", fams[f][0], name,
                                        b ? (long long)atomic_load(&b->outstanding) : 0LL);
                break;
            case 3:
                rc = custos_buf_appendf(out, "%s{backend=\"%s\"} %llu\n", fams[f][0], name,
                                        b ? (unsigned long long)atomic_load(&b->ejections) : 0ULL);
                break;
            default:
                rc = custos_buf_appendf(
                    out, "%s{backend=\"%s\",result=\"success\"} %llu\n%s{backend=\"%s\",result=\"failure\"} %llu\n",
                    fams[f][0], name, b ? (unsigned long long)atomic_load(&b->probes_ok) : 0ULL, fams[f][0], name,
                    b ? (unsigned long long)atomic_load(&b->probes_failed) : 0ULL);
                break;
            }
        }
    }
    return rc;
}

int custos_health_render_json(custos_health_t *h, const custos_config_t *cfg, uint64_t now_ms, custos_buf_t *out)
{
    int rc = custos_buf_append_lit(out, "{");
    for (size_t i = 0; i < cfg->n_backends && !rc; i++) {
        const char *name = cfg->backends[i].name;
        custos_backend_health_t *b = custos_health_find(h, name);
        custos_backend_state_t st = b ? custos_health_state(b, now_ms) : CUSTOS_BACKEND_HEALTHY;
        rc =
            custos_buf_appendf(out, "%s\"%s\":{\"state\":\"%s\",\"outstanding\":%lld,\"ejections\":%llu}", i ? "," : "",
                               name, custos_health_state_name(st), b ? (long long)atomic_load(&b->outstanding) : 0LL,
                               b ? (unsigned long long)atomic_load(&b->ejections) : 0ULL);
    }
    return rc ? rc : custos_buf_append_lit(out, "}");
}
