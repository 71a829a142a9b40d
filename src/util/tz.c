/* SPDX-License-Identifier: Apache-2.0
 * TZif (RFC 8536) reader: transitions and UTC offsets only (version 1 data, or the 64-bit version 2+ block). */
#include "util/tz.h"
#include "util/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_MAX_FILE (256 * 1024)

struct custos_tz {
    int64_t *times;   /* transition instants, ascending */
    int32_t *offsets; /* offset in force from times[i] on */
    size_t n;
    int32_t initial; /* offset before the first transition */
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '/' || strstr(s, ".."))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '_' ||
              c == '+' || c == '-'))
            return 0;
    }
    return 1;
}

/* Parses one data block at p (version 1: 4-byte times; else 8-byte). Returns bytes consumed or -1. */
static long parse_block(const unsigned char *p, size_t len, int v1, custos_tz_t *tz)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return -1;
    uint32_t isutcnt = be32(p + 20), isstdcnt = be32(p + 24), leapcnt = be32(p + 28), timecnt = be32(p + 32),
             typecnt = be32(p + 36), charcnt = be32(p + 40);
    if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || leapcnt > 10000 || charcnt > 100000)
        return -1;
    size_t tsz = v1 ? 4 : 8;
    size_t need = 44 + timecnt * tsz + timecnt + typecnt * 6 + charcnt + leapcnt * (tsz + 4) + isstdcnt + isutcnt;
    if (need > len)
        return -1;
    const unsigned char *tt = p + 44, *idx = tt + timecnt * tsz, *types = idx + timecnt;
    tz->times = calloc(timecnt ? timecnt : 1, sizeof(*tz->times));
    tz->offsets = calloc(timecnt ? timecnt : 1, sizeof(*tz->offsets));
    if (!tz->times || !tz->offsets)
        return -2;
    for (uint32_t i = 0; i < timecnt; i++) {
        tz->times[i] = v1 ? (int64_t)(int32_t)be32(tt + 4 * i) : be64(tt + 8 * i);
        if (idx[i] >= typecnt)
            return -1;
        tz->offsets[i] = (int32_t)be32(types + 6 * idx[i]);
        if (i && tz->times[i] <= tz->times[i - 1])
            return -1;
    }
    tz->n = timecnt;
    /* RFC 8536 3.2: local time before the first transition uses type 0 */
    tz->initial = (int32_t)be32(types);
    return (long)need;
}

int custos_tz_load(const char *dir, const char *name, custos_tz_t **out)
{
    *out = NULL;
    if (!name || !valid_name(name))
        return CUSTOS_EINVAL;
    if (!dir)
        dir = getenv("TZDIR") ? getenv("TZDIR") : "/usr/share/zoneinfo";
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return CUSTOS_EINVAL;
    FILE *f = fopen(path, "rbe");
    if (!f)
        return errno == ENOMEM ? CUSTOS_ENOMEM : CUSTOS_ENOTFOUND;
    unsigned char *data = malloc(TZ_MAX_FILE);
    custos_tz_t *tz = calloc(1, sizeof(*tz));
    int rc = CUSTOS_ENOMEM;
    if (!data || !tz)
        goto fail;
    size_t len = fread(data, 1, TZ_MAX_FILE, f);
    rc = CUSTOS_EINVAL;
    if (len < 44 || len == TZ_MAX_FILE || memcmp(data, "TZif", 4) != 0)
        goto fail;
    long used = parse_block(data, len, 1, tz);
    if (used == -2) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    if (used < 0)
        goto fail;
    if (data[4] >= '2') {
        /* the 64-bit block follows and supersedes the 32-bit one */
        free(tz->times);
        free(tz->offsets);
        tz->times = NULL;
        tz->offsets = NULL;
        tz->n = 0;
        long u2 = parse_block(data + used, len - (size_t)used, 0, tz);
        if (u2 == -2) {
            rc = CUSTOS_ENOMEM;
            goto fail;
        }
        if (u2 < 0)
            goto fail;
    }
    free(data);
    fclose(f);
    *out = tz;
    return 0;
fail:
    free(data);
    fclose(f);
    custos_tz_free(tz);
    return rc;
}

void custos_tz_free(custos_tz_t *tz)
{
    if (!tz)
        return;
    free(tz->times);
    free(tz->offsets);
    free(tz);
}

int32_t custos_tz_offset(const custos_tz_t *tz, int64_t t)
{
    if (tz->n == 0 || t < tz->times[0])
        return tz->initial;
    size_t lo = 0, hi = tz->n; /* last index with times[i] <= t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->times[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return tz->offsets[lo];
}

int custos_tz_minute_of_day(const custos_tz_t *tz, int64_t t)
{
    int64_t local = t + custos_tz_offset(tz, t);
    int64_t m = (local / 60) % 1440;
    if (m < 0)
        m += 1440;
    return (int)m;
}
