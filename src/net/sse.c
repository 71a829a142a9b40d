/* SPDX-License-Identifier: Apache-2.0
 * Incremental Server-Sent Events parser and `data:` event framer (see sse.h).
 * Every byte of the current event block is kept in `raw` (capped), so events can be forwarded verbatim. */
#include "net/sse.h"
#include "util/err.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

static const unsigned char utf8_bom[3] = {0xEF, 0xBB, 0xBF};

int custos_sse_init(custos_sse_parser_t *p, size_t max_event_bytes, custos_sse_cb cb, void *ud)
{
    memset(p, 0, sizeof(*p));
    if (!cb || max_event_bytes == 0)
        return CUSTOS_EINVAL;
    p->cb = cb;
    p->ud = ud;
    p->max = max_event_bytes;
    p->retry_ms = -1;
    custos_buf_init(&p->raw, max_event_bytes);
    custos_buf_init(&p->data, max_event_bytes);
    custos_buf_init(&p->event, max_event_bytes);
    custos_buf_init(&p->id, max_event_bytes);
    return 0;
}

void custos_sse_dispose(custos_sse_parser_t *p)
{
    custos_buf_dispose(&p->raw);
    custos_buf_dispose(&p->data);
    custos_buf_dispose(&p->event);
    custos_buf_dispose(&p->id);
}

long long custos_sse_retry_ms(const custos_sse_parser_t *p)
{
    return p->retry_ms;
}

/* Capacity above which a block's buffers are freed rather than kept for the next event, so that one large event
 * does not pin max_event_bytes for the rest of a long stream. */
#define SSE_KEEP_CAP 65536

static void reset_buf(custos_buf_t *b)
{
    if (b->cap > SSE_KEEP_CAP)
        custos_buf_dispose(b); /* keeps b->max */
    else
        custos_buf_reset(b);
}

static void reset_block(custos_sse_parser_t *p)
{
    reset_buf(&p->raw);
    reset_buf(&p->data);
    reset_buf(&p->event);
    p->line_start = 0;
}

/* Blank line: dispatch if the data buffer is non-empty, then start a new block (spec "dispatch the event"). */
static int dispatch(custos_sse_parser_t *p)
{
    int rc = 0;
    size_t dlen = custos_buf_size(&p->data);
    if (dlen > 0) {
        /* Drop the trailing '\n' that every data line added. */
        p->data.len--;
        p->data.data[p->data.len] = 0;
        custos_sse_event_t ev = {
            .event = custos_buf_peek(&p->event),
            .event_len = custos_buf_size(&p->event),
            .data = custos_buf_peek(&p->data),
            .data_len = dlen - 1,
            .id = custos_buf_peek(&p->id),
            .id_len = custos_buf_size(&p->id),
            .raw = custos_buf_peek(&p->raw),
            .raw_len = custos_buf_size(&p->raw),
        };
        rc = p->cb(p->ud, &ev);
    }
    reset_block(p);
    return rc;
}

static int field_is(const char *f, size_t flen, const char *name)
{
    size_t n = strlen(name);
    return flen == n && memcmp(f, name, n) == 0;
}

/* Processes one complete non-blank line raw[ls, le). */
static int process_line(custos_sse_parser_t *p, size_t ls, size_t le)
{
    const char *line = custos_buf_peek(&p->raw) + ls;
    size_t n = le - ls;
    int rc = 0;

    if (line[0] == ':')
        return 0; /* comment */
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *val = colon ? colon + 1 : line + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen > 0 && val[0] == ' ') {
        val++;
        vlen--;
    }

    if (field_is(line, flen, "data")) {
        rc = custos_buf_append(&p->data, val, vlen);
        if (!rc)
            rc = custos_buf_append(&p->data, "\n", 1);
    } else if (field_is(line, flen, "event")) {
        custos_buf_reset(&p->event);
        rc = custos_buf_append(&p->event, val, vlen);
    } else if (field_is(line, flen, "id")) {
        if (!memchr(val, 0, vlen)) {
            custos_buf_reset(&p->id);
            rc = custos_buf_append(&p->id, val, vlen);
        }
    } else if (field_is(line, flen, "retry")) {
        long long v = 0;
        size_t k;
        for (k = 0; k < vlen && val[k] >= '0' && val[k] <= '9'; k++)
            v = v > (LLONG_MAX - 9) / 10 ? LLONG_MAX : v * 10 + (val[k] - '0');
        if (vlen > 0 && k == vlen)
            p->retry_ms = v;
    }
    /* Unknown fields are ignored. */
    return rc;
}

/* Consumes stream bytes (BOM already handled). Returns 0 or an error / the callback's nonzero value. */
static int consume(custos_sse_parser_t *p, const char *s, size_t n)
{
    size_t i = 0;
    int rc;

    while (i < n) {
        if (p->pend) {
            /* A blank line ended with CR at the end of the previous chunk: an LF now completes its CRLF. */
            p->pend = 0;
            if (s[i] == '\n') {
                if ((rc = custos_buf_append(&p->raw, "\n", 1)))
                    return rc;
                i++;
            }
            if ((rc = dispatch(p)))
                return rc;
            continue;
        }
        if (p->cr_tail) {
            p->cr_tail = 0;
            if (s[i] == '\n') {
                if ((rc = custos_buf_append(&p->raw, "\n", 1)))
                    return rc;
                i++;
                p->line_start = custos_buf_size(&p->raw);
            }
            continue;
        }

        size_t j = i;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        if (j > i && (rc = custos_buf_append(&p->raw, s + i, j - i)))
            return rc;
        if (j == n)
            break; /* incomplete line stays in raw */

        size_t ls = p->line_start, le = custos_buf_size(&p->raw);
        size_t tlen = 1;
        int cr_at_end = 0;
        i = j + 1;
        if (s[j] == '\r') {
            if (i == n)
                cr_at_end = 1;
            else if (s[i] == '\n') {
                tlen = 2;
                i++;
            }
        }
        if (le > ls && (rc = process_line(p, ls, le)))
            return rc;
        if ((rc = custos_buf_append(&p->raw, s + j, tlen)))
            return rc;
        p->line_start = custos_buf_size(&p->raw);
        if (le == ls) {
            if (cr_at_end)
                p->pend = 1;
            else if ((rc = dispatch(p)))
                return rc;
        } else if (cr_at_end) {
            p->cr_tail = 1;
        }
    }
    return 0;
}

int custos_sse_feed(custos_sse_parser_t *p, const char *data, size_t len)
{
    size_t i = 0;
    int rc = 0;

    if (p->err)
        return p->err;
    if (len == 0)
        return 0;
    /* The stream may start with a UTF-8 BOM, which is skipped (possibly split across chunks). */
    while (p->bom < 3 && i < len) {
        if ((unsigned char)data[i] == utf8_bom[p->bom]) {
            p->bom++;
            i++;
            continue;
        }
        size_t matched = p->bom;
        p->bom = 3;
        if (matched && (rc = consume(p, (const char *)utf8_bom, matched)))
            goto fail;
    }
    if ((rc = consume(p, data + i, len - i)))
        goto fail;
    return 0;
fail:
    p->err = rc;
    return rc;
}

int custos_sse_finish(custos_sse_parser_t *p)
{
    int rc = 0;

    if (p->err)
        return p->err;
    if (p->pend) {
        p->pend = 0;
        if ((rc = dispatch(p)))
            p->err = rc;
        return rc;
    }
    if (custos_buf_size(&p->raw) > 0 || (p->bom > 0 && p->bom < 3))
        rc = CUSTOS_EPROTO;
    reset_block(p);
    p->cr_tail = 0;
    return rc;
}

/* Length of the line starting at s (up to CR, LF or end) and of its terminator. */
static size_t next_line(const char *s, size_t n, size_t *term)
{
    size_t k = 0;
    while (k < n && s[k] != '\r' && s[k] != '\n')
        k++;
    *term = k == n ? 0 : (s[k] == '\r' && k + 1 < n && s[k + 1] == '\n') ? 2 : 1;
    return k;
}

int custos_sse_write_event(custos_buf_t *out, const char *data, size_t len)
{
    static const char prefix[] = "data: ";
    const size_t plen = sizeof(prefix) - 1;
    size_t total = 1, off = 0, term;

    if (!data)
        data = "";
    if (len > (SIZE_MAX - 16) / (plen + 2))
        return CUSTOS_ETOOBIG;
    /* First pass: exact size, so that the appends below cannot fail halfway. */
    for (;;) {
        size_t k = next_line(data + off, len - off, &term);
        total += plen + k + 1;
        off += k + term;
        if (term == 0)
            break;
    }
    int rc = custos_buf_reserve(out, total);
    if (rc)
        return rc;
    off = 0;
    for (;;) {
        size_t k = next_line(data + off, len - off, &term);
        custos_buf_append(out, prefix, plen);
        custos_buf_append(out, data + off, k);
        custos_buf_append(out, "\n", 1);
        off += k + term;
        if (term == 0)
            break;
    }
    custos_buf_append(out, "\n", 1);
    return 0;
}
