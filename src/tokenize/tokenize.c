/* SPDX-License-Identifier: Apache-2.0
 * tiktoken-compatible BPE: rank table, pre-tokeniser, merge. See tokenize.h and docs/tokens.md. */
#include "tokenize/tokenize.h"
#include "util/err.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------- encodings ---------- */

static const char *const KIND_NAMES[CUSTOS_TOK_NKINDS] = {"o200k_base", "cl100k_base"};
/* SHA-256 of the rank files (openai/tiktoken tiktoken_ext/openai_public.py expected_hash). */
static const char *const KIND_SHA256[CUSTOS_TOK_NKINDS] = {
    "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
};
static const uint32_t KIND_NRANKS[CUSTOS_TOK_NKINDS] = {199998, 100256};

const char *custos_tok_kind_name(custos_tok_kind_t kind)
{
    return (unsigned)kind < CUSTOS_TOK_NKINDS ? KIND_NAMES[kind] : "unknown";
}

int custos_tok_kind_parse(const char *name, custos_tok_kind_t *out)
{
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        if (name && strcmp(name, KIND_NAMES[k]) == 0) {
            *out = (custos_tok_kind_t)k;
            return 0;
        }
    return CUSTOS_EINVAL;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

custos_tok_kind_t custos_tok_kind_for_model(const char *model)
{
    /* tiktoken/model.py: MODEL_PREFIX_TO_ENCODING and MODEL_TO_ENCODING, o200k entries first so that
     * "gpt-4o" is not taken for "gpt-4". */
    static const char *const o200k[] = {"o1",     "o3",         "o4",      "gpt-5",  "gpt-4.5", "gpt-4.1",
                                        "gpt-4o", "chatgpt-4o", "gpt-oss", "gpt-41", "gpt-45",  NULL};
    static const char *const cl100k[] = {
        "gpt-4", "gpt-3.5", "gpt-35", "text-embedding-ada-002", "text-embedding-3", "davinci-002", "babbage-002", NULL};
    if (!model)
        return CUSTOS_TOK_O200K;
    for (size_t i = 0; o200k[i]; i++)
        if (has_prefix(model, o200k[i]))
            return CUSTOS_TOK_O200K;
    for (size_t i = 0; cl100k[i]; i++)
        if (has_prefix(model, cl100k[i]))
            return CUSTOS_TOK_CL100K;
    return CUSTOS_TOK_O200K;
}

/* ---------- rank table ---------- */

struct custos_tok {
    custos_tok_kind_t kind;
    uint32_t nranks;
    uint8_t *blob;   /* token bytes, back to back */
    uint32_t *off;   /* per rank: offset in blob; off[nranks] = blob size */
    uint32_t *slots; /* open addressing: (hash tag << RANK_BITS) | (rank + 1); 0 = empty. 4 bytes a
                      * slot keep the table (2 MB for o200k) as cache-friendly as it can be */
    uint32_t mask;   /* slots - 1 */
    uint32_t byte_rank[256];
    uint32_t *pair_rank; /* 65536 entries: rank of every two-byte token (the most frequent lookup) */
};

static inline uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    /* multiply-xorshift over 8-byte words; tokens are short, so this is a handful of multiplies */
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n > 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    /* the last 1..8 bytes with fixed-size, possibly overlapping loads (no byte loop) */
    uint64_t w;
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        w = (uint64_t)a << 32 | b;
    } else {
        w = (uint64_t)p[0] << 16 | (uint64_t)p[n / 2] << 8 | p[n - 1];
    }
    h = (h ^ w ^ ((uint64_t)n << 59)) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 32;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 29;
    return h;
}

#define NO_RANK UINT32_MAX
#define RANK_BITS 19 /* rank + 1 <= 2^19 - 1 (o200k has 199,998 ranks) */
#define RANK_MASK ((1u << RANK_BITS) - 1)

static inline bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    if (n <= 8) { /* most tokens: compare without a call */
        uint64_t x = 0, y = 0;
        memcpy(&x, a, n);
        memcpy(&y, b, n);
        return x == y;
    }
    return memcmp(a, b, n) == 0;
}

static inline uint32_t rank_of(const custos_tok_t *t, const uint8_t *p, size_t n)
{
    if (n == 1)
        return t->byte_rank[p[0]];
    if (n == 2)
        return t->pair_rank[(unsigned)p[0] << 8 | p[1]];
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = (uint32_t)(h >> 32) & ~RANK_MASK;
    for (uint32_t i = (uint32_t)h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t s = t->slots[i];
        if (!s)
            return NO_RANK;
        if ((s & ~RANK_MASK) != tag)
            continue;
        uint32_t r = (s & RANK_MASK) - 1;
        if (t->off[r + 1] - t->off[r] == n && same_bytes(t->blob + t->off[r], p, n))
            return r;
    }
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 with '=' padding; returns the decoded length or -1. */
static long b64dec(const char *s, size_t n, uint8_t *out)
{
    if (n == 0 || n % 4)
        return -1;
    long o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64val((unsigned char)s[i + k])) < 0) {
                return -1;
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(x >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(x >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)x;
    }
    return o;
}

static int sha256_hex_matches(const char *data, size_t len, const char *want)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return 0;
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return strcmp(hex, want) == 0;
}

void custos_tok_free(custos_tok_t *t)
{
    if (!t)
        return;
    free(t->blob);
    free(t->off);
    free(t->slots);
    free(t->pair_rank);
    free(t);
}

custos_tok_kind_t custos_tok_kind(const custos_tok_t *t)
{
    return t->kind;
}

const uint8_t *custos_tok_token_bytes(const custos_tok_t *t, uint32_t id, size_t *len)
{
    if (id >= t->nranks)
        return NULL;
    *len = t->off[id + 1] - t->off[id];
    return t->blob + t->off[id];
}

int custos_tok_load(const char *dir, custos_tok_kind_t kind, custos_tok_t **out)
{
    *out = NULL;
    if ((unsigned)kind >= CUSTOS_TOK_NKINDS || !dir)
        return CUSTOS_EINVAL;
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s.tiktoken", dir, KIND_NAMES[kind]) >= sizeof(path))
        return CUSTOS_EINVAL;
    int rc = 0;
    char *data = NULL;
    custos_tok_t *t = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return CUSTOS_EIO;
    }
    long sz = ftell(f);
    if (sz <= 0 || sz > (64L << 20) || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return sz <= 0 ? CUSTOS_EIO : CUSTOS_EINVAL;
    }
    data = malloc((size_t)sz);
    if (!data) {
        fclose(f);
        return CUSTOS_ENOMEM;
    }
    size_t got = fread(data, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) {
        rc = CUSTOS_EIO;
        goto out;
    }
    if (!sha256_hex_matches(data, got, KIND_SHA256[kind])) {
        rc = CUSTOS_EINVAL;
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    t->kind = kind;
    t->nranks = KIND_NRANKS[kind];
    uint32_t nslots = 1;
    while (nslots < t->nranks * 2u)
        nslots <<= 1;
    t->mask = nslots - 1;
    t->blob = malloc(got); /* decoded bytes are shorter than their base64 */
    t->off = calloc(t->nranks + 1u, sizeof(*t->off));
    t->slots = calloc(nslots, sizeof(*t->slots));
    t->pair_rank = malloc(65536 * sizeof(*t->pair_rank));
    if (!t->blob || !t->off || !t->slots || !t->pair_rank) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    for (int b = 0; b < 256; b++)
        t->byte_rank[b] = NO_RANK;
    for (int b = 0; b < 65536; b++)
        t->pair_rank[b] = NO_RANK;
    /* Lines are "base64 SP rank LF", ranks contiguous from 0 (checked, so off[] is indexed by rank). */
    size_t pos = 0, bo = 0;
    uint32_t r = 0;
    while (pos < got) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', got - pos);
        size_t ll = nl ? (size_t)(nl - line) : got - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll == 0)
            continue;
        const char *sp = memchr(line, ' ', ll);
        if (!sp || r >= t->nranks) {
            rc = CUSTOS_EINVAL;
            goto out;
        }
        unsigned long rv = 0;
        for (const char *q = sp + 1; q < line + ll; q++) {
            if (*q < '0' || *q > '9' || rv > 1000000) {
                rc = CUSTOS_EINVAL;
                goto out;
            }
            rv = rv * 10 + (unsigned long)(*q - '0');
        }
        long n = b64dec(line, (size_t)(sp - line), t->blob + bo);
        if (n <= 0 || rv != r) {
            rc = CUSTOS_EINVAL;
            goto out;
        }
        t->off[r] = (uint32_t)bo;
        const uint8_t *tb = t->blob + bo;
        bo += (size_t)n;
        t->off[r + 1] = (uint32_t)bo;
        if (n == 1)
            t->byte_rank[tb[0]] = r;
        else if (n == 2)
            t->pair_rank[(unsigned)tb[0] << 8 | tb[1]] = r;
        uint64_t h = hash_bytes(tb, (size_t)n);
        uint32_t i = (uint32_t)h & t->mask;
        while (t->slots[i])
            i = (i + 1) & t->mask;
        t->slots[i] = ((uint32_t)(h >> 32) & ~RANK_MASK) | (r + 1);
        r++;
    }
    if (r != t->nranks) {
        rc = CUSTOS_EINVAL;
        goto out;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_rank[b] == NO_RANK) { /* every byte must be a token, or merging could not finish */
            rc = CUSTOS_EINVAL;
            goto out;
        }
    *out = t;
    t = NULL;
out:
    free(data);
    custos_tok_free(t);
    return rc;
}

/* ---------- UTF-8 ---------- */

/* Length of the well-formed sequence at s[i] (Unicode Table 3-7), or -(length of the maximal ill-formed
 * subpart) (at least 1) if it is not well-formed. */
static inline int utf8_seq(const uint8_t *s, size_t i, size_t n)
{
    uint8_t c = s[i];
    if (c < 0x80)
        return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c == 0xE0)
        need = 2, lo = 0xA0;
    else if (c == 0xED)
        need = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) /* E1..EC, EE, EF */
        need = 2;
    else if (c == 0xF0)
        need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        need = 3;
    else if (c == 0xF4)
        need = 3, hi = 0x8F;
    else
        return -1;
    for (int k = 1; k <= need; k++) {
        if (i + (size_t)k >= n)
            return -k;
        uint8_t b = s[i + (size_t)k];
        if (b < lo || b > hi)
            return -k;
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

int custos_tok_utf8_valid(const char *text, size_t len)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        if (i + 8 <= len) { /* eight ASCII bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int l = utf8_seq(s, i, len);
        if (l < 0)
            return 0;
        i += (size_t)l;
    }
    return 1;
}

/* ---------- character classes ---------- */

enum {
    C_L = 1,     /* \p{L} */
    C_N = 2,     /* \p{N} */
    C_WS = 4,    /* \s: Unicode White_Space (what Rust's regex uses) */
    C_U = 8,     /* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] */
    C_W = 16,    /* [\p{Ll}\p{Lm}\p{Lo}\p{M}] */
    C_CRLF = 32, /* \r or \n */
};

static uint8_t ascii_cls[128];
static pthread_once_t ascii_once = PTHREAD_ONCE_INIT;

static uint8_t cls_of_cat(utf8proc_category_t c)
{
    switch (c) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LT:
        return C_L | C_U;
    case UTF8PROC_CATEGORY_LL:
        return C_L | C_W;
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return C_L | C_U | C_W;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        return C_U | C_W;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return C_N;
    default:
        return 0;
    }
}

static int is_white_space(uint32_t cp)
{
    /* Unicode White_Space (PropList.txt): U+180E left it in Unicode 6.3; U+200B and U+FEFF are not in it */
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static uint8_t cls_cp(uint32_t cp)
{
    uint8_t c = cls_of_cat(utf8proc_category((utf8proc_int32_t)cp));
    if (is_white_space(cp))
        c |= C_WS;
    if (cp == '\r' || cp == '\n')
        c |= C_CRLF;
    return c;
}

static void init_ascii(void)
{
    for (uint32_t i = 0; i < 128; i++)
        ascii_cls[i] = cls_cp(i);
}

/* Class of the (well-formed) character at s[i]; *next = index after it. */
static inline uint8_t cls_at(const uint8_t *s, size_t i, size_t *next)
{
    uint8_t c = s[i];
    if (c < 0x80) {
        *next = i + 1;
        return ascii_cls[c];
    }
    uint32_t cp;
    if (c < 0xE0) {
        cp = (uint32_t)(c & 0x1F) << 6 | (s[i + 1] & 0x3F);
        *next = i + 2;
    } else if (c < 0xF0) {
        cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 | (s[i + 2] & 0x3F);
        *next = i + 3;
    } else {
        cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 | (uint32_t)(s[i + 2] & 0x3F) << 6 |
             (s[i + 3] & 0x3F);
        *next = i + 4;
    }
    return cls_cp(cp);
}

#define IS_P(c) (((c) & (C_L | C_N | C_CRLF)) == 0) /* [^\r\n\p{L}\p{N}] */
#define IS_Q(c) (((c) & (C_L | C_N | C_WS)) == 0)   /* [^\s\p{L}\p{N}] */

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) (o200k) or '(?i:[sdmt]|ll|ve|re) (cl100k, same set) at s[i]: end or i.
 * Case-insensitive as Rust's regex: 's' also matches U+017F LATIN SMALL LETTER LONG S. */
static size_t contraction(const uint8_t *s, size_t i, size_t n)
{
    if (i + 1 >= n || s[i] != '\'')
        return i;
    uint8_t a = s[i + 1] | 0x20;
    if (s[i + 1] == 0xC5 && i + 2 < n && s[i + 2] == 0xBF)
        return i + 3;
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return (s[i + 1] >= 'A' && s[i + 1] <= 'z') ? i + 2 : i;
    if (i + 2 >= n)
        return i;
    uint8_t b = s[i + 2] | 0x20;
    if (!(s[i + 1] >= 'A' && s[i + 1] <= 'z' && s[i + 2] >= 'A' && s[i + 2] <= 'z'))
        return i;
    if ((a == 'l' && b == 'l') || (a == 'v' && b == 'e') || (a == 'r' && b == 'e'))
        return i + 3;
    return i;
}

/* o200k first alternative without its prefix: [U]*[W]+ at j, backtracking U* as a regex engine would.
 * Returns the end, or SIZE_MAX if it does not match. */
static size_t run_upper_lower(const uint8_t *s, size_t j, size_t n)
{
    size_t pos = j, last_w = SIZE_MAX, nx;
    while (pos < n) {
        uint8_t c = cls_at(s, pos, &nx);
        if (!(c & C_U))
            break;
        if (c & C_W)
            last_w = pos;
        pos = nx;
    }
    size_t w_start;
    if (pos < n && (cls_at(s, pos, &nx) & C_W))
        w_start = pos;
    else if (last_w != SIZE_MAX)
        w_start = last_w;
    else
        return SIZE_MAX;
    pos = w_start;
    while (pos < n && (cls_at(s, pos, &nx) & C_W))
        pos = nx;
    return pos;
}

/* o200k second alternative without its prefix: [U]+[W]* at j, or SIZE_MAX. */
static size_t run_upper(const uint8_t *s, size_t j, size_t n)
{
    size_t pos = j, nx;
    if (pos >= n || !(cls_at(s, pos, &nx) & C_U))
        return SIZE_MAX;
    while (pos < n && (cls_at(s, pos, &nx) & C_U))
        pos = nx;
    while (pos < n && (cls_at(s, pos, &nx) & C_W))
        pos = nx;
    return pos;
}

/* Whitespace alternatives, both encodings. */
static size_t ws_piece(custos_tok_kind_t kind, const uint8_t *s, size_t i, size_t n)
{
    size_t pos = i, prev = i, last_nl = SIZE_MAX, nx, count = 0;
    while (pos < n) {
        uint8_t c = cls_at(s, pos, &nx);
        if (!(c & C_WS))
            break;
        if (c & C_CRLF)
            last_nl = pos;
        prev = pos;
        pos = nx;
        count++;
    }
    if (kind == CUSTOS_TOK_CL100K) {
        if (pos == n) /* \s++$ */
            return pos;
        if (last_nl != SIZE_MAX) /* \s*[\r\n] */
            return last_nl + 1;
        if (count >= 2) /* \s+(?!\S) */
            return prev;
        return pos; /* \s: count is 1 here */
    }
    if (last_nl != SIZE_MAX) /* \s*[\r\n]+ */
        return last_nl + 1;
    if (pos == n || count >= 2) /* \s+(?!\S) */
        return pos == n ? pos : prev;
    return pos; /* \s+ */
}

/* End of the piece that starts at i (i < n). */
static size_t next_piece(custos_tok_kind_t kind, const uint8_t *s, size_t i, size_t n)
{
    size_t i1, nx, e;
    uint8_t c0 = cls_at(s, i, &i1);
    if (kind == CUSTOS_TOK_O200K) {
        /* [^\r\n\p{L}\p{N}]?[U]*[W]+(contraction)? */
        if (IS_P(c0) && i1 < n && (e = run_upper_lower(s, i1, n)) != SIZE_MAX)
            return contraction(s, e, n);
        if ((e = run_upper_lower(s, i, n)) != SIZE_MAX)
            return contraction(s, e, n);
        /* [^\r\n\p{L}\p{N}]?[U]+[W]*(contraction)? */
        if (IS_P(c0) && i1 < n && (e = run_upper(s, i1, n)) != SIZE_MAX)
            return contraction(s, e, n);
        if ((e = run_upper(s, i, n)) != SIZE_MAX)
            return contraction(s, e, n);
    } else {
        e = contraction(s, i, n);
        if (e != i)
            return e;
        /* [^\r\n\p{L}\p{N}]?+\p{L}++ */
        size_t j = IS_P(c0) ? i1 : i;
        if (j < n && (cls_at(s, j, &nx) & C_L)) {
            j = nx;
            while (j < n && (cls_at(s, j, &nx) & C_L))
                j = nx;
            return j;
        }
    }
    if (c0 & C_N) { /* \p{N}{1,3} */
        e = i1;
        for (int k = 1; k < 3 && e < n && (cls_at(s, e, &nx) & C_N); k++)
            e = nx;
        return e;
    }
    /*  ?[^\s\p{L}\p{N}]+ then [\r\n/]* (o200k) or [\r\n]* (cl100k) */
    size_t q = SIZE_MAX;
    if (s[i] == ' ' && i1 < n && IS_Q(cls_at(s, i1, &nx)))
        q = i1;
    else if (IS_Q(c0))
        q = i;
    if (q != SIZE_MAX) {
        e = q;
        while (e < n && IS_Q(cls_at(s, e, &nx)))
            e = nx;
        while (e < n && (s[e] == '\r' || s[e] == '\n' || (kind == CUSTOS_TOK_O200K && s[e] == '/')))
            e++;
        return e;
    }
    return ws_piece(kind, s, i, n);
}

int custos_tok_split(custos_tok_kind_t kind, const char *text, size_t len,
                     int (*fn)(void *ud, size_t start, size_t end), void *ud)
{
    pthread_once(&ascii_once, init_ascii);
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t e = next_piece(kind, s, i, len);
        int rc = fn(ud, i, e);
        if (rc)
            return rc;
        i = e;
    }
    return 0;
}

/* ---------- byte-pair merge ---------- */

typedef struct {
    uint32_t *ids;
    size_t cap;
    int64_t n;
} emit_t;

static inline void emit(emit_t *o, uint32_t id)
{
    if ((size_t)o->n < o->cap)
        o->ids[o->n] = id;
    o->n++;
}

/* Pieces up to this length use the quadratic merge (fewer instructions for short ones). */
#define SMALL_PIECE 20

/* tiktoken's byte_pair_merge for short pieces: parts[i] = start offset, rk[i] = rank of the pair
 * starting at part i; merge the lowest rank, leftmost on ties, until no pair is a token. */
static void merge_small(const custos_tok_t *t, const uint8_t *p, size_t n, emit_t *o)
{
    uint32_t start[SMALL_PIECE + 1], rk[SMALL_PIECE + 1];
    size_t np = n + 1;
    for (size_t i = 0; i < np; i++) {
        start[i] = (uint32_t)i;
        rk[i] = i + 1 < n ? rank_of(t, p + i, 2) : NO_RANK;
    }
    while (np > 2) {
        uint32_t best = NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < np; i++)
            if (rk[i] < best) {
                best = rk[i];
                bi = i;
            }
        if (best == NO_RANK)
            break;
        /* remove part bi+1, then recompute the pairs that changed */
        memmove(start + bi + 1, start + bi + 2, (np - bi - 2) * sizeof(start[0]));
        memmove(rk + bi + 1, rk + bi + 2, (np - bi - 2) * sizeof(rk[0]));
        np--;
        rk[bi] = bi + 2 < np ? rank_of(t, p + start[bi], start[bi + 2] - start[bi]) : NO_RANK;
        if (bi > 0)
            rk[bi - 1] = rank_of(t, p + start[bi - 1], start[bi + 1] - start[bi - 1]);
    }
    for (size_t i = 0; i + 1 < np; i++)
        emit(o, rank_of(t, p + start[i], start[i + 1] - start[i]));
}

typedef struct {
    uint32_t rank, pos, ver;
} hent_t;

static inline bool hless(const hent_t *a, const hent_t *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void hpush(hent_t *h, size_t *hn, hent_t e)
{
    size_t i = (*hn)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!hless(&e, &h[up]))
            break;
        h[i] = h[up];
        i = up;
    }
    h[i] = e;
}

static hent_t hpop(hent_t *h, size_t *hn)
{
    hent_t top = h[0], last = h[--(*hn)];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hless(&h[c + 1], &h[c]))
            c++;
        if (!hless(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (n)
        h[i] = last;
    return top;
}

/* Same result as merge_small in O(n log n): parts form a linked list keyed by start offset; a heap holds
 * (rank, start) of candidate pairs, stale entries are skipped by version. Scratch on the stack for pieces
 * up to CUSTOS_TOK_STACK_PIECE bytes. */
static int merge_heap(const custos_tok_t *t, const uint8_t *p, size_t n, emit_t *o)
{
    uint32_t s_nxt[CUSTOS_TOK_STACK_PIECE + 1], s_prv[CUSTOS_TOK_STACK_PIECE + 1], s_ver[CUSTOS_TOK_STACK_PIECE + 1];
    hent_t s_h[CUSTOS_TOK_STACK_PIECE * 3 + 1];
    uint32_t *nxt = s_nxt, *prv = s_prv, *ver = s_ver;
    hent_t *h = s_h;
    bool heap_alloc = n > CUSTOS_TOK_STACK_PIECE;
    int rc = 0;
    if (heap_alloc) {
        nxt = malloc((n + 1) * sizeof(uint32_t));
        prv = malloc((n + 1) * sizeof(uint32_t));
        ver = malloc((n + 1) * sizeof(uint32_t));
        h = malloc((n * 3 + 1) * sizeof(hent_t)); /* n-1 initial pairs, at most 2 pushes per merge */
        if (!nxt || !prv || !ver || !h) {
            rc = CUSTOS_ENOMEM;
            goto out;
        }
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        nxt[i] = (uint32_t)(i + 1);
        prv[i] = (uint32_t)(i ? i - 1 : 0);
        ver[i] = 0;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = rank_of(t, p + i, 2);
        if (r != NO_RANK)
            hpush(h, &hn, (hent_t){r, (uint32_t)i, 0});
    }
    while (hn) {
        hent_t e = hpop(h, &hn);
        uint32_t a = e.pos;
        if (ver[a] != e.ver || nxt[a] >= n)
            continue;
        uint32_t b = nxt[a];
        /* merge a and b */
        nxt[a] = nxt[b];
        if (nxt[b] < n)
            prv[nxt[b]] = a;
        ver[a]++;
        ver[b] = UINT32_MAX; /* dead */
        if (nxt[a] < n) {
            uint32_t r = rank_of(t, p + a, nxt[nxt[a]] - a);
            if (r != NO_RANK)
                hpush(h, &hn, (hent_t){r, a, ver[a]});
        }
        if (a > 0) {
            uint32_t pa = prv[a];
            ver[pa]++;
            uint32_t r = rank_of(t, p + pa, nxt[a] - pa);
            if (r != NO_RANK)
                hpush(h, &hn, (hent_t){r, pa, ver[pa]});
        }
    }
    for (uint32_t i = 0; i < n; i = nxt[i])
        emit(o, rank_of(t, p + i, nxt[i] - i));
out:
    if (heap_alloc) {
        free(nxt);
        free(prv);
        free(ver);
        free(h);
    }
    return rc;
}

typedef struct {
    const custos_tok_t *t;
    const uint8_t *s;
    emit_t *o;
} enc_ctx_t;

static int encode_piece(void *ud, size_t a, size_t b)
{
    enc_ctx_t *c = ud;
    const uint8_t *p = c->s + a;
    size_t n = b - a;
    uint32_t r = rank_of(c->t, p, n);
    if (r != NO_RANK) {
        emit(c->o, r);
        return 0;
    }
    if (n <= SMALL_PIECE) {
        merge_small(c->t, p, n, c->o);
        return 0;
    }
    return merge_heap(c->t, p, n, c->o);
}

/* Copy of text with each maximal ill-formed subsequence replaced by U+FFFD. */
static char *sanitize(const char *text, size_t len, size_t *outlen)
{
    const uint8_t *s = (const uint8_t *)text;
    char *o = malloc(len * 3 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            o[k++] = (char)s[i++];
            continue;
        }
        int l = utf8_seq(s, i, len);
        if (l > 0) {
            memcpy(o + k, s + i, (size_t)l);
            k += (size_t)l;
            i += (size_t)l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += (size_t)-l;
        }
    }
    *outlen = k;
    return o;
}

int64_t custos_tok_encode(const custos_tok_t *t, const char *text, size_t len, uint32_t *ids, size_t cap)
{
    char *clean = NULL;
    if (!custos_tok_utf8_valid(text, len)) {
        clean = sanitize(text, len, &len);
        if (!clean)
            return CUSTOS_ENOMEM;
        text = clean;
    }
    emit_t o = {ids, ids ? cap : 0, 0};
    enc_ctx_t c = {t, (const uint8_t *)text, &o};
    int rc = custos_tok_split(t->kind, text, len, encode_piece, &c);
    free(clean);
    return rc < 0 ? rc : o.n;
}

int64_t custos_tok_count(const custos_tok_t *t, const char *text, size_t len)
{
    return custos_tok_encode(t, text, len, NULL, 0);
}
