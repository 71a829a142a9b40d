/* SPDX-License-Identifier: Apache-2.0
 * text:detectGroundedness with "reasoning": true (docs/content-safety-api.md "Reasoning"): custos asks a chat
 * deployment of its own (the judge) to list the ungrounded sentences with a reason, through the deployment's normal
 * pipeline (api/gateway.h custos_gateway_call: routing inside the residency boundary, health, retries, upstream
 * credentials, quotas, a metadata-only request record), asynchronously on the worker's loop, and answers in Azure's
 * shape with "reason" in each ungroundedDetails item.
 *
 * The judge's instructions are models/prompts/groundedness-reasoning.txt (loaded once at start). Its answer must be
 * exactly {"ungrounded":[{"text":"<a sentence of the text>","reason":"..."}]}; anything else is a 502. The judge's
 * text is never logged: errors name the deployment and a fixed reason only. */
#ifndef CUSTOS_API_CS_REASONING_H
#define CUSTOS_API_CS_REASONING_H

#include "api/authn.h"
#include "api/gateway.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define CUSTOS_CS_JUDGE_MAX_ITEMS 64                                /* ungrounded items a verdict may list */
#define CUSTOS_CS_JUDGE_MAX_REASON 2000                             /* bytes of one reason */
#define CUSTOS_CS_JUDGE_PROMPT_MAX 65536                            /* bytes of the prompt template */
#define CUSTOS_CS_JUDGE_MAX_TOKENS 4096                             /* max_tokens asked of the judge */
#define CUSTOS_CS_JUDGE_PROMPT "prompts/groundedness-reasoning.txt" /* under the models directory */

/* Loads the judge's prompt template from path (NULL: the models directory, safety.h custos_safety_default_model).
 * A missing file is not an error: reasoning then answers 503. Main thread, before the workers start. */
int custos_cs_reasoning_init(const char *path, char *err, size_t errlen);
void custos_cs_reasoning_dispose(void);

/* A validated detectGroundedness request (strings borrowed for the call; copied as needed). */
typedef struct custos_cs_reasoning_in {
    const char *text;
    size_t text_len;
    const char *const *sources;
    const size_t *source_lens;
    size_t n_sources;
    const char *query; /* QnA only; NULL otherwise */
    size_t query_len;
    bool medical, qna;
    json_object *llm_resource; /* the body's llmResource, or NULL */
} custos_cs_reasoning_in_t;

/* An answer to give at once (status, Azure.Core code, message: metadata only). */
typedef struct custos_cs_answer {
    int status;
    const char *code;
    char message[320];
} custos_cs_answer_t;

/* Starts the judge call for req. Returns 0 when this module answers the client (maybe already, inside this call)
 * and records the request itself; -1 when the caller must answer *e now (400: no judge deployment, a bad
 * llmResource; 401/403: the caller may not use the deployment it named; 503: no prompt template). */
int custos_cs_reasoning_start(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller,
                              const custos_cs_reasoning_in_t *in, custos_cs_answer_t *e);

/* Parses a judge's chat completion body (for tests and the fuzzer): fills items (up to CUSTOS_CS_JUDGE_MAX_ITEMS)
 * with offsets into text; returns the count, or -1 with *why (a constant) when the body is not a valid verdict. */
typedef struct custos_cs_verdict_item {
    size_t off, len; /* bytes of text */
    const char *reason;
    size_t reason_len; /* borrowed from *root */
} custos_cs_verdict_item_t;
int custos_cs_verdict_parse(const char *body, size_t len, const char *text, size_t text_len,
                            custos_cs_verdict_item_t *items, json_object **root, const char **why);

#endif
