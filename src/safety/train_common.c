/* SPDX-License-Identifier: Apache-2.0
 * Helpers shared by the deterministic trainers (train.c: harm, train_shields.c: shields). */
#include "safety/train_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

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
