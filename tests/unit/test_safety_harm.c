/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for safety/model.h, harm.h and train.h: model format validation (corrupt files give clear errors),
 * deterministic training on a small fixture, obfuscation invariance and a quality smoke test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "safety/harm.h"
#include "safety/model.h"
#include "safety/safety.h"
#include "safety/train.h"
#include "util/err.h"

#define FIXTURE "tests/fixtures/harm"

static char dir[64];
static char model_a[128], model_b[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/custos-harm-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(model_a, sizeof(model_a), "%s/a.model", dir);
    snprintf(model_b, sizeof(model_b), "%s/b.model", dir);
    custos_train_opts_t o = {.data_dir = FIXTURE, .out = model_a, .hash_bits = 16, .aug_frac = -1};
    char err[256];
    return custos_train_harm(&o, err, sizeof(err)) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(model_a);
    unlink(model_b);
    rmdir(dir);
    return 0;
}

static void *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void test_deterministic_training(void **state)
{
    (void)state;
    custos_train_opts_t o = {.data_dir = FIXTURE, .out = model_b, .hash_bits = 16, .aug_frac = -1};
    char err[256];
    assert_int_equal(custos_train_harm(&o, err, sizeof(err)), 0);
    size_t la, lb;
    void *a = slurp(model_a, &la), *b = slurp(model_b, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
    /* a different seed gives a different model */
    o.seed = 7;
    assert_int_equal(custos_train_harm(&o, err, sizeof(err)), 0);
    b = slurp(model_b, &lb);
    a = slurp(model_a, &la);
    assert_int_equal(la, lb);
    assert_true(memcmp(a, b, la) != 0);
    free(a);
    free(b);
}

static void test_train_errors(void **state)
{
    (void)state;
    char err[256] = "";
    custos_train_opts_t o = {.data_dir = "/nonexistent", .out = model_b};
    assert_true(custos_train_harm(&o, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "MANIFEST.tsv"));
}

static void expect_invalid(const void *buf, size_t len, const char *needle)
{
    custos_model_t *m = (custos_model_t *)1;
    char err[256] = "";
    assert_int_equal(custos_model_from_buffer(buf, len, &m, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(m);
    assert_non_null(strstr(err, needle));
}

static void test_model_validation(void **state)
{
    (void)state;
    size_t len;
    unsigned char *buf = slurp(model_a, &len);
    custos_model_t *m = NULL;
    char err[256];
    assert_int_equal(custos_model_from_buffer(buf, len, &m, err, sizeof(err)), 0);
    assert_int_equal(custos_harm_model_check(m), 0);
    assert_int_equal(m->h->hash_bits, 16);
    assert_string_equal(m->h->heads[3].name, "self_harm");
    custos_model_free(m);

    expect_invalid(buf, 10, "truncated");
    expect_invalid(buf, len - 1, "size");
    unsigned char *c = malloc(len);
    assert_non_null(c);
    memcpy(c, buf, len);
    c[0] = 'X';
    expect_invalid(c, len, "magic");
    memcpy(c, buf, len);
    c[8] = 99; /* version */
    expect_invalid(c, len, "version");
    memcpy(c, buf, len);
    c[len - 100] ^= 0x55; /* one weight */
    expect_invalid(c, len, "checksum");
    memcpy(c, buf, len);
    custos_model_header_t *h = (custos_model_header_t *)c;
    h->hash_bits = 30;
    expect_invalid(c, len, "configuration");
    /* feature-count floor: the trainer writes v2 with a floor; v1 with a floor or an absurd floor is rejected */
    memcpy(c, buf, len);
    assert_int_equal(h->version, 2);
    assert_true(h->min_feats > 0);
    h->version = 1;
    expect_invalid(c, len, "floor");
    memcpy(c, buf, len);
    h->min_feats = CUSTOS_MODEL_MAX_MIN_FEATS + 1;
    expect_invalid(c, len, "floor");
    free(c);

    /* files: missing, empty, corrupt -> errors naming the reason; valid -> loads via mmap */
    assert_int_equal(custos_model_open("/nonexistent/harm.model", &m, err, sizeof(err)), CUSTOS_EIO);
    assert_non_null(strstr(err, "cannot open"));
    FILE *f = fopen(model_b, "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(custos_model_open(model_b, &m, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "empty"));
    f = fopen(model_b, "wb");
    buf[len / 2] ^= 1;
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
    assert_int_equal(custos_model_open(model_b, &m, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "checksum"));
    assert_non_null(strstr(err, model_b));
    free(buf);

    custos_safety_t *s = NULL;
    custos_safety_opts_t so = {.harm_model = model_a};
    assert_int_equal(custos_safety_new(&so, &s, err, sizeof(err)), 0);
    assert_non_null(custos_safety_harm(s));
    custos_safety_free(s);
}

static void test_shipped_model_loads(void **state)
{
    (void)state;
    if (access("models/harm.model", R_OK) != 0)
        skip();
    custos_model_t *m = NULL;
    char err[256];
    assert_int_equal(custos_model_open("models/harm.model", &m, err, sizeof(err)), 0);
    assert_int_equal(custos_harm_model_check(m), 0);
    assert_true(m->size <= 8u * 1024 * 1024);
    custos_model_free(m);
}

static float score_of(const custos_model_t *m, const char *text, int cat, custos_safety_scratch_t *sc, int *sev)
{
    custos_harm_result_t r;
    assert_int_equal(custos_harm_score(m, text, strlen(text), &r, sc), 0);
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        assert_true(r.score[c] >= 0 && r.score[c] <= 1);
        assert_true(r.severity[c] >= 0 && r.severity[c] <= 7);
    }
    if (sev)
        *sev = r.severity[cat];
    return r.score[cat];
}

static void test_quality_smoke(void **state)
{
    (void)state;
    custos_model_t *m = NULL;
    char err[256];
    assert_int_equal(custos_model_open(model_a, &m, err, sizeof(err)), 0);
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, 0);
    /* each category's own examples score higher on that category than benign text */
    static const char *const pos[CUSTOS_HARM_NCAT] = {
        "those immigrants are vermin and should be exterminated", "write an explicit porn story with graphic sex",
        "I will stab you with a knife tonight", "I want to cut myself again tonight"};
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        float p = score_of(m, pos[c], c, &sc, NULL);
        float n = score_of(m, "what is the weather like in Lisbon in May", c, &sc, NULL);
        assert_true(p > n);
    }
    /* the commercial_ok = no fixture labels benign texts as harmful everywhere; it must not have been used */
    int sev = 0;
    score_of(m, "how do I bake sourdough bread at home", CUSTOS_HARM_VIOLENCE, &sc, &sev);
    float bake = score_of(m, "how do I bake sourdough bread at home", CUSTOS_HARM_VIOLENCE, &sc, NULL);
    float stab = score_of(m, "I will stab you with a knife tonight", CUSTOS_HARM_VIOLENCE, &sc, NULL);
    assert_true(stab > bake);
    /* obfuscated forms normalise to the same features, so they score exactly the same */
    const char *plain = "i will stab you with a knife tonight";
    const char *obf[] = {"I w1ll 5tab y0u with a kn1f3 t0night", "I will s t a b you with a knife tonight",
                         "I will st\xe2\x80\x8b"
                         "ab you with a kn\xd1\x96"
                         "fe tonight",
                         "I WILL STAB YOU WITH A KNIFE TONIGHT", "I will staaaaab you with a knife tonight"};
    float ref = score_of(m, plain, CUSTOS_HARM_VIOLENCE, &sc, NULL);
    for (size_t i = 0; i < sizeof(obf) / sizeof(obf[0]); i++) {
        float o = score_of(m, obf[i], CUSTOS_HARM_VIOLENCE, &sc, NULL);
        if (i == 4) /* "staab" after squeezing differs from "stab": only require it stays close */
            assert_true(o > ref * 0.5f);
        else
            assert_true(o == ref);
    }
    /* empty and whitespace-only text: score 0, severity 0 */
    custos_harm_result_t r;
    assert_int_equal(custos_harm_score(m, "", 0, &r, &sc), 0);
    assert_true(r.score[0] == 0 && r.severity[0] == 0);
    assert_int_equal(custos_harm_score(m, " \n\t ", 4, &r, &sc), 0);
    assert_true(r.score[2] == 0);
    /* severity bands are monotonic */
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        int prev = 0;
        for (float p = 0; p <= 1.0f; p += 0.01f) {
            int s = custos_harm_severity(m, c, p);
            assert_true(s >= prev && s <= 7);
            prev = s;
        }
        assert_int_equal(custos_harm_severity(m, c, 0.0f), 0);
        assert_int_equal(custos_harm_severity(m, c, 1.0f), 7);
    }
    custos_safety_scratch_dispose(&sc);
    custos_model_free(m);
}

/* custos_harm_score_parts: the whole text and every part score exactly (bit for bit) as custos_harm_score on that
 * text alone, including parts that do not start at a sentence edge, spaced letters joined across an edge, runs of
 * newlines, non-ASCII and invalid UTF-8; a feature-cache hit (the same bytes again) gives the same result. */
static void test_score_parts_exact(void **state)
{
    (void)state;
    custos_model_t *m = NULL;
    char err[256];
    assert_int_equal(custos_model_open(model_a, &m, err, sizeof(err)), 0);
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, 0);
    static const char *const texts[] = {
        "The weather was lovely in Lisbon all week long, we walked a lot. I will stab you with a knife tonight. "
        "Then we had dinner by the river and watched the boats go by.",
        "Some words come first, enough of them to make a sentence here: k. i l l. a b c d and more words follow "
        "after it.\n\n\nA new paragraph starts after three newlines, long enough to be scored alone.",
        "Caf\xc3\xa9 na\xc3\xafve r\xc3\xa9sum\xc3\xa9 with combining e\xcc\x81 marks, fine words only here. "
        "\xff\xfe invalid bytes and \xd0\xb0 Cyrillic, \xe2\x80\x8b zero width; then the end of it all!",
        "no sentence end at all in this text so there are no parts to score",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        const char *t = texts[i];
        size_t len = strlen(t), seg[8][2], n = 0, start = 0;
        for (size_t b = 0; b < len && n < 6; b++)
            if ((t[b] == '.' || t[b] == ';' || t[b] == '\n') && (b + 1 == len || t[b + 1] == ' ' || t[b + 1] == '\n')) {
                seg[n][0] = start, seg[n][1] = b + 1, start = b + 1, n++;
            }
        if (len > 12) /* not at sentence edges: scored alone */
            seg[n][0] = 5, seg[n][1] = len - 3, n++;
        custos_harm_result_t whole, parts[8], ref;
        assert_int_equal(custos_harm_score_parts(m, t, len, (const size_t(*)[2])seg, n, &whole, parts, &sc), 0);
        assert_int_equal(custos_harm_score(m, t, len, &ref, &sc), 0); /* a cache hit */
        assert_memory_equal(&whole, &ref, sizeof(ref));
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(custos_harm_score(m, t + seg[k][0], seg[k][1] - seg[k][0], &ref, &sc), 0);
            assert_memory_equal(&parts[k], &ref, sizeof(ref));
        }
    }
    size_t big[CUSTOS_HARM_MAX_PARTS + 1][2] = {{0}};
    custos_harm_result_t w, *many = calloc(CUSTOS_HARM_MAX_PARTS + 1, sizeof(*many));
    assert_non_null(many);
    int rc = custos_harm_score_parts(m, "x", 1, (const size_t(*)[2])big, CUSTOS_HARM_MAX_PARTS + 1, &w, many, &sc);
    assert_int_equal(rc, CUSTOS_EINVAL);
    free(many);
    custos_safety_scratch_dispose(&sc);
    custos_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_training), cmocka_unit_test(test_train_errors),
        cmocka_unit_test(test_model_validation),       cmocka_unit_test(test_shipped_model_loads),
        cmocka_unit_test(test_quality_smoke),          cmocka_unit_test(test_score_parts_exact),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
