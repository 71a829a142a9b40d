/* SPDX-License-Identifier: Apache-2.0
 * The identity stage of the gateway: who is calling (API key, OIDC bearer token or mTLS client
 * certificate), may they do this (RBAC), and do the conditional-access policies let them (CA); plus the
 * runtime of the identity snapshot (build at start, on SIGHUP and after admin changes; swap per worker). */
#ifndef CUSTOS_API_AUTHN_H
#define CUSTOS_API_AUTHN_H

#include "api/gateway.h"
#include "net/http_server.h"
#include "policy/rbac.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CUSTOS_CALLER_KEY = 1, /* API key (config or store) */
    CUSTOS_CALLER_TOKEN,   /* OIDC bearer token */
    CUSTOS_CALLER_CERT,    /* mutual-TLS client certificate mapped by identity.client_certificates */
} custos_caller_kind_t;

/* Who is calling. Strings live in the request arena (valid until the response is finished). */
typedef struct custos_caller {
    custos_caller_kind_t kind;
    const char *principal;   /* never NULL after authentication */
    const char *key_id;      /* API key id (store) or name (config); NULL otherwise */
    unsigned principal_type; /* CUSTOS_CA_PRINCIPAL_USER / _WORKLOAD (keys and certificates are workloads) */
    custos_rbac_subject_t rbac;
    /* token facts for conditional access */
    bool mfa;
    bool has_iat;
    int64_t iat_s;
    const char **claim_names;  /* claims named by identity.conditional_access require.claims, with ... */
    const char **claim_values; /* ... the token's string value (NULL when absent / not a string) */
    size_t n_claims;
} custos_caller_t;

/* An error to answer: status, Azure code and a static (or arena) message. */
typedef struct custos_authn_error {
    int status;
    const char *code;
    const char *message;
} custos_authn_error_t;

/* Authenticates req on worker w. accept_subscription_key: the route also accepts
 * `Ocp-Apim-Subscription-Key` (Content Safety routes). Returns 0 and fills *c, or -1 and fills *e:
 * 401 (no / unknown / revoked / expired credential, invalid token), 403 AuthenticationTypeDisabled (a key
 * while identity.disable_local_auth). API keys cost one SHA-256, one hash probe, no allocation beyond
 * the request arena and no lock. */
int custos_authn_authenticate(custos_worker_t *w, custos_http_req_t *req, bool accept_subscription_key,
                              custos_caller_t *c, custos_authn_error_t *e);

/* Authorizes action on deployment (NULL when the operation has none): RBAC, then conditional access.
 * Returns 0, or -1 with *e: 401 PermissionDenied, 403 ConditionalAccessDenied. */
int custos_authn_authorize(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *c,
                           custos_rbac_action_t action, const char *deployment, custos_authn_error_t *e);

/* True when c may call deployment (RBAC only; for filtering model lists). */
bool custos_authn_can_call(const custos_worker_t *w, const custos_caller_t *c, const char *deployment);
/* True when c may perform action on deployment (RBAC only, no conditional access; for filtering lists). */
bool custos_authn_can(const custos_worker_t *w, const custos_caller_t *c, custos_rbac_action_t action,
                      const char *deployment);

/* --- snapshot runtime --- */

/* Builds the first identity snapshot for gw->cfg (main thread, before workers start). Returns 0 or a negative
 * code with err filled. */
int custos_gateway_identity_init(custos_gateway_t *gw, char *err, size_t errlen);

/* Rebuilds the snapshot from gw->cfg and the store and hands it to every worker (a posted message; the
 * calling worker, if `self` is not NULL, switches at once). Thread-safe (serialised by gw->ident_lock).
 * On failure the running snapshot stays and the error is logged. Returns 0 or a negative code. */
int custos_gateway_identity_reload(custos_gateway_t *gw, custos_worker_t *self);

/* Replaces gw->cfg with nc (taking over the reference) under gw->ident_lock (main thread, SIGHUP). */
void custos_gateway_set_config(custos_gateway_t *gw, custos_config_t *nc);

/* Frees gw's snapshot and lock (after the workers stopped). */
void custos_gateway_identity_dispose(custos_gateway_t *gw);

#endif
