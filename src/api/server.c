/* SPDX-License-Identifier: Apache-2.0
 * Process runtime: listeners, worker threads (one epoll loop each), signals.
 *   SIGHUP  → reload the config file atomically (an invalid file keeps the running snapshot) and the
 *             listeners' TLS certificates; requests in flight finish on the snapshot they started with.
 *   SIGTERM/SIGINT → stop accepting, let requests finish up to server.drain_timeout_ms, exit. */
#include "api/gateway.h"
#include "api/authn.h"
#include "api/contentsafety.h"
#include "api/probe.h"
#include "api/store_sync.h"
#include "auth/identity.h"
#include "auth/jwt.h"
#include "audit/audit.h"
#include "audit/govlog.h"
#include "net/listener.h"
#include "net/tls.h"
#include "quota/quota.h"
#include "route/balance.h"
#include "route/health.h"
#include "guard/guard.h"
#include "safety/safety.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define PUBLISH_INTERVAL_MS 1000

typedef struct listener_rt {
    custos_addr_t addr;
    custos_tls_t *tls;
    int shared_fd; /* unix sockets: one fd polled by every worker; -1 for TCP */
    int *fds;      /* TCP: one SO_REUSEPORT socket per worker */
} listener_rt_t;

static void limits_from_config(const custos_config_t *c, custos_http_limits_t *l)
{
    custos_http_limits_default(l);
    l->max_header_bytes = c->limits.max_header_bytes;
    l->max_headers = c->limits.max_headers;
    l->max_body_bytes = c->limits.max_body_bytes;
    l->max_url_bytes = c->limits.max_url_bytes;
    l->header_timeout_ms = c->limits.header_timeout_ms;
    l->body_timeout_ms = c->limits.body_timeout_ms;
    l->idle_timeout_ms = c->limits.idle_timeout_ms;
    l->max_connections = c->limits.max_connections;
}

static void tls_opts_from_config(const custos_tls_config_t *t, custos_tls_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->cert_file = t->cert;
    o->key_file = t->key;
    o->min_version = t->min_version;
    o->ciphers = t->ciphers;
    o->client_ca = t->client_ca; /* mutual TLS when set */
}

/* Publishes this worker's connection counts into its gauge shards (other threads never read
 * worker-private state directly). */
static void publish(custos_loop_t *loop, void *ud)
{
    custos_worker_t *w = ud;
    custos_gateway_metrics_t *m = &w->gw->m;
    int64_t conns = (int64_t)custos_http_server_conn_count(w->http);
    custos_upstream_stats_t us;
    custos_upstream_stats(w->up, &us);
    custos_metric_series_t *s = custos_metrics_series(m->conns, NULL);
    if (s)
        custos_metrics_gauge_add(s, w->idx, conns - w->published_conns);
    w->published_conns = conns;
    s = custos_metrics_series(m->up_conns, NULL);
    if (s)
        custos_metrics_gauge_add(s, w->idx, (int64_t)us.conns_open - w->published_up_conns);
    w->published_up_conns = (int64_t)us.conns_open;
    if (!w->draining)
        custos_timer_start(loop, &w->publish_timer, PUBLISH_INTERVAL_MS);
}

static void *worker_main(void *arg)
{
    custos_worker_t *w = arg;
    char name[16]; /* thread names (top -H, perf): at most 15 bytes */
    snprintf(name, sizeof(name), "worker-%u", w->idx);
    pthread_setname_np(pthread_self(), name);
    custos_timer_init(&w->publish_timer, publish, w);
    custos_timer_start(w->loop, &w->publish_timer, PUBLISH_INTERVAL_MS);
    int rc = custos_loop_run(w->loop);
    if (rc < 0)
        CUSTOS_ERROR("worker %u: event loop failed: %s", w->idx, custos_strerror(rc));
    custos_timer_stop(w->loop, &w->publish_timer);
    custos_json_thread_cleanup();
    return NULL;
}

/* --- messages posted to workers --- */

typedef struct swap_msg {
    custos_worker_t *w;
    custos_config_t *cfg; /* one reference, handed over */
} swap_msg_t;

static void on_swap(custos_loop_t *loop, void *arg)
{
    swap_msg_t *m = arg;
    custos_worker_t *w = m->w;
    custos_config_t *old = w->cfg;
    w->cfg = m->cfg;
    custos_http_limits_t l;
    limits_from_config(w->cfg, &l);
    custos_http_server_set_limits(w->http, &l);
    custos_config_unref(old); /* requests in flight hold their own references */
    free(m);
}

static void on_drained(void *arg)
{
    custos_worker_t *w = arg;
    atomic_fetch_add(&w->gw->drained, 1);
    custos_loop_stop(w->loop);
}

static void on_drain(custos_loop_t *loop, void *arg)
{
    custos_worker_t *w = arg;
    w->draining = true;
    custos_timer_stop(loop, &w->publish_timer);
    custos_http_server_drain(w->http, on_drained, w);
}

static bool listeners_equal(const custos_config_t *a, const custos_config_t *b)
{
    if (a->n_listeners != b->n_listeners)
        return false;
    for (size_t i = 0; i < a->n_listeners; i++) {
        const custos_listener_config_t *x = &a->listeners[i], *y = &b->listeners[i];
        if (strcmp(x->address, y->address) != 0 || (x->tls == NULL) != (y->tls == NULL))
            return false;
    }
    return true;
}

/* Governance record of a reload attempt (metadata only: never the error text, which may quote values). A
 * successful reload is applied only once its record is on disk. */
static int reload_event(const custos_gateway_t *gw, const siginfo_t *si, const char *reason, const custos_config_t *nc)
{
    char details[512], sha[CUSTOS_GOVLOG_HEX + 1];
    if (custos_govlog_file_sha256(gw->config_path, sha) < 0)
        snprintf(sha, sizeof(sha), "unreadable");
    int n = snprintf(details, sizeof(details),
                     "{\"trigger\":\"SIGHUP\",\"sender_pid\":%ld,\"sender_uid\":%ld,"
                     "\"config_sha256\":\"%s\"",
                     si ? (long)si->si_pid : -1L, si ? (long)si->si_uid : -1L, sha);
    if (reason || !nc)
        snprintf(details + n, sizeof(details) - (size_t)n, ",\"reason\":\"%s\"}", reason ? reason : "unknown");
    else
        snprintf(details + n, sizeof(details) - (size_t)n, ",\"deployments\":%zu,\"backends\":%zu}", nc->n_deployments,
                 nc->n_backends);
    int rc =
        custos_governance_event("system", reason ? "config.reload_failed" : "config.reload", gw->config_path, details);
    if (rc < 0)
        CUSTOS_ERROR("reload: cannot record the governance event: %s", custos_strerror(rc));
    return rc;
}

static void reload(custos_gateway_t *gw, listener_rt_t *ls, const siginfo_t *si)
{
    char err[1024];
    custos_config_t *nc = NULL;
    int rc = custos_config_load_file(gw->config_path, &nc, err, sizeof(err));
    if (rc < 0) {
        CUSTOS_ERROR("reload: %s; keeping the running configuration", err);
        reload_event(gw, si, "invalid_config", NULL);
        return;
    }
    if (custos_quota_prepare(gw->quota, nc, err, sizeof(err)) < 0) { /* tokenizers a new quota needs */
        CUSTOS_ERROR("reload: %s; keeping the running configuration", err);
        reload_event(gw, si, "invalid_config", NULL);
        custos_config_unref(nc);
        return;
    }
    if (!listeners_equal(gw->cfg, nc)) {
        CUSTOS_ERROR("reload: listener addresses or TLS on/off changed; that needs a restart. Keeping the running "
                     "configuration");
        reload_event(gw, si, "listeners_changed", NULL);
        custos_config_unref(nc);
        return;
    }
    if (reload_event(gw, si, NULL, nc) < 0) {
        CUSTOS_ERROR("reload: keeping the running configuration (an unrecorded change is not applied)");
        custos_config_unref(nc);
        return;
    }
    /* Certificates: a listener whose new certificate fails to load keeps its old one. */
    for (size_t i = 0; i < nc->n_listeners; i++) {
        if (!ls[i].tls)
            continue;
        custos_tls_opts_t o;
        tls_opts_from_config(nc->listeners[i].tls, &o);
        if (custos_tls_reload(ls[i].tls, &o, err, sizeof(err)) < 0)
            CUSTOS_ERROR("reload: listener %s: %s; keeping its current certificate", nc->listeners[i].address, err);
    }
    custos_log_set_level(nc->server.log_level);
    for (unsigned i = 0; i < gw->nworkers; i++) {
        swap_msg_t *m = malloc(sizeof(*m));
        if (!m)
            continue;
        m->w = &gw->workers[i];
        m->cfg = custos_config_ref(nc);
        if (custos_loop_post(gw->workers[i].loop, on_swap, m) < 0) {
            custos_config_unref(m->cfg);
            free(m);
        }
    }
    /* Request-record sinks: new ones start, removed ones drain and stop, changed ones are replaced without loss. */
    if (custos_audit_config_changed(&gw->cfg->diagnostics, &nc->diagnostics) &&
        custos_audit_reconfigure(gw->audit, nc) < 0)
        CUSTOS_ERROR("reload: some diagnostics sinks could not be applied (see above)");
    custos_gateway_set_config(gw, nc);
    custos_prober_set_config(gw->prober, nc); /* health checks of the new backend set; health state is kept */
    custos_gateway_identity_reload(gw, NULL); /* keys and role assignments: config and store, re-read */
    custos_contentsafety_reload(gw);          /* blocklists: store re-read (changes by other processes) */
    custos_oidc_sync(nc, 0); /* new OIDC issuers / upstream OAuth2 clients: fetched in the background */
    CUSTOS_INFO("reload: configuration %s applied (%zu deployments, %zu backends)", gw->config_path, nc->n_deployments,
                nc->n_backends);
}

static int open_listeners(custos_gateway_t *gw, listener_rt_t *ls, size_t n, unsigned nworkers)
{
    const custos_config_t *c = gw->cfg;
    for (size_t i = 0; i < n; i++) {
        const custos_listener_config_t *lc = &c->listeners[i];
        listener_rt_t *l = &ls[i];
        l->shared_fd = -1;
        int rc = custos_addr_parse(lc->address, &l->addr);
        if (rc < 0) {
            CUSTOS_ERROR("listener %s: bad address", lc->address);
            return rc;
        }
        if (lc->tls) {
            char err[1024];
            custos_tls_opts_t o;
            tls_opts_from_config(lc->tls, &o);
            rc = custos_tls_new(&o, &l->tls, err, sizeof(err));
            if (rc < 0) {
                CUSTOS_ERROR("listener %s: %s", lc->address, err);
                return rc;
            }
        }
        if (l->addr.family == AF_UNIX) {
            rc = custos_listener_open(&l->addr, false, 4096, &l->shared_fd);
        } else {
            l->fds = calloc(nworkers, sizeof(int));
            if (!l->fds)
                return CUSTOS_ENOMEM;
            for (unsigned k = 0; k < nworkers; k++)
                l->fds[k] = -1;
            for (unsigned k = 0; k < nworkers && rc == 0; k++) {
                rc = custos_listener_open(&l->addr, true, 4096, &l->fds[k]);
                /* port 0 (tests): the first socket picks the port, the others join it */
                if (rc == 0 && k == 0 && l->addr.family != AF_UNIX) {
                    int port = custos_listener_port(l->fds[0]);
                    if (l->addr.family == AF_INET)
                        ((struct sockaddr_in *)&l->addr.ss)->sin_port = htons((uint16_t)port);
                    else
                        ((struct sockaddr_in6 *)&l->addr.ss)->sin6_port = htons((uint16_t)port);
                }
            }
        }
        if (rc < 0) {
            CUSTOS_ERROR("listener %s: cannot listen: %s", lc->address, strerror(errno));
            return rc;
        }
        int port = l->addr.family == AF_UNIX ? 0 : custos_listener_port(l->shared_fd >= 0 ? l->shared_fd : l->fds[0]);
        if (l->addr.family == AF_UNIX)
            CUSTOS_INFO("listening on %s (%s)", lc->address, l->tls ? "https" : "http");
        else
            CUSTOS_INFO("listening on %s port %d (%s)", lc->address, port, l->tls ? "https" : "http");
    }
    return 0;
}

static void close_listeners(listener_rt_t *ls, size_t n, unsigned nworkers)
{
    for (size_t i = 0; i < n; i++) {
        if (ls[i].shared_fd >= 0)
            close(ls[i].shared_fd);
        if (ls[i].fds) {
            for (unsigned k = 0; k < nworkers; k++)
                if (ls[i].fds[k] >= 0)
                    close(ls[i].fds[k]);
            free(ls[i].fds);
        }
        if (ls[i].tls)
            custos_tls_free(ls[i].tls);
    }
}

int custos_gateway_serve(const char *config_path)
{
    custos_gateway_t gw;
    memset(&gw, 0, sizeof(gw));
    snprintf(gw.config_path, sizeof(gw.config_path), "%s", config_path);
    gw.started_ms = custos_wall_ms();
    char err[1024];
    int rc = custos_config_load_file(config_path, &gw.cfg, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "custos: %s\n", err);
        return 2;
    }
    custos_log_set_level(gw.cfg->server.log_level);
    /* Governance log (docs/governance-log.md): a torn or tampered log stops start-up (fail closed). */
    if ((rc = custos_govlog_open_global(gw.cfg->diagnostics.governance_log)) < 0) {
        fprintf(stderr, "custos: governance log %s: %s (see docs/governance-log.md)\n",
                gw.cfg->diagnostics.governance_log, custos_strerror(rc));
        custos_config_unref(gw.cfg);
        return 2;
    }
    {
        char details[256], sha[CUSTOS_GOVLOG_HEX + 1];
        if (custos_govlog_file_sha256(config_path, sha) < 0)
            snprintf(sha, sizeof(sha), "unreadable");
        snprintf(details, sizeof(details), "{\"pid\":%ld,\"config_sha256\":\"%s\",\"deployments\":%zu}", (long)getpid(),
                 sha, gw.cfg->n_deployments);
        if ((rc = custos_governance_event("system", "service.start", config_path, details)) < 0) {
            fprintf(stderr, "custos: cannot record service.start in the governance log: %s\n", custos_strerror(rc));
            custos_govlog_close_global();
            custos_config_unref(gw.cfg);
            return 2;
        }
    }

    /* Signals: handled synchronously by the main thread; every worker inherits the blocked mask. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    unsigned nw = gw.cfg->server.workers ? gw.cfg->server.workers : (unsigned)get_nprocs();
    if (nw == 0)
        nw = 1;
    gw.nworkers = nw;
    int status = 1;
    /* Identity snapshot (API keys and role assignments from the config and the store): fail closed when the
     * store cannot be read. */
    /* The store and its encryption key (docs/keys.md): a store that cannot be opened or a key that cannot be
     * reached (wrong HSM PIN, missing key file) stops start-up. */
    if (custos_store_sync_check(gw.cfg, err, sizeof(err)) < 0 ||
        custos_gateway_identity_init(&gw, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos: %s\n", err);
        custos_gateway_identity_dispose(&gw);
        custos_govlog_close_global();
        custos_config_unref(gw.cfg);
        return 2;
    }
    /* Signed checkpoints in the governance log (docs/governance-log.md): its Ed25519 key is sealed in the store. */
    if (custos_govlog_enable_signing(gw.cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos: governance log signing key: %s\n", err);
        custos_gateway_identity_dispose(&gw);
        custos_govlog_close_global();
        custos_config_unref(gw.cfg);
        return 2;
    }
    /* OIDC signing keys and upstream OAuth2 tokens: fetched on a background thread; wait a little for the first
     * ones so that the first requests find them (an unreachable endpoint only delays startup by this much). */
    custos_oidc_sync(gw.cfg, 5000);
    size_t nl = gw.cfg->n_listeners;
    listener_rt_t *ls = calloc(nl, sizeof(*ls));
    gw.workers = calloc(nw, sizeof(*gw.workers));
    if (!ls || !gw.workers || custos_gateway_metrics_init(&gw.m, nw) < 0) {
        fprintf(stderr, "custos: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < nl; i++)
        ls[i].shared_fd = -1;
    if (open_listeners(&gw, ls, nl, nw) < 0)
        goto out;
    /* Safety models (docs/content-filtering.md): loaded once, shared read-only by every worker. A model that
     * cannot be loaded stops start-up: the default policy blocks on the harm filter. */
    {
        custos_safety_opts_t so = {.harm_model = gw.cfg->safety.harm_model,
                                   .shields_model = gw.cfg->safety.shields_model,
                                   .grounded_model = gw.cfg->safety.grounded_model,
                                   .pii_mrn_format = gw.cfg->safety.pii_mrn_format};
        if (custos_safety_new(&so, &gw.safety, err, sizeof(err)) < 0) {
            fprintf(stderr, "custos: safety models: %s\n", err);
            goto out;
        }
    }
    /* Blocklists (docs/content-safety-api.md): compiled from the store, published to every worker. */
    if (custos_contentsafety_init(&gw, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos: %s\n", err);
        goto out;
    }
    /* Request records (docs/diagnostics.md): sinks start before any request; an old spool is replayed first. */
    if (custos_audit_new(gw.cfg, &gw.audit, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos: %s\n", err);
        goto out;
    }

    /* Quotas (quota/quota.h): counters shared by the workers, the tokenizers, the Redis sync thread. */
    {
        custos_quota_opts_t qo = {.nshards = nw, .cfg = &gw.cfg->quotas};
        if (custos_quota_new(&qo, &gw.quota, err, sizeof(err)) < 0 ||
            custos_quota_prepare(gw.quota, gw.cfg, err, sizeof(err)) < 0) {
            fprintf(stderr, "custos: %s\n", err);
            goto out;
        }
    }
    /* External guard models (guard/guard.h): breakers, verdict caches and metrics shared by the workers. */
    if (custos_guard_hub_new(gw.m.reg, nw, &gw.guard) < 0) {
        fprintf(stderr, "custos: out of memory\n");
        goto out;
    }
    /* Backend health (route/health.h), shared by the workers, and its active probes on their own thread. */
    if (custos_health_new(&gw.health) < 0 || custos_prober_start(gw.health, gw.cfg, &gw.prober) < 0) {
        fprintf(stderr, "custos: cannot start health checks\n");
        goto out;
    }
    custos_upstream_opts_t uo;
    custos_upstream_opts_default(&uo);
    uo.pool_max_idle = gw.cfg->upstream.pool_max_idle;
    for (unsigned i = 0; i < nw; i++) {
        custos_worker_t *w = &gw.workers[i];
        w->gw = &gw;
        w->idx = i;
        w->cfg = custos_config_ref(gw.cfg);
        w->ident = custos_idsnap_ref(gw.ident);
        custos_safety_scratch_init(&w->scratch, gw.cfg->safety.max_text_bytes);
        custos_blocklist_scratch_init(&w->bl_scratch);
        custos_http_server_opts_t so;
        memset(&so, 0, sizeof(so));
        limits_from_config(gw.cfg, &so.limits);
        so.on_request = custos_gateway_handle;
        so.ud = w;
        if (custos_loop_new(&w->loop) < 0 || custos_http_server_new(w->loop, &so, &w->http) < 0 ||
            custos_upstream_new(w->loop, &uo, &w->up) < 0) {
            fprintf(stderr, "custos: cannot create worker %u\n", i);
            goto out;
        }
        for (size_t k = 0; k < nl; k++) {
            bool shared = ls[k].shared_fd >= 0;
            int fd = shared ? ls[k].shared_fd : ls[k].fds[i];
            if (custos_http_server_listen(w->http, fd, ls[k].tls, shared) < 0) {
                fprintf(stderr, "custos: cannot watch listener\n");
                goto out;
            }
        }
    }
    for (unsigned i = 0; i < nw; i++) {
        if (pthread_create(&gw.workers[i].thread, NULL, worker_main, &gw.workers[i]) != 0) {
            fprintf(stderr, "custos: cannot start worker threads\n");
            for (unsigned k = 0; k < i; k++) {
                custos_loop_stop(gw.workers[k].loop);
                pthread_join(gw.workers[k].thread, NULL);
            }
            goto out;
        }
    }
    /* after the workers exist: the watcher hands new identity snapshots to them */
    if (custos_store_sync_start(&gw) < 0) /* replicas: store changes reach this process (storage.poll_interval_ms) */
        CUSTOS_ERROR("cannot start the store watcher; store changes apply on SIGHUP only");
    CUSTOS_INFO("custos serving with %u workers, %zu deployments (config %s)", nw, gw.cfg->n_deployments, config_path);

    int sig_stop = 0;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        sig_stop = sig;
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (sig == SIGHUP) {
            CUSTOS_INFO("SIGHUP: reloading %s", config_path);
            reload(&gw, ls, &si);
            continue;
        }
        break;
    }
    CUSTOS_INFO("draining (deadline %u ms)", gw.cfg->server.drain_timeout_ms);
    atomic_store(&gw.draining, true);
    custos_store_sync_stop();
    for (unsigned i = 0; i < nw; i++)
        custos_loop_post(gw.workers[i].loop, on_drain, &gw.workers[i]);
    uint64_t deadline = custos_now_ms() + gw.cfg->server.drain_timeout_ms;
    while (atomic_load(&gw.drained) < nw && custos_now_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000000L};
        /* a second SIGTERM/SIGINT cuts the drain short */
        if (sigtimedwait(&set, NULL, &ts) > 0)
            break;
    }
    unsigned drained = atomic_load(&gw.drained);
    if (drained < nw)
        CUSTOS_WARN("drain deadline passed with %u of %u workers still busy; closing their connections", nw - drained,
                    nw);
    for (unsigned i = 0; i < nw; i++)
        custos_loop_stop(gw.workers[i].loop);
    for (unsigned i = 0; i < nw; i++)
        pthread_join(gw.workers[i].thread, NULL);
    status = 0;
    {
        char details[96];
        snprintf(details, sizeof(details), "{\"signal\":%d,\"drained\":%s}", sig_stop, drained < nw ? "false" : "true");
        int grc = custos_governance_event("system", "service.stop", config_path, details);
        if (grc < 0)
            CUSTOS_ERROR("cannot record service.stop in the governance log: %s", custos_strerror(grc));
    }
    CUSTOS_INFO("stopped");
out:
    if (gw.workers) {
        for (unsigned i = 0; i < nw; i++) {
            custos_worker_t *w = &gw.workers[i];
            if (w->http)
                custos_http_server_free(w->http);
            if (w->up)
                custos_upstream_free(w->up);
            if (w->loop) {
                /* run deferred frees queued by the teardown above */
                custos_loop_free(w->loop);
            }
            custos_route_table_unref(w->rt);
            custos_config_unref(w->cfg);
            custos_idsnap_unref(w->ident);
            custos_safety_scratch_dispose(&w->scratch);
            custos_blocklist_scratch_dispose(&w->bl_scratch);
            custos_blocklist_view_dispose(&w->bl_view);
        }
        free(gw.workers);
    }
    if (ls) {
        close_listeners(ls, nl, nw);
        free(ls);
    }
    custos_audit_free(gw.audit); /* after the workers: delivers or spools every queued record */
    custos_safety_free(gw.safety);
    custos_contentsafety_dispose(&gw);
    custos_quota_free(gw.quota); /* after the workers: no request holds a ticket any more */
    if (gw.m.reg)
        custos_metrics_free(gw.m.reg);
    custos_govlog_close_global();
    custos_prober_stop(gw.prober);
    custos_health_free(gw.health); /* after the workers: requests ending at teardown still report to it */
    /* after the workers: no guard call is in flight */
    custos_guard_hub_free(gw.guard);
    custos_oidc_shutdown();
    custos_store_sync_stop(); /* before the identity lock goes away: the watcher takes it */
    custos_gateway_identity_dispose(&gw);
    custos_config_unref(gw.cfg);
    return status;
}
