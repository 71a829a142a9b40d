/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for util/json.h: strict parsing (grammar, trailing bytes, depth, duplicates) and string escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "util/err.h"
#include "util/json.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* Parses s and returns the rc; on success checks the plain re-serialisation equals want (if not NULL). */
static int parse_to(const char *s, size_t n, int depth, const char *want, size_t *pos)
{
    struct json_object *o = (struct json_object *)1;
    const char *msg = NULL;
    size_t p = (size_t)-1;
    int rc = custos_json_parse(s, n, depth, &o, &p, &msg);
    if (rc == 0) {
        if (want)
            assert_string_equal(o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : "null", want);
        json_object_put(o);
    } else {
        assert_null(o);
        assert_non_null(msg);
        assert_true(p <= n);
        if (pos)
            *pos = p;
    }
    return rc;
}

static void test_valid(void **state)
{
    (void)state;
    static const char body[] = " {\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\\n\"}],"
                               "\"temperature\":0.5,\"max_tokens\":100,\"stream\":true,\"stop\":null,"
                               "\"n\":-1,\"x\":1.5e-3,\"y\":[],\"z\":{}}\r\n\t ";
    struct json_object *o = NULL, *v = NULL;
    assert_int_equal(custos_json_parse(body, sizeof(body) - 1, 64, &o, NULL, NULL), 0);
    assert_true(json_object_is_type(o, json_type_object));
    assert_true(json_object_object_get_ex(o, "model", &v));
    assert_string_equal(json_object_get_string(v), "gpt-4o");
    assert_true(json_object_object_get_ex(o, "max_tokens", &v));
    assert_int_equal(json_object_get_int64(v), 100);
    assert_true(json_object_object_get_ex(o, "messages", &v));
    v = json_object_object_get(json_object_array_get_idx(v, 0), "content");
    assert_string_equal(json_object_get_string(v), "h\xc3\xa9\n");
    json_object_put(o);

    /* Top-level scalars, including numbers that end at end of input. */
    assert_int_equal(parse_to(S("123"), 4, "123", NULL), 0);
    assert_int_equal(parse_to(S("-0.5e+2 "), 4, "-0.5e+2", NULL), 0);
    assert_int_equal(parse_to(S("\"s\""), 4, "\"s\"", NULL), 0);
    assert_int_equal(parse_to(S("true"), 4, "true", NULL), 0);
    assert_int_equal(parse_to(S(" null "), 4, "null", NULL), 0);
    assert_int_equal(parse_to(S("[\"a\\u0000b\",\"\\ud83d\\ude00\",\"\\/\"]"), 4, NULL, NULL), 0);
    /* Big integers: exact in int64/uint64, saturated beyond (documented json-c behaviour). */
    assert_int_equal(
        parse_to(S("[9007199254740993,18446744073709551615]"), 4, "[9007199254740993,18446744073709551615]", NULL), 0);
    assert_int_equal(parse_to(S("[100000000000000000000000]"), 4, "[18446744073709551615]", NULL), 0);
}

static void test_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t pos;
    } bad[] = {
        {"", 0},
        {"   ", 3},
        {"{} x", 3},
        {"{}{}", 2},
        {"[1,]", 3},
        {"{\"a\":1,}", 7},
        {"'a'", 0},
        {"/*c*/1", 0},
        {"NaN", 0},
        {"[Infinity]", 1},
        {"-Infinity", 1},
        {"[01]", 2},
        {"[1.]", 3},
        {"[.5]", 1},
        {"[+1]", 1},
        {"[1e]", 3},
        {"[0x10]", 2},
        {"\"\\a\"", 1},
        {"{\"a\" 1}", 5},
        {"[1 2]", 3},
        {"{1:2}", 1},
        {"[\"abc", 5},
        {"[tru]", 1},
        {"nul", 0},
        {"\"\\u12g4\"", 1},
        {"[\"\t\"]", 2},
        {"\"\x01\"", 1},
        {"\"\xff\"", 1},
        {"\"\xc0\x80\"", 1},
        {"\"\xed\xa0\x80\"", 1},
        {"\"\xf4\x90\x80\x80\"", 1},
        {"\xef\xbb\xbf{}", 0},
        {"[\v]", 1},
        {"{\"a\\u0000\":1}", 3},
        {"[1,2", 4},
        {"{\"a\":", 5},
        {"[-]", 2},
        {"[\"\xe2\x82\"]", 2},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        size_t pos = (size_t)-1;
        int rc = parse_to(bad[k].s, strlen(bad[k].s), 64, NULL, &pos);
        if (rc != CUSTOS_EINVAL || pos != bad[k].pos)
            fail_msg("input #%zu '%s': rc %d pos %zu (want pos %zu)", k, bad[k].s, rc, pos, bad[k].pos);
    }
    /* Embedded NUL: after the value, and inside a string. */
    size_t pos = 0;
    assert_int_equal(parse_to(S("{}\0"), 64, NULL, &pos), CUSTOS_EINVAL);
    assert_int_equal(pos, 2);
    assert_int_equal(parse_to(S("[\"a\0\"]"), 64, NULL, &pos), CUSTOS_EINVAL);
    assert_int_equal(pos, 3);
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    size_t pos = 0;
    const char *msg = NULL;
    struct json_object *o = NULL;
    assert_int_equal(custos_json_parse(S("{\"a\":1} \n garbage"), 64, &o, &pos, &msg), CUSTOS_EINVAL);
    assert_null(o);
    assert_int_equal(pos, 10);
    assert_string_equal(msg, "trailing characters after JSON value");
    /* Trailing whitespace alone is fine. */
    assert_int_equal(parse_to(S("{\"a\":1} \r\n\t"), 64, "{\"a\":1}", NULL), 0);
}

static void nest(char *buf, int n, const char *inner, size_t *len)
{
    size_t k = 0, il = strlen(inner);
    for (int i = 0; i < n; i++)
        buf[k++] = '[';
    memcpy(buf + k, inner, il);
    k += il;
    for (int i = 0; i < n; i++)
        buf[k++] = ']';
    *len = k;
}

static void test_depth(void **state)
{
    (void)state;
    char buf[4096];
    size_t n, pos = 0;
    nest(buf, 64, "", &n);
    assert_int_equal(parse_to(buf, n, 64, NULL, NULL), 0);
    nest(buf, 64, "\"deepest\"", &n); /* a scalar inside the 64th level is still depth 64 */
    assert_int_equal(parse_to(buf, n, 64, NULL, NULL), 0);
    nest(buf, 65, "", &n);
    assert_int_equal(parse_to(buf, n, 64, NULL, &pos), CUSTOS_EDEPTH);
    assert_int_equal(pos, 64);
    nest(buf, 63, "{\"a\":[1]}", &n); /* objects count too */
    assert_int_equal(parse_to(buf, n, 64, NULL, &pos), CUSTOS_EDEPTH);
    assert_int_equal(pos, 68);
    nest(buf, 2000, "", &n); /* far past the limit: iterative validator, no stack trouble */
    assert_int_equal(parse_to(buf, n, 64, NULL, NULL), CUSTOS_EDEPTH);
    assert_int_equal(parse_to(S("[]"), 0, NULL, NULL), CUSTOS_EDEPTH);
    assert_int_equal(parse_to(S("7"), 0, "7", NULL), 0);
    assert_int_equal(parse_to(S("[]"), -1, NULL, NULL), CUSTOS_EINVAL);
    assert_int_equal(parse_to(S("[]"), CUSTOS_JSON_MAX_DEPTH + 1, NULL, NULL), CUSTOS_EINVAL);
    nest(buf, CUSTOS_JSON_MAX_DEPTH, "1", &n);
    assert_int_equal(parse_to(buf, n, CUSTOS_JSON_MAX_DEPTH, NULL, NULL), 0);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    struct json_object *o = NULL, *v = NULL;
    assert_int_equal(custos_json_parse(S("{\"model\":\"cheap\",\"x\":1,\"model\":\"pricey\"}"), 64, &o, NULL, NULL), 0);
    assert_true(json_object_object_get_ex(o, "model", &v));
    assert_string_equal(json_object_get_string(v), "pricey");
    /* Re-serialising gives the upstream exactly one key, the one policy saw. */
    assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), "{\"model\":\"pricey\",\"x\":1}");
    json_object_put(o);
}

static void esc(const char *in, size_t n, const char *want, size_t want_len)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_json_append_string(&b, in, n), 0);
    assert_int_equal(custos_buf_size(&b), want_len);
    assert_memory_equal(custos_buf_peek(&b), want, want_len);
    /* The output is always valid strict JSON. */
    assert_int_equal(custos_json_validate(custos_buf_peek(&b), custos_buf_size(&b), 0, NULL, NULL), 0);
    custos_buf_dispose(&b);
}

static void test_escape(void **state)
{
    (void)state;
    esc(S(""), S("\"\""));
    esc(S("plain text"), S("\"plain text\""));
    esc(S("q\"b\\s/"), S("\"q\\\"b\\\\s/\""));
    esc(S("\n\r\t\b\f"), S("\"\\n\\r\\t\\b\\f\""));
    esc(S("\x00\x01\x1f\x7f"), S("\"\\u0000\\u0001\\u001f\x7f\""));
    esc(S("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), S("\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
    /* Invalid UTF-8: lone continuation, bad lead, truncated sequences, overlong, surrogate, > U+10FFFF. */
    esc(S("a\x80z"), S("\"a\xef\xbf\xbdz\""));
    esc(S("\xff\xfe"), S("\"\xef\xbf\xbd\xef\xbf\xbd\""));
    esc(S("\xe2\x82"), S("\"\xef\xbf\xbd\"")); /* one maximal subpart */
    esc(S("\xe2\x82x"), S("\"\xef\xbf\xbdx\""));
    esc(S("\xc0\x80"), S("\"\xef\xbf\xbd\xef\xbf\xbd\""));
    esc(S("\xed\xa0\x80"), S("\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
    esc(S("\xf4\x90\x80\x80"), S("\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""));
    esc(S("\xf0\x9f\x98"), S("\"\xef\xbf\xbd\""));

    /* Parsing the escaped form gives the original back for valid UTF-8, including NUL. */
    custos_buf_t b;
    custos_buf_init(&b, 0);
    static const char in[] = "x\"\\\x00\x1b\xc3\xa9\n";
    assert_int_equal(custos_json_append_string(&b, in, sizeof(in) - 1), 0);
    struct json_object *o = NULL;
    assert_int_equal(custos_json_parse(custos_buf_peek(&b), custos_buf_size(&b), 1, &o, NULL, NULL), 0);
    assert_int_equal(json_object_get_string_len(o), sizeof(in) - 1);
    assert_memory_equal(json_object_get_string(o), in, sizeof(in) - 1);
    json_object_put(o);
    custos_buf_dispose(&b);

    /* All or nothing against the cap. */
    custos_buf_init(&b, 12);
    assert_int_equal(custos_buf_append(&b, S("ab")), 0);
    assert_int_equal(custos_json_append_string(&b, S("\x01\x02\x03")), CUSTOS_ETOOBIG);
    assert_int_equal(custos_buf_size(&b), 2);
    assert_string_equal(custos_buf_peek(&b), "ab");
    assert_int_equal(custos_json_append_string(&b, S("12345678")), 0);
    assert_string_equal(custos_buf_peek(&b), "ab\"12345678\"");
    custos_buf_dispose(&b);
}

/* The word-at-a-time fast paths must find a special byte at every position of a long run. */
static void test_special_byte_every_position(void **state)
{
    (void)state;
    const unsigned char specials[] = {'"', '\\', 0x01, 0x1f, 0xc3};
    for (size_t k = 0; k < sizeof(specials); k++) {
        for (size_t pos = 0; pos < 40; pos++) {
            char in[64];
            memset(in, 'a', sizeof(in));
            in[pos] = (char)specials[k];
            size_t n = 41;
            if (specials[k] == 0xc3) {
                in[pos + 1] = (char)0xa9; /* é */
                n = 42;
            }
            custos_buf_t b;
            custos_buf_init(&b, 0);
            assert_int_equal(custos_json_append_string(&b, in, n), 0);
            /* the output must parse back to exactly the input */
            struct json_object *o = NULL;
            assert_int_equal(custos_json_parse(custos_buf_peek(&b), custos_buf_size(&b), 4, &o, NULL, NULL), 0);
            assert_int_equal(json_object_get_string_len(o), (int)n);
            assert_memory_equal(json_object_get_string(o), in, n);
            json_object_put(o);
            /* and the same string written raw into a document is refused iff the byte is a control char */
            custos_buf_t raw;
            custos_buf_init(&raw, 0);
            custos_buf_append(&raw, "\"", 1);
            custos_buf_append(&raw, in, n);
            custos_buf_append(&raw, "\"", 1);
            int rc = custos_json_validate(custos_buf_peek(&raw), custos_buf_size(&raw), 4, NULL, NULL);
            if (specials[k] < 0x20 || specials[k] == '"' || specials[k] == '\\')
                assert_int_not_equal(rc, 0);
            else
                assert_int_equal(rc, 0);
            custos_buf_dispose(&raw);
            custos_buf_dispose(&b);
        }
    }
}

/* custos_json_write gives what json-c gives, compactly, and round-trips numbers exactly. */
static void test_write_roundtrip(void **state)
{
    (void)state;
    const char *doc = "{\"model\":\"m\",\"t\":0.7,\"big\":12345678901234567,\"neg\":-3,\"u\":18446744073709551615,"
                      "\"a\":[1,true,false,null,\"x/y\\n\\u0001\\u00e9\"],\"o\":{}}";
    struct json_object *o = NULL;
    assert_int_equal(custos_json_parse(doc, strlen(doc), 8, &o, NULL, NULL), 0);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_json_write(&b, o), 0);
    assert_string_equal(custos_buf_peek(&b), "{\"model\":\"m\",\"t\":0.7,\"big\":12345678901234567,\"neg\":-3,"
                                             "\"u\":18446744073709551615,\"a\":[1,true,false,null,\"x/y\\n\\u0001"
                                             "\xc3\xa9\"],\"o\":{}}");
    custos_buf_dispose(&b);
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_special_byte_every_position),
        cmocka_unit_test(test_write_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
