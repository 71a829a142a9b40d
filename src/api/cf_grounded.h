/* SPDX-License-Identifier: Apache-2.0
 * Groundedness on the chat inference path (internal to api/contentfilter.c; docs/content-filtering.md
 * "Groundedness"): when the deployment's rai_policy has groundedness enabled, the answer of each choice is scored
 * against the request's sources with the in-process detector (safety/grounded.h) and annotated with Azure's
 * choices[i].content_filter_results.ungrounded_material, or withheld (action block).
 *
 * Sources: the text of `role: tool` / `function` messages, the inner text of <documents>...</documents> spans in any
 * message (the same spans the indirect-attack shield screens), and retrieved passages an "on your data" answer
 * carries (message.context.citations[].content, or delta.context in a stream). No sources -> no check, no annotation.
 *
 * Threading: one custos_cf_grounded_t per request, owned by the worker thread handling it. Sources and answer texts are
 * copied into heap buffers capped by the detector's limits (safety/grounded.h); nothing of them is ever logged. */
#ifndef CUSTOS_API_CF_GROUNDED_H
#define CUSTOS_API_CF_GROUNDED_H

#include "config/config.h"
#include "safety/safety.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct custos_cf_grounded custos_cf_grounded_t;

/* Finds <documents>...</documents> spans in s[0..n) (contentfilter.c): spans[i] = {start, end} byte offsets of the
 * inner text. Returns their count (at most cap). */
size_t custos_cf_doc_spans(const char *s, size_t n, size_t spans[][2], size_t cap);

/* Creates the state for a chat request whose policy has groundedness enabled (*out = NULL otherwise, and for
 * non-chat operations) and collects the prompt's sources from body (the request as sent upstream). Returns 0 or
 * CUSTOS_ENOMEM. Sources beyond the detector's caps are dropped (the check then runs on what fits). */
int custos_cf_grounded_new(const custos_rai_policy_config_t *pol, const custos_safety_t *safety, bool chat,
                           json_object *body, custos_cf_grounded_t **out);
void custos_cf_grounded_free(custos_cf_grounded_t *g);

/* Adds the passages of an "on your data" context object ({"citations":[{"content":...}]}); NULL-safe. */
void custos_cf_grounded_add_context(custos_cf_grounded_t *g, json_object *context);

/* True when the check will run (enabled and at least one source so far). NULL-safe. */
bool custos_cf_grounded_active(const custos_cf_grounded_t *g);

/* Default streaming mode with action block: each choice's text is held until its end, so that an ungrounded answer
 * is never partly sent; at most CUSTOS_CF_GROUNDED_MAX_HELD bytes (the detector's cap): a longer answer cannot be
 * checked and is withheld (fail closed). NULL-safe. */
#define CUSTOS_CF_GROUNDED_MAX_HELD (256u * 1024)
bool custos_cf_grounded_holds(const custos_cf_grounded_t *g, bool async_mode);

/* Streaming: text of choice idx released so far (appended; capped at the detector's text limit). */
void custos_cf_grounded_stream_text(custos_cf_grounded_t *g, int idx, const char *s, size_t n);
/* Streaming: custos_cf_grounded_check on the text collected for choice idx (CUSTOS_ETOOBIG past the cap). */
int custos_cf_grounded_check_stream(custos_cf_grounded_t *g, int idx, json_object *annot, bool *block, bool *detected);

/* Scores text[0..len) against the sources and adds "ungrounded_material" ({"filtered","detected","details":
 * [{"completion_start_offset","completion_end_offset"}]}, code points of text) to annot.
 * *block: the answer must be withheld (action block and ungrounded material found). *detected: ungrounded material
 * found. A check that cannot run (no model, input over the caps, out of memory) adds nothing and returns a negative
 * code; with action block the caller withholds the answer (fail closed). Does nothing (returns 0) when inactive. */
int custos_cf_grounded_check(custos_cf_grounded_t *g, const char *text, size_t len, json_object *annot, bool *block,
                             bool *detected);

#endif
