/* SPDX-License-Identifier: Apache-2.0
 * Use cases and human review on the inference path, and the review API (docs/reviews.md). */
#include "api/reviews.h"
#include "api/contentfilter.h"
#include "api/json_out.h"
#include "crypto/crypto.h"
#include "governance/review.h"
#include "governance/usecase.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REVIEWS_PREFIX "/v1/reviews"
#define REVIEWS_MAX_BODY ((size_t)4 << 20) /* escaped text and reason; both are checked after parsing */

struct custos_gov {
    const custos_use_case_config_t *uc; /* borrowed from the config the request holds */
    custos_op_t op;
    bool queue;         /* an item is due */
    bool store_content; /* retention allows content */
    bool client_stream; /* the client asked for a stream that is fetched whole */
    custos_review_kind_t kind;
    char id[CUSTOS_REVIEW_ID_LEN + 1];
    const char *principal;
    const char *deployment, *model;
    bool stream_usage; /* stream_options.include_usage was asked for */
};

/* Disposes of a buffer that held prompt or completion content, overwriting it first. */
static void wipe(custos_buf_t *b)
{
    if (b->data)
        OPENSSL_cleanse(b->data, b->cap);
    custos_buf_dispose(b);
}

/* Adds src[key] to dst under the same key (a new reference) when src has it. */
static void copy_key(json_object *dst, json_object *src, const char *key)
{
    json_object *v = NULL;
    if (src && json_object_object_get_ex(src, key, &v))
        json_object_object_add(dst, key, json_object_get(v));
}
static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

const char *custos_gov_use_case(const custos_gov_t *g)
{
    return g && g->uc ? g->uc->id : NULL;
}

const char *custos_gov_tier(const custos_gov_t *g)
{
    return g && g->uc ? custos_usecase_tier_name(g->uc->tier) : NULL;
}

bool custos_gov_client_stream(const custos_gov_t *g)
{
    return g && g->client_stream;
}

/* ---------- metrics ---------- */

int custos_reviews_metrics_init(custos_gateway_metrics_t *m)
{
    static const char *const l_utk[] = {"use_case", "tier", "kind"};
    static const char *const l_ud[] = {"use_case", "decision"};
    int rc = custos_metrics_counter(m->reg, "custos_review_items_total", "Review items queued (docs/reviews.md).",
                                    l_utk, 3, &m->review_items);
    rc = rc ? rc
            : custos_metrics_counter(m->reg, "custos_review_decisions_total", "Review decisions taken.", l_ud, 2,
                                     &m->review_decisions);
    rc = rc ? rc
            : custos_metrics_counter(m->reg, "custos_review_store_errors_total",
                                     "Review items that could not be stored.", NULL, 0, &m->review_store_errors);
    return rc;
}

static void count_store_error(custos_worker_t *w)
{
    const char *const *none = NULL;
    custos_metric_series_t *s =
        w->gw->m.review_store_errors ? custos_metrics_series(w->gw->m.review_store_errors, none) : NULL;
    if (s)
        custos_metrics_inc(s, w->idx, 1);
}

void custos_reviews_render_metrics(custos_worker_t *w, custos_buf_t *b)
{
    if (!w->cfg || w->cfg->n_use_cases == 0)
        return;
    custos_store_t *st = NULL;
    struct custos_vault *v = NULL;
    char err[256];
    custos_review_stats_t s;
    if (custos_review_local(&w->cfg->storage, &st, &v, err, sizeof(err)) != 0)
        return;
    if (custos_review_stats(st, NULL, now_s(), &s) != 0) {
        custos_review_local_drop(); /* reconnect at the next scrape */
        return;
    }
    static const char *const tiers[CUSTOS_REVIEW_NTIER] = {"high", "elevated", "standard"};
    custos_buf_append_lit(b, "# HELP custos_review_pending Review items pending a decision (from the store).\n"
                             "# TYPE custos_review_pending gauge\n");
    for (int t = 0; t < CUSTOS_REVIEW_NTIER; t++)
        custos_buf_appendf(b, "custos_review_pending{tier=\"%s\"} %lld\n", tiers[t],
                           (long long)s.by_tier_status[t][CUSTOS_REVIEW_PENDING]);
}

/* ---------- inference path ---------- */

int custos_gov_admit(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller,
                     const custos_deployment_config_t *dep, custos_op_t op, json_object *body, bool *stream,
                     custos_gov_t **out, int *status)
{
    *out = NULL;
    const custos_config_t *cfg = w->cfg;
    if ((op != CUSTOS_OP_CHAT && op != CUSTOS_OP_COMPLETIONS) ||
        (cfg->n_use_cases == 0 && !cfg->governance.require_use_case))
        return 0;
    size_t hl = 0;
    const char *hv = custos_http_req_header(req, CUSTOS_USECASE_HEADER, &hl);
    custos_uc_caller_t who = {caller->key_id, caller->principal, caller->rbac.app_id};
    const custos_use_case_config_t *uc = NULL;
    custos_uc_result_t r = custos_usecase_resolve(cfg, hv, hl, &who, dep->name, now_s(), &uc);
    if (r == CUSTOS_UC_NONE)
        return 0;
    if (uc) { /* a request answered synchronously from here on (403, 400 content_filter) names it in its record */
        w->cur_use_case = uc->id;
        w->cur_tier = custos_usecase_tier_name(uc->tier);
    }
    if (r != CUSTOS_UC_OK) {
        *status = 403;
        custos_http_respond_error(req, 403, custos_usecase_error_code(r), custos_usecase_error_message(r), NULL, 0);
        return -1;
    }
    if (!uc) /* custos_usecase_resolve names the use case whenever it answers OK */
        return 0;
    custos_gov_t *g = custos_arena_alloc(req->arena, sizeof(*g));
    if (!g) {
        *status = 503;
        custos_http_respond_error(req, 503, "server_busy", "Out of memory.", NULL, 0);
        return -1;
    }
    memset(g, 0, sizeof(*g));
    g->uc = uc;
    g->op = op;
    g->principal = caller->principal;
    g->deployment = dep->name;
    g->model = dep->model;
    g->store_content = !cfg->retention.content_none;
    switch (uc->tier) {
    case CUSTOS_TIER_HIGH:
        g->queue = true;
        g->kind = CUSTOS_REVIEW_HOLD;
        break;
    case CUSTOS_TIER_ELEVATED:
        g->queue = true;
        g->kind = CUSTOS_REVIEW_SIGNOFF;
        break;
    case CUSTOS_TIER_STANDARD:
        g->queue = custos_review_sampled(req->request_id, uc->qa_rate_ppm);
        g->kind = CUSTOS_REVIEW_QA;
        break;
    }
    if (g->queue && custos_review_new_id(g->id) != 0) {
        *status = 503;
        custos_http_respond_error(req, 503, "review_unavailable", "The review queue is unavailable.", NULL, 0);
        return -1;
    }
    /* A stream whose text must be stored (or withheld) is fetched whole and answered as one chunk: no delta of an
     * unapproved completion can reach the client, and the stored text is exactly what was released. */
    if (*stream && g->queue && (g->store_content || uc->tier == CUSTOS_TIER_HIGH)) {
        json_object *so = NULL;
        if (json_object_object_get_ex(body, "stream_options", &so) && json_object_is_type(so, json_type_object)) {
            json_object *iu = NULL;
            g->stream_usage = json_object_object_get_ex(so, "include_usage", &iu) && json_object_get_boolean(iu);
        }
        json_object_object_del(body, "stream");
        json_object_object_del(body, "stream_options");
        *stream = false;
        g->client_stream = true;
    }
    *out = g;
    return 0;
}

/* {"id","status","tier","use_case","url","deadline"} */
static json_object *review_annotation(const custos_gov_t *g, const char *status, int64_t deadline)
{
    char url[96];
    json_object *a = json_object_new_object();
    if (!a)
        return NULL;
    snprintf(url, sizeof(url), REVIEWS_PREFIX "/%s%s", g->id, g->kind == CUSTOS_REVIEW_HOLD ? "/completion" : "");
    json_object_object_add(a, "id", json_object_new_string(g->id));
    json_object_object_add(a, "status", json_object_new_string(status));
    json_object_object_add(a, "tier", json_object_new_string(custos_usecase_tier_name(g->uc->tier)));
    json_object_object_add(a, "use_case", json_object_new_string(g->uc->id));
    json_object_object_add(a, "url", json_object_new_string(url));
    json_object_object_add(a, "deadline", json_object_new_int64(deadline));
    return a;
}

/* Withholds every choice's output: content "" (text "" for completions), no tool calls, no logprobs. */
static void withhold(json_object *resp, custos_op_t op)
{
    json_object *choices = NULL;
    if (!json_object_object_get_ex(resp, "choices", &choices) || !json_object_is_type(choices, json_type_array))
        return;
    for (size_t i = 0; i < json_object_array_length(choices); i++) {
        json_object *c = json_object_array_get_idx(choices, i);
        if (!json_object_is_type(c, json_type_object))
            continue;
        if (op == CUSTOS_OP_CHAT) {
            json_object *m = json_object_new_object();
            json_object_object_add(m, "role", json_object_new_string("assistant"));
            json_object_object_add(m, "content", json_object_new_string(""));
            json_object_object_add(c, "message", m);
        } else {
            json_object_object_add(c, "text", json_object_new_string(""));
        }
        if (json_object_object_get_ex(c, "logprobs", NULL))
            json_object_object_add(c, "logprobs", NULL);
    }
}

static void safety_json(const custos_cf_summary_t *cs, char *out, size_t cap)
{
    if (!cs) {
        snprintf(out, cap, "{}");
        return;
    }
    const int8_t *p = cs->prompt_severity, *c = cs->completion_severity;
    snprintf(out, cap,
             "{\"prompt_severity\":{\"hate\":%d,\"sexual\":%d,\"violence\":%d,\"self_harm\":%d},"
             "\"completion_severity\":{\"hate\":%d,\"sexual\":%d,\"violence\":%d,\"self_harm\":%d},"
             "\"prompt_filtered\":%s,\"completion_filtered\":%s,\"jailbreak_detected\":%s,"
             "\"indirect_attack_detected\":%s,\"pii_prompt\":%u,\"pii_completion\":%u,\"blocklist_hits\":%u,"
             "\"filter_error\":%s}",
             p[0], p[1], p[2], p[3], c[0], c[1], c[2], c[3], cs->prompt_filtered ? "true" : "false",
             cs->completion_filtered ? "true" : "false", cs->jailbreak_detected ? "true" : "false",
             cs->indirect_attack_detected ? "true" : "false", cs->pii_prompt, cs->pii_completion, cs->blocklist_hits,
             cs->error ? "true" : "false");
}

/* The whole answer as one SSE chunk plus [DONE] (chat.completion.chunk / text_completion). */
static int to_sse(json_object *resp, custos_op_t op, bool usage, custos_buf_t *out)
{
    json_object *chunk = json_object_new_object(), *v = NULL, *choices = NULL;
    if (!chunk)
        return CUSTOS_ENOMEM;
    static const char *const copy[] = {
        "id", "created", "model", "system_fingerprint", "prompt_filter_results", "custos_review"};
    for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++)
        copy_key(chunk, resp, copy[i]);
    json_object_object_add(chunk, "object",
                           json_object_new_string(op == CUSTOS_OP_CHAT ? "chat.completion.chunk" : "text_completion"));
    json_object *nc = json_object_new_array();
    json_object_object_add(chunk, "choices", nc);
    if (json_object_object_get_ex(resp, "choices", &choices) && json_object_is_type(choices, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(choices); i++) {
            json_object *c = json_object_array_get_idx(choices, i), *x = NULL;
            if (!json_object_is_type(c, json_type_object))
                continue;
            json_object *o = json_object_new_object();
            json_object_array_add(nc, o);
            json_object_object_add(o, "index", json_object_new_int64((int64_t)i));
            copy_key(o, c, "index");
            if (op == CUSTOS_OP_CHAT) {
                json_object *d = json_object_new_object(), *m = NULL;
                json_object_object_add(o, "delta", d);
                json_object_object_add(d, "role", json_object_new_string("assistant"));
                if (json_object_object_get_ex(c, "message", &m) && json_object_is_type(m, json_type_object)) {
                    json_object *tc = NULL;
                    copy_key(d, m, "content");
                    copy_key(d, m, "refusal");
                    if (json_object_object_get_ex(m, "tool_calls", &tc) && json_object_is_type(tc, json_type_array)) {
                        json_object *arr = json_object_new_array();
                        for (size_t k = 0; k < json_object_array_length(tc); k++) {
                            json_object *t = json_object_array_get_idx(tc, k);
                            json_object *tcopy = NULL;
                            if (json_object_deep_copy(t, &tcopy, NULL) != 0 || !tcopy)
                                continue;
                            if (json_object_is_type(tcopy, json_type_object))
                                json_object_object_add(tcopy, "index", json_object_new_int64((int64_t)k));
                            json_object_array_add(arr, tcopy);
                        }
                        json_object_object_add(d, "tool_calls", arr);
                    }
                }
            } else if (json_object_object_get_ex(c, "text", &x)) {
                json_object_object_add(o, "text", json_object_get(x));
            }
            json_object_object_add(o, "logprobs", NULL);
            copy_key(o, c, "finish_reason");
            copy_key(o, c, "content_filter_results");
        }
    }
    if (usage && json_object_object_get_ex(resp, "usage", &v))
        json_object_object_add(chunk, "usage", json_object_get(v));
    int rc = custos_buf_append_lit(out, "data: ");
    rc = rc ? rc : custos_json_write(out, chunk);
    rc = rc ? rc : custos_buf_append_lit(out, "\n\ndata: [DONE]\n\n");
    json_object_put(chunk);
    return rc;
}

int custos_reviews_render_tree(json_object *r, custos_op_t op, bool hold, json_object *annotation, bool sse, bool usage,
                               custos_buf_t *out)
{
    if (!r || !json_object_is_type(r, json_type_object)) {
        json_object_put(annotation);
        return CUSTOS_EPROTO;
    }
    if (hold)
        withhold(r, op);
    if (annotation)
        json_object_object_add(r, "custos_review", annotation);
    return sse ? to_sse(r, op, usage, out) : custos_json_write(out, r);
}

int custos_reviews_render(const char *body, size_t n, custos_op_t op, bool hold, bool sse, bool usage,
                          custos_buf_t *out)
{
    json_object *r = NULL;
    int rc = custos_json_parse(body, n, 128, &r, NULL, NULL);
    if (rc == 0)
        rc = custos_reviews_render_tree(r, op, hold, NULL, sse, usage, out);
    if (r)
        json_object_put(r);
    return rc;
}

int custos_gov_finish(custos_gov_t *g, custos_worker_t *w, custos_http_req_t *req, json_object *sent,
                      const custos_cf_summary_t *cs, custos_buf_t *resp, custos_http_header_t *h, size_t *n, size_t cap,
                      const char **content_type)
{
    if (!g || !g->queue)
        return 0;
    const custos_config_t *cfg = w->cfg;
    bool must = g->kind != CUSTOS_REVIEW_QA; /* high and elevated fail closed */
    json_object *r = NULL;
    custos_buf_t content, out;
    custos_buf_init(&content, CUSTOS_SEAL_MAX);
    custos_buf_init(&out, 0);
    int rc = custos_json_parse(custos_buf_peek(resp), custos_buf_size(resp), 128, &r, NULL, NULL);
    if (rc == 0 && (!r || !json_object_is_type(r, json_type_object)))
        rc = CUSTOS_EPROTO;
    if (rc != 0)
        goto out;
    custos_review_meta_t m;
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%s", g->id);
    snprintf(m.request_id, sizeof(m.request_id), "%s", req->request_id);
    snprintf(m.use_case, sizeof(m.use_case), "%s", g->uc->id);
    snprintf(m.tier, sizeof(m.tier), "%s", custos_usecase_tier_name(g->uc->tier));
    snprintf(m.kind, sizeof(m.kind), "%s", custos_review_kind_name(g->kind));
    snprintf(m.deployment, sizeof(m.deployment), "%s", g->deployment);
    snprintf(m.model, sizeof(m.model), "%s", g->model ? g->model : g->deployment);
    snprintf(m.operation, sizeof(m.operation), "%s", custos_route_op_name(g->op));
    snprintf(m.requester, sizeof(m.requester), "%s", g->principal ? g->principal : "");
    m.stream = g->client_stream;
    m.status = CUSTOS_REVIEW_PENDING;
    m.created_s = now_s();
    m.deadline_s = m.created_s + g->uc->review_deadline_s;
    safety_json(cs, m.safety, sizeof(m.safety));
    if (g->store_content) {
        rc = custos_buf_append_lit(&content, "{\"request\":");
        rc = rc ? rc : custos_json_write(&content, sent);
        rc = rc ? rc : custos_buf_append_lit(&content, ",\"response\":");
        rc = rc ? rc : custos_json_write(&content, r);
        rc = rc ? rc : custos_buf_append_lit(&content, "}");
        if (rc != 0)
            goto out;
    }
    custos_store_t *st = NULL;
    struct custos_vault *v = NULL;
    char err[256] = "";
    rc = custos_review_local(&cfg->storage, &st, &v, err, sizeof(err));
    if (rc == 0) {
        int64_t exp = cfg->retention.content_none ? 0 : m.created_s + cfg->retention.content_days * 86400;
        rc = custos_review_enqueue(st, v, &m, g->store_content ? custos_buf_peek(&content) : NULL,
                                   custos_buf_size(&content), exp);
        if (rc != 0)
            snprintf(err, sizeof(err), "%s", custos_store_errmsg(st));
    }
    if (rc != 0) {
        CUSTOS_ERROR("review: item %s (use case %s) could not be stored: %s (%s)", g->id, g->uc->id,
                     custos_strerror(rc), err);
        count_store_error(w);
        custos_review_local_drop(); /* reconnect on the next item */
        goto out;
    }
    const char *lv[3] = {m.use_case, m.tier, m.kind};
    custos_metric_series_t *s = custos_metrics_series(w->gw->m.review_items, lv);
    if (s)
        custos_metrics_inc(s, w->idx, 1);
    const char *status = g->kind == CUSTOS_REVIEW_HOLD ? "pending" : g->kind == CUSTOS_REVIEW_SIGNOFF ? "draft" : NULL;
    if (status) {
        char *idv = custos_arena_strdup(req->arena, g->id);
        if (idv && *n + 2 <= cap) {
            h[(*n)++] = (custos_http_header_t){"x-custos-review-id", 18, idv, strlen(idv)};
            h[(*n)++] = (custos_http_header_t){"x-custos-review-status", 22, status, strlen(status)};
        }
    }
    if (!status && !g->client_stream) { /* QA of a whole answer: released unchanged */
        rc = 0;
        goto out;
    }
    rc = custos_reviews_render_tree(r, g->op, g->kind == CUSTOS_REVIEW_HOLD,
                                    status ? review_annotation(g, status, m.deadline_s) : NULL, g->client_stream,
                                    g->stream_usage, &out);
    if (rc != 0)
        goto out;
    custos_buf_reset(resp);
    rc = custos_buf_append(resp, custos_buf_peek(&out), custos_buf_size(&out));
    if (rc == 0 && g->client_stream)
        *content_type = "text/event-stream; charset=utf-8";
out:
    if (r)
        json_object_put(r);
    wipe(&content);
    custos_buf_dispose(&out);
    if (rc != 0 && !must) {
        /* a QA item that could not be made never holds back a standard answer; a stream fetched whole still has to
         * be answered as a stream */
        if (g->client_stream) {
            json_object *r2 = NULL;
            custos_buf_t o2;
            custos_buf_init(&o2, 0);
            if (custos_json_parse(custos_buf_peek(resp), custos_buf_size(resp), 128, &r2, NULL, NULL) == 0 && r2 &&
                to_sse(r2, g->op, g->stream_usage, &o2) == 0) {
                custos_buf_reset(resp);
                if (custos_buf_append(resp, custos_buf_peek(&o2), custos_buf_size(&o2)) == 0)
                    *content_type = "text/event-stream; charset=utf-8";
            }
            if (r2)
                json_object_put(r2);
            custos_buf_dispose(&o2);
        }
        return 0;
    }
    return rc;
}

/* ---------- the review API ---------- */

bool custos_reviews_path(const char *path, size_t len)
{
    size_t pl = sizeof(REVIEWS_PREFIX) - 1;
    return len >= pl && memcmp(path, REVIEWS_PREFIX, pl) == 0 && (len == pl || path[pl] == '/');
}

static void reply(custos_http_req_t *req, int status, const custos_buf_t *b)
{
    custos_http_header_t h[2] = {{"content-type", 12, "application/json", 16}, {"cache-control", 13, "no-store", 8}};
    custos_http_respond(req, status, h, 2, custos_buf_peek(b), custos_buf_size(b));
}

static int put_opt(custos_buf_t *b, const char *s)
{
    return s && *s ? custos_api_put_str(b, s) : custos_buf_append_lit(b, "null");
}

/* The metadata object of an item (no content). */
static int put_meta(custos_buf_t *b, const custos_review_meta_t *m)
{
    int rc = custos_api_put_member(b, "{\"id\":", m->id);
    rc = rc ? rc : custos_api_put_member(b, ",\"object\":\"review\",\"use_case\":", m->use_case);
    rc = rc ? rc : custos_api_put_member(b, ",\"tier\":", m->tier);
    rc = rc ? rc : custos_api_put_member(b, ",\"kind\":", m->kind);
    rc = rc ? rc : custos_api_put_member(b, ",\"deployment\":", m->deployment);
    rc = rc ? rc : custos_api_put_member(b, ",\"model\":", m->model);
    rc = rc ? rc : custos_api_put_member(b, ",\"operation\":", m->operation);
    rc =
        rc ? rc
           : custos_buf_appendf(b, ",\"stream\":%s,\"created\":%lld,\"deadline\":%lld,\"status\":\"%s\",\"requester\":",
                                m->stream ? "true" : "false", (long long)m->created_s, (long long)m->deadline_s,
                                custos_review_status_name(m->status));
    rc = rc ? rc : custos_api_put_str(b, m->requester);
    rc = rc ? rc : custos_api_put_member(b, ",\"request_id\":", m->request_id);
    rc = rc ? rc : custos_buf_appendf(b, ",\"content_stored\":%s,\"safety\":", m->content_stored ? "true" : "false");
    rc = rc ? rc : custos_buf_append_str(b, m->safety); /* written by safety_json: metadata only */
    rc = rc ? rc : custos_buf_append_lit(b, ",\"decided_at\":");
    rc =
        rc ? rc
           : (m->decided_s ? custos_buf_appendf(b, "%lld", (long long)m->decided_s) : custos_buf_append_lit(b, "null"));
    rc = rc ? rc : custos_buf_append_lit(b, ",\"reviewer\":");
    rc = rc ? rc : put_opt(b, m->reviewer);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"decision\":");
    rc = rc ? rc : put_opt(b, m->decision);
    return rc ? rc : custos_buf_append_lit(b, "}");
}

static void fail(custos_http_req_t *req, int status, const char *code, const char *msg)
{
    custos_http_respond_error(req, status, code, msg, NULL, 0);
}

/* 404 for an id that names no item the caller may see. */
static void item_not_found(custos_http_req_t *req)
{
    fail(req, 404, "review_not_found", "No review item with this id.");
}

/* 200 with the item's metadata object. */
static void reply_meta(custos_http_req_t *req, const custos_review_meta_t *m)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    if (put_meta(&b, m) == 0)
        reply(req, 200, &b);
    else
        fail(req, 500, "internal_error", "Out of memory.");
    custos_buf_dispose(&b);
}

/* Error body with the item: {"error":{...},"review":{...}} for status checks. */
static void fail_with(custos_http_req_t *req, int status, const char *code, const char *msg,
                      const custos_review_meta_t *m)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_http_error_body(&b, status, code, msg, NULL);
    if (rc == 0 && custos_buf_size(&b) > 1 && custos_buf_peek(&b)[custos_buf_size(&b) - 1] == '}') {
        b.len--; /* reopen the outer object */
        rc = custos_buf_append_lit(&b, ",\"review\":");
        rc = rc ? rc : put_meta(&b, m);
        rc = rc ? rc : custos_buf_append_lit(&b, "}");
    }
    if (rc == 0)
        reply(req, status, &b);
    else
        fail(req, status, code, msg);
    custos_buf_dispose(&b);
}

/* Answers the non-released states; returns true when it did. */
static bool fail_state(custos_http_req_t *req, const custos_review_meta_t *m)
{
    switch (m->status) {
    case CUSTOS_REVIEW_PENDING:
        fail_with(req, 409, "review_pending", "The review item has not been decided yet.", m);
        return true;
    case CUSTOS_REVIEW_REJECTED:
        fail_with(req, 422, "review_rejected", "A reviewer rejected this output; it will not be released.", m);
        return true;
    case CUSTOS_REVIEW_EXPIRED:
        fail_with(req, 410, "review_expired", "The review item passed its deadline undecided; it will not be released.",
                  m);
        return true;
    default:
        return false;
    }
}

typedef struct ctx {
    custos_worker_t *w;
    custos_http_req_t *req;
    custos_caller_t caller;
    custos_store_t *st;
    struct custos_vault *v;
} ctx_t;

static bool is_reviewer(ctx_t *c, const char *deployment)
{
    return custos_authn_can(c->w, &c->caller, CUSTOS_RBAC_REVIEW, deployment);
}

/* action on the deployment, conditional access included; answers 401/403 otherwise. */
static bool authorize_as(ctx_t *c, custos_rbac_action_t action, const char *deployment)
{
    custos_authn_error_t e;
    if (custos_authn_authorize(c->w, c->req, &c->caller, action, deployment, &e) < 0) {
        fail(c->req, e.status, e.code, e.message);
        return false;
    }
    return true;
}

/* Reviewer of the item's deployment, conditional access included; answers 401/403 otherwise. */
static bool require_reviewer(ctx_t *c, const char *deployment)
{
    return authorize_as(c, CUSTOS_RBAC_REVIEW, deployment);
}

static bool load_item(ctx_t *c, const char *id, custos_review_meta_t *m)
{
    int rc = custos_review_get(c->st, id, now_s(), m);
    if (rc == CUSTOS_ENOTFOUND) {
        item_not_found(c->req);
        return false;
    }
    if (rc != 0) {
        CUSTOS_ERROR("review: reading %s failed: %s (%s)", id, custos_strerror(rc), custos_store_errmsg(c->st));
        custos_review_local_drop();
        fail(c->req, 500, "review_unavailable", "The review queue is unavailable.");
        return false;
    }
    return true;
}

typedef struct list_out {
    ctx_t *c;
    custos_buf_t *b;
    size_t n;
    char last[CUSTOS_REVIEW_ID_LEN + 1];
} list_out_t;

static int list_one(void *ud, const custos_review_meta_t *m)
{
    list_out_t *l = ud;
    if (!is_reviewer(l->c, m->deployment))
        return 0;
    int rc = l->n++ ? custos_buf_append_lit(l->b, ",") : 0;
    snprintf(l->last, sizeof(l->last), "%s", m->id);
    return rc ? rc : put_meta(l->b, m);
}

static void do_list(ctx_t *c)
{
    /* a reviewer somewhere (items are then filtered by deployment); conditional access on one such scope */
    const char *scope_dep = NULL;
    bool any = is_reviewer(c, NULL);
    for (size_t i = 0; !any && i < c->w->cfg->n_deployments; i++)
        if ((any = is_reviewer(c, c->w->cfg->deployments[i].name)))
            scope_dep = c->w->cfg->deployments[i].name;
    if (!require_reviewer(c, scope_dep))
        return;
    const char *status = custos_http_req_query(c->req, "status");
    const char *uc = custos_http_req_query(c->req, "use_case");
    const char *tier = custos_http_req_query(c->req, "tier");
    const char *after = custos_http_req_query(c->req, "after");
    const char *lim = custos_http_req_query(c->req, "limit");
    int st = CUSTOS_REVIEW_PENDING;
    if (status && strcmp(status, "all") == 0)
        st = -1;
    else if (status && (st = custos_review_status_parse(status)) < 0) {
        fail(c->req, 400, "invalid_request_error",
             "status must be pending, approved, edited, rejected, expired or all.");
        return;
    }
    if (tier && custos_review_tier_index(tier) < 0) {
        fail(c->req, 400, "invalid_request_error", "tier must be high, elevated or standard.");
        return;
    }
    if (after && !custos_review_id_valid(after, strlen(after))) {
        fail(c->req, 400, "invalid_request_error", "after must be a review id.");
        return;
    }
    if (uc && strlen(uc) > 64) {
        fail(c->req, 400, "invalid_request_error", "use_case is too long.");
        return;
    }
    long limit = 50;
    if (lim) {
        char *end = NULL;
        limit = strtol(lim, &end, 10);
        if (!*lim || *end || limit < 1 || limit > CUSTOS_REVIEW_MAX_LIST) {
            fail(c->req, 400, "invalid_request_error", "limit must be an integer from 1 to 200.");
            return;
        }
    }
    custos_buf_t b;
    custos_buf_init(&b, 0);
    list_out_t l = {c, &b, 0, ""};
    bool more = false;
    int rc = custos_buf_append_lit(&b, "{\"object\":\"list\",\"data\":[");
    rc = rc ? rc : custos_review_list(c->st, st, uc, tier, after, (unsigned)limit, now_s(), list_one, &l, &more);
    rc = rc ? rc : custos_buf_appendf(&b, "],\"has_more\":%s,\"last_id\":", more ? "true" : "false");
    rc = rc ? rc : put_opt(&b, l.last);
    rc = rc ? rc : custos_buf_append_lit(&b, "}");
    if (rc != 0) {
        CUSTOS_ERROR("review: listing failed: %s (%s)", custos_strerror(rc), custos_store_errmsg(c->st));
        custos_review_local_drop();
        fail(c->req, 500, "review_unavailable", "The review queue is unavailable.");
    } else {
        reply(c->req, 200, &b);
    }
    custos_buf_dispose(&b);
}

static void do_status(ctx_t *c, const char *id)
{
    custos_review_meta_t m;
    if (!load_item(c, id, &m))
        return;
    bool mine = c->caller.principal && strcmp(c->caller.principal, m.requester) == 0;
    bool reviewer = is_reviewer(c, m.deployment);
    if (!mine && !reviewer && !custos_authn_can(c->w, &c->caller, CUSTOS_RBAC_INFERENCE, m.deployment)) {
        item_not_found(c->req);
        return;
    }
    if (!authorize_as(c, reviewer ? CUSTOS_RBAC_REVIEW : CUSTOS_RBAC_INFERENCE, m.deployment))
        return;
    if (fail_state(c->req, &m))
        return;
    reply_meta(c->req, &m);
}

/* Loads and parses a sealed record; *out NULL when absent/purged (*purged set when it was stored). */
static int load_json(ctx_t *c, const char *id, bool decision, json_object **out, bool *purged)
{
    *out = NULL;
    unsigned char *p = NULL;
    size_t n = 0;
    int rc = custos_review_content(c->v, id, decision, &p, &n);
    if (rc == CUSTOS_ENOTFOUND || rc == CUSTOS_EKEYGONE) {
        if (purged)
            *purged = true;
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = custos_json_parse((const char *)p, n, 256, out, NULL, NULL);
    OPENSSL_cleanse(p, n);
    free(p);
    return rc;
}

static json_object *get_key(json_object *o, const char *k)
{
    json_object *v = NULL;
    return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* o[k] when it is an array, else NULL. */
static json_object *get_array(json_object *o, const char *k)
{
    json_object *v = get_key(o, k);
    return v && json_object_is_type(v, json_type_array) ? v : NULL;
}

/* Releases what an item answer held: the answer buffer b (wiped) and the item and decision records (may be NULL). */
static void drop_content(custos_buf_t *b, json_object *item, json_object *dec)
{
    wipe(b);
    if (item)
        json_object_put(item);
    if (dec)
        json_object_put(dec);
}

/* Writes o as JSON (null when NULL) and releases it. */
static int put_tree(custos_buf_t *b, json_object *o)
{
    int rc = custos_json_write(b, o);
    json_object_put(o);
    return rc;
}

/* The item's request as shown to reviewers: its messages and prompt; NULL without a request. */
static json_object *item_request(json_object *rq)
{
    if (!rq)
        return NULL;
    json_object *o = json_object_new_object();
    copy_key(o, rq, "messages");
    copy_key(o, rq, "prompt");
    return o;
}

/* A new array of each(x, i) for the elements x of a, leaving out NULL results; NULL when a is NULL. */
static json_object *map_array(json_object *a, json_object *(*each)(json_object *x, size_t i))
{
    if (!a)
        return NULL;
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *o = each(json_object_array_get_idx(a, i), i);
        if (o)
            json_object_array_add(arr, o);
    }
    return arr;
}

/* The output entry of choice ch (index i): index, text, tool calls, finish reason, filter results. */
static json_object *output_entry(json_object *ch, size_t i)
{
    json_object *o = json_object_new_object(), *x;
    json_object_object_add(o, "index", json_object_new_int64((int64_t)i));
    json_object *msg = get_key(ch, "message");
    if ((x = msg ? get_key(msg, "content") : get_key(ch, "text")) != NULL)
        json_object_object_add(o, "text", json_object_get(x));
    if (msg && (x = get_key(msg, "tool_calls")) != NULL)
        json_object_object_add(o, "tool_calls", json_object_get(x));
    copy_key(o, ch, "finish_reason");
    copy_key(o, ch, "content_filter_results");
    return o;
}

/* Message mm when it is a source: a tool or function message (documents and tool output the prompt carried). */
static json_object *source_entry(json_object *mm, size_t i)
{
    json_object *role = get_key(mm, "role");
    if (role && json_object_is_type(role, json_type_string) && custos_cf_role_is_source(json_object_get_string(role)))
        return json_object_get(mm);
    return NULL;
}

static void do_item(ctx_t *c, const char *id)
{
    custos_review_meta_t m;
    if (!load_item(c, id, &m) || !require_reviewer(c, m.deployment))
        return;
    json_object *item = NULL, *dec = NULL;
    bool purged = false;
    int rc = m.content_stored ? load_json(c, id, false, &item, &purged) : 0;
    if (rc == 0 && m.decided_s)
        rc = load_json(c, id, true, &dec, NULL);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    json_object *rq = get_key(item, "request"), *rs = get_key(item, "response");
    rc = rc ? rc : put_meta(&b, &m);
    if (rc == 0) {
        b.len--; /* extend the metadata object */
        rc = custos_buf_appendf(&b,
                                ",\"content_purged\":%s,\"request\":", purged && m.content_stored ? "true" : "false");
    }
    rc = rc ? rc : put_tree(&b, item_request(rq));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"output\":");
    rc = rc ? rc : put_tree(&b, map_array(get_array(rs, "choices"), output_entry));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"prompt_filter_results\":");
    rc = rc ? rc : custos_json_write(&b, get_key(rs, "prompt_filter_results"));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"sources\":");
    rc = rc ? rc : put_tree(&b, map_array(get_array(rq, "messages"), source_entry));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"groundedness\":");
    if (rc == 0) {
        json_object *choices = get_array(rs, "choices"), *g = NULL;
        if (choices && json_object_array_length(choices))
            g = get_key(get_key(json_object_array_get_idx(choices, 0), "content_filter_results"),
                        "ungrounded_material");
        rc = custos_json_write(&b, g);
    }
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"edited_text\":");
    rc = rc ? rc : custos_json_write(&b, get_key(dec, "text"));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"reason\":");
    rc = rc ? rc : custos_json_write(&b, get_key(dec, "reason"));
    rc = rc ? rc : custos_buf_append_lit(&b, "}");
    if (rc != 0) {
        CUSTOS_ERROR("review: item %s could not be read: %s", id, custos_strerror(rc));
        fail(c->req, 500, "review_unavailable", "The review item could not be read.");
    } else {
        reply(c->req, 200, &b);
    }
    drop_content(&b, item, dec);
}

static void do_decision(ctx_t *c, const char *id)
{
    custos_review_meta_t m;
    if (!load_item(c, id, &m) || !require_reviewer(c, m.deployment))
        return;
    if (c->req->body_len > REVIEWS_MAX_BODY) {
        fail(c->req, 413, "request_entity_too_large", "The decision body is too large.");
        return;
    }
    json_object *o = NULL;
    if (custos_json_parse(c->req->body, c->req->body_len, 4, &o, NULL, NULL) != 0 || !o ||
        !json_object_is_type(o, json_type_object)) {
        if (o)
            json_object_put(o);
        fail(c->req, 400, "invalid_request_error", "The body must be a JSON object.");
        return;
    }
    const char *msg = NULL;
    int d = -1;
    const char *text = NULL, *reason = NULL;
    size_t text_len = 0;
    json_object_object_foreach(o, k, val)
    {
        if (strcmp(k, "decision") == 0 && json_object_is_type(val, json_type_string))
            d = custos_review_decision_parse(json_object_get_string(val));
        else if (strcmp(k, "text") == 0 && json_object_is_type(val, json_type_string)) {
            text = json_object_get_string(val);
            text_len = (size_t)json_object_get_string_len(val);
        } else if (strcmp(k, "reason") == 0 && json_object_is_type(val, json_type_string))
            reason = json_object_get_string(val);
        else if (!(strcmp(k, "text") == 0 || strcmp(k, "reason") == 0) || !json_object_is_type(val, json_type_null))
            msg = "Unknown or mistyped field: expected {\"decision\": \"approve\"|\"edit\"|\"reject\", \"text\"?: "
                  "string, \"reason\"?: string}.";
    }
    if (!msg && d < 0)
        msg = "decision must be approve, edit or reject.";
    if (!msg && d == CUSTOS_DECISION_EDIT &&
        (!text || text_len == 0 || text_len > CUSTOS_REVIEW_MAX_TEXT || strlen(text) != text_len))
        msg = "An edit needs text: 1 byte to 512 KiB, no NUL.";
    if (!msg && d != CUSTOS_DECISION_EDIT && text)
        msg = "text is only for the edit decision.";
    if (!msg && d != CUSTOS_DECISION_APPROVE && (!reason || !*reason))
        msg = "A reason is required for edit and reject.";
    if (!msg && reason && strlen(reason) > CUSTOS_REVIEW_MAX_REASON)
        msg = "reason is longer than 4096 bytes.";
    if (msg) {
        json_object_put(o);
        fail(c->req, 400, "invalid_request_error", msg);
        return;
    }
    int rc = custos_review_decide(c->st, c->v, id, c->caller.principal, (custos_review_decision_t)d, text, text_len,
                                  reason, now_s(), &m);
    json_object_put(o);
    if (rc == CUSTOS_EAGAIN) {
        fail_with(c->req, 409, "review_already_decided", "The review item has already been decided.", &m);
        return;
    }
    if (rc == CUSTOS_ETIMEDOUT) {
        m.status = CUSTOS_REVIEW_EXPIRED;
        fail_with(c->req, 410, "review_expired", "The review item passed its deadline undecided.", &m);
        return;
    }
    if (rc == CUSTOS_ENOTFOUND) {
        item_not_found(c->req);
        return;
    }
    if (rc == CUSTOS_ETOOBIG) {
        fail(c->req, 413, "request_entity_too_large", "The edited text and reason are too large to store.");
        return;
    }
    if (rc != 0) {
        CUSTOS_ERROR("review: decision on %s failed: %s (%s)", id, custos_strerror(rc), custos_store_errmsg(c->st));
        custos_review_local_drop();
        fail(c->req, 500, "review_unavailable", "The decision could not be recorded; nothing was changed.");
        return;
    }
    const char *lv[2] = {m.use_case, custos_review_decision_name((custos_review_decision_t)d)};
    custos_metric_series_t *s = custos_metrics_series(c->w->gw->m.review_decisions, lv);
    if (s)
        custos_metrics_inc(s, c->w->idx, 1);
    reply_meta(c->req, &m);
}

static void do_completion(ctx_t *c, const char *id)
{
    custos_review_meta_t m;
    if (!load_item(c, id, &m))
        return;
    bool mine = c->caller.principal && strcmp(c->caller.principal, m.requester) == 0;
    if (!mine && !is_reviewer(c, m.deployment)) {
        item_not_found(c->req);
        return;
    }
    if (!authorize_as(c, mine ? CUSTOS_RBAC_INFERENCE : CUSTOS_RBAC_REVIEW, m.deployment))
        return;
    if (fail_state(c->req, &m))
        return;
    json_object *item = NULL, *dec = NULL;
    int rc = m.content_stored ? load_json(c, id, false, &item, NULL) : 0;
    json_object *rs = get_key(item, "response");
    if (rc == 0 && !rs) {
        if (item)
            json_object_put(item);
        fail_with(c->req, 409, "review_content_unavailable", "The item's content is not stored (or was purged).", &m);
        return;
    }
    if (rc == 0 && m.status == CUSTOS_REVIEW_EDITED)
        rc = load_json(c, id, true, &dec, NULL);
    json_object *text = get_key(dec, "text");
    if (rc == 0 && m.status == CUSTOS_REVIEW_EDITED && !text)
        rc = CUSTOS_ENOTFOUND;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    if (rc == 0) {
        json_object *choices = get_array(rs, "choices");
        if (text && choices && json_object_array_length(choices)) {
            json_object *c0 = json_object_array_get_idx(choices, 0), *msg = get_key(c0, "message");
            if (msg && json_object_is_type(msg, json_type_object))
                json_object_object_add(msg, "content", json_object_get(text));
            else if (json_object_is_type(c0, json_type_object))
                json_object_object_add(c0, "text", json_object_get(text));
        }
        json_object *a = json_object_new_object();
        json_object_object_add(a, "id", json_object_new_string(m.id));
        json_object_object_add(a, "status", json_object_new_string(custos_review_status_name(m.status)));
        json_object_object_add(a, "decided_at", json_object_new_int64(m.decided_s));
        json_object_object_add(rs, "custos_review", a);
        rc = custos_json_write(&b, rs);
    }
    if (rc != 0) {
        CUSTOS_ERROR("review: completion of %s could not be read: %s", id, custos_strerror(rc));
        fail(c->req, 500, "review_unavailable", "The approved completion could not be read.");
    } else {
        custos_http_header_t h[4] = {{"content-type", 12, "application/json", 16},
                                     {"cache-control", 13, "no-store", 8},
                                     {"x-custos-review-id", 18, m.id, strlen(m.id)},
                                     {"x-custos-review-status", 22, custos_review_status_name(m.status),
                                      strlen(custos_review_status_name(m.status))}};
        custos_http_respond(c->req, 200, h, 4, custos_buf_peek(&b), custos_buf_size(&b));
    }
    drop_content(&b, item, dec);
}

static void not_allowed(custos_http_req_t *req, const char *allow)
{
    custos_http_header_t h[1] = {{"allow", 5, allow, strlen(allow)}};
    custos_http_respond_error(req, 405, "405", "Method not allowed for this route.", h, 1);
}

void custos_reviews_handle(custos_worker_t *w, custos_http_req_t *req)
{
    ctx_t c = {.w = w, .req = req};
    custos_authn_error_t e;
    if (custos_authn_authenticate(w, req, false, &c.caller, &e) < 0) {
        fail(req, e.status, e.code, e.message);
        return;
    }
    w->cur_principal = c.caller.principal;
    const char *p = req->path + sizeof(REVIEWS_PREFIX) - 1;
    size_t n = req->path_len - (sizeof(REVIEWS_PREFIX) - 1);
    bool get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
    char id[CUSTOS_REVIEW_ID_LEN + 1] = "";
    const char *sub = NULL;
    if (n > 0) { /* "/{id}" or "/{id}/{sub}" */
        p++;
        n--;
        const char *slash = memchr(p, '/', n);
        size_t il = slash ? (size_t)(slash - p) : n;
        if (!custos_review_id_valid(p, il)) {
            item_not_found(req);
            return;
        }
        memcpy(id, p, il);
        id[il] = 0;
        sub = slash ? slash + 1 : "";
        size_t sl = slash ? n - il - 1 : 0;
        if (slash && !(sl == 4 && memcmp(sub, "item", 4) == 0) && !(sl == 8 && memcmp(sub, "decision", 8) == 0) &&
            !(sl == 10 && memcmp(sub, "completion", 10) == 0)) {
            fail(req, 404, "404", "Resource not found");
            return;
        }
    }
    bool is_decision = sub && strcmp(sub, "decision") == 0;
    if (is_decision ? !post : !get) {
        not_allowed(req, is_decision ? "POST" : "GET");
        return;
    }
    char err[256] = "";
    if (custos_review_local(&w->cfg->storage, &c.st, &c.v, err, sizeof(err)) != 0) {
        CUSTOS_ERROR("review: the store is unavailable: %s", err);
        fail(req, 500, "review_unavailable", "The review queue is unavailable.");
        return;
    }
    if (!sub)
        do_list(&c);
    else if (!*sub)
        do_status(&c, id);
    else if (strcmp(sub, "item") == 0)
        do_item(&c, id);
    else if (is_decision)
        do_decision(&c, id);
    else
        do_completion(&c, id);
}
