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

#endif
