/* SPDX-License-Identifier: Apache-2.0 */
#include "api/probe.h"

#include "auth/upstream_cred.h"
#include "upstream/client.h"
#include "util/arena.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct probe {
    struct custos_prober *owner;
    const custos_backend_config_t *b; /* borrowed from owner->cfg */
    custos_backend_health_t *h;
    custos_timer_t timer;
    custos_upstream_req_t *req; /* in flight, or NULL */
    int status;
} probe_t;

struct custos_prober {
    custos_health_t *health;
    custos_loop_t *loop;
    custos_upstream_t *up;
    pthread_t thread;
    bool started;
    custos_config_t *cfg;       /* loop thread only after start */
    pthread_mutex_t pending_mu; /* guards pending */
    custos_config_t *pending;   /* newest config handed over by set_config, not yet applied (one reference) */
    probe_t *probes;
    size_t n;
};

static void probe_fire(custos_loop_t *loop, void *ud);

static int probe_on_head(void *ud, int status, const custos_http_header_t *h, size_t n)
{
    (void)h;
    (void)n;
    probe_t *pr = ud;
    pr->status = status;
    return 0;
}

static void probe_on_done(void *ud, int rc)
{
    probe_t *pr = ud;
    pr->req = NULL;
    const custos_backend_config_t *b = pr->b;
    bool ok = rc == 0 && pr->status >= 200 && pr->status < 300;
    custos_backend_state_t before = custos_health_state(pr->h, custos_now_ms());
    custos_health_probe_result(pr->h, ok, b->hc_healthy_threshold, b->hc_unhealthy_threshold, custos_now_ms());
    custos_backend_state_t after = custos_health_state(pr->h, custos_now_ms());
    if (before != after)
        CUSTOS_INFO("backend %s: %s -> %s (health check %s, status %d)", b->name, custos_health_state_name(before),
                    custos_health_state_name(after), ok ? "passed" : "failed", pr->status);
    custos_timer_start(pr->owner->loop, &pr->timer, b->hc_interval_ms);
}

static void probe_fire(custos_loop_t *loop, void *ud)
{
    (void)loop;
    probe_t *pr = ud;
    const custos_backend_config_t *b = pr->b;
    pr->status = 0;
    custos_http_header_t hd[3];
    size_t n = 0;
    hd[n++] = (custos_http_header_t){"user-agent", 10, "custos-health/0.1", 17};
    hd[n++] = (custos_http_header_t){"accept", 6, "application/json", 16};
    /* The backend's own credential, as requests send it: api-key / bearer key, static bearer token, or the
     * current OAuth2 token (when none is available the probe is skipped: that says nothing about the backend). */
    custos_arena_t arena;
    custos_arena_init(&arena);
    const char *hname = NULL, *cred = NULL;
    size_t hname_len = 0, cred_len = 0;
    if (custos_auth_backend_header(b, &arena, &hname, &hname_len, &cred, &cred_len) < 0) {
        custos_arena_dispose(&arena);
        custos_timer_start(pr->owner->loop, &pr->timer, b->hc_interval_ms);
        return;
    }
    if (cred)
        hd[n++] = (custos_http_header_t){hname, hname_len, cred, cred_len};
    custos_upstream_target_t t;
    custos_upstream_target_init(&t);
    t.name = b->name;
    t.host = b->host;
    t.port = b->port;
    t.tls = b->https;
    t.ca_file = b->ca_file;
    t.verify = b->tls_verify;
    t.max_connections = 2;
    custos_upstream_timeouts_t to = {b->hc_timeout_ms, b->hc_timeout_ms, b->hc_timeout_ms};
    static const custos_upstream_cbs_t cbs = {probe_on_head, NULL, probe_on_done};
    int rc = custos_upstream_request(pr->owner->up, &t, "GET", b->hc_path, hd, n, NULL, 0, &to, &cbs, pr, &pr->req);
    if (cred)
        memset((char *)cred, 0, cred_len);
    custos_arena_dispose(&arena);
    if (rc < 0) {
        pr->req = NULL;
        custos_health_probe_result(pr->h, false, b->hc_healthy_threshold, b->hc_unhealthy_threshold, custos_now_ms());
        custos_timer_start(pr->owner->loop, &pr->timer, b->hc_interval_ms);
    }
}

/* loop thread (or before start / after join) */
static void clear_probes(custos_prober_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        custos_timer_stop(p->loop, &p->probes[i].timer);
        if (p->probes[i].req)
            custos_upstream_req_cancel(p->probes[i].req);
    }
    free(p->probes);
    p->probes = NULL;
    p->n = 0;
    custos_config_unref(p->cfg);
    p->cfg = NULL;
}

/* loop thread (or before start): takes over the reference in cfg */
static void apply_config(custos_prober_t *p, custos_config_t *cfg)
{
    clear_probes(p);
    p->cfg = cfg;
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_backends; i++) {
        n += cfg->backends[i].hc_enabled;
        custos_backend_health_t *h =
            cfg->backends[i].hc_enabled ? NULL : custos_health_find(p->health, cfg->backends[i].name);
        if (h)
            custos_health_probe_reset(h); /* its health_check was removed: an old verdict must not hold it out */
    }
    if (!n)
        return;
    p->probes = calloc(n, sizeof(*p->probes));
    if (!p->probes) {
        CUSTOS_ERROR("health checks: out of memory; backends are not probed");
        return;
    }
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const custos_backend_config_t *b = &cfg->backends[i];
        if (!b->hc_enabled)
            continue;
        custos_backend_health_t *h = custos_health_get(p->health, b->name);
        if (!h)
            continue;
        probe_t *pr = &p->probes[p->n++];
        pr->owner = p;
        pr->b = b;
        pr->h = h;
        custos_timer_init(&pr->timer, probe_fire, pr);
        /* spread the first probes over the interval so that many backends are not probed in one burst */
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
            r = (uint32_t)(i * 7919u);
        custos_timer_start(p->loop, &pr->timer, r % (b->hc_interval_ms / 4 + 1));
    }
}

static void on_config(custos_loop_t *loop, void *arg)
{
    (void)arg;
    custos_prober_t *p = custos_loop_get_data(loop);
    pthread_mutex_lock(&p->pending_mu);
    custos_config_t *cfg = p->pending;
    p->pending = NULL;
    pthread_mutex_unlock(&p->pending_mu);
    if (cfg)
        apply_config(p, cfg);
}

static void *prober_main(void *arg)
{
    custos_prober_t *p = arg;
    pthread_setname_np(pthread_self(), "health-probe");
    int rc = custos_loop_run(p->loop);
    if (rc < 0)
        CUSTOS_ERROR("health checks: event loop failed: %s", custos_strerror(rc));
    return NULL;
}

int custos_prober_start(custos_health_t *h, custos_config_t *cfg, custos_prober_t **out)
{
    custos_prober_t *p = calloc(1, sizeof(*p));
    if (!p)
        return CUSTOS_ENOMEM;
    p->health = h;
    pthread_mutex_init(&p->pending_mu, NULL);
    int rc = custos_loop_new(&p->loop);
    if (rc == 0)
        rc = custos_upstream_new(p->loop, NULL, &p->up);
    if (rc < 0) {
        custos_prober_stop(p);
        return rc;
    }
    custos_loop_set_data(p->loop, p);
    apply_config(p, custos_config_ref(cfg));
    if (pthread_create(&p->thread, NULL, prober_main, p) != 0) {
        custos_prober_stop(p);
        return CUSTOS_ENOMEM;
    }
    p->started = true;
    *out = p;
    return 0;
}

void custos_prober_set_config(custos_prober_t *p, custos_config_t *cfg)
{
    if (!p)
        return;
    /* the newest config wins; a post that finds nothing pending (already applied) does nothing */
    pthread_mutex_lock(&p->pending_mu);
    custos_config_t *old = p->pending;
    p->pending = custos_config_ref(cfg);
    pthread_mutex_unlock(&p->pending_mu);
    custos_config_unref(old);
    if (custos_loop_post(p->loop, on_config, NULL) < 0)
        CUSTOS_ERROR("health checks: cannot apply the new configuration (out of memory)");
}

void custos_prober_stop(custos_prober_t *p)
{
    if (!p)
        return;
    if (p->started) {
        custos_loop_stop(p->loop);
        pthread_join(p->thread, NULL);
    }
    if (p->loop)
        clear_probes(p);
    if (p->up)
        custos_upstream_free(p->up);
    if (p->loop)
        custos_loop_free(p->loop);
    custos_config_unref(p->pending);
    pthread_mutex_destroy(&p->pending_mu);
    free(p);
}
