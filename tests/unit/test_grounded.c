/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for safety/grounded.h: the shipped model on number / date / negation / dosage contradictions, supported
 * paraphrases and multi-source support; offsets in UTF-8, UTF-16 and code points; the model loader's validation;
 * trainer determinism on a tiny fixture; the custos check --groundedness contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "safety/grounded.h"
#include "safety/grounded_cli.h"
#include "safety/train.h"
#include "util/err.h"

#include <json-c/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL "models/grounded.model"

static custos_grounded_model_t *g_model;

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (custos_grounded_model_open(MODEL, &g_model, err, sizeof(err)) < 0) {
        fprintf(stderr, "cannot load %s: %s\n", MODEL, err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    custos_grounded_model_free(g_model);
    return 0;
}

/* Runs the detector on text against NUL-separated sources (n of them). */
static void run(const char *text, const char *const *src, size_t n, custos_grounded_domain_t domain,
                custos_grounded_result_t *r)
{
    size_t lens[8];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(src[i]);
    custos_grounded_input_t in = {
        .text = text, .text_len = strlen(text), .sources = src, .source_lens = lens, .n_sources = n, .domain = domain};
    assert_int_equal(custos_grounded_detect(g_model, &in, r), 0);
}

static int detected(const char *text, const char *source)
{
    const char *s[1] = {source};
    custos_grounded_result_t r;
    run(text, s, 1, CUSTOS_GROUNDED_GENERIC, &r);
    int d = r.detected;
    custos_grounded_result_dispose(&r);
    return d;
}

static void test_contradictions(void **state)
{
    (void)state;
    /* numbers */
    const char *lab = "On admission the patient's hemoglobin was 9.2 g/dL and the platelet count was normal.";
    assert_false(detected("On admission the patient's hemoglobin was 9.2 g/dL.", lab));
    assert_true(detected("On admission the patient's hemoglobin was 12.5 g/dL.", lab));
    /* dates */
    const char *op = "The knee replacement surgery took place on March 3, 2021 at the county hospital.";
    assert_false(detected("The knee replacement surgery took place on March 3, 2021.", op));
    assert_true(detected("The knee replacement surgery took place on June 3, 2021.", op));
    assert_true(detected("The knee replacement surgery took place on March 3, 2019.", op));
    /* negation */
    const char *hx = "The patient has no history of diabetes and does not smoke.";
    assert_false(detected("The patient has no history of diabetes.", hx));
    assert_true(detected("The patient has a history of diabetes.", hx));
    assert_true(detected("The patient smokes and has no history of diabetes.", "The patient does not smoke."));
    /* dosage: the number is elsewhere in the source, the dose is not */
    const char *rx = "Start metformin 500 mg twice daily with meals; recheck HbA1c in 3 months.";
    assert_false(detected("Metformin 500 mg twice daily was started.", rx));
    assert_true(detected("Metformin 1000 mg twice daily was started.", rx));
    assert_true(detected("Start metformin 500 g twice daily with meals.", rx));
    /* names */
    assert_true(
        detected("Dr. Alvarez performed the operation.", "Dr. Chen performed the operation and Dr. Patel assisted."));
}

static void test_supported(void **state)
{
    (void)state;
    const char *src = "Warfarin 5 mg was given to the patient every evening after the operation. The patient "
                      "was discharged home on the fourth day in a stable condition.";
    assert_false(detected("After the operation, the patient was given warfarin 5 mg every evening.", src));
    assert_false(detected("The patient was discharged home in stable condition on the fourth day.", src));
    assert_false(detected("Warfarin 5 mg was given every evening. The patient was discharged on the fourth day.", src));
    /* an answer that adds a claim the source does not make */
    assert_true(detected("Warfarin 5 mg was given every evening. The patient later developed a pulmonary embolism "
                         "and was readmitted to intensive care.",
                         src));
}

static void test_multi_source(void **state)
{
    (void)state;
    const char *src[2] = {"The Riverside clinic opens at 8 am on weekdays.",
                          "Dr. Okafor sees cardiology patients on Tuesdays and Thursdays."};
    custos_grounded_result_t r;
    run("The Riverside clinic opens at 8 am on weekdays. Dr. Okafor sees cardiology patients on Tuesdays.", src, 2,
        CUSTOS_GROUNDED_GENERIC, &r);
    assert_false(r.detected);
    assert_int_equal(r.n_sentences, 2);
    assert_true(r.percentage == 0.0f);
    custos_grounded_result_dispose(&r);
    /* each sentence needs its own source; with only one source the other sentence is unsupported */
    const char *one[1] = {src[0]};
    const char *text = "The Riverside clinic opens at 8 am on weekdays. Dr. Okafor sees cardiology patients on "
                       "Tuesdays.";
    run(text, one, 1, CUSTOS_GROUNDED_GENERIC, &r);
    assert_true(r.detected);
    assert_int_equal(r.n_spans, 1);
    const char *second = strstr(text, "Dr. Okafor");
    assert_int_equal(r.spans[0].utf8_off, (size_t)(second - text));
    assert_int_equal(r.spans[0].utf8_len, strlen(second));
    assert_true(r.percentage > 0.3f && r.percentage < 0.8f);
    custos_grounded_result_dispose(&r);
}

static void test_offsets_non_ascii(void **state)
{
    (void)state;
    /* "Café" has a 2-byte é; the emoji is 4 bytes, 1 code point, 2 UTF-16 units */
    const char *src[1] = {"Le Café Müller ouvre à 8 heures du matin."};
    const char *text = "Le Café Müller ouvre à 8 heures du matin. 😀 Le patient a reçu 40 mg de furosémide hier soir.";
    custos_grounded_result_t r;
    run(text, src, 1, CUSTOS_GROUNDED_GENERIC, &r);
    assert_int_equal(r.n_sentences, 2);
    assert_int_equal(r.n_spans, 1);
    const char *bad = strstr(text, "\xF0\x9F\x98\x80");
    size_t b = (size_t)(bad - text);
    assert_int_equal(r.spans[0].utf8_off, b);
    /* code points before it: bytes minus continuation bytes (é, ü, à = 3 two-byte letters) */
    assert_int_equal(r.spans[0].cp_off, b - 3);
    assert_int_equal(r.spans[0].utf16_off, b - 3);
    assert_int_equal(r.spans[0].utf8_len, strlen(bad));
    /* the span holds the emoji (4 bytes, 1 cp, 2 units), ç and é (2 bytes each) */
    assert_int_equal(r.spans[0].cp_len, strlen(bad) - 3 - 1 - 1);
    assert_int_equal(r.spans[0].utf16_len, strlen(bad) - 3 - 1 - 1 + 1);
    custos_grounded_result_dispose(&r);
}

static void test_medical_domain(void **state)
{
    (void)state;
    const char *src[1] = {"Give amoxicillin 500 mg three times a day for 7 days."};
    custos_grounded_result_t g, m;
    run("Give amoxicillin 250 mg three times a day for 7 days.", src, 1, CUSTOS_GROUNDED_GENERIC, &g);
    run("Give amoxicillin 250 mg three times a day for 7 days.", src, 1, CUSTOS_GROUNDED_MEDICAL, &m);
    assert_true(m.detected);
    assert_true(m.score >= g.score);
    custos_grounded_result_dispose(&g);
    custos_grounded_result_dispose(&m);
}

static void test_input_errors(void **state)
{
    (void)state;
    custos_grounded_result_t r;
    const char *s[1] = {"x"};
    size_t l[1] = {1};
    custos_grounded_input_t in = {.text = "x", .text_len = 1, .sources = s, .source_lens = l, .n_sources = 1};
    assert_int_equal(custos_grounded_detect(NULL, &in, &r), CUSTOS_EINVAL);
    assert_int_equal(custos_grounded_detect(g_model, NULL, &r), CUSTOS_EINVAL);
    in.text_len = CUSTOS_GROUNDED_MAX_TEXT + 1;
    assert_int_equal(custos_grounded_detect(g_model, &in, &r), CUSTOS_ETOOBIG);
    in.text_len = 1;
    in.n_sources = CUSTOS_GROUNDED_MAX_SOURCES + 1;
    assert_int_equal(custos_grounded_detect(g_model, &in, &r), CUSTOS_ETOOBIG);
    /* no sources: every claim is ungrounded; empty text: nothing to flag */
    in.n_sources = 0;
    in.text = "The patient is stable.";
    in.text_len = strlen(in.text);
    assert_int_equal(custos_grounded_detect(g_model, &in, &r), 0);
    assert_true(r.detected);
    custos_grounded_result_dispose(&r);
    in.text_len = 0;
    assert_int_equal(custos_grounded_detect(g_model, &in, &r), 0);
    assert_false(r.detected);
    assert_int_equal(r.n_sentences, 0);
    custos_grounded_result_dispose(&r);
}

static void *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *b = malloc(1 << 20);
    assert_non_null(b);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

static void test_model_validation(void **state)
{
    (void)state;
    size_t n;
    unsigned char *b = read_all(MODEL, &n);
    custos_grounded_model_t *m = NULL;
    char err[256];
    assert_int_equal(custos_grounded_model_from_buffer(b, n, &m, err, sizeof(err)), 0);
    custos_grounded_model_free(m);
    assert_int_equal(custos_grounded_model_from_buffer(b, n - 1, &m, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(m);
    b[n - 10] ^= 1; /* IDF byte: checksum */
    assert_int_equal(custos_grounded_model_from_buffer(b, n, &m, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "checksum"));
    b[n - 10] ^= 1;
    b[8] = 99; /* version */
    assert_int_equal(custos_grounded_model_from_buffer(b, n, &m, err, sizeof(err)), CUSTOS_EINVAL);
    free(b);
    assert_int_equal(custos_grounded_model_open("/nonexistent/grounded.model", &m, err, sizeof(err)), CUSTOS_EIO);
}

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_trainer_deterministic(void **state)
{
    (void)state;
    char dir[] = "/tmp/custos-grounded-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[512], g[512], m1[512], m2[512], dev[512];
    snprintf(p, sizeof(p), "%s/MANIFEST.tsv", dir);
    write_file(p, "file\trows\tcommercial_ok\n"
                  "grounded/ok.jsonl\t40\tyes\n"
                  "grounded/nc.jsonl\t1\tno\n");
    snprintf(g, sizeof(g), "%s/grounded", dir);
    assert_int_equal(mkdir(g, 0700), 0);
    snprintf(p, sizeof(p), "%s/grounded/ok.jsonl", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < 40; i++)
        fprintf(f,
                "{\"sources\":[\"Patient %d received %d mg of drug %c on day %d.\"],\"text\":\"Patient %d received "
                "%d mg of drug %c.\",\"grounded\":%d,\"query\":null,\"src\":\"fx\"}\n",
                i, 10 + i, 'A' + i % 20, i % 7, i, i % 2 ? 10 + i : 99 + i, 'A' + i % 20, i % 2);
    fclose(f);
    snprintf(p, sizeof(p), "%s/grounded/nc.jsonl", dir);
    write_file(p, "this file must never be read\n");
    snprintf(m1, sizeof(m1), "%s/a.model", dir);
    snprintf(m2, sizeof(m2), "%s/b.model", dir);
    snprintf(dev, sizeof(dev), "%s/dev.jsonl", dir);
    custos_train_opts_t o = {.data_dir = dir, .out = m1, .dev_out = dev, .lr = 0.05f};
    char err[256];
    assert_int_equal(custos_train_grounded(&o, err, sizeof(err)), 0);
    o.out = m2;
    o.dev_out = NULL;
    assert_int_equal(custos_train_grounded(&o, err, sizeof(err)), 0);
    size_t n1, n2;
    void *a = read_all(m1, &n1), *b = read_all(m2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    custos_grounded_model_t *m = NULL;
    assert_int_equal(custos_grounded_model_from_buffer(a, n1, &m, err, sizeof(err)), 0);
    custos_grounded_model_free(m);
    free(a);
    free(b);
    unlink(m1);
    unlink(m2);
    unlink(dev);
    unlink(p);
    snprintf(p, sizeof(p), "%s/grounded/ok.jsonl", dir);
    unlink(p);
    rmdir(g);
    snprintf(p, sizeof(p), "%s/MANIFEST.tsv", dir);
    unlink(p);
    rmdir(dir);
}

static void test_check_contract(void **state)
{
    (void)state;
    const char *input =
        "{\"id\":\"a\",\"sources\":[\"The clinic opens at 8 am.\"],\"text\":\"The clinic opens at 8 am.\"}\n"
        "{\"id\":7,\"sources\":[\"The clinic opens at 8 am.\"],\"text\":\"The clinic opens at 8 am. Parking costs "
        "12 dollars per hour at the north garage.\"}\n"
        "\n"
        "{\"id\":\"bad\",\"text\":\"no sources\"}\n"
        "not json\n";
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    char *obuf = NULL;
    size_t olen = 0;
    FILE *out = open_memstream(&obuf, &olen);
    assert_int_equal(custos_cli_check_grounded(MODEL, in, out), 0);
    fclose(in);
    fclose(out);
    char *save = NULL, *line = strtok_r(obuf, "\n", &save);
    int k = 0;
    for (; line; line = strtok_r(NULL, "\n", &save), k++) {
        json_object *j = json_tokener_parse(line);
        if (!j)
            fprintf(stderr, "bad output line %d: %s\n", k, line);
        assert_non_null(j);
        json_object *v;
        if (k >= 2) {
            assert_true(json_object_object_get_ex(j, "error", &v));
            json_object_put(j);
            continue;
        }
        assert_true(json_object_object_get_ex(j, "id", &v));
        assert_true(json_object_object_get_ex(j, "ungrounded_detected", &v));
        assert_true(json_object_is_type(v, json_type_boolean));
        int det = json_object_get_boolean(v);
        assert_true(json_object_object_get_ex(j, "ungrounded_percentage", &v));
        double pct = json_object_get_double(v);
        assert_true(pct >= 0 && pct <= 1);
        assert_true(json_object_object_get_ex(j, "score", &v));
        assert_true(json_object_get_double(v) >= 0 && json_object_get_double(v) <= 1);
        assert_true(json_object_object_get_ex(j, "details", &v));
        assert_true(json_object_is_type(v, json_type_array));
        if (k == 0) {
            assert_false(det);
            assert_int_equal(json_object_array_length(v), 0);
        } else {
            assert_true(det);
            assert_int_equal(json_object_array_length(v), 1);
            json_object *d = json_object_array_get_idx(v, 0), *s, *e;
            assert_true(json_object_object_get_ex(d, "start", &s) && json_object_object_get_ex(d, "end", &e));
            assert_int_equal(json_object_get_int(s), 26);
            assert_int_equal(json_object_get_int(e), 80);
        }
        json_object_put(j);
    }
    assert_int_equal(k, 4);
    free(obuf);
}

static void test_eval_report(void **state)
{
    (void)state;
    char path[] = "/tmp/custos-grounded-eval-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("{\"sources\":[\"The clinic opens at 8 am.\"],\"text\":\"The clinic opens at 8 am.\",\"grounded\":1,"
          "\"src\":\"t\"}\n"
          "{\"sources\":[\"The clinic opens at 8 am.\"],\"text\":\"The clinic opens at 11 am.\",\"grounded\":0,"
          "\"src\":\"t\"}\n"
          "not json\n",
          f);
    fclose(f);
    char *obuf = NULL;
    size_t olen = 0;
    FILE *out = open_memstream(&obuf, &olen);
    assert_int_equal(custos_cli_eval_grounded(MODEL, path, out), 0);
    fclose(out);
    assert_non_null(strstr(obuf, "all              rows     2  ungrounded     1  recall 1.0000  specificity 1.0000"));
    assert_non_null(strstr(obuf, "AUPRC (positive = ungrounded): 1.0000"));
    assert_non_null(strstr(obuf, "1 KB answer vs 4 KB sources"));
    free(obuf);
    unlink(path);
    assert_int_equal(custos_cli_eval_grounded(MODEL, "/nonexistent.jsonl", stdout), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contradictions),   cmocka_unit_test(test_supported),
        cmocka_unit_test(test_multi_source),     cmocka_unit_test(test_offsets_non_ascii),
        cmocka_unit_test(test_medical_domain),   cmocka_unit_test(test_input_errors),
        cmocka_unit_test(test_model_validation), cmocka_unit_test(test_trainer_deterministic),
        cmocka_unit_test(test_check_contract),   cmocka_unit_test(test_eval_report),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
