/* SPDX-License-Identifier: Apache-2.0
 * custos command line: serve, config check, version. */
#include "api/gateway.h"
#include "config/config.h"

#include <stdio.h>
#include <string.h>

#define CUSTOS_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  custos serve -c FILE        run the gateway with the configuration in FILE\n"
               "  custos config check FILE    validate FILE and print a summary (exit 0 if valid, 1 if not)\n"
               "  custos version              print the version\n"
               "Signals while serving: SIGHUP reloads FILE and TLS certificates; SIGTERM/SIGINT drain and exit.\n"
               "Configuration reference: docs/config.md\n");
}

static int cmd_config_check(const char *path)
{
    char err[1024];
    custos_config_t *c = NULL;
    if (custos_config_load_file(path, &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s: ok\n", path);
    custos_config_dump_summary(c, stdout);
    custos_config_unref(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) {
        const char *path = NULL;
        for (int i = 2; i < argc; i++) {
            if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
                path = argv[++i];
            else {
                fprintf(stderr, "custos serve: unknown argument '%s'\n", argv[i]);
                usage(stderr);
                return 2;
            }
        }
        if (!path) {
            fprintf(stderr, "custos serve: -c FILE is required\n");
            return 2;
        }
        return custos_gateway_serve(path);
    }
    if (strcmp(cmd, "config") == 0 && argc == 4 && strcmp(argv[2], "check") == 0)
        return cmd_config_check(argv[3]);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("custos %s\n", CUSTOS_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "custos: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
