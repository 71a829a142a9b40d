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
} custos_upstream_config_t;

typedef struct custos_api_key_config {
    char *name;               /* unique, [A-Za-z0-9._-]{1,64} */
    unsigned char sha256[32]; /* SHA-256 of the key; the plaintext is never kept */
} custos_api_key_config_t;

typedef struct custos_identity_config {
    custos_api_key_config_t *api_keys; /* at least one */
    size_t n_api_keys;
} custos_identity_config_t;

typedef enum {
    CUSTOS_PROVIDER_OPENAI = 0,
    CUSTOS_PROVIDER_AZURE,
    CUSTOS_PROVIDER_OPENAI_COMPATIBLE,
} custos_provider_t;

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
    char *region;             /* [a-z0-9-]{1,64} or NULL */
    char *data_zone;          /* [a-z0-9-]{1,64} or NULL */
    bool no_training;         /* attributes.no_training */
    bool zero_data_retention; /* attributes.zero_data_retention */
    char *ca_file;            /* https: CA bundle path (resolved); NULL = system default store */
    bool tls_verify;          /* https: verify the server certificate (default true) */
    int priority;             /* lower is tried first; -1000..1000 */
    unsigned max_connections; /* per worker */
} custos_backend_config_t;

typedef enum {
    CUSTOS_DEPLOYMENT_GLOBAL = 0,
    CUSTOS_DEPLOYMENT_DATAZONE,
    CUSTOS_DEPLOYMENT_REGIONAL,
} custos_deployment_type_t;

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
} custos_deployment_config_t;

typedef struct custos_config {
    char *source; /* the name given to load (file path or string name) */
    custos_server_config_t server;
    custos_listener_config_t *listeners;
    size_t n_listeners;
    custos_limits_config_t limits;
    custos_upstream_config_t upstream;
    custos_identity_config_t identity;
    custos_backend_config_t *backends;
    size_t n_backends;
    custos_deployment_config_t *deployments;
    size_t n_deployments;
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

/* Names for enums (static strings). */
const char *custos_config_provider_name(custos_provider_t p);
const char *custos_config_deployment_type_name(custos_deployment_type_t t);

/* Prints a short human summary (listeners, keys by name, backends, deployments -> backends) to f,
 * never a secret. Returns 0 or CUSTOS_EIO. */
int custos_config_dump_summary(const custos_config_t *c, FILE *f);

#endif
