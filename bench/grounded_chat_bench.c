/* SPDX-License-Identifier: Apache-2.0
 * What the chat groundedness check (api/cf_grounded.h) adds to a request on one core: a chat request with a 4 KB
 * tool message (the source) and a 1 KB answer, through custos_cf_prompt + custos_cf_response (non-streamed) and
 * through the stream path (256 chunks), under a policy with groundedness off and the same policy with it on
 * (annotate, and block: the stream is held). Prints a markdown table of median and p99 microseconds.
 * Usage: grounded_chat_bench [ITERATIONS]. Run through bench/grounded_chat. */
#include "api/contentfilter.h"
#include "cf_bench.h"
#include "safety/safety.h"
#include "util/arena.h"
#include "util/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CONFIG[] = "listeners: [{address: '127.0.0.1:1'}]\n"
                             "identity: {api_keys: [{name: k, sha256: "
                             "'0000000000000000000000000000000000000000000000000000000000000000'}]}\n"
                             "backends: [{name: b, provider: openai, url: 'http://127.0.0.1:2'}]\n"
                             "deployments:\n"
                             "  - {name: baseline, backends: [b], rai_policy: baseline}\n"
                             "  - {name: annotate, backends: [b], rai_policy: annotate}\n"
                             "  - {name: block, backends: [b], rai_policy: block}\n"
                             "rai_policies:\n"
                             "  - {name: baseline}\n"
                             "  - {name: annotate, groundedness: {enabled: true}}\n"
                             "  - {name: block, groundedness: {enabled: true, action: block}}\n";

/* Sources: a 4 KB article-like text; the answer: 1 KB of sentences, most supported, some with changed numbers. */
static const char *const SRC[] = {
    "The regional hospital opened its new cardiology wing in March 2021 with 48 beds and two catheter labs. ",
    "Average waiting time for an outpatient appointment fell from 41 days to 23 days within the first year. ",
    "The wing employs 112 nurses and 19 consultants, and it treated 6,400 inpatients in 2022. ",
    "Funding came from a regional grant of 32 million euros and a private donation of 4 million euros. ",
    "Patients are discharged after a median stay of 4.5 days, compared with 6 days before the wing opened. ",
    "The hospital plans to add a rehabilitation unit with 20 beds by the end of 2025. ",
};
static const char *const ANS[] = {
    "The new cardiology wing opened in March 2021 with 48 beds. ",
    "Outpatient waiting times dropped from 41 to 23 days in the first year. ",
    "It employs 112 nurses and 19 consultants. ",
    "It treated 9,100 inpatients in 2022. ",
    "A regional grant of 32 million euros paid for most of it. ",
    "The median stay is now 4.5 days instead of 6 days. ",
    "A rehabilitation unit with 35 beds is planned by 2025. ",
};

int main(int argc, char **argv)
{
    cf_bench_t bench;
    if (cf_bench_init(&bench, argc, argv, "grounded_chat_bench", CONFIG, sizeof(CONFIG) - 1) != 0)
        return 1;
    int iters = bench.iters;
    custos_worker_t *wp = &bench.w;
    static char src[4200], ans[1100], body[8192], answer[4096];
    cf_bench_fill(src, 4096, SRC, 6);
    size_t alen = cf_bench_fill(ans, 1024, ANS, 7);
    snprintf(body, sizeof(body),
             "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"Summarise the report.\"},"
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
             "\"function\":{\"name\":\"get_report\",\"arguments\":\"{}\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"%s\"}]}",
             src);
    snprintf(answer, sizeof(answer),
             "{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
             "\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}],\"usage\":"
             "{\"prompt_tokens\":1100,\"completion_tokens\":250,\"total_tokens\":1350}}",
             ans);
    uint64_t *ns = bench.ns;
    printf("| per chat request: 4 KB tool message (source), 1 KB answer; prompt + answer | median µs | p99 µs |\n"
           "|---|---:|---:|\n");
    static const char *const deps[] = {"baseline", "annotate", "block"};
    for (int d = 0; d < 3; d++) {
        const custos_deployment_config_t *dep = custos_config_find_deployment(bench.cfg, deps[d]);
        for (int stream = 0; stream < 2; stream++) {
            for (int i = 0; i < iters; i++) {
                custos_arena_t arena;
                custos_arena_init(&arena);
                custos_http_req_t req;
                memset(&req, 0, sizeof(req));
                req.arena = &arena;
                json_object *b = json_tokener_parse(body);
                custos_cf_t *cf = NULL;
                int st;
                custos_buf_t rb;
                custos_buf_init(&rb, 0);
                if (!stream)
                    custos_buf_append(&rb, answer, strlen(answer));
                char ev[256];
                uint64_t t0 = custos_now_ns();
                custos_cf_prompt(wp, &req, dep, CUSTOS_OP_CHAT, b, stream, &cf, &st);
                if (!stream) {
                    custos_cf_response(cf, &rb);
                } else {
                    custos_cf_stream_first(cf, &rb);
                    for (size_t k = 0; k < alen; k += 4) {
                        int n = snprintf(ev, sizeof(ev),
                                         "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":"
                                         "\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%.4s\"},"
                                         "\"finish_reason\":null}]}",
                                         ans + k);
                        custos_cf_stream_event(cf, ev, (size_t)n, &rb);
                        custos_buf_reset(&rb);
                    }
                    static const char fin[] = "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                                              "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},"
                                              "\"finish_reason\":\"stop\"}]}";
                    custos_cf_stream_event(cf, fin, sizeof(fin) - 1, &rb);
                    custos_cf_stream_event(cf, "[DONE]", 6, &rb);
                }
                ns[i] = custos_now_ns() - t0;
                if (i == 0 && d > 0 && custos_cf_summary(cf)->ungrounded != 1) {
                    fprintf(stderr, "grounded_chat_bench: the check did not run (policy %s)\n", deps[d]);
                    return 1;
                }
                custos_buf_dispose(&rb);
                custos_cf_release(cf);
                json_object_put(b);
                custos_arena_dispose(&arena);
            }
            char name[160];
            snprintf(name, sizeof(name), "groundedness `%s`, %s", deps[d],
                     stream ? "streamed answer (256 chunks)" : "non-streamed answer");
            cf_bench_report(name, ns, iters);
        }
    }
    cf_bench_dispose(&bench);
    return 0;
}
