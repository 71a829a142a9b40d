/* SPDX-License-Identifier: Apache-2.0
 * Blocklists on Vectorscan. Two texts are scanned, so a set holds two pattern databases:
 *  - "norm": normalised terms as literals, matched against the normalised text (block mode; streams re-normalise a
 *    bounded carry-over window because normalisation looks at neighbouring characters);
 *  - "raw": regexes and raw terms (escaped to regexes with \b for whole words), matched against the original text
 *    (repaired to valid UTF-8), compiled twice: block mode and stream mode (so regexes of any length span chunks).
 * Pattern ids are global item indexes. Vectorscan has no backtracking, so no regex can blow up. */
#include "safety/blocklist.h"
#include "util/err.h"

#include <hs/hs.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct item {
    char *id, *text;
    unsigned flags;
    uint32_t list;
    uint32_t nlen; /* normalised terms: bytes of the normalised literal */
    bool lw, rw;   /* normalised whole-word terms: boundary needed on the left / right */
} item_t;

struct custos_blocklists {
    atomic_uint refs;
    uint64_t serial;
    char **names;
    uint32_t *order; /* list indexes sorted by name */
    size_t nlists;
    item_t *items;
    size_t nitems;
    hs_database_t *norm_db, *raw_db, *raw_sdb;
    size_t bytes;
    size_t carry; /* stream carry-over for normalised terms: 8 bytes per character of the longest term + 32 */
};

static atomic_uint_fast64_t g_serial = 1;

#define RAW_FLAGS (HS_FLAG_CASELESS | HS_FLAG_UTF8 | HS_FLAG_UCP | HS_FLAG_SOM_LEFTMOST)
#define TERM_FLAGS (HS_FLAG_CASELESS | HS_FLAG_UTF8 | HS_FLAG_SOM_LEFTMOST)
#define STREAM_MODE (HS_MODE_STREAM | HS_MODE_SOM_HORIZON_LARGE)

/* ---------- UTF-8 ---------- */

/* The normaliser's decoder (same rules, so code point counts agree with custos_normalize's map). */
static inline int32_t dec(const unsigned char *s, size_t n, size_t *adv)
{
    return custos_norm_decode_utf8(s, n, adv);
}

/* Bytes at the end of s[0..n) that are an incomplete (but so far valid) sequence: 0..3. */
static size_t partial_tail(const unsigned char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned c = s[n - k];
        if ((c & 0xc0) == 0x80)
            continue;
        size_t need = (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
        return need > k ? k : 0;
    }
    return 0;
}

static bool valid_utf8(const char *s, size_t n, size_t *ncp)
{
    size_t i = 0, k = 0;
    while (i < n) {
        size_t adv;
        if (dec((const unsigned char *)s + i, n - i, &adv) < 0)
            return false;
        i += adv;
        k++;
    }
    *ncp = k;
    return true;
}

/* ---------- scratch ---------- */

void custos_blocklist_scratch_init(custos_blocklist_scratch_t *s)
{
    memset(s, 0, sizeof(*s));
    custos_safety_scratch_init(&s->norm, 0);
}

void custos_blocklist_scratch_dispose(custos_blocklist_scratch_t *s)
{
    if (!s)
        return;
    if (s->hs)
        hs_free_scratch(s->hs);
    custos_safety_scratch_dispose(&s->norm);
    free(s->u8);
    free(s->u8cp);
    free(s->cpbyte);
    free(s->sel);
    free(s->seen);
    memset(s, 0, sizeof(*s));
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return CUSTOS_ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

/* u8 and u8cp share one capacity (elements). */
static int grow_u8(custos_blocklist_scratch_t *s, size_t need)
{
    if (need <= s->u8cap)
        return 0;
    size_t n = s->u8cap ? s->u8cap : 256;
    while (n < need)
        n *= 2;
    char *a = realloc(s->u8, n);
    if (!a)
        return CUSTOS_ENOMEM;
    s->u8 = a;
    uint32_t *b = realloc(s->u8cp, n * sizeof(uint32_t));
    if (!b)
        return CUSTOS_ENOMEM;
    s->u8cp = b;
    s->u8cap = n;
    return 0;
}

static int prepare(const custos_blocklists_t *set, custos_blocklist_scratch_t *s)
{
    if (s->hs && s->hs_serial == set->serial)
        return 0;
    hs_database_t *dbs[3] = {set->norm_db, set->raw_db, set->raw_sdb};
    for (int i = 0; i < 3; i++)
        if (dbs[i] && hs_alloc_scratch(dbs[i], &s->hs) != HS_SUCCESS)
            return CUSTOS_ENOMEM;
    s->hs_serial = set->serial;
    return 0;
}

/* ---------- building ---------- */

static void set_free(custos_blocklists_t *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->nlists; i++)
        free(set->names[i]);
    free(set->names);
    free(set->order);
    for (size_t i = 0; i < set->nitems; i++) {
        free(set->items[i].id);
        free(set->items[i].text);
    }
    free(set->items);
    hs_free_database(set->norm_db);
    hs_free_database(set->raw_db);
    hs_free_database(set->raw_sdb);
    free(set);
}

custos_blocklists_t *custos_blocklists_ref(custos_blocklists_t *set)
{
    if (set)
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void custos_blocklists_unref(custos_blocklists_t *set)
{
    if (set && atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
        set_free(set);
}

size_t custos_blocklists_count(const custos_blocklists_t *set)
{
    return set ? set->nlists : 0;
}

size_t custos_blocklists_items(const custos_blocklists_t *set)
{
    return set ? set->nitems : 0;
}

size_t custos_blocklists_bytes(const custos_blocklists_t *set)
{
    return set ? set->bytes : 0;
}

static int cmp_order(const void *a, const void *b, void *arg)
{
    const custos_blocklists_t *set = arg;
    return strcmp(set->names[*(const uint32_t *)a], set->names[*(const uint32_t *)b]);
}

static long find_list(const custos_blocklists_t *set, const char *name)
{
    size_t lo = 0, hi = set->nlists;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(set->names[set->order[mid]], name);
        if (c == 0)
            return (long)set->order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

bool custos_blocklists_has(const custos_blocklists_t *set, const char *name)
{
    return set && name && find_list(set, name) >= 0;
}

static bool ascii_word(int32_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* The regex for a raw term: ASCII punctuation escaped, other bytes literal, \b at ASCII word edges (Vectorscan has
 * no \b in UCP mode, so raw terms compile without UCP: their word boundaries are ASCII ones). */
static int raw_term_regex(const char *t, size_t n, unsigned flags, char **out)
{
    char *r = malloc(n * 4 + 8);
    if (!r)
        return CUSTOS_ENOMEM;
    size_t o = 0, adv;
    const unsigned char *u = (const unsigned char *)t;
    int32_t first = dec(u, n, &adv), last = 0;
    for (size_t i = 0; i < n; i += adv)
        last = dec(u + i, n - i, &adv);
    bool ww = flags & CUSTOS_BLOCKLIST_WHOLE_WORD;
    if (ww && ascii_word(first))
        o += (size_t)sprintf(r + o, "\\b");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        if (c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            r[o++] = (char)c;
        else
            o += (size_t)sprintf(r + o, "\\x%02x", c);
    }
    if (ww && ascii_word(last))
        o += (size_t)sprintf(r + o, "\\b");
    r[o] = 0;
    *out = r;
    return 0;
}

__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int check_text(const char *text, size_t len, char *err, size_t errlen)
{
    size_t ncp = 0;
    if (len == 0) {
        errf(err, errlen, "the item text is empty");
        return CUSTOS_EINVAL;
    }
    if (memchr(text, 0, len) || !valid_utf8(text, len, &ncp)) {
        errf(err, errlen, "the item text is not valid UTF-8 (or contains NUL)");
        return CUSTOS_EINVAL;
    }
    if (ncp > CUSTOS_BLOCKLIST_MAX_ITEM_CHARS) {
        errf(err, errlen, "the item text is longer than %d characters", CUSTOS_BLOCKLIST_MAX_ITEM_CHARS);
        return CUSTOS_EINVAL;
    }
    return 0;
}

/* Flags for a regex: Unicode classes (UCP), unless the pattern needs what Vectorscan offers only without them
 * (\b, \B: then word boundaries are ASCII ones). */
static unsigned regex_flags(const char *re)
{
    hs_expr_info_t *info = NULL;
    hs_compile_error_t *ce = NULL;
    if (hs_expression_info(re, RAW_FLAGS, &info, &ce) == HS_SUCCESS) {
        free(info);
        return RAW_FLAGS;
    }
    hs_free_compile_error(ce);
    return RAW_FLAGS & ~(unsigned)HS_FLAG_UCP;
}

/* Compiles one regex in both modes to learn whether Vectorscan supports it. */
static int check_regex(const char *re, char *err, size_t errlen)
{
    hs_database_t *db = NULL;
    hs_compile_error_t *ce = NULL;
    unsigned flags = regex_flags(re);
    for (int m = 0; m < 2; m++) {
        if (hs_compile(re, flags, m ? STREAM_MODE : HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
            /* Vectorscan's messages name the construct and an index, never the pattern text */
            errf(err, errlen, "unsupported or invalid regex: %s", ce && ce->message ? ce->message : "error");
            hs_free_compile_error(ce);
            return CUSTOS_EINVAL;
        }
        hs_free_database(db);
        db = NULL;
    }
    return 0;
}

static bool is_space(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0xa0 || c == 0x2028 ||
           c == 0x2029 || c == 0x3000 || (c >= 0x2000 && c <= 0x200a);
}

/* Writes normalised code points as UTF-8 with every run of white space as one ' ' (so "bad   word" matches the
 * term "bad word"); cpidx[b] (if not NULL) receives the code point index of byte b. dst needs n * 4 bytes. */
static size_t emit_norm(const custos_norm_t *n, char *dst, uint32_t *cpidx)
{
    size_t o = 0;
    bool prev_space = false;
    for (size_t i = 0; i < n->len; i++) {
        uint32_t c = n->cp[i];
        if (is_space(c)) {
            if (prev_space)
                continue;
            c = ' ';
        }
        prev_space = c == ' ';
        unsigned char b[4];
        int k;
        if (c < 0x80) {
            b[0] = (unsigned char)c;
            k = 1;
        } else if (c < 0x800) {
            b[0] = (unsigned char)(0xc0 | (c >> 6));
            b[1] = (unsigned char)(0x80 | (c & 0x3f));
            k = 2;
        } else if (c < 0x10000) {
            b[0] = (unsigned char)(0xe0 | (c >> 12));
            b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            b[2] = (unsigned char)(0x80 | (c & 0x3f));
            k = 3;
        } else {
            b[0] = (unsigned char)(0xf0 | (c >> 18));
            b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
            b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            b[3] = (unsigned char)(0x80 | (c & 0x3f));
            k = 4;
        }
        for (int j = 0; j < k; j++) {
            dst[o] = (char)b[j];
            if (cpidx)
                cpidx[o] = (uint32_t)i;
            o++;
        }
    }
    return o;
}

/* Normalises term into a malloc'd UTF-8 literal; sets lw/rw from its first and last code points. */
static int norm_term(const char *text, size_t len, unsigned flags, custos_safety_scratch_t *ns, char **out,
                     uint32_t *olen, bool *lw, bool *rw)
{
    custos_norm_t n;
    int rc = custos_normalize(text, len, CUSTOS_NORM_ALL, ns, &n);
    if (rc < 0)
        return rc;
    if (n.len == 0)
        return CUSTOS_EINVAL;
    size_t cap = n.len * 4 + 1;
    char *u = malloc(cap);
    if (!u)
        return CUSTOS_ENOMEM;
    size_t k = emit_norm(&n, u, NULL);
    if (k == 0) {
        free(u);
        return CUSTOS_EINVAL;
    }
    bool ww = flags & CUSTOS_BLOCKLIST_WHOLE_WORD;
    *lw = ww && custos_norm_is_word(n.cp[0]);
    *rw = ww && custos_norm_is_word(n.cp[n.len - 1]);
    *out = u;
    *olen = (uint32_t)k;
    return 0;
}

int custos_blocklist_item_check(const char *text, size_t len, unsigned flags, char *err, size_t errlen)
{
    int rc = check_text(text, len, err, errlen);
    if (rc < 0)
        return rc;
    if (flags & CUSTOS_BLOCKLIST_REGEX) {
        char *re = strndup(text, len);
        if (!re)
            return CUSTOS_ENOMEM;
        rc = check_regex(re, err, errlen);
        free(re);
        return rc;
    }
    if (flags & CUSTOS_BLOCKLIST_NORMALIZE) {
        custos_safety_scratch_t ns;
        custos_safety_scratch_init(&ns, 0);
        char *u = NULL;
        uint32_t ul;
        bool lw, rw;
        rc = norm_term(text, len, flags, &ns, &u, &ul, &lw, &rw);
        custos_safety_scratch_dispose(&ns);
        free(u);
        if (rc == CUSTOS_EINVAL)
            errf(err, errlen, "the term is empty after normalisation (only invisible characters)");
        return rc;
    }
    return 0;
}

typedef struct patset {
    char **expr;
    unsigned *flags, *ids;
    size_t *lens;
    size_t n, cap;
} patset_t;

static int patset_add(patset_t *p, char *expr, size_t len, unsigned flags, unsigned id)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        char **e = realloc(p->expr, nc * sizeof(*e));
        if (e)
            p->expr = e;
        unsigned *f = realloc(p->flags, nc * sizeof(*f));
        if (f)
            p->flags = f;
        unsigned *i = realloc(p->ids, nc * sizeof(*i));
        if (i)
            p->ids = i;
        size_t *l = realloc(p->lens, nc * sizeof(*l));
        if (l)
            p->lens = l;
        if (!e || !f || !i || !l)
            return CUSTOS_ENOMEM;
        p->cap = nc;
    }
    p->expr[p->n] = expr;
    p->flags[p->n] = flags;
    p->ids[p->n] = id;
    p->lens[p->n] = len;
    p->n++;
    return 0;
}

static void patset_dispose(patset_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->expr[i]);
    free(p->expr);
    free(p->flags);
    free(p->ids);
    free(p->lens);
}

static size_t db_size(const hs_database_t *db)
{
    size_t n = 0;
    if (db && hs_database_size(db, &n) != HS_SUCCESS)
        n = 0;
    return n;
}

int custos_blocklists_build(const custos_blocklist_def_t *lists, size_t n, custos_blocklists_t **out, char *err,
                            size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    int rc = CUSTOS_ENOMEM;
    patset_t norm = {0}, raw = {0};
    custos_safety_scratch_t ns;
    custos_safety_scratch_init(&ns, 0);
    hs_compile_error_t *ce = NULL;
    size_t total = 0;
    custos_blocklists_t *set = calloc(1, sizeof(*set));
    if (!set)
        goto out;
    atomic_init(&set->refs, 1);
    set->serial = atomic_fetch_add(&g_serial, 1);
    for (size_t i = 0; i < n; i++)
        total += lists[i].n_items;
    if (total > UINT32_MAX / 2) {
        rc = CUSTOS_ETOOBIG;
        goto out;
    }
    set->names = calloc(n ? n : 1, sizeof(char *));
    set->order = calloc(n ? n : 1, sizeof(uint32_t));
    set->items = calloc(total ? total : 1, sizeof(item_t));
    if (!set->names || !set->order || !set->items)
        goto out;
    for (size_t l = 0; l < n; l++) {
        if (!(set->names[l] = strdup(lists[l].name)))
            goto out;
        set->nlists++;
        set->order[l] = (uint32_t)l;
        set->bytes += strlen(lists[l].name) + 1 + sizeof(char *);
        for (size_t k = 0; k < lists[l].n_items; k++) {
            const custos_blocklist_item_def_t *d = &lists[l].items[k];
            item_t *it = &set->items[set->nitems];
            uint32_t id = (uint32_t)set->nitems;
            char why[256];
            /* regexes are checked by the multi-pattern compile below (which names the failing item) */
            rc = check_text(d->text, strlen(d->text), why, sizeof(why));
            if (rc < 0) {
                errf(err, errlen, "blocklist '%s', item '%s': %s", lists[l].name, d->id ? d->id : "", why);
                goto out;
            }
            rc = CUSTOS_ENOMEM;
            it->id = strdup(d->id ? d->id : "");
            it->text = strdup(d->text);
            if (!it->id || !it->text) {
                free(it->id);
                free(it->text);
                goto out;
            }
            it->flags = d->flags;
            it->list = (uint32_t)l;
            set->nitems++;
            set->bytes += sizeof(item_t) + strlen(it->id) + strlen(it->text) + 2;
            char *expr = NULL;
            if (d->flags & CUSTOS_BLOCKLIST_REGEX) {
                if (!(expr = strdup(d->text)) || patset_add(&raw, expr, 0, regex_flags(expr), id) < 0) {
                    free(expr);
                    goto out;
                }
            } else if (d->flags & CUSTOS_BLOCKLIST_NORMALIZE) {
                size_t ncp = 0;
                (void)valid_utf8(d->text, strlen(d->text), &ncp);
                if (8 * ncp + 32 > set->carry)
                    set->carry = 8 * ncp + 32;
                rc = norm_term(d->text, strlen(d->text), d->flags, &ns, &expr, &it->nlen, &it->lw, &it->rw);
                if (rc == CUSTOS_EINVAL)
                    errf(err, errlen, "blocklist '%s', item '%s': the term is empty after normalisation", lists[l].name,
                         it->id);
                if (rc < 0 || patset_add(&norm, expr, it->nlen, 0, id) < 0) {
                    free(expr);
                    rc = rc < 0 ? rc : CUSTOS_ENOMEM;
                    goto out;
                }
            } else {
                if ((rc = raw_term_regex(d->text, strlen(d->text), d->flags, &expr)) < 0 ||
                    (rc = patset_add(&raw, expr, 0, TERM_FLAGS, id)) < 0) {
                    free(expr);
                    rc = rc < 0 ? rc : CUSTOS_ENOMEM;
                    goto out;
                }
            }
        }
    }
    qsort_r(set->order, set->nlists, sizeof(uint32_t), cmp_order, set);
    for (size_t i = 1; i < set->nlists; i++) {
        if (strcmp(set->names[set->order[i - 1]], set->names[set->order[i]]) == 0) {
            errf(err, errlen, "duplicate blocklist name '%s'", set->names[set->order[i]]);
            rc = CUSTOS_EINVAL;
            goto out;
        }
    }
    rc = CUSTOS_EIO;
    if (norm.n && hs_compile_lit_multi((const char *const *)norm.expr, norm.flags, norm.ids, norm.lens,
                                       (unsigned)norm.n, HS_MODE_BLOCK, NULL, &set->norm_db, &ce) != HS_SUCCESS) {
        errf(err, errlen, "cannot compile the blocklist terms: %s", ce && ce->message ? ce->message : "error");
        goto out;
    }
    for (int m = 0; raw.n && m < 2; m++) {
        if (hs_compile_multi((const char *const *)raw.expr, raw.flags, raw.ids, (unsigned)raw.n,
                             m ? STREAM_MODE : HS_MODE_BLOCK, NULL, m ? &set->raw_sdb : &set->raw_db,
                             &ce) != HS_SUCCESS) {
            const char *iid = ce && ce->expression >= 0 && (size_t)ce->expression < raw.n
                                  ? set->items[raw.ids[ce->expression]].id
                                  : "?";
            errf(err, errlen, "blocklist regex item '%s': %s", iid, ce && ce->message ? ce->message : "error");
            goto out;
        }
    }
    set->bytes += db_size(set->norm_db) + db_size(set->raw_db) + db_size(set->raw_sdb) + sizeof(*set);
    if (set->carry > CUSTOS_BLOCKLIST_STREAM_CARRY)
        set->carry = CUSTOS_BLOCKLIST_STREAM_CARRY;
    rc = 0;
    *out = set;
    set = NULL;
out:
    if (ce)
        hs_free_compile_error(ce);
    patset_dispose(&norm);
    patset_dispose(&raw);
    custos_safety_scratch_dispose(&ns);
    set_free(set);
    /* the compiler's working memory (about ten times the database for large term lists) goes back to the OS */
    if (total > 1000)
        malloc_trim(0);
    return rc;
}

/* ---------- scanning ---------- */

static int select_lists(const custos_blocklists_t *set, const char *const *names, size_t n_names, unsigned char *sel)
{
    memset(sel, n_names ? 0 : 1, set->nlists ? set->nlists : 1);
    for (size_t i = 0; i < n_names; i++) {
        long l = find_list(set, names[i]);
        if (l < 0)
            return CUSTOS_ENOTFOUND;
        sel[l] = 1;
    }
    return 0;
}

/* Seen-list helpers: a sorted array of item ids (hits are rare, so insertion cost does not matter). */
static bool seen_add(uint32_t **a, size_t *n, size_t *cap, uint32_t id, int *err)
{
    size_t lo = 0, hi = *n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((*a)[mid] == id)
            return false;
        if ((*a)[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (grow((void **)a, cap, *n + 1, sizeof(uint32_t)) < 0) {
        *err = CUSTOS_ENOMEM;
        return false;
    }
    memmove(*a + lo + 1, *a + lo, (*n - lo) * sizeof(uint32_t));
    (*a)[lo] = id;
    (*n)++;
    return true;
}

typedef struct scan_ctx {
    const custos_blocklists_t *set;
    const unsigned char *sel;
    uint32_t **seen;
    size_t *nseen, *seencap;
    custos_blocklist_hit_fn fn;
    void *ud;
    int rc; /* callback result or error */
    /* norm pass */
    const custos_norm_t *nt;
    const uint32_t *u8cp;
    size_t *cpbyte; /* original code point -> byte (relative to base), computed at the first hit */
    bool cpbyte_ready;
    const char *ntext; /* the normalised pass's original text */
    size_t nlen;
    custos_blocklist_scratch_t *scratch;
    size_t base;     /* absolute offset of the scanned text */
    bool mid_word;   /* the window starts inside a word (stream carry) */
    size_t decided;  /* stream: hits ending at or before this absolute offset were decided */
    size_t data_end; /* stream: absolute end of the data fed so far */
    bool final;      /* stream close: no more data will come */
    /* raw pass */
    const size_t *rep2orig; /* repaired byte -> original byte (NULL: text was valid) */
    size_t replen, origlen;
} scan_ctx_t;

static int report(scan_ctx_t *c, uint32_t id, size_t start, size_t end)
{
    int e = 0;
    if (!seen_add(c->seen, c->nseen, c->seencap, id, &e)) {
        if (e) {
            c->rc = e;
            return 1;
        }
        return 0;
    }
    const item_t *it = &c->set->items[id];
    custos_blocklist_hit_t h = {c->set->names[it->list], it->id, it->text, start, end};
    int r = c->fn ? c->fn(c->ud, &h) : 0;
    if (r) {
        c->rc = r;
        return 1;
    }
    return 0;
}

/* Original code point -> byte offsets of the normalised pass's text (normalize.c counts each invalid byte as one
 * code point), computed once per pass when the first hit needs them. */
static int cpbyte_fill(scan_ctx_t *c)
{
    custos_blocklist_scratch_t *s = c->scratch;
    size_t orig = c->nt->orig_len, len = c->nlen;
    if (grow((void **)&s->cpbyte, &s->cpcap, orig + 1, sizeof(size_t)) < 0) {
        c->rc = CUSTOS_ENOMEM;
        return -1;
    }
    size_t i = 0, k = 0, adv;
    while (i < len && k < orig) {
        s->cpbyte[k++] = i;
        (void)dec((const unsigned char *)c->ntext + i, len - i, &adv);
        i += adv;
    }
    s->cpbyte[k] = len;
    c->cpbyte = s->cpbyte;
    c->cpbyte_ready = true;
    return 0;
}

static int on_norm(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
    (void)flags;
    (void)from;
    scan_ctx_t *c = ctx;
    const item_t *it = &c->set->items[id];
    if (!c->sel[it->list])
        return 0;
    size_t bs = (size_t)to - it->nlen, be = (size_t)to; /* normalised byte range: literals have exact lengths */
    size_t s = c->u8cp[bs], e = c->u8cp[be - 1] + 1;    /* normalised code points [s, e) */
    const custos_norm_t *n = c->nt;
    if (it->lw && s > 0 && custos_norm_is_word(n->cp[s - 1]))
        return 0;
    if (it->rw && e < n->len && custos_norm_is_word(n->cp[e]))
        return 0;
    size_t os = n->map[s], oe = n->map[e - 1] + 1; /* original code points */
    if (!c->cpbyte_ready && cpbyte_fill(c) < 0)
        return 1;
    size_t abs_s = c->base + c->cpbyte[os], abs_e = c->base + c->cpbyte[oe];
    if (it->lw && c->mid_word && os == 0)
        return 0; /* cannot know whether the word started earlier */
    if (abs_e <= c->decided)
        return 0; /* decided by an earlier feed */
    if (it->rw && !c->final && e == n->len && abs_e >= c->data_end)
        return 0; /* the word may continue in the next chunk */
    return report(c, id, abs_s, abs_e);
}

static int on_raw(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
    (void)flags;
    scan_ctx_t *c = ctx;
    const item_t *it = &c->set->items[id];
    if (!c->sel[it->list])
        return 0;
    size_t s = (size_t)from, e = (size_t)to;
    if (c->rep2orig) {
        s = c->rep2orig[s];
        e = e < c->replen ? c->rep2orig[e] : c->origlen;
    }
    return report(c, id, c->base + s, c->base + e);
}

/* Normalises text and scans the normalised-term database. cpbyte is filled for text's code points. */
static int scan_norm(scan_ctx_t *c, const char *text, size_t len, custos_blocklist_scratch_t *s)
{
    const custos_blocklists_t *set = c->set;
    custos_norm_t n;
    int rc = custos_normalize(text, len, CUSTOS_NORM_ALL, &s->norm, &n);
    if (rc < 0)
        return rc;
    if (n.len == 0)
        return 0;
    if (grow_u8(s, n.len * 4 + 1) < 0)
        return CUSTOS_ENOMEM;
    size_t o = emit_norm(&n, s->u8, s->u8cp);
    c->nt = &n;
    c->u8cp = s->u8cp;
    c->ntext = text;
    c->nlen = len;
    c->scratch = s;
    c->cpbyte_ready = false;
    hs_error_t e = hs_scan(set->norm_db, s->u8, (unsigned)o, 0, s->hs, on_norm, c);
    c->nt = NULL;
    if (e == HS_SCAN_TERMINATED)
        return c->rc ? c->rc : CUSTOS_EIO;
    return e == HS_SUCCESS ? 0 : CUSTOS_EIO;
}

/* Repairs invalid UTF-8 (each invalid byte -> U+FFFD) into s->u8, with rep2orig in s->cpbyte (as byte offsets). */
static int repair(const char *text, size_t len, custos_blocklist_scratch_t *s, size_t *outlen)
{
    if (grow_u8(s, len * 3 + 1) < 0 || grow((void **)&s->cpbyte, &s->cpcap, len * 3 + 1, sizeof(size_t)) < 0)
        return CUSTOS_ENOMEM;
    size_t i = 0, o = 0, adv;
    while (i < len) {
        if (dec((const unsigned char *)text + i, len - i, &adv) < 0) {
            memcpy(s->u8 + o, "\xef\xbf\xbd", 3);
            for (int j = 0; j < 3; j++)
                s->cpbyte[o++] = i;
        } else {
            for (size_t j = 0; j < adv; j++) {
                s->u8[o] = text[i + j];
                s->cpbyte[o++] = i + j;
            }
        }
        i += adv;
    }
    s->cpbyte[o] = len;
    *outlen = o;
    return 0;
}

int custos_blocklists_scan(const custos_blocklists_t *set, const char *const *names, size_t n_names, const char *text,
                           size_t len, custos_blocklist_scratch_t *scratch, custos_blocklist_hit_fn fn, void *ud)
{
    if (!set)
        return n_names ? CUSTOS_ENOTFOUND : 0;
    if (grow((void **)&scratch->sel, &scratch->selcap, set->nlists + 1, 1) < 0)
        return CUSTOS_ENOMEM;
    int rc = select_lists(set, names, n_names, scratch->sel);
    if (rc < 0)
        return rc;
    if (!set->nitems)
        return 0;
    if (!scratch->norm.max_input)
        scratch->norm.max_input = CUSTOS_SAFETY_MAX_INPUT;
    if (len > scratch->norm.max_input)
        return CUSTOS_ETOOBIG;
    if ((rc = prepare(set, scratch)) < 0)
        return rc;
    scratch->nseen = 0;
    scan_ctx_t c = {.set = set,
                    .sel = scratch->sel,
                    .seen = &scratch->seen,
                    .nseen = &scratch->nseen,
                    .seencap = &scratch->seencap,
                    .fn = fn,
                    .ud = ud,
                    .final = true};
    if (set->norm_db && (rc = scan_norm(&c, text, len, scratch)) != 0)
        return rc;
    if (set->raw_db) {
        size_t ncp;
        const char *t = text;
        size_t tl = len;
        if (!valid_utf8(text, len, &ncp)) {
            if ((rc = repair(text, len, scratch, &tl)) < 0)
                return rc;
            t = scratch->u8;
            c.rep2orig = scratch->cpbyte;
            c.replen = tl;
            c.origlen = len;
        }
        hs_error_t e = hs_scan(set->raw_db, t, (unsigned)tl, 0, scratch->hs, on_raw, &c);
        if (e == HS_SCAN_TERMINATED)
            return c.rc ? c.rc : CUSTOS_EIO;
        if (e != HS_SUCCESS)
            return CUSTOS_EIO;
    }
    return 0;
}

/* ---------- streams ---------- */

struct custos_blocklist_stream {
    custos_blocklists_t *set;
    unsigned char *sel;
    hs_stream_t *hs;
    char *carry; /* last original bytes (for re-normalisation), starting at absolute offset carry_base */
    size_t carry_len, carry_base;
    bool carry_mid_word;
    unsigned char pend[4]; /* incomplete UTF-8 sequence held back from the raw stream */
    size_t npend;
    size_t fed_raw; /* bytes given to the raw Vectorscan stream (after repair) */
    size_t total;   /* original bytes fed */
    size_t decided;
    uint32_t *seen;
    size_t nseen, seencap;
    char *rawbuf;
    size_t rawcap;
};

int custos_blocklist_stream_new(const custos_blocklists_t *set, const char *const *names, size_t n_names,
                                custos_blocklist_stream_t **out)
{
    *out = NULL;
    custos_blocklist_stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        return CUSTOS_ENOMEM;
    st->set = custos_blocklists_ref((custos_blocklists_t *)set);
    st->sel = malloc(set && set->nlists ? set->nlists : 1);
    if (!st->sel || !set) {
        int rc = set ? CUSTOS_ENOMEM : (n_names ? CUSTOS_ENOTFOUND : CUSTOS_EINVAL);
        custos_blocklists_unref(st->set);
        free(st->sel);
        free(st);
        return rc;
    }
    int rc = select_lists(set, names, n_names, st->sel);
    if (rc == 0 && set->raw_sdb && hs_open_stream(set->raw_sdb, 0, &st->hs) != HS_SUCCESS)
        rc = CUSTOS_ENOMEM;
    if (rc == 0 && set->norm_db && !(st->carry = malloc(CUSTOS_BLOCKLIST_STREAM_CARRY + 4)))
        rc = CUSTOS_ENOMEM;
    if (rc < 0) {
        if (st->hs)
            hs_close_stream(st->hs, NULL, NULL, NULL);
        custos_blocklists_unref(st->set);
        free(st->sel);
        free(st->carry);
        free(st);
        return rc;
    }
    *out = st;
    return 0;
}

static bool is_ascii_break(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '.' || c == ',' || c == ';' || c == '!' || c == '?';
}

/* Keeps the last set->carry bytes of w[0..n) (absolute start wbase), starting after a break
 * when one is near, else at a character boundary (then the window starts mid-word). */
static void keep_carry(custos_blocklist_stream_t *st, const char *w, size_t n, size_t wbase)
{
    size_t keep = st->set->carry;
    size_t cut = n > keep ? n - keep : 0;
    bool mid = false;
    if (cut > 0) {
        size_t k = cut, look = keep / 4;
        while (k < n && k < cut + look && !is_ascii_break((unsigned char)w[k]))
            k++;
        if (k < n && k < cut + look) {
            cut = k + 1;
        } else {
            while (cut < n && ((unsigned char)w[cut] & 0xc0) == 0x80)
                cut++;
            mid = true;
        }
    } else {
        mid = st->carry_mid_word;
    }
    memmove(st->carry, w + cut, n - cut);
    st->carry_len = n - cut;
    st->carry_base = wbase + cut;
    st->carry_mid_word = mid;
}

static int stream_norm(custos_blocklist_stream_t *st, const char *chunk, size_t len, bool final,
                       custos_blocklist_scratch_t *s, scan_ctx_t *c)
{
    /* window = carry + chunk (in a scratch buffer) */
    size_t wn = st->carry_len + len;
    char *w = malloc(wn ? wn : 1);
    if (!w)
        return CUSTOS_ENOMEM;
    memcpy(w, st->carry, st->carry_len);
    if (len)
        memcpy(w + st->carry_len, chunk, len);
    size_t wbase = st->carry_base;
    size_t usable = final ? wn : wn - partial_tail((const unsigned char *)w, wn);
    c->base = wbase;
    c->mid_word = st->carry_mid_word;
    c->data_end = wbase + usable;
    c->final = final;
    c->decided = st->decided;
    int rc = 0;
    if (usable)
        rc = scan_norm(c, w, usable, s);
    if (rc == 0) {
        if (usable)
            st->decided = wbase + usable - 1;
        keep_carry(st, w, wn, wbase);
    }
    free(w);
    return rc;
}

static int stream_raw(custos_blocklist_stream_t *st, const char *chunk, size_t len, scan_ctx_t *c,
                      custos_blocklist_scratch_t *s)
{
    /* pending partial sequence + chunk, repaired, minus a new partial tail */
    size_t need = (st->npend + len) * 3 + 4;
    if (grow((void **)&st->rawbuf, &st->rawcap, need, 1) < 0)
        return CUSTOS_ENOMEM;
    char *in = malloc(st->npend + len + 1);
    if (!in)
        return CUSTOS_ENOMEM;
    memcpy(in, st->pend, st->npend);
    if (len)
        memcpy(in + st->npend, chunk, len);
    size_t n = st->npend + len;
    size_t tail = chunk ? partial_tail((const unsigned char *)in, n) : 0;
    size_t i = 0, o = 0, adv;
    while (i < n - tail) {
        if (dec((const unsigned char *)in + i, n - tail - i, &adv) < 0) {
            memcpy(st->rawbuf + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            memcpy(st->rawbuf + o, in + i, adv);
            o += adv;
        }
        i += adv;
    }
    memcpy(st->pend, in + n - tail, tail);
    st->npend = tail;
    free(in);
    c->rep2orig = NULL;
    c->base = 0; /* raw offsets are Vectorscan's stream offsets (repaired bytes) */
    int rc = 0;
    if (o) {
        hs_error_t e = hs_scan_stream(st->hs, st->rawbuf, (unsigned)o, 0, s->hs, on_raw, c);
        if (e == HS_SCAN_TERMINATED)
            rc = c->rc ? c->rc : CUSTOS_EIO;
        else if (e != HS_SUCCESS)
            rc = CUSTOS_EIO;
    }
    st->fed_raw += o;
    return rc;
}

static int stream_step(custos_blocklist_stream_t *st, const char *chunk, size_t len, bool final,
                       custos_blocklist_scratch_t *s, custos_blocklist_hit_fn fn, void *ud)
{
    const custos_blocklists_t *set = st->set;
    if (!set->nitems)
        return 0;
    int rc = prepare(set, s);
    if (rc < 0)
        return rc;
    scan_ctx_t c = {.set = set,
                    .sel = st->sel,
                    .seen = &st->seen,
                    .nseen = &st->nseen,
                    .seencap = &st->seencap,
                    .fn = fn,
                    .ud = ud};
    if (set->norm_db && (rc = stream_norm(st, chunk, len, final, s, &c)) != 0)
        return rc;
    if (set->raw_sdb && st->hs) {
        c.final = final;
        if ((len || (final && st->npend)) && (rc = stream_raw(st, final ? NULL : chunk, final ? 0 : len, &c, s)) != 0)
            return rc;
        if (final) {
            hs_error_t e = hs_close_stream(st->hs, s->hs, on_raw, &c);
            st->hs = NULL;
            if (e == HS_SCAN_TERMINATED)
                return c.rc ? c.rc : CUSTOS_EIO;
            if (e != HS_SUCCESS)
                return CUSTOS_EIO;
        }
    }
    return 0;
}

int custos_blocklist_stream_feed(custos_blocklist_stream_t *st, const char *chunk, size_t len,
                                 custos_blocklist_scratch_t *scratch, custos_blocklist_hit_fn fn, void *ud)
{
    if (!st || (!chunk && len))
        return CUSTOS_EINVAL;
    if (len == 0)
        return 0;
    int rc = stream_step(st, chunk, len, false, scratch, fn, ud);
    st->total += len;
    return rc;
}

int custos_blocklist_stream_close(custos_blocklist_stream_t *st, custos_blocklist_scratch_t *scratch,
                                  custos_blocklist_hit_fn fn, void *ud)
{
    if (!st)
        return 0;
    int rc = 0;
    if (scratch)
        rc = stream_step(st, NULL, 0, true, scratch, fn, ud);
    if (st->hs)
        hs_close_stream(st->hs, NULL, NULL, NULL);
    custos_blocklists_unref(st->set);
    free(st->sel);
    free(st->carry);
    free(st->seen);
    free(st->rawbuf);
    free(st);
    return rc;
}

/* ---------- hub ---------- */

struct custos_blocklist_hub {
    pthread_mutex_t lock;
    custos_blocklists_t *set;
    atomic_uint_fast64_t gen;
};

int custos_blocklist_hub_new(custos_blocklist_hub_t **out)
{
    *out = NULL;
    custos_blocklist_hub_t *h = calloc(1, sizeof(*h));
    if (!h)
        return CUSTOS_ENOMEM;
    int rc = custos_blocklists_build(NULL, 0, &h->set, NULL, 0);
    if (rc < 0 || pthread_mutex_init(&h->lock, NULL) != 0) {
        custos_blocklists_unref(h->set);
        free(h);
        return rc < 0 ? rc : CUSTOS_EIO;
    }
    atomic_init(&h->gen, 1);
    *out = h;
    return 0;
}

void custos_blocklist_hub_free(custos_blocklist_hub_t *hub)
{
    if (!hub)
        return;
    custos_blocklists_unref(hub->set);
    pthread_mutex_destroy(&hub->lock);
    free(hub);
}

void custos_blocklist_hub_publish(custos_blocklist_hub_t *hub, custos_blocklists_t *set)
{
    pthread_mutex_lock(&hub->lock);
    custos_blocklists_t *old = hub->set;
    hub->set = set;
    atomic_fetch_add_explicit(&hub->gen, 1, memory_order_release);
    pthread_mutex_unlock(&hub->lock);
    custos_blocklists_unref(old);
}

custos_blocklists_t *custos_blocklist_hub_acquire(custos_blocklist_hub_t *hub)
{
    pthread_mutex_lock(&hub->lock);
    custos_blocklists_t *s = custos_blocklists_ref(hub->set);
    pthread_mutex_unlock(&hub->lock);
    return s;
}

const custos_blocklists_t *custos_blocklist_view_get(custos_blocklist_hub_t *hub, custos_blocklist_view_t *view)
{
    uint64_t g = atomic_load_explicit(&hub->gen, memory_order_acquire);
    if (view->set && view->gen == g)
        return view->set;
    pthread_mutex_lock(&hub->lock);
    custos_blocklists_t *s = custos_blocklists_ref(hub->set);
    g = atomic_load_explicit(&hub->gen, memory_order_relaxed);
    pthread_mutex_unlock(&hub->lock);
    custos_blocklists_unref(view->set);
    view->set = s;
    view->gen = g;
    return s;
}

void custos_blocklist_view_dispose(custos_blocklist_view_t *view)
{
    if (!view)
        return;
    custos_blocklists_unref(view->set);
    view->set = NULL;
    view->gen = 0;
}
