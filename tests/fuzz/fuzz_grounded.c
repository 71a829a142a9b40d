/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for safety/grounded: arbitrary bytes split into an answer, a query and sources (at 0x00 bytes)
 * score without crashing; spans are in order, inside the text, with consistent unit counts; percentage and score stay
 * in [0,1]. The model loader is fed the same bytes and must reject or accept them cleanly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safety/grounded.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_grounded: check failed: %s (line %d)\n", #cond, __LINE__);                           \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static custos_grounded_model_t *g_model;

static void init_once(void)
{
    if (g_model)
        return;
    custos_grounded_params_t p;
    memset(&p, 0, sizeof(p));
    for (int i = 0; i < CUSTOS_GROUNDED_NFEAT; i++) {
        p.inv_std[i] = 1.0f;
        p.w[i] = (float)((i % 5) - 2) * 0.5f;
    }
    static uint8_t idf[1u << CUSTOS_GROUNDED_IDF_BITS];
    for (size_t i = 0; i < sizeof(idf); i++)
        idf[i] = (uint8_t)(1 + i % 200);
    void *buf = NULL;
    size_t len = 0;
    char err[128];
    if (custos_grounded_model_serialize(&p, idf, &buf, &len) < 0 ||
        custos_grounded_model_from_buffer(buf, len, &g_model, err, sizeof(err)) < 0)
        abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    char err[128];
    custos_grounded_model_t *m = NULL;
    if (custos_grounded_model_from_buffer(data, size, &m, err, sizeof(err)) == 0)
        custos_grounded_model_free(m);
    const char *parts[10];
    size_t lens[10], n = 0, start = 0;
    for (size_t i = 0; i <= size && n < 10; i++)
        if (i == size || data[i] == 0) {
            parts[n] = (const char *)data + start;
            lens[n++] = i - start;
            start = i + 1;
        }
    custos_grounded_input_t in = {.text = parts[0], .text_len = lens[0]};
    if (n > 1) {
        in.query = parts[1];
        in.query_len = lens[1];
        in.task = size % 2 ? CUSTOS_GROUNDED_QNA : CUSTOS_GROUNDED_SUMMARIZATION;
        in.domain = size % 3 ? CUSTOS_GROUNDED_GENERIC : CUSTOS_GROUNDED_MEDICAL;
    }
    if (n > 2) {
        in.sources = parts + 2;
        in.source_lens = lens + 2;
        in.n_sources = n - 2;
    }
    custos_grounded_result_t r;
    if (custos_grounded_detect(g_model, &in, &r) == 0) {
        CHECK(r.percentage >= 0 && r.percentage <= 1 && r.score >= 0 && r.score <= 1);
        CHECK(r.n_spans <= r.n_sentences);
        size_t end = 0;
        for (size_t i = 0; i < r.n_spans; i++) {
            const custos_grounded_span_t *s = &r.spans[i];
            CHECK(s->utf8_off >= end && s->utf8_off + s->utf8_len <= in.text_len && s->utf8_len > 0);
            CHECK(s->cp_len <= s->utf8_len && s->utf16_len >= s->cp_len && s->utf16_len <= 2 * s->cp_len);
            CHECK(s->cp_off <= s->utf8_off && s->utf16_off >= s->cp_off);
            end = s->utf8_off + s->utf8_len;
        }
    }
    custos_grounded_result_dispose(&r);
    return 0;
}
