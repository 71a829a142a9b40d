/* SPDX-License-Identifier: Apache-2.0
 * KEK providers: dispatch, and the `local` provider (one 32-byte file per version, mode 0600, in a 0700
 * directory; loaded into the secure heap on first use and kept until close). */
#include "crypto/kek_internal.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCAL_CACHE 64 /* versions kept loaded (a ring keyed by version) */

typedef struct {
    char *dir;
    uint32_t ver[LOCAL_CACHE];
    unsigned char *key[LOCAL_CACHE]; /* secure heap */
} local_t;

static void local_label(const custos_kek_t *k, uint32_t v, char *out, size_t cap)
{
    const local_t *l = k->impl;
    snprintf(out, cap, "%s/kek-%u.key", l->dir, v);
}

static void local_forget(local_t *l, uint32_t v)
{
    size_t slot = v % LOCAL_CACHE;
    if (l->ver[slot] == v && l->key[slot]) {
        custos_secure_free(l->key[slot], CUSTOS_KEY_LEN);
        l->key[slot] = NULL;
        l->ver[slot] = 0;
    }
}

/* Loads version v (caller holds k->mu). Returns the cached key or NULL with *rc set. */
static unsigned char *local_load(custos_kek_t *k, uint32_t v, int *rc, char *err, size_t errlen)
{
    local_t *l = k->impl;
    size_t slot = v % LOCAL_CACHE;
    if (l->ver[slot] == v && l->key[slot])
        return l->key[slot];
    char path[4200];
    local_label(k, v, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *rc = errno == ENOENT ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
        if (err && errlen)
            snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    unsigned char *key = NULL;
    *rc = CUSTOS_EIO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != CUSTOS_KEY_LEN) {
        if (err && errlen)
            snprintf(err, errlen, "key file %s: not a regular file of %d bytes", path, CUSTOS_KEY_LEN);
        goto out;
    }
    if (st.st_mode & 077) {
        if (err && errlen)
            snprintf(err, errlen, "key file %s: mode %03o lets others read it; it must be 0600", path,
                     (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (!(key = custos_secure_alloc(CUSTOS_KEY_LEN))) {
        *rc = CUSTOS_ENOMEM;
        goto out;
    }
    if (read(fd, key, CUSTOS_KEY_LEN) != CUSTOS_KEY_LEN) {
        if (err && errlen)
            snprintf(err, errlen, "key file %s: short read", path);
        custos_secure_free(key, CUSTOS_KEY_LEN);
        key = NULL;
        goto out;
    }
    if (l->key[slot])
        custos_secure_free(l->key[slot], CUSTOS_KEY_LEN);
    l->key[slot] = key;
    l->ver[slot] = v;
    *rc = 0;
out:
    close(fd);
    return key;
}

static int local_exists(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    int rc = 0;
    pthread_mutex_lock(&k->mu);
    (void)local_load(k, v, &rc, err, errlen);
    pthread_mutex_unlock(&k->mu);
    return rc;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CUSTOS_EIO;
    int rc = fsync(fd) == 0 ? 0 : CUSTOS_EIO;
    close(fd);
    return rc;
}

/* Atomic against other processes creating the same version (replicas starting together on one key directory): the
 * key is written and synced under a unique temporary name, then link(2)ed to its final name, which fails with EEXIST
 * if another process won. A reader therefore sees no file or a complete one, never an empty or short one. */
static int local_create(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    local_t *l = k->impl;
    char path[4200], tmp[4300];
    local_label(k, v, path, sizeof(path));
    unsigned char *key = custos_secure_alloc(CUSTOS_KEY_LEN);
    if (!key)
        return CUSTOS_ENOMEM;
    int rc = CUSTOS_EIO;
    unsigned char r[8];
    if (RAND_priv_bytes(key, CUSTOS_KEY_LEN) != 1 || RAND_bytes(r, sizeof(r)) != 1)
        goto out;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld-%02x%02x%02x%02x%02x%02x%02x%02x", path, (long)getpid(), r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "key file %s: %s", tmp, strerror(errno));
        goto out;
    }
    bool ok = write(fd, key, CUSTOS_KEY_LEN) == CUSTOS_KEY_LEN && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        snprintf(err, errlen, "key file %s: cannot write it", tmp);
        unlink(tmp);
        goto out;
    }
    if (link(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        rc = e == EEXIST ? CUSTOS_EAGAIN : CUSTOS_EIO;
        snprintf(err, errlen, "key file %s: %s", path, strerror(e));
        goto out;
    }
    unlink(tmp);
    if (fsync_dir(l->dir) != 0) {
        snprintf(err, errlen, "key file %s: cannot sync its directory", path);
        goto out; /* the file stays: another process may already use it */
    }
    rc = 0;
out:
    custos_secure_free(key, CUSTOS_KEY_LEN);
    return rc;
}

static int local_wrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *dek,
                      unsigned char *out)
{
    int rc = 0;
    if (RAND_bytes(out, CUSTOS_NONCE_LEN) != 1)
        return CUSTOS_EIO;
    pthread_mutex_lock(&k->mu);
    unsigned char *kek = local_load(k, v, &rc, NULL, 0);
    if (kek)
        rc = custos_aead_seal(kek, out, aad, aadlen, dek, CUSTOS_KEY_LEN, out + CUSTOS_NONCE_LEN,
                              out + CUSTOS_NONCE_LEN + CUSTOS_KEY_LEN);
    pthread_mutex_unlock(&k->mu);
    return rc == CUSTOS_ENOTFOUND ? CUSTOS_EKEYGONE : rc;
}

static int local_unwrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *in,
                        unsigned char *dek)
{
    int rc = 0;
    pthread_mutex_lock(&k->mu);
    unsigned char *kek = local_load(k, v, &rc, NULL, 0);
    if (kek)
        rc = custos_aead_open(kek, in, aad, aadlen, in + CUSTOS_NONCE_LEN, CUSTOS_KEY_LEN,
                              in + CUSTOS_NONCE_LEN + CUSTOS_KEY_LEN, dek);
    pthread_mutex_unlock(&k->mu);
    return rc == CUSTOS_ENOTFOUND ? CUSTOS_EKEYGONE : rc;
}

static int local_destroy(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    local_t *l = k->impl;
    char path[4200];
    local_label(k, v, path, sizeof(path));
    pthread_mutex_lock(&k->mu);
    local_forget(l, v);
    pthread_mutex_unlock(&k->mu);
    /* Overwrite before unlinking: on a plain (non copy-on-write) file system the old blocks are gone too;
     * docs/keys.md says what this cannot guarantee (SSDs, snapshots, backups). */
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        return errno == ENOENT ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    }
    unsigned char zero[CUSTOS_KEY_LEN] = {0};
    bool ok = pwrite(fd, zero, sizeof(zero), 0) == (ssize_t)sizeof(zero) && fsync(fd) == 0;
    close(fd);
    if (!ok || unlink(path) != 0 || fsync_dir(l->dir) != 0) {
        snprintf(err, errlen, "key file %s: cannot destroy it: %s", path, strerror(errno));
        return CUSTOS_EIO;
    }
    return 0;
}

static void local_close(custos_kek_t *k)
{
    local_t *l = k->impl;
    if (!l)
        return;
    for (size_t i = 0; i < LOCAL_CACHE; i++)
        custos_secure_free(l->key[i], CUSTOS_KEY_LEN);
    free(l->dir);
    free(l);
}

static const kek_ops_t LOCAL = {"local",    local_label,  local_exists,  local_create,
                                local_wrap, local_unwrap, local_destroy, local_close};

static int local_open(const custos_storage_config_t *sc, custos_kek_t *k, char *err, size_t errlen)
{
    local_t *l = calloc(1, sizeof(*l));
    if (!l || !(l->dir = strdup(sc->key_dir ? sc->key_dir : "custos-keys"))) {
        free(l);
        return CUSTOS_ENOMEM;
    }
    k->impl = l;
    struct stat st;
    if (mkdir(l->dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "key directory %s: %s", l->dir, strerror(errno));
        return CUSTOS_EIO;
    }
    if (stat(l->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "key directory %s: not a directory", l->dir);
        return CUSTOS_EIO;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "key directory %s: mode %03o lets others in; it must be 0700", l->dir,
                 (unsigned)(st.st_mode & 0777));
        return CUSTOS_EIO;
    }
    return 0;
}

/* ---------- dispatch ---------- */

int custos_kek_open(const custos_storage_config_t *sc, custos_kek_t **out, char *err, size_t errlen)
{
    char e[512] = "";
    *out = NULL;
    custos_crypto_init();
    custos_kek_t *k = calloc(1, sizeof(*k));
    if (!k)
        return CUSTOS_ENOMEM;
    pthread_mutex_init(&k->mu, NULL);
    int rc;
    if (sc->kek_provider == CUSTOS_KEK_PKCS11) {
        rc = custos_kek_pkcs11_open(sc, k, e, sizeof(e));
    } else {
        k->ops = &LOCAL;
        rc = local_open(sc, k, e, sizeof(e));
    }
    if (rc != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s", e[0] ? e : custos_strerror(rc));
        custos_kek_close(k);
        return rc;
    }
    *out = k;
    return 0;
}

void custos_kek_close(custos_kek_t *k)
{
    if (!k)
        return;
    if (k->ops)
        k->ops->close(k);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

const char *custos_kek_provider(const custos_kek_t *k)
{
    return k->ops->name;
}

void custos_kek_label(const custos_kek_t *k, uint32_t v, char *out, size_t cap)
{
    k->ops->label(k, v, out, cap);
}

int custos_kek_exists(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    char e[512] = "";
    int rc = k->ops->exists(k, v, e, sizeof(e));
    if (rc != 0 && err && errlen)
        snprintf(err, errlen, "%s", e);
    return rc;
}

int custos_kek_create(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    char e[512] = "";
    int rc = k->ops->create(k, v, e, sizeof(e));
    if (rc != 0 && err && errlen)
        snprintf(err, errlen, "%s", e);
    return rc;
}

int custos_kek_wrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *dek,
                    unsigned char out[CUSTOS_WRAPPED_LEN])
{
    return k->ops->wrap(k, v, aad, aadlen, dek, out);
}

int custos_kek_unwrap(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen,
                      const unsigned char in[CUSTOS_WRAPPED_LEN], unsigned char *dek)
{
    return k->ops->unwrap(k, v, aad, aadlen, in, dek);
}

int custos_kek_destroy(custos_kek_t *k, uint32_t v, char *err, size_t errlen)
{
    char e[512] = "";
    int rc = k->ops->destroy(k, v, e, sizeof(e));
    if (rc != 0 && err && errlen)
        snprintf(err, errlen, "%s", e);
    return rc;
}
