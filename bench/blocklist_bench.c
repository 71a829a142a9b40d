/* SPDX-License-Identifier: Apache-2.0
 * Blocklist benchmark (bench/blocklist): compile time, memory and scan speed of custos_blocklists_* for 1,000 /
 * 10,000 / 100,000 normalised whole-word terms (plus 100 regexes), block mode on 1 KB and 64 KB texts and stream mode
 * on a 4 KB completion fed in 16-byte chunks. One thread. Prints a markdown table. */
#include "safety/blocklist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int count_hit(void *ud, const custos_blocklist_hit_t *h)
{
    (void)h;
    (*(size_t *)ud)++;
    return 0;
}

/* A pseudo-word of 5-10 letters from i (letters only, so normalisation leaves it alone). */
static void word(unsigned i, char *out)
{
    unsigned v = i * 2654435761u + 12345;
    int n = 5 + (int)(v % 6);
    for (int k = 0; k < n; k++) {
        out[k] = (char)('a' + (v % 26));
        v = v / 26 + (unsigned)k * 7919u + i;
    }
    out[n] = 0;
}

static void text(char *buf, size_t len, unsigned seed)
{
    static const char *w[] = {"the",         "patient", "reported", "mild",  "pain", "after",
                              "surgery",     "and",     "was",      "given", "a",    "follow-up",
                              "appointment", "for",     "next",     "week",  "with", "doctor"};
    size_t o = 0;
    unsigned v = seed;
    while (o + 16 < len) {
        v = v * 1103515245u + 12345u;
        o += (size_t)snprintf(buf + o, len - o, "%s ", w[(v >> 8) % (sizeof(w) / sizeof(*w))]);
    }
    while (o < len - 1)
        buf[o++] = '.';
    buf[len - 1] = 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    static const unsigned sizes[] = {1000, 10000, 100000};
    printf("| terms (+100 regexes) | compile s | compiled bytes | RSS growth MB | 1 KB scan µs | 64 KB scan MB/s | "
           "4 KB stream in 16 B chunks µs |\n");
    printf("|---|---|---|---|---|---|---|\n");
    char *t1 = malloc(1024), *t64 = malloc(65536), *t4 = malloc(4096);
    text(t1, 1024, 1);
    text(t64, 65536, 2);
    text(t4, 4096, 3);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes); s++) {
        unsigned n = sizes[s], nr = 100;
        custos_blocklist_item_def_t *items = calloc(n + nr, sizeof(*items));
        char(*texts)[32] = calloc(n + nr, 32);
        char(*ids)[16] = calloc(n + nr, 16);
        for (unsigned i = 0; i < n; i++) {
            word(i, texts[i]);
            snprintf(ids[i], 16, "t%u", i);
            items[i] = (custos_blocklist_item_def_t){ids[i], texts[i],
                                                     CUSTOS_BLOCKLIST_WHOLE_WORD | CUSTOS_BLOCKLIST_NORMALIZE};
        }
        for (unsigned i = 0; i < nr; i++) {
            snprintf(texts[n + i], 32, "code-%u[0-9]{3}x", i);
            snprintf(ids[n + i], 16, "r%u", i);
            items[n + i] = (custos_blocklist_item_def_t){ids[n + i], texts[n + i], CUSTOS_BLOCKLIST_REGEX};
        }
        custos_blocklist_def_t l = {"bench", items, n + nr};
        long r0 = rss_kb();
        double t0 = now();
        custos_blocklists_t *set = NULL;
        char err[256];
        if (custos_blocklists_build(&l, 1, &set, err, sizeof(err)) != 0) {
            fprintf(stderr, "build: %s\n", err);
            return 1;
        }
        double ct = now() - t0;
        free(items); /* the set keeps its own copies */
        free(texts);
        free(ids);
        long r1 = rss_kb();
        custos_blocklist_scratch_t sc;
        custos_blocklist_scratch_init(&sc);
        size_t hits = 0;
        /* 1 KB */
        size_t iters = 0;
        t0 = now();
        do {
            custos_blocklists_scan(set, NULL, 0, t1, 1023, &sc, count_hit, &hits);
            iters++;
        } while (now() - t0 < secs);
        double us1 = (now() - t0) * 1e6 / (double)iters;
        /* 64 KB */
        iters = 0;
        t0 = now();
        do {
            custos_blocklists_scan(set, NULL, 0, t64, 65535, &sc, count_hit, &hits);
            iters++;
        } while (now() - t0 < secs);
        double mbs = (double)iters * 65535.0 / (now() - t0) / 1e6;
        /* stream */
        iters = 0;
        t0 = now();
        do {
            custos_blocklist_stream_t *st = NULL;
            custos_blocklist_stream_new(set, NULL, 0, &st);
            for (size_t o = 0; o < 4095; o += 16)
                custos_blocklist_stream_feed(st, t4 + o, o + 16 <= 4095 ? 16 : 4095 - o, &sc, count_hit, &hits);
            custos_blocklist_stream_close(st, &sc, count_hit, &hits);
            iters++;
        } while (now() - t0 < secs);
        double uss = (now() - t0) * 1e6 / (double)iters;
        printf("| %u | %.2f | %zu | %.1f | %.1f | %.0f | %.0f |\n", n, ct, custos_blocklists_bytes(set),
               (double)(r1 - r0) / 1024.0, us1, mbs, uss);
        custos_blocklist_scratch_dispose(&sc);
        custos_blocklists_unref(set);
    }
    free(t1);
    free(t64);
    free(t4);
    return 0;
}
