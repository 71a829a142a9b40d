/* SPDX-License-Identifier: Apache-2.0
 * Blocklists in SQLite: one row per list, one per item (ids are random UUIDs, as Azure's). */
#include "safety/blocklist_store.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct custos_blstore {
    sqlite3 *db;
};

static const char SCHEMA[] = "CREATE TABLE IF NOT EXISTS blocklists("
                             " name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',"
                             " created INTEGER NOT NULL, updated INTEGER NOT NULL);"
                             "CREATE TABLE IF NOT EXISTS blocklist_items("
                             " id TEXT PRIMARY KEY, blocklist TEXT NOT NULL, text TEXT NOT NULL,"
                             " is_regex INTEGER NOT NULL, flags INTEGER NOT NULL,"
                             " description TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL,"
                             " UNIQUE(blocklist, is_regex, text));"
                             "CREATE INDEX IF NOT EXISTS blocklist_items_list ON blocklist_items(blocklist);";

int custos_blstore_open(const char *path, bool create, custos_blstore_t **out)
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
    custos_blstore_t *st = calloc(1, sizeof(*st));
    if (!st)
        return CUSTOS_ENOMEM;
    int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(st->db, 5000);
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    *out = st;
    return 0;
fail:
    custos_blstore_close(st);
    return rc == SQLITE_NOMEM ? CUSTOS_ENOMEM : CUSTOS_EIO;
}

void custos_blstore_close(custos_blstore_t *st)
{
    if (!st)
        return;
    sqlite3_close(st->db);
    free(st);
}

static int begin(custos_blstore_t *st)
{
    return sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : CUSTOS_EIO;
}

static int finish(custos_blstore_t *st, int rc, custos_blstore_commit_fn hook, void *ud)
{
    if (rc == 0 && hook)
        rc = hook(ud);
    if (rc == 0 && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = CUSTOS_EIO;
    if (rc != 0)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static sqlite3_stmt *prep(custos_blstore_t *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    return s;
}

static int count(custos_blstore_t *st, const char *sql, const char *arg, int64_t *n)
{
    sqlite3_stmt *s = prep(st, sql);
    if (!s)
        return CUSTOS_EIO;
    if (arg)
        sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_ROW ? 0 : CUSTOS_EIO;
    *n = rc == 0 ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc;
}

static const char *col(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? (const char *)t : "";
}

static int list_exists(custos_blstore_t *st, const char *name)
{
    int64_t n = 0;
    int rc = count(st, "SELECT COUNT(*) FROM blocklists WHERE name=?", name, &n);
    return rc < 0 ? rc : n ? 0 : CUSTOS_ENOTFOUND;
}

int custos_blstore_list_upsert(custos_blstore_t *st, const char *name, const char *description, int64_t now_s,
                               bool *created, custos_blstore_commit_fn hook, void *ud)
{
    *created = false;
    int rc = begin(st);
    if (rc < 0)
        return rc;
    rc = list_exists(st, name);
    sqlite3_stmt *s = NULL;
    if (rc == CUSTOS_ENOTFOUND) {
        int64_t n = 0;
        rc = count(st, "SELECT COUNT(*) FROM blocklists", NULL, &n);
        if (rc == 0 && n >= CUSTOS_BLSTORE_MAX_LISTS)
            rc = CUSTOS_ETOOBIG;
        if (rc == 0 && !(s = prep(st, "INSERT INTO blocklists(name,description,created,updated) VALUES(?,?,?,?)")))
            rc = CUSTOS_EIO;
        if (rc == 0) {
            sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 2, description ? description : "", -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 3, now_s);
            sqlite3_bind_int64(s, 4, now_s);
            *created = true;
        }
    } else if (rc == 0) {
        if (!(s = prep(st, "UPDATE blocklists SET description=COALESCE(?,description), updated=? WHERE name=?")))
            rc = CUSTOS_EIO;
        if (rc == 0) {
            if (description)
                sqlite3_bind_text(s, 1, description, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(s, 1);
            sqlite3_bind_int64(s, 2, now_s);
            sqlite3_bind_text(s, 3, name, -1, SQLITE_STATIC);
        }
    }
    if (rc == 0 && sqlite3_step(s) != SQLITE_DONE)
        rc = CUSTOS_EIO;
    sqlite3_finalize(s);
    return finish(st, rc, hook, ud);
}

static int list_row(sqlite3_stmt *s, int (*fn)(void *, const custos_blstore_list_t *), void *ud)
{
    custos_blstore_list_t l = {col(s, 0), col(s, 1), sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3)};
    return fn(ud, &l);
}

int custos_blstore_list_get(custos_blstore_t *st, const char *name, int (*fn)(void *ud, const custos_blstore_list_t *l),
                            void *ud)
{
    sqlite3_stmt *s = prep(st, "SELECT name,description,created,updated FROM blocklists WHERE name=?");
    if (!s)
        return CUSTOS_EIO;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    int rc = r == SQLITE_ROW ? list_row(s, fn, ud) : r == SQLITE_DONE ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    sqlite3_finalize(s);
    return rc;
}

int custos_blstore_lists(custos_blstore_t *st, int (*fn)(void *ud, const custos_blstore_list_t *l), void *ud)
{
    sqlite3_stmt *s = prep(st, "SELECT name,description,created,updated FROM blocklists ORDER BY name");
    if (!s)
        return CUSTOS_EIO;
    int rc = 0, r;
    while (rc == 0 && (r = sqlite3_step(s)) == SQLITE_ROW)
        rc = list_row(s, fn, ud);
    if (rc == 0 && r != SQLITE_DONE)
        rc = CUSTOS_EIO;
    sqlite3_finalize(s);
    return rc;
}

static int exec1(custos_blstore_t *st, const char *sql, const char *a)
{
    sqlite3_stmt *s = prep(st, sql);
    if (!s)
        return CUSTOS_EIO;
    sqlite3_bind_text(s, 1, a, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : CUSTOS_EIO;
    sqlite3_finalize(s);
    return rc;
}

int custos_blstore_list_delete(custos_blstore_t *st, const char *name, custos_blstore_commit_fn hook, void *ud)
{
    int rc = begin(st);
    if (rc < 0)
        return rc;
    rc = list_exists(st, name);
    if (rc == 0)
        rc = exec1(st, "DELETE FROM blocklist_items WHERE blocklist=?", name);
    if (rc == 0)
        rc = exec1(st, "DELETE FROM blocklists WHERE name=?", name);
    return finish(st, rc, hook, ud);
}

static int new_uuid(char out[CUSTOS_BLOCKLIST_ID_LEN])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof(r)) != 1)
        return CUSTOS_EIO;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, CUSTOS_BLOCKLIST_ID_LEN, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
    return 0;
}

int custos_blstore_items_upsert(custos_blstore_t *st, const char *name, custos_blstore_item_t *items, size_t n,
                                int64_t now_s, custos_blstore_commit_fn hook, void *ud)
{
    int rc = begin(st);
    if (rc < 0)
        return rc;
    sqlite3_stmt *find = NULL, *ins = NULL, *upd = NULL;
    rc = list_exists(st, name);
    if (rc == 0 && (!(find = prep(st, "SELECT id FROM blocklist_items WHERE blocklist=? AND is_regex=? AND text=?")) ||
                    !(ins = prep(st, "INSERT INTO blocklist_items(id,blocklist,text,is_regex,flags,description,created)"
                                     " VALUES(?,?,?,?,?,?,?)")) ||
                    !(upd = prep(st, "UPDATE blocklist_items SET flags=?, description=? WHERE id=?"))))
        rc = CUSTOS_EIO;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        custos_blstore_item_t *it = &items[i];
        int is_regex = (it->flags & CUSTOS_BLOCKLIST_REGEX) ? 1 : 0;
        sqlite3_reset(find);
        sqlite3_bind_text(find, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int(find, 2, is_regex);
        sqlite3_bind_text(find, 3, it->text, -1, SQLITE_STATIC);
        int r = sqlite3_step(find);
        if (r == SQLITE_ROW) {
            snprintf(it->id, sizeof(it->id), "%s", col(find, 0));
            sqlite3_reset(upd);
            sqlite3_bind_int(upd, 1, (int)it->flags);
            sqlite3_bind_text(upd, 2, it->description ? it->description : "", -1, SQLITE_STATIC);
            sqlite3_bind_text(upd, 3, it->id, -1, SQLITE_STATIC);
            rc = sqlite3_step(upd) == SQLITE_DONE ? 0 : CUSTOS_EIO;
        } else if (r == SQLITE_DONE) {
            if ((rc = new_uuid(it->id)) != 0)
                break;
            sqlite3_reset(ins);
            sqlite3_bind_text(ins, 1, it->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, name, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 3, it->text, -1, SQLITE_STATIC);
            sqlite3_bind_int(ins, 4, is_regex);
            sqlite3_bind_int(ins, 5, (int)it->flags);
            sqlite3_bind_text(ins, 6, it->description ? it->description : "", -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 7, now_s);
            rc = sqlite3_step(ins) == SQLITE_DONE ? 0 : CUSTOS_EIO;
        } else {
            rc = CUSTOS_EIO;
        }
    }
    int64_t nl = 0, nt = 0;
    if (rc == 0)
        rc = count(st, "SELECT COUNT(*) FROM blocklist_items WHERE blocklist=?", name, &nl);
    if (rc == 0)
        rc = count(st, "SELECT COUNT(*) FROM blocklist_items", NULL, &nt);
    if (rc == 0 && (nl > CUSTOS_BLSTORE_MAX_ITEMS_PER_LIST || nt > CUSTOS_BLSTORE_MAX_ITEMS_TOTAL))
        rc = CUSTOS_ETOOBIG;
    if (rc == 0)
        rc = exec1(st, "UPDATE blocklists SET updated=strftime('%s','now') WHERE name=?", name);
    sqlite3_finalize(find);
    sqlite3_finalize(ins);
    sqlite3_finalize(upd);
    return finish(st, rc, hook, ud);
}

int custos_blstore_items_remove(custos_blstore_t *st, const char *name, const char *const *ids, size_t n,
                                custos_blstore_commit_fn hook, void *ud)
{
    int rc = begin(st);
    if (rc < 0)
        return rc;
    sqlite3_stmt *del = NULL;
    rc = list_exists(st, name);
    if (rc == 0 && !(del = prep(st, "DELETE FROM blocklist_items WHERE blocklist=? AND id=?")))
        rc = CUSTOS_EIO;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_reset(del);
        sqlite3_bind_text(del, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(del, 2, ids[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(del) == SQLITE_DONE ? 0 : CUSTOS_EIO;
    }
    sqlite3_finalize(del);
    return finish(st, rc, hook, ud);
}

static int item_row(sqlite3_stmt *s, int (*fn)(void *, const custos_blstore_item_t *), void *ud)
{
    custos_blstore_item_t it;
    memset(&it, 0, sizeof(it));
    snprintf(it.id, sizeof(it.id), "%s", col(s, 0));
    it.text = col(s, 1);
    it.flags = (unsigned)sqlite3_column_int(s, 2);
    it.description = col(s, 3);
    return fn(ud, &it);
}

int custos_blstore_items(custos_blstore_t *st, const char *name, size_t skip, size_t top,
                         int (*fn)(void *ud, const custos_blstore_item_t *it), void *ud)
{
    int rc = list_exists(st, name);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s = prep(
        st, "SELECT id,text,flags,description FROM blocklist_items WHERE blocklist=? ORDER BY rowid LIMIT ? OFFSET ?");
    if (!s)
        return CUSTOS_EIO;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, top ? (int64_t)top : -1);
    sqlite3_bind_int64(s, 3, (int64_t)skip);
    int r;
    while (rc == 0 && (r = sqlite3_step(s)) == SQLITE_ROW)
        rc = item_row(s, fn, ud);
    if (rc == 0 && r != SQLITE_DONE)
        rc = CUSTOS_EIO;
    sqlite3_finalize(s);
    return rc;
}

int custos_blstore_item_get(custos_blstore_t *st, const char *name, const char *id,
                            int (*fn)(void *ud, const custos_blstore_item_t *it), void *ud)
{
    int rc = list_exists(st, name);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s = prep(st, "SELECT id,text,flags,description FROM blocklist_items WHERE blocklist=? AND id=?");
    if (!s)
        return CUSTOS_EIO;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(s);
    rc = r == SQLITE_ROW ? item_row(s, fn, ud) : r == SQLITE_DONE ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    sqlite3_finalize(s);
    return rc;
}

int custos_blstore_count_items(custos_blstore_t *st, size_t *n)
{
    int64_t k = 0;
    int rc = count(st, "SELECT COUNT(*) FROM blocklist_items", NULL, &k);
    *n = rc == 0 ? (size_t)k : 0;
    return rc;
}

/* ---------- build ---------- */

typedef struct loader {
    custos_blocklist_def_t *lists;
    size_t nlists, capl;
    custos_blocklist_item_def_t *items;
    size_t nitems, capi;
    char **strs; /* every string we allocated */
    size_t nstrs, caps;
    size_t *first; /* first item index per list */
} loader_t;

static char *keep(loader_t *L, const char *s)
{
    if (L->nstrs == L->caps) {
        size_t nc = L->caps ? L->caps * 2 : 256;
        char **n = realloc(L->strs, nc * sizeof(*n));
        if (!n)
            return NULL;
        L->strs = n;
        L->caps = nc;
    }
    char *d = strdup(s);
    if (d)
        L->strs[L->nstrs++] = d;
    return d;
}

int custos_blstore_build(custos_blstore_t *st, custos_blocklists_t **out, char *err, size_t errlen)
{
    loader_t L;
    memset(&L, 0, sizeof(L));
    int rc = CUSTOS_EIO, r;
    sqlite3_stmt *s = prep(st, "SELECT name FROM blocklists ORDER BY name");
    sqlite3_stmt *q = prep(st, "SELECT i.id, i.text, i.flags, l.rowid FROM blocklist_items i JOIN blocklists l"
                               " ON l.name = i.blocklist ORDER BY l.name, i.rowid");
    if (!s || !q)
        goto out;
    while ((r = sqlite3_step(s)) == SQLITE_ROW) {
        if (L.nlists == L.capl) {
            size_t nc = L.capl ? L.capl * 2 : 16;
            custos_blocklist_def_t *n = realloc(L.lists, nc * sizeof(*n));
            size_t *f = realloc(L.first, nc * sizeof(*f));
            if (n)
                L.lists = n;
            if (f)
                L.first = f;
            if (!n || !f) {
                rc = CUSTOS_ENOMEM;
                goto out;
            }
            L.capl = nc;
        }
        custos_blocklist_def_t *d = &L.lists[L.nlists];
        memset(d, 0, sizeof(*d));
        if (!(d->name = keep(&L, col(s, 0)))) {
            rc = CUSTOS_ENOMEM;
            goto out;
        }
        L.nlists++;
    }
    if (r != SQLITE_DONE)
        goto out;
    /* items come ordered by list name, the same order as lists */
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        if (L.nitems == L.capi) {
            size_t nc = L.capi ? L.capi * 2 : 256;
            custos_blocklist_item_def_t *n = realloc(L.items, nc * sizeof(*n));
            if (!n) {
                rc = CUSTOS_ENOMEM;
                goto out;
            }
            L.items = n;
            L.capi = nc;
        }
        custos_blocklist_item_def_t *it = &L.items[L.nitems];
        it->id = keep(&L, col(q, 0));
        it->text = keep(&L, col(q, 1));
        it->flags = (unsigned)sqlite3_column_int(q, 2);
        if (!it->id || !it->text) {
            rc = CUSTOS_ENOMEM;
            goto out;
        }
        L.nitems++;
    }
    if (r != SQLITE_DONE)
        goto out;
    /* second pass: attach item ranges to lists (items are grouped by list name, lists sorted by name) */
    sqlite3_reset(q);
    {
        size_t k = 0;
        for (size_t l = 0; l < L.nlists; l++) {
            L.first[l] = k;
            L.lists[l].n_items = 0;
        }
        sqlite3_stmt *c = prep(st, "SELECT l.name, COUNT(i.id) FROM blocklists l LEFT JOIN blocklist_items i"
                                   " ON l.name = i.blocklist GROUP BY l.name ORDER BY l.name");
        if (!c)
            goto out;
        size_t l = 0;
        while (sqlite3_step(c) == SQLITE_ROW && l < L.nlists) {
            L.lists[l].n_items = (size_t)sqlite3_column_int64(c, 1);
            L.lists[l].items = L.items ? L.items + k : NULL;
            k += L.lists[l].n_items;
            l++;
        }
        sqlite3_finalize(c);
        if (k != L.nitems)
            goto out; /* changed under us: the caller retries on the next change */
    }
    rc = custos_blocklists_build(L.lists, L.nlists, out, err, errlen);
out:
    sqlite3_finalize(s);
    sqlite3_finalize(q);
    for (size_t i = 0; i < L.nstrs; i++)
        free(L.strs[i]);
    free(L.strs);
    free(L.lists);
    free(L.items);
    free(L.first);
    if (rc == CUSTOS_EIO && err && errlen && !err[0])
        snprintf(err, errlen, "cannot read the blocklists from the store");
    return rc;
}

int custos_blstore_build_path(const char *path, custos_blocklists_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    custos_blstore_t *st = NULL;
    int rc = custos_blstore_open(path, false, &st);
    if (rc == CUSTOS_ENOTFOUND)
        return custos_blocklists_build(NULL, 0, out, err, errlen);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot open the store: %s", custos_strerror(rc));
        return rc;
    }
    /* one read transaction so lists and items agree */
    sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL);
    rc = custos_blstore_build(st, out, err, errlen);
    sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
    custos_blstore_close(st);
    return rc;
}
