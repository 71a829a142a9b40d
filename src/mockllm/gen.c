/* SPDX-License-Identifier: Apache-2.0
 * custos-mockllm generation: deterministic OpenAI-shaped bodies written with custos_buf_appendf,
 * request fields read with json-c, fault spec parsing and the fail_first key table. */
#include "mockllm/gen.h"
#include "util/err.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define HEADER_WORDS 8 /* "This is a mock reply to N messages." */
#define KEY_MAX 128
#define FAULT_SPEC_MAX 512

static const char *const LOREM[] = {
    "lorem",   "ipsum",   "dolor",   "sit",    "amet",       "consectetur", "adipiscing", "elit",
    "sed",     "do",      "eiusmod", "tempor", "incididunt", "ut",          "labore",     "et",
    "dolore",  "magna",   "aliqua",  "enim",   "ad",         "minim",       "veniam",     "quis",
    "nostrud", "ullamco", "laboris", "nisi",   "aliquip",    "ex",          "ea",         "commodo",
};
#define NLOREM (sizeof(LOREM) / sizeof(LOREM[0]))

struct custos_mock_keyent {
    uint64_t hash;
    uint32_t count;
    uint8_t len;
    bool used;
    char key[KEY_MAX];
};

void custos_mock_opts_default(custos_mock_opts_t *o)
{
    o->reply_words = CUSTOS_MOCK_DEFAULT_WORDS;
    o->chunk_words = 1;
}

uint64_t custos_mock_hash(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    if (h == 0)
        h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int custos_mock_json_escape(custos_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        int rc = custos_buf_append(out, s + run, i - run);
        if (rc)
            return rc;
        char esc[7] = {'\\', 0};
        size_t elen = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if ((rc = custos_buf_append(out, esc, elen)))
            return rc;
        run = i + 1;
    }
    return custos_buf_append(out, s + run, n - run);
}

int custos_mock_base64(custos_buf_t *out, const void *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = p;
    int rc = custos_buf_reserve(out, (n + 2) / 3 * 4);
    if (rc)
        return rc;
    char *d = out->data + out->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = tab[v >> 18];
        *d++ = tab[(v >> 12) & 63];
        *d++ = tab[(v >> 6) & 63];
        *d++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *d++ = tab[v >> 18];
        *d++ = tab[(v >> 12) & 63];
        *d++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *d++ = '=';
    }
    out->len = (size_t)(d - out->data);
    out->data[out->len] = 0;
    return 0;
}

/* ---- request parsing ---- */

static bool get(json_object *o, const char *k, json_object **v)
{
    return json_object_object_get_ex(o, k, v) && *v != NULL;
}

/* Text bytes of a chat message content: a string, or an array of parts whose "text" members count. */
static void content_text(json_object *content, size_t *bytes, uint64_t *seed)
{
    if (json_object_is_type(content, json_type_string)) {
        size_t n = (size_t)json_object_get_string_len(content);
        *bytes += n;
        *seed = custos_mock_hash(json_object_get_string(content), n, *seed);
        return;
    }
    if (!json_object_is_type(content, json_type_array))
        return;
    size_t np = json_object_array_length(content);
    for (size_t i = 0; i < np; i++) {
        json_object *part = json_object_array_get_idx(content, i), *t;
        if (json_object_is_type(part, json_type_object) && get(part, "text", &t) &&
            json_object_is_type(t, json_type_string)) {
            size_t n = (size_t)json_object_get_string_len(t);
            *bytes += n;
            *seed = custos_mock_hash(json_object_get_string(t), n, *seed);
        }
    }
}

static bool is_int(json_object *v)
{
    return json_object_is_type(v, json_type_int);
}

static int parse_chat(json_object *root, custos_mock_req_t *r, const char **param, const char **msg)
{
    json_object *msgs;
    if (!get(root, "messages", &msgs)) {
        *param = "messages";
        *msg = "Missing required parameter: 'messages'.";
        return CUSTOS_EINVAL;
    }
    if (!json_object_is_type(msgs, json_type_array) || json_object_array_length(msgs) == 0) {
        *param = "messages";
        *msg = "Invalid 'messages': expected a non-empty array of message objects.";
        return CUSTOS_EINVAL;
    }
    r->n_messages = json_object_array_length(msgs);
    for (size_t i = 0; i < r->n_messages; i++) {
        json_object *m = json_object_array_get_idx(msgs, i), *c, *role;
        if (!json_object_is_type(m, json_type_object) || !get(m, "role", &role) ||
            !json_object_is_type(role, json_type_string)) {
            *param = "messages";
            *msg = "Invalid 'messages': every message must be an object with a string 'role'.";
            return CUSTOS_EINVAL;
        }
        if (get(m, "content", &c))
            content_text(c, &r->content_bytes, &r->seed);
    }
    return 0;
}

static int parse_completion(json_object *root, custos_mock_req_t *r, const char **param, const char **msg)
{
    json_object *p;
    *param = "prompt";
    if (!get(root, "prompt", &p)) {
        *msg = "Missing required parameter: 'prompt'.";
        return CUSTOS_EINVAL;
    }
    if (json_object_is_type(p, json_type_string)) {
        r->n_messages = 1;
        content_text(p, &r->content_bytes, &r->seed);
        return 0;
    }
    if (!json_object_is_type(p, json_type_array)) {
        *msg = "Invalid 'prompt': expected a string or an array.";
        return CUSTOS_EINVAL;
    }
    size_t n = json_object_array_length(p);
    if (n > 0 && is_int(json_object_array_get_idx(p, 0))) { /* one prompt as token ids */
        r->n_messages = 1;
        r->content_bytes = n * 4;
        r->seed = custos_mock_hash(&n, sizeof(n), r->seed);
        return 0;
    }
    r->n_messages = n ? n : 1;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(p, i);
        if (json_object_is_type(e, json_type_string)) {
            content_text(e, &r->content_bytes, &r->seed);
        } else if (json_object_is_type(e, json_type_array)) {
            r->content_bytes += json_object_array_length(e) * 4;
        } else {
            *msg = "Invalid 'prompt': array items must be strings or token arrays.";
            return CUSTOS_EINVAL;
        }
    }
    return 0;
}

/* Hash of a token-id array input. */
static int token_input(json_object *a, uint64_t *hash, size_t *tokens)
{
    size_t n = json_object_array_length(a);
    uint64_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(a, i);
        if (!is_int(t))
            return CUSTOS_EINVAL;
        int64_t v = json_object_get_int64(t);
        h = custos_mock_hash(&v, sizeof(v), h);
    }
    *hash = h;
    *tokens += n;
    return 0;
}

static int parse_embeddings(json_object *root, custos_arena_t *arena, custos_mock_req_t *r, const char **param,
                            const char **msg)
{
    json_object *in, *v;
    *param = "input";
    if (!get(root, "input", &in)) {
        *msg = "Missing required parameter: 'input'.";
        return CUSTOS_EINVAL;
    }
    r->dimensions = CUSTOS_MOCK_DEFAULT_DIMS;
    if (get(root, "dimensions", &v)) {
        int64_t d = is_int(v) ? json_object_get_int64(v) : -1;
        if (d < 1 || d > CUSTOS_MOCK_MAX_DIMS) {
            *param = "dimensions";
            *msg = "Invalid 'dimensions': expected an integer between 1 and 4096.";
            return CUSTOS_EINVAL;
        }
        r->dimensions = (uint32_t)d;
    }
    if (get(root, "encoding_format", &v)) {
        const char *f = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (strcmp(f, "base64") == 0) {
            r->base64 = true;
        } else if (strcmp(f, "float") != 0) {
            *param = "encoding_format";
            *msg = "Invalid 'encoding_format': expected 'float' or 'base64'.";
            return CUSTOS_EINVAL;
        }
    }
    size_t n = 1;
    bool single_tokens = false;
    if (json_object_is_type(in, json_type_array)) {
        n = json_object_array_length(in);
        single_tokens = n > 0 && is_int(json_object_array_get_idx(in, 0));
        if (single_tokens)
            n = 1;
    } else if (!json_object_is_type(in, json_type_string)) {
        *msg = "Invalid 'input': expected a string or an array.";
        return CUSTOS_EINVAL;
    }
    if (n == 0 || n > CUSTOS_MOCK_MAX_INPUTS) {
        *msg = "Invalid 'input': expected between 1 and 2048 inputs.";
        return CUSTOS_EINVAL;
    }
    if (n * r->dimensions > CUSTOS_MOCK_MAX_FLOATS) {
        *msg = "Invalid 'input': too many inputs for the requested dimensions.";
        return CUSTOS_EINVAL;
    }
    r->input_hash = custos_arena_alloc(arena, n * sizeof(uint64_t));
    if (!r->input_hash)
        return CUSTOS_ENOMEM;
    r->n_inputs = n;
    *msg = "Invalid 'input': array items must be strings or token arrays.";
    if (json_object_is_type(in, json_type_string)) {
        size_t len = (size_t)json_object_get_string_len(in);
        r->input_hash[0] = custos_mock_hash(json_object_get_string(in), len, 0);
        r->input_tokens = len / 4 + 1;
        r->content_bytes = len;
    } else if (single_tokens) {
        if (token_input(in, &r->input_hash[0], &r->input_tokens))
            return CUSTOS_EINVAL;
    } else {
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(in, i);
            if (json_object_is_type(e, json_type_string)) {
                size_t len = (size_t)json_object_get_string_len(e);
                r->input_hash[i] = custos_mock_hash(json_object_get_string(e), len, 0);
                r->input_tokens += len / 4 + 1;
                r->content_bytes += len;
            } else if (json_object_is_type(e, json_type_array)) {
                if (token_input(e, &r->input_hash[i], &r->input_tokens))
                    return CUSTOS_EINVAL;
            } else {
                return CUSTOS_EINVAL;
            }
        }
    }
    *msg = NULL;
    *param = NULL;
    return 0;
}

static int parse_script(json_object *root, custos_arena_t *arena, custos_mock_req_t *r, const char **param,
                        const char **msg)
{
    json_object *v;
    if (!get(root, "mock_reply", &v))
        return 0;
    bool arr = json_object_is_type(v, json_type_array);
    size_t n = arr ? json_object_array_length(v) : 1;
    *param = "mock_reply";
    if (n == 0 || n > CUSTOS_MOCK_MAX_SCRIPT) {
        *msg = "Invalid 'mock_reply': expected a string or 1..16 strings.";
        return CUSTOS_EINVAL;
    }
    r->script = custos_arena_alloc(arena, n * sizeof(*r->script));
    r->script_len = custos_arena_alloc(arena, n * sizeof(*r->script_len));
    if (!r->script || !r->script_len)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *t = arr ? json_object_array_get_idx(v, i) : v;
        if (!t || !json_object_is_type(t, json_type_string) ||
            json_object_get_string_len(t) > CUSTOS_MOCK_MAX_SCRIPT_BYTES) {
            *msg = "Invalid 'mock_reply': expected strings of at most 65536 bytes.";
            return CUSTOS_EINVAL;
        }
        r->script_len[i] = (size_t)json_object_get_string_len(t);
        if (!(r->script[i] = custos_arena_strndup(arena, json_object_get_string(t), r->script_len[i])))
            return CUSTOS_ENOMEM;
    }
    r->n_script = n;
    *param = NULL;
    /* "__echo__": the reply is the text of the last user message (or the first prompt): shows what reached the
     * backend after custos rewrote the request (PII redaction tests). */
    if (n == 1 && strcmp(r->script[0], "__echo__") == 0) {
        json_object *src = NULL, *msgs, *pr;
        if (get(root, "messages", &msgs) && json_object_is_type(msgs, json_type_array)) {
            for (size_t i = json_object_array_length(msgs); i-- > 0;) {
                json_object *m = json_object_array_get_idx(msgs, i), *role, *c;
                if (m && get(m, "role", &role) && json_object_is_type(role, json_type_string) &&
                    strcmp(json_object_get_string(role), "user") == 0 && get(m, "content", &c) &&
                    json_object_is_type(c, json_type_string)) {
                    src = c;
                    break;
                }
            }
        } else if (get(root, "prompt", &pr)) {
            src = json_object_is_type(pr, json_type_array) ? json_object_array_get_idx(pr, 0) : pr;
        }
        if (src && json_object_is_type(src, json_type_string) &&
            json_object_get_string_len(src) <= CUSTOS_MOCK_MAX_SCRIPT_BYTES) {
            r->script_len[0] = (size_t)json_object_get_string_len(src);
            if (!(r->script[0] = custos_arena_strndup(arena, json_object_get_string(src), r->script_len[0])))
                return CUSTOS_ENOMEM;
        }
    }
    return 0;
}

static int parse_common(json_object *root, custos_mock_req_t *r, const char **param, const char **msg)
{
    json_object *v;
    if (get(root, "stream", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            *param = "stream";
            *msg = "Invalid 'stream': expected a boolean.";
            return CUSTOS_EINVAL;
        }
        r->stream = json_object_get_boolean(v);
    }
    json_object *so, *iu;
    if (get(root, "stream_options", &so) && json_object_is_type(so, json_type_object) && get(so, "include_usage", &iu))
        r->include_usage = json_object_get_boolean(iu);
    static const char *const names[] = {"max_completion_tokens", "max_tokens"};
    for (size_t i = 0; i < 2; i++) {
        if (!get(root, names[i], &v))
            continue;
        int64_t t = is_int(v) ? json_object_get_int64(v) : 0;
        if (t < 1) {
            *param = names[i];
            *msg = "Invalid max tokens: expected an integer >= 1.";
            return CUSTOS_EINVAL;
        }
        if (r->max_tokens == 0)
            r->max_tokens = t;
    }
    return 0;
}

int custos_mock_req_parse(custos_mock_kind_t kind, const char *body, size_t len, const char *model_override,
                          custos_arena_t *arena, custos_mock_req_t *out, const char **err_param, const char **err_msg)
{
    int rc = CUSTOS_EINVAL;
    json_object *root = NULL;
    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->seed = FNV_OFFSET;
    *err_param = NULL;
    *err_msg = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
               "HTTP library correctly. The OpenAI API expects a JSON payload.)";
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return CUSTOS_ENOMEM;
    if (len > INT32_MAX)
        goto fail;
    root = json_tokener_parse_ex(tok, body, (int)len);
    if (!root || json_tokener_get_error(tok) != json_tokener_success)
        goto fail;
    /* Only whitespace may follow the value. */
    for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
        if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t')
            goto fail;
    if (!json_object_is_type(root, json_type_object)) {
        *err_msg = "Invalid request body: expected a JSON object.";
        goto fail;
    }
    json_object *m;
    const char *model = model_override;
    size_t model_len = model_override ? strlen(model_override) : 0;
    if (!model) {
        if (!get(root, "model", &m) || !json_object_is_type(m, json_type_string) ||
            json_object_get_string_len(m) == 0) {
            *err_param = "model";
            *err_msg = "you must provide a model parameter";
            goto fail;
        }
        model = json_object_get_string(m);
        model_len = (size_t)json_object_get_string_len(m);
    }
    if (model_len > CUSTOS_MOCK_MAX_MODEL) {
        *err_param = "model";
        *err_msg = "Invalid 'model': string too long.";
        goto fail;
    }
    if (!(out->model = custos_arena_strndup(arena, model, model_len))) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    out->model_len = model_len;
    if ((rc = parse_common(root, out, err_param, err_msg)))
        goto fail;
    if (kind != CUSTOS_MOCK_EMBEDDINGS && (rc = parse_script(root, arena, out, err_param, err_msg)))
        goto fail;
    if (kind == CUSTOS_MOCK_CHAT && !out->n_script && (rc = custos_mock_judge(root, arena, out)) != 0)
        goto fail; /* custos' groundedness judge prompt: a scripted verdict (judge.c) */
    if (kind == CUSTOS_MOCK_CHAT)
        rc = parse_chat(root, out, err_param, err_msg);
    else if (kind == CUSTOS_MOCK_COMPLETION)
        rc = parse_completion(root, out, err_param, err_msg);
    else
        rc = parse_embeddings(root, arena, out, err_param, err_msg);
    if (rc)
        goto fail;
    json_object_put(root);
    json_tokener_free(tok);
    *err_msg = NULL;
    *err_param = NULL;
    return 0;
fail:
    if (rc == CUSTOS_ENOMEM)
        *err_msg = "out of memory";
    json_object_put(root);
    json_tokener_free(tok);
    return rc ? rc : CUSTOS_EINVAL;
}

/* ---- text generation ---- */

size_t custos_mock_prompt_tokens(const custos_mock_req_t *r)
{
    if (r->kind == CUSTOS_MOCK_EMBEDDINGS)
        return r->input_tokens;
    return r->content_bytes / 4 + 3 * r->n_messages;
}

size_t custos_mock_reply_len(const custos_mock_req_t *r, const custos_mock_opts_t *o, bool *truncated)
{
    size_t natural = o->reply_words;
    *truncated = r->max_tokens > 0 && (uint64_t)r->max_tokens < natural;
    return *truncated ? (size_t)r->max_tokens : natural;
}

/* Word i of the reply; tmp holds the number word. */
static const char *word_at(const custos_mock_req_t *r, size_t i, char tmp[24])
{
    bool chat = r->kind == CUSTOS_MOCK_CHAT;
    switch (i) {
    case 0:
        return "This";
    case 1:
        return "is";
    case 2:
        return "a";
    case 3:
        return "mock";
    case 4:
        return chat ? "reply" : "completion";
    case 5:
        return chat ? "to" : "for";
    case 6:
        snprintf(tmp, 24, "%zu", r->n_messages);
        return tmp;
    case 7:
        if (chat)
            return r->n_messages == 1 ? "message." : "messages.";
        return r->n_messages == 1 ? "prompt." : "prompts.";
    default:
        return LOREM[(r->seed + i - HEADER_WORDS) % NLOREM];
    }
}

int custos_mock_append_words(custos_buf_t *out, const custos_mock_req_t *r, size_t from, size_t to)
{
    char tmp[24];
    for (size_t i = from; i < to; i++) {
        const char *w = word_at(r, i, tmp);
        size_t n = strlen(w);
        int rc = custos_buf_reserve(out, n + 1);
        if (rc)
            return rc;
        if (i > 0)
            out->data[out->len++] = ' ';
        memcpy(out->data + out->len, w, n);
        out->len += n;
        out->data[out->len] = 0;
    }
    return 0;
}

static int append_extra(custos_buf_t *out, const char *extra)
{
    if (!extra || !*extra)
        return 0;
    int rc = custos_buf_append(out, ",", 1);
    return rc ? rc : custos_buf_append_str(out, extra);
}

/* Ends an object: the extra members (append_extra), then "}". */
static int close_object(custos_buf_t *out, const char *extra)
{
    int rc = append_extra(out, extra);
    return rc ? rc : custos_buf_append(out, "}", 1);
}

/* Opens a body (chunk false) or stream chunk object: "{" id, object, created, model, system_fingerprint. chat picks
 * the chat ("chatcmpl-mock-<seq>", chat.completion[.chunk]) or completions form ("cmpl-mock-<seq>",
 * text_completion). */
static int append_head(custos_buf_t *out, const custos_mock_req_t *r, bool chat, bool chunk,
                       const custos_mock_ident_t *id)
{
    const char *object = !chat ? "text_completion" : chunk ? "chat.completion.chunk" : "chat.completion";
    int rc =
        custos_buf_appendf(out, "{\"id\":\"%s-mock-%llu\",\"object\":\"%s\",\"created\":%lld,\"model\":\"",
                           chat ? "chatcmpl" : "cmpl", (unsigned long long)id->seq, object, (long long)id->created);
    if (!rc)
        rc = custos_mock_json_escape(out, r->model, r->model_len);
    if (!rc)
        rc = custos_buf_append_str(out, "\",\"system_fingerprint\":\"" CUSTOS_MOCK_FINGERPRINT "\"");
    return rc;
}

static int append_usage(custos_buf_t *out, size_t prompt, size_t completion)
{
    return custos_buf_appendf(out, "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}",
                              prompt, completion, prompt + completion);
}

static size_t script_tokens(const custos_mock_req_t *r)
{
    size_t t = 0;
    for (size_t i = 0; i < r->n_script; i++)
        t += (r->script_len[i] + 3) / 4;
    return t;
}

/* Ends a whole chat/completions body after its choices array and ",": usage for completion tokens, the ident's
 * extra members, "}". */
static int close_body(custos_buf_t *out, const custos_mock_req_t *r, size_t completion, const custos_mock_ident_t *id)
{
    int rc = append_usage(out, custos_mock_prompt_tokens(r), completion);
    return rc ? rc : close_object(out, id->extra_json);
}

/* The scripted choices of a whole body. */
static int scripted_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_ident_t *id)
{
    bool chat = r->kind == CUSTOS_MOCK_CHAT;
    int rc = append_head(out, r, chat, false, id);
    rc = rc ? rc : custos_buf_append_str(out, ",\"choices\":[");
    for (size_t i = 0; i < r->n_script && !rc; i++) {
        rc = custos_buf_appendf(out, "%s{\"index\":%zu,", i ? "," : "", i);
        rc = rc ? rc
                : custos_buf_append_str(out,
                                        chat ? "\"message\":{\"role\":\"assistant\",\"content\":\"" : "\"text\":\"");
        rc = rc ? rc : custos_mock_json_escape(out, r->script[i], r->script_len[i]);
        rc = rc ? rc : custos_buf_append_str(out, chat ? "\",\"refusal\":null}," : "\",");
        rc = rc ? rc : custos_buf_append_str(out, "\"logprobs\":null,\"finish_reason\":\"stop\"}");
    }
    rc = rc ? rc : custos_buf_append_str(out, "],");
    return rc ? rc : close_body(out, r, script_tokens(r), id);
}

/* The generated (unscripted) reply as a whole body in the chat (chat.completion) or completions form
 * (text_completion); max_tokens below the natural length ends it with "length". */
static int generated_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                          const custos_mock_ident_t *id, bool chat)
{
    bool trunc;
    size_t n = custos_mock_reply_len(r, o, &trunc);
    int rc = append_head(out, r, chat, false, id);
    rc = rc ? rc
            : custos_buf_append_str(out, chat ? ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                                                "\"content\":\""
                                              : ",\"choices\":[{\"text\":\"");
    rc = rc ? rc : custos_mock_append_words(out, r, 0, n);
    rc = rc ? rc
            : custos_buf_appendf(out,
                                 chat ? "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"%s\"}],"
                                      : "\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%s\"}],",
                                 trunc ? "length" : "stop");
    return rc ? rc : close_body(out, r, n, id);
}

int custos_mock_chat_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                          const custos_mock_ident_t *id)
{
    return r->n_script ? scripted_json(out, r, id) : generated_json(out, r, o, id, true);
}

int custos_mock_completion_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                                const custos_mock_ident_t *id)
{
    return r->n_script ? scripted_json(out, r, id) : generated_json(out, r, o, id, false);
}

void custos_mock_embedding(uint64_t input_hash, uint32_t dims, float *vec)
{
    double norm = 0;
    for (uint32_t i = 0; i < dims; i++) {
        uint64_t x = splitmix64(input_hash + i);
        double v = (double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* [-1, 1) */
        vec[i] = (float)v;
        norm += v * v;
    }
    norm = sqrt(norm);
    if (norm > 0)
        for (uint32_t i = 0; i < dims; i++)
            vec[i] = (float)(vec[i] / norm);
}

int custos_mock_embeddings_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_ident_t *id)
{
    uint32_t dims = r->dimensions ? r->dimensions : CUSTOS_MOCK_DEFAULT_DIMS;
    float vec[CUSTOS_MOCK_MAX_DIMS];
    unsigned char le[CUSTOS_MOCK_MAX_DIMS * 4];
    int rc = custos_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; !rc && i < r->n_inputs; i++) {
        custos_mock_embedding(r->input_hash[i], dims, vec);
        rc = custos_buf_appendf(out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (rc)
            break;
        if (r->base64) {
            for (uint32_t k = 0; k < dims; k++) {
                uint32_t u;
                memcpy(&u, &vec[k], 4);
                le[4 * k] = (unsigned char)u;
                le[4 * k + 1] = (unsigned char)(u >> 8);
                le[4 * k + 2] = (unsigned char)(u >> 16);
                le[4 * k + 3] = (unsigned char)(u >> 24);
            }
            rc = custos_buf_append(out, "\"", 1);
            if (!rc)
                rc = custos_mock_base64(out, le, (size_t)dims * 4);
            if (!rc)
                rc = custos_buf_append(out, "\"}", 2);
        } else {
            rc = custos_buf_append(out, "[", 1);
            for (uint32_t k = 0; !rc && k < dims; k++)
                rc = custos_buf_appendf(out, "%s%.9g", k ? "," : "", (double)vec[k]);
            if (!rc)
                rc = custos_buf_append(out, "]}", 2);
        }
    }
    if (!rc)
        rc = custos_buf_append_str(out, "],\"model\":\"");
    if (!rc)
        rc = custos_mock_json_escape(out, r->model, r->model_len);
    if (!rc)
        rc = custos_buf_appendf(out, "\",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}", r->input_tokens,
                                r->input_tokens);
    return rc ? rc : close_object(out, id ? id->extra_json : NULL);
}

int custos_mock_models_json(custos_buf_t *out, int64_t created, const char *extra_json)
{
    static const char *const models[] = {"mock-model", "gpt-4o-mini", "gpt-4o", "text-embedding-3-small"};
    int rc = custos_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; !rc && i < sizeof(models) / sizeof(models[0]); i++)
        rc = custos_buf_appendf(out, "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"%s\"}",
                                i ? "," : "", models[i], (long long)created, CUSTOS_MOCK_FINGERPRINT);
    if (!rc)
        rc = custos_buf_append(out, "]", 1);
    return rc ? rc : close_object(out, extra_json);
}

/* ---- streaming ---- */

enum { PH_ROLE = 0, PH_CONTENT, PH_FINISH, PH_USAGE, PH_DONE, PH_END };

void custos_mock_stream_init(custos_mock_stream_t *s, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                             const custos_mock_ident_t *id)
{
    memset(s, 0, sizeof(*s));
    s->req = r;
    s->opts = *o;
    if (s->opts.chunk_words == 0)
        s->opts.chunk_words = 1;
    s->ident = *id;
    s->total_words = custos_mock_reply_len(r, o, &s->truncated);
    /* Completions streams have no role chunk. */
    s->phase = r->kind == CUSTOS_MOCK_CHAT ? PH_ROLE : PH_CONTENT;
    if (s->phase == PH_CONTENT && s->total_words == 0 && !r->n_script)
        s->phase = PH_FINISH;
}

bool custos_mock_stream_at_content(const custos_mock_stream_t *s)
{
    return s->phase == PH_CONTENT;
}

bool custos_mock_stream_done(const custos_mock_stream_t *s)
{
    return s->phase == PH_END;
}

static int chunk_open(custos_mock_stream_t *s, custos_buf_t *out)
{
    int rc = custos_buf_append(out, "data: ", 6);
    return rc ? rc : append_head(out, s->req, s->req->kind == CUSTOS_MOCK_CHAT, true, &s->ident);
}

/* Closes a chunk: choices already written; adds "usage":null when usage will follow, extra on event 0. */
static int chunk_close(custos_mock_stream_t *s, custos_buf_t *out)
{
    int rc = 0;
    if (s->req->include_usage)
        rc = custos_buf_append_str(out, ",\"usage\":null");
    if (!rc && s->events == 0)
        rc = append_extra(out, s->ident.extra_json);
    return rc ? rc : custos_buf_append(out, "}\n\n", 3);
}

/* The chat role chunk of choice index (the first event of a chat stream, one per choice). */
static int role_event(custos_mock_stream_t *s, custos_buf_t *out, size_t index)
{
    int rc = chunk_open(s, out);
    rc = rc ? rc
            : custos_buf_appendf(out,
                                 ",\"choices\":[{\"index\":%zu,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                                 "\"logprobs\":null,\"finish_reason\":null}]",
                                 index);
    return rc ? rc : chunk_close(s, out);
}

/* The usage chunk (stream_options.include_usage): no choices, usage for completion tokens, extra on event 0. */
static int usage_event(custos_mock_stream_t *s, custos_buf_t *out, size_t completion)
{
    int rc = chunk_open(s, out);
    rc = rc ? rc : custos_buf_append_str(out, ",\"choices\":[],");
    rc = rc ? rc : append_usage(out, custos_mock_prompt_tokens(s->req), completion);
    if (!rc && s->events == 0)
        rc = append_extra(out, s->ident.extra_json);
    return rc ? rc : custos_buf_append(out, "}\n\n", 3);
}

/* Scripted stream, role to finish: role chunks (chat), then content pieces round-robin over the choices, then finish
 * chunks. A piece is chunk_words words (a word ends after a space). Returns 0 or an error code. */
static int scripted_event(custos_mock_stream_t *s, custos_buf_t *out)
{
    const custos_mock_req_t *r = s->req;
    bool chat = r->kind == CUSTOS_MOCK_CHAT;
    int rc = 0;
    size_t i = s->script_choice;
    switch (s->phase) {
    case PH_ROLE:
        rc = role_event(s, out, i);
        if (++s->script_choice == r->n_script) {
            s->script_choice = 0;
            s->phase = PH_CONTENT;
        }
        break;
    case PH_CONTENT: {
        /* next choice with text left */
        size_t k = 0;
        while (k < r->n_script && s->script_pos[i] >= r->script_len[i]) {
            i = (i + 1) % r->n_script;
            k++;
        }
        if (k == r->n_script) {
            s->script_choice = 0;
            s->phase = PH_FINISH;
            return scripted_event(s, out);
        }
        size_t from = s->script_pos[i], to = from, words = 0;
        while (to < r->script_len[i] && words < s->opts.chunk_words) {
            if (r->script[i][to++] == ' ')
                words++;
        }
        rc = chunk_open(s, out);
        rc = rc ? rc
                : custos_buf_appendf(out,
                                     chat ? ",\"choices\":[{\"index\":%zu,\"delta\":{\"content\":\""
                                          : ",\"choices\":[{\"index\":%zu,\"text\":\"",
                                     i);
        rc = rc ? rc : custos_mock_json_escape(out, r->script[i] + from, to - from);
        rc = rc ? rc
                : custos_buf_append_str(out, chat ? "\"},\"logprobs\":null,\"finish_reason\":null}]"
                                                  : "\",\"logprobs\":null,\"finish_reason\":null}]");
        rc = rc ? rc : chunk_close(s, out);
        s->script_pos[i] = to;
        s->script_choice = (i + 1) % r->n_script;
        break;
    }
    default: /* PH_FINISH */
        rc = chunk_open(s, out);
        rc = rc ? rc
                : custos_buf_appendf(out,
                                     chat ? ",\"choices\":[{\"index\":%zu,\"delta\":{},\"logprobs\":null,"
                                            "\"finish_reason\":\"stop\"}]"
                                          : ",\"choices\":[{\"index\":%zu,\"text\":\"\",\"logprobs\":null,"
                                            "\"finish_reason\":\"stop\"}]",
                                     i);
        rc = rc ? rc : chunk_close(s, out);
        if (++s->script_choice == r->n_script)
            s->phase = r->include_usage ? PH_USAGE : PH_DONE;
        break;
    }
    return rc;
}

/* Generated stream, role to finish: the role chunk (chat), content chunks of chunk_words words, the finish chunk.
 * Returns 0 or an error code. */
static int generated_event(custos_mock_stream_t *s, custos_buf_t *out)
{
    bool chat = s->req->kind == CUSTOS_MOCK_CHAT;
    int rc = 0;
    switch (s->phase) {
    case PH_ROLE:
        rc = role_event(s, out, 0);
        s->phase = s->total_words ? PH_CONTENT : PH_FINISH;
        break;
    case PH_CONTENT: {
        size_t to = s->word + s->opts.chunk_words;
        if (to > s->total_words)
            to = s->total_words;
        rc = chunk_open(s, out);
        if (!rc)
            rc = custos_buf_append_str(out, chat ? ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
                                                 : ",\"choices\":[{\"text\":\"");
        if (!rc)
            rc = custos_mock_append_words(out, s->req, s->word, to);
        if (!rc)
            rc = custos_buf_append_str(out, chat ? "\"},\"logprobs\":null,\"finish_reason\":null}]"
                                                 : "\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]");
        if (!rc)
            rc = chunk_close(s, out);
        s->word = to;
        if (s->word >= s->total_words)
            s->phase = PH_FINISH;
        break;
    }
    default: { /* PH_FINISH */
        const char *fr = s->truncated ? "length" : "stop";
        rc = chunk_open(s, out);
        if (!rc)
            rc = chat ? custos_buf_appendf(out,
                                           ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                                           "\"finish_reason\":\"%s\"}]",
                                           fr)
                      : custos_buf_appendf(out,
                                           ",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,"
                                           "\"finish_reason\":\"%s\"}]",
                                           fr);
        if (!rc)
            rc = chunk_close(s, out);
        s->phase = s->req->include_usage ? PH_USAGE : PH_DONE;
        break;
    }
    }
    return rc;
}

int custos_mock_stream_next(custos_mock_stream_t *s, custos_buf_t *out)
{
    int rc;
    switch (s->phase) {
    case PH_ROLE:
    case PH_CONTENT:
    case PH_FINISH:
        rc = s->req->n_script ? scripted_event(s, out) : generated_event(s, out);
        break;
    case PH_USAGE:
        rc = usage_event(s, out, s->req->n_script ? script_tokens(s->req) : s->total_words);
        s->phase = PH_DONE;
        break;
    case PH_DONE:
        rc = custos_buf_append_str(out, "data: [DONE]\n\n");
        s->phase = PH_END;
        break;
    default:
        return 0;
    }
    if (rc)
        return rc;
    s->events++;
    return 1;
}

/* ---- fault specs ---- */

void custos_mock_fault_clear(custos_mock_fault_t *f)
{
    memset(f, 0, sizeof(*f));
    f->retry_after_s = 1;
    f->reset_mid_stream = -1;
}

bool custos_mock_fault_any(const custos_mock_fault_t *f)
{
    return f->latency_ms || f->status || f->reset || f->reset_mid_stream >= 0 || f->malformed_json || f->drip_ms ||
           f->fail_first;
}

/* Decimal 0..max, whole string. */
static int parse_num(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 10)
        return CUSTOS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CUSTOS_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return CUSTOS_EINVAL;
    *out = v;
    return 0;
}

static bool key_is(const char *k, size_t kn, const char *name)
{
    return strlen(name) == kn && memcmp(k, name, kn) == 0;
}

static int fault_item(const char *k, size_t kn, const char *v, size_t vn, bool has_v, custos_mock_fault_t *f)
{
    uint64_t x;
    if (key_is(k, kn, "reset") || key_is(k, kn, "malformed_json")) {
        if (has_v)
            return CUSTOS_EINVAL;
        if (k[0] == 'r')
            f->reset = true;
        else
            f->malformed_json = true;
        return 0;
    }
    if (!has_v)
        return CUSTOS_EINVAL;
    if (key_is(k, kn, "latency")) {
        if (parse_num(v, vn, 600000, &x))
            return CUSTOS_EINVAL;
        f->latency_ms = (uint32_t)x;
    } else if (key_is(k, kn, "status")) {
        if (parse_num(v, vn, 599, &x) || x < 400)
            return CUSTOS_EINVAL;
        f->status = (int)x;
    } else if (key_is(k, kn, "retry_after")) {
        if (parse_num(v, vn, 86400, &x))
            return CUSTOS_EINVAL;
        f->retry_after_s = (uint32_t)x;
    } else if (key_is(k, kn, "reset_mid_stream")) {
        if (parse_num(v, vn, 1000000, &x))
            return CUSTOS_EINVAL;
        f->reset_mid_stream = (int64_t)x;
    } else if (key_is(k, kn, "drip")) {
        if (parse_num(v, vn, 600000, &x))
            return CUSTOS_EINVAL;
        f->drip_ms = (uint32_t)x;
    } else if (key_is(k, kn, "fail_first")) {
        if (parse_num(v, vn, 1000000, &x) || x == 0)
            return CUSTOS_EINVAL;
        f->fail_first = (uint32_t)x;
    } else {
        return CUSTOS_EINVAL;
    }
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

int custos_mock_fault_parse(const char *spec, size_t len, custos_mock_fault_t *f)
{
    custos_mock_fault_clear(f);
    if (len > FAULT_SPEC_MAX)
        return CUSTOS_EINVAL;
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && spec[e] != ';')
            e++;
        size_t a = i, b = e;
        while (a < b && is_space(spec[a]))
            a++;
        while (b > a && is_space(spec[b - 1]))
            b--;
        if (a < b) {
            const char *eq = memchr(spec + a, '=', b - a);
            size_t kn = eq ? (size_t)(eq - (spec + a)) : b - a;
            const char *v = eq ? eq + 1 : NULL;
            size_t vn = eq ? (size_t)(spec + b - v) : 0;
            if (fault_item(spec + a, kn, v, vn, eq != NULL, f)) {
                custos_mock_fault_clear(f);
                return CUSTOS_EINVAL;
            }
        }
        i = e + 1;
    }
    if (f->fail_first && !f->status && !f->reset && f->reset_mid_stream < 0 && !f->malformed_json)
        f->status = 503;
    return 0;
}

/* ---- fail_first key table ---- */

int custos_mock_keytab_init(custos_mock_keytab_t *t, size_t cap)
{
    size_t c = 16;
    while (c < cap)
        c *= 2;
    t->ents = calloc(c, sizeof(*t->ents));
    if (!t->ents)
        return CUSTOS_ENOMEM;
    t->cap = c;
    t->n = 0;
    pthread_mutex_init(&t->mu, NULL);
    return 0;
}

void custos_mock_keytab_dispose(custos_mock_keytab_t *t)
{
    if (!t->ents)
        return;
    free(t->ents);
    t->ents = NULL;
    pthread_mutex_destroy(&t->mu);
}

void custos_mock_keytab_clear(custos_mock_keytab_t *t)
{
    pthread_mutex_lock(&t->mu);
    memset(t->ents, 0, t->cap * sizeof(*t->ents));
    t->n = 0;
    pthread_mutex_unlock(&t->mu);
}

uint32_t custos_mock_keytab_bump(custos_mock_keytab_t *t, const char *key, size_t len)
{
    if (len > KEY_MAX)
        len = KEY_MAX;
    uint64_t h = custos_mock_hash(key, len, 0);
    uint32_t count = 0;
    pthread_mutex_lock(&t->mu);
    if (t->n + 1 > t->cap / 4 * 3) { /* full: forget everything (tests use few keys) */
        memset(t->ents, 0, t->cap * sizeof(*t->ents));
        t->n = 0;
    }
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        struct custos_mock_keyent *e = &t->ents[i];
        if (!e->used) {
            e->used = true;
            e->hash = h;
            e->len = (uint8_t)len;
            memcpy(e->key, key, len);
            e->count = 1;
            t->n++;
            count = 1;
            break;
        }
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
            if (e->count < UINT32_MAX)
                e->count++;
            count = e->count;
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return count;
}
