/* SPDX-License-Identifier: Apache-2.0
 * Credentials custos presents to backends: a static bearer token, or an OAuth2 client-credentials token
 * fetched from a token endpoint, cached until 60 s before expiry and refreshed by the background fetcher. */
#ifndef CUSTOS_AUTH_UPSTREAM_CRED_H
#define CUSTOS_AUTH_UPSTREAM_CRED_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "util/arena.h"

/* Seconds before a token's expiry at which it is no longer used and a new one is fetched. */
#define CUSTOS_OAUTH2_EARLY_REFRESH_S 60

/* The value of the `Authorization` header for a request to backend b, if b uses bearer or OAuth2 auth.
 * Returns 0 with *value = "Bearer <token>" copied into arena a (*len its length; the caller should zero it
 * after use), or 0 with *value = NULL when b uses no bearer credential (api-key or none: the caller's own
 * logic applies), or CUSTOS_EUNAVAIL when b's OAuth2 token is not available (never fetched or expired and the
 * endpoint failing; the background fetcher has been asked to retry), or CUSTOS_ENOMEM.
 * Never blocks on the network. Thread-safe (short mutex). */
int custos_auth_backend_credential(const custos_backend_config_t *b, custos_arena_t *a, const char **value,
                                   size_t *len);

/* The request header that carries backend b's credential, for every request custos sends it (proxied calls and
 * health probes): the bearer / OAuth2 value above as `authorization`, else b's api_key as `api-key` (Azure) or
 * `authorization: Bearer <key>` (other providers). *name is a static lower-case name (*name_len its length); *value
 * is a copy in arena a (*value_len its length) that the caller zeroes after use; both NULL when b has no credential.
 * Returns 0, or an error of custos_auth_backend_credential, or CUSTOS_ENOMEM. Thread-safe as above. */
int custos_auth_backend_header(const custos_backend_config_t *b, custos_arena_t *a, const char **name, size_t *name_len,
                               const char **value, size_t *value_len);

/* OAuth2 token endpoint response parsing (exposed for tests and fuzzing): body[0, len) must be a JSON
 * object with a string `access_token` (1..16384 printable ASCII bytes) and `token_type` "Bearer" (any case,
 * optional); `expires_in` (integer or numeric string, seconds, default 3600). Returns 0 with *token
 * (malloc'd, caller cleanses and frees) and *expires_in_s, or CUSTOS_EINVAL / CUSTOS_ENOMEM. */
int custos_oauth2_parse_token_response(const char *body, size_t len, char **token, size_t *token_len,
                                       uint32_t *expires_in_s);

#endif
