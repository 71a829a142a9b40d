/* SPDX-License-Identifier: Apache-2.0
 * custos command line: serve, config check, version. */
#include "api/admin.h"
#include "api/cli_store.h"
#include "api/cli_rai.h"
#include "api/gateway.h"
#include "audit/govlog.h"
#include "config/config.h"
#include "governance/evidence.h"
#include "safety/cli.h"

#include "util/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUSTOS_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  custos serve -c FILE        run the gateway with the configuration in FILE\n"
            "  custos config check FILE    validate FILE and print a summary (exit 0 if valid, 1 if not)\n"
            "  custos audit verify [--expect-head HASH] [--genesis HASH] [--pubkey PEM]... [--signed-tail] FILE\n"
            "                              verify a governance log's hash chain and signed checkpoints\n"
            "                              (exit 0 intact, 1 tampered)\n"
            "  custos audit pubkey -c FILE print the governance log's signing public key (PEM)\n"
            "  custos audit repair FILE    remove a torn (partial) last line of a governance log\n"
            "  custos keys create -c FILE --principal ID --role ROLE[,ROLE] [--scope /deployments/NAME]\n"
            "                  [--expires-in DAYS] [--name NAME]   create an API key (printed once)\n"
            "  custos keys list -c FILE    list stored API keys (never the keys themselves)\n"
            "  custos keys revoke -c FILE ID\n"
            "                              revoke a stored key (a running custos applies it within\n"
            "                              storage.poll_interval_ms, or on SIGHUP)\n"
            "  custos kek list|rotate|rewrap -c FILE\n"
            "  custos kek destroy -c FILE VERSION --yes\n"
            "                              key-encryption-key versions: rotate, re-wrap, crypto-shred (docs/keys.md)\n"
            "  custos purge -c FILE        apply retention.content now\n"
            "  custos secrets put|delete -c FILE NAME, custos secrets list -c FILE\n"
            "                              backend credentials sealed in the store (value on stdin)\n"
            "%s%s"
            "  custos evidence -c FILE [--format json|md|html] [-o OUT]\n"
            "                              controls in force mapped to HIPAA, SOC 2, ISO 27001/42001, NIST AI RMF\n"
            "  custos version              print the version\n"
            "Signals while serving: SIGHUP reloads FILE and TLS certificates; SIGTERM/SIGINT drain and exit.\n"
            "Configuration reference: docs/config.md\n",
            custos_cli_safety_usage, custos_cli_rai_usage);
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

/* custos audit pubkey -c FILE: the governance log's signing public key, from the store (docs/governance-log.md). */
static int cmd_audit_pubkey(const char *cfgpath)
{
    char err[1024], *pem = NULL, kid[CUSTOS_GOVLOG_KEY_ID_LEN + 1];
    unsigned char seed[32];
    custos_config_t *c = NULL;
    if (custos_config_load_file(cfgpath, &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = custos_govlog_signing_seed(&c->storage, false, seed, NULL, err, sizeof(err));
    custos_config_unref(c);
    if (rc == CUSTOS_ENOTFOUND) {
        fprintf(stderr, "custos audit pubkey: no signing key yet (custos creates it at its first start)\n");
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "custos audit pubkey: %s\n", err);
        return 1;
    }
    rc = custos_govlog_public_key_pem(seed, &pem, kid);
    explicit_bzero(seed, sizeof(seed));
    if (rc != 0)
        return 1;
    fputs(pem, stdout);
    fprintf(stderr, "key id %s\n", kid);
    free(pem);
    return 0;
}

/* custos audit verify|repair|pubkey (docs/governance-log.md). */
static int cmd_audit(int argc, char **argv)
{
    const char *expect = NULL, *genesis = NULL, *file = NULL, *pubkeys[CUSTOS_GOVLOG_MAX_PUBKEYS];
    size_t npub = 0;
    bool verify = argc >= 3 && strcmp(argv[2], "verify") == 0, repair = argc >= 3 && strcmp(argv[2], "repair") == 0;
    bool signed_tail = false;
    if (argc == 5 && strcmp(argv[2], "pubkey") == 0 && strcmp(argv[3], "-c") == 0)
        return cmd_audit_pubkey(argv[4]);
    for (int i = 3; i < argc && (verify || repair); i++) {
        if (strcmp(argv[i], "--expect-head") == 0 && verify && i + 1 < argc)
            expect = argv[++i];
        else if (strcmp(argv[i], "--pubkey") == 0 && verify && i + 1 < argc && npub < CUSTOS_GOVLOG_MAX_PUBKEYS)
            pubkeys[npub++] = argv[++i];
        else if (strcmp(argv[i], "--signed-tail") == 0 && verify)
            signed_tail = true;
        else if (strcmp(argv[i], "--genesis") == 0 && i + 1 < argc)
            genesis = argv[++i];
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else
            file = NULL, verify = repair = false;
    }
    if (!file) {
        usage(stderr);
        return 2;
    }
    if (repair) {
        int repaired = 0, rc = custos_govlog_repair_file(file, genesis, stdout, &repaired);
        if (rc < 0) {
            fprintf(stderr, "%s: repair failed: %s\n", file, custos_strerror(rc));
            return 1;
        }
        if (!repaired)
            printf("%s: nothing to repair\n", file);
        return 0;
    }
    custos_govlog_verify_result_t res;
    int rc = custos_govlog_verify_file_signed(file, genesis, expect, pubkeys, npub, signed_tail, stdout, &res);
    if (rc == 0 || rc == CUSTOS_EPROTO) {
        if (res.checkpoints == 0)
            printf("checkpoints: none (a log from before signed checkpoints, or never signed): hash chain only\n");
        else
            printf("checkpoints: %llu %s, the last at seq %llu (line %llu)\n", (unsigned long long)res.checkpoints,
                   res.signatures_checked ? "with valid signatures" : "(signatures NOT checked: give --pubkey)",
                   (unsigned long long)res.last_checkpoint_seq, (unsigned long long)res.last_checkpoint_line);
        if (res.checkpoints && res.unsigned_tail)
            printf("unsigned tail: %llu record(s) after the last checkpoint; their removal could not be detected "
                   "(a stopped custos ends its log with a checkpoint; --signed-tail makes this a failure)\n",
                   (unsigned long long)res.unsigned_tail);
    }
    if (rc == 0) {
        printf("ok: %llu records, head %s\n", (unsigned long long)res.records, res.head);
        return 0;
    }
    if (rc == CUSTOS_EPROTO) {
        printf("FAILED: %u problem(s) in %s, first at line %llu\n", res.problems, file,
               (unsigned long long)res.first_bad_line);
        return 1;
    }
    fprintf(stderr, "%s: cannot verify: %s\n", file, custos_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    /* backends[].auth.*_secret: resolved from the store where backends are called or checked */
    bool resolve = strcmp(cmd, "serve") == 0 || strcmp(cmd, "config") == 0;
    custos_config_set_secret_resolver(resolve ? custos_store_secret_resolve : custos_store_secret_placeholder);
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
    if (strcmp(cmd, "audit") == 0)
        return cmd_audit(argc, argv);
    if (strcmp(cmd, "keys") == 0)
        return custos_keys_cli(argc - 1, argv + 1);
    if (strcmp(cmd, "kek") == 0)
        return custos_kek_cli(argc - 1, argv + 1);
    if (strcmp(cmd, "purge") == 0)
        return custos_purge_cli(argc - 1, argv + 1);
    if (strcmp(cmd, "secrets") == 0)
        return custos_secrets_cli(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0)
        return custos_cli_check(argc - 2, argv + 2, stdin, stdout);
    if (strcmp(cmd, "eval") == 0) {
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "--fairness") == 0) /* docs/rai-eval.md */
                return custos_cli_fairness(argc - 2, argv + 2, stdout);
        return custos_cli_eval(argc - 2, argv + 2, stdout);
    }
    if (strcmp(cmd, "redteam") == 0)
        return custos_cli_redteam(argc - 2, argv + 2, stdout);
    if (strcmp(cmd, "train") == 0)
        return custos_cli_train(argc - 2, argv + 2, stderr);
    if (strcmp(cmd, "evidence") == 0) /* docs/evidence.md */
        return custos_evidence_cli(argc - 1, argv + 1);
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
