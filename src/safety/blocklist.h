/* SPDX-License-Identifier: Apache-2.0
 * Customer blocklists: exact terms (optionally on normalised text and at word boundaries) and regexes, compiled
 * into Vectorscan multi-pattern databases; block-mode scans of whole texts and stream scans of completions whose
 * text arrives in chunks. See docs/content-safety-api.md for the matching rules.
 *
 * Threads: a custos_blocklists_t is immutable once built and shared by every thread (refcounted); each thread
 * scans with its own custos_blocklist_scratch_t. New sets are published through a custos_blocklist_hub_t: workers
 * keep a custos_blocklist_view_t whose fast path is one atomic load (no lock on the request path). */
#ifndef CUSTOS_SAFETY_BLOCKLIST_H
#define CUSTOS_SAFETY_BLOCKLIST_H

#include "safety/normalize.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUSTOS_BLOCKLIST_MAX_NAME 64        /* blocklistName: [0-9A-Za-z._~-]{1,64} */
#define CUSTOS_BLOCKLIST_MAX_ITEM_CHARS 128 /* item text, in code points (Azure) */
#define CUSTOS_BLOCKLIST_MAX_DESC_CHARS 1024
#define CUSTOS_BLOCKLIST_ID_LEN 37 /* item id: a lower-case UUID, NUL included */
/* A normalised term split across stream chunks is caught when its original span fits in the carry-over window the
 * stream re-normalises with each chunk: 8 bytes per character of the set's longest term plus 32, at most this
 * many bytes. Regexes and raw terms have no such bound (Vectorscan stream mode). */
#define CUSTOS_BLOCKLIST_STREAM_CARRY 1024

/* Item options. Terms default to CUSTOS_BLOCKLIST_WHOLE_WORD | CUSTOS_BLOCKLIST_NORMALIZE. */
enum {
    CUSTOS_BLOCKLIST_REGEX = 1u << 0,      /* text is a regex (Vectorscan syntax: no backreferences or lookaround) */
    CUSTOS_BLOCKLIST_WHOLE_WORD = 1u << 1, /* term: only where it is not part of a longer word */
    CUSTOS_BLOCKLIST_NORMALIZE = 1u << 2,  /* term: match on normalised text (NFKC, case, invisibles, homoglyphs,
                                              leetspeak, spacing, repeats; normalize.h), catching evasions */
};

/* One item of a blocklist to compile. Strings are borrowed for the duration of the build call. */
typedef struct custos_blocklist_item_def {
    const char *id;   /* item id reported with hits (<= 36 bytes) */
    const char *text; /* valid UTF-8, 1..CUSTOS_BLOCKLIST_MAX_ITEM_CHARS code points */
    unsigned flags;   /* CUSTOS_BLOCKLIST_* */
} custos_blocklist_item_def_t;

typedef struct custos_blocklist_def {
    const char *name; /* unique among the lists of one build */
    const custos_blocklist_item_def_t *items;
    size_t n_items;
} custos_blocklist_def_t;

typedef struct custos_blocklists custos_blocklists_t;

/* Checks one item alone (the API calls this before storing it). Returns 0, or CUSTOS_EINVAL with a one-line
 * reason in err that never repeats the item's text (empty or too long text, invalid UTF-8, a regex that does not
 * compile, uses an unsupported construct such as a backreference or lookaround, or matches the empty string). */
int custos_blocklist_item_check(const char *text, size_t len, unsigned flags, char *err, size_t errlen);

/* Compiles lists[0..n) into a new set with one reference. Returns 0, CUSTOS_EINVAL (a bad item: err names the list
 * and the item id, never its text; duplicate list names), CUSTOS_ENOMEM or CUSTOS_EIO (Vectorscan failure). An
 * empty set (n == 0 or no items) is valid and matches nothing. Cost: see docs/content-safety-api.md (100,000 terms
 * compile in seconds, so builds run off the request path or on rare admin requests). */
int custos_blocklists_build(const custos_blocklist_def_t *lists, size_t n, custos_blocklists_t **out, char *err,
                            size_t errlen);

custos_blocklists_t *custos_blocklists_ref(custos_blocklists_t *set);
void custos_blocklists_unref(custos_blocklists_t *set); /* NULL is fine */

/* Counts and sizes (for logs, metrics and the bench). */
size_t custos_blocklists_count(const custos_blocklists_t *set); /* lists */
size_t custos_blocklists_items(const custos_blocklists_t *set); /* items in all lists */
size_t custos_blocklists_bytes(const custos_blocklists_t *set); /* compiled databases plus tables, bytes */
/* True when the set has a list of this name. */
bool custos_blocklists_has(const custos_blocklists_t *set, const char *name);

/* Per-thread scanning state (Vectorscan scratch, normaliser scratch, buffers). Not thread-safe; valid for any
 * set. Initialise with zeroes or custos_blocklist_scratch_init; dispose when the thread ends. */
typedef struct custos_blocklist_scratch {
    struct hs_scratch *hs;
    uint64_t hs_serial; /* set serial the Vectorscan scratch was last sized for */
    custos_safety_scratch_t norm;
    char *u8;       /* normalised text as UTF-8 */
    uint32_t *u8cp; /* u8cp[b] = normalised code point index of byte b */
    size_t u8cap;
    size_t *cpbyte; /* original code point -> byte offset */
    size_t cpcap;
    unsigned char *sel; /* per list: selected by the caller */
    size_t selcap;
    uint32_t *seen; /* pattern ids already reported in this scan */
    size_t nseen, seencap;
} custos_blocklist_scratch_t;

void custos_blocklist_scratch_init(custos_blocklist_scratch_t *s);
void custos_blocklist_scratch_dispose(custos_blocklist_scratch_t *s);

/* One hit. Strings point into the set and stay valid while the caller holds its reference. Offsets are bytes of
 * the original text: [start, end) within the scanned text (block mode) or from the start of the stream (stream
 * mode). For normalised terms they cover the original characters that produced the match. */
typedef struct custos_blocklist_hit {
    const char *list;      /* blocklist name */
    const char *item_id;   /* blocklistItemId */
    const char *item_text; /* the item's text as stored (the term or the regex) */
    size_t start, end;
} custos_blocklist_hit_t;

/* Called for each hit; return non-zero to stop the scan (that value is returned by the scan). */
typedef int (*custos_blocklist_hit_fn)(void *ud, const custos_blocklist_hit_t *hit);

/* Scans text[0..len) (any bytes: invalid UTF-8 is repaired to U+FFFD first) against the lists named in
 * names[0..n_names) (n_names == 0: every list). Each item is reported at most once per call (its first match in
 * text order is not guaranteed: normalised terms are reported before regexes and raw terms). Returns 0, the
 * callback's non-zero value, CUSTOS_ENOTFOUND (a name is not in the set; nothing scanned), CUSTOS_ETOOBIG (len
 * above the scratch's normaliser limit, CUSTOS_SAFETY_MAX_INPUT by default) or CUSTOS_ENOMEM / CUSTOS_EIO.
 * Thread-safe for a shared set with one scratch per thread. */
int custos_blocklists_scan(const custos_blocklists_t *set, const char *const *names, size_t n_names, const char *text,
                           size_t len, custos_blocklist_scratch_t *scratch, custos_blocklist_hit_fn fn, void *ud);

/* Stream scanning: one stream per completion (per choice), fed its text in order. A term or regex split across
 * chunks is caught (normalised terms within CUSTOS_BLOCKLIST_STREAM_CARRY bytes). A hit is reported as soon as it
 * is certain: a whole-word term that ends exactly at the end of the data fed so far is reported by the next feed
 * or by close. Each item is reported at most once per stream. The stream holds a reference on the set, so a set
 * swapped meanwhile keeps serving the streams opened on it. Not thread-safe: one thread feeds a stream (with that
 * thread's scratch). */
typedef struct custos_blocklist_stream custos_blocklist_stream_t;

/* Opens a stream over the lists named in names[0..n_names) (0: all). Returns 0, CUSTOS_ENOTFOUND or
 * CUSTOS_ENOMEM / CUSTOS_EIO. */
int custos_blocklist_stream_new(const custos_blocklists_t *set, const char *const *names, size_t n_names,
                                custos_blocklist_stream_t **out);
/* Feeds the next chunk (any bytes; UTF-8 characters may be split across chunks). Returns as for scan. */
int custos_blocklist_stream_feed(custos_blocklist_stream_t *st, const char *chunk, size_t len,
                                 custos_blocklist_scratch_t *scratch, custos_blocklist_hit_fn fn, void *ud);
/* Ends the stream: reports hits that needed the end of the data (fn may be NULL to discard them; scratch NULL skips
 * that final scan, e.g. when the client went away) and frees st. Returns as for scan; st is freed in every case. */
int custos_blocklist_stream_close(custos_blocklist_stream_t *st, custos_blocklist_scratch_t *scratch,
                                  custos_blocklist_hit_fn fn, void *ud);

/* --- publication to workers --- */

/* Holds the newest set. publish() and acquire() take a mutex (rare: changes, stream opening is not one of them);
 * views read it without a lock while nothing changed. */
typedef struct custos_blocklist_hub custos_blocklist_hub_t;

/* A thread's cached reference. Zero-initialise; dispose when the thread ends. */
typedef struct custos_blocklist_view {
    custos_blocklists_t *set;
    uint64_t gen;
} custos_blocklist_view_t;

/* Creates a hub holding an empty set. Returns 0 or CUSTOS_ENOMEM / CUSTOS_EIO. */
int custos_blocklist_hub_new(custos_blocklist_hub_t **out);
/* Frees the hub (after every thread stopped using it; views keep their own references). */
void custos_blocklist_hub_free(custos_blocklist_hub_t *hub);
/* Makes set (one reference taken over) the newest. Thread-safe. */
void custos_blocklist_hub_publish(custos_blocklist_hub_t *hub, custos_blocklists_t *set);
/* A new reference to the newest set (unref it). Thread-safe. */
custos_blocklists_t *custos_blocklist_hub_acquire(custos_blocklist_hub_t *hub);
/* The newest set through the caller's view: one atomic load when nothing changed, else a short lock to swap the
 * view's reference. The result stays valid until the next get on the same view or its dispose. */
const custos_blocklists_t *custos_blocklist_view_get(custos_blocklist_hub_t *hub, custos_blocklist_view_t *view);
void custos_blocklist_view_dispose(custos_blocklist_view_t *view);

#endif
