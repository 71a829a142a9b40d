/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for JWT / JWK parsing (no network). The first byte picks a mode:
 *   0: JWKS document   1: compact token against a fixed key set   2: one JWK object
 *   3: OAuth2 token response   4: header NUL payload, signed here with Ed25519 so the claim checks are reached. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "../common/jwt_mint.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "auth/upstream_cred.h"
#include "util/json.h"

static custos_jwks_t *g_keys;
static EVP_PKEY *g_ed;

static void init(void)
{
    EVP_PKEY *rsa = mint_keygen("RSA"), *ec = mint_keygen("P-256");
    g_ed = mint_keygen("Ed25519");
    char *a = mint_jwk(rsa, "rsa", NULL), *b = mint_jwk(ec, "ec", "ES256"), *c = mint_jwk(g_ed, "ed", NULL), *doc;
    if (asprintf(&doc, "{\"keys\":[%s,%s,%s]}", a, b, c) < 0 ||
        custos_jwks_parse(doc, strlen(doc), &g_keys, NULL, NULL))
        abort();
    free(a);
    free(b);
    free(c);
    free(doc);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

static const char *const auds[] = {"api://custos"};
static const custos_jwt_policy_t pol = {.issuer = "https://idp.test",
                                        .audiences = auds,
                                        .n_audiences = 1,
                                        .clock_skew_s = 60,
                                        .max_token_age_s = 3600,
                                        .principal_claim = "upn"};

static void verify(const char *tok, size_t len)
{
    custos_jwt_claims_t *c = NULL;
    const char *why = NULL;
    char iss[256];
    int rc = custos_jwt_verify(g_keys, tok, len, &pol, 1800000000u, &c, &why);
    if ((rc == 0) != (c != NULL) || !why)
        abort();
    if (c) {
        if (!c->principal || !c->iss)
            abort();
        custos_jwt_claims_free(c);
    }
    (void)custos_jwt_looks_like_jwt(tok, len);
    (void)custos_jwt_peek_issuer(tok, len, 0, iss, sizeof(iss));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_keys)
        init();
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: {
        custos_jwks_t *s = NULL;
        if (custos_jwks_parse(in, n, &s, NULL, NULL) == 0) {
            for (size_t i = 0; i < custos_jwks_count(s); i++)
                if (!custos_jwks_at(s, i)->pkey)
                    abort();
            custos_jwks_unref(s);
        }
        break;
    }
    case 1:
        verify(in, n);
        break;
    case 2: {
        json_object *o = NULL;
        if (custos_json_parse(in, n, 16, &o, NULL, NULL) == 0) {
            custos_jwk_t k;
            if (custos_jwk_parse(o, &k, NULL) == 0)
                custos_jwk_dispose(&k);
            json_object_put(o);
        }
        break;
    }
    case 3: {
        char *t = NULL;
        size_t tl;
        uint32_t e;
        if (custos_oauth2_parse_token_response(in, n, &t, &tl, &e) == 0)
            free(t);
        break;
    }
    default: {
        const char *nul = memchr(in, 0, n);
        if (!nul || n > 8192)
            break;
        char *hdr = strndup(in, (size_t)(nul - in)), *pay = strndup(nul + 1, n - (size_t)(nul - in) - 1);
        char *tok = hdr && pay ? mint_token_hdr("EdDSA", g_ed, NULL, 0, hdr, pay) : NULL;
        if (tok)
            verify(tok, strlen(tok));
        free(tok);
        free(hdr);
        free(pay);
        break;
    }
    }
    return 0;
}
