/* SPDX-License-Identifier: Apache-2.0
 * Guard verdict cache (guard.h). The key is a keyed hash (HMAC-SHA256 under a random key drawn once per process) of
 * the normalised text with the policy, guard, check and direction: the text itself is never kept, and a key cannot be
 * recomputed (or a text guessed from it) outside the process. Entries hold only the verdict. */
#include "guard/guard.h"

#include "util/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define WAYS 4

static unsigned char g_key[32];
static bool g_key_ok;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void key_init(void)
{
    size_t got = 0;
    while (got < sizeof(g_key)) {
        ssize_t r = getrandom(g_key + got, sizeof(g_key) - got, 0);
        if (r <= 0)
            return;
        got += (size_t)r;
    }
    g_key_ok = true;
}

static bool ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int custos_guard_key(const char *policy, const char *guard, custos_guard_check_t check, int src, const char *text,
                     size_t len, custos_guard_key_t *out)
{
    pthread_once(&g_once, key_init);
    if (!g_key_ok)
        return CUSTOS_EIO;
    int rc = CUSTOS_ENOMEM;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx, g_key, sizeof(g_key), params))
        goto out;
    unsigned char hdr[2] = {(unsigned char)check, (unsigned char)src};
    if (!EVP_MAC_update(ctx, (const unsigned char *)policy, strlen(policy) + 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)guard, strlen(guard) + 1) || !EVP_MAC_update(ctx, hdr, 2))
        goto out;
    /* normalised: white space trimmed and runs collapsed to one space, fed in pieces (no copy of the text) */
    size_t i = 0;
    while (i < len && ws((unsigned char)text[i]))
        i++;
    while (len > i && ws((unsigned char)text[len - 1]))
        len--;
    while (i < len) {
        size_t s = i;
        while (i < len && !ws((unsigned char)text[i]))
            i++;
        if (!EVP_MAC_update(ctx, (const unsigned char *)text + s, i - s))
            goto out;
        if (i < len) {
            if (!EVP_MAC_update(ctx, (const unsigned char *)" ", 1))
                goto out;
            while (i < len && ws((unsigned char)text[i]))
                i++;
        }
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;
    if (!EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) || mdlen < sizeof(out->b))
        goto out;
    memcpy(out->b, md, sizeof(out->b));
    OPENSSL_cleanse(md, sizeof(md));
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

typedef struct entry {
    custos_guard_key_t key;
    uint64_t at_ms; /* 0 = empty */
    custos_guard_verdict_t v;
} entry_t;

struct custos_guard_cache {
    entry_t *e;
    size_t sets; /* power of two */
    uint64_t ttl_ms;
};

int custos_guard_cache_new(size_t entries, uint64_t ttl_ms, custos_guard_cache_t **out)
{
    *out = NULL;
    size_t sets = 1;
    while (sets * WAYS < entries && sets < ((size_t)1 << 24))
        sets <<= 1;
    custos_guard_cache_t *c = calloc(1, sizeof(*c));
    if (!c || !(c->e = calloc(sets * WAYS, sizeof(entry_t)))) {
        free(c);
        return CUSTOS_ENOMEM;
    }
    c->sets = sets;
    c->ttl_ms = ttl_ms;
    *out = c;
    return 0;
}

void custos_guard_cache_free(custos_guard_cache_t *c)
{
    if (!c)
        return;
    free(c->e);
    free(c);
}

size_t custos_guard_cache_capacity(const custos_guard_cache_t *c)
{
    return c->sets * WAYS;
}

static entry_t *set_of(custos_guard_cache_t *c, const custos_guard_key_t *k)
{
    uint64_t h;
    memcpy(&h, k->b, sizeof(h));
    return &c->e[(h & (c->sets - 1)) * WAYS];
}

bool custos_guard_cache_get(custos_guard_cache_t *c, const custos_guard_key_t *k, uint64_t now_ms,
                            custos_guard_verdict_t *out)
{
    entry_t *s = set_of(c, k);
    for (int i = 0; i < WAYS; i++) {
        if (!s[i].at_ms || memcmp(&s[i].key, k, sizeof(*k)) != 0)
            continue;
        if (now_ms - s[i].at_ms >= c->ttl_ms) {
            s[i].at_ms = 0;
            return false;
        }
        *out = s[i].v;
        out->cached = true;
        out->latency_ns = 0;
        return true;
    }
    return false;
}

void custos_guard_cache_put(custos_guard_cache_t *c, const custos_guard_key_t *k, uint64_t now_ms,
                            const custos_guard_verdict_t *v)
{
    if (v->err != CUSTOS_GUARD_OK)
        return;
    if (now_ms == 0)
        now_ms = 1;
    entry_t *s = set_of(c, k), *victim = NULL;
    for (int i = 0; i < WAYS && !victim; i++)
        if (s[i].at_ms && memcmp(&s[i].key, k, sizeof(*k)) == 0)
            victim = &s[i]; /* the same key: refreshed */
    for (int i = 0; i < WAYS && !victim; i++)
        if (!s[i].at_ms)
            victim = &s[i];
    if (!victim) { /* the oldest way */
        victim = &s[0];
        for (int i = 1; i < WAYS; i++)
            if (s[i].at_ms < victim->at_ms)
                victim = &s[i];
    }
    victim->key = *k;
    victim->at_ms = now_ms;
    victim->v = *v;
}
