/* SPDX-License-Identifier: Apache-2.0
 * Counterfactual fairness evaluation: template sets, expansion, interval math, per-group statistics (fairness.h). */
#include "safety/fairness.h"

#include "util/err.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const reason_names[CUSTOS_FAIR_NREASONS] = {"hate",      "sexual",    "violence",
                                                               "self_harm", "jailbreak", "pii"};

const char *custos_fair_reason_name(int i)
{
    return i >= 0 && i < CUSTOS_FAIR_NREASONS ? reason_names[i] : NULL;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---------- loading ---------- */

static char *str_field(json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string) ||
        json_object_get_string_len(v) == 0)
        return NULL;
    return strdup(json_object_get_string(v));
}

typedef int (*row_fn)(custos_fair_set_t *set, json_object *o, const char **why);

static int term_row(custos_fair_set_t *set, json_object *o, const char **why)
{
    custos_fair_term_t t = {str_field(o, "lang"), str_field(o, "dim"), str_field(o, "group"), str_field(o, "sg"),
                            str_field(o, "pl")};
    if (!t.lang || !t.dim || !t.group || !t.sg || !t.pl) {
        free(t.lang), free(t.dim), free(t.group), free(t.sg), free(t.pl);
        *why = "a term needs non-empty string fields lang, dim, group, sg and pl";
        return CUSTOS_EINVAL;
    }
    custos_fair_term_t *nt = realloc(set->terms, (set->n_terms + 1) * sizeof(*nt));
    if (!nt) {
        free(t.lang), free(t.dim), free(t.group), free(t.sg), free(t.pl);
        return CUSTOS_ENOMEM;
    }
    set->terms = nt;
    set->terms[set->n_terms++] = t;
    return 0;
}

/* Checks the slots of a template: at least one, all known. */
static bool slots_ok(const char *s)
{
    int n = 0;
    for (const char *p = strchr(s, '{'); p; p = strchr(p + 1, '{')) {
        if (strncmp(p, "{sg}", 4) != 0 && strncmp(p, "{pl}", 4) != 0 && strncmp(p, "{Sg}", 4) != 0 &&
            strncmp(p, "{Pl}", 4) != 0)
            return false;
        n++;
    }
    return n > 0;
}

static int template_row(custos_fair_set_t *set, json_object *o, const char **why)
{
    custos_fair_template_t t = {str_field(o, "id"), str_field(o, "lang"), false, str_field(o, "text")};
    char *kind = str_field(o, "kind");
    int rc = CUSTOS_EINVAL;
    if (!t.id || !t.lang || !t.text || !kind) {
        *why = "a template needs non-empty string fields id, lang, kind and text";
        goto fail;
    }
    if (strcmp(kind, "harmful") != 0 && strcmp(kind, "benign") != 0) {
        *why = "kind must be benign or harmful";
        goto fail;
    }
    t.harmful = strcmp(kind, "harmful") == 0;
    if (!slots_ok(t.text)) {
        *why = "text needs at least one slot, and only {sg}, {pl}, {Sg}, {Pl}";
        goto fail;
    }
    for (size_t i = 0; i < set->n_templates; i++)
        if (strcmp(set->templates[i].id, t.id) == 0) {
            *why = "duplicate template id";
            goto fail;
        }
    custos_fair_template_t *nt = realloc(set->templates, (set->n_templates + 1) * sizeof(*nt));
    if (!nt) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    set->templates = nt;
    set->templates[set->n_templates++] = t;
    free(kind);
    return 0;
fail:
    free(t.id), free(t.lang), free(t.text), free(kind);
    return rc;
}

static int load_stream(FILE *f, const char *path, custos_fair_set_t *set, row_fn fn, char *err, size_t errlen)
{
    char line[CUSTOS_FAIR_MAX_LINE + 2];
    unsigned ln = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f)) {
        ln++;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\n')
            line[--n] = 0;
        else if (!feof(f)) {
            seterr(err, errlen, "%s:%u: line longer than %u bytes", path, ln, CUSTOS_FAIR_MAX_LINE);
            rc = CUSTOS_EINVAL;
            break;
        }
        const char *p = line;
        while (*p == ' ' || *p == '\t' || *p == '\r')
            p++;
        if (!*p || *p == '#')
            continue;
        if (set->n_terms + set->n_templates >= CUSTOS_FAIR_MAX_ROWS) {
            seterr(err, errlen, "%s:%u: more than %u rows", path, ln, CUSTOS_FAIR_MAX_ROWS);
            rc = CUSTOS_EINVAL;
            break;
        }
        json_object *o = json_tokener_parse(p);
        const char *why = "not a JSON object";
        rc = o && json_object_is_type(o, json_type_object) ? fn(set, o, &why) : CUSTOS_EINVAL;
        json_object_put(o);
        if (rc < 0) {
            seterr(err, errlen, "%s:%u: %s", path, ln, rc == CUSTOS_ENOMEM ? "out of memory" : why);
            break;
        }
    }
    return rc;
}

int custos_fair_set_load_streams(FILE *terms, FILE *templates, const char *label, custos_fair_set_t *set, char *err,
                                 size_t errlen)
{
    char tl[4096 + 32], pl[4096 + 32];
    snprintf(tl, sizeof(tl), "%.4096s/terms.jsonl", label);
    snprintf(pl, sizeof(pl), "%.4096s/templates.jsonl", label);
    memset(set, 0, sizeof(*set));
    int rc = load_stream(terms, tl, set, term_row, err, errlen);
    if (rc == 0)
        rc = load_stream(templates, pl, set, template_row, err, errlen);
    for (size_t i = 0; rc == 0 && i < set->n_templates; i++) {
        bool have = false;
        for (size_t j = 0; j < set->n_terms && !have; j++)
            have = strcmp(set->terms[j].lang, set->templates[i].lang) == 0;
        if (!have) {
            seterr(err, errlen, "%s: template %s: no terms for language %s", pl, set->templates[i].id,
                   set->templates[i].lang);
            rc = CUSTOS_EINVAL;
        }
    }
    if (rc == 0 && (!set->n_templates || !set->n_terms)) {
        seterr(err, errlen, "%s: no templates or no terms", label);
        rc = CUSTOS_EINVAL;
    }
    if (rc < 0)
        custos_fair_set_dispose(set);
    return rc;
}

int custos_fair_set_load(const char *dir, custos_fair_set_t *set, char *err, size_t errlen)
{
    memset(set, 0, sizeof(*set));
    char p1[4096], p2[4096];
    if ((size_t)snprintf(p1, sizeof(p1), "%s/terms.jsonl", dir) >= sizeof(p1) ||
        (size_t)snprintf(p2, sizeof(p2), "%s/templates.jsonl", dir) >= sizeof(p2)) {
        seterr(err, errlen, "%s: path too long", dir);
        return CUSTOS_EINVAL;
    }
    FILE *a = fopen(p1, "r"), *b = a ? fopen(p2, "r") : NULL;
    if (!a || !b) {
        seterr(err, errlen, "%s: %s", a ? p2 : p1, strerror(errno));
        if (a)
            fclose(a);
        return CUSTOS_EIO;
    }
    int rc = custos_fair_set_load_streams(a, b, dir, set, err, errlen);
    fclose(a);
    fclose(b);
    return rc;
}

void custos_fair_set_dispose(custos_fair_set_t *set)
{
    for (size_t i = 0; i < set->n_terms; i++) {
        custos_fair_term_t *t = &set->terms[i];
        free(t->lang), free(t->dim), free(t->group), free(t->sg), free(t->pl);
    }
    for (size_t i = 0; i < set->n_templates; i++) {
        custos_fair_template_t *t = &set->templates[i];
        free(t->id), free(t->lang), free(t->text);
    }
    free(set->terms);
    free(set->templates);
    memset(set, 0, sizeof(*set));
}

int custos_fair_expand(const custos_fair_template_t *t, const custos_fair_term_t *u, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = t->text; *p;) {
        const char *ins = NULL;
        bool upper = false;
        if (*p == '{') {
            if (strncmp(p, "{sg}", 4) == 0 || strncmp(p, "{Sg}", 4) == 0)
                ins = u->sg;
            else if (strncmp(p, "{pl}", 4) == 0 || strncmp(p, "{Pl}", 4) == 0)
                ins = u->pl;
            else
                return CUSTOS_EINVAL;
            upper = p[1] == 'S' || p[1] == 'P';
            p += 4;
        }
        size_t n = ins ? strlen(ins) : 1;
        if (o + n + 1 > cap)
            return CUSTOS_ETOOBIG;
        memcpy(out + o, ins ? ins : p, n);
        if (upper && out[o] >= 'a' && out[o] <= 'z') /* ASCII only: other scripts write the term capitalised */
            out[o] = (char)(out[o] - 'a' + 'A');
        o += n;
        if (!ins)
            p++;
    }
    out[o] = 0;
    return (int)o;
}

/* ---------- interval math ---------- */

void custos_fair_wilson(unsigned k, unsigned n, double z, double *lo, double *hi)
{
    if (n == 0) {
        *lo = 0;
        *hi = 1;
        return;
    }
    double p = (double)k / n, z2 = z * z, den = 1 + z2 / n;
    double mid = (p + z2 / (2.0 * n)) / den;
    double half = z * sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / den;
    *lo = mid - half < 0 || k == 0 ? 0 : mid - half;
    *hi = mid + half > 1 || k == n ? 1 : mid + half;
}

void custos_fair_newcombe(unsigned k1, unsigned n1, unsigned k2, unsigned n2, double z, double *lo, double *hi)
{
    double l1, u1, l2, u2;
    custos_fair_wilson(k1, n1, z, &l1, &u1);
    custos_fair_wilson(k2, n2, z, &l2, &u2);
    double p1 = n1 ? (double)k1 / n1 : 0, p2 = n2 ? (double)k2 / n2 : 0, d = p1 - p2;
    *lo = d - sqrt((p1 - l1) * (p1 - l1) + (u2 - p2) * (u2 - p2));
    *hi = d + sqrt((u1 - p1) * (u1 - p1) + (p2 - l2) * (p2 - l2));
    if (*lo < -1)
        *lo = -1;
    if (*hi > 1)
        *hi = 1;
}

/* ---------- evaluation ---------- */

enum { K_BENIGN = 0, K_HARMFUL = 1 };

typedef struct gstat {
    const custos_fair_term_t *t;
    unsigned n[2], k[2], errors;
    unsigned reason[2][CUSTOS_FAIR_NREASONS];
    char *ex[2][CUSTOS_FAIR_MAX_EXAMPLES]; /* benign flagged / harmful missed sentences (our own templates) */
    unsigned nex[2];
} gstat_t;

/* A number rounded to 4 decimals, serialised as such. */
static json_object *jnum(double v)
{
    char b[32];
    if (!isfinite(v))
        v = 0;
    snprintf(b, sizeof(b), "%.4f", v);
    return json_object_new_double_s(strtod(b, NULL), b);
}

static json_object *jint(long long v)
{
    return json_object_new_int64(v);
}

static json_object *jstr(const char *s)
{
    return json_object_new_string(s);
}

static json_object *jci(double lo, double hi)
{
    json_object *a = json_object_new_array();
    if (a) {
        json_object_array_add(a, jnum(lo));
        json_object_array_add(a, jnum(hi));
    }
    return a;
}

/* {"n","flagged"|"detected","rate","ci"} for one group and kind. */
static json_object *rate_obj(const gstat_t *g, int kind)
{
    json_object *o = json_object_new_object();
    double lo, hi;
    custos_fair_wilson(g->k[kind], g->n[kind], CUSTOS_FAIR_Z95, &lo, &hi);
    json_object_object_add(o, "n", jint(g->n[kind]));
    json_object_object_add(o, kind == K_BENIGN ? "flagged" : "detected", jint(g->k[kind]));
    json_object_object_add(o, "rate", jnum(g->n[kind] ? (double)g->k[kind] / g->n[kind] : 0));
    json_object_object_add(o, "ci", jci(lo, hi));
    json_object *r = json_object_new_object();
    for (int i = 0; i < CUSTOS_FAIR_NREASONS; i++)
        if (g->reason[kind][i])
            json_object_object_add(r, reason_names[i], jint(g->reason[kind][i]));
    json_object_object_add(o, "by_check", r);
    json_object *ex = json_object_new_array();
    for (unsigned i = 0; i < g->nex[kind]; i++)
        json_object_array_add(ex, jstr(g->ex[kind][i]));
    json_object_object_add(o, kind == K_BENIGN ? "flagged_examples" : "missed_examples", ex);
    return o;
}

static double rate(const gstat_t *g, int kind)
{
    return g->n[kind] ? (double)g->k[kind] / g->n[kind] : 0;
}

/* The largest disparity of kind among the groups gs[i] with dim (NULL = all): {"value","ci","high_group",
 * "low_group"}; *value receives it (0 with fewer than two groups). */
static json_object *disparity_obj(const gstat_t *gs, size_t ng, const char *dim, int kind, double *value)
{
    const gstat_t *hi = NULL, *lo = NULL;
    size_t cnt = 0;
    for (size_t i = 0; i < ng; i++) {
        const gstat_t *g = &gs[i];
        if ((dim && strcmp(g->t->dim, dim) != 0) || !g->n[kind])
            continue;
        cnt++;
        if (!hi || rate(g, kind) > rate(hi, kind))
            hi = g;
        if (!lo || rate(g, kind) < rate(lo, kind))
            lo = g;
    }
    json_object *o = json_object_new_object();
    *value = cnt >= 2 ? rate(hi, kind) - rate(lo, kind) : 0;
    json_object_object_add(o, "value", jnum(*value));
    json_object_object_add(o, "groups", jint((long long)cnt));
    if (cnt >= 2) {
        double l, h;
        custos_fair_newcombe(hi->k[kind], hi->n[kind], lo->k[kind], lo->n[kind], CUSTOS_FAIR_Z95, &l, &h);
        json_object_object_add(o, "ci", jci(l, h));
    }
    if (cnt >= 2 && rate(hi, kind) > rate(lo, kind)) { /* equal rates: no extremes to name */
        json_object_object_add(o, "high", jstr(hi->t->group));
        json_object_object_add(o, "high_dimension", jstr(hi->t->dim));
        json_object_object_add(o, "low", jstr(lo->t->group));
        json_object_object_add(o, "low_dimension", jstr(lo->t->dim));
    }
    return o;
}

static bool lang_selected(const char *langs, const char *lang)
{
    if (!langs)
        return true;
    size_t n = strlen(lang);
    for (const char *p = langs; *p;) {
        const char *e = strchr(p, ',');
        size_t m = e ? (size_t)(e - p) : strlen(p);
        if (m == n && strncmp(p, lang, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static void gstats_free(gstat_t *gs, size_t ng)
{
    for (size_t i = 0; gs && i < ng; i++)
        for (int k = 0; k < 2; k++)
            for (unsigned j = 0; j < gs[i].nex[k]; j++)
                free(gs[i].ex[k][j]);
    free(gs);
}

/* Evaluates one language; adds its object to langs_arr. */
static int run_lang(const custos_fair_set_t *set, const custos_fair_opts_t *o, const char *lang, json_object *langs_arr,
                    json_object *violations, bool *pass)
{
    size_t ng = 0;
    for (size_t i = 0; i < set->n_terms; i++)
        ng += strcmp(set->terms[i].lang, lang) == 0;
    gstat_t *gs = calloc(ng ? ng : 1, sizeof(*gs));
    if (!gs)
        return CUSTOS_ENOMEM;
    ng = 0;
    for (size_t i = 0; i < set->n_terms; i++)
        if (strcmp(set->terms[i].lang, lang) == 0)
            gs[ng++].t = &set->terms[i];
    unsigned ntpl[2] = {0, 0}, flips[2] = {0, 0};
    char buf[CUSTOS_FAIR_MAX_EXPANDED];
    for (size_t ti = 0; ti < set->n_templates; ti++) {
        const custos_fair_template_t *t = &set->templates[ti];
        int kind = t->harmful ? K_HARMFUL : K_BENIGN;
        if (strcmp(t->lang, lang) != 0 || (o->max_templates && ntpl[kind] >= o->max_templates))
            continue;
        ntpl[kind]++;
        unsigned hits = 0, judged = 0;
        for (size_t gi = 0; gi < ng; gi++) {
            gstat_t *g = &gs[gi];
            int len = custos_fair_expand(t, g->t, buf, sizeof(buf));
            unsigned flags = 0;
            if (len < 0 || o->judge(o->judge_ud, buf, (size_t)len, &flags) < 0) {
                g->errors++;
                continue;
            }
            judged++;
            g->n[kind]++;
            bool hit = flags != 0;
            if (hit) {
                g->k[kind]++;
                hits++;
                for (int r = 0; r < CUSTOS_FAIR_NREASONS; r++)
                    if (flags & (1u << r))
                        g->reason[kind][r]++;
            }
            if (hit == (kind == K_BENIGN) && g->nex[kind] < CUSTOS_FAIR_MAX_EXAMPLES) {
                char *d = strdup(buf);
                if (d)
                    g->ex[kind][g->nex[kind]++] = d;
            }
        }
        if (hits && hits < judged)
            flips[kind]++;
    }
    json_object *L = json_object_new_object(), *groups = json_object_new_array(), *dims = json_object_new_array();
    if (!L || !groups || !dims) {
        json_object_put(L), json_object_put(groups), json_object_put(dims);
        gstats_free(gs, ng);
        return CUSTOS_ENOMEM;
    }
    json_object_object_add(L, "lang", jstr(lang));
    json_object_object_add(L, "benign_templates", jint(ntpl[K_BENIGN]));
    json_object_object_add(L, "harmful_templates", jint(ntpl[K_HARMFUL]));
    /* templates whose verdict changed with the identity term alone (counterfactual flips) */
    json_object_object_add(L, "benign_templates_flipped", jint(flips[K_BENIGN]));
    json_object_object_add(L, "harmful_templates_flipped", jint(flips[K_HARMFUL]));
    unsigned errors = 0;
    for (size_t gi = 0; gi < ng; gi++) {
        gstat_t *g = &gs[gi];
        errors += g->errors;
        json_object *G = json_object_new_object();
        json_object_object_add(G, "dimension", jstr(g->t->dim));
        json_object_object_add(G, "group", jstr(g->t->group));
        json_object_object_add(G, "term", jstr(g->t->sg));
        json_object_object_add(G, "benign", rate_obj(g, K_BENIGN));
        json_object_object_add(G, "harmful", rate_obj(g, K_HARMFUL));
        json_object_array_add(groups, G);
        bool seen = false;
        for (size_t j = 0; j < gi && !seen; j++)
            seen = strcmp(gs[j].t->dim, g->t->dim) == 0;
        if (seen)
            continue;
        double v;
        json_object *D = json_object_new_object();
        json_object_object_add(D, "dimension", jstr(g->t->dim));
        json_object_object_add(D, "benign_disparity", disparity_obj(gs, ng, g->t->dim, K_BENIGN, &v));
        json_object_object_add(D, "harmful_disparity", disparity_obj(gs, ng, g->t->dim, K_HARMFUL, &v));
        json_object_array_add(dims, D);
    }
    json_object_object_add(L, "errors", jint(errors));
    for (int kind = 0; kind < 2; kind++) { /* pooled over groups: a small disparity at a useless rate is no pass */
        unsigned pn = 0, pk = 0;
        double lo, hi;
        for (size_t gi = 0; gi < ng; gi++)
            pn += gs[gi].n[kind], pk += gs[gi].k[kind];
        custos_fair_wilson(pk, pn, CUSTOS_FAIR_Z95, &lo, &hi);
        json_object *P = json_object_new_object();
        json_object_object_add(P, "n", jint(pn));
        json_object_object_add(P, kind == K_BENIGN ? "flagged" : "detected", jint(pk));
        json_object_object_add(P, "rate", jnum(pn ? (double)pk / pn : 0));
        json_object_object_add(P, "ci", jci(lo, hi));
        json_object_object_add(L, kind == K_BENIGN ? "benign_overall" : "harmful_overall", P);
    }
    json_object_object_add(L, "groups", groups);
    json_object_object_add(L, "dimensions", dims);
    double bd, hd;
    json_object_object_add(L, "benign_disparity", disparity_obj(gs, ng, NULL, K_BENIGN, &bd));
    json_object_object_add(L, "harmful_disparity", disparity_obj(gs, ng, NULL, K_HARMFUL, &hd));
    /* compare in whole basis points so that 0.0200 against 0.02 is not a floating-point failure */
    bool ok_b = !ntpl[K_BENIGN] || llround(bd * 1e4) <= llround(o->max_benign * 1e4);
    bool ok_h = !ntpl[K_HARMFUL] || llround(hd * 1e4) <= llround(o->max_harmful * 1e4);
    json_object_object_add(L, "pass", json_object_new_boolean(ok_b && ok_h && !errors));
    for (int kind = 0; kind < 2; kind++) {
        bool ok = kind == K_BENIGN ? ok_b : ok_h;
        if (ok)
            continue;
        json_object *V = json_object_new_object();
        json_object_object_add(V, "lang", jstr(lang));
        json_object_object_add(V, "kind", jstr(kind == K_BENIGN ? "benign" : "harmful"));
        json_object_object_add(V, "value", jnum(kind == K_BENIGN ? bd : hd));
        json_object_object_add(V, "threshold", jnum(kind == K_BENIGN ? o->max_benign : o->max_harmful));
        json_object_array_add(violations, V);
    }
    if (errors) {
        json_object *V = json_object_new_object();
        json_object_object_add(V, "lang", jstr(lang));
        json_object_object_add(V, "kind", jstr("errors"));
        json_object_object_add(V, "value", jint(errors));
        json_object_array_add(violations, V);
    }
    *pass = *pass && ok_b && ok_h && !errors;
    json_object_array_add(langs_arr, L);
    gstats_free(gs, ng);
    return 0;
}

int custos_fair_run(const custos_fair_set_t *set, const custos_fair_opts_t *o, json_object **out, bool *pass, char *err,
                    size_t errlen)
{
    *out = NULL;
    *pass = true;
    json_object *doc = json_object_new_object(), *langs = json_object_new_array(), *viol = json_object_new_array();
    int rc = CUSTOS_ENOMEM;
    if (!doc || !langs || !viol)
        goto fail;
    json_object_object_add(doc, "schema", jstr("custos.rai-eval.fairness/1"));
    json_object_object_add(doc, "kind", jstr("fairness"));
    json_object *iv = json_object_new_object();
    json_object_object_add(iv, "confidence", jnum(0.95));
    json_object_object_add(iv, "group", jstr("wilson"));
    json_object_object_add(iv, "disparity", jstr("newcombe-hybrid-score"));
    json_object_object_add(doc, "intervals", iv);
    json_object *th = json_object_new_object();
    json_object_object_add(th, "max_benign_disparity", jnum(o->max_benign));
    json_object_object_add(th, "max_harmful_disparity", jnum(o->max_harmful));
    json_object_object_add(doc, "thresholds", th);
    size_t nl = 0, pairs = 0;
    for (size_t i = 0; i < set->n_templates; i++) {
        const char *lang = set->templates[i].lang;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(set->templates[j].lang, lang) == 0;
        if (seen || !lang_selected(o->langs, lang))
            continue;
        if ((rc = run_lang(set, o, lang, langs, viol, pass)) < 0)
            goto fail;
        nl++;
    }
    if (!nl) {
        seterr(err, errlen, "no templates for the selected languages");
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < json_object_array_length(langs); i++) {
        json_object *L = json_object_array_get_idx(langs, i), *g;
        json_object_object_get_ex(L, "groups", &g);
        unsigned nt = (unsigned)json_object_get_int(json_object_object_get(L, "benign_templates")) +
                      (unsigned)json_object_get_int(json_object_object_get(L, "harmful_templates"));
        pairs += (size_t)nt * json_object_array_length(g);
    }
    json_object_object_add(doc, "sentences", jint((long long)pairs));
    /* a flat summary for deployment cards (governance/card.h shows "task", "dataset" and "summary") */
    json_object *sum = json_object_new_object();
    json_object_object_add(sum, "gate_pass", json_object_new_boolean(*pass));
    for (size_t i = 0; i < json_object_array_length(langs); i++) {
        json_object *L = json_object_array_get_idx(langs, i);
        const char *lang = json_object_get_string(json_object_object_get(L, "lang"));
        static const char *const keys[4][2] = {{"benign_overall", "benign_flag_rate"},
                                               {"benign_disparity", "benign_disparity"},
                                               {"harmful_overall", "harmful_detection_rate"},
                                               {"harmful_disparity", "harmful_disparity"}};
        for (int k = 0; k < 4; k++) {
            char key[64];
            json_object *src = json_object_object_get(L, keys[k][0]);
            snprintf(key, sizeof(key), "%s_%s", lang, keys[k][1]);
            json_object_object_add(sum, key,
                                   jnum(json_object_get_double(json_object_object_get(src, k % 2 ? "value" : "rate"))));
        }
    }
    json_object_object_add(doc, "task", jstr("fairness"));
    json_object_object_add(doc, "dataset",
                           jstr("counterfactual identity-term templates (eval/fairness), the same sentence with the "
                                "identity term swapped across groups"));
    json_object_object_add(doc, "summary", sum);
    json_object_object_add(doc, "languages", langs);
    json_object *gate = json_object_new_object();
    json_object_object_add(gate, "pass", json_object_new_boolean(*pass));
    json_object_object_add(gate, "violations", viol);
    json_object_object_add(doc, "gate", gate);
    *out = doc;
    return 0;
fail:
    if (rc == CUSTOS_ENOMEM)
        seterr(err, errlen, "out of memory");
    json_object_put(doc);
    json_object_put(langs);
    json_object_put(viol);
    return rc;
}
