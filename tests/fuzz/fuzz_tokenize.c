/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for src/tokenize over arbitrary bytes, both encodings: the ids decode back to the input
 * with every maximal ill-formed UTF-8 subsequence replaced by U+FFFD (docs/tokens.md); the count equals the
 * number of ids; for well-formed input the pre-tokeniser's pieces tile the text. Rank files: $TIKTOKEN_DIR,
 * else .deps/tiktoken (run from the repository root, as scripts/run-fuzz does). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize/tokenize.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_tokenize: check failed: %s (line %d)\n", #cond, __LINE__);                           \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static custos_tok_t *tok[CUSTOS_TOK_NKINDS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("TIKTOKEN_DIR");
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        if (custos_tok_load(dir ? dir : ".deps/tiktoken", (custos_tok_kind_t)k, &tok[k]) != 0) {
            fprintf(stderr, "fuzz_tokenize: cannot load the rank files (run scripts/bootstrap; TIKTOKEN_DIR)\n");
            abort();
        }
    return 0;
}

/* The input with ill-formed sequences replaced, computed independently of the tokenizer: a well-formed
 * prefix is kept, anything else is U+FFFD for the longest prefix of a valid sequence (at least one byte). */
static size_t replaced(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        /* a valid sequence at i is the one whose length the lead byte fixes */
        size_t want = s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : 2;
        if (i + want <= n && custos_tok_utf8_valid((const char *)s + i, want)) {
            memcpy(out + o, s + i, want);
            o += want;
            i += want;
            continue;
        }
        size_t bad = 1; /* maximal subpart: the longest prefix that can still start a valid sequence */
        for (size_t l = 2; l < want && i + l <= n; l++) {
            uint8_t probe[4] = {0};
            memcpy(probe, s + i, l);
            /* complete it with 0x80s (only the second byte has a narrower range, and it is in the prefix) */
            for (size_t m = l; m < want; m++)
                probe[m] = 0x80;
            if (!custos_tok_utf8_valid((const char *)probe, want))
                break;
            bad = l;
        }
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
        i += bad;
    }
    return o;
}

static int on_piece(void *ud, size_t a, size_t b)
{
    size_t *last = ud;
    CHECK(a == *last && b > a);
    *last = b;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    uint8_t *want = malloc(size * 3 + 1), *got = malloc(size * 3 + 1);
    uint32_t *ids = malloc((size * 3 + 1) * sizeof(*ids));
    CHECK(want && got && ids);
    size_t wn = replaced(data, size, want);
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
        int64_t n = custos_tok_encode(tok[k], (const char *)data, size, ids, size * 3 + 1);
        CHECK(n >= 0 && (size_t)n <= wn);
        CHECK(custos_tok_count(tok[k], (const char *)data, size) == n);
        size_t o = 0;
        for (int64_t i = 0; i < n; i++) {
            size_t l;
            const uint8_t *b = custos_tok_token_bytes(tok[k], ids[i], &l);
            CHECK(b && o + l <= wn);
            memcpy(got + o, b, l);
            o += l;
        }
        CHECK(o == wn && memcmp(got, want, wn) == 0);
        if (custos_tok_utf8_valid((const char *)data, size)) {
            size_t last = 0;
            CHECK(custos_tok_split((custos_tok_kind_t)k, (const char *)data, size, on_piece, &last) == 0);
            CHECK(last == size);
        }
    }
    free(want);
    free(got);
    free(ids);
    return 0;
}
