/* SPDX-License-Identifier: Apache-2.0
 * Request handling: a request's way through custos.
 *   route (api/routes) → authenticate (auth/apikey) → validate the body (util/json) → deployment →
 *   candidates inside the residency boundary (route/router) → upstream attempts with retries and
 *   failover (upstream/client) → response (whole, or SSE event by event) → metrics.
 * Everything here runs on one worker thread; per-request state lives in the request arena. */
#include "api/access.h"
#include "api/admin.h"
#include "api/authn.h"
#include "api/contentfilter.h"
#include "api/contentsafety.h"
#include "api/gateway.h"
#include "api/quota_gate.h"
#include "api/reviews.h"
#include "api/routes.h"
#include "api/ui.h"
#include "auth/apikey.h"
#include "audit/audit.h"
#include "auth/upstream_cred.h"
#include "governance/card.h"
#include "net/sse.h"
#include "route/balance.h"
#include "route/router.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define MAX_CANDIDATES 64
#define MAX_PASS_HEADERS 16

static const char MSG_404_DEPLOYMENT[] = "The API deployment for this resource does not exist. If you created the "
                                         "deployment within the last 5 minutes, please wait a moment and try again.";

/* Upstream response headers passed on to the client (lower-case). Everything else is dropped. */
static const char *const PASS_HEADERS[] = {
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "openai-processing-ms",
    "openai-version",
};

typedef struct proxy {
    custos_worker_t *w;
    custos_http_req_t *req;
    custos_config_t *cfg; /* reference held for the request's lifetime */
    custos_route_t route;
    const custos_deployment_config_t *dep;
    const custos_backend_config_t *cands[MAX_CANDIDATES];
    size_t ncands;
    size_t cand_idx;   /* candidate of the current attempt */
    unsigned attempt;  /* attempts started */
    unsigned round;    /* completed passes over all candidates */
    json_object *body; /* parsed client body (owned) */
    bool stream;

    custos_upstream_req_t *up;
    custos_timer_t retry_timer;
    uint64_t up_started_ns;
    uint64_t upstream_ns; /* time spent in upstream attempts and backoff */

    /* current attempt's response */
    int status;
    char content_type[128];
    custos_http_header_t pass[MAX_PASS_HEADERS];
    size_t npass;
    long retry_after_ms; /* from the last response, -1 if none */
    custos_buf_t resp;   /* buffered body (non-streamed, or an error answer to a streamed request) */
    bool streaming;      /* client stream started: no more retries */
    bool paused;
    custos_sse_parser_t sse;
    bool sse_init;
    bool saw_done;
    const char *last_error; /* static text for the 503 reason */
    int64_t prompt_tokens, completion_tokens;
    bool finished;
    bool first_byte_recorded;
    custos_route_table_t *rt;   /* routing table reference (route/balance.h); NULL only before routing */
    custos_route_attempt_t att; /* the current attempt's hold on its backend (in-flight count, trial) */
    uint64_t tried;             /* eligible indices (bit i) already tried in this round */
    uint64_t key_hash;          /* sticky header value hash, when has_key */
    bool has_key;

    uint64_t streamed_bytes; /* SSE bytes relayed to the client (request record) */
    custos_cf_t *cf;         /* content filtering state (api/contentfilter.h); NULL when the op is not filtered */
    bool cf_guarded;         /* the answer's guard questions were asked (custos_cf_response_guard) */
    bool cf_wait;            /* a streamed window waits for a guard verdict: the upstream stays paused */
    const char *principal;   /* authenticated principal id (arena copy), for the request record */
    const char *auth_type;   /* static */
    /* quota admission (api/quota_gate.h), settled in proxy_release */
    custos_quota_ticket_t quota;
    /* internal call (custos_gateway_call): the answer goes to call_cb, never to the client */
    custos_gateway_call_cb call_cb;
    void *call_ud;
    custos_timer_t call_timer;
    size_t call_bytes; /* the call's request body (its record's requestLength) */
    custos_gov_t *gov; /* use case and review (api/reviews.h); NULL when ungoverned */
} proxy_t;

/* The internal call whose record is being written (the client request's own handler data is not a proxy). */
static _Thread_local proxy_t *t_call;

/* ---------- request record (audit/record.h: metadata only) ---------- */

static void proxy_on_abort(custos_http_req_t *req);

static custos_audit_op_t audit_op_of(custos_op_t op)
{
    return op == CUSTOS_OP_CHAT          ? CUSTOS_AUDIT_OP_CHAT
           : op == CUSTOS_OP_COMPLETIONS ? CUSTOS_AUDIT_OP_COMPLETIONS
           : op == CUSTOS_OP_EMBEDDINGS  ? CUSTOS_AUDIT_OP_EMBEDDINGS
           : op == CUSTOS_OP_MODELS_LIST ? CUSTOS_AUDIT_OP_MODELS_LIST
           : op == CUSTOS_OP_MODELS_GET  ? CUSTOS_AUDIT_OP_MODELS_GET
                                         : CUSTOS_AUDIT_OP_OTHER;
}

static void audit_request(custos_worker_t *w, const custos_http_req_t *req, custos_audit_op_t op,
                          const char *deployment, int status, uint64_t total_ns, uint64_t upstream_ns)
{
    custos_audit_t *a = w->gw->audit;
    if (!custos_audit_enabled(a))
        return;
    custos_audit_record_t r;
    custos_audit_record_init(&r);
    uint64_t now_ms = custos_wall_ms();
    r.time_ms = now_ms;
    r.request_time_ms = now_ms - total_ns / 1000000u;
    memcpy(r.request_id, req->request_id, sizeof(r.request_id));
    r.request_id[sizeof(r.request_id) - 1] = 0;
    r.op = op;
    r.api = strncmp(req->path, "/openai/deployments/", 20) == 0 ? CUSTOS_AUDIT_API_AZURE
            : strncmp(req->path, "/openai/v1/", 11) == 0        ? CUSTOS_AUDIT_API_AZURE_V1
            : strncmp(req->path, "/v1/", 4) == 0                ? CUSTOS_AUDIT_API_OPENAI
            : strncmp(req->path, "/contentsafety/", 15) == 0    ? CUSTOS_AUDIT_API_CONTENT_SAFETY
                                                                : CUSTOS_AUDIT_API_UNKNOWN;
    /* raw api-version value (valid ones need no percent-decoding; anything else is not recorded) */
    for (const char *q = req->query; q && *q;) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        if ((size_t)(end - q) > 12 && memcmp(q, "api-version=", 12) == 0) {
            custos_audit_set_api_version(&r, q + 12, (size_t)(end - q - 12));
            break;
        }
        q = amp ? amp + 1 : end;
    }
    /* the client address after the network ACL resolved trusted proxies (X-Forwarded-For / Forwarded) */
    custos_audit_set_caller(&r, (const struct sockaddr *)&req->client_addr, (socklen_t)sizeof(req->client_addr),
                            custos_audit_mask_ip(a));
    /* only configured deployment names: a client's unknown name is never recorded */
    const custos_deployment_config_t *d =
        deployment && *deployment ? custos_config_find_deployment(w->cfg, deployment) : NULL;
    if (d) {
        custos_audit_copy_name(r.deployment, sizeof(r.deployment), d->name);
        custos_audit_copy_name(r.model, sizeof(r.model), d->model);
    }
    r.status = status;
    r.total_us = total_ns / 1000u;
    r.upstream_us = upstream_ns / 1000u;
    r.request_bytes = t_call ? t_call->call_bytes : req->body_len;
    for (size_t i = 0; i < req->nheaders; i++)
        custos_audit_note_header(&r, req->headers[i].name, req->headers[i].name_len);
    proxy_t *p = t_call ? t_call : req->on_abort == proxy_on_abort ? req->handler_data : NULL;
    const char *principal = p ? p->principal : w->cur_principal;
    const char *auth_type = p ? p->auth_type : w->cur_auth_type;
    custos_audit_copy_name(r.principal_id, sizeof(r.principal_id), principal);
    if (auth_type) { /* a static name: no printf on the hot path */
        size_t al = strnlen(auth_type, sizeof(r.auth_type) - 1);
        memcpy(r.auth_type, auth_type, al);
        r.auth_type[al] = 0;
    }
    if (p && !p->finished && p->dep == d && d) {
        if (p->attempt > 0) {
            const custos_backend_config_t *b = p->cands[p->cand_idx];
            custos_audit_copy_name(r.backend, sizeof(r.backend), b->name);
            custos_audit_copy_name(r.region, sizeof(r.region), b->region);
            custos_audit_copy_name(r.data_zone, sizeof(r.data_zone), b->data_zone);
            r.retries = p->attempt - 1;
        }
        r.stream = p->stream || custos_gov_client_stream(p->gov);
        r.response_bytes = p->streaming ? p->streamed_bytes : (status == p->status ? custos_buf_size(&p->resp) : 0);
        r.prompt_tokens = p->prompt_tokens > 0 ? p->prompt_tokens : -1;
        r.completion_tokens = p->completion_tokens > 0 ? p->completion_tokens : -1;
    }
    const custos_quota_ticket_t *q = p ? &p->quota : NULL;
    if (q && (q->active || (!q->allowed && q->status))) { /* status is set only by a refusal */
        r.quota = q->allowed         ? CUSTOS_AUDIT_QUOTA_ADMITTED
                  : q->status == 503 ? CUSTOS_AUDIT_QUOTA_UNAVAILABLE
                                     : CUSTOS_AUDIT_QUOTA_LIMITED;
        r.quota_tokens = !q->allowed && q->tokens_limited;
        r.quota_remaining_requests = q->remaining_requests;
        r.quota_remaining_tokens = q->remaining_tokens;
    }
    if (p && p->gov) { /* use case (docs/reviews.md) */
        custos_audit_copy_name(r.use_case, sizeof(r.use_case), custos_gov_use_case(p->gov));
        snprintf(r.tier, sizeof(r.tier), "%s", custos_gov_tier(p->gov));
    } else if (!p && w->cur_use_case && w->cur_tier) { /* answered synchronously (403 use case, 400 filter) */
        custos_audit_copy_name(r.use_case, sizeof(r.use_case), w->cur_use_case);
        snprintf(r.tier, sizeof(r.tier), "%s", w->cur_tier);
    }
    const custos_cf_summary_t *cs = p && p->cf ? custos_cf_summary(p->cf) : w->cur_cf;
    if (cs) {
        r.safety_screened = true;
        memcpy(r.prompt_severity, cs->prompt_severity, sizeof(r.prompt_severity));
        memcpy(r.completion_severity, cs->completion_severity, sizeof(r.completion_severity));
        r.prompt_filtered = cs->prompt_filtered;
        r.completion_filtered = cs->completion_filtered;
        r.jailbreak_detected = cs->jailbreak_detected;
        r.indirect_attack_detected = cs->indirect_attack_detected;
        r.filter_error = cs->error;
        r.pii_prompt = cs->pii_prompt;
        r.pii_completion = cs->pii_completion;
        memcpy(r.pii_prompt_types, cs->pii_prompt_types, sizeof(r.pii_prompt_types));
        memcpy(r.pii_completion_types, cs->pii_completion_types, sizeof(r.pii_completion_types));
        r.blocklist_hits = cs->blocklist_hits;
        r.ungrounded = cs->ungrounded;
        r.guard_asked = cs->guard_asked;
        r.guard_error = cs->guard_error;
        r.guard_disagreed = cs->guard_disagreed;
    }
    custos_audit_submit(a, &r);
}

/* ---------- metrics helpers ---------- */

static void record_request(custos_worker_t *w, const custos_http_req_t *req, custos_op_t op, const char *deployment,
                           int status, uint64_t upstream_ns)
{
    custos_gateway_metrics_t *m = &w->gw->m;
    char st[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10), 0};
    const char *lv[3] = {custos_route_op_name(op), deployment ? deployment : "", st};
    custos_metric_series_t *s = custos_metrics_series(m->requests, lv);
    if (s)
        custos_metrics_inc(s, w->idx, 1);
    uint64_t total = custos_now_ns() - req->start_ns;
    const char *lr[1] = {custos_route_op_name(op)};
    s = custos_metrics_series(m->duration, lr);
    if (s)
        custos_metrics_observe(s, w->idx, (double)total / 1e9);
    uint64_t ov = total > upstream_ns ? total - upstream_ns : 0;
    s = custos_metrics_series(m->overhead, lr);
    if (s)
        custos_metrics_observe(s, w->idx, (double)ov / 1e9);
    /* content filtering outcome per direction: passed | filtered | error (a check that could not run) */
    const proxy_t *p = t_call ? t_call : req->on_abort == proxy_on_abort ? req->handler_data : NULL;
    const custos_cf_summary_t *cs = p && p->cf ? custos_cf_summary(p->cf) : w->cur_cf;
    if (cs && deployment) {
        const char *lp[3] = {deployment, "prompt", cs->prompt_filtered ? "filtered" : "passed"};
        if ((s = custos_metrics_series(m->content_filter, lp)) != NULL)
            custos_metrics_inc(s, w->idx, 1);
        if (cs->completion_screened) {
            const char *lc[3] = {deployment, "completion", cs->completion_filtered ? "filtered" : "passed"};
            if ((s = custos_metrics_series(m->content_filter, lc)) != NULL)
                custos_metrics_inc(s, w->idx, 1);
        }
        if (cs->error) {
            const char *le[3] = {deployment, "any", "error"};
            if ((s = custos_metrics_series(m->content_filter, le)) != NULL)
                custos_metrics_inc(s, w->idx, 1);
        }
    }
    audit_request(w, req, audit_op_of(op), deployment, status, total, upstream_ns);
}

void custos_gateway_audit(custos_worker_t *w, const custos_http_req_t *req, int op, int status)
{
    audit_request(w, req, (custos_audit_op_t)op, NULL, status, custos_now_ns() - req->start_ns, 0);
}

static void record_upstream_error(custos_worker_t *w, const char *backend, const char *kind)
{
    const char *lv[2] = {backend, kind};
    custos_metric_series_t *s = custos_metrics_series(w->gw->m.upstream_errors, lv);
    if (s)
        custos_metrics_inc(s, w->idx, 1);
}

/* ---------- simple answers ---------- */

static void respond_json(custos_http_req_t *req, int status, const char *body, size_t len)
{
    custos_http_header_t h[1] = {{"content-type", 12, "application/json", 16}};
    custos_http_respond(req, status, h, 1, body, len);
}

static void answer_error(custos_worker_t *w, custos_http_req_t *req, custos_op_t op, const char *dep, int status,
                         const char *code, const char *msg)
{
    custos_http_respond_error(req, status, code, msg, NULL, 0);
    record_request(w, req, op, dep, status, 0);
}

static void handle_models(custos_worker_t *w, custos_http_req_t *req, const custos_route_t *r,
                          const custos_caller_t *caller)
{
    const custos_config_t *cfg = w->cfg;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = 0;
    if (r->op == CUSTOS_OP_MODELS_GET) {
        const custos_deployment_config_t *d = custos_config_find_deployment(cfg, r->model_id);
        if (!d || !custos_authn_can_call(w, caller, d->name)) { /* only deployments the caller may call exist */
            custos_buf_dispose(&b);
            answer_error(w, req, r->op, "", 404, "model_not_found", "The model does not exist.");
            return;
        }
        rc = custos_buf_append_str(&b, "{\"id\":");
        rc = rc ? rc : custos_json_append_string(&b, d->name, strlen(d->name));
        rc = rc ? rc : custos_buf_append_str(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"custos\"");
        /* extension field: the deployment's transparency card (governance/card.h); the OpenAI shape stays intact */
        json_object *card = NULL;
        rc = rc ? rc : custos_card_build(cfg, d, &card);
        rc = rc ? rc : custos_buf_append_str(&b, ",\"custos_card\":");
        rc = rc ? rc : custos_json_write(&b, card);
        rc = rc ? rc : custos_buf_append_str(&b, "}");
        json_object_put(card);
    } else {
        rc = custos_buf_append_str(&b, "{\"object\":\"list\",\"data\":[");
        bool first = true;
        for (size_t i = 0; !rc && i < cfg->n_deployments; i++) {
            const custos_deployment_config_t *d = &cfg->deployments[i];
            if (!custos_authn_can_call(w, caller, d->name))
                continue;
            rc = custos_buf_append_str(&b, first ? "{\"id\":" : ",{\"id\":");
            first = false;
            rc = rc ? rc : custos_json_append_string(&b, d->name, strlen(d->name));
            rc = rc ? rc : custos_buf_append_str(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"custos\"}");
        }
        rc = rc ? rc : custos_buf_append_str(&b, "]}");
    }
    if (rc) {
        custos_buf_dispose(&b);
        answer_error(w, req, r->op, "", 500, "internal_error", "Out of memory.");
        return;
    }
    custos_http_header_t h[2] = {{"content-type", 12, "application/json", 16}, {"cache-control", 13, "no-store", 8}};
    custos_http_respond(req, 200, h, 2, custos_buf_peek(&b), custos_buf_size(&b));
    record_request(w, req, r->op, "", 200, 0);
    custos_buf_dispose(&b);
}

/* /readyz: ready, with each backend's health state (route/health.h). */
static void respond_readyz(custos_worker_t *w, custos_http_req_t *req)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_buf_append_lit(&b, "{\"status\":\"ready\",\"backends\":");
    if (!rc)
        rc = w->gw->health ? custos_health_render_json(w->gw->health, w->cfg, custos_now_ms(), &b)
                           : custos_buf_append_lit(&b, "{}");
    if (!rc)
        rc = custos_buf_append_lit(&b, "}");
    if (rc)
        respond_json(req, 200, "{\"status\":\"ready\"}", 18);
    else
        respond_json(req, 200, custos_buf_peek(&b), custos_buf_size(&b));
    custos_buf_dispose(&b);
}

static void handle_metrics(custos_worker_t *w, custos_http_req_t *req)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    if (custos_metrics_render(w->gw->m.reg, &b) < 0 ||
        (w->gw->audit && custos_metrics_render(custos_audit_metrics(w->gw->audit), &b) < 0) ||
        (w->gw->quota && custos_metrics_render(custos_quota_metrics(w->gw->quota), &b) < 0)) {
        custos_buf_dispose(&b);
        answer_error(w, req, CUSTOS_OP_METRICS, "", 500, "internal_error", "Could not render metrics.");
        return;
    }
    if (w->gw->health) /* backend health (route/health.h), read at scrape time */
        custos_health_render_metrics(w->gw->health, w->cfg, custos_now_ms(), &b);
    custos_reviews_render_metrics(w, &b); /* review queue gauge, from the store (docs/reviews.md) */
    /* process-level gauges, read at scrape time */
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    custos_buf_appendf(&b,
                       "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                       "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n"
                       "# HELP custos_uptime_seconds Seconds since custos started.\n"
                       "# TYPE custos_uptime_seconds gauge\ncustos_uptime_seconds %.3f\n",
                       rss * 4096L, (double)(custos_wall_ms() - w->gw->started_ms) / 1000.0);
    custos_http_header_t h[1] = {{"content-type", 12, "text/plain; version=0.0.4; charset=utf-8", 40}};
    custos_http_respond(req, 200, h, 1, custos_buf_peek(&b), custos_buf_size(&b));
    custos_buf_dispose(&b);
}

/* ---------- proxy lifecycle ---------- */

static void proxy_start_attempt(proxy_t *p);

/* ---------- backend selection and health feedback (route/balance.h) ---------- */

/* This worker's routing table for its current config (rebuilt after a reload), with a reference for the caller. */
static custos_route_table_t *route_table(custos_worker_t *w)
{
    if (!w->gw->health)
        return NULL;
    if (!w->rt || custos_route_table_config(w->rt) != w->cfg) {
        custos_route_table_t *t = NULL;
        if (custos_route_table_new(w->cfg, w->gw->health, &t) < 0)
            return NULL;
        custos_route_table_unref(w->rt);
        w->rt = t;
    }
    return custos_route_table_ref(w->rt);
}

/* What an attempt's end says about its backend (passive outlier detection). */
static custos_outcome_t attempt_outcome(int rc, int status)
{
    if (rc == CUSTOS_EUNAVAIL || rc == CUSTOS_ENOMEM || rc == CUSTOS_ETOOBIG)
        return CUSTOS_OUTCOME_NEUTRAL; /* our own limits */
    if (rc != 0)
        return CUSTOS_OUTCOME_FAILURE;
    if (status == 429)
        return CUSTOS_OUTCOME_NEUTRAL;
    return status >= 500 ? CUSTOS_OUTCOME_FAILURE : CUSTOS_OUTCOME_SUCCESS;
}

static void route_end(proxy_t *p, custos_outcome_t o)
{
    if (p->rt)
        custos_route_attempt_end(p->rt, &p->att, o, custos_now_ms());
}

static void proxy_release(proxy_t *p)
{
    if (p->finished)
        return;
    p->finished = true;
    route_end(p, CUSTOS_OUTCOME_NEUTRAL); /* an attempt still running was cancelled */
    custos_loop_t *loop = p->w->loop;
    custos_timer_stop(loop, &p->retry_timer);
    if (p->up) {
        custos_upstream_req_cancel(p->up);
        p->up = NULL;
    }
    if (p->sse_init)
        custos_sse_dispose(&p->sse);
    custos_buf_dispose(&p->resp);
    if (p->body)
        json_object_put(p->body);
    p->body = NULL;
    if (p->prompt_tokens > 0 || p->completion_tokens > 0) {
        const char *lp[2] = {p->dep->name, "prompt"};
        const char *lc[2] = {p->dep->name, "completion"};
        custos_metric_series_t *s = custos_metrics_series(p->w->gw->m.tokens, lp);
        if (s && p->prompt_tokens > 0)
            custos_metrics_inc(s, p->w->idx, (uint64_t)p->prompt_tokens);
        s = custos_metrics_series(p->w->gw->m.tokens, lc);
        if (s && p->completion_tokens > 0)
            custos_metrics_inc(s, p->w->idx, (uint64_t)p->completion_tokens);
    }
    custos_quota_gate_settle(p->w, &p->quota, p->prompt_tokens, p->completion_tokens);
    custos_route_table_unref(p->rt);
    p->rt = NULL;
    custos_cf_release(p->cf);
    custos_config_unref(p->cfg);
    p->cfg = NULL;
}

static void proxy_on_abort(custos_http_req_t *req)
{
    proxy_t *p = req->handler_data;
    record_request(p->w, req, p->route.op, p->dep->name, 499, p->upstream_ns);
    proxy_release(p);
}

static void proxy_on_writable(custos_http_req_t *req)
{
    proxy_t *p = req->handler_data;
    if (p->paused && p->up && !p->cf_wait) {
        p->paused = false;
        custos_upstream_req_resume(p->up);
    }
}

/* A streamed window's guard verdicts arrived (custos_cf_stream_on_resume, docs/guard-models.md). */
static void proxy_cf_stream_resumed(void *ud, const char *data, size_t len, int state)
{
    proxy_t *p = ud;
    if (len && custos_http_stream_write(p->req, data, len) == 0)
        p->streamed_bytes += len;
    p->cf_wait = state == 2;
    /* state 1 / an error: reading on makes the upstream callbacks end the request as for a stream custos ended */
    if (!p->cf_wait && p->paused && p->up && !custos_http_stream_congested(p->req)) {
        p->paused = false;
        custos_upstream_req_resume(p->up);
    }
}

static void note_ttfb(proxy_t *p)
{
    if (p->first_byte_recorded)
        return;
    p->first_byte_recorded = true;
    const char *lr[1] = {custos_route_op_name(p->route.op)};
    custos_metric_series_t *s = custos_metrics_series(p->w->gw->m.ttfb, lr);
    if (s)
        custos_metrics_observe(s, p->w->idx, (double)(custos_now_ns() - p->req->start_ns) / 1e9);
}

/* Integer value of key (quoted) inside the object [s, e], or -1. A quoted string followed by ':' is a key. */
static int64_t usage_field(const char *s, const char *e, const char *key)
{
    size_t kl = strlen(key);
    const char *k = memmem(s, (size_t)(e - s), key, kl);
    if (!k)
        return -1;
    const char *q = k + kl;
    while (q < e && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    if (q >= e || *q != ':')
        return -1;
    q++;
    while (q < e && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    int64_t v = 0;
    int digits = 0;
    while (q < e && *q >= '0' && *q <= '9' && digits < 18) {
        v = v * 10 + (*q - '0');
        q++;
        digits++;
    }
    return digits ? v : -1;
}

/* Reads usage.prompt_tokens / usage.completion_tokens from an OpenAI-shaped body without parsing all of
 * it (answers can be megabytes of embeddings): the last `"usage"` that is an object key (a string followed
 * by ':' can only be a key in valid JSON), then the two counts inside that object. */
static void scan_usage(proxy_t *p, const char *s, size_t n)
{
    const char *found = NULL, *cur = s, *end = s + n;
    while ((cur = memmem(cur, (size_t)(end - cur), "\"usage\"", 7)) != NULL) {
        found = cur;
        cur += 7;
    }
    if (!found)
        return;
    const char *q = found + 7;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    if (q >= end || *q != ':')
        return;
    q++;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    if (q >= end || *q != '{')
        return;
    /* find the matching brace, skipping strings */
    int depth = 0;
    bool in_str = false;
    const char *e = q;
    for (; e < end; e++) {
        char c = *e;
        if (in_str) {
            if (c == '\\')
                e++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{')
            depth++;
        else if (c == '}' && --depth == 0)
            break;
    }
    if (e >= end)
        return;
    p->prompt_tokens = usage_field(q, e, "\"prompt_tokens\"");
    p->completion_tokens = usage_field(q, e, "\"completion_tokens\"");
}

static void proxy_fail(proxy_t *p, int status, const char *code, const char *msg);
static void proxy_send_buffered(proxy_t *p);

static void proxy_cf_guarded(void *ud)
{
    proxy_send_buffered(ud);
}

/* Sends the buffered upstream answer (status, content type, passed headers, body) to the client. */
static void call_finish(proxy_t *p, int status, const char *body, size_t len, const char *error);

static void proxy_send_buffered(proxy_t *p)
{
    if (p->call_cb) { /* internal call: the backend's answer goes to the caller */
        call_finish(p, p->status, custos_buf_peek(&p->resp), custos_buf_size(&p->resp), NULL);
        return;
    }
    custos_http_header_t h[MAX_PASS_HEADERS + 5];
    size_t n = 0;
    const char *ct = p->content_type[0] ? p->content_type : "application/json";
    h[n++] = (custos_http_header_t){"content-type", 12, ct, strlen(ct)};
    for (size_t i = 0; i < p->npass && n < MAX_PASS_HEADERS + 1; i++)
        h[n++] = p->pass[i];
    n = custos_quota_gate_headers(p->req, &p->quota, h, n, MAX_PASS_HEADERS + 3);
    if (p->status >= 200 && p->status < 300) {
        if (p->cf && !p->cf_guarded) { /* guard models the policy's cascade needs (docs/guard-models.md) */
            p->cf_guarded = true;
            if (custos_cf_response_guard(p->cf, &p->resp, proxy_cf_guarded, p) == 1)
                return; /* asynchronous: proxy_cf_guarded comes back here */
        }
        /* the completion screened and annotated (api/contentfilter.h) before anything reaches the client */
        if (p->cf && custos_cf_response(p->cf, &p->resp) < 0) {
            proxy_fail(p, 500, "content_filter_error", "The content filter could not process the response.");
            return;
        }
        scan_usage(p, custos_buf_peek(&p->resp), custos_buf_size(&p->resp));
        /* use-case review (api/reviews.h): queue the item; withhold (high) or mark (elevated) the answer */
        if (p->gov && p->status == 200) {
            const char *nct = NULL;
            if (custos_gov_finish(p->gov, p->w, p->req, p->body, p->cf ? custos_cf_summary(p->cf) : NULL, &p->resp, h,
                                  &n, MAX_PASS_HEADERS + 5, &nct) < 0) {
                proxy_fail(p, 503, "review_unavailable",
                           "The answer needs human review but the review queue is unavailable; nothing was released.");
                return;
            }
            if (nct)
                h[0] = (custos_http_header_t){"content-type", 12, nct, strlen(nct)};
        }
    }
    note_ttfb(p);
    custos_http_req_t *req = p->req;
    int status = p->status;
    uint64_t upns = p->upstream_ns;
    /* respond first (copies the body), then release */
    custos_http_respond(req, status, h, n, custos_buf_peek(&p->resp), custos_buf_size(&p->resp));
    record_request(p->w, req, p->route.op, p->dep->name, status, upns);
    proxy_release(p);
}

static void proxy_fail(proxy_t *p, int status, const char *code, const char *msg)
{
    if (p->call_cb) {
        call_finish(p, status, NULL, 0, msg);
        return;
    }
    custos_http_req_t *req = p->req;
    uint64_t upns = p->upstream_ns;
    custos_worker_t *w = p->w;
    custos_op_t op = p->route.op;
    const char *dep = p->dep->name;
    custos_http_header_t qh[2];
    size_t nq = custos_quota_gate_headers(req, &p->quota, qh, 0, 2);
    custos_http_respond_error(req, status, code, msg, qh, nq);
    record_request(w, req, op, dep, status, upns);
    proxy_release(p);
}

/* SSE event from a streamed upstream answer: forwarded verbatim, event by event. */
static int proxy_on_sse(void *ud, const custos_sse_event_t *ev)
{
    proxy_t *p = ud;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        p->saw_done = true;
    } else if (ev->data_len > 0) {
        scan_usage(p, ev->data, ev->data_len);
    }
    if (p->cf) {
        /* windows released only once screened (or annotated after the fact in asynchronous_filter mode) */
        custos_buf_t out;
        custos_buf_init(&out, 0);
        int rc = custos_cf_stream_event(p->cf, ev->data, ev->data_len, &out);
        if (rc >= 0 && custos_buf_size(&out) &&
            custos_http_stream_write(p->req, custos_buf_peek(&out), custos_buf_size(&out)) < 0)
            rc = CUSTOS_ECLOSED;
        p->streamed_bytes += custos_buf_size(&out);
        custos_buf_dispose(&out);
        if (rc == 2) { /* a window waits for a guard verdict: proxy_on_body pauses the upstream */
            p->cf_wait = true;
            return 0;
        }
        if (rc == 1)
            return CUSTOS_ECLOSED; /* the stream ended for the client: stop reading the upstream */
        return rc < 0 ? rc : 0;
    }
    if (custos_http_stream_write(p->req, ev->raw, ev->raw_len) < 0)
        return CUSTOS_ECLOSED;
    p->streamed_bytes += ev->raw_len;
    return 0;
}

static int proxy_on_head(void *ud, int status, const custos_http_header_t *h, size_t n)
{
    proxy_t *p = ud;
    p->status = status;
    if (p->rt && attempt_outcome(0, status) == CUSTOS_OUTCOME_SUCCESS) /* a half-open trial succeeded: re-admit now */
        custos_route_attempt_answered(p->rt, &p->att, custos_now_ms());
    p->content_type[0] = 0;
    p->npass = 0;
    p->retry_after_ms = -1;
    custos_buf_reset(&p->resp);
    bool event_stream = false;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == 12 && strncasecmp(h[i].name, "content-type", 12) == 0) {
            size_t l = h[i].value_len < sizeof(p->content_type) - 1 ? h[i].value_len : sizeof(p->content_type) - 1;
            memcpy(p->content_type, h[i].value, l);
            p->content_type[l] = 0;
            event_stream = strncasecmp(p->content_type, "text/event-stream", 17) == 0;
            continue;
        }
        for (size_t k = 0; k < sizeof(PASS_HEADERS) / sizeof(PASS_HEADERS[0]); k++) {
            size_t kl = strlen(PASS_HEADERS[k]);
            if (h[i].name_len == kl && strncasecmp(h[i].name, PASS_HEADERS[k], kl) == 0 &&
                p->npass < MAX_PASS_HEADERS && h[i].value_len < 256) {
                char *v = custos_arena_strndup(p->req->arena, h[i].value, h[i].value_len);
                if (!v)
                    break;
                p->pass[p->npass++] = (custos_http_header_t){PASS_HEADERS[k], kl, v, h[i].value_len};
                if (k == 0)
                    p->retry_after_ms = strtol(v, NULL, 10) * 1000;
                else if (k == 1)
                    p->retry_after_ms = strtol(v, NULL, 10);
            }
        }
    }
    if (p->stream && status == 200 && event_stream) {
        /* Commit: from here on the client sees this attempt's answer; no more retries. */
        custos_http_header_t out[MAX_PASS_HEADERS + 5];
        size_t k = 0;
        out[k++] = (custos_http_header_t){"content-type", 12, "text/event-stream; charset=utf-8", 32};
        out[k++] = (custos_http_header_t){"cache-control", 13, "no-cache", 8};
        out[k++] = (custos_http_header_t){"x-accel-buffering", 17, "no", 2};
        for (size_t i = 0; i < p->npass; i++)
            out[k++] = p->pass[i];
        k = custos_quota_gate_headers(p->req, &p->quota, out, k, MAX_PASS_HEADERS + 5);
        if (custos_sse_init(&p->sse, p->cfg->limits.max_sse_event_bytes, proxy_on_sse, p) < 0)
            return CUSTOS_ENOMEM;
        p->sse_init = true;
        if (custos_http_stream_start(p->req, 200, out, k) < 0)
            return CUSTOS_ECLOSED;
        p->streaming = true;
        if (p->cf) { /* the first frame carries the prompt annotations */
            custos_buf_t f;
            custos_buf_init(&f, 0);
            int rc = custos_cf_stream_first(p->cf, &f);
            custos_cf_stream_on_resume(p->cf, proxy_cf_stream_resumed, p);
            if (rc == 0)
                rc = custos_http_stream_write(p->req, custos_buf_peek(&f), custos_buf_size(&f));
            p->streamed_bytes += custos_buf_size(&f);
            custos_buf_dispose(&f);
            if (rc < 0)
                return CUSTOS_ECLOSED;
        }
        note_ttfb(p);
    }
    return 0;
}

static int proxy_on_body(void *ud, const char *data, size_t len)
{
    proxy_t *p = ud;
    if (p->streaming) {
        int rc = custos_sse_feed(&p->sse, data, len);
        if (rc)
            return rc < 0 ? rc : CUSTOS_ECLOSED;
        if (p->cf_wait || custos_http_stream_congested(p->req)) { /* a client too slow, or a guard verdict awaited */
            p->paused = true;
            return 1;
        }
        return 0;
    }
    int rc = custos_buf_append(&p->resp, data, len);
    return rc < 0 ? rc : 0;
}

static bool retryable_status(int s)
{
    return s == 429 || s == 502 || s == 503 || s == 504;
}

static const char *error_kind(int rc)
{
    switch (rc) {
    case CUSTOS_ETIMEDOUT:
        return "timeout";
    case CUSTOS_EIO:
        return "connect";
    case CUSTOS_ETLS:
        return "tls";
    case CUSTOS_EPROTO:
        return "protocol";
    case CUSTOS_ECLOSED:
        return "closed";
    case CUSTOS_ETOOBIG:
        return "too_big";
    case CUSTOS_EUNAVAIL:
        return "pool_full";
    case CUSTOS_ENOTFOUND:
        return "dns";
    default:
        return "other";
    }
}

static const char *error_text(int rc)
{
    switch (rc) {
    case CUSTOS_ETIMEDOUT:
        return "the backend timed out";
    case CUSTOS_EIO:
        return "the backend refused or reset the connection";
    case CUSTOS_ETLS:
        return "the TLS handshake with the backend failed";
    case CUSTOS_EPROTO:
        return "the backend sent a malformed response";
    case CUSTOS_ECLOSED:
        return "the backend closed the connection";
    case CUSTOS_ETOOBIG:
        return "the backend response was too large";
    case CUSTOS_EUNAVAIL:
        return "the backend connection limit was reached";
    case CUSTOS_ENOTFOUND:
        return "the backend host name does not resolve";
    default:
        return "the backend request failed";
    }
}

static void proxy_retry_timer(custos_loop_t *loop, void *ud)
{
    proxy_t *p = ud;
    p->upstream_ns += custos_now_ns() - p->up_started_ns; /* backoff counts as upstream time */
    proxy_start_attempt(p);
}

static uint64_t jitter_backoff(const custos_upstream_config_t *u, unsigned round)
{
    uint64_t d = u->backoff_base_ms;
    for (unsigned i = 1; i < round && d < u->backoff_max_ms; i++)
        d *= 2;
    if (d > u->backoff_max_ms)
        d = u->backoff_max_ms;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
        r = (uint32_t)custos_now_ns();
    /* "equal jitter": half fixed, half random */
    return d / 2 + (d / 2 ? r % (d / 2 + 1) : 0);
}

/* The attempt failed before anything reached the client. Retry, fail over, or give up. */
static void proxy_attempt_failed(proxy_t *p, bool have_response)
{
    const custos_upstream_config_t *uc = &p->cfg->upstream;
    if (p->attempt >= uc->max_attempts) {
        if (have_response)
            proxy_send_buffered(p);
        else {
            char msg[300];
            snprintf(msg, sizeof(msg),
                     "No backend of deployment '%s' inside its residency boundary could serve the request "
                     "(%u attempts; last error: %s).",
                     p->dep->name, p->attempt, p->last_error ? p->last_error : "unknown");
            proxy_fail(p, 503, "ServiceUnavailable", msg);
        }
        return;
    }
    uint64_t delay = 0;
    if (!custos_route_any_selectable(p->rt, p->dep, p->tried, custos_now_ms())) {
        /* every selectable candidate was tried in this round: back off before the next one */
        p->tried = 0;
        p->round++;
        delay = jitter_backoff(uc, p->round);
        if (have_response && p->retry_after_ms > 0) {
            if ((uint64_t)p->retry_after_ms > uc->max_retry_after_ms) {
                /* the backend asks for a longer wait than we may spend: surface its answer */
                proxy_send_buffered(p);
                return;
            }
            if ((uint64_t)p->retry_after_ms > delay)
                delay = (uint64_t)p->retry_after_ms;
        }
    }
    const char *lv[1] = {p->dep->name};
    custos_metric_series_t *s = custos_metrics_series(p->w->gw->m.upstream_retries, lv);
    if (s)
        custos_metrics_inc(s, p->w->idx, 1);
    if (delay == 0) {
        proxy_start_attempt(p);
        return;
    }
    p->up_started_ns = custos_now_ns();
    custos_timer_start(p->w->loop, &p->retry_timer, delay);
}

static void proxy_on_done(void *ud, int rc)
{
    proxy_t *p = ud;
    custos_upstream_req_info_t info;
    custos_upstream_req_info(p->up, &info);
    p->up = NULL; /* freed by the client after we return */
    p->upstream_ns += custos_now_ns() - p->up_started_ns;
    p->paused = false;
    const custos_backend_config_t *b = p->cands[p->cand_idx];
    /* A stream custos itself ended (content filter) was a healthy backend's answer, not a failure. */
    route_end(p, p->streaming && p->cf && custos_cf_stream_done(p->cf) ? CUSTOS_OUTCOME_SUCCESS
                                                                       : attempt_outcome(rc, p->status));

    if (p->streaming) {
        int frc = custos_sse_finish(&p->sse);
        bool cf_done = p->cf && custos_cf_stream_done(p->cf);
        if (p->cf && !cf_done) {
            /* what is still held is screened and released; [DONE] only after a complete upstream answer */
            custos_buf_t out;
            custos_buf_init(&out, 0);
            bool complete = rc == 0 && frc == 0 && p->saw_done;
            if (custos_cf_stream_end(p->cf, complete, &out) == 0 && custos_buf_size(&out))
                custos_http_stream_write(p->req, custos_buf_peek(&out), custos_buf_size(&out));
            p->streamed_bytes += custos_buf_size(&out);
            custos_buf_dispose(&out);
            cf_done = custos_cf_stream_done(p->cf);
        }
        if (!cf_done && (rc != 0 || frc != 0 || !p->saw_done)) {
            /* The backend went away mid-stream. Tell the client in-band and end the stream cleanly, so
             * it neither hangs nor mistakes a cut answer for a complete one. */
            record_upstream_error(p->w, b->name, rc ? error_kind(rc) : "incomplete_stream");
            custos_buf_t ev;
            custos_buf_init(&ev, 0);
            const char *msg = "{\"error\":{\"message\":\"The backend ended the stream before the response was "
                              "complete.\",\"type\":\"server_error\",\"code\":\"upstream_incomplete\",\"param\":null}}";
            if (custos_sse_write_event(&ev, msg, strlen(msg)) == 0)
                custos_http_stream_write(p->req, custos_buf_peek(&ev), custos_buf_size(&ev));
            custos_buf_dispose(&ev);
        }
        custos_http_req_t *req = p->req;
        custos_http_stream_end(req);
        record_request(p->w, req, p->route.op, p->dep->name, 200, p->upstream_ns);
        proxy_release(p);
        return;
    }
    if (rc != 0) {
        record_upstream_error(p->w, b->name, error_kind(rc));
        p->last_error = error_text(rc);
        if (rc == CUSTOS_ETOOBIG && info.got_response_bytes) {
            proxy_fail(p, 502, "BadGateway", "The backend's response exceeds limits.max_response_bytes.");
            return;
        }
        if (info.got_response_bytes && p->status != 0 && !retryable_status(p->status)) {
            /* a non-retryable answer was cut: nothing usable to pass on */
            proxy_fail(p, 502, "BadGateway", "The backend's response was incomplete.");
            return;
        }
        if (info.got_response_bytes && rc != CUSTOS_ECLOSED && rc != CUSTOS_ETIMEDOUT) {
            proxy_fail(p, 502, "BadGateway", "The backend sent an invalid response.");
            return;
        }
        p->status = 0;
        proxy_attempt_failed(p, false);
        return;
    }
    if (retryable_status(p->status)) {
        char kind[16];
        snprintf(kind, sizeof(kind), "http_%d", p->status);
        record_upstream_error(p->w, b->name, kind);
        p->last_error = p->status == 429 ? "the backend is rate limiting (429)" : "the backend is unavailable (5xx)";
        proxy_attempt_failed(p, true);
        return;
    }
    proxy_send_buffered(p);
}

static int build_upstream_path(proxy_t *p, const custos_backend_config_t *b, custos_buf_t *path)
{
    const char *suffix = custos_route_op_suffix(p->route.op);
    int rc;
    if (b->provider == CUSTOS_PROVIDER_AZURE) {
        const char *dname = b->deployment ? b->deployment : p->dep->model;
        rc = custos_buf_append_str(path, b->path_prefix);
        rc = rc ? rc : custos_buf_append_str(path, "/openai/deployments/");
        rc = rc ? rc : custos_buf_append_str(path, dname);
        rc = rc ? rc : custos_buf_append_lit(path, "/");
        rc = rc ? rc : custos_buf_append_str(path, suffix);
        rc = rc ? rc : custos_buf_append_str(path, "?api-version=");
        rc =
            rc ? rc
               : custos_buf_append_str(path, b->api_version ? b->api_version : CUSTOS_CONFIG_DEFAULT_AZURE_API_VERSION);
        return rc;
    }
    rc = custos_buf_append_str(path, b->path_prefix[0] ? b->path_prefix : "/v1");
    rc = rc ? rc : custos_buf_append_lit(path, "/");
    return rc ? rc : custos_buf_append_str(path, suffix);
}

/* Picks the backend of the next attempt: inside the boundary, meeting the requirements, healthy, by priority
 * group and balancing policy (route/balance.h). False: none is selectable, and the request was answered 503
 * naming the boundary -- it is never sent outside it. */
static bool route_next(proxy_t *p)
{
    uint64_t now = custos_now_ms();
    int i = custos_route_pick(p->rt, p->dep, p->tried, p->has_key, p->key_hash, now, &p->att);
    if (i < 0 && p->tried) { /* the untried ones went down meanwhile: a new round */
        p->tried = 0;
        i = custos_route_pick(p->rt, p->dep, p->tried, p->has_key, p->key_hash, now, &p->att);
    }
    if (i >= 0) {
        p->cand_idx = (size_t)i;
        p->tried |= 1ULL << i;
        return true;
    }
    char where[256], msg[600];
    custos_route_describe_boundary(p->dep, where, sizeof(where));
    if (p->attempt == 0)
        snprintf(msg, sizeof(msg),
                 "No healthy backend of deployment '%s' is available inside its residency boundary (%s); the "
                 "request was not sent outside the boundary.",
                 p->dep->name, where);
    else
        snprintf(msg, sizeof(msg),
                 "No healthy backend of deployment '%s' is left inside its residency boundary (%s) after %u "
                 "attempts (last error: %s); the request was not sent outside the boundary.",
                 p->dep->name, where, p->attempt, p->last_error ? p->last_error : "unknown");
    proxy_fail(p, 503, "ServiceUnavailable", msg);
    return false;
}

static void proxy_start_attempt(proxy_t *p)
{
    if (!route_next(p))
        return;
    const custos_backend_config_t *b = p->cands[p->cand_idx];
    custos_arena_t *a = p->req->arena;
    p->attempt++;
    p->status = 0;
    custos_buf_reset(&p->resp);

    /* The body we send is the parsed tree re-serialised: what policy saw is exactly what goes upstream. */
    const char *model = b->model ? b->model : p->dep->model;
    json_object_object_add(p->body, "model", json_object_new_string(model));
    custos_buf_t body, path;
    custos_buf_init(&body, 0);
    custos_buf_init(&path, 8192);
    if (custos_buf_reserve(&body, p->req->body_len + 64) < 0 || custos_json_write(&body, p->body) < 0 ||
        build_upstream_path(p, b, &path) < 0) {
        custos_buf_dispose(&body);
        custos_buf_dispose(&path);
        proxy_fail(p, 500, "internal_error", "Could not build the upstream request.");
        return;
    }
    custos_http_header_t h[6];
    size_t n = 0;
    h[n++] = (custos_http_header_t){"content-type", 12, "application/json", 16};
    if (p->stream)
        h[n++] = (custos_http_header_t){"accept", 6, "text/event-stream", 17};
    else
        h[n++] = (custos_http_header_t){"accept", 6, "application/json", 16};
    h[n++] = (custos_http_header_t){"user-agent", 10, "custos/0.1", 10};
    h[n++] = (custos_http_header_t){"x-client-request-id", 19, p->req->request_id, 36};
    const char *hname = NULL, *cred = NULL; /* the backend's credential header (auth/upstream_cred.h), in the arena */
    size_t hname_len = 0, cred_len = 0;
    if (custos_auth_backend_header(b, a, &hname, &hname_len, &cred, &cred_len) < 0) {
        custos_buf_dispose(&body);
        custos_buf_dispose(&path);
        record_upstream_error(p->w, b->name, "credential");
        p->last_error = "no upstream credential is available for the backend";
        route_end(p, CUSTOS_OUTCOME_NEUTRAL);
        proxy_attempt_failed(p, false);
        return;
    }
    if (cred)
        h[n++] = (custos_http_header_t){hname, hname_len, cred, cred_len};
    custos_upstream_target_t t = {
        .name = b->name,
        .host = b->host,
        .port = b->port,
        .tls = b->https,
        .sni_host = NULL,
        .ca_file = b->ca_file,
        .verify = b->tls_verify,
        .max_connections = b->max_connections,
    };
    custos_upstream_timeouts_t to = {
        .connect_ms = p->cfg->upstream.connect_timeout_ms,
        .first_byte_ms = p->cfg->upstream.first_byte_timeout_ms,
        .idle_ms = p->cfg->upstream.idle_timeout_ms,
    };
    static const custos_upstream_cbs_t cbs = {proxy_on_head, proxy_on_body, proxy_on_done};
    p->up_started_ns = custos_now_ns();
    int rc = custos_upstream_request(p->w->up, &t, "POST", custos_buf_peek(&path), h, n, custos_buf_peek(&body),
                                     custos_buf_size(&body), &to, &cbs, p, &p->up);
    custos_buf_dispose(&body);
    custos_buf_dispose(&path);
    if (cred)
        memset((char *)cred, 0, cred_len);
    if (rc < 0) {
        p->up = NULL;
        record_upstream_error(p->w, b->name, error_kind(rc));
        p->last_error = error_text(rc);
        route_end(p, attempt_outcome(rc, 0));
        proxy_attempt_failed(p, false);
    }
}

/* ---------- internal calls (custos_gateway_call) ---------- */

static void call_finish(proxy_t *p, int status, const char *body, size_t len, const char *error)
{
    custos_gateway_call_cb cb = p->call_cb;
    void *ud = p->call_ud;
    p->call_cb = NULL;
    custos_timer_stop(p->w->loop, &p->call_timer);
    if (body && status >= 200 && status < 300)
        scan_usage(p, body, len);
    t_call = p; /* the record describes this call: its deployment, backend, tokens */
    record_request(p->w, p->req, p->route.op, p->dep->name, status, p->upstream_ns);
    t_call = NULL;
    if (cb)
        cb(ud, status, body, len, error); /* body lives in p->resp until proxy_release */
    proxy_release(p);
}

static void call_timeout(custos_loop_t *loop, void *ud)
{
    (void)loop;
    proxy_t *p = ud;
    if (p->call_cb)
        call_finish(p, 504, NULL, 0, "The deployment did not answer in time.");
}

int custos_gateway_call(custos_worker_t *w, custos_http_req_t *req, const custos_deployment_config_t *dep,
                        json_object *body, const char *principal, uint32_t timeout_ms, custos_gateway_call_cb cb,
                        void *ud, custos_gateway_call_t **out)
{
    *out = NULL;
    proxy_t *p = custos_arena_alloc(req->arena, sizeof(*p));
    if (!p) {
        json_object_put(body);
        return CUSTOS_ENOMEM;
    }
    memset(p, 0, sizeof(*p));
    p->w = w;
    p->req = req;
    p->cfg = custos_config_ref(w->cfg);
    p->route.op = CUSTOS_OP_CHAT;
    p->route.family = CUSTOS_FAMILY_OPENAI;
    p->dep = dep;
    p->body = body;
    p->principal = principal ? custos_arena_strdup(req->arena, principal) : NULL;
    p->auth_type = "internal";
    p->retry_after_ms = -1;
    p->call_cb = cb;
    p->call_ud = ud;
    custos_buf_init(&p->resp, p->cfg->limits.max_response_bytes);
    custos_timer_init(&p->retry_timer, proxy_retry_timer, p);
    custos_timer_init(&p->call_timer, call_timeout, p);
    custos_buf_t sz;
    custos_buf_init(&sz, 0);
    if (custos_json_write(&sz, body) == 0)
        p->call_bytes = custos_buf_size(&sz);
    custos_buf_dispose(&sz);
    p->rt = route_table(w);
    p->ncands = p->rt ? custos_route_table_eligible(p->rt, dep, p->cands, MAX_CANDIDATES) : 0;
    *out = p;
    if (p->ncands == 0) {
        call_finish(p, 503, NULL, 0, "The deployment has no backend inside its residency boundary.");
        return 0;
    }
    if (!custos_quota_gate_admit(w, CUSTOS_OP_CHAT, dep, p->principal, body, &p->quota)) {
        call_finish(p, 429, NULL, 0, "The deployment's quota is exhausted (docs/quotas.md).");
        return 0;
    }
    if (timeout_ms)
        custos_timer_start(w->loop, &p->call_timer, timeout_ms);
    proxy_start_attempt(p);
    return 0;
}

void custos_gateway_call_cancel(custos_gateway_call_t *c)
{
    proxy_t *p = c;
    if (!p || p->finished || !p->call_cb)
        return;
    p->call_cb = NULL;
    custos_timer_stop(p->w->loop, &p->call_timer);
    t_call = p;
    record_request(p->w, p->req, p->route.op, p->dep->name, 499, p->upstream_ns);
    t_call = NULL;
    proxy_release(p);
}

/* ---------- the handler ---------- */

static bool content_type_is_json(const custos_http_req_t *req)
{
    size_t l = 0;
    const char *ct = custos_http_req_header(req, "content-type", &l);
    if (!ct)
        return false;
    return l >= 16 && strncasecmp(ct, "application/json", 16) == 0 && (l == 16 || ct[16] == ';' || ct[16] == ' ');
}

static void handle(custos_http_req_t *req, custos_worker_t *w);
static void proxy_begin(custos_worker_t *w, custos_http_req_t *req, custos_route_t r,
                        const custos_deployment_config_t *dep, json_object *body, bool stream, const char *principal,
                        const char *auth_type, custos_gov_t *gov, custos_cf_t *cf);
static void cf_wait_start(custos_worker_t *w, custos_http_req_t *req, const custos_route_t *r,
                          const custos_deployment_config_t *dep, json_object *body, bool stream,
                          const custos_caller_t *caller, custos_gov_t *gov, custos_cf_t *cf);

void custos_gateway_handle(custos_http_req_t *req, void *ud)
{
    custos_worker_t *w = ud;
    w->cur_principal = w->cur_auth_type = NULL;
    w->cur_cf = NULL;
    w->cur_use_case = w->cur_tier = NULL;
    handle(req, w);
    w->cur_principal = w->cur_auth_type = NULL;
    w->cur_cf = NULL;
    w->cur_use_case = w->cur_tier = NULL;
}

static const char *auth_type_name(custos_caller_kind_t k)
{
    switch (k) {
    case CUSTOS_CALLER_KEY:
        return "api_key";
    case CUSTOS_CALLER_TOKEN:
        return "oidc_token";
    case CUSTOS_CALLER_CERT:
        return "client_certificate";
    }
    return "";
}

void custos_gateway_note_caller(custos_worker_t *w, const custos_caller_t *c)
{
    w->cur_principal = c->principal;
    w->cur_auth_type = auth_type_name(c->kind);
}

static void handle(custos_http_req_t *req, custos_worker_t *w)
{
    if (custos_access_gate(w, req)) /* network ACL (403) before anything else; sets req->client_addr */
        return;
    if (custos_admin_path(req->path, req->path_len)) {
        custos_admin_handle(w, req); /* authenticates and authorizes (admin) itself */
        return;
    }
    if (custos_reviews_path(req->path, req->path_len)) {
        custos_reviews_handle(w, req); /* review queue API (docs/reviews.md): authenticates itself */
        return;
    }
    if (custos_contentsafety_path(req->path, req->path_len)) {
        custos_contentsafety_handle(w, req); /* Azure Content Safety data plane: authenticates itself */
        return;
    }
    if (custos_ui_path(req->path, req->path_len)) {
        custos_ui_handle(w, req); /* reviewer UI's static files (api/ui.h): no data, so no credential */
        return;
    }
    custos_route_t r;
    int rc = custos_route_match(req->method, req->path, req->path_len, &r);
    if (rc == CUSTOS_ENOTFOUND) {
        answer_error(w, req, CUSTOS_OP_NONE, "", 404, "404", "Resource not found");
        return;
    }
    if (rc == CUSTOS_EINVAL) {
        custos_http_header_t allow[1] = {{"allow", 5, r.is_post ? "POST" : "GET", r.is_post ? 4 : 3}};
        custos_http_respond_error(req, 405, "405", "Method not allowed for this route.", allow, 1);
        record_request(w, req, r.op, "", 405, 0);
        return;
    }
    switch (r.op) {
    case CUSTOS_OP_HEALTHZ:
        respond_json(req, 200, "{\"status\":\"ok\"}", 15);
        return;
    case CUSTOS_OP_READYZ:
        if (w->draining)
            respond_json(req, 503, "{\"status\":\"draining\"}", 21);
        else
            respond_readyz(w, req);
        return;
    case CUSTOS_OP_METRICS:
        handle_metrics(w, req);
        return;
    default:
        break;
    }

    /* Authenticate before revealing anything about deployments. */
    /* Identity: API key, OIDC token or mTLS certificate (api/authn.h). Ocp-Apim-Subscription-Key is a
     * credential only on Content Safety routes. */
    custos_caller_t caller;
    custos_authn_error_t ae;
    bool sub_key = req->path_len >= 15 && memcmp(req->path, "/contentsafety/", 15) == 0;
    if (custos_authn_authenticate(w, req, sub_key, &caller, &ae) < 0) {
        answer_error(w, req, r.op, "", ae.status, ae.code, ae.message);
        return;
    }
    w->cur_principal = caller.principal;
    w->cur_auth_type = auth_type_name(caller.kind);
    if (r.op == CUSTOS_OP_MODELS_LIST || r.op == CUSTOS_OP_MODELS_GET) {
        handle_models(w, req, &r, &caller);
        return;
    }
    if (r.family == CUSTOS_FAMILY_AZURE) {
        const char *v = custos_http_req_query(req, "api-version");
        if (!v || !*v) {
            answer_error(w, req, r.op, "", 400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all requests.");
            return;
        }
    }
    if (!content_type_is_json(req)) {
        answer_error(w, req, r.op, "", 415, "unsupported_media_type",
                     "The request body must be JSON: set 'Content-Type: application/json'.");
        return;
    }
    json_object *body = NULL;
    size_t errpos = 0;
    const char *errmsg = NULL;
    rc = custos_json_parse(req->body, req->body_len, (int)w->cfg->limits.max_json_depth, &body, &errpos, &errmsg);
    if (rc == CUSTOS_EDEPTH) {
        answer_error(w, req, r.op, "", 400, "invalid_json", "The JSON body is nested too deeply.");
        return;
    }
    if (rc < 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "We could not parse the JSON body of your request (error at byte %zu).", errpos);
        answer_error(w, req, r.op, "", 400, "invalid_json", msg);
        return;
    }
    if (!json_object_is_type(body, json_type_object)) {
        json_object_put(body);
        answer_error(w, req, r.op, "", 400, "invalid_request_error", "The JSON body must be an object.");
        return;
    }
    const char *dname = r.deployment;
    json_object *jm = NULL;
    if (r.family != CUSTOS_FAMILY_AZURE) {
        if (!json_object_object_get_ex(body, "model", &jm) || !json_object_is_type(jm, json_type_string)) {
            json_object_put(body);
            answer_error(w, req, r.op, "", 400, "invalid_request_error",
                         "You must provide a model parameter (the deployment name).");
            return;
        }
        dname = json_object_get_string(jm);
    }
    bool stream = false;
    json_object *js = NULL;
    if (json_object_object_get_ex(body, "stream", &js) && !json_object_is_type(js, json_type_null)) {
        if (!json_object_is_type(js, json_type_boolean)) {
            json_object_put(body);
            answer_error(w, req, r.op, "", 400, "invalid_request_error", "'stream' must be a boolean.");
            return;
        }
        stream = json_object_get_boolean(js);
    }
    /* RBAC and conditional access on the name asked for, before saying whether it exists */
    if (custos_authn_authorize(w, req, &caller, CUSTOS_RBAC_INFERENCE, dname, &ae) < 0) {
        json_object_put(body);
        answer_error(w, req, r.op, "", ae.status, ae.code, ae.message);
        return;
    }
    const custos_deployment_config_t *dep = custos_config_find_deployment(w->cfg, dname);
    if (!dep) {
        json_object_put(body);
        answer_error(w, req, r.op, "", 404, "DeploymentNotFound", MSG_404_DEPLOYMENT);
        return;
    }

    /* Prompt safety (api/contentfilter.h): harm, shields, PII under the deployment's rai_policy; a blocked prompt is
     * answered here (400 content_filter) and never reaches a backend. */
    /* Use case (api/reviews.h, docs/reviews.md): 403 when it may not run; a stream that must be held is fetched
     * whole. */
    custos_gov_t *gov = NULL;
    int gov_status = 0;
    if (custos_gov_admit(w, req, &caller, dep, r.op, body, &stream, &gov, &gov_status) < 0) {
        json_object_put(body);
        record_request(w, req, r.op, dep->name, gov_status, 0);
        return;
    }
    custos_cf_t *cf = NULL;
    int cf_status = 0;
    custos_cf_outcome_t cfo = custos_cf_prompt(w, req, dep, r.op, body, stream, &cf, &cf_status);
    if (cfo == CUSTOS_CF_PENDING) { /* guard models asked: resumed on this loop (docs/guard-models.md) */
        cf_wait_start(w, req, &r, dep, body, stream, &caller, gov, cf);
        return;
    }
    if (cfo == CUSTOS_CF_ANSWERED) {
        json_object_put(body);
        w->cur_cf = cf ? custos_cf_summary(cf) : NULL;
        record_request(w, req, r.op, dep->name, cf_status, 0);
        custos_cf_release(cf);
        return;
    }

    proxy_begin(w, req, r, dep, body, stream, caller.principal, auth_type_name(caller.kind), gov, cf);
}

/* From a screened prompt to the first upstream attempt (routing, quota). */
static void proxy_begin(custos_worker_t *w, custos_http_req_t *req, custos_route_t r,
                        const custos_deployment_config_t *dep, json_object *body, bool stream, const char *principal,
                        const char *auth_type, custos_gov_t *gov, custos_cf_t *cf)
{
    proxy_t *p = custos_arena_alloc(req->arena, sizeof(*p));
    if (!p) {
        custos_cf_release(cf);
        json_object_put(body);
        answer_error(w, req, r.op, "", 503, "server_busy", "Out of memory.");
        return;
    }
    memset(p, 0, sizeof(*p));
    p->w = w;
    p->req = req;
    p->cfg = custos_config_ref(w->cfg);
    p->route = r;
    p->dep = dep;
    p->body = body;
    p->stream = stream;
    p->cf = cf;
    p->gov = gov;
    p->principal = principal ? custos_arena_strdup(req->arena, principal) : NULL;
    p->auth_type = auth_type;
    p->retry_after_ms = -1;
    custos_buf_init(&p->resp, p->cfg->limits.max_response_bytes);
    custos_timer_init(&p->retry_timer, proxy_retry_timer, p);
    p->rt = route_table(w);
    p->ncands = p->rt ? custos_route_table_eligible(p->rt, dep, p->cands, MAX_CANDIDATES) : 0;
    if (p->ncands && dep->sticky_header) {
        size_t kl = 0;
        const char *kv = custos_http_req_header(req, dep->sticky_header, &kl);
        if (kv && kl) {
            p->has_key = true;
            p->key_hash = custos_route_key_hash(kv, kl);
        }
    }
    req->handler_data = p;
    req->on_abort = proxy_on_abort;
    req->on_writable = proxy_on_writable;
    if (p->ncands == 0) {
        proxy_fail(p, 503, "ServiceUnavailable", "The deployment has no backend inside its residency boundary.");
        return;
    }
    if (!custos_quota_gate_admit(w, r.op, dep, p->principal, body, &p->quota)) { /* 429 (docs/quotas.md) */
        int st = custos_quota_gate_reject(req, r.op, &p->quota);
        record_request(w, req, r.op, dep->name, st, 0);
        proxy_release(p);
        return;
    }
    proxy_start_attempt(p);
}

/* A prompt waiting for guard verdicts (api/contentfilter.h CUSTOS_CF_PENDING, docs/guard-models.md): the worker's loop
 * goes on; the request resumes in cf_wait_resumed. */
typedef struct cf_wait {
    custos_worker_t *w;
    custos_http_req_t *req;
    custos_config_t *cfg; /* keeps dep and the policy alive */
    custos_route_t r;
    const custos_deployment_config_t *dep;
    json_object *body;
    bool stream;
    const char *principal, *auth_type;
    custos_gov_t *gov;
    custos_cf_t *cf;
} cf_wait_t;

static void cf_wait_abort(custos_http_req_t *req)
{
    cf_wait_t *cw = req->handler_data;
    custos_worker_t *w = cw->w;
    w->cur_principal = cw->principal;
    w->cur_auth_type = cw->auth_type;
    w->cur_cf = custos_cf_summary(cw->cf);
    record_request(w, req, cw->r.op, cw->dep->name, 499, 0);
    w->cur_principal = w->cur_auth_type = NULL;
    w->cur_cf = NULL;
    custos_cf_release(cw->cf); /* cancels the guard calls */
    json_object_put(cw->body);
    custos_config_unref(cw->cfg);
}

static void cf_wait_resumed(void *ud, custos_cf_outcome_t o, int status)
{
    cf_wait_t *cw = ud;
    custos_worker_t *w = cw->w;
    custos_http_req_t *req = cw->req;
    req->on_abort = NULL;
    req->handler_data = NULL;
    w->cur_principal = cw->principal;
    w->cur_auth_type = cw->auth_type;
    if (o == CUSTOS_CF_ANSWERED) {
        json_object_put(cw->body);
        w->cur_cf = custos_cf_summary(cw->cf);
        record_request(w, req, cw->r.op, cw->dep->name, status, 0);
        custos_cf_release(cw->cf);
    } else if (w->cfg != cw->cfg) {
        custos_cf_release(cw->cf);
        json_object_put(cw->body);
        answer_error(w, req, cw->r.op, "", 503, "ServiceUnavailable",
                     "The configuration was reloaded while the request was being screened; retry the request.");
    } else {
        proxy_begin(w, req, cw->r, cw->dep, cw->body, cw->stream, cw->principal, cw->auth_type, cw->gov, cw->cf);
    }
    w->cur_principal = w->cur_auth_type = NULL;
    w->cur_cf = NULL;
    custos_config_unref(cw->cfg);
}

static void cf_wait_start(custos_worker_t *w, custos_http_req_t *req, const custos_route_t *r,
                          const custos_deployment_config_t *dep, json_object *body, bool stream,
                          const custos_caller_t *caller, custos_gov_t *gov, custos_cf_t *cf)
{
    cf_wait_t *cw = custos_arena_alloc(req->arena, sizeof(*cw));
    if (!cw) {
        custos_cf_release(cf);
        json_object_put(body);
        answer_error(w, req, r->op, "", 503, "server_busy", "Out of memory.");
        return;
    }
    *cw = (cf_wait_t){.w = w,
                      .req = req,
                      .cfg = custos_config_ref(w->cfg),
                      .r = *r,
                      .dep = dep,
                      .body = body,
                      .stream = stream,
                      .principal = caller->principal ? custos_arena_strdup(req->arena, caller->principal) : NULL,
                      .auth_type = auth_type_name(caller->kind),
                      .gov = gov,
                      .cf = cf};
    req->handler_data = cw;
    req->on_abort = cf_wait_abort;
    custos_cf_on_resume(cf, cf_wait_resumed, cw);
}

/* ---------- metrics registration ---------- */

int custos_gateway_metrics_init(custos_gateway_metrics_t *m, unsigned nshards)
{
    static const double lat[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
    static const double ovh[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                 0.001,   0.0025,   0.005,   0.01,   0.025,   0.1};
    static const char *const l_rds[] = {"route", "deployment", "status"};
    static const char *const l_r[] = {"route"};
    static const char *const l_bk[] = {"backend", "kind"};
    static const char *const l_d[] = {"deployment"};
    static const char *const l_dt[] = {"deployment", "type"};
    memset(m, 0, sizeof(*m));
    m->reg = custos_metrics_new(nshards);
    if (!m->reg)
        return CUSTOS_ENOMEM;
    int rc = custos_metrics_counter(m->reg, "custos_requests_total", "Requests by route, deployment and status.", l_rds,
                                    3, &m->requests);
    rc = rc ? rc
            : custos_metrics_histogram(m->reg, "custos_request_duration_seconds",
                                       "Whole request duration, first byte in to last byte out.", lat,
                                       sizeof(lat) / sizeof(lat[0]), l_r, 1, &m->duration);
    rc = rc ? rc
            : custos_metrics_histogram(m->reg, "custos_overhead_seconds",
                                       "Gateway overhead: request duration minus time waiting on backends.", ovh,
                                       sizeof(ovh) / sizeof(ovh[0]), l_r, 1, &m->overhead);
    rc = rc ? rc
            : custos_metrics_histogram(m->reg, "custos_time_to_first_byte_seconds",
                                       "Time from the request's first byte to the response's first byte.", lat,
                                       sizeof(lat) / sizeof(lat[0]), l_r, 1, &m->ttfb);
    rc = rc ? rc
            : custos_metrics_counter(m->reg, "custos_upstream_errors_total", "Failed backend attempts by kind.", l_bk,
                                     2, &m->upstream_errors);
    rc = rc ? rc
            : custos_metrics_counter(m->reg, "custos_upstream_retries_total",
                                     "Backend attempts after the first (retries and failovers).", l_d, 1,
                                     &m->upstream_retries);
    rc = rc ? rc
            : custos_metrics_counter(m->reg, "custos_tokens_total", "Tokens reported by backends in usage.", l_dt, 2,
                                     &m->tokens);
    rc = rc ? rc
            : custos_metrics_gauge(m->reg, "custos_client_connections", "Client connections open.", NULL, 0, &m->conns);
    rc = rc ? rc
            : custos_metrics_gauge(m->reg, "custos_upstream_connections", "Backend connections open.", NULL, 0,
                                   &m->up_conns);
    static const char *const l_dsr[] = {"deployment", "source", "result"};
    rc = rc ? rc
            : custos_metrics_counter(m->reg, "custos_content_filter_total",
                                     "Screened requests by direction and result (passed, filtered, error).", l_dsr, 3,
                                     &m->content_filter);
    rc = rc ? rc : custos_access_metrics_init(m->reg, m);
    rc = rc ? rc : custos_reviews_metrics_init(m);
    return rc;
}
