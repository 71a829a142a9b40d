/* SPDX-License-Identifier: Apache-2.0
 * Stored identity state: API keys (kept only as SHA-256 digests) and role assignments, in the store
 * (store/store.h: SQLite at `storage.path` or PostgreSQL at `storage.url`). The SQL stays in keystore.c;
 * every write bumps the store's change counter in the same transaction, so replicas notice it. */
#ifndef CUSTOS_AUTH_KEYSTORE_H
#define CUSTOS_AUTH_KEYSTORE_H

#include "config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct custos_keystore custos_keystore_t;

#define CUSTOS_KEY_PREFIX "sk-custos-"
#define CUSTOS_KEY_TEXT_LEN (10 + 43) /* prefix + base64url of 32 random bytes, unpadded */
#define CUSTOS_KEYSTORE_ID_LEN 24     /* "key_" / "ra_" + 16 hex digits, NUL included, rounded up */
#define CUSTOS_KEYSTORE_MAX_PRINCIPAL 256
#define CUSTOS_KEYSTORE_MAX_ROWS 100000 /* list/snapshot refuse stores larger than this */

typedef struct custos_key_record {
    char id[CUSTOS_KEYSTORE_ID_LEN];
    char name[65];
    char principal[CUSTOS_KEYSTORE_MAX_PRINCIPAL + 1];
    unsigned roles; /* CUSTOS_ROLE_* set */
    char scope[CUSTOS_CONFIG_MAX_SCOPE + 1];
    unsigned char sha256[32];
    int64_t created_s; /* unix seconds */
    int64_t expires_s; /* 0 = never */
    int64_t revoked_s; /* 0 = active */
} custos_key_record_t;

typedef struct custos_key_spec {
    const char *name;      /* NULL = the new id; else [A-Za-z0-9._-]{1,64} */
    const char *principal; /* required, 1..256 printable bytes */
    unsigned roles;        /* non-empty CUSTOS_ROLE_* set */
    const char *scope;     /* NULL = "/"; else "/" or "/deployments/{name}" */
    int64_t expires_in_s;  /* 0 = never; else > 0 */
} custos_key_spec_t;

typedef struct custos_ra_record {
    char id[CUSTOS_KEYSTORE_ID_LEN];
    custos_ra_kind_t kind;
    char subject[CUSTOS_KEYSTORE_MAX_PRINCIPAL + 1];
    unsigned role; /* one CUSTOS_ROLE_* bit */
    char scope[CUSTOS_CONFIG_MAX_SCOPE + 1];
    int64_t created_s;
} custos_ra_record_t;

/* Called inside the write transaction after the change and before COMMIT; a non-zero return rolls the
 * change back and is returned by the write function (so an act that cannot be recorded does not happen). */
typedef int (*custos_keystore_commit_fn)(void *ud, const char *id);

/* Opens the store at path. create=false: a missing file is CUSTOS_ENOTFOUND (callers treat it as an
 * empty store); create=true makes the file (mode 0600) and its tables. Returns 0, CUSTOS_ENOTFOUND,
 * CUSTOS_EIO (cannot open / not a custos store / schema error) or CUSTOS_ENOMEM. One handle per thread. */
int custos_keystore_open(const char *path, bool create, custos_keystore_t **out);
void custos_keystore_close(custos_keystore_t *ks);

/* Opens the store the configuration names (either driver); err (may be NULL) gets a short reason on failure.
 * create as above (PostgreSQL: the schema is always made). Same return codes, plus CUSTOS_ETIMEDOUT (the
 * store stayed locked past storage.busy_timeout_ms). */
int custos_keystore_open_config(const custos_storage_config_t *sc, bool create, custos_keystore_t **out, char *err,
                                size_t errlen);

/* The store under ks (borrowed), e.g. to read its change counter. */
struct custos_store *custos_keystore_store(custos_keystore_t *ks);
/* The store's last error in words (e.g. "database is locked"); never values. */
const char *custos_keystore_errmsg(const custos_keystore_t *ks);

/* Creates a key from spec at now_s: writes its plaintext (CUSTOS_KEY_TEXT_LEN chars + NUL) to key_out
 * (shown once; the caller must wipe it) and the stored record to *rec (may be NULL). Returns 0,
 * CUSTOS_EINVAL (bad spec), CUSTOS_EIO, or the hook's error. */
int custos_keystore_key_create(custos_keystore_t *ks, const custos_key_spec_t *spec, int64_t now_s,
                               custos_keystore_commit_fn hook, void *hook_ud, char key_out[CUSTOS_KEY_TEXT_LEN + 1],
                               custos_key_record_t *rec);

/* Calls fn for every key (revoked ones included), oldest first; stops early when fn returns non-zero
 * and returns that value. Returns 0, CUSTOS_ETOOBIG (more than CUSTOS_KEYSTORE_MAX_ROWS) or CUSTOS_EIO. */
int custos_keystore_key_list(custos_keystore_t *ks, int (*fn)(void *ud, const custos_key_record_t *r), void *ud);

/* Finds the key whose digest is d (revoked or not). Returns 0, CUSTOS_ENOTFOUND or CUSTOS_EIO. */
int custos_keystore_key_find(custos_keystore_t *ks, const unsigned char d[32], custos_key_record_t *rec);

/* Revokes key id at now_s. Returns 0, CUSTOS_ENOTFOUND (no such key, or already revoked), CUSTOS_EIO or
 * the hook's error. */
int custos_keystore_key_revoke(custos_keystore_t *ks, const char *id, int64_t now_s, custos_keystore_commit_fn hook,
                               void *hook_ud);

/* Role assignments: create (fills rec->id and rec->created_s; other fields from rec), list, delete.
 * Return codes as for keys. */
int custos_keystore_ra_create(custos_keystore_t *ks, custos_ra_record_t *rec, int64_t now_s,
                              custos_keystore_commit_fn hook, void *hook_ud);
int custos_keystore_ra_list(custos_keystore_t *ks, int (*fn)(void *ud, const custos_ra_record_t *r), void *ud);
int custos_keystore_ra_delete(custos_keystore_t *ks, const char *id, custos_keystore_commit_fn hook, void *hook_ud);

/* "principal", "group", "app_id". */
const char *custos_keystore_ra_kind_name(custos_ra_kind_t k);

#endif
