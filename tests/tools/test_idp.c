/* SPDX-License-Identifier: Apache-2.0
 * test_idp: a small OIDC identity provider for integration tests. Generates RSA, EC (P-256, P-384) and Ed25519
 * keys with OpenSSL, serves discovery and JWKS over HTTPS on loopback, mints tokens, and issues OAuth2
 * client-credentials tokens. Single-threaded, one request per connection (Connection: close).
 *
 * Usage: test_idp --cert CERT.pem --key KEY.pem [--port N (0 = any)] [--port-file PATH] [--plain]
 *                 [--issuer URL] [--client-id ID] [--client-secret S] [--token-ttl SECONDS] [--access-token T]
 *   Prints "PORT\n" to stdout (and to --port-file) once listening on 127.0.0.1. The issuer is
 *   https://127.0.0.1:PORT (http:// with --plain) unless --issuer is given. Runs until killed or /admin/quit.
 *
 * HTTP interface (GET unless noted; query values are URL-decoded):
 *   /.well-known/openid-configuration  discovery: issuer, jwks_uri ({issuer}/keys), token_endpoint
 *   /keys                              the published JWKS (kids rsa-N, ec-N, ec384-N, ed-N; N = generation)
 *   /token?...                         a signed JWT as text/plain. Parameters (all optional):
 *       alg=RS256|RS384|RS512|PS256|PS384|PS512|ES256|ES384|EdDSA (default RS256)
 *           |none (empty signature) |HS256 (HMAC keyed with the RSA public key PEM: the confusion attack)
 *       kid=K          header kid (default: the signing key's kid); kid=- omits it
 *       iss=URL        (default: the issuer)   aud=A[,B...] (default api://custos; 2+ values → array)
 *       sub=S (default user-1)  oid=O  tid=T  appid=A  azp=A  upn=U  scp=S  idtyp=T
 *       roles=a,b  groups=g1,g2  amr=pwd,mfa   (comma lists → JSON arrays)
 *       exp_in=SECONDS (default 3600; negative = already expired)  no_exp=1  nbf_in=SECONDS  iat_in=SECONDS
 *           (iat defaults to now; iat_in=-600 → issued 10 minutes ago)
 *       claims={JSON object members}   extra raw members, e.g. claims="device_compliant":true
 *       pad=N          adds a "pad" claim of N bytes (oversized tokens)
 *       crit=1         adds "crit":["x-custom"] to the header
 *       tamper=1       changes the payload after signing (bad signature)
 *       key=staged     sign with the staged (not yet published) keys, see /admin/stage
 *   POST /oauth2/token   form grant_type=client_credentials&client_id=..&client_secret=..[&scope=..] →
 *       {"access_token": JWT (aud = scope without "/.default"), "token_type":"Bearer","expires_in": TTL};
 *       (with --access-token T, access_token is T verbatim); 401 {"error":"invalid_client"} for a wrong id
 *       or secret
 *   /admin/down | /admin/up   while down, discovery, /keys and /oauth2/token answer 503
 *   /admin/stage              generates a new key generation used only by key=staged (not published)
 *   /admin/publish            publishes the staged generation and signs with it from now on
 *   /admin/rotate             stage + publish in one step (old keys are no longer published)
 *   /admin/stats              {"discovery":N,"jwks":N,"token":N,"oauth2":N,"oauth2_issued":N}: requests per
 *                             endpoint (counted even while down), and OAuth2 tokens actually issued
 *   /admin/quit               exits 0 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "../common/jwt_mint.h"
#include "util/buf.h"

#define MAX_REQ 65536

typedef struct keygen {
    int gen;
    EVP_PKEY *rsa, *ec, *ec384, *ed;
} keygen_t;

static keygen_t g_cur, g_staged;
static bool g_have_staged, g_down;
static char g_issuer[256];
static const char *g_client_id = "custos-client", *g_client_secret = "s3cret";
static long g_token_ttl = 3600;
static const char *g_access_token; /* --access-token: fixed OAuth2 access token instead of a JWT */
static unsigned long g_stats[5];   /* discovery, jwks, token, oauth2, oauth2 tokens issued */

static void keygen_make(keygen_t *k, int gen)
{
    k->gen = gen;
    k->rsa = mint_keygen("RSA");
    k->ec = mint_keygen("P-256");
    k->ec384 = mint_keygen("P-384");
    k->ed = mint_keygen("Ed25519");
    if (!k->rsa || !k->ec || !k->ec384 || !k->ed) {
        fprintf(stderr, "test_idp: key generation failed\n");
        exit(1);
    }
}

static void keygen_free(keygen_t *k)
{
    EVP_PKEY_free(k->rsa);
    EVP_PKEY_free(k->ec);
    EVP_PKEY_free(k->ec384);
    EVP_PKEY_free(k->ed);
    memset(k, 0, sizeof(*k));
}

/* key and kid for alg in generation k */
static EVP_PKEY *key_for(const keygen_t *k, const char *alg, char *kid, size_t kidcap)
{
    const char *base = "rsa";
    EVP_PKEY *p = k->rsa;
    if (strcmp(alg, "ES256") == 0) {
        base = "ec";
        p = k->ec;
    } else if (strcmp(alg, "ES384") == 0) {
        base = "ec384";
        p = k->ec384;
    } else if (strcmp(alg, "EdDSA") == 0) {
        base = "ed";
        p = k->ed;
    }
    snprintf(kid, kidcap, "%s-%d", base, k->gen);
    return p;
}

/* ---------- tiny query parsing ---------- */

static int hexv(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Finds name in a query/form string q and URL-decodes its value into out. Returns 1 if found. */
static int param(const char *q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = q;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < len && o + 1 < cap; i++) {
                if (p[i] == '%' && i + 2 < len + 1 && hexv(p[i + 1]) >= 0 && hexv(p[i + 2]) >= 0) {
                    out[o++] = (char)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = 0;
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

static void append_list(custos_buf_t *b, const char *name, const char *csv)
{
    custos_buf_appendf(b, ",\"%s\":[", name);
    const char *p = csv;
    int first = 1;
    while (*p) {
        size_t l = strcspn(p, ",");
        custos_buf_appendf(b, "%s\"%.*s\"", first ? "" : ",", (int)l, p);
        first = 0;
        p += l;
        if (*p == ',')
            p++;
    }
    custos_buf_append_lit(b, "]");
}

/* Mints a token from query q. Returns malloc'd token or NULL. */
static char *mint_from_query(const char *q)
{
    char alg[16] = "RS256", kid[300] = "", v[4096], hdr[600];
    custos_buf_t b;
    time_t now = time(NULL);
    custos_buf_init(&b, 0);
    param(q, "alg", alg, sizeof(alg));
    const keygen_t *k = &g_cur;
    if (param(q, "key", v, sizeof(v)) && strcmp(v, "staged") == 0 && g_have_staged)
        k = &g_staged;
    char defkid[64];
    EVP_PKEY *sk =
        key_for(k, strncmp(alg, "HS", 2) == 0 || strcmp(alg, "none") == 0 ? "RS256" : alg, defkid, sizeof(defkid));
    if (!param(q, "kid", kid, sizeof(kid)))
        snprintf(kid, sizeof(kid), "%s", defkid);

    custos_buf_append_lit(&b, "{\"iss\":\"");
    custos_buf_append_str(&b, param(q, "iss", v, sizeof(v)) ? v : g_issuer);
    custos_buf_append_lit(&b, "\"");
    if (!param(q, "aud", v, sizeof(v)))
        strcpy(v, "api://custos");
    if (strchr(v, ','))
        append_list(&b, "aud", v);
    else
        custos_buf_appendf(&b, ",\"aud\":\"%s\"", v);
    long exp_in = param(q, "exp_in", v, sizeof(v)) ? strtol(v, NULL, 10) : 3600;
    if (!param(q, "no_exp", v, sizeof(v)))
        custos_buf_appendf(&b, ",\"exp\":%lld", (long long)now + exp_in);
    long iat_in = param(q, "iat_in", v, sizeof(v)) ? strtol(v, NULL, 10) : 0;
    custos_buf_appendf(&b, ",\"iat\":%lld", (long long)now + iat_in);
    if (param(q, "nbf_in", v, sizeof(v)))
        custos_buf_appendf(&b, ",\"nbf\":%lld", (long long)now + strtol(v, NULL, 10));
    custos_buf_appendf(&b, ",\"sub\":\"%s\"", param(q, "sub", v, sizeof(v)) ? v : "user-1");
    static const char *const strs[] = {"oid", "tid", "appid", "azp", "upn", "scp", "idtyp", NULL};
    for (int i = 0; strs[i]; i++)
        if (param(q, strs[i], v, sizeof(v)))
            custos_buf_appendf(&b, ",\"%s\":\"%s\"", strs[i], v);
    static const char *const lists[] = {"roles", "groups", "amr", NULL};
    for (int i = 0; lists[i]; i++)
        if (param(q, lists[i], v, sizeof(v)))
            append_list(&b, lists[i], v);
    if (param(q, "claims", v, sizeof(v)) && v[0])
        custos_buf_appendf(&b, ",%s", v);
    if (param(q, "pad", v, sizeof(v))) {
        long n = strtol(v, NULL, 10);
        custos_buf_append_lit(&b, ",\"pad\":\"");
        for (long i = 0; i < n && i < 1000000; i++)
            custos_buf_append_lit(&b, "x");
        custos_buf_append_lit(&b, "\"");
    }
    custos_buf_append_lit(&b, "}");

    int crit = param(q, "crit", v, sizeof(v));
    if (strcmp(kid, "-") == 0)
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"%s}", alg, crit ? ",\"crit\":[\"x-custom\"]" : "");
    else
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"%s}", alg, kid,
                 crit ? ",\"crit\":[\"x-custom\"],\"x-custom\":1" : "");
    char *tok;
    if (strncmp(alg, "HS", 2) == 0) {
        BIO *bio = BIO_new(BIO_s_mem());
        char *pem = NULL;
        PEM_write_bio_PUBKEY(bio, k->rsa);
        long pl = BIO_get_mem_data(bio, &pem);
        tok = mint_token_hdr(alg, NULL, (const unsigned char *)pem, (size_t)pl, hdr, custos_buf_peek(&b));
        BIO_free(bio);
    } else {
        tok = mint_token_hdr(alg, sk, NULL, 0, hdr, custos_buf_peek(&b));
    }
    custos_buf_dispose(&b);
    if (tok && param(q, "tamper", v, sizeof(v))) {
        char *d = strchr(tok, '.');
        d[3] = d[3] == 'A' ? 'B' : 'A';
    }
    return tok;
}

/* ---------- HTTP ---------- */

static void respond(SSL *ssl, int fd, int status, const char *ctype, const char *body, size_t len)
{
    char head[512];
    const char *reason = status == 200   ? "OK"
                         : status == 401 ? "Unauthorized"
                         : status == 404 ? "Not Found"
                         : status == 503 ? "Service Unavailable"
                                         : "Bad Request";
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                      reason, ctype, len);
    custos_buf_t out;
    custos_buf_init(&out, 0);
    custos_buf_append(&out, head, (size_t)hl);
    custos_buf_append(&out, body, len);
    size_t off = 0, total = custos_buf_size(&out);
    while (off < total) {
        int n = ssl ? SSL_write(ssl, custos_buf_peek(&out) + off, (int)(total - off))
                    : (int)send(fd, custos_buf_peek(&out) + off, total - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    custos_buf_dispose(&out);
}

static int respond_str(SSL *ssl, int fd, int status, const char *ctype, const char *body)
{
    respond(ssl, fd, status, ctype, body, strlen(body));
    return 0;
}

static char *jwks_json(void)
{
    custos_buf_t b;
    char kid[64];
    custos_buf_init(&b, 0);
    custos_buf_append_lit(&b, "{\"keys\":[");
    static const char *const algs[] = {"RS256", "ES256", "ES384", "EdDSA"};
    for (int i = 0; i < 4; i++) {
        EVP_PKEY *k = key_for(&g_cur, algs[i], kid, sizeof(kid));
        char *j = mint_jwk(k, kid, NULL);
        custos_buf_appendf(&b, "%s%s", i ? "," : "", j);
        free(j);
    }
    custos_buf_append_lit(&b, "]}");
    size_t l;
    return custos_buf_steal(&b, &l);
}

static int handle(SSL *ssl, int fd, const char *method, const char *target, const char *body)
{
    char path[1024], v[1024];
    const char *q = strchr(target, '?');
    size_t pl = q ? (size_t)(q - target) : strlen(target);
    if (pl >= sizeof(path))
        pl = sizeof(path) - 1;
    memcpy(path, target, pl);
    path[pl] = 0;
    q = q ? q + 1 : "";

    if (strcmp(path, "/.well-known/openid-configuration") == 0) {
        g_stats[0]++;
        if (g_down)
            return respond_str(ssl, fd, 503, "application/json", "{\"error\":\"down\"}");
        char doc[2048];
        snprintf(doc, sizeof(doc),
                 "{\"issuer\":\"%s\",\"jwks_uri\":\"%s/keys\",\"token_endpoint\":\"%s/oauth2/token\","
                 "\"id_token_signing_alg_values_supported\":[\"RS256\",\"ES256\",\"EdDSA\"]}",
                 g_issuer, g_issuer, g_issuer);
        return respond_str(ssl, fd, 200, "application/json", doc);
    }
    if (strcmp(path, "/keys") == 0) {
        g_stats[1]++;
        if (g_down)
            return respond_str(ssl, fd, 503, "application/json", "{\"error\":\"down\"}");
        char *j = jwks_json();
        respond_str(ssl, fd, 200, "application/json", j);
        free(j);
        return 0;
    }
    if (strcmp(path, "/token") == 0) {
        g_stats[2]++;
        char *t = mint_from_query(q);
        if (!t)
            return respond_str(ssl, fd, 400, "text/plain", "cannot mint\n");
        respond_str(ssl, fd, 200, "text/plain", t);
        free(t);
        return 0;
    }
    if (strcmp(path, "/oauth2/token") == 0 && strcmp(method, "POST") == 0) {
        g_stats[3]++;
        if (g_down)
            return respond_str(ssl, fd, 503, "application/json", "{\"error\":\"temporarily_unavailable\"}");
        char id[256] = "", secret[256] = "", scope[512] = "", gt[64] = "";
        param(body, "grant_type", gt, sizeof(gt));
        param(body, "client_id", id, sizeof(id));
        param(body, "client_secret", secret, sizeof(secret));
        param(body, "scope", scope, sizeof(scope));
        if (strcmp(gt, "client_credentials") != 0)
            return respond_str(ssl, fd, 400, "application/json", "{\"error\":\"unsupported_grant_type\"}");
        if (strcmp(id, g_client_id) != 0 || strcmp(secret, g_client_secret) != 0)
            return respond_str(ssl, fd, 401, "application/json", "{\"error\":\"invalid_client\"}");
        char *d = strstr(scope, "/.default");
        if (d)
            *d = 0;
        char mq[2048];
        snprintf(mq, sizeof(mq), "alg=RS256&sub=%s&azp=%s&aud=%s&exp_in=%ld", id, id, scope[0] ? scope : "api://up",
                 g_token_ttl);
        char *t = g_access_token ? strdup(g_access_token) : mint_from_query(mq);
        char *resp = NULL;
        if (!t || asprintf(&resp, "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%ld}", t,
                           g_token_ttl) < 0) {
            free(t);
            return respond_str(ssl, fd, 400, "text/plain", "cannot mint\n");
        }
        g_stats[4]++;
        respond_str(ssl, fd, 200, "application/json", resp);
        free(t);
        free(resp);
        return 0;
    }
    if (strcmp(path, "/admin/down") == 0) {
        g_down = true;
        return respond_str(ssl, fd, 200, "text/plain", "down\n");
    }
    if (strcmp(path, "/admin/up") == 0) {
        g_down = false;
        return respond_str(ssl, fd, 200, "text/plain", "up\n");
    }
    if (strcmp(path, "/admin/stage") == 0 || strcmp(path, "/admin/rotate") == 0) {
        if (g_have_staged)
            keygen_free(&g_staged);
        keygen_make(&g_staged, g_cur.gen + 1);
        g_have_staged = true;
        if (strcmp(path, "/admin/stage") == 0) {
            snprintf(v, sizeof(v), "staged %d\n", g_staged.gen);
            return respond_str(ssl, fd, 200, "text/plain", v);
        }
    }
    if (strcmp(path, "/admin/publish") == 0 || strcmp(path, "/admin/rotate") == 0) {
        if (!g_have_staged)
            return respond_str(ssl, fd, 400, "text/plain", "nothing staged\n");
        keygen_free(&g_cur);
        g_cur = g_staged;
        memset(&g_staged, 0, sizeof(g_staged));
        g_have_staged = false;
        snprintf(v, sizeof(v), "published %d\n", g_cur.gen);
        return respond_str(ssl, fd, 200, "text/plain", v);
    }
    if (strcmp(path, "/admin/stats") == 0) {
        snprintf(v, sizeof(v), "{\"discovery\":%lu,\"jwks\":%lu,\"token\":%lu,\"oauth2\":%lu,\"oauth2_issued\":%lu}",
                 g_stats[0], g_stats[1], g_stats[2], g_stats[3], g_stats[4]);
        return respond_str(ssl, fd, 200, "application/json", v);
    }
    if (strcmp(path, "/admin/quit") == 0) {
        respond_str(ssl, fd, 200, "text/plain", "bye\n");
        exit(0);
    }
    return respond_str(ssl, fd, 404, "text/plain", "not found\n");
}

static void serve_conn(SSL_CTX *ctx, int fd)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL *ssl = NULL;
    if (ctx) {
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            SSL_free(ssl);
            ERR_clear_error();
            return;
        }
    }
    char *buf = malloc(MAX_REQ + 1);
    size_t len = 0;
    char *hend = NULL;
    while (len < MAX_REQ) {
        int n = ssl ? SSL_read(ssl, buf + len, (int)(MAX_REQ - len)) : (int)recv(fd, buf + len, MAX_REQ - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        if (!hend && (hend = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t want = cl && cl < hend ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
            if ((size_t)(hend + 4 - buf) + want <= len)
                break;
        } else if (hend) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t want = cl && cl < hend ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
            if ((size_t)(hend + 4 - buf) + want <= len)
                break;
        }
    }
    if (hend) {
        char method[16] = "", target[8192] = "";
        if (sscanf(buf, "%15s %8191s", method, target) == 2)
            handle(ssl, fd, method, target, hend + 4);
    }
    free(buf);
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    ERR_clear_error();
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *port_file = NULL, *issuer = NULL;
    int port = 0, plain = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *n = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--plain") == 0) {
            plain = 1;
            continue;
        }
        if (!n) {
            fprintf(stderr, "test_idp: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--cert") == 0)
            cert = n;
        else if (strcmp(a, "--key") == 0)
            key = n;
        else if (strcmp(a, "--port") == 0)
            port = atoi(n);
        else if (strcmp(a, "--port-file") == 0)
            port_file = n;
        else if (strcmp(a, "--issuer") == 0)
            issuer = n;
        else if (strcmp(a, "--client-id") == 0)
            g_client_id = n;
        else if (strcmp(a, "--client-secret") == 0)
            g_client_secret = n;
        else if (strcmp(a, "--token-ttl") == 0)
            g_token_ttl = atol(n);
        else if (strcmp(a, "--access-token") == 0)
            g_access_token = n;
        else {
            fprintf(stderr, "test_idp: unknown option %s\n", a);
            return 2;
        }
    }
    if (!plain && (!cert || !key)) {
        fprintf(stderr, "usage: test_idp --cert CERT --key KEY [--port N] [--port-file F] [--plain] ...\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    SSL_CTX *ctx = NULL;
    if (!plain) {
        ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "test_idp: cannot load %s / %s\n", cert, key);
            return 1;
        }
    }
    keygen_make(&g_cur, 1);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(ls, 64) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        fprintf(stderr, "test_idp: cannot listen: %s\n", strerror(errno));
        return 1;
    }
    port = ntohs(sa.sin_port);
    if (issuer)
        snprintf(g_issuer, sizeof(g_issuer), "%s", issuer);
    else
        snprintf(g_issuer, sizeof(g_issuer), "%s://127.0.0.1:%d", plain ? "http" : "https", port);
    if (port_file) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "test_idp: cannot write %s\n", port_file);
            return 1;
        }
    }
    printf("%d\n", port);
    fflush(stdout);
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "test_idp: accept: %s\n", strerror(errno));
            return 1;
        }
        serve_conn(ctx, fd);
        close(fd);
    }
}
