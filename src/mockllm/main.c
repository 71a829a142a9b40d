/* SPDX-License-Identifier: Apache-2.0
 * custos-mockllm: the stand-in OpenAI/Azure-OpenAI model server used by tests, demos and benchmarks.
 * Worker threads (one loop + SO_REUSEPORT listener each) serve deterministic replies with fault injection. */
#include "core/loop.h"
#include "mockllm/gen.h"
#include "mockllm/guard.h"
#include "net/http_server.h"
#include "net/listener.h"
#include "net/tls.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_LISTEN 8
#define MAX_WORKERS 64
#define SCRATCH_MAX (64u << 20)
#define KEYTAB_CAP 4096
#define BATCH_BYTES 16384

#define AZ_401_MSG                                                                                                     \
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "    \
    "active subscription and use a correct regional API endpoint for your resource."

typedef enum {
    R_CHAT = 0,
    R_COMPLETIONS,
    R_EMBEDDINGS,
    R_MODELS,
    R_AZ_CHAT,
    R_AZ_COMPLETIONS,
    R_AZ_EMBEDDINGS,
    R_AZV1_CHAT,
    R_AZV1_EMBEDDINGS,
    R_AZV1_MODELS,
    R_NOT_FOUND,
    R_COUNT
} route_id_t;

static const char *const ROUTE_NAMES[R_COUNT] = {
    "chat_completions",       "completions",       "embeddings",       "models",
    "azure_chat_completions", "azure_completions", "azure_embeddings", "azure_v1_chat_completions",
    "azure_v1_embeddings",    "azure_v1_models",   "not_found",
};

enum { F_LATENCY = 0, F_STATUS, F_RESET, F_RESET_MID, F_MALFORMED, F_DRIP, F_FAIL_FIRST_PASSED, F_COUNT };
static const char *const FAULT_NAMES[F_COUNT] = {
    "latency", "status", "reset", "reset_mid_stream", "malformed_json", "drip", "fail_first_passed"};

typedef struct worker {
    custos_loop_t *loop;
    custos_http_server_t *server;
    pthread_t thread;
    bool started;
    custos_buf_t scratch; /* non-streamed bodies, reused */
} worker_t;

static struct {
    custos_mock_opts_t opts;
    const char *api_key;
    uint32_t delay_ms;
    /* --guard-delay-ms: before every guard answer (mockllm/guard.h) */
    uint32_t guard_delay_ms;
    custos_mock_fault_t fault; /* global --fault */
    bool has_fault;
    bool quiet;
    custos_mock_keytab_t keytab;
    atomic_uint_fast64_t seq;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t streams;
    atomic_uint_fast64_t by_route[R_COUNT];
    atomic_uint_fast64_t faults[F_COUNT];
} g;

/* One in-flight request that outlives its on_request call (delays, streams). */
typedef struct call call_t;
typedef void (*step_fn)(call_t *c);
struct call {
    worker_t *w;
    custos_http_req_t *req;
    custos_timer_t timer;
    step_fn next;
    route_id_t route;
    custos_mock_kind_t kind;
    bool azure;
    const char *deployment; /* request arena */
    const char *extra;      /* request arena, or NULL */
    custos_mock_fault_t fault;
    custos_mock_req_t mreq;
    custos_mock_stream_t st;
    custos_buf_t buf;
    uint32_t delay_ms;
    size_t events_written;
    bool busy, aborted, finished, corrupted;
};

/* ---------- helpers ---------- */

#define HDR(n, v) ((custos_http_header_t){(n), sizeof(n) - 1, (v), strlen(v)})

static size_t base_headers(custos_http_header_t *h, const char *ctype)
{
    size_t n = 0;
    h[n++] = HDR("content-type", ctype);
    h[n++] = HDR("x-custos-mock", "1");
    return n;
}

static void call_free(call_t *c)
{
    custos_timer_stop(c->w->loop, &c->timer);
    custos_buf_dispose(&c->buf);
    free(c);
}

/* Detaches c from its request before the call that ends the request (the request struct may be reused by
 * the next pipelined request as soon as that call returns). */
static custos_http_req_t *detach(call_t *c)
{
    custos_http_req_t *req = c->req;
    req->on_abort = NULL;
    req->on_writable = NULL;
    req->handler_data = NULL;
    c->finished = true;
    return req;
}

static void on_abort(custos_http_req_t *req)
{
    call_t *c = req->handler_data;
    if (!c)
        return;
    c->aborted = true;
    custos_timer_stop(c->w->loop, &c->timer);
    if (!c->busy)
        call_free(c);
}

static void run_step(call_t *c, step_fn fn)
{
    c->busy = true;
    fn(c);
    c->busy = false;
    if (c->aborted || c->finished)
        call_free(c);
}

static void on_timer(custos_loop_t *loop, void *ud)
{
    call_t *c = ud;
    run_step(c, c->next);
}

static void on_writable(custos_http_req_t *req)
{
    call_t *c = req->handler_data;
    if (!c)
        return;
    req->on_writable = NULL;
    run_step(c, c->next);
}

static void wait_then(call_t *c, uint32_t ms, step_fn fn)
{
    c->next = fn;
    custos_timer_start(c->w->loop, &c->timer, ms);
}

static void abort_req(call_t *c)
{
    custos_http_abort(detach(c));
}

/* Error with a caller-built JSON body; extra headers may be NULL. */
static void respond_json(custos_http_req_t *req, int status, const char *body, size_t len,
                         const custos_http_header_t *extra, size_t nextra)
{
    custos_http_header_t h[8];
    size_t n = base_headers(h, "application/json");
    for (size_t i = 0; i < nextra && n < 8; i++)
        h[n++] = extra[i];
    custos_http_respond(req, status, h, n, body, len);
}

/* Sends the JSON body the caller built in b (build_rc: the result of building it), or aborts req when building
 * failed. */
static void respond_built(custos_http_req_t *req, int status, int build_rc, const custos_buf_t *b,
                          const custos_http_header_t *extra, size_t nextra)
{
    if (build_rc) {
        custos_http_abort(req);
        return;
    }
    respond_json(req, status, custos_buf_peek(b), custos_buf_size(b), extra, nextra);
}

/* Azure form: {"error":{"code":"...","message":"..."}} */
static void respond_azure_error(worker_t *w, custos_http_req_t *req, int status, const char *code, const char *msg,
                                const custos_http_header_t *extra, size_t nextra)
{
    custos_buf_t *b = &w->scratch;
    custos_buf_reset(b);
    int rc = custos_buf_append_str(b, "{\"error\":{\"code\":\"");
    if (!rc)
        rc = custos_mock_json_escape(b, code, strlen(code));
    if (!rc)
        rc = custos_buf_append_str(b, "\",\"message\":\"");
    if (!rc)
        rc = custos_mock_json_escape(b, msg, strlen(msg));
    if (!rc)
        rc = custos_buf_append_str(b, "\"}}");
    respond_built(req, status, rc, b, extra, nextra);
}

/* OpenAI form: {"error":{"message","type","param","code"}} */
static void respond_openai_error(worker_t *w, custos_http_req_t *req, int status, const char *msg, const char *type,
                                 const char *param, const char *code)
{
    custos_buf_t *b = &w->scratch;
    custos_buf_reset(b);
    int rc = custos_buf_append_str(b, "{\"error\":{\"message\":\"");
    if (!rc)
        rc = custos_mock_json_escape(b, msg, strlen(msg));
    if (!rc)
        rc = custos_buf_appendf(b, "\",\"type\":\"%s\",\"param\":", type);
    if (!rc)
        rc = param ? custos_buf_appendf(b, "\"%s\"", param) : custos_buf_append_str(b, "null");
    if (!rc)
        rc = code ? custos_buf_appendf(b, ",\"code\":\"%s\"}}", code) : custos_buf_append_str(b, ",\"code\":null}}");
    respond_built(req, status, rc, b, NULL, 0);
}

/* ---------- routing ---------- */

static bool path_is(const custos_http_req_t *req, const char *p)
{
    return strcmp(req->path, p) == 0;
}

/* Matches a route; for /openai/deployments/{d}/... stores d (arena) in *deployment. */
static route_id_t match_route(custos_http_req_t *req, const char **deployment, bool *want_get)
{
    const char *p = req->path;
    *want_get = false;
    if (strncmp(p, "/v1/", 4) == 0 || strncmp(p, "/openai/v1/", 11) == 0) {
        bool az = p[1] == 'o';
        const char *rest = p + (az ? 10 : 3);
        if (strcmp(rest, "/chat/completions") == 0)
            return az ? R_AZV1_CHAT : R_CHAT;
        if (strcmp(rest, "/embeddings") == 0)
            return az ? R_AZV1_EMBEDDINGS : R_EMBEDDINGS;
        if (strcmp(rest, "/completions") == 0 && !az)
            return R_COMPLETIONS;
        if (strcmp(rest, "/models") == 0) {
            *want_get = true;
            return az ? R_AZV1_MODELS : R_MODELS;
        }
        return R_NOT_FOUND;
    }
    static const char pre[] = "/openai/deployments/";
    if (strncmp(p, pre, sizeof(pre) - 1) != 0)
        return R_NOT_FOUND;
    const char *d = p + sizeof(pre) - 1;
    const char *slash = strchr(d, '/');
    if (!slash || slash == d || (size_t)(slash - d) > CUSTOS_MOCK_MAX_MODEL)
        return R_NOT_FOUND;
    route_id_t r;
    if (strcmp(slash, "/chat/completions") == 0)
        r = R_AZ_CHAT;
    else if (strcmp(slash, "/completions") == 0)
        r = R_AZ_COMPLETIONS;
    else if (strcmp(slash, "/embeddings") == 0)
        r = R_AZ_EMBEDDINGS;
    else
        return R_NOT_FOUND;
    *deployment = custos_arena_strndup(req->arena, d, (size_t)(slash - d));
    return *deployment ? r : R_NOT_FOUND;
}

static custos_mock_kind_t route_kind(route_id_t r)
{
    switch (r) {
    case R_COMPLETIONS:
    case R_AZ_COMPLETIONS:
        return CUSTOS_MOCK_COMPLETION;
    case R_EMBEDDINGS:
    case R_AZ_EMBEDDINGS:
    case R_AZV1_EMBEDDINGS:
        return CUSTOS_MOCK_EMBEDDINGS;
    default:
        return CUSTOS_MOCK_CHAT;
    }
}

/* ---------- auth ---------- */

typedef struct presented {
    const char *scheme; /* "bearer", "api-key", "none" */
    const char *key;
    size_t key_len;
} presented_t;

static void presented_key(const custos_http_req_t *req, presented_t *p)
{
    size_t n;
    const char *v = custos_http_req_header(req, "authorization", &n);
    if (v && n >= 7 && strncasecmp(v, "Bearer ", 7) == 0) {
        p->scheme = "bearer";
        p->key = v + 7;
        p->key_len = n - 7;
        return;
    }
    if ((v = custos_http_req_header(req, "api-key", &n))) {
        p->scheme = "api-key";
        p->key = v;
        p->key_len = n;
        return;
    }
    p->scheme = "none";
    p->key = "";
    p->key_len = 0;
}

static bool key_eq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    return an == bn && CRYPTO_memcmp(a, b, bn) == 0;
}

static bool auth_ok(const custos_http_req_t *req)
{
    if (!g.api_key)
        return true;
    size_t n;
    const char *v = custos_http_req_header(req, "authorization", &n);
    if (v && n >= 7 && strncasecmp(v, "Bearer ", 7) == 0 && key_eq(v + 7, n - 7, g.api_key))
        return true;
    v = custos_http_req_header(req, "api-key", &n);
    return v && key_eq(v, n, g.api_key);
}

/* "mock_auth":{...},"mock_path":"...","mock_headers":[...] in the request arena. */
static const char *build_echo(custos_http_req_t *req)
{
    presented_t p;
    presented_key(req, &p);
    custos_buf_t b;
    custos_buf_init(&b, 1 << 20);
    int rc = custos_buf_appendf(&b, "\"mock_auth\":{\"scheme\":\"%s\",\"sha256\":\"", p.scheme);
    if (!rc && p.key_len) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_Digest(p.key, p.key_len, md, &mdlen, EVP_sha256(), NULL) != 1)
            rc = CUSTOS_EIO;
        for (unsigned int i = 0; !rc && i < mdlen; i++)
            rc = custos_buf_appendf(&b, "%02x", md[i]);
    }
    if (!rc)
        rc = custos_buf_append_str(&b, "\"},\"mock_path\":\"");
    if (!rc)
        rc = custos_mock_json_escape(&b, req->path, req->path_len);
    if (!rc && req->query_len) {
        rc = custos_buf_append(&b, "?", 1);
        if (!rc)
            rc = custos_mock_json_escape(&b, req->query, req->query_len);
    }
    if (!rc)
        rc = custos_buf_append_str(&b, "\",\"mock_headers\":[");
    for (size_t i = 0; !rc && i < req->nheaders; i++) {
        rc = custos_buf_append_str(&b, i ? ",\"" : "\"");
        for (size_t k = 0; !rc && k < req->headers[i].name_len; k++) {
            char ch = req->headers[i].name[k];
            ch = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
            rc = custos_mock_json_escape(&b, &ch, 1);
        }
        if (!rc)
            rc = custos_buf_append(&b, "\"", 1);
    }
    if (!rc)
        rc = custos_buf_append(&b, "]", 1);
    const char *out = rc ? NULL : custos_arena_strndup(req->arena, custos_buf_peek(&b), custos_buf_size(&b));
    custos_buf_dispose(&b);
    return out;
}

/* ---------- stats ---------- */

static void respond_stats(worker_t *w, custos_http_req_t *req)
{
    custos_buf_t *b = &w->scratch;
    custos_buf_reset(b);
    int rc =
        custos_buf_appendf(b, "{\"requests\":%llu,\"streams\":%llu,\"by_route\":{",
                           (unsigned long long)atomic_load(&g.requests), (unsigned long long)atomic_load(&g.streams));
    for (int i = 0; !rc && i < R_COUNT; i++)
        rc = custos_buf_appendf(b, "%s\"%s\":%llu", i ? "," : "", ROUTE_NAMES[i],
                                (unsigned long long)atomic_load(&g.by_route[i]));
    if (!rc)
        rc = custos_buf_append_str(b, "},\"faults\":{");
    for (int i = 0; !rc && i < F_COUNT; i++)
        rc = custos_buf_appendf(b, "%s\"%s\":%llu", i ? "," : "", FAULT_NAMES[i],
                                (unsigned long long)atomic_load(&g.faults[i]));
    if (!rc)
        rc = custos_buf_append_str(b, "}}");
    respond_built(req, 200, rc, b, NULL, 0);
}

static void stats_reset(void)
{
    atomic_store(&g.requests, 0);
    atomic_store(&g.streams, 0);
    for (int i = 0; i < R_COUNT; i++)
        atomic_store(&g.by_route[i], 0);
    for (int i = 0; i < F_COUNT; i++)
        atomic_store(&g.faults[i], 0);
    custos_mock_keytab_clear(&g.keytab);
}

static void count_fault(int f)
{
    atomic_fetch_add_explicit(&g.faults[f], 1, memory_order_relaxed);
}

/* ---------- responding ---------- */

static void step_fault_status(call_t *c)
{
    custos_http_req_t *req = detach(c);
    int st = c->fault.status;
    count_fault(F_STATUS);
    if (st == 429) {
        char ra[16], ms[24], msg[384];
        snprintf(ra, sizeof(ra), "%u", c->fault.retry_after_s);
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long)c->fault.retry_after_s * 1000ull);
        snprintf(msg, sizeof(msg),
                 "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
                 "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after %u seconds. "
                 "Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default "
                 "rate limit.",
                 c->fault.retry_after_s);
        custos_http_header_t h[] = {HDR("retry-after", ra), HDR("retry-after-ms", ms),
                                    HDR("x-ratelimit-remaining-requests", "0"),
                                    HDR("x-ratelimit-remaining-tokens", "0")};
        respond_azure_error(c->w, req, 429, "429", msg, h, 4);
        return;
    }
    if (st >= 500) {
        respond_openai_error(c->w, req, st, "The server had an error while processing your request. Sorry about that!",
                             "server_error", NULL, NULL);
        return;
    }
    char code[16];
    snprintf(code, sizeof(code), "%d", st);
    respond_azure_error(c->w, req, st, code, "Mock fault injected.", NULL, 0);
}

static void step_whole(call_t *c)
{
    worker_t *w = c->w;
    custos_buf_t *b = &w->scratch;
    custos_mock_ident_t id = {atomic_fetch_add(&g.seq, 1) + 1, (int64_t)(custos_wall_ms() / 1000), c->extra};
    custos_buf_reset(b);
    int rc;
    if (c->route == R_MODELS || c->route == R_AZV1_MODELS)
        rc = custos_mock_models_json(b, id.created, c->extra);
    else if (c->kind == CUSTOS_MOCK_CHAT)
        rc = custos_mock_chat_json(b, &c->mreq, &g.opts, &id);
    else if (c->kind == CUSTOS_MOCK_COMPLETION)
        rc = custos_mock_completion_json(b, &c->mreq, &g.opts, &id);
    else
        rc = custos_mock_embeddings_json(b, &c->mreq, &id);
    if (rc) {
        custos_http_req_t *req = detach(c);
        respond_openai_error(w, req, 500, "mock could not build the response", "server_error", NULL, NULL);
        return;
    }
    size_t len = custos_buf_size(b);
    custos_http_header_t h[4];
    size_t n = base_headers(h, "application/json");
    if (c->fault.reset_mid_stream >= 0) {
        count_fault(F_RESET_MID);
        if (custos_http_stream_start(c->req, 200, h, n) == 0 && !c->aborted)
            custos_http_stream_write(c->req, custos_buf_peek(b), len / 2);
        if (!c->aborted)
            abort_req(c);
        return;
    }
    if (c->fault.malformed_json) {
        count_fault(F_MALFORMED);
        len /= 2;
    }
    custos_http_respond(detach(c), 200, h, n, custos_buf_peek(b), len);
}

/* Writes the batched events; false when the request is gone (or was aborted here). */
static bool flush_events(call_t *c)
{
    size_t len = custos_buf_size(&c->buf);
    if (len == 0)
        return true;
    int rc = custos_http_stream_write(c->req, custos_buf_peek(&c->buf), len);
    custos_buf_reset(&c->buf);
    if (c->aborted)
        return false;
    if (rc) {
        abort_req(c);
        return false;
    }
    return true;
}

/* Produces SSE events. Without a delay, events are batched up to BATCH_BYTES per write; with one, each
 * event is written alone and the next waits for the timer. Stops while the connection is congested. */
static void step_pump(call_t *c)
{
    custos_http_req_t *req = c->req;
    for (;;) {
        if (custos_http_stream_congested(req)) {
            c->next = step_pump;
            req->on_writable = on_writable;
            return;
        }
        if (c->fault.reset_mid_stream >= 0 && (int64_t)c->events_written >= c->fault.reset_mid_stream) {
            if (flush_events(c))
                abort_req(c);
            return;
        }
        size_t before = custos_buf_size(&c->buf);
        bool corrupt = c->fault.malformed_json && !c->corrupted && custos_mock_stream_at_content(&c->st);
        int r = custos_mock_stream_next(&c->st, &c->buf);
        if (r < 0) {
            abort_req(c);
            return;
        }
        if (r == 0) {
            if (flush_events(c))
                custos_http_stream_end(detach(c));
            return;
        }
        if (corrupt) { /* cut this event's JSON in half, keep the SSE framing */
            c->corrupted = true;
            c->buf.len = c->buf.off + before + (custos_buf_size(&c->buf) - before) / 2;
            if (custos_buf_append(&c->buf, "\n\n", 2)) {
                abort_req(c);
                return;
            }
        }
        c->events_written++;
        bool more = !custos_mock_stream_done(&c->st);
        if (c->delay_ms || !more || custos_buf_size(&c->buf) >= BATCH_BYTES) {
            if (!flush_events(c))
                return;
        }
        if (c->delay_ms && more) {
            wait_then(c, c->delay_ms, step_pump);
            return;
        }
    }
}

static void step_stream_start(call_t *c)
{
    custos_mock_ident_t id = {atomic_fetch_add(&g.seq, 1) + 1, (int64_t)(custos_wall_ms() / 1000), c->extra};
    custos_mock_stream_init(&c->st, &c->mreq, &g.opts, &id);
    atomic_fetch_add_explicit(&g.streams, 1, memory_order_relaxed);
    if (c->fault.reset_mid_stream >= 0)
        count_fault(F_RESET_MID);
    if (c->fault.malformed_json)
        count_fault(F_MALFORMED);
    custos_http_header_t h[4];
    size_t n = base_headers(h, "text/event-stream; charset=utf-8");
    h[n++] = HDR("cache-control", "no-cache");
    int rc = custos_http_stream_start(c->req, 200, h, n);
    if (c->aborted)
        return;
    if (rc) {
        abort_req(c);
        return;
    }
    step_pump(c);
}

/* After latency: the fault's outcome, else body parse and the reply. */
static void step_main(call_t *c)
{
    if (c->fault.reset) {
        count_fault(F_RESET);
        abort_req(c);
        return;
    }
    if (c->fault.status) {
        step_fault_status(c);
        return;
    }
    bool models = c->route == R_MODELS || c->route == R_AZV1_MODELS;
    if (!models) {
        const char *param, *msg;
        int rc = custos_mock_req_parse(c->kind, c->req->body, c->req->body_len, c->deployment, c->req->arena, &c->mreq,
                                       &param, &msg);
        if (rc) {
            custos_http_req_t *req = detach(c);
            respond_openai_error(c->w, req, rc == CUSTOS_ENOMEM ? 500 : 400, msg,
                                 rc == CUSTOS_ENOMEM ? "server_error" : "invalid_request_error", param, NULL);
            return;
        }
    }
    if (c->fault.drip_ms)
        count_fault(F_DRIP);
    if (!models && c->mreq.stream && c->kind != CUSTOS_MOCK_EMBEDDINGS) {
        c->delay_ms = c->fault.drip_ms ? c->fault.drip_ms : g.delay_ms;
        step_stream_start(c);
        return;
    }
    if (c->fault.drip_ms) {
        wait_then(c, c->fault.drip_ms, step_whole);
        return;
    }
    step_whole(c);
}

/* Picks the fault for this request: x-mock-fault header, else --fault. Returns false on a bad spec. */
static bool pick_fault(custos_http_req_t *req, custos_mock_fault_t *f)
{
    size_t n;
    const char *spec = custos_http_req_header(req, "x-mock-fault", &n);
    if (spec) {
        if (custos_mock_fault_parse(spec, n, f))
            return false;
    } else if (g.has_fault) {
        *f = g.fault;
    } else {
        custos_mock_fault_clear(f);
    }
    if (f->fail_first) {
        const char *key = custos_http_req_header(req, "x-mock-key", &n);
        uint32_t count = custos_mock_keytab_bump(&g.keytab, key ? key : "", key ? n : 0);
        if (count > f->fail_first) {
            custos_mock_fault_clear(f);
            count_fault(F_FAIL_FIRST_PASSED);
        }
    }
    return true;
}

static void handle(custos_http_req_t *req, void *ud)
{
    worker_t *w = ud;
    bool is_get = strcmp(req->method, "GET") == 0, is_post = strcmp(req->method, "POST") == 0;
    if (path_is(req, "/healthz")) {
        respond_json(req, 200, "{\"status\":\"ok\"}", 15, NULL, 0);
        return;
    }
    if (path_is(req, "/mock/stats") && is_get) {
        respond_stats(w, req);
        return;
    }
    if (custos_mock_guard_handle(req, w->loop, g.guard_delay_ms)) /* guard-model endpoints (mockllm/guard.h) */
        return;
    if (path_is(req, "/mock/reset") && is_post) {
        stats_reset();
        respond_json(req, 200, "{\"ok\":true}", 11, NULL, 0);
        return;
    }
    const char *deployment = NULL;
    bool want_get;
    route_id_t route = match_route(req, &deployment, &want_get);
    bool azure = strncmp(req->path, "/openai/", 8) == 0;
    atomic_fetch_add_explicit(&g.requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g.by_route[route], 1, memory_order_relaxed);
    if (!g.quiet)
        CUSTOS_INFO("mockllm request %s route=%s", req->request_id, ROUTE_NAMES[route]);
    if (route == R_NOT_FOUND) {
        if (azure)
            respond_azure_error(w, req, 404, "404", "Resource not found", NULL, 0);
        else
            respond_openai_error(w, req, 404, "Invalid URL: unknown route.", "invalid_request_error", NULL, NULL);
        return;
    }
    if ((want_get && !is_get) || (!want_get && !is_post)) {
        custos_http_header_t allow = HDR("allow", want_get ? "GET" : "POST");
        respond_azure_error(w, req, 405, "405", "Method not allowed.", &allow, 1);
        return;
    }
    if (!auth_ok(req)) {
        respond_azure_error(w, req, 401, "401", AZ_401_MSG, NULL, 0);
        return;
    }
    if (deployment && !custos_http_req_query(req, "api-version")) {
        respond_azure_error(w, req, 400, "MissingApiVersionParameter",
                            "The api-version query parameter (?api-version=) is required for all requests.", NULL, 0);
        return;
    }
    call_t *c = calloc(1, sizeof(*c));
    if (!c) {
        custos_http_abort(req);
        return;
    }
    c->w = w;
    c->req = req;
    c->route = route;
    c->kind = route_kind(route);
    c->azure = azure;
    c->deployment = deployment;
    custos_buf_init(&c->buf, SCRATCH_MAX);
    custos_timer_init(&c->timer, on_timer, c);
    if (!pick_fault(req, &c->fault)) {
        free(c);
        respond_openai_error(w, req, 400, "Malformed x-mock-fault spec.", "invalid_request_error", "x-mock-fault",
                             NULL);
        return;
    }
    size_t n;
    const char *echo = custos_http_req_header(req, "x-mock-echo-headers", &n);
    if (echo && n == 1 && echo[0] == '1')
        c->extra = build_echo(req);
    req->handler_data = c;
    req->on_abort = on_abort;
    if (c->fault.latency_ms) {
        count_fault(F_LATENCY);
        wait_then(c, c->fault.latency_ms, step_main);
        return;
    }
    run_step(c, step_main);
}

/* ---------- process ---------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: custos-mockllm [--listen 127.0.0.1:8081] [--listen unix:/path] [--workers N]\n"
               "                      [--tls-cert F --tls-key F] [--api-key K] [--delay-ms N] [--chunk-words N]\n"
               "                      [--reply-words N] [--fault SPEC] [--guard-delay-ms N] [--quiet]\n"
               "Stand-in OpenAI/Azure-OpenAI model server (deterministic replies, fault injection).\n");
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return CUSTOS_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    custos_loop_run(w->loop);
    custos_http_server_free(w->server);
    w->server = NULL;
    return NULL;
}

/* Text form of a bound socket ("127.0.0.1:43215", "[::1]:8081"). */
static void bound_text(int fd, const custos_addr_t *a, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "";
    if (a->family == AF_UNIX || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(out, outlen, "%s", a->text);
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(s4->sin_port));
    }
}

static void set_port(custos_addr_t *a, int port)
{
    if (a->family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
    else if (a->family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
}

int main(int argc, char **argv)
{
    enum { O_TLS_CERT = 256, O_TLS_KEY, O_API_KEY, O_DELAY, O_CHUNK, O_REPLY, O_FAULT, O_QUIET, O_GUARD_DELAY };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'},
        {"tls-cert", required_argument, NULL, O_TLS_CERT},
        {"tls-key", required_argument, NULL, O_TLS_KEY},
        {"api-key", required_argument, NULL, O_API_KEY},
        {"delay-ms", required_argument, NULL, O_DELAY},
        {"guard-delay-ms", required_argument, NULL, O_GUARD_DELAY},
        {"chunk-words", required_argument, NULL, O_CHUNK},
        {"reply-words", required_argument, NULL, O_REPLY},
        {"fault", required_argument, NULL, O_FAULT},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_specs[MAX_LISTEN];
    size_t nlisten = 0;
    uint32_t nworkers = 1;
    const char *tls_cert = NULL, *tls_key = NULL;
    int exit_code = 1;
    custos_tls_t *tls = NULL;
    worker_t *workers = NULL;
    int fds[MAX_LISTEN * MAX_WORKERS];
    size_t nfds = 0;
    bool keytab_ok = false;

    custos_mock_opts_default(&g.opts);
    custos_mock_fault_clear(&g.fault);
    int opt;
    while ((opt = getopt_long(argc, argv, "l:w:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (nlisten == MAX_LISTEN) {
                fprintf(stderr, "custos-mockllm: at most %d --listen\n", MAX_LISTEN);
                return 2;
            }
            listen_specs[nlisten++] = optarg;
            break;
        case 'w':
            if (parse_u32(optarg, 1, MAX_WORKERS, &nworkers))
                goto badarg;
            break;
        case O_TLS_CERT:
            tls_cert = optarg;
            break;
        case O_TLS_KEY:
            tls_key = optarg;
            break;
        case O_API_KEY:
            g.api_key = optarg;
            break;
        case O_GUARD_DELAY:
            if (parse_u32(optarg, 0, 600000, &g.guard_delay_ms)) {
                fprintf(stderr, "custos-mockllm: bad --guard-delay-ms\n");
                return 2;
            }
            break;
        case O_DELAY:
            if (parse_u32(optarg, 0, 600000, &g.delay_ms))
                goto badarg;
            break;
        case O_CHUNK:
            if (parse_u32(optarg, 1, CUSTOS_MOCK_MAX_WORDS, &g.opts.chunk_words))
                goto badarg;
            break;
        case O_REPLY:
            if (parse_u32(optarg, 0, CUSTOS_MOCK_MAX_WORDS, &g.opts.reply_words))
                goto badarg;
            break;
        case O_FAULT:
            if (custos_mock_fault_parse(optarg, strlen(optarg), &g.fault))
                goto badarg;
            g.has_fault = true;
            break;
        case O_QUIET:
            g.quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (nlisten == 0)
        listen_specs[nlisten++] = "127.0.0.1:8081";
    if (!tls_cert != !tls_key) {
        fprintf(stderr, "custos-mockllm: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (g.quiet)
        custos_log_set_level(CUSTOS_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);

    if (custos_mock_keytab_init(&g.keytab, KEYTAB_CAP))
        goto fail;
    keytab_ok = true;
    if (tls_cert) {
        char err[256];
        custos_tls_opts_t to = {.cert_file = tls_cert, .key_file = tls_key};
        if (custos_tls_new(&to, &tls, err, sizeof(err))) {
            fprintf(stderr, "custos-mockllm: tls: %s\n", err);
            goto fail;
        }
    }
    workers = calloc(nworkers, sizeof(*workers));
    if (!workers)
        goto fail;
    custos_http_server_opts_t so;
    memset(&so, 0, sizeof(so));
    custos_http_limits_default(&so.limits);
    so.on_request = handle;
    for (uint32_t i = 0; i < nworkers; i++) {
        worker_t *w = &workers[i];
        custos_buf_init(&w->scratch, SCRATCH_MAX);
        so.ud = w;
        if (custos_loop_new(&w->loop) || custos_http_server_new(w->loop, &so, &w->server))
            goto fail;
    }
    for (size_t li = 0; li < nlisten; li++) {
        custos_addr_t a;
        if (custos_addr_parse(listen_specs[li], &a)) {
            fprintf(stderr, "custos-mockllm: bad --listen address\n");
            exit_code = 2;
            goto fail;
        }
        bool per_worker = a.family != AF_UNIX && nworkers > 1;
        size_t nopen = per_worker ? nworkers : 1;
        for (size_t k = 0; k < nopen; k++) {
            int fd;
            if (custos_listener_open(&a, per_worker, 0, &fd)) {
                fprintf(stderr, "custos-mockllm: cannot listen on %s: %s\n", a.text, strerror(errno));
                goto fail;
            }
            fds[nfds++] = fd;
            if (k == 0 && per_worker) {
                int port = custos_listener_port(fd);
                if (port > 0)
                    set_port(&a, port); /* port 0: the other workers join the port the first one got */
            }
            custos_tls_t *t = a.family == AF_UNIX ? NULL : tls;
            if (per_worker) {
                if (custos_http_server_listen(workers[k].server, fd, t, false))
                    goto fail;
            } else {
                for (uint32_t i = 0; i < nworkers; i++)
                    if (custos_http_server_listen(workers[i].server, fd, t, nworkers > 1))
                        goto fail;
            }
            if (k == 0) {
                char text[160];
                bound_text(fd, &a, text, sizeof(text));
                fprintf(stderr, "custos-mockllm listening on %s%s\n", text,
                        (tls && a.family != AF_UNIX) ? " (tls)" : "");
            }
        }
    }
    fflush(stderr);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    for (uint32_t i = 0; i < nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            goto fail_running;
        workers[i].started = true;
    }
    int sig = 0;
    sigwait(&set, &sig);
    exit_code = 0;
fail_running:
    for (uint32_t i = 0; i < nworkers; i++)
        if (workers[i].started)
            custos_loop_stop(workers[i].loop);
    for (uint32_t i = 0; i < nworkers; i++)
        if (workers[i].started)
            pthread_join(workers[i].thread, NULL);
fail:
    for (uint32_t i = 0; workers && i < nworkers; i++) {
        custos_http_server_free(workers[i].server);
        custos_loop_free(workers[i].loop);
        custos_buf_dispose(&workers[i].scratch);
    }
    free(workers);
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    custos_tls_free(tls);
    if (keytab_ok)
        custos_mock_keytab_dispose(&g.keytab);
    return exit_code;
badarg:
    fprintf(stderr, "custos-mockllm: invalid value for option\n");
    usage(stderr);
    return 2;
}
