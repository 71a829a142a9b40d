/* SPDX-License-Identifier: Apache-2.0
 * API-key digests: keys are stored and compared only as SHA-256 (the identity pipeline is api/authn.h).
 * Thread-safe. */
#ifndef CUSTOS_AUTH_APIKEY_H
#define CUSTOS_AUTH_APIKEY_H

#include <stddef.h>

#define CUSTOS_AUTH_MAX_KEY_BYTES 512 /* longer presented keys are rejected without hashing */

/* SHA-256 of data into out. Returns 0 or CUSTOS_ENOMEM. */
int custos_auth_sha256(const void *data, size_t len, unsigned char out[32]);

#endif
