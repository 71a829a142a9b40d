/* SPDX-License-Identifier: Apache-2.0
 * What a request is charged on admission: prompt tokens (tiktoken counts plus OpenAI's chat-message
 * overhead) and the completion allowance. See quota.h and docs/tokens.md. */
#include "quota/quota.h"
#include "util/err.h"

#include <string.h>

/* OpenAI cookbook ("How to count tokens with tiktoken") for gpt-3.5-turbo-0613 and later, gpt-4, gpt-4o. */
#define TOKENS_PER_MESSAGE 3
#define TOKENS_PER_NAME 1
#define REPLY_PRIMING 3

static int64_t count_str(const custos_tok_t *tok, json_object *s)
{
    return custos_tok_count(tok, json_object_get_string(s), (size_t)json_object_get_string_len(s));
}

static int64_t add(int64_t a, int64_t b)
{
    return a < 0 ? a : b < 0 ? b : a + b;
}

/* content: a string, or an array of parts; only text parts have tokens here (images and audio are
 * charged by the backend's usage afterwards). */
static int64_t count_content(const custos_tok_t *tok, json_object *c)
{
    if (json_object_is_type(c, json_type_string))
        return count_str(tok, c);
    if (!json_object_is_type(c, json_type_array))
        return 0;
    int64_t n = 0;
    for (size_t i = 0; i < json_object_array_length(c) && n >= 0; i++) {
        json_object *part = json_object_array_get_idx(c, i), *text;
        if (json_object_is_type(part, json_type_string))
            n = add(n, count_str(tok, part));
        else if (json_object_is_type(part, json_type_object) && json_object_object_get_ex(part, "text", &text) &&
                 json_object_is_type(text, json_type_string))
            n = add(n, count_str(tok, text));
    }
    return n;
}

/* a function call object {name, arguments}: both strings counted */
static int64_t count_call(const custos_tok_t *tok, json_object *fn)
{
    int64_t n = 0;
    json_object *v;
    if (!json_object_is_type(fn, json_type_object))
        return 0;
    if (json_object_object_get_ex(fn, "name", &v) && json_object_is_type(v, json_type_string))
        n = add(n, count_str(tok, v));
    if (json_object_object_get_ex(fn, "arguments", &v) && json_object_is_type(v, json_type_string))
        n = add(n, count_str(tok, v));
    return n;
}

int64_t custos_quota_chat_tokens(const custos_tok_t *tok, json_object *messages)
{
    if (!json_object_is_type(messages, json_type_array))
        return 0;
    int64_t n = 0;
    for (size_t i = 0; i < json_object_array_length(messages) && n >= 0; i++) {
        json_object *m = json_object_array_get_idx(messages, i);
        if (!json_object_is_type(m, json_type_object))
            continue;
        n = add(n, TOKENS_PER_MESSAGE);
        json_object_object_foreach(m, key, val)
        {
            if (json_object_is_type(val, json_type_string)) {
                n = add(n, count_str(tok, val));
                if (strcmp(key, "name") == 0)
                    n = add(n, TOKENS_PER_NAME);
            } else if (strcmp(key, "content") == 0) {
                n = add(n, count_content(tok, val));
            } else if (strcmp(key, "tool_calls") == 0 && json_object_is_type(val, json_type_array)) {
                for (size_t k = 0; k < json_object_array_length(val); k++) {
                    json_object *fn;
                    if (json_object_object_get_ex(json_object_array_get_idx(val, k), "function", &fn))
                        n = add(n, count_call(tok, fn));
                }
            } else if (strcmp(key, "function_call") == 0) {
                n = add(n, count_call(tok, val));
            }
        }
    }
    return add(n, REPLY_PRIMING);
}

/* prompt / input: a string, an array of strings, an array of token ids, or an array of such arrays */
static int64_t count_input(const custos_tok_t *tok, json_object *in)
{
    if (json_object_is_type(in, json_type_string))
        return count_str(tok, in);
    if (!json_object_is_type(in, json_type_array))
        return 0;
    int64_t n = 0;
    for (size_t i = 0; i < json_object_array_length(in) && n >= 0; i++) {
        json_object *x = json_object_array_get_idx(in, i);
        if (json_object_is_type(x, json_type_string))
            n = add(n, count_str(tok, x));
        else if (json_object_is_type(x, json_type_int))
            n = add(n, 1);
        else if (json_object_is_type(x, json_type_array))
            n = add(n, (int64_t)json_object_array_length(x));
    }
    return n;
}

int64_t custos_quota_prompt_tokens(const custos_tok_t *tok, custos_quota_req_t kind, json_object *body)
{
    json_object *v;
    if (!tok || !json_object_is_type(body, json_type_object))
        return CUSTOS_EINVAL;
    switch (kind) {
    case CUSTOS_QUOTA_REQ_CHAT:
        return json_object_object_get_ex(body, "messages", &v) ? custos_quota_chat_tokens(tok, v) : 0;
    case CUSTOS_QUOTA_REQ_COMPLETIONS:
        return json_object_object_get_ex(body, "prompt", &v) ? count_input(tok, v) : 0;
    case CUSTOS_QUOTA_REQ_EMBEDDINGS:
        return json_object_object_get_ex(body, "input", &v) ? count_input(tok, v) : 0;
    }
    return 0;
}

static int64_t get_pos_int(json_object *body, const char *key, int64_t max)
{
    json_object *v;
    if (!json_object_object_get_ex(body, key, &v) || !json_object_is_type(v, json_type_int))
        return -1;
    int64_t x = json_object_get_int64(v);
    return x < 0 ? -1 : x > max ? max : x;
}

int64_t custos_quota_completion_allowance(custos_quota_req_t kind, json_object *body, int64_t default_max_tokens)
{
    if (kind == CUSTOS_QUOTA_REQ_EMBEDDINGS || !json_object_is_type(body, json_type_object))
        return 0;
    int64_t mt = get_pos_int(body, "max_completion_tokens", 100000000);
    if (mt < 0)
        mt = get_pos_int(body, "max_tokens", 100000000);
    if (mt < 0)
        mt = kind == CUSTOS_QUOTA_REQ_COMPLETIONS ? 16 : default_max_tokens; /* OpenAI's completions default */
    int64_t n = get_pos_int(body, "n", 128), best_of = get_pos_int(body, "best_of", 128), k = 1;
    if (n > k)
        k = n;
    if (best_of > k)
        k = best_of;
    return mt * k;
}
