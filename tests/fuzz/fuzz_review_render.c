/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for the review tier's answer rewriting (api/reviews.h custos_reviews_render): any bytes as a
 * backend's 200 body, chat or completions, withheld or not, whole or as a one-chunk stream. A withheld answer must
 * carry no output: every choice's content / text is "" and it has no tool calls; a stream is one data line then
 * [DONE]; the output is valid JSON. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "api/reviews.h"
#include "util/err.h"
#include "util/json.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_review_render: check failed: %s (line %d)\n", #cond, __LINE__);                      \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void check_withheld(json_object *o, bool chat, bool sse)
{
    json_object *choices = NULL;
    if (!json_object_object_get_ex(o, "choices", &choices) || !json_object_is_type(choices, json_type_array))
        return;
    for (size_t i = 0; i < json_object_array_length(choices); i++) {
        json_object *c = json_object_array_get_idx(choices, i), *m = NULL, *x = NULL;
        if (!json_object_is_type(c, json_type_object))
            continue;
        if (chat) {
            CHECK(json_object_object_get_ex(c, sse ? "delta" : "message", &m));
            CHECK(json_object_object_get_ex(m, "content", &x) && json_object_is_type(x, json_type_string) &&
                  json_object_get_string_len(x) == 0);
            CHECK(!json_object_object_get_ex(m, "tool_calls", NULL));
            CHECK(!json_object_object_get_ex(m, "refusal", NULL));
        } else {
            CHECK(json_object_object_get_ex(c, "text", &x) && json_object_is_type(x, json_type_string) &&
                  json_object_get_string_len(x) == 0);
        }
        CHECK(!json_object_object_get_ex(c, "logprobs", &x) || x == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    bool chat = mode & 1, hold = mode & 2, sse = mode & 4, usage = mode & 8;
    custos_op_t op = chat ? CUSTOS_OP_CHAT : CUSTOS_OP_COMPLETIONS;
    custos_buf_t out;
    custos_buf_init(&out, 0);
    int rc = custos_reviews_render((const char *)data + 1, size - 1, op, hold, sse, usage, &out);
    if (rc == 0) {
        const char *p = custos_buf_peek(&out);
        size_t n = custos_buf_size(&out);
        if (sse) {
            static const char tail[] = "\n\ndata: [DONE]\n\n";
            CHECK(n > 6 + sizeof(tail) - 1 && memcmp(p, "data: ", 6) == 0);
            CHECK(memcmp(p + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1) == 0);
            p += 6;
            n -= 6 + sizeof(tail) - 1;
            CHECK(memchr(p, '\n', n) == NULL);
        }
        json_object *o = NULL;
        CHECK(custos_json_parse(p, n, 256, &o, NULL, NULL) == 0 && o && json_object_is_type(o, json_type_object));
        if (hold)
            check_withheld(o, chat, sse);
        json_object_put(o);
    }
    custos_buf_dispose(&out);
    return 0;
}
