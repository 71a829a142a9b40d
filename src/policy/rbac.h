/* SPDX-License-Identifier: Apache-2.0
 * Role-based access control: which roles a caller holds at which scope ("/" or "/deployments/{name}"),
 * from its API key, role assignments (principal, group or app id) and mapped token `roles` claims.
 * Pure functions over immutable data; thread-safe; no allocation. */
#ifndef CUSTOS_POLICY_RBAC_H
#define CUSTOS_POLICY_RBAC_H

#include "config/config.h"

#include <stdbool.h>
#include <stddef.h>

/* One role assignment (config or store): subject of kind has role at scope. Strings borrowed. */
typedef struct custos_rbac_grant {
    custos_ra_kind_t kind;
    const char *subject;
    unsigned role; /* CUSTOS_ROLE_* set (usually one bit) */
    const char *scope;
} custos_rbac_grant_t;

/* Who is asking. Every field may be empty. Strings borrowed. */
typedef struct custos_rbac_subject {
    const char *principal;     /* principal id (key principal, token oid/sub, mTLS principal) */
    const char *app_id;        /* token appid/azp; NULL if none */
    const char *const *groups; /* token groups */
    size_t n_groups;
    unsigned key_roles;    /* roles carried by the API key itself ... */
    const char *key_scope; /* ... at this scope */
    unsigned token_roles;  /* token `roles` claims mapped through identity.role_map, at scope "/" */
} custos_rbac_subject_t;

/* The operation's requirement: any of `roles` at a scope covering deployment (NULL = the resource root,
 * i.e. only "/" covers it). */
typedef enum {
    CUSTOS_RBAC_INFERENCE = 0, /* inference.user or admin on the deployment */
    CUSTOS_RBAC_ADMIN,         /* admin at "/" (keys, role assignments) */
    CUSTOS_RBAC_SAFETY_ADMIN,  /* contributor or admin at "/" (blocklist changes, docs/content-safety-api.md) */
    CUSTOS_RBAC_REVIEW,        /* reviewer or admin on the deployment (review queue, docs/reviews.md) */
} custos_rbac_action_t;

/* True when scope ("/" or "/deployments/{name}") covers deployment (NULL: only "/" does). */
bool custos_rbac_scope_covers(const char *scope, const char *deployment);

/* True when s may perform action on deployment (NULL for actions without one), given the role
 * assignments grants[0..n). Checks the key's own roles first (O(1)), then assignments (O(n)). */
bool custos_rbac_allowed(const custos_rbac_subject_t *s, const custos_rbac_grant_t *grants, size_t n,
                         custos_rbac_action_t action, const char *deployment);

/* Maps token role claim values through cfg->identity.role_map; returns the CUSTOS_ROLE_* set. */
unsigned custos_rbac_map_roles(const custos_config_t *cfg, const char *const *values, size_t n);

#endif
