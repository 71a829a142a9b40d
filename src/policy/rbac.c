/* SPDX-License-Identifier: Apache-2.0
 * RBAC evaluation: scope matching and role lookup over key roles, assignments and mapped token roles. */
#include "policy/rbac.h"

#include <string.h>

bool custos_rbac_scope_covers(const char *scope, const char *deployment)
{
    if (!scope)
        return false;
    if (scope[0] == '/' && scope[1] == 0)
        return true;
    if (!deployment || !deployment[0] || strncmp(scope, "/deployments/", 13) != 0)
        return false;
    return strcmp(scope + 13, deployment) == 0;
}

static bool grant_matches(const custos_rbac_subject_t *s, const custos_rbac_grant_t *g)
{
    switch (g->kind) {
    case CUSTOS_RA_PRINCIPAL:
        return s->principal && strcmp(g->subject, s->principal) == 0;
    case CUSTOS_RA_APP_ID:
        return s->app_id && strcmp(g->subject, s->app_id) == 0;
    case CUSTOS_RA_GROUP:
        for (size_t i = 0; i < s->n_groups; i++)
            if (s->groups[i] && strcmp(g->subject, s->groups[i]) == 0)
                return true;
        return false;
    }
    return false;
}

bool custos_rbac_allowed(const custos_rbac_subject_t *s, const custos_rbac_grant_t *grants, size_t n,
                         custos_rbac_action_t action, const char *deployment)
{
    unsigned need;
    if (action == CUSTOS_RBAC_ADMIN) {
        need = CUSTOS_ROLE_ADMIN;
        deployment = NULL; /* admin acts are resource-wide: only "/" covers them */
    } else if (action == CUSTOS_RBAC_SAFETY_ADMIN) {
        need = CUSTOS_ROLE_CONTRIBUTOR | CUSTOS_ROLE_ADMIN;
        deployment = NULL;
    } else if (action == CUSTOS_RBAC_REVIEW) {
        need = CUSTOS_ROLE_REVIEWER | CUSTOS_ROLE_ADMIN;
    } else {
        need = CUSTOS_ROLE_INFERENCE_USER | CUSTOS_ROLE_ADMIN;
    }
    if ((s->key_roles & need) && custos_rbac_scope_covers(s->key_scope, deployment))
        return true;
    if (s->token_roles & need)
        return true; /* mapped token roles hold at "/" */
    for (size_t i = 0; i < n; i++) {
        const custos_rbac_grant_t *g = &grants[i];
        if ((g->role & need) && custos_rbac_scope_covers(g->scope, deployment) && grant_matches(s, g))
            return true;
    }
    return false;
}

unsigned custos_rbac_map_roles(const custos_config_t *cfg, const char *const *values, size_t n)
{
    unsigned roles = 0;
    for (size_t i = 0; i < n; i++) {
        if (!values[i])
            continue;
        for (size_t k = 0; k < cfg->identity.n_role_map; k++)
            if (strcmp(values[i], cfg->identity.role_map[k].claim_value) == 0)
                roles |= cfg->identity.role_map[k].role;
    }
    return roles;
}
