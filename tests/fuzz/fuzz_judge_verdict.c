/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for the groundedness judge's verdict parser (api/cs_reasoning.h custos_cs_verdict_parse): any
 * bytes as the judge's chat completion body, against a fixed analysed text. A parsed verdict's items must lie inside
 * the text and quote it exactly; reasons are non-empty and capped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/cs_reasoning.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_judge_verdict: check failed: %s (line %d)\n", #cond, __LINE__);                      \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static const char TEXT[] = "The tower is 450 metres tall. It is in Paris. It opened in 1889.";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    custos_cs_verdict_item_t items[CUSTOS_CS_JUDGE_MAX_ITEMS];
    json_object *root = NULL;
    const char *why = NULL;
    int n = custos_cs_verdict_parse((const char *)data, size, TEXT, sizeof(TEXT) - 1, items, &root, &why);
    if (n < 0) {
        CHECK(why != NULL && root == NULL);
        return 0;
    }
    CHECK(n <= CUSTOS_CS_JUDGE_MAX_ITEMS && root != NULL);
    for (int i = 0; i < n; i++) {
        CHECK(items[i].len > 0 && items[i].off + items[i].len <= sizeof(TEXT) - 1);
        CHECK(items[i].reason_len > 0 && items[i].reason_len <= CUSTOS_CS_JUDGE_MAX_REASON);
    }
    json_object_put(root);
    return 0;
}
