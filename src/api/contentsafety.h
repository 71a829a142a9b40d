/* SPDX-License-Identifier: Apache-2.0
 * The Azure AI Content Safety data plane (/contentsafety/...), docs/content-safety-api.md: text:analyze (harm model
 * and blocklists), text:shieldPrompt (prompt shields) and text blocklist management (SQLite at storage.path, compiled
 * into gw->blocklists and published to every worker). Errors in Azure.Core's shape with x-ms-error-code. */
#ifndef CUSTOS_API_CONTENTSAFETY_H
#define CUSTOS_API_CONTENTSAFETY_H

#include "api/gateway.h"
#include "net/http_server.h"
#include "safety/blocklist_store.h"

#include <json-c/json.h>

#include <stdbool.h>
#include <stddef.h>

#define CUSTOS_CS_MAX_BODY (1024 * 1024)       /* request bodies above this get 413 */
#define CUSTOS_CS_MAX_TEXT_CHARS 10000         /* text:analyze text, shieldPrompt userPrompt (code points) */
#define CUSTOS_CS_MAX_DOCUMENTS 5              /* shieldPrompt documents */
#define CUSTOS_CS_MAX_DOCUMENTS_CHARS 10000    /* all documents together (code points) */
#define CUSTOS_CS_MAX_GROUNDED_TEXT_CHARS 7500 /* detectGroundedness text and qna.query (code points) */
#define CUSTOS_CS_MAX_GROUNDING_SOURCES 256    /* detectGroundedness groundingSources */
#define CUSTOS_CS_MAX_GROUNDING_CHARS 55000    /* all groundingSources together (code points) */
#define CUSTOS_CS_MAX_BLOCKLIST_NAMES 10       /* text:analyze blocklistNames */
#define CUSTOS_CS_MAX_ITEMS_PER_CALL 100       /* add / remove calls */
/* Changes to sets up to this many items (in all lists) compile inside the write and are live for every worker when
 * the answer is sent; larger sets compile on a background thread after the commit (bursts coalesced). */
#define CUSTOS_CS_SYNC_COMPILE_MAX_ITEMS 10000

/* Parses the body of :addOrUpdateBlocklistItems (a parsed JSON object): 1..100 items of {"text", "description"?,
 * "isRegex"?, "wholeWord"?, "normalize"?}, each checked with custos_blocklist_item_check. Fills items[0..*count)
 * (strings borrowed from o). Returns 0, or CUSTOS_EINVAL with a message naming the item index (never its text). */
int custos_cs_parse_items(json_object *o, custos_blstore_item_t items[CUSTOS_CS_MAX_ITEMS_PER_CALL], size_t *count,
                          char *msg, size_t msglen);

/* The request record's operation (a custos_audit_op_t, audit/record.h) for a route's metrics label
 * ("contentsafety_analyze", ...). A handler that answers asynchronously records with it when it answers. */
int custos_contentsafety_audit_op(const char *label);

/* Answers with an Azure.Core error {"error":{"code","message","details":[]}} and x-ms-error-code (also from a handler
 * that answers later, e.g. the groundedness judge). message is a constant or metadata, never request content. */
void custos_cs_error(custos_http_req_t *req, int status, const char *code, const char *message);

/* True when path (raw, without query) is under /contentsafety/. */
bool custos_contentsafety_path(const char *path, size_t len);

/* Handles one /contentsafety/ request on worker w (its thread): authenticate (api-key, Ocp-Apim-Subscription-Key,
 * bearer), authorize (reads and analysis: inference.user or admin at "/", or contributor; blocklist changes:
 * contributor or admin at "/"), validate, act, answer. Blocklist changes are synchronous store writes on the worker,
 * recorded in the governance log inside the write transaction. Sets up to CUSTOS_CS_SYNC_COMPILE_MAX_ITEMS items are
 * compiled inside it too (a change that does not compile is not stored) and published to every worker before the
 * answer; larger ones are compiled by a background thread right after the commit (bursts coalesced). */
void custos_contentsafety_handle(custos_worker_t *w, custos_http_req_t *req);

/* Start-up (main thread, before the workers): creates gw->blocklists from the store named by gw->cfg->storage (a
 * missing SQLite file is an empty set) and starts the background compiler thread. Returns 0 or a negative code with err
 * filled (an unreadable store stops start-up). One gateway per process (the compiler thread is process-wide). */
int custos_contentsafety_init(custos_gateway_t *gw, char *err, size_t errlen);

/* Rebuilds the set from the store and publishes it (SIGHUP, or after changes by another process), on the background
 * compiler thread (so the caller does not wait for the compile). Thread-safe. On failure the running set stays and
 * the error is logged. Returns 0 or a negative code. */
int custos_contentsafety_reload(custos_gateway_t *gw);

/* Store watcher (api/store_sync.c, its thread; st is its handle): when the store's blocklists counter is ahead of
 * the running set (another replica or process changed blocklists), schedules a rebuild on the background compiler
 * (a version whose build failed is not retried until the next change). Returns 0 or the store's error. */
int custos_contentsafety_store_poll(custos_gateway_t *gw, custos_store_t *st);

/* Stops the background compiler and frees gw->blocklists (after the workers stopped). */
void custos_contentsafety_dispose(custos_gateway_t *gw);

#endif
