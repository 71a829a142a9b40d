/* SPDX-License-Identifier: Apache-2.0
 * Single-pass structured-identifier scanner over the normalised code points (NFKC + invisible removal, with the
 * normaliser's offset map back to original code points). Every recognizer has bounded look-ahead; no backtracking. */
#include "safety/pii.h"

#include "safety/pii_ner.h"
#include "util/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTX_BEFORE 40 /* code points searched for context words before a candidate */
#define MAX_GROUPS 8
#define MAX_DIGITS 32

int custos_pii_iban_length(const char *cc);

struct custos_pii {
    char mrn[33]; /* lower-cased format; empty = none */
    size_t mrn_len;
    float min_score;
    const custos_model_t *ner; /* borrowed; NULL = no tagger */
    unsigned ner_types;        /* custos_pii_opts_t.ner_types, 0 resolved */
};

static const char *const type_names[CUSTOS_PII_NTYPES] = {
    "EMAIL", "PHONE",         "US_SSN", "CREDIT_CARD",    "IBAN",         "IP_ADDRESS",  "URL",
    "DATE",  "DATE_OF_BIRTH", "US_NPI", "US_DEA",         "MEDICARE_MBI", "US_PASSPORT", "US_DRIVER_LICENSE",
    "ZIP",   "MRN",           "PERSON", "STREET_ADDRESS", "ORGANIZATION", "LOCATION",
};

const char *custos_pii_type_name(int t)
{
    return t >= 0 && t < CUSTOS_PII_NTYPES ? type_names[t] : NULL;
}

int custos_pii_type_from_name(const char *name)
{
    for (int t = 0; t < CUSTOS_PII_NTYPES; t++)
        if (name && strcmp(name, type_names[t]) == 0)
            return t;
    return -1;
}

int custos_pii_in_phi(int t)
{
    return t >= 0 && t < CUSTOS_PII_NTYPES && t != CUSTOS_PII_ORGANIZATION && t != CUSTOS_PII_LOCATION;
}

int custos_pii_new(const custos_pii_opts_t *opts, custos_pii_t **out, char *err, size_t errlen)
{
    *out = NULL;
    custos_pii_t *p = calloc(1, sizeof(*p));
    if (!p)
        return CUSTOS_ENOMEM;
    p->min_score = opts && opts->min_score > 0 ? opts->min_score : 0.5f;
    p->ner = opts ? opts->ner : NULL;
    p->ner_types = opts && opts->ner_types ? opts->ner_types & CUSTOS_PII_NER_ALL : 0x3u;
    if (opts && opts->mrn_format) {
        size_t n = strlen(opts->mrn_format);
        if (n == 0 || n > 32 || !strpbrk(opts->mrn_format, "#A?")) {
            if (err && errlen)
                snprintf(err, errlen, "mrn_format must be 1..32 characters with at least one of # A ?");
            free(p);
            return CUSTOS_EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            char c = opts->mrn_format[i];
            p->mrn[i] = c == 'A' || c == '#' || c == '?' ? c : (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        p->mrn_len = n;
    }
    *out = p;
    return 0;
}

void custos_pii_free(custos_pii_t *p)
{
    free(p);
}

/* ---- scanning context ---- */

enum { C_PHONE, C_SSN, C_CARD, C_DOB, C_NPI, C_DEA, C_MBI, C_PASS, C_DL, C_ZIP, C_MRN, C_NEG, C_N };

typedef struct ctx_cache {
    size_t pos; /* position the distances are for; SIZE_MAX = none */
    long d[C_N];
} ctx_cache_t;

typedef struct scan {
    const uint32_t *c;
    size_t n;
    const custos_pii_t *p;
    ctx_cache_t *cache;
} scan_t;

static int isdig(uint32_t c)
{
    return c >= '0' && c <= '9';
}
static int islow(uint32_t c)
{
    return c >= 'a' && c <= 'z';
}
static int isal(uint32_t c) /* ASCII letter or digit (text is case-folded) */
{
    return isdig(c) || islow(c) || (c >= 'A' && c <= 'Z');
}
static int isword(uint32_t c)
{
    return isal(c) || (c > 127 && custos_norm_is_word(c));
}
static uint32_t at(const scan_t *s, size_t i)
{
    return i < s->n ? s->c[i] : 0;
}

static const char *const NEG[] = {
    "order",    "invoice", "isbn",      "sku",       "part",         "model",      "version", "ver",  "build",
    "tracking", "ref",     "reference", "ticket",    "issn",         "doi",        "product", "item", "catalog",
    "po",       "release", "firmware",  "serial no", "confirmation", "account no", "batch",   "lot",  NULL};
static const char *const CTX_PHONE[] = {"phone",   "tel",   "telephone", "call", "mobile", "cell",  "fax",
                                        "contact", "reach", "whatsapp",  "text", "ph",     "pager", NULL};
static const char *const CTX_SSN[] = {"ssn", "social security", "social sec", "ss#", "ss #", NULL};
static const char *const CTX_CARD[] = {"card", "credit", "visa", "mastercard", "amex", "cc", "debit", NULL};
static const char *const CTX_DOB[] = {"dob",        "d.o.b",     "date of birth", "born",
                                      "birth date", "birthdate", "birthday",      NULL};
static const char *const CTX_NPI[] = {"npi", "provider id", "national provider", NULL};
static const char *const CTX_DEA[] = {"dea", NULL};
static const char *const CTX_MBI[] = {"mbi", "medicare", "beneficiary", NULL};
static const char *const CTX_PASS[] = {"passport", NULL};
static const char *const CTX_DL[] = {"driver", "driver's", "drivers", "dl", "license", "licence", "lic", "dln", NULL};
static const char *const CTX_ZIP[] = {"zip", "zipcode", "zip code", "postal", "postcode", NULL};
static const char *const CTX_MRN[] = {
    "mrn", "medical record", "record number", "record no", "patient id", "chart", "mr#", "mr #", NULL};

static const char *const *const LISTS[C_N] = {CTX_PHONE, CTX_SSN,  CTX_CARD, CTX_DOB, CTX_NPI, CTX_DEA,
                                              CTX_MBI,   CTX_PASS, CTX_DL,   CTX_ZIP, CTX_MRN, NEG};

/* Does keyword w (lower-case ASCII) start at p and end at a word boundary? Returns its length or 0. */
static size_t kw_at(const scan_t *s, size_t p, size_t pos, const char *w)
{
    size_t k = 0;
    while (w[k] && p + k < pos && s->c[p + k] == (uint32_t)(unsigned char)w[k])
        k++;
    if (w[k] || (p + k < s->n && isal(s->c[p + k]) && isal((uint32_t)(unsigned char)w[k - 1])))
        return 0;
    return k;
}

/* Distances (code points from the end of the nearest context word to pos, -1 if none) for every context list,
 * computed once per candidate position: positive lists look CTX_BEFORE code points back; negative words 24 code
 * points back and not across a sentence end (". " after a word longer than 3 letters, or "; "). */
static const long *ctx_get(const scan_t *s, size_t pos)
{
    ctx_cache_t *cc = s->cache;
    if (cc->pos == pos)
        return cc->d;
    cc->pos = pos;
    for (int l = 0; l < C_N; l++)
        cc->d[l] = -1;
    size_t from = pos > CTX_BEFORE ? pos - CTX_BEFORE : 0, negfrom = pos > 24 ? pos - 24 : 0;
    for (size_t i = pos; i > negfrom + 1; i--)
        if ((s->c[i - 2] == '.' || s->c[i - 2] == ';') && s->c[i - 1] == ' ') {
            size_t wb = i - 2;
            while (wb > 0 && isal(s->c[wb - 1]) && i - 2 - wb <= 3)
                wb--;
            if (s->c[i - 2] == '.' && i - 2 - wb <= 3 && i - 2 > wb)
                continue; /* "no.", "tel.", "ref.": an abbreviation, not a sentence end */
            negfrom = i;
            break;
        }
    for (size_t p = pos; p-- > from;) {
        if ((p > 0 && isword(s->c[p - 1])) || s->c[p] > 127)
            continue;
        for (int l = 0; l < C_N; l++) {
            if (l == C_NEG && p < negfrom)
                continue;
            for (const char *const *w = LISTS[l]; *w; w++) {
                if ((uint32_t)(unsigned char)(*w)[0] != s->c[p])
                    continue;
                size_t wl = kw_at(s, p, pos, *w);
                if (!wl)
                    continue;
                long d = (long)(pos - p - wl);
                if (cc->d[l] < 0 || d < cc->d[l])
                    cc->d[l] = d;
            }
        }
    }
    return cc->d;
}

static long cd(const scan_t *s, size_t pos, int list)
{
    return ctx_get(s, pos)[list];
}

static float clamp(float v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

typedef struct cand {
    size_t end; /* exclusive, normalised index */
    int type;
    float score;
} cand_t;

static void offer(cand_t *best, size_t end, int type, float score)
{
    score = clamp(score);
    if (score > best->score || (score == best->score && end > best->end)) {
        best->end = end;
        best->type = type;
        best->score = score;
    }
}

/* ---- recognizers starting at word start i; each offers its candidate to best ---- */

static int is_local(uint32_t c)
{
    return isal(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static void r_email(const scan_t *s, size_t i, cand_t *best)
{
    size_t j = i;
    while (j < s->n && j - i <= 64 && is_local(s->c[j]))
        j++;
    if (j == i || at(s, j) != '@' || s->c[i] == '.' || s->c[j - 1] == '.')
        return;
    size_t d = j + 1, k = d, lastdot = 0;
    while (k < s->n && k - d < 253 && (isal(s->c[k]) || s->c[k] == '-' || (s->c[k] == '.' && isal(at(s, k + 1))))) {
        if (s->c[k] == '.')
            lastdot = k;
        k++;
    }
    if (!lastdot || k - lastdot - 1 < 2 || !isal(s->c[d]))
        return;
    for (size_t t = lastdot + 1; t < k; t++)
        if (!islow(s->c[t]) && !(s->c[t] >= 'A' && s->c[t] <= 'Z'))
            return;
    offer(best, k, CUSTOS_PII_EMAIL, 0.95f);
}

static int prefix(const scan_t *s, size_t i, const char *w)
{
    for (size_t k = 0; w[k]; k++)
        if (at(s, i + k) != (uint32_t)(unsigned char)w[k])
            return 0;
    return 1;
}

static void r_url(const scan_t *s, size_t i, cand_t *best)
{
    size_t j;
    if (prefix(s, i, "https://"))
        j = i + 8;
    else if (prefix(s, i, "http://"))
        j = i + 7;
    else if (prefix(s, i, "ftp://"))
        j = i + 6;
    else if (prefix(s, i, "www.") && isal(at(s, i + 4)))
        j = i + 4;
    else
        return;
    size_t h = j;
    while (j < s->n && j - i < 2048 && s->c[j] > ' ' && s->c[j] != '<' && s->c[j] != '>' && s->c[j] != '"' &&
           s->c[j] != '`' && s->c[j] != 0xfffd)
        j++;
    while (j > h && strchr(".,;:!?)]}'", (int)(s->c[j - 1] < 128 ? s->c[j - 1] : 'x')) && s->c[j - 1] < 128)
        j--;
    if (j > h && isal(s->c[h]))
        offer(best, j, CUSTOS_PII_URL, 0.9f);
}

/* IBAN: 2 letters, 2 digits, then alnum, optionally in space-separated groups of 4. */
static void r_iban(const scan_t *s, size_t i, cand_t *best)
{
    if (!islow(at(s, i)) || !islow(at(s, i + 1)) || !isdig(at(s, i + 2)) || !isdig(at(s, i + 3)))
        return;
    char cc[2] = {(char)s->c[i], (char)s->c[i + 1]};
    int want = custos_pii_iban_length(cc);
    if (!want)
        return;
    char b[40];
    size_t nb = 0, j = i, run = 0;
    int spaced = at(s, i + 4) == ' ';
    while (j < s->n && nb < (size_t)want) {
        uint32_t c = s->c[j];
        if (isal(c)) {
            b[nb++] = (char)c;
            run++;
            j++;
        } else if (c == ' ' && spaced && run == 4 && isal(at(s, j + 1))) {
            run = 0;
            j++;
        } else {
            break;
        }
        if (!spaced && run > 4 && nb == 4)
            spaced = 0;
    }
    if (nb != (size_t)want || isal(at(s, j)))
        return;
    if (custos_pii_iban_valid(b, nb))
        offer(best, j, CUSTOS_PII_IBAN, 0.95f);
}

/* Copies len alnum code points at i into b (upper-cased) if they are all ASCII alnum. */
static int take_alnum(const scan_t *s, size_t i, size_t len, char *b)
{
    for (size_t k = 0; k < len; k++) {
        uint32_t c = at(s, i + k);
        if (!isal(c))
            return 0;
        b[k] = (char)(islow(c) ? c - 32 : c);
    }
    b[len] = 0;
    return 1;
}

static void r_dea(const scan_t *s, size_t i, cand_t *best)
{
    char b[10];
    if (!take_alnum(s, i, 9, b) || isal(at(s, i + 9)) || !custos_pii_dea_valid(b))
        return;
    offer(best, i + 9, CUSTOS_PII_US_DEA, 0.6f + ((cd(s, i, C_DEA) >= 0) ? 0.35f : 0));
}

static void r_mbi(const scan_t *s, size_t i, cand_t *best)
{
    char b[12];
    size_t j = i, k = 0;
    while (k < 11 && j < s->n) {
        if ((k == 4 || k == 7) && s->c[j] == '-' && j > i && s->c[j - 1] != '-')
            j++;
        uint32_t c = s->c[j];
        if (!isal(c))
            return;
        b[k++] = (char)(islow(c) ? c - 32 : c);
        j++;
    }
    b[k] = 0;
    if (k != 11 || isal(at(s, j)) || at(s, j) == '-' || !custos_pii_mbi_valid(b))
        return;
    int digits = 0;
    for (int t = 0; t < 11; t++)
        digits += b[t] >= '0' && b[t] <= '9';
    if (digits < 4)
        return;
    offer(best, j, CUSTOS_PII_MEDICARE_MBI, 0.6f + ((cd(s, i, C_MBI) >= 0) ? 0.35f : 0));
}

static void r_mrn_format(const scan_t *s, size_t i, cand_t *best)
{
    const custos_pii_t *p = s->p;
    if (!p || !p->mrn_len)
        return;
    for (size_t k = 0; k < p->mrn_len; k++) {
        uint32_t c = at(s, i + k);
        char f = p->mrn[k];
        if (f == '#' ? !isdig(c) : f == 'A' ? !islow(c) : f == '?' ? !isal(c) : c != (uint32_t)(unsigned char)f)
            return;
    }
    if (isal(at(s, i + p->mrn_len)))
        return;
    offer(best, i + p->mrn_len, CUSTOS_PII_MRN, 0.9f);
}

/* Letter-prefixed ids behind a context word: passport (1 letter + 8 digits), driver's licence (1-2 letters + 4..14
 * digits). */
static void r_letter_ids(const scan_t *s, size_t i, cand_t *best)
{
    if (!islow(at(s, i)))
        return;
    size_t l = i;
    while (l < s->n && islow(s->c[l]) && l - i < 3)
        l++;
    size_t d = l;
    while (d < s->n && isdig(s->c[d]) && d - l < 15)
        d++;
    if (isal(at(s, d)) || d == l)
        return;
    size_t nl = l - i, nd = d - l;
    if (nl == 1 && nd == 8 && (cd(s, i, C_PASS) >= 0))
        offer(best, d, CUSTOS_PII_US_PASSPORT, 0.85f);
    if (nl <= 2 && nd >= 4 && nd <= 14 && nl + nd >= 6 && (cd(s, i, C_DL) >= 0))
        offer(best, d, CUSTOS_PII_US_DRIVER_LICENSE, 0.8f);
}

static const char *const MONTHS[12] = {"january", "february", "march",     "april",   "may",      "june",
                                       "july",    "august",   "september", "october", "november", "december"};

/* Month name (full or 3-letter, optional '.') at i; returns its end or 0. */
static size_t month_at(const scan_t *s, size_t i, int *mon)
{
    for (int m = 0; m < 12; m++) {
        size_t k = 0;
        while (MONTHS[m][k] && at(s, i + k) == (uint32_t)(unsigned char)MONTHS[m][k])
            k++;
        if (!MONTHS[m][k] && !isal(at(s, i + k))) {
            *mon = m + 1;
            return i + k;
        }
        if (k >= 3 && !isal(at(s, i + 3)) && (m != 4 || k == 3)) {
            *mon = m + 1;
            return at(s, i + 3) == '.' ? i + 4 : i + 3;
        }
    }
    return 0;
}

static int day_ok(unsigned y, unsigned m, unsigned d)
{
    static const unsigned char mdays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1 || d > mdays[m])
        return 0;
    return !(m == 2 && d == 29 && y && (y % 4 || (y % 100 == 0 && y % 400)));
}

/* Digits at i (up to max); returns the count and the value. */
static size_t digits_at(const scan_t *s, size_t i, size_t max, unsigned *v)
{
    size_t k = 0;
    *v = 0;
    while (k < max && isdig(at(s, i + k)))
        *v = *v * 10 + (at(s, i + k++) - '0');
    return isdig(at(s, i + k)) ? 0 : k;
}

/* Offers DATE or DATE_OF_BIRTH for [i, end) unless a time of day follows (a timestamp). */
static void offer_date(const scan_t *s, size_t i, size_t end, cand_t *best)
{
    uint32_t a = at(s, end), b = at(s, end + 1);
    if ((a == 't' && isdig(b)) || (a == ' ' && isdig(b) && (at(s, end + 2) == ':' || at(s, end + 3) == ':')))
        return;
    if (isal(a))
        return;
    if ((cd(s, i, C_DOB) >= 0))
        offer(best, end, CUSTOS_PII_DATE_OF_BIRTH, 0.9f);
    else
        offer(best, end, CUSTOS_PII_DATE, cd(s, i, C_NEG) >= 0 ? 0.2f : 0.6f);
}

static void r_text_date(const scan_t *s, size_t i, cand_t *best)
{
    int mon = 0;
    unsigned d, y;
    size_t j, k;
    if (islow(at(s, i)) && (j = month_at(s, i, &mon))) { /* March 5, 1980 */
        if (at(s, j) != ' ' || !(k = digits_at(s, j + 1, 2, &d)))
            return;
        j += 1 + k;
        if (at(s, j) == ',')
            j++;
        if (at(s, j) != ' ' || digits_at(s, j + 1, 4, &y) != 4 || y < 1900 || y > 2099 || !day_ok(y, (unsigned)mon, d))
            return;
        offer_date(s, i, j + 5, best);
    } else if (isdig(at(s, i)) && (k = digits_at(s, i, 2, &d)) && at(s, i + k) == ' ' &&
               (j = month_at(s, i + k + 1, &mon))) { /* 5 March 1980 */
        if (at(s, j) == ',')
            j++;
        if (at(s, j) != ' ' || digits_at(s, j + 1, 4, &y) != 4 || y < 1900 || y > 2099 || !day_ok(y, (unsigned)mon, d))
            return;
        offer_date(s, i, j + 5, best);
    }
}

/* ---- digit groups ---- */

typedef struct groups {
    int ng, plus, paren, glued;
    size_t gend[MAX_GROUPS]; /* normalised end index of each group */
    unsigned char glen[MAX_GROUPS];
    uint32_t sep[MAX_GROUPS]; /* separator after group k (0 = none) */
    char d[MAX_DIGITS + 1];
    size_t nd[MAX_GROUPS]; /* digits up to and including group k */
} groups_t;

static int is_sep(uint32_t c)
{
    return c == ' ' || c == '-' || c == '.' || c == '/';
}

static int parse_groups(const scan_t *s, size_t i, groups_t *g)
{
    memset(g, 0, sizeof(*g));
    size_t j = i, nd = 0;
    if (at(s, j) == '+' && isdig(at(s, j + 1))) {
        g->plus = 1;
        j++;
    }
    if (at(s, j) == '(' && isdig(at(s, j + 1))) {
        g->paren = 1;
        j++;
    }
    for (;;) {
        size_t st = j;
        while (j < s->n && isdig(s->c[j]) && j - st < 20)
            j++;
        size_t len = j - st;
        if (!len || isdig(at(s, j)) || nd + len > MAX_DIGITS)
            return 0;
        for (size_t k = st; k < j; k++)
            g->d[nd++] = (char)s->c[k];
        g->glen[g->ng] = (unsigned char)len;
        g->nd[g->ng] = nd;
        int k = g->ng++;
        if (g->paren && k == 0) {
            if (at(s, j) != ')')
                return 0;
            j++;
            g->gend[k] = j;
            if (at(s, j) == ' ' && isdig(at(s, j + 1)))
                j++;
            g->sep[k] = ' ';
            if (!isdig(at(s, j)))
                return 0;
            continue;
        }
        g->gend[k] = j;
        uint32_t c = at(s, j);
        if (is_sep(c) && isdig(at(s, j + 1)) && g->ng < MAX_GROUPS) {
            g->sep[k] = c;
            j++;
            continue;
        }
        if (is_sep(c) && isdig(at(s, j + 1)))
            return 0; /* too many groups: a long code, not an identifier */
        g->glued = isword(c) || c == '@' || c == '_' || ((c == '.' || c == '-' || c == ':') && isal(at(s, j + 1)));
        break;
    }
    g->d[nd] = 0;
    return 1;
}

static int same_seps(const groups_t *g, int k, const char *allowed)
{
    for (int t = 0; t + 1 < k; t++)
        if (g->sep[t] != g->sep[0] || !strchr(allowed, (int)g->sep[t]))
            return 0;
    return 1;
}

static unsigned gval(const groups_t *g, int k)
{
    size_t from = k ? g->nd[k - 1] : 0;
    unsigned v = 0;
    for (size_t t = from; t < g->nd[k]; t++)
        v = v * 10 + (unsigned)(g->d[t] - '0');
    return v;
}

/* Classifies the first k groups (ending at end) and offers the best reading. */
static void classify(const scan_t *s, size_t i, const groups_t *g, int k, cand_t *best)
{
    size_t end = g->gend[k - 1], nd = g->nd[k - 1];
    const char *d = g->d;
    long nd_ = cd(s, i, C_NEG);
    float pen = nd_ >= 0 ? 0.45f : 0;
    int plain = !g->plus && !g->paren;
    /* IPv4 */
    if (plain && k == 4 && same_seps(g, k, ".")) {
        char b[16];
        size_t nb = 0;
        for (size_t t = i; t < end && nb < 15; t++)
            b[nb++] = (char)s->c[t];
        if (custos_pii_ipv4_valid(b, nb))
            offer(best, end, CUSTOS_PII_IP_ADDRESS, 0.8f - pen);
    }
    /* numeric dates */
    if (plain && k == 3 && same_seps(g, k, "/-.")) {
        unsigned a = gval(g, 0), b = gval(g, 1), c = gval(g, 2);
        int ok = 0;
        if (g->glen[0] == 4 && g->glen[1] <= 2 && g->glen[2] <= 2)
            ok = a >= 1900 && a <= 2099 && day_ok(a, b, c);
        else if (g->glen[0] <= 2 && g->glen[1] <= 2 && (g->glen[2] == 4 || (g->glen[2] == 2 && g->sep[0] != '.'))) {
            unsigned y = g->glen[2] == 4 ? c : 0;
            ok = (g->glen[2] == 2 || (c >= 1900 && c <= 2099)) && (day_ok(y, a, b) || day_ok(y, b, a));
        }
        if (ok)
            offer_date(s, i, end, best);
    }
    int ssn_ctx = (cd(s, i, C_SSN) >= 0);
    /* credit card */
    if (plain && nd >= 13 && nd <= 19 && custos_pii_card_valid(d, nd)) {
        int shape = k == 1;
        if (k > 1 && same_seps(g, k, " -")) {
            shape = 1;
            for (int t = 0; t < k - 1; t++)
                shape &= g->glen[t] == 4;
            shape &= g->glen[k - 1] >= 1 && g->glen[k - 1] <= 4;
            if (k == 3 && g->glen[0] == 4 && g->glen[1] == 6 && (g->glen[2] == 5 || g->glen[2] == 4))
                shape = 1;
        }
        if (shape)
            offer(best, end, CUSTOS_PII_CREDIT_CARD, 0.8f + ((cd(s, i, C_CARD) >= 0) ? 0.15f : 0) - pen);
    }
    /* single-number ids behind context words: the nearest context word decides */
    if (plain && k == 1) {
        long dn = cd(s, i, C_NPI), dm = cd(s, i, C_MRN), dp = cd(s, i, C_PASS), dl = cd(s, i, C_DL),
             ds = ssn_ctx ? cd(s, i, C_SSN) : -1, near = -1;
        long all[5] = {dn, dm, dp, dl, ds};
        for (int t = 0; t < 5; t++)
            if (all[t] >= 0 && (near < 0 || all[t] < near))
                near = all[t];
        if (nd == 10 && custos_pii_npi_valid(d))
            offer(best, end, CUSTOS_PII_US_NPI, dn >= 0 && dn == near ? 0.9f : 0.15f);
        if (nd >= 6 && nd <= 10 && dm >= 0 && dm == near)
            offer(best, end, CUSTOS_PII_MRN, 0.85f);
        if (nd == 9 && dp >= 0 && dp == near)
            offer(best, end, CUSTOS_PII_US_PASSPORT, 0.85f);
        if (nd >= 7 && nd <= 13 && dl >= 0 && dl == near)
            offer(best, end, CUSTOS_PII_US_DRIVER_LICENSE, 0.8f);
        if (nd == 9 && ds >= 0 && ds != near)
            ssn_ctx = 0;
    }
    /* SSN */
    if (plain && nd == 9 && custos_pii_ssn_valid(d)) {
        if (k == 3 && g->glen[0] == 3 && g->glen[1] == 2 && same_seps(g, k, "- "))
            offer(best, end, CUSTOS_PII_US_SSN, (g->sep[0] == '-' ? 0.65f : 0.5f) + (ssn_ctx ? 0.3f : 0) - pen);
        else if (k == 1)
            offer(best, end, CUSTOS_PII_US_SSN, (ssn_ctx ? 0.85f : 0.1f) - pen);
    }
    /* ZIP: behind a context word or "City, ST 12345" */
    if (plain && (k == 1 || (k == 2 && g->sep[0] == '-' && g->glen[1] == 4)) && g->glen[0] == 5) {
        int st = i >= 5 && s->c[i - 1] == ' ' && islow(s->c[i - 2]) && islow(s->c[i - 3]) && s->c[i - 4] == ' ' &&
                 s->c[i - 5] == ',';
        if (st || (cd(s, i, C_ZIP) >= 0))
            offer(best, end, CUSTOS_PII_ZIP, 0.8f - pen);
    }
    /* phone numbers */
    int pctx = (cd(s, i, C_PHONE) >= 0);
    float pc = pctx ? 0.3f : 0;
    if (g->plus) {
        int nanp_ok = d[0] != '1' || (nd == 11 && d[1] >= '2' && d[4] >= '2');
        if (nd >= 8 && nd <= 15 && d[0] != '0' && nanp_ok && (k == 1 || same_seps(g, k, " -.") || g->paren))
            offer(best, end, CUSTOS_PII_PHONE, 0.75f + pc - pen);
        return;
    }
    int off = nd == 11 && d[0] == '1' ? 1 : 0; /* 1-800-... */
    if (nd - (size_t)off == 10 && d[off] >= '2' && d[off + 3] >= '2' && d[0] != '0') {
        int shaped = 0;
        if (k == 1)
            shaped = 0;
        else if (k == 3 + off && g->glen[off] == 3 && g->glen[off + 1] == 3 && g->glen[off + 2] == 4)
            shaped = g->paren || same_seps(g, k, "-. ");
        else if ((k == 2 && g->paren && g->glen[0] == 3 && g->glen[1] == 7) ||
                 (g->paren && k == 3 && g->glen[0] == 3 && g->glen[1] == 3 && g->glen[2] == 4))
            shaped = 1;
        offer(best, end, CUSTOS_PII_PHONE, (shaped ? 0.7f : 0.2f) + pc + (shaped ? 0 : pc) - pen);
    }
    if (d[0] == '0' && d[1] != '0' && (nd == 10 || nd == 11) && k >= 2 && (same_seps(g, k, " -.") || g->paren)) {
        int ok = 0;
        if (nd == 11) /* UK: 020 7946 0958, 07700 900123, 0161 496 0000 */
            ok = (k == 3 && g->glen[0] == 3 && g->glen[1] == 4) || (k == 2 && g->glen[0] == 5) ||
                 (k == 3 && g->glen[0] == 4 && g->glen[1] == 3) || (k == 2 && g->glen[0] == 4);
        else /* FR 01 23 45 67 89, DE 030 1234567 / 089 12345678 */
            ok = (k == 5 && g->glen[0] == 2 && g->glen[1] == 2 && g->glen[2] == 2 && g->glen[3] == 2) ||
                 (k == 2 && g->glen[0] >= 3 && g->glen[0] <= 5);
        if (ok)
            offer(best, end, CUSTOS_PII_PHONE, 0.65f + pc - pen);
    }
}

static void r_digits(const scan_t *s, size_t i, cand_t *best)
{
    uint32_t c = s->c[i];
    if (!isdig(c) && c != '+' && c != '(')
        return;
    groups_t g;
    if (!parse_groups(s, i, &g))
        return;
    for (int k = g.ng; k >= 1; k--) {
        if (k == g.ng ? g.glued : g.sep[k - 1] != ' ')
            continue;
        cand_t b = {0, -1, 0};
        classify(s, i, &g, k, &b);
        if (b.type >= 0 && b.score >= s->p->min_score) {
            offer(best, b.end, b.type, b.score);
            return;
        }
    }
}

/* IPv6: hex digits, ':' and '.' (embedded v4), at least two colons. */
static void r_ipv6(const scan_t *s, size_t i, cand_t *best)
{
    char b[48];
    size_t j = i, nb = 0, colons = 0;
    while (j < s->n && nb < 46) {
        uint32_t c = s->c[j];
        if (!(isdig(c) || (c >= 'a' && c <= 'f') || c == ':' || c == '.'))
            break;
        colons += c == ':';
        b[nb++] = (char)c;
        j++;
    }
    while (nb && (b[nb - 1] == '.' || (b[nb - 1] == ':' && !(nb >= 2 && b[nb - 2] == ':')))) {
        nb--;
        j--;
    }
    if (colons < 2 || isal(at(s, j)) || nb < 2)
        return;
    if (custos_pii_ipv6_valid(b, nb) && (colons >= 7 || memmem(b, nb, "::", 2)))
        offer(best, j, CUSTOS_PII_IP_ADDRESS, 0.85f);
}

static const custos_pii_t default_pii = {.min_score = 0.5f};

/* Appends the tagger's spans to out[*n..cap), drops those under min_score or overlapping a structured span
 * (out[0..*n), sorted) and restores text order (both lists are sorted, so the insertion sort moves few elements). */
static void add_ner(const custos_pii_t *p, const char *text, size_t len, custos_pii_span_t *out, size_t cap, size_t *n)
{
    size_t ns = *n, nt = 0, k = 0, w = ns;
    custos_pii_ner_tag(p->ner, text, len, out + ns, cap - ns, &nt);
    for (size_t j = ns; j < ns + nt; j++) {
        while (k < ns && out[k].end <= out[j].start)
            k++;
        if ((k < ns && out[k].start < out[j].end) || out[j].score < p->min_score ||
            !(p->ner_types & (1u << (out[j].type - CUSTOS_PII_PERSON))))
            continue; /* overlaps a structured finding, not confident, or a type not asked for */
        out[w++] = out[j];
    }
    for (size_t j = ns; j < w; j++) {
        custos_pii_span_t v = out[j];
        size_t q = j;
        while (q > 0 && out[q - 1].start > v.start) {
            out[q] = out[q - 1];
            q--;
        }
        out[q] = v;
    }
    *n = w;
}

int custos_pii_scan(const custos_pii_t *p, const char *text, size_t len, custos_safety_scratch_t *scratch,
                    custos_pii_span_t *out, size_t cap, size_t *n)
{
    *n = 0;
    custos_norm_t nm;
    int rc = custos_normalize(text, len, CUSTOS_NORM_NFKC | CUSTOS_NORM_INVISIBLE, scratch, &nm);
    if (rc < 0)
        return rc;
    ctx_cache_t cache = {.pos = SIZE_MAX};
    scan_t s = {nm.cp, nm.len, p ? p : &default_pii, &cache};
    size_t i = 0;
    while (i < s.n) {
        uint32_t c = s.c[i], prev = i ? s.c[i - 1] : ' ';
        int start = !isword(prev) && (isal(c) || c == '+' || c == '(' || c == ':');
        if (start && i >= 2 && (prev == '-' || prev == '.' || prev == '_' || prev == '/') && isword(s.c[i - 2]))
            start = isal(c) && !isdig(c); /* inside a hyphenated / dotted code (UUID, version): no numbers */
        if (!start) {
            i++;
            continue;
        }
        cand_t best = {0, -1, 0};
        r_email(&s, i, &best);
        if (best.type < 0) {
            r_url(&s, i, &best);
            r_mrn_format(&s, i, &best);
            r_iban(&s, i, &best);
            r_dea(&s, i, &best);
            r_mbi(&s, i, &best);
            r_letter_ids(&s, i, &best);
            r_text_date(&s, i, &best);
            r_ipv6(&s, i, &best);
            r_digits(&s, i, &best);
        }
        if (best.type >= 0 && best.score >= s.p->min_score && best.end > i) {
            if (*n < cap)
                out[(*n)++] = (custos_pii_span_t){nm.map[i], nm.map[best.end - 1] + 1, best.score, (uint8_t)best.type};
            i = best.end;
            continue;
        }
        /* skip the rest of this word */
        while (i < s.n && isword(s.c[i]))
            i++;
        if (i < s.n && !isword(s.c[i]))
            i++;
    }
    if (s.p->ner && *n < cap)
        add_ner(s.p, text, len, out, cap, n);
    return 0;
}
