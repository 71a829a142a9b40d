/* SPDX-License-Identifier: Apache-2.0
 * Helpers shared by the deterministic trainers (train.c: harm, train_shields.c: shields). */
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
