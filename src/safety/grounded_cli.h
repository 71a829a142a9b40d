/* SPDX-License-Identifier: Apache-2.0
 * Groundedness parts of the safety command line: custos check --groundedness, custos eval --task grounded, and the
 * grounded-format row parser shared with the trainer. */
#ifndef CUSTOS_SAFETY_GROUNDED_CLI_H
#define CUSTOS_SAFETY_GROUNDED_CLI_H

#include "safety/grounded.h"

#include <json-c/json.h>
#include <stdio.h>

/* One row {"sources":[...],"text","grounded"?,"query"?,"src"?}; pointers borrow from the json object. */
typedef struct custos_grounded_row {
    custos_grounded_input_t in;
    const char *src_ptr[CUSTOS_GROUNDED_MAX_SOURCES];
    size_t src_len[CUSTOS_GROUNDED_MAX_SOURCES];
    int label;       /* 1 ungrounded, 0 grounded, -1 absent */
    const char *set; /* "src" or "" */
} custos_grounded_row_t;

/* 0, CUSTOS_EINVAL (shape) or CUSTOS_ETOOBIG (more than CUSTOS_GROUNDED_MAX_SOURCES sources). */
int custos_grounded_parse_row(json_object *j, custos_grounded_row_t *r);

/* custos check --groundedness [--model FILE]: reads {"id","sources":[...],"text","query"?} lines from in and writes
 * {"id","ungrounded_detected","ungrounded_percentage","score","details":[{"start","end"}]} (code points) to out, one
 * line per input line; a bad line gets {"id","error"}. model NULL = the default grounded.model. Exit code. */
int custos_cli_check_grounded(const char *model, FILE *in, FILE *out);

/* custos eval --task grounded [--model FILE] FILE.jsonl: balanced accuracy, AUPRC (positive = ungrounded) overall
 * and per src, and speed (per row and for a 1 KB answer against 4 KB of sources). Exit code. */
int custos_cli_eval_grounded(const char *model, const char *file, FILE *out);

/* Argument front ends for cli.c: argv as given to custos_cli_check / custos_cli_eval / custos_cli_train
 * (train: argv[0] = "grounded"; options --data, --out, --dev-out, --lr). Return the exit code. */
int custos_grounded_cli_check_args(int argc, char **argv, FILE *in, FILE *out);
int custos_grounded_cli_eval_args(int argc, char **argv, FILE *out);
int custos_grounded_cli_train_args(int argc, char **argv, FILE *out);

#endif
