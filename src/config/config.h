/* SPDX-License-Identifier: Apache-2.0
 * custos configuration: one YAML (or JSON) file validated into an immutable, refcounted snapshot.
 * Reference of every key: docs/config.md. Errors read "FILE:LINE:COLUMN: message" (1-based). */
#ifndef CUSTOS_CONFIG_CONFIG_H
#define CUSTOS_CONFIG_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/cidr.h"
#include "util/log.h"

/* TLS 1.2 cipher list used when a listener's tls.ciphers is absent (OpenSSL syntax). */
#define CUSTOS_TLS_DEFAULT_CIPHERS                                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                         \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define CUSTOS_CONFIG_MAX_BYTES ((size_t)4 * 1024 * 1024) /* larger config documents are refused */
#define CUSTOS_CONFIG_MAX_DEPTH 64                        /* deeper YAML nesting is refused */
#define CUSTOS_CONFIG_MAX_LISTENERS 16
#define CUSTOS_CONFIG_MAX_BACKENDS 1024
#define CUSTOS_CONFIG_MAX_DEPLOYMENTS 1024
#define CUSTOS_CONFIG_MAX_API_KEYS 10000
#define CUSTOS_CONFIG_MAX_DEPLOYMENT_BACKENDS 64
#define CUSTOS_CONFIG_DEFAULT_AZURE_API_VERSION "2024-10-21"

typedef struct custos_server_config {
    unsigned workers;             /* 0 = one per online CPU; <= 256 */
    uint32_t drain_timeout_ms;    /* graceful shutdown budget */
    custos_log_level_t log_level; /* operational log threshold */
} custos_server_config_t;

typedef struct custos_tls_config {
    char *cert;      /* PEM certificate chain path (resolved, readable at load) */
    char *key;       /* PEM private key path (resolved, readable at load) */
    int min_version; /* OpenSSL protocol number: 0x0303 (TLS1_2_VERSION) or 0x0304 (TLS1_3_VERSION) */
    char *ciphers;   /* TLS 1.2 cipher list; never NULL (CUSTOS_TLS_DEFAULT_CIPHERS by default) */
    char *client_ca; /* mutual TLS: PEM CA bundle path (resolved, readable at load); NULL = no client certs */
} custos_tls_config_t;

typedef enum { CUSTOS_ADDR_TCP = 0, CUSTOS_ADDR_UNIX } custos_addr_kind_t;

typedef struct custos_listener_config {
    char *address; /* as written: "HOST:PORT", "[V6]:PORT" or "unix:/path" */
    custos_addr_kind_t kind;
    char *host;               /* TCP: host without brackets ("0.0.0.0", "::1", "localhost"); NULL for unix */
    uint16_t port;            /* TCP: 1..65535; 0 for unix */
    char *unix_path;          /* unix: absolute socket path (< 108 bytes); NULL for TCP */
    bool loopback;            /* unix socket, 127.0.0.0/8, ::1 or localhost */
    bool insecure;            /* plain HTTP explicitly allowed on a non-loopback address */
    custos_tls_config_t *tls; /* NULL = plain HTTP */
} custos_listener_config_t;

typedef struct custos_limits_config {
    size_t max_header_bytes;    /* whole request head */
    unsigned max_headers;       /* header fields per request */
    size_t max_body_bytes;      /* request body */
    size_t max_url_bytes;       /* request target */
    unsigned max_json_depth;    /* request JSON nesting */
    size_t max_response_bytes;  /* upstream non-streamed response */
    size_t max_sse_event_bytes; /* one upstream SSE event */
    uint32_t header_timeout_ms; /* to receive the request head */
    uint32_t body_timeout_ms;   /* to receive the request body */
    uint32_t idle_timeout_ms;   /* keep-alive idle between requests */
    unsigned max_connections;   /* client connections per worker */
} custos_limits_config_t;

typedef struct custos_upstream_config {
    uint32_t connect_timeout_ms;
    uint32_t first_byte_timeout_ms;
    uint32_t idle_timeout_ms; /* between bytes of a response */
    unsigned max_attempts;    /* total attempts per request across retries and failover, 1..10 */
    uint32_t backoff_base_ms;
    uint32_t backoff_max_ms;     /* >= backoff_base_ms */
    uint32_t max_retry_after_ms; /* a longer upstream retry-after is not waited for */
    unsigned pool_max_idle;      /* idle keep-alive connections per backend per worker */
    /* upstream.outlier_detection (route/health.h): consecutive failed attempts that eject a backend (0 = off),
     * for base_ejection_ms × 2^n (n = ejections in a row), at most max_ejection_ms */
    unsigned outlier_consecutive_failures;
    uint32_t outlier_base_ejection_ms;
    uint32_t outlier_max_ejection_ms; /* >= outlier_base_ejection_ms */
} custos_upstream_config_t;

/* RBAC roles (bit set). Names: inference.user, contributor, reviewer, auditor, admin. */
enum {
    CUSTOS_ROLE_INFERENCE_USER = 1u << 0, /* call deployments in scope */
    CUSTOS_ROLE_CONTRIBUTOR = 1u << 1,    /* manage deployments, policies, blocklists */
    CUSTOS_ROLE_REVIEWER = 1u << 2,       /* decide held outputs */
    CUSTOS_ROLE_AUDITOR = 1u << 3,        /* read logs and evidence */
    CUSTOS_ROLE_ADMIN = 1u << 4,          /* everything, including keys and role assignments */
};
#define CUSTOS_CONFIG_MAX_ROLE_ASSIGNMENTS 10000
#define CUSTOS_CONFIG_MAX_ROLE_MAP 1000
#define CUSTOS_CONFIG_MAX_CA_POLICIES 256
#define CUSTOS_CONFIG_MAX_CA_LIST 256 /* entries in one conditional-access list (deployments, networks, claims) */
#define CUSTOS_CONFIG_MAX_SCOPE 80    /* "/" or "/deployments/{name}" */

typedef struct custos_api_key_config {
    char *name;               /* unique, [A-Za-z0-9._-]{1,64} */
    unsigned char sha256[32]; /* SHA-256 of the key; the plaintext is never kept */
    char *principal;          /* principal the key acts as; default "key:<name>" */
    unsigned roles;           /* CUSTOS_ROLE_* set; default inference.user */
    char *scope;              /* "/" or "/deployments/{name}"; default "/" */
} custos_api_key_config_t;

typedef enum { CUSTOS_RA_PRINCIPAL = 0, CUSTOS_RA_GROUP, CUSTOS_RA_APP_ID } custos_ra_kind_t;

/* identity.role_assignments[]: subject (principal id, group id or app id) has role at scope. */
typedef struct custos_role_assignment_config {
    custos_ra_kind_t kind;
    char *subject;
    unsigned role; /* one CUSTOS_ROLE_* bit */
    char *scope;   /* "/" or "/deployments/{name}" */
} custos_role_assignment_config_t;

/* identity.role_map: a token `roles` claim value mapped to a role at scope "/". */
typedef struct custos_role_map_config {
    char *claim_value;
    unsigned role;
} custos_role_map_config_t;

typedef struct custos_ca_claim {
    char *name;
    char *value;
} custos_ca_claim_t;

#define CUSTOS_CA_PRINCIPAL_USER 1u
#define CUSTOS_CA_PRINCIPAL_WORKLOAD 2u

struct custos_tz;

/* identity.conditional_access[]: applies when every present `when` condition matches; then every
 * present `require` must hold. */
typedef struct custos_ca_policy_config {
    char *name;
    char **when_deployments; /* NULL/0 = any deployment */
    size_t n_when_deployments;
    unsigned when_principal_types; /* CUSTOS_CA_PRINCIPAL_* set; 0 = any */
    custos_cidr_t *when_networks;
    size_t n_when_networks;
    bool require_mfa;
    custos_cidr_t *require_networks;
    size_t n_require_networks;
    int64_t max_token_age_s; /* 0 = no limit */
    custos_ca_claim_t *require_claims;
    size_t n_require_claims;
    bool has_hours;
    char *hours_tz;           /* IANA zone name */
    int hours_from, hours_to; /* minutes after local midnight; from > to spans midnight */
    struct custos_tz *tz;     /* loaded zone (util/tz.h) */
} custos_ca_policy_config_t;

/* storage: where custos keeps state (API keys, role assignments, sealed values) and how values are sealed
 * (docs/config.md "Storage", docs/keys.md). */
typedef enum { CUSTOS_STORAGE_SQLITE = 0, CUSTOS_STORAGE_POSTGRES = 1 } custos_storage_driver_t;
typedef enum { CUSTOS_KEK_LOCAL = 0, CUSTOS_KEK_PKCS11 = 1 } custos_kek_provider_t;
typedef struct custos_storage_config {
    custos_storage_driver_t driver;
    char *path;     /* SQLite file (resolved); default "custos.db" next to the config file */
    char *url;      /* PostgreSQL connection string (no password in it) */
    char *password; /* PostgreSQL password from password_env / password_file, or NULL (cleansed) */
    size_t password_len;
    int busy_timeout_ms;      /* lock wait; default 5000 */
    int64_t poll_interval_ms; /* replicas: how often the change counter is read; 0 = never; default 2000 */
    custos_kek_provider_t kek_provider;
    char *key_dir;          /* local: directory of kek-N.key files; default "custos-keys" next to the config */
    char *pkcs11_module;    /* pkcs11: module path */
    char *pkcs11_token;     /* token label */
    char *pkcs11_key_label; /* label of KEK version 1; version N > 1 is "<label>.vN" */
    char *pkcs11_pin;       /* user PIN from pin_env / pin_file (cleansed) */
    size_t pkcs11_pin_len;
} custos_storage_config_t;

/* retention.content: none (never store prompt/completion bytes) or {days: N} (sealed, purged after N days). */
typedef struct custos_retention_config {
    bool content_none;    /* default true */
    int64_t content_days; /* when !content_none: 1..3650 */
} custos_retention_config_t;

/* identity.oidc[]: one trusted token issuer (see docs/config.md "Identity: OIDC"). */
typedef struct custos_oidc_issuer_config {
    char *issuer;     /* exact `iss` value, https:// URL (http:// only for loopback) */
    char **audiences; /* accepted `aud` values, at least one */
    size_t n_audiences;
    char *jwks;               /* "file:/abs/path" or "https://..." ; NULL = discovery from issuer */
    char *ca_file;            /* CA bundle for fetching (resolved); NULL = system store */
    char *principal_claim;    /* default "oid" (then "sub") */
    char *roles_claim;        /* default "roles" */
    char *groups_claim;       /* default "groups" */
    uint32_t clock_skew_s;    /* 0..600, default 60 */
    size_t max_token_bytes;   /* 1024..65536, default 16384 */
    uint32_t refresh_s;       /* 60..86400, default 3600 */
    uint32_t min_refetch_s;   /* 1..3600, default 60: unknown-kid refetch rate limit */
    uint32_t max_token_age_s; /* 0 = off, else 1..31536000 */
} custos_oidc_issuer_config_t;

#define CUSTOS_CONFIG_MAX_OIDC_ISSUERS 32
#define CUSTOS_CONFIG_MAX_OIDC_AUDIENCES 16

#define CUSTOS_CONFIG_MAX_CLIENT_CERTS 1000

typedef enum {
    CUSTOS_CLIENT_CERT_SUBJECT = 0, /* exact RFC 2253 subject DN (values match custos_peercert_match_t) */
    CUSTOS_CLIENT_CERT_SAN_URI,     /* exact SAN URI, e.g. spiffe://example.org/ns/prod/sa/app */
    CUSTOS_CLIENT_CERT_SAN_DNS,     /* SAN DNS name, case-insensitive, no wildcards */
} custos_client_cert_match_t;

/* identity.client_certificates[]: a verified mutual-TLS client certificate mapped to a workload principal. */
typedef struct custos_client_cert_config {
    custos_client_cert_match_t match;
    char *value;     /* the subject / SAN to match */
    char *principal; /* workload principal id, 1..256 printable ASCII */
    unsigned roles;  /* CUSTOS_ROLE_* set; default inference.user (as for API keys) */
    char *scope;     /* "/" or "/deployments/{name}"; default "/" */
} custos_client_cert_config_t;

typedef struct custos_identity_config {
    custos_api_key_config_t *api_keys; /* at least one */
    size_t n_api_keys;
    custos_oidc_issuer_config_t *oidc; /* identity.oidc; NULL/0 when absent */
    size_t n_oidc;
    bool disable_local_auth; /* true: every API key gets 403 AuthenticationTypeDisabled */
    custos_role_assignment_config_t *role_assignments;
    size_t n_role_assignments;
    custos_role_map_config_t *role_map;
    size_t n_role_map;
    custos_ca_policy_config_t *ca_policies;
    size_t n_ca_policies;
    custos_client_cert_config_t *client_certificates; /* identity.client_certificates, in order; first match wins */
    size_t n_client_certificates;
} custos_identity_config_t;

typedef enum {
    CUSTOS_PROVIDER_OPENAI = 0,
    CUSTOS_PROVIDER_AZURE,
    CUSTOS_PROVIDER_OPENAI_COMPATIBLE,
} custos_provider_t;

typedef enum {
    CUSTOS_BACKEND_AUTH_NONE = 0,
    CUSTOS_BACKEND_AUTH_API_KEY, /* api_key_env / api_key_file */
    CUSTOS_BACKEND_AUTH_BEARER,  /* bearer_env / bearer_file */
    CUSTOS_BACKEND_AUTH_OAUTH2,  /* oauth2 client credentials */
} custos_backend_auth_kind_t;

/* backends[].auth.oauth2: client-credentials grant (the managed-identity analogue). */
typedef struct custos_oauth2_client_config {
    char *token_url; /* https:// (http:// only for loopback) */
    char *client_id;
    char *client_secret; /* from client_secret_env / client_secret_file; zeroed on free. Never log it. */
    size_t client_secret_len;
    char *scope;   /* NULL = none sent */
    char *ca_file; /* resolved; NULL = system store */
} custos_oauth2_client_config_t;

typedef struct custos_backend_config {
    char *name; /* unique, [A-Za-z0-9._-]{1,64} */
    custos_provider_t provider;
    char *url;         /* as written */
    bool https;        /* scheme https (else http) */
    char *host;        /* without brackets; contains ':' iff IPv6 literal (add brackets for Host:) */
    uint16_t port;     /* explicit or 80/443 */
    char *path_prefix; /* URL path without trailing slash; "" if none. Requests go to
                          {path_prefix}/v1/... when "" (openai*), else {path_prefix}/...;
                          azure: {path_prefix}/openai/deployments/{deployment}/... */
    char *api_version; /* azure: api-version query value (default 2024-10-21); NULL otherwise */
    char *deployment;  /* azure: upstream deployment name; NULL = the custos deployment's model */
    char *model;       /* openai*: model sent upstream; NULL = the custos deployment's model */
    char *api_key;     /* secret used to call upstream (NUL-terminated), NULL = no auth header;
                          zeroed on free. Never log it. */
    size_t api_key_len;
    custos_backend_auth_kind_t auth_kind; /* which of auth.{api_key_*, bearer_*, oauth2} was given */
    char *bearer; /* auth.bearer_env / bearer_file: static token sent as Authorization: Bearer; zeroed on
                     free; NULL otherwise. Never log it. */
    size_t bearer_len;
    custos_oauth2_client_config_t *oauth2; /* auth.oauth2, NULL otherwise */
    char *region;                          /* [a-z0-9-]{1,64} or NULL */
    char *data_zone;                       /* [a-z0-9-]{1,64} or NULL */
    bool no_training;                      /* attributes.no_training */
    bool zero_data_retention;              /* attributes.zero_data_retention */
    char *ca_file;                         /* https: CA bundle path (resolved); NULL = system default store */
    bool tls_verify;                       /* https: verify the server certificate (default true) */
    int priority;                          /* lower is tried first; -1000..1000 */
    unsigned max_connections;              /* per worker */
    unsigned weight;                       /* balancing weight 1..1000, default 1 */
    /* health_check: active probes (api/probe.c); enabled iff the key is present */
    bool hc_enabled;
    char *hc_path;                   /* GET target; default: the backend's models list (see docs/routing.md) */
    uint32_t hc_interval_ms;         /* 100..3600000, default 10000 */
    uint32_t hc_timeout_ms;          /* 10..60000 and <= interval, default 2000 (each of connect / first byte) */
    unsigned hc_healthy_threshold;   /* 1..100, default 2 */
    unsigned hc_unhealthy_threshold; /* 1..100, default 3 */
} custos_backend_config_t;

/* ---------- guards: external guard models (src/guard, docs/guard-models.md) ---------- */

#define CUSTOS_CONFIG_MAX_GUARDS 64

typedef enum {
    CUSTOS_GUARD_LLAMA_GUARD = 0,      /* OpenAI-compatible server (vLLM, llama.cpp) serving Llama Guard 3 */
    CUSTOS_GUARD_AZURE_CONTENT_SAFETY, /* Azure AI Content Safety REST (text:analyze, text:shieldPrompt) */
    CUSTOS_GUARD_HTTP_CLASSIFIER,      /* custos's generic JSON-over-HTTP classifier contract */
} custos_guard_type_t;

/* guards[]: one external guard model, configured like a backend. */
typedef struct custos_guard_config {
    char *name; /* unique, [A-Za-z0-9._-]{1,64} */
    custos_guard_type_t type;
    char *url; /* as written */
    bool https;
    char *host;
    uint16_t port;
    char *path_prefix;   /* URL path without trailing slash; "" if none */
    char *api_key;       /* auth.api_key_env / api_key_file; NULL = none. Zeroed on free; never log it */
    size_t api_key_len;  /* sent as Authorization: Bearer (llama-guard, http-classifier) or Ocp-Apim-Subscription-Key */
    char *model;         /* llama-guard: model name sent (default "meta-llama/Llama-Guard-3-8B") */
    bool chat_api;       /* llama-guard api: chat (server applies the template) | completions (custos builds it) */
    char *api_version;   /* azure-content-safety: api-version (default 2024-09-01) */
    uint32_t timeout_ms; /* per attempt (connect, first byte, idle), 10..60000, default 1000 */
    unsigned max_concurrency; /* checks in flight to this guard, all workers, 1..100000, default 64 */
    unsigned retries;         /* further attempts after a failed one, 0..3, default 1 */
    char *region;             /* residency tags, as for backends */
    char *data_zone;
    char *ca_file; /* https: CA bundle (resolved); NULL = system store */
    bool tls_verify;
    unsigned cb_failures;   /* circuit_breaker.consecutive_failures (0 = off), default 5 */
    uint32_t cb_base_ms;    /* circuit_breaker.base_ejection_ms, default 5000 */
    uint32_t cb_max_ms;     /* circuit_breaker.max_ejection_ms, default 60000 */
    unsigned cache_entries; /* verdict cache per worker and guard, 0..1000000 (0 = off), default 4096 */
    uint32_t cache_ttl_s;   /* 1..86400, default 300 */
} custos_guard_config_t;

/* How a check uses a guard (rai_policies[].content_filters[].guard, prompt_shields.guard). */
typedef enum {
    CUSTOS_CASCADE_IN_PROCESS = 0, /* the in-process model decides (default) */
    CUSTOS_CASCADE_GUARD,          /* the guard decides every text */
    CUSTOS_CASCADE_BAND,           /* score < lo: allow; > hi: block; inside [lo, hi]: the guard decides */
} custos_cascade_mode_t;

typedef struct custos_rai_guard {
    const custos_guard_config_t *guard; /* borrowed from custos_config_t.guards; NULL when mode is in_process */
    custos_cascade_mode_t mode;
    float band_lo, band_hi; /* calibrated in-process score, 0 <= lo <= hi <= 1 */
    bool fail_closed;       /* on_error: closed (filter) | open (annotate the error; default) */
} custos_rai_guard_t;

/* ---------- rai_policies: content filtering per deployment (docs/content-filtering.md) ---------- */

#define CUSTOS_CONFIG_MAX_RAI_POLICIES 256
#define CUSTOS_CONFIG_MAX_RAI_BLOCKLISTS 64
#define CUSTOS_RAI_DEFAULT_POLICY "Microsoft.DefaultV2" /* built in; what a deployment without rai_policy gets */

enum { CUSTOS_RAI_HATE = 0, CUSTOS_RAI_SEXUAL, CUSTOS_RAI_VIOLENCE, CUSTOS_RAI_SELF_HARM, CUSTOS_RAI_NCAT };
enum { CUSTOS_RAI_PROMPT = 0, CUSTOS_RAI_COMPLETION, CUSTOS_RAI_NSRC };

typedef enum { CUSTOS_RAI_MODE_DEFAULT = 0, CUSTOS_RAI_MODE_ASYNC } custos_rai_mode_t;
/* Detectors (prompt shields): off, annotate only, or annotate and block. */
typedef enum { CUSTOS_RAI_OFF = 0, CUSTOS_RAI_ANNOTATE, CUSTOS_RAI_BLOCK } custos_rai_action_t;
/* PII per direction. */
typedef enum {
    CUSTOS_RAI_PII_OFF = 0,
    CUSTOS_RAI_PII_ANNOTATE,    /* types and offsets in the annotation */
    CUSTOS_RAI_PII_REDACT,      /* replaced by "[TYPE]" */
    CUSTOS_RAI_PII_PLACEHOLDER, /* replaced by "<<TYPE_n>>", restored in the completion (prompt side only) */
    CUSTOS_RAI_PII_BLOCK,       /* prompt: 400 content_filter; completion: finish_reason content_filter */
} custos_rai_pii_action_t;

/* One category in one direction. threshold is on Azure's eight-level scale: 2 low, 4 medium, 6 high. */
typedef struct custos_rai_filter {
    bool enabled;  /* run and annotate */
    bool blocking; /* filter at severity >= threshold */
    uint8_t threshold;
} custos_rai_filter_t;

typedef struct custos_rai_blocklist_ref {
    char *name;                   /* blocklist name ([A-Za-z0-9._~-]{1,64}) */
    bool blocking;                /* default true */
    bool source[CUSTOS_RAI_NSRC]; /* directions it applies to; default both */
} custos_rai_blocklist_ref_t;

typedef struct custos_rai_policy_config {
    char *name;
    custos_rai_mode_t mode;
    custos_rai_filter_t filters[CUSTOS_RAI_NCAT][CUSTOS_RAI_NSRC];
    custos_rai_action_t jailbreak;                /* user prompt attacks; default block */
    custos_rai_action_t indirect_attack;          /* document attacks; default annotate */
    custos_rai_pii_action_t pii[CUSTOS_RAI_NSRC]; /* default off / off */
    custos_rai_blocklist_ref_t *blocklists;
    size_t n_blocklists;
    uint32_t window_min_chars; /* streaming: a window closes at a sentence end once this long (default 200) */
    uint32_t window_max_chars; /* ... and always at this length (default 1000) */
    uint32_t context_chars;    /* streaming: previous text re-scored with each window (default 200) */
    /* external guard cascades (src/guard): per harm category and direction, and for the two prompt shields */
    custos_rai_guard_t harm_guard[CUSTOS_RAI_NCAT][CUSTOS_RAI_NSRC];
    custos_rai_guard_t shield_guard[2]; /* [0] jailbreak, [1] indirect attack (prompt_shields.guard) */
    /* groundedness of the answer against the request's sources (api/cf_grounded.h); default off */
    struct {
        bool enabled;
        custos_rai_action_t action; /* CUSTOS_RAI_ANNOTATE or CUSTOS_RAI_BLOCK */
        float threshold;            /* sentence P(ungrounded) reported from, 0.5..0.99 (default 0.5) */
        bool medical;               /* domain Medical (else Generic) */
    } groundedness;
} custos_rai_policy_config_t;

/* safety: the in-process models (loaded once at start; changing these needs a restart). */
typedef struct custos_safety_config {
    char *harm_model;      /* resolved path; NULL = the shipped models/harm.model */
    char *shields_model;   /* resolved path; NULL = the shipped models/shields.model */
    char *grounded_model;  /* resolved path; NULL = the shipped models/grounded.model (optional) */
    char *pii_mrn_format;  /* organisation MRN pattern (safety/pii.h); NULL = context-gated digits only */
    size_t max_text_bytes; /* one screened text; larger -> the check cannot run (default 4 MiB) */
    char *eval_dir;        /* evaluation results (JSON) shown on deployment cards (governance/card.h); resolved path,
                              NULL = the shipped models/eval next to the models */
    /* safety.groundedness: the judge deployment for text:detectGroundedness reasoning (or NULL) and the bound on
     * its call in milliseconds (default 30000); api/cs_reasoning.h */
    char *grounded_reasoning_deployment;
    uint32_t grounded_reasoning_timeout_ms;
} custos_safety_config_t;

typedef enum {
    CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN = 0, /* smooth weighted round-robin (per worker) */
    CUSTOS_BALANCE_LEAST_OUTSTANDING,        /* fewest attempts in flight per unit of weight (all workers) */
} custos_balance_policy_t;
#define CUSTOS_CONFIG_MAX_REQUIRE_REGIONS 64

typedef enum {
    CUSTOS_DEPLOYMENT_GLOBAL = 0,
    CUSTOS_DEPLOYMENT_DATAZONE,
    CUSTOS_DEPLOYMENT_REGIONAL,
} custos_deployment_type_t;

/* ---------- quotas (src/quota, docs/quotas.md) ---------- */

/* A TPM / RPM pair; 0 = no limit. rpm is derived as tpm * 6 / 1000 when only tpm is given. */
typedef struct custos_quota_limit_config {
    int64_t tpm;
    int64_t rpm;
} custos_quota_limit_config_t;

typedef enum {
    CUSTOS_QUOTA_FAIL_LOCAL = 0, /* Redis down: each replica enforces the limits with its own counts */
    CUSTOS_QUOTA_FAIL_OPEN,      /* Redis down: no quota is enforced */
    CUSTOS_QUOTA_FAIL_CLOSED,    /* Redis down: requests under a quota get 503 */
} custos_quota_failure_t;

/* quotas.principals[]: a principal's limits across all deployments. */
typedef struct custos_quota_principal_config {
    char *principal;
    custos_quota_limit_config_t limit;
} custos_quota_principal_config_t;

typedef struct custos_quotas_config {
    unsigned rpm_window_s;      /* 1, 10 (default) or 60 */
    int64_t default_max_tokens; /* completion allowance when a chat request sets no max_tokens; default 0 */
    char *tokenizer_dir;        /* rank files; default CUSTOS_TIKTOKEN_DIR (build: .deps/tiktoken) */
    custos_quota_principal_config_t *principals;
    size_t n_principals;
    /* quotas.redis (read at start only): shared counters across replicas */
    char *redis_host;                /* NULL: no Redis */
    uint16_t redis_port;             /* default 6379 */
    char *redis_password;            /* from password_env, or NULL */
    char *redis_prefix;              /* key prefix, default "custos:quota:" */
    uint32_t redis_sync_interval_ms; /* default 100 */
    uint32_t redis_timeout_ms;       /* connect and command timeout, default 200 */
    custos_quota_failure_t on_failure;
} custos_quotas_config_t;

/* deployments[].card: the deployment's transparency card (governance/card.h, docs/config.md "deployments").
 * Every field NULL/0 when absent; strings are UTF-8 as written, each at most CUSTOS_CONFIG_MAX_CARD_TEXT bytes. */
#define CUSTOS_CONFIG_MAX_CARD_ITEMS 32
#define CUSTOS_CONFIG_MAX_CARD_TEXT 1000
typedef struct custos_card_config {
    char *description; /* what the deployment is for, in a sentence or two */
    char *owner;       /* accountable team or contact (at most 256 bytes) */
    char **intended_uses;
    size_t n_intended_uses;
    char **out_of_scope_uses;
    size_t n_out_of_scope_uses;
    char **limitations;
    size_t n_limitations;
} custos_card_config_t;

typedef struct custos_deployment_config {
    char *name;  /* unique, [A-Za-z0-9._-]{1,64}; what clients ask for */
    char *model; /* model reported to clients (default: name) */
    custos_deployment_type_t type;
    char *region;    /* regional: required; NULL otherwise */
    char *data_zone; /* datazone: required; NULL otherwise */
    /* Borrowed pointers into custos_config_t.backends, sorted by priority (lower first), ties in the
     * order listed. Every backend satisfies the deployment's region / data zone. */
    const custos_backend_config_t **backends;
    size_t n_backends;
    custos_balance_policy_t balance; /* among the healthy backends of one priority group */
    char *sticky_header;             /* lower-case header name whose value pins a backend; NULL = none */
    /* requires: backend attributes a backend must have to be eligible (route/router.h) */
    bool require_zero_data_retention;
    bool require_no_training;
    char **require_regions; /* NULL/0 = any region */
    size_t n_require_regions;
    const custos_rai_policy_config_t *rai; /* rai_policy (borrowed from the config); never NULL */
    /* quota: the deployment's TPM / RPM; quota.per_principal: each caller's share (docs/quotas.md) */
    custos_quota_limit_config_t quota;
    custos_quota_limit_config_t quota_per_principal;
    /* custos_tok_kind_t from `tokenizer:`, or -1: chosen by model name (docs/tokens.md) */
    int tokenizer;
    custos_card_config_t card; /* deployments[].card (transparency; served by GET /v1/models/{id}) */
} custos_deployment_config_t;

/* diagnostics.sinks[] entry (docs/diagnostics.md, docs/config.md). Fields of the other types are zero/NULL. */
typedef enum {
    CUSTOS_AUDIT_SINK_FILE = 0,
    CUSTOS_AUDIT_SINK_SYSLOG,
    CUSTOS_AUDIT_SINK_HTTP,
    CUSTOS_AUDIT_SINK_KAFKA,
} custos_audit_sink_type_t;

typedef enum { CUSTOS_SYSLOG_UDP = 0, CUSTOS_SYSLOG_TCP, CUSTOS_SYSLOG_TLS } custos_syslog_transport_t;
typedef enum {
    CUSTOS_HTTP_SINK_NDJSON = 0,
    CUSTOS_HTTP_SINK_SPLUNK_HEC,
    CUSTOS_HTTP_SINK_ELASTICSEARCH
} custos_http_sink_format_t;

#define CUSTOS_CONFIG_MAX_SINKS 16
#define CUSTOS_CONFIG_MAX_SINK_PROPERTIES 64

typedef struct custos_audit_sink_config {
    custos_audit_sink_type_t type;
    char *type_name; /* "file", "syslog", "http", "kafka" (never NULL) */
    char *name;      /* unique, [A-Za-z0-9._-]{1,64}; default: the type, or "<type>-<n>" (n = 1-based index in
                        sinks[]) when several sinks share a type. Metric label and spool sub-directory. */
    unsigned batch_max_records; /* records per deliver() call, 1..10000; default 500 (all types) */
    uint32_t flush_ms;          /* longest a record waits for a batch to fill, 0..60000; default 1000 (http), 0 */
    /* file */
    char *path;                 /* resolved against the config file's directory */
    uint64_t max_bytes;         /* rotate when the file would exceed this; 4096..2^40, default 104857600 */
    unsigned max_files;         /* rotated files kept (path.1 .. path.N), 0..1000, default 10 */
    uint32_t max_age_s;         /* rotate when the file is older than this; 0 = never, default 86400 */
    uint32_t fsync_interval_ms; /* fdatasync at most this often (a batch written sooner is synced by a later batch
                                   or the sink's idle hook that much later); 0 = after every batch; 0..60000,
                                   default 1000 */
    /* syslog */
    char *address; /* as written: "udp://host:port", "tcp://host:port", "tls://host:port" */
    custos_syslog_transport_t transport;
    char *host;        /* syslog and http: without brackets (contains ':' iff an IPv6 literal) */
    uint16_t port;     /* syslog and http */
    char *app_name;    /* RFC 5424 APP-NAME, default "custos" */
    unsigned facility; /* RFC 5424 facility number 0..23 (from a name: kern..local7), default 16 (local0) */
    char *hostname;    /* RFC 5424 HOSTNAME; NULL = gethostname() */
    /* syslog tls and http */
    char *ca_file; /* CA bundle path (resolved); NULL = system default store */
    /* http */
    char *url;      /* as written: http:// or https://, no query or fragment; host and port above are filled
                       from it (port 80/443 when absent) */
    bool https;     /* url scheme is https */
    char *url_path; /* path of url without trailing slash; "" if none */
    custos_http_sink_format_t format; /* default ndjson */
    char *token; /* secret from token_env or token_file (NUL-terminated, zeroed on free) or NULL. Never log. */
    size_t token_len;
    char *index;         /* splunk_hec: index; elasticsearch: _index; NULL = none */
    bool gzip;           /* default true */
    uint32_t timeout_ms; /* per request, 100..600000, default 10000 */
    /* kafka */
    char *brokers; /* "host:port,host:port" */
    char *topic;
    char *client_id;        /* default "custos" */
    char **property_keys;   /* extra librdkafka properties (`properties:` string map), in source order */
    char **property_values; /* may contain secrets (sasl.password): never log values */
    size_t n_properties;
} custos_audit_sink_config_t;

typedef struct custos_diagnostics_config {
    bool mask_client_ip;        /* default true: last IPv4 octet / IPv6 beyond /64 zeroed */
    char *spool_dir;            /* resolved against the config file's directory; default "spool" */
    char *governance_log;       /* governance log file (docs/governance-log.md), resolved like spool_dir; default
                                   "governance.jsonl"; read at start-up only */
    uint64_t spool_max_bytes;   /* per sink, 1 MiB..2^44, default 1 GiB */
    unsigned queue_max_records; /* per sink, in memory, 16..10000000, default 65536 */
    custos_audit_sink_config_t *sinks;
    size_t n_sinks;
} custos_diagnostics_config_t;

#define CUSTOS_CONFIG_MAX_IP_RULES 1000

struct custos_acl;

/* network: the perimeter, evaluated before anything else (net/acl.h, docs/config.md "network"). */
typedef struct custos_network_config {
    bool configured;    /* a network: section is present (false: every client is admitted, no header walk) */
    bool public_access; /* public_network_access: enabled (default) */
    bool default_deny;  /* default_action: deny (default allow) */
    size_t n_ip_rules;
    size_t n_trusted_proxies;
    struct custos_acl *acl; /* compiled rules (net/acl.h); non-NULL iff configured */
} custos_network_config_t;

/* ---------- use cases and review tiers (src/governance, docs/reviews.md) ---------- */

#define CUSTOS_CONFIG_MAX_USE_CASES 1024
#define CUSTOS_CONFIG_MAX_USE_CASE_DEPLOYMENTS 64
#define CUSTOS_CONFIG_MAX_USE_CASE_BINDINGS 1000

typedef enum { CUSTOS_TIER_HIGH = 0, CUSTOS_TIER_ELEVATED, CUSTOS_TIER_STANDARD } custos_usecase_tier_t;

/* use_cases[]: a registered purpose. minimum_policy is checked against each listed deployment's rai_policy at load. */
typedef struct custos_use_case_config {
    char *id; /* [a-z0-9._-]{1,64}, unique */
    char *description;
    char *owner;
    custos_usecase_tier_t tier;
    char **deployments; /* allowed deployment names (each configured) */
    size_t n_deployments;
    /* minimum_policy */
    uint8_t min_threshold[CUSTOS_RAI_NCAT]; /* 0 = no minimum; else 2/4/6: blocking at this threshold or lower */
    custos_rai_action_t min_jailbreak, min_indirect_attack;
    custos_rai_pii_action_t min_pii[CUSTOS_RAI_NSRC];
    bool min_groundedness; /* the policy must check groundedness */
    /* validation record */
    bool validated;
    bool validation_required; /* always true for high */
    char *evidence;           /* reference to the evidence (document id, URL); NULL if none */
    char *validation_date;    /* "YYYY-MM-DD" or NULL */
    char *validation_expires; /* "YYYY-MM-DD" or NULL */
    int64_t expires_s;        /* end of the expiry day (UTC), 0 = never */
    bool regulatory_review;
    uint32_t qa_rate_ppm; /* standard: sampled share in millionths */
    double qa_sample_rate;
    uint32_t review_deadline_s;
    char **bind_api_keys; /* callers whose default use case this is */
    size_t n_bind_api_keys;
    char **bind_principals;
    size_t n_bind_principals;
    char **bind_app_ids;
    size_t n_bind_app_ids;
} custos_use_case_config_t;

typedef struct custos_governance_config {
    bool require_use_case; /* governance.require_use_case: requests without a use case get 403 (default false) */
} custos_governance_config_t;

typedef struct custos_config {
    char *source; /* the name given to load (file path or string name) */
    custos_server_config_t server;
    custos_listener_config_t *listeners;
    size_t n_listeners;
    custos_limits_config_t limits;
    custos_upstream_config_t upstream;
    custos_identity_config_t identity;
    custos_storage_config_t storage;
    custos_retention_config_t retention;
    custos_backend_config_t *backends;
    size_t n_backends;
    custos_deployment_config_t *deployments;
    size_t n_deployments;
    custos_diagnostics_config_t diagnostics;
    custos_network_config_t network;
    custos_guard_config_t *guards; /* guards[], in order (docs/guard-models.md) */
    size_t n_guards;
    custos_rai_policy_config_t *rai_policies; /* rai_policies[], in order */
    size_t n_rai_policies;
    custos_rai_policy_config_t rai_default; /* CUSTOS_RAI_DEFAULT_POLICY */
    custos_safety_config_t safety;
    custos_quotas_config_t quotas;
    custos_use_case_config_t *use_cases; /* use_cases[], in order (docs/reviews.md) */
    size_t n_use_cases;
    custos_governance_config_t governance;
    /* private */
    atomic_uint refs;
    const custos_backend_config_t **backends_by_name;       /* sorted by name, for lookup */
    const custos_deployment_config_t **deployments_by_name; /* sorted by name, for lookup */
} custos_config_t;

/* Reads and validates the file at path. On success returns 0 and *out holds one reference (release
 * with custos_config_unref). On failure returns a negative CUSTOS_E* code, *out is NULL and err (if
 * errlen > 0) holds "path:line:col: message" (or "path: message" when the file cannot be read).
 * Relative paths inside the file are resolved against the file's directory. Reads the environment
 * (key_env, api_key_env) and the referenced key files. Thread-safe apart from concurrent setenv. */
int custos_config_load_file(const char *path, custos_config_t **out, char *err, size_t errlen);

/* Fetches a secret stored sealed in the store (backends[].auth.api_key_secret / bearer_secret). The program
 * registers it (api/, which may depend on the store; config may not). Returns 0 with *out malloc'd and
 * NUL-terminated (caller cleanses and frees), or a negative code with err filled (never the secret). */
typedef int (*custos_config_secret_fn)(const custos_storage_config_t *sc, const char *name, char **out, size_t *len,
                                       char *err, size_t errlen);
/* Registers fn for every later load (NULL: store secrets are refused). Call before loading; not thread-safe. */
void custos_config_set_secret_resolver(custos_config_secret_fn fn);

/* Same from memory: yaml[0..len) (no NUL needed); name is used in messages and as config->source.
 * Relative paths are kept as written (relative to the working directory). */
int custos_config_load_string(const char *name, const char *yaml, size_t len, custos_config_t **out, char *err,
                              size_t errlen);

/* Takes another reference (atomic; thread-safe). Returns c. NULL-safe. */
custos_config_t *custos_config_ref(custos_config_t *c);

/* Drops a reference; frees (zeroing secrets) at zero. Thread-safe; NULL-safe. */
void custos_config_unref(custos_config_t *c);

/* Exact, case-sensitive lookup by name. Returns a pointer borrowed from c (valid while the caller
 * holds a reference) or NULL. O(log n); thread-safe. */
const custos_backend_config_t *custos_config_find_backend(const custos_config_t *c, const char *name);
const custos_deployment_config_t *custos_config_find_deployment(const custos_config_t *c, const char *name);
/* rai_policies[] by name (exact), or the built-in default for CUSTOS_RAI_DEFAULT_POLICY; NULL if unknown. */
const custos_rai_policy_config_t *custos_config_find_rai_policy(const custos_config_t *c, const char *name);

/* Role name <-> CUSTOS_ROLE_* bit. custos_config_role_parse returns 0 for an unknown name. */
unsigned custos_config_role_parse(const char *name);
const char *custos_config_role_name(unsigned role_bit);
/* True if s is "/" or "/deployments/{name}" with a valid name. */
bool custos_config_scope_valid(const char *s);

/* Names for enums (static strings). */
const char *custos_config_provider_name(custos_provider_t p);
const char *custos_config_deployment_type_name(custos_deployment_type_t t);

/* Prints a short human summary (listeners, keys by name, backends, deployments -> backends) to f,
 * never a secret. Returns 0 or CUSTOS_EIO. */
int custos_config_dump_summary(const custos_config_t *c, FILE *f);

#endif
