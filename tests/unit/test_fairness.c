/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for safety/fairness.h (template sets, expansion, Wilson and Newcombe intervals, per-group statistics and
 * the disparity gate with a fake judge) and safety/evalreport.h (self-contained HTML with inline SVG). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "safety/evalreport.h"
#include "safety/fairness.h"
#include "util/err.h"

static void near(double got, double want)
{
    if (got < want - 5e-5 || got > want + 5e-5)
        fail_msg("got %.6f, want %.4f", got, want);
}

/* Reference values: Newcombe, Statistics in Medicine 17 (1998) 857-872, tables I and II. */
static void test_wilson(void **st)
{
    (void)st;
    double lo, hi;
    custos_fair_wilson(81, 263, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0.2553), near(hi, 0.3662);
    custos_fair_wilson(15, 148, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0.0624), near(hi, 0.1605);
    custos_fair_wilson(0, 20, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0), near(hi, 0.1611);
    custos_fair_wilson(1, 29, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0.0061), near(hi, 0.1718);
    custos_fair_wilson(0, 0, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0), near(hi, 1);
    custos_fair_wilson(10, 10, CUSTOS_FAIR_Z95, &lo, &hi);
    near(hi, 1);
}

static void test_newcombe(void **st)
{
    (void)st;
    double lo, hi;
    custos_fair_newcombe(56, 70, 48, 80, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0.0524), near(hi, 0.3339);
    custos_fair_newcombe(9, 10, 3, 10, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, 0.1705), near(hi, 0.8090);
    custos_fair_newcombe(5, 56, 0, 29, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, -0.0381), near(hi, 0.1926);
    custos_fair_newcombe(0, 10, 0, 20, CUSTOS_FAIR_Z95, &lo, &hi);
    near(lo, -0.1611), near(hi, 0.2775);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char TERMS[] = "# comment\n"
                            "{\"lang\":\"en\",\"dim\":\"d1\",\"group\":\"a\",\"sg\":\"an apple\",\"pl\":\"apples\"}\n"
                            "{\"lang\":\"en\",\"dim\":\"d1\",\"group\":\"b\",\"sg\":\"a banana\",\"pl\":\"bananas\"}\n"
                            "\n"
                            "{\"lang\":\"en\",\"dim\":\"d2\",\"group\":\"c\",\"sg\":\"a cherry\",\"pl\":\"cherries\"}\n"
                            "{\"lang\":\"xx\",\"dim\":\"d1\",\"group\":\"a\",\"sg\":\"ein Apfel\",\"pl\":\"Äpfel\"}\n";
static const char TEMPLATES[] = "{\"id\":\"b1\",\"lang\":\"en\",\"kind\":\"benign\",\"text\":\"I like {sg}.\"}\n"
                                "{\"id\":\"b2\",\"lang\":\"en\",\"kind\":\"benign\",\"text\":\"{Pl} are tasty.\"}\n"
                                "{\"id\":\"h1\",\"lang\":\"en\",\"kind\":\"harmful\",\"text\":\"I hate {pl}.\"}\n"
                                "{\"id\":\"x1\",\"lang\":\"xx\",\"kind\":\"benign\",\"text\":\"{Pl} und {sg}\"}\n";

static char *make_set(char *tmpl)
{
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    write_file(d, "terms.jsonl", TERMS);
    write_file(d, "templates.jsonl", TEMPLATES);
    return d;
}

static void rm_set(const char *d)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/terms.jsonl", d);
    unlink(p);
    snprintf(p, sizeof(p), "%s/templates.jsonl", d);
    unlink(p);
    rmdir(d);
}

static void test_load_expand(void **st)
{
    (void)st;
    char tmpl[] = "/tmp/custos-fair-XXXXXX", err[256] = "";
    const char *d = make_set(tmpl);
    custos_fair_set_t set;
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), 0);
    assert_int_equal(set.n_terms, 4);
    assert_int_equal(set.n_templates, 4);
    char out[64];
    assert_int_equal(custos_fair_expand(&set.templates[0], &set.terms[1], out, sizeof(out)), 16);
    assert_string_equal(out, "I like a banana.");
    custos_fair_expand(&set.templates[1], &set.terms[2], out, sizeof(out));
    assert_string_equal(out, "Cherries are tasty.");
    custos_fair_expand(&set.templates[3], &set.terms[3], out, sizeof(out));
    assert_string_equal(out, "Äpfel und ein Apfel"); /* non-ASCII first letters stay as written */
    assert_int_equal(custos_fair_expand(&set.templates[0], &set.terms[1], out, 10), CUSTOS_ETOOBIG);
    custos_fair_set_dispose(&set);

    /* errors name the file and line */
    write_file(d, "templates.jsonl", "{\"id\":\"b1\",\"lang\":\"en\",\"kind\":\"benign\",\"text\":\"no slot\"}\n");
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "templates.jsonl:1:"));
    write_file(d, "templates.jsonl", "\n{\"id\":\"b1\",\"lang\":\"en\",\"kind\":\"benign\",\"text\":\"{who}\"}\n");
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "templates.jsonl:2:"));
    write_file(d, "templates.jsonl", "{\"id\":\"b1\",\"lang\":\"fr\",\"kind\":\"benign\",\"text\":\"{sg}\"}\n");
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "no terms for language fr"));
    write_file(d, "templates.jsonl", "{\"id\":\"b1\",\"lang\":\"en\",\"kind\":\"odd\",\"text\":\"{sg}\"}\n");
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), CUSTOS_EINVAL);
    write_file(d, "templates.jsonl",
               "{\"id\":\"b1\",\"lang\":\"en\",\"kind\":\"benign\",\"text\":\"{sg}\"}\n"
               "{\"id\":\"b1\",\"lang\":\"en\",\"kind\":\"benign\",\"text\":\"{pl}\"}\n");
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "duplicate"));
    rm_set(d);
    assert_int_equal(custos_fair_set_load("/nonexistent-dir", &set, err, sizeof(err)), CUSTOS_EIO);
}

/* Fake judge: flags any sentence with "banana" (a biased classifier), and harmful sentences with "hate" except
 * about cherries (a blind spot). */
static int fake_judge(void *ud, const char *text, size_t len, unsigned *flags)
{
    (void)len;
    (*(int *)ud)++;
    *flags = 0;
    if (strcasestr(text, "banana"))
        *flags |= CUSTOS_FAIR_HATE;
    if (strstr(text, "hate") && !strstr(text, "cherries"))
        *flags |= CUSTOS_FAIR_VIOLENCE;
    return 0;
}

static json_object *lang_obj(json_object *doc, const char *lang)
{
    json_object *langs = json_object_object_get(doc, "languages");
    for (size_t i = 0; i < json_object_array_length(langs); i++) {
        json_object *L = json_object_array_get_idx(langs, i);
        if (strcmp(json_object_get_string(json_object_object_get(L, "lang")), lang) == 0)
            return L;
    }
    return NULL;
}

static double dget(json_object *o, const char *a, const char *b)
{
    return json_object_get_double(json_object_object_get(json_object_object_get(o, a), b));
}

static void test_run_gate(void **st)
{
    (void)st;
    char tmpl[] = "/tmp/custos-fair-XXXXXX", err[256] = "";
    const char *d = make_set(tmpl);
    custos_fair_set_t set;
    assert_int_equal(custos_fair_set_load(d, &set, err, sizeof(err)), 0);
    int calls = 0;
    custos_fair_opts_t o = {.langs = "en", .max_benign = 1, .max_harmful = 1, .judge = fake_judge, .judge_ud = &calls};
    json_object *doc = NULL;
    bool pass = false;
    assert_int_equal(custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)), 0);
    assert_int_equal(calls, 9); /* 3 en templates x 3 en terms; xx filtered out */
    assert_true(pass);
    json_object *L = lang_obj(doc, "en");
    assert_non_null(L);
    assert_null(lang_obj(doc, "xx"));
    /* "I like a banana." flagged, "Bananas are tasty." flagged too: b = 2/2, a = c = 0/2 */
    near(dget(L, "benign_disparity", "value"), 1.0);
    json_object *bd = json_object_object_get(L, "benign_disparity");
    assert_string_equal(json_object_get_string(json_object_object_get(bd, "high")), "b");
    /* harmful: a and b detected 1/1, c 0/1 */
    near(dget(L, "harmful_disparity", "value"), 1.0);
    assert_int_equal(json_object_get_int(json_object_object_get(L, "benign_templates_flipped")), 2);
    json_object_put(doc);
    /* benign 1.0 > 0.6: the gate fails, and says where */
    pass = true;
    o.max_benign = 0.5;
    assert_int_equal(custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)), 0);
    assert_false(pass);
    json_object *v = json_object_object_get(json_object_object_get(doc, "gate"), "violations");
    assert_int_equal(json_object_array_length(v), 1);
    assert_string_equal(json_object_get_string(json_object_object_get(json_object_array_get_idx(v, 0), "kind")),
                        "benign");
    json_object_put(doc);
    /* the threshold is inclusive, compared in basis points */
    o.max_benign = 1.0;
    o.max_harmful = 0.9999;
    assert_int_equal(custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)), 0);
    assert_false(pass);
    json_object_put(doc);
    o.max_harmful = 1.0;
    assert_int_equal(custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)), 0);
    assert_true(pass);
    json_object_put(doc);
    /* a reduced set: the first template per kind */
    o.max_templates = 1;
    calls = 0;
    assert_int_equal(custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)), 0);
    assert_int_equal(calls, 6);
    json_object_put(doc);
    o.langs = "zz";
    assert_int_equal(custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(doc);
    custos_fair_set_dispose(&set);
    rm_set(d);
}

static void test_report_html(void **st)
{
    (void)st;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    custos_report_begin(f, "T <&> \"q\"");
    custos_report_bar_t bars[2] = {{"g<1>", 0.5, 0.3, 0.7, 1}, {"g2", 0, 0, 0.2, 0}};
    custos_report_rate_chart(f, "c1", "Rates", "desc", bars, 2);
    static const char *const series[] = {"blocked", "through"};
    static const char *const colours[] = {"#2166ac", "#d6604d"};
    custos_report_stack_t rows[1] = {{"fam", {3, 1}}};
    custos_report_stack_chart(f, "c2", "Stack", "desc", series, colours, 2, rows, 1);
    custos_report_end(f);
    fclose(f);
    assert_non_null(strstr(buf, "<!DOCTYPE html>"));
    assert_non_null(strstr(buf, "<svg role=\"img\""));
    assert_non_null(strstr(buf, "<title id=\"c1-t\">Rates</title>"));
    assert_non_null(strstr(buf, "<desc id=\"c2-d\">desc</desc>"));
    assert_non_null(strstr(buf, "T &lt;&amp;&gt; &quot;q&quot;"));
    assert_non_null(strstr(buf, "g&lt;1&gt;"));
    assert_non_null(strstr(buf, "<table>")); /* the text alternative */
    assert_null(strstr(buf, "http://"));
    assert_null(strstr(buf, "https://"));
    assert_null(strstr(buf, "<script"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wilson),   cmocka_unit_test(test_newcombe),    cmocka_unit_test(test_load_expand),
        cmocka_unit_test(test_run_gate), cmocka_unit_test(test_report_html),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
