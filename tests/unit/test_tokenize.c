/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for src/tokenize: every reference vector (tests/fixtures/tokenizer: tiktoken's own ids and
 * gpt-tokenizer's test plans) for o200k_base and cl100k_base, the model table, invalid UTF-8, rank-file
 * checks, and the heap merge against tiktoken's quadratic merge on random pieces. The source is included
 * so that the two merges can be compared directly. Needs the rank files (scripts/bootstrap): exits 77
 * (skipped) only when .deps/tiktoken is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/tokenize/tokenize.c"

#ifndef RANKS_DIR
#define RANKS_DIR ".deps/tiktoken"
#endif

static custos_tok_t *tok[CUSTOS_TOK_NKINDS];

static int setup(void **state)
{
    (void)state;
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        if (custos_tok_load(RANKS_DIR, (custos_tok_kind_t)k, &tok[k]) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        custos_tok_free(tok[k]);
    return 0;
}

static void check_ids(custos_tok_kind_t k, const char *text, size_t len, const uint32_t *want, size_t nwant,
                      const char *what)
{
    uint32_t *got = calloc(nwant + 16, sizeof(*got));
    assert_non_null(got);
    int64_t n = custos_tok_encode(tok[k], text, len, got, nwant + 16);
    if (n != (int64_t)nwant || memcmp(got, want, nwant * sizeof(*got)) != 0) {
        fprintf(stderr, "%s %s: got %lld tokens, want %zu\n", custos_tok_kind_name(k), what, (long long)n, nwant);
        fail();
    }
    assert_int_equal(custos_tok_count(tok[k], text, len), (int64_t)nwant);
    /* decoding gives the text back */
    size_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t tl;
        const uint8_t *b = custos_tok_token_bytes(tok[k], got[i], &tl);
        assert_non_null(b);
        assert_true(off + tl <= len);
        assert_memory_equal(text + off, b, tl);
        off += tl;
    }
    assert_int_equal(off, len);
    free(got);
}

static void test_reference_vectors(void **state)
{
    (void)state;
    json_object *root = json_object_from_file("tests/fixtures/tokenizer/vectors.json");
    assert_non_null(root);
    json_object *vs = json_object_object_get(root, "vectors");
    size_t nv = json_object_array_length(vs), checked = 0;
    assert_int_equal(nv, 11);
    for (size_t i = 0; i < nv; i++) {
        json_object *v = json_object_array_get_idx(vs, i);
        json_object *jt = json_object_object_get(v, "text");
        const char *text = json_object_get_string(jt);
        size_t len = (size_t)json_object_get_string_len(jt);
        assert_int_equal(len, json_object_get_int(json_object_object_get(v, "utf8_bytes")));
        for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
            json_object *ex = json_object_object_get(v, custos_tok_kind_name((custos_tok_kind_t)k));
            assert_non_null(ex);
            size_t n = json_object_array_length(ex);
            uint32_t *want = calloc(n + 1, sizeof(*want));
            assert_non_null(want);
            for (size_t j = 0; j < n; j++)
                want[j] = (uint32_t)json_object_get_int(json_object_array_get_idx(ex, j));
            check_ids((custos_tok_kind_t)k, text, len, want, n,
                      json_object_get_string(json_object_object_get(v, "name")));
            free(want);
            checked++;
        }
    }
    assert_int_equal(checked, 22);
    json_object_put(root);
}

static void test_gpt_tokenizer_plans(void **state)
{
    (void)state;
    FILE *f = fopen("tests/fixtures/tokenizer/TestPlans.txt", "r");
    assert_non_null(f);
    size_t cap = 1 << 20, checked = 0;
    char *line = malloc(cap), *sample = NULL;
    char enc[64] = "";
    assert_non_null(line);
    while (fgets(line, (int)cap, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "EncodingName: ", 14) == 0) {
            snprintf(enc, sizeof(enc), "%s", line + 14);
        } else if (strncmp(line, "Sample: ", 8) == 0) {
            free(sample);
            sample = strdup(line + 8);
        } else if (strncmp(line, "Encoded: [", 10) == 0 && sample) {
            custos_tok_kind_t k;
            if (custos_tok_kind_parse(enc, &k) != 0)
                continue; /* r50k / p50k: not ours */
            uint32_t *want = calloc(strlen(line), sizeof(*want));
            assert_non_null(want);
            size_t n = 0;
            for (char *p = line + 10; *p && *p != ']';) {
                want[n++] = (uint32_t)strtoul(p, &p, 10);
                while (*p == ',' || *p == ' ')
                    p++;
            }
            check_ids(k, sample, strlen(sample), want, n, "TestPlans sample");
            free(want);
            checked++;
        }
    }
    fclose(f);
    free(line);
    free(sample);
    assert_int_equal(checked, 121);
}

static void test_known_counts(void **state)
{
    (void)state;
    uint32_t ids[8];
    assert_int_equal(custos_tok_encode(tok[CUSTOS_TOK_CL100K], "hello world", 11, ids, 8), 2);
    assert_int_equal(ids[0], 15339);
    assert_int_equal(ids[1], 1917);
    assert_int_equal(custos_tok_encode(tok[CUSTOS_TOK_O200K], "hello world", 11, ids, 8), 2);
    assert_int_equal(ids[0], 24912);
    assert_int_equal(ids[1], 2375);
    /* ids beyond cap are counted, not written */
    assert_int_equal(custos_tok_encode(tok[CUSTOS_TOK_O200K], "hello world", 11, ids, 1), 2);
    assert_int_equal(custos_tok_count(tok[CUSTOS_TOK_O200K], "", 0), 0);
    /* special-token text is ordinary text */
    assert_true(custos_tok_count(tok[CUSTOS_TOK_CL100K], "<|endoftext|>", 13) > 1);
}

static void test_model_table(void **state)
{
    (void)state;
    assert_int_equal(custos_tok_kind_for_model("gpt-4o"), CUSTOS_TOK_O200K);
    assert_int_equal(custos_tok_kind_for_model("gpt-4o-mini-2024-07-18"), CUSTOS_TOK_O200K);
    assert_int_equal(custos_tok_kind_for_model("gpt-4.1-nano"), CUSTOS_TOK_O200K);
    assert_int_equal(custos_tok_kind_for_model("gpt-5"), CUSTOS_TOK_O200K);
    assert_int_equal(custos_tok_kind_for_model("o3-mini"), CUSTOS_TOK_O200K);
    assert_int_equal(custos_tok_kind_for_model("chatgpt-4o-latest"), CUSTOS_TOK_O200K);
    assert_int_equal(custos_tok_kind_for_model("gpt-4"), CUSTOS_TOK_CL100K);
    assert_int_equal(custos_tok_kind_for_model("gpt-4-turbo"), CUSTOS_TOK_CL100K);
    assert_int_equal(custos_tok_kind_for_model("gpt-35-turbo"), CUSTOS_TOK_CL100K); /* Azure's spelling */
    assert_int_equal(custos_tok_kind_for_model("gpt-3.5-turbo-0125"), CUSTOS_TOK_CL100K);
    assert_int_equal(custos_tok_kind_for_model("text-embedding-3-small"), CUSTOS_TOK_CL100K);
    assert_int_equal(custos_tok_kind_for_model("text-embedding-ada-002"), CUSTOS_TOK_CL100K);
    assert_int_equal(custos_tok_kind_for_model("llama3.1"), CUSTOS_TOK_O200K); /* unknown: the newest */
    assert_int_equal(custos_tok_kind_for_model(NULL), CUSTOS_TOK_O200K);
    custos_tok_kind_t k;
    assert_int_equal(custos_tok_kind_parse("cl100k_base", &k), 0);
    assert_int_equal(k, CUSTOS_TOK_CL100K);
    assert_int_equal(custos_tok_kind_parse("p50k_base", &k), CUSTOS_EINVAL);
}

/* Invalid UTF-8 counts like the text with each maximal ill-formed subsequence replaced by U+FFFD. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *bad, *clean;
    } cases[] = {
        {"a\xff"
         "b",
         "a\xEF\xBF\xBD"
         "b"},
        {"x\xE2\x82", "x\xEF\xBF\xBD"},                                 /* truncated 3-byte sequence: one U+FFFD */
        {"\xC0\xAF!", "\xEF\xBF\xBD\xEF\xBF\xBD!"},                     /* overlong: each byte */
        {"\xED\xA0\x80 ok", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD ok"}, /* surrogate */
        {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* above U+10FFFF */
        {"hello \xF0\x9F\x98", "hello \xEF\xBF\xBD"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_false(custos_tok_utf8_valid(cases[i].bad, strlen(cases[i].bad)));
        assert_true(custos_tok_utf8_valid(cases[i].clean, strlen(cases[i].clean)));
        for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
            uint32_t a[64], b[64];
            int64_t na = custos_tok_encode(tok[k], cases[i].bad, strlen(cases[i].bad), a, 64);
            int64_t nb = custos_tok_encode(tok[k], cases[i].clean, strlen(cases[i].clean), b, 64);
            assert_true(na > 0);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, (size_t)na * sizeof(a[0]));
        }
    }
}

static void test_rank_file_checks(void **state)
{
    (void)state;
    custos_tok_t *t = NULL;
    assert_int_equal(custos_tok_load("/nonexistent-dir", CUSTOS_TOK_O200K, &t), CUSTOS_ENOTFOUND);
    assert_null(t);
    /* a copy with one rank changed fails the SHA-256 check */
    char dir[] = "/tmp/custos-tok-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char src[512], dst[512];
    snprintf(src, sizeof(src), "%s/cl100k_base.tiktoken", RANKS_DIR);
    snprintf(dst, sizeof(dst), "%s/cl100k_base.tiktoken", dir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (total == 0)
            buf[0] = buf[0] == 'I' ? 'J' : 'I';
        fwrite(buf, 1, n, out);
        total += n;
    }
    fclose(in);
    fclose(out);
    assert_int_equal(custos_tok_load(dir, CUSTOS_TOK_CL100K, &t), CUSTOS_EINVAL);
    assert_null(t);
    unlink(dst);
    rmdir(dir);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* The heap merge used for long pieces gives exactly tiktoken's quadratic merge. */
static void test_merge_equivalence(void **state)
{
    (void)state;
    static const char *const alphabet[] = {"a",
                                           "b",
                                           "e",
                                           "t",
                                           "h",
                                           " ",
                                           "in",
                                           "er",
                                           "\xE4\xB8\xAD",
                                           "\xE6\x96\x87",
                                           "\xC3\xA9",
                                           "0",
                                           "_",
                                           "\xF0\x9F\x98\x80"};
    uint8_t piece[SMALL_PIECE + 8];
    for (int round = 0; round < 4000; round++) {
        size_t n = 0, want = 2 + rnd() % (SMALL_PIECE - 2);
        while (n < want) {
            const char *a = alphabet[rnd() % (sizeof(alphabet) / sizeof(alphabet[0]))];
            size_t l = strlen(a);
            if (n + l > SMALL_PIECE)
                break;
            memcpy(piece + n, a, l);
            n += l;
        }
        if (round % 3 == 0) /* and arbitrary bytes */
            for (size_t i = 0; i < n; i++)
                piece[i] = (uint8_t)rnd();
        for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
            uint32_t a[SMALL_PIECE + 1], b[SMALL_PIECE + 1];
            emit_t ea = {a, SMALL_PIECE + 1, 0}, eb = {b, SMALL_PIECE + 1, 0};
            merge_small(tok[k], piece, n, &ea);
            assert_int_equal(merge_heap(tok[k], piece, n, &eb), 0);
            assert_int_equal(ea.n, eb.n);
            assert_memory_equal(a, b, (size_t)ea.n * sizeof(a[0]));
        }
    }
}

/* A megabyte of one letter is one piece: the heap merge keeps it fast and the result decodes back. */
static void test_long_piece(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *s = malloc(n);
    assert_non_null(s);
    memset(s, 'a', n);
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
        int64_t c = custos_tok_count(tok[k], s, n);
        assert_true(c > 0 && c < (int64_t)n / 4);
        uint32_t *ids = malloc((size_t)c * sizeof(*ids));
        assert_non_null(ids);
        assert_int_equal(custos_tok_encode(tok[k], s, n, ids, (size_t)c), c);
        size_t total = 0;
        for (int64_t i = 0; i < c; i++) {
            size_t l;
            assert_non_null(custos_tok_token_bytes(tok[k], ids[i], &l));
            total += l;
        }
        assert_int_equal(total, n);
        free(ids);
    }
    free(s);
}

typedef struct {
    size_t pieces, last_end;
} split_ctx_t;

static int on_piece(void *ud, size_t a, size_t b)
{
    split_ctx_t *c = ud;
    assert_int_equal(a, c->last_end);
    assert_true(b > a);
    c->last_end = b;
    c->pieces++;
    return 0;
}

static void test_split_pieces(void **state)
{
    (void)state;
    /* whitespace rules differ between the encodings: cl100k keeps a trailing run whole (\s++$) */
    static const char text[] = "Hi  there\n\n  \tyou're  ";
    split_ctx_t c = {0, 0};
    assert_int_equal(custos_tok_split(CUSTOS_TOK_CL100K, text, strlen(text), on_piece, &c), 0);
    assert_int_equal(c.last_end, strlen(text));
    size_t cl = c.pieces;
    c = (split_ctx_t){0, 0};
    assert_int_equal(custos_tok_split(CUSTOS_TOK_O200K, text, strlen(text), on_piece, &c), 0);
    assert_int_equal(c.last_end, strlen(text));
    /* cl100k: Hi | ' ' | ' there' | '\n\n' | '  ' ... ; both cover the text without gaps */
    assert_true(cl > 4 && c.pieces > 4);
}

int main(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/o200k_base.tiktoken", RANKS_DIR);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "test_tokenize: %s missing (run scripts/bootstrap); skipped\n", path);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors), cmocka_unit_test(test_gpt_tokenizer_plans),
        cmocka_unit_test(test_known_counts),      cmocka_unit_test(test_model_table),
        cmocka_unit_test(test_invalid_utf8),      cmocka_unit_test(test_rank_file_checks),
        cmocka_unit_test(test_merge_equivalence), cmocka_unit_test(test_long_piece),
        cmocka_unit_test(test_split_pieces),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
