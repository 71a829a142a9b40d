/* SPDX-License-Identifier: Apache-2.0
 * Internal to the trainers (src/safety/train*.c): logging, the deterministic RNG, Platt calibration. */
#ifndef CUSTOS_SAFETY_TRAIN_INTERNAL_H
#define CUSTOS_SAFETY_TRAIN_INTERNAL_H

#include "safety/train.h"

#include <stddef.h>
#include <stdint.h>

/* Progress line to o's log stream (if any); never training text. */
void custos_train_log(const custos_train_opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 64-bit finaliser (murmur3 fmix64). */
uint64_t custos_train_mix64(uint64_t k);
/* Deterministic PRNG step on state *s. */
uint64_t custos_train_rng_next(uint64_t *s);
/* Fits Platt scaling p = 1/(1+exp(-(a*z+b))) to logits z with 0/1 labels y; identity when too few rows. */
void custos_train_platt_fit(const float *z, const unsigned char *y, size_t n, float *pa, float *pb);

/* Called for each MANIFEST.tsv row whose commercial_ok is "yes": file is the data file relative to the data
 * directory, path its full path, notes the row's notes column ("" when absent). Return 0 to go on, or a negative
 * code (with a reason in err) to stop. */
typedef int (*custos_train_manifest_fn)(void *ud, const char *file, const char *path, const char *notes, char *err,
                                        size_t errlen);
/* Reads data_dir/MANIFEST.tsv (tab-separated, header row naming at least `file` and `commercial_ok`) and calls fn
 * for every row that may be used commercially, in file order. Returns 0, fn's negative code, CUSTOS_EIO (no
 * manifest) or CUSTOS_EINVAL (no such columns), with err filled. The one place that decides which data a shipped
 * model may be trained on. */
int custos_train_manifest_each(const char *data_dir, custos_train_manifest_fn fn, void *ud, char *err, size_t errlen);

#endif
