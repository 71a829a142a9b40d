/* SPDX-License-Identifier: Apache-2.0
 * Responsible-AI evaluation commands (docs/rai-eval.md): custos eval --fairness (cli_fairness.c) and custos redteam
 * (cli_redteam.c). Each takes the arguments after the command word (argv[0] = first argument), prints its summary
 * to out and returns the process exit code (documented in docs/rai-eval.md). */
#ifndef CUSTOS_API_CLI_RAI_H
#define CUSTOS_API_CLI_RAI_H

#include <stdio.h>

/* Exit codes shared by both commands. */
enum {
    CUSTOS_RAI_EXIT_OK = 0,      /* evaluated; within the thresholds */
    CUSTOS_RAI_EXIT_ERROR = 1,   /* could not evaluate (config, models, templates, corpus, output files) */
    CUSTOS_RAI_EXIT_USAGE = 2,   /* bad arguments */
    CUSTOS_RAI_EXIT_GATE = 3,    /* fairness: a disparity above its threshold (or sentences that failed to score) */
    CUSTOS_RAI_EXIT_EXPECT = 4,  /* redteam: a case's outcome differed from its "expect" field */
    CUSTOS_RAI_EXIT_NETWORK = 5, /* redteam: some requests got no HTTP answer or an unexpected status */
};

int custos_cli_fairness(int argc, char **argv, FILE *out);
int custos_cli_redteam(int argc, char **argv, FILE *out);

/* Usage lines for main's help text. */
extern const char custos_cli_rai_usage[];

#endif
