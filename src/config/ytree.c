/* SPDX-License-Identifier: Apache-2.0
 * Strict YAML to json-c conversion on libyaml's event API. Each node carries a ymeta_t as json-c
 * userdata (its mark, and for collections the marks of every key and value, nulls included). */
#include "config/ytree.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/err.h"

typedef struct ychild {
    char *key; /* owned; NULL for sequence items */
    custos_ymark_t key_mark;
    custos_ymark_t val_mark;
} ychild_t;

typedef struct ymeta {
    custos_ymark_t mark;
    size_t n, cap;
    ychild_t *kids;
} ymeta_t;

typedef struct frame {
    json_object *obj; /* borrowed: owned by its parent, or by the parse's root */
    int is_map;
    char *key; /* owned: pending mapping key waiting for its value */
    custos_ymark_t key_mark;
} frame_t;

typedef struct yparse {
    const char *src;
    size_t srclen;
    json_object *root;
    int have_root;
    frame_t stack[CUSTOS_YTREE_MAX_DEPTH];
    int depth;
    custos_ymark_t *where;
    char *msg;
    size_t msglen;
} yparse_t;

static void meta_free(json_object *jso, void *userdata)
{
    ymeta_t *m = userdata;
    (void)jso;
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->kids[i].key);
    free(m->kids);
    free(m);
}

static custos_ymark_t to_mark(yaml_mark_t m)
{
    custos_ymark_t r = {(unsigned)m.line + 1, (unsigned)m.column + 1};
    return r;
}

__attribute__((format(printf, 4, 5))) static int fail(yparse_t *p, int rc, custos_ymark_t at, const char *fmt, ...)
{
    va_list ap;
    *p->where = at;
    if (p->msg && p->msglen) {
        va_start(ap, fmt);
        vsnprintf(p->msg, p->msglen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Copies s into out (at most outlen-1 bytes) replacing non-printable bytes, for error messages. */
static const char *printable(const char *s, size_t len, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < len && j + 4 < outlen; i++)
        out[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (len > 0 && j + 4 >= outlen && j >= 3) {
        out[j - 3] = out[j - 2] = out[j - 1] = '.';
    }
    out[j] = 0;
    return out;
}

static int attach_meta(json_object *obj, custos_ymark_t mark)
{
    ymeta_t *m = calloc(1, sizeof(*m));
    if (!m)
        return CUSTOS_ENOMEM;
    m->mark = mark;
    json_object_set_userdata(obj, m, meta_free);
    return 0;
}

static int add_child(json_object *coll, char *key, custos_ymark_t key_mark, custos_ymark_t val_mark)
{
    ymeta_t *m = json_object_get_userdata(coll);
    if (m->n == m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 4;
        ychild_t *k = realloc(m->kids, ncap * sizeof(*k));
        if (!k)
            return CUSTOS_ENOMEM;
        m->kids = k;
        m->cap = ncap;
    }
    m->kids[m->n].key = key;
    m->kids[m->n].key_mark = key_mark;
    m->kids[m->n].val_mark = val_mark;
    m->n++;
    return 0;
}

static int match_all(const char *s, size_t len, int (*pred)(int))
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!pred((unsigned char)s[i]))
            return 0;
    return 1;
}

static int is_dec(int c)
{
    return c >= '0' && c <= '9';
}
static int is_oct(int c)
{
    return c >= '0' && c <= '7';
}
static int is_hex(int c)
{
    return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int str_in(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return 1;
    return 0;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_core_float(const char *s, size_t len)
{
    size_t i = 0, d = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < len && is_dec(s[i]))
        i++, d++;
    if (i < len && s[i] == '.') {
        i++;
        while (i < len && is_dec(s[i]))
            i++, d++;
    }
    if (d == 0)
        return 0;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = 0;
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        while (i < len && is_dec(s[i]))
            i++, e++;
        if (e == 0)
            return 0;
    }
    return i == len;
}

/* Resolves a plain scalar with the YAML 1.2 core schema. *out stays NULL for null. */
static int resolve_plain(yparse_t *p, const char *s, size_t len, custos_ymark_t at, json_object **out)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
    static const char *const ninfs[] = {"-.inf", "-.Inf", "-.INF", NULL};
    static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
    char pbuf[48];

    *out = NULL;
    if (str_in(s, nulls))
        return 0;
    if (str_in(s, trues) || str_in(s, falses)) {
        *out = json_object_new_boolean(str_in(s, trues));
        return *out ? 0 : CUSTOS_ENOMEM;
    }
    size_t sign = (len > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    int base = 0;
    const char *digits = NULL;
    if (match_all(s + sign, len - sign, is_dec)) {
        base = 10;
        digits = s;
    } else if (len > 2 && s[0] == '0' && s[1] == 'o' && match_all(s + 2, len - 2, is_oct)) {
        base = 8;
        digits = s + 2;
    } else if (len > 2 && s[0] == '0' && s[1] == 'x' && match_all(s + 2, len - 2, is_hex)) {
        base = 16;
        digits = s + 2;
    }
    if (base) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(digits, &end, base);
        if (errno == ERANGE || !end || *end)
            return fail(p, CUSTOS_EINVAL, at, "integer '%s' is out of range (64-bit signed)",
                        printable(s, len, pbuf, sizeof(pbuf)));
        *out = json_object_new_int64(v);
        return *out ? 0 : CUSTOS_ENOMEM;
    }
    if (is_core_float(s, len) || str_in(s, infs) || str_in(s, ninfs) || str_in(s, nans)) {
        double d;
        if (str_in(s, infs))
            d = INFINITY;
        else if (str_in(s, ninfs))
            d = -INFINITY;
        else if (str_in(s, nans))
            d = NAN;
        else
            d = strtod(s, NULL);
        *out = json_object_new_double(d);
        return *out ? 0 : CUSTOS_ENOMEM;
    }
    *out = json_object_new_string_len(s, (int)len);
    return *out ? 0 : CUSTOS_ENOMEM;
}

/* Hands value (may be NULL, ownership taken) to the current parent, or makes it the root. */
static int attach(yparse_t *p, json_object *value, custos_ymark_t at)
{
    int rc;
    if (p->depth == 0) {
        p->root = value;
        p->have_root = 1;
        return 0;
    }
    frame_t *f = &p->stack[p->depth - 1];
    if (f->is_map) {
        if (json_object_object_add(f->obj, f->key, value) != 0) {
            json_object_put(value);
            return CUSTOS_ENOMEM;
        }
        rc = add_child(f->obj, f->key, f->key_mark, at);
        if (rc != 0) {
            free(f->key);
        }
        f->key = NULL;
        return rc;
    }
    if (json_object_array_add(f->obj, value) != 0) {
        json_object_put(value);
        return CUSTOS_ENOMEM;
    }
    return add_child(f->obj, NULL, at, at);
}

static int on_scalar(yparse_t *p, yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    custos_ymark_t at = to_mark(ev->start_mark);
    char pbuf[72];
    int rc;

    if (p->depth > 0 && p->stack[p->depth - 1].is_map && !p->stack[p->depth - 1].key) {
        frame_t *f = &p->stack[p->depth - 1];
        if (memchr(s, 0, len))
            return fail(p, CUSTOS_EINVAL, at, "mapping key contains a NUL byte");
        if (json_object_object_get_ex(f->obj, s, NULL))
            return fail(p, CUSTOS_EINVAL, at, "duplicate key '%s'", printable(s, len, pbuf, sizeof(pbuf)));
        f->key = strdup(s);
        if (!f->key)
            return CUSTOS_ENOMEM;
        f->key_mark = at;
        return 0;
    }
    json_object *v = NULL;
    if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        rc = resolve_plain(p, s, len, at, &v);
        if (rc != 0)
            return rc;
    } else {
        if (len > INT32_MAX)
            return fail(p, CUSTOS_ETOOBIG, at, "scalar too long");
        v = json_object_new_string_len(s, (int)len);
        if (!v)
            return CUSTOS_ENOMEM;
    }
    if (v && (rc = attach_meta(v, at)) != 0) {
        json_object_put(v);
        return rc;
    }
    return attach(p, v, at);
}

static int on_start(yparse_t *p, yaml_event_t *ev, int is_map)
{
    custos_ymark_t at = to_mark(ev->start_mark);
    int rc;
    if (p->depth > 0 && p->stack[p->depth - 1].is_map && !p->stack[p->depth - 1].key)
        return fail(p, CUSTOS_EINVAL, at, "complex mapping keys (a %s as a key) are not supported",
                    is_map ? "mapping" : "sequence");
    if (p->depth >= CUSTOS_YTREE_MAX_DEPTH)
        return fail(p, CUSTOS_EDEPTH, at, "nesting deeper than %d levels", CUSTOS_YTREE_MAX_DEPTH);
    json_object *obj = is_map ? json_object_new_object() : json_object_new_array();
    if (!obj)
        return CUSTOS_ENOMEM;
    if ((rc = attach_meta(obj, at)) != 0) {
        json_object_put(obj);
        return rc;
    }
    if ((rc = attach(p, obj, at)) != 0)
        return rc;
    frame_t *f = &p->stack[p->depth++];
    f->obj = obj;
    f->is_map = is_map;
    f->key = NULL;
    return 0;
}

static custos_ymark_t offset_mark(const char *src, size_t len, size_t off)
{
    custos_ymark_t m = {1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (src[i] == '\n') {
            m.line++;
            m.col = 1;
        } else if (((unsigned char)src[i] & 0xc0) != 0x80) {
            m.col++;
        }
    }
    return m;
}

static int parser_error(yparse_t *p, yaml_parser_t *yp)
{
    if (yp->error == YAML_MEMORY_ERROR)
        return fail(p, CUSTOS_ENOMEM, (custos_ymark_t){1, 1}, "out of memory");
    custos_ymark_t at =
        yp->error == YAML_READER_ERROR ? offset_mark(p->src, p->srclen, yp->problem_offset) : to_mark(yp->problem_mark);
    const char *problem = yp->problem ? yp->problem : "malformed input";
    if (yp->context && yp->error != YAML_READER_ERROR) {
        custos_ymark_t cm = to_mark(yp->context_mark);
        return fail(p, CUSTOS_EINVAL, at, "YAML syntax error: %s (%s at %u:%u)", problem, yp->context, cm.line, cm.col);
    }
    return fail(p, CUSTOS_EINVAL, at, "YAML syntax error: %s", problem);
}

static int check_node_event(yparse_t *p, yaml_event_t *ev, const yaml_char_t *anchor, const yaml_char_t *tag)
{
    custos_ymark_t at = to_mark(ev->start_mark);
    if (anchor)
        return fail(p, CUSTOS_EINVAL, at, "YAML anchors and aliases are not supported (write the value out in full)");
    if (tag)
        return fail(p, CUSTOS_EINVAL, at, "YAML tags are not supported");
    return 0;
}

int custos_ytree_parse(const char *yaml, size_t len, json_object **out, custos_ymark_t *where, char *msg, size_t msglen)
{
    custos_ymark_t dummy = {0};
    yparse_t p = {.src = yaml, .srclen = len, .where = where ? where : &dummy, .msg = msg, .msglen = msglen};
    yaml_parser_t yp;
    yaml_event_t ev;
    int rc = 0, done = 0, ndocs = 0;

    *out = NULL;
    if (msg && msglen)
        msg[0] = 0;
    if (len > CUSTOS_YTREE_MAX_BYTES)
        return fail(&p, CUSTOS_ETOOBIG, (custos_ymark_t){1, 1}, "document is larger than %zu bytes (4 MiB)",
                    CUSTOS_YTREE_MAX_BYTES);
    if (!yaml_parser_initialize(&yp))
        return fail(&p, CUSTOS_ENOMEM, (custos_ymark_t){1, 1}, "out of memory");
    yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);

    while (!done) {
        if (!yaml_parser_parse(&yp, &ev)) {
            rc = parser_error(&p, &yp);
            goto fail;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1)
                rc = fail(&p, CUSTOS_EINVAL, to_mark(ev.start_mark), "only one YAML document is allowed");
            break;
        case YAML_SCALAR_EVENT:
            rc = check_node_event(&p, &ev, ev.data.scalar.anchor, ev.data.scalar.tag);
            if (rc == 0)
                rc = on_scalar(&p, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = check_node_event(&p, &ev, ev.data.sequence_start.anchor,
                                  ev.data.sequence_start.implicit ? NULL : ev.data.sequence_start.tag);
            if (rc == 0)
                rc = on_start(&p, &ev, 0);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = check_node_event(&p, &ev, ev.data.mapping_start.anchor,
                                  ev.data.mapping_start.implicit ? NULL : ev.data.mapping_start.tag);
            if (rc == 0)
                rc = on_start(&p, &ev, 1);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (p.depth > 0)
                p.depth--;
            break;
        case YAML_ALIAS_EVENT:
            rc = fail(&p, CUSTOS_EINVAL, to_mark(ev.start_mark),
                      "YAML anchors and aliases are not supported (write the value out in full)");
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc != 0)
            goto fail;
    }
    yaml_parser_delete(&yp);
    *out = p.root;
    return 0;

fail:
    for (int i = 0; i < p.depth; i++)
        free(p.stack[i].key);
    json_object_put(p.root);
    yaml_parser_delete(&yp);
    if (rc == CUSTOS_ENOMEM && msg && msglen && !msg[0])
        fail(&p, rc, (custos_ymark_t){1, 1}, "out of memory");
    return rc;
}

static ymeta_t *meta_of(json_object *node)
{
    return node ? json_object_get_userdata(node) : NULL;
}

custos_ymark_t custos_ytree_mark(json_object *node)
{
    ymeta_t *m = meta_of(node);
    custos_ymark_t none = {0, 0};
    return m ? m->mark : none;
}

size_t custos_ytree_count(json_object *coll)
{
    ymeta_t *m = meta_of(coll);
    return m ? m->n : 0;
}

const char *custos_ytree_key(json_object *coll, size_t i)
{
    ymeta_t *m = meta_of(coll);
    return (m && i < m->n) ? m->kids[i].key : NULL;
}

custos_ymark_t custos_ytree_key_mark(json_object *coll, size_t i)
{
    ymeta_t *m = meta_of(coll);
    custos_ymark_t none = {0, 0};
    return (m && i < m->n) ? m->kids[i].key_mark : none;
}

custos_ymark_t custos_ytree_val_mark(json_object *coll, size_t i)
{
    ymeta_t *m = meta_of(coll);
    custos_ymark_t none = {0, 0};
    return (m && i < m->n) ? m->kids[i].val_mark : none;
}

int custos_ytree_find(json_object *map, const char *key, json_object **val, custos_ymark_t *key_mark,
                      custos_ymark_t *val_mark)
{
    ymeta_t *m = meta_of(map);
    if (!m || !json_object_is_type(map, json_type_object))
        return 0;
    for (size_t i = 0; i < m->n; i++) {
        if (m->kids[i].key && strcmp(m->kids[i].key, key) == 0) {
            if (val)
                json_object_object_get_ex(map, key, val);
            if (key_mark)
                *key_mark = m->kids[i].key_mark;
            if (val_mark)
                *val_mark = m->kids[i].val_mark;
            return 1;
        }
    }
    return 0;
}
