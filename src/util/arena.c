/* SPDX-License-Identifier: Apache-2.0 */
#include "util/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 8192

struct custos_arena_block {
    custos_arena_block_t *next;
    size_t cap, used;
    _Alignas(16) unsigned char mem[];
};

void custos_arena_init(custos_arena_t *a)
{
    a->head = NULL;
    a->used_total = 0;
}

void custos_arena_reset(custos_arena_t *a)
{
    custos_arena_block_t *b = a->head;
    if (!b)
        return;
    /* keep the last (oldest, standard-sized) block */
    while (b->next) {
        custos_arena_block_t *n = b->next;
        free(b);
        b = n;
    }
    b->used = 0;
    a->head = b;
    a->used_total = 0;
}

void custos_arena_dispose(custos_arena_t *a)
{
    custos_arena_block_t *b = a->head;
    while (b) {
        custos_arena_block_t *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used_total = 0;
}

void *custos_arena_alloc(custos_arena_t *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        return NULL;
    custos_arena_block_t *b = a->head;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;
        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->used_total += need;
    return p;
}

char *custos_arena_strndup(custos_arena_t *a, const char *s, size_t n)
{
    char *p = custos_arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *custos_arena_strdup(custos_arena_t *a, const char *s)
{
    return custos_arena_strndup(a, s, strlen(s));
}
