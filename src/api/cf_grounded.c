/* SPDX-License-Identifier: Apache-2.0
 * Groundedness on the chat inference path (cf_grounded.h, docs/content-filtering.md "Groundedness"). */
#include "api/cf_grounded.h"

#include "api/contentfilter.h"
#include "safety/grounded.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DOC_SPANS 64 /* <documents> spans per message (as contentfilter.c) */
_Static_assert(CUSTOS_CF_GROUNDED_MAX_HELD == CUSTOS_GROUNDED_MAX_TEXT, "held text is what the detector takes");

struct custos_cf_grounded {
    const custos_rai_policy_config_t *pol;
    const custos_grounded_model_t *model; /* NULL: no grounded.model loaded (the check cannot run) */
    custos_buf_t src;                     /* the sources, back to back */
    size_t off[CUSTOS_GROUNDED_MAX_SOURCES + 1];
    size_t n_src;
    bool truncated;                            /* sources over the caps were dropped */
    custos_buf_t *text[CUSTOS_CF_MAX_CHOICES]; /* streaming: each choice's text so far */
    bool overflow[CUSTOS_CF_MAX_CHOICES];      /* ... longer than the detector takes (or out of memory) */
};

static void add_source(custos_cf_grounded_t *g, const char *s, size_t n)
{
    while (n && (s[0] == ' ' || s[0] == '\n' || s[0] == '\t' || s[0] == '\r')) {
        s++;
        n--;
    }
    if (n == 0)
        return;
    if (g->n_src >= CUSTOS_GROUNDED_MAX_SOURCES || custos_buf_size(&g->src) + n > CUSTOS_GROUNDED_MAX_SOURCES_TOTAL ||
        custos_buf_append(&g->src, s, n) < 0) {
        g->truncated = true;
        return;
    }
    g->off[++g->n_src] = custos_buf_size(&g->src);
}

/* Calls add for each text of a message's content (a string, or the text parts of an array). */
static void content_texts(custos_cf_grounded_t *g, json_object *content, bool whole)
{
    json_object *parts[1] = {content};
    size_t np = 1;
    bool arr = content && json_object_is_type(content, json_type_array);
    if (arr)
        np = json_object_array_length(content);
    for (size_t i = 0; i < np; i++) {
        json_object *t = arr ? json_object_array_get_idx(content, i) : parts[0];
        if (arr && t && json_object_is_type(t, json_type_object) && !json_object_object_get_ex(t, "text", &t))
            continue;
        if (!t || !json_object_is_type(t, json_type_string))
            continue;
        const char *s = json_object_get_string(t);
        size_t n = (size_t)json_object_get_string_len(t);
        if (whole) {
            add_source(g, s, n);
            continue;
        }
        size_t spans[MAX_DOC_SPANS][2];
        size_t nd = custos_cf_doc_spans(s, n, spans, MAX_DOC_SPANS);
        for (size_t k = 0; k < nd; k++)
            add_source(g, s + spans[k][0], spans[k][1] - spans[k][0]);
    }
}

int custos_cf_grounded_new(const custos_rai_policy_config_t *pol, const custos_safety_t *safety, bool chat,
                           json_object *body, custos_cf_grounded_t **out)
{
    *out = NULL;
    if (!chat || !pol->groundedness.enabled)
        return 0;
    custos_cf_grounded_t *g = calloc(1, sizeof(*g));
    if (!g)
        return CUSTOS_ENOMEM;
    g->pol = pol;
    g->model = safety ? custos_safety_grounded(safety) : NULL;
    custos_buf_init(&g->src, CUSTOS_GROUNDED_MAX_SOURCES_TOTAL);
    json_object *msgs = NULL;
    if (json_object_object_get_ex(body, "messages", &msgs) && json_object_is_type(msgs, json_type_array)) {
        size_t n = json_object_array_length(msgs);
        for (size_t i = 0; i < n; i++) {
            const char *r;
            json_object *content;
            if (custos_cf_message_at(msgs, i, &r, &content))
                content_texts(g, content, custos_cf_role_is_source(r));
        }
    }
    *out = g;
    return 0;
}

void custos_cf_grounded_free(custos_cf_grounded_t *g)
{
    if (!g)
        return;
    for (int i = 0; i < CUSTOS_CF_MAX_CHOICES; i++)
        if (g->text[i]) {
            custos_buf_dispose(g->text[i]);
            free(g->text[i]);
        }
    custos_buf_dispose(&g->src);
    free(g);
}

void custos_cf_grounded_add_context(custos_cf_grounded_t *g, json_object *context)
{
    json_object *cits = NULL;
    if (!g || !context || !json_object_is_type(context, json_type_object) ||
        !json_object_object_get_ex(context, "citations", &cits) || !json_object_is_type(cits, json_type_array))
        return;
    size_t n = json_object_array_length(cits);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cits, i), *t = NULL;
        if (c && json_object_is_type(c, json_type_object) && json_object_object_get_ex(c, "content", &t) &&
            json_object_is_type(t, json_type_string))
            add_source(g, json_object_get_string(t), (size_t)json_object_get_string_len(t));
    }
}

bool custos_cf_grounded_active(const custos_cf_grounded_t *g)
{
    return g && g->n_src > 0;
}

bool custos_cf_grounded_holds(const custos_cf_grounded_t *g, bool async_mode)
{
    return custos_cf_grounded_active(g) && !async_mode && g->pol->groundedness.action == CUSTOS_RAI_BLOCK;
}

void custos_cf_grounded_stream_text(custos_cf_grounded_t *g, int idx, const char *s, size_t n)
{
    if (!g || idx < 0 || idx >= CUSTOS_CF_MAX_CHOICES || n == 0 || g->overflow[idx])
        return;
    if (!g->text[idx]) {
        g->text[idx] = malloc(sizeof(custos_buf_t));
        if (!g->text[idx]) {
            g->overflow[idx] = true;
            return;
        }
        custos_buf_init(g->text[idx], CUSTOS_GROUNDED_MAX_TEXT);
    }
    /* past the cap the check cannot run (custos_cf_grounded_check_stream reports it) */
    if (custos_buf_append(g->text[idx], s, n) < 0)
        g->overflow[idx] = true;
}

int custos_cf_grounded_check_stream(custos_cf_grounded_t *g, int idx, json_object *annot, bool *block, bool *detected)
{
    *block = *detected = false;
    if (!custos_cf_grounded_active(g) || idx < 0 || idx >= CUSTOS_CF_MAX_CHOICES)
        return 0;
    if (g->overflow[idx]) {
        *block = g->pol->groundedness.action == CUSTOS_RAI_BLOCK;
        return CUSTOS_ETOOBIG;
    }
    const custos_buf_t *b = g->text[idx];
    return custos_cf_grounded_check(g, b ? custos_buf_peek(b) : "", b ? custos_buf_size(b) : 0, annot, block, detected);
}

int custos_cf_grounded_check(custos_cf_grounded_t *g, const char *text, size_t len, json_object *annot, bool *block,
                             bool *detected)
{
    *block = *detected = false;
    if (!custos_cf_grounded_active(g))
        return 0;
    bool blocking = g->pol->groundedness.action == CUSTOS_RAI_BLOCK;
    if (!g->model || len > CUSTOS_GROUNDED_MAX_TEXT) {
        *block = blocking;
        return g->model ? CUSTOS_ETOOBIG : CUSTOS_EUNAVAIL;
    }
    const char *srcs[CUSTOS_GROUNDED_MAX_SOURCES];
    size_t lens[CUSTOS_GROUNDED_MAX_SOURCES];
    const char *base = custos_buf_peek(&g->src);
    for (size_t i = 0; i < g->n_src; i++) {
        srcs[i] = base + g->off[i];
        lens[i] = g->off[i + 1] - g->off[i];
    }
    custos_grounded_input_t in = {.text = text,
                                  .text_len = len,
                                  .sources = srcs,
                                  .source_lens = lens,
                                  .n_sources = g->n_src,
                                  .domain =
                                      g->pol->groundedness.medical ? CUSTOS_GROUNDED_MEDICAL : CUSTOS_GROUNDED_GENERIC,
                                  .task = CUSTOS_GROUNDED_SUMMARIZATION};
    custos_grounded_result_t r;
    int rc = custos_grounded_detect(g->model, &in, &r);
    json_object *o = NULL, *det = NULL;
    if (rc < 0) {
        *block = blocking;
        goto out;
    }
    o = json_object_new_object();
    det = json_object_new_array();
    if (!o || !det) {
        rc = CUSTOS_ENOMEM;
        *block = blocking;
        goto out;
    }
    for (size_t i = 0; i < r.n_spans; i++) {
        const custos_grounded_span_t *sp = &r.spans[i];
        if (sp->score < g->pol->groundedness.threshold)
            continue;
        json_object *d = json_object_new_object();
        if (!d)
            continue;
        json_object_object_add(d, "completion_start_offset", json_object_new_int64((int64_t)sp->cp_off));
        json_object_object_add(d, "completion_end_offset", json_object_new_int64((int64_t)(sp->cp_off + sp->cp_len)));
        json_object_array_add(det, d);
    }
    *detected = json_object_array_length(det) > 0;
    *block = blocking && *detected;
    json_object_object_add(o, "filtered", json_object_new_boolean(*block));
    json_object_object_add(o, "detected", json_object_new_boolean(*detected));
    json_object_object_add(o, "details", det);
    det = NULL;
    json_object_object_add(annot, "ungrounded_material", o);
    o = NULL;
out:
    json_object_put(o);
    json_object_put(det);
    custos_grounded_result_dispose(&r);
    return rc;
}
