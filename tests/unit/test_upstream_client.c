/* SPDX-License-Identifier: Apache-2.0
 * Upstream client tests: the client runs on a real loop against a tiny blocking HTTP/1.1 (and TLS)
 * server on 127.0.0.1 in other threads, with canned responses per test. */
#include "core/loop.h"
#include "upstream/client.h"
#include "util/buf.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ------------------------------------------------------------------ test server */

enum {
    M_CL,          /* 200 with Content-Length, keep-alive */
    M_CHUNKED,     /* chunked; second chunk only after the client saw the first */
    M_CLOSE_MID,   /* Content-Length 100, sends 10 bytes, closes */
    M_SILENT,      /* reads the request, never answers */
    M_BIG,         /* 1 MiB body */
    M_BADSTATUS,   /* malformed status line */
    M_CLOSE_DELIM, /* body delimited by close */
    M_DROP_SECOND, /* answers the first request of a connection, closes on the second without answering */
    M_HUGE_HEAD,   /* 4 KiB header */
    M_1XX,         /* 100 Continue, then 200 */
};

#define BIG_LEN (1024 * 1024)
#define MAX_HANDLERS 32

typedef struct srv {
    int lfd;
    uint16_t port;
    int mode;
    SSL_CTX *tls;
    atomic_int accepts;
    atomic_int requests;
    atomic_int resumed; /* TLS handshakes that resumed a session */
    atomic_bool stop;
    pthread_t acceptor;
    pthread_t handlers[MAX_HANDLERS];
    atomic_int nhandlers;
    int step[2]; /* client -> server: "go on" (M_CHUNKED) */
    pthread_mutex_t mu;
    char last_req[4096];
} srv_t;

typedef struct sconn {
    srv_t *s;
    int fd;
    SSL *ssl;
} sconn_t;

static ssize_t s_read(sconn_t *c, char *b, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, b, (int)n);
        return r > 0 ? r : (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    return read(c->fd, b, n);
}

static int s_write(sconn_t *c, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, b, (int)n) : send(c->fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int s_writes(sconn_t *c, const char *s)
{
    return s_write(c, s, strlen(s));
}

/* Reads one request (head + Content-Length body). 0, or -1 on EOF/error. */
static int s_read_request(sconn_t *c)
{
    char buf[8192];
    size_t len = 0;
    char *end = NULL;
    while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
        if (len == sizeof(buf))
            return -1;
        ssize_t n = s_read(c, buf + len, sizeof(buf) - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    size_t head = (size_t)(end - buf) + 4;
    size_t cl = 0;
    for (char *p = buf; p < end; p++)
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
            cl = strtoul(p + 15, NULL, 10);
    while (len < head + cl) {
        ssize_t n = s_read(c, buf + len, sizeof(buf) - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
    pthread_mutex_lock(&c->s->mu);
    size_t k = head < sizeof(c->s->last_req) - 1 ? head : sizeof(c->s->last_req) - 1;
    memcpy(c->s->last_req, buf, k);
    c->s->last_req[k] = 0;
    pthread_mutex_unlock(&c->s->mu);
    atomic_fetch_add(&c->s->requests, 1);
    return 0;
}

static void s_wait_eof(sconn_t *c)
{
    char b[512];
    while (s_read(c, b, sizeof(b)) > 0)
        ;
}

static void *s_handler(void *arg)
{
    sconn_t *c = arg;
    srv_t *s = c->s;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (s->tls) {
        c->ssl = SSL_new(s->tls);
        SSL_set_fd(c->ssl, c->fd);
        if (SSL_accept(c->ssl) != 1)
            goto out; /* e.g. the client rejected our certificate */
        if (SSL_session_reused(c->ssl))
            atomic_fetch_add(&s->resumed, 1);
    }
    for (int nreq = 0;; nreq++) {
        if (s_read_request(c) != 0)
            goto out;
        switch (s->mode) {
        case M_CL:
            if (s_writes(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\nhello"))
                goto out;
            break;
        case M_CHUNKED: {
            if (s_writes(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
                goto out;
            struct pollfd pfd = {.fd = s->step[0], .events = POLLIN};
            char b;
            if (poll(&pfd, 1, 5000) != 1 || read(s->step[0], &b, 1) != 1)
                goto out;
            if (s_writes(c, "6\r\n world\r\n0\r\n\r\n"))
                goto out;
            break;
        }
        case M_CLOSE_MID:
            s_writes(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            goto out;
        case M_SILENT:
        case M_BADSTATUS:
            if (s->mode == M_BADSTATUS)
                s_writes(c, "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n");
            s_wait_eof(c);
            goto out;
        case M_BIG: {
            char hdr[128];
            snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_LEN);
            if (s_writes(c, hdr))
                goto out;
            static char body[BIG_LEN];
            for (int i = 0; i < BIG_LEN; i++)
                body[i] = (char)(i % 251);
            if (s_write(c, body, BIG_LEN))
                goto out;
            break;
        }
        case M_CLOSE_DELIM:
            s_writes(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcdef");
            goto out;
        case M_DROP_SECOND:
            if (nreq > 0)
                goto out;
            if (s_writes(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
                goto out;
            break;
        case M_HUGE_HEAD: {
            char big[4200];
            memset(big, 'a', sizeof(big));
            memcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ", 24);
            memcpy(big + sizeof(big) - 24, "\r\nContent-Length: 0\r\n\r\n", 24);
            s_write(c, big, sizeof(big));
            s_wait_eof(c);
            goto out;
        }
        case M_1XX:
            if (s_writes(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
                goto out;
            break;
        }
    }
out:
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c);
    return NULL;
}

static void *s_acceptor(void *arg)
{
    srv_t *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pfd, 1, 20) != 1)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->accepts, 1);
        int i = atomic_load(&s->nhandlers);
        sconn_t *c = calloc(1, sizeof(*c));
        if (i >= MAX_HANDLERS || !c) {
            free(c);
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        if (pthread_create(&s->handlers[i], NULL, s_handler, c) != 0) {
            free(c);
            close(fd);
            continue;
        }
        atomic_store(&s->nhandlers, i + 1);
    }
    return NULL;
}

/* Listens on 127.0.0.1 (or ::1 when v6; NULL if the host has no IPv6 loopback). */
static srv_t *srv_start_af(int mode, SSL_CTX *tls, bool v6)
{
    srv_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->mode = mode;
    s->tls = tls;
    s->lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t al;
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_loopback;
        al = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        al = sizeof(*a4);
    }
    if (bind(s->lfd, (struct sockaddr *)&ss, al) != 0) {
        assert_true(v6);
        close(s->lfd);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    assert_int_equal(pipe(s->step), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&ss, &al), 0);
    s->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    assert_int_equal(pthread_create(&s->acceptor, NULL, s_acceptor, s), 0);
    return s;
}

static srv_t *srv_start(int mode, SSL_CTX *tls)
{
    return srv_start_af(mode, tls, false);
}

static void srv_stop(srv_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->acceptor, NULL);
    for (int i = 0; i < atomic_load(&s->nhandlers); i++)
        pthread_join(s->handlers[i], NULL);
    close(s->lfd);
    close(s->step[0]);
    close(s->step[1]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ------------------------------------------------------------------ client harness */

typedef struct tctx {
    custos_loop_t *loop;
    custos_upstream_t *u;
    custos_upstream_req_t *req;
    custos_upstream_req_info_t info;
    custos_buf_t body;
    custos_timer_t guard, resume;
    int rc, status, nbody, nhead, ndone;
    bool hung;
    char xtest[16];
    /* behaviours */
    bool pause_each;    /* on_body returns 1, resumed by a timer */
    bool paused_now;    /* set while we hold the request paused */
    bool body_in_pause; /* on_body came while paused: a bug */
    int step_fd;        /* write a byte here on the first body piece (M_CHUNKED) */
    bool cancel_in_head;
    int abort_body; /* on_body returns this (negative) */
} tctx_t;

static int t_on_head(void *ud, int status, const custos_http_header_t *h, size_t n)
{
    tctx_t *t = ud;
    t->status = status;
    t->nhead++;
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == 6 && strncasecmp(h[i].name, "x-test", 6) == 0 && h[i].value_len < sizeof(t->xtest))
            memcpy(t->xtest, h[i].value, h[i].value_len);
    if (t->cancel_in_head) {
        custos_upstream_req_cancel(t->req);
        custos_loop_stop(t->loop);
    }
    return 0;
}

static void t_resume(custos_loop_t *loop, void *ud)
{
    (void)loop;
    tctx_t *t = ud;
    t->paused_now = false;
    custos_upstream_req_resume(t->req);
}

static int t_on_body(void *ud, const char *d, size_t len)
{
    tctx_t *t = ud;
    if (t->paused_now)
        t->body_in_pause = true;
    t->nbody++;
    assert_int_equal(custos_buf_append(&t->body, d, len), 0);
    if (t->step_fd >= 0 && t->nbody == 1)
        assert_int_equal(write(t->step_fd, "x", 1), 1);
    if (t->abort_body)
        return t->abort_body;
    if (t->pause_each) {
        t->paused_now = true;
        custos_timer_start(t->loop, &t->resume, 0);
        return 1;
    }
    return 0;
}

static void t_on_done(void *ud, int rc)
{
    tctx_t *t = ud;
    t->rc = rc;
    t->ndone++;
    custos_upstream_req_info(t->req, &t->info);
    custos_loop_stop(t->loop);
}

static void t_guard(custos_loop_t *loop, void *ud)
{
    tctx_t *t = ud;
    t->hung = true;
    custos_loop_stop(loop);
}

static const custos_upstream_cbs_t t_cbs = {t_on_head, t_on_body, t_on_done};

static void t_init(tctx_t *t, const custos_upstream_opts_t *opts)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(custos_loop_new(&t->loop), 0);
    assert_int_equal(custos_upstream_new(t->loop, opts, &t->u), 0);
    custos_buf_init(&t->body, 4 * BIG_LEN);
    custos_timer_init(&t->guard, t_guard, t);
    custos_timer_init(&t->resume, t_resume, t);
    t->step_fd = -1;
}

static void t_reset(tctx_t *t)
{
    custos_buf_reset(&t->body);
    t->rc = 1;
    t->status = 0;
    t->nbody = t->nhead = t->ndone = 0;
    memset(t->xtest, 0, sizeof(t->xtest));
    memset(&t->info, 0, sizeof(t->info));
}

static void t_dispose(tctx_t *t)
{
    custos_timer_stop(t->loop, &t->guard);
    custos_timer_stop(t->loop, &t->resume);
    custos_upstream_free(t->u);
    custos_loop_free(t->loop);
    custos_buf_dispose(&t->body);
}

/* Runs one request to completion (or until a callback stops the loop). */
static int t_run(tctx_t *t, const custos_upstream_target_t *tg, const char *method, const char *body,
                 const custos_upstream_timeouts_t *to)
{
    t_reset(t);
    static const custos_http_header_t hs[] = {
        {"Authorization", 13, "Bearer test", 11},
        {"Content-Type", 12, "application/json", 16},
        {"Connection", 10, "close", 5}, /* dropped by the client */
    };
    int rc = custos_upstream_request(t->u, tg, method, "/v1/chat/completions?x=1", hs, 3, body, body ? strlen(body) : 0,
                                     to, &t_cbs, t, &t->req);
    if (rc)
        return rc;
    custos_timer_start(t->loop, &t->guard, 15000);
    assert_int_equal(custos_loop_run(t->loop), 0);
    custos_timer_stop(t->loop, &t->guard);
    assert_false(t->hung);
    return 0;
}

static custos_upstream_target_t plain_target(uint16_t port)
{
    custos_upstream_target_t tg;
    custos_upstream_target_init(&tg);
    tg.name = "test";
    tg.host = "127.0.0.1";
    tg.port = port;
    return tg;
}

/* ------------------------------------------------------------------ tests */

static void test_content_length_and_headers(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CL, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_int_equal(t.ndone, 1);
    assert_int_equal(t.status, 200);
    assert_string_equal(t.xtest, "yes");
    assert_int_equal(custos_buf_size(&t.body), 5);
    assert_memory_equal(custos_buf_peek(&t.body), "hello", 5);
    assert_true(t.info.connected);
    assert_true(t.info.got_response_bytes);
    assert_false(t.info.reused);
    assert_int_equal(t.info.status, 200);

    char host[64];
    snprintf(host, sizeof(host), "Host: 127.0.0.1:%u\r\n", s->port);
    pthread_mutex_lock(&s->mu);
    assert_non_null(strstr(s->last_req, "POST /v1/chat/completions?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(s->last_req, host));
    assert_non_null(strstr(s->last_req, "Authorization: Bearer test\r\n"));
    assert_non_null(strstr(s->last_req, "Content-Length: 2\r\n"));
    assert_non_null(strstr(s->last_req, "Connection: keep-alive\r\n"));
    assert_null(strstr(s->last_req, "close"));
    pthread_mutex_unlock(&s->mu);

    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.requests_ok, 1);
    assert_int_equal(st.conns_opened, 1);
    assert_int_equal(st.conns_idle, 1);
    t_dispose(&t);
    srv_stop(s);
}

static void test_chunked_piecewise(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CHUNKED, NULL);
    tctx_t t;
    t_init(&t, NULL);
    t.step_fd = s->step[1];
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_true(t.nbody >= 2); /* the server sends the second chunk only after we got the first */
    assert_int_equal(custos_buf_size(&t.body), 11);
    assert_memory_equal(custos_buf_peek(&t.body), "hello world", 11);
    t_dispose(&t);
    srv_stop(s);
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CL, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
        assert_int_equal(t.rc, 0);
        assert_int_equal(t.info.reused, i > 0);
        assert_memory_equal(custos_buf_peek(&t.body), "hello", 5);
    }
    assert_int_equal(atomic_load(&s->accepts), 1);
    assert_int_equal(atomic_load(&s->requests), 3);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.conns_opened, 1);
    assert_int_equal(st.conns_reused, 2);
    t_dispose(&t);
    srv_stop(s);
}

static void test_connect_refused(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd); /* bound, never listened: connects are refused */
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(ntohs(a.sin_port));
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_EIO);
    assert_int_equal(t.ndone, 1);
    assert_false(t.info.connected);
    assert_false(t.info.got_response_bytes);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.err_io, 1);
    assert_int_equal(st.conns_open, 0);
    t_dispose(&t);
}

static void test_close_mid_body(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CLOSE_MID, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_ECLOSED);
    assert_true(t.info.got_response_bytes);
    assert_true(t.info.connected);
    assert_int_equal(t.status, 200);
    assert_int_equal(custos_buf_size(&t.body), 10);
    t_dispose(&t);
    srv_stop(s);
}

static void test_first_byte_timeout(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_SILENT, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    custos_upstream_timeouts_t to = {.first_byte_ms = 200};
    assert_int_equal(t_run(&t, &tg, "GET", NULL, &to), 0);
    assert_int_equal(t.rc, CUSTOS_ETIMEDOUT);
    assert_true(t.info.connected);
    assert_false(t.info.got_response_bytes);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.err_timeout, 1);
    assert_int_equal(st.conns_open, 0); /* a timed-out connection is never pooled */
    t_dispose(&t);
    srv_stop(s);
}

static void test_pause_resume(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_BIG, NULL);
    tctx_t t;
    t_init(&t, NULL);
    t.pause_each = true;
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_false(t.body_in_pause);
    assert_true(t.nbody > 1);
    assert_int_equal(custos_buf_size(&t.body), BIG_LEN);
    const unsigned char *b = (const unsigned char *)custos_buf_peek(&t.body);
    for (int i = 0; i < BIG_LEN; i++)
        if (b[i] != (unsigned char)(i % 251))
            fail_msg("body byte %d differs", i);
    t_dispose(&t);
    srv_stop(s);
}

static void test_malformed_status(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_BADSTATUS, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_EPROTO);
    assert_int_equal(t.nhead, 0);
    t_dispose(&t);
    srv_stop(s);
}

static void test_close_delimited(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CLOSE_DELIM, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_int_equal(custos_buf_size(&t.body), 6);
    assert_memory_equal(custos_buf_peek(&t.body), "abcdef", 6);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.conns_idle, 0);
    t_dispose(&t);
    srv_stop(s);
}

static void test_stale_pooled_retry(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_DROP_SECOND, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_int_equal(t.ndone, 1);
    assert_memory_equal(custos_buf_peek(&t.body), "ok", 2);
    assert_int_equal(atomic_load(&s->accepts), 2);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.stale_retries, 1);
    assert_int_equal(st.requests_ok, 2);
    t_dispose(&t);
    srv_stop(s);
}

static void test_header_too_big(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_HUGE_HEAD, NULL);
    tctx_t t;
    custos_upstream_opts_t o = {.max_header_bytes = 1024};
    t_init(&t, &o);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_ETOOBIG);
    t_dispose(&t);
    srv_stop(s);
}

static void test_interim_1xx_ignored(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_1XX, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_int_equal(t.nhead, 1);
    assert_int_equal(t.status, 200);
    assert_memory_equal(custos_buf_peek(&t.body), "ok", 2);
    t_dispose(&t);
    srv_stop(s);
}

static void test_cancel_in_callback(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CL, NULL);
    tctx_t t;
    t_init(&t, NULL);
    t.cancel_in_head = true;
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.nhead, 1);
    assert_int_equal(t.nbody, 0);
    assert_int_equal(t.ndone, 0);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.conns_open, 0);
    t_dispose(&t);
    srv_stop(s);
}

static void test_body_abort(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CL, NULL);
    tctx_t t;
    t_init(&t, NULL);
    t.abort_body = CUSTOS_EUNAVAIL;
    custos_upstream_target_t tg = plain_target(s->port);
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_EUNAVAIL);
    assert_int_equal(t.ndone, 1);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.aborted, 1);
    assert_int_equal(st.conns_open, 0); /* never pooled after an abort */
    t_dispose(&t);
    srv_stop(s);
}

static void test_dns_name_and_ipv6(void **state)
{
    (void)state;
    srv_t *s = srv_start(M_CL, NULL);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    tg.host = "localhost"; /* resolved through getaddrinfo (/etc/hosts) */
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_memory_equal(custos_buf_peek(&t.body), "hello", 5);
    t_dispose(&t); /* closes the pooled connection, so the server's handler ends */
    srv_stop(s);

    t_init(&t, NULL);
    s = srv_start_af(M_CL, NULL, true);
    if (s) {
        tg = plain_target(s->port);
        tg.host = "::1";
        assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
        assert_int_equal(t.rc, 0);
        assert_memory_equal(custos_buf_peek(&t.body), "hello", 5);
        char host[64];
        snprintf(host, sizeof(host), "Host: [::1]:%u\r\n", s->port);
        pthread_mutex_lock(&s->mu);
        assert_non_null(strstr(s->last_req, host));
        pthread_mutex_unlock(&s->mu);
    }
    t_dispose(&t);
    if (s)
        srv_stop(s);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(9);
    custos_upstream_req_t *r = NULL;
    custos_http_header_t bad = {"X-A", 3, "a\r\nHost: evil", 14};
    assert_int_equal(custos_upstream_request(t.u, &tg, "GET", "/", &bad, 1, NULL, 0, NULL, &t_cbs, &t, &r),
                     CUSTOS_EINVAL);
    assert_int_equal(custos_upstream_request(t.u, &tg, "GET", "/a b", NULL, 0, NULL, 0, NULL, &t_cbs, &t, &r),
                     CUSTOS_EINVAL);
    assert_int_equal(custos_upstream_request(t.u, &tg, "G ET", "/", NULL, 0, NULL, 0, NULL, &t_cbs, &t, &r),
                     CUSTOS_EINVAL);
    assert_null(r);
    t_dispose(&t);
}

/* ------------------------------------------------------------------ TLS */

static char g_dir[64];
static char g_cert[128], g_key[128];

static int tls_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/custos-upstream-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1",
             g_key, g_cert);
    return system(cmd) == 0 ? 0 : -1;
}

static int tls_teardown(void **state)
{
    (void)state;
    unlink(g_cert);
    unlink(g_key);
    rmdir(g_dir);
    return 0;
}

static SSL_CTX *server_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, g_cert, SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, g_key, SSL_FILETYPE_PEM), 1);
    return ctx;
}

static void test_tls_verified(void **state)
{
    (void)state;
    SSL_CTX *sctx = server_ctx();
    srv_t *s = srv_start(M_CL, sctx);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    tg.tls = true;
    tg.ca_file = g_cert;
    tg.sni_host = "localhost";
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_memory_equal(custos_buf_peek(&t.body), "hello", 5);
    /* Same pool: the connection is reused. */
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_true(t.info.reused);
    /* Verified against the IP SAN when no name is given. */
    tg.sni_host = NULL;
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_memory_equal(custos_buf_peek(&t.body), "hello", 5);
    assert_int_equal(atomic_load(&s->accepts), 2);
    pthread_mutex_lock(&s->mu);
    assert_non_null(strstr(s->last_req, "Host: 127.0.0.1:"));
    pthread_mutex_unlock(&s->mu);
    t_dispose(&t);
    srv_stop(s);
    SSL_CTX_free(sctx);
}

static void test_tls_untrusted(void **state)
{
    (void)state;
    SSL_CTX *sctx = server_ctx();
    srv_t *s = srv_start(M_CL, sctx);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    tg.tls = true;
    tg.sni_host = "localhost"; /* system CA store: our self-signed cert is not trusted */
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_ETLS);
    assert_true(t.info.connected);
    assert_false(t.info.got_response_bytes);
    /* Wrong name with the right CA fails as well. */
    tg.ca_file = g_cert;
    tg.sni_host = "other.example";
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, CUSTOS_ETLS);
    assert_int_equal(atomic_load(&s->requests), 0);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.err_tls, 2);
    t_dispose(&t);
    srv_stop(s);
    SSL_CTX_free(sctx);
}

static void test_tls_pause_resume_big(void **state)
{
    (void)state;
    SSL_CTX *sctx = server_ctx();
    srv_t *s = srv_start(M_BIG, sctx);
    tctx_t t;
    t_init(&t, NULL);
    t.pause_each = true;
    custos_upstream_target_t tg = plain_target(s->port);
    tg.tls = true;
    tg.ca_file = g_cert;
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_false(t.body_in_pause);
    assert_int_equal(custos_buf_size(&t.body), BIG_LEN);
    const unsigned char *b = (const unsigned char *)custos_buf_peek(&t.body);
    for (int i = 0; i < BIG_LEN; i++)
        if (b[i] != (unsigned char)(i % 251))
            fail_msg("body byte %d differs", i);
    t_dispose(&t);
    srv_stop(s);
    SSL_CTX_free(sctx);
}

static void test_tls_chunked(void **state)
{
    (void)state;
    SSL_CTX *sctx = server_ctx();
    srv_t *s = srv_start(M_CHUNKED, sctx);
    tctx_t t;
    t_init(&t, NULL);
    t.step_fd = s->step[1];
    custos_upstream_target_t tg = plain_target(s->port);
    tg.tls = true;
    tg.ca_file = g_cert;
    tg.sni_host = "localhost";
    assert_int_equal(t_run(&t, &tg, "GET", NULL, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_true(t.nbody >= 2);
    assert_memory_equal(custos_buf_peek(&t.body), "hello world", 11);
    t_dispose(&t);
    srv_stop(s);
    SSL_CTX_free(sctx);
}

/* The server drops the pooled connection: the request moves to a fresh one, which resumes the session. */
static void test_tls_stale_retry_resumes(void **state)
{
    (void)state;
    SSL_CTX *sctx = server_ctx();
    srv_t *s = srv_start(M_DROP_SECOND, sctx);
    tctx_t t;
    t_init(&t, NULL);
    custos_upstream_target_t tg = plain_target(s->port);
    tg.tls = true;
    tg.ca_file = g_cert;
    tg.sni_host = "localhost";
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_int_equal(t_run(&t, &tg, "POST", "{}", NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_memory_equal(custos_buf_peek(&t.body), "ok", 2);
    assert_int_equal(atomic_load(&s->accepts), 2);
    assert_int_equal(atomic_load(&s->resumed), 1);
    custos_upstream_stats_t st;
    custos_upstream_stats(t.u, &st);
    assert_int_equal(st.stale_retries, 1);
    t_dispose(&t);
    srv_stop(s);
    SSL_CTX_free(sctx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_content_length_and_headers),
        cmocka_unit_test(test_chunked_piecewise),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_close_mid_body),
        cmocka_unit_test(test_first_byte_timeout),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_malformed_status),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_stale_pooled_retry),
        cmocka_unit_test(test_header_too_big),
        cmocka_unit_test(test_interim_1xx_ignored),
        cmocka_unit_test(test_cancel_in_callback),
        cmocka_unit_test(test_body_abort),
        cmocka_unit_test(test_dns_name_and_ipv6),
        cmocka_unit_test(test_invalid_arguments),
    };
    const struct CMUnitTest tls[] = {
        cmocka_unit_test(test_tls_verified),
        cmocka_unit_test(test_tls_untrusted),
        cmocka_unit_test(test_tls_pause_resume_big),
        cmocka_unit_test(test_tls_chunked),
        cmocka_unit_test(test_tls_stale_retry_resumes),
    };
    int fails = cmocka_run_group_tests_name("upstream_client", plain, NULL, NULL);
    fails += cmocka_run_group_tests_name("upstream_client_tls", tls, tls_setup, tls_teardown);
    return fails;
}
