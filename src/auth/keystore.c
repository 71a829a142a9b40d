/* SPDX-License-Identifier: Apache-2.0
 * API keys and role assignments in SQLite: one table each; keys stored as SHA-256 digests only. */
#include "auth/keystore.h"
#include "auth/apikey.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct custos_keystore {
    sqlite3 *db;
};

static const char SCHEMA[] = "CREATE TABLE IF NOT EXISTS api_keys("
                             " id TEXT PRIMARY KEY, name TEXT NOT NULL, principal TEXT NOT NULL,"
                             " roles INTEGER NOT NULL, scope TEXT NOT NULL, sha256 BLOB NOT NULL UNIQUE,"
                             " created INTEGER NOT NULL, expires INTEGER NOT NULL DEFAULT 0,"
                             " revoked INTEGER NOT NULL DEFAULT 0);"
                             "CREATE TABLE IF NOT EXISTS role_assignments("
                             " id TEXT PRIMARY KEY, kind INTEGER NOT NULL, subject TEXT NOT NULL,"
                             " role INTEGER NOT NULL, scope TEXT NOT NULL, created INTEGER NOT NULL);";

int custos_keystore_open(const char *path, bool create, custos_keystore_t **out)
{
    *out = NULL;
    if (!path)
        return CUSTOS_EINVAL;
    if (access(path, F_OK) != 0) {
        if (!create)
            return CUSTOS_ENOTFOUND;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return CUSTOS_EIO;
        if (fd >= 0)
            close(fd);
    }
    custos_keystore_t *ks = calloc(1, sizeof(*ks));
    if (!ks)
        return CUSTOS_ENOMEM;
    int rc = sqlite3_open_v2(path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(ks->db, 5000);
    if (sqlite3_exec(ks->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(ks->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    *out = ks;
    return 0;
fail:
    custos_keystore_close(ks);
    return rc == SQLITE_NOMEM ? CUSTOS_ENOMEM : CUSTOS_EIO;
}

void custos_keystore_close(custos_keystore_t *ks)
{
    if (!ks)
        return;
    sqlite3_close(ks->db);
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
    return sqlite3_exec(ks->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : CUSTOS_EIO;
}

/* Runs hook, then commits; rolls back on any failure. */
static int finish(custos_keystore_t *ks, int rc, custos_keystore_commit_fn hook, void *ud, const char *id)
{
    if (rc == 0 && hook)
        rc = hook(ud, id);
    if (rc == 0 && sqlite3_exec(ks->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = CUSTOS_EIO;
    if (rc != 0)
        sqlite3_exec(ks->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

int custos_keystore_key_create(custos_keystore_t *ks, const custos_key_spec_t *spec, int64_t now_s,
                               custos_keystore_commit_fn hook, void *hook_ud, char key_out[CUSTOS_KEY_TEXT_LEN + 1],
                               custos_key_record_t *rec)
{
    custos_key_record_t r;
    unsigned char rnd[32];
    sqlite3_stmt *st = NULL;
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
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO api_keys(id,name,principal,roles,scope,sha256,created,expires,revoked) "
                           "VALUES(?,?,?,?,?,?,?,?,0)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = finish(ks, CUSTOS_EIO, NULL, NULL, NULL);
        goto out;
    }
    sqlite3_bind_text(st, 1, r.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r.name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r.principal, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r.roles);
    sqlite3_bind_text(st, 5, r.scope, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, r.sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, r.created_s);
    sqlite3_bind_int64(st, 8, r.expires_s);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CUSTOS_EIO;
    sqlite3_finalize(st);
    rc = finish(ks, rc, hook, hook_ud, r.id);
out:
    if (rc != 0)
        OPENSSL_cleanse(key_out, CUSTOS_KEY_TEXT_LEN + 1);
    else if (rec)
        *rec = r;
    return rc;
}

static void key_from_row(sqlite3_stmt *st, custos_key_record_t *r)
{
    memset(r, 0, sizeof(*r));
    copy_text(r->id, sizeof(r->id), sqlite3_column_text(st, 0));
    copy_text(r->name, sizeof(r->name), sqlite3_column_text(st, 1));
    copy_text(r->principal, sizeof(r->principal), sqlite3_column_text(st, 2));
    r->roles = (unsigned)sqlite3_column_int64(st, 3) & 31u;
    copy_text(r->scope, sizeof(r->scope), sqlite3_column_text(st, 4));
    if (sqlite3_column_bytes(st, 5) == 32)
        memcpy(r->sha256, sqlite3_column_blob(st, 5), 32);
    r->created_s = sqlite3_column_int64(st, 6);
    r->expires_s = sqlite3_column_int64(st, 7);
    r->revoked_s = sqlite3_column_int64(st, 8);
}

#define KEY_COLS "id,name,principal,roles,scope,sha256,created,expires,revoked"

int custos_keystore_key_list(custos_keystore_t *ks, int (*fn)(void *ud, const custos_key_record_t *r), void *ud)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db, "SELECT " KEY_COLS " FROM api_keys ORDER BY created, rowid", -1, &st, NULL) !=
        SQLITE_OK)
        return CUSTOS_EIO;
    int rc = 0, s;
    size_t rows = 0;
    custos_key_record_t r;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (++rows > CUSTOS_KEYSTORE_MAX_ROWS) {
            rc = CUSTOS_ETOOBIG;
            break;
        }
        key_from_row(st, &r);
        if ((rc = fn(ud, &r)) != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = CUSTOS_EIO;
    sqlite3_finalize(st);
    OPENSSL_cleanse(&r, sizeof(r));
    return rc;
}

int custos_keystore_key_find(custos_keystore_t *ks, const unsigned char d[32], custos_key_record_t *rec)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db, "SELECT " KEY_COLS " FROM api_keys WHERE sha256 = ?", -1, &st, NULL) != SQLITE_OK)
        return CUSTOS_EIO;
    sqlite3_bind_blob(st, 1, d, 32, SQLITE_STATIC);
    int s = sqlite3_step(st), rc;
    if (s == SQLITE_ROW) {
        key_from_row(st, rec);
        rc = 0;
    } else {
        rc = s == SQLITE_DONE ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs one UPDATE/DELETE with a text id (and optional int) inside a transaction; 0 rows -> ENOTFOUND. */
static int change_one(custos_keystore_t *ks, const char *sql, const char *id, int64_t arg, bool has_arg,
                      custos_keystore_commit_fn hook, void *ud)
{
    sqlite3_stmt *st = NULL;
    int rc = begin(ks);
    if (rc != 0)
        return rc;
    if (sqlite3_prepare_v2(ks->db, sql, -1, &st, NULL) != SQLITE_OK)
        return finish(ks, CUSTOS_EIO, NULL, NULL, NULL);
    int i = 1;
    if (has_arg)
        sqlite3_bind_int64(st, i++, arg);
    sqlite3_bind_text(st, i, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CUSTOS_EIO;
    if (rc == 0 && sqlite3_changes(ks->db) == 0)
        rc = CUSTOS_ENOTFOUND;
    sqlite3_finalize(st);
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
    sqlite3_stmt *st = NULL;
    if (!valid_subject(rec->subject) || (rec->role & (rec->role - 1)) || rec->role == 0 || rec->role > 16 ||
        !custos_config_scope_valid(rec->scope) || (unsigned)rec->kind > CUSTOS_RA_APP_ID)
        return CUSTOS_EINVAL;
    int rc = new_id("ra_", rec->id);
    if (rc != 0)
        return rc;
    rec->created_s = now_s;
    if ((rc = begin(ks)) != 0)
        return rc;
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO role_assignments(id,kind,subject,role,scope,created) VALUES(?,?,?,?,?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        return finish(ks, CUSTOS_EIO, NULL, NULL, NULL);
    sqlite3_bind_text(st, 1, rec->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)rec->kind);
    sqlite3_bind_text(st, 3, rec->subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, rec->role);
    sqlite3_bind_text(st, 5, rec->scope, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now_s);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : CUSTOS_EIO;
    sqlite3_finalize(st);
    return finish(ks, rc, hook, hook_ud, rec->id);
}

int custos_keystore_ra_list(custos_keystore_t *ks, int (*fn)(void *ud, const custos_ra_record_t *r), void *ud)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT id,kind,subject,role,scope,created FROM role_assignments ORDER BY created, rowid",
                           -1, &st, NULL) != SQLITE_OK)
        return CUSTOS_EIO;
    int rc = 0, s;
    size_t rows = 0;
    custos_ra_record_t r;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (++rows > CUSTOS_KEYSTORE_MAX_ROWS) {
            rc = CUSTOS_ETOOBIG;
            break;
        }
        memset(&r, 0, sizeof(r));
        copy_text(r.id, sizeof(r.id), sqlite3_column_text(st, 0));
        int k = sqlite3_column_int(st, 1);
        r.kind = (k >= 0 && k <= CUSTOS_RA_APP_ID) ? (custos_ra_kind_t)k : CUSTOS_RA_PRINCIPAL;
        copy_text(r.subject, sizeof(r.subject), sqlite3_column_text(st, 2));
        r.role = (unsigned)sqlite3_column_int64(st, 3) & 31u;
        copy_text(r.scope, sizeof(r.scope), sqlite3_column_text(st, 4));
        r.created_s = sqlite3_column_int64(st, 5);
        if ((rc = fn(ud, &r)) != 0)
            break;
    }
    if (rc == 0 && s != SQLITE_DONE && s != SQLITE_ROW)
        rc = CUSTOS_EIO;
    sqlite3_finalize(st);
    return rc;
}

int custos_keystore_ra_delete(custos_keystore_t *ks, const char *id, custos_keystore_commit_fn hook, void *hook_ud)
{
    if (!id || strlen(id) >= CUSTOS_KEYSTORE_ID_LEN)
        return CUSTOS_ENOTFOUND;
    return change_one(ks, "DELETE FROM role_assignments WHERE id = ?", id, 0, false, hook, hook_ud);
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
