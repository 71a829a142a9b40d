/* SPDX-License-Identifier: Apache-2.0
 * Token counting exactly like OpenAI's tiktoken (`encode_ordinary`): the o200k_base and cl100k_base
 * encodings, a hand-written pre-tokeniser equivalent to their regular expressions (Unicode categories
 * from utf8proc, no backtracking) and byte-pair merging over a hash table of ranks. docs/tokens.md
 * states the rules, including the chat-message overhead and what happens to invalid UTF-8.
 *
 * Thread-safety: a loaded custos_tok_t is immutable; any number of threads may encode with it at once.
 * Encoding allocates only for pieces longer than CUSTOS_TOK_STACK_PIECE bytes. */
#ifndef CUSTOS_TOKENIZE_TOKENIZE_H
#define CUSTOS_TOKENIZE_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CUSTOS_TOK_O200K = 0, /* GPT-4o family and newer (gpt-4.1, gpt-4.5, gpt-5, o1, o3, o4) */
    CUSTOS_TOK_CL100K,    /* GPT-4, GPT-3.5, text-embedding-ada-002 / -3 */
    CUSTOS_TOK_NKINDS,
} custos_tok_kind_t;

typedef struct custos_tok custos_tok_t;

/* Pieces up to this many bytes are merged with stack scratch and the quadratic merge tiktoken uses;
 * longer ones use an O(n log n) heap merge with the same result (a megabyte of one letter stays fast). */
#define CUSTOS_TOK_STACK_PIECE 256

/* "o200k_base" / "cl100k_base". Never NULL. */
const char *custos_tok_kind_name(custos_tok_kind_t kind);

/* Parses an encoding name. Returns 0 or CUSTOS_EINVAL. */
int custos_tok_kind_parse(const char *name, custos_tok_kind_t *out);

/* The encoding tiktoken's model table gives `model` (prefix rules as in tiktoken/model.py; Azure's
 * "gpt-35-turbo" spelling included); names it does not know get o200k_base. */
custos_tok_kind_t custos_tok_kind_for_model(const char *model);

/* Loads `<dir>/<kind name>.tiktoken` (the original tiktoken text format: base64(bytes) SP rank LF) and
 * checks its SHA-256 against the hash OpenAI publishes. Returns 0, CUSTOS_ENOTFOUND (no file),
 * CUSTOS_EINVAL (wrong hash or malformed), CUSTOS_EIO or CUSTOS_ENOMEM. The caller owns *out. */
int custos_tok_load(const char *dir, custos_tok_kind_t kind, custos_tok_t **out);
void custos_tok_free(custos_tok_t *t);
custos_tok_kind_t custos_tok_kind(const custos_tok_t *t);

/* encode_ordinary: special-token text such as "<|endoftext|>" is ordinary text. Writes the first `cap`
 * token ids to `ids` (may be NULL when cap is 0) and returns the total number of tokens (which may be
 * larger than cap), or CUSTOS_ENOMEM. Invalid UTF-8 is first replaced with U+FFFD, one per maximal
 * ill-formed subsequence (what Python's bytes.decode("utf-8", "replace") does). */
int64_t custos_tok_encode(const custos_tok_t *t, const char *text, size_t len, uint32_t *ids, size_t cap);

/* Number of tokens of text (custos_tok_encode without ids). */
int64_t custos_tok_count(const custos_tok_t *t, const char *text, size_t len);

/* Calls fn for each pre-tokeniser piece (byte offsets into text, which must be valid UTF-8) and stops
 * early when fn returns non-zero. For tests and the fuzzer. */
int custos_tok_split(custos_tok_kind_t kind, const char *text, size_t len,
                     int (*fn)(void *ud, size_t start, size_t end), void *ud);

/* The bytes of token id (not NUL-terminated) and their count in *len, or NULL for an id out of range.
 * Borrowed from t. */
const uint8_t *custos_tok_token_bytes(const custos_tok_t *t, uint32_t id, size_t *len);

/* True if text is well-formed UTF-8 (no surrogates, no overlongs, at most U+10FFFF). */
int custos_tok_utf8_valid(const char *text, size_t len);

#endif
