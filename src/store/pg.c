/* SPDX-License-Identifier: Apache-2.0
 * PostgreSQL driver (libpq): one connection per handle; `?` placeholders become $1..$n; results in text
 * format, decoded by column type (integers, bytea hex, text). */
#include "store/store_internal.h"
#include "util/err.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PostgreSQL type OIDs (pg_type.dat; stable). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* "relation already exists, skipping" and the like: not errors */
}

static int map_result(custos_store_t *s, PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    custos_store_set_err(s, primary ? primary : PQerrorMessage(s->db));
    if (state && strcmp(state, "23505") == 0)
        return CUSTOS_EAGAIN;
    if (state && (strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0))
        return CUSTOS_ETIMEDOUT;
    return CUSTOS_EIO;
}

/* "?" -> "$n" outside quotes. */
static int number_params(const char *sql, char *out, size_t cap, size_t *count)
{
    size_t j = 0, n = 0;
    bool q = false;
    for (const char *p = sql; *p; p++) {
        if (*p == '\'')
            q = !q;
        if (*p == '?' && !q) {
            int w = snprintf(out + j, cap - j, "$%zu", ++n);
            if (w < 0 || (size_t)w >= cap - j)
                return CUSTOS_EINVAL;
            j += (size_t)w;
            continue;
        }
        if (j + 1 >= cap)
            return CUSTOS_EINVAL;
        out[j++] = *p;
    }
    out[j] = 0;
    *count = n;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int pg_exec(custos_store_t *s, const char *sql, const custos_sv_t *params, size_t nparams,
                   custos_store_row_fn fn, void *ud, int64_t *changes)
{
    char q[CUSTOS_STORE_MAX_SQL + 64];
    size_t n = 0;
    if (number_params(sql, q, sizeof(q), &n) != 0 || n != nparams) {
        custos_store_set_err(s, "parameter count mismatch");
        return CUSTOS_EINVAL;
    }
    const char *vals[CUSTOS_STORE_MAX_PARAMS];
    int lens[CUSTOS_STORE_MAX_PARAMS], fmts[CUSTOS_STORE_MAX_PARAMS];
    char ints[CUSTOS_STORE_MAX_PARAMS][24];
    for (size_t i = 0; i < nparams; i++) {
        const custos_sv_t *p = &params[i];
        lens[i] = 0;
        fmts[i] = 0;
        switch (p->type) {
        case CUSTOS_SV_INT:
            snprintf(ints[i], sizeof(ints[i]), "%lld", (long long)p->i);
            vals[i] = ints[i];
            break;
        case CUSTOS_SV_TEXT:
            vals[i] = p->p; /* NUL-terminated by contract of custos_sv_text */
            break;
        case CUSTOS_SV_BLOB:
            vals[i] = p->n ? p->p : "";
            lens[i] = (int)p->n;
            fmts[i] = 1; /* binary: bytea as is */
            break;
        default:
            vals[i] = NULL;
        }
    }
    PGresult *r = PQexecParams(s->db, q, (int)nparams, NULL, vals, lens, fmts, 0);
    if (!r) {
        custos_store_set_err(s, PQerrorMessage(s->db));
        return CUSTOS_EIO;
    }
    int st = PQresultStatus(r), out = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        out = map_result(s, r);
        PQclear(r);
        return out;
    }
    if (changes) {
        const char *t = PQcmdTuples(r);
        *changes = (t && *t) ? strtoll(t, NULL, 10) : 0;
    }
    int nrows = PQntuples(r), ncols = PQnfields(r);
    if (ncols > CUSTOS_STORE_MAX_COLS)
        ncols = CUSTOS_STORE_MAX_COLS;
    custos_sv_t cols[CUSTOS_STORE_MAX_COLS];
    unsigned char *bufs[CUSTOS_STORE_MAX_COLS] = {0};
    for (int row = 0; fn && row < nrows && out == 0; row++) {
        for (int c = 0; c < ncols; c++) {
            custos_sv_t *v = &cols[c];
            memset(v, 0, sizeof(*v));
            if (PQgetisnull(r, row, c))
                continue;
            const char *txt = PQgetvalue(r, row, c);
            size_t len = (size_t)PQgetlength(r, row, c);
            Oid t = PQftype(r, c);
            if (t == OID_INT8 || t == OID_INT4 || t == OID_INT2) {
                v->type = CUSTOS_SV_INT;
                v->i = strtoll(txt, NULL, 10);
            } else if (t == OID_BOOL) {
                v->type = CUSTOS_SV_INT;
                v->i = txt[0] == 't';
            } else if (t == OID_BYTEA) {
                if (len < 2 || txt[0] != '\\' || txt[1] != 'x' || (len & 1) || len / 2 > CUSTOS_STORE_MAX_VALUE) {
                    custos_store_set_err(s, "unexpected bytea encoding");
                    out = CUSTOS_EIO;
                    break;
                }
                size_t bn = (len - 2) / 2;
                free(bufs[c]);
                bufs[c] = malloc(bn ? bn : 1);
                if (!bufs[c]) {
                    out = CUSTOS_ENOMEM;
                    break;
                }
                for (size_t k = 0; k < bn; k++) {
                    int hi = hexval(txt[2 + 2 * k]), lo = hexval(txt[3 + 2 * k]);
                    if (hi < 0 || lo < 0) {
                        out = CUSTOS_EIO;
                        break;
                    }
                    bufs[c][k] = (unsigned char)(hi << 4 | lo);
                }
                v->type = CUSTOS_SV_BLOB;
                v->p = bufs[c];
                v->n = bn;
            } else {
                v->type = CUSTOS_SV_TEXT;
                v->p = txt;
                v->n = len;
            }
        }
        if (out == 0)
            out = fn(ud, cols, (size_t)ncols);
    }
    for (int c = 0; c < ncols; c++)
        free(bufs[c]);
    PQclear(r);
    return out;
}

static void pg_close(custos_store_t *s)
{
    PQfinish(s->db);
    s->db = NULL;
}

static const store_ops_t OPS = {pg_exec, pg_close};

int custos_store_pg_open(const custos_store_opts_t *o, custos_store_t *s)
{
    if (!o->conninfo || !o->conninfo[0]) {
        custos_store_set_err(s, "storage.url is not set");
        return CUSTOS_EINVAL;
    }
    const char *keys[] = {"dbname", "password", "connect_timeout", "application_name", NULL};
    const char *vals[] = {o->conninfo, o->password, "10", "custos", NULL};
    if (!o->password) {
        /* libpq then reads PGPASSWORD / the password file: keep the password slot out of the list */
        keys[1] = "connect_timeout";
        vals[1] = "10";
        keys[2] = "application_name";
        vals[2] = "custos";
        keys[3] = NULL;
        vals[3] = NULL;
    }
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    s->db = c;
    s->ops = &OPS;
    if (!c)
        return CUSTOS_ENOMEM;
    if (PQstatus(c) != CONNECTION_OK) {
        custos_store_set_err(s, PQerrorMessage(c));
        return CUSTOS_EIO;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    char set[96];
    snprintf(set, sizeof(set), "SET lock_timeout = %d", o->busy_timeout_ms > 0 ? o->busy_timeout_ms : 5000);
    int rc = custos_store_exec(s, set, NULL, 0, NULL, NULL, NULL);
    if (rc == 0)
        rc = custos_store_exec(s, "SET client_min_messages = warning", NULL, 0, NULL, NULL, NULL);
    return rc;
}
