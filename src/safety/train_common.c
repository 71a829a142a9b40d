/* SPDX-License-Identifier: Apache-2.0
 * Helpers shared by the deterministic trainers (train.c: harm, train_shields.c: shields, train_grounded.c,
 * train_pii.c); contracts in train_internal.h. */
#include "safety/train_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "util/err.h"

void custos_train_log(const custos_train_opts_t *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->log, fmt, ap);
    va_end(ap);
}

uint64_t custos_train_mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

uint64_t custos_train_rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

void custos_train_platt_fit(const float *z, const unsigned char *y, size_t n, float *pa, float *pb)
{
    double npos = 0, nneg = 0;
    for (size_t i = 0; i < n; i++)
        y[i] ? npos++ : nneg++;
    double tpos = (npos + 1) / (npos + 2), tneg = 1 / (nneg + 2);
    double a = 1, b = 0;
    if (npos < 5 || nneg < 5) { /* too few rows to calibrate: identity */
        *pa = 1, *pb = 0;
        return;
    }
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 1e-9, hab = 0, hbb = 1e-9;
        for (size_t i = 0; i < n; i++) {
            double t = y[i] ? tpos : tneg;
            double p = 1 / (1 + exp(-(a * z[i] + b)));
            double d = p - t, w = p * (1 - p);
            ga += d * z[i];
            gb += d;
            haa += w * z[i] * z[i];
            hab += w * z[i];
            hbb += w;
        }
        double det = haa * hbb - hab * hab;
        if (fabs(det) < 1e-12)
            break;
        double da = (hbb * ga - hab * gb) / det, db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if (fabs(da) < 1e-9 && fabs(db) < 1e-9)
            break;
    }
    if (!(a > 0) || !isfinite(a) || !isfinite(b)) { /* calibration must keep the ranking */
        a = 1;
        b = 0;
    }
    *pa = (float)a;
    *pb = (float)b;
}

int custos_train_push(void *vp, size_t *n, size_t *cap, const void *item, size_t elem)
{
    char *v;
    memcpy(&v, vp, sizeof(v)); /* vp is a T **: read and write the pointer as bytes, whatever T is */
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        char *nv = realloc(v, nc * elem);
        if (!nv)
            return CUSTOS_ENOMEM;
        v = nv;
        memcpy(vp, &v, sizeof(v));
        *cap = nc;
    }
    memcpy(v + *n * elem, item, elem);
    (*n)++;
    return 0;
}

int custos_train_read_result(int rc, const char *path, char *err, size_t errlen)
{
    if (rc >= 0)
        return 0;
    snprintf(err, errlen, "cannot read %s: %s", path, custos_strerror(rc));
    return rc;
}

uint64_t custos_train_fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t custos_train_word_key(const custos_norm_t *n)
{
    uint64_t h = CUSTOS_TRAIN_FNV_OFFSET;
    for (size_t i = 0; i < n->len; i++)
        if (custos_norm_is_word(n->cp[i]))
            h = (h ^ n->cp[i]) * 0x100000001b3ULL;
    return custos_train_mix64(h);
}

uint8_t custos_train_split_of(uint64_t key, int train_only)
{
    unsigned b = (unsigned)(key % 100);
    return train_only ? CUSTOS_TRAIN_SPLIT_TRAIN
           : b < 80   ? CUSTOS_TRAIN_SPLIT_TRAIN
           : b < 90   ? CUSTOS_TRAIN_SPLIT_DEV
                      : CUSTOS_TRAIN_SPLIT_CAL;
}

void custos_train_hashed_header(custos_model_header_t *h, const custos_train_opts_t *o, uint32_t default_bits,
                                uint32_t n_heads, uint32_t min_feats)
{
    memset(h, 0, sizeof(*h));
    h->hash_bits = o->hash_bits ? o->hash_bits : default_bits;
    h->hash_seed = o->seed ? o->seed : 1;
    h->norm_flags = CUSTOS_NORM_ALL;
    h->word_ngrams = 2;
    h->char_min = 3;
    h->char_max = 5;
    h->n_heads = n_heads;
    h->min_feats = min_feats;
}

int custos_train_features(const custos_harm_fcfg_t *cfg, const char *text, size_t len, size_t min_feats,
                          custos_safety_scratch_t *sc, size_t *cnt, float *x)
{
    custos_norm_t n;
    *cnt = 0;
    int rc = custos_normalize(text, len, cfg->norm_flags, sc, &n);
    if (rc < 0 || (rc = custos_harm_features(cfg, &n, sc, cnt)) < 0)
        return rc;
    if (*cnt)
        *x = 1.0f / sqrtf((float)(*cnt < min_feats ? min_feats : *cnt));
    return 0;
}

void custos_train_shuffle(size_t *order, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(custos_train_rng_next(rng) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

float custos_train_quantize_head(const float *w, size_t buckets, size_t nh, size_t c, int8_t *q)
{
    float mx = 0;
    for (size_t b = 0; b < buckets; b++)
        mx = fmaxf(mx, fabsf(w[b * nh + c]));
    float scale = mx > 0 ? mx / 127.0f : 1.0f;
    for (size_t b = 0; b < buckets; b++) {
        long v = lrintf(w[b * nh + c] / scale);
        q[b * nh + c] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return scale;
}

int custos_train_linear_alloc(custos_train_linear_t *t, const custos_model_header_t *h, const custos_train_opts_t *o)
{
    t->buckets = (size_t)1 << h->hash_bits;
    t->n_heads = h->n_heads;
    t->min_feats = h->min_feats;
    t->mask = t->buckets - 1;
    t->lr = o->lr > 0 ? o->lr : 0.2f;
    t->w = calloc(t->buckets * t->n_heads, sizeof(float));
    t->g = calloc(t->buckets * t->n_heads, sizeof(float));
    return t->w && t->g ? 0 : CUSTOS_ENOMEM;
}

int8_t *custos_train_linear_quantize(const custos_train_linear_t *t, custos_model_header_t *h)
{
    int8_t *q = malloc(t->buckets * t->n_heads);
    if (!q)
        return NULL;
    for (size_t c = 0; c < t->n_heads; c++) {
        h->heads[c].scale = custos_train_quantize_head(t->w, t->buckets, t->n_heads, c, q);
        h->heads[c].bias = t->bias[c];
        h->heads[c].platt_a = 1;
    }
    return q;
}

void custos_train_linear_dispose(custos_train_linear_t *t)
{
    free(t->w);
    free(t->g);
    t->w = t->g = NULL;
}

int custos_train_model_build(const custos_model_header_t *h, const int8_t *q, custos_model_t **m, size_t *len,
                             char *err, size_t errlen)
{
    void *ser = NULL;
    int rc = custos_model_serialize(h, q, &ser, len);
    if (rc == 0)
        rc = custos_model_from_buffer(ser, *len, m, err, errlen);
    free(ser);
    return rc;
}

/* Creates the --dev-out file; NULL with "cannot write PATH" in err on failure. */
static FILE *dev_create(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f)
        snprintf(err, errlen, "cannot write %s", path);
    return f;
}

/* Writes the dev lines of rows[0..n) to f and closes it: 0, or CUSTOS_EIO when closing fails. */
static int dev_put(FILE *f, custos_train_dev_line_fn line_of, const void *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *line = line_of(rows, i);
        if (line)
            fprintf(f, "%s\n", line);
    }
    return fclose(f) == 0 ? 0 : CUSTOS_EIO;
}

int custos_train_write_dev(const char *path, custos_train_dev_line_fn line_of, const void *rows, size_t n, char *err,
                           size_t errlen)
{
    FILE *f = dev_create(path, err, errlen);
    return f ? dev_put(f, line_of, rows, n) : CUSTOS_EIO;
}

int custos_train_write_outputs(const custos_train_opts_t *o, const custos_model_header_t *h, const int8_t *q,
                               size_t len, custos_train_dev_line_fn line_of, const void *rows, size_t n, char *err,
                               size_t errlen)
{
    int rc = custos_model_write(o->out, h, q);
    if (rc < 0) {
        snprintf(err, errlen, "cannot write %s", o->out);
        return rc;
    }
    if (o->dev_out) {
        FILE *f = dev_create(o->dev_out, err, errlen);
        if (!f)
            return CUSTOS_EIO;
        rc = dev_put(f, line_of, rows, n);
    }
    custos_train_log(o, "wrote %s (%zu bytes)\n", o->out, len);
    return rc;
}

int custos_train_manifest_each(const char *data_dir, custos_train_manifest_fn fn, void *ud, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/MANIFEST.tsv", data_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return CUSTOS_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    int col_file = -1, col_ok = -1, col_notes = -1, rc = 0, first = 1;
    ssize_t got;
    while (rc == 0 && (got = getline(&line, &cap, f)) > 0) {
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        char *fields[32];
        int nfld = 0;
        char *p = line;
        while (nfld < 32) {
            fields[nfld++] = p;
            char *tab = strchr(p, '\t');
            if (!tab)
                break;
            *tab = 0;
            p = tab + 1;
        }
        if (first) {
            first = 0;
            for (int i = 0; i < nfld; i++) {
                if (strcmp(fields[i], "file") == 0)
                    col_file = i;
                else if (strcmp(fields[i], "commercial_ok") == 0)
                    col_ok = i;
                else if (strcmp(fields[i], "notes") == 0)
                    col_notes = i;
            }
            if (col_file < 0 || col_ok < 0) {
                snprintf(err, errlen, "%s: no file / commercial_ok columns", path);
                rc = CUSTOS_EINVAL;
            }
            continue;
        }
        if (col_file >= nfld || col_ok >= nfld || strcmp(fields[col_ok], "yes") != 0)
            continue;
        char fp[4096];
        snprintf(fp, sizeof(fp), "%s/%s", data_dir, fields[col_file]);
        rc = fn(ud, fields[col_file], fp, col_notes >= 0 && col_notes < nfld ? fields[col_notes] : "", err, errlen);
    }
    free(line);
    fclose(f);
    return rc;
}
