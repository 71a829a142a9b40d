/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for safety/normalize and safety/harm: arbitrary bytes normalise without crashing, every map entry
 * is a valid, non-decreasing original offset, and harm scores stay in [0,1] with severities 0..7. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safety/harm.h"
#include "safety/model.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_normalize: check failed: %s (line %d)\n", #cond, __LINE__);                          \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static custos_model_t *g_model;
static custos_safety_scratch_t g_sc;

static void init_once(void)
{
    if (g_model)
        return;
    custos_safety_scratch_init(&g_sc, 1u << 20);
    custos_model_header_t h;
    memset(&h, 0, sizeof(h));
    h.hash_bits = 16;
    h.hash_seed = 1;
    h.norm_flags = CUSTOS_NORM_ALL;
    h.word_ngrams = 2;
    h.char_min = 3;
    h.char_max = 5;
    h.n_heads = CUSTOS_HARM_NCAT;
    static const char *const names[] = {"hate", "sexual", "violence", "self_harm"};
    static const float bands[7] = {0.2f, 0.35f, 0.5f, 0.65f, 0.8f, 0.9f, 0.97f};
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        snprintf(h.heads[c].name, sizeof(h.heads[c].name), "%s", names[c]);
        h.heads[c].scale = 0.01f;
        h.heads[c].platt_a = 1;
        memcpy(h.heads[c].bands, bands, sizeof(bands));
    }
    size_t nw = ((size_t)1 << 16) * CUSTOS_HARM_NCAT;
    int8_t *w = malloc(nw);
    CHECK(w);
    for (size_t i = 0; i < nw; i++)
        w[i] = (int8_t)((i * 2654435761u) >> 24);
    void *buf = NULL;
    size_t len = 0;
    char err[128];
    CHECK(custos_model_serialize(&h, w, &buf, &len) == 0);
    CHECK(custos_model_from_buffer(buf, len, &g_model, err, sizeof(err)) == 0);
    free(buf);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size > (1u << 20))
        return 0;
    unsigned flags = size ? data[0] & CUSTOS_NORM_ALL : 0;
    custos_norm_t n;
    CHECK(custos_normalize((const char *)data, size, flags, &g_sc, &n) == 0);
    CHECK(n.orig_len <= size);
    for (size_t i = 0; i < n.len; i++) {
        CHECK(n.map[i] < n.orig_len);
        CHECK(i == 0 || n.map[i] >= n.map[i - 1]);
        CHECK(n.cp[i] <= 0x10ffff);
    }
    custos_harm_result_t r;
    CHECK(custos_harm_score(g_model, (const char *)data, size, &r, &g_sc) == 0);
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        CHECK(r.score[c] >= 0 && r.score[c] <= 1);
        CHECK(r.severity[c] >= 0 && r.severity[c] <= 7);
    }
    return 0;
}
