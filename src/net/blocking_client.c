/* SPDX-License-Identifier: Apache-2.0
 * Blocking TCP/TLS client with timeouts and a minimal HTTP/1.1 exchange (responses parsed by llhttp), for the audit
 * sink threads. */
#include "net/blocking_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "llhttp.h"
#include "util/err.h"
#include "util/time.h"

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a ? a : "", b ? b : "");
}

static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

int custos_url_parse(const char *url, custos_url_t *u)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (!url)
        return CUSTOS_EINVAL;
    if (strncasecmp(url, "https://", 8) == 0) {
        u->https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else {
        return CUSTOS_EINVAL;
    }
    if (strpbrk(url, "?#@ \t\r\n"))
        return CUSTOS_EINVAL;
    const char *auth_end = p + strcspn(p, "/");
    const char *hs = p, *he, *ps = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(auth_end - p));
        if (!rb)
            return CUSTOS_EINVAL;
        hs = p + 1;
        he = rb;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':')
                return CUSTOS_EINVAL;
            ps = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        he = colon ? colon : auth_end;
        if (colon)
            ps = colon + 1;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof(u->host))
        return CUSTOS_EINVAL;
    memcpy(u->host, hs, hl);
    if (ps) {
        size_t pl = (size_t)(auth_end - ps);
        if (pl == 0 || pl > 5 || strspn(ps, "0123456789") < pl)
            return CUSTOS_EINVAL;
        memcpy(u->port, ps, pl);
        long v = strtol(u->port, NULL, 10);
        if (v < 1 || v > 65535)
            return CUSTOS_EINVAL;
    } else {
        snprintf(u->port, sizeof(u->port), "%s", u->https ? "443" : "80");
    }
    size_t pathl = strlen(auth_end);
    if (pathl >= sizeof(u->path))
        return CUSTOS_EINVAL;
    if (pathl == 0)
        strcpy(u->path, "/");
    else
        memcpy(u->path, auth_end, pathl + 1);
    return 0;
}

int custos_bclient_tls_ctx_new(const char *ca_file, SSL_CTX **out, char *err, size_t errlen)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        set_err(err, errlen, "TLS client context: %s%s", ossl_reason(), NULL);
        return CUSTOS_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        set_err(err, errlen, "CA bundle %s: %s", ca_file ? ca_file : "(system default)", ossl_reason());
        SSL_CTX_free(ctx);
        return CUSTOS_ETLS;
    }
    *out = ctx;
    return 0;
}

void custos_bclient_init(custos_bclient_t *c)
{
    c->fd = -1;
    c->ssl = NULL;
    c->timeout_ms = 10000;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return CUSTOS_EIO;
    int rc = 0, saved;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            rc = CUSTOS_EIO;
            goto fail;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int pr;
        do
            pr = poll(&pfd, 1, timeout_ms);
        while (pr < 0 && errno == EINTR);
        if (pr == 0) {
            rc = CUSTOS_ETIMEDOUT;
            goto fail;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (pr < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            if (soerr)
                errno = soerr;
            rc = CUSTOS_EIO;
            goto fail;
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        rc = CUSTOS_EIO;
        goto fail;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *fd_out = fd;
    return 0;
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int custos_bclient_connect(custos_bclient_t *c, const char *host, const char *port, SSL_CTX *tls, int timeout_ms,
                           char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc;
    custos_bclient_close(c);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    int gr = getaddrinfo(host, port, &hints, &res);
    if (gr != 0) {
        set_err(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gr));
        return CUSTOS_ENOTFOUND;
    }
    rc = CUSTOS_EIO;
    int saved = 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(ai, c->timeout_ms, &c->fd);
        if (rc == 0)
            break;
        saved = errno;
    }
    freeaddrinfo(res);
    if (rc != 0) {
        char where[300];
        snprintf(where, sizeof(where), "%s port %s", host, port);
        set_err(err, errlen, "connect to %s: %s", where, rc == CUSTOS_ETIMEDOUT ? "timed out" : strerror(saved));
        return rc;
    }
    if (!tls)
        return 0;
    ERR_clear_error();
    c->ssl = SSL_new(tls);
    if (!c->ssl) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    SSL_set_fd(c->ssl, c->fd);
    unsigned char ipbuf[16];
    if (inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1) {
            rc = CUSTOS_ETLS;
            goto fail;
        }
    } else if (SSL_set_tlsext_host_name(c->ssl, host) != 1 || SSL_set1_host(c->ssl, host) != 1) {
        rc = CUSTOS_ETLS;
        goto fail;
    }
    if (SSL_connect(c->ssl) != 1) {
        long vr = SSL_get_verify_result(c->ssl);
        if (vr != X509_V_OK)
            set_err(err, errlen, "TLS to %s: certificate verification failed: %s", host,
                    X509_verify_cert_error_string(vr));
        else
            set_err(err, errlen, "TLS handshake with %s failed: %s", host, ossl_reason());
        custos_bclient_close(c);
        return CUSTOS_ETLS;
    }
    return 0;
fail:
    set_err(err, errlen, "TLS setup for %s: %s", host, ossl_reason());
    custos_bclient_close(c);
    return rc;
}

bool custos_bclient_alive(custos_bclient_t *c)
{
    if (c->fd < 0)
        return false;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, 0);
    if (pr == 0)
        return true;
    if (pr < 0 || (pfd.revents & (POLLERR | POLLNVAL)))
        return false;
    if (!c->ssl)
        return false; /* readable while idle: EOF, reset, or unsolicited bytes: not reusable in any case */
    /* TLS: what is pending may be only post-handshake messages (TLS 1.3 session tickets), or the peer's close_notify
     * and EOF. Process it without blocking: alive when only non-application records were there. */
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return false;
    char b[256];
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(c->ssl, b, sizeof(b), &got);
    bool alive = r != 1 && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ;
    fcntl(c->fd, F_SETFL, fl);
    ERR_clear_error();
    return alive;
}

static int ssl_fail(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    if ((e == SSL_ERROR_SYSCALL || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
        (errno == EAGAIN || errno == EWOULDBLOCK))
        return CUSTOS_ETIMEDOUT;
    return e == SSL_ERROR_SYSCALL ? CUSTOS_EIO : CUSTOS_ETLS;
}

int custos_bclient_write_all(custos_bclient_t *c, const void *p, size_t n)
{
    const char *s = p;
    if (c->fd < 0)
        return CUSTOS_EIO;
    while (n > 0) {
        if (c->ssl) {
            size_t w = 0;
            ERR_clear_error();
            errno = 0;
            int r = SSL_write_ex(c->ssl, s, n, &w);
            if (r != 1)
                return ssl_fail(c->ssl, r);
            s += w;
            n -= w;
        } else {
            ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return (errno == EAGAIN || errno == EWOULDBLOCK) ? CUSTOS_ETIMEDOUT : CUSTOS_EIO;
            }
            s += w;
            n -= (size_t)w;
        }
    }
    return 0;
}

ssize_t custos_bclient_read(custos_bclient_t *c, void *p, size_t cap)
{
    if (c->fd < 0)
        return CUSTOS_EIO;
    if (c->ssl) {
        size_t got = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(c->ssl, p, cap, &got);
        if (r == 1)
            return (ssize_t)got;
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e == SSL_ERROR_SYSCALL && errno == 0)
            return 0; /* EOF without close_notify */
        return ssl_fail(c->ssl, r);
    }
    for (;;) {
        ssize_t r = recv(c->fd, p, cap, 0);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? CUSTOS_ETIMEDOUT : CUSTOS_EIO;
    }
}

void custos_bclient_close(custos_bclient_t *c)
{
    if (c->ssl) {
        /* best effort close_notify without waiting for the peer's; keep it short */
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    ERR_clear_error();
}

/* HTTP response parsing */
typedef struct resp_ctx {
    custos_buf_t *body;
    size_t body_max;
    size_t body_len;
    bool done;
    bool too_big;
    const char *want; /* response header to capture (custos_bclient_http_ex), or NULL */
    char field[64];   /* the current header name (longer names never match) */
    size_t field_len;
    bool field_long, in_value, match;
    char *hval; /* captured value, hcap bytes */
    size_t hcap, hlen;
} resp_ctx_t;

static int on_hfield(llhttp_t *p, const char *at, size_t len)
{
    resp_ctx_t *rc = p->data;
    if (rc->in_value) { /* a new header starts */
        rc->in_value = false;
        rc->field_len = 0;
        rc->field_long = false;
    }
    if (rc->field_len + len >= sizeof(rc->field))
        rc->field_long = true;
    else {
        memcpy(rc->field + rc->field_len, at, len);
        rc->field_len += len;
    }
    return 0;
}

static int on_hvalue(llhttp_t *p, const char *at, size_t len)
{
    resp_ctx_t *rc = p->data;
    if (!rc->in_value) {
        rc->in_value = true;
        rc->match = !rc->field_long && rc->want && strlen(rc->want) == rc->field_len &&
                    strncasecmp(rc->field, rc->want, rc->field_len) == 0;
        if (rc->match)
            rc->hlen = 0; /* the last occurrence wins */
    }
    if (rc->match && rc->hval) {
        size_t n = rc->hlen + len < rc->hcap ? len : rc->hcap - 1 - rc->hlen;
        memcpy(rc->hval + rc->hlen, at, n);
        rc->hlen += n;
        rc->hval[rc->hlen] = 0;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    resp_ctx_t *rc = p->data;
    if (rc->body_len + len > rc->body_max) {
        rc->too_big = true;
        return -1;
    }
    rc->body_len += len;
    if (rc->body && custos_buf_append(rc->body, at, len) != 0) {
        rc->too_big = true;
        return -1;
    }
    return 0;
}

static int on_complete(llhttp_t *p)
{
    resp_ctx_t *rc = p->data;
    rc->done = true;
    return HPE_PAUSED;
}

int custos_bclient_http(custos_bclient_t *c, const char *method, const char *host_hdr, const char *path,
                        const char *extra_headers, const void *body, size_t body_len, size_t body_max, int deadline_ms,
                        int *status, custos_buf_t *resp_body, bool *keep_alive)
{
    return custos_bclient_http_ex(c, method, host_hdr, path, extra_headers, body, body_len, body_max, deadline_ms,
                                  status, resp_body, keep_alive, NULL, NULL, 0);
}

int custos_bclient_http_ex(custos_bclient_t *c, const char *method, const char *host_hdr, const char *path,
                           const char *extra_headers, const void *body, size_t body_len, size_t body_max,
                           int deadline_ms, int *status, custos_buf_t *resp_body, bool *keep_alive,
                           const char *resp_header, char *hval, size_t hcap)
{
    if (hval && hcap)
        hval[0] = 0;
    custos_buf_t head;
    int rc;
    uint64_t deadline = custos_now_ms() + (uint64_t)(deadline_ms > 0 ? deadline_ms : 10000);
    custos_buf_init(&head, 64 * 1024);
    *status = 0;
    if (keep_alive)
        *keep_alive = false;
    rc = custos_buf_appendf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: custos\r\n", method, path, host_hdr);
    if (rc == 0 && body)
        rc = custos_buf_appendf(&head, "Content-Length: %zu\r\n", body_len);
    if (rc == 0 && extra_headers)
        rc = custos_buf_append_str(&head, extra_headers);
    if (rc == 0)
        rc = custos_buf_append_lit(&head, "\r\n");
    if (rc != 0)
        goto out;
    rc = custos_bclient_write_all(c, custos_buf_peek(&head), custos_buf_size(&head));
    if (rc == 0 && body && body_len)
        rc = custos_bclient_write_all(c, body, body_len);
    if (rc != 0)
        goto out;

    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_body = on_body;
    st.on_message_complete = on_complete;
    if (resp_header && hval && hcap) {
        st.on_header_field = on_hfield;
        st.on_header_value = on_hvalue;
    }
    llhttp_t parser;
    llhttp_init(&parser, HTTP_RESPONSE, &st);
    resp_ctx_t ctx = {.body = resp_body, .body_max = body_max, .want = resp_header, .hval = hval, .hcap = hcap};
    parser.data = &ctx;
    size_t total = 0;
    char buf[8192];
    for (;;) {
        if (custos_now_ms() > deadline) {
            rc = CUSTOS_ETIMEDOUT;
            goto out;
        }
        ssize_t r = custos_bclient_read(c, buf, sizeof(buf));
        if (r < 0) {
            rc = (int)r;
            goto out;
        }
        if (r == 0) {
            if (total == 0) {
                rc = CUSTOS_ECLOSED;
                goto out;
            }
            if (llhttp_finish(&parser) != HPE_OK || !ctx.done) {
                rc = CUSTOS_EPROTO;
                goto out;
            }
            break;
        }
        total += (size_t)r;
        llhttp_errno_t e = llhttp_execute(&parser, buf, (size_t)r);
        if (ctx.too_big) {
            rc = CUSTOS_ETOOBIG;
            goto out;
        }
        if (e == HPE_PAUSED && ctx.done)
            break;
        if (e != HPE_OK) {
            rc = CUSTOS_EPROTO;
            goto out;
        }
        if (parser.status_code == 0 && total > CUSTOS_BCLIENT_MAX_HEAD) {
            rc = CUSTOS_ETOOBIG;
            goto out;
        }
    }
    *status = parser.status_code;
    if (keep_alive)
        *keep_alive = llhttp_should_keep_alive(&parser) != 0;
    rc = 0;
out:
    custos_buf_dispose(&head);
    return rc;
}
