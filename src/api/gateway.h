/* SPDX-License-Identifier: Apache-2.0
 * The gateway: wires a request through route → authenticate → validate → router → upstream →
 * respond, and runs the worker threads, signals (SIGHUP reload, SIGTERM drain) and listeners.
 * This is the only module that knows all the others. */
#ifndef CUSTOS_API_GATEWAY_H
#define CUSTOS_API_GATEWAY_H

#include "config/config.h"
#include "core/loop.h"
#include "metrics/metrics.h"
#include "net/http_server.h"
#include "safety/blocklist.h"
#include "safety/normalize.h"
#include "upstream/client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef struct custos_gateway custos_gateway_t;

/* Metric families the gateway records (see docs/metrics.md). */
typedef struct custos_gateway_metrics {
    custos_metrics_t *reg;
    custos_metric_family_t *requests;                  /* counter {route, deployment, status} */
    custos_metric_family_t *duration;                  /* histogram {route} seconds, whole request */
    custos_metric_family_t *overhead;                  /* histogram {route} seconds, total minus upstream time */
    custos_metric_family_t *upstream_errors;           /* counter {backend, kind} */
    custos_metric_family_t *upstream_retries;          /* counter {deployment} */
    custos_metric_family_t *tokens;                    /* counter {deployment, type=prompt|completion} */
    custos_metric_family_t *conns;                     /* gauge {} client connections open */
    custos_metric_family_t *up_conns;                  /* gauge {} upstream connections open */
    custos_metric_family_t *ttfb;                      /* histogram {route} seconds to first byte sent to the client */
    custos_metric_family_t *network_denied;            /* counter {} network ACL 403s (api/access.c) */
    custos_metric_family_t *network_forwarded_invalid; /* counter {} bad forwarding headers from trusted proxies */
    custos_metric_family_t *mtls_requests;             /* counter {principal} requests with a client certificate */
    custos_metric_family_t
        *content_filter;                  /* counter {deployment, source, result} screened requests (contentfilter.h) */
    custos_metric_family_t *review_items; /* counter {use_case, tier, kind} items queued (api/reviews.h) */
    custos_metric_family_t *review_decisions;    /* counter {use_case, decision} */
    custos_metric_family_t *review_store_errors; /* counter {} items that could not be stored */
} custos_gateway_metrics_t;

/* One worker thread: its loop, HTTP server, upstream client and metrics shard. All fields are owned
 * and touched by that thread only, except `cfg_next`, handed over with custos_loop_post. */
typedef struct custos_worker {
    custos_gateway_t *gw;
    unsigned idx; /* metrics shard */
    pthread_t thread;
    custos_loop_t *loop;
    custos_http_server_t *http;
    custos_upstream_t *up;
    custos_config_t *cfg;        /* this worker's reference to the current snapshot */
    struct custos_idsnap *ident; /* this worker's reference to the identity snapshot (api/authn.h) */
    custos_timer_t publish_timer;
    int64_t published_conns, published_up_conns;
    bool draining;
    /* Identity of the request being handled synchronously right now (for its request record); set after
     * authentication, cleared when custos_gateway_handle returns. Borrowed strings. */
    const char *cur_principal;
    const char *cur_auth_type;
    struct custos_route_table *rt;          /* routing table for `cfg` (route/balance.h), rebuilt lazily after a swap */
    custos_safety_scratch_t scratch;        /* classifier scratch (safety/normalize.h), this thread's only */
    const struct custos_cf_summary *cur_cf; /* content-filter outcome of a request answered synchronously (record) */
    const char *cur_use_case, *cur_tier;    /* use case of a request answered synchronously (api/reviews.c; record) */
    custos_blocklist_scratch_t bl_scratch;  /* blocklist scanning scratch (safety/blocklist.h), this thread's only */
    custos_blocklist_view_t bl_view;        /* this thread's reference to gw->blocklists' newest set */
} custos_worker_t;

struct custos_gateway {
    custos_config_t *cfg;        /* main thread's reference; replaced under ident_lock */
    struct custos_idsnap *ident; /* newest identity snapshot (api/authn.h); under ident_lock */
    pthread_mutex_t ident_lock;  /* serialises identity rebuilds (startup, SIGHUP, admin API); never on requests */
    uint64_t ident_gen;          /* generation of the newest snapshot */
    bool ident_ready;            /* ident_lock initialised */
    char config_path[4096];
    custos_gateway_metrics_t m;
    custos_worker_t *workers;
    unsigned nworkers;
    atomic_bool draining;
    atomic_uint drained;
    uint64_t started_ms;
    struct custos_audit *audit;   /* request records (audit/audit.h); NULL when no sink is configured */
    struct custos_health *health; /* backend health shared by all workers (route/health.h), lives to the end */
    struct custos_prober *prober; /* active health checks thread (api/probe.h) */
    struct custos_safety *safety; /* in-process models (safety/safety.h), loaded at start, read-only, shared */
    struct custos_blocklist_hub *blocklists; /* compiled blocklists (api/contentsafety.h); get via w->bl_view */
    struct custos_quota *quota; /* quota counters shared by all workers (quota/quota.h), lives to the end */
    /* external guard models (guard/guard.h): breakers, caches, metrics; lives to the end */
    struct custos_guard_hub *guard;
};

/* The per-request handler installed on every worker's HTTP server (ud = custos_worker_t *). */
void custos_gateway_handle(custos_http_req_t *req, void *ud);

struct custos_caller;
/* Notes the authenticated caller of the request being handled synchronously on w (its thread), for the request
 * record of a module that answers outside the proxy path (Content Safety API). c's strings must outlive the
 * request's handling (they live in the request arena). */
void custos_gateway_note_caller(custos_worker_t *w, const struct custos_caller *c);

/* Emits the request record (docs/diagnostics.md) of a request answered by such a module with status. op is a
 * custos_audit_op_t (audit/record.h). Worker thread; metadata only. */
void custos_gateway_audit(custos_worker_t *w, const custos_http_req_t *req, int op, int status);

/* Internal calls: custos asking one of its deployments itself (groundedness reasoning, docs/content-safety-api.md)
 * through the same pipeline as a client's chat completion: residency-bounded routing, backend health, retries and
 * failover, upstream credentials, the deployment's quotas, and a request record (metadata only, the caller's
 * request id, operation ChatCompletions_Create). No content filtering runs on it; nothing reaches the client.
 * cb gets the backend's final answer (status, body: valid only during the call), or custos' own failure (status
 * 429 / 503 / 504, body NULL, error: a constant or metadata-only message). cb may run before custos_gateway_call
 * returns. */
typedef void (*custos_gateway_call_cb)(void *ud, int status, const char *body, size_t len, const char *error);
typedef struct proxy custos_gateway_call_t;
struct json_object;
/* Starts a non-streamed chat call to dep with body (taken; the request as it is sent, "model" is set per backend)
 * on w's loop, for the client request req (its arena holds the call; req must outlive it or cancel it first).
 * principal (may be NULL) is charged for quotas and named in the record. timeout_ms > 0 bounds the whole call
 * (504). Returns 0 and *out (for custos_gateway_call_cancel), or CUSTOS_ENOMEM (nothing started, no callback). */
int custos_gateway_call(custos_worker_t *w, custos_http_req_t *req, const custos_deployment_config_t *dep,
                        struct json_object *body, const char *principal, uint32_t timeout_ms, custos_gateway_call_cb cb,
                        void *ud, custos_gateway_call_t **out);
/* Abandons a call (the client went away): no callback; recorded with status 499. No-op once it finished. */
void custos_gateway_call_cancel(custos_gateway_call_t *c);

/* Registers the metric families. Returns 0 or a negative code. */
int custos_gateway_metrics_init(custos_gateway_metrics_t *m, unsigned nshards);

/* Loads config_path, starts listeners and workers, serves until SIGTERM/SIGINT, drains and returns
 * the process exit status (0 after a clean drain). */
int custos_gateway_serve(const char *config_path);

#endif
