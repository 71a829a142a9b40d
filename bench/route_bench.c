/* SPDX-License-Identifier: Apache-2.0
 * Routing overhead: ns per request for backend selection (custos_route_pick + custos_route_attempt_end, the
 * two calls the gateway makes per attempt) by policy, backend count and thread count, against the previous
 * per-request work (custos_route_candidates: the boundary filter alone). Built and run by bench/route.
 * Usage: route_bench [SECONDS_PER_ROW]
 *
 * Configs are built by hand here (no YAML), so this file provides the two config functions the routing table
 * calls (a reference count that never reaches zero). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "route/balance.h"
#include "route/health.h"
#include "route/router.h"

custos_config_t *custos_config_ref(custos_config_t *c)
{
    return c;
}

void custos_config_unref(custos_config_t *c)
{
    (void)c;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ms(void)
{
    return (uint64_t)(now_s() * 1000);
}

typedef struct world {
    custos_config_t cfg;
    custos_backend_config_t be[16];
    const custos_backend_config_t *bp[16];
    char names[16][16];
    custos_health_t *h;
} world_t;

static void world_init(world_t *w, size_t n, custos_balance_policy_t pol, int two_groups)
{
    memset(w, 0, sizeof(*w));
    for (size_t i = 0; i < n; i++) {
        snprintf(w->names[i], sizeof(w->names[i]), "backend-%zu", i);
        w->be[i].name = w->names[i];
        w->be[i].weight = (unsigned)(1 + i % 3);
        w->be[i].priority = two_groups && i >= n / 2 ? 1 : 0;
        w->be[i].region = "eastus";
        w->be[i].data_zone = "us";
        w->bp[i] = &w->be[i];
    }
    static custos_deployment_config_t d;
    memset(&d, 0, sizeof(d));
    d.name = "bench";
    d.type = CUSTOS_DEPLOYMENT_DATAZONE;
    d.data_zone = "us";
    d.backends = w->bp;
    d.n_backends = n;
    d.balance = pol;
    w->cfg.backends = w->be;
    w->cfg.n_backends = n;
    w->cfg.deployments = &d;
    w->cfg.n_deployments = 1;
    w->cfg.upstream.outlier_consecutive_failures = 5;
    w->cfg.upstream.outlier_base_ejection_ms = 30000;
    w->cfg.upstream.outlier_max_ejection_ms = 300000;
    custos_health_new(&w->h);
}

typedef struct job {
    world_t *w;
    int mode; /* 0 pick+end, 1 sticky, 2 candidates only */
    double secs;
    uint64_t ops;
    double elapsed;
} job_t;

static void *run(void *arg)
{
    job_t *j = arg;
    custos_route_table_t *t = NULL;
    if (custos_route_table_new(&j->w->cfg, j->w->h, &t) < 0)
        return NULL;
    const custos_deployment_config_t *d = &j->w->cfg.deployments[0];
    const custos_backend_config_t *cands[64];
    volatile size_t sink = 0;
    uint64_t ops = 0, key = 0x1234567;
    double t0 = now_s(), t1 = t0;
    uint64_t ms = now_ms();
    while (t1 - t0 < j->secs) {
        for (int k = 0; k < 4096; k++) {
            if (j->mode == 2) {
                sink += custos_route_candidates(d, cands, 64);
                continue;
            }
            custos_route_attempt_t a;
            int i = custos_route_pick(t, d, 0, j->mode == 1, key, ms, &a);
            key = key * 6364136223846793005ULL + 1442695040888963407ULL;
            sink += (size_t)i;
            custos_route_attempt_end(t, &a, CUSTOS_OUTCOME_SUCCESS, ms);
        }
        ops += 4096;
        t1 = now_s();
        ms = now_ms();
    }
    (void)sink;
    j->ops = ops;
    j->elapsed = t1 - t0;
    custos_route_table_unref(t);
    return NULL;
}

static void row(const char *what, size_t n, custos_balance_policy_t pol, int two_groups, int down_first, int mode,
                int threads, double secs)
{
    world_t w;
    world_init(&w, n, pol, two_groups);
    if (down_first) { /* the whole first group unhealthy: every pick scans it, then fails over */
        for (size_t i = 0; i < n / 2; i++)
            custos_health_probe_result(custos_health_get(w.h, w.names[i]), false, 1, 1, now_ms());
    }
    job_t jobs[8];
    pthread_t th[8];
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job_t){.w = &w, .mode = mode, .secs = secs};
        pthread_create(&th[i], NULL, run, &jobs[i]);
    }
    double ns = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ns += jobs[i].elapsed * 1e9 / (double)(jobs[i].ops ? jobs[i].ops : 1);
    }
    printf("| %s | %zu | %d | %.1f |\n", what, n, threads, ns / threads);
    custos_health_free(w.h);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    printf("| selection | backends | threads | ns per request (pick + end) |\n|---|---|---|---|\n");
    row("before: boundary filter only (custos_route_candidates)", 4, 0, 0, 0, 2, 1, secs);
    row("weighted round-robin", 1, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 0, 0, 0, 1, secs);
    row("weighted round-robin", 4, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 0, 0, 0, 1, secs);
    row("weighted round-robin", 16, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 0, 0, 0, 1, secs);
    row("least outstanding", 4, CUSTOS_BALANCE_LEAST_OUTSTANDING, 0, 0, 0, 1, secs);
    row("least outstanding", 16, CUSTOS_BALANCE_LEAST_OUTSTANDING, 0, 0, 0, 1, secs);
    row("sticky header (rendezvous hash)", 4, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 0, 0, 1, 1, secs);
    row("sticky header (rendezvous hash)", 16, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 0, 0, 1, 1, secs);
    row("failover: group 0 unhealthy, WRR in group 1", 16, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 1, 1, 0, 1, secs);
    row("weighted round-robin, shared health", 4, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN, 0, 0, 0, 2, secs);
    row("least outstanding, shared health", 4, CUSTOS_BALANCE_LEAST_OUTSTANDING, 0, 0, 0, 2, secs);
    return 0;
}
