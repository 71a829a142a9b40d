/* SPDX-License-Identifier: Apache-2.0
 * Residency-bounded backend selection: which backends a deployment may use, in which order.
 * Pure functions over an immutable config snapshot; thread-safe. */
#ifndef CUSTOS_ROUTE_ROUTER_H
#define CUSTOS_ROUTE_ROUTER_H

#include "config/config.h"

#include <stdbool.h>
#include <stddef.h>

/* True if backend b lies inside deployment d's boundary: regional → same region; datazone → same
 * data zone; global → any. Backends without a region/zone are outside every regional/datazone boundary. */
bool custos_route_in_boundary(const custos_deployment_config_t *d, const custos_backend_config_t *b);

/* Writes up to max candidate backends for d into out, in priority order, skipping (and never returning)
 * any backend outside the boundary. Returns the number written. The config validator already rejects
 * out-of-boundary backends; this is the second, independent check at request time. */
size_t custos_route_candidates(const custos_deployment_config_t *d, const custos_backend_config_t **out, size_t max);

/* True if b has every backend attribute d requires (requires: zero_data_retention, no_training, regions). */
bool custos_route_meets_requirements(const custos_deployment_config_t *d, const custos_backend_config_t *b);

/* Inside the boundary and meeting the requirements: the only backends a request for d may reach. */
bool custos_route_eligible(const custos_deployment_config_t *d, const custos_backend_config_t *b);

/* Writes a short, human description of d's boundary and requirements into out (always NUL-terminated), e.g.
 * "data zone us", "region swedencentral; requires zero_data_retention, regions eastus|westus", "global".
 * Only configured names appear in it: safe for error messages and logs. */
void custos_route_describe_boundary(const custos_deployment_config_t *d, char *out, size_t outlen);

#endif
