/* SPDX-License-Identifier: Apache-2.0
 * Identity snapshot: open-addressing hash table of key digests (linear probing, load <= 1/2), role
 * assignments, one string pool. */
#include "auth/identity.h"
#include "auth/keystore.h"
#include "util/err.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct custos_idsnap {
    atomic_uint refs;
    uint64_t generation;
    custos_idkey_t *keys; /* n_keys entries */
    size_t n_keys, cap_keys;
    uint32_t *slots; /* index + 1 into keys; 0 = empty; mask + 1 entries */
    size_t mask;
    custos_rbac_grant_t *grants;
    size_t n_grants, cap_grants;
    char **strs; /* owned strings */
    size_t n_strs, cap_strs;
};

static const char *keep(custos_idsnap_t *s, const char *str)
{
    if (s->n_strs == s->cap_strs) {
        size_t nc = s->cap_strs ? s->cap_strs * 2 : 64;
        char **n = realloc(s->strs, nc * sizeof(*n));
        if (!n)
            return NULL;
        s->strs = n;
        s->cap_strs = nc;
    }
    char *d = strdup(str);
    if (d)
        s->strs[s->n_strs++] = d;
    return d;
}

static int add_key(custos_idsnap_t *s, const unsigned char d[32], const char *id, const char *principal, unsigned roles,
                   const char *scope, int64_t expires, bool from_config)
{
    if (s->n_keys >= CUSTOS_CONFIG_MAX_API_KEYS + CUSTOS_KEYSTORE_MAX_ROWS)
        return CUSTOS_ETOOBIG;
    if (s->n_keys == s->cap_keys) {
        size_t nc = s->cap_keys ? s->cap_keys * 2 : 16;
        custos_idkey_t *n = realloc(s->keys, nc * sizeof(*n));
        if (!n)
            return CUSTOS_ENOMEM;
        s->keys = n;
        s->cap_keys = nc;
    }
    custos_idkey_t *k = &s->keys[s->n_keys];
    memset(k, 0, sizeof(*k));
    memcpy(k->sha256, d, 32);
    k->id = keep(s, id);
    k->principal = keep(s, principal);
    k->scope = keep(s, scope ? scope : "/");
    if (!k->id || !k->principal || !k->scope)
        return CUSTOS_ENOMEM;
    k->roles = roles;
    k->expires_s = expires;
    k->from_config = from_config;
    s->n_keys++;
    return 0;
}

static int add_grant(custos_idsnap_t *s, custos_ra_kind_t kind, const char *subject, unsigned role, const char *scope)
{
    if (s->n_grants == s->cap_grants) {
        size_t nc = s->cap_grants ? s->cap_grants * 2 : 16;
        custos_rbac_grant_t *n = realloc(s->grants, nc * sizeof(*n));
        if (!n)
            return CUSTOS_ENOMEM;
        s->grants = n;
        s->cap_grants = nc;
    }
    custos_rbac_grant_t *g = &s->grants[s->n_grants];
    g->kind = kind;
    g->role = role;
    g->subject = keep(s, subject);
    g->scope = keep(s, scope);
    if (!g->subject || !g->scope)
        return CUSTOS_ENOMEM;
    s->n_grants++;
    return 0;
}

static size_t slot_of(const unsigned char d[32], size_t mask)
{
    uint64_t h;
    memcpy(&h, d, sizeof(h)); /* the digest is uniformly distributed: its first bytes are the hash */
    return (size_t)h & mask;
}

static int index_keys(custos_idsnap_t *s)
{
    size_t cap = 16;
    while (cap < s->n_keys * 2)
        cap *= 2;
    s->slots = calloc(cap, sizeof(*s->slots));
    if (!s->slots)
        return CUSTOS_ENOMEM;
    s->mask = cap - 1;
    for (size_t i = 0; i < s->n_keys; i++) {
        size_t j = slot_of(s->keys[i].sha256, s->mask);
        bool dup = false;
        while (s->slots[j]) {
            if (memcmp(s->keys[s->slots[j] - 1].sha256, s->keys[i].sha256, 32) == 0) {
                dup = true; /* the first source (config) wins */
                break;
            }
            j = (j + 1) & s->mask;
        }
        if (!dup)
            s->slots[j] = (uint32_t)(i + 1);
    }
    return 0;
}

typedef struct load_ctx {
    custos_idsnap_t *s;
} load_ctx_t;

static int on_key(void *ud, const custos_key_record_t *r)
{
    load_ctx_t *c = ud;
    if (r->revoked_s)
        return 0;
    return add_key(c->s, r->sha256, r->id, r->principal, r->roles, r->scope, r->expires_s, false);
}

static int on_ra(void *ud, const custos_ra_record_t *r)
{
    load_ctx_t *c = ud;
    return add_grant(c->s, r->kind, r->subject, r->role, r->scope);
}

static void idsnap_free(custos_idsnap_t *s)
{
    if (!s)
        return;
    if (s->keys)
        OPENSSL_cleanse(s->keys, s->cap_keys * sizeof(*s->keys));
    free(s->keys);
    free(s->slots);
    free(s->grants);
    for (size_t i = 0; i < s->n_strs; i++)
        free(s->strs[i]);
    free(s->strs);
    free(s);
}

int custos_idsnap_build(const custos_config_t *cfg, uint64_t generation, custos_idsnap_t **out, char *err,
                        size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    custos_idsnap_t *s = calloc(1, sizeof(*s));
    custos_keystore_t *ks = NULL;
    int rc = CUSTOS_ENOMEM;
    if (!s)
        goto fail;
    atomic_init(&s->refs, 1);
    s->generation = generation;
    const custos_identity_config_t *id = &cfg->identity;
    for (size_t i = 0; i < id->n_api_keys; i++) {
        const custos_api_key_config_t *k = &id->api_keys[i];
        char pbuf[80];
        const char *principal = k->principal;
        if (!principal) {
            snprintf(pbuf, sizeof(pbuf), "key:%s", k->name);
            principal = pbuf;
        }
        if ((rc = add_key(s, k->sha256, k->name, principal, k->roles ? k->roles : CUSTOS_ROLE_INFERENCE_USER,
                          k->scope ? k->scope : "/", 0, true)) != 0)
            goto fail;
    }
    for (size_t i = 0; i < id->n_role_assignments; i++) {
        const custos_role_assignment_config_t *a = &id->role_assignments[i];
        if ((rc = add_grant(s, a->kind, a->subject, a->role, a->scope)) != 0)
            goto fail;
    }
    if (cfg->storage.path || cfg->storage.url) {
        const char *where = cfg->storage.driver == CUSTOS_STORAGE_POSTGRES ? "(postgres)" : cfg->storage.path;
        char why[256] = "";
        rc = custos_keystore_open_config(&cfg->storage, false, &ks, why, sizeof(why));
        if (rc == CUSTOS_ENOTFOUND) {
            /* no store yet: nothing was ever created */
        } else if (rc != 0) {
            if (err && errlen)
                snprintf(err, errlen, "storage %s: cannot open the store (%s: %s)", where, custos_strerror(rc), why);
            goto fail;
        } else {
            load_ctx_t c = {s};
            rc = custos_keystore_key_list(ks, on_key, &c);
            if (rc == 0)
                rc = custos_keystore_ra_list(ks, on_ra, &c);
            if (rc != 0) {
                if (err && errlen)
                    snprintf(err, errlen, "storage %s: cannot read keys or role assignments (%s)", where,
                             custos_strerror(rc));
                goto fail;
            }
        }
    }
    if ((rc = index_keys(s)) != 0)
        goto fail;
    custos_keystore_close(ks);
    *out = s;
    return 0;
fail:
    if (err && errlen && !err[0])
        snprintf(err, errlen, "identity snapshot: %s", custos_strerror(rc));
    custos_keystore_close(ks);
    idsnap_free(s);
    return rc;
}

custos_idsnap_t *custos_idsnap_ref(custos_idsnap_t *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void custos_idsnap_unref(custos_idsnap_t *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        idsnap_free(s);
}

uint64_t custos_idsnap_generation(const custos_idsnap_t *s)
{
    return s->generation;
}

const custos_idkey_t *custos_idsnap_find_key(const custos_idsnap_t *s, const unsigned char d[32])
{
    size_t j = slot_of(d, s->mask);
    uint32_t ix;
    while ((ix = s->slots[j]) != 0) {
        const custos_idkey_t *k = &s->keys[ix - 1];
        if (CRYPTO_memcmp(k->sha256, d, 32) == 0)
            return k;
        j = (j + 1) & s->mask;
    }
    return NULL;
}

const custos_rbac_grant_t *custos_idsnap_grants(const custos_idsnap_t *s, size_t *n)
{
    *n = s->n_grants;
    return s->grants;
}

size_t custos_idsnap_key_count(const custos_idsnap_t *s)
{
    return s->n_keys;
}
