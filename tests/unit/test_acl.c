/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for the network ACL and mutual-TLS principals: CIDR parsing, prefix sets (IPv4, IPv6,
 * v4-mapped), private ranges, X-Forwarded-For / Forwarded walking through trusted proxies, the config
 * section (errors with line:column), and client-certificate → principal mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "api/access.h"
#include "config/config.h"
#include "net/acl.h"
#include "net/peercert.h"
#include "util/cidr.h"
#include "util/err.h"

#define DIGEST_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define CFG_BASE                                                                                                       \
    "listeners:\n  - address: \"127.0.0.1:8443\"\n"                                                                    \
    "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"                            \
    "deployments:\n  - name: demo\n    backends: [mock]\n"
#define CFG_IDENTITY "identity:\n  api_keys:\n    - name: demo\n      sha256: \"" DIGEST_TEST "\"\n"

static custos_ip_t ip(const char *s)
{
    custos_ip_t r;
    assert_int_equal(custos_ip_parse(s, strlen(s), &r), 0);
    return r;
}

static custos_cidr_t cidr(const char *s)
{
    custos_cidr_t c;
    const char *why = NULL;
    int rc = custos_cidr_parse(s, strlen(s), &c, &why);
    if (rc != 0)
        fail_msg("cidr %s: %s", s, why ? why : "?");
    return c;
}

static void test_cidr_parse_table(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int ok;
        int bits;
    } t[] = {
        {"10.0.0.0/8", 1, 104},
        {"203.0.113.7", 1, 128},
        {"0.0.0.0/0", 1, 96},
        {"2001:db8::/32", 1, 32},
        {"::/0", 1, 0},
        {"::1", 1, 128},
        {"fe80::/10", 1, 10},
        {"::ffff:10.0.0.0/104", 1, 104},
        {"192.168.1.0/24", 1, 120},
        {"10.0.0.1/8", 0, 0},     /* host bits set */
        {"2001:db8::1/32", 0, 0}, /* host bits set */
        {"10.0.0.0/33", 0, 0},
        {"2001:db8::/129", 0, 0},
        {"10.0.0.0/", 0, 0},
        {"10.0.0.0/08", 0, 0},
        {"10.0.0.0/-1", 0, 0},
        {"10.0.0.0/8/8", 0, 0},
        {"10.0.0", 0, 0},
        {"10.0.0.256", 0, 0},
        {"010.0.0.1", 0, 0},
        {"1.2.3.4 ", 0, 0},
        {" 1.2.3.4", 0, 0},
        {"fe80::1%eth0", 0, 0},
        {"[::1]", 0, 0},
        {"example.com", 0, 0},
        {"", 0, 0},
        {"::g", 0, 0},
        {"1:2:3:4:5:6:7:8:9", 0, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        custos_cidr_t c;
        const char *why = NULL;
        int rc = custos_cidr_parse(t[i].s, strlen(t[i].s), &c, &why);
        if (t[i].ok) {
            if (rc != 0)
                fail_msg("'%s' should parse: %s", t[i].s, why);
            assert_int_equal(c.bits, t[i].bits);
        } else {
            if (rc != CUSTOS_EINVAL)
                fail_msg("'%s' should be refused", t[i].s);
            assert_non_null(why);
        }
    }
    /* len is honoured (no NUL needed) */
    custos_cidr_t c;
    assert_int_equal(custos_cidr_parse("10.0.0.0/8xyz", 10, &c, NULL), 0);
    assert_int_equal(c.bits, 96 + 8);
}

static void test_ipset_match(void **state)
{
    (void)state;
    custos_cidr_t rules[] = {cidr("10.0.0.0/8"),  cidr("203.0.113.7"),  cidr("2001:db8::/32"),
                             cidr("10.1.0.0/16"), cidr("192.0.2.0/25"), cidr("192.0.2.128/25")};
    custos_ipset_t s;
    assert_int_equal(custos_ipset_build(&s, rules, 6), 0);
    assert_int_equal(s.n, 4); /* 10.1/16 inside 10/8; the two /25 are adjacent and merge */
    custos_ip_t x;
    x = ip("10.0.0.0");
    assert_true(custos_ipset_contains(&s, &x));
    x = ip("10.255.255.255");
    assert_true(custos_ipset_contains(&s, &x));
    x = ip("11.0.0.0");
    assert_false(custos_ipset_contains(&s, &x));
    x = ip("9.255.255.255");
    assert_false(custos_ipset_contains(&s, &x));
    x = ip("203.0.113.7");
    assert_true(custos_ipset_contains(&s, &x));
    x = ip("203.0.113.8");
    assert_false(custos_ipset_contains(&s, &x));
    x = ip("192.0.2.200");
    assert_true(custos_ipset_contains(&s, &x));
    x = ip("2001:db8:ffff::1");
    assert_true(custos_ipset_contains(&s, &x));
    x = ip("2001:db9::");
    assert_false(custos_ipset_contains(&s, &x));
    /* v4-mapped IPv6 is IPv4 */
    x = ip("::ffff:10.9.8.7");
    assert_true(custos_ipset_contains(&s, &x));
    assert_true(custos_ip_is_v4(&x));
    x = ip("::ffff:11.0.0.1");
    assert_false(custos_ipset_contains(&s, &x));
    /* v4 rules do not match other IPv6 addresses (e.g. the old v4-compatible ::a.b.c.d) */
    x = ip("::10.0.0.1");
    assert_false(custos_ipset_contains(&s, &x));
    custos_ipset_dispose(&s);

    /* from sockaddrs, v4-mapped peers included */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    in6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr);
    assert_true(custos_ip_from_sockaddr(&ss, &x));
    char buf[CUSTOS_IP_STRLEN];
    assert_string_equal(custos_ip_format(&x, buf, sizeof(buf)), "127.0.0.1");
    ss.ss_family = AF_UNIX;
    assert_false(custos_ip_from_sockaddr(&ss, &x));

    /* the empty set and the full set */
    assert_int_equal(custos_ipset_build(&s, NULL, 0), 0);
    x = ip("1.2.3.4");
    assert_false(custos_ipset_contains(&s, &x));
    custos_cidr_t all[] = {cidr("::/0"), cidr("0.0.0.0/0")};
    assert_int_equal(custos_ipset_build(&s, all, 2), 0);
    assert_int_equal(s.n, 1);
    assert_true(custos_ipset_contains(&s, &x));
    x = ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_true(custos_ipset_contains(&s, &x));
    custos_ipset_dispose(&s);
}

static void test_acl_modes(void **state)
{
    (void)state;
    custos_cidr_t rules[] = {cidr("203.0.113.0/24"), cidr("2001:db8::/32")};
    custos_acl_t a;
    custos_ip_t x;
    /* disabled: private ranges + rules */
    assert_int_equal(custos_acl_init(&a, false, false, rules, 2, NULL, 0), 0);
    const char *yes[] = {"10.1.2.3",    "172.16.0.1",  "172.31.255.255",    "192.168.9.9", "127.0.0.1",
                         "169.254.1.1", "::1",         "fd00::1",           "fc00::5",     "fe80::1",
                         "203.0.113.9", "2001:db8::7", "::ffff:192.168.0.1"};
    const char *no[] = {"8.8.8.8", "172.32.0.1", "100.64.0.1", "2001:4860::8888", "::2", "fec0::1", "198.51.100.1"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        x = ip(yes[i]);
        if (!custos_acl_admits(&a, &x))
            fail_msg("disabled: %s should be admitted", yes[i]);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        x = ip(no[i]);
        if (custos_acl_admits(&a, &x))
            fail_msg("disabled: %s should be refused", no[i]);
    }
    custos_acl_dispose(&a);
    /* enabled + deny: exactly the rules (not even loopback) */
    assert_int_equal(custos_acl_init(&a, true, true, rules, 2, NULL, 0), 0);
    x = ip("127.0.0.1");
    assert_false(custos_acl_admits(&a, &x));
    x = ip("10.0.0.1");
    assert_false(custos_acl_admits(&a, &x));
    x = ip("203.0.113.200");
    assert_true(custos_acl_admits(&a, &x));
    x = ip("2001:db8:1::1");
    assert_true(custos_acl_admits(&a, &x));
    custos_acl_dispose(&a);
    /* enabled + deny with no rules: nobody */
    assert_int_equal(custos_acl_init(&a, true, true, NULL, 0, NULL, 0), 0);
    x = ip("127.0.0.1");
    assert_false(custos_acl_admits(&a, &x));
    custos_acl_dispose(&a);
    /* enabled + allow: everybody */
    assert_int_equal(custos_acl_init(&a, true, false, NULL, 0, NULL, 0), 0);
    x = ip("8.8.8.8");
    assert_true(custos_acl_admits(&a, &x));
    custos_acl_dispose(&a);
}

/* ---------- client resolution ---------- */

#define MAXH 8
typedef struct hdrs {
    custos_http_header_t h[MAXH];
    size_t n;
} hdrs_t;

static void add(hdrs_t *h, const char *name, const char *value)
{
    assert_true(h->n < MAXH);
    h->h[h->n++] = (custos_http_header_t){name, strlen(name), value, strlen(value)};
}

static struct sockaddr_storage peer(const char *s)
{
    struct sockaddr_storage ss;
    custos_ip_t x = ip(s);
    custos_ip_to_sockaddr(&x, &ss);
    return ss;
}

typedef struct walk_case {
    const char *peer;
    const char *xff1, *xff2; /* X-Forwarded-For fields (NULL = absent) */
    const char *fwd;         /* Forwarded field */
    custos_acl_source_t want_src;
    const char *want_client;
} walk_case_t;

static void test_forwarded_walk(void **state)
{
    (void)state;
    custos_cidr_t tp[] = {cidr("127.0.0.1/32"), cidr("10.0.0.0/8"), cidr("::1/128")};
    custos_ipset_t trusted;
    assert_int_equal(custos_ipset_build(&trusted, tp, 3), 0);
    static const walk_case_t t[] = {
        /* untrusted peer: headers ignored (spoofing) */
        {"198.51.100.7", "10.1.2.3", NULL, NULL, CUSTOS_ACL_FROM_PEER, "198.51.100.7"},
        {"198.51.100.7", NULL, NULL, "for=10.1.2.3", CUSTOS_ACL_FROM_PEER, "198.51.100.7"},
        {"198.51.100.7", "garbage", NULL, NULL, CUSTOS_ACL_FROM_PEER, "198.51.100.7"},
        /* trusted peer without headers */
        {"127.0.0.1", NULL, NULL, NULL, CUSTOS_ACL_FROM_PEER, "127.0.0.1"},
        /* rightmost untrusted hop wins; left of it is client-controlled */
        {"127.0.0.1", "203.0.113.9", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        {"127.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.5", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        {"127.0.0.1", "junk, 203.0.113.9", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        {"127.0.0.1", "10.1.2.3", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "10.1.2.3"}, /* all trusted: leftmost */
        {"127.0.0.1", "10.9.9.9,10.1.2.3", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "10.9.9.9"},
        /* several fields: concatenated in order, walked from the last */
        {"127.0.0.1", "198.51.100.1", "10.0.0.2", NULL, CUSTOS_ACL_FROM_FORWARDED, "198.51.100.1"},
        {"127.0.0.1", "198.51.100.1", "203.0.113.4", NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.4"},
        /* ports and brackets */
        {"127.0.0.1", "203.0.113.9:5555", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        {"127.0.0.1", "[2001:db8::1]:443", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "2001:db8::1"},
        {"127.0.0.1", "2001:db8::1", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "2001:db8::1"},
        {"::1", " 203.0.113.9 ,\t10.0.0.1 ", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        {"::ffff:127.0.0.1", "203.0.113.9", NULL, NULL, CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        /* malformed from a trusted proxy: the peer */
        {"127.0.0.1", "garbage", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "unknown", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "203.0.113.9,", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "203.0.113.9, 10.0.0.1, nope", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "[203.0.113.9]", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "203.0.113.9:99999", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", "[2001:db8::1", NULL, NULL, CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        /* Forwarded (RFC 7239) when there is no X-Forwarded-For */
        {"127.0.0.1", NULL, NULL, "for=203.0.113.9", CUSTOS_ACL_FROM_FORWARDED, "203.0.113.9"},
        {"127.0.0.1", NULL, NULL, "for=\"[2001:db8::1]\"", CUSTOS_ACL_FROM_FORWARDED, "2001:db8::1"},
        {"127.0.0.1", NULL, NULL, "For=\"[2001:db8:cafe::17]:4711\"", CUSTOS_ACL_FROM_FORWARDED, "2001:db8:cafe::17"},
        {"127.0.0.1", NULL, NULL, "for=192.0.2.60;proto=http;by=203.0.113.43", CUSTOS_ACL_FROM_FORWARDED, "192.0.2.60"},
        {"127.0.0.1", NULL, NULL, "for=198.51.100.1, for=192.0.2.43;proto=https, for=10.0.0.1",
         CUSTOS_ACL_FROM_FORWARDED, "192.0.2.43"},
        {"127.0.0.1", NULL, NULL, "proto=https;for=\"192.0.2.43:80\"", CUSTOS_ACL_FROM_FORWARDED, "192.0.2.43"},
        {"127.0.0.1", NULL, NULL, "for=unknown", CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", NULL, NULL, "for=_hidden", CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", NULL, NULL, "proto=https", CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", NULL, NULL, "for=\"[2001:db8::1]", CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", NULL, NULL, "for=[2001:db8::1]\"", CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        {"127.0.0.1", NULL, NULL, "for", CUSTOS_ACL_FROM_MALFORMED, "127.0.0.1"},
        /* X-Forwarded-For takes precedence over Forwarded */
        {"127.0.0.1", "203.0.113.1", NULL, "for=203.0.113.2", CUSTOS_ACL_FROM_FORWARDED, "203.0.113.1"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        hdrs_t h = {.n = 0};
        add(&h, "Host", "x");
        if (t[i].xff1)
            add(&h, "X-Forwarded-For", t[i].xff1);
        add(&h, "content-type", "application/json");
        if (t[i].xff2)
            add(&h, "x-forwarded-for", t[i].xff2);
        if (t[i].fwd)
            add(&h, "Forwarded", t[i].fwd);
        struct sockaddr_storage p = peer(t[i].peer);
        custos_ip_t got;
        custos_acl_source_t src = custos_acl_client(&trusted, &p, h.h, h.n, &got);
        char buf[CUSTOS_IP_STRLEN];
        custos_ip_format(&got, buf, sizeof(buf));
        custos_ip_t want = ip(t[i].want_client);
        if (src != t[i].want_src || memcmp(&got, &want, sizeof(want)) != 0)
            fail_msg("case %zu (xff '%s' fwd '%s'): got source %d client %s, want %d %s", i,
                     t[i].xff1 ? t[i].xff1 : "-", t[i].fwd ? t[i].fwd : "-", (int)src, buf, (int)t[i].want_src,
                     t[i].want_client);
    }
    /* a chain longer than CUSTOS_ACL_MAX_HOPS of trusted proxies is malformed */
    char longchain[64 * 12] = "203.0.113.9";
    for (int i = 0; i < CUSTOS_ACL_MAX_HOPS + 2; i++)
        strcat(longchain, ",10.0.0.1");
    hdrs_t h = {.n = 0};
    add(&h, "X-Forwarded-For", longchain);
    struct sockaddr_storage p = peer("127.0.0.1");
    custos_ip_t got;
    assert_int_equal(custos_acl_client(&trusted, &p, h.h, h.n, &got), CUSTOS_ACL_FROM_MALFORMED);
    /* unix peers are local */
    memset(&p, 0, sizeof(p));
    p.ss_family = AF_UNIX;
    assert_int_equal(custos_acl_client(&trusted, &p, h.h, h.n, &got), CUSTOS_ACL_FROM_LOCAL);
    /* no trusted proxies at all: always the peer */
    custos_ipset_t empty = {0};
    p = peer("127.0.0.1");
    assert_int_equal(custos_acl_client(&empty, &p, h.h, h.n, &got), CUSTOS_ACL_FROM_PEER);
    custos_ipset_dispose(&trusted);
}

/* ---------- config ---------- */

static int load(const char *yaml, custos_config_t **c, char *err, size_t errlen)
{
    return custos_config_load_string("t.yaml", yaml, strlen(yaml), c, err, errlen);
}

static void expect_error(const char *yaml, const char *want)
{
    custos_config_t *c = NULL;
    char err[1024];
    int rc = load(yaml, &c, err, sizeof(err));
    if (rc == 0) {
        custos_config_unref(c);
        fail_msg("config should be refused (want '%s')", want);
    }
    if (!strstr(err, want))
        fail_msg("error '%s' lacks '%s'", err, want);
}

static void test_config_network(void **state)
{
    (void)state;
    custos_config_t *c = NULL;
    char err[1024];
    /* absent: not configured */
    assert_int_equal(load(CFG_BASE CFG_IDENTITY, &c, err, sizeof(err)), 0);
    assert_false(c->network.configured);
    assert_null(c->network.acl);
    custos_config_unref(c);
    /* defaults: enabled + allow */
    assert_int_equal(load(CFG_BASE CFG_IDENTITY "network: {}\n", &c, err, sizeof(err)), 0);
    assert_true(c->network.configured);
    assert_true(c->network.public_access);
    assert_false(c->network.default_deny);
    assert_true(c->network.acl->admit_all);
    custos_config_unref(c);
    /* full */
    const char *full = CFG_BASE CFG_IDENTITY "network:\n"
                                             "  public_network_access: enabled\n"
                                             "  default_action: deny\n"
                                             "  ip_rules: [\"10.1.2.3\", \"2001:db8::/32\", 203.0.113.0/24]\n"
                                             "  trusted_proxies: [\"127.0.0.1/32\"]\n";
    if (load(full, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->network.n_ip_rules, 3);
    assert_int_equal(c->network.n_trusted_proxies, 1);
    custos_ip_t x = ip("10.1.2.3");
    assert_true(custos_acl_admits(c->network.acl, &x));
    x = ip("127.0.0.1");
    assert_false(custos_acl_admits(c->network.acl, &x));
    assert_true(custos_ipset_contains(&c->network.acl->trusted_proxies, &x));
    custos_config_unref(c);

    /* errors carry line:column of the offending value */
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  ip_rules:\n    - 10.0.0.0/8\n    - 10.0.0.1/8\n",
                 "t.yaml:17:7: network.ip_rules[1]: '10.0.0.1/8' is not a valid IP address or CIDR: host bits");
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  trusted_proxies: [\"300.1.1.1\"]\n",
                 "t.yaml:15:21: network.trusted_proxies[0]: '300.1.1.1' is not a valid IP address or CIDR");
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  ip_rules: [\"2001:db8::/200\"]\n", "prefix length must be 0..128");
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  ip_rules: [42]\n", "network.ip_rules[0]: expected a string");
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  public_network_access: off\n",
                 "network.public_network_access: expected one of enabled, disabled");
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  default_action: block\n",
                 "network.default_action: expected one of allow, deny");
    expect_error(CFG_BASE CFG_IDENTITY "network:\n  iprules: []\n", "t.yaml:15:3: unknown key 'iprules' in network");
    expect_error(CFG_BASE CFG_IDENTITY "network: [1]\n", "network: expected a mapping");

    /* at most 1000 rules */
    size_t cap = 32 * 1100;
    char *big = malloc(cap);
    assert_non_null(big);
    size_t off = (size_t)snprintf(big, cap, "%s%snetwork:\n  ip_rules:\n", CFG_BASE, CFG_IDENTITY);
    for (int i = 0; i < 1001; i++)
        off += (size_t)snprintf(big + off, cap - off, "    - 10.%d.%d.0/24\n", i / 256, i % 256);
    expect_error(big, "network.ip_rules: at most 1000 entries are allowed (got 1001)");
    /* exactly 1000 is fine */
    off = (size_t)snprintf(big, cap, "%s%snetwork:\n  default_action: deny\n  ip_rules:\n", CFG_BASE, CFG_IDENTITY);
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(big + off, cap - off, "    - 10.%d.%d.0/24\n", i / 256, i % 256);
    if (load(big, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->network.n_ip_rules, 1000);
    x = ip("10.3.231.77"); /* 999 = 3*256+231 */
    assert_true(custos_acl_admits(c->network.acl, &x));
    x = ip("10.3.232.1");
    assert_false(custos_acl_admits(c->network.acl, &x));
    custos_config_unref(c);
    free(big);
}

static void test_config_client_ca(void **state)
{
    (void)state;
    expect_error("listeners:\n  - address: \"127.0.0.1:8443\"\n    tls: {cert: /dev/null, key: /dev/null, client_ca: "
                 "/nonexistent/ca.pem}\n" CFG_IDENTITY
                 "backends:\n  - {name: mock, provider: openai, url: \"http://127.0.0.1:8081\"}\n"
                 "deployments:\n  - {name: demo, backends: [mock]}\n",
                 "t.yaml:3:55: listeners[0].tls.client_ca: cannot read '/nonexistent/ca.pem'");
    custos_config_t *c = NULL;
    char err[1024];
    const char *ok = "listeners:\n  - address: \"127.0.0.1:8443\"\n    tls: {cert: /dev/null, key: /dev/null, "
                     "client_ca: /dev/null}\n" CFG_IDENTITY
                     "backends:\n  - {name: mock, provider: openai, url: \"http://127.0.0.1:8081\"}\n"
                     "deployments:\n  - {name: demo, backends: [mock]}\n";
    if (load(ok, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c->listeners[0].tls->client_ca, "/dev/null");
    custos_config_unref(c);
}

/* ---------- client certificates ---------- */

/* A certificate with subject CN=cn,O=Example and the given SANs ("URI:..,DNS:.."), self-signed. */
static X509 *make_cert(const char *cn, const char *san)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"Example", -1, -1, 0);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_set_pubkey(x, k);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    EVP_PKEY_free(k);
    return x;
}

static void test_peercert_names(void **state)
{
    (void)state;
    X509 *x = make_cert("app1", "URI:spiffe://example.org/ns/prod/sa/app1,DNS:app1.example.org,DNS:alt.example.org");
    custos_peer_cert_t *pc = NULL;
    assert_int_equal(custos_peercert_from_x509(x, &pc), 0);
    assert_non_null(pc);
    assert_string_equal(pc->subject, "CN=app1,O=Example");
    assert_string_equal(pc->cn, "app1");
    assert_int_equal(pc->n_san_uri, 1);
    assert_string_equal(pc->san_uri[0], "spiffe://example.org/ns/prod/sa/app1");
    assert_int_equal(pc->n_san_dns, 2);
    assert_true(custos_peercert_matches(pc, CUSTOS_PEERCERT_SUBJECT, "CN=app1,O=Example"));
    assert_false(custos_peercert_matches(pc, CUSTOS_PEERCERT_SUBJECT, "CN=app1"));
    assert_true(custos_peercert_matches(pc, CUSTOS_PEERCERT_SAN_URI, "spiffe://example.org/ns/prod/sa/app1"));
    assert_false(custos_peercert_matches(pc, CUSTOS_PEERCERT_SAN_URI, "spiffe://example.org/ns/prod/sa/app"));
    assert_true(custos_peercert_matches(pc, CUSTOS_PEERCERT_SAN_DNS, "ALT.example.org"));
    assert_false(custos_peercert_matches(pc, CUSTOS_PEERCERT_SAN_DNS, "*.example.org"));
    assert_false(custos_peercert_matches(NULL, CUSTOS_PEERCERT_SAN_DNS, "alt.example.org"));
    custos_peercert_free(pc);
    X509_free(x);
    /* no SAN extension */
    x = make_cert("plain", NULL);
    assert_int_equal(custos_peercert_from_x509(x, &pc), 0);
    assert_int_equal(pc->n_san_uri + pc->n_san_dns, 0);
    assert_string_equal(pc->cn, "plain");
    custos_peercert_free(pc);
    X509_free(x);
    assert_int_equal(custos_peercert_from_x509(NULL, &pc), 0);
    assert_null(pc);
}

static void test_cert_principal_mapping(void **state)
{
    (void)state;
    const char *yaml = CFG_BASE "identity:\n  api_keys:\n    - name: demo\n      sha256: \"" DIGEST_TEST "\"\n"
                                "  client_certificates:\n"
                                "    - {san_uri: \"spiffe://example.org/ns/prod/sa/app1\", principal: wl-app1}\n"
                                "    - {subject: \"CN=batch,O=Example\", principal: wl-batch, roles: [auditor], scope: "
                                "/deployments/demo}\n"
                                "    - {san_dns: Other.Example.org, principal: wl-other, roles: [inference.user, "
                                "reviewer]}\n";
    custos_config_t *c = NULL;
    char err[1024];
    if (load(yaml, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c->identity.n_client_certificates, 3);
    assert_int_equal(c->identity.client_certificates[0].roles, CUSTOS_ROLE_INFERENCE_USER);
    assert_string_equal(c->identity.client_certificates[0].scope, "/");
    assert_int_equal(c->identity.client_certificates[1].roles, CUSTOS_ROLE_AUDITOR);
    assert_string_equal(c->identity.client_certificates[1].scope, "/deployments/demo");
    assert_int_equal(c->identity.client_certificates[2].roles, CUSTOS_ROLE_INFERENCE_USER | CUSTOS_ROLE_REVIEWER);

    custos_http_req_t req;
    memset(&req, 0, sizeof(req));
    assert_null(custos_access_cert_principal(c, &req)); /* no client certificate */
    struct {
        const char *cn, *san, *want;
    } t[] = {
        {"app1", "URI:spiffe://example.org/ns/prod/sa/app1,DNS:x.example.org", "wl-app1"},
        {"batch", NULL, "wl-batch"},
        {"batch", "URI:spiffe://example.org/ns/prod/sa/app1", "wl-app1"}, /* first match in config order */
        {"whatever", "DNS:other.example.org", "wl-other"},
        {"stranger", "DNS:stranger.example.org", NULL},
        {"app1", "URI:spiffe://example.org/ns/prod/sa/app10", NULL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        X509 *x = make_cert(t[i].cn, t[i].san);
        custos_peer_cert_t *pc = NULL;
        assert_int_equal(custos_peercert_from_x509(x, &pc), 0);
        req.client_cert = pc;
        const custos_client_cert_config_t *cc = custos_access_cert_principal(c, &req);
        if (t[i].want) {
            if (!cc)
                fail_msg("case %zu: no principal, want %s", i, t[i].want);
            assert_string_equal(cc->principal, t[i].want);
        } else if (cc) {
            fail_msg("case %zu: got %s, want none", i, cc->principal);
        }
        custos_peercert_free(pc);
        X509_free(x);
    }
    custos_config_unref(c);

    /* errors */
    expect_error(CFG_BASE CFG_IDENTITY "  client_certificates:\n    - {principal: x}\n",
                 "identity.client_certificates[0]: one of subject, san_uri, san_dns is required");
    expect_error(CFG_BASE CFG_IDENTITY "  client_certificates:\n    - {subject: \"CN=a\", san_dns: a, principal: x}\n",
                 "exactly one of subject, san_uri, san_dns is allowed");
    expect_error(CFG_BASE CFG_IDENTITY "  client_certificates:\n    - {subject: \"CN=a\"}\n",
                 "missing required key 'principal'");
    expect_error(CFG_BASE CFG_IDENTITY "  client_certificates:\n    - {subject: \"CN=a\", principal: \"a b\"}\n",
                 "principal: must be printable ASCII without spaces");
    expect_error(CFG_BASE CFG_IDENTITY
                 "  client_certificates:\n    - {subject: \"CN=a\", principal: a, roles: [god]}\n",
                 "roles[0]: expected one of inference.user");
    expect_error(CFG_BASE CFG_IDENTITY "  client_certificates:\n    - {subject: \"CN=a\", principal: a, cn: b}\n",
                 "unknown key 'cn' in identity.client_certificates[0]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse_table), cmocka_unit_test(test_ipset_match),
        cmocka_unit_test(test_acl_modes),        cmocka_unit_test(test_forwarded_walk),
        cmocka_unit_test(test_config_network),   cmocka_unit_test(test_config_client_ca),
        cmocka_unit_test(test_peercert_names),   cmocka_unit_test(test_cert_principal_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
