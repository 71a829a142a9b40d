/* SPDX-License-Identifier: Apache-2.0
 * External guard models and the safety cascade (docs/guard-models.md).
 *
 * The in-process models decide clear cases; a text whose in-process score falls inside a policy's band goes to an
 * external guard: Llama Guard 3 behind an OpenAI-compatible server (`llama-guard`), Azure AI Content Safety
 * (`azure-content-safety`) or a customer's own classifier speaking custos's JSON contract (`http-classifier`).
 *
 *   adapters.c  request bodies and answer parsers per guard type (pure, no I/O; fuzzed)
 *   cascade.c   the band decision and the merge of a verdict into the policy's decision (pure)
 *   cache.c     verdict cache keyed by HMAC-SHA256 (random per-process key) of the normalised text; never the text
 *   guard.c     the hub: asynchronous calls on the worker's loop and upstream client, retries, concurrency limit,
 *               circuit breaker (route/health.h), the shared verdict caches, metrics
 *
 * Threading: the hub is shared by every worker; a call belongs to the worker (loop, upstream client) that started it
 * and its callback runs on that loop. Nothing here logs, counts or stores the screened text. */
#ifndef CUSTOS_GUARD_GUARD_H
#define CUSTOS_GUARD_GUARD_H

#include "config/config.h"
#include "core/loop.h"
#include "metrics/metrics.h"
#include "upstream/client.h"
#include "util/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUSTOS_GUARD_MAX_TEXT (64u * 1024)     /* bytes of one text sent to a guard (the rest is not sent) */
#define CUSTOS_GUARD_AZURE_MAX_CHARS 10000     /* Azure's text:analyze / shieldPrompt limit, in code points */
#define CUSTOS_GUARD_MAX_RESPONSE (64u * 1024) /* a longer guard answer is an error */
#define CUSTOS_GUARD_LLAMA_NCODES 14           /* S1..S14 */
#define CUSTOS_GUARD_MAX_PENDING 64            /* guard questions one request may have in flight */

typedef enum {
    CUSTOS_GUARD_CHECK_HARM = 0, /* hate, sexual, violence, self_harm */
    CUSTOS_GUARD_CHECK_JAILBREAK,
    CUSTOS_GUARD_CHECK_INDIRECT,
    CUSTOS_GUARD_NCHECKS
} custos_guard_check_t;

typedef enum {
    CUSTOS_GUARD_OK = 0,
    CUSTOS_GUARD_ERR_TIMEOUT, /* no complete answer within timeout_ms (every attempt) */
    CUSTOS_GUARD_ERR_CONNECT, /* refused, reset, TLS, DNS */
    CUSTOS_GUARD_ERR_HTTP,    /* an answer other than 200 */
    CUSTOS_GUARD_ERR_PARSE,   /* a 200 the adapter cannot read (garbage) */
    CUSTOS_GUARD_ERR_BUSY,    /* max_concurrency checks already in flight */
    CUSTOS_GUARD_ERR_OPEN,    /* circuit breaker open */
    CUSTOS_GUARD_ERR_INTERNAL,
    CUSTOS_GUARD_NERRS
} custos_guard_err_t;

/* What a guard said about one text. */
typedef struct custos_guard_verdict {
    custos_guard_err_t err;
    bool cached;
    bool unsafe;         /* anything flagged (a mapped category, another Llama Guard code, an attack) */
    bool flagged[4];     /* hate, sexual, violence, self_harm (CUSTOS_RAI_* order) */
    int8_t severity[4];  /* 0..7 when the guard grades (Azure, http-classifier with severity), else -1 */
    bool attack;         /* jailbreak / indirect attack detected */
    uint32_t codes;      /* llama-guard: bit k-1 = S<k> */
    uint32_t other;      /* codes not mapped onto the four categories (recorded, never blocking) */
    uint64_t latency_ns; /* of the answer (0 when cached or not asked) */
} custos_guard_verdict_t;

const char *custos_guard_check_name(custos_guard_check_t c); /* "harm", "jailbreak", "indirect_attack" */
const char *custos_guard_err_name(custos_guard_err_t e);     /* "timeout", "connect", ... ("ok") */
const char *custos_guard_type_name(custos_guard_type_t t);   /* "llama-guard", ... */

/* ---------- adapters (adapters.c): pure ---------- */

/* The request for one check of text[0..len) (src: CUSTOS_RAI_PROMPT or CUSTOS_RAI_COMPLETION): appends the path and
 * query (from the guard's URL path) to path and the JSON body to body. Returns 0, CUSTOS_EINVAL (the guard type has
 * no such check: llama-guard and attacks) or CUSTOS_ENOMEM / CUSTOS_ETOOBIG. */
int custos_guard_build(const custos_guard_config_t *g, custos_guard_check_t check, int src, const char *text,
                       size_t len, custos_buf_t *path, custos_buf_t *body);

/* Reads a guard's 200 answer body[0..len) into *v (cleared first; err = OK or ERR_PARSE). Returns 0 or
 * CUSTOS_EPROTO (then v->err = CUSTOS_GUARD_ERR_PARSE). Strict: anything it does not understand is an error. */
int custos_guard_parse(const custos_guard_config_t *g, custos_guard_check_t check, const char *body, size_t len,
                       custos_guard_verdict_t *v);

/* Llama Guard 3 pieces, exposed for tests and the fuzzer. */
int custos_guard_llama_prompt(int src, const char *text, size_t len, custos_buf_t *out);
/* Parses the model's generated text ("safe" / "unsafe\nS1,S10"). Returns 0 or CUSTOS_EPROTO. */
int custos_guard_llama_parse_text(const char *s, size_t n, custos_guard_verdict_t *v);
/* S-code (1..14) -> CUSTOS_RAI_* category, or -1 (recorded as "other"). */
int custos_guard_llama_category(int code);

/* Azure Content Safety text:detectGroundedness (for callers that ask it directly; not part of the cascade):
 * builds {"domain","task":"Summarization","text","groundingSources"} and reads ungroundedDetected /
 * ungroundedPercentage. */
int custos_guard_azure_groundedness_build(const custos_guard_config_t *g, const char *text, size_t len,
                                          const char *const *sources, const size_t *source_lens, size_t nsources,
                                          custos_buf_t *path, custos_buf_t *body);
int custos_guard_azure_groundedness_parse(const char *body, size_t len, bool *ungrounded, double *percentage);

/* ---------- cascade (cascade.c): pure ---------- */

typedef enum {
    CUSTOS_CASCADE_STEP_ALLOW = 0, /* below the band: the in-process model passes it */
    CUSTOS_CASCADE_STEP_BLOCK,     /* above the band: the in-process model filters it */
    CUSTOS_CASCADE_STEP_ASK,       /* inside the band (or mode guard): the guard decides */
    CUSTOS_CASCADE_STEP_LOCAL,     /* mode in_process: the usual threshold rule */
} custos_cascade_step_t;

/* The step for an in-process score (calibrated, [0,1]) under rg. */
custos_cascade_step_t custos_cascade_step(const custos_rai_guard_t *rg, float score);

/* The guard's decision for harm category k (CUSTOS_RAI_*) under threshold (Azure 0..7): graded guards filter at
 * severity >= threshold, binary ones (Llama Guard) when the category is flagged. */
bool custos_cascade_guard_blocks(const custos_guard_verdict_t *v, int k, int threshold);

/* Offline estimate for `custos eval --cascade-band`: counts the scores inside [lo, hi]. */
size_t custos_cascade_count_in_band(const float *scores, size_t n, float lo, float hi);

/* ---------- cache (cache.c) ---------- */

/* Cache key: HMAC-SHA256 under a random per-process key over (policy, guard, check, direction, normalised text),
 * first 16 bytes. Normalisation: leading / trailing white space dropped, inner runs of white space as one space. */
typedef struct custos_guard_key {
    uint8_t b[16];
} custos_guard_key_t;

int custos_guard_key(const char *policy, const char *guard, custos_guard_check_t check, int src, const char *text,
                     size_t len, custos_guard_key_t *out);

/* A bounded verdict cache (4-way set associative, oldest way replaced), one per guard; not thread-safe (the hub
 * locks it). */
typedef struct custos_guard_cache custos_guard_cache_t;

/* entries: capacity (rounded up to a power of two, at least 4); ttl_ms: entries older than this are misses. */
int custos_guard_cache_new(size_t entries, uint64_t ttl_ms, custos_guard_cache_t **out);
void custos_guard_cache_free(custos_guard_cache_t *c);
size_t custos_guard_cache_capacity(const custos_guard_cache_t *c);
bool custos_guard_cache_get(custos_guard_cache_t *c, const custos_guard_key_t *k, uint64_t now_ms,
                            custos_guard_verdict_t *out);
/* Only answers (err == OK) are stored. */
void custos_guard_cache_put(custos_guard_cache_t *c, const custos_guard_key_t *k, uint64_t now_ms,
                            const custos_guard_verdict_t *v);

/* ---------- the hub (guard.c) ---------- */

typedef struct custos_guard_hub custos_guard_hub_t;
typedef struct custos_guard_call custos_guard_call_t;

/* Registers the guard metric families in reg (docs/metrics.md) for nworkers shards. */
int custos_guard_hub_new(custos_metrics_t *reg, unsigned nworkers, custos_guard_hub_t **out);
/* After every worker stopped (no call in flight). NULL-safe. */
void custos_guard_hub_free(custos_guard_hub_t *h);

/* One question. Strings are copied; they need not outlive the call to custos_guard_ask. */
typedef struct custos_guard_query {
    const custos_guard_config_t *guard;
    const char *policy; /* cache partition (the rai_policy's name) */
    custos_guard_check_t check;
    int src; /* CUSTOS_RAI_PROMPT / CUSTOS_RAI_COMPLETION */
    const char *text;
    size_t len;
} custos_guard_query_t;

/* v is valid during the call only. */
typedef void (*custos_guard_done_fn)(void *ud, const custos_guard_verdict_t *v);

/* Asks a guard on the worker's loop and upstream client. Returns 1 when *now holds the verdict already (cache hit,
 * circuit open, concurrency limit, a request that could not be built): fn is not called. Returns 0 when the question
 * is in flight: *call is set and fn(ud, verdict) runs exactly once on the loop later, unless custos_guard_cancel is
 * called first. Worker thread only. */
int custos_guard_ask(custos_guard_hub_t *h, unsigned worker, custos_loop_t *loop, custos_upstream_t *up,
                     const custos_guard_query_t *q, custos_guard_done_fn fn, void *ud, custos_guard_call_t **call,
                     custos_guard_verdict_t *now);

/* Abandons a call in flight (its callback will not run). Not for a call whose callback already ran. */
void custos_guard_cancel(custos_guard_call_t *c);

/* Records whether the guard's verdict differed from what the in-process model alone would have decided
 * (custos_guard_disagreements_total / custos_guard_compared_total). */
void custos_guard_note_comparison(custos_guard_hub_t *h, unsigned worker, const custos_guard_config_t *g,
                                  custos_guard_check_t check, bool disagree);

/* Counts one cascade step (custos_cascade_decisions_total{policy, check, decision}). */
void custos_guard_note_step(custos_guard_hub_t *h, unsigned worker, const char *policy, custos_guard_check_t check,
                            custos_cascade_step_t step);

#endif
