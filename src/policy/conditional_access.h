/* SPDX-License-Identifier: Apache-2.0
 * Conditional access: named policies (identity.conditional_access) whose conditions (deployment,
 * principal type, source network) select requests and whose requirements (MFA, source network, token
 * age, claims, allowed hours) must then all hold. Pure; thread-safe; no allocation. */
#ifndef CUSTOS_POLICY_CONDITIONAL_ACCESS_H
#define CUSTOS_POLICY_CONDITIONAL_ACCESS_H

#include "config/config.h"
#include "util/cidr.h"

#include <stdbool.h>
#include <stdint.h>

/* Fixed reasons (the only texts that can follow "denied the request: "). */
#define CUSTOS_CA_REASON_MFA "multi-factor authentication is required"
#define CUSTOS_CA_REASON_NETWORK "the source network is not allowed"
#define CUSTOS_CA_REASON_TOKEN_AGE "the token is older than the policy allows"
#define CUSTOS_CA_REASON_CLAIMS "a required claim is missing or does not match"
#define CUSTOS_CA_REASON_HOURS "the request is outside the allowed hours"

/* Facts about one request. API keys carry no token: every token requirement (mfa, token age, claims)
 * then fails, closed. */
typedef struct custos_ca_input {
    const char *deployment;  /* NULL for operations without one (conditions on deployments then don't match) */
    unsigned principal_type; /* CUSTOS_CA_PRINCIPAL_USER or CUSTOS_CA_PRINCIPAL_WORKLOAD */
    bool has_addr;           /* false for unix-socket clients: network conditions don't match, requirements fail */
    custos_ip_t addr;        /* resolved client address */
    bool has_token;
    bool mfa;     /* token `amr` contains "mfa" */
    bool has_iat; /* token `iat` present */
    int64_t iat_s;
    /* claim lookup: string value of claim name, or NULL when absent / not a string */
    const char *(*claim)(void *ud, const char *name);
    void *claim_ud;
    int64_t now_s; /* wall clock, unix seconds */
} custos_ca_input_t;

/* Evaluates every policy in order. Returns true when allowed; false with *policy (the denying policy's
 * name, borrowed from cfg) and *reason (one of CUSTOS_CA_REASON_*). */
bool custos_ca_evaluate(const custos_config_t *cfg, const custos_ca_input_t *in, const char **policy,
                        const char **reason);

/* True when addr is inside one of nets[0..n). */
bool custos_ca_addr_in(const custos_cidr_t *nets, size_t n, const custos_ip_t *addr);

#endif
