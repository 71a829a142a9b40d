/* SPDX-License-Identifier: Apache-2.0
 * JSON Web Key sets: JWK (RSA, EC P-256/P-384, OKP Ed25519) → EVP_PKEY via OSSL_PARAM_BLD + EVP_PKEY_fromdata,
 * held in an immutable, refcounted set looked up by `kid`. */
#ifndef CUSTOS_AUTH_JWKS_H
#define CUSTOS_AUTH_JWKS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

struct json_object;

#define CUSTOS_JWKS_MAX_BYTES ((size_t)1024 * 1024) /* JWKS documents larger than this are refused */
#define CUSTOS_JWKS_MAX_KEYS 256                    /* keys kept per set; more → refused */
#define CUSTOS_JWK_MAX_KID 256                      /* longer kid values are refused */
#define CUSTOS_JWK_MIN_RSA_BITS 2048

typedef enum {
    CUSTOS_JWK_RSA = 1,
    CUSTOS_JWK_EC_P256,
    CUSTOS_JWK_EC_P384,
    CUSTOS_JWK_ED25519,
} custos_jwk_type_t;

typedef struct custos_jwk {
    char *kid;   /* NULL when the JWK had none */
    char alg[8]; /* the JWK's `alg` ("" when absent); when set, tokens must use exactly it */
    custos_jwk_type_t type;
    EVP_PKEY *pkey; /* public key, owned */
} custos_jwk_t;

typedef struct custos_jwks custos_jwks_t;

/* Parses one JWK object into k (caller-owned; release with custos_jwk_dispose). Rejects private keys (`d`),
 * `use` other than "sig", unsupported kty/crv (oct, X25519, P-521, ...), RSA under 2048 bits, bad base64url,
 * wrong coordinate lengths and points not on the curve. Returns 0, CUSTOS_EINVAL or CUSTOS_ENOMEM; *why (if
 * not NULL) gets a static reason. Thread-safe. */
int custos_jwk_parse(struct json_object *o, custos_jwk_t *k, const char **why);
void custos_jwk_dispose(custos_jwk_t *k);

/* Parses a JWKS document {"keys":[...]} of at most CUSTOS_JWKS_MAX_BYTES. Unsupported or invalid keys are
 * skipped (counted in *skipped if not NULL), as is a key whose kid repeats an earlier key's; a set with no
 * usable key is still returned (lookups fail).
 * Returns 0 and a set with one reference, CUSTOS_EINVAL (not a JWKS object with a `keys` array), CUSTOS_ETOOBIG or
 * CUSTOS_ENOMEM. Thread-safe. */
int custos_jwks_parse(const char *json, size_t len, custos_jwks_t **out, size_t *skipped, const char **why);

/* An empty set (one reference). NULL on ENOMEM. */
custos_jwks_t *custos_jwks_new_empty(void);

/* Atomic refcounting; NULL-safe. ref returns s. */
custos_jwks_t *custos_jwks_ref(const custos_jwks_t *s);
void custos_jwks_unref(const custos_jwks_t *s);

/* Number of usable keys. */
size_t custos_jwks_count(const custos_jwks_t *s);
/* The i-th key (0 <= i < count), borrowed from s. */
const custos_jwk_t *custos_jwks_at(const custos_jwks_t *s, size_t i);

/* Key with this kid (exact bytes; kid need not be NUL-terminated), borrowed from s, or NULL.
 * kid == NULL: the only key of type want (NULL when there are zero or several). NULL-safe on s. */
const custos_jwk_t *custos_jwks_find(const custos_jwks_t *s, const char *kid, size_t kid_len, custos_jwk_type_t want);

/* Strict base64url decoding (RFC 7515 §2): alphabet A-Z a-z 0-9 - _, no padding, no whitespace, length
 * mod 4 != 1, unused trailing bits zero. Writes at most cap bytes to out. Returns the decoded length, or
 * CUSTOS_EINVAL / CUSTOS_ETOOBIG. Thread-safe. */
long custos_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/* Encoding without padding; out must hold 4*ceil(len/3) + 1 bytes. Returns the length written (NUL-terminated). */
size_t custos_b64url_encode(const unsigned char *in, size_t len, char *out);

#endif
