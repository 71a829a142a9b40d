/* SPDX-License-Identifier: Apache-2.0
 * Content filtering on the inference path (docs/content-filtering.md): screens the prompt before the upstream call
 * and the completion after it (whole, or window by window when streamed) with the in-process classifiers under the
 * deployment's rai_policy, and writes Azure's annotations (prompt_filter_results, choices[i].content_filter_results),
 * the 400 content_filter answer, finish_reason "content_filter", and the streaming annotation frames.
 *
 * Threading: one custos_cf_t per request, used only by the worker thread that owns the request. It borrows the
 * worker's classifier scratch and the gateway's shared read-only models. No content ever leaves through a log,
 * metric or record: the only outputs are the response body / stream to the client and the metadata summary. */
#ifndef CUSTOS_API_CONTENTFILTER_H
#define CUSTOS_API_CONTENTFILTER_H

#include "api/gateway.h"
#include "api/routes.h"
#include "safety/harm.h"
#include "safety/pii.h"
#include "util/buf.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#define CUSTOS_CF_MAX_CHOICES 128      /* n (and best_of) above this are refused with 400 */
#define CUSTOS_CF_MAX_PLACEHOLDERS 256 /* PII placeholders per request; more identifiers are redacted by type */

typedef struct custos_cf custos_cf_t;

/* Metadata-only outcome for the request record and metrics (no text). Severity -1 = not screened. */
typedef struct custos_cf_summary {
    int8_t prompt_severity[4];     /* hate, sexual, violence, self_harm: max over the screened prompt texts */
    int8_t completion_severity[4]; /* max over every screened completion window */
    bool prompt_filtered, completion_filtered;
    bool completion_screened; /* some completion text was screened */
    bool jailbreak_detected, indirect_attack_detected;
    uint32_t pii_prompt, pii_completion;                                                   /* identifiers found */
    uint16_t pii_prompt_types[CUSTOS_PII_NTYPES], pii_completion_types[CUSTOS_PII_NTYPES]; /* per type, saturating */
    uint32_t blocklist_hits;
    /* groundedness of the answer (api/cf_grounded.h): -1 not checked, 0 grounded, 1 ungrounded material found */
    int8_t ungrounded;
    bool error; /* a check failed to run */
    /* external guard models (docs/guard-models.md): asked, gave no verdict, decided otherwise than in-process */
    bool guard_asked, guard_error, guard_disagreed;
} custos_cf_summary_t;

/* Outcome of custos_cf_prompt. */
typedef enum {
    CUSTOS_CF_PASS = 0, /* go on; *out is set (NULL when the operation is not filtered, e.g. embeddings) */
    CUSTOS_CF_ANSWERED, /* the request was answered (400 content_filter, or an error); status in *status */
    CUSTOS_CF_PENDING,  /* guard models were asked (docs/guard-models.md): *out is set; register custos_cf_on_resume
                         * now -- it runs once on this worker's loop with the final outcome (PASS or ANSWERED). Until
                         * then body must stay alive; custos_cf_release cancels the questions. */
} custos_cf_outcome_t;

/* Screens the prompt of a chat/completions request body (parsed, owned by the caller) under dep->rai. May rewrite
 * body in place (PII redact / placeholder). On CUSTOS_CF_PASS *out is a new state in req's arena (or NULL when
 * nothing is filtered for this operation). On CUSTOS_CF_ANSWERED the client has been answered with *status and
 * *out, when not NULL, holds the outcome for the request record. Release *out with custos_cf_release either way. */
custos_cf_outcome_t custos_cf_prompt(custos_worker_t *w, custos_http_req_t *req, const custos_deployment_config_t *dep,
                                     custos_op_t op, json_object *body, bool stream, custos_cf_t **out, int *status);

/* The continuation of a CUSTOS_CF_PENDING prompt (status: as custos_cf_prompt's *status). */
void custos_cf_on_resume(custos_cf_t *cf, void (*fn)(void *ud, custos_cf_outcome_t o, int status), void *ud);

/* Before custos_cf_response on a non-streamed 200 answer: asks the guard models the policy's cascade needs for the
 * answer's choices (body is read, not changed). Returns 0 when custos_cf_response can run now, or 1 when guards were
 * asked: done(ud) runs once on the loop when their verdicts are in; call custos_cf_response then. */
int custos_cf_response_guard(custos_cf_t *cf, const custos_buf_t *body, void (*done)(void *ud), void *ud);

/* Non-streamed 200 answer: rewrites body (the upstream JSON) in place with the completion screened and both
 * annotations added. A body that is not a JSON object is left as it is. Returns 0 or CUSTOS_ENOMEM. */
int custos_cf_response(custos_cf_t *cf, custos_buf_t *body);

/* Streaming. The first frame (prompt annotations) goes right after the stream starts. */
int custos_cf_stream_first(custos_cf_t *cf, custos_buf_t *out);
/* One upstream SSE event's data (data[0..len)). Appends what the client should get now (zero or more complete SSE
 * events) to out. Returns 0, 1 when the stream is finished for the client (every choice filtered, or [DONE] sent:
 * stop reading upstream), or a negative code. */
int custos_cf_stream_event(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out);
/* The same without the fast path for plain text deltas (always the full json-c parse): identical results, kept
 * for the differential fuzzer (tests/fuzz/fuzz_cf_stream_diff.c). */
int custos_cf_stream_event_full(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out);
/* custos_cf_stream_event returns 2 when a default-mode window waits for a guard model's verdict (docs/guard-models.md):
 * the event (and every later one, also 2) is kept; stop reading the upstream. When the verdicts are in, fn(ud, data,
 * len, state) runs on the loop with what the client should get now and state 0 (go on reading), 1 (the stream is
 * finished for the client, as custos_cf_stream_event's 1), 2 (waiting again) or a negative code. */
void custos_cf_stream_on_resume(custos_cf_t *cf, void (*fn)(void *ud, const char *data, size_t len, int state),
                                void *ud);
/* Upstream ended (cleanly or not): flushes held windows (screened) to out. complete = upstream sent [DONE]. */
int custos_cf_stream_end(custos_cf_t *cf, bool complete, custos_buf_t *out);
/* True once the stream ended for the client (a [DONE] was written by this module). */
bool custos_cf_stream_done(const custos_cf_t *cf);

/* The harm severities the prompt / completion filter uses for one text: the whole text and each sentence (runs of
 * short sentences joined) scored, the highest severity per category kept. For offline evaluations that must judge
 * exactly as the gateway does (custos eval --fairness). Thread-safe for a shared m; scratch per thread. Returns 0 or
 * an error of custos_harm_score. */
int custos_cf_harm_severities(const custos_harm_model_t *m, const char *text, size_t len, int sev[CUSTOS_HARM_NCAT],
                              custos_safety_scratch_t *sc);

/* Entry i of a chat request's "messages" array (i < its length): false when the entry is not an object; else *role
 * is its role ("" when absent or not a string) and *content its content (NULL when absent), both borrowed. */
bool custos_cf_message_at(json_object *msgs, size_t i, const char **role, json_object **content);

/* Whether messages with this role carry sources (documents, tool output): "tool", or the legacy "function". */
bool custos_cf_role_is_source(const char *role);

/* Frees what the state holds outside the request arena (call once, when the request ends; NULL-safe). */
void custos_cf_release(custos_cf_t *cf);

/* Metadata summary so far (never NULL-safe: cf must not be NULL). */
const custos_cf_summary_t *custos_cf_summary(const custos_cf_t *cf);

#endif
