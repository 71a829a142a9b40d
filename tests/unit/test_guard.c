/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for the guard module (guard/guard.h): the Llama Guard 3 prompt and its answer parser (codes mapped onto
 * the four categories, the others recorded, garbage refused), each adapter's request and strict answer reading, the
 * cascade step and decision, the keyed-hash cache key (white space normalised, partitioned by policy / guard / check /
 * direction) and the bounded cache (hits, TTL, eviction, errors never stored). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard/guard.h"
#include "util/buf.h"
#include "util/err.h"

#include <string.h>

static custos_guard_config_t cfg(custos_guard_type_t t)
{
    custos_guard_config_t g;
    memset(&g, 0, sizeof(g));
    g.name = (char *)"g";
    g.type = t;
    g.path_prefix = (char *)"/base";
    g.model = (char *)"meta-llama/Llama-Guard-3-8B";
    g.api_version = (char *)"2024-09-01";
    return g;
}

static bool contains(const custos_buf_t *b, const char *s)
{
    return memmem(custos_buf_peek(b), custos_buf_size(b), s, strlen(s)) != NULL;
}

static void test_llama_parse(void **state)
{
    (void)state;
    custos_guard_verdict_t v;
    assert_int_equal(custos_guard_llama_parse_text("safe", 4, &v), 0);
    assert_false(v.unsafe);
    assert_int_equal(v.err, CUSTOS_GUARD_OK);
    assert_int_equal(custos_guard_llama_parse_text("\n\nsafe\n", 7, &v), 0);
    const char *u = "unsafe\nS10,S2, S1";
    assert_int_equal(custos_guard_llama_parse_text(u, strlen(u), &v), 0);
    assert_true(v.unsafe);
    assert_true(v.flagged[CUSTOS_RAI_HATE]);
    assert_true(v.flagged[CUSTOS_RAI_VIOLENCE]);
    assert_false(v.flagged[CUSTOS_RAI_SEXUAL]);
    assert_int_equal(v.other, 1u << 1); /* S2 recorded */
    assert_int_equal(v.codes, (1u << 9) | (1u << 1) | (1u << 0));
    const char *bad[] = {"",           "maybe",         "unsafe",       "unsafe\n",       "unsafe\nS15",
                         "unsafe\nS0", "unsafe\nX1",    "safe\nS1",     "unsafe\nS1\nS2", "unsafe\nS1,,",
                         "Safe",       "unsafe\nS1;S2", "unsafe\nS1000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(custos_guard_llama_parse_text(bad[i], strlen(bad[i]), &v), CUSTOS_EPROTO);
        assert_int_equal(v.err, CUSTOS_GUARD_ERR_PARSE);
        assert_false(v.unsafe);
    }
    assert_int_equal(custos_guard_llama_category(11), CUSTOS_RAI_SELF_HARM);
    assert_int_equal(custos_guard_llama_category(12), CUSTOS_RAI_SEXUAL);
    assert_int_equal(custos_guard_llama_category(14), -1);
}

static void test_llama_build(void **state)
{
    (void)state;
    custos_guard_config_t g = cfg(CUSTOS_GUARD_LLAMA_GUARD);
    custos_buf_t path, body;
    custos_buf_init(&path, 0);
    custos_buf_init(&body, 0);
    assert_int_equal(
        custos_guard_build(&g, CUSTOS_GUARD_CHECK_HARM, CUSTOS_RAI_COMPLETION, "hi \"x\"", 6, &path, &body), 0);
    assert_true(contains(&path, "/base/v1/completions"));
    assert_true(contains(&body, "S14: Code Interpreter Abuse."));
    assert_true(contains(&body, "Agent: hi \\\"x\\\""));
    assert_true(contains(&body, "ONLY THE LAST Agent message"));
    assert_true(contains(&body, "\"model\":\"meta-llama/Llama-Guard-3-8B\""));
    custos_buf_reset(&path);
    custos_buf_reset(&body);
    g.chat_api = true;
    assert_int_equal(custos_guard_build(&g, CUSTOS_GUARD_CHECK_HARM, CUSTOS_RAI_PROMPT, "hello", 5, &path, &body), 0);
    assert_true(contains(&path, "/base/v1/chat/completions"));
    assert_true(contains(&body, "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]"));
    /* no attack detector in Llama Guard */
    assert_int_equal(custos_guard_build(&g, CUSTOS_GUARD_CHECK_JAILBREAK, CUSTOS_RAI_PROMPT, "x", 1, &path, &body),
                     CUSTOS_EINVAL);
    custos_guard_verdict_t v;
    const char *chat = "{\"choices\":[{\"message\":{\"content\":\"unsafe\\nS11\"}}]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, chat, strlen(chat), &v), 0);
    assert_true(v.flagged[CUSTOS_RAI_SELF_HARM]);
    g.chat_api = false;
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, chat, strlen(chat), &v), CUSTOS_EPROTO);
    const char *comp = "{\"choices\":[{\"text\":\" safe\"}]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, comp, strlen(comp), &v), 0);
    assert_false(v.unsafe);
    custos_buf_dispose(&path);
    custos_buf_dispose(&body);
}

static void test_azure(void **state)
{
    (void)state;
    custos_guard_config_t g = cfg(CUSTOS_GUARD_AZURE_CONTENT_SAFETY);
    custos_buf_t path, body;
    custos_buf_init(&path, 0);
    custos_buf_init(&body, 0);
    assert_int_equal(custos_guard_build(&g, CUSTOS_GUARD_CHECK_HARM, CUSTOS_RAI_PROMPT, "t", 1, &path, &body), 0);
    assert_string_equal(custos_buf_peek(&path), "/base/contentsafety/text:analyze?api-version=2024-09-01");
    assert_true(contains(&body, "\"outputType\":\"FourSeverityLevels\""));
    custos_buf_reset(&path);
    custos_buf_reset(&body);
    assert_int_equal(custos_guard_build(&g, CUSTOS_GUARD_CHECK_INDIRECT, CUSTOS_RAI_PROMPT, "doc", 3, &path, &body), 0);
    assert_true(contains(&path, "text:shieldPrompt"));
    assert_true(contains(&body, "\"documents\":[\"doc\"]"));
    custos_guard_verdict_t v;
    const char *a = "{\"categoriesAnalysis\":[{\"category\":\"Hate\",\"severity\":4},{\"category\":\"Sexual\","
                    "\"severity\":0},{\"category\":\"Violence\",\"severity\":2},{\"category\":\"SelfHarm\","
                    "\"severity\":0}]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, a, strlen(a), &v), 0);
    assert_int_equal(v.severity[CUSTOS_RAI_HATE], 4);
    assert_int_equal(v.severity[CUSTOS_RAI_VIOLENCE], 2);
    assert_true(custos_cascade_guard_blocks(&v, CUSTOS_RAI_HATE, 4));
    assert_false(custos_cascade_guard_blocks(&v, CUSTOS_RAI_VIOLENCE, 4));
    const char *missing = "{\"categoriesAnalysis\":[{\"category\":\"Hate\",\"severity\":4}]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, missing, strlen(missing), &v), CUSTOS_EPROTO);
    const char *sev8 = "{\"categoriesAnalysis\":[{\"category\":\"Hate\",\"severity\":8}]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, sev8, strlen(sev8), &v), CUSTOS_EPROTO);
    const char *sp = "{\"userPromptAnalysis\":{\"attackDetected\":true},\"documentsAnalysis\":[]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_JAILBREAK, sp, strlen(sp), &v), 0);
    assert_true(v.attack);
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_INDIRECT, sp, strlen(sp), &v), CUSTOS_EPROTO);
    const char *dp = "{\"userPromptAnalysis\":{\"attackDetected\":false},\"documentsAnalysis\":[{\"attackDetected\":"
                     "true}]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_INDIRECT, dp, strlen(dp), &v), 0);
    assert_true(v.attack);
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, "nope", 4, &v), CUSTOS_EPROTO);
    /* groundedness */
    custos_buf_reset(&path);
    custos_buf_reset(&body);
    const char *src[1] = {"The sky is blue."};
    size_t sl[1] = {16};
    assert_int_equal(custos_guard_azure_groundedness_build(&g, "The sky is green.", 17, src, sl, 1, &path, &body), 0);
    assert_true(contains(&path, "text:detectGroundedness"));
    assert_true(contains(&body, "\"groundingSources\":[\"The sky is blue.\"]"));
    bool ung = false;
    double pct = 0;
    const char *gr = "{\"ungroundedDetected\":true,\"ungroundedPercentage\":0.5,\"ungroundedDetails\":[]}";
    assert_int_equal(custos_guard_azure_groundedness_parse(gr, strlen(gr), &ung, &pct), 0);
    assert_true(ung);
    assert_true(pct > 0.49 && pct < 0.51);
    assert_int_equal(custos_guard_azure_groundedness_parse("{}", 2, &ung, &pct), CUSTOS_EPROTO);
    custos_buf_dispose(&path);
    custos_buf_dispose(&body);
}

static void test_http_classifier(void **state)
{
    (void)state;
    custos_guard_config_t g = cfg(CUSTOS_GUARD_HTTP_CLASSIFIER);
    custos_buf_t path, body;
    custos_buf_init(&path, 0);
    custos_buf_init(&body, 0);
    assert_int_equal(custos_guard_build(&g, CUSTOS_GUARD_CHECK_JAILBREAK, CUSTOS_RAI_PROMPT, "t", 1, &path, &body), 0);
    assert_string_equal(custos_buf_peek(&path), "/base");
    assert_true(contains(&body, "{\"text\":\"t\",\"check\":\"jailbreak\",\"role\":\"user\"}"));
    custos_guard_verdict_t v;
    const char *r = "{\"flagged\":true,\"categories\":{\"hate\":{\"flagged\":true,\"severity\":6},\"sexual\":{"
                    "\"flagged\":false}},\"labels\":[\"x\"]}";
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, r, strlen(r), &v), 0);
    assert_true(v.flagged[CUSTOS_RAI_HATE]);
    assert_int_equal(v.severity[CUSTOS_RAI_HATE], 6);
    assert_int_equal(v.severity[CUSTOS_RAI_SEXUAL], -1);
    const char *bad[] = {"{}",
                         "{\"flagged\":1}",
                         "{\"flagged\":true,\"categories\":[]}",
                         "{\"flagged\":true,\"categories\":{\"hate\":{}}}",
                         "{\"flagged\":true,\"categories\":{\"hate\":{\"flagged\":true,\"severity\":9}}}",
                         "[]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_HARM, bad[i], strlen(bad[i]), &v), CUSTOS_EPROTO);
    assert_int_equal(custos_guard_parse(&g, CUSTOS_GUARD_CHECK_JAILBREAK, "{\"flagged\":true}", 16, &v), 0);
    assert_true(v.attack);
    custos_buf_dispose(&path);
    custos_buf_dispose(&body);
}

static void test_cascade(void **state)
{
    (void)state;
    custos_guard_config_t g = cfg(CUSTOS_GUARD_LLAMA_GUARD);
    custos_rai_guard_t rg = {&g, CUSTOS_CASCADE_BAND, 0.2f, 0.8f, false};
    assert_int_equal(custos_cascade_step(&rg, 0.1f), CUSTOS_CASCADE_STEP_ALLOW);
    assert_int_equal(custos_cascade_step(&rg, 0.2f), CUSTOS_CASCADE_STEP_ASK);
    assert_int_equal(custos_cascade_step(&rg, 0.8f), CUSTOS_CASCADE_STEP_ASK);
    assert_int_equal(custos_cascade_step(&rg, 0.81f), CUSTOS_CASCADE_STEP_BLOCK);
    rg.mode = CUSTOS_CASCADE_GUARD;
    assert_int_equal(custos_cascade_step(&rg, 0.0f), CUSTOS_CASCADE_STEP_ASK);
    rg.mode = CUSTOS_CASCADE_IN_PROCESS;
    assert_int_equal(custos_cascade_step(&rg, 0.5f), CUSTOS_CASCADE_STEP_LOCAL);
    assert_int_equal(custos_cascade_step(NULL, 0.5f), CUSTOS_CASCADE_STEP_LOCAL);
    float s[] = {0.1f, 0.3f, 0.5f, 0.9f};
    assert_int_equal(custos_cascade_count_in_band(s, 4, 0.2f, 0.8f), 2);
    custos_guard_verdict_t v;
    memset(&v, 0, sizeof(v));
    memset(v.severity, -1, sizeof(v.severity));
    v.flagged[CUSTOS_RAI_HATE] = true;
    assert_true(custos_cascade_guard_blocks(&v, CUSTOS_RAI_HATE, 6)); /* binary: flagged blocks at any threshold */
    v.err = CUSTOS_GUARD_ERR_TIMEOUT;
    assert_false(custos_cascade_guard_blocks(&v, CUSTOS_RAI_HATE, 6));
}

static void test_cache(void **state)
{
    (void)state;
    custos_guard_key_t a, b, c, d;
    assert_int_equal(custos_guard_key("p", "g", CUSTOS_GUARD_CHECK_HARM, 0, " hello \t world\n", 15, &a), 0);
    assert_int_equal(custos_guard_key("p", "g", CUSTOS_GUARD_CHECK_HARM, 0, "hello world", 11, &b), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_int_equal(custos_guard_key("q", "g", CUSTOS_GUARD_CHECK_HARM, 0, "hello world", 11, &c), 0);
    assert_memory_not_equal(&a, &c, sizeof(a)); /* per policy */
    assert_int_equal(custos_guard_key("p", "g", CUSTOS_GUARD_CHECK_HARM, 1, "hello world", 11, &d), 0);
    assert_memory_not_equal(&a, &d, sizeof(a)); /* per direction */
    assert_int_equal(custos_guard_key("p", "g", CUSTOS_GUARD_CHECK_HARM, 0, "hello worlds", 12, &d), 0);
    assert_memory_not_equal(&a, &d, sizeof(a));

    custos_guard_cache_t *cache = NULL;
    assert_int_equal(custos_guard_cache_new(5, 1000, &cache), 0);
    assert_int_equal(custos_guard_cache_capacity(cache), 8);
    custos_guard_verdict_t v, out;
    memset(&v, 0, sizeof(v));
    v.unsafe = true;
    v.latency_ns = 5;
    assert_false(custos_guard_cache_get(cache, &a, 10, &out));
    custos_guard_cache_put(cache, &a, 10, &v);
    assert_true(custos_guard_cache_get(cache, &a, 500, &out));
    assert_true(out.unsafe && out.cached);
    assert_int_equal(out.latency_ns, 0);
    assert_false(custos_guard_cache_get(cache, &a, 1010, &out)); /* TTL */
    custos_guard_verdict_t e = v;
    e.err = CUSTOS_GUARD_ERR_TIMEOUT;
    custos_guard_cache_put(cache, &c, 10, &e); /* errors are not kept */
    assert_false(custos_guard_cache_get(cache, &c, 11, &out));
    /* bounded: many keys fit in 8 entries */
    for (int i = 0; i < 100; i++) {
        custos_guard_key_t k;
        char t[16];
        snprintf(t, sizeof(t), "text %d", i);
        assert_int_equal(custos_guard_key("p", "g", CUSTOS_GUARD_CHECK_HARM, 0, t, strlen(t), &k), 0);
        custos_guard_cache_put(cache, &k, (uint64_t)(20 + i), &v);
    }
    custos_guard_key_t last;
    assert_int_equal(custos_guard_key("p", "g", CUSTOS_GUARD_CHECK_HARM, 0, "text 99", 7, &last), 0);
    assert_true(custos_guard_cache_get(cache, &last, 200, &out));
    custos_guard_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_parse),     cmocka_unit_test(test_llama_build), cmocka_unit_test(test_azure),
        cmocka_unit_test(test_http_classifier), cmocka_unit_test(test_cascade),     cmocka_unit_test(test_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
