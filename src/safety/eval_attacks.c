/* SPDX-License-Identifier: Apache-2.0
 * custos eval --task attacks: prompt-shield quality on attacks-format JSONL (recall, false-positive rate, AUPRC and
 * recall at a fixed false-positive rate, per role and per source). */
#include "safety/cli.h"

#include "safety/safety.h"
#include "safety/shields.h"
#include "util/err.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SRC 128
#define MAX_TEXT (4u * 1024 * 1024)
#define MAX_TIMED 200000 /* texts whose scoring time is kept for the speed line */

typedef struct item {
    float s;
    uint8_t y, det, head;
    uint16_t src;
} item_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_item_desc(const void *a, const void *b)
{
    float x = ((const item_t *)a)->s, y = ((const item_t *)b)->s;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* AUPRC (average precision) and recall at the highest threshold with FPR <= max_fpr, items sorted by score desc. */
static void curve(const item_t *v, size_t n, int head, double max_fpr, double *ap, double *rec_at)
{
    size_t pos = 0, neg = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].head == head)
            v[i].y ? pos++ : neg++;
    *ap = 0;
    *rec_at = 0;
    if (!pos)
        return;
    size_t tp = 0, fp = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i; /* ties form one threshold */
        size_t dtp = 0;
        for (; j < n && v[j].s == v[i].s; j++)
            if (v[j].head == head)
                v[j].y ? (dtp++, tp++) : fp++;
        if (dtp)
            *ap += (double)dtp / (double)pos * (double)tp / (double)(tp + fp);
        if (!neg || (double)fp / (double)neg <= max_fpr)
            *rec_at = (double)tp / (double)pos;
        i = j;
    }
}

int custos_cli_eval_attacks(const char *model, const char *file, FILE *out)
{
    char err[512] = "";
    custos_safety_opts_t so = {.harm_model = NULL, .shields_model = model};
    custos_safety_t *s = NULL;
    FILE *in = NULL;
    item_t *v = NULL;
    size_t n = 0, cap = 0, nsrc = 0;
    char *srcs[MAX_SRC] = {0};
    char *line = NULL;
    size_t lcap = 0, nus = 0;
    double *us = malloc(MAX_TIMED * sizeof(double));
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, MAX_TEXT);
    int rc = 1;
    if (!us || custos_safety_new(&so, &s, err, sizeof(err)) < 0 || !custos_safety_shields(s)) {
        fprintf(stderr, "custos eval: cannot load the shields model: %s\n", err[0] ? err : "shields.model not found");
        goto done;
    }
    const custos_model_t *m = custos_safety_shields(s);
    if (!(in = fopen(file, "r"))) {
        fprintf(stderr, "custos eval: cannot open %s\n", file);
        goto done;
    }
    while (getline(&line, &lcap, in) > 0) {
        json_object *j = json_tokener_parse(line), *t, *role, *attack, *src;
        if (!j || !json_object_object_get_ex(j, "text", &t) || !json_object_object_get_ex(j, "role", &role) ||
            !json_object_object_get_ex(j, "attack", &attack)) {
            json_object_put(j);
            continue;
        }
        const char *rs = json_object_get_string(role);
        int head = strcmp(rs, "user") == 0 ? 0 : strcmp(rs, "document") == 0 ? 1 : -1;
        custos_shield_result_t r;
        size_t tl = (size_t)json_object_get_string_len(t);
        struct timespec ta, tb;
        clock_gettime(CLOCK_MONOTONIC, &ta);
        int src_rc = head < 0 ? -1 : custos_shields_score(m, head, json_object_get_string(t), tl, &r, &sc);
        clock_gettime(CLOCK_MONOTONIC, &tb);
        if (src_rc < 0) {
            json_object_put(j);
            continue;
        }
        if (nus < MAX_TIMED && tl > 0) /* microseconds per KB */
            us[nus++] =
                ((double)(tb.tv_sec - ta.tv_sec) * 1e6 + (double)(tb.tv_nsec - ta.tv_nsec) / 1e3) * 1024.0 / (double)tl;
        const char *sn = json_object_object_get_ex(j, "src", &src) ? json_object_get_string(src) : NULL;
        if (!sn)
            sn = "?";
        size_t si = 0;
        while (si < nsrc && (!srcs[si] || strcmp(srcs[si], sn) != 0))
            si++;
        if (si == nsrc && nsrc < MAX_SRC)
            srcs[nsrc++] = strdup(sn);
        if (si >= nsrc || !srcs[si])
            si = 0;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            item_t *nv = realloc(v, nc * sizeof(item_t));
            if (!nv) {
                json_object_put(j);
                goto done;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = (item_t){r.score, json_object_get_int(attack) > 0, (uint8_t)r.detected, (uint8_t)head, (uint16_t)si};
        json_object_put(j);
    }
    fprintf(out, "custos eval --task attacks %s (%zu rows)\n", file, n);
    if (nus) {
        qsort(us, nus, sizeof(double), cmp_double);
        fprintf(out, "speed: median %.1f us per KB, p99 %.1f us per KB (%zu texts, one core)\n", us[nus / 2],
                us[nus * 99 / 100], nus);
    }
    fprintf(out, "%-16s %7s %7s %8s %8s %8s %8s\n", "detector", "attacks", "benign", "recall", "FPR", "AUPRC",
            "rec@FPR");
    static const double max_fpr[2] = {0.02, 0.05};
    for (int hd = 0; hd < CUSTOS_SHIELD_NHEADS; hd++) {
        size_t pos = 0, neg = 0, tp = 0, fp = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i].head == hd) {
                v[i].y ? pos++ : neg++;
                tp += v[i].y && v[i].det;
                fp += !v[i].y && v[i].det;
            }
        if (!pos && !neg)
            continue;
        qsort(v, n, sizeof(item_t), cmp_item_desc);
        double ap, rat;
        curve(v, n, hd, max_fpr[hd], &ap, &rat);
        fprintf(out, "%-16s %7zu %7zu %8.4f %8.4f %8.4f %8.4f  (rec@FPR at FPR <= %.0f%%)\n", custos_shield_name(hd),
                pos, neg, pos ? (double)tp / (double)pos : 0.0, neg ? (double)fp / (double)neg : 0.0, ap, rat,
                max_fpr[hd] * 100);
    }
    fprintf(out, "\nper source (at the model's detection threshold)\n%-40s %-16s %7s %8s %7s %8s\n", "source",
            "detector", "attacks", "recall", "benign", "FPR");
    for (size_t si = 0; si < nsrc; si++)
        for (int hd = 0; hd < CUSTOS_SHIELD_NHEADS; hd++) {
            size_t pos = 0, neg = 0, tp = 0, fp = 0;
            for (size_t i = 0; i < n; i++)
                if (v[i].src == si && v[i].head == hd) {
                    v[i].y ? pos++ : neg++;
                    tp += v[i].y && v[i].det;
                    fp += !v[i].y && v[i].det;
                }
            if (!pos && !neg)
                continue;
            fprintf(out, "%-40s %-16s %7zu ", srcs[si] ? srcs[si] : "?", custos_shield_name(hd), pos);
            pos ? fprintf(out, "%8.4f ", (double)tp / (double)pos) : fprintf(out, "%8s ", "-");
            fprintf(out, "%7zu ", neg);
            neg ? fprintf(out, "%8.4f\n", (double)fp / (double)neg) : fprintf(out, "%8s\n", "-");
        }
    rc = 0;
done:
    if (in)
        fclose(in);
    free(line);
    free(us);
    free(v);
    for (size_t i = 0; i < nsrc; i++)
        free(srcs[i]);
    custos_safety_scratch_dispose(&sc);
    custos_safety_free(s);
    return rc;
}
