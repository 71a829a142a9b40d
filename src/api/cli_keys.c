/* SPDX-License-Identifier: Apache-2.0
 * `custos keys create|list|revoke`: API keys in the store named by the configuration (storage),
 * or by --db PATH. The key is printed once, alone on stdout; only its SHA-256 is stored. */
#include "api/admin.h"
#include "audit/govlog.h"
#include "auth/keystore.h"
#include "config/config.h"
#include "util/err.h"
#include "util/time.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr, "usage:\n"
                    "  custos keys create (-c FILE | --db PATH) --principal ID --role ROLE[,ROLE...]\n"
                    "                     [--scope / | /deployments/NAME] [--expires-in DAYS] [--name NAME]\n"
                    "  custos keys list   (-c FILE | --db PATH)\n"
                    "  custos keys revoke (-c FILE | --db PATH) ID\n"
                    "roles: inference.user, contributor, reviewer, auditor, admin. A running custos picks up\n"
                    "changes made here within storage.poll_interval_ms (default 2 s) or on SIGHUP (changes made\n"
                    "through the admin API apply at once on that process).\n");
    return 2;
}

static void roles_text(unsigned roles, char *out, size_t n)
{
    out[0] = 0;
    for (unsigned bit = 1; bit <= CUSTOS_ROLE_ADMIN; bit <<= 1) {
        if (!(roles & bit))
            continue;
        if (out[0])
            strncat(out, ",", n - strlen(out) - 1);
        strncat(out, custos_config_role_name(bit), n - strlen(out) - 1);
    }
}

static int print_key(void *ud, const custos_key_record_t *r)
{
    (void)ud;
    char roles[96], created[32], expires[32];
    roles_text(r->roles, roles, sizeof(roles));
    custos_fmt_utc(r->created_s, created, sizeof(created));
    custos_fmt_utc(r->expires_s, expires, sizeof(expires));
    const char *status = r->revoked_s                                            ? "revoked"
                         : (r->expires_s && (int64_t)time(NULL) >= r->expires_s) ? "expired"
                                                                                 : "active";
    printf("%-20s  %-20s  %-24s  %-28s  %-24s  %s  %s  %s\n", r->id, r->name, r->principal, roles, r->scope, created,
           expires, status);
    return 0;
}

/* Parses "a,b,c" role names into a set; 0 on any unknown name. */
static unsigned parse_roles(const char *s)
{
    unsigned roles = 0;
    char buf[256];
    if (strlen(s) >= sizeof(buf))
        return 0;
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned r = custos_config_role_parse(t);
        if (!r)
            return 0;
        roles |= r;
    }
    return roles;
}

/* Store commit hook: the governance record is written inside the store transaction (ud = action name). */
static int cli_gov_hook(void *ud, const char *id)
{
    int rc = custos_governance_event("cli", (const char *)ud, id, NULL);
    if (rc < 0)
        fprintf(stderr, "custos keys: the change could not be recorded in the governance log (%s); rolled back\n",
                custos_strerror(rc));
    return rc;
}

/* The store named by cfg (either driver) or, without a configuration, the SQLite file db. */
static int open_ks(const custos_config_t *cfg, const char *db, bool create, custos_keystore_t **ks)
{
    if (cfg)
        return custos_keystore_open_config(&cfg->storage, create, ks, NULL, 0);
    return custos_keystore_open(db, create, ks);
}

int custos_keys_cli(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1], *cfgpath = NULL, *db = NULL, *principal = NULL, *roles_s = NULL, *scope = NULL,
               *name = NULL, *id = NULL;
    long days = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!a)
            break;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && v)
            cfgpath = argv[++i];
        else if (strcmp(a, "--db") == 0 && v)
            db = argv[++i];
        else if (strcmp(a, "--principal") == 0 && v)
            principal = argv[++i];
        else if (strcmp(a, "--role") == 0 && v)
            roles_s = argv[++i];
        else if (strcmp(a, "--scope") == 0 && v)
            scope = argv[++i];
        else if (strcmp(a, "--name") == 0 && v)
            name = argv[++i];
        else if (strcmp(a, "--expires-in") == 0 && v) {
            char *end = NULL;
            days = strtol(argv[++i], &end, 10);
            if (!end || *end || days < 1 || days > 36500) {
                fprintf(stderr, "custos keys: --expires-in takes a number of days from 1 to 36500\n");
                return 2;
            }
        } else if (a[0] != '-' && !id)
            id = a;
        else {
            fprintf(stderr, "custos keys: unknown or incomplete argument '%s'\n", a);
            return usage();
        }
    }
    if (!cfgpath && !db)
        cfgpath = getenv("CUSTOS_CONFIG");
    if (!cfgpath && !db) {
        fprintf(stderr, "custos keys: -c FILE (or --db PATH) is required\n");
        return 2;
    }
    custos_config_t *cfg = NULL;
    bool govlog = false;
    if (!db) {
        char err[1024];
        if (custos_config_load_file(cfgpath, &cfg, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        db = cfg->storage.driver == CUSTOS_STORAGE_POSTGRES ? "postgres store" : cfg->storage.path;
        /* Key changes are governance events: append them to the same log the server writes (appends are locked
         * per record, so this is safe while custos is serving). A change that cannot be recorded is rolled back. */
        if (strcmp(sub, "list") != 0) {
            int grc = custos_govlog_open_global(cfg->diagnostics.governance_log);
            if (grc < 0) {
                fprintf(stderr, "custos keys: governance log %s: %s\n", cfg->diagnostics.governance_log,
                        custos_strerror(grc));
                custos_config_unref(cfg);
                return 1;
            }
            govlog = true;
        }
    }
    int status = 1, rc;
    custos_keystore_t *ks = NULL;
    if (strcmp(sub, "create") == 0) {
        unsigned roles = roles_s ? parse_roles(roles_s) : 0;
        if (!principal || !roles || id) {
            fprintf(stderr, "custos keys create: --principal and --role (known role names) are required\n");
            status = usage();
            goto out;
        }
        if (scope && !custos_config_scope_valid(scope)) {
            fprintf(stderr, "custos keys create: --scope must be / or /deployments/NAME\n");
            status = 2;
            goto out;
        }
        custos_key_spec_t spec = {name, principal, roles, scope, (int64_t)days * 86400};
        char key[CUSTOS_KEY_TEXT_LEN + 1];
        custos_key_record_t rec;
        rc = open_ks(cfg, db, true, &ks);
        if (rc == 0)
            rc = custos_keystore_key_create(ks, &spec, (int64_t)time(NULL), govlog ? cli_gov_hook : NULL,
                                            (void *)"key.create", key, &rec);
        if (rc == CUSTOS_EINVAL) {
            fprintf(stderr, "custos keys create: invalid principal or name (name: [A-Za-z0-9._-]{1,64})\n");
            status = 2;
            goto out;
        }
        if (rc != 0) {
            fprintf(stderr, "custos keys create: %s: %s (%s)\n", db, custos_strerror(rc), custos_keystore_errmsg(ks));
            goto out;
        }
        printf("%s\n", key);
        fflush(stdout);
        OPENSSL_cleanse(key, sizeof(key));
        char rs[96], exp[32];
        roles_text(rec.roles, rs, sizeof(rs));
        custos_fmt_utc(rec.expires_s, exp, sizeof(exp));
        fprintf(stderr,
                "created key %s (name %s, principal %s, roles %s, scope %s, expires %s). The key above is shown "
                "only once.\n",
                rec.id, rec.name, rec.principal, rs, rec.scope, exp);
        status = 0;
    } else if (strcmp(sub, "list") == 0) {
        rc = open_ks(cfg, db, false, &ks);
        if (rc == CUSTOS_ENOTFOUND) {
            status = 0; /* no store yet: no keys */
            goto out;
        }
        if (rc == 0)
            rc = custos_keystore_key_list(ks, print_key, NULL);
        if (rc != 0) {
            fprintf(stderr, "custos keys list: %s: %s (%s)\n", db, custos_strerror(rc), custos_keystore_errmsg(ks));
            goto out;
        }
        status = 0;
    } else if (strcmp(sub, "revoke") == 0) {
        if (!id) {
            status = usage();
            goto out;
        }
        rc = open_ks(cfg, db, false, &ks);
        if (rc == 0)
            rc = custos_keystore_key_revoke(ks, id, (int64_t)time(NULL), govlog ? cli_gov_hook : NULL,
                                            (void *)"key.revoke");
        if (rc == CUSTOS_ENOTFOUND) {
            fprintf(stderr, "custos keys revoke: no active key %s\n", id);
            goto out;
        }
        if (rc != 0) {
            fprintf(stderr, "custos keys revoke: %s: %s (%s)\n", db, custos_strerror(rc), custos_keystore_errmsg(ks));
            goto out;
        }
        fprintf(stderr,
                "revoked %s (running custos processes apply it within storage.poll_interval_ms, or on SIGHUP)\n", id);
        status = 0;
    } else {
        status = usage();
    }
out:
    custos_keystore_close(ks);
    if (govlog)
        custos_govlog_close_global();
    custos_config_unref(cfg);
    return status;
}
