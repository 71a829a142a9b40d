/* SPDX-License-Identifier: Apache-2.0
 * store_writer CONFIG [N]: writes to the store named by CONFIG as fast as it can (an API key, a role
 * assignment and a sealed record per round), N rounds or until killed; prints "ready" after the first
 * round. Used by tests that kill -9 a writer mid-transaction and check that the store opens cleanly. */
#include "auth/keystore.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/err.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_writer CONFIG [ROUNDS]\n");
        return 2;
    }
    long rounds = argc > 2 ? strtol(argv[2], NULL, 10) : -1;
    custos_config_t *cfg = NULL;
    char err[1024];
    if (custos_config_load_file(argv[1], &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    custos_keystore_t *ks = NULL;
    custos_store_t *st = NULL;
    custos_vault_t *v = NULL;
    int rc = custos_keystore_open_config(&cfg->storage, true, &ks, err, sizeof(err));
    if (rc == 0)
        rc = custos_store_open_config(&cfg->storage, true, &st, err, sizeof(err));
    if (rc == 0)
        rc = custos_vault_open(&cfg->storage, st, &v, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "store_writer: %s: %s\n", custos_strerror(rc), err);
        return 1;
    }
    char payload[1024];
    memset(payload, 'p', sizeof(payload));
    for (long i = 0; rounds < 0 || i < rounds; i++) {
        char key[CUSTOS_KEY_TEXT_LEN + 1], id[48];
        custos_key_spec_t spec = {NULL, "writer", CUSTOS_ROLE_INFERENCE_USER, NULL, 0};
        custos_ra_record_t ra;
        memset(&ra, 0, sizeof(ra));
        ra.kind = CUSTOS_RA_PRINCIPAL;
        snprintf(ra.subject, sizeof(ra.subject), "writer-%ld", i);
        ra.role = CUSTOS_ROLE_INFERENCE_USER;
        snprintf(ra.scope, sizeof(ra.scope), "/");
        snprintf(id, sizeof(id), "w%ld-%ld", (long)time(NULL), i);
        if ((rc = custos_keystore_key_create(ks, &spec, (int64_t)time(NULL), NULL, NULL, key, NULL)) != 0 ||
            (rc = custos_keystore_ra_create(ks, &ra, (int64_t)time(NULL), NULL, NULL)) != 0 ||
            (rc = custos_vault_put(v, "test", id, payload, sizeof(payload), (int64_t)time(NULL), 0)) != 0) {
            fprintf(stderr, "store_writer: round %ld: %s\n", i, custos_strerror(rc));
            return 1;
        }
        OPENSSL_cleanse(key, sizeof(key));
        if (i == 0) {
            printf("ready\n");
            fflush(stdout);
        }
    }
    custos_vault_close(v);
    custos_store_close(st);
    custos_keystore_close(ks);
    custos_config_unref(cfg);
    return 0;
}
