/* SPDX-License-Identifier: Apache-2.0
 * Blocklists in the store: one row per list, one per item (ids are random UUIDs, as Azure's). Portable SQL for
 * both drivers (store/store.h); the tables come from migration 3. */
#include "safety/blocklist_store.h"
#include "util/err.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNTER "blocklists"

struct custos_blstore {
    custos_store_t *s;
    bool owned;
};

int custos_blstore_open(const custos_storage_config_t *sc, bool create, custos_blstore_t **out)
{
    *out = NULL;
    if (!sc)
        return CUSTOS_EINVAL;
    custos_blstore_t *st = calloc(1, sizeof(*st));
    if (!st)
        return CUSTOS_ENOMEM;
    int rc = custos_store_open_config(sc, create, &st->s, NULL, 0);
    if (rc != 0) {
        free(st);
        return rc;
    }
    st->owned = true;
    *out = st;
    return 0;
}

int custos_blstore_wrap(custos_store_t *s, custos_blstore_t **out)
{
    *out = NULL;
    if (!s)
        return CUSTOS_EINVAL;
    custos_blstore_t *st = calloc(1, sizeof(*st));
    if (!st)
        return CUSTOS_ENOMEM;
    st->s = s;
    *out = st;
    return 0;
}

void custos_blstore_close(custos_blstore_t *st)
{
    if (!st)
        return;
    if (st->owned)
        custos_store_close(st->s);
    free(st);
}

/* A write: the counters first (their row lock serialises writers of every replica on PostgreSQL, so the checks
 * below see every earlier write), then the change. */
static int begin(custos_blstore_t *st)
{
    int rc = custos_store_begin(st->s);
    if (rc == 0 && (rc = custos_store_bump(st->s)) == 0)
        rc = custos_store_counter_bump(st->s, COUNTER);
    if (rc != 0)
        custos_store_rollback(st->s);
    return rc == 0 ? 0 : rc < 0 ? rc : CUSTOS_EIO;
}

static int finish(custos_blstore_t *st, int rc, custos_blstore_commit_fn hook, void *ud)
{
    if (rc == 0 && hook)
        rc = hook(ud);
    if (rc == 0)
        rc = custos_store_commit(st->s); /* rolls back itself on failure */
    else
        custos_store_rollback(st->s);
    return rc;
}

static int int_row(void *ud, const custos_sv_t *c, size_t n)
{
    if (n >= 1 && c[0].type == CUSTOS_SV_INT)
        *(int64_t *)ud = c[0].i;
    return 0;
}

static int count(custos_blstore_t *st, const char *sql, const char *arg, int64_t *n)
{
    *n = -1;
    custos_sv_t p = custos_sv_text(arg);
    int rc = custos_store_exec(st->s, sql, &p, arg ? 1 : 0, int_row, n, NULL);
    return rc != 0 ? rc : (*n >= 0 ? 0 : CUSTOS_EIO);
}

static const char *txt(const custos_sv_t *c)
{
    return c->type == CUSTOS_SV_TEXT ? (const char *)c->p : "";
}

static int64_t num(const custos_sv_t *c)
{
    return c->type == CUSTOS_SV_INT ? c->i : 0;
}

static int list_exists(custos_blstore_t *st, const char *name)
{
    int64_t n = 0;
    int rc = count(st, "SELECT COUNT(*) FROM blocklists WHERE name = ?", name, &n);
    return rc < 0 ? rc : n ? 0 : CUSTOS_ENOTFOUND;
}

int custos_blstore_version(custos_blstore_t *st, int64_t *v)
{
    return custos_store_counter(st->s, COUNTER, v);
}

int custos_blstore_store_version(custos_store_t *s, int64_t *v)
{
    return custos_store_counter(s, COUNTER, v);
}

int custos_blstore_list_upsert(custos_blstore_t *st, const char *name, const char *description, int64_t now_s,
                               bool *created, custos_blstore_commit_fn hook, void *ud)
{
    *created = false;
    int rc = begin(st);
    if (rc < 0)
        return rc;
    rc = list_exists(st, name);
    if (rc == CUSTOS_ENOTFOUND) {
        int64_t n = 0;
        rc = count(st, "SELECT COUNT(*) FROM blocklists", NULL, &n);
        if (rc == 0 && n >= CUSTOS_BLSTORE_MAX_LISTS)
            rc = CUSTOS_ETOOBIG;
        custos_sv_t p[4] = {custos_sv_text(name), custos_sv_text(description ? description : ""), custos_sv_int(now_s),
                            custos_sv_int(now_s)};
        if (rc == 0)
            rc = custos_store_exec(st->s, "INSERT INTO blocklists(name, description, created, updated) VALUES(?,?,?,?)",
                                   p, 4, NULL, NULL, NULL);
        if (rc == 0)
            *created = true;
    } else if (rc == 0) {
        custos_sv_t p[3] = {custos_sv_text(description), custos_sv_int(now_s), custos_sv_text(name)};
        rc = custos_store_exec(st->s,
                               "UPDATE blocklists SET description = COALESCE(?, description), updated = ?"
                               " WHERE name = ?",
                               p, 3, NULL, NULL, NULL);
    }
    return finish(st, rc, hook, ud);
}

typedef struct {
    int (*lfn)(void *, const custos_blstore_list_t *);
    int (*ifn)(void *, const custos_blstore_item_t *);
    void *ud;
    bool found;
} rows_t;

static int list_row(void *ud, const custos_sv_t *c, size_t n)
{
    rows_t *r = ud;
    if (n < 4)
        return CUSTOS_EIO;
    r->found = true;
    custos_blstore_list_t l = {txt(&c[0]), txt(&c[1]), num(&c[2]), num(&c[3])};
    return r->lfn(r->ud, &l);
}

int custos_blstore_list_get(custos_blstore_t *st, const char *name, int (*fn)(void *ud, const custos_blstore_list_t *l),
                            void *ud)
{
    rows_t r = {.lfn = fn, .ud = ud};
    custos_sv_t p = custos_sv_text(name);
    int rc = custos_store_exec(st->s, "SELECT name, description, created, updated FROM blocklists WHERE name = ?", &p,
                               1, list_row, &r, NULL);
    return rc != 0 ? rc : r.found ? 0 : CUSTOS_ENOTFOUND;
}

int custos_blstore_lists(custos_blstore_t *st, int (*fn)(void *ud, const custos_blstore_list_t *l), void *ud)
{
    rows_t r = {.lfn = fn, .ud = ud};
    return custos_store_exec(st->s, "SELECT name, description, created, updated FROM blocklists ORDER BY name", NULL, 0,
                             list_row, &r, NULL);
}

static int exec1(custos_blstore_t *st, const char *sql, const char *a)
{
    custos_sv_t p = custos_sv_text(a);
    return custos_store_exec(st->s, sql, &p, 1, NULL, NULL, NULL);
}

int custos_blstore_list_delete(custos_blstore_t *st, const char *name, custos_blstore_commit_fn hook, void *ud)
{
    int rc = begin(st);
    if (rc < 0)
        return rc;
    rc = list_exists(st, name);
    if (rc == 0)
        rc = exec1(st, "DELETE FROM blocklist_items WHERE blocklist = ?", name);
    if (rc == 0)
        rc = exec1(st, "DELETE FROM blocklists WHERE name = ?", name);
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

typedef struct {
    char id[CUSTOS_BLOCKLIST_ID_LEN];
    bool found;
} id_row_t;

static int id_row(void *ud, const custos_sv_t *c, size_t n)
{
    id_row_t *r = ud;
    if (n < 1 || c[0].type != CUSTOS_SV_TEXT)
        return CUSTOS_EIO;
    snprintf(r->id, sizeof(r->id), "%s", txt(&c[0]));
    r->found = true;
    return 0;
}

int custos_blstore_items_upsert(custos_blstore_t *st, const char *name, custos_blstore_item_t *items, size_t n,
                                int64_t now_s, custos_blstore_commit_fn hook, void *ud)
{
    int rc = begin(st);
    if (rc < 0)
        return rc;
    rc = list_exists(st, name);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        custos_blstore_item_t *it = &items[i];
        int64_t is_regex = (it->flags & CUSTOS_BLOCKLIST_REGEX) ? 1 : 0;
        const char *desc = it->description ? it->description : "";
        id_row_t found = {.found = false};
        custos_sv_t q[3] = {custos_sv_text(name), custos_sv_int(is_regex), custos_sv_text(it->text)};
        rc =
            custos_store_exec(st->s, "SELECT id FROM blocklist_items WHERE blocklist = ? AND is_regex = ? AND text = ?",
                              q, 3, id_row, &found, NULL);
        if (rc != 0)
            break;
        if (found.found) {
            snprintf(it->id, sizeof(it->id), "%s", found.id);
            custos_sv_t p[3] = {custos_sv_int((int64_t)it->flags), custos_sv_text(desc), custos_sv_text(it->id)};
            rc = custos_store_exec(st->s, "UPDATE blocklist_items SET flags = ?, description = ? WHERE id = ?", p, 3,
                                   NULL, NULL, NULL);
        } else {
            if ((rc = new_uuid(it->id)) != 0)
                break;
            custos_sv_t p[7] = {custos_sv_text(it->id),
                                custos_sv_text(name),
                                custos_sv_text(it->text),
                                custos_sv_int(is_regex),
                                custos_sv_int((int64_t)it->flags),
                                custos_sv_text(desc),
                                custos_sv_int(now_s)};
            rc = custos_store_exec(st->s,
                                   "INSERT INTO blocklist_items(id, blocklist, text, is_regex, flags, description,"
                                   " created) VALUES(?,?,?,?,?,?,?)",
                                   p, 7, NULL, NULL, NULL);
        }
    }
    int64_t nl = 0, nt = 0;
    if (rc == 0)
        rc = count(st, "SELECT COUNT(*) FROM blocklist_items WHERE blocklist = ?", name, &nl);
    if (rc == 0)
        rc = count(st, "SELECT COUNT(*) FROM blocklist_items", NULL, &nt);
    if (rc == 0 && (nl > CUSTOS_BLSTORE_MAX_ITEMS_PER_LIST || nt > CUSTOS_BLSTORE_MAX_ITEMS_TOTAL))
        rc = CUSTOS_ETOOBIG;
    if (rc == 0) {
        custos_sv_t p[2] = {custos_sv_int(now_s), custos_sv_text(name)};
        rc = custos_store_exec(st->s, "UPDATE blocklists SET updated = ? WHERE name = ?", p, 2, NULL, NULL, NULL);
    }
    return finish(st, rc, hook, ud);
}

int custos_blstore_items_remove(custos_blstore_t *st, const char *name, const char *const *ids, size_t n,
                                custos_blstore_commit_fn hook, void *ud)
{
    int rc = begin(st);
    if (rc < 0)
        return rc;
    rc = list_exists(st, name);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        custos_sv_t p[2] = {custos_sv_text(name), custos_sv_text(ids[i])};
        rc = custos_store_exec(st->s, "DELETE FROM blocklist_items WHERE blocklist = ? AND id = ?", p, 2, NULL, NULL,
                               NULL);
    }
    return finish(st, rc, hook, ud);
}

static int item_row(void *ud, const custos_sv_t *c, size_t n)
{
    rows_t *r = ud;
    if (n < 4)
        return CUSTOS_EIO;
    r->found = true;
    custos_blstore_item_t it;
    memset(&it, 0, sizeof(it));
    snprintf(it.id, sizeof(it.id), "%s", txt(&c[0]));
    it.text = txt(&c[1]);
    it.flags = (unsigned)num(&c[2]);
    it.description = txt(&c[3]);
    return r->ifn(r->ud, &it);
}

int custos_blstore_items(custos_blstore_t *st, const char *name, size_t skip, size_t top,
                         int (*fn)(void *ud, const custos_blstore_item_t *it), void *ud)
{
    int rc = list_exists(st, name);
    if (rc < 0)
        return rc;
    rows_t r = {.ifn = fn, .ud = ud};
    /* LIMIT -1 means "all" to SQLite only; a huge limit means it to both */
    custos_sv_t p[3] = {custos_sv_text(name), custos_sv_int(top ? (int64_t)top : INT64_MAX),
                        custos_sv_int((int64_t)skip)};
    return custos_store_exec(st->s,
                             "SELECT id, text, flags, description FROM blocklist_items WHERE blocklist = ?"
                             " ORDER BY {SEQ} LIMIT ? OFFSET ?",
                             p, 3, item_row, &r, NULL);
}

int custos_blstore_item_get(custos_blstore_t *st, const char *name, const char *id,
                            int (*fn)(void *ud, const custos_blstore_item_t *it), void *ud)
{
    int rc = list_exists(st, name);
    if (rc < 0)
        return rc;
    rows_t r = {.ifn = fn, .ud = ud};
    custos_sv_t p[2] = {custos_sv_text(name), custos_sv_text(id)};
    rc = custos_store_exec(st->s,
                           "SELECT id, text, flags, description FROM blocklist_items WHERE blocklist = ? AND id = ?", p,
                           2, item_row, &r, NULL);
    return rc != 0 ? rc : r.found ? 0 : CUSTOS_ENOTFOUND;
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
    size_t *owner; /* list index per item */
    size_t cur;    /* list the last item belonged to */
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

static int list_name_row(void *ud, const custos_sv_t *c, size_t n)
{
    loader_t *L = ud;
    if (n < 1)
        return CUSTOS_EIO;
    if (L->nlists == L->capl) {
        size_t nc = L->capl ? L->capl * 2 : 16;
        custos_blocklist_def_t *nl = realloc(L->lists, nc * sizeof(*nl));
        if (!nl)
            return CUSTOS_ENOMEM;
        L->lists = nl;
        L->capl = nc;
    }
    custos_blocklist_def_t *d = &L->lists[L->nlists];
    memset(d, 0, sizeof(*d));
    if (!(d->name = keep(L, txt(&c[0]))))
        return CUSTOS_ENOMEM;
    L->nlists++;
    return 0;
}

/* Items come ordered by list name, the same order as the lists (one ORDER BY on the same column and collation). */
static int item_def_row(void *ud, const custos_sv_t *c, size_t n)
{
    loader_t *L = ud;
    if (n < 4)
        return CUSTOS_EIO;
    const char *list = txt(&c[0]);
    while (L->cur < L->nlists && strcmp(L->lists[L->cur].name, list) != 0)
        L->cur++;
    if (L->cur == L->nlists)
        return CUSTOS_EIO; /* an item of an unknown list: not one snapshot */
    if (L->nitems == L->capi) {
        size_t nc = L->capi ? L->capi * 2 : 256;
        custos_blocklist_item_def_t *ni = realloc(L->items, nc * sizeof(*ni));
        size_t *no = realloc(L->owner, nc * sizeof(*no));
        if (ni)
            L->items = ni;
        if (no)
            L->owner = no;
        if (!ni || !no)
            return CUSTOS_ENOMEM;
        L->capi = nc;
    }
    custos_blocklist_item_def_t *it = &L->items[L->nitems];
    it->id = keep(L, txt(&c[1]));
    it->text = keep(L, txt(&c[2]));
    it->flags = (unsigned)num(&c[3]);
    if (!it->id || !it->text)
        return CUSTOS_ENOMEM;
    L->owner[L->nitems++] = L->cur;
    return 0;
}

int custos_blstore_build(custos_blstore_t *st, custos_blocklists_t **out, char *err, size_t errlen)
{
    loader_t L;
    memset(&L, 0, sizeof(L));
    int rc = custos_store_exec(st->s, "SELECT name FROM blocklists ORDER BY name", NULL, 0, list_name_row, &L, NULL);
    if (rc == 0)
        rc =
            custos_store_exec(st->s, "SELECT blocklist, id, text, flags FROM blocklist_items ORDER BY blocklist, {SEQ}",
                              NULL, 0, item_def_row, &L, NULL);
    if (rc == 0) {
        /* attach item ranges (items are grouped by list, in list order) */
        for (size_t i = 0; i < L.nitems; i++) {
            custos_blocklist_def_t *d = &L.lists[L.owner[i]];
            if (!d->n_items)
                d->items = &L.items[i];
            d->n_items++;
        }
        rc = custos_blocklists_build(L.lists, L.nlists, out, err, errlen);
    } else if (rc > 0) {
        rc = CUSTOS_EIO;
    }
    for (size_t i = 0; i < L.nstrs; i++)
        free(L.strs[i]);
    free(L.strs);
    free(L.lists);
    free(L.items);
    free(L.owner);
    if (rc == CUSTOS_EIO && err && errlen && !err[0])
        snprintf(err, errlen, "cannot read the blocklists from the store: %s", custos_store_errmsg(st->s));
    return rc;
}

int custos_blstore_build_snapshot(custos_blstore_t *st, custos_blocklists_t **out, int64_t *version, char *err,
                                  size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    /* one read snapshot so that lists, items and the counter agree (PostgreSQL's default, READ COMMITTED, takes one
     * per statement) */
    bool pg = custos_store_driver(st->s) == CUSTOS_STORE_POSTGRES;
    int rc = custos_store_exec(st->s, pg ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN", NULL, 0, NULL,
                               NULL, NULL);
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot read the blocklists from the store: %s", custos_store_errmsg(st->s));
        return rc;
    }
    int64_t v = 0;
    rc = custos_blstore_version(st, &v);
    if (rc == 0)
        rc = custos_blstore_build(st, out, err, errlen);
    else if (err && errlen)
        snprintf(err, errlen, "cannot read the blocklists from the store: %s", custos_store_errmsg(st->s));
    (void)custos_store_exec(st->s, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, 0, NULL, NULL, NULL);
    if (rc == 0 && version)
        *version = v;
    return rc;
}

int custos_blstore_build_config(const custos_storage_config_t *sc, custos_blocklists_t **out, int64_t *version,
                                char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (version)
        *version = 0;
    custos_blstore_t *st = NULL;
    int rc = custos_blstore_open(sc, false, &st);
    if (rc == CUSTOS_ENOTFOUND)
        return custos_blocklists_build(NULL, 0, out, err, errlen);
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot open the store: %s", custos_strerror(rc));
        return rc < 0 ? rc : CUSTOS_EIO;
    }
    rc = custos_blstore_build_snapshot(st, out, version, err, errlen);
    custos_blstore_close(st);
    return rc;
}
