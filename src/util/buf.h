/* SPDX-License-Identifier: Apache-2.0
 * Capped growable byte buffer. Every buffer whose size a client controls is one of these,
 * with a hard maximum: growth past `max` fails with CUSTOS_ETOOBIG and leaves the buffer as it was.
 * Not thread-safe; owned by whoever embeds it. */
#ifndef CUSTOS_UTIL_BUF_H
#define CUSTOS_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct custos_buf {
    char *data; /* owned; NUL-terminated after every append (data[len] == 0) when data != NULL */
    size_t off; /* bytes already consumed from the front */
    size_t len; /* bytes written (including consumed ones) */
    size_t cap; /* allocated bytes */
    size_t max; /* hard cap on len - off; 0 means SIZE_MAX */
} custos_buf_t;

void custos_buf_init(custos_buf_t *b, size_t max);
void custos_buf_dispose(custos_buf_t *b);
/* Makes room for `extra` more bytes. Returns 0, CUSTOS_ETOOBIG or CUSTOS_ENOMEM. */
int custos_buf_reserve(custos_buf_t *b, size_t extra);
int custos_buf_append_slow(custos_buf_t *b, const void *p, size_t n);
/* Appends n bytes. Returns 0, CUSTOS_ETOOBIG (over max; buffer unchanged) or CUSTOS_ENOMEM. */
static inline int custos_buf_append(custos_buf_t *b, const void *p, size_t n)
{
    /* hot path: room already there (the cap check is the same as in reserve) */
    if (b->len + n + 1 <= b->cap && n <= b->max - (b->len - b->off)) {
        if (n)
            __builtin_memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
    }
    return custos_buf_append_slow(b, p, n);
}
/* Appends a string literal (length computed at compile time). */
#define custos_buf_append_lit(b, lit) custos_buf_append((b), "" lit, sizeof(lit) - 1)
/* Appends v in decimal / lower-case hex, without printf. */
int custos_buf_append_u64(custos_buf_t *b, unsigned long long v);
int custos_buf_append_hex(custos_buf_t *b, unsigned long long v);
int custos_buf_append_str(custos_buf_t *b, const char *s);
int custos_buf_appendf(custos_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int custos_buf_vappendf(custos_buf_t *b, const char *fmt, va_list ap);
/* Marks n bytes at the front as consumed; compacts lazily. */
void custos_buf_consume(custos_buf_t *b, size_t n);
/* Unread bytes. */
static inline const char *custos_buf_peek(const custos_buf_t *b)
{
    return b->data ? b->data + b->off : "";
}
static inline size_t custos_buf_size(const custos_buf_t *b)
{
    return b->len - b->off;
}
void custos_buf_reset(custos_buf_t *b);
/* Gives up ownership of the unread bytes (NUL-terminated, caller frees); the buffer becomes empty. */
char *custos_buf_steal(custos_buf_t *b, size_t *len_out);

#endif
