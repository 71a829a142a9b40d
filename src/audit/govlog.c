/* SPDX-License-Identifier: Apache-2.0
 * Governance log: hash-chained JSON-lines records (canonical form written by our own serialiser, fixed key order),
 * append with write(2)+fsync under a mutex, full-chain verification with tampering classification, torn-tail repair. */
#include "audit/govlog.h"

#include "util/buf.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/json.h"
#include "util/log.h"
#include "util/time.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_LEN 32
#define LINE_MAX_BYTES (64 * 1024)
#define DETAILS_MAX_DEPTH 4
/* `,"hash":"` + 64 hex + `"}` */
#define HASH_SUFFIX_PREFIX ",\"hash\":\""
#define HASH_SUFFIX_LEN (9 + CUSTOS_GOVLOG_HEX + 2)

struct custos_govlog {
    pthread_mutex_t mu;
    int fd;
    bool failed; /* an I/O error happened: refuse further appends */
    uint64_t seq;
    uint64_t size; /* bytes in the file */
    unsigned char head[HASH_LEN];
    /* signed checkpoints (custos_govlog_set_signing_key) */
    EVP_PKEY *sign_key;
    unsigned char key_id[CUSTOS_GOVLOG_KEY_ID_LEN / 2];
    uint64_t cp_seq; /* seq of the last checkpoint record (0: none) */
    uint64_t cp_ms;  /* monotonic time of the last checkpoint we wrote (or of set_signing_key) */
};

#define CP_ACTION "govlog.checkpoint"
#define CP_CONTEXT "custos-govlog-checkpoint-v1\n"
#define SIG_LEN 64

/* ---------- helpers ---------- */

static void hex_encode(const unsigned char *h, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < HASH_LEN; i++) {
        out[2 * i] = d[h[i] >> 4];
        out[2 * i + 1] = d[h[i] & 15];
    }
    out[CUSTOS_GOVLOG_HEX] = 0;
}

/* Decodes exactly 64 hex chars (lower_only: reject upper case, the canonical form). */
static int hex_decode(const char *s, size_t len, bool lower_only, unsigned char *out)
{
    if (len != CUSTOS_GOVLOG_HEX)
        return CUSTOS_EINVAL;
    for (int i = 0; i < HASH_LEN; i++) {
        int a = custos_hex_value((unsigned char)s[2 * i]), b = custos_hex_value((unsigned char)s[2 * i + 1]);
        if (a < 0 || b < 0 ||
            (lower_only && ((s[2 * i] >= 'A' && s[2 * i] <= 'F') || (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F'))))
            return CUSTOS_EINVAL;
        out[i] = (unsigned char)(a << 4 | b);
    }
    return 0;
}

static void hexn_encode(const unsigned char *h, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[h[i] >> 4];
        out[2 * i + 1] = d[h[i] & 15];
    }
    out[2 * n] = 0;
}

/* Exactly 2n lower-case hex digits. */
static int hexn_decode(const char *s, size_t n, unsigned char *out)
{
    if (!s || strlen(s) != 2 * n)
        return CUSTOS_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int a = custos_hex_value((unsigned char)s[2 * i]), b = custos_hex_value((unsigned char)s[2 * i + 1]);
        if (a < 0 || b < 0 || (s[2 * i] >= 'A' && s[2 * i] <= 'F') || (s[2 * i + 1] >= 'A' && s[2 * i + 1] <= 'F'))
            return CUSTOS_EINVAL;
        out[i] = (unsigned char)(a << 4 | b);
    }
    return 0;
}

/* The bytes a checkpoint signs: a context string, the seq and hash of the newest record it covers. */
static size_t cp_message(uint64_t seq, const unsigned char *head, char *out, size_t cap)
{
    char hx[CUSTOS_GOVLOG_HEX + 1];
    hexn_encode(head, HASH_LEN, hx);
    int n = snprintf(out, cap, CP_CONTEXT "%llu\n%s\n", (unsigned long long)seq, hx);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Key id: the first 8 bytes of SHA-256 of the raw 32-byte public key. */
static int key_id_of(EVP_PKEY *k, unsigned char *id)
{
    unsigned char pub[32], h[HASH_LEN];
    size_t pl = sizeof(pub);
    if (EVP_PKEY_get_raw_public_key(k, pub, &pl) != 1 || pl != sizeof(pub))
        return CUSTOS_EINVAL;
    unsigned int hl = 0;
    if (EVP_Digest(pub, pl, h, &hl, EVP_sha256(), NULL) != 1)
        return CUSTOS_ENOMEM;
    memcpy(id, h, CUSTOS_GOVLOG_KEY_ID_LEN / 2);
    return 0;
}

static int genesis_decode(const char *genesis_hex, unsigned char *out)
{
    if (!genesis_hex) {
        memset(out, 0, HASH_LEN);
        return 0;
    }
    return hex_decode(genesis_hex, strlen(genesis_hex), false, out);
}

static int sha256(const void *p, size_t n, unsigned char *out)
{
    unsigned int len = 0;
    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != HASH_LEN)
        return CUSTOS_ENOMEM;
    return 0;
}

static void format_time(uint64_t ms, char *out, size_t outlen)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    int r = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
    if (r < 0 && outlen)
        out[0] = 0;
}

static bool action_ok(const char *a)
{
    for (const char *p = a; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

/* Validates the event arguments; on success *details gets the parsed details object (new reference, NULL when
 * details_json is NULL). */
static int check_event(const char *actor, const char *action, const char *target, const char *details_json,
                       json_object **details)
{
    *details = NULL;
    if (!actor || !*actor || !action || !*action || !target || !*target)
        return CUSTOS_EINVAL;
    if (strlen(actor) > CUSTOS_GOVLOG_MAX_ACTOR || strlen(action) > CUSTOS_GOVLOG_MAX_ACTION ||
        strlen(target) > CUSTOS_GOVLOG_MAX_TARGET)
        return CUSTOS_ETOOBIG;
    if (!action_ok(action))
        return CUSTOS_EINVAL;
    if (!details_json)
        return 0;
    size_t n = strlen(details_json);
    if (n > CUSTOS_GOVLOG_MAX_DETAILS)
        return CUSTOS_ETOOBIG;
    json_object *o = NULL;
    int rc = custos_json_parse(details_json, n, DETAILS_MAX_DEPTH, &o, NULL, NULL);
    if (rc < 0)
        return rc == CUSTOS_ENOMEM ? rc : CUSTOS_EINVAL;
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return CUSTOS_EINVAL;
    }
    *details = o;
    return 0;
}

/* The canonical bytes of a record without its hash field:
 * {"v":1,"seq":N,"time":"…","actor":"…","action":"…","target":"…","details":{…},"prev":"<hex>"} */
static int build_canonical(custos_buf_t *b, uint64_t seq, const char *time, const char *actor, const char *action,
                           const char *target, json_object *details, const char *prev_hex)
{
    int rc = 0;
    rc |= custos_buf_append_lit(b, "{\"v\":1,\"seq\":");
    rc |= custos_buf_append_u64(b, seq);
    rc |= custos_buf_append_lit(b, ",\"time\":");
    rc |= custos_json_append_string(b, time, strlen(time));
    rc |= custos_buf_append_lit(b, ",\"actor\":");
    rc |= custos_json_append_string(b, actor, strlen(actor));
    rc |= custos_buf_append_lit(b, ",\"action\":");
    rc |= custos_json_append_string(b, action, strlen(action));
    rc |= custos_buf_append_lit(b, ",\"target\":");
    rc |= custos_json_append_string(b, target, strlen(target));
    rc |= custos_buf_append_lit(b, ",\"details\":");
    if (details)
        rc |= custos_json_write(b, details);
    else
        rc |= custos_buf_append_lit(b, "{}");
    rc |= custos_buf_append_lit(b, ",\"prev\":\"");
    rc |= custos_buf_append(b, prev_hex, CUSTOS_GOVLOG_HEX);
    rc |= custos_buf_append_lit(b, "\"}");
    return rc ? CUSTOS_ENOMEM : 0;
}

/* ---------- parsing one line ---------- */

typedef struct parsed {
    uint64_t seq;
    unsigned char prev[HASH_LEN];
    unsigned char hash[HASH_LEN]; /* stored */
    bool hash_ok;                 /* stored == computed */
    int cp;                       /* 0: not a checkpoint; 1: checkpoint (fields below); -1: malformed checkpoint */
    uint64_t cp_seq;
    unsigned char cp_head[HASH_LEN], cp_key[CUSTOS_GOVLOG_KEY_ID_LEN / 2], cp_sig[SIG_LEN];
} parsed_t;

static const char *str_field(json_object *o, const char *key);

/* details of a checkpoint: {"alg":"ed25519","key":"<16 hex>","seq":N,"head":"<64 hex>","sig":"<128 hex>"} */
static void parse_checkpoint(json_object *d, parsed_t *p)
{
    json_object *seqo;
    const char *alg = str_field(d, "alg");
    p->cp = -1;
    if (json_object_object_length(d) != 5 || !alg || strcmp(alg, "ed25519") != 0 ||
        !json_object_object_get_ex(d, "seq", &seqo) || !json_object_is_type(seqo, json_type_int) ||
        json_object_get_int64(seqo) < 0 || hexn_decode(str_field(d, "key"), sizeof(p->cp_key), p->cp_key) < 0 ||
        hexn_decode(str_field(d, "head"), HASH_LEN, p->cp_head) < 0 ||
        hexn_decode(str_field(d, "sig"), SIG_LEN, p->cp_sig) < 0)
        return;
    p->cp_seq = (uint64_t)json_object_get_int64(seqo);
    p->cp = 1;
}

static const char *str_field(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* Parses line[0, len) (no newline). Returns 0 with *p filled, or CUSTOS_EINVAL with *why set. */
static int parse_line(const char *line, size_t len, parsed_t *p, const char **why)
{
    int rc = CUSTOS_EINVAL;
    json_object *o = NULL;
    custos_buf_t canon, re;
    custos_buf_init(&canon, LINE_MAX_BYTES + 16);
    custos_buf_init(&re, LINE_MAX_BYTES + 16);
    *why = "not a governance record";
    p->cp = 0;
    if (len < HASH_SUFFIX_LEN + 2 || line[len - 1] != '}' || line[len - 2] != '"' ||
        memcmp(line + len - HASH_SUFFIX_LEN, HASH_SUFFIX_PREFIX, 9) != 0) {
        *why = "no trailing hash field";
        goto out;
    }
    if (hex_decode(line + len - HASH_SUFFIX_LEN + 9, CUSTOS_GOVLOG_HEX, true, p->hash) < 0) {
        *why = "hash field is not 64 lower-case hex digits";
        goto out;
    }
    if (custos_buf_append(&canon, line, len - HASH_SUFFIX_LEN) < 0 || custos_buf_append_lit(&canon, "}") < 0) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    int prc =
        custos_json_parse(custos_buf_peek(&canon), custos_buf_size(&canon), DETAILS_MAX_DEPTH + 1, &o, NULL, NULL);
    if (prc == CUSTOS_ENOMEM) {
        rc = prc;
        goto out;
    }
    if (prc < 0 || !o || !json_object_is_type(o, json_type_object)) {
        *why = "not valid JSON";
        goto out;
    }
    json_object *v, *seqo, *details;
    const char *time = str_field(o, "time"), *actor = str_field(o, "actor"), *action = str_field(o, "action"),
               *target = str_field(o, "target"), *prev = str_field(o, "prev");
    if (!json_object_object_get_ex(o, "v", &v) || !json_object_is_type(v, json_type_int) ||
        json_object_get_int64(v) != 1) {
        *why = "missing or unsupported version \"v\"";
        goto out;
    }
    if (!json_object_object_get_ex(o, "seq", &seqo) || !json_object_is_type(seqo, json_type_int) ||
        json_object_get_int64(seqo) < 1) {
        *why = "missing or invalid \"seq\"";
        goto out;
    }
    if (!json_object_object_get_ex(o, "details", &details) || !json_object_is_type(details, json_type_object) ||
        !time || !actor || !action || !target || !prev) {
        *why = "missing or mistyped field";
        goto out;
    }
    if (hex_decode(prev, strlen(prev), true, p->prev) < 0) {
        *why = "\"prev\" is not 64 lower-case hex digits";
        goto out;
    }
    p->seq = (uint64_t)json_object_get_int64(seqo);
    if (build_canonical(&re, p->seq, time, actor, action, target, details, prev) < 0) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    if (custos_buf_size(&re) != custos_buf_size(&canon) ||
        memcmp(custos_buf_peek(&re), custos_buf_peek(&canon), custos_buf_size(&re)) != 0) {
        *why = "not in canonical form (fields added, reordered or re-encoded)";
        goto out;
    }
    unsigned char h[HASH_LEN];
    if (sha256(custos_buf_peek(&canon), custos_buf_size(&canon), h) < 0) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    p->hash_ok = memcmp(h, p->hash, HASH_LEN) == 0;
    if (strcmp(action, CP_ACTION) == 0)
        parse_checkpoint(details, p);
    rc = 0;
out:
    json_object_put(o);
    custos_buf_dispose(&canon);
    custos_buf_dispose(&re);
    return rc;
}

/* ---------- verification ---------- */

typedef struct rec {
    uint64_t seq, line;
    unsigned char prev[HASH_LEN], hash[HASH_LEN];
    bool hash_ok;
    bool after_malformed; /* a malformed line lies between this record and the previous one */
    bool flagged;         /* already explained by a finding (inserted, reordered, duplicate) */
    bool reordered;
    int cp; /* as in parsed_t */
    uint64_t cp_seq;
    unsigned char cp_head[HASH_LEN], cp_key[CUSTOS_GOVLOG_KEY_ID_LEN / 2], cp_sig[SIG_LEN];
} rec_t;

typedef struct finding {
    uint64_t line, seq;
    char *msg;
} finding_t;

typedef struct vstate {
    rec_t *r;
    size_t n, cap;
    finding_t *f;
    size_t nf, capf;
    size_t *by_hash, *by_prev; /* indexes sorted by hash / prev (then index) */
    bool oom;
} vstate_t;

static void add_finding(vstate_t *vs, uint64_t line, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_finding(vstate_t *vs, uint64_t line, uint64_t seq, const char *fmt, ...)
{
    if (vs->nf == vs->capf) {
        size_t nc = vs->capf ? vs->capf * 2 : 16;
        finding_t *nf = realloc(vs->f, nc * sizeof(*nf));
        if (!nf) {
            vs->oom = true;
            return;
        }
        vs->f = nf;
        vs->capf = nc;
    }
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    int k = vasprintf(&m, fmt, ap);
    va_end(ap);
    if (k < 0) {
        vs->oom = true;
        return;
    }
    vs->f[vs->nf++] = (finding_t){.line = line, .seq = seq, .msg = m};
}

static vstate_t *g_sort_vs; /* qsort context; verification under g_sort_mu */
static pthread_mutex_t g_sort_mu = PTHREAD_MUTEX_INITIALIZER;

static int cmp_by_hash(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = memcmp(g_sort_vs->r[i].hash, g_sort_vs->r[j].hash, HASH_LEN);
    return c ? c : (i > j) - (i < j);
}

static int cmp_by_prev(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = memcmp(g_sort_vs->r[i].prev, g_sort_vs->r[j].prev, HASH_LEN);
    return c ? c : (i > j) - (i < j);
}

static int cmp_finding(const void *a, const void *b)
{
    const finding_t *x = a, *y = b;
    return (x->line > y->line) - (x->line < y->line);
}

/* First index (lowest file position) whose hash (field 0) or prev (field 1) equals h, or SIZE_MAX. */
static size_t lookup(vstate_t *vs, const unsigned char *h, int field)
{
    size_t *idx = field ? vs->by_prev : vs->by_hash;
    size_t lo = 0, hi = vs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const unsigned char *k = field ? vs->r[idx[mid]].prev : vs->r[idx[mid]].hash;
        if (memcmp(k, h, HASH_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < vs->n && memcmp(field ? vs->r[idx[lo]].prev : vs->r[idx[lo]].hash, h, HASH_LEN) == 0)
        return idx[lo];
    return SIZE_MAX;
}

/* First index > after whose prev equals h, or SIZE_MAX. */
static size_t lookup_prev_after(vstate_t *vs, const unsigned char *h, size_t after)
{
    size_t lo = 0, hi = vs->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(vs->r[vs->by_prev[mid]].prev, h, HASH_LEN) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < vs->n && memcmp(vs->r[vs->by_prev[lo]].prev, h, HASH_LEN) == 0; lo++)
        if (vs->by_prev[lo] > after)
            return vs->by_prev[lo];
    return SIZE_MAX;
}

/* Reads path line by line into vs (records) and findings (malformed, torn). */
static int load_file(const char *path, vstate_t *vs, custos_govlog_verify_result_t *res)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? CUSTOS_ENOTFOUND : CUSTOS_EIO;
    int rc = 0;
    char *line = malloc(LINE_MAX_BYTES + 1);
    if (!line) {
        fclose(f);
        return CUSTOS_ENOMEM;
    }
    uint64_t lineno = 0;
    bool pending_malformed = false;
    for (;;) {
        size_t len = 0;
        bool too_long = false, nul = false, nl = false;
        int c;
        while ((c = getc_unlocked(f)) != EOF) {
            if (c == '\n') {
                nl = true;
                break;
            }
            if (c == 0)
                nul = true;
            if (len < LINE_MAX_BYTES)
                line[len++] = (char)c;
            else
                too_long = true;
        }
        if (ferror(f)) {
            rc = CUSTOS_EIO;
            break;
        }
        if (!nl && len == 0 && !too_long)
            break; /* clean end of file */
        lineno++;
        if (!nl) {
            res->torn = 1;
            add_finding(vs, lineno, 0,
                        "torn: the last line (%zu%s bytes) has no newline: a write was interrupted (crash) or the "
                        "file was cut; `custos audit repair` removes it",
                        len, too_long ? "+" : "");
            break;
        }
        res->records++;
        parsed_t p;
        const char *why = NULL;
        int prc = too_long ? CUSTOS_EINVAL : nul ? CUSTOS_EINVAL : parse_line(line, len, &p, &why);
        if (prc == CUSTOS_ENOMEM) {
            rc = prc;
            break;
        }
        if (prc < 0) {
            add_finding(vs, lineno, 0, "malformed: %s (record modified or corrupted)",
                        too_long ? "line longer than 64 KiB"
                        : nul    ? "NUL bytes in line"
                                 : why);
            pending_malformed = true;
            continue;
        }
        if (vs->n == vs->cap) {
            size_t nc = vs->cap ? vs->cap * 2 : 64;
            rec_t *nr = realloc(vs->r, nc * sizeof(*nr));
            if (!nr) {
                rc = CUSTOS_ENOMEM;
                break;
            }
            vs->r = nr;
            vs->cap = nc;
        }
        rec_t *r = &vs->r[vs->n++];
        *r = (rec_t){.seq = p.seq, .line = lineno, .hash_ok = p.hash_ok, .after_malformed = pending_malformed};
        memcpy(r->prev, p.prev, HASH_LEN);
        memcpy(r->hash, p.hash, HASH_LEN);
        r->cp = p.cp;
        if (p.cp == 1) {
            r->cp_seq = p.cp_seq;
            memcpy(r->cp_head, p.cp_head, HASH_LEN);
            memcpy(r->cp_key, p.cp_key, sizeof(r->cp_key));
            memcpy(r->cp_sig, p.cp_sig, SIG_LEN);
        }
        pending_malformed = false;
    }
    free(line);
    fclose(f);
    return rc;
}

static void analyse(vstate_t *vs, const unsigned char *genesis)
{
    const unsigned char *prev_hash = genesis;
    uint64_t prev_seq = 0, prev_line = 0;
    for (size_t i = 0; i < vs->n; i++) {
        rec_t *r = &vs->r[i];
        if (r->flagged)
            continue;
        size_t first = lookup(vs, r->hash, 0);
        if (first != i) {
            r->flagged = true;
            add_finding(vs, r->line, r->seq, "duplicate: this record repeats line %llu (seq %llu)",
                        (unsigned long long)vs->r[first].line, (unsigned long long)vs->r[first].seq);
            continue;
        }
        if (!r->hash_ok) {
            add_finding(vs, r->line, r->seq,
                        "modified: the record's content does not match its hash (a field was changed)");
            /* its stored hash still identifies it for the next link */
        } else if (memcmp(r->prev, prev_hash, HASH_LEN) == 0) {
            if (r->seq != prev_seq + 1)
                add_finding(vs, r->line, r->seq,
                            "forged: seq %llu does not follow seq %llu (line %llu) although prev links to it",
                            (unsigned long long)r->seq, (unsigned long long)prev_seq, (unsigned long long)prev_line);
        } else {
            size_t j = lookup(vs, r->prev, 0);
            if (j != SIZE_MAX && j > i) {
                r->flagged = r->reordered = true;
                add_finding(
                    vs, r->line, r->seq, "reordered: seq %llu appears before its predecessor seq %llu at line %llu",
                    (unsigned long long)r->seq, (unsigned long long)vs->r[j].seq, (unsigned long long)vs->r[j].line);
                continue;
            }
            /* a later record continues the chain from our predecessor: r is an intruder */
            size_t k = lookup_prev_after(vs, prev_hash, i);
            if (k != SIZE_MAX) {
                r->flagged = true;
                add_finding(vs, r->line, r->seq,
                            "inserted: not part of the chain: seq %llu (line %llu) links to seq %llu (line %llu), "
                            "skipping this record",
                            (unsigned long long)vs->r[k].seq, (unsigned long long)vs->r[k].line,
                            (unsigned long long)prev_seq, (unsigned long long)prev_line);
                continue;
            }
            if (j != SIZE_MAX && j < i) {
                if (!vs->r[j].reordered) {
                    /* the chain skips the records between j and i: they are not part of it */
                    for (size_t m = j + 1; m < i; m++) {
                        if (vs->r[m].flagged)
                            continue;
                        vs->r[m].flagged = true;
                        add_finding(vs, vs->r[m].line, vs->r[m].seq,
                                    "inserted: not part of the chain: seq %llu (line %llu) links directly to seq %llu "
                                    "(line %llu)",
                                    (unsigned long long)r->seq, (unsigned long long)r->line,
                                    (unsigned long long)vs->r[j].seq, (unsigned long long)vs->r[j].line);
                    }
                }
                if (r->seq != vs->r[j].seq + 1)
                    add_finding(vs, r->line, r->seq, "forged: seq %llu does not follow seq %llu (line %llu)",
                                (unsigned long long)r->seq, (unsigned long long)vs->r[j].seq,
                                (unsigned long long)vs->r[j].line);
            } else {
                /* prev matches no record and nothing later continues from our predecessor: records before r were
                 * deleted (or the predecessor was rewritten) */
                if (r->after_malformed) {
                    /* the predecessor is the malformed line, already reported */
                } else if (r->seq > prev_seq + 1) {
                    add_finding(vs, r->line, r->seq,
                                "deleted: seq %llu..%llu missing between seq %llu (line %llu) and seq %llu "
                                "(line %llu)",
                                (unsigned long long)prev_seq + 1, (unsigned long long)r->seq - 1,
                                (unsigned long long)prev_seq, (unsigned long long)prev_line, (unsigned long long)r->seq,
                                (unsigned long long)r->line);
                } else {
                    add_finding(vs, r->line, r->seq,
                                "deleted: chain broken between seq %llu (line %llu) and seq %llu (line %llu): prev "
                                "does not match the preceding record (records removed and renumbered, or the "
                                "preceding record rewritten with a recomputed hash)",
                                (unsigned long long)prev_seq, (unsigned long long)prev_line, (unsigned long long)r->seq,
                                (unsigned long long)r->line);
                }
            }
        }
        prev_hash = r->hash;
        prev_seq = r->seq;
        prev_line = r->line;
    }
}

/* Checks every checkpoint record (and its signature when pk is given); fills the checkpoint fields of res. */
static void check_checkpoints(vstate_t *vs, EVP_PKEY *const *pks, size_t npk, bool signed_tail,
                              custos_govlog_verify_result_t *res)
{
    unsigned char kids[CUSTOS_GOVLOG_MAX_PUBKEYS][CUSTOS_GOVLOG_KEY_ID_LEN / 2];
    char kx[CUSTOS_GOVLOG_KEY_ID_LEN + 1], gx[CUSTOS_GOVLOG_KEY_ID_LEN + 1];
    for (size_t k = 0; k < npk; k++)
        if (key_id_of(pks[k], kids[k]) < 0) {
            vs->oom = true;
            return;
        }
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < vs->n; i++) {
        rec_t *r = &vs->r[i];
        if (!r->cp || !r->hash_ok || r->flagged)
            continue; /* not a checkpoint, or already a finding */
        if (r->cp < 0) {
            add_finding(vs, r->line, r->seq, "checkpoint: malformed checkpoint details (forged)");
            continue;
        }
        if (r->cp_seq + 1 != r->seq || memcmp(r->cp_head, r->prev, HASH_LEN) != 0) {
            add_finding(
                vs, r->line, r->seq,
                "checkpoint: does not sign its predecessor (it names seq %llu): forged or copied from elsewhere",
                (unsigned long long)r->cp_seq);
            continue;
        }
        if (npk) {
            size_t k = 0;
            while (k < npk && memcmp(r->cp_key, kids[k], sizeof(kids[k])) != 0)
                k++;
            if (k == npk) {
                hexn_encode(r->cp_key, sizeof(kids[0]), kx);
                hexn_encode(kids[0], sizeof(kids[0]), gx);
                add_finding(vs, r->line, r->seq,
                            "checkpoint: signed with another key (key id %s, expected %s%s): forged, or made with a "
                            "signing key other than the one(s) given",
                            kx, gx, npk > 1 ? " or another given key" : "");
                continue;
            }
            EVP_PKEY *pk = pks[k];
            char msg[160];
            size_t ml = cp_message(r->cp_seq, r->cp_head, msg, sizeof(msg));
            EVP_MD_CTX *ctx = EVP_MD_CTX_new();
            bool good = ctx && ml && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pk) == 1 &&
                        EVP_DigestVerify(ctx, r->cp_sig, SIG_LEN, (const unsigned char *)msg, ml) == 1;
            EVP_MD_CTX_free(ctx);
            if (!good) {
                add_finding(vs, r->line, r->seq, "checkpoint: bad signature (forged or modified)");
                continue;
            }
        }
        res->checkpoints++;
        last = i;
    }
    res->signatures_checked = npk > 0;
    if (last != SIZE_MAX) {
        res->last_checkpoint_seq = vs->r[last].seq;
        res->last_checkpoint_line = vs->r[last].line;
    }
    res->unsigned_tail = res->last_seq > res->last_checkpoint_seq ? res->last_seq - res->last_checkpoint_seq : 0;
    if (signed_tail && res->unsigned_tail) {
        uint64_t last_line = vs->n ? vs->r[vs->n - 1].line : 0;
        add_finding(vs, last_line, res->last_seq,
                    "truncated: %llu record(s) after the last %s checkpoint (seq %llu): a stopped custos ends its log "
                    "with a checkpoint, so records after it may have been removed or rewritten (or custos crashed, or "
                    "is still running)",
                    (unsigned long long)res->unsigned_tail, npk ? "signed" : "",
                    (unsigned long long)res->last_checkpoint_seq);
    }
}

int custos_govlog_verify_file(const char *path, const char *genesis_hex, const char *expect_head_hex, FILE *report,
                              custos_govlog_verify_result_t *res)
{
    return custos_govlog_verify_file_signed(path, genesis_hex, expect_head_hex, NULL, 0, false, report, res);
}

int custos_govlog_verify_file_signed(const char *path, const char *genesis_hex, const char *expect_head_hex,
                                     const char *const *pubkey_paths, size_t npub, bool signed_tail, FILE *report,
                                     custos_govlog_verify_result_t *res)
{
    custos_govlog_verify_result_t dummy;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    unsigned char genesis[HASH_LEN], expect[HASH_LEN];
    if (genesis_decode(genesis_hex, genesis) < 0)
        return CUSTOS_EINVAL;
    if (expect_head_hex && hex_decode(expect_head_hex, strlen(expect_head_hex), false, expect) < 0)
        return CUSTOS_EINVAL;
    hex_encode(genesis, res->head);
    EVP_PKEY *pks[CUSTOS_GOVLOG_MAX_PUBKEYS] = {0};
    vstate_t vs = {0};
    int rc = 0;
    if (npub > CUSTOS_GOVLOG_MAX_PUBKEYS)
        return CUSTOS_EINVAL;
    for (size_t k = 0; k < npub; k++) {
        FILE *kf = fopen(pubkey_paths[k], "re");
        if (kf) {
            pks[k] = PEM_read_PUBKEY(kf, NULL, NULL, NULL);
            fclose(kf);
        }
        if (!pks[k] || EVP_PKEY_get_base_id(pks[k]) != EVP_PKEY_ED25519) {
            rc = CUSTOS_EINVAL;
            goto out;
        }
    }
    rc = load_file(path, &vs, res);
    if (rc < 0)
        goto out;
    vs.by_hash = malloc((vs.n ? vs.n : 1) * sizeof(size_t));
    vs.by_prev = malloc((vs.n ? vs.n : 1) * sizeof(size_t));
    if (!vs.by_hash || !vs.by_prev) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < vs.n; i++)
        vs.by_hash[i] = vs.by_prev[i] = i;
    pthread_mutex_lock(&g_sort_mu);
    g_sort_vs = &vs;
    qsort(vs.by_hash, vs.n, sizeof(size_t), cmp_by_hash);
    qsort(vs.by_prev, vs.n, sizeof(size_t), cmp_by_prev);
    g_sort_vs = NULL;
    pthread_mutex_unlock(&g_sort_mu);

    analyse(&vs, genesis);
    if (vs.n) {
        hex_encode(vs.r[vs.n - 1].hash, res->head);
        res->last_seq = vs.r[vs.n - 1].seq;
    }
    check_checkpoints(&vs, pks, npub, signed_tail, res);
    if (expect_head_hex && memcmp(expect, genesis, HASH_LEN) != 0) {
        size_t k = lookup(&vs, expect, 0);
        if (k == SIZE_MAX || !vs.r[k].hash_ok) {
            char ex[CUSTOS_GOVLOG_HEX + 1];
            hex_encode(expect, ex);
            uint64_t last_line = vs.n ? vs.r[vs.n - 1].line : 0;
            add_finding(&vs, last_line + 1, res->last_seq + 1,
                        "truncated: the expected head %s is not in the log; it ends at seq %llu (line %llu): records "
                        "were removed from the tail or rewritten",
                        ex, (unsigned long long)res->last_seq, (unsigned long long)last_line);
        }
    }
    if (vs.oom) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    if (vs.nf)
        qsort(vs.f, vs.nf, sizeof(*vs.f), cmp_finding);
    res->problems = (unsigned)vs.nf;
    if (vs.nf)
        res->first_bad_line = vs.f[0].line;
    if (report)
        for (size_t i = 0; i < vs.nf; i++) {
            if (vs.f[i].seq)
                fprintf(report, "line %llu (seq %llu): %s\n", (unsigned long long)vs.f[i].line,
                        (unsigned long long)vs.f[i].seq, vs.f[i].msg);
            else
                fprintf(report, "line %llu: %s\n", (unsigned long long)vs.f[i].line, vs.f[i].msg);
        }
    rc = vs.nf ? CUSTOS_EPROTO : 0;
out:
    for (size_t i = 0; i < vs.nf; i++)
        free(vs.f[i].msg);
    free(vs.f);
    free(vs.r);
    free(vs.by_hash);
    free(vs.by_prev);
    for (size_t k = 0; k < CUSTOS_GOVLOG_MAX_PUBKEYS; k++)
        EVP_PKEY_free(pks[k]);
    return rc;
}

/* ---------- the log handle ---------- */

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return CUSTOS_ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return CUSTOS_EIO;
    int rc = fsync(fd) < 0 ? CUSTOS_EIO : 0;
    close(fd);
    return rc;
}

int custos_govlog_open(const char *path, const char *genesis_hex, custos_govlog_t **out)
{
    *out = NULL;
    if (!path || !*path)
        return CUSTOS_EINVAL;
    unsigned char genesis[HASH_LEN];
    if (genesis_decode(genesis_hex, genesis) < 0)
        return CUSTOS_EINVAL;
    custos_govlog_t *log = calloc(1, sizeof(*log));
    if (!log)
        return CUSTOS_ENOMEM;
    log->fd = -1;
    pthread_mutex_init(&log->mu, NULL);
    int rc;
    bool created = access(path, F_OK) != 0;
    log->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log->fd < 0) {
        CUSTOS_ERROR("governance log %s: cannot open: %s", path, strerror(errno));
        rc = CUSTOS_EIO;
        goto fail;
    }
    /* writers on other descriptors (other processes) hold the lock only for one append */
    while (flock(log->fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            rc = CUSTOS_EIO;
            goto fail;
        }
    }
    if (created && (rc = fsync_dir_of(path)) < 0)
        goto fail;
    custos_govlog_verify_result_t res;
    rc = custos_govlog_verify_file(path, genesis_hex, NULL, NULL, &res);
    if (rc == CUSTOS_EPROTO) {
        CUSTOS_ERROR("governance log %s: %s at line %llu (%u problem(s)); refusing to append. Run `custos audit "
                     "verify %s`%s",
                     path, res.torn ? "torn last line" : "verification failed", (unsigned long long)res.first_bad_line,
                     res.problems, path, res.torn && res.problems == 1 ? " then `custos audit repair`" : "");
        goto fail;
    }
    if (rc < 0) {
        CUSTOS_ERROR("governance log %s: cannot verify: %s", path, custos_strerror(rc));
        goto fail;
    }
    struct stat st;
    if (fstat(log->fd, &st) < 0) {
        rc = CUSTOS_EIO;
        goto fail;
    }
    log->size = (uint64_t)st.st_size;
    log->seq = res.last_seq;
    log->cp_seq = res.last_checkpoint_seq;
    if (hex_decode(res.head, CUSTOS_GOVLOG_HEX, true, log->head) < 0) {
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    flock(log->fd, LOCK_UN);
    *out = log;
    return 0;
fail:
    custos_govlog_free(log);
    return rc;
}

void custos_govlog_free(custos_govlog_t *log)
{
    if (!log)
        return;
    if (log->fd >= 0)
        close(log->fd);
    EVP_PKEY_free(log->sign_key);
    pthread_mutex_destroy(&log->mu);
    free(log);
}

void custos_govlog_head(custos_govlog_t *log, char *out, uint64_t *seq)
{
    pthread_mutex_lock(&log->mu);
    if (out)
        hex_encode(log->head, out);
    if (seq)
        *seq = log->seq;
    pthread_mutex_unlock(&log->mu);
}

/* Under the file lock: takes in the records other writers (processes sharing the file) appended since our last
 * append, checking that each continues the chain. Returns 0 or CUSTOS_EPROTO / CUSTOS_EIO / CUSTOS_ENOMEM. */
static int catch_up(custos_govlog_t *log)
{
    struct stat st;
    if (fstat(log->fd, &st) < 0)
        return CUSTOS_EIO;
    uint64_t size = (uint64_t)st.st_size;
    if (size == log->size)
        return 0;
    if (size < log->size) {
        CUSTOS_ERROR("governance log: the file shrank under us (%llu -> %llu bytes)", (unsigned long long)log->size,
                     (unsigned long long)size);
        return CUSTOS_EPROTO;
    }
    if (size - log->size > (uint64_t)64 << 20)
        return CUSTOS_EPROTO;
    size_t n = (size_t)(size - log->size);
    char *buf = malloc(n);
    if (!buf)
        return CUSTOS_ENOMEM;
    int rc = 0;
    if (pread(log->fd, buf, n, (off_t)log->size) != (ssize_t)n) {
        rc = CUSTOS_EIO;
        goto out;
    }
    for (size_t off = 0; off < n;) {
        char *nl = memchr(buf + off, '\n', n - off);
        parsed_t p;
        const char *why = "torn line";
        if (!nl || (rc = parse_line(buf + off, (size_t)(nl - (buf + off)), &p, &why)) < 0 || !p.hash_ok ||
            p.seq != log->seq + 1 || memcmp(p.prev, log->head, HASH_LEN) != 0) {
            if (rc != CUSTOS_ENOMEM) {
                CUSTOS_ERROR("governance log: a record appended by another writer after seq %llu does not continue "
                             "the chain (%s)",
                             (unsigned long long)log->seq, rc < 0 || !nl ? why : "bad hash, seq or prev");
                rc = CUSTOS_EPROTO;
            }
            goto out;
        }
        log->seq = p.seq;
        if (p.cp == 1)
            log->cp_seq = p.seq;
        memcpy(log->head, p.hash, HASH_LEN);
        log->size += (uint64_t)(nl + 1 - (buf + off));
        off = (size_t)(nl + 1 - buf);
    }
out:
    free(buf);
    return rc;
}

/* Under mu and the file lock, after catch_up: writes one record continuing the chain (write + fsync). */
static int write_locked(custos_govlog_t *log, const char *tbuf, const char *actor, const char *action,
                        const char *target, json_object *details)
{
    char prev_hex[CUSTOS_GOVLOG_HEX + 1], hash_hex[CUSTOS_GOVLOG_HEX + 1];
    unsigned char h[HASH_LEN];
    custos_buf_t b;
    custos_buf_init(&b, LINE_MAX_BYTES);
    int rc;
    hex_encode(log->head, prev_hex);
    if ((rc = build_canonical(&b, log->seq + 1, tbuf, actor, action, target, details, prev_hex)) < 0)
        goto out;
    if ((rc = sha256(custos_buf_peek(&b), custos_buf_size(&b), h)) < 0)
        goto out;
    hex_encode(h, hash_hex);
    b.len--; /* drop the closing brace; custos_buf keeps data NUL-terminated on the next append */
    if (custos_buf_append_lit(&b, HASH_SUFFIX_PREFIX) < 0 || custos_buf_append(&b, hash_hex, CUSTOS_GOVLOG_HEX) < 0 ||
        custos_buf_append_lit(&b, "\"}\n") < 0) {
        rc = CUSTOS_ETOOBIG;
        goto out;
    }
    const char *p = custos_buf_peek(&b);
    size_t left = custos_buf_size(&b);
    while (left) {
        ssize_t w = write(log->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            CUSTOS_ERROR("governance log: write failed: %s; refusing further appends", strerror(errno));
            /* best effort: cut a partial line so the file stays a valid chain */
            if (ftruncate(log->fd, (off_t)log->size) < 0)
                CUSTOS_ERROR("governance log: could not cut the partial record: %s", strerror(errno));
            log->failed = true;
            rc = CUSTOS_EIO;
            goto out;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(log->fd) < 0) {
        CUSTOS_ERROR("governance log: fsync failed: %s; refusing further appends", strerror(errno));
        log->failed = true;
        rc = CUSTOS_EIO;
        goto out;
    }
    log->size += custos_buf_size(&b);
    log->seq++;
    memcpy(log->head, h, HASH_LEN);
    rc = 0;
out:
    custos_buf_dispose(&b);
    return rc;
}

/* Under mu and the file lock: appends a checkpoint signing the current head (seq, hash). */
static int checkpoint_locked(custos_govlog_t *log, const char *tbuf)
{
    char msg[160], kx[CUSTOS_GOVLOG_KEY_ID_LEN + 1], hx[CUSTOS_GOVLOG_HEX + 1], sx[2 * SIG_LEN + 1];
    unsigned char sig[SIG_LEN];
    size_t sl = sizeof(sig), ml = cp_message(log->seq, log->head, msg, sizeof(msg));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool good = ctx && ml && EVP_DigestSignInit(ctx, NULL, NULL, NULL, log->sign_key) == 1 &&
                EVP_DigestSign(ctx, sig, &sl, (const unsigned char *)msg, ml) == 1 && sl == SIG_LEN;
    EVP_MD_CTX_free(ctx);
    if (!good)
        return CUSTOS_ENOMEM;
    hexn_encode(log->key_id, sizeof(log->key_id), kx);
    hex_encode(log->head, hx);
    hexn_encode(sig, SIG_LEN, sx);
    json_object *d = json_object_new_object();
    if (!d)
        return CUSTOS_ENOMEM;
    json_object_object_add(d, "alg", json_object_new_string("ed25519"));
    json_object_object_add(d, "key", json_object_new_string(kx));
    json_object_object_add(d, "seq", json_object_new_int64((int64_t)log->seq));
    json_object_object_add(d, "head", json_object_new_string(hx));
    json_object_object_add(d, "sig", json_object_new_string(sx));
    int rc = write_locked(log, tbuf, "system", CP_ACTION, kx, d);
    json_object_put(d);
    if (rc == 0) {
        log->cp_seq = log->seq;
        log->cp_ms = custos_now_ms();
    }
    return rc;
}

/* Locks (mu, then the file), takes in other writers' records, then writes the event (action NULL: none) and, with a
 * signing key, a checkpoint when one is due (force: whenever the last record is not one). */
static int append_parsed_cp(custos_govlog_t *log, uint64_t time_ms, const char *actor, const char *action,
                            const char *target, json_object *details, bool force_cp)
{
    char tbuf[40];
    format_time(time_ms ? time_ms : custos_wall_ms(), tbuf, sizeof(tbuf));
    pthread_mutex_lock(&log->mu);
    int rc;
    bool locked = false;
    if (log->failed) {
        rc = CUSTOS_EUNAVAIL;
        goto out;
    }
    while (flock(log->fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            rc = CUSTOS_EIO;
            goto out;
        }
    }
    locked = true;
    if ((rc = catch_up(log)) < 0) {
        if (rc == CUSTOS_EPROTO) {
            log->failed = true;
            rc = CUSTOS_EUNAVAIL;
        }
        goto out;
    }
    if (action && (rc = write_locked(log, tbuf, actor, action, target, details)) < 0)
        goto out;
    rc = 0;
    if (log->sign_key && log->cp_seq != log->seq &&
        (force_cp || log->seq - log->cp_seq >= CUSTOS_GOVLOG_CHECKPOINT_RECORDS ||
         custos_now_ms() - log->cp_ms >= CUSTOS_GOVLOG_CHECKPOINT_INTERVAL_S * 1000ull)) {
        format_time(custos_wall_ms(), tbuf, sizeof(tbuf));
        int crc = checkpoint_locked(log, tbuf);
        if (crc < 0) {
            CUSTOS_ERROR("governance log: cannot write a signed checkpoint: %s", custos_strerror(crc));
            if (!action)
                rc = crc; /* the event itself is on disk: its caller succeeds */
        }
    }
out:
    if (locked)
        flock(log->fd, LOCK_UN);
    pthread_mutex_unlock(&log->mu);
    return rc;
}

static int append_parsed(custos_govlog_t *log, uint64_t time_ms, const char *actor, const char *action,
                         const char *target, json_object *details)
{
    return append_parsed_cp(log, time_ms, actor, action, target, details, false);
}

int custos_govlog_set_signing_key(custos_govlog_t *log, const unsigned char seed[32])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (!k)
        return CUSTOS_EINVAL;
    unsigned char id[CUSTOS_GOVLOG_KEY_ID_LEN / 2];
    if (key_id_of(k, id) < 0) {
        EVP_PKEY_free(k);
        return CUSTOS_EINVAL;
    }
    pthread_mutex_lock(&log->mu);
    EVP_PKEY_free(log->sign_key);
    log->sign_key = k;
    memcpy(log->key_id, id, sizeof(id));
    log->cp_ms = custos_now_ms();
    pthread_mutex_unlock(&log->mu);
    return 0;
}

int custos_govlog_checkpoint(custos_govlog_t *log)
{
    if (!log || !log->sign_key)
        return CUSTOS_EINVAL;
    return append_parsed_cp(log, 0, NULL, NULL, NULL, NULL, true);
}

int custos_govlog_public_key_pem(const unsigned char seed[32], char **pem, char *key_id)
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    BIO *b = BIO_new(BIO_s_mem());
    int rc = CUSTOS_ENOMEM;
    *pem = NULL;
    if (!k || !b || PEM_write_bio_PUBKEY(b, k) != 1)
        goto out;
    char *data;
    long n = BIO_get_mem_data(b, &data);
    if (n <= 0 || !(*pem = strndup(data, (size_t)n)))
        goto out;
    if (key_id) {
        unsigned char id[CUSTOS_GOVLOG_KEY_ID_LEN / 2];
        if (key_id_of(k, id) < 0)
            goto out;
        hexn_encode(id, sizeof(id), key_id);
    }
    rc = 0;
out:
    if (rc < 0) {
        free(*pem);
        *pem = NULL;
    }
    BIO_free(b);
    EVP_PKEY_free(k);
    return rc;
}

int custos_govlog_append(custos_govlog_t *log, uint64_t time_ms, const char *actor, const char *action,
                         const char *target, const char *details_json)
{
    json_object *details;
    int rc = check_event(actor, action, target, details_json, &details);
    if (rc < 0)
        return rc;
    rc = append_parsed(log, time_ms, actor, action, target, details);
    json_object_put(details);
    return rc;
}

/* ---------- process-wide log ---------- */

typedef struct pending {
    uint64_t time_ms;
    char *actor, *action, *target, *details;
} pending_t;

enum { G_PREOPEN = 0, G_OPEN, G_FAILED, G_CLOSED };

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_state = G_PREOPEN;
static custos_govlog_t *g_log;
static pending_t *g_pending;
static size_t g_npending;

static void pending_clear(void)
{
    for (size_t i = 0; i < g_npending; i++) {
        free(g_pending[i].actor);
        free(g_pending[i].action);
        free(g_pending[i].target);
        free(g_pending[i].details);
    }
    free(g_pending);
    g_pending = NULL;
    g_npending = 0;
}

int custos_governance_event(const char *actor, const char *action, const char *target, const char *details_json)
{
    json_object *details;
    int rc = check_event(actor, action, target, details_json, &details);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&g_mu);
    switch (g_state) {
    case G_OPEN:
        rc = append_parsed(g_log, 0, actor, action, target, details);
        break;
    case G_PREOPEN: {
        if (g_npending >= CUSTOS_GOVLOG_PREOPEN_MAX) {
            rc = CUSTOS_EUNAVAIL;
            break;
        }
        if (!g_pending && !(g_pending = calloc(CUSTOS_GOVLOG_PREOPEN_MAX, sizeof(*g_pending)))) {
            rc = CUSTOS_ENOMEM;
            break;
        }
        pending_t *p = &g_pending[g_npending];
        *p = (pending_t){.time_ms = custos_wall_ms(),
                         .actor = strdup(actor),
                         .action = strdup(action),
                         .target = strdup(target),
                         .details = details_json ? strdup(details_json) : NULL};
        if (!p->actor || !p->action || !p->target || (details_json && !p->details)) {
            free(p->actor);
            free(p->action);
            free(p->target);
            free(p->details);
            rc = CUSTOS_ENOMEM;
            break;
        }
        g_npending++;
        rc = 0;
        break;
    }
    default:
        rc = CUSTOS_EUNAVAIL;
        break;
    }
    pthread_mutex_unlock(&g_mu);
    json_object_put(details);
    return rc;
}

int custos_govlog_open_global(const char *path)
{
    pthread_mutex_lock(&g_mu);
    int rc;
    if (g_state == G_OPEN) {
        rc = CUSTOS_EINVAL;
        goto out;
    }
    rc = custos_govlog_open(path, NULL, &g_log);
    if (rc < 0) {
        if (g_npending)
            CUSTOS_ERROR("governance log: %zu event(s) recorded before open are lost", g_npending);
        pending_clear();
        g_state = G_FAILED;
        goto out;
    }
    g_state = G_OPEN;
    for (size_t i = 0; i < g_npending; i++) {
        pending_t *p = &g_pending[i];
        int arc = custos_govlog_append(g_log, p->time_ms, p->actor, p->action, p->target, p->details);
        if (arc < 0)
            CUSTOS_ERROR("governance log: could not write buffered event %s: %s", p->action, custos_strerror(arc));
    }
    pending_clear();
out:
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int custos_govlog_global_set_signing_key(const unsigned char seed[32])
{
    pthread_mutex_lock(&g_mu);
    int rc = g_state == G_OPEN ? custos_govlog_set_signing_key(g_log, seed) : CUSTOS_EUNAVAIL;
    if (rc == 0) /* sign what is there (records of an earlier run that ended without a checkpoint, service.start) */
        rc = custos_govlog_checkpoint(g_log);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void custos_govlog_close_global(void)
{
    pthread_mutex_lock(&g_mu);
    if (g_log && g_log->sign_key) /* a stopped custos' log ends with a signed checkpoint */
        custos_govlog_checkpoint(g_log);
    custos_govlog_free(g_log);
    g_log = NULL;
    pending_clear();
    g_state = G_CLOSED;
    pthread_mutex_unlock(&g_mu);
}

int custos_govlog_global_head(char *out, uint64_t *seq)
{
    pthread_mutex_lock(&g_mu);
    int rc = CUSTOS_EUNAVAIL;
    if (g_state == G_OPEN) {
        custos_govlog_head(g_log, out, seq);
        rc = 0;
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

int custos_govlog_file_sha256(const char *path, char *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return CUSTOS_EIO;
    int rc = CUSTOS_ENOMEM;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = CUSTOS_EIO;
            goto out;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            goto out;
    }
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, h, &len) != 1 || len != HASH_LEN)
        goto out;
    hex_encode(h, out);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    close(fd);
    return rc;
}

/* ---------- repair ---------- */

int custos_govlog_repair_file(const char *path, const char *genesis_hex, FILE *report, int *repaired)
{
    *repaired = 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : CUSTOS_EIO;
    int rc;
    char *tail = NULL;
    custos_govlog_t *log = NULL;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (report)
            fprintf(report, "%s: in use by another process (stop custos first)\n", path);
        rc = CUSTOS_EUNAVAIL;
        goto out;
    }
    custos_govlog_verify_result_t res;
    rc = custos_govlog_verify_file(path, genesis_hex, NULL, report, &res);
    if (rc == 0)
        goto out;
    if (rc < 0 && rc != CUSTOS_EPROTO)
        goto out;
    if (!res.torn || res.problems != 1) {
        if (report)
            fprintf(report,
                    "%s: not repaired: the complete records fail verification; the file is evidence and is "
                    "left untouched\n",
                    path);
        rc = CUSTOS_EPROTO;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = CUSTOS_EIO;
        goto out;
    }
    /* find the start of the torn line: just after the last newline */
    off_t end = st.st_size, start = 0;
    char c;
    for (off_t pos = end - 1; pos >= 0; pos--) {
        if (pread(fd, &c, 1, pos) != 1) {
            rc = CUSTOS_EIO;
            goto out;
        }
        if (c == '\n') {
            start = pos + 1;
            break;
        }
    }
    size_t n = (size_t)(end - start);
    if (!(tail = malloc(n ? n : 1)) || pread(fd, tail, n, start) != (ssize_t)n) {
        rc = tail ? CUSTOS_EIO : CUSTOS_ENOMEM;
        goto out;
    }
    char saved[4096];
    snprintf(saved, sizeof(saved), "%s.torn.%llu", path, (unsigned long long)custos_wall_ms());
    int sfd = open(saved, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (sfd < 0 || write(sfd, tail, n) != (ssize_t)n || fsync(sfd) < 0) {
        if (sfd >= 0)
            close(sfd);
        rc = CUSTOS_EIO;
        goto out;
    }
    close(sfd);
    if (ftruncate(fd, start) < 0 || fsync(fd) < 0) {
        rc = CUSTOS_EIO;
        goto out;
    }
    close(fd);
    fd = -1;
    if ((rc = custos_govlog_open(path, genesis_hex, &log)) < 0)
        goto out;
    char details[4200];
    custos_buf_t db;
    custos_buf_init(&db, sizeof(details));
    char *sc = strdup(saved);
    int brc = sc ? custos_buf_appendf(&db, "{\"removed_bytes\":%zu,\"saved_to\":", n) : CUSTOS_ENOMEM;
    if (brc == 0)
        brc = custos_json_append_string(&db, basename(sc), strlen(basename(sc)));
    if (brc == 0)
        brc = custos_buf_append_lit(&db, "}");
    free(sc);
    if (brc == 0)
        brc = custos_govlog_append(log, 0, "cli", "govlog.repair", "governance_log", custos_buf_peek(&db));
    custos_buf_dispose(&db);
    if ((rc = brc) < 0)
        goto out;
    *repaired = 1;
    if (report)
        fprintf(report, "%s: removed the torn last line (%zu bytes, saved to %s) and recorded govlog.repair\n", path, n,
                saved);
out:
    custos_govlog_free(log);
    free(tail);
    if (fd >= 0)
        close(fd);
    return rc;
}
