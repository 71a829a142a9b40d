/* SPDX-License-Identifier: Apache-2.0
 * Guard adapters (guard.h): the request each guard type gets for one check, and the strict reading of its answer.
 *
 *   llama-guard           POST {path}/v1/completions with the Llama Guard 3 prompt custos builds (S1..S14), or
 *                         POST {path}/v1/chat/completions with the conversation (the server applies the model's
 *                         chat template); the generated text is "safe" or "unsafe\nS1,S10".
 *   azure-content-safety  POST {path}/contentsafety/text:analyze?api-version=V (harm, FourSeverityLevels) and
 *                         text:shieldPrompt (jailbreak: userPrompt; indirect attack: documents[0]).
 *   http-classifier       POST {path} with {"text","check","role"}; the answer is {"flagged", "categories":
 *                         {"hate": {"flagged", "severity"?}, ...}, "labels"?} (docs/guard-models.md). */
#include "guard/guard.h"

#include "util/err.h"
#include "util/json.h"

#include <json-c/json.h>
#include <string.h>

static const char *const LLAMA_CATEGORIES[CUSTOS_GUARD_LLAMA_NCODES] = {
    "Violent Crimes",
    "Non-Violent Crimes",
    "Sex Crimes",
    "Child Exploitation",
    "Defamation",
    "Specialized Advice",
    "Privacy",
    "Intellectual Property",
    "Indiscriminate Weapons",
    "Hate",
    "Self-Harm",
    "Sexual Content",
    "Elections",
    "Code Interpreter Abuse",
};

const char *custos_guard_check_name(custos_guard_check_t c)
{
    static const char *const n[] = {"harm", "jailbreak", "indirect_attack"};
    return (unsigned)c < CUSTOS_GUARD_NCHECKS ? n[c] : "unknown";
}

const char *custos_guard_err_name(custos_guard_err_t e)
{
    static const char *const n[] = {"ok", "timeout", "connect", "http", "parse", "busy", "circuit_open", "internal"};
    return (unsigned)e < CUSTOS_GUARD_NERRS ? n[e] : "internal";
}

const char *custos_guard_type_name(custos_guard_type_t t)
{
    static const char *const n[] = {"llama-guard", "azure-content-safety", "http-classifier"};
    return (unsigned)t <= CUSTOS_GUARD_HTTP_CLASSIFIER ? n[t] : "unknown";
}

int custos_guard_llama_category(int code)
{
    switch (code) {
    case 1: /* violent crimes */
    case 9: /* indiscriminate weapons */
        return CUSTOS_RAI_VIOLENCE;
    case 3:  /* sex crimes */
    case 4:  /* child exploitation */
    case 12: /* sexual content */
        return CUSTOS_RAI_SEXUAL;
    case 10:
        return CUSTOS_RAI_HATE;
    case 11:
        return CUSTOS_RAI_SELF_HARM;
    default:
        return -1;
    }
}

/* The longest prefix of s[0..n) of at most max bytes that ends on a code point boundary. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t i = max;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

/* Bytes of the first max_cp code points of s[0..n). */
static size_t utf8_cut_cp(const char *s, size_t n, size_t max_cp)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && c++ == max_cp)
            return i;
    return n;
}

int custos_guard_llama_prompt(int src, const char *text, size_t len, custos_buf_t *out)
{
    const char *role = src == CUSTOS_RAI_COMPLETION ? "Agent" : "User";
    int rc = custos_buf_appendf(out,
                                "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nTask: Check if there is "
                                "unsafe content in '%s' messages in conversations according our safety policy with "
                                "the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n",
                                role);
    for (int i = 0; i < CUSTOS_GUARD_LLAMA_NCODES && rc == 0; i++)
        rc = custos_buf_appendf(out, "S%d: %s.\n", i + 1, LLAMA_CATEGORIES[i]);
    rc = rc ? rc : custos_buf_appendf(out, "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n%s: ", role);
    rc = rc ? rc : custos_buf_append(out, text, utf8_cut(text, len, CUSTOS_GUARD_MAX_TEXT));
    rc =
        rc ? rc
           : custos_buf_appendf(out,
                                "\n\n<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST %s message "
                                "in the above conversation:\n - First line must read 'safe' or 'unsafe'.\n - If "
                                "unsafe, a second line must include a comma-separated list of violated categories."
                                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                                role);
    return rc;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void verdict_clear(custos_guard_verdict_t *v)
{
    memset(v, 0, sizeof(*v));
    memset(v->severity, -1, sizeof(v->severity));
}

int custos_guard_llama_parse_text(const char *s, size_t n, custos_guard_verdict_t *v)
{
    verdict_clear(v);
    size_t i = 0;
    while (i < n && is_ws(s[i]))
        i++;
    while (n > i && is_ws(s[n - 1]))
        n--;
    /* first line */
    size_t e = i;
    while (e < n && s[e] != '\n')
        e++;
    size_t l = e;
    while (l > i && is_ws(s[l - 1]))
        l--;
    if (l - i == 4 && memcmp(s + i, "safe", 4) == 0) {
        if (e != n)
            goto bad; /* "safe" followed by more lines */
        return 0;
    }
    if (l - i != 6 || memcmp(s + i, "unsafe", 6) != 0)
        goto bad;
    /* second line: comma-separated codes; Llama Guard 3 always names at least one */
    i = e + 1;
    if (i >= n)
        goto bad;
    for (size_t k = i; k < n; k++)
        if (s[k] == '\n')
            goto bad;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= n || s[i] != 'S')
            goto bad;
        i++;
        int code = 0, digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 3) {
            code = code * 10 + (s[i] - '0');
            i++;
            digits++;
        }
        if (!digits || code < 1 || code > CUSTOS_GUARD_LLAMA_NCODES)
            goto bad;
        v->codes |= 1u << (code - 1);
        int cat = custos_guard_llama_category(code);
        if (cat >= 0)
            v->flagged[cat] = true;
        else
            v->other |= 1u << (code - 1);
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i < n && s[i] != ',')
            goto bad;
        if (i < n)
            i++;
    }
    if (!v->codes)
        goto bad;
    v->unsafe = true;
    return 0;
bad:
    verdict_clear(v);
    v->err = CUSTOS_GUARD_ERR_PARSE;
    return CUSTOS_EPROTO;
}

static int append_prefix(const custos_guard_config_t *g, custos_buf_t *path)
{
    return custos_buf_append_str(path, g->path_prefix ? g->path_prefix : "");
}

static int build_llama(const custos_guard_config_t *g, int src, const char *text, size_t len, custos_buf_t *path,
                       custos_buf_t *body)
{
    int rc = append_prefix(g, path);
    size_t n = utf8_cut(text, len, CUSTOS_GUARD_MAX_TEXT);
    rc = rc ? rc : custos_buf_append_str(path, g->chat_api ? "/v1/chat/completions" : "/v1/completions");
    rc = rc ? rc : custos_buf_append_lit(body, "{\"model\":");
    rc = rc ? rc : custos_json_append_string(body, g->model ? g->model : "", g->model ? strlen(g->model) : 0);
    if (g->chat_api) {
        /* the server's chat template for Llama Guard builds the prompt; an answer is judged after its prompt */
        if (src == CUSTOS_RAI_COMPLETION)
            rc = rc ? rc
                    : custos_buf_append_lit(body, ",\"messages\":[{\"role\":\"user\",\"content\":\"\"},{\"role\":"
                                                  "\"assistant\",\"content\":");
        else
            rc = rc ? rc : custos_buf_append_lit(body, ",\"messages\":[{\"role\":\"user\",\"content\":");
        rc = rc ? rc : custos_json_append_string(body, text, n);
        rc = rc ? rc : custos_buf_append_lit(body, "}]");
    } else {
        custos_buf_t p;
        custos_buf_init(&p, 0);
        rc = rc ? rc : custos_guard_llama_prompt(src, text, n, &p);
        rc = rc ? rc : custos_buf_append_lit(body, ",\"prompt\":");
        rc = rc ? rc : custos_json_append_string(body, custos_buf_peek(&p), custos_buf_size(&p));
        custos_buf_dispose(&p);
    }
    return rc ? rc : custos_buf_append_lit(body, ",\"max_tokens\":20,\"temperature\":0,\"stream\":false}");
}

static int build_azure(const custos_guard_config_t *g, custos_guard_check_t check, const char *text, size_t len,
                       custos_buf_t *path, custos_buf_t *body)
{
    size_t n = utf8_cut_cp(text, len, CUSTOS_GUARD_AZURE_MAX_CHARS);
    int rc = append_prefix(g, path);
    rc = rc ? rc
            : custos_buf_append_str(path, check == CUSTOS_GUARD_CHECK_HARM ? "/contentsafety/text:analyze"
                                                                           : "/contentsafety/text:shieldPrompt");
    rc = rc ? rc : custos_buf_append_lit(path, "?api-version=");
    rc = rc ? rc : custos_buf_append_str(path, g->api_version ? g->api_version : "2024-09-01");
    if (check == CUSTOS_GUARD_CHECK_HARM) {
        rc = rc ? rc : custos_buf_append_lit(body, "{\"text\":");
        rc = rc ? rc : custos_json_append_string(body, text, n);
        rc = rc ? rc
                : custos_buf_append_lit(body, ",\"categories\":[\"Hate\",\"Sexual\",\"Violence\",\"SelfHarm\"],"
                                              "\"outputType\":\"FourSeverityLevels\"}");
    } else if (check == CUSTOS_GUARD_CHECK_JAILBREAK) {
        rc = rc ? rc : custos_buf_append_lit(body, "{\"userPrompt\":");
        rc = rc ? rc : custos_json_append_string(body, text, n);
        rc = rc ? rc : custos_buf_append_lit(body, ",\"documents\":[]}");
    } else {
        rc = rc ? rc : custos_buf_append_lit(body, "{\"userPrompt\":\"\",\"documents\":[");
        rc = rc ? rc : custos_json_append_string(body, text, n);
        rc = rc ? rc : custos_buf_append_lit(body, "]}");
    }
    return rc;
}

static int build_http(const custos_guard_config_t *g, custos_guard_check_t check, int src, const char *text, size_t len,
                      custos_buf_t *path, custos_buf_t *body)
{
    int rc = custos_buf_append_str(path, g->path_prefix && g->path_prefix[0] ? g->path_prefix : "/");
    rc = rc ? rc : custos_buf_append_lit(body, "{\"text\":");
    rc = rc ? rc : custos_json_append_string(body, text, utf8_cut(text, len, CUSTOS_GUARD_MAX_TEXT));
    rc = rc ? rc
            : custos_buf_appendf(body, ",\"check\":\"%s\",\"role\":\"%s\"}", custos_guard_check_name(check),
                                 src == CUSTOS_RAI_COMPLETION ? "assistant" : "user");
    return rc;
}

int custos_guard_build(const custos_guard_config_t *g, custos_guard_check_t check, int src, const char *text,
                       size_t len, custos_buf_t *path, custos_buf_t *body)
{
    if ((unsigned)check >= CUSTOS_GUARD_NCHECKS)
        return CUSTOS_EINVAL;
    switch (g->type) {
    case CUSTOS_GUARD_LLAMA_GUARD:
        if (check != CUSTOS_GUARD_CHECK_HARM)
            return CUSTOS_EINVAL;
        return build_llama(g, src, text, len, path, body);
    case CUSTOS_GUARD_AZURE_CONTENT_SAFETY:
        return build_azure(g, check, text, len, path, body);
    case CUSTOS_GUARD_HTTP_CLASSIFIER:
        return build_http(g, check, src, text, len, path, body);
    }
    return CUSTOS_EINVAL;
}

/* ---------- answers ---------- */

static json_object *get(json_object *o, const char *key, json_type t)
{
    json_object *v = NULL;
    if (!o || !json_object_object_get_ex(o, key, &v) || !v || !json_object_is_type(v, t))
        return NULL;
    return v;
}

static int parse_llama(const custos_guard_config_t *g, json_object *root, custos_guard_verdict_t *v)
{
    json_object *choices = get(root, "choices", json_type_array), *c, *t;
    if (!choices || json_object_array_length(choices) < 1)
        return CUSTOS_EPROTO;
    c = json_object_array_get_idx(choices, 0);
    if (g->chat_api)
        t = get(get(c, "message", json_type_object), "content", json_type_string);
    else
        t = get(c, "text", json_type_string);
    if (!t)
        return CUSTOS_EPROTO;
    return custos_guard_llama_parse_text(json_object_get_string(t), (size_t)json_object_get_string_len(t), v);
}

static int azure_category(const char *s)
{
    return strcmp(s, "Hate") == 0       ? CUSTOS_RAI_HATE
           : strcmp(s, "Sexual") == 0   ? CUSTOS_RAI_SEXUAL
           : strcmp(s, "Violence") == 0 ? CUSTOS_RAI_VIOLENCE
           : strcmp(s, "SelfHarm") == 0 ? CUSTOS_RAI_SELF_HARM
                                        : -1;
}

static int parse_azure(custos_guard_check_t check, json_object *root, custos_guard_verdict_t *v)
{
    if (check == CUSTOS_GUARD_CHECK_HARM) {
        json_object *arr = get(root, "categoriesAnalysis", json_type_array);
        if (!arr)
            return CUSTOS_EPROTO;
        size_t n = json_object_array_length(arr);
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(arr, i);
            json_object *c = get(e, "category", json_type_string), *s = get(e, "severity", json_type_int);
            if (!c || !s)
                return CUSTOS_EPROTO;
            int k = azure_category(json_object_get_string(c));
            int64_t sev = json_object_get_int64(s);
            if (k < 0 || sev < 0 || sev > 7)
                return CUSTOS_EPROTO;
            v->severity[k] = (int8_t)sev;
            v->flagged[k] = sev >= 2;
            v->unsafe |= sev >= 2;
        }
        for (int k = 0; k < 4; k++)
            if (v->severity[k] < 0)
                return CUSTOS_EPROTO; /* we asked for all four */
        return 0;
    }
    json_object *a = NULL;
    if (check == CUSTOS_GUARD_CHECK_JAILBREAK) {
        a = get(get(root, "userPromptAnalysis", json_type_object), "attackDetected", json_type_boolean);
    } else {
        json_object *docs = get(root, "documentsAnalysis", json_type_array);
        if (docs && json_object_array_length(docs) == 1)
            a = get(json_object_array_get_idx(docs, 0), "attackDetected", json_type_boolean);
    }
    if (!a)
        return CUSTOS_EPROTO;
    v->attack = v->unsafe = json_object_get_boolean(a);
    return 0;
}

static int parse_http(custos_guard_check_t check, json_object *root, custos_guard_verdict_t *v)
{
    static const char *const cats[4] = {"hate", "sexual", "violence", "self_harm"};
    json_object *f = get(root, "flagged", json_type_boolean);
    if (!f)
        return CUSTOS_EPROTO;
    bool flagged = json_object_get_boolean(f);
    json_object *cm = NULL;
    if (json_object_object_get_ex(root, "categories", &cm) && cm && !json_object_is_type(cm, json_type_object))
        return CUSTOS_EPROTO;
    if (check != CUSTOS_GUARD_CHECK_HARM) {
        v->attack = v->unsafe = flagged;
        return 0;
    }
    bool any = false;
    for (int k = 0; cm && k < 4; k++) {
        json_object *e = NULL;
        if (!json_object_object_get_ex(cm, cats[k], &e))
            continue;
        json_object *ef = get(e, "flagged", json_type_boolean), *es = NULL;
        if (!ef)
            return CUSTOS_EPROTO;
        v->flagged[k] = json_object_get_boolean(ef);
        any |= v->flagged[k];
        if (json_object_object_get_ex(e, "severity", &es)) {
            if (!es || !json_object_is_type(es, json_type_int) || json_object_get_int64(es) < 0 ||
                json_object_get_int64(es) > 7)
                return CUSTOS_EPROTO;
            v->severity[k] = (int8_t)json_object_get_int64(es);
        }
    }
    v->unsafe = flagged || any; /* flagged with no category: something outside the four (recorded, not blocking) */
    return 0;
}

int custos_guard_parse(const custos_guard_config_t *g, custos_guard_check_t check, const char *body, size_t len,
                       custos_guard_verdict_t *v)
{
    verdict_clear(v);
    json_object *root = NULL;
    int rc = CUSTOS_EPROTO;
    if (len <= CUSTOS_GUARD_MAX_RESPONSE && custos_json_parse(body, len, 16, &root, NULL, NULL) == 0 && root &&
        json_object_is_type(root, json_type_object)) {
        switch (g->type) {
        case CUSTOS_GUARD_LLAMA_GUARD:
            rc = check == CUSTOS_GUARD_CHECK_HARM ? parse_llama(g, root, v) : CUSTOS_EPROTO;
            break;
        case CUSTOS_GUARD_AZURE_CONTENT_SAFETY:
            rc = parse_azure(check, root, v);
            break;
        case CUSTOS_GUARD_HTTP_CLASSIFIER:
            rc = parse_http(check, root, v);
            break;
        }
    }
    json_object_put(root);
    if (rc < 0) {
        verdict_clear(v);
        v->err = CUSTOS_GUARD_ERR_PARSE;
        return CUSTOS_EPROTO;
    }
    return 0;
}

/* ---------- Azure groundedness ---------- */

int custos_guard_azure_groundedness_build(const custos_guard_config_t *g, const char *text, size_t len,
                                          const char *const *sources, const size_t *source_lens, size_t nsources,
                                          custos_buf_t *path, custos_buf_t *body)
{
    int rc = append_prefix(g, path);
    rc = rc ? rc : custos_buf_append_lit(path, "/contentsafety/text:detectGroundedness?api-version=");
    rc = rc ? rc : custos_buf_append_str(path, g->api_version ? g->api_version : "2024-09-15-preview");
    rc = rc ? rc : custos_buf_append_lit(body, "{\"domain\":\"Generic\",\"task\":\"Summarization\",\"text\":");
    rc = rc ? rc : custos_json_append_string(body, text, utf8_cut_cp(text, len, CUSTOS_GUARD_AZURE_MAX_CHARS));
    rc = rc ? rc : custos_buf_append_lit(body, ",\"groundingSources\":[");
    for (size_t i = 0; i < nsources && rc == 0; i++) {
        if (i)
            rc = custos_buf_append_lit(body, ",");
        rc = rc ? rc : custos_json_append_string(body, sources[i], utf8_cut(sources[i], source_lens[i], 55000));
    }
    return rc ? rc : custos_buf_append_lit(body, "],\"reasoning\":false}");
}

int custos_guard_azure_groundedness_parse(const char *body, size_t len, bool *ungrounded, double *percentage)
{
    json_object *root = NULL;
    int rc = CUSTOS_EPROTO;
    if (len <= CUSTOS_GUARD_MAX_RESPONSE && custos_json_parse(body, len, 16, &root, NULL, NULL) == 0 && root &&
        json_object_is_type(root, json_type_object)) {
        json_object *d = get(root, "ungroundedDetected", json_type_boolean), *p = NULL;
        json_object_object_get_ex(root, "ungroundedPercentage", &p);
        if (d && p && (json_object_is_type(p, json_type_double) || json_object_is_type(p, json_type_int))) {
            *ungrounded = json_object_get_boolean(d);
            *percentage = json_object_get_double(p);
            rc = (*percentage >= 0 && *percentage <= 1) ? 0 : CUSTOS_EPROTO;
        }
    }
    json_object_put(root);
    return rc;
}
