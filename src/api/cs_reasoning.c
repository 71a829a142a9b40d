/* SPDX-License-Identifier: Apache-2.0
 * Groundedness reasoning through a judge deployment (cs_reasoning.h, docs/content-safety-api.md "Reasoning"). */
#include "api/cs_reasoning.h"

#include "api/contentsafety.h"
#include "audit/record.h"
#include "safety/safety.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *g_prompt; /* the judge's instructions; read-only once the workers run */
static size_t g_prompt_len;

int custos_cs_reasoning_init(const char *path, char *err, size_t errlen)
{
    char buf[4096];
    if (!path)
        path = custos_safety_default_model(CUSTOS_CS_JUDGE_PROMPT, buf, sizeof(buf));
    FILE *f = fopen(path, "rb");
    if (!f) {
        CUSTOS_INFO("groundedness reasoning: no prompt template at %s (reasoning answers 503)", path);
        return 0;
    }
    char *p = malloc(CUSTOS_CS_JUDGE_PROMPT_MAX + 1);
    size_t n = p ? fread(p, 1, CUSTOS_CS_JUDGE_PROMPT_MAX + 1, f) : 0;
    fclose(f);
    if (!p || n == 0 || n > CUSTOS_CS_JUDGE_PROMPT_MAX) {
        free(p);
        snprintf(err, errlen, "%s: the groundedness reasoning prompt is empty, unreadable or over %d bytes", path,
                 CUSTOS_CS_JUDGE_PROMPT_MAX);
        return CUSTOS_EINVAL;
    }
    p[n] = 0;
    free(g_prompt);
    g_prompt = p;
    g_prompt_len = n;
    return 0;
}

void custos_cs_reasoning_dispose(void)
{
    free(g_prompt);
    g_prompt = NULL;
    g_prompt_len = 0;
}

/* ---------- the verdict ---------- */

static bool only_keys(json_object *o, const char *a, const char *b)
{
    json_object_object_foreach(o, k, v)
    {
        (void)v;
        if (strcmp(k, a) != 0 && (!b || strcmp(k, b) != 0))
            return false;
    }
    return true;
}

int custos_cs_verdict_parse(const char *body, size_t len, const char *text, size_t text_len,
                            custos_cs_verdict_item_t *items, json_object **root, const char **why)
{
    json_object *outer = NULL, *v = NULL, *x;
    int n = -1;
    *root = NULL;
    *why = "the answer is not a chat completion";
    if (custos_json_parse(body, len, 32, &outer, NULL, NULL) < 0 || !outer ||
        !json_object_is_type(outer, json_type_object) || !json_object_object_get_ex(outer, "choices", &x) ||
        !json_object_is_type(x, json_type_array) || json_object_array_length(x) < 1)
        goto out;
    json_object *ch = json_object_array_get_idx(x, 0), *msg, *content, *fr;
    if (!ch || !json_object_is_type(ch, json_type_object))
        goto out;
    if (json_object_object_get_ex(ch, "finish_reason", &fr) && json_object_is_type(fr, json_type_string) &&
        strcmp(json_object_get_string(fr), "stop") != 0) {
        *why = "the judge did not finish its answer (finish_reason is not stop)";
        goto out;
    }
    if (!json_object_object_get_ex(ch, "message", &msg) || !json_object_is_type(msg, json_type_object) ||
        !json_object_object_get_ex(msg, "content", &content) || !json_object_is_type(content, json_type_string))
        goto out;
    /* the verdict: one JSON object; surrounding white space and one ``` / ```json fence are tolerated */
    const char *s = json_object_get_string(content), *e = s + json_object_get_string_len(content);
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    if (e - s >= 6 && memcmp(s, "```", 3) == 0 && memcmp(e - 3, "```", 3) == 0) {
        s += 3;
        if (e - s >= 4 && strncasecmp(s, "json", 4) == 0)
            s += 4;
        e -= 3;
    }
    *why = "the verdict is not the JSON object the prompt asks for";
    if (custos_json_parse(s, (size_t)(e - s), 8, &v, NULL, NULL) < 0 || !v ||
        !json_object_is_type(v, json_type_object) || !only_keys(v, "ungrounded", NULL) ||
        !json_object_object_get_ex(v, "ungrounded", &x) || !json_object_is_type(x, json_type_array))
        goto out;
    size_t k = json_object_array_length(x), pos = 0;
    if (k > CUSTOS_CS_JUDGE_MAX_ITEMS) {
        *why = "the verdict lists too many items";
        goto out;
    }
    int m = 0;
    for (size_t i = 0; i < k; i++) {
        json_object *it = json_object_array_get_idx(x, i), *t, *r;
        if (!it || !json_object_is_type(it, json_type_object) || !only_keys(it, "text", "reason") ||
            !json_object_object_get_ex(it, "text", &t) || !json_object_is_type(t, json_type_string) ||
            !json_object_object_get_ex(it, "reason", &r) || !json_object_is_type(r, json_type_string) ||
            json_object_get_string_len(t) == 0 || json_object_get_string_len(r) == 0 ||
            json_object_get_string_len(r) > CUSTOS_CS_JUDGE_MAX_REASON) {
            *why = "a verdict item is not {\"text\": string, \"reason\": string}";
            goto out;
        }
        const char *q = json_object_get_string(t);
        size_t ql = (size_t)json_object_get_string_len(t);
        /* the sentence, quoted from the text: searched after the previous one, then from the start */
        const char *hit = ql <= text_len - pos ? memmem(text + pos, text_len - pos, q, ql) : NULL;
        if (!hit)
            hit = memmem(text, text_len, q, ql);
        if (!hit) {
            *why = "a verdict item quotes text that is not in the analyzed text";
            goto out;
        }
        size_t off = (size_t)(hit - text);
        bool dup = false;
        for (int j = 0; j < m; j++)
            dup |= items[j].off == off && items[j].len == ql;
        if (dup)
            continue;
        items[m] =
            (custos_cs_verdict_item_t){off, ql, json_object_get_string(r), (size_t)json_object_get_string_len(r)};
        m++;
        pos = off + ql;
    }
    n = m;
    *root = v;
    v = NULL;
    *why = NULL;
out:
    json_object_put(v);
    json_object_put(outer);
    return n;
}

/* ---------- the call ---------- */

typedef struct judge {
    custos_worker_t *w;
    custos_http_req_t *req;
    custos_gateway_call_t *call;
    const char *text; /* arena copy of the analyzed text */
    size_t text_len;
    const char *dep;       /* the judge deployment's name (configuration) */
    const char *principal; /* arena copies for the request record */
    const char *auth_type;
    bool answered;
} judge_t;

/* Request record and metrics of the detectGroundedness request, answered here (contentsafety.c does the same for
 * the requests it answers synchronously). */
static void account(judge_t *j, int status)
{
    custos_worker_t *w = j->w;
    const char *pp = w->cur_principal, *pa = w->cur_auth_type;
    w->cur_principal = j->principal;
    w->cur_auth_type = j->auth_type;
    custos_gateway_audit(w, j->req, CUSTOS_AUDIT_OP_CS_DETECT_GROUNDEDNESS, status);
    w->cur_principal = pp;
    w->cur_auth_type = pa;
    custos_gateway_metrics_t *m = &w->gw->m;
    if (!m->requests)
        return;
    char st[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10), 0};
    const char *lv[3] = {"contentsafety_detect_groundedness", "", st};
    custos_metric_series_t *s = custos_metrics_series(m->requests, lv);
    if (s)
        custos_metrics_inc(s, w->idx, 1);
    const char *lr[1] = {"contentsafety_detect_groundedness"};
    if (m->duration && (s = custos_metrics_series(m->duration, lr)) != NULL)
        custos_metrics_observe(s, w->idx, (double)(custos_now_ns() - j->req->start_ns) / 1e9);
}

/* Code points and UTF-16 units of s[0..n). */
static void units(const char *s, size_t n, size_t *cp, size_t *u16)
{
    *cp = *u16 = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80) {
            ++*cp;
            *u16 += c >= 0xF0 ? 2 : 1;
        }
    }
}

static int write_result(custos_buf_t *b, const judge_t *j, const custos_cs_verdict_item_t *it, int n)
{
    size_t total_cp, total_u16, ung_cp = 0, covered = 0; /* covered: bytes counted so far (items are ordered) */
    units(j->text, j->text_len, &total_cp, &total_u16);
    int rc = custos_buf_append_lit(b, "{\"ungroundedDetected\":");
    rc = rc ? rc : custos_buf_append_str(b, n > 0 ? "true" : "false");
    size_t mark = custos_buf_size(b);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"ungroundedDetails\":[");
    for (int i = 0; rc == 0 && i < n; i++) {
        size_t ocp, o16, lcp, l16;
        units(j->text, it[i].off, &ocp, &o16);
        units(j->text + it[i].off, it[i].len, &lcp, &l16);
        size_t from = it[i].off > covered ? it[i].off : covered, to = it[i].off + it[i].len;
        if (to > from) { /* overlapping quotes count once */
            size_t c, u;
            units(j->text + from, to - from, &c, &u);
            ung_cp += c;
            covered = to;
        }
        rc = custos_buf_append_str(b, i ? ",{\"text\":" : "{\"text\":");
        rc = rc ? rc : custos_json_append_string(b, j->text + it[i].off, it[i].len);
        rc = rc ? rc
                : custos_buf_appendf(b,
                                     ",\"offset\":{\"utf8\":%zu,\"utf16\":%zu,\"codePoint\":%zu},\"length\":{\"utf8\":"
                                     "%zu,\"utf16\":%zu,\"codePoint\":%zu},\"reason\":",
                                     it[i].off, o16, ocp, it[i].len, l16, lcp);
        rc = rc ? rc : custos_json_append_string(b, it[i].reason, it[i].reason_len);
        rc = rc ? rc : custos_buf_append_lit(b, "}");
    }
    rc = rc ? rc : custos_buf_append_lit(b, "]}");
    if (rc)
        return rc;
    /* ungroundedPercentage goes before the details (Azure's order); inserted now that it is known */
    char pct[64];
    int pl = snprintf(pct, sizeof(pct), ",\"ungroundedPercentage\":%.4g",
                      total_cp ? (double)ung_cp / (double)total_cp : 0.0);
    custos_buf_t nb;
    custos_buf_init(&nb, 0);
    rc = custos_buf_append(&nb, custos_buf_peek(b), mark);
    rc = rc ? rc : custos_buf_append(&nb, pct, (size_t)pl);
    rc = rc ? rc : custos_buf_append(&nb, custos_buf_peek(b) + mark, custos_buf_size(b) - mark);
    if (rc == 0) {
        custos_buf_reset(b);
        rc = custos_buf_append(b, custos_buf_peek(&nb), custos_buf_size(&nb));
    }
    custos_buf_dispose(&nb);
    return rc;
}

static void judge_done(void *ud, int status, const char *body, size_t len, const char *error)
{
    judge_t *j = ud;
    if (j->answered)
        return;
    j->answered = true;
    j->req->on_abort = NULL;
    j->req->handler_data = NULL;
    char msg[400];
    int st = 502;
    const char *code = "BadGateway";
    if (error) {
        st = status == 429 ? 429 : status == 504 ? 504 : 503;
        code = st == 429 ? "TooManyRequests" : st == 504 ? "GatewayTimeout" : "ServiceUnavailable";
        snprintf(msg, sizeof(msg), "Groundedness reasoning: the judge deployment '%s' could not answer: %s", j->dep,
                 error);
    } else if (status != 200) {
        snprintf(msg, sizeof(msg), "Groundedness reasoning: the judge deployment '%s' answered with HTTP %d.", j->dep,
                 status);
    } else {
        custos_cs_verdict_item_t items[CUSTOS_CS_JUDGE_MAX_ITEMS];
        json_object *root = NULL;
        const char *why = NULL;
        int n = custos_cs_verdict_parse(body, len, j->text, j->text_len, items, &root, &why);
        if (n >= 0) {
            custos_buf_t b;
            custos_buf_init(&b, 0);
            if (write_result(&b, j, items, n) == 0) {
                custos_http_header_t h[1] = {{"content-type", 12, "application/json; charset=utf-8", 31}};
                custos_http_respond(j->req, 200, h, 1, custos_buf_peek(&b), custos_buf_size(&b));
                st = 200;
            } else {
                custos_cs_error(j->req, 500, "InternalError", "Out of memory.");
                st = 500;
            }
            custos_buf_dispose(&b);
            json_object_put(root);
            account(j, st);
            return;
        }
        /* never the judge's text: the deployment and a fixed reason only */
        CUSTOS_WARN("groundedness reasoning: judge deployment '%s' gave no valid verdict: %s", j->dep, why);
        snprintf(msg, sizeof(msg),
                 "Groundedness reasoning: the judge deployment '%s' did not answer with a valid verdict (%s); see "
                 "docs/content-safety-api.md.",
                 j->dep, why);
    }
    custos_cs_error(j->req, st, code, msg);
    account(j, st);
}

static void judge_on_abort(custos_http_req_t *req)
{
    judge_t *j = req->handler_data;
    if (!j || j->answered)
        return;
    j->answered = true;
    custos_gateway_call_cancel(j->call);
    account(j, 499);
}

/* {"messages":[{"role":"system","content":prompt},{"role":"user","content":task}],"temperature":0,...} */
static json_object *judge_body(const custos_cs_reasoning_in_t *in)
{
    custos_buf_t u;
    custos_buf_init(&u, 0);
    int rc = custos_buf_appendf(&u, "DOMAIN: %s\nTASK: %s\n", in->medical ? "Medical" : "Generic",
                                in->qna ? "QnA" : "Summarization");
    if (in->qna && in->query) {
        rc = rc ? rc : custos_buf_append_lit(&u, "QUESTION:\n<<<QUESTION>>>\n");
        rc = rc ? rc : custos_buf_append(&u, in->query, in->query_len);
        rc = rc ? rc : custos_buf_append_lit(&u, "\n<<<END QUESTION>>>\n");
    }
    rc = rc ? rc : custos_buf_append_lit(&u, "SOURCES:\n");
    for (size_t i = 0; rc == 0 && i < in->n_sources; i++) {
        rc = custos_buf_appendf(&u, "<<<SOURCE %zu>>>\n", i + 1);
        rc = rc ? rc : custos_buf_append(&u, in->sources[i], in->source_lens[i]);
        rc = rc ? rc : custos_buf_appendf(&u, "\n<<<END SOURCE %zu>>>\n", i + 1);
    }
    rc = rc ? rc : custos_buf_append_lit(&u, "ANSWER:\n<<<ANSWER>>>\n");
    rc = rc ? rc : custos_buf_append(&u, in->text, in->text_len);
    rc = rc ? rc : custos_buf_append_lit(&u, "\n<<<END ANSWER>>>\n");
    json_object *o = rc ? NULL : json_object_new_object(), *msgs = o ? json_object_new_array() : NULL,
                *sys = msgs ? json_object_new_object() : NULL, *usr = sys ? json_object_new_object() : NULL;
    if (!usr) {
        json_object_put(sys);
        json_object_put(msgs);
        json_object_put(o);
        custos_buf_dispose(&u);
        return NULL;
    }
    json_object_object_add(sys, "role", json_object_new_string("system"));
    json_object_object_add(sys, "content", json_object_new_string_len(g_prompt, (int)g_prompt_len));
    json_object_object_add(usr, "role", json_object_new_string("user"));
    json_object_object_add(usr, "content", json_object_new_string_len(custos_buf_peek(&u), (int)custos_buf_size(&u)));
    json_object_array_add(msgs, sys);
    json_object_array_add(msgs, usr);
    json_object_object_add(o, "messages", msgs);
    json_object_object_add(o, "temperature", json_object_new_int(0));
    json_object_object_add(o, "max_tokens", json_object_new_int(CUSTOS_CS_JUDGE_MAX_TOKENS));
    custos_buf_dispose(&u);
    return o;
}

static int fail(custos_cs_answer_t *e, int status, const char *code, const char *message)
{
    e->status = status;
    e->code = code;
    snprintf(e->message, sizeof(e->message), "%s", message);
    return -1;
}

int custos_cs_reasoning_start(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller,
                              const custos_cs_reasoning_in_t *in, custos_cs_answer_t *e)
{
    /* the judge: llmResource.azureOpenAIDeploymentName when it names a custos deployment, else the configured one */
    const custos_deployment_config_t *dep = NULL;
    json_object *lr = in->llm_resource, *v;
    bool named = false;
    if (lr) {
        if (!json_object_is_type(lr, json_type_object))
            return fail(e, 400, "InvalidRequestBody",
                        "'llmResource' must be an object {\"resourceType\": \"AzureOpenAI\", "
                        "\"azureOpenAIEndpoint\"?: string, \"azureOpenAIDeploymentName\": string}.");
        if (json_object_object_get_ex(lr, "resourceType", &v) &&
            (!json_object_is_type(v, json_type_string) || strcasecmp(json_object_get_string(v), "AzureOpenAI") != 0))
            return fail(e, 400, "InvalidRequestBody", "'llmResource.resourceType' must be \"AzureOpenAI\".");
        if (json_object_object_get_ex(lr, "azureOpenAIDeploymentName", &v) && !json_object_is_type(v, json_type_null)) {
            if (!json_object_is_type(v, json_type_string))
                return fail(e, 400, "InvalidRequestBody", "'llmResource.azureOpenAIDeploymentName' must be a string.");
            dep = custos_config_find_deployment(w->cfg, json_object_get_string(v));
            named = dep != NULL;
        }
    }
    if (!dep && w->cfg->safety.grounded_reasoning_deployment)
        dep = custos_config_find_deployment(w->cfg, w->cfg->safety.grounded_reasoning_deployment);
    if (!dep)
        return fail(e, 400, "InvalidRequestBody",
                    "'reasoning': true needs a judge deployment: set 'llmResource.azureOpenAIDeploymentName' to a "
                    "custos deployment, or configure safety.groundedness.reasoning_deployment (docs/config.md).");
    if (named) { /* a deployment the caller chose: they must be allowed to call it */
        custos_authn_error_t ae;
        if (custos_authn_authorize(w, req, caller, CUSTOS_RBAC_INFERENCE, dep->name, &ae) < 0)
            return fail(e, ae.status, ae.code, ae.message);
    }
    if (!g_prompt)
        return fail(e, 503, "ServiceUnavailable",
                    "Groundedness reasoning is not available: the prompt template models/" CUSTOS_CS_JUDGE_PROMPT
                    " was not found at start.");
    judge_t *j = custos_arena_alloc(req->arena, sizeof(*j));
    json_object *body = j ? judge_body(in) : NULL;
    if (!j || !body || !(j->text = custos_arena_strndup(req->arena, in->text, in->text_len))) {
        json_object_put(body);
        return fail(e, 500, "InternalError", "Out of memory.");
    }
    j->w = w;
    j->req = req;
    j->call = NULL;
    j->text_len = in->text_len;
    j->dep = dep->name;
    j->principal = w->cur_principal ? custos_arena_strdup(req->arena, w->cur_principal) : NULL;
    j->auth_type = w->cur_auth_type;
    j->answered = false;
    req->handler_data = j;
    req->on_abort = judge_on_abort;
    if (custos_gateway_call(w, req, dep, body, caller ? caller->principal : NULL,
                            w->cfg->safety.grounded_reasoning_timeout_ms, judge_done, j, &j->call) < 0) {
        req->handler_data = NULL;
        req->on_abort = NULL;
        return fail(e, 500, "InternalError", "Out of memory.");
    }
    return 0;
}
