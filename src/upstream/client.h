/* SPDX-License-Identifier: Apache-2.0
 * Upstream HTTP/1.1 (+TLS) client for model backends, driven by the worker's own epoll loop:
 * per-target keep-alive pools, cached DNS, OpenSSL 3 verification, streamed bodies with backpressure.
 *
 * Threading: a custos_upstream_t belongs to one loop. It is not thread-safe: every function here
 * must be called on that loop's thread. */
#ifndef CUSTOS_UPSTREAM_CLIENT_H
#define CUSTOS_UPSTREAM_CLIENT_H

#include "core/loop.h"
#include "net/http_server.h" /* custos_http_header_t only */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct custos_upstream custos_upstream_t;
typedef struct custos_upstream_req custos_upstream_req_t;

/* Client-wide options (defaults in brackets; a zero field takes its default). */
typedef struct custos_upstream_opts {
    uint32_t pool_max_idle;        /* idle keep-alive connections kept per target [16] */
    uint32_t pool_idle_timeout_ms; /* an idle pooled connection is closed after this [60000] */
    size_t max_header_bytes;       /* response status line + headers (also caps trailers) [65536] -> ETOOBIG */
    size_t max_headers;            /* response header count [256] -> ETOOBIG */
} custos_upstream_opts_t;

void custos_upstream_opts_default(custos_upstream_opts_t *o);

/* One backend. Initialise with custos_upstream_target_init() (it sets verify = true). Strings are copied
 * when first seen; the struct need not outlive the call. Connections are pooled per (name, host, port,
 * tls, sni_host, ca_file, verify): a connection is never reused for a target with a different TLS
 * configuration. The Host header is sni_host when set, else host (with the port unless 80/443). */
typedef struct custos_upstream_target {
    const char *name;         /* label for logs and pool key; NULL = "" */
    const char *host;         /* DNS name or literal IPv4/IPv6 address (no brackets) */
    uint16_t port;            /* 0 = 80, or 443 with tls */
    bool tls;                 /* HTTPS */
    const char *sni_host;     /* SNI and certificate name; NULL = host (no SNI sent when that is an IP) */
    const char *ca_file;      /* PEM trust anchors; NULL = system default store */
    bool verify;              /* verify the certificate chain and name. Set it: false disables verification */
    uint32_t max_connections; /* open connections (busy + idle) to this target from this worker; 0 = unlimited */
} custos_upstream_target_t;

/* Zeroes *t and sets verify = true (the safe default). */
void custos_upstream_target_init(custos_upstream_target_t *t);

/* Per-request timeouts in milliseconds; a zero field (or a NULL pointer) takes its default. */
typedef struct custos_upstream_timeouts {
    uint32_t connect_ms;    /* TCP connect + TLS handshake [5000] */
    uint32_t first_byte_ms; /* request fully written -> first response byte [120000] */
    uint32_t idle_ms;       /* longest gap between response bytes (and between request write progress) [60000];
                             * not counted while the request is paused by the caller */
} custos_upstream_timeouts_t;

typedef struct custos_upstream_cbs {
    /* Final (non-1xx) status line and headers arrived. Headers are valid only during the call.
     * Return 0 to continue; nonzero aborts the request: on_done then gets the return value if it is
     * negative, else CUSTOS_ECLOSED. */
    int (*on_head)(void *ud, int status, const custos_http_header_t *h, size_t n);
    /* A piece of the decoded body (chunked framing removed); may be NULL to discard the body.
     * Return 0 to continue, 1 to pause reading (resume with custos_upstream_req_resume), negative to
     * abort (on_done gets that value). */
    int (*on_body)(void *ud, const char *data, size_t len);
    /* Called exactly once unless the request was cancelled. rc: 0 = complete response received;
     * CUSTOS_ETIMEDOUT (connect/first-byte/idle), CUSTOS_EIO (connect refused, reset before any response
     * byte), CUSTOS_ETLS (handshake/verify failure), CUSTOS_EPROTO (malformed response), CUSTOS_ECLOSED
     * (upstream closed or reset after the request was sent, before the response was complete),
     * CUSTOS_ETOOBIG (response head too big), CUSTOS_ENOMEM, or a callback's abort value.
     * custos_upstream_req_info() may be called inside on_done; the request object is freed by the client
     * right after on_done returns: the caller must not touch it afterwards. */
    void (*on_done)(void *ud, int rc);
} custos_upstream_cbs_t;

/* Facts about a request, for retry decisions and metrics. */
typedef struct custos_upstream_req_info {
    bool connected;          /* the TCP connect succeeded (always true on a reused connection) */
    bool reused;             /* the request went over a pooled keep-alive connection */
    bool got_response_bytes; /* at least one response byte arrived: do not retry a non-idempotent call */
    int status;              /* final status code, 0 before the head */
    uint64_t connect_ns;     /* TCP + TLS handshake duration; 0 on a reused connection */
    uint64_t ttfb_ns;        /* custos_upstream_request() -> first response byte; 0 before it */
} custos_upstream_req_info_t;

/* Counters since custos_upstream_new (conns_open/conns_idle are current values). */
typedef struct custos_upstream_stats {
    uint64_t conns_opened; /* TCP connections started */
    uint64_t conns_reused; /* requests sent over a pooled connection */
    uint64_t conns_closed;
    uint64_t conns_open; /* open now (connecting, busy or idle) */
    uint64_t conns_idle; /* idle in pools now */
    uint64_t requests;   /* accepted by custos_upstream_request */
    uint64_t requests_ok;
    uint64_t stale_retries; /* requests moved to a fresh connection after a stale pooled one failed */
    uint64_t err_timeout, err_io, err_tls, err_proto, err_closed, err_toobig, err_other;
    uint64_t aborted; /* aborted by a callback's return value */
    uint64_t cancelled;
} custos_upstream_stats_t;

/* Creates the client for loop. opts may be NULL (defaults). Returns 0, CUSTOS_ENOMEM. */
int custos_upstream_new(custos_loop_t *loop, const custos_upstream_opts_t *opts, custos_upstream_t **out);
/* Cancels any request still running (no callbacks), closes pooled connections and frees u.
 * Not from inside one of u's callbacks. */
void custos_upstream_free(custos_upstream_t *u);

/* Starts a request. method and path_and_query must be non-empty tokens without CR, LF, NUL or spaces.
 * The client adds Host, Content-Length (when body_len > 0 or the method is POST, PUT or PATCH) and
 * "Connection: keep-alive"; caller headers named host, content-length, transfer-encoding, connection,
 * keep-alive, proxy-connection, te or upgrade are dropped. Header names and values must not contain
 * CR, LF or NUL. Everything is copied: the caller's buffers need not outlive the call.
 * DNS names are resolved with a blocking getaddrinfo() on the loop thread, once per target and again
 * at most every 60 s when a new connection is needed (a failed lookup is retried after 5 s at the
 * earliest; cached addresses are kept if a re-resolution fails). Known limitation: a slow resolver
 * stalls the worker's loop, so keep DNS fast and local (/etc/hosts, a local cache) or use IP literals.
 * Returns 0 and sets *out (valid until on_done returns or custos_upstream_req_cancel), or a negative
 * code, in which case no callback will run: CUSTOS_EINVAL (bad argument), CUSTOS_ENOTFOUND (name does
 * not resolve), CUSTOS_EUNAVAIL (target at max_connections with no idle connection), CUSTOS_ETLS (TLS
 * context setup, e.g. unreadable ca_file), CUSTOS_EIO, CUSTOS_ENOMEM. Callbacks never run inside this
 * call. The process must ignore SIGPIPE (OpenSSL writes TLS records with write(2)). */
int custos_upstream_request(custos_upstream_t *u, const custos_upstream_target_t *t, const char *method,
                            const char *path_and_query, const custos_http_header_t *headers, size_t nheaders,
                            const char *body, size_t body_len, const custos_upstream_timeouts_t *to,
                            const custos_upstream_cbs_t *cbs, void *ud, custos_upstream_req_t **out);

/* Stops reading the response (backpressure). The idle timeout is suspended while paused.
 * Safe inside callbacks. */
void custos_upstream_req_pause(custos_upstream_req_t *r);
/* Resumes reading; buffered body bytes are delivered from the loop soon after, never inside this call. */
void custos_upstream_req_resume(custos_upstream_req_t *r);
/* Abandons the request: no more callbacks after this, its connection is closed (never pooled), and the
 * object is freed by the client. Safe inside the request's own callbacks (including on_done, where it
 * does nothing). */
void custos_upstream_req_cancel(custos_upstream_req_t *r);
/* Fills *info. Valid while the request object is (see on_done). */
void custos_upstream_req_info(const custos_upstream_req_t *r, custos_upstream_req_info_t *info);

void custos_upstream_stats(const custos_upstream_t *u, custos_upstream_stats_t *out);

#endif
