/* SPDX-License-Identifier: Apache-2.0
 * Command line for the store's keys and retention: `custos kek ...` and `custos purge` (docs/keys.md).
 * argv[0] is the command word ("kek" / "purge"). Return the process exit status. */
#ifndef CUSTOS_API_CLI_STORE_H
#define CUSTOS_API_CLI_STORE_H

int custos_kek_cli(int argc, char **argv);
int custos_purge_cli(int argc, char **argv);
int custos_secrets_cli(int argc, char **argv);

#include "config/config.h"

#include <stddef.h>

/* custos_config_secret_fn (config.h) backed by the store: backends[].auth.*_secret from `custos secrets put`.
 * Registered by `custos serve` and `custos config check`. */
int custos_store_secret_resolve(const custos_storage_config_t *sc, const char *name, char **out, size_t *len, char *err,
                                size_t errlen);
/* Resolves every name to a fixed placeholder: for commands that load the configuration but never call a
 * backend (keys, kek, purge, secrets: `secrets put` must work before the secret exists). */
int custos_store_secret_placeholder(const custos_storage_config_t *sc, const char *name, char **out, size_t *len,
                                    char *err, size_t errlen);

#endif
