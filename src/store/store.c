/* SPDX-License-Identifier: Apache-2.0
 * Driver-independent part of the store: SQL token expansion, transactions, the change counter and the
 * numbered migrations both drivers run. */
#include "store/store.h"
#include "store/store_internal.h"
#include "util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------- migrations ----------
 * Append only: never edit a released step (stores in the field are at some version already). Each step is
 * a list of single statements run in one transaction together with its schema_migrations row. Version 1
 * is the schema custos had before the store layer existed (CREATE ... IF NOT EXISTS keeps old SQLite files
 * valid). */
static const char *const MIG1[] = {"CREATE TABLE IF NOT EXISTS api_keys("
                                   " id TEXT PRIMARY KEY, name TEXT NOT NULL, principal TEXT NOT NULL,"
                                   " roles INTEGER NOT NULL, scope TEXT NOT NULL, sha256 {BLOB} NOT NULL UNIQUE,"
                                   " created INTEGER NOT NULL, expires INTEGER NOT NULL DEFAULT 0,"
                                   " revoked INTEGER NOT NULL DEFAULT 0{SEQCOL})",
                                   "CREATE TABLE IF NOT EXISTS role_assignments("
                                   " id TEXT PRIMARY KEY, kind INTEGER NOT NULL, subject TEXT NOT NULL,"
                                   " role INTEGER NOT NULL, scope TEXT NOT NULL, created INTEGER NOT NULL{SEQCOL})",
                                   NULL};
/* 2: change counter for replicas; key-encryption-key versions; sealed values (envelope encryption). */
static const char *const MIG2[] = {
    "CREATE TABLE store_meta(name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO store_meta(name, value) VALUES('changes', 0)",
    "CREATE TABLE kek_versions(version BIGINT PRIMARY KEY, provider TEXT NOT NULL, label TEXT NOT NULL,"
    " state TEXT NOT NULL, created BIGINT NOT NULL, destroyed BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE sealed(ns TEXT NOT NULL, id TEXT NOT NULL, seal_version BIGINT NOT NULL,"
    " kek_version BIGINT NOT NULL, wrapped {BLOB}, nonce {BLOB} NOT NULL, ct {BLOB} NOT NULL,"
    " created BIGINT NOT NULL, expires BIGINT NOT NULL DEFAULT 0, PRIMARY KEY(ns, id))",
    "CREATE INDEX sealed_kek ON sealed(kek_version)",
    "CREATE INDEX sealed_expires ON sealed(expires)",
    NULL};

/* 3: blocklists (before: their own tables in the SQLite file at storage.path, created by blocklist_store.c with
 * the same columns; IF NOT EXISTS keeps those rows in place) and their own change counter, so that a replica
 * recompiles only when blocklists changed. */
static const char *const MIG3[] = {
    "CREATE TABLE IF NOT EXISTS blocklists(name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',"
    " created BIGINT NOT NULL, updated BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS blocklist_items(id TEXT PRIMARY KEY, blocklist TEXT NOT NULL, text TEXT NOT NULL,"
    " is_regex INTEGER NOT NULL, flags INTEGER NOT NULL, description TEXT NOT NULL DEFAULT '',"
    " created BIGINT NOT NULL{SEQCOL}, UNIQUE(blocklist, is_regex, text))",
    "CREATE INDEX IF NOT EXISTS blocklist_items_list ON blocklist_items(blocklist)",
    "INSERT INTO store_meta(name, value) VALUES('blocklists', 0)", NULL};

/* 4: the human review queue (src/governance/review.c, docs/reviews.md): metadata only; content is sealed in `sealed`.
 */
static const char *const MIG4[] = {
    "CREATE TABLE reviews(id TEXT PRIMARY KEY, request_id TEXT NOT NULL, use_case TEXT NOT NULL, tier TEXT NOT NULL,"
    " kind TEXT NOT NULL, deployment TEXT NOT NULL, model TEXT NOT NULL, operation TEXT NOT NULL,"
    " stream INTEGER NOT NULL, requester TEXT NOT NULL, status TEXT NOT NULL, created BIGINT NOT NULL,"
    " deadline BIGINT NOT NULL, decided BIGINT NOT NULL DEFAULT 0, reviewer TEXT, decision TEXT,"
    " content_stored INTEGER NOT NULL, safety TEXT NOT NULL{SEQCOL})",
    "CREATE INDEX reviews_status ON reviews(status, deadline)", NULL};

static const char *const *const MIGRATIONS[] = {MIG1, MIG2, MIG3, MIG4};
#define N_MIGRATIONS ((int64_t)(sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])))

int64_t custos_store_schema_latest(void)
{
    return N_MIGRATIONS;
}

void custos_store_set_err(custos_store_t *s, const char *msg)
{
    size_t j = 0;
    for (size_t i = 0; msg && msg[i] && msg[i] != '\n' && j + 1 < sizeof(s->errmsg); i++)
        s->errmsg[j++] = (msg[i] >= 0x20 && msg[i] < 0x7f) ? msg[i] : '?';
    s->errmsg[j] = 0;
}

const char *custos_store_errmsg(const custos_store_t *s)
{
    return s && s->errmsg[0] ? s->errmsg : "no error";
}

custos_store_driver_t custos_store_driver(const custos_store_t *s)
{
    return s->driver;
}

const char *custos_store_driver_name(custos_store_driver_t d)
{
    return d == CUSTOS_STORE_POSTGRES ? "postgres" : "sqlite";
}

/* Expands {BLOB}, {SEQ}, {SEQCOL}; other text is copied. Returns 0 or CUSTOS_EINVAL (too long). */
static int expand(custos_store_driver_t d, const char *sql, char *out, size_t cap)
{
    static const struct {
        const char *tok, *sqlite, *pg;
    } T[] = {{"{BLOB}", "BLOB", "BYTEA"}, {"{SEQCOL}", "", ", seq BIGSERIAL"}, {"{SEQ}", "rowid", "seq"}};
    size_t j = 0;
    for (const char *p = sql; *p;) {
        const char *rep = NULL;
        size_t toklen = 0;
        if (*p == '{') {
            for (size_t t = 0; t < sizeof(T) / sizeof(T[0]); t++) {
                size_t n = strlen(T[t].tok);
                if (strncmp(p, T[t].tok, n) == 0) {
                    rep = d == CUSTOS_STORE_POSTGRES ? T[t].pg : T[t].sqlite;
                    toklen = n;
                    break;
                }
            }
        }
        if (rep) {
            size_t n = strlen(rep);
            if (j + n >= cap)
                return CUSTOS_EINVAL;
            memcpy(out + j, rep, n);
            j += n;
            p += toklen;
        } else {
            if (j + 1 >= cap)
                return CUSTOS_EINVAL;
            out[j++] = *p++;
        }
    }
    out[j] = 0;
    return 0;
}

int custos_store_exec(custos_store_t *s, const char *sql, const custos_sv_t *params, size_t nparams,
                      custos_store_row_fn fn, void *ud, int64_t *changes)
{
    char buf[CUSTOS_STORE_MAX_SQL];
    if (changes)
        *changes = 0;
    if (!s || !sql || nparams > CUSTOS_STORE_MAX_PARAMS || expand(s->driver, sql, buf, sizeof(buf)) != 0)
        return CUSTOS_EINVAL;
    return s->ops->exec(s, buf, params, nparams, fn, ud, changes);
}

int custos_store_begin(custos_store_t *s)
{
    if (s->in_tx)
        return CUSTOS_EINVAL;
    int rc =
        custos_store_exec(s, s->driver == CUSTOS_STORE_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN", NULL, 0, NULL, NULL, NULL);
    if (rc == 0)
        s->in_tx = true;
    return rc;
}

int custos_store_commit(custos_store_t *s)
{
    if (!s->in_tx)
        return CUSTOS_EINVAL;
    int rc = custos_store_exec(s, "COMMIT", NULL, 0, NULL, NULL, NULL);
    if (rc != 0) {
        custos_store_rollback(s);
        return rc;
    }
    s->in_tx = false;
    return 0;
}

void custos_store_rollback(custos_store_t *s)
{
    if (!s || !s->in_tx)
        return;
    char keep[sizeof(s->errmsg)];
    memcpy(keep, s->errmsg, sizeof(keep)); /* the reason for rolling back is the interesting error */
    (void)custos_store_exec(s, "ROLLBACK", NULL, 0, NULL, NULL, NULL);
    memcpy(s->errmsg, keep, sizeof(keep));
    s->in_tx = false;
}

int custos_store_bump(custos_store_t *s)
{
    int64_t n = 0;
    int rc =
        custos_store_exec(s, "UPDATE store_meta SET value = value + 1 WHERE name = 'changes'", NULL, 0, NULL, NULL, &n);
    return rc != 0 ? rc : (n == 1 ? 0 : CUSTOS_EIO);
}

static int one_int(void *ud, const custos_sv_t *c, size_t n)
{
    if (n >= 1 && c[0].type == CUSTOS_SV_INT)
        *(int64_t *)ud = c[0].i;
    return 0;
}

int custos_store_generation(custos_store_t *s, int64_t *gen)
{
    return custos_store_counter(s, "changes", gen);
}

int custos_store_counter_bump(custos_store_t *s, const char *name)
{
    int64_t n = 0;
    custos_sv_t p = custos_sv_text(name);
    int rc = custos_store_exec(s, "UPDATE store_meta SET value = value + 1 WHERE name = ?", &p, 1, NULL, NULL, &n);
    return rc != 0 ? rc : (n == 1 ? 0 : CUSTOS_EIO);
}

int custos_store_counter(custos_store_t *s, const char *name, int64_t *value)
{
    *value = -1;
    custos_sv_t p = custos_sv_text(name);
    int rc = custos_store_exec(s, "SELECT value FROM store_meta WHERE name = ?", &p, 1, one_int, value, NULL);
    return rc != 0 ? rc : (*value >= 0 ? 0 : CUSTOS_EIO);
}

int custos_store_schema_version(custos_store_t *s, int64_t *version)
{
    *version = 0;
    return custos_store_exec(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", NULL, 0, one_int, version,
                             NULL);
}

static int migrate(custos_store_t *s, char *err, size_t errlen)
{
    int64_t cur = 0;
    /* Fast path without a write lock: an up-to-date store (the usual case) opens while another process
     * writes. A missing schema_migrations table is an error here and means "migrate". */
    if (custos_store_schema_version(s, &cur) == 0 && cur == N_MIGRATIONS)
        return 0;
    s->errmsg[0] = 0;
    int rc = custos_store_begin(s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the schema transaction: %s", custos_store_errmsg(s));
        return rc == CUSTOS_ETIMEDOUT ? rc : CUSTOS_EIO;
    }
    cur = 0;
    /* PostgreSQL: replicas starting together take turns (transaction-scoped advisory lock). The wait may be a
     * whole migration of another replica on a loaded database: longer than the ordinary lock wait. */
    if (s->driver == CUSTOS_STORE_POSTGRES &&
        ((rc = custos_store_exec(s, "SET LOCAL lock_timeout = 60000", NULL, 0, NULL, NULL, NULL)) != 0 ||
         (rc = custos_store_exec(s, "SELECT pg_advisory_xact_lock(7302114001)", NULL, 0, NULL, NULL, NULL)) != 0))
        goto fail;
    if ((rc = custos_store_exec(s,
                                "CREATE TABLE IF NOT EXISTS schema_migrations(version BIGINT PRIMARY KEY,"
                                " applied BIGINT NOT NULL)",
                                NULL, 0, NULL, NULL, NULL)) != 0)
        goto fail;
    if ((rc = custos_store_schema_version(s, &cur)) != 0)
        goto fail;
    if (cur < 0 || cur > N_MIGRATIONS) {
        custos_store_rollback(s);
        snprintf(err, errlen, "the store's schema is version %lld, newer than this custos understands (%lld)",
                 (long long)cur, (long long)N_MIGRATIONS);
        return CUSTOS_EIO;
    }
    for (int64_t v = cur + 1; v <= N_MIGRATIONS; v++) {
        for (const char *const *st = MIGRATIONS[v - 1]; *st; st++)
            if ((rc = custos_store_exec(s, *st, NULL, 0, NULL, NULL, NULL)) != 0)
                goto fail;
        custos_sv_t p[2] = {custos_sv_int(v), custos_sv_int((int64_t)time(NULL))};
        if ((rc = custos_store_exec(s, "INSERT INTO schema_migrations(version, applied) VALUES(?, ?)", p, 2, NULL, NULL,
                                    NULL)) != 0)
            goto fail;
    }
    if ((rc = custos_store_commit(s)) != 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "schema migration failed: %s", custos_store_errmsg(s));
    custos_store_rollback(s);
    return rc == CUSTOS_ETIMEDOUT ? rc : CUSTOS_EIO;
}

int custos_store_open(const custos_store_opts_t *o, custos_store_t **out, char *err, size_t errlen)
{
    char e[256] = "";
    *out = NULL;
    custos_store_t *s = calloc(1, sizeof(*s));
    if (!s)
        return CUSTOS_ENOMEM;
    s->driver = o->driver;
    int rc = o->driver == CUSTOS_STORE_POSTGRES ? custos_store_pg_open(o, s) : custos_store_sqlite_open(o, s);
    if (rc != 0) {
        if (rc != CUSTOS_ENOTFOUND)
            snprintf(e, sizeof(e), "cannot open: %s", custos_store_errmsg(s));
        else
            snprintf(e, sizeof(e), "no store at this path");
        goto fail;
    }
    if (!o->no_migrate && (rc = migrate(s, e, sizeof(e))) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    if (err && errlen)
        snprintf(err, errlen, "%s", e);
    custos_store_close(s);
    return rc;
}

int custos_store_open_config(const custos_storage_config_t *sc, bool create, custos_store_t **out, char *err,
                             size_t errlen)
{
    custos_store_opts_t o;
    memset(&o, 0, sizeof(o));
    o.driver = sc->driver == CUSTOS_STORAGE_POSTGRES ? CUSTOS_STORE_POSTGRES : CUSTOS_STORE_SQLITE;
    o.path = sc->path;
    o.conninfo = sc->url;
    o.password = sc->password;
    o.create = create;
    o.busy_timeout_ms = sc->busy_timeout_ms;
    return custos_store_open(&o, out, err, errlen);
}

void custos_store_close(custos_store_t *s)
{
    if (!s)
        return;
    if (s->in_tx)
        custos_store_rollback(s);
    if (s->ops)
        s->ops->close(s);
    free(s);
}
