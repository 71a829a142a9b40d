/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for the groundedness judge's verdict parser (api/cs_reasoning.h custos_cs_verdict_parse): a valid
 * verdict's items located in the text, a tolerated code fence, duplicates counted once, and every way a judge's
 * answer is refused (not a completion, not JSON, extra keys, wrong types, a quote not in the text, a cut answer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/cs_reasoning.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static const char TEXT[] = "The tower is 450 metres tall. It is in Paris. It opened in 1925.";

/* A chat completion whose message content is content (JSON-escaped here). */
static int parse(const char *content, const char *finish, custos_cs_verdict_item_t *items, const char **why)
{
    json_object *o = json_object_new_object(), *chs = json_object_new_array(), *ch = json_object_new_object(),
                *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("assistant"));
    json_object_object_add(m, "content", json_object_new_string(content));
    json_object_object_add(ch, "index", json_object_new_int(0));
    json_object_object_add(ch, "finish_reason", json_object_new_string(finish));
    json_object_object_add(ch, "message", m);
    json_object_array_add(chs, ch);
    json_object_object_add(o, "choices", chs);
    const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    json_object *root = NULL;
    int n = custos_cs_verdict_parse(body, strlen(body), TEXT, sizeof(TEXT) - 1, items, &root, why);
    if (n >= 0)
        assert_non_null(root);
    else
        assert_null(root);
    json_object_put(root);
    json_object_put(o);
    return n;
}

static void test_valid(void **state)
{
    (void)state;
    custos_cs_verdict_item_t it[CUSTOS_CS_JUDGE_MAX_ITEMS];
    const char *why = NULL;
    int n =
        parse("{\"ungrounded\": [{\"text\": \"The tower is 450 metres tall.\", \"reason\": \"330 in the sources.\"},"
              " {\"text\": \"It opened in 1925.\", \"reason\": \"1889.\"}]}",
              "stop", it, &why);
    assert_int_equal(n, 2);
    assert_int_equal(it[0].off, 0);
    assert_int_equal(it[0].len, 29);
    assert_int_equal(it[1].off, 46);
    assert_int_equal(it[1].len, 18);
    /* none */
    assert_int_equal(parse("  {\"ungrounded\": []}\n", "stop", it, &why), 0);
    /* fenced, and a duplicate counted once */
    assert_int_equal(
        parse("```json\n{\"ungrounded\": [{\"text\": \"It is in Paris.\", \"reason\": \"x\"}, {\"text\": \"It "
              "is in Paris.\", \"reason\": \"x\"}]}\n```",
              "stop", it, &why),
        1);
    assert_int_equal(it[0].off, 30);
}

static void test_refused(void **state)
{
    (void)state;
    custos_cs_verdict_item_t it[CUSTOS_CS_JUDGE_MAX_ITEMS];
    const char *why = NULL;
    static const char *const bad[] = {
        "Looks fine to me.",
        "{\"ungrounded\": [], \"extra\": 1}",
        "{\"ungrounded\": {}}",
        "{\"ungrounded\": [{\"text\": \"It is in Paris.\"}]}",
        "{\"ungrounded\": [{\"text\": \"It is in Paris.\", \"reason\": 3}]}",
        "{\"ungrounded\": [{\"text\": \"It is in Paris.\", \"reason\": \"x\", \"score\": 1}]}",
        "{\"ungrounded\": [{\"text\": \"It is in Rome.\", \"reason\": \"x\"}]}",
        "{\"ungrounded\": [{\"text\": \"\", \"reason\": \"x\"}]}",
        "[{\"text\": \"It is in Paris.\", \"reason\": \"x\"}]",
        "{\"ungrounded\": []} trailing",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(parse(bad[i], "stop", it, &why), -1);
        assert_non_null(why);
    }
    assert_int_equal(parse("{\"ungrounded\": []}", "length", it, &why), -1);
    json_object *root = NULL;
    assert_int_equal(custos_cs_verdict_parse("not json", 8, TEXT, sizeof(TEXT) - 1, it, &root, &why), -1);
    assert_int_equal(custos_cs_verdict_parse("{\"choices\":[]}", 14, TEXT, sizeof(TEXT) - 1, it, &root, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_valid), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
