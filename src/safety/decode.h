/* SPDX-License-Identifier: Apache-2.0
 * Decoding pre-pass of the prompt shields: finds base64, hex, rot13-marked and percent-encoded segments and Unicode
 * tag-character text, decodes them (bounded size and depth), and counts cheap hidden-text / exfiltration signals. */
#ifndef CUSTOS_SAFETY_DECODE_H
#define CUSTOS_SAFETY_DECODE_H

#include <stddef.h>

#define CUSTOS_DECODE_MAX_DEPTH 2 /* decoded text is itself scanned once more */
#define CUSTOS_DECODE_MIN_B64 16  /* shortest base64 run considered (characters) */
#define CUSTOS_DECODE_MIN_HEX 16  /* shortest hex run considered (digits) */

enum {
    CUSTOS_DEC_BASE64 = 1u << 0,
    CUSTOS_DEC_HEX = 1u << 1,
    CUSTOS_DEC_ROT13 = 1u << 2,
    CUSTOS_DEC_PERCENT = 1u << 3,
    CUSTOS_DEC_TAGS = 1u << 4,
};

/* Structural signals of a text (document attacks). */
typedef struct custos_decode_signals {
    size_t tag_chars;   /* Unicode tag characters U+E0000..U+E007F */
    size_t zw_run_max;  /* longest run of zero-width / invisible characters */
    size_t exfil_links; /* markdown images whose http(s) URL carries query data (?k=v) */
    size_t hidden_html; /* white-on-white / display:none / font-size:0 style fragments */
} custos_decode_signals_t;

/* Decodes every encoded segment of text[0..len) (depth CUSTOS_DECODE_MAX_DEPTH) and writes the decoded texts,
 * separated by '\n', to out (capacity cap, always NUL-terminated when cap > 0; output beyond cap is dropped).
 * *kinds (may be NULL) receives the CUSTOS_DEC_* found. Returns the bytes written (0 = nothing encoded). Pure,
 * thread-safe, never allocates. */
size_t custos_decode_segments(const char *text, size_t len, char *out, size_t cap, unsigned *kinds);

/* Counts the structural signals of text[0..len) into *sig. Pure and thread-safe. */
void custos_decode_signals(const char *text, size_t len, custos_decode_signals_t *sig);

#endif
