/* SPDX-License-Identifier: Apache-2.0 */
#include "auth/apikey.h"
#include "util/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

static EVP_MD *g_sha256;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fetch_md(void)
{
    /* explicit fetch once: implicit fetches in OpenSSL 3 take a global lock on every call */
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int custos_auth_sha256(const void *data, size_t len, unsigned char out[32])
{
    pthread_once(&g_once, fetch_md);
    unsigned int n = 0;
    if (!g_sha256 || !EVP_Digest(data, len, out, &n, g_sha256, NULL) || n != 32)
        return CUSTOS_ENOMEM;
    return 0;
}
