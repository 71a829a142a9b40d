/* SPDX-License-Identifier: Apache-2.0
 * The request record (docs/diagnostics.md): a small, flat struct of metadata only, and its JSON-lines encoder.
 * By construction no field can carry prompt, completion, document or header-value text: strings are ids, names from
 * the configuration, or values checked against a strict pattern; header names come from a fixed allowlist (bits). */
#ifndef CUSTOS_AUDIT_RECORD_H
#define CUSTOS_AUDIT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "safety/pii.h"
#include "util/buf.h"

#define CUSTOS_AUDIT_SCHEMA_VERSION "1.2"
#define CUSTOS_AUDIT_NAME_MAX 64   /* deployment, backend, region, data zone, principal: [A-Za-z0-9._-] */
#define CUSTOS_AUDIT_MODEL_MAX 256 /* model names from the configuration */

/* Operation (operationName). Mirrors api/routes.h custos_op_t for the operations that produce records. */
typedef enum {
    CUSTOS_AUDIT_OP_OTHER = 0, /* unknown path or internal */
    CUSTOS_AUDIT_OP_CHAT,
    CUSTOS_AUDIT_OP_COMPLETIONS,
    CUSTOS_AUDIT_OP_EMBEDDINGS,
    CUSTOS_AUDIT_OP_MODELS_LIST,
    CUSTOS_AUDIT_OP_MODELS_GET,
    CUSTOS_AUDIT_OP_CS_ANALYZE_TEXT, /* Content Safety API (docs/content-safety-api.md) */
    CUSTOS_AUDIT_OP_CS_SHIELD_PROMPT,
    CUSTOS_AUDIT_OP_CS_DETECT_GROUNDEDNESS,
    CUSTOS_AUDIT_OP_CS_BLOCKLISTS, /* blocklist reads and changes */
} custos_audit_op_t;

/* API family (properties.apiName). */
typedef enum {
    CUSTOS_AUDIT_API_UNKNOWN = 0,
    CUSTOS_AUDIT_API_OPENAI,         /* /v1/... */
    CUSTOS_AUDIT_API_AZURE,          /* /openai/deployments/{d}/... */
    CUSTOS_AUDIT_API_AZURE_V1,       /* /openai/v1/... */
    CUSTOS_AUDIT_API_CONTENT_SAFETY, /* /contentsafety/... */
} custos_audit_api_t;

/* Quota outcome (custos.quota.outcome, docs/quotas.md). */
typedef enum {
    CUSTOS_AUDIT_QUOTA_NONE = 0,    /* no limit applied: encoded as null */
    CUSTOS_AUDIT_QUOTA_ADMITTED,    /* within every limit that applied */
    CUSTOS_AUDIT_QUOTA_LIMITED,     /* refused with 429 */
    CUSTOS_AUDIT_QUOTA_UNAVAILABLE, /* refused with 503: shared store down, quotas.redis.on_failure closed */
} custos_audit_quota_t;

/* Request header NAMES that may be recorded as present (never their values). Bit i = header i of this list. */
typedef enum {
    CUSTOS_AUDIT_HDR_AUTHORIZATION = 1u << 0,
    CUSTOS_AUDIT_HDR_API_KEY = 1u << 1,
    CUSTOS_AUDIT_HDR_OCP_APIM_SUBSCRIPTION_KEY = 1u << 2,
    CUSTOS_AUDIT_HDR_X_MS_CLIENT_REQUEST_ID = 1u << 3,
    CUSTOS_AUDIT_HDR_X_REQUEST_ID = 1u << 4,
    CUSTOS_AUDIT_HDR_OPENAI_ORGANIZATION = 1u << 5,
    CUSTOS_AUDIT_HDR_OPENAI_PROJECT = 1u << 6,
    CUSTOS_AUDIT_HDR_USER_AGENT = 1u << 7,
    CUSTOS_AUDIT_HDR_X_FORWARDED_FOR = 1u << 8,
    CUSTOS_AUDIT_HDR_TRACEPARENT = 1u << 9,
} custos_audit_header_bit_t;
#define CUSTOS_AUDIT_HDR_COUNT 10

/* One finished request. Plain data (copied by value into sink queues); every string is NUL-terminated and empty
 * when unknown. Integer fields use -1 for "unknown" where the type is signed (encoded as null). */
typedef struct custos_audit_record {
    uint64_t time_ms;         /* wall clock (ms since the epoch) when the response finished */
    uint64_t request_time_ms; /* wall clock when the request's first byte arrived */
    char request_id[37];      /* custos request id (UUID v4; also correlationId, x-request-id, apim-request-id) */
    custos_audit_op_t op;
    custos_audit_api_t api;
    char api_version[24]; /* Azure api-version when it matches YYYY-MM-DD[-preview], "preview" or "latest"; else "" */
    char principal_id[CUSTOS_AUDIT_NAME_MAX + 1]; /* an id, never a name or key; "" until identity lands */
    char auth_type[16];                           /* "api_key", "entra", ...; "" until identity lands */
    int caller_family;                            /* AF_INET, AF_INET6, AF_UNIX or 0 */
    uint8_t caller_addr[16];                      /* IPv4 in the first 4 bytes; masked already when configured */
    char deployment[CUSTOS_AUDIT_NAME_MAX + 1];   /* a configured deployment name, or "" (unknown names never) */
    char model[CUSTOS_AUDIT_MODEL_MAX + 1];       /* the deployment's model (configuration), or "" */
    char backend[CUSTOS_AUDIT_NAME_MAX + 1];      /* configured backend of the last attempt, or "" */
    char region[CUSTOS_AUDIT_NAME_MAX + 1];       /* that backend's region, or "" */
    char data_zone[CUSTOS_AUDIT_NAME_MAX + 1];    /* that backend's data zone, or "" */
    int status;                                   /* HTTP status sent to the client (499: client went away) */
    uint64_t total_us;                            /* first request byte to end of response */
    uint64_t upstream_us;                         /* time in upstream attempts and backoff */
    uint64_t request_bytes;                       /* request body bytes */
    uint64_t response_bytes;                      /* response body bytes relayed from the backend (0 if none) */
    int64_t prompt_tokens, completion_tokens;     /* from the backend's usage, -1 unknown */
    bool stream;                                  /* the client asked for a stream */
    unsigned retries;                             /* backend attempts after the first */
    uint32_t headers_present;                     /* custos_audit_header_bit_t bits */
    /* content filtering (docs/content-filtering.md); all unset when safety_screened is false */
    bool safety_screened;
    int8_t prompt_severity[4];     /* hate, sexual, violence, self_harm, 0..7; -1 = not screened */
    int8_t completion_severity[4]; /* max over the screened completion text; -1 = not screened */
    bool prompt_filtered, completion_filtered, jailbreak_detected, indirect_attack_detected, filter_error;
    uint32_t pii_prompt, pii_completion, blocklist_hits;                                   /* counts only */
    uint16_t pii_prompt_types[CUSTOS_PII_NTYPES], pii_completion_types[CUSTOS_PII_NTYPES]; /* per custos_pii_type_t */
    int8_t ungrounded; /* groundedness of the answer: -1 not checked, 0 grounded, 1 ungrounded material detected */
    /* external guard models (docs/guard-models.md): asked at least once, some gave no verdict, some decided
     * otherwise than the in-process model */
    bool guard_asked, guard_error, guard_disagreed;
    /* use case (docs/reviews.md): a configured use-case id and its tier ("high", "elevated", "standard"), or "" */
    char use_case[CUSTOS_AUDIT_NAME_MAX + 1];
    char tier[12];
    /* quota (docs/quotas.md) */
    custos_audit_quota_t quota;
    bool quota_tokens;                /* the refusing limit was tokens (else requests); LIMITED only */
    int64_t quota_remaining_requests; /* after this request, smallest over the limits; -1 none/unknown */
    int64_t quota_remaining_tokens;
} custos_audit_record_t;

/* Fills every field with "unknown" (zeros, "" and -1 tokens). */
void custos_audit_record_init(custos_audit_record_t *r);

/* Copies src into dst (capacity dstsize) if it is non-NULL and matches [A-Za-z0-9._:/-]{1,dstsize-1}; otherwise sets
 * dst to "". Used for names from the configuration (defence in depth: a value that could be text is never copied). */
void custos_audit_copy_name(char *dst, size_t dstsize, const char *src);

/* Sets r->api_version from a client-supplied api-version query value (len bytes): only strict date / preview /
 * latest forms are kept, anything else becomes "". */
void custos_audit_set_api_version(custos_audit_record_t *r, const char *v, size_t len);

/* Sets the caller address from a socket address, masking the last IPv4 octet and the IPv6 interface id (beyond /64)
 * when mask is true. IPv4-mapped IPv6 addresses are recorded as IPv4. */
void custos_audit_set_caller(custos_audit_record_t *r, const struct sockaddr *sa, socklen_t len, bool mask);

/* Sets r->headers_present from header names (case-insensitive match against the allowlist). */
void custos_audit_note_header(custos_audit_record_t *r, const char *name, size_t len);

/* Appends the record as one JSON object (no trailing newline) to out. resource_id (may be NULL: "") names this
 * gateway instance. Pure; thread-safe. Returns 0, CUSTOS_ETOOBIG or CUSTOS_ENOMEM. */
int custos_audit_record_encode(const custos_audit_record_t *r, const char *resource_id, custos_buf_t *out);

/* Static names used by the encoder. */
const char *custos_audit_op_name(custos_audit_op_t op); /* "ChatCompletions_Create", ... */
const char *custos_audit_api_name(custos_audit_api_t api);
const char *custos_audit_header_name(unsigned bit_index); /* lower-case allowlisted name, or NULL */

#endif
