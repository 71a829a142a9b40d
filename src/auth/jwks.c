/* SPDX-License-Identifier: Apache-2.0
 * JWK → EVP_PKEY (RSA n/e, EC P-256/P-384 x/y, OKP Ed25519 x) and the immutable refcounted key set.
 * Strict base64url shared with the JWT verifier. */
#include "auth/jwks.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "util/err.h"
#include "util/json.h"

struct custos_jwks {
    atomic_uint refs;
    size_t n;
    custos_jwk_t *keys;
};

/* ---------- base64url ---------- */

static const unsigned char b64url_val[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
}; /* value + 1; 0 = not in the alphabet */

long custos_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len % 4 == 1)
        return CUSTOS_EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return CUSTOS_ETOOBIG;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val[(unsigned char)in[i]];
        if (v == 0)
            return CUSTOS_EINVAL;
        acc = (acc << 6) | (uint32_t)(v - 1);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* non-canonical: unused trailing bits must be zero */
        return CUSTOS_EINVAL;
    return (long)o;
}

size_t custos_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
    }
    out[o] = 0;
    return o;
}

/* ---------- JWK ---------- */

#define JWK_MAX_FIELD 1024 /* decoded bytes of one key member (RSA n up to 8192 bits) */

/* Decodes the string member name of o into buf; returns length or negative. Absent → CUSTOS_ENOTFOUND. */
static long member_b64(struct json_object *o, const char *name, unsigned char *buf, size_t cap)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, name, &v))
        return CUSTOS_ENOTFOUND;
    if (!json_object_is_type(v, json_type_string))
        return CUSTOS_EINVAL;
    return custos_b64url_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), buf, cap);
}

static const char *member_str(struct json_object *o, const char *name)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static int rsa_from(const unsigned char *n, size_t nlen, const unsigned char *e, size_t elen, EVP_PKEY **out,
                    const char **why)
{
    int rc = CUSTOS_ENOMEM;
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    *why = "out of memory";
    while (nlen > 0 && n[0] == 0) {
        n++;
        nlen--;
    }
    while (elen > 0 && e[0] == 0) {
        e++;
        elen--;
    }
    if (elen == 0 || elen > 8 || !(e[elen - 1] & 1) || (elen == 1 && e[0] < 3)) {
        *why = "bad RSA exponent";
        return CUSTOS_EINVAL;
    }
    if (nlen * 8 < CUSTOS_JWK_MIN_RSA_BITS || !(n[nlen - 1] & 1)) {
        *why = "RSA modulus too small or even";
        return CUSTOS_EINVAL;
    }
    bn = BN_bin2bn(n, (int)nlen, NULL);
    be = BN_bin2bn(e, (int)elen, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (!bn || !be || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) || !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto done;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx)
        goto done;
    if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        *why = "bad RSA key";
        rc = CUSTOS_EINVAL;
        goto done;
    }
    if (EVP_PKEY_get_bits(*out) < CUSTOS_JWK_MIN_RSA_BITS) {
        EVP_PKEY_free(*out);
        *out = NULL;
        *why = "RSA modulus too small or even";
        rc = CUSTOS_EINVAL;
        goto done;
    }
    rc = 0;
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return rc;
}

static int ec_from(const char *group, const unsigned char *x, const unsigned char *y, size_t clen, EVP_PKEY **out,
                   const char **why)
{
    unsigned char pub[1 + 2 * 48];
    int rc = CUSTOS_ENOMEM;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    *why = "out of memory";
    pub[0] = 4;
    memcpy(pub + 1, x, clen);
    memcpy(pub + 1 + clen, y, clen);
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * clen) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto done;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx)
        goto done;
    if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        *why = "bad EC point";
        rc = CUSTOS_EINVAL;
        goto done;
    }
    chk = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    if (!chk || EVP_PKEY_public_check(chk) != 1) {
        EVP_PKEY_free(*out);
        *out = NULL;
        *why = "bad EC point";
        rc = CUSTOS_EINVAL;
        goto done;
    }
    rc = 0;
done:
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

static const char *const rsa_algs[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", NULL};

static int alg_fits(custos_jwk_type_t t, const char *alg)
{
    switch (t) {
    case CUSTOS_JWK_RSA:
        for (int i = 0; rsa_algs[i]; i++)
            if (strcmp(alg, rsa_algs[i]) == 0)
                return 1;
        return 0;
    case CUSTOS_JWK_EC_P256:
        return strcmp(alg, "ES256") == 0;
    case CUSTOS_JWK_EC_P384:
        return strcmp(alg, "ES384") == 0;
    case CUSTOS_JWK_ED25519:
        return strcmp(alg, "EdDSA") == 0;
    }
    return 0;
}

int custos_jwk_parse(struct json_object *o, custos_jwk_t *k, const char **why)
{
    static const char *dummy;
    unsigned char a[JWK_MAX_FIELD], b[JWK_MAX_FIELD];
    const char *kty, *s;
    struct json_object *tmp;
    int rc = CUSTOS_EINVAL;
    long la, lb;
    if (!why)
        why = &dummy;
    memset(k, 0, sizeof(*k));
    if (!o || !json_object_is_type(o, json_type_object)) {
        *why = "JWK is not an object";
        return CUSTOS_EINVAL;
    }
    if (json_object_object_get_ex(o, "d", &tmp)) {
        *why = "JWK holds a private key";
        return CUSTOS_EINVAL;
    }
    if (json_object_object_get_ex(o, "use", &tmp) &&
        (!json_object_is_type(tmp, json_type_string) || strcmp(json_object_get_string(tmp), "sig") != 0)) {
        *why = "JWK use is not sig";
        return CUSTOS_EINVAL;
    }
    if (!(kty = member_str(o, "kty"))) {
        *why = "JWK has no kty";
        return CUSTOS_EINVAL;
    }
    if (strcmp(kty, "RSA") == 0) {
        k->type = CUSTOS_JWK_RSA;
        la = member_b64(o, "n", a, sizeof(a));
        lb = member_b64(o, "e", b, sizeof(b));
        if (la < 0 || lb < 0) {
            *why = "bad RSA n or e";
            return CUSTOS_EINVAL;
        }
        rc = rsa_from(a, (size_t)la, b, (size_t)lb, &k->pkey, why);
    } else if (strcmp(kty, "EC") == 0) {
        const char *crv = member_str(o, "crv");
        size_t clen;
        const char *group;
        if (crv && strcmp(crv, "P-256") == 0) {
            k->type = CUSTOS_JWK_EC_P256;
            clen = 32;
            group = "prime256v1";
        } else if (crv && strcmp(crv, "P-384") == 0) {
            k->type = CUSTOS_JWK_EC_P384;
            clen = 48;
            group = "secp384r1";
        } else {
            *why = "unsupported EC curve";
            return CUSTOS_EINVAL;
        }
        la = member_b64(o, "x", a, sizeof(a));
        lb = member_b64(o, "y", b, sizeof(b));
        if (la != (long)clen || lb != (long)clen) {
            *why = "bad EC x or y";
            return CUSTOS_EINVAL;
        }
        rc = ec_from(group, a, b, clen, &k->pkey, why);
    } else if (strcmp(kty, "OKP") == 0) {
        const char *crv = member_str(o, "crv");
        if (!crv || strcmp(crv, "Ed25519") != 0) {
            *why = "unsupported OKP curve";
            return CUSTOS_EINVAL;
        }
        k->type = CUSTOS_JWK_ED25519;
        la = member_b64(o, "x", a, sizeof(a));
        if (la != 32) {
            *why = "bad Ed25519 x";
            return CUSTOS_EINVAL;
        }
        k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, a, 32);
        if (!k->pkey) {
            *why = "bad Ed25519 key";
            return CUSTOS_EINVAL;
        }
        rc = 0;
    } else {
        *why = "unsupported kty";
        return CUSTOS_EINVAL;
    }
    if (rc != 0)
        goto fail;
    rc = CUSTOS_EINVAL;
    if (json_object_object_get_ex(o, "alg", &tmp)) {
        if (!json_object_is_type(tmp, json_type_string) || !alg_fits(k->type, (s = json_object_get_string(tmp)))) {
            *why = "JWK alg does not fit its key type";
            goto fail;
        }
        memcpy(k->alg, s, strlen(s) + 1);
    }
    if (json_object_object_get_ex(o, "kid", &tmp)) {
        size_t kl = json_object_is_type(tmp, json_type_string) ? (size_t)json_object_get_string_len(tmp) : 0;
        if (kl == 0 || kl > CUSTOS_JWK_MAX_KID || strlen(json_object_get_string(tmp)) != kl) {
            *why = "bad JWK kid";
            goto fail;
        }
        if (!(k->kid = strdup(json_object_get_string(tmp)))) {
            rc = CUSTOS_ENOMEM;
            *why = "out of memory";
            goto fail;
        }
    }
    *why = "ok";
    return 0;
fail:
    custos_jwk_dispose(k);
    return rc;
}

void custos_jwk_dispose(custos_jwk_t *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->kid);
    memset(k, 0, sizeof(*k));
}

/* ---------- key set ---------- */

custos_jwks_t *custos_jwks_new_empty(void)
{
    custos_jwks_t *s = calloc(1, sizeof(*s));
    if (s)
        atomic_init(&s->refs, 1);
    return s;
}

int custos_jwks_parse(const char *json, size_t len, custos_jwks_t **out, size_t *skipped, const char **why)
{
    static const char *dummy;
    struct json_object *root = NULL, *arr;
    custos_jwks_t *s = NULL;
    size_t skip = 0;
    int rc;
    if (!why)
        why = &dummy;
    *out = NULL;
    if (skipped)
        *skipped = 0;
    if (len > CUSTOS_JWKS_MAX_BYTES) {
        *why = "JWKS too large";
        return CUSTOS_ETOOBIG;
    }
    rc = custos_json_parse(json, len, 16, &root, NULL, NULL);
    if (rc < 0) {
        *why = "JWKS is not valid JSON";
        return rc == CUSTOS_ENOMEM ? rc : CUSTOS_EINVAL;
    }
    rc = CUSTOS_EINVAL;
    if (!root || !json_object_is_type(root, json_type_object) || !json_object_object_get_ex(root, "keys", &arr) ||
        !json_object_is_type(arr, json_type_array)) {
        *why = "JWKS has no keys array";
        goto fail;
    }
    size_t n = json_object_array_length(arr);
    if (n > CUSTOS_JWKS_MAX_KEYS) {
        *why = "JWKS has too many keys";
        rc = CUSTOS_ETOOBIG;
        goto fail;
    }
    rc = CUSTOS_ENOMEM;
    *why = "out of memory";
    if (!(s = custos_jwks_new_empty()) || (n && !(s->keys = calloc(n, sizeof(*s->keys)))))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        custos_jwk_t k;
        const char *kwhy;
        int r = custos_jwk_parse(json_object_array_get_idx(arr, i), &k, &kwhy);
        if (r == CUSTOS_ENOMEM)
            goto fail;
        if (r < 0) {
            skip++;
            continue;
        }
        if (k.kid && custos_jwks_find(s, k.kid, strlen(k.kid), k.type)) {
            custos_jwk_dispose(&k); /* a repeated kid would make lookups ambiguous: first one wins */
            skip++;
            continue;
        }
        s->keys[s->n++] = k;
    }
    json_object_put(root);
    if (skipped)
        *skipped = skip;
    *out = s;
    *why = "ok";
    return 0;
fail:
    custos_jwks_unref(s);
    json_object_put(root);
    return rc;
}

custos_jwks_t *custos_jwks_ref(const custos_jwks_t *s)
{
    custos_jwks_t *m = (custos_jwks_t *)s;
    if (m)
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void custos_jwks_unref(const custos_jwks_t *s)
{
    custos_jwks_t *m = (custos_jwks_t *)s;
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < m->n; i++)
        custos_jwk_dispose(&m->keys[i]);
    free(m->keys);
    free(m);
}

size_t custos_jwks_count(const custos_jwks_t *s)
{
    return s ? s->n : 0;
}

const custos_jwk_t *custos_jwks_at(const custos_jwks_t *s, size_t i)
{
    return s && i < s->n ? &s->keys[i] : NULL;
}

const custos_jwk_t *custos_jwks_find(const custos_jwks_t *s, const char *kid, size_t kid_len, custos_jwk_type_t want)
{
    const custos_jwk_t *found = NULL;
    if (!s)
        return NULL;
    for (size_t i = 0; i < s->n; i++) {
        const custos_jwk_t *k = &s->keys[i];
        if (kid) {
            if (k->kid && strlen(k->kid) == kid_len && memcmp(k->kid, kid, kid_len) == 0)
                return k;
        } else if (k->type == want) {
            if (found)
                return NULL; /* ambiguous */
            found = k;
        }
    }
    return found;
}
