/* SPDX-License-Identifier: Apache-2.0
 * Syslog audit sink driver: RFC 5424 messages (the record JSON as MSG) over UDP (one datagram each), TCP with
 * octet-counting framing (RFC 6587 §3.4.1) or TLS (RFC 5425), on the sink's own thread with blocking I/O. */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "audit/sink.h"
#include "net/blocking_client.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

/* Largest UDP payload; records whose message would exceed it cannot be sent over UDP and are skipped (logged). */
#define SYSLOG_UDP_MAX 65000
/* Largest message over TCP/TLS (a record bigger than this is skipped, logged). */
#define SYSLOG_STREAM_MAX (1024 * 1024)
#define SYSLOG_SEVERITY_INFO 6

typedef struct syslog_state {
    custos_syslog_transport_t transport;
    char host[256];
    char port[8];
    char hostname[256]; /* RFC 5424 HOSTNAME (PRINTUSASCII, max 255) */
    char app_name[49];  /* RFC 5424 APP-NAME (max 48) */
    char procid[16];
    unsigned pri;
    int timeout_ms;
    int udp_fd; /* connected UDP socket or -1 */
    custos_bclient_t conn;
    SSL_CTX *tls;
    custos_buf_t out; /* frames of one deliver() call */
    unsigned long skipped;
} syslog_state_t;

/* Copies s into dst as an RFC 5424 header field: printable US-ASCII without spaces, at most cap-1 chars, "-" when
 * empty. */
static void header_field(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 1 < cap; s++)
        if (*s > 32 && *s < 127)
            dst[n++] = *s;
    if (n == 0)
        dst[n++] = '-';
    dst[n] = 0;
}

static void syslog_close(void *state)
{
    syslog_state_t *s = state;
    if (!s)
        return;
    if (s->udp_fd >= 0)
        close(s->udp_fd);
    custos_bclient_close(&s->conn);
    SSL_CTX_free(s->tls);
    custos_buf_dispose(&s->out);
    if (s->skipped)
        CUSTOS_WARN("syslog sink %s:%s: %lu oversized records were skipped", s->host, s->port, s->skipped);
    free(s);
}

static int syslog_open(const custos_audit_sink_config_t *cfg, void **state, char *err, size_t errlen)
{
    int rc;
    syslog_state_t *s = calloc(1, sizeof(*s));
    *state = NULL;
    if (!s)
        return CUSTOS_ENOMEM;
    s->udp_fd = -1;
    custos_bclient_init(&s->conn);
    custos_buf_init(&s->out, 0);
    s->transport = cfg->transport;
    s->timeout_ms = cfg->timeout_ms ? (int)cfg->timeout_ms : 10000;
    if (!cfg->host || !cfg->port || strlen(cfg->host) >= sizeof(s->host)) {
        snprintf(err, errlen, "syslog sink: address needs host and port");
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    snprintf(s->host, sizeof(s->host), "%s", cfg->host);
    snprintf(s->port, sizeof(s->port), "%u", (unsigned)cfg->port);
    if (cfg->facility > 23) {
        snprintf(err, errlen, "syslog sink: facility %u out of range 0..23", cfg->facility);
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    s->pri = cfg->facility * 8 + SYSLOG_SEVERITY_INFO;
    char hn[256] = "";
    if (cfg->hostname)
        snprintf(hn, sizeof(hn), "%s", cfg->hostname);
    else if (gethostname(hn, sizeof(hn)) != 0)
        hn[0] = 0;
    hn[sizeof(hn) - 1] = 0;
    header_field(s->hostname, sizeof(s->hostname), hn);
    header_field(s->app_name, sizeof(s->app_name), cfg->app_name ? cfg->app_name : "custos");
    snprintf(s->procid, sizeof(s->procid), "%ld", (long)getpid());

    if (s->transport == CUSTOS_SYSLOG_UDP) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *res = NULL;
        int gr = getaddrinfo(s->host, s->port, &hints, &res);
        if (gr != 0) {
            snprintf(err, errlen, "syslog sink: cannot resolve %s: %s", s->host, gai_strerror(gr));
            rc = CUSTOS_ENOTFOUND;
            goto fail;
        }
        s->udp_fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s->udp_fd < 0 || connect(s->udp_fd, res->ai_addr, res->ai_addrlen) != 0) {
            snprintf(err, errlen, "syslog sink: UDP socket for %s: %s", s->host, strerror(errno));
            freeaddrinfo(res);
            rc = CUSTOS_EIO;
            goto fail;
        }
        freeaddrinfo(res);
        struct timeval tv = {.tv_sec = s->timeout_ms / 1000, .tv_usec = (s->timeout_ms % 1000) * 1000};
        setsockopt(s->udp_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    } else if (s->transport == CUSTOS_SYSLOG_TLS) {
        rc = custos_bclient_tls_ctx_new(cfg->ca_file, &s->tls, err, errlen);
        if (rc != 0)
            goto fail;
    }
    /* TCP and TLS connect lazily in deliver: a collector that is down at start-up is an outage, not a config error */
    *state = s;
    return 0;
fail:
    syslog_close(s);
    return rc;
}

/* "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG": the record's JSON is MSG, no structured data. */
static int format_message(syslog_state_t *s, custos_buf_t *b, const char *rec, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t wl = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof(when) - wl, ".%06ldZ", ts.tv_nsec / 1000);
    int rc = custos_buf_appendf(b, "<%u>1 %s %s %s %s request - ", s->pri, when, s->hostname, s->app_name, s->procid);
    if (rc == 0)
        rc = custos_buf_append(b, rec, len);
    return rc;
}

static int deliver_udp(syslog_state_t *s, const char *const *recs, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        custos_buf_reset(&s->out);
        int rc = format_message(s, &s->out, recs[i], lens[i]);
        if (rc != 0)
            return rc;
        if (custos_buf_size(&s->out) > SYSLOG_UDP_MAX) {
            if (s->skipped++ == 0)
                CUSTOS_WARN("syslog sink %s:%s: a record of %zu bytes exceeds the UDP limit; skipped", s->host, s->port,
                            lens[i]);
            continue;
        }
        ssize_t w;
        do
            w = send(s->udp_fd, custos_buf_peek(&s->out), custos_buf_size(&s->out), MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0)
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? CUSTOS_ETIMEDOUT : CUSTOS_EIO;
    }
    return 0;
}

static int deliver_stream(syslog_state_t *s, const char *const *recs, const size_t *lens, size_t n)
{
    int rc;
    if (s->conn.fd >= 0 && !custos_bclient_alive(&s->conn))
        custos_bclient_close(&s->conn);
    if (s->conn.fd < 0) {
        char err[256] = "";
        rc = custos_bclient_connect(&s->conn, s->host, s->port, s->tls, s->timeout_ms, err, sizeof(err));
        if (rc != 0) {
            CUSTOS_WARN("syslog sink: %s", err);
            return rc;
        }
    }
    custos_buf_t msg;
    custos_buf_init(&msg, 0);
    custos_buf_reset(&s->out);
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        custos_buf_reset(&msg);
        rc = format_message(s, &msg, recs[i], lens[i]);
        if (rc != 0)
            break;
        if (custos_buf_size(&msg) > SYSLOG_STREAM_MAX) {
            if (s->skipped++ == 0)
                CUSTOS_WARN("syslog sink %s:%s: a record of %zu bytes exceeds the message limit; skipped", s->host,
                            s->port, lens[i]);
            continue;
        }
        /* RFC 6587 octet counting: "MSG-LEN SP SYSLOG-MSG" */
        rc = custos_buf_appendf(&s->out, "%zu ", custos_buf_size(&msg));
        if (rc == 0)
            rc = custos_buf_append(&s->out, custos_buf_peek(&msg), custos_buf_size(&msg));
    }
    custos_buf_dispose(&msg);
    if (rc == 0)
        rc = custos_bclient_write_all(&s->conn, custos_buf_peek(&s->out), custos_buf_size(&s->out));
    if (rc != 0)
        custos_bclient_close(&s->conn);
    custos_buf_reset(&s->out);
    return rc;
}

static int syslog_deliver(void *state, const char *const *recs, const size_t *lens, size_t n)
{
    syslog_state_t *s = state;
    return s->transport == CUSTOS_SYSLOG_UDP ? deliver_udp(s, recs, lens, n) : deliver_stream(s, recs, lens, n);
}

const custos_audit_sink_driver_t custos_audit_sink_syslog = {
    .type = "syslog",
    .open = syslog_open,
    .deliver = syslog_deliver,
    .close = syslog_close,
};
