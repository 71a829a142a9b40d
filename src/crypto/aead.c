/* SPDX-License-Identifier: Apache-2.0
 * AES-256-GCM through OpenSSL EVP (one fetched cipher per process) and the secure heap. */
#include "crypto/crypto.h"
#include "util/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <limits.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool locked;
static EVP_CIPHER *gcm;

static void init_once(void)
{
    /* 64 KiB of mlocked memory, 32-byte granules: room for ~1000 KEKs/DEKs at once. Fails (returns 0) where
     * mlock is not allowed; OPENSSL_secure_malloc then falls back to malloc. */
    locked = CRYPTO_secure_malloc_init(65536, 32) == 1;
    gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

bool custos_crypto_init(void)
{
    pthread_once(&once, init_once);
    return locked;
}

void *custos_secure_alloc(size_t n)
{
    custos_crypto_init();
    return OPENSSL_secure_zalloc(n);
}

void custos_secure_free(void *p, size_t n)
{
    if (p)
        OPENSSL_secure_clear_free(p, n);
}

static int gcm_run(bool enc, const unsigned char *key, const unsigned char *nonce, const void *aad, size_t aadlen,
                   const unsigned char *in, size_t n, unsigned char *out, unsigned char *tag)
{
    custos_crypto_init();
    if (!gcm || n > INT_MAX || aadlen > INT_MAX)
        return CUSTOS_EINVAL;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, rc = CUSTOS_EIO;
    if (!c)
        return CUSTOS_ENOMEM;
    if (EVP_CipherInit_ex2(c, gcm, key, nonce, enc ? 1 : 0, NULL) != 1)
        goto out;
    if (aadlen && EVP_CipherUpdate(c, NULL, &len, aad, (int)aadlen) != 1)
        goto out;
    if (n && EVP_CipherUpdate(c, out, &len, in, (int)n) != 1)
        goto out;
    if (enc) {
        if (EVP_CipherFinal_ex(c, out + len, &len) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, CUSTOS_TAG_LEN, tag) != 1)
            goto out;
    } else {
        if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, CUSTOS_TAG_LEN, tag) != 1)
            goto out;
        if (EVP_CipherFinal_ex(c, out + len, &len) != 1) {
            OPENSSL_cleanse(out, n); /* never hand out unauthenticated plaintext */
            rc = CUSTOS_EDECRYPT;
            goto out;
        }
    }
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int custos_aead_seal(const unsigned char key[CUSTOS_KEY_LEN], const unsigned char nonce[CUSTOS_NONCE_LEN],
                     const void *aad, size_t aadlen, const void *pt, size_t n, unsigned char *ct,
                     unsigned char tag[CUSTOS_TAG_LEN])
{
    return gcm_run(true, key, nonce, aad, aadlen, pt, n, ct, tag);
}

int custos_aead_open(const unsigned char key[CUSTOS_KEY_LEN], const unsigned char nonce[CUSTOS_NONCE_LEN],
                     const void *aad, size_t aadlen, const unsigned char *ct, size_t n,
                     const unsigned char tag[CUSTOS_TAG_LEN], void *pt)
{
    return gcm_run(false, key, nonce, aad, aadlen, ct, n, pt, (unsigned char *)tag);
}
