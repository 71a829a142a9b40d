/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for policy/rbac: scope matching, key roles, role assignments by principal / group / app id,
 * mapped token roles, admin-only actions; and the identity config keys that feed them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "policy/rbac.h"
#include "util/err.h"

static void test_scope_covers(void **state)
{
    (void)state;
    assert_true(custos_rbac_scope_covers("/", "demo"));
    assert_true(custos_rbac_scope_covers("/", NULL));
    assert_true(custos_rbac_scope_covers("/deployments/demo", "demo"));
    assert_false(custos_rbac_scope_covers("/deployments/demo", "demo2"));
    assert_false(custos_rbac_scope_covers("/deployments/demo2", "demo"));
    assert_false(custos_rbac_scope_covers("/deployments/demo", "Demo")); /* case-sensitive like deployment names */
    assert_false(custos_rbac_scope_covers("/deployments/demo", NULL));   /* resource-wide acts need "/" */
    assert_false(custos_rbac_scope_covers("/deployments/", ""));
    assert_false(custos_rbac_scope_covers(NULL, "demo"));
    assert_false(custos_rbac_scope_covers("", "demo"));
}

static void test_key_roles(void **state)
{
    (void)state;
    custos_rbac_subject_t s = {
        .principal = "alice", .key_roles = CUSTOS_ROLE_INFERENCE_USER, .key_scope = "/deployments/demo"};
    assert_true(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_INFERENCE, "demo"));
    assert_false(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_INFERENCE, "other"));
    assert_false(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_ADMIN, NULL));
    s.key_roles = CUSTOS_ROLE_AUDITOR | CUSTOS_ROLE_REVIEWER | CUSTOS_ROLE_CONTRIBUTOR;
    s.key_scope = "/";
    assert_false(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_INFERENCE, "demo")); /* no inference role */
    s.key_roles = CUSTOS_ROLE_ADMIN;
    assert_true(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_INFERENCE, "demo")); /* admin can do everything */
    assert_true(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_ADMIN, NULL));
    s.key_scope = "/deployments/demo"; /* admin of one deployment is not an admin of the resource */
    assert_false(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_ADMIN, NULL));
    assert_true(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_INFERENCE, "demo"));
}

static void test_assignments(void **state)
{
    (void)state;
    const custos_rbac_grant_t g[] = {
        {CUSTOS_RA_PRINCIPAL, "alice", CUSTOS_ROLE_INFERENCE_USER, "/deployments/demo"},
        {CUSTOS_RA_GROUP, "grp-1", CUSTOS_ROLE_INFERENCE_USER, "/"},
        {CUSTOS_RA_APP_ID, "app-9", CUSTOS_ROLE_ADMIN, "/"},
        {CUSTOS_RA_PRINCIPAL, "carol", CUSTOS_ROLE_AUDITOR, "/"},
    };
    size_t n = sizeof(g) / sizeof(g[0]);
    custos_rbac_subject_t alice = {.principal = "alice"};
    assert_true(custos_rbac_allowed(&alice, g, n, CUSTOS_RBAC_INFERENCE, "demo"));
    assert_false(custos_rbac_allowed(&alice, g, n, CUSTOS_RBAC_INFERENCE, "other"));
    assert_false(custos_rbac_allowed(&alice, g, n, CUSTOS_RBAC_ADMIN, NULL));

    const char *groups[] = {"x", "grp-1"};
    custos_rbac_subject_t bob = {.principal = "bob", .groups = groups, .n_groups = 2};
    assert_true(custos_rbac_allowed(&bob, g, n, CUSTOS_RBAC_INFERENCE, "other"));
    bob.n_groups = 1;
    assert_false(custos_rbac_allowed(&bob, g, n, CUSTOS_RBAC_INFERENCE, "other"));

    custos_rbac_subject_t app = {.principal = "svc", .app_id = "app-9"};
    assert_true(custos_rbac_allowed(&app, g, n, CUSTOS_RBAC_ADMIN, NULL));
    custos_rbac_subject_t not_app = {.principal = "app-9"}; /* a principal named like an app id is not that app */
    assert_false(custos_rbac_allowed(&not_app, g, n, CUSTOS_RBAC_ADMIN, NULL));

    custos_rbac_subject_t carol = {.principal = "carol"};
    assert_false(custos_rbac_allowed(&carol, g, n, CUSTOS_RBAC_INFERENCE, "demo"));
    custos_rbac_subject_t nobody = {0};
    assert_false(custos_rbac_allowed(&nobody, g, n, CUSTOS_RBAC_INFERENCE, "demo"));
}

static custos_config_t *load(const char *identity_extra, char *err, size_t errlen, int *rc)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - address: \"127.0.0.1:8443\"\n"
             "identity:\n  api_keys:\n    - name: cfg\n"
             "      sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n%s"
             "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
             "deployments:\n  - name: demo\n    backends: [mock]\n",
             identity_extra);
    custos_config_t *c = NULL;
    *rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, errlen);
    return c;
}

static void test_role_map(void **state)
{
    (void)state;
    char err[512];
    int rc;
    custos_config_t *c = load("  role_map:\n    \"Custos.Users\": inference.user\n    \"Custos.Admins\": admin\n", err,
                              sizeof(err), &rc);
    assert_int_equal(rc, 0);
    const char *claims[] = {"Other", "Custos.Users"};
    assert_int_equal(custos_rbac_map_roles(c, claims, 2), CUSTOS_ROLE_INFERENCE_USER);
    const char *claims2[] = {"Custos.Admins", "Custos.Users"};
    assert_int_equal(custos_rbac_map_roles(c, claims2, 2), CUSTOS_ROLE_INFERENCE_USER | CUSTOS_ROLE_ADMIN);
    assert_int_equal(custos_rbac_map_roles(c, claims, 1), 0);
    custos_rbac_subject_t s = {.principal = "x", .token_roles = custos_rbac_map_roles(c, claims, 2)};
    assert_true(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_INFERENCE, "demo"));
    assert_false(custos_rbac_allowed(&s, NULL, 0, CUSTOS_RBAC_ADMIN, NULL));
    custos_config_unref(c);
}

static void test_config_keys_and_assignments(void **state)
{
    (void)state;
    char err[512];
    int rc;
    custos_config_t *c = load("    - name: k2\n"
                              "      sha256: \"0000000000000000000000000000000000000000000000000000000000000001\"\n"
                              "      principal: svc-batch\n"
                              "      roles: [inference.user, auditor]\n"
                              "      scope: /deployments/demo\n"
                              "  disable_local_auth: false\n"
                              "  role_assignments:\n"
                              "    - {principal: alice, role: inference.user, scope: /deployments/demo}\n"
                              "    - {group: g1, role: admin}\n"
                              "    - {app_id: a1, role: reviewer, scope: /}\n",
                              err, sizeof(err), &rc);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(c->identity.n_api_keys, 2);
    assert_string_equal(c->identity.api_keys[0].principal, "key:cfg");
    assert_int_equal(c->identity.api_keys[0].roles, CUSTOS_ROLE_INFERENCE_USER);
    assert_string_equal(c->identity.api_keys[0].scope, "/");
    assert_string_equal(c->identity.api_keys[1].principal, "svc-batch");
    assert_int_equal(c->identity.api_keys[1].roles, CUSTOS_ROLE_INFERENCE_USER | CUSTOS_ROLE_AUDITOR);
    assert_string_equal(c->identity.api_keys[1].scope, "/deployments/demo");
    assert_int_equal(c->identity.n_role_assignments, 3);
    assert_int_equal(c->identity.role_assignments[1].kind, CUSTOS_RA_GROUP);
    assert_int_equal(c->identity.role_assignments[1].role, CUSTOS_ROLE_ADMIN);
    assert_string_equal(c->identity.role_assignments[1].scope, "/");
    assert_int_equal(c->identity.role_assignments[2].kind, CUSTOS_RA_APP_ID);
    assert_false(c->identity.disable_local_auth);
    assert_non_null(c->storage.path);
    assert_string_equal(c->storage.path, "custos.db"); /* from a string: relative to the working directory */
    custos_config_unref(c);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct {
        const char *yaml;
        const char *msg;
    } cases[] = {
        {"      roles: [root]\n", "identity.api_keys[0].roles[0]: expected one of inference.user"},
        {"      roles: []\n", "identity.api_keys[0].roles: at least one role"},
        {"      scope: /deployments/a/b\n", "identity.api_keys[0].scope: expected"},
        {"  role_assignments:\n    - {principal: a, group: b, role: admin}\n", "exactly one of principal, group"},
        {"  role_assignments:\n    - {role: admin}\n", "one of principal, group, app_id is required"},
        {"  role_assignments:\n    - {principal: a}\n", "missing required key 'role'"},
        {"  role_assignments:\n    - {principal: a, role: admin, scope: /x}\n", "scope: expected"},
        {"  role_assignments:\n    - {principal: a, role: admin, extra: 1}\n", "unknown key 'extra'"},
        {"  role_map:\n    X: superuser\n", "identity.role_map.X: expected one of"},
        {"  disable_local_auth: yes\n", "disable_local_auth: expected a boolean"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        int rc;
        custos_config_t *c = load(cases[i].yaml, err, sizeof(err), &rc);
        assert_int_equal(rc, CUSTOS_EINVAL);
        assert_null(c);
        if (!strstr(err, cases[i].msg))
            fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].msg);
        assert_non_null(strstr(err, "t.yaml:")); /* file:line:col */
    }
}

static void test_disable_local_auth_without_keys(void **state)
{
    (void)state;
    const char *yaml = "listeners:\n  - address: \"127.0.0.1:8443\"\n"
                       "identity:\n  disable_local_auth: true\n"
                       "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
                       "deployments:\n  - name: demo\n    backends: [mock]\n";
    custos_config_t *c = NULL;
    char err[512];
    assert_int_equal(custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err)), 0);
    assert_true(c->identity.disable_local_auth);
    assert_int_equal(c->identity.n_api_keys, 0);
    custos_config_unref(c);
}

static void test_role_names(void **state)
{
    (void)state;
    const char *names[] = {"inference.user", "contributor", "reviewer", "auditor", "admin"};
    for (size_t i = 0; i < 5; i++) {
        unsigned r = custos_config_role_parse(names[i]);
        assert_int_equal(r, 1u << i);
        assert_string_equal(custos_config_role_name(r), names[i]);
    }
    assert_int_equal(custos_config_role_parse("Admin"), 0);
    assert_int_equal(custos_config_role_parse(NULL), 0);
    assert_true(custos_config_scope_valid("/"));
    assert_true(custos_config_scope_valid("/deployments/gpt-4o"));
    assert_false(custos_config_scope_valid("/deployments/"));
    assert_false(custos_config_scope_valid("/deployments/a/b"));
    assert_false(custos_config_scope_valid("/deployment/a"));
    assert_false(custos_config_scope_valid(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scope_covers),
        cmocka_unit_test(test_key_roles),
        cmocka_unit_test(test_assignments),
        cmocka_unit_test(test_role_map),
        cmocka_unit_test(test_config_keys_and_assignments),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_disable_local_auth_without_keys),
        cmocka_unit_test(test_role_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
