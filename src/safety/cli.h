/* SPDX-License-Identifier: Apache-2.0
 * Command-line front ends of the safety module: custos check, custos eval --task harm, custos train harm. */
#ifndef CUSTOS_SAFETY_CLI_H
#define CUSTOS_SAFETY_CLI_H

#include <stdio.h>

/* Each takes the arguments after the command word (argv[0] = first argument) and returns the process exit code
 * (0 ok, 1 failure, 2 usage). check reads in / writes out; eval and train print their report to out. */
int custos_cli_check(int argc, char **argv, FILE *in, FILE *out);
int custos_cli_eval(int argc, char **argv, FILE *out);
int custos_cli_train(int argc, char **argv, FILE *out);

/* custos eval --task attacks (eval_attacks.c): scores attacks-format JSONL (text, role, attack, src) with the shield
 * model (model = path or NULL for the default) and prints recall / FPR / AUPRC per role and per source. */
int custos_cli_eval_attacks(const char *model, const char *file, FILE *out);

/* Usage lines for main's help text. */
extern const char custos_cli_safety_usage[];

#endif
