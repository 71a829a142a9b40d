/* SPDX-License-Identifier: Apache-2.0
 * The review queue in the store (docs/reviews.md): rows in `reviews` (migration 4), content sealed in the vault,
 * decisions with their governance-log record inside one store transaction, lazy expiry, statistics. */
#include "governance/review.h"
#include "audit/govlog.h"
#include "crypto/crypto.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/json.h"
#include "util/log.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char *const STATUS[CUSTOS_REVIEW_NSTATUS] = {"pending", "approved", "edited", "rejected", "expired"};
static const char *const KINDS[] = {"hold", "signoff", "qa"};
static const char *const DECISIONS[] = {"approve", "edit", "reject"};
static const char *const TIERS[CUSTOS_REVIEW_NTIER] = {"high", "elevated", "standard"};

const char *custos_review_status_name(custos_review_status_t s)
{
    return (unsigned)s < CUSTOS_REVIEW_NSTATUS ? STATUS[s] : "pending";
}

int custos_review_status_parse(const char *s)
{
    for (int i = 0; s && i < CUSTOS_REVIEW_NSTATUS; i++)
        if (strcmp(s, STATUS[i]) == 0)
            return i;
    return -1;
}

const char *custos_review_kind_name(custos_review_kind_t k)
{
    return (unsigned)k < 3 ? KINDS[k] : "qa";
}

const char *custos_review_decision_name(custos_review_decision_t d)
{
    return (unsigned)d < 3 ? DECISIONS[d] : "";
}

int custos_review_decision_parse(const char *s)
{
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, DECISIONS[i]) == 0)
            return i;
    return -1;
}

int custos_review_tier_index(const char *tier)
{
    for (int i = 0; tier && i < CUSTOS_REVIEW_NTIER; i++)
        if (strcmp(tier, TIERS[i]) == 0)
            return i;
    return -1;
}

int custos_review_new_id(char *out)
{
    static const char hx[] = "0123456789abcdef";
    unsigned char r[12];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return CUSTOS_EIO;
    memcpy(out, "rev_", 4);
    for (size_t i = 0; i < sizeof(r); i++) {
        out[4 + 2 * i] = hx[r[i] >> 4];
        out[5 + 2 * i] = hx[r[i] & 15];
    }
    out[CUSTOS_REVIEW_ID_LEN] = 0;
    return 0;
}

bool custos_review_id_valid(const char *s, size_t n)
{
    if (!s || n != CUSTOS_REVIEW_ID_LEN || memcmp(s, "rev_", 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool custos_review_sampled(const char *request_id, uint32_t rate_ppm)
{
    if (rate_ppm == 0 || !request_id)
        return false;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)request_id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h % 1000000u < rate_ppm;
}

/* ---------- rows ---------- */

/* SELECT list producing the 16 columns row_meta reads (the store returns at most 16). */
#define META_COLS                                                                                                      \
    "id, request_id, use_case, tier || ' ' || kind, deployment, model, operation, stream, requester, status, "         \
    "created, deadline, decided, COALESCE(reviewer, '') || ' ' || COALESCE(decision, ''), content_stored, safety"

static void copy_col(char *dst, size_t cap, const custos_sv_t *c)
{
    size_t n = c->type == CUSTOS_SV_TEXT ? c->n : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, c->p, n);
    dst[n] = 0;
}

/* Splits "a b" (a has no spaces; b may be empty) into two fields. */
static void split2(const custos_sv_t *c, char *a, size_t acap, char *b, size_t bcap)
{
    char tmp[600];
    copy_col(tmp, sizeof(tmp), c);
    char *sp = strrchr(tmp, ' ');
    const char *second = "";
    if (sp) {
        *sp = 0;
        second = sp + 1;
    }
    snprintf(a, acap, "%s", tmp);
    snprintf(b, bcap, "%s", second);
}

static int row_meta(const custos_sv_t *c, size_t n, custos_review_meta_t *m)
{
    if (n != 16)
        return CUSTOS_EIO;
    memset(m, 0, sizeof(*m));
    copy_col(m->id, sizeof(m->id), &c[0]);
    copy_col(m->request_id, sizeof(m->request_id), &c[1]);
    copy_col(m->use_case, sizeof(m->use_case), &c[2]);
    split2(&c[3], m->tier, sizeof(m->tier), m->kind, sizeof(m->kind));
    copy_col(m->deployment, sizeof(m->deployment), &c[4]);
    copy_col(m->model, sizeof(m->model), &c[5]);
    copy_col(m->operation, sizeof(m->operation), &c[6]);
    m->stream = c[7].i != 0;
    copy_col(m->requester, sizeof(m->requester), &c[8]);
    char st[16];
    copy_col(st, sizeof(st), &c[9]);
    int s = custos_review_status_parse(st);
    m->status = s < 0 ? CUSTOS_REVIEW_PENDING : (custos_review_status_t)s;
    m->created_s = c[10].i;
    m->deadline_s = c[11].i;
    m->decided_s = c[12].i;
    split2(&c[13], m->reviewer, sizeof(m->reviewer), m->decision, sizeof(m->decision));
    m->content_stored = c[14].i != 0;
    copy_col(m->safety, sizeof(m->safety), &c[15]);
    if (!m->safety[0])
        snprintf(m->safety, sizeof(m->safety), "{}");
    return 0;
}

static int one_meta(void *ud, const custos_sv_t *c, size_t n)
{
    return row_meta(c, n, ud) == 0 ? 1 : CUSTOS_EIO;
}

static void vault_id(char *out, size_t cap, const char *id, bool decision)
{
    snprintf(out, cap, "review.%s%s", id, decision ? ".decision" : "");
}

int custos_review_enqueue(custos_store_t *st, struct custos_vault *v, const custos_review_meta_t *m,
                          const void *content, size_t n, int64_t expires_s)
{
    if (content && !v)
        return CUSTOS_EINVAL;
    custos_sv_t p[15] = {
        custos_sv_text(m->id),
        custos_sv_text(m->request_id),
        custos_sv_text(m->use_case),
        custos_sv_text(m->tier),
        custos_sv_text(m->kind),
        custos_sv_text(m->deployment),
        custos_sv_text(m->model),
        custos_sv_text(m->operation),
        custos_sv_int(m->stream ? 1 : 0),
        custos_sv_text(m->requester),
        custos_sv_text(custos_review_status_name(m->status)),
        custos_sv_int(m->created_s),
        custos_sv_int(m->deadline_s),
        custos_sv_int(content ? 1 : 0),
        custos_sv_text(m->safety[0] ? m->safety : "{}"),
    };
    int rc = custos_store_begin(st);
    if (rc != 0)
        return rc;
    rc = custos_store_exec(st,
                           "INSERT INTO reviews(id, request_id, use_case, tier, kind, deployment, model, operation, "
                           "stream, requester, status, created, deadline, content_stored, safety) "
                           "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           p, 15, NULL, NULL, NULL);
    if (rc == 0 && content) {
        char vid[CUSTOS_VAULT_ID_MAX];
        vault_id(vid, sizeof(vid), m->id, false);
        rc = custos_vault_put(v, CUSTOS_VAULT_NS_CONTENT, vid, content, n, m->created_s, expires_s);
    }
    if (rc == 0)
        rc = custos_store_commit(st);
    else
        custos_store_rollback(st);
    return rc;
}

int custos_review_expire(custos_store_t *st, int64_t now_s, int64_t *count)
{
    custos_sv_t p[1] = {custos_sv_int(now_s)};
    return custos_store_exec(st, "UPDATE reviews SET status = 'expired' WHERE status = 'pending' AND deadline <= ?", p,
                             1, NULL, NULL, count);
}

int custos_review_get(custos_store_t *st, const char *id, int64_t now_s, custos_review_meta_t *out)
{
    int rc = custos_review_expire(st, now_s, NULL);
    if (rc != 0)
        return rc;
    custos_sv_t p[1] = {custos_sv_text(id)};
    rc = custos_store_exec(st, "SELECT " META_COLS " FROM reviews WHERE id = ?", p, 1, one_meta, out, NULL);
    if (rc == 1)
        return 0;
    return rc == 0 ? CUSTOS_ENOTFOUND : rc;
}

int custos_review_content(struct custos_vault *v, const char *id, bool decision, unsigned char **out, size_t *n)
{
    char vid[CUSTOS_VAULT_ID_MAX];
    vault_id(vid, sizeof(vid), id, decision);
    return custos_vault_get(v, CUSTOS_VAULT_NS_CONTENT, vid, out, n);
}

typedef struct list_ctx {
    custos_review_list_fn fn;
    void *ud;
    unsigned limit, seen;
    bool *more;
} list_ctx_t;

static int list_row(void *ud, const custos_sv_t *c, size_t n)
{
    list_ctx_t *l = ud;
    if (l->seen++ >= l->limit) {
        *l->more = true;
        return 1;
    }
    custos_review_meta_t m;
    int rc = row_meta(c, n, &m);
    return rc ? rc : l->fn(l->ud, &m);
}

int custos_review_list(custos_store_t *st, int status, const char *use_case, const char *tier, const char *after,
                       unsigned limit, int64_t now_s, custos_review_list_fn fn, void *ud, bool *more)
{
    *more = false;
    int rc = custos_review_expire(st, now_s, NULL);
    if (rc != 0)
        return rc;
    if (limit == 0 || limit > CUSTOS_REVIEW_MAX_LIST)
        limit = CUSTOS_REVIEW_MAX_LIST;
    char sql[1024];
    custos_sv_t p[5];
    size_t np = 0;
    int w = snprintf(sql, sizeof(sql), "SELECT " META_COLS " FROM reviews WHERE 1 = 1");
    if (status >= 0) {
        w += snprintf(sql + w, sizeof(sql) - (size_t)w, " AND status = ?");
        p[np++] = custos_sv_text(custos_review_status_name((custos_review_status_t)status));
    }
    if (use_case) {
        w += snprintf(sql + w, sizeof(sql) - (size_t)w, " AND use_case = ?");
        p[np++] = custos_sv_text(use_case);
    }
    if (tier) {
        w += snprintf(sql + w, sizeof(sql) - (size_t)w, " AND tier = ?");
        p[np++] = custos_sv_text(tier);
    }
    if (after) {
        w += snprintf(sql + w, sizeof(sql) - (size_t)w, " AND {SEQ} < (SELECT {SEQ} FROM reviews WHERE id = ?)");
        p[np++] = custos_sv_text(after);
    }
    w += snprintf(sql + w, sizeof(sql) - (size_t)w, " ORDER BY {SEQ} DESC LIMIT ?");
    p[np++] = custos_sv_int((int64_t)limit + 1);
    if (w <= 0 || (size_t)w >= sizeof(sql))
        return CUSTOS_EINVAL;
    list_ctx_t l = {fn, ud, limit, 0, more};
    rc = custos_store_exec(st, sql, p, np, list_row, &l, NULL);
    return rc == 1 && *more ? 0 : rc;
}

/* ---------- decisions ---------- */

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned int dl = 0;
    if (EVP_Digest(p, n, d, &dl, EVP_sha256(), NULL) != 1 || dl != 32) {
        out[0] = 0;
        return;
    }
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = 0;
}

static int put_kv(custos_buf_t *b, const char *k, const char *v, bool first)
{
    int rc = custos_buf_appendf(b, "%s\"%s\":", first ? "" : ",", k);
    if (rc == 0)
        rc = v ? custos_json_append_string(b, v, strlen(v)) : custos_buf_append_lit(b, "null");
    return rc;
}

int custos_review_decide(custos_store_t *st, struct custos_vault *v, const char *id, const char *reviewer,
                         custos_review_decision_t d, const char *text, size_t text_len, const char *reason,
                         int64_t now_s, custos_review_meta_t *out)
{
    custos_buf_t rec, det;
    custos_buf_init(&rec, CUSTOS_SEAL_MAX);
    custos_buf_init(&det, CUSTOS_GOVLOG_MAX_DETAILS);
    char text_h[65] = "", reason_h[65] = "";
    bool began = false;
    int rc = custos_review_expire(st, now_s, NULL);
    if (rc != 0)
        goto out;
    rc = custos_store_begin(st);
    if (rc != 0)
        goto out;
    began = true;
    custos_sv_t p1[1] = {custos_sv_text(id)};
    rc = custos_store_exec(st, "SELECT " META_COLS " FROM reviews WHERE id = ?", p1, 1, one_meta, out, NULL);
    if (rc != 1) {
        rc = rc == 0 ? CUSTOS_ENOTFOUND : rc;
        goto out;
    }
    if (out->status == CUSTOS_REVIEW_EXPIRED || (out->status == CUSTOS_REVIEW_PENDING && out->deadline_s <= now_s)) {
        rc = CUSTOS_ETIMEDOUT;
        goto out;
    }
    if (out->status != CUSTOS_REVIEW_PENDING) {
        rc = CUSTOS_EAGAIN;
        goto out;
    }
    if (text)
        sha256_hex(text, text_len, text_h);
    if (reason)
        sha256_hex(reason, strlen(reason), reason_h);
    custos_review_status_t ns = d == CUSTOS_DECISION_APPROVE ? CUSTOS_REVIEW_APPROVED
                                : d == CUSTOS_DECISION_EDIT  ? CUSTOS_REVIEW_EDITED
                                                             : CUSTOS_REVIEW_REJECTED;
    custos_sv_t p2[6] = {custos_sv_text(custos_review_status_name(ns)),  custos_sv_int(now_s), custos_sv_text(reviewer),
                         custos_sv_text(custos_review_decision_name(d)), custos_sv_text(id),   custos_sv_int(now_s)};
    int64_t ch = 0;
    rc = custos_store_exec(st,
                           "UPDATE reviews SET status = ?, decided = ?, reviewer = ?, decision = ? WHERE id = ? AND "
                           "status = 'pending' AND deadline > ?",
                           p2, 6, NULL, NULL, &ch);
    if (rc == 0 && ch != 1)
        rc = CUSTOS_EAGAIN;
    if (rc != 0)
        goto out;
    /* the edit and the reason, sealed (after the row is claimed: a losing concurrent decision writes nothing) */
    if (text || reason) {
        rc = custos_buf_append_lit(&rec, "{\"text\":");
        rc = rc ? rc : (text ? custos_json_append_string(&rec, text, text_len) : custos_buf_append_lit(&rec, "null"));
        rc = rc ? rc : custos_buf_append_lit(&rec, ",\"reason\":");
        rc = rc ? rc
                : (reason ? custos_json_append_string(&rec, reason, strlen(reason))
                          : custos_buf_append_lit(&rec, "null"));
        rc = rc ? rc : custos_buf_append_lit(&rec, "}");
        if (rc != 0)
            goto out;
        if (!v) {
            rc = CUSTOS_EUNAVAIL;
            goto out;
        }
        char vid[CUSTOS_VAULT_ID_MAX];
        vault_id(vid, sizeof(vid), id, true);
        rc = custos_vault_put(v, CUSTOS_VAULT_NS_CONTENT, vid, custos_buf_peek(&rec), custos_buf_size(&rec), now_s, 0);
        if (rc != 0)
            goto out;
    }
    /* one governance record per decision: metadata and hashes only, never the text */
    rc = custos_buf_append_lit(&det, "{");
    rc = rc ? rc : put_kv(&det, "decision", custos_review_decision_name(d), true);
    rc = rc ? rc : put_kv(&det, "use_case", out->use_case, false);
    rc = rc ? rc : put_kv(&det, "tier", out->tier, false);
    rc = rc ? rc : put_kv(&det, "kind", out->kind, false);
    rc = rc ? rc : put_kv(&det, "deployment", out->deployment, false);
    rc = rc ? rc : put_kv(&det, "request_id", out->request_id, false);
    rc = rc ? rc : put_kv(&det, "requester", out->requester, false);
    rc = rc ? rc : put_kv(&det, "text_sha256", text ? text_h : NULL, false);
    rc = rc ? rc : put_kv(&det, "reason_sha256", reason ? reason_h : NULL, false);
    rc = rc ? rc : custos_buf_append_lit(&det, "}");
    if (rc == 0) {
        rc = custos_governance_event(reviewer, "review.decide", id, custos_buf_peek(&det));
        if (rc != 0)
            CUSTOS_ERROR("review: decision on %s not recorded in the governance log (%s); rolled back", id,
                         custos_strerror(rc));
    }
    if (rc != 0)
        goto out;
    rc = custos_store_commit(st);
    began = false;
    if (rc == 0) {
        out->status = ns;
        out->decided_s = now_s;
        snprintf(out->reviewer, sizeof(out->reviewer), "%s", reviewer);
        snprintf(out->decision, sizeof(out->decision), "%s", custos_review_decision_name(d));
    }
out:
    if (began)
        custos_store_rollback(st);
    if (rec.data)
        OPENSSL_cleanse(rec.data, rec.cap);
    custos_buf_dispose(&rec);
    custos_buf_dispose(&det);
    return rc;
}

/* ---------- statistics ---------- */

static int stats_row(void *ud, const custos_sv_t *c, size_t n)
{
    custos_review_stats_t *s = ud;
    if (n != 3)
        return CUSTOS_EIO;
    char tier[16], st[16];
    copy_col(tier, sizeof(tier), &c[0]);
    copy_col(st, sizeof(st), &c[1]);
    int t = custos_review_tier_index(tier), k = custos_review_status_parse(st);
    if (k < 0)
        return 0;
    s->total += c[2].i;
    s->by_status[k] += c[2].i;
    if (t >= 0)
        s->by_tier_status[t][k] += c[2].i;
    return 0;
}

typedef struct durations {
    int64_t *v;
    size_t n, cap;
} durations_t;

static int dur_row(void *ud, const custos_sv_t *c, size_t n)
{
    durations_t *d = ud;
    if (n != 1)
        return CUSTOS_EIO;
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 256;
        int64_t *nv = realloc(d->v, nc * sizeof(*nv));
        if (!nv)
            return CUSTOS_ENOMEM;
        d->v = nv;
        d->cap = nc;
    }
    d->v[d->n++] = c[0].i;
    return 0;
}

static int min_row(void *ud, const custos_sv_t *c, size_t n)
{
    int64_t *m = ud;
    *m = n == 1 && c[0].type == CUSTOS_SV_INT ? c[0].i : -1;
    return 0;
}

int custos_review_stats(custos_store_t *st, const char *use_case, int64_t now_s, custos_review_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->median_decision_s = -1;
    out->oldest_pending_age_s = -1;
    int rc = custos_review_expire(st, now_s, NULL);
    if (rc != 0)
        return rc;
    custos_sv_t p[1] = {custos_sv_text(use_case)};
    size_t np = use_case ? 1 : 0;
    rc = custos_store_exec(st,
                           use_case
                               ? "SELECT tier, status, COUNT(*) FROM reviews WHERE use_case = ? GROUP BY tier, status"
                               : "SELECT tier, status, COUNT(*) FROM reviews GROUP BY tier, status",
                           p, np, stats_row, out, NULL);
    if (rc != 0)
        return rc;
    out->decided = out->by_status[CUSTOS_REVIEW_APPROVED] + out->by_status[CUSTOS_REVIEW_EDITED] +
                   out->by_status[CUSTOS_REVIEW_REJECTED];
    durations_t d = {0};
    rc = custos_store_exec(st,
                           use_case
                               ? "SELECT decided - created FROM reviews WHERE decided > 0 AND use_case = ? ORDER BY 1"
                               : "SELECT decided - created FROM reviews WHERE decided > 0 ORDER BY 1",
                           p, np, dur_row, &d, NULL);
    if (rc == 0 && d.n) {
        size_t mid = d.n / 2;
        int64_t hi = d.v[mid], lo = d.n % 2 ? hi : d.v[mid - 1];
        out->median_decision_s = ((double)lo + (double)hi) * 0.5;
    }
    free(d.v);
    if (rc != 0)
        return rc;
    int64_t oldest = -1;
    rc = custos_store_exec(st,
                           use_case ? "SELECT MIN(created) FROM reviews WHERE status = 'pending' AND use_case = ?"
                                    : "SELECT MIN(created) FROM reviews WHERE status = 'pending'",
                           p, np, min_row, &oldest, NULL);
    if (rc == 0 && oldest >= 0)
        out->oldest_pending_age_s = now_s > oldest ? now_s - oldest : 0;
    return rc;
}

/* ---------- per-thread handles ---------- */

typedef struct local {
    char key[4200];
    custos_store_t *st;
    custos_vault_t *v;
} local_t;

static pthread_key_t local_key;
static pthread_once_t local_once = PTHREAD_ONCE_INIT;

static void local_free(void *p)
{
    local_t *l = p;
    if (!l)
        return;
    custos_vault_close(l->v);
    custos_store_close(l->st);
    free(l);
}

static void local_init(void)
{
    if (pthread_key_create(&local_key, local_free) != 0)
        CUSTOS_ERROR("review: no thread-local key");
}

void custos_review_local_drop(void)
{
    pthread_once(&local_once, local_init);
    local_t *l = pthread_getspecific(local_key);
    if (l) {
        (void)pthread_setspecific(local_key, NULL);
        local_free(l);
    }
}

int custos_review_local(const custos_storage_config_t *sc, custos_store_t **st, struct custos_vault **v, char *err,
                        size_t errlen)
{
    pthread_once(&local_once, local_init);
    char key[sizeof(((local_t *)0)->key)];
    snprintf(key, sizeof(key), "%d|%s|%s", (int)sc->driver, sc->path ? sc->path : "", sc->url ? sc->url : "");
    local_t *l = pthread_getspecific(local_key);
    if (l && strcmp(l->key, key) == 0 && l->st && l->v) {
        *st = l->st;
        *v = l->v;
        return 0;
    }
    if (l) {
        (void)pthread_setspecific(local_key, NULL);
        local_free(l);
    }
    l = calloc(1, sizeof(*l));
    if (!l)
        return CUSTOS_ENOMEM;
    snprintf(l->key, sizeof(l->key), "%s", key);
    int rc = custos_store_open_config(sc, false, &l->st, err, errlen);
    if (rc == 0)
        rc = custos_vault_open(sc, l->st, &l->v, err, errlen);
    if (rc == 0 && pthread_setspecific(local_key, l) != 0)
        rc = CUSTOS_ENOMEM;
    if (rc != 0) {
        local_free(l);
        return rc;
    }
    *st = l->st;
    *v = l->v;
    return 0;
}
