/* SPDX-License-Identifier: Apache-2.0
 * Incremental Server-Sent Events parser (WHATWG HTML "event stream interpretation") for upstream model streams,
 * plus a framer for `data:` events. Memory per parser is bounded by max_event_bytes. */
#ifndef CUSTOS_NET_SSE_H
#define CUSTOS_NET_SSE_H

#include <stddef.h>

#include "util/buf.h"

/* One dispatched event. Every pointer is valid only during the callback and is NUL-terminated at [len]
 * (data may contain NUL bytes itself, so use the lengths). */
typedef struct custos_sse_event {
    const char *event; /* `event:` field; empty (len 0) means the default type "message" */
    size_t event_len;
    const char *data; /* `data:` lines joined with '\n' (no trailing '\n'); never contains CR; may be empty */
    size_t data_len;
    const char *id; /* last event ID buffer (persists across events, as the spec says); empty if never set */
    size_t id_len;
    const char *raw; /* exact bytes of the event block, from the first byte after the previous blank line
                      * (dispatched or not) up to and including this event's terminating blank line.
                      * A leading UTF-8 BOM of the stream is never part of raw. */
    size_t raw_len;
} custos_sse_event_t;

/* Called for each dispatched event. Return 0 to continue; a nonzero value stops custos_sse_feed, which
 * returns that value. The callback must not feed, finish or dispose the parser that called it. */
typedef int (*custos_sse_cb)(void *ud, const custos_sse_event_t *ev);

/* Caller-owned parser state; treat the fields as private. */
typedef struct custos_sse_parser {
    custos_sse_cb cb;
    void *ud;
    size_t max;        /* max_event_bytes */
    custos_buf_t raw;  /* bytes of the current block, capped at max */
    custos_buf_t data; /* joined data lines, each followed by '\n' */
    custos_buf_t event;
    custos_buf_t id;
    size_t line_start;     /* offset in raw of the current (incomplete) line */
    long long retry_ms;    /* last valid `retry:` value, -1 if none */
    int err;               /* sticky: nonzero once feed failed or was stopped */
    unsigned char bom;     /* UTF-8 BOM bytes matched so far at stream start; 3 once past the start */
    unsigned char cr_tail; /* the last byte fed was a CR ending a non-blank line: a following LF belongs to it */
    unsigned char pend;    /* the last byte fed was a CR ending a blank line: dispatch after seeing the next byte */
} custos_sse_parser_t;

/* Initialises p. max_event_bytes (> 0) caps the raw bytes of one event block (lines, comments and terminators);
 * decoded fields add at most as much again. Returns 0 or CUSTOS_EINVAL. Not thread-safe: one parser per stream. */
int custos_sse_init(custos_sse_parser_t *p, size_t max_event_bytes, custos_sse_cb cb, void *ud);

/* Feeds the next len bytes of the stream; any split of the input yields the same events (including raw).
 * Returns 0, CUSTOS_ETOOBIG (an event block exceeded max_event_bytes), CUSTOS_ENOMEM, or the callback's nonzero
 * value. After a nonzero return the parser is dead: later feed/finish calls return the same value.
 * Note: a blank line ended by a bare CR as the very last byte fed is dispatched on the next feed (or finish),
 * because only the next byte tells whether it is a CRLF. */
int custos_sse_feed(custos_sse_parser_t *p, const char *data, size_t len);

/* End of stream. Dispatches an event whose terminating CR was the last byte fed. An unterminated final block is
 * discarded (as the spec says); returns CUSTOS_EPROTO if any of its bytes were pending (the stream was cut),
 * the callback's nonzero value if it stopped, the sticky error of a dead parser, else 0. */
int custos_sse_finish(custos_sse_parser_t *p);

/* Last valid `retry:` field value in milliseconds, or -1 if none was seen. */
long long custos_sse_retry_ms(const custos_sse_parser_t *p);

/* Frees the parser's buffers. Safe on an initialised or already-disposed parser. */
void custos_sse_dispose(custos_sse_parser_t *p);

/* Appends one event "data: <line>\n" per line of data, then "\n". Line breaks in data (LF, CRLF or CR) split
 * lines, so a parser gives back data with every line break turned into LF. Appends all or nothing.
 * Returns 0, CUSTOS_ETOOBIG (out's cap) or CUSTOS_ENOMEM. */
int custos_sse_write_event(custos_buf_t *out, const char *data, size_t len);

#endif
