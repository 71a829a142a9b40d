/* SPDX-License-Identifier: Apache-2.0
 * Time zones from the system's TZif files (/usr/share/zoneinfo): UTC offset of a zone at an instant,
 * without touching the process-wide TZ (localtime_r with setenv is not thread-safe). */
#ifndef CUSTOS_UTIL_TZ_H
#define CUSTOS_UTIL_TZ_H

#include <stdint.h>

typedef struct custos_tz custos_tz_t;

/* Loads zone `name` ("Europe/Paris", "UTC"; [A-Za-z0-9/_+-], no "..") from dir (NULL = /usr/share/zoneinfo,
 * or $TZDIR when set). Returns 0 and a heap object (free with custos_tz_free), CUSTOS_EINVAL (bad name or
 * malformed file), CUSTOS_ENOTFOUND or CUSTOS_ENOMEM. Files are capped at 256 KiB. */
int custos_tz_load(const char *dir, const char *name, custos_tz_t **out);
void custos_tz_free(custos_tz_t *tz);

/* UTC offset in seconds at unix time t (after the last transition in the file, the last offset holds).
 * Immutable after load: thread-safe. */
int32_t custos_tz_offset(const custos_tz_t *tz, int64_t t);

/* Minutes after local midnight (0..1439) at unix time t. */
int custos_tz_minute_of_day(const custos_tz_t *tz, int64_t t);

#endif
