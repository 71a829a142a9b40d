/* SPDX-License-Identifier: Apache-2.0
 * Request record helpers and the JSON encoder (schema in docs/diagnostics.md). Every string goes through
 * custos_json_append_string; the only strings are ids, configured names and static enum names. */
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

/* RFC 3339 UTC with milliseconds: "2026-11-28T19:09:55.123Z" (quoted). The seconds part is cached per thread (two
 * entries: a record carries a request and a response time). */
static int append_time(custos_buf_t *b, uint64_t ms)
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
    char tail[7] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10), 'Z', '"', 0};
    int rc = custos_buf_append(b, cache[k].text, (size_t)cache[k].len);
    return rc ? rc : custos_buf_append(b, tail, 6);
}

/* A JSON string literal. Record strings are ids and configured names, so the common case is printable ASCII without
 * '"' or '\\': appended as is; anything else goes through the full escaper. */
static int append_str(custos_buf_t *b, const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return custos_json_append_string(b, s, strlen(s));
    }
    int rc = custos_buf_reserve(b, n + 2);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len++] = '"';
    b->data[b->len] = 0;
    return 0;
}

/* A JSON string, or null when s is empty. */
static int append_opt_str(custos_buf_t *b, const char *s)
{
    if (!s || !s[0])
        return custos_buf_append_lit(b, "null");
    return append_str(b, s);
}

static int append_i64(custos_buf_t *b, int64_t v)
{
    if (v < 0)
        return custos_buf_append_lit(b, "null");
    return custos_buf_append_u64(b, (unsigned long long)v);
}

static int append_caller(custos_buf_t *b, const custos_audit_record_t *r)
{
    char s[INET6_ADDRSTRLEN];
    if (r->caller_family == AF_INET) { /* glibc's inet_ntop formats IPv4 with sprintf: slow */
        int rc = custos_buf_append_lit(b, "\"");
        for (int i = 0; i < 4 && rc == 0; i++) {
            rc = custos_buf_append_u64(b, r->caller_addr[i]);
            if (rc == 0)
                rc = i < 3 ? custos_buf_append_lit(b, ".") : custos_buf_append_lit(b, "\"");
        }
        return rc;
    }
    if (r->caller_family == AF_INET6 && inet_ntop(AF_INET6, r->caller_addr, s, sizeof(s)))
        return append_str(b, s);
    if (r->caller_family == AF_UNIX)
        return custos_buf_append_lit(b, "\"unix\"");
    return custos_buf_append_lit(b, "null");
}

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((rc = (x)) != 0)                                                                                           \
            goto fail;                                                                                                 \
    } while (0)
#define LIT(s) TRY(custos_buf_append_lit(out, s))
#define STR(s) TRY(append_str(out, (s)))
#define OSTR(s) TRY(append_opt_str(out, (s)))
#define U64(v) TRY(custos_buf_append_u64(out, (unsigned long long)(v)))

int custos_audit_record_encode(const custos_audit_record_t *r, const char *resource_id, custos_buf_t *out)
{
    int rc = 0;
    size_t start = out->len;
    uint64_t total_ms = r->total_us / 1000, up_ms = r->upstream_us / 1000;
    uint64_t overhead_us = r->total_us > r->upstream_us ? r->total_us - r->upstream_us : 0;

    LIT("{\"time\":");
    TRY(append_time(out, r->time_ms));
    LIT(",\"resourceId\":");
    STR(resource_id ? resource_id : "");
    LIT(",\"category\":\"RequestResponse\",\"operationName\":");
    STR(custos_audit_op_name(r->op));
    LIT(",\"callerIpAddress\":");
    TRY(append_caller(out, r));
    LIT(",\"correlationId\":");
    STR(r->request_id);
    LIT(",\"durationMs\":");
    U64(total_ms);
    LIT(",\"resultSignature\":\"");
    U64(r->status > 0 ? r->status : 0);
    LIT("\"");
    LIT(",\"properties\":{\"apiName\":");
    STR(custos_audit_api_name(r->api));
    LIT(",\"requestTime\":");
    TRY(append_time(out, r->request_time_ms));
    LIT(",\"requestLength\":");
    U64(r->request_bytes);
    LIT(",\"responseTime\":");
    TRY(append_time(out, r->time_ms));
    LIT(",\"responseLength\":");
    U64(r->response_bytes);
    LIT(",\"objectId\":");
    OSTR(r->principal_id);
    LIT(",\"streamType\":");
    STR(r->stream ? "Streaming" : "Non-Streaming");
    LIT(",\"modelDeploymentName\":");
    OSTR(r->deployment);
    LIT(",\"modelName\":");
    OSTR(r->model);
    LIT(",\"modelVersion\":null},\"custos\":{\"schemaVersion\":\"" CUSTOS_AUDIT_SCHEMA_VERSION "\",\"requestId\":");
    STR(r->request_id);
    LIT(",\"apiVersion\":");
    OSTR(r->api_version);
    LIT(",\"principalId\":");
    OSTR(r->principal_id);
    LIT(",\"authType\":");
    OSTR(r->auth_type);
    LIT(",\"backend\":");
    OSTR(r->backend);
    LIT(",\"region\":");
    OSTR(r->region);
    LIT(",\"dataZone\":");
    OSTR(r->data_zone);
    LIT(",\"status\":");
    U64(r->status > 0 ? r->status : 0);
    LIT(",\"totalMs\":");
    U64(total_ms);
    LIT(",\"upstreamMs\":");
    U64(up_ms);
    LIT(",\"overheadUs\":");
    U64(overhead_us);
    LIT(",\"tokens\":{\"prompt\":");
    TRY(append_i64(out, r->prompt_tokens));
    LIT(",\"completion\":");
    TRY(append_i64(out, r->completion_tokens));
    LIT(",\"total\":");
    if (r->prompt_tokens < 0 && r->completion_tokens < 0)
        LIT("null");
    else
        U64((r->prompt_tokens > 0 ? r->prompt_tokens : 0) + (r->completion_tokens > 0 ? r->completion_tokens : 0));
    LIT("},\"stream\":");
    if (r->stream)
        LIT("true");
    else
        LIT("false");
    LIT(",\"retries\":");
    U64(r->retries);
    LIT(",\"headers\":[");
    bool first = true;
    for (unsigned i = 0; i < CUSTOS_AUDIT_HDR_COUNT; i++) {
        if (!(r->headers_present & (1u << i)))
            continue;
        if (!first)
            LIT(",");
        first = false;
        STR(HEADER_NAMES[i]);
    }
    LIT("],\"safety\":");
    if (!r->safety_screened) {
        LIT("null");
    } else {
        static const char *const cats[4] = {"hate", "sexual", "violence", "selfHarm"};
        for (int d = 0; d < 2; d++) {
            const int8_t *sev = d == 0 ? r->prompt_severity : r->completion_severity;
            TRY(custos_buf_append_str(out, d == 0 ? "{\"prompt\":{" : ",\"completion\":{"));
            for (int k = 0; k < 4; k++) {
                if (k)
                    LIT(",");
                LIT("\"");
                TRY(custos_buf_append_str(out, cats[k]));
                LIT("\":");
                TRY(append_i64(out, sev[k]));
            }
            LIT(",\"filtered\":");
            TRY(custos_buf_append_str(out, (d == 0 ? r->prompt_filtered : r->completion_filtered) ? "true" : "false"));
            LIT(",\"pii\":");
            U64(d == 0 ? r->pii_prompt : r->pii_completion);
            LIT(",\"piiTypes\":{");
            const uint16_t *types = d == 0 ? r->pii_prompt_types : r->pii_completion_types;
            bool tfirst = true;
            for (int t = 0; t < CUSTOS_PII_NTYPES; t++) {
                if (!types[t])
                    continue;
                if (!tfirst)
                    LIT(",");
                tfirst = false;
                STR(custos_pii_type_name(t));
                LIT(":");
                U64(types[t]);
            }
            LIT("}}");
        }
        LIT(",\"jailbreak\":");
        TRY(custos_buf_append_str(out, r->jailbreak_detected ? "true" : "false"));
        LIT(",\"indirectAttack\":");
        TRY(custos_buf_append_str(out, r->indirect_attack_detected ? "true" : "false"));
        LIT(",\"blocklistHits\":");
        U64(r->blocklist_hits);
        LIT(",\"error\":");
        TRY(custos_buf_append_str(out, r->filter_error ? "true" : "false"));
        LIT(",\"ungrounded\":");
        TRY(custos_buf_append_str(out, r->ungrounded < 0 ? "null" : r->ungrounded ? "true" : "false"));
        LIT(",\"guard\":");
        if (!r->guard_asked) {
            LIT("null");
        } else {
            LIT("{\"error\":");
            TRY(custos_buf_append_str(out, r->guard_error ? "true" : "false"));
            LIT(",\"disagreed\":");
            TRY(custos_buf_append_str(out, r->guard_disagreed ? "true" : "false"));
            LIT("}");
        }
        LIT("}");
    }
    LIT(",\"useCase\":");
    if (r->use_case[0]) {
        LIT("{\"id\":");
        STR(r->use_case);
        LIT(",\"tier\":");
        OSTR(r->tier);
        LIT("}");
    } else {
        LIT("null");
    }
    LIT(",\"quota\":");
    if (r->quota == CUSTOS_AUDIT_QUOTA_NONE) {
        LIT("null");
    } else {
        LIT("{\"outcome\":");
        TRY(custos_buf_append_str(out, r->quota == CUSTOS_AUDIT_QUOTA_ADMITTED  ? "\"admitted\""
                                       : r->quota == CUSTOS_AUDIT_QUOTA_LIMITED ? "\"limited\""
                                                                                : "\"unavailable\""));
        LIT(",\"limit\":");
        if (r->quota == CUSTOS_AUDIT_QUOTA_LIMITED)
            TRY(custos_buf_append_str(out, r->quota_tokens ? "\"tokens\"" : "\"requests\""));
        else
            LIT("null");
        LIT(",\"remainingRequests\":");
        TRY(append_i64(out, r->quota_remaining_requests));
        LIT(",\"remainingTokens\":");
        TRY(append_i64(out, r->quota_remaining_tokens));
        LIT("}");
    }
    LIT("}}");
    return 0;
fail:
    if (out->data && out->len >= start) {
        out->len = start;
        out->data[start] = 0;
    }
    return rc;
}
