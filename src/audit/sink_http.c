/* SPDX-License-Identifier: Apache-2.0
 * HTTP batch-ingestion audit sink driver: one POST per deliver() call carrying NDJSON, Splunk HEC event lines or an
 * Elasticsearch _bulk body, optionally gzip-compressed, over a kept-alive blocking HTTP/1.1 (or HTTPS) connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <zlib.h>

#include "audit/sink.h"
#include "net/blocking_client.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

/* Largest response body read (acknowledgements, _bulk results); bigger → CUSTOS_ETOOBIG (batch retried). */
#define HTTP_SINK_MAX_RESPONSE (8u * 1024 * 1024)

typedef struct http_state {
    custos_url_t url;
    char host_hdr[300];
    char path[2100];
    custos_http_sink_format_t format;
    bool gzip;
    int timeout_ms;
    char *index_json; /* JSON string literal of the index (quoted, escaped) or NULL */
    char *headers;    /* fixed extra header lines, including Authorization (secret: zeroed on close, never logged) */
    size_t headers_len;
    SSL_CTX *tls;
    custos_bclient_t conn;
    custos_buf_t body;
    custos_buf_t zbody;
    custos_buf_t resp;
    int last_status; /* for the outage log: logged once per change */
} http_state_t;

static void http_close(void *state)
{
    http_state_t *s = state;
    if (!s)
        return;
    custos_bclient_close(&s->conn);
    SSL_CTX_free(s->tls);
    if (s->headers) {
        OPENSSL_cleanse(s->headers, s->headers_len);
        free(s->headers);
    }
    free(s->index_json);
    custos_buf_dispose(&s->body);
    custos_buf_dispose(&s->zbody);
    custos_buf_dispose(&s->resp);
    free(s);
}

static char *json_quote(const char *v)
{
    json_object *o = json_object_new_string(v);
    if (!o)
        return NULL;
    char *r = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return r;
}

static int http_open(const custos_audit_sink_config_t *cfg, void **state, char *err, size_t errlen)
{
    int rc;
    custos_buf_t h;
    http_state_t *s = calloc(1, sizeof(*s));
    *state = NULL;
    custos_buf_init(&h, 64 * 1024);
    if (!s)
        return CUSTOS_ENOMEM;
    custos_bclient_init(&s->conn);
    custos_buf_init(&s->body, 0);
    custos_buf_init(&s->zbody, 0);
    custos_buf_init(&s->resp, HTTP_SINK_MAX_RESPONSE);
    if (custos_url_parse(cfg->url, &s->url) != 0) {
        snprintf(err, errlen, "http sink: url must be http:// or https:// without userinfo, query or fragment");
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    s->format = cfg->format;
    s->gzip = cfg->gzip;
    s->timeout_ms = cfg->timeout_ms ? (int)cfg->timeout_ms : 10000;
    bool default_port = strcmp(s->url.port, s->url.https ? "443" : "80") == 0;
    const char *fmt = strchr(s->url.host, ':') ? (default_port ? "[%s]" : "[%s]:%s") : (default_port ? "%s" : "%s:%s");
    snprintf(s->host_hdr, sizeof(s->host_hdr), fmt, s->url.host, s->url.port);
    /* endpoint: the URL's path, or the format's conventional one when the URL has none */
    const char *p = strcmp(s->url.path, "/") == 0 ? "" : s->url.path;
    size_t pl = strlen(p);
    while (pl > 0 && p[pl - 1] == '/')
        pl--;
    const char *suffix = "";
    if (s->format == CUSTOS_HTTP_SINK_SPLUNK_HEC && pl == 0)
        suffix = "/services/collector/event";
    else if (s->format == CUSTOS_HTTP_SINK_ELASTICSEARCH && (pl < 6 || strncmp(p + pl - 6, "/_bulk", 6) != 0))
        suffix = "/_bulk";
    else if (pl == 0)
        suffix = "/";
    snprintf(s->path, sizeof(s->path), "%.*s%s", (int)pl, p, suffix);
    if (cfg->index) {
        s->index_json = json_quote(cfg->index);
        if (!s->index_json) {
            rc = CUSTOS_ENOMEM;
            goto fail;
        }
    }
    rc = custos_buf_append_str(&h, s->format == CUSTOS_HTTP_SINK_SPLUNK_HEC ? "Content-Type: application/json\r\n"
                                                                            : "Content-Type: application/x-ndjson\r\n");
    if (rc == 0 && s->gzip)
        rc = custos_buf_append_lit(&h, "Content-Encoding: gzip\r\n");
    if (rc == 0 && cfg->token && cfg->token_len) {
        if (memchr(cfg->token, '\r', cfg->token_len) || memchr(cfg->token, '\n', cfg->token_len)) {
            snprintf(err, errlen, "http sink: token contains a line break");
            rc = CUSTOS_EINVAL;
            goto fail;
        }
        const char *scheme = s->format == CUSTOS_HTTP_SINK_SPLUNK_HEC      ? "Splunk"
                             : s->format == CUSTOS_HTTP_SINK_ELASTICSEARCH ? "ApiKey"
                                                                           : "Bearer";
        rc = custos_buf_appendf(&h, "Authorization: %s ", scheme);
        if (rc == 0)
            rc = custos_buf_append(&h, cfg->token, cfg->token_len);
        if (rc == 0)
            rc = custos_buf_append_lit(&h, "\r\n");
    }
    if (rc != 0)
        goto fail;
    s->headers = custos_buf_steal(&h, &s->headers_len);
    if (!s->headers) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    if (s->url.https) {
        rc = custos_bclient_tls_ctx_new(cfg->ca_file, &s->tls, err, errlen);
        if (rc != 0)
            goto fail;
    }
    *state = s;
    return 0;
fail:
    if (h.data)
        OPENSSL_cleanse(h.data, h.cap);
    custos_buf_dispose(&h);
    http_close(s);
    return rc;
}

static int build_body(http_state_t *s, const char *const *recs, const size_t *lens, size_t n)
{
    custos_buf_t *b = &s->body;
    int rc = 0;
    custos_buf_reset(b);
    for (size_t i = 0; i < n && rc == 0; i++) {
        switch (s->format) {
        case CUSTOS_HTTP_SINK_NDJSON:
            break;
        case CUSTOS_HTTP_SINK_SPLUNK_HEC:
            rc = custos_buf_append_lit(b, "{");
            if (rc == 0 && s->index_json)
                rc = custos_buf_appendf(b, "\"index\":%s,", s->index_json);
            if (rc == 0)
                rc = custos_buf_append_lit(b, "\"sourcetype\":\"custos:request\",\"event\":");
            break;
        case CUSTOS_HTTP_SINK_ELASTICSEARCH:
            if (s->index_json)
                rc = custos_buf_appendf(b, "{\"create\":{\"_index\":%s}}\n", s->index_json);
            else
                rc = custos_buf_append_lit(b, "{\"create\":{}}\n");
            break;
        }
        if (rc == 0)
            rc = custos_buf_append(b, recs[i], lens[i]);
        if (rc == 0 && s->format == CUSTOS_HTTP_SINK_SPLUNK_HEC)
            rc = custos_buf_append_lit(b, "}");
        if (rc == 0)
            rc = custos_buf_append_lit(b, "\n");
    }
    return rc;
}

/* gzip (RFC 1952) of s->body into s->zbody. */
static int compress_body(http_state_t *s)
{
    z_stream z = {0};
    int rc = 0;
    custos_buf_reset(&s->zbody);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return CUSTOS_ENOMEM;
    uLong bound = deflateBound(&z, (uLong)custos_buf_size(&s->body));
    rc = custos_buf_reserve(&s->zbody, bound + 1);
    if (rc != 0)
        goto out;
    z.next_in = (Bytef *)custos_buf_peek(&s->body);
    z.avail_in = (uInt)custos_buf_size(&s->body);
    z.next_out = (Bytef *)s->zbody.data + s->zbody.len;
    z.avail_out = (uInt)bound;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        rc = CUSTOS_EIO;
        goto out;
    }
    s->zbody.len += z.total_out;
    s->zbody.data[s->zbody.len] = 0;
out:
    deflateEnd(&z);
    return rc;
}

/* An Elasticsearch _bulk response with "errors":true: accepted only when every failed item is a 409 (already there). */
static bool es_bulk_ok(const custos_buf_t *resp)
{
    json_object *o = json_tokener_parse(custos_buf_peek(resp));
    json_object *v, *items;
    bool ok = false;
    if (!o)
        return false;
    if (!json_object_object_get_ex(o, "errors", &v) || !json_object_get_boolean(v)) {
        ok = true;
        goto out;
    }
    if (!json_object_object_get_ex(o, "items", &items) || !json_object_is_type(items, json_type_array))
        goto out;
    size_t n = json_object_array_length(items);
    for (size_t i = 0; i < n; i++) {
        json_object *it = json_object_array_get_idx(items, i), *act = NULL, *st;
        json_object_object_foreach(it, k, val)
        {
            (void)k;
            act = val;
            break;
        }
        if (!act || !json_object_object_get_ex(act, "status", &st))
            goto out;
        int code = json_object_get_int(st);
        if ((code < 200 || code > 299) && code != 409)
            goto out;
    }
    ok = true;
out:
    json_object_put(o);
    return ok;
}

static int http_deliver(void *state, const char *const *recs, const size_t *lens, size_t n)
{
    http_state_t *s = state;
    int rc, status = 0;
    bool keep_alive = false;
    if (n == 0)
        return 0;
    rc = build_body(s, recs, lens, n);
    if (rc == 0 && s->gzip)
        rc = compress_body(s);
    if (rc != 0)
        return rc;
    const custos_buf_t *b = s->gzip ? &s->zbody : &s->body;
    /* a request on a reused connection that the server closed while idle gets one retry on a fresh connection */
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = s->conn.fd >= 0;
        if (reused && !custos_bclient_alive(&s->conn)) {
            custos_bclient_close(&s->conn);
            reused = false;
        }
        if (s->conn.fd < 0) {
            char err[256] = "";
            rc = custos_bclient_connect(&s->conn, s->url.host, s->url.port, s->tls, s->timeout_ms, err, sizeof(err));
            if (rc != 0) {
                if (s->last_status != rc)
                    CUSTOS_WARN("http sink: %s", err);
                s->last_status = rc;
                return rc;
            }
        }
        custos_buf_reset(&s->resp);
        rc = custos_bclient_http(&s->conn, "POST", s->host_hdr, s->path, s->headers, custos_buf_peek(b),
                                 custos_buf_size(b), HTTP_SINK_MAX_RESPONSE, s->timeout_ms, &status, &s->resp,
                                 &keep_alive);
        if (rc == 0 && !keep_alive)
            custos_bclient_close(&s->conn);
        if (rc != 0)
            custos_bclient_close(&s->conn);
        if (rc == CUSTOS_ECLOSED && reused)
            continue;
        break;
    }
    if (rc == 0 && (status < 200 || status > 299))
        rc = status == 413 ? CUSTOS_ETOOBIG : CUSTOS_EUNAVAIL;
    if (rc == 0 && s->format == CUSTOS_HTTP_SINK_ELASTICSEARCH && !es_bulk_ok(&s->resp))
        rc = CUSTOS_EPROTO;
    int key = rc == 0 ? 0 : (status ? status : rc);
    if (key != s->last_status) {
        if (rc == 0)
            CUSTOS_INFO("http sink %s: delivering again", s->host_hdr);
        else if (status)
            CUSTOS_WARN("http sink %s: receiver answered %d; the batch will be retried", s->host_hdr, status);
        else
            CUSTOS_WARN("http sink %s: %s; the batch will be retried", s->host_hdr, custos_strerror(rc));
    }
    s->last_status = key;
    return rc;
}

const custos_audit_sink_driver_t custos_audit_sink_http = {
    .type = "http",
    .open = http_open,
    .deliver = http_deliver,
    .close = http_close,
};
