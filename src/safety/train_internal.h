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

#endif
