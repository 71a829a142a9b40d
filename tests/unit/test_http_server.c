/* SPDX-License-Identifier: Apache-2.0
 * HTTP/1.1 server: strict parsing (the request-smuggling table of c-stack.md), limits, keep-alive,
 * pipelining, chunked bodies, streaming responses, and error bodies. Drives a real server over a
 * socketpair with the loop stepped by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/loop.h"
#include "net/http_server.h"
#include "util/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int requests;
    char last_path[256];
    char last_query_x[64];
    size_t last_body_len;
    char last_body[256];
    bool stream;
} handler_state_t;

static void handler(custos_http_req_t *req, void *ud)
{
    handler_state_t *st = ud;
    st->requests++;
    snprintf(st->last_path, sizeof(st->last_path), "%s", req->path);
    const char *x = custos_http_req_query(req, "x");
    snprintf(st->last_query_x, sizeof(st->last_query_x), "%s", x ? x : "");
    st->last_body_len = req->body_len;
    snprintf(st->last_body, sizeof(st->last_body), "%.*s", (int)(req->body_len < 255 ? req->body_len : 255), req->body);
    if (strcmp(req->path, "/stream") == 0) {
        custos_http_header_t h[1] = {{"content-type", 12, "text/event-stream", 17}};
        custos_http_stream_start(req, 200, h, 1);
        custos_http_stream_write(req, "data: 1\n\n", 9);
        custos_http_stream_write(req, "data: 2\n\n", 9);
        custos_http_stream_end(req);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof(body), "ok %d", st->requests);
    custos_http_respond(req, 200, NULL, 0, body, (size_t)n);
}

/* Sends input on a fresh connection, half-closes, and collects everything the server answers. */
static char *exchange_opts(const char *input, size_t len, const custos_http_limits_t *lim, handler_state_t *st,
                           bool half_close)
{
    custos_loop_t *loop;
    assert_int_equal(custos_loop_new(&loop), 0);
    custos_http_server_opts_t o;
    memset(&o, 0, sizeof(o));
    if (lim)
        o.limits = *lim;
    else
        custos_http_limits_default(&o.limits);
    o.on_request = handler;
    o.ud = st;
    custos_http_server_t *s;
    assert_int_equal(custos_http_server_new(loop, &o, &s), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(custos_http_server_adopt(s, sv[0], NULL, NULL, 0), 0);
    size_t off = 0;
    custos_buf_t out;
    custos_buf_init(&out, 0);
    bool shut = false;
    for (int i = 0; i < 2000; i++) {
        if (off < len) {
            ssize_t w = write(sv[1], input + off, len - off);
            if (w > 0)
                off += (size_t)w;
        } else if (half_close && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = true;
        }
        custos_loop_run_once(loop, 5);
        char buf[4096];
        ssize_t r;
        while ((r = read(sv[1], buf, sizeof(buf))) > 0)
            custos_buf_append(&out, buf, (size_t)r);
        if (r == 0)
            break; /* server closed */
        if (off >= len && custos_http_server_conn_count(s) == 0)
            break;
        if (!half_close && off >= len && i > 50)
            break;
    }
    close(sv[1]);
    custos_http_server_free(s);
    custos_loop_run_once(loop, 0);
    custos_loop_free(loop);
    return custos_buf_steal(&out, NULL);
}

static char *exchange(const char *input, handler_state_t *st)
{
    return exchange_opts(input, strlen(input), NULL, st, true);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void expect_rejected(const char *req)
{
    handler_state_t st = {0};
    char *out = exchange(req, &st);
    if (st.requests != 0)
        fail_msg("request reached the handler: %s", req);
    if (strncmp(out, "HTTP/1.1 4", 10) != 0)
        fail_msg("expected a 4xx for %s, got '%.80s'", req, out);
    assert_non_null(strstr(out, "{\"error\":{\"code\":"));
    assert_non_null(strstr(out, "connection: close"));
    free(out);
}

static void test_simple_get(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("GET /a/b?x=1%202&y=3 HTTP/1.1\r\nHost: h\r\n\r\n", &st);
    assert_int_equal(st.requests, 1);
    assert_string_equal(st.last_path, "/a/b");
    assert_string_equal(st.last_query_x, "1 2");
    assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(out, "content-length: 4\r\n"));
    assert_non_null(strstr(out, "x-request-id: "));
    assert_non_null(strstr(out, "apim-request-id: "));
    assert_non_null(strstr(out, "\r\n\r\nok 1"));
    free(out);
}

static void test_keepalive_and_pipelining(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
                         "POST /3 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
                         &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(count(out, "HTTP/1.1 200 OK"), 3);
    char *a = strstr(out, "ok 1"), *b = strstr(out, "ok 2"), *c = strstr(out, "ok 3");
    assert_true(a && b && c && a < b && b < c);
    assert_string_equal(st.last_body, "abc");
    free(out);
}

static void test_chunked_body(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
                         &st);
    assert_int_equal(st.requests, 1);
    assert_string_equal(st.last_body, "abcdefg");
    assert_non_null(strstr(out, "HTTP/1.1 200"));
    free(out);
}

static void test_http10_close(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("GET / HTTP/1.0\r\n\r\nGET /again HTTP/1.0\r\n\r\n", &st);
    assert_int_equal(st.requests, 1); /* HTTP/1.0 without keep-alive: one request, then close */
    assert_non_null(strstr(out, "connection: close"));
    free(out);
}

static void test_streaming_chunked(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("GET /stream HTTP/1.1\r\nHost: h\r\n\r\n", &st);
    assert_non_null(strstr(out, "transfer-encoding: chunked\r\n"));
    assert_non_null(strstr(out, "9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"));
    free(out);
}

/* The smuggling battery from c-stack.md: every shape is refused before the handler sees it. */
static void test_smuggling_shapes(void **state)
{
    expect_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_rejected("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
    expect_rejected("POST / HTTP/1.1\r\nHost: h\r\nX: \rxTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_rejected("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n");
    expect_rejected("GET / HTTP/1.1\nHost: h\n\n");
    expect_rejected("GET / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello");
    expect_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n");
    expect_rejected("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "10000000000000000\r\nx\r\n0\r\n\r\n");
    expect_rejected("GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n");
    expect_rejected("GET / HTTP/1.1\r\n\r\n");                             /* no Host */
    expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");       /* two Hosts */
    expect_rejected("GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n"); /* 417 */
}

static void test_limits(void **state)
{
    custos_http_limits_t lim;
    custos_http_limits_default(&lim);
    lim.max_header_bytes = 1024;
    lim.max_headers = 8;
    lim.max_body_bytes = 100;
    lim.max_url_bytes = 64;
    handler_state_t st = {0};

    char big[4096];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %02000d\r\n\r\n", 0);
    char *out = exchange_opts(big, strlen(big), &lim, &st, true);
    assert_non_null(strstr(out, "HTTP/1.1 431"));
    free(out);

    char many[2048] = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 0; i < 10; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "X-%d: v\r\n", i);
    strcat(many, "\r\n");
    out = exchange_opts(many, strlen(many), &lim, &st, true);
    assert_non_null(strstr(out, "HTTP/1.1 431"));
    free(out);

    const char *body = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n";
    out = exchange_opts(body, strlen(body), &lim, &st, true);
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    free(out);

    /* chunked body growing past the limit */
    char chunked[1024] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 5; i++)
        strcat(chunked, "20\r\n01234567890123456789012345678901\r\n");
    strcat(chunked, "0\r\n\r\n");
    out = exchange_opts(chunked, strlen(chunked), &lim, &st, true);
    assert_non_null(strstr(out, "HTTP/1.1 413"));
    free(out);

    char url[512];
    snprintf(url, sizeof(url), "GET /%0100d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    out = exchange_opts(url, strlen(url), &lim, &st, true);
    assert_non_null(strstr(out, "HTTP/1.1 414"));
    free(out);
    assert_int_equal(st.requests, 0);
}

static void test_error_body_shape(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("GARBAGE\r\n\r\n", &st);
    assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request"));
    assert_non_null(strstr(out, "content-type: application/json"));
    assert_non_null(strstr(out, "{\"error\":{\"code\":\"bad_request\",\"message\":\"Malformed HTTP request.\",\"type\":"
                                "\"invalid_request_error\",\"param\":null}}"));
    assert_non_null(strstr(out, "connection: close"));
    free(out);
}

static void test_expect_continue(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", &st);
    assert_non_null(strstr(out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"));
    assert_string_equal(st.last_body, "hi");
    free(out);
}

static void test_partial_then_close(void **state)
{
    handler_state_t st = {0};
    char *out = exchange("GET / HTTP/1.1\r\nHost: h\r\nX-Incompl", &st);
    assert_int_equal(st.requests, 0);
    assert_string_equal(out, ""); /* closed silently: there is no request to answer */
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_keepalive_and_pipelining),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_http10_close),
        cmocka_unit_test(test_streaming_chunked),
        cmocka_unit_test(test_smuggling_shapes),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_error_body_shape),
        cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_partial_then_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
