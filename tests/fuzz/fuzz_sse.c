/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for net/sse: one-shot, split and (small inputs) byte-at-a-time feeding must give identical
 * events and results; every event's raw must re-parse to the same event; write_event must round-trip data. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/sse.h"
#include "util/err.h"

typedef struct rec {
    custos_buf_t log;
    size_t max;
    int check; /* re-parse raw and round-trip data through write_event */
} rec_t;

typedef struct one {
    custos_buf_t data, event, raw;
    int count;
} one_t;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_sse: check failed: %s (line %d)\n", #cond, __LINE__);                                \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static int on_one(void *ud, const custos_sse_event_t *ev)
{
    one_t *o = ud;
    o->count++;
    custos_buf_reset(&o->data);
    custos_buf_reset(&o->event);
    custos_buf_reset(&o->raw);
    CHECK(custos_buf_append(&o->data, ev->data, ev->data_len) == 0);
    CHECK(custos_buf_append(&o->event, ev->event, ev->event_len) == 0);
    CHECK(custos_buf_append(&o->raw, ev->raw, ev->raw_len) == 0);
    return 0;
}

static void one_init(one_t *o)
{
    memset(o, 0, sizeof(*o));
    custos_buf_init(&o->data, 0);
    custos_buf_init(&o->event, 0);
    custos_buf_init(&o->raw, 0);
}

static void one_dispose(one_t *o)
{
    custos_buf_dispose(&o->data);
    custos_buf_dispose(&o->event);
    custos_buf_dispose(&o->raw);
}

static int eq(const custos_buf_t *b, const char *s, size_t n)
{
    return custos_buf_size(b) == n && memcmp(custos_buf_peek(b), s, n) == 0;
}

static void check_event(const rec_t *r, const custos_sse_event_t *ev)
{
    CHECK(ev->raw_len >= 1 && ev->raw_len <= r->max);
    CHECK(ev->raw[ev->raw_len - 1] == '\n' || ev->raw[ev->raw_len - 1] == '\r');
    CHECK(ev->data_len < ev->raw_len && !memchr(ev->data, '\r', ev->data_len));
    CHECK(ev->data[ev->data_len] == 0 && ev->event[ev->event_len] == 0 && ev->id[ev->id_len] == 0);

    /* The raw block alone (after a "\n" so no BOM is stripped) is exactly this event again. */
    one_t o;
    one_init(&o);
    custos_sse_parser_t p;
    CHECK(custos_sse_init(&p, r->max, on_one, &o) == 0);
    CHECK(custos_sse_feed(&p, "\n", 1) == 0);
    CHECK(custos_sse_feed(&p, ev->raw, ev->raw_len) == 0);
    CHECK(custos_sse_finish(&p) == 0);
    custos_sse_dispose(&p);
    CHECK(o.count == 1);
    CHECK(eq(&o.data, ev->data, ev->data_len) && eq(&o.event, ev->event, ev->event_len));
    CHECK(eq(&o.raw, ev->raw, ev->raw_len));

    /* Framing the data and parsing it back gives the same data (it never contains CR). */
    custos_buf_t f;
    custos_buf_init(&f, 0);
    CHECK(custos_sse_write_event(&f, ev->data, ev->data_len) == 0);
    one_dispose(&o);
    one_init(&o);
    CHECK(custos_sse_init(&p, custos_buf_size(&f), on_one, &o) == 0);
    CHECK(custos_sse_feed(&p, custos_buf_peek(&f), custos_buf_size(&f)) == 0);
    CHECK(custos_sse_finish(&p) == 0);
    custos_sse_dispose(&p);
    CHECK(o.count == 1 && eq(&o.data, ev->data, ev->data_len));
    custos_buf_dispose(&f);
    one_dispose(&o);
}

static int on_event(void *ud, const custos_sse_event_t *ev)
{
    rec_t *r = ud;
    if (r->check)
        check_event(r, ev);
    custos_buf_appendf(&r->log, "%zu:%zu:%zu:%zu|", ev->event_len, ev->data_len, ev->id_len, ev->raw_len);
    custos_buf_append(&r->log, ev->event, ev->event_len);
    custos_buf_append(&r->log, ev->data, ev->data_len);
    custos_buf_append(&r->log, ev->id, ev->id_len);
    custos_buf_append(&r->log, ev->raw, ev->raw_len);
    return 0;
}

/* Feeds d in pieces of at most `step` bytes, except that the first piece is `cut` bytes. Returns feed's first
 * nonzero value, else finish()'s value. */
static int run(rec_t *r, const char *d, size_t n, size_t cut, size_t step)
{
    custos_sse_parser_t p;
    int rc = 0;
    CHECK(custos_sse_init(&p, r->max, on_event, r) == 0);
    if (cut > 0)
        rc = custos_sse_feed(&p, d, cut);
    for (size_t i = cut; rc == 0 && i < n; i += step)
        rc = custos_sse_feed(&p, d + i, n - i < step ? n - i : step);
    if (rc == 0)
        rc = custos_sse_finish(&p);
    else
        CHECK(custos_sse_finish(&p) == rc); /* sticky */
    custos_sse_dispose(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t maxes[4] = {24, 256, 4096, 1u << 20};
    if (size < 1)
        return 0;
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    size_t max = maxes[data[0] & 3];
    size_t cut = (size_t)(data[0] >> 2) * n / 63;

    rec_t a = {.max = max, .check = 1}, b = {.max = max};
    custos_buf_init(&a.log, 0);
    custos_buf_init(&b.log, 0);
    int rca = run(&a, d, n, 0, n ? n : 1);
    CHECK(rca == 0 || rca == CUSTOS_EPROTO || rca == CUSTOS_ETOOBIG);
    int rcb = run(&b, d, n, cut, n ? n : 1);
    CHECK(rca == rcb);
    CHECK(eq(&a.log, custos_buf_peek(&b.log), custos_buf_size(&b.log)));
    if (n <= 1024) {
        custos_buf_reset(&b.log);
        rcb = run(&b, d, n, 0, 1);
        CHECK(rca == rcb);
        CHECK(eq(&a.log, custos_buf_peek(&b.log), custos_buf_size(&b.log)));
    }
    custos_buf_dispose(&a.log);
    custos_buf_dispose(&b.log);
    return 0;
}
