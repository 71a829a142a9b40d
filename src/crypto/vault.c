/* SPDX-License-Identifier: Apache-2.0
 * The vault: sealed records in the store's `sealed` table and KEK versions in `kek_versions`
 * (store/store.c migration 2). See crypto.h for the scheme. */
#include "crypto/crypto.h"
#include "util/err.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct custos_vault {
    custos_kek_t *kek;
    bool own_kek;
    custos_store_t *st;
    uint32_t current;
};

static bool valid_ns(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CUSTOS_VAULT_NS_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' ||
              s[i] == '-'))
            return false;
    return true;
}

static bool valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > CUSTOS_VAULT_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* AAD: a domain string, ns, id and a version, NUL-separated (ns and id cannot contain NUL). */
static size_t make_aad(unsigned char *out, size_t cap, const char *dom, const char *ns, const char *id, uint32_t v)
{
    int n = snprintf((char *)out, cap, "%s%c%s%c%s%c", dom, 0, ns, 0, id, 0);
    if (n < 0 || (size_t)n + 4 > cap)
        return 0;
    out[n] = (unsigned char)(v >> 24);
    out[n + 1] = (unsigned char)(v >> 16);
    out[n + 2] = (unsigned char)(v >> 8);
    out[n + 3] = (unsigned char)v;
    return (size_t)n + 4;
}
#define AAD_MAX (32 + CUSTOS_VAULT_NS_MAX + CUSTOS_VAULT_ID_MAX + 8)
#define AAD_CONTENT "custos.sealed.v1"
#define AAD_DEK "custos.dek.v1"

static int int_row(void *ud, const custos_sv_t *c, size_t n)
{
    if (n >= 1 && c[0].type == CUSTOS_SV_INT)
        *(int64_t *)ud = c[0].i;
    return 0;
}

static int load_current(custos_vault_t *v, int64_t *cur)
{
    *cur = 0;
    return custos_store_exec(v->st, "SELECT COALESCE(MAX(version), 0) FROM kek_versions WHERE state = 'active'", NULL,
                             0, int_row, cur, NULL);
}

static int add_version(custos_vault_t *v, uint32_t ver, int64_t now_s)
{
    char label[256];
    custos_kek_label(v->kek, ver, label, sizeof(label));
    custos_sv_t p[4] = {custos_sv_int(ver), custos_sv_text(custos_kek_provider(v->kek)), custos_sv_text(label),
                        custos_sv_int(now_s)};
    return custos_store_exec(v->st,
                             "INSERT INTO kek_versions(version, provider, label, state, created) VALUES(?, ?, ?, "
                             "'active', ?)",
                             p, 4, NULL, NULL, NULL);
}

int custos_vault_open_with(custos_kek_t *k, custos_store_t *st, custos_vault_t **out, char *err, size_t errlen)
{
    char e[512] = "";
    *out = NULL;
    custos_vault_t *v = calloc(1, sizeof(*v));
    if (!v)
        return CUSTOS_ENOMEM;
    v->kek = k;
    v->st = st;
    int64_t cur = 0;
    int rc = load_current(v, &cur);
    if (rc != 0) {
        snprintf(e, sizeof(e), "cannot read key versions: %s", custos_store_errmsg(st));
        goto fail;
    }
    if (cur == 0) {
        /* First start: create (or adopt) version 1, in a write transaction so that processes starting together on
         * one store take turns (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock) and only the first creates
         * the key: the others find it recorded (a PKCS#11 token would otherwise get two keys with one label). */
        bool pg = custos_store_driver(st) == CUSTOS_STORE_POSTGRES;
        if ((rc = custos_store_begin(st)) != 0 ||
            (pg && (rc = custos_store_exec(st, "SELECT pg_advisory_xact_lock(7302114002)", NULL, 0, NULL, NULL,
                                           NULL)) != 0) ||
            (rc = load_current(v, &cur)) != 0) {
            snprintf(e, sizeof(e), "cannot start the key transaction: %s", custos_store_errmsg(st));
            custos_store_rollback(st);
            goto fail;
        }
        int64_t any = 0;
        if (cur == 0 &&
            (rc = custos_store_exec(st, "SELECT COUNT(*) FROM kek_versions", NULL, 0, int_row, &any, NULL)) != 0) {
            custos_store_rollback(st);
            goto fail;
        }
        if (cur == 0 && any > 0) {
            snprintf(e, sizeof(e), "every key version was destroyed; run `custos kek rotate` to make a new one");
            custos_store_rollback(st);
            rc = CUSTOS_EKEYGONE;
            goto fail;
        }
        if (cur == 0) {
            rc = custos_kek_exists(k, 1, NULL, 0);
            if (rc == CUSTOS_ENOTFOUND)
                rc = custos_kek_create(k, 1, e, sizeof(e));
            if (rc != 0 && rc != CUSTOS_EAGAIN) {
                custos_store_rollback(st);
                goto fail;
            }
            if ((rc = add_version(v, 1, (int64_t)time(NULL))) != 0) {
                snprintf(e, sizeof(e), "cannot record key version 1: %s", custos_store_errmsg(st));
                custos_store_rollback(st);
                goto fail;
            }
            cur = 1;
        }
        if ((rc = custos_store_commit(st)) != 0) {
            snprintf(e, sizeof(e), "cannot record key version 1: %s", custos_store_errmsg(st));
            goto fail;
        }
    }
    v->current = (uint32_t)cur;
    char why[400] = "";
    if ((rc = custos_kek_exists(k, v->current, why, sizeof(why))) != 0) {
        snprintf(e, sizeof(e), "current key version %u is not available: %s", v->current, why);
        goto fail;
    }
    *out = v;
    return 0;
fail:
    if (err && errlen)
        snprintf(err, errlen, "%s", e[0] ? e : custos_strerror(rc));
    free(v);
    return rc ? rc : CUSTOS_EIO;
}

int custos_vault_open(const custos_storage_config_t *sc, custos_store_t *st, custos_vault_t **out, char *err,
                      size_t errlen)
{
    custos_kek_t *k = NULL;
    *out = NULL;
    int rc = custos_kek_open(sc, &k, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = custos_vault_open_with(k, st, out, err, errlen)) != 0) {
        custos_kek_close(k);
        return rc;
    }
    (*out)->own_kek = true;
    return 0;
}

void custos_vault_close(custos_vault_t *v)
{
    if (!v)
        return;
    if (v->own_kek)
        custos_kek_close(v->kek);
    free(v);
}

uint32_t custos_vault_current(const custos_vault_t *v)
{
    return v->current;
}

int custos_vault_put(custos_vault_t *v, const char *ns, const char *id, const void *pt, size_t n, int64_t now_s,
                     int64_t expires_s)
{
    if (!valid_ns(ns) || !valid_id(id) || n > CUSTOS_SEAL_MAX || (n && !pt))
        return CUSTOS_EINVAL;
    unsigned char aad[AAD_MAX], waad[AAD_MAX], nonce[CUSTOS_NONCE_LEN], wrapped[CUSTOS_WRAPPED_LEN];
    size_t alen = make_aad(aad, sizeof(aad), AAD_CONTENT, ns, id, v->current);
    size_t wlen = make_aad(waad, sizeof(waad), AAD_DEK, ns, id, v->current);
    unsigned char *dek = custos_secure_alloc(CUSTOS_KEY_LEN);
    unsigned char *ct = malloc(n + CUSTOS_TAG_LEN);
    int rc = CUSTOS_ENOMEM;
    if (!dek || !ct || !alen || !wlen)
        goto out;
    rc = CUSTOS_EIO;
    if (RAND_priv_bytes(dek, CUSTOS_KEY_LEN) != 1 || RAND_bytes(nonce, sizeof(nonce)) != 1)
        goto out;
    if ((rc = custos_aead_seal(dek, nonce, aad, alen, pt, n, ct, ct + n)) != 0)
        goto out;
    if ((rc = custos_kek_wrap(v->kek, v->current, waad, wlen, dek, wrapped)) != 0)
        goto out;
    custos_sv_t p[9] = {custos_sv_text(ns),
                        custos_sv_text(id),
                        custos_sv_int(v->current),
                        custos_sv_int(v->current),
                        custos_sv_blob(wrapped, sizeof(wrapped)),
                        custos_sv_blob(nonce, sizeof(nonce)),
                        custos_sv_blob(ct, n + CUSTOS_TAG_LEN),
                        custos_sv_int(now_s),
                        custos_sv_int(expires_s)};
    rc = custos_store_exec(v->st,
                           "INSERT INTO sealed(ns, id, seal_version, kek_version, wrapped, nonce, ct, created, expires)"
                           " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ns, id) DO UPDATE SET"
                           " seal_version = excluded.seal_version, kek_version = excluded.kek_version,"
                           " wrapped = excluded.wrapped, nonce = excluded.nonce, ct = excluded.ct,"
                           " created = excluded.created, expires = excluded.expires",
                           p, 9, NULL, NULL, NULL);
    if (rc != 0)
        rc = CUSTOS_EIO;
out:
    custos_secure_free(dek, CUSTOS_KEY_LEN);
    free(ct);
    return rc;
}

typedef struct {
    int found;
    int64_t seal_v, kek_v;
    unsigned char wrapped[CUSTOS_WRAPPED_LEN];
    bool has_wrapped, bad;
    unsigned char nonce[CUSTOS_NONCE_LEN];
    unsigned char *ct;
    size_t ctlen;
} rec_t;

static int rec_row(void *ud, const custos_sv_t *c, size_t n)
{
    rec_t *r = ud;
    if (n != 5)
        return CUSTOS_EIO;
    r->found = 1;
    r->seal_v = c[0].i;
    r->kek_v = c[1].i;
    if (c[2].type == CUSTOS_SV_BLOB && c[2].n == CUSTOS_WRAPPED_LEN) {
        memcpy(r->wrapped, c[2].p, CUSTOS_WRAPPED_LEN);
        r->has_wrapped = true;
    } else if (c[2].type != CUSTOS_SV_NULL) {
        r->bad = true; /* a wrapped key of the wrong size: tampered */
    }
    if (c[3].type != CUSTOS_SV_BLOB || c[3].n != CUSTOS_NONCE_LEN || c[4].type != CUSTOS_SV_BLOB ||
        c[4].n < CUSTOS_TAG_LEN || c[4].n > CUSTOS_SEAL_MAX + CUSTOS_TAG_LEN) {
        r->bad = true;
        return 0;
    }
    memcpy(r->nonce, c[3].p, CUSTOS_NONCE_LEN);
    if (!(r->ct = malloc(c[4].n)))
        return CUSTOS_ENOMEM;
    memcpy(r->ct, c[4].p, c[4].n);
    r->ctlen = c[4].n;
    return 0;
}

int custos_vault_get(custos_vault_t *v, const char *ns, const char *id, unsigned char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!valid_ns(ns) || !valid_id(id))
        return CUSTOS_EINVAL;
    rec_t r;
    memset(&r, 0, sizeof(r));
    custos_sv_t p[2] = {custos_sv_text(ns), custos_sv_text(id)};
    int rc = custos_store_exec(v->st,
                               "SELECT seal_version, kek_version, wrapped, nonce, ct FROM sealed"
                               " WHERE ns = ? AND id = ?",
                               p, 2, rec_row, &r, NULL);
    unsigned char *dek = NULL, *pt = NULL;
    if (rc != 0)
        goto out;
    rc = CUSTOS_ENOTFOUND;
    if (!r.found)
        goto out;
    rc = CUSTOS_EDECRYPT;
    if (r.bad || r.seal_v <= 0 || r.seal_v > CUSTOS_KEK_MAX_VERSION || r.kek_v <= 0 || r.kek_v > CUSTOS_KEK_MAX_VERSION)
        goto out;
    rc = CUSTOS_EKEYGONE;
    if (!r.has_wrapped)
        goto out; /* its KEK version was destroyed: the wrapped key went with it */
    unsigned char aad[AAD_MAX], waad[AAD_MAX];
    size_t alen = make_aad(aad, sizeof(aad), AAD_CONTENT, ns, id, (uint32_t)r.seal_v);
    size_t wlen = make_aad(waad, sizeof(waad), AAD_DEK, ns, id, (uint32_t)r.kek_v);
    rc = CUSTOS_ENOMEM;
    size_t ptlen = r.ctlen - CUSTOS_TAG_LEN;
    if (!(dek = custos_secure_alloc(CUSTOS_KEY_LEN)) || !(pt = malloc(ptlen + 1)))
        goto out;
    if ((rc = custos_kek_unwrap(v->kek, (uint32_t)r.kek_v, waad, wlen, r.wrapped, dek)) != 0)
        goto out;
    if ((rc = custos_aead_open(dek, r.nonce, aad, alen, r.ct, ptlen, r.ct + ptlen, pt)) != 0)
        goto out;
    pt[ptlen] = 0;
    *out = pt;
    *n = ptlen;
    pt = NULL;
out:
    custos_secure_free(dek, CUSTOS_KEY_LEN);
    free(pt);
    if (r.ct) {
        OPENSSL_cleanse(r.ct, r.ctlen);
        free(r.ct);
    }
    return rc;
}

int custos_vault_delete(custos_vault_t *v, const char *ns, const char *id)
{
    if (!valid_ns(ns) || !valid_id(id))
        return CUSTOS_EINVAL;
    custos_sv_t p[2] = {custos_sv_text(ns), custos_sv_text(id)};
    int64_t ch = 0;
    int rc = custos_store_exec(v->st, "DELETE FROM sealed WHERE ns = ? AND id = ?", p, 2, NULL, NULL, &ch);
    return rc != 0 ? rc : (ch ? 0 : CUSTOS_ENOTFOUND);
}

int custos_vault_rotate(custos_vault_t *v, int64_t now_s, uint32_t *newv, char *err, size_t errlen)
{
    int64_t max = 0;
    int rc =
        custos_store_exec(v->st, "SELECT COALESCE(MAX(version), 0) FROM kek_versions", NULL, 0, int_row, &max, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read key versions: %s", custos_store_errmsg(v->st));
        return rc;
    }
    if (max >= CUSTOS_KEK_MAX_VERSION) {
        snprintf(err, errlen, "too many key versions");
        return CUSTOS_ETOOBIG;
    }
    uint32_t nv = (uint32_t)max + 1;
    if ((rc = custos_kek_create(v->kek, nv, err, errlen)) != 0)
        return rc;
    if ((rc = add_version(v, nv, now_s)) != 0) {
        snprintf(err, errlen, "cannot record key version %u: %s", nv, custos_store_errmsg(v->st));
        (void)custos_kek_destroy(v->kek, nv, NULL, 0);
        return rc;
    }
    v->current = nv;
    *newv = nv;
    return 0;
}

typedef struct {
    char ns[CUSTOS_VAULT_NS_MAX + 1];
    char id[CUSTOS_VAULT_ID_MAX + 1];
    int64_t kek_v;
    unsigned char wrapped[CUSTOS_WRAPPED_LEN];
} rewrap_item_t;

typedef struct {
    rewrap_item_t *items;
    size_t n, cap;
} rewrap_list_t;

static int rewrap_row(void *ud, const custos_sv_t *c, size_t n)
{
    rewrap_list_t *l = ud;
    if (n != 4 || c[0].type != CUSTOS_SV_TEXT || c[1].type != CUSTOS_SV_TEXT || c[3].type != CUSTOS_SV_BLOB ||
        c[3].n != CUSTOS_WRAPPED_LEN || c[0].n > CUSTOS_VAULT_NS_MAX || c[1].n > CUSTOS_VAULT_ID_MAX)
        return 0; /* unreadable rows are counted by the caller as failed */
    if (l->n == l->cap)
        return 1; /* batch full */
    rewrap_item_t *it = &l->items[l->n++];
    snprintf(it->ns, sizeof(it->ns), "%s", (const char *)c[0].p);
    snprintf(it->id, sizeof(it->id), "%s", (const char *)c[1].p);
    it->kek_v = c[2].i;
    memcpy(it->wrapped, c[3].p, CUSTOS_WRAPPED_LEN);
    return 0;
}

int custos_vault_rewrap(custos_vault_t *v, int64_t *count, int64_t *failed)
{
    *count = 0;
    *failed = 0;
    rewrap_list_t l = {.cap = 256};
    if (!(l.items = calloc(l.cap, sizeof(*l.items))))
        return CUSTOS_ENOMEM;
    unsigned char *dek = custos_secure_alloc(CUSTOS_KEY_LEN);
    int rc = dek ? 0 : CUSTOS_ENOMEM;
    /* Batches of 256, keyed after the last (ns, id) seen, so rows that fail to unwrap are skipped, not retried. */
    char last_ns[CUSTOS_VAULT_NS_MAX + 1] = "", last_id[CUSTOS_VAULT_ID_MAX + 1] = "";
    while (rc == 0) {
        l.n = 0;
        custos_sv_t p[4] = {custos_sv_int(v->current), custos_sv_text(last_ns), custos_sv_text(last_ns),
                            custos_sv_text(last_id)};
        rc = custos_store_exec(v->st,
                               "SELECT ns, id, kek_version, wrapped FROM sealed WHERE kek_version <> ?"
                               " AND wrapped IS NOT NULL AND (ns > ? OR (ns = ? AND id > ?)) ORDER BY ns, id",
                               p, 4, rewrap_row, &l, NULL);
        if (rc == 1)
            rc = 0;
        if (rc != 0 || l.n == 0)
            break;
        if ((rc = custos_store_begin(v->st)) != 0)
            break;
        for (size_t i = 0; i < l.n && rc == 0; i++) {
            rewrap_item_t *it = &l.items[i];
            unsigned char oaad[AAD_MAX], naad[AAD_MAX], nw[CUSTOS_WRAPPED_LEN];
            size_t olen = make_aad(oaad, sizeof(oaad), AAD_DEK, it->ns, it->id, (uint32_t)it->kek_v);
            size_t nlen = make_aad(naad, sizeof(naad), AAD_DEK, it->ns, it->id, v->current);
            snprintf(last_ns, sizeof(last_ns), "%s", it->ns);
            snprintf(last_id, sizeof(last_id), "%s", it->id);
            if (it->kek_v <= 0 || it->kek_v > CUSTOS_KEK_MAX_VERSION ||
                custos_kek_unwrap(v->kek, (uint32_t)it->kek_v, oaad, olen, it->wrapped, dek) != 0) {
                (*failed)++;
                continue;
            }
            rc = custos_kek_wrap(v->kek, v->current, naad, nlen, dek, nw);
            OPENSSL_cleanse(dek, CUSTOS_KEY_LEN);
            if (rc != 0)
                break;
            custos_sv_t u[5] = {custos_sv_int(v->current), custos_sv_blob(nw, sizeof(nw)), custos_sv_text(it->ns),
                                custos_sv_text(it->id), custos_sv_int(it->kek_v)};
            int64_t ch = 0;
            rc = custos_store_exec(v->st,
                                   "UPDATE sealed SET kek_version = ?, wrapped = ? WHERE ns = ? AND id = ?"
                                   " AND kek_version = ?",
                                   u, 5, NULL, NULL, &ch);
            if (rc == 0)
                *count += ch;
        }
        if (rc != 0) {
            custos_store_rollback(v->st);
            break;
        }
        rc = custos_store_commit(v->st);
    }
    OPENSSL_cleanse(l.items, l.cap * sizeof(*l.items));
    free(l.items);
    custos_secure_free(dek, CUSTOS_KEY_LEN);
    return rc;
}

int custos_vault_destroy(custos_vault_t *v, uint32_t ver, int64_t now_s, int64_t *count, char *err, size_t errlen)
{
    *count = 0;
    if (ver == v->current) {
        snprintf(err, errlen, "version %u is the current key version; run `custos kek rotate` first", ver);
        return CUSTOS_EINVAL;
    }
    int64_t active = 0;
    custos_sv_t p = custos_sv_int(ver);
    int rc = custos_store_exec(v->st, "SELECT COUNT(*) FROM kek_versions WHERE version = ? AND state = 'active'", &p, 1,
                               int_row, &active, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read key versions: %s", custos_store_errmsg(v->st));
        return rc;
    }
    if (!active) {
        snprintf(err, errlen, "no active key version %u", ver);
        return CUSTOS_ENOTFOUND;
    }
    /* First the wrapped keys in the store (one transaction, with the version's state), then the KEK itself:
     * if the second step fails, the records are unreadable already and a retry finishes the job. */
    if ((rc = custos_store_begin(v->st)) != 0)
        goto dberr;
    custos_sv_t q[2] = {custos_sv_int(now_s), custos_sv_int(ver)};
    if ((rc = custos_store_exec(v->st, "UPDATE sealed SET wrapped = NULL WHERE kek_version = ?", &p, 1, NULL, NULL,
                                count)) != 0 ||
        (rc = custos_store_exec(v->st, "UPDATE kek_versions SET state = 'destroyed', destroyed = ? WHERE version = ?",
                                q, 2, NULL, NULL, NULL)) != 0 ||
        (rc = custos_store_commit(v->st)) != 0) {
        custos_store_rollback(v->st);
        goto dberr;
    }
    rc = custos_kek_destroy(v->kek, ver, err, errlen);
    return rc == CUSTOS_ENOTFOUND ? 0 : rc; /* already gone from the provider: nothing left to shred */
dberr:
    snprintf(err, errlen, "store: %s", custos_store_errmsg(v->st));
    return rc;
}

typedef struct {
    int (*fn)(void *ud, const custos_kek_version_info_t *i);
    void *ud;
    uint32_t current;
} ver_ctx_t;

static int ver_row(void *ud, const custos_sv_t *c, size_t n)
{
    ver_ctx_t *x = ud;
    custos_kek_version_info_t i;
    if (n != 7)
        return CUSTOS_EIO;
    memset(&i, 0, sizeof(i));
    i.version = (uint32_t)c[0].i;
    snprintf(i.provider, sizeof(i.provider), "%s", c[1].type == CUSTOS_SV_TEXT ? (const char *)c[1].p : "");
    snprintf(i.label, sizeof(i.label), "%s", c[2].type == CUSTOS_SV_TEXT ? (const char *)c[2].p : "");
    snprintf(i.state, sizeof(i.state), "%s", c[3].type == CUSTOS_SV_TEXT ? (const char *)c[3].p : "");
    i.created_s = c[4].i;
    i.destroyed_s = c[5].i;
    i.records = c[6].i;
    i.current = i.version == x->current;
    return x->fn(x->ud, &i);
}

int custos_vault_versions(custos_vault_t *v, int (*fn)(void *ud, const custos_kek_version_info_t *i), void *ud)
{
    ver_ctx_t x = {fn, ud, v->current};
    return custos_store_exec(v->st,
                             "SELECT k.version, k.provider, k.label, k.state, k.created, k.destroyed,"
                             " (SELECT COUNT(*) FROM sealed s WHERE s.kek_version = k.version)"
                             " FROM kek_versions k ORDER BY k.version",
                             NULL, 0, ver_row, &x, NULL);
}

int custos_vault_purge(custos_store_t *st, const char *ns, int64_t now_s, int64_t max_age_s, int64_t *count)
{
    *count = 0;
    if (!valid_ns(ns))
        return CUSTOS_EINVAL;
    int64_t a = 0, b = 0;
    int rc;
    if (max_age_s < 0) {
        custos_sv_t p = custos_sv_text(ns);
        rc = custos_store_exec(st, "DELETE FROM sealed WHERE ns = ?", &p, 1, NULL, NULL, &a);
    } else {
        custos_sv_t p[2] = {custos_sv_text(ns), custos_sv_int(now_s - max_age_s)};
        rc = custos_store_exec(st, "DELETE FROM sealed WHERE ns = ? AND created <= ?", p, 2, NULL, NULL, &a);
    }
    if (rc == 0) {
        custos_sv_t p = custos_sv_int(now_s);
        rc = custos_store_exec(st, "DELETE FROM sealed WHERE expires > 0 AND expires <= ?", &p, 1, NULL, NULL, &b);
    }
    *count = a + b;
    return rc;
}
