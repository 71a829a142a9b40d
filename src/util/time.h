/* SPDX-License-Identifier: Apache-2.0
 * Clocks. Monotonic for deadlines and durations, realtime for timestamps. Thread-safe. */
#ifndef CUSTOS_UTIL_TIME_H
#define CUSTOS_UTIL_TIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static inline uint64_t custos_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t custos_now_ms(void)
{
    return custos_now_ns() / 1000000ull;
}
static inline uint64_t custos_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

/* Formats epoch seconds as RFC 3339 UTC ("2026-11-28T23:48:42Z") into out (capacity n, ≥ 21 for the full form);
 * 0 is written as "-" (unset). For command-line listings. */
static inline void custos_fmt_utc(int64_t epoch_s, char *out, size_t n)
{
    if (!n)
        return;
    struct tm tm;
    time_t tt = (time_t)epoch_s;
    if (!epoch_s || !gmtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, n, "-");
}

#endif
