/* SPDX-License-Identifier: Apache-2.0
 * Use-case resolution and gating over the config snapshot (docs/reviews.md). */
#include "governance/usecase.h"
#include "util/json.h"

#include <string.h>

const char *custos_usecase_tier_name(custos_usecase_tier_t t)
{
    switch (t) {
    case CUSTOS_TIER_HIGH:
        return "high";
    case CUSTOS_TIER_ELEVATED:
        return "elevated";
    case CUSTOS_TIER_STANDARD:
        return "standard";
    }
    return "standard";
}

const custos_use_case_config_t *custos_usecase_find(const custos_config_t *c, const char *id, size_t id_len)
{
    for (size_t i = 0; c && id && i < c->n_use_cases; i++) {
        const char *u = c->use_cases[i].id;
        if (strlen(u) == id_len && memcmp(u, id, id_len) == 0)
            return &c->use_cases[i];
    }
    return NULL;
}

static bool in_list(char *const *l, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(l[i], s) == 0)
            return true;
    return false;
}

const custos_use_case_config_t *custos_usecase_bound(const custos_config_t *c, const custos_uc_caller_t *caller)
{
    if (!c || !caller)
        return NULL;
    for (size_t i = 0; i < c->n_use_cases; i++)
        if (in_list(c->use_cases[i].bind_api_keys, c->use_cases[i].n_bind_api_keys, caller->key_name))
            return &c->use_cases[i];
    for (size_t i = 0; i < c->n_use_cases; i++)
        if (in_list(c->use_cases[i].bind_principals, c->use_cases[i].n_bind_principals, caller->principal))
            return &c->use_cases[i];
    for (size_t i = 0; i < c->n_use_cases; i++)
        if (in_list(c->use_cases[i].bind_app_ids, c->use_cases[i].n_bind_app_ids, caller->app_id))
            return &c->use_cases[i];
    return NULL;
}

custos_uc_result_t custos_usecase_resolve(const custos_config_t *c, const char *hdr, size_t hdr_len,
                                          const custos_uc_caller_t *caller, const char *deployment, int64_t now_s,
                                          const custos_use_case_config_t **out)
{
    *out = NULL;
    const custos_use_case_config_t *u;
    if (hdr) {
        u = custos_usecase_find(c, hdr, hdr_len);
        if (!u)
            return CUSTOS_UC_NOT_FOUND;
    } else {
        u = custos_usecase_bound(c, caller);
        if (!u)
            return c->governance.require_use_case ? CUSTOS_UC_REQUIRED : CUSTOS_UC_NONE;
    }
    *out = u;
    if (!deployment || !in_list(u->deployments, u->n_deployments, deployment))
        return CUSTOS_UC_DEPLOYMENT_DENIED;
    if (u->validation_required || u->tier == CUSTOS_TIER_HIGH) {
        if (!u->validated)
            return CUSTOS_UC_NOT_VALIDATED;
        if (u->expires_s && now_s >= u->expires_s)
            return CUSTOS_UC_VALIDATION_EXPIRED;
    }
    return CUSTOS_UC_OK;
}

const char *custos_usecase_error_code(custos_uc_result_t r)
{
    switch (r) {
    case CUSTOS_UC_REQUIRED:
        return "use_case_required";
    case CUSTOS_UC_NOT_FOUND:
        return "use_case_not_found";
    case CUSTOS_UC_DEPLOYMENT_DENIED:
        return "use_case_deployment_not_allowed";
    case CUSTOS_UC_NOT_VALIDATED:
        return "use_case_not_validated";
    case CUSTOS_UC_VALIDATION_EXPIRED:
        return "use_case_validation_expired";
    default:
        return NULL;
    }
}

const char *custos_usecase_error_message(custos_uc_result_t r)
{
    switch (r) {
    case CUSTOS_UC_REQUIRED:
        return "This resource requires a use case: name one in the x-custos-use-case header, or ask an administrator "
               "to bind one to your credential.";
    case CUSTOS_UC_NOT_FOUND:
        return "The use case named in x-custos-use-case is not registered.";
    case CUSTOS_UC_DEPLOYMENT_DENIED:
        return "The use case is not allowed to call this deployment.";
    case CUSTOS_UC_NOT_VALIDATED:
        return "The use case requires validation and has not been validated.";
    case CUSTOS_UC_VALIDATION_EXPIRED:
        return "The use case's validation has expired.";
    default:
        return NULL;
    }
}

static int put_s(custos_buf_t *b, const char *s)
{
    return s ? custos_json_append_string(b, s, strlen(s)) : custos_buf_append_lit(b, "null");
}

static int put_list(custos_buf_t *b, char *const *l, size_t n)
{
    int rc = custos_buf_append_lit(b, "[");
    for (size_t i = 0; !rc && i < n; i++) {
        rc = i ? custos_buf_append_lit(b, ",") : 0;
        rc = rc ? rc : put_s(b, l[i]);
    }
    return rc ? rc : custos_buf_append_lit(b, "]");
}

int custos_usecase_write_json(custos_buf_t *b, const custos_use_case_config_t *u, int64_t now_s)
{
    static const char *const lv[] = {"", "", "low", "", "medium", "", "high"};
    static const char *const cats[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    static const char *const acts[] = {"off", "annotate", "block"};
    static const char *const pii[] = {"off", "annotate", "redact", "placeholder", "block"};
    int rc = custos_buf_append_lit(b, "{\"id\":");
    rc = rc ? rc : put_s(b, u->id);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"object\":\"use_case\",\"description\":");
    rc = rc ? rc : put_s(b, u->description);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"owner\":");
    rc = rc ? rc : put_s(b, u->owner);
    rc = rc ? rc : custos_buf_appendf(b, ",\"tier\":\"%s\",\"deployments\":", custos_usecase_tier_name(u->tier));
    rc = rc ? rc : put_list(b, u->deployments, u->n_deployments);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"minimum_policy\":{\"filters\":{");
    bool first = true;
    for (int k = 0; !rc && k < CUSTOS_RAI_NCAT; k++) {
        if (!u->min_threshold[k])
            continue;
        rc = custos_buf_appendf(b, "%s\"%s\":\"%s\"", first ? "" : ",", cats[k], lv[u->min_threshold[k] % 7]);
        first = false;
    }
    rc = rc ? rc
            : custos_buf_appendf(b,
                                 "},\"jailbreak\":\"%s\",\"indirect_attack\":\"%s\",\"pii\":{\"prompt\":\"%s\","
                                 "\"completion\":\"%s\"},\"groundedness\":%s}",
                                 acts[u->min_jailbreak % 3], acts[u->min_indirect_attack % 3],
                                 pii[u->min_pii[CUSTOS_RAI_PROMPT] % 5], pii[u->min_pii[CUSTOS_RAI_COMPLETION] % 5],
                                 u->min_groundedness ? "true" : "false");
    bool valid_now = u->validated && (!u->expires_s || now_s < u->expires_s);
    rc = rc ? rc
            : custos_buf_appendf(b, ",\"validation\":{\"validated\":%s,\"required\":%s,\"current\":%s,\"evidence\":",
                                 u->validated ? "true" : "false", u->validation_required ? "true" : "false",
                                 valid_now ? "true" : "false");
    rc = rc ? rc : put_s(b, u->evidence);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"date\":");
    rc = rc ? rc : put_s(b, u->validation_date);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"expires\":");
    rc = rc ? rc : put_s(b, u->validation_expires);
    rc = rc ? rc
            : custos_buf_appendf(b, "},\"regulatory_review\":%s,\"qa_sample_rate\":%.6g,\"review_deadline_s\":%u,",
                                 u->regulatory_review ? "true" : "false", u->qa_sample_rate, u->review_deadline_s);
    rc = rc ? rc : custos_buf_append_lit(b, "\"bind\":{\"api_keys\":");
    rc = rc ? rc : put_list(b, u->bind_api_keys, u->n_bind_api_keys);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"principals\":");
    rc = rc ? rc : put_list(b, u->bind_principals, u->n_bind_principals);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"app_ids\":");
    rc = rc ? rc : put_list(b, u->bind_app_ids, u->n_bind_app_ids);
    return rc ? rc : custos_buf_append_lit(b, "}}");
}
