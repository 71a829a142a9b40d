/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for the JWT verifier (auth/jwt.h), JWK parsing (auth/jwks.h), the file-backed OIDC provider and
 * upstream credentials: every algorithm minted here with OpenSSL, and a negative matrix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <openssl/pem.h>

#include "../common/jwt_mint.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "auth/oidc_internal.h"
#include "auth/upstream_cred.h"
#include "config/config.h"
#include "util/err.h"

#define NOW 1800000000ull
#define ISS "https://login.example.test/tenant/v2.0"
#define AUD "api://custos"

static EVP_PKEY *k_rsa, *k_rsa2, *k_p256, *k_p384, *k_ed;
static custos_jwks_t *keys;

static const char *const auds[] = {AUD, "https://cognitiveservices.azure.com"};
static const custos_jwt_policy_t pol = {
    .issuer = ISS, .audiences = auds, .n_audiences = 2, .clock_skew_s = 60, .max_token_bytes = 0};

static char *payload(const char *extra)
{
    char *p = NULL;
    assert_true(asprintf(&p,
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"nbf\":%llu,\"iat\":%llu,"
                         "\"sub\":\"sub-1\",\"oid\":\"oid-1\",\"tid\":\"t-1\"%s%s}",
                         NOW + 3600, NOW - 10, NOW - 10, extra && *extra ? "," : "", extra ? extra : "") > 0);
    return p;
}

static int setup(void **state)
{
    (void)state;
    k_rsa = mint_keygen("RSA");
    k_rsa2 = mint_keygen("RSA");
    k_p256 = mint_keygen("P-256");
    k_p384 = mint_keygen("P-384");
    k_ed = mint_keygen("Ed25519");
    assert_non_null(k_rsa);
    assert_non_null(k_ed);
    char *j1 = mint_jwk(k_rsa, "rsa1", NULL), *j2 = mint_jwk(k_p256, "ec256", "ES256"),
         *j3 = mint_jwk(k_p384, "ec384", NULL), *j4 = mint_jwk(k_ed, "ed1", NULL),
         *j5 = mint_jwk(k_rsa2, "rs-only", "RS256");
    char *doc = NULL;
    assert_true(asprintf(&doc, "{\"keys\":[%s,%s,%s,%s,%s]}", j1, j2, j3, j4, j5) > 0);
    size_t skipped = 9;
    assert_int_equal(custos_jwks_parse(doc, strlen(doc), &keys, &skipped, NULL), 0);
    assert_int_equal(custos_jwks_count(keys), 5);
    assert_int_equal(skipped, 0);
    free(j1);
    free(j2);
    free(j3);
    free(j4);
    free(j5);
    free(doc);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    custos_jwks_unref(keys);
    EVP_PKEY_free(k_rsa);
    EVP_PKEY_free(k_rsa2);
    EVP_PKEY_free(k_p256);
    EVP_PKEY_free(k_p384);
    EVP_PKEY_free(k_ed);
    return 0;
}

/* Verifies tok with the shared keys and policy; returns rc, *why. Frees tok. */
static int verify(char *tok, const custos_jwt_policy_t *p, const char **why)
{
    custos_jwt_claims_t *c = NULL;
    assert_non_null(tok);
    int rc = custos_jwt_verify(keys, tok, strlen(tok), p ? p : &pol, NOW, &c, why);
    if (rc == 0)
        assert_non_null(c);
    else
        assert_null(c);
    custos_jwt_claims_free(c);
    free(tok);
    return rc;
}

static void expect_fail(char *tok, int want_rc, const char *want_why)
{
    const char *why = NULL;
    assert_int_equal(verify(tok, NULL, &why), want_rc);
    assert_string_equal(why, want_why);
}

/* ---------- positive ---------- */

static void test_all_algorithms(void **state)
{
    (void)state;
    static const struct {
        const char *alg, *kid;
        EVP_PKEY **k;
    } cases[] = {
        {"RS256", "rsa1", &k_rsa},     {"RS384", "rsa1", &k_rsa},   {"RS512", "rsa1", &k_rsa},
        {"PS256", "rsa1", &k_rsa},     {"PS384", "rsa1", &k_rsa},   {"PS512", "rsa1", &k_rsa},
        {"ES256", "ec256", &k_p256},   {"ES384", "ec384", &k_p384}, {"EdDSA", "ed1", &k_ed},
        {"RS256", "rs-only", &k_rsa2},
    };
    char *p = payload("\"roles\":[\"inference.user\",\"reviewer\"],\"groups\":[\"g1\"],\"amr\":[\"pwd\",\"mfa\"],"
                      "\"upn\":\"a@b\",\"appid\":\"app-9\"");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = mint_token(cases[i].alg, *cases[i].k, cases[i].kid, p);
        custos_jwt_claims_t *c = NULL;
        const char *why = NULL;
        assert_non_null(tok);
        assert_true(custos_jwt_looks_like_jwt(tok, strlen(tok)));
        int rc = custos_jwt_verify(keys, tok, strlen(tok), &pol, NOW, &c, &why);
        if (rc != 0)
            fail_msg("%s: %s", cases[i].alg, why);
        assert_string_equal(why, "ok");
        assert_string_equal(c->alg, cases[i].alg);
        assert_string_equal(c->kid, cases[i].kid);
        assert_string_equal(c->principal, "oid-1");
        assert_string_equal(c->principal_claim, "oid");
        assert_string_equal(c->iss, ISS);
        assert_string_equal(c->sub, "sub-1");
        assert_string_equal(c->tid, "t-1");
        assert_string_equal(c->app_id, "app-9");
        assert_false(c->is_app); /* upn present: a user */
        assert_int_equal(c->roles.n, 2);
        assert_string_equal(c->roles.v[1], "reviewer");
        assert_true(custos_jwt_strs_has(&c->amr, "mfa"));
        assert_true(custos_jwt_strs_has(&c->groups, "g1"));
        assert_int_equal(c->aud.n, 1);
        assert_int_equal(c->exp, (int64_t)(NOW + 3600));
        assert_true(c->has_iat);
        assert_int_equal(c->iat, (int64_t)(NOW - 10));
        json_object *v;
        assert_true(json_object_object_get_ex(c->json, "upn", &v));
        custos_jwt_claims_free(c);
        free(tok);
    }
    free(p);
}

static void test_claim_shapes(void **state)
{
    (void)state;
    custos_jwt_claims_t *c = NULL;
    const char *why;
    /* aud as an array: one match is enough; workload identity by azp without user claims */
    char *tok = mint_token("ES256", k_p256, "ec256",
                           "{\"iss\":\"" ISS "\",\"aud\":[\"other\",\"https://cognitiveservices.azure.com\"],"
                           "\"exp\":1800000100,\"sub\":\"svc\",\"azp\":\"client-1\",\"roles\":\"single\"}");
    assert_int_equal(custos_jwt_verify(keys, tok, strlen(tok), &pol, NOW, &c, &why), 0);
    assert_int_equal(c->aud.n, 2);
    assert_string_equal(c->principal, "svc"); /* no oid: sub */
    assert_string_equal(c->principal_claim, "sub");
    assert_string_equal(c->app_id, "client-1");
    assert_true(c->is_app);
    assert_int_equal(c->roles.n, 1);
    assert_false(c->has_iat);
    custos_jwt_claims_free(c);
    free(tok);

    /* configurable principal / roles claims; idtyp=app */
    custos_jwt_policy_t p2 = pol;
    p2.principal_claim = "upn";
    p2.roles_claim = "wids";
    tok = mint_token("EdDSA", k_ed, "ed1",
                     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1800000100,\"sub\":\"s\",\"oid\":\"o\","
                     "\"upn\":\"alice@example\",\"wids\":[\"w1\"],\"idtyp\":\"app\"}");
    assert_int_equal(custos_jwt_verify(keys, tok, strlen(tok), &p2, NOW, &c, &why), 0);
    assert_string_equal(c->principal, "alice@example");
    assert_string_equal(c->principal_claim, "upn");
    assert_string_equal(c->roles.v[0], "w1");
    assert_true(c->is_app);
    custos_jwt_claims_free(c);
    free(tok);

    /* exp within the skew still passes; nbf within the skew passes */
    tok = mint_token("RS256", k_rsa, "rsa1",
                     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1799999950,\"nbf\":1800000050,\"sub\":\"s\"}");
    assert_int_equal(custos_jwt_verify(keys, tok, strlen(tok), &pol, NOW, &c, &why), 0);
    custos_jwt_claims_free(c);
    free(tok);

    /* no kid: accepted when exactly one key of the alg's type exists (Ed25519), refused when several (RSA) */
    tok = mint_token("EdDSA", k_ed, NULL, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1800000100,\"sub\":\"s\"}");
    assert_int_equal(custos_jwt_verify(keys, tok, strlen(tok), &pol, NOW, &c, &why), 0);
    assert_null(c->kid);
    custos_jwt_claims_free(c);
    free(tok);
    tok =
        mint_token("RS256", k_rsa, NULL, "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1800000100,\"sub\":\"s\"}");
    assert_int_equal(custos_jwt_verify(keys, tok, strlen(tok), &pol, NOW, &c, &why), CUSTOS_ENOTFOUND);
    assert_string_equal(why, "no kid and no unique key");
    free(tok);

    /* typ at+jwt accepted, exp as a double */
    tok = mint_token_hdr("ES384", k_p384, NULL, 0, "{\"alg\":\"ES384\",\"kid\":\"ec384\",\"typ\":\"at+jwt\"}",
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1800000100.5,\"sub\":\"s\"}");
    assert_int_equal(custos_jwt_verify(keys, tok, strlen(tok), &pol, NOW, &c, &why), 0);
    assert_int_equal(c->exp, 1800000100);
    custos_jwt_claims_free(c);
    free(tok);
}

/* ---------- negative matrix ---------- */

static void test_time_and_audience(void **state)
{
    (void)state;
    char b[600];
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"sub\":\"s\"}", NOW - 61);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", b), CUSTOS_EINVAL, "expired");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"nbf\":%llu,\"sub\":\"s\"}",
             NOW + 3600, NOW + 61);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", b), CUSTOS_EINVAL, "not yet valid");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"iat\":%llu,\"sub\":\"s\"}",
             NOW + 3600, NOW + 600);
    expect_fail(mint_token("ES256", k_p256, "ec256", b), CUSTOS_EINVAL, "issued in the future");
    snprintf(b, sizeof(b), "{\"iss\":\"https://evil.test/v2.0\",\"aud\":\"" AUD "\",\"exp\":%llu,\"sub\":\"s\"}",
             NOW + 3600);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", b), CUSTOS_EINVAL, "wrong issuer");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"api://other\",\"exp\":%llu,\"sub\":\"s\"}", NOW + 3600);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", b), CUSTOS_EINVAL, "wrong audience");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":[\"a\",\"b\"],\"exp\":%llu,\"sub\":\"s\"}", NOW + 3600);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", b), CUSTOS_EINVAL, "wrong audience");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"exp\":%llu,\"sub\":\"s\"}", NOW + 3600);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", b), CUSTOS_EINVAL, "wrong audience");
    expect_fail(mint_token("RS256", k_rsa, "rsa1", "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"s\"}"),
                CUSTOS_EINVAL, "no exp");
    expect_fail(mint_token("RS256", k_rsa, "rsa1",
                           "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":\"1900000000\",\"sub\":\"s\"}"),
                CUSTOS_EINVAL, "bad exp");
    expect_fail(mint_token("RS256", k_rsa, "rsa1", "{\"aud\":\"" AUD "\",\"exp\":1900000000,\"sub\":\"s\"}"),
                CUSTOS_EINVAL, "no iss");
    expect_fail(mint_token("RS256", k_rsa, "rsa1", "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1900000000}"),
                CUSTOS_EINVAL, "no principal claim");
    expect_fail(mint_token("RS256", k_rsa, "rsa1",
                           "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1900000000,\"sub\":\"s\",\"roles\":[1]}"),
                CUSTOS_EINVAL, "bad roles");

    /* maximum token age */
    custos_jwt_policy_t p2 = pol;
    const char *why;
    p2.max_token_age_s = 300;
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"iat\":%llu,\"sub\":\"s\"}",
             NOW + 3600, NOW - 400);
    assert_int_equal(verify(mint_token("RS256", k_rsa, "rsa1", b), &p2, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "token too old");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"sub\":\"s\"}", NOW + 3600);
    assert_int_equal(verify(mint_token("RS256", k_rsa, "rsa1", b), &p2, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "no iat (max token age)");
    snprintf(b, sizeof(b), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"iat\":%llu,\"sub\":\"s\"}",
             NOW + 3600, NOW - 200);
    assert_int_equal(verify(mint_token("RS256", k_rsa, "rsa1", b), &p2, &why), 0);
}

static void test_algorithm_attacks(void **state)
{
    (void)state;
    char *p = payload(NULL);
    /* alg none, in any case, with or without a signature */
    expect_fail(mint_token("none", NULL, "rsa1", p), CUSTOS_EINVAL, "alg none refused");
    expect_fail(mint_token_hdr("none", NULL, NULL, 0, "{\"alg\":\"NONE\",\"kid\":\"rsa1\"}", p), CUSTOS_EINVAL,
                "alg none refused");
    /* RS256 public key used as an HS256 secret: PEM text and raw JWK n */
    unsigned char *pem = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k_rsa), 1);
    long pl = BIO_get_mem_data(bio, (char **)&pem);
    expect_fail(mint_token_hdr("HS256", NULL, pem, (size_t)pl, "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", p),
                CUSTOS_EINVAL, "HMAC alg refused");
    BIO_free(bio);
    expect_fail(mint_token_hdr("HS512", NULL, (const unsigned char *)"k", 1, "{\"alg\":\"HS512\",\"kid\":\"rsa1\"}", p),
                CUSTOS_EINVAL, "HMAC alg refused");
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0, "{\"alg\":\"RS1\",\"kid\":\"rsa1\"}", p), CUSTOS_EINVAL,
                "unsupported alg");
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0, "{\"kid\":\"rsa1\"}", p), CUSTOS_EINVAL, "no alg");
    /* key type must fit alg: ES256 header naming an RSA kid; RSA kid with alg pinned to RS256 used for PS256 */
    expect_fail(mint_token("ES256", k_p256, "rsa1", p), CUSTOS_EINVAL, "key does not fit alg");
    expect_fail(mint_token("PS256", k_rsa2, "rs-only", p), CUSTOS_EINVAL, "key does not fit alg");
    expect_fail(mint_token("ES384", k_p384, "ec256", p), CUSTOS_EINVAL, "key does not fit alg");
    expect_fail(mint_token("EdDSA", k_ed, "ec256", p), CUSTOS_EINVAL, "key does not fit alg");
    /* crit: we implement no extension, so any crit header is refused */
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"]}", p),
                CUSTOS_EINVAL, "unknown crit header");
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0,
                               "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"b64\":false,\"crit\":[\"b64\"]}", p),
                CUSTOS_EINVAL, "unknown crit header");
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWE\"}", p),
                CUSTOS_EINVAL, "bad typ");
    /* unknown kid */
    expect_fail(mint_token("RS256", k_rsa, "nope", p), CUSTOS_ENOTFOUND, "unknown kid");
    const char *why;
    assert_int_equal(verify(mint_token("RS256", k_rsa, "rsa1", p), NULL, &why), 0);
    char *t = mint_token("RS256", k_rsa, "rsa1", p);
    custos_jwt_claims_t *c = NULL;
    assert_int_equal(custos_jwt_verify(NULL, t, strlen(t), &pol, NOW, &c, &why), CUSTOS_ENOTFOUND);
    free(t);
    free(p);
}

static void test_signatures(void **state)
{
    (void)state;
    char *p = payload(NULL);
    /* signed by another key under our kid */
    expect_fail(mint_token("RS256", k_rsa2, "rsa1", p), CUSTOS_EINVAL, "bad signature");
    EVP_PKEY *other = mint_keygen("P-256");
    expect_fail(mint_token("ES256", other, "ec256", p), CUSTOS_EINVAL, "bad signature");
    EVP_PKEY_free(other);
    other = mint_keygen("Ed25519");
    expect_fail(mint_token("EdDSA", other, "ed1", p), CUSTOS_EINVAL, "bad signature");
    EVP_PKEY_free(other);
    /* PS256 signature presented as RS256 */
    char *ps = mint_token("PS256", k_rsa, "rsa1", p), *rs = mint_token("RS256", k_rsa, "rsa1", p);
    char *mix = NULL;
    assert_true(asprintf(&mix, "%.*s%s", (int)(strrchr(rs, '.') - rs), rs, strrchr(ps, '.')) > 0);
    expect_fail(mix, CUSTOS_EINVAL, "bad signature");
    /* payload changed after signing */
    char *tampered = strdup(rs);
    char *d1 = strchr(tampered, '.');
    d1[5] = d1[5] == 'A' ? 'B' : 'A';
    expect_fail(tampered, CUSTOS_EINVAL, "bad signature");
    /* truncated signature */
    char *trunc = strdup(rs);
    strrchr(trunc, '.')[1 + 340] = 0; /* 340 base64url characters: 255 bytes, one short */
    expect_fail(trunc, CUSTOS_EINVAL, "bad signature");
    free(ps);
    free(rs);
    /* ES256 with a DER signature instead of r||s, and with r||s of the wrong length */
    char *es = mint_token("ES256", k_p256, "ec256", p);
    char *short_es = NULL;
    assert_true(asprintf(&short_es, "%.*s.AAAA", (int)(strrchr(es, '.') - es), es) > 0);
    expect_fail(short_es, CUSTOS_EINVAL, "bad signature");
    free(es);
    free(p);
}

static void test_malformed(void **state)
{
    (void)state;
    char *p = payload(NULL);
    char *tok = mint_token("RS256", k_rsa, "rsa1", p);
    char *t;
    /* oversized */
    char *big = malloc(CUSTOS_JWT_DEFAULT_MAX_BYTES + 2);
    memset(big, 'A', CUSTOS_JWT_DEFAULT_MAX_BYTES + 1);
    big[CUSTOS_JWT_DEFAULT_MAX_BYTES + 1] = 0;
    expect_fail(big, CUSTOS_ETOOBIG, "token too large");
    custos_jwt_policy_t small = pol;
    small.max_token_bytes = 100;
    const char *why;
    assert_int_equal(verify(strdup(tok), &small, &why), CUSTOS_ETOOBIG);
    /* shape */
    expect_fail(strdup("abc"), CUSTOS_EINVAL, "not a compact JWS");
    expect_fail(strdup("a.b"), CUSTOS_EINVAL, "not a compact JWS");
    expect_fail(strdup("a.b.c.d"), CUSTOS_EINVAL, "not a compact JWS");
    expect_fail(strdup("..x"), CUSTOS_EINVAL, "not a compact JWS");
    assert_true(asprintf(&t, "%s.", tok) > 0);
    expect_fail(t, CUSTOS_EINVAL, "not a compact JWS");
    /* base64: padding, standard alphabet, whitespace, non-canonical trailing bits */
    assert_true(asprintf(&t, "%s=", tok) > 0);
    expect_fail(t, CUSTOS_EINVAL, "malformed signature");
    t = strdup(tok);
    t[3] = '+';
    expect_fail(t, CUSTOS_EINVAL, "malformed header");
    t = strdup(tok);
    t[3] = ' ';
    expect_fail(t, CUSTOS_EINVAL, "malformed header");
    /* header is not JSON / not an object / payload an array */
    char *h = mint_b64("{\"alg\":\"RS256\",", 15);
    assert_true(asprintf(&t, "%s%s", h, strchr(tok, '.')) > 0);
    expect_fail(t, CUSTOS_EINVAL, "malformed header");
    free(h);
    h = mint_b64("[1]", 3);
    assert_true(asprintf(&t, "%s%s", h, strchr(tok, '.')) > 0);
    expect_fail(t, CUSTOS_EINVAL, "malformed header");
    free(h);
    expect_fail(mint_token("RS256", k_rsa, "rsa1", "[1,2]"), CUSTOS_EINVAL, "malformed payload");
    expect_fail(mint_token("RS256", k_rsa, "rsa1", "{\"a\":NaN}"), CUSTOS_EINVAL, "malformed payload");
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0, "{\"alg\":\"RS256\",\"kid\":7}", p), CUSTOS_EINVAL, "bad kid");
    expect_fail(mint_token_hdr("RS256", k_rsa, NULL, 0, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"alg\":\"none\"}", p),
                CUSTOS_EINVAL, "alg none refused"); /* duplicate member: json-c keeps the last */
    free(tok);
    free(p);
}

static void test_b64url_and_shape(void **state)
{
    (void)state;
    unsigned char out[16];
    assert_int_equal(custos_b64url_decode("", 0, out, sizeof(out)), 0);
    assert_int_equal(custos_b64url_decode("Zm9v", 4, out, sizeof(out)), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(custos_b64url_decode("Zm8", 3, out, sizeof(out)), 2);
    assert_int_equal(custos_b64url_decode("Zg", 2, out, sizeof(out)), 1);
    assert_int_equal(custos_b64url_decode("Zh", 2, out, sizeof(out)), CUSTOS_EINVAL); /* trailing bits */
    assert_int_equal(custos_b64url_decode("Zm9=", 4, out, sizeof(out)), CUSTOS_EINVAL);
    assert_int_equal(custos_b64url_decode("Z", 1, out, sizeof(out)), CUSTOS_EINVAL);
    assert_int_equal(custos_b64url_decode("a+b/", 4, out, sizeof(out)), CUSTOS_EINVAL);
    assert_int_equal(custos_b64url_decode("-_-_", 4, out, sizeof(out)), 3);
    assert_int_equal(custos_b64url_decode("AAAAAAAA", 8, out, 5), CUSTOS_ETOOBIG);
    char enc[16];
    assert_int_equal(custos_b64url_encode((const unsigned char *)"\xfb\xff", 2, enc), 3);
    assert_string_equal(enc, "-_8");

    assert_false(custos_jwt_looks_like_jwt("sk-abc", 6));
    assert_false(custos_jwt_looks_like_jwt("eyJhbGc.eyJ", 11));
    assert_true(custos_jwt_looks_like_jwt("eyJh.eyJ.c", 10));
    assert_false(custos_jwt_looks_like_jwt("eyJh.eyJ.c=", 11));
    assert_false(custos_jwt_looks_like_jwt("eyJh..c", 7));

    char iss[64];
    char *tok = mint_token("EdDSA", k_ed, "ed1", "{\"iss\":\"https://x.test/\",\"exp\":1}");
    assert_int_equal(custos_jwt_peek_issuer(tok, strlen(tok), 0, iss, sizeof(iss)), 0);
    assert_string_equal(iss, "https://x.test/");
    assert_int_equal(custos_jwt_peek_issuer(tok, strlen(tok), 0, iss, 5), CUSTOS_ETOOBIG);
    assert_int_equal(custos_jwt_peek_issuer(tok, strlen(tok), 10, iss, sizeof(iss)), CUSTOS_ETOOBIG);
    free(tok);
    tok = mint_token("EdDSA", k_ed, "ed1", "{\"iss\":5}");
    assert_int_equal(custos_jwt_peek_issuer(tok, strlen(tok), 0, iss, sizeof(iss)), CUSTOS_EINVAL);
    free(tok);
}

static void test_jwk_parsing(void **state)
{
    (void)state;
    custos_jwk_t k;
    const char *why;
    json_object *o;
#define JWK(text) (o = json_tokener_parse(text))
    /* private key material refused; use enc refused; oct (HMAC) keys refused; unknown curves refused */
    char *pub = mint_jwk(k_p256, "x", NULL);
    char *priv = strdup(pub);
    priv[strlen(priv) - 1] = 0;
    char *withd = NULL;
    assert_true(asprintf(&withd, "%s,\"d\":\"AAAA\"}", priv) > 0);
    assert_int_equal(custos_jwk_parse(JWK(withd), &k, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "JWK holds a private key");
    json_object_put(o);
    free(withd);
    assert_true(asprintf(&withd, "%s,\"use\":\"enc\"}", priv) > 0);
    assert_int_equal(custos_jwk_parse(JWK(withd), &k, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "JWK use is not sig");
    json_object_put(o);
    free(withd);
    assert_int_equal(custos_jwk_parse(JWK("{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}"), &k, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "unsupported kty");
    json_object_put(o);
    assert_int_equal(custos_jwk_parse(JWK("{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"AA\",\"y\":\"AA\"}"), &k, &why),
                     CUSTOS_EINVAL);
    json_object_put(o);
    assert_int_equal(custos_jwk_parse(JWK("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}"), &k, &why),
                     CUSTOS_EINVAL);
    json_object_put(o);
    /* point not on the curve: flip a bit of y */
    json_object *pj = json_tokener_parse(pub), *yv;
    assert_true(json_object_object_get_ex(pj, "y", &yv));
    char *y = strdup(json_object_get_string(yv));
    y[10] = y[10] == 'A' ? 'B' : 'A';
    json_object_object_add(pj, "y", json_object_new_string(y));
    assert_int_equal(custos_jwk_parse(pj, &k, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "bad EC point");
    json_object_put(pj);
    free(y);
    /* alg member must fit the key type */
    assert_true(asprintf(&withd, "%s,\"alg\":\"RS256\"}", priv) > 0);
    assert_int_equal(custos_jwk_parse(JWK(withd), &k, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "JWK alg does not fit its key type");
    json_object_put(o);
    free(withd);
    free(priv);
    free(pub);
    /* RSA under 2048 bits refused */
    EVP_PKEY *small = EVP_RSA_gen(1024);
    char *sj = mint_jwk(small, "s", NULL);
    assert_int_equal(custos_jwk_parse(JWK(sj), &k, &why), CUSTOS_EINVAL);
    assert_string_equal(why, "RSA modulus too small or even");
    json_object_put(o);
    free(sj);
    EVP_PKEY_free(small);
    /* a good RSA key */
    sj = mint_jwk(k_rsa, "r", "PS384");
    assert_int_equal(custos_jwk_parse(JWK(sj), &k, &why), 0);
    assert_int_equal(k.type, CUSTOS_JWK_RSA);
    assert_string_equal(k.alg, "PS384");
    assert_string_equal(k.kid, "r");
    custos_jwk_dispose(&k);
    json_object_put(o);
    free(sj);
#undef JWK

    /* sets: bad keys skipped and counted, duplicate kid keeps the first, not-a-JWKS refused */
    char *a = mint_jwk(k_ed, "same", NULL), *b = mint_jwk(k_p256, "same", NULL), *doc = NULL;
    assert_true(asprintf(&doc, "{\"keys\":[%s,%s,{\"kty\":\"oct\",\"k\":\"AA\"},7]}", a, b) > 0);
    custos_jwks_t *s = NULL;
    size_t skipped = 0;
    assert_int_equal(custos_jwks_parse(doc, strlen(doc), &s, &skipped, &why), 0);
    assert_int_equal(custos_jwks_count(s), 1);
    assert_int_equal(skipped, 3);
    assert_int_equal(custos_jwks_find(s, "same", 4, CUSTOS_JWK_RSA)->type, CUSTOS_JWK_ED25519);
    custos_jwks_unref(s);
    free(a);
    free(b);
    free(doc);
    assert_int_equal(custos_jwks_parse("{\"keys\":{}}", 11, &s, NULL, &why), CUSTOS_EINVAL);
    assert_int_equal(custos_jwks_parse("[]", 2, &s, NULL, &why), CUSTOS_EINVAL);
    assert_int_equal(custos_jwks_parse("{\"keys\":[", 9, &s, NULL, &why), CUSTOS_EINVAL);
    assert_null(s);
}

/* ---------- OIDC provider from a file, upstream credentials ---------- */

static void write_jwks(const char *path, EVP_PKEY *k, const char *kid)
{
    char *j = mint_jwk(k, kid, NULL);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"keys\":[%s]}", j);
    fclose(f);
    free(j);
}

static void test_oidc_file_provider(void **state)
{
    (void)state;
    char dir[] = "/tmp/custos-jwt-XXXXXX", path[128], yaml[2048];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/jwks.json", dir);
    write_jwks(path, k_rsa, "k1");
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - address: \"127.0.0.1:8443\"\n"
             "identity:\n  api_keys:\n    - name: demo\n      sha256: \"%064d\"\n"
             "  oidc:\n    - issuer: \"" ISS "\"\n      audience: [\"" AUD "\"]\n      jwks: \"file:%s\"\n"
             "      min_refetch_s: 1\n      principal_claim: sub\n"
             "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
             "    auth: {bearer_env: CUSTOS_TEST_BEARER}\n"
             "deployments:\n  - name: demo\n    backends: [mock]\n",
             0, path);
    custos_config_t *cfg = NULL;
    char err[512] = "";
    setenv("CUSTOS_TEST_BEARER", "up-token-1", 1);
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    if (rc != 0)
        fail_msg("config: %s", err);
    assert_int_equal(cfg->identity.n_oidc, 1);
    assert_int_equal(cfg->identity.oidc[0].clock_skew_s, 60);
    assert_int_equal(cfg->identity.oidc[0].max_token_bytes, 16384);
    assert_int_equal(cfg->identity.oidc[0].refresh_s, 3600);
    assert_string_equal(cfg->identity.oidc[0].roles_claim, "roles");
    assert_int_equal(custos_oidc_sync(cfg, 5000), 0);

    uint64_t now = (uint64_t)time(NULL);
    char pl[512];
    snprintf(pl, sizeof(pl), "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":%llu,\"sub\":\"alice\"}",
             (unsigned long long)now + 600);
    char *t1 = mint_token("RS256", k_rsa, "k1", pl), *t2 = mint_token("ES256", k_p256, "k2", pl);
    custos_jwt_claims_t *c = NULL;
    const char *why = NULL;
    assert_int_equal(custos_oidc_authenticate(cfg, t1, strlen(t1), now, &c, &why), 0);
    assert_string_equal(c->principal, "alice");
    custos_jwt_claims_free(c);
    assert_int_equal(custos_oidc_authenticate(cfg, t2, strlen(t2), now, &c, &why), CUSTOS_ENOTFOUND);
    assert_string_equal(why, "unknown kid");
    /* an unknown issuer is not ours */
    char *t3 = mint_token("RS256", k_rsa, "k1", "{\"iss\":\"https://other.test\",\"exp\":1}");
    assert_int_equal(custos_oidc_authenticate(cfg, t3, strlen(t3), now, &c, &why), CUSTOS_ENOTFOUND);
    assert_string_equal(why, "token issuer is not configured");
    free(t3);

    /* the issuer rotates: the unknown kid makes the provider reread the file (min_refetch_s: 1) */
    write_jwks(path, k_p256, "k2");
    rc = CUSTOS_ENOTFOUND;
    for (int i = 0; i < 100 && rc != 0; i++) { /* poll: the refetch runs on the fetcher thread */
        rc = custos_oidc_authenticate(cfg, t2, strlen(t2), now, &c, &why);
        if (rc != 0)
            usleep(50000);
    }
    assert_int_equal(rc, 0);
    custos_jwt_claims_free(c);
    /* the old key is gone with the rotation */
    assert_int_equal(custos_oidc_authenticate(cfg, t1, strlen(t1), now, &c, &why), CUSTOS_ENOTFOUND);
    assert_int_equal(custos_oidc_provider_count(), 1);

    /* the file disappears: a refetch fails, and the cached keys keep working */
    unlink(path);
    uint64_t before = custos_oidc_fetch_attempts();
    usleep(1100000); /* past min_refetch_s since the last unknown-kid refetch */
    assert_int_equal(custos_oidc_authenticate(cfg, t1, strlen(t1), now, &c, &why), CUSTOS_ENOTFOUND);
    for (int i = 0; i < 100 && custos_oidc_fetch_attempts() == before; i++)
        usleep(50000);
    assert_true(custos_oidc_fetch_attempts() > before);
    assert_int_equal(custos_oidc_authenticate(cfg, t2, strlen(t2), now, &c, &why), 0);
    custos_jwt_claims_free(c);

    /* upstream static bearer */
    custos_arena_t a;
    custos_arena_init(&a);
    const char *v = NULL;
    size_t vl = 0;
    assert_int_equal(custos_auth_backend_credential(&cfg->backends[0], &a, &v, &vl), 0);
    assert_string_equal(v, "Bearer up-token-1");
    assert_int_equal(vl, 17);
    /* the header requests and health probes send: the bearer token wins; else api_key as api-key (Azure) or
     * Bearer (others); nothing without a credential */
    const char *hn = NULL;
    size_t hnl = 0;
    assert_int_equal(custos_auth_backend_header(&cfg->backends[0], &a, &hn, &hnl, &v, &vl), 0);
    assert_string_equal(hn, "authorization");
    assert_int_equal(hnl, 13);
    assert_string_equal(v, "Bearer up-token-1");
    char key[] = "sk-1";
    custos_backend_config_t kb = {.api_key = key, .api_key_len = 4, .provider = CUSTOS_PROVIDER_AZURE};
    assert_int_equal(custos_auth_backend_header(&kb, &a, &hn, &hnl, &v, &vl), 0);
    assert_string_equal(hn, "api-key");
    assert_int_equal(hnl, 7);
    assert_string_equal(v, "sk-1");
    assert_int_equal(vl, 4);
    assert_ptr_not_equal(v, kb.api_key); /* a copy: the caller zeroes it */
    kb.provider = CUSTOS_PROVIDER_OPENAI;
    assert_int_equal(custos_auth_backend_header(&kb, &a, &hn, &hnl, &v, &vl), 0);
    assert_string_equal(hn, "authorization");
    assert_string_equal(v, "Bearer sk-1");
    assert_int_equal(vl, 11);
    kb.api_key = NULL;
    assert_int_equal(custos_auth_backend_header(&kb, &a, &hn, &hnl, &v, &vl), 0);
    assert_null(hn);
    assert_null(v);
    custos_arena_dispose(&a);

    free(t1);
    free(t2);
    custos_config_unref(cfg);
    custos_oidc_shutdown();
    rmdir(dir);
    unsetenv("CUSTOS_TEST_BEARER");
}

static void test_config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *oidc, *err;
    } cases[] = {
        {"    - issuer: \"ftp://x\"\n      audience: a\n", "identity.oidc[0].issuer: must be an https:// URL"},
        {"    - issuer: \"http://idp.example\"\n      audience: a\n", "identity.oidc[0].issuer: must be an https://"},
        {"    - issuer: \"https://x\"\n", "identity.oidc[0]: missing required key 'audience'"},
        {"    - issuer: \"https://x\"\n      audience: []\n", "identity.oidc[0].audience: 1 to 16 audiences"},
        {"    - issuer: \"https://x\"\n      audience: a\n      clock_skew_s: 601\n",
         "identity.oidc[0].clock_skew_s: 601 is out of range"},
        {"    - issuer: \"https://x\"\n      audience: a\n      jwks: \"file:/nonexistent/j\"\n",
         "identity.oidc[0].jwks: cannot read"},
        {"    - issuer: \"https://x\"\n      audience: a\n      jwks: \"ldap://x\"\n",
         "identity.oidc[0].jwks: expected file:PATH"},
        {"    - issuer: \"https://x\"\n      audience: a\n      colour: red\n",
         "unknown key 'colour' in identity.oidc[0]"},
        {"    - issuer: \"https://x\"\n      audience: a\n    - issuer: \"https://x\"\n      audience: b\n",
         "identity.oidc[1].issuer: same issuer as identity.oidc[0]"},
        {"    - issuer: \"https://x\"\n      audience: a\n      principal_claim: \"a b\"\n",
         "identity.oidc[0].principal_claim: must match"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[2048], err[512] = "";
        snprintf(yaml, sizeof(yaml),
                 "listeners:\n  - address: \"127.0.0.1:8443\"\n"
                 "identity:\n  api_keys:\n    - name: demo\n      sha256: \"%064d\"\n  oidc:\n%s"
                 "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
                 "deployments:\n  - name: demo\n    backends: [mock]\n",
                 0, cases[i].oidc);
        custos_config_t *cfg = NULL;
        assert_int_not_equal(custos_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)), 0);
        if (!strstr(err, cases[i].err))
            fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].err);
        assert_non_null(strstr(err, "t.yaml:")); /* file:line:col */
    }
    /* backend auth variants */
    static const struct {
        const char *auth, *err;
    } bc[] = {
        {"{bearer_env: A, api_key_env: B}", "exactly one of api_key_env, api_key_file, bearer_env"},
        {"{oauth2: {client_id: c, client_secret_env: CUSTOS_TEST_SECRET}}", "missing required key 'token_url'"},
        {"{oauth2: {token_url: \"http://remote/t\", client_id: c, client_secret_env: CUSTOS_TEST_SECRET}}",
         "token_url: must be an https:// URL"},
        {"{oauth2: {token_url: \"https://idp/t\", client_id: c}}", "one of client_secret_env, client_secret_file"},
        {"{oauth2: {token_url: \"https://idp/t\", client_id: c, client_secret_env: CUSTOS_TEST_SECRET}}", NULL},
    };
    setenv("CUSTOS_TEST_SECRET", "s3cret", 1);
    for (size_t i = 0; i < sizeof(bc) / sizeof(bc[0]); i++) {
        char yaml[2048], err[512] = "";
        snprintf(yaml, sizeof(yaml),
                 "listeners:\n  - address: \"127.0.0.1:8443\"\n"
                 "identity:\n  api_keys:\n    - name: demo\n      sha256: \"%064d\"\n"
                 "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
                 "    auth: %s\n"
                 "deployments:\n  - name: demo\n    backends: [mock]\n",
                 0, bc[i].auth);
        custos_config_t *cfg = NULL;
        int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
        if (!bc[i].err) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, err);
            assert_int_equal(cfg->backends[0].auth_kind, CUSTOS_BACKEND_AUTH_OAUTH2);
            assert_string_equal(cfg->backends[0].oauth2->client_secret, "s3cret");
            assert_null(cfg->backends[0].oauth2->scope);
            custos_config_unref(cfg);
            continue;
        }
        assert_int_not_equal(rc, 0);
        if (!strstr(err, bc[i].err))
            fail_msg("backend case %zu: got '%s', want '%s'", i, err, bc[i].err);
    }
    unsetenv("CUSTOS_TEST_SECRET");
}

static void test_oauth2_response(void **state)
{
    (void)state;
    char *t = NULL;
    size_t tl = 0;
    uint32_t e = 0;
    const char *ok = "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"eyJ.abc.def\"}";
    assert_int_equal(custos_oauth2_parse_token_response(ok, strlen(ok), &t, &tl, &e), 0);
    assert_string_equal(t, "eyJ.abc.def");
    assert_int_equal(tl, 11);
    assert_int_equal(e, 3599);
    free(t);
    const char *v1 = "{\"token_type\":\"bearer\",\"expires_in\":\"120\",\"access_token\":\"x\"}";
    assert_int_equal(custos_oauth2_parse_token_response(v1, strlen(v1), &t, &tl, &e), 0);
    assert_int_equal(e, 120);
    free(t);
    static const char *const bad[] = {
        "{\"access_token\":\"a b\"}",
        "{\"access_token\":\"\"}",
        "{\"access_token\":\"x\",\"token_type\":\"mac\"}",
        "{\"access_token\":\"x\",\"expires_in\":0}",
        "{\"access_token\":\"x\",\"expires_in\":\"12a\"}",
        "{\"error\":\"invalid_client\"}",
        "not json",
        "{\"access_token\":\"x\\r\\nX-Injected: 1\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(custos_oauth2_parse_token_response(bad[i], strlen(bad[i]), &t, &tl, &e), CUSTOS_EINVAL);
        assert_null(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_algorithms),     cmocka_unit_test(test_claim_shapes),
        cmocka_unit_test(test_time_and_audience),  cmocka_unit_test(test_algorithm_attacks),
        cmocka_unit_test(test_signatures),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_b64url_and_shape),   cmocka_unit_test(test_jwk_parsing),
        cmocka_unit_test(test_oidc_file_provider), cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_oauth2_response),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
