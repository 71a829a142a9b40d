/* SPDX-License-Identifier: Apache-2.0
 * Internal to the trainers (src/safety/train*.c): logging, the deterministic RNG, hashing and the data split, the
 * hashed-linear training steps (features, AdaGrad, shuffle, int8 quantisation), Platt calibration and the output
 * files. Single-threaded helpers; none keeps state between calls. */
#ifndef CUSTOS_SAFETY_TRAIN_INTERNAL_H
#define CUSTOS_SAFETY_TRAIN_INTERNAL_H

#include "safety/harm.h"
#include "safety/model.h"
#include "safety/normalize.h"
#include "safety/train.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Which part of the data a row belongs to (custos_train_split_of). */
enum { CUSTOS_TRAIN_SPLIT_TRAIN = 0, CUSTOS_TRAIN_SPLIT_DEV = 1, CUSTOS_TRAIN_SPLIT_CAL = 2 };

/* FNV-1a 64-bit offset basis: the start state of custos_train_fnv1a. */
#define CUSTOS_TRAIN_FNV_OFFSET 0xcbf29ce484222325ULL

/* Progress line to o's log stream (if any); never training text. */
void custos_train_log(const custos_train_opts_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 64-bit finaliser (murmur3 fmix64). */
uint64_t custos_train_mix64(uint64_t k);
/* Deterministic PRNG step on state *s. */
uint64_t custos_train_rng_next(uint64_t *s);
/* Fits Platt scaling p = 1/(1+exp(-(a*z+b))) to logits z with 0/1 labels y; identity when too few rows. */
void custos_train_platt_fit(const float *z, const unsigned char *y, size_t n, float *pa, float *pb);

/* Appends the elem-byte *item to a trainer's growable array: vp points to the array pointer (T **, NULL when empty),
 * *n counts the items, *cap the room (doubled, from 4096 items, when full). Returns 0 or CUSTOS_ENOMEM (array,
 * count and room unchanged; the caller still owns what *item points to). */
int custos_train_push(void *vp, size_t *n, size_t *cap, const void *item, size_t elem);
/* A MANIFEST.tsv callback's answer for a file loader's result rc on path: 0 when rc >= 0, else rc with
 * "cannot read PATH: reason" in err. */
int custos_train_read_result(int rc, const char *path, char *err, size_t errlen);

/* FNV-1a over the bytes p[0..n), continued from state h (CUSTOS_TRAIN_FNV_OFFSET to start); no final mix. */
uint64_t custos_train_fnv1a(const void *p, size_t n, uint64_t h);
/* Split key of a normalised text: FNV-1a over its word characters only (custos_norm_is_word), then mixed, so that
 * spacing and punctuation variants of one text land in one split. */
uint64_t custos_train_word_key(const custos_norm_t *n);
/* The 80 / 10 / 10 train / dev / calibration split by key % 100; a train_only row always trains. */
uint8_t custos_train_split_of(uint64_t key, int train_only);

/* Fills *h (all other fields 0) with the hashed-linear feature configuration the harm and shields models share: all
 * normalisations, word 1-2-grams, character 3-5-grams; hash_bits = o->hash_bits or default_bits (range not
 * checked), hash_seed = o->seed or 1, n_heads, min_feats (model.h). */
void custos_train_hashed_header(custos_model_header_t *h, const custos_train_opts_t *o, uint32_t default_bits,
                                uint32_t n_heads, uint32_t min_feats);

/* Normalises text[0..len) with cfg's flags, hashes its features into sc->feat (*cnt of them) and sets *x to each
 * feature's magnitude 1 / sqrt(max(*cnt, min_feats)), as the scorer does. Returns 0 (*cnt 0 and *x untouched when
 * the text has no features) or custos_normalize's / custos_harm_features's negative code. */
int custos_train_features(const custos_harm_fcfg_t *cfg, const char *text, size_t len, size_t min_feats,
                          custos_safety_scratch_t *sc, size_t *cnt, float *x);
/* One AdaGrad step on parameter *w, whose squared-gradient sum is *g2, for gradient gr at learning rate lr. Inline:
 * it runs once per feature and head of every training row. */
static inline void custos_train_adagrad(float *w, float *g2, float gr, float lr)
{
    *g2 += gr * gr;
    *w -= lr * gr / sqrtf(*g2 + 1e-6f);
}

/* Training state of a hashed-linear model (model.h: bucket-major weights, one logistic head per column) fitted by
 * AdaGrad (custos_train_adagrad) in float. */
typedef struct custos_train_linear {
    float *w, *g; /* weights, squared-gradient sums: buckets * n_heads */
    float bias[CUSTOS_MODEL_MAX_HEADS], gb[CUSTOS_MODEL_MAX_HEADS]; /* head biases and their sums */
    float cw[CUSTOS_MODEL_MAX_HEADS][2]; /* class weights [head][negative, positive]: the trainer's */
    size_t buckets, n_heads, min_feats;  /* from the header */
    uint64_t mask;                       /* buckets - 1 */
    float lr;                            /* o->lr, default 0.2 */
} custos_train_linear_t;
/* Sizes t (zero-initialised by the caller; bias and cw are left as they are) for header h and allocates zeroed
 * weights. Returns 0 or CUSTOS_ENOMEM; custos_train_linear_dispose frees either way. */
int custos_train_linear_alloc(custos_train_linear_t *t, const custos_model_header_t *h, const custos_train_opts_t *o);
/* Quantises every head of t (custos_train_quantize_head) into a new weight array (caller frees; NULL when out of
 * memory) and sets each head's scale and bias, and platt_a = 1, in h; names, platt_b and bands are the trainer's. */
int8_t *custos_train_linear_quantize(const custos_train_linear_t *t, custos_model_header_t *h);
void custos_train_linear_dispose(custos_train_linear_t *t);

/* Fisher-Yates shuffle of order[0..n) driven by *rng (custos_train_rng_next): the fixed epoch order. */
void custos_train_shuffle(size_t *order, size_t n, uint64_t *rng);
/* Quantises head c of the bucket-major weights w (buckets * nh floats) into q (same layout) as int8 with one scale,
 * max |w| / 127 (1 when every weight is 0): q = lrintf(w / scale) clamped to +-127. Returns the scale. */
float custos_train_quantize_head(const float *w, size_t buckets, size_t nh, size_t c, int8_t *q);
/* Serialises h and weights q (custos_model_serialize) and loads the bytes back as a heap model *m (caller frees), so
 * that calibration scores exactly what custos_model_write will store; *len receives the serialised size. Returns 0
 * or a negative code (err filled where custos_model_from_buffer fills it). */
int custos_train_model_build(const custos_model_header_t *h, const int8_t *q, custos_model_t **m, size_t *len,
                             char *err, size_t errlen);

/* Row i of rows (a trainer's own row array) as a dev-split JSONL line, or NULL when row i is not a dev row. */
typedef const char *(*custos_train_dev_line_fn)(const void *rows, size_t i);
/* Writes the dev lines of rows[0..n) (line_of) to path, one a line, in row order (--dev-out). Returns 0, CUSTOS_EIO
 * with "cannot write PATH" in err when path cannot be created, or CUSTOS_EIO (err untouched) when closing it fails. */
int custos_train_write_dev(const char *path, custos_train_dev_line_fn line_of, const void *rows, size_t n, char *err,
                           size_t errlen);
/* The end of a hashed-linear trainer (harm, shields): writes the model h + q to o->out (custos_model_write), then
 * the dev lines to o->dev_out if set (as custos_train_write_dev), then logs "wrote OUT (len bytes)". Returns 0 or
 * the first failure: the model write's code with "cannot write OUT" in err (nothing else done), CUSTOS_EIO with
 * "cannot write DEV_OUT" (no log line), or CUSTOS_EIO with err untouched when the dev file fails to close (the log
 * line is still written: the model is in place). */
int custos_train_write_outputs(const custos_train_opts_t *o, const custos_model_header_t *h, const int8_t *q,
                               size_t len, custos_train_dev_line_fn line_of, const void *rows, size_t n, char *err,
                               size_t errlen);

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
