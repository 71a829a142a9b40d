/* SPDX-License-Identifier: Apache-2.0
 * Upstream HTTP/1.1 client: connections, TLS, request writing, response parsing and keep-alive pools.
 *
 * Why not libcurl: this client runs directly on our per-worker epoll loop (core/loop.h), shares the
 * strict llhttp parser with the server side (response mode), and gives exact backpressure for SSE
 * streams (we stop reading the socket the moment the downstream client is congested). */
#include "upstream/client.h"
#include "net/sockio.h"

#include "llhttp.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define DNS_TTL_MS 60000u
#define DNS_NEG_TTL_MS 5000u /* a failed lookup is not retried for this long */
#define MAX_ADDRS 8
#define READ_CHUNK 16384
#define MAX_READS_PER_EVENT 16
#define MAX_1XX 16

#define DEF_CONNECT_MS 5000u
#define DEF_FIRST_BYTE_MS 120000u
#define DEF_IDLE_MS 60000u

typedef struct up_conn up_conn_t;

/* One SSL_CTX per (ca_file, verify). */
typedef struct up_tlsctx {
    struct up_tlsctx *next;
    char *ca_file; /* NULL = system default */
    bool verify;
    SSL_CTX *ctx;
} up_tlsctx_t;

/* One pool per target key. */
typedef struct up_pool {
    struct up_pool *next;
    custos_upstream_t *u;
    char *name, *host, *sni, *ca_file;
    uint16_t port;
    bool tls, verify;
    bool literal; /* host is an IP literal: no DNS */
    char *host_hdr;
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addrlens[MAX_ADDRS];
    size_t naddrs;
    uint64_t resolved_ms;
    uint64_t failed_ms; /* last failed lookup with no cached address, 0 if none */
    up_tlsctx_t *tctx;
    SSL_SESSION *session; /* latest resumable session for this target */
    up_conn_t *idle_head, *idle_tail;
    size_t nidle;
    uint32_t nconns;
} up_pool_t;

struct up_conn {
    custos_upstream_t *u;
    up_pool_t *pool;
    int fd;
    SSL *ssl;
    custos_io_t io;
    custos_timer_t idle_timer;
    up_conn_t *prev, *next; /* idle list */
    custos_upstream_req_t *req;
    size_t addr_idx;
    bool idle;
    bool tls_bad; /* closed after a TLS error: forget its session */
};

typedef struct hdr_ent {
    size_t name_off, name_len, value_off, value_len;
} hdr_ent_t;

enum { ST_CONNECTING, ST_HANDSHAKE, ST_IO };

struct custos_upstream_req {
    custos_upstream_t *u;
    up_pool_t *pool;
    up_conn_t *conn;
    custos_upstream_req_t *prev, *next; /* active list */
    custos_upstream_cbs_t cbs;
    void *ud;
    custos_upstream_timeouts_t to;
    int state;
    custos_buf_t out; /* serialised request */
    size_t out_off;
    custos_buf_t in; /* received but not yet parsed (only while paused) */
    llhttp_t parser;
    custos_buf_t hbuf; /* header names and values, NUL-separated */
    hdr_ent_t *hdrs;
    size_t nhdrs, caphdrs;
    size_t head_bytes, trailer_bytes;
    int n1xx;
    int status;
    int cb_err;
    int pending_err;
    bool in_field, headers_done, complete, keep_alive, extra_bytes;
    bool sent_all, paused, finished, retried, reused, connected, got_bytes, unclean_eof;
    bool hs_want_write, read_wants_write;
    bool in_start; /* inside custos_upstream_request: failures are reported later, from the loop */
    uint64_t start_ns, conn_start_ns, connect_ns, ttfb_ns;
    custos_timer_t timer; /* connect / first byte / idle */
    custos_timer_t kick;  /* zero-delay work: deferred failure, resume */
};

struct custos_upstream {
    custos_loop_t *loop;
    custos_upstream_opts_t opts;
    up_pool_t *pools;
    up_tlsctx_t *ctxs;
    custos_upstream_req_t *reqs;
    custos_upstream_stats_t st;
    bool closing;
};

static const llhttp_settings_t *parser_settings(void);
static void req_finish(custos_upstream_req_t *r, int rc);
static void req_do_send(custos_upstream_req_t *r);
static void req_do_read(custos_upstream_req_t *r);
static void req_update_io(custos_upstream_req_t *r);
static void conn_io_cb(custos_loop_t *loop, uint32_t events, void *ud);

/* ---------------------------------------------------------------- helpers */

static void defer_free(custos_loop_t *loop, void *p)
{
    (void)loop;
    free(p);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool str_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool is_ip_literal(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || strchr("!#$%&'*+-.^_`|~", c);
}

static bool valid_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* Request target: visible ASCII and obs-text, no spaces or controls. */
static bool valid_target(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f)
            return false;
    return true;
}

static bool valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == 0 || c == 0x7f || (c < 0x20 && c != '\t'))
            return false;
    }
    return true;
}

static bool hop_by_hop(const char *name, size_t n)
{
    static const char *const drop[] = {
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "upgrade"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strlen(drop[i]) == n && strncasecmp(drop[i], name, n) == 0)
            return true;
    return false;
}

static int map_errno_connect(int e)
{
    return e == ETIMEDOUT ? CUSTOS_ETIMEDOUT : CUSTOS_EIO;
}

static void count_error(custos_upstream_t *u, int rc)
{
    switch (rc) {
    case 0:
        u->st.requests_ok++;
        break;
    case CUSTOS_ETIMEDOUT:
        u->st.err_timeout++;
        break;
    case CUSTOS_EIO:
        u->st.err_io++;
        break;
    case CUSTOS_ETLS:
        u->st.err_tls++;
        break;
    case CUSTOS_EPROTO:
        u->st.err_proto++;
        break;
    case CUSTOS_ECLOSED:
        u->st.err_closed++;
        break;
    case CUSTOS_ETOOBIG:
        u->st.err_toobig++;
        break;
    default:
        u->st.err_other++;
        break;
    }
}

/* ---------------------------------------------------------------- TLS contexts */

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    up_conn_t *c = SSL_get_app_data(ssl);
    if (!c || !c->pool || !SSL_SESSION_is_resumable(sess))
        return 0;
    if (c->pool->session)
        SSL_SESSION_free(c->pool->session);
    c->pool->session = sess;
    return 1; /* we keep the reference */
}

static int tls_ctx_get(custos_upstream_t *u, const char *ca_file, bool verify, up_tlsctx_t **out)
{
    for (up_tlsctx_t *t = u->ctxs; t; t = t->next) {
        if (t->verify == verify && str_eq(t->ca_file, ca_file)) {
            *out = t;
            return 0;
        }
    }
    up_tlsctx_t *t = calloc(1, sizeof(*t));
    if (!t)
        return CUSTOS_ENOMEM;
    int rc = CUSTOS_ETLS;
    t->verify = verify;
    if (ca_file && !(t->ca_file = strdup(ca_file))) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (!t->ctx)
        goto fail;
    if (!SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION))
        goto fail;
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_alpn_protos(t->ctx, alpn, sizeof(alpn) - 1) != 0)
        goto fail;
    if (verify) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
        int ok =
            ca_file ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(t->ctx);
        if (!ok) {
            CUSTOS_WARN("upstream: cannot load CA file %s", ca_file ? ca_file : "(system default)");
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    }
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(t->ctx, new_session_cb);
    t->next = u->ctxs;
    u->ctxs = t;
    *out = t;
    return 0;
fail:
    ERR_clear_error();
    SSL_CTX_free(t->ctx);
    free(t->ca_file);
    free(t);
    return rc;
}

/* ---------------------------------------------------------------- pools and DNS */

static void pool_free(up_pool_t *p)
{
    if (p->session)
        SSL_SESSION_free(p->session);
    free(p->name);
    free(p->host);
    free(p->sni);
    free(p->ca_file);
    free(p->host_hdr);
    free(p);
}

static int pool_get(custos_upstream_t *u, const custos_upstream_target_t *t, up_pool_t **out)
{
    const char *name = t->name ? t->name : "";
    uint16_t port = t->port ? t->port : (t->tls ? 443 : 80);
    bool verify = t->tls ? t->verify : false;
    const char *ca = t->tls ? t->ca_file : NULL;
    const char *sni = t->tls ? t->sni_host : NULL;
    for (up_pool_t *p = u->pools; p; p = p->next) {
        if (p->port == port && p->tls == t->tls && p->verify == verify && strcmp(p->name, name) == 0 &&
            strcmp(p->host, t->host) == 0 && str_eq(p->sni, sni) && str_eq(p->ca_file, ca)) {
            *out = p;
            return 0;
        }
    }
    up_pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return CUSTOS_ENOMEM;
    p->u = u;
    p->port = port;
    p->tls = t->tls;
    p->verify = verify;
    p->name = strdup(name);
    p->host = strdup(t->host);
    p->sni = dup_or_null(sni);
    p->ca_file = dup_or_null(ca);
    if (!p->name || !p->host || (sni && !p->sni) || (ca && !p->ca_file))
        goto nomem;
    p->literal = is_ip_literal(t->host);
    /* Host header: the certificate name when given, bracketed if IPv6, port unless the default. */
    const char *hh = sni ? sni : t->host;
    bool v6 = strchr(hh, ':') != NULL;
    bool def_port = port == (t->tls ? 443 : 80);
    size_t n = strlen(hh) + 16;
    if (!(p->host_hdr = malloc(n)))
        goto nomem;
    if (def_port)
        snprintf(p->host_hdr, n, v6 ? "[%s]" : "%s", hh);
    else
        snprintf(p->host_hdr, n, v6 ? "[%s]:%u" : "%s:%u", hh, (unsigned)port);
    if (t->tls) {
        int rc = tls_ctx_get(u, ca, verify, &p->tctx);
        if (rc) {
            pool_free(p);
            return rc;
        }
    }
    p->next = u->pools;
    u->pools = p;
    *out = p;
    return 0;
nomem:
    pool_free(p);
    return CUSTOS_ENOMEM;
}

/* Blocking on the loop thread for DNS names: done once per target and then at most every DNS_TTL_MS. */
static int pool_resolve(up_pool_t *p)
{
    uint64_t now = custos_loop_now(p->u->loop);
    if (p->naddrs > 0 && (p->literal || now - p->resolved_ms < DNS_TTL_MS))
        return 0;
    if (p->naddrs == 0 && p->failed_ms && now - p->failed_ms < DNS_NEG_TTL_MS)
        return CUSTOS_ENOTFOUND;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    if (p->literal)
        hints.ai_flags = AI_NUMERICHOST;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)p->port);
    struct addrinfo *res = NULL;
    int g = getaddrinfo(p->host, port, &hints, &res);
    if (g != 0 || !res) {
        if (p->naddrs > 0) {
            CUSTOS_WARN("upstream %s: re-resolving %s failed (%s); keeping cached addresses", p->name, p->host,
                        gai_strerror(g));
            p->resolved_ms = now;
            return 0;
        }
        CUSTOS_WARN("upstream %s: cannot resolve %s: %s", p->name, p->host, gai_strerror(g));
        p->failed_ms = now ? now : 1;
        return CUSTOS_ENOTFOUND;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai && n < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(p->addrs[0]) || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
            continue;
        memcpy(&p->addrs[n], ai->ai_addr, ai->ai_addrlen);
        p->addrlens[n] = (socklen_t)ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        if (p->naddrs > 0)
            return 0;
        p->failed_ms = now ? now : 1;
        return CUSTOS_ENOTFOUND;
    }
    p->naddrs = n;
    p->resolved_ms = now;
    return 0;
}

/* ---------------------------------------------------------------- connections */

static void conn_idle_unlink(up_conn_t *c)
{
    up_pool_t *p = c->pool;
    if (!c->idle)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->idle_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        p->idle_tail = c->prev;
    c->prev = c->next = NULL;
    c->idle = false;
    p->nidle--;
    c->u->st.conns_idle--;
}

/* Closes the socket now; the struct is freed after the current event batch. */
static void conn_close(up_conn_t *c, bool clean)
{
    custos_upstream_t *u = c->u;
    conn_idle_unlink(c);
    custos_timer_stop(u->loop, &c->idle_timer);
    if (c->fd >= 0) {
        custos_io_stop(u->loop, &c->io);
        if (c->ssl) {
            SSL_set_app_data(c->ssl, NULL);
            if (clean) {
                ERR_clear_error();
                SSL_shutdown(c->ssl); /* one non-blocking try to send close_notify */
            } else if (!c->tls_bad) {
                /* A timeout or a dropped connection says nothing against the session: without this,
                 * SSL_free marks it non-resumable. */
                SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
            } else if (c->pool->session && c->pool->session == SSL_get_session(c->ssl)) {
                SSL_SESSION_free(c->pool->session);
                c->pool->session = NULL;
            }
            SSL_free(c->ssl);
            ERR_clear_error();
            c->ssl = NULL;
        }
        close(c->fd);
        c->fd = -1;
    }
    c->pool->nconns--;
    u->st.conns_closed++;
    u->st.conns_open--;
    c->req = NULL;
    custos_loop_defer(u->loop, defer_free, c);
}

/* Opens a socket to addrs[c->addr_idx...]: 0 when a connect is in progress, else CUSTOS_EIO. */
static int conn_start(up_conn_t *c)
{
    up_pool_t *p = c->pool;
    for (; c->addr_idx < p->naddrs; c->addr_idx++) {
        const struct sockaddr_storage *sa = &p->addrs[c->addr_idx];
        int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (const struct sockaddr *)sa, p->addrlens[c->addr_idx]) == 0 || errno == EINPROGRESS) {
            c->fd = fd;
            custos_io_init(&c->io, fd, conn_io_cb, c);
            return 0;
        }
        close(fd);
    }
    return CUSTOS_EIO;
}

static void conn_idle_timeout(custos_loop_t *loop, void *ud)
{
    (void)loop;
    conn_close(ud, true);
}

static int conn_new(up_pool_t *p, up_conn_t **out)
{
    up_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return CUSTOS_ENOMEM;
    c->u = p->u;
    c->pool = p;
    c->fd = -1;
    custos_timer_init(&c->idle_timer, conn_idle_timeout, c);
    int rc = conn_start(c);
    if (rc) {
        free(c);
        return rc;
    }
    p->nconns++;
    p->u->st.conns_opened++;
    p->u->st.conns_open++;
    *out = c;
    return 0;
}

static ssize_t conn_read(up_conn_t *c, char *buf, size_t cap, bool *want_write, bool *unclean)
{
    return custos_sock_read(c->fd, c->ssl, buf, cap, want_write, unclean);
}

static ssize_t conn_write(up_conn_t *c, const char *buf, size_t len)
{
    bool want_read; /* the connection is always watched for EPOLLIN while busy */
    return custos_sock_write(c->fd, c->ssl, buf, len, &want_read);
}

/* An idle connection is healthy when the server has neither closed it nor sent anything unexpected.
 * Over TLS, records that carry no application data (session tickets) are consumed and are fine. */
static bool conn_idle_ok(up_conn_t *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (n == 0 || !c->ssl)
        return false;
    ERR_clear_error();
    int r = SSL_read(c->ssl, &b, 1);
    if (r > 0)
        return false;
    bool ok = SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ;
    ERR_clear_error();
    return ok;
}

static void pool_put(up_conn_t *c)
{
    custos_upstream_t *u = c->u;
    up_pool_t *p = c->pool;
    c->req = NULL;
    if (u->closing || u->opts.pool_max_idle == 0) {
        conn_close(c, true);
        return;
    }
    if (p->nidle >= u->opts.pool_max_idle)
        conn_close(p->idle_tail, true);
    if (custos_io_set(u->loop, &c->io, EPOLLIN | EPOLLRDHUP) != 0 ||
        custos_timer_start(u->loop, &c->idle_timer, u->opts.pool_idle_timeout_ms) != 0) {
        conn_close(c, false);
        return;
    }
    c->prev = NULL;
    c->next = p->idle_head;
    if (p->idle_head)
        p->idle_head->prev = c;
    else
        p->idle_tail = c;
    p->idle_head = c;
    c->idle = true;
    p->nidle++;
    u->st.conns_idle++;
}

/* Most recently used healthy idle connection, or NULL. */
static up_conn_t *pool_take(up_pool_t *p)
{
    while (p->idle_head) {
        up_conn_t *c = p->idle_head;
        conn_idle_unlink(c);
        custos_timer_stop(p->u->loop, &c->idle_timer);
        /* Plain TCP: the idle watch (EPOLLIN | EPOLLRDHUP) already closed connections the server closed,
         * and a race is caught by the stale-connection retry; no peek syscall on the hot path. TLS: the
         * peek also consumes post-handshake records (session tickets). */
        if (!c->ssl || conn_idle_ok(c))
            return c;
        conn_close(c, false);
    }
    return NULL;
}

/* ---------------------------------------------------------------- request state machine */

static uint32_t to_or(uint32_t v, uint32_t def)
{
    return v ? v : def;
}

/* Arms the phase timer: idle while sending or after the first response byte, first-byte in between. */
static void req_arm_timer(custos_upstream_req_t *r)
{
    custos_loop_t *loop = r->u->loop;
    if (r->paused) {
        custos_timer_stop(loop, &r->timer);
        return;
    }
    uint32_t ms = (!r->got_bytes && r->sent_all) ? r->to.first_byte_ms : r->to.idle_ms;
    if (custos_timer_start(loop, &r->timer, ms) != 0)
        custos_timer_stop(loop, &r->timer);
}

static void req_timeout(custos_loop_t *loop, void *ud)
{
    (void)loop;
    custos_upstream_req_t *r = ud;
    CUSTOS_DEBUG("upstream %s: request timed out (%s)", r->pool->name,
                 r->state != ST_IO ? "connect" : (r->got_bytes ? "idle" : (r->sent_all ? "first byte" : "send")));
    req_finish(r, CUSTOS_ETIMEDOUT);
}

static void req_reset_parser(custos_upstream_req_t *r)
{
    llhttp_init(&r->parser, HTTP_RESPONSE, parser_settings());
    r->parser.data = r;
    custos_buf_reset(&r->hbuf);
    custos_buf_reset(&r->in);
    r->nhdrs = 0;
    r->head_bytes = r->trailer_bytes = 0;
    r->n1xx = 0;
    r->in_field = r->headers_done = r->complete = r->keep_alive = r->extra_bytes = false;
    r->out_off = 0;
    r->sent_all = false;
    r->unclean_eof = false;
    r->hs_want_write = r->read_wants_write = false;
}

/* Reports rc through on_done from the loop (never inside the caller's current call). */
static int req_fail_soon(custos_upstream_req_t *r, int rc)
{
    r->pending_err = rc;
    return custos_timer_start(r->u->loop, &r->kick, 0);
}

/* Opens a fresh connection for r. 0, or a code for which the caller reports failure. */
static int req_connect_new(custos_upstream_req_t *r)
{
    up_pool_t *p = r->pool;
    int rc = pool_resolve(p);
    if (rc)
        return rc;
    up_conn_t *c;
    rc = conn_new(p, &c);
    if (rc)
        return rc;
    c->req = r;
    r->conn = c;
    r->reused = false;
    r->connected = false;
    r->state = ST_CONNECTING;
    r->conn_start_ns = custos_now_ns();
    if (custos_timer_start(r->u->loop, &r->timer, r->to.connect_ms) != 0)
        return CUSTOS_ENOMEM;
    req_update_io(r);
    return 0;
}

static void req_update_io(custos_upstream_req_t *r)
{
    up_conn_t *c = r->conn;
    if (!c || r->finished)
        return;
    uint32_t ev = 0;
    switch (r->state) {
    case ST_CONNECTING:
        ev = EPOLLOUT;
        break;
    case ST_HANDSHAKE:
        ev = r->hs_want_write ? EPOLLOUT : EPOLLIN;
        break;
    default:
        if (!r->sent_all || r->read_wants_write)
            ev |= EPOLLOUT;
        /* Same interest as an idle pooled connection (EPOLLIN | EPOLLRDHUP), so that taking a connection from
         * the pool and giving it back costs no epoll_ctl. */
        if (!r->paused)
            ev |= EPOLLIN | EPOLLRDHUP;
        break;
    }
    if (custos_io_set(r->u->loop, &c->io, ev) != 0 && req_fail_soon(r, CUSTOS_EIO) != 0)
        CUSTOS_ERROR("upstream %s: cannot watch connection or arm timer", r->pool->name);
}

static void req_start_io(custos_upstream_req_t *r)
{
    r->state = ST_IO;
    req_arm_timer(r);
    req_update_io(r);
}

/* A pooled connection failed before any response byte: move the request to a fresh connection, once. */
static bool req_retry_stale(custos_upstream_req_t *r)
{
    if (!r->reused || r->retried || r->got_bytes || r->finished)
        return false;
    CUSTOS_DEBUG("upstream %s: pooled connection was stale; retrying on a new one", r->pool->name);
    conn_close(r->conn, false);
    r->conn = NULL;
    r->retried = true;
    r->u->st.stale_retries++;
    req_reset_parser(r);
    int rc = req_connect_new(r);
    if (rc) {
        if (r->conn) {
            conn_close(r->conn, false);
            r->conn = NULL;
        }
        req_finish(r, rc);
    }
    return true;
}

static void req_free_deferred(custos_loop_t *loop, void *arg)
{
    (void)loop;
    custos_upstream_req_t *r = arg;
    custos_buf_dispose(&r->out);
    custos_buf_dispose(&r->in);
    custos_buf_dispose(&r->hbuf);
    free(r->hdrs);
    free(r);
}

static void req_unlink(custos_upstream_req_t *r)
{
    custos_upstream_t *u = r->u;
    if (r->prev)
        r->prev->next = r->next;
    else
        u->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    custos_timer_stop(u->loop, &r->timer);
    custos_timer_stop(u->loop, &r->kick);
}

static void req_finish(custos_upstream_req_t *r, int rc)
{
    if (r->finished)
        return;
    if (r->in_start) {
        /* inside custos_upstream_request: callbacks must not run yet */
        if (req_fail_soon(r, rc) != 0)
            CUSTOS_ERROR("upstream %s: cannot arm timer", r->pool->name);
        return;
    }
    custos_upstream_t *u = r->u;
    r->finished = true;
    req_unlink(r);
    if (r->conn) {
        bool reusable = rc == 0 && r->keep_alive && r->sent_all && !r->extra_bytes && !r->unclean_eof &&
                        custos_buf_size(&r->in) == 0 && !(r->conn->ssl && SSL_pending(r->conn->ssl) > 0);
        if (reusable) {
            pool_put(r->conn);
        } else {
            r->conn->tls_bad = rc == CUSTOS_ETLS;
            conn_close(r->conn, rc == 0);
        }
        r->conn = NULL;
    }
    count_error(u, rc);
    if (r->cbs.on_done)
        r->cbs.on_done(r->ud, rc);
    custos_loop_defer(u->loop, req_free_deferred, r);
}

static void req_after_connect(custos_upstream_req_t *r)
{
    up_conn_t *c = r->conn;
    up_pool_t *p = r->pool;
    r->connected = true;
    if (!p->tls) {
        r->connect_ns = custos_now_ns() - r->conn_start_ns;
        req_start_io(r);
        return;
    }
    c->ssl = SSL_new(p->tctx->ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
        ERR_clear_error();
        req_finish(r, CUSTOS_ETLS);
        return;
    }
    SSL_set_app_data(c->ssl, c);
    const char *vname = p->sni ? p->sni : p->host;
    bool ip = is_ip_literal(vname);
    if (!ip && !SSL_set_tlsext_host_name(c->ssl, vname))
        goto tls_fail;
    if (p->verify) {
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), vname) : SSL_set1_host(c->ssl, vname);
        if (!ok)
            goto tls_fail;
    }
    if (p->session)
        SSL_set_session(c->ssl, p->session);
    r->state = ST_HANDSHAKE;
    r->hs_want_write = true;
    req_update_io(r);
    return;
tls_fail:
    ERR_clear_error();
    req_finish(r, CUSTOS_ETLS);
}

static void req_do_handshake(custos_upstream_req_t *r)
{
    up_conn_t *c = r->conn;
    ERR_clear_error();
    int ret = SSL_connect(c->ssl);
    if (ret == 1) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
        if (alen > 0 && !(alen == 8 && memcmp(alpn, "http/1.1", 8) == 0)) {
            CUSTOS_WARN("upstream %s: server selected an ALPN protocol other than http/1.1", r->pool->name);
            req_finish(r, CUSTOS_ETLS);
            return;
        }
        r->connect_ns = custos_now_ns() - r->conn_start_ns;
        req_start_io(r);
        return;
    }
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        r->hs_want_write = e == SSL_ERROR_WANT_WRITE;
        req_update_io(r);
        return;
    }
    long vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK)
        CUSTOS_WARN("upstream %s: TLS certificate verification failed: %s", r->pool->name,
                    X509_verify_cert_error_string(vr));
    else
        CUSTOS_WARN("upstream %s: TLS handshake failed: %s", r->pool->name,
                    ERR_peek_error() ? ERR_reason_error_string(ERR_peek_error()) : "connection closed");
    ERR_clear_error();
    req_finish(r, CUSTOS_ETLS);
}

static void req_do_send(custos_upstream_req_t *r)
{
    bool progress = false;
    while (!r->sent_all && !r->finished && r->state == ST_IO) {
        size_t left = custos_buf_size(&r->out) - r->out_off;
        ssize_t n = conn_write(r->conn, custos_buf_peek(&r->out) + r->out_off, left);
        if (n == CUSTOS_EAGAIN)
            break;
        if (n < 0) {
            if (req_retry_stale(r))
                return;
            req_finish(r, r->got_bytes ? CUSTOS_ECLOSED : (int)n);
            return;
        }
        r->out_off += (size_t)n;
        progress = true;
        if (r->out_off == custos_buf_size(&r->out)) {
            r->sent_all = true;
            if (!r->got_bytes)
                req_arm_timer(r); /* first-byte window starts now */
            req_update_io(r);
        }
    }
    if (progress && !r->sent_all && !r->got_bytes)
        req_arm_timer(r);
}

/* Feeds response bytes to llhttp, honouring pauses, the head size cap and the end of the message.
 * Runs the parser at least once, even for len == 0: after a pause at the very end of the data, llhttp
 * still has to run its pending steps (e.g. on_message_complete after the last body byte). */
static void req_feed(custos_upstream_req_t *r, const char *data, size_t len)
{
    size_t max = r->u->opts.max_header_bytes;
    size_t off = 0;
    do {
        size_t n = len - off;
        bool in_head = !r->headers_done;
        if (in_head) {
            size_t room = max - r->head_bytes;
            if (n > room)
                n = room;
        }
        llhttp_errno_t e = llhttp_execute(&r->parser, data + off, n);
        if (r->finished)
            return;
        size_t used = n;
        if (e == HPE_PAUSED) {
            used = (size_t)(llhttp_get_error_pos(&r->parser) - (data + off));
            llhttp_resume(&r->parser);
        } else if (e != HPE_OK) {
            if (!r->cb_err)
                CUSTOS_DEBUG("upstream %s: malformed response: %s", r->pool->name, llhttp_errno_name(e));
            req_finish(r, r->cb_err ? r->cb_err : CUSTOS_EPROTO);
            return;
        }
        if (in_head && !r->headers_done) {
            r->head_bytes += used;
            if (r->head_bytes >= max) {
                req_finish(r, CUSTOS_ETOOBIG);
                return;
            }
        }
        off += used;
        if (r->complete) {
            if (off < len)
                r->extra_bytes = true;
            req_finish(r, 0);
            return;
        }
        if (r->paused) {
            if (off < len && custos_buf_append(&r->in, data + off, len - off) != 0)
                req_finish(r, CUSTOS_ENOMEM);
            return;
        }
    } while (off < len && !r->finished);
}

static void req_on_eof(custos_upstream_req_t *r, bool unclean)
{
    if (!r->got_bytes) {
        if (req_retry_stale(r))
            return;
        req_finish(r, CUSTOS_ECLOSED);
        return;
    }
    r->unclean_eof = unclean;
    llhttp_finish(&r->parser);
    if (r->finished)
        return;
    if (r->complete && !unclean) {
        r->keep_alive = false;
        req_finish(r, 0);
        return;
    }
    req_finish(r, r->cb_err ? r->cb_err : CUSTOS_ECLOSED);
}

static void req_do_read(custos_upstream_req_t *r)
{
    char buf[READ_CHUNK];
    for (int i = 0; i < MAX_READS_PER_EVENT; i++) {
        if (r->finished || r->paused || !r->conn)
            return;
        bool want_write = false, unclean = false;
        ssize_t n = conn_read(r->conn, buf, sizeof(buf), &want_write, &unclean);
        if (want_write != r->read_wants_write) {
            r->read_wants_write = want_write;
            req_update_io(r);
        }
        if (n == CUSTOS_EAGAIN)
            return;
        if (n == 0) {
            req_on_eof(r, unclean);
            return;
        }
        if (n < 0) {
            if (!r->got_bytes && req_retry_stale(r))
                return;
            req_finish(r, r->got_bytes ? CUSTOS_ECLOSED : (int)n);
            return;
        }
        if (!r->got_bytes) {
            r->got_bytes = true;
            r->ttfb_ns = custos_now_ns() - r->start_ns;
        }
        req_arm_timer(r);
        req_feed(r, buf, (size_t)n);
    }
    /* Budget used up: TLS may hold decrypted bytes the fd will not signal; come back soon. */
    if (!r->finished && !r->paused && r->conn && r->conn->ssl && SSL_pending(r->conn->ssl) > 0)
        custos_timer_start(r->u->loop, &r->kick, 0);
}

/* Zero-delay work: a failure that must not be reported inside custos_upstream_request, or resumption. */
static void req_kick(custos_loop_t *loop, void *ud)
{
    (void)loop;
    custos_upstream_req_t *r = ud;
    if (r->pending_err) {
        req_finish(r, r->pending_err);
        return;
    }
    if (r->paused || r->state != ST_IO)
        return;
    /* Buffered bytes first (maybe none: the parser may still have steps pending), then the socket. */
    custos_buf_t tmp = r->in;
    custos_buf_init(&r->in, 0);
    req_feed(r, custos_buf_peek(&tmp), custos_buf_size(&tmp));
    custos_buf_dispose(&tmp);
    if (!r->finished && !r->paused)
        req_do_read(r);
}

static void conn_io_cb(custos_loop_t *loop, uint32_t events, void *ud)
{
    (void)loop;
    up_conn_t *c = ud;
    custos_upstream_req_t *r = c->req;
    if (!r) {
        if ((events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) || ((events & EPOLLIN) && !conn_idle_ok(c)))
            conn_close(c, false);
        return;
    }
    switch (r->state) {
    case ST_CONNECTING: {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (err == 0 && (events & (EPOLLERR | EPOLLHUP)))
            err = ECONNREFUSED;
        if (err) {
            /* Try the target's next address, if any. */
            custos_io_stop(loop, &c->io);
            close(c->fd);
            c->fd = -1;
            c->addr_idx++;
            if (conn_start(c) == 0) {
                req_update_io(r);
                return;
            }
            req_finish(r, map_errno_connect(err));
            return;
        }
        req_after_connect(r);
        return;
    }
    case ST_HANDSHAKE:
        req_do_handshake(r);
        return;
    default:
        /* Read first: a server may answer (e.g. 413) and close before taking the whole body. */
        if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || r->read_wants_write)
            req_do_read(r);
        /* The read may have finished the request or moved it to a fresh connection (stale retry). */
        if (!r->finished && !r->sent_all && r->conn == c && r->state == ST_IO)
            req_do_send(r);
        return;
    }
}

/* ---------------------------------------------------------------- llhttp callbacks */

static int p_message_begin(llhttp_t *p)
{
    custos_upstream_req_t *r = p->data;
    custos_buf_reset(&r->hbuf);
    r->nhdrs = 0;
    r->in_field = false;
    return 0;
}

static int trailer_bytes(custos_upstream_req_t *r, size_t len)
{
    r->trailer_bytes += len;
    if (r->trailer_bytes > r->u->opts.max_header_bytes) {
        r->cb_err = CUSTOS_ETOOBIG;
        return -1;
    }
    return 0;
}

static int hb_append(custos_upstream_req_t *r, const void *d, size_t n)
{
    int rc = custos_buf_append(&r->hbuf, d, n);
    if (rc) {
        r->cb_err = rc;
        return -1;
    }
    return 0;
}

static int p_header_field(llhttp_t *p, const char *at, size_t len)
{
    custos_upstream_req_t *r = p->data;
    if (r->headers_done)
        return trailer_bytes(r, len);
    if (!r->in_field) {
        if (r->nhdrs >= r->u->opts.max_headers) {
            r->cb_err = CUSTOS_ETOOBIG;
            return -1;
        }
        if (r->nhdrs == r->caphdrs) {
            size_t nc = r->caphdrs ? r->caphdrs * 2 : 16;
            hdr_ent_t *nh = realloc(r->hdrs, nc * sizeof(*nh));
            if (!nh) {
                r->cb_err = CUSTOS_ENOMEM;
                return -1;
            }
            r->hdrs = nh;
            r->caphdrs = nc;
        }
        hdr_ent_t *h = &r->hdrs[r->nhdrs++];
        memset(h, 0, sizeof(*h));
        h->name_off = custos_buf_size(&r->hbuf);
        r->in_field = true;
    }
    return hb_append(r, at, len);
}

static int p_header_field_complete(llhttp_t *p)
{
    custos_upstream_req_t *r = p->data;
    if (r->headers_done || !r->in_field)
        return 0;
    hdr_ent_t *h = &r->hdrs[r->nhdrs - 1];
    h->name_len = custos_buf_size(&r->hbuf) - h->name_off;
    r->in_field = false;
    if (hb_append(r, "", 1))
        return -1;
    h->value_off = custos_buf_size(&r->hbuf);
    return 0;
}

static int p_header_value(llhttp_t *p, const char *at, size_t len)
{
    custos_upstream_req_t *r = p->data;
    if (r->headers_done)
        return trailer_bytes(r, len);
    return hb_append(r, at, len);
}

static int p_header_value_complete(llhttp_t *p)
{
    custos_upstream_req_t *r = p->data;
    if (r->headers_done || r->nhdrs == 0)
        return 0;
    hdr_ent_t *h = &r->hdrs[r->nhdrs - 1];
    h->value_len = custos_buf_size(&r->hbuf) - h->value_off;
    return hb_append(r, "", 1);
}

static int p_headers_complete(llhttp_t *p)
{
    custos_upstream_req_t *r = p->data;
    int status = p->status_code;
    if (status == 101 || status < 100) {
        r->cb_err = CUSTOS_EPROTO; /* we never ask for an upgrade */
        return -1;
    }
    if (status < 200) {
        if (++r->n1xx > MAX_1XX) {
            r->cb_err = CUSTOS_EPROTO;
            return -1;
        }
        return 0; /* interim response: ignored, llhttp goes on to the next message */
    }
    r->headers_done = true;
    r->status = status;
    if (!r->cbs.on_head)
        return r->paused ? HPE_PAUSED : 0;
    custos_http_header_t *hs = NULL;
    if (r->nhdrs > 0) {
        hs = calloc(r->nhdrs, sizeof(*hs));
        if (!hs) {
            r->cb_err = CUSTOS_ENOMEM;
            return -1;
        }
        const char *base = custos_buf_peek(&r->hbuf);
        for (size_t i = 0; i < r->nhdrs; i++) {
            hs[i].name = base + r->hdrs[i].name_off;
            hs[i].name_len = r->hdrs[i].name_len;
            hs[i].value = base + r->hdrs[i].value_off;
            hs[i].value_len = r->hdrs[i].value_len;
        }
    }
    int ret = r->cbs.on_head(r->ud, status, hs, r->nhdrs);
    free(hs);
    if (r->finished)
        return -1;
    if (ret != 0) {
        r->u->st.aborted++;
        r->cb_err = ret < 0 ? ret : CUSTOS_ECLOSED;
        return -1;
    }
    return r->paused ? HPE_PAUSED : 0;
}

static int p_body(llhttp_t *p, const char *at, size_t len)
{
    custos_upstream_req_t *r = p->data;
    if (r->cbs.on_body && len > 0) {
        int ret = r->cbs.on_body(r->ud, at, len);
        if (r->finished)
            return -1;
        if (ret < 0) {
            r->u->st.aborted++;
            r->cb_err = ret;
            return -1;
        }
        if (ret == 1)
            custos_upstream_req_pause(r);
    }
    return r->paused ? HPE_PAUSED : 0;
}

static int p_message_complete(llhttp_t *p)
{
    custos_upstream_req_t *r = p->data;
    if (p->status_code < 200) {
        r->head_bytes = 0;
        return 0;
    }
    r->complete = true;
    r->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED; /* stop exactly at the end of the response */
}

static const llhttp_settings_t *parser_settings(void)
{
    static llhttp_settings_t s = {
        .on_message_begin = p_message_begin,
        .on_header_field = p_header_field,
        .on_header_field_complete = p_header_field_complete,
        .on_header_value = p_header_value,
        .on_header_value_complete = p_header_value_complete,
        .on_headers_complete = p_headers_complete,
        .on_body = p_body,
        .on_message_complete = p_message_complete,
    };
    return &s;
}

/* ---------------------------------------------------------------- public API */

void custos_upstream_opts_default(custos_upstream_opts_t *o)
{
    o->pool_max_idle = 16;
    o->pool_idle_timeout_ms = 60000;
    o->max_header_bytes = 64 * 1024;
    o->max_headers = 256;
}

void custos_upstream_target_init(custos_upstream_target_t *t)
{
    memset(t, 0, sizeof(*t));
    t->verify = true;
}

int custos_upstream_new(custos_loop_t *loop, const custos_upstream_opts_t *opts, custos_upstream_t **out)
{
    custos_upstream_t *u = calloc(1, sizeof(*u));
    if (!u)
        return CUSTOS_ENOMEM;
    u->loop = loop;
    custos_upstream_opts_default(&u->opts);
    if (opts) {
        if (opts->pool_max_idle)
            u->opts.pool_max_idle = opts->pool_max_idle;
        if (opts->pool_idle_timeout_ms)
            u->opts.pool_idle_timeout_ms = opts->pool_idle_timeout_ms;
        if (opts->max_header_bytes)
            u->opts.max_header_bytes = opts->max_header_bytes;
        if (opts->max_headers)
            u->opts.max_headers = opts->max_headers;
    }
    *out = u;
    return 0;
}

void custos_upstream_free(custos_upstream_t *u)
{
    if (!u)
        return;
    u->closing = true;
    while (u->reqs)
        custos_upstream_req_cancel(u->reqs);
    for (up_pool_t *p = u->pools; p; p = p->next)
        while (p->idle_head)
            conn_close(p->idle_head, true);
    while (u->pools) {
        up_pool_t *n = u->pools->next;
        pool_free(u->pools);
        u->pools = n;
    }
    while (u->ctxs) {
        up_tlsctx_t *n = u->ctxs->next;
        SSL_CTX_free(u->ctxs->ctx);
        free(u->ctxs->ca_file);
        free(u->ctxs);
        u->ctxs = n;
    }
    free(u);
}

static int build_request(custos_upstream_req_t *r, const char *method, const char *path,
                         const custos_http_header_t *headers, size_t nheaders, const char *body, size_t body_len)
{
    custos_buf_t *b = &r->out;
    /* sized once: head estimate + body, so the appends below never reallocate */
    int rc = custos_buf_reserve(b, strlen(path) + 256 + nheaders * 64 + body_len);
    rc = rc ? rc : custos_buf_append_str(b, method);
    rc = rc ? rc : custos_buf_append_lit(b, " ");
    rc = rc ? rc : custos_buf_append_str(b, path);
    rc = rc ? rc : custos_buf_append_lit(b, " HTTP/1.1\r\nHost: ");
    rc = rc ? rc : custos_buf_append_str(b, r->pool->host_hdr);
    rc = rc ? rc : custos_buf_append_lit(b, "\r\n");
    for (size_t i = 0; !rc && i < nheaders; i++) {
        const custos_http_header_t *h = &headers[i];
        if (hop_by_hop(h->name, h->name_len))
            continue;
        rc = custos_buf_append(b, h->name, h->name_len);
        rc = rc ? rc : custos_buf_append_lit(b, ": ");
        rc = rc ? rc : custos_buf_append(b, h->value, h->value_len);
        rc = rc ? rc : custos_buf_append_lit(b, "\r\n");
    }
    bool need_cl = body_len > 0 || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
    if (!rc && need_cl) {
        rc = custos_buf_append_lit(b, "Content-Length: ");
        rc = rc ? rc : custos_buf_append_u64(b, body_len);
        rc = rc ? rc : custos_buf_append_lit(b, "\r\n");
    }
    rc = rc ? rc : custos_buf_append_str(b, "Connection: keep-alive\r\n\r\n");
    if (!rc && body_len)
        rc = custos_buf_append(b, body, body_len);
    return rc;
}

int custos_upstream_request(custos_upstream_t *u, const custos_upstream_target_t *t, const char *method,
                            const char *path_and_query, const custos_http_header_t *headers, size_t nheaders,
                            const char *body, size_t body_len, const custos_upstream_timeouts_t *to,
                            const custos_upstream_cbs_t *cbs, void *ud, custos_upstream_req_t **out)
{
    if (!u || !t || !t->host || !*t->host || !method || !path_and_query || !cbs || (body_len && !body) ||
        (nheaders && !headers) || u->closing)
        return CUSTOS_EINVAL;
    if (!valid_token(method, strlen(method)) || !valid_target(path_and_query) || strlen(t->host) > 255 ||
        !valid_value(t->host, strlen(t->host)) || strchr(t->host, ' ') ||
        (t->sni_host && (!valid_value(t->sni_host, strlen(t->sni_host)) || strchr(t->sni_host, ' '))))
        return CUSTOS_EINVAL;
    for (size_t i = 0; i < nheaders; i++)
        if (!headers[i].name || !valid_token(headers[i].name, headers[i].name_len) ||
            (headers[i].value_len && !headers[i].value) || !valid_value(headers[i].value, headers[i].value_len))
            return CUSTOS_EINVAL;

    up_pool_t *pool;
    int rc = pool_get(u, t, &pool);
    if (rc)
        return rc;
    custos_upstream_req_t *r = calloc(1, sizeof(*r));
    if (!r)
        return CUSTOS_ENOMEM;
    r->u = u;
    r->pool = pool;
    r->cbs = *cbs;
    r->ud = ud;
    r->to.connect_ms = to_or(to ? to->connect_ms : 0, DEF_CONNECT_MS);
    r->to.first_byte_ms = to_or(to ? to->first_byte_ms : 0, DEF_FIRST_BYTE_MS);
    r->to.idle_ms = to_or(to ? to->idle_ms : 0, DEF_IDLE_MS);
    r->start_ns = custos_now_ns();
    custos_buf_init(&r->out, 0);
    custos_buf_init(&r->in, 0);
    custos_buf_init(&r->hbuf, u->opts.max_header_bytes);
    custos_timer_init(&r->timer, req_timeout, r);
    custos_timer_init(&r->kick, req_kick, r);
    req_reset_parser(r);
    rc = build_request(r, method, path_and_query, headers, nheaders, body, body_len);
    if (rc)
        goto fail;

    up_conn_t *c = pool_take(pool);
    if (c) {
        c->req = r;
        r->conn = c;
        r->reused = true;
        r->connected = true;
        u->st.conns_reused++;
        r->state = ST_IO;
        req_arm_timer(r);
    } else if (t->max_connections && pool->nconns >= t->max_connections) {
        rc = CUSTOS_EUNAVAIL;
        goto fail;
    } else {
        rc = pool_resolve(pool);
        if (rc)
            goto fail;
        rc = req_connect_new(r);
        if (rc == CUSTOS_EIO) {
            rc = req_fail_soon(r, rc); /* every address refused at once: report through on_done */
            if (rc)
                goto fail;
        } else if (rc) {
            if (r->conn)
                conn_close(r->conn, false);
            goto fail;
        }
    }
    r->next = u->reqs;
    if (u->reqs)
        u->reqs->prev = r;
    u->reqs = r;
    u->st.requests++;
    *out = r;
    if (r->reused) {
        /* Optimistic write on a pooled connection: the request usually fits the socket buffer, which saves
         * an EPOLLOUT round trip and two epoll_ctl calls per request. */
        r->in_start = true;
        req_do_send(r);
        r->in_start = false;
        req_update_io(r);
    }
    return 0;
fail:
    custos_timer_stop(u->loop, &r->timer);
    custos_timer_stop(u->loop, &r->kick);
    custos_buf_dispose(&r->out);
    custos_buf_dispose(&r->in);
    custos_buf_dispose(&r->hbuf);
    free(r->hdrs);
    free(r);
    return rc;
}

void custos_upstream_req_pause(custos_upstream_req_t *r)
{
    if (r->finished || r->paused)
        return;
    r->paused = true;
    if (!r->pending_err)
        custos_timer_stop(r->u->loop, &r->kick);
    if (r->state == ST_IO) {
        custos_timer_stop(r->u->loop, &r->timer);
        req_update_io(r);
    }
}

void custos_upstream_req_resume(custos_upstream_req_t *r)
{
    if (r->finished || !r->paused)
        return;
    r->paused = false;
    if (r->state != ST_IO)
        return;
    req_arm_timer(r);
    req_update_io(r);
    if (!r->finished && custos_timer_start(r->u->loop, &r->kick, 0) != 0)
        req_finish(r, CUSTOS_ENOMEM);
}

void custos_upstream_req_cancel(custos_upstream_req_t *r)
{
    if (r->finished)
        return;
    r->finished = true;
    r->u->st.cancelled++;
    req_unlink(r);
    if (r->conn) {
        conn_close(r->conn, false);
        r->conn = NULL;
    }
    custos_loop_defer(r->u->loop, req_free_deferred, r);
}

void custos_upstream_req_info(const custos_upstream_req_t *r, custos_upstream_req_info_t *info)
{
    info->connected = r->connected;
    info->reused = r->reused;
    info->got_response_bytes = r->got_bytes;
    info->status = r->status;
    info->connect_ns = r->connect_ns;
    info->ttfb_ns = r->ttfb_ns;
}

void custos_upstream_stats(const custos_upstream_t *u, custos_upstream_stats_t *out)
{
    *out = u->st;
}
