/* SPDX-License-Identifier: Apache-2.0
 * Backend credentials: static bearer tokens from the config, OAuth2 client-credentials tokens from the
 * background fetcher (auth/oidc.c), and the token-endpoint response parser. */
#include "auth/upstream_cred.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "auth/oidc_internal.h"
#include "util/err.h"
#include "util/json.h"

#define MAX_TOKEN_BYTES 16384

/* prefix + token[0, len), NUL-terminated, in a; NULL when out of memory */
static char *arena_join(custos_arena_t *a, const char *prefix, size_t plen, const char *token, size_t len)
{
    char *v = custos_arena_alloc(a, plen + len + 1);
    if (v) {
        memcpy(v, prefix, plen);
        memcpy(v + plen, token, len);
        v[plen + len] = 0;
    }
    return v;
}

int custos_auth_backend_credential(const custos_backend_config_t *b, custos_arena_t *a, const char **value, size_t *len)
{
    *value = NULL;
    *len = 0;
    if (b->oauth2)
        return custos_oidc_oauth2_value(b->oauth2, a, value, len);
    if (b->bearer) {
        if (!(*value = arena_join(a, "Bearer ", 7, b->bearer, b->bearer_len)))
            return CUSTOS_ENOMEM;
        *len = b->bearer_len + 7;
    }
    return 0;
}

int custos_auth_backend_header(const custos_backend_config_t *b, custos_arena_t *a, const char **name, size_t *name_len,
                               const char **value, size_t *value_len)
{
    *name = NULL;
    *name_len = 0;
    int rc = custos_auth_backend_credential(b, a, value, value_len);
    if (rc < 0)
        return rc;
    if (*value) {
        *name = "authorization";
        *name_len = 13;
        return 0;
    }
    if (!b->api_key)
        return 0;
    bool azure = b->provider == CUSTOS_PROVIDER_AZURE;
    if (!(*value = azure ? arena_join(a, "", 0, b->api_key, b->api_key_len)
                         : arena_join(a, "Bearer ", 7, b->api_key, b->api_key_len)))
        return CUSTOS_ENOMEM;
    *value_len = b->api_key_len + (azure ? 0 : 7);
    *name = azure ? "api-key" : "authorization";
    *name_len = azure ? 7 : 13;
    return 0;
}

int custos_oauth2_parse_token_response(const char *body, size_t len, char **token, size_t *token_len,
                                       uint32_t *expires_in_s)
{
    json_object *o = NULL, *v;
    int rc = CUSTOS_EINVAL;
    *token = NULL;
    *token_len = 0;
    *expires_in_s = 0;
    int prc = custos_json_parse(body, len, 8, &o, NULL, NULL);
    if (prc == CUSTOS_ENOMEM)
        return prc;
    if (prc < 0 || !o || !json_object_is_type(o, json_type_object))
        goto done;
    if (!json_object_object_get_ex(o, "access_token", &v) || !json_object_is_type(v, json_type_string))
        goto done;
    const char *t = json_object_get_string(v);
    size_t tl = (size_t)json_object_get_string_len(v);
    if (tl == 0 || tl > MAX_TOKEN_BYTES)
        goto done;
    for (size_t i = 0; i < tl; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
            goto done;
    if (json_object_object_get_ex(o, "token_type", &v) &&
        (!json_object_is_type(v, json_type_string) || strcasecmp(json_object_get_string(v), "Bearer") != 0))
        goto done;
    int64_t exp = 3600;
    if (json_object_object_get_ex(o, "expires_in", &v)) {
        if (json_object_is_type(v, json_type_int)) {
            exp = json_object_get_int64(v);
        } else if (json_object_is_type(v, json_type_string)) { /* Entra v1 sends "3599" */
            const char *s = json_object_get_string(v);
            char *end;
            if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 9)
                goto done;
            exp = strtoll(s, &end, 10);
        } else {
            goto done;
        }
    }
    if (exp < 1 || exp > 31536000)
        goto done;
    if (!(*token = malloc(tl + 1))) {
        rc = CUSTOS_ENOMEM;
        goto done;
    }
    memcpy(*token, t, tl + 1);
    *token_len = tl;
    *expires_in_s = (uint32_t)exp;
    rc = 0;
done:
    if (o) {
        /* the token text lives in json-c's string; json-c frees it without cleansing, accepted here */
        json_object_put(o);
    }
    return rc;
}
