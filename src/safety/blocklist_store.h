/* SPDX-License-Identifier: Apache-2.0
 * Blocklists persisted in the store (store/store.h; tables `blocklists` and `blocklist_items`, migration 3), so
 * every replica on one store shares them. This header is the whole interface; the SQL stays in blocklist_store.c.
 * Every write runs in one store transaction that first bumps the store's change counter and the "blocklists"
 * counter (custos_blstore_version): on PostgreSQL the row lock this takes serialises blocklist writers of all
 * replicas, and the watcher of every replica (api/store_sync.c) sees the change at its next poll.
 * One handle per thread. Blocking: never on the request path of inference. */
#ifndef CUSTOS_SAFETY_BLOCKLIST_STORE_H
#define CUSTOS_SAFETY_BLOCKLIST_STORE_H

#include "config/config.h"
#include "safety/blocklist.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct custos_blstore custos_blstore_t;

/* Limits enforced by the store (documented in docs/content-safety-api.md). */
#define CUSTOS_BLSTORE_MAX_LISTS 1000
#define CUSTOS_BLSTORE_MAX_ITEMS_PER_LIST 100000
#define CUSTOS_BLSTORE_MAX_ITEMS_TOTAL 250000

typedef struct custos_blstore_list {
    const char *name;
    const char *description;
    int64_t created_s, updated_s;
} custos_blstore_list_t;

typedef struct custos_blstore_item {
    char id[CUSTOS_BLOCKLIST_ID_LEN]; /* filled by upsert */
    const char *text;
    const char *description; /* "" when none */
    unsigned flags;          /* CUSTOS_BLOCKLIST_* */
} custos_blstore_item_t;

/* Called inside the write transaction after the change and before COMMIT; non-zero rolls back and is returned. */
typedef int (*custos_blstore_commit_fn)(void *ud);

/* Opens the store named by sc (custos_store_open_config; migrations run). create=false: a missing SQLite file is
 * CUSTOS_ENOTFOUND (an empty store); create=true makes it. Returns 0, CUSTOS_ENOTFOUND, CUSTOS_EIO, CUSTOS_ETIMEDOUT
 * or CUSTOS_ENOMEM. */
int custos_blstore_open(const custos_storage_config_t *sc, bool create, custos_blstore_t **out);
/* Uses an open store handle s (borrowed: the caller closes it after custos_blstore_close). Returns 0 or
 * CUSTOS_ENOMEM. */
int custos_blstore_wrap(custos_store_t *s, custos_blstore_t **out);
void custos_blstore_close(custos_blstore_t *st);

/* Creates list name or updates its description (description NULL: keep it; "" on creation). *created tells which.
 * Returns 0, CUSTOS_ETOOBIG (CUSTOS_BLSTORE_MAX_LISTS reached), CUSTOS_EIO or the hook's error. */
int custos_blstore_list_upsert(custos_blstore_t *st, const char *name, const char *description, int64_t now_s,
                               bool *created, custos_blstore_commit_fn hook, void *ud);
/* Calls fn with list name (views valid during the call). Returns 0, CUSTOS_ENOTFOUND, CUSTOS_EIO or fn's value. */
int custos_blstore_list_get(custos_blstore_t *st, const char *name, int (*fn)(void *ud, const custos_blstore_list_t *l),
                            void *ud);
/* Deletes list name and its items. Returns 0, CUSTOS_ENOTFOUND, CUSTOS_EIO or the hook's error. */
int custos_blstore_list_delete(custos_blstore_t *st, const char *name, custos_blstore_commit_fn hook, void *ud);
/* Calls fn for every list, by name. Returns 0, CUSTOS_EIO or fn's non-zero value. */
int custos_blstore_lists(custos_blstore_t *st, int (*fn)(void *ud, const custos_blstore_list_t *l), void *ud);

/* Adds items[0..n) to list name, or updates description and flags of the item with the same text and kind
 * (term / regex), keeping its id; fills items[i].id. Returns 0, CUSTOS_ENOTFOUND (no such list), CUSTOS_ETOOBIG
 * (an items limit), CUSTOS_EIO or the hook's error. */
int custos_blstore_items_upsert(custos_blstore_t *st, const char *name, custos_blstore_item_t *items, size_t n,
                                int64_t now_s, custos_blstore_commit_fn hook, void *ud);
/* Removes the items with ids[0..n) from list name (unknown ids are ignored). Returns 0, CUSTOS_ENOTFOUND (no such
 * list), CUSTOS_EIO or the hook's error. */
int custos_blstore_items_remove(custos_blstore_t *st, const char *name, const char *const *ids, size_t n,
                                custos_blstore_commit_fn hook, void *ud);
/* Calls fn for the items of list name in insertion order, skipping skip and at most top (0: all). Returns 0,
 * CUSTOS_ENOTFOUND (no such list), CUSTOS_EIO or fn's non-zero value. */
int custos_blstore_items(custos_blstore_t *st, const char *name, size_t skip, size_t top,
                         int (*fn)(void *ud, const custos_blstore_item_t *it), void *ud);
/* Calls fn for item id of list name. Returns 0, CUSTOS_ENOTFOUND (list or item), CUSTOS_EIO or fn's value. */
int custos_blstore_item_get(custos_blstore_t *st, const char *name, const char *id,
                            int (*fn)(void *ud, const custos_blstore_item_t *it), void *ud);

/* Number of items in all lists (inside a write transaction: as it will commit). Returns 0 or CUSTOS_EIO. */
int custos_blstore_count_items(custos_blstore_t *st, size_t *n);

/* The "blocklists" counter: how many blocklist writes the store has committed (inside a write transaction: the
 * value this one will commit). custos_blstore_store_version reads it from a plain store handle (the watcher). */
int custos_blstore_version(custos_blstore_t *st, int64_t *v);
int custos_blstore_store_version(custos_store_t *s, int64_t *v);

/* Loads every list and item and compiles them (custos_blocklists_build). Inside a write transaction it sees that
 * transaction; otherwise call custos_blstore_build_snapshot. Returns 0 or its error (err filled). */
int custos_blstore_build(custos_blstore_t *st, custos_blocklists_t **out, char *err, size_t errlen);

/* Builds from one consistent read snapshot and reports the counter value it was taken at (*version, may be NULL). */
int custos_blstore_build_snapshot(custos_blstore_t *st, custos_blocklists_t **out, int64_t *version, char *err,
                                  size_t errlen);

/* Opens the store named by sc and builds a snapshot (a missing SQLite file is an empty set at version 0).
 * Convenience for start-up and reloads. */
int custos_blstore_build_config(const custos_storage_config_t *sc, custos_blocklists_t **out, int64_t *version,
                                char *err, size_t errlen);

#endif
