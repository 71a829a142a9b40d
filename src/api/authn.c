/* SPDX-License-Identifier: Apache-2.0
 * Identity stage: credential → caller (API key via the snapshot's digest table, OIDC token via
 * auth/jwt.h, mTLS certificate via api/access.h), then RBAC and conditional access; and the snapshot
 * runtime (build, generation-ordered swap on every worker). */
#include "api/authn.h"
#include "api/access.h"
#include "auth/apikey.h"
#include "auth/identity.h"
#include "auth/jwt.h"
#include "policy/conditional_access.h"
#include "util/cidr.h"
#include "util/err.h"
#include "util/log.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char MSG_KEY_401[] = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                                  "provide a valid key for an active subscription and use a correct regional API "
                                  "endpoint for your resource.";
static const char MSG_TOKEN_401[] =
    "Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired.";
static const char MSG_DISABLED[] = "Key based authentication is disabled for this resource.";
static const char MSG_DENIED[] = "Principal does not have access to API/Operation.";

static int fail(custos_authn_error_t *e, int status, const char *code, const char *msg)
{
    e->status = status;
    e->code = code;
    e->message = msg;
    return -1;
}

static int64_t wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* The credential presented, by precedence: api-key, Ocp-Apim-Subscription-Key (when accepted),
 * Authorization: Bearer. *is_bearer tells whether it came from Authorization. */
static const char *credential(const custos_http_req_t *req, bool accept_sub_key, size_t *len, bool *is_bearer)
{
    *is_bearer = false;
    const char *k = custos_http_req_header(req, "api-key", len);
    if (k)
        return k;
    if (accept_sub_key && (k = custos_http_req_header(req, "ocp-apim-subscription-key", len)) != NULL)
        return k;
    size_t alen = 0;
    const char *a = custos_http_req_header(req, "authorization", &alen);
    if (a && alen > 7 && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        alen -= 7;
        while (alen && *a == ' ') {
            a++;
            alen--;
        }
        while (alen && a[alen - 1] == ' ')
            alen--;
        *len = alen;
        *is_bearer = true;
        return a;
    }
    return NULL;
}

static int auth_key(custos_worker_t *w, custos_http_req_t *req, const char *k, size_t len, custos_caller_t *c,
                    custos_authn_error_t *e)
{
    if (w->cfg->identity.disable_local_auth)
        return fail(e, 403, "AuthenticationTypeDisabled", MSG_DISABLED);
    if (len == 0 || len > CUSTOS_AUTH_MAX_KEY_BYTES || !w->ident)
        return fail(e, 401, "401", MSG_KEY_401);
    unsigned char d[32];
    if (custos_auth_sha256(k, len, d) < 0)
        return fail(e, 401, "401", MSG_KEY_401);
    const custos_idkey_t *key = custos_idsnap_find_key(w->ident, d);
    OPENSSL_cleanse(d, sizeof(d));
    if (!key || (key->expires_s && wall_s() >= key->expires_s))
        return fail(e, 401, "401", MSG_KEY_401);
    c->kind = CUSTOS_CALLER_KEY;
    /* copies: the worker may switch snapshots while this request waits on a backend */
    c->principal = custos_arena_strdup(req->arena, key->principal);
    c->key_id = custos_arena_strdup(req->arena, key->id);
    const char *scope = custos_arena_strdup(req->arena, key->scope);
    if (!c->principal || !c->key_id || !scope)
        return fail(e, 503, "server_busy", "Out of memory.");
    c->principal_type = CUSTOS_CA_PRINCIPAL_WORKLOAD;
    c->rbac.principal = c->principal;
    c->rbac.key_roles = key->roles;
    c->rbac.key_scope = scope;
    return 0;
}

/* Copies list into the arena as a const char * array. */
static const char *const *arena_strs(custos_arena_t *a, const custos_jwt_strs_t *l)
{
    if (l->n == 0)
        return NULL;
    const char **v = custos_arena_alloc(a, l->n * sizeof(*v));
    if (!v)
        return NULL;
    for (size_t i = 0; i < l->n; i++)
        if (!(v[i] = custos_arena_strdup(a, l->v[i])))
            return NULL;
    return v;
}

static int auth_token(custos_worker_t *w, custos_http_req_t *req, const char *tok, size_t len, custos_caller_t *c,
                      custos_authn_error_t *e)
{
    const custos_config_t *cfg = w->cfg;
    if (cfg->identity.n_oidc == 0)
        return fail(e, 401, "401", MSG_TOKEN_401);
    custos_jwt_claims_t *cl = NULL;
    const char *why = NULL;
    int rc = custos_oidc_authenticate(cfg, tok, len, (uint64_t)wall_s(), &cl, &why);
    if (rc == CUSTOS_ETOOBIG)
        return fail(e, 401, "401", MSG_TOKEN_401);
    if (rc != 0 || !cl) {
        CUSTOS_DEBUG("token refused: %s", why ? why : custos_strerror(rc));
        return fail(e, 401, "401", MSG_TOKEN_401);
    }
    custos_arena_t *a = req->arena;
    bool oom = false;
    c->kind = CUSTOS_CALLER_TOKEN;
    c->principal = custos_arena_strdup(a, cl->principal);
    c->principal_type = cl->is_app ? CUSTOS_CA_PRINCIPAL_WORKLOAD : CUSTOS_CA_PRINCIPAL_USER;
    c->rbac.principal = c->principal;
    if (cl->app_id && !(c->rbac.app_id = custos_arena_strdup(a, cl->app_id)))
        oom = true;
    if (cl->groups.n) {
        c->rbac.groups = arena_strs(a, &cl->groups);
        c->rbac.n_groups = c->rbac.groups ? cl->groups.n : 0;
        oom |= !c->rbac.groups;
    }
    c->rbac.token_roles = custos_rbac_map_roles(cfg, (const char *const *)cl->roles.v, cl->roles.n);
    c->mfa = custos_jwt_strs_has(&cl->amr, "mfa");
    c->has_iat = cl->has_iat;
    c->iat_s = cl->iat;
    /* the claims conditional access may ask for, copied now (the token is freed below) */
    size_t nclaims = 0;
    for (size_t i = 0; i < cfg->identity.n_ca_policies; i++)
        nclaims += cfg->identity.ca_policies[i].n_require_claims;
    if (nclaims) {
        c->claim_names = custos_arena_alloc(a, nclaims * sizeof(char *));
        c->claim_values = custos_arena_alloc(a, nclaims * sizeof(char *));
        oom |= !c->claim_names || !c->claim_values;
        for (size_t i = 0; !oom && i < cfg->identity.n_ca_policies; i++) {
            const custos_ca_policy_config_t *p = &cfg->identity.ca_policies[i];
            for (size_t k = 0; k < p->n_require_claims; k++) {
                json_object *v = NULL;
                const char *name = p->require_claims[k].name;
                c->claim_names[c->n_claims] = name; /* borrowed from the config the request holds */
                c->claim_values[c->n_claims] = NULL;
                if (cl->json && json_object_object_get_ex(cl->json, name, &v) &&
                    json_object_is_type(v, json_type_string))
                    c->claim_values[c->n_claims] = custos_arena_strdup(a, json_object_get_string(v));
                c->n_claims++;
            }
        }
    }
    custos_jwt_claims_free(cl);
    if (oom || !c->principal)
        return fail(e, 503, "server_busy", "Out of memory.");
    return 0;
}

static int auth_cert(custos_worker_t *w, custos_http_req_t *req, custos_caller_t *c, custos_authn_error_t *e)
{
    const custos_client_cert_config_t *cc = custos_access_cert_principal(w->cfg, req);
    if (!cc)
        return fail(e, 401, "401", MSG_KEY_401);
    c->kind = CUSTOS_CALLER_CERT;
    c->principal = custos_arena_strdup(req->arena, cc->principal);
    const char *scope = custos_arena_strdup(req->arena, cc->scope ? cc->scope : "/");
    if (!c->principal || !scope)
        return fail(e, 503, "server_busy", "Out of memory.");
    c->principal_type = CUSTOS_CA_PRINCIPAL_WORKLOAD;
    c->rbac.principal = c->principal;
    c->rbac.key_roles = cc->roles ? cc->roles : CUSTOS_ROLE_INFERENCE_USER;
    c->rbac.key_scope = scope;
    return 0;
}

int custos_authn_authenticate(custos_worker_t *w, custos_http_req_t *req, bool accept_subscription_key,
                              custos_caller_t *c, custos_authn_error_t *e)
{
    memset(c, 0, sizeof(*c));
    size_t len = 0;
    bool bearer = false;
    const char *cred = credential(req, accept_subscription_key, &len, &bearer);
    if (cred) {
        /* a bearer value shaped like a JWT is a token; anything else is an API key (OpenAI style) */
        if (bearer && custos_jwt_looks_like_jwt(cred, len))
            return auth_token(w, req, cred, len, c, e);
        return auth_key(w, req, cred, len, c, e);
    }
    if (req->client_cert)
        return auth_cert(w, req, c, e);
    return fail(e, 401, "401", MSG_KEY_401);
}

static const char *caller_claim(void *ud, const char *name)
{
    const custos_caller_t *c = ud;
    for (size_t i = 0; i < c->n_claims; i++)
        if (strcmp(c->claim_names[i], name) == 0)
            return c->claim_values[i];
    return NULL;
}

static const custos_rbac_grant_t *grants_of(const custos_worker_t *w, size_t *n)
{
    *n = 0;
    return w->ident ? custos_idsnap_grants(w->ident, n) : NULL;
}

bool custos_authn_can_call(const custos_worker_t *w, const custos_caller_t *c, const char *deployment)
{
    size_t n;
    const custos_rbac_grant_t *g = grants_of(w, &n);
    return custos_rbac_allowed(&c->rbac, g, n, CUSTOS_RBAC_INFERENCE, deployment);
}

bool custos_authn_can(const custos_worker_t *w, const custos_caller_t *c, custos_rbac_action_t action,
                      const char *deployment)
{
    size_t n;
    const custos_rbac_grant_t *g = grants_of(w, &n);
    return custos_rbac_allowed(&c->rbac, g, n, action, deployment);
}

int custos_authn_authorize(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *c,
                           custos_rbac_action_t action, const char *deployment, custos_authn_error_t *e)
{
    size_t n;
    const custos_rbac_grant_t *g = grants_of(w, &n);
    if (!custos_rbac_allowed(&c->rbac, g, n, action, deployment))
        return fail(e, 401, "PermissionDenied", MSG_DENIED);
    const custos_config_t *cfg = w->cfg;
    if (cfg->identity.n_ca_policies == 0)
        return 0;
    custos_ca_input_t in = {
        .deployment = deployment,
        .principal_type = c->principal_type,
        .has_token = c->kind == CUSTOS_CALLER_TOKEN,
        .mfa = c->mfa,
        .has_iat = c->has_iat,
        .iat_s = c->iat_s,
        .claim = caller_claim,
        .claim_ud = (void *)c,
        .now_s = wall_s(),
    };
    in.has_addr = custos_ip_from_sockaddr(&req->client_addr, &in.addr);
    const char *policy = NULL, *reason = NULL;
    if (custos_ca_evaluate(cfg, &in, &policy, &reason))
        return 0;
    size_t cap = strlen(policy) + strlen(reason) + 80;
    char *msg = custos_arena_alloc(req->arena, cap);
    if (msg)
        snprintf(msg, cap, "Conditional access policy '%s' denied the request: %s.", policy, reason);
    return fail(e, 403, "ConditionalAccessDenied", msg ? msg : "Conditional access policy denied the request.");
}

/* ---------- snapshot runtime ---------- */

typedef struct swap_msg {
    custos_worker_t *w;
    custos_idsnap_t *snap; /* one reference, handed over */
} swap_msg_t;

static void adopt(custos_worker_t *w, custos_idsnap_t *snap)
{
    if (w->ident && custos_idsnap_generation(w->ident) >= custos_idsnap_generation(snap)) {
        custos_idsnap_unref(snap); /* an older build arrived late */
        return;
    }
    custos_idsnap_unref(w->ident);
    w->ident = snap;
}

static void on_swap(custos_loop_t *loop, void *arg)
{
    (void)loop;
    swap_msg_t *m = arg;
    adopt(m->w, m->snap);
    free(m);
}

int custos_gateway_identity_init(custos_gateway_t *gw, char *err, size_t errlen)
{
    if (!gw->ident_ready) {
        if (pthread_mutex_init(&gw->ident_lock, NULL) != 0)
            return CUSTOS_ENOMEM;
        gw->ident_ready = true;
    }
    custos_idsnap_t *s = NULL;
    int rc = custos_idsnap_build(gw->cfg, ++gw->ident_gen, &s, err, errlen);
    if (rc != 0)
        return rc;
    custos_idsnap_unref(gw->ident);
    gw->ident = s;
    return 0;
}

int custos_gateway_identity_reload(custos_gateway_t *gw, custos_worker_t *self)
{
    char err[512];
    pthread_mutex_lock(&gw->ident_lock);
    custos_idsnap_t *s = NULL;
    int rc = custos_idsnap_build(gw->cfg, gw->ident_gen + 1, &s, err, sizeof(err));
    if (rc != 0) {
        pthread_mutex_unlock(&gw->ident_lock);
        CUSTOS_ERROR("identity reload: %s; keeping the running keys and role assignments", err);
        return rc;
    }
    gw->ident_gen++;
    for (unsigned i = 0; i < gw->nworkers; i++) {
        custos_worker_t *w = &gw->workers[i];
        if (w == self) {
            adopt(w, custos_idsnap_ref(s));
            continue;
        }
        if (atomic_load(&gw->draining))
            continue; /* stopping: a posted message might never run (and would leak) */
        swap_msg_t *m = malloc(sizeof(*m));
        if (!m) {
            CUSTOS_ERROR("identity reload: out of memory; worker %u keeps its keys until the next change", i);
            continue;
        }
        m->w = w;
        m->snap = custos_idsnap_ref(s);
        if (!w->loop || custos_loop_post(w->loop, on_swap, m) < 0) {
            custos_idsnap_unref(m->snap);
            free(m);
        }
    }
    custos_idsnap_unref(gw->ident);
    gw->ident = s;
    pthread_mutex_unlock(&gw->ident_lock);
    CUSTOS_INFO("identity: %zu API keys active (generation %llu)", custos_idsnap_key_count(s),
                (unsigned long long)custos_idsnap_generation(s));
    return 0;
}

void custos_gateway_set_config(custos_gateway_t *gw, custos_config_t *nc)
{
    pthread_mutex_lock(&gw->ident_lock);
    custos_config_t *old = gw->cfg;
    gw->cfg = nc;
    pthread_mutex_unlock(&gw->ident_lock);
    custos_config_unref(old);
}

void custos_gateway_identity_dispose(custos_gateway_t *gw)
{
    custos_idsnap_unref(gw->ident);
    gw->ident = NULL;
    if (gw->ident_ready) {
        pthread_mutex_destroy(&gw->ident_lock);
        gw->ident_ready = false;
    }
}
