/* SPDX-License-Identifier: Apache-2.0
 * IP address and CIDR parsing, and compiled prefix sets (sorted merged ranges, binary search). */
#include "util/cidr.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

typedef struct u128 {
    uint64_t hi, lo;
} u128_t;

static const uint8_t V4_PREFIX[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static u128_t to_u128(const custos_ip_t *ip)
{
    u128_t v = {0, 0};
    for (int i = 0; i < 8; i++)
        v.hi = v.hi << 8 | ip->b[i];
    for (int i = 8; i < 16; i++)
        v.lo = v.lo << 8 | ip->b[i];
    return v;
}

static int cmp_u128(u128_t a, u128_t b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}

bool custos_ip_is_v4(const custos_ip_t *ip)
{
    return memcmp(ip->b, V4_PREFIX, 12) == 0;
}

int custos_ip_parse(const char *s, size_t len, custos_ip_t *out)
{
    char tmp[64];
    if (!s || len == 0 || len >= sizeof(tmp))
        return CUSTOS_EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    if (strlen(tmp) != len)
        return CUSTOS_EINVAL;
    if (memchr(tmp, ':', len)) {
        if (inet_pton(AF_INET6, tmp, out->b) != 1)
            return CUSTOS_EINVAL;
        return 0;
    }
    /* inet_pton(AF_INET) takes exactly four decimal parts, no leading zeros (glibc). */
    memcpy(out->b, V4_PREFIX, 12);
    if (inet_pton(AF_INET, tmp, out->b + 12) != 1)
        return CUSTOS_EINVAL;
    return 0;
}

int custos_cidr_parse(const char *s, size_t len, custos_cidr_t *out, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    const char *slash = s ? memchr(s, '/', len) : NULL;
    size_t alen = slash ? (size_t)(slash - s) : len;
    custos_ip_t ip;
    if (custos_ip_parse(s, alen, &ip) != 0) {
        *why = "not an IPv4 or IPv6 address (expected e.g. 10.0.0.0/8, 203.0.113.7 or 2001:db8::/32)";
        return CUSTOS_EINVAL;
    }
    bool v4 = !memchr(s, ':', alen);
    unsigned max = v4 ? 32 : 128, bits = max;
    if (slash) {
        const char *p = slash + 1, *end = s + len;
        if (p == end || end - p > 3) {
            *why = v4 ? "prefix length must be 0..32" : "prefix length must be 0..128";
            return CUSTOS_EINVAL;
        }
        bits = 0;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9' || (p == slash + 1 && *p == '0' && end - p > 1)) {
                *why = "prefix length must be a decimal number without leading zeros";
                return CUSTOS_EINVAL;
            }
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max) {
            *why = v4 ? "prefix length must be 0..32" : "prefix length must be 0..128";
            return CUSTOS_EINVAL;
        }
    }
    unsigned total = v4 ? bits + 96 : bits;
    for (unsigned i = total; i < 128; i++) {
        if (ip.b[i / 8] & (0x80u >> (i % 8))) {
            *why = "host bits are set below the prefix length (write the network address, e.g. 10.0.0.0/8)";
            return CUSTOS_EINVAL;
        }
    }
    out->addr = ip;
    out->bits = (uint8_t)total;
    return 0;
}

bool custos_ip_from_sockaddr(const struct sockaddr_storage *ss, custos_ip_t *out)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        memcpy(out->b, V4_PREFIX, 12);
        memcpy(out->b + 12, &in->sin_addr, 4);
        return true;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        memcpy(out->b, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

void custos_ip_to_sockaddr(const custos_ip_t *ip, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (custos_ip_is_v4(ip)) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, ip->b + 12, 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, ip->b, 16);
    }
}

const char *custos_ip_format(const custos_ip_t *ip, char *out, size_t outlen)
{
    const char *r = custos_ip_is_v4(ip) ? inet_ntop(AF_INET, ip->b + 12, out, (socklen_t)outlen)
                                        : inet_ntop(AF_INET6, ip->b, out, (socklen_t)outlen);
    if (!r && outlen)
        out[0] = 0;
    return out;
}

#define V4(a, b, c, d, n)                                                                                              \
    {                                                                                                                  \
        {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d}}, 96 + (n)                                             \
    }
static const custos_cidr_t PRIVATE[] = {
    V4(10, 0, 0, 0, 8),      V4(172, 16, 0, 0, 12),
    V4(192, 168, 0, 0, 16),  V4(127, 0, 0, 0, 8),
    V4(169, 254, 0, 0, 16),  {{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}, 128}, /* ::1 */
    {{{0xfc, 0}}, 7},                                                                   /* fc00::/7 unique local */
    {{{0xfe, 0x80, 0}}, 10},                                                            /* fe80::/10 link-local */
};
#undef V4

size_t custos_cidr_private_ranges(const custos_cidr_t **out)
{
    *out = PRIVATE;
    return sizeof(PRIVATE) / sizeof(PRIVATE[0]);
}

typedef struct range {
    u128_t lo, hi;
} range_t;

static int cmp_range(const void *a, const void *b)
{
    const range_t *x = a, *y = b;
    int d = cmp_u128(x->lo, y->lo);
    return d ? d : cmp_u128(x->hi, y->hi);
}

static range_t cidr_range(const custos_cidr_t *c)
{
    range_t r;
    r.lo = to_u128(&c->addr);
    r.hi = r.lo;
    unsigned host = 128u - c->bits; /* host bits to set in hi */
    if (host >= 64) {
        r.hi.lo = ~(uint64_t)0;
        r.hi.hi |= host >= 128 ? ~(uint64_t)0 : (host == 64 ? 0 : (~(uint64_t)0 >> (128 - host)));
    } else if (host > 0) {
        r.hi.lo |= ~(uint64_t)0 >> (64 - host);
    }
    return r;
}

int custos_ipset_build(custos_ipset_t *s, const custos_cidr_t *c, size_t n)
{
    s->r = NULL;
    s->n = 0;
    if (n == 0)
        return 0;
    range_t *tmp = malloc(n * sizeof(*tmp));
    if (!tmp)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        tmp[i] = cidr_range(&c[i]);
    qsort(tmp, n, sizeof(*tmp), cmp_range);
    /* merge overlapping and adjacent ranges */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0) {
            range_t *last = &tmp[m - 1];
            u128_t next = last->hi;
            bool full = next.hi == ~(uint64_t)0 && next.lo == ~(uint64_t)0;
            if (!full) {
                next.lo++;
                if (next.lo == 0)
                    next.hi++;
            }
            if (full || cmp_u128(tmp[i].lo, next) <= 0) {
                if (cmp_u128(tmp[i].hi, last->hi) > 0)
                    last->hi = tmp[i].hi;
                continue;
            }
        }
        tmp[m++] = tmp[i];
    }
    s->r = malloc(m * sizeof(*s->r));
    if (!s->r) {
        free(tmp);
        return CUSTOS_ENOMEM;
    }
    for (size_t i = 0; i < m; i++) {
        s->r[i][0] = tmp[i].lo.hi;
        s->r[i][1] = tmp[i].lo.lo;
        s->r[i][2] = tmp[i].hi.hi;
        s->r[i][3] = tmp[i].hi.lo;
    }
    s->n = m;
    free(tmp);
    return 0;
}

bool custos_ipset_contains(const custos_ipset_t *s, const custos_ip_t *ip)
{
    if (!s || s->n == 0)
        return false;
    u128_t v = to_u128(ip);
    /* last range whose lo <= v */
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        u128_t rl = {s->r[mid][0], s->r[mid][1]};
        if (cmp_u128(rl, v) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    u128_t rh = {s->r[lo - 1][2], s->r[lo - 1][3]};
    return cmp_u128(v, rh) <= 0;
}

void custos_ipset_dispose(custos_ipset_t *s)
{
    if (!s)
        return;
    free(s->r);
    s->r = NULL;
    s->n = 0;
}
