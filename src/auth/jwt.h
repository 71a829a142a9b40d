/* SPDX-License-Identifier: Apache-2.0
 * Verify-only JWT (compact JWS) on OpenSSL 3 EVP: RS256/384/512, PS256/384/512, ES256/384, EdDSA (Ed25519);
 * never `none` or HS*. Claim checks (iss, aud, exp, nbf, iat, age) and the OIDC entry point the gateway calls. */
#ifndef CUSTOS_AUTH_JWT_H
#define CUSTOS_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct json_object;
typedef struct custos_jwks custos_jwks_t; /* immutable refcounted key set, see auth/jwks.h */

#define CUSTOS_JWT_DEFAULT_MAX_BYTES 16384 /* token size cap when the policy says 0 */
#define CUSTOS_JWT_DEFAULT_SKEW_S 60
#define CUSTOS_JWT_MAX_LIST 256 /* roles / groups / amr / aud entries kept; more → the token is rejected */

/* What a token must satisfy. All pointers are borrowed for the duration of the call. */
typedef struct custos_jwt_policy {
    const char *issuer;           /* `iss` must equal this exactly; NULL = not checked (tests only) */
    const char *const *audiences; /* `aud` (string or array) must contain at least one of these */
    size_t n_audiences;           /* 0 = `aud` not checked */
    const char *principal_claim;  /* NULL or "oid": `oid`, else `sub`; any other name: that claim, else `sub` */
    const char *roles_claim;      /* NULL = "roles" */
    const char *groups_claim;     /* NULL = "groups" */
    uint32_t clock_skew_s;        /* tolerance for exp / nbf / iat, seconds */
    size_t max_token_bytes;       /* 0 = CUSTOS_JWT_DEFAULT_MAX_BYTES */
    uint32_t max_token_age_s;     /* 0 = off; else `iat` is required and now - iat <= max + skew */
} custos_jwt_policy_t;

typedef struct custos_jwt_strs {
    char **v; /* owned, each NUL-terminated */
    size_t n;
} custos_jwt_strs_t;

/* The verified token. Everything is owned by the struct; free with custos_jwt_claims_free. */
typedef struct custos_jwt_claims {
    char *principal;       /* never NULL: value of the principal claim (see policy), else `sub` */
    char *principal_claim; /* name of the claim that gave `principal` */
    char *iss;             /* never NULL */
    char *sub;             /* NULL when absent */
    char *oid;             /* NULL when absent */
    char *app_id;          /* `appid`, else `azp`; NULL when absent */
    char *tid;             /* NULL when absent */
    char *scp;             /* delegated scopes (space-separated), NULL when absent */
    custos_jwt_strs_t aud; /* string `aud` becomes one entry */
    custos_jwt_strs_t roles, groups, amr;
    int64_t exp; /* always present (tokens without exp are rejected) */
    int64_t iat, nbf;
    bool has_iat, has_nbf;
    bool is_app;              /* workload identity: `appid`/`azp` present and no user claims (`scp`, `upn`,
                                 `preferred_username`, `unique_name`, `email`, `name`), or `idtyp` == "app" */
    char alg[8];              /* "RS256", ..., "EdDSA" */
    char *kid;                /* NULL when the header had none */
    struct json_object *json; /* the whole payload object (owned reference), for other checks such as a
                                 device-compliance claim; read it with json-c, never modify it */
} custos_jwt_claims_t;

/* Verifies token[0, len) (no NUL needed) against keys and pol at wall-clock time now_s (Unix seconds).
 * On success returns 0 and *out gets a new claims object. On failure *out is NULL and returns
 *   CUSTOS_ETOOBIG   token longer than the cap,
 *   CUSTOS_ENOTFOUND the header's `kid` (or, without `kid`, a unique key for the alg) is not in keys — the
 *                    caller may refetch the key set and retry (keys may be NULL: same result),
 *   CUSTOS_EINVAL    anything else (malformed, forbidden alg, unknown `crit`, bad signature, claim check),
 *   CUSTOS_ENOMEM.
 * *why (if why is not NULL) gets a static reason for logs in every case ("expired", "bad signature", ...);
 * it never contains token text. Does not log. Thread-safe (keys is immutable). */
int custos_jwt_verify(const custos_jwks_t *keys, const char *token, size_t len, const custos_jwt_policy_t *pol,
                      uint64_t now_s, custos_jwt_claims_t **out, const char **why);

/* Frees c and everything it owns. NULL-safe. */
void custos_jwt_claims_free(custos_jwt_claims_t *c);

/* True when list contains s (exact match). */
bool custos_jwt_strs_has(const custos_jwt_strs_t *list, const char *s);

/* Cheap shape test without decoding: three non-empty base64url parts separated by two dots and a first part
 * that starts with "eyJ" (base64url of '{"'). Lets the authentication step tell a JWT from an API key
 * presented as `Authorization: Bearer`. Thread-safe. */
bool custos_jwt_looks_like_jwt(const char *token, size_t len);

/* Decodes the payload WITHOUT verifying it and copies its `iss` string into iss[0, cap) (NUL-terminated), to
 * pick the issuer's keys. Returns 0, CUSTOS_EINVAL (malformed, no string iss), CUSTOS_ETOOBIG (token over
 * max_bytes (0 = default) or iss does not fit). Thread-safe. The value is untrusted until verified. */
int custos_jwt_peek_issuer(const char *token, size_t len, size_t max_bytes, char *iss, size_t cap);

/* ---------- OIDC: the gateway's entry point (implemented in auth/oidc.c) ---------- */

/* Verifies a bearer token against the issuers configured in cfg->identity.oidc: picks the issuer by the
 * token's (unverified) `iss`, takes that issuer's cached key set (process-wide provider, started on first use
 * or by custos_oidc_sync), and verifies with the issuer's audience, claim names, skew, size cap and max age.
 * On an unknown `kid` it asks the background fetcher for the issuer's keys again (at most once per
 * min_refetch_s per issuer) and fails this request (the next one sees the new keys). Never blocks on the
 * network. Returns as custos_jwt_verify; CUSTOS_ENOTFOUND also when no issuer matches `iss` (*why says
 * which) or when the issuer's keys have not been fetched yet. Thread-safe; takes a short mutex. */
int custos_oidc_authenticate(const custos_config_t *cfg, const char *token, size_t len, uint64_t now_s,
                             custos_jwt_claims_t **out, const char **why);

/* Makes the process-wide providers match cfg (call after loading and after each reload, from the main
 * thread): creates providers for new issuers and upstream OAuth2 clients, starts the background fetch thread,
 * and waits up to wait_ms for first key sets / tokens that are not loaded yet (0 = don't wait). Providers of
 * issuers no longer configured are kept (harmless) until custos_oidc_shutdown. Returns 0 or CUSTOS_ENOMEM. */
int custos_oidc_sync(const custos_config_t *cfg, uint32_t wait_ms);

/* Stops the background thread and frees every provider. Call once at exit, after workers stopped. */
void custos_oidc_shutdown(void);

#endif
