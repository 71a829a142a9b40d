/* SPDX-License-Identifier: Apache-2.0
 * custos-mockllm as a groundedness judge (gen.h custos_mock_judge): answers custos' reasoning prompt
 * (models/prompts/groundedness-reasoning.txt, recognised by its first-line marker in the system message) with a
 * deterministic verdict, so tests can assert what custos does with a judge's answer. Not a real judge.
 *
 * Rule: a sentence of the ANSWER that contains a number (a run of digits, with inner '.' or ',') that does not appear
 * in the SOURCES (the <<<...>>> marker lines are not source text) is ungrounded, with the reason "The sources do not
 * mention <number>." Test hooks in the ANSWER:
 * MOCK_JUDGE_GARBAGE -> a reply that is not JSON; MOCK_JUDGE_BADQUOTE -> a verdict quoting text that is not in the
 * answer; MOCK_JUDGE_FENCED -> the verdict inside a ```json fence. */
#include "mockllm/gen.h"
#include "util/err.h"

#include <json-c/json.h>
#include <string.h>

#define JUDGE_MARKER "CUSTOS-GROUNDEDNESS-JUDGE"

/* The text between open and close in s[0..n), or NULL. */
static const char *between(const char *s, size_t n, const char *open, const char *close, size_t *len)
{
    const char *o = memmem(s, n, open, strlen(open));
    if (!o)
        return NULL;
    o += strlen(open);
    const char *c = memmem(o, (size_t)(s + n - o), close, strlen(close));
    if (!c)
        return NULL;
    *len = (size_t)(c - o);
    return o;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Is number s[0..n) in src[0..sn) as a whole number (not part of a longer one)? Lines starting "<<<" are markers. */
static bool number_in(const char *src, size_t sn, const char *s, size_t n)
{
    for (const char *p = src; (p = memmem(p, (size_t)(src + sn - p), s, n)) != NULL; p++) {
        bool left =
            p == src || (!is_digit(p[-1]) && !(p - src >= 2 && (p[-1] == '.' || p[-1] == ',') && is_digit(p[-2])));
        const char *e = p + n;
        bool right =
            e == src + sn || (!is_digit(*e) && !(e + 1 < src + sn && (*e == '.' || *e == ',') && is_digit(e[1])));
        /* not inside a marker line */
        const char *ls = p;
        while (ls > src && ls[-1] != '\n')
            ls--;
        if (left && right && !(p - ls >= 3 && memcmp(ls, "<<<", 3) == 0))
            return true;
    }
    return false;
}

/* The first number of s[0..n) missing from the sources, or NULL. */
static const char *missing_number(const char *s, size_t n, const char *src, size_t sn, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]) || (i > 0 && is_digit(s[i - 1])))
            continue;
        size_t j = i;
        while (j < n && (is_digit(s[j]) || ((s[j] == '.' || s[j] == ',') && j + 1 < n && is_digit(s[j + 1]))))
            j++;
        if (!number_in(src, sn, s + i, j - i)) {
            *len = j - i;
            return s + i;
        }
        i = j;
    }
    return NULL;
}

static int verdict(custos_buf_t *out, const char *ans, size_t an, const char *src, size_t sn)
{
    int rc = custos_buf_append_lit(out, "{\"ungrounded\": [");
    bool first = true;
    size_t start = 0;
    for (size_t i = 0; rc == 0 && i <= an; i++) {
        bool end = i == an || ((ans[i] == '.' || ans[i] == '!' || ans[i] == '?') &&
                               (i + 1 == an || ans[i + 1] == ' ' || ans[i + 1] == '\n'));
        if (!end)
            continue;
        size_t e = i < an ? i + 1 : an, s = start;
        while (s < e && (ans[s] == ' ' || ans[s] == '\n'))
            s++;
        start = e;
        size_t nl = 0;
        const char *num = s < e ? missing_number(ans + s, e - s, src, sn, &nl) : NULL;
        if (!num)
            continue;
        rc = custos_buf_append_str(out, first ? "{\"text\": \"" : ", {\"text\": \"");
        first = false;
        rc = rc ? rc : custos_mock_json_escape(out, ans + s, e - s);
        rc = rc ? rc : custos_buf_append_lit(out, "\", \"reason\": \"The sources do not mention ");
        rc = rc ? rc : custos_mock_json_escape(out, num, nl);
        rc = rc ? rc : custos_buf_append_lit(out, ".\"}");
    }
    return rc ? rc : custos_buf_append_lit(out, "]}");
}

int custos_mock_judge(json_object *root, custos_arena_t *arena, custos_mock_req_t *r)
{
    json_object *msgs, *sys, *usr, *c;
    if (!json_object_object_get_ex(root, "messages", &msgs) || !json_object_is_type(msgs, json_type_array) ||
        json_object_array_length(msgs) < 2)
        return 0;
    sys = json_object_array_get_idx(msgs, 0);
    usr = json_object_array_get_idx(msgs, json_object_array_length(msgs) - 1);
    if (!sys || !json_object_object_get_ex(sys, "content", &c) || !json_object_is_type(c, json_type_string) ||
        !strstr(json_object_get_string(c), JUDGE_MARKER))
        return 0;
    if (!usr || !json_object_object_get_ex(usr, "content", &c) || !json_object_is_type(c, json_type_string))
        return 0;
    const char *u = json_object_get_string(c);
    size_t un = (size_t)json_object_get_string_len(c), an = 0, sn = 0;
    const char *ans = between(u, un, "<<<ANSWER>>>\n", "\n<<<END ANSWER>>>", &an);
    const char *src = between(u, un, "SOURCES:\n", "ANSWER:\n<<<ANSWER>>>", &sn);
    if (!ans || !src)
        return 0;
    custos_buf_t b;
    custos_buf_init(&b, CUSTOS_MOCK_MAX_SCRIPT_BYTES);
    int rc;
    if (memmem(ans, an, "MOCK_JUDGE_GARBAGE", 18)) {
        rc = custos_buf_append_lit(&b, "Looks grounded to me! The answer seems fine overall.");
    } else if (memmem(ans, an, "MOCK_JUDGE_BADQUOTE", 19)) {
        rc = custos_buf_append_lit(&b, "{\"ungrounded\": [{\"text\": \"A sentence the answer never had.\", "
                                       "\"reason\": \"Made up.\"}]}");
    } else {
        bool fenced = memmem(ans, an, "MOCK_JUDGE_FENCED", 17) != NULL;
        rc = fenced ? custos_buf_append_lit(&b, "```json\n") : 0;
        rc = rc ? rc : verdict(&b, ans, an, src, sn);
        rc = rc ? rc : fenced ? custos_buf_append_lit(&b, "\n```") : 0;
    }
    if (rc == 0) {
        r->script = custos_arena_alloc(arena, sizeof(*r->script));
        r->script_len = custos_arena_alloc(arena, sizeof(*r->script_len));
        if (!r->script || !r->script_len ||
            !(r->script[0] = custos_arena_strndup(arena, custos_buf_peek(&b), custos_buf_size(&b))))
            rc = CUSTOS_ENOMEM;
        else {
            r->script_len[0] = custos_buf_size(&b);
            r->n_script = 1;
        }
    }
    custos_buf_dispose(&b);
    return rc;
}
