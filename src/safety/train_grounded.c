/* SPDX-License-Identifier: Apache-2.0
 * Groundedness trainer (custos train grounded, docs/models/groundedness.md): reads the commercial_ok grounded/ sets,
 * holds out a dev split cut by source (every row whose sources hash into the dev bucket), builds the IDF table from
 * the training sources, and fits the sentence-level logistic model by multiple-instance learning: a grounded answer
 * teaches every sentence "supported", an ungrounded one teaches its highest-scoring sentence "unsupported". Full-batch
 * gradient descent in a fixed order with double accumulators: same inputs -> byte-identical model. */
#include "safety/grounded.h"
#include "safety/grounded_cli.h"
#include "safety/train.h"
#include "safety/train_internal.h"

#include "util/err.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NF CUSTOS_GROUNDED_NFEAT
#define IDF_N (1u << CUSTOS_GROUNDED_IDF_BITS)
#define DEV_PCT 20u
#define ITERS 400
#define L2 1e-3
#define MAX_SETS 16

typedef struct grow {
    float *f;  /* n * NF raw features */
    size_t n;  /* sentences */
    uint8_t y; /* 1 = ungrounded */
    uint8_t dev;
    uint8_t set; /* index into set names */
    uint8_t qna; /* task QnA (the row has a query) */
    float w;     /* training weight */
    char *line;  /* dev rows: the JSONL line */
} grow_t;

typedef struct gdata {
    grow_t *v;
    size_t n, cap;
    char *set_names[MAX_SETS];
    size_t n_sets;
    /* IDF: document frequency per bucket over distinct training sources */
    uint32_t *df, *stamp;
    uint32_t n_docs;
    uint64_t *seen; /* hashes of sources already counted */
    size_t n_seen, seen_cap;
} gdata_t;

int custos_grounded_parse_row(json_object *j, custos_grounded_row_t *r)
{
    memset(r, 0, sizeof(*r));
    json_object *t, *s, *g, *q, *src;
    if (!json_object_object_get_ex(j, "text", &t) || !json_object_is_type(t, json_type_string) ||
        !json_object_object_get_ex(j, "sources", &s) || !json_object_is_type(s, json_type_array))
        return CUSTOS_EINVAL;
    size_t ns = json_object_array_length(s);
    if (ns > CUSTOS_GROUNDED_MAX_SOURCES)
        return CUSTOS_ETOOBIG;
    for (size_t i = 0; i < ns; i++) {
        json_object *x = json_object_array_get_idx(s, i);
        if (!x || !json_object_is_type(x, json_type_string))
            return CUSTOS_EINVAL;
        r->src_ptr[i] = json_object_get_string(x);
        r->src_len[i] = (size_t)json_object_get_string_len(x);
    }
    r->in.text = json_object_get_string(t);
    r->in.text_len = (size_t)json_object_get_string_len(t);
    r->in.sources = r->src_ptr;
    r->in.source_lens = r->src_len;
    r->in.n_sources = ns;
    r->label = -1;
    if (json_object_object_get_ex(j, "grounded", &g) &&
        (json_object_is_type(g, json_type_int) || json_object_is_type(g, json_type_boolean)))
        r->label = json_object_get_int(g) ? 0 : 1;
    if (json_object_object_get_ex(j, "query", &q) && json_object_is_type(q, json_type_string)) {
        r->in.query = json_object_get_string(q);
        r->in.query_len = (size_t)json_object_get_string_len(q);
        r->in.task = CUSTOS_GROUNDED_QNA;
    }
    r->set = "";
    if (json_object_object_get_ex(j, "src", &src) && json_object_is_type(src, json_type_string))
        r->set = json_object_get_string(src);
    return 0;
}

/* 1 if row r falls in the dev split, cut by a hash of all its sources (so rows sharing sources share a split). */
static int source_is_dev(const custos_grounded_row_t *r)
{
    uint64_t sh = CUSTOS_TRAIN_FNV_OFFSET;
    for (size_t i = 0; i < r->in.n_sources; i++)
        sh = custos_train_fnv1a(r->src_ptr[i], r->src_len[i], sh) ^ 0x1f;
    return custos_train_mix64(sh) % 100 < DEV_PCT;
}

static int seen_add(gdata_t *d, uint64_t h)
{
    for (size_t i = 0; i < d->n_seen; i++)
        if (d->seen[i] == h)
            return 0;
    if (d->n_seen == d->seen_cap) {
        size_t nc = d->seen_cap ? d->seen_cap * 2 : 1024;
        uint64_t *nv = realloc(d->seen, nc * sizeof(*nv));
        if (!nv)
            return CUSTOS_ENOMEM;
        d->seen = nv;
        d->seen_cap = nc;
    }
    d->seen[d->n_seen++] = h;
    return 1;
}

static void df_word(void *ud, uint64_t h)
{
    gdata_t *d = ud;
    uint32_t b = (uint32_t)(h & (IDF_N - 1));
    if (d->stamp[b] != d->n_docs) {
        d->stamp[b] = d->n_docs;
        d->df[b]++;
    }
}

typedef struct pending {
    char *line;
    uint8_t set;
} pending_t;

/* Pass 1: reads the rows of one file; training rows' distinct sources feed the document frequencies. Rows are
 * kept as lines and featurised after the IDF table exists. */
static int load_file(gdata_t *d, const char *path, pending_t **pend, size_t *np, size_t *pcap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return CUSTOS_EIO;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&buf, &cap, f)) > 0) {
        while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
            buf[--got] = 0;
        json_object *j = json_tokener_parse(buf);
        custos_grounded_row_t r;
        if (!j || custos_grounded_parse_row(j, &r) < 0 || r.label < 0) {
            json_object_put(j);
            continue;
        }
        size_t si = 0;
        while (si < d->n_sets && strcmp(d->set_names[si], r.set) != 0)
            si++;
        if (si == d->n_sets && d->n_sets < MAX_SETS)
            d->set_names[d->n_sets++] = strdup(r.set);
        if (si >= MAX_SETS)
            si = MAX_SETS - 1;
        int dev = source_is_dev(&r);
        if (!dev)
            for (size_t i = 0; i < r.in.n_sources && rc >= 0; i++) {
                uint64_t h =
                    custos_train_mix64(custos_train_fnv1a(r.src_ptr[i], r.src_len[i], CUSTOS_TRAIN_FNV_OFFSET));
                rc = seen_add(d, h);
                if (rc == 1) {
                    d->n_docs++;
                    custos_grounded_each_word(r.src_ptr[i], r.src_len[i], df_word, d);
                }
            }
        json_object_put(j);
        if (rc < 0)
            break;
        if (*np == *pcap) {
            size_t nc = *pcap ? *pcap * 2 : 1024;
            pending_t *nv = realloc(*pend, nc * sizeof(*nv));
            if (!nv) {
                rc = CUSTOS_ENOMEM;
                break;
            }
            *pend = nv;
            *pcap = nc;
        }
        (*pend)[*np].line = strdup(buf);
        (*pend)[*np].set = (uint8_t)si;
        if (!(*pend)[*np].line) {
            rc = CUSTOS_ENOMEM;
            break;
        }
        (*np)++;
    }
    free(buf);
    fclose(f);
    return rc < 0 ? rc : 0;
}

typedef struct grounded_load {
    const custos_train_opts_t *o;
    gdata_t *d;
    pending_t **pend;
    size_t *np, *pcap;
} grounded_load_t;

static int grounded_load_one(void *ud, const char *file, const char *path, const char *notes, char *err, size_t errlen)
{
    grounded_load_t *l = ud;
    (void)notes;
    if (strncmp(file, "grounded/", 9) != 0)
        return 0;
    custos_train_log(l->o, "  %s\n", file);
    return custos_train_read_result(load_file(l->d, path, l->pend, l->np, l->pcap), path, err, errlen);
}

static int load_manifest(const custos_train_opts_t *o, gdata_t *d, pending_t **pend, size_t *np, size_t *pcap,
                         char *err, size_t errlen)
{
    grounded_load_t l = {o, d, pend, np, pcap};
    return custos_train_manifest_each(o->data_dir, grounded_load_one, &l, err, errlen);
}

static double dot(const double *w, const float *f, const float *mean, const float *inv)
{
    double z = w[NF];
    for (int i = 0; i < NF; i++)
        z += w[i] * ((double)f[i] - mean[i]) * inv[i];
    return z;
}

static double doc_max(const double *w, const grow_t *r, const float *mean, const float *inv, size_t *arg)
{
    double best = -1e30;
    *arg = 0;
    for (size_t s = 0; s < r->n; s++) {
        double z = dot(w, r->f + s * NF, mean, inv);
        if (z > best) {
            best = z;
            *arg = s;
        }
    }
    return r->n ? best : -1e30;
}

typedef struct scored {
    double z;
    uint8_t y;
} scored_t;

static int cmp_scored(const void *a, const void *b)
{
    const scored_t *x = a, *y = b;
    return x->z < y->z ? 1 : x->z > y->z ? -1 : (int)x->y - (int)y->y;
}

/* Threshold on z maximising balanced accuracy; also the AUPRC (positive = ungrounded). */
static double best_threshold(scored_t *v, size_t n, double *bacc, double *auprc)
{
    qsort(v, n, sizeof(*v), cmp_scored);
    size_t P = 0, N = 0;
    for (size_t i = 0; i < n; i++)
        v[i].y ? P++ : N++;
    double best = 0, thr = 0, ap = 0;
    size_t tp = 0, fp = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].y ? tp++ : fp++;
        if (v[i].y)
            ap += (double)tp / (double)(tp + fp);
        if (i + 1 < n && v[i + 1].z == v[i].z)
            continue;
        double ba = 0.5 * ((P ? (double)tp / P : 0) + (N ? 1.0 - (double)fp / N : 0));
        if (ba > best) {
            best = ba;
            thr = i + 1 < n ? 0.5 * (v[i].z + v[i + 1].z) : v[i].z - 1e-6;
        }
    }
    *bacc = best;
    *auprc = P ? ap / P : 0;
    return thr;
}

static void metrics_at(const double *w, const gdata_t *d, int dev, int set, const float *mean, const float *inv,
                       double qna_bias, double *bacc, double *auprc, size_t *n)
{
    size_t tp = 0, fp = 0, P = 0, N = 0;
    scored_t *v = malloc((d->n + 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++) {
        const grow_t *r = &d->v[i];
        if (r->dev != dev || (set >= 0 && r->set != set))
            continue;
        size_t a;
        double z = doc_max(w, r, mean, inv, &a) + (r->qna ? qna_bias : 0.0);
        int pred = z >= 0;
        r->y ? (P++, tp += (size_t)pred) : (N++, fp += (size_t)pred);
        if (v)
            v[k++] = (scored_t){z, r->y};
    }
    *bacc = 0.5 * ((P ? (double)tp / P : 0) + (N ? 1.0 - (double)fp / N : 0));
    double dummy;
    *auprc = 0;
    if (v)
        (void)best_threshold(v, k, &dummy, auprc);
    free(v);
    *n = P + N;
}

/* custos_train_dev_line_fn over a grow_t array. */
static const char *dev_line(const void *rows, size_t i)
{
    const grow_t *r = (const grow_t *)rows + i;
    return r->dev ? r->line : NULL;
}

int custos_train_grounded(const custos_train_opts_t *o, char *err, size_t errlen)
{
    gdata_t d = {0};
    pending_t *pend = NULL;
    size_t np = 0, pcap = 0;
    uint8_t *idf = NULL;
    void *buf = NULL;
    size_t blen = 0;
    int rc;
    err[0] = 0;
    d.df = calloc(IDF_N, sizeof(uint32_t));
    d.stamp = calloc(IDF_N, sizeof(uint32_t));
    idf = malloc(IDF_N);
    if (!d.df || !d.stamp || !idf) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    memset(d.stamp, 0xff, IDF_N * sizeof(uint32_t));
    custos_train_log(o, "reading %s (grounded/, commercial_ok = yes only)\n", o->data_dir);
    if ((rc = load_manifest(o, &d, &pend, &np, &pcap, err, errlen)) < 0)
        goto out;
    if (np == 0 || d.n_docs == 0) {
        snprintf(err, errlen, "no commercial_ok grounded rows found");
        rc = CUSTOS_EINVAL;
        goto out;
    }
    double lmax = log((double)d.n_docs + 1.0) + 1.0;
    for (uint32_t b = 0; b < IDF_N; b++) {
        double v = d.df[b] ? log(((double)d.n_docs + 1.0) / ((double)d.df[b] + 1.0)) + 1.0 : lmax;
        long q = lround(v * 16.0);
        idf[b] = (uint8_t)(q < 1 ? 1 : q > 255 ? 255 : q);
    }
    custos_train_log(o, "idf: %u distinct training sources\n", d.n_docs);
    /* pass 2: features */
    d.v = calloc(np, sizeof(grow_t));
    if (!d.v) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    size_t per_set[MAX_SETS] = {0};
    for (size_t i = 0; i < np; i++) {
        json_object *j = json_tokener_parse(pend[i].line);
        custos_grounded_row_t r;
        if (!j || custos_grounded_parse_row(j, &r) < 0) {
            json_object_put(j);
            continue;
        }
        grow_t *g = &d.v[d.n];
        g->dev = (uint8_t)source_is_dev(&r);
        g->y = (uint8_t)r.label;
        g->set = pend[i].set;
        g->qna = r.in.task == CUSTOS_GROUNDED_QNA;
        rc = custos_grounded_features(idf, &r.in, &g->f, &g->n);
        json_object_put(j);
        if (rc == CUSTOS_ENOMEM)
            goto out;
        if (rc < 0 || g->n == 0) {
            free(g->f);
            g->f = NULL;
            continue;
        }
        if (g->dev) {
            g->line = pend[i].line;
            pend[i].line = NULL;
        } else {
            per_set[g->set]++;
        }
        d.n++;
    }
    /* standardisation and weights: every set and both classes within it weigh the same in training */
    size_t cnt[MAX_SETS][2] = {{0}};
    for (size_t i = 0; i < d.n; i++)
        if (!d.v[i].dev)
            cnt[d.v[i].set][d.v[i].y]++;
    size_t n_train = 0, n_sent = 0, active = 0;
    for (size_t s = 0; s < d.n_sets; s++)
        if (per_set[s])
            active++;
    double mean_d[NF] = {0}, var_d[NF] = {0};
    for (size_t i = 0; i < d.n; i++) {
        grow_t *g = &d.v[i];
        if (g->dev)
            continue;
        n_train++;
        for (size_t s = 0; s < g->n; s++, n_sent++)
            for (int k = 0; k < NF; k++)
                mean_d[k] += g->f[s * NF + k];
    }
    /* row weight: n_train / (2 * sets * rows of this set and class), mean 1 */
    for (size_t i = 0; i < d.n; i++)
        if (!d.v[i].dev) {
            size_t c = cnt[d.v[i].set][d.v[i].y];
            d.v[i].w = (float)(1.0 / (double)(c ? c : 1) / (2.0 * (double)(active ? active : 1)) * (double)n_train);
        }
    custos_grounded_params_t p = {0};
    for (int k = 0; k < NF; k++)
        mean_d[k] /= (double)(n_sent ? n_sent : 1);
    for (size_t i = 0; i < d.n; i++)
        if (!d.v[i].dev)
            for (size_t s = 0; s < d.v[i].n; s++)
                for (int k = 0; k < NF; k++) {
                    double x = d.v[i].f[s * NF + k] - mean_d[k];
                    var_d[k] += x * x;
                }
    for (int k = 0; k < NF; k++) {
        double sd = sqrt(var_d[k] / (double)(n_sent ? n_sent : 1));
        p.mean[k] = (float)mean_d[k];
        p.inv_std[k] = sd > 1e-6 ? (float)(1.0 / sd) : 0.0f;
    }
    custos_train_log(o, "rows: %zu train (%zu sentences), %zu dev\n", n_train, n_sent, d.n - n_train);
    /* multiple-instance logistic regression, full batch */
    double w[NF + 1] = {0}, gsq[NF + 1] = {0};
    for (int it = 0; it < ITERS; it++) {
        double g[NF + 1] = {0};
        double wt = 0;
        for (size_t i = 0; i < d.n; i++) {
            const grow_t *r = &d.v[i];
            if (r->dev)
                continue;
            wt += r->w;
            if (r->y) {
                size_t a;
                double z = doc_max(w, r, p.mean, p.inv_std, &a);
                double e = (1.0 / (1.0 + exp(-z)) - 1.0) * r->w;
                const float *f = r->f + a * NF;
                for (int k = 0; k < NF; k++)
                    g[k] += e * ((double)f[k] - p.mean[k]) * p.inv_std[k];
                g[NF] += e;
            } else {
                double share = r->w / (double)r->n;
                for (size_t s = 0; s < r->n; s++) {
                    const float *f = r->f + s * NF;
                    double e = 1.0 / (1.0 + exp(-dot(w, f, p.mean, p.inv_std))) * share;
                    for (int k = 0; k < NF; k++)
                        g[k] += e * ((double)f[k] - p.mean[k]) * p.inv_std[k];
                    g[NF] += e;
                }
            }
        }
        for (int k = 0; k <= NF; k++) {
            double gk = g[k] / (wt > 0 ? wt : 1) + (k < NF ? L2 * w[k] : 0);
            gsq[k] += gk * gk;
            w[k] -= (double)o->lr * gk / (sqrt(gsq[k]) + 1e-8);
        }
    }
    /* detection threshold: best balanced accuracy on the training rows, folded into the bias (p >= 0.5) */
    scored_t *sv = malloc((d.n + 1) * sizeof(*sv));
    if (!sv) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    /* one threshold for summaries / claims, one for answers to a question (the QA rows score differently) */
    double thr[2] = {0, 0};
    for (int q = 0; q < 2; q++) {
        size_t k = 0;
        for (size_t i = 0; i < d.n; i++)
            if (!d.v[i].dev && d.v[i].qna == q) {
                size_t a;
                sv[k++] = (scored_t){doc_max(w, &d.v[i], p.mean, p.inv_std, &a), d.v[i].y};
            }
        double tb, ta;
        if (k > 0)
            thr[q] = best_threshold(sv, k, &tb, &ta);
        if (k > 0)
            custos_train_log(o, "train %s: balanced accuracy %.4f  AUPRC %.4f\n", q ? "QnA" : "summaries", tb, ta);
    }
    free(sv);
    w[NF] -= thr[0];
    p.qna_bias = (float)(thr[0] - thr[1]);
    for (int f = 0; f < NF; f++)
        p.w[f] = (float)w[f];
    p.bias = (float)w[NF];
    p.n_docs = d.n_docs;
    double ba, ap;
    size_t nn;
    metrics_at(w, &d, 1, -1, p.mean, p.inv_std, p.qna_bias, &ba, &ap, &nn);
    custos_train_log(o, "dev (cut by source): rows %zu  balanced accuracy %.4f  AUPRC %.4f\n", nn, ba, ap);
    for (size_t s = 0; s < d.n_sets; s++) {
        metrics_at(w, &d, 1, (int)s, p.mean, p.inv_std, p.qna_bias, &ba, &ap, &nn);
        custos_train_log(o, "  dev %-14s rows %4zu  balanced accuracy %.4f  AUPRC %.4f\n", d.set_names[s], nn, ba, ap);
    }
    rc = custos_grounded_model_serialize(&p, idf, &buf, &blen);
    if (rc < 0)
        goto out;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", o->out);
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(buf, 1, blen, f) != blen || fclose(f) != 0 || rename(tmp, o->out) != 0) {
        snprintf(err, errlen, "cannot write %s", o->out);
        rc = CUSTOS_EIO;
        goto out;
    }
    if (o->dev_out && (rc = custos_train_write_dev(o->dev_out, dev_line, d.v, d.n, err, errlen)) < 0)
        goto out;
    custos_train_log(o, "wrote %s (%zu bytes)\n", o->out, blen);
    rc = 0;
out:
    for (size_t i = 0; i < np; i++)
        free(pend[i].line);
    free(pend);
    for (size_t i = 0; i < d.n; i++) {
        free(d.v[i].f);
        free(d.v[i].line);
    }
    free(d.v);
    for (size_t s = 0; s < d.n_sets; s++)
        free(d.set_names[s]);
    free(d.df);
    free(d.stamp);
    free(d.seen);
    free(idf);
    free(buf);
    return rc;
}
