/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for util/json: custos_json_parse with depth 64 must agree with the validator, and what json-c
 * re-serialises must be valid and stable; the string escaper must always produce valid JSON. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "util/err.h"
#include "util/json.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_json: check failed: %s (line %d)\n", #cond, __LINE__);                               \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct json_object *o = NULL, *o2 = NULL;
    size_t vpos = 0, ppos = 0;
    const char *vmsg = NULL, *pmsg = NULL;

    int vr = custos_json_validate(s, size, 64, &vpos, &vmsg);
    int rc = custos_json_parse(s, size, 64, &o, &ppos, &pmsg);
    if (vr == 0 && rc != 0)
        fprintf(stderr, "fuzz_json: json-c refused validated input: %s at %zu\n", pmsg, ppos);
    CHECK(rc == vr);
    if (rc != 0) {
        CHECK(o == NULL && vpos == ppos && vpos <= size && vmsg && vmsg == pmsg);
    } else {
        /* The tree json-c gives us re-serialises to valid JSON, and doing it again changes nothing. */
        const char *out = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : "null";
        size_t ol = strlen(out);
        CHECK(custos_json_validate(out, ol, 64, NULL, NULL) == 0);
        CHECK(custos_json_parse(out, ol, 64, &o2, NULL, NULL) == 0);
        const char *out2 = o2 ? json_object_to_json_string_ext(o2, JSON_C_TO_STRING_PLAIN) : "null";
        if (strcmp(out, out2) != 0)
            fprintf(stderr, "fuzz_json: unstable re-serialisation:\n%s\n%s\n", out, out2);
        CHECK(strcmp(out, out2) == 0);
        json_object_put(o2);
        json_object_put(o);
    }

    /* Escaping arbitrary bytes always yields one valid JSON string; ASCII input round-trips exactly. */
    custos_buf_t b;
    custos_buf_init(&b, 0);
    CHECK(custos_json_append_string(&b, s, size) == 0);
    CHECK(custos_json_validate(custos_buf_peek(&b), custos_buf_size(&b), 0, NULL, NULL) == 0);
    int ascii = 1;
    for (size_t i = 0; i < size && ascii; i++)
        ascii = data[i] < 0x80;
    if (ascii) {
        CHECK(custos_json_parse(custos_buf_peek(&b), custos_buf_size(&b), 0, &o, NULL, NULL) == 0);
        CHECK(json_object_get_string_len(o) == (int)size && memcmp(json_object_get_string(o), s, size) == 0);
        json_object_put(o);
    }
    custos_buf_dispose(&b);
    return 0;
}
