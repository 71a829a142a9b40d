/* SPDX-License-Identifier: Apache-2.0
 * custos-mockllm guard endpoints (guard.h). */
#include "mockllm/guard.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { G_LLAMA_COMPLETIONS, G_LLAMA_CHAT, G_AZ_ANALYZE, G_AZ_SHIELD, G_CLASSIFY } groute_t;

typedef struct gcall {
    custos_http_req_t *req;
    custos_loop_t *loop;
    custos_timer_t timer;
    int status;
    char body[512];
} gcall_t;

static atomic_uint_fast64_t g_calls;

static bool has(const custos_http_req_t *req, const char *marker)
{
    return req->body && memmem(req->body, req->body_len, marker, strlen(marker)) != NULL;
}

static void send_now(custos_http_req_t *req, int status, const char *body)
{
    custos_http_header_t h[1] = {{"content-type", 12, "application/json", 16}};
    custos_http_respond(req, status, h, 1, body, strlen(body));
}

static void on_timer(custos_loop_t *loop, void *ud)
{
    (void)loop;
    gcall_t *c = ud;
    c->req->on_abort = NULL;
    c->req->handler_data = NULL;
    send_now(c->req, c->status, c->body);
    free(c);
}

static void on_abort(custos_http_req_t *req)
{
    gcall_t *c = req->handler_data;
    custos_timer_stop(c->loop, &c->timer);
    free(c);
}

static void verdict(const custos_http_req_t *req, groute_t r, int *status, char *out, size_t cap)
{
    bool hate = has(req, "guard-unsafe-hate"), viol = has(req, "guard-unsafe-violence"),
         other = has(req, "guard-unsafe-other"), attack = has(req, "guard-attack");
    *status = 200;
    if (has(req, "guard-error")) {
        *status = 500;
        snprintf(out, cap, "{\"error\":{\"code\":\"InternalServerError\",\"message\":\"mock guard error\"}}");
        return;
    }
    if (has(req, "guard-garbage")) {
        snprintf(out, cap,
                 r == G_LLAMA_COMPLETIONS ? "{\"choices\":[{\"text\":\"I think this is fine.\"}]}"
                 : r == G_LLAMA_CHAT      ? "{\"choices\":[{\"message\":{\"content\":\"maybe?\"}}]}"
                                          : "{\"result\":\"???\"}");
        return;
    }
    char codes[32];
    snprintf(codes, sizeof(codes), "%s%s%s%s%s", viol ? "S1" : "", viol && (other || hate) ? "," : "",
             other ? "S2" : "", other && hate ? "," : "", hate ? "S10" : "");
    char gen[48];
    snprintf(gen, sizeof(gen), codes[0] ? "unsafe\\n%s" : "safe", codes);
    switch (r) {
    case G_LLAMA_COMPLETIONS:
        snprintf(out, cap,
                 "{\"id\":\"cmpl-guard\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":"
                 "\"%s\",\"finish_reason\":\"stop\"}]}",
                 gen);
        break;
    case G_LLAMA_CHAT:
        snprintf(out, cap,
                 "{\"id\":\"chatcmpl-guard\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                 "\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}]}",
                 gen);
        break;
    case G_AZ_ANALYZE:
        snprintf(out, cap,
                 "{\"blocklistsMatch\":[],\"categoriesAnalysis\":[{\"category\":\"Hate\",\"severity\":%d},"
                 "{\"category\":\"SelfHarm\",\"severity\":0},{\"category\":\"Sexual\",\"severity\":0},"
                 "{\"category\":\"Violence\",\"severity\":%d}]}",
                 hate ? 6 : 0, viol ? 4 : 0);
        break;
    case G_AZ_SHIELD:
        if (has(req, "\"documents\":[\"")) /* a document: indirect attack */
            snprintf(out, cap,
                     "{\"userPromptAnalysis\":{\"attackDetected\":false},\"documentsAnalysis\":[{"
                     "\"attackDetected\":%s}]}",
                     attack ? "true" : "false");
        else
            snprintf(out, cap, "{\"userPromptAnalysis\":{\"attackDetected\":%s},\"documentsAnalysis\":[]}",
                     attack ? "true" : "false");
        break;
    case G_CLASSIFY:
        if (!has(req, "\"check\":\"harm\""))
            snprintf(out, cap, "{\"flagged\":%s}", attack ? "true" : "false");
        else
            snprintf(out, cap,
                     "{\"flagged\":%s,\"categories\":{\"hate\":{\"flagged\":%s,\"severity\":%d},"
                     "\"violence\":{\"flagged\":%s}}}",
                     hate || viol || other ? "true" : "false", hate ? "true" : "false", hate ? 6 : 0,
                     viol ? "true" : "false");
        break;
    }
}

bool custos_mock_guard_handle(custos_http_req_t *req, custos_loop_t *loop, uint32_t delay_ms)
{
    static const struct {
        const char *path;
        groute_t r;
    } routes[] = {
        {"/llamaguard/v1/completions", G_LLAMA_COMPLETIONS},
        {"/llamaguard/v1/chat/completions", G_LLAMA_CHAT},
        {"/azcs/contentsafety/text:analyze", G_AZ_ANALYZE},
        {"/azcs/contentsafety/text:shieldPrompt", G_AZ_SHIELD},
        {"/classify", G_CLASSIFY},
    };
    if (req->path_len == 17 && memcmp(req->path, "/mock/guard-stats", 17) == 0) {
        char b[64];
        snprintf(b, sizeof(b), "{\"calls\":%llu}", (unsigned long long)atomic_load(&g_calls));
        send_now(req, 200, b);
        return true;
    }
    int k = -1;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (req->path_len == strlen(routes[i].path) && memcmp(req->path, routes[i].path, req->path_len) == 0)
            k = (int)i;
    if (k < 0)
        return false;
    atomic_fetch_add(&g_calls, 1);
    gcall_t *c = calloc(1, sizeof(*c));
    if (!c) {
        custos_http_abort(req);
        return true;
    }
    verdict(req, routes[k].r, &c->status, c->body, sizeof(c->body));
    uint32_t wait = has(req, "guard-hang") ? 30000 : delay_ms;
    if (!wait) {
        send_now(req, c->status, c->body);
        free(c);
        return true;
    }
    c->req = req;
    c->loop = loop;
    custos_timer_init(&c->timer, on_timer, c);
    req->handler_data = c;
    req->on_abort = on_abort;
    custos_timer_start(loop, &c->timer, wait);
    return true;
}
