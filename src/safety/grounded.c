/* SPDX-License-Identifier: Apache-2.0
 * Groundedness detector (grounded.h, docs/models/groundedness.md): tokenizer, sentence splitter, evidence features,
 * the model file and the logistic scorer. */
#include "safety/grounded.h"

#include "util/err.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define NF CUSTOS_GROUNDED_NFEAT
#define IDF_N (1u << CUSTOS_GROUNDED_IDF_BITS)
#define IDF_MASK (IDF_N - 1u)
#define FLAT_IDF 4.0f
#define WORD_CAP 48 /* canonical bytes hashed per word; longer words are cut */
/* Logit added in the Medical domain to a sentence whose numbers or number-unit pairs (doses) the sources lack. */
#define MEDICAL_NUM_BOOST 0.75f
/* Contradiction rule: a sentence that closely follows one source sentence (alignment >= RULE_ALIGN) yet changes a
 * number, a number-unit pair, a date word, or the negation gets this logit on top of the model's. The public training
 * sets hold few such minimal edits, so the model alone under-weighs them (docs/models/groundedness.md). */
#define RULE_ALIGN 0.75f
#define RULE_BOOST 2.5f

enum { T_STOP = 1, T_NUM = 2, T_UNIT = 4, T_NEG = 8, T_CAP = 16, T_DATE = 32, T_DOLLAR = 64 };

typedef struct tok {
    uint32_t off, len; /* bytes in the original text */
    uint32_t sent;     /* sentence index */
    uint32_t flags;
    uint64_t h, stem;
} tok_t;

typedef struct toks {
    tok_t *v;
    size_t n, cap;
} toks_t;

typedef struct sent {
    size_t start, end; /* bytes, trimmed */
    size_t t0, t1;     /* tokens */
    int neg;
} sent_t;

typedef struct sents {
    sent_t *v;
    size_t n, cap;
} sents_t;

/* ---------- hashing and word classes ---------- */

static uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return mix64(h) | 1u; /* never 0: 0 marks an empty set slot */
}

static const char *const STOP[] = {
    "a",         "an",        "the",     "and",    "or",      "but",    "if",    "of",    "to",     "in",    "on",
    "at",        "by",        "for",     "with",   "from",    "as",     "is",    "are",   "was",    "were",  "be",
    "been",      "being",     "am",      "it",     "its",     "this",   "that",  "these", "those",  "he",    "she",
    "they",      "them",      "his",     "her",    "their",   "we",     "our",   "you",   "your",   "i",     "me",
    "my",        "him",       "has",     "have",   "had",     "do",     "does",  "did",   "will",   "would", "shall",
    "should",    "can",       "could",   "may",    "might",   "must",   "so",    "than",  "then",   "there", "here",
    "which",     "who",       "whom",    "whose",  "what",    "when",   "where", "why",   "how",    "also",  "into",
    "onto",      "about",     "over",    "under",  "after",   "before", "up",    "down",  "out",    "such",  "very",
    "just",      "only",      "some",    "any",    "each",    "all",    "both",  "more",  "most",   "other", "own",
    "same",      "too",       "while",   "during", "because", "since",  "until", "s",     "t",      "said",  "says",
    "according", "including", "however", "yes",    "one's",   "via",    "per",   "upon",  "within", NULL};
static const char *const NEG[] = {"not",     "no",  "never",   "none",   "nobody", "nothing",
                                  "neither", "nor", "without", "cannot", "n't",    NULL};
static const char *const UNITS[] = {
    "mg",       "mcg",     "ug",     "g",       "kg",      "ml",       "l",       "dl",      "mmol",
    "meq",      "iu",      "units",  "unit",    "mmhg",    "bpm",      "hours",   "hour",    "hr",
    "hrs",      "h",       "days",   "day",     "weeks",   "week",     "months",  "month",   "years",
    "year",     "minutes", "minute", "min",     "mins",    "seconds",  "times",   "tablets", "tablet",
    "capsules", "capsule", "doses",  "dose",    "drops",   "puffs",    "cm",      "mm",      "km",
    "m",        "miles",   "mile",   "feet",    "foot",    "ft",       "inches",  "lbs",     "lb",
    "pounds",   "dollars", "euros",  "million", "billion", "thousand", "percent", "%",       "people",
    "daily",    "twice",   "bid",    "tid",     "qid",     "qd",       "prn",     NULL};
static const char *const DATES[] = {"january",   "february",  "march",   "april",    "may",      "june",   "july",
                                    "august",    "september", "october", "november", "december", "monday", "tuesday",
                                    "wednesday", "thursday",  "friday",  "saturday", "sunday",   "jan",    "feb",
                                    "mar",       "apr",       "jun",     "jul",      "aug",      "sep",    "sept",
                                    "oct",       "nov",       "dec",     NULL};
static const char *const NUMW[] = {"zero",     "one",      "two",      "three",   "four",    "five",
                                   "six",      "seven",    "eight",    "nine",    "ten",     "eleven",
                                   "twelve",   "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                   "eighteen", "nineteen", "twenty",   NULL};

/* Word-class table: open addressing over canonical-word hashes, built once. */
#define CLS_N 1024u
static struct {
    uint64_t h[CLS_N];
    uint32_t flags[CLS_N];
    uint64_t num[CLS_N]; /* number words: hash of the digit form */
} g_cls;
static pthread_once_t g_cls_once = PTHREAD_ONCE_INIT;

static void cls_add(const char *w, uint32_t fl, uint64_t num)
{
    uint64_t h = fnv(w, strlen(w));
    for (uint32_t i = (uint32_t)h & (CLS_N - 1);; i = (i + 1) & (CLS_N - 1)) {
        if (g_cls.h[i] == h || g_cls.h[i] == 0) {
            g_cls.h[i] = h;
            g_cls.flags[i] |= fl;
            if (num)
                g_cls.num[i] = num;
            return;
        }
    }
}

static void cls_init(void)
{
    for (int i = 0; STOP[i]; i++)
        cls_add(STOP[i], T_STOP, 0);
    for (int i = 0; NEG[i]; i++)
        cls_add(NEG[i], T_NEG, 0);
    for (int i = 0; UNITS[i]; i++)
        cls_add(UNITS[i], T_UNIT, 0);
    for (int i = 0; DATES[i]; i++)
        cls_add(DATES[i], T_DATE, 0);
    for (int i = 0; NUMW[i]; i++) {
        char d[8];
        int n = snprintf(d, sizeof(d), "%d", i);
        cls_add(NUMW[i], T_NUM, fnv(d, (size_t)n));
    }
    cls_add("$", T_DOLLAR, 0);
}

static uint32_t cls_get(uint64_t h, uint64_t *num)
{
    for (uint32_t i = (uint32_t)h & (CLS_N - 1); g_cls.h[i]; i = (i + 1) & (CLS_N - 1))
        if (g_cls.h[i] == h) {
            if (num)
                *num = g_cls.num[i];
            return g_cls.flags[i];
        }
    return 0;
}

/* ---------- tokenizer ---------- */

static int is_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* Punctuation of the General Punctuation block (U+2000..U+206F: dashes, quotes, ellipsis) and U+00A0..U+00BF
 * separate words; all other non-ASCII bytes are word characters. Returns the separator's length, else 0. */
static size_t uni_sep(const unsigned char *p, size_t left)
{
    if (left >= 3 && p[0] == 0xE2 && (p[1] == 0x80 || p[1] == 0x81))
        return 3;
    if (left >= 2 && p[0] == 0xC2 && p[1] >= 0xA0 && p[1] <= 0xBF)
        return 2;
    return 0;
}

static int apostrophe(const unsigned char *p, size_t left)
{
    if (p[0] == '\'')
        return 1;
    if (left >= 3 && p[0] == 0xE2 && p[1] == 0x80 && p[2] == 0x99)
        return 3;
    return 0;
}

static uint64_t stem_hash(const char *c, size_t n)
{
    static const char *const suf[] = {"ies", "ing", "ed", "es", "ly", "s", NULL};
    if (n > 4)
        for (int i = 0; suf[i]; i++) {
            size_t k = strlen(suf[i]);
            if (n > k + 2 && memcmp(c + n - k, suf[i], k) == 0) {
                n -= k;
                break;
            }
        }
    if (n > 6)
        n = 6;
    return mix64(fnv(c, n) ^ 0x5157ULL) | 1u;
}

/* Canonical form of word w[0..n) into c (lower-case ASCII; numbers without thousands separators and trailing
 * decimal zeros; ordinal suffixes dropped; "n't" and "'s" endings removed). Returns its length and sets *fl. */
static size_t canon(const char *w, size_t n, char *c, uint32_t *fl)
{
    size_t k = 0;
    *fl = 0;
    int digit = w[0] >= '0' && w[0] <= '9';
    for (size_t i = 0; i < n && k < WORD_CAP; i++) {
        unsigned char ch = (unsigned char)w[i];
        if (digit && ch == ',')
            continue;
        if (ch == 0xE2 && i + 2 < n && (unsigned char)w[i + 1] == 0x80 && (unsigned char)w[i + 2] == 0x99) {
            c[k++] = '\'';
            i += 2;
            continue;
        }
        c[k++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    if (digit) {
        *fl |= T_NUM;
        size_t d = 0;
        while (d < k && ((c[d] >= '0' && c[d] <= '9') || c[d] == '.'))
            d++;
        if (d < k && k - d == 2 &&
            (!memcmp(c + d, "st", 2) || !memcmp(c + d, "nd", 2) || !memcmp(c + d, "rd", 2) || !memcmp(c + d, "th", 2)))
            k = d;
        if (memchr(c, '.', k)) {
            while (k > 1 && c[k - 1] == '0')
                k--;
            if (k > 1 && c[k - 1] == '.')
                k--;
        }
        return k;
    }
    if (k > 3 && !memcmp(c + k - 3, "n't", 3)) {
        *fl |= T_NEG;
        k -= 3;
    } else if (k > 2 && !memcmp(c + k - 2, "'s", 2)) {
        k -= 2;
    }
    return k;
}

static int toks_push(toks_t *t, const tok_t *x)
{
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        tok_t *nv = realloc(t->v, nc * sizeof(*nv));
        if (!nv)
            return CUSTOS_ENOMEM;
        t->v = nv;
        t->cap = nc;
    }
    t->v[t->n++] = *x;
    return 0;
}

static void classify(tok_t *t, const char *c, size_t k, uint32_t fl, unsigned char first)
{
    t->flags = fl;
    uint64_t num = 0;
    t->h = fnv(c, k);
    uint32_t cf = fl & T_NUM ? 0 : cls_get(t->h, &num);
    t->flags |= cf;
    if ((cf & T_NUM) && num)
        t->h = num;
    if (first >= 'A' && first <= 'Z')
        t->flags |= T_CAP;
    if (t->flags & (T_NUM | T_UNIT | T_DATE | T_NEG))
        t->flags &= ~(uint32_t)T_STOP; /* "may" is a month, "no" a negation: keep them */
    t->stem = t->flags & T_NUM ? t->h : stem_hash(c, k);
}

/* Appends the tokens of s[0..n) (offsets relative to s + base). */
static int tokenize(const char *s, size_t n, size_t base, toks_t *out)
{
    size_t i = 0;
    while (i < n) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t sep = uni_sep(p, n - i);
        if (sep) {
            i += sep;
            continue;
        }
        if (*p == '%' || *p == '$') {
            tok_t t = {.off = (uint32_t)(base + i), .len = 1};
            char c = (char)*p;
            classify(&t, &c, 1, *p == '%' ? T_UNIT : 0, 0);
            if (toks_push(out, &t) < 0)
                return CUSTOS_ENOMEM;
            i++;
            continue;
        }
        if (!is_alnum(*p)) {
            i++;
            continue;
        }
        size_t j = i;
        int digit = *p >= '0' && *p <= '9';
        while (j < n) {
            const unsigned char *q = (const unsigned char *)s + j;
            if (uni_sep(q, n - j) &&
                !(apostrophe(q, n - j) == 3 && j > i && j + 3 < n && is_alnum(q[3]) && !(q[3] >= '0' && q[3] <= '9')))
                break;
            if (is_alnum(*q)) {
                j += apostrophe(q, n - j) == 3 ? 3 : 1;
                continue;
            }
            size_t a = apostrophe(q, n - j);
            if (a == 1 && j + 1 < n && is_alnum(q[1]) && !digit) {
                j++;
                continue;
            }
            if (digit && (*q == '.' || *q == ',') && j + 1 < n && q[1] >= '0' && q[1] <= '9') {
                j++;
                continue;
            }
            break;
        }
        char c[WORD_CAP];
        uint32_t fl;
        size_t k = canon(s + i, j - i, c, &fl);
        if (k > 0) {
            tok_t t = {.off = (uint32_t)(base + i), .len = (uint32_t)(j - i)};
            classify(&t, c, k, fl, *p);
            if (toks_push(out, &t) < 0)
                return CUSTOS_ENOMEM;
        }
        i = j;
    }
    return 0;
}

uint64_t custos_grounded_word_hash(const char *w, size_t n)
{
    pthread_once(&g_cls_once, cls_init);
    toks_t t = {0};
    uint64_t h = 0;
    if (tokenize(w, n, 0, &t) == 0 && t.n > 0)
        h = t.v[0].h;
    free(t.v);
    return h;
}

void custos_grounded_each_word(const char *text, size_t len, void (*fn)(void *ud, uint64_t h), void *ud)
{
    pthread_once(&g_cls_once, cls_init);
    toks_t t = {0};
    if (tokenize(text, len, 0, &t) == 0)
        for (size_t i = 0; i < t.n; i++)
            if (!(t.v[i].flags & T_STOP))
                fn(ud, t.v[i].h);
    free(t.v);
}

/* ---------- sentences ---------- */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Abbreviations whose period does not end a sentence. */
static int abbrev(const char *s, size_t wstart, size_t dot)
{
    static const char *const ab[] = {"dr",  "mr",  "mrs", "ms",     "st",   "vs",  "prof", "no",
                                     "inc", "jr",  "sr",  "approx", "fig",  "e.g", "i.e",  "mt",
                                     "gen", "col", "lt",  "sgt",    "capt", "rev", NULL};
    size_t n = dot - wstart;
    if (n == 1 && s[wstart] >= 'A' && s[wstart] <= 'Z')
        return 1; /* an initial: "J. Smith" */
    if (n == 0 || n > 6)
        return 0;
    char w[8];
    for (size_t i = 0; i < n; i++)
        w[i] = (char)(s[wstart + i] >= 'A' && s[wstart + i] <= 'Z' ? s[wstart + i] + 32 : s[wstart + i]);
    for (int i = 0; ab[i]; i++)
        if (strlen(ab[i]) == n && !memcmp(ab[i], w, n))
            return 1;
    return 0;
}

static int sents_push(sents_t *ss, size_t a, size_t b, const char *s)
{
    while (a < b && is_space((unsigned char)s[a]))
        a++;
    while (b > a && is_space((unsigned char)s[b - 1]))
        b--;
    if (a == b)
        return 0;
    if (ss->n == ss->cap) {
        size_t nc = ss->cap ? ss->cap * 2 : 32;
        sent_t *nv = realloc(ss->v, nc * sizeof(*nv));
        if (!nv)
            return CUSTOS_ENOMEM;
        ss->v = nv;
        ss->cap = nc;
    }
    ss->v[ss->n++] = (sent_t){.start = a, .end = b};
    return 0;
}

/* Splits s[0..n) into sentences: after . ! ? (and closing quotes / brackets) followed by white space, unless the
 * period ends an abbreviation or an initial; at line breaks. */
static int split(const char *s, size_t n, sents_t *out)
{
    size_t start = 0, wstart = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            if (sents_push(out, start, i, s) < 0)
                return CUSTOS_ENOMEM;
            start = i + 1;
            wstart = i + 1;
            continue;
        }
        if (is_space(c)) {
            wstart = i + 1;
            continue;
        }
        if (c != '.' && c != '!' && c != '?')
            continue;
        size_t j = i + 1;
        while (j < n &&
               (s[j] == '"' || s[j] == '\'' || s[j] == ')' || s[j] == ']' || s[j] == '.' || s[j] == '!' || s[j] == '?'))
            j++;
        if (j < n && !is_space((unsigned char)s[j]))
            continue;
        if (c == '.' && abbrev(s, wstart, i))
            continue;
        if (sents_push(out, start, j, s) < 0)
            return CUSTOS_ENOMEM;
        start = j;
        i = j > i ? j - 1 : i;
    }
    return sents_push(out, start, n, s);
}

/* ---------- hash set ---------- */

typedef struct hset {
    uint64_t *k;
    size_t mask;
} hset_t;

static int hset_init(hset_t *s, size_t n)
{
    size_t cap = 64;
    while (cap < n * 2 + 16)
        cap <<= 1;
    s->k = calloc(cap, sizeof(uint64_t));
    s->mask = cap - 1;
    return s->k ? 0 : CUSTOS_ENOMEM;
}

static void hset_add(hset_t *s, uint64_t k)
{
    k |= 1u;
    for (size_t i = k & s->mask;; i = (i + 1) & s->mask)
        if (s->k[i] == k || s->k[i] == 0) {
            s->k[i] = k;
            return;
        }
}

static int hset_has(const hset_t *s, uint64_t k)
{
    k |= 1u;
    for (size_t i = k & s->mask; s->k[i]; i = (i + 1) & s->mask)
        if (s->k[i] == k)
            return 1;
    return 0;
}

#define K_STEM(h) (mix64((h) ^ 0x7374656dULL))
#define K_BI(a, b) (mix64((a)*31u + (b) + 0x6269ULL))
#define K_PAIR(n, u) (mix64((n) ^ ((u)*7u) ^ 0x70616972ULL))

/* Number-unit pair of token i (dose, amount): the unit after it, or a dollar sign before. */
static uint64_t pair_key(const tok_t *t, size_t i, size_t t0, size_t t1)
{
    if (!(t[i].flags & T_NUM))
        return 0;
    if (i + 1 < t1 && (t[i + 1].flags & T_UNIT))
        return K_PAIR(t[i].h, t[i + 1].h);
    if (i > t0 && (t[i - 1].flags & T_DOLLAR))
        return K_PAIR(t[i].h, t[i - 1].h);
    return 0;
}

/* ---------- features ---------- */

static float idf_of(const uint8_t *idf, uint64_t h)
{
    return idf ? (float)idf[h & IDF_MASK] / 16.0f : FLAT_IDF;
}

/* Assigns tokens to sentences (tokens and sentences are both in text order). */
static void bind(sents_t *ss, toks_t *tk)
{
    size_t t = 0;
    for (size_t s = 0; s < ss->n; s++) {
        while (t < tk->n && tk->v[t].off < ss->v[s].start)
            t++;
        ss->v[s].t0 = t;
        int neg = 0;
        while (t < tk->n && tk->v[t].off < ss->v[s].end) {
            tk->v[t].sent = (uint32_t)s;
            neg |= (tk->v[t].flags & T_NEG) != 0;
            t++;
        }
        ss->v[s].t1 = t;
        ss->v[s].neg = neg;
    }
}

typedef struct ctx {
    toks_t st;   /* source tokens */
    sents_t ss;  /* source sentences (token ranges index st) */
    hset_t set;  /* words, stems, bigrams, number-unit pairs of the sources */
    hset_t qset; /* query words */
    float *acc;  /* per source sentence */
    toks_t at;   /* answer tokens */
    sents_t as;  /* answer sentences */
} ctx_t;

static void ctx_dispose(ctx_t *c)
{
    free(c->st.v);
    free(c->ss.v);
    free(c->set.k);
    free(c->qset.k);
    free(c->acc);
    free(c->at.v);
    free(c->as.v);
}

static int ctx_build(ctx_t *c, const custos_grounded_input_t *in)
{
    int rc;
    for (size_t i = 0; i < in->n_sources; i++) {
        const char *s = in->sources[i];
        size_t n = in->source_lens[i];
        size_t s0 = c->ss.n, t0 = c->st.n;
        sents_t local = {0};
        toks_t lt = {0};
        if ((rc = split(s, n, &local)) < 0 || (rc = tokenize(s, n, 0, &lt)) < 0) {
            free(local.v);
            free(lt.v);
            return rc;
        }
        bind(&local, &lt);
        for (size_t k = 0; k < local.n; k++) {
            sent_t x = local.v[k];
            x.t0 += t0;
            x.t1 += t0;
            if (c->ss.n == c->ss.cap) {
                size_t nc = c->ss.cap ? c->ss.cap * 2 : 64;
                sent_t *nv = realloc(c->ss.v, nc * sizeof(*nv));
                if (!nv) {
                    free(local.v);
                    free(lt.v);
                    return CUSTOS_ENOMEM;
                }
                c->ss.v = nv;
                c->ss.cap = nc;
            }
            c->ss.v[c->ss.n++] = x;
        }
        for (size_t k = 0; k < lt.n; k++) {
            lt.v[k].sent += (uint32_t)s0;
            if ((rc = toks_push(&c->st, &lt.v[k])) < 0) {
                free(local.v);
                free(lt.v);
                return rc;
            }
        }
        free(local.v);
        free(lt.v);
    }
    if ((rc = hset_init(&c->set, c->st.n * 4 + 1)) < 0)
        return rc;
    for (size_t s = 0; s < c->ss.n; s++) {
        const sent_t *x = &c->ss.v[s];
        for (size_t i = x->t0; i < x->t1; i++) {
            const tok_t *t = &c->st.v[i];
            hset_add(&c->set, t->h);
            hset_add(&c->set, K_STEM(t->stem));
            if (i + 1 < x->t1)
                hset_add(&c->set, K_BI(t->h, c->st.v[i + 1].h));
            uint64_t pk = pair_key(c->st.v, i, x->t0, x->t1);
            if (pk)
                hset_add(&c->set, pk);
        }
    }
    c->acc = calloc(c->ss.n + 1, sizeof(float));
    if (!c->acc)
        return CUSTOS_ENOMEM;
    toks_t qt = {0};
    if (in->task == CUSTOS_GROUNDED_QNA && in->query && (rc = tokenize(in->query, in->query_len, 0, &qt)) < 0)
        return rc;
    rc = hset_init(&c->qset, qt.n + 1);
    for (size_t i = 0; rc == 0 && i < qt.n; i++)
        if (!(qt.v[i].flags & T_STOP))
            hset_add(&c->qset, qt.v[i].h);
    free(qt.v);
    if (rc < 0)
        return rc;
    if ((rc = split(in->text, in->text_len, &c->as)) < 0 || (rc = tokenize(in->text, in->text_len, 0, &c->at)) < 0)
        return rc;
    bind(&c->as, &c->at);
    return 0;
}

/* Raw features of answer sentence s into f[NF]. */
static int sentence_features(ctx_t *c, const uint8_t *idf, size_t s, float *f)
{
    const sent_t *x = &c->as.v[s];
    const tok_t *t = c->at.v;
    size_t ntok = x->t1 - x->t0;
    size_t n_c = 0, n_found = 0, n_stem_only = 0, n_miss = 0, n_num = 0, n_num_miss = 0, n_pair = 0, n_pair_miss = 0,
           n_name = 0, n_name_miss = 0, n_date_miss = 0, n_query = 0, n_nonstop = 0;
    float idf_sum = 0, idf_found = 0, max_miss = 0;
    int neg = 0;
    /* claim content words for the alignment: small open table of (hash, idf, stamp) */
    size_t cap = 16;
    while (cap < ntok * 2 + 2)
        cap <<= 1;
    uint64_t *kh = calloc(cap, sizeof(uint64_t));
    float *kv = calloc(cap, sizeof(float));
    uint32_t *ks = calloc(cap, sizeof(uint32_t));
    if (!kh || !kv || !ks) {
        free(kh);
        free(kv);
        free(ks);
        return CUSTOS_ENOMEM;
    }
    size_t run = 0, best_run = 0, n_bi = 0;
    for (size_t i = x->t0; i < x->t1; i++) {
        const tok_t *k = &t[i];
        neg |= (k->flags & T_NEG) != 0;
        if (i + 1 < x->t1) {
            if (hset_has(&c->set, K_BI(k->h, t[i + 1].h))) {
                n_bi++;
                run++;
                if (run > best_run)
                    best_run = run;
            } else {
                run = 0;
            }
        }
        if (k->flags & (T_STOP | T_DOLLAR))
            continue;
        n_nonstop++;
        if (hset_has(&c->qset, k->h)) {
            n_query++;
            continue;
        }
        n_c++;
        float w = idf_of(idf, k->h);
        int fw = hset_has(&c->set, k->h), fs = !fw && hset_has(&c->set, K_STEM(k->stem));
        idf_sum += w;
        if (fw || fs) {
            n_found++;
            idf_found += w;
            n_stem_only += (size_t)fs;
        } else {
            n_miss++;
            if (w > max_miss)
                max_miss = w;
        }
        if (k->flags & T_NUM) {
            n_num++;
            n_num_miss += (size_t)!fw;
        }
        uint64_t pk = pair_key(t, i, x->t0, x->t1);
        if (pk) {
            n_pair++;
            n_pair_miss += (size_t)!hset_has(&c->set, pk);
        }
        if ((k->flags & T_CAP) && i > x->t0 && !(k->flags & T_NUM)) {
            n_name++;
            n_name_miss += (size_t) !(fw || fs);
        }
        if ((k->flags & T_DATE) && !fw)
            n_date_miss++;
        for (size_t j = k->h & (cap - 1);; j = (j + 1) & (cap - 1))
            if (kh[j] == 0 || kh[j] == k->h) {
                kh[j] = k->h;
                kv[j] = w;
                break;
            }
    }
    /* best-aligned source sentence: IDF mass of the claim's content words it contains */
    float best = 0;
    size_t best_s = 0;
    memset(c->acc, 0, c->ss.n * sizeof(float));
    for (size_t i = 0; i < c->st.n && n_c > 0; i++) {
        uint64_t h = c->st.v[i].h;
        for (size_t j = h & (cap - 1); kh[j]; j = (j + 1) & (cap - 1))
            if (kh[j] == h) {
                uint32_t sid = c->st.v[i].sent;
                if (ks[j] != sid + 1) {
                    ks[j] = sid + 1;
                    c->acc[sid] += kv[j];
                    if (c->acc[sid] > best) {
                        best = c->acc[sid];
                        best_s = sid;
                    }
                }
                break;
            }
    }
    free(kh);
    free(kv);
    free(ks);
    float align = idf_sum > 0 ? best / idf_sum : 1.0f;
    float idfcov = idf_sum > 0 ? idf_found / idf_sum : 1.0f;
    int src_neg = c->ss.n > 0 && best > 0 ? c->ss.v[best_s].neg : 0;
    f[0] = n_c ? (float)n_found / (float)n_c : 1.0f;
    f[1] = idfcov;
    f[2] = max_miss / 8.0f;
    f[3] = logf(1.0f + (float)n_miss);
    f[4] = n_num ? (float)n_num_miss / (float)n_num : 0.0f;
    f[5] = n_num_miss > 0;
    f[6] = n_pair_miss > 0;
    f[7] = n_name ? (float)n_name_miss / (float)n_name : 0.0f;
    f[8] = n_date_miss > 0;
    f[9] = align > 0.5f && neg != src_neg;
    f[10] = align;
    f[11] = ntok > 1 ? (float)n_bi / (float)(ntok - 1) : 1.0f;
    f[12] = ntok ? (float)(best_run + 1) / (float)ntok : 1.0f;
    f[13] = logf(1.0f + (float)ntok);
    f[14] = n_c == 0;
    f[15] = n_c ? (float)n_stem_only / (float)n_c : 0.0f;
    f[16] = n_nonstop ? (float)n_query / (float)n_nonstop : 0.0f;
    f[17] = logf(1.0f + (float)c->st.n) / 10.0f;
    f[18] = neg;
    f[19] = (idf_sum - idf_found) / 8.0f;
    f[20] = (1.0f - idfcov) * (1.0f - align);
    f[21] = logf(1.0f + (float)c->as.n);
    (void)n_pair;
    return 0;
}

static int check_input(const custos_grounded_input_t *in)
{
    if (!in || (!in->text && in->text_len) || (in->n_sources && (!in->sources || !in->source_lens)))
        return CUSTOS_EINVAL;
    if (in->text_len > CUSTOS_GROUNDED_MAX_TEXT || in->n_sources > CUSTOS_GROUNDED_MAX_SOURCES ||
        in->query_len > CUSTOS_GROUNDED_MAX_TEXT)
        return CUSTOS_ETOOBIG;
    size_t tot = 0;
    for (size_t i = 0; i < in->n_sources; i++) {
        if (!in->sources[i] && in->source_lens[i])
            return CUSTOS_EINVAL;
        tot += in->source_lens[i];
        if (tot > CUSTOS_GROUNDED_MAX_SOURCES_TOTAL)
            return CUSTOS_ETOOBIG;
    }
    return 0;
}

/* Computes the features of every scored sentence; *idx receives the answer sentence index of each row. */
static int features_ctx(ctx_t *c, const uint8_t *idf, const custos_grounded_input_t *in, float **feats, size_t **idx,
                        size_t *n_sent)
{
    pthread_once(&g_cls_once, cls_init);
    int rc = ctx_build(c, in);
    if (rc < 0)
        return rc;
    *feats = malloc((c->as.n + 1) * NF * sizeof(float));
    *idx = malloc((c->as.n + 1) * sizeof(size_t));
    if (!*feats || !*idx)
        return CUSTOS_ENOMEM;
    size_t k = 0;
    for (size_t s = 0; s < c->as.n; s++) {
        if (c->as.v[s].t1 == c->as.v[s].t0)
            continue; /* no words: nothing to ground */
        if ((rc = sentence_features(c, idf, s, *feats + k * NF)) < 0)
            return rc;
        (*idx)[k++] = s;
    }
    *n_sent = k;
    return 0;
}

int custos_grounded_features(const uint8_t *idf, const custos_grounded_input_t *in, float **feats, size_t *n_sent)
{
    *feats = NULL;
    *n_sent = 0;
    int rc = check_input(in);
    if (rc < 0)
        return rc;
    ctx_t c = {0};
    size_t *idx = NULL;
    rc = features_ctx(&c, idf, in, feats, &idx, n_sent);
    free(idx);
    ctx_dispose(&c);
    if (rc < 0) {
        free(*feats);
        *feats = NULL;
        *n_sent = 0;
    }
    return rc;
}

/* ---------- model ---------- */

typedef struct gd_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t nfeat;
    uint32_t idf_bits;
    uint32_t n_docs;
    float qna_bias; /* added to the bias for task QnA (its threshold is chosen on the QA rows) */
    float mean[NF], inv_std[NF], w[NF];
    float bias;
    uint32_t checksum; /* crc32 of the header with this field 0, then of the IDF table */
} gd_header_t;

_Static_assert(sizeof(gd_header_t) == 32 + 3 * NF * 4 + 8, "grounded header has no padding");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "model files are little-endian");

struct custos_grounded_model {
    gd_header_t h;
    uint8_t idf[IDF_N];
};

static uint32_t gd_crc(const gd_header_t *h, const uint8_t *idf)
{
    gd_header_t c = *h;
    c.checksum = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)&c, sizeof(c));
    crc = crc32(crc, idf, IDF_N);
    return (uint32_t)crc;
}

int custos_grounded_model_serialize(const custos_grounded_params_t *p, const uint8_t *idf, void **out, size_t *outlen)
{
    gd_header_t h;
    memset(&h, 0, sizeof(h));
    memcpy(h.magic, CUSTOS_GROUNDED_MAGIC, 8);
    h.version = CUSTOS_GROUNDED_VERSION;
    h.header_size = sizeof(h);
    h.nfeat = NF;
    h.idf_bits = CUSTOS_GROUNDED_IDF_BITS;
    h.n_docs = p->n_docs;
    memcpy(h.mean, p->mean, sizeof(h.mean));
    memcpy(h.inv_std, p->inv_std, sizeof(h.inv_std));
    memcpy(h.w, p->w, sizeof(h.w));
    h.bias = p->bias;
    h.qna_bias = p->qna_bias;
    h.checksum = gd_crc(&h, idf);
    unsigned char *b = malloc(sizeof(h) + IDF_N);
    if (!b)
        return CUSTOS_ENOMEM;
    memcpy(b, &h, sizeof(h));
    memcpy(b + sizeof(h), idf, IDF_N);
    *out = b;
    *outlen = sizeof(h) + IDF_N;
    return 0;
}

static int fin(float x)
{
    return isfinite(x) && fabsf(x) < 1e6f;
}

int custos_grounded_model_from_buffer(const void *buf, size_t len, custos_grounded_model_t **out, char *err,
                                      size_t errlen)
{
    *out = NULL;
    gd_header_t h;
    if (!buf || len != sizeof(h) + IDF_N) {
        snprintf(err, errlen, "grounded model: size %zu, expected %zu", len, sizeof(h) + IDF_N);
        return len > sizeof(h) + IDF_N ? CUSTOS_ETOOBIG : CUSTOS_EINVAL;
    }
    memcpy(&h, buf, sizeof(h));
    const uint8_t *idf = (const uint8_t *)buf + sizeof(h);
    if (memcmp(h.magic, CUSTOS_GROUNDED_MAGIC, 8) != 0 || h.version != CUSTOS_GROUNDED_VERSION ||
        h.header_size != sizeof(h) || h.nfeat != NF || h.idf_bits != CUSTOS_GROUNDED_IDF_BITS) {
        snprintf(err, errlen, "grounded model: bad magic, version or layout");
        return CUSTOS_EINVAL;
    }
    if (gd_crc(&h, idf) != h.checksum) {
        snprintf(err, errlen, "grounded model: checksum mismatch");
        return CUSTOS_EINVAL;
    }
    int ok = fin(h.bias) && fin(h.qna_bias);
    for (int i = 0; i < NF; i++)
        ok = ok && fin(h.mean[i]) && fin(h.inv_std[i]) && fin(h.w[i]) && h.inv_std[i] >= 0;
    if (!ok) {
        snprintf(err, errlen, "grounded model: non-finite or out-of-range parameter");
        return CUSTOS_EINVAL;
    }
    custos_grounded_model_t *m = malloc(sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return CUSTOS_ENOMEM;
    }
    m->h = h;
    memcpy(m->idf, idf, IDF_N);
    *out = m;
    return 0;
}

int custos_grounded_model_open(const char *path, custos_grounded_model_t **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return CUSTOS_EIO;
    }
    size_t cap = sizeof(gd_header_t) + IDF_N + 1;
    unsigned char *b = malloc(cap);
    if (!b) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return CUSTOS_ENOMEM;
    }
    size_t n = fread(b, 1, cap, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr) {
        snprintf(err, errlen, "%s: read error", path);
        rc = CUSTOS_EIO;
    } else {
        rc = custos_grounded_model_from_buffer(b, n, out, err, errlen);
    }
    free(b);
    return rc;
}

void custos_grounded_model_free(custos_grounded_model_t *m)
{
    free(m);
}

/* ---------- detection ---------- */

static float sentence_prob(const custos_grounded_model_t *m, const float *f, const custos_grounded_input_t *in)
{
    double z = m->h.bias + (in->task == CUSTOS_GROUNDED_QNA ? m->h.qna_bias : 0.0f);
    for (int i = 0; i < NF; i++)
        z += (double)m->h.w[i] * ((double)f[i] - m->h.mean[i]) * m->h.inv_std[i];
    if (f[10] >= RULE_ALIGN && (f[5] > 0 || f[6] > 0 || f[8] > 0 || f[9] > 0))
        z += RULE_BOOST;
    if (in->domain == CUSTOS_GROUNDED_MEDICAL && (f[5] > 0 || f[6] > 0))
        z += MEDICAL_NUM_BOOST;
    return (float)(1.0 / (1.0 + exp(-z)));
}

/* Code points and UTF-16 units of s[a..b). */
static void count_units(const char *s, size_t a, size_t b, size_t *cp, size_t *u16)
{
    size_t c = 0, u = 0;
    for (size_t i = a; i < b; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch & 0xC0) != 0x80) {
            c++;
            u += ch >= 0xF0 ? 2 : 1;
        }
    }
    *cp = c;
    *u16 = u;
}

void custos_grounded_result_dispose(custos_grounded_result_t *r)
{
    if (!r)
        return;
    free(r->spans);
    memset(r, 0, sizeof(*r));
}

int custos_grounded_detect(const custos_grounded_model_t *m, const custos_grounded_input_t *in,
                           custos_grounded_result_t *out)
{
    if (!out)
        return CUSTOS_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!m)
        return CUSTOS_EINVAL;
    int rc = check_input(in);
    if (rc < 0)
        return rc;
    ctx_t c = {0};
    float *feats = NULL;
    size_t *idx = NULL, ns = 0;
    if ((rc = features_ctx(&c, m->idf, in, &feats, &idx, &ns)) < 0)
        goto out;
    out->n_sentences = ns;
    if (ns && !(out->spans = calloc(ns, sizeof(custos_grounded_span_t)))) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    size_t pos = 0, cp_pos = 0, u16_pos = 0, total_cp = 0, bad_cp = 0;
    for (size_t k = 0; k < ns; k++) {
        const float *f = feats + k * NF;
        float p = sentence_prob(m, f, in);
        const sent_t *x = &c.as.v[idx[k]];
        size_t dcp, du;
        count_units(in->text, pos, x->start, &dcp, &du);
        cp_pos += dcp;
        u16_pos += du;
        size_t lcp, lu;
        count_units(in->text, x->start, x->end, &lcp, &lu);
        total_cp += lcp;
        if (p > out->score)
            out->score = p;
        if (p >= 0.5f) {
            custos_grounded_span_t *sp = &out->spans[out->n_spans++];
            *sp = (custos_grounded_span_t){.utf8_off = x->start,
                                           .utf8_len = x->end - x->start,
                                           .utf16_off = u16_pos,
                                           .utf16_len = lu,
                                           .cp_off = cp_pos,
                                           .cp_len = lcp,
                                           .score = p};
            bad_cp += lcp;
        }
        cp_pos += lcp;
        u16_pos += lu;
        pos = x->end;
    }
    out->detected = out->n_spans > 0;
    out->percentage = total_cp ? (float)bad_cp / (float)total_cp : 0.0f;
out:
    free(feats);
    free(idx);
    ctx_dispose(&c);
    if (rc < 0)
        custos_grounded_result_dispose(out);
    return rc;
}

void custos_grounded_write_check_json(FILE *out, const custos_grounded_result_t *r)
{
    fprintf(out, ",\"ungrounded_detected\":%s,\"ungrounded_percentage\":%.4f,\"score\":%.4f,\"details\":[",
            r->detected ? "true" : "false", (double)r->percentage, (double)r->score);
    for (size_t i = 0; i < r->n_spans; i++)
        fprintf(out, "%s{\"start\":%zu,\"end\":%zu}", i ? "," : "", r->spans[i].cp_off,
                r->spans[i].cp_off + r->spans[i].cp_len);
    fputc(']', out);
}
