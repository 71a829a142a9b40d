/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for src/quota: window arithmetic against hand-computed cases with an injected clock
 * (request windows, the one-minute token window, retry-after, remaining counts, correction with the real
 * usage, all-or-nothing across keys), the Redis fallback modes without a reachable store, the request
 * estimate (chat overhead, completion allowance), and the quota config keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "metrics/metrics.h"
#include "quota/quota.h"
#include "util/buf.h"
#include "util/err.h"

/* 1,700,000,040,000 ms: a whole minute (and so a whole 1 s and 10 s window) since the epoch */
#define T0 UINT64_C(1700000040000)

static custos_quota_t *new_quota(unsigned rpm_window_s)
{
    custos_quotas_config_t qc = {.rpm_window_s = rpm_window_s};
    custos_quota_opts_t o = {.nshards = 1, .cfg = &qc, .no_thread = true};
    custos_quota_t *q = NULL;
    char err[256];
    assert_int_equal(custos_quota_new(&o, &q, err, sizeof(err)), 0);
    return q;
}

static void test_request_window(void **state)
{
    (void)state;
    custos_quota_t *q = new_quota(10);
    /* 10,000 TPM → 60 RPM (6 per 1,000) → 10 requests per 10 s window */
    custos_quota_key_t k = {"d/gpt-4o", 10000, 60};
    custos_quota_ticket_t t;
    for (int i = 1; i <= 10; i++) {
        custos_quota_admit(q, &k, 1, 100, T0 + (uint64_t)i * 100, 0, &t);
        assert_true(t.active);
        assert_true(t.allowed);
        assert_int_equal(t.remaining_requests, 10 - i);
        assert_int_equal(t.remaining_tokens, 10000 - 100 * i);
        custos_quota_settle(q, &t, -1, T0 + (uint64_t)i * 100);
    }
    custos_quota_admit(q, &k, 1, 100, T0 + 5000, 0, &t);
    assert_false(t.allowed);
    assert_int_equal(t.status, 429);
    assert_false(t.tokens_limited);
    assert_int_equal(t.retry_after_ms, 5000); /* until the 10 s window ends */
    assert_int_equal(t.remaining_requests, 0);
    assert_int_equal(t.remaining_tokens, 9000); /* the refused request charged nothing */
    /* the next 10 s window: requests again, tokens still in the same minute */
    custos_quota_admit(q, &k, 1, 100, T0 + 10000, 0, &t);
    assert_true(t.allowed);
    assert_int_equal(t.remaining_requests, 9);
    assert_int_equal(t.remaining_tokens, 8900);
    custos_quota_free(q);
}

static void test_one_second_window_and_rounding(void **state)
{
    (void)state;
    custos_quota_t *q = new_quota(1);
    custos_quota_key_t k = {"d/a", 0, 600}; /* 600 RPM over 1 s windows: 10 per second (Azure's example) */
    custos_quota_ticket_t t;
    for (int i = 0; i < 10; i++) {
        custos_quota_admit(q, &k, 1, 0, T0 + 500, 0, &t);
        assert_true(t.allowed);
    }
    custos_quota_admit(q, &k, 1, 0, T0 + 750, 0, &t);
    assert_false(t.allowed);
    assert_int_equal(t.retry_after_ms, 250);
    assert_int_equal(t.remaining_tokens, -1); /* no token limit */
    custos_quota_free(q);

    q = new_quota(10);
    custos_quota_key_t k2 = {"d/b", 0, 7}; /* ceil(7 × 10 / 60) = 2 per 10 s */
    custos_quota_admit(q, &k2, 1, 0, T0, 0, &t);
    assert_true(t.allowed);
    assert_int_equal(t.remaining_requests, 1);
    custos_quota_admit(q, &k2, 1, 0, T0, 0, &t);
    assert_true(t.allowed);
    custos_quota_admit(q, &k2, 1, 0, T0, 0, &t);
    assert_false(t.allowed);
    custos_quota_free(q);
}

static void test_token_window_and_correction(void **state)
{
    (void)state;
    custos_quota_t *q = new_quota(10);
    custos_quota_key_t k = {"d/a", 1000, 1000};
    custos_quota_ticket_t t1, t2, t3;
    custos_quota_admit(q, &k, 1, 400, T0, 0, &t1);
    assert_true(t1.allowed);
    assert_int_equal(t1.remaining_tokens, 600);
    custos_quota_admit(q, &k, 1, 400, T0 + 1000, 0, &t2);
    assert_true(t2.allowed);
    assert_int_equal(t2.remaining_tokens, 200);
    custos_quota_admit(q, &k, 1, 400, T0 + 15000, 0, &t3);
    assert_false(t3.allowed);
    assert_true(t3.tokens_limited);
    assert_int_equal(t3.retry_after_ms, 45000); /* until the minute ends */
    assert_int_equal(t3.remaining_tokens, 200);
    /* the first answer used 100 tokens (usage): 300 come back */
    custos_quota_settle(q, &t1, 100, T0 + 16000);
    custos_quota_settle(q, &t1, 0, T0 + 16000); /* idempotent */
    custos_quota_admit(q, &k, 1, 400, T0 + 17000, 0, &t3);
    assert_true(t3.allowed);
    assert_int_equal(t3.remaining_tokens, 100); /* 1000 - (100 + 400 + 400) */
    /* usage above the estimate is charged too */
    custos_quota_settle(q, &t2, 480, T0 + 18000);
    custos_quota_ticket_t t4;
    custos_quota_admit(q, &k, 1, 0, T0 + 18000, 0, &t4);
    assert_true(t4.allowed);
    assert_int_equal(t4.remaining_tokens, 20);
    /* a request larger than the whole minute's quota is refused */
    custos_quota_admit(q, &k, 1, 1001, T0 + 60000, 0, &t4);
    assert_false(t4.allowed);
    assert_int_equal(t4.retry_after_ms, 60000);
    custos_quota_free(q);
}

static void test_correction_after_window(void **state)
{
    (void)state;
    custos_quota_t *q = new_quota(10);
    custos_quota_key_t k = {"d/a", 1000, 0};
    custos_quota_ticket_t t, u;
    custos_quota_admit(q, &k, 1, 500, T0 + 59000, 0, &t);
    assert_true(t.allowed);
    custos_quota_admit(q, &k, 1, 300, T0 + 61000, 0, &u); /* new minute */
    assert_true(u.allowed);
    assert_int_equal(u.remaining_tokens, 700);
    custos_quota_settle(q, &t, 0, T0 + 61000); /* belongs to the previous minute: no effect */
    custos_quota_admit(q, &k, 1, 0, T0 + 62000, 0, &u);
    assert_int_equal(u.remaining_tokens, 700);
    assert_int_equal(u.remaining_requests, -1); /* rpm 0: no request limit */
    custos_quota_free(q);
}

static void test_all_or_nothing(void **state)
{
    (void)state;
    custos_quota_t *q = new_quota(10);
    custos_quota_key_t k[2] = {{"d/a", 10000, 0}, {"dp/a/alice", 500, 0}};
    custos_quota_ticket_t t;
    custos_quota_admit(q, k, 2, 400, T0, 0, &t);
    assert_true(t.allowed);
    assert_int_equal(t.remaining_tokens, 100); /* the smallest over the keys */
    custos_quota_admit(q, k, 2, 200, T0, 0, &t);
    assert_false(t.allowed);
    assert_int_equal(t.refused_scope, 1);
    custos_quota_admit(q, k, 1, 0, T0, 0, &t); /* the deployment alone: the refused request charged nothing */
    assert_true(t.allowed);
    assert_int_equal(t.remaining_tokens, 9600);
    /* keys without limits do not make a request quota-bound */
    custos_quota_key_t none = {"d/free", 0, 0};
    custos_quota_admit(q, &none, 1, 1000000, T0, 0, &t);
    assert_true(t.allowed);
    assert_false(t.active);
    custos_quota_free(q);
}

static int64_t metric_value(custos_quota_t *q, const char *line_prefix)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(custos_quota_metrics(q), &b), 0);
    assert_int_equal(custos_buf_append(&b, "", 1), 0);
    const char *p = strstr(custos_buf_peek(&b), line_prefix);
    int64_t v = p ? strtoll(p + strlen(line_prefix), NULL, 10) : -1;
    custos_buf_dispose(&b);
    return v;
}

/* No store listening on the port: the configured fallback applies and shows in the metrics. */
static void test_redis_down_modes(void **state)
{
    (void)state;
    static const custos_quota_failure_t modes[] = {CUSTOS_QUOTA_FAIL_LOCAL, CUSTOS_QUOTA_FAIL_OPEN,
                                                   CUSTOS_QUOTA_FAIL_CLOSED};
    for (size_t m = 0; m < 3; m++) {
        custos_quotas_config_t qc = {.rpm_window_s = 10,
                                     .redis_host = "127.0.0.1",
                                     .redis_port = 1, /* nothing listens there */
                                     .redis_prefix = "t:",
                                     .redis_sync_interval_ms = 100,
                                     .redis_timeout_ms = 100,
                                     .on_failure = modes[m]};
        custos_quota_opts_t o = {.nshards = 1, .cfg = &qc, .no_thread = true};
        custos_quota_t *q = NULL;
        char err[256];
        assert_int_equal(custos_quota_new(&o, &q, err, sizeof(err)), 0);
        custos_quota_key_t k = {"d/a", 0, 6}; /* one request per 10 s */
        custos_quota_ticket_t t;
        custos_quota_admit(q, &k, 1, 0, T0, 0, &t); /* before the first sync: down until it answers */
        assert_true(custos_quota_sync_now(q, T0) < 0);
        assert_false(custos_quota_redis_up(q));
        assert_int_equal(metric_value(q, "\ncustos_quota_redis_up "), 0);
        assert_int_equal(metric_value(q, "\ncustos_quota_redis_sync_errors_total "), 1);
        custos_quota_admit(q, &k, 1, 0, T0 + 1, 0, &t);
        switch (modes[m]) {
        case CUSTOS_QUOTA_FAIL_LOCAL: /* this replica's own counts: the second request is over */
            assert_false(t.allowed);
            assert_int_equal(t.status, 429);
            assert_int_equal(metric_value(q, "\ncustos_quota_fallback_total{mode=\"local\"} "), 2);
            break;
        case CUSTOS_QUOTA_FAIL_OPEN:
            assert_true(t.allowed);
            assert_int_equal(metric_value(q, "\ncustos_quota_fallback_total{mode=\"open\"} "), 2);
            break;
        case CUSTOS_QUOTA_FAIL_CLOSED:
            assert_false(t.allowed);
            assert_int_equal(t.status, 503);
            assert_true(t.retry_after_ms >= 1000);
            assert_int_equal(
                metric_value(q, "\ncustos_quota_rejected_total{scope=\"deployment\",kind=\"store_unavailable\"} "), 2);
            break;
        }
        custos_quota_free(q);
    }
}

/* ---------- estimate ---------- */

static custos_tok_t *tok[CUSTOS_TOK_NKINDS];

static void test_chat_overhead(void **state)
{
    (void)state;
    if (access(".deps/tiktoken/o200k_base.tiktoken", R_OK) != 0)
        skip();
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        assert_int_equal(custos_tok_load(".deps/tiktoken", (custos_tok_kind_t)k, &tok[k]), 0);
    json_object *b = json_tokener_parse("{\"messages\":[{\"role\":\"system\",\"content\":\"You are helpful.\"},"
                                        "{\"role\":\"user\",\"content\":\"Hello, world!\"}]}");
    assert_non_null(b);
    /* 2 × 3 + role (1 each) + "You are helpful." (4) + "Hello, world!" (4) + 3 = 19 on both encodings */
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        assert_int_equal(custos_quota_prompt_tokens(tok[k], CUSTOS_QUOTA_REQ_CHAT, b), 19);
    json_object_put(b);
    /* name: its tokens + 1; array content: text parts */
    b = json_tokener_parse("{\"messages\":[{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\","
                           "\"text\":\"Hello, world!\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}");
    int64_t bob = custos_tok_count(tok[CUSTOS_TOK_O200K], "bob", 3);
    assert_int_equal(custos_quota_prompt_tokens(tok[CUSTOS_TOK_O200K], CUSTOS_QUOTA_REQ_CHAT, b),
                     3 + 1 + bob + 1 + 4 + 3);
    json_object_put(b);
    /* completions prompt: strings and token arrays; embeddings input */
    b = json_tokener_parse("{\"prompt\":[\"hello world\",[1,2,3]],\"input\":[[5,6],\"hello world\"]}");
    assert_int_equal(custos_quota_prompt_tokens(tok[CUSTOS_TOK_CL100K], CUSTOS_QUOTA_REQ_COMPLETIONS, b), 5);
    assert_int_equal(custos_quota_prompt_tokens(tok[CUSTOS_TOK_CL100K], CUSTOS_QUOTA_REQ_EMBEDDINGS, b), 4);
    json_object_put(b);
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        custos_tok_free(tok[k]);
}

static void test_allowance(void **state)
{
    (void)state;
    json_object *b = json_tokener_parse("{\"max_tokens\":100,\"n\":2,\"best_of\":3}");
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_COMPLETIONS, b, 0), 300);
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_EMBEDDINGS, b, 0), 0);
    json_object_put(b);
    b = json_tokener_parse("{\"max_tokens\":100,\"max_completion_tokens\":50,\"n\":4}");
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_CHAT, b, 0), 200);
    json_object_put(b);
    b = json_tokener_parse("{}");
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_CHAT, b, 0), 0);
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_CHAT, b, 512), 512);
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_COMPLETIONS, b, 512), 16);
    json_object_put(b);
    b = json_tokener_parse("{\"max_tokens\":\"many\",\"n\":-3}"); /* wrong types are the backend's to refuse */
    assert_int_equal(custos_quota_completion_allowance(CUSTOS_QUOTA_REQ_CHAT, b, 7), 7);
    json_object_put(b);
}

/* ---------- config ---------- */

#define MIN_HEAD                                                                                                       \
    "listeners:\n  - address: \"127.0.0.1:8443\"\n"                                                                    \
    "identity:\n  api_keys:\n    - name: demo\n      sha256: "                                                         \
    "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n"                                           \
    "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"

static custos_config_t *load(const char *yaml, char *err, size_t errlen)
{
    custos_config_t *c = NULL;
    custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, errlen);
    return c;
}

static void test_config_keys(void **state)
{
    (void)state;
    char err[512];
    custos_config_t *c = load(MIN_HEAD "deployments:\n"
                                       "  - name: a\n    model: gpt-4\n    backends: [mock]\n"
                                       "    quota: {tpm: 30000, per_principal: {tpm: 5000, rpm: 3}}\n"
                                       "    tokenizer: o200k_base\n"
                                       "  - name: b\n    backends: [mock]\n    quota: {tpm: 1000, rpm: 0}\n"
                                       "quotas:\n  rpm_window_s: 1\n  default_max_tokens: 256\n"
                                       "  principals:\n    - {principal: alice, tpm: 100}\n",
                              err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->deployments[0].quota.tpm, 30000);
    assert_int_equal(c->deployments[0].quota.rpm, 180); /* 6 per 1,000 TPM */
    assert_int_equal(c->deployments[0].quota_per_principal.tpm, 5000);
    assert_int_equal(c->deployments[0].quota_per_principal.rpm, 3);
    assert_int_equal(c->deployments[0].tokenizer, CUSTOS_TOK_O200K);
    assert_int_equal(c->deployments[1].quota.rpm, 0); /* explicit 0: no request limit */
    assert_int_equal(c->deployments[1].tokenizer, -1);
    assert_int_equal(c->quotas.rpm_window_s, 1);
    assert_int_equal(c->quotas.default_max_tokens, 256);
    assert_int_equal(c->quotas.n_principals, 1);
    assert_string_equal(c->quotas.principals[0].principal, "alice");
    assert_int_equal(c->quotas.principals[0].limit.rpm, 0); /* 100 * 6 / 1000 rounds down */
    assert_null(c->quotas.redis_host);
    assert_non_null(c->quotas.tokenizer_dir);
    custos_config_unref(c);

    c = load(MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\n"
                      "quotas:\n  redis: {host: 127.0.0.1, port: 6380, on_failure: closed}\n",
             err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    assert_string_equal(c->quotas.redis_host, "127.0.0.1");
    assert_int_equal(c->quotas.redis_port, 6380);
    assert_int_equal(c->quotas.on_failure, CUSTOS_QUOTA_FAIL_CLOSED);
    assert_int_equal(c->quotas.redis_sync_interval_ms, 100);
    assert_string_equal(c->quotas.redis_prefix, "custos:quota:");
    custos_config_unref(c);

    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\n    quota: {tpm: 10, tokens: 3}\n",
         "unknown key 'tokens' in deployments[0].quota"},
        {MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\n    tokenizer: p50k_base\n",
         "deployments[0].tokenizer: expected one of o200k_base, cl100k_base"},
        {MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\nquotas: {rpm_window_s: 5}\n",
         "quotas.rpm_window_s: expected 1, 10 or 60"},
        {MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\nquotas: {redis: {port: 1}}\n",
         "quotas.redis: missing required key 'host'"},
        {MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\nquotas: {redis: {host: h, on_failure: maybe}}\n",
         "quotas.redis.on_failure: expected one of local, open, closed"},
        {MIN_HEAD "deployments:\n  - name: a\n    backends: [mock]\n    quota: {tpm: -1}\n",
         "deployments[0].quota.tpm: -1 is out of range"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = load(bad[i].yaml, err, sizeof(err));
        assert_null(c);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, err, bad[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_window),
        cmocka_unit_test(test_one_second_window_and_rounding),
        cmocka_unit_test(test_token_window_and_correction),
        cmocka_unit_test(test_correction_after_window),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_redis_down_modes),
        cmocka_unit_test(test_chat_overhead),
        cmocka_unit_test(test_allowance),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
