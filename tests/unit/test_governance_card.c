/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for src/governance/card.c and evidence.c: deployments[].card parsing and its errors, the card object
 * (operator fields, resolved policy, data handling without URLs, evaluation files incl. bad and oversized ones), the
 * evidence report's controls, statuses and mappings, and the three renderings listing the same controls. */
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
#include "governance/card.h"
#include "governance/evidence.h"
#include "util/err.h"

#define DIGEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define BASE                                                                                                           \
    "listeners:\n  - address: \"127.0.0.1:8443\"\n"                                                                    \
    "identity:\n  api_keys:\n    - {name: demo, sha256: \"" DIGEST "\", roles: [reviewer, admin]}\n"                   \
    "backends:\n  - {name: m, provider: openai, url: \"http://10.1.2.3:8081\", region: westeurope, data_zone: eu}\n"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/custos-card-test-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static custos_config_t *load(const char *yaml, char *err, size_t errlen)
{
    custos_config_t *c = NULL;
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, errlen);
    return rc == 0 ? c : NULL;
}

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *jget(json_object *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
        if (json_object_is_type(o, json_type_array))
            o = json_object_array_get_idx(o, (size_t)atoi(k));
        else if (!json_object_object_get_ex(o, k, &o))
            o = NULL;
    }
    return o ? json_object_get_string(o) : NULL;
}

static void test_card_config_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(load(BASE "deployments:\n  - name: d\n    backends: [m]\n    card: {purpose: x}\n", err, sizeof(err)));
    assert_non_null(strstr(err, "t.yaml:11:12:"));
    assert_non_null(strstr(err, "unknown key 'purpose' in deployments[0].card"));
    assert_null(
        load(BASE "deployments:\n  - name: d\n    backends: [m]\n    card: {limitations: [1]}\n", err, sizeof(err)));
    assert_non_null(strstr(err, "deployments[0].card.limitations[0]"));
    assert_null(
        load(BASE "deployments:\n  - name: d\n    backends: [m]\n    card: {intended_uses: x}\n", err, sizeof(err)));
    assert_non_null(strstr(err, "deployments[0].card.intended_uses"));
    assert_null(
        load(BASE "deployments:\n  - name: d\n    backends: [m]\n    card: {description: \"\"}\n", err, sizeof(err)));
    assert_non_null(strstr(err, "must not be empty"));
    assert_null(load(BASE "safety: {eval_dir: /nonexistent/eval}\ndeployments:\n  - name: d\n    backends: [m]\n", err,
                     sizeof(err)));
    assert_non_null(strstr(err, "safety.eval_dir"));
}

static void test_card_build(void **state)
{
    (void)state;
    char err[512], yaml[2048];
    write_file("harm.json", "{\"task\":\"harm\",\"summary\":{\"any_harm_auprc\":0.857}}");
    write_file("shields.json", "[1,2]"); /* not an object */
    /* pii.json absent: left out; fairness.json larger than the embed limit: cut to its small members */
    {
        char p[256];
        snprintf(p, sizeof(p), "%s/fairness.json", dir);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs("{\"kind\":\"fairness\",\"gate\":{\"pass\":true},\"languages\":[", f);
        for (int i = 0; i < 3000; i++)
            fprintf(f, "%s{\"lang\":\"l%d\",\"rate\":0.01}", i ? "," : "", i);
        fputs("]}", f);
        fclose(f);
    }
    snprintf(yaml, sizeof(yaml),
             BASE "retention: {content: {days: 30}}\nsafety: {eval_dir: \"%s\"}\n"
                  "rai_policies:\n  - name: strict\n    pii: {prompt: redact}\n"
                  "    content_filters: [{category: hate, threshold: low, source: prompt}]\n"
                  "deployments:\n  - name: d\n    type: datazone\n    data_zone: eu\n    rai_policy: strict\n"
                  "    backends: [m]\n    card:\n      description: \"Drafts replies\"\n      owner: team\n"
                  "      intended_uses: [drafting, summaries]\n      limitations: [\"not advice\"]\n"
                  "  - name: bare\n    backends: [m]\n",
             dir);
    custos_config_t *c = load(yaml, err, sizeof(err));
    assert_non_null(c);
    json_object *card = NULL;
    assert_int_equal(custos_card_build(c, custos_config_find_deployment(c, "d"), &card), 0);
    assert_string_equal(jget(card, "description"), "Drafts replies");
    assert_string_equal(jget(card, "intended_uses.1"), "summaries");
    assert_string_equal(jget(card, "limitations.0"), "not advice");
    assert_string_equal(jget(card, "policy.name"), "strict");
    assert_string_equal(jget(card, "policy.pii.prompt"), "redact");
    assert_string_equal(jget(card, "policy.content_filters.0.threshold"), "low");    /* hate, prompt */
    assert_string_equal(jget(card, "policy.content_filters.1.threshold"), "medium"); /* hate, completion */
    assert_string_equal(jget(card, "policy.prompt_shields.jailbreak"), "block");
    assert_string_equal(jget(card, "data_handling.residency"), "datazone");
    assert_string_equal(jget(card, "data_handling.backends.0.region"), "westeurope");
    assert_string_equal(jget(card, "data_handling.retention.content_days"), "30");
    const char *all = json_object_to_json_string(card);
    assert_null(strstr(all, "10.1.2.3")); /* never a backend URL */
    json_object *ev = NULL;
    assert_true(json_object_object_get_ex(card, "evaluations", &ev));
    assert_int_equal(json_object_array_length(ev), 3); /* harm, shields (error), fairness (cut) */
    assert_string_equal(jget(card, "evaluations.0.result.summary.any_harm_auprc"), "0.857");
    assert_string_equal(jget(card, "evaluations.1.name"), "shields");
    assert_string_equal(jget(card, "evaluations.1.error"), "not a JSON object");
    assert_string_equal(jget(card, "evaluations.2.result.kind"), "fairness");
    assert_string_equal(jget(card, "evaluations.2.result.truncated"), "true");
    assert_string_equal(jget(card, "evaluations.2.result.omitted.0"), "languages");
    json_object_put(card);
    /* a deployment without a card: empty lists and nulls, the default policy */
    assert_int_equal(custos_card_build(c, custos_config_find_deployment(c, "bare"), &card), 0);
    assert_null(jget(card, "description"));
    assert_string_equal(jget(card, "policy.name"), CUSTOS_RAI_DEFAULT_POLICY);
    json_object_put(card);
    custos_config_unref(c);
}

static json_object *control(json_object *report, const char *id)
{
    json_object *cs = NULL;
    assert_true(json_object_object_get_ex(report, "controls", &cs));
    for (size_t i = 0; i < json_object_array_length(cs); i++) {
        json_object *c = json_object_array_get_idx(cs, i);
        if (strcmp(jget(c, "id"), id) == 0)
            return c;
    }
    fail_msg("control %s missing", id);
    return NULL;
}

static void test_evidence(void **state)
{
    (void)state;
    char err[512], yaml[2048];
    snprintf(yaml, sizeof(yaml),
             BASE "network: {default_action: deny, ip_rules: [\"10.0.0.0/8\"]}\n"
                  "deployments:\n  - name: d\n    backends: [m]\n    card: {intended_uses: [x]}\n");
    custos_config_t *c = load(yaml, err, sizeof(err));
    assert_non_null(c);
    custos_evidence_store_facts_t f;
    memset(&f, 0, sizeof(f));
    f.available = true;
    snprintf(f.driver, sizeof(f.driver), "sqlite");
    f.kek_known = true;
    f.kek_current = 2;
    f.kek_created_s = 1000;
    f.kek_active = 2;
    int64_t now = 1000 + 400 * 86400; /* a 400-day-old key: attention */
    json_object *r = NULL;
    assert_int_equal(custos_evidence_build(c, &f, now, NULL, &r), 0);
    assert_int_equal(json_object_array_length(json_object_object_get(r, "controls")), 12);
    assert_string_equal(jget(control(r, "network-acl"), "status"), "in_force");
    assert_string_equal(jget(control(r, "transmission-tls"), "status"), "partial"); /* plain HTTP on loopback */
    assert_string_equal(jget(control(r, "encryption-at-rest"), "status"), "attention");
    assert_string_equal(jget(control(r, "use-cases"), "status"), "not_configured");
    assert_string_equal(jget(control(r, "residency"), "status"), "partial"); /* a global deployment */
    assert_string_equal(jget(control(r, "authentication"), "mappings.hipaa.0"), "164.312(d)");
    assert_string_equal(jget(control(r, "audit-logging"), "mappings.hipaa.0"), "164.312(b)");
    assert_string_equal(jget(r, "source.store.driver"), "sqlite");
    assert_null(jget(r, "source.config_sha256"));
    assert_null(strstr(json_object_to_json_string(r), DIGEST)); /* no key digest in the report */

    /* markdown and HTML carry every control id, in order, with its status */
    for (int fmt = CUSTOS_EVIDENCE_JSON; fmt <= CUSTOS_EVIDENCE_HTML; fmt++) {
        char *text = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&text, &len);
        assert_non_null(m);
        assert_int_equal(custos_evidence_render(r, (custos_evidence_format_t)fmt, m), 0);
        fclose(m);
        json_object *cs = json_object_object_get(r, "controls");
        const char *prev = text;
        for (size_t i = 0; i < json_object_array_length(cs); i++) {
            char needle[96];
            const char *id = jget(json_object_array_get_idx(cs, i), "id");
            if (fmt == CUSTOS_EVIDENCE_MD)
                snprintf(needle, sizeof(needle), "(`%s`)\n\nStatus: **%s**", id,
                         jget(json_object_array_get_idx(cs, i), "status"));
            else if (fmt == CUSTOS_EVIDENCE_HTML)
                snprintf(needle, sizeof(needle), "<section id=\"%s\"", id);
            else
                snprintf(needle, sizeof(needle), "\"id\": \"%s\"", id);
            const char *at = strstr(prev, needle);
            if (!at)
                fail_msg("format %d lacks %s in order", fmt, needle);
            prev = at;
        }
        free(text);
    }
    json_object_put(r);

    /* without store facts: the store is reported as not read, the key version as not read */
    assert_int_equal(custos_evidence_build(c, NULL, now, NULL, &r), 0);
    assert_string_equal(jget(r, "source.store.read"), "false");
    assert_string_equal(jget(control(r, "encryption-at-rest"), "status"), "in_force");
    json_object_put(r);
    custos_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_card_config_errors),
        cmocka_unit_test(test_card_build),
        cmocka_unit_test(test_evidence),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
