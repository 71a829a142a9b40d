/* SPDX-License-Identifier: Apache-2.0
 * Conditional access evaluation: conditions select a policy, then every requirement must hold. */
#include "policy/conditional_access.h"
#include "util/tz.h"

#include <string.h>

bool custos_ca_addr_in(const custos_cidr_t *nets, size_t n, const custos_ip_t *addr)
{
    for (size_t i = 0; i < n; i++) {
        unsigned bits = nets[i].bits, full = bits / 8, rem = bits % 8;
        if (memcmp(nets[i].addr.b, addr->b, full) != 0)
            continue;
        if (rem && ((nets[i].addr.b[full] ^ addr->b[full]) & (uint8_t)(0xff00u >> rem)))
            continue;
        return true;
    }
    return false;
}

static bool applies(const custos_ca_policy_config_t *p, const custos_ca_input_t *in)
{
    if (p->n_when_deployments) {
        bool hit = false;
        for (size_t i = 0; in->deployment && i < p->n_when_deployments && !hit; i++)
            hit = strcmp(p->when_deployments[i], in->deployment) == 0;
        if (!hit)
            return false;
    }
    if (p->when_principal_types && !(p->when_principal_types & in->principal_type))
        return false;
    if (p->n_when_networks && !(in->has_addr && custos_ca_addr_in(p->when_networks, p->n_when_networks, &in->addr)))
        return false;
    return true;
}

static bool within_hours(const custos_ca_policy_config_t *p, int64_t now_s)
{
    if (!p->tz)
        return false;
    int m = custos_tz_minute_of_day(p->tz, now_s);
    if (p->hours_from < p->hours_to)
        return m >= p->hours_from && m < p->hours_to;
    return m >= p->hours_from || m < p->hours_to; /* spans midnight */
}

/* NULL when p's requirements hold, else the reason. */
static const char *check(const custos_ca_policy_config_t *p, const custos_ca_input_t *in)
{
    if (p->require_mfa && !(in->has_token && in->mfa))
        return CUSTOS_CA_REASON_MFA;
    if (p->n_require_networks &&
        !(in->has_addr && custos_ca_addr_in(p->require_networks, p->n_require_networks, &in->addr)))
        return CUSTOS_CA_REASON_NETWORK;
    if (p->max_token_age_s > 0) {
        if (!in->has_token || !in->has_iat || in->now_s - in->iat_s > p->max_token_age_s)
            return CUSTOS_CA_REASON_TOKEN_AGE;
    }
    for (size_t i = 0; i < p->n_require_claims; i++) {
        const char *v = (in->has_token && in->claim) ? in->claim(in->claim_ud, p->require_claims[i].name) : NULL;
        if (!v || strcmp(v, p->require_claims[i].value) != 0)
            return CUSTOS_CA_REASON_CLAIMS;
    }
    if (p->has_hours && !within_hours(p, in->now_s))
        return CUSTOS_CA_REASON_HOURS;
    return NULL;
}

bool custos_ca_evaluate(const custos_config_t *cfg, const custos_ca_input_t *in, const char **policy,
                        const char **reason)
{
    for (size_t i = 0; i < cfg->identity.n_ca_policies; i++) {
        const custos_ca_policy_config_t *p = &cfg->identity.ca_policies[i];
        if (!applies(p, in))
            continue;
        const char *why = check(p, in);
        if (why) {
            *policy = p->name;
            *reason = why;
            return false;
        }
    }
    return true;
}
