/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for util/cidr and net/acl: CIDR and address parsing (a parsed address must format and
 * re-parse to itself) and X-Forwarded-For / Forwarded walking over arbitrary header values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/acl.h"
#include "util/cidr.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_acl: check failed: %s (line %d)\n", #cond, __LINE__);                                \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static custos_ipset_t g_trusted;

static void init_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    const char *tp[] = {"127.0.0.0/8", "10.0.0.0/8", "::1", "2001:db8::/32"};
    custos_cidr_t c[4];
    for (int i = 0; i < 4; i++)
        CHECK(custos_cidr_parse(tp[i], strlen(tp[i]), &c[i], NULL) == 0);
    CHECK(custos_ipset_build(&g_trusted, c, 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    const char *s = (const char *)data;
    /* 1. CIDR / address parsing round trip */
    custos_cidr_t c;
    if (custos_cidr_parse(s, size, &c, NULL) == 0) {
        CHECK(c.bits <= 128);
        char buf[CUSTOS_IP_STRLEN];
        custos_ip_format(&c.addr, buf, sizeof(buf));
        custos_ip_t back;
        CHECK(custos_ip_parse(buf, strlen(buf), &back) == 0);
        CHECK(memcmp(&back, &c.addr, sizeof(back)) == 0);
        custos_ipset_t one;
        CHECK(custos_ipset_build(&one, &c, 1) == 0);
        CHECK(custos_ipset_contains(&one, &c.addr));
        custos_ipset_dispose(&one);
    }
    /* 2. forwarding headers: the input split at '\n' into up to 8 fields; first byte picks the name */
    if (size == 0)
        return 0;
    const char *name = (data[0] & 1) ? "Forwarded" : "X-Forwarded-For";
    custos_http_header_t h[8];
    size_t n = 0, start = 1;
    for (size_t i = 1; i <= size && n < 8; i++) {
        if (i == size || s[i] == '\n') {
            const char *nm = ((data[0] & 2) && n % 2) ? "x-other" : name;
            h[n] = (custos_http_header_t){nm, strlen(nm), s + start, i - start};
            n++;
            start = i + 1;
        }
    }
    custos_ip_t peer_ip, client;
    CHECK(custos_ip_parse("127.0.0.1", 9, &peer_ip) == 0);
    struct sockaddr_storage peer;
    custos_ip_to_sockaddr(&peer_ip, &peer);
    custos_acl_source_t src = custos_acl_client(&g_trusted, &peer, h, n, &client);
    CHECK(src == CUSTOS_ACL_FROM_PEER || src == CUSTOS_ACL_FROM_FORWARDED || src == CUSTOS_ACL_FROM_MALFORMED);
    if (src != CUSTOS_ACL_FROM_FORWARDED)
        CHECK(memcmp(&client, &peer_ip, sizeof(client)) == 0);
    return 0;
}
