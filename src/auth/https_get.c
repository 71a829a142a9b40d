/* SPDX-License-Identifier: Apache-2.0
 * Blocking HTTPS request for the identity fetcher thread: DNS, non-blocking connect with a deadline, TLS with
 * peer and host-name verification, `Connection: close` request, strict llhttp response parse with a body cap. */
#include "auth/https_get.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "llhttp.h"
#include "util/err.h"
#include "util/time.h"

#define MAX_HOST 256
#define MAX_PATH 4096

typedef struct url_parts {
    bool tls;
    char host[MAX_HOST];
    char port[8];
    const char *path; /* into the URL; "" means "/" */
    bool literal;
} url_parts_t;

static bool is_loopback_host(const char *h)
{
    struct in_addr a4;
    if (strcasecmp(h, "localhost") == 0 || strcmp(h, "::1") == 0)
        return true;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return false;
}

static int parse_url(const char *url, url_parts_t *u)
{
    const char *p;
    memset(u, 0, sizeof(*u));
    if (!url)
        return CUSTOS_EINVAL;
    if (strncasecmp(url, "https://", 8) == 0) {
        u->tls = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        return CUSTOS_EINVAL;
    }
    size_t alen = strcspn(p, "/?#");
    if (p[alen] == '#' || strchr(p, '#') || memchr(p, '@', alen) || alen == 0)
        return CUSTOS_EINVAL;
    const char *hs = p, *he, *port = NULL;
    if (*p == '[') {
        he = memchr(p, ']', alen);
        if (!he)
            return CUSTOS_EINVAL;
        hs = p + 1;
        if (he + 1 < p + alen) {
            if (he[1] != ':')
                return CUSTOS_EINVAL;
            port = he + 2;
        }
        u->literal = true;
    } else {
        he = memchr(p, ':', alen);
        if (he)
            port = he + 1;
        else
            he = p + alen;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= MAX_HOST)
        return CUSTOS_EINVAL;
    memcpy(u->host, hs, hl);
    u->host[hl] = 0;
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)u->host[i];
        if (c <= 0x20 || c >= 0x7f)
            return CUSTOS_EINVAL;
    }
    if (port) {
        size_t pl = (size_t)(p + alen - port);
        if (pl == 0 || pl > 5 || strspn(port, "0123456789") < pl)
            return CUSTOS_EINVAL;
        memcpy(u->port, port, pl);
        u->port[pl] = 0;
        long pv = strtol(u->port, NULL, 10);
        if (pv < 1 || pv > 65535)
            return CUSTOS_EINVAL;
    } else {
        snprintf(u->port, sizeof(u->port), "%s", u->tls ? "443" : "80");
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET, u->host, &a6) == 1 || inet_pton(AF_INET6, u->host, &a6) == 1)
        u->literal = true;
    u->path = p + alen;
    if (strlen(u->path) > MAX_PATH)
        return CUSTOS_EINVAL;
    for (const char *q = u->path; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return CUSTOS_EINVAL;
    if (!u->tls && !is_loopback_host(u->host))
        return CUSTOS_EINVAL; /* plain HTTP only on loopback */
    return 0;
}

int custos_https_url_ok(const char *url)
{
    url_parts_t u;
    return parse_url(url, &u);
}

/* ---------- response parsing ---------- */

typedef struct resp_state {
    custos_buf_t *body;
    int status;
    bool done;
    bool too_big;
} resp_state_t;

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    resp_state_t *s = p->data;
    if (custos_buf_append(s->body, at, len) != 0) {
        s->too_big = true;
        return -1;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    resp_state_t *s = p->data;
    s->status = p->status_code;
    return 0;
}

static int on_complete(llhttp_t *p)
{
    resp_state_t *s = p->data;
    s->done = true;
    return HPE_PAUSED;
}

/* ---------- I/O with a deadline ---------- */

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = custos_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now > 60000 ? 60000 : deadline - now);
}

static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        int ms = remaining_ms(deadline);
        if (ms == 0)
            return CUSTOS_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = ev};
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return CUSTOS_EIO;
    }
}

static int connect_to(const url_parts_t *u, uint64_t deadline, int *fd_out, const char **why)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG}, *res = NULL;
    int rc = CUSTOS_EIO;
    if (u->literal)
        hints.ai_flags = AI_NUMERICHOST;
    if (getaddrinfo(u->host, u->port, &hints, &res) != 0 || !res) {
        *why = "DNS lookup failed";
        return CUSTOS_EIO;
    }
    *why = "connect failed";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            *fd_out = fd;
            rc = 0;
            break;
        }
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, deadline), err = 0;
            socklen_t el = sizeof(err);
            if (w == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0) {
                *fd_out = fd;
                rc = 0;
                break;
            }
            if (w == CUSTOS_ETIMEDOUT) {
                close(fd);
                rc = CUSTOS_ETIMEDOUT;
                *why = "connect timed out";
                break;
            }
        }
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

/* Writes all of data; returns 0 or error. */
static int io_write(int fd, SSL *ssl, const char *data, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n;
        short ev = POLLOUT;
        if (ssl) {
            size_t w = 0;
            if (SSL_write_ex(ssl, data, len, &w) == 1) {
                n = (ssize_t)w;
            } else {
                int e = SSL_get_error(ssl, 0);
                if (e == SSL_ERROR_WANT_READ)
                    ev = POLLIN;
                else if (e != SSL_ERROR_WANT_WRITE)
                    return CUSTOS_ETLS;
                n = -1;
                errno = EAGAIN;
            }
        } else {
            n = send(fd, data, len, MSG_NOSIGNAL);
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return CUSTOS_EIO;
        int w = wait_fd(fd, ev, deadline);
        if (w < 0)
            return w;
    }
    return 0;
}

/* Reads some bytes; returns count, 0 on EOF, or negative error. */
static long io_read(int fd, SSL *ssl, char *buf, size_t cap, uint64_t deadline)
{
    for (;;) {
        short ev = POLLIN;
        if (ssl) {
            size_t r = 0;
            if (SSL_read_ex(ssl, buf, cap, &r) == 1)
                return (long)r;
            int e = SSL_get_error(ssl, 0);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (e == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else if (e != SSL_ERROR_WANT_READ)
                return (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) ? 0 : CUSTOS_ETLS; /* EOF w/o notify */
        } else {
            ssize_t n = recv(fd, buf, cap, 0);
            if (n >= 0)
                return (long)n;
            if (errno != EAGAIN && errno != EINTR)
                return CUSTOS_EIO;
        }
        int w = wait_fd(fd, ev, deadline);
        if (w < 0)
            return w;
    }
}

static int tls_setup(const url_parts_t *u, const custos_https_opts_t *o, int fd, uint64_t deadline, SSL_CTX **ctx_out,
                     SSL **ssl_out, const char **why)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    *why = "TLS setup failed";
    if (!ctx)
        return CUSTOS_ENOMEM;
    *ctx_out = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o && o->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
            *why = "cannot load CA file";
            return CUSTOS_ETLS;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        *why = "cannot load the system CA store";
        return CUSTOS_ETLS;
    }
    if (!(ssl = SSL_new(ctx)))
        return CUSTOS_ENOMEM;
    *ssl_out = ssl;
    SSL_set_fd(ssl, fd);
    if (u->literal) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u->host) != 1)
            return CUSTOS_ETLS;
    } else {
        SSL_set_tlsext_host_name(ssl, u->host);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(ssl, u->host) != 1)
            return CUSTOS_ETLS;
    }
    for (;;) {
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        short ev;
        if (e == SSL_ERROR_WANT_READ)
            ev = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE)
            ev = POLLOUT;
        else {
            *why = SSL_get_verify_result(ssl) != X509_V_OK ? "certificate verification failed" : "TLS handshake failed";
            return CUSTOS_ETLS;
        }
        int w = wait_fd(fd, ev, deadline);
        if (w < 0) {
            *why = "TLS handshake timed out";
            return w;
        }
    }
    return 0;
}

int custos_https_request(const char *method, const char *url, const char *content_type, const char *body,
                         size_t body_len, const custos_https_opts_t *opts, int *status, custos_buf_t *resp,
                         const char **why)
{
    static const char *dummy;
    url_parts_t u;
    custos_buf_t req;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1, rc;
    llhttp_t parser;
    llhttp_settings_t settings;
    resp_state_t st = {.body = resp};
    char rbuf[16384];
    if (!why)
        why = &dummy;
    *status = 0;
    custos_buf_init(&req, 16384 + body_len);
    uint64_t deadline =
        custos_now_ms() + (opts && opts->timeout_ms ? opts->timeout_ms : CUSTOS_HTTPS_DEFAULT_TIMEOUT_MS);
    resp->max = opts && opts->max_bytes ? opts->max_bytes : CUSTOS_HTTPS_DEFAULT_MAX_BYTES;
    custos_buf_reset(resp);
    if (parse_url(url, &u) < 0) {
        *why = "bad URL";
        rc = CUSTOS_EINVAL;
        goto done;
    }
    bool v6 = strchr(u.host, ':') != NULL;
    bool dflt = strcmp(u.port, u.tls ? "443" : "80") == 0;
    rc = custos_buf_appendf(&req, "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n", method, u.path[0] ? u.path : "/",
                            v6 ? "[" : "", u.host, v6 ? "]" : "", dflt ? "" : ":", dflt ? "" : u.port);
    rc =
        rc ? rc
           : custos_buf_append_lit(&req, "User-Agent: custos/0.1\r\nAccept: application/json\r\nConnection: close\r\n");
    if (!rc && body)
        rc = custos_buf_appendf(&req, "Content-Type: %s\r\nContent-Length: %zu\r\n", content_type, body_len);
    rc = rc ? rc : custos_buf_append_lit(&req, "\r\n");
    if (!rc && body)
        rc = custos_buf_append(&req, body, body_len);
    if (rc) {
        *why = "out of memory";
        goto done;
    }
    if ((rc = connect_to(&u, deadline, &fd, why)) < 0)
        goto done;
    if (u.tls && (rc = tls_setup(&u, opts, fd, deadline, &ctx, &ssl, why)) < 0)
        goto done;
    if ((rc = io_write(fd, ssl, custos_buf_peek(&req), custos_buf_size(&req), deadline)) < 0) {
        *why = rc == CUSTOS_ETIMEDOUT ? "write timed out" : "write failed";
        goto done;
    }
    llhttp_settings_init(&settings);
    settings.on_body = on_body;
    settings.on_headers_complete = on_headers_complete;
    settings.on_message_complete = on_complete;
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    parser.data = &st;
    while (!st.done) {
        long n = io_read(fd, ssl, rbuf, sizeof(rbuf), deadline);
        if (n < 0) {
            rc = (int)n;
            *why = rc == CUSTOS_ETIMEDOUT ? "read timed out" : "read failed";
            goto done;
        }
        llhttp_errno_t e = n == 0 ? llhttp_finish(&parser) : llhttp_execute(&parser, rbuf, (size_t)n);
        if (st.too_big) {
            rc = CUSTOS_ETOOBIG;
            *why = "response too large";
            goto done;
        }
        if (e != HPE_OK && e != HPE_PAUSED) {
            rc = CUSTOS_EPROTO;
            *why = "bad HTTP response";
            goto done;
        }
        if (n == 0 && !st.done) {
            rc = CUSTOS_EPROTO;
            *why = "connection closed early";
            goto done;
        }
    }
    *status = st.status;
    *why = "ok";
    rc = 0;
done:
    if (ssl) {
        SSL_set_quiet_shutdown(ssl, 1);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    if (req.data)
        OPENSSL_cleanse(req.data, req.cap); /* the request may carry a client secret */
    custos_buf_dispose(&req);
    ERR_clear_error();
    return rc;
}
