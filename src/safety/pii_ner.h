/* SPDX-License-Identifier: Apache-2.0
 * Learned tagger for names and addresses (PERSON, STREET_ADDRESS, ORGANIZATION, LOCATION): a hashed linear model
 * (model.h format, one head per IO tag) over per-token features, decoded greedily; see docs/models/pii.md. The
 * tokeniser and the features are shared with the trainer (train_pii.c) so training and scoring agree exactly. */
#ifndef CUSTOS_SAFETY_PII_NER_H
#define CUSTOS_SAFETY_PII_NER_H

#include "safety/model.h"
#include "safety/normalize.h"
#include "safety/pii.h"

#include <stddef.h>
#include <stdint.h>

/* Tag i of the model = head i: "O", then the entity types in this order. */
#define CUSTOS_PII_NER_NTAGS 5
extern const char *const custos_pii_ner_heads[CUSTOS_PII_NER_NTAGS];
/* custos_pii_type_t of tag i (tag 0 = outside: -1). */
extern const int custos_pii_ner_tag_type[CUSTOS_PII_NER_NTAGS];

#define CUSTOS_PII_NER_MAX_FEATS 24

/* One token of the original text: a run of word characters (inner apostrophes and hyphens included) or one other
 * non-space character. Offsets: cs/ce in code points, bs/be in bytes, of the original text. */
typedef struct custos_pii_ner_tok {
    uint32_t cs, ce, bs, be;
    uint32_t word;  /* hash of the ASCII-lower-cased token */
    uint32_t shape; /* hash of the compressed character shape (Xx, dd, X.) */
    uint32_t pre, suf;
    uint8_t cap;  /* 1 = starts with an upper-case letter */
    uint8_t nl;   /* 1 = a line break precedes the token */
    uint8_t kind; /* 0 word, 1 number, 2 punctuation */
    uint8_t
        lex; /* lexicon class: 1 street suffix, 2 title, 3 unit (apt), 4 company / name suffix, 5 identifier label */
} custos_pii_ner_tok_t;

/* Tokenises text[0..len) from byte *pos (code point *cpos) into toks (capacity cap) and advances *pos / *cpos past
 * the last token written; returns the number of tokens (cap when it stopped early, then call again). Invalid UTF-8
 * counts one code point per byte, as in the normaliser. */
size_t custos_pii_ner_tokenize(const char *text, size_t len, size_t *pos, size_t *cpos, custos_pii_ner_tok_t *toks,
                               size_t cap);

/* Feature bucket indices (already masked to the model's hash size) of token i; returns their number. */
size_t custos_pii_ner_features(const custos_pii_ner_tok_t *t, size_t n, size_t i, uint32_t seed, uint32_t mask,
                               uint32_t *out);

/* 0 if m is a PII tagger model (heads custos_pii_ner_heads), else CUSTOS_EINVAL. */
int custos_pii_ner_check(const custos_model_t *m);

/* Tags text[0..len) and appends spans (code points of the original text, text order, at most cap) to out, setting
 * *n (findings past cap are dropped). Works in windows of tokens on the stack (about 20 KiB); no allocation.
 * Thread-safe. */
void custos_pii_ner_tag(const custos_model_t *m, const char *text, size_t len, custos_pii_span_t *out, size_t cap,
                        size_t *n);

#endif
