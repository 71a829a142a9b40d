/* SPDX-License-Identifier: Apache-2.0
 * Name / address tagger (pii_ner.h): tokeniser, hashed per-token features and greedy IO decoding over the original
 * text, so capitalisation (the strongest cue for names) is kept. */
#include "safety/pii_ner.h"

#include "util/err.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

const char *const custos_pii_ner_heads[CUSTOS_PII_NER_NTAGS] = {"O", "PERSON", "STREET_ADDRESS", "ORGANIZATION",
                                                                "LOCATION"};
const int custos_pii_ner_tag_type[CUSTOS_PII_NER_NTAGS] = {-1, CUSTOS_PII_PERSON, CUSTOS_PII_STREET_ADDRESS,
                                                           CUSTOS_PII_ORGANIZATION, CUSTOS_PII_LOCATION};

#define WIN 512 /* tokens per window */
/* See span_state_t.o_m: how far below O (in model logit units) a capitalised word may score for the tag of the span
 * that follows it and still be taken into that span; per tag, chosen on the generated dev split. */
static const float extend_margin[CUSTOS_PII_NER_NTAGS] = {0, 5, 50, 50, 5};
#define CTX 3 /* tokens of context kept from the previous window */

/* ---- small built-in lexicon: street suffixes, titles, unit words (hashes in an open-addressing table) ---- */

static const char *const LEX_STREET[] = {
    "street",   "st",    "avenue",  "ave",     "av",        "road",  "rd",    "boulevard", "blvd",   "lane",
    "ln",       "drive", "dr",      "court",   "ct",        "way",   "place", "pl",        "circle", "cir",
    "parkway",  "pkwy",  "highway", "hwy",     "terrace",   "ter",   "trail", "trl",       "square", "sq",
    "crescent", "close", "row",     "alley",   "loop",      "pike",  "plaza", "strasse",   "straße", "str",
    "via",      "rue",   "calle",   "avenida", "boulevard", "gasse", "weg",   "vej",       "gatan",  "gata",
    "ul",       "ulica", "rua",     "viale",   "piazza",    "corso", NULL};
static const char *const LEX_TITLE[] = {"mr",   "mrs",  "ms",  "miss", "dr",   "prof", "sir",  "madam", "mx",  "mister",
                                        "dame", "lord", "rev", "herr", "frau", "mme",  "mlle", "sr",    "sra", NULL};
static const char *const LEX_ABBR[] = {"inc", "corp", "co",   "ltd", "llc", "plc", "jr",
                                       "sr",  "bros", "assn", "mt",  "ft",  NULL};
/* labels of identifiers (the structured scanner's context words): never part of a name or address */
static const char *const LEX_LABEL[] = {"ssn", "npi", "dea",  "mbi",  "isbn",  "iban", "sku",   "dob", "mrn",
                                        "ein", "tin", "vin",  "zip",  "tel",   "fax",  "email", "url", "bic",
                                        "cvv", "otp", "uuid", "http", "https", "utc",  NULL};
static const char *const LEX_UNIT[] = {"apt", "apartment", "suite", "ste",      "unit", "floor", "fl",
                                       "box", "po",        "bldg",  "building", "room", "rm",    NULL};

#define LEX_SLOTS 512
static uint32_t lex_key[LEX_SLOTS];
static uint8_t lex_val[LEX_SLOTS];
static pthread_once_t lex_once = PTHREAD_ONCE_INIT;

static uint32_t fnv(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h | 1u; /* 0 marks an empty slot */
}

static void lex_add(const char *const *list, uint8_t v)
{
    for (; *list; list++) {
        uint32_t h = fnv((const unsigned char *)*list, strlen(*list));
        uint32_t k = h & (LEX_SLOTS - 1);
        while (lex_key[k] && lex_key[k] != h)
            k = (k + 1) & (LEX_SLOTS - 1);
        lex_key[k] = h;
        lex_val[k] = v;
    }
}

static void lex_init(void)
{
    lex_add(LEX_STREET, 1);
    lex_add(LEX_TITLE, 2);
    lex_add(LEX_UNIT, 3);
    lex_add(LEX_ABBR, 4);
    lex_add(LEX_LABEL, 5);
}

static uint8_t lex_get(uint32_t h)
{
    uint32_t k = h & (LEX_SLOTS - 1);
    while (lex_key[k]) {
        if (lex_key[k] == h)
            return lex_val[k];
        k = (k + 1) & (LEX_SLOTS - 1);
    }
    return 0;
}

/* ---- tokeniser ---- */

/* fnv() of one punctuation character */
#define H_PUNCT(c) ((2166136261u ^ (uint32_t)(c)) * 16777619u | 1u)
#define H_COMMA H_PUNCT(',')
#define H_SEMI H_PUNCT(';')
#define H_DOT H_PUNCT('.')

/* Decodes one code point at text[i]; *cl = its byte length (1 for an invalid byte). */
static uint32_t dec(const unsigned char *s, size_t len, size_t i, size_t *cl)
{
    unsigned char c = s[i];
    *cl = 1;
    if (__builtin_expect(c < 0x80, 1))
        return c;
    size_t n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (!n || i + n > len)
        return 0xfffd;
    uint32_t v = c & (0xff >> (n + 1));
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xc0) != 0x80)
            return 0xfffd;
        v = (v << 6) | (s[i + k] & 0x3f);
    }
    if ((n == 3 && (v < 0x800 || (v >= 0xd800 && v < 0xe000))) || (n == 4 && (v < 0x10000 || v > 0x10ffff)))
        return 0xfffd;
    *cl = n;
    return v;
}

static int is_upper(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7) ||
           (c >= 0x100 && c < 0x180 && !(c & 1) && c != 0x138);
}

static inline int is_word(uint32_t c)
{
    if (c < 128)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return c != 0xfffd && custos_norm_is_word(c);
}

static inline int is_space(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0xa0 || c == 0x2028 ||
           c == 0x3000 || (c >= 0x2000 && c <= 0x200a);
}

size_t custos_pii_ner_tokenize(const char *text, size_t len, size_t *pos, size_t *cpos, custos_pii_ner_tok_t *toks,
                               size_t cap)
{
    pthread_once(&lex_once, lex_init);
    const unsigned char *s = (const unsigned char *)text;
    size_t i = *pos, cp = *cpos, n = 0;
    int nl = i == 0;
    while (i < len && n < cap) {
        size_t cl;
        uint32_t c = dec(s, len, i, &cl);
        if (is_space(c)) {
            nl |= c == '\n';
            i += cl;
            cp++;
            continue;
        }
        custos_pii_ner_tok_t *t = &toks[n++];
        t->lex = 0;
        t->bs = (uint32_t)i;
        t->cs = (uint32_t)cp;
        t->nl = (uint8_t)nl;
        nl = 0;
        unsigned char low[32];
        char shape[8];
        size_t nlow = 0, nshape = 0, digits = 0, letters = 0;
        char last = 0;
        t->cap = (uint8_t)is_upper(c);
        if (!is_word(c)) {
            i += cl;
            cp++;
            t->kind = 2;
            shape[nshape++] = c < 128 ? (char)c : 'o';
            for (size_t k = 0; k < cl; k++)
                low[nlow++] = s[t->bs + k];
        } else {
            for (;;) {
                char sc;
                if (c < 128 && is_word(c)) { /* ASCII letter or digit: the common case, no decoding */
                    sc = c >= 'a' ? 'x' : c >= 'A' ? 'X' : 'd';
                    if (nlow < sizeof(low))
                        low[nlow++] = (unsigned char)(sc == 'X' ? c + 32 : c);
                } else {
                    sc = is_upper(c) ? 'X' : is_word(c) ? 'x' : '\'';
                    for (size_t k = 0; k < cl && nlow < sizeof(low); k++) {
                        unsigned char b = s[i + k];
                        low[nlow++] = b >= 'A' && b <= 'Z' ? (unsigned char)(b + 32) : b;
                    }
                }
                digits += sc == 'd';
                letters += sc == 'X' || sc == 'x';
                if (sc != last && nshape < 2)
                    shape[nshape++] = sc;
                last = sc;
                i += cl;
                cp++;
                if (i >= len)
                    break;
                if (s[i] < 128 && is_word(s[i])) {
                    c = s[i];
                    cl = 1;
                    continue;
                }
                uint32_t d = dec(s, len, i, &cl);
                if (is_word(d)) {
                    c = d;
                    continue;
                }
                if ((d == '\'' || d == 0x2019 || d == '-') && i + cl < len) {
                    size_t cl2;
                    if (is_word(dec(s, len, i + cl, &cl2))) {
                        c = d;
                        continue;
                    }
                }
                break;
            }
            t->kind = digits && !letters ? 1 : 0;
        }
        t->be = (uint32_t)i;
        t->ce = (uint32_t)cp;
        t->word = fnv(low, nlow);
        /* shape, prefix and suffix are packed, not hashed (the feature hash mixes them) */
        uint64_t sh = 0;
        for (size_t k = 0; k < nshape; k++)
            sh = sh << 8 | (unsigned char)shape[k];
        t->shape = (uint32_t)(sh ^ (sh >> 29) ^ (sh >> 32)) | 1u;
        size_t a = nlow < 3 ? nlow : 3;
        uint32_t pre = (uint32_t)a << 24;
        uint32_t suf = pre;
        for (size_t k = 0; k < a; k++) {
            pre |= (uint32_t)low[k] << (8 * k);
            suf |= (uint32_t)low[nlow - a + k] << (8 * k);
        }
        t->pre = pre;
        t->suf = suf;
        t->lex = t->kind == 0 && nlow <= 16 ? lex_get(t->word) : 0;
    }
    *pos = i;
    *cpos = cp;
    return n;
}

/* ---- features ---- */

static uint32_t fh(uint32_t tmpl, uint32_t v, uint32_t seed, uint32_t mask)
{
    uint64_t k = ((uint64_t)(tmpl + 1) << 32 | v) ^ ((uint64_t)seed * 0x9e3779b97f4a7c15ULL);
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (uint32_t)k & mask;
}

static int sent_start(const custos_pii_ner_tok_t *t, size_t i)
{
    if (i == 0 || t[i].nl)
        return 1;
    const custos_pii_ner_tok_t *p = &t[i - 1];
    if (p->kind != 2 || p->be - p->bs != 1)
        return 0;
    return p->word == H_DOT || p->word == H_PUNCT('!') || p->word == H_PUNCT('?') || p->word == H_PUNCT(':') ||
           p->word == H_PUNCT('"');
}

size_t custos_pii_ner_features(const custos_pii_ner_tok_t *t, size_t n, size_t i, uint32_t seed, uint32_t mask,
                               uint32_t *out)
{
    const custos_pii_ner_tok_t *c = &t[i];
    uint32_t wm1 = i >= 1 ? t[i - 1].word : 1, wm2 = i >= 2 ? t[i - 2].word : 1;
    uint32_t wp1 = i + 1 < n ? t[i + 1].word : 2, wp2 = i + 2 < n ? t[i + 2].word : 2;
    uint32_t sm1 = i >= 1 ? t[i - 1].shape : 1, sp1 = i + 1 < n ? t[i + 1].shape : 2;
    uint32_t lm1 = i >= 1 ? t[i - 1].lex : 7, lp1 = i + 1 < n ? t[i + 1].lex : 7, lp2 = i + 2 < n ? t[i + 2].lex : 7;
    uint32_t ss = (uint32_t)sent_start(t, i);
    uint32_t sfx_ahead = 0, num_behind = 0, title_behind = 0;
    for (size_t k = i + 1; k < n && k <= i + 4; k++)
        sfx_ahead |= t[k].lex == 1;
    for (size_t k = i >= 3 ? i - 3 : 0; k <= i; k++)
        num_behind |= t[k].kind == 1;
    for (size_t k = i; k-- > 0 && k + 2 >= i;)
        title_behind |= t[k].lex == 2;
    size_t f = 0;
    out[f++] = fh(0, 0, seed, mask);
    out[f++] = fh(1, c->word, seed, mask);
    out[f++] = fh(2, wm1, seed, mask);
    out[f++] = fh(3, wp1, seed, mask);
    out[f++] = fh(4, wm2, seed, mask);
    out[f++] = fh(5, wp2, seed, mask);
    out[f++] = fh(6, c->shape, seed, mask);
    out[f++] = fh(7, sm1 ^ c->shape * 31u, seed, mask);
    out[f++] = fh(8, c->shape ^ sp1 * 31u, seed, mask);
    out[f++] = fh(9, c->suf, seed, mask);
    out[f++] = fh(10, c->pre, seed, mask);
    out[f++] = fh(11, c->shape * 7u + ss, seed, mask);
    out[f++] = fh(12, wm1 ^ c->shape * 131u, seed, mask);
    out[f++] = fh(13, c->shape ^ wp1 * 131u, seed, mask);
    out[f++] = fh(14, c->lex | lm1 << 4 | lp1 << 8 | lp2 << 12, seed, mask);
    out[f++] =
        fh(15, sfx_ahead | num_behind << 1 | (uint32_t)c->kind << 2 | (uint32_t)c->cap << 4 | ss << 5, seed, mask);
    out[f++] = fh(16, c->word ^ wp1 * 0x9e3779b1u, seed, mask);
    out[f++] = fh(17, wm1 ^ c->word * 0x85ebca6bu, seed, mask);
    out[f++] = fh(18, title_behind | (uint32_t)c->cap << 1 | ss << 2, seed, mask);
    return f;
}

int custos_pii_ner_check(const custos_model_t *m)
{
    return custos_model_check_heads(m, custos_pii_ner_heads, CUSTOS_PII_NER_NTAGS);
}

/* ---- decoding ---- */

typedef struct span_state {
    int open;
    uint32_t cs, last_ce;
    float p[CUSTOS_PII_NER_NTAGS]; /* summed tag scores (logit - max) of the span's tokens: its type is the best */
    unsigned cnt;
    /* the last scored token when it was a capitalised word tagged O: its start and its margins z[k] - z[O], so a
     * span that opens right after it can take it in ("Kimmo" in "Tenant: Kimmo Makela") */
    uint32_t o_cs, o_ce;
    float o_m[CUSTOS_PII_NER_NTAGS];
} span_state_t;

static void close_span(span_state_t *st, custos_pii_span_t *out, size_t cap, size_t *n)
{
    if (!st->open)
        return;
    int best = 1;
    for (int h = 2; h < CUSTOS_PII_NER_NTAGS; h++)
        if (st->p[h] > st->p[best])
            best = h;
    /* score: logistic of the mean margin of the chosen tag over O (one expf per span, not per token) */
    float margin = (st->p[best] - st->p[0]) / (float)st->cnt;
    if (st->last_ce > st->cs && *n < cap)
        out[(*n)++] = (custos_pii_span_t){st->cs, st->last_ce, 1.0f / (1.0f + expf(-margin)),
                                          (uint8_t)custos_pii_ner_tag_type[best]};
    st->open = 0;
}

static int is_tok(const custos_pii_ner_tok_t *t, uint32_t h)
{
    return t->kind == 2 && t->be - t->bs == 1 && t->word == h;
}

/* Tokens worth scoring: capitalised, numbers, lexicon words, and their neighbours. An all-lower-case stretch of
 * prose away from numbers is tagged O without looking up the model (most tokens of running text; this keeps the
 * tagger within the speed budget at the cost of lower-case names, see docs/models/pii.md). */
static int interesting(const custos_pii_ner_tok_t *t, size_t nt, size_t i)
{
    if (t[i].kind == 1) /* a number matters before a capitalised word or a street word ("12 Elm St", "12 main st") */
        return (i + 1 < nt && (t[i + 1].cap || t[i + 1].lex)) || (i + 2 < nt && t[i + 2].lex == 1);
    return t[i].kind == 0 && (t[i].cap || t[i].lex);
}

static int worth(const custos_pii_ner_tok_t *t, size_t nt, size_t i)
{
    if (t[i].kind == 2)
        return 0;
    return interesting(t, nt, i) || (i > 0 && interesting(t, nt, i - 1)) || (i + 1 < nt && interesting(t, nt, i + 1));
}

/* Punctuation attached on both sides ("P.O.", "Co.Ltd", "AT&T") continues an open span; any other ends it. */
static int joins(const custos_pii_ner_tok_t *t, size_t nt, size_t i)
{
    return i > 0 && i + 1 < nt && t[i - 1].be == t[i].bs && t[i].be == t[i + 1].bs && t[i + 1].kind != 2 &&
           !is_tok(&t[i], H_COMMA) && !is_tok(&t[i], H_SEMI);
}

static void decide(const custos_model_t *m, const custos_pii_ner_tok_t *t, size_t nt, size_t i, span_state_t *st,
                   custos_pii_span_t *out, size_t cap, size_t *n)
{
    if (t[i].kind == 2) { /* punctuation is not scored */
        if (st->open && is_tok(&t[i], H_DOT) && i > 0 && t[i - 1].be == t[i].bs &&
            (t[i - 1].lex == 4 || (t[i - 1].cap && t[i - 1].ce - t[i - 1].cs == 1)))
            st->last_ce = t[i].ce; /* "Inc.", the initial in "John F. Smith" belong to the span */
        else if (!joins(t, nt, i))
            close_span(st, out, cap, n);
        return;
    }
    if (!worth(t, nt, i) || t[i].lex == 5) {
        close_span(st, out, cap, n);
        return;
    }
    uint32_t f[CUSTOS_PII_NER_MAX_FEATS];
    uint32_t mask = (1u << m->h->hash_bits) - 1;
    size_t nf = custos_pii_ner_features(t, nt, i, m->h->hash_seed, mask, f);
    int32_t acc[CUSTOS_PII_NER_NTAGS] = {0};
    for (size_t k = 0; k < nf; k++) {
        const int8_t *w = m->w + (size_t)f[k] * CUSTOS_PII_NER_NTAGS;
        for (int h = 0; h < CUSTOS_PII_NER_NTAGS; h++)
            acc[h] += w[h];
    }
    float z[CUSTOS_PII_NER_NTAGS], zmax = -1e30f;
    int best = 0;
    for (int h = 0; h < CUSTOS_PII_NER_NTAGS; h++) {
        z[h] = m->h->heads[h].bias + m->h->heads[h].scale * (float)acc[h];
        if (z[h] > zmax)
            zmax = z[h], best = h;
    }
    if (!best) {
        close_span(st, out, cap, n);
        if (t[i].cap && t[i].kind == 0 && t[i].lex != 2) {
            st->o_cs = t[i].cs, st->o_ce = t[i].ce;
            for (int h = 0; h < CUSTOS_PII_NER_NTAGS; h++)
                st->o_m[h] = z[h] - z[0];
        } else
            st->o_ce = 0;
        return;
    }
    if (!st->open) {
        uint32_t cs = t[i].cs;
        if (st->o_ce && i > 0 && t[i - 1].cs == st->o_cs && t[i - 1].be < t[i].bs &&
            st->o_m[best] > -extend_margin[best])
            cs = st->o_cs;
        *st = (span_state_t){.open = 1, .cs = cs, .last_ce = t[i].cs};
    }
    st->last_ce = t[i].ce;
    for (int h = 0; h < CUSTOS_PII_NER_NTAGS; h++)
        st->p[h] += z[h] - zmax;
    st->cnt++;
}

void custos_pii_ner_tag(const custos_model_t *m, const char *text, size_t len, custos_pii_span_t *out, size_t cap,
                        size_t *n)
{
    custos_pii_ner_tok_t t[WIN];
    size_t pos = 0, cpos = 0, nt = 0, from = 0; /* tokens [from, nt) of t are not decided yet */
    span_state_t st = {0};
    *n = 0;
    for (;;) {
        size_t got = custos_pii_ner_tokenize(text, len, &pos, &cpos, t + nt, WIN - nt);
        nt += got;
        int end = pos >= len;
        size_t upto = end ? nt : nt - CTX; /* keep right context for the last tokens */
        for (size_t i = from; i < upto; i++)
            decide(m, t, nt, i, &st, out, cap, n);
        if (end)
            break;
        /* slide: keep CTX tokens of left context plus the undecided ones */
        size_t keep_from = upto - CTX;
        memmove(t, t + keep_from, (nt - keep_from) * sizeof(*t));
        nt -= keep_from;
        from = upto - keep_from;
    }
    close_span(&st, out, cap, n);
}
