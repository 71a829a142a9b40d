/* SPDX-License-Identifier: Apache-2.0
 * Clocks. Monotonic for deadlines and durations, realtime for timestamps. Thread-safe. */
#ifndef CUSTOS_UTIL_TIME_H
#define CUSTOS_UTIL_TIME_H

#include <stdint.h>
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

#endif
