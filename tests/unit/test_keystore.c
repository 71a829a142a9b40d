/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for auth/keystore (SQLite API keys and role assignments) and auth/identity (the snapshot the
 * gateway looks keys up in): create, lookup, revoke, expiry, commit hooks, role assignments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/apikey.h"
#include "auth/identity.h"
#include "auth/keystore.h"
#include "config/config.h"
#include "util/err.h"

static char dir[64], db[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/custos-keystore-test-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db, sizeof(db), "%s/custos.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static custos_keystore_t *open_new(void)
{
    unlink(db);
    char p[160];
    snprintf(p, sizeof(p), "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    unlink(p);
    custos_keystore_t *ks = NULL;
    assert_int_equal(custos_keystore_open(db, true, &ks), 0);
    return ks;
}

static void test_open_missing(void **state)
{
    (void)state;
    custos_keystore_t *ks = NULL;
    char p[160];
    snprintf(p, sizeof(p), "%s/nope.db", dir);
    assert_int_equal(custos_keystore_open(p, false, &ks), CUSTOS_ENOTFOUND);
    assert_null(ks);
    assert_int_equal(access(p, F_OK), -1); /* not created */
    assert_int_equal(custos_keystore_open(p, true, &ks), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    custos_keystore_close(ks);
}

static void test_create_lookup(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    custos_key_spec_t spec = {"svc-a", "alice", CUSTOS_ROLE_INFERENCE_USER | CUSTOS_ROLE_AUDITOR, "/deployments/demo",
                              0};
    char key[CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_record_t rec;
    assert_int_equal(custos_keystore_key_create(ks, &spec, 1000, NULL, NULL, key, &rec), 0);
    assert_int_equal(strlen(key), CUSTOS_KEY_TEXT_LEN);
    assert_memory_equal(key, "sk-custos-", 10);
    for (size_t i = 10; i < strlen(key); i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", key[i]));
    assert_string_equal(rec.name, "svc-a");
    assert_string_equal(rec.principal, "alice");
    assert_string_equal(rec.scope, "/deployments/demo");
    assert_int_equal(rec.roles, CUSTOS_ROLE_INFERENCE_USER | CUSTOS_ROLE_AUDITOR);
    assert_int_equal(rec.created_s, 1000);
    assert_int_equal(rec.expires_s, 0);
    assert_memory_equal(rec.id, "key_", 4);
    assert_int_equal(strlen(rec.id), 20);

    /* stored as its digest only */
    unsigned char d[32];
    assert_int_equal(custos_auth_sha256(key, strlen(key), d), 0);
    assert_memory_equal(d, rec.sha256, 32);
    custos_key_record_t got;
    assert_int_equal(custos_keystore_key_find(ks, d, &got), 0);
    assert_string_equal(got.id, rec.id);
    assert_string_equal(got.principal, "alice");
    d[0] ^= 1;
    assert_int_equal(custos_keystore_key_find(ks, d, &got), CUSTOS_ENOTFOUND);

    /* the plaintext appears nowhere in the file */
    FILE *f = fopen(db, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_null(memmem(buf, n, key + 10, 20));

    /* two keys differ; name defaults to the id */
    char key2[CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_spec_t spec2 = {NULL, "bob", CUSTOS_ROLE_ADMIN, NULL, 86400};
    assert_int_equal(custos_keystore_key_create(ks, &spec2, 2000, NULL, NULL, key2, &rec), 0);
    assert_string_not_equal(key, key2);
    assert_string_equal(rec.name, rec.id);
    assert_string_equal(rec.scope, "/");
    assert_int_equal(rec.expires_s, 2000 + 86400);
    custos_keystore_close(ks);
}

static void test_invalid_specs(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    char key[CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_spec_t bad[] = {
        {NULL, NULL, CUSTOS_ROLE_ADMIN, NULL, 0},           /* no principal */
        {NULL, "a", 0, NULL, 0},                            /* no role */
        {NULL, "a", CUSTOS_ROLE_ADMIN, "/deployments/", 0}, /* bad scope */
        {NULL, "a", CUSTOS_ROLE_ADMIN, "/other/x", 0},      /* bad scope */
        {"bad name", "a", CUSTOS_ROLE_ADMIN, NULL, 0},      /* bad name */
        {NULL, "a\nb", CUSTOS_ROLE_ADMIN, NULL, 0},         /* control character */
        {NULL, "a", CUSTOS_ROLE_ADMIN, NULL, -5},           /* negative expiry */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(custos_keystore_key_create(ks, &bad[i], 1, NULL, NULL, key, NULL), CUSTOS_EINVAL);
        assert_int_equal(key[0], 0);
    }
    custos_keystore_close(ks);
}

static int count_keys(void *ud, const custos_key_record_t *r)
{
    (void)r;
    (*(int *)ud)++;
    return 0;
}

static int fail_hook(void *ud, const char *id)
{
    (void)ud;
    assert_non_null(id);
    return CUSTOS_EUNAVAIL;
}

static int record_hook(void *ud, const char *id)
{
    snprintf(ud, CUSTOS_KEYSTORE_ID_LEN, "%s", id);
    return 0;
}

static void test_hooks_commit_or_rollback(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    char key[CUSTOS_KEY_TEXT_LEN + 1], seen[CUSTOS_KEYSTORE_ID_LEN] = "";
    custos_key_spec_t spec = {NULL, "alice", CUSTOS_ROLE_INFERENCE_USER, NULL, 0};
    /* a hook failure (say, the governance log refuses) rolls the key back */
    assert_int_equal(custos_keystore_key_create(ks, &spec, 1, fail_hook, NULL, key, NULL), CUSTOS_EUNAVAIL);
    int n = 0;
    assert_int_equal(custos_keystore_key_list(ks, count_keys, &n), 0);
    assert_int_equal(n, 0);
    custos_key_record_t rec;
    assert_int_equal(custos_keystore_key_create(ks, &spec, 1, record_hook, seen, key, &rec), 0);
    assert_string_equal(seen, rec.id);
    /* a revoke whose hook fails leaves the key active */
    assert_int_equal(custos_keystore_key_revoke(ks, rec.id, 5, fail_hook, NULL), CUSTOS_EUNAVAIL);
    custos_key_record_t got;
    unsigned char d[32];
    custos_auth_sha256(key, strlen(key), d);
    assert_int_equal(custos_keystore_key_find(ks, d, &got), 0);
    assert_int_equal(got.revoked_s, 0);
    custos_keystore_close(ks);
}

static void test_revoke(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    char key[CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_spec_t spec = {NULL, "alice", CUSTOS_ROLE_INFERENCE_USER, NULL, 0};
    custos_key_record_t rec, got;
    assert_int_equal(custos_keystore_key_create(ks, &spec, 1, NULL, NULL, key, &rec), 0);
    assert_int_equal(custos_keystore_key_revoke(ks, rec.id, 77, NULL, NULL), 0);
    assert_int_equal(custos_keystore_key_revoke(ks, rec.id, 78, NULL, NULL), CUSTOS_ENOTFOUND); /* already */
    assert_int_equal(custos_keystore_key_revoke(ks, "key_0000000000000000", 78, NULL, NULL), CUSTOS_ENOTFOUND);
    assert_int_equal(custos_keystore_key_find(ks, rec.sha256, &got), 0);
    assert_int_equal(got.revoked_s, 77);
    int n = 0;
    assert_int_equal(custos_keystore_key_list(ks, count_keys, &n), 0);
    assert_int_equal(n, 1); /* listed, marked revoked */
    custos_keystore_close(ks);
}

static int count_ras(void *ud, const custos_ra_record_t *r)
{
    assert_string_equal(r->subject, "team-a");
    assert_int_equal(r->kind, CUSTOS_RA_GROUP);
    (*(int *)ud)++;
    return 0;
}

static void test_role_assignments(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    custos_ra_record_t r = {.kind = CUSTOS_RA_GROUP, .role = CUSTOS_ROLE_INFERENCE_USER};
    snprintf(r.subject, sizeof(r.subject), "team-a");
    snprintf(r.scope, sizeof(r.scope), "/deployments/demo");
    assert_int_equal(custos_keystore_ra_create(ks, &r, 10, NULL, NULL), 0);
    assert_memory_equal(r.id, "ra_", 3);
    int n = 0;
    assert_int_equal(custos_keystore_ra_list(ks, count_ras, &n), 0);
    assert_int_equal(n, 1);
    custos_ra_record_t bad = r;
    bad.role = CUSTOS_ROLE_ADMIN | CUSTOS_ROLE_AUDITOR; /* one role per assignment */
    assert_int_equal(custos_keystore_ra_create(ks, &bad, 10, NULL, NULL), CUSTOS_EINVAL);
    bad = r;
    snprintf(bad.scope, sizeof(bad.scope), "/x");
    assert_int_equal(custos_keystore_ra_create(ks, &bad, 10, NULL, NULL), CUSTOS_EINVAL);
    assert_int_equal(custos_keystore_ra_delete(ks, r.id, NULL, NULL), 0);
    assert_int_equal(custos_keystore_ra_delete(ks, r.id, NULL, NULL), CUSTOS_ENOTFOUND);
    n = 0;
    assert_int_equal(custos_keystore_ra_list(ks, count_ras, &n), 0);
    assert_int_equal(n, 0);
    custos_keystore_close(ks);
}

/* --- the snapshot --- */

static custos_config_t *config_with_store(const char *extra_identity)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - address: \"127.0.0.1:8443\"\n"
             "identity:\n  api_keys:\n    - name: cfg\n"
             "      sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n%s"
             "storage: {path: \"%s\"}\n"
             "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
             "deployments:\n  - name: demo\n    backends: [mock]\n",
             extra_identity, db);
    custos_config_t *c = NULL;
    char err[512];
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return c;
}

static void test_snapshot(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    char k1[CUSTOS_KEY_TEXT_LEN + 1], k2[CUSTOS_KEY_TEXT_LEN + 1], k3[CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_spec_t s1 = {NULL, "alice", CUSTOS_ROLE_INFERENCE_USER, "/deployments/demo", 0};
    custos_key_spec_t s2 = {NULL, "bob", CUSTOS_ROLE_ADMIN, NULL, 3600};
    custos_key_record_t r1, r2, r3;
    assert_int_equal(custos_keystore_key_create(ks, &s1, 100, NULL, NULL, k1, &r1), 0);
    assert_int_equal(custos_keystore_key_create(ks, &s2, 100, NULL, NULL, k2, &r2), 0);
    assert_int_equal(custos_keystore_key_create(ks, &s1, 100, NULL, NULL, k3, &r3), 0);
    assert_int_equal(custos_keystore_key_revoke(ks, r3.id, 150, NULL, NULL), 0);
    custos_ra_record_t ra = {.kind = CUSTOS_RA_PRINCIPAL, .role = CUSTOS_ROLE_REVIEWER};
    snprintf(ra.subject, sizeof(ra.subject), "alice");
    snprintf(ra.scope, sizeof(ra.scope), "/");
    assert_int_equal(custos_keystore_ra_create(ks, &ra, 10, NULL, NULL), 0);
    custos_keystore_close(ks);

    custos_config_t *cfg = config_with_store("  role_assignments:\n"
                                             "    - {group: g1, role: inference.user, scope: /deployments/demo}\n");
    custos_idsnap_t *s = NULL;
    char err[256];
    assert_int_equal(custos_idsnap_build(cfg, 7, &s, err, sizeof(err)), 0);
    assert_int_equal(custos_idsnap_generation(s), 7);
    assert_int_equal(custos_idsnap_key_count(s), 3); /* config key + two active stored keys */

    unsigned char d[32];
    custos_auth_sha256("test", 4, d); /* the config key */
    const custos_idkey_t *k = custos_idsnap_find_key(s, d);
    assert_non_null(k);
    assert_true(k->from_config);
    assert_string_equal(k->principal, "key:cfg");
    assert_int_equal(k->roles, CUSTOS_ROLE_INFERENCE_USER);
    assert_string_equal(k->scope, "/");

    custos_auth_sha256(k1, strlen(k1), d);
    k = custos_idsnap_find_key(s, d);
    assert_non_null(k);
    assert_string_equal(k->principal, "alice");
    assert_string_equal(k->scope, "/deployments/demo");
    assert_string_equal(k->id, r1.id);

    custos_auth_sha256(k2, strlen(k2), d);
    k = custos_idsnap_find_key(s, d);
    assert_non_null(k);
    assert_int_equal(k->expires_s, 100 + 3600); /* the gateway refuses it from then on */

    custos_auth_sha256(k3, strlen(k3), d); /* revoked */
    assert_null(custos_idsnap_find_key(s, d));
    custos_auth_sha256("nope", 4, d);
    assert_null(custos_idsnap_find_key(s, d));

    size_t n;
    const custos_rbac_grant_t *g = custos_idsnap_grants(s, &n);
    assert_int_equal(n, 2);
    assert_int_equal(g[0].kind, CUSTOS_RA_GROUP); /* config first */
    assert_string_equal(g[0].subject, "g1");
    assert_int_equal(g[1].kind, CUSTOS_RA_PRINCIPAL);
    assert_int_equal(g[1].role, CUSTOS_ROLE_REVIEWER);
    custos_idsnap_t *r = custos_idsnap_ref(s);
    custos_idsnap_unref(s);
    custos_idsnap_unref(r);
    custos_config_unref(cfg);
}

static void test_snapshot_many_keys(void **state)
{
    (void)state;
    custos_keystore_t *ks = open_new();
    enum { N = 300 };
    static char keys[N][CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_spec_t s1 = {NULL, "p", CUSTOS_ROLE_INFERENCE_USER, NULL, 0};
    for (int i = 0; i < N; i++)
        assert_int_equal(custos_keystore_key_create(ks, &s1, 1, NULL, NULL, keys[i], NULL), 0);
    custos_keystore_close(ks);
    custos_config_t *cfg = config_with_store("");
    custos_idsnap_t *s = NULL;
    assert_int_equal(custos_idsnap_build(cfg, 1, &s, NULL, 0), 0);
    assert_int_equal(custos_idsnap_key_count(s), N + 1);
    for (int i = 0; i < N; i++) {
        unsigned char d[32];
        custos_auth_sha256(keys[i], strlen(keys[i]), d);
        assert_non_null(custos_idsnap_find_key(s, d));
    }
    custos_idsnap_unref(s);
    custos_config_unref(cfg);
}

static void test_snapshot_missing_store(void **state)
{
    (void)state;
    unlink(db);
    custos_config_t *cfg = config_with_store("");
    custos_idsnap_t *s = NULL;
    assert_int_equal(custos_idsnap_build(cfg, 1, &s, NULL, 0), 0);
    assert_int_equal(custos_idsnap_key_count(s), 1);
    assert_int_equal(access(db, F_OK), -1); /* reading never creates the store */
    custos_idsnap_unref(s);
    /* a file that is not a database: the build fails (the gateway then refuses to start / keeps the old one) */
    FILE *f = fopen(db, "w");
    assert_non_null(f);
    fputs("this is not an sqlite database, not at all, no, definitely not one..........\n", f);
    fclose(f);
    char err[256] = "";
    assert_int_equal(custos_idsnap_build(cfg, 2, &s, err, sizeof(err)), CUSTOS_EIO);
    assert_null(s);
    assert_non_null(strstr(err, "storage"));
    unlink(db);
    custos_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_create_lookup),
        cmocka_unit_test(test_invalid_specs),
        cmocka_unit_test(test_hooks_commit_or_rollback),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_role_assignments),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_snapshot_many_keys),
        cmocka_unit_test(test_snapshot_missing_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
