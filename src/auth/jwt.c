/* SPDX-License-Identifier: Apache-2.0
 * Verify-only compact JWS on OpenSSL 3 EVP (RS*, PS*, ES256/384, EdDSA) and claim checks.
 * Order: size cap → shape → header (alg allow-list, crit) → key by kid, type must fit alg → signature → claims. */
#include "auth/jwt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>

#include "auth/jwks.h"
#include "util/err.h"
#include "util/json.h"

#define HDR_MAX_DEPTH 4
#define PAYLOAD_MAX_DEPTH 16

typedef struct alg_info {
    const char *name;
    custos_jwk_type_t key;
    const char *md; /* NULL for EdDSA */
    int pss;
    size_t ec_len; /* coordinate length for ES*, else 0 */
} alg_info_t;

static const alg_info_t algs[] = {
    {"RS256", CUSTOS_JWK_RSA, "SHA256", 0, 0},      {"RS384", CUSTOS_JWK_RSA, "SHA384", 0, 0},
    {"RS512", CUSTOS_JWK_RSA, "SHA512", 0, 0},      {"PS256", CUSTOS_JWK_RSA, "SHA256", 1, 0},
    {"PS384", CUSTOS_JWK_RSA, "SHA384", 1, 0},      {"PS512", CUSTOS_JWK_RSA, "SHA512", 1, 0},
    {"ES256", CUSTOS_JWK_EC_P256, "SHA256", 0, 32}, {"ES384", CUSTOS_JWK_EC_P384, "SHA384", 0, 48},
    {"EdDSA", CUSTOS_JWK_ED25519, NULL, 0, 0},
};

static const char *const user_claims[] = {"scp", "upn", "preferred_username", "unique_name", "email", "name", NULL};

bool custos_jwt_looks_like_jwt(const char *t, size_t len)
{
    size_t dots = 0, seg = 0;
    if (!t || len < 3 + 2 + 2 || memcmp(t, "eyJ", 3) != 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '.') {
            if (seg == 0 || ++dots > 2)
                return false;
            seg = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            seg++;
        } else {
            return false;
        }
    }
    return dots == 2 && seg > 0;
}

/* Splits into three parts (header and payload non-empty; an empty signature is refused later). */
static int split(const char *t, size_t len, size_t *d1, size_t *d2)
{
    const char *p = memchr(t, '.', len);
    if (!p)
        return CUSTOS_EINVAL;
    *d1 = (size_t)(p - t);
    p = memchr(p + 1, '.', len - *d1 - 1);
    if (!p)
        return CUSTOS_EINVAL;
    *d2 = (size_t)(p - t);
    if (memchr(p + 1, '.', len - *d2 - 1) || *d1 == 0 || *d2 == *d1 + 1)
        return CUSTOS_EINVAL;
    return 0;
}

/* Decodes part [off, off+n) into a fresh JSON object. */
static int decode_json(const char *t, size_t n, unsigned char *scratch, size_t cap, int depth, json_object **out)
{
    long dl = custos_b64url_decode(t, n, scratch, cap);
    *out = NULL;
    if (dl <= 0)
        return CUSTOS_EINVAL;
    json_object *o = NULL;
    int rc = custos_json_parse((const char *)scratch, (size_t)dl, depth, &o, NULL, NULL);
    if (rc == CUSTOS_ENOMEM)
        return rc;
    if (rc < 0 || !o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return CUSTOS_EINVAL;
    }
    *out = o;
    return 0;
}

int custos_jwt_peek_issuer(const char *token, size_t len, size_t max_bytes, char *iss, size_t cap)
{
    size_t d1, d2;
    json_object *p = NULL, *v;
    int rc;
    if (cap)
        iss[0] = 0;
    if (len > (max_bytes ? max_bytes : CUSTOS_JWT_DEFAULT_MAX_BYTES))
        return CUSTOS_ETOOBIG;
    if (!token || split(token, len, &d1, &d2) < 0)
        return CUSTOS_EINVAL;
    unsigned char *scratch = malloc(len);
    if (!scratch)
        return CUSTOS_ENOMEM;
    rc = decode_json(token + d1 + 1, d2 - d1 - 1, scratch, len, PAYLOAD_MAX_DEPTH, &p);
    free(scratch);
    if (rc < 0)
        return rc;
    rc = CUSTOS_EINVAL;
    if (json_object_object_get_ex(p, "iss", &v) && json_object_is_type(v, json_type_string)) {
        size_t l = (size_t)json_object_get_string_len(v);
        if (l + 1 > cap) {
            rc = CUSTOS_ETOOBIG;
        } else if (l > 0 && strlen(json_object_get_string(v)) == l) {
            memcpy(iss, json_object_get_string(v), l + 1);
            rc = 0;
        }
    }
    json_object_put(p);
    return rc;
}

/* ---------- signature ---------- */

static int verify_sig(const alg_info_t *a, EVP_PKEY *pkey, const char *data, size_t dlen, const unsigned char *sig,
                      size_t slen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    ECDSA_SIG *es = NULL;
    int ok = 0;
    if (!md)
        return CUSTOS_ENOMEM;
    if (a->key == CUSTOS_JWK_RSA) {
        if ((int)slen != EVP_PKEY_get_size(pkey))
            goto done;
    } else if (a->ec_len) {
        if (slen != 2 * a->ec_len)
            goto done;
        BIGNUM *r = BN_bin2bn(sig, (int)a->ec_len, NULL), *s = BN_bin2bn(sig + a->ec_len, (int)a->ec_len, NULL);
        es = ECDSA_SIG_new();
        if (!r || !s || !es || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            goto done;
        }
        int n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0)
            goto done;
        sig = der;
        slen = (size_t)n;
    } else if (slen != 64) { /* Ed25519 */
        goto done;
    }
    if (EVP_DigestVerifyInit_ex(md, &pctx, a->md, NULL, NULL, pkey, NULL) != 1)
        goto done;
    if (a->pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                   EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1))
        goto done;
    ok = EVP_DigestVerify(md, sig, slen, (const unsigned char *)data, dlen) == 1;
done:
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    return ok ? 0 : CUSTOS_EINVAL;
}

/* ---------- claims ---------- */

static int num_claim(json_object *p, const char *name, int64_t *out, bool *has)
{
    json_object *v;
    *has = false;
    if (!json_object_object_get_ex(p, name, &v))
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d < -9.2e18 || d > 9.2e18)
            return CUSTOS_EINVAL;
        *out = (int64_t)d;
    } else {
        return CUSTOS_EINVAL;
    }
    *has = true;
    return 0;
}

/* Copies a string claim (NULL when absent). Non-string or embedded NUL → CUSTOS_EINVAL. */
static int str_claim(json_object *p, const char *name, char **out)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(p, name, &v))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return CUSTOS_EINVAL;
    size_t l = (size_t)json_object_get_string_len(v);
    if (strlen(json_object_get_string(v)) != l)
        return CUSTOS_EINVAL;
    *out = strdup(json_object_get_string(v));
    return *out ? 0 : CUSTOS_ENOMEM;
}

/* String or array of strings → list. Absent → empty. */
static int list_claim(json_object *p, const char *name, custos_jwt_strs_t *l)
{
    json_object *v;
    l->v = NULL;
    l->n = 0;
    if (!json_object_object_get_ex(p, name, &v))
        return 0;
    size_t n;
    if (json_object_is_type(v, json_type_string))
        n = 1;
    else if (json_object_is_type(v, json_type_array))
        n = json_object_array_length(v);
    else
        return CUSTOS_EINVAL;
    if (n > CUSTOS_JWT_MAX_LIST)
        return CUSTOS_EINVAL;
    if (n == 0)
        return 0;
    if (!(l->v = calloc(n, sizeof(char *))))
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_is_type(v, json_type_string) ? v : json_object_array_get_idx(v, i);
        if (!e || !json_object_is_type(e, json_type_string) ||
            strlen(json_object_get_string(e)) != (size_t)json_object_get_string_len(e))
            return CUSTOS_EINVAL;
        if (!(l->v[i] = strdup(json_object_get_string(e))))
            return CUSTOS_ENOMEM;
        l->n = i + 1;
    }
    return 0;
}

static void strs_free(custos_jwt_strs_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

bool custos_jwt_strs_has(const custos_jwt_strs_t *l, const char *s)
{
    for (size_t i = 0; l && s && i < l->n; i++)
        if (strcmp(l->v[i], s) == 0)
            return true;
    return false;
}

void custos_jwt_claims_free(custos_jwt_claims_t *c)
{
    if (!c)
        return;
    free(c->principal);
    free(c->principal_claim);
    free(c->iss);
    free(c->sub);
    free(c->oid);
    free(c->app_id);
    free(c->tid);
    free(c->scp);
    free(c->kid);
    strs_free(&c->aud);
    strs_free(&c->roles);
    strs_free(&c->groups);
    strs_free(&c->amr);
    json_object_put(c->json);
    free(c);
}

#define FAIL(code, reason)                                                                                             \
    do {                                                                                                               \
        rc = (code);                                                                                                   \
        *why = (reason);                                                                                               \
        goto fail;                                                                                                     \
    } while (0)
#define TRY(expr, reason)                                                                                              \
    do {                                                                                                               \
        int r_ = (expr);                                                                                               \
        if (r_ < 0)                                                                                                    \
            FAIL(r_ == CUSTOS_ENOMEM ? r_ : CUSTOS_EINVAL, r_ == CUSTOS_ENOMEM ? "out of memory" : (reason));          \
    } while (0)

static int check_claims(json_object *p, const custos_jwt_policy_t *pol, uint64_t now_s, custos_jwt_claims_t *c,
                        const char **why)
{
    int rc;
    bool has_exp;
    int64_t now = (int64_t)(now_s > INT64_MAX / 2 ? INT64_MAX / 2 : now_s);
    int64_t skew = pol->clock_skew_s;
    TRY(str_claim(p, "iss", &c->iss), "bad iss");
    if (!c->iss)
        FAIL(CUSTOS_EINVAL, "no iss");
    if (pol->issuer && strcmp(c->iss, pol->issuer) != 0)
        FAIL(CUSTOS_EINVAL, "wrong issuer");
    TRY(list_claim(p, "aud", &c->aud), "bad aud");
    if (pol->n_audiences) {
        bool ok = false;
        for (size_t i = 0; i < pol->n_audiences && !ok; i++)
            ok = custos_jwt_strs_has(&c->aud, pol->audiences[i]);
        if (!ok)
            FAIL(CUSTOS_EINVAL, "wrong audience");
    }
    TRY(num_claim(p, "exp", &c->exp, &has_exp), "bad exp");
    TRY(num_claim(p, "nbf", &c->nbf, &c->has_nbf), "bad nbf");
    TRY(num_claim(p, "iat", &c->iat, &c->has_iat), "bad iat");
    if (!has_exp)
        FAIL(CUSTOS_EINVAL, "no exp");
    if (c->exp < INT64_MIN / 2 || c->exp > INT64_MAX / 2 || now >= c->exp + skew)
        FAIL(CUSTOS_EINVAL, "expired");
    if (c->has_nbf && c->nbf > now + skew)
        FAIL(CUSTOS_EINVAL, "not yet valid");
    if (c->has_iat && c->iat > now + skew)
        FAIL(CUSTOS_EINVAL, "issued in the future");
    if (pol->max_token_age_s) {
        if (!c->has_iat)
            FAIL(CUSTOS_EINVAL, "no iat (max token age)");
        if (now - c->iat > (int64_t)pol->max_token_age_s + skew)
            FAIL(CUSTOS_EINVAL, "token too old");
    }
    TRY(str_claim(p, "sub", &c->sub), "bad sub");
    TRY(str_claim(p, "oid", &c->oid), "bad oid");
    TRY(str_claim(p, "tid", &c->tid), "bad tid");
    TRY(str_claim(p, "scp", &c->scp), "bad scp");
    TRY(str_claim(p, "appid", &c->app_id), "bad appid");
    if (!c->app_id)
        TRY(str_claim(p, "azp", &c->app_id), "bad azp");
    TRY(list_claim(p, pol->roles_claim ? pol->roles_claim : "roles", &c->roles), "bad roles");
    TRY(list_claim(p, pol->groups_claim ? pol->groups_claim : "groups", &c->groups), "bad groups");
    TRY(list_claim(p, "amr", &c->amr), "bad amr");

    /* principal */
    const char *pc = pol->principal_claim && *pol->principal_claim ? pol->principal_claim : "oid";
    const char *src = NULL;
    char *val = NULL;
    TRY(str_claim(p, pc, &val), "bad principal claim");
    if (val && *val) {
        src = pc;
    } else {
        free(val);
        val = NULL;
        if (c->sub && *c->sub) {
            val = strdup(c->sub);
            src = "sub";
            if (!val)
                FAIL(CUSTOS_ENOMEM, "out of memory");
        }
    }
    if (!val)
        FAIL(CUSTOS_EINVAL, "no principal claim");
    c->principal = val;
    if (!(c->principal_claim = strdup(src)))
        FAIL(CUSTOS_ENOMEM, "out of memory");

    json_object *v;
    if (json_object_object_get_ex(p, "idtyp", &v) && json_object_is_type(v, json_type_string) &&
        strcmp(json_object_get_string(v), "app") == 0) {
        c->is_app = true;
    } else if (c->app_id) {
        c->is_app = true;
        for (int i = 0; user_claims[i]; i++)
            if (json_object_object_get_ex(p, user_claims[i], &v))
                c->is_app = false;
    }
    return 0;
fail:
    return rc;
}

int custos_jwt_verify(const custos_jwks_t *keys, const char *token, size_t len, const custos_jwt_policy_t *pol,
                      uint64_t now_s, custos_jwt_claims_t **out, const char **why)
{
    static const char *dummy;
    static const custos_jwt_policy_t defpol = {.clock_skew_s = CUSTOS_JWT_DEFAULT_SKEW_S};
    size_t d1, d2, cap;
    unsigned char *scratch = NULL;
    json_object *hdr = NULL, *pay = NULL, *v;
    custos_jwt_claims_t *c = NULL;
    const alg_info_t *alg = NULL;
    const char *kid = NULL;
    size_t kid_len = 0;
    int rc;
    if (!why)
        why = &dummy;
    *out = NULL;
    if (!pol)
        pol = &defpol;
    cap = pol->max_token_bytes ? pol->max_token_bytes : CUSTOS_JWT_DEFAULT_MAX_BYTES;
    if (!token || len == 0)
        FAIL(CUSTOS_EINVAL, "empty token");
    if (len > cap)
        FAIL(CUSTOS_ETOOBIG, "token too large");
    if (split(token, len, &d1, &d2) < 0)
        FAIL(CUSTOS_EINVAL, "not a compact JWS");
    if (!(scratch = malloc(len)))
        FAIL(CUSTOS_ENOMEM, "out of memory");

    /* header */
    TRY(decode_json(token, d1, scratch, len, HDR_MAX_DEPTH, &hdr), "malformed header");
    if (!json_object_object_get_ex(hdr, "alg", &v) || !json_object_is_type(v, json_type_string))
        FAIL(CUSTOS_EINVAL, "no alg");
    const char *an = json_object_get_string(v);
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
        if (strcmp(an, algs[i].name) == 0)
            alg = &algs[i];
    if (!alg) {
        if (strcasecmp(an, "none") == 0)
            FAIL(CUSTOS_EINVAL, "alg none refused");
        if (strncasecmp(an, "HS", 2) == 0)
            FAIL(CUSTOS_EINVAL, "HMAC alg refused");
        FAIL(CUSTOS_EINVAL, "unsupported alg");
    }
    if (json_object_object_get_ex(hdr, "crit", &v))
        FAIL(CUSTOS_EINVAL, "unknown crit header"); /* we implement no JWS extension */
    if (json_object_object_get_ex(hdr, "typ", &v)) {
        const char *typ = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcasecmp(typ, "JWT") != 0 && strcasecmp(typ, "at+jwt") != 0 && strcasecmp(typ, "application/jwt") != 0 &&
            strcasecmp(typ, "application/at+jwt") != 0)
            FAIL(CUSTOS_EINVAL, "bad typ");
    }
    if (json_object_object_get_ex(hdr, "kid", &v)) {
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
            (size_t)json_object_get_string_len(v) > CUSTOS_JWK_MAX_KID)
            FAIL(CUSTOS_EINVAL, "bad kid");
        kid = json_object_get_string(v);
        kid_len = (size_t)json_object_get_string_len(v);
    }

    /* key: must exist and fit the alg */
    const custos_jwk_t *k = custos_jwks_find(keys, kid, kid_len, alg->key);
    if (!k)
        FAIL(CUSTOS_ENOTFOUND, kid ? "unknown kid" : "no kid and no unique key");
    if (k->type != alg->key || (k->alg[0] && strcmp(k->alg, alg->name) != 0))
        FAIL(CUSTOS_EINVAL, "key does not fit alg");

    /* signature */
    long sl = custos_b64url_decode(token + d2 + 1, len - d2 - 1, scratch, len);
    if (sl <= 0)
        FAIL(CUSTOS_EINVAL, "malformed signature");
    rc = verify_sig(alg, k->pkey, token, d2, scratch, (size_t)sl);
    if (rc == CUSTOS_ENOMEM)
        FAIL(rc, "out of memory");
    if (rc < 0)
        FAIL(CUSTOS_EINVAL, "bad signature");

    /* claims */
    TRY(decode_json(token + d1 + 1, d2 - d1 - 1, scratch, len, PAYLOAD_MAX_DEPTH, &pay), "malformed payload");
    if (!(c = calloc(1, sizeof(*c))))
        FAIL(CUSTOS_ENOMEM, "out of memory");
    if ((rc = check_claims(pay, pol, now_s, c, why)) < 0)
        goto fail;
    memcpy(c->alg, alg->name, strlen(alg->name) + 1);
    if (kid && !(c->kid = strndup(kid, kid_len)))
        FAIL(CUSTOS_ENOMEM, "out of memory");
    c->json = pay;
    pay = NULL;
    *out = c;
    c = NULL;
    *why = "ok";
    rc = 0;
fail:
    custos_jwt_claims_free(c);
    json_object_put(hdr);
    json_object_put(pay);
    free(scratch);
    return rc;
}
