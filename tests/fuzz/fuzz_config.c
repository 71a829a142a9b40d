/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for src/config: any input either loads (and is released) or fails with
 * "fuzz.yaml:LINE:COL: message" (1-based), never crashes, leaks or blocks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/err.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_config: check failed: %s (line %d)\n", #cond, __LINE__);                             \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    custos_config_t *c = (custos_config_t *)&c;
    char err[1024];
    unsigned line = 0, col = 0;
    int n = 0;

    int rc = custos_config_load_string("fuzz.yaml", (const char *)data, size, &c, err, sizeof(err));
    if (rc == 0) {
        CHECK(c != NULL && c->n_listeners >= 1 && c->n_backends >= 1 && c->n_deployments >= 1 &&
              c->identity.n_api_keys >= 1);
        for (size_t i = 0; i < c->n_deployments; i++)
            CHECK(custos_config_find_deployment(c, c->deployments[i].name) == &c->deployments[i]);
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull) {
            CHECK(custos_config_dump_summary(c, devnull) == 0);
            fclose(devnull);
        }
        custos_config_unref(custos_config_ref(c));
        custos_config_unref(c);
        return 0;
    }
    CHECK(rc < 0 && c == NULL);
    CHECK(sscanf(err, "fuzz.yaml:%u:%u: %n", &line, &col, &n) == 2 && n > 0);
    CHECK(line >= 1 && col >= 1 && err[n] != 0);
    return 0;
}
