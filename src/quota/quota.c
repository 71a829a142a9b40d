/* SPDX-License-Identifier: Apache-2.0
 * Quota windows, admission and settlement, and the Redis sync thread. See quota.h and docs/quotas.md. */
#include "quota/quota.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_WINDOW_MS 60000u

/* One key's counters. A counter's use in the current window is base + pend + infl:
 * base = global total (all replicas) as of the last sync, or 0; pend = charged here since; infl = sent to
 * Redis by the sync in progress. Without Redis only pend is used. Guarded by custos_quota_t.lock. */
typedef struct custos_qent {
    char *name;
    uint64_t hash;
    int64_t rwin, twin; /* window indices (wall ms / window length) */
    int64_t r_base, r_pend, r_infl;
    int64_t t_base, t_pend, t_infl;
    uint64_t used_ms; /* last admission, for the sync thread's selection */
    bool pinned;      /* a configured key (deployment, quotas.principals): synced even while idle */
} qent_t;

struct custos_quota {
    pthread_mutex_t lock;
    qent_t **slots; /* open addressing by name hash */
    size_t cap, n, max_keys;
    unsigned rwin_ms; /* request window length */
    unsigned nshards;
    custos_tok_t *tok[CUSTOS_TOK_NKINDS]; /* loaded by prepare (main thread), then read-only */
    custos_metrics_t *reg;
    custos_metric_family_t *m_rejected;  /* counter {scope, kind} */
    custos_metric_family_t *m_admitted;  /* counter {} */
    custos_metric_family_t *m_fallback;  /* counter {mode} requests decided while Redis was down */
    custos_metric_family_t *m_redis_up;  /* gauge {} */
    custos_metric_family_t *m_sync_err;  /* counter {} */
    custos_metric_family_t *m_untracked; /* counter {} keys over max_keys */
    /* Redis */
    bool redis;
    atomic_bool redis_up;
    int64_t redis_up_published; /* gauge value set by the sync thread */
    custos_quota_failure_t on_failure;
    char *host, *password, *prefix;
    uint16_t port;
    unsigned sync_ms, timeout_ms;
    redisContext *rc;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stop;
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void inc(custos_metric_family_t *f, const char *const *lv, unsigned shard)
{
    custos_metric_series_t *s = custos_metrics_series(f, lv);
    if (s)
        custos_metrics_inc(s, shard, 1);
}

static void set_redis_up(custos_quota_t *q, bool up)
{
    atomic_store(&q->redis_up, up);
    int64_t v = up ? 1 : 0;
    custos_metric_series_t *s = custos_metrics_series(q->m_redis_up, NULL);
    if (s && v != q->redis_up_published) {
        custos_metrics_gauge_add(s, q->nshards, v - q->redis_up_published); /* the sync thread's own shard */
        q->redis_up_published = v;
    }
}

static void *sync_main(void *arg);

int custos_quota_new(const custos_quota_opts_t *o, custos_quota_t **out, char *err, size_t errlen)
{
    static const char *const l_sk[] = {"scope", "kind"};
    static const char *const l_m[] = {"mode"};
    *out = NULL;
    custos_quota_t *q = calloc(1, sizeof(*q));
    if (!q)
        return CUSTOS_ENOMEM;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->stop_lock, NULL);
    pthread_cond_init(&q->stop_cond, NULL);
    const custos_quotas_config_t *c = o->cfg;
    q->max_keys = o->max_keys ? o->max_keys : 100000;
    q->cap = 1024;
    q->slots = calloc(q->cap, sizeof(*q->slots));
    q->rwin_ms = (c && c->rpm_window_s ? c->rpm_window_s : 10) * 1000u;
    q->nshards = o->nshards ? o->nshards : 1;
    q->reg = custos_metrics_new(q->nshards + 1);
    int rc = q->slots && q->reg ? 0 : CUSTOS_ENOMEM;
    rc = rc ? rc
            : custos_metrics_counter(
                  q->reg, "custos_quota_rejected_total",
                  "Requests refused by a quota, by scope (deployment, deployment_principal, principal) "
                  "and kind (tokens, requests, store_unavailable).",
                  l_sk, 2, &q->m_rejected);
    rc = rc ? rc
            : custos_metrics_counter(q->reg, "custos_quota_admitted_total", "Requests admitted under a quota.", NULL, 0,
                                     &q->m_admitted);
    rc = rc ? rc
            : custos_metrics_counter(q->reg, "custos_quota_fallback_total",
                                     "Requests decided while the shared quota store (Redis) was unreachable, by "
                                     "quotas.redis.on_failure mode.",
                                     l_m, 1, &q->m_fallback);
    rc = rc ? rc
            : custos_metrics_gauge(q->reg, "custos_quota_redis_up",
                                   "1 while the shared quota store (Redis) answers, 0 when it does not; absent "
                                   "without quotas.redis.",
                                   NULL, 0, &q->m_redis_up);
    rc = rc ? rc
            : custos_metrics_counter(q->reg, "custos_quota_redis_sync_errors_total",
                                     "Failed synchronisations with the shared quota store.", NULL, 0, &q->m_sync_err);
    rc = rc ? rc
            : custos_metrics_counter(q->reg, "custos_quota_untracked_total",
                                     "Requests whose quota key was not tracked because quotas hold max_keys keys.",
                                     NULL, 0, &q->m_untracked);
    if (rc) {
        custos_quota_free(q);
        if (err && errlen)
            snprintf(err, errlen, "quotas: out of memory");
        return rc;
    }
    atomic_init(&q->redis_up, true);
    if (c && c->redis_host) {
        q->redis = true;
        q->on_failure = c->on_failure;
        q->port = c->redis_port;
        q->sync_ms = c->redis_sync_interval_ms ? c->redis_sync_interval_ms : 100;
        q->timeout_ms = c->redis_timeout_ms ? c->redis_timeout_ms : 200;
        q->host = strdup(c->redis_host);
        q->prefix = strdup(c->redis_prefix ? c->redis_prefix : "custos:quota:");
        q->password = c->redis_password ? strdup(c->redis_password) : NULL;
        if (!q->host || !q->prefix || (c->redis_password && !q->password)) {
            custos_quota_free(q);
            return CUSTOS_ENOMEM;
        }
        /* Down until the first sync answers (the thread syncs at once): with on_failure local that changes
         * nothing, and the gauge exists from the start. */
        atomic_store(&q->redis_up, false);
        custos_metric_series_t *gs = custos_metrics_series(q->m_redis_up, NULL);
        if (gs)
            custos_metrics_gauge_add(gs, q->nshards, 0);
        if (!o->no_thread) {
            if (pthread_create(&q->thread, NULL, sync_main, q) != 0) {
                custos_quota_free(q);
                if (err && errlen)
                    snprintf(err, errlen, "quotas: cannot start the Redis sync thread");
                return CUSTOS_EIO;
            }
            q->thread_started = true;
        }
    }
    *out = q;
    return 0;
}

void custos_quota_free(custos_quota_t *q)
{
    if (!q)
        return;
    if (q->thread_started) {
        pthread_mutex_lock(&q->stop_lock);
        q->stop = true;
        pthread_cond_signal(&q->stop_cond);
        pthread_mutex_unlock(&q->stop_lock);
        pthread_join(q->thread, NULL);
    }
    if (q->rc)
        redisFree(q->rc);
    for (size_t i = 0; q->slots && i < q->cap; i++)
        if (q->slots[i]) {
            free(q->slots[i]->name);
            free(q->slots[i]);
        }
    free(q->slots);
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        custos_tok_free(q->tok[k]);
    custos_metrics_free(q->reg);
    free(q->host);
    if (q->password) {
        memset(q->password, 0, strlen(q->password));
        free(q->password);
    }
    free(q->prefix);
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->stop_lock);
    pthread_cond_destroy(&q->stop_cond);
    free(q);
}

static bool config_uses_quotas(const custos_config_t *cfg)
{
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const custos_deployment_config_t *d = &cfg->deployments[i];
        if (d->quota.tpm || d->quota.rpm || d->quota_per_principal.tpm || d->quota_per_principal.rpm)
            return true;
    }
    for (size_t i = 0; i < cfg->quotas.n_principals; i++)
        if (cfg->quotas.principals[i].limit.tpm || cfg->quotas.principals[i].limit.rpm)
            return true;
    return false;
}

static qent_t *lookup(custos_quota_t *q, const char *name, bool create);

/* Configured keys are tracked from the start, so that with Redis a replica knows what the others used
 * before its own first request (keys of a principal within a deployment appear on first use). */
static void pin_configured(custos_quota_t *q, const custos_config_t *cfg)
{
    char name[400];
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const custos_deployment_config_t *d = &cfg->deployments[i];
        if (!(d->quota.tpm > 0 || d->quota.rpm > 0))
            continue;
        snprintf(name, sizeof(name), "d/%s", d->name);
        qent_t *e = lookup(q, name, true);
        if (e)
            e->pinned = true;
    }
    for (size_t i = 0; i < cfg->quotas.n_principals; i++) {
        if ((size_t)snprintf(name, sizeof(name), "p/%s", cfg->quotas.principals[i].principal) >= sizeof(name))
            continue;
        qent_t *e = lookup(q, name, true);
        if (e)
            e->pinned = true;
    }
    pthread_mutex_unlock(&q->lock);
}

int custos_quota_prepare(custos_quota_t *q, const custos_config_t *cfg, char *err, size_t errlen)
{
    if (!config_uses_quotas(cfg))
        return 0;
    if (q->redis)
        pin_configured(q, cfg);
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
        if (q->tok[k])
            continue;
        custos_tok_t *t = NULL;
        int rc = custos_tok_load(cfg->quotas.tokenizer_dir, (custos_tok_kind_t)k, &t);
        if (rc < 0) {
            if (err && errlen)
                snprintf(err, errlen,
                         "quotas: cannot load %s.tiktoken from %s (%s%s); run scripts/bootstrap or set "
                         "quotas.tokenizer_dir",
                         custos_tok_kind_name((custos_tok_kind_t)k), cfg->quotas.tokenizer_dir, custos_strerror(rc),
                         rc == CUSTOS_EINVAL ? ": wrong SHA-256 or malformed" : "");
            return rc;
        }
        /* published before the config that needs it reaches the workers (custos_loop_post orders it) */
        __atomic_store_n(&q->tok[k], t, __ATOMIC_RELEASE);
    }
    return 0;
}

const custos_tok_t *custos_quota_tokenizer(const custos_quota_t *q, custos_tok_kind_t kind)
{
    return (unsigned)kind < CUSTOS_TOK_NKINDS ? __atomic_load_n(&q->tok[kind], __ATOMIC_ACQUIRE) : NULL;
}

custos_metrics_t *custos_quota_metrics(custos_quota_t *q)
{
    return q->reg;
}

bool custos_quota_redis_up(const custos_quota_t *q)
{
    return !q->redis || atomic_load(&q->redis_up);
}

/* ---------- the key table (under lock) ---------- */

static int grow(custos_quota_t *q)
{
    size_t ncap = q->cap * 2;
    qent_t **ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < q->cap; i++) {
        qent_t *e = q->slots[i];
        if (!e)
            continue;
        size_t j = e->hash & (ncap - 1);
        while (ns[j])
            j = (j + 1) & (ncap - 1);
        ns[j] = e;
    }
    free(q->slots);
    q->slots = ns;
    q->cap = ncap;
    return 0;
}

static qent_t *lookup(custos_quota_t *q, const char *name, bool create)
{
    uint64_t h = name_hash(name);
    size_t i = h & (q->cap - 1);
    for (qent_t *e; (e = q->slots[i]) != NULL; i = (i + 1) & (q->cap - 1))
        if (e->hash == h && strcmp(e->name, name) == 0)
            return e;
    if (!create || q->n >= q->max_keys)
        return NULL;
    if ((q->n + 1) * 2 > q->cap) {
        if (grow(q) < 0)
            return NULL;
        i = h & (q->cap - 1);
        while (q->slots[i])
            i = (i + 1) & (q->cap - 1);
    }
    qent_t *e = calloc(1, sizeof(*e));
    if (!e || !(e->name = strdup(name))) {
        free(e);
        return NULL;
    }
    e->hash = h;
    e->rwin = e->twin = -1;
    q->slots[i] = e;
    q->n++;
    return e;
}

static void roll(const custos_quota_t *q, qent_t *e, uint64_t now_ms)
{
    int64_t rw = (int64_t)(now_ms / q->rwin_ms), tw = (int64_t)(now_ms / TOKEN_WINDOW_MS);
    if (e->rwin != rw) {
        e->rwin = rw;
        e->r_base = e->r_pend = e->r_infl = 0;
    }
    if (e->twin != tw) {
        e->twin = tw;
        e->t_base = e->t_pend = e->t_infl = 0;
    }
}

/* Requests allowed per request window: ceil(rpm × window / 60 s). */
static int64_t req_limit(const custos_quota_t *q, int64_t rpm)
{
    return rpm <= 0 ? 0 : (rpm * (int64_t)q->rwin_ms + 59999) / 60000;
}

static const char *scope_of(const char *name)
{
    return name[0] == 'd' && name[1] == 'p' ? "deployment_principal" : name[0] == 'd' ? "deployment" : "principal";
}

void custos_quota_admit(custos_quota_t *q, const custos_quota_key_t *keys, size_t nkeys, int64_t tokens,
                        uint64_t now_ms, unsigned shard, custos_quota_ticket_t *t)
{
    memset(t, 0, sizeof(*t));
    t->allowed = true;
    t->remaining_requests = t->remaining_tokens = -1;
    if (tokens < 0)
        tokens = 0;
    size_t n = 0;
    custos_quota_key_t use[CUSTOS_QUOTA_MAX_KEYS];
    for (size_t i = 0; i < nkeys && n < CUSTOS_QUOTA_MAX_KEYS; i++)
        if (keys[i].tpm > 0 || keys[i].rpm > 0)
            use[n++] = keys[i];
    if (n == 0)
        return;
    t->active = true;
    bool down = q->redis && !atomic_load(&q->redis_up);
    if (down) {
        static const char *const modes[] = {"local", "open", "closed"};
        const char *lv[1] = {modes[q->on_failure]};
        inc(q->m_fallback, lv, shard);
        if (q->on_failure == CUSTOS_QUOTA_FAIL_CLOSED) {
            t->allowed = false;
            t->status = 503;
            t->retry_after_ms = q->sync_ms > 1000 ? q->sync_ms : 1000;
            const char *lr[2] = {scope_of(use[0].name), "store_unavailable"};
            inc(q->m_rejected, lr, shard);
            return;
        }
    }
    bool enforce = !(down && q->on_failure == CUSTOS_QUOTA_FAIL_OPEN);
    qent_t *ents[CUSTOS_QUOTA_MAX_KEYS] = {0};
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < n; i++) {
        qent_t *e = ents[i] = lookup(q, use[i].name, true);
        if (!e)
            continue;
        roll(q, e, now_ms);
        int64_t rl = req_limit(q, use[i].rpm);
        int64_t rused = e->r_base + e->r_pend + e->r_infl, tused = e->t_base + e->t_pend + e->t_infl;
        if (enforce && rl > 0 && rused + 1 > rl) {
            t->allowed = false;
            t->tokens_limited = false;
            t->retry_after_ms = (uint64_t)(e->rwin + 1) * q->rwin_ms - now_ms;
        } else if (enforce && use[i].tpm > 0 && tused + tokens > use[i].tpm) {
            t->allowed = false;
            t->tokens_limited = true;
            t->retry_after_ms = (uint64_t)(e->twin + 1) * TOKEN_WINDOW_MS - now_ms;
        }
        if (!t->allowed) {
            t->status = 429;
            t->refused_scope = use[i].name[0] == 'd' ? (use[i].name[1] == 'p' ? 1 : 0) : 2;
            t->remaining_requests = rl > 0 ? (rl - rused > 0 ? rl - rused : 0) : -1;
            t->remaining_tokens = use[i].tpm > 0 ? (use[i].tpm - tused > 0 ? use[i].tpm - tused : 0) : -1;
            pthread_mutex_unlock(&q->lock);
            const char *lr[2] = {scope_of(use[i].name), t->tokens_limited ? "tokens" : "requests"};
            inc(q->m_rejected, lr, shard);
            return;
        }
    }
    /* every key admits the request: charge them all */
    for (size_t i = 0; i < n; i++) {
        qent_t *e = ents[i];
        if (!e)
            continue;
        e->r_pend += 1;
        e->t_pend += tokens;
        e->used_ms = now_ms;
        t->ent[t->n] = e;
        t->twin[t->n] = e->twin;
        t->n++;
        int64_t rl = req_limit(q, use[i].rpm);
        if (rl > 0) {
            int64_t rem = rl - (e->r_base + e->r_pend + e->r_infl);
            rem = rem < 0 ? 0 : rem;
            if (t->remaining_requests < 0 || rem < t->remaining_requests)
                t->remaining_requests = rem;
        }
        if (use[i].tpm > 0) {
            int64_t rem = use[i].tpm - (e->t_base + e->t_pend + e->t_infl);
            rem = rem < 0 ? 0 : rem;
            if (t->remaining_tokens < 0 || rem < t->remaining_tokens)
                t->remaining_tokens = rem;
        }
    }
    pthread_mutex_unlock(&q->lock);
    t->charged = tokens;
    inc(q->m_admitted, NULL, shard);
    for (size_t i = 0; i < n; i++)
        if (!ents[i])
            inc(q->m_untracked, NULL, shard);
}

void custos_quota_settle(custos_quota_t *q, custos_quota_ticket_t *t, int64_t actual_tokens, uint64_t now_ms)
{
    if (t->settled || !t->allowed || t->n == 0) {
        t->settled = true;
        return;
    }
    t->settled = true;
    if (actual_tokens < 0)
        return;
    int64_t delta = actual_tokens - t->charged;
    if (delta == 0)
        return;
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < t->n; i++) {
        qent_t *e = t->ent[i];
        roll(q, e, now_ms);
        if (e->twin == t->twin[i]) /* a window that has passed is not corrected */
            e->t_pend += delta;
    }
    pthread_mutex_unlock(&q->lock);
}

/* ---------- Redis ---------- */

/* Adds the deltas to both window counters, sets their expiry, returns both totals. Atomic in Redis. */
static const char LUA[] = "local r = redis.call('INCRBY', KEYS[1], ARGV[1]) "
                          "local t = redis.call('INCRBY', KEYS[2], ARGV[2]) "
                          "redis.call('PEXPIRE', KEYS[1], ARGV[3]) "
                          "redis.call('PEXPIRE', KEYS[2], ARGV[4]) "
                          "return {r, t}";

typedef struct {
    qent_t *e;
    int64_t rwin, twin, dr, dt;
} snap_t;

static int redis_connect(custos_quota_t *q)
{
    struct timeval tv = {(time_t)(q->timeout_ms / 1000), (suseconds_t)(q->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(q->host, q->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return CUSTOS_EIO;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return CUSTOS_EIO;
    }
    if (q->password) {
        redisReply *r = redisCommand(c, "AUTH %s", q->password);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            redisFree(c);
            return CUSTOS_EPROTO;
        }
    }
    q->rc = c;
    return 0;
}

int custos_quota_sync_now(custos_quota_t *q, uint64_t now_ms)
{
    if (!q->redis)
        return 0;
    /* 1. take the deltas of every key used in the last two minutes (rolling idle ones to the current
     *    windows so that they learn what other replicas used) */
    pthread_mutex_lock(&q->lock);
    size_t cnt = 0;
    for (size_t i = 0; i < q->cap; i++)
        if (q->slots[i] && (q->slots[i]->pinned || q->slots[i]->used_ms + 2 * TOKEN_WINDOW_MS > now_ms))
            cnt++;
    snap_t *sn = cnt ? calloc(cnt, sizeof(*sn)) : NULL;
    size_t k = 0;
    for (size_t i = 0; sn && i < q->cap && k < cnt; i++) {
        qent_t *e = q->slots[i];
        if (!e || (!e->pinned && e->used_ms + 2 * TOKEN_WINDOW_MS <= now_ms))
            continue;
        roll(q, e, now_ms);
        sn[k] = (snap_t){e, e->rwin, e->twin, e->r_pend, e->t_pend};
        e->r_infl += e->r_pend;
        e->t_infl += e->t_pend;
        e->r_pend = e->t_pend = 0;
        k++;
    }
    pthread_mutex_unlock(&q->lock);
    if (cnt && !sn)
        return CUSTOS_ENOMEM;

    /* 2. one pipelined round trip, outside the lock */
    int rc = 0;
    int64_t(*tot)[2] = k ? calloc(k, sizeof(*tot)) : NULL;
    size_t got = 0;
    if (k && !tot)
        rc = CUSTOS_ENOMEM;
    if (!rc && !q->rc)
        rc = redis_connect(q);
    for (size_t i = 0; !rc && i < k; i++) {
        char rkey[1024], tkey[1024]; /* prefix (128) + key (< 400) + suffix: always fits */
        int rl = snprintf(rkey, sizeof(rkey), "%s%s:r%u:%lld", q->prefix, sn[i].e->name, q->rwin_ms / 1000,
                          (long long)sn[i].rwin);
        int tl = snprintf(tkey, sizeof(tkey), "%s%s:t:%lld", q->prefix, sn[i].e->name, (long long)sn[i].twin);
        if (rl < 0 || tl < 0 || (size_t)rl >= sizeof(rkey) || (size_t)tl >= sizeof(tkey)) {
            rc = CUSTOS_ETOOBIG;
            break;
        }
        if (redisAppendCommand(q->rc, "EVAL %s 2 %b %b %lld %lld %u %u", LUA, rkey, (size_t)rl, tkey, (size_t)tl,
                               (long long)sn[i].dr, (long long)sn[i].dt, 2 * q->rwin_ms,
                               2 * TOKEN_WINDOW_MS) != REDIS_OK)
            rc = CUSTOS_EIO;
    }
    for (size_t i = 0; !rc && i < k; i++) {
        redisReply *r = NULL;
        if (redisGetReply(q->rc, (void **)&r) != REDIS_OK || !r) {
            rc = CUSTOS_EIO;
            break;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
            r->element[1]->type == REDIS_REPLY_INTEGER) {
            tot[i][0] = r->element[0]->integer;
            tot[i][1] = r->element[1]->integer;
            got++;
        } else {
            rc = CUSTOS_EPROTO;
        }
        freeReplyObject(r);
    }
    if (rc && q->rc) { /* start over with a fresh connection next time */
        redisFree(q->rc);
        q->rc = NULL;
    }

    /* 3. totals in; what did not get an answer goes back to pending (it may be counted twice in Redis
     *    if the command ran but its answer was lost: over-counting, never under-counting) */
    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < k; i++) {
        qent_t *e = sn[i].e;
        bool same_r = e->rwin == sn[i].rwin, same_t = e->twin == sn[i].twin;
        if (i < got) {
            if (same_r) {
                e->r_base = tot[i][0];
                e->r_infl -= sn[i].dr;
            }
            if (same_t) {
                e->t_base = tot[i][1];
                e->t_infl -= sn[i].dt;
            }
        } else {
            if (same_r) {
                e->r_infl -= sn[i].dr;
                e->r_pend += sn[i].dr;
            }
            if (same_t) {
                e->t_infl -= sn[i].dt;
                e->t_pend += sn[i].dt;
            }
        }
    }
    pthread_mutex_unlock(&q->lock);
    free(sn);
    free(tot);
    if (!rc && !q->rc) /* nothing to send: still check that the store answers */
        rc = redis_connect(q);
    if (!rc && k == 0) {
        redisReply *r = redisCommand(q->rc, "PING");
        if (!r || r->type == REDIS_REPLY_ERROR)
            rc = CUSTOS_EIO;
        if (r)
            freeReplyObject(r);
        if (rc) {
            redisFree(q->rc);
            q->rc = NULL;
        }
    }
    bool was_up = atomic_load(&q->redis_up);
    if (rc) {
        custos_metric_series_t *s = custos_metrics_series(q->m_sync_err, NULL);
        if (s)
            custos_metrics_inc(s, q->nshards, 1);
        if (was_up)
            CUSTOS_WARN("quotas: Redis %s:%u unreachable (%s); quotas.redis.on_failure applies", q->host,
                        (unsigned)q->port, custos_strerror(rc));
    } else if (!was_up) {
        CUSTOS_INFO("quotas: Redis %s:%u reachable; quotas are shared", q->host, (unsigned)q->port);
    }
    set_redis_up(q, rc == 0);
    return rc;
}

static void *sync_main(void *arg)
{
    custos_quota_t *q = arg;
    pthread_setname_np(pthread_self(), "quota-sync");
    pthread_mutex_lock(&q->stop_lock);
    while (!q->stop) {
        pthread_mutex_unlock(&q->stop_lock);
        custos_quota_sync_now(q, custos_wall_ms());
        pthread_mutex_lock(&q->stop_lock);
        if (q->stop)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)q->sync_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&q->stop_cond, &q->stop_lock, &ts);
    }
    pthread_mutex_unlock(&q->stop_lock);
    return NULL;
}
