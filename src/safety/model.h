/* SPDX-License-Identifier: Apache-2.0
 * Versioned binary format of the hashed linear safety models: header (magic, version, feature configuration, heads
 * with calibration and severity bands, checksum) followed by int8 weights; loaded read-only with mmap. */
#ifndef CUSTOS_SAFETY_MODEL_H
#define CUSTOS_SAFETY_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define CUSTOS_MODEL_MAGIC "CUSTOSLM" /* 8 bytes, no NUL on disk */
/* Newest format written (only when min_feats != 0, see below) and oldest read (v1 = v2 with min_feats 0). */
#define CUSTOS_MODEL_VERSION 2u
#define CUSTOS_MODEL_MIN_VERSION 1u
#define CUSTOS_MODEL_MAX_MIN_FEATS 4096u
#define CUSTOS_MODEL_MAX_HEADS 8
#define CUSTOS_MODEL_KIND_HASHED_LINEAR 1u
#define CUSTOS_MODEL_MAX_SIZE (64u * 1024 * 1024)

/* One output head. p = 1 / (1 + exp(-(platt_a * z + platt_b))) with z = bias + scale * sum(sign * q) / sqrt(max(n,
 * min_feats)), n = number of features of the text.
 * bands[k] is the smallest calibrated score with severity k + 1 (k = 0..6), non-decreasing. */
typedef struct custos_model_head {
    char name[16]; /* NUL-terminated category name, e.g. "self_harm" */
    float scale;   /* int8 -> float weight scale */
    float bias;
    float platt_a, platt_b;
    float bands[7];
} custos_model_head_t;

/* On-disk header (little-endian, naturally aligned, no padding; see docs/models/harm.md). */
typedef struct custos_model_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size; /* sizeof(custos_model_header_t) */
    uint32_t kind;        /* CUSTOS_MODEL_KIND_HASHED_LINEAR */
    uint32_t hash_bits;   /* buckets = 1 << hash_bits, 16..22 */
    uint32_t hash_seed;
    uint32_t norm_flags;         /* CUSTOS_NORM_* used for training and scoring */
    uint32_t word_ngrams;        /* word n-grams 1..word_ngrams (0..3) */
    uint32_t char_min, char_max; /* character n-gram lengths (0 = none; 1..8) */
    uint32_t n_heads;            /* 1..CUSTOS_MODEL_MAX_HEADS */
    custos_model_head_t heads[CUSTOS_MODEL_MAX_HEADS];
    uint64_t weights_offset; /* = header_size */
    uint64_t weights_size;   /* buckets * n_heads bytes (int8, bucket-major) */
    uint32_t checksum;       /* zlib crc32 of the header with this field 0, then of the weights */
    /* v2: floor of n in the 1/sqrt(n) feature normalisation, so that a very short text needs strong features, not
     * one or two, to move its score (0 = none; always 0 in v1 files, where this was a reserved field) */
    uint32_t min_feats;
} custos_model_header_t;

/* A loaded model: immutable after load, safe to share read-only between threads. */
typedef struct custos_model {
    const custos_model_header_t *h;
    const int8_t *w; /* weights, buckets * n_heads */
    void *base;
    size_t size;
    int mapped; /* 1 = mmap (munmap on free), 0 = heap copy */
} custos_model_t;

/* Opens and validates a model file (mmap, read-only, MAP_SHARED so workers and processes share pages).
 * On error returns CUSTOS_EIO / CUSTOS_EINVAL / CUSTOS_ETOOBIG and writes a one-line reason to err. */
int custos_model_open(const char *path, custos_model_t **out, char *err, size_t errlen);

/* Validates buf[0..len) as a model and makes a heap copy (tests, trainer). Same errors as custos_model_open. */
int custos_model_from_buffer(const void *buf, size_t len, custos_model_t **out, char *err, size_t errlen);

/* Releases a model (NULL-safe). No scorer may use it afterwards. */
void custos_model_free(custos_model_t *m);

/* Serialises header h (offsets, sizes and checksum are filled in) and weights w into a heap buffer (*out, *outlen;
 * caller frees). */
int custos_model_serialize(const custos_model_header_t *h, const int8_t *w, void **out, size_t *outlen);

/* Writes a model atomically (temporary file + rename). */
int custos_model_write(const char *path, const custos_model_header_t *h, const int8_t *w);

/* 0 if m has exactly n heads named names[0..n) in that order, else CUSTOS_EINVAL (also for m == NULL). */
int custos_model_check_heads(const custos_model_t *m, const char *const *names, int n);

#endif
