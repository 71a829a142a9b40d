/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for api/contentfilter's handling of what backends send: streamed events (each input line is
 * one SSE data payload) in default and asynchronous_filter mode with n = 1..4, PII placeholders in play, and the
 * same bytes as a whole non-streamed answer. Checks: no crash or leak, output is a sequence of complete SSE
 * events, and nothing follows a [DONE] written by the filter. Loads the shipped models (CUSTOS_MODEL_DIR or the
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
            fprintf(stderr, "fuzz_contentfilter: check failed: %s (line %d)\n", #cond, __LINE__);                      \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cf_fixture_init("fuzz_contentfilter");
    return 0;
}

/* out must be zero or more complete "data: ...\n\n" events. */
static void check_events(const custos_buf_t *out, bool *done_seen)
{
    const char *s = custos_buf_peek(out), *e = s + custos_buf_size(out);
    while (s < e) {
        CHECK(!*done_seen);
        CHECK((size_t)(e - s) >= 8 && memcmp(s, "data: ", 6) == 0);
        const char *end = memmem(s, (size_t)(e - s), "\n\n", 2);
        CHECK(end != NULL);
        if (end - s == 12 && memcmp(s + 6, "[DONE]", 6) == 0)
            *done_seen = true;
        s = end + 2;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool async = data[0] & 1, chat = !(data[0] & 2);
    unsigned n = 1 + ((data[0] >> 2) & 3);
    data++;
    size--;
    custos_arena_t arena;
    custos_arena_init(&arena);
    custos_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.arena = &arena;
    const custos_deployment_config_t *dep = custos_config_find_deployment(cfg, async ? "a" : "d");
    char body_s[256];
    if (chat)
        snprintf(body_s, sizeof(body_s),
                 "{\"model\":\"d\",\"n\":%u,\"messages\":[{\"role\":\"user\",\"content\":\"Mail jane@example.com "
                 "about Paris, please.\"}]}",
                 n);
    else
        snprintf(body_s, sizeof(body_s), "{\"model\":\"d\",\"n\":%u,\"prompt\":\"Mail jane@example.com please.\"}", n);
    json_object *body = json_tokener_parse(body_s);
    CHECK(body != NULL);
    for (int whole = 0; whole < 2; whole++) {
        custos_cf_t *cf = NULL;
        int status = 0;
        CHECK(custos_cf_prompt(&worker, &req, dep, chat ? CUSTOS_OP_CHAT : CUSTOS_OP_COMPLETIONS, body, !whole, &cf,
                               &status) == CUSTOS_CF_PASS);
        CHECK(cf != NULL);
        if (whole) {
            custos_buf_t b;
            custos_buf_init(&b, 1u << 20);
            if (custos_buf_append(&b, data, size) == 0)
                CHECK(custos_cf_response(cf, &b) == 0);
            custos_buf_dispose(&b);
        } else {
            custos_buf_t out;
            custos_buf_init(&out, 0);
            bool done_seen = false;
            CHECK(custos_cf_stream_first(cf, &out) == 0);
            const char *s = (const char *)data, *e = s + size;
            int rc = 0;
            while (s < e && rc == 0) {
                const char *nl = memchr(s, '\n', (size_t)(e - s));
                size_t len = nl ? (size_t)(nl - s) : (size_t)(e - s);
                rc = custos_cf_stream_event(cf, s, len, &out);
                CHECK(rc >= 0 || rc == CUSTOS_ENOMEM || rc == CUSTOS_ETOOBIG);
                s += len + (nl ? 1 : 0);
            }
            if (rc == 0)
                CHECK(custos_cf_stream_end(cf, true, &out) == 0);
            check_events(&out, &done_seen);
            CHECK(done_seen == custos_cf_stream_done(cf));
            custos_buf_dispose(&out);
        }
        custos_cf_release(cf);
    }
    json_object_put(body);
    custos_arena_dispose(&arena);
    return 0;
}
