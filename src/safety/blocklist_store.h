/* SPDX-License-Identifier: Apache-2.0
 * Blocklists persisted in SQLite (tables `blocklists` and `blocklist_items` in the database at `storage.path`).
 * This header is the whole interface and the SQL stays in blocklist_store.c, so the storage layer can take it over
 * later. One handle per thread; writes run in one IMMEDIATE transaction each. */
#ifndef CUSTOS_SAFETY_BLOCKLIST_STORE_H
#define CUSTOS_SAFETY_BLOCKLIST_STORE_H

#include "safety/blocklist.h"

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

/* Opens the database at path. create=false: a missing file is CUSTOS_ENOTFOUND (an empty store); create=true makes
 * it (mode 0600). Creates the two tables when missing. Returns 0, CUSTOS_ENOTFOUND, CUSTOS_EIO or CUSTOS_ENOMEM. */
int custos_blstore_open(const char *path, bool create, custos_blstore_t **out);
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

/* Loads every list and item and compiles them (custos_blocklists_build). Returns 0 or its error (err filled). */
int custos_blstore_build(custos_blstore_t *st, custos_blocklists_t **out, char *err, size_t errlen);

/* Builds from the database at path (a missing file is an empty set). Convenience for start-up and reloads. */
int custos_blstore_build_path(const char *path, custos_blocklists_t **out, char *err, size_t errlen);

#endif
