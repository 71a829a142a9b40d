/* SPDX-License-Identifier: Apache-2.0
 * Schema check of the YAML tree (ytree.c) into an immutable, refcounted custos_config_t.
 * Every error carries the line:column of the offending key or value; the first error stops the load. */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "config/ytree.h"
#include "net/acl.h"
#include "util/buf.h"
#include "util/cidr.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/tz.h"

#define KEY_FILE_MAX 65536 /* bytes: api key files larger than this are refused */
#define NAME_MAX_LEN 64

typedef struct vctx {
    const char *basedir;                    /* NULL, or directory of the config file with a trailing '/' */
    const custos_storage_config_t *storage; /* set once storage: is parsed (for store secrets) */
    const custos_guard_config_t *guards;    /* set once guards: is parsed (rai_policies name them) */
    size_t n_guards;
    custos_ymark_t where;
    char msg[768];
} vctx_t;

typedef struct field {
    int present;
    json_object *val; /* may be NULL (YAML null) when present */
    custos_ymark_t kmark;
    custos_ymark_t vmark;
} field_t;

/* ---------- small helpers ---------- */

__attribute__((format(printf, 3, 4))) static int verr(vctx_t *v, custos_ymark_t at, const char *fmt, ...)
{
    va_list ap;
    v->where = at;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof(v->msg), fmt, ap);
    va_end(ap);
    return CUSTOS_EINVAL;
}

/* Sanitised, truncated copy of s for messages. */
static const char *shown(const char *s, char *out, size_t outlen)
{
    size_t j = 0, i = 0;
    for (; s[i] && j + 1 < outlen; i++)
        out[j++] = ((unsigned char)s[i] >= 0x20 && (unsigned char)s[i] < 0x7f) ? s[i] : '?';
    out[j] = 0;
    if (s[i] && j >= 3)
        out[j - 3] = out[j - 2] = out[j - 1] = '.';
    return out;
}

static const char *join(char *buf, size_t n, const char *path, const char *key)
{
    /* a path longer than buf is cut (messages only); the return value is checked to say so deliberately */
    int r = path && path[0] ? snprintf(buf, n, "%s.%s", path, key) : snprintf(buf, n, "%s", key);
    if (r < 0 && n)
        buf[0] = 0;
    return buf;
}

static int str_in(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0)
            return 1;
    return 0;
}

static const char *kind_name(json_object *o)
{
    if (!o)
        return "null";
    switch (json_object_get_type(o)) {
    case json_type_boolean:
        return "a boolean";
    case json_type_int:
        return "an integer";
    case json_type_double:
        return "a number";
    case json_type_string:
        return "a string";
    case json_type_object:
        return "a mapping";
    case json_type_array:
        return "a sequence";
    default:
        return "null";
    }
}

static void get_field(json_object *m, const char *key, field_t *f)
{
    memset(f, 0, sizeof(*f));
    f->present = custos_ytree_find(m, key, &f->val, &f->kmark, &f->vmark);
    if (!f->present)
        f->kmark = f->vmark = custos_ytree_mark(m);
}

static int check_keys(vctx_t *v, json_object *m, const char *path, const char *const *allowed)
{
    char kb[80];
    size_t n = custos_ytree_count(m);
    for (size_t i = 0; i < n; i++) {
        const char *k = custos_ytree_key(m, i);
        if (!str_in(k, allowed)) {
            if (path && path[0])
                return verr(v, custos_ytree_key_mark(m, i), "unknown key '%s' in %s", shown(k, kb, sizeof(kb)), path);
            return verr(v, custos_ytree_key_mark(m, i), "unknown key '%s' at the top level", shown(k, kb, sizeof(kb)));
        }
    }
    return 0;
}

static int type_err(vctx_t *v, custos_ymark_t at, const char *fpath, const char *want, json_object *got)
{
    return verr(v, at, "%s: expected %s, got %s", fpath, want, kind_name(got));
}

static int missing(vctx_t *v, json_object *m, const char *path, const char *key)
{
    if (path && path[0])
        return verr(v, custos_ytree_mark(m), "%s: missing required key '%s'", path, key);
    return verr(v, custos_ytree_mark(m), "missing required key '%s'", key);
}

static int expect_map(vctx_t *v, json_object *o, custos_ymark_t at, const char *fpath)
{
    if (!o || !json_object_is_type(o, json_type_object))
        return type_err(v, at, fpath, "a mapping", o);
    return 0;
}

static int expect_seq(vctx_t *v, json_object *o, custos_ymark_t at, const char *fpath)
{
    if (!o || !json_object_is_type(o, json_type_array))
        return type_err(v, at, fpath, "a sequence", o);
    return 0;
}

/* Optional/required mapping-valued key. *out = NULL when absent and optional. */
static int get_map(vctx_t *v, json_object *m, const char *path, const char *key, int required, json_object **out,
                   custos_ymark_t *at)
{
    field_t f;
    char fp[256];
    get_field(m, key, &f);
    *out = NULL;
    if (at)
        *at = f.vmark;
    if (!f.present)
        return required ? missing(v, m, path, key) : 0;
    int rc = expect_map(v, f.val, f.vmark, join(fp, sizeof(fp), path, key));
    if (rc == 0)
        *out = f.val;
    return rc;
}

static int get_int(vctx_t *v, json_object *m, const char *path, const char *key, int64_t min, int64_t max, int64_t def,
                   int64_t *out)
{
    field_t f;
    char fp[256];
    get_field(m, key, &f);
    *out = def;
    if (!f.present)
        return 0;
    join(fp, sizeof(fp), path, key);
    if (!f.val || !json_object_is_type(f.val, json_type_int)) {
        if (f.val && json_object_is_type(f.val, json_type_string))
            return verr(v, f.vmark, "%s: expected an integer, got a string (write the number without quotes or suffix)",
                        fp);
        return type_err(v, f.vmark, fp, "an integer", f.val);
    }
    int64_t x = json_object_get_int64(f.val);
    if (x < min || x > max)
        return verr(v, f.vmark, "%s: %" PRId64 " is out of range (min %" PRId64 ", max %" PRId64 ")", fp, x, min, max);
    *out = x;
    return 0;
}

#define GET_INT_AS(v, m, path, key, min, max, def, dst)                                                                \
    do {                                                                                                               \
        int64_t tmp_;                                                                                                  \
        int rc_ = get_int((v), (m), (path), (key), (min), (max), (def), &tmp_);                                        \
        if (rc_ != 0)                                                                                                  \
            return rc_;                                                                                                \
        (dst) = (__typeof__(dst))tmp_;                                                                                 \
    } while (0)

static int get_bool(vctx_t *v, json_object *m, const char *path, const char *key, bool def, bool *out)
{
    static const char *const yaml11[] = {"yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON",
                                         "off", "Off", "OFF", "y",  "Y",  "n",  "N",  NULL};
    field_t f;
    char fp[256], sb[32];
    get_field(m, key, &f);
    *out = def;
    if (!f.present)
        return 0;
    join(fp, sizeof(fp), path, key);
    if (!f.val || !json_object_is_type(f.val, json_type_boolean)) {
        if (f.val && json_object_is_type(f.val, json_type_string) && str_in(json_object_get_string(f.val), yaml11))
            return verr(v, f.vmark,
                        "%s: expected a boolean (true or false), got the string '%s' (YAML 1.2: only true and false "
                        "are booleans)",
                        fp, shown(json_object_get_string(f.val), sb, sizeof(sb)));
        return type_err(v, f.vmark, fp, "a boolean (true or false)", f.val);
    }
    *out = json_object_get_boolean(f.val) ? true : false;
    return 0;
}

/* String value checks shared by get_str and sequence items. Returns borrowed string in *s. */
static int check_str(vctx_t *v, json_object *o, custos_ymark_t at, const char *fp, size_t maxlen, const char **s)
{
    if (!o || !json_object_is_type(o, json_type_string))
        return type_err(v, at, fp, "a string", o);
    const char *str = json_object_get_string(o);
    size_t len = (size_t)json_object_get_string_len(o);
    if (!str || len == 0)
        return verr(v, at, "%s: must not be empty", fp);
    if (strlen(str) != len)
        return verr(v, at, "%s: contains a NUL byte", fp);
    if (len > maxlen)
        return verr(v, at, "%s: longer than %zu bytes", fp, maxlen);
    *s = str;
    return 0;
}

/* Borrowed string (NULL if absent and optional). */
static int get_str(vctx_t *v, json_object *m, const char *path, const char *key, int required, size_t maxlen,
                   const char **out, custos_ymark_t *at)
{
    field_t f;
    char fp[256];
    get_field(m, key, &f);
    *out = NULL;
    if (at)
        *at = f.vmark;
    if (!f.present) {
        if (!required)
            return 0;
        int rc = missing(v, m, path, key);
        return rc ? rc : CUSTOS_EINVAL; /* missing() always reports; said here for the analyser */
    }
    return check_str(v, f.val, f.vmark, join(fp, sizeof(fp), path, key), maxlen, out);
}

static int dup_str(const char *s, char **out)
{
    if (!s) {
        *out = NULL;
        return 0;
    }
    *out = strdup(s);
    return *out ? 0 : CUSTOS_ENOMEM;
}

static int get_enum(vctx_t *v, json_object *m, const char *path, const char *key, const char *const *names, int def,
                    int *out)
{
    field_t f;
    char fp[256], list[256] = "";
    get_field(m, key, &f);
    *out = def;
    if (!f.present)
        return 0;
    if (f.val && json_object_is_type(f.val, json_type_string)) {
        for (int i = 0; names[i]; i++) {
            if (strcmp(json_object_get_string(f.val), names[i]) == 0) {
                *out = i;
                return 0;
            }
        }
    }
    for (int i = 0; names[i]; i++) {
        if (i)
            strncat(list, ", ", sizeof(list) - strlen(list) - 1);
        strncat(list, names[i], sizeof(list) - strlen(list) - 1);
    }
    return verr(v, f.vmark, "%s: expected one of %s", join(fp, sizeof(fp), path, key), list);
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static int valid_zone(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int get_name(vctx_t *v, json_object *m, const char *path, const char *key, int required, char **out,
                    custos_ymark_t *at)
{
    const char *s;
    char fp[256];
    int rc = get_str(v, m, path, key, required, 256, &s, at);
    if (rc != 0 || !s)
        return rc;
    if (!valid_name(s))
        return verr(v, *at, "%s: must match [A-Za-z0-9._-]{1,64}", join(fp, sizeof(fp), path, key));
    return dup_str(s, out);
}

static int get_zone(vctx_t *v, json_object *m, const char *path, const char *key, char **out, custos_ymark_t *at)
{
    const char *s;
    char fp[256];
    int rc = get_str(v, m, path, key, 0, 256, &s, at);
    if (rc != 0 || !s)
        return rc;
    if (!valid_zone(s))
        return verr(v, *at, "%s: must match [a-z0-9-]{1,64} (lowercase)", join(fp, sizeof(fp), path, key));
    return dup_str(s, out);
}

/* Resolves a path from the config against basedir and checks it is readable. */
static int get_path(vctx_t *v, json_object *m, const char *path, const char *key, int required, char **out)
{
    const char *s;
    custos_ymark_t at;
    char fp[256], sb[128];
    int rc = get_str(v, m, path, key, required, 4096, &s, &at);
    *out = NULL;
    if (rc != 0 || !s)
        return rc;
    if (s[0] != '/' && v->basedir) {
        if (asprintf(out, "%s%s", v->basedir, s) < 0) {
            *out = NULL;
            return CUSTOS_ENOMEM;
        }
    } else if ((rc = dup_str(s, out)) != 0) {
        return rc;
    }
    if (access(*out, R_OK) != 0) {
        int e = errno;
        return verr(v, at, "%s: cannot read '%s': %s", join(fp, sizeof(fp), path, key), shown(*out, sb, sizeof(sb)),
                    strerror(e));
    }
    return 0;
}

/* Reads a secret from a regular file (<= KEY_FILE_MAX bytes), strips trailing CR/LF. Caller cleanses+frees.
 * Returns CUSTOS_EIO (*err_no set), CUSTOS_EINVAL (not a regular file), CUSTOS_ETOOBIG or CUSTOS_ENOMEM. */
static int read_secret_file(const char *path, char **out, size_t *outlen, int *err_no)
{
    custos_buf_t b;
    char tmp[4096];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int rc = 0;
    *out = NULL;
    *outlen = 0;
    *err_no = 0;
    if (fd < 0) {
        *err_no = errno;
        return CUSTOS_EIO;
    }
    if (fstat(fd, &st) != 0) {
        *err_no = errno;
        close(fd);
        return CUSTOS_EIO;
    }
    if (!S_ISREG(st.st_mode)) { /* a FIFO or device could block or never end */
        close(fd);
        return CUSTOS_EINVAL;
    }
    custos_buf_init(&b, KEY_FILE_MAX);
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *err_no = errno;
            rc = CUSTOS_EIO;
            break;
        }
        if (n == 0)
            break;
        if ((rc = custos_buf_append(&b, tmp, (size_t)n)) != 0)
            break;
    }
    OPENSSL_cleanse(tmp, sizeof(tmp));
    close(fd);
    if (rc != 0) {
        if (b.data)
            OPENSSL_cleanse(b.data, b.cap);
        custos_buf_dispose(&b);
        return rc;
    }
    size_t len = custos_buf_size(&b);
    char *data = custos_buf_steal(&b, &len);
    if (!data) {
        data = strdup("");
        if (!data)
            return CUSTOS_ENOMEM;
        len = 0;
    }
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        data[--len] = 0;
    *out = data;
    *outlen = len;
    return 0;
}

static void free_secret(char *s, size_t len)
{
    if (s) {
        OPENSSL_cleanse(s, len);
        free(s);
    }
}

static int valid_env_name(const char *s)
{
    if (!s)
        return 0;
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

/* Reads a secret named by an env var (key = "...env") or a file (key = "...file") found in m.
 * Exactly one of env_key/file_key must be present. *secret is a malloc'd copy (cleanse+free). */
static int get_secret(vctx_t *v, json_object *m, const char *path, const char *env_key, const char *file_key,
                      char **secret, size_t *secret_len)
{
    char fp[256], sb[128];
    const char *envname;
    custos_ymark_t at;
    int rc;

    *secret = NULL;
    *secret_len = 0;
    field_t fe, ff;
    get_field(m, env_key, &fe);
    get_field(m, file_key, &ff);
    if (fe.present) {
        if ((rc = get_str(v, m, path, env_key, 1, 256, &envname, &at)) != 0)
            return rc;
        join(fp, sizeof(fp), path, env_key);
        if (!valid_env_name(envname))
            return verr(v, at, "%s: not a valid environment variable name", fp);
        const char *val = getenv(envname);
        if (!val || !val[0])
            return verr(v, at, "%s: environment variable %s is not set or empty", fp, shown(envname, sb, sizeof(sb)));
        *secret_len = strlen(val);
        *secret = strdup(val);
        return *secret ? 0 : CUSTOS_ENOMEM;
    }
    char *p = NULL;
    int e;
    if ((rc = get_path(v, m, path, file_key, 1, &p)) != 0) {
        free(p);
        return rc;
    }
    get_field(m, file_key, &ff);
    join(fp, sizeof(fp), path, file_key);
    rc = read_secret_file(p, secret, secret_len, &e);
    if (rc == CUSTOS_ETOOBIG)
        rc = verr(v, ff.vmark, "%s: '%s' is larger than %d bytes", fp, shown(p, sb, sizeof(sb)), KEY_FILE_MAX);
    else if (rc == CUSTOS_EINVAL)
        rc = verr(v, ff.vmark, "%s: '%s' is not a regular file", fp, shown(p, sb, sizeof(sb)));
    else if (rc == CUSTOS_EIO)
        rc = verr(v, ff.vmark, "%s: cannot read '%s': %s", fp, shown(p, sb, sizeof(sb)), strerror(e));
    else if (rc == 0 && *secret_len == 0)
        rc = verr(v, ff.vmark, "%s: '%s' is empty", fp, shown(p, sb, sizeof(sb)));
    free(p);
    if (rc != 0) {
        free_secret(*secret, *secret_len);
        *secret = NULL;
        *secret_len = 0;
    }
    return rc;
}

/* Iterates a sequence-valued key: checks type and count bounds. */
static int get_seq(vctx_t *v, json_object *m, const char *path, const char *key, size_t min, size_t max,
                   const char *empty_msg, json_object **out, custos_ymark_t *at)
{
    field_t f;
    char fp[256];
    get_field(m, key, &f);
    *out = NULL;
    *at = f.vmark;
    join(fp, sizeof(fp), path, key);
    if (!f.present) {
        if (min == 0)
            return 0;
        if (empty_msg)
            return verr(v, f.vmark, "%s: %s", fp, empty_msg);
        return missing(v, m, path, key);
    }
    int rc = expect_seq(v, f.val, f.vmark, fp);
    if (rc != 0)
        return rc;
    size_t n = json_object_array_length(f.val);
    if (n < min)
        return verr(v, f.vmark, "%s: %s", fp, empty_msg ? empty_msg : "at least one entry is required");
    if (n > max)
        return verr(v, f.vmark, "%s: at most %zu entries are allowed (got %zu)", fp, max, n);
    *out = f.val;
    return 0;
}

/* ---------- addresses and URLs ---------- */

static int parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    unsigned long x = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (unsigned long)(s[i] - '0');
    }
    if (x < 1 || x > 65535)
        return -1;
    *port = (uint16_t)x;
    return 0;
}

static int valid_hostname(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static bool host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&a6))
            return a6.s6_addr[12] == 127;
    }
    return false;
}

/* Splits "HOST:PORT" / "[V6]:PORT" / "unix:/path". Returns NULL or a reason. */
static const char *parse_listen_address(const char *s, custos_listener_config_t *l)
{
    if (!s)
        return "missing address";
    if (strncmp(s, "unix:", 5) == 0) {
        const char *p = s + 5;
        if (p[0] != '/')
            return "unix socket path must be absolute (unix:/path/to.sock)";
        if (strlen(p) >= 108)
            return "unix socket path must be shorter than 108 bytes";
        l->kind = CUSTOS_ADDR_UNIX;
        l->unix_path = strdup(p);
        l->loopback = true;
        return l->unix_path ? NULL : "out of memory";
    }
    const char *colon;
    size_t hlen;
    const char *h;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return "expected [IPV6]:PORT";
        h = s + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
        char tmp[64];
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof(tmp))
            return "bad IPv6 address";
        memcpy(tmp, h, hlen);
        tmp[hlen] = 0;
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return "bad IPv6 address";
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return "expected HOST:PORT, [IPV6]:PORT or unix:/path";
        h = s;
        hlen = (size_t)(colon - s);
        if (memchr(h, ':', hlen))
            return "IPv6 addresses need brackets, e.g. [::1]:8443";
        if (!valid_hostname(h, hlen))
            return "bad host (expected an IPv4 address or a host name)";
    }
    if (parse_port(colon + 1, &l->port) != 0)
        return "port must be an integer 1..65535";
    l->kind = CUSTOS_ADDR_TCP;
    l->host = strndup(h, hlen);
    if (!l->host)
        return "out of memory";
    l->loopback = host_is_loopback(l->host);
    return NULL;
}

static int is_pchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~%!$&'()*+,;=:@/", c);
}

/* Parses an http(s) base URL into b. Returns NULL or a reason. */
static const char *parse_url(const char *s, custos_backend_config_t *b)
{
    if (!s)
        return "missing URL";
    const char *p;
    if (strncasecmp(s, "http://", 7) == 0) {
        b->https = false;
        p = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        b->https = true;
        p = s + 8;
    } else {
        return "must start with http:// or https://";
    }
    size_t alen = strcspn(p, "/?#");
    if (p[alen] == '?' || p[alen] == '#' || strpbrk(p + alen, "?#"))
        return "must not contain a query or fragment";
    if (memchr(p, '@', alen))
        return "must not contain credentials (use auth)";
    const char *hs = p, *he, *portp = NULL;
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb)
            return "bad IPv6 host";
        hs = p + 1;
        he = rb;
        char tmp[64];
        struct in6_addr a6;
        size_t hl = (size_t)(he - hs);
        if (hl == 0 || hl >= sizeof(tmp))
            return "bad IPv6 host";
        memcpy(tmp, hs, hl);
        tmp[hl] = 0;
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return "bad IPv6 host";
        if (rb + 1 < p + alen) {
            if (rb[1] != ':')
                return "bad authority";
            portp = rb + 2;
        }
    } else {
        const char *c = memchr(p, ':', alen);
        he = c ? c : p + alen;
        if (c)
            portp = c + 1;
        if (!valid_hostname(hs, (size_t)(he - hs)))
            return "bad host";
    }
    if (portp) {
        char pb[8];
        size_t pl = (size_t)(p + alen - portp);
        if (pl == 0 || pl >= sizeof(pb))
            return "port must be an integer 1..65535";
        memcpy(pb, portp, pl);
        pb[pl] = 0;
        if (parse_port(pb, &b->port) != 0)
            return "port must be an integer 1..65535";
    } else {
        b->port = b->https ? 443 : 80;
    }
    const char *path = p + alen;
    size_t plen = strlen(path);
    for (size_t i = 0; i < plen; i++)
        if (!is_pchar((unsigned char)path[i]))
            return "path contains a character that is not allowed in a URL";
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    b->host = strndup(hs, (size_t)(he - hs));
    b->path_prefix = strndup(path, plen);
    if (!b->host || !b->path_prefix)
        return "out of memory";
    return NULL;
}

/* ---------- sections ---------- */

static int parse_server(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"workers", "drain_timeout_ms", "log_level", NULL};
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    json_object *m;
    int rc, lvl;
    c->server.workers = 0;
    c->server.drain_timeout_ms = 30000;
    c->server.log_level = CUSTOS_LOG_INFO;
    if ((rc = get_map(v, root, "", "server", 0, &m, NULL)) != 0 || !m)
        return rc;
    if ((rc = check_keys(v, m, "server", keys)) != 0)
        return rc;
    GET_INT_AS(v, m, "server", "workers", 0, 256, 0, c->server.workers);
    GET_INT_AS(v, m, "server", "drain_timeout_ms", 0, 3600000, 30000, c->server.drain_timeout_ms);
    if ((rc = get_enum(v, m, "server", "log_level", levels, 1, &lvl)) != 0)
        return rc;
    c->server.log_level = (custos_log_level_t)lvl;
    return 0;
}

static int check_ciphers(const char *list)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return CUSTOS_ENOMEM;
    int ok = SSL_CTX_set_cipher_list(ctx, list);
    SSL_CTX_free(ctx);
    return ok == 1 ? 0 : CUSTOS_EINVAL;
}

static int parse_tls(vctx_t *v, json_object *m, const char *path, custos_tls_config_t **out)
{
    static const char *const keys[] = {"cert", "key", "min_version", "ciphers", "client_ca", NULL};
    char fp[256];
    field_t f;
    int rc;
    custos_tls_config_t *t = calloc(1, sizeof(*t));
    if (!t)
        return CUSTOS_ENOMEM;
    *out = t;
    t->min_version = 0x0303;
    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    if ((rc = get_path(v, m, path, "cert", 1, &t->cert)) != 0)
        return rc;
    if ((rc = get_path(v, m, path, "key", 1, &t->key)) != 0)
        return rc;
    if ((rc = get_path(v, m, path, "client_ca", 0, &t->client_ca)) != 0)
        return rc;
    get_field(m, "min_version", &f);
    if (f.present) {
        const char *s = (f.val && json_object_is_type(f.val, json_type_string)) ? json_object_get_string(f.val) : "";
        if (strcmp(s, "1.2") == 0)
            t->min_version = 0x0303;
        else if (strcmp(s, "1.3") == 0)
            t->min_version = 0x0304;
        else
            return verr(v, f.vmark, "%s: expected \"1.2\" or \"1.3\" (a quoted string)",
                        join(fp, sizeof(fp), path, "min_version"));
    }
    const char *ciphers;
    custos_ymark_t at;
    if ((rc = get_str(v, m, path, "ciphers", 0, 4096, &ciphers, &at)) != 0)
        return rc;
    if (ciphers) {
        rc = check_ciphers(ciphers);
        if (rc == CUSTOS_EINVAL)
            return verr(v, at, "%s: OpenSSL accepts no cipher from this list", join(fp, sizeof(fp), path, "ciphers"));
        if (rc != 0)
            return rc;
    }
    return dup_str(ciphers ? ciphers : CUSTOS_TLS_DEFAULT_CIPHERS, &t->ciphers);
}

static int same_listen(const custos_listener_config_t *a, const custos_listener_config_t *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind == CUSTOS_ADDR_UNIX)
        return strcmp(a->unix_path, b->unix_path) == 0;
    return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

static int parse_listeners(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"address", "insecure", "tls", NULL};
    json_object *seq;
    custos_ymark_t at;
    int rc;
    if ((rc = get_seq(v, root, "", "listeners", 1, CUSTOS_CONFIG_MAX_LISTENERS, NULL, &seq, &at)) != 0)
        return rc;
    size_t n = json_object_array_length(seq);
    c->listeners = calloc(n, sizeof(*c->listeners));
    if (!c->listeners)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        custos_listener_config_t *l = &c->listeners[i];
        json_object *m = json_object_array_get_idx(seq, i);
        char path[64], fp[128];
        custos_ymark_t am;
        const char *addr;
        c->n_listeners = i + 1;
        snprintf(path, sizeof(path), "listeners[%zu]", i);
        if ((rc = expect_map(v, m, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = check_keys(v, m, path, keys)) != 0)
            return rc;
        if ((rc = get_str(v, m, path, "address", 1, 256, &addr, &am)) != 0)
            return rc;
        if ((rc = dup_str(addr, &l->address)) != 0)
            return rc;
        join(fp, sizeof(fp), path, "address");
        const char *why = parse_listen_address(addr, l);
        if (why)
            return verr(v, am, "%s: %s", fp, why);
        if ((rc = get_bool(v, m, path, "insecure", false, &l->insecure)) != 0)
            return rc;
        json_object *tm;
        char tp[80];
        if ((rc = get_map(v, m, path, "tls", 0, &tm, NULL)) != 0)
            return rc;
        if (tm && (rc = parse_tls(v, tm, join(tp, sizeof(tp), path, "tls"), &l->tls)) != 0)
            return rc;
        if (!l->tls && !l->loopback && !l->insecure)
            return verr(v, am, "%s: plain HTTP on a non-loopback address needs insecure: true", fp);
        for (size_t j = 0; j < i; j++)
            if (same_listen(&c->listeners[j], l))
                return verr(v, am, "%s: same address as listeners[%zu]", fp, j);
    }
    return 0;
}

static int parse_limits(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"max_header_bytes",    "max_headers",       "max_body_bytes",
                                       "max_url_bytes",       "max_json_depth",    "max_response_bytes",
                                       "max_sse_event_bytes", "header_timeout_ms", "body_timeout_ms",
                                       "idle_timeout_ms",     "max_connections",   NULL};
    json_object *m;
    int rc;
    custos_limits_config_t *L = &c->limits;
    if ((rc = get_map(v, root, "", "limits", 0, &m, NULL)) != 0)
        return rc;
    if (m && (rc = check_keys(v, m, "limits", keys)) != 0)
        return rc;
    /* With m == NULL the getters below see no keys and apply defaults. */
    json_object *src = m;
    GET_INT_AS(v, src, "limits", "max_header_bytes", 1024, 1048576, 16384, L->max_header_bytes);
    GET_INT_AS(v, src, "limits", "max_headers", 8, 1000, 100, L->max_headers);
    GET_INT_AS(v, src, "limits", "max_body_bytes", 1024, 268435456, 4194304, L->max_body_bytes);
    GET_INT_AS(v, src, "limits", "max_url_bytes", 256, 1048576, 8192, L->max_url_bytes);
    GET_INT_AS(v, src, "limits", "max_json_depth", 4, 1000, 64, L->max_json_depth);
    GET_INT_AS(v, src, "limits", "max_response_bytes", 1024, 1073741824, 16777216, L->max_response_bytes);
    GET_INT_AS(v, src, "limits", "max_sse_event_bytes", 1024, 67108864, 1048576, L->max_sse_event_bytes);
    GET_INT_AS(v, src, "limits", "header_timeout_ms", 1, 3600000, 10000, L->header_timeout_ms);
    GET_INT_AS(v, src, "limits", "body_timeout_ms", 1, 3600000, 30000, L->body_timeout_ms);
    GET_INT_AS(v, src, "limits", "idle_timeout_ms", 1, 86400000, 60000, L->idle_timeout_ms);
    GET_INT_AS(v, src, "limits", "max_connections", 1, 1048576, 16384, L->max_connections);
    return 0;
}

static int parse_upstream(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {
        "connect_timeout_ms", "first_byte_timeout_ms", "idle_timeout_ms", "max_attempts",      "backoff_base_ms",
        "backoff_max_ms",     "max_retry_after_ms",    "pool_max_idle",   "outlier_detection", NULL};
    static const char *const okeys[] = {"consecutive_failures", "base_ejection_ms", "max_ejection_ms", NULL};
    json_object *m, *om = NULL;
    int rc;
    custos_upstream_config_t *U = &c->upstream;
    if ((rc = get_map(v, root, "", "upstream", 0, &m, NULL)) != 0)
        return rc;
    if (m && (rc = check_keys(v, m, "upstream", keys)) != 0)
        return rc;
    GET_INT_AS(v, m, "upstream", "connect_timeout_ms", 1, 600000, 5000, U->connect_timeout_ms);
    GET_INT_AS(v, m, "upstream", "first_byte_timeout_ms", 1, 3600000, 120000, U->first_byte_timeout_ms);
    GET_INT_AS(v, m, "upstream", "idle_timeout_ms", 1, 3600000, 120000, U->idle_timeout_ms);
    GET_INT_AS(v, m, "upstream", "max_attempts", 1, 10, 3, U->max_attempts);
    GET_INT_AS(v, m, "upstream", "backoff_base_ms", 0, 60000, 100, U->backoff_base_ms);
    GET_INT_AS(v, m, "upstream", "backoff_max_ms", 0, 600000, 2000, U->backoff_max_ms);
    GET_INT_AS(v, m, "upstream", "max_retry_after_ms", 0, 3600000, 10000, U->max_retry_after_ms);
    GET_INT_AS(v, m, "upstream", "pool_max_idle", 0, 10000, 64, U->pool_max_idle);
    if (m && (rc = get_map(v, m, "upstream", "outlier_detection", 0, &om, NULL)) != 0)
        return rc;
    if (om && (rc = check_keys(v, om, "upstream.outlier_detection", okeys)) != 0)
        return rc;
    GET_INT_AS(v, om, "upstream.outlier_detection", "consecutive_failures", 0, 1000, 5,
               U->outlier_consecutive_failures);
    GET_INT_AS(v, om, "upstream.outlier_detection", "base_ejection_ms", 1, 3600000, 30000, U->outlier_base_ejection_ms);
    GET_INT_AS(v, om, "upstream.outlier_detection", "max_ejection_ms", 1, 86400000, 300000, U->outlier_max_ejection_ms);
    if (U->outlier_max_ejection_ms < U->outlier_base_ejection_ms) {
        field_t f;
        get_field(om, "max_ejection_ms", &f);
        return verr(v, f.vmark, "upstream.outlier_detection.max_ejection_ms: below base_ejection_ms");
    }
    if (U->backoff_max_ms < U->backoff_base_ms) {
        field_t f;
        get_field(m, "backoff_max_ms", &f);
        return verr(v, f.vmark, "upstream.backoff_max_ms: %" PRIu32 " is below upstream.backoff_base_ms (%" PRIu32 ")",
                    U->backoff_max_ms, U->backoff_base_ms);
    }
    return 0;
}

static int sha256_of(const char *s, size_t len, unsigned char out[32])
{
    unsigned int mdlen = 0;
    if (EVP_Digest(s, len, out, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return CUSTOS_ENOMEM;
    return 0;
}

typedef struct key_ref {
    const unsigned char *digest;
    size_t idx;
} key_ref_t;

static int cmp_key_ref(const void *a, const void *b)
{
    const key_ref_t *x = a, *y = b;
    int d = memcmp(x->digest, y->digest, 32);
    if (d)
        return d;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* ---------- identity: roles, scopes, role assignments, role map, conditional access ---------- */

static const char *const ROLE_NAMES[] = {"inference.user", "contributor", "reviewer", "auditor", "admin", NULL};

unsigned custos_config_role_parse(const char *name)
{
    for (unsigned i = 0; name && ROLE_NAMES[i]; i++)
        if (strcmp(name, ROLE_NAMES[i]) == 0)
            return 1u << i;
    return 0;
}

const char *custos_config_role_name(unsigned role_bit)
{
    for (unsigned i = 0; ROLE_NAMES[i]; i++)
        if (role_bit == 1u << i)
            return ROLE_NAMES[i];
    return "unknown";
}

static int valid_name(const char *s);

bool custos_config_scope_valid(const char *s)
{
    if (!s)
        return false;
    if (strcmp(s, "/") == 0)
        return true;
    return strncmp(s, "/deployments/", 13) == 0 && valid_name(s + 13);
}

static int get_role(vctx_t *v, json_object *o, custos_ymark_t at, const char *fp, unsigned *out)
{
    const char *s = NULL;
    int rc = check_str(v, o, at, fp, 64, &s);
    if (rc != 0 || !s)
        return rc ? rc : CUSTOS_EINVAL;
    *out = custos_config_role_parse(s);
    if (!*out)
        return verr(v, at, "%s: expected one of inference.user, contributor, reviewer, auditor, admin", fp);
    return 0;
}

static int get_scope(vctx_t *v, json_object *m, const char *path, char **out)
{
    const char *s;
    custos_ymark_t at;
    char fp[256];
    int rc = get_str(v, m, path, "scope", 0, CUSTOS_CONFIG_MAX_SCOPE, &s, &at);
    if (rc != 0)
        return rc;
    if (!s)
        s = "/";
    else if (!custos_config_scope_valid(s))
        return verr(v, at, "%s: expected \"/\" or \"/deployments/{name}\"", join(fp, sizeof(fp), path, "scope"));
    return dup_str(s, out);
}

/* api_keys[i]: optional principal, roles (sequence of role names), scope. */
static int parse_key_grants(vctx_t *v, json_object *km, const char *path, custos_api_key_config_t *k)
{
    const char *s;
    custos_ymark_t at;
    json_object *seq;
    char fp[256];
    int rc = get_str(v, km, path, "principal", 0, 256, &s, &at);
    if (rc != 0)
        return rc;
    if (s)
        rc = dup_str(s, &k->principal);
    else if (asprintf(&k->principal, "key:%s", k->name) < 0) {
        k->principal = NULL;
        rc = CUSTOS_ENOMEM;
    }
    if (rc != 0)
        return rc;
    if ((rc = get_seq(v, km, path, "roles", 0, 5, NULL, &seq, &at)) != 0)
        return rc;
    if (!seq) {
        k->roles = CUSTOS_ROLE_INFERENCE_USER;
    } else {
        if (json_object_array_length(seq) == 0)
            return verr(v, at, "%s: at least one role is required", join(fp, sizeof(fp), path, "roles"));
        for (size_t i = 0; i < json_object_array_length(seq); i++) {
            unsigned r;
            snprintf(fp, sizeof(fp), "%s.roles[%zu]", path, i);
            if ((rc = get_role(v, json_object_array_get_idx(seq, i), custos_ytree_val_mark(seq, i), fp, &r)) != 0)
                return rc;
            k->roles |= r;
        }
    }
    return get_scope(v, km, path, &k->scope);
}

static int get_nets(vctx_t *v, json_object *m, const char *path, const char *key, custos_cidr_t **out, size_t *nout)
{
    json_object *seq;
    custos_ymark_t at;
    char fp[256];
    int rc = get_seq(v, m, path, key, 0, CUSTOS_CONFIG_MAX_CA_LIST, NULL, &seq, &at);
    if (rc != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    if (n == 0)
        return verr(v, at, "%s: at least one CIDR is required", join(fp, sizeof(fp), path, key));
    *out = calloc(n, sizeof(**out));
    if (!*out)
        return CUSTOS_ENOMEM;
    *nout = n;
    for (size_t i = 0; i < n; i++) {
        const char *s = NULL;
        snprintf(fp, sizeof(fp), "%s.%s[%zu]", path, key, i);
        custos_ymark_t im = custos_ytree_val_mark(seq, i);
        if ((rc = check_str(v, json_object_array_get_idx(seq, i), im, fp, 64, &s)) != 0 || !s)
            return rc ? rc : CUSTOS_EINVAL;
        const char *why = NULL;
        if (custos_cidr_parse(s, strlen(s), &(*out)[i], &why) != 0)
            return verr(v, im, "%s: expected an IPv4 or IPv6 CIDR (10.0.0.0/8, fd00::/8): %s", fp,
                        why ? why : "invalid");
    }
    return 0;
}

/* "HH:MM" -> minutes after midnight, or -1. */
static int parse_hhmm(const char *s)
{
    if (!s || strlen(s) != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), mi = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || mi > 59 || (h == 24 && mi != 0))
        return -1;
    return h * 60 + mi;
}

static int parse_ca_policy(vctx_t *v, json_object *pm, const char *path, custos_ca_policy_config_t *p)
{
    static const char *const pkeys[] = {"name", "when", "require", NULL};
    static const char *const wkeys[] = {"deployments", "principal_types", "networks", NULL};
    static const char *const rkeys[] = {"mfa", "networks", "max_token_age_s", "claims", "hours", NULL};
    static const char *const hkeys[] = {"tz", "from", "to", NULL};
    json_object *w, *r, *seq, *cm, *hm;
    custos_ymark_t at;
    char sub[160], fp[256];
    int rc;
    if ((rc = check_keys(v, pm, path, pkeys)) != 0)
        return rc;
    if ((rc = get_name(v, pm, path, "name", 1, &p->name, &at)) != 0)
        return rc;
    if ((rc = get_map(v, pm, path, "when", 0, &w, &at)) != 0)
        return rc;
    if (w) {
        snprintf(sub, sizeof(sub), "%s.when", path);
        if ((rc = check_keys(v, w, sub, wkeys)) != 0)
            return rc;
        if ((rc = get_seq(v, w, sub, "deployments", 0, CUSTOS_CONFIG_MAX_CA_LIST, NULL, &seq, &at)) != 0)
            return rc;
        if (seq && json_object_array_length(seq) > 0) {
            size_t n = json_object_array_length(seq);
            p->when_deployments = calloc(n, sizeof(char *));
            if (!p->when_deployments)
                return CUSTOS_ENOMEM;
            p->n_when_deployments = n;
            for (size_t i = 0; i < n; i++) {
                const char *s = NULL;
                custos_ymark_t im = custos_ytree_val_mark(seq, i);
                snprintf(fp, sizeof(fp), "%s.deployments[%zu]", sub, i);
                if ((rc = check_str(v, json_object_array_get_idx(seq, i), im, fp, 64, &s)) != 0 || !s)
                    return rc ? rc : CUSTOS_EINVAL;
                if (!valid_name(s))
                    return verr(v, im, "%s: must match [A-Za-z0-9._-]{1,64}", fp);
                if ((rc = dup_str(s, &p->when_deployments[i])) != 0)
                    return rc;
            }
        }
        if ((rc = get_seq(v, w, sub, "principal_types", 0, 2, NULL, &seq, &at)) != 0)
            return rc;
        for (size_t i = 0; seq && i < json_object_array_length(seq); i++) {
            const char *s = NULL;
            custos_ymark_t im = custos_ytree_val_mark(seq, i);
            snprintf(fp, sizeof(fp), "%s.principal_types[%zu]", sub, i);
            if ((rc = check_str(v, json_object_array_get_idx(seq, i), im, fp, 16, &s)) != 0 || !s)
                return rc ? rc : CUSTOS_EINVAL;
            if (strcmp(s, "user") == 0)
                p->when_principal_types |= CUSTOS_CA_PRINCIPAL_USER;
            else if (strcmp(s, "workload") == 0)
                p->when_principal_types |= CUSTOS_CA_PRINCIPAL_WORKLOAD;
            else
                return verr(v, im, "%s: expected one of user, workload", fp);
        }
        if ((rc = get_nets(v, w, sub, "networks", &p->when_networks, &p->n_when_networks)) != 0)
            return rc;
    }
    if ((rc = get_map(v, pm, path, "require", 1, &r, &at)) != 0)
        return rc;
    snprintf(sub, sizeof(sub), "%s.require", path);
    if ((rc = check_keys(v, r, sub, rkeys)) != 0)
        return rc;
    if (custos_ytree_count(r) == 0)
        return verr(v, at, "%s: at least one requirement is needed", sub);
    if ((rc = get_bool(v, r, sub, "mfa", false, &p->require_mfa)) != 0)
        return rc;
    if ((rc = get_nets(v, r, sub, "networks", &p->require_networks, &p->n_require_networks)) != 0)
        return rc;
    GET_INT_AS(v, r, sub, "max_token_age_s", 1, 31536000, 0, p->max_token_age_s);
    if ((rc = get_map(v, r, sub, "claims", 0, &cm, &at)) != 0)
        return rc;
    if (cm) {
        size_t n = custos_ytree_count(cm);
        if (n == 0 || n > CUSTOS_CONFIG_MAX_CA_LIST)
            return verr(v, at, "%s.claims: 1 to %d claims", sub, CUSTOS_CONFIG_MAX_CA_LIST);
        p->require_claims = calloc(n, sizeof(*p->require_claims));
        if (!p->require_claims)
            return CUSTOS_ENOMEM;
        p->n_require_claims = n;
        for (size_t i = 0; i < n; i++) {
            const char *k = custos_ytree_key(cm, i), *s = NULL;
            json_object *val;
            custos_ymark_t km, vm;
            custos_ytree_find(cm, k, &val, &km, &vm);
            snprintf(fp, sizeof(fp), "%s.claims.%.64s", sub, k);
            if (strlen(k) == 0 || strlen(k) > 64)
                return verr(v, km, "%s.claims: claim names are 1 to 64 bytes", sub);
            if ((rc = check_str(v, val, vm, fp, 256, &s)) != 0 || !s)
                return rc ? rc : CUSTOS_EINVAL;
            if ((rc = dup_str(k, &p->require_claims[i].name)) != 0 ||
                (rc = dup_str(s, &p->require_claims[i].value)) != 0)
                return rc;
        }
    }
    if ((rc = get_map(v, r, sub, "hours", 0, &hm, &at)) != 0)
        return rc;
    if (hm) {
        const char *tz = NULL, *from = NULL, *to = NULL;
        custos_ymark_t tzat, fat, tat;
        snprintf(fp, sizeof(fp), "%s.hours", sub);
        if ((rc = check_keys(v, hm, fp, hkeys)) != 0)
            return rc;
        if ((rc = get_str(v, hm, fp, "tz", 1, 128, &tz, &tzat)) != 0 ||
            (rc = get_str(v, hm, fp, "from", 1, 5, &from, &fat)) != 0 ||
            (rc = get_str(v, hm, fp, "to", 1, 5, &to, &tat)) != 0 || !tz || !from || !to)
            return rc ? rc : CUSTOS_EINVAL;
        p->has_hours = true;
        p->hours_from = parse_hhmm(from);
        p->hours_to = parse_hhmm(to);
        if (p->hours_from < 0)
            return verr(v, fat, "%s.from: expected \"HH:MM\" (00:00..24:00)", fp);
        if (p->hours_to < 0)
            return verr(v, tat, "%s.to: expected \"HH:MM\" (00:00..24:00)", fp);
        if (p->hours_from == p->hours_to)
            return verr(v, tat, "%s: from and to must differ", fp);
        if ((rc = dup_str(tz, &p->hours_tz)) != 0)
            return rc;
        rc = custos_tz_load(NULL, tz, &p->tz);
        if (rc == CUSTOS_ENOMEM)
            return rc;
        if (rc != 0)
            return verr(v, tzat, "%s.tz: unknown time zone (expected an IANA name such as Europe/Paris)", fp);
    }
    return 0;
}

/* identity.{role_assignments, role_map, conditional_access} */
static int parse_identity_rbac(vctx_t *v, json_object *m, custos_config_t *c)
{
    static const char *const akeys[] = {"principal", "group", "app_id", "role", "scope", NULL};
    static const char *const subj[] = {"principal", "group", "app_id"};
    json_object *seq, *rm;
    custos_ymark_t at;
    char path[96], fp[256];
    int rc;
    if ((rc = get_seq(v, m, "identity", "role_assignments", 0, CUSTOS_CONFIG_MAX_ROLE_ASSIGNMENTS, NULL, &seq, &at)) !=
        0)
        return rc;
    size_t n = seq ? json_object_array_length(seq) : 0;
    if (n) {
        c->identity.role_assignments = calloc(n, sizeof(*c->identity.role_assignments));
        if (!c->identity.role_assignments)
            return CUSTOS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        custos_role_assignment_config_t *ra = &c->identity.role_assignments[i];
        json_object *am = json_object_array_get_idx(seq, i);
        c->identity.n_role_assignments = i + 1;
        snprintf(path, sizeof(path), "identity.role_assignments[%zu]", i);
        if ((rc = expect_map(v, am, custos_ytree_val_mark(seq, i), path)) != 0 ||
            (rc = check_keys(v, am, path, akeys)) != 0)
            return rc;
        int count = 0;
        for (int k = 0; k < 3; k++) {
            const char *s;
            if ((rc = get_str(v, am, path, subj[k], 0, 256, &s, &at)) != 0)
                return rc;
            if (!s)
                continue;
            if (++count > 1)
                return verr(v, at, "%s: exactly one of principal, group, app_id is allowed", path);
            ra->kind = (custos_ra_kind_t)k;
            if ((rc = dup_str(s, &ra->subject)) != 0)
                return rc;
        }
        if (count == 0)
            return verr(v, custos_ytree_mark(am), "%s: one of principal, group, app_id is required", path);
        field_t f;
        get_field(am, "role", &f);
        if (!f.present)
            return missing(v, am, path, "role");
        if ((rc = get_role(v, f.val, f.vmark, join(fp, sizeof(fp), path, "role"), &ra->role)) != 0)
            return rc;
        if ((rc = get_scope(v, am, path, &ra->scope)) != 0)
            return rc;
    }
    if ((rc = get_map(v, m, "identity", "role_map", 0, &rm, &at)) != 0)
        return rc;
    n = rm ? custos_ytree_count(rm) : 0;
    if (n > CUSTOS_CONFIG_MAX_ROLE_MAP)
        return verr(v, at, "identity.role_map: at most %d entries", CUSTOS_CONFIG_MAX_ROLE_MAP);
    if (n) {
        c->identity.role_map = calloc(n, sizeof(*c->identity.role_map));
        if (!c->identity.role_map)
            return CUSTOS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = custos_ytree_key(rm, i);
        json_object *val;
        custos_ymark_t km, vm;
        custos_ytree_find(rm, k, &val, &km, &vm);
        c->identity.n_role_map = i + 1;
        snprintf(fp, sizeof(fp), "identity.role_map.%.128s", k);
        if (strlen(k) == 0 || strlen(k) > 256)
            return verr(v, km, "identity.role_map: claim values are 1 to 256 bytes");
        if ((rc = get_role(v, val, vm, fp, &c->identity.role_map[i].role)) != 0)
            return rc;
        if ((rc = dup_str(k, &c->identity.role_map[i].claim_value)) != 0)
            return rc;
    }
    if ((rc = get_seq(v, m, "identity", "conditional_access", 0, CUSTOS_CONFIG_MAX_CA_POLICIES, NULL, &seq, &at)) != 0)
        return rc;
    n = seq ? json_object_array_length(seq) : 0;
    if (n) {
        c->identity.ca_policies = calloc(n, sizeof(*c->identity.ca_policies));
        if (!c->identity.ca_policies)
            return CUSTOS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *pm = json_object_array_get_idx(seq, i);
        c->identity.n_ca_policies = i + 1;
        snprintf(path, sizeof(path), "identity.conditional_access[%zu]", i);
        if ((rc = expect_map(v, pm, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = parse_ca_policy(v, pm, path, &c->identity.ca_policies[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->identity.ca_policies[j].name, c->identity.ca_policies[i].name) == 0)
                return verr(v, custos_ytree_val_mark(seq, i), "%s.name: duplicate policy name", path);
    }
    return 0;
}

static void free_identity_rbac(custos_identity_config_t *id)
{
    for (size_t i = 0; i < id->n_api_keys; i++) {
        free(id->api_keys[i].principal);
        free(id->api_keys[i].scope);
    }
    for (size_t i = 0; i < id->n_role_assignments; i++) {
        free(id->role_assignments[i].subject);
        free(id->role_assignments[i].scope);
    }
    free(id->role_assignments);
    for (size_t i = 0; i < id->n_role_map; i++)
        free(id->role_map[i].claim_value);
    free(id->role_map);
    for (size_t i = 0; i < id->n_ca_policies; i++) {
        custos_ca_policy_config_t *p = &id->ca_policies[i];
        free(p->name);
        for (size_t j = 0; j < p->n_when_deployments; j++)
            free(p->when_deployments[j]);
        free(p->when_deployments);
        free(p->when_networks);
        free(p->require_networks);
        for (size_t j = 0; j < p->n_require_claims; j++) {
            free(p->require_claims[j].name);
            free(p->require_claims[j].value);
        }
        free(p->require_claims);
        free(p->hours_tz);
        custos_tz_free(p->tz);
    }
    free(id->ca_policies);
}

/* Joins a relative path to the config file's directory. */
static int resolve_path(vctx_t *v, const char *s, char **out)
{
    if (s[0] != '/' && v->basedir) {
        if (asprintf(out, "%s%s", v->basedir, s) < 0) {
            *out = NULL;
            return CUSTOS_ENOMEM;
        }
        return 0;
    }
    return dup_str(s, out);
}

/* storage.encryption: {provider, key_dir, pkcs11: {module, token, key_label, pin_env | pin_file}}. */
static int parse_storage_encryption(vctx_t *v, json_object *sm, custos_config_t *c)
{
    static const char *const keys[] = {"provider", "key_dir", "pkcs11", NULL};
    static const char *const pkeys[] = {"module", "token", "key_label", "pin_env", "pin_file", NULL};
    static const char *const providers[] = {"local", "pkcs11", NULL};
    custos_storage_config_t *st = &c->storage;
    json_object *m = NULL, *pm = NULL;
    custos_ymark_t at, pat;
    const char *s = NULL;
    int rc, prov = 0;
    if (sm && (rc = get_map(v, sm, "storage", "encryption", 0, &m, &at)) != 0)
        return rc;
    if (m) {
        if ((rc = check_keys(v, m, "storage.encryption", keys)) != 0 ||
            (rc = get_enum(v, m, "storage.encryption", "provider", providers, 0, &prov)) != 0 ||
            (rc = get_str(v, m, "storage.encryption", "key_dir", 0, 4096, &s, &at)) != 0 ||
            (rc = get_map(v, m, "storage.encryption", "pkcs11", 0, &pm, &pat)) != 0)
            return rc;
    }
    st->kek_provider = prov == 1 ? CUSTOS_KEK_PKCS11 : CUSTOS_KEK_LOCAL;
    if ((rc = resolve_path(v, s ? s : "custos-keys", &st->key_dir)) != 0)
        return rc;
    if (st->kek_provider == CUSTOS_KEK_LOCAL) {
        if (pm)
            return verr(v, pat, "storage.encryption.pkcs11: only allowed with provider: pkcs11");
        return 0;
    }
    if (!pm)
        return verr(v, custos_ytree_mark(m), "storage.encryption: provider pkcs11 needs a pkcs11 mapping");
    const char *p = "storage.encryption.pkcs11";
    if ((rc = check_keys(v, pm, p, pkeys)) != 0 || (rc = get_path(v, pm, p, "module", 1, &st->pkcs11_module)) != 0)
        return rc;
    if ((rc = get_str(v, pm, p, "token", 1, 32, &s, &at)) != 0 || (rc = dup_str(s, &st->pkcs11_token)) != 0)
        return rc;
    if ((rc = get_str(v, pm, p, "key_label", 1, 60, &s, &at)) != 0 || (rc = dup_str(s, &st->pkcs11_key_label)) != 0)
        return rc;
    field_t fe, ff;
    get_field(pm, "pin_env", &fe);
    get_field(pm, "pin_file", &ff);
    if (fe.present && ff.present)
        return verr(v, ff.kmark, "%s: exactly one of pin_env, pin_file is allowed", p);
    if (!fe.present && !ff.present)
        return verr(v, custos_ytree_mark(pm), "%s: one of pin_env, pin_file is required (the token's user PIN)", p);
    return get_secret(v, pm, p, "pin_env", "pin_file", &st->pkcs11_pin, &st->pkcs11_pin_len);
}

/* storage: {driver, path, url, password_env | password_file, busy_timeout_ms, poll_interval_ms, encryption}
 * (optional mapping). SQLite (default): path, default "custos.db" next to the config file; the file need not
 * exist: custos serve creates it at start. PostgreSQL: url (path then only serves modules not yet moved
 * behind store/store.h). */
static int parse_storage(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"driver",           "path",          "url",
                                       "password_env",     "password_file", "busy_timeout_ms",
                                       "poll_interval_ms", "encryption",    NULL};
    static const char *const drivers[] = {"sqlite", "postgres", NULL};
    json_object *m;
    custos_ymark_t at;
    const char *s = NULL, *url = NULL;
    int rc, drv = 0;
    c->storage.busy_timeout_ms = 5000;
    c->storage.poll_interval_ms = 2000;
    if ((rc = get_map(v, root, "", "storage", 0, &m, &at)) != 0)
        return rc;
    if (m) {
        if ((rc = check_keys(v, m, "storage", keys)) != 0)
            return rc;
        if ((rc = get_enum(v, m, "storage", "driver", drivers, 0, &drv)) != 0 ||
            (rc = get_str(v, m, "storage", "path", 0, 4096, &s, &at)) != 0 ||
            (rc = get_str(v, m, "storage", "url", 0, 4096, &url, &at)) != 0)
            return rc;
        GET_INT_AS(v, m, "storage", "busy_timeout_ms", 1, 600000, 5000, c->storage.busy_timeout_ms);
        GET_INT_AS(v, m, "storage", "poll_interval_ms", 0, 3600000, 2000, c->storage.poll_interval_ms);
        c->storage.driver = drv == 1 ? CUSTOS_STORAGE_POSTGRES : CUSTOS_STORAGE_SQLITE;
        field_t fe, ff;
        get_field(m, "password_env", &fe);
        get_field(m, "password_file", &ff);
        if (fe.present && ff.present)
            return verr(v, ff.kmark, "storage: exactly one of password_env, password_file is allowed");
        if (fe.present || ff.present) {
            if (c->storage.driver != CUSTOS_STORAGE_POSTGRES)
                return verr(v, fe.present ? fe.kmark : ff.kmark,
                            "storage: a password is only used with driver: postgres");
            if ((rc = get_secret(v, m, "storage", "password_env", "password_file", &c->storage.password,
                                 &c->storage.password_len)) != 0)
                return rc;
        }
        if (c->storage.driver == CUSTOS_STORAGE_POSTGRES) {
            if (!url)
                return verr(v, custos_ytree_mark(m), "storage: driver postgres needs url");
            if (strstr(url, "password"))
                return verr(v, at, "storage.url: must not contain a password (use password_env or password_file)");
            if ((rc = dup_str(url, &c->storage.url)) != 0)
                return rc;
        } else if (url) {
            return verr(v, at, "storage.url: only used with driver: postgres");
        }
    }
    if ((rc = parse_storage_encryption(v, m, c)) != 0)
        return rc;
    v->storage = &c->storage;
    /* With postgres, path still names the local SQLite file of modules not yet on the store interface. */
    return resolve_path(v, s ? s : "custos.db", &c->storage.path);
}

/* retention: {content: none | {days: N}}; default none. */
static int parse_retention(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"content", NULL};
    static const char *const ckeys[] = {"days", NULL};
    json_object *m, *cm = NULL;
    custos_ymark_t at;
    int rc;
    c->retention.content_none = true;
    if ((rc = get_map(v, root, "", "retention", 0, &m, &at)) != 0 || !m)
        return rc;
    if ((rc = check_keys(v, m, "retention", keys)) != 0)
        return rc;
    field_t f;
    get_field(m, "content", &f);
    if (!f.present)
        return 0;
    if (f.val && json_object_is_type(f.val, json_type_string) && strcmp(json_object_get_string(f.val), "none") == 0)
        return 0;
    if (!f.val || !json_object_is_type(f.val, json_type_object))
        return verr(v, f.vmark, "retention.content: expected none or a mapping {days: N}");
    cm = f.val;
    if ((rc = check_keys(v, cm, "retention.content", ckeys)) != 0)
        return rc;
    field_t d;
    get_field(cm, "days", &d);
    if (!d.present)
        return missing(v, cm, "retention.content", "days");
    c->retention.content_none = false;
    GET_INT_AS(v, cm, "retention.content", "days", 1, 3650, 30, c->retention.content_days);
    return 0;
}

/* ---------- identity.client_certificates (mutual TLS principals) and network (perimeter) ---------- */

static int valid_principal(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    return 1;
}

static int parse_client_certs(vctx_t *v, json_object *m, custos_config_t *c)
{
    static const char *const ckeys[] = {"subject", "san_uri", "san_dns", "principal", "roles", "scope", NULL};
    static const char *const kinds[] = {"subject", "san_uri", "san_dns"};
    json_object *seq, *rseq;
    custos_ymark_t at;
    char path[96], fp[256];
    int rc;
    if ((rc = get_seq(v, m, "identity", "client_certificates", 0, CUSTOS_CONFIG_MAX_CLIENT_CERTS, NULL, &seq, &at)) !=
        0)
        return rc;
    size_t n = seq ? json_object_array_length(seq) : 0;
    if (n == 0)
        return 0;
    c->identity.client_certificates = calloc(n, sizeof(*c->identity.client_certificates));
    if (!c->identity.client_certificates)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        custos_client_cert_config_t *cc = &c->identity.client_certificates[i];
        json_object *cm = json_object_array_get_idx(seq, i);
        const char *s = NULL;
        c->identity.n_client_certificates = i + 1;
        snprintf(path, sizeof(path), "identity.client_certificates[%zu]", i);
        if ((rc = expect_map(v, cm, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = check_keys(v, cm, path, ckeys)) != 0)
            return rc;
        int count = 0;
        for (int k = 0; k < 3; k++) {
            const char *t;
            if ((rc = get_str(v, cm, path, kinds[k], 0, 1024, &t, &at)) != 0)
                return rc;
            if (!t)
                continue;
            if (++count > 1)
                return verr(v, at, "%s: exactly one of subject, san_uri, san_dns is allowed", path);
            for (const char *p = t; *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                    return verr(v, at,
                                "%s: must be printable ASCII (write UTF-8 in subjects as \\XX escapes, "
                                "as openssl x509 -noout -subject -nameopt RFC2253 prints them)",
                                join(fp, sizeof(fp), path, kinds[k]));
            cc->match = (custos_client_cert_match_t)k;
            s = t;
        }
        if (count == 0)
            return verr(v, custos_ytree_mark(cm), "%s: one of subject, san_uri, san_dns is required", path);
        if ((rc = dup_str(s, &cc->value)) != 0)
            return rc;
        if ((rc = get_str(v, cm, path, "principal", 1, 256, &s, &at)) != 0)
            return rc;
        if (!valid_principal(s))
            return verr(v, at, "%s: must be printable ASCII without spaces", join(fp, sizeof(fp), path, "principal"));
        if ((rc = dup_str(s, &cc->principal)) != 0)
            return rc;
        if ((rc = get_seq(v, cm, path, "roles", 0, 5, NULL, &rseq, &at)) != 0)
            return rc;
        if (!rseq) {
            cc->roles = CUSTOS_ROLE_INFERENCE_USER;
        } else {
            for (size_t j = 0; j < json_object_array_length(rseq); j++) {
                unsigned r;
                snprintf(fp, sizeof(fp), "%s.roles[%zu]", path, j);
                if ((rc = get_role(v, json_object_array_get_idx(rseq, j), custos_ytree_val_mark(rseq, j), fp, &r)) != 0)
                    return rc;
                cc->roles |= r;
            }
        }
        if ((rc = get_scope(v, cm, path, &cc->scope)) != 0)
            return rc;
    }
    return 0;
}

/* A sequence of CIDR strings into a new array (*out NULL when absent or empty). */
static int get_cidrs(vctx_t *v, json_object *m, const char *key, custos_cidr_t **out, size_t *n_out)
{
    json_object *seq;
    custos_ymark_t at;
    char fp[96], sb[72];
    int rc;
    *out = NULL;
    *n_out = 0;
    if ((rc = get_seq(v, m, "network", key, 0, CUSTOS_CONFIG_MAX_IP_RULES, NULL, &seq, &at)) != 0)
        return rc;
    size_t n = seq ? json_object_array_length(seq) : 0;
    if (n == 0)
        return 0;
    custos_cidr_t *a = calloc(n, sizeof(*a));
    if (!a)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *s, *why = NULL;
        custos_ymark_t im = custos_ytree_val_mark(seq, i);
        snprintf(fp, sizeof(fp), "network.%s[%zu]", key, i);
        if ((rc = check_str(v, json_object_array_get_idx(seq, i), im, fp, 64, &s)) != 0 ||
            custos_cidr_parse(s, strlen(s), &a[i], &why) != 0) {
            if (rc == 0)
                rc = verr(v, im, "%s: '%s' is not a valid IP address or CIDR: %s", fp, shown(s, sb, sizeof(sb)), why);
            free(a);
            return rc;
        }
    }
    *out = a;
    *n_out = n;
    return 0;
}

static int parse_network(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"public_network_access", "default_action", "ip_rules", "trusted_proxies", NULL};
    static const char *const pna[] = {"enabled", "disabled", NULL};
    static const char *const act[] = {"allow", "deny", NULL};
    custos_network_config_t *N = &c->network;
    custos_cidr_t *rules = NULL, *proxies = NULL;
    json_object *m;
    int rc, x;
    if ((rc = get_map(v, root, "", "network", 0, &m, NULL)) != 0)
        return rc;
    if (!m)
        return 0;
    if ((rc = check_keys(v, m, "network", keys)) != 0)
        return rc;
    if ((rc = get_enum(v, m, "network", "public_network_access", pna, 0, &x)) != 0)
        return rc;
    N->public_access = x == 0;
    if ((rc = get_enum(v, m, "network", "default_action", act, 0, &x)) != 0)
        return rc;
    N->default_deny = x == 1;
    if ((rc = get_cidrs(v, m, "ip_rules", &rules, &N->n_ip_rules)) != 0)
        goto fail;
    if ((rc = get_cidrs(v, m, "trusted_proxies", &proxies, &N->n_trusted_proxies)) != 0)
        goto fail;
    N->acl = calloc(1, sizeof(*N->acl));
    if (!N->acl) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    rc =
        custos_acl_init(N->acl, N->public_access, N->default_deny, rules, N->n_ip_rules, proxies, N->n_trusted_proxies);
    if (rc != 0) {
        free(N->acl);
        N->acl = NULL;
        goto fail;
    }
    N->configured = true;
fail:
    free(rules);
    free(proxies);
    return rc;
}

/* identity.oidc and backends[].auth.oauth2 URLs: https://, or http:// to a loopback host (tests). */
static int valid_fetch_url(const char *s)
{
    if (!s)
        return 0;
    const char *h;
    if (strncmp(s, "https://", 8) == 0)
        h = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        h = s + 7;
    else
        return 0;
    if (*h == 0 || *h == '/' || strpbrk(s, " \t\r\n#") || memchr(h, '@', strcspn(h, "/?")))
        return 0;
    if (h == s + 7 && strncmp(h, "127.", 4) != 0 && strncmp(h, "localhost", 9) != 0 && strncmp(h, "[::1]", 5) != 0)
        return 0;
    return 1;
}

static int get_claim_name(vctx_t *v, json_object *m, const char *path, const char *key, const char *def, char **out)
{
    const char *s;
    custos_ymark_t at;
    char fp[256];
    int rc = get_str(v, m, path, key, 0, 64, &s, &at);
    if (rc != 0)
        return rc;
    if (s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:/-") != strlen(s))
        return verr(v, at, "%s: must match [A-Za-z0-9_.:/-]{1,64}", join(fp, sizeof(fp), path, key));
    return dup_str(s ? s : def, out);
}

static int parse_oidc_issuer(vctx_t *v, json_object *im, const char *path, custos_oidc_issuer_config_t *o)
{
    static const char *const keys[] = {"issuer",
                                       "audience",
                                       "jwks",
                                       "ca_file",
                                       "principal_claim",
                                       "roles_claim",
                                       "groups_claim",
                                       "clock_skew_s",
                                       "max_token_bytes",
                                       "refresh_s",
                                       "min_refetch_s",
                                       "max_token_age_s",
                                       NULL};
    const char *s;
    custos_ymark_t at;
    field_t f;
    char fp[256];
    int rc;
    if ((rc = check_keys(v, im, path, keys)) != 0)
        return rc;
    if ((rc = get_str(v, im, path, "issuer", 1, 1000, &s, &at)) != 0)
        return rc;
    if (!valid_fetch_url(s))
        return verr(v, at, "%s: must be an https:// URL (http:// only for loopback)",
                    join(fp, sizeof(fp), path, "issuer"));
    if ((rc = dup_str(s, &o->issuer)) != 0)
        return rc;
    get_field(im, "audience", &f);
    join(fp, sizeof(fp), path, "audience");
    if (!f.present)
        return missing(v, im, path, "audience");
    if (f.val && json_object_is_type(f.val, json_type_array)) {
        size_t n = json_object_array_length(f.val);
        if (n < 1 || n > CUSTOS_CONFIG_MAX_OIDC_AUDIENCES)
            return verr(v, f.vmark, "%s: 1 to %d audiences", fp, CUSTOS_CONFIG_MAX_OIDC_AUDIENCES);
        if (!(o->audiences = calloc(n, sizeof(char *))))
            return CUSTOS_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            char ip[300];
            snprintf(ip, sizeof(ip), "%s[%zu]", fp, i);
            if ((rc = check_str(v, json_object_array_get_idx(f.val, i), custos_ytree_val_mark(f.val, i), ip, 1000,
                                &s)) != 0)
                return rc;
            if ((rc = dup_str(s, &o->audiences[i])) != 0)
                return rc;
            o->n_audiences = i + 1;
        }
    } else {
        if ((rc = check_str(v, f.val, f.vmark, fp, 1000, &s)) != 0)
            return rc;
        if (!(o->audiences = calloc(1, sizeof(char *))))
            return CUSTOS_ENOMEM;
        if ((rc = dup_str(s, &o->audiences[0])) != 0)
            return rc;
        o->n_audiences = 1;
    }
    if ((rc = get_str(v, im, path, "jwks", 0, 4096, &s, &at)) != 0)
        return rc;
    if (s && strncmp(s, "file:", 5) == 0) {
        const char *p = s + 5;
        char sb[128];
        if (!*p)
            return verr(v, at, "%s: file: needs a path", join(fp, sizeof(fp), path, "jwks"));
        if (p[0] != '/' && v->basedir)
            rc = asprintf(&o->jwks, "file:%s%s", v->basedir, p) < 0 ? CUSTOS_ENOMEM : 0;
        else
            rc = dup_str(s, &o->jwks);
        if (rc != 0) {
            o->jwks = NULL;
            return CUSTOS_ENOMEM;
        }
        if (access(o->jwks + 5, R_OK) != 0) {
            int e = errno;
            return verr(v, at, "%s: cannot read '%s': %s", join(fp, sizeof(fp), path, "jwks"),
                        shown(o->jwks + 5, sb, sizeof(sb)), strerror(e));
        }
    } else if (s) {
        if (!valid_fetch_url(s))
            return verr(v, at, "%s: expected file:PATH or an https:// URL (http:// only for loopback)",
                        join(fp, sizeof(fp), path, "jwks"));
        if ((rc = dup_str(s, &o->jwks)) != 0)
            return rc;
    }
    if ((rc = get_path(v, im, path, "ca_file", 0, &o->ca_file)) != 0)
        return rc;
    if ((rc = get_claim_name(v, im, path, "principal_claim", "oid", &o->principal_claim)) != 0 ||
        (rc = get_claim_name(v, im, path, "roles_claim", "roles", &o->roles_claim)) != 0 ||
        (rc = get_claim_name(v, im, path, "groups_claim", "groups", &o->groups_claim)) != 0)
        return rc;
    GET_INT_AS(v, im, path, "clock_skew_s", 0, 600, 60, o->clock_skew_s);
    GET_INT_AS(v, im, path, "max_token_bytes", 1024, 65536, 16384, o->max_token_bytes);
    GET_INT_AS(v, im, path, "refresh_s", 60, 86400, 3600, o->refresh_s);
    GET_INT_AS(v, im, path, "min_refetch_s", 1, 3600, 60, o->min_refetch_s);
    GET_INT_AS(v, im, path, "max_token_age_s", 0, 31536000, 0, o->max_token_age_s);
    return 0;
}

static int parse_identity_oidc(vctx_t *v, json_object *m, custos_config_t *c)
{
    json_object *seq;
    custos_ymark_t at;
    int rc;
    if ((rc = get_seq(v, m, "identity", "oidc", 0, CUSTOS_CONFIG_MAX_OIDC_ISSUERS, NULL, &seq, &at)) != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    if (n == 0)
        return 0;
    if (!(c->identity.oidc = calloc(n, sizeof(*c->identity.oidc))))
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char path[64];
        json_object *im = json_object_array_get_idx(seq, i);
        snprintf(path, sizeof(path), "identity.oidc[%zu]", i);
        c->identity.n_oidc = i + 1;
        if ((rc = expect_map(v, im, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = parse_oidc_issuer(v, im, path, &c->identity.oidc[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->identity.oidc[j].issuer, c->identity.oidc[i].issuer) == 0)
                return verr(v, custos_ytree_val_mark(seq, i), "%s.issuer: same issuer as identity.oidc[%zu]", path, j);
    }
    return 0;
}

static void free_identity_oidc(custos_identity_config_t *id)
{
    for (size_t i = 0; i < id->n_oidc; i++) {
        custos_oidc_issuer_config_t *o = &id->oidc[i];
        free(o->issuer);
        for (size_t j = 0; j < o->n_audiences; j++)
            free(o->audiences[j]);
        free(o->audiences);
        free(o->jwks);
        free(o->ca_file);
        free(o->principal_claim);
        free(o->roles_claim);
        free(o->groups_claim);
    }
    free(id->oidc);
}

static int parse_identity(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"api_keys",
                                       "disable_local_auth",
                                       "role_assignments",
                                       "role_map",
                                       "conditional_access",
                                       "client_certificates",
                                       "oidc",
                                       NULL};
    static const char *const kkeys[] = {"name", "sha256", "key_env", "key_file", "principal", "roles", "scope", NULL};
    static const char *const need = "at least one key is required (custos is never open by default)";
    json_object *m, *seq;
    custos_ymark_t at, *name_marks = NULL;
    key_ref_t *refs = NULL;
    int rc;
    if ((rc = get_map(v, root, "", "identity", 0, &m, &at)) != 0)
        return rc;
    if (!m)
        return verr(v, custos_ytree_mark(root), "identity.api_keys: %s", need);
    if ((rc = check_keys(v, m, "identity", keys)) != 0)
        return rc;
    if ((rc = get_bool(v, m, "identity", "disable_local_auth", false, &c->identity.disable_local_auth)) != 0)
        return rc;
    /* with local auth disabled, keys are optional (they would all be refused anyway) */
    if ((rc = get_seq(v, m, "identity", "api_keys", c->identity.disable_local_auth ? 0 : 1, CUSTOS_CONFIG_MAX_API_KEYS,
                      need, &seq, &at)) != 0)
        return rc;
    size_t n = seq ? json_object_array_length(seq) : 0;
    c->identity.api_keys = calloc(n ? n : 1, sizeof(*c->identity.api_keys));
    name_marks = calloc(n ? n : 1, sizeof(*name_marks));
    if (!c->identity.api_keys || !name_marks) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        custos_api_key_config_t *k = &c->identity.api_keys[i];
        json_object *km = json_object_array_get_idx(seq, i);
        char path[64], fp[128], sb[72];
        c->identity.n_api_keys = i + 1;
        snprintf(path, sizeof(path), "identity.api_keys[%zu]", i);
        if ((rc = expect_map(v, km, custos_ytree_val_mark(seq, i), path)) != 0)
            goto fail;
        if ((rc = check_keys(v, km, path, kkeys)) != 0)
            goto fail;
        if ((rc = get_name(v, km, path, "name", 1, &k->name, &name_marks[i])) != 0)
            goto fail;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->identity.api_keys[j].name, k->name) == 0) {
                rc = verr(v, name_marks[i], "%s.name: duplicate name '%s' (also identity.api_keys[%zu])", path,
                          shown(k->name, sb, sizeof(sb)), j);
                goto fail;
            }
        }
        /* exactly one of sha256 / key_env / key_file */
        field_t f[3];
        const char *srcs[] = {"sha256", "key_env", "key_file"};
        int count = 0, which = -1;
        for (int s = 0; s < 3; s++) {
            get_field(km, srcs[s], &f[s]);
            if (f[s].present) {
                if (++count > 1) {
                    rc = verr(v, f[s].kmark, "%s: exactly one of sha256, key_env, key_file is allowed", path);
                    goto fail;
                }
                which = s;
            }
        }
        if (count == 0) {
            rc = verr(v, custos_ytree_mark(km), "%s: one of sha256, key_env, key_file is required", path);
            goto fail;
        }
        if (which == 0) {
            const char *hex;
            if ((rc = get_str(v, km, path, "sha256", 1, 64, &hex, &at)) != 0)
                goto fail;
            if (!hex || strlen(hex) != 64) {
                rc = verr(v, at, "%s: expected 64 hexadecimal digits", join(fp, sizeof(fp), path, "sha256"));
                goto fail;
            }
            for (size_t b = 0; b < 32; b++) {
                int hi = custos_hex_value(hex[2 * b]), lo = custos_hex_value(hex[2 * b + 1]);
                if (hi < 0 || lo < 0) {
                    rc = verr(v, at, "%s: expected 64 hexadecimal digits", join(fp, sizeof(fp), path, "sha256"));
                    goto fail;
                }
                k->sha256[b] = (unsigned char)(hi << 4 | lo);
            }
        } else {
            char *secret;
            size_t slen;
            if ((rc = get_secret(v, km, path, "key_env", "key_file", &secret, &slen)) != 0)
                goto fail;
            rc = sha256_of(secret, slen, k->sha256);
            free_secret(secret, slen);
            if (rc != 0)
                goto fail;
        }
        if ((rc = parse_key_grants(v, km, path, k)) != 0)
            goto fail;
    }
    /* Two names for one key would make the caller's identity ambiguous. */
    refs = calloc(n ? n : 1, sizeof(*refs));
    if (!refs) {
        rc = CUSTOS_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        refs[i].digest = c->identity.api_keys[i].sha256;
        refs[i].idx = i;
    }
    qsort(refs, n, sizeof(*refs), cmp_key_ref);
    for (size_t i = 1; i < n; i++) {
        if (memcmp(refs[i].digest, refs[i - 1].digest, 32) == 0) {
            size_t later = refs[i].idx, earlier = refs[i - 1].idx;
            rc = verr(v, custos_ytree_val_mark(seq, later),
                      "identity.api_keys[%zu]: same key as identity.api_keys[%zu]", later, earlier);
            goto fail;
        }
    }
    if ((rc = parse_identity_rbac(v, m, c)) != 0)
        goto fail;
    if ((rc = parse_client_certs(v, m, c)) != 0)
        goto fail;
    if ((rc = parse_identity_oidc(v, m, c)) != 0)
        goto fail;
    rc = 0;
fail:
    free(refs);
    free(name_marks);
    return rc;
}

static int valid_header_value(const char *s, size_t len)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int parse_backend_oauth2(vctx_t *v, json_object *m, const char *path, custos_backend_config_t *b)
{
    static const char *const keys[] = {"token_url", "client_id", "client_secret_env", "client_secret_file", "scope",
                                       "ca_file",   NULL};
    custos_oauth2_client_config_t *o;
    const char *s;
    custos_ymark_t at;
    char fp[256];
    field_t fe, ff;
    int rc;
    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    if (!(o = b->oauth2 = calloc(1, sizeof(*o))))
        return CUSTOS_ENOMEM;
    if ((rc = get_str(v, m, path, "token_url", 1, 2000, &s, &at)) != 0)
        return rc;
    if (!valid_fetch_url(s))
        return verr(v, at, "%s: must be an https:// URL (http:// only for loopback)",
                    join(fp, sizeof(fp), path, "token_url"));
    if ((rc = dup_str(s, &o->token_url)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "client_id", 1, 256, &s, &at)) != 0 || (rc = dup_str(s, &o->client_id)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "scope", 0, 1000, &s, &at)) != 0 || (rc = dup_str(s, &o->scope)) != 0)
        return rc;
    if ((rc = get_path(v, m, path, "ca_file", 0, &o->ca_file)) != 0)
        return rc;
    get_field(m, "client_secret_env", &fe);
    get_field(m, "client_secret_file", &ff);
    if (fe.present && ff.present)
        return verr(v, ff.kmark, "%s: exactly one of client_secret_env, client_secret_file is allowed", path);
    if (!fe.present && !ff.present)
        return verr(v, custos_ytree_mark(m), "%s: one of client_secret_env, client_secret_file is required", path);
    return get_secret(v, m, path, "client_secret_env", "client_secret_file", &o->client_secret, &o->client_secret_len);
}

static custos_config_secret_fn secret_resolver;

void custos_config_set_secret_resolver(custos_config_secret_fn fn)
{
    secret_resolver = fn;
}

/* auth.api_key_secret / bearer_secret: a secret stored sealed in the store (`custos secrets put`). */
static int get_store_secret(vctx_t *v, json_object *m, const char *path, const char *key, char **out, size_t *len)
{
    const char *name;
    custos_ymark_t at;
    char fp[256], e[300] = "";
    int rc = get_str(v, m, path, key, 1, 64, &name, &at);
    if (rc != 0 || !name)
        return rc ? rc : CUSTOS_EINVAL;
    join(fp, sizeof(fp), path, key);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            return verr(v, at, "%s: must match [A-Za-z0-9._-]{1,64}", fp);
    if (!secret_resolver || !v->storage)
        return verr(v, at, "%s: secrets from the store are not available here", fp);
    if (secret_resolver(v->storage, name, out, len, e, sizeof(e)) != 0)
        return verr(v, at, "%s: %s", fp, e);
    return 0;
}

static int parse_backend_auth(vctx_t *v, json_object *m, const char *path, custos_backend_config_t *b)
{
    static const char *const keys[] = {"api_key_env", "api_key_file",   "bearer_env",    "bearer_file",
                                       "oauth2",      "api_key_secret", "bearer_secret", NULL};
    char fp[256];
    field_t f[7];
    int rc, which = -1;
    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    for (int i = 0; i < 7; i++) {
        get_field(m, keys[i], &f[i]);
        if (f[i].present && which >= 0)
            return verr(v, f[i].kmark,
                        "%s: exactly one of api_key_env, api_key_file, bearer_env, bearer_file, oauth2, "
                        "api_key_secret, bearer_secret is allowed",
                        path);
        if (f[i].present)
            which = i;
    }
    if (which < 0)
        return verr(v, custos_ytree_mark(m),
                    "%s: one of api_key_env, api_key_file, bearer_env, bearer_file, oauth2, api_key_secret, "
                    "bearer_secret is required",
                    path);
    if (which >= 5) {
        bool api = which == 5;
        b->auth_kind = api ? CUSTOS_BACKEND_AUTH_API_KEY : CUSTOS_BACKEND_AUTH_BEARER;
        char **dst = api ? &b->api_key : &b->bearer;
        size_t *dlen = api ? &b->api_key_len : &b->bearer_len;
        if ((rc = get_store_secret(v, m, path, keys[which], dst, dlen)) != 0)
            return rc;
        if (!valid_header_value(*dst, *dlen))
            return verr(v, f[which].vmark, "%s: the stored secret contains characters not allowed in an HTTP header",
                        join(fp, sizeof(fp), path, keys[which]));
        return 0;
    }
    if (which == 4) {
        char sub[300];
        b->auth_kind = CUSTOS_BACKEND_AUTH_OAUTH2;
        if ((rc = expect_map(v, f[4].val, f[4].vmark, join(sub, sizeof(sub), path, "oauth2"))) != 0)
            return rc;
        return parse_backend_oauth2(v, f[4].val, sub, b);
    }
    char **dst = which < 2 ? &b->api_key : &b->bearer;
    size_t *dlen = which < 2 ? &b->api_key_len : &b->bearer_len;
    b->auth_kind = which < 2 ? CUSTOS_BACKEND_AUTH_API_KEY : CUSTOS_BACKEND_AUTH_BEARER;
    if ((rc = get_secret(v, m, path, which < 2 ? "api_key_env" : "bearer_env",
                         which < 2 ? "api_key_file" : "bearer_file", dst, dlen)) != 0)
        return rc;
    if (!valid_header_value(*dst, *dlen))
        return verr(v, f[which].vmark, "%s: the key contains spaces or characters not allowed in an HTTP header",
                    join(fp, sizeof(fp), path, keys[which]));
    return 0;
}

static int valid_token(const char *s, const char *extra)
{
    if (!s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr(extra, *s)))
            return 0;
    return 1;
}

/* backends[].health_check (docs/routing.md): active probes, enabled by the key's presence. */
static int parse_health_check(vctx_t *v, json_object *m, const char *path, custos_backend_config_t *b)
{
    static const char *const keys[] = {"path", "interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold",
                                       NULL};
    char sub[128];
    json_object *hm;
    custos_ymark_t at;
    const char *s = NULL;
    int rc;
    if ((rc = get_map(v, m, path, "health_check", 0, &hm, &at)) != 0 || !hm)
        return rc;
    join(sub, sizeof(sub), path, "health_check");
    if ((rc = check_keys(v, hm, sub, keys)) != 0)
        return rc;
    b->hc_enabled = true;
    GET_INT_AS(v, hm, sub, "interval_ms", 100, 3600000, 10000, b->hc_interval_ms);
    GET_INT_AS(v, hm, sub, "timeout_ms", 10, 60000, 2000, b->hc_timeout_ms);
    GET_INT_AS(v, hm, sub, "healthy_threshold", 1, 100, 2, b->hc_healthy_threshold);
    GET_INT_AS(v, hm, sub, "unhealthy_threshold", 1, 100, 3, b->hc_unhealthy_threshold);
    if (b->hc_timeout_ms > b->hc_interval_ms) {
        field_t f;
        get_field(hm, "timeout_ms", &f);
        return verr(v, f.vmark, "%s.timeout_ms: longer than interval_ms", sub);
    }
    if ((rc = get_str(v, hm, sub, "path", 0, 1024, &s, &at)) != 0)
        return rc;
    if (s) {
        if (s[0] != '/')
            return verr(v, at, "%s.path: must start with '/'", sub);
        for (const char *q = s; *q; q++)
            if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
                return verr(v, at, "%s.path: only printable ASCII without spaces", sub);
        return dup_str(s, &b->hc_path);
    }
    /* default: the models list, which every OpenAI-shaped server answers without spending tokens */
    int n = b->provider == CUSTOS_PROVIDER_AZURE
                ? asprintf(&b->hc_path, "%s/openai/models?api-version=%s", b->path_prefix, b->api_version)
                : asprintf(&b->hc_path, "%s/models", b->path_prefix[0] ? b->path_prefix : "/v1");
    if (n < 0) {
        b->hc_path = NULL;
        return CUSTOS_ENOMEM;
    }
    return 0;
}

static int parse_backend(vctx_t *v, json_object *m, const char *path, custos_backend_config_t *b)
{
    static const char *const keys[] = {
        "name",      "provider",   "url", "api_version", "deployment",      "model",  "auth",         "region",
        "data_zone", "attributes", "tls", "priority",    "max_connections", "weight", "health_check", NULL};
    static const char *const providers[] = {"openai", "azure", "openai-compatible", NULL};
    static const char *const akeys[] = {"no_training", "zero_data_retention", NULL};
    static const char *const tkeys[] = {"ca_file", "verify", NULL};
    char fp[256], sub[128];
    custos_ymark_t at;
    const char *s;
    json_object *sm;
    field_t f;
    int rc, prov;

    b->tls_verify = true;
    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    if ((rc = get_name(v, m, path, "name", 1, &b->name, &at)) != 0)
        return rc;
    get_field(m, "provider", &f);
    if (!f.present)
        return missing(v, m, path, "provider");
    if ((rc = get_enum(v, m, path, "provider", providers, 0, &prov)) != 0)
        return rc;
    b->provider = (custos_provider_t)prov;
    if ((rc = get_str(v, m, path, "url", 1, 2048, &s, &at)) != 0)
        return rc;
    if ((rc = dup_str(s, &b->url)) != 0)
        return rc;
    const char *why = parse_url(s, b);
    if (why)
        return verr(v, at, "%s: %s", join(fp, sizeof(fp), path, "url"), why);

    /* azure-only and openai-only keys */
    get_field(m, "api_version", &f);
    if (f.present && b->provider != CUSTOS_PROVIDER_AZURE)
        return verr(v, f.kmark, "%s.api_version: only valid for provider azure", path);
    get_field(m, "deployment", &f);
    if (f.present && b->provider != CUSTOS_PROVIDER_AZURE)
        return verr(v, f.kmark, "%s.deployment: only valid for provider azure", path);
    get_field(m, "model", &f);
    if (f.present && b->provider == CUSTOS_PROVIDER_AZURE)
        return verr(v, f.kmark, "%s.model: not valid for provider azure (use deployment)", path);
    if (b->provider == CUSTOS_PROVIDER_AZURE) {
        if ((rc = get_str(v, m, path, "api_version", 0, 32, &s, &at)) != 0)
            return rc;
        if (s && !valid_token(s, ".-"))
            return verr(v, at, "%s: must match [A-Za-z0-9.-]{1,32}", join(fp, sizeof(fp), path, "api_version"));
        if ((rc = dup_str(s ? s : CUSTOS_CONFIG_DEFAULT_AZURE_API_VERSION, &b->api_version)) != 0)
            return rc;
        if ((rc = get_name(v, m, path, "deployment", 0, &b->deployment, &at)) != 0)
            return rc;
    } else {
        if ((rc = get_str(v, m, path, "model", 0, 256, &s, &at)) != 0)
            return rc;
        if ((rc = dup_str(s, &b->model)) != 0)
            return rc;
    }

    if ((rc = get_map(v, m, path, "auth", 0, &sm, NULL)) != 0)
        return rc;
    if (sm && (rc = parse_backend_auth(v, sm, join(sub, sizeof(sub), path, "auth"), b)) != 0)
        return rc;
    if ((rc = get_zone(v, m, path, "region", &b->region, &at)) != 0)
        return rc;
    if ((rc = get_zone(v, m, path, "data_zone", &b->data_zone, &at)) != 0)
        return rc;
    if ((rc = get_map(v, m, path, "attributes", 0, &sm, NULL)) != 0)
        return rc;
    if (sm) {
        join(sub, sizeof(sub), path, "attributes");
        if ((rc = check_keys(v, sm, sub, akeys)) != 0)
            return rc;
        if ((rc = get_bool(v, sm, sub, "no_training", false, &b->no_training)) != 0)
            return rc;
        if ((rc = get_bool(v, sm, sub, "zero_data_retention", false, &b->zero_data_retention)) != 0)
            return rc;
    }
    if ((rc = get_map(v, m, path, "tls", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(sub, sizeof(sub), path, "tls");
        if (!b->https)
            return verr(v, at, "%s: only valid for an https:// url", sub);
        if ((rc = check_keys(v, sm, sub, tkeys)) != 0)
            return rc;
        if ((rc = get_path(v, sm, sub, "ca_file", 0, &b->ca_file)) != 0)
            return rc;
        if ((rc = get_bool(v, sm, sub, "verify", true, &b->tls_verify)) != 0)
            return rc;
    }
    GET_INT_AS(v, m, path, "priority", -1000, 1000, 0, b->priority);
    GET_INT_AS(v, m, path, "max_connections", 1, 65536, 256, b->max_connections);
    GET_INT_AS(v, m, path, "weight", 1, 1000, 1, b->weight);
    return parse_health_check(v, m, path, b);
}

static int parse_backends(vctx_t *v, json_object *root, custos_config_t *c)
{
    json_object *seq;
    custos_ymark_t at;
    int rc;
    if ((rc = get_seq(v, root, "", "backends", 1, CUSTOS_CONFIG_MAX_BACKENDS, NULL, &seq, &at)) != 0)
        return rc;
    size_t n = json_object_array_length(seq);
    c->backends = calloc(n, sizeof(*c->backends));
    if (!c->backends)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(seq, i);
        char path[64], sb[72];
        c->n_backends = i + 1;
        snprintf(path, sizeof(path), "backends[%zu]", i);
        if ((rc = expect_map(v, m, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = parse_backend(v, m, path, &c->backends[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->backends[j].name, c->backends[i].name) == 0) {
                field_t f;
                get_field(m, "name", &f);
                return verr(v, f.vmark, "%s.name: duplicate name '%s' (also backends[%zu])", path,
                            shown(c->backends[i].name, sb, sizeof(sb)), j);
            }
        }
    }
    return 0;
}

/* ---------- safety and rai_policies (docs/content-filtering.md) ---------- */

static int parse_safety(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"harm_model",     "shields_model", "grounded_model", "pii",
                                       "max_text_bytes", "eval_dir",      "groundedness",   NULL};
    static const char *const pii_keys[] = {"mrn_format", NULL};
    static const char *const gr_keys[] = {"reasoning_deployment", "reasoning_timeout_ms", NULL};
    json_object *m, *pm = NULL;
    custos_ymark_t at;
    const char *s;
    int64_t n;
    int rc;
    c->safety.max_text_bytes = 4u << 20;
    c->safety.grounded_reasoning_timeout_ms = 30000;
    if ((rc = get_map(v, root, "", "safety", 0, &m, &at)) != 0 || !m)
        return rc;
    if ((rc = check_keys(v, m, "safety", keys)) != 0)
        return rc;
    if ((rc = get_path(v, m, "safety", "harm_model", 0, &c->safety.harm_model)) != 0)
        return rc;
    if ((rc = get_path(v, m, "safety", "shields_model", 0, &c->safety.shields_model)) != 0)
        return rc;
    if ((rc = get_path(v, m, "safety", "grounded_model", 0, &c->safety.grounded_model)) != 0)
        return rc;
    if ((rc = get_path(v, m, "safety", "eval_dir", 0, &c->safety.eval_dir)) != 0) /* governance/card.h */
        return rc;
    if ((rc = get_int(v, m, "safety", "max_text_bytes", 1024, 4 << 20, 4 << 20, &n)) != 0)
        return rc;
    c->safety.max_text_bytes = (size_t)n;
    if ((rc = get_map(v, m, "safety", "pii", 0, &pm, &at)) != 0)
        return rc;
    if (pm) {
        if ((rc = check_keys(v, pm, "safety.pii", pii_keys)) != 0)
            return rc;
        if ((rc = get_str(v, pm, "safety.pii", "mrn_format", 0, 32, &s, &at)) != 0)
            return rc;
        if (s && (rc = dup_str(s, &c->safety.pii_mrn_format)) != 0)
            return rc;
    }
    /* groundedness reasoning (docs/content-safety-api.md); the deployment is checked in check_grounded_judge */
    if ((rc = get_map(v, m, "safety", "groundedness", 0, &pm, &at)) != 0)
        return rc;
    if (pm) {
        if ((rc = check_keys(v, pm, "safety.groundedness", gr_keys)) != 0)
            return rc;
        if ((rc = get_str(v, pm, "safety.groundedness", "reasoning_deployment", 0, 64, &s, &at)) != 0)
            return rc;
        if (s && (rc = dup_str(s, &c->safety.grounded_reasoning_deployment)) != 0)
            return rc;
        if ((rc = get_int(v, pm, "safety.groundedness", "reasoning_timeout_ms", 100, 600000, 30000, &n)) != 0)
            return rc;
        c->safety.grounded_reasoning_timeout_ms = (uint32_t)n;
    }
    return 0;
}

/* safety.groundedness.reasoning_deployment must name a configured deployment (after deployments are parsed). */
static int check_grounded_judge(vctx_t *v, json_object *root, const custos_config_t *c)
{
    json_object *m = NULL, *gm = NULL;
    custos_ymark_t at = {1, 1};
    const char *s = c->safety.grounded_reasoning_deployment;
    char sb[72];
    if (!s || custos_config_find_deployment(c, s))
        return 0;
    if (get_map(v, root, "", "safety", 0, &m, &at) == 0 && m &&
        get_map(v, m, "safety", "groundedness", 0, &gm, &at) == 0 && gm)
        get_str(v, gm, "safety.groundedness", "reasoning_deployment", 0, 64, &s, &at);
    return verr(v, at, "safety.groundedness.reasoning_deployment: no deployment is named '%s'",
                shown(c->safety.grounded_reasoning_deployment, sb, sizeof(sb)));
}

/* Azure's default policy (Microsoft.DefaultV2): the four categories at medium, annotated and blocking in both
 * directions; jailbreak blocked; indirect attack annotated; no PII action; no blocklists. */
static void rai_set_default(custos_rai_policy_config_t *p)
{
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        for (int d = 0; d < CUSTOS_RAI_NSRC; d++)
            p->filters[k][d] = (custos_rai_filter_t){true, true, 4};
    p->mode = CUSTOS_RAI_MODE_DEFAULT;
    p->jailbreak = CUSTOS_RAI_BLOCK;
    p->indirect_attack = CUSTOS_RAI_ANNOTATE;
    p->pii[0] = p->pii[1] = CUSTOS_RAI_PII_OFF;
    p->window_min_chars = 200;
    p->window_max_chars = 1000;
    p->context_chars = 200;
}

/* Category names match case-, space-, '-' and '_'-insensitively (Azure spells them several ways). */
static int rai_category(const char *s)
{
    static const char *const names[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "selfharm"};
    char b[32];
    size_t j = 0;
    for (; *s && j + 1 < sizeof(b); s++)
        if (*s != ' ' && *s != '_' && *s != '-')
            b[j++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
    b[j] = 0;
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        if (strcmp(b, names[k]) == 0)
            return k;
    return -1;
}

static int valid_blocklist_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '~' || *s == '-'))
            return 0;
    return 1;
}

/* source: prompt | completion | both -> sets src[] */
static int get_sources(vctx_t *v, json_object *m, const char *path, bool src[CUSTOS_RAI_NSRC])
{
    static const char *const names[] = {"prompt", "completion", "both", NULL};
    int which, rc;
    if ((rc = get_enum(v, m, path, "source", names, 2, &which)) != 0)
        return rc;
    src[CUSTOS_RAI_PROMPT] = which != 1;
    src[CUSTOS_RAI_COMPLETION] = which != 0;
    return 0;
}

/* rai_policies[].groundedness (api/cf_grounded.h): {enabled, action: annotate|block, threshold, domain}. */
static int parse_rai_groundedness(vctx_t *v, json_object *m, const char *path, custos_rai_policy_config_t *p)
{
    static const char *const keys[] = {"enabled", "action", "threshold", "domain", NULL};
    static const char *const actions[] = {"annotate", "block", NULL};
    static const char *const domains[] = {"Generic", "Medical", NULL};
    json_object *gm;
    custos_ymark_t at;
    char fp[256];
    field_t f;
    int rc, e;
    p->groundedness.action = CUSTOS_RAI_ANNOTATE;
    p->groundedness.threshold = 0.5f;
    if ((rc = get_map(v, m, path, "groundedness", 0, &gm, &at)) != 0 || !gm)
        return rc;
    join(fp, sizeof(fp), path, "groundedness");
    if ((rc = check_keys(v, gm, fp, keys)) != 0)
        return rc;
    if ((rc = get_bool(v, gm, fp, "enabled", false, &p->groundedness.enabled)) != 0)
        return rc;
    if ((rc = get_enum(v, gm, fp, "action", actions, 0, &e)) != 0)
        return rc;
    p->groundedness.action = e ? CUSTOS_RAI_BLOCK : CUSTOS_RAI_ANNOTATE;
    if ((rc = get_enum(v, gm, fp, "domain", domains, 0, &e)) != 0)
        return rc;
    p->groundedness.medical = e == 1;
    get_field(gm, "threshold", &f);
    if (f.present) {
        if (!f.val || !(json_object_is_type(f.val, json_type_double) || json_object_is_type(f.val, json_type_int)))
            return verr(v, f.vmark, "%s.threshold: expected a number from 0.5 to 0.99", fp);
        double d = json_object_get_double(f.val);
        if (!(d >= 0.5 && d <= 0.99))
            return verr(v, f.vmark,
                        "%s.threshold: must be from 0.5 to 0.99 (the detector reports sentences from 0.5 on)", fp);
        p->groundedness.threshold = (float)d;
    }
    return 0;
}

/* ---------- guards: external guard models (docs/guard-models.md) ---------- */

static int parse_guard(vctx_t *v, json_object *m, const char *path, custos_guard_config_t *g)
{
    static const char *const keys[] = {"name",
                                       "type",
                                       "url",
                                       "auth",
                                       "model",
                                       "api",
                                       "api_version",
                                       "timeout_ms",
                                       "max_concurrency",
                                       "retries",
                                       "region",
                                       "data_zone",
                                       "tls",
                                       "circuit_breaker",
                                       "cache",
                                       NULL};
    static const char *const types[] = {"llama-guard", "azure-content-safety", "http-classifier", NULL};
    static const char *const apis[] = {"completions", "chat", NULL};
    static const char *const akeys[] = {"api_key_env", "api_key_file", NULL};
    static const char *const tkeys[] = {"ca_file", "verify", NULL};
    static const char *const cbkeys[] = {"consecutive_failures", "base_ejection_ms", "max_ejection_ms", NULL};
    static const char *const ckeys[] = {"max_entries", "ttl_s", NULL};
    char fp[256];
    custos_ymark_t at;
    const char *s;
    json_object *sm;
    field_t f;
    int rc, e;

    g->tls_verify = true;
    if ((rc = check_keys(v, m, path, keys)) != 0 || (rc = get_name(v, m, path, "name", 1, &g->name, &at)) != 0)
        return rc;
    get_field(m, "type", &f);
    if (!f.present)
        return missing(v, m, path, "type");
    if ((rc = get_enum(v, m, path, "type", types, 0, &e)) != 0)
        return rc;
    g->type = (custos_guard_type_t)e;
    if ((rc = get_str(v, m, path, "url", 1, 2048, &s, &at)) != 0 || (rc = dup_str(s, &g->url)) != 0)
        return rc;
    custos_backend_config_t b = {0};
    const char *why = parse_url(s, &b);
    g->host = b.host;
    g->path_prefix = b.path_prefix;
    g->port = b.port;
    g->https = b.https;
    if (why)
        return verr(v, at, "%s: %s", join(fp, sizeof(fp), path, "url"), why);
    get_field(m, "model", &f);
    if (f.present && g->type != CUSTOS_GUARD_LLAMA_GUARD)
        return verr(v, f.kmark, "%s.model: only valid for type llama-guard", path);
    get_field(m, "api", &f);
    if (f.present && g->type != CUSTOS_GUARD_LLAMA_GUARD)
        return verr(v, f.kmark, "%s.api: only valid for type llama-guard", path);
    get_field(m, "api_version", &f);
    if (f.present && g->type != CUSTOS_GUARD_AZURE_CONTENT_SAFETY)
        return verr(v, f.kmark, "%s.api_version: only valid for type azure-content-safety", path);
    if ((rc = get_str(v, m, path, "model", 0, 256, &s, &at)) != 0)
        return rc;
    if (g->type == CUSTOS_GUARD_LLAMA_GUARD && (rc = dup_str(s ? s : "meta-llama/Llama-Guard-3-8B", &g->model)) != 0)
        return rc;
    if ((rc = get_enum(v, m, path, "api", apis, 0, &e)) != 0)
        return rc;
    g->chat_api = e == 1;
    if ((rc = get_str(v, m, path, "api_version", 0, 32, &s, &at)) != 0)
        return rc;
    if (s && !valid_token(s, ".-"))
        return verr(v, at, "%s: must match [A-Za-z0-9.-]{1,32}", join(fp, sizeof(fp), path, "api_version"));
    if (g->type == CUSTOS_GUARD_AZURE_CONTENT_SAFETY && (rc = dup_str(s ? s : "2024-09-01", &g->api_version)) != 0)
        return rc;
    if ((rc = get_map(v, m, path, "auth", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "auth");
        if ((rc = check_keys(v, sm, fp, akeys)) != 0 ||
            (rc = get_secret(v, sm, fp, "api_key_env", "api_key_file", &g->api_key, &g->api_key_len)) != 0)
            return rc;
    }
    GET_INT_AS(v, m, path, "timeout_ms", 10, 60000, 1000, g->timeout_ms);
    GET_INT_AS(v, m, path, "max_concurrency", 1, 100000, 64, g->max_concurrency);
    GET_INT_AS(v, m, path, "retries", 0, 3, 1, g->retries);
    if ((rc = get_zone(v, m, path, "region", &g->region, &at)) != 0 ||
        (rc = get_zone(v, m, path, "data_zone", &g->data_zone, &at)) != 0)
        return rc;
    if ((rc = get_map(v, m, path, "tls", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "tls");
        if (!g->https)
            return verr(v, at, "%s: only valid for an https:// url", fp);
        if ((rc = check_keys(v, sm, fp, tkeys)) != 0 || (rc = get_path(v, sm, fp, "ca_file", 0, &g->ca_file)) != 0 ||
            (rc = get_bool(v, sm, fp, "verify", true, &g->tls_verify)) != 0)
            return rc;
    }
    g->cb_failures = 5;
    g->cb_base_ms = 5000;
    g->cb_max_ms = 60000;
    if ((rc = get_map(v, m, path, "circuit_breaker", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "circuit_breaker");
        if ((rc = check_keys(v, sm, fp, cbkeys)) != 0)
            return rc;
        GET_INT_AS(v, sm, fp, "consecutive_failures", 0, 1000, 5, g->cb_failures);
        GET_INT_AS(v, sm, fp, "base_ejection_ms", 100, 3600000, 5000, g->cb_base_ms);
        GET_INT_AS(v, sm, fp, "max_ejection_ms", 100, 3600000, 60000, g->cb_max_ms);
        if (g->cb_max_ms < g->cb_base_ms)
            return verr(v, at, "%s: max_ejection_ms must be at least base_ejection_ms", fp);
    }
    g->cache_entries = 4096;
    g->cache_ttl_s = 300;
    if ((rc = get_map(v, m, path, "cache", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "cache");
        if ((rc = check_keys(v, sm, fp, ckeys)) != 0)
            return rc;
        GET_INT_AS(v, sm, fp, "max_entries", 0, 1000000, 4096, g->cache_entries);
        GET_INT_AS(v, sm, fp, "ttl_s", 1, 86400, 300, g->cache_ttl_s);
    }
    return 0;
}

static int parse_guards(vctx_t *v, json_object *root, custos_config_t *c)
{
    json_object *seq;
    custos_ymark_t at;
    int rc;
    if ((rc = get_seq(v, root, "", "guards", 0, CUSTOS_CONFIG_MAX_GUARDS, NULL, &seq, &at)) != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    c->guards = calloc(n ? n : 1, sizeof(*c->guards));
    if (!c->guards)
        return CUSTOS_ENOMEM;
    v->guards = c->guards;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(seq, i);
        char path[64], sb[72];
        c->n_guards = v->n_guards = i + 1;
        snprintf(path, sizeof(path), "guards[%zu]", i);
        if ((rc = expect_map(v, m, custos_ytree_val_mark(seq, i), path)) != 0 ||
            (rc = parse_guard(v, m, path, &c->guards[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->guards[j].name, c->guards[i].name) == 0) {
                field_t f;
                get_field(m, "name", &f);
                return verr(v, f.vmark, "%s.name: duplicate name '%s' (also guards[%zu])", path,
                            shown(c->guards[i].name, sb, sizeof(sb)), j);
            }
    }
    return 0;
}

static void guards_free(custos_config_t *c)
{
    for (size_t i = 0; i < c->n_guards; i++) {
        custos_guard_config_t *g = &c->guards[i];
        free(g->name);
        free(g->url);
        free(g->host);
        free(g->path_prefix);
        free_secret(g->api_key, g->api_key_len);
        free(g->model);
        free(g->api_version);
        free(g->region);
        free(g->data_zone);
        free(g->ca_file);
    }
    free(c->guards);
}

/* rai_policies[].content_filters[].guard / prompt_shields.guard: {name, mode, band: [lo, hi], on_error}. shield:
 * the check is a prompt shield (llama-guard has no attack detector). */
static int parse_rai_guard(vctx_t *v, json_object *m, const char *path, bool shield, custos_rai_guard_t *out)
{
    static const char *const keys[] = {"name", "mode", "band", "on_error", NULL};
    static const char *const modes[] = {"in_process", "guard", "cascade", NULL};
    static const char *const errs[] = {"open", "closed", NULL};
    char fp[256], sb[72];
    custos_ymark_t at;
    const char *s;
    json_object *band;
    field_t f;
    int rc, e;
    memset(out, 0, sizeof(*out));
    if ((rc = check_keys(v, m, path, keys)) != 0 || (rc = get_enum(v, m, path, "mode", modes, 2, &e)) != 0)
        return rc;
    out->mode = (custos_cascade_mode_t)e;
    if ((rc = get_enum(v, m, path, "on_error", errs, 0, &e)) != 0)
        return rc;
    out->fail_closed = e == 1;
    if ((rc = get_str(v, m, path, "name", out->mode != CUSTOS_CASCADE_IN_PROCESS, 64, &s, &at)) != 0)
        return rc;
    if (s) {
        for (size_t i = 0; i < v->n_guards && !out->guard; i++)
            if (strcmp(v->guards[i].name, s) == 0)
                out->guard = &v->guards[i];
        if (!out->guard)
            return verr(v, at, "%s.name: unknown guard '%s' (define it under guards)", path, shown(s, sb, sizeof(sb)));
        if (shield && out->guard->type == CUSTOS_GUARD_LLAMA_GUARD)
            return verr(v, at,
                        "%s.name: guard '%s' is a llama-guard, which has no prompt-attack detector (use "
                        "azure-content-safety or http-classifier)",
                        path, shown(s, sb, sizeof(sb)));
    }
    out->band_lo = 0.2f;
    out->band_hi = 0.8f;
    if ((rc = get_seq(v, m, path, "band", 0, 2, NULL, &band, &at)) != 0)
        return rc;
    get_field(m, "band", &f);
    if (band) {
        json_object *lo = json_object_array_get_idx(band, 0), *hi = json_object_array_get_idx(band, 1);
        join(fp, sizeof(fp), path, "band");
        if (json_object_array_length(band) != 2 || !lo || !hi ||
            !(json_object_is_type(lo, json_type_int) || json_object_is_type(lo, json_type_double)) ||
            !(json_object_is_type(hi, json_type_int) || json_object_is_type(hi, json_type_double)))
            return verr(v, at, "%s: must be two numbers [lo, hi]", fp);
        double l = json_object_get_double(lo), h = json_object_get_double(hi);
        if (!(l >= 0 && l <= h && h <= 1))
            return verr(v, at, "%s: needs 0 <= lo <= hi <= 1 (calibrated in-process scores)", fp);
        out->band_lo = (float)l;
        out->band_hi = (float)h;
    }
    if (f.present && out->mode != CUSTOS_CASCADE_BAND)
        return verr(v, f.kmark, "%s.band: only valid with mode cascade", path);
    if (out->mode == CUSTOS_CASCADE_IN_PROCESS)
        out->guard = NULL;
    return 0;
}

/* A guard a deployment's policy uses must be inside the deployment's residency boundary (as its backends). */
static int check_guard_residency(vctx_t *v, json_object *m, const char *path, const custos_deployment_config_t *d)
{
    char sb[2][72];
    const custos_rai_policy_config_t *p = d->rai;
    const custos_rai_guard_t *all[CUSTOS_RAI_NCAT * CUSTOS_RAI_NSRC + 2];
    size_t n = 0;
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        for (int s = 0; s < CUSTOS_RAI_NSRC; s++)
            all[n++] = &p->harm_guard[k][s];
    all[n++] = &p->shield_guard[0];
    all[n++] = &p->shield_guard[1];
    for (size_t i = 0; i < n; i++) {
        const custos_guard_config_t *g = all[i]->guard;
        if (!g)
            continue;
        bool ok = d->type == CUSTOS_DEPLOYMENT_GLOBAL ||
                  (d->type == CUSTOS_DEPLOYMENT_REGIONAL && g->region && strcmp(g->region, d->region) == 0) ||
                  (d->type == CUSTOS_DEPLOYMENT_DATAZONE && g->data_zone && strcmp(g->data_zone, d->data_zone) == 0);
        if (!ok)
            return verr(v, custos_ytree_mark(m),
                        "%s: rai_policy '%s' sends text to guard '%s', which is outside the deployment's residency "
                        "boundary (give the guard a matching region / data_zone)",
                        path, shown(p->name, sb[0], sizeof(sb[0])), shown(g->name, sb[1], sizeof(sb[1])));
    }
    return 0;
}

static int parse_rai_policy(vctx_t *v, json_object *m, const char *path, custos_rai_policy_config_t *p)
{
    static const char *const keys[] = {
        "name", "mode", "content_filters", "prompt_shields", "pii", "blocklists", "streaming", "groundedness", NULL};
    static const char *const modes[] = {"default", "asynchronous_filter", NULL};
    static const char *const cf_keys[] = {"category", "source", "threshold", "enabled", "blocking", "guard", NULL};
    static const char *const thresholds[] = {"low", "medium", "high", NULL};
    static const char *const sh_keys[] = {"jailbreak", "indirect_attack", "guard", NULL};
    static const char *const sh_actions[] = {"off", "annotate", "block", NULL};
    static const char *const pii_keys[] = {"prompt", "completion", NULL};
    static const char *const pii_actions[] = {"off", "annotate", "redact", "placeholder", "block", NULL};
    static const char *const bl_keys[] = {"name", "blocking", "source", NULL};
    static const char *const st_keys[] = {"window_min_chars", "window_max_chars", "context_chars", NULL};
    char fp[256], sb[72];
    custos_ymark_t at;
    json_object *seq, *sm;
    const char *s;
    int rc, e;
    int64_t n;

    rai_set_default(p);
    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "name", 1, 64, &s, &at)) != 0 || !s)
        return rc ? rc : CUSTOS_EINVAL;
    if (!valid_name(s))
        return verr(v, at, "%s.name: must be 1..64 characters of [A-Za-z0-9._-]", path);
    if (strcmp(s, CUSTOS_RAI_DEFAULT_POLICY) == 0)
        return verr(v, at, "%s.name: %s is the built-in default policy; choose another name", path,
                    CUSTOS_RAI_DEFAULT_POLICY);
    if ((rc = dup_str(s, &p->name)) != 0)
        return rc;
    if ((rc = get_enum(v, m, path, "mode", modes, 0, &e)) != 0)
        return rc;
    p->mode = (custos_rai_mode_t)e;

    if ((rc = get_seq(v, m, path, "content_filters", 0, 64, NULL, &seq, &at)) != 0)
        return rc;
    for (size_t i = 0; seq && i < json_object_array_length(seq); i++) {
        json_object *fm = json_object_array_get_idx(seq, i);
        snprintf(fp, sizeof(fp), "%s.content_filters[%zu]", path, i);
        if ((rc = expect_map(v, fm, custos_ytree_val_mark(seq, i), fp)) != 0 ||
            (rc = check_keys(v, fm, fp, cf_keys)) != 0)
            return rc;
        if ((rc = get_str(v, fm, fp, "category", 1, 64, &s, &at)) != 0 || !s)
            return rc ? rc : CUSTOS_EINVAL;
        int cat = rai_category(s);
        if (cat < 0)
            return verr(v, at, "%s.category: unknown category '%s' (hate, sexual, violence, self_harm)", fp,
                        shown(s, sb, sizeof(sb)));
        bool src[CUSTOS_RAI_NSRC];
        int th;
        bool en, bl;
        if ((rc = get_sources(v, fm, fp, src)) != 0 || (rc = get_enum(v, fm, fp, "threshold", thresholds, 1, &th)) ||
            (rc = get_bool(v, fm, fp, "enabled", true, &en)) != 0 ||
            (rc = get_bool(v, fm, fp, "blocking", true, &bl)) != 0)
            return rc;
        if (bl && !en)
            return verr(v, custos_ytree_mark(fm), "%s: blocking needs enabled: true (a filter cannot block unseen)",
                        fp);
        for (int d = 0; d < CUSTOS_RAI_NSRC; d++)
            if (src[d])
                p->filters[cat][d] = (custos_rai_filter_t){en, bl, (uint8_t)(2 + 2 * th)};
        json_object *gm;
        char gp[300];
        if ((rc = get_map(v, fm, fp, "guard", 0, &gm, &at)) != 0)
            return rc;
        custos_rai_guard_t rg;
        if (gm && (rc = parse_rai_guard(v, gm, join(gp, sizeof(gp), fp, "guard"), false, &rg)) != 0)
            return rc;
        for (int d = 0; gm && d < CUSTOS_RAI_NSRC; d++)
            if (src[d])
                p->harm_guard[cat][d] = rg;
    }

    if ((rc = get_map(v, m, path, "prompt_shields", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "prompt_shields");
        if ((rc = check_keys(v, sm, fp, sh_keys)) != 0)
            return rc;
        if ((rc = get_enum(v, sm, fp, "jailbreak", sh_actions, CUSTOS_RAI_BLOCK, &e)) != 0)
            return rc;
        p->jailbreak = (custos_rai_action_t)e;
        if ((rc = get_enum(v, sm, fp, "indirect_attack", sh_actions, CUSTOS_RAI_ANNOTATE, &e)) != 0)
            return rc;
        p->indirect_attack = (custos_rai_action_t)e;
        json_object *gm;
        char gp[300];
        if ((rc = get_map(v, sm, fp, "guard", 0, &gm, &at)) != 0)
            return rc;
        if (gm && (rc = parse_rai_guard(v, gm, join(gp, sizeof(gp), fp, "guard"), true, &p->shield_guard[0])) != 0)
            return rc;
        p->shield_guard[1] = p->shield_guard[0];
    }
    if ((rc = get_map(v, m, path, "pii", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "pii");
        if ((rc = check_keys(v, sm, fp, pii_keys)) != 0)
            return rc;
        if ((rc = get_enum(v, sm, fp, "prompt", pii_actions, 0, &e)) != 0)
            return rc;
        p->pii[CUSTOS_RAI_PROMPT] = (custos_rai_pii_action_t)e;
        if ((rc = get_enum(v, sm, fp, "completion", pii_actions, 0, &e)) != 0)
            return rc;
        if (e == CUSTOS_RAI_PII_PLACEHOLDER) {
            field_t f;
            get_field(sm, "completion", &f);
            return verr(v, f.vmark,
                        "%s.completion: placeholder applies to prompts only (their placeholders are restored in the "
                        "completion); use annotate, redact or block",
                        fp);
        }
        p->pii[CUSTOS_RAI_COMPLETION] = (custos_rai_pii_action_t)e;
    }

    if ((rc = get_seq(v, m, path, "blocklists", 0, CUSTOS_CONFIG_MAX_RAI_BLOCKLISTS, NULL, &seq, &at)) != 0)
        return rc;
    size_t nb = seq ? json_object_array_length(seq) : 0;
    if (nb) {
        p->blocklists = calloc(nb, sizeof(*p->blocklists));
        if (!p->blocklists)
            return CUSTOS_ENOMEM;
    }
    for (size_t i = 0; i < nb; i++) {
        json_object *bm = json_object_array_get_idx(seq, i);
        custos_ymark_t im = custos_ytree_val_mark(seq, i);
        custos_rai_blocklist_ref_t *b = &p->blocklists[i];
        p->n_blocklists = i + 1;
        snprintf(fp, sizeof(fp), "%s.blocklists[%zu]", path, i);
        b->blocking = true;
        b->source[0] = b->source[1] = true;
        if (bm && json_object_is_type(bm, json_type_string)) {
            s = json_object_get_string(bm);
        } else {
            if ((rc = expect_map(v, bm, im, fp)) != 0 || (rc = check_keys(v, bm, fp, bl_keys)) != 0)
                return rc;
            if ((rc = get_str(v, bm, fp, "name", 1, 64, &s, &im)) != 0 ||
                (rc = get_bool(v, bm, fp, "blocking", true, &b->blocking)) != 0 ||
                (rc = get_sources(v, bm, fp, b->source)) != 0)
                return rc;
        }
        if (!s || !valid_blocklist_name(s))
            return verr(v, im, "%s: blocklist names are 1..64 characters of [A-Za-z0-9._~-]", fp);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->blocklists[j].name, s) == 0)
                return verr(v, im, "%s: blocklist '%s' is listed twice", fp, shown(s, sb, sizeof(sb)));
        if ((rc = dup_str(s, &b->name)) != 0)
            return rc;
    }

    if ((rc = get_map(v, m, path, "streaming", 0, &sm, &at)) != 0)
        return rc;
    if (sm) {
        join(fp, sizeof(fp), path, "streaming");
        if ((rc = check_keys(v, sm, fp, st_keys)) != 0)
            return rc;
        if ((rc = get_int(v, sm, fp, "window_max_chars", 16, 10000, 1000, &n)) != 0)
            return rc;
        p->window_max_chars = (uint32_t)n;
        if ((rc = get_int(v, sm, fp, "window_min_chars", 1, 10000, p->window_max_chars < 200 ? 1 : 200, &n)) != 0)
            return rc;
        p->window_min_chars = (uint32_t)n;
        if (p->window_min_chars > p->window_max_chars)
            return verr(v, custos_ytree_mark(sm), "%s: window_min_chars must not exceed window_max_chars", fp);
        if ((rc = get_int(v, sm, fp, "context_chars", 0, 10000, 200, &n)) != 0)
            return rc;
        p->context_chars = (uint32_t)n;
    }
    if ((rc = parse_rai_groundedness(v, m, path, p)) != 0)
        return rc;
    if (p->mode == CUSTOS_RAI_MODE_ASYNC && (p->pii[CUSTOS_RAI_PROMPT] == CUSTOS_RAI_PII_PLACEHOLDER ||
                                             p->pii[CUSTOS_RAI_COMPLETION] == CUSTOS_RAI_PII_REDACT))
        return verr(v, custos_ytree_mark(m),
                    "%s: mode asynchronous_filter relays completion text before it is screened, so it cannot be "
                    "combined with pii.prompt: placeholder or pii.completion: redact",
                    path);
    return 0;
}

static int parse_rai_policies(vctx_t *v, json_object *root, custos_config_t *c)
{
    json_object *seq;
    custos_ymark_t at;
    int rc;
    if (dup_str(CUSTOS_RAI_DEFAULT_POLICY, &c->rai_default.name) != 0)
        return CUSTOS_ENOMEM;
    rai_set_default(&c->rai_default);
    if ((rc = get_seq(v, root, "", "rai_policies", 0, CUSTOS_CONFIG_MAX_RAI_POLICIES, NULL, &seq, &at)) != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    c->rai_policies = calloc(n ? n : 1, sizeof(*c->rai_policies));
    if (!c->rai_policies)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(seq, i);
        char path[64], sb[72];
        snprintf(path, sizeof(path), "rai_policies[%zu]", i);
        c->n_rai_policies = i + 1;
        if ((rc = expect_map(v, m, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = parse_rai_policy(v, m, path, &c->rai_policies[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->rai_policies[j].name, c->rai_policies[i].name) == 0) {
                field_t f;
                get_field(m, "name", &f);
                return verr(v, f.vmark, "%s.name: duplicate name '%s' (also rai_policies[%zu])", path,
                            shown(c->rai_policies[i].name, sb, sizeof(sb)), j);
            }
        }
    }
    return 0;
}

const custos_rai_policy_config_t *custos_config_find_rai_policy(const custos_config_t *c, const char *name)
{
    if (strcmp(name, CUSTOS_RAI_DEFAULT_POLICY) == 0)
        return &c->rai_default;
    for (size_t i = 0; i < c->n_rai_policies; i++)
        if (strcmp(c->rai_policies[i].name, name) == 0)
            return &c->rai_policies[i];
    return NULL;
}

static void rai_policy_free(custos_rai_policy_config_t *p)
{
    for (size_t i = 0; i < p->n_blocklists; i++)
        free(p->blocklists[i].name);
    free(p->blocklists);
    free(p->name);
}

/* True if b has every attribute d requires (the same rule as custos_route_eligible in route/router.c). */
static bool meets_requires(const custos_deployment_config_t *d, const custos_backend_config_t *b)
{
    if ((d->require_zero_data_retention && !b->zero_data_retention) || (d->require_no_training && !b->no_training))
        return false;
    if (d->n_require_regions == 0)
        return true;
    for (size_t i = 0; b->region && i < d->n_require_regions; i++)
        if (strcmp(d->require_regions[i], b->region) == 0)
            return true;
    return false;
}

/* deployments[].balance, sticky_header and requires (docs/routing.md). */
static int parse_deployment_routing(vctx_t *v, json_object *m, const char *path, custos_deployment_config_t *d)
{
    static const char *const policies[] = {"weighted_round_robin", "least_outstanding", NULL};
    static const char *const rkeys[] = {"zero_data_retention", "no_training", "regions", NULL};
    char sub[128], fp[160];
    custos_ymark_t at;
    const char *s;
    json_object *rm, *seq;
    int rc, pol;
    if ((rc = get_enum(v, m, path, "balance", policies, 0, &pol)) != 0)
        return rc;
    d->balance = (custos_balance_policy_t)pol;
    if ((rc = get_str(v, m, path, "sticky_header", 0, 64, &s, &at)) != 0)
        return rc;
    if (s) {
        if ((rc = dup_str(s, &d->sticky_header)) != 0)
            return rc;
        for (char *q = d->sticky_header; *q; q++) {
            if (!strchr("!#$%&'*+-.^_`|~", *q) &&
                !((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')))
                return verr(v, at, "%s.sticky_header: not an HTTP header name", path);
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q - 'A' + 'a');
        }
    }
    if ((rc = get_map(v, m, path, "requires", 0, &rm, &at)) != 0 || !rm)
        return rc;
    join(sub, sizeof(sub), path, "requires");
    if ((rc = check_keys(v, rm, sub, rkeys)) != 0)
        return rc;
    if ((rc = get_bool(v, rm, sub, "zero_data_retention", false, &d->require_zero_data_retention)) != 0)
        return rc;
    if ((rc = get_bool(v, rm, sub, "no_training", false, &d->require_no_training)) != 0)
        return rc;
    if ((rc = get_seq(v, rm, sub, "regions", 0, CUSTOS_CONFIG_MAX_REQUIRE_REGIONS, NULL, &seq, &at)) != 0)
        return rc;
    size_t n = seq ? json_object_array_length(seq) : 0;
    if (seq && n == 0)
        return verr(v, at, "%s.regions: at least one region is required (leave the key out for any region)", sub);
    if (n) {
        d->require_regions = calloc(n, sizeof(char *));
        if (!d->require_regions)
            return CUSTOS_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        custos_ymark_t im = custos_ytree_val_mark(seq, i);
        snprintf(fp, sizeof(fp), "%s.regions[%zu]", sub, i);
        const char *r = NULL;
        if ((rc = check_str(v, json_object_array_get_idx(seq, i), im, fp, 64, &r)) != 0)
            return rc;
        if (!r || !valid_zone(r))
            return verr(v, im, "%s: must match [a-z0-9-]{1,64} (lowercase)", fp);
        if ((rc = dup_str(r, &d->require_regions[i])) != 0)
            return rc;
        d->n_require_regions = i + 1;
    }
    bool any = false;
    for (size_t i = 0; i < d->n_backends && !any; i++)
        any = meets_requires(d, d->backends[i]);
    if (!any)
        return verr(v, at, "%s: no backend of deployment %s has the required attributes", sub, d->name);
    return 0;
}

/* A deployments[].card list (intended_uses, out_of_scope_uses, limitations): strings, each <= MAX_CARD_TEXT. */
static int parse_card_list(vctx_t *v, json_object *cm, const char *sub, const char *key, char ***out, size_t *n_out)
{
    json_object *seq;
    custos_ymark_t at;
    char fp[320];
    const char *s = NULL;
    int rc;
    if ((rc = get_seq(v, cm, sub, key, 0, CUSTOS_CONFIG_MAX_CARD_ITEMS, NULL, &seq, &at)) != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    *out = calloc(n ? n : 1, sizeof(char *));
    if (!*out)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        snprintf(fp, sizeof(fp), "%s.%s[%zu]", sub, key, i);
        if ((rc = check_str(v, json_object_array_get_idx(seq, i), custos_ytree_val_mark(seq, i), fp,
                            CUSTOS_CONFIG_MAX_CARD_TEXT, &s)) != 0)
            return rc;
        if ((rc = dup_str(s, &(*out)[i])) != 0)
            return rc;
        *n_out = i + 1;
    }
    return 0;
}

/* deployments[].card: transparency facts written by the operator (governance/card.h serves them). */
static int parse_deployment_card(vctx_t *v, json_object *m, const char *path, custos_card_config_t *card)
{
    static const char *const keys[] = {"description",       "owner",       "intended_uses",
                                       "out_of_scope_uses", "limitations", NULL};
    json_object *cm;
    custos_ymark_t at;
    char sub[300];
    const char *s;
    int rc;
    if ((rc = get_map(v, m, path, "card", 0, &cm, &at)) != 0 || !cm)
        return rc;
    snprintf(sub, sizeof(sub), "%s.card", path);
    if ((rc = check_keys(v, cm, sub, keys)) != 0)
        return rc;
    if ((rc = get_str(v, cm, sub, "description", 0, CUSTOS_CONFIG_MAX_CARD_TEXT, &s, &at)) != 0 ||
        (rc = dup_str(s, &card->description)) != 0)
        return rc;
    if ((rc = get_str(v, cm, sub, "owner", 0, 256, &s, &at)) != 0 || (rc = dup_str(s, &card->owner)) != 0)
        return rc;
    if ((rc = parse_card_list(v, cm, sub, "intended_uses", &card->intended_uses, &card->n_intended_uses)) != 0)
        return rc;
    if ((rc = parse_card_list(v, cm, sub, "out_of_scope_uses", &card->out_of_scope_uses, &card->n_out_of_scope_uses)) !=
        0)
        return rc;
    return parse_card_list(v, cm, sub, "limitations", &card->limitations, &card->n_limitations);
}

static void card_free(custos_card_config_t *card)
{
    char **lists[] = {card->intended_uses, card->out_of_scope_uses, card->limitations};
    size_t ns[] = {card->n_intended_uses, card->n_out_of_scope_uses, card->n_limitations};
    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < ns[l]; i++)
            free(lists[l][i]);
        free(lists[l]);
    }
    free(card->description);
    free(card->owner);
}

static int parse_deployment(vctx_t *v, json_object *m, const char *path, custos_config_t *c,
                            custos_deployment_config_t *d)
{
    static const char *const keys[] = {"name",       "model",   "type",          "region",   "data_zone", "backends",
                                       "rai_policy", "balance", "sticky_header", "requires", "quota",     "tokenizer",
                                       "card",       NULL};
    static const char *const types[] = {"global", "datazone", "regional", NULL};
    char fp[256], sb[4][72];
    custos_ymark_t at;
    const char *s;
    json_object *seq;
    field_t f;
    int rc, type;

    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    if ((rc = get_name(v, m, path, "name", 1, &d->name, &at)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "model", 0, 256, &s, &at)) != 0)
        return rc;
    if ((rc = dup_str(s ? s : d->name, &d->model)) != 0)
        return rc;
    if ((rc = get_enum(v, m, path, "type", types, 0, &type)) != 0)
        return rc;
    d->type = (custos_deployment_type_t)type;
    if ((rc = get_zone(v, m, path, "region", &d->region, &at)) != 0)
        return rc;
    get_field(m, "region", &f);
    if (d->type == CUSTOS_DEPLOYMENT_REGIONAL && !d->region)
        return verr(v, custos_ytree_mark(m), "%s: type regional requires region", path);
    if (d->type != CUSTOS_DEPLOYMENT_REGIONAL && d->region)
        return verr(v, f.kmark, "%s.region: only valid for type regional", path);
    if ((rc = get_zone(v, m, path, "data_zone", &d->data_zone, &at)) != 0)
        return rc;
    get_field(m, "data_zone", &f);
    if (d->type == CUSTOS_DEPLOYMENT_DATAZONE && !d->data_zone)
        return verr(v, custos_ytree_mark(m), "%s: type datazone requires data_zone", path);
    if (d->type != CUSTOS_DEPLOYMENT_DATAZONE && d->data_zone)
        return verr(v, f.kmark, "%s.data_zone: only valid for type datazone", path);

    if ((rc = get_str(v, m, path, "rai_policy", 0, 64, &s, &at)) != 0)
        return rc;
    d->rai = custos_config_find_rai_policy(c, s ? s : CUSTOS_RAI_DEFAULT_POLICY);
    if (!d->rai)
        return verr(v, at, "%s.rai_policy: unknown policy '%s' (define it under rai_policies, or use %s)", path,
                    shown(s, sb[0], sizeof(sb[0])), CUSTOS_RAI_DEFAULT_POLICY);
    if ((rc = check_guard_residency(v, m, path, d)) != 0)
        return rc;
    if ((rc = get_seq(v, m, path, "backends", 1, CUSTOS_CONFIG_MAX_DEPLOYMENT_BACKENDS, NULL, &seq, &at)) != 0)
        return rc;
    size_t n = json_object_array_length(seq);
    d->backends = calloc(n, sizeof(*d->backends));
    if (!d->backends)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *item = json_object_array_get_idx(seq, i);
        custos_ymark_t im = custos_ytree_val_mark(seq, i);
        snprintf(fp, sizeof(fp), "%s.backends[%zu]", path, i);
        if ((rc = check_str(v, item, im, fp, 256, &s)) != 0)
            return rc;
        const custos_backend_config_t *b = custos_config_find_backend(c, s);
        if (!b)
            return verr(v, im, "%s: unknown backend '%s'", fp, shown(s, sb[0], sizeof(sb[0])));
        for (size_t j = 0; j < i; j++)
            if (d->backends[j] == b)
                return verr(v, im, "%s: backend '%s' is listed twice", fp, shown(s, sb[0], sizeof(sb[0])));
        if (d->type == CUSTOS_DEPLOYMENT_REGIONAL && (!b->region || strcmp(b->region, d->region) != 0)) {
            if (!b->region)
                return verr(v, im, "%s: backend %s has no region; regional deployment %s needs region %s", fp,
                            shown(b->name, sb[0], 72), shown(d->name, sb[1], 72), shown(d->region, sb[2], 72));
            return verr(v, im, "%s: backend %s is in region %s, outside regional deployment %s's region %s", fp,
                        shown(b->name, sb[0], 72), shown(b->region, sb[1], 72), shown(d->name, sb[2], 72),
                        shown(d->region, sb[3], 72));
        }
        if (d->type == CUSTOS_DEPLOYMENT_DATAZONE && (!b->data_zone || strcmp(b->data_zone, d->data_zone) != 0)) {
            if (!b->data_zone)
                return verr(v, im, "%s: backend %s has no data_zone; datazone deployment %s needs data zone %s", fp,
                            shown(b->name, sb[0], 72), shown(d->name, sb[1], 72), shown(d->data_zone, sb[2], 72));
            return verr(v, im, "%s: backend %s is in data zone %s, outside datazone deployment %s's data zone %s", fp,
                        shown(b->name, sb[0], 72), shown(b->data_zone, sb[1], 72), shown(d->name, sb[2], 72),
                        shown(d->data_zone, sb[3], 72));
        }
        /* stable insertion by priority */
        size_t k = i;
        while (k > 0 && d->backends[k - 1]->priority > b->priority) {
            d->backends[k] = d->backends[k - 1];
            k--;
        }
        d->backends[k] = b;
        d->n_backends = i + 1;
    }
    if ((rc = parse_deployment_card(v, m, path, &d->card)) != 0)
        return rc;
    return parse_deployment_routing(v, m, path, d);
}

static int cmp_backend_name(const void *a, const void *b)
{
    const custos_backend_config_t *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_deployment_name(const void *a, const void *b)
{
    const custos_deployment_config_t *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int parse_deployments(vctx_t *v, json_object *root, custos_config_t *c)
{
    json_object *seq;
    custos_ymark_t at;
    int rc;
    if ((rc = get_seq(v, root, "", "deployments", 1, CUSTOS_CONFIG_MAX_DEPLOYMENTS, NULL, &seq, &at)) != 0)
        return rc;
    size_t n = json_object_array_length(seq);
    c->deployments = calloc(n, sizeof(*c->deployments));
    if (!c->deployments)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(seq, i);
        char path[64], sb[72];
        snprintf(path, sizeof(path), "deployments[%zu]", i);
        c->n_deployments = i + 1;
        if ((rc = expect_map(v, m, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = parse_deployment(v, m, path, c, &c->deployments[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->deployments[j].name, c->deployments[i].name) == 0) {
                field_t f;
                get_field(m, "name", &f);
                return verr(v, f.vmark, "%s.name: duplicate name '%s' (also deployments[%zu])", path,
                            shown(c->deployments[i].name, sb, sizeof(sb)), j);
            }
        }
    }
    return 0;
}

/* Builds the by-name index of backends (needed by deployments) before they are parsed. */
static int index_backends(custos_config_t *c)
{
    c->backends_by_name = calloc(c->n_backends ? c->n_backends : 1, sizeof(*c->backends_by_name));
    if (!c->backends_by_name)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < c->n_backends; i++)
        c->backends_by_name[i] = &c->backends[i];
    qsort(c->backends_by_name, c->n_backends, sizeof(*c->backends_by_name), cmp_backend_name);
    return 0;
}

static int index_deployments(custos_config_t *c)
{
    c->deployments_by_name = calloc(c->n_deployments ? c->n_deployments : 1, sizeof(*c->deployments_by_name));
    if (!c->deployments_by_name)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < c->n_deployments; i++)
        c->deployments_by_name[i] = &c->deployments[i];
    qsort(c->deployments_by_name, c->n_deployments, sizeof(*c->deployments_by_name), cmp_deployment_name);
    return 0;
}

/* ---------- lifecycle ---------- */

/* ---------- diagnostics ---------- */

/* Resolves an output path (file or directory that may not exist yet) against basedir. */
static int resolve_out_path(vctx_t *v, const char *s, char **out)
{
    if (s[0] != '/' && v->basedir) {
        if (asprintf(out, "%s%s", v->basedir, s) < 0) {
            *out = NULL;
            return CUSTOS_ENOMEM;
        }
        return 0;
    }
    return dup_str(s, out);
}

static int get_out_path(vctx_t *v, json_object *m, const char *path, const char *key, const char *def, char **out)
{
    const char *s;
    custos_ymark_t at;
    int rc = get_str(v, m, path, key, 0, 4096, &s, &at);
    *out = NULL;
    if (rc != 0)
        return rc;
    if (!s)
        s = def;
    return s ? resolve_out_path(v, s, out) : 0;
}

static int parse_sink_properties(vctx_t *v, json_object *m, const char *path, custos_audit_sink_config_t *s)
{
    char fp[256];
    size_t n = custos_ytree_count(m);
    if (n > CUSTOS_CONFIG_MAX_SINK_PROPERTIES)
        return verr(v, custos_ytree_mark(m), "%s: at most %d entries are allowed", path,
                    CUSTOS_CONFIG_MAX_SINK_PROPERTIES);
    s->property_keys = calloc(n ? n : 1, sizeof(char *));
    s->property_values = calloc(n ? n : 1, sizeof(char *));
    if (!s->property_keys || !s->property_values)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *k = custos_ytree_key(m, i);
        json_object *val = NULL;
        custos_ymark_t vm = custos_ytree_val_mark(m, i);
        custos_ytree_find(m, k, &val, NULL, NULL);
        join(fp, sizeof(fp), path, k);
        if (!val || !(json_object_is_type(val, json_type_string) || json_object_is_type(val, json_type_int) ||
                      json_object_is_type(val, json_type_boolean)))
            return type_err(v, vm, fp, "a string, integer or boolean", val);
        const char *str = json_object_get_string(val);
        if ((json_object_is_type(val, json_type_string) && strlen(str) != (size_t)json_object_get_string_len(val)) ||
            strlen(str) > 4096 || strlen(k) > 256)
            return verr(v, vm, "%s: contains a NUL byte or is too long", fp);
        s->n_properties = i + 1;
        if ((s->property_keys[i] = strdup(k)) == NULL || (s->property_values[i] = strdup(str)) == NULL)
            return CUSTOS_ENOMEM;
    }
    return 0;
}

static int parse_sink(vctx_t *v, json_object *m, const char *path, size_t idx, json_object *seq,
                      custos_audit_sink_config_t *s)
{
    static const char *const types[] = {"file", "syslog", "http", "kafka", NULL};
    static const char *const fkeys[] = {"type",      "name",      "batch_max_records", "flush_ms",          "path",
                                        "max_bytes", "max_files", "max_age_s",         "fsync_interval_ms", NULL};
    static const char *const skeys[] = {"type",    "name",     "batch_max_records", "flush_ms", "address",
                                        "ca_file", "app_name", "facility",          "hostname", NULL};
    static const char *const hkeys[] = {
        "type",  "name", "batch_max_records", "flush_ms",   "url", "format", "token_env", "token_file",
        "index", "gzip", "ca_file",           "timeout_ms", NULL};
    static const char *const kkeys[] = {"type",      "name", "batch_max_records", "flush_ms", "brokers", "topic",
                                        "client_id", "acks", "properties",        NULL};
    static const char *const facilities[] = {"kern",   "user",   "mail",   "daemon",   "auth",   "syslog", "lpr",
                                             "news",   "uucp",   "cron",   "authpriv", "ftp",    "ntp",    "audit",
                                             "alert",  "clock",  "local0", "local1",   "local2", "local3", "local4",
                                             "local5", "local6", "local7", NULL};
    static const char *const formats[] = {"ndjson", "splunk_hec", "elasticsearch", NULL};
    static const char *const *const keysets[] = {fkeys, skeys, hkeys, kkeys};
    char fp[256], sub[128];
    custos_ymark_t at;
    const char *str;
    json_object *sm;
    field_t f;
    int rc, t;

    get_field(m, "type", &f);
    if (!f.present)
        return missing(v, m, path, "type");
    if ((rc = get_enum(v, m, path, "type", types, 0, &t)) != 0)
        return rc;
    s->type = (custos_audit_sink_type_t)t;
    if ((rc = dup_str(types[t], &s->type_name)) != 0)
        return rc;
    if ((rc = check_keys(v, m, path, keysets[t])) != 0)
        return rc;
    if ((rc = get_name(v, m, path, "name", 0, &s->name, &at)) != 0)
        return rc;
    if (s->name && (strcmp(s->name, ".") == 0 || strcmp(s->name, "..") == 0))
        return verr(v, at, "%s.name: '.' and '..' are not allowed (the name is a spool directory)", path);
    if (!s->name) {
        size_t same = 0;
        for (size_t j = 0; j < json_object_array_length(seq); j++) {
            json_object *o = json_object_array_get_idx(seq, j), *tv = NULL;
            if (o && json_object_is_type(o, json_type_object) && custos_ytree_find(o, "type", &tv, NULL, NULL) && tv &&
                json_object_is_type(tv, json_type_string) && strcmp(json_object_get_string(tv), types[t]) == 0)
                same++;
        }
        if (same > 1 ? asprintf(&s->name, "%s-%zu", types[t], idx + 1) < 0 : asprintf(&s->name, "%s", types[t]) < 0) {
            s->name = NULL;
            return CUSTOS_ENOMEM;
        }
    }
    GET_INT_AS(v, m, path, "batch_max_records", 1, 10000, 500, s->batch_max_records);
    GET_INT_AS(v, m, path, "flush_ms", 0, 60000, t == CUSTOS_AUDIT_SINK_HTTP ? 1000 : 0, s->flush_ms);

    switch (s->type) {
    case CUSTOS_AUDIT_SINK_FILE:
        get_field(m, "path", &f);
        if (!f.present)
            return missing(v, m, path, "path");
        if ((rc = get_out_path(v, m, path, "path", NULL, &s->path)) != 0)
            return rc;
        GET_INT_AS(v, m, path, "max_bytes", 4096, (int64_t)1 << 40, 104857600, s->max_bytes);
        GET_INT_AS(v, m, path, "max_files", 0, 1000, 10, s->max_files);
        GET_INT_AS(v, m, path, "max_age_s", 0, 31536000, 86400, s->max_age_s);
        GET_INT_AS(v, m, path, "fsync_interval_ms", 0, 60000, 1000, s->fsync_interval_ms);
        break;
    case CUSTOS_AUDIT_SINK_SYSLOG: {
        if ((rc = get_str(v, m, path, "address", 1, 512, &str, &at)) != 0)
            return rc;
        if (!str)
            return CUSTOS_EINVAL;
        if ((rc = dup_str(str, &s->address)) != 0)
            return rc;
        join(fp, sizeof(fp), path, "address");
        if (strncmp(str, "udp://", 6) == 0)
            s->transport = CUSTOS_SYSLOG_UDP;
        else if (strncmp(str, "tcp://", 6) == 0)
            s->transport = CUSTOS_SYSLOG_TCP;
        else if (strncmp(str, "tls://", 6) == 0)
            s->transport = CUSTOS_SYSLOG_TLS;
        else
            return verr(v, at, "%s: must start with udp://, tcp:// or tls://", fp);
        custos_listener_config_t l = {0};
        const char *why =
            strncmp(str + 6, "unix:", 5) == 0 ? "expected HOST:PORT or [IPV6]:PORT" : parse_listen_address(str + 6, &l);
        if (why) {
            free(l.host);
            free(l.unix_path);
            return verr(v, at, "%s: %s", fp, why);
        }
        s->host = l.host;
        s->port = l.port;
        get_field(m, "ca_file", &f);
        if (f.present && s->transport != CUSTOS_SYSLOG_TLS)
            return verr(v, f.kmark, "%s.ca_file: only valid for a tls:// address", path);
        if ((rc = get_path(v, m, path, "ca_file", 0, &s->ca_file)) != 0)
            return rc;
        if ((rc = get_str(v, m, path, "app_name", 0, 48, &str, &at)) != 0)
            return rc;
        if (str && !valid_token(str, "._-"))
            return verr(v, at, "%s: must match [A-Za-z0-9._-]{1,48}", join(fp, sizeof(fp), path, "app_name"));
        if ((rc = dup_str(str ? str : "custos", &s->app_name)) != 0)
            return rc;
        if ((rc = get_enum(v, m, path, "facility", facilities, 16, &t)) != 0)
            return rc;
        s->facility = (unsigned)t;
        if ((rc = get_str(v, m, path, "hostname", 0, 255, &str, &at)) != 0)
            return rc;
        if (str && !valid_hostname(str, strlen(str)))
            return verr(v, at, "%s: not a valid host name", join(fp, sizeof(fp), path, "hostname"));
        if ((rc = dup_str(str, &s->hostname)) != 0)
            return rc;
        break;
    }
    case CUSTOS_AUDIT_SINK_HTTP: {
        if ((rc = get_str(v, m, path, "url", 1, 2048, &str, &at)) != 0)
            return rc;
        if ((rc = dup_str(str, &s->url)) != 0)
            return rc;
        custos_backend_config_t b = {0};
        const char *why = parse_url(str, &b);
        s->host = b.host;
        s->url_path = b.path_prefix;
        s->port = b.port;
        s->https = b.https;
        if (why)
            return verr(v, at, "%s: %s", join(fp, sizeof(fp), path, "url"), why);
        if ((rc = get_enum(v, m, path, "format", formats, 0, &t)) != 0)
            return rc;
        s->format = (custos_http_sink_format_t)t;
        field_t fe, ff;
        get_field(m, "token_env", &fe);
        get_field(m, "token_file", &ff);
        if (fe.present && ff.present)
            return verr(v, ff.kmark, "%s: at most one of token_env, token_file is allowed", path);
        if ((fe.present || ff.present) &&
            (rc = get_secret(v, m, path, "token_env", "token_file", &s->token, &s->token_len)) != 0)
            return rc;
        if (s->token && !valid_header_value(s->token, s->token_len))
            return verr(v, fe.present ? fe.vmark : ff.vmark,
                        "%s: the token contains spaces or characters not allowed in an HTTP header", path);
        if ((rc = get_str(v, m, path, "index", 0, 255, &str, &at)) != 0)
            return rc;
        if (str && !valid_token(str, "._-+"))
            return verr(v, at, "%s: must match [A-Za-z0-9._+-]{1,255}", join(fp, sizeof(fp), path, "index"));
        if ((rc = dup_str(str, &s->index)) != 0)
            return rc;
        if ((rc = get_bool(v, m, path, "gzip", true, &s->gzip)) != 0)
            return rc;
        get_field(m, "ca_file", &f);
        if (f.present && !s->https)
            return verr(v, f.kmark, "%s.ca_file: only valid for an https:// url", path);
        if ((rc = get_path(v, m, path, "ca_file", 0, &s->ca_file)) != 0)
            return rc;
        GET_INT_AS(v, m, path, "timeout_ms", 100, 600000, 10000, s->timeout_ms);
        break;
    }
    case CUSTOS_AUDIT_SINK_KAFKA:
        if ((rc = get_str(v, m, path, "brokers", 1, 4096, &str, &at)) != 0)
            return rc;
        if (!valid_token(str, ".-_:,[]"))
            return verr(v, at, "%s: expected host:port[,host:port...]", join(fp, sizeof(fp), path, "brokers"));
        if ((rc = dup_str(str, &s->brokers)) != 0)
            return rc;
        if ((rc = get_str(v, m, path, "topic", 1, 249, &str, &at)) != 0)
            return rc;
        if (!valid_token(str, "._-"))
            return verr(v, at, "%s: must match [A-Za-z0-9._-]{1,249}", join(fp, sizeof(fp), path, "topic"));
        if ((rc = dup_str(str, &s->topic)) != 0)
            return rc;
        if ((rc = get_str(v, m, path, "client_id", 0, 255, &str, &at)) != 0)
            return rc;
        if (str && !valid_token(str, "._-"))
            return verr(v, at, "%s: must match [A-Za-z0-9._-]{1,255}", join(fp, sizeof(fp), path, "client_id"));
        if ((rc = dup_str(str ? str : "custos", &s->client_id)) != 0)
            return rc;
        if ((rc = get_str(v, m, path, "acks", 0, 16, &str, &at)) != 0)
            return rc;
        if (str && strcmp(str, "all") != 0)
            return verr(v, at, "%s: only 'all' is supported", join(fp, sizeof(fp), path, "acks"));
        if ((rc = get_map(v, m, path, "properties", 0, &sm, NULL)) != 0)
            return rc;
        if (sm && (rc = parse_sink_properties(v, sm, join(sub, sizeof(sub), path, "properties"), s)) != 0)
            return rc;
        break;
    }
    return 0;
}

static int parse_diagnostics(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {"mask_client_ip", "spool_dir", "spool_max_bytes", "queue_max_records", "sinks",
                                       "governance_log", NULL};
    custos_diagnostics_config_t *d = &c->diagnostics;
    json_object *m = NULL, *seq;
    custos_ymark_t at;
    char sb[72];
    int rc;
    if ((rc = get_map(v, root, "", "diagnostics", 0, &m, NULL)) != 0)
        return rc;
    d->mask_client_ip = true;
    d->spool_max_bytes = (uint64_t)1 << 30;
    d->queue_max_records = 65536;
    if (!m) {
        if ((rc = resolve_out_path(v, "governance.jsonl", &d->governance_log)) != 0)
            return rc;
        return resolve_out_path(v, "spool", &d->spool_dir);
    }
    if ((rc = check_keys(v, m, "diagnostics", keys)) != 0)
        return rc;
    if ((rc = get_bool(v, m, "diagnostics", "mask_client_ip", true, &d->mask_client_ip)) != 0)
        return rc;
    if ((rc = get_out_path(v, m, "diagnostics", "spool_dir", "spool", &d->spool_dir)) != 0)
        return rc;
    if ((rc = get_out_path(v, m, "diagnostics", "governance_log", "governance.jsonl", &d->governance_log)) != 0)
        return rc;
    GET_INT_AS(v, m, "diagnostics", "spool_max_bytes", (int64_t)1 << 20, (int64_t)1 << 44, (int64_t)1 << 30,
               d->spool_max_bytes);
    GET_INT_AS(v, m, "diagnostics", "queue_max_records", 16, 10000000, 65536, d->queue_max_records);
    if ((rc = get_seq(v, m, "diagnostics", "sinks", 0, CUSTOS_CONFIG_MAX_SINKS, NULL, &seq, &at)) != 0)
        return rc;
    if (!seq)
        return 0;
    size_t n = json_object_array_length(seq);
    d->sinks = calloc(n ? n : 1, sizeof(*d->sinks));
    if (!d->sinks)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *sm = json_object_array_get_idx(seq, i);
        char path[64];
        d->n_sinks = i + 1;
        snprintf(path, sizeof(path), "diagnostics.sinks[%zu]", i);
        if ((rc = expect_map(v, sm, custos_ytree_val_mark(seq, i), path)) != 0)
            return rc;
        if ((rc = parse_sink(v, sm, path, i, seq, &d->sinks[i])) != 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->sinks[j].name, d->sinks[i].name) == 0) {
                field_t f;
                get_field(sm, "name", &f);
                return verr(v, f.vmark, "%s.name: duplicate sink name '%s' (also diagnostics.sinks[%zu])", path,
                            shown(d->sinks[i].name, sb, sizeof(sb)), j);
            }
        }
    }
    return 0;
}

static void diagnostics_free(custos_diagnostics_config_t *d)
{
    free(d->spool_dir);
    free(d->governance_log);
    for (size_t i = 0; i < d->n_sinks; i++) {
        custos_audit_sink_config_t *s = &d->sinks[i];
        free(s->type_name);
        free(s->name);
        free(s->path);
        free(s->address);
        free(s->host);
        free(s->app_name);
        free(s->hostname);
        free(s->ca_file);
        free(s->url);
        free(s->url_path);
        free_secret(s->token, s->token_len);
        free(s->index);
        free(s->brokers);
        free(s->topic);
        free(s->client_id);
        for (size_t j = 0; j < s->n_properties; j++) {
            free(s->property_keys[j]);
            if (s->property_values[j])
                free_secret(s->property_values[j], strlen(s->property_values[j]));
        }
        free(s->property_keys);
        free(s->property_values);
    }
    free(d->sinks);
}

static void quotas_free(custos_quotas_config_t *q);

/* ---------- use_cases and governance (docs/reviews.md) ---------- */

static int valid_use_case_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

/* "YYYY-MM-DD" -> Unix seconds of that day's 00:00 UTC; -1 when malformed. */
static int64_t parse_day(const char *s)
{
    int y, mo, d;
    char tail;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &mo, &d, &tail) != 3 || s[4] != '-' || s[7] != '-' ||
        y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    struct tm back;
    if (t == (time_t)-1 || !gmtime_r(&t, &back) || back.tm_mday != d || back.tm_mon != mo - 1)
        return -1;
    return (int64_t)t;
}

static int get_str_list(vctx_t *v, json_object *m, const char *path, const char *key, size_t max, char ***out,
                        size_t *n_out)
{
    json_object *seq;
    custos_ymark_t at;
    char fp[256];
    int rc = get_seq(v, m, path, key, 0, max, NULL, &seq, &at);
    if (rc != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    if (n == 0)
        return 0;
    *out = calloc(n, sizeof(char *));
    if (!*out)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *s = NULL;
        snprintf(fp, sizeof(fp), "%s.%s[%zu]", path, key, i);
        if ((rc = check_str(v, json_object_array_get_idx(seq, i), custos_ytree_val_mark(seq, i), fp, 256, &s)) != 0)
            return rc;
        if ((rc = dup_str(s, &(*out)[i])) != 0)
            return rc;
        *n_out = i + 1;
    }
    return 0;
}

static int pii_rank(custos_rai_pii_action_t a)
{
    switch (a) {
    case CUSTOS_RAI_PII_OFF:
        return 0;
    case CUSTOS_RAI_PII_ANNOTATE:
        return 1;
    case CUSTOS_RAI_PII_REDACT:
    case CUSTOS_RAI_PII_PLACEHOLDER:
        return 2;
    case CUSTOS_RAI_PII_BLOCK:
        return 3;
    }
    return 0;
}

/* Why policy p is weaker than u's minimum (static text into why), or NULL when it meets it. */
static const char *policy_weaker(const custos_use_case_config_t *u, const custos_rai_policy_config_t *p, char *why,
                                 size_t cap)
{
    static const char *const cats[CUSTOS_RAI_NCAT] = {"hate", "sexual", "violence", "self_harm"};
    static const char *const srcs[CUSTOS_RAI_NSRC] = {"prompt", "completion"};
    static const char *const lv[] = {"", "", "low", "", "medium", "", "high"};
    static const char *const acts[] = {"off", "annotate", "block"};
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++) {
        if (!u->min_threshold[k])
            continue;
        for (int d = 0; d < CUSTOS_RAI_NSRC; d++) {
            const custos_rai_filter_t *f = &p->filters[k][d];
            if (!f->enabled || !f->blocking || f->threshold > u->min_threshold[k]) {
                snprintf(why, cap, "filters.%s needs %s blocking at %s or stricter, the policy has %s", cats[k],
                         srcs[d], lv[u->min_threshold[k]],
                         !f->enabled    ? "it off"
                         : !f->blocking ? "it annotate-only"
                                        : lv[f->threshold % 7]);
                return why;
            }
        }
    }
    if (p->jailbreak < u->min_jailbreak) {
        snprintf(why, cap, "jailbreak needs %s, the policy has %s", acts[u->min_jailbreak], acts[p->jailbreak]);
        return why;
    }
    if (p->indirect_attack < u->min_indirect_attack) {
        snprintf(why, cap, "indirect_attack needs %s, the policy has %s", acts[u->min_indirect_attack],
                 acts[p->indirect_attack]);
        return why;
    }
    for (int d = 0; d < CUSTOS_RAI_NSRC; d++) {
        if (pii_rank(p->pii[d]) < pii_rank(u->min_pii[d])) {
            snprintf(why, cap, "pii.%s is weaker than the minimum", srcs[d]);
            return why;
        }
    }
    if (u->min_groundedness && !p->groundedness.enabled) {
        snprintf(why, cap, "groundedness is required but the policy does not check it");
        return why;
    }
    return NULL;
}

static int parse_use_case_min_policy(vctx_t *v, json_object *m, const char *path, custos_use_case_config_t *u)
{
    static const char *const keys[] = {"filters", "jailbreak", "indirect_attack", "pii", "groundedness", NULL};
    static const char *const thresholds[] = {"low", "medium", "high", NULL};
    static const char *const sh_actions[] = {"off", "annotate", "block", NULL};
    static const char *const pii_keys[] = {"prompt", "completion", NULL};
    static const char *const pii_actions[] = {"off", "annotate", "redact", "placeholder", "block", NULL};
    json_object *pm, *fm, *im;
    custos_ymark_t at;
    char fp[256], sb[72];
    int rc, e;
    if ((rc = get_map(v, m, path, "minimum_policy", 0, &pm, &at)) != 0 || !pm)
        return rc;
    join(fp, sizeof(fp), path, "minimum_policy");
    if ((rc = check_keys(v, pm, fp, keys)) != 0)
        return rc;
    if ((rc = get_map(v, pm, fp, "filters", 0, &fm, &at)) != 0)
        return rc;
    size_t n = fm ? custos_ytree_count(fm) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = custos_ytree_key(fm, i);
        int cat = rai_category(k);
        if (cat < 0)
            return verr(v, custos_ytree_key_mark(fm, i),
                        "%s.filters: unknown category '%s' (hate, sexual, violence, "
                        "self_harm)",
                        fp, shown(k, sb, sizeof(sb)));
        char fp2[300];
        snprintf(fp2, sizeof(fp2), "%s.filters", fp);
        if ((rc = get_enum(v, fm, fp2, k, thresholds, 1, &e)) != 0)
            return rc;
        u->min_threshold[cat] = (uint8_t)(2 + 2 * e);
    }
    if ((rc = get_enum(v, pm, fp, "jailbreak", sh_actions, CUSTOS_RAI_OFF, &e)) != 0)
        return rc;
    u->min_jailbreak = (custos_rai_action_t)e;
    if ((rc = get_enum(v, pm, fp, "indirect_attack", sh_actions, CUSTOS_RAI_OFF, &e)) != 0)
        return rc;
    u->min_indirect_attack = (custos_rai_action_t)e;
    if ((rc = get_map(v, pm, fp, "pii", 0, &im, &at)) != 0)
        return rc;
    if (im) {
        char fp2[300];
        snprintf(fp2, sizeof(fp2), "%s.pii", fp);
        if ((rc = check_keys(v, im, fp2, pii_keys)) != 0)
            return rc;
        if ((rc = get_enum(v, im, fp2, "prompt", pii_actions, 0, &e)) != 0)
            return rc;
        u->min_pii[CUSTOS_RAI_PROMPT] = (custos_rai_pii_action_t)e;
        if ((rc = get_enum(v, im, fp2, "completion", pii_actions, 0, &e)) != 0)
            return rc;
        u->min_pii[CUSTOS_RAI_COMPLETION] = (custos_rai_pii_action_t)e;
    }
    return get_bool(v, pm, fp, "groundedness", false, &u->min_groundedness);
}

static int parse_use_case_validation(vctx_t *v, json_object *m, const char *path, custos_use_case_config_t *u)
{
    static const char *const keys[] = {"validated", "evidence", "date", "expires", "required", NULL};
    json_object *vm;
    custos_ymark_t at;
    char fp[256];
    const char *s;
    int rc;
    u->validation_required = u->tier == CUSTOS_TIER_HIGH;
    if ((rc = get_map(v, m, path, "validation", 0, &vm, &at)) != 0 || !vm)
        return rc;
    join(fp, sizeof(fp), path, "validation");
    if ((rc = check_keys(v, vm, fp, keys)) != 0)
        return rc;
    if ((rc = get_bool(v, vm, fp, "validated", false, &u->validated)) != 0)
        return rc;
    bool req = false;
    if ((rc = get_bool(v, vm, fp, "required", u->validation_required, &req)) != 0)
        return rc;
    if (u->tier == CUSTOS_TIER_HIGH && !req) {
        field_t f;
        get_field(vm, "required", &f);
        return verr(v, f.vmark, "%s.required: high-tier use cases always require validation", fp);
    }
    u->validation_required = req;
    if ((rc = get_str(v, vm, fp, "evidence", 0, 1024, &s, &at)) != 0 || (rc = dup_str(s, &u->evidence)) != 0)
        return rc;
    if ((rc = get_str(v, vm, fp, "date", 0, 10, &s, &at)) != 0)
        return rc;
    if (s && parse_day(s) < 0)
        return verr(v, at, "%s.date: expected a date YYYY-MM-DD", fp);
    if ((rc = dup_str(s, &u->validation_date)) != 0)
        return rc;
    if ((rc = get_str(v, vm, fp, "expires", 0, 10, &s, &at)) != 0)
        return rc;
    if (s) {
        int64_t t = parse_day(s);
        if (t < 0)
            return verr(v, at, "%s.expires: expected a date YYYY-MM-DD", fp);
        u->expires_s = t + 86400; /* valid through the whole expiry day (UTC) */
        if ((rc = dup_str(s, &u->validation_expires)) != 0)
            return rc;
    }
    if (u->validated && !u->evidence)
        return verr(v, custos_ytree_mark(vm), "%s: validated: true needs an evidence reference", fp);
    return 0;
}

static int parse_use_case(vctx_t *v, json_object *m, const char *path, custos_config_t *c, custos_use_case_config_t *u)
{
    static const char *const keys[] = {"id",
                                       "description",
                                       "owner",
                                       "tier",
                                       "deployments",
                                       "minimum_policy",
                                       "validation",
                                       "regulatory_review",
                                       "qa_sample_rate",
                                       "review_deadline_s",
                                       "bind",
                                       NULL};
    static const char *const tiers[] = {"high", "elevated", "standard", NULL};
    static const char *const bind_keys[] = {"api_keys", "principals", "app_ids", NULL};
    custos_ymark_t at;
    json_object *seq, *bm;
    const char *s;
    char fp[256], sb[2][72], why[200];
    field_t f;
    int rc, e;
    int64_t n;

    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "id", 1, 64, &s, &at)) != 0 || !s)
        return rc ? rc : CUSTOS_EINVAL;
    if (!valid_use_case_id(s))
        return verr(v, at, "%s.id: must be 1..64 characters of [a-z0-9._-]", path);
    if ((rc = dup_str(s, &u->id)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "description", 0, 1024, &s, &at)) != 0 || (rc = dup_str(s, &u->description)) != 0)
        return rc;
    if ((rc = get_str(v, m, path, "owner", 1, 256, &s, &at)) != 0 || (rc = dup_str(s, &u->owner)) != 0)
        return rc;
    get_field(m, "tier", &f);
    if (!f.present)
        return missing(v, m, path, "tier");
    if ((rc = get_enum(v, m, path, "tier", tiers, 0, &e)) != 0)
        return rc;
    u->tier = (custos_usecase_tier_t)e;
    if ((rc = get_seq(v, m, path, "deployments", 1, CUSTOS_CONFIG_MAX_USE_CASE_DEPLOYMENTS, NULL, &seq, &at)) != 0)
        return rc;
    size_t nd = json_object_array_length(seq);
    u->deployments = calloc(nd, sizeof(char *));
    if (!u->deployments)
        return CUSTOS_ENOMEM;
    if ((rc = parse_use_case_min_policy(v, m, path, u)) != 0)
        return rc;
    for (size_t i = 0; i < nd; i++) {
        custos_ymark_t im = custos_ytree_val_mark(seq, i);
        snprintf(fp, sizeof(fp), "%s.deployments[%zu]", path, i);
        if ((rc = check_str(v, json_object_array_get_idx(seq, i), im, fp, 64, &s)) != 0)
            return rc;
        const custos_deployment_config_t *d = custos_config_find_deployment(c, s);
        if (!d)
            return verr(v, im, "%s: unknown deployment '%s'", fp, shown(s, sb[0], sizeof(sb[0])));
        for (size_t j = 0; j < i; j++)
            if (strcmp(u->deployments[j], s) == 0)
                return verr(v, im, "%s: deployment '%s' is listed twice", fp, shown(s, sb[0], sizeof(sb[0])));
        if (policy_weaker(u, d->rai, why, sizeof(why)))
            return verr(v, im, "%s: deployment %s's rai_policy %s is weaker than the use case's minimum_policy (%s)",
                        fp, shown(d->name, sb[0], sizeof(sb[0])), shown(d->rai->name, sb[1], sizeof(sb[1])), why);
        if ((rc = dup_str(s, &u->deployments[i])) != 0)
            return rc;
        u->n_deployments = i + 1;
    }
    if ((rc = parse_use_case_validation(v, m, path, u)) != 0)
        return rc;
    if ((rc = get_bool(v, m, path, "regulatory_review", false, &u->regulatory_review)) != 0)
        return rc;
    if ((rc = get_int(v, m, path, "review_deadline_s", 1, 31536000, 86400, &n)) != 0)
        return rc;
    u->review_deadline_s = (uint32_t)n;
    get_field(m, "qa_sample_rate", &f);
    if (f.present) {
        if (u->tier != CUSTOS_TIER_STANDARD)
            return verr(v, f.kmark,
                        "%s.qa_sample_rate: only for tier standard (high and elevated review every "
                        "request)",
                        path);
        if (!f.val || !(json_object_is_type(f.val, json_type_double) || json_object_is_type(f.val, json_type_int)))
            return verr(v, f.vmark, "%s.qa_sample_rate: expected a number from 0 to 1", path);
        double r = json_object_get_double(f.val);
        if (!(r >= 0.0 && r <= 1.0))
            return verr(v, f.vmark, "%s.qa_sample_rate: must be from 0 to 1", path);
        u->qa_sample_rate = r;
        u->qa_rate_ppm = (uint32_t)(r * 1000000.0 + 0.5);
    }
    if (u->tier != CUSTOS_TIER_STANDARD && c->retention.content_none)
        return verr(v, custos_ytree_mark(m),
                    "%s: tier %s needs the content stored for its reviewers, but retention.content is none (set "
                    "retention.content: {days: N})",
                    path, tiers[u->tier]);
    if ((rc = get_map(v, m, path, "bind", 0, &bm, &at)) != 0)
        return rc;
    if (bm) {
        join(fp, sizeof(fp), path, "bind");
        if ((rc = check_keys(v, bm, fp, bind_keys)) != 0 ||
            (rc = get_str_list(v, bm, fp, "api_keys", CUSTOS_CONFIG_MAX_USE_CASE_BINDINGS, &u->bind_api_keys,
                               &u->n_bind_api_keys)) != 0 ||
            (rc = get_str_list(v, bm, fp, "principals", CUSTOS_CONFIG_MAX_USE_CASE_BINDINGS, &u->bind_principals,
                               &u->n_bind_principals)) != 0 ||
            (rc = get_str_list(v, bm, fp, "app_ids", CUSTOS_CONFIG_MAX_USE_CASE_BINDINGS, &u->bind_app_ids,
                               &u->n_bind_app_ids)) != 0)
            return rc;
    }
    return 0;
}

static bool list_has(char **l, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(l[i], s) == 0)
            return true;
    return false;
}

static int parse_use_cases(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const gkeys[] = {"require_use_case", NULL};
    json_object *seq, *gm;
    custos_ymark_t at;
    char fp[64], sb[72];
    int rc;
    if ((rc = get_map(v, root, "", "governance", 0, &gm, &at)) != 0)
        return rc;
    if (gm && ((rc = check_keys(v, gm, "governance", gkeys)) != 0 ||
               (rc = get_bool(v, gm, "governance", "require_use_case", false, &c->governance.require_use_case)) != 0))
        return rc;
    if ((rc = get_seq(v, root, "", "use_cases", 0, CUSTOS_CONFIG_MAX_USE_CASES, NULL, &seq, &at)) != 0 || !seq)
        return rc;
    size_t n = json_object_array_length(seq);
    if (n == 0)
        return 0;
    c->use_cases = calloc(n, sizeof(*c->use_cases));
    if (!c->use_cases)
        return CUSTOS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(seq, i);
        custos_use_case_config_t *u = &c->use_cases[i];
        c->n_use_cases = i + 1;
        snprintf(fp, sizeof(fp), "use_cases[%zu]", i);
        if ((rc = expect_map(v, m, custos_ytree_val_mark(seq, i), fp)) != 0 ||
            (rc = parse_use_case(v, m, fp, c, u)) != 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            const custos_use_case_config_t *o = &c->use_cases[j];
            if (strcmp(o->id, u->id) == 0)
                return verr(v, custos_ytree_mark(m), "%s.id: use case '%s' is defined twice", fp,
                            shown(u->id, sb, sizeof(sb)));
            const char *dup = NULL;
            for (size_t k = 0; !dup && k < u->n_bind_api_keys; k++)
                dup = list_has(o->bind_api_keys, o->n_bind_api_keys, u->bind_api_keys[k]) ? u->bind_api_keys[k] : NULL;
            for (size_t k = 0; !dup && k < u->n_bind_principals; k++)
                dup = list_has(o->bind_principals, o->n_bind_principals, u->bind_principals[k]) ? u->bind_principals[k]
                                                                                                : NULL;
            for (size_t k = 0; !dup && k < u->n_bind_app_ids; k++)
                dup = list_has(o->bind_app_ids, o->n_bind_app_ids, u->bind_app_ids[k]) ? u->bind_app_ids[k] : NULL;
            if (dup)
                return verr(v, custos_ytree_mark(m),
                            "%s.bind: '%s' is already bound to use case %s (a caller has one "
                            "default use case)",
                            fp, shown(dup, sb, sizeof(sb)), o->id);
        }
    }
    return 0;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

static void use_cases_free(custos_config_t *c)
{
    for (size_t i = 0; i < c->n_use_cases; i++) {
        custos_use_case_config_t *u = &c->use_cases[i];
        free(u->id);
        free(u->description);
        free(u->owner);
        free_list(u->deployments, u->n_deployments);
        free(u->evidence);
        free(u->validation_date);
        free(u->validation_expires);
        free_list(u->bind_api_keys, u->n_bind_api_keys);
        free_list(u->bind_principals, u->n_bind_principals);
        free_list(u->bind_app_ids, u->n_bind_app_ids);
    }
    free(c->use_cases);
    c->use_cases = NULL;
    c->n_use_cases = 0;
}

static void config_free(custos_config_t *c)
{
    if (!c)
        return;
    use_cases_free(c);
    diagnostics_free(&c->diagnostics);
    quotas_free(&c->quotas);
    free(c->source);
    for (size_t i = 0; i < c->n_listeners; i++) {
        custos_listener_config_t *l = &c->listeners[i];
        free(l->address);
        free(l->host);
        free(l->unix_path);
        if (l->tls) {
            free(l->tls->cert);
            free(l->tls->key);
            free(l->tls->ciphers);
            free(l->tls->client_ca);
            free(l->tls);
        }
    }
    free(c->listeners);
    for (size_t i = 0; i < c->identity.n_api_keys; i++) {
        free(c->identity.api_keys[i].name);
        OPENSSL_cleanse(c->identity.api_keys[i].sha256, sizeof(c->identity.api_keys[i].sha256));
    }
    free_identity_rbac(&c->identity);
    free_identity_oidc(&c->identity);
    free(c->identity.api_keys);
    for (size_t i = 0; i < c->identity.n_client_certificates; i++) {
        free(c->identity.client_certificates[i].value);
        free(c->identity.client_certificates[i].principal);
        free(c->identity.client_certificates[i].scope);
    }
    free(c->identity.client_certificates);
    if (c->network.acl) {
        custos_acl_dispose(c->network.acl);
        free(c->network.acl);
    }
    free(c->storage.path);
    free(c->storage.url);
    free_secret(c->storage.password, c->storage.password_len);
    free(c->storage.key_dir);
    free(c->storage.pkcs11_module);
    free(c->storage.pkcs11_token);
    free(c->storage.pkcs11_key_label);
    free_secret(c->storage.pkcs11_pin, c->storage.pkcs11_pin_len);
    for (size_t i = 0; i < c->n_backends; i++) {
        custos_backend_config_t *b = &c->backends[i];
        free(b->name);
        free(b->url);
        free(b->host);
        free(b->path_prefix);
        free(b->api_version);
        free(b->deployment);
        free(b->model);
        free_secret(b->api_key, b->api_key_len);
        free_secret(b->bearer, b->bearer_len);
        if (b->oauth2) {
            free(b->oauth2->token_url);
            free(b->oauth2->client_id);
            free_secret(b->oauth2->client_secret, b->oauth2->client_secret_len);
            free(b->oauth2->scope);
            free(b->oauth2->ca_file);
            free(b->oauth2);
        }
        free(b->region);
        free(b->data_zone);
        free(b->ca_file);
        free(b->hc_path);
    }
    free(c->backends);
    for (size_t i = 0; i < c->n_deployments; i++) {
        custos_deployment_config_t *d = &c->deployments[i];
        free(d->name);
        free(d->model);
        free(d->region);
        free(d->data_zone);
        free(d->backends);
        free(d->sticky_header);
        for (size_t k = 0; k < d->n_require_regions; k++)
            free(d->require_regions[k]);
        free(d->require_regions);
        card_free(&d->card);
    }
    free(c->deployments);
    for (size_t i = 0; i < c->n_rai_policies; i++)
        rai_policy_free(&c->rai_policies[i]);
    free(c->rai_policies);
    rai_policy_free(&c->rai_default);
    guards_free(c);
    free(c->safety.harm_model);
    free(c->safety.shields_model);
    free(c->safety.grounded_model);
    free(c->safety.grounded_reasoning_deployment);
    free(c->safety.eval_dir);
    free(c->safety.pii_mrn_format);
    free(c->backends_by_name);
    free(c->deployments_by_name);
    free(c);
}

/* ---------- quotas (src/quota, docs/quotas.md) ---------- */

#ifndef CUSTOS_TIKTOKEN_DIR
#define CUSTOS_TIKTOKEN_DIR "/usr/share/custos/tiktoken"
#endif

/* {tpm, rpm} (and, for deployments, per_principal: {tpm, rpm}). rpm defaults to 6 per 1,000 TPM (Azure). */
static int parse_quota_limit(vctx_t *v, json_object *m, const char *path, const char *const *keys,
                             custos_quota_limit_config_t *q)
{
    int rc;
    if ((rc = check_keys(v, m, path, keys)) != 0)
        return rc;
    GET_INT_AS(v, m, path, "tpm", 0, INT64_C(1000000000000), 0, q->tpm);
    field_t f;
    get_field(m, "rpm", &f);
    GET_INT_AS(v, m, path, "rpm", 0, INT64_C(1000000000), 0, q->rpm);
    if (!f.present)
        q->rpm = q->tpm * 6 / 1000;
    return 0;
}

static void quotas_free(custos_quotas_config_t *q)
{
    free(q->tokenizer_dir);
    for (size_t i = 0; i < q->n_principals; i++)
        free(q->principals[i].principal);
    free(q->principals);
    free(q->redis_host);
    if (q->redis_password)
        free_secret(q->redis_password, strlen(q->redis_password));
    free(q->redis_prefix);
}

static int parse_quotas(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const keys[] = {
        "rpm_window_s", "default_max_tokens", "tokenizer_dir", "principals", "redis", NULL};
    static const char *const rkeys[] = {
        "host", "port", "password_env", "key_prefix", "sync_interval_ms", "timeout_ms", "on_failure", NULL};
    static const char *const lkeys[] = {"tpm", "rpm", NULL};
    static const char *const dkeys[] = {"tpm", "rpm", "per_principal", NULL};
    static const char *const pkeys[] = {"principal", "tpm", "rpm", NULL};
    static const char *const fails[] = {"local", "open", "closed", NULL};
    static const char *const toks[] = {"o200k_base", "cl100k_base", NULL}; /* custos_tok_kind_t order */
    custos_quotas_config_t *Q = &c->quotas;
    json_object *m = NULL, *rm = NULL, *seq = NULL;
    custos_ymark_t at;
    char fp[256], sb[72];
    const char *s;
    int rc, x;

    /* deployments[].quota and deployments[].tokenizer (the rest of the entry is parse_deployment's) */
    if ((rc = get_seq(v, root, "", "deployments", 1, CUSTOS_CONFIG_MAX_DEPLOYMENTS, NULL, &seq, &at)) != 0)
        return rc;
    for (size_t i = 0; i < c->n_deployments && i < json_object_array_length(seq); i++) {
        json_object *dm = json_object_array_get_idx(seq, i), *qm, *pm;
        custos_deployment_config_t *d = &c->deployments[i];
        char path[64];
        snprintf(path, sizeof(path), "deployments[%zu]", i);
        if ((rc = get_enum(v, dm, path, "tokenizer", toks, -1, &x)) != 0)
            return rc;
        d->tokenizer = x;
        if ((rc = get_map(v, dm, path, "quota", 0, &qm, NULL)) != 0)
            return rc;
        if (!qm)
            continue;
        snprintf(fp, sizeof(fp), "%s.quota", path);
        if ((rc = parse_quota_limit(v, qm, fp, dkeys, &d->quota)) != 0)
            return rc;
        if ((rc = get_map(v, qm, fp, "per_principal", 0, &pm, NULL)) != 0)
            return rc;
        if (pm) {
            snprintf(fp, sizeof(fp), "%s.quota.per_principal", path);
            if ((rc = parse_quota_limit(v, pm, fp, lkeys, &d->quota_per_principal)) != 0)
                return rc;
        }
    }

    if ((rc = get_map(v, root, "", "quotas", 0, &m, NULL)) != 0)
        return rc;
    if (m && (rc = check_keys(v, m, "quotas", keys)) != 0)
        return rc;
    GET_INT_AS(v, m, "quotas", "rpm_window_s", 1, 60, 10, Q->rpm_window_s);
    if (Q->rpm_window_s != 1 && Q->rpm_window_s != 10 && Q->rpm_window_s != 60) {
        field_t f;
        get_field(m, "rpm_window_s", &f);
        return verr(v, f.vmark, "quotas.rpm_window_s: expected 1, 10 or 60");
    }
    GET_INT_AS(v, m, "quotas", "default_max_tokens", 0, 10000000, 0, Q->default_max_tokens);
    if ((rc = get_str(v, m, "quotas", "tokenizer_dir", 0, 4096, &s, &at)) != 0)
        return rc;
    if (s && s[0] != '/' && v->basedir)
        rc = asprintf(&Q->tokenizer_dir, "%s%s", v->basedir, s) < 0 ? CUSTOS_ENOMEM : 0;
    else
        rc = dup_str(s ? s : CUSTOS_TIKTOKEN_DIR, &Q->tokenizer_dir);
    if (rc)
        return rc;
    if (m && (rc = get_seq(v, m, "quotas", "principals", 0, 100000, NULL, &seq, &at)) != 0)
        return rc;
    if (m && seq) {
        size_t n = json_object_array_length(seq);
        Q->principals = calloc(n ? n : 1, sizeof(*Q->principals));
        if (!Q->principals)
            return CUSTOS_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            json_object *pm = json_object_array_get_idx(seq, i);
            snprintf(fp, sizeof(fp), "quotas.principals[%zu]", i);
            if ((rc = expect_map(v, pm, custos_ytree_val_mark(seq, i), fp)) != 0)
                return rc;
            Q->n_principals = i + 1;
            if ((rc = get_str(v, pm, fp, "principal", 1, 256, &s, &at)) != 0)
                return rc;
            if (!s) /* required: get_str has reported it (guard for the analyzer) */
                return CUSTOS_EINVAL;
            for (size_t j = 0; j < i; j++)
                if (strcmp(Q->principals[j].principal, s) == 0)
                    return verr(v, at, "%s.principal: duplicate principal '%s'", fp, shown(s, sb, sizeof(sb)));
            if ((rc = dup_str(s, &Q->principals[i].principal)) != 0)
                return rc;
            if ((rc = parse_quota_limit(v, pm, fp, pkeys, &Q->principals[i].limit)) != 0)
                return rc;
        }
    }
    if (m && (rc = get_map(v, m, "quotas", "redis", 0, &rm, NULL)) != 0)
        return rc;
    if (rm && (rc = check_keys(v, rm, "quotas.redis", rkeys)) != 0)
        return rc;
    if ((rc = get_str(v, rm, "quotas.redis", "host", rm ? 1 : 0, 253, &s, &at)) != 0)
        return rc;
    if ((rc = dup_str(s, &Q->redis_host)) != 0)
        return rc;
    GET_INT_AS(v, rm, "quotas.redis", "port", 1, 65535, 6379, Q->redis_port);
    if ((rc = get_str(v, rm, "quotas.redis", "key_prefix", 0, 128, &s, &at)) != 0)
        return rc;
    if ((rc = dup_str(s ? s : "custos:quota:", &Q->redis_prefix)) != 0)
        return rc;
    GET_INT_AS(v, rm, "quotas.redis", "sync_interval_ms", 10, 10000, 100, Q->redis_sync_interval_ms);
    GET_INT_AS(v, rm, "quotas.redis", "timeout_ms", 10, 10000, 200, Q->redis_timeout_ms);
    if ((rc = get_enum(v, rm, "quotas.redis", "on_failure", fails, 0, &x)) != 0)
        return rc;
    Q->on_failure = (custos_quota_failure_t)x;
    field_t fe;
    get_field(rm, "password_env", &fe);
    if (rm && fe.present) {
        size_t plen = 0;
        if ((rc = get_secret(v, rm, "quotas.redis", "password_env", "password_file", &Q->redis_password, &plen)) != 0)
            return rc;
    }
    return 0;
}

static int validate(vctx_t *v, json_object *root, custos_config_t *c)
{
    static const char *const top[] = {"server",      "listeners",   "limits",  "upstream",  "identity",     "backends",
                                      "deployments", "diagnostics", "storage", "network",   "rai_policies", "safety",
                                      "retention",   "quotas",      "guards",  "use_cases", "governance",   NULL};
    int rc;
    if (!root || !json_object_is_type(root, json_type_object))
        return verr(v, root ? custos_ytree_mark(root) : (custos_ymark_t){1, 1},
                    "the configuration must be a mapping, got %s", root ? kind_name(root) : "an empty document");
    if ((rc = check_keys(v, root, "", top)) != 0)
        return rc;
    if ((rc = parse_server(v, root, c)) != 0)
        return rc;
    if ((rc = parse_listeners(v, root, c)) != 0)
        return rc;
    if ((rc = parse_network(v, root, c)) != 0)
        return rc;
    if ((rc = parse_limits(v, root, c)) != 0)
        return rc;
    if ((rc = parse_upstream(v, root, c)) != 0)
        return rc;
    if ((rc = parse_identity(v, root, c)) != 0)
        return rc;
    if ((rc = parse_storage(v, root, c)) != 0)
        return rc;
    if ((rc = parse_retention(v, root, c)) != 0)
        return rc;
    if ((rc = parse_backends(v, root, c)) != 0)
        return rc;
    if ((rc = index_backends(c)) != 0)
        return rc;
    if ((rc = parse_safety(v, root, c)) != 0)
        return rc;
    if ((rc = parse_guards(v, root, c)) != 0)
        return rc;
    if ((rc = parse_rai_policies(v, root, c)) != 0)
        return rc;
    if ((rc = parse_deployments(v, root, c)) != 0)
        return rc;
    if ((rc = index_deployments(c)) != 0)
        return rc;
    if ((rc = check_grounded_judge(v, root, c)) != 0)
        return rc;
    if ((rc = parse_quotas(v, root, c)) != 0)
        return rc;
    if ((rc = parse_use_cases(v, root, c)) != 0) /* after deployments and retention (docs/reviews.md) */
        return rc;
    return parse_diagnostics(v, root, c);
}

static int load(const char *name, const char *basedir, const char *yaml, size_t len, custos_config_t **out, char *err,
                size_t errlen)
{
    vctx_t v = {.basedir = basedir};
    json_object *root = NULL;
    custos_config_t *c = NULL;
    int rc;

    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    rc = custos_ytree_parse(yaml, len, &root, &v.where, v.msg, sizeof(v.msg));
    if (rc != 0)
        goto fail;
    c = calloc(1, sizeof(*c));
    if (!c || !(c->source = strdup(name))) {
        rc = CUSTOS_ENOMEM;
        snprintf(v.msg, sizeof(v.msg), "out of memory");
        v.where = (custos_ymark_t){1, 1};
        goto fail;
    }
    atomic_init(&c->refs, 1);
    rc = validate(&v, root, c);
    if (rc == CUSTOS_ENOMEM && !v.msg[0]) {
        snprintf(v.msg, sizeof(v.msg), "out of memory");
        v.where = (custos_ymark_t){1, 1};
    }
    if (rc != 0)
        goto fail;
    json_object_put(root);
    *out = c;
    return 0;

fail:
    if (err && errlen)
        snprintf(err, errlen, "%s:%u:%u: %s", name, v.where.line ? v.where.line : 1, v.where.col ? v.where.col : 1,
                 v.msg);
    json_object_put(root);
    config_free(c);
    return rc;
}

int custos_config_load_string(const char *name, const char *yaml, size_t len, custos_config_t **out, char *err,
                              size_t errlen)
{
    if (!name)
        name = "<string>";
    if (!yaml) {
        *out = NULL;
        if (err && errlen)
            snprintf(err, errlen, "%s: no configuration given", name);
        return CUSTOS_EINVAL;
    }
    return load(name, NULL, yaml, len, out, err, errlen);
}

int custos_config_load_file(const char *path, custos_config_t **out, char *err, size_t errlen)
{
    custos_buf_t b;
    char tmp[65536];
    char *basedir = NULL;
    int rc = 0, fd;

    *out = NULL;
    custos_buf_init(&b, CUSTOS_CONFIG_MAX_BYTES);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return CUSTOS_EIO;
    }
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (err && errlen)
                snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            rc = CUSTOS_EIO;
            goto fail;
        }
        if (n == 0)
            break;
        rc = custos_buf_append(&b, tmp, (size_t)n);
        if (rc == CUSTOS_ETOOBIG) {
            if (err && errlen)
                snprintf(err, errlen, "%s:1:1: configuration is larger than %zu bytes (4 MiB)", path,
                         CUSTOS_CONFIG_MAX_BYTES);
            goto fail;
        }
        if (rc != 0) {
            if (err && errlen)
                snprintf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
    }
    /* Relative paths inside the file resolve against the file's directory, made absolute so they
     * survive a later chdir. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + 1) : strdup(".");
    char *real = dir ? realpath(dir, NULL) : NULL;
    int oom = !dir;
    if (real) {
        if (asprintf(&basedir, "%s%s", real, strcmp(real, "/") == 0 ? "" : "/") < 0) {
            basedir = NULL;
            oom = 1;
        }
    } else if (dir && slash) {
        basedir = strdup(dir);
        oom = !basedir;
    }
    free(real);
    free(dir);
    if (oom) {
        rc = CUSTOS_ENOMEM;
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    rc = load(path, basedir, custos_buf_peek(&b), custos_buf_size(&b), out, err, errlen);
fail:
    close(fd);
    free(basedir);
    custos_buf_dispose(&b);
    return rc;
}

custos_config_t *custos_config_ref(custos_config_t *c)
{
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void custos_config_unref(custos_config_t *c)
{
    if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

const custos_backend_config_t *custos_config_find_backend(const custos_config_t *c, const char *name)
{
    if (!c || !name || !c->backends_by_name)
        return NULL;
    size_t lo = 0, hi = c->n_backends;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(name, c->backends_by_name[mid]->name);
        if (d == 0)
            return c->backends_by_name[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const custos_deployment_config_t *custos_config_find_deployment(const custos_config_t *c, const char *name)
{
    if (!c || !name || !c->deployments_by_name)
        return NULL;
    size_t lo = 0, hi = c->n_deployments;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(name, c->deployments_by_name[mid]->name);
        if (d == 0)
            return c->deployments_by_name[mid];
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *custos_config_provider_name(custos_provider_t p)
{
    switch (p) {
    case CUSTOS_PROVIDER_OPENAI:
        return "openai";
    case CUSTOS_PROVIDER_AZURE:
        return "azure";
    case CUSTOS_PROVIDER_OPENAI_COMPATIBLE:
        return "openai-compatible";
    }
    return "?";
}

const char *custos_config_deployment_type_name(custos_deployment_type_t t)
{
    switch (t) {
    case CUSTOS_DEPLOYMENT_GLOBAL:
        return "global";
    case CUSTOS_DEPLOYMENT_DATAZONE:
        return "datazone";
    case CUSTOS_DEPLOYMENT_REGIONAL:
        return "regional";
    }
    return "?";
}

int custos_config_dump_summary(const custos_config_t *c, FILE *f)
{
    static const char *const lvl[] = {"debug", "info", "warn", "error"};
    if (!c || !f)
        return CUSTOS_EINVAL;
    fprintf(f, "config %s\n", c->source);
    if (c->server.workers)
        fprintf(f, "server: %u workers, log_level %s, drain_timeout_ms %" PRIu32 "\n", c->server.workers,
                lvl[c->server.log_level], c->server.drain_timeout_ms);
    else
        fprintf(f, "server: one worker per CPU, log_level %s, drain_timeout_ms %" PRIu32 "\n", lvl[c->server.log_level],
                c->server.drain_timeout_ms);
    fprintf(f, "listeners (%zu):\n", c->n_listeners);
    for (size_t i = 0; i < c->n_listeners; i++) {
        const custos_listener_config_t *l = &c->listeners[i];
        if (l->tls)
            fprintf(f, "  %s  https (TLS >= 1.%d)\n", l->address, l->tls->min_version == 0x0304 ? 3 : 2);
        else
            fprintf(f, "  %s  plain http%s\n", l->address,
                    l->kind == CUSTOS_ADDR_UNIX ? " (unix socket)"
                    : l->loopback               ? " (loopback)"
                                                : " (INSECURE: non-loopback)");
    }
    fprintf(f, "api keys (%zu):", c->identity.n_api_keys);
    for (size_t i = 0; i < c->identity.n_api_keys; i++)
        fprintf(f, "%s %s", i ? "," : "", c->identity.api_keys[i].name);
    fprintf(f, "\n");
    fprintf(f, "identity: API keys %s, %zu role assignments, %zu role map entries, %zu conditional access policies\n",
            c->identity.disable_local_auth ? "DISABLED (disable_local_auth)" : "enabled",
            c->identity.n_role_assignments, c->identity.n_role_map, c->identity.n_ca_policies);
    if (c->storage.driver == CUSTOS_STORAGE_POSTGRES)
        fprintf(f, "storage: postgres\n");
    else if (c->storage.path)
        fprintf(f, "storage: %s\n", c->storage.path);
    fprintf(f, "encryption: %s\n", c->storage.kek_provider == CUSTOS_KEK_PKCS11 ? "pkcs11" : "local");
    if (c->retention.content_none)
        fprintf(f, "retention.content: none\n");
    else
        fprintf(f, "retention.content: %lld days\n", (long long)c->retention.content_days);
    for (size_t i = 0; i < c->identity.n_oidc; i++)
        fprintf(f, "oidc issuer: %s (keys: %s)\n", c->identity.oidc[i].issuer,
                c->identity.oidc[i].jwks ? c->identity.oidc[i].jwks : "discovery");
    fprintf(f, "backends (%zu):\n", c->n_backends);
    for (size_t i = 0; i < c->n_backends; i++) {
        const custos_backend_config_t *b = &c->backends[i];
        const char *auth = b->api_key ? "api-key" : "none";
        if (b->bearer || b->oauth2)
            auth = b->oauth2 ? "oauth2" : "bearer";
        fprintf(f, "  %s  %s  %s  region %s  data_zone %s  auth %s  priority %d%s", b->name,
                custos_config_provider_name(b->provider), b->url, b->region ? b->region : "-",
                b->data_zone ? b->data_zone : "-", auth, b->priority,
                (b->https && !b->tls_verify) ? "  (TLS VERIFY OFF)" : "");
        if (b->weight > 1)
            fprintf(f, "  weight %u", b->weight);
        if (b->hc_enabled)
            fprintf(f, "  health check GET %s every %" PRIu32 " ms", b->hc_path, b->hc_interval_ms);
        fprintf(f, "\n");
    }
    fprintf(f, "deployments (%zu):\n", c->n_deployments);
    for (size_t i = 0; i < c->n_deployments; i++) {
        const custos_deployment_config_t *d = &c->deployments[i];
        fprintf(f, "  %s  model %s  %s", d->name, d->model, custos_config_deployment_type_name(d->type));
        if (d->region)
            fprintf(f, " %s", d->region);
        if (d->data_zone)
            fprintf(f, " %s", d->data_zone);
        fprintf(f, "  ->");
        for (size_t j = 0; j < d->n_backends; j++)
            fprintf(f, "%s %s", j ? "," : "", d->backends[j]->name);
        if (d->balance == CUSTOS_BALANCE_LEAST_OUTSTANDING)
            fprintf(f, "  balance least_outstanding");
        if (d->sticky_header)
            fprintf(f, "  sticky %s", d->sticky_header);
        if (d->require_zero_data_retention || d->require_no_training || d->n_require_regions) {
            fprintf(f, "  requires%s%s", d->require_zero_data_retention ? " zero_data_retention" : "",
                    d->require_no_training ? " no_training" : "");
            for (size_t j = 0; j < d->n_require_regions; j++)
                fprintf(f, "%s%s", j ? "|" : " regions ", d->require_regions[j]);
        }
        fprintf(f, "\n");
    }
    if (c->n_use_cases) { /* docs/reviews.md */
        static const char *const tiers[] = {"high", "elevated", "standard"};
        fprintf(f, "use cases (%zu)%s:\n", c->n_use_cases,
                c->governance.require_use_case ? ", required on every request" : "");
        for (size_t i = 0; i < c->n_use_cases; i++) {
            const custos_use_case_config_t *u = &c->use_cases[i];
            fprintf(f, "  %s  %s  %s  ->", u->id, tiers[u->tier % 3],
                    u->validated             ? "validated"
                    : u->validation_required ? "NOT validated (refused)"
                                             : "not validated");
            for (size_t j = 0; j < u->n_deployments; j++)
                fprintf(f, "%s %s", j ? "," : "", u->deployments[j]);
            if (u->tier == CUSTOS_TIER_STANDARD)
                fprintf(f, "  qa %.4g", u->qa_sample_rate);
            fprintf(f, "  deadline %us\n", u->review_deadline_s);
        }
    }
    return (fflush(f) == 0 && !ferror(f)) ? 0 : CUSTOS_EIO;
}
