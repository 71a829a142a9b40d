/* SPDX-License-Identifier: Apache-2.0
 * The governance log's Ed25519 signing key: generated at first start, its private seed sealed in the store (envelope
 * encryption under the KEK, crypto/crypto.h), its public key written next to the log for auditors. */
#include "audit/govlog.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_NS "govlog"
#define KEY_ID "signing-key"
#define SEED_LEN 32

static int get_seed(custos_vault_t *v, unsigned char seed[SEED_LEN], char *err, size_t errlen)
{
    unsigned char *val = NULL;
    size_t n = 0;
    int rc = custos_vault_get(v, KEY_NS, KEY_ID, &val, &n);
    if (rc == 0 && n != SEED_LEN) {
        snprintf(err, errlen, "the stored governance-log signing key has the wrong length");
        rc = CUSTOS_EPROTO;
    } else if (rc == 0) {
        memcpy(seed, val, SEED_LEN);
    } else if (rc != CUSTOS_ENOTFOUND) {
        snprintf(err, errlen, "cannot unseal the governance-log signing key: %s", custos_strerror(rc));
    }
    if (val) {
        OPENSSL_cleanse(val, n);
        free(val);
    }
    return rc;
}

int custos_govlog_signing_seed(const custos_storage_config_t *sc, bool create, unsigned char seed[32], bool *replaced,
                               char *err, size_t errlen)
{
    if (replaced)
        *replaced = false;
    custos_store_t *st = NULL;
    custos_vault_t *v = NULL;
    EVP_PKEY *k = NULL;
    char e[512] = "";
    int rc = custos_store_open_config(sc, true, &st, e, sizeof(e));
    if (rc != 0) {
        snprintf(err, errlen, "storage: %s", e);
        goto out;
    }
    if ((rc = custos_vault_open(sc, st, &v, e, sizeof(e))) != 0) {
        snprintf(err, errlen, "encryption key: %s", e);
        goto out;
    }
    rc = get_seed(v, seed, err, errlen);
    if ((rc != CUSTOS_ENOTFOUND && rc != CUSTOS_EKEYGONE) || !create)
        goto out;
    /* first start: a new key, made once. Processes starting together on one store take turns in a write
     * transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock) and the later ones find the key stored
     * (without it both would store one and the first would sign with a key the store no longer holds). */
    if ((rc = custos_store_begin(st)) != 0 ||
        (custos_store_driver(st) == CUSTOS_STORE_POSTGRES &&
         (rc = custos_store_exec(st, "SELECT pg_advisory_xact_lock(7302114003)", NULL, 0, NULL, NULL, NULL)) != 0)) {
        snprintf(err, errlen, "cannot store the governance-log signing key: %s", custos_store_errmsg(st));
        goto out;
    }
    rc = get_seed(v, seed, err, errlen);
    if (rc != CUSTOS_ENOTFOUND && rc != CUSTOS_EKEYGONE) {
        custos_store_rollback(st);
        goto out;
    }
    if (rc == CUSTOS_EKEYGONE) {
        /* its KEK version was destroyed (`custos kek destroy` without a rewrap): the key is gone for good. A new one
         * is made; checkpoints before this point verify with the old public key (docs/governance-log.md). */
        CUSTOS_WARN("governance log: the signing key was crypto-shredded with its KEK version; creating a new one "
                    "(keep the old public key to verify older checkpoints)");
        if (replaced)
            *replaced = true;
    }
    size_t sl = SEED_LEN;
    k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k || EVP_PKEY_get_raw_private_key(k, seed, &sl) != 1 || sl != SEED_LEN) {
        snprintf(err, errlen, "cannot generate the governance-log signing key");
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    if ((rc = custos_vault_put(v, KEY_NS, KEY_ID, seed, SEED_LEN, (int64_t)time(NULL), 0)) != 0 ||
        (rc = custos_store_commit(st)) != 0) {
        snprintf(err, errlen, "cannot store the governance-log signing key: %s", custos_strerror(rc));
        goto out;
    }
    OPENSSL_cleanse(seed, SEED_LEN);
    if ((rc = get_seed(v, seed, err, errlen)) == 0)
        CUSTOS_INFO("governance log: created its signing key (sealed in the store as %s/%s)", KEY_NS, KEY_ID);
out:
    if (rc != 0)
        OPENSSL_cleanse(seed, SEED_LEN);
    EVP_PKEY_free(k);
    custos_vault_close(v);
    custos_store_close(st);
    return rc;
}

/* Writes pem to path unless it already holds exactly that (atomic replace through a temporary file); a different
 * key found there is kept as "<path>.<unix-ms>" (older checkpoints verify with it). */
static int write_pub(const char *path, const char *pem)
{
    size_t n = strlen(pem);
    char cur[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, cur, sizeof(cur));
        close(fd);
        if (r == (ssize_t)n && memcmp(cur, pem, n) == 0)
            return 0;
        char *old = NULL;
        if (asprintf(&old, "%s.%llu", path, (unsigned long long)custos_wall_ms()) < 0)
            return CUSTOS_ENOMEM;
        int lrc = link(path, old);
        free(old);
        if (lrc != 0)
            return CUSTOS_EIO;
    }
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0)
        return CUSTOS_ENOMEM;
    int rc = CUSTOS_EIO;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, pem, n) == (ssize_t)n && fsync(fd) == 0 && close(fd) == 0) {
            fd = -1;
            rc = rename(tmp, path) == 0 ? 0 : CUSTOS_EIO;
        }
        if (fd >= 0)
            close(fd);
    }
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

int custos_govlog_enable_signing(const custos_config_t *cfg, char *err, size_t errlen)
{
    unsigned char seed[SEED_LEN];
    char *pem = NULL, *pub = NULL, kid[CUSTOS_GOVLOG_KEY_ID_LEN + 1];
    bool replaced = false;
    int rc = custos_govlog_signing_seed(&cfg->storage, true, seed, &replaced, err, errlen);
    if (rc != 0)
        return rc;
    rc = custos_govlog_public_key_pem(seed, &pem, kid);
    if (rc == 0 && asprintf(&pub, "%s.pub", cfg->diagnostics.governance_log) < 0) {
        pub = NULL;
        rc = CUSTOS_ENOMEM;
    }
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if ((rc = write_pub(pub, pem)) != 0) {
        snprintf(err, errlen, "cannot write the public key %s: %s", pub, strerror(errno));
        goto out;
    }
    if (replaced) {
        char details[96];
        snprintf(details, sizeof(details), "{\"reason\":\"kek_destroyed\",\"key\":\"%s\"}", kid);
        if ((rc = custos_governance_event("system", "govlog.key_replaced", kid, details)) != 0) {
            snprintf(err, errlen, "cannot record the signing key's replacement: %s", custos_strerror(rc));
            goto out;
        }
    }
    if ((rc = custos_govlog_global_set_signing_key(seed)) != 0) {
        snprintf(err, errlen, "cannot write a signed checkpoint: %s", custos_strerror(rc));
        goto out;
    }
    CUSTOS_INFO("governance log: signed checkpoints with key %s (public key in %s)", kid, pub);
out:
    OPENSSL_cleanse(seed, sizeof(seed));
    free(pem);
    free(pub);
    return rc;
}
