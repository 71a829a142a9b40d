/* SPDX-License-Identifier: Apache-2.0
 * Use-case registry (config use_cases: and governance/usecase.h) and the review queue on SQLite
 * (governance/review.h): config validation and its errors, request resolution, deterministic QA sampling,
 * enqueue / list / decide / expire / statistics, sealed content. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "crypto/crypto.h"
#include "governance/review.h"
#include "governance/usecase.h"
#include "store/store.h"
#include "util/err.h"

#define BASE                                                                                                           \
    "listeners: [{address: \"127.0.0.1:8443\"}]\n"                                                                     \
    "identity: {api_keys: [{name: k, key_env: HOME}]}\n"                                                               \
    "backends: [{name: b, provider: openai, url: \"http://127.0.0.1:9\"}]\n"                                           \
    "rai_policies: [{name: lax, content_filters: [{category: hate, threshold: high}],\n"                               \
    "                prompt_shields: {jailbreak: annotate}}]\n"                                                        \
    "deployments:\n"                                                                                                   \
    "  - {name: d1, backends: [b]}\n"                                                                                  \
    "  - {name: d2, backends: [b]}\n"                                                                                  \
    "  - {name: weak, backends: [b], rai_policy: lax}\n"

static custos_config_t *load(const char *extra, char *err, size_t errlen)
{
    char yaml[8192];
    snprintf(yaml, sizeof(yaml), "%s%s", BASE, extra);
    custos_config_t *c = NULL;
    custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, errlen);
    return c;
}

static void expect_error(const char *extra, const char *needle)
{
    char err[1024] = "";
    custos_config_t *c = load(extra, err, sizeof(err));
    if (c || !strstr(err, needle))
        fail_msg("expected an error containing '%s', got '%s'", needle, c ? "(loaded)" : err);
    custos_config_unref(c);
}

#define GOOD                                                                                                           \
    "retention: {content: {days: 3}}\n"                                                                                \
    "governance: {require_use_case: true}\n"                                                                           \
    "use_cases:\n"                                                                                                     \
    "  - id: letters\n"                                                                                                \
    "    description: drafts letters\n"                                                                                \
    "    owner: claims@example.com\n"                                                                                  \
    "    tier: high\n"                                                                                                 \
    "    deployments: [d1]\n"                                                                                          \
    "    minimum_policy: {filters: {hate: medium, self_harm: high}, jailbreak: block, pii: {prompt: off}}\n"           \
    "    validation: {validated: true, evidence: VAL-1, date: \"2026-01-01\", expires: \"2030-12-31\"}\n"              \
    "    regulatory_review: true\n"                                                                                    \
    "    review_deadline_s: 600\n"                                                                                     \
    "    bind: {api_keys: [k], principals: [svc], app_ids: [app-1]}\n"                                                 \
    "  - {id: qa, owner: o, tier: standard, deployments: [d1, d2, weak], qa_sample_rate: 0.25}\n"                      \
    "  - {id: unval, owner: o, tier: elevated, deployments: [d1], validation: {required: true}}\n"

static void test_config_parses(void **state)
{
    (void)state;
    char err[1024] = "";
    custos_config_t *c = load(GOOD, err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    assert_int_equal(c->n_use_cases, 3);
    assert_true(c->governance.require_use_case);
    const custos_use_case_config_t *u = &c->use_cases[0];
    assert_string_equal(u->id, "letters");
    assert_int_equal(u->tier, CUSTOS_TIER_HIGH);
    assert_int_equal(u->n_deployments, 1);
    assert_int_equal(u->min_threshold[0], 4);
    assert_int_equal(u->min_threshold[3], 6);
    assert_int_equal(u->min_jailbreak, CUSTOS_RAI_BLOCK);
    assert_true(u->validated && u->validation_required && u->regulatory_review);
    assert_int_equal(u->expires_s, 1924905600 + 86400); /* 2030-12-31 00:00 UTC + one day */
    assert_int_equal(u->review_deadline_s, 600);
    assert_int_equal(c->use_cases[1].qa_rate_ppm, 250000);
    assert_int_equal(c->use_cases[1].review_deadline_s, 86400);
    assert_ptr_equal(custos_usecase_find(c, "qa", 2), &c->use_cases[1]);
    assert_null(custos_usecase_find(c, "q", 1));
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_usecase_write_json(&b, u, 1764300000), 0);
    assert_non_null(strstr(custos_buf_peek(&b), "\"tier\":\"high\""));
    assert_non_null(strstr(custos_buf_peek(&b), "\"filters\":{\"hate\":\"medium\",\"self_harm\":\"high\"}"));
    assert_non_null(strstr(custos_buf_peek(&b), "\"current\":true"));
    custos_buf_dispose(&b);
    custos_config_unref(c);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_error("use_cases: [{id: a, owner: o, tier: high, deployments: [d1], validation: {validated: true, evidence: "
                 "x}}]\n",
                 "t.yaml:10:13: use_cases[0]: tier high needs the content stored for its reviewers, but "
                 "retention.content is none");
    expect_error("use_cases: [{id: a, owner: o, tier: elevated, deployments: [d1]}]\n",
                 "tier elevated needs the content stored");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [weak], minimum_policy: {filters: {hate: "
                 "medium}}}]\n",
                 "use_cases[0].deployments[0]: deployment weak's rai_policy lax is weaker than the use case's "
                 "minimum_policy (filters.hate needs prompt blocking at medium or stricter, the policy has high)");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [weak], minimum_policy: {jailbreak: "
                 "block}}]\n",
                 "jailbreak needs block, the policy has annotate");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], minimum_policy: {pii: {prompt: "
                 "redact}}}]\n",
                 "pii.prompt is weaker than the minimum");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], minimum_policy: {groundedness: "
                 "true}}]\n",
                 "groundedness is required but the policy does not check it");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [nope]}]\n", "unknown deployment 'nope'");
    expect_error("use_cases: [{id: A!, owner: o, tier: standard, deployments: [d1]}]\n", "must be 1..64 characters");
    expect_error("use_cases: [{id: a, owner: o, deployments: [d1]}]\n", "missing required key 'tier'");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1]}, {id: a, owner: o, tier: standard, "
                 "deployments: [d1]}]\n",
                 "use case 'a' is defined twice");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], bind: {api_keys: [k]}}, {id: b, "
                 "owner: o, tier: standard, deployments: [d1], bind: {api_keys: [k]}}]\n",
                 "'k' is already bound to use case a");
    expect_error("retention: {content: {days: 3}}\nuse_cases: [{id: a, owner: o, tier: high, deployments: [d1], "
                 "qa_sample_rate: 0.1}]\n",
                 "qa_sample_rate: only for tier standard");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], qa_sample_rate: 1.5}]\n",
                 "qa_sample_rate: must be from 0 to 1");
    expect_error("retention: {content: {days: 3}}\nuse_cases: [{id: a, owner: o, tier: high, deployments: [d1], "
                 "validation: {required: false}}]\n",
                 "high-tier use cases always require validation");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], validation: {validated: true}}]\n",
                 "validated: true needs an evidence reference");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], validation: {expires: "
                 "\"2026-02-30\"}}]\n",
                 "expires: expected a date YYYY-MM-DD");
    expect_error("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1], minimum_policy: {filters: {gore: "
                 "low}}}]\n",
                 "unknown category 'gore'");
    expect_error("governance: {require: true}\n", "unknown key 'require' in governance");
}

static void test_resolve(void **state)
{
    (void)state;
    char err[1024] = "";
    custos_config_t *c = load(GOOD, err, sizeof(err));
    assert_non_null(c);
    const custos_use_case_config_t *u = NULL;
    custos_uc_caller_t none = {0}, key = {"k", "p", NULL}, app = {NULL, "x", "app-1"}, svc = {NULL, "svc", NULL};
    int64_t now = 1764300000;
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &none, "d1", now, &u), CUSTOS_UC_REQUIRED);
    assert_int_equal(custos_usecase_resolve(c, "nope", 4, &key, "d1", now, &u), CUSTOS_UC_NOT_FOUND);
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &key, "d1", now, &u), CUSTOS_UC_OK);
    assert_string_equal(u->id, "letters");
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &app, "d1", now, &u), CUSTOS_UC_OK);
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &svc, "d1", now, &u), CUSTOS_UC_OK);
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &key, "d2", now, &u), CUSTOS_UC_DEPLOYMENT_DENIED);
    assert_int_equal(custos_usecase_resolve(c, "qa", 2, &key, "d2", now, &u), CUSTOS_UC_OK); /* header wins */
    assert_string_equal(u->id, "qa");
    assert_int_equal(custos_usecase_resolve(c, "unval", 5, &none, "d1", now, &u), CUSTOS_UC_NOT_VALIDATED);
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &key, "d1", 1924905600 + 86400, &u),
                     CUSTOS_UC_VALIDATION_EXPIRED);
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &key, "d1", 1924905600 + 86399, &u), CUSTOS_UC_OK);
    assert_string_equal(custos_usecase_error_code(CUSTOS_UC_VALIDATION_EXPIRED), "use_case_validation_expired");
    custos_config_unref(c);
    /* without require_use_case, an unbound caller runs ungoverned */
    c = load("use_cases: [{id: a, owner: o, tier: standard, deployments: [d1]}]\n", err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(custos_usecase_resolve(c, NULL, 0, &none, "d1", now, &u), CUSTOS_UC_NONE);
    custos_config_unref(c);
}

static void test_sampling(void **state)
{
    (void)state;
    /* fnv1a64("00000000-0000-4000-8000-000000000000") % 1000000 == 252309 (docs/reviews.md) */
    const char *rid = "00000000-0000-4000-8000-000000000000";
    assert_true(custos_review_sampled(rid, 252310));
    assert_false(custos_review_sampled(rid, 252309));
    assert_false(custos_review_sampled(rid, 0));
    assert_true(custos_review_sampled(rid, 1000000));
    char id[CUSTOS_REVIEW_ID_LEN + 1];
    assert_int_equal(custos_review_new_id(id), 0);
    assert_true(custos_review_id_valid(id, strlen(id)));
    assert_false(custos_review_id_valid("rev_XYZ", 7));
}

/* ---------- the queue on SQLite ---------- */

static char dir[64];

static void meta(custos_review_meta_t *m, const char *tier, const char *kind, int64_t created, int64_t deadline)
{
    memset(m, 0, sizeof(*m));
    assert_int_equal(custos_review_new_id(m->id), 0);
    snprintf(m->request_id, sizeof(m->request_id), "rid-%s", m->id + 4);
    snprintf(m->use_case, sizeof(m->use_case), "uc");
    snprintf(m->tier, sizeof(m->tier), "%s", tier);
    snprintf(m->kind, sizeof(m->kind), "%s", kind);
    snprintf(m->deployment, sizeof(m->deployment), "d1");
    snprintf(m->model, sizeof(m->model), "gpt");
    snprintf(m->operation, sizeof(m->operation), "chat_completions");
    snprintf(m->requester, sizeof(m->requester), "svc");
    snprintf(m->safety, sizeof(m->safety), "{\"x\":1}");
    m->created_s = created;
    m->deadline_s = deadline;
}

static int count_cb(void *ud, const custos_review_meta_t *m)
{
    (void)m;
    (*(int *)ud)++;
    return 0;
}

static void test_queue(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/custos-review-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char db[128], keys[128], err[256];
    snprintf(db, sizeof(db), "%s/s.db", dir);
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    custos_storage_config_t sc = {.driver = CUSTOS_STORAGE_SQLITE, .path = db, .key_dir = keys, .busy_timeout_ms = 500};
    custos_store_t *st = NULL;
    struct custos_vault *v = NULL;
    assert_int_equal(custos_store_open_config(&sc, true, &st, err, sizeof(err)), 0);
    assert_int_equal(custos_vault_open(&sc, st, &v, err, sizeof(err)), 0);

    custos_review_meta_t a, b, c, got;
    meta(&a, "high", "hold", 1000, 2000);
    meta(&b, "elevated", "signoff", 1010, 1500);
    meta(&c, "standard", "qa", 1020, 5000);
    const char *content = "{\"response\":\"SECRET\"}";
    assert_int_equal(custos_review_enqueue(st, v, &a, content, strlen(content), 0), 0);
    assert_int_equal(custos_review_enqueue(st, v, &b, content, strlen(content), 0), 0);
    assert_int_equal(custos_review_enqueue(st, NULL, &c, NULL, 0, 0), 0);
    assert_int_not_equal(custos_review_enqueue(st, v, &a, content, strlen(content), 0), 0); /* same id */

    assert_int_equal(custos_review_get(st, a.id, 1100, &got), 0);
    assert_string_equal(got.tier, "high");
    assert_string_equal(got.kind, "hold");
    assert_string_equal(got.decision, "");
    assert_true(got.content_stored);
    assert_int_equal(got.status, CUSTOS_REVIEW_PENDING);
    unsigned char *p = NULL;
    size_t n = 0;
    assert_int_equal(custos_review_content(v, a.id, false, &p, &n), 0);
    assert_memory_equal(p, content, n);
    free(p);
    assert_int_equal(custos_review_content(v, c.id, false, &p, &n), CUSTOS_ENOTFOUND);

    /* newest first, paged */
    int cnt = 0;
    bool more = false;
    assert_int_equal(custos_review_list(st, -1, NULL, NULL, NULL, 2, 1100, count_cb, &cnt, &more), 0);
    assert_int_equal(cnt, 2);
    assert_true(more);
    cnt = 0;
    assert_int_equal(custos_review_list(st, -1, NULL, NULL, b.id, 2, 1100, count_cb, &cnt, &more), 0);
    assert_int_equal(cnt, 1); /* only a is older than b */
    assert_false(more);
    cnt = 0;
    assert_int_equal(
        custos_review_list(st, CUSTOS_REVIEW_PENDING, NULL, "standard", NULL, 50, 1100, count_cb, &cnt, &more), 0);
    assert_int_equal(cnt, 1);

    /* decisions (the governance log is not open: the event is held in memory, which counts as recorded) */
    assert_int_equal(custos_review_decide(st, v, a.id, "alice", CUSTOS_DECISION_EDIT, "NEW", 3, "why", 1200, &got), 0);
    assert_int_equal(got.status, CUSTOS_REVIEW_EDITED);
    assert_string_equal(got.reviewer, "alice");
    assert_string_equal(got.decision, "edit");
    assert_int_equal(custos_review_decide(st, v, a.id, "alice", CUSTOS_DECISION_APPROVE, NULL, 0, NULL, 1201, &got),
                     CUSTOS_EAGAIN);
    assert_int_equal(custos_review_content(v, a.id, true, &p, &n), 0);
    assert_non_null(strstr((char *)p, "\"text\":\"NEW\""));
    free(p);
    /* b's deadline (1500) passes: expired, cannot be decided */
    assert_int_equal(custos_review_decide(st, v, b.id, "alice", CUSTOS_DECISION_APPROVE, NULL, 0, NULL, 1600, &got),
                     CUSTOS_ETIMEDOUT);
    assert_int_equal(custos_review_get(st, b.id, 1600, &got), 0);
    assert_int_equal(got.status, CUSTOS_REVIEW_EXPIRED);
    assert_int_equal(custos_review_decide(st, v, "rev_000000000000000000000000", "alice", CUSTOS_DECISION_APPROVE, NULL,
                                          0, NULL, 1600, &got),
                     CUSTOS_ENOTFOUND);
    assert_int_equal(custos_review_decide(st, v, c.id, "bob", CUSTOS_DECISION_REJECT, NULL, 0, "no", 1030, &got), 0);

    custos_review_stats_t s;
    assert_int_equal(custos_review_stats(st, NULL, 1600, &s), 0);
    assert_int_equal(s.total, 3);
    assert_int_equal(s.by_status[CUSTOS_REVIEW_EDITED], 1);
    assert_int_equal(s.by_status[CUSTOS_REVIEW_EXPIRED], 1);
    assert_int_equal(s.by_status[CUSTOS_REVIEW_REJECTED], 1);
    assert_int_equal(s.by_tier_status[0][CUSTOS_REVIEW_EDITED], 1);
    assert_int_equal(s.by_tier_status[1][CUSTOS_REVIEW_EXPIRED], 1);
    assert_int_equal(s.decided, 2);
    assert_true(s.median_decision_s == 105.0); /* (200 + 10) / 2 */
    assert_int_equal(s.oldest_pending_age_s, -1);
    assert_int_equal(custos_review_stats(st, "other", 1600, &s), 0);
    assert_int_equal(s.total, 0);
    assert_true(s.median_decision_s < 0);

    custos_vault_close(v);
    custos_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parses), cmocka_unit_test(test_config_errors), cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_sampling),      cmocka_unit_test(test_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
