/* SPDX-License-Identifier: Apache-2.0
 * IP addresses, CIDR prefixes and compiled prefix sets (sorted, merged ranges; binary search, no
 * allocation on lookup). IPv4 is kept as IPv4-mapped IPv6 (::ffff:a.b.c.d), so v4-mapped clients match IPv4 rules. */
#ifndef CUSTOS_UTIL_CIDR_H
#define CUSTOS_UTIL_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One address: 16 bytes, network order; IPv4 as ::ffff:a.b.c.d. */
typedef struct custos_ip {
    uint8_t b[16];
} custos_ip_t;

/* One prefix. bits is the prefix length in the 128-bit space (IPv4 /n is stored as 96 + n). */
typedef struct custos_cidr {
    custos_ip_t addr; /* host bits are zero */
    uint8_t bits;     /* 0..128 */
} custos_cidr_t;

/* A compiled set of prefixes: disjoint, sorted, merged ranges [lo, hi] of 128-bit integers.
 * Immutable after custos_ipset_build; lookups are thread-safe and allocation-free. */
typedef struct custos_ipset {
    uint64_t (*r)[4]; /* r[i] = {lo_hi, lo_lo, hi_hi, hi_lo} */
    size_t n;
} custos_ipset_t;

#define CUSTOS_IP_STRLEN 46 /* INET6_ADDRSTRLEN */

/* Parses a bare address: dotted-quad IPv4 ("203.0.113.7") or IPv6 ("2001:db8::1", "::ffff:10.0.0.1"),
 * s[0..len) (no NUL needed, no brackets, no zone). Returns 0 or CUSTOS_EINVAL. */
int custos_ip_parse(const char *s, size_t len, custos_ip_t *out);

/* Parses "ADDR" (a single host: /32 or /128) or "ADDR/LEN" (IPv4 LEN 0..32, IPv6 LEN 0..128).
 * Refuses host bits set below the prefix ("10.0.0.1/8") so typos do not widen a rule.
 * On failure returns CUSTOS_EINVAL and, if why != NULL, a static reason. */
int custos_cidr_parse(const char *s, size_t len, custos_cidr_t *out, const char **why);

/* Address of an AF_INET / AF_INET6 socket address (v4-mapped IPv6 becomes IPv4). Returns false for
 * anything else (AF_UNIX, empty). */
bool custos_ip_from_sockaddr(const struct sockaddr_storage *ss, custos_ip_t *out);

/* Fills ss with ip (AF_INET for IPv4 and v4-mapped, else AF_INET6), port 0. */
void custos_ip_to_sockaddr(const custos_ip_t *ip, struct sockaddr_storage *ss);

/* True when ip is IPv4 (or v4-mapped). */
bool custos_ip_is_v4(const custos_ip_t *ip);

/* Writes ip as text ("10.0.0.1", "2001:db8::1") into out (>= CUSTOS_IP_STRLEN bytes). Returns out. */
const char *custos_ip_format(const custos_ip_t *ip, char *out, size_t outlen);

/* The private ranges admitted when public network access is disabled: RFC 1918, 127.0.0.0/8,
 * 169.254.0.0/16, ::1/128, fc00::/7, fe80::/10. Returns the count; *out points to a static table. */
size_t custos_cidr_private_ranges(const custos_cidr_t **out);

/* Builds s from n prefixes (n may be 0: the empty set). s is caller-owned (custos_ipset_dispose).
 * Returns 0 or CUSTOS_ENOMEM (s is then empty). */
int custos_ipset_build(custos_ipset_t *s, const custos_cidr_t *c, size_t n);

/* True when ip is inside one of the set's prefixes. O(log n), no allocation. s may be NULL (empty). */
bool custos_ipset_contains(const custos_ipset_t *s, const custos_ip_t *ip);

/* Frees the ranges; s becomes empty. NULL-safe. */
void custos_ipset_dispose(custos_ipset_t *s);

#endif
