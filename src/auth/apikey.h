/* SPDX-License-Identifier: Apache-2.0
 * Minimal API-key check: keys from the config (stored as SHA-256 digests), presented as
 * `api-key: K` (Azure) or `Authorization: Bearer K` (OpenAI). [identity] replaces this with the full
 * identity layer. Thread-safe. */
#ifndef CUSTOS_AUTH_APIKEY_H
#define CUSTOS_AUTH_APIKEY_H

#include "config/config.h"
#include "net/http_server.h"

typedef enum {
    CUSTOS_AUTH_OK = 0,
    CUSTOS_AUTH_MISSING, /* no credential presented */
    CUSTOS_AUTH_INVALID, /* a credential was presented and matches no key */
} custos_auth_result_t;

#define CUSTOS_AUTH_MAX_KEY_BYTES 512 /* longer presented keys are rejected without hashing */

/* Checks the request's credential against cfg's keys. On success *key_name (if not NULL) points to the
 * matching key's name, borrowed from cfg. Compares every configured digest with CRYPTO_memcmp. */
custos_auth_result_t custos_auth_apikey_check(const custos_config_t *cfg, const custos_http_req_t *req,
                                              const char **key_name);

/* SHA-256 of data into out. Returns 0 or CUSTOS_ENOMEM. */
int custos_auth_sha256(const void *data, size_t len, unsigned char out[32]);

#endif
