/* SPDX-License-Identifier: Apache-2.0
 * Internal to src/config: strict YAML (libyaml events) to json-c tree where every node and every
 * mapping key remembers its 1-based source line and column. Used by the schema check in config.c. */
#ifndef CUSTOS_CONFIG_YTREE_H
#define CUSTOS_CONFIG_YTREE_H

#include <stddef.h>
#include <json-c/json.h>

#define CUSTOS_YTREE_MAX_BYTES ((size_t)4 * 1024 * 1024) /* larger documents are refused */
#define CUSTOS_YTREE_MAX_DEPTH 64                        /* deeper nesting of mappings/sequences is refused */

typedef struct custos_ymark {
    unsigned line; /* 1-based */
    unsigned col;  /* 1-based */
} custos_ymark_t;

/* Parses one YAML 1.2 (core schema) document into a json-c tree. Plain scalars resolve to null
 * (~, null, empty), booleans (true/false in the three core-schema spellings), int64, double or
 * string; quoted and block scalars are always strings. YAML null is a NULL json_object pointer.
 * Refused, with a message and a position: syntax errors, anchors and aliases, tags, more than one
 * document, complex (non-scalar) keys, keys with NUL bytes, duplicate keys, nesting deeper than
 * CUSTOS_YTREE_MAX_DEPTH, integers outside int64, input over CUSTOS_YTREE_MAX_BYTES.
 * On success returns 0 and *out owns the root (NULL for an empty document; release with
 * json_object_put). On failure returns CUSTOS_EINVAL/CUSTOS_ETOOBIG/CUSTOS_EDEPTH/CUSTOS_ENOMEM and fills
 * *where and msg (without position). Thread-safe (no shared state). */
int custos_ytree_parse(const char *yaml, size_t len, json_object **out, custos_ymark_t *where, char *msg,
                       size_t msglen);

/* Position of a non-NULL node produced by custos_ytree_parse ({0,0} if it carries none). */
custos_ymark_t custos_ytree_mark(json_object *node);

/* Children of a mapping or sequence, in source order. For a mapping, key is the key text and
 * key_mark its position; for a sequence, key is NULL and key_mark equals val_mark. val_mark is the
 * position of the value even when the value is null. Returns the number of children; *keys etc.
 * are borrowed from the tree. */
size_t custos_ytree_count(json_object *coll);
const char *custos_ytree_key(json_object *coll, size_t i);
custos_ymark_t custos_ytree_key_mark(json_object *coll, size_t i);
custos_ymark_t custos_ytree_val_mark(json_object *coll, size_t i);

/* Looks key up in mapping map. Returns 1 and fills the optional outputs if present (the value may
 * be NULL for a YAML null), 0 if absent. */
int custos_ytree_find(json_object *map, const char *key, json_object **val, custos_ymark_t *key_mark,
                      custos_ymark_t *val_mark);

#endif
