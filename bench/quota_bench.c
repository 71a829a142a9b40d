/* SPDX-License-Identifier: Apache-2.0
 * Quota admission cost (src/quota): ns per custos_quota_admit + custos_quota_settle for a request charged to two
 * keys (a deployment and a principal in it), on one thread and on T threads hitting the same keys (the worst case
 * for the quota mutex). Built and run by bench/quota. Usage: quota_bench [THREADS] [ITERATIONS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "quota/quota.h"

static custos_quota_t *q;
static long iters = 2000000;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    unsigned shard = (unsigned)(size_t)arg;
    custos_quota_key_t k[2] = {{"d/gpt-4o", 1000000000, 1000000000}, {"dp/gpt-4o/alice", 1000000000, 1000000000}};
    custos_quota_ticket_t t;
    for (long i = 0; i < iters; i++) {
        custos_quota_admit(q, k, 2, 100, 1700000040000ull, shard, &t);
        custos_quota_settle(q, &t, 90, 1700000040000ull);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned nt = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    if (argc > 2)
        iters = atol(argv[2]);
    if (nt < 1 || nt > 64 || iters < 1)
        return 2;
    custos_quotas_config_t qc = {.rpm_window_s = 10};
    custos_quota_opts_t o = {.nshards = nt, .cfg = &qc, .no_thread = true};
    char err[128];
    if (custos_quota_new(&o, &q, err, sizeof(err)) != 0)
        return 1;
    printf("| threads | ns per admit + settle (2 keys), per thread |\n|---|---|\n");
    double t0 = now_s();
    run(0);
    printf("| 1 | %.0f |\n", (now_s() - t0) / (double)iters * 1e9);
    pthread_t th[64];
    t0 = now_s();
    for (size_t i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, run, (void *)i);
    for (size_t i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    printf("| %u (same keys) | %.0f |\n", nt, (now_s() - t0) / (double)iters * 1e9);
    custos_quota_free(q);
    return 0;
}
