/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for safety/normalize.h: each evasion (zero-width, bidi, homoglyphs, fullwidth, leet, spacing, repeats),
 * UTF-8 repair, and the map from normalised code points back to original code-point offsets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "safety/normalize.h"
#include "util/err.h"

static custos_safety_scratch_t sc;

static int setup(void **state)
{
    (void)state;
    custos_safety_scratch_init(&sc, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    custos_safety_scratch_dispose(&sc);
    return 0;
}

/* Normalises s with flags and returns the UTF-8 result in a static buffer; *out receives the views. */
static const char *norm_flags(const char *s, unsigned flags, custos_norm_t *out)
{
    static char buf[4096];
    custos_norm_t n;
    assert_int_equal(custos_normalize(s, strlen(s), flags, &sc, &n), 0);
    assert_true(custos_norm_to_utf8(n.cp, n.len, buf, sizeof(buf)) >= 0);
    if (out)
        *out = n;
    return buf;
}

static const char *norm(const char *s, custos_norm_t *out)
{
    return norm_flags(s, CUSTOS_NORM_ALL, out);
}

static void test_case_and_nfkc(void **state)
{
    (void)state;
    assert_string_equal(norm("Hello WORLD", NULL), "hello world");
    assert_string_equal(norm("\xef\xbd\x8b\xef\xbd\x89\xef\xbd\x8c\xef\xbd\x8c", NULL), "kill"); /* fullwidth */
    assert_string_equal(norm("Stra\xc3\x9f"
                             "e",
                             NULL),
                        "strasse"); /* casefold */
    assert_string_equal(norm("\xf0\x9d\x90\xa4\xf0\x9d\x90\xa2\xf0\x9d\x90\xa5\xf0\x9d\x90\xa5", NULL),
                        "kill");                                                                 /* math bold */
    assert_string_equal(norm("\xe2\x93\x9a\xe2\x93\x98\xe2\x93\x9b\xe2\x93\x9b", NULL), "kill"); /* circled */
    /* decomposed e + combining acute composes to one code point mapped to the e */
    custos_norm_t n;
    assert_string_equal(norm("cafe\xcc\x81!", &n), "caf\xc3\xa9!");
    assert_int_equal(n.len, 5);
    assert_int_equal(n.map[3], 3);
    assert_int_equal(n.map[4], 5);
}

static void test_zero_width_and_bidi(void **state)
{
    (void)state;
    custos_norm_t n;
    /* k ZWSP i ZWNJ l ZWJ l */
    assert_string_equal(norm("k\xe2\x80\x8bi\xe2\x80\x8cl\xe2\x80\x8dl", &n), "kill");
    assert_int_equal(n.len, 4);
    assert_int_equal(n.map[0], 0);
    assert_int_equal(n.map[1], 2);
    assert_int_equal(n.map[2], 4);
    assert_int_equal(n.map[3], 6);
    assert_int_equal(n.orig_len, 7);
    /* RLO ... PDF, LRI, BOM, soft hyphen, word joiner */
    assert_string_equal(norm("\xe2\x80\xaekill\xe2\x80\xac", NULL), "kill");
    assert_string_equal(norm("\xef\xbb\xbfki\xc2\xadll\xe2\x81\xa0", NULL), "kill");
    assert_string_equal(norm("\xe2\x81\xa6kill\xe2\x81\xa9", NULL), "kill");
}

static void test_homoglyphs(void **state)
{
    (void)state;
    /* Cyrillic i (U+0456) in a Latin word */
    assert_string_equal(norm("k\xd1\x96ll", NULL), "kill");
    /* all-look-alike Cyrillic word: s e x with Cyrillic dze, ie, ha */
    assert_string_equal(norm("\xd1\x95\xd0\xb5\xd1\x85", NULL), "sex");
    /* Greek omicron in "bomb" */
    assert_string_equal(norm("b\xce\xbf"
                             "mb",
                             NULL),
                        "bomb");
    /* real Russian text keeps its letters (contains non-look-alike letters) */
    assert_string_equal(norm("\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", NULL),
                        "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
    /* flag off: unchanged */
    assert_string_equal(norm_flags("k\xd1\x96ll", CUSTOS_NORM_NFKC, NULL), "k\xd1\x96ll");
}

static void test_leet(void **state)
{
    (void)state;
    assert_string_equal(norm("k1ll", NULL), "kill");
    assert_string_equal(norm("h4t3 y0u", NULL), "hate you");
    assert_string_equal(norm("$h1t", NULL), "shit");
    assert_string_equal(norm("@ss", NULL), "ass");
    assert_string_equal(norm("5u1c1d3", NULL), "suicide");
    /* numbers, ordinals and prices are not words with letters or are exempt */
    assert_string_equal(norm("1234 2nd 4th 3rd $50", NULL), "1234 2nd 4th 3rd $50");
    assert_string_equal(norm_flags("k1ll", CUSTOS_NORM_NFKC, NULL), "k1ll");
}

static void test_spacing(void **state)
{
    (void)state;
    custos_norm_t n;
    assert_string_equal(norm("k i l l them", &n), "kill them");
    assert_int_equal(n.map[0], 0);
    assert_int_equal(n.map[1], 2);
    assert_int_equal(n.map[3], 6);
    assert_int_equal(n.map[5], 8); /* 't' of them */
    assert_string_equal(norm("k.i.l.l", NULL), "kill");
    assert_string_equal(norm("k-i-l-l", NULL), "kill");
    assert_string_equal(norm("k _ i _ l _ l", NULL), "kill");
    assert_string_equal(norm("s 3 x", NULL), "sex");       /* a lone leet digit joins a run of 2+ letters */
    assert_string_equal(norm("1 3 5 x", NULL), "1 3 5 x"); /* ... but digits alone never form one */
    /* two single letters are left alone */
    assert_string_equal(norm("a b testing", NULL), "a b testing");
    assert_string_equal(norm("I am a cat", NULL), "i am a cat");
}

static void test_repeats(void **state)
{
    (void)state;
    custos_norm_t n;
    assert_string_equal(norm("diiiiiie!!!!!", &n), "diie!!");
    assert_int_equal(n.len, 6);
    assert_int_equal(n.map[3], 7); /* e */
    assert_int_equal(n.map[4], 8); /* first ! */
    assert_string_equal(norm("good  book", NULL), "good  book");
    assert_string_equal(norm_flags("diiiie", CUSTOS_NORM_NFKC, NULL), "diiiie");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    custos_norm_t n;
    /* lone continuation byte, overlong encoding of '/', surrogate, truncated sequence */
    const char in[] = "a\x80"
                      "b\xc0\xaf"
                      "c\xed\xa0\x80"
                      "d\xe2\x82";
    assert_int_equal(custos_normalize(in, sizeof(in) - 1, CUSTOS_NORM_ALL, &sc, &n), 0);
    assert_int_equal(n.invalid, 1 + 2 + 3 + 2);
    assert_int_equal(n.orig_len, 4 + 8);
    assert_int_equal(n.cp[0], 'a');
    assert_int_equal(n.cp[1], 0xfffd);
    assert_int_equal(n.cp[2], 'b');
    assert_int_equal(n.map[2], 2);
    /* NUL bytes and empty input */
    assert_int_equal(custos_normalize("", 0, CUSTOS_NORM_ALL, &sc, &n), 0);
    assert_int_equal(n.len, 0);
    assert_int_equal(custos_normalize("a\0b", 3, CUSTOS_NORM_ALL, &sc, &n), 0);
    assert_int_equal(n.len, 3);
}

static void test_offsets_map_back(void **state)
{
    (void)state;
    /* Every map entry is a valid, non-decreasing original offset, and the code point there produced it. */
    const char *s = "Call m\xd0\xb5 at \xef\xbc\x95\xef\xbc\x95\xef\xbc\x95, y0u k i l l\xe2\x80\x8b"
                    "3r!!!!";
    custos_norm_t n;
    norm(s, &n);
    for (size_t i = 0; i < n.len; i++) {
        assert_true(n.map[i] < n.orig_len);
        if (i)
            assert_true(n.map[i] >= n.map[i - 1]);
    }
    /* "me" starts at original offset 5 */
    const char *u = norm(s, &n);
    const char *p = strstr(u, "me");
    assert_non_null(p);
    assert_int_equal(n.map[p - u], 5);
}

static void test_limits(void **state)
{
    (void)state;
    custos_safety_scratch_t small;
    custos_safety_scratch_init(&small, 8);
    custos_norm_t n;
    assert_int_equal(custos_normalize("123456789", 9, CUSTOS_NORM_ALL, &small, &n), CUSTOS_ETOOBIG);
    assert_int_equal(custos_normalize("12345678", 8, CUSTOS_NORM_ALL, &small, &n), 0);
    custos_safety_scratch_dispose(&small);
    char tiny[3];
    uint32_t cps[3] = {'a', 'b', 'c'};
    assert_int_equal(custos_norm_to_utf8(cps, 3, tiny, sizeof(tiny)), CUSTOS_ETOOBIG);
    /* a long pathological run of combining marks stays bounded and valid */
    char big[3000];
    big[0] = 'a';
    for (int i = 0; i < 999; i++)
        memcpy(big + 1 + 2 * i, "\xcc\x81", 2);
    assert_int_equal(custos_normalize(big, 1999, CUSTOS_NORM_ALL, &sc, &n), 0);
    assert_true(n.len >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_case_and_nfkc), cmocka_unit_test(test_zero_width_and_bidi),
        cmocka_unit_test(test_homoglyphs),    cmocka_unit_test(test_leet),
        cmocka_unit_test(test_spacing),       cmocka_unit_test(test_repeats),
        cmocka_unit_test(test_invalid_utf8),  cmocka_unit_test(test_offsets_map_back),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
