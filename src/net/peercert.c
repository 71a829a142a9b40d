/* SPDX-License-Identifier: Apache-2.0
 * Client certificate names for mutual TLS: subject DN, CN and SAN URIs / DNS names, bounded. */
#include "net/peercert.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/x509v3.h>

static bool printable(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static char *dup_checked(const unsigned char *s, size_t n)
{
    if (n == 0 || n > CUSTOS_PEERCERT_MAX_NAME || !printable(s, n))
        return NULL;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

static int subject_of(X509 *x, custos_peer_cert_t *c)
{
    X509_NAME *nm = X509_get_subject_name(x);
    if (!nm)
        return 0;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return CUSTOS_ENOMEM;
    /* RFC 2253 (escapes bytes >= 0x80 as \XX, so the result is printable ASCII) */
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0)
            c->subject = dup_checked((const unsigned char *)p, (size_t)n);
    }
    BIO_free(b);
    int idx = -1, last = -1;
    while ((idx = X509_NAME_get_index_by_NID(nm, NID_commonName, idx)) >= 0)
        last = idx;
    if (last >= 0) {
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, last));
        unsigned char *u = NULL;
        int n = ASN1_STRING_to_UTF8(&u, d);
        if (n > 0 && memchr(u, 0, (size_t)n) == NULL)
            c->cn = dup_checked(u, (size_t)n);
        OPENSSL_free(u);
    }
    return 0;
}

static int push(char ***arr, size_t *n, const ASN1_STRING *s)
{
    if (*n >= CUSTOS_PEERCERT_MAX_SANS)
        return 0;
    char *v = dup_checked(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    if (!v)
        return 0; /* skipped: empty, too long, NUL or non-printable */
    if (!*arr) {
        *arr = calloc(CUSTOS_PEERCERT_MAX_SANS, sizeof(**arr));
        if (!*arr) {
            free(v);
            return CUSTOS_ENOMEM;
        }
    }
    (*arr)[(*n)++] = v;
    return 0;
}

int custos_peercert_from_ssl(SSL *ssl, custos_peer_cert_t **out)
{
    return custos_peercert_from_x509(SSL_get0_peer_certificate(ssl), out);
}

int custos_peercert_from_x509(X509 *x, custos_peer_cert_t **out)
{
    *out = NULL;
    if (!x)
        return 0;
    custos_peer_cert_t *c = calloc(1, sizeof(*c));
    if (!c)
        return CUSTOS_ENOMEM;
    int rc = subject_of(x, c);
    GENERAL_NAMES *gens = rc ? NULL : X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens && !rc && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI)
            rc = push(&c->san_uri, &c->n_san_uri, g->d.uniformResourceIdentifier);
        else if (g->type == GEN_DNS)
            rc = push(&c->san_dns, &c->n_san_dns, g->d.dNSName);
    }
    GENERAL_NAMES_free(gens);
    if (rc) {
        custos_peercert_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void custos_peercert_free(custos_peer_cert_t *c)
{
    if (!c)
        return;
    free(c->subject);
    free(c->cn);
    for (size_t i = 0; i < c->n_san_uri; i++)
        free(c->san_uri[i]);
    free(c->san_uri);
    for (size_t i = 0; i < c->n_san_dns; i++)
        free(c->san_dns[i]);
    free(c->san_dns);
    free(c);
}

bool custos_peercert_matches(const custos_peer_cert_t *c, custos_peercert_match_t kind, const char *value)
{
    if (!c || !value)
        return false;
    switch (kind) {
    case CUSTOS_PEERCERT_SUBJECT:
        return c->subject && strcmp(c->subject, value) == 0;
    case CUSTOS_PEERCERT_SAN_URI:
        for (size_t i = 0; i < c->n_san_uri; i++)
            if (strcmp(c->san_uri[i], value) == 0)
                return true;
        return false;
    case CUSTOS_PEERCERT_SAN_DNS:
        for (size_t i = 0; i < c->n_san_dns; i++)
            if (strcasecmp(c->san_dns[i], value) == 0)
                return true;
        return false;
    }
    return false;
}
