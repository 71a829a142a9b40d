/* SPDX-License-Identifier: Apache-2.0
 * Test-only JWT minting with OpenSSL (header-only): key generation (RSA, EC P-256/P-384, Ed25519), JWK export
 * and compact-JWS signing for RS*, PS*, ES256/384, EdDSA, plus raw "alg" overrides for negative tests.
 * Used by tests/unit/test_jwt*.c, tests/tools/test_idp.c, bench/jwt and tests/fuzz/fuzz_jwt.c. */
#ifndef CUSTOS_TESTS_JWT_MINT_H
#define CUSTOS_TESTS_JWT_MINT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "auth/jwks.h"

#define MINT_UNUSED __attribute__((unused))

/* kind: "RSA", "RSA3072", "P-256", "P-384", "Ed25519". */
MINT_UNUSED static EVP_PKEY *mint_keygen(const char *kind)
{
    if (strcmp(kind, "RSA") == 0)
        return EVP_RSA_gen(2048);
    if (strcmp(kind, "RSA3072") == 0)
        return EVP_RSA_gen(3072);
    if (strcmp(kind, "P-256") == 0)
        return EVP_EC_gen("P-256");
    if (strcmp(kind, "P-384") == 0)
        return EVP_EC_gen("P-384");
    if (strcmp(kind, "Ed25519") == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return NULL;
}

/* malloc'd base64url of data. */
MINT_UNUSED static char *mint_b64(const void *data, size_t len)
{
    char *o = malloc(4 * ((len + 2) / 3) + 1);
    if (o)
        custos_b64url_encode(data, len, o);
    return o;
}

MINT_UNUSED static char *mint_bn_b64(const BIGNUM *bn, int pad_to)
{
    int n = BN_num_bytes(bn);
    if (pad_to > n)
        n = pad_to;
    unsigned char *buf = malloc((size_t)n + 1);
    char *r = NULL;
    if (buf && BN_bn2binpad(bn, buf, n) == n)
        r = mint_b64(buf, (size_t)n);
    free(buf);
    return r;
}

/* The public JWK of k as a JSON object string (malloc'd). kid and alg may be NULL (member omitted). */
MINT_UNUSED static char *mint_jwk(EVP_PKEY *k, const char *kid, const char *alg)
{
    char *out = NULL, *a = NULL, *b = NULL, extra[600] = "";
    if (kid)
        snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), ",\"kid\":\"%s\"", kid);
    if (alg)
        snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), ",\"alg\":\"%s\"", alg);
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_RSA) {
        BIGNUM *n = NULL, *e = NULL;
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
        a = mint_bn_b64(n, 0);
        b = mint_bn_b64(e, 0);
        BN_free(n);
        BN_free(e);
        if (a && b && asprintf(&out, "{\"kty\":\"RSA\",\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"%s}", a, b, extra) < 0)
            out = NULL;
    } else if (id == EVP_PKEY_EC) {
        BIGNUM *x = NULL, *y = NULL;
        int bits = EVP_PKEY_get_bits(k), cl = (bits + 7) / 8;
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x);
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
        a = mint_bn_b64(x, cl);
        b = mint_bn_b64(y, cl);
        BN_free(x);
        BN_free(y);
        if (a && b &&
            asprintf(&out, "{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"%s}",
                     bits == 256 ? "P-256" : "P-384", a, b, extra) < 0)
            out = NULL;
    } else if (id == EVP_PKEY_ED25519) {
        unsigned char raw[32];
        size_t rl = sizeof(raw);
        if (EVP_PKEY_get_raw_public_key(k, raw, &rl) == 1 && (a = mint_b64(raw, rl)) &&
            asprintf(&out, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"%s}", a, extra) < 0)
            out = NULL;
    }
    free(a);
    free(b);
    return out;
}

/* Signature over data with alg ("RS256".."PS512", "ES256", "ES384", "EdDSA", "HS256" with secret). Returns
 * malloc'd bytes and *slen, or NULL. For ES*, the raw r||s form of RFC 7518. */
MINT_UNUSED static unsigned char *mint_sign_raw(const char *alg, EVP_PKEY *k, const unsigned char *secret,
                                                size_t secret_len, const char *data, size_t dlen, size_t *slen)
{
    const char *md = NULL;
    int pss = 0;
    unsigned char *sig = NULL;
    if (strncmp(alg, "HS", 2) == 0) {
        const EVP_MD *m = strcmp(alg, "HS384") == 0   ? EVP_sha384()
                          : strcmp(alg, "HS512") == 0 ? EVP_sha512()
                                                      : EVP_sha256();
        unsigned int l = 0;
        sig = malloc(EVP_MAX_MD_SIZE);
        if (sig && !HMAC(m, secret, (int)secret_len, (const unsigned char *)data, dlen, sig, &l)) {
            free(sig);
            return NULL;
        }
        *slen = l;
        return sig;
    }
    if (strcmp(alg + 2, "256") == 0)
        md = "SHA256";
    else if (strcmp(alg + 2, "384") == 0)
        md = "SHA384";
    else if (strcmp(alg + 2, "512") == 0)
        md = "SHA512";
    pss = alg[0] == 'P';
    if (strcmp(alg, "EdDSA") == 0)
        md = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t l = 0;
    if (!ctx || EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, k, NULL) != 1)
        goto fail;
    if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
        goto fail;
    if (EVP_DigestSign(ctx, NULL, &l, (const unsigned char *)data, dlen) != 1 || !(sig = malloc(l)) ||
        EVP_DigestSign(ctx, sig, &l, (const unsigned char *)data, dlen) != 1)
        goto fail;
    EVP_MD_CTX_free(ctx);
    ctx = NULL;
    if (alg[0] == 'E' && alg[1] == 'S') {
        size_t cl = strcmp(alg, "ES256") == 0 ? 32 : 48;
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)l);
        unsigned char *raw = malloc(2 * cl);
        if (!es || !raw || BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)cl) != (int)cl ||
            BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + cl, (int)cl) != (int)cl) {
            ECDSA_SIG_free(es);
            free(raw);
            goto fail;
        }
        ECDSA_SIG_free(es);
        free(sig);
        sig = raw;
        l = 2 * cl;
    }
    *slen = l;
    return sig;
fail:
    EVP_MD_CTX_free(ctx);
    free(sig);
    return NULL;
}

/* Compact JWS of header_json and payload_json (both JSON texts, used verbatim), signed with alg.
 * alg "none" gives an empty signature. malloc'd, or NULL. */
MINT_UNUSED static char *mint_token_hdr(const char *alg, EVP_PKEY *k, const unsigned char *secret, size_t secret_len,
                                        const char *header_json, const char *payload_json)
{
    char *h = mint_b64(header_json, strlen(header_json)), *p = mint_b64(payload_json, strlen(payload_json));
    char *si = NULL, *out = NULL, *data = NULL;
    if (!h || !p || asprintf(&data, "%s.%s", h, p) < 0)
        goto done;
    if (strcmp(alg, "none") == 0) {
        si = strdup("");
    } else {
        size_t sl = 0;
        unsigned char *sig = mint_sign_raw(alg, k, secret, secret_len, data, strlen(data), &sl);
        if (sig)
            si = mint_b64(sig, sl);
        free(sig);
    }
    if (si && asprintf(&out, "%s.%s", data, si) < 0)
        out = NULL;
done:
    free(h);
    free(p);
    free(si);
    free(data);
    return out;
}

/* Header {"alg":alg,"typ":"JWT"[,"kid":kid]} then mint_token_hdr. */
MINT_UNUSED static char *mint_token(const char *alg, EVP_PKEY *k, const char *kid, const char *payload_json)
{
    char hdr[512];
    if (kid)
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
    else
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    return mint_token_hdr(alg, k, NULL, 0, hdr, payload_json);
}

#endif
