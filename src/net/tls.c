/* SPDX-License-Identifier: Apache-2.0
 * Server-side TLS contexts: SSL_CTX construction (protocol floor, ciphers, ALPN, mutual TLS),
 * certificate/key checks with readable errors, and atomic reload under a mutex. */
#include "net/tls.h"
#include "util/err.h"
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

struct custos_tls {
    pthread_mutex_t lock; /* guards ctx and mtls; held only around the pointer read and SSL_new */
    SSL_CTX *ctx;         /* current context (one reference owned here) */
    bool mtls;
};

static const unsigned char alpn_http11[] = CUSTOS_TLS_ALPN_HTTP11;
static const unsigned char session_id_ctx[] = "custos";

/* Writes "prefix: reason[: reason...]" into err, draining this thread's OpenSSL error queue. */
static void tls_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tls_err(char *err, size_t errlen, const char *fmt, ...)
{
    char reasons[256] = "";
    size_t used = 0;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        /* System errors carry errno as their reason ("No such file or directory" beats "system lib"). */
        const char *r = ERR_SYSTEM_ERROR(e) ? strerrordesc_np(ERR_GET_REASON(e)) : ERR_reason_error_string(e);
        if (!r || used >= sizeof(reasons) - 1 || strstr(reasons, r))
            continue;
        int n = snprintf(reasons + used, sizeof(reasons) - used, "%s%s", used ? ": " : "", r);
        if (n > 0)
            used += (size_t)n < sizeof(reasons) - used ? (size_t)n : sizeof(reasons) - 1 - used;
    }
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < errlen && reasons[0])
        snprintf(err + n, errlen - (size_t)n, ": %s", reasons);
}

/* Never prompt for a passphrase on the terminal: encrypted keys simply fail to load. */
static int no_passphrase_cb(char *buf, int size, int rwflag, void *ud)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)ud;
    return 0;
}

/* Selects "http/1.1" when the client offers it; anything else (e.g. only "h2") gets no ALPN answer. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int l = in[i];
        if (l == 0 || l > inlen - i - 1)
            return SSL_TLSEXT_ERR_NOACK; /* malformed list */
        if (l == sizeof(alpn_http11) - 1 && memcmp(in + i + 1, alpn_http11, l) == 0) {
            *out = alpn_http11;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void warn_if_expired(SSL_CTX *ctx, const char *cert_file)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x)
        return;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
        CUSTOS_WARN("tls: certificate '%s' has expired", cert_file);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
        CUSTOS_WARN("tls: certificate '%s' is not valid yet", cert_file);
}

static int build_ctx(const custos_tls_opts_t *o, SSL_CTX **out, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    STACK_OF(X509_NAME) *cas = NULL;
    int rc = CUSTOS_ETLS;

    ERR_clear_error();
    if (!o || !o->cert_file || !o->cert_file[0] || !o->key_file || !o->key_file[0]) {
        tls_err(err, errlen, "tls: cert_file and key_file are required");
        return CUSTOS_EINVAL;
    }
    int minv = o->min_version ? o->min_version : TLS1_2_VERSION;
    if (minv != TLS1_2_VERSION && minv != TLS1_3_VERSION) {
        tls_err(err, errlen, "tls: unsupported minimum version 0x%04x (use TLS 1.2 or TLS 1.3)", (unsigned)minv);
        return CUSTOS_EINVAL;
    }

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        tls_err(err, errlen, "tls: cannot create SSL_CTX");
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, minv)) {
        tls_err(err, errlen, "tls: cannot set minimum protocol version");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase_cb);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    /* Required for resumption when client certificates are verified; harmless otherwise. */
    SSL_CTX_set_session_id_context(ctx, session_id_ctx, sizeof(session_id_ctx) - 1);
    if (!SSL_CTX_set1_groups_list(ctx, CUSTOS_TLS_GROUPS)) {
        tls_err(err, errlen, "tls: cannot set key-exchange groups '%s'", CUSTOS_TLS_GROUPS);
        goto fail;
    }
    const char *ciphers = o->ciphers && o->ciphers[0] ? o->ciphers : CUSTOS_TLS_DEFAULT_CIPHERS;
    if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
        tls_err(err, errlen, "tls: invalid cipher list '%s'", ciphers);
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);

    if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
        tls_err(err, errlen, "tls: cannot load certificate chain from '%s'", o->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) != 1) {
        tls_err(err, errlen, "tls: cannot use private key from '%s' with certificate '%s'", o->key_file, o->cert_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_err(err, errlen, "tls: private key '%s' does not match certificate '%s'", o->key_file, o->cert_file);
        goto fail;
    }

    if (o->client_ca && o->client_ca[0]) {
        if (SSL_CTX_load_verify_locations(ctx, o->client_ca, NULL) != 1) {
            tls_err(err, errlen, "tls: cannot load client CA bundle '%s'", o->client_ca);
            goto fail;
        }
        cas = SSL_load_client_CA_file(o->client_ca);
        if (!cas) {
            tls_err(err, errlen, "tls: no CA names in client CA bundle '%s'", o->client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, cas); /* takes ownership */
        cas = NULL;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_verify_depth(ctx, 8);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    warn_if_expired(ctx, o->cert_file);
    ERR_clear_error();
    *out = ctx;
    return 0;

fail:
    sk_X509_NAME_pop_free(cas, X509_NAME_free);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int custos_tls_new(const custos_tls_opts_t *o, custos_tls_t **out, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    if (err && errlen)
        err[0] = 0;
    *out = NULL;
    int rc = build_ctx(o, &ctx, err, errlen);
    if (rc < 0)
        return rc;
    custos_tls_t *t = calloc(1, sizeof(*t));
    if (!t) {
        SSL_CTX_free(ctx);
        tls_err(err, errlen, "tls: out of memory");
        return CUSTOS_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->ctx = ctx;
    t->mtls = o->client_ca && o->client_ca[0];
    *out = t;
    return 0;
}

int custos_tls_reload(custos_tls_t *t, const custos_tls_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    if (err && errlen)
        err[0] = 0;
    int rc = build_ctx(o, &ctx, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    t->mtls = o->client_ca && o->client_ca[0];
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* live SSLs hold their own references */
    return 0;
}

SSL *custos_tls_new_ssl(custos_tls_t *t, int fd)
{
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    if (!ssl)
        goto fail;
    if (SSL_set_fd(ssl, fd) != 1)
        goto fail;
    SSL_set_accept_state(ssl);
    return ssl;

fail:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

bool custos_tls_requires_client_cert(custos_tls_t *t)
{
    pthread_mutex_lock(&t->lock);
    bool v = t->mtls;
    pthread_mutex_unlock(&t->lock);
    return v;
}

void custos_tls_free(custos_tls_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
