/* SPDX-License-Identifier: Apache-2.0
 * Decoding pre-pass of the prompt shields (decode.h): bounded, allocation-free decoders of base64, hex, percent
 * encoding, rot13 (when the text says so) and Unicode tag characters, plus hidden-text and exfiltration signals. */
#include "safety/decode.h"

#include <string.h>
#include <strings.h>

typedef struct sink {
    char *out;
    size_t cap, n;
} sink_t;

static void put(sink_t *s, char c)
{
    if (s->cap && s->n + 1 < s->cap)
        s->out[s->n++] = c;
}

static void put_sep(sink_t *s)
{
    if (s->n > 0 && s->out[s->n - 1] != '\n')
        put(s, '\n');
}

static int b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Mostly printable text (ASCII printable, whitespace or UTF-8 bytes)? */
static int printable(const unsigned char *p, size_t n)
{
    if (n < 4)
        return 0;
    size_t good = 0, letters = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t' || c == '\r' || c >= 0x80)
            good++;
        if (((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (c >= '0' && c <= '9'))
            letters++; /* letters or digits: hex decoded from base64 is decoded once more */
    }
    return good * 100 >= n * 95 && letters * 2 >= n;
}

/* Appends decoded[0..n) if it looks like text; returns 1 if kept. */
static int emit(sink_t *s, const unsigned char *d, size_t n)
{
    if (!printable(d, n))
        return 0;
    put_sep(s);
    for (size_t i = 0; i < n; i++)
        put(s, (char)d[i]);
    return 1;
}

#define SEG_MAX 4096 /* decoded bytes kept per segment */

static void scan(const unsigned char *t, size_t len, sink_t *s, unsigned *kinds)
{
    unsigned char tmp[SEG_MAX];
    size_t i = 0;
    while (i < len) {
        unsigned char c = t[i];
        /* Unicode tag characters: F3 A0 80..81 xx */
        if (c == 0xF3 && i + 3 < len && t[i + 1] == 0xA0 && (t[i + 2] == 0x80 || t[i + 2] == 0x81)) {
            size_t n = 0;
            while (i + 3 < len && t[i] == 0xF3 && t[i + 1] == 0xA0 && (t[i + 2] == 0x80 || t[i + 2] == 0x81)) {
                unsigned cp = ((unsigned)(t[i + 2] & 0x3f) << 6) | (t[i + 3] & 0x3f);
                if (cp >= 0x20 && cp < 0x7f && n < SEG_MAX)
                    tmp[n++] = (unsigned char)cp;
                i += 4;
            }
            if (n) {
                put_sep(s);
                for (size_t k = 0; k < n; k++)
                    put(s, (char)tmp[k]);
                *kinds |= CUSTOS_DEC_TAGS;
            }
            continue;
        }
        /* percent-encoded run: at least 3 %XX escapes within the run of non-space characters */
        if (c == '%' && i + 2 < len && hexv(t[i + 1]) >= 0 && hexv(t[i + 2]) >= 0) {
            size_t st = i;
            while (st > 0 && t[st - 1] > 0x20 && t[st - 1] < 0x7f && st + 64 > i)
                st--;
            size_t j = st, n = 0, esc = 0;
            while (j < len && t[j] > 0x20 && t[j] < 0x7f && n < SEG_MAX) {
                if (t[j] == '%' && j + 2 < len && hexv(t[j + 1]) >= 0 && hexv(t[j + 2]) >= 0) {
                    tmp[n++] = (unsigned char)(hexv(t[j + 1]) * 16 + hexv(t[j + 2]));
                    j += 3;
                    esc++;
                } else
                    tmp[n++] = t[j] == '+' ? ' ' : t[j], j++;
            }
            if (esc >= 3 && emit(s, tmp, n))
                *kinds |= CUSTOS_DEC_PERCENT;
            i = j > i ? j : i + 1;
            continue;
        }
        /* hex or base64 run */
        if (b64v(c) >= 0) {
            size_t j = i, hex = 1;
            while (j < len && (b64v(t[j]) >= 0 || t[j] == '=')) {
                if (hexv(t[j]) < 0)
                    hex = 0;
                j++;
            }
            size_t rl = j - i;
            if (hex && rl >= CUSTOS_DECODE_MIN_HEX) {
                size_t n = 0;
                for (size_t k = i; k + 1 < j && n < SEG_MAX; k += 2)
                    tmp[n++] = (unsigned char)(hexv(t[k]) * 16 + hexv(t[k + 1]));
                if (emit(s, tmp, n))
                    *kinds |= CUSTOS_DEC_HEX;
            } else if (rl >= CUSTOS_DECODE_MIN_B64) {
                size_t n = 0;
                unsigned acc = 0, bits = 0, letters = 0, digits = 0;
                for (size_t k = i; k < j && n < SEG_MAX; k++) {
                    int v = b64v(t[k]);
                    if (v < 0)
                        break;
                    if (t[k] >= '0' && t[k] <= '9')
                        digits++;
                    else
                        letters++;
                    acc = (acc << 6) | (unsigned)v;
                    bits += 6;
                    if (bits >= 8) {
                        bits -= 8;
                        tmp[n++] = (unsigned char)(acc >> bits);
                        acc &= (1u << bits) - 1;
                    }
                }
                (void)digits;
                if (letters && emit(s, tmp, n))
                    *kinds |= CUSTOS_DEC_BASE64;
            }
            i = j;
            continue;
        }
        i++;
    }
    /* rot13 only when the text names it (decoding every text would double the cost for nothing) */
    static const char *const marks[] = {"rot13", "rot-13", "rot 13", "caesar"};
    int found = 0;
    for (size_t k = 0; k + 5 <= len && !found; k++) { /* one pass; first letter checked inline: this runs per byte */
        unsigned char f = t[k] | 0x20;
        if (f != 'r' && f != 'c')
            continue;
        for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]) && !found; m++) {
            size_t ml = strlen(marks[m]);
            found =
                k + ml <= len && f == (unsigned char)marks[m][0] && strncasecmp((const char *)t + k, marks[m], ml) == 0;
        }
    }
    if (found) {
        put_sep(s);
        for (size_t k = 0; k < len && k < 4 * SEG_MAX; k++) {
            unsigned char ch = t[k];
            if ((ch >= 'a' && ch <= 'z'))
                ch = (unsigned char)('a' + (ch - 'a' + 13) % 26);
            else if (ch >= 'A' && ch <= 'Z')
                ch = (unsigned char)('A' + (ch - 'A' + 13) % 26);
            put(s, (char)ch);
        }
        *kinds |= CUSTOS_DEC_ROT13;
    }
}

size_t custos_decode_segments(const char *text, size_t len, char *out, size_t cap, unsigned *kinds)
{
    unsigned k = 0;
    sink_t s = {out, cap, 0};
    if (cap)
        out[0] = 0;
    scan((const unsigned char *)text, len, &s, &k);
    size_t from = 0;
    for (int d = 1; d < CUSTOS_DECODE_MAX_DEPTH && s.n > from; d++) {
        size_t end = s.n;
        unsigned k2 = 0;
        scan((const unsigned char *)out + from, end - from, &s, &k2);
        k |= k2 & ~(unsigned)CUSTOS_DEC_ROT13; /* a rot13 mark in decoded text is decoded once, not again */
        from = end;
    }
    if (cap)
        out[s.n] = 0;
    if (kinds)
        *kinds = k;
    return s.n;
}

/* Is the ']' at t[at] the end of a markdown image's alt text ("![...]")? */
static int image_before(const unsigned char *t, size_t at)
{
    for (size_t k = at; k > 0 && k + 512 > at; k--) {
        if (t[k - 1] == ']' && k - 1 != at)
            return 0;
        if (t[k - 1] == '[')
            return k >= 2 && t[k - 2] == '!';
    }
    return 0;
}

void custos_decode_signals(const char *text, size_t len, custos_decode_signals_t *sig)
{
    memset(sig, 0, sizeof(*sig));
    const unsigned char *t = (const unsigned char *)text;
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = t[i];
        if (c == 0xF3 && i + 3 < len && t[i + 1] == 0xA0 && (t[i + 2] == 0x80 || t[i + 2] == 0x81)) {
            sig->tag_chars++;
            run++;
            i += 4;
        } else if ((c == 0xE2 && i + 2 < len &&
                    ((t[i + 1] == 0x80 && t[i + 2] >= 0x8B && t[i + 2] <= 0x8F) ||
                     (t[i + 1] == 0x81 && t[i + 2] >= 0xA0 && t[i + 2] <= 0xA4))) ||
                   (c == 0xEF && i + 2 < len && t[i + 1] == 0xBB && t[i + 2] == 0xBF)) {
            run++; /* U+200B..200F, U+2060..2064, U+FEFF */
            i += 3;
        } else {
            run = 0;
            if (c == ']' && i + 9 < len && t[i + 1] == '(' && image_before(t, i) &&
                (strncasecmp(text + i + 2, "http://", 7) == 0 || strncasecmp(text + i + 2, "https://", 8) == 0)) {
                size_t j = i + 2;
                int q = 0;
                while (j < len && t[j] != ')' && t[j] > 0x20 && j < i + 2048) {
                    if (t[j] == '?' || (q && t[j] == '='))
                        q++;
                    j++;
                }
                if (q >= 2)
                    sig->exfil_links++;
            } else if (((c | 0x20) == 'd' && i + 12 <= len && strncasecmp(text + i, "display:none", 12) == 0) ||
                       ((c | 0x20) == 'f' && i + 11 <= len && strncasecmp(text + i, "font-size:0", 11) == 0) ||
                       ((c | 0x20) == 'c' && i + 11 <= len &&
                        (strncasecmp(text + i, "color:white", 11) == 0 ||
                         strncasecmp(text + i, "color:#fff", 10) == 0))) {
                sig->hidden_html++;
            }
            i++;
        }
        if (run > sig->zw_run_max)
            sig->zw_run_max = run;
    }
}
