/* SPDX-License-Identifier: Apache-2.0
 * Quota admission, refusal and headers for the gateway. See quota_gate.h. */
#include "api/quota_gate.h"
#include "util/time.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

bool custos_quota_gate_admit(custos_worker_t *w, custos_op_t op, const custos_deployment_config_t *dep,
                             const char *principal, json_object *body, custos_quota_ticket_t *t)
{
    custos_quota_t *q = w->gw->quota;
    const custos_config_t *cfg = w->cfg;
    memset(t, 0, sizeof(*t));
    t->allowed = true;
    t->remaining_requests = t->remaining_tokens = -1;
    if (!q)
        return true;
    /* the keys: the deployment, the principal in it, the principal everywhere */
    custos_quota_key_t keys[CUSTOS_QUOTA_MAX_KEYS];
    char kd[80], kdp[400], kp[320];
    size_t n = 0;
    if (dep->quota.tpm > 0 || dep->quota.rpm > 0) {
        snprintf(kd, sizeof(kd), "d/%s", dep->name);
        keys[n++] = (custos_quota_key_t){kd, dep->quota.tpm, dep->quota.rpm};
    }
    if (principal && (dep->quota_per_principal.tpm > 0 || dep->quota_per_principal.rpm > 0) &&
        (size_t)snprintf(kdp, sizeof(kdp), "dp/%s/%s", dep->name, principal) < sizeof(kdp))
        keys[n++] = (custos_quota_key_t){kdp, dep->quota_per_principal.tpm, dep->quota_per_principal.rpm};
    for (size_t i = 0; principal && i < cfg->quotas.n_principals; i++) {
        const custos_quota_principal_config_t *pc = &cfg->quotas.principals[i];
        if (strcmp(pc->principal, principal) == 0 && (size_t)snprintf(kp, sizeof(kp), "p/%s", principal) < sizeof(kp)) {
            keys[n++] = (custos_quota_key_t){kp, pc->limit.tpm, pc->limit.rpm};
            break;
        }
    }
    if (n == 0)
        return true;
    /* the estimate: prompt tokens (as tiktoken counts them) + completion allowance */
    custos_quota_req_t kind = op == CUSTOS_OP_COMPLETIONS  ? CUSTOS_QUOTA_REQ_COMPLETIONS
                              : op == CUSTOS_OP_EMBEDDINGS ? CUSTOS_QUOTA_REQ_EMBEDDINGS
                                                           : CUSTOS_QUOTA_REQ_CHAT;
    custos_tok_kind_t tk =
        dep->tokenizer >= 0 ? (custos_tok_kind_t)dep->tokenizer : custos_tok_kind_for_model(dep->model);
    const custos_tok_t *tok = custos_quota_tokenizer(q, tk);
    int64_t prompt = tok ? custos_quota_prompt_tokens(tok, kind, body) : 0;
    int64_t est =
        (prompt > 0 ? prompt : 0) + custos_quota_completion_allowance(kind, body, cfg->quotas.default_max_tokens);
    custos_quota_admit(q, keys, n, est, custos_wall_ms(), w->idx, t);
    return t->allowed;
}

static const char *operation_name(custos_op_t op)
{
    return op == CUSTOS_OP_COMPLETIONS  ? "Completions_Create"
           : op == CUSTOS_OP_EMBEDDINGS ? "Embeddings_Create"
                                        : "ChatCompletions_Create";
}

/* A client's api-version goes into the message only if it looks like one (no client text otherwise). */
static bool plain_api_version(const char *v)
{
    if (!v)
        return false;
    size_t n = strlen(v);
    if (n == 0 || n > 24)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'z') || v[i] == '-'))
            return false;
    return true;
}

int custos_quota_gate_reject(custos_http_req_t *req, custos_op_t op, const custos_quota_ticket_t *t)
{
    uint64_t ms = t->retry_after_ms ? t->retry_after_ms : 1;
    char ra[24], ram[24], msg[512];
    snprintf(ra, sizeof(ra), "%llu", (unsigned long long)((ms + 999) / 1000));
    snprintf(ram, sizeof(ram), "%llu", (unsigned long long)ms);
    custos_http_header_t h[6];
    size_t n = 0;
    h[n++] = (custos_http_header_t){"retry-after", 11, ra, strlen(ra)};
    h[n++] = (custos_http_header_t){"retry-after-ms", 14, ram, strlen(ram)};
    if (t->status == 503) {
        custos_http_respond_error(req, 503, "ServiceUnavailable",
                                  "The shared quota store is unavailable and requests under a quota are refused "
                                  "(quotas.redis.on_failure: closed). Please retry later.",
                                  h, n);
        return 503;
    }
    n = custos_quota_gate_headers(req, t, h, n, 5);
    const char *scope = t->refused_scope == 0 ? "Deployment" : "Principal";
    char pid[40];
    snprintf(pid, sizeof(pid), "%sRatelimit-%s", scope, t->tokens_limited ? "Token" : "Call");
    h[n++] = (custos_http_header_t){"policy-id", 9, pid, strlen(pid)};
    const char *v = custos_http_req_query(req, "api-version");
    char ver[64] = "";
    if (plain_api_version(v))
        snprintf(ver, sizeof(ver), " under Azure OpenAI API version %s", v);
    snprintf(msg, sizeof(msg),
             "Requests to the %s Operation%s have exceeded %s rate limit of your current %s. Please retry after %s "
             "second%s. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the "
             "default rate limit.",
             operation_name(op), ver, t->tokens_limited ? "token" : "call",
             t->refused_scope == 0 ? "OpenAI S0 pricing tier" : "principal quota", ra, strcmp(ra, "1") == 0 ? "" : "s");
    custos_http_respond_error(req, 429, "429", msg, h, n);
    return 429;
}

static bool is_name(const custos_http_header_t *h, const char *name)
{
    size_t l = strlen(name);
    return h->name_len == l && strncasecmp(h->name, name, l) == 0;
}

size_t custos_quota_gate_headers(custos_http_req_t *req, const custos_quota_ticket_t *t, custos_http_header_t *h,
                                 size_t n, size_t cap)
{
    if (!t->active)
        return n;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_name(&h[i], "x-ratelimit-remaining-requests") && !is_name(&h[i], "x-ratelimit-remaining-tokens"))
            h[k++] = h[i];
    char buf[24];
    if (t->remaining_requests >= 0 && k < cap) {
        int l = snprintf(buf, sizeof(buf), "%lld", (long long)t->remaining_requests);
        char *v = custos_arena_strndup(req->arena, buf, (size_t)l);
        if (v)
            h[k++] = (custos_http_header_t){"x-ratelimit-remaining-requests", 30, v, (size_t)l};
    }
    if (t->remaining_tokens >= 0 && k < cap) {
        int l = snprintf(buf, sizeof(buf), "%lld", (long long)t->remaining_tokens);
        char *v = custos_arena_strndup(req->arena, buf, (size_t)l);
        if (v)
            h[k++] = (custos_http_header_t){"x-ratelimit-remaining-tokens", 28, v, (size_t)l};
    }
    return k;
}

void custos_quota_gate_settle(custos_worker_t *w, custos_quota_ticket_t *t, int64_t prompt_tokens,
                              int64_t completion_tokens)
{
    if (!w->gw->quota || t->settled)
        return;
    /* the proxy's counts stay 0 until a usage object is seen (-1 for a field it lacks: embeddings report no
     * completion_tokens); without usage the estimate stands */
    bool seen = prompt_tokens > 0 || completion_tokens > 0;
    int64_t actual =
        seen ? (prompt_tokens > 0 ? prompt_tokens : 0) + (completion_tokens > 0 ? completion_tokens : 0) : -1;
    custos_quota_settle(w->gw->quota, t, actual, custos_wall_ms());
}
