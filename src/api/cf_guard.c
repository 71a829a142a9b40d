/* SPDX-License-Identifier: Apache-2.0
 * The safety cascade on the inference path (cf_guard.h). */
#include "api/cf_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cfgd_q {
    struct custos_cfgd *owner;
    struct cfgd_batch *batch; /* deferred questions: their batch */
    unsigned mask;            /* harm categories asked (DEFER: for the later decision) */
    uint8_t thr[4];
    bool closed[4], local[4]; /* on_error: closed; the in-process decision */
    const custos_guard_config_t *guard;
    custos_guard_check_t check;
    int src;
    char *text;
    size_t len;
    uint64_t th; /* FNV-1a of the text: the apply pass checks it is answering the same text */
    bool known;
    custos_guard_verdict_t v;
    custos_guard_call_t *call;
} cfgd_q_t;

typedef struct cfgd_batch {
    struct custos_cfgd *owner;
    struct cfgd_batch *next;
    unsigned nq, pending;
    void (*done)(void *ud, const custos_cfgd_async_t *r);
    void *ud;
    cfgd_q_t q[];
} cfgd_batch_t;

struct custos_cfgd {
    custos_worker_t *w;
    cfgd_batch_t *batches; /* deferred questions in flight */
    const custos_rai_policy_config_t *pol;
    bool has[CUSTOS_RAI_NSRC];
    custos_cfgd_phase_t phase;
    unsigned next, nq, pending;
    cfgd_q_t q[CUSTOS_GUARD_MAX_PENDING];
    void (*done)(void *ud);
    void *ud;
};

custos_cfgd_t *custos_cfgd_new(custos_worker_t *w, const custos_rai_policy_config_t *pol)
{
    bool has[CUSTOS_RAI_NSRC] = {false, false};
    for (int s = 0; s < CUSTOS_RAI_NSRC; s++)
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
            has[s] |= pol->harm_guard[k][s].mode != CUSTOS_CASCADE_IN_PROCESS && pol->harm_guard[k][s].guard;
    for (int i = 0; i < 2; i++)
        has[CUSTOS_RAI_PROMPT] |= pol->shield_guard[i].mode != CUSTOS_CASCADE_IN_PROCESS && pol->shield_guard[i].guard;
    if (!has[0] && !has[1])
        return NULL;
    custos_cfgd_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL; /* the in-process rule applies (as in phase NONE) */
    g->w = w;
    g->pol = pol;
    memcpy(g->has, has, sizeof(has));
    return g;
}

static void forget(custos_cfgd_t *g)
{
    for (unsigned i = 0; i < g->nq; i++) {
        custos_guard_cancel(g->q[i].call);
        free(g->q[i].text);
    }
    memset(g->q, 0, sizeof(g->q));
    g->nq = g->pending = 0;
}

static void batch_free(cfgd_batch_t *b)
{
    for (unsigned i = 0; i < b->nq; i++) {
        custos_guard_cancel(b->q[i].call);
        free(b->q[i].text);
    }
    free(b);
}

void custos_cfgd_free(custos_cfgd_t *g)
{
    if (!g)
        return;
    forget(g);
    while (g->batches) {
        cfgd_batch_t *b = g->batches;
        g->batches = b->next;
        batch_free(b);
    }
    free(g);
}

bool custos_cfgd_has(const custos_cfgd_t *g, int src)
{
    return g && src >= 0 && src < CUSTOS_RAI_NSRC && g->has[src];
}

void custos_cfgd_begin(custos_cfgd_t *g, custos_cfgd_phase_t phase)
{
    if (!g)
        return;
    if (phase == CUSTOS_CFGD_COLLECT || phase == CUSTOS_CFGD_DEFER)
        forget(g);
    g->phase = phase;
    g->next = 0;
}

custos_cfgd_phase_t custos_cfgd_phase(const custos_cfgd_t *g)
{
    return g ? g->phase : CUSTOS_CFGD_NONE;
}

static uint64_t text_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The question at the current ordinal: recorded (collect) or its verdict (apply). NULL: no verdict to use (too many
 * questions, a pass that does not match, out of memory). */
static const custos_guard_verdict_t *question(custos_cfgd_t *g, const custos_guard_config_t *guard,
                                              custos_guard_check_t check, int src, const char *text, size_t len)
{
    unsigned k = g->next++;
    if (k >= CUSTOS_GUARD_MAX_PENDING)
        return NULL;
    cfgd_q_t *q = &g->q[k];
    if (g->phase == CUSTOS_CFGD_COLLECT || g->phase == CUSTOS_CFGD_DEFER) {
        if (k != g->nq)
            return NULL;
        size_t n = len < CUSTOS_GUARD_MAX_TEXT ? len : CUSTOS_GUARD_MAX_TEXT;
        q->text = malloc(n ? n : 1);
        if (!q->text)
            return NULL;
        memcpy(q->text, text, n);
        q->len = n;
        q->th = text_hash(text, len);
        q->owner = g;
        q->guard = guard;
        q->check = check;
        q->src = src;
        g->nq++;
        return NULL;
    }
    if (k >= g->nq || !q->known || q->guard != guard || q->check != check || q->src != src ||
        q->th != text_hash(text, len))
        return NULL;
    return &q->v;
}

static void note_verdict(custos_cfgd_note_t *note, const custos_guard_config_t *guard, const custos_guard_verdict_t *v)
{
    note->asked = true;
    note->guard = guard->name;
    if (!v || v->err) {
        note->err = true;
        return;
    }
    note->unsafe |= v->unsafe;
    note->other |= v->other;
}

void custos_cfgd_harm(custos_cfgd_t *g, int src, const char *text, size_t len, const float score[4], int sev[4],
                      custos_cfgd_note_t *note)
{
    if (!g || !g->has[src] || g->phase == CUSTOS_CFGD_NONE) /* phase NONE: the in-process rule */
        return;
    const custos_rai_policy_config_t *pol = g->pol;
    custos_guard_hub_t *hub = g->w->gw->guard;
    const custos_guard_config_t *asked[4];
    unsigned mask[4] = {0};
    size_t na = 0;
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
        const custos_rai_guard_t *rg = &pol->harm_guard[k][src];
        int th = pol->filters[k][src].threshold;
        if (!pol->filters[k][src].enabled)
            continue;
        custos_cascade_step_t st = custos_cascade_step(rg, score[k]);
        if (st == CUSTOS_CASCADE_STEP_LOCAL)
            continue;
        if (g->phase != CUSTOS_CFGD_COLLECT)
            custos_guard_note_step(hub, g->w->idx, pol->name, CUSTOS_GUARD_CHECK_HARM, st);
        if (st == CUSTOS_CASCADE_STEP_ALLOW && sev[k] >= th)
            sev[k] = th - 1;
        else if (st == CUSTOS_CASCADE_STEP_BLOCK && sev[k] < th)
            sev[k] = th;
        else if (st == CUSTOS_CASCADE_STEP_ASK) {
            size_t j = 0;
            while (j < na && asked[j] != rg->guard)
                j++;
            if (j == na)
                asked[na++] = rg->guard;
            mask[j] |= 1u << k;
        }
    }
    for (size_t j = 0; j < na; j++) {
        const custos_guard_verdict_t *v = question(g, asked[j], CUSTOS_GUARD_CHECK_HARM, src, text, len);
        if (g->phase == CUSTOS_CFGD_DEFER && g->nq && g->next == g->nq) { /* recorded: what the decision needs */
            cfgd_q_t *q = &g->q[g->nq - 1];
            q->mask = mask[j];
            for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
                q->thr[k] = pol->filters[k][src].threshold;
                q->closed[k] = pol->harm_guard[k][src].fail_closed;
                q->local[k] = sev[k] >= q->thr[k];
            }
        }
        if (g->phase != CUSTOS_CFGD_APPLY)
            continue;
        note_verdict(note, asked[j], v);
        bool disagree = false;
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
            if (!(mask[j] >> k & 1))
                continue;
            int th = pol->filters[k][src].threshold;
            bool local = sev[k] >= th, block;
            if (!v || v->err) {
                block = pol->harm_guard[k][src].fail_closed;
            } else {
                block = custos_cascade_guard_blocks(v, k, th);
                disagree |= block != local;
                if (v->severity[k] >= 0) {
                    sev[k] = (uint8_t)v->severity[k]; /* 0..7 here */
                    continue;
                }
            }
            if (block && sev[k] < th)
                sev[k] = th;
            else if (!block && sev[k] >= th)
                sev[k] = th - 1;
        }
        if (v && !v->err) {
            custos_guard_note_comparison(hub, g->w->idx, asked[j], CUSTOS_GUARD_CHECK_HARM, disagree);
            note->disagreed |= disagree;
        }
    }
}

bool custos_cfgd_shield(custos_cfgd_t *g, custos_guard_check_t check, const char *text, size_t len, float score,
                        bool detected, custos_cfgd_note_t *note)
{
    if (!g || !g->has[CUSTOS_RAI_PROMPT] || g->phase == CUSTOS_CFGD_NONE)
        return detected;
    const custos_rai_guard_t *rg = &g->pol->shield_guard[check == CUSTOS_GUARD_CHECK_JAILBREAK ? 0 : 1];
    custos_guard_hub_t *hub = g->w->gw->guard;
    custos_cascade_step_t st = custos_cascade_step(rg, score);
    if (st == CUSTOS_CASCADE_STEP_LOCAL)
        return detected;
    if (g->phase != CUSTOS_CFGD_COLLECT)
        custos_guard_note_step(hub, g->w->idx, g->pol->name, check, st);
    if (st == CUSTOS_CASCADE_STEP_ALLOW)
        return false;
    if (st == CUSTOS_CASCADE_STEP_BLOCK)
        return true;
    const custos_guard_verdict_t *v = question(g, rg->guard, check, CUSTOS_RAI_PROMPT, text, len);
    if (g->phase != CUSTOS_CFGD_APPLY)
        return detected;
    note_verdict(note, rg->guard, v);
    if (!v || v->err)
        return rg->fail_closed;
    custos_guard_note_comparison(hub, g->w->idx, rg->guard, check, v->attack != detected);
    note->disagreed |= v->attack != detected;
    return v->attack;
}

static void on_verdict(void *ud, const custos_guard_verdict_t *v)
{
    cfgd_q_t *q = ud;
    custos_cfgd_t *g = q->owner;
    q->call = NULL;
    q->v = *v;
    q->known = true;
    if (--g->pending == 0 && g->done)
        g->done(g->ud);
}

int custos_cfgd_start(custos_cfgd_t *g, void (*done)(void *ud), void *ud)
{
    if (!g)
        return 0;
    g->done = done;
    g->ud = ud;
    custos_worker_t *w = g->w;
    for (unsigned i = 0; i < g->nq; i++) {
        cfgd_q_t *q = &g->q[i];
        custos_guard_query_t gq = {q->guard, g->pol->name, q->check, q->src, q->text, q->len};
        int rc = custos_guard_ask(w->gw->guard, w->idx, w->loop, w->up, &gq, on_verdict, q, &q->call, &q->v);
        if (rc == 1)
            q->known = true;
        else
            g->pending++;
    }
    return g->pending ? 1 : 0;
}

static void batch_result(custos_cfgd_t *g, const cfgd_batch_t *b, custos_cfgd_async_t *r)
{
    memset(r, 0, sizeof(*r));
    for (unsigned i = 0; i < b->nq; i++) {
        const cfgd_q_t *q = &b->q[i];
        const custos_guard_verdict_t *v = q->known && !q->v.err ? &q->v : NULL;
        note_verdict(&r->note, q->guard, v);
        bool disagree = false;
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
            if (!(q->mask >> k & 1))
                continue;
            bool block = v ? custos_cascade_guard_blocks(v, k, q->thr[k]) : q->closed[k];
            r->asked |= 1u << k;
            r->threshold[k] = q->thr[k];
            r->harm_block[k] |= block;
            r->block |= block;
            disagree |= v && block != q->local[k];
        }
        if (v) {
            custos_guard_note_comparison(g->w->gw->guard, g->w->idx, q->guard, q->check, disagree);
            r->note.disagreed |= disagree;
        }
    }
}

static void on_batch_verdict(void *ud, const custos_guard_verdict_t *v)
{
    cfgd_q_t *q = ud;
    cfgd_batch_t *b = q->batch;
    q->call = NULL;
    q->v = *v;
    q->known = true;
    if (--b->pending)
        return;
    custos_cfgd_t *g = b->owner;
    for (cfgd_batch_t **pp = &g->batches; *pp; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    custos_cfgd_async_t r;
    batch_result(g, b, &r);
    void (*done)(void *, const custos_cfgd_async_t *) = b->done;
    void *dud = b->ud;
    batch_free(b);
    done(dud, &r);
}

int custos_cfgd_start_deferred(custos_cfgd_t *g, void (*done)(void *ud, const custos_cfgd_async_t *r), void *ud,
                               custos_cfgd_async_t *now)
{
    if (!g || !g->nq)
        return 0;
    cfgd_batch_t *b = calloc(1, sizeof(*b) + g->nq * sizeof(cfgd_q_t));
    if (!b) {
        forget(g);
        return 0; /* the in-process decision stands */
    }
    b->owner = g;
    b->nq = g->nq;
    b->done = done;
    b->ud = ud;
    memcpy(b->q, g->q, g->nq * sizeof(cfgd_q_t)); /* the texts move to the batch */
    memset(g->q, 0, g->nq * sizeof(cfgd_q_t));
    g->nq = 0;
    custos_worker_t *w = g->w;
    for (unsigned i = 0; i < b->nq; i++) {
        cfgd_q_t *q = &b->q[i];
        q->batch = b;
        custos_guard_query_t gq = {q->guard, g->pol->name, q->check, q->src, q->text, q->len};
        if (custos_guard_ask(w->gw->guard, w->idx, w->loop, w->up, &gq, on_batch_verdict, q, &q->call, &q->v) == 1)
            q->known = true;
        else
            b->pending++;
    }
    if (!b->pending) {
        batch_result(g, b, now);
        batch_free(b);
        return 2;
    }
    b->next = g->batches;
    g->batches = b;
    return 1;
}

void custos_cfgd_note_merge(custos_cfgd_note_t *into, const custos_cfgd_note_t *n)
{
    into->asked |= n->asked;
    into->err |= n->err;
    into->unsafe |= n->unsafe;
    into->disagreed |= n->disagreed;
    into->other |= n->other;
    if (n->guard)
        into->guard = n->guard;
}

void custos_cfgd_annotate(const custos_cfgd_note_t *n, json_object *annotation)
{
    if (!n->asked)
        return;
    json_object *o = json_object_new_object();
    if (!o)
        return;
    json_object_object_add(o, "name", json_object_new_string(n->guard ? n->guard : ""));
    json_object_object_add(o, "flagged", json_object_new_boolean(n->unsafe));
    if (n->other) {
        json_object *a = json_object_new_array();
        for (int k = 0; a && k < CUSTOS_GUARD_LLAMA_NCODES; k++)
            if (n->other >> k & 1) {
                char c[8];
                snprintf(c, sizeof(c), "S%d", k + 1);
                json_object_array_add(a, json_object_new_string(c));
            }
        json_object_object_add(o, "other_categories", a);
    }
    if (n->err) {
        json_object *e = json_object_new_object();
        if (e) {
            json_object_object_add(e, "code", json_object_new_string("guard_error"));
            json_object_object_add(e, "message",
                                   json_object_new_string("The guard model gave no verdict; the "
                                                          "policy's on_error decided"));
        }
        json_object_object_add(o, "error", e);
    }
    json_object_object_add(annotation, "guard", o);
}
