/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for safety/pii_ner: arbitrary bytes tokenise and tag without crashing, with a synthetic tagger model
 * (pseudo-random weights, so every tag and span path is taken). Tokens are in order inside the text; spans are
 * non-empty, in order, do not overlap, stay inside the text's code points, carry a tagger type and a score in [0,1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safety/pii_ner.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_pii_ner: check failed: %s (line %d)\n", #cond, __LINE__);                            \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static custos_model_t *g_model;
static custos_pii_ner_tok_t g_tok[1024];

static void init(void)
{
    custos_model_header_t h = {0};
    h.hash_bits = 16;
    h.hash_seed = 7;
    h.n_heads = CUSTOS_PII_NER_NTAGS;
    for (int k = 0; k < CUSTOS_PII_NER_NTAGS; k++) {
        snprintf(h.heads[k].name, sizeof(h.heads[k].name), "%s", custos_pii_ner_heads[k]);
        h.heads[k].scale = 0.1f;
        h.heads[k].platt_a = 1;
    }
    size_t nw = ((size_t)1 << 16) * CUSTOS_PII_NER_NTAGS;
    int8_t *w = malloc(nw);
    CHECK(w != NULL);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < nw; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        w[i] = (int8_t)(x & 0xff);
    }
    void *buf = NULL;
    size_t len = 0;
    CHECK(custos_model_serialize(&h, w, &buf, &len) == 0);
    CHECK(custos_model_from_buffer(buf, len, &g_model, NULL, 0) == 0);
    CHECK(custos_pii_ner_check(g_model) == 0);
    free(buf);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_model)
        init();
    if (size > (1u << 20))
        return 0;
    const char *text = (const char *)data;
    size_t pos = 0, cpos = 0, prev_be = 0, prev_ce = 0;
    for (;;) {
        size_t n = custos_pii_ner_tokenize(text, size, &pos, &cpos, g_tok, 1024);
        for (size_t i = 0; i < n; i++) {
            CHECK(g_tok[i].bs < g_tok[i].be && g_tok[i].be <= size && g_tok[i].bs >= prev_be);
            CHECK(g_tok[i].cs < g_tok[i].ce && g_tok[i].ce <= size && g_tok[i].cs >= prev_ce);
            prev_be = g_tok[i].be;
            prev_ce = g_tok[i].ce;
        }
        if (n < 1024)
            break;
    }
    CHECK(pos == size && cpos <= size);
    custos_pii_span_t sp[64];
    size_t n = 0;
    custos_pii_ner_tag(g_model, text, size, sp, 64, &n);
    CHECK(n <= 64);
    for (size_t i = 0; i < n; i++) {
        CHECK(sp[i].start < sp[i].end && sp[i].end <= cpos);
        CHECK(i == 0 || sp[i].start >= sp[i - 1].end);
        CHECK(sp[i].type >= CUSTOS_PII_PERSON && sp[i].type <= CUSTOS_PII_LOCATION);
        CHECK(sp[i].score >= 0.0f && sp[i].score <= 1.0f);
    }
    return 0;
}
