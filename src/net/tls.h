/* SPDX-License-Identifier: Apache-2.0
 * Server-side TLS contexts: one reloadable OpenSSL 3 SSL_CTX per listener, shared by every worker
 * thread. Certificates are swapped atomically on reload; connections keep the context they started with. */
#ifndef CUSTOS_NET_TLS_H
#define CUSTOS_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* TLS <= 1.2 cipher list used when custos_tls_opts_t.ciphers is NULL: ECDHE key exchange with AEAD only
 * (forward secrecy, no CBC, no RSA key transport). TLS 1.3 suites stay at OpenSSL's defaults. */
#ifndef CUSTOS_TLS_DEFAULT_CIPHERS
#define CUSTOS_TLS_DEFAULT_CIPHERS                                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                         \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#endif

/* Key-exchange groups offered (ECDH "auto" is implicit in OpenSSL 3; this fixes the preference order). */
#define CUSTOS_TLS_GROUPS "X25519:P-256:P-384"

/* The one ALPN protocol the server selects. */
#define CUSTOS_TLS_ALPN_HTTP11 "http/1.1"

typedef struct custos_tls custos_tls_t;

typedef struct custos_tls_opts {
    const char *cert_file; /* PEM: leaf certificate first, then intermediates */
    const char *key_file;  /* PEM private key, unencrypted (encrypted keys are refused, never prompted for) */
    int min_version;       /* 0 (= TLS1_2_VERSION), TLS1_2_VERSION or TLS1_3_VERSION; TLS 1.0/1.1 are refused */
    const char *ciphers;   /* TLS <= 1.2 cipher list; NULL = CUSTOS_TLS_DEFAULT_CIPHERS */
    const char *client_ca; /* NULL: no client certificates; else a PEM CA bundle: clients must present a
                            * certificate that chains to it (mutual TLS) */
} custos_tls_opts_t;

/* Builds a context from o: loads the chain and key, checks that they match, applies the settings.
 * On failure returns a negative CUSTOS_E* code and writes a one-line message naming the file and the
 * OpenSSL reason into err (may be NULL). *out is owned by the caller (custos_tls_free). */
int custos_tls_new(const custos_tls_opts_t *o, custos_tls_t **out, char *err, size_t errlen);

/* Builds a fresh SSL_CTX from o and swaps it in atomically. Connections already established keep the
 * old context until they close. On failure the current context stays and err says why.
 * Thread-safe against concurrent custos_tls_new_ssl() calls. */
int custos_tls_reload(custos_tls_t *t, const custos_tls_opts_t *o, char *err, size_t errlen);

/* New server SSL on fd (accept state) using the current context; the SSL holds its own reference to
 * that context. Thread-safe. Returns NULL on allocation failure. Caller owns the SSL (SSL_free);
 * the fd stays owned by the caller (SSL_free does not close it). */
SSL *custos_tls_new_ssl(custos_tls_t *t, int fd);

/* True when the context requires client certificates. Thread-safe. */
bool custos_tls_requires_client_cert(custos_tls_t *t);

/* Frees t. No other thread may use t any more; SSLs created from it stay valid. NULL is a no-op. */
void custos_tls_free(custos_tls_t *t);

#endif
