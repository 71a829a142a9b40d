/* SPDX-License-Identifier: Apache-2.0
 * Differential libFuzzer target for api/contentfilter's streaming fast path: the same upstream events (one SSE data
 * payload per input line) go to two filters of the same request, one through custos_cf_stream_event (fast path for
 * plain text deltas) and one through custos_cf_stream_event_full (always the json-c parse). Return codes and the
 * bytes written for the client must be identical after every event and at the end. The first byte selects
 * asynchronous_filter mode, chat vs completions and n = 1..4. Loads the shipped models (CUSTOS_MODEL_DIR or the
 * default search path). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/contentfilter.h"
#include "cf_fixture.h"
#include "safety/safety.h"
#include "util/arena.h"
#include "util/err.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_cf_stream_diff: check failed: %s (line %d)\n", #cond, __LINE__);                     \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cf_fixture_init("fuzz_cf_stream_diff");
    return 0;
}

static void same(const custos_buf_t *a, const custos_buf_t *b)
{
    CHECK(custos_buf_size(a) == custos_buf_size(b));
    CHECK(memcmp(custos_buf_peek(a), custos_buf_peek(b), custos_buf_size(a)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool async = data[0] & 1, chat = !(data[0] & 2);
    unsigned n = 1 + ((data[0] >> 2) & 3);
    data++;
    size--;
    custos_arena_t arena[2];
    custos_http_req_t req[2];
    custos_cf_t *cf[2] = {NULL, NULL};
    custos_buf_t out[2];
    const custos_deployment_config_t *dep = custos_config_find_deployment(cfg, async ? "a" : "d");
    char body_s[256];
    if (chat)
        snprintf(body_s, sizeof(body_s),
                 "{\"model\":\"d\",\"n\":%u,\"messages\":[{\"role\":\"user\",\"content\":\"Mail jane@example.com "
                 "about Paris, please.\"}]}",
                 n);
    else
        snprintf(body_s, sizeof(body_s), "{\"model\":\"d\",\"n\":%u,\"prompt\":\"Mail jane@example.com please.\"}", n);
    json_object *body[2] = {NULL, NULL}; /* one each: the PII placeholder action rewrites the body in place */
    for (int k = 0; k < 2; k++) {
        body[k] = json_tokener_parse(body_s);
        CHECK(body[k] != NULL);
        custos_arena_init(&arena[k]);
        memset(&req[k], 0, sizeof(req[k]));
        req[k].arena = &arena[k];
        int status = 0;
        CHECK(custos_cf_prompt(&worker, &req[k], dep, chat ? CUSTOS_OP_CHAT : CUSTOS_OP_COMPLETIONS, body[k], true,
                               &cf[k], &status) == CUSTOS_CF_PASS);
        CHECK(cf[k] != NULL);
        custos_buf_init(&out[k], 0);
        CHECK(custos_cf_stream_first(cf[k], &out[k]) == 0);
    }
    same(&out[0], &out[1]);
    const char *s = (const char *)data, *e = s + size;
    int rc = 0;
    while (s < e && rc == 0) {
        const char *nl = memchr(s, '\n', (size_t)(e - s));
        size_t len = nl ? (size_t)(nl - s) : (size_t)(e - s);
        rc = custos_cf_stream_event(cf[0], s, len, &out[0]);
        int rc2 = custos_cf_stream_event_full(cf[1], s, len, &out[1]);
        CHECK(rc == rc2);
        same(&out[0], &out[1]);
        s += len + (nl ? 1 : 0);
    }
    if (rc == 0) {
        CHECK(custos_cf_stream_end(cf[0], true, &out[0]) == custos_cf_stream_end(cf[1], true, &out[1]));
        same(&out[0], &out[1]);
    }
    CHECK(custos_cf_stream_done(cf[0]) == custos_cf_stream_done(cf[1]));
    for (int k = 0; k < 2; k++) {
        custos_buf_dispose(&out[k]);
        custos_cf_release(cf[k]);
        custos_arena_dispose(&arena[k]);
        json_object_put(body[k]);
    }
    return 0;
}
