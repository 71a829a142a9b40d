/* SPDX-License-Identifier: Apache-2.0 */
#include "api/routes.h"
#include "util/err.h"

#include <string.h>

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

/* Copies one path segment [s, e) into out if it is a valid name. */
static bool take_name(const char *s, const char *e, char out[CUSTOS_ROUTE_MAX_NAME + 1])
{
    size_t n = (size_t)(e - s);
    if (n == 0 || n > CUSTOS_ROUTE_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]))
            return false;
    memcpy(out, s, n);
    out[n] = 0;
    return true;
}

static bool eq(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

static custos_op_t op_from_suffix(const char *s, size_t n)
{
    if (eq(s, n, "chat/completions"))
        return CUSTOS_OP_CHAT;
    if (eq(s, n, "completions"))
        return CUSTOS_OP_COMPLETIONS;
    if (eq(s, n, "embeddings"))
        return CUSTOS_OP_EMBEDDINGS;
    return CUSTOS_OP_NONE;
}

static int finish(custos_route_t *r, const char *method, bool post)
{
    r->is_post = post;
    if (strcmp(method, post ? "POST" : "GET") != 0)
        return CUSTOS_EINVAL;
    return 0;
}

int custos_route_match(const char *method, const char *path, size_t n, custos_route_t *r)
{
    memset(r, 0, sizeof(*r));
    if (eq(path, n, "/healthz")) {
        r->op = CUSTOS_OP_HEALTHZ;
        return finish(r, method, false);
    }
    if (eq(path, n, "/readyz")) {
        r->op = CUSTOS_OP_READYZ;
        return finish(r, method, false);
    }
    if (eq(path, n, "/metrics")) {
        r->op = CUSTOS_OP_METRICS;
        return finish(r, method, false);
    }
    const char *rest = NULL;
    size_t rn = 0;
    if (n > 4 && memcmp(path, "/v1/", 4) == 0) {
        r->family = CUSTOS_FAMILY_OPENAI;
        rest = path + 4;
        rn = n - 4;
    } else if (n > 11 && memcmp(path, "/openai/v1/", 11) == 0) {
        r->family = CUSTOS_FAMILY_AZURE_V1;
        rest = path + 11;
        rn = n - 11;
    } else if (n > 20 && memcmp(path, "/openai/deployments/", 20) == 0) {
        r->family = CUSTOS_FAMILY_AZURE;
        const char *s = path + 20, *e = path + n;
        const char *slash = memchr(s, '/', (size_t)(e - s));
        if (!slash || !take_name(s, slash, r->deployment))
            return CUSTOS_ENOTFOUND;
        r->op = op_from_suffix(slash + 1, (size_t)(e - slash - 1));
        if (r->op == CUSTOS_OP_NONE)
            return CUSTOS_ENOTFOUND;
        return finish(r, method, true);
    } else {
        return CUSTOS_ENOTFOUND;
    }
    if (eq(rest, rn, "models")) {
        r->op = CUSTOS_OP_MODELS_LIST;
        return finish(r, method, false);
    }
    if (rn > 7 && memcmp(rest, "models/", 7) == 0) {
        if (!take_name(rest + 7, rest + rn, r->model_id))
            return CUSTOS_ENOTFOUND;
        r->op = CUSTOS_OP_MODELS_GET;
        return finish(r, method, false);
    }
    r->op = op_from_suffix(rest, rn);
    if (r->op == CUSTOS_OP_NONE)
        return CUSTOS_ENOTFOUND;
    return finish(r, method, true);
}

const char *custos_route_op_name(custos_op_t op)
{
    switch (op) {
    case CUSTOS_OP_HEALTHZ:
        return "healthz";
    case CUSTOS_OP_READYZ:
        return "readyz";
    case CUSTOS_OP_METRICS:
        return "metrics";
    case CUSTOS_OP_MODELS_LIST:
        return "models_list";
    case CUSTOS_OP_MODELS_GET:
        return "models_get";
    case CUSTOS_OP_CHAT:
        return "chat_completions";
    case CUSTOS_OP_COMPLETIONS:
        return "completions";
    case CUSTOS_OP_EMBEDDINGS:
        return "embeddings";
    default:
        return "unknown";
    }
}

const char *custos_route_op_suffix(custos_op_t op)
{
    switch (op) {
    case CUSTOS_OP_CHAT:
        return "chat/completions";
    case CUSTOS_OP_COMPLETIONS:
        return "completions";
    case CUSTOS_OP_EMBEDDINGS:
        return "embeddings";
    default:
        return NULL;
    }
}

const char *custos_route_op_azure_name(custos_op_t op)
{
    switch (op) {
    case CUSTOS_OP_CHAT:
        return "ChatCompletions_Create";
    case CUSTOS_OP_COMPLETIONS:
        return "Completions_Create";
    case CUSTOS_OP_EMBEDDINGS:
        return "Embeddings_Create";
    case CUSTOS_OP_MODELS_LIST:
        return "Models_List";
    case CUSTOS_OP_MODELS_GET:
        return "Models_Get";
    default:
        return "Other";
    }
}
