/* SPDX-License-Identifier: Apache-2.0
 * Admin API v1: keys and role assignments over JSON, guarded by RBAC (admin), recorded in the
 * governance log inside the store transaction (an act that cannot be recorded does not happen). */
#include "api/admin.h"
#include "api/authn.h"
#include "api/json_out.h"
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

static int put_roles(custos_buf_t *b, unsigned roles)
{
    int rc = custos_buf_append_lit(b, "[");
    bool first = true;
    for (unsigned bit = 1; !rc && bit <= CUSTOS_ROLE_ADMIN; bit <<= 1) {
        if (!(roles & bit))
            continue;
        rc = first ? 0 : custos_buf_append_lit(b, ",");
        rc = rc ? rc : custos_api_put_str(b, custos_config_role_name(bit));
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
    int rc = custos_api_put_member(b, "{\"id\":", r->id);
    rc = rc ? rc : custos_api_put_member(b, ",\"object\":\"api_key\",\"name\":", r->name);
    rc = rc ? rc : custos_api_put_member(b, ",\"principal\":", r->principal);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"roles\":");
    rc = rc ? rc : put_roles(b, r->roles);
    rc = rc ? rc : custos_api_put_member(b, ",\"scope\":", r->scope);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"created_at\":");
    rc = rc ? rc : put_time(b, r->created_s);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"expires_at\":");
    rc = rc ? rc : put_time(b, r->expires_s);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"revoked_at\":");
    rc = rc ? rc : put_time(b, r->revoked_s);
    if (plaintext)
        rc = rc ? rc : custos_api_put_member(b, ",\"key\":", plaintext);
    return rc ? rc : custos_buf_append_lit(b, "}");
}

static int put_ra(custos_buf_t *b, const char *id, custos_ra_kind_t kind, const char *subject, unsigned role,
                  const char *scope, int64_t created, const char *source)
{
    int rc = custos_buf_append_lit(b, "{\"id\":");
    rc = rc ? rc : (id ? custos_api_put_str(b, id) : custos_buf_append_lit(b, "null"));
    rc = rc ? rc : custos_api_put_member(b, ",\"object\":\"role_assignment\",", custos_keystore_ra_kind_name(kind));
    rc = rc ? rc : custos_api_put_member(b, ":", subject);
    rc = rc ? rc : custos_api_put_member(b, ",\"role\":", custos_config_role_name(role));
    rc = rc ? rc : custos_api_put_member(b, ",\"scope\":", scope);
    rc = rc ? rc : custos_buf_append_lit(b, ",\"created_at\":");
    rc = rc ? rc : put_time(b, created);
    rc = rc ? rc : custos_api_put_member(b, ",\"source\":", source);
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

/* An admin act on the keystore and how its outcome is answered. */
typedef struct act {
    const char *action; /* governance action, also named in the log line of a failure */
    int refused_rc;     /* the store refusing the request: CUSTOS_EINVAL → 400 BadRequest, CUSTOS_ENOTFOUND → 404 */
    const char *refused, *failed; /* messages of that refusal and of any other failure (500) */
} act_t;

static const act_t KEY_CREATE = {"key.create", CUSTOS_EINVAL,
                                 "Invalid key: check principal (1..256 printable bytes) and name ([A-Za-z0-9._-]).",
                                 "The key could not be created."};
static const act_t KEY_REVOKE = {"key.revoke", CUSTOS_ENOTFOUND, "No active key with this id.",
                                 "The key could not be revoked."};
static const act_t RA_CREATE = {"role_assignment.create", CUSTOS_EINVAL,
                                "Invalid role assignment: the subject must be 1..256 printable bytes.",
                                "The role assignment could not be created."};
static const act_t RA_DELETE = {"role_assignment.delete", CUSTOS_ENOTFOUND,
                                "No stored role assignment with this id (assignments from the config file are "
                                "changed there).",
                                "The role assignment could not be deleted."};

/* After the keystore write of act (rc: its outcome, ks: the store, NULL when it did not open): answers a refusal or
 * a failure and returns false; on success reloads the identity snapshot (every worker) and returns true. */
static bool act_done(custos_worker_t *w, custos_http_req_t *req, const act_t *act, int rc, custos_keystore_t *ks)
{
    if (rc != 0 && rc == act->refused_rc) {
        if (rc == CUSTOS_ENOTFOUND)
            error(req, 404, "NotFound", act->refused);
        else
            error(req, 400, "BadRequest", act->refused);
        return false;
    }
    if (rc != 0) {
        CUSTOS_ERROR("admin: %s failed: %s (%s)", act->action, custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", act->failed);
        return false;
    }
    custos_gateway_identity_reload(w->gw, w);
    return true;
}

/* Answers status with the JSON built in b, or 500 when building it failed (brc != 0). */
static void reply_built(custos_http_req_t *req, int status, custos_buf_t *b, int brc)
{
    if (brc != 0)
        error(req, 500, "InternalServerError", "Out of memory.");
    else
        reply(req, status, b);
}

/* ---------- request bodies ---------- */

/* The body as a JSON object (the caller puts it), or NULL after answering 413 or 400. */
static json_object *body_object(custos_http_req_t *req)
{
    if (req->body_len > CUSTOS_ADMIN_MAX_BODY) {
        error(req, 413, "BadRequest", "The request body is too large.");
        return NULL;
    }
    json_object *o = NULL;
    if (custos_json_parse(req->body, req->body_len, 8, &o, NULL, NULL) < 0 || !o ||
        !json_object_is_type(o, json_type_object)) {
        if (o)
            json_object_put(o);
        error(req, 400, "BadRequest", "The request body must be a JSON object.");
        return NULL;
    }
    return o;
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
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, KEY_CREATE.action, {0}};
    custos_buf_t b;
    char key[CUSTOS_KEY_TEXT_LEN + 1] = "";
    custos_buf_init(&g.details, 4096);
    custos_buf_init(&b, 0);
    int rc = 0;
    if ((o = body_object(req)) == NULL)
        goto out;
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
    rc = custos_api_put_member(&g.details, "{\"principal\":", spec.principal);
    rc = rc ? rc : custos_buf_append_lit(&g.details, ",\"roles\":");
    rc = rc ? rc : put_roles(&g.details, spec.roles);
    rc = rc ? rc : custos_api_put_member(&g.details, ",\"scope\":", spec.scope ? spec.scope : "/");
    rc = rc ? rc : custos_buf_appendf(&g.details, ",\"expires_in_s\":%lld}", (long long)spec.expires_in_s);
    if (rc != 0) {
        error(req, 400, "BadRequest", "The request is too large.");
        goto out;
    }
    custos_key_record_t rec;
    rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0); /* the store is made at start-up */
    if (rc == 0)
        rc = custos_keystore_key_create(ks, &spec, now_s(), gov_hook, &g, key, &rec);
    if (act_done(w, req, &KEY_CREATE, rc, ks))
        reply_built(req, 201, &b, put_key(&b, &rec, key));
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

/* Closes the list object built in b ({"object":"list","data":[...) and answers 200, or 500 (failed, logged as "listing
 * what") when rc or the closing failed. */
static void reply_list(custos_http_req_t *req, int rc, custos_buf_t *b, custos_keystore_t *ks, const char *what,
                       const char *failed)
{
    rc = rc ? rc : custos_buf_append_lit(b, "]}");
    if (rc != 0) {
        CUSTOS_ERROR("admin: listing %s failed: %s (%s)", what, custos_strerror(rc), custos_keystore_errmsg(ks));
        error(req, 500, "InternalServerError", failed);
    } else {
        reply(req, 200, b);
    }
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
    reply_list(req, rc, &b, ks, "keys", "The keys could not be listed.");
    custos_buf_dispose(&b);
    custos_keystore_close(ks);
}

static int key_revoke(custos_keystore_t *ks, const char *id, gov_t *g)
{
    return custos_keystore_key_revoke(ks, id, now_s(), gov_hook, g);
}

static int ra_delete(custos_keystore_t *ks, const char *id, gov_t *g)
{
    return custos_keystore_ra_delete(ks, id, gov_hook, g);
}

/* DELETE {prefix}/{id}: remove(ks, id, g) as act; answers 200 {"id":ID + done (the rest of the object). */
static void remove_by_id(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *id,
                         const act_t *act, int (*remove)(custos_keystore_t *ks, const char *id, gov_t *g),
                         const char *done)
{
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, act->action, {0}};
    custos_buf_init(&g.details, 0);
    int rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0);
    if (rc == 0)
        rc = remove(ks, id, &g);
    if (act_done(w, req, act, rc, ks)) {
        custos_buf_t b;
        custos_buf_init(&b, 0);
        int brc = custos_api_put_member(&b, "{\"id\":", id);
        brc = brc ? brc : custos_buf_append_str(&b, done);
        reply_built(req, 200, &b, brc);
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
    custos_keystore_t *ks = NULL;
    gov_t g = {caller->principal, RA_CREATE.action, {0}};
    custos_buf_t b;
    custos_buf_init(&g.details, 4096);
    custos_buf_init(&b, 0);
    int rc = 0;
    if ((o = body_object(req)) == NULL)
        goto out;
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
    rc = rc ? rc : custos_api_put_str(&g.details, subj[rec.kind]);
    rc = rc ? rc : custos_api_put_member(&g.details, ":", rec.subject);
    rc = rc ? rc : custos_api_put_member(&g.details, ",\"role\":", custos_config_role_name(rec.role));
    rc = rc ? rc : custos_api_put_member(&g.details, ",\"scope\":", rec.scope);
    rc = rc ? rc : custos_buf_append_lit(&g.details, "}");
    if (rc == 0)
        rc = custos_keystore_open_config(&w->cfg->storage, false, &ks, NULL, 0); /* the store is made at start-up */
    if (rc == 0)
        rc = custos_keystore_ra_create(ks, &rec, now_s(), gov_hook, &g);
    if (act_done(w, req, &RA_CREATE, rc, ks))
        reply_built(req, 201, &b,
                    put_ra(&b, rec.id, rec.kind, rec.subject, rec.role, rec.scope, rec.created_s, "store"));
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
    reply_list(req, rc, &b, ks, "role assignments", "The role assignments could not be listed.");
    custos_buf_dispose(&b);
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
    reply_built(req, 200, &b, rc);
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
            remove_by_id(w, req, &caller, id, &KEY_REVOKE, key_revoke, ",\"object\":\"api_key\",\"revoked\":true}");
        else
            not_allowed(req, "DELETE");
    } else if (with_id(p, n, P_RAS, id)) {
        if (del)
            remove_by_id(w, req, &caller, id, &RA_DELETE, ra_delete,
                         ",\"object\":\"role_assignment\",\"deleted\":true}");
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
