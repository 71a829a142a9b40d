/* SPDX-License-Identifier: Apache-2.0
 * Name / address tagger (pii_ner.h) with the shipped models/pii_ner.model: names and addresses in sentences, hard
 * negatives (diseases named after people, "Main Street Bank", capitalised sentence starts), code-point offsets,
 * merging with the structured scanner, windowing over long texts; the trainer is deterministic (tiny fixture). */
#include "safety/pii.h"
#include "safety/pii_ner.h"
#include "safety/train.h"

#include "util/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define MODEL "models/pii_ner.model"

static custos_model_t *model;
static custos_pii_t *scanner;
static custos_safety_scratch_t sc;

static int setup(void **st)
{
    (void)st;
    char err[256] = "";
    if (custos_model_open(MODEL, &model, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    custos_pii_opts_t o = {.ner = model, .ner_types = CUSTOS_PII_NER_ALL};
    if (custos_pii_new(&o, &scanner, err, sizeof(err)) < 0)
        return -1;
    custos_safety_scratch_init(&sc, 1u << 20);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    custos_pii_free(scanner);
    custos_model_free(model);
    custos_safety_scratch_dispose(&sc);
    return 0;
}

static size_t scan(const char *text, custos_pii_span_t *sp, size_t cap)
{
    size_t n = 0;
    assert_int_equal(custos_pii_scan(scanner, text, strlen(text), &sc, sp, cap, &n), 0);
    return n;
}

static uint32_t cps(const char *from, const char *to)
{
    uint32_t n = 0;
    for (const char *q = from; q < to; q++)
        n += ((unsigned char)*q & 0xc0) != 0x80;
    return n;
}

/* 1 if the spans hold exactly needle (located by bytes) with that type. */
static int has(const char *text, const custos_pii_span_t *sp, size_t n, int type, const char *needle)
{
    const char *at = strstr(text, needle);
    assert_non_null(at);
    uint32_t s = cps(text, at), e = s + cps(at, at + strlen(needle));
    for (size_t i = 0; i < n; i++)
        if (sp[i].type == type && sp[i].start == s && sp[i].end == e)
            return 1;
    return 0;
}

static int count_type(const custos_pii_span_t *sp, size_t n, int type)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += sp[i].type == type;
    return k;
}

static void test_types_and_groups(void **st)
{
    (void)st;
    assert_string_equal(custos_pii_type_name(CUSTOS_PII_PERSON), "PERSON");
    assert_string_equal(custos_pii_type_name(CUSTOS_PII_STREET_ADDRESS), "STREET_ADDRESS");
    assert_int_equal(custos_pii_type_from_name("ORGANIZATION"), CUSTOS_PII_ORGANIZATION);
    assert_int_equal(custos_pii_type_from_name("LOCATION"), CUSTOS_PII_LOCATION);
    assert_true(custos_pii_in_phi(CUSTOS_PII_PERSON));
    assert_true(custos_pii_in_phi(CUSTOS_PII_STREET_ADDRESS));
    assert_false(custos_pii_in_phi(CUSTOS_PII_ORGANIZATION));
    assert_false(custos_pii_in_phi(CUSTOS_PII_LOCATION));
    assert_int_equal(custos_pii_ner_check(model), 0);
}

/* By default only the PHI types of the tagger are reported. */
static void test_default_types(void **st)
{
    (void)st;
    custos_pii_t *p = NULL;
    custos_pii_opts_t o = {.ner = model};
    assert_int_equal(custos_pii_new(&o, &p, NULL, 0), 0);
    const char *t = "Contact Michael Brown at Acme Corporation in Chicago.";
    custos_pii_span_t sp[8];
    size_t n = 0;
    assert_int_equal(custos_pii_scan(p, t, strlen(t), &sc, sp, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sp[0].type, CUSTOS_PII_PERSON);
    const char *q = "What is the capital of France?";
    assert_int_equal(custos_pii_scan(p, q, strlen(q), &sc, sp, 8, &n), 0);
    assert_int_equal(n, 0);
    custos_pii_free(p);
}

static void test_names_and_addresses(void **st)
{
    (void)st;
    custos_pii_span_t sp[16];
    const char *t1 = "Patient John Smith was seen at 42 Oak Street yesterday.";
    size_t n = scan(t1, sp, 16);
    assert_true(has(t1, sp, n, CUSTOS_PII_PERSON, "John Smith"));
    assert_true(has(t1, sp, n, CUSTOS_PII_STREET_ADDRESS, "42 Oak Street"));
    assert_int_equal(n, 2);

    const char *t2 = "Mrs. Emily Watson, 1600 Pennsylvania Avenue, Washington";
    n = scan(t2, sp, 16);
    assert_true(has(t2, sp, n, CUSTOS_PII_PERSON, "Emily Watson")); /* the title is not part of the name */
    assert_true(has(t2, sp, n, CUSTOS_PII_STREET_ADDRESS, "1600 Pennsylvania Avenue"));

    const char *t3 = "Contact Michael Brown at Acme Corporation in Chicago.";
    n = scan(t3, sp, 16);
    assert_true(has(t3, sp, n, CUSTOS_PII_PERSON, "Michael Brown"));
    assert_true(has(t3, sp, n, CUSTOS_PII_ORGANIZATION, "Acme Corporation"));
    assert_true(has(t3, sp, n, CUSTOS_PII_LOCATION, "Chicago"));
    for (size_t i = 0; i < n; i++)
        assert_true(sp[i].score > 0.5f && sp[i].score <= 1.0f);
}

static void test_utf8_offsets(void **st)
{
    (void)st;
    custos_pii_span_t sp[16];
    const char *t = "Dr. José Álvarez lives at 12 Rue de Rivoli in Paris.";
    size_t n = scan(t, sp, 16);
    assert_true(has(t, sp, n, CUSTOS_PII_PERSON, "José Álvarez"));
    assert_true(has(t, sp, n, CUSTOS_PII_STREET_ADDRESS, "12 Rue de Rivoli"));
}

static void test_hard_negatives(void **st)
{
    (void)st;
    custos_pii_span_t sp[16];
    static const char *const none[] = {
        "Parkinson's disease was diagnosed in 2019.",
        "Down syndrome and Crohn's disease were ruled out.",
        "Yesterday the results came back normal.",
        "The patient was seen today and is doing well.",
        "Monday: Review the Q3 budget. Tuesday: Board meeting.",
        "",
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        size_t n = scan(none[i], sp, 16);
        if (n)
            fail_msg("'%s': %zu spans, first %s", none[i], n, custos_pii_type_name(sp[0].type));
    }
    const char *bank = "Main Street Bank approved the loan for Maria Lopez.";
    size_t n = scan(bank, sp, 16);
    assert_int_equal(count_type(sp, n, CUSTOS_PII_STREET_ADDRESS), 0); /* an organisation, not an address */
    assert_true(has(bank, sp, n, CUSTOS_PII_PERSON, "Maria Lopez"));
}

static void test_merge_with_structured(void **st)
{
    (void)st;
    custos_pii_span_t sp[16];
    const char *t = "Please send the report to Sarah Connor at sarah.connor@example.com by Friday.";
    size_t n = scan(t, sp, 16);
    assert_int_equal(n, 2);
    assert_true(has(t, sp, n, CUSTOS_PII_PERSON, "Sarah Connor"));
    assert_true(has(t, sp, n, CUSTOS_PII_EMAIL, "sarah.connor@example.com"));
    assert_true(sp[0].start < sp[1].start); /* text order */
    /* cap: the structured finding comes first and fills it */
    n = scan(t, sp, 1);
    assert_int_equal(n, 1);
    assert_int_equal(sp[0].type, CUSTOS_PII_EMAIL);
    /* without a tagger only the structured type */
    custos_pii_span_t sp2[4];
    size_t n2 = 0;
    assert_int_equal(custos_pii_scan(NULL, t, strlen(t), &sc, sp2, 4, &n2), 0);
    assert_int_equal(n2, 1);
    assert_int_equal(sp2[0].type, CUSTOS_PII_EMAIL);
}

/* A name sits on the tagger's window boundary (512 tokens) and is still found once and whole. */
static void test_long_text_windows(void **st)
{
    (void)st;
    size_t cap = 16384, len = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    for (int k = 0; k < 509; k++)
        len += (size_t)snprintf(t + len, cap - len, "ok ");
    const char *name = "Patient John Smith was seen at 42 Oak Street yesterday.";
    len += (size_t)snprintf(t + len, cap - len, "%s", name);
    for (int k = 0; k < 600; k++)
        len += (size_t)snprintf(t + len, cap - len, " ok");
    custos_pii_span_t sp[16];
    size_t n = 0;
    assert_int_equal(custos_pii_scan(scanner, t, len, &sc, sp, 16, &n), 0);
    assert_int_equal(count_type(sp, n, CUSTOS_PII_PERSON), 1);
    assert_true(has(t, sp, n, CUSTOS_PII_PERSON, "John Smith"));
    assert_true(has(t, sp, n, CUSTOS_PII_STREET_ADDRESS, "42 Oak Street"));
    free(t);
}

/* ---- trainer determinism on a generated fixture ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_trainer_deterministic(void **st)
{
    (void)st;
    char dir[] = "/tmp/custos-pii-ner-XXXXXX", p[256], m1[256], m2[256], dev[256];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/pii", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/pii/resources", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/MANIFEST.tsv", dir);
    write_file(p, "file\trows\tcommercial_ok\n"
                  "pii/ok.jsonl\t2\tyes\n"
                  "pii/nc.jsonl\t1\tno\n");
    snprintf(p, sizeof(p), "%s/pii/ok.jsonl", dir);
    write_file(p, "{\"text\":\"Anna Berg lives in Oslo\",\"spans\":[{\"type\":\"PERSON\",\"start\":0,\"end\":9},"
                  "{\"type\":\"LOCATION\",\"start\":19,\"end\":23}],\"src\":\"ok\",\"orig\":{\"split\":\"train\"}}\n"
                  "{\"text\":\"Visit Acme today\",\"spans\":[{\"type\":\"CORPORATION\",\"start\":6,\"end\":10}],"
                  "\"src\":\"ok\",\"orig\":{\"split\":\"dev\"}}\n");
    snprintf(p, sizeof(p), "%s/pii/nc.jsonl", dir); /* not commercial_ok: must not be read (it is not JSON) */
    write_file(p, "this file must not be read\n");
    size_t cap = 1 << 16, len = 0;
    char *csv = malloc(cap);
    assert_non_null(csv);
    len += (size_t)snprintf(csv + len, cap - len,
                            "\xef\xbb\xbfNumber,GivenName,MiddleInitial,Surname,Title,StreetAddress,City,StateFull,"
                            "ZipCode,CountryFull,EmailAddress,TelephoneNumber,Birthday,Occupation,Company\n");
    for (int i = 0; i < 120; i++)
        len += (size_t)snprintf(csv + len, cap - len,
                                "%d,Given%c%c,Q,Sur%c%c,Ms.,\"%d Elm%c Street\",City%c,State,%05d,Country,"
                                "a%d@example.com,555-01%02d,1/2/1970,Nurse,Co%d\n",
                                i + 1, 'a' + i % 26, 'a' + i / 26, 'a' + i % 7, 'a' + i / 7 % 26, i + 10, 'a' + i % 5,
                                'a' + i % 9, 10000 + i, i, i % 100, i);
    snprintf(p, sizeof(p), "%s/pii/resources/FakeNameGenerator.com_3000.csv", dir);
    write_file(p, csv);
    len = (size_t)snprintf(csv, cap, "organization\n");
    for (int i = 0; i < 120; i++)
        len += (size_t)snprintf(csv + len, cap - len, "Org%d Holdings Inc\n", i);
    snprintf(p, sizeof(p), "%s/pii/resources/companies_and_organizations.csv", dir);
    write_file(p, csv);
    free(csv);

    snprintf(m1, sizeof(m1), "%s/a.model", dir);
    snprintf(m2, sizeof(m2), "%s/b.model", dir);
    snprintf(dev, sizeof(dev), "%s/dev.jsonl", dir);
    char err[256] = "";
    custos_train_opts_t o = {.data_dir = dir, .out = m1, .dev_out = dev, .hash_bits = 16, .epochs = 1};
    assert_int_equal(custos_train_pii(&o, err, sizeof(err)), 0);
    o.out = m2;
    assert_int_equal(custos_train_pii(&o, err, sizeof(err)), 0);
    size_t la, lb;
    unsigned char *a = slurp(m1, &la), *b = slurp(m2, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    custos_model_t *m = NULL;
    assert_int_equal(custos_model_from_buffer(a, la, &m, err, sizeof(err)), 0);
    assert_int_equal(custos_pii_ner_check(m), 0);
    custos_model_free(m);
    free(a);
    free(b);
    /* the dev split holds the source's dev row */
    unsigned char *d = slurp(dev, &la);
    assert_non_null(memmem(d, la, "Visit Acme today", 16));
    assert_null(memmem(d, la, "Anna Berg", 9));
    free(d);
    /* missing resources: a clear error */
    o.data_dir = "/nonexistent";
    err[0] = 0;
    assert_true(custos_train_pii(&o, err, sizeof(err)) < 0);
    assert_true(err[0] != 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_and_groups),    cmocka_unit_test(test_default_types),
        cmocka_unit_test(test_names_and_addresses), cmocka_unit_test(test_utf8_offsets),
        cmocka_unit_test(test_hard_negatives),      cmocka_unit_test(test_merge_with_structured),
        cmocka_unit_test(test_long_text_windows),   cmocka_unit_test(test_trainer_deterministic),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
