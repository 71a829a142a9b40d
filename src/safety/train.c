/* SPDX-License-Identifier: Apache-2.0
 * Harm-model trainer: reads the commercial_ok harm sets, splits train / dev / calibration by a hash of the
 * normalised text (or the source's group key), trains one class-weighted logistic head per category with AdaGrad
 * on signed hashed features, quantises to int8, fits Platt calibration and writes the model. Deterministic. */
#include "safety/train.h"
#include "safety/train_internal.h"

#include "safety/harm.h"
#include "util/err.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE (4u * 1024 * 1024)
/* Feature-count floor of the normalisation (model.h min_feats): short texts (a greeting, "d'accord") need strong
 * features to score high; one or two n-grams of a language whose only data are harmful prompts are not enough. */
#define HARM_MIN_FEATS 48u

typedef struct row {
    char *text;
    size_t len;
    char *line;                 /* original JSON line, dev rows only (for --dev-out) */
    int8_t y[CUSTOS_HARM_NCAT]; /* 1, 0 or -1 (unknown) */
    uint8_t split;
    uint8_t weight; /* sample weight (hand-written benign-sensitive rows count more) */
} row_t;

typedef struct rows {
    row_t *v;
    size_t n, cap;
} rows_t;

static const float severity_bands[7] = {0.20f, 0.35f, 0.50f, 0.65f, 0.80f, 0.90f, 0.97f};

/* Mixed FNV-1a of p[0..n), salted by h (one salt per kind of split key). */
static uint64_t hash_bytes(const void *p, size_t n, uint64_t h)
{
    return custos_train_mix64(custos_train_fnv1a(p, n, h ^ CUSTOS_TRAIN_FNV_OFFSET));
}

static int read_line(FILE *f, char **buf, size_t *cap, size_t *len)
{
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF) {
        if (c == '\n')
            break;
        if (n + 2 > *cap) {
            if (*cap >= MAX_LINE)
                return CUSTOS_ETOOBIG;
            size_t nc = *cap ? *cap * 2 : 4096;
            char *nb = realloc(*buf, nc);
            if (!nb)
                return CUSTOS_ENOMEM;
            *buf = nb;
            *cap = nc;
        }
        (*buf)[n++] = (char)c;
    }
    if (c == EOF && n == 0)
        return 1;
    if (*buf)
        (*buf)[n] = 0;
    *len = n;
    return 0;
}

static int label_of(json_object *labels, const char *name, int graded)
{
    json_object *v;
    if (!labels || !json_object_object_get_ex(labels, name, &v) || !v)
        return -1;
    int x = json_object_get_int(v);
    if (graded) /* 1 = offensive (not hate): unknown for the hate head; 2 = hate */
        return x >= 2 ? 1 : x == 1 ? -1 : 0;
    return x > 0 ? 1 : 0;
}

/* Group key for the split: the source's suggested grouping where the same prompt occurs in several languages,
 * else the normalised text (so a text duplicated in two files lands in one split). */
static uint64_t split_key(const char *src, json_object *orig, const char *text, size_t len, custos_safety_scratch_t *sc,
                          unsigned norm_flags)
{
    json_object *v;
    if (src && orig && strcmp(src, "multijail") == 0 && json_object_object_get_ex(orig, "id", &v)) {
        const char *s = json_object_get_string(v);
        return hash_bytes(s, strlen(s), 11);
    }
    if (src && orig && strcmp(src, "catqa") == 0) {
        json_object *a, *b, *c;
        if (json_object_object_get_ex(orig, "category", &a) && json_object_object_get_ex(orig, "subcategory", &b) &&
            json_object_object_get_ex(orig, "index", &c)) {
            char key[1024];
            snprintf(key, sizeof(key), "%s\x1f%s\x1f%s", json_object_get_string(a), json_object_get_string(b),
                     json_object_get_string(c));
            return hash_bytes(key, strlen(key), 12);
        }
    }
    custos_norm_t n;
    if (custos_normalize(text, len, norm_flags, sc, &n) < 0)
        return hash_bytes(text, len, 13);
    return custos_train_word_key(&n);
}

/* benign_pct > 0: an attacks/ file of ordinary requests: only kind = benign rows, a deterministic benign_pct % sample,
 * all four harm labels 0. */
static int load_file(const char *path, const char *src_default, int graded, int train_only, unsigned benign_pct,
                     unsigned weight, rows_t *rows, custos_safety_scratch_t *sc, unsigned norm_flags,
                     const custos_train_opts_t *o)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return CUSTOS_EIO;
    char *buf = NULL;
    size_t cap = 0, len = 0, kept = 0;
    int rc = 0;
    for (;;) {
        int r = read_line(f, &buf, &cap, &len);
        if (r == 1)
            break;
        if (r < 0) {
            rc = r;
            break;
        }
        json_object *j = json_tokener_parse(buf);
        json_object *t, *labels = NULL, *any = NULL, *srcj = NULL, *orig = NULL;
        if (!j || !json_object_object_get_ex(j, "text", &t) || !json_object_is_type(t, json_type_string)) {
            json_object_put(j);
            continue;
        }
        json_object_object_get_ex(j, "labels", &labels);
        json_object_object_get_ex(j, "src", &srcj);
        json_object_object_get_ex(j, "orig", &orig);
        const char *src = srcj ? json_object_get_string(srcj) : src_default;
        row_t r0 = {0};
        static const char *const names[CUSTOS_HARM_NCAT] = {"hate", "sexual", "violence", "self_harm"};
        int known = 0;
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
            r0.y[c] = (int8_t)label_of(labels, names[c], graded && c == CUSTOS_HARM_HATE);
        }
        if (benign_pct) {
            json_object *kind;
            if (!json_object_object_get_ex(j, "kind", &kind) || strcmp(json_object_get_string(kind), "benign") != 0) {
                json_object_put(j);
                continue;
            }
            memset(r0.y, 0, sizeof(r0.y));
            known = 1;
        }
        if (labels && json_object_object_get_ex(labels, "any", &any) && any) {
            known = 1; /* any-only rows train nothing but are kept for the dev split's any-harm metric */
            if (json_object_get_int(any) == 0)
                for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
                    if (r0.y[c] < 0)
                        r0.y[c] = 0;
        }
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
            known |= r0.y[c] >= 0;
        if (!known) {
            json_object_put(j);
            continue;
        }
        const char *text = json_object_get_string(t);
        size_t tlen = (size_t)json_object_get_string_len(t);
        uint64_t key = split_key(src, orig, text, tlen, sc, norm_flags);
        if (benign_pct && custos_train_mix64(key ^ 0x5eed) % 100 >= benign_pct) {
            json_object_put(j);
            continue;
        }
        r0.weight = (uint8_t)weight;
        r0.split = custos_train_split_of(key, train_only);
        r0.text = malloc(tlen + 1);
        r0.len = tlen;
        if (r0.text)
            memcpy(r0.text, text, tlen + 1);
        if (r0.text && r0.split == CUSTOS_TRAIN_SPLIT_DEV) {
            if (benign_pct) { /* write the implied labels so eval counts these rows as negatives */
                json_object *lab = json_object_new_object();
                for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
                    json_object_object_add(lab, names[c], json_object_new_int(0));
                json_object_object_add(lab, "any", json_object_new_int(0));
                json_object_object_add(j, "labels", lab);
                r0.line = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
            } else
                r0.line = strdup(buf);
        }
        json_object_put(j);
        if (!r0.text || (r0.split == CUSTOS_TRAIN_SPLIT_DEV && !r0.line)) {
            free(r0.text);
            rc = CUSTOS_ENOMEM;
            break;
        }
        if ((rc = custos_train_push(&rows->v, &rows->n, &rows->cap, &r0, sizeof(r0))) < 0) {
            free(r0.text);
            free(r0.line);
            break;
        }
        kept++;
    }
    free(buf);
    fclose(f);
    custos_train_log(o, "  %s: %zu labelled rows\n", path, kept);
    return rc;
}

/* Ordinary user requests and documents from attacks/ used as extra harm negatives (sample percentage). They fix a
 * confound of the harm sets, where almost every request-style text is a harmful one; mgsm (11 languages) and xquad
 * (12 languages) also fix the language confound of the multilingual prompt sets (multijail, ailuminate fr), whose
 * rows are all harmful, so that "French" or "Arabic" alone is not evidence of harm. */
static const struct {
    const char *file;
    unsigned pct;
} benign_sets[] = {
    {"attacks/dolly_instructions.jsonl", 30},
    {"attacks/gpteacher.jsonl", 20},
    {"attacks/arena_hard_prompts.jsonl", 100},
    {"attacks/fastchat_bench_questions.jsonl", 100},
    {"attacks/self_instruct_seed.jsonl", 100},
    {"attacks/conala_intents.jsonl", 50},
    {"attacks/mgsm.jsonl", 100},
    {"attacks/xquad.jsonl", 30},
    {"attacks/wikitext2_paragraphs.jsonl", 100},
};

typedef struct harm_load {
    const custos_train_opts_t *o;
    rows_t *rows;
    custos_safety_scratch_t *sc;
    unsigned nf;
} harm_load_t;

static int harm_load_one(void *ud, const char *file, const char *path, const char *notes, char *err, size_t errlen)
{
    harm_load_t *l = ud;
    unsigned benign = 0;
    for (size_t i = 0; i < sizeof(benign_sets) / sizeof(benign_sets[0]); i++)
        if (strcmp(file, benign_sets[i].file) == 0)
            benign = benign_sets[i].pct;
    if (!benign && strncmp(file, "harm/", 5) != 0)
        return 0;
    int graded = strstr(notes, "scale=graded") != NULL;
    int rc = load_file(path, file, graded, 0, benign, 1, l->rows, l->sc, l->nf, l->o);
    return custos_train_read_result(rc, path, err, errlen);
}

/* Loads every harm/ file of MANIFEST.tsv with commercial_ok = yes (and the benign_sets that are). */
static int load_manifest(const custos_train_opts_t *o, rows_t *rows, custos_safety_scratch_t *sc, unsigned nf,
                         char *err, size_t errlen)
{
    harm_load_t l = {o, rows, sc, nf};
    return custos_train_manifest_each(o->data_dir, harm_load_one, &l, err, errlen);
}

/* Obfuscates an ASCII-ish text the way evaders do (leet, spacing, homoglyphs, zero-width, repeats). */
static size_t obfuscate(const char *t, size_t n, uint64_t *rng, char *out, size_t cap)
{
    unsigned mode = (unsigned)(custos_train_rng_next(rng) % 5);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 16 < cap; i++) {
        unsigned char c = (unsigned char)t[i];
        unsigned r = (unsigned)(custos_train_rng_next(rng) % 100);
        int lower = c >= 'a' && c <= 'z';
        switch (mode) {
        case 0: { /* leet */
            const char *from = "aeiost", *to = "431057";
            const char *pos = lower && r < 50 ? strchr(from, c) : NULL;
            out[o++] = pos ? to[pos - from] : (char)c;
            break;
        }
        case 1: /* spaced-out letters */
            out[o++] = (char)c;
            if (lower && r < 40 && i + 1 < n && t[i + 1] >= 'a' && t[i + 1] <= 'z')
                out[o++] = r < 20 ? ' ' : '.';
            break;
        case 2: { /* Cyrillic look-alikes */
            static const char *const cyr[] = {"\xd0\xb0", "\xd0\xb5", "\xd0\xbe", "\xd1\x80", "\xd1\x81", "\xd1\x85"};
            const char *pos = lower && r < 50 ? strchr("aeopcx", c) : NULL;
            if (pos) {
                memcpy(out + o, cyr[pos - "aeopcx"], 2);
                o += 2;
            } else
                out[o++] = (char)c;
            break;
        }
        case 3: /* zero-width space */
            out[o++] = (char)c;
            if (lower && r < 30) {
                memcpy(out + o, "\xe2\x80\x8b", 3);
                o += 3;
            }
            break;
        default: /* repeats */
            out[o++] = (char)c;
            if (lower && r < 10)
                for (int k = 0; k < 3; k++)
                    out[o++] = (char)c;
        }
    }
    return o;
}

static int train_row(custos_train_linear_t *tr, const custos_harm_fcfg_t *cfg, const char *text, size_t len,
                     const int8_t *y, float weight, custos_safety_scratch_t *sc)
{
    size_t cnt;
    float x;
    int rc = custos_train_features(cfg, text, len, tr->min_feats, sc, &cnt, &x);
    if (rc < 0 || !cnt)
        return rc;
    double z[CUSTOS_HARM_NCAT] = {0};
    for (size_t i = 0; i < cnt; i++) {
        const float *w = tr->w + (sc->feat[i] & tr->mask) * 4;
        float s = (sc->feat[i] >> 63) ? -x : x;
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
            z[c] += s * w[c];
    }
    float gr[CUSTOS_HARM_NCAT];
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        gr[c] = 0;
        if (y[c] < 0)
            continue;
        double zz = z[c] + tr->bias[c];
        double p = 1.0 / (1.0 + exp(-zz));
        gr[c] = (float)((p - y[c]) * tr->cw[c][y[c]] * weight);
        custos_train_adagrad(&tr->bias[c], &tr->gb[c], gr[c], tr->lr);
    }
    for (size_t i = 0; i < cnt; i++) {
        float *w = tr->w + (sc->feat[i] & tr->mask) * 4;
        float *g = tr->g + (sc->feat[i] & tr->mask) * 4;
        float s = (sc->feat[i] >> 63) ? -x : x;
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
            if (gr[c] != 0)
                custos_train_adagrad(&w[c], &g[c], gr[c] * s, tr->lr);
        }
    }
    return 0;
}

/* custos_train_dev_line_fn over a row_t array. */
static const char *dev_line(const void *rows, size_t i)
{
    const row_t *r = (const row_t *)rows + i;
    return r->split == CUSTOS_TRAIN_SPLIT_DEV ? r->line : NULL;
}

int custos_train_harm(const custos_train_opts_t *o, char *err, size_t errlen)
{
    int rc = 0;
    rows_t rows = {0};
    custos_train_linear_t tr = {0};
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, 0);
    int8_t *q = NULL;
    size_t *order = NULL;
    char *aug = NULL;
    float *zs = NULL;
    int8_t *ys = NULL;
    custos_model_t *m = NULL;
    custos_model_header_t h;
    custos_train_hashed_header(&h, o, 19, CUSTOS_HARM_NCAT, HARM_MIN_FEATS);
    if (h.hash_bits < 16 || h.hash_bits > 22) {
        snprintf(err, errlen, "hash bits must be 16..22");
        return CUSTOS_EINVAL;
    }
    custos_harm_fcfg_t cfg = {h.hash_bits, h.hash_seed, h.norm_flags, h.word_ngrams, h.char_min, h.char_max};

    custos_train_log(o, "reading %s (commercial_ok = yes only)\n", o->data_dir);
    if ((rc = load_manifest(o, &rows, &sc, h.norm_flags, err, errlen)) < 0)
        goto fail;
    for (int i = 0; i < 4 && o->extra[i]; i++)
        if ((rc = load_file(o->extra[i], "extra", 0, 1, 0, 3, &rows, &sc, h.norm_flags, o)) < 0) {
            snprintf(err, errlen, "cannot read %s", o->extra[i]);
            goto fail;
        }
    if (rows.n == 0) {
        snprintf(err, errlen, "no labelled rows found");
        rc = CUSTOS_EINVAL;
        goto fail;
    }

    size_t cnt[3][CUSTOS_HARM_NCAT][2] = {{{0}}}; /* [split][head][y] */
    for (size_t i = 0; i < rows.n; i++)
        for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
            if (rows.v[i].y[c] >= 0)
                cnt[rows.v[i].split][c][rows.v[i].y[c]]++;
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        double npos = (double)cnt[CUSTOS_TRAIN_SPLIT_TRAIN][c][1], nneg = (double)cnt[CUSTOS_TRAIN_SPLIT_TRAIN][c][0];
        double tot = npos + nneg;
        tr.cw[c][1] = npos ? (float)fmin(20.0, tot / (2 * npos)) : 1;
        tr.cw[c][0] = nneg ? (float)fmin(20.0, tot / (2 * nneg)) : 1;
        custos_train_log(o, "%-10s train %zu+/%zu-  dev %zu+/%zu-  cal %zu+/%zu-\n", custos_harm_category_name(c),
                         cnt[0][c][1], cnt[0][c][0], cnt[1][c][1], cnt[1][c][0], cnt[2][c][1], cnt[2][c][0]);
    }

    rc = custos_train_linear_alloc(&tr, &h, o);
    size_t ntrain = 0;
    for (size_t i = 0; i < rows.n; i++)
        ntrain += rows.v[i].split == CUSTOS_TRAIN_SPLIT_TRAIN;
    order = malloc((ntrain ? ntrain : 1) * sizeof(size_t));
    size_t aug_cap = MAX_LINE * 8 + 64;
    aug = malloc(aug_cap);
    if (rc < 0 || !order || !aug) {
        rc = CUSTOS_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0, k = 0; i < rows.n; i++)
        if (rows.v[i].split == CUSTOS_TRAIN_SPLIT_TRAIN)
            order[k++] = i;
    uint64_t rng = 0x9e3779b97f4a7c15ULL ^ h.hash_seed;
    unsigned aug_pct = (unsigned)((o->aug_frac >= 0 && o->aug_frac <= 1 ? o->aug_frac : 0.3f) * 100 + 0.5f);
    uint32_t epochs = o->epochs ? o->epochs : 6;
    for (uint32_t e = 0; e < epochs; e++) {
        custos_train_shuffle(order, ntrain, &rng);
        for (size_t k = 0; k < ntrain; k++) {
            row_t *r = &rows.v[order[k]];
            if (r->y[0] < 0 && r->y[1] < 0 && r->y[2] < 0 && r->y[3] < 0)
                continue;
            if ((rc = train_row(&tr, &cfg, r->text, r->len, r->y, r->weight, &sc)) < 0 && rc != CUSTOS_ETOOBIG)
                goto fail;
            int pos = 0;
            for (int c = 0; c < CUSTOS_HARM_NCAT; c++)
                pos |= r->y[c] == 1;
            if (pos && custos_train_rng_next(&rng) % 100 < aug_pct && r->len <= MAX_LINE) {
                size_t al = obfuscate(r->text, r->len, &rng, aug, aug_cap);
                if ((rc = train_row(&tr, &cfg, aug, al, r->y, r->weight, &sc)) < 0 && rc != CUSTOS_ETOOBIG)
                    goto fail;
            }
        }
        custos_train_log(o, "epoch %u/%u done\n", e + 1, epochs);
    }

    /* quantise to int8 with one scale per head */
    if (!(q = custos_train_linear_quantize(&tr, &h))) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    static const char *const names[CUSTOS_HARM_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        custos_model_head_t *hd = &h.heads[c];
        snprintf(hd->name, sizeof(hd->name), "%s", names[c]);
        hd->platt_b = 0;
        memcpy(hd->bands, severity_bands, sizeof(severity_bands));
    }

    /* Platt calibration on the calibration split, using the quantised model */
    size_t len = 0;
    if ((rc = custos_train_model_build(&h, q, &m, &len, err, errlen)) < 0)
        goto fail;
    zs = malloc(rows.n * sizeof(float));
    ys = malloc(rows.n);
    if (!zs || !ys) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    for (int c = 0; c < CUSTOS_HARM_NCAT; c++) {
        size_t k = 0;
        for (size_t i = 0; i < rows.n; i++) {
            row_t *r = &rows.v[i];
            if (r->split != CUSTOS_TRAIN_SPLIT_CAL || r->y[c] < 0)
                continue;
            custos_harm_result_t res;
            if (custos_harm_score(m, r->text, r->len, &res, &sc) < 0)
                continue;
            zs[k] = res.logit[c];
            ys[k++] = r->y[c];
        }
        custos_train_platt_fit(zs, (const unsigned char *)ys, k, &h.heads[c].platt_a, &h.heads[c].platt_b);
        custos_train_log(o, "%-10s calibration rows %zu: a=%.4f b=%.4f\n", names[c], k, h.heads[c].platt_a,
                         h.heads[c].platt_b);
    }
    rc = custos_train_write_outputs(o, &h, q, len, dev_line, rows.v, rows.n, err, errlen);
fail:
    custos_model_free(m);
    free(zs);
    free(ys);
    free(q);
    free(order);
    free(aug);
    custos_train_linear_dispose(&tr);
    for (size_t i = 0; i < rows.n; i++) {
        free(rows.v[i].text);
        free(rows.v[i].line);
    }
    free(rows.v);
    custos_safety_scratch_dispose(&sc);
    return rc;
}
