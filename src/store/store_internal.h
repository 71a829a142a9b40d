/* SPDX-License-Identifier: Apache-2.0
 * Driver side of the store (store.h): each driver fills a custos_store_t with its ops. */
#ifndef CUSTOS_STORE_INTERNAL_H
#define CUSTOS_STORE_INTERNAL_H

#include "store/store.h"

typedef struct store_ops {
    /* sql is already token-expanded (placeholders still `?`). */
    int (*exec)(custos_store_t *s, const char *sql, const custos_sv_t *params, size_t nparams, custos_store_row_fn fn,
                void *ud, int64_t *changes);
    void (*close)(custos_store_t *s);
} store_ops_t;

struct custos_store {
    custos_store_driver_t driver;
    const store_ops_t *ops;
    void *db;
    bool in_tx;
    char errmsg[256];
};

int custos_store_sqlite_open(const custos_store_opts_t *o, custos_store_t *s);
int custos_store_pg_open(const custos_store_opts_t *o, custos_store_t *s);

/* Copies a driver message into s->errmsg (first line only, printable ASCII, truncated). */
void custos_store_set_err(custos_store_t *s, const char *msg);

#endif
