/* SPDX-License-Identifier: Apache-2.0
 * Content-filter cost per request on one core (api/contentfilter.h), what the gateway adds to a chat request under
 * a policy: prompt screening (parse excluded), a non-streamed answer screened and annotated (parse + re-serialise
 * included), and a streamed answer in token-sized chunks (default windows). Prints a markdown table of median and
 * p99 microseconds. Usage: contentfilter_bench [ITERATIONS]. Run through bench/contentfilter. */
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
                             "  - {name: default, backends: [b]}\n"
                             "  - {name: pii, backends: [b], rai_policy: pii}\n"
                             "  - {name: off, backends: [b], rai_policy: off}\n"
                             "rai_policies:\n"
                             "  - name: pii\n"
                             "    pii: {prompt: placeholder, completion: annotate}\n"
                             "  - name: off\n"
                             "    content_filters: [{category: hate, enabled: false, blocking: false},\n"
                             "      {category: sexual, enabled: false, blocking: false},\n"
                             "      {category: violence, enabled: false, blocking: false},\n"
                             "      {category: self_harm, enabled: false, blocking: false}]\n"
                             "    prompt_shields: {jailbreak: off, indirect_attack: off}\n";

static const char *const SENTENCES[] = {
    "The patient was seen in clinic today for a follow-up of her blood pressure. ",
    "Please summarise the attached discharge letter in plain language for the family. ",
    "Our quarterly claims volume rose by four percent, driven by outpatient imaging. ",
    "Can you draft a polite reminder about the overdue invoice for the March services? ",
    "The model should list the medications, doses and the follow-up appointments. ",
    "Explain the difference between a deductible and a co-payment to a new member. ",
};

int main(int argc, char **argv)
{
    cf_bench_t bench;
    if (cf_bench_init(&bench, argc, argv, "contentfilter_bench", CONFIG, sizeof(CONFIG) - 1) != 0)
        return 1;
    int iters = bench.iters;
    custos_worker_t *wp = &bench.w;
    char text[1100], body[2048], answer[2048];
    cf_bench_fill(text, 1024, SENTENCES, 6);
    snprintf(body, sizeof(body),
             "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a careful assistant.\"},"
             "{\"role\":\"user\",\"content\":\"%s\"}]}",
             text);
    snprintf(answer, sizeof(answer),
             "{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
             "\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}],\"usage\":"
             "{\"prompt_tokens\":250,\"completion_tokens\":250,\"total_tokens\":500}}",
             text);
    uint64_t *ns = bench.ns;
    printf("| per chat request, 1 KB user message / 1 KB answer | median µs | p99 µs |\n|---|---:|---:|\n");
    static const char *const deps[] = {"off", "default", "pii"};
    for (int d = 0; d < 3; d++) {
        const custos_deployment_config_t *dep = custos_config_find_deployment(bench.cfg, deps[d]);
        uint64_t *np = ns;
        for (int phase = 0; phase < 3; phase++) {
            for (int i = 0; i < iters; i++) {
                custos_arena_t arena;
                custos_arena_init(&arena);
                custos_http_req_t req;
                memset(&req, 0, sizeof(req));
                req.arena = &arena;
                json_object *b = json_tokener_parse(body);
                custos_cf_t *cf = NULL;
                int st;
                uint64_t t0 = custos_now_ns();
                custos_cf_prompt(wp, &req, dep, CUSTOS_OP_CHAT, b, phase == 2, &cf, &st);
                uint64_t t1 = custos_now_ns();
                if (phase == 1) {
                    custos_buf_t rb;
                    custos_buf_init(&rb, 0);
                    custos_buf_append(&rb, answer, strlen(answer));
                    t1 = custos_now_ns();
                    custos_cf_response(cf, &rb);
                    custos_buf_dispose(&rb);
                } else if (phase == 2) {
                    /* ~4-byte chunks as a token stream, each a full chat.completion.chunk event */
                    custos_buf_t out;
                    custos_buf_init(&out, 0);
                    char ev[256];
                    t1 = custos_now_ns();
                    custos_cf_stream_first(cf, &out);
                    for (size_t k = 0; k < strlen(text); k += 4) {
                        int n = snprintf(ev, sizeof(ev),
                                         "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":"
                                         "\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%.4s\"},"
                                         "\"finish_reason\":null}]}",
                                         text + k);
                        custos_cf_stream_event(cf, ev, (size_t)n, &out);
                        custos_buf_reset(&out);
                    }
                    custos_cf_stream_event(cf, "[DONE]", 6, &out);
                    custos_buf_dispose(&out);
                }
                uint64_t t2 = custos_now_ns();
                np[i] = phase == 0 ? t1 - t0 : t2 - t1;
                custos_cf_release(cf);
                json_object_put(b);
                custos_arena_dispose(&arena);
            }
            char name[128];
            static const char *const what[] = {"prompt screening",
                                               "non-streamed answer (parse, screen, annotate, "
                                               "re-serialise)",
                                               "streamed answer, 256 chunks (parse each, windows, screen, re-emit)"};
            snprintf(name, sizeof(name), "policy `%s`: %s", deps[d], what[phase]);
            cf_bench_report(name, np, iters);
        }
    }
    cf_bench_dispose(&bench);
    return 0;
}
