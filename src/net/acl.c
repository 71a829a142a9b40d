/* SPDX-License-Identifier: Apache-2.0
 * Network ACL: client address resolution through trusted proxies (X-Forwarded-For, RFC 7239
 * Forwarded) and the admit decision against precompiled prefix sets. */
#include "net/acl.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int custos_acl_init(custos_acl_t *a, bool public_access, bool default_deny, const custos_cidr_t *ip_rules,
                    size_t n_ip_rules, const custos_cidr_t *trusted, size_t n_trusted)
{
    memset(a, 0, sizeof(*a));
    a->admit_all = public_access && !default_deny;
    int rc = custos_ipset_build(&a->trusted_proxies, trusted, n_trusted);
    if (rc)
        goto fail;
    if (a->admit_all)
        return 0;
    if (public_access) {
        rc = custos_ipset_build(&a->admit, ip_rules, n_ip_rules);
    } else {
        const custos_cidr_t *priv;
        size_t np = custos_cidr_private_ranges(&priv);
        custos_cidr_t *all = malloc((np + n_ip_rules) * sizeof(*all));
        if (!all) {
            rc = CUSTOS_ENOMEM;
            goto fail;
        }
        memcpy(all, priv, np * sizeof(*all));
        if (n_ip_rules)
            memcpy(all + np, ip_rules, n_ip_rules * sizeof(*all));
        rc = custos_ipset_build(&a->admit, all, np + n_ip_rules);
        free(all);
    }
    if (rc)
        goto fail;
    return 0;
fail:
    custos_acl_dispose(a);
    return rc;
}

void custos_acl_dispose(custos_acl_t *a)
{
    if (!a)
        return;
    custos_ipset_dispose(&a->admit);
    custos_ipset_dispose(&a->trusted_proxies);
}

bool custos_acl_admits(const custos_acl_t *a, const custos_ip_t *client)
{
    return a->admit_all || custos_ipset_contains(&a->admit, client);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Port digits p[0..n): 1..5 digits, <= 65535. */
static bool valid_port(const char *p, size_t n)
{
    unsigned v = 0;
    if (n < 1 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v <= 65535;
}

/* A node: "IPv4", "IPv4:port", "IPv6", "[IPv6]" or "[IPv6]:port". */
static int parse_node(const char *s, size_t n, custos_ip_t *ip)
{
    if (n == 0)
        return CUSTOS_EINVAL;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return CUSTOS_EINVAL;
        size_t rest = n - (size_t)(close - s) - 1;
        if (rest && (close[1] != ':' || !valid_port(close + 2, rest - 1)))
            return CUSTOS_EINVAL;
        size_t alen = (size_t)(close - s) - 1;
        if (!memchr(s + 1, ':', alen))
            return CUSTOS_EINVAL; /* brackets are for IPv6 only */
        return custos_ip_parse(s + 1, alen, ip);
    }
    const char *colon = memchr(s, ':', n);
    if (colon && memchr(s, '.', (size_t)(colon - s)) && !memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) {
        /* IPv4:port */
        if (!valid_port(colon + 1, n - (size_t)(colon - s) - 1))
            return CUSTOS_EINVAL;
        return custos_ip_parse(s, (size_t)(colon - s), ip);
    }
    return custos_ip_parse(s, n, ip);
}

/* Extracts the node of the "for" parameter of one Forwarded element s[0..n) (RFC 7239 section 4). */
static int forwarded_for(const char *s, size_t n, const char **node, size_t *node_len)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ';')
            j++;
        /* pair s[i..j) */
        size_t a = i, b = j;
        while (a < b && is_ows(s[a]))
            a++;
        while (b > a && is_ows(s[b - 1]))
            b--;
        const char *eq = memchr(s + a, '=', b - a);
        if (!eq)
            return CUSTOS_EINVAL;
        size_t klen = (size_t)(eq - (s + a));
        if (klen == 3 && strncasecmp(s + a, "for", 3) == 0) {
            const char *v = eq + 1;
            size_t vlen = (size_t)(s + b - v);
            if (vlen >= 2 && v[0] == '"') {
                if (v[vlen - 1] != '"' || memchr(v + 1, '"', vlen - 2) || memchr(v + 1, '\\', vlen - 2))
                    return CUSTOS_EINVAL;
                v++;
                vlen -= 2;
            } else if (memchr(v, '"', vlen)) {
                return CUSTOS_EINVAL;
            }
            *node = v;
            *node_len = vlen;
            return 0;
        }
        i = j + 1;
    }
    return CUSTOS_EINVAL;
}

typedef enum { WALK_MORE, WALK_DONE, WALK_BAD } walk_t;

typedef struct walk {
    const custos_ipset_t *trusted;
    unsigned hops;
    custos_ip_t last; /* last (leftmost so far) hop parsed */
} walk_state_t;

/* Walks one header field value from the right. */
static walk_t walk_value(walk_state_t *w, const char *v, size_t len, bool forwarded)
{
    size_t end = len;
    for (;;) {
        size_t start = end;
        while (start > 0 && v[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && is_ows(v[a]))
            a++;
        while (b > a && is_ows(v[b - 1]))
            b--;
        if (++w->hops > CUSTOS_ACL_MAX_HOPS || a == b)
            return WALK_BAD;
        const char *node = v + a;
        size_t nlen = b - a;
        if (forwarded && forwarded_for(v + a, b - a, &node, &nlen) != 0)
            return WALK_BAD;
        custos_ip_t ip;
        if (parse_node(node, nlen, &ip) != 0)
            return WALK_BAD;
        w->last = ip;
        if (!custos_ipset_contains(w->trusted, &ip))
            return WALK_DONE;
        if (start == 0)
            return WALK_MORE;
        end = start - 1;
    }
}

static bool name_is(const custos_http_header_t *h, const char *name, size_t nl)
{
    return h->name_len == nl && strncasecmp(h->name, name, nl) == 0;
}

custos_acl_source_t custos_acl_client(const custos_ipset_t *trusted, const struct sockaddr_storage *peer,
                                      const custos_http_header_t *headers, size_t n, custos_ip_t *client)
{
    if (!custos_ip_from_sockaddr(peer, client))
        return CUSTOS_ACL_FROM_LOCAL;
    if (!trusted || trusted->n == 0 || !custos_ipset_contains(trusted, client))
        return CUSTOS_ACL_FROM_PEER;
    static const char XFF[] = "x-forwarded-for", FWD[] = "forwarded";
    bool have_xff = false;
    for (size_t i = 0; i < n && !have_xff; i++)
        have_xff = name_is(&headers[i], XFF, sizeof(XFF) - 1);
    const char *want = have_xff ? XFF : FWD;
    size_t wl = have_xff ? sizeof(XFF) - 1 : sizeof(FWD) - 1;
    walk_state_t w = {.trusted = trusted};
    for (size_t i = n; i-- > 0;) {
        if (!name_is(&headers[i], want, wl))
            continue;
        walk_t r = walk_value(&w, headers[i].value, headers[i].value_len, !have_xff);
        if (r == WALK_BAD)
            return CUSTOS_ACL_FROM_MALFORMED;
        if (r == WALK_DONE) {
            *client = w.last;
            return CUSTOS_ACL_FROM_FORWARDED;
        }
    }
    if (w.hops == 0)
        return CUSTOS_ACL_FROM_PEER;
    *client = w.last; /* every hop was a trusted proxy: the leftmost is the client */
    return CUSTOS_ACL_FROM_FORWARDED;
}
