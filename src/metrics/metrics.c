/* SPDX-License-Identifier: Apache-2.0
 * Metrics registry: families with interned label tuples (open-addressing hash under a rwlock), per-shard
 * cells updated with relaxed load+store by their one writer thread, and the Prometheus text renderer. */
#include "metrics/metrics.h"
#include "util/err.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

#define CACHE_LINE 64
#define CELLS_PER_LINE (CACHE_LINE / sizeof(atomic_uint_fast64_t))

struct custos_metric_series {
    custos_metric_family_t *f;
    atomic_uint_fast64_t *cells; /* nshards * stride; each shard starts on its own cache line */
    unsigned nshards;
    unsigned stride; /* cells per shard, padded */
    int kind;
    uint64_t hash;
    char **values;                /* nlabels strings, in the same allocation as the struct */
    custos_metric_series_t *next; /* creation order */
};

struct custos_metric_family {
    custos_metrics_t *m;
    int kind;
    char *name;
    char *help;
    char *label_names[CUSTOS_METRICS_MAX_LABELS];
    size_t nlabels;
    double *bounds; /* histograms: nbounds finite bounds; cells = nbounds + 1 buckets, then the sum */
    size_t nbounds;
    size_t ncells;
    size_t max_series;

    pthread_rwlock_t lock;          /* guards everything below */
    custos_metric_series_t **table; /* open addressing, power-of-two capacity */
    size_t tcap;
    size_t nseries; /* in the table, overflow series included */
    bool have_overflow;
    custos_metric_series_t *head, *tail;
    custos_metric_family_t *next;
};

struct custos_metrics {
    unsigned nshards;
    size_t max_series;
    pthread_mutex_t lock; /* guards the family list */
    custos_metric_family_t *head, *tail;
};

/* ---------- helpers ---------- */

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok || i >= 200)
            return false;
    }
    return true;
}

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        const char *v = values && values[i] ? values[i] : "";
        for (; *v; v++) {
            h ^= (unsigned char)*v;
            h *= 0x100000001b3ULL;
        }
        h ^= 0xff; /* separator: ("ab","") differs from ("a","b") */
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool values_equal(const custos_metric_series_t *s, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = values && values[i] ? values[i] : "";
        if (strcmp(s->values[i], v) != 0)
            return false;
    }
    return true;
}

static inline atomic_uint_fast64_t *shard_cells(const custos_metric_series_t *s, unsigned shard)
{
    if (shard >= s->nshards)
        shard %= s->nshards;
    return s->cells + (size_t)shard * s->stride;
}

/* Single-writer add: plain load + store, no locked instruction, but race-free for concurrent readers. */
static inline void cell_add(atomic_uint_fast64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

static inline uint64_t cell_sum(const custos_metric_series_t *s, size_t idx)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < s->nshards; i++)
        t += atomic_load_explicit(&s->cells[(size_t)i * s->stride + idx], memory_order_relaxed);
    return t;
}

static inline double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static inline uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

/* ---------- registry ---------- */

custos_metrics_t *custos_metrics_new(unsigned nshards)
{
    if (nshards == 0)
        return NULL;
    custos_metrics_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->nshards = nshards;
    m->max_series = CUSTOS_METRICS_DEFAULT_MAX_SERIES;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

unsigned custos_metrics_nshards(const custos_metrics_t *m)
{
    return m->nshards;
}

void custos_metrics_set_max_series(custos_metrics_t *m, size_t max_series)
{
    pthread_mutex_lock(&m->lock);
    m->max_series = max_series ? max_series : 1;
    pthread_mutex_unlock(&m->lock);
}

static void series_free(custos_metric_series_t *s)
{
    free(s->cells);
    free(s);
}

static void family_free(custos_metric_family_t *f)
{
    custos_metric_series_t *s = f->head;
    while (s) {
        custos_metric_series_t *n = s->next;
        series_free(s);
        s = n;
    }
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->label_names[i]);
    pthread_rwlock_destroy(&f->lock);
    free(f->table);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void custos_metrics_free(custos_metrics_t *m)
{
    if (!m)
        return;
    custos_metric_family_t *f = m->head;
    while (f) {
        custos_metric_family_t *n = f->next;
        family_free(f);
        f = n;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Creates a series (caller holds the family write lock) and inserts it into table and list. */
static custos_metric_series_t *series_create(custos_metric_family_t *f, uint64_t hash, const char *const *values)
{
    size_t strbytes = 0;
    for (size_t i = 0; i < f->nlabels; i++)
        strbytes += strlen(values && values[i] ? values[i] : "") + 1;
    custos_metric_series_t *s = calloc(1, sizeof(*s) + f->nlabels * sizeof(char *) + strbytes);
    if (!s)
        return NULL;
    s->values = (char **)(s + 1);
    char *p = (char *)(s->values + f->nlabels);
    for (size_t i = 0; i < f->nlabels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        size_t l = strlen(v) + 1;
        memcpy(p, v, l);
        s->values[i] = p;
        p += l;
    }
    s->f = f;
    s->kind = f->kind;
    s->hash = hash;
    s->nshards = f->m->nshards;
    s->stride = (unsigned)((f->ncells + CELLS_PER_LINE - 1) / CELLS_PER_LINE * CELLS_PER_LINE);
    size_t bytes = (size_t)s->nshards * s->stride * sizeof(atomic_uint_fast64_t);
    s->cells = aligned_alloc(CACHE_LINE, bytes);
    if (!s->cells) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)s->nshards * s->stride; i++)
        atomic_init(&s->cells[i], 0);

    /* Grow the table to keep the load factor at or below 1/2. */
    if ((f->nseries + 1) * 2 > f->tcap) {
        size_t ncap = f->tcap ? f->tcap * 2 : 16;
        custos_metric_series_t **nt = calloc(ncap, sizeof(*nt));
        if (!nt) {
            series_free(s);
            return NULL;
        }
        for (size_t i = 0; i < f->tcap; i++) {
            custos_metric_series_t *e = f->table[i];
            if (!e)
                continue;
            size_t j = e->hash & (ncap - 1);
            while (nt[j])
                j = (j + 1) & (ncap - 1);
            nt[j] = e;
        }
        free(f->table);
        f->table = nt;
        f->tcap = ncap;
    }
    size_t j = hash & (f->tcap - 1);
    while (f->table[j])
        j = (j + 1) & (f->tcap - 1);
    f->table[j] = s;
    f->nseries++;
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    return s;
}

static custos_metric_series_t *series_find(const custos_metric_family_t *f, uint64_t hash, const char *const *values)
{
    if (f->tcap == 0)
        return NULL;
    for (size_t j = hash & (f->tcap - 1);; j = (j + 1) & (f->tcap - 1)) {
        custos_metric_series_t *s = f->table[j];
        if (!s)
            return NULL;
        if (s->hash == hash && values_equal(s, values, f->nlabels))
            return s;
    }
}

static int family_register(custos_metrics_t *m, int kind, const char *name, const char *help, const double *bounds,
                           size_t nbounds, const char *const *label_names, size_t nlabels, custos_metric_family_t **out)
{
    custos_metric_family_t *f = NULL;
    int rc = CUSTOS_EINVAL;
    *out = NULL;
    if (!m || !valid_name(name, true) || nlabels > CUSTOS_METRICS_MAX_LABELS || (nlabels && !label_names))
        return CUSTOS_EINVAL;
    for (size_t i = 0; i < nlabels; i++) {
        if (!valid_name(label_names[i], false) || strncmp(label_names[i], "__", 2) == 0 ||
            (kind == KIND_HISTOGRAM && strcmp(label_names[i], "le") == 0))
            return CUSTOS_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(label_names[i], label_names[j]) == 0)
                return CUSTOS_EINVAL;
    }
    if (kind == KIND_HISTOGRAM) {
        if (!bounds || nbounds == 0 || nbounds > CUSTOS_METRICS_MAX_BOUNDS)
            return CUSTOS_EINVAL;
        for (size_t i = 0; i < nbounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return CUSTOS_EINVAL;
    }

    rc = CUSTOS_ENOMEM;
    f = calloc(1, sizeof(*f));
    if (!f)
        return CUSTOS_ENOMEM;
    pthread_rwlock_init(&f->lock, NULL);
    f->m = m;
    f->kind = kind;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (!f->name || !f->help)
        goto fail;
    for (size_t i = 0; i < nlabels; i++) {
        f->label_names[i] = strdup(label_names[i]);
        if (!f->label_names[i])
            goto fail;
        f->nlabels = i + 1;
    }
    if (kind == KIND_HISTOGRAM) {
        f->bounds = malloc(nbounds * sizeof(double));
        if (!f->bounds)
            goto fail;
        memcpy(f->bounds, bounds, nbounds * sizeof(double));
        f->nbounds = nbounds;
        f->ncells = nbounds + 2;
    } else {
        f->ncells = 1;
    }

    pthread_mutex_lock(&m->lock);
    f->max_series = m->max_series;
    for (custos_metric_family_t *e = m->head; e; e = e->next) {
        if (strcmp(e->name, name) == 0) {
            pthread_mutex_unlock(&m->lock);
            rc = CUSTOS_EINVAL;
            goto fail;
        }
    }
    /* A family without labels has exactly one series: create it now so it renders as 0 from the start. */
    if (nlabels == 0 && !series_create(f, hash_values(NULL, 0), NULL)) {
        pthread_mutex_unlock(&m->lock);
        goto fail;
    }
    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    pthread_mutex_unlock(&m->lock);
    *out = f;
    return 0;

fail:
    family_free(f);
    return rc;
}

int custos_metrics_counter(custos_metrics_t *m, const char *name, const char *help, const char *const *label_names,
                           size_t nlabels, custos_metric_family_t **out)
{
    return family_register(m, KIND_COUNTER, name, help, NULL, 0, label_names, nlabels, out);
}

int custos_metrics_gauge(custos_metrics_t *m, const char *name, const char *help, const char *const *label_names,
                         size_t nlabels, custos_metric_family_t **out)
{
    return family_register(m, KIND_GAUGE, name, help, NULL, 0, label_names, nlabels, out);
}

int custos_metrics_histogram(custos_metrics_t *m, const char *name, const char *help, const double *bounds,
                             size_t nbounds, const char *const *label_names, size_t nlabels,
                             custos_metric_family_t **out)
{
    return family_register(m, KIND_HISTOGRAM, name, help, bounds, nbounds, label_names, nlabels, out);
}

/* ---------- series lookup ---------- */

/* Caller holds the write lock. The overflow tuple is an ordinary series that ignores the cap. */
static custos_metric_series_t *overflow_series(custos_metric_family_t *f)
{
    const char *vals[CUSTOS_METRICS_MAX_LABELS];
    for (size_t i = 0; i < f->nlabels; i++)
        vals[i] = CUSTOS_METRICS_OVERFLOW_VALUE;
    uint64_t h = hash_values(vals, f->nlabels);
    custos_metric_series_t *s = series_find(f, h, vals);
    return s ? s : series_create(f, h, vals);
}

custos_metric_series_t *custos_metrics_series(custos_metric_family_t *f, const char *const *label_values)
{
    if (!f)
        return NULL;
    bool too_long = false;
    for (size_t i = 0; i < f->nlabels && label_values; i++)
        if (label_values[i] &&
            strnlen(label_values[i], CUSTOS_METRICS_MAX_LABEL_VALUE + 1) > CUSTOS_METRICS_MAX_LABEL_VALUE)
            too_long = true;
    custos_metric_series_t *s = NULL;
    uint64_t h = too_long ? 0 : hash_values(label_values, f->nlabels);
    if (!too_long) {
        pthread_rwlock_rdlock(&f->lock);
        s = series_find(f, h, label_values);
        pthread_rwlock_unlock(&f->lock);
        if (s)
            return s;
    }
    pthread_rwlock_wrlock(&f->lock);
    if (too_long)
        s = overflow_series(f);
    else if (!(s = series_find(f, h, label_values)))
        s = f->nseries >= f->max_series ? overflow_series(f) : series_create(f, h, label_values);
    pthread_rwlock_unlock(&f->lock);
    return s;
}

/* ---------- updates ---------- */

void custos_metrics_inc(custos_metric_series_t *s, unsigned shard, uint64_t v)
{
    if (!s || s->kind != KIND_COUNTER)
        return;
    cell_add(shard_cells(s, shard), v);
}

void custos_metrics_gauge_add(custos_metric_series_t *s, unsigned shard, int64_t v)
{
    if (!s || s->kind != KIND_GAUGE)
        return;
    cell_add(shard_cells(s, shard), (uint64_t)v); /* two's complement: the wrapped sum is the signed sum */
}

void custos_metrics_observe(custos_metric_series_t *s, unsigned shard, double value)
{
    if (!s || s->kind != KIND_HISTOGRAM || isnan(value))
        return;
    const custos_metric_family_t *f = s->f;
    size_t lo = 0, hi = f->nbounds; /* first bound >= value, or nbounds (+Inf) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (value <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_uint_fast64_t *c = shard_cells(s, shard);
    cell_add(&c[lo], 1);
    atomic_uint_fast64_t *sum = &c[f->nbounds + 1];
    double cur = bits_to_double(atomic_load_explicit(sum, memory_order_relaxed));
    atomic_store_explicit(sum, double_to_bits(cur + value), memory_order_relaxed);
}

uint64_t custos_metrics_counter_value(const custos_metric_series_t *s)
{
    return s && s->kind == KIND_COUNTER ? cell_sum(s, 0) : 0;
}

int64_t custos_metrics_gauge_value(const custos_metric_series_t *s)
{
    return s && s->kind == KIND_GAUGE ? (int64_t)cell_sum(s, 0) : 0;
}

uint64_t custos_metrics_histogram_count(const custos_metric_series_t *s)
{
    if (!s || s->kind != KIND_HISTOGRAM)
        return 0;
    uint64_t t = 0;
    for (size_t i = 0; i <= s->f->nbounds; i++)
        t += cell_sum(s, i);
    return t;
}

double custos_metrics_histogram_sum(const custos_metric_series_t *s)
{
    if (!s || s->kind != KIND_HISTOGRAM)
        return 0;
    double t = 0;
    for (unsigned i = 0; i < s->nshards; i++)
        t += bits_to_double(
            atomic_load_explicit(&s->cells[(size_t)i * s->stride + s->f->nbounds + 1], memory_order_relaxed));
    return t;
}

/* ---------- rendering ---------- */

/* Shortest %g form that reads back to the same double; Prometheus spellings for the infinities and NaN. */
static void fmt_double(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static int append_escaped(custos_buf_t *b, const char *s, bool quotes)
{
    const char *run = s;
    int rc = 0;
    for (; *s && rc == 0; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quotes && *s == '"')
            rep = "\\\"";
        if (!rep)
            continue;
        rc = custos_buf_append(b, run, (size_t)(s - run));
        if (rc == 0)
            rc = custos_buf_append_str(b, rep);
        run = s + 1;
    }
    if (rc == 0)
        rc = custos_buf_append(b, run, (size_t)(s - run));
    return rc;
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static int append_labels(custos_buf_t *b, const custos_metric_series_t *s, const char *le)
{
    const custos_metric_family_t *f = s->f;
    if (f->nlabels == 0 && !le)
        return 0;
    int rc = custos_buf_append_str(b, "{");
    for (size_t i = 0; i < f->nlabels && rc == 0; i++) {
        rc = custos_buf_appendf(b, "%s%s=\"", i ? "," : "", f->label_names[i]);
        if (rc == 0)
            rc = append_escaped(b, s->values[i], true);
        if (rc == 0)
            rc = custos_buf_append_str(b, "\"");
    }
    if (rc == 0 && le)
        rc = custos_buf_appendf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    if (rc == 0)
        rc = custos_buf_append_str(b, "}");
    return rc;
}

static int render_series(custos_buf_t *b, const custos_metric_series_t *s)
{
    const custos_metric_family_t *f = s->f;
    char num[64];
    int rc = 0;
    if (f->kind == KIND_COUNTER || f->kind == KIND_GAUGE) {
        rc = custos_buf_append_str(b, f->name);
        if (rc == 0)
            rc = append_labels(b, s, NULL);
        if (rc == 0 && f->kind == KIND_COUNTER)
            rc = custos_buf_appendf(b, " %llu\n", (unsigned long long)cell_sum(s, 0));
        else if (rc == 0)
            rc = custos_buf_appendf(b, " %lld\n", (long long)(int64_t)cell_sum(s, 0));
        return rc;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->nbounds && rc == 0; i++) {
        cum += cell_sum(s, i);
        if (i < f->nbounds)
            fmt_double(num, sizeof(num), f->bounds[i]);
        else
            snprintf(num, sizeof(num), "+Inf");
        rc = custos_buf_appendf(b, "%s_bucket", f->name);
        if (rc == 0)
            rc = append_labels(b, s, num);
        if (rc == 0)
            rc = custos_buf_appendf(b, " %llu\n", (unsigned long long)cum);
    }
    fmt_double(num, sizeof(num), custos_metrics_histogram_sum(s));
    if (rc == 0)
        rc = custos_buf_appendf(b, "%s_sum", f->name);
    if (rc == 0)
        rc = append_labels(b, s, NULL);
    if (rc == 0)
        rc = custos_buf_appendf(b, " %s\n%s_count", num, f->name);
    if (rc == 0)
        rc = append_labels(b, s, NULL);
    if (rc == 0)
        rc = custos_buf_appendf(b, " %llu\n", (unsigned long long)cum); /* == +Inf bucket, by construction */
    return rc;
}

int custos_metrics_render(custos_metrics_t *m, custos_buf_t *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (custos_metric_family_t *f = m->head; f && rc == 0; f = f->next) {
        rc = custos_buf_appendf(out, "# HELP %s ", f->name);
        if (rc == 0)
            rc = append_escaped(out, f->help, false);
        if (rc == 0)
            rc = custos_buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_names[f->kind]);
        pthread_rwlock_rdlock(&f->lock);
        for (const custos_metric_series_t *s = f->head; s && rc == 0; s = s->next)
            rc = render_series(out, s);
        pthread_rwlock_unlock(&f->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}
