/* SPDX-License-Identifier: Apache-2.0
 * The identity snapshot: every API key (config and store) in a hash table keyed by SHA-256 digest, and
 * every role assignment (config and store). Built off the request path (startup, SIGHUP, admin
 * changes), immutable afterwards, refcounted; workers swap to a new one with a posted message. */
#ifndef CUSTOS_AUTH_IDENTITY_H
#define CUSTOS_AUTH_IDENTITY_H

#include "config/config.h"
#include "policy/rbac.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct custos_idkey {
    unsigned char sha256[32];
    const char *id;        /* store id, or the config key's name */
    const char *principal; /* never NULL */
    unsigned roles;
    const char *scope;
    int64_t expires_s; /* 0 = never */
    bool from_config;
} custos_idkey_t;

typedef struct custos_idsnap custos_idsnap_t;

/* Builds a snapshot from cfg's keys and role assignments plus the store at cfg->storage.path (a missing
 * file is an empty store; revoked keys are left out). generation orders snapshots (higher is newer).
 * Returns 0 and one reference in *out, or CUSTOS_EIO (store unreadable; err says why, never a secret),
 * CUSTOS_ETOOBIG or CUSTOS_ENOMEM. Blocking (SQLite): never call it on the request path. */
int custos_idsnap_build(const custos_config_t *cfg, uint64_t generation, custos_idsnap_t **out, char *err,
                        size_t errlen);

/* Reference counting (atomic; thread-safe; NULL-safe). */
custos_idsnap_t *custos_idsnap_ref(custos_idsnap_t *s);
void custos_idsnap_unref(custos_idsnap_t *s);

uint64_t custos_idsnap_generation(const custos_idsnap_t *s);

/* The key whose digest is d, or NULL. One hash probe sequence; digests compared with CRYPTO_memcmp.
 * Expiry is not checked here (the caller compares expires_s with its clock). Thread-safe. */
const custos_idkey_t *custos_idsnap_find_key(const custos_idsnap_t *s, const unsigned char d[32]);

/* All role assignments (config first, then store). Borrowed while the caller holds a reference. */
const custos_rbac_grant_t *custos_idsnap_grants(const custos_idsnap_t *s, size_t *n);

/* Number of keys (config + active stored). */
size_t custos_idsnap_key_count(const custos_idsnap_t *s);

#endif
