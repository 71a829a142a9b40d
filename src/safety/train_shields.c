/* SPDX-License-Identifier: Apache-2.0
 * Shield-model trainer (custos train shields): reads the commercial_ok attacks/ sets (user rows -> jailbreak head,
 * document rows -> indirect_attack head) and hand-written hard negatives, trains the same hashed logistic model as
 * the harm trainer (AdaGrad, int8, Platt), and picks each head's detection threshold on the calibration split. */
#include "safety/shields.h"
#include "safety/train.h"
#include "safety/train_internal.h"

#include "safety/harm.h"
#include "util/err.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define NH CUSTOS_SHIELD_NHEADS
#define MAX_TEXT (256u * 1024)

/* Target false-positive rates on the calibration split's benign rows when choosing the detection thresholds. The
 * jailbreak target is below the 2 % goal because everyday chat (greetings, small talk), the bulk of real traffic, is
 * rarer in the calibration split than in deployments (docs/models/shields.md). */
static const float target_fpr[NH] = {0.0075f, 0.03f};
/* Weight of the hand-written extra rows (--extra: hard negatives and everyday prompts). */
#define EXTRA_WEIGHT 24.0f
/* Weight of positives that the data marks as noisy (orig.noisy_label: Mosscap game submissions, which include
 * greetings and small talk labelled as attacks). */
#define NOISY_WEIGHT 0.3f
/* Feature-count floor of the normalisation (model.h min_feats): a text with fewer features (about 16 characters or
 * less) is scored as if it had this many, so one or two features cannot flag a greeting. */
#define MIN_FEATS 48u

typedef struct srow {
    char *text;
    size_t len;
    char *line; /* dev rows only */
    float weight;
    uint8_t head, y, split;
} srow_t;

typedef struct srows {
    srow_t *v;
    size_t n, cap;
} srows_t;

/* Split key: word characters of the normalised text, so spacing / punctuation variants share a split. */
static uint64_t split_key(const char *text, size_t len, custos_safety_scratch_t *sc)
{
    custos_norm_t n;
    if (custos_normalize(text, len, CUSTOS_NORM_ALL, sc, &n) < 0)
        return custos_train_mix64(len);
    return custos_train_word_key(&n);
}

static int push(srows_t *rows, const srow_t *r)
{
    return custos_train_push(&rows->v, &rows->n, &rows->cap, r, sizeof(*r));
}

/* Byte offset of code point cp in UTF-8 text (clamped to len). */
static size_t cp_to_byte(const char *t, size_t len, size_t cp)
{
    size_t i = 0;
    while (i < len && cp > 0) {
        i++;
        while (i < len && ((unsigned char)t[i] & 0xC0) == 0x80)
            i++;
        cp--;
    }
    return i;
}

/* Loads one attacks-format JSONL file. train_only: every row is a training row (hand-written extras). */
static int load_file(const char *path, int train_only, float weight, srows_t *rows, custos_safety_scratch_t *sc,
                     const custos_train_opts_t *o)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return CUSTOS_EIO;
    char *buf = NULL;
    size_t cap = 0, kept = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&buf, &cap, f)) > 0) {
        json_object *j = json_tokener_parse(buf);
        json_object *t, *role, *attack;
        if (!j || !json_object_object_get_ex(j, "text", &t) || !json_object_is_type(t, json_type_string) ||
            !json_object_object_get_ex(j, "role", &role) || !json_object_object_get_ex(j, "attack", &attack)) {
            json_object_put(j);
            continue;
        }
        const char *rs = json_object_get_string(role);
        int head = strcmp(rs, "user") == 0       ? CUSTOS_SHIELD_JAILBREAK
                   : strcmp(rs, "document") == 0 ? CUSTOS_SHIELD_INDIRECT
                                                 : -1;
        size_t tlen = (size_t)json_object_get_string_len(t);
        if (head < 0 || tlen == 0 || tlen > MAX_TEXT) {
            json_object_put(j);
            continue;
        }
        const char *text = json_object_get_string(t);
        srow_t r = {0};
        r.head = (uint8_t)head;
        r.y = json_object_get_int(attack) > 0;
        r.weight = weight;
        json_object *orig, *noisy;
        if (r.y && json_object_object_get_ex(j, "orig", &orig) &&
            json_object_object_get_ex(orig, "noisy_label", &noisy) && json_object_get_boolean(noisy))
            r.weight *= NOISY_WEIGHT;
        r.split = custos_train_split_of(split_key(text, tlen, sc), train_only);
        r.text = malloc(tlen + 1);
        r.len = tlen;
        if (r.text)
            memcpy(r.text, text, tlen + 1);
        if (r.split == CUSTOS_TRAIN_SPLIT_DEV) {
            while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
                buf[--got] = 0;
            r.line = strdup(buf);
        }
        /* constructed injections carry the attack's span: train on the bare span as well (training split only) */
        json_object *span;
        srow_t sr = {0};
        if (r.split == CUSTOS_TRAIN_SPLIT_TRAIN && r.y && json_object_object_get_ex(j, "attack_span", &span) &&
            json_object_is_type(span, json_type_array) && json_object_array_length(span) == 2) {
            size_t sa = cp_to_byte(text, tlen, (size_t)json_object_get_int(json_object_array_get_idx(span, 0)));
            size_t sb = cp_to_byte(text, tlen, (size_t)json_object_get_int(json_object_array_get_idx(span, 1)));
            if (sb > sa + 8) {
                sr = r;
                sr.len = sb - sa;
                sr.text = strndup(text + sa, sb - sa);
            }
        }
        json_object_put(j);
        if (sr.text && push(rows, &sr) < 0)
            free(sr.text);
        if (!r.text || (r.split == CUSTOS_TRAIN_SPLIT_DEV && !r.line) || push(rows, &r) < 0) {
            free(r.text);
            free(r.line);
            rc = CUSTOS_ENOMEM;
            break;
        }
        kept++;
    }
    free(buf);
    fclose(f);
    custos_train_log(o, "  %s: %zu rows\n", path, kept);
    return rc;
}

typedef struct shields_load {
    const custos_train_opts_t *o;
    srows_t *rows;
    custos_safety_scratch_t *sc;
} shields_load_t;

static int shields_load_one(void *ud, const char *file, const char *path, const char *notes, char *err, size_t errlen)
{
    shields_load_t *l = ud;
    (void)notes;
    if (strncmp(file, "attacks/", 8) != 0)
        return 0;
    return custos_train_read_result(load_file(path, 0, 1.0f, l->rows, l->sc, l->o), path, err, errlen);
}

/* Loads every attacks/ file of MANIFEST.tsv with commercial_ok = yes. */
static int load_manifest(const custos_train_opts_t *o, srows_t *rows, custos_safety_scratch_t *sc, char *err,
                         size_t errlen)
{
    shields_load_t l = {o, rows, sc};
    return custos_train_manifest_each(o->data_dir, shields_load_one, &l, err, errlen);
}

static int train_row(custos_train_linear_t *tr, const custos_harm_fcfg_t *cfg, const srow_t *r,
                     custos_safety_scratch_t *sc)
{
    size_t cnt;
    float x;
    int rc = custos_train_features(cfg, r->text, r->len, tr->min_feats, sc, &cnt, &x);
    if (rc < 0 || !cnt)
        return rc;
    int c = r->head;
    double z = tr->bias[c];
    for (size_t i = 0; i < cnt; i++) {
        float s = (sc->feat[i] >> 63) ? -x : x;
        z += s * tr->w[(sc->feat[i] & tr->mask) * NH + c];
    }
    double p = 1.0 / (1.0 + exp(-z));
    float gr = (float)((p - r->y) * tr->cw[c][r->y] * r->weight);
    custos_train_adagrad(&tr->bias[c], &tr->gb[c], gr, tr->lr);
    for (size_t i = 0; i < cnt; i++) {
        size_t k = (sc->feat[i] & tr->mask) * NH + c;
        custos_train_adagrad(&tr->w[k], &tr->g[k], gr * ((sc->feat[i] >> 63) ? -x : x), tr->lr);
    }
    return 0;
}

/* custos_train_dev_line_fn over an srow_t array. */
static const char *dev_line(const void *rows, size_t i)
{
    const srow_t *r = (const srow_t *)rows + i;
    return r->split == CUSTOS_TRAIN_SPLIT_DEV ? r->line : NULL;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int custos_train_shields(const custos_train_opts_t *o, char *err, size_t errlen)
{
    srows_t rows = {0};
    custos_safety_scratch_t sc;
    custos_safety_scratch_init(&sc, 0);
    custos_train_linear_t tr = {0};
    custos_model_header_t h;
    int8_t *q = NULL;
    size_t *order = NULL;
    custos_model_t *m = NULL;
    float *zs = NULL;
    uint8_t *ys = NULL;
    int rc;
    custos_train_hashed_header(&h, o, 18, NH, MIN_FEATS);
    custos_harm_fcfg_t cfg = {h.hash_bits, h.hash_seed, h.norm_flags, h.word_ngrams, h.char_min, h.char_max};
    custos_train_log(o, "reading %s (commercial_ok = yes only)\n", o->data_dir);
    if ((rc = load_manifest(o, &rows, &sc, err, errlen)) < 0)
        goto fail;
    for (int i = 0; i < 4 && o->extra[i]; i++)
        if ((rc = load_file(o->extra[i], 1, EXTRA_WEIGHT, &rows, &sc, o)) < 0) {
            snprintf(err, errlen, "cannot read %s", o->extra[i]);
            goto fail;
        }
    size_t cnt[NH][2] = {{0}};
    for (size_t i = 0; i < rows.n; i++)
        if (rows.v[i].split == CUSTOS_TRAIN_SPLIT_TRAIN)
            cnt[rows.v[i].head][rows.v[i].y]++;
    for (int c = 0; c < NH; c++) {
        size_t tot = cnt[c][0] + cnt[c][1];
        for (int y = 0; y < 2; y++)
            tr.cw[c][y] = cnt[c][y] ? (float)tot / (2.0f * (float)cnt[c][y]) : 1.0f;
        custos_train_log(o, "%-16s train rows: %zu attacks, %zu benign\n", custos_shield_name(c), cnt[c][1], cnt[c][0]);
    }
    rc = custos_train_linear_alloc(&tr, &h, o);
    order = malloc((rows.n + 1) * sizeof(size_t));
    if (rc < 0 || !order) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    size_t ntrain = 0;
    for (size_t i = 0; i < rows.n; i++)
        if (rows.v[i].split == CUSTOS_TRAIN_SPLIT_TRAIN)
            order[ntrain++] = i;
    uint64_t rng = 0x9e3779b97f4a7c15ULL ^ h.hash_seed;
    unsigned epochs = o->epochs ? o->epochs : 5;
    for (unsigned e = 0; e < epochs; e++) {
        custos_train_shuffle(order, ntrain, &rng);
        for (size_t k = 0; k < ntrain; k++)
            if ((rc = train_row(&tr, &cfg, &rows.v[order[k]], &sc)) < 0 && rc != CUSTOS_ETOOBIG)
                goto fail;
        custos_train_log(o, "epoch %u/%u done\n", e + 1, epochs);
    }
    if (!(q = custos_train_linear_quantize(&tr, &h))) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    for (int c = 0; c < NH; c++) {
        custos_model_head_t *hd = &h.heads[c];
        snprintf(hd->name, sizeof(hd->name), "%s", custos_shield_name(c));
        for (int k = 0; k < 7; k++)
            hd->bands[k] = 0.5f;
    }
    /* Platt calibration, then the detection threshold (bands[0..6], all equal) at the target FPR */
    size_t len = 0;
    if ((rc = custos_train_model_build(&h, q, &m, &len, err, errlen)) < 0)
        goto fail;
    zs = malloc((rows.n + 1) * sizeof(float));
    ys = malloc(rows.n + 1);
    if (!zs || !ys) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    for (int c = 0; c < NH; c++) {
        size_t k = 0;
        for (size_t i = 0; i < rows.n; i++) {
            srow_t *r = &rows.v[i];
            float s;
            if (r->split != CUSTOS_TRAIN_SPLIT_CAL || r->head != c ||
                custos_shields_raw(m, c, r->text, r->len, &s, &sc) < 0)
                continue;
            s = fminf(fmaxf(s, 1e-7f), 1 - 1e-7f); /* identity calibration: back to the logit */
            zs[k] = logf(s / (1 - s));
            ys[k++] = r->y;
        }
        custos_model_head_t *hd = &h.heads[c];
        custos_train_platt_fit(zs, ys, k, &hd->platt_a, &hd->platt_b);
    }
    /* thresholds: full scoring pipeline (decoding, windows, signals) of the calibrated model on the benign rows */
    custos_model_free(m);
    m = NULL;
    if ((rc = custos_train_model_build(&h, q, &m, &len, err, errlen)) < 0)
        goto fail;
    for (int c = 0; c < NH; c++) {
        custos_model_head_t *hd = &h.heads[c];
        size_t nn = 0, k = 0;
        for (size_t i = 0; i < rows.n; i++) {
            srow_t *r = &rows.v[i];
            custos_shield_result_t res;
            if (r->split != CUSTOS_TRAIN_SPLIT_CAL || r->head != c)
                continue;
            k++;
            if (!r->y && custos_shields_score(m, c, r->text, r->len, &res, &sc) == 0)
                zs[nn++] = res.score;
        }
        qsort(zs, nn, sizeof(float), cmp_desc);
        size_t at = (size_t)(target_fpr[c] * (float)nn);
        float thr = nn && at < nn ? zs[at] + 1e-4f : 0.5f;
        thr = fminf(fmaxf(thr, 0.2f), 0.9f);
        for (int b = 0; b < 7; b++)
            hd->bands[b] = thr;
        custos_train_log(o, "%-16s calibration rows %zu: a=%.4f b=%.4f threshold %.4f\n", hd->name, k, hd->platt_a,
                         hd->platt_b, thr);
    }
    rc = custos_train_write_outputs(o, &h, q, len, dev_line, rows.v, rows.n, err, errlen);
fail:
    custos_model_free(m);
    free(zs);
    free(ys);
    free(q);
    free(order);
    custos_train_linear_dispose(&tr);
    for (size_t i = 0; i < rows.n; i++) {
        free(rows.v[i].text);
        free(rows.v[i].line);
    }
    free(rows.v);
    custos_safety_scratch_dispose(&sc);
    return rc;
}
