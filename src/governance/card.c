/* SPDX-License-Identifier: Apache-2.0
 * Deployment cards: see card.h. */
#include "governance/card.h"
#include "safety/safety.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EVAL_JSON_DEPTH 32

const char *custos_card_action_name(custos_rai_action_t a)
{
    switch (a) {
    case CUSTOS_RAI_OFF:
        return "off";
    case CUSTOS_RAI_ANNOTATE:
        return "annotate";
    case CUSTOS_RAI_BLOCK:
        return "block";
    }
    return "unknown";
}

const char *custos_card_pii_action_name(custos_rai_pii_action_t a)
{
    switch (a) {
    case CUSTOS_RAI_PII_OFF:
        return "off";
    case CUSTOS_RAI_PII_ANNOTATE:
        return "annotate";
    case CUSTOS_RAI_PII_REDACT:
        return "redact";
    case CUSTOS_RAI_PII_PLACEHOLDER:
        return "placeholder";
    case CUSTOS_RAI_PII_BLOCK:
        return "block";
    }
    return "unknown";
}

const char *custos_card_threshold_name(unsigned t)
{
    return t <= 2 ? "low" : t <= 4 ? "medium" : "high";
}

const char *custos_card_eval_dir(const custos_config_t *cfg, char *buf, size_t cap)
{
    if (cfg && cfg->safety.eval_dir) {
        snprintf(buf, cap, "%s", cfg->safety.eval_dir);
        return buf;
    }
    return custos_safety_default_model("eval", buf, cap);
}

/* ---------- evaluation files ---------- */

/* Reads path (a regular file of at most CUSTOS_CARD_EVAL_MAX_BYTES). Returns 0 with *out (NUL-terminated, caller
 * frees), CUSTOS_ENOTFOUND when absent, or another negative code with *why set to a static reason. */
static int read_small_file(const char *path, char **out, size_t *len, const char **why)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = "cannot be read";
        return errno == ENOENT ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    }
    struct stat st;
    int rc = 0;
    char *b = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        rc = CUSTOS_EINVAL;
        goto out;
    }
    if ((size_t)st.st_size > CUSTOS_CARD_EVAL_MAX_BYTES) {
        *why = "larger than 4 MiB";
        rc = CUSTOS_ETOOBIG;
        goto out;
    }
    b = malloc((size_t)st.st_size + 1);
    if (!b) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    b[got] = 0;
    *out = b;
    *len = got;
    b = NULL;
out:
    free(b);
    close(fd);
    return rc;
}

/* Writes result o to b, cut down as described at CUSTOS_CARD_EVAL_EMBED_BYTES when it is too large. */
static int write_result(custos_buf_t *b, json_object *o)
{
    custos_buf_t whole;
    custos_buf_init(&whole, CUSTOS_CARD_EVAL_EMBED_BYTES);
    int rc = custos_json_write(&whole, o);
    if (rc == 0) {
        rc = custos_buf_append(b, custos_buf_peek(&whole), custos_buf_size(&whole));
        custos_buf_dispose(&whole);
        return rc;
    }
    custos_buf_dispose(&whole);
    if (rc != CUSTOS_ETOOBIG)
        return rc;
    json_object *cut = json_object_new_object(), *omitted = json_object_new_array();
    if (!cut || !omitted) {
        json_object_put(cut);
        json_object_put(omitted);
        return CUSTOS_ENOMEM;
    }
    json_object_object_foreach(o, key, val)
    {
        custos_buf_t m;
        custos_buf_init(&m, CUSTOS_CARD_EVAL_MEMBER_BYTES);
        if (custos_json_write(&m, val) == 0)
            json_object_object_add(cut, key, json_object_get(val));
        else
            json_object_array_add(omitted, json_object_new_string(key));
        custos_buf_dispose(&m);
    }
    json_object_object_add(cut, "truncated", json_object_new_boolean(1));
    json_object_object_add(cut, "omitted", omitted);
    rc = custos_json_write(b, cut);
    json_object_put(cut);
    return rc;
}

/* Builds the evaluations array for dir as JSON text (caller frees). */
static char *load_evaluations(const char *dir)
{
    static const char *const files[] = CUSTOS_CARD_EVAL_FILES;
    custos_buf_t b;
    custos_buf_init(&b, 0);
    int rc = custos_buf_append_lit(&b, "[");
    bool first = true;
    for (size_t i = 0; !rc && i < sizeof(files) / sizeof(files[0]); i++) {
        char path[PATH_MAX], name[32];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        snprintf(name, sizeof(name), "%s", files[i]);
        char *dot = strrchr(name, '.');
        if (dot)
            *dot = 0;
        char *text = NULL;
        size_t len = 0;
        const char *why = NULL;
        int frc = read_small_file(path, &text, &len, &why);
        if (frc == CUSTOS_ENOTFOUND)
            continue;
        if (frc == CUSTOS_ENOMEM) {
            rc = frc;
            break;
        }
        json_object *o = NULL;
        if (frc == 0 && custos_json_parse(text, len, EVAL_JSON_DEPTH, &o, NULL, NULL) == 0 &&
            !json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            o = NULL;
        }
        if (frc == 0 && !o)
            why = "not a JSON object";
        free(text);
        rc = custos_buf_appendf(&b, "%s{\"name\":\"%s\",\"file\":\"%s\",", first ? "" : ",", name, files[i]);
        first = false;
        if (!rc && o) {
            rc = custos_buf_append_lit(&b, "\"result\":");
            rc = rc ? rc : write_result(&b, o);
        } else if (!rc) {
            rc = custos_buf_appendf(&b, "\"error\":\"%s\"", why ? why : "cannot be read");
        }
        json_object_put(o);
        rc = rc ? rc : custos_buf_append_lit(&b, "}");
    }
    rc = rc ? rc : custos_buf_append_lit(&b, "]");
    if (rc) {
        custos_buf_dispose(&b);
        return NULL;
    }
    return custos_buf_steal(&b, NULL);
}

/* Process-wide cache: one directory's evaluations as text, refreshed after CUSTOS_CARD_EVAL_TTL_S. The text is
 * copied out under the lock and parsed by each caller, so no json-c object is shared between threads. */
static pthread_mutex_t eval_lock = PTHREAD_MUTEX_INITIALIZER;
static char *eval_cache_dir, *eval_cache_text;
static uint64_t eval_cache_at_ns;

int custos_card_evaluations(const custos_config_t *cfg, json_object **out)
{
    char dir[PATH_MAX];
    custos_card_eval_dir(cfg, dir, sizeof(dir));
    uint64_t now = custos_now_ns();
    char *text = NULL;
    pthread_mutex_lock(&eval_lock);
    if (!eval_cache_text || !eval_cache_dir || strcmp(eval_cache_dir, dir) != 0 ||
        now - eval_cache_at_ns > (uint64_t)CUSTOS_CARD_EVAL_TTL_S * 1000000000ull) {
        char *fresh = load_evaluations(dir), *fdir = strdup(dir);
        if (fresh && fdir) {
            free(eval_cache_text);
            free(eval_cache_dir);
            eval_cache_text = fresh;
            eval_cache_dir = fdir;
            eval_cache_at_ns = now;
        } else {
            free(fresh);
            free(fdir);
        }
    }
    if (eval_cache_text && eval_cache_dir && strcmp(eval_cache_dir, dir) == 0)
        text = strdup(eval_cache_text);
    pthread_mutex_unlock(&eval_lock);
    *out = NULL;
    if (!text)
        return CUSTOS_ENOMEM;
    int rc = custos_json_parse(text, strlen(text), EVAL_JSON_DEPTH + 4, out, NULL, NULL);
    free(text);
    if (rc != 0 || !*out) {
        json_object_put(*out);
        *out = NULL;
        return CUSTOS_ENOMEM;
    }
    return 0;
}

/* ---------- policy and data handling ---------- */

static json_object *str_or_null(const char *s)
{
    return s ? json_object_new_string(s) : NULL;
}

static json_object *string_array(char *const *v, size_t n)
{
    json_object *a = json_object_new_array_ext((int)n);
    for (size_t i = 0; a && i < n; i++)
        json_object_array_add(a, json_object_new_string(v[i]));
    return a;
}

json_object *custos_card_policy(const custos_deployment_config_t *d)
{
    static const char *const cats[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    static const char *const srcs[CUSTOS_RAI_NSRC] = {"prompt", "completion"};
    const custos_rai_policy_config_t *p = d->rai;
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "name", json_object_new_string(p->name ? p->name : CUSTOS_RAI_DEFAULT_POLICY));
    json_object_object_add(
        o, "mode", json_object_new_string(p->mode == CUSTOS_RAI_MODE_ASYNC ? "asynchronous_filter" : "default"));
    json_object *filters = json_object_new_array();
    for (int k = 0; filters && k < CUSTOS_RAI_NCAT; k++) {
        for (int s = 0; s < CUSTOS_RAI_NSRC; s++) {
            const custos_rai_filter_t *f = &p->filters[k][s];
            json_object *e = json_object_new_object();
            if (!e)
                continue;
            json_object_object_add(e, "category", json_object_new_string(cats[k]));
            json_object_object_add(e, "source", json_object_new_string(srcs[s]));
            json_object_object_add(e, "enabled", json_object_new_boolean(f->enabled));
            json_object_object_add(e, "blocking", json_object_new_boolean(f->blocking));
            json_object_object_add(e, "threshold", json_object_new_string(custos_card_threshold_name(f->threshold)));
            json_object_array_add(filters, e);
        }
    }
    json_object_object_add(o, "content_filters", filters);
    json_object *sh = json_object_new_object();
    if (sh) {
        json_object_object_add(sh, "jailbreak", json_object_new_string(custos_card_action_name(p->jailbreak)));
        json_object_object_add(sh, "indirect_attack",
                               json_object_new_string(custos_card_action_name(p->indirect_attack)));
    }
    json_object_object_add(o, "prompt_shields", sh);
    json_object *pii = json_object_new_object();
    if (pii) {
        json_object_object_add(pii, "prompt",
                               json_object_new_string(custos_card_pii_action_name(p->pii[CUSTOS_RAI_PROMPT])));
        json_object_object_add(pii, "completion",
                               json_object_new_string(custos_card_pii_action_name(p->pii[CUSTOS_RAI_COMPLETION])));
    }
    json_object_object_add(o, "pii", pii);
    json_object *bl = json_object_new_array();
    for (size_t i = 0; bl && i < p->n_blocklists; i++) {
        const custos_rai_blocklist_ref_t *r = &p->blocklists[i];
        json_object *e = json_object_new_object();
        if (!e)
            continue;
        json_object_object_add(e, "name", json_object_new_string(r->name));
        json_object_object_add(e, "blocking", json_object_new_boolean(r->blocking));
        const char *src = r->source[CUSTOS_RAI_PROMPT] && r->source[CUSTOS_RAI_COMPLETION] ? "both"
                          : r->source[CUSTOS_RAI_PROMPT]                                   ? "prompt"
                                                                                           : "completion";
        json_object_object_add(e, "source", json_object_new_string(src));
        json_object_array_add(bl, e);
    }
    json_object_object_add(o, "blocklists", bl);
    return o;
}

json_object *custos_card_data_handling(const custos_config_t *cfg, const custos_deployment_config_t *d)
{
    json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "residency", json_object_new_string(custos_config_deployment_type_name(d->type)));
    json_object_object_add(o, "region", str_or_null(d->region));
    json_object_object_add(o, "data_zone", str_or_null(d->data_zone));
    json_object *bs = json_object_new_array();
    for (size_t i = 0; bs && i < d->n_backends; i++) {
        const custos_backend_config_t *b = d->backends[i];
        json_object *e = json_object_new_object();
        if (!e)
            continue;
        /* names and locations only: never a backend URL or credential */
        json_object_object_add(e, "backend", json_object_new_string(b->name));
        json_object_object_add(e, "provider", json_object_new_string(custos_config_provider_name(b->provider)));
        json_object_object_add(e, "region", str_or_null(b->region));
        json_object_object_add(e, "data_zone", str_or_null(b->data_zone));
        json_object_object_add(e, "zero_data_retention", json_object_new_boolean(b->zero_data_retention));
        json_object_object_add(e, "no_training", json_object_new_boolean(b->no_training));
        json_object_array_add(bs, e);
    }
    json_object_object_add(o, "backends", bs);
    json_object *rq = json_object_new_object();
    if (rq) {
        json_object_object_add(rq, "zero_data_retention", json_object_new_boolean(d->require_zero_data_retention));
        json_object_object_add(rq, "no_training", json_object_new_boolean(d->require_no_training));
        json_object_object_add(rq, "regions", string_array(d->require_regions, d->n_require_regions));
    }
    json_object_object_add(o, "requires", rq);
    json_object *rt = json_object_new_object();
    if (rt) {
        json_object_object_add(rt, "content_stored", json_object_new_boolean(!cfg->retention.content_none));
        json_object_object_add(rt, "content_days",
                               cfg->retention.content_none ? NULL : json_object_new_int64(cfg->retention.content_days));
    }
    json_object_object_add(o, "retention", rt);
    return o;
}

int custos_card_build(const custos_config_t *cfg, const custos_deployment_config_t *d, json_object **out)
{
    const custos_card_config_t *c = &d->card;
    json_object *o = json_object_new_object(), *ev = NULL;
    *out = NULL;
    if (!o)
        return CUSTOS_ENOMEM;
    json_object_object_add(o, "deployment", json_object_new_string(d->name));
    json_object_object_add(o, "model", json_object_new_string(d->model));
    json_object_object_add(o, "description", str_or_null(c->description));
    json_object_object_add(o, "owner", str_or_null(c->owner));
    json_object_object_add(o, "intended_uses", string_array(c->intended_uses, c->n_intended_uses));
    json_object_object_add(o, "out_of_scope_uses", string_array(c->out_of_scope_uses, c->n_out_of_scope_uses));
    json_object_object_add(o, "limitations", string_array(c->limitations, c->n_limitations));
    json_object_object_add(o, "policy", custos_card_policy(d));
    json_object_object_add(o, "data_handling", custos_card_data_handling(cfg, d));
    if (custos_card_evaluations(cfg, &ev) != 0) {
        json_object_put(o);
        return CUSTOS_ENOMEM;
    }
    json_object_object_add(o, "evaluations", ev);
    *out = o;
    return 0;
}
