/* SPDX-License-Identifier: Apache-2.0
 * Shared scaffolding of the in-process content-filter benches (contentfilter_bench.c, grounded_chat_bench.c): a
 * worker with the shipped safety models under a configuration given as YAML, text filled from sentences, and the
 * median / p99 report row. Header-only: each bench is one translation unit. */
#ifndef CUSTOS_BENCH_CF_BENCH_H
#define CUSTOS_BENCH_CF_BENCH_H

#include "api/gateway.h"
#include "config/config.h"
#include "safety/safety.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cf_bench {
    custos_config_t *cfg;
    custos_gateway_t gw;
    custos_worker_t w;
    int iters;    /* timed iterations per row: argv[1], default 2000, at least 10 */
    uint64_t *ns; /* iters samples (ns), owned */
} cf_bench_t;

/* Reads the iteration count from argv[1], loads yaml[0..len) and the shipped models into a worker b->w. Returns 0, or
 * 1 with the reason on stderr. */
static int cf_bench_init(cf_bench_t *b, int argc, char **argv, const char *name, const char *yaml, size_t len)
{
    char err[512];
    memset(b, 0, sizeof(*b));
    b->iters = argc > 1 ? atoi(argv[1]) : 2000;
    if (b->iters < 10)
        b->iters = 10;
    if (!(b->ns = calloc((size_t)b->iters, sizeof(*b->ns)))) {
        fprintf(stderr, "%s: out of memory\n", name);
        return 1;
    }
    if (custos_config_load_string("bench", yaml, len, &b->cfg, err, sizeof(err)) < 0 ||
        custos_safety_new(NULL, &b->gw.safety, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    b->w.gw = &b->gw;
    b->w.cfg = b->cfg;
    custos_safety_scratch_init(&b->w.scratch, 0);
    return 0;
}

static void cf_bench_dispose(cf_bench_t *b)
{
    free(b->ns);
    custos_safety_scratch_dispose(&b->w.scratch);
    custos_safety_free(b->gw.safety);
    custos_config_unref(b->cfg);
}

/* Fills buf with parts[0..np) repeated in order while the next one fits in want bytes; NUL-terminates. Returns the
 * length (buf needs want + 1 bytes). */
static size_t cf_bench_fill(char *buf, size_t want, const char *const *parts, size_t np)
{
    size_t len = 0;
    for (size_t i = 0;; i++) {
        const char *s = parts[i % np];
        size_t l = strlen(s);
        if (len + l > want)
            break;
        memcpy(buf + len, s, l);
        len += l;
    }
    buf[len] = 0;
    return len;
}

static int cf_bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Prints "| name | median µs | p99 µs |" for the n samples ns (nanoseconds; sorted in place). */
static void cf_bench_report(const char *name, uint64_t *ns, int n)
{
    qsort(ns, (size_t)n, sizeof(*ns), cf_bench_cmp_u64);
    printf("| %s | %.1f | %.1f |\n", name, (double)ns[n / 2] / 1000.0, (double)ns[n * 99 / 100] / 1000.0);
}

#endif
