/* SPDX-License-Identifier: Apache-2.0
 * custos redteam (docs/rai-eval.md): sends an attack corpus through a running gateway (authentication, policies,
 * the real upstream) as Azure chat-completions requests and reports per family how many were blocked (400
 * content_filter, or a choice ended with finish_reason content_filter), annotated (passed, but a detector or a harm
 * severity above safe shows in the annotations) or got through, with each request's x-request-id to look up in the
 * request records. N threads, one keep-alive connection each (net/blocking_client.h). Case text is never printed;
 * the reports name cases by id. */
#include "api/cli_rai.h"
#include "net/blocking_client.h"
#include "safety/evalreport.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/time.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RT_MAX_LINE (1u << 20)     /* bytes per corpus line */
#define RT_MAX_CASES 100000u       /* cases per corpus */
#define RT_MAX_RESPONSE (8u << 20) /* response body */
#define RT_MAX_FAMILIES 64u        /* distinct families (more: an error) */
#define RT_MAX_THREADS 64

typedef enum { OUT_ERROR = 0, OUT_BLOCKED, OUT_ANNOTATED, OUT_THROUGH, OUT_N } outcome_t;
static const char *const outcome_names[OUT_N] = {"error", "blocked", "annotated", "through"};

typedef struct rt_case {
    char *id, *family;
    char *body; /* request body (JSON), built at load time */
    size_t body_len;
    unsigned expect; /* bit per outcome_t accepted; 0 = no expectation */
    /* results */
    outcome_t outcome;
    int status;
    char request_id[64];
    char where[16];   /* prompt | completion | "" */
    char detail[160]; /* detectors / categories that fired, or the error */
} rt_case_t;

typedef struct rt {
    rt_case_t *cases;
    size_t n;
    atomic_size_t next;
    custos_url_t url;
    char host_hdr[300];
    char path[2400];
    char *headers; /* "api-key: ...\r\nContent-Type: application/json\r\n" */
    SSL_CTX *tls;
    int timeout_ms;
} rt_t;

/* ---------- corpus ---------- */

static int parse_expect(const char *s, unsigned *out)
{
    unsigned set = 0;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        unsigned bit = 0;
        for (int k = OUT_BLOCKED; k < OUT_N; k++)
            if (strlen(outcome_names[k]) == n && strncmp(outcome_names[k], p, n) == 0)
                bit = 1u << k;
        if (!bit)
            return -1;
        set |= bit;
        if (!e)
            break;
        p = e + 1;
    }
    *out = set;
    return set ? 0 : -1;
}

/* One corpus line into c; returns NULL or the reason it is invalid. */
static const char *parse_case(const char *line, size_t len, rt_case_t *c, size_t lineno)
{
    json_object *o = NULL;
    if (custos_json_parse(line, len, 64, &o, NULL, NULL) < 0 || !o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return "not a JSON object";
    }
    const char *why = NULL;
    json_object *v, *msgs = NULL, *body = json_object_new_object();
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "line-%zu", lineno);
    c->id = strdup(json_object_object_get_ex(o, "id", &v) && json_object_is_type(v, json_type_string)
                       ? json_object_get_string(v)
                       : idbuf);
    if (!json_object_object_get_ex(o, "family", &v) || !json_object_is_type(v, json_type_string) ||
        !json_object_get_string_len(v)) {
        why = "missing family";
        goto out;
    }
    c->family = strdup(json_object_get_string(v));
    if (json_object_object_get_ex(o, "expect", &v) &&
        (!json_object_is_type(v, json_type_string) || parse_expect(json_object_get_string(v), &c->expect) < 0)) {
        why = "expect must be blocked, annotated, through or an |-separated list of them";
        goto out;
    }
    if (json_object_object_get_ex(o, "messages", &v)) {
        if (!json_object_is_type(v, json_type_array) || !json_object_array_length(v)) {
            why = "messages must be a non-empty array";
            goto out;
        }
        msgs = json_object_get(v);
    } else if (json_object_object_get_ex(o, "prompt", &v) && json_object_is_type(v, json_type_string)) {
        msgs = json_object_new_array();
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("user"));
        json_object_object_add(m, "content", json_object_get(v));
        json_object_array_add(msgs, m);
    } else {
        why = "needs messages (array) or prompt (string)";
        goto out;
    }
    json_object_object_add(body, "messages", msgs);
    if (json_object_object_get_ex(o, "body", &v)) { /* extra request fields (temperature, a mock's mock_reply, ...) */
        if (!json_object_is_type(v, json_type_object)) {
            why = "body must be an object";
            goto out;
        }
        json_object_object_foreach(v, bk, bv)
        {
            if (strcmp(bk, "messages") != 0)
                json_object_object_add(body, bk, json_object_get(bv));
        }
    }
    if (!json_object_object_get_ex(body, "max_tokens", &v))
        json_object_object_add(body, "max_tokens", json_object_new_int(200));
    const char *s = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    c->body = strdup(s);
    c->body_len = strlen(s);
    if (!c->id || !c->family || !c->body)
        why = "out of memory";
out:
    json_object_put(body);
    json_object_put(o);
    return why;
}

static void cases_free(rt_case_t *cs, size_t n)
{
    for (size_t i = 0; cs && i < n; i++) {
        free(cs[i].id);
        free(cs[i].family);
        free(cs[i].body);
    }
    free(cs);
}

static int load_corpus(const char *path, rt_case_t **out, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "custos redteam: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0, cnt = 0, ccap = 0;
    ssize_t len;
    rt_case_t *cs = NULL;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        size_t sp = strspn(line, " \t");
        if (line[sp] == 0 || line[sp] == '#')
            continue;
        if ((size_t)len > RT_MAX_LINE || cnt >= RT_MAX_CASES) {
            fprintf(stderr, "custos redteam: %s:%zu: %s\n", path, lineno,
                    cnt >= RT_MAX_CASES ? "more than 100000 cases" : "line longer than 1 MiB");
            rc = -1;
            break;
        }
        if (cnt == ccap) {
            ccap = ccap ? ccap * 2 : 64;
            rt_case_t *nc = realloc(cs, ccap * sizeof(*nc));
            if (!nc) {
                rc = -1;
                break;
            }
            cs = nc;
        }
        memset(&cs[cnt], 0, sizeof(cs[cnt]));
        const char *why = parse_case(line, (size_t)len, &cs[cnt], lineno);
        cnt++;
        if (why) {
            fprintf(stderr, "custos redteam: %s:%zu: %s\n", path, lineno, why);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && cnt == 0) {
        fprintf(stderr, "custos redteam: %s: no cases\n", path);
        rc = -1;
    }
    if (rc < 0) {
        cases_free(cs, cnt);
        return -1;
    }
    *out = cs;
    *n = cnt;
    return 0;
}

/* ---------- classification ---------- */

static void add_detail(rt_case_t *c, const char *what)
{
    if (strstr(c->detail, what))
        return;
    size_t n = strlen(c->detail);
    snprintf(c->detail + n, sizeof(c->detail) - n, "%s%s", n ? "," : "", what);
}

/* Reads one content_filter_results object: *filtered when any entry is filtered; notes every detection / severity
 * above safe in c->detail; returns whether anything was noted. */
static bool scan_results(json_object *r, rt_case_t *c, bool *filtered)
{
    bool noted = false;
    if (!r || !json_object_is_type(r, json_type_object))
        return false;
    json_object_object_foreach(r, key, val)
    {
        if (!json_object_is_type(val, json_type_object))
            continue;
        json_object *f, *d, *sev;
        bool fl = json_object_object_get_ex(val, "filtered", &f) && json_object_get_boolean(f);
        bool det = json_object_object_get_ex(val, "detected", &d) && json_object_get_boolean(d);
        const char *sv = json_object_object_get_ex(val, "severity", &sev) ? json_object_get_string(sev) : NULL;
        bool above = sv && strcmp(sv, "safe") != 0;
        json_object *det_list; /* custom_blocklists: {"filtered", "details": [...]} lists each matching list */
        if (json_object_object_get_ex(val, "details", &det_list) && json_object_is_type(det_list, json_type_array) &&
            json_object_array_length(det_list) > 0)
            det = true;
        if (fl)
            *filtered = true;
        if (fl || det || above) {
            char b[64];
            snprintf(b, sizeof(b), "%s%s%s", key, above ? ":" : "", above ? sv : "");
            add_detail(c, b);
            noted = true;
        }
    }
    return noted;
}

static void classify(rt_case_t *c, const char *body, size_t len)
{
    json_object *o = NULL, *v, *err, *code;
    (void)custos_json_parse(body, len, 128, &o, NULL, NULL);
    if (c->status == 400 && o && json_object_object_get_ex(o, "error", &err) &&
        json_object_object_get_ex(err, "code", &code) && strcmp(json_object_get_string(code), "content_filter") == 0) {
        c->outcome = OUT_BLOCKED;
        snprintf(c->where, sizeof(c->where), "prompt");
        json_object *inner, *cfr;
        bool f = false;
        if (json_object_object_get_ex(err, "innererror", &inner) &&
            json_object_object_get_ex(inner, "content_filter_result", &cfr))
            scan_results(cfr, c, &f);
        json_object_put(o);
        return;
    }
    if (c->status != 200 || !o || !json_object_is_type(o, json_type_object)) {
        c->outcome = OUT_ERROR;
        json_object *m;
        const char *msg = o && json_object_object_get_ex(o, "error", &err) && json_object_object_get_ex(err, "code", &m)
                              ? json_object_get_string(m)
                              : "unexpected answer";
        snprintf(c->detail, sizeof(c->detail), "HTTP %d %s", c->status, msg);
        json_object_put(o);
        return;
    }
    bool filtered = false, noted = false, completion_filtered = false;
    if (json_object_object_get_ex(o, "prompt_filter_results", &v) && json_object_is_type(v, json_type_array))
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *r;
            if (json_object_object_get_ex(json_object_array_get_idx(v, i), "content_filter_results", &r))
                noted |= scan_results(r, c, &filtered);
        }
    if (json_object_object_get_ex(o, "choices", &v) && json_object_is_type(v, json_type_array))
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *ch = json_object_array_get_idx(v, i), *fr, *r;
            if (json_object_object_get_ex(ch, "finish_reason", &fr) && fr &&
                strcmp(json_object_get_string(fr), "content_filter") == 0)
                completion_filtered = true;
            if (json_object_object_get_ex(ch, "content_filter_results", &r)) {
                bool f = false;
                noted |= scan_results(r, c, &f);
                completion_filtered |= f;
            }
        }
    if (completion_filtered) {
        c->outcome = OUT_BLOCKED;
        snprintf(c->where, sizeof(c->where), "completion");
    } else if (noted || filtered) {
        c->outcome = OUT_ANNOTATED;
    } else {
        c->outcome = OUT_THROUGH;
    }
    json_object_put(o);
}

/* ---------- sending ---------- */

static void *worker(void *arg)
{
    rt_t *rt = arg;
    custos_bclient_t cl;
    custos_bclient_init(&cl);
    custos_buf_t resp;
    custos_buf_init(&resp, RT_MAX_RESPONSE);
    for (;;) {
        size_t i = atomic_fetch_add(&rt->next, 1);
        if (i >= rt->n)
            break;
        rt_case_t *c = &rt->cases[i];
        int rc = 0;
        char err[256] = "";
        for (int attempt = 0; attempt < 2; attempt++) {
            if (cl.fd < 0 &&
                (rc = custos_bclient_connect(&cl, rt->url.host, rt->url.port, rt->url.https ? rt->tls : NULL,
                                             rt->timeout_ms, err, sizeof(err))) < 0)
                break;
            bool ka = false;
            custos_buf_reset(&resp);
            rc = custos_bclient_http_ex(&cl, "POST", rt->host_hdr, rt->path, rt->headers, c->body, c->body_len,
                                        RT_MAX_RESPONSE, rt->timeout_ms, &c->status, &resp, &ka, "x-request-id",
                                        c->request_id, sizeof(c->request_id));
            if (rc < 0 || !ka)
                custos_bclient_close(&cl);
            if (rc != CUSTOS_ECLOSED) /* a reused connection the server had closed: retry once on a new one */
                break;
        }
        if (rc < 0) {
            c->outcome = OUT_ERROR;
            snprintf(c->detail, sizeof(c->detail), "%.150s", err[0] ? err : custos_strerror(rc));
            continue;
        }
        classify(c, custos_buf_peek(&resp), custos_buf_size(&resp));
    }
    custos_bclient_close(&cl);
    custos_buf_dispose(&resp);
    custos_json_thread_cleanup();
    return NULL;
}

/* ---------- reports ---------- */

typedef struct fam {
    const char *name;
    unsigned count[OUT_N];
} fam_t;

static size_t families(const rt_t *rt, fam_t *fs)
{
    size_t nf = 0;
    for (size_t i = 0; i < rt->n; i++) {
        size_t k = 0;
        while (k < nf && strcmp(fs[k].name, rt->cases[i].family) != 0)
            k++;
        if (k == nf) {
            fs[nf].name = rt->cases[i].family;
            memset(fs[nf].count, 0, sizeof(fs[nf].count));
            nf++;
        }
        fs[k].count[rt->cases[i].outcome]++;
    }
    return nf;
}

static json_object *report_json(const rt_t *rt, const fam_t *fs, size_t nf, const char *url, const char *dep,
                                const char *corpus, unsigned mismatches)
{
    json_object *d = json_object_new_object(), *t = json_object_new_object(), *fa = json_object_new_array(),
                *ca = json_object_new_array(), *tot = json_object_new_object();
    char ts[32];
    custos_fmt_utc((int64_t)time(NULL), ts, sizeof(ts));
    json_object_object_add(d, "schema", json_object_new_string("custos.rai-eval.redteam/1"));
    json_object_object_add(d, "kind", json_object_new_string("redteam"));
    json_object_object_add(d, "generated_at", json_object_new_string(ts));
    json_object_object_add(t, "url", json_object_new_string(url));
    json_object_object_add(t, "deployment", json_object_new_string(dep));
    json_object_object_add(d, "target", t);
    json_object_object_add(d, "corpus", json_object_new_string(corpus));
    unsigned sum[OUT_N] = {0};
    for (size_t k = 0; k < nf; k++) {
        json_object *F = json_object_new_object();
        unsigned total = 0;
        json_object_object_add(F, "family", json_object_new_string(fs[k].name));
        for (int o = 0; o < OUT_N; o++) {
            total += fs[k].count[o];
            sum[o] += fs[k].count[o];
        }
        json_object_object_add(F, "total", json_object_new_int((int)total));
        for (int o = OUT_BLOCKED; o < OUT_N; o++)
            json_object_object_add(F, outcome_names[o], json_object_new_int((int)fs[k].count[o]));
        json_object_object_add(F, "errors", json_object_new_int((int)fs[k].count[OUT_ERROR]));
        json_object_array_add(fa, F);
    }
    json_object_object_add(tot, "total", json_object_new_int((int)rt->n));
    for (int o = OUT_BLOCKED; o < OUT_N; o++)
        json_object_object_add(tot, outcome_names[o], json_object_new_int((int)sum[o]));
    json_object_object_add(tot, "errors", json_object_new_int((int)sum[OUT_ERROR]));
    json_object_object_add(tot, "expectation_mismatches", json_object_new_int((int)mismatches));
    json_object_object_add(d, "totals", tot);
    json_object_object_add(d, "families", fa);
    for (size_t i = 0; i < rt->n; i++) {
        const rt_case_t *c = &rt->cases[i];
        json_object *C = json_object_new_object();
        json_object_object_add(C, "id", json_object_new_string(c->id));
        json_object_object_add(C, "family", json_object_new_string(c->family));
        json_object_object_add(C, "outcome", json_object_new_string(outcome_names[c->outcome]));
        json_object_object_add(C, "status", json_object_new_int(c->status));
        json_object_object_add(C, "request_id", c->request_id[0] ? json_object_new_string(c->request_id) : NULL);
        json_object_object_add(C, "where", c->where[0] ? json_object_new_string(c->where) : NULL);
        json_object_object_add(C, "detail", json_object_new_string(c->detail));
        if (c->expect) {
            char b[64] = "";
            for (int o = OUT_BLOCKED; o < OUT_N; o++)
                if (c->expect & (1u << o))
                    snprintf(b + strlen(b), sizeof(b) - strlen(b), "%s%s", b[0] ? "|" : "", outcome_names[o]);
            json_object_object_add(C, "expect", json_object_new_string(b));
            json_object_object_add(C, "as_expected", json_object_new_boolean((c->expect & (1u << c->outcome)) != 0));
        }
        json_object_array_add(ca, C);
    }
    json_object_object_add(d, "cases", ca);
    return d;
}

static int write_html(const char *path, const rt_t *rt, const fam_t *fs, size_t nf, const char *url, const char *dep)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    custos_report_begin(f, "custos red-team report");
    (void)url; /* shown as host and port: the page carries no URLs (self-contained, nothing to follow) */
    fputs("<p>Target <code>", f);
    custos_report_esc(f, rt->host_hdr);
    fprintf(f, "</code> (%s), deployment <code>", rt->url.https ? "TLS" : "plain HTTP");
    custos_report_esc(f, dep);
    fprintf(f,
            "</code>, %zu cases. <em>Blocked</em>: HTTP 400 content_filter or finish_reason content_filter; "
            "<em>annotated</em>: answered, with a detection or a severity above safe in the annotations; "
            "<em>through</em>: answered with nothing noted.</p>\n",
            rt->n);
    custos_report_stack_t *rows = calloc(nf ? nf : 1, sizeof(*rows));
    if (!rows) {
        fclose(f);
        return -1;
    }
    for (size_t k = 0; k < nf; k++) {
        rows[k].label = fs[k].name;
        rows[k].count[0] = fs[k].count[OUT_BLOCKED];
        rows[k].count[1] = fs[k].count[OUT_ANNOTATED];
        rows[k].count[2] = fs[k].count[OUT_THROUGH];
        rows[k].count[3] = fs[k].count[OUT_ERROR];
    }
    static const char *const series[] = {"blocked", "annotated", "through", "error"};
    static const char *const colours[] = {"#2166ac", "#92c5de", "#d6604d", "#878787"};
    custos_report_stack_chart(f, "fam", "Outcome per attack family",
                              "Horizontal stacked bars, one per attack family, showing the share of cases blocked, "
                              "annotated, let through, or failed with an error; counts in the table below.",
                              series, colours, 4, rows, nf);
    free(rows);
    fputs("<h2>Cases</h2>\n<table><thead><tr><th scope=\"col\">id</th><th scope=\"col\">family</th>"
          "<th scope=\"col\">outcome</th><th scope=\"col\">status</th><th scope=\"col\">where</th>"
          "<th scope=\"col\">detail</th><th scope=\"col\">request id</th></tr></thead><tbody>\n",
          f);
    for (size_t i = 0; i < rt->n; i++) {
        const rt_case_t *c = &rt->cases[i];
        const char *cols[] = {c->id, c->family, outcome_names[c->outcome]};
        fputs("<tr>", f);
        for (int k = 0; k < 3; k++) {
            fputs("<td>", f);
            custos_report_esc(f, cols[k]);
            fputs("</td>", f);
        }
        fprintf(f, "<td class=\"num\">%d</td><td>", c->status);
        custos_report_esc(f, c->where);
        fputs("</td><td>", f);
        custos_report_esc(f, c->detail);
        fputs("</td><td><code>", f);
        custos_report_esc(f, c->request_id);
        fputs("</code></td></tr>\n", f);
    }
    fputs("</tbody></table>\n", f);
    custos_report_end(f);
    return fclose(f) == 0 ? 0 : -1;
}

static int read_key(const char *path, char *key, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(key, 1, cap - 1, f);
    fclose(f);
    key[n] = 0;
    while (n && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' '))
        key[--n] = 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e)
            return -1;
    return n ? 0 : -1;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *e = NULL;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno || e == s || *e || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Letters, digits, '-', '_', '.': what may go into the request path unescaped. */
static bool path_safe(const char *s)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return false;
    return true;
}

int custos_cli_redteam(int argc, char **argv, FILE *out)
{
    const char *url = NULL, *keyfile = NULL, *dep = NULL, *corpus = NULL, *cacert = NULL, *out_json = NULL,
               *out_html = NULL, *apiver = "2024-10-21";
    bool insecure = false;
    long conc = 4, timeout = 60000;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--insecure") == 0) {
            insecure = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "custos redteam: '%s' needs a value (or is unknown)\n", a);
            return CUSTOS_RAI_EXIT_USAGE;
        }
        i++;
        if (strcmp(a, "--url") == 0)
            url = v;
        else if (strcmp(a, "--key-file") == 0)
            keyfile = v;
        else if (strcmp(a, "--deployment") == 0)
            dep = v;
        else if (strcmp(a, "--corpus") == 0)
            corpus = v;
        else if (strcmp(a, "--cacert") == 0)
            cacert = v;
        else if (strcmp(a, "--api-version") == 0)
            apiver = v;
        else if (strcmp(a, "--out-json") == 0)
            out_json = v;
        else if (strcmp(a, "--out-html") == 0)
            out_html = v;
        else if ((strcmp(a, "--concurrency") == 0 && parse_long(v, 1, RT_MAX_THREADS, &conc)) ||
                 (strcmp(a, "--timeout-ms") == 0 && parse_long(v, 100, 600000, &timeout)))
            continue;
        else {
            fprintf(stderr, "custos redteam: bad argument '%s %s' (--concurrency 1..64, --timeout-ms 100..600000)\n", a,
                    v);
            return CUSTOS_RAI_EXIT_USAGE;
        }
    }
    if (!url || !keyfile || !dep || !corpus || (insecure && cacert)) {
        fprintf(stderr, "usage: custos redteam --url https://host:port --key-file F --deployment NAME --corpus FILE "
                        "[--insecure|--cacert F] [--concurrency N] [--timeout-ms N] [--out-json F] [--out-html F]\n");
        return CUSTOS_RAI_EXIT_USAGE;
    }
    if (!path_safe(dep) || !path_safe(apiver)) {
        fprintf(stderr, "custos redteam: --deployment and --api-version may hold only letters, digits, '-', '_' and "
                        "'.'\n");
        return CUSTOS_RAI_EXIT_USAGE;
    }
    rt_t rt = {.timeout_ms = (int)timeout};
    if (custos_url_parse(url, &rt.url) < 0) {
        fprintf(stderr, "custos redteam: --url must be http(s)://host[:port][/prefix]\n");
        return CUSTOS_RAI_EXIT_USAGE;
    }
    char key[512];
    if (read_key(keyfile, key, sizeof(key)) < 0) {
        fprintf(stderr, "custos redteam: cannot read an API key from %s (one line of printable ASCII)\n", keyfile);
        return CUSTOS_RAI_EXIT_ERROR;
    }
    int rc = CUSTOS_RAI_EXIT_ERROR;
    if (load_corpus(corpus, &rt.cases, &rt.n) < 0)
        goto out;
    size_t plen = strlen(rt.url.path);
    while (plen && rt.url.path[plen - 1] == '/')
        plen--;
    snprintf(rt.path, sizeof(rt.path), "%.*s/openai/deployments/%s/chat/completions?api-version=%s", (int)plen,
             rt.url.path, dep, apiver);
    bool v6 = strchr(rt.url.host, ':') != NULL;
    snprintf(rt.host_hdr, sizeof(rt.host_hdr), "%s%s%s:%s", v6 ? "[" : "", rt.url.host, v6 ? "]" : "", rt.url.port);
    if (asprintf(&rt.headers, "api-key: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\n", key) <
        0) {
        rt.headers = NULL;
        goto out;
    }
    explicit_bzero(key, sizeof(key));
    if (rt.url.https) {
        char err[512] = "";
        if (custos_bclient_tls_ctx_new(cacert, &rt.tls, err, sizeof(err)) < 0) {
            fprintf(stderr, "custos redteam: TLS: %s\n", err[0] ? err : "cannot create a TLS context");
            goto out;
        }
        if (insecure)
            SSL_CTX_set_verify(rt.tls, SSL_VERIFY_NONE, NULL);
    } else if (insecure || cacert) {
        fprintf(stderr, "custos redteam: --insecure / --cacert apply to https:// URLs only\n");
        rc = CUSTOS_RAI_EXIT_USAGE;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    pthread_t th[RT_MAX_THREADS];
    size_t nth = (size_t)conc < rt.n ? (size_t)conc : rt.n, started = 0;
    for (; started < nth; started++)
        if (pthread_create(&th[started], NULL, worker, &rt) != 0)
            break;
    if (!started) {
        fprintf(stderr, "custos redteam: cannot start threads\n");
        goto out;
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    fam_t fs[RT_MAX_FAMILIES];
    size_t nfam = 0;
    {
        /* count distinct families first (bounded table) */
        for (size_t i = 0; i < rt.n && nfam <= RT_MAX_FAMILIES; i++) {
            size_t k = 0;
            while (k < nfam && strcmp(fs[k].name, rt.cases[i].family) != 0)
                k++;
            if (k == nfam) {
                if (nfam == RT_MAX_FAMILIES) {
                    fprintf(stderr, "custos redteam: more than %u families\n", RT_MAX_FAMILIES);
                    goto out;
                }
                fs[nfam++].name = rt.cases[i].family;
            }
        }
        nfam = families(&rt, fs);
    }
    unsigned mismatches = 0, errors = 0;
    for (size_t i = 0; i < rt.n; i++) {
        errors += rt.cases[i].outcome == OUT_ERROR;
        if (rt.cases[i].expect && !(rt.cases[i].expect & (1u << rt.cases[i].outcome))) {
            mismatches++;
            fprintf(out, "unexpected: %s (%s): %s, expected %s%s%s (request %s)\n", rt.cases[i].id, rt.cases[i].family,
                    outcome_names[rt.cases[i].outcome], rt.cases[i].expect & 2 ? "blocked " : "",
                    rt.cases[i].expect & 4 ? "annotated " : "", rt.cases[i].expect & 8 ? "through " : "",
                    rt.cases[i].request_id[0] ? rt.cases[i].request_id : "-");
        }
        if (rt.cases[i].outcome == OUT_ERROR)
            fprintf(out, "error: %s (%s): %s\n", rt.cases[i].id, rt.cases[i].family, rt.cases[i].detail);
    }
    fprintf(out, "custos redteam: %zu cases against %s (deployment %s)\n", rt.n, url, dep);
    fprintf(out, "%-28s %7s %8s %10s %8s %7s\n", "family", "cases", "blocked", "annotated", "through", "errors");
    for (size_t k = 0; k < nfam; k++)
        fprintf(out, "%-28.28s %7u %8u %10u %8u %7u\n", fs[k].name,
                fs[k].count[0] + fs[k].count[1] + fs[k].count[2] + fs[k].count[3], fs[k].count[OUT_BLOCKED],
                fs[k].count[OUT_ANNOTATED], fs[k].count[OUT_THROUGH], fs[k].count[OUT_ERROR]);
    rc = errors ? CUSTOS_RAI_EXIT_NETWORK : mismatches ? CUSTOS_RAI_EXIT_EXPECT : CUSTOS_RAI_EXIT_OK;
    if (out_json) {
        json_object *d = report_json(&rt, fs, nfam, url, dep, corpus, mismatches);
        FILE *f = fopen(out_json, "w");
        bool ok = f != NULL;
        if (f) {
            ok = fputs(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE),
                       f) >= 0 &&
                 fputc('\n', f) != EOF;
            ok = fclose(f) == 0 && ok;
        }
        if (!ok) {
            fprintf(stderr, "custos redteam: cannot write %s\n", out_json);
            rc = CUSTOS_RAI_EXIT_ERROR;
        }
        json_object_put(d);
    }
    if (out_html && write_html(out_html, &rt, fs, nfam, url, dep) < 0) {
        fprintf(stderr, "custos redteam: cannot write %s\n", out_html);
        rc = CUSTOS_RAI_EXIT_ERROR;
    }
out:
    explicit_bzero(key, sizeof(key));
    if (rt.headers) {
        explicit_bzero(rt.headers, strlen(rt.headers));
        free(rt.headers);
    }
    if (rt.tls)
        SSL_CTX_free(rt.tls);
    cases_free(rt.cases, rt.n);
    return rc;
}
