/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for the governance-log verifier (audit/govlog.h): arbitrary file contents, with and without a
 * public key (checkpoint records: details parsing, signature check). The verifier must never crash, and its counts
 * must be consistent. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/govlog.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_govlog: check failed: %s (line %d)\n", #cond, __LINE__);                             \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static char g_log[64], g_pub[64];

static void init_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    snprintf(g_log, sizeof(g_log), "/tmp/fuzz_govlog.%ld.jsonl", (long)getpid());
    snprintf(g_pub, sizeof(g_pub), "/tmp/fuzz_govlog.%ld.pub", (long)getpid());
    unsigned char seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (unsigned char)(i + 1);
    char *pem = NULL;
    CHECK(custos_govlog_public_key_pem(seed, &pem, NULL) == 0);
    FILE *f = fopen(g_pub, "w");
    CHECK(f);
    fputs(pem, f);
    fclose(f);
    free(pem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    FILE *f = fopen(g_log, "w");
    CHECK(f);
    CHECK(fwrite(data, 1, size, f) == size);
    fclose(f);
    const char *pubs[1] = {g_pub};
    for (size_t npub = 0; npub <= 1; npub++) {
        custos_govlog_verify_result_t res;
        int rc = custos_govlog_verify_file_signed(g_log, NULL, NULL, pubs, npub, npub == 1, NULL, &res);
        if (rc == 0) {
            CHECK(res.problems == 0);
            CHECK(res.checkpoints <= res.records);
            CHECK(res.unsigned_tail <= res.last_seq);
        }
    }
    return 0;
}
