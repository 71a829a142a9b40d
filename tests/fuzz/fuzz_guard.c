/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for the guard answer parsers (guard/guard.h custos_guard_parse, custos_guard_llama_parse_text,
 * custos_guard_azure_groundedness_parse): any bytes as a guard's 200 body, for every adapter and check. A parsed
 * verdict is consistent (no error, severities in 0..7 or -1, Llama Guard codes in S1..S14, "other" a subset of the
 * codes); a refused one carries ERR_PARSE and no flag. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_guard: check failed: %s (line %d)\n", #cond, __LINE__);                              \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void consistent(int rc, const custos_guard_verdict_t *v)
{
    if (rc < 0) {
        CHECK(v->err == CUSTOS_GUARD_ERR_PARSE && !v->unsafe && !v->attack && !v->codes);
        return;
    }
    CHECK(v->err == CUSTOS_GUARD_OK);
    for (int k = 0; k < 4; k++)
        CHECK(v->severity[k] >= -1 && v->severity[k] <= 7);
    CHECK((v->codes >> CUSTOS_GUARD_LLAMA_NCODES) == 0 && (v->other & ~v->codes) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    custos_guard_verdict_t v;
    consistent(custos_guard_llama_parse_text(s, size, &v), &v);
    for (int t = 0; t <= CUSTOS_GUARD_HTTP_CLASSIFIER; t++)
        for (int c = 0; c < CUSTOS_GUARD_NCHECKS; c++)
            for (int chat = 0; chat < 2; chat++) {
                custos_guard_config_t g;
                memset(&g, 0, sizeof(g));
                g.name = (char *)"f";
                g.type = (custos_guard_type_t)t;
                g.chat_api = chat;
                consistent(custos_guard_parse(&g, (custos_guard_check_t)c, s, size, &v), &v);
            }
    bool u;
    double p;
    if (custos_guard_azure_groundedness_parse(s, size, &u, &p) == 0)
        CHECK(p >= 0 && p <= 1);
    return 0;
}
