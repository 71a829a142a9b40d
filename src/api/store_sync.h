/* SPDX-License-Identifier: Apache-2.0
 * The serving process and the store: a start-up check (the store opens and migrates, the key-encryption key
 * is reachable: the HSM PIN is right, the local key file is there, or is created at first start) and one
 * background thread that (1) reads the store's change counter every storage.poll_interval_ms and rebuilds
 * the identity snapshot when another process (a replica, `custos keys`) changed keys or role assignments,
 * and has the blocklists recompiled (background compiler, api/contentsafety.c) when their counter moved, and (2)
 * applies retention.content (purge at start, then hourly). */
#ifndef CUSTOS_API_STORE_SYNC_H
#define CUSTOS_API_STORE_SYNC_H

#include "api/gateway.h"

#include <stddef.h>

/* Checks the store and the KEK for gw->cfg (main thread, before workers start). Returns 0, or a negative code
 * with err filled: custos must not start. */
int custos_store_sync_check(const custos_config_t *cfg, char *err, size_t errlen);

/* Starts the thread (no-op when poll_interval_ms is 0 and retention needs no schedule). Returns 0 or
 * CUSTOS_ENOMEM. */
int custos_store_sync_start(custos_gateway_t *gw);

/* Stops and joins the thread (idempotent). */
void custos_store_sync_stop(void);

#endif
