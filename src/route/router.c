/* SPDX-License-Identifier: Apache-2.0 */
#include "route/router.h"

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
        if (custos_route_in_boundary(d, d->backends[i]))
            out[n++] = d->backends[i];
    }
    return n;
}
