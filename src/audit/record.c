/* SPDX-License-Identifier: Apache-2.0
 * Request record helpers and the JSON encoder (schema in docs/diagnostics.md). The only strings are ids, configured
 * names and static enum names; one with a character JSON must escape goes through custos_json_append_string. */
#include "audit/record.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/err.h"
#include "util/json.h"

static const char *const HEADER_NAMES[CUSTOS_AUDIT_HDR_COUNT] = {
    "authorization",
    "api-key",
    "ocp-apim-subscription-key",
    "x-ms-client-request-id",
    "x-request-id",
    "openai-organization",
    "openai-project",
    "user-agent",
    "x-forwarded-for",
    "traceparent",
};

void custos_audit_record_init(custos_audit_record_t *r)
{
    memset(r, 0, sizeof(*r));
    r->prompt_tokens = -1;
    r->completion_tokens = -1;
    r->ungrounded = -1;
    r->quota_remaining_requests = -1;
    r->quota_remaining_tokens = -1;
}

void custos_audit_copy_name(char *dst, size_t dstsize, const char *src)
{
    if (!dstsize)
        return;
    dst[0] = 0;
    if (!src)
        return;
    size_t n = strnlen(src, dstsize);
    if (n == 0 || n >= dstsize)
        return;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == ':' || c == '/'))
            return;
    }
    memcpy(dst, src, n);
    dst[n] = 0;
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

void custos_audit_set_api_version(custos_audit_record_t *r, const char *v, size_t len)
{
    r->api_version[0] = 0;
    if (!v)
        return;
    bool ok = false;
    if ((len == 7 && memcmp(v, "preview", 7) == 0) || (len == 6 && memcmp(v, "latest", 6) == 0) ||
        ((len == 10 || (len == 18 && memcmp(v + 10, "-preview", 8) == 0)) && digits(v, 4) && v[4] == '-' &&
         digits(v + 5, 2) && v[7] == '-' && digits(v + 8, 2)))
        ok = true;
    if (ok) {
        memcpy(r->api_version, v, len);
        r->api_version[len] = 0;
    }
}

void custos_audit_set_caller(custos_audit_record_t *r, const struct sockaddr *sa, socklen_t len, bool mask)
{
    r->caller_family = 0;
    memset(r->caller_addr, 0, sizeof(r->caller_addr));
    if (!sa || len < (socklen_t)sizeof(sa_family_t))
        return;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        r->caller_family = AF_INET;
        memcpy(r->caller_addr, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            r->caller_family = AF_INET;
            memcpy(r->caller_addr, (const uint8_t *)&s6->sin6_addr + 12, 4);
        } else {
            r->caller_family = AF_INET6;
            memcpy(r->caller_addr, &s6->sin6_addr, 16);
        }
    } else if (sa->sa_family == AF_UNIX) {
        r->caller_family = AF_UNIX;
    }
    if (mask && r->caller_family == AF_INET)
        r->caller_addr[3] = 0;
    else if (mask && r->caller_family == AF_INET6)
        memset(r->caller_addr + 8, 0, 8);
}

void custos_audit_note_header(custos_audit_record_t *r, const char *name, size_t len)
{
    for (unsigned i = 0; i < CUSTOS_AUDIT_HDR_COUNT; i++) {
        if (strlen(HEADER_NAMES[i]) == len && strncasecmp(name, HEADER_NAMES[i], len) == 0) {
            r->headers_present |= 1u << i;
            return;
        }
    }
}

const char *custos_audit_header_name(unsigned bit_index)
{
    return bit_index < CUSTOS_AUDIT_HDR_COUNT ? HEADER_NAMES[bit_index] : NULL;
}

const char *custos_audit_op_name(custos_audit_op_t op)
{
    switch (op) {
    case CUSTOS_AUDIT_OP_CHAT:
        return "ChatCompletions_Create";
    case CUSTOS_AUDIT_OP_COMPLETIONS:
        return "Completions_Create";
    case CUSTOS_AUDIT_OP_EMBEDDINGS:
        return "Embeddings_Create";
    case CUSTOS_AUDIT_OP_MODELS_LIST:
        return "Models_List";
    case CUSTOS_AUDIT_OP_MODELS_GET:
        return "Models_Get";
    case CUSTOS_AUDIT_OP_CS_ANALYZE_TEXT:
        return "ContentSafety_AnalyzeText";
    case CUSTOS_AUDIT_OP_CS_SHIELD_PROMPT:
        return "ContentSafety_ShieldPrompt";
    case CUSTOS_AUDIT_OP_CS_DETECT_GROUNDEDNESS:
        return "ContentSafety_DetectGroundedness";
    case CUSTOS_AUDIT_OP_CS_BLOCKLISTS:
        return "ContentSafety_Blocklists";
    case CUSTOS_AUDIT_OP_OTHER:
        break;
    }
    return "Other";
}

const char *custos_audit_api_name(custos_audit_api_t api)
{
    switch (api) {
    case CUSTOS_AUDIT_API_OPENAI:
        return "OpenAI";
    case CUSTOS_AUDIT_API_AZURE:
        return "Azure OpenAI";
    case CUSTOS_AUDIT_API_AZURE_V1:
        return "Azure OpenAI v1";
    case CUSTOS_AUDIT_API_CONTENT_SAFETY:
        return "Azure AI Content Safety";
    case CUSTOS_AUDIT_API_UNKNOWN:
        break;
    }
    return "Unknown";
}

/* The encoder writes through a cursor into room reserved once per record (ENC_ROOM), so each field costs a bounds
 * compare and an inlined copy, not a call: at ~1.2 KB and ~80 fields per record that took the sink thread's encoding
 * from ~1.1 µs to ~0.2 µs per record (bench/audit). Every write is still checked against the room's end; running out
 * is reported as CUSTOS_ETOOBIG and the buffer is left as it was. */
typedef struct enc {
    custos_buf_t *b;
    char *p, *end; /* cursor and end of the reserved room (one byte kept for the NUL) */
    size_t room;   /* what was reserved, reserved again after an escaped string */
    int rc;        /* first error; writes stop */
} enc_t;

/* Fixed text of a record (~1 KB of names and punctuation), 40 numbers of up to 20 digits, and every PII type twice
 * (name, count) with room to spare; strings are added per record. */
#define ENC_FIXED 4096

static inline void put(enc_t *e, const void *s, size_t n)
{
    if (__builtin_expect((size_t)(e->end - e->p) >= n, 1)) {
        memcpy(e->p, s, n);
        e->p += n;
    } else if (!e->rc) {
        e->rc = CUSTOS_ETOOBIG;
    }
}
#define PUT(e, lit) put((e), "" lit, sizeof(lit) - 1)

static inline void put_bool(enc_t *e, bool v)
{
    if (v)
        PUT(e, "true");
    else
        PUT(e, "false");
}

static void put_u64(enc_t *e, uint64_t v)
{
    char tmp[20], *q = tmp + sizeof(tmp);
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(e, q, (size_t)(tmp + sizeof(tmp) - q));
}

/* A number, or null when v is negative (unknown). */
static void put_i64(enc_t *e, int64_t v)
{
    if (v < 0)
        PUT(e, "null");
    else
        put_u64(e, (uint64_t)v);
}

/* A JSON string literal. Record strings are ids and configured names, so the common case is printable ASCII without
 * '"' or '\\': copied as is; anything else goes through the full escaper (util/json.c), after which the room is
 * reserved again. */
static void put_str(enc_t *e, const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            break;
    }
    if (!s[n]) {
        if ((size_t)(e->end - e->p) < n + 2) {
            if (!e->rc)
                e->rc = CUSTOS_ETOOBIG;
            e->end = e->p;
            return;
        }
        *e->p++ = '"';
        memcpy(e->p, s, n);
        e->p += n;
        *e->p++ = '"';
        return;
    }
    if (e->rc)
        return;
    custos_buf_t *b = e->b;
    b->len = (size_t)(e->p - b->data);
    int rc = custos_json_append_string(b, s, strlen(s));
    if (rc == 0)
        rc = custos_buf_reserve(b, e->room);
    if (rc) {
        e->rc = rc;
        e->end = e->p; /* nothing more is written */
        return;
    }
    e->p = b->data + b->len;
    e->end = b->data + b->cap - 1;
}

/* A JSON string, or null when s is empty. */
static void put_opt_str(enc_t *e, const char *s)
{
    if (!s || !s[0])
        PUT(e, "null");
    else
        put_str(e, s);
}

/* RFC 3339 UTC with milliseconds: "2026-11-28T19:09:55.123Z" (quoted). The seconds part is cached per thread (two
 * entries: a record carries a request and a response time). */
static void put_time(enc_t *e, uint64_t ms)
{
    static _Thread_local struct {
        time_t sec;
        int len;
        char text[32]; /* "YYYY-MM-DDTHH:MM:SS with the opening quote */
    } cache[2] = {{(time_t)-1, 0, ""}, {(time_t)-1, 0, ""}};
    static _Thread_local unsigned next;
    time_t t = (time_t)(ms / 1000);
    int k = cache[0].sec == t ? 0 : cache[1].sec == t ? 1 : -1;
    if (k < 0) {
        struct tm tm;
        k = (int)(next++ & 1);
        gmtime_r(&t, &tm);
        cache[k].len = snprintf(cache[k].text, sizeof(cache[k].text), "\"%04d-%02d-%02dT%02d:%02d:%02d",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cache[k].sec = t;
    }
    unsigned frac = (unsigned)(ms % 1000);
    char tail[6] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10), 'Z', '"'};
    put(e, cache[k].text, (size_t)cache[k].len);
    put(e, tail, sizeof(tail));
}

static void put_caller(enc_t *e, const custos_audit_record_t *r)
{
    char s[INET6_ADDRSTRLEN];
    if (r->caller_family == AF_INET) { /* glibc's inet_ntop formats IPv4 with sprintf: slow */
        PUT(e, "\"");
        for (int i = 0; i < 4; i++) {
            put_u64(e, r->caller_addr[i]);
            if (i < 3)
                PUT(e, ".");
        }
        PUT(e, "\"");
    } else if (r->caller_family == AF_INET6 && inet_ntop(AF_INET6, r->caller_addr, s, sizeof(s))) {
        put_str(e, s);
    } else if (r->caller_family == AF_UNIX) {
        PUT(e, "\"unix\"");
    } else {
        PUT(e, "null");
    }
}

/* prompt or completion: severities, filtered, PII count and types */
static void put_direction(enc_t *e, const int8_t sev[4], bool filtered, uint32_t pii, const uint16_t *types)
{
    PUT(e, "{\"hate\":");
    put_i64(e, sev[0]);
    PUT(e, ",\"sexual\":");
    put_i64(e, sev[1]);
    PUT(e, ",\"violence\":");
    put_i64(e, sev[2]);
    PUT(e, ",\"selfHarm\":");
    put_i64(e, sev[3]);
    PUT(e, ",\"filtered\":");
    put_bool(e, filtered);
    PUT(e, ",\"pii\":");
    put_u64(e, pii);
    PUT(e, ",\"piiTypes\":{");
    bool first = true;
    for (int t = 0; t < CUSTOS_PII_NTYPES; t++) {
        if (!types[t])
            continue;
        if (!first)
            PUT(e, ",");
        first = false;
        put_str(e, custos_pii_type_name(t));
        PUT(e, ":");
        put_u64(e, types[t]);
    }
    PUT(e, "}}");
}

static void put_safety(enc_t *e, const custos_audit_record_t *r)
{
    if (!r->safety_screened) {
        PUT(e, "null");
        return;
    }
    PUT(e, "{\"prompt\":");
    put_direction(e, r->prompt_severity, r->prompt_filtered, r->pii_prompt, r->pii_prompt_types);
    PUT(e, ",\"completion\":");
    put_direction(e, r->completion_severity, r->completion_filtered, r->pii_completion, r->pii_completion_types);
    PUT(e, ",\"jailbreak\":");
    put_bool(e, r->jailbreak_detected);
    PUT(e, ",\"indirectAttack\":");
    put_bool(e, r->indirect_attack_detected);
    PUT(e, ",\"blocklistHits\":");
    put_u64(e, r->blocklist_hits);
    PUT(e, ",\"error\":");
    put_bool(e, r->filter_error);
    PUT(e, ",\"ungrounded\":");
    if (r->ungrounded < 0)
        PUT(e, "null");
    else
        put_bool(e, r->ungrounded != 0);
    PUT(e, ",\"guard\":");
    if (!r->guard_asked) {
        PUT(e, "null");
    } else {
        PUT(e, "{\"error\":");
        put_bool(e, r->guard_error);
        PUT(e, ",\"disagreed\":");
        put_bool(e, r->guard_disagreed);
        PUT(e, "}");
    }
    PUT(e, "}");
}

static void put_quota(enc_t *e, const custos_audit_record_t *r)
{
    if (r->quota == CUSTOS_AUDIT_QUOTA_NONE) {
        PUT(e, "null");
        return;
    }
    if (r->quota == CUSTOS_AUDIT_QUOTA_ADMITTED)
        PUT(e, "{\"outcome\":\"admitted\"");
    else if (r->quota == CUSTOS_AUDIT_QUOTA_LIMITED)
        PUT(e, "{\"outcome\":\"limited\"");
    else
        PUT(e, "{\"outcome\":\"unavailable\"");
    PUT(e, ",\"limit\":");
    if (r->quota != CUSTOS_AUDIT_QUOTA_LIMITED)
        PUT(e, "null");
    else if (r->quota_tokens)
        PUT(e, "\"tokens\"");
    else
        PUT(e, "\"requests\"");
    PUT(e, ",\"remainingRequests\":");
    put_i64(e, r->quota_remaining_requests);
    PUT(e, ",\"remainingTokens\":");
    put_i64(e, r->quota_remaining_tokens);
    PUT(e, "}");
}

int custos_audit_record_encode(const custos_audit_record_t *r, const char *resource_id, custos_buf_t *out)
{
    if (!resource_id)
        resource_id = "";
    /* strings unescaped fit in the record's own size (every string field is in it; two appear twice) */
    size_t room = ENC_FIXED + 2 * sizeof(*r) + strlen(resource_id);
    int rc = custos_buf_reserve(out, room);
    if (rc)
        return rc;
    size_t start = out->len - out->off; /* live bytes before the record (an escaped string may compact the buffer) */
    enc_t e = {.b = out, .p = out->data + out->len, .end = out->data + out->cap - 1, .room = room};
    uint64_t total_ms = r->total_us / 1000, up_ms = r->upstream_us / 1000;
    uint64_t overhead_us = r->total_us > r->upstream_us ? r->total_us - r->upstream_us : 0;
    uint64_t status = r->status > 0 ? (uint64_t)r->status : 0;

    PUT(&e, "{\"time\":");
    put_time(&e, r->time_ms);
    PUT(&e, ",\"resourceId\":");
    put_str(&e, resource_id);
    PUT(&e, ",\"category\":\"RequestResponse\",\"operationName\":");
    put_str(&e, custos_audit_op_name(r->op));
    PUT(&e, ",\"callerIpAddress\":");
    put_caller(&e, r);
    PUT(&e, ",\"correlationId\":");
    put_str(&e, r->request_id);
    PUT(&e, ",\"durationMs\":");
    put_u64(&e, total_ms);
    PUT(&e, ",\"resultSignature\":\"");
    put_u64(&e, status);
    PUT(&e, "\",\"properties\":{\"apiName\":");
    put_str(&e, custos_audit_api_name(r->api));
    PUT(&e, ",\"requestTime\":");
    put_time(&e, r->request_time_ms);
    PUT(&e, ",\"requestLength\":");
    put_u64(&e, r->request_bytes);
    PUT(&e, ",\"responseTime\":");
    put_time(&e, r->time_ms);
    PUT(&e, ",\"responseLength\":");
    put_u64(&e, r->response_bytes);
    PUT(&e, ",\"objectId\":");
    put_opt_str(&e, r->principal_id);
    if (r->stream)
        PUT(&e, ",\"streamType\":\"Streaming\"");
    else
        PUT(&e, ",\"streamType\":\"Non-Streaming\"");
    PUT(&e, ",\"modelDeploymentName\":");
    put_opt_str(&e, r->deployment);
    PUT(&e, ",\"modelName\":");
    put_opt_str(&e, r->model);
    PUT(&e, ",\"modelVersion\":null},\"custos\":{\"schemaVersion\":\"" CUSTOS_AUDIT_SCHEMA_VERSION "\",\"requestId\":");
    put_str(&e, r->request_id);
    PUT(&e, ",\"apiVersion\":");
    put_opt_str(&e, r->api_version);
    PUT(&e, ",\"principalId\":");
    put_opt_str(&e, r->principal_id);
    PUT(&e, ",\"authType\":");
    put_opt_str(&e, r->auth_type);
    PUT(&e, ",\"backend\":");
    put_opt_str(&e, r->backend);
    PUT(&e, ",\"region\":");
    put_opt_str(&e, r->region);
    PUT(&e, ",\"dataZone\":");
    put_opt_str(&e, r->data_zone);
    PUT(&e, ",\"status\":");
    put_u64(&e, status);
    PUT(&e, ",\"totalMs\":");
    put_u64(&e, total_ms);
    PUT(&e, ",\"upstreamMs\":");
    put_u64(&e, up_ms);
    PUT(&e, ",\"overheadUs\":");
    put_u64(&e, overhead_us);
    PUT(&e, ",\"tokens\":{\"prompt\":");
    put_i64(&e, r->prompt_tokens);
    PUT(&e, ",\"completion\":");
    put_i64(&e, r->completion_tokens);
    PUT(&e, ",\"total\":");
    if (r->prompt_tokens < 0 && r->completion_tokens < 0)
        PUT(&e, "null");
    else
        put_u64(&e, (uint64_t)(r->prompt_tokens > 0 ? r->prompt_tokens : 0) +
                        (uint64_t)(r->completion_tokens > 0 ? r->completion_tokens : 0));
    PUT(&e, "},\"stream\":");
    put_bool(&e, r->stream);
    PUT(&e, ",\"retries\":");
    put_u64(&e, r->retries);
    PUT(&e, ",\"headers\":[");
    bool first = true;
    for (unsigned i = 0; i < CUSTOS_AUDIT_HDR_COUNT; i++) {
        if (!(r->headers_present & (1u << i)))
            continue;
        if (!first)
            PUT(&e, ",");
        first = false;
        put_str(&e, HEADER_NAMES[i]);
    }
    PUT(&e, "],\"safety\":");
    put_safety(&e, r);
    PUT(&e, ",\"useCase\":");
    if (r->use_case[0]) {
        PUT(&e, "{\"id\":");
        put_str(&e, r->use_case);
        PUT(&e, ",\"tier\":");
        put_opt_str(&e, r->tier);
        PUT(&e, "}");
    } else {
        PUT(&e, "null");
    }
    PUT(&e, ",\"quota\":");
    put_quota(&e, r);
    PUT(&e, "}}");
    if (e.rc) {
        out->len = out->off + start;
        out->data[out->len] = 0;
        return e.rc;
    }
    out->len = (size_t)(e.p - out->data);
    out->data[out->len] = 0;
    return 0;
}
