/* SPDX-License-Identifier: Apache-2.0
 * Content filtering on the inference path (contentfilter.h, docs/content-filtering.md).
 *
 * What is screened (Azure's semantics where Azure has them):
 *   chat prompt:   the latest user message -> harm, jailbreak, blocklists; `role: tool|function` messages and
 *                  <documents>...</documents> spans in any message -> indirect attack; every message -> PII.
 *   completions:   each prompt string (prompt_index i) -> harm, jailbreak, blocklists, PII.
 *   completion:    each choice's text -> harm, blocklists, PII (after restoring PII placeholders).
 * Image / audio / file parts are not screened; the annotation counts them ("unscreened_parts"). */
#include "api/contentfilter.h"

#include "api/cf_grounded.h"
#include "api/cf_guard.h"

#include "safety/blocklist.h"
#include "safety/harm.h"
#include "safety/pii.h"
#include "safety/safety.h"
#include "safety/shields.h"
#include "net/sse.h"
#include "util/arena.h"
#include "util/err.h"
#include "util/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PII_SPANS 256  /* per screened text; more are dropped (the text is then annotated as truncated) */
#define MAX_ENTITIES 64    /* entities listed per annotation */
#define PLACEHOLDER_MAX 40 /* bytes of "<<TYPE_n>>" */
#define MAX_DOC_SPANS 64   /* <documents> spans per message */

static const char MSG_PROMPT_FILTERED[] =
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify "
    "your prompt and retry. To learn more about our content filtering policies please read our documentation: "
    "https://go.microsoft.com/fwlink/?linkid=2198766";

enum { CK_HARM = 1, CK_JB = 2, CK_IA = 4, CK_PII = 8 };

/* One screened text's raw results (no policy applied yet). */
typedef struct cf_check {
    bool harm_ran, harm_err;
    int sev[CUSTOS_HARM_NCAT];
    bool jb_ran, jb_err, jb_det;
    bool ia_ran, ia_err, ia_det;
    bool bl_ran, bl_err;
    uint64_t bl_hit;   /* bit i: the policy's blocklists[i] matched */
    uint32_t bl_count; /* matches */
    bool pii_ran, pii_err, pii_truncated;
    uint32_t pii_n;
    uint32_t pii_count[CUSTOS_PII_NTYPES];
    unsigned unscreened;
    custos_cfgd_note_t gd; /* guard cascade (cf_guard.h) */
} cf_check_t;

typedef struct cf_placeholder {
    char *ph; /* "<<EMAIL_1>>" */
    size_t ph_len;
    char *orig; /* the identifier (arena; never logged, never stored) */
    size_t orig_len;
} cf_placeholder_t;

typedef struct cf_choice {
    bool seen, done, filtered;
    custos_buf_t pending; /* text received, not yet screened (default mode: not yet released) */
    custos_buf_t context; /* tail of the screened text, re-scored with the next window */
    uint64_t screened_cp; /* code points screened so far (async: content_filter_offsets) */
    bool role_pending;
    bool ending; /* the choice's last text is being flushed (finish_reason or end of stream): groundedness runs */
    json_object *g_annot; /* held answer judged grounded: its annotation, sent after the text */
    cf_check_t total;     /* merged over the windows */
} cf_choice_t;

struct custos_cf {
    custos_worker_t *w;
    custos_http_req_t *req;
    const custos_rai_policy_config_t *pol;
    const custos_safety_t *safety;
    bool chat;
    bool stream;
    unsigned n;                  /* choices asked for */
    json_object *prompt_results; /* the prompt_filter_results array (owned) */
    cf_placeholder_t *ph;
    size_t n_ph;
    unsigned ph_next[CUSTOS_PII_NTYPES];
    bool completion_active;  /* some completion check runs (else answers pass as they are, with annotations) */
    custos_blocklists_t *bl; /* the compiled blocklists this request uses (own reference); NULL: none applies */
    const char *bl_names[CUSTOS_RAI_NSRC][CUSTOS_CONFIG_MAX_RAI_BLOCKLISTS]; /* lists per direction, present in bl */
    size_t bl_n[CUSTOS_RAI_NSRC];
    bool bl_missing[CUSTOS_RAI_NSRC]; /* a list the policy names is not defined: that check cannot run */
    /* streaming */
    cf_choice_t *choices[CUSTOS_CF_MAX_CHOICES];
    unsigned n_filtered;
    bool done;
    char *id, *object, *model, *fingerprint; /* chunk template (arena copies) */
    int64_t created;
    custos_cf_summary_t sum;
    custos_cf_grounded_t *g; /* groundedness of the answer (api/cf_grounded.h); NULL when the policy has it off */
    /* guard cascade (api/cf_guard.h); NULL when the policy names no guard. While guard verdicts are awaited: */
    custos_cfgd_t *gd;
    json_object *gbody;                                          /* the prompt's body (the caller's) */
    void (*resume)(void *ud, custos_cf_outcome_t o, int status); /* custos_cf_on_resume */
    void (*resp_done)(void *ud);                                 /* custos_cf_response_guard */
    void *resume_ud, *resp_ud;
    /* default-mode streams: upstream events wait (queued, [u32 length][data]...) while a window's verdict is out */
    bool swait, sreplay, sfinal_checked;
    unsigned apending; /* asynchronous_filter: windows whose guard verdicts are still out */
    bool aflushed;     /* asynchronous_filter: the held text was flushed at [DONE] */
    custos_buf_t squeue;
    void (*sresume)(void *ud, const char *data, size_t len, int state); /* custos_cf_stream_on_resume */
    void *sud;
};

/* ---------- small helpers ---------- */

static size_t utf8_cp_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Byte offset of code point cp in s[0..n) (n when past the end). */
static size_t utf8_cp_offset(const char *s, size_t n, size_t cp)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == cp)
                return i;
            c++;
        }
    }
    return n;
}

/* Start of the last (at most) max_cp code points of s[0..n). */
static size_t utf8_tail(const char *s, size_t n, size_t max_cp)
{
    size_t c = 0, i = n;
    while (i > 0) {
        i--;
        if (((unsigned char)s[i] & 0xC0) != 0x80 && ++c == max_cp)
            return i;
    }
    return 0;
}

static const char *sev_label(int sev)
{
    return sev >= CUSTOS_HARM_SEV_HIGH     ? "high"
           : sev >= CUSTOS_HARM_SEV_MEDIUM ? "medium"
           : sev >= CUSTOS_HARM_SEV_LOW    ? "low"
                                           : "safe";
}

static json_object *sev_obj(bool filtered, int sev)
{
    json_object *o = json_object_new_object();
    if (o) {
        json_object_object_add(o, "filtered", json_object_new_boolean(filtered));
        json_object_object_add(o, "severity", json_object_new_string(sev_label(sev)));
    }
    return o;
}

static json_object *det_obj(bool filtered, bool detected)
{
    json_object *o = json_object_new_object();
    if (o) {
        json_object_object_add(o, "filtered", json_object_new_boolean(filtered));
        json_object_object_add(o, "detected", json_object_new_boolean(detected));
    }
    return o;
}

static void check_merge(cf_check_t *into, const cf_check_t *c)
{
    into->harm_ran |= c->harm_ran;
    into->harm_err |= c->harm_err;
    for (int k = 0; k < CUSTOS_HARM_NCAT; k++)
        if (c->sev[k] > into->sev[k])
            into->sev[k] = c->sev[k];
    into->bl_ran |= c->bl_ran;
    into->bl_err |= c->bl_err;
    into->bl_hit |= c->bl_hit;
    into->bl_count += c->bl_count;
    into->jb_ran |= c->jb_ran;
    into->jb_err |= c->jb_err;
    into->jb_det |= c->jb_det;
    into->ia_ran |= c->ia_ran;
    into->ia_err |= c->ia_err;
    into->ia_det |= c->ia_det;
    into->pii_ran |= c->pii_ran;
    into->pii_err |= c->pii_err;
    into->pii_truncated |= c->pii_truncated;
    into->pii_n += c->pii_n;
    for (int t = 0; t < CUSTOS_PII_NTYPES; t++)
        into->pii_count[t] += c->pii_count[t];
    into->unscreened += c->unscreened;
    custos_cfgd_note_merge(&into->gd, &c->gd);
}

/* ---------- screening ---------- */

#define SEG_MIN_BYTES 48  /* a sentence shorter than this is scored with the next one */
#define SEG_MAX_COUNT 256 /* sentences scored separately per text; the whole text is always scored */

/* Harm for text: the whole text, and each sentence (or run of short sentences) on its own, taking the highest
 * severity per category. A linear model's score on a long text is an average of its n-grams, so one harmful
 * sentence among benign ones would be diluted below the threshold; scored on its own it is not. */
static int harm_max_scores(const custos_harm_model_t *m, const char *text, size_t len, int sev[CUSTOS_HARM_NCAT],
                           float score[CUSTOS_HARM_NCAT], custos_safety_scratch_t *sc)
{
    size_t seg[SEG_MAX_COUNT + 1][2];
    custos_harm_result_t whole, parts[SEG_MAX_COUNT + 1];
    size_t start = 0, nseg = 0;
    for (size_t i = 0; i < len && nseg < SEG_MAX_COUNT; i++) {
        char c = text[i];
        bool end = (c == '.' || c == '!' || c == '?' || c == ';' || c == '\n') &&
                   (i + 1 == len || text[i + 1] == ' ' || text[i + 1] == '\n');
        if (!end || i + 1 - start < SEG_MIN_BYTES)
            continue;
        if (start == 0 && i + 1 >= len)
            break; /* one sentence: the whole text */
        seg[nseg][0] = start;
        seg[nseg][1] = i + 1;
        start = i + 1;
        nseg++;
    }
    if (start > 0 && len - start >= 8) {
        seg[nseg][0] = start;
        seg[nseg][1] = len;
        nseg++;
    }
    /* one normalisation for the text and its sentences; the whole text's features stay cached in sc for the
     * jailbreak model that scores the same text next (harm.h) */
    int rc = custos_harm_score_parts(m, text, len, (const size_t(*)[2])seg, nseg, &whole, parts, sc);
    if (rc < 0)
        return rc;
    for (int k = 0; k < CUSTOS_HARM_NCAT; k++) {
        sev[k] = whole.severity[k];
        float sc_max = whole.score[k];
        for (size_t j = 0; j < nseg; j++) {
            if (parts[j].severity[k] > sev[k])
                sev[k] = parts[j].severity[k];
            if (parts[j].score[k] > sc_max)
                sc_max = parts[j].score[k];
        }
        if (score)
            score[k] = sc_max; /* the guard cascade's band is on this (cf_guard.h) */
    }
    return 0;
}

static int harm_max(const custos_harm_model_t *m, const char *text, size_t len, int sev[CUSTOS_HARM_NCAT],
                    custos_safety_scratch_t *sc)
{
    return harm_max_scores(m, text, len, sev, NULL, sc);
}

int custos_cf_harm_severities(const custos_harm_model_t *m, const char *text, size_t len, int sev[CUSTOS_HARM_NCAT],
                              custos_safety_scratch_t *sc)
{
    return harm_max(m, text, len, sev, sc);
}

static void screen(custos_cf_t *cf, int src, const char *text, size_t len, unsigned what, cf_check_t *ck)
{
    custos_safety_scratch_t *sc = &cf->w->scratch;
    const custos_rai_policy_config_t *pol = cf->pol;
    if (what & CK_HARM) {
        bool any = false;
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
            any |= pol->filters[k][src].enabled;
        if (any) {
            int sev[CUSTOS_HARM_NCAT];
            float score[CUSTOS_HARM_NCAT];
            ck->harm_ran = true;
            int hrc = harm_max_scores(custos_safety_harm(cf->safety), text, len, sev, score, sc);
            if (hrc < 0)
                ck->harm_err = true;
            else
                custos_cfgd_harm(cf->gd, src, text, len, score, sev, &ck->gd); /* guard cascade (cf_guard.h) */
            if (hrc >= 0)
                for (int k = 0; k < CUSTOS_HARM_NCAT; k++)
                    if (sev[k] > ck->sev[k])
                        ck->sev[k] = sev[k];
        }
    }
    const custos_model_t *sh = custos_safety_shields(cf->safety);
    if ((what & CK_JB) && pol->jailbreak != CUSTOS_RAI_OFF) {
        custos_shield_result_t r;
        ck->jb_ran = true;
        if (!sh || custos_shields_score(sh, CUSTOS_SHIELD_JAILBREAK, text, len, &r, sc) < 0)
            ck->jb_err = true;
        else
            ck->jb_det |=
                custos_cfgd_shield(cf->gd, CUSTOS_GUARD_CHECK_JAILBREAK, text, len, r.score, r.detected != 0, &ck->gd);
    }
    if ((what & CK_IA) && pol->indirect_attack != CUSTOS_RAI_OFF) {
        custos_shield_result_t r;
        ck->ia_ran = true;
        if (!sh || custos_shields_score(sh, CUSTOS_SHIELD_INDIRECT, text, len, &r, sc) < 0)
            ck->ia_err = true;
        else
            ck->ia_det |=
                custos_cfgd_shield(cf->gd, CUSTOS_GUARD_CHECK_INDIRECT, text, len, r.score, r.detected != 0, &ck->gd);
    }
}

/* ---------- blocklists ---------- */

typedef struct bl_ctx {
    const custos_cf_t *cf;
    cf_check_t *ck;
    size_t skip; /* hits ending at or before this byte were judged with the previous window */
} bl_ctx_t;

static int on_bl_hit(void *ud, const custos_blocklist_hit_t *hit)
{
    bl_ctx_t *b = ud;
    if (hit->end <= b->skip)
        return 0;
    const custos_rai_policy_config_t *pol = b->cf->pol;
    for (size_t i = 0; i < pol->n_blocklists; i++)
        if (strcmp(pol->blocklists[i].name, hit->list) == 0) {
            b->ck->bl_hit |= 1ull << i;
            b->ck->bl_count++;
        }
    return 0;
}

/* The policy's blocklists for direction src on text[0..len); matches ending within the first skip bytes are not
 * counted (they belong to context already judged). */
static void screen_blocklists(custos_cf_t *cf, int src, const char *text, size_t len, size_t skip, cf_check_t *ck)
{
    if (!cf->bl_n[src] && !cf->bl_missing[src])
        return;
    ck->bl_ran = true;
    if (cf->bl_missing[src])
        ck->bl_err = true;
    if (!cf->bl_n[src] || len == 0)
        return;
    bl_ctx_t b = {cf, ck, skip};
    if (custos_blocklists_scan(cf->bl, cf->bl_names[src], cf->bl_n[src], text, len, &cf->w->bl_scratch, on_bl_hit, &b) <
        0)
        ck->bl_err = true;
}

/* Resolves the policy's blocklists against the newest compiled set (taking a reference for the request). */
static void blocklists_setup(custos_cf_t *cf)
{
    const custos_rai_policy_config_t *pol = cf->pol;
    if (!pol->n_blocklists)
        return;
    const custos_blocklists_t *set =
        cf->w->gw->blocklists ? custos_blocklist_view_get(cf->w->gw->blocklists, &cf->w->bl_view) : NULL;
    if (set)
        cf->bl = custos_blocklists_ref((custos_blocklists_t *)set);
    for (size_t i = 0; i < pol->n_blocklists; i++) {
        const custos_rai_blocklist_ref_t *r = &pol->blocklists[i];
        bool have = cf->bl && custos_blocklists_has(cf->bl, r->name);
        for (int d = 0; d < CUSTOS_RAI_NSRC; d++) {
            if (!r->source[d])
                continue;
            if (have)
                cf->bl_names[d][cf->bl_n[d]++] = r->name;
            else
                cf->bl_missing[d] = true;
        }
    }
}

static bool bl_filtered(const custos_rai_policy_config_t *pol, int src, const cf_check_t *ck)
{
    for (size_t i = 0; i < pol->n_blocklists; i++)
        if ((ck->bl_hit >> i & 1) && pol->blocklists[i].blocking && pol->blocklists[i].source[src])
            return true;
    return false;
}

static const char *pii_action_name(custos_rai_pii_action_t a)
{
    static const char *const n[] = {"off", "annotate", "redact", "placeholder", "block"};
    return n[a];
}

/* The placeholder for an identifier (same identifier -> same placeholder within the request). */
static const cf_placeholder_t *placeholder_for(custos_cf_t *cf, int type, const char *s, size_t n)
{
    for (size_t i = 0; i < cf->n_ph; i++)
        if (cf->ph[i].orig_len == n && memcmp(cf->ph[i].orig, s, n) == 0)
            return &cf->ph[i];
    if (cf->n_ph >= CUSTOS_CF_MAX_PLACEHOLDERS)
        return NULL;
    if (!cf->ph) {
        cf->ph = custos_arena_alloc(cf->req->arena, CUSTOS_CF_MAX_PLACEHOLDERS * sizeof(*cf->ph));
        if (!cf->ph)
            return NULL;
    }
    char buf[PLACEHOLDER_MAX];
    int l = snprintf(buf, sizeof(buf), "<<%s_%u>>", custos_pii_type_name(type), ++cf->ph_next[type]);
    cf_placeholder_t *p = &cf->ph[cf->n_ph];
    p->ph = custos_arena_strndup(cf->req->arena, buf, (size_t)l);
    p->orig = custos_arena_strndup(cf->req->arena, s, n);
    if (!p->ph || !p->orig)
        return NULL;
    p->ph_len = (size_t)l;
    p->orig_len = n;
    cf->n_ph++;
    return p;
}

/* PII on text[0..len) for direction src. Counts types into ck; lists entities into ents (may be NULL) with the
 * given locator fields; when the action rewrites (redact / placeholder), writes the new text to *rewritten (arena;
 * NULL when nothing changed). */
static void screen_pii(custos_cf_t *cf, int src, const char *text, size_t len, cf_check_t *ck, json_object *ents,
                       const char *loc_key, int loc_val, int part, char **rewritten, size_t *rewritten_len)
{
    custos_rai_pii_action_t act = cf->pol->pii[src];
    if (rewritten)
        *rewritten = NULL;
    if (act == CUSTOS_RAI_PII_OFF || len == 0)
        return;
    custos_pii_span_t spans[MAX_PII_SPANS];
    size_t n = 0;
    ck->pii_ran = true;
    if (custos_pii_scan(custos_safety_pii(cf->safety), text, len, &cf->w->scratch, spans, MAX_PII_SPANS, &n) < 0) {
        ck->pii_err = true;
        return;
    }
    if (n == MAX_PII_SPANS)
        ck->pii_truncated = true;
    ck->pii_n += (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        ck->pii_count[spans[i].type]++;
        if (ents && json_object_array_length(ents) < MAX_ENTITIES) {
            json_object *e = json_object_new_object();
            if (!e)
                continue;
            json_object_object_add(e, "type", json_object_new_string(custos_pii_type_name(spans[i].type)));
            if (loc_key)
                json_object_object_add(e, loc_key, json_object_new_int(loc_val));
            if (part >= 0)
                json_object_object_add(e, "part", json_object_new_int(part));
            json_object_object_add(e, "offset", json_object_new_int64(spans[i].start));
            json_object_object_add(e, "length", json_object_new_int64(spans[i].end - spans[i].start));
            json_object_array_add(ents, e);
        }
    }
    if (!rewritten || n == 0 || (act != CUSTOS_RAI_PII_REDACT && act != CUSTOS_RAI_PII_PLACEHOLDER))
        return;
    custos_buf_t out;
    custos_buf_init(&out, 0);
    size_t pos = 0, cp_pos = 0, byte_pos = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* code points -> bytes, walking forward once */
        size_t b0 = byte_pos + utf8_cp_offset(text + byte_pos, len - byte_pos, spans[i].start - cp_pos);
        size_t b1 = b0 + utf8_cp_offset(text + b0, len - b0, spans[i].end - spans[i].start);
        cp_pos = spans[i].end;
        byte_pos = b1;
        rc = custos_buf_append(&out, text + pos, b0 - pos);
        const cf_placeholder_t *ph = NULL;
        if (rc == 0 && act == CUSTOS_RAI_PII_PLACEHOLDER)
            ph = placeholder_for(cf, spans[i].type, text + b0, b1 - b0);
        if (rc == 0 && ph)
            rc = custos_buf_append(&out, ph->ph, ph->ph_len);
        else if (rc == 0)
            rc = custos_buf_appendf(&out, "[%s]", custos_pii_type_name(spans[i].type));
        pos = b1;
    }
    if (rc == 0)
        rc = custos_buf_append(&out, text + pos, len - pos);
    if (rc == 0) {
        *rewritten = custos_arena_strndup(cf->req->arena, custos_buf_peek(&out), custos_buf_size(&out));
        *rewritten_len = custos_buf_size(&out);
        if (!*rewritten)
            rc = CUSTOS_ENOMEM;
    }
    if (rc < 0)
        ck->pii_err = true;
    custos_buf_dispose(&out);
}

/* ---------- policy decisions and annotations ---------- */

static bool harm_filtered(const custos_rai_policy_config_t *pol, int src, const cf_check_t *ck, int k)
{
    const custos_rai_filter_t *f = &pol->filters[k][src];
    return ck->harm_ran && !ck->harm_err && f->enabled && f->blocking && ck->sev[k] >= f->threshold;
}

static bool pii_blocks(const custos_rai_policy_config_t *pol, int src, const cf_check_t *ck)
{
    return pol->pii[src] == CUSTOS_RAI_PII_BLOCK && ck->pii_n > 0;
}

static bool check_filtered(const custos_rai_policy_config_t *pol, int src, const cf_check_t *ck)
{
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        if (harm_filtered(pol, src, ck, k))
            return true;
    if (src == CUSTOS_RAI_PROMPT && pol->jailbreak == CUSTOS_RAI_BLOCK && ck->jb_det)
        return true;
    if (src == CUSTOS_RAI_PROMPT && pol->indirect_attack == CUSTOS_RAI_BLOCK && ck->ia_det)
        return true;
    if (bl_filtered(pol, src, ck))
        return true;
    return pii_blocks(pol, src, ck);
}

static bool check_failed(const cf_check_t *ck)
{
    return ck->harm_err || ck->jb_err || ck->ia_err || ck->pii_err || ck->bl_err || ck->gd.err;
}

/* A check that failed to run, where the policy would block on it: the request is refused (fail closed). */
static bool check_failed_blocking(const custos_rai_policy_config_t *pol, int src, const cf_check_t *ck)
{
    if (ck->harm_err)
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
            if (pol->filters[k][src].blocking)
                return true;
    if (ck->jb_err && pol->jailbreak == CUSTOS_RAI_BLOCK)
        return true;
    if (ck->ia_err && pol->indirect_attack == CUSTOS_RAI_BLOCK)
        return true;
    if (ck->bl_err)
        for (size_t i = 0; i < pol->n_blocklists; i++)
            if (pol->blocklists[i].blocking && pol->blocklists[i].source[src])
                return true;
    return ck->pii_err && pol->pii[src] >= CUSTOS_RAI_PII_REDACT;
}

/* content_filter_results for one prompt or one choice. ents: PII entity list (ownership taken; may be NULL). */
static json_object *annotation(const custos_cf_t *cf, int src, const cf_check_t *ck, json_object *ents)
{
    const custos_rai_policy_config_t *pol = cf->pol;
    json_object *o = json_object_new_object();
    if (!o) {
        json_object_put(ents);
        return NULL;
    }
    static const char *const cat[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    if (ck->harm_ran && !ck->harm_err)
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
            if (pol->filters[k][src].enabled)
                json_object_object_add(o, cat[k], sev_obj(harm_filtered(pol, src, ck, k), ck->sev[k]));
    if (src == CUSTOS_RAI_PROMPT && ck->jb_ran && !ck->jb_err)
        json_object_object_add(o, "jailbreak", det_obj(pol->jailbreak == CUSTOS_RAI_BLOCK && ck->jb_det, ck->jb_det));
    if (src == CUSTOS_RAI_PROMPT && ck->ia_ran && !ck->ia_err)
        json_object_object_add(o, "indirect_attack",
                               det_obj(pol->indirect_attack == CUSTOS_RAI_BLOCK && ck->ia_det, ck->ia_det));
    if (ck->bl_ran && !ck->bl_err) {
        /* ContentFilterDetailedResults: {"filtered", "details":[{"filtered","id"}]} for each list that matched */
        json_object *b = json_object_new_object(), *det = json_object_new_array();
        if (b && det) {
            for (size_t i = 0; i < pol->n_blocklists; i++) {
                if (!(ck->bl_hit >> i & 1))
                    continue;
                json_object *d = json_object_new_object();
                if (!d)
                    continue;
                json_object_object_add(
                    d, "filtered",
                    json_object_new_boolean(pol->blocklists[i].blocking && pol->blocklists[i].source[src]));
                json_object_object_add(d, "id", json_object_new_string(pol->blocklists[i].name));
                json_object_array_add(det, d);
            }
            json_object_object_add(b, "filtered", json_object_new_boolean(bl_filtered(pol, src, ck)));
            json_object_object_add(b, "details", det);
            json_object_object_add(o, "custom_blocklists", b);
        } else {
            json_object_put(b);
            json_object_put(det);
        }
    }
    if (pol->pii[src] != CUSTOS_RAI_PII_OFF && ck->pii_ran && !ck->pii_err) {
        json_object *p = json_object_new_object();
        if (p) {
            json_object_object_add(p, "filtered", json_object_new_boolean(pii_blocks(pol, src, ck)));
            json_object_object_add(p, "detected", json_object_new_boolean(ck->pii_n > 0));
            json_object_object_add(p, "action", json_object_new_string(pii_action_name(pol->pii[src])));
            json_object *types = json_object_new_object();
            for (int t = 0; types && t < CUSTOS_PII_NTYPES; t++)
                if (ck->pii_count[t])
                    json_object_object_add(types, custos_pii_type_name(t), json_object_new_int64(ck->pii_count[t]));
            json_object_object_add(p, "types", types);
            if (ents) {
                json_object_object_add(p, "entities", ents);
                ents = NULL;
            }
            if (ck->pii_truncated)
                json_object_object_add(p, "truncated", json_object_new_boolean(true));
            json_object_object_add(o, "pii", p);
        }
    }
    json_object_put(ents);
    custos_cfgd_annotate(&ck->gd, o); /* custos extension "guard" (docs/guard-models.md) */
    if (ck->unscreened)
        json_object_object_add(o, "unscreened_parts", json_object_new_int((int32_t)ck->unscreened));
    if (check_failed(ck)) {
        json_object *e = json_object_new_object();
        if (e) {
            json_object_object_add(e, "code", json_object_new_string("content_filter_error"));
            json_object_object_add(e, "message", json_object_new_string("The contents are not filtered"));
            json_object_object_add(o, "error", e);
        }
    }
    return o;
}

static void summary_add(custos_cf_t *cf, int src, const cf_check_t *ck, bool filtered)
{
    custos_cf_summary_t *s = &cf->sum;
    int8_t *sev = src == CUSTOS_RAI_PROMPT ? s->prompt_severity : s->completion_severity;
    if (ck->harm_ran && !ck->harm_err)
        for (int k = 0; k < CUSTOS_HARM_NCAT; k++)
            if (ck->sev[k] > sev[k])
                sev[k] = (int8_t)ck->sev[k];
    uint16_t *types = src == CUSTOS_RAI_PROMPT ? s->pii_prompt_types : s->pii_completion_types;
    for (int t = 0; t < CUSTOS_PII_NTYPES; t++)
        types[t] = (uint16_t)(types[t] + ck->pii_count[t] > UINT16_MAX ? UINT16_MAX : types[t] + ck->pii_count[t]);
    if (src == CUSTOS_RAI_PROMPT) {
        s->prompt_filtered |= filtered;
        s->pii_prompt += ck->pii_n;
    } else {
        s->completion_filtered |= filtered;
        s->pii_completion += ck->pii_n;
        s->completion_screened = true;
    }
    s->jailbreak_detected |= ck->jb_det;
    s->blocklist_hits += ck->bl_count;
    s->indirect_attack_detected |= ck->ia_det;
    s->error |= check_failed(ck);
    s->guard_asked |= ck->gd.asked;
    s->guard_error |= ck->gd.err;
    s->guard_disagreed |= ck->gd.disagreed;
}

/* ---------- the prompt ---------- */

/* Text of a message's content: the string itself, or each {"type":"text","text":...} part. Calls fn per text
 * node (json string object) with its part index (-1 for a plain string); counts other parts as unscreened. */
typedef void (*text_fn)(custos_cf_t *cf, json_object *str, int msg, int part, void *ud);

static void each_text(custos_cf_t *cf, json_object *content, int msg, cf_check_t *ck, text_fn fn, void *ud)
{
    if (!content)
        return;
    if (json_object_is_type(content, json_type_string)) {
        fn(cf, content, msg, -1, ud);
        return;
    }
    if (!json_object_is_type(content, json_type_array))
        return;
    size_t n = json_object_array_length(content);
    for (size_t i = 0; i < n; i++) {
        json_object *part = json_object_array_get_idx(content, i), *t = NULL;
        if (part && json_object_is_type(part, json_type_object) && json_object_object_get_ex(part, "text", &t) &&
            json_object_is_type(t, json_type_string))
            fn(cf, t, msg, (int)i, ud);
        else if (part && !json_object_is_type(part, json_type_null))
            ck->unscreened++;
    }
}

typedef struct prompt_ctx {
    cf_check_t *ck;
    json_object *ents;
    unsigned what; /* CK_* for this message */
} prompt_ctx_t;

/* Finds <documents>...</documents> spans (Azure's convention for marking data in a prompt). Returns their count;
 * spans[i] = {start, end} byte offsets of the inner text. */
size_t custos_cf_doc_spans(const char *s, size_t n, size_t spans[][2], size_t cap)
{
    static const char open[] = "<documents>", close[] = "</documents>";
    size_t k = 0, pos = 0;
    while (k < cap && pos < n) {
        const char *o = memmem(s + pos, n - pos, open, sizeof(open) - 1);
        if (!o)
            break;
        size_t start = (size_t)(o - s) + sizeof(open) - 1;
        const char *c = memmem(s + start, n - start, close, sizeof(close) - 1);
        size_t end = c ? (size_t)(c - s) : n;
        spans[k][0] = start;
        spans[k][1] = end;
        k++;
        pos = c ? end + sizeof(close) - 1 : n;
    }
    return k;
}

static void prompt_text(custos_cf_t *cf, json_object *str, int msg, int part, void *ud)
{
    prompt_ctx_t *pc = ud;
    const char *s = json_object_get_string(str);
    size_t n = (size_t)json_object_get_string_len(str);
    if (pc->what & (CK_HARM | CK_JB)) {
        size_t spans[MAX_DOC_SPANS][2];
        size_t nd = custos_cf_doc_spans(s, n, spans, MAX_DOC_SPANS);
        screen(cf, CUSTOS_RAI_PROMPT, s, n, pc->what & CK_HARM, pc->ck);
        if (custos_cfgd_phase(cf->gd) != CUSTOS_CFGD_COLLECT) /* the collect pass only gathers guard questions */
            screen_blocklists(cf, CUSTOS_RAI_PROMPT, s, n, 0, pc->ck);
        if (nd == 0) {
            screen(cf, CUSTOS_RAI_PROMPT, s, n, pc->what & CK_JB, pc->ck);
        } else {
            /* jailbreak on the instructions, indirect attack on each document */
            custos_buf_t rest;
            custos_buf_init(&rest, 0);
            size_t pos = 0;
            int rc = 0;
            for (size_t i = 0; i < nd && rc == 0; i++) {
                rc = custos_buf_append(&rest, s + pos, spans[i][0] - pos);
                screen(cf, CUSTOS_RAI_PROMPT, s + spans[i][0], spans[i][1] - spans[i][0], CK_IA, pc->ck);
                pos = spans[i][1];
            }
            if (rc == 0)
                rc = custos_buf_append(&rest, s + pos, n - pos);
            if (rc < 0)
                pc->ck->jb_err = true;
            else
                screen(cf, CUSTOS_RAI_PROMPT, custos_buf_peek(&rest), custos_buf_size(&rest), pc->what & CK_JB, pc->ck);
            custos_buf_dispose(&rest);
        }
    } else if (pc->what & CK_IA) {
        screen(cf, CUSTOS_RAI_PROMPT, s, n, CK_IA, pc->ck);
    } else {
        /* other roles: only <documents> spans are screened (indirect attack) */
        size_t spans[MAX_DOC_SPANS][2];
        size_t nd = custos_cf_doc_spans(s, n, spans, MAX_DOC_SPANS);
        for (size_t i = 0; i < nd; i++)
            screen(cf, CUSTOS_RAI_PROMPT, s + spans[i][0], spans[i][1] - spans[i][0], CK_IA, pc->ck);
    }
    if ((pc->what & CK_PII) && custos_cfgd_phase(cf->gd) != CUSTOS_CFGD_COLLECT) {
        char *nw = NULL;
        size_t nl = 0;
        screen_pii(cf, CUSTOS_RAI_PROMPT, s, n, pc->ck, pc->ents, cf->chat ? "message" : NULL, msg, part, &nw, &nl);
        if (nw)
            json_object_set_string_len(str, nw, (int)nl);
    }
}

static int prompt_result_add(custos_cf_t *cf, int index, const cf_check_t *ck, json_object *ents)
{
    json_object *r = json_object_new_object(), *a = annotation(cf, CUSTOS_RAI_PROMPT, ck, ents);
    if (!r || !a) {
        json_object_put(r);
        json_object_put(a);
        return CUSTOS_ENOMEM;
    }
    json_object_object_add(r, "prompt_index", json_object_new_int(index));
    json_object_object_add(r, "content_filter_results", a);
    return json_object_array_add(cf->prompt_results, r) == 0 ? 0 : CUSTOS_ENOMEM;
}

static void answer_blocked(custos_cf_t *cf, json_object *results, int *status)
{
    /* Azure's wire form (azure-wire.md 2.3): innererror.content_filter_result (singular), param "prompt". */
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_buf_append_lit(&b, "{\"error\":{\"message\":");
    rc = rc ? rc : custos_json_append_string(&b, MSG_PROMPT_FILTERED, sizeof(MSG_PROMPT_FILTERED) - 1);
    rc =
        rc ? rc
           : custos_buf_append_lit(&b, ",\"type\":null,\"param\":\"prompt\",\"code\":\"content_filter\",\"status\":400,"
                                       "\"innererror\":{\"code\":\"ResponsibleAIPolicyViolation\",\"content_filter_"
                                       "result\":");
    rc = rc ? rc : custos_json_write(&b, results);
    rc = rc ? rc : custos_buf_append_lit(&b, "}}}");
    if (rc < 0) {
        custos_http_respond_error(cf->req, 500, "internal_error", "Out of memory.", NULL, 0);
        *status = 500;
    } else {
        custos_http_header_t h[1] = {{"content-type", 12, "application/json", 16}};
        custos_http_respond(cf->req, 400, h, 1, custos_buf_peek(&b), custos_buf_size(&b));
        *status = 400;
    }
    custos_buf_dispose(&b);
}

static void answer_check_failed(custos_cf_t *cf, int *status)
{
    custos_http_respond_error(cf->req, 500, "content_filter_error",
                              "The content filter could not screen the prompt and the policy blocks on it, so the "
                              "request was not sent. Shorter input may help; see docs/content-filtering.md.",
                              NULL, 0);
    *status = 500;
}

static int get_n(json_object *body, const char *key, unsigned *out)
{
    json_object *o;
    if (!json_object_object_get_ex(body, key, &o) || json_object_is_type(o, json_type_null))
        return 0;
    if (!json_object_is_type(o, json_type_int))
        return CUSTOS_EINVAL;
    int64_t v = json_object_get_int64(o);
    if (v < 1 || v > CUSTOS_CF_MAX_CHOICES)
        return CUSTOS_EINVAL;
    if ((unsigned)v > *out)
        *out = (unsigned)v;
    return 0;
}

static custos_cf_outcome_t prompt_decide(custos_cf_t *cf, json_object *body, int *status);
static void prompt_resumed(void *ud);

custos_cf_outcome_t custos_cf_prompt(custos_worker_t *w, custos_http_req_t *req, const custos_deployment_config_t *dep,
                                     custos_op_t op, json_object *body, bool stream, custos_cf_t **out, int *status)
{
    *out = NULL;
    *status = 0;
    bool chat = op == CUSTOS_OP_CHAT;
    if (!chat && op != CUSTOS_OP_COMPLETIONS)
        return CUSTOS_CF_PASS; /* embeddings and the rest are not content-filtered (as in Azure) */
    custos_cf_t *cf = custos_arena_alloc(req->arena, sizeof(*cf));
    if (!cf) {
        custos_http_respond_error(req, 503, "server_busy", "Out of memory.", NULL, 0);
        *status = 503;
        return CUSTOS_CF_ANSWERED;
    }
    memset(cf, 0, sizeof(*cf));
    custos_buf_init(&cf->squeue, 0);
    cf->w = w;
    cf->req = req;
    cf->pol = dep->rai;
    cf->safety = w->gw->safety;
    cf->chat = chat;
    cf->stream = stream;
    cf->n = 1;
    memset(cf->sum.prompt_severity, -1, sizeof(cf->sum.prompt_severity));
    memset(cf->sum.completion_severity, -1, sizeof(cf->sum.completion_severity));
    cf->sum.ungrounded = -1;
    if (get_n(body, "n", &cf->n) < 0 || get_n(body, "best_of", &cf->n) < 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "'n' and 'best_of' must be integers from 1 to %d.", CUSTOS_CF_MAX_CHOICES);
        custos_http_respond_error(req, 400, "invalid_request_error", msg, NULL, 0);
        *status = 400;
        return CUSTOS_CF_ANSWERED;
    }
    blocklists_setup(cf);
    cf->prompt_results = json_object_new_array();
    if (!cf->prompt_results) {
        custos_http_respond_error(req, 503, "server_busy", "Out of memory.", NULL, 0);
        *status = 503;
        return CUSTOS_CF_ANSWERED;
    }
    /* guard cascade (cf_guard.h): a collect pass (no side effects) gathers the questions for the guards; the
     * decisions wait for their verdicts, asynchronously on this worker's loop */
    cf->gd = custos_cfgd_new(w, cf->pol);
    if (custos_cfgd_has(cf->gd, CUSTOS_RAI_PROMPT)) {
        custos_cf_summary_t s0 = cf->sum;
        custos_cfgd_begin(cf->gd, CUSTOS_CFGD_COLLECT);
        (void)prompt_decide(cf, body, status);
        cf->sum = s0;
        json_object_put(cf->prompt_results);
        cf->prompt_results = json_object_new_array();
        if (!cf->prompt_results) {
            custos_http_respond_error(req, 503, "server_busy", "Out of memory.", NULL, 0);
            *status = 503;
            *out = cf;
            return CUSTOS_CF_ANSWERED;
        }
        if (custos_cfgd_start(cf->gd, prompt_resumed, cf) == 1) {
            cf->gbody = body;
            *out = cf;
            return CUSTOS_CF_PENDING;
        }
        custos_cfgd_begin(cf->gd, CUSTOS_CFGD_APPLY);
    }
    custos_cf_outcome_t o = prompt_decide(cf, body, status);
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_NONE);
    *out = cf;
    return o;
}

static void prompt_resumed(void *ud)
{
    custos_cf_t *cf = ud;
    int status = 0;
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_APPLY);
    custos_cf_outcome_t o = prompt_decide(cf, cf->gbody, &status);
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_NONE);
    cf->gbody = NULL;
    if (cf->resume)
        cf->resume(cf->resume_ud, o, status);
}

void custos_cf_on_resume(custos_cf_t *cf, void (*fn)(void *ud, custos_cf_outcome_t o, int status), void *ud)
{
    cf->resume = fn;
    cf->resume_ud = ud;
}

/* Screens the prompt and decides (answers 400 / 500 itself); in the guard collect pass only screens. */
static custos_cf_outcome_t prompt_decide(custos_cf_t *cf, json_object *body, int *status)
{
    bool chat = cf->chat;
    bool filtered = false, failed = false;
    json_object *blocked = NULL; /* content_filter_result of the first filtered prompt */
    unsigned pii = cf->pol->pii[CUSTOS_RAI_PROMPT] != CUSTOS_RAI_PII_OFF ? CK_PII : 0;
    if (chat) {
        json_object *msgs = NULL;
        cf_check_t ck = {0};
        json_object *ents =
            pii && cf->pol->pii[CUSTOS_RAI_PROMPT] == CUSTOS_RAI_PII_ANNOTATE ? json_object_new_array() : NULL;
        if (json_object_object_get_ex(body, "messages", &msgs) && json_object_is_type(msgs, json_type_array)) {
            size_t n = json_object_array_length(msgs);
            int last_user = -1;
            for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(msgs, i), *role;
                if (m && json_object_object_get_ex(m, "role", &role) && json_object_is_type(role, json_type_string) &&
                    strcmp(json_object_get_string(role), "user") == 0)
                    last_user = (int)i;
            }
            for (size_t i = 0; i < n; i++) {
                const char *r;
                json_object *content;
                if (!custos_cf_message_at(msgs, i, &r, &content))
                    continue;
                prompt_ctx_t pc = {.ck = &ck, .ents = ents, .what = pii};
                if ((int)i == last_user)
                    pc.what |= CK_HARM | CK_JB;
                else if (custos_cf_role_is_source(r))
                    pc.what |= CK_IA;
                each_text(cf, content, (int)i, &ck, prompt_text, &pc);
            }
        }
        filtered = check_filtered(cf->pol, CUSTOS_RAI_PROMPT, &ck);
        failed = check_failed_blocking(cf->pol, CUSTOS_RAI_PROMPT, &ck);
        summary_add(cf, CUSTOS_RAI_PROMPT, &ck, filtered);
        if (prompt_result_add(cf, 0, &ck, ents) < 0)
            failed = true;
    } else {
        json_object *pr = NULL;
        json_object_object_get_ex(body, "prompt", &pr);
        size_t n = pr && json_object_is_type(pr, json_type_array) ? json_object_array_length(pr) : 1;
        for (size_t i = 0; i < n; i++) {
            json_object *s = pr && json_object_is_type(pr, json_type_array) ? json_object_array_get_idx(pr, i) : pr;
            cf_check_t ck = {0};
            json_object *ents =
                pii && cf->pol->pii[CUSTOS_RAI_PROMPT] == CUSTOS_RAI_PII_ANNOTATE ? json_object_new_array() : NULL;
            prompt_ctx_t pc = {.ck = &ck, .ents = ents, .what = pii | CK_HARM | CK_JB};
            if (s && json_object_is_type(s, json_type_string))
                prompt_text(cf, s, (int)i, -1, &pc);
            else if (s && !json_object_is_type(s, json_type_null))
                ck.unscreened++; /* token arrays */
            bool f = check_filtered(cf->pol, CUSTOS_RAI_PROMPT, &ck);
            failed |= check_failed_blocking(cf->pol, CUSTOS_RAI_PROMPT, &ck);
            summary_add(cf, CUSTOS_RAI_PROMPT, &ck, f);
            if (prompt_result_add(cf, (int)i, &ck, ents) < 0)
                failed = true;
            if (f && !filtered) {
                filtered = true;
                blocked = json_object_array_get_idx(cf->prompt_results, i);
            }
        }
    }
    if (custos_cfgd_phase(cf->gd) == CUSTOS_CFGD_COLLECT)
        return CUSTOS_CF_PASS;
    if (failed) {
        answer_check_failed(cf, status);
        return CUSTOS_CF_ANSWERED;
    }
    if (filtered) {
        if (!blocked)
            blocked = json_object_array_get_idx(cf->prompt_results, 0);
        json_object *res = NULL;
        json_object_object_get_ex(blocked, "content_filter_results", &res);
        answer_blocked(cf, res, status);
        return CUSTOS_CF_ANSWERED;
    }
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        cf->completion_active |= cf->pol->filters[k][CUSTOS_RAI_COMPLETION].enabled;
    cf->completion_active |= cf->pol->pii[CUSTOS_RAI_COMPLETION] != CUSTOS_RAI_PII_OFF || cf->n_ph > 0;
    cf->completion_active |= cf->bl_n[CUSTOS_RAI_COMPLETION] > 0 || cf->bl_missing[CUSTOS_RAI_COMPLETION];
    /* groundedness: sources from the prompt as it goes upstream (answers may add citations) */
    if (custos_cf_grounded_new(cf->pol, cf->safety, chat, body, &cf->g) < 0)
        cf->sum.error = true;
    cf->completion_active |= cf->g != NULL;
    return CUSTOS_CF_PASS;
}

/* ---------- the completion ---------- */

/* Restores PII placeholders in s[0..n) into out. */
static int restore_placeholders(const custos_cf_t *cf, const char *s, size_t n, custos_buf_t *out)
{
    size_t pos = 0;
    while (pos < n) {
        const char *o = cf->n_ph ? memmem(s + pos, n - pos, "<<", 2) : NULL;
        if (!o)
            break;
        size_t at = (size_t)(o - s);
        const cf_placeholder_t *hit = NULL;
        for (size_t i = 0; i < cf->n_ph; i++)
            if (cf->ph[i].ph_len <= n - at && memcmp(s + at, cf->ph[i].ph, cf->ph[i].ph_len) == 0) {
                hit = &cf->ph[i];
                break;
            }
        int rc = custos_buf_append(out, s + pos, at - pos);
        if (rc < 0)
            return rc;
        if (hit) {
            if ((rc = custos_buf_append(out, hit->orig, hit->orig_len)) < 0)
                return rc;
            pos = at + hit->ph_len;
        } else {
            if ((rc = custos_buf_append(out, "<<", 2)) < 0)
                return rc;
            pos = at + 2;
        }
    }
    return custos_buf_append(out, s + pos, n - pos);
}

/* Screens one completion text (already restored). When the PII action rewrites, *rewritten receives the new
 * text (arena) or stays NULL. */
static void screen_completion(custos_cf_t *cf, const char *ctx, size_t ctx_len, const char *text, size_t len,
                              cf_check_t *ck, json_object *ents, char **rewritten, size_t *rewritten_len)
{
    if (ctx_len) {
        /* the window with the text before it, so that what straddles the boundary is judged whole */
        custos_buf_t b;
        custos_buf_init(&b, 0);
        if (custos_buf_append(&b, ctx, ctx_len) < 0 || custos_buf_append(&b, text, len) < 0) {
            ck->harm_err = true;
        } else {
            screen(cf, CUSTOS_RAI_COMPLETION, custos_buf_peek(&b), custos_buf_size(&b), CK_HARM, ck);
            /* a term split across the window boundary is found whole; one already reported is not again */
            screen_blocklists(cf, CUSTOS_RAI_COMPLETION, custos_buf_peek(&b), custos_buf_size(&b), ctx_len, ck);
        }
        custos_buf_dispose(&b);
    } else {
        screen(cf, CUSTOS_RAI_COMPLETION, text, len, CK_HARM, ck);
        screen_blocklists(cf, CUSTOS_RAI_COMPLETION, text, len, 0, ck);
    }
    screen_pii(cf, CUSTOS_RAI_COMPLETION, text, len, ck, ents, NULL, 0, -1, rewritten, rewritten_len);
}

static void response_resumed(void *ud)
{
    custos_cf_t *cf = ud;
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_APPLY);
    if (cf->resp_done)
        cf->resp_done(cf->resp_ud);
}

int custos_cf_response_guard(custos_cf_t *cf, const custos_buf_t *body, void (*done)(void *ud), void *ud)
{
    if (!custos_cfgd_has(cf->gd, CUSTOS_RAI_COMPLETION))
        return 0;
    /* collect pass on a copy: the same screening custos_cf_response does, without its effects */
    custos_cf_summary_t s0 = cf->sum;
    custos_cf_grounded_t *g0 = cf->g;
    cf->g = NULL;
    custos_buf_t copy;
    custos_buf_init(&copy, 0);
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_COLLECT);
    if (custos_buf_append(&copy, custos_buf_peek(body), custos_buf_size(body)) == 0)
        (void)custos_cf_response(cf, &copy);
    custos_buf_dispose(&copy);
    cf->g = g0;
    cf->sum = s0;
    cf->resp_done = done;
    cf->resp_ud = ud;
    if (custos_cfgd_start(cf->gd, response_resumed, cf) == 1)
        return 1;
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_APPLY);
    return 0;
}

static json_object *choice_text_node(json_object *choice, bool chat, json_object **parent)
{
    json_object *t = NULL;
    *parent = choice;
    if (chat) {
        json_object *m = NULL;
        if (!json_object_object_get_ex(choice, "message", &m) || !json_object_is_type(m, json_type_object))
            return NULL;
        *parent = m;
        json_object_object_get_ex(m, "content", &t);
    } else {
        json_object_object_get_ex(choice, "text", &t);
    }
    return t && json_object_is_type(t, json_type_string) ? t : NULL;
}

/* Groundedness of one answer (cf_grounded.h). Returns its outcome as an object: "ungrounded_material" (the
 * annotation, when the check ran) and "block" (present when the answer must be withheld); NULL when inactive.
 * idx >= 0: the text collected for stream choice idx; else text[0..len). */
static json_object *grounded_run(custos_cf_t *cf, int idx, const char *text, size_t len)
{
    if (!custos_cf_grounded_active(cf->g))
        return NULL;
    json_object *o = json_object_new_object();
    bool block = false, det = false;
    int rc = !o         ? CUSTOS_ENOMEM
             : idx >= 0 ? custos_cf_grounded_check_stream(cf->g, idx, o, &block, &det)
                        : custos_cf_grounded_check(cf->g, text, len, o, &block, &det);
    if (rc < 0) {
        cf->sum.error = true;
        block = cf->pol->groundedness.action == CUSTOS_RAI_BLOCK; /* fail closed */
    } else if (det || cf->sum.ungrounded < 0) {
        cf->sum.ungrounded = det;
    }
    if (block) {
        cf->sum.completion_filtered = true;
        if (o)
            json_object_object_add(o, "block", json_object_new_boolean(true));
    }
    return o;
}

/* A whole answer's choice c (its message.context citations are sources too) with text node t (may be NULL). */
static json_object *grounded_response(custos_cf_t *cf, json_object *c, json_object *t)
{
    json_object *m = NULL, *ctx = NULL;
    if (json_object_object_get_ex(c, "message", &m) && json_object_is_type(m, json_type_object) &&
        json_object_object_get_ex(m, "context", &ctx))
        custos_cf_grounded_add_context(cf->g, ctx);
    return grounded_run(cf, -1, t ? json_object_get_string(t) : "", t ? (size_t)json_object_get_string_len(t) : 0);
}

int custos_cf_response(custos_cf_t *cf, custos_buf_t *body)
{
    json_object *root = NULL;
    if (custos_json_parse(custos_buf_peek(body), custos_buf_size(body), 128, &root, NULL, NULL) < 0 || !root ||
        !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return 0;
    }
    json_object *choices = NULL;
    int rc = 0;
    if (json_object_object_get_ex(root, "choices", &choices) && json_object_is_type(choices, json_type_array)) {
        size_t n = json_object_array_length(choices);
        for (size_t i = 0; i < n; i++) {
            json_object *c = json_object_array_get_idx(choices, i), *parent;
            if (!c || !json_object_is_type(c, json_type_object))
                continue;
            json_object *t = choice_text_node(c, cf->chat, &parent);
            cf_check_t ck = {0};
            json_object *ents =
                cf->pol->pii[CUSTOS_RAI_COMPLETION] == CUSTOS_RAI_PII_ANNOTATE ? json_object_new_array() : NULL;
            if (t) {
                const char *s = json_object_get_string(t);
                size_t len = (size_t)json_object_get_string_len(t);
                if (cf->n_ph) {
                    custos_buf_t r;
                    custos_buf_init(&r, 0);
                    if (restore_placeholders(cf, s, len, &r) == 0)
                        json_object_set_string_len(t, custos_buf_peek(&r), (int)custos_buf_size(&r));
                    custos_buf_dispose(&r);
                    s = json_object_get_string(t);
                    len = (size_t)json_object_get_string_len(t);
                }
                char *nw = NULL;
                size_t nl = 0;
                screen_completion(cf, NULL, 0, s, len, &ck, ents, &nw, &nl);
                if (nw)
                    json_object_set_string_len(t, nw, (int)nl);
            }
            json_object *gann = cf->g ? grounded_response(cf, c, t) : NULL; /* cf_grounded.h */
            bool filtered = check_filtered(cf->pol, CUSTOS_RAI_COMPLETION, &ck) ||
                            check_failed_blocking(cf->pol, CUSTOS_RAI_COMPLETION, &ck) ||
                            (gann && json_object_object_get_ex(gann, "block", NULL));
            summary_add(cf, CUSTOS_RAI_COMPLETION, &ck, filtered);
            if (filtered) {
                /* content withheld; the other choices finish normally */
                json_object_object_add(c, "finish_reason", json_object_new_string("content_filter"));
                if (cf->chat)
                    json_object_object_add(parent, "content", NULL);
                else
                    json_object_object_add(c, "text", json_object_new_string(""));
                json_object_object_del(c, "logprobs");
                if (cf->chat)
                    json_object_object_del(parent, "tool_calls");
            }
            json_object *a = annotation(cf, CUSTOS_RAI_COMPLETION, &ck, ents), *um = NULL;
            if (!a) {
                json_object_put(gann);
                rc = CUSTOS_ENOMEM;
                break;
            }
            if (gann && json_object_object_get_ex(gann, "ungrounded_material", &um))
                json_object_object_add(a, "ungrounded_material", json_object_get(um));
            json_object_put(gann);
            json_object_object_add(c, "content_filter_results", a);
        }
    }
    if (rc == 0) {
        json_object_object_add(root, "prompt_filter_results", json_object_get(cf->prompt_results));
        custos_buf_t nb;
        custos_buf_init(&nb, 0);
        rc = custos_json_write(&nb, root);
        if (rc == 0) {
            custos_buf_reset(body);
            size_t max = body->max;
            body->max = SIZE_MAX; /* the annotated answer may be a little larger than the upstream's */
            rc = custos_buf_append(body, custos_buf_peek(&nb), custos_buf_size(&nb));
            body->max = max;
        }
        custos_buf_dispose(&nb);
    }
    json_object_put(root);
    return rc;
}

/* ---------- streaming ---------- */

static int write_event_obj(custos_buf_t *out, json_object *o)
{
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_json_write(&b, o);
    if (rc == 0)
        rc = custos_sse_write_event(out, custos_buf_peek(&b), custos_buf_size(&b));
    custos_buf_dispose(&b);
    return rc;
}

int custos_cf_stream_first(custos_cf_t *cf, custos_buf_t *out)
{
    json_object *o = json_object_new_object();
    if (!o)
        return CUSTOS_ENOMEM;
    json_object_object_add(o, "choices", json_object_new_array());
    json_object_object_add(o, "created", json_object_new_int(0));
    json_object_object_add(o, "id", json_object_new_string(""));
    json_object_object_add(o, "model", json_object_new_string(""));
    json_object_object_add(o, "object", json_object_new_string(""));
    json_object_object_add(o, "prompt_filter_results", json_object_get(cf->prompt_results));
    int rc = write_event_obj(out, o);
    json_object_put(o);
    return rc;
}

static cf_choice_t *choice_get(custos_cf_t *cf, int64_t idx)
{
    if (idx < 0 || idx >= CUSTOS_CF_MAX_CHOICES)
        return NULL;
    cf_choice_t *c = cf->choices[idx];
    if (!c) {
        c = custos_arena_alloc(cf->req->arena, sizeof(*c));
        if (!c)
            return NULL;
        memset(c, 0, sizeof(*c));
        custos_buf_init(&c->pending, 0);
        custos_buf_init(&c->context, 0);
        cf->choices[idx] = c;
    }
    c->seen = true;
    return c;
}

static void remember_template(custos_cf_t *cf, json_object *ev)
{
    json_object *o;
    custos_arena_t *a = cf->req->arena;
    if (!cf->id && json_object_object_get_ex(ev, "id", &o) && json_object_is_type(o, json_type_string))
        cf->id = custos_arena_strdup(a, json_object_get_string(o));
    if (!cf->object && json_object_object_get_ex(ev, "object", &o) && json_object_is_type(o, json_type_string))
        cf->object = custos_arena_strdup(a, json_object_get_string(o));
    if (!cf->model && json_object_object_get_ex(ev, "model", &o) && json_object_is_type(o, json_type_string))
        cf->model = custos_arena_strdup(a, json_object_get_string(o));
    if (!cf->fingerprint && json_object_object_get_ex(ev, "system_fingerprint", &o) &&
        json_object_is_type(o, json_type_string))
        cf->fingerprint = custos_arena_strdup(a, json_object_get_string(o));
    if (!cf->created && json_object_object_get_ex(ev, "created", &o) && json_object_is_type(o, json_type_int))
        cf->created = json_object_get_int64(o);
}

/* A chunk for one choice in the upstream's shape. text may be NULL (no content field); finish may be NULL. */
static int write_chunk(custos_cf_t *cf, custos_buf_t *out, int idx, cf_choice_t *c, const char *text, size_t len,
                       const char *finish, json_object *annot)
{
    json_object *o = json_object_new_object(), *ch = json_object_new_object(), *arr = json_object_new_array();
    if (!o || !ch || !arr) {
        json_object_put(o);
        json_object_put(ch);
        json_object_put(arr);
        json_object_put(annot);
        return CUSTOS_ENOMEM;
    }
    json_object_object_add(o, "id", json_object_new_string(cf->id ? cf->id : ""));
    json_object_object_add(o, "object",
                           json_object_new_string(cf->object ? cf->object
                                                  : cf->chat ? "chat.completion.chunk"
                                                             : "text_completion"));
    json_object_object_add(o, "created", json_object_new_int64(cf->created));
    json_object_object_add(o, "model", json_object_new_string(cf->model ? cf->model : ""));
    if (cf->fingerprint)
        json_object_object_add(o, "system_fingerprint", json_object_new_string(cf->fingerprint));
    json_object_object_add(ch, "index", json_object_new_int(idx));
    if (cf->chat) {
        json_object *d = json_object_new_object();
        if (d && c->role_pending) {
            json_object_object_add(d, "role", json_object_new_string("assistant"));
            c->role_pending = false;
        }
        if (d && text)
            json_object_object_add(d, "content", json_object_new_string_len(text, (int)len));
        json_object_object_add(ch, "delta", d);
    } else {
        json_object_object_add(ch, "text", json_object_new_string_len(text ? text : "", text ? (int)len : 0));
    }
    json_object_object_add(ch, "logprobs", NULL);
    json_object_object_add(ch, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    if (annot)
        json_object_object_add(ch, "content_filter_results", annot);
    json_object_array_add(arr, ch);
    json_object_object_add(o, "choices", arr);
    int rc = write_event_obj(out, o);
    json_object_put(o);
    return rc;
}

/* Async mode: an annotation-only frame (azure-wire.md 2.5). */
static int write_async_annotation_at(custos_cf_t *cf, custos_buf_t *out, int idx, uint64_t start, uint64_t end,
                                     uint64_t check, const char *finish, json_object *annot);

static int write_async_annotation(custos_cf_t *cf, custos_buf_t *out, int idx, uint64_t start, uint64_t end,
                                  const char *finish, json_object *annot)
{
    return write_async_annotation_at(cf, out, idx, start, end, end, finish, annot);
}

/* The same with check_offset given (a guard's later verdict on an earlier window: check_offset never decreases). */
static int write_async_annotation_at(custos_cf_t *cf, custos_buf_t *out, int idx, uint64_t start, uint64_t end,
                                     uint64_t check, const char *finish, json_object *annot)
{
    json_object *o = json_object_new_object(), *ch = json_object_new_object(), *arr = json_object_new_array(),
                *off = json_object_new_object();
    if (!o || !ch || !arr || !off) {
        json_object_put(o);
        json_object_put(ch);
        json_object_put(arr);
        json_object_put(off);
        json_object_put(annot);
        return CUSTOS_ENOMEM;
    }
    (void)cf;
    json_object_object_add(o, "id", json_object_new_string(""));
    json_object_object_add(o, "object", json_object_new_string(""));
    json_object_object_add(o, "created", json_object_new_int(0));
    json_object_object_add(o, "model", json_object_new_string(""));
    json_object_object_add(ch, "index", json_object_new_int(idx));
    json_object_object_add(ch, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    json_object_object_add(ch, "content_filter_results", annot);
    json_object_object_add(off, "check_offset", json_object_new_int64((int64_t)check));
    json_object_object_add(off, "start_offset", json_object_new_int64((int64_t)start));
    json_object_object_add(off, "end_offset", json_object_new_int64((int64_t)end));
    json_object_object_add(ch, "content_filter_offsets", off);
    json_object_array_add(arr, ch);
    json_object_object_add(o, "choices", arr);
    json_object_object_add(o, "usage", NULL);
    int rc = write_event_obj(out, o);
    json_object_put(o);
    return rc;
}

static int write_done(custos_cf_t *cf, custos_buf_t *out)
{
    cf->done = true;
    return custos_sse_write_event(out, "[DONE]", 6);
}

/* Where the next window ends in pending (bytes), or 0 when it should wait for more text. final: take it all. */
static size_t window_end(const custos_cf_t *cf, const cf_choice_t *c, bool final)
{
    const char *s = custos_buf_peek(&c->pending);
    size_t n = custos_buf_size(&c->pending);
    if (n == 0)
        return 0;
    /* never cut inside a PII placeholder that may still be completed by the next chunk */
    size_t limit = n;
    if (!final && cf->n_ph) {
        size_t from = n > PLACEHOLDER_MAX ? n - PLACEHOLDER_MAX : 0;
        const char *o = NULL;
        for (const char *q = s + from; (q = memmem(q, (size_t)(s + n - q), "<<", 2)) != NULL; q += 2)
            o = q;
        if (o && !memmem(o, (size_t)(s + n - o), ">>", 2))
            limit = (size_t)(o - s);
    }
    if (final)
        return n;
    if (custos_cf_grounded_holds(cf->g, cf->pol->mode == CUSTOS_RAI_MODE_ASYNC))
        return 0; /* groundedness with action block: the answer is judged whole before any of it is sent */
    size_t cps = utf8_cp_count(s, limit);
    const custos_rai_policy_config_t *pol = cf->pol;
    if (cps < pol->window_min_chars)
        return 0;
    /* the last sentence end after window_min_chars, within window_max_chars */
    size_t min_b = utf8_cp_offset(s, limit, pol->window_min_chars);
    size_t max_b = utf8_cp_offset(s, limit, pol->window_max_chars);
    for (size_t i = max_b; i > min_b; i--) {
        char ch = s[i - 1];
        if (ch == '\n' ||
            ((ch == '.' || ch == '!' || ch == '?' || ch == ';') && (i == limit || s[i] == ' ' || s[i] == '\n')))
            return i;
    }
    if (cps < pol->window_max_chars)
        return 0;
    /* forced cut at the window bound: prefer the last space in its final fifth, so a word or an identifier
     * is not split */
    size_t floor_b = utf8_cp_offset(s, limit, pol->window_max_chars - pol->window_max_chars / 5);
    for (size_t i = max_b; i > floor_b; i--)
        if (s[i - 1] == ' ' || s[i - 1] == '\n')
            return i;
    return max_b;
}

/* Screens the next window of choice idx (len bytes of pending) and releases it (default mode) or annotates it
 * (async mode). Returns 0, 1 when the choice was filtered, or a negative code. */
static int async_guard(custos_cf_t *cf, int idx, uint64_t start, uint64_t end, custos_buf_t *out);

static int release_window(custos_cf_t *cf, int idx, cf_choice_t *c, size_t len, custos_buf_t *out)
{
    /* asynchronous_filter with a completion guard: decided in-process now, the guard's verdict follows (cf_guard.h) */
    bool defer = cf->pol->mode == CUSTOS_RAI_MODE_ASYNC && custos_cfgd_has(cf->gd, CUSTOS_RAI_COMPLETION);
    if (defer)
        custos_cfgd_begin(cf->gd, CUSTOS_CFGD_DEFER);
    const char *s = custos_buf_peek(&c->pending);
    custos_buf_t restored;
    custos_buf_init(&restored, 0);
    int rc = 0;
    if (cf->n_ph && cf->pol->mode == CUSTOS_RAI_MODE_DEFAULT) {
        if ((rc = restore_placeholders(cf, s, len, &restored)) < 0)
            goto out;
        s = custos_buf_peek(&restored);
    }
    size_t slen = cf->n_ph && cf->pol->mode == CUSTOS_RAI_MODE_DEFAULT ? custos_buf_size(&restored) : len;
    cf_check_t ck = {0};
    json_object *ents = cf->pol->pii[CUSTOS_RAI_COMPLETION] == CUSTOS_RAI_PII_ANNOTATE ? json_object_new_array() : NULL;
    char *nw = NULL;
    size_t nl = 0;
    screen_completion(cf, custos_buf_peek(&c->context), custos_buf_size(&c->context), s, slen, &ck, ents,
                      cf->pol->mode == CUSTOS_RAI_MODE_DEFAULT ? &nw : NULL, &nl);
    bool filtered = check_filtered(cf->pol, CUSTOS_RAI_COMPLETION, &ck) ||
                    check_failed_blocking(cf->pol, CUSTOS_RAI_COMPLETION, &ck);
    summary_add(cf, CUSTOS_RAI_COMPLETION, &ck, filtered);
    check_merge(&c->total, &ck);
    if (cf->g && !filtered) /* the text as the client gets it, for the groundedness check at the choice's end */
        custos_cf_grounded_stream_text(cf->g, idx, nw ? nw : s, nw ? nl : slen);
    uint64_t start = c->screened_cp, end = start + utf8_cp_count(s, slen);
    json_object *annot = annotation(cf, CUSTOS_RAI_COMPLETION, &ck, ents);
    if (!annot) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    if (cf->pol->mode == CUSTOS_RAI_MODE_ASYNC)
        rc = write_async_annotation(cf, out, idx, start, end, filtered ? "content_filter" : NULL, annot);
    else if (filtered)
        rc = write_chunk(cf, out, idx, c, NULL, 0, "content_filter", annot);
    else
        rc = write_chunk(cf, out, idx, c, nw ? nw : s, nw ? nl : slen, NULL, annot);
    if (rc < 0)
        goto out;
    c->screened_cp = end;
    /* keep the tail as context for the next window */
    if (cf->pol->context_chars) {
        if ((rc = custos_buf_append(&c->context, s, slen)) < 0)
            goto out;
        size_t keep = utf8_tail(custos_buf_peek(&c->context), custos_buf_size(&c->context), cf->pol->context_chars);
        custos_buf_consume(&c->context, keep);
    }
    custos_buf_consume(&c->pending, len);
    if (filtered) {
        c->done = c->filtered = true;
        cf->n_filtered++;
        rc = 1;
    } else if (defer) {
        rc = async_guard(cf, idx, start, end, out);
    }
out:
    if (defer)
        custos_cfgd_begin(cf->gd, CUSTOS_CFGD_NONE);
    custos_buf_dispose(&restored);
    return rc;
}

/* ---------- guard verdicts as later annotation frames (asynchronous_filter, cf_guard.h) ---------- */

typedef struct async_win {
    custos_cf_t *cf;
    int idx;
    uint64_t start, end; /* the window, in code points of the choice's text */
} async_win_t;

/* The annotation frame of a guard verdict on an earlier window; a filtered one ends the stream. Returns 0, 1 (the
 * stream ended for the client) or a negative code. */
static int async_frame(custos_cf_t *cf, const async_win_t *a, const custos_cfgd_async_t *r, custos_buf_t *out)
{
    cf_choice_t *c = cf->choices[a->idx];
    if (cf->done || !c || c->filtered) /* a choice that finished normally still gets its late frames */
        return 0;
    static const char *const cat[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    json_object *annot = json_object_new_object();
    if (!annot)
        return CUSTOS_ENOMEM;
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        if (r->harm_block[k]) /* what the guard filtered (its severity: at least the threshold) */
            json_object_object_add(annot, cat[k], sev_obj(true, r->threshold[k]));
    custos_cfgd_annotate(&r->note, annot);
    cf->sum.guard_asked = true;
    cf->sum.guard_error |= r->note.err;
    cf->sum.guard_disagreed |= r->note.disagreed;
    int rc = write_async_annotation_at(cf, out, a->idx, a->start, a->end, c->screened_cp,
                                       r->block ? "content_filter" : NULL, annot);
    if (rc < 0 || !r->block)
        return rc;
    c->done = c->filtered = true;
    cf->n_filtered++;
    cf->sum.completion_filtered = true;
    rc = write_done(cf, out); /* as for a violation found in-process: the stream stops for every choice */
    return rc < 0 ? rc : 1;
}

static int stream_replay(custos_cf_t *cf, custos_buf_t *out);

static void async_verdict(void *ud, const custos_cfgd_async_t *r)
{
    async_win_t *a = ud;
    custos_cf_t *cf = a->cf;
    custos_buf_t out;
    custos_buf_init(&out, 0);
    cf->apending--;
    int state = async_frame(cf, a, r, &out);
    if (state == 0 && !cf->apending && cf->swait) /* the [DONE] waited for the last verdict */
        state = stream_replay(cf, &out);
    else if (state == 0 && cf->swait)
        state = 2; /* the [DONE] still waits for other verdicts: the upstream stays paused */
    if (cf->done && cf->swait) {
        custos_buf_reset(&cf->squeue);
        cf->swait = false;
    }
    if (cf->sresume && (custos_buf_size(&out) || state))
        cf->sresume(cf->sud, custos_buf_peek(&out), custos_buf_size(&out), state);
    custos_buf_dispose(&out);
}

static int async_guard(custos_cf_t *cf, int idx, uint64_t start, uint64_t end, custos_buf_t *out)
{
    async_win_t *a = custos_arena_alloc(cf->req->arena, sizeof(*a)); /* lives with the request */
    if (!a)
        return 0; /* the in-process decision stands */
    *a = (async_win_t){cf, idx, start, end};
    custos_cfgd_async_t now;
    int d = custos_cfgd_start_deferred(cf->gd, async_verdict, a, &now);
    if (d == 1)
        cf->apending++;
    return d == 2 ? async_frame(cf, a, &now, out) : 0;
}

/* Groundedness at a stream choice's end (cf_grounded.h): with the text held (action block), the whole answer is
 * judged before it is released and withheld when ungrounded; otherwise the released text is judged and the result
 * goes out in an annotation frame of its own. Returns 0, 1 (choice filtered) or a negative code. */
static int grounded_stream_end(custos_cf_t *cf, int idx, cf_choice_t *c, bool held, custos_buf_t *out)
{
    bool async = cf->pol->mode == CUSTOS_RAI_MODE_ASYNC;
    int rc = 0;
    if (held) { /* pending holds the whole answer: collect it (placeholders restored) like a released window */
        custos_buf_t r;
        custos_buf_init(&r, 0);
        if (cf->n_ph)
            rc = restore_placeholders(cf, custos_buf_peek(&c->pending), custos_buf_size(&c->pending), &r);
        else
            rc = custos_buf_append(&r, custos_buf_peek(&c->pending), custos_buf_size(&c->pending));
        if (rc == 0)
            custos_cf_grounded_stream_text(cf->g, idx, custos_buf_peek(&r), custos_buf_size(&r));
        custos_buf_dispose(&r);
        if (rc < 0)
            return rc;
    }
    json_object *g = grounded_run(cf, idx, NULL, 0), *um = NULL, *annot = json_object_new_object();
    if (!g || !annot) {
        json_object_put(g);
        json_object_put(annot);
        return g ? CUSTOS_ENOMEM : 0;
    }
    bool block = json_object_object_get_ex(g, "block", NULL);
    if (json_object_object_get_ex(g, "ungrounded_material", &um))
        json_object_object_add(annot, "ungrounded_material", json_object_get(um));
    json_object_put(g);
    if (held && !block) {
        c->g_annot = annot; /* sent once the text is released */
        return 0;
    }
    if (block && held) {
        custos_buf_consume(&c->pending, custos_buf_size(&c->pending));
        c->done = c->filtered = true;
        cf->n_filtered++;
        rc = write_chunk(cf, out, idx, c, NULL, 0, "content_filter", annot);
        return rc < 0 ? rc : 1;
    }
    if (async)
        return write_async_annotation(cf, out, idx, 0, c->screened_cp, block ? "content_filter" : NULL, annot);
    /* annotate (or block without holding, which cannot happen in default mode): an annotation-only chunk */
    return write_chunk(cf, out, idx, c, NULL, 0, NULL, annot);
}

static int flush_choice(custos_cf_t *cf, int idx, cf_choice_t *c, bool final, custos_buf_t *out)
{
    size_t end;
    bool holds = custos_cf_grounded_holds(cf->g, cf->pol->mode == CUSTOS_RAI_MODE_ASYNC);
    /* held text past the detector's cap cannot be checked: judged now (the check fails, the choice is withheld) */
    bool over = holds && custos_buf_size(&c->pending) > CUSTOS_CF_GROUNDED_MAX_HELD;
    bool ending = (c->ending || over) && !c->done && custos_cf_grounded_active(cf->g);
    c->ending = false;
    bool held = ending && holds;
    if (held) {
        int rc = grounded_stream_end(cf, idx, c, true, out);
        if (rc != 0)
            return rc;
    }
    while (!c->done && (end = window_end(cf, c, final)) > 0) {
        int rc = release_window(cf, idx, c, end, out);
        if (rc != 0)
            return rc;
    }
    if (ending && !held && !c->done)
        return grounded_stream_end(cf, idx, c, false, out);
    if (c->g_annot) {
        json_object *a = c->g_annot;
        c->g_annot = NULL;
        return write_chunk(cf, out, idx, c, NULL, 0, NULL, a);
    }
    return 0;
}

/* The stream ends for the client once every choice asked for was filtered (or, in async mode, any). */
static bool all_filtered(const custos_cf_t *cf)
{
    return cf->pol->mode == CUSTOS_RAI_MODE_ASYNC ? cf->n_filtered > 0 : cf->n_filtered >= cf->n;
}

/* ---------- stream fast path ----------
 * Most upstream events are {"id":..,"object":..,"created":..,"model":..,"choices":[{"index":0,"delta":{"content":
 * "tok"},"finish_reason":null}]}. After custos_json_validate has accepted the event (the same strict grammar as the
 * full parse), a small walker extracts index and text of each choice, and the event is handled without building a
 * json-c tree. Anything the walker does not handle exactly like the full path (role or tool deltas, a finish reason,
 * template fields not yet remembered, escapes json-c treats specially, duplicate keys, unusual types) makes it give
 * up, and the full path runs. Input is validated JSON, so the walker only needs to find value boundaries. */

#define FAST_MAX_CHOICES 8
#define FAST_MAX_TEXT 4096 /* raw bytes of one choice's text handled on the fast path */

typedef struct fast_choice {
    int64_t idx;
    const char *t; /* raw string contents (between the quotes) or NULL */
    size_t tn;
} fast_choice_t;

static const char *fj_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at '"': returns the byte after the closing quote; *s, *n: the raw contents; *esc: a backslash was seen. */
static const char *fj_string(const char *p, const char *e, const char **s, size_t *n, bool *esc)
{
    const char *q = ++p;
    for (;;) { /* the next quote not escaped by an odd run of backslashes */
        const char *qq = memchr(q, '"', (size_t)(e - q));
        if (!qq) {
            q = e;
            break;
        }
        size_t bs = 0;
        while (qq - bs > p && qq[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        q = qq;
        if (bs % 2 == 0)
            break;
        q++;
    }
    *esc = memchr(p, '\\', (size_t)(q - p)) != NULL;
    *s = p;
    *n = (size_t)(q - p);
    return q + 1;
}

/* Skips one (valid) value at p; returns the byte after it. */
static const char *fj_skip(const char *p, const char *e)
{
    const char *s;
    size_t n;
    bool esc;
    if (*p == '"')
        return fj_string(p, e, &s, &n, &esc);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                p = fj_string(p, e, &s, &n, &esc);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return e;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
        p++;
    return p;
}

static bool fj_key(const char *s, size_t n, const char *k)
{
    return strlen(k) == n && memcmp(s, k, n) == 0;
}

/* A plain integer literal (what json-c types json_type_int) of at most 18 digits: *v. */
static bool fj_int(const char *p, const char *end, int64_t *v)
{
    bool neg = p < end && *p == '-';
    p += neg;
    if (end - p < 1 || end - p > 18)
        return false;
    int64_t x = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        x = x * 10 + (*p - '0');
    }
    *v = neg ? -x : x;
    return true;
}

/* One choice object at p ('{'). Returns the byte after it, or NULL to give up. */
static const char *fast_choice(const custos_cf_t *cf, const char *p, const char *e, fast_choice_t *fc)
{
    bool seen_idx = false, seen_delta = false, seen_text = false, seen_fr = false;
    p = fj_ws(p + 1, e);
    if (p < e && *p == '}')
        return p + 1;
    while (p < e) {
        const char *k;
        size_t kn;
        bool esc;
        p = fj_ws(fj_string(p, e, &k, &kn, &esc), e) + 1; /* past ':' */
        if (esc)
            return NULL;
        p = fj_ws(p, e);
        const char *vend = fj_skip(p, e);
        if (fj_key(k, kn, "index")) {
            if (seen_idx || !fj_int(p, vend, &fc->idx))
                return NULL;
            seen_idx = true;
        } else if (fj_key(k, kn, "finish_reason")) {
            if (seen_fr || vend - p != 4 || memcmp(p, "null", 4) != 0)
                return NULL;
            seen_fr = true;
        } else if (cf->chat && fj_key(k, kn, "delta")) {
            if (seen_delta || *p != '{')
                return NULL;
            seen_delta = true;
            bool seen_content = false;
            const char *d = fj_ws(p + 1, e);
            while (d < vend - 1) {
                d = fj_ws(fj_string(d, e, &k, &kn, &esc), e) + 1;
                if (esc)
                    return NULL;
                d = fj_ws(d, e);
                const char *dend = fj_skip(d, e);
                bool null = dend - d == 4 && memcmp(d, "null", 4) == 0;
                if (fj_key(k, kn, "content")) {
                    if (seen_content || (*d != '"' && !null))
                        return NULL;
                    seen_content = true;
                    if (*d == '"')
                        fj_string(d, e, &fc->t, &fc->tn, &esc);
                } else if (fj_key(k, kn, "role") || !null) {
                    return NULL; /* role or a tool / function call delta */
                }
                d = fj_ws(dend, e);
                if (*d == ',')
                    d = fj_ws(d + 1, e);
            }
        } else if (!cf->chat && fj_key(k, kn, "text")) {
            if (seen_text)
                return NULL;
            seen_text = true;
            if (*p == '"')
                fj_string(p, e, &fc->t, &fc->tn, &esc);
        }
        p = fj_ws(vend, e);
        if (p < e && *p == '}')
            return p + 1;
        p = fj_ws(p + 1, e); /* past ',' */
    }
    return NULL;
}

/* Walks a validated event. Returns the number of choices (1..FAST_MAX_CHOICES) or 0 to give up. */
static size_t fast_parse(const custos_cf_t *cf, const char *p, const char *e, fast_choice_t *fc)
{
    size_t n = 0;
    bool seen_choices = false;
    p = fj_ws(p, e);
    if (p >= e || *p != '{')
        return 0;
    p = fj_ws(p + 1, e);
    while (p < e && *p != '}') {
        const char *k;
        size_t kn;
        bool esc;
        p = fj_ws(fj_string(p, e, &k, &kn, &esc), e) + 1;
        if (esc)
            return 0;
        p = fj_ws(p, e);
        const char *vend = fj_skip(p, e);
        bool str = *p == '"';
        if (fj_key(k, kn, "choices")) {
            if (seen_choices || *p != '[')
                return 0;
            seen_choices = true;
            const char *q = fj_ws(p + 1, e);
            while (q < vend - 1) {
                if (*q != '{' || n == FAST_MAX_CHOICES)
                    return 0;
                fast_choice_t *c = &fc[n];
                c->idx = (int64_t)n;
                c->t = NULL;
                c->tn = 0;
                if (!(q = fast_choice(cf, q, e, c)) || c->tn > FAST_MAX_TEXT)
                    return 0;
                n++;
                q = fj_ws(q, e);
                if (*q == ',')
                    q = fj_ws(q + 1, e);
            }
        } else if (fj_key(k, kn, "prompt_filter_results") || fj_key(k, kn, "prompt_annotations") ||
                   (fj_key(k, kn, "id") && str && !cf->id) || (fj_key(k, kn, "object") && str && !cf->object) ||
                   (fj_key(k, kn, "model") && str && !cf->model) ||
                   (fj_key(k, kn, "system_fingerprint") && str && !cf->fingerprint)) {
            return 0; /* the upstream's prompt annotations, or a field remember_template would take */
        } else if (fj_key(k, kn, "created") && !cf->created) {
            if (*p == '-' || (*p >= '0' && *p <= '9'))
                return 0; /* a number json-c may type as int: let the full path decide */
        }
        p = fj_ws(vend, e);
        if (*p == ',')
            p = fj_ws(p + 1, e);
    }
    return n;
}

/* Decodes the raw contents of a JSON string (validated) into dst (capacity >= n) as json-c does. Returns the
 * length, or -1 to give up (\u0000 and surrogate escapes, which json-c treats specially). */
static long fast_unescape(const char *s, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\') {
            dst[o++] = c;
            continue;
        }
        c = s[++i];
        switch (c) {
        case 'b':
            dst[o++] = '\b';
            break;
        case 'f':
            dst[o++] = '\f';
            break;
        case 'n':
            dst[o++] = '\n';
            break;
        case 'r':
            dst[o++] = '\r';
            break;
        case 't':
            dst[o++] = '\t';
            break;
        case 'u': {
            unsigned v = 0;
            for (int k = 1; k <= 4; k++) {
                char h = s[i + (size_t)k];
                v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            i += 4;
            if (v == 0 || (v >= 0xd800 && v <= 0xdfff))
                return -1;
            if (v < 0x80) {
                dst[o++] = (char)v;
            } else if (v < 0x800) { /* 2 bytes from 6 escaped: fits */
                dst[o++] = (char)(0xc0 | (v >> 6));
                dst[o++] = (char)(0x80 | (v & 0x3f));
            } else {
                dst[o++] = (char)(0xe0 | (v >> 12));
                dst[o++] = (char)(0x80 | ((v >> 6) & 0x3f));
                dst[o++] = (char)(0x80 | (v & 0x3f));
            }
            break;
        }
        default: /* '"', '\\', '/' */
            dst[o++] = c;
            break;
        }
    }
    return (long)o;
}

static int stream_event(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out, bool fast);
static int stream_precheck(custos_cf_t *cf, json_object *choices);
static int squeue_add(custos_cf_t *cf, const char *data, size_t len);

int custos_cf_stream_event(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out)
{
    return stream_event(cf, data, len, out, true);
}

int custos_cf_stream_event_full(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out)
{
    return stream_event(cf, data, len, out, false);
}

/* The fast path: 1 when it handled the event (*rc set as custos_cf_stream_event would return), 0 to fall back. */
static int stream_fast(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out, int *ret)
{
    fast_choice_t fc[FAST_MAX_CHOICES];
    if (len > INT32_MAX || custos_json_validate(data, len, 64, NULL, NULL) < 0)
        return 0;
    size_t n = fast_parse(cf, data, data + len, fc);
    if (n == 0)
        return 0;
    char text[FAST_MAX_TEXT];
    for (size_t i = 0; i < n; i++)
        if (fc[i].t && fast_unescape(fc[i].t, fc[i].tn, text) < 0)
            return 0;
    /* from here on exactly what the full path does for text-only deltas without a finish reason */
    int rc = 0;
    if (cf->pol->mode == CUSTOS_RAI_MODE_ASYNC)
        rc = custos_sse_write_event(out, data, len);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        cf_choice_t *c = choice_get(cf, fc[i].idx);
        if (!c) {
            cf->sum.error = true;
            continue;
        }
        if (c->done)
            continue;
        if (fc[i].t)
            rc = custos_buf_append(&c->pending, text, (size_t)fast_unescape(fc[i].t, fc[i].tn, text));
        if (rc < 0)
            break;
        if ((rc = flush_choice(cf, (int)fc[i].idx, c, false, out)) < 0)
            break;
        rc = 0;
    }
    if (rc < 0) {
        *ret = rc;
        return 1;
    }
    if (all_filtered(cf)) {
        rc = write_done(cf, out);
        *ret = rc < 0 ? rc : 1;
        return 1;
    }
    *ret = 0;
    return 1;
}

static int stream_event(custos_cf_t *cf, const char *data, size_t len, custos_buf_t *out, bool fast)
{
    if (cf->done)
        return 1;
    if (cf->swait) /* a window waits for a guard verdict: later events wait behind it (cf_guard.h) */
        return squeue_add(cf, data, len) < 0 ? CUSTOS_ENOMEM : 2;
    bool async = cf->pol->mode == CUSTOS_RAI_MODE_ASYNC;
    bool guarded = !async && !cf->sreplay && custos_cfgd_has(cf->gd, CUSTOS_RAI_COMPLETION);
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0 && async && custos_cfgd_has(cf->gd, CUSTOS_RAI_COMPLETION)) {
        if (!cf->aflushed) { /* the held text's windows, then [DONE] once every verdict is in */
            cf->aflushed = true;
            int rc = custos_cf_stream_end(cf, false, out);
            if (rc < 0 || cf->done)
                return rc < 0 ? rc : 1;
        }
        if (cf->apending) {
            cf->swait = true;
            return squeue_add(cf, data, len) < 0 ? CUSTOS_ENOMEM : 2;
        }
        int rc = write_done(cf, out);
        return rc < 0 ? rc : 1;
    }
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        int w = guarded ? stream_precheck(cf, NULL) : 0;
        if (w == 1)
            return squeue_add(cf, data, len) < 0 ? CUSTOS_ENOMEM : 2;
        cf->sfinal_checked = true;
        int rc = custos_cf_stream_end(cf, true, out);
        cf->sfinal_checked = false;
        return rc < 0 ? rc : 1;
    }
    if (!cf->completion_active)
        return custos_sse_write_event(out, data, len); /* nothing to screen: relayed as it is */
    int fret;
    if (fast && !custos_cfgd_has(cf->gd, CUSTOS_RAI_COMPLETION) && stream_fast(cf, data, len, out, &fret))
        return fret;
    json_object *ev = NULL;
    if (custos_json_parse(data, len, 64, &ev, NULL, NULL) < 0 || !ev || !json_object_is_type(ev, json_type_object)) {
        /* not JSON: cannot be screened, so it is not passed on (fail closed); counted as a filter error */
        json_object_put(ev);
        cf->sum.error = true;
        return 0;
    }
    json_object *choices = NULL;
    int rc = 0;
    if (!json_object_object_get_ex(ev, "choices", &choices) || !json_object_is_type(choices, json_type_array) ||
        json_object_array_length(choices) == 0) {
        /* no choices: the upstream's own prompt annotations are replaced by ours; anything else (usage, error)
         * carries no completion text and passes */
        if (!json_object_object_get_ex(ev, "prompt_filter_results", NULL) &&
            !json_object_object_get_ex(ev, "prompt_annotations", NULL))
            rc = custos_sse_write_event(out, data, len);
        json_object_put(ev);
        return rc;
    }
    remember_template(cf, ev);
    if (guarded && stream_precheck(cf, choices) == 1) { /* guard verdicts awaited: this event waits */
        json_object_put(ev);
        return squeue_add(cf, data, len) < 0 ? CUSTOS_ENOMEM : 2;
    }
    if (async)
        rc = custos_sse_write_event(out, data, len); /* text flows at once; annotations follow */
    size_t n = json_object_array_length(choices);
    for (size_t i = 0; i < n && rc >= 0; i++) {
        json_object *ch = json_object_array_get_idx(choices, i), *o = NULL, *delta = NULL, *t = NULL;
        if (!ch || !json_object_is_type(ch, json_type_object))
            continue;
        int64_t idx = json_object_object_get_ex(ch, "index", &o) ? json_object_get_int64(o) : (int64_t)i;
        cf_choice_t *c = choice_get(cf, idx);
        if (!c) {
            cf->sum.error = true; /* index beyond CUSTOS_CF_MAX_CHOICES: dropped */
            continue;
        }
        if (c->done)
            continue;
        if (cf->chat) {
            if (json_object_object_get_ex(ch, "delta", &delta) && json_object_is_type(delta, json_type_object)) {
                if (json_object_object_get_ex(delta, "role", NULL))
                    c->role_pending = true;
                json_object *ctx = NULL; /* "on your data" citations: sources for groundedness */
                if (cf->g && json_object_object_get_ex(delta, "context", &ctx))
                    custos_cf_grounded_add_context(cf->g, ctx);
                json_object_object_get_ex(delta, "content", &t);
            }
        } else {
            json_object_object_get_ex(ch, "text", &t);
        }
        if (t && json_object_is_type(t, json_type_string))
            rc = custos_buf_append(&c->pending, json_object_get_string(t), (size_t)json_object_get_string_len(t));
        if (rc < 0)
            break;
        bool other = false; /* tool / function call deltas: passed on in order, after the text before them */
        if (delta) {
            json_object_object_foreach(delta, k, v)
            {
                (void)v;
                if (strcmp(k, "role") != 0 && strcmp(k, "content") != 0 && !json_object_is_type(v, json_type_null))
                    other = true;
            }
        }
        json_object *fr = NULL;
        json_object_object_get_ex(ch, "finish_reason", &fr);
        bool finish = fr && json_object_is_type(fr, json_type_string);
        c->ending = finish;
        if ((rc = flush_choice(cf, (int)idx, c, finish || other, out)) < 0)
            break;
        rc = 0;
        if (c->done)
            continue; /* filtered */
        if (other && !async) {
            json_object *copy = NULL;
            if (json_object_deep_copy(ch, &copy, NULL) < 0 || !copy) {
                rc = CUSTOS_ENOMEM;
                break;
            }
            json_object *d2 = NULL;
            if (json_object_object_get_ex(copy, "delta", &d2)) {
                json_object_object_del(d2, "content");
                if (c->role_pending)
                    c->role_pending = false;
                else
                    json_object_object_del(d2, "role");
            }
            json_object_object_del(copy, "logprobs");
            json_object *wrap = json_object_new_object(), *arr = json_object_new_array();
            json_object_object_add(wrap, "id", json_object_new_string(cf->id ? cf->id : ""));
            json_object_object_add(wrap, "object", json_object_new_string(cf->object ? cf->object : ""));
            json_object_object_add(wrap, "created", json_object_new_int64(cf->created));
            json_object_object_add(wrap, "model", json_object_new_string(cf->model ? cf->model : ""));
            json_object_array_add(arr, copy);
            json_object_object_add(wrap, "choices", arr);
            rc = write_event_obj(out, wrap);
            json_object_put(wrap);
            if (rc < 0)
                break;
            if (finish)
                c->done = true;
            continue;
        }
        if (finish && !c->done) {
            if (!async && (rc = write_chunk(cf, out, (int)idx, c, NULL, 0, json_object_get_string(fr), NULL)) < 0)
                break;
            c->done = true;
        }
    }
    json_object_put(ev);
    if (rc < 0)
        return rc;
    if (all_filtered(cf)) {
        rc = write_done(cf, out);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

/* ---------- the guard cascade in default-mode streams (cf_guard.h) ---------- */

static int squeue_add(custos_cf_t *cf, const char *data, size_t len)
{
    uint32_t l = (uint32_t)len;
    if (len > UINT32_MAX)
        return CUSTOS_ETOOBIG;
    int rc = custos_buf_append(&cf->squeue, &l, sizeof(l));
    return rc ? rc : custos_buf_append(&cf->squeue, data, len);
}

/* The windows choice idx would release with t[0..tn) appended (final: all of it), screened as release_window screens
 * them, in the guard collect pass: nothing of the choice changes. */
static int precheck_choice(custos_cf_t *cf, int64_t idx, const char *t, size_t tn, bool final)
{
    cf_choice_t *c = choice_get(cf, idx);
    if (!c || c->done)
        return 0;
    cf_choice_t tmp = *c;
    custos_buf_init(&tmp.pending, 0);
    custos_buf_init(&tmp.context, 0);
    int rc = custos_buf_append(&tmp.pending, custos_buf_peek(&c->pending), custos_buf_size(&c->pending));
    rc = rc ? rc : custos_buf_append(&tmp.pending, t, tn);
    rc = rc ? rc : custos_buf_append(&tmp.context, custos_buf_peek(&c->context), custos_buf_size(&c->context));
    size_t end;
    while (rc == 0 && (end = window_end(cf, &tmp, final)) > 0) {
        custos_buf_t r;
        custos_buf_init(&r, 0);
        const char *w = custos_buf_peek(&tmp.pending);
        size_t wl = end;
        if (cf->n_ph) {
            rc = restore_placeholders(cf, w, end, &r);
            w = custos_buf_peek(&r);
            wl = custos_buf_size(&r);
        }
        if (rc == 0) {
            cf_check_t ck = {0};
            screen_completion(cf, custos_buf_peek(&tmp.context), custos_buf_size(&tmp.context), w, wl, &ck, NULL, NULL,
                              NULL);
            if (cf->pol->context_chars && (rc = custos_buf_append(&tmp.context, w, wl)) == 0)
                custos_buf_consume(&tmp.context, utf8_tail(custos_buf_peek(&tmp.context), custos_buf_size(&tmp.context),
                                                           cf->pol->context_chars));
            custos_buf_consume(&tmp.pending, end);
        }
        custos_buf_dispose(&r);
    }
    custos_buf_dispose(&tmp.pending);
    custos_buf_dispose(&tmp.context);
    return rc;
}

static void stream_resumed(void *ud);

/* Before an event (choices; NULL: [DONE], every choice ends) is processed: collects the guard questions of the windows
 * it would release and asks them. Returns 1 when verdicts are awaited, else 0 (the apply pass is set). */
static int stream_precheck(custos_cf_t *cf, json_object *choices)
{
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_COLLECT);
    int rc = 0;
    size_t n = choices ? json_object_array_length(choices) : 0;
    for (int i = 0; !choices && i < CUSTOS_CF_MAX_CHOICES && rc == 0; i++)
        if (cf->choices[i] && !cf->choices[i]->done)
            rc = precheck_choice(cf, i, "", 0, true);
    for (size_t i = 0; i < n && rc == 0; i++) { /* the text and end of each choice, as stream_event reads them */
        json_object *ch = json_object_array_get_idx(choices, i), *o = NULL, *delta = NULL, *t = NULL, *fr = NULL;
        if (!ch || !json_object_is_type(ch, json_type_object))
            continue;
        int64_t idx = json_object_object_get_ex(ch, "index", &o) ? json_object_get_int64(o) : (int64_t)i;
        bool other = false;
        if (cf->chat) {
            if (json_object_object_get_ex(ch, "delta", &delta) && json_object_is_type(delta, json_type_object)) {
                json_object_object_get_ex(delta, "content", &t);
                json_object_object_foreach(delta, k, v)
                {
                    if (strcmp(k, "role") != 0 && strcmp(k, "content") != 0 && !json_object_is_type(v, json_type_null))
                        other = true;
                }
            }
        } else {
            json_object_object_get_ex(ch, "text", &t);
        }
        bool str = t && json_object_is_type(t, json_type_string);
        bool finish =
            json_object_object_get_ex(ch, "finish_reason", &fr) && fr && json_object_is_type(fr, json_type_string);
        rc = precheck_choice(cf, idx, str ? json_object_get_string(t) : "",
                             str ? (size_t)json_object_get_string_len(t) : 0, finish || other);
    }
    if (rc == 0 && custos_cfgd_start(cf->gd, stream_resumed, cf) == 1) {
        cf->swait = true;
        return 1;
    }
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_APPLY);
    return 0;
}

/* The verdicts are in: the waiting events are processed in order (the first with the verdicts), until the stream ends
 * for the client or another window waits. */
static void stream_resumed(void *ud)
{
    custos_cf_t *cf = ud;
    custos_buf_t out;
    custos_buf_init(&out, 0);
    int state = stream_replay(cf, &out);
    if (cf->sresume)
        cf->sresume(cf->sud, custos_buf_peek(&out), custos_buf_size(&out), state);
    custos_buf_dispose(&out);
}

/* Processes the waiting events into out. Returns the state for custos_cf_stream_on_resume's callback. */
static int stream_replay(custos_cf_t *cf, custos_buf_t *out)
{
    custos_buf_t q = cf->squeue;
    custos_buf_init(&cf->squeue, 0);
    cf->swait = false;
    custos_cfgd_begin(cf->gd, CUSTOS_CFGD_APPLY);
    int state = 0;
    size_t pos = 0;
    bool first = true;
    while (pos + sizeof(uint32_t) <= custos_buf_size(&q)) {
        uint32_t l;
        memcpy(&l, custos_buf_peek(&q) + pos, sizeof(l));
        pos += sizeof(l);
        cf->sreplay = first;
        first = false;
        int rc = stream_event(cf, custos_buf_peek(&q) + pos, l, out, false);
        cf->sreplay = false;
        pos += l;
        if (rc < 0 || rc == 1) {
            state = rc < 0 ? rc : 1;
            break;
        }
    }
    if (state == 0 && cf->swait)
        state = 2;
    custos_buf_dispose(&q);
    return state;
}

void custos_cf_stream_on_resume(custos_cf_t *cf, void (*fn)(void *ud, const char *data, size_t len, int state),
                                void *ud)
{
    cf->sresume = fn;
    cf->sud = ud;
}

int custos_cf_stream_end(custos_cf_t *cf, bool complete, custos_buf_t *out)
{
    if (cf->swait) { /* the upstream ended while a window waited for a guard: the in-process rule decides */
        custos_cfgd_begin(cf->gd, CUSTOS_CFGD_COLLECT); /* cancels the questions */
        custos_buf_reset(&cf->squeue);
        cf->swait = false;
    }
    if (!cf->sfinal_checked)
        custos_cfgd_begin(cf->gd, CUSTOS_CFGD_NONE);
    if (cf->done)
        return 0;
    for (int i = 0; i < CUSTOS_CF_MAX_CHOICES; i++) {
        cf_choice_t *c = cf->choices[i];
        if (!c || c->done)
            continue;
        c->ending = true;
        int rc = flush_choice(cf, i, c, true, out);
        if (rc < 0)
            return rc;
    }
    if (!complete)
        return 0;
    return write_done(cf, out);
}

bool custos_cf_stream_done(const custos_cf_t *cf)
{
    return cf->done;
}

const custos_cf_summary_t *custos_cf_summary(const custos_cf_t *cf)
{
    return &cf->sum;
}

bool custos_cf_message_at(json_object *msgs, size_t i, const char **role, json_object **content)
{
    json_object *m = json_object_array_get_idx(msgs, i), *r = NULL;
    *role = "";
    *content = NULL;
    if (!m || !json_object_is_type(m, json_type_object))
        return false;
    if (json_object_object_get_ex(m, "role", &r) && json_object_is_type(r, json_type_string))
        *role = json_object_get_string(r);
    json_object_object_get_ex(m, "content", content);
    return true;
}

bool custos_cf_role_is_source(const char *role)
{
    return strcmp(role, "tool") == 0 || strcmp(role, "function") == 0;
}

void custos_cf_release(custos_cf_t *cf)
{
    if (!cf)
        return;
    for (int i = 0; i < CUSTOS_CF_MAX_CHOICES; i++)
        if (cf->choices[i]) {
            custos_buf_dispose(&cf->choices[i]->pending);
            custos_buf_dispose(&cf->choices[i]->context);
            json_object_put(cf->choices[i]->g_annot);
            cf->choices[i] = NULL;
        }
    json_object_put(cf->prompt_results);
    cf->prompt_results = NULL;
    custos_blocklists_unref(cf->bl);
    cf->bl = NULL;
    custos_cf_grounded_free(cf->g);
    cf->g = NULL;
    custos_cfgd_free(cf->gd); /* cancels guard calls in flight */
    cf->gd = NULL;
    custos_buf_dispose(&cf->squeue);
    /* placeholders live in the request arena, which is freed with the request */
}
