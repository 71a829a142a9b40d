/* SPDX-License-Identifier: Apache-2.0
 * Provider side of custos_kek_t (crypto.h). */
#ifndef CUSTOS_CRYPTO_KEK_INTERNAL_H
#define CUSTOS_CRYPTO_KEK_INTERNAL_H

#include "crypto/crypto.h"

#include <pthread.h>

typedef struct kek_ops {
    const char *name;
    void (*label)(const custos_kek_t *k, uint32_t v, char *out, size_t cap);
    int (*exists)(custos_kek_t *k, uint32_t v, char *err, size_t errlen);
    int (*create)(custos_kek_t *k, uint32_t v, char *err, size_t errlen);
    int (*wrap)(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *dek,
                unsigned char *out);
    int (*unwrap)(custos_kek_t *k, uint32_t v, const void *aad, size_t aadlen, const unsigned char *in,
                  unsigned char *dek);
    int (*destroy)(custos_kek_t *k, uint32_t v, char *err, size_t errlen);
    void (*close)(custos_kek_t *k);
} kek_ops_t;

struct custos_kek {
    const kek_ops_t *ops;
    pthread_mutex_t mu;
    void *impl;
};

int custos_kek_pkcs11_open(const custos_storage_config_t *sc, custos_kek_t *k, char *err, size_t errlen);

#endif
