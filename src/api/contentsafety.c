/* SPDX-License-Identifier: Apache-2.0
 * Azure AI Content Safety routes: text:analyze, text:shieldPrompt, text:detectGroundedness and text blocklists
 * (docs/content-safety-api.md). */
#include "api/contentsafety.h"
#include "api/authn.h"
#include "api/json_out.h"
#include "api/cs_reasoning.h"
#include "audit/govlog.h"
#include "audit/record.h"
#include "safety/blocklist_store.h"
#include "safety/grounded.h"
#include "safety/harm.h"
#include "safety/normalize.h"
#include "safety/safety.h"
#include "safety/shields.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PREFIX "/contentsafety"

/* Serialises blocklist writes in this process (begin → change → compile → governance → commit). Versions are the
 * store's "blocklists" counter (custos_blstore_version), which every write of every replica bumps: a compiled set
 * is published only if it was built at a newer version than the one running, so a slow build can never replace a
 * newer set, and the store watcher (custos_contentsafety_store_poll) recompiles only when the store is ahead. */
static pthread_mutex_t g_write_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_pub_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t g_sync_max = CUSTOS_CS_SYNC_COMPILE_MAX_ITEMS; /* env CUSTOS_BLOCKLIST_SYNC_MAX overrides (tests) */
static int64_t g_published = -1;                             /* under g_pub_lock */
static int64_t g_failed = -1; /* under g_pub_lock: a version whose build failed (not retried by the watcher) */

/* Background compiler for large sets (more than CUSTOS_CS_SYNC_COMPILE_MAX_ITEMS items) and for changes made by
 * other replicas: changes are committed at once and compiled by this thread, coalescing bursts (a bulk load of
 * 1,000 calls compiles a few times, not 1,000). */
static struct {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool dirty, stop, running;
    bool same_ok; /* a reload is pending: republish even at the running version */
    custos_gateway_t *gw;
} g_bg = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* same_ok: a reload (SIGHUP) republishes a set built at the running version too. */
static void publish_if_newer(custos_gateway_t *gw, custos_blocklists_t *set, int64_t version, bool same_ok,
                             const char *why)
{
    pthread_mutex_lock(&g_pub_lock);
    bool newer = (version > g_published || (same_ok && version == g_published)) && gw->blocklists;
    if (newer) {
        g_published = version;
        CUSTOS_INFO("blocklists: %s: %zu lists, %zu items compiled (%zu bytes), store version %lld", why,
                    custos_blocklists_count(set), custos_blocklists_items(set), custos_blocklists_bytes(set),
                    (long long)version);
        custos_blocklist_hub_publish(gw->blocklists, set);
    }
    pthread_mutex_unlock(&g_pub_lock);
    if (!newer)
        custos_blocklists_unref(set);
}

/* Builds from the store as it is now (one snapshot) and publishes (reload, background, other replicas' changes). */
static int rebuild(custos_gateway_t *gw, bool same_ok, const char *why)
{
    custos_blocklists_t *set = NULL;
    char err[320];
    int64_t v = -1;
    int rc = custos_blstore_build_config(&gw->cfg->storage, &set, &v, err, sizeof(err));
    if (rc < 0) {
        CUSTOS_ERROR("blocklists (%s): %s; keeping the running blocklists", why, err);
        pthread_mutex_lock(&g_pub_lock);
        if (v >= 0)
            g_failed = v;
        pthread_mutex_unlock(&g_pub_lock);
        return rc;
    }
    publish_if_newer(gw, set, v, same_ok, why);
    return 0;
}

static void *bg_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "blocklists");
    pthread_mutex_lock(&g_bg.mu);
    while (!g_bg.stop) {
        if (!g_bg.dirty) {
            pthread_cond_wait(&g_bg.cv, &g_bg.mu);
            continue;
        }
        bool same_ok = g_bg.same_ok;
        g_bg.dirty = g_bg.same_ok = false;
        pthread_mutex_unlock(&g_bg.mu);
        rebuild(g_bg.gw, same_ok, same_ok ? "reload" : "background compile");
        pthread_mutex_lock(&g_bg.mu);
    }
    pthread_mutex_unlock(&g_bg.mu);
    custos_json_thread_cleanup();
    return NULL;
}

static void bg_schedule(void)
{
    pthread_mutex_lock(&g_bg.mu);
    g_bg.dirty = true;
    pthread_cond_signal(&g_bg.cv);
    pthread_mutex_unlock(&g_bg.mu);
}

static const char *const API_VERSIONS[] = {"2023-10-01",         "2024-09-01",         "2023-10-15-preview",
                                           "2024-02-15-preview", "2024-09-15-preview", NULL};

bool custos_contentsafety_path(const char *path, size_t len)
{
    return len >= 15 && memcmp(path, PREFIX "/", 15) == 0;
}

/* ---------- answers ---------- */

/* Status of the answer given by this thread's current request (for metrics). */
static _Thread_local int t_status;

static void reply(custos_http_req_t *req, int status, custos_buf_t *b)
{
    t_status = status;
    custos_http_header_t h[1] = {{"content-type", 12, "application/json; charset=utf-8", 31}};
    custos_http_respond(req, status, h, 1, b ? custos_buf_peek(b) : NULL, b ? custos_buf_size(b) : 0);
}

/* Azure.Core error: {"error":{"code","message","details":[]}} plus x-ms-error-code. message is a constant or
 * metadata (names, indexes), never request content. */
static void cs_error_h(custos_http_req_t *req, int status, const char *code, const char *message,
                       const custos_http_header_t *extra)
{
    t_status = status;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_buf_append_lit(&b, "{\"error\":{\"code\":");
    rc = rc ? rc : custos_json_append_string(&b, code, strlen(code));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"message\":");
    rc = rc ? rc : custos_json_append_string(&b, message, strlen(message));
    rc = rc ? rc : custos_buf_append_lit(&b, ",\"details\":[]}}");
    custos_http_header_t h[3] = {{"content-type", 12, "application/json; charset=utf-8", 31},
                                 {"x-ms-error-code", 15, code, strlen(code)}};
    size_t nh = 2;
    if (extra)
        h[nh++] = *extra;
    if (rc == 0)
        custos_http_respond(req, status, h, nh, custos_buf_peek(&b), custos_buf_size(&b));
    else
        custos_http_respond(req, 500, h, 1, NULL, 0);
    custos_buf_dispose(&b);
}

static void cs_error(custos_http_req_t *req, int status, const char *code, const char *message)
{
    cs_error_h(req, status, code, message, NULL);
}

void custos_cs_error(custos_http_req_t *req, int status, const char *code, const char *message)
{
    cs_error_h(req, status, code, message, NULL);
}

static void bad_request(custos_http_req_t *req, const char *message)
{
    cs_error(req, 400, "InvalidRequestBody", message);
}

static void internal(custos_http_req_t *req, const char *message)
{
    cs_error(req, 500, "InternalError", message);
}

/* An analysis or store step failed (rc < 0): logs "contentsafety: WHAT failed" with the reason and answers 500 with
 * message. */
static void step_failed(custos_http_req_t *req, const char *what, int rc, const char *message)
{
    CUSTOS_ERROR("contentsafety: %s failed: %s", what, custos_strerror(rc));
    internal(req, message);
}

/* The 200 answer built in b, or 500 when building it failed (rc != 0). */
static void reply_built(custos_http_req_t *req, custos_buf_t *b, int rc)
{
    if (rc != 0)
        internal(req, "Out of memory.");
    else
        reply(req, 200, b);
}

/* ---------- small parsers ---------- */

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* Valid UTF-8 without NUL (when no_nul); *ncp receives the code point count. The normaliser's decoder decides what
 * is valid (overlongs, surrogates and values above U+10FFFF are not). */
static bool utf8_count(const char *s, size_t n, bool no_nul, size_t *ncp)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t k = 0, adv = 0;
    for (size_t i = 0; i < n; i += adv, k++)
        if ((p[i] == 0 && no_nul) || custos_norm_decode_utf8(p + i, n - i, &adv) < 0)
            return false;
    *ncp = k;
    return true;
}

/* A JSON string's text: valid UTF-8 (without NUL when no_nul) of at most max code points (*ncp: the count). */
static bool text_ok(json_object *str, bool no_nul, size_t max, size_t *ncp)
{
    return utf8_count(json_object_get_string(str), (size_t)json_object_get_string_len(str), no_nul, ncp) && *ncp <= max;
}

/* Checks that the n elements of array a are valid UTF-8 strings and adds their code points to *total; stores each
 * string and its byte length in strs[i] / lens[i] when those are given. false at the first element that is not. */
static bool utf8_strings(json_object *a, size_t n, const char **strs, size_t *lens, size_t *total)
{
    for (size_t i = 0; i < n; i++) {
        json_object *x = json_object_array_get_idx(a, i);
        size_t ncp = 0;
        if (!x || !json_object_is_type(x, json_type_string) || !text_ok(x, false, SIZE_MAX, &ncp))
            return false;
        if (strs)
            strs[i] = json_object_get_string(x);
        if (lens)
            lens[i] = (size_t)json_object_get_string_len(x);
        *total += ncp;
    }
    return true;
}

static bool valid_list_name(const char *s, size_t n)
{
    if (n == 0 || n > CUSTOS_BLOCKLIST_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '~' || c == '-'))
            return false;
    }
    return true;
}

static bool content_type_ok(const custos_http_req_t *req)
{
    size_t l = 0;
    const char *ct = custos_http_req_header(req, "content-type", &l);
    if (!ct)
        return false;
    static const char *const ok[] = {"application/json", "application/merge-patch+json", NULL};
    for (const char *const *t = ok; *t; t++) {
        size_t tl = strlen(*t);
        if (l >= tl && strncasecmp(ct, *t, tl) == 0 && (l == tl || ct[tl] == ';' || ct[tl] == ' '))
            return true;
    }
    return false;
}

/* Parses the body as a JSON object; answers and returns NULL on failure. */
static json_object *body_object(custos_worker_t *w, custos_http_req_t *req)
{
    if (req->body_len > CUSTOS_CS_MAX_BODY) {
        cs_error(req, 413, "InvalidRequestBody", "The request body is too large.");
        return NULL;
    }
    if (!content_type_ok(req)) {
        cs_error(req, 415, "InvalidRequestBody",
                 "The request body must be JSON: set 'Content-Type: application/json'.");
        return NULL;
    }
    json_object *o = NULL;
    size_t errpos = 0;
    int rc = custos_json_parse(req->body, req->body_len, (int)w->cfg->limits.max_json_depth, &o, &errpos, NULL);
    if (rc < 0 || !o || !json_object_is_type(o, json_type_object)) {
        if (o)
            json_object_put(o);
        char msg[160];
        if (rc < 0)
            snprintf(msg, sizeof(msg), "The request body is not valid JSON (error at byte %zu).", errpos);
        else
            snprintf(msg, sizeof(msg), "The request body must be a JSON object.");
        bad_request(req, msg);
        return NULL;
    }
    return o;
}

/* Optional field of a type: 1 present (and *v set), 0 absent (or null), -1 wrong type. */
static int field(json_object *o, const char *key, json_type t, json_object **v)
{
    *v = NULL;
    if (!json_object_object_get_ex(o, key, v) || json_object_is_type(*v, json_type_null)) {
        *v = NULL;
        return 0;
    }
    return json_object_is_type(*v, t) ? 1 : -1;
}

/* ---------- authorization ---------- */

typedef enum { NEED_READ, NEED_WRITE } need_t;

static int authorize(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *c, need_t need)
{
    custos_authn_error_t e;
    if (need == NEED_READ && custos_authn_authorize(w, req, c, CUSTOS_RBAC_INFERENCE, NULL, &e) == 0)
        return 0;
    if (custos_authn_authorize(w, req, c, CUSTOS_RBAC_SAFETY_ADMIN, NULL, &e) == 0)
        return 0;
    cs_error(req, e.status, e.code, e.message);
    return -1;
}

/* ---------- text:analyze ---------- */

static const struct {
    const char *name;
    int cat;
} CATS[] = {{"Hate", CUSTOS_HARM_HATE},
            {"SelfHarm", CUSTOS_HARM_SELF_HARM},
            {"Sexual", CUSTOS_HARM_SEXUAL},
            {"Violence", CUSTOS_HARM_VIOLENCE}};

typedef struct match_out {
    custos_buf_t *b;
    size_t n;
} match_out_t;

static int on_match(void *ud, const custos_blocklist_hit_t *h)
{
    match_out_t *m = ud;
    int rc = m->n ? custos_buf_append_lit(m->b, ",") : 0;
    rc = rc ? rc : custos_api_put_member(m->b, "{\"blocklistName\":", h->list);
    rc = rc ? rc : custos_api_put_member(m->b, ",\"blocklistItemId\":", h->item_id);
    rc = rc ? rc : custos_api_put_member(m->b, ",\"blocklistItemText\":", h->item_text);
    rc = rc ? rc : custos_buf_append_lit(m->b, "}");
    m->n++;
    return rc ? rc : 0;
}

static void analyze(custos_worker_t *w, custos_http_req_t *req, json_object *o)
{
    json_object *jt, *jc, *jb, *jh, *jo;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    const char *names[CUSTOS_CS_MAX_BLOCKLIST_NAMES];
    size_t nnames = 0;
    int order[4], ncat = 0;
    bool halt = false, eight = false;
    if (field(o, "text", json_type_string, &jt) != 1) {
        bad_request(req, "'text' is required and must be a string.");
        goto out;
    }
    const char *text = json_object_get_string(jt);
    size_t tlen = (size_t)json_object_get_string_len(jt), ncp = 0;
    if (!utf8_count(text, tlen, false, &ncp)) {
        bad_request(req, "'text' is not valid UTF-8.");
        goto out;
    }
    if (ncp > CUSTOS_CS_MAX_TEXT_CHARS) {
        bad_request(req, "'text' is longer than 10000 characters.");
        goto out;
    }
    int r = field(o, "categories", json_type_array, &jc);
    if (r < 0) {
        bad_request(req, "'categories' must be an array of Hate, SelfHarm, Sexual, Violence.");
        goto out;
    }
    for (size_t i = 0; jc && i < json_object_array_length(jc); i++) {
        json_object *x = json_object_array_get_idx(jc, i);
        int found = -1;
        for (int k = 0; k < 4 && x && json_object_is_type(x, json_type_string); k++)
            if (strcmp(json_object_get_string(x), CATS[k].name) == 0)
                found = k;
        if (found < 0) {
            bad_request(req, "'categories' must be an array of Hate, SelfHarm, Sexual, Violence.");
            goto out;
        }
        bool dup = false;
        for (int k = 0; k < ncat; k++)
            dup = dup || order[k] == found;
        if (!dup)
            order[ncat++] = found;
    }
    if (ncat == 0)
        for (ncat = 0; ncat < 4; ncat++)
            order[ncat] = ncat;
    r = field(o, "blocklistNames", json_type_array, &jb);
    if (r < 0 || (jb && json_object_array_length(jb) > CUSTOS_CS_MAX_BLOCKLIST_NAMES)) {
        bad_request(req, "'blocklistNames' must be an array of at most 10 blocklist names.");
        goto out;
    }
    for (size_t i = 0; jb && i < json_object_array_length(jb); i++) {
        json_object *x = json_object_array_get_idx(jb, i);
        if (!x || !json_object_is_type(x, json_type_string) ||
            !valid_list_name(json_object_get_string(x), (size_t)json_object_get_string_len(x))) {
            cs_error(req, 400, "InvalidResourceName",
                     "Each blocklist name must be 1 to 64 characters of 0-9 A-Z a-z . _ ~ -.");
            goto out;
        }
        names[nnames++] = json_object_get_string(x);
    }
    if (field(o, "haltOnBlocklistHit", json_type_boolean, &jh) < 0) {
        bad_request(req, "'haltOnBlocklistHit' must be a boolean.");
        goto out;
    }
    halt = jh && json_object_get_boolean(jh);
    if (field(o, "outputType", json_type_string, &jo) < 0 ||
        (jo && strcmp(json_object_get_string(jo), "FourSeverityLevels") != 0 &&
         strcmp(json_object_get_string(jo), "EightSeverityLevels") != 0)) {
        bad_request(req, "'outputType' must be FourSeverityLevels or EightSeverityLevels.");
        goto out;
    }
    eight = jo && strcmp(json_object_get_string(jo), "EightSeverityLevels") == 0;

    int rc = custos_buf_append_lit(&b, "{\"blocklistsMatch\":[");
    match_out_t m = {&b, 0};
    if (nnames) {
        const custos_blocklists_t *set =
            w->gw->blocklists ? custos_blocklist_view_get(w->gw->blocklists, &w->bl_view) : NULL;
        for (size_t i = 0; i < nnames; i++) {
            if (!custos_blocklists_has(set, names[i])) {
                char msg[160];
                snprintf(msg, sizeof(msg), "Blocklist '%s' does not exist.", names[i]);
                cs_error(req, 404, "ResourceNotFound", msg);
                goto out;
            }
        }
        int src = custos_blocklists_scan(set, names, nnames, text, tlen, &w->bl_scratch, on_match, &m);
        if (src < 0) {
            step_failed(req, "blocklist scan", src, "The blocklists could not be applied.");
            goto out;
        }
        rc = rc ? rc : src;
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "],\"categoriesAnalysis\":[");
    if (!(halt && m.n > 0)) {
        const custos_harm_model_t *hm = w->gw->safety ? custos_safety_harm(w->gw->safety) : NULL;
        custos_harm_result_t res;
        int hrc = hm ? custos_harm_score(hm, text, tlen, &res, &w->scratch) : CUSTOS_EUNAVAIL;
        if (hrc < 0) {
            step_failed(req, "harm analysis", hrc, "The text could not be analyzed.");
            goto out;
        }
        for (int k = 0; !rc && k < ncat; k++) {
            int sev = res.severity[CATS[order[k]].cat];
            sev = sev < 0 ? 0 : sev > 7 ? 7 : sev;
            if (!eight)
                sev = sev / 2 * 2;
            rc = custos_buf_appendf(&b, "%s{\"category\":\"%s\",\"severity\":%d}", k ? "," : "", CATS[order[k]].name,
                                    sev);
        }
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    reply_built(req, &b, rc);
out:
    custos_buf_dispose(&b);
}

/* ---------- text:shieldPrompt ---------- */

static void shield_prompt(custos_worker_t *w, custos_http_req_t *req, json_object *o)
{
    json_object *ju, *jd;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int r = field(o, "userPrompt", json_type_string, &ju);
    int rd = field(o, "documents", json_type_array, &jd);
    size_t ncp = 0, total = 0;
    if (r < 0 || rd < 0) {
        bad_request(req, "Expected {\"userPrompt\"?: string, \"documents\"?: [string, ...]}.");
        goto out;
    }
    if (ju && !text_ok(ju, false, CUSTOS_CS_MAX_TEXT_CHARS, &ncp)) {
        bad_request(req, "'userPrompt' must be valid UTF-8 of at most 10000 characters.");
        goto out;
    }
    size_t nd = jd ? json_object_array_length(jd) : 0;
    if (nd > CUSTOS_CS_MAX_DOCUMENTS) {
        bad_request(req, "'documents' holds at most 5 documents.");
        goto out;
    }
    if (!utf8_strings(jd, nd, NULL, NULL, &total)) {
        bad_request(req, "Each document must be a valid UTF-8 string.");
        goto out;
    }
    if (total > CUSTOS_CS_MAX_DOCUMENTS_CHARS) {
        bad_request(req, "The documents together are longer than 10000 characters.");
        goto out;
    }
    const custos_model_t *sm = w->gw->safety ? custos_safety_shields(w->gw->safety) : NULL;
    if (!sm) {
        cs_error(req, 503, "ServiceUnavailable", "Prompt shields are not available: no shields model is loaded.");
        goto out;
    }
    int rc = custos_buf_append_lit(&b, "{");
    if (ju) {
        custos_shield_result_t s;
        int src = custos_shields_score(sm, CUSTOS_SHIELD_JAILBREAK, json_object_get_string(ju),
                                       (size_t)json_object_get_string_len(ju), &s, &w->scratch);
        if (src < 0) {
            step_failed(req, "prompt shield", src, "The prompt could not be analyzed.");
            goto out;
        }
        rc = rc ? rc
                : custos_buf_appendf(&b, "\"userPromptAnalysis\":{\"attackDetected\":%s},",
                                     s.detected ? "true" : "false");
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "\"documentsAnalysis\":[");
    for (size_t i = 0; !rc && i < nd; i++) {
        json_object *x = json_object_array_get_idx(jd, i);
        custos_shield_result_t s;
        int src = custos_shields_score(sm, CUSTOS_SHIELD_INDIRECT, json_object_get_string(x),
                                       (size_t)json_object_get_string_len(x), &s, &w->scratch);
        if (src < 0) {
            step_failed(req, "document shield", src, "The documents could not be analyzed.");
            goto out;
        }
        rc = custos_buf_appendf(&b, "%s{\"attackDetected\":%s}", i ? "," : "", s.detected ? "true" : "false");
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    reply_built(req, &b, rc);
out:
    custos_buf_dispose(&b);
}

/* ---------- text:detectGroundedness (preview) ---------- */

static int put_units(custos_buf_t *b, const char *key, size_t u8, size_t u16, size_t cp)
{
    return custos_buf_appendf(b, "\"%s\":{\"utf8\":%zu,\"utf16\":%zu,\"codePoint\":%zu}", key, u8, u16, cp);
}

/* Case-insensitive enum value: index into names, or -1. */
static int enum_of(json_object *v, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcasecmp(json_object_get_string(v), names[i]) == 0)
            return i;
    return -1;
}

static void detect_groundedness(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller,
                                json_object *o)
{
    static const char *const DOMAINS[] = {"Generic", "Medical", NULL}, *const TASKS[] = {"Summarization", "QnA", NULL};
    json_object *jt, *js, *jd, *jk, *jq, *jr, *jqq = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    const char **src = NULL;
    size_t *lens = NULL;
    custos_grounded_result_t res = {0};
    size_t ncp = 0, total = 0;
    if (field(o, "text", json_type_string, &jt) != 1 || field(o, "groundingSources", json_type_array, &js) != 1 ||
        field(o, "domain", json_type_string, &jd) < 0 || field(o, "task", json_type_string, &jk) < 0 ||
        field(o, "qna", json_type_object, &jq) < 0 || field(o, "reasoning", json_type_boolean, &jr) < 0 ||
        (jq && field(jq, "query", json_type_string, &jqq) < 0)) {
        bad_request(req, "Expected {\"text\": string, \"groundingSources\": [string, ...], \"domain\"?: "
                         "\"Generic\"|\"Medical\", \"task\"?: \"Summarization\"|\"QnA\", \"qna\"?: "
                         "{\"query\": string}, \"reasoning\"?: boolean}.");
        goto out;
    }
    int domain = jd ? enum_of(jd, DOMAINS) : 0, task = jk ? enum_of(jk, TASKS) : 0;
    if (domain < 0 || task < 0) {
        bad_request(req, "'domain' must be Generic or Medical; 'task' must be Summarization or QnA.");
        goto out;
    }
    if (task == 1 && !jqq) {
        bad_request(req, "'qna.query' is required when 'task' is QnA.");
        goto out;
    }
    if (!text_ok(jt, false, CUSTOS_CS_MAX_GROUNDED_TEXT_CHARS, &ncp) || ncp == 0) {
        bad_request(req, "'text' must be valid UTF-8 of 1 to 7500 characters.");
        goto out;
    }
    if (jqq && !text_ok(jqq, false, CUSTOS_CS_MAX_GROUNDED_TEXT_CHARS, &ncp)) {
        bad_request(req, "'qna.query' must be valid UTF-8 of at most 7500 characters.");
        goto out;
    }
    size_t ns = json_object_array_length(js);
    if (ns == 0 || ns > CUSTOS_CS_MAX_GROUNDING_SOURCES) {
        bad_request(req, "'groundingSources' must hold 1 to 256 strings.");
        goto out;
    }
    src = calloc(ns, sizeof(*src));
    lens = calloc(ns, sizeof(*lens));
    if (!src || !lens) {
        internal(req, "Out of memory.");
        goto out;
    }
    if (!utf8_strings(js, ns, src, lens, &total)) {
        bad_request(req, "Each grounding source must be a valid UTF-8 string.");
        goto out;
    }
    if (total > CUSTOS_CS_MAX_GROUNDING_CHARS) {
        bad_request(req, "The grounding sources together are longer than 55000 characters.");
        goto out;
    }
    /* the request as the detector takes it; the judge (reasoning) takes the same text, sources and query */
    custos_grounded_input_t in = {.text = json_object_get_string(jt),
                                  .text_len = (size_t)json_object_get_string_len(jt),
                                  .sources = src,
                                  .source_lens = lens,
                                  .n_sources = ns,
                                  .query = jqq ? json_object_get_string(jqq) : NULL,
                                  .query_len = jqq ? (size_t)json_object_get_string_len(jqq) : 0,
                                  .domain = domain ? CUSTOS_GROUNDED_MEDICAL : CUSTOS_GROUNDED_GENERIC,
                                  .task = task ? CUSTOS_GROUNDED_QNA : CUSTOS_GROUNDED_SUMMARIZATION};
    if (jr && json_object_get_boolean(jr)) { /* a judge deployment explains each span (api/cs_reasoning.h) */
        json_object *jl = NULL;
        json_object_object_get_ex(o, "llmResource", &jl);
        custos_cs_reasoning_in_t ri = {.text = in.text,
                                       .text_len = in.text_len,
                                       .sources = in.sources,
                                       .source_lens = in.source_lens,
                                       .n_sources = in.n_sources,
                                       .query = in.query,
                                       .query_len = in.query_len,
                                       .medical = domain == 1,
                                       .qna = task == 1,
                                       .llm_resource = jl};
        custos_cs_answer_t ra;
        if (custos_cs_reasoning_start(w, req, caller, &ri, &ra) < 0)
            cs_error(req, ra.status, ra.code, ra.message);
        goto out;
    }
    const custos_grounded_model_t *gm = w->gw->safety ? custos_safety_grounded(w->gw->safety) : NULL;
    if (!gm) {
        cs_error(req, 503, "ServiceUnavailable",
                 "Groundedness detection is not available: no grounded.model is loaded.");
        goto out;
    }
    int drc = custos_grounded_detect(gm, &in, &res);
    if (drc < 0) {
        step_failed(req, "groundedness detection", drc, "The text could not be analyzed.");
        goto out;
    }
    int rc = custos_buf_appendf(&b, "{\"ungroundedDetected\":%s,\"ungroundedPercentage\":%.4g,\"ungroundedDetails\":[",
                                res.detected ? "true" : "false", (double)res.percentage);
    for (size_t i = 0; !rc && i < res.n_spans; i++) {
        const custos_grounded_span_t *sp = &res.spans[i];
        rc = i ? custos_buf_append_lit(&b, ",{\"text\":") : custos_buf_append_lit(&b, "{\"text\":");
        rc = rc ? rc : custos_json_append_string(&b, in.text + sp->utf8_off, sp->utf8_len);
        rc = rc ? rc : custos_buf_append_lit(&b, ",");
        rc = rc ? rc : put_units(&b, "offset", sp->utf8_off, sp->utf16_off, sp->cp_off);
        rc = rc ? rc : custos_buf_append_lit(&b, ",");
        rc = rc ? rc : put_units(&b, "length", sp->utf8_len, sp->utf16_len, sp->cp_len);
        rc = rc ? rc : custos_buf_append_lit(&b, "}");
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    reply_built(req, &b, rc);
out:
    custos_grounded_result_dispose(&res);
    free(src);
    free(lens);
    custos_buf_dispose(&b);
}

/* ---------- blocklist writes ---------- */

typedef struct wctx {
    custos_worker_t *w;
    bool deferred;       /* large set: compiled by the background thread after the commit */
    bool unlocked;       /* g_write_lock released */
    const bool *created; /* blocklist.upsert: set by the store before the hook runs */
    bool desc_set;
    custos_blstore_t *st;
    const char *actor, *action, *target;
    custos_buf_t details;
    custos_blocklists_t *built;
    int64_t version; /* the store's blocklists counter this write commits */
    char err[320];
    bool compile_failed;
} wctx_t;

/* Runs inside the write transaction: compile what the store now holds (so a change that does not compile is not
 * stored), then record the act (so an act that cannot be recorded does not happen). */
static int commit_hook(void *ud)
{
    wctx_t *c = ud;
    c->err[0] = 0;
    if (c->created) {
        custos_buf_reset(&c->details);
        if (custos_buf_appendf(&c->details, "{\"created\":%s,\"description_set\":%s}", *c->created ? "true" : "false",
                               c->desc_set ? "true" : "false") != 0)
            return CUSTOS_ENOMEM;
    }
    size_t total = 0;
    int rc = custos_blstore_version(c->st, &c->version);
    rc = rc ? rc : custos_blstore_count_items(c->st, &total);
    c->deferred = rc == 0 && total > g_sync_max && g_bg.running;
    if (rc == 0 && !c->deferred)
        rc = custos_blstore_build(c->st, &c->built, c->err, sizeof(c->err));
    if (rc < 0) {
        c->compile_failed = strncmp(c->err, "blocklist", 9) == 0;
        return rc;
    }
    rc = custos_governance_event(c->actor, c->action, c->target,
                                 custos_buf_size(&c->details) ? custos_buf_peek(&c->details) : NULL);
    if (rc < 0) {
        CUSTOS_ERROR("contentsafety: %s not recorded in the governance log (%s); the change was rolled back", c->action,
                     custos_strerror(rc));
        custos_blocklists_unref(c->built);
        c->built = NULL;
    }
    return rc;
}

static int wctx_open(wctx_t *c, custos_worker_t *w, const custos_caller_t *caller, const char *action,
                     const char *target)
{
    memset(c, 0, sizeof(*c));
    c->w = w;
    c->actor = caller->principal;
    c->action = action;
    c->target = target;
    custos_buf_init(&c->details, CUSTOS_GOVLOG_MAX_DETAILS);
    pthread_mutex_lock(&g_write_lock);
    return custos_blstore_open(&w->cfg->storage, true, &c->st);
}

/* Publishes a successful change and releases everything. */
/* After the store write: on success makes the change live (publishes the set compiled inside the write, or wakes
 * the background compiler) before anything is answered, so a client that got the answer finds the change on every
 * worker. Releases the write lock. */
static void wctx_publish(wctx_t *c, int rc)
{
    if (c->unlocked)
        return;
    pthread_mutex_unlock(&g_write_lock);
    c->unlocked = true;
    if (rc == 0 && c->built) {
        publish_if_newer(c->w->gw, c->built, c->version, false, c->action);
        c->built = NULL;
    } else if (rc == 0 && c->deferred) {
        bg_schedule();
    }
}

static void wctx_close(wctx_t *c, int rc)
{
    wctx_publish(c, rc);
    custos_blocklists_unref(c->built);
    custos_blstore_close(c->st);
    custos_buf_dispose(&c->details);
}

/* Ends the store write c->action (rc: its outcome): makes a successful change live (wctx_publish) and returns true,
 * or answers the failure and returns false. */
static bool write_done(custos_http_req_t *req, wctx_t *c, int rc)
{
    wctx_publish(c, rc);
    if (rc == 0)
        return true;
    if (rc == CUSTOS_ENOTFOUND) {
        cs_error(req, 404, "ResourceNotFound", "The blocklist does not exist.");
    } else if (rc == CUSTOS_ETOOBIG) {
        bad_request(req, "A blocklist limit was reached (lists, items per list or items in all lists; see "
                         "docs/content-safety-api.md).");
    } else if (c->compile_failed) {
        bad_request(req, c->err); /* names the list and item id, never the item text */
    } else {
        step_failed(req, c->action, rc, "The blocklist change could not be stored.");
    }
    return false;
}

static int put_list(custos_buf_t *b, const custos_blstore_list_t *l)
{
    int rc = custos_api_put_member(b, "{\"blocklistName\":", l->name);
    rc = rc ? rc : custos_api_put_member(b, ",\"description\":", l->description);
    return rc ? rc : custos_buf_append_lit(b, "}");
}

static int one_list(void *ud, const custos_blstore_list_t *l)
{
    return put_list(ud, l);
}

static void list_upsert(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *name,
                        json_object *o)
{
    json_object *jd, *jn;
    const char *desc = NULL;
    size_t ncp = 0;
    int r = field(o, "description", json_type_string, &jd);
    int rn = field(o, "blocklistName", json_type_string, &jn);
    if (r < 0 || rn < 0 || (jn && strcmp(json_object_get_string(jn), name) != 0)) {
        bad_request(req, "Expected {\"description\"?: string} (blocklistName, if given, must match the path).");
        return;
    }
    if (jd) {
        desc = json_object_get_string(jd);
        if (!text_ok(jd, true, CUSTOS_BLOCKLIST_MAX_DESC_CHARS, &ncp)) {
            bad_request(req, "'description' must be valid UTF-8 of at most 1024 characters.");
            return;
        }
    } else if (json_object_object_get_ex(o, "description", NULL)) {
        desc = ""; /* merge-patch null: remove */
    }
    wctx_t c;
    bool created = false;
    int rc = wctx_open(&c, w, caller, "blocklist.upsert", name);
    if (rc == 0) {
        c.created = &created; /* the hook records whether the list was created (metadata only) */
        c.desc_set = desc != NULL;
        rc = custos_blstore_list_upsert(c.st, name, desc, now_s(), &created, commit_hook, &c);
    }
    if (write_done(req, &c, rc)) {
        custos_buf_t b;
        custos_buf_init(&b, 0);
        if (custos_blstore_list_get(c.st, name, one_list, &b) == 0)
            reply(req, created ? 201 : 200, &b);
        else
            internal(req, "The blocklist could not be read back.");
        custos_buf_dispose(&b);
    }
    wctx_close(&c, rc);
}

static void list_delete(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *name)
{
    wctx_t c;
    int rc = wctx_open(&c, w, caller, "blocklist.delete", name);
    if (rc == 0)
        rc = custos_blstore_list_delete(c.st, name, commit_hook, &c);
    if (write_done(req, &c, rc))
        reply(req, 204, NULL);
    wctx_close(&c, rc);
}

static int put_item(custos_buf_t *b, const custos_blstore_item_t *it)
{
    int rc = custos_api_put_member(b, "{\"blocklistItemId\":", it->id);
    rc = rc ? rc : custos_api_put_member(b, ",\"description\":", it->description ? it->description : "");
    rc = rc ? rc : custos_api_put_member(b, ",\"text\":", it->text);
    rc = rc ? rc : custos_buf_appendf(b, ",\"isRegex\":%s", (it->flags & CUSTOS_BLOCKLIST_REGEX) ? "true" : "false");
    if (!rc && !(it->flags & CUSTOS_BLOCKLIST_REGEX))
        rc = custos_buf_appendf(b, ",\"wholeWord\":%s,\"normalize\":%s",
                                (it->flags & CUSTOS_BLOCKLIST_WHOLE_WORD) ? "true" : "false",
                                (it->flags & CUSTOS_BLOCKLIST_NORMALIZE) ? "true" : "false");
    return rc ? rc : custos_buf_append_lit(b, "}");
}

int custos_cs_parse_items(json_object *o, custos_blstore_item_t items[CUSTOS_CS_MAX_ITEMS_PER_CALL], size_t *count,
                          char *msg, size_t msglen)
{
    json_object *ji;
    *count = 0;
    if (!o || !json_object_is_type(o, json_type_object) || field(o, "blocklistItems", json_type_array, &ji) != 1 ||
        json_object_array_length(ji) == 0 || json_object_array_length(ji) > CUSTOS_CS_MAX_ITEMS_PER_CALL) {
        snprintf(msg, msglen,
                 "Expected {\"blocklistItems\": [1 to 100 items of {\"text\": string, \"description\"?: "
                 "string, \"isRegex\"?: boolean}]}.");
        return CUSTOS_EINVAL;
    }
    size_t n = json_object_array_length(ji);
    for (size_t i = 0; i < n; i++) {
        json_object *x = json_object_array_get_idx(ji, i), *jt, *jd, *jr, *jw, *jn;
        memset(&items[i], 0, sizeof(items[i]));
        if (!x || !json_object_is_type(x, json_type_object) || field(x, "text", json_type_string, &jt) != 1 ||
            field(x, "description", json_type_string, &jd) < 0 || field(x, "isRegex", json_type_boolean, &jr) < 0 ||
            field(x, "wholeWord", json_type_boolean, &jw) < 0 || field(x, "normalize", json_type_boolean, &jn) < 0) {
            snprintf(msg, msglen,
                     "blocklistItems[%zu]: expected {\"text\": string, \"description\"?: string, \"isRegex\"?: "
                     "boolean, \"wholeWord\"?: boolean, \"normalize\"?: boolean}.",
                     i);
            return CUSTOS_EINVAL;
        }
        unsigned flags = 0;
        if (jr && json_object_get_boolean(jr))
            flags = CUSTOS_BLOCKLIST_REGEX;
        else
            flags = (!jw || json_object_get_boolean(jw) ? CUSTOS_BLOCKLIST_WHOLE_WORD : 0) |
                    (!jn || json_object_get_boolean(jn) ? CUSTOS_BLOCKLIST_NORMALIZE : 0);
        size_t ncp = 0;
        char why[256];
        if (custos_blocklist_item_check(json_object_get_string(jt), (size_t)json_object_get_string_len(jt), flags, why,
                                        sizeof(why)) < 0) {
            snprintf(msg, msglen, "blocklistItems[%zu]: %s.", i, why);
            return CUSTOS_EINVAL;
        }
        if (jd && !text_ok(jd, true, CUSTOS_BLOCKLIST_MAX_DESC_CHARS, &ncp)) {
            snprintf(msg, msglen,
                     "blocklistItems[%zu]: the description must be valid UTF-8 of at most 1024 characters.", i);
            return CUSTOS_EINVAL;
        }
        items[i].text = json_object_get_string(jt);
        items[i].description = jd ? json_object_get_string(jd) : "";
        items[i].flags = flags;
    }
    *count = n;
    return 0;
}

static void items_add(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *name,
                      json_object *o)
{
    custos_blstore_item_t items[CUSTOS_CS_MAX_ITEMS_PER_CALL];
    size_t n = 0;
    char msg[400];
    if (custos_cs_parse_items(o, items, &n, msg, sizeof(msg)) < 0) {
        bad_request(req, msg);
        return;
    }
    wctx_t c;
    int rc = wctx_open(&c, w, caller, "blocklist.items_upsert", name);
    if (rc == 0) {
        /* ids are assigned inside the write; the governance record carries the count (ids are in the answer) */
        custos_buf_appendf(&c.details, "{\"items\":%zu}", n);
        rc = custos_blstore_items_upsert(c.st, name, items, n, now_s(), commit_hook, &c);
    }
    if (write_done(req, &c, rc)) {
        custos_buf_t b;
        custos_buf_init(&b, 0);
        int brc = custos_buf_append_lit(&b, "{\"blocklistItems\":[");
        for (size_t i = 0; !brc && i < n; i++) {
            brc = i ? custos_buf_append_lit(&b, ",") : 0;
            brc = brc ? brc : put_item(&b, &items[i]);
        }
        brc = brc ? brc : custos_buf_append_lit(&b, "]}");
        reply_built(req, &b, brc);
        custos_buf_dispose(&b);
    }
    wctx_close(&c, rc);
}

static void items_remove(custos_worker_t *w, custos_http_req_t *req, const custos_caller_t *caller, const char *name,
                         json_object *o)
{
    json_object *ji;
    const char *ids[CUSTOS_CS_MAX_ITEMS_PER_CALL];
    size_t n = 0;
    if (field(o, "blocklistItemIds", json_type_array, &ji) != 1 || json_object_array_length(ji) == 0 ||
        json_object_array_length(ji) > CUSTOS_CS_MAX_ITEMS_PER_CALL) {
        bad_request(req, "Expected {\"blocklistItemIds\": [1 to 100 item ids]}.");
        return;
    }
    n = json_object_array_length(ji);
    for (size_t i = 0; i < n; i++) {
        json_object *x = json_object_array_get_idx(ji, i);
        if (!x || !json_object_is_type(x, json_type_string) || json_object_get_string_len(x) == 0 ||
            json_object_get_string_len(x) > 64) {
            bad_request(req, "Each blocklistItemId must be a string of 1 to 64 characters.");
            return;
        }
        ids[i] = json_object_get_string(x);
    }
    wctx_t c;
    int rc = wctx_open(&c, w, caller, "blocklist.items_remove", name);
    if (rc == 0) {
        int drc = custos_buf_appendf(&c.details, "{\"items\":%zu,\"ids\":[", n);
        for (size_t i = 0; !drc && i < n && i < 50; i++) {
            drc = i ? custos_buf_append_lit(&c.details, ",") : 0;
            drc = drc ? drc : custos_api_put_str(&c.details, ids[i]);
        }
        drc = drc ? drc : custos_buf_appendf(&c.details, "],\"ids_truncated\":%s}", n > 50 ? "true" : "false");
        if (drc != 0) {
            custos_buf_reset(&c.details);
            custos_buf_appendf(&c.details, "{\"items\":%zu}", n);
        }
        rc = custos_blstore_items_remove(c.st, name, ids, n, commit_hook, &c);
    }
    if (write_done(req, &c, rc))
        reply(req, 204, NULL);
    wctx_close(&c, rc);
}

/* ---------- blocklist reads ---------- */

typedef struct list_acc {
    custos_buf_t *b;
    size_t n;
} list_acc_t;

static int acc_list(void *ud, const custos_blstore_list_t *l)
{
    list_acc_t *a = ud;
    int rc = a->n++ ? custos_buf_append_lit(a->b, ",") : 0;
    return rc ? rc : put_list(a->b, l);
}

static int acc_item(void *ud, const custos_blstore_item_t *it)
{
    list_acc_t *a = ud;
    int rc = a->n++ ? custos_buf_append_lit(a->b, ",") : 0;
    return rc ? rc : put_item(a->b, it);
}

static int one_item(void *ud, const custos_blstore_item_t *it)
{
    return put_item(ud, it);
}

/* Answers a read of the store built in b: 200, 404 ResourceNotFound (rc CUSTOS_ENOTFOUND: not_found) or 500
 * (failed). */
static void reply_read(custos_http_req_t *req, int rc, custos_buf_t *b, const char *not_found, const char *failed)
{
    if (rc == CUSTOS_ENOTFOUND)
        cs_error(req, 404, "ResourceNotFound", not_found);
    else if (rc != 0)
        internal(req, failed);
    else
        reply(req, 200, b);
}

static void lists_get(custos_worker_t *w, custos_http_req_t *req)
{
    custos_blstore_t *st = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    list_acc_t a = {&b, 0};
    int rc = custos_buf_append_lit(&b, "{\"value\":[");
    int orc = custos_blstore_open(&w->cfg->storage, false, &st);
    if (rc == 0 && orc == 0)
        rc = custos_blstore_lists(st, acc_list, &a);
    else if (orc != CUSTOS_ENOTFOUND)
        rc = orc;
    rc = rc ? rc : custos_buf_append_lit(&b, "]}");
    if (rc != 0)
        step_failed(req, "listing blocklists", rc, "The blocklists could not be listed.");
    else
        reply(req, 200, &b);
    custos_buf_dispose(&b);
    custos_blstore_close(st);
}

static void list_get(custos_worker_t *w, custos_http_req_t *req, const char *name)
{
    custos_blstore_t *st = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_blstore_open(&w->cfg->storage, false, &st);
    if (rc == 0)
        rc = custos_blstore_list_get(st, name, one_list, &b);
    reply_read(req, rc, &b, "The blocklist does not exist.", "The blocklist could not be read.");
    custos_buf_dispose(&b);
    custos_blstore_close(st);
}

/* Non-negative integer query parameter: 1 present, 0 absent, -1 malformed. */
static int query_uint(custos_http_req_t *req, const char *name, size_t max, size_t *out)
{
    const char *v = custos_http_req_query(req, name);
    if (!v)
        return 0;
    if (!*v || strlen(v) > 9)
        return -1;
    size_t n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (size_t)(*p - '0');
    }
    if (n > max)
        return -1;
    *out = n;
    return 1;
}

static void items_get(custos_worker_t *w, custos_http_req_t *req, const char *name)
{
    size_t top = 0, skip = 0, page = 1000;
    bool has_top = false;
    int a = query_uint(req, "top", 1000000, &top), s = query_uint(req, "skip", 1000000, &skip),
        p = query_uint(req, "maxpagesize", 1000, &page);
    if (a < 0 || s < 0 || p < 0 || page == 0) {
        cs_error(req, 400, "InvalidRequest", "top, skip (0..1000000) and maxpagesize (1..1000) must be integers.");
        return;
    }
    has_top = a == 1;
    size_t want = page;
    if (has_top && top < want)
        want = top;
    custos_blstore_t *st = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    list_acc_t acc = {&b, 0};
    int rc = custos_blstore_open(&w->cfg->storage, false, &st);
    rc = rc ? rc : custos_buf_append_lit(&b, "{\"value\":[");
    /* one extra row tells whether there is a next page */
    if (rc == 0 && want > 0)
        rc = custos_blstore_items(st, name, skip, want + 1, acc_item, &acc);
    bool more = acc.n > want;
    if (more) {
        /* drop the extra item: rebuild the page (rare path, at most 1000 items) */
        custos_buf_reset(&b);
        acc.n = 0;
        rc = custos_buf_append_lit(&b, "{\"value\":[");
        rc = rc ? rc : custos_blstore_items(st, name, skip, want, acc_item, &acc);
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "]");
    if (rc == 0 && more && (!has_top || top > want)) {
        const char *host = custos_http_req_header(req, "host", NULL);
        const char *v = custos_http_req_query(req, "api-version");
        /* the Host header and api-version are client-controlled: the URL is JSON-escaped as a whole */
        char url[1024];
        int ul = snprintf(url, sizeof(url),
                          "%s://%s" PREFIX "/text/blocklists/%s/blocklistItems?api-version=%s&skip=%zu&maxpagesize=%zu",
                          req->tls ? "https" : "http", host ? host : "localhost", name, v ? v : "2024-09-01",
                          skip + want, page);
        if (ul > 0 && (size_t)ul < sizeof(url) && has_top)
            ul += snprintf(url + ul, sizeof(url) - (size_t)ul, "&top=%zu", top - want);
        if (ul <= 0 || (size_t)ul >= sizeof(url))
            rc = CUSTOS_ETOOBIG;
        rc = rc ? rc : custos_buf_append_lit(&b, ",\"nextLink\":");
        rc = rc ? rc : custos_json_append_string(&b, url, (size_t)ul);
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "}");
    reply_read(req, rc, &b, "The blocklist does not exist.", "The blocklist items could not be listed.");
    custos_buf_dispose(&b);
    custos_blstore_close(st);
}

static void item_get(custos_worker_t *w, custos_http_req_t *req, const char *name, const char *id)
{
    custos_blstore_t *st = NULL;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_blstore_open(&w->cfg->storage, false, &st);
    if (rc == 0)
        rc = custos_blstore_item_get(st, name, id, one_item, &b);
    reply_read(req, rc, &b, "The blocklist or the blocklist item does not exist.",
               "The blocklist item could not be read.");
    custos_buf_dispose(&b);
    custos_blstore_close(st);
}

/* ---------- routing ---------- */

typedef enum {
    R_NONE,
    R_ANALYZE,
    R_SHIELD,
    R_GROUNDED,
    R_LISTS,
    R_LIST,
    R_ADD,
    R_REMOVE,
    R_ITEMS,
    R_ITEM,
} route_t;

/* Percent-decodes path into dst (cap bytes). Returns false for a malformed escape or an overlong path. */
static bool pct_decode(const char *p, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int v = 0;
            for (int k = 1; k <= 2; k++) {
                char h = p[i + k];
                v = v * 16 + (h >= '0' && h <= '9'   ? h - '0'
                              : h >= 'a' && h <= 'f' ? h - 'a' + 10
                              : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                     : -1000);
            }
            if (v < 1)
                return false;
            c = (char)v;
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        dst[o++] = c;
    }
    dst[o] = 0;
    return true;
}

/* Splits a decoded path into a route, the blocklist name and the item id. */
static route_t route(const char *p, char *name, char *id, bool *bad_name)
{
    *bad_name = false;
    if (strcmp(p, PREFIX "/text:analyze") == 0)
        return R_ANALYZE;
    if (strcmp(p, PREFIX "/text:shieldPrompt") == 0)
        return R_SHIELD;
    if (strcmp(p, PREFIX "/text:detectGroundedness") == 0)
        return R_GROUNDED;
    static const char L[] = PREFIX "/text/blocklists";
    size_t ll = sizeof(L) - 1;
    if (strncmp(p, L, ll) != 0)
        return R_NONE;
    p += ll;
    if (*p == 0)
        return R_LISTS;
    if (*p != '/')
        return R_NONE;
    p++;
    size_t nl = strcspn(p, ":/");
    if (nl > CUSTOS_BLOCKLIST_MAX_NAME || !valid_list_name(p, nl)) {
        *bad_name = true;
        return R_NONE;
    }
    memcpy(name, p, nl);
    name[nl] = 0;
    p += nl;
    if (*p == 0)
        return R_LIST;
    if (strcmp(p, ":addOrUpdateBlocklistItems") == 0)
        return R_ADD;
    if (strcmp(p, ":removeBlocklistItems") == 0)
        return R_REMOVE;
    if (strcmp(p, "/blocklistItems") == 0)
        return R_ITEMS;
    if (strncmp(p, "/blocklistItems/", 16) == 0) {
        p += 16;
        size_t il = strlen(p);
        if (il == 0 || il > 64 || strchr(p, '/'))
            return R_NONE;
        memcpy(id, p, il + 1);
        return R_ITEM;
    }
    return R_NONE;
}

static void not_allowed(custos_http_req_t *req, const char *allow)
{
    custos_http_header_t h = {"allow", 5, allow, strlen(allow)};
    cs_error_h(req, 405, "MethodNotAllowed", "Method not allowed for this route.", &h);
}

static void handle(custos_worker_t *w, custos_http_req_t *req, const char **label);

int custos_contentsafety_audit_op(const char *label)
{
    if (strcmp(label, "contentsafety_analyze") == 0)
        return CUSTOS_AUDIT_OP_CS_ANALYZE_TEXT;
    if (strcmp(label, "contentsafety_shield_prompt") == 0)
        return CUSTOS_AUDIT_OP_CS_SHIELD_PROMPT;
    if (strcmp(label, "contentsafety_detect_groundedness") == 0)
        return CUSTOS_AUDIT_OP_CS_DETECT_GROUNDEDNESS;
    if (strncmp(label, "contentsafety_blocklists", 24) == 0)
        return CUSTOS_AUDIT_OP_CS_BLOCKLISTS;
    return CUSTOS_AUDIT_OP_OTHER;
}

/* Metrics: custos_requests_total {route, "", status} and custos_request_duration_seconds {route}, route one of
 * contentsafety_analyze, contentsafety_shield_prompt, contentsafety_detect_groundedness,
 * contentsafety_blocklists_read, contentsafety_blocklists_write,
 * contentsafety (anything else). */
void custos_contentsafety_handle(custos_worker_t *w, custos_http_req_t *req)
{
    const char *label = "contentsafety";
    t_status = 0;
    handle(w, req, &label);
    if (!t_status)
        return; /* answered later (asynchronously), which records it then */
    custos_gateway_audit(w, req, custos_contentsafety_audit_op(label), t_status);
    custos_gateway_metrics_t *m = &w->gw->m;
    if (!m->requests)
        return;
    char st[4] = {(char)('0' + t_status / 100 % 10), (char)('0' + t_status / 10 % 10), (char)('0' + t_status % 10), 0};
    const char *lv[3] = {label, "", st};
    custos_metric_series_t *s = custos_metrics_series(m->requests, lv);
    if (s)
        custos_metrics_inc(s, w->idx, 1);
    const char *lr[1] = {label};
    if (m->duration && (s = custos_metrics_series(m->duration, lr)) != NULL)
        custos_metrics_observe(s, w->idx, (double)(custos_now_ns() - req->start_ns) / 1e9);
}

static void handle(custos_worker_t *w, custos_http_req_t *req, const char **label)
{
    char path[512] = {0}, name[CUSTOS_BLOCKLIST_MAX_NAME + 1] = "", id[72] = "";
    bool bad_name = false;
    route_t r = R_NONE;
    if (pct_decode(req->path, req->path_len, path, sizeof(path)))
        r = route(path, name, id, &bad_name);
    if (r == R_NONE) {
        if (bad_name)
            cs_error(req, 400, "InvalidResourceName",
                     "The blocklist name must be 1 to 64 characters of 0-9 A-Z a-z . _ ~ -.");
        else
            cs_error(req, 404, "ResourceNotFound", "Resource not found");
        return;
    }
    bool write = r == R_ADD || r == R_REMOVE ||
                 (r == R_LIST && (strcmp(req->method, "PATCH") == 0 || strcmp(req->method, "DELETE") == 0));
    *label = r == R_ANALYZE    ? "contentsafety_analyze"
             : r == R_SHIELD   ? "contentsafety_shield_prompt"
             : r == R_GROUNDED ? "contentsafety_detect_groundedness"
             : write           ? "contentsafety_blocklists_write"
                               : "contentsafety_blocklists_read";
    const char *m = req->method;
    bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, patch = strcmp(m, "PATCH") == 0,
         del = strcmp(m, "DELETE") == 0;
    const char *allow = NULL;
    switch (r) {
    case R_ANALYZE:
    case R_SHIELD:
    case R_GROUNDED:
    case R_ADD:
    case R_REMOVE:
        allow = post ? NULL : "POST";
        break;
    case R_LISTS:
    case R_ITEMS:
    case R_ITEM:
        allow = get ? NULL : "GET";
        break;
    case R_LIST:
        allow = get || patch || del ? NULL : "GET, PATCH, DELETE";
        break;
    case R_NONE:
        break;
    }
    if (allow) {
        not_allowed(req, allow);
        return;
    }
    custos_caller_t caller;
    custos_authn_error_t e;
    if (custos_authn_authenticate(w, req, true, &caller, &e) < 0) {
        cs_error(req, e.status, e.code, e.message);
        return;
    }
    custos_gateway_note_caller(w, &caller); /* for the request record */
    if (authorize(w, req, &caller, write ? NEED_WRITE : NEED_READ) < 0)
        return;
    const char *v = custos_http_req_query(req, "api-version");
    bool vok = false;
    for (const char *const *a = API_VERSIONS; v && *a && !vok; a++)
        vok = strcmp(v, *a) == 0;
    if (!vok) {
        cs_error(req, 400, "InvalidRequest",
                 v ? "Unsupported api-version: use 2024-09-01 or 2023-10-01."
                   : "The api-version query parameter is required (for example ?api-version=2024-09-01).");
        return;
    }
    if (r == R_GROUNDED && strcmp(v, "2024-09-15-preview") != 0 && strcmp(v, "2024-02-15-preview") != 0) {
        cs_error(req, 400, "InvalidRequest", "text:detectGroundedness needs api-version=2024-09-15-preview.");
        return;
    }
    json_object *o = NULL; /* the body of every POST and PATCH route, parsed once here; handlers borrow it */
    if ((post || patch) && (o = body_object(w, req)) == NULL)
        return;
    switch (r) {
    case R_ANALYZE:
        analyze(w, req, o);
        break;
    case R_SHIELD:
        shield_prompt(w, req, o);
        break;
    case R_GROUNDED:
        detect_groundedness(w, req, &caller, o);
        break;
    case R_LISTS:
        lists_get(w, req);
        break;
    case R_LIST:
        if (get)
            list_get(w, req, name);
        else if (patch)
            list_upsert(w, req, &caller, name, o);
        else
            list_delete(w, req, &caller, name);
        break;
    case R_ADD:
        items_add(w, req, &caller, name, o);
        break;
    case R_REMOVE:
        items_remove(w, req, &caller, name, o);
        break;
    case R_ITEMS:
        items_get(w, req, name);
        break;
    case R_ITEM:
        item_get(w, req, name, id);
        break;
    case R_NONE:
        break;
    }
    if (o)
        json_object_put(o);
}

/* ---------- runtime ---------- */

int custos_contentsafety_init(custos_gateway_t *gw, char *err, size_t errlen)
{
    int rc = custos_cs_reasoning_init(NULL, err, errlen); /* the judge's prompt (groundedness reasoning) */
    if (rc < 0)
        return rc;
    rc = custos_blocklist_hub_new(&gw->blocklists);
    if (rc < 0) {
        snprintf(err, errlen, "blocklists: %s", custos_strerror(rc));
        return rc;
    }
    custos_blocklists_t *set = NULL;
    char why[320];
    int64_t ver = 0;
    rc = custos_blstore_build_config(&gw->cfg->storage, &set, &ver, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "blocklists: %s", why);
        return rc;
    }
    if (custos_blocklists_count(set))
        CUSTOS_INFO("blocklists: %zu lists, %zu items, %zu bytes compiled", custos_blocklists_count(set),
                    custos_blocklists_items(set), custos_blocklists_bytes(set));
    custos_blocklist_hub_publish(gw->blocklists, set);
    pthread_mutex_lock(&g_pub_lock);
    g_published = ver;
    g_failed = -1;
    pthread_mutex_unlock(&g_pub_lock);
    g_bg.gw = gw;
    g_bg.stop = g_bg.dirty = false;
    const char *sm = getenv("CUSTOS_BLOCKLIST_SYNC_MAX");
    if (sm && *sm) {
        char *end = NULL;
        unsigned long long v = strtoull(sm, &end, 10);
        if (end && !*end)
            g_sync_max = (size_t)v;
    }
    if (pthread_create(&g_bg.th, NULL, bg_main, NULL) == 0)
        g_bg.running = true;
    else
        CUSTOS_WARN("blocklists: no background compiler thread; every change compiles on the request");
    return 0;
}

int custos_contentsafety_reload(custos_gateway_t *gw)
{
    if (!gw->blocklists)
        return CUSTOS_EINVAL;
    if (!g_bg.running)
        return rebuild(gw, true, "reload");
    /* compiled off the signal thread; a reload republishes what the store holds even if its counter did not move (a
     * change written by another program) */
    pthread_mutex_lock(&g_bg.mu);
    g_bg.same_ok = true;
    pthread_mutex_unlock(&g_bg.mu);
    bg_schedule();
    return 0;
}

int custos_contentsafety_store_poll(custos_gateway_t *gw, custos_store_t *st)
{
    if (!gw->blocklists)
        return 0;
    int64_t v = -1;
    int rc = custos_blstore_store_version(st, &v);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&g_pub_lock);
    bool behind = v > g_published && v != g_failed;
    pthread_mutex_unlock(&g_pub_lock);
    if (!behind)
        return 0;
    if (g_bg.running)
        bg_schedule(); /* the compile runs on the background thread, never on the request path */
    else
        (void)rebuild(gw, false, "store changed");
    return 0;
}

void custos_contentsafety_dispose(custos_gateway_t *gw)
{
    if (g_bg.running) {
        pthread_mutex_lock(&g_bg.mu);
        g_bg.stop = true;
        pthread_cond_signal(&g_bg.cv);
        pthread_mutex_unlock(&g_bg.mu);
        pthread_join(g_bg.th, NULL);
        g_bg.running = false;
    }
    pthread_mutex_lock(&g_pub_lock);
    custos_blocklist_hub_free(gw->blocklists);
    custos_cs_reasoning_dispose();
    gw->blocklists = NULL;
    pthread_mutex_unlock(&g_pub_lock);
}
