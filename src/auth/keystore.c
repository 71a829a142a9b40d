/* SPDX-License-Identifier: Apache-2.0
 * API keys and role assignments in the store (store/store.h: SQLite or PostgreSQL): one table each; keys
 * stored as SHA-256 digests only. */
#include "auth/keystore.h"
#include "auth/apikey.h"
#include "util/err.h"

#include "store/store.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct custos_keystore {
    custos_store_t *st;
};

static int wrap_store(custos_store_t *st, custos_keystore_t **out)
{
    custos_keystore_t *ks = calloc(1, sizeof(*ks));
    if (!ks) {
        custos_store_close(st);
        return CUSTOS_ENOMEM;
    }
    ks->st = st;
    *out = ks;
    return 0;
}

int custos_keystore_open(const char *path, bool create, custos_keystore_t **out)
{
    *out = NULL;
    if (!path)
        return CUSTOS_EINVAL;
    custos_store_opts_t o = {.driver = CUSTOS_STORE_SQLITE, .path = path, .create = create};
    custos_store_t *st = NULL;
    int rc = custos_store_open(&o, &st, NULL, 0);
    if (rc != 0)
        return rc == CUSTOS_ENOTFOUND || rc == CUSTOS_ENOMEM ? rc : CUSTOS_EIO;
    return wrap_store(st, out);
}

int custos_keystore_open_config(const custos_storage_config_t *sc, bool create, custos_keystore_t **out, char *err,
                                size_t errlen)
{
    *out = NULL;
    custos_store_t *st = NULL;
    int rc = custos_store_open_config(sc, create, &st, err, errlen);
    if (rc != 0)
        return rc == CUSTOS_ENOTFOUND || rc == CUSTOS_ENOMEM || rc == CUSTOS_ETIMEDOUT ? rc : CUSTOS_EIO;
    return wrap_store(st, out);
}

void custos_keystore_close(custos_keystore_t *ks)
{
    if (!ks)
        return;
    custos_store_close(ks->st);
    free(ks);
}

static int new_id(const char *prefix, char out[CUSTOS_KEYSTORE_ID_LEN])
{
    unsigned char r[8];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return CUSTOS_EIO;
    snprintf(out, CUSTOS_KEYSTORE_ID_LEN, "%s%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
    return 0;
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t j = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[j++] = A[v >> 18];
        out[j++] = A[(v >> 12) & 63];
        out[j++] = A[(v >> 6) & 63];
        out[j++] = A[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[j++] = A[v >> 18];
        out[j++] = A[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[j++] = A[v >> 18];
        out[j++] = A[(v >> 12) & 63];
        out[j++] = A[(v >> 6) & 63];
    }
    out[j] = 0;
}

static bool valid_key_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

static bool valid_subject(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CUSTOS_KEYSTORE_MAX_PRINCIPAL)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
            return false;
    return true;
}

static int begin(custos_keystore_t *ks)
{
    int rc = custos_store_begin(ks->st);
    return rc == 0 || rc == CUSTOS_ETIMEDOUT ? rc : CUSTOS_EIO; /* locked past the timeout: say so */
}

/* Bumps the store's change counter (replicas notice), runs hook, then commits; rolls back on any failure. */
static int finish(custos_keystore_t *ks, int rc, custos_keystore_commit_fn hook, void *ud, const char *id)
{
    if (rc == 0 && custos_store_bump(ks->st) != 0)
        rc = CUSTOS_EIO;
    if (rc == 0 && hook)
        rc = hook(ud, id);
    if (rc == 0 && custos_store_commit(ks->st) != 0)
        rc = CUSTOS_EIO;
    if (rc != 0)
        custos_store_rollback(ks->st);
    return rc;
}

static void copy_text(char *dst, size_t cap, const custos_sv_t *v)
{
    snprintf(dst, cap, "%s", v->type == CUSTOS_SV_TEXT ? (const char *)v->p : "");
}

int custos_keystore_key_create(custos_keystore_t *ks, const custos_key_spec_t *spec, int64_t now_s,
                               custos_keystore_commit_fn hook, void *hook_ud, char key_out[CUSTOS_KEY_TEXT_LEN + 1],
                               custos_key_record_t *rec)
{
    custos_key_record_t r;
    unsigned char rnd[32];
    int rc;
    memset(&r, 0, sizeof(r));
    key_out[0] = 0;
    const char *scope = spec->scope ? spec->scope : "/";
    if (!valid_subject(spec->principal) || spec->roles == 0 || (spec->roles & ~31u) ||
        !custos_config_scope_valid(scope) || spec->expires_in_s < 0 ||
        spec->expires_in_s > (int64_t)100 * 365 * 86400 || (spec->name && !valid_key_name(spec->name)))
        return CUSTOS_EINVAL;
    if ((rc = new_id("key_", r.id)) != 0)
        return rc;
    snprintf(r.name, sizeof(r.name), "%s", spec->name ? spec->name : r.id);
    snprintf(r.principal, sizeof(r.principal), "%s", spec->principal);
    snprintf(r.scope, sizeof(r.scope), "%s", scope);
    r.roles = spec->roles;
    r.created_s = now_s;
    r.expires_s = spec->expires_in_s ? now_s + spec->expires_in_s : 0;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return CUSTOS_EIO;
    memcpy(key_out, CUSTOS_KEY_PREFIX, 10);
    b64url(rnd, sizeof(rnd), key_out + 10);
    OPENSSL_cleanse(rnd, sizeof(rnd));
    if ((rc = custos_auth_sha256(key_out, CUSTOS_KEY_TEXT_LEN, r.sha256)) != 0)
        goto out;
    if ((rc = begin(ks)) != 0)
        goto out;
    custos_sv_t p[8] = {custos_sv_text(r.id),       custos_sv_text(r.name),    custos_sv_text(r.principal),
                        custos_sv_int(r.roles),     custos_sv_text(r.scope),   custos_sv_blob(r.sha256, 32),
                        custos_sv_int(r.created_s), custos_sv_int(r.expires_s)};
    rc = custos_store_exec(ks->st,
                           "INSERT INTO api_keys(id,name,principal,roles,scope,sha256,created,expires,revoked) "
                           "VALUES(?,?,?,?,?,?,?,?,0)",
                           p, 8, NULL, NULL, NULL);
    rc = finish(ks, rc == 0 ? 0 : CUSTOS_EIO, hook, hook_ud, r.id);
out:
    if (rc != 0)
        OPENSSL_cleanse(key_out, CUSTOS_KEY_TEXT_LEN + 1);
    else if (rec)
        *rec = r;
    return rc;
}

static void key_from_row(const custos_sv_t *c, custos_key_record_t *r)
{
    memset(r, 0, sizeof(*r));
    copy_text(r->id, sizeof(r->id), &c[0]);
    copy_text(r->name, sizeof(r->name), &c[1]);
    copy_text(r->principal, sizeof(r->principal), &c[2]);
    r->roles = (unsigned)c[3].i & 31u;
    copy_text(r->scope, sizeof(r->scope), &c[4]);
    if (c[5].type == CUSTOS_SV_BLOB && c[5].n == 32)
        memcpy(r->sha256, c[5].p, 32);
    r->created_s = c[6].i;
    r->expires_s = c[7].i;
    r->revoked_s = c[8].i;
}

#define KEY_COLS "id,name,principal,roles,scope,sha256,created,expires,revoked"

typedef struct {
    int (*fn)(void *ud, const custos_key_record_t *r);
    void *ud;
    size_t rows;
    custos_key_record_t r;
} key_list_ctx_t;

static int key_row(void *ud, const custos_sv_t *c, size_t n)
{
    key_list_ctx_t *k = ud;
    if (n != 9)
        return CUSTOS_EIO;
    if (++k->rows > CUSTOS_KEYSTORE_MAX_ROWS)
        return CUSTOS_ETOOBIG;
    key_from_row(c, &k->r);
    return k->fn(k->ud, &k->r);
}

int custos_keystore_key_list(custos_keystore_t *ks, int (*fn)(void *ud, const custos_key_record_t *r), void *ud)
{
    key_list_ctx_t k = {.fn = fn, .ud = ud};
    int rc = custos_store_exec(ks->st, "SELECT " KEY_COLS " FROM api_keys ORDER BY created, {SEQ}", NULL, 0, key_row,
                               &k, NULL);
    OPENSSL_cleanse(&k.r, sizeof(k.r));
    return rc;
}

static int key_one(void *ud, const custos_sv_t *c, size_t n)
{
    key_list_ctx_t *k = ud;
    if (n != 9)
        return CUSTOS_EIO;
    k->rows++;
    key_from_row(c, &k->r);
    return 0;
}

int custos_keystore_key_find(custos_keystore_t *ks, const unsigned char d[32], custos_key_record_t *rec)
{
    key_list_ctx_t k = {0};
    custos_sv_t p = custos_sv_blob(d, 32);
    int rc = custos_store_exec(ks->st, "SELECT " KEY_COLS " FROM api_keys WHERE sha256 = ?", &p, 1, key_one, &k, NULL);
    if (rc == 0 && k.rows == 0)
        rc = CUSTOS_ENOTFOUND;
    else if (rc == 0)
        *rec = k.r;
    else
        rc = CUSTOS_EIO;
    OPENSSL_cleanse(&k.r, sizeof(k.r));
    return rc;
}

/* Runs one UPDATE/DELETE with a text id (and optional int) inside a transaction; 0 rows -> ENOTFOUND. */
static int change_one(custos_keystore_t *ks, const char *sql, const char *id, int64_t arg, bool has_arg,
                      custos_keystore_commit_fn hook, void *ud)
{
    int rc = begin(ks);
    if (rc != 0)
        return rc;
    custos_sv_t p[2];
    size_t n = 0;
    if (has_arg)
        p[n++] = custos_sv_int(arg);
    p[n++] = custos_sv_text(id);
    int64_t changed = 0;
    rc = custos_store_exec(ks->st, sql, p, n, NULL, NULL, &changed) == 0 ? 0 : CUSTOS_EIO;
    if (rc == 0 && changed == 0)
        rc = CUSTOS_ENOTFOUND;
    return finish(ks, rc, hook, ud, id);
}

int custos_keystore_key_revoke(custos_keystore_t *ks, const char *id, int64_t now_s, custos_keystore_commit_fn hook,
                               void *hook_ud)
{
    if (!id || strlen(id) >= CUSTOS_KEYSTORE_ID_LEN)
        return CUSTOS_ENOTFOUND;
    return change_one(ks, "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked = 0", id, now_s > 0 ? now_s : 1,
                      true, hook, hook_ud);
}

int custos_keystore_ra_create(custos_keystore_t *ks, custos_ra_record_t *rec, int64_t now_s,
                              custos_keystore_commit_fn hook, void *hook_ud)
{
    if (!valid_subject(rec->subject) || (rec->role & (rec->role - 1)) || rec->role == 0 || rec->role > 16 ||
        !custos_config_scope_valid(rec->scope) || (unsigned)rec->kind > CUSTOS_RA_APP_ID)
        return CUSTOS_EINVAL;
    int rc = new_id("ra_", rec->id);
    if (rc != 0)
        return rc;
    rec->created_s = now_s;
    if ((rc = begin(ks)) != 0)
        return rc;
    custos_sv_t p[6] = {custos_sv_text(rec->id),  custos_sv_int((int64_t)rec->kind), custos_sv_text(rec->subject),
                        custos_sv_int(rec->role), custos_sv_text(rec->scope),        custos_sv_int(now_s)};
    rc = custos_store_exec(ks->st,
                           "INSERT INTO role_assignments(id,kind,subject,role,scope,created) VALUES(?,?,?,?,?,?)", p, 6,
                           NULL, NULL, NULL);
    return finish(ks, rc == 0 ? 0 : CUSTOS_EIO, hook, hook_ud, rec->id);
}

typedef struct {
    int (*fn)(void *ud, const custos_ra_record_t *r);
    void *ud;
    size_t rows;
} ra_list_ctx_t;

static int ra_row(void *ud, const custos_sv_t *c, size_t n)
{
    ra_list_ctx_t *k = ud;
    custos_ra_record_t r;
    if (n != 6)
        return CUSTOS_EIO;
    if (++k->rows > CUSTOS_KEYSTORE_MAX_ROWS)
        return CUSTOS_ETOOBIG;
    memset(&r, 0, sizeof(r));
    copy_text(r.id, sizeof(r.id), &c[0]);
    int64_t kind = c[1].i;
    r.kind = (kind >= 0 && kind <= CUSTOS_RA_APP_ID) ? (custos_ra_kind_t)kind : CUSTOS_RA_PRINCIPAL;
    copy_text(r.subject, sizeof(r.subject), &c[2]);
    r.role = (unsigned)c[3].i & 31u;
    copy_text(r.scope, sizeof(r.scope), &c[4]);
    r.created_s = c[5].i;
    return k->fn(k->ud, &r);
}

int custos_keystore_ra_list(custos_keystore_t *ks, int (*fn)(void *ud, const custos_ra_record_t *r), void *ud)
{
    ra_list_ctx_t k = {.fn = fn, .ud = ud};
    return custos_store_exec(ks->st,
                             "SELECT id,kind,subject,role,scope,created FROM role_assignments ORDER BY created, {SEQ}",
                             NULL, 0, ra_row, &k, NULL);
}

int custos_keystore_ra_delete(custos_keystore_t *ks, const char *id, custos_keystore_commit_fn hook, void *hook_ud)
{
    if (!id || strlen(id) >= CUSTOS_KEYSTORE_ID_LEN)
        return CUSTOS_ENOTFOUND;
    return change_one(ks, "DELETE FROM role_assignments WHERE id = ?", id, 0, false, hook, hook_ud);
}

custos_store_t *custos_keystore_store(custos_keystore_t *ks)
{
    return ks->st;
}

const char *custos_keystore_errmsg(const custos_keystore_t *ks)
{
    return ks ? custos_store_errmsg(ks->st) : "no store";
}

const char *custos_keystore_ra_kind_name(custos_ra_kind_t k)
{
    switch (k) {
    case CUSTOS_RA_GROUP:
        return "group";
    case CUSTOS_RA_APP_ID:
        return "app_id";
    default:
        return "principal";
    }
}
