/* SPDX-License-Identifier: Apache-2.0 */
#include "util/buf.h"
#include "util/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void custos_buf_init(custos_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max ? max : SIZE_MAX;
}

void custos_buf_dispose(custos_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void custos_buf_reset(custos_buf_t *b)
{
    b->off = b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

int custos_buf_reserve(custos_buf_t *b, size_t extra)
{
    size_t live = b->len - b->off;
    if (extra > b->max - live)
        return CUSTOS_ETOOBIG;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    /* Compact first: consumed bytes at the front are reclaimed before growing. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, live);
        b->off = 0;
        b->len = live;
        b->data[live] = 0;
        if (b->len + extra + 1 <= b->cap)
            return 0;
    }
    size_t want = live + extra + 1;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < want)
        ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
    char *n = realloc(b->data, ncap);
    if (!n)
        return CUSTOS_ENOMEM;
    b->data = n;
    b->cap = ncap;
    return 0;
}

int custos_buf_append_slow(custos_buf_t *b, const void *p, size_t n)
{
    int rc = custos_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int custos_buf_append_str(custos_buf_t *b, const char *s)
{
    return custos_buf_append(b, s, strlen(s));
}

int custos_buf_vappendf(custos_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return CUSTOS_EINVAL;
    if ((size_t)n < sizeof(tmp))
        return custos_buf_append(b, tmp, (size_t)n);
    int rc = custos_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int custos_buf_appendf(custos_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = custos_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void custos_buf_consume(custos_buf_t *b, size_t n)
{
    size_t live = b->len - b->off;
    if (n >= live) {
        b->off = b->len = 0;
        if (b->data)
            b->data[0] = 0;
        return;
    }
    b->off += n;
}

char *custos_buf_steal(custos_buf_t *b, size_t *len_out)
{
    size_t live = b->len - b->off;
    char *p;
    if (!b->data) {
        p = calloc(1, 1);
    } else {
        if (b->off)
            memmove(b->data, b->data + b->off, live + 1);
        p = b->data;
    }
    if (len_out)
        *len_out = live;
    b->data = NULL;
    b->off = b->len = b->cap = 0;
    return p;
}

int custos_buf_append_u64(custos_buf_t *b, unsigned long long v)
{
    char tmp[24];
    char *e = tmp + sizeof(tmp), *q = e;
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return custos_buf_append(b, q, (size_t)(e - q));
}

int custos_buf_append_hex(custos_buf_t *b, unsigned long long v)
{
    static const char hx[] = "0123456789abcdef";
    char tmp[20];
    char *e = tmp + sizeof(tmp), *q = e;
    do {
        *--q = hx[v & 15];
        v >>= 4;
    } while (v);
    return custos_buf_append(b, q, (size_t)(e - q));
}
