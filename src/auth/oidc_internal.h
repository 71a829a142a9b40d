/* SPDX-License-Identifier: Apache-2.0
 * Private glue between auth/oidc.c (the fetcher and its registry) and auth/upstream_cred.c. Not for other
 * modules. */
#ifndef CUSTOS_AUTH_OIDC_INTERNAL_H
#define CUSTOS_AUTH_OIDC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "util/arena.h"

/* The cached "Bearer <token>" of OAuth2 client o, copied into a. Creates the client (and asks the fetcher)
 * when unknown. Returns 0, CUSTOS_EUNAVAIL (no usable token yet) or CUSTOS_ENOMEM. Thread-safe. */
int custos_oidc_oauth2_value(const custos_oauth2_client_config_t *o, custos_arena_t *a, const char **value,
                             size_t *len);

/* Number of issuer key providers (tests). */
size_t custos_oidc_provider_count(void);

/* Key-set fetch attempts finished so far, successful or not (tests). */
uint64_t custos_oidc_fetch_attempts(void);

#endif
