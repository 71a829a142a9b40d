/* SPDX-License-Identifier: Apache-2.0
 * JWT verification cost with a cached key: µs per custos_jwt_verify for RS256, PS256, ES256, ES384 and EdDSA
 * (whole verification: split, base64url, header and payload JSON, signature, claims, claims object).
 * Built and run by bench/jwt. Usage: jwt_bench [SECONDS_PER_ALG] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/common/jwt_mint.h"
#include "auth/jwks.h"
#include "auth/jwt.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    static const struct {
        const char *alg, *kind, *kid;
    } cases[] = {
        {"RS256", "RSA", "rsa"},     {"PS256", "RSA", "rsa"},    {"ES256", "P-256", "ec"},
        {"ES384", "P-384", "ec384"}, {"EdDSA", "Ed25519", "ed"},
    };
    EVP_PKEY *keys[5];
    char *jwks = strdup("{\"keys\":["), *tmp;
    for (int i = 0; i < 5; i++) {
        keys[i] = i == 1 ? keys[0] : mint_keygen(cases[i].kind);
        if (i == 1)
            continue;
        char *j = mint_jwk(keys[i], cases[i].kid, NULL);
        if (asprintf(&tmp, "%s%s%s", jwks, i ? "," : "", j) < 0)
            return 1;
        free(jwks);
        free(j);
        jwks = tmp;
    }
    if (asprintf(&tmp, "%s]}", jwks) < 0)
        return 1;
    free(jwks);
    custos_jwks_t *set = NULL;
    if (custos_jwks_parse(tmp, strlen(tmp), &set, NULL, NULL) != 0)
        return 1;
    free(tmp);
    /* an Entra-like access token payload */
    uint64_t now = (uint64_t)time(NULL);
    char payload[1024];
    snprintf(payload, sizeof(payload),
             "{\"aud\":\"https://cognitiveservices.azure.com\",\"iss\":\"https://login.microsoftonline.com/"
             "72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0\",\"iat\":%llu,\"nbf\":%llu,\"exp\":%llu,\"aio\":\"E2RgYJg\","
             "\"azp\":\"04b07795-8ddb-461a-bbee-02f9e1bf7b46\",\"azpacr\":\"0\",\"name\":\"Alice\",\"oid\":"
             "\"6b7e3c0a-1111-2222-3333-444455556666\",\"preferred_username\":\"alice@contoso.com\",\"rh\":\"0.AX\","
             "\"roles\":[\"Inference.User\"],\"groups\":[\"a1\",\"b2\"],\"amr\":[\"pwd\",\"mfa\"],\"scp\":"
             "\"user_impersonation\",\"sub\":\"abc\",\"tid\":\"72f988bf-86f1-41af-91ab-2d7cd011db47\",\"uti\":\"x\","
             "\"ver\":\"2.0\"}",
             (unsigned long long)now - 60, (unsigned long long)now - 60, (unsigned long long)now + 3600);
    static const char *const auds[] = {"https://cognitiveservices.azure.com"};
    custos_jwt_policy_t pol = {
        .issuer = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
        .audiences = auds,
        .n_audiences = 1,
        .clock_skew_s = 60,
    };
    printf("| alg | key | token bytes | µs per verification | verifications/s (1 core) |\n|---|---|---|---|---|\n");
    for (int i = 0; i < 5; i++) {
        char *tok = mint_token(cases[i].alg, keys[i], cases[i].kid, payload);
        size_t len = strlen(tok);
        custos_jwt_claims_t *c = NULL;
        const char *why;
        if (custos_jwt_verify(set, tok, len, &pol, now, &c, &why) != 0) {
            fprintf(stderr, "%s: %s\n", cases[i].alg, why);
            return 1;
        }
        custos_jwt_claims_free(c);
        unsigned long n = 0;
        double t0 = now_s(), t1;
        do {
            for (int k = 0; k < 50; k++) {
                custos_jwt_verify(set, tok, len, &pol, now, &c, &why);
                custos_jwt_claims_free(c);
            }
            n += 50;
            t1 = now_s();
        } while (t1 - t0 < secs);
        double us = (t1 - t0) * 1e6 / (double)n;
        printf("| %s | %s | %zu | %.1f | %.0f |\n", cases[i].alg, cases[i].kind, len, us, 1e6 / us);
        free(tok);
    }
    custos_jwks_unref(set);
    return 0;
}
