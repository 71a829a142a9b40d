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

static const char *presented_key(const custos_http_req_t *req, size_t *len)
{
    const char *k = custos_http_req_header(req, "api-key", len);
    if (k)
        return k;
    size_t alen = 0;
    const char *a = custos_http_req_header(req, "authorization", &alen);
    if (a && alen > 7 && strncasecmp(a, "Bearer ", 7) == 0) {
        a += 7;
        alen -= 7;
        while (alen && *a == ' ') {
            a++;
            alen--;
        }
        *len = alen;
        return a;
    }
    return NULL;
}

custos_auth_result_t custos_auth_apikey_check(const custos_config_t *cfg, const custos_http_req_t *req,
                                              const char **key_name)
{
    size_t len = 0;
    const char *k = presented_key(req, &len);
    if (!k || len == 0)
        return CUSTOS_AUTH_MISSING;
    if (len > CUSTOS_AUTH_MAX_KEY_BYTES)
        return CUSTOS_AUTH_INVALID;
    unsigned char d[32];
    if (custos_auth_sha256(k, len, d) < 0)
        return CUSTOS_AUTH_INVALID;
    const char *found = NULL;
    /* Every digest is compared in constant time; we do not stop at the first match. */
    for (size_t i = 0; i < cfg->identity.n_api_keys; i++) {
        if (CRYPTO_memcmp(d, cfg->identity.api_keys[i].sha256, 32) == 0 && !found)
            found = cfg->identity.api_keys[i].name;
    }
    OPENSSL_cleanse(d, sizeof(d));
    if (!found)
        return CUSTOS_AUTH_INVALID;
    if (key_name)
        *key_name = found;
    return CUSTOS_AUTH_OK;
}
