/* SPDX-License-Identifier: Apache-2.0 */
#include "route/router.h"

#include <stdio.h>
#include <string.h>

static bool eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

bool custos_route_in_boundary(const custos_deployment_config_t *d, const custos_backend_config_t *b)
{
    switch (d->type) {
    case CUSTOS_DEPLOYMENT_REGIONAL:
        return eq(d->region, b->region);
    case CUSTOS_DEPLOYMENT_DATAZONE:
        return eq(d->data_zone, b->data_zone);
    case CUSTOS_DEPLOYMENT_GLOBAL:
        return true;
    }
    return false;
}

size_t custos_route_candidates(const custos_deployment_config_t *d, const custos_backend_config_t **out, size_t max)
{
    size_t n = 0;
    /* d->backends is already sorted by priority (stable) by the config loader */
    for (size_t i = 0; i < d->n_backends && n < max; i++) {
        if (custos_route_eligible(d, d->backends[i]))
            out[n++] = d->backends[i];
    }
    return n;
}

bool custos_route_meets_requirements(const custos_deployment_config_t *d, const custos_backend_config_t *b)
{
    if (d->require_zero_data_retention && !b->zero_data_retention)
        return false;
    if (d->require_no_training && !b->no_training)
        return false;
    if (d->n_require_regions == 0)
        return true;
    for (size_t i = 0; i < d->n_require_regions; i++)
        if (eq(d->require_regions[i], b->region))
            return true;
    return false;
}

bool custos_route_eligible(const custos_deployment_config_t *d, const custos_backend_config_t *b)
{
    return custos_route_in_boundary(d, b) && custos_route_meets_requirements(d, b);
}

void custos_route_describe_boundary(const custos_deployment_config_t *d, char *out, size_t outlen)
{
    if (!outlen)
        return;
    size_t n = 0;
#define PUT(...)                                                                                                       \
    do {                                                                                                               \
        if (n < outlen) {                                                                                              \
            int k_ = snprintf(out + n, outlen - n, __VA_ARGS__);                                                       \
            n = k_ < 0 ? outlen : n + (size_t)k_;                                                                      \
        }                                                                                                              \
    } while (0)
    switch (d->type) {
    case CUSTOS_DEPLOYMENT_REGIONAL:
        PUT("region %s", d->region);
        break;
    case CUSTOS_DEPLOYMENT_DATAZONE:
        PUT("data zone %s", d->data_zone);
        break;
    case CUSTOS_DEPLOYMENT_GLOBAL:
        PUT("global");
        break;
    }
    if (d->require_zero_data_retention || d->require_no_training || d->n_require_regions) {
        const char *sep = "; requires ";
        if (d->require_zero_data_retention) {
            PUT("%szero_data_retention", sep);
            sep = ", ";
        }
        if (d->require_no_training) {
            PUT("%sno_training", sep);
            sep = ", ";
        }
        for (size_t i = 0; i < d->n_require_regions; i++)
            PUT("%s%s%s", i ? "|" : sep, i ? "" : "regions ", d->require_regions[i]);
    }
#undef PUT
    out[outlen - 1] = 0;
}
