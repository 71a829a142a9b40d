/* SPDX-License-Identifier: Apache-2.0
 * Text normalisation shared by every safety classifier: UTF-8 repair, NFKC + case folding, removal of invisible
 * characters, homoglyph / leetspeak folding, squeezing of repeats and spaced-out letters, with an offset map. */
#ifndef CUSTOS_SAFETY_NORMALIZE_H
#define CUSTOS_SAFETY_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

/* Default cap on the input size one call accepts (bytes). */
#define CUSTOS_SAFETY_MAX_INPUT (4u * 1024 * 1024)

/* Per-thread scratch buffers reused across calls so the hot path does not allocate once warmed up. Not
 * thread-safe: one scratch per worker. Buffers only grow (up to what max_input implies). */
typedef struct custos_safety_scratch {
    uint32_t *cp, *map; /* normalised code points and their original code-point offsets */
    size_t cap;
    uint32_t *tcp, *tmap; /* working copy */
    size_t tcap;
    uint64_t *feat; /* feature hashes (harm.c) */
    size_t feat_cap;
    /* Feature cache (harm.c custos_model_text_logits): the bytes of the last text whose features are in feat, and
     * the feature settings used, so that a second model with the same settings (harm and shields) scoring the same
     * text reuses them instead of normalising and hashing again. Valid only while fc_valid; any other writer of
     * feat (custos_harm_features) clears it. */
    char *fc_text;
    size_t fc_len, fc_cap, fc_count;
    uint32_t fc_cfg[5]; /* hash_seed, norm_flags, word_ngrams, char_min, char_max */
    int fc_valid;
    size_t max_input; /* bytes; larger inputs are refused with CUSTOS_ETOOBIG */
} custos_safety_scratch_t;

/* Result of custos_normalize: views into the scratch, valid until the next call with the same scratch. */
typedef struct custos_norm {
    const uint32_t *cp;  /* normalised code points */
    const uint32_t *map; /* map[i] = offset (in code points of the original text) that produced cp[i] */
    size_t len;          /* number of normalised code points */
    size_t orig_len;     /* code points in the original text (each invalid byte counts as one) */
    size_t invalid;      /* invalid UTF-8 bytes replaced by U+FFFD */
} custos_norm_t;

/* Normalisation steps (all on by default). */
enum {
    CUSTOS_NORM_NFKC = 1u << 0,      /* NFKC + Unicode case folding */
    CUSTOS_NORM_INVISIBLE = 1u << 1, /* drop zero-width, bidi controls, soft hyphen, BOM */
    CUSTOS_NORM_HOMOGLYPH =
        1u << 2,                  /* Cyrillic/Greek look-alikes -> Latin (in words that are Latin or all look-alikes) */
    CUSTOS_NORM_LEET = 1u << 3,   /* 0 1 3 4 5 7 @ $ -> o i e a s t a s inside words that contain letters */
    CUSTOS_NORM_SPACED = 1u << 4, /* "k i l l", "k.i.l.l" -> "kill" (3+ single letters) */
    CUSTOS_NORM_SQUEEZE = 1u << 5, /* runs of one character longer than 2 -> 2 */
    CUSTOS_NORM_ALL = 0x3f,
};

/* Initialise / dispose a caller-owned scratch. max_input 0 = CUSTOS_SAFETY_MAX_INPUT. */
void custos_safety_scratch_init(custos_safety_scratch_t *s, size_t max_input);
void custos_safety_scratch_dispose(custos_safety_scratch_t *s);

/* Normalises text[0..len) (any bytes; invalid UTF-8 is repaired) with the given CUSTOS_NORM_* flags.
 * Returns 0, CUSTOS_ETOOBIG (len > scratch max_input) or CUSTOS_ENOMEM. out points into scratch. */
int custos_normalize(const char *text, size_t len, unsigned flags, custos_safety_scratch_t *scratch,
                     custos_norm_t *out);

/* Encodes cp[0..n) as UTF-8 into dst (capacity cap, NUL-terminated). Returns bytes written (excluding NUL) or
 * CUSTOS_ETOOBIG if it does not fit. */
long custos_norm_to_utf8(const uint32_t *cp, size_t n, char *dst, size_t cap);

/* Number of code points custos_normalize counts in text[0..len) (custos_norm_t.orig_len: each invalid byte is one),
 * i.e. the original code-point offset of byte len when len is at a character boundary. */
size_t custos_norm_cp_count(const char *text, size_t len);

/* True if cp is a letter, digit or combining mark (word character for tokenisers). */
int custos_norm_is_word(uint32_t cp);

/* Decodes one UTF-8 code point at s[0..n) (n >= 1) by the rules the normaliser applies: overlongs, surrogates and
 * values above U+10FFFF are invalid. Sets *adv to the bytes consumed (1 for an invalid sequence, so code point
 * counts agree with custos_normalize's offset map) and returns the code point or -1. */
int32_t custos_norm_decode_utf8(const unsigned char *s, size_t n, size_t *adv);

#endif
