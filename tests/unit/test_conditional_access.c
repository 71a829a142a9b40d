/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for policy/conditional_access (each condition and each requirement, with API keys failing
 * token requirements closed), its configuration (identity.conditional_access) and util/tz. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "policy/conditional_access.h"
#include "util/err.h"
#include "util/tz.h"

static custos_config_t *load(const char *ca, char *err, size_t errlen, int *rc)
{
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n  - address: \"127.0.0.1:8443\"\n"
             "identity:\n  api_keys:\n    - name: cfg\n"
             "      sha256: \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n"
             "  conditional_access:\n%s"
             "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
             "deployments:\n  - name: demo\n    backends: [mock]\n",
             ca);
    custos_config_t *c = NULL;
    *rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, errlen);
    if (*rc)
        fprintf(stderr, "%s\n", err);
    return c;
}

static custos_config_t *must_load(const char *ca)
{
    char err[512];
    int rc;
    custos_config_t *c = load(ca, err, sizeof(err), &rc);
    assert_int_equal(rc, 0);
    return c;
}

static void set_addr(custos_ca_input_t *in, const char *ip)
{
    in->has_addr = custos_ip_parse(ip, strlen(ip), &in->addr) == 0;
    assert_true(in->has_addr);
}

/* A user token with MFA, issued 10 s ago, from 10.1.2.3. */
static custos_ca_input_t token_input(void)
{
    custos_ca_input_t in = {
        .deployment = "demo",
        .principal_type = CUSTOS_CA_PRINCIPAL_USER,
        .has_token = true,
        .mfa = true,
        .has_iat = true,
        .iat_s = 1700000000 - 10,
        .now_s = 1700000000,
    };
    set_addr(&in, "10.1.2.3");
    return in;
}

static custos_ca_input_t key_input(void)
{
    custos_ca_input_t in = {.deployment = "demo", .principal_type = CUSTOS_CA_PRINCIPAL_WORKLOAD, .now_s = 1700000000};
    set_addr(&in, "10.1.2.3");
    return in;
}

static void expect_deny(const custos_config_t *c, const custos_ca_input_t *in, const char *policy, const char *reason)
{
    const char *p = NULL, *r = NULL;
    assert_false(custos_ca_evaluate(c, in, &p, &r));
    assert_string_equal(p, policy);
    assert_string_equal(r, reason);
}

static void expect_allow(const custos_config_t *c, const custos_ca_input_t *in)
{
    const char *p = NULL, *r = NULL;
    bool ok = custos_ca_evaluate(c, in, &p, &r);
    if (!ok)
        fail_msg("denied by %s: %s", p, r);
}

static void test_mfa(void **state)
{
    (void)state;
    custos_config_t *c = must_load("    - name: mfa-all\n      require: {mfa: true}\n");
    custos_ca_input_t in = token_input();
    expect_allow(c, &in);
    in.mfa = false;
    expect_deny(c, &in, "mfa-all", CUSTOS_CA_REASON_MFA);
    custos_ca_input_t k = key_input(); /* keys cannot prove MFA: closed */
    expect_deny(c, &k, "mfa-all", CUSTOS_CA_REASON_MFA);
    custos_config_unref(c);
}

static void test_networks(void **state)
{
    (void)state;
    custos_config_t *c =
        must_load("    - name: corp-only\n      require: {networks: [\"10.0.0.0/8\", \"2001:db8::/32\"]}\n");
    custos_ca_input_t in = key_input();
    expect_allow(c, &in);
    set_addr(&in, "11.0.0.1");
    expect_deny(c, &in, "corp-only", CUSTOS_CA_REASON_NETWORK);
    set_addr(&in, "2001:db8:1::5");
    expect_allow(c, &in);
    set_addr(&in, "2001:db9::5");
    expect_deny(c, &in, "corp-only", CUSTOS_CA_REASON_NETWORK);
    set_addr(&in, "::ffff:10.9.9.9"); /* v4-mapped matches the IPv4 rule */
    expect_allow(c, &in);
    in.has_addr = false; /* unix socket: no address, closed */
    expect_deny(c, &in, "corp-only", CUSTOS_CA_REASON_NETWORK);
    custos_config_unref(c);
}

static void test_token_age(void **state)
{
    (void)state;
    custos_config_t *c = must_load("    - name: fresh\n      require: {max_token_age_s: 60}\n");
    custos_ca_input_t in = token_input();
    expect_allow(c, &in);
    in.iat_s = in.now_s - 60;
    expect_allow(c, &in);
    in.iat_s = in.now_s - 61;
    expect_deny(c, &in, "fresh", CUSTOS_CA_REASON_TOKEN_AGE);
    in = token_input();
    in.has_iat = false;
    expect_deny(c, &in, "fresh", CUSTOS_CA_REASON_TOKEN_AGE);
    custos_ca_input_t k = key_input();
    expect_deny(c, &k, "fresh", CUSTOS_CA_REASON_TOKEN_AGE);
    custos_config_unref(c);
}

static const char *claims_fn(void *ud, const char *name)
{
    const char *const *kv = ud;
    for (; kv[0]; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static void test_claims(void **state)
{
    (void)state;
    custos_config_t *c =
        must_load("    - name: managed-device\n      require: {claims: {deviceCompliance: compliant, tier: gold}}\n");
    custos_ca_input_t in = token_input();
    const char *good[] = {"deviceCompliance", "compliant", "tier", "gold", NULL};
    const char *bad[] = {"deviceCompliance", "noncompliant", "tier", "gold", NULL};
    const char *missing[] = {"tier", "gold", NULL};
    in.claim = claims_fn;
    in.claim_ud = (void *)good;
    expect_allow(c, &in);
    in.claim_ud = (void *)bad;
    expect_deny(c, &in, "managed-device", CUSTOS_CA_REASON_CLAIMS);
    in.claim_ud = (void *)missing;
    expect_deny(c, &in, "managed-device", CUSTOS_CA_REASON_CLAIMS);
    custos_ca_input_t k = key_input();
    expect_deny(c, &k, "managed-device", CUSTOS_CA_REASON_CLAIMS);
    custos_config_unref(c);
}

static void test_hours(void **state)
{
    (void)state;
    custos_config_t *c = must_load("    - name: office\n      require: {hours: {tz: Europe/Paris, from: \"07:00\", "
                                   "to: \"19:00\"}}\n"
                                   "    - name: night\n      when: {deployments: [night]}\n"
                                   "      require: {hours: {tz: UTC, from: \"22:00\", to: \"06:00\"}}\n");
    custos_ca_input_t in = key_input();
    /* 2024-01-15 (winter, UTC+1): 06:30 UTC = 07:30 Paris */
    in.now_s = 1705300200; /* 2024-01-15T06:30:00Z */
    expect_allow(c, &in);
    in.now_s = 1705300200 - 3600; /* 05:30Z = 06:30 Paris */
    expect_deny(c, &in, "office", CUSTOS_CA_REASON_HOURS);
    /* 2024-07-15 (summer, UTC+2): 17:30 UTC = 19:30 Paris -> outside; 16:30 UTC = 18:30 -> inside */
    in.now_s = 1721064600; /* 2024-07-15T17:30:00Z */
    expect_deny(c, &in, "office", CUSTOS_CA_REASON_HOURS);
    in.now_s = 1721064600 - 3600;
    expect_allow(c, &in);
    /* a window spanning midnight, on another deployment (the office policy allows 18:30 Paris) */
    in.deployment = "night";
    in.now_s = 1721064600 - 3600; /* 16:30 UTC */
    expect_deny(c, &in, "night", CUSTOS_CA_REASON_HOURS);
    in.now_s = 1705300200 - 3600 * 6 - 1800; /* 2024-01-15T00:00:00Z = 01:00 Paris: office denies first */
    expect_deny(c, &in, "office", CUSTOS_CA_REASON_HOURS);
    custos_config_unref(c);
}

static void test_conditions(void **state)
{
    (void)state;
    custos_config_t *c =
        must_load("    - name: users-on-demo-from-outside\n"
                  "      when: {deployments: [demo], principal_types: [user], networks: [\"0.0.0.0/0\"]}\n"
                  "      require: {mfa: true}\n");
    custos_ca_input_t in = token_input();
    in.mfa = false;
    expect_deny(c, &in, "users-on-demo-from-outside", CUSTOS_CA_REASON_MFA);
    in.deployment = "other"; /* deployment condition */
    expect_allow(c, &in);
    in.deployment = NULL;
    expect_allow(c, &in);
    in = token_input();
    in.mfa = false;
    in.principal_type = CUSTOS_CA_PRINCIPAL_WORKLOAD; /* principal type condition */
    expect_allow(c, &in);
    in = token_input();
    in.mfa = false;
    set_addr(&in, "2001:db8::1"); /* network condition: IPv6 is not in 0.0.0.0/0 */
    expect_allow(c, &in);
    in.has_addr = false;
    expect_allow(c, &in);
    custos_ca_input_t k = key_input(); /* keys are workloads */
    expect_allow(c, &k);
    custos_config_unref(c);
}

static void test_first_failing_policy_reported(void **state)
{
    (void)state;
    custos_config_t *c = must_load("    - name: a\n      when: {principal_types: [workload]}\n"
                                   "      require: {networks: [\"192.168.0.0/16\"]}\n"
                                   "    - name: b\n      require: {mfa: true}\n");
    custos_ca_input_t in = token_input();
    in.mfa = false;
    expect_deny(c, &in, "b", CUSTOS_CA_REASON_MFA);
    custos_ca_input_t k = key_input();
    expect_deny(c, &k, "a", CUSTOS_CA_REASON_NETWORK);
    custos_config_unref(c);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct {
        const char *yaml;
        const char *msg;
    } cases[] = {
        {"    - name: x\n", "missing required key 'require'"},
        {"    - name: x\n      require: {}\n", "at least one requirement"},
        {"    - name: x\n      require: {mfa: true, colour: red}\n", "unknown key 'colour'"},
        {"    - name: x\n      require: {networks: [\"10.0.0.1/8\"]}\n", "require.networks[0]: expected an IPv4"},
        {"    - name: x\n      require: {networks: [\"nope\"]}\n", "require.networks[0]"},
        {"    - name: x\n      require: {max_token_age_s: 0}\n", "out of range"},
        {"    - name: x\n      require: {hours: {tz: Mars/Olympus, from: \"07:00\", to: \"19:00\"}}\n",
         "unknown time zone"},
        {"    - name: x\n      require: {hours: {tz: UTC, from: \"7:00\", to: \"19:00\"}}\n", "expected \"HH:MM\""},
        {"    - name: x\n      require: {hours: {tz: ../../etc/passwd, from: \"07:00\", to: \"19:00\"}}\n",
         "unknown time zone"},
        {"    - name: x\n      when: {principal_types: [robot]}\n      require: {mfa: true}\n",
         "expected one of user, workload"},
        {"    - name: x\n      when: {tiers: [high]}\n      require: {mfa: true}\n", "unknown key 'tiers'"},
        {"    - name: x\n      require: {mfa: true}\n    - name: x\n      require: {mfa: true}\n",
         "duplicate policy name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        int rc;
        custos_config_t *c = load(cases[i].yaml, err, sizeof(err), &rc);
        assert_int_equal(rc, CUSTOS_EINVAL);
        assert_null(c);
        if (!strstr(err, cases[i].msg))
            fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].msg);
    }
}

static void test_tz(void **state)
{
    (void)state;
    custos_tz_t *tz = NULL;
    assert_int_equal(custos_tz_load(NULL, "Europe/Paris", &tz), 0);
    assert_int_equal(custos_tz_offset(tz, 1705300200), 3600); /* January */
    assert_int_equal(custos_tz_offset(tz, 1721064600), 7200); /* July */
    /* 2024-03-31 01:00:00Z: the switch to summer time */
    assert_int_equal(custos_tz_offset(tz, 1711846800 - 1), 3600);
    assert_int_equal(custos_tz_offset(tz, 1711846800), 7200);
    assert_int_equal(custos_tz_minute_of_day(tz, 1705300200), 7 * 60 + 30);
    custos_tz_free(tz);
    assert_int_equal(custos_tz_load(NULL, "UTC", &tz), 0);
    assert_int_equal(custos_tz_offset(tz, 1705300200), 0);
    custos_tz_free(tz);
    assert_int_equal(custos_tz_load(NULL, "../etc/passwd", &tz), CUSTOS_EINVAL);
    assert_int_equal(custos_tz_load(NULL, "/etc/passwd", &tz), CUSTOS_EINVAL);
    assert_int_equal(custos_tz_load(NULL, "No/Such_Zone", &tz), CUSTOS_ENOTFOUND);
    assert_int_equal(custos_tz_load("/etc", "hostname", &tz), CUSTOS_EINVAL); /* not a TZif file */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mfa),
        cmocka_unit_test(test_networks),
        cmocka_unit_test(test_token_age),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_hours),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_first_failing_policy_reported),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_tz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
