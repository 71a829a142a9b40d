/* SPDX-License-Identifier: Apache-2.0
 * custos check (the batch-screening contract of PRODUCT.md), custos eval --task harm and custos train harm. */
#include "safety/cli.h"

#include "safety/pii_cli.h"
#include "safety/safety.h"
#include "safety/grounded_cli.h"
#include "safety/shields.h"
#include "safety/train.h"
#include "util/err.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK_MAX_LINE (4u * 1024 * 1024) /* bytes per input line; longer lines get an error line */
#define JSON_MAX_DEPTH 32

const char custos_cli_safety_usage[] =
    "  custos check [--model FILE] [--policy NAME] [--checks harm,shields,pii] < in.jsonl > out.jsonl\n"
    "                              screen {\"id\",\"text\",\"role\"} lines with the built-in models "
    "(docs/models/harm.md);\n"
    "                              --checks runs only the listed detectors (default: all) and omits the others' "
    "fields\n"
    "  custos eval --task harm [--model FILE] [--cascade-band LO,HI] FILE.jsonl\n"
    "                              per-category AUPRC, F1 and false-positive rates on labelled harm JSONL\n"
    "  custos eval --task pii [--model PII_NER_MODEL|none] [--mrn-format FMT] FILE.jsonl\n"
    "                              span precision, recall and F2 per PII type, exact and overlap (docs/models/pii.md)\n"
    "  custos train harm --data DIR --out FILE [--dev-out FILE] [--extra FILE]... [--bits N] [--epochs N] [--seed N]\n"
    "                              train the harm model (deterministic) from DIR/MANIFEST.tsv commercial_ok sets\n"
    "  custos eval --task attacks [--model FILE] FILE.jsonl\n"
    "                              prompt-shield recall, FPR and AUPRC per role and source (docs/models/shields.md)\n"
    "  custos train shields --data DIR --out FILE [--dev-out FILE] [--extra FILE]...\n"
    "                              train the prompt-shield model (jailbreak, indirect_attack) from DIR attacks/\n"
    "  custos train pii --data DIR --out FILE [--dev-out FILE] [--bits N] [--epochs N] [--seed N]\n"
    "                              train the name / address tagger (docs/models/pii.md) from DIR pii/\n"
    "  custos check --groundedness [--model FILE] < in.jsonl\n"
    "                              {\"id\",\"sources\",\"text\"} -> ungrounded sentences "
    "(docs/models/groundedness.md)\n"
    "  custos eval --task grounded [--model FILE] FILE.jsonl\n"
    "  custos train grounded --data DIR --out FILE [--dev-out FILE]\n"
    "                              train the groundedness model from DIR grounded/\n";

/* Bounded line reader: lines longer than max are reported as too long and skipped to their end. */
typedef struct lreader {
    FILE *f;
    char *buf; /* read buffer */
    size_t cap, start, end;
    int eof;
    char *line;
    size_t lcap;
    size_t max;
} lreader_t;

static int lr_init(lreader_t *r, FILE *f, size_t max)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
    r->max = max;
    r->cap = 1u << 20;
    r->buf = malloc(r->cap);
    return r->buf ? 0 : CUSTOS_ENOMEM;
}

static void lr_dispose(lreader_t *r)
{
    free(r->buf);
    free(r->line);
}

/* Returns 1 with the line in *line, *len (NUL-terminated), 2 for a too-long line (skipped), 0 at EOF, <0 on error. */
static int lr_next(lreader_t *r, const char **line, size_t *len)
{
    size_t have = 0;
    int toolong = 0;
    for (;;) {
        if (r->start == r->end) {
            if (r->eof) {
                if (have == 0 && !toolong)
                    return 0;
                break;
            }
            r->start = 0;
            r->end = fread(r->buf, 1, r->cap, r->f);
            if (r->end == 0) {
                r->eof = 1;
                continue;
            }
        }
        char *nl = memchr(r->buf + r->start, '\n', r->end - r->start);
        size_t n = (nl ? (size_t)(nl - r->buf) : r->end) - r->start;
        if (!toolong) {
            if (have + n > r->max) {
                toolong = 1;
            } else {
                if (have + n + 1 > r->lcap) {
                    size_t nc = r->lcap ? r->lcap : 65536;
                    while (nc < have + n + 1)
                        nc *= 2;
                    char *nb = realloc(r->line, nc);
                    if (!nb)
                        return CUSTOS_ENOMEM;
                    r->line = nb;
                    r->lcap = nc;
                }
                memcpy(r->line + have, r->buf + r->start, n);
                have += n;
            }
        }
        r->start += n;
        if (nl) {
            r->start++;
            break;
        }
    }
    if (toolong)
        return 2;
    if (!r->line) {
        r->line = malloc(1);
        if (!r->line)
            return CUSTOS_ENOMEM;
        r->lcap = 1;
    }
    r->line[have] = 0;
    *line = r->line;
    *len = have;
    return 1;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

static int load_safety(const char *model, custos_safety_t **s)
{
    char err[512] = "";
    custos_safety_opts_t o = {.harm_model = model};
    int rc = custos_safety_new(&o, s, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "custos: cannot load model: %s\n", err[0] ? err : custos_strerror(rc));
    return rc;
}

static void put_error(FILE *out, const char *idjson, const char *msg)
{
    fprintf(out, "{\"id\":%s,\"error\":\"%s\"}\n", idjson ? idjson : "null", msg);
}

/* Parses one input line into (id json, text, len); returns NULL on success or an error message. */
static const char *parse_input(json_tokener *tok, const char *line, size_t len, json_object **obj, const char **idjson,
                               const char **text, size_t *tlen)
{
    *obj = NULL;
    *idjson = NULL;
    json_tokener_reset(tok);
    json_object *j = json_tokener_parse_ex(tok, line, (int)len);
    if (!j || json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(j);
        return "invalid JSON";
    }
    size_t off = json_tokener_get_parse_end(tok);
    if (!blank(line + off, len - off)) {
        json_object_put(j);
        return "trailing data after JSON value";
    }
    *obj = j;
    if (!json_object_is_type(j, json_type_object))
        return "line is not a JSON object";
    json_object *id, *t, *role;
    if (json_object_object_get_ex(j, "id", &id) && id) {
        if (!json_object_is_type(id, json_type_string) && !json_object_is_type(id, json_type_int))
            return "id must be a string or an integer";
        *idjson = json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    }
    if (json_object_object_get_ex(j, "role", &role) && role) {
        const char *r = json_object_is_type(role, json_type_string) ? json_object_get_string(role) : "";
        if (strcmp(r, "user") != 0 && strcmp(r, "document") != 0 && strcmp(r, "assistant") != 0 &&
            strcmp(r, "system") != 0)
            return "role must be user, document, assistant or system";
    }
    if (!json_object_object_get_ex(j, "text", &t) || !json_object_is_type(t, json_type_string))
        return "missing or non-string text";
    *text = json_object_get_string(t);
    *tlen = (size_t)json_object_get_string_len(t);
    return NULL;
}

/* Appends the fixed-shape prompt-shield fields: jailbreak scored for role user (the default), indirect_attack for role
 * document; the other field is {score 0, detected false}. No shields model: both zero. */
static void put_shields(FILE *out, const custos_safety_t *s, json_object *obj, const char *text, size_t tlen,
                        custos_safety_scratch_t *sc)
{
    custos_shield_result_t r[CUSTOS_SHIELD_NHEADS] = {0};
    const custos_model_t *sm = custos_safety_shields(s);
    json_object *role;
    const char *rs = json_object_object_get_ex(obj, "role", &role) && role ? json_object_get_string(role) : "user";
    int head = strcmp(rs, "user") == 0       ? CUSTOS_SHIELD_JAILBREAK
               : strcmp(rs, "document") == 0 ? CUSTOS_SHIELD_INDIRECT
                                             : -1;
    if (sm && head >= 0 && custos_shields_score(sm, head, text, tlen, &r[head], sc) < 0)
        memset(&r[head], 0, sizeof(r[head]));
    for (int c = 0; c < CUSTOS_SHIELD_NHEADS; c++)
        fprintf(out, ",\"%s\":{\"score\":%.4f,\"detected\":%s}", custos_shield_name(c), (double)r[c].score,
                r[c].detected ? "true" : "false");
}

enum { CHECK_HARM = 1u << 0, CHECK_SHIELDS = 1u << 1, CHECK_PII = 1u << 2, CHECK_ALL = 7u };

/* Parses a --checks list ("harm,shields,pii", any order, no repeats needed); returns the CHECK_* set or 0 when a
 * name is unknown or the list is empty. */
static unsigned parse_checks(const char *list)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"harm", CHECK_HARM}, {"shields", CHECK_SHIELDS}, {"pii", CHECK_PII}};
    unsigned set = 0;
    const char *p = list;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
            if (strlen(names[k].name) == n && strncmp(names[k].name, p, n) == 0)
                bit = names[k].bit;
        if (!bit)
            return 0;
        set |= bit;
        if (!e)
            return set;
        p = e + 1;
    }
}

int custos_cli_check(int argc, char **argv, FILE *in, FILE *out)
{
    for (int i = 0; i < argc; i++) /* its own input shape (grounded_cli.c) */
        if (strcmp(argv[i], "--groundedness") == 0)
            return custos_grounded_cli_check_args(argc, argv, in, out);
    const char *model = NULL;
    unsigned checks = CHECK_ALL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--checks") == 0 && i + 1 < argc) {
            if (!(checks = parse_checks(argv[++i]))) {
                fprintf(stderr, "custos check: --checks takes a comma-separated list of harm, shields, pii\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            i++; /* policies arrive with rai_policies; the built-in defaults apply until then */
        else if (strcmp(argv[i], "--groundedness") == 0) {
            fprintf(stderr, "custos check: --groundedness is not available in this build\n");
            return 2;
        } else {
            fprintf(stderr, "custos check: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    custos_safety_t *s = NULL;
    if (load_safety(model, &s) < 0)
        return 1;
    const custos_harm_model_t *m = custos_safety_harm(s);
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, CHECK_MAX_LINE);
    json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    lreader_t lr;
    int rc = 1;
    if (!tok || lr_init(&lr, in, CHECK_MAX_LINE) < 0) {
        fprintf(stderr, "custos check: out of memory\n");
        json_tokener_free(tok);
        custos_safety_free(s);
        return 1;
    }
    static char obuf[1 << 16]; /* static: stays valid for the stream's lifetime */
    setvbuf(out, obuf, _IOFBF, sizeof(obuf));
    for (;;) {
        const char *line = NULL;
        size_t len = 0;
        int r = lr_next(&lr, &line, &len);
        if (r == 0)
            break;
        if (r < 0) {
            fprintf(stderr, "custos check: %s\n", custos_strerror(r));
            goto done;
        }
        if (r == 2) {
            put_error(out, NULL, "line too long (limit 4 MiB)");
            continue;
        }
        if (blank(line, len))
            continue;
        json_object *obj;
        const char *idjson, *text = NULL;
        size_t tlen = 0;
        const char *msg = parse_input(tok, line, len, &obj, &idjson, &text, &tlen);
        custos_harm_result_t res = {0};
        int src = msg || !(checks & CHECK_HARM) ? 0 : custos_harm_score(m, text, tlen, &res, &sc);
        if (!msg && src < 0)
            msg = src == CUSTOS_ETOOBIG ? "text too large" : "harm check failed";
        if (msg) {
            put_error(out, idjson, msg);
        } else {
            fprintf(out, "{\"id\":%s", idjson ? idjson : "null");
            for (int c = 0; c < CUSTOS_HARM_NCAT && (checks & CHECK_HARM); c++)
                fprintf(out, ",\"%s\":{\"score\":%.4f,\"severity\":%d}", custos_harm_category_name(c),
                        (double)res.score[c], res.severity[c]);
            if (checks & CHECK_SHIELDS)
                put_shields(out, s, obj, text, tlen, &sc);
            if (checks & CHECK_PII)
                custos_pii_write_json(out, custos_safety_pii(s), text, tlen, &sc); /* type, start, end (code points) */
            fputs("}\n", out);
        }
        json_object_put(obj);
    }
    rc = 0;
done:
    if (fflush(out) != 0)
        rc = 1;
    lr_dispose(&lr);
    json_tokener_free(tok);
    custos_safety_scratch_dispose(&sc);
    custos_safety_free(s);
    return rc;
}

/* ---- eval ---- */

typedef struct scored {
    float s;
    int8_t y;
    uint8_t sev;
} scored_t;

typedef struct series {
    scored_t *v;
    size_t n, cap;
} series_t;

static int series_add(series_t *s, float score, int y, int sev)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        scored_t *nv = realloc(s->v, nc * sizeof(*nv));
        if (!nv)
            return CUSTOS_ENOMEM;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = (scored_t){score, (int8_t)y, (uint8_t)sev};
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = ((const scored_t *)a)->s, y = ((const scored_t *)b)->s;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Average precision (area under the precision-recall curve, step-wise); -1 when there are no positives. */
static double auprc(series_t *s)
{
    size_t npos = 0;
    for (size_t i = 0; i < s->n; i++)
        npos += s->v[i].y == 1;
    if (!npos)
        return -1;
    qsort(s->v, s->n, sizeof(scored_t), cmp_desc);
    double ap = 0;
    size_t tp = 0, i = 0;
    while (i < s->n) { /* ties share one threshold */
        size_t j = i, tpi = 0;
        while (j < s->n && s->v[j].s == s->v[i].s)
            tpi += s->v[j++].y == 1;
        tp += tpi;
        ap += (double)tpi / (double)npos * ((double)tp / (double)j);
        i = j;
    }
    return ap;
}

static void at_threshold(const series_t *s, int sev, double *f1, double *fpr)
{
    size_t tp = 0, fp = 0, fn = 0, neg = 0;
    for (size_t i = 0; i < s->n; i++) {
        int pred = s->v[i].sev >= sev;
        if (s->v[i].y == 1)
            pred ? tp++ : fn++;
        else {
            neg++;
            fp += pred;
        }
    }
    *f1 = tp ? 2.0 * tp / (2.0 * tp + fp + fn) : (tp + fp + fn ? 0 : -1);
    *fpr = neg ? (double)fp / (double)neg : -1;
}

static void pr(FILE *out, double v)
{
    if (v < 0)
        fprintf(out, " %7s", "-");
    else
        fprintf(out, " %7.4f", v);
}

#define EVAL_MAX_SRC 64
#define NSER (CUSTOS_HARM_NCAT + 1) /* four categories + any */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int custos_cli_eval(int argc, char **argv, FILE *out)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--task") == 0 && strcmp(argv[i + 1], "pii") == 0)
            return custos_pii_cli_eval(argc, argv, out);
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--task") == 0 && strcmp(argv[i + 1], "grounded") == 0)
            return custos_grounded_cli_eval_args(argc, argv, out);
    const char *model = NULL, *task = NULL, *file = NULL;
    double band_lo = -1, band_hi = -1; /* --cascade-band LO,HI (docs/guard-models.md) */
    size_t band_any = 0, band_cat[CUSTOS_HARM_NCAT] = {0}, band_conf[2][2] = {{0}}; /* [label][decision] */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--task") == 0 && i + 1 < argc)
            task = argv[++i];
        else if (strcmp(argv[i], "--cascade-band") == 0 && i + 1 < argc) {
            char *e = NULL;
            band_lo = strtod(argv[++i], &e);
            if (!e || *e != ',' || (band_hi = strtod(e + 1, &e), *e) ||
                !(band_lo >= 0 && band_lo <= band_hi && band_hi <= 1)) {
                fprintf(stderr, "custos eval: --cascade-band takes LO,HI with 0 <= LO <= HI <= 1\n");
                return 2;
            }
        } else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "custos eval: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (task && strcmp(task, "attacks") == 0 && file)
        return custos_cli_eval_attacks(model, file, out);
    if (!task || strcmp(task, "harm") != 0 || !file) {
        fprintf(stderr, "usage: custos eval --task harm|attacks [--model FILE] FILE.jsonl\n");
        return 2;
    }
    FILE *in = fopen(file, "r");
    if (!in) {
        fprintf(stderr, "custos eval: cannot open %s\n", file);
        return 1;
    }
    custos_safety_t *s = NULL;
    if (load_safety(model, &s) < 0) {
        fclose(in);
        return 1;
    }
    const custos_harm_model_t *m = custos_safety_harm(s);
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, CHECK_MAX_LINE);
    json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    lreader_t lr;
    char *srcnames[EVAL_MAX_SRC + 1] = {0};
    series_t ser[EVAL_MAX_SRC + 1][NSER];
    memset(ser, 0, sizeof(ser));
    int nsrc = 0, rc = 1;
    double *lat = NULL;
    size_t nlat = 0, latcap = 0, rows = 0, bad = 0;
    double bytes = 0, secs = 0;
    static const char *const names[CUSTOS_HARM_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    if (!tok || lr_init(&lr, in, CHECK_MAX_LINE) < 0) {
        fprintf(stderr, "custos eval: out of memory\n");
        goto out_nolr;
    }
    for (;;) {
        const char *line;
        size_t len;
        int r = lr_next(&lr, &line, &len);
        if (r == 0)
            break;
        if (r < 0)
            goto done;
        if (r == 2 || blank(line, len)) {
            bad += r == 2;
            continue;
        }
        json_object *j, *t, *labels = NULL, *srcj = NULL, *v;
        json_tokener_reset(tok);
        j = json_tokener_parse_ex(tok, line, (int)len);
        if (!j || !json_object_object_get_ex(j, "text", &t) || !json_object_is_type(t, json_type_string)) {
            json_object_put(j);
            bad++;
            continue;
        }
        json_object_object_get_ex(j, "labels", &labels);
        json_object_object_get_ex(j, "src", &srcj);
        const char *src = srcj && json_object_is_type(srcj, json_type_string) ? json_object_get_string(srcj) : "-";
        int si = 0;
        while (si < nsrc && strcmp(srcnames[si], src) != 0)
            si++;
        if (si == nsrc && nsrc < EVAL_MAX_SRC) {
            srcnames[nsrc] = strdup(src);
            if (!srcnames[nsrc]) {
                json_object_put(j);
                goto done;
            }
            nsrc++;
        }
        if (si >= nsrc)
            si = -1; /* too many sources: totals only */
        const char *text = json_object_get_string(t);
        size_t tlen = (size_t)json_object_get_string_len(t);
        custos_harm_result_t res = {0};
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int sr = custos_harm_score(m, text, tlen, &res, &sc);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (sr < 0) {
            json_object_put(j);
            bad++;
            continue;
        }
        double dt = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        secs += dt;
        bytes += (double)tlen;
        rows++;
        if (nlat == latcap) {
            latcap = latcap ? latcap * 2 : 4096;
            double *nl = realloc(lat, latcap * sizeof(double));
            if (!nl) {
                json_object_put(j);
                goto done;
            }
            lat = nl;
        }
        lat[nlat++] = dt * 1e6;
        int y[NSER], anyknown_pos = 0, all_zero = 1;
        float maxs = 0;
        int maxsev = 0;
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
            y[c] = -1;
            if (labels && json_object_object_get_ex(labels, names[c], &v) && v)
                y[c] = json_object_get_int(v) > 0 ? 1 : 0;
            if (y[c] == 1)
                anyknown_pos = 1;
            if (y[c] != 0)
                all_zero = 0;
            maxs = res.score[c] > maxs ? res.score[c] : maxs;
            maxsev = res.severity[c] > maxsev ? res.severity[c] : maxsev;
        }
        if (band_lo >= 0) { /* the cascade: a text goes to the guard when a category's score is inside the band */
            int asked = 0, block = 0;
            for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
                int inb = res.score[c] >= band_lo && res.score[c] <= band_hi;
                band_cat[c] += (size_t)inb;
                asked |= inb;
                block |= res.score[c] > band_hi;
            }
            band_any += asked;
            int ya = labels && json_object_object_get_ex(labels, "any", &v) && v ? json_object_get_int(v) > 0 : -1;
            for (int c = 0; ya < 0 && c < CUSTOS_HARM_NCAT; c++)
                if (labels && json_object_object_get_ex(labels, names[c], &v) && v && json_object_get_int(v) > 0)
                    ya = 1;
            if (ya < 0 && labels)
                ya = 0;
            if (ya >= 0) /* decision with a guard that is always right inside the band */
                band_conf[ya][block || (asked && ya == 1)]++;
        }
        y[CUSTOS_HARM_NCAT] = -1;
        if (labels && json_object_object_get_ex(labels, "any", &v) && v)
            y[CUSTOS_HARM_NCAT] = json_object_get_int(v) > 0 ? 1 : 0;
        else if (anyknown_pos)
            y[CUSTOS_HARM_NCAT] = 1;
        else if (all_zero)
            y[CUSTOS_HARM_NCAT] = 0;
        if (y[CUSTOS_HARM_NCAT] == 0) /* any = 0: nothing harmful, so every category is 0 too */
            for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
                if (y[c] < 0)
                    y[c] = 0;
        for (int c = 0; c < NSER; c++) {
            if (y[c] < 0)
                continue;
            float sc_ = c < CUSTOS_HARM_NCAT ? res.score[c] : maxs;
            int sv = c < CUSTOS_HARM_NCAT ? res.severity[c] : maxsev;
            if (series_add(&ser[EVAL_MAX_SRC][c], sc_, y[c], sv) < 0 ||
                (si >= 0 && series_add(&ser[si][c], sc_, y[c], sv) < 0)) {
                json_object_put(j);
                goto done;
            }
        }
        json_object_put(j);
    }
    double med = 0, p99 = 0;
    if (nlat) {
        qsort(lat, nlat, sizeof(double), cmp_double);
        med = lat[nlat / 2];
        p99 = lat[(size_t)((double)(nlat - 1) * 0.99)];
    }
    fprintf(out, "custos eval --task harm %s\n", file);
    fprintf(out,
            "rows %zu (skipped %zu), %.2f MB, scoring %.1f MB/s on one core, %.1f us/row median, %.1f us p99, "
            "%.0f bytes/row mean\n",
            rows, bad, bytes / 1e6, secs > 0 ? bytes / 1e6 / secs : 0, med, p99, rows ? bytes / (double)rows : 0);
    fprintf(out, "\n%-10s %7s %7s %7s %7s %7s %7s %7s %7s %7s\n", "category", "n", "pos", "AUPRC", "F1@low", "FPR@low",
            "F1@med", "FPR@med", "F1@high", "FPR@hi");
    for (int c = 0; c < NSER; c++) {
        series_t *sr = &ser[EVAL_MAX_SRC][c];
        size_t npos = 0;
        for (size_t i = 0; i < sr->n; i++)
            npos += sr->v[i].y == 1;
        fprintf(out, "%-10s %7zu %7zu", c < CUSTOS_HARM_NCAT ? names[c] : "any", sr->n, npos);
        pr(out, auprc(sr));
        static const int sevs[3] = {CUSTOS_HARM_SEV_LOW, CUSTOS_HARM_SEV_MEDIUM, CUSTOS_HARM_SEV_HIGH};
        for (int k = 0; k < 3; k++) {
            double f1, fpr;
            at_threshold(sr, sevs[k], &f1, &fpr);
            pr(out, f1);
            pr(out, fpr);
        }
        fputc('\n', out);
    }
    fprintf(out, "\nper source (AUPRC; '-' = no positives; FPR = any-harm false-positive rate at medium)\n");
    fprintf(out, "%-42s %7s %7s %7s %7s %7s %7s %7s\n", "source", "n", "any", "hate", "sexual", "violence", "self_h",
            "FPR@med");
    for (int si = 0; si < nsrc; si++) {
        fprintf(out, "%-42.42s %7zu", srcnames[si], ser[si][CUSTOS_HARM_NCAT].n);
        pr(out, auprc(&ser[si][CUSTOS_HARM_NCAT]));
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
            pr(out, auprc(&ser[si][c]));
        double f1, fpr;
        at_threshold(&ser[si][CUSTOS_HARM_NCAT], CUSTOS_HARM_SEV_MEDIUM, &f1, &fpr);
        pr(out, fpr);
        fputc('\n', out);
    }
    if (band_lo >= 0 && rows) {
        fprintf(out, "\ncascade band [%.3f, %.3f] (whole-text scores; docs/guard-models.md)\n", band_lo, band_hi);
        fprintf(out, "sent to the guard: %zu of %zu texts (%.2f%%)", band_any, rows,
                100.0 * (double)band_any / (double)rows);
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
            fprintf(out, "%s%s %.2f%%", c ? ", " : "; per category: ", names[c],
                    100.0 * (double)band_cat[c] / (double)rows);
        fputc('\n', out);
        size_t tp = band_conf[1][1], fn = band_conf[1][0], fp = band_conf[0][1], tn = band_conf[0][0];
        if (tp + fn + fp + tn)
            fprintf(out, "with a guard that is always right inside the band: recall %.3f, false-positive rate %.4f\n",
                    tp + fn ? (double)tp / (double)(tp + fn) : 0.0, fp + tn ? (double)fp / (double)(fp + tn) : 0.0);
    }
    rc = 0;
done:
    lr_dispose(&lr);
out_nolr:
    for (int si = 0; si <= EVAL_MAX_SRC; si++) {
        free(srcnames[si]);
        for (int c = 0; c < NSER; c++)
            free(ser[si][c].v);
    }
    free(lat);
    json_tokener_free(tok);
    custos_safety_scratch_dispose(&sc);
    custos_safety_free(s);
    fclose(in);
    return rc;
}

int custos_cli_train(int argc, char **argv, FILE *out)
{
    if (argc >= 1 && strcmp(argv[0], "grounded") == 0)
        return custos_grounded_cli_train_args(argc, argv, out);
    int shields = argc >= 1 && strcmp(argv[0], "shields") == 0;
    int pii = argc >= 1 && strcmp(argv[0], "pii") == 0;
    if (argc < 1 || (strcmp(argv[0], "harm") != 0 && !shields && !pii)) {
        fprintf(stderr,
                "usage: custos train harm|shields|pii --data DIR --out FILE [--dev-out FILE] [--extra FILE]...\n");
        return 2;
    }
    custos_train_opts_t o = {.log = out, .aug_frac = -1};
    int nextra = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "custos train: '%s' needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--data") == 0)
            o.data_dir = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--dev-out") == 0)
            o.dev_out = v;
        else if (strcmp(a, "--extra") == 0 && nextra < 4)
            o.extra[nextra++] = v;
        else if (strcmp(a, "--bits") == 0)
            o.hash_bits = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--epochs") == 0)
            o.epochs = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0)
            o.seed = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--lr") == 0)
            o.lr = strtof(v, NULL);
        else if (strcmp(a, "--aug") == 0)
            o.aug_frac = strtof(v, NULL);
        else {
            fprintf(stderr, "custos train: unknown argument '%s'\n", a);
            return 2;
        }
    }
    if (!o.data_dir || !o.out) {
        fprintf(stderr, "custos train harm: --data and --out are required\n");
        return 2;
    }
    if (o.epochs > 100 || (o.hash_bits && (o.hash_bits < 16 || o.hash_bits > 22))) {
        fprintf(stderr, "custos train harm: --epochs 1..100, --bits 16..22\n");
        return 2;
    }
    char err[512] = "";
    int rc = pii       ? custos_train_pii(&o, err, sizeof(err))
             : shields ? custos_train_shields(&o, err, sizeof(err))
                       : custos_train_harm(&o, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "custos train harm: %s\n", err[0] ? err : custos_strerror(rc));
        return 1;
    }
    return 0;
}
