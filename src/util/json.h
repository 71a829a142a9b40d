/* SPDX-License-Identifier: Apache-2.0
 * Safe JSON for client bodies: a strict RFC 8259 validator in front of json-c (whose STRICT mode still accepts
 * NaN, "1.", raw control characters and overlong UTF-8), and a JSON string-literal escaper. */
#ifndef CUSTOS_UTIL_JSON_H
#define CUSTOS_UTIL_JSON_H

#include <stddef.h>

#include "util/buf.h"

struct json_object;

/* Largest max_depth accepted by the functions below. */
#define CUSTOS_JSON_MAX_DEPTH 1024

/* Checks that s[0, len) is exactly one RFC 8259 JSON value, optionally surrounded by whitespace (SP, HT, LF, CR),
 * with at most max_depth (0..CUSTOS_JSON_MAX_DEPTH) nested arrays/objects. Strings must be valid UTF-8 with no raw
 * control characters; numbers follow the RFC grammar (no NaN/Infinity, leading zeros, "1.", ".5", "+1"); no
 * comments, single quotes or trailing commas; a leading BOM is rejected. Object keys must not contain \u0000
 * (json-c would truncate them). Escaped lone surrogates (\ud800) are accepted; json-c turns them into U+FFFD.
 * Returns 0, CUSTOS_EINVAL or CUSTOS_EDEPTH; on error *errpos (if not NULL) gets the byte offset of the problem and
 * *errmsg (if not NULL) a static description. Does not allocate. Thread-safe. */
int custos_json_validate(const char *s, size_t len, int max_depth, size_t *errpos, const char **errmsg);

/* Parses exactly one JSON value occupying the whole buffer (see custos_json_validate for the accepted grammar).
 * Returns 0 and a new reference in *out (release with json_object_put; *out is NULL when the document is `null`),
 * or CUSTOS_EINVAL (syntax error), CUSTOS_EDEPTH, CUSTOS_ETOOBIG (len > INT_MAX - 1, json-c's limit) or
 * CUSTOS_ENOMEM, with *errpos / *errmsg as for custos_json_validate (either may be NULL).
 * Documented json-c behaviour: duplicate object keys keep the last value (callers re-serialise the parsed tree,
 * so policy sees what the upstream sees); integers outside int64/uint64 saturate to INT64_MIN / UINT64_MAX;
 * numbers with a fraction or exponent are doubles that re-serialise with their original text.
 * Thread-safe (a tokener per call). */
int custos_json_parse(const char *s, size_t len, int max_depth, struct json_object **out, size_t *errpos,
                      const char **errmsg);

/* Appends s[0, len) as a JSON string literal, quotes included: '"' and '\\' are backslash-escaped, control
 * characters become \n, \r, \t, \b, \f or \u00XX, and each maximal invalid UTF-8 subpart becomes U+FFFD (the
 * WHATWG decoder's rule). Appends all or nothing. Returns 0, CUSTOS_ETOOBIG (b's cap) or CUSTOS_ENOMEM. */
int custos_json_append_string(custos_buf_t *b, const char *s, size_t len);

/* Appends o as compact JSON (no spaces, '/' not escaped, non-ASCII UTF-8 kept). Faster than json-c's own
 * serialiser; numbers that json-c parsed keep their original text (doubles) or exact value (integers).
 * NULL o writes null. Returns 0, CUSTOS_ETOOBIG or CUSTOS_ENOMEM (b may then hold a partial value). */
int custos_json_write(custos_buf_t *b, struct json_object *o);

/* Frees this thread's cached parser state (custos_json_parse keeps one tokener per thread). Call before a
 * thread that parsed JSON exits, to keep leak checkers quiet; harmless otherwise. */
void custos_json_thread_cleanup(void);

#endif
