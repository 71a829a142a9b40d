/* SPDX-License-Identifier: Apache-2.0
 * PII parts of the safety command line: the "pii" field of custos check and custos eval --task pii. */
#ifndef CUSTOS_SAFETY_PII_CLI_H
#define CUSTOS_SAFETY_PII_CLI_H

#include "safety/pii.h"

#include <stdio.h>

/* Scans text and writes `,"pii":[{"type":"EMAIL","start":10,"end":27},...]` (code-point offsets) to out.
 * Returns 0 or the scan error (nothing written then). Not thread-safe across threads sharing scratch. */
int custos_pii_write_json(FILE *out, const custos_pii_t *p, const char *text, size_t len,
                          custos_safety_scratch_t *scratch);

/* custos eval --task pii [--mrn-format FMT] FILE.jsonl: per-type span precision, recall and F2 (exact and overlap)
 * printed to out. argv as for custos_cli_eval. Returns the exit code (0, 1 failure, 2 usage). */
int custos_pii_cli_eval(int argc, char **argv, FILE *out);

#endif
