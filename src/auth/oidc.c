/* SPDX-License-Identifier: Apache-2.0
 * Process-wide identity fetcher: per-issuer JWKS providers (file, HTTPS URL or OIDC discovery) and upstream
 * OAuth2 client-credentials tokens, refreshed by one background thread; verifiers take a key set by refcount. */
#include "auth/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "auth/https_get.h"
#include "auth/jwks.h"
#include "auth/oidc_internal.h"
#include "auth/upstream_cred.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#define RETRY_MIN_MS 2000u
#define RETRY_MAX_MS 300000u
#define ISS_MAX 1024

typedef struct provider {
    struct provider *next;
    char *issuer, *source, *ca_file; /* immutable after creation; source NULL = discovery */
    uint32_t refresh_s, min_refetch_s;
    custos_jwks_t *keys;        /* current set (NULL until the first success) */
    uint64_t next_fetch_ms;     /* monotonic; 0 = now */
    uint64_t last_kid_fetch_ms; /* last refetch asked for by an unknown kid */
    unsigned failures;
    bool attempted; /* at least one fetch finished (success or not) */
    bool busy;
} provider_t;

typedef struct oauth_client {
    struct oauth_client *next;
    char *token_url, *client_id, *secret, *scope, *ca_file; /* immutable after creation */
    size_t secret_len;
    char *token; /* "Bearer ..." or NULL */
    size_t token_len;
    uint64_t usable_until_ms, next_fetch_ms;
    unsigned failures;
    bool attempted, busy;
} oauth_client_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake; /* fetcher waits here */
static pthread_cond_t g_done; /* custos_oidc_sync waits here */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static provider_t *g_providers;
static oauth_client_t *g_clients;
static pthread_t g_thread;
static bool g_running, g_stop;
static uint64_t g_fetches; /* key fetch attempts finished (tests) */

static void init_conds(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g_wake, &a);
    pthread_cond_init(&g_done, &a);
    pthread_condattr_destroy(&a);
}

static bool streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static uint64_t retry_delay_ms(unsigned failures, uint32_t cap_s)
{
    uint64_t d = RETRY_MIN_MS;
    for (unsigned i = 1; i < failures && d < RETRY_MAX_MS; i++)
        d *= 2;
    if (d > RETRY_MAX_MS)
        d = RETRY_MAX_MS;
    if (cap_s && d > (uint64_t)cap_s * 1000)
        d = (uint64_t)cap_s * 1000;
    return d;
}

/* ---------- fetching (fetcher thread, no lock held) ---------- */

static int read_file_capped(const char *path, custos_buf_t *out, const char **why)
{
    char tmp[8192];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), rc = 0;
    if (fd < 0) {
        *why = "cannot open the JWKS file";
        return CUSTOS_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *why = "the JWKS file is not a regular file";
        return CUSTOS_EIO;
    }
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0) {
                rc = CUSTOS_EIO;
                *why = "cannot read the JWKS file";
            }
            break;
        }
        if ((rc = custos_buf_append(out, tmp, (size_t)n)) != 0) {
            *why = "the JWKS file is too large";
            break;
        }
    }
    close(fd);
    return rc;
}

static int get_json_url(const char *url, const char *ca_file, custos_buf_t *body, const char **why)
{
    custos_https_opts_t o = {.ca_file = ca_file, .max_bytes = CUSTOS_JWKS_MAX_BYTES};
    int status = 0;
    int rc = custos_https_request("GET", url, NULL, NULL, 0, &o, &status, body, why);
    if (rc < 0)
        return rc;
    if (status != 200) {
        *why = "HTTP status is not 200";
        return CUSTOS_EPROTO;
    }
    return 0;
}

/* Returns a new key set with at least one usable key, or an error. */
static int fetch_keys(const char *issuer, const char *source, const char *ca_file, custos_jwks_t **out,
                      const char **why)
{
    custos_buf_t b;
    char *jwks_uri = NULL;
    int rc;
    custos_buf_init(&b, CUSTOS_JWKS_MAX_BYTES);
    *out = NULL;
    if (source && strncmp(source, "file:", 5) == 0) {
        rc = read_file_capped(source + 5, &b, why);
    } else if (source) {
        rc = get_json_url(source, ca_file, &b, why);
    } else {
        /* OIDC discovery: {issuer}/.well-known/openid-configuration → jwks_uri */
        char url[ISS_MAX + 64];
        size_t il = strlen(issuer);
        while (il > 0 && issuer[il - 1] == '/')
            il--;
        snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration", (int)il, issuer);
        rc = get_json_url(url, ca_file, &b, why);
        if (rc == 0) {
            json_object *d = NULL, *v;
            rc = custos_json_parse(custos_buf_peek(&b), custos_buf_size(&b), 16, &d, NULL, NULL);
            if (rc == 0 && d && json_object_is_type(d, json_type_object) &&
                json_object_object_get_ex(d, "jwks_uri", &v) && json_object_is_type(v, json_type_string) &&
                custos_https_url_ok(json_object_get_string(v)) == 0) {
                jwks_uri = strdup(json_object_get_string(v));
                rc = jwks_uri ? 0 : CUSTOS_ENOMEM;
                if (json_object_object_get_ex(d, "issuer", &v) && json_object_is_type(v, json_type_string) &&
                    strcmp(json_object_get_string(v), issuer) != 0)
                    CUSTOS_WARN("oidc: discovery document of issuer %s names another issuer", issuer);
            } else {
                *why = "discovery document has no usable jwks_uri";
                rc = CUSTOS_EPROTO;
            }
            json_object_put(d);
            custos_buf_reset(&b);
            if (rc == 0)
                rc = get_json_url(jwks_uri, ca_file, &b, why);
        }
    }
    if (rc == 0) {
        size_t skipped = 0;
        rc = custos_jwks_parse(custos_buf_peek(&b), custos_buf_size(&b), out, &skipped, why);
        if (rc == 0 && custos_jwks_count(*out) == 0) {
            custos_jwks_unref(*out);
            *out = NULL;
            *why = "the JWKS has no usable key";
            rc = CUSTOS_EPROTO;
        } else if (rc == 0 && skipped) {
            CUSTOS_INFO("oidc: issuer %s: %zu unsupported or invalid keys skipped", issuer, skipped);
        }
    }
    free(jwks_uri);
    custos_buf_dispose(&b);
    return rc;
}

static char *form_escape(const char *s, custos_buf_t *b)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            if (custos_buf_append(b, s, 1))
                return NULL;
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (custos_buf_append(b, e, 3))
                return NULL;
        }
    }
    return b->data;
}

static int fetch_token(const oauth_client_t *c, char **tok, size_t *tok_len, uint32_t *expires_in, const char **why)
{
    custos_buf_t form, resp;
    custos_https_opts_t o = {.ca_file = c->ca_file, .max_bytes = 65536};
    int status = 0, rc = CUSTOS_ENOMEM;
    custos_buf_init(&form, 65536);
    custos_buf_init(&resp, 65536);
    *why = "out of memory";
    if (custos_buf_append_lit(&form, "grant_type=client_credentials&client_id=") || !form_escape(c->client_id, &form) ||
        custos_buf_append_lit(&form, "&client_secret=") || !form_escape(c->secret, &form))
        goto done;
    if (c->scope && (custos_buf_append_lit(&form, "&scope=") || !form_escape(c->scope, &form)))
        goto done;
    rc = custos_https_request("POST", c->token_url, "application/x-www-form-urlencoded", custos_buf_peek(&form),
                              custos_buf_size(&form), &o, &status, &resp, why);
    if (rc == 0 && status != 200) {
        *why = "token endpoint status is not 200";
        rc = CUSTOS_EPROTO;
    }
    if (rc == 0) {
        rc = custos_oauth2_parse_token_response(custos_buf_peek(&resp), custos_buf_size(&resp), tok, tok_len,
                                                expires_in);
        if (rc < 0)
            *why = "bad token response";
    }
done:
    if (form.data)
        OPENSSL_cleanse(form.data, form.cap);
    if (resp.data)
        OPENSSL_cleanse(resp.data, resp.cap);
    custos_buf_dispose(&form);
    custos_buf_dispose(&resp);
    return rc;
}

/* ---------- the fetcher thread ---------- */

static void run_provider(provider_t *p)
{
    custos_jwks_t *nk = NULL, *old = NULL;
    const char *why = "?";
    int rc = fetch_keys(p->issuer, p->source, p->ca_file, &nk, &why);
    uint64_t now = custos_now_ms();
    pthread_mutex_lock(&g_mu);
    p->busy = false;
    p->attempted = true;
    g_fetches++;
    if (rc == 0) {
        old = p->keys;
        p->keys = nk;
        p->failures = 0;
        p->next_fetch_ms = now + (uint64_t)p->refresh_s * 1000;
    } else {
        p->failures++;
        p->next_fetch_ms = now + retry_delay_ms(p->failures, p->refresh_s);
    }
    size_t cached = custos_jwks_count(p->keys);
    pthread_cond_broadcast(&g_done);
    pthread_mutex_unlock(&g_mu);
    custos_jwks_unref(old);
    if (rc == 0)
        CUSTOS_INFO("oidc: issuer %s: %zu signing keys loaded", p->issuer, custos_jwks_count(nk));
    else
        CUSTOS_WARN("oidc: issuer %s: fetching keys failed (%s: %s); keeping %zu cached keys", p->issuer,
                    custos_strerror(rc), why, cached);
}

static void run_client(oauth_client_t *c)
{
    char *tok = NULL, *old = NULL;
    size_t tl = 0, old_len = 0;
    uint32_t exp_in = 0;
    const char *why = "?";
    int rc = fetch_token(c, &tok, &tl, &exp_in, &why);
    uint64_t now = custos_now_ms();
    if (rc == 0) {
        char *bt = malloc(tl + 8);
        if (bt) {
            memcpy(bt, "Bearer ", 7);
            memcpy(bt + 7, tok, tl + 1);
        }
        OPENSSL_cleanse(tok, tl);
        free(tok);
        tok = bt;
        tl += 7;
        if (!bt)
            rc = CUSTOS_ENOMEM;
    }
    pthread_mutex_lock(&g_mu);
    c->busy = false;
    c->attempted = true;
    if (rc == 0) {
        uint64_t early = exp_in / 4 < CUSTOS_OAUTH2_EARLY_REFRESH_S ? exp_in / 4 : CUSTOS_OAUTH2_EARLY_REFRESH_S;
        old = c->token;
        old_len = c->token_len;
        c->token = tok;
        c->token_len = tl;
        c->usable_until_ms = now + ((uint64_t)exp_in - early) * 1000;
        /* refresh ahead of the usable limit: at 3/4 of the remaining time, at most 60 s before it */
        uint64_t life = (uint64_t)exp_in - early, ahead = life / 4 < 60 ? life / 4 : 60;
        c->next_fetch_ms = now + (life - ahead) * 1000;
        c->failures = 0;
    } else {
        c->failures++;
        c->next_fetch_ms = now + retry_delay_ms(c->failures, 60);
    }
    pthread_cond_broadcast(&g_done);
    pthread_mutex_unlock(&g_mu);
    if (old) {
        OPENSSL_cleanse(old, old_len);
        free(old);
    }
    if (rc == 0)
        CUSTOS_INFO("oauth2: token for client %s from %s obtained (expires in %u s)", c->client_id, c->token_url,
                    exp_in);
    else
        CUSTOS_WARN("oauth2: token for client %s from %s failed (%s: %s)", c->client_id, c->token_url,
                    custos_strerror(rc), why);
}

static void *fetcher_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "oidc-keys");
    pthread_mutex_lock(&g_mu);
    while (!g_stop) {
        uint64_t now = custos_now_ms(), next = now + 3600000;
        provider_t *due = NULL;
        oauth_client_t *cdue = NULL;
        for (provider_t *p = g_providers; p && !due; p = p->next) {
            if (p->busy)
                continue;
            if (p->next_fetch_ms <= now)
                due = p;
            else if (p->next_fetch_ms < next)
                next = p->next_fetch_ms;
        }
        for (oauth_client_t *c = g_clients; c && !due && !cdue; c = c->next) {
            if (c->busy)
                continue;
            if (c->next_fetch_ms <= now)
                cdue = c;
            else if (c->next_fetch_ms < next)
                next = c->next_fetch_ms;
        }
        if (due) {
            due->busy = true;
            pthread_mutex_unlock(&g_mu);
            run_provider(due);
            pthread_mutex_lock(&g_mu);
            continue;
        }
        if (cdue) {
            cdue->busy = true;
            pthread_mutex_unlock(&g_mu);
            run_client(cdue);
            pthread_mutex_lock(&g_mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wait = next - now;
        ts.tv_sec += (time_t)(wait / 1000);
        ts.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_wake, &g_mu, &ts);
    }
    pthread_mutex_unlock(&g_mu);
    custos_json_thread_cleanup();
    return NULL;
}

/* Starts the thread if needed; g_mu held. */
static int ensure_thread_locked(void)
{
    if (g_running)
        return 0;
    g_stop = false;
    if (pthread_create(&g_thread, NULL, fetcher_main, NULL) != 0) {
        CUSTOS_ERROR("oidc: cannot start the key fetcher thread");
        return CUSTOS_ENOMEM;
    }
    g_running = true;
    return 0;
}

/* ---------- registry (g_mu held) ---------- */

static provider_t *find_provider_locked(const custos_oidc_issuer_config_t *ic, bool create)
{
    for (provider_t *p = g_providers; p; p = p->next) {
        if (strcmp(p->issuer, ic->issuer) == 0 && streq(p->source, ic->jwks) && streq(p->ca_file, ic->ca_file)) {
            p->refresh_s = ic->refresh_s ? ic->refresh_s : 3600;
            p->min_refetch_s = ic->min_refetch_s;
            return p;
        }
    }
    if (!create)
        return NULL;
    provider_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->issuer = strdup(ic->issuer);
    p->source = ic->jwks ? strdup(ic->jwks) : NULL;
    p->ca_file = ic->ca_file ? strdup(ic->ca_file) : NULL;
    if (!p->issuer || (ic->jwks && !p->source) || (ic->ca_file && !p->ca_file)) {
        free(p->issuer);
        free(p->source);
        free(p->ca_file);
        free(p);
        return NULL;
    }
    p->refresh_s = ic->refresh_s ? ic->refresh_s : 3600;
    p->min_refetch_s = ic->min_refetch_s;
    p->next = g_providers;
    g_providers = p;
    if (ensure_thread_locked() == 0)
        pthread_cond_signal(&g_wake);
    return p;
}

static void free_client(oauth_client_t *c)
{
    free(c->token_url);
    free(c->client_id);
    if (c->secret) {
        OPENSSL_cleanse(c->secret, c->secret_len);
        free(c->secret);
    }
    free(c->scope);
    free(c->ca_file);
    if (c->token) {
        OPENSSL_cleanse(c->token, c->token_len);
        free(c->token);
    }
    free(c);
}

static oauth_client_t *find_client_locked(const custos_oauth2_client_config_t *o, bool create)
{
    for (oauth_client_t *c = g_clients; c; c = c->next) {
        if (strcmp(c->token_url, o->token_url) == 0 && strcmp(c->client_id, o->client_id) == 0 &&
            streq(c->scope, o->scope) && streq(c->ca_file, o->ca_file) && c->secret_len == o->client_secret_len &&
            CRYPTO_memcmp(c->secret, o->client_secret, c->secret_len) == 0)
            return c;
    }
    if (!create)
        return NULL;
    oauth_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->token_url = strdup(o->token_url);
    c->client_id = strdup(o->client_id);
    c->secret = malloc(o->client_secret_len + 1);
    c->scope = o->scope ? strdup(o->scope) : NULL;
    c->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    if (!c->token_url || !c->client_id || !c->secret || (o->scope && !c->scope) || (o->ca_file && !c->ca_file)) {
        free_client(c);
        return NULL;
    }
    memcpy(c->secret, o->client_secret, o->client_secret_len);
    c->secret[o->client_secret_len] = 0;
    c->secret_len = o->client_secret_len;
    c->next = g_clients;
    g_clients = c;
    if (ensure_thread_locked() == 0)
        pthread_cond_signal(&g_wake);
    return c;
}

/* ---------- public ---------- */

int custos_oidc_authenticate(const custos_config_t *cfg, const char *token, size_t len, uint64_t now_s,
                             custos_jwt_claims_t **out, const char **why)
{
    static const char *dummy;
    char iss[ISS_MAX];
    const custos_oidc_issuer_config_t *ic = NULL;
    size_t cap = 0;
    if (!why)
        why = &dummy;
    *out = NULL;
    if (!cfg || cfg->identity.n_oidc == 0) {
        *why = "no OIDC issuer configured";
        return CUSTOS_ENOTFOUND;
    }
    for (size_t i = 0; i < cfg->identity.n_oidc; i++) {
        size_t m = cfg->identity.oidc[i].max_token_bytes ? cfg->identity.oidc[i].max_token_bytes
                                                         : CUSTOS_JWT_DEFAULT_MAX_BYTES;
        cap = m > cap ? m : cap;
    }
    int rc = custos_jwt_peek_issuer(token, len, cap, iss, sizeof(iss));
    if (rc < 0) {
        *why = rc == CUSTOS_ETOOBIG && len > cap ? "token too large" : "malformed token";
        return rc == CUSTOS_ENOMEM ? rc : (rc == CUSTOS_ETOOBIG && len > cap ? rc : CUSTOS_EINVAL);
    }
    for (size_t i = 0; i < cfg->identity.n_oidc && !ic; i++)
        if (strcmp(cfg->identity.oidc[i].issuer, iss) == 0)
            ic = &cfg->identity.oidc[i];
    if (!ic) {
        *why = "token issuer is not configured";
        return CUSTOS_ENOTFOUND;
    }
    pthread_once(&g_once, init_conds);
    pthread_mutex_lock(&g_mu);
    provider_t *p = find_provider_locked(ic, true);
    custos_jwks_t *keys = p ? custos_jwks_ref(p->keys) : NULL;
    pthread_mutex_unlock(&g_mu);
    if (!p) {
        *why = "out of memory";
        return CUSTOS_ENOMEM;
    }
    custos_jwt_policy_t pol = {
        .issuer = ic->issuer,
        .audiences = (const char *const *)ic->audiences,
        .n_audiences = ic->n_audiences,
        .principal_claim = ic->principal_claim,
        .roles_claim = ic->roles_claim,
        .groups_claim = ic->groups_claim,
        .clock_skew_s = ic->clock_skew_s,
        .max_token_bytes = ic->max_token_bytes,
        .max_token_age_s = ic->max_token_age_s,
    };
    rc = custos_jwt_verify(keys, token, len, &pol, now_s, out, why);
    if (rc == CUSTOS_ENOTFOUND && !keys)
        *why = "issuer keys not loaded yet";
    if (rc == CUSTOS_ENOTFOUND && keys) {
        /* maybe the issuer rotated its keys: refetch, at a bounded rate */
        uint64_t now = custos_now_ms();
        bool asked = false;
        pthread_mutex_lock(&g_mu);
        if (p->last_kid_fetch_ms == 0 || now - p->last_kid_fetch_ms >= (uint64_t)p->min_refetch_s * 1000) {
            p->last_kid_fetch_ms = now;
            if (!p->busy)
                p->next_fetch_ms = 0;
            pthread_cond_signal(&g_wake);
            asked = true;
        }
        pthread_mutex_unlock(&g_mu);
        if (asked)
            CUSTOS_INFO("oidc: issuer %s: token with an unknown key id; refetching the keys", ic->issuer);
    }
    custos_jwks_unref(keys);
    return rc;
}

int custos_oidc_sync(const custos_config_t *cfg, uint32_t wait_ms)
{
    int rc = 0;
    pthread_once(&g_once, init_conds);
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; cfg && i < cfg->identity.n_oidc && rc == 0; i++)
        if (!find_provider_locked(&cfg->identity.oidc[i], true))
            rc = CUSTOS_ENOMEM;
    for (size_t i = 0; cfg && i < cfg->n_backends && rc == 0; i++)
        if (cfg->backends[i].oauth2 && !find_client_locked(cfg->backends[i].oauth2, true))
            rc = CUSTOS_ENOMEM;
    uint64_t deadline = custos_now_ms() + wait_ms;
    while (rc == 0 && wait_ms) {
        bool pending = false;
        for (size_t i = 0; cfg && i < cfg->identity.n_oidc; i++) {
            provider_t *p = find_provider_locked(&cfg->identity.oidc[i], false);
            pending |= p && !p->attempted;
        }
        for (size_t i = 0; cfg && i < cfg->n_backends; i++) {
            oauth_client_t *c = cfg->backends[i].oauth2 ? find_client_locked(cfg->backends[i].oauth2, false) : NULL;
            pending |= c && !c->attempted;
        }
        uint64_t now = custos_now_ms();
        if (!pending || now >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t w = deadline - now;
        ts.tv_sec += (time_t)(w / 1000);
        ts.tv_nsec += (long)(w % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_done, &g_mu, &ts);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void custos_oidc_shutdown(void)
{
    pthread_once(&g_once, init_conds);
    pthread_mutex_lock(&g_mu);
    bool running = g_running;
    g_stop = true;
    pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_mu);
    if (running)
        pthread_join(g_thread, NULL);
    pthread_mutex_lock(&g_mu);
    g_running = false;
    provider_t *p = g_providers;
    oauth_client_t *c = g_clients;
    g_providers = NULL;
    g_clients = NULL;
    pthread_mutex_unlock(&g_mu);
    while (p) {
        provider_t *n = p->next;
        custos_jwks_unref(p->keys);
        free(p->issuer);
        free(p->source);
        free(p->ca_file);
        free(p);
        p = n;
    }
    while (c) {
        oauth_client_t *n = c->next;
        free_client(c);
        c = n;
    }
}

int custos_oidc_oauth2_value(const custos_oauth2_client_config_t *o, custos_arena_t *a, const char **value, size_t *len)
{
    int rc = CUSTOS_EUNAVAIL;
    *value = NULL;
    *len = 0;
    pthread_once(&g_once, init_conds);
    pthread_mutex_lock(&g_mu);
    oauth_client_t *c = find_client_locked(o, true);
    if (!c) {
        rc = CUSTOS_ENOMEM;
    } else if (c->token && custos_now_ms() < c->usable_until_ms) {
        char *v = custos_arena_alloc(a, c->token_len + 1);
        if (v) {
            memcpy(v, c->token, c->token_len + 1);
            *value = v;
            *len = c->token_len;
            rc = 0;
        } else {
            rc = CUSTOS_ENOMEM;
        }
    } else if (!c->busy && c->failures == 0 && c->next_fetch_ms > custos_now_ms()) {
        c->next_fetch_ms = 0; /* expired (e.g. after a suspend) while the endpoint was fine: ask now */
        pthread_cond_signal(&g_wake);
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

size_t custos_oidc_provider_count(void)
{
    size_t n = 0;
    pthread_mutex_lock(&g_mu);
    for (provider_t *p = g_providers; p; p = p->next)
        n++;
    pthread_mutex_unlock(&g_mu);
    return n;
}

uint64_t custos_oidc_fetch_attempts(void)
{
    pthread_mutex_lock(&g_mu);
    uint64_t n = g_fetches;
    pthread_mutex_unlock(&g_mu);
    return n;
}
