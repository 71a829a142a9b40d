/* SPDX-License-Identifier: Apache-2.0
 * custos check --groundedness and custos eval --task grounded (grounded_cli.h). */
#include "safety/grounded_cli.h"

#include "safety/safety.h"
#include "safety/train.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LINE (4u * 1024 * 1024)
#define JSON_DEPTH 16

static int load(const char *model, custos_grounded_model_t **m)
{
    char path[4096], err[256];
    const char *p = model ? model : custos_safety_default_model("grounded.model", path, sizeof(path));
    if (custos_grounded_model_open(p, m, err, sizeof(err)) < 0) {
        fprintf(stderr, "custos: cannot load the groundedness model: %s\n", err);
        return -1;
    }
    return 0;
}

static void put_error(FILE *out, const char *idjson, const char *msg)
{
    fprintf(out, "{\"id\":%s,\"error\":\"%s\"}\n", idjson ? idjson : "null", msg);
}

int custos_cli_check_grounded(const char *model, FILE *in, FILE *out)
{
    custos_grounded_model_t *m = NULL;
    if (load(model, &m) < 0)
        return 1;
    custos_grounded_row_t *row = malloc(sizeof(*row));
    json_tokener *tok = json_tokener_new_ex(JSON_DEPTH);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 1;
    if (!row || !tok) {
        fprintf(stderr, "custos check: out of memory\n");
        goto out;
    }
    while ((got = getline(&line, &cap, in)) > 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        size_t b = 0;
        while (b < (size_t)got && (line[b] == ' ' || line[b] == '\t'))
            b++;
        if (b == (size_t)got)
            continue;
        if ((size_t)got > MAX_LINE) {
            put_error(out, NULL, "line too long (limit 4 MiB)");
            continue;
        }
        json_tokener_reset(tok);
        json_object *j = json_tokener_parse_ex(tok, line, (int)got);
        if (!j || json_tokener_get_error(tok) != json_tokener_success || tok->char_offset != (int)got ||
            !json_object_is_type(j, json_type_object)) {
            json_object_put(j);
            put_error(out, NULL, "invalid JSON object");
            continue;
        }
        json_object *id = NULL;
        const char *idjson = json_object_object_get_ex(j, "id", &id) && id
                                 ? json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN)
                                 : NULL;
        int pr = custos_grounded_parse_row(j, row);
        custos_grounded_result_t res = {0};
        int dr = pr < 0 ? pr : custos_grounded_detect(m, &row->in, &res);
        if (pr < 0) {
            put_error(out, idjson,
                      pr == CUSTOS_ETOOBIG ? "too many sources" : "expected id, sources (array of strings) and text");
        } else if (dr < 0) {
            put_error(out, idjson, dr == CUSTOS_ETOOBIG ? "text or sources too large" : "groundedness check failed");
        } else {
            fprintf(out, "{\"id\":%s", idjson ? idjson : "null");
            custos_grounded_write_check_json(out, &res);
            fputs("}\n", out);
        }
        custos_grounded_result_dispose(&res);
        json_object_put(j);
    }
    rc = fflush(out) == 0 ? 0 : 1;
out:
    free(line);
    free(row);
    if (tok)
        json_tokener_free(tok);
    custos_grounded_model_free(m);
    return rc;
}

typedef struct ev {
    float s;
    int y;
} ev_t;

static int cmp_ev(const void *a, const void *b)
{
    const ev_t *x = a, *y = b;
    return x->s < y->s ? 1 : x->s > y->s ? -1 : x->y - y->y;
}

static double auprc(ev_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_ev);
    size_t P = 0, tp = 0, fp = 0;
    double ap = 0;
    for (size_t i = 0; i < n; i++)
        P += (size_t)v[i].y;
    for (size_t i = 0; i < n; i++) {
        v[i].y ? tp++ : fp++;
        if (v[i].y)
            ap += (double)tp / (double)(tp + fp);
    }
    return P ? ap / (double)P : 0;
}

#define MAX_SETS 32

typedef struct tally {
    char name[32];
    size_t tp, fp, P, N;
} tally_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void report(FILE *out, const tally_t *t)
{
    double tpr = t->P ? (double)t->tp / (double)t->P : 0, tnr = t->N ? 1.0 - (double)t->fp / (double)t->N : 0;
    fprintf(out, "  %-16s rows %5zu  ungrounded %5zu  recall %.4f  specificity %.4f  balanced accuracy %.4f\n", t->name,
            t->P + t->N, t->P, tpr, tnr, 0.5 * (tpr + tnr));
}

/* Synthetic speed case: a 1 KB answer against 4 KB of sources (the budget is 2 ms on one core). */
static double bench(const custos_grounded_model_t *m)
{
    static const char *const words[] = {"patient", "received", "dose",   "of",       "warfarin", "daily",  "after",
                                        "the",     "surgery",  "blood",  "pressure", "was",      "stable", "and",
                                        "labs",    "showed",   "normal", "kidney",   "function", "on",     "day"};
    char src[4097], ans[1025];
    unsigned x = 12345;
    size_t n = 0;
    while (n < 4000) {
        x = x * 1103515245u + 12345u;
        const char *w = words[(x >> 16) % 21];
        n += (size_t)snprintf(src + n, sizeof(src) - n, "%s%s", w, (x >> 8) % 11 == 0 ? ". " : " ");
        if ((x >> 4) % 9 == 0)
            n += (size_t)snprintf(src + n, sizeof(src) - n, "%u mg ", (x >> 10) % 100);
    }
    memcpy(ans, src + 100, 1024);
    ans[1024] = 0;
    const char *sp[1] = {src};
    size_t sl[1] = {n};
    custos_grounded_input_t in = {.text = ans, .text_len = 1024, .sources = sp, .source_lens = sl, .n_sources = 1};
    int iters = 200;
    double t0 = now_s();
    for (int i = 0; i < iters; i++) {
        custos_grounded_result_t r;
        if (custos_grounded_detect(m, &in, &r) == 0)
            custos_grounded_result_dispose(&r);
    }
    return (now_s() - t0) / iters * 1e3;
}

int custos_cli_eval_grounded(const char *model, const char *file, FILE *out)
{
    custos_grounded_model_t *m = NULL;
    if (load(model, &m) < 0)
        return 1;
    FILE *f = fopen(file, "r");
    if (!f) {
        fprintf(stderr, "custos eval: cannot open %s\n", file);
        custos_grounded_model_free(m);
        return 1;
    }
    custos_grounded_row_t *row = malloc(sizeof(*row));
    ev_t *v = NULL;
    size_t n = 0, cap = 0, lcap = 0, nsets = 0;
    tally_t all = {.name = "all"}, sets[MAX_SETS];
    char *line = NULL;
    double t_total = 0, bytes = 0;
    int rc = 1;
    if (!row)
        goto out;
    while (getline(&line, &lcap, f) > 0) {
        json_object *j = json_tokener_parse(line);
        custos_grounded_result_t res;
        if (!j || custos_grounded_parse_row(j, row) < 0 || row->label < 0) {
            json_object_put(j);
            continue;
        }
        double t0 = now_s();
        int dr = custos_grounded_detect(m, &row->in, &res);
        t_total += now_s() - t0;
        if (dr < 0) {
            json_object_put(j);
            continue;
        }
        bytes += (double)row->in.text_len;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            ev_t *nv = realloc(v, nc * sizeof(*nv));
            if (!nv) {
                custos_grounded_result_dispose(&res);
                json_object_put(j);
                goto out;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = (ev_t){res.score, row->label};
        size_t s = 0;
        while (s < nsets && strncmp(sets[s].name, row->set, sizeof(sets[s].name) - 1) != 0)
            s++;
        if (s == nsets && nsets < MAX_SETS) {
            memset(&sets[s], 0, sizeof(sets[s]));
            snprintf(sets[s].name, sizeof(sets[s].name), "%s", row->set);
            nsets++;
        }
        tally_t *ts[2] = {&all, s < nsets ? &sets[s] : &all};
        for (int k = 0; k < 2 && (k == 0 || ts[1] != &all); k++) {
            if (row->label) {
                ts[k]->P++;
                ts[k]->tp += (size_t)res.detected;
            } else {
                ts[k]->N++;
                ts[k]->fp += (size_t)res.detected;
            }
        }
        custos_grounded_result_dispose(&res);
        json_object_put(j);
    }
    fprintf(out, "custos eval --task grounded %s\n", file);
    report(out, &all);
    for (size_t s = 0; s < nsets; s++)
        report(out, &sets[s]);
    fprintf(out, "AUPRC (positive = ungrounded): %.4f\n", n ? auprc(v, n) : 0.0);
    fprintf(out,
            "speed: %.3f ms per row on average (%.0f answer bytes per row); 1 KB answer vs 4 KB sources: %.3f ms\n",
            n ? t_total / (double)n * 1e3 : 0.0, n ? bytes / (double)n : 0.0, bench(m));
    rc = 0;
out:
    free(line);
    free(v);
    free(row);
    fclose(f);
    custos_grounded_model_free(m);
    return rc;
}

/* ---- argument front ends called from cli.c ---- */

int custos_grounded_cli_check_args(int argc, char **argv, FILE *in, FILE *out)
{
    const char *model = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
            i++;
        else if (strcmp(argv[i], "--groundedness") != 0) {
            fprintf(stderr, "custos check --groundedness: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    return custos_cli_check_grounded(model, in, out);
}

int custos_grounded_cli_eval_args(int argc, char **argv, FILE *out)
{
    const char *model = NULL, *file = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (strcmp(argv[i], "--task") == 0 && i + 1 < argc)
            i++;
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "custos eval: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "usage: custos eval --task grounded [--model FILE] FILE.jsonl\n");
        return 2;
    }
    return custos_cli_eval_grounded(model, file, out);
}

int custos_grounded_cli_train_args(int argc, char **argv, FILE *out)
{
    custos_train_opts_t o = {.log = out, .lr = 0.05f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "custos train grounded: '%s' needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--data") == 0)
            o.data_dir = v;
        else if (strcmp(a, "--out") == 0)
            o.out = v;
        else if (strcmp(a, "--dev-out") == 0)
            o.dev_out = v;
        else if (strcmp(a, "--lr") == 0)
            o.lr = strtof(v, NULL);
        else {
            fprintf(stderr, "custos train grounded: unknown argument '%s'\n", a);
            return 2;
        }
    }
    if (!o.data_dir || !o.out || !(o.lr > 0 && o.lr < 10)) {
        fprintf(stderr, "usage: custos train grounded --data DIR --out FILE [--dev-out FILE] [--lr X]\n");
        return 2;
    }
    char err[512] = "";
    int rc = custos_train_grounded(&o, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "custos train grounded: %s\n", err[0] ? err : custos_strerror(rc));
        return 1;
    }
    return 0;
}
