/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for custos-mockllm's generation logic (src/mockllm/gen.c, compiled in directly):
 * determinism, token counts, max_tokens, SSE chunk sequence, embeddings, fault specs, key table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/mockllm/gen.c"
#include "../../src/mockllm/judge.c" /* gen.c calls its custos_mock_judge */

#include <openssl/evp.h>

static const custos_mock_ident_t ID = {7, 1700000000, NULL};

typedef struct fx {
    custos_arena_t arena;
    custos_buf_t out;
    custos_mock_opts_t opts;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    custos_arena_init(&f->arena);
    custos_buf_init(&f->out, 1 << 24);
    custos_mock_opts_default(&f->opts);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    custos_arena_dispose(&f->arena);
    custos_buf_dispose(&f->out);
    free(f);
    return 0;
}

static void parse_ok(fx_t *f, custos_mock_kind_t kind, const char *body, const char *override, custos_mock_req_t *r)
{
    const char *param = "x", *msg = "x";
    int rc = custos_mock_req_parse(kind, body, strlen(body), override, &f->arena, r, &param, &msg);
    if (rc)
        fail_msg("parse failed: %s", msg);
    assert_null(msg);
    assert_null(param);
}

static int parse_err(fx_t *f, custos_mock_kind_t kind, const char *body, const char **param)
{
    custos_mock_req_t r;
    const char *msg = NULL;
    int rc = custos_mock_req_parse(kind, body, strlen(body), NULL, &f->arena, &r, param, &msg);
    assert_non_null(msg);
    return rc;
}

static json_object *parse_json(const char *s, size_t n)
{
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, s, (int)n);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), n);
    json_tokener_free(tok);
    assert_non_null(o);
    return o;
}

static json_object *path(json_object *o, const char *k)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("missing key %s", k);
    return v;
}

static size_t count_words(const char *s)
{
    size_t n = 0;
    bool in = false;
    for (; *s; s++) {
        if (*s == ' ') {
            in = false;
        } else if (!in) {
            in = true;
            n++;
        }
    }
    return n;
}

#define CHAT2                                                                                                          \
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"be "                                       \
    "brief\"},{\"role\":\"user\",\"content\":\"CANARY-7f3a secret words here\"}]}"

static void test_chat_shape_and_determinism(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    parse_ok(f, CUSTOS_MOCK_CHAT, CHAT2, NULL, &r);
    assert_int_equal(r.n_messages, 2);
    assert_int_equal(r.content_bytes, 8 + 29);
    assert_int_equal(custos_mock_prompt_tokens(&r), (8 + 29) / 4 + 6);
    assert_false(r.stream);
    assert_string_equal(r.model, "gpt-4o");

    assert_int_equal(custos_mock_chat_json(&f->out, &r, &f->opts, &ID), 0);
    char *first = strdup(custos_buf_peek(&f->out));
    assert_null(strstr(first, "CANARY"));
    assert_null(strstr(first, "secret"));

    json_object *o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    assert_string_equal(json_object_get_string(path(o, "id")), "chatcmpl-mock-7");
    assert_string_equal(json_object_get_string(path(o, "object")), "chat.completion");
    assert_int_equal(json_object_get_int64(path(o, "created")), 1700000000);
    assert_string_equal(json_object_get_string(path(o, "model")), "gpt-4o");
    assert_string_equal(json_object_get_string(path(o, "system_fingerprint")), "custos-mockllm");
    json_object *ch = json_object_array_get_idx(path(o, "choices"), 0);
    assert_int_equal(json_object_get_int(path(ch, "index")), 0);
    assert_true(json_object_is_type(path(ch, "logprobs"), json_type_null));
    assert_string_equal(json_object_get_string(path(ch, "finish_reason")), "stop");
    json_object *msg = path(ch, "message");
    assert_string_equal(json_object_get_string(path(msg, "role")), "assistant");
    const char *content = json_object_get_string(path(msg, "content"));
    assert_true(strncmp(content, "This is a mock reply to 2 messages. ", 36) == 0);
    assert_int_equal(count_words(content), CUSTOS_MOCK_DEFAULT_WORDS);
    json_object *u = path(o, "usage");
    assert_int_equal(json_object_get_int(path(u, "prompt_tokens")), (8 + 29) / 4 + 6);
    assert_int_equal(json_object_get_int(path(u, "completion_tokens")), 16);
    assert_int_equal(json_object_get_int(path(u, "total_tokens")), (8 + 29) / 4 + 6 + 16);
    json_object_put(o);

    /* Same request, fresh parse: byte-identical body. */
    custos_buf_reset(&f->out);
    parse_ok(f, CUSTOS_MOCK_CHAT, CHAT2, NULL, &r);
    assert_int_equal(custos_mock_chat_json(&f->out, &r, &f->opts, &ID), 0);
    assert_string_equal(custos_buf_peek(&f->out), first);
    free(first);

    /* One message: singular, and the natural length follows opts. */
    custos_buf_reset(&f->out);
    f->opts.reply_words = 40;
    parse_ok(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", NULL, &r);
    assert_int_equal(custos_mock_chat_json(&f->out, &r, &f->opts, &ID), 0);
    o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    ch = json_object_array_get_idx(path(o, "choices"), 0);
    content = json_object_get_string(path(path(ch, "message"), "content"));
    assert_true(strncmp(content, "This is a mock reply to 1 message. ", 35) == 0);
    assert_int_equal(count_words(content), 40);
    json_object_put(o);
}

static void test_content_parts_and_model_override(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    parse_ok(f, CUSTOS_MOCK_CHAT,
             "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"abcd\"},"
             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},{\"type\":\"text\",\"text\":\"efgh\"}]},"
             "{\"role\":\"assistant\",\"content\":null}]}",
             "my-deploy\"x", &r);
    assert_int_equal(r.content_bytes, 8);
    assert_int_equal(r.n_messages, 2);
    assert_int_equal(custos_mock_prompt_tokens(&r), 2 + 6);
    assert_string_equal(r.model, "my-deploy\"x");
    assert_int_equal(custos_mock_chat_json(&f->out, &r, &f->opts, &ID), 0);
    json_object *o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    assert_string_equal(json_object_get_string(path(o, "model")), "my-deploy\"x");
    json_object_put(o);
}

static void test_max_tokens(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    bool trunc;
    parse_ok(f, CUSTOS_MOCK_CHAT,
             "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", NULL, &r);
    assert_int_equal(custos_mock_reply_len(&r, &f->opts, &trunc), 5);
    assert_true(trunc);
    assert_int_equal(custos_mock_chat_json(&f->out, &r, &f->opts, &ID), 0);
    json_object *o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    json_object *ch = json_object_array_get_idx(path(o, "choices"), 0);
    assert_string_equal(json_object_get_string(path(ch, "finish_reason")), "length");
    assert_string_equal(json_object_get_string(path(path(ch, "message"), "content")), "This is a mock reply");
    assert_int_equal(json_object_get_int(path(path(o, "usage"), "completion_tokens")), 5);
    json_object_put(o);

    /* max_completion_tokens above the natural length: no truncation. */
    parse_ok(f, CUSTOS_MOCK_CHAT,
             "{\"model\":\"m\",\"max_completion_tokens\":500,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
             NULL, &r);
    assert_int_equal(r.max_tokens, 500);
    assert_int_equal(custos_mock_reply_len(&r, &f->opts, &trunc), 16);
    assert_false(trunc);
    /* Exactly the natural length is not a cut. */
    parse_ok(f, CUSTOS_MOCK_CHAT,
             "{\"model\":\"m\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", NULL, &r);
    assert_int_equal(custos_mock_reply_len(&r, &f->opts, &trunc), 16);
    assert_false(trunc);

    const char *param = NULL;
    assert_int_equal(
        parse_err(f, CUSTOS_MOCK_CHAT,
                  "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}", &param),
        CUSTOS_EINVAL);
    assert_string_equal(param, "max_tokens");
    assert_int_equal(
        parse_err(f, CUSTOS_MOCK_CHAT,
                  "{\"model\":\"m\",\"max_tokens\":\"9\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
                  &param),
        CUSTOS_EINVAL);
}

static void test_parse_errors(void **state)
{
    fx_t *f = *state;
    const char *param = NULL;
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\"}", &param), CUSTOS_EINVAL);
    assert_string_equal(param, "messages");
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"messages\":[]}", &param), CUSTOS_EINVAL);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", &param),
                     CUSTOS_EINVAL);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &param),
                     CUSTOS_EINVAL);
    assert_string_equal(param, "model");
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "{\"model\":", &param), CUSTOS_EINVAL);
    assert_null(param);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"u\"}]} x", &param),
                     CUSTOS_EINVAL);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "[1,2]", &param), CUSTOS_EINVAL);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, "", &param), CUSTOS_EINVAL);
    assert_int_equal(
        parse_err(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"stream\":\"yes\",\"messages\":[{\"role\":\"u\"}]}", &param),
        CUSTOS_EINVAL);
    assert_string_equal(param, "stream");
    assert_int_equal(parse_err(f, CUSTOS_MOCK_COMPLETION, "{\"model\":\"m\"}", &param), CUSTOS_EINVAL);
    assert_string_equal(param, "prompt");
    assert_int_equal(parse_err(f, CUSTOS_MOCK_COMPLETION, "{\"model\":\"m\",\"prompt\":[{}]}", &param), CUSTOS_EINVAL);
    /* Deep nesting is refused by the depth-limited tokener, not the stack. */
    char deep[400];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = 0;
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, deep, &param), CUSTOS_EINVAL);
    /* Overlong model. */
    char big[600];
    snprintf(big, sizeof(big), "{\"model\":\"%0300d\",\"messages\":[{\"role\":\"u\"}]}", 1);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_CHAT, big, &param), CUSTOS_EINVAL);
    assert_string_equal(param, "model");
}

static void test_completion(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    parse_ok(f, CUSTOS_MOCK_COMPLETION, "{\"model\":\"davinci\",\"prompt\":[\"abcd\",\"efghijkl\"],\"max_tokens\":9}",
             NULL, &r);
    assert_int_equal(r.n_messages, 2);
    assert_int_equal(custos_mock_prompt_tokens(&r), 3 + 6);
    assert_int_equal(custos_mock_completion_json(&f->out, &r, &f->opts, &ID), 0);
    json_object *o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    assert_string_equal(json_object_get_string(path(o, "id")), "cmpl-mock-7");
    assert_string_equal(json_object_get_string(path(o, "object")), "text_completion");
    json_object *ch = json_object_array_get_idx(path(o, "choices"), 0);
    const char *text = json_object_get_string(path(ch, "text"));
    assert_true(strncmp(text, "This is a mock completion for 2 prompts. ", 41) == 0);
    assert_int_equal(count_words(text), 9);
    assert_string_equal(json_object_get_string(path(ch, "finish_reason")), "length");
    json_object_put(o);

    parse_ok(f, CUSTOS_MOCK_COMPLETION, "{\"model\":\"d\",\"prompt\":[1,2,3,4,5]}", NULL, &r);
    assert_int_equal(r.n_messages, 1);
    assert_int_equal(custos_mock_prompt_tokens(&r), 5 + 3);
}

/* Collects the "data: " payloads of a whole stream. */
static size_t collect(custos_mock_stream_t *s, custos_buf_t *all, char **events, size_t max)
{
    size_t n = 0;
    for (;;) {
        size_t before = custos_buf_size(all);
        int rc = custos_mock_stream_next(s, all);
        assert_true(rc >= 0);
        if (rc == 0)
            break;
        assert_true(n < max);
        const char *ev = custos_buf_peek(all) + before;
        size_t len = custos_buf_size(all) - before;
        assert_true(len > 8);
        assert_memory_equal(ev, "data: ", 6);
        assert_memory_equal(ev + len - 2, "\n\n", 2);
        assert_null(memchr(ev, '\n', len - 2)); /* one line per event */
        events[n++] = strndup(ev + 6, len - 8);
    }
    assert_true(custos_mock_stream_done(s));
    assert_int_equal(custos_mock_stream_next(s, all), 0);
    return n;
}

static void test_stream_chat_sequence(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    parse_ok(f, CUSTOS_MOCK_CHAT,
             "{\"model\":\"m\",\"stream\":true,\"max_tokens\":7,\"stream_options\":{\"include_usage\":true},"
             "\"messages\":[{\"role\":\"user\",\"content\":\"abcdefgh\"}]}",
             NULL, &r);
    assert_true(r.stream);
    assert_true(r.include_usage);
    f->opts.chunk_words = 3;
    custos_mock_ident_t id = {3, 1700000001, "\"mock_path\":\"/v1/chat/completions\""};
    custos_mock_stream_t s;
    custos_mock_stream_init(&s, &r, &f->opts, &id);
    char *ev[32];
    size_t n = collect(&s, &f->out, ev, 32);
    /* role + ceil(7/3)=3 content + finish + usage + [DONE] */
    assert_int_equal(n, 7);
    assert_string_equal(ev[6], "[DONE]");

    custos_buf_t content;
    custos_buf_init(&content, 0);
    for (size_t i = 0; i < 6; i++) {
        json_object *o = parse_json(ev[i], strlen(ev[i]));
        assert_string_equal(json_object_get_string(path(o, "id")), "chatcmpl-mock-3");
        assert_string_equal(json_object_get_string(path(o, "object")), "chat.completion.chunk");
        assert_string_equal(json_object_get_string(path(o, "system_fingerprint")), "custos-mockllm");
        json_object *extra = NULL;
        assert_int_equal(json_object_object_get_ex(o, "mock_path", &extra), i == 0);
        json_object *choices = path(o, "choices");
        if (i == 5) { /* usage chunk */
            assert_int_equal(json_object_array_length(choices), 0);
            json_object *u = path(o, "usage");
            assert_int_equal(json_object_get_int(path(u, "prompt_tokens")), 2 + 3);
            assert_int_equal(json_object_get_int(path(u, "completion_tokens")), 7);
            assert_int_equal(json_object_get_int(path(u, "total_tokens")), 12);
        } else {
            assert_true(json_object_is_type(path(o, "usage"), json_type_null));
            json_object *c = json_object_array_get_idx(choices, 0);
            json_object *delta = path(c, "delta");
            json_object *fr = path(c, "finish_reason");
            if (i == 0) {
                assert_string_equal(json_object_get_string(path(delta, "role")), "assistant");
                assert_string_equal(json_object_get_string(path(delta, "content")), "");
                assert_true(json_object_is_type(fr, json_type_null));
            } else if (i == 4) {
                assert_int_equal(json_object_object_length(delta), 0);
                assert_string_equal(json_object_get_string(fr), "length");
            } else {
                assert_true(json_object_is_type(fr, json_type_null));
                assert_int_equal(custos_buf_append_str(&content, json_object_get_string(path(delta, "content"))), 0);
            }
        }
        json_object_put(o);
    }
    /* Concatenated deltas equal the non-streamed content. */
    custos_buf_t whole;
    custos_buf_init(&whole, 0);
    assert_int_equal(custos_mock_append_words(&whole, &r, 0, 7), 0);
    assert_string_equal(custos_buf_peek(&content), custos_buf_peek(&whole));
    assert_string_equal(custos_buf_peek(&whole), "This is a mock reply to 1");
    custos_buf_dispose(&content);
    custos_buf_dispose(&whole);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);

    /* Without include_usage: no usage key anywhere, finish "stop". */
    custos_buf_reset(&f->out);
    f->opts.chunk_words = 1;
    parse_ok(f, CUSTOS_MOCK_CHAT,
             "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL, &r);
    custos_mock_stream_init(&s, &r, &f->opts, &ID);
    n = collect(&s, &f->out, ev, 32);
    assert_int_equal(n, 1 + 16 + 1 + 1);
    assert_null(strstr(custos_buf_peek(&f->out), "usage"));
    assert_non_null(strstr(ev[17], "\"finish_reason\":\"stop\""));
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
}

static void test_stream_completion_and_at_content(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    parse_ok(f, CUSTOS_MOCK_COMPLETION, "{\"model\":\"m\",\"stream\":true,\"prompt\":\"p\",\"max_tokens\":2}", NULL,
             &r);
    custos_mock_stream_t s;
    custos_mock_stream_init(&s, &r, &f->opts, &ID);
    assert_true(custos_mock_stream_at_content(&s)); /* no role chunk for completions */
    char *ev[8];
    size_t n = collect(&s, &f->out, ev, 8);
    assert_int_equal(n, 2 + 1 + 1);
    json_object *o = parse_json(ev[0], strlen(ev[0]));
    assert_string_equal(json_object_get_string(path(o, "object")), "text_completion");
    assert_string_equal(json_object_get_string(path(json_object_array_get_idx(path(o, "choices"), 0), "text")), "This");
    json_object_put(o);
    o = parse_json(ev[2], strlen(ev[2]));
    assert_string_equal(json_object_get_string(path(json_object_array_get_idx(path(o, "choices"), 0), "finish_reason")),
                        "length");
    json_object_put(o);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);

    /* Chat: the role chunk is not content; the next one is. */
    parse_ok(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL, &r);
    custos_mock_stream_init(&s, &r, &f->opts, &ID);
    assert_false(custos_mock_stream_at_content(&s));
    assert_int_equal(custos_mock_stream_next(&s, &f->out), 1);
    assert_true(custos_mock_stream_at_content(&s));
}

static void b64_floats(const char *b64, float *out, size_t dims)
{
    size_t n = strlen(b64);
    unsigned char raw[4 * 64 + 4];
    assert_true(n % 4 == 0 && n / 4 * 3 <= sizeof(raw));
    int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
    assert_true(got >= (int)(dims * 4));
    for (size_t i = 0; i < dims; i++) {
        uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
                     (uint32_t)raw[4 * i + 3] << 24;
        memcpy(&out[i], &u, 4);
    }
}

static void test_embeddings(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    parse_ok(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"te3\",\"input\":\"hello world!\"}", NULL, &r);
    assert_int_equal(r.dimensions, 8);
    assert_int_equal(r.n_inputs, 1);
    assert_int_equal(custos_mock_embeddings_json(&f->out, &r, &ID), 0);
    assert_null(strstr(custos_buf_peek(&f->out), "hello"));
    json_object *o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    assert_string_equal(json_object_get_string(path(o, "object")), "list");
    assert_string_equal(json_object_get_string(path(o, "model")), "te3");
    assert_int_equal(json_object_get_int(path(path(o, "usage"), "prompt_tokens")), 12 / 4 + 1);
    assert_int_equal(json_object_get_int(path(path(o, "usage"), "total_tokens")), 12 / 4 + 1);
    json_object *d0 = json_object_array_get_idx(path(o, "data"), 0);
    assert_string_equal(json_object_get_string(path(d0, "object")), "embedding");
    json_object *vec = path(d0, "embedding");
    assert_int_equal(json_object_array_length(vec), 8);
    float ref[8];
    custos_mock_embedding(custos_mock_hash("hello world!", 12, 0), 8, ref);
    double norm = 0;
    for (size_t i = 0; i < 8; i++) {
        double v = json_object_get_double(json_object_array_get_idx(vec, i));
        assert_true(fabs(v - ref[i]) < 1e-6);
        norm += v * v;
    }
    assert_true(fabs(norm - 1.0) < 1e-5);
    json_object_put(o);

    /* Array input, custom dimensions, base64: the same floats, little-endian float32. */
    custos_buf_reset(&f->out);
    parse_ok(f, CUSTOS_MOCK_EMBEDDINGS,
             "{\"model\":\"te3\",\"input\":[\"a\",\"hello world!\",[1,2,3]],\"dimensions\":5,\"encoding_format\":"
             "\"base64\"}",
             NULL, &r);
    assert_int_equal(r.n_inputs, 3);
    assert_int_equal(r.input_tokens, 1 + 4 + 3);
    assert_true(r.base64);
    assert_int_equal(custos_mock_embeddings_json(&f->out, &r, &ID), 0);
    o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    json_object *data = path(o, "data");
    assert_int_equal(json_object_array_length(data), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(json_object_get_int(path(json_object_array_get_idx(data, i), "index")), (int)i);
    const char *b64 = json_object_get_string(path(json_object_array_get_idx(data, 1), "embedding"));
    assert_int_equal(strlen(b64), 28); /* 20 bytes */
    float got[5], ref5[5];
    b64_floats(b64, got, 5);
    custos_mock_embedding(custos_mock_hash("hello world!", 12, 0), 5, ref5);
    assert_memory_equal(got, ref5, sizeof(ref5));
    json_object_put(o);

    /* Deterministic across calls; different inputs differ. */
    float a1[8], a2[8], b1[8];
    custos_mock_embedding(42, 8, a1);
    custos_mock_embedding(42, 8, a2);
    custos_mock_embedding(43, 8, b1);
    assert_memory_equal(a1, a2, sizeof(a1));
    assert_memory_not_equal(a1, b1, sizeof(a1));

    const char *param = NULL;
    assert_int_equal(parse_err(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"x\",\"dimensions\":0}", &param),
                     CUSTOS_EINVAL);
    assert_string_equal(param, "dimensions");
    assert_int_equal(
        parse_err(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"x\",\"dimensions\":5000}", &param),
        CUSTOS_EINVAL);
    assert_int_equal(
        parse_err(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"x\",\"encoding_format\":\"hex\"}", &param),
        CUSTOS_EINVAL);
    assert_string_equal(param, "encoding_format");
    assert_int_equal(parse_err(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"e\",\"input\":[]}", &param), CUSTOS_EINVAL);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"e\",\"input\":[\"a\",{}]}", &param),
                     CUSTOS_EINVAL);
    assert_int_equal(parse_err(f, CUSTOS_MOCK_EMBEDDINGS, "{\"model\":\"e\"}", &param), CUSTOS_EINVAL);
    assert_string_equal(param, "input");
}

static void test_base64_and_escape(void **state)
{
    fx_t *f = *state;
    static const struct {
        const char *in, *out;
    } cases[] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        custos_buf_reset(&f->out);
        assert_int_equal(custos_mock_base64(&f->out, cases[i].in, strlen(cases[i].in)), 0);
        assert_string_equal(custos_buf_peek(&f->out), cases[i].out);
    }
    custos_buf_reset(&f->out);
    assert_int_equal(custos_mock_json_escape(&f->out, "a\"b\\c\n\x01z", 8), 0);
    assert_string_equal(custos_buf_peek(&f->out), "a\\\"b\\\\c\\n\\u0001z");

    custos_buf_reset(&f->out);
    assert_int_equal(custos_mock_models_json(&f->out, 5, "\"mock_path\":\"/v1/models\""), 0);
    json_object *o = parse_json(custos_buf_peek(&f->out), custos_buf_size(&f->out));
    assert_true(json_object_array_length(path(o, "data")) >= 1);
    assert_string_equal(json_object_get_string(path(o, "mock_path")), "/v1/models");
    json_object_put(o);
}

static int fault(const char *spec, custos_mock_fault_t *f)
{
    return custos_mock_fault_parse(spec, strlen(spec), f);
}

static void test_fault_parse(void **state)
{
    (void)state;
    custos_mock_fault_t f;
    assert_int_equal(fault("", &f), 0);
    assert_false(custos_mock_fault_any(&f));
    assert_int_equal(f.retry_after_s, 1);
    assert_int_equal(f.reset_mid_stream, -1);

    assert_int_equal(fault("status=429;retry_after=2", &f), 0);
    assert_int_equal(f.status, 429);
    assert_int_equal(f.retry_after_s, 2);
    assert_true(custos_mock_fault_any(&f));

    assert_int_equal(fault(" latency=250 ; drip=10;reset_mid_stream=0; malformed_json ;", &f), 0);
    assert_int_equal(f.latency_ms, 250);
    assert_int_equal(f.drip_ms, 10);
    assert_int_equal(f.reset_mid_stream, 0);
    assert_true(f.malformed_json);
    assert_false(f.reset);
    assert_int_equal(f.status, 0);

    assert_int_equal(fault("reset", &f), 0);
    assert_true(f.reset);

    assert_int_equal(fault("fail_first=3", &f), 0);
    assert_int_equal(f.fail_first, 3);
    assert_int_equal(f.status, 503); /* default failure */
    assert_int_equal(fault("fail_first=2;status=500", &f), 0);
    assert_int_equal(f.status, 500);
    assert_int_equal(fault("fail_first=2;reset", &f), 0);
    assert_int_equal(f.status, 0);
    assert_true(f.reset);

    static const char *const bad[] = {
        "bogus",
        "bogus=1",
        "status=200",
        "status=600",
        "status=",
        "status=4x9",
        "latency=-1",
        "latency=1e3",
        "reset=1",
        "malformed_json=yes",
        "drip",
        "fail_first=0",
        "latency=600001",
        "retry_after=86401",
        "status=429;nope",
        "=5",
        "status=99999999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f.status = 77;
        if (fault(bad[i], &f) != CUSTOS_EINVAL)
            fail_msg("accepted bad spec '%s'", bad[i]);
        assert_int_equal(f.status, 0); /* cleared on error */
    }
    char longspec[600];
    memset(longspec, ' ', sizeof(longspec) - 1);
    longspec[sizeof(longspec) - 1] = 0;
    assert_int_equal(fault(longspec, &f), CUSTOS_EINVAL);
    /* Not NUL-terminated: only len bytes count. */
    assert_int_equal(custos_mock_fault_parse("status=500xyz", 10, &f), 0);
    assert_int_equal(f.status, 500);
}

static void test_keytab(void **state)
{
    (void)state;
    custos_mock_keytab_t t;
    assert_int_equal(custos_mock_keytab_init(&t, 16), 0);
    assert_int_equal(custos_mock_keytab_bump(&t, "a", 1), 1);
    assert_int_equal(custos_mock_keytab_bump(&t, "a", 1), 2);
    assert_int_equal(custos_mock_keytab_bump(&t, "b", 1), 1);
    assert_int_equal(custos_mock_keytab_bump(&t, "", 0), 1);
    assert_int_equal(custos_mock_keytab_bump(&t, "a", 1), 3);
    /* Keys longer than 128 bytes compare on their first 128. */
    char k1[200], k2[200];
    memset(k1, 'k', sizeof(k1));
    memcpy(k2, k1, sizeof(k2));
    k2[150] = 'z';
    assert_int_equal(custos_mock_keytab_bump(&t, k1, sizeof(k1)), 1);
    assert_int_equal(custos_mock_keytab_bump(&t, k2, sizeof(k2)), 2);
    custos_mock_keytab_clear(&t);
    assert_int_equal(custos_mock_keytab_bump(&t, "a", 1), 1);
    /* Bounded: many distinct keys never fail, the table empties itself. */
    for (int i = 0; i < 1000; i++) {
        char k[16];
        int n = snprintf(k, sizeof(k), "key%d", i);
        assert_int_equal(custos_mock_keytab_bump(&t, k, (size_t)n), 1);
    }
    assert_true(t.n <= t.cap);
    custos_mock_keytab_dispose(&t);
}

/* judge.c: custos' groundedness prompt gets a rule-based verdict (numbers missing from the sources); other chats not */
static void test_judge(void **state)
{
    fx_t *f = *state;
    custos_mock_req_t r;
    static const char J[] =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"CUSTOS-GROUNDEDNESS-JUDGE v1\\nJudge.\"},"
        "{\"role\":\"user\",\"content\":\"DOMAIN: Generic\\nTASK: Summarization\\nSOURCES:\\n<<<SOURCE 1>>>\\nIt is "
        "330 "
        "m tall, from 1889.\\n<<<END SOURCE 1>>>\\nANSWER:\\n<<<ANSWER>>>\\nIt is 450 m tall. It dates from 1889. "
        "Source 1 says so.\\n<<<END ANSWER>>>\\n\"}]}";
    parse_ok(f, CUSTOS_MOCK_CHAT, J, NULL, &r);
    assert_int_equal(r.n_script, 1);
    /* "1" appears only in the <<<SOURCE 1>>> markers, which are not source text */
    assert_string_equal(r.script[0], "{\"ungrounded\": [{\"text\": \"It is 450 m tall.\", \"reason\": \"The sources do "
                                     "not mention 450.\"}, {\"text\": \"Source 1 says so.\", \"reason\": \"The sources "
                                     "do not mention 1.\"}]}");
    /* an ordinary chat: no script */
    parse_ok(f, CUSTOS_MOCK_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"It is 450 m.\"}]}",
             NULL, &r);
    assert_int_equal(r.n_script, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat_shape_and_determinism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_parts_and_model_override, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_chat_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_completion_and_at_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embeddings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_base64_and_escape, setup, teardown),
        cmocka_unit_test(test_fault_parse),
        cmocka_unit_test_setup_teardown(test_judge, setup, teardown),
        cmocka_unit_test(test_keytab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
