/* SPDX-License-Identifier: Apache-2.0
 * HTTP/1.1 server connections on a worker loop: accept, TLS, strict parsing with llhttp
 * (LLHTTP_STRICT_MODE) plus our own checks (obs-fold, limits), one request at a time per
 * connection (pipelined requests wait in the read buffer), whole and chunked responses. */
#include "net/http_server.h"
#include "net/peercert.h"
#include "net/sockio.h"
#include "net/tls.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/time.h"

#include "llhttp.h"

#include <errno.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384
#define MAX_LISTENERS 16
#define LOW_WATERMARK(l) ((l)->max_output_buffer / 4)

void custos_http_limits_default(custos_http_limits_t *l)
{
    l->max_header_bytes = 16384;
    l->max_headers = 100;
    l->max_body_bytes = 4u << 20;
    l->max_url_bytes = 8192;
    l->header_timeout_ms = 10000;
    l->body_timeout_ms = 30000;
    l->idle_timeout_ms = 60000;
    l->max_connections = 16384;
    l->max_output_buffer = 256u << 10;
}

typedef enum { TIMER_NONE, TIMER_IDLE, TIMER_HEADER, TIMER_BODY } timer_mode_t;

typedef struct hdr_off {
    uint32_t name_off, name_len, val_off, val_len;
} hdr_off_t;

typedef struct listener {
    custos_http_server_t *server;
    custos_io_t io;
    custos_tls_t *tls;
    bool shared;
} listener_t;

struct custos_http_conn {
    custos_http_server_t *server;
    custos_http_conn_t *prev, *next;
    custos_io_t io;
    custos_timer_t timer;
    timer_mode_t timer_mode;
    SSL *ssl;
    bool handshaking;
    bool tls_read_wants_write; /* last SSL_read asked for writability */
    bool tls_write_wants_read; /* last SSL_write asked for readability */
    bool read_eof;             /* peer closed its side */
    bool closing;              /* close once output is flushed */
    bool closed;
    bool in_process; /* inside process_input (no re-entry) */
    bool continue_scheduled;
    bool dead; /* freed soon (deferred) */

    llhttp_t parser;
    bool parser_paused;
    bool head_done;         /* headers of the current request complete */
    bool in_message;        /* first byte of a request seen */
    size_t head_fed;        /* bytes fed while the head was incomplete */
    int fold_state;         /* obs-fold detector: 0 in line, 1 after LF */
    int parse_error_status; /* set by callbacks: 4xx to send */
    const char *parse_error_code;
    const char *parse_error_msg;
    bool last_was_value;
    hdr_off_t *hoffs;
    size_t nhoffs, caphoffs;
    custos_buf_t hbuf; /* url + header names and values */
    uint32_t url_len;
    custos_buf_t body;
    bool expect_continue;

    custos_buf_t rbuf;
    custos_buf_t wbuf;

    /* current request */
    bool req_active; /* handed to the handler, response not finished */
    bool resp_started;
    bool resp_done;
    bool resp_chunked;
    bool resp_close_delimited;
    bool congested;
    custos_arena_t arena;
    custos_http_req_t req;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    bool is_tls;
    custos_peer_cert_t *client_cert; /* mutual TLS: set after the handshake, freed with the connection */
};

struct custos_http_server {
    custos_loop_t *loop;
    custos_http_limits_t limits;
    custos_http_handler_fn on_request;
    void *ud;
    listener_t listeners[MAX_LISTENERS];
    size_t nlisteners;
    custos_http_conn_t *conns;
    size_t nconns;
    bool draining;
    void (*drain_done)(void *);
    void *drain_arg;
};

static void conn_close(custos_http_conn_t *c);
static void conn_update_io(custos_http_conn_t *c);
static void conn_flush(custos_http_conn_t *c);
static void conn_process_input(custos_http_conn_t *c);
static void conn_request_finished(custos_http_conn_t *c);

/* ---------- small helpers ---------- */

static __thread uint64_t rng_s[2];

static uint64_t rng_next(void)
{
    if (rng_s[0] == 0 && rng_s[1] == 0) {
        if (getrandom(rng_s, sizeof(rng_s), 0) != sizeof(rng_s) || (rng_s[0] == 0 && rng_s[1] == 0)) {
            rng_s[0] = custos_now_ns() | 1;
            rng_s[1] = (uint64_t)(uintptr_t)&rng_s ^ 0x9e3779b97f4a7c15ull;
        }
    }
    /* xorshift128+ : request ids need uniqueness, not secrecy */
    uint64_t s1 = rng_s[0];
    const uint64_t s0 = rng_s[1];
    rng_s[0] = s0;
    s1 ^= s1 << 23;
    rng_s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return rng_s[1] + s0;
}

static void make_uuid(char out[37])
{
    uint64_t a = rng_next(), b = rng_next();
    unsigned char u[16];
    memcpy(u, &a, 8);
    memcpy(u + 8, &b, 8);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    static const char hx[] = "0123456789abcdef";
    int j = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hx[u[i] >> 4];
        out[j++] = hx[u[i] & 15];
    }
    out[j] = 0;
}

static __thread time_t date_sec;
static __thread char date_str[40];

static const char *http_date(void)
{
    time_t now = time(NULL);
    if (now != date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date_str, sizeof(date_str), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_sec = now;
    }
    return date_str;
}

const char *custos_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* ---------- low-level I/O (plain or TLS) ---------- */

static ssize_t conn_raw_read(custos_http_conn_t *c, char *p, size_t n)
{
    bool unclean;
    return custos_sock_read(c->io.fd, c->ssl, p, n, &c->tls_read_wants_write, &unclean);
}

static ssize_t conn_raw_write(custos_http_conn_t *c, const char *p, size_t n)
{
    return custos_sock_write(c->io.fd, c->ssl, p, n, &c->tls_write_wants_read);
}

/* ---------- timers ---------- */

static void conn_set_timer(custos_http_conn_t *c, timer_mode_t mode)
{
    custos_loop_t *loop = c->server->loop;
    const custos_http_limits_t *l = &c->server->limits;
    uint32_t ms = 0;
    switch (mode) {
    case TIMER_IDLE:
        ms = l->idle_timeout_ms;
        break;
    case TIMER_HEADER:
        ms = l->header_timeout_ms;
        break;
    case TIMER_BODY:
        ms = l->body_timeout_ms;
        break;
    case TIMER_NONE:
        break;
    }
    c->timer_mode = mode;
    if (mode == TIMER_NONE || ms == 0)
        custos_timer_stop(loop, &c->timer);
    else
        custos_timer_start(loop, &c->timer, ms);
}

/* ---------- response building ---------- */

static int append_head(custos_http_conn_t *c, int status, const custos_http_header_t *h, size_t n, const char *framing)
{
    custos_buf_t *w = &c->wbuf;
    custos_http_req_t *req = &c->req;
    int rc = custos_buf_reserve(w, 256 + n * 64);
    rc = rc ? rc : custos_buf_append_lit(w, "HTTP/1.1 ");
    rc = rc ? rc : custos_buf_append_u64(w, (unsigned)status);
    rc = rc ? rc : custos_buf_append_lit(w, " ");
    rc = rc ? rc : custos_buf_append_str(w, custos_http_status_text(status));
    rc = rc ? rc : custos_buf_append_lit(w, "\r\ndate: ");
    rc = rc ? rc : custos_buf_append_str(w, http_date());
    rc = rc ? rc : custos_buf_append_lit(w, "\r\n");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = custos_buf_append(w, h[i].name, h[i].name_len);
        if (!rc)
            rc = custos_buf_append_lit(w, ": ");
        if (!rc)
            rc = custos_buf_append(w, h[i].value, h[i].value_len);
        if (!rc)
            rc = custos_buf_append_lit(w, "\r\n");
    }
    if (!rc && req->request_id[0]) {
        rc = custos_buf_append_lit(w, "x-request-id: ");
        rc = rc ? rc : custos_buf_append(w, req->request_id, 36);
        rc = rc ? rc : custos_buf_append_lit(w, "\r\napim-request-id: ");
        rc = rc ? rc : custos_buf_append(w, req->request_id, 36);
        rc = rc ? rc : custos_buf_append_lit(w, "\r\n");
    }
    if (!rc && framing)
        rc = custos_buf_append_str(w, framing);
    if (!rc && c->closing)
        rc = custos_buf_append_str(w, "connection: close\r\n");
    if (!rc)
        rc = custos_buf_append_lit(w, "\r\n");
    return rc;
}

static bool req_valid(const custos_http_req_t *req)
{
    custos_http_conn_t *c = req->conn;
    return c && !c->dead && c->req_active && !c->resp_done;
}

static void decide_keepalive(custos_http_conn_t *c)
{
    if (!c->req.keep_alive || c->server->draining)
        c->closing = true;
}

int custos_http_respond(custos_http_req_t *req, int status, const custos_http_header_t *headers, size_t nheaders,
                        const char *body, size_t body_len)
{
    if (!req_valid(req) || req->conn->resp_started)
        return CUSTOS_ECLOSED;
    custos_http_conn_t *c = req->conn;
    decide_keepalive(c);
    char framing[64];
    {
        /* "content-length: N\r\n" without printf */
        char num[24], *e = num + sizeof(num), *q = e;
        size_t v = body_len;
        do {
            *--q = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        size_t nl = (size_t)(e - q);
        memcpy(framing, "content-length: ", 16);
        memcpy(framing + 16, q, nl);
        memcpy(framing + 16 + nl, "\r\n", 3);
    }
    int rc = append_head(c, status, headers, nheaders, framing);
    if (!rc && body_len)
        rc = custos_buf_append(&c->wbuf, body, body_len);
    c->resp_started = true;
    c->resp_done = true;
    if (rc)
        c->closing = true;
    conn_flush(c);
    conn_request_finished(c);
    return rc;
}

static int append_json_string(custos_buf_t *b, const char *s)
{
    int rc = custos_buf_append_lit(b, "\"");
    for (; !rc && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            rc = custos_buf_appendf(b, "\\%c", ch);
        else if (ch < 0x20)
            rc = custos_buf_appendf(b, "\\u%04x", ch);
        else
            rc = custos_buf_append(b, s, 1);
    }
    if (!rc)
        rc = custos_buf_append_lit(b, "\"");
    return rc;
}

int custos_http_error_body(custos_buf_t *b, int status, const char *code, const char *message, const char *type)
{
    if (!type)
        type = status >= 500 ? "server_error" : "invalid_request_error";
    int rc = custos_buf_append_str(b, "{\"error\":{\"code\":");
    if (!rc)
        rc = append_json_string(b, code);
    if (!rc)
        rc = custos_buf_append_str(b, ",\"message\":");
    if (!rc)
        rc = append_json_string(b, message);
    if (!rc)
        rc = custos_buf_append_str(b, ",\"type\":");
    if (!rc)
        rc = append_json_string(b, type);
    if (!rc)
        rc = custos_buf_append_str(b, ",\"param\":null}}");
    return rc;
}

int custos_http_respond_error(custos_http_req_t *req, int status, const char *code, const char *message,
                              const custos_http_header_t *headers, size_t nheaders)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_http_error_body(&b, status, code, message, NULL);
    custos_http_header_t hs[16];
    size_t n = 0;
    hs[n++] = (custos_http_header_t){"content-type", 12, "application/json", 16};
    for (size_t i = 0; i < nheaders && n < 16; i++)
        hs[n++] = headers[i];
    if (!rc)
        rc = custos_http_respond(req, status, hs, n, custos_buf_peek(&b), custos_buf_size(&b));
    else
        custos_http_abort(req);
    custos_buf_dispose(&b);
    return rc;
}

int custos_http_stream_start(custos_http_req_t *req, int status, const custos_http_header_t *headers, size_t nheaders)
{
    if (!req_valid(req) || req->conn->resp_started)
        return CUSTOS_ECLOSED;
    custos_http_conn_t *c = req->conn;
    decide_keepalive(c);
    const char *framing;
    if (req->http_minor >= 1) {
        c->resp_chunked = true;
        framing = "transfer-encoding: chunked\r\n";
    } else {
        c->resp_close_delimited = true;
        c->closing = true;
        framing = NULL;
    }
    c->resp_started = true;
    int rc = append_head(c, status, headers, nheaders, framing);
    conn_flush(c);
    return rc;
}

int custos_http_stream_write(custos_http_req_t *req, const char *data, size_t len)
{
    if (!req_valid(req) || !req->conn->resp_started)
        return CUSTOS_ECLOSED;
    if (len == 0)
        return 0;
    custos_http_conn_t *c = req->conn;
    int rc = 0;
    if (c->resp_chunked) {
        rc = custos_buf_append_hex(&c->wbuf, len);
        rc = rc ? rc : custos_buf_append_lit(&c->wbuf, "\r\n");
    }
    if (!rc)
        rc = custos_buf_append(&c->wbuf, data, len);
    if (!rc && c->resp_chunked)
        rc = custos_buf_append_lit(&c->wbuf, "\r\n");
    if (rc)
        return rc;
    conn_flush(c);
    return 0;
}

bool custos_http_stream_congested(const custos_http_req_t *req)
{
    custos_http_conn_t *c = req->conn;
    if (!c || c->dead)
        return false;
    if (custos_buf_size(&c->wbuf) > c->server->limits.max_output_buffer) {
        c->congested = true;
        return true;
    }
    return false;
}

int custos_http_stream_end(custos_http_req_t *req)
{
    if (!req_valid(req) || !req->conn->resp_started)
        return CUSTOS_ECLOSED;
    custos_http_conn_t *c = req->conn;
    int rc = 0;
    if (c->resp_chunked)
        rc = custos_buf_append_lit(&c->wbuf, "0\r\n\r\n");
    c->resp_done = true;
    if (rc)
        c->closing = true;
    conn_flush(c);
    conn_request_finished(c);
    return rc;
}

void custos_http_abort(custos_http_req_t *req)
{
    custos_http_conn_t *c = req->conn;
    if (!c || c->dead)
        return;
    /* the handler ended the request itself: no on_abort callback */
    c->req.on_abort = NULL;
    c->resp_done = true;
    conn_close(c);
}

/* Protocol error for a request the handler never saw: send the error and close. */
static void conn_protocol_error(custos_http_conn_t *c, int status, const char *code, const char *msg)
{
    if (c->dead)
        return;
    if (c->req_active) {
        conn_close(c);
        return;
    }
    c->closing = true;
    c->req_active = true;
    c->resp_started = false;
    c->resp_done = false;
    if (!c->req.request_id[0])
        make_uuid(c->req.request_id);
    c->req.conn = c;
    c->req.keep_alive = false;
    custos_http_respond_error(&c->req, status, code, msg, NULL, 0);
    c->read_eof = true; /* stop reading: the rest of the input is not trustworthy */
    conn_update_io(c);
}

/* ---------- llhttp callbacks ---------- */

static custos_http_conn_t *P(llhttp_t *p)
{
    return (custos_http_conn_t *)p->data;
}

static int fail_cb(custos_http_conn_t *c, int status, const char *code, const char *msg)
{
    if (!c->parse_error_status) {
        c->parse_error_status = status;
        c->parse_error_code = code;
        c->parse_error_msg = msg;
    }
    return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
    custos_http_conn_t *c = P(p);
    custos_buf_reset(&c->hbuf);
    c->nhoffs = 0;
    c->url_len = 0;
    c->last_was_value = false;
    c->head_done = false;
    c->expect_continue = false;
    if (c->body.cap > 65536)
        custos_buf_dispose(&c->body);
    custos_buf_reset(&c->body);
    c->body.max = c->server->limits.max_body_bytes;
    c->hbuf.max = c->server->limits.max_header_bytes;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    custos_http_conn_t *c = P(p);
    if (c->url_len + len > c->server->limits.max_url_bytes)
        return fail_cb(c, 414, "uri_too_long", "The request URL exceeds the configured limit.");
    if (custos_buf_append(&c->hbuf, at, len))
        return fail_cb(c, 431, "request_header_fields_too_large", "Request headers exceed the configured limit.");
    c->url_len += (uint32_t)len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    custos_http_conn_t *c = P(p);
    if (c->nhoffs == 0 || c->last_was_value) {
        if (c->nhoffs >= c->server->limits.max_headers)
            return fail_cb(c, 431, "request_header_fields_too_large", "Too many request headers.");
        if (c->nhoffs == c->caphoffs) {
            size_t nc = c->caphoffs ? c->caphoffs * 2 : 32;
            hdr_off_t *nh = realloc(c->hoffs, nc * sizeof(*nh));
            if (!nh)
                return fail_cb(c, 503, "server_busy", "Out of memory.");
            c->hoffs = nh;
            c->caphoffs = nc;
        }
        hdr_off_t *h = &c->hoffs[c->nhoffs++];
        h->name_off = (uint32_t)custos_buf_size(&c->hbuf);
        h->name_len = 0;
        h->val_off = 0;
        h->val_len = 0;
        c->last_was_value = false;
        /* separator so names are NUL-terminated later */
    }
    hdr_off_t *h = &c->hoffs[c->nhoffs - 1];
    if (custos_buf_append(&c->hbuf, at, len))
        return fail_cb(c, 431, "request_header_fields_too_large", "Request headers exceed the configured limit.");
    h->name_len += (uint32_t)len;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    custos_http_conn_t *c = P(p);
    if (custos_buf_append(&c->hbuf, "", 1)) /* NUL after the name */
        return fail_cb(c, 431, "request_header_fields_too_large", "Request headers exceed the configured limit.");
    hdr_off_t *h = &c->hoffs[c->nhoffs - 1];
    h->val_off = (uint32_t)custos_buf_size(&c->hbuf);
    c->last_was_value = true;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    custos_http_conn_t *c = P(p);
    hdr_off_t *h = &c->hoffs[c->nhoffs - 1];
    if (custos_buf_append(&c->hbuf, at, len))
        return fail_cb(c, 431, "request_header_fields_too_large", "Request headers exceed the configured limit.");
    h->val_len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    custos_http_conn_t *c = P(p);
    if (custos_buf_append(&c->hbuf, "", 1))
        return fail_cb(c, 431, "request_header_fields_too_large", "Request headers exceed the configured limit.");
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    custos_http_conn_t *c = P(p);
    if (custos_buf_append(&c->hbuf, "", 1))
        return fail_cb(c, 431, "request_header_fields_too_large", "Request headers exceed the configured limit.");
    return 0;
}

static void build_request(custos_http_conn_t *c)
{
    custos_http_req_t *r = &c->req;
    custos_arena_t *a = &c->arena;
    /* hbuf becomes stable here: no more appends until the next message */
    char *base = (char *)custos_buf_peek(&c->hbuf);
    r->conn = c;
    r->arena = a;
    r->method = llhttp_method_name((llhttp_method_t)c->parser.method);
    r->http_minor = c->parser.http_minor;
    r->tls = c->is_tls;
    r->peer = c->peer;
    r->peer_len = c->peer_len;
    r->client_addr = c->peer;
    r->client_cert = c->client_cert;
    char *url = base;
    char *q = memchr(url, '?', c->url_len);
    if (q) {
        *q = 0;
        r->path = url;
        r->path_len = (size_t)(q - url);
        r->query = q + 1;
        r->query_len = c->url_len - r->path_len - 1;
    } else {
        r->path = url;
        r->path_len = c->url_len;
        r->query = "";
        r->query_len = 0;
    }
    r->nheaders = c->nhoffs;
    r->headers = custos_arena_alloc(a, sizeof(custos_http_header_t) * (c->nhoffs ? c->nhoffs : 1));
    if (!r->headers) {
        r->nheaders = 0;
        return;
    }
    for (size_t i = 0; i < c->nhoffs; i++) {
        hdr_off_t *h = &c->hoffs[i];
        r->headers[i].name = base + h->name_off;
        r->headers[i].name_len = h->name_len;
        r->headers[i].value = base + h->val_off;
        r->headers[i].value_len = h->val_len;
    }
}

static int on_headers_complete(llhttp_t *p)
{
    custos_http_conn_t *c = P(p);
    c->head_done = true;
    if (p->upgrade && p->method != HTTP_CONNECT) {
        /* we do not support protocol upgrades (h2c, websocket): answer as a normal request */
        p->upgrade = 0;
    }
    if (p->method == HTTP_CONNECT)
        return fail_cb(c, 405, "method_not_allowed", "CONNECT is not supported.");
    build_request(c);
    c->req.keep_alive = llhttp_should_keep_alive(p);
    if (!c->req.headers)
        return fail_cb(c, 503, "server_busy", "Out of memory.");
    /* The Host header is mandatory in HTTP/1.1 (RFC 9112 3.2) and must be unique. */
    if (p->http_major != 1)
        return fail_cb(c, 505, "http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are supported.");
    size_t nhost = 0;
    for (size_t i = 0; i < c->req.nheaders; i++) {
        const custos_http_header_t *h = &c->req.headers[i];
        if (h->name_len == 4 && strncasecmp(h->name, "host", 4) == 0)
            nhost++;
        else if (h->name_len == 6 && strncasecmp(h->name, "expect", 6) == 0) {
            if (h->value_len == 12 && strncasecmp(h->value, "100-continue", 12) == 0)
                c->expect_continue = true;
            else
                return fail_cb(c, 417, "expectation_failed", "Only 'Expect: 100-continue' is supported.");
        }
    }
    if (nhost > 1 || (nhost == 0 && p->http_minor >= 1))
        return fail_cb(c, 400, "bad_request", "HTTP/1.1 requests need exactly one Host header.");
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->server->limits.max_body_bytes)
        return fail_cb(c, 413, "request_entity_too_large", "The request body exceeds the configured limit.");
    if (c->expect_continue && p->http_minor >= 1 && (p->flags & (F_CONTENT_LENGTH | F_CHUNKED))) {
        custos_buf_append_str(&c->wbuf, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    conn_set_timer(c, TIMER_BODY);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    custos_http_conn_t *c = P(p);
    int rc = custos_buf_append(&c->body, at, len);
    if (rc == CUSTOS_ETOOBIG)
        return fail_cb(c, 413, "request_entity_too_large", "The request body exceeds the configured limit.");
    if (rc)
        return fail_cb(c, 503, "server_busy", "Out of memory.");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    custos_http_conn_t *c = P(p);
    c->req.body = custos_buf_peek(&c->body);
    c->req.body_len = custos_buf_size(&c->body);
    return HPE_PAUSED;
}

static llhttp_settings_t g_settings;
static pthread_once_t g_settings_once = PTHREAD_ONCE_INIT;

static void init_settings(void)
{
    llhttp_settings_init(&g_settings);
    g_settings.on_message_begin = on_message_begin;
    g_settings.on_url = on_url;
    g_settings.on_url_complete = on_url_complete;
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_field_complete = on_header_field_complete;
    g_settings.on_header_value = on_header_value;
    g_settings.on_header_value_complete = on_header_value_complete;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;
}

/* ---------- connection state machine ---------- */

static void conn_free_deferred(custos_loop_t *loop, void *arg)
{
    custos_http_conn_t *c = arg;
    custos_buf_dispose(&c->rbuf);
    custos_buf_dispose(&c->wbuf);
    custos_buf_dispose(&c->hbuf);
    custos_buf_dispose(&c->body);
    custos_arena_dispose(&c->arena);
    free(c->hoffs);
    custos_peercert_free(c->client_cert);
    free(c);
}

static void server_maybe_drained(custos_http_server_t *s)
{
    if (s->draining && s->nconns == 0 && s->drain_done) {
        void (*done)(void *) = s->drain_done;
        s->drain_done = NULL;
        done(s->drain_arg);
    }
}

static void conn_close(custos_http_conn_t *c)
{
    if (c->dead)
        return;
    c->dead = true;
    custos_http_server_t *s = c->server;
    if (c->req_active && !c->resp_done && c->req.on_abort) {
        void (*ab)(custos_http_req_t *) = c->req.on_abort;
        c->req.on_abort = NULL;
        ab(&c->req);
    }
    c->req_active = false;
    custos_io_stop(s->loop, &c->io);
    custos_timer_stop(s->loop, &c->timer);
    if (c->ssl) {
        SSL_set_quiet_shutdown(c->ssl, 1);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->io.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    custos_loop_defer(s->loop, conn_free_deferred, c);
    server_maybe_drained(s);
}

static void conn_update_io(custos_http_conn_t *c)
{
    if (c->dead)
        return;
    uint32_t ev = 0;
    size_t rcap = c->server->limits.max_header_bytes + READ_CHUNK * 4;
    bool want_read = !c->read_eof && custos_buf_size(&c->rbuf) < rcap;
    bool want_write = custos_buf_size(&c->wbuf) > 0;
    if (c->handshaking) {
        want_read = !c->tls_read_wants_write;
        want_write = c->tls_read_wants_write;
    }
    if (want_read || c->tls_write_wants_read)
        ev |= EPOLLIN;
    if (want_write || c->tls_read_wants_write)
        ev |= EPOLLOUT;
    if (ev == 0 && !c->read_eof) {
        /* nothing to read or write right now, but notice the peer closing (level-triggered: only
         * while it has not been seen, or it would fire forever) */
        ev = EPOLLRDHUP;
    }
    if (custos_io_set(c->server->loop, &c->io, ev) < 0)
        conn_close(c);
}

static void conn_flush(custos_http_conn_t *c)
{
    while (!c->dead && custos_buf_size(&c->wbuf) > 0) {
        ssize_t w = conn_raw_write(c, custos_buf_peek(&c->wbuf), custos_buf_size(&c->wbuf));
        if (w == CUSTOS_EAGAIN)
            break;
        if (w < 0) {
            conn_close(c);
            return;
        }
        custos_buf_consume(&c->wbuf, (size_t)w);
    }
    if (c->dead)
        return;
    if (custos_buf_size(&c->wbuf) == 0) {
        if (c->wbuf.cap > 65536)
            custos_buf_dispose(&c->wbuf);
        if (c->closing && (!c->req_active || c->resp_done)) {
            if (c->ssl)
                SSL_shutdown(c->ssl);
            conn_close(c);
            return;
        }
    }
    if (c->congested && custos_buf_size(&c->wbuf) <= LOW_WATERMARK(&c->server->limits)) {
        c->congested = false;
        if (c->req_active && !c->resp_done && c->req.on_writable)
            c->req.on_writable(&c->req);
        if (c->dead)
            return;
    }
    conn_update_io(c);
}

static void conn_continue_deferred(custos_loop_t *loop, void *arg)
{
    custos_http_conn_t *c = arg;
    c->continue_scheduled = false;
    if (c->dead)
        return; /* conn_free_deferred runs after us: it was queued later */
    conn_process_input(c);
}

/* The response of the current request is complete (may still be buffered for sending). */
static void conn_request_finished(custos_http_conn_t *c)
{
    if (c->dead)
        return;
    c->req_active = false;
    if (c->closing) {
        conn_flush(c);
        return;
    }
    /* Reset per-request state after the handler's frame has returned: deferred. */
    if (!c->continue_scheduled) {
        c->continue_scheduled = true;
        if (custos_loop_defer(c->server->loop, conn_continue_deferred, c) < 0) {
            c->continue_scheduled = false;
            conn_close(c);
        }
    }
}

static void reset_request(custos_http_conn_t *c)
{
    custos_arena_reset(&c->arena);
    memset(&c->req, 0, sizeof(c->req));
    c->resp_started = c->resp_done = c->resp_chunked = c->resp_close_delimited = false;
    c->congested = false;
    c->in_message = false;
    c->head_fed = 0;
    c->fold_state = 0;
    c->head_done = false;
}

static void dispatch(custos_http_conn_t *c)
{
    custos_http_req_t *r = &c->req;
    make_uuid(r->request_id);
    c->req_active = true;
    conn_set_timer(c, TIMER_NONE);
    c->server->on_request(r, c->server->ud);
}

/* Scans head bytes for obs-fold (a header line starting with SP/HT), which we reject (RFC 9112 5.2). */
static bool head_has_obs_fold(custos_http_conn_t *c, const char *p, size_t n, bool *head_end)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (c->fold_state == 1) {
            if (ch == ' ' || ch == '\t')
                return true;
            if (ch == '\r' || ch == '\n') {
                *head_end = true;
                return false;
            }
            c->fold_state = 0;
        }
        if (ch == '\n')
            c->fold_state = 1;
    }
    return false;
}

static void conn_process_input(custos_http_conn_t *c)
{
    if (c->in_process || c->dead)
        return;
    c->in_process = true;
    while (!c->dead && !c->req_active) {
        if (c->parser_paused) {
            /* previous message done: reset for the next one */
            reset_request(c);
            llhttp_resume(&c->parser);
            c->parser_paused = false;
            if (c->closing)
                break;
        }
        size_t avail = custos_buf_size(&c->rbuf);
        if (avail == 0) {
            if (c->read_eof) {
                /* the client half-closed after its last request: close once the answers are out */
                c->closing = true;
                conn_flush(c);
                break;
            }
            if (c->timer_mode == TIMER_NONE)
                conn_set_timer(c, TIMER_IDLE);
            break;
        }
        const char *data = custos_buf_peek(&c->rbuf);
        if (!c->in_message) {
            c->in_message = true;
            c->req.start_ns = custos_now_ns();
            c->head_fed = 0;
            conn_set_timer(c, TIMER_HEADER);
        }
        if (!c->head_done) {
            bool head_end = false;
            if (head_has_obs_fold(c, data, avail, &head_end)) {
                conn_protocol_error(c, 400, "bad_request", "Obsolete header line folding is not allowed.");
                break;
            }
        }
        c->parse_error_status = 0;
        llhttp_errno_t e = llhttp_execute(&c->parser, data, avail);
        size_t used = avail;
        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
            c->parser_paused = true;
        }
        if (!c->head_done)
            c->head_fed += used;
        if (e != HPE_OK && e != HPE_PAUSED) {
            if (c->parse_error_status) {
                conn_protocol_error(c, c->parse_error_status, c->parse_error_code, c->parse_error_msg);
            } else if (e == HPE_PAUSED_UPGRADE) {
                conn_protocol_error(c, 400, "bad_request", "Protocol upgrades are not supported.");
            } else {
                CUSTOS_DEBUG("http: parse error %s", llhttp_errno_name(e));
                conn_protocol_error(c, 400, "bad_request", "Malformed HTTP request.");
            }
            break;
        }
        custos_buf_consume(&c->rbuf, used);
        if (!c->head_done && c->head_fed > c->server->limits.max_header_bytes) {
            conn_protocol_error(c, 431, "request_header_fields_too_large",
                                "Request headers exceed the configured limit.");
            break;
        }
        if (custos_buf_size(&c->wbuf) > 0)
            conn_flush(c); /* 100 Continue */
        if (c->dead)
            break;
        if (c->parser_paused) {
            dispatch(c);
            continue; /* if it answered synchronously, req_active is false again and we loop */
        }
        /* need more bytes */
        break;
    }
    c->in_process = false;
    if (!c->dead) {
        if (custos_buf_size(&c->rbuf) == 0 && c->rbuf.cap > 65536)
            custos_buf_dispose(&c->rbuf);
        conn_update_io(c);
    }
}

static void conn_on_readable(custos_http_conn_t *c)
{
    size_t rcap = c->server->limits.max_header_bytes + READ_CHUNK * 4;
    int rounds = 0;
    while (!c->dead && !c->read_eof && custos_buf_size(&c->rbuf) < rcap && rounds++ < 8) {
        if (custos_buf_reserve(&c->rbuf, READ_CHUNK) < 0)
            break;
        ssize_t r = conn_raw_read(c, c->rbuf.data + c->rbuf.len, READ_CHUNK);
        if (r == CUSTOS_EAGAIN)
            break;
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0) {
            c->read_eof = true;
            break;
        }
        c->rbuf.len += (size_t)r;
        c->rbuf.data[c->rbuf.len] = 0;
        if ((size_t)r < READ_CHUNK)
            break;
    }
    if (c->dead)
        return;
    if (c->read_eof && c->req_active && !c->resp_done) {
        /* Client closed while its request is handled: abort it (nobody will read the answer), as
         * nginx does with proxy_ignore_client_abort off. */
        conn_close(c);
        return;
    }
    conn_process_input(c);
    if (!c->dead && c->read_eof && !c->req_active && custos_buf_size(&c->wbuf) == 0) {
        /* half-read request at EOF: nothing more can come */
        conn_close(c);
    }
}

static void conn_do_handshake(custos_http_conn_t *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    c->tls_read_wants_write = false;
    if (r == 1) {
        c->handshaking = false;
        if (custos_peercert_from_ssl(c->ssl, &c->client_cert) < 0) {
            conn_close(c);
            return;
        }
        conn_on_readable(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        conn_update_io(c);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_read_wants_write = true;
        conn_update_io(c);
        return;
    }
    CUSTOS_DEBUG("tls: handshake failed: %s", ERR_reason_error_string(ERR_peek_last_error()));
    conn_close(c);
}

static void conn_on_io(custos_loop_t *loop, uint32_t events, void *ud)
{
    custos_http_conn_t *c = ud;
    if (c->handshaking) {
        conn_do_handshake(c);
        return;
    }
    if (events & (EPOLLERR)) {
        conn_close(c);
        return;
    }
    if (events & EPOLLOUT || (c->tls_write_wants_read && (events & EPOLLIN)))
        conn_flush(c);
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP) || c->tls_read_wants_write)
        conn_on_readable(c);
}

static void conn_on_timer(custos_loop_t *loop, void *ud)
{
    custos_http_conn_t *c = ud;
    timer_mode_t m = c->timer_mode;
    c->timer_mode = TIMER_NONE;
    if (m == TIMER_IDLE || c->handshaking || (m == TIMER_HEADER && !c->in_message)) {
        conn_close(c);
        return;
    }
    if (m == TIMER_HEADER || m == TIMER_BODY)
        conn_protocol_error(c, 408, "request_timeout", "The request was not received in time.");
}

static int accept_one(custos_http_server_t *s, custos_tls_t *tls, int fd, const struct sockaddr_storage *ss,
                      socklen_t sl)
{
    if (s->nconns >= s->limits.max_connections || s->draining) {
        close(fd);
        return CUSTOS_EUNAVAIL;
    }
    custos_http_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return CUSTOS_ENOMEM;
    }
    c->server = s;
    c->peer = *ss;
    c->peer_len = sl;
    if (ss->ss_family == AF_INET || ss->ss_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    custos_io_init(&c->io, fd, conn_on_io, c);
    custos_timer_init(&c->timer, conn_on_timer, c);
    custos_buf_init(&c->rbuf, 0);
    custos_buf_init(&c->wbuf, 0);
    custos_buf_init(&c->hbuf, s->limits.max_header_bytes);
    custos_buf_init(&c->body, s->limits.max_body_bytes);
    custos_arena_init(&c->arena);
    llhttp_init(&c->parser, HTTP_REQUEST, &g_settings);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (tls) {
        c->ssl = custos_tls_new_ssl(tls, fd);
        if (!c->ssl) {
            conn_close(c);
            return CUSTOS_ETLS;
        }
        c->is_tls = true;
        c->handshaking = true;
        conn_set_timer(c, TIMER_HEADER);
    } else {
        conn_set_timer(c, TIMER_HEADER);
    }
    conn_update_io(c);
    return 0;
}

int custos_http_server_adopt(custos_http_server_t *s, int fd, custos_tls_t *tls, const struct sockaddr *peer,
                             socklen_t peer_len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (peer && peer_len <= sizeof(ss))
        memcpy(&ss, peer, peer_len);
    else
        peer_len = 0;
    return accept_one(s, tls, fd, &ss, peer_len);
}

static void listener_on_io(custos_loop_t *loop, uint32_t events, void *ud)
{
    listener_t *l = ud;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->io.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                CUSTOS_WARN("accept: out of file descriptors");
            break;
        }
        accept_one(l->server, l->tls, fd, &ss, sl);
    }
}

/* ---------- server ---------- */

int custos_http_server_new(custos_loop_t *loop, const custos_http_server_opts_t *opts, custos_http_server_t **out)
{
    pthread_once(&g_settings_once, init_settings);
    custos_http_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return CUSTOS_ENOMEM;
    s->loop = loop;
    s->limits = opts->limits;
    s->on_request = opts->on_request;
    s->ud = opts->ud;
    *out = s;
    return 0;
}

int custos_http_server_listen(custos_http_server_t *s, int fd, custos_tls_t *tls, bool shared)
{
    if (s->nlisteners >= MAX_LISTENERS)
        return CUSTOS_ETOOBIG;
    listener_t *l = &s->listeners[s->nlisteners];
    l->server = s;
    l->tls = tls;
    l->shared = shared;
    custos_io_init(&l->io, fd, listener_on_io, l);
    int rc = custos_io_set(s->loop, &l->io, EPOLLIN | (shared ? EPOLLEXCLUSIVE : 0));
    if (rc)
        return rc;
    s->nlisteners++;
    return 0;
}

void custos_http_server_set_limits(custos_http_server_t *s, const custos_http_limits_t *l)
{
    s->limits = *l;
}

size_t custos_http_server_conn_count(const custos_http_server_t *s)
{
    return s->nconns;
}

void custos_http_server_drain(custos_http_server_t *s, void (*done)(void *), void *arg)
{
    s->draining = true;
    s->drain_done = done;
    s->drain_arg = arg;
    for (size_t i = 0; i < s->nlisteners; i++) {
        custos_io_stop(s->loop, &s->listeners[i].io);
        /* Stop listening now (the fd stays open, its owner closes it): new connections are refused at
         * once instead of waiting in the backlog until we exit. */
        shutdown(s->listeners[i].io.fd, SHUT_RDWR);
    }
    custos_http_conn_t *c = s->conns;
    while (c) {
        custos_http_conn_t *n = c->next;
        if (!c->req_active && !c->in_message && custos_buf_size(&c->wbuf) == 0)
            conn_close(c);
        else
            c->closing = true;
        c = n;
    }
    server_maybe_drained(s);
}

void custos_http_server_free(custos_http_server_t *s)
{
    if (!s)
        return;
    s->drain_done = NULL;
    while (s->conns)
        conn_close(s->conns);
    for (size_t i = 0; i < s->nlisteners; i++)
        custos_io_stop(s->loop, &s->listeners[i].io);
    free(s);
}

/* ---------- request accessors ---------- */

const char *custos_http_req_header(const custos_http_req_t *req, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const custos_http_header_t *h = &req->headers[i];
        if (h->name_len == nl && strncasecmp(h->name, name, nl) == 0) {
            if (len)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

static char *pct_decode(custos_arena_t *a, const char *s, size_t n)
{
    char *o = custos_arena_alloc(a, n + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && custos_hex_value(s[i + 1]) >= 0 && custos_hex_value(s[i + 2]) >= 0) {
            o[j++] = (char)(custos_hex_value(s[i + 1]) * 16 + custos_hex_value(s[i + 2]));
            i += 2;
        } else if (s[i] == '+') {
            o[j++] = ' ';
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = 0;
    return o;
}

const char *custos_http_req_query(custos_http_req_t *req, const char *name)
{
    size_t nl = strlen(name);
    const char *p = req->query, *end = req->query + req->query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        const char *kend = eq ? eq : seg_end;
        if ((size_t)(kend - p) == nl && memcmp(p, name, nl) == 0) {
            const char *v = eq ? eq + 1 : seg_end;
            return pct_decode(req->arena, v, (size_t)(seg_end - v));
        }
        p = seg_end + 1;
    }
    return NULL;
}
