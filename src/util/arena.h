/* SPDX-License-Identifier: Apache-2.0
 * Per-request arena: many small allocations, freed all at once by custos_arena_reset/_dispose.
 * Not thread-safe. Allocation failure returns NULL (callers turn it into CUSTOS_ENOMEM). */
#ifndef CUSTOS_UTIL_ARENA_H
#define CUSTOS_UTIL_ARENA_H

#include <stddef.h>

typedef struct custos_arena_block custos_arena_block_t;
typedef struct custos_arena {
    custos_arena_block_t *head;
    size_t used_total; /* bytes handed out since the last reset */
} custos_arena_t;

void custos_arena_init(custos_arena_t *a);
/* Frees every block but the first; the first is kept for reuse. */
void custos_arena_reset(custos_arena_t *a);
void custos_arena_dispose(custos_arena_t *a);
/* 16-byte aligned; memory is uninitialised. */
void *custos_arena_alloc(custos_arena_t *a, size_t n);
char *custos_arena_strndup(custos_arena_t *a, const char *s, size_t n);
char *custos_arena_strdup(custos_arena_t *a, const char *s);

#endif
