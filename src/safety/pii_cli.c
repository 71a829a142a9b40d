/* SPDX-License-Identifier: Apache-2.0
 * PII front ends: the "pii" array of custos check and custos eval --task pii (span precision / recall / F2 per type,
 * exact and overlap matching) over JSONL rows {"text", "spans":[{"type","start","end"}]}. */
#include "safety/pii_cli.h"

#include "safety/pii_ner.h"
#include "safety/safety.h"

#include "util/err.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PII_MAX_SPANS 4096
#define PII_EVAL_MAX_LINE (4u * 1024 * 1024)
#define PII_EVAL_MAX_GOLD 1024
#define PII_EVAL_MAX_OTHER 32

int custos_pii_write_json(FILE *out, const custos_pii_t *p, const char *text, size_t len,
                          custos_safety_scratch_t *scratch)
{
    static _Thread_local custos_pii_span_t spans[PII_MAX_SPANS];
    size_t n = 0;
    int rc = custos_pii_scan(p, text, len, scratch, spans, PII_MAX_SPANS, &n);
    if (rc < 0)
        return rc;
    fputs(",\"pii\":[", out);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s{\"type\":\"%s\",\"start\":%u,\"end\":%u}", i ? "," : "", custos_pii_type_name(spans[i].type),
                spans[i].start, spans[i].end);
    fputc(']', out);
    return 0;
}

/* Gold type names used by other tools (Presidio) mapped to ours. */
static int gold_type(const char *name)
{
    static const struct {
        const char *from;
        int to;
    } alias[] = {{"EMAIL_ADDRESS", CUSTOS_PII_EMAIL}, {"PHONE_NUMBER", CUSTOS_PII_PHONE},
                 {"IBAN_CODE", CUSTOS_PII_IBAN},      {"SSN", CUSTOS_PII_US_SSN},
                 {"DOB", CUSTOS_PII_DATE_OF_BIRTH},   {"US_ZIP", CUSTOS_PII_ZIP},
                 {"MEDICAL_RECORD", CUSTOS_PII_MRN}};
    int t = custos_pii_type_from_name(name);
    if (t >= 0)
        return t;
    for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++)
        if (strcmp(alias[i].from, name) == 0)
            return alias[i].to;
    return -1;
}

typedef struct counts {
    size_t gold, pred, tp_exact_g, tp_exact_p, tp_over_g, tp_over_p;
} counts_t;

typedef struct gspan {
    int type;
    long start, end;
} gspan_t;

static double f2(double p, double r)
{
    return p + r > 0 ? 5 * p * r / (4 * p + r) : 0;
}

static void row(FILE *out, const char *name, const counts_t *c)
{
    double pe = c->pred ? (double)c->tp_exact_p / (double)c->pred : (c->gold ? 0 : 1);
    double re = c->gold ? (double)c->tp_exact_g / (double)c->gold : 1;
    double po = c->pred ? (double)c->tp_over_p / (double)c->pred : (c->gold ? 0 : 1);
    double ro = c->gold ? (double)c->tp_over_g / (double)c->gold : 1;
    fprintf(out, "%-18s %6zu %6zu   %6.4f %6.4f %6.4f   %6.4f %6.4f %6.4f\n", name, c->gold, c->pred, pe, re,
            f2(pe, re), po, ro, f2(po, ro));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int custos_pii_cli_eval(int argc, char **argv, FILE *out)
{
    const char *file = NULL, *mrn = NULL, *model = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--task") == 0 && i + 1 < argc)
            i++;
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--mrn-format") == 0 && i + 1 < argc)
            mrn = argv[++i];
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "custos eval: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "usage: custos eval --task pii [--model PII_NER_MODEL|none] [--mrn-format FMT] FILE.jsonl\n");
        return 2;
    }
    char err[256] = "", mpath[4096];
    custos_pii_t *p = NULL;
    custos_model_t *ner = NULL;
    if (!model && access(custos_safety_default_model("pii_ner.model", mpath, sizeof(mpath)), R_OK) == 0)
        model = mpath; /* the tagger is optional: without it only the structured types are scored */
    if (model && strcmp(model, "none") == 0)
        model = NULL; /* --model none: structured types only */
    if (model && (custos_model_open(model, &ner, err, sizeof(err)) < 0 || custos_pii_ner_check(ner) < 0)) {
        fprintf(stderr, "custos eval: %s\n", err[0] ? err : "not a PII tagger model");
        custos_model_free(ner);
        return 2;
    }
    custos_pii_opts_t o = {.mrn_format = mrn, .ner = ner, .ner_types = CUSTOS_PII_NER_ALL}; /* eval scores all */
    if (custos_pii_new(&o, &p, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos eval: %s\n", err[0] ? err : "cannot create the PII scanner");
        custos_model_free(ner);
        return 2;
    }
    FILE *in = fopen(file, "r");
    if (!in) {
        fprintf(stderr, "custos eval: cannot open %s\n", file);
        custos_pii_free(p);
        custos_model_free(ner);
        return 1;
    }
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, PII_EVAL_MAX_LINE);
    counts_t cnt[CUSTOS_PII_NTYPES] = {{0}};
    char *other[PII_EVAL_MAX_OTHER] = {0};
    size_t other_n[PII_EVAL_MAX_OTHER] = {0};
    int nother = 0, rc = 1;
    char *line = NULL;
    size_t lcap = 0, rows = 0, bad = 0, nlat = 0, latcap = 0;
    double *lat = NULL, bytes = 0;
    custos_pii_span_t *pred = malloc(PII_MAX_SPANS * sizeof(*pred));
    gspan_t *gold = malloc(PII_EVAL_MAX_GOLD * sizeof(*gold));
    json_tokener *tok = json_tokener_new_ex(32);
    if (!pred || !gold || !tok)
        goto done;
    ssize_t len;
    while ((len = getline(&line, &lcap, in)) >= 0) {
        if ((size_t)len > PII_EVAL_MAX_LINE) {
            bad++;
            continue;
        }
        json_tokener_reset(tok);
        json_object *j = json_tokener_parse_ex(tok, line, (int)len), *t, *spans;
        if (!j || !json_object_object_get_ex(j, "text", &t) || !json_object_is_type(t, json_type_string)) {
            bad += len > 1;
            json_object_put(j);
            continue;
        }
        size_t ng = 0;
        if (json_object_object_get_ex(j, "spans", &spans) && json_object_is_type(spans, json_type_array)) {
            for (size_t k = 0; k < json_object_array_length(spans) && ng < PII_EVAL_MAX_GOLD; k++) {
                json_object *sp = json_object_array_get_idx(spans, k), *ty, *st, *en;
                if (!json_object_object_get_ex(sp, "type", &ty) || !json_object_object_get_ex(sp, "start", &st) ||
                    !json_object_object_get_ex(sp, "end", &en))
                    continue;
                const char *tn = json_object_get_string(ty);
                if (!tn)
                    continue;
                int gt = gold_type(tn);
                if (gt < 0) {
                    int o2 = 0;
                    while (o2 < nother && strcmp(other[o2], tn) != 0)
                        o2++;
                    if (o2 == nother && nother < PII_EVAL_MAX_OTHER && (other[o2] = strdup(tn)))
                        nother++;
                    if (o2 < nother)
                        other_n[o2]++;
                    continue;
                }
                gold[ng++] = (gspan_t){gt, json_object_get_int64(st), json_object_get_int64(en)};
            }
        }
        const char *text = json_object_get_string(t);
        size_t tl = (size_t)json_object_get_string_len(t), np = 0;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int sr = custos_pii_scan(p, text, tl, &sc, pred, PII_MAX_SPANS, &np);
        clock_gettime(CLOCK_MONOTONIC, &b);
        json_object_put(j);
        if (sr < 0) {
            bad++;
            continue;
        }
        rows++;
        bytes += (double)tl;
        if (nlat == latcap) {
            latcap = latcap ? latcap * 2 : 4096;
            double *nl = realloc(lat, latcap * sizeof(double));
            if (!nl)
                goto done;
            lat = nl;
        }
        double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 1e3;
        lat[nlat++] = tl ? us * 1024.0 / (double)tl : us;
        for (size_t g = 0; g < ng; g++) {
            counts_t *c = &cnt[gold[g].type];
            c->gold++;
            int ex = 0, ov = 0;
            for (size_t q = 0; q < np; q++) {
                if (pred[q].type != gold[g].type)
                    continue;
                ex |= pred[q].start == gold[g].start && pred[q].end == gold[g].end;
                ov |= (long)pred[q].start < gold[g].end && gold[g].start < (long)pred[q].end;
            }
            c->tp_exact_g += (size_t)ex;
            c->tp_over_g += (size_t)ov;
        }
        for (size_t q = 0; q < np; q++) {
            counts_t *c = &cnt[pred[q].type];
            c->pred++;
            int ex = 0, ov = 0;
            for (size_t g = 0; g < ng; g++) {
                if (pred[q].type != gold[g].type)
                    continue;
                ex |= pred[q].start == gold[g].start && pred[q].end == gold[g].end;
                ov |= (long)pred[q].start < gold[g].end && gold[g].start < (long)pred[q].end;
            }
            c->tp_exact_p += (size_t)ex;
            c->tp_over_p += (size_t)ov;
        }
    }
    double med = 0;
    if (nlat) {
        qsort(lat, nlat, sizeof(double), cmp_double);
        med = lat[nlat / 2];
    }
    fprintf(out, "custos eval --task pii %s\n", file);
    fprintf(out, "rows %zu (skipped %zu), %.2f MB, %.1f us median per 1 KB on one core\n\n", rows, bad, bytes / 1e6,
            med);
    fprintf(out, "%-18s %6s %6s   %6s %6s %6s   %6s %6s %6s\n", "type", "gold", "pred", "P", "R", "F2", "P~", "R~",
            "F2~");
    counts_t all[2] = {{0}};
    for (int t = 0; t < CUSTOS_PII_NTYPES; t++) {
        const counts_t *c = &cnt[t];
        if (!c->gold && !c->pred)
            continue;
        row(out, custos_pii_type_name(t), c);
        counts_t *a = &all[t >= CUSTOS_PII_PERSON]; /* structured identifiers vs the tagger's names / places */
        a->gold += c->gold;
        a->pred += c->pred;
        a->tp_exact_g += c->tp_exact_g;
        a->tp_exact_p += c->tp_exact_p;
        a->tp_over_g += c->tp_over_g;
        a->tp_over_p += c->tp_over_p;
    }
    if (all[0].gold || all[0].pred)
        row(out, "structured", &all[0]);
    if (all[1].gold || all[1].pred)
        row(out, "names+places", &all[1]);
    fprintf(out, "(P R F2: exact span and type; P~ R~ F2~: overlapping span of the same type)\n");
    for (int o2 = 0; o2 < nother; o2++)
        fprintf(out, "%-18s %6zu   not covered (not a custos PII type)\n", other[o2], other_n[o2]);
    rc = 0;
done:
    for (int o2 = 0; o2 < nother; o2++)
        free(other[o2]);
    json_tokener_free(tok);
    free(line);
    free(lat);
    free(pred);
    free(gold);
    fclose(in);
    custos_safety_scratch_dispose(&sc);
    custos_pii_free(p);
    custos_model_free(ner);
    return rc;
}
