/* SPDX-License-Identifier: Apache-2.0
 * Route table: which operation a method + path names, for the OpenAI and Azure OpenAI route families
 * and custos' own endpoints. Pure; thread-safe. */
#ifndef CUSTOS_API_ROUTES_H
#define CUSTOS_API_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    CUSTOS_OP_NONE = 0,
    CUSTOS_OP_HEALTHZ,
    CUSTOS_OP_READYZ,
    CUSTOS_OP_METRICS,
    CUSTOS_OP_MODELS_LIST,
    CUSTOS_OP_MODELS_GET,
    CUSTOS_OP_CHAT,        /* chat/completions */
    CUSTOS_OP_COMPLETIONS, /* completions */
    CUSTOS_OP_EMBEDDINGS,  /* embeddings */
    CUSTOS_OP__COUNT
} custos_op_t;

typedef enum {
    CUSTOS_FAMILY_INTERNAL = 0, /* /healthz, /readyz, /metrics */
    CUSTOS_FAMILY_OPENAI,       /* /v1/... : deployment in body "model" */
    CUSTOS_FAMILY_AZURE,        /* /openai/deployments/{d}/...?api-version= */
    CUSTOS_FAMILY_AZURE_V1,     /* /openai/v1/... : deployment in body "model" */
} custos_family_t;

#define CUSTOS_ROUTE_MAX_NAME 64

typedef struct custos_route {
    custos_op_t op;
    custos_family_t family;
    char deployment[CUSTOS_ROUTE_MAX_NAME + 1]; /* Azure: from the path; "" otherwise */
    char model_id[CUSTOS_ROUTE_MAX_NAME + 1];   /* models/{id} */
    bool is_post;                               /* the operation expects POST (else GET) */
} custos_route_t;

/* Matches path (without query). Returns 0 and fills r; CUSTOS_ENOTFOUND for an unknown path or a
 * path segment that cannot be a deployment name ([A-Za-z0-9._-]{1,64}); CUSTOS_EINVAL when the path
 * is known but the method is not allowed for it (r->op is set). */
int custos_route_match(const char *method, const char *path, size_t path_len, custos_route_t *r);

/* Stable snake_case name for metrics labels ("chat_completions", ...). */
const char *custos_route_op_name(custos_op_t op);
/* Upstream path suffix ("chat/completions", "completions", "embeddings"); NULL for others. */
const char *custos_route_op_suffix(custos_op_t op);
/* Azure operation name for records ("ChatCompletions_Create", ...). */
const char *custos_route_op_azure_name(custos_op_t op);

#endif
