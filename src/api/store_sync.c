/* SPDX-License-Identifier: Apache-2.0
 * Start-up store/KEK check and the store watcher thread (store_sync.h). */
#include "api/store_sync.h"
#include "api/authn.h"
#include "api/contentsafety.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/err.h"
#include "util/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PURGE_EVERY_S 3600

static pthread_t thr;
static bool running, stop_flag;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int64_t initial_gen = -1; /* change counter read before the first identity snapshot was built */

static const char *where(const custos_storage_config_t *sc)
{
    return sc->driver == CUSTOS_STORAGE_POSTGRES ? "postgres" : (sc->path ? sc->path : "?");
}

/* Retention at the store level: none deletes all stored content, {days: N} what is older. */
static void apply_retention(const custos_config_t *cfg, custos_store_t *st)
{
    int64_t n = 0;
    int64_t age = cfg->retention.content_none ? -1 : cfg->retention.content_days * 86400;
    int rc = custos_vault_purge(st, CUSTOS_VAULT_NS_CONTENT, (int64_t)time(NULL), age, &n);
    if (rc != 0)
        CUSTOS_ERROR("retention: purge failed: %s (%s)", custos_strerror(rc), custos_store_errmsg(st));
    else if (n > 0)
        CUSTOS_INFO("retention: purged %lld stored records", (long long)n);
}

int custos_store_sync_check(const custos_config_t *cfg, char *err, size_t errlen)
{
    custos_store_t *st = NULL;
    custos_vault_t *v = NULL;
    char e[512] = "";
    int rc = custos_store_open_config(&cfg->storage, true, &st, e, sizeof(e));
    if (rc != 0) {
        snprintf(err, errlen, "storage %s: %s (%s)", where(&cfg->storage), e, custos_strerror(rc));
        return rc;
    }
    if ((rc = custos_vault_open(&cfg->storage, st, &v, e, sizeof(e))) != 0) {
        snprintf(err, errlen, "encryption key (%s provider): %s; custos does not start without its key (docs/keys.md)",
                 cfg->storage.kek_provider == CUSTOS_KEK_PKCS11 ? "pkcs11" : "local", e);
        custos_store_close(st);
        return rc;
    }
    CUSTOS_INFO("store: %s, schema %lld, key version %u (%s)%s", custos_store_driver_name(custos_store_driver(st)),
                (long long)custos_store_schema_latest(), custos_vault_current(v),
                cfg->storage.kek_provider == CUSTOS_KEK_PKCS11 ? "pkcs11" : "local",
                custos_crypto_init() ? "" : "; secure heap not mlocked (RLIMIT_MEMLOCK)");
    apply_retention(cfg, st);
    /* read before the first snapshot is built: a change in between makes the watcher rebuild once more */
    if (custos_store_generation(st, &initial_gen) != 0)
        initial_gen = -1;
    custos_vault_close(v);
    custos_store_close(st);
    return 0;
}

static custos_config_t *current_cfg(custos_gateway_t *gw)
{
    pthread_mutex_lock(&gw->ident_lock);
    custos_config_t *c = custos_config_ref(gw->cfg);
    pthread_mutex_unlock(&gw->ident_lock);
    return c;
}

static void *watch(void *arg)
{
    custos_gateway_t *gw = arg;
    pthread_setname_np(pthread_self(), "store-sync");
    custos_store_t *st = NULL;
    int64_t last = initial_gen;
    time_t last_purge = time(NULL);
    bool failing = false;
    ino_t ino = 0;
    for (;;) {
        custos_config_t *cfg = current_cfg(gw);
        int64_t ms = cfg->storage.poll_interval_ms > 0 ? cfg->storage.poll_interval_ms : 60000;
        if (cfg->storage.poll_interval_ms > 0) {
            char e[256] = "";
            int rc = 0;
            struct stat sb;
            /* SQLite: a deleted or replaced database file is an operator error to report, not an empty store */
            if (cfg->storage.driver == CUSTOS_STORAGE_SQLITE && cfg->storage.path) {
                if (stat(cfg->storage.path, &sb) != 0) {
                    snprintf(e, sizeof(e), "the database file is gone (deleted?); restore it or restart custos");
                    rc = CUSTOS_ENOTFOUND;
                } else if (st && sb.st_ino != ino) {
                    snprintf(e, sizeof(e), "the database file was replaced; reopening it");
                    rc = CUSTOS_EIO;
                }
            }
            if (rc == 0 && !st && (rc = custos_store_open_config(&cfg->storage, false, &st, e, sizeof(e))) == 0)
                ino = stat(cfg->storage.path ? cfg->storage.path : "/", &sb) == 0 ? sb.st_ino : 0;
            int64_t gen = -1;
            if (rc == 0)
                rc = custos_store_generation(st, &gen);
            if (rc != 0) {
                if (!failing)
                    CUSTOS_ERROR("store watcher: storage %s: %s (%s); keeping the current keys and role assignments",
                                 where(&cfg->storage), custos_strerror(rc), e[0] || !st ? e : custos_store_errmsg(st));
                failing = true;
                custos_store_close(st); /* reconnect next time */
                st = NULL;
            } else {
                if (failing)
                    CUSTOS_INFO("store watcher: storage %s reachable again", where(&cfg->storage));
                failing = false;
                if (last >= 0 && gen != last)
                    custos_gateway_identity_reload(gw, NULL);
                last = gen;
                /* blocklists have their own counter: a key change does not recompile them */
                int brc = custos_contentsafety_store_poll(gw, st);
                if (brc != 0)
                    CUSTOS_WARN("store watcher: cannot read the blocklists version: %s (%s)", custos_strerror(brc),
                                custos_store_errmsg(st));
            }
        }
        if (time(NULL) - last_purge >= PURGE_EVERY_S) {
            last_purge = time(NULL);
            custos_store_t *ps = NULL;
            if (custos_store_open_config(&cfg->storage, false, &ps, NULL, 0) == 0)
                apply_retention(cfg, ps);
            custos_store_close(ps);
        }
        custos_config_unref(cfg);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&mu);
        while (!stop_flag && pthread_cond_timedwait(&cv, &mu, &ts) == 0)
            ;
        bool stop = stop_flag;
        pthread_mutex_unlock(&mu);
        if (stop)
            break;
    }
    custos_store_close(st);
    return NULL;
}

int custos_store_sync_start(custos_gateway_t *gw)
{
    pthread_mutex_lock(&mu);
    stop_flag = false;
    pthread_mutex_unlock(&mu);
    if (pthread_create(&thr, NULL, watch, gw) != 0)
        return CUSTOS_ENOMEM;
    running = true;
    return 0;
}

void custos_store_sync_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&mu);
    stop_flag = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thr, NULL);
    running = false;
}
