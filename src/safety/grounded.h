/* SPDX-License-Identifier: Apache-2.0
 * Groundedness detection (docs/models/groundedness.md): which sentences of an answer the supplied sources do not
 * support. The answer is split into sentences; each is compared with the sources (content-word and IDF-weighted
 * overlap, the best-aligned source sentence, source bigram runs, numbers, number-unit pairs such as dosages, dates,
 * names, negation) and a trained logistic model turns that evidence into P(ungrounded).
 *
 * The model file (grounded.model) is a small versioned format of its own: header (magic "CUSTOSGD", version,
 * feature count, standardisation, weights, the IDF table's size), IDF table (uint8 per hashed bucket), crc32. It is
 * read into memory once, validated completely, and then immutable: safe to share between threads. */
#ifndef CUSTOS_SAFETY_GROUNDED_H
#define CUSTOS_SAFETY_GROUNDED_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CUSTOS_GROUNDED_MAGIC "CUSTOSGD"
#define CUSTOS_GROUNDED_VERSION 1u
#define CUSTOS_GROUNDED_NFEAT 22
#define CUSTOS_GROUNDED_IDF_BITS 16u /* IDF buckets = 1 << bits */
/* Input caps of custos_grounded_detect (bytes); larger input gets CUSTOS_ETOOBIG. */
#define CUSTOS_GROUNDED_MAX_TEXT (256u * 1024)
#define CUSTOS_GROUNDED_MAX_SOURCES_TOTAL (1024u * 1024)
#define CUSTOS_GROUNDED_MAX_SOURCES 256u

typedef struct custos_grounded_model custos_grounded_model_t;

typedef enum { CUSTOS_GROUNDED_GENERIC = 0, CUSTOS_GROUNDED_MEDICAL = 1 } custos_grounded_domain_t;
typedef enum { CUSTOS_GROUNDED_SUMMARIZATION = 0, CUSTOS_GROUNDED_QNA = 1 } custos_grounded_task_t;

/* One request. All strings are UTF-8 (invalid bytes are treated as word characters, never rejected here), not
 * NUL-terminated, borrowed for the call. query may be NULL (used with QNA only: answer words that repeat the
 * question are not counted as claims). */
typedef struct custos_grounded_input {
    const char *text;
    size_t text_len;
    const char *const *sources;
    const size_t *source_lens;
    size_t n_sources;
    const char *query;
    size_t query_len;
    custos_grounded_domain_t domain; /* MEDICAL: numbers, units and dosages that the sources lack weigh more */
    custos_grounded_task_t task;
} custos_grounded_input_t;

/* An ungrounded sentence of text; offsets and lengths in UTF-8 bytes, UTF-16 code units and code points. */
typedef struct custos_grounded_span {
    size_t utf8_off, utf8_len;
    size_t utf16_off, utf16_len;
    size_t cp_off, cp_len;
    float score; /* P(ungrounded) of this sentence */
} custos_grounded_span_t;

/* Result: spans is heap memory owned by the result (custos_grounded_result_dispose). */
typedef struct custos_grounded_result {
    int detected;       /* at least one sentence scored >= 0.5 */
    float percentage;   /* code points of ungrounded sentences / code points of sentences, 0..1 */
    float score;        /* max sentence P(ungrounded), 0..1 (0 for a text without sentences) */
    size_t n_sentences; /* sentences scored */
    size_t n_spans;
    custos_grounded_span_t *spans;
} custos_grounded_result_t;

/* Loads and validates a model file (size, magic, version, counts, finite numbers, crc32). Errors: CUSTOS_EIO,
 * CUSTOS_EINVAL, CUSTOS_ETOOBIG, CUSTOS_ENOMEM, with a one-line reason in err. */
int custos_grounded_model_open(const char *path, custos_grounded_model_t **out, char *err, size_t errlen);
/* Same from memory (buf is copied). */
int custos_grounded_model_from_buffer(const void *buf, size_t len, custos_grounded_model_t **out, char *err,
                                      size_t errlen);
void custos_grounded_model_free(custos_grounded_model_t *m);

/* Scores in against model m (required). Fills *out (dispose it also after an error; it is zeroed first). Returns 0,
 * CUSTOS_EINVAL (NULL arguments), CUSTOS_ETOOBIG (input over the caps above) or CUSTOS_ENOMEM. Thread-safe: m is
 * read-only and all working memory belongs to the call. */
int custos_grounded_detect(const custos_grounded_model_t *m, const custos_grounded_input_t *in,
                           custos_grounded_result_t *out);
void custos_grounded_result_dispose(custos_grounded_result_t *r);

/* Writes {"ungrounded_detected","ungrounded_percentage","score","details":[{"start","end"}]} fields (code points,
 * without braces, each preceded by a comma) for custos check --groundedness. */
void custos_grounded_write_check_json(FILE *out, const custos_grounded_result_t *r);

/* ---- internal to the trainer and evaluation (grounded.c, train_grounded.c) ---- */

/* Sentence features of one input: *feats receives n_sent * CUSTOS_GROUNDED_NFEAT raw (unstandardised) values and
 * *n_sent the count (heap; caller frees). idf: bucket table of 1 << CUSTOS_GROUNDED_IDF_BITS uint8 (q / 16 = idf),
 * or NULL for a flat table. */
int custos_grounded_features(const uint8_t *idf, const custos_grounded_input_t *in, float **feats, size_t *n_sent);
/* Hash of a word as the IDF table keys it (lower-cased ASCII, numbers canonical); bucket = hash & mask. */
uint64_t custos_grounded_word_hash(const char *w, size_t n);
/* Calls fn for each word of text (hash as above). */
void custos_grounded_each_word(const char *text, size_t len, void (*fn)(void *ud, uint64_t h), void *ud);

/* Model contents for the trainer: serialises into a heap buffer (*out, *outlen). */
typedef struct custos_grounded_params {
    float mean[CUSTOS_GROUNDED_NFEAT], inv_std[CUSTOS_GROUNDED_NFEAT], w[CUSTOS_GROUNDED_NFEAT];
    float bias;      /* Summarization threshold folded in */
    float qna_bias;  /* added for task QnA */
    uint32_t n_docs; /* documents the IDF table was built from */
} custos_grounded_params_t;
int custos_grounded_model_serialize(const custos_grounded_params_t *p, const uint8_t *idf, void **out, size_t *outlen);

#endif
