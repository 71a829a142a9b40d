/* SPDX-License-Identifier: Apache-2.0
 * `custos kek list|rotate|rewrap|destroy` (key-encryption-key versions, docs/keys.md) and `custos purge`
 * (retention.content now). Every change is a governance event when the configuration names a log. */
#include "api/cli_store.h"
#include "audit/govlog.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/err.h"
#include "util/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr,
            "usage:\n"
            "  custos kek list    -c FILE             key versions, their state and how many records each wraps\n"
            "  custos kek rotate  -c FILE             new key version for new writes\n"
            "  custos kek rewrap  -c FILE             re-wrap every data key under the current version\n"
            "  custos kek destroy -c FILE VERSION [--yes]\n"
            "                                         crypto-shred VERSION (without --yes: say what it would do)\n"
            "  custos purge -c FILE                   apply retention.content now\n"
            "  custos secrets put -c FILE NAME        store the secret read from stdin, sealed\n"
            "  custos secrets list -c FILE            names of stored secrets (never their values)\n"
            "  custos secrets delete -c FILE NAME\n"
            "See docs/keys.md.\n");
    return 2;
}

static int count_row(void *ud, const custos_sv_t *c, size_t n)
{
    if (n == 1 && c[0].type == CUSTOS_SV_INT)
        *(int64_t *)ud = c[0].i;
    return 0;
}

static int print_version(void *ud, const custos_kek_version_info_t *i)
{
    (void)ud;
    char c[32], d[32];
    custos_fmt_utc(i->created_s, c, sizeof(c));
    custos_fmt_utc(i->destroyed_s, d, sizeof(d));
    printf("%-8u %-8s %-10s %-8s %-10lld %-20s %-20s %s\n", i->version, i->current ? "current" : "", i->state,
           i->provider, (long long)i->records, c, d, i->label);
    return 0;
}

typedef struct {
    custos_config_t *cfg;
    custos_store_t *st;
    custos_vault_t *v;
    bool govlog;
} ctx_t;

static void ctx_close(ctx_t *c)
{
    custos_vault_close(c->v);
    custos_store_close(c->st);
    if (c->govlog)
        custos_govlog_close_global();
    custos_config_unref(c->cfg);
}

/* Loads the configuration, opens the store (and the vault when need_key) and the governance log. */
static int ctx_open(const char *cmd, const char *cfgpath, bool need_key, bool govlog, ctx_t *c)
{
    char err[1024];
    memset(c, 0, sizeof(*c));
    if (custos_config_load_file(cfgpath, &c->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = custos_store_open_config(&c->cfg->storage, true, &c->st, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "custos %s: storage %s: %s (%s)\n", cmd,
                c->cfg->storage.driver == CUSTOS_STORAGE_POSTGRES ? "(postgres)" : c->cfg->storage.path, err,
                custos_strerror(rc));
        return 1;
    }
    if (need_key && custos_vault_open(&c->cfg->storage, c->st, &c->v, err, sizeof(err)) != 0) {
        fprintf(stderr, "custos %s: encryption key: %s\n", cmd, err);
        return 1;
    }
    if (govlog) {
        rc = custos_govlog_open_global(c->cfg->diagnostics.governance_log);
        if (rc < 0) {
            fprintf(stderr, "custos %s: governance log %s: %s\n", cmd, c->cfg->diagnostics.governance_log,
                    custos_strerror(rc));
            return 1;
        }
        c->govlog = true;
    }
    return 0;
}

static void gov(const char *action, const char *target, const char *details)
{
    int rc = custos_governance_event("cli", action, target, details);
    if (rc < 0)
        fprintf(stderr, "warning: %s could not be recorded in the governance log: %s\n", action, custos_strerror(rc));
}

int custos_kek_cli(int argc, char **argv)
{
    /* argv[0] = "kek", argv[1] = subcommand */
    if (argc < 2)
        return usage();
    const char *sub = argv[1], *cfgpath = NULL, *arg = NULL;
    bool yes = false;
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            cfgpath = argv[++i];
        else if (strcmp(argv[i], "--yes") == 0)
            yes = true;
        else if (argv[i][0] != '-' && !arg)
            arg = argv[i];
        else
            return usage();
    }
    if (!cfgpath)
        return usage();
    bool list = strcmp(sub, "list") == 0, rotate = strcmp(sub, "rotate") == 0, rewrap = strcmp(sub, "rewrap") == 0,
         destroy = strcmp(sub, "destroy") == 0;
    if (!(list || rotate || rewrap || destroy) || (destroy != (arg != NULL)))
        return usage();
    uint32_t ver = 0;
    if (destroy) {
        char *end = NULL;
        unsigned long x = strtoul(arg, &end, 10);
        if (!end || *end || x == 0 || x > CUSTOS_KEK_MAX_VERSION) {
            fprintf(stderr, "custos kek destroy: VERSION must be a key version number (see custos kek list)\n");
            return 2;
        }
        ver = (uint32_t)x;
    }
    ctx_t c;
    char err[600] = "", details[160];
    int status = 1, rc;
    if (ctx_open("kek", cfgpath, true, !list && !(destroy && !yes), &c) != 0)
        goto out;
    if (list) {
        printf("%-8s %-8s %-10s %-8s %-10s %-20s %-20s %s\n", "VERSION", "", "STATE", "PROVIDER", "RECORDS", "CREATED",
               "DESTROYED", "KEY");
        rc = custos_vault_versions(c.v, print_version, NULL);
        if (rc != 0) {
            fprintf(stderr, "custos kek list: %s (%s)\n", custos_strerror(rc), custos_store_errmsg(c.st));
            goto out;
        }
    } else if (rotate) {
        uint32_t nv = 0;
        if (custos_vault_rotate(c.v, (int64_t)time(NULL), &nv, err, sizeof(err)) != 0) {
            fprintf(stderr, "custos kek rotate: %s\n", err);
            goto out;
        }
        snprintf(details, sizeof(details), "{\"version\":%u}", nv);
        gov("kek.rotate", "kek", details);
        printf("key version %u is current; new writes use it. Run `custos kek rewrap` to move existing data keys "
               "to it.\n",
               nv);
    } else if (rewrap) {
        int64_t n = 0, failed = 0;
        rc = custos_vault_rewrap(c.v, &n, &failed);
        snprintf(details, sizeof(details), "{\"version\":%u,\"records\":%lld,\"failed\":%lld}",
                 custos_vault_current(c.v), (long long)n, (long long)failed);
        gov("kek.rewrap", "kek", details);
        if (rc != 0) {
            fprintf(stderr, "custos kek rewrap: %s (%s); %lld records re-wrapped before the error\n",
                    custos_strerror(rc), custos_store_errmsg(c.st), (long long)n);
            goto out;
        }
        printf("re-wrapped %lld records under key version %u", (long long)n, custos_vault_current(c.v));
        if (failed)
            printf("; %lld records could not be unwrapped (tampered, or their key is gone) and were left as they are",
                   (long long)failed);
        printf("\n");
        if (failed)
            goto out;
    } else {
        if (!yes) {
            int64_t n = -1;
            custos_sv_t p = custos_sv_int(ver);
            (void)custos_store_exec(c.st, "SELECT COUNT(*) FROM sealed WHERE kek_version = ? AND wrapped IS NOT NULL",
                                    &p, 1, count_row, &n, NULL);
            fprintf(stderr,
                    "custos kek destroy: this makes the %lld records under key version %u unreadable, for good.\n"
                    "Run `custos kek rewrap` first to keep them, and repeat with --yes to destroy the version.\n",
                    (long long)n, ver);
            status = 2;
            goto out;
        }
        int64_t n = 0;
        rc = custos_vault_destroy(c.v, ver, (int64_t)time(NULL), &n, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "custos kek destroy: %s\n", err);
            goto out;
        }
        snprintf(details, sizeof(details), "{\"version\":%u,\"records\":%lld}", ver, (long long)n);
        gov("kek.destroy", "kek", details);
        printf("destroyed key version %u: %lld records are now unreadable\n", ver, (long long)n);
    }
    status = 0;
out:
    ctx_close(&c);
    return status;
}

int custos_purge_cli(int argc, char **argv)
{
    const char *cfgpath = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            cfgpath = argv[++i];
        else
            return usage();
    }
    if (!cfgpath)
        return usage();
    ctx_t c;
    int status = 1;
    if (ctx_open("purge", cfgpath, false, true, &c) != 0)
        goto out;
    int64_t n = 0;
    const custos_retention_config_t *r = &c.cfg->retention;
    int rc = custos_vault_purge(c.st, CUSTOS_VAULT_NS_CONTENT, (int64_t)time(NULL),
                                r->content_none ? -1 : r->content_days * 86400, &n);
    if (rc != 0) {
        fprintf(stderr, "custos purge: %s (%s)\n", custos_strerror(rc), custos_store_errmsg(c.st));
        goto out;
    }
    char details[96];
    snprintf(details, sizeof(details), "{\"records\":%lld}", (long long)n);
    gov("retention.purge", "content", details);
    if (r->content_none)
        printf("purged %lld records (retention.content: none)\n", (long long)n);
    else
        printf("purged %lld records older than %lld days\n", (long long)n, (long long)r->content_days);
    status = 0;
out:
    ctx_close(&c);
    return status;
}

/* ---------- secrets sealed in the store ---------- */

#define SECRET_MAX 16384

static bool valid_secret_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

int custos_store_secret_resolve(const custos_storage_config_t *sc, const char *name, char **out, size_t *len, char *err,
                                size_t errlen)
{
    custos_store_t *st = NULL;
    custos_vault_t *v = NULL;
    unsigned char *val = NULL;
    size_t n = 0;
    char e[512] = "";
    *out = NULL;
    *len = 0;
    int rc = custos_store_open_config(sc, false, &st, e, sizeof(e));
    if (rc == CUSTOS_ENOTFOUND) {
        snprintf(err, errlen, "no secret '%s' in the store (there is no store yet; see custos secrets put)", name);
        return rc;
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot open the store: %s", e);
        return rc;
    }
    if ((rc = custos_vault_open(sc, st, &v, e, sizeof(e))) != 0) {
        snprintf(err, errlen, "encryption key: %s", e);
        goto out;
    }
    rc = custos_vault_get(v, CUSTOS_VAULT_NS_SECRET, name, &val, &n);
    if (rc == CUSTOS_ENOTFOUND)
        snprintf(err, errlen, "no secret '%s' in the store (see custos secrets put)", name);
    else if (rc != 0)
        snprintf(err, errlen, "secret '%s' cannot be unsealed: %s", name, custos_strerror(rc));
    else {
        *out = (char *)val; /* NUL-terminated by custos_vault_get */
        *len = n;
    }
out:
    custos_vault_close(v);
    custos_store_close(st);
    return rc;
}

int custos_store_secret_placeholder(const custos_storage_config_t *sc, const char *name, char **out, size_t *len,
                                    char *err, size_t errlen)
{
    (void)sc;
    (void)name;
    (void)err;
    (void)errlen;
    *out = strdup("unresolved-store-secret");
    *len = *out ? strlen(*out) : 0;
    return *out ? 0 : CUSTOS_ENOMEM;
}

typedef struct {
    int n;
} list_ctx_t;

static int secret_row(void *ud, const custos_sv_t *c, size_t n)
{
    list_ctx_t *x = ud;
    if (n != 3 || c[0].type != CUSTOS_SV_TEXT)
        return 0;
    char t[32];
    custos_fmt_utc(c[1].i, t, sizeof(t));
    printf("%-40s %-20s %lld\n", (const char *)c[0].p, t, (long long)c[2].i);
    x->n++;
    return 0;
}

int custos_secrets_cli(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1], *cfgpath = NULL, *name = NULL;
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            cfgpath = argv[++i];
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            return usage();
    }
    bool put = strcmp(sub, "put") == 0, list = strcmp(sub, "list") == 0, del = strcmp(sub, "delete") == 0;
    if (!cfgpath || !(put || list || del) || (list == (name != NULL)))
        return usage();
    if (name && !valid_secret_name(name)) {
        fprintf(stderr, "custos secrets: NAME must match [A-Za-z0-9._-]{1,64}\n");
        return 2;
    }
    ctx_t c;
    int status = 1, rc;
    char *buf = NULL;
    if (ctx_open("secrets", cfgpath, !list, !list, &c) != 0)
        goto out;
    if (list) {
        list_ctx_t x = {0};
        custos_sv_t p = custos_sv_text(CUSTOS_VAULT_NS_SECRET);
        rc = custos_store_exec(c.st, "SELECT id, created, kek_version FROM sealed WHERE ns = ? ORDER BY id", &p, 1,
                               secret_row, &x, NULL);
        if (rc != 0) {
            fprintf(stderr, "custos secrets list: %s (%s)\n", custos_strerror(rc), custos_store_errmsg(c.st));
            goto out;
        }
    } else if (put) {
        buf = custos_secure_alloc(SECRET_MAX + 2);
        if (!buf)
            goto out;
        size_t n = fread(buf, 1, SECRET_MAX + 1, stdin);
        if (n > SECRET_MAX) {
            fprintf(stderr, "custos secrets put: the secret is longer than %d bytes\n", SECRET_MAX);
            goto out;
        }
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        if (n == 0) {
            fprintf(stderr, "custos secrets put: read an empty secret from stdin\n");
            goto out;
        }
        rc = custos_vault_put(c.v, CUSTOS_VAULT_NS_SECRET, name, buf, n, (int64_t)time(NULL), 0);
        if (rc != 0) {
            fprintf(stderr, "custos secrets put: %s (%s)\n", custos_strerror(rc), custos_store_errmsg(c.st));
            goto out;
        }
        gov("secret.put", name, NULL);
        fprintf(stderr, "stored secret %s (%zu bytes, sealed under key version %u)\n", name, n,
                custos_vault_current(c.v));
    } else {
        rc = custos_vault_delete(c.v, CUSTOS_VAULT_NS_SECRET, name);
        if (rc != 0) {
            fprintf(stderr, "custos secrets delete: %s: %s\n", name, custos_strerror(rc));
            goto out;
        }
        gov("secret.delete", name, NULL);
        fprintf(stderr, "deleted secret %s\n", name);
    }
    status = 0;
out:
    custos_secure_free(buf, SECRET_MAX + 2);
    ctx_close(&c);
    return status;
}
