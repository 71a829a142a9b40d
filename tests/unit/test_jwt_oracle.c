/* SPDX-License-Identifier: Apache-2.0
 * Cross-check of the JWT verifier against cjose (a test-only oracle on jansson + OpenSSL): keys and tokens made
 * by cjose verify with ours, tokens and JWKs made by us (OpenSSL) verify with cjose, and both sides reject the
 * same tampered tokens. No json-c header here (jansson is in scope). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjose/cjose.h>
#include <cmocka.h>

#include "../common/jwt_mint.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "util/err.h"

#define NOW 1800000000ull
static const char PAYLOAD[] = "{\"iss\":\"https://idp.test\",\"aud\":\"api://custos\",\"exp\":1800003600,"
                              "\"sub\":\"s\",\"oid\":\"o\",\"roles\":[\"r\"]}";
static const char *const auds[] = {"api://custos"};
static const custos_jwt_policy_t pol = {
    .issuer = "https://idp.test", .audiences = auds, .n_audiences = 1, .clock_skew_s = 60};

/* Our key set with cjose's public JWK (kid added). */
static custos_jwks_t *set_from_cjose(cjose_jwk_t *k, const char *kid)
{
    cjose_err err;
    assert_true(cjose_jwk_set_kid(k, kid, strlen(kid), &err));
    char *pub = cjose_jwk_to_json(k, false, &err), *doc = NULL;
    assert_non_null(pub);
    assert_null(strstr(pub, "\"d\""));
    assert_true(asprintf(&doc, "{\"keys\":[%s]}", pub) > 0);
    custos_jwks_t *s = NULL;
    const char *why = NULL;
    assert_int_equal(custos_jwks_parse(doc, strlen(doc), &s, NULL, &why), 0);
    assert_int_equal(custos_jwks_count(s), 1);
    free(doc);
    free(pub);
    return s;
}

static char *cjose_sign(cjose_jwk_t *k, const char *alg, const char *kid, const char *payload)
{
    cjose_err err;
    cjose_header_t *h = cjose_header_new(&err);
    assert_non_null(h);
    assert_true(cjose_header_set(h, CJOSE_HDR_ALG, alg, &err));
    if (kid)
        assert_true(cjose_header_set(h, CJOSE_HDR_KID, kid, &err));
    cjose_jws_t *jws = cjose_jws_sign(k, h, (const uint8_t *)payload, strlen(payload), &err);
    assert_non_null(jws);
    const char *ser = NULL;
    assert_true(cjose_jws_export(jws, &ser, &err));
    char *out = strdup(ser);
    cjose_jws_release(jws);
    cjose_header_release(h);
    return out;
}

static int ours(const custos_jwks_t *s, const char *tok, const char **why)
{
    custos_jwt_claims_t *c = NULL;
    int rc = custos_jwt_verify(s, tok, strlen(tok), &pol, NOW, &c, why);
    if (rc == 0) {
        assert_string_equal(c->principal, "o");
        assert_int_equal(c->roles.n, 1);
    }
    custos_jwt_claims_free(c);
    return rc;
}

static bool theirs(const char *jwk_json, const char *tok)
{
    cjose_err err;
    cjose_jwk_t *k = cjose_jwk_import(jwk_json, strlen(jwk_json), &err);
    assert_non_null(k);
    cjose_jws_t *jws = cjose_jws_import(tok, strlen(tok), &err);
    bool ok = jws && cjose_jws_verify(jws, k, &err);
    if (jws)
        cjose_jws_release(jws);
    cjose_jwk_release(k);
    return ok;
}

static void tamper(char *tok)
{
    char *d = strchr(tok, '.');
    d[4] = d[4] == 'A' ? 'B' : 'A';
}

static void test_cjose_tokens_verify_with_ours(void **state)
{
    (void)state;
    cjose_err err;
    static const uint8_t e[] = {1, 0, 1};
    cjose_jwk_t *rsa = cjose_jwk_create_RSA_random(2048, e, sizeof(e), &err);
    cjose_jwk_t *p256 = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err);
    cjose_jwk_t *p384 = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_384, &err);
    assert_non_null(rsa);
    assert_non_null(p256);
    assert_non_null(p384);
    custos_jwks_t *srsa = set_from_cjose(rsa, "r"), *s256 = set_from_cjose(p256, "e"),
                  *s384 = set_from_cjose(p384, "f");
    static const struct {
        const char *alg;
        int key; /* 0 rsa, 1 p256, 2 p384 */
    } cases[] = {{"RS256", 0}, {"RS384", 0}, {"RS512", 0}, {"PS256", 0},
                 {"PS384", 0}, {"PS512", 0}, {"ES256", 1}, {"ES384", 2}};
    cjose_jwk_t *keys[] = {rsa, p256, p384};
    custos_jwks_t *sets[] = {srsa, s256, s384};
    const char *kids[] = {"r", "e", "f"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        char *tok = cjose_sign(keys[cases[i].key], cases[i].alg, kids[cases[i].key], PAYLOAD);
        int rc = ours(sets[cases[i].key], tok, &why);
        if (rc != 0)
            fail_msg("%s: %s", cases[i].alg, why);
        tamper(tok);
        assert_int_equal(ours(sets[cases[i].key], tok, &why), CUSTOS_EINVAL);
        free(tok);
    }
    /* an ES512 token is an algorithm we do not support; HS256 with an oct key is refused */
    const char *why;
    cjose_jwk_t *p521 = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_521, &err);
    char *tok = cjose_sign(p521, "ES512", "e", PAYLOAD);
    assert_int_equal(ours(s256, tok, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "unsupported alg");
    free(tok);
    static const uint8_t secret[32] = {1, 2, 3};
    cjose_jwk_t *oct = cjose_jwk_create_oct_spec(secret, sizeof(secret), &err);
    tok = cjose_sign(oct, "HS256", "r", PAYLOAD);
    assert_int_equal(ours(srsa, tok, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "HMAC alg refused");
    free(tok);
    /* our JWK parser skips cjose's P-521 and oct keys in a set */
    char *j1 = cjose_jwk_to_json(p521, false, &err), *j2 = cjose_jwk_to_json(oct, true, &err), *doc = NULL;
    assert_true(asprintf(&doc, "{\"keys\":[%s,%s]}", j1, j2) > 0);
    custos_jwks_t *s = NULL;
    size_t skipped = 0;
    assert_int_equal(custos_jwks_parse(doc, strlen(doc), &s, &skipped, NULL), 0);
    assert_int_equal(custos_jwks_count(s), 0);
    assert_int_equal(skipped, 2);
    custos_jwks_unref(s);
    free(doc);
    free(j1);
    free(j2);
    cjose_jwk_release(p521);
    cjose_jwk_release(oct);
    for (int i = 0; i < 3; i++) {
        cjose_jwk_release(keys[i]);
        custos_jwks_unref(sets[i]);
    }
}

static void test_our_tokens_verify_with_cjose(void **state)
{
    (void)state;
    static const struct {
        const char *alg, *kind;
    } cases[] = {{"RS256", "RSA"}, {"RS512", "RSA"},   {"PS256", "RSA"},
                 {"PS384", "RSA"}, {"ES256", "P-256"}, {"ES384", "P-384"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k = mint_keygen(cases[i].kind);
        char *jwk = mint_jwk(k, "k", NULL), *doc = NULL;
        char *tok = mint_token(cases[i].alg, k, "k", PAYLOAD);
        /* cjose accepts our JWK and our signature */
        if (!theirs(jwk, tok))
            fail_msg("cjose rejected our %s token", cases[i].alg);
        /* and we accept them too, and both reject the tampered token */
        assert_true(asprintf(&doc, "{\"keys\":[%s]}", jwk) > 0);
        custos_jwks_t *s = NULL;
        const char *why;
        assert_int_equal(custos_jwks_parse(doc, strlen(doc), &s, NULL, NULL), 0);
        assert_int_equal(ours(s, tok, &why), 0);
        tamper(tok);
        assert_false(theirs(jwk, tok));
        assert_int_equal(ours(s, tok, &why), CUSTOS_EINVAL);
        custos_jwks_unref(s);
        free(doc);
        free(tok);
        free(jwk);
        EVP_PKEY_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cjose_tokens_verify_with_ours),
        cmocka_unit_test(test_our_tokens_verify_with_cjose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
