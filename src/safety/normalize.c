/* SPDX-License-Identifier: Apache-2.0
 * Text normalisation for the safety classifiers (see normalize.h). Every pass keeps a map from each output code
 * point to the original code-point offset so detections can be reported in the caller's coordinates. */
#include "safety/normalize.h"

#include "util/err.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void custos_safety_scratch_init(custos_safety_scratch_t *s, size_t max_input)
{
    memset(s, 0, sizeof(*s));
    s->max_input = max_input ? max_input : CUSTOS_SAFETY_MAX_INPUT;
}

void custos_safety_scratch_dispose(custos_safety_scratch_t *s)
{
    free(s->cp);
    free(s->map);
    free(s->tcp);
    free(s->tmap);
    free(s->feat);
    free(s->fc_text);
    memset(s, 0, sizeof(*s));
}

static int grow2(uint32_t **a, uint32_t **b, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    uint32_t *na = realloc(*a, n * sizeof(uint32_t));
    if (!na)
        return CUSTOS_ENOMEM;
    *a = na;
    uint32_t *nb = realloc(*b, n * sizeof(uint32_t));
    if (!nb)
        return CUSTOS_ENOMEM;
    *b = nb;
    *cap = n;
    return 0;
}

/* Decodes one code point at s[0..n); sets *adv to the bytes consumed; returns -1 for an invalid sequence
 * (then *adv = 1). Rejects overlongs, surrogates and values above U+10FFFF. */
static int32_t decode_utf8(const unsigned char *s, size_t n, size_t *adv)
{
    unsigned c = s[0];
    *adv = 1;
    if (c < 0x80)
        return (int32_t)c;
    size_t need;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        need = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 3, cp = c & 0x07, min = 0x10000;
    else
        return -1;
    if (n < need + 1)
        return -1;
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *adv = need + 1;
    return (int32_t)cp;
}

int32_t custos_norm_decode_utf8(const unsigned char *s, size_t n, size_t *adv)
{
    return decode_utf8(s, n, adv);
}

static int is_invisible(uint32_t c)
{
    return c == 0x00ad || c == 0x034f || c == 0x061c || c == 0x115f || c == 0x1160 || c == 0x17b4 || c == 0x17b5 ||
           c == 0x180e || (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) ||
           (c >= 0x2060 && c <= 0x2064) || (c >= 0x2066 && c <= 0x206f) || c == 0x3164 || c == 0xfeff || c == 0xffa0 ||
           (c >= 0xfe00 && c <= 0xfe0f) || (c >= 0xe0000 && c <= 0xe007f);
}

/* ASCII character classes */
enum { C_WORD = 1, C_LETTER = 2, C_LEET = 4, C_SPACER = 8 };
static const unsigned char ascii_cls[128] = {
    [' '] = C_SPACER,
    ['.'] = C_SPACER,
    ['-'] = C_SPACER,
    ['_'] = C_SPACER,
    ['*'] = C_SPACER,
    ['/'] = C_SPACER,
    ['|'] = C_SPACER,
    ['+'] = C_SPACER,
    [','] = C_SPACER,
    ['~'] = C_SPACER,
    ['@'] = C_LEET,
    ['$'] = C_LEET,
    ['0'] = C_WORD | C_LEET,
    ['1'] = C_WORD | C_LEET,
    ['2'] = C_WORD,
    ['3'] = C_WORD | C_LEET,
    ['4'] = C_WORD | C_LEET,
    ['5'] = C_WORD | C_LEET,
    ['6'] = C_WORD,
    ['7'] = C_WORD | C_LEET,
    ['8'] = C_WORD,
    ['9'] = C_WORD,
#define L(c) [c] = C_WORD | C_LETTER /* NOLINT(bugprone-macro-parentheses): a designator cannot be parenthesised */
    L('a'),
    L('b'),
    L('c'),
    L('d'),
    L('e'),
    L('f'),
    L('g'),
    L('h'),
    L('i'),
    L('j'),
    L('k'),
    L('l'),
    L('m'),
    L('n'),
    L('o'),
    L('p'),
    L('q'),
    L('r'),
    L('s'),
    L('t'),
    L('u'),
    L('v'),
    L('w'),
    L('x'),
    L('y'),
    L('z'),
    L('A'),
    L('B'),
    L('C'),
    L('D'),
    L('E'),
    L('F'),
    L('G'),
    L('H'),
    L('I'),
    L('J'),
    L('K'),
    L('L'),
    L('M'),
    L('N'),
    L('O'),
    L('P'),
    L('Q'),
    L('R'),
    L('S'),
    L('T'),
    L('U'),
    L('V'),
    L('W'),
    L('X'),
    L('Y'),
    L('Z'),
#undef L
};

static int is_word_slow(uint32_t cp)
{
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_NO);
}

int custos_norm_is_word(uint32_t cp)
{
    return cp < 0x80 ? (ascii_cls[cp] & C_WORD) : is_word_slow(cp);
}

static inline int is_word(uint32_t cp)
{
    return cp < 0x80 ? (ascii_cls[cp] & C_WORD) : is_word_slow(cp);
}

static inline int is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return ascii_cls[cp] & C_LETTER;
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

/* Look-alike letters (lower case, after case folding) -> Latin. Sorted by code point for bsearch. */
static const uint32_t homoglyphs[][2] = {
    {0x0131, 'i'}, {0x0251, 'a'}, {0x0261, 'g'}, {0x03b1, 'a'}, {0x03b2, 'b'}, {0x03b3, 'y'}, {0x03b5, 'e'},
    {0x03b7, 'n'}, {0x03b9, 'i'}, {0x03ba, 'k'}, {0x03bd, 'v'}, {0x03bf, 'o'}, {0x03c1, 'p'}, {0x03c4, 't'},
    {0x03c5, 'u'}, {0x03c7, 'x'}, {0x03c9, 'w'}, {0x03f2, 'c'}, {0x03f3, 'j'}, {0x0430, 'a'}, {0x0432, 'b'},
    {0x0435, 'e'}, {0x043a, 'k'}, {0x043c, 'm'}, {0x043d, 'h'}, {0x043e, 'o'}, {0x0440, 'p'}, {0x0441, 'c'},
    {0x0442, 't'}, {0x0443, 'y'}, {0x0445, 'x'}, {0x044c, 'b'}, {0x0451, 'e'}, {0x0455, 's'}, {0x0456, 'i'},
    {0x0457, 'i'}, {0x0458, 'j'}, {0x04af, 'y'}, {0x04bb, 'h'}, {0x04cf, 'l'}, {0x0501, 'd'}, {0x051b, 'q'},
    {0x051d, 'w'},
};

static inline uint32_t homoglyph(uint32_t cp)
{
    if (cp < 0x131 || cp > 0x51d)
        return 0;
    size_t lo = 0, hi = sizeof(homoglyphs) / sizeof(homoglyphs[0]);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (homoglyphs[mid][0] == cp)
            return homoglyphs[mid][1];
        if (homoglyphs[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static inline uint32_t leet(uint32_t cp)
{
    switch (cp) {
    case '0':
        return 'o';
    case '1':
        return 'i';
    case '3':
        return 'e';
    case '4':
        return 'a';
    case '5':
        return 's';
    case '7':
        return 't';
    case '@':
        return 'a';
    case '$':
        return 's';
    default:
        return 0;
    }
}

/* Appends the NFKC + case-folded form of the code points in src[0..n) (with their maps) to the output. Works per
 * segment (one original code point plus following combining marks) so each output carries one original offset. */
static int nfkc_append(const int32_t *seg, size_t n, uint32_t orig, custos_safety_scratch_t *s, size_t *len)
{
    utf8proc_int32_t buf[128];
    utf8proc_ssize_t m = 0;
    for (size_t i = 0; i < n; i++) {
        utf8proc_ssize_t r = utf8proc_decompose_char(seg[i], buf + m, (utf8proc_ssize_t)(128 - m),
                                                     UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD, NULL);
        if (r < 0 || r > (utf8proc_ssize_t)(128 - m)) {
            buf[m] = 0xfffd; /* pathological mark sequence: keep a placeholder */
            r = 1;
        }
        m += r;
        if (m >= 120)
            break;
    }
    if (m > 1) {
        utf8proc_ssize_t r = utf8proc_normalize_utf32(buf, m, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
        if (r > 0)
            m = r;
    }
    if (grow2(&s->cp, &s->map, &s->cap, *len + (size_t)m + 1) < 0)
        return CUSTOS_ENOMEM;
    for (utf8proc_ssize_t i = 0; i < m; i++) {
        s->cp[*len] = (uint32_t)buf[i];
        s->map[*len] = orig;
        (*len)++;
    }
    return 0;
}

static int simple_lower(uint32_t *cp)
{
    if (*cp >= 'A' && *cp <= 'Z')
        *cp += 32;
    return 0;
}

/* Pass 1: decode, drop invisibles, NFKC + case fold. Output in s->cp/s->map. */
static int pass_decode(const char *text, size_t len, unsigned flags, custos_safety_scratch_t *s, custos_norm_t *out)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0, n = 0, orig = 0;
    int32_t seg[32];
    size_t segn = 0;
    uint32_t seg_orig = 0;
    int rc;
    if (grow2(&s->cp, &s->map, &s->cap, len + 16) < 0)
        return CUSTOS_ENOMEM;
    while (i < len) {
        if (segn == 0 && (flags & CUSTOS_NORM_NFKC) && i + 1 < len && p[i] < 0x80 && p[i + 1] < 0x80) {
            /* run of ASCII followed by ASCII: exactly what the ASCII fast path below does per character (no ASCII
             * character is invisible), without decoding or growing per character */
            if (grow2(&s->cp, &s->map, &s->cap, n + (len - i) + 1) < 0)
                return CUSTOS_ENOMEM;
            uint32_t *cp = s->cp, *map = s->map;
            do {
                uint32_t c = p[i++];
                cp[n] = c - 'A' < 26u ? c + 32 : c;
                map[n++] = (uint32_t)orig++;
            } while (i + 1 < len && p[i] < 0x80 && p[i + 1] < 0x80);
            continue;
        }
        size_t adv;
        int32_t c = decode_utf8(p + i, len - i, &adv);
        if (c < 0) {
            out->invalid++;
            c = 0xfffd;
        }
        i += adv;
        uint32_t o = (uint32_t)orig++;
        if ((flags & CUSTOS_NORM_INVISIBLE) && is_invisible((uint32_t)c))
            continue;
        if (!(flags & CUSTOS_NORM_NFKC)) {
            if (grow2(&s->cp, &s->map, &s->cap, n + 1) < 0)
                return CUSTOS_ENOMEM;
            s->cp[n] = (uint32_t)c;
            s->map[n++] = o;
            continue;
        }
        int ascii_next = i >= len || p[i] < 0x80;
        if (c < 0x80 && segn == 0 && ascii_next) { /* ASCII fast path */
            if (grow2(&s->cp, &s->map, &s->cap, n + 1) < 0)
                return CUSTOS_ENOMEM;
            uint32_t lc = (uint32_t)c;
            simple_lower(&lc);
            s->cp[n] = lc;
            s->map[n++] = o;
            continue;
        }
        int combining = c >= 0x300 && utf8proc_get_property(c)->combining_class != 0;
        if (segn && combining && segn < 32) {
            seg[segn++] = c;
            continue;
        }
        if (segn) {
            if ((rc = nfkc_append(seg, segn, seg_orig, s, &n)) < 0)
                return rc;
            segn = 0;
        }
        if (c < 0x80 && ascii_next) {
            if (grow2(&s->cp, &s->map, &s->cap, n + 1) < 0)
                return CUSTOS_ENOMEM;
            uint32_t lc = (uint32_t)c;
            simple_lower(&lc);
            s->cp[n] = lc;
            s->map[n++] = o;
            continue;
        }
        seg[0] = c;
        segn = 1;
        seg_orig = o;
    }
    if (segn && (rc = nfkc_append(seg, segn, seg_orig, s, &n)) < 0)
        return rc;
    out->orig_len = orig;
    out->len = n;
    return 0;
}

static inline int word_or_leet(uint32_t c)
{
    return c < 0x80 ? (ascii_cls[c] & (C_WORD | C_LEET)) : is_word_slow(c);
}

/* Pass 2 (in place): homoglyphs and leetspeak, word by word. */
static void pass_words(uint32_t *cp, size_t n, unsigned flags)
{
    size_t i = 0;
    while (i < n) {
        if (!word_or_leet(cp[i])) {
            i++;
            continue;
        }
        size_t j = i;
        size_t latin = 0, foldable = 0, other = 0, leetc = 0, digits = 0;
        while (j < n && word_or_leet(cp[j])) {
            uint32_t c = cp[j];
            if (c < 0x80) {
                unsigned k = ascii_cls[c];
                latin += (k & C_LETTER) != 0;
                leetc += (k & C_LEET) != 0;
                digits += c >= '0' && c <= '9' && !(k & C_LEET); /* digits that are not leet letters */
                j++;
                continue;
            }
            if (homoglyph(c))
                foldable++;
            else if (is_letter(c))
                other++;
            if (leet(c))
                leetc++;
            if (c >= '0' && c <= '9')
                digits++;
            j++;
        }
        if ((flags & CUSTOS_NORM_HOMOGLYPH) && foldable && (latin || !other)) {
            for (size_t k = i; k < j; k++) {
                uint32_t h = homoglyph(cp[k]);
                if (h)
                    cp[k] = h;
            }
            latin += foldable;
        }
        if ((flags & CUSTOS_NORM_LEET) && leetc && (latin || other)) {
            /* fold only words whose digits are all leet digits (so h264, covid19, b2b stay), and not ordinals such as
             * 1st, 3rd, 4th, 10th */
            size_t k = i;
            while (k < j && cp[k] >= '0' && cp[k] <= '9')
                k++;
            int ordinal = k > i && j - k == 2 &&
                          ((cp[k] == 's' && cp[k + 1] == 't') || (cp[k] == 'n' && cp[k + 1] == 'd') ||
                           (cp[k] == 'r' && cp[k + 1] == 'd') || (cp[k] == 't' && cp[k + 1] == 'h'));
            if (!ordinal && digits == 0)
                for (k = i; k < j; k++) {
                    uint32_t l = leet(cp[k]);
                    if (l)
                        cp[k] = l;
                }
        }
        i = j;
    }
}

static inline int is_spacer(uint32_t c)
{
    return c < 0x80 ? (ascii_cls[c] & C_SPACER) : c == 0xa0;
}

/* Pass 3: copy src -> dst joining runs of 3+ single letters separated by 1-3 spacer characters, then squeezing
 * runs of one code point longer than 2. Returns the output length. */
static size_t pass_squeeze(const uint32_t *cp, const uint32_t *map, size_t n, uint32_t *ocp, uint32_t *omap,
                           unsigned flags)
{
    size_t o = 0, i = 0;
    int use_leet = (flags & CUSTOS_NORM_LEET) != 0;
#define SPACED_CHAR(c) (is_letter(c) || (use_leet && leet(c)))
    while (i < n) {
        if ((flags & CUSTOS_NORM_SPACED) && SPACED_CHAR(cp[i]) && (i == 0 || !is_word(cp[i - 1])) &&
            (i + 1 >= n || !is_word(cp[i + 1]))) {
            /* count a run of single letters (a lone leet digit counts when the run has 2+ real letters) */
            size_t k = i, count = 1, letters = is_letter(cp[i]) != 0, end = i + 1;
            while (k + 1 < n) {
                size_t g = k + 1, gap = 0;
                while (g < n && gap < 4 && is_spacer(cp[g]))
                    g++, gap++;
                if (gap < 1 || gap > 3 || g >= n || !SPACED_CHAR(cp[g]) || (g + 1 < n && is_word(cp[g + 1])))
                    break;
                k = g;
                end = g + 1;
                count++;
                letters += is_letter(cp[g]) != 0;
            }
            if (count >= 3 && letters >= 2) {
                for (size_t q = i; q < end; q++)
                    if (SPACED_CHAR(cp[q])) { /* spacers are never letters or leet characters */
                        ocp[o] = is_letter(cp[q]) ? cp[q] : leet(cp[q]);
                        omap[o++] = map[q];
                    }
                i = end;
                continue;
            }
        }
        ocp[o] = cp[i];
        omap[o++] = map[i];
        i++;
    }
#undef SPACED_CHAR
    if (!(flags & CUSTOS_NORM_SQUEEZE))
        return o;
    size_t w = 0, run = 0;
    for (size_t r = 0; r < o; r++) {
        if (w > 0 && ocp[w - 1] == ocp[r])
            run++;
        else
            run = 1;
        if (run > 2)
            continue;
        ocp[w] = ocp[r];
        omap[w++] = omap[r];
    }
    return w;
}

int custos_normalize(const char *text, size_t len, unsigned flags, custos_safety_scratch_t *s, custos_norm_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!s->max_input)
        s->max_input = CUSTOS_SAFETY_MAX_INPUT;
    if (len > s->max_input)
        return CUSTOS_ETOOBIG;
    int rc = pass_decode(text, len, flags, s, out);
    if (rc < 0)
        return rc;
    size_t n = out->len;
    if (flags & (CUSTOS_NORM_HOMOGLYPH | CUSTOS_NORM_LEET))
        pass_words(s->cp, n, flags);
    if (flags & (CUSTOS_NORM_SPACED | CUSTOS_NORM_SQUEEZE)) {
        if (grow2(&s->tcp, &s->tmap, &s->tcap, n + 1) < 0)
            return CUSTOS_ENOMEM;
        n = pass_squeeze(s->cp, s->map, n, s->tcp, s->tmap, flags);
        uint32_t *t = s->cp;
        s->cp = s->tcp;
        s->tcp = t;
        t = s->map;
        s->map = s->tmap;
        s->tmap = t;
        size_t c = s->cap;
        s->cap = s->tcap;
        s->tcap = c;
    }
    out->cp = s->cp;
    out->map = s->map;
    out->len = n;
    return 0;
}

size_t custos_norm_cp_count(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0, n = 0;
    while (i < len) {
        size_t adv = 1;
        if (p[i] >= 0x80)
            (void)decode_utf8(p + i, len - i, &adv);
        i += adv;
        n++;
    }
    return n;
}

long custos_norm_to_utf8(const uint32_t *cp, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4];
        utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)cp[i], b);
        if (k <= 0)
            continue;
        if (o + (size_t)k + 1 > cap)
            return CUSTOS_ETOOBIG;
        memcpy(dst + o, b, (size_t)k);
        o += (size_t)k;
    }
    if (o + 1 > cap)
        return CUSTOS_ETOOBIG;
    dst[o] = 0;
    return (long)o;
}
