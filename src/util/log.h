/* SPDX-License-Identifier: Apache-2.0
 * Operational log (stderr, one line per event: time, level, message). Thread-safe.
 * Hard rule: never pass prompt or completion content, keys or tokens to these functions. */
#ifndef CUSTOS_UTIL_LOG_H
#define CUSTOS_UTIL_LOG_H

typedef enum { CUSTOS_LOG_DEBUG = 0, CUSTOS_LOG_INFO, CUSTOS_LOG_WARN, CUSTOS_LOG_ERROR } custos_log_level_t;

void custos_log_set_level(custos_log_level_t lvl);
void custos_log(custos_log_level_t lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CUSTOS_DEBUG(...) custos_log(CUSTOS_LOG_DEBUG, __VA_ARGS__)
#define CUSTOS_INFO(...) custos_log(CUSTOS_LOG_INFO, __VA_ARGS__)
#define CUSTOS_WARN(...) custos_log(CUSTOS_LOG_WARN, __VA_ARGS__)
#define CUSTOS_ERROR(...) custos_log(CUSTOS_LOG_ERROR, __VA_ARGS__)

#endif
