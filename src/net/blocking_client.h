/* SPDX-License-Identifier: Apache-2.0
 * Blocking TCP/TLS client with timeouts, plus a one-request HTTP/1.1 exchange on it, for threads that may block
 * (audit sink threads). Supports keep-alive and caller-supplied headers; for one-shot identity fetches
 * (JWKS, OIDC) see auth/https_get.h. Never use it on an event-loop thread. */
#ifndef CUSTOS_NET_BLOCKING_CLIENT_H
#define CUSTOS_NET_BLOCKING_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "util/buf.h"

/* Largest response head (status line + headers) custos_bclient_http accepts. */
#define CUSTOS_BCLIENT_MAX_HEAD 16384

/* One connection. Owned by the caller; one thread at a time. */
typedef struct custos_bclient {
    int fd;         /* -1 when not connected */
    SSL *ssl;       /* NULL for plain TCP */
    int timeout_ms; /* applied to connect, and to each blocking read/write (SO_RCVTIMEO/SO_SNDTIMEO) */
} custos_bclient_t;

/* A parsed http:// or https:// URL (no userinfo, query or fragment). Caller-owned, fixed size. */
typedef struct custos_url {
    bool https;
    char host[256];  /* without brackets for IPv6 literals */
    char port[8];    /* decimal; 80/443 when absent */
    char path[2048]; /* starts with '/'; "/" when absent */
} custos_url_t;

/* Parses url into u. Returns 0 or CUSTOS_EINVAL (other scheme, too long, bad port, userinfo/query/fragment). */
int custos_url_parse(const char *url, custos_url_t *u);

/* New client TLS context (TLS >= 1.2, peer verification on) trusting ca_file (PEM bundle), or the system default
 * store when ca_file is NULL. Caller owns *out (SSL_CTX_free); it may be shared by threads. err (may be NULL) gets a
 * one-line reason naming the file. Returns 0, CUSTOS_ETLS or CUSTOS_ENOMEM. */
int custos_bclient_tls_ctx_new(const char *ca_file, SSL_CTX **out, char *err, size_t errlen);

/* Sets c to the closed state. */
void custos_bclient_init(custos_bclient_t *c);

/* Resolves host (getaddrinfo, blocking, not bounded by the timeout) and connects to the first address that accepts
 * within timeout_ms. With tls != NULL, runs the TLS handshake and verifies the peer certificate against host (DNS
 * name with SNI, or IP address). c must be closed. Returns 0, CUSTOS_ENOTFOUND (name did not resolve),
 * CUSTOS_ETIMEDOUT, CUSTOS_EIO (refused, unreachable) or CUSTOS_ETLS (handshake or verification failed); err (may
 * be NULL) says why. */
int custos_bclient_connect(custos_bclient_t *c, const char *host, const char *port, SSL_CTX *tls, int timeout_ms,
                           char *err, size_t errlen);

/* True when the idle connection c can be reused: connected, and nothing readable (for TLS: nothing but post-handshake
 * records such as session tickets, which it consumes). EOF, a reset or unsolicited data mean false. Never blocks. */
bool custos_bclient_alive(custos_bclient_t *c);

/* Writes all n bytes. Returns 0, CUSTOS_ETIMEDOUT, CUSTOS_EIO or CUSTOS_ETLS. The process must ignore SIGPIPE for
 * TLS (plain writes use MSG_NOSIGNAL). */
int custos_bclient_write_all(custos_bclient_t *c, const void *p, size_t n);

/* Reads up to cap bytes. Returns >0, 0 on EOF, CUSTOS_ETIMEDOUT, CUSTOS_EIO or CUSTOS_ETLS. */
ssize_t custos_bclient_read(custos_bclient_t *c, void *p, size_t cap);

/* Closes the connection (TLS close_notify best effort) and returns c to the closed state. Idempotent. */
void custos_bclient_close(custos_bclient_t *c);

/* One HTTP/1.1 request on a connected c: writes "METHOD path HTTP/1.1", Host (host_hdr), Content-Length (when body is
 * not NULL), the caller's extra header lines ("Name: value\r\n" each, or NULL; never logged) and the body, then reads
 * the whole response (Content-Length, chunked or until EOF; head at most CUSTOS_BCLIENT_MAX_HEAD bytes, body at most
 * body_max bytes) within deadline_ms in total. *status gets the status code; resp_body (may be NULL) gets the body
 * appended; *keep_alive (may be NULL) says whether c may be reused (otherwise the caller closes it).
 * Returns 0 for any complete response, whatever its status, or CUSTOS_ETIMEDOUT, CUSTOS_EIO, CUSTOS_ETLS,
 * CUSTOS_ECLOSED (EOF before any response byte: the request may be retried on a new connection), CUSTOS_EPROTO
 * (malformed response) or CUSTOS_ETOOBIG. After an error the caller closes c. */
int custos_bclient_http(custos_bclient_t *c, const char *method, const char *host_hdr, const char *path,
                        const char *extra_headers, const void *body, size_t body_len, size_t body_max, int deadline_ms,
                        int *status, custos_buf_t *resp_body, bool *keep_alive);

/* custos_bclient_http that also copies the value of the response header resp_header (case-insensitive name; the
 * last occurrence wins) into hval (hcap bytes, NUL-terminated, truncated to fit; "" when absent). resp_header NULL:
 * exactly custos_bclient_http. */
int custos_bclient_http_ex(custos_bclient_t *c, const char *method, const char *host_hdr, const char *path,
                           const char *extra_headers, const void *body, size_t body_len, size_t body_max,
                           int deadline_ms, int *status, custos_buf_t *resp_body, bool *keep_alive,
                           const char *resp_header, char *hval, size_t hcap);

#endif
