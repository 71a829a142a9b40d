/* SPDX-License-Identifier: Apache-2.0
 * Per-sink on-disk spool (internal to src/audit): JSON-lines segment files plus a durable read cursor, so records a
 * sink could not take survive outages and restarts and are replayed in order. Not thread-safe: one sink thread. */
#ifndef CUSTOS_AUDIT_SPOOL_H
#define CUSTOS_AUDIT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct custos_spool custos_spool_t;

/* Opens (creating with mode 0700, parents included) the spool directory dir, bounded to max_bytes of unread data.
 * Existing segments and the cursor are picked up (restart). The directory is locked (flock on DIR/cursor) while open.
 * Returns 0, CUSTOS_EUNAVAIL (another process has it open), CUSTOS_EIO or CUSTOS_ENOMEM. */
int custos_spool_open(const char *dir, uint64_t max_bytes, custos_spool_t **out);

/* True when no unread record is on disk. */
bool custos_spool_empty(const custos_spool_t *s);

/* Unread bytes on disk (records and their newlines). */
uint64_t custos_spool_bytes(const custos_spool_t *s);

/* Appends records (each without newline; must not contain '\n') in order, as many as fit under max_bytes, then
 * fdatasync()s the segment. *appended gets how many were written (the rest did not fit). Returns 0 or CUSTOS_EIO
 * (then *appended records were written, maybe without the sync). */
int custos_spool_append(custos_spool_t *s, const char *const *recs, const size_t *lens, size_t n, size_t *appended);

/* Reads up to max of the oldest unread records into buf (reset first); recs/lens (capacity max) point into buf.
 * *n = 0 when empty. Does not consume: call custos_spool_consume after they were delivered. Returns 0 or CUSTOS_EIO /
 * CUSTOS_ENOMEM. */
int custos_spool_peek(custos_spool_t *s, size_t max, custos_buf_t *buf, const char **recs, size_t *lens, size_t *n);

/* Marks the records of the last peek as delivered: advances and persists (fdatasync) the cursor, deleting finished
 * segments. Returns 0 or CUSTOS_EIO. */
int custos_spool_consume(custos_spool_t *s);

/* Closes files (the data stays on disk). NULL-safe. */
void custos_spool_close(custos_spool_t *s);

#endif
