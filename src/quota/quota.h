/* SPDX-License-Identifier: Apache-2.0
 * Token and request quotas with Azure OpenAI's semantics (docs/quotas.md):
 *  - tokens per minute (TPM), charged on admission with an estimate (prompt tokens counted like tiktoken
 *    + max_tokens × max(n, best_of)) in a one-minute window, corrected with the backend's usage afterwards;
 *  - requests per minute (RPM, default 6 per 1,000 TPM) enforced over short windows (quotas.rpm_window_s:
 *    1, 10 or 60 s, limit ceil(RPM × window / 60));
 *  - keys: the deployment, the principal within a deployment, and the principal across deployments;
 *  - optionally shared by replicas through Redis: every replica keeps local counters and a sync thread
 *    pushes its deltas and pulls the global totals every quotas.redis.sync_interval_ms (one pipelined
 *    round trip of an atomic Lua script per key), so admission never waits on the network.
 *
 * Thread-safety: one custos_quota_t per process, shared by all workers. Admission and settlement take
 * one mutex for a few hundred nanoseconds (no I/O, no allocation except the first use of a key); the
 * Redis thread takes it only to copy deltas out and totals in. Windows are fixed and aligned to wall-clock
 * time so that replicas agree on them. */
#ifndef CUSTOS_QUOTA_QUOTA_H
#define CUSTOS_QUOTA_QUOTA_H

#include "config/config.h"
#include "metrics/metrics.h"
#include "tokenize/tokenize.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct custos_quota custos_quota_t;

/* Keys one request is charged to (at most this many). */
#define CUSTOS_QUOTA_MAX_KEYS 3

/* What a request costs and what it may use, computed by the caller per request from the config snapshot. */
typedef struct custos_quota_key {
    const char *name; /* e.g. "d/gpt-4o", "dp/gpt-4o/alice", "p/alice"; borrowed, copied on first use */
    int64_t tpm;      /* 0: no token limit */
    int64_t rpm;      /* 0: no request limit */
} custos_quota_key_t;

/* Admission result and what settlement needs. Lives with the request (plain data). */
typedef struct custos_quota_ticket {
    struct custos_qent *ent[CUSTOS_QUOTA_MAX_KEYS];
    int64_t twin[CUSTOS_QUOTA_MAX_KEYS]; /* token window each key was charged in */
    size_t n;
    int64_t charged; /* estimated tokens charged to every key */
    bool settled;
    /* verdict */
    bool active;                /* at least one limit applied (send x-ratelimit-remaining-*) */
    bool allowed;               /* admit the request */
    int status;                 /* when !allowed: 429 (over a limit) or 503 (Redis down, on_failure: closed) */
    bool tokens_limited;        /* which limit refused: tokens (true) or requests */
    int refused_scope;          /* which key refused: 0 deployment, 1 principal in deployment, 2 principal */
    uint64_t retry_after_ms;    /* when !allowed: until the refusing window ends */
    int64_t remaining_requests; /* smallest over the keys with a request limit, after this request; -1 none */
    int64_t remaining_tokens;   /* same for tokens; -1 none */
} custos_quota_ticket_t;

/* Options fixed for the process lifetime (config quotas.redis.*, read at start). */
typedef struct custos_quota_opts {
    unsigned nshards; /* metrics shards: one per worker (the Redis thread gets one more) */
    size_t max_keys;  /* keys tracked at most (default 100000); further keys are not limited */
    const custos_quotas_config_t *cfg;
    bool no_thread; /* tests: no sync thread; drive it with custos_quota_sync_now */
} custos_quota_opts_t;

/* Creates the quota state, its metrics registry, and starts the Redis sync thread when
 * cfg->redis_host is set. Returns 0 or a negative code (err filled). */
int custos_quota_new(const custos_quota_opts_t *o, custos_quota_t **out, char *err, size_t errlen);
/* Stops the sync thread and frees everything. Tickets must be settled before. */
void custos_quota_free(custos_quota_t *q);

/* Loads the tokenizers the configuration needs (when any deployment has a quota) from
 * cfg->quotas.tokenizer_dir, once; call on the main thread before publishing cfg to workers.
 * Returns 0 or a negative code (err filled). */
int custos_quota_prepare(custos_quota_t *q, const custos_config_t *cfg, char *err, size_t errlen);

/* The loaded tokenizer of a kind, or NULL (not loaded). */
const custos_tok_t *custos_quota_tokenizer(const custos_quota_t *q, custos_tok_kind_t kind);

/* Prometheus registry with the quota metrics (docs/metrics.md), rendered by /metrics. */
custos_metrics_t *custos_quota_metrics(custos_quota_t *q);

/* Admission at wall-clock time now_ms: checks every key (all or nothing) and, if allowed, charges one
 * request and `tokens` to each. Fills *t (initialises it). shard: the caller's metrics shard. */
void custos_quota_admit(custos_quota_t *q, const custos_quota_key_t *keys, size_t nkeys, int64_t tokens,
                        uint64_t now_ms, unsigned shard, custos_quota_ticket_t *t);

/* After the answer: actual_tokens (prompt + completion from the backend's usage), or -1 when unknown
 * (the estimate stands). Corrects the token window charged if it is still current. Idempotent. */
void custos_quota_settle(custos_quota_t *q, custos_quota_ticket_t *t, int64_t actual_tokens, uint64_t now_ms);

/* Whether the Redis store answered the last sync (true when none is configured). */
bool custos_quota_redis_up(const custos_quota_t *q);

/* Runs one Redis sync now (what the sync thread does every interval); for tests. Returns 0 or a
 * negative code. Not to be called while the sync thread runs (no store configured, or tests only). */
int custos_quota_sync_now(custos_quota_t *q, uint64_t now_ms);

/* ---------- request estimate (estimate.c) ---------- */

typedef enum {
    CUSTOS_QUOTA_REQ_CHAT = 0,
    CUSTOS_QUOTA_REQ_COMPLETIONS,
    CUSTOS_QUOTA_REQ_EMBEDDINGS
} custos_quota_req_t;

/* Prompt tokens of a request body as OpenAI counts them: chat messages with the cookbook overhead
 * (3 per message + 1 per name + 3 reply priming), completions' prompt (string, strings, or token
 * arrays), embeddings' input. Returns the count (>= 0) or a negative code. */
int64_t custos_quota_prompt_tokens(const custos_tok_t *tok, custos_quota_req_t kind, json_object *body);

/* Completion allowance: max_completion_tokens or max_tokens (else default_max_tokens; completions
 * default to 16 like OpenAI's) × max(n, best_of, 1); embeddings 0. */
int64_t custos_quota_completion_allowance(custos_quota_req_t kind, json_object *body, int64_t default_max_tokens);

/* Chat-message token count: each message 3 + tokens of every string field's value (+1 if it is `name`);
 * text parts of array contents; tool_calls' function name and arguments; + 3 for the reply priming. */
int64_t custos_quota_chat_tokens(const custos_tok_t *tok, json_object *messages);

#endif
