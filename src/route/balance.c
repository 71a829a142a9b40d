/* SPDX-License-Identifier: Apache-2.0 */
#include "route/balance.h"

#include "route/router.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct route_dep {
    size_t n;                          /* eligible backends, priority order */
    const custos_backend_config_t **b; /* borrowed from the config */
    custos_backend_health_t **h;       /* shared entries */
    int64_t *cw;                       /* smooth WRR current weights (this worker) */
    uint64_t *nh;                      /* backend name hashes (sticky routing) */
    unsigned rr;                       /* least-outstanding tie breaker rotation */
} route_dep_t;

struct custos_route_table {
    unsigned refs; /* one thread only */
    custos_config_t *cfg;
    custos_outlier_params_t outlier;
    route_dep_t *deps; /* parallel to cfg->deployments */
};

static void table_free(custos_route_table_t *t)
{
    if (t->deps) {
        for (size_t i = 0; i < t->cfg->n_deployments; i++) {
            free(t->deps[i].b);
            free(t->deps[i].h);
            free(t->deps[i].cw);
            free(t->deps[i].nh);
        }
        free(t->deps);
    }
    custos_config_unref(t->cfg);
    free(t);
}

int custos_route_table_new(custos_config_t *cfg, custos_health_t *h, custos_route_table_t **out)
{
    custos_route_table_t *t = calloc(1, sizeof(*t));
    /* health entries by backend index: one registry lookup per backend, not per (deployment, backend) */
    custos_backend_health_t **byidx = calloc(cfg->n_backends ? cfg->n_backends : 1, sizeof(*byidx));
    if (!t || !byidx) {
        free(t);
        free(byidx);
        return CUSTOS_ENOMEM;
    }
    t->refs = 1;
    t->cfg = custos_config_ref(cfg);
    t->outlier.consecutive_failures = cfg->upstream.outlier_consecutive_failures;
    t->outlier.base_ejection_ms = cfg->upstream.outlier_base_ejection_ms;
    t->outlier.max_ejection_ms = cfg->upstream.outlier_max_ejection_ms;
    t->deps = calloc(cfg->n_deployments ? cfg->n_deployments : 1, sizeof(*t->deps));
    if (!t->deps)
        goto oom;
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const custos_deployment_config_t *d = &cfg->deployments[i];
        route_dep_t *rd = &t->deps[i];
        size_t n = d->n_backends ? d->n_backends : 1;
        rd->b = calloc(n, sizeof(*rd->b));
        rd->h = calloc(n, sizeof(*rd->h));
        rd->cw = calloc(n, sizeof(*rd->cw));
        rd->nh = calloc(n, sizeof(*rd->nh));
        if (!rd->b || !rd->h || !rd->cw || !rd->nh)
            goto oom;
        /* d->backends is sorted by priority; keep only eligible ones (boundary + requirements) */
        for (size_t k = 0; k < d->n_backends && rd->n < 64; k++) {
            const custos_backend_config_t *b = d->backends[k];
            if (!custos_route_eligible(d, b))
                continue;
            size_t bi = (size_t)(b - cfg->backends);
            if (!byidx[bi] && !(byidx[bi] = custos_health_get(h, b->name)))
                goto oom;
            custos_backend_health_t *e = byidx[bi];
            rd->b[rd->n] = b;
            rd->h[rd->n] = e;
            rd->nh[rd->n] = custos_route_key_hash(b->name, strlen(b->name));
            rd->n++;
        }
    }
    free(byidx);
    *out = t;
    return 0;
oom:
    free(byidx);
    table_free(t);
    return CUSTOS_ENOMEM;
}

custos_route_table_t *custos_route_table_ref(custos_route_table_t *t)
{
    if (t)
        t->refs++;
    return t;
}

void custos_route_table_unref(custos_route_table_t *t)
{
    if (t && --t->refs == 0)
        table_free(t);
}

const custos_config_t *custos_route_table_config(const custos_route_table_t *t)
{
    return t->cfg;
}

static const route_dep_t *dep_of(const custos_route_table_t *t, const custos_deployment_config_t *d)
{
    if (d < t->cfg->deployments || d >= t->cfg->deployments + t->cfg->n_deployments)
        return NULL; /* not a deployment of this snapshot */
    return &t->deps[d - t->cfg->deployments];
}

size_t custos_route_table_eligible(const custos_route_table_t *t, const custos_deployment_config_t *d,
                                   const custos_backend_config_t **out, size_t max)
{
    const route_dep_t *rd = dep_of(t, d);
    size_t n = 0;
    for (size_t i = 0; rd && i < rd->n && n < max; i++)
        out[n++] = rd->b[i];
    return n;
}

static inline uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t custos_route_key_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64, then mixed */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

/* Weighted rendezvous hashing: score = -w / ln(u), u in (0,1) from hash(key, backend). Removing a backend
 * moves only the keys that were on it; the others keep theirs. */
static size_t pick_sticky(const route_dep_t *rd, const size_t *idx, size_t n, uint64_t key)
{
    size_t best = idx[0];
    double best_score = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        uint64_t hv = mix64(key ^ rd->nh[i]);
        double u = ((double)(hv >> 11) + 0.5) / 9007199254740992.0; /* (0,1) */
        double score = -(double)rd->b[i]->weight / log(u);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

/* Smooth weighted round-robin (nginx's): every candidate gains its weight, the largest current weight wins
 * and pays back the total. Over sum(w) picks each backend gets exactly w, interleaved. */
static size_t pick_swrr(route_dep_t *rd, const size_t *idx, size_t n)
{
    int64_t total = 0;
    size_t best = idx[0];
    for (size_t k = 0; k < n; k++) {
        size_t i = idx[k];
        rd->cw[i] += (int64_t)rd->b[i]->weight;
        total += (int64_t)rd->b[i]->weight;
        if (rd->cw[i] > rd->cw[best])
            best = i;
    }
    rd->cw[best] -= total;
    return best;
}

/* Fewest in flight per unit of weight: (o_i + 1) / w_i smallest; ties rotate. */
static size_t pick_lor(route_dep_t *rd, const size_t *idx, size_t n)
{
    size_t start = rd->rr++ % n;
    size_t best = idx[start];
    int64_t bo = atomic_load_explicit(&rd->h[best]->outstanding, memory_order_relaxed);
    for (size_t j = 1; j < n; j++) {
        size_t i = idx[(start + j) % n];
        int64_t o = atomic_load_explicit(&rd->h[i]->outstanding, memory_order_relaxed);
        if ((o + 1) * (int64_t)rd->b[best]->weight < (bo + 1) * (int64_t)rd->b[i]->weight) {
            best = i;
            bo = o;
        }
    }
    return best;
}

static void begin(route_dep_t *rd, size_t i, bool trial, custos_route_attempt_t *a)
{
    a->h = rd->h[i];
    a->trial = trial;
    a->active = true;
    custos_health_begin(a->h);
}

int custos_route_pick(custos_route_table_t *t, const custos_deployment_config_t *d, uint64_t tried, bool has_key,
                      uint64_t key_hash, uint64_t now_ms, custos_route_attempt_t *a)
{
    route_dep_t *rd = (route_dep_t *)dep_of(t, d);
    memset(a, 0, sizeof(*a));
    if (!rd)
        return -1;
    size_t idx[64];
    for (size_t g = 0; g < rd->n;) {
        size_t end = g + 1;
        while (end < rd->n && rd->b[end]->priority == rd->b[g]->priority)
            end++;
        size_t n = 0;
        for (size_t i = g; i < end; i++) {
            if (tried & (1ULL << i))
                continue;
            if (custos_health_available(rd->h[i])) {
                idx[n++] = i;
            } else if (custos_health_try_trial(rd->h[i], now_ms)) {
                begin(rd, i, true, a); /* a trial goes first: recovery is noticed at once */
                return (int)i;
            }
        }
        if (n) {
            size_t i = has_key                                          ? pick_sticky(rd, idx, n, key_hash)
                       : n == 1                                         ? idx[0]
                       : d->balance == CUSTOS_BALANCE_LEAST_OUTSTANDING ? pick_lor(rd, idx, n)
                                                                        : pick_swrr(rd, idx, n);
            begin(rd, i, false, a);
            return (int)i;
        }
        g = end;
    }
    return -1;
}

bool custos_route_any_selectable(const custos_route_table_t *t, const custos_deployment_config_t *d, uint64_t tried,
                                 uint64_t now_ms)
{
    const route_dep_t *rd = dep_of(t, d);
    for (size_t i = 0; rd && i < rd->n; i++)
        if (!(tried & (1ULL << i)) &&
            (custos_health_available(rd->h[i]) || custos_health_trial_ready(rd->h[i], now_ms)))
            return true;
    return false;
}

void custos_route_attempt_answered(const custos_route_table_t *t, custos_route_attempt_t *a, uint64_t now_ms)
{
    if (!a->active || !a->trial)
        return;
    custos_health_report(a->h, &t->outlier, CUSTOS_OUTCOME_SUCCESS, true, now_ms);
    a->trial = false;
}

void custos_route_attempt_end(const custos_route_table_t *t, custos_route_attempt_t *a, custos_outcome_t o,
                              uint64_t now_ms)
{
    if (!a->active)
        return;
    a->active = false;
    custos_health_end(a->h, &t->outlier, o, a->trial, now_ms);
}
