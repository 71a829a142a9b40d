/* SPDX-License-Identifier: Apache-2.0
 * The gateway's side of quotas (quota/quota.h, docs/quotas.md): which keys a request is charged to, its
 * estimate, Azure's 429 answer, and the x-ratelimit-remaining-* headers. Worker thread only. */
#ifndef CUSTOS_API_QUOTA_GATE_H
#define CUSTOS_API_QUOTA_GATE_H

#include "api/gateway.h"
#include "api/routes.h"
#include "quota/quota.h"

#include <json-c/json.h>

/* Admission for a request to dep by principal (may be NULL) with the parsed body. Fills *t. Returns true
 * when the request may go on (also when no quota applies), false when it must be refused with
 * custos_quota_gate_reject. */
bool custos_quota_gate_admit(custos_worker_t *w, custos_op_t op, const custos_deployment_config_t *dep,
                             const char *principal, json_object *body, custos_quota_ticket_t *t);

/* Sends the refusal for a ticket that was not admitted: 429 with Azure's body and headers (retry-after,
 * retry-after-ms, x-ratelimit-remaining-*, policy-id), or 503 when the shared store is down and
 * quotas.redis.on_failure is closed. Returns the status sent. */
int custos_quota_gate_reject(custos_http_req_t *req, custos_op_t op, const custos_quota_ticket_t *t);

/* Response headers: when a quota applied, removes x-ratelimit-remaining-requests / -tokens from
 * h[0..n) (the backend's) and appends custos' own, formatted into the request arena. Returns the new
 * count (at most cap). */
size_t custos_quota_gate_headers(custos_http_req_t *req, const custos_quota_ticket_t *t, custos_http_header_t *h,
                                 size_t n, size_t cap);

/* After the answer: charges the real usage (prompt + completion tokens, as the proxy read them from the
 * answer's usage; 0/0 = no usage seen: the estimate stands). Idempotent. */
void custos_quota_gate_settle(custos_worker_t *w, custos_quota_ticket_t *t, int64_t prompt_tokens,
                              int64_t completion_tokens);

#endif
