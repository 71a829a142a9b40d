/* SPDX-License-Identifier: Apache-2.0
 * custos-mockllm generation logic: request field extraction, deterministic OpenAI-shaped bodies
 * (chat, completions, embeddings, models, SSE chunks), fault specs and the fail_first key table.
 * Everything here is pure (no I/O) so it can be unit-tested without the HTTP server. */
#ifndef CUSTOS_MOCKLLM_GEN_H
#define CUSTOS_MOCKLLM_GEN_H

#include "util/arena.h"
#include "util/buf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUSTOS_MOCK_DEFAULT_WORDS 16   /* natural reply length in words ("tokens") */
#define CUSTOS_MOCK_MAX_WORDS 10000000 /* cap on --reply-words / x-mock-reply-words */
#define CUSTOS_MOCK_DEFAULT_DIMS 8     /* embedding dimension when `dimensions` is absent */
#define CUSTOS_MOCK_MAX_DIMS 4096      /* `dimensions` above this -> 400 */
#define CUSTOS_MOCK_MAX_INPUTS 2048    /* embedding inputs per request (OpenAI's limit) */
#define CUSTOS_MOCK_MAX_FLOATS 1048576 /* inputs x dimensions per request */
#define CUSTOS_MOCK_MAX_MODEL 256      /* model / deployment name bytes */
#define CUSTOS_MOCK_FINGERPRINT "custos-mockllm"
#define CUSTOS_MOCK_MAX_SCRIPT 16          /* choices a scripted reply may have */
#define CUSTOS_MOCK_MAX_SCRIPT_BYTES 65536 /* bytes per scripted reply */

typedef enum {
    CUSTOS_MOCK_CHAT = 0,   /* chat.completion */
    CUSTOS_MOCK_COMPLETION, /* text_completion */
    CUSTOS_MOCK_EMBEDDINGS, /* embeddings list */
} custos_mock_kind_t;

/* The few request fields the mock needs. Strings and arrays live in the arena given to the parser. */
typedef struct custos_mock_req {
    custos_mock_kind_t kind;
    const char *model; /* NUL-terminated, JSON-unescaped; never NULL after a successful parse */
    size_t model_len;
    bool stream;
    bool include_usage;   /* stream_options.include_usage */
    int64_t max_tokens;   /* max_tokens or max_completion_tokens; 0 when absent */
    size_t n_messages;    /* chat: messages; completions: prompts */
    size_t content_bytes; /* bytes of all message/prompt text */
    uint64_t seed;        /* hash of the content: picks filler words, never echoed */
    /* embeddings */
    size_t n_inputs;
    uint64_t *input_hash; /* n_inputs hashes (arena) */
    size_t input_tokens;  /* rough token count of all inputs */
    uint32_t dimensions;
    bool base64;
    /* Scripted reply (tests of what custos does with a given completion): the request's top-level "mock_reply",
     * a string or an array of strings (one choice each). The text is the reply; streamed in pieces of
     * chunk_words words, the choices interleaved. NULL/0 = the generated words. The single string "__echo__"
     * replies with the last user message's text (chat) or the first prompt (completions). */
    const char **script;
    size_t *script_len;
    size_t n_script;
} custos_mock_req_t;

/* Reply shaping shared by every request of a server. */
typedef struct custos_mock_opts {
    uint32_t reply_words; /* natural reply length [16]; max_tokens below it truncates ("length") */
    uint32_t chunk_words; /* words per streamed content chunk [1] */
} custos_mock_opts_t;

/* Identity of one response. extra_json, when not NULL, is raw JSON members (no leading comma, e.g.
 * "\"mock_path\":\"/v1\"") appended at the top level of the body (or of the first stream chunk). */
typedef struct custos_mock_ident {
    uint64_t seq;    /* -> "chatcmpl-mock-<seq>" / "cmpl-mock-<seq>" */
    int64_t created; /* unix seconds */
    const char *extra_json;
} custos_mock_ident_t;

void custos_mock_opts_default(custos_mock_opts_t *o);

/* Parses body (JSON object) for kind. model_override (e.g. the Azure deployment), when not NULL, replaces
 * the body's model and makes it optional. On error returns CUSTOS_EINVAL and sets *err_msg (static,
 * OpenAI-style message, never quoting the body) and *err_param (static or NULL). Allocates from arena. */
int custos_mock_req_parse(custos_mock_kind_t kind, const char *body, size_t len, const char *model_override,
                          custos_arena_t *arena, custos_mock_req_t *out, const char **err_param, const char **err_msg);

/* Rough deterministic prompt token count: content_bytes/4 + 3 per message (chat, completions) or
 * the embedding input count. */
size_t custos_mock_prompt_tokens(const custos_mock_req_t *r);
/* Words in the reply: min(max_tokens, natural); *truncated set when max_tokens cut it. */
size_t custos_mock_reply_len(const custos_mock_req_t *r, const custos_mock_opts_t *o, bool *truncated);
/* Appends reply words [from, to) (a space before every word but word 0). Words need no JSON escaping. */
int custos_mock_append_words(custos_buf_t *out, const custos_mock_req_t *r, size_t from, size_t to);

/* Whole non-streamed bodies (chat.completion, text_completion, embeddings list, models list). */
int custos_mock_chat_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                          const custos_mock_ident_t *id);
int custos_mock_completion_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                                const custos_mock_ident_t *id);
int custos_mock_embeddings_json(custos_buf_t *out, const custos_mock_req_t *r, const custos_mock_ident_t *id);
int custos_mock_models_json(custos_buf_t *out, int64_t created, const char *extra_json);

/* Deterministic unit-length embedding for an input hash. */
void custos_mock_embedding(uint64_t input_hash, uint32_t dims, float *vec);

/* SSE stream producer. Caller-owned; r, o and the ident's extra_json must outlive it. */
typedef struct custos_mock_stream {
    const custos_mock_req_t *req;
    custos_mock_opts_t opts;
    custos_mock_ident_t ident;
    size_t total_words;
    size_t word;
    bool truncated;
    int phase;
    size_t events;                             /* events produced so far */
    size_t script_pos[CUSTOS_MOCK_MAX_SCRIPT]; /* scripted: bytes of each choice sent */
    size_t script_choice;                      /* scripted: choice of the next event in the current phase */
} custos_mock_stream_t;

void custos_mock_stream_init(custos_mock_stream_t *s, const custos_mock_req_t *r, const custos_mock_opts_t *o,
                             const custos_mock_ident_t *id);
/* Appends the next complete SSE event ("data: ...\n\n") to out. Returns 1 when one was appended, 0 when
 * the stream is complete (after "data: [DONE]"), or a negative error code. */
int custos_mock_stream_next(custos_mock_stream_t *s, custos_buf_t *out);
/* True when the next event is a content event (used to corrupt exactly one for malformed_json). */
bool custos_mock_stream_at_content(const custos_mock_stream_t *s);
/* True once "data: [DONE]" has been produced. */
bool custos_mock_stream_done(const custos_mock_stream_t *s);

/* Fault injection spec, "k=v;flag;..." (see parse). */
typedef struct custos_mock_fault {
    uint32_t latency_ms;      /* delay before responding */
    int status;               /* 0, or 400..599 error status */
    uint32_t retry_after_s;   /* 429 retry-after [1] */
    bool reset;               /* abort before responding */
    int64_t reset_mid_stream; /* -1, or events written before aborting */
    bool malformed_json;      /* 200 with truncated JSON */
    uint32_t drip_ms;         /* per-chunk delay (stream) / delay (non-stream) */
    uint32_t fail_first;      /* 0, or apply the fault to only the first N requests per x-mock-key */
} custos_mock_fault_t;

void custos_mock_fault_clear(custos_mock_fault_t *f);
/* True when f asks for anything. */
bool custos_mock_fault_any(const custos_mock_fault_t *f);
/* Parses spec: ';'-separated items latency=MS, status=N (400..599), retry_after=S, reset,
 * reset_mid_stream=K, malformed_json, drip=MS, fail_first=N (status defaults to 503 when it is the only
 * failure). Whitespace around items is ignored. Returns 0 or CUSTOS_EINVAL (unknown item, bad number,
 * out of range, longer than 512 bytes); f is cleared first. */
int custos_mock_fault_parse(const char *spec, size_t len, custos_mock_fault_t *f);

/* Thread-safe counter table keyed by x-mock-key values (fail_first). Bounded: when full it is emptied. */
typedef struct custos_mock_keytab {
    pthread_mutex_t mu;
    struct custos_mock_keyent *ents;
    size_t cap, n;
} custos_mock_keytab_t;

int custos_mock_keytab_init(custos_mock_keytab_t *t, size_t cap);
void custos_mock_keytab_dispose(custos_mock_keytab_t *t);
/* Increments the counter for key (at most 128 bytes are significant) and returns the new count (1 on the
 * first call). Never allocates. */
uint32_t custos_mock_keytab_bump(custos_mock_keytab_t *t, const char *key, size_t len);
void custos_mock_keytab_clear(custos_mock_keytab_t *t);

/* Helpers. */
uint64_t custos_mock_hash(const void *p, size_t n, uint64_t h);
int custos_mock_json_escape(custos_buf_t *out, const char *s, size_t n);
int custos_mock_base64(custos_buf_t *out, const void *p, size_t n);

/* Groundedness judge (judge.c): when root is custos' reasoning prompt (models/prompts/groundedness-reasoning.txt)
 * and no mock_reply is set, scripts r's reply with a deterministic verdict. Returns 0 (also when not a judge prompt)
 * or CUSTOS_ENOMEM. */
struct json_object;
int custos_mock_judge(struct json_object *root, custos_arena_t *arena, custos_mock_req_t *r);

#endif
