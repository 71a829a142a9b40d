/* SPDX-License-Identifier: Apache-2.0
 * Network ACL: who is the client (TCP peer, or the rightmost untrusted hop of X-Forwarded-For /
 * Forwarded when the peer is a trusted proxy) and is that address admitted. Precompiled prefix sets;
 * no allocation per request. Config-free: the caller passes the compiled sets. */
#ifndef CUSTOS_NET_ACL_H
#define CUSTOS_NET_ACL_H

#include "net/http_server.h"
#include "util/cidr.h"

#include <stdbool.h>

/* Body and policy-id of the denial (Azure's wire format, docs/azure-wire.md). */
#define CUSTOS_ACL_DENY_BODY                                                                                           \
    "{\"error\":{\"code\":\"403\",\"message\":\"Access denied due to Virtual Network/Firewall rules.\"}}"
#define CUSTOS_ACL_DENY_POLICY_ID "ThrowExceptionDueToTrafficDenied"

/* Most forwarding hops examined per request; a longer chain of trusted proxies counts as malformed. */
#define CUSTOS_ACL_MAX_HOPS 32

/* A compiled network policy (see docs/config.md "network"). Immutable after build; share freely. */
typedef struct custos_acl {
    bool admit_all;                 /* public access enabled with default_action allow */
    custos_ipset_t admit;           /* admitted prefixes when !admit_all (ip_rules, plus private ranges if
                                       public access is disabled) */
    custos_ipset_t trusted_proxies; /* peers whose forwarding headers are believed */
} custos_acl_t;

typedef enum {
    CUSTOS_ACL_FROM_PEER = 0,  /* the TCP peer is the client */
    CUSTOS_ACL_FROM_LOCAL,     /* AF_UNIX peer: local, always admitted */
    CUSTOS_ACL_FROM_FORWARDED, /* taken from X-Forwarded-For / Forwarded of a trusted proxy */
    CUSTOS_ACL_FROM_MALFORMED, /* trusted proxy sent an unusable header: the peer is used */
} custos_acl_source_t;

/* Builds a from the parsed rules. public_access=false admits the private ranges plus ip_rules;
 * public_access && default_deny admits exactly ip_rules; otherwise everyone. Returns 0 or CUSTOS_ENOMEM
 * (a is then disposed). */
int custos_acl_init(custos_acl_t *a, bool public_access, bool default_deny, const custos_cidr_t *ip_rules,
                    size_t n_ip_rules, const custos_cidr_t *trusted, size_t n_trusted);
void custos_acl_dispose(custos_acl_t *a);

/* Resolves the client address of a request whose TCP peer is `peer` and whose headers are
 * headers[0..n). Only when the peer is inside `trusted` are X-Forwarded-For (all fields, in order) or,
 * when there is none, Forwarded "for=" walked from the right, skipping trusted hops; the rightmost
 * untrusted hop is the client (all hops trusted: the leftmost). *client is the peer for AF_INET/6
 * (unset for AF_UNIX). Thread-safe, allocation-free. */
custos_acl_source_t custos_acl_client(const custos_ipset_t *trusted, const struct sockaddr_storage *peer,
                                      const custos_http_header_t *headers, size_t n, custos_ip_t *client);

/* True when a admits client (admit_all, or inside a->admit). */
bool custos_acl_admits(const custos_acl_t *a, const custos_ip_t *client);

#endif
