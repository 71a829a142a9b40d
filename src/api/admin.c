/* SPDX-License-Identifier: Apache-2.0
 * Admin API v1: keys and role assignments over JSON, guarded by RBAC (admin), recorded in the
 * governance log inside the store transaction (an act that cannot be recorded does not happen). */
#include "api/admin.h"
#include "api/authn.h"
#include "audit/govlog.h"
#include "auth/identity.h"
#include "auth/keystore.h"
#include "governance/usecase.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define P_KEYS "/admin/v1/keys"
#define P_RAS "/admin/v1/role-assignments"
#define P_UCS "/admin/v1/use-cases"

bool custos_admin_path(const char *path, size_t len)
{
    return len >= 7 && memcmp(path, "/admin/", 7) == 0;
}

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

static void reply(custos_http_req_t *req, int status, custos_buf_t *b)
{
    custos_http_header_t h[2] = {{"content-type", 12, "application/json", 16}, {"cache-control", 13, "no-store", 8}};
    custos_http_respond(req, status, h, 2, custos_buf_peek(b), custos_buf_size(b));
}

static void error(custos_http_req_t *req, int status, const char *code, const char *msg)
{
    custos_http_respond_error(req, status, code, msg, NULL, 0);
}

/* ---------- JSON writers ---------- */

static int put_str(custos_buf_t *b, const char *s)
{
    return custos_json_append_string(b, s, strlen(s));
}

static int put_roles(custos_buf_t *b, unsigned roles)
{
    int rc = custos_buf_append_lit(b, "[");
    bool first = true;
    for (unsigned bit = 1; !rc && bit <= CUSTOS_ROLE_ADMIN; bit <<= 1) {
        if (!(roles & bit))
            continue;
        rc = first ? 0 : custos_buf_append_lit(b, ",");
        rc = rc ? rc : put_str(b, custos_config_role_name(bit));
        first = false;
    }
    return rc ? rc : custos_buf_append_lit(b, "]");
}

static int put_time(custos_buf_t *b, int64_t t)
{
    return t ? custos_buf_appendf(b, "%lld", (long long)t) : custos_buf_append_lit(b, "null");
}

static int put_key(custos_buf_t *b, const custos_key_record_t *r, const char *plaintext)
{
    int rc = custos_buf_append_lit(b, "{\"id\":");
    rc = rc ? rc : put_str(b, r->id);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"object\":\"api_key\",\"name\":");
    rc = rc ? rc : put_str(b, r->name);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"principal\":");
    rc = rc ? rc : put_str(b, r->principal);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"roles\":");
    rc = rc ? rc : put_roles(b, r->roles);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"scope\":");
    rc = rc ? rc : put_str(b, r->scope);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"created_at\":");
    rc = rc ? rc : put_time(b, r->created_s);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"expires_at\":");
    rc = rc ? rc : put_time(b, r->expires_s);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"revoked_at\":");
    rc = rc ? rc : put_time(b, r->revoked_s);
    if (plaintext) {
        rc = rc ? rc : custos_buf_append_lit(b, ",\"key\":");
        rc = rc ? rc : put_str(b, plaintext);
    }
    return rc ? rc : custos_buf_append_lit(b, "}");
}

static int put_ra(custos_buf_t *b, const char *id, custos_ra_kind_t kind, const char *subject, unsigned role,
                  const char *scope, int64_t created, const char *source)
{
    int rc = custos_buf_append_lit(b, "{\"id\":");
    rc = rc ? rc : (id ? put_str(b, id) : custos_buf_append_lit(b, "null"));
    rc = rc ? rc : custos_buf_append_lit(b, ",\"object\":\"role_assignment\",");
    rc = rc ? rc : put_str(b, custos_keystore_ra_kind_name(kind));
    rc = rc ? rc : custos_buf_append_lit(b, ":");
    rc = rc ? rc : put_str(b, subject);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"role\":");
    rc = rc ? rc : put_str(b, custos_config_role_name(role));
    rc = rc ? rc : custos_buf_append_lit(b, ",\"scope\":");
    rc = rc ? rc : put_str(b, scope);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"created_at\":");
    rc = rc ? rc : put_time(b, created);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"source\":");
    rc = rc ? rc : put_str(b, source);
    return rc ? rc : custos_buf_append_lit(b, "}");
}

/* ---------- governance hook (called inside the store transaction) ---------- */

typedef struct gov {
    const char *actor;
    const char *action;
    custos_buf_t details;
} gov_t;

static int gov_hook(void *ud, const char *id)
{
    gov_t *g = ud;
    int rc = custos_governance_event(g->actor, g->action, id,
                                     custos_buf_size(&g->details) ? custos_buf_peek(&g->details) : NULL);
    if (rc < 0)
        CUSTOS_ERROR("admin: %s not recorded in the governance log (%s); the change was rolled back", g->action,
                     custos_strerror(rc));
    return rc;
}

/* ---------- request bodies ---------- */

static int parse_body(custos_http_req_t *req, json_object **out, const char **why)
{
    *out = NULL;
    if (req->body_len > CUSTOS_ADMIN_MAX_BODY) {
        *why = "The request body is too large.";
        return CUSTOS_ETOOBIG;
    }
    json_object *o = NULL;
    if (custos_json_parse(req->body, req->body_len, 8, &o, NULL, NULL) < 0 || !o ||
        !json_object_is_type(o, json_type_object)) {
        if (o)
            json_object_put(o);
        *why = "The request body must be a JSON object.";
        return CUSTOS_EINVAL;
    }
    *out = o;
    return 0;
}

/* Checks that o has only keys from allowed. */
static bool only_keys(json_object *o, const char *const *allowed)
{
    json_object_object_foreach(o, k, v)
    {
        (void)v;
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(k, *a) == 0;
        if (!ok)
            return false;
    }
    return true;
}

static const char *get_string(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool has(json_object *o, const char *key)
{
    return json_object_object_get_ex(o, key, NULL);
}

/* ---------- keys ---------- */

static void keys_create(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller)
{
    static const char *const allowed[] = {"principal", "roles", "scope", "expires_in_days", "name", NULL};
    json_object *o = NULL, *jr = NULL, *je = NULL;
    const char *why = NULL;
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, "key.create", {0}};
    custos_buf_t b;
    char key[CUSTOS_KEY_TEXT_LEN + 1] = "";
    custos_buf_init(&g.details, 4096);
    custos_buf_init(&b, 0);
    int rc = parse_body(req, &o, &why);
    if (rc != 0) {
        error(req, rc == CUSTOS_ETOOBIG ? 413 : 400, "BadRequest", why);
        goto out;
    }
    custos_key_spec_t spec = {0};
    spec.principal = get_string(o, "principal");
    spec.name = get_string(o, "name");
    spec.scope = get_string(o, "scope");
    if (!only_keys(o, allowed) || !spec.principal || (has(o, "name") && !spec.name) ||
        (has(o, "scope") && !spec.scope) || !json_object_object_get_ex(o, "roles", &jr) ||
        !json_object_is_type(jr, json_type_array) || json_object_array_length(jr) == 0 ||
        json_object_array_length(jr) > 5) {
        error(req, 400, "BadRequest",
              "Expected {\"principal\": string, \"roles\": [role, ...], \"scope\"?: \"/\" or \"/deployments/{name}\", "
              "\"expires_in_days\"?: 1..36500, \"name\"?: string}.");
        goto out;
    }
    for (size_t i = 0; i < json_object_array_length(jr); i++) {
        json_object *x = json_object_array_get_idx(jr, i);
        unsigned r = json_object_is_type(x, json_type_string) ? custos_config_role_parse(json_object_get_string(x)) : 0;
        if (!r) {
            error(req, 400, "BadRequest",
                  "Unknown role: expected inference.user, contributor, reviewer, auditor or admin.");
            goto out;
        }
        spec.roles |= r;
    }
    if (json_object_object_get_ex(o, "expires_in_days", &je)) {
        int64_t d = json_object_is_type(je, json_type_int) ? json_object_get_int64(je) : -1;
        if (d < 1 || d > 36500) {
            error(req, 400, "BadRequest", "expires_in_days must be an integer from 1 to 36500.");
            goto out;
        }
        spec.expires_in_s = d * 86400;
    }
    if (spec.scope && !custos_config_scope_valid(spec.scope)) {
        error(req, 400, "BadRequest", "scope must be \"/\" or \"/deployments/{name}\".");
        goto out;
    }
    /* details: metadata only, never the key */
    rc = custos_buf_append_lit(&g.details, "{\"principal\":");
    rc = rc ? rc : put_str(&g.details, spec.principal);
    rc = rc ? rc : custos_buf_append_lit(&g.details, ",\"roles\":");
    rc = rc ? rc : put_roles(&g.details, spec.roles);
    rc = rc ? rc : custos_buf_append_lit(&g.details, ",\"scope\":");
    rc = rc ? rc : put_str(&g.details, spec.scope ? spec.scope : "/");
    rc = rc ? rc : custos_buf_appendf(&g.details, ",\"expires_in_s\":%lld}", (long long)spec.expires_in_s);
    if (rc != 0) {
        error(req, 400, "BadRequest", "The request is too large.");
        goto out;
    }
    custos_key_record_t rec;
    rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0); /* the store is made at start-up */
    if (rc == 0)
        rc = custos_keystore_key_create(ks, &spec, now_s(), gov_hook, &g, key, &rec);
    if (rc == CUSTOS_EINVAL) {
        error(req, 400, "BadRequest",
              "Invalid key: check principal (1..256 printable bytes) and name ([A-Za-z0-9._-]).");
        goto out;
    }
    if (rc != 0) {
        CUSTOS_ERROR("admin: key.create failed: %s (%s)", custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", "The key could not be created.");
        goto out;
    }
    custos_gateway_identity_reload(w->gw, w);
    if (put_key(&b, &rec, key) != 0) {
        error(req, 500, "InternalServerError", "Out of memory.");
        goto out;
    }
    reply(req, 201, &b);
out:
    OPENSSL_cleanse(key, sizeof(key));
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    custos_buf_dispose(&b);
    custos_buf_dispose(&g.details);
    custos_keystore_close(ks);
    if (o)
        json_object_put(o);
}

static int list_key(void *ud, const custos_key_record_t *r)
{
    custos_buf_t *b = ud;
    int rc = b->len && custos_buf_peek(b)[custos_buf_size(b) - 1] == '}' ? custos_buf_append_lit(b, ",") : 0;
    return rc ? rc : put_key(b, r, NULL);
}

static void keys_list(custos_worker_t *w, custos_http_req_t *req)
{
    custos_keystore_t *ks = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_buf_append_lit(&b, "{\"object\":\"list\",\"data\":[");
    int orc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0);
    if (rc == 0 && orc == 0)
        rc = custos_keystore_key_list(ks, list_key, &b);
    else if (orc != CUSTOS_ENOTFOUND)
        rc = orc;
    rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    if (rc != 0) {
        CUSTOS_ERROR("admin: listing keys failed: %s (%s)", custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", "The keys could not be listed.");
    } else {
        reply(req, 200, &b);
    }
    custos_buf_dispose(&b);
    custos_keystore_close(ks);
}

static void keys_revoke(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *id)
{
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, "key.revoke", {0}};
    custos_buf_init(&g.details, 0);
    int rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0);
    if (rc == 0)
        rc = custos_keystore_key_revoke(ks, id, now_s(), gov_hook, &g);
    if (rc == CUSTOS_ENOTFOUND) {
        error(req, 404, "NotFound", "No active key with this id.");
    } else if (rc != 0) {
        CUSTOS_ERROR("admin: key.revoke failed: %s (%s)", custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", "The key could not be revoked.");
    } else {
        custos_gateway_identity_reload(w->gw, w);
        custos_buf_t b;
        custos_buf_init(&b, 0);
        if (custos_buf_append_lit(&b, "{\"id\":") == 0 && put_str(&b, id) == 0 &&
            custos_buf_append_lit(&b, ",\"object\":\"api_key\",\"revoked\":true}") == 0)
            reply(req, 200, &b);
        else
            error(req, 500, "InternalServerError", "Out of memory.");
        custos_buf_dispose(&b);
    }
    custos_buf_dispose(&g.details);
    custos_keystore_close(ks);
}

/* ---------- role assignments ---------- */

static void ras_create(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller)
{
    static const char *const allowed[] = {"principal", "group", "app_id", "role", "scope", NULL};
    static const char *const subj[] = {"principal", "group", "app_id"};
    json_object *o = NULL;
    const char *why = NULL;
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, "role_assignment.create", {0}};
    custos_buf_t b;
    custos_buf_init(&g.details, 4096);
    custos_buf_init(&b, 0);
    int rc = parse_body(req, &o, &why);
    if (rc != 0) {
        error(req, rc == CUSTOS_ETOOBIG ? 413 : 400, "BadRequest", why);
        goto out;
    }
    custos_ra_record_t rec;
    memset(&rec, 0, sizeof(rec));
    int n = 0;
    const char *subject = NULL;
    for (int k = 0; k < 3; k++) {
        if (has(o, subj[k])) {
            n++;
            rec.kind = (custos_ra_kind_t)k;
            subject = get_string(o, subj[k]);
        }
    }
    const char *role = get_string(o, "role"), *scope = get_string(o, "scope");
    rec.role = role ? custos_config_role_parse(role) : 0;
    if (!only_keys(o, allowed) || n != 1 || !subject || !rec.role || (has(o, "scope") && !scope) ||
        (scope && !custos_config_scope_valid(scope)) || strlen(subject) > CUSTOS_KEYSTORE_MAX_PRINCIPAL) {
        error(req, 400, "BadRequest",
              "Expected exactly one of \"principal\", \"group\", \"app_id\" (string), \"role\" (inference.user, "
              "contributor, reviewer, auditor or admin) and optional \"scope\" (\"/\" or \"/deployments/{name}\").");
        goto out;
    }
    snprintf(rec.subject, sizeof(rec.subject), "%s", subject);
    snprintf(rec.scope, sizeof(rec.scope), "%s", scope ? scope : "/");
    rc = custos_buf_append_lit(&g.details, "{");
    rc = rc ? rc : put_str(&g.details, subj[rec.kind]);
    rc = rc ? rc : custos_buf_append_lit(&g.details, ":");
    rc = rc ? rc : put_str(&g.details, rec.subject);
    rc = rc ? rc : custos_buf_append_lit(&g.details, ",\"role\":");
    rc = rc ? rc : put_str(&g.details, custos_config_role_name(rec.role));
    rc = rc ? rc : custos_buf_append_lit(&g.details, ",\"scope\":");
    rc = rc ? rc : put_str(&g.details, rec.scope);
    rc = rc ? rc : custos_buf_append_lit(&g.details, "}");
    if (rc == 0)
        rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0); /* the store is made at start-up */
    if (rc == 0)
        rc = custos_keystore_ra_create(ks, &rec, now_s(), gov_hook, &g);
    if (rc == CUSTOS_EINVAL) {
        error(req, 400, "BadRequest", "Invalid role assignment: the subject must be 1..256 printable bytes.");
        goto out;
    }
    if (rc != 0) {
        CUSTOS_ERROR("admin: role_assignment.create failed: %s (%s)", custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", "The role assignment could not be created.");
        goto out;
    }
    custos_gateway_identity_reload(w->gw, w);
    if (put_ra(&b, rec.id, rec.kind, rec.subject, rec.role, rec.scope, rec.created_s, "store") != 0) {
        error(req, 500, "InternalServerError", "Out of memory.");
        goto out;
    }
    reply(req, 201, &b);
out:
    custos_buf_dispose(&b);
    custos_buf_dispose(&g.details);
    custos_keystore_close(ks);
    if (o)
        json_object_put(o);
}

static int list_ra(void *ud, const custos_ra_record_t *r)
{
    custos_buf_t *b = ud;
    int rc = custos_buf_peek(b)[custos_buf_size(b) - 1] == '}' ? custos_buf_append_lit(b, ",") : 0;
    return rc ? rc : put_ra(b, r->id, r->kind, r->subject, r->role, r->scope, r->created_s, "store");
}

static void ras_list(custos_worker_t *w, custos_http_req_t *req)
{
    custos_keystore_t *ks = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    const custos_identity_config_t *id = &w->cfg->identity;
    int rc = custos_buf_append_lit(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; !rc && i < id->n_role_assignments; i++) {
        const custos_role_assignment_config_t *a = &id->role_assignments[i];
        rc = i ? custos_buf_append_lit(&b, ",") : 0;
        rc = rc ? rc : put_ra(&b, NULL, a->kind, a->subject, a->role, a->scope, 0, "config");
    }
    int orc = rc ? rc : custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0);
    if (rc == 0 && orc == 0)
        rc = custos_keystore_ra_list(ks, list_ra, &b);
    else if (rc == 0 && orc != CUSTOS_ENOTFOUND)
        rc = orc;
    rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    if (rc != 0) {
        CUSTOS_ERROR("admin: listing role assignments failed: %s (%s)", custos_strerror(rc),
                     custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", "The role assignments could not be listed.");
    } else {
        reply(req, 200, &b);
    }
    custos_buf_dispose(&b);
    custos_keystore_close(ks);
}

static void ras_delete(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *id)
{
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, "role_assignment.delete", {0}};
    custos_buf_init(&g.details, 0);
    int rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0);
    if (rc == 0)
        rc = custos_keystore_ra_delete(ks, id, gov_hook, &g);
    if (rc == CUSTOS_ENOTFOUND) {
        error(req, 404, "NotFound",
              "No stored role assignment with this id (assignments from the config file are "
              "changed there).");
    } else if (rc != 0) {
        CUSTOS_ERROR("admin: role_assignment.delete failed: %s (%s)", custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", "The role assignment could not be deleted.");
    } else {
        custos_gateway_identity_reload(w->gw, w);
        custos_buf_t b;
        custos_buf_init(&b, 0);
        if (custos_buf_append_lit(&b, "{\"id\":") == 0 && put_str(&b, id) == 0 &&
            custos_buf_append_lit(&b, ",\"object\":\"role_assignment\",\"deleted\":true}") == 0)
            reply(req, 200, &b);
        else
            error(req, 500, "InternalServerError", "Out of memory.");
        custos_buf_dispose(&b);
    }
    custos_buf_dispose(&g.details);
    custos_keystore_close(ks);
}

/* ---------- use cases (read-only: the registry is config; docs/reviews.md) ---------- */

static void use_cases_get(custos_worker_t *w, custos_http_req_t *req, const char *id, size_t id_len)
{
    const custos_config_t *cfg = w->cfg;
    int64_t t = now_s();
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = 0;
    if (id) {
        const custos_use_case_config_t *u = custos_usecase_find(cfg, id, id_len);
        if (!u) {
            custos_buf_dispose(&b);
            error(req, 404, "NotFound", "No use case with this id.");
            return;
        }
        rc = custos_usecase_write_json(&b, u, t);
    } else {
        rc = custos_buf_append_lit(&b, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; !rc && i < cfg->n_use_cases; i++) {
            rc = i ? custos_buf_append_lit(&b, ",") : 0;
            rc = rc ? rc : custos_usecase_write_json(&b, &cfg->use_cases[i], t);
        }
        rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    }
    if (rc != 0)
        error(req, 500, "InternalServerError", "Out of memory.");
    else
        reply(req, 200, &b);
    custos_buf_dispose(&b);
}

/* ---------- routing ---------- */

static bool is(const char *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* path == prefix "/" {id} with id [A-Za-z0-9_]{1,19}: copies id. */
static bool with_id(const char *p, size_t n, const char *prefix, char id[CUSTOS_KEYSTORE_ID_LEN])
{
    size_t pl = strlen(prefix);
    if (n <= pl + 1 || memcmp(p, prefix, pl) != 0 || p[pl] != '/' || n - pl - 1 >= CUSTOS_KEYSTORE_ID_LEN)
        return false;
    for (size_t i = pl + 1; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    memcpy(id, p + pl + 1, n - pl - 1);
    id[n - pl - 1] = 0;
    return true;
}

static void not_allowed(custos_http_req_t *req, const char *allow)
{
    custos_http_header_t h[1] = {{"allow", 5, allow, strlen(allow)}};
    custos_http_respond_error(req, 405, "405", "Method not allowed for this route.", h, 1);
}

void custos_admin_handle(custos_worker_t *w, custos_http_req_t *req)
{
    custos_caller_t caller;
    custos_authn_error_t e;
    if (custos_authn_authenticate(w, req, false, &caller, &e) < 0 ||
        custos_authn_authorize(w, req, &caller, CUSTOS_RBAC_ADMIN, NULL, &e) < 0) {
        error(req, e.status, e.code, e.message);
        return;
    }
    const char *p = req->path, *m = req->method;
    size_t n = req->path_len;
    char id[CUSTOS_KEYSTORE_ID_LEN];
    bool post = strcmp(m, "POST") == 0, get = strcmp(m, "GET") == 0, del = strcmp(m, "DELETE") == 0;
    if (is(p, n, P_KEYS)) {
        if (post)
            keys_create(w, req, &caller);
        else if (get)
            keys_list(w, req);
        else
            not_allowed(req, "GET, POST");
    } else if (is(p, n, P_RAS)) {
        if (post)
            ras_create(w, req, &caller);
        else if (get)
            ras_list(w, req);
        else
            not_allowed(req, "GET, POST");
    } else if (with_id(p, n, P_KEYS, id)) {
        if (del)
            keys_revoke(w, req, &caller, id);
        else
            not_allowed(req, "DELETE");
    } else if (with_id(p, n, P_RAS, id)) {
        if (del)
            ras_delete(w, req, &caller, id);
        else
            not_allowed(req, "DELETE");
    } else if (is(p, n, P_UCS) || (n > sizeof(P_UCS) && memcmp(p, P_UCS "/", sizeof(P_UCS)) == 0)) {
        if (get)
            use_cases_get(w, req, n > sizeof(P_UCS) ? p + sizeof(P_UCS) : NULL,
                          n > sizeof(P_UCS) ? n - sizeof(P_UCS) : 0);
        else
            not_allowed(req, "GET");
    } else {
        error(req, 404, "404", "Resource not found");
    }
}
