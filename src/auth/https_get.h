/* SPDX-License-Identifier: Apache-2.0
 * A small, blocking, bounded HTTPS client for the identity fetcher (JWKS, OIDC discovery, OAuth2 tokens):
 * one request per connection, TLS ≥ 1.2 with certificate and host-name verification, size cap and deadline. */
#ifndef CUSTOS_AUTH_HTTPS_GET_H
#define CUSTOS_AUTH_HTTPS_GET_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define CUSTOS_HTTPS_DEFAULT_MAX_BYTES ((size_t)1024 * 1024)
#define CUSTOS_HTTPS_DEFAULT_TIMEOUT_MS 10000u

typedef struct custos_https_opts {
    const char *ca_file; /* PEM CA bundle; NULL = the system default store */
    uint32_t timeout_ms; /* deadline for the whole exchange; 0 = CUSTOS_HTTPS_DEFAULT_TIMEOUT_MS */
    size_t max_bytes;    /* response body cap; 0 = CUSTOS_HTTPS_DEFAULT_MAX_BYTES */
} custos_https_opts_t;

/* Checks that url is https://HOST[:PORT][/PATH] (or http:// to a loopback address: 127.0.0.0/8, ::1,
 * localhost), without userinfo or fragment. Returns 0 or CUSTOS_EINVAL. Thread-safe. */
int custos_https_url_ok(const char *url);

/* Sends METHOD url (body with content_type when body != NULL, e.g. a POSTed form) and reads the response.
 * Redirects are not followed. On success returns 0, *status gets the HTTP status and body (initialised by the
 * caller; its own cap is replaced by max_bytes) the decoded body (chunked or not). Errors: CUSTOS_EINVAL (bad
 * URL), CUSTOS_EIO (DNS/connect/socket), CUSTOS_ETLS (handshake or verification), CUSTOS_ETIMEDOUT,
 * CUSTOS_EPROTO (bad HTTP), CUSTOS_ETOOBIG, CUSTOS_ENOMEM; *why (if not NULL) gets a static reason.
 * Blocks the calling thread: never call it on a worker loop. Thread-safe. */
int custos_https_request(const char *method, const char *url, const char *content_type, const char *body,
                         size_t body_len, const custos_https_opts_t *opts, int *status, custos_buf_t *resp,
                         const char **why);

#endif
