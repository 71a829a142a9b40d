/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for route/health (circuit breaker, outlier ejection with growing intervals, probe thresholds,
 * all with an injected clock), route/balance (priority groups, smooth weighted round-robin, least outstanding,
 * sticky rendezvous hashing, half-open trials, never outside the boundary or the requirements) and the
 * routing config keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "route/balance.h"
#include "route/health.h"
#include "route/router.h"
#include "util/err.h"

#define DIGEST_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define CFG_HEAD                                                                                                       \
    "listeners:\n  - address: \"127.0.0.1:8443\"\n"                                                                    \
    "identity:\n  api_keys:\n    - name: demo\n      sha256: \"" DIGEST_TEST "\"\n"

static const custos_outlier_params_t OP = {
    .consecutive_failures = 3, .base_ejection_ms = 1000, .max_ejection_ms = 5000};

/* ---------- circuit breaker / outlier detection ---------- */

static void fail_n(custos_backend_health_t *b, unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < n; i++) {
        custos_health_begin(b);
        custos_health_end(b, &OP, CUSTOS_OUTCOME_FAILURE, false, now);
    }
}

static void test_breaker_transitions(void **state)
{
    (void)state;
    custos_backend_health_t b;
    custos_health_entry_init(&b, "b1");
    uint64_t t = 10000;
    assert_true(custos_health_available(&b));
    assert_int_equal(custos_health_state(&b, t), CUSTOS_BACKEND_HEALTHY);
    /* two failures, a success: the streak restarts */
    fail_n(&b, 2, t);
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_SUCCESS, false, t);
    fail_n(&b, 2, t);
    assert_true(custos_health_available(&b));
    /* neutral outcomes (429, cancelled) neither count nor reset */
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_NEUTRAL, false, t);
    assert_true(custos_health_available(&b));
    /* the third consecutive failure opens the breaker for base (1 s) */
    fail_n(&b, 1, t);
    assert_false(custos_health_available(&b));
    assert_int_equal(custos_health_state(&b, t), CUSTOS_BACKEND_EJECTED);
    assert_int_equal(atomic_load(&b.ejections), 1);
    assert_false(custos_health_trial_ready(&b, t + 999));
    assert_false(custos_health_try_trial(&b, t + 999));
    /* ejection over: half-open, exactly one trial */
    assert_int_equal(custos_health_state(&b, t + 1000), CUSTOS_BACKEND_HALF_OPEN);
    assert_true(custos_health_try_trial(&b, t + 1000));
    assert_false(custos_health_try_trial(&b, t + 1000)); /* one at a time */
    assert_false(custos_health_available(&b));
    /* the trial fails: open again for 2 s (base × 2^1) */
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_FAILURE, true, t + 1000);
    assert_int_equal(custos_health_state(&b, t + 1000), CUSTOS_BACKEND_EJECTED);
    assert_false(custos_health_trial_ready(&b, t + 2999));
    assert_true(custos_health_trial_ready(&b, t + 3000));
    /* and again: 4 s, then capped at 5 s */
    assert_true(custos_health_try_trial(&b, t + 3000));
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_FAILURE, true, t + 3000);
    assert_false(custos_health_trial_ready(&b, t + 6999));
    assert_true(custos_health_try_trial(&b, t + 7000));
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_FAILURE, true, t + 7000);
    assert_false(custos_health_trial_ready(&b, t + 11999));
    assert_true(custos_health_trial_ready(&b, t + 12000)); /* 5 s cap, not 8 s */
    /* a neutral trial outcome frees the trial slot, stays half-open */
    assert_true(custos_health_try_trial(&b, t + 12000));
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_NEUTRAL, true, t + 12000);
    assert_int_equal(custos_health_state(&b, t + 12000), CUSTOS_BACKEND_HALF_OPEN);
    /* a successful trial closes it */
    assert_true(custos_health_try_trial(&b, t + 12001));
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_SUCCESS, true, t + 12001);
    assert_true(custos_health_available(&b));
    assert_int_equal(custos_health_state(&b, t + 12001), CUSTOS_BACKEND_HEALTHY);
    /* ejected again soon after: the interval keeps growing (capped) */
    fail_n(&b, 3, t + 13000);
    assert_false(custos_health_trial_ready(&b, t + 13000 + 4999));
    assert_true(custos_health_trial_ready(&b, t + 13000 + 5000));
    assert_true(custos_health_try_trial(&b, t + 18000));
    custos_health_report(&b, &OP, CUSTOS_OUTCOME_SUCCESS, true, t + 18000);
    /* after a healthy spell of max_ejection_ms the streak restarts at base */
    fail_n(&b, 3, t + 18000 + 5000);
    assert_false(custos_health_trial_ready(&b, t + 23000 + 999));
    assert_true(custos_health_trial_ready(&b, t + 23000 + 1000));
    assert_int_equal(atomic_load(&b.outstanding), 0);
    custos_health_entry_dispose(&b);
}

static void test_breaker_off_and_stale_trial(void **state)
{
    (void)state;
    custos_backend_health_t b;
    custos_health_entry_init(&b, "b1");
    custos_outlier_params_t off = {0, 1000, 5000};
    for (int i = 0; i < 100; i++)
        custos_health_report(&b, &off, CUSTOS_OUTCOME_FAILURE, false, 1000);
    assert_true(custos_health_available(&b)); /* consecutive_failures 0: never ejected */
    custos_health_report(&b, NULL, CUSTOS_OUTCOME_FAILURE, false, 1000);
    assert_true(custos_health_available(&b));
    /* a claimed trial that never reports is presumed lost after CUSTOS_HEALTH_TRIAL_STALE_MS */
    fail_n(&b, 3, 1000);
    assert_true(custos_health_try_trial(&b, 2000));
    assert_false(custos_health_try_trial(&b, 2000 + CUSTOS_HEALTH_TRIAL_STALE_MS - 1));
    assert_true(custos_health_try_trial(&b, 2000 + CUSTOS_HEALTH_TRIAL_STALE_MS));
    custos_health_entry_dispose(&b);
}

static void test_probe_thresholds(void **state)
{
    (void)state;
    custos_backend_health_t b;
    custos_health_entry_init(&b, "b1");
    /* unhealthy after 3 failures in a row; a success in between restarts the count */
    custos_health_probe_result(&b, false, 2, 3, 100);
    custos_health_probe_result(&b, false, 2, 3, 200);
    custos_health_probe_result(&b, true, 2, 3, 300);
    custos_health_probe_result(&b, false, 2, 3, 400);
    custos_health_probe_result(&b, false, 2, 3, 500);
    assert_true(custos_health_available(&b));
    custos_health_probe_result(&b, false, 2, 3, 600);
    assert_false(custos_health_available(&b));
    assert_int_equal(custos_health_state(&b, 600), CUSTOS_BACKEND_UNHEALTHY);
    assert_false(custos_health_trial_ready(&b, 600)); /* probes failing: no trials either */
    /* healthy again after 2 successes */
    custos_health_probe_result(&b, true, 2, 3, 700);
    assert_false(custos_health_available(&b));
    custos_health_probe_result(&b, true, 2, 3, 800);
    assert_true(custos_health_available(&b));
    /* re-admission: an ejected backend is closed by healthy_threshold probe successes after the ejection */
    fail_n(&b, 3, 1000);
    assert_false(custos_health_available(&b));
    custos_health_probe_result(&b, true, 2, 3, 1100);
    assert_false(custos_health_available(&b)); /* one is not enough: the run restarted at the ejection */
    custos_health_probe_result(&b, true, 2, 3, 1200);
    assert_true(custos_health_available(&b));
    assert_int_equal(custos_health_state(&b, 1200), CUSTOS_BACKEND_HEALTHY);
    /* the health_check removed by a reload: its verdict no longer holds the backend out */
    custos_health_probe_result(&b, false, 2, 1, 1300);
    assert_false(custos_health_available(&b));
    custos_health_probe_reset(&b);
    assert_true(custos_health_available(&b));
    assert_int_equal(atomic_load(&b.probes_ok), 5);
    assert_int_equal(atomic_load(&b.probes_failed), 6);
    custos_health_entry_dispose(&b);
}

static void test_registry(void **state)
{
    (void)state;
    custos_health_t *h = NULL;
    assert_int_equal(custos_health_new(&h), 0);
    assert_null(custos_health_find(h, "a"));
    custos_backend_health_t *a = custos_health_get(h, "a");
    assert_non_null(a);
    assert_ptr_equal(custos_health_get(h, "a"), a);
    assert_ptr_equal(custos_health_find(h, "a"), a);
    assert_ptr_not_equal(custos_health_get(h, "b"), a);
    /* fills up to CUSTOS_HEALTH_MAX_ENTRIES names; each found again; then full */
    char name[32];
    for (int i = 2; i < CUSTOS_HEALTH_MAX_ENTRIES; i++) {
        snprintf(name, sizeof(name), "backend-%d", i);
        assert_non_null(custos_health_get(h, name));
    }
    for (int i = 2; i < CUSTOS_HEALTH_MAX_ENTRIES; i++) {
        snprintf(name, sizeof(name), "backend-%d", i);
        custos_backend_health_t *e = custos_health_find(h, name);
        assert_non_null(e);
        assert_string_equal(e->name, name);
    }
    assert_null(custos_health_get(h, "one-too-many"));
    assert_ptr_equal(custos_health_get(h, "a"), a);
    custos_health_free(h);
}

/* ---------- balancing ---------- */

typedef struct fixture {
    custos_config_t *cfg;
    custos_health_t *h;
    custos_route_table_t *t;
} fixture_t;

static void load(fixture_t *f, const char *yaml)
{
    char err[1024];
    memset(f, 0, sizeof(*f));
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &f->cfg, err, sizeof(err));
    if (rc)
        fail_msg("config: %s", err);
    assert_int_equal(custos_health_new(&f->h), 0);
    assert_int_equal(custos_route_table_new(f->cfg, f->h, &f->t), 0);
}

static void unload(fixture_t *f)
{
    custos_route_table_unref(f->t);
    custos_health_free(f->h);
    custos_config_unref(f->cfg);
}

static const char *name_at(fixture_t *f, const custos_deployment_config_t *d, int i)
{
    const custos_backend_config_t *c[64];
    size_t n = custos_route_table_eligible(f->t, d, c, 64);
    assert_true(i >= 0 && (size_t)i < n);
    return c[i]->name;
}

/* Picks once and ends the attempt with outcome o; returns the picked backend's name or NULL. */
static const char *pick(fixture_t *f, const custos_deployment_config_t *d, uint64_t tried, uint64_t now,
                        custos_outcome_t o)
{
    custos_route_attempt_t a;
    int i = custos_route_pick(f->t, d, tried, false, 0, now, &a);
    if (i < 0)
        return NULL;
    const char *n = name_at(f, d, i);
    custos_route_attempt_end(f->t, &a, o, now);
    custos_route_attempt_end(f->t, &a, CUSTOS_OUTCOME_FAILURE, now); /* idempotent */
    return n;
}

static void test_swrr_and_priority(void **state)
{
    (void)state;
    fixture_t f;
    load(&f, CFG_HEAD "backends:\n"
                      "  - {name: a, provider: openai, url: \"http://127.0.0.1:1\", weight: 5}\n"
                      "  - {name: b, provider: openai, url: \"http://127.0.0.1:2\", weight: 1}\n"
                      "  - {name: c, provider: openai, url: \"http://127.0.0.1:3\", weight: 1}\n"
                      "  - {name: z, provider: openai, url: \"http://127.0.0.1:4\", priority: 5}\n"
                      "deployments:\n  - {name: d, backends: [z, a, b, c]}\n");
    const custos_deployment_config_t *d = custos_config_find_deployment(f.cfg, "d");
    /* smooth WRR 5:1:1: exact over every 7 picks, and interleaved (nginx's sequence a a b a c a a) */
    char seq[8] = {0};
    for (int i = 0; i < 7; i++)
        seq[i] = pick(&f, d, 0, 1000, CUSTOS_OUTCOME_SUCCESS)[0];
    assert_string_equal(seq, "aabacaa");
    int cnt[3] = {0};
    for (int i = 0; i < 700; i++)
        cnt[pick(&f, d, 0, 1000, CUSTOS_OUTCOME_SUCCESS)[0] - 'a']++;
    assert_int_equal(cnt[0], 500);
    assert_int_equal(cnt[1], 100);
    assert_int_equal(cnt[2], 100);
    /* tried backends are skipped; priority 5 (z) only once the whole group 0 is out */
    assert_string_equal(pick(&f, d, 0x7, 1000, CUSTOS_OUTCOME_SUCCESS), "z"); /* bits 0..2 = a, b, c */
    assert_null(pick(&f, d, 0xf, 1000, CUSTOS_OUTCOME_SUCCESS));
    /* a out of the group (probes failing): b and c share 1:1 */
    custos_health_probe_result(custos_health_find(f.h, "a"), false, 1, 1, 1000);
    memset(cnt, 0, sizeof(cnt));
    for (int i = 0; i < 100; i++)
        cnt[pick(&f, d, 0, 1000, CUSTOS_OUTCOME_SUCCESS)[0] - 'a']++;
    assert_int_equal(cnt[0], 0);
    assert_int_equal(cnt[1], 50);
    assert_int_equal(cnt[2], 50);
    unload(&f);
}

static void test_failover_and_trial(void **state)
{
    (void)state;
    fixture_t f;
    load(&f, CFG_HEAD "upstream: {outlier_detection: {consecutive_failures: 1, base_ejection_ms: 1000, "
                      "max_ejection_ms: 1000}}\n"
                      "backends:\n"
                      "  - {name: a, provider: openai, url: \"http://127.0.0.1:1\"}\n"
                      "  - {name: b, provider: openai, url: \"http://127.0.0.1:2\"}\n"
                      "  - {name: z, provider: openai, url: \"http://127.0.0.1:4\", priority: 5}\n"
                      "deployments:\n  - {name: d, backends: [z, a, b]}\n");
    const custos_deployment_config_t *d = custos_config_find_deployment(f.cfg, "d");
    /* a and b fail once each: ejected; only z (priority 5) is left */
    const char *first = pick(&f, d, 0, 1000, CUSTOS_OUTCOME_FAILURE);
    const char *second = pick(&f, d, 0, 1000, CUSTOS_OUTCOME_FAILURE);
    assert_string_not_equal(first, second);
    assert_true(custos_route_any_selectable(f.t, d, 0, 1000));
    assert_string_equal(pick(&f, d, 0, 1000, CUSTOS_OUTCOME_SUCCESS), "z");
    assert_string_equal(pick(&f, d, 0, 1500, CUSTOS_OUTCOME_SUCCESS), "z");
    /* z fails too: nothing selectable until the ejections run out */
    assert_string_equal(pick(&f, d, 0, 1500, CUSTOS_OUTCOME_FAILURE), "z");
    assert_false(custos_route_any_selectable(f.t, d, 0, 1999));
    assert_null(pick(&f, d, 0, 1999, CUSTOS_OUTCOME_SUCCESS));
    /* at 2000 a and b are due for a trial (group 0 first): one trial each */
    assert_true(custos_route_any_selectable(f.t, d, 0, 2000));
    custos_route_attempt_t t1, t2, t3;
    int i1 = custos_route_pick(f.t, d, 0, false, 0, 2000, &t1);
    assert_true(i1 >= 0 && t1.trial);
    int i2 = custos_route_pick(f.t, d, 0, false, 0, 2000, &t2);
    assert_true(i2 >= 0 && t2.trial && i2 != i1);
    assert_int_equal(custos_route_pick(f.t, d, 0, false, 0, 2000, &t3), -1); /* z's ejection runs to 2500 */
    custos_route_attempt_end(f.t, &t1, CUSTOS_OUTCOME_SUCCESS, 2001);        /* closes */
    custos_route_attempt_end(f.t, &t2, CUSTOS_OUTCOME_FAILURE, 2001);        /* re-opens */
    assert_string_equal(pick(&f, d, 0, 2002, CUSTOS_OUTCOME_SUCCESS), name_at(&f, d, i1));
    assert_string_equal(pick(&f, d, 0, 2002, CUSTOS_OUTCOME_SUCCESS), name_at(&f, d, i1));
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&custos_health_find(f.h, name_at(&f, d, (int)i))->outstanding), 0);
    /* a trial answered with a good head closes the breaker at once, while its (long) stream runs on */
    int i3 = custos_route_pick(f.t, d, 0, false, 0, 4000, &t3); /* i2's second ejection (2 s) ran out */
    assert_int_equal(i3, i2);
    assert_true(t3.trial);
    custos_route_attempt_answered(f.t, &t3, 4001);
    assert_false(t3.trial);
    assert_true(custos_health_available(t3.h));
    assert_int_equal(atomic_load(&t3.h->outstanding), 1);
    custos_route_attempt_end(f.t, &t3, CUSTOS_OUTCOME_SUCCESS, 9000);
    assert_int_equal(atomic_load(&t3.h->outstanding), 0);
    unload(&f);
}

static void test_least_outstanding(void **state)
{
    (void)state;
    fixture_t f;
    load(&f, CFG_HEAD "backends:\n"
                      "  - {name: a, provider: openai, url: \"http://127.0.0.1:1\"}\n"
                      "  - {name: b, provider: openai, url: \"http://127.0.0.1:2\", weight: 2}\n"
                      "deployments:\n  - {name: d, balance: least_outstanding, backends: [a, b]}\n");
    const custos_deployment_config_t *d = custos_config_find_deployment(f.cfg, "d");
    assert_int_equal(d->balance, CUSTOS_BALANCE_LEAST_OUTSTANDING);
    custos_route_attempt_t at[6];
    int got[2] = {0};
    /* held in flight: (o+1)/w smallest wins → b gets two for each of a's */
    for (int i = 0; i < 6; i++) {
        int k = custos_route_pick(f.t, d, 0, false, 0, 1000, &at[i]);
        assert_true(k >= 0);
        got[k]++;
    }
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 4);
    /* a is busy (2 in flight), b idle: b */
    for (int i = 0; i < 6; i++)
        if (at[i].h == custos_health_find(f.h, "b"))
            custos_route_attempt_end(f.t, &at[i], CUSTOS_OUTCOME_SUCCESS, 1000);
    for (int i = 0; i < 3; i++)
        assert_string_equal(pick(&f, d, 0, 1000, CUSTOS_OUTCOME_SUCCESS), "b");
    for (int i = 0; i < 6; i++)
        custos_route_attempt_end(f.t, &at[i], CUSTOS_OUTCOME_SUCCESS, 1000);
    assert_int_equal(atomic_load(&custos_health_find(f.h, "a")->outstanding), 0);
    unload(&f);
}

static void test_sticky(void **state)
{
    (void)state;
    fixture_t f;
    load(&f, CFG_HEAD "backends:\n"
                      "  - {name: a, provider: openai, url: \"http://127.0.0.1:1\"}\n"
                      "  - {name: b, provider: openai, url: \"http://127.0.0.1:2\"}\n"
                      "  - {name: c, provider: openai, url: \"http://127.0.0.1:3\"}\n"
                      "  - {name: e, provider: openai, url: \"http://127.0.0.1:4\"}\n"
                      "deployments:\n  - {name: d, sticky_header: X-User, backends: [a, b, c, e]}\n");
    const custos_deployment_config_t *d = custos_config_find_deployment(f.cfg, "d");
    assert_string_equal(d->sticky_header, "x-user");
    int where[200], spread[4] = {0};
    for (int k = 0; k < 200; k++) {
        char key[16];
        snprintf(key, sizeof(key), "user-%d", k);
        uint64_t hk = custos_route_key_hash(key, strlen(key));
        custos_route_attempt_t a;
        where[k] = custos_route_pick(f.t, d, 0, true, hk, 1000, &a);
        custos_route_attempt_end(f.t, &a, CUSTOS_OUTCOME_SUCCESS, 1000);
        for (int r = 0; r < 5; r++) { /* stable */
            assert_int_equal(custos_route_pick(f.t, d, 0, true, hk, 1000, &a), where[k]);
            custos_route_attempt_end(f.t, &a, CUSTOS_OUTCOME_SUCCESS, 1000);
        }
        spread[where[k]]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(spread[i] >= 25); /* 50 expected each */
    /* consistent: with backend 1 tried (or down), only its keys move */
    for (int k = 0; k < 200; k++) {
        char key[16];
        snprintf(key, sizeof(key), "user-%d", k);
        custos_route_attempt_t a;
        int i = custos_route_pick(f.t, d, 1ULL << 1, true, custos_route_key_hash(key, strlen(key)), 1000, &a);
        custos_route_attempt_end(f.t, &a, CUSTOS_OUTCOME_SUCCESS, 1000);
        if (where[k] != 1)
            assert_int_equal(i, where[k]);
        else
            assert_int_not_equal(i, 1);
    }
    unload(&f);
}

/* Several threads (as workers do), each with its own table over one shared registry, picking and ending
 * attempts with a mix of outcomes while a "prober" flips probe results: counts stay consistent. */
typedef struct hammer {
    custos_config_t *cfg;
    custos_health_t *h;
    unsigned seed;
    int picks;
} hammer_t;

static void *hammer_run(void *arg)
{
    hammer_t *hm = arg;
    custos_route_table_t *t = NULL;
    if (custos_route_table_new(hm->cfg, hm->h, &t) < 0)
        return NULL;
    const custos_deployment_config_t *d = custos_config_find_deployment(hm->cfg, "d");
    unsigned x = hm->seed;
    for (int i = 0; i < 20000; i++) {
        x = x * 1103515245u + 12345u;
        uint64_t now = 1000 + (uint64_t)i / 4;
        custos_route_attempt_t a;
        int k = custos_route_pick(t, d, (x >> 8) & 3, (x >> 12) & 1, x, now, &a);
        if (k < 0)
            continue;
        hm->picks++;
        custos_outcome_t o = (x >> 16) % 5 == 0   ? CUSTOS_OUTCOME_FAILURE
                             : (x >> 16) % 7 == 0 ? CUSTOS_OUTCOME_NEUTRAL
                                                  : CUSTOS_OUTCOME_SUCCESS;
        custos_route_attempt_end(t, &a, o, now);
    }
    custos_route_table_unref(t);
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    fixture_t f;
    load(&f, CFG_HEAD "upstream: {outlier_detection: {consecutive_failures: 2, base_ejection_ms: 5, "
                      "max_ejection_ms: 40}}\n"
                      "backends:\n"
                      "  - {name: a, provider: openai, url: \"http://127.0.0.1:1\"}\n"
                      "  - {name: b, provider: openai, url: \"http://127.0.0.1:2\", weight: 3}\n"
                      "  - {name: c, provider: openai, url: \"http://127.0.0.1:3\", priority: 1}\n"
                      "deployments:\n  - {name: d, balance: least_outstanding, backends: [a, b, c]}\n");
    hammer_t hm[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        hm[i] = (hammer_t){.cfg = f.cfg, .h = f.h, .seed = 17u * (unsigned)i + 1u};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &hm[i]), 0);
    }
    custos_backend_health_t *c = custos_health_get(f.h, "c");
    for (int i = 0; i < 2000; i++)
        custos_health_probe_result(c, i % 3 != 0, 1, 2, 1000 + (uint64_t)i);
    int picks = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        picks += hm[i].picks;
    }
    assert_true(picks > 1000);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&custos_health_find(f.h, names[i])->outstanding), 0);
    assert_true(atomic_load(&custos_health_find(f.h, "a")->ejections) > 0);
    unload(&f);
}

/* ---------- boundary and requirements ---------- */

static void test_requirements(void **state)
{
    (void)state;
    fixture_t f;
    load(&f,
         CFG_HEAD "backends:\n"
                  "  - {name: eu, provider: openai, url: \"http://127.0.0.1:1\", region: swedencentral, "
                  "data_zone: eu, attributes: {zero_data_retention: true, no_training: true}}\n"
                  "  - {name: us-plain, provider: openai, url: \"http://127.0.0.1:2\", region: eastus, data_zone: us}\n"
                  "  - {name: us-zdr, provider: openai, url: \"http://127.0.0.1:3\", region: westus, data_zone: us, "
                  "attributes: {zero_data_retention: true, no_training: true}}\n"
                  "deployments:\n"
                  "  - {name: g, backends: [eu, us-plain, us-zdr], requires: {zero_data_retention: true, "
                  "regions: [eastus, westus]}}\n"
                  "  - {name: z, type: datazone, data_zone: us, backends: [us-plain, us-zdr]}\n");
    const custos_deployment_config_t *g = custos_config_find_deployment(f.cfg, "g");
    const custos_backend_config_t *c[8];
    assert_int_equal(custos_route_table_eligible(f.t, g, c, 8), 1);
    assert_string_equal(c[0]->name, "us-zdr");
    assert_int_equal(custos_route_candidates(g, c, 8), 1);
    for (int i = 0; i < 20; i++)
        assert_string_equal(pick(&f, g, 0, 1000, CUSTOS_OUTCOME_SUCCESS), "us-zdr");
    /* the only eligible backend unavailable: nothing, never the others */
    custos_health_probe_result(custos_health_find(f.h, "us-zdr"), false, 1, 1, 1000);
    assert_null(pick(&f, g, 0, 1000, CUSTOS_OUTCOME_SUCCESS));
    assert_false(custos_route_any_selectable(f.t, g, 0, 1000));
    assert_null(custos_health_find(f.h, "eu")); /* never even looked up for g or z */
    char where[256];
    custos_route_describe_boundary(g, where, sizeof(where));
    assert_string_equal(where, "global; requires zero_data_retention, regions eastus|westus");
    const custos_deployment_config_t *z = custos_config_find_deployment(f.cfg, "z");
    custos_route_describe_boundary(z, where, sizeof(where));
    assert_string_equal(where, "data zone us");
    assert_string_equal(pick(&f, z, 0, 1000, CUSTOS_OUTCOME_SUCCESS), "us-plain");
    /* a deployment of another snapshot is refused */
    custos_deployment_config_t other = *z;
    assert_int_equal(custos_route_pick(f.t, &other, 0, false, 0, 1000, &(custos_route_attempt_t){0}), -1);
    unload(&f);
}

static void expect_error(const char *yaml, const char *want)
{
    custos_config_t *c = NULL;
    char err[1024];
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));
    if (rc == 0) {
        custos_config_unref(c);
        fail_msg("config should be refused (want '%s')", want);
    }
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
}

#define BE1 "backends:\n  - {name: a, provider: openai, url: \"http://127.0.0.1:1\", region: eastus"

static void test_config_keys(void **state)
{
    (void)state;
    custos_config_t *c = NULL;
    char err[1024];
    const char *y = CFG_HEAD BE1 ", weight: 7, health_check: {}}\n"
                                 "  - {name: z, provider: azure, url: \"https://z.example/base\", health_check: "
                                 "{path: /ping, interval_ms: 500, timeout_ms: 100, healthy_threshold: 1, "
                                 "unhealthy_threshold: 4}}\n"
                                 "  - {name: n, provider: openai-compatible, url: \"http://127.0.0.1:2/llm\"}\n"
                                 "deployments:\n  - {name: d, backends: [a, z, n]}\n";
    assert_int_equal(custos_config_load_string("t.yaml", y, strlen(y), &c, err, sizeof(err)), 0);
    const custos_backend_config_t *a = custos_config_find_backend(c, "a");
    assert_int_equal(a->weight, 7);
    assert_true(a->hc_enabled);
    assert_string_equal(a->hc_path, "/v1/models");
    assert_int_equal(a->hc_interval_ms, 10000);
    assert_int_equal(a->hc_timeout_ms, 2000);
    assert_int_equal(a->hc_healthy_threshold, 2);
    assert_int_equal(a->hc_unhealthy_threshold, 3);
    const custos_backend_config_t *z = custos_config_find_backend(c, "z");
    assert_string_equal(z->hc_path, "/ping");
    assert_int_equal(z->hc_interval_ms, 500);
    assert_int_equal(z->hc_unhealthy_threshold, 4);
    const custos_backend_config_t *n = custos_config_find_backend(c, "n");
    assert_false(n->hc_enabled);
    assert_null(n->hc_path);
    assert_int_equal(n->weight, 1);
    assert_int_equal(c->upstream.outlier_consecutive_failures, 5);
    assert_int_equal(c->upstream.outlier_base_ejection_ms, 30000);
    assert_int_equal(c->upstream.outlier_max_ejection_ms, 300000);
    const custos_deployment_config_t *d = custos_config_find_deployment(c, "d");
    assert_int_equal(d->balance, CUSTOS_BALANCE_WEIGHTED_ROUND_ROBIN);
    assert_null(d->sticky_header);
    assert_int_equal(d->n_require_regions, 0);
    custos_config_unref(c);
    /* azure default probe path */
    y = CFG_HEAD "backends:\n  - {name: z, provider: azure, url: \"https://z.example/base\", health_check: {}}\n"
                 "deployments:\n  - {name: d, backends: [z]}\n";
    assert_int_equal(custos_config_load_string("t.yaml", y, strlen(y), &c, err, sizeof(err)), 0);
    assert_string_equal(custos_config_find_backend(c, "z")->hc_path, "/base/openai/models?api-version=2024-10-21");
    custos_config_unref(c);

    expect_error(CFG_HEAD BE1 ", weight: 0}\ndeployments:\n  - {name: d, backends: [a]}\n",
                 "backends[0].weight: 0 is out of range");
    expect_error(CFG_HEAD BE1 ", health_check: {timeout_ms: 3000, interval_ms: 1000}}\n"
                              "deployments:\n  - {name: d, backends: [a]}\n",
                 "health_check.timeout_ms: longer than interval_ms");
    expect_error(CFG_HEAD BE1 ", health_check: {path: ping}}\ndeployments:\n  - {name: d, backends: [a]}\n",
                 "health_check.path: must start with '/'");
    expect_error(CFG_HEAD BE1 ", health_check: {every: 1}}\ndeployments:\n  - {name: d, backends: [a]}\n",
                 "unknown key 'every' in backends[0].health_check");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, balance: random, backends: [a]}\n",
                 "deployments[0].balance: expected one of weighted_round_robin, least_outstanding");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, sticky_header: \"x user\", backends: [a]}\n",
                 "sticky_header: not an HTTP header name");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, requires: {zero_data_retention: true}, backends: [a]}\n",
                 "deployments[0].requires: no backend of deployment d has the required attributes");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, requires: {regions: [westus]}, backends: [a]}\n",
                 "no backend of deployment d has the required attributes");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, requires: {regions: []}, backends: [a]}\n",
                 "requires.regions: at least one region is required");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, requires: {regions: [EastUS]}, backends: [a]}\n",
                 "requires.regions[0]: must match [a-z0-9-]{1,64}");
    expect_error(CFG_HEAD BE1 "}\ndeployments:\n  - {name: d, requires: {pci: true}, backends: [a]}\n",
                 "unknown key 'pci' in deployments[0].requires");
    expect_error(CFG_HEAD "upstream: {outlier_detection: {base_ejection_ms: 5000, max_ejection_ms: 1000}}\n" BE1
                          "}\ndeployments:\n  - {name: d, backends: [a]}\n",
                 "max_ejection_ms: below base_ejection_ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breaker_transitions), cmocka_unit_test(test_breaker_off_and_stale_trial),
        cmocka_unit_test(test_probe_thresholds),    cmocka_unit_test(test_registry),
        cmocka_unit_test(test_swrr_and_priority),   cmocka_unit_test(test_failover_and_trial),
        cmocka_unit_test(test_least_outstanding),   cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_concurrent),          cmocka_unit_test(test_requirements),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
