/* SPDX-License-Identifier: Apache-2.0
 * Encryption at rest (docs/keys.md): envelope encryption of stored values.
 *
 *   record  --AES-256-GCM(DEK, random 96-bit nonce, AAD = ns|id|seal version)-->  ct||tag
 *   DEK     --AES-256-GCM(KEK vN, random 96-bit nonce, AAD = ns|id|N)-------------> wrapped (60 bytes)
 *
 * One fresh 256-bit data key (DEK) per record; the DEK is wrapped by a key-encryption key (KEK) version
 * held by a provider: `local` (32-byte files kek-N.key, mode 0600, in storage.encryption.key_dir, created at
 * first start) or `pkcs11` (an AES key inside an HSM token that never leaves it; the token wraps and
 * unwraps with CKM_AES_GCM). Rotation adds a KEK version used for new writes; rewrap re-wraps DEKs under the
 * current version without touching content; destroy deletes a version's KEK and its wrapped DEKs
 * (crypto-shredding). Key material lives in OpenSSL's secure heap (mlocked, cleansed on free) and never
 * reaches a log or an error message.
 *
 * Threads: a custos_kek_t / custos_vault_t may be shared (PKCS#11 calls are serialised by a mutex; the local
 * key cache by another); a vault uses the store handle it was given, so one vault per thread. */
#ifndef CUSTOS_CRYPTO_CRYPTO_H
#define CUSTOS_CRYPTO_CRYPTO_H

#include "config/config.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUSTOS_KEY_LEN 32
#define CUSTOS_NONCE_LEN 12
#define CUSTOS_TAG_LEN 16
#define CUSTOS_WRAPPED_LEN (CUSTOS_NONCE_LEN + CUSTOS_KEY_LEN + CUSTOS_TAG_LEN) /* 60 */
#define CUSTOS_SEAL_MAX (1u << 20)                                              /* plaintext per record */
#define CUSTOS_KEK_MAX_VERSION 100000
#define CUSTOS_VAULT_NS_MAX 32 /* [a-z0-9_.-]{1,32} */
#define CUSTOS_VAULT_ID_MAX 128

/* Sets up the secure heap once per process (idempotent, thread-safe). Returns true when allocations are
 * mlocked (false: the heap could not be locked, e.g. RLIMIT_MEMLOCK; key material then lives in ordinary
 * memory and is still cleansed). */
bool custos_crypto_init(void);
/* Zeroed secure memory of n bytes, or NULL; free with custos_secure_free (cleanses). */
void *custos_secure_alloc(size_t n);
void custos_secure_free(void *p, size_t n);

/* AES-256-GCM, 128-bit tag. ct has room for n bytes. open returns CUSTOS_EDECRYPT on a tag mismatch. */
int custos_aead_seal(const unsigned char key[CUSTOS_KEY_LEN], const unsigned char nonce[CUSTOS_NONCE_LEN],
                     const void *aad, size_t aadlen, const void *pt, size_t n, unsigned char *ct,
                     unsigned char tag[CUSTOS_TAG_LEN]);
int custos_aead_open(const unsigned char key[CUSTOS_KEY_LEN], const unsigned char nonce[CUSTOS_NONCE_LEN],
                     const void *aad, size_t aadlen, const unsigned char *ct, size_t n,
                     const unsigned char tag[CUSTOS_TAG_LEN], void *pt);

/* ---------- KEK providers ---------- */

typedef struct custos_kek custos_kek_t;

/* Opens the provider the storage section names. local: makes key_dir (0700) if missing. pkcs11: loads the
 * module, finds the token by label and logs in with the PIN. Returns 0 or CUSTOS_EIO / CUSTOS_EINVAL /
 * CUSTOS_ENOTFOUND (no such token) / CUSTOS_EUNAVAIL (wrong or locked PIN) with err filled (no secrets). */
int custos_kek_open(const custos_storage_config_t *sc, custos_kek_t **out, char *err, size_t errlen);
void custos_kek_close(custos_kek_t *k);
const char *custos_kek_provider(const custos_kek_t *k);
/* Provider-side name of version v (local: file path; pkcs11: object label) for listings. */
void custos_kek_label(const custos_kek_t *k, uint32_t v, char *out, size_t cap);
/* 0 when version v's key is present, CUSTOS_ENOTFOUND when not, CUSTOS_EIO on provider errors (err). */
int custos_kek_exists(custos_kek_t *k, uint32_t v, char *err, size_t errlen);
/* Generates version v (fails with CUSTOS_EAGAIN if it exists). */
int custos_kek_create(custos_kek_t *k, uint32_t v, char *err, size_t errlen);
/* Wraps/unwraps a DEK under version v with aad. unwrap: CUSTOS_EDECRYPT (bad tag), CUSTOS_EKEYGONE (no key). */
int custos_kek_wrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *dek,
                    unsigned char out[CUSTOS_WRAPPED_LEN]);
int custos_kek_unwrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen,
                      const unsigned char in[CUSTOS_WRAPPED_LEN], unsigned char *dek);
/* Deletes version v's key (local: overwrite, fsync, unlink; pkcs11: C_DestroyObject). */
int custos_kek_destroy(custos_kek_t *k, uint32_t v, char *err, size_t errlen);

/* ---------- the vault: sealed records in the store ---------- */

typedef struct custos_vault custos_vault_t;

/* Opens the KEK provider and the key versions recorded in st. The first start (no versions recorded) creates
 * version 1 (or adopts an existing version-1 key). Fails when the current version's key is missing (a
 * deleted key file, a different token) rather than silently starting a new key. st stays owned by the
 * caller and must outlive the vault. Returns 0 or a negative code with err filled. */
int custos_vault_open(const custos_storage_config_t *sc, custos_store_t *st, custos_vault_t **out, char *err,
                      size_t errlen);
/* Same with an already opened provider (not owned). */
int custos_vault_open_with(custos_kek_t *k, custos_store_t *st, custos_vault_t **out, char *err, size_t errlen);
void custos_vault_close(custos_vault_t *v);
uint32_t custos_vault_current(const custos_vault_t *v);

/* Seals pt[0,n) as record (ns, id) (replacing one with the same key) at now_s; expires_s 0 = never.
 * Returns 0, CUSTOS_EINVAL (bad ns/id, n > CUSTOS_SEAL_MAX), CUSTOS_EIO. */
int custos_vault_put(custos_vault_t *v, const char *ns, const char *id, const void *pt, size_t n, int64_t now_s,
                     int64_t expires_s);
/* Unseals record (ns, id) into a malloc'd buffer *out (n bytes plus a NUL; caller cleanses and frees).
 * Returns 0, CUSTOS_ENOTFOUND, CUSTOS_EDECRYPT (tampered value or wrapped key), CUSTOS_EKEYGONE (its KEK
 * version was destroyed), CUSTOS_EIO. */
int custos_vault_get(custos_vault_t *v, const char *ns, const char *id, unsigned char **out, size_t *n);
int custos_vault_delete(custos_vault_t *v, const char *ns, const char *id);

/* Adds version current+1 in the provider and makes it current. */
int custos_vault_rotate(custos_vault_t *v, int64_t now_s, uint32_t *newv, char *err, size_t errlen);
/* Re-wraps every DEK not under the current version (content untouched). *count = records re-wrapped;
 * *failed = records whose DEK could not be unwrapped (left as they are). */
int custos_vault_rewrap(custos_vault_t *v, int64_t *count, int64_t *failed);
/* Destroys version ver: refuses the current version (CUSTOS_EINVAL: rotate first) and unknown or already
 * destroyed ones (CUSTOS_ENOTFOUND). Wrapped DEKs under ver are deleted, then the KEK; *count = records made
 * unreadable. */
int custos_vault_destroy(custos_vault_t *v, uint32_t ver, int64_t now_s, int64_t *count, char *err, size_t errlen);

typedef struct custos_kek_version_info {
    uint32_t version;
    char provider[16];
    char label[256];
    char state[16]; /* "active" | "destroyed" */
    int64_t created_s, destroyed_s;
    int64_t records; /* sealed records wrapped under it */
    bool current;
} custos_kek_version_info_t;
int custos_vault_versions(custos_vault_t *v, int (*fn)(void *ud, const custos_kek_version_info_t *i), void *ud);

/* Retention: deletes sealed records of namespace ns older than max_age_s (created <= now - max_age_s;
 * max_age_s < 0 deletes all of ns) and any record whose expires_s has passed. *count = records deleted.
 * Needs only the store (no key). */
int custos_vault_purge(custos_store_t *st, const char *ns, int64_t now_s, int64_t max_age_s, int64_t *count);

/* The namespace request/response content is stored under (held outputs and the like). */
#define CUSTOS_VAULT_NS_CONTENT "content"
/* Backend credentials stored with `custos secrets put`. */
#define CUSTOS_VAULT_NS_SECRET "secret"

#endif
