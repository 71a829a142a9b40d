/* SPDX-License-Identifier: Apache-2.0
 * Envelope-encryption cost per 1 KB record (crypto/crypto.h): seal = fresh DEK + AES-256-GCM of the record +
 * wrap of the DEK by the KEK; unseal = unwrap + AES-256-GCM open. Rows: crypto only (no store), and the vault
 * (crypto plus one SQLite row written / read in a temp dir). Built and run by bench/seal.
 * Usage: seal_bench local KEYDIR DBPATH SECONDS | seal_bench pkcs11 MODULE TOKEN PIN DBPATH SECONDS */
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/err.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define REC 1024

int main(int argc, char **argv)
{
    custos_storage_config_t sc;
    memset(&sc, 0, sizeof(sc));
    const char *db;
    double secs;
    if (argc == 5 && strcmp(argv[1], "local") == 0) {
        sc.key_dir = argv[2];
        db = argv[3];
        secs = atof(argv[4]);
    } else if (argc == 7 && strcmp(argv[1], "pkcs11") == 0) {
        sc.kek_provider = CUSTOS_KEK_PKCS11;
        sc.pkcs11_module = argv[2];
        sc.pkcs11_token = argv[3];
        sc.pkcs11_key_label = "bench-kek";
        sc.pkcs11_pin = argv[4];
        sc.pkcs11_pin_len = strlen(argv[4]);
        db = argv[5];
        secs = atof(argv[6]);
    } else {
        fprintf(stderr, "usage: seal_bench local KEYDIR DBPATH SECONDS | pkcs11 MODULE TOKEN PIN DBPATH SECONDS\n");
        return 2;
    }
    sc.path = (char *)db;
    char err[512];
    custos_store_t *st = NULL;
    custos_vault_t *v = NULL;
    if (custos_store_open_config(&sc, true, &st, err, sizeof(err)) != 0 ||
        custos_vault_open(&sc, st, &v, err, sizeof(err)) != 0) {
        fprintf(stderr, "seal_bench: %s\n", err);
        return 1;
    }
    custos_kek_t *k = NULL;
    if (custos_kek_open(&sc, &k, err, sizeof(err)) != 0) {
        fprintf(stderr, "seal_bench: %s\n", err);
        return 1;
    }
    uint32_t ver = custos_vault_current(v);
    unsigned char rec[REC], ct[REC], tag[CUSTOS_TAG_LEN], nonce[CUSTOS_NONCE_LEN], wrapped[CUSTOS_WRAPPED_LEN];
    unsigned char pt[REC];
    unsigned char *dek = custos_secure_alloc(CUSTOS_KEY_LEN), *dek2 = custos_secure_alloc(CUSTOS_KEY_LEN);
    const char aad[] = "custos.sealed.v1\0content\0bench-record\0\0\0\0\1";
    memset(rec, 'r', sizeof(rec));
    const char *prov = sc.kek_provider == CUSTOS_KEK_PKCS11 ? "pkcs11 (SoftHSM2)" : "local";

    /* crypto only */
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 64; i++, n++) {
            if (RAND_priv_bytes(dek, CUSTOS_KEY_LEN) != 1 || RAND_bytes(nonce, sizeof(nonce)) != 1 ||
                custos_aead_seal(dek, nonce, aad, sizeof(aad), rec, REC, ct, tag) != 0 ||
                custos_kek_wrap(k, ver, aad, sizeof(aad), dek, wrapped) != 0)
                return 1;
        }
        t = now_s() - t0;
    } while (t < secs);
    double seal_us = t * 1e6 / (double)n;
    n = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 64; i++, n++) {
            if (custos_kek_unwrap(k, ver, aad, sizeof(aad), wrapped, dek2) != 0 ||
                custos_aead_open(dek2, nonce, aad, sizeof(aad), ct, REC, tag, pt) != 0)
                return 1;
        }
        t = now_s() - t0;
    } while (t < secs);
    double unseal_us = t * 1e6 / (double)n;
    printf("| %s | crypto only | %.2f | %.2f |\n", prov, seal_us, unseal_us);

    /* the vault with SQLite: one row per record (autocommit, synchronous=FULL in WAL) */
    n = 0;
    t0 = now_s();
    char id[32];
    do {
        snprintf(id, sizeof(id), "r%ld", n % 1000);
        if (custos_vault_put(v, "bench", id, rec, REC, 1, 0) != 0)
            return 1;
        n++;
        t = now_s() - t0;
    } while (t < secs);
    double put_us = t * 1e6 / (double)n;
    long m = n < 1000 ? n : 1000;
    n = 0;
    t0 = now_s();
    do {
        unsigned char *out = NULL;
        size_t len = 0;
        snprintf(id, sizeof(id), "r%ld", n % m);
        if (custos_vault_get(v, "bench", id, &out, &len) != 0 || len != REC)
            return 1;
        free(out);
        n++;
        t = now_s() - t0;
    } while (t < secs);
    double get_us = t * 1e6 / (double)n;
    printf("| %s | vault put / get (SQLite row, WAL, synchronous=FULL) | %.2f | %.2f |\n", prov, put_us, get_us);
    custos_secure_free(dek, CUSTOS_KEY_LEN);
    custos_secure_free(dek2, CUSTOS_KEY_LEN);
    custos_kek_close(k);
    custos_vault_close(v);
    custos_store_close(st);
    return 0;
}
