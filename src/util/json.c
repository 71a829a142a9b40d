/* SPDX-License-Identifier: Apache-2.0
 * Strict JSON validation and parsing (json-c behind our own RFC 8259 validator) and JSON string escaping.
 * The validator is iterative (a bit stack of container kinds), so hostile nesting cannot overflow the C stack. */
#include "util/json.h"
#include "util/err.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

/* Decodes one UTF-8 sequence at s (n >= 1 bytes available). Returns 1 if valid, with *adv its length; else 0 with
 * *adv the length of the maximal invalid subpart (>= 1), as in the WHATWG / Unicode "best practice" decoder. */
static int utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xBF;
    size_t need;

    if (b < 0x80) {
        *adv = 1;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b == 0xE0) {
        need = 2;
        lo = 0xA0; /* no overlongs */
    } else if (b == 0xED) {
        need = 2;
        hi = 0x9F; /* no surrogates */
    } else if (b >= 0xE1 && b <= 0xEF) {
        need = 2;
    } else if (b == 0xF0) {
        need = 3;
        lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
        need = 3;
    } else if (b == 0xF4) {
        need = 3;
        hi = 0x8F; /* <= U+10FFFF */
    } else {
        *adv = 1;
        return 0;
    }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n || s[k] < lo || s[k] > hi) {
            *adv = k;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    *adv = need + 1;
    return 1;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static size_t skip_ws(const unsigned char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* Bytes that can stand for themselves inside a JSON string and are ASCII: 0x20..0x7f except '"' and '\\'. */
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
static const unsigned char PLAIN[256] = {
    R16(0), R16(0), /* 0x00-0x1f: control characters */
    1,      1,      0,      1,      1,      1,      1,      1,      1,      1,      1, 1, 1, 1, 1, 1, /* 0x20-0x2f: '"'
                                                                                                         is 0x22 */
    R16(1), R16(1), 1,      1,      1,      1,      1,      1,      1,      1,      1, 1, 1, 1, 0, 1, 1,
    1,                                                                              /* 0x50-0x5f: '\\' is 0x5c */
    R16(1), R16(1), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), /* 0x80-0xff: UTF-8, checked */
};
#undef R16

/* Length of the prefix of s[0, n) made of PLAIN bytes, eight bytes at a time (SWAR): a word is plain
 * when no byte is < 0x20, >= 0x80, '"' or '\\'. */
static inline size_t plain_run(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    size_t i = 0;
    while (i + 8 <= n) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
        uint64_t bad = ((x - ones * 0x20) | (q - ones) | (b - ones)) & ~x & high;
        bad |= x & high;
        if (bad)
            break;
        i += 8;
    }
    while (i < n && PLAIN[s[i]])
        i++;
    return i;
}

/* String starting at s[*pi] == '"'. On success *pi is just past the closing quote. On error *pi is the offset. */
static const char *v_string(const unsigned char *s, size_t n, size_t *pi, int is_key)
{
    size_t i = *pi + 1, adv;

    while (i < n) {
        unsigned char c = s[i];
        if (c == '"') {
            *pi = i + 1;
            return NULL;
        }
        if (PLAIN[c]) {
            /* fast path: plain ASCII runs, the bulk of every prompt */
            i += plain_run(s + i, n - i);
            continue;
        }
        *pi = i;
        if (c < 0x20)
            return "control character in string";
        if (c == '\\') {
            if (i + 1 >= n)
                break;
            switch (s[i + 1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                i += 2;
                continue;
            case 'u':
                for (size_t k = 2; k < 6; k++) {
                    if (i + k >= n)
                        goto eoi;
                    if (!is_hex(s[i + k]))
                        return "invalid \\u escape";
                }
                if (is_key && memcmp(s + i + 2, "0000", 4) == 0)
                    return "\\u0000 in object key";
                i += 6;
                continue;
            default:
                return "invalid escape in string";
            }
        }
        if (!utf8_next(s + i, n - i, &adv))
            return "invalid UTF-8 in string";
        i += adv;
    }
eoi:
    *pi = n;
    return "unterminated string";
}

/* Number starting at s[*pi] ('-' or a digit). */
static const char *v_number(const unsigned char *s, size_t n, size_t *pi)
{
    size_t i = *pi;

    if (s[i] == '-')
        i++;
    if (i < n && s[i] == '0') {
        i++;
    } else if (i < n && s[i] >= '1' && s[i] <= '9') {
        while (i < n && is_digit(s[i]))
            i++;
    } else {
        *pi = i;
        return "invalid number";
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) {
            *pi = i;
            return "digit expected after decimal point";
        }
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= n || !is_digit(s[i])) {
            *pi = i;
            return "digit expected in exponent";
        }
        while (i < n && is_digit(s[i]))
            i++;
    }
    *pi = i;
    return NULL;
}

static const char *v_literal(const unsigned char *s, size_t n, size_t *pi)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < sizeof(lits) / sizeof(lits[0]); k++) {
        size_t l = strlen(lits[k]);
        if (s[*pi] == (unsigned char)lits[k][0]) {
            if (n - *pi >= l && memcmp(s + *pi, lits[k], l) == 0) {
                *pi += l;
                return NULL;
            }
            return "invalid literal";
        }
    }
    return "unexpected character";
}

int custos_json_validate(const char *str, size_t n, int max_depth, size_t *errpos, const char **errmsg)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char stack[CUSTOS_JSON_MAX_DEPTH / 8] = {0}; /* bit d set: container at depth d is an object */
    enum { ST_VALUE, ST_KEY, ST_AFTER } st = ST_VALUE;
    int depth = 0, rc = CUSTOS_EINVAL;
    size_t i = 0;
    const char *msg = NULL;

    if (max_depth < 0 || max_depth > CUSTOS_JSON_MAX_DEPTH || (!s && n)) {
        msg = "invalid arguments";
        goto fail;
    }
    i = skip_ws(s, n, 0);
    for (;;) {
        if (i >= n && !(st == ST_AFTER && depth == 0)) {
            msg = "unexpected end of input";
            goto fail;
        }
        if (st == ST_VALUE) {
            unsigned char c = s[i];
            if (c == '{' || c == '[') {
                if (depth >= max_depth) {
                    rc = CUSTOS_EDEPTH;
                    msg = "nesting too deep";
                    goto fail;
                }
                if (c == '{')
                    stack[depth / 8] |= (unsigned char)(1u << (depth % 8));
                else
                    stack[depth / 8] &= (unsigned char)~(1u << (depth % 8));
                depth++;
                i = skip_ws(s, n, i + 1);
                if (i < n && s[i] == (c == '{' ? '}' : ']')) {
                    depth--;
                    i++;
                    st = ST_AFTER;
                } else {
                    st = c == '{' ? ST_KEY : ST_VALUE;
                }
                continue;
            }
            if (c == '"')
                msg = v_string(s, n, &i, 0);
            else if (c == '-' || is_digit(c))
                msg = v_number(s, n, &i);
            else
                msg = v_literal(s, n, &i);
            if (msg)
                goto fail;
            st = ST_AFTER;
        } else if (st == ST_KEY) {
            if (s[i] != '"') {
                msg = "object key expected";
                goto fail;
            }
            if ((msg = v_string(s, n, &i, 1)))
                goto fail;
            i = skip_ws(s, n, i);
            if (i >= n || s[i] != ':') {
                msg = i >= n ? "unexpected end of input" : "':' expected after object key";
                goto fail;
            }
            i = skip_ws(s, n, i + 1);
            st = ST_VALUE;
        } else {
            i = skip_ws(s, n, i);
            if (depth == 0) {
                if (i != n) {
                    msg = "trailing characters after JSON value";
                    goto fail;
                }
                return 0;
            }
            if (i >= n)
                continue; /* reports end of input */
            int obj = (stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
            if (s[i] == ',') {
                i = skip_ws(s, n, i + 1);
                st = obj ? ST_KEY : ST_VALUE;
            } else if (s[i] == (obj ? '}' : ']')) {
                depth--;
                i++;
            } else {
                msg = obj ? "',' or '}' expected" : "',' or ']' expected";
                goto fail;
            }
        }
    }
fail:
    if (errpos)
        *errpos = i;
    if (errmsg)
        *errmsg = msg;
    return rc;
}

static __thread struct json_tokener *t_tok;
static __thread int t_tok_depth;

static void free_cached_tokener(void)
{
    if (t_tok)
        json_tokener_free(t_tok);
    t_tok = NULL;
}

/* One cached tokener per thread (for the most recent depth); others are created and freed. */
static struct json_tokener *take_tokener(int depth)
{
    struct json_tokener *t = t_tok;
    if (t && t_tok_depth == depth) {
        t_tok = NULL;
        json_tokener_reset(t);
        return t;
    }
    return json_tokener_new_ex(depth);
}

static void give_tokener(struct json_tokener *t)
{
    int depth = t->max_depth;
    if (t_tok) {
        if (t_tok_depth == depth) {
            json_tokener_free(t);
            return;
        }
        free_cached_tokener();
    }
    t_tok = t;
    t_tok_depth = depth;
}

void custos_json_thread_cleanup(void)
{
    free_cached_tokener();
}

int custos_json_parse(const char *s, size_t len, int max_depth, struct json_object **out, size_t *errpos,
                      const char **errmsg)
{
    struct json_tokener *tok = NULL;
    struct json_object *obj = NULL;
    const char *msg = NULL;
    size_t pos = 0;
    int rc;

    *out = NULL;
    if (len > (size_t)INT_MAX - 1) {
        rc = CUSTOS_ETOOBIG;
        msg = "document too large";
        goto fail;
    }
    if ((rc = custos_json_validate(s, len, max_depth, &pos, &msg)))
        goto fail;
    /* json-c counts a scalar inside a container as one more level; our validator already enforced max_depth.
     * The tokener is cached per thread: creating one costs more than parsing a small document. */
    tok = take_tokener(max_depth + 1);
    if (!tok) {
        rc = CUSTOS_ENOMEM;
        msg = "out of memory";
        goto fail;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    obj = json_tokener_parse_ex(tok, s, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (!obj && jerr == json_tokener_continue) {
        /* A top-level number only ends at a delimiter. */
        obj = json_tokener_parse_ex(tok, " ", 1);
        jerr = json_tokener_get_error(tok);
    }
    if (jerr != json_tokener_success) {
        /* Validated input that json-c still refuses: allocation failure or a json-c limitation. */
        rc = CUSTOS_EINVAL;
        msg = json_tokener_error_desc(jerr);
        pos = json_tokener_get_parse_end(tok);
        json_object_put(obj);
        goto fail;
    }
    give_tokener(tok);
    *out = obj; /* NULL for the document `null` */
    return 0;
fail:
    if (tok)
        give_tokener(tok);
    if (errpos)
        *errpos = pos;
    if (errmsg)
        *errmsg = msg;
    return rc;
}

int custos_json_append_string(custos_buf_t *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t live0 = custos_buf_size(b), i = 0, run = 0;
    int rc;

    if ((rc = custos_buf_append(b, "\"", 1)))
        goto fail;
    while (i < len) {
        unsigned char c = s[i];
        const char *esc;
        char tmp[8];
        size_t adv = 1;

        if (PLAIN[c]) {
            i += plain_run(s + i, len - i);
            continue;
        }

        if (c >= 0x20 && c != '"' && c != '\\') {
            if (c < 0x80 || utf8_next(s + i, len - i, &adv)) {
                i += adv;
                continue;
            }
            esc = "\xEF\xBF\xBD"; /* U+FFFD */
        } else {
            switch (c) {
            case '"':
                esc = "\\\"";
                break;
            case '\\':
                esc = "\\\\";
                break;
            case '\n':
                esc = "\\n";
                break;
            case '\r':
                esc = "\\r";
                break;
            case '\t':
                esc = "\\t";
                break;
            case '\b':
                esc = "\\b";
                break;
            case '\f':
                esc = "\\f";
                break;
            default:
                snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)c);
                esc = tmp;
                break;
            }
        }
        if (i > run && (rc = custos_buf_append(b, s + run, i - run)))
            goto fail;
        if ((rc = custos_buf_append_str(b, esc)))
            goto fail;
        i += adv;
        run = i;
    }
    if (i > run && (rc = custos_buf_append(b, s + run, i - run)))
        goto fail;
    if ((rc = custos_buf_append(b, "\"", 1)))
        goto fail;
    return 0;
fail:
    /* Undo partial output; a compaction during growth moved the live bytes to the front, which off reflects. */
    b->len = b->off + live0;
    if (b->data)
        b->data[b->len] = 0;
    return rc;
}

static int write_int64(custos_buf_t *b, int64_t v)
{
    char tmp[24];
    char *e = tmp + sizeof(tmp), *q = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--q = '-';
    return custos_buf_append(b, q, (size_t)(e - q));
}

int custos_json_write(custos_buf_t *b, struct json_object *o)
{
    int rc = 0;
    switch (json_object_get_type(o)) {
    case json_type_null:
        return custos_buf_append(b, "null", 4);
    case json_type_boolean:
        return json_object_get_boolean(o) ? custos_buf_append(b, "true", 4) : custos_buf_append(b, "false", 5);
    case json_type_int: {
        int64_t v = json_object_get_int64(o);
        if (v != INT64_MAX && v != INT64_MIN)
            return write_int64(b, v);
        break; /* saturated or unsigned: json-c knows the exact text */
    }
    case json_type_double:
        break; /* json-c keeps the number's original text */
    case json_type_string:
        return custos_json_append_string(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
    case json_type_array: {
        size_t n = json_object_array_length(o);
        rc = custos_buf_append(b, "[", 1);
        for (size_t i = 0; !rc && i < n; i++) {
            if (i)
                rc = custos_buf_append(b, ",", 1);
            if (!rc)
                rc = custos_json_write(b, json_object_array_get_idx(o, i));
        }
        return rc ? rc : custos_buf_append(b, "]", 1);
    }
    case json_type_object: {
        bool first = true;
        rc = custos_buf_append(b, "{", 1);
        json_object_object_foreach(o, key, val)
        {
            if (rc)
                break;
            if (!first)
                rc = custos_buf_append(b, ",", 1);
            first = false;
            if (!rc)
                rc = custos_json_append_string(b, key, strlen(key));
            if (!rc)
                rc = custos_buf_append(b, ":", 1);
            if (!rc)
                rc = custos_json_write(b, val);
        }
        return rc ? rc : custos_buf_append(b, "}", 1);
    }
    }
    size_t len = 0;
    const char *t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    return t ? custos_buf_append(b, t, len) : CUSTOS_ENOMEM;
}
