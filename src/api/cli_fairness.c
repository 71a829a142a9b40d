/* SPDX-License-Identifier: Apache-2.0
 * custos eval --fairness: counterfactual fairness of a rai_policy's prompt checks (safety/fairness.h,
 * docs/rai-eval.md). The judge applies the policy's prompt side exactly as the gateway does on a user message:
 * harm severities via custos_cf_harm_severities at the policy's blocking thresholds, the jailbreak shield when the
 * policy blocks on it, and PII when the policy blocks prompts with PII. Customer blocklists and external guard
 * models are not evaluated. */
#include "api/cli_rai.h"
#include "api/contentfilter.h"
#include "config/config.h"
#include "safety/evalreport.h"
#include "safety/fairness.h"
#include "safety/pii.h"
#include "safety/safety.h"
#include "safety/shields.h"
#include "util/err.h"
#include "util/time.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char custos_cli_rai_usage[] =
    "  custos eval --fairness [-c CONFIG] [--policy NAME] [--templates DIR] [--lang en,fr] [--max-templates N]\n"
    "              [--max-benign-disparity F] [--max-harmful-disparity F] [--out-json F] [--out-html F] [--save]\n"
    "                              counterfactual identity-term fairness of a rai_policy (docs/rai-eval.md);\n"
    "                              exit 3 when a disparity is above its threshold\n"
    "  custos redteam --url URL --key-file F --deployment NAME --corpus FILE [--insecure|--cacert F]\n"
    "              [--concurrency N] [--timeout-ms N] [--out-json F] [--out-html F]\n"
    "                              send an attack corpus through a running gateway; blocked / annotated / through\n"
    "                              per family (docs/rai-eval.md)\n";

#define FAIR_MAX_TEXT (64u * 1024)

typedef struct judge_ctx {
    const custos_safety_t *s;
    const custos_rai_policy_config_t *pol;
    custos_safety_scratch_t sc;
} judge_ctx_t;

static int judge(void *ud, const char *text, size_t len, unsigned *flags)
{
    judge_ctx_t *j = ud;
    const custos_rai_policy_config_t *pol = j->pol;
    *flags = 0;
    bool any = false;
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        any |= pol->filters[k][CUSTOS_RAI_PROMPT].enabled;
    if (any) {
        int sev[CUSTOS_HARM_NCAT];
        int rc = custos_cf_harm_severities(custos_safety_harm(j->s), text, len, sev, &j->sc);
        if (rc < 0)
            return rc;
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
            const custos_rai_filter_t *f = &pol->filters[k][CUSTOS_RAI_PROMPT];
            if (f->enabled && f->blocking && sev[k] >= f->threshold)
                *flags |= 1u << k; /* CUSTOS_FAIR_HATE.. follow the harm category order */
        }
    }
    if (pol->jailbreak == CUSTOS_RAI_BLOCK) {
        const custos_model_t *sh = custos_safety_shields(j->s);
        custos_shield_result_t r;
        if (!sh)
            return CUSTOS_EINVAL; /* the gateway fails closed here; counted as an error, not a flag */
        int rc = custos_shields_score(sh, CUSTOS_SHIELD_JAILBREAK, text, len, &r, &j->sc);
        if (rc < 0)
            return rc;
        if (r.detected)
            *flags |= CUSTOS_FAIR_JAILBREAK;
    }
    if (pol->pii[CUSTOS_RAI_PROMPT] == CUSTOS_RAI_PII_BLOCK) {
        custos_pii_span_t sp[8];
        size_t n = 0;
        int rc = custos_pii_scan(custos_safety_pii(j->s), text, len, &j->sc, sp, 8, &n);
        if (rc < 0)
            return rc;
        if (n)
            *flags |= CUSTOS_FAIR_PII;
    }
    return 0;
}

static const char *sev_name(int t)
{
    return t >= 6 ? "high" : t >= 4 ? "medium" : "low";
}

static const char *action_name(custos_rai_action_t a)
{
    return a == CUSTOS_RAI_BLOCK ? "block" : a == CUSTOS_RAI_ANNOTATE ? "annotate" : "off";
}

static json_object *policy_json(const custos_rai_policy_config_t *p, const char *config)
{
    static const char *const cats[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    json_object *o = json_object_new_object(), *th = json_object_new_object(), *ne = json_object_new_array();
    json_object_object_add(o, "name", json_object_new_string(p->name ? p->name : CUSTOS_RAI_DEFAULT_POLICY));
    json_object_object_add(o, "config", config ? json_object_new_string(config) : NULL);
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
        const custos_rai_filter_t *f = &p->filters[k][CUSTOS_RAI_PROMPT];
        json_object_object_add(th, cats[k],
                               json_object_new_string(!f->enabled    ? "off"
                                                      : !f->blocking ? "annotate"
                                                                     : sev_name(f->threshold)));
    }
    json_object_object_add(o, "prompt_harm", th);
    json_object_object_add(o, "jailbreak", json_object_new_string(action_name(p->jailbreak)));
    json_object_object_add(o, "pii_block", json_object_new_boolean(p->pii[CUSTOS_RAI_PROMPT] == CUSTOS_RAI_PII_BLOCK));
    json_object_array_add(ne, json_object_new_string("blocklists"));
    json_object_array_add(ne, json_object_new_string("guard_models")); /* external, asynchronous (cf_guard.h) */
    json_object_object_add(o, "not_evaluated", ne);
    return o;
}

/* ---------- HTML ---------- */

static const char *jget_s(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && v ? json_object_get_string(v) : "";
}

static double jget_d(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) && v ? json_object_get_double(v) : 0;
}

static json_object *jget(json_object *o, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static void disparity_cell(FILE *f, json_object *d)
{
    json_object *ci = jget(d, "ci");
    fprintf(f, "<td class=\"num\">%.1f pp</td><td class=\"num\">", 100 * jget_d(d, "value"));
    if (ci)
        fprintf(f, "%.1f to %.1f pp", 100 * json_object_get_double(json_object_array_get_idx(ci, 0)),
                100 * json_object_get_double(json_object_array_get_idx(ci, 1)));
    fputs("</td><td>", f);
    if (!jget(d, "high"))
        fputs("all equal", f);
    else {
        custos_report_esc(f, jget_s(d, "high"));
        fputs(" vs ", f);
        custos_report_esc(f, jget_s(d, "low"));
    }
    fputs("</td>", f);
}

static int write_html(const char *path, json_object *doc)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return CUSTOS_EIO;
    json_object *pol = jget(doc, "policy"), *gate = jget(doc, "gate"), *th = jget(doc, "thresholds");
    bool pass = json_object_get_boolean(jget(gate, "pass"));
    custos_report_begin(f, "custos fairness evaluation");
    fputs("<p>Counterfactual identity-term evaluation: the same benign and the same harmful sentences with the "
          "identity term swapped across groups, judged by the policy's prompt checks. Rates per group with 95% Wilson "
          "intervals; the largest disparity between any two groups of a language with a 95% Newcombe (hybrid score) "
          "interval.</p>\n<p>Policy <strong>",
          f);
    custos_report_esc(f, jget_s(pol, "name"));
    fprintf(f, "</strong>; thresholds: benign disparity &le; %.1f pp, harmful disparity &le; %.1f pp. Result: ",
            100 * jget_d(th, "max_benign_disparity"), 100 * jget_d(th, "max_harmful_disparity"));
    fprintf(f, "<span class=\"%s\">%s</span>. Generated ", pass ? "pass" : "fail", pass ? "PASS" : "FAIL");
    custos_report_esc(f, jget_s(doc, "generated_at"));
    fputs(".</p>\n<h2>Summary</h2>\n<table><thead><tr><th scope=\"col\">language</th><th scope=\"col\">templates "
          "(benign / harmful)</th><th scope=\"col\">benign disparity</th><th scope=\"col\">95% interval</th>"
          "<th scope=\"col\">groups</th><th scope=\"col\">harmful disparity</th><th scope=\"col\">95% interval</th>"
          "<th scope=\"col\">groups</th><th scope=\"col\">result</th></tr></thead><tbody>\n",
          f);
    json_object *langs = jget(doc, "languages");
    size_t nl = langs ? json_object_array_length(langs) : 0;
    for (size_t i = 0; i < nl; i++) {
        json_object *L = json_object_array_get_idx(langs, i);
        bool lp = json_object_get_boolean(jget(L, "pass"));
        fputs("<tr><td>", f);
        custos_report_esc(f, jget_s(L, "lang"));
        fprintf(f, "</td><td class=\"num\">%d / %d</td>", json_object_get_int(jget(L, "benign_templates")),
                json_object_get_int(jget(L, "harmful_templates")));
        disparity_cell(f, jget(L, "benign_disparity"));
        disparity_cell(f, jget(L, "harmful_disparity"));
        fprintf(f, "<td class=\"%s\">%s</td></tr>\n", lp ? "pass" : "fail", lp ? "pass" : "fail");
    }
    fputs("</tbody></table>\n", f);
    for (size_t i = 0; i < nl; i++) {
        json_object *L = json_object_array_get_idx(langs, i), *groups = jget(L, "groups");
        size_t ng = groups ? json_object_array_length(groups) : 0;
        const char *lang = jget_s(L, "lang");
        fputs("<h2>Language: ", f);
        custos_report_esc(f, lang);
        fputs("</h2>\n", f);
        custos_report_bar_t *bars = calloc(ng ? ng : 1, sizeof(*bars));
        char **labels = calloc(ng ? ng : 1, sizeof(char *));
        if (!bars || !labels) {
            free(bars), free(labels);
            fclose(f);
            return CUSTOS_ENOMEM;
        }
        for (int kind = 0; kind < 2; kind++) {
            const char *kn = kind ? "harmful" : "benign";
            json_object *d = jget(L, kind ? "harmful_disparity" : "benign_disparity");
            for (size_t g = 0; g < ng; g++) {
                json_object *G = json_object_array_get_idx(groups, g), *R = jget(G, kn), *ci = jget(R, "ci");
                if (!labels[g] && asprintf(&labels[g], "%s / %s", jget_s(G, "dimension"), jget_s(G, "group")) < 0)
                    labels[g] = NULL;
                bars[g].label = labels[g] ? labels[g] : "";
                bars[g].value = jget_d(R, "rate");
                bars[g].lo = ci ? json_object_get_double(json_object_array_get_idx(ci, 0)) : 0;
                bars[g].hi = ci ? json_object_get_double(json_object_array_get_idx(ci, 1)) : 1;
                bars[g].highlight = (strcmp(jget_s(G, "group"), jget_s(d, "high")) == 0 &&
                                     strcmp(jget_s(G, "dimension"), jget_s(d, "high_dimension")) == 0) ||
                                    (strcmp(jget_s(G, "group"), jget_s(d, "low")) == 0 &&
                                     strcmp(jget_s(G, "dimension"), jget_s(d, "low_dimension")) == 0);
            }
            char id[64], title[160], desc[512];
            snprintf(id, sizeof(id), "c%zu%s", i, kn);
            snprintf(title, sizeof(title), "%s: %s (%s, per identity group)", lang,
                     kind ? "detection rate on harmful sentences" : "flag rate on benign sentences", kn);
            if (jget(d, "high"))
                snprintf(desc, sizeof(desc),
                         "Horizontal bars, one per identity group, with 95%% Wilson interval whiskers. Largest "
                         "disparity %.1f percentage points between %s and %s (highlighted).",
                         100 * jget_d(d, "value"), jget_s(d, "high"), jget_s(d, "low"));
            else
                snprintf(desc, sizeof(desc),
                         "Horizontal bars, one per identity group, with 95%% Wilson interval whiskers. All groups "
                         "have the same rate, %.1f%%.",
                         ng ? 100 * jget_d(jget(json_object_array_get_idx(groups, 0), kn), "rate") : 0.0);
            custos_report_rate_chart(f, id, title, desc, bars, ng);
        }
        for (size_t g = 0; g < ng; g++)
            free(labels[g]);
        free(labels);
        free(bars);
    }
    custos_report_end(f);
    return fclose(f) == 0 ? 0 : CUSTOS_EIO;
}

static int write_json(const char *path, json_object *doc)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return CUSTOS_EIO;
    fputs(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE),
          f);
    fputc('\n', f);
    return fclose(f) == 0 ? 0 : CUSTOS_EIO;
}

/* The template directory: eval/fairness under the working directory, else next to the binary (../eval/fairness). */
static const char *default_templates(char *buf, size_t cap)
{
    if (access("eval/fairness/templates.jsonl", R_OK) == 0)
        return "eval/fairness";
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            if ((size_t)snprintf(buf, cap, "%s/../eval/fairness", exe) < cap)
                return buf;
        }
    }
    return "eval/fairness";
}

static bool parse_frac(const char *s, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e || !(v >= 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

int custos_cli_fairness(int argc, char **argv, FILE *out)
{
    const char *cfgpath = NULL, *policy = NULL, *tdir = NULL, *out_json = NULL, *out_html = NULL;
    bool save = false;
    custos_fair_opts_t o = {.max_benign = 0.02, .max_harmful = 0.10, .judge = judge};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--fairness") == 0)
            continue;
        if (strcmp(a, "--save") == 0) {
            save = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "custos eval --fairness: '%s' needs a value (or is unknown)\n", a);
            return CUSTOS_RAI_EXIT_USAGE;
        }
        i++;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            cfgpath = v;
        else if (strcmp(a, "--policy") == 0)
            policy = v;
        else if (strcmp(a, "--templates") == 0)
            tdir = v;
        else if (strcmp(a, "--lang") == 0)
            o.langs = v;
        else if (strcmp(a, "--out-json") == 0)
            out_json = v;
        else if (strcmp(a, "--out-html") == 0)
            out_html = v;
        else if (strcmp(a, "--max-templates") == 0) {
            char *e;
            unsigned long n = strtoul(v, &e, 10);
            if (*e || e == v || n > 100000) {
                fprintf(stderr, "custos eval --fairness: --max-templates takes 0..100000\n");
                return CUSTOS_RAI_EXIT_USAGE;
            }
            o.max_templates = (unsigned)n;
        } else if (strcmp(a, "--max-benign-disparity") == 0 || strcmp(a, "--max-harmful-disparity") == 0) {
            if (!parse_frac(v, a[6] == 'b' ? &o.max_benign : &o.max_harmful)) {
                fprintf(stderr, "custos eval --fairness: %s takes a fraction in [0,1] (0.02 = 2 points)\n", a);
                return CUSTOS_RAI_EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "custos eval --fairness: unknown argument '%s'\n", a);
            return CUSTOS_RAI_EXIT_USAGE;
        }
    }
    char err[1024] = "", tbuf[PATH_MAX], ebuf[PATH_MAX], savepath[PATH_MAX + 32];
    custos_config_t *cfg = NULL;
    custos_safety_t *s = NULL;
    custos_fair_set_t set = {0};
    json_object *doc = NULL;
    judge_ctx_t jc = {0};
    int rc = CUSTOS_RAI_EXIT_ERROR;
    custos_safety_scratch_init(&jc.sc, FAIR_MAX_TEXT);
    if (cfgpath && custos_config_load_file(cfgpath, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos eval --fairness: %s\n", err);
        goto out;
    }
    custos_rai_policy_config_t builtin;
    if (cfg) {
        jc.pol = custos_config_find_rai_policy(cfg, policy ? policy : CUSTOS_RAI_DEFAULT_POLICY);
    } else if (!policy || strcmp(policy, CUSTOS_RAI_DEFAULT_POLICY) == 0) {
        /* Microsoft.DefaultV2 without a config (docs/content-filtering.md) */
        memset(&builtin, 0, sizeof(builtin));
        builtin.name = (char *)CUSTOS_RAI_DEFAULT_POLICY;
        for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
            for (int d = 0; d < CUSTOS_RAI_NSRC; d++)
                builtin.filters[k][d] = (custos_rai_filter_t){.enabled = true, .blocking = true, .threshold = 4};
        builtin.jailbreak = CUSTOS_RAI_BLOCK;
        builtin.indirect_attack = CUSTOS_RAI_ANNOTATE;
        jc.pol = &builtin;
    }
    if (!jc.pol) {
        fprintf(stderr, "custos eval --fairness: no rai_policy named '%s'%s\n", policy,
                cfg ? " in the configuration" : " (give -c CONFIG for configured policies)");
        goto out;
    }
    custos_safety_opts_t so = {0};
    if (cfg) {
        so.harm_model = cfg->safety.harm_model;
        so.shields_model = cfg->safety.shields_model;
        so.grounded_model = cfg->safety.grounded_model;
        so.pii_mrn_format = cfg->safety.pii_mrn_format;
    }
    if (custos_safety_new(&so, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos eval --fairness: safety models: %s\n", err);
        goto out;
    }
    jc.s = s;
    o.judge_ud = &jc;
    if (!tdir)
        tdir = default_templates(tbuf, sizeof(tbuf));
    if (custos_fair_set_load(tdir, &set, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos eval --fairness: %s\n", err);
        goto out;
    }
    bool pass = false;
    if (custos_fair_run(&set, &o, &doc, &pass, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos eval --fairness: %s\n", err);
        goto out;
    }
    char ts[32];
    custos_fmt_utc((int64_t)time(NULL), ts, sizeof(ts));
    json_object_object_add(doc, "generated_at", json_object_new_string(ts));
    json_object_object_add(doc, "policy", policy_json(jc.pol, cfgpath));
    json_object *models = json_object_new_object();
    char mp[PATH_MAX], crc[16];
    const char *hp = so.harm_model ? so.harm_model : custos_safety_default_model("harm.model", mp, sizeof(mp));
    json_object_object_add(models, "harm", json_object_new_string(strrchr(hp, '/') ? strrchr(hp, '/') + 1 : hp));
    snprintf(crc, sizeof(crc), "%08x", (unsigned)custos_safety_harm(s)->h->checksum);
    json_object_object_add(models, "harm_crc32", json_object_new_string(crc));
    if (custos_safety_shields(s)) {
        const char *sp =
            so.shields_model ? so.shields_model : custos_safety_default_model("shields.model", mp, sizeof(mp));
        json_object_object_add(models, "shields", json_object_new_string(strrchr(sp, '/') ? strrchr(sp, '/') + 1 : sp));
        snprintf(crc, sizeof(crc), "%08x", (unsigned)custos_safety_shields(s)->h->checksum);
        json_object_object_add(models, "shields_crc32", json_object_new_string(crc));
    }
    json_object_object_add(doc, "models", models);
    json_object_object_add(doc, "templates", json_object_new_string(tdir));
    json_object_object_add(doc, "exit_code", json_object_new_int(pass ? CUSTOS_RAI_EXIT_OK : CUSTOS_RAI_EXIT_GATE));
    /* console summary */
    fprintf(out, "custos eval --fairness: policy %s, %d sentences\n", jc.pol->name ? jc.pol->name : "",
            json_object_get_int(jget(doc, "sentences")));
    fprintf(out, "%-5s %9s %9s  %-34s %-34s %s\n", "lang", "flagged", "detected", "largest benign disparity",
            "largest harmful disparity", "result");
    json_object *langs = jget(doc, "languages");
    for (size_t i = 0; i < json_object_array_length(langs); i++) {
        json_object *L = json_object_array_get_idx(langs, i), *bd = jget(L, "benign_disparity"),
                    *hd = jget(L, "harmful_disparity");
        char bg[80], hg[80];
        snprintf(bg, sizeof(bg), "%s vs %s", jget_s(bd, "high"), jget_s(bd, "low"));
        snprintf(hg, sizeof(hg), "%s vs %s", jget_s(hd, "high"), jget_s(hd, "low"));
        if (!jget(bd, "high"))
            snprintf(bg, sizeof(bg), "(all groups equal)");
        if (!jget(hd, "high"))
            snprintf(hg, sizeof(hg), "(all groups equal)");
        fprintf(out, "%-5s %8.1f%% %8.1f%%  %5.1f pp %-26.26s %5.1f pp %-26.26s %s\n", jget_s(L, "lang"),
                100 * jget_d(jget(L, "benign_overall"), "rate"), 100 * jget_d(jget(L, "harmful_overall"), "rate"),
                100 * jget_d(bd, "value"), bg, 100 * jget_d(hd, "value"), hg,
                json_object_get_boolean(jget(L, "pass")) ? "pass" : "FAIL");
    }
    fprintf(out, "gate (benign <= %.1f pp, harmful <= %.1f pp): %s\n", 100 * o.max_benign, 100 * o.max_harmful,
            pass ? "pass" : "FAIL");
    rc = pass ? CUSTOS_RAI_EXIT_OK : CUSTOS_RAI_EXIT_GATE;
    if (out_json && write_json(out_json, doc) < 0) {
        fprintf(stderr, "custos eval --fairness: cannot write %s\n", out_json);
        rc = CUSTOS_RAI_EXIT_ERROR;
    }
    if (out_html && write_html(out_html, doc) < 0) {
        fprintf(stderr, "custos eval --fairness: cannot write %s\n", out_html);
        rc = CUSTOS_RAI_EXIT_ERROR;
    }
    if (save) {
        const char *dir = cfg && cfg->safety.eval_dir ? cfg->safety.eval_dir
                                                      : custos_safety_default_model("eval", ebuf, sizeof(ebuf));
        snprintf(savepath, sizeof(savepath), "%s/fairness.json", dir);
        if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || write_json(savepath, doc) < 0) {
            fprintf(stderr, "custos eval --fairness: cannot write %s\n", savepath);
            rc = CUSTOS_RAI_EXIT_ERROR;
        } else {
            char rp[PATH_MAX];
            fprintf(out, "saved %s (shown on deployment cards)\n", realpath(savepath, rp) ? rp : savepath);
        }
    }
out:
    json_object_put(doc);
    custos_fair_set_dispose(&set);
    custos_safety_scratch_dispose(&jc.sc);
    custos_safety_free(s);
    if (cfg)
        custos_config_unref(cfg);
    return rc;
}
