/* SPDX-License-Identifier: Apache-2.0
 * Tests for net/tls: certificate loading errors, handshakes over a socketpair (version floor, ALPN,
 * mutual TLS) and atomic certificate reload. Certificates are made by the openssl CLI at test time. */
#include "net/tls.h"
#include "util/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/x509.h>

static char g_dir[64];

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", g_dir, name);
}

static int make_cert(const char *name, const char *cn)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-keyout '%s/%s.key' -out '%s/%s.crt' -subj '/CN=%s' "
             "-addext 'subjectAltName=IP:127.0.0.1,DNS:localhost' >/dev/null 2>&1",
             g_dir, name, g_dir, name, cn);
    return system(cmd);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/custos-tls-XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    if (make_cert("a", "custos-a") != 0 || make_cert("b", "custos-b") != 0 || make_cert("client", "custos-client"))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct client_opts {
    int max_version;  /* 0 = library default */
    bool legacy;      /* allow TLS 1.0/1.1 on the client side (security level 0) */
    const char *alpn; /* wire-format ALPN list, NULL = none */
    size_t alpn_len;
    bool client_cert; /* present tests' "client" certificate */
} client_opts_t;

typedef struct hs_result {
    bool server_ok;
    int server_reason; /* OpenSSL reason code of the server failure */
    int version;
    char alpn[32];
    bool client_ok; /* handshake finished and the server's first byte arrived */
    char subject_cn[64];
} hs_result_t;

typedef struct client_arg {
    int fd;
    const client_opts_t *o;
    hs_result_t *r;
} client_arg_t;

static void *client_thread(void *p)
{
    client_arg_t *a = p;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (!ctx)
        goto done;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (a->o->legacy) {
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    }
    if (a->o->max_version)
        SSL_CTX_set_max_proto_version(ctx, a->o->max_version);
    if (a->o->alpn)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)a->o->alpn, (unsigned)a->o->alpn_len);
    if (a->o->client_cert) {
        char crt[128], key[128];
        path_of(crt, sizeof(crt), "client.crt");
        path_of(key, sizeof(key), "client.key");
        if (SSL_CTX_use_certificate_file(ctx, crt, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            goto done;
    }
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, a->fd) != 1)
        goto done;
    if (SSL_connect(ssl) != 1)
        goto done;
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer) {
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, a->r->subject_cn,
                                  sizeof(a->r->subject_cn));
        X509_free(peer);
    }
    char c = 0;
    if (SSL_read(ssl, &c, 1) == 1 && c == 'x')
        a->r->client_ok = true;
done:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    shutdown(a->fd, SHUT_RDWR);
    return NULL;
}

static void handshake(custos_tls_t *t, const client_opts_t *o, hs_result_t *r)
{
    int sv[2];
    memset(r, 0, sizeof(*r));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {.tv_sec = 10};
    for (int i = 0; i < 2; i++) {
        setsockopt(sv[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(sv[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    client_arg_t ca = {.fd = sv[1], .o = o, .r = r};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, client_thread, &ca), 0);

    SSL *ssl = custos_tls_new_ssl(t, sv[0]);
    assert_non_null(ssl);
    ERR_clear_error();
    if (SSL_accept(ssl) == 1) {
        r->server_ok = true;
        r->version = SSL_version(ssl);
        const unsigned char *p = NULL;
        unsigned int n = 0;
        SSL_get0_alpn_selected(ssl, &p, &n);
        if (p && n < sizeof(r->alpn))
            memcpy(r->alpn, p, n);
        SSL_write(ssl, "x", 1);
    } else {
        r->server_reason = ERR_GET_REASON(ERR_peek_error());
    }
    ERR_clear_error();
    shutdown(sv[0], SHUT_RDWR);
    pthread_join(th, NULL);
    SSL_free(ssl);
    close(sv[0]);
    close(sv[1]);
}

static void opts_for(custos_tls_opts_t *o, const char *name, char *crt, char *key, size_t n)
{
    memset(o, 0, sizeof(*o));
    char c[32], k[32];
    snprintf(c, sizeof(c), "%s.crt", name);
    snprintf(k, sizeof(k), "%s.key", name);
    path_of(crt, n, c);
    path_of(key, n, k);
    o->cert_file = crt;
    o->key_file = key;
}

#define ALPN_H11 "\x08http/1.1"
#define ALPN_H2 "\x02h2"

static void test_new_ok_and_handshake(void **state)
{
    (void)state;
    char crt[128], key[128], err[512];
    custos_tls_opts_t o;
    opts_for(&o, "a", crt, key, sizeof(crt));
    custos_tls_t *t = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), 0);
    assert_non_null(t);
    assert_false(custos_tls_requires_client_cert(t));

    client_opts_t co = {.alpn = ALPN_H2 ALPN_H11, .alpn_len = sizeof(ALPN_H2 ALPN_H11) - 1};
    hs_result_t r;
    handshake(t, &co, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);
    assert_true(r.version >= TLS1_2_VERSION);
    assert_string_equal(r.alpn, "http/1.1");
    assert_string_equal(r.subject_cn, "custos-a");

    /* TLS 1.2 explicitly: the default cipher list must allow an ECDSA certificate. */
    client_opts_t c12 = {.max_version = TLS1_2_VERSION, .alpn = ALPN_H11, .alpn_len = sizeof(ALPN_H11) - 1};
    handshake(t, &c12, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);
    assert_int_equal(r.version, TLS1_2_VERSION);
    assert_string_equal(r.alpn, "http/1.1");
    custos_tls_free(t);
}

static void test_alpn_h2_only_gets_no_alpn(void **state)
{
    (void)state;
    char crt[128], key[128], err[512];
    custos_tls_opts_t o;
    opts_for(&o, "a", crt, key, sizeof(crt));
    custos_tls_t *t = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), 0);
    client_opts_t co = {.alpn = ALPN_H2, .alpn_len = sizeof(ALPN_H2) - 1};
    hs_result_t r;
    handshake(t, &co, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);
    assert_string_equal(r.alpn, "");
    /* No ALPN at all is fine too. */
    client_opts_t none = {0};
    handshake(t, &none, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);
    assert_string_equal(r.alpn, "");
    custos_tls_free(t);
}

static void test_errors_name_the_file(void **state)
{
    (void)state;
    char crt[128], key[128], err[512];
    custos_tls_opts_t o;
    custos_tls_t *t = NULL;

    /* a's certificate with b's key. */
    opts_for(&o, "a", crt, key, sizeof(crt));
    path_of(key, sizeof(key), "b.key");
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), CUSTOS_ETLS);
    assert_null(t);
    assert_non_null(strstr(err, key));
    assert_non_null(strstr(err, "mismatch"));

    /* Missing certificate file. */
    opts_for(&o, "a", crt, key, sizeof(crt));
    path_of(crt, sizeof(crt), "missing.crt");
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), CUSTOS_ETLS);
    assert_non_null(strstr(err, crt));

    /* A key file that is not a key. */
    opts_for(&o, "a", crt, key, sizeof(crt));
    path_of(key, sizeof(key), "a.crt");
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), CUSTOS_ETLS);
    assert_non_null(strstr(err, key));

    /* TLS 1.1 floor is refused; bad cipher list is refused. */
    opts_for(&o, "a", crt, key, sizeof(crt));
    o.min_version = TLS1_1_VERSION;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), CUSTOS_EINVAL);
    o.min_version = 0;
    o.ciphers = "NOT-A-CIPHER";
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "NOT-A-CIPHER"));
    o.ciphers = NULL;
    o.key_file = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(t);
}

static void test_tls11_client_refused(void **state)
{
    (void)state;
    char crt[128], key[128], err[512];
    custos_tls_opts_t o;
    opts_for(&o, "a", crt, key, sizeof(crt));
    custos_tls_t *t = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), 0);
    client_opts_t co = {.max_version = TLS1_1_VERSION, .legacy = true};
    hs_result_t r;
    handshake(t, &co, &r);
    assert_false(r.server_ok);
    assert_false(r.client_ok);
    assert_int_equal(r.server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
    custos_tls_free(t);
}

static void test_min_tls13_refuses_tls12(void **state)
{
    (void)state;
    char crt[128], key[128], err[512];
    custos_tls_opts_t o;
    opts_for(&o, "a", crt, key, sizeof(crt));
    o.min_version = TLS1_3_VERSION;
    custos_tls_t *t = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), 0);
    client_opts_t c12 = {.max_version = TLS1_2_VERSION};
    hs_result_t r;
    handshake(t, &c12, &r);
    assert_false(r.server_ok);
    assert_false(r.client_ok);
    assert_int_equal(r.server_reason, SSL_R_UNSUPPORTED_PROTOCOL);
    client_opts_t c13 = {0};
    handshake(t, &c13, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);
    assert_int_equal(r.version, TLS1_3_VERSION);
    custos_tls_free(t);
}

static void test_reload(void **state)
{
    (void)state;
    char crt[128], key[128], err[512];
    custos_tls_opts_t o;
    opts_for(&o, "a", crt, key, sizeof(crt));
    custos_tls_t *t = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), 0);
    client_opts_t co = {0};
    hs_result_t r;
    handshake(t, &co, &r);
    assert_string_equal(r.subject_cn, "custos-a");

    /* An SSL made before the reload keeps working after it (it holds its own ctx reference). */
    SSL *early = custos_tls_new_ssl(t, -1);
    assert_non_null(early);

    char crt_b[128], key_b[128];
    custos_tls_opts_t ob;
    opts_for(&ob, "b", crt_b, key_b, sizeof(crt_b));
    assert_int_equal(custos_tls_reload(t, &ob, err, sizeof(err)), 0);
    handshake(t, &co, &r);
    assert_true(r.server_ok);
    assert_string_equal(r.subject_cn, "custos-b");
    X509 *early_cert = SSL_get_certificate(early);
    assert_non_null(early_cert);
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(early_cert), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "custos-a");
    SSL_free(early);

    /* A failed reload keeps the current context. */
    custos_tls_opts_t bad;
    char crt_x[128], key_x[128];
    opts_for(&bad, "a", crt_x, key_x, sizeof(crt_x));
    path_of(key_x, sizeof(key_x), "nope.key");
    assert_int_equal(custos_tls_reload(t, &bad, err, sizeof(err)), CUSTOS_ETLS);
    assert_non_null(strstr(err, key_x));
    handshake(t, &co, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);
    assert_string_equal(r.subject_cn, "custos-b");
    custos_tls_free(t);
}

static void test_mutual_tls(void **state)
{
    (void)state;
    char crt[128], key[128], ca[128], err[512];
    custos_tls_opts_t o;
    opts_for(&o, "a", crt, key, sizeof(crt));
    path_of(ca, sizeof(ca), "client.crt");
    o.client_ca = ca;
    custos_tls_t *t = NULL;
    assert_int_equal(custos_tls_new(&o, &t, err, sizeof(err)), 0);
    assert_true(custos_tls_requires_client_cert(t));

    client_opts_t anon = {0};
    hs_result_t r;
    handshake(t, &anon, &r);
    assert_false(r.server_ok);
    assert_false(r.client_ok);

    client_opts_t with = {.client_cert = true};
    handshake(t, &with, &r);
    assert_true(r.server_ok);
    assert_true(r.client_ok);

    /* Missing CA bundle is an error naming the file. */
    path_of(ca, sizeof(ca), "missing-ca.pem");
    assert_int_equal(custos_tls_reload(t, &o, err, sizeof(err)), CUSTOS_ETLS);
    assert_non_null(strstr(err, ca));
    custos_tls_free(t);
}

/* Reloads while other threads keep creating SSLs (run under the sanitizers, this checks the locking). */
static custos_tls_t *g_race_tls;
static void *race_thread(void *p)
{
    (void)p;
    for (int i = 0; i < 2000; i++) {
        SSL *s = custos_tls_new_ssl(g_race_tls, -1);
        if (!s)
            return (void *)1;
        SSL_free(s);
    }
    return NULL;
}

static void test_reload_concurrent(void **state)
{
    (void)state;
    char crt[128], key[128], crt_b[128], key_b[128], err[512];
    custos_tls_opts_t oa, ob;
    opts_for(&oa, "a", crt, key, sizeof(crt));
    opts_for(&ob, "b", crt_b, key_b, sizeof(crt_b));
    assert_int_equal(custos_tls_new(&oa, &g_race_tls, err, sizeof(err)), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, NULL), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(custos_tls_reload(g_race_tls, i % 2 ? &oa : &ob, err, sizeof(err)), 0);
    for (int i = 0; i < 2; i++) {
        void *ret = (void *)1;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    custos_tls_free(g_race_tls);
    custos_tls_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_ok_and_handshake),
        cmocka_unit_test(test_alpn_h2_only_gets_no_alpn),
        cmocka_unit_test(test_errors_name_the_file),
        cmocka_unit_test(test_tls11_client_refused),
        cmocka_unit_test(test_min_tls13_refuses_tls12),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_mutual_tls),
        cmocka_unit_test(test_reload_concurrent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
