/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for the incremental SSE parser (net/sse.h): framing, chunk-split invariance, limits, framer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "net/sse.h"
#include "util/err.h"

/* Records every event as "E<event>|D<data>|I<id>|R<raw>\x1e" (lengths checked separately by the parser's NULs). */
typedef struct rec {
    custos_buf_t log;
    int count;
    int stop_after; /* return 42 from the callback once this many events were seen (0: never) */
} rec_t;

static void put_field(custos_buf_t *b, char tag, const char *s, size_t n)
{
    assert_int_equal(s[n], 0); /* NUL-terminated at [len] */
    assert_int_equal(custos_buf_appendf(b, "%c%zu:", tag, n), 0);
    assert_int_equal(custos_buf_append(b, s, n), 0);
}

static int on_event(void *ud, const custos_sse_event_t *ev)
{
    rec_t *r = ud;
    put_field(&r->log, 'E', ev->event, ev->event_len);
    put_field(&r->log, 'D', ev->data, ev->data_len);
    put_field(&r->log, 'I', ev->id, ev->id_len);
    put_field(&r->log, 'R', ev->raw, ev->raw_len);
    assert_int_equal(custos_buf_append(&r->log, "\n", 1), 0);
    r->count++;
    return r->stop_after && r->count >= r->stop_after ? 42 : 0;
}

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
    custos_buf_init(&r->log, 0);
}

/* Feeds the pieces given as (ptr, len) pairs, ending with NULL; returns finish()'s value, asserts feeds return 0. */
static int run_pieces(rec_t *r, size_t max, ...)
{
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, max, on_event, r), 0);
    va_list ap;
    va_start(ap, max);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        size_t n = va_arg(ap, size_t);
        assert_int_equal(custos_sse_feed(&p, s, n), 0);
    }
    va_end(ap);
    int rc = custos_sse_finish(&p);
    custos_sse_dispose(&p);
    return rc;
}

#define S(lit) (lit), (sizeof(lit) - 1)

/* Appends the record of one expected event; raw_len 0 means strlen(raw). */
static void expect_raw(const char *event, const char *data, const char *id, const char *raw, size_t raw_len,
                       custos_buf_t *out)
{
    raw_len = raw_len ? raw_len : strlen(raw);
    custos_buf_appendf(out, "E%zu:%sD%zu:%sI%zu:%sR%zu:", strlen(event), event, strlen(data), data, strlen(id), id,
                       raw_len);
    custos_buf_append(out, raw, raw_len);
    custos_buf_append(out, "\n", 1);
}

static void expect_one(const char *event, const char *data, const char *id, const char *raw, custos_buf_t *out)
{
    expect_raw(event, data, id, raw, 0, out);
}

static void test_openai_stream(void **state)
{
    (void)state;
    static const char stream[] = "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
                                 "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
                                 "data: [DONE]\n\n";
    rec_t r;
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 4096, S(stream), NULL), 0);
    assert_int_equal(r.count, 3);

    custos_buf_t want;
    custos_buf_init(&want, 0);
    expect_one("", "{\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}", "",
               "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n", &want);
    expect_one("", "{\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}", "",
               "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n", &want);
    expect_one("", "[DONE]", "", "data: [DONE]\n\n", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want));
    custos_buf_dispose(&want);
    custos_buf_dispose(&r.log);
}

/* A stream exercising every rule: mixed line endings, comments, fields, multi-line data, ignored blocks. */
static const char mixed_stream[] = "\xEF\xBB\xBF"
                                   ": keep-alive\r\n\r\n"
                                   "event: delta\r\nid: 7\r\ndata: a\r\ndata:  b\r\n\r\n"
                                   "data: one\rdata: two\r\r"
                                   "retry: 1500\nunknown: x\ndata\n\n"
                                   ": only a comment\n\n"
                                   "id: 8\x00x\ndata:x:y\r\n\n"
                                   "id\nevent: end\ndata: [DONE]\r\r";

static void feed_split(rec_t *r, const char *s, size_t n, size_t cut)
{
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 1024, on_event, r), 0);
    assert_int_equal(custos_sse_feed(&p, s, cut), 0);
    assert_int_equal(custos_sse_feed(&p, s + cut, n - cut), 0);
    assert_int_equal(custos_sse_finish(&p), 0);
    custos_sse_dispose(&p);
}

static void test_mixed_stream_fields(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    feed_split(&r, mixed_stream, sizeof(mixed_stream) - 1, 0);
    custos_buf_t want;
    custos_buf_init(&want, 0);
    expect_one("delta", "a\n b", "7", "event: delta\r\nid: 7\r\ndata: a\r\ndata:  b\r\n\r\n", &want);
    expect_one("", "one\ntwo", "7", "data: one\rdata: two\r\r", &want);
    expect_one("", "", "7", "retry: 1500\nunknown: x\ndata\n\n", &want);
    /* The comment-only block is not dispatched and not part of the next raw; "id" containing NUL is ignored. */
    expect_raw("", "x:y", "7", S("id: 8\x00x\ndata:x:y\r\n\n"), &want);
    /* "id" with no value resets the last event ID to empty. */
    expect_one("end", "[DONE]", "", "id\nevent: end\ndata: [DONE]\r\r", &want);
    assert_int_equal(r.count, 5);
    assert_int_equal(custos_buf_size(&r.log), custos_buf_size(&want));
    assert_memory_equal(custos_buf_peek(&r.log), custos_buf_peek(&want), custos_buf_size(&want));
    custos_buf_dispose(&want);
    custos_buf_dispose(&r.log);
}

static void test_all_two_way_splits(void **state)
{
    (void)state;
    const size_t n = sizeof(mixed_stream) - 1;
    rec_t ref;
    rec_init(&ref);
    feed_split(&ref, mixed_stream, n, n);
    assert_int_equal(ref.count, 5);
    for (size_t cut = 0; cut <= n; cut++) {
        rec_t r;
        rec_init(&r);
        feed_split(&r, mixed_stream, n, cut);
        assert_int_equal(r.count, ref.count);
        assert_int_equal(custos_buf_size(&r.log), custos_buf_size(&ref.log));
        assert_memory_equal(custos_buf_peek(&r.log), custos_buf_peek(&ref.log), custos_buf_size(&ref.log));
        custos_buf_dispose(&r.log);
    }
    custos_buf_dispose(&ref.log);
}

static void test_one_byte_feeding(void **state)
{
    (void)state;
    const size_t n = sizeof(mixed_stream) - 1;
    rec_t ref, r;
    rec_init(&ref);
    rec_init(&r);
    feed_split(&ref, mixed_stream, n, n);

    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 1024, on_event, &r), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(custos_sse_feed(&p, mixed_stream + i, 1), 0);
    assert_int_equal(custos_sse_finish(&p), 0);
    assert_int_equal(custos_sse_retry_ms(&p), 1500);
    custos_sse_dispose(&p);
    assert_int_equal(r.count, 5);
    assert_int_equal(custos_buf_size(&r.log), custos_buf_size(&ref.log));
    assert_memory_equal(custos_buf_peek(&r.log), custos_buf_peek(&ref.log), custos_buf_size(&ref.log));
    custos_buf_dispose(&r.log);
    custos_buf_dispose(&ref.log);
}

static void test_cr_lf_across_chunks(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    /* CR|LF split inside a data line ending and inside the blank line: each pair is one line ending. */
    assert_int_equal(run_pieces(&r, 256, S("data: a\r"), S("\ndata: b\r\n\r"), S("\n"), S("data: c\n\n"), NULL), 0);
    custos_buf_t want;
    custos_buf_init(&want, 0);
    expect_one("", "a\nb", "", "data: a\r\ndata: b\r\n\r\n", &want);
    expect_one("", "c", "", "data: c\n\n", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want));
    custos_buf_dispose(&r.log);

    /* CR then CR: two line endings (a data line, then a blank line), not one. */
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("data: a\r"), S("\r"), S("data: b\n\n"), NULL), 0);
    custos_buf_reset(&want);
    expect_one("", "a", "", "data: a\r\r", &want);
    expect_one("", "b", "", "data: b\n\n", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want));
    custos_buf_dispose(&r.log);

    /* A blank line ended by a bare CR as the last byte fed is dispatched on the next feed... */
    rec_init(&r);
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 256, on_event, &r), 0);
    assert_int_equal(custos_sse_feed(&p, S("data: x\r\r")), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(custos_sse_feed(&p, S("d")), 0);
    assert_int_equal(r.count, 1);
    /* ...and an LF arriving later in the same way is a single CRLF, so "d" started a new line. */
    assert_int_equal(custos_sse_feed(&p, S("ata: y\r\n\r")), 0);
    assert_int_equal(custos_sse_finish(&p), 0); /* ...or at end of stream */
    assert_int_equal(r.count, 2);
    custos_sse_dispose(&p);
    custos_buf_reset(&want);
    expect_one("", "x", "", "data: x\r\r", &want);
    expect_one("", "y", "", "data: y\r\n\r", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want));
    custos_buf_dispose(&r.log);
    custos_buf_dispose(&want);
}

static void test_comments_and_empty_blocks(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S(":\n\n: ping\n\nevent: ignored\n\n:c\ndata: v\n:d\n\n"), NULL), 0);
    custos_buf_t want;
    custos_buf_init(&want, 0);
    /* The event type of a block without data is reset; comments inside a dispatched block stay in raw. */
    expect_one("", "v", "", ":c\ndata: v\n:d\n\n", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want));
    custos_buf_dispose(&want);
    custos_buf_dispose(&r.log);
}

static void test_multiline_and_field_syntax(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    assert_int_equal(
        run_pieces(&r, 256, S("data:first\ndata:\ndata:  third\ndata: {\"a\":\"b: c\"}\nevent:e:f\n\n"), NULL), 0);
    custos_buf_t want;
    custos_buf_init(&want, 0);
    expect_one("e:f", "first\n\n third\n{\"a\":\"b: c\"}", "",
               "data:first\ndata:\ndata:  third\ndata: {\"a\":\"b: c\"}\nevent:e:f\n\n", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want));
    custos_buf_dispose(&want);
    custos_buf_dispose(&r.log);

    /* Field names are case-sensitive; "Data" is an unknown field. Retry must be all digits. */
    rec_init(&r);
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 256, on_event, &r), 0);
    assert_int_equal(custos_sse_feed(&p, S("Data: x\nretry: 12a\n\nretry: 99\n\nretry:\n\n")), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(custos_sse_retry_ms(&p), 99);
    assert_int_equal(custos_sse_finish(&p), 0);
    custos_sse_dispose(&p);
    custos_buf_dispose(&r.log);
}

static void test_data_with_nul(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("data: a\0b\n\n"), NULL), 0);
    assert_int_equal(r.count, 1);
    static const char want[] = "E0:D3:a\0bI0:R11:data: a\0b\n\n\n";
    assert_int_equal(custos_buf_size(&r.log), sizeof(want) - 1);
    assert_memory_equal(custos_buf_peek(&r.log), want, sizeof(want) - 1);
    custos_buf_dispose(&r.log);
}

static void test_oversize(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 16, on_event, &r), 0);
    /* Exactly 16 bytes of raw is fine... */
    assert_int_equal(custos_sse_feed(&p, S("data: 0123456\n\n")), 0);
    assert_int_equal(custos_sse_feed(&p, S("data: 01234567\n\n")), 0);
    assert_int_equal(r.count, 2);
    /* ...17 is not, even when it arrives byte by byte and even if it is only comments. */
    int rc = 0;
    const char *big = ": 0123456789abcdef";
    for (size_t i = 0; big[i] && rc == 0; i++)
        rc = custos_sse_feed(&p, big + i, 1);
    assert_int_equal(rc, CUSTOS_ETOOBIG);
    /* Sticky. */
    assert_int_equal(custos_sse_feed(&p, S("\n\n")), CUSTOS_ETOOBIG);
    assert_int_equal(custos_sse_finish(&p), CUSTOS_ETOOBIG);
    custos_sse_dispose(&p);
    assert_int_equal(r.count, 2);
    custos_buf_dispose(&r.log);

    /* One chunk holding an oversize event after a good one: the good one is still delivered. */
    rec_init(&r);
    assert_int_equal(custos_sse_init(&p, 16, on_event, &r), 0);
    assert_int_equal(custos_sse_feed(&p, S("data: ok\n\ndata: this is far too long\n\n")), CUSTOS_ETOOBIG);
    assert_int_equal(r.count, 1);
    custos_sse_dispose(&p);
    custos_buf_dispose(&r.log);

    assert_int_equal(custos_sse_init(&p, 0, on_event, &r), CUSTOS_EINVAL);
}

static void test_large_event_memory_released(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 1 << 20, on_event, &r), 0);
    static char big[200000];
    memset(big, 'x', sizeof(big));
    memcpy(big, "data: ", 6);
    memcpy(big + sizeof(big) - 2, "\n\n", 2);
    assert_int_equal(custos_sse_feed(&p, big, sizeof(big)), 0);
    assert_int_equal(r.count, 1);
    /* The 200 kB block's buffers are freed after dispatch; small events keep theirs for reuse. */
    assert_int_equal(p.raw.cap, 0);
    assert_int_equal(p.data.cap, 0);
    assert_int_equal(custos_sse_feed(&p, S("data: small\n\n")), 0);
    assert_int_equal(r.count, 2);
    assert_true(p.raw.cap > 0);
    custos_sse_dispose(&p);
    custos_buf_dispose(&r.log);
}

static void test_cut_stream(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("data: a\n\ndata: partial"), NULL), CUSTOS_EPROTO);
    assert_int_equal(r.count, 1);
    custos_buf_dispose(&r.log);

    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("data: a\n\ndata: b\n"), NULL), CUSTOS_EPROTO);
    assert_int_equal(r.count, 1);
    custos_buf_dispose(&r.log);

    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("data: a\n\ndata: b\r"), NULL), CUSTOS_EPROTO);
    assert_int_equal(r.count, 1);
    custos_buf_dispose(&r.log);

    /* A partial BOM is pending bytes too; a clean end and an empty stream are not cuts. */
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("\xEF\xBB"), NULL), CUSTOS_EPROTO);
    assert_int_equal(run_pieces(&r, 256, S("data: a\n\n"), NULL), 0);
    assert_int_equal(run_pieces(&r, 256, NULL), 0);
    assert_int_equal(run_pieces(&r, 256, S("\xEF\xBB\xBF"), NULL), 0);
    custos_buf_dispose(&r.log);
}

static void test_bom(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    /* A BOM split over chunks is skipped; a partial BOM followed by other bytes is kept as data. */
    assert_int_equal(run_pieces(&r, 256, S("\xEF"),
                                S("\xBB\xBF"
                                  "data: a\n\n\xEF\xBB\xBF"
                                  "data: b\n\n"),
                                NULL),
                     0);
    custos_buf_t want;
    custos_buf_init(&want, 0);
    expect_one("", "a", "", "data: a\n\n", &want);
    assert_string_equal(custos_buf_peek(&r.log), custos_buf_peek(&want)); /* second BOM makes an unknown field */
    custos_buf_dispose(&r.log);

    rec_init(&r);
    assert_int_equal(run_pieces(&r, 256, S("\xEF\xBB"), S("data: a\n\n"), NULL), 0);
    assert_int_equal(r.count, 0); /* field name "\xEF\xBB" "data" is unknown */
    custos_buf_dispose(&r.log);
    custos_buf_dispose(&want);
}

static void test_callback_stop(void **state)
{
    (void)state;
    rec_t r;
    rec_init(&r);
    r.stop_after = 2;
    custos_sse_parser_t p;
    assert_int_equal(custos_sse_init(&p, 256, on_event, &r), 0);
    assert_int_equal(custos_sse_feed(&p, S("data: 1\n\ndata: 2\n\ndata: 3\n\n")), 42);
    assert_int_equal(r.count, 2);
    assert_int_equal(custos_sse_feed(&p, S("data: 4\n\n")), 42);
    assert_int_equal(custos_sse_finish(&p), 42);
    assert_int_equal(r.count, 2);
    custos_sse_dispose(&p);
    custos_buf_dispose(&r.log);
}

/* Frames data, parses it back, and checks the data that comes out. */
static void roundtrip(const char *in, size_t n, const char *framed, const char *out, size_t out_len)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_sse_write_event(&b, in, n), 0);
    assert_string_equal(custos_buf_peek(&b), framed);

    rec_t r;
    rec_init(&r);
    assert_int_equal(run_pieces(&r, 1024, custos_buf_peek(&b), custos_buf_size(&b), NULL), 0);
    assert_int_equal(r.count, 1);
    custos_buf_t want;
    custos_buf_init(&want, 0);
    custos_buf_appendf(&want, "E0:D%zu:", out_len);
    custos_buf_append(&want, out, out_len);
    custos_buf_appendf(&want, "I0:R%zu:%s\n", custos_buf_size(&b), custos_buf_peek(&b));
    assert_int_equal(custos_buf_size(&r.log), custos_buf_size(&want));
    assert_memory_equal(custos_buf_peek(&r.log), custos_buf_peek(&want), custos_buf_size(&want));
    custos_buf_dispose(&want);
    custos_buf_dispose(&r.log);
    custos_buf_dispose(&b);
}

static void test_write_event(void **state)
{
    (void)state;
    roundtrip(S("{\"a\":1}"), "data: {\"a\":1}\n\n", S("{\"a\":1}"));
    roundtrip(S("[DONE]"), "data: [DONE]\n\n", S("[DONE]"));
    roundtrip(S(""), "data: \n\n", S(""));
    roundtrip(S("a\nb"), "data: a\ndata: b\n\n", S("a\nb"));
    roundtrip(S("a\n"), "data: a\ndata: \n\n", S("a\n"));
    roundtrip(S("\n\n"), "data: \ndata: \ndata: \n\n", S("\n\n"));
    roundtrip(S(" lead"), "data:  lead\n\n", S(" lead"));
    roundtrip(S("a\r\nb\rc"), "data: a\ndata: b\ndata: c\n\n", S("a\nb\nc"));
    roundtrip(S(":not a comment"), "data: :not a comment\n\n", S(":not a comment"));

    /* Appends all or nothing against the buffer's cap. */
    custos_buf_t b;
    custos_buf_init(&b, 20);
    assert_int_equal(custos_buf_append(&b, S("xy")), 0);
    assert_int_equal(custos_sse_write_event(&b, S("0123456789\n0123")), CUSTOS_ETOOBIG);
    assert_string_equal(custos_buf_peek(&b), "xy");
    assert_int_equal(custos_sse_write_event(&b, S("0123456789")), 0);
    assert_string_equal(custos_buf_peek(&b), "xydata: 0123456789\n\n");
    custos_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_mixed_stream_fields),
        cmocka_unit_test(test_all_two_way_splits),
        cmocka_unit_test(test_one_byte_feeding),
        cmocka_unit_test(test_cr_lf_across_chunks),
        cmocka_unit_test(test_comments_and_empty_blocks),
        cmocka_unit_test(test_multiline_and_field_syntax),
        cmocka_unit_test(test_data_with_nul),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_large_event_memory_released),
        cmocka_unit_test(test_cut_stream),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_write_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
