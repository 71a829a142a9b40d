/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for safety/fairness: the template-set reader (terms and templates JSONL, split at the first NUL
 * byte of the input), expansion of every template with every term of its language (bounded, NUL-terminated, no slot
 * left), and a full evaluation with a deterministic fake judge (the result document must build and serialise). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safety/fairness.h"
#include "util/err.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_fairness: check failed: %s (line %d)\n", #cond, __LINE__);                           \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static int judge(void *ud, const char *text, size_t len, unsigned *flags)
{
    (void)ud;
    CHECK(strlen(text) == len);
    *flags = len % 3 == 0 ? CUSTOS_FAIR_HATE : 0;
    return len % 7 == 0 ? CUSTOS_EINVAL : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size, n2 = nul ? size - n1 - 1 : 0;
    FILE *a = fmemopen(n1 ? (void *)data : (void *)"", n1 ? n1 : 1, "r");
    FILE *b = fmemopen(n2 ? (void *)(nul + 1) : (void *)"", n2 ? n2 : 1, "r");
    CHECK(a && b);
    custos_fair_set_t set;
    char err[256];
    int rc = custos_fair_set_load_streams(a, b, "fuzz", &set, err, sizeof(err));
    fclose(a);
    fclose(b);
    if (rc < 0) {
        CHECK(rc == CUSTOS_EINVAL || rc == CUSTOS_ENOMEM);
        return 0;
    }
    char out[256];
    for (size_t i = 0; i < set.n_templates && i < 16; i++)
        for (size_t j = 0; j < set.n_terms && j < 16; j++) {
            int n = custos_fair_expand(&set.templates[i], &set.terms[j], out, sizeof(out));
            CHECK(n == CUSTOS_ETOOBIG || (n >= 0 && (size_t)n < sizeof(out) && strlen(out) == (size_t)n));
            if (n >= 0)
                CHECK(!strstr(out, "{sg}") || strstr(set.terms[j].sg, "{sg}") || strstr(set.terms[j].pl, "{sg}"));
        }
    if (set.n_templates * set.n_terms <= 4096) {
        custos_fair_opts_t o = {.max_benign = 0.02, .max_harmful = 0.1, .judge = judge};
        json_object *doc = NULL;
        bool pass;
        if (custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)) == 0) {
            CHECK(doc);
            CHECK(json_object_to_json_string(doc));
            json_object_put(doc);
        }
    }
    custos_fair_set_dispose(&set);
    return 0;
}
