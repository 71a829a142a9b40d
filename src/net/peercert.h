/* SPDX-License-Identifier: Apache-2.0
 * The verified client certificate of a mutual-TLS connection, reduced to the names custos matches on:
 * subject DN (RFC 2253 form), subject CN, SAN URIs and SAN DNS names. Built once per connection. */
#ifndef CUSTOS_NET_PEERCERT_H
#define CUSTOS_NET_PEERCERT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define CUSTOS_PEERCERT_MAX_NAME 1024 /* longer subjects / SAN entries are dropped */
#define CUSTOS_PEERCERT_MAX_SANS 32   /* SAN URIs and DNS names kept per kind */

typedef struct custos_peer_cert {
    char *subject;  /* RFC 2253 one-line DN, e.g. "CN=app1,O=Example" (as openssl x509 -nameopt RFC2253 prints) */
    char *cn;       /* last subject CN, or NULL */
    char **san_uri; /* URIs from subjectAltName (e.g. spiffe://trust.example/ns/app), printable ASCII only */
    size_t n_san_uri;
    char **san_dns; /* DNS names from subjectAltName */
    size_t n_san_dns;
} custos_peer_cert_t;

/* Extracts the peer certificate of ssl after a successful handshake. Only call it when the chain was
 * verified (listeners with client_ca: OpenSSL fails the handshake otherwise). Returns 0 and *out = NULL
 * when there is no peer certificate, 0 and a new object, or CUSTOS_ENOMEM. Names containing NUL or
 * non-printable bytes are skipped. Caller owns *out (custos_peercert_free). */
int custos_peercert_from_ssl(SSL *ssl, custos_peer_cert_t **out);

/* Same from a certificate (x may be NULL: *out = NULL). x stays owned by the caller. */
int custos_peercert_from_x509(X509 *x, custos_peer_cert_t **out);

void custos_peercert_free(custos_peer_cert_t *c);

typedef enum {
    CUSTOS_PEERCERT_SUBJECT = 0, /* exact match of the RFC 2253 subject DN */
    CUSTOS_PEERCERT_SAN_URI,     /* exact match of one SAN URI */
    CUSTOS_PEERCERT_SAN_DNS,     /* case-insensitive exact match of one SAN DNS name (no wildcards) */
} custos_peercert_match_t;

/* True when c (may be NULL: false) carries value under kind. */
bool custos_peercert_matches(const custos_peer_cert_t *c, custos_peercert_match_t kind, const char *value);

#endif
