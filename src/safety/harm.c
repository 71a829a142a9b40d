/* SPDX-License-Identifier: Apache-2.0
 * Harm scoring: feature hashing of normalised text and the int8 linear heads (harm.h). */
#include "safety/harm.h"

#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const cat_names[CUSTOS_HARM_NCAT] = {"hate", "sexual", "violence", "self_harm"};

const char *custos_harm_category_name(int c)
{
    return c >= 0 && c < CUSTOS_HARM_NCAT ? cat_names[c] : NULL;
}

int custos_harm_model_check(const custos_harm_model_t *m)
{
    return custos_model_check_heads(m, cat_names, CUSTOS_HARM_NCAT);
}

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

#define FNV_PRIME 0x100000001b3ULL

/* Cheap final mix of an n-gram hash (bucket from the low bits, sign from the top bit). */
static inline uint64_t mix_fast(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

static inline int word_cp(uint32_t c)
{
    if (c < 0x80)
        return (c - 'a' < 26u) || (c - '0' < 10u) || (c - 'A' < 26u);
    return custos_norm_is_word(c);
}

static int feat_grow(custos_safety_scratch_t *s, size_t need)
{
    if (need <= s->feat_cap)
        return 0;
    size_t n = s->feat_cap ? s->feat_cap : 1024;
    while (n < need)
        n *= 2;
    uint64_t *f = realloc(s->feat, n * sizeof(uint64_t));
    if (!f)
        return CUSTOS_ENOMEM;
    s->feat = f;
    s->feat_cap = n;
    return 0;
}

/* Token stream of normalised text n: word characters kept, every other run -> one space, padded with spaces. Built
 * in s->tcp; with_map: s->tmap[i] = original code-point offset of t[i] (for a space: of the first character of the
 * run it replaces, or n->orig_len for the padding at the end). Returns the length (>= 1) or CUSTOS_ENOMEM. */
static long build_tokens(const custos_norm_t *n, custos_safety_scratch_t *s, int with_map)
{
    size_t need = n->len + 2;
    if (need > s->tcap) {
        size_t c = s->tcap ? s->tcap : 256;
        while (c < need)
            c *= 2;
        uint32_t *a = realloc(s->tcp, c * sizeof(uint32_t));
        if (!a)
            return CUSTOS_ENOMEM;
        s->tcp = a;
        uint32_t *b = realloc(s->tmap, c * sizeof(uint32_t));
        if (!b)
            return CUSTOS_ENOMEM;
        s->tmap = b;
        s->tcap = c;
    }
    uint32_t *t = s->tcp, *tm = s->tmap;
    size_t tl = 0;
    t[tl++] = ' ';
    if (with_map) {
        tm[0] = 0;
        for (size_t i = 0; i < n->len; i++) {
            uint32_t c = n->cp[i];
            if (word_cp(c))
                tm[tl] = n->map[i], t[tl++] = c;
            else if (t[tl - 1] != ' ')
                tm[tl] = n->map[i], t[tl++] = ' ';
        }
        if (t[tl - 1] != ' ')
            tm[tl] = (uint32_t)n->orig_len, t[tl++] = ' ';
        return (long)tl;
    }
    for (size_t i = 0; i < n->len; i++) {
        uint32_t c = n->cp[i];
        if (word_cp(c))
            t[tl++] = c;
        else if (t[tl - 1] != ' ')
            t[tl++] = ' ';
    }
    if (t[tl - 1] != ' ')
        t[tl++] = ' ';
    return (long)tl;
}

/* Feature hashes of token stream t[0..tl) (t[0] == ' ', t[tl - 1] == ' ') into s->feat. */
static int hash_tokens(const custos_harm_fcfg_t *cfg, const uint32_t *t, size_t tl, custos_safety_scratch_t *s,
                       size_t *count)
{
    *count = 0;
    if (tl <= 1)
        return 0;
    size_t cmin = cfg->char_min, cmax = cfg->char_max;
    size_t est = tl * (cmax >= cmin && cmax ? cmax - cmin + 1 : 0) + 2 * tl + 8;
    if (feat_grow(s, est) < 0)
        return CUSTOS_ENOMEM;
    uint64_t *f = s->feat;
    size_t k = 0;
    uint64_t seed = fmix64(cfg->hash_seed + 0x9e3779b97f4a7c15ULL);
    if (cmax) {
        for (size_t i = 0; i + cmin <= tl; i++) {
            uint64_t h = seed;
            for (size_t j = 0; j < cmax && i + j < tl; j++) {
                h = (h ^ t[i + j]) * FNV_PRIME;
                if (j + 1 >= cmin)
                    f[k++] = mix_fast(h + j);
            }
        }
    }
    if (cfg->word_ngrams) {
        uint64_t prev = 0, prev2 = 0;
        size_t i = 1;
        while (i < tl) {
            uint64_t h = seed ^ 0x5bd1e995ULL;
            size_t j = i;
            while (j < tl && t[j] != ' ')
                h = (h ^ t[j++]) * FNV_PRIME;
            if (j == i)
                break;
            uint64_t w = fmix64(h ^ 0xa1);
            f[k++] = w;
            if (cfg->word_ngrams >= 2 && prev)
                f[k++] = fmix64(prev * 31 + w + 0xb2);
            if (cfg->word_ngrams >= 3 && prev2)
                f[k++] = fmix64((prev2 * 31 + prev) * 31 + w + 0xc3);
            prev2 = prev;
            prev = w;
            i = j + 1;
        }
    }
    *count = k;
    return 0;
}

int custos_harm_features(const custos_harm_fcfg_t *cfg, const custos_norm_t *n, custos_safety_scratch_t *s,
                         size_t *count)
{
    *count = 0;
    s->fc_valid = 0; /* feat is about to change */
    long tl = build_tokens(n, s, 0);
    if (tl < 0)
        return (int)tl;
    return hash_tokens(cfg, s->tcp, (size_t)tl, s, count);
}

void custos_harm_logits(const custos_harm_model_t *m, const uint64_t *feat, size_t count, float *logit)
{
    const custos_model_header_t *h = m->h;
    uint32_t nh = h->n_heads;
    uint64_t mask = ((uint64_t)1 << h->hash_bits) - 1;
    int32_t acc[CUSTOS_MODEL_MAX_HEADS] = {0};
    if (nh == 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t i = 0; i < count; i++) {
            if (i + 16 < count)
                __builtin_prefetch(m->w + (feat[i + 16] & mask) * 4);
            const int8_t *w = m->w + (feat[i] & mask) * 4;
            int32_t s = (int32_t)(feat[i] >> 63) * -2 + 1;
            a0 += s * w[0];
            a1 += s * w[1];
            a2 += s * w[2];
            a3 += s * w[3];
        }
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
    } else {
        for (size_t i = 0; i < count; i++) {
            const int8_t *w = m->w + (feat[i] & mask) * nh;
            int32_t s = (int32_t)(feat[i] >> 63) * -2 + 1;
            for (uint32_t c = 0; c < nh; c++)
                acc[c] += s * w[c];
        }
    }
    size_t nf = count < h->min_feats ? h->min_feats : count; /* feature-count floor (model.h) */
    float norm = count ? 1.0f / sqrtf((float)nf) : 0.0f;
    for (uint32_t c = 0; c < nh; c++)
        logit[c] = h->heads[c].bias + h->heads[c].scale * (float)acc[c] * norm;
}

float custos_harm_calibrate(const custos_harm_model_t *m, int c, float logit)
{
    const custos_model_head_t *hd = &m->h->heads[c];
    float z = hd->platt_a * logit + hd->platt_b;
    if (z > 30)
        return 1.0f;
    if (z < -30)
        return 0.0f;
    return 1.0f / (1.0f + expf(-z));
}

int custos_harm_severity(const custos_harm_model_t *m, int c, float score)
{
    const custos_model_head_t *hd = &m->h->heads[c];
    int sev = 0;
    while (sev < 7 && score >= hd->bands[sev])
        sev++;
    return sev;
}

/* Records that scratch->feat holds the count features of text[0..len) under key (best effort: on allocation
 * failure the cache just stays invalid). */
static void remember(custos_safety_scratch_t *s, const char *text, size_t len, const uint32_t key[5], size_t count)
{
    if (len > s->fc_cap) {
        size_t c = s->fc_cap ? s->fc_cap : 1024;
        while (c < len)
            c *= 2;
        char *t = realloc(s->fc_text, c);
        if (!t)
            return;
        s->fc_text = t;
        s->fc_cap = c;
    }
    if (len)
        memcpy(s->fc_text, text, len);
    s->fc_len = len;
    memcpy(s->fc_cfg, key, sizeof(s->fc_cfg));
    s->fc_count = count;
    s->fc_valid = 1;
}

int custos_model_text_logits(const custos_model_t *m, const char *text, size_t len, float logit[CUSTOS_MODEL_MAX_HEADS],
                             custos_safety_scratch_t *scratch)
{
    const custos_model_header_t *h = m->h;
    /* The feature hashes do not depend on hash_bits (the bucket is masked in custos_harm_logits), so every model
     * with the same normalisation and n-gram settings gets the same features for the same bytes. */
    const uint32_t key[5] = {h->hash_seed, h->norm_flags, h->word_ngrams, h->char_min, h->char_max};
    size_t count = 0;
    if (scratch->fc_valid && scratch->fc_len == len && memcmp(scratch->fc_cfg, key, sizeof(key)) == 0 &&
        (len == 0 || memcmp(scratch->fc_text, text, len) == 0)) {
        count = scratch->fc_count;
    } else {
        custos_norm_t n;
        int rc = custos_normalize(text, len, h->norm_flags, scratch, &n);
        if (rc < 0)
            return rc;
        custos_harm_fcfg_t cfg = {h->hash_bits, h->hash_seed, h->norm_flags, h->word_ngrams, h->char_min, h->char_max};
        if ((rc = custos_harm_features(&cfg, &n, scratch, &count)) < 0)
            return rc;
        remember(scratch, text, len, key, count);
    }
    if (count == 0)
        return 0;
    custos_harm_logits(m, scratch->feat, count, logit);
    return 1;
}

static void fill_result(const custos_harm_model_t *m, const float *logit, custos_harm_result_t *out)
{
    for (int c = 0; c < CUSTOS_HARM_NCAT && c < (int)m->h->n_heads; c++) {
        out->logit[c] = logit[c];
        out->score[c] = custos_harm_calibrate(m, c, logit[c]);
        out->severity[c] = custos_harm_severity(m, c, out->score[c]);
    }
}

int custos_harm_score(const custos_harm_model_t *m, const char *text, size_t len, custos_harm_result_t *out,
                      custos_safety_scratch_t *scratch)
{
    memset(out, 0, sizeof(*out));
    float logit[CUSTOS_MODEL_MAX_HEADS];
    int rc = custos_model_text_logits(m, text, len, logit, scratch);
    if (rc <= 0)
        return rc;
    fill_result(m, logit, out);
    return 0;
}

/* A sentence edge at byte at: normalisation never looks across it except for spaced letters (checked separately):
 * no UTF-8 sequence, combining sequence, word or run of one character straddles it. */
static int sentence_edge(const char *text, size_t len, size_t at)
{
    if (at == 0 || at == len)
        return 1;
    char p = text[at - 1], c = text[at];
    return (p == '.' || p == '!' || p == '?' || p == ';' || p == '\n') && (c == ' ' || c == '\n');
}

/* Scores the features now in scratch->feat (count of them) into out (zero result for none). */
static void score_feats(const custos_harm_model_t *m, size_t count, custos_harm_result_t *out,
                        custos_safety_scratch_t *s)
{
    memset(out, 0, sizeof(*out));
    if (count == 0)
        return;
    float logit[CUSTOS_MODEL_MAX_HEADS];
    custos_harm_logits(m, s->feat, count, logit);
    fill_result(m, logit, out);
}

int custos_harm_score_parts(const custos_harm_model_t *m, const char *text, size_t len, const size_t (*seg)[2],
                            size_t nseg, custos_harm_result_t *whole, custos_harm_result_t *parts,
                            custos_safety_scratch_t *scratch)
{
    memset(whole, 0, sizeof(*whole));
    if (nseg > CUSTOS_HARM_MAX_PARTS)
        return CUSTOS_EINVAL;
    const custos_model_header_t *h = m->h;
    custos_norm_t n;
    int rc = custos_normalize(text, len, h->norm_flags, scratch, &n);
    if (rc < 0)
        return rc;
    scratch->fc_valid = 0;
    long tl = build_tokens(&n, scratch, 1);
    if (tl < 0)
        return (int)tl;
    const uint32_t *t = scratch->tcp, *tm = scratch->tmap;
    custos_harm_fcfg_t cfg = {h->hash_bits, h->hash_seed, h->norm_flags, h->word_ngrams, h->char_min, h->char_max};
    uint8_t alone[CUSTOS_HARM_MAX_PARTS / 8] = {0};
    size_t cur_b = 0, cur_cp = 0, count; /* code-point cursor over the text (parts usually come in order) */
    for (size_t k = 0; k < nseg; k++) {
        size_t bs = seg[k][0], be = seg[k][1];
        if (bs >= be || be > len || !sentence_edge(text, len, bs) || !sentence_edge(text, len, be)) {
            alone[k / 8] |= (uint8_t)(1u << (k % 8));
            continue;
        }
        size_t cs, ce;
        if (bs < cur_b)
            cur_b = 0, cur_cp = 0;
        cs = cur_cp + custos_norm_cp_count(text + cur_b, bs - cur_b);
        ce = cs + custos_norm_cp_count(text + bs, be - bs);
        cur_b = bs, cur_cp = cs;
        /* word tokens from [cs, ce): the stream's offsets are non-decreasing; index 0 is the leading pad */
        size_t lo = 1, hi = (size_t)tl;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (tm[mid] < cs)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t wf = lo;
        while (wf < (size_t)tl && t[wf] == ' ' && tm[wf] < ce)
            wf++;
        if (wf >= (size_t)tl || tm[wf] >= ce) { /* no word: scored alone the part has no features */
            memset(&parts[k], 0, sizeof(parts[k]));
            continue;
        }
        size_t wl = wf;
        while (wl + 1 < (size_t)tl && tm[wl + 1] < ce)
            wl++;
        while (t[wl] == ' ')
            wl--;
        if (t[wf - 1] != ' ' || t[wl + 1] != ' ') { /* a word joined across the edge: score the part alone */
            alone[k / 8] |= (uint8_t)(1u << (k % 8));
            continue;
        }
        if ((rc = hash_tokens(&cfg, t + wf - 1, wl - wf + 3, scratch, &count)) < 0)
            return rc;
        score_feats(m, count, &parts[k], scratch);
    }
    if ((rc = hash_tokens(&cfg, t, (size_t)tl, scratch, &count)) < 0)
        return rc;
    score_feats(m, count, whole, scratch);
    const uint32_t key[5] = {h->hash_seed, h->norm_flags, h->word_ngrams, h->char_min, h->char_max};
    remember(scratch, text, len, key, count);
    for (size_t k = 0; k < nseg; k++)
        if ((alone[k / 8] >> (k % 8)) & 1) {
            size_t bs = seg[k][0], be = seg[k][1];
            if (bs >= be || be > len)
                memset(&parts[k], 0, sizeof(parts[k]));
            else if ((rc = custos_harm_score(m, text + bs, be - bs, &parts[k], scratch)) < 0)
                return rc;
        }
    return 0;
}
