/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for safety/pii: arbitrary bytes scan without crashing; spans are non-empty, in order, do not
 * overlap, stay inside the text's code points and carry a known type and a score in [0.5, 1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safety/pii.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_pii: check failed: %s (line %d)\n", #cond, __LINE__);                                \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static custos_safety_scratch_t g_sc;
static custos_pii_t *g_mrn;
static int g_init;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_init) {
        custos_safety_scratch_init(&g_sc, 1u << 20);
        custos_pii_opts_t o = {.mrn_format = "MRN-##A?"};
        CHECK(custos_pii_new(&o, &g_mrn, NULL, 0) == 0);
        g_init = 1;
    }
    if (size > (1u << 20))
        return 0;
    size_t cps = size; /* upper bound on code points: at most one per byte */
    custos_pii_span_t sp[32];
    for (int pass = 0; pass < 2; pass++) {
        size_t n = 0;
        int rc = custos_pii_scan(pass ? g_mrn : NULL, (const char *)data, size, &g_sc, sp, 32, &n);
        CHECK(rc == 0);
        CHECK(n <= 32);
        for (size_t i = 0; i < n; i++) {
            CHECK(sp[i].start < sp[i].end && sp[i].end <= cps);
            CHECK(i == 0 || sp[i].start >= sp[i - 1].end);
            CHECK(custos_pii_type_name(sp[i].type) != NULL);
            CHECK(sp[i].score >= 0.5f && sp[i].score <= 1.0f);
        }
    }
    return 0;
}
