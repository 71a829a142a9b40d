/* SPDX-License-Identifier: Apache-2.0
 * The store: custos's persistent state behind one interface with two drivers, SQLite (the embedded
 * default; one file, WAL) and PostgreSQL (libpq; several replicas may share one database). Both run the
 * same numbered migrations (store/migrations.c) and the same SQL; callers write portable SQL with `?`
 * placeholders and three tokens the driver expands:
 *   {BLOB}   a byte-string column type (SQLite BLOB, PostgreSQL BYTEA)
 *   {SEQ}    the insertion-order column to ORDER BY (SQLite rowid, PostgreSQL seq)
 *   {SEQCOL} the column definition that provides {SEQ} in a CREATE TABLE (empty for SQLite)
 * A table added later (blocklists, held outputs, ...) is one more migration plus its own module that
 * talks to the store through custos_store_exec; nothing here knows about tables except the
 * store_meta change counter, which every writer bumps so that replicas can notice changes cheaply.
 *
 * Values never appear in error messages: custos_store_errmsg gives the driver's primary message only
 * (PostgreSQL DETAIL lines, which can quote values, are dropped).
 *
 * Threads: a handle is used by one thread at a time (open one per thread); PostgreSQL handles are one
 * connection each. Blocking: never call on the request path. */
#ifndef CUSTOS_STORE_STORE_H
#define CUSTOS_STORE_STORE_H

#include "config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct custos_store custos_store_t;

typedef enum { CUSTOS_STORE_SQLITE = 0, CUSTOS_STORE_POSTGRES = 1 } custos_store_driver_t;

#define CUSTOS_STORE_MAX_PARAMS 16
#define CUSTOS_STORE_MAX_COLS 16
#define CUSTOS_STORE_MAX_SQL 4096         /* bytes after token expansion */
#define CUSTOS_STORE_MAX_VALUE (1u << 24) /* one column value: 16 MiB */

typedef struct custos_store_opts {
    custos_store_driver_t driver;
    const char *path;     /* SQLite file */
    const char *conninfo; /* PostgreSQL connection string (libpq keyword=value or URI) */
    const char *password; /* PostgreSQL password, or NULL (libpq then uses PGPASSWORD / ~/.pgpass) */
    bool create;          /* SQLite: create the file (0600) if missing; PostgreSQL: ignored */
    int busy_timeout_ms;  /* lock wait (SQLite busy timeout, PostgreSQL lock_timeout); 0 = 5000 */
    bool no_migrate;      /* open as is, without the schema step (maintenance and tests only) */
} custos_store_opts_t;

typedef enum { CUSTOS_SV_NULL = 0, CUSTOS_SV_INT, CUSTOS_SV_TEXT, CUSTOS_SV_BLOB } custos_sv_type_t;

/* A parameter or a column value. For results, p points into driver memory valid only during the row
 * callback; TEXT values are NUL-terminated (n excludes the NUL). */
typedef struct custos_sv {
    custos_sv_type_t type;
    int64_t i;
    const void *p;
    size_t n;
} custos_sv_t;

static inline custos_sv_t custos_sv_int(int64_t i)
{
    return (custos_sv_t){.type = CUSTOS_SV_INT, .i = i};
}
static inline custos_sv_t custos_sv_text(const char *s)
{
    return (custos_sv_t){.type = s ? CUSTOS_SV_TEXT : CUSTOS_SV_NULL, .p = s, .n = s ? __builtin_strlen(s) : 0};
}
static inline custos_sv_t custos_sv_blob(const void *p, size_t n)
{
    return (custos_sv_t){.type = CUSTOS_SV_BLOB, .p = p, .n = n};
}

/* Called once per result row; a non-zero return stops the query and is returned by custos_store_exec. */
typedef int (*custos_store_row_fn)(void *ud, const custos_sv_t *cols, size_t ncols);

/* Opens the store and brings its schema up to date (migrations run once, under a write lock / advisory
 * lock, so concurrent openers are safe). Returns 0, CUSTOS_ENOTFOUND (SQLite file missing and !create),
 * CUSTOS_EIO (cannot open/connect, locked past the timeout, not a custos store, or a schema newer than
 * this binary: custos_store_open_error says which), CUSTOS_EINVAL or CUSTOS_ENOMEM. On failure *out is
 * NULL; a short reason (no secrets) is copied to err if err is not NULL. */
int custos_store_open(const custos_store_opts_t *o, custos_store_t **out, char *err, size_t errlen);

/* Opens the store named by the configuration's storage section. */
int custos_store_open_config(const custos_storage_config_t *sc, bool create, custos_store_t **out, char *err,
                             size_t errlen);

void custos_store_close(custos_store_t *s);

custos_store_driver_t custos_store_driver(const custos_store_t *s);
const char *custos_store_driver_name(custos_store_driver_t d);

/* Runs one statement with params; fn (may be NULL) sees each row; *changes (may be NULL) gets the number
 * of rows changed by INSERT/UPDATE/DELETE. Returns 0, fn's non-zero value, CUSTOS_EINVAL (bad SQL size or
 * param count), CUSTOS_EAGAIN (a unique/primary key conflict), CUSTOS_ETIMEDOUT (locked past the
 * timeout) or CUSTOS_EIO. */
int custos_store_exec(custos_store_t *s, const char *sql, const custos_sv_t *params, size_t nparams,
                      custos_store_row_fn fn, void *ud, int64_t *changes);

/* Write transactions (SQLite BEGIN IMMEDIATE; PostgreSQL BEGIN). Not nested. */
int custos_store_begin(custos_store_t *s);
int custos_store_commit(custos_store_t *s);
void custos_store_rollback(custos_store_t *s);

/* store_meta "changes": a counter bumped inside every write transaction that changes identity state
 * (keys, role assignments, blocklists). Replicas poll it (storage.poll_interval_ms). */
int custos_store_bump(custos_store_t *s);
int custos_store_generation(custos_store_t *s, int64_t *gen);
/* Other store_meta counters a module keeps for itself (migration 3: "blocklists"). bump adds one (CUSTOS_EIO if
 * the row is missing); counter reads it. Same return codes as custos_store_exec. */
int custos_store_counter_bump(custos_store_t *s, const char *name);
int custos_store_counter(custos_store_t *s, const char *name, int64_t *value);

/* The schema version this binary migrates to, and the one the store is at. */
int custos_store_schema_version(custos_store_t *s, int64_t *version);
int64_t custos_store_schema_latest(void);

/* The driver's last error in words (primary message only; never values). */
const char *custos_store_errmsg(const custos_store_t *s);

#endif
