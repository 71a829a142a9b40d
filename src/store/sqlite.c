/* SPDX-License-Identifier: Apache-2.0
 * SQLite driver: one file, WAL journal, synchronous=FULL (a committed write survives a crash or kill -9),
 * busy timeout for writers from other processes. */
#include "store/store_internal.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int map_err(custos_store_t *s, int code)
{
    sqlite3 *db = s->db;
    custos_store_set_err(s, db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
    switch (code & 0xff) {
    case SQLITE_NOMEM:
        return CUSTOS_ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CUSTOS_ETIMEDOUT;
    case SQLITE_CONSTRAINT:
        return (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) ? CUSTOS_EAGAIN : CUSTOS_EIO;
    default:
        return CUSTOS_EIO;
    }
}

static int lite_exec(custos_store_t *s, const char *sql, const custos_sv_t *params, size_t nparams,
                     custos_store_row_fn fn, void *ud, int64_t *changes)
{
    sqlite3 *db = s->db;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return map_err(s, sqlite3_extended_errcode(db));
    if ((size_t)sqlite3_bind_parameter_count(st) != nparams) {
        sqlite3_finalize(st);
        custos_store_set_err(s, "parameter count mismatch");
        return CUSTOS_EINVAL;
    }
    for (size_t i = 0; i < nparams; i++) {
        const custos_sv_t *p = &params[i];
        int b;
        switch (p->type) {
        case CUSTOS_SV_INT:
            b = sqlite3_bind_int64(st, (int)i + 1, p->i);
            break;
        case CUSTOS_SV_TEXT:
            b = sqlite3_bind_text(st, (int)i + 1, p->p, (int)p->n, SQLITE_STATIC);
            break;
        case CUSTOS_SV_BLOB:
            b = sqlite3_bind_blob(st, (int)i + 1, p->n ? p->p : "", (int)p->n, SQLITE_STATIC);
            break;
        default:
            b = sqlite3_bind_null(st, (int)i + 1);
        }
        if (b != SQLITE_OK) {
            sqlite3_finalize(st);
            return map_err(s, b);
        }
    }
    int out = 0;
    custos_sv_t cols[CUSTOS_STORE_MAX_COLS];
    for (;;) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            out = map_err(s, sqlite3_extended_errcode(db));
            break;
        }
        if (!fn)
            continue;
        int nc = sqlite3_column_count(st);
        if (nc > CUSTOS_STORE_MAX_COLS)
            nc = CUSTOS_STORE_MAX_COLS;
        for (int c = 0; c < nc; c++) {
            custos_sv_t *v = &cols[c];
            memset(v, 0, sizeof(*v));
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_INTEGER:
                v->type = CUSTOS_SV_INT;
                v->i = sqlite3_column_int64(st, c);
                break;
            case SQLITE_TEXT:
                v->type = CUSTOS_SV_TEXT;
                v->p = sqlite3_column_text(st, c);
                v->n = (size_t)sqlite3_column_bytes(st, c);
                break;
            case SQLITE_BLOB:
                v->type = CUSTOS_SV_BLOB;
                v->p = sqlite3_column_blob(st, c);
                v->n = (size_t)sqlite3_column_bytes(st, c);
                break;
            case SQLITE_FLOAT:
                v->type = CUSTOS_SV_INT;
                v->i = (int64_t)sqlite3_column_double(st, c);
                break;
            default:
                v->type = CUSTOS_SV_NULL;
            }
        }
        if ((out = fn(ud, cols, (size_t)nc)) != 0)
            break;
    }
    if (changes && out == 0)
        *changes = sqlite3_changes64(db);
    sqlite3_finalize(st);
    return out;
}

static void lite_close(custos_store_t *s)
{
    sqlite3_close(s->db);
    s->db = NULL;
}

static const store_ops_t OPS = {lite_exec, lite_close};

int custos_store_sqlite_open(const custos_store_opts_t *o, custos_store_t *s)
{
    if (!o->path || !o->path[0]) {
        custos_store_set_err(s, "storage.path is not set");
        return CUSTOS_EINVAL;
    }
    if (access(o->path, F_OK) != 0) {
        if (!o->create)
            return CUSTOS_ENOTFOUND;
        int fd = open(o->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            custos_store_set_err(s, strerror(errno));
            return CUSTOS_EIO;
        }
        if (fd >= 0)
            close(fd);
    }
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(o->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    s->db = db;
    s->ops = &OPS;
    if (rc != SQLITE_OK)
        return map_err(s, rc);
    sqlite3_busy_timeout(db, o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 5000);
    sqlite3_extended_result_codes(db, 1);
    /* journal_mode=WAL answers a row; the PRAGMAs fail with "file is not a database" on a foreign file.
     * Processes opening a fresh file together take turns for the switch to WAL (an flock on the file's directory,
     * independent of SQLite's fcntl locks): the switch needs an exclusive lock, and when it cannot get one SQLite
     * silently stays in rollback mode, where a second opener waiting to switch and the first one committing its
     * migration wait for each other until the busy timeout ends ("database is locked" at start-up). */
    int dfd = -1;
    {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", o->path);
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == dir)
            dir[1] = 0;
        else
            *slash = 0;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0 && flock(dfd, LOCK_EX) != 0) {
            close(dfd);
            dfd = -1; /* best effort: without the lock the busy timeout still bounds the wait */
        }
    }
    rc = custos_store_exec(s, "PRAGMA journal_mode=WAL", NULL, 0, NULL, NULL, NULL);
    if (dfd >= 0)
        close(dfd); /* releases the flock */
    if (rc != 0 || (rc = custos_store_exec(s, "PRAGMA synchronous=FULL", NULL, 0, NULL, NULL, NULL)) != 0 ||
        (rc = custos_store_exec(s, "PRAGMA foreign_keys=ON", NULL, 0, NULL, NULL, NULL)) != 0)
        return rc == CUSTOS_ENOMEM ? rc : (rc == CUSTOS_ETIMEDOUT ? rc : CUSTOS_EIO);
    return 0;
}
