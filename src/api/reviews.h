/* SPDX-License-Identifier: Apache-2.0
 * Use cases and human review on the inference path, and the review API (/v1/reviews, docs/reviews.md).
 *
 * On the inference path: custos_gov_admit resolves the request's use case (403 when it may not run) and decides
 * whether an item is queued; custos_gov_finish, on the whole 200 answer, queues the item (content sealed in the store)
 * and rewrites the answer: content withheld (high), marked as a draft (elevated), unchanged (standard QA), and turned
 * into a one-chunk SSE stream when the client asked for a stream that was fetched whole.
 *
 * Threading: everything runs on the worker thread owning the request; the store and vault handles are the worker's
 * own (governance/review.h custos_review_local). Store calls block (governed requests and the review API only). */
#ifndef CUSTOS_API_REVIEWS_H
#define CUSTOS_API_REVIEWS_H

#include "api/authn.h"
#include "api/contentfilter.h"
#include "api/gateway.h"
#include "api/routes.h"
#include "net/http_server.h"
#include "util/buf.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct custos_gov custos_gov_t;

/* True when path is /v1/reviews or below it. */
bool custos_reviews_path(const char *path, size_t len);

/* Serves one /v1/reviews request (authenticates and authorizes itself). */
void custos_reviews_handle(custos_worker_t *w, custos_http_req_t *req);

/* After authorization and the deployment lookup, before prompt screening (chat and completions; other operations
 * return 0 with *out NULL). Returns 0 with *out (request arena; NULL when the request runs ungoverned) -- *stream may
 * have been cleared: the backend is then asked for a whole answer and the client still gets a stream --, or -1 when
 * the request was answered (403 use_case_*; *status set). body may be changed (stream keys removed). */
int custos_gov_admit(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller,
                     const custos_deployment_config_t *dep, custos_op_t op, json_object *body, bool *stream,
                     custos_gov_t **out, int *status);

/* The whole 200 answer in resp (after content filtering). Queues the review item when one is due and rewrites resp;
 * appends response headers to h[*n..cap) (values live in the request arena) and may replace *content_type. sent is
 * the request body as sent upstream. Returns 0, or a negative code when the answer must not be released (then
 * answer 503 review_unavailable). */
int custos_gov_finish(custos_gov_t *g, custos_worker_t *w, custos_http_req_t *req, json_object *sent,
                      const custos_cf_summary_t *cs, custos_buf_t *resp, custos_http_header_t *h, size_t *n, size_t cap,
                      const char **content_type);

/* Renders an upstream 200 body (a chat.completion / text_completion object) for the client: hold = every choice's
 * output withheld (content / text "", no tool calls, no logprobs); annotation (taken over; may be NULL) added as
 * "custos_review"; sse = as one chunk ("chat.completion.chunk" / "text_completion") and [DONE], with usage when asked.
 * The tree form changes r. Pure; thread-safe. Returns 0, CUSTOS_EPROTO (not a JSON object), CUSTOS_EINVAL (not JSON),
 * CUSTOS_ETOOBIG or CUSTOS_ENOMEM. */
int custos_reviews_render_tree(json_object *r, custos_op_t op, bool hold, json_object *annotation, bool sse, bool usage,
                               custos_buf_t *out);
int custos_reviews_render(const char *body, size_t n, custos_op_t op, bool hold, bool sse, bool usage,
                          custos_buf_t *out);

/* For the request record: the use case id and tier name, and whether the client asked for a stream. */
const char *custos_gov_use_case(const custos_gov_t *g);
const char *custos_gov_tier(const custos_gov_t *g);
bool custos_gov_client_stream(const custos_gov_t *g);

/* Registers the review metric families in m->reg (docs/metrics.md). Returns 0 or a negative code. */
int custos_reviews_metrics_init(custos_gateway_metrics_t *m);
/* Appends the store-derived gauge custos_review_pending{tier} (read at scrape; nothing when no use case is
 * configured or the store is unavailable). */
void custos_reviews_render_metrics(custos_worker_t *w, custos_buf_t *b);

#endif
