/* SPDX-License-Identifier: Apache-2.0
 * On-disk spool: segments DIR/NNNNNNNNNNNNNNNNNNNN.seg (JSON lines, appended and fdatasync'ed per batch) and DIR/cursor
 * ("SEGNO OFFSET\n", rewritten and fdatasync'ed after each delivered batch). A new segment is started at every open,
 * so a torn last line from a crash only ever ends an old segment, and is skipped. */
#include "audit/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

#define SEG_MAX_BYTES ((uint64_t)64 * 1024 * 1024) /* start a new segment past this */
#define READ_CHUNK ((size_t)1024 * 1024)           /* bytes read per peek (grows for a longer record) */
#define RECORD_MAX ((size_t)16 * 1024 * 1024)      /* a longer line is corrupt: skipped */

typedef struct seg {
    uint64_t no;
    uint64_t size;
} seg_t;

struct custos_spool {
    char *dir;
    uint64_t max_bytes;
    seg_t *segs; /* sorted by no; segs[0] is being read */
    size_t nsegs, capsegs;
    uint64_t read_off; /* in segs[0] */
    int wfd;           /* write fd of segs[nsegs-1] when writable, else -1 */
    uint64_t next_no;
    uint64_t peek_end; /* read_off after the last peek's records */
    int cursor_fd;
};

static int mkdirs(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return CUSTOS_ENOMEM;
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            free(p);
            return CUSTOS_EIO;
        }
        *c = '/';
    }
    int rc = (mkdir(p, 0700) != 0 && errno != EEXIST) ? CUSTOS_EIO : 0;
    free(p);
    return rc;
}

static void seg_path(const custos_spool_t *s, uint64_t no, char *out, size_t n)
{
    snprintf(out, n, "%s/%020" PRIu64 ".seg", s->dir, no);
}

static int cmp_seg(const void *a, const void *b)
{
    const seg_t *x = a, *y = b;
    return x->no < y->no ? -1 : x->no > y->no;
}

static int push_seg(custos_spool_t *s, uint64_t no, uint64_t size)
{
    if (s->nsegs == s->capsegs) {
        size_t nc = s->capsegs ? s->capsegs * 2 : 8;
        seg_t *ns = realloc(s->segs, nc * sizeof(*ns));
        if (!ns)
            return CUSTOS_ENOMEM;
        s->segs = ns;
        s->capsegs = nc;
    }
    s->segs[s->nsegs++] = (seg_t){no, size};
    return 0;
}

static int write_cursor(custos_spool_t *s)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%020" PRIu64 " %020" PRIu64 "\n", s->nsegs ? s->segs[0].no : 0, s->read_off);
    if (pwrite(s->cursor_fd, line, (size_t)n, 0) != n || fdatasync(s->cursor_fd) != 0)
        return CUSTOS_EIO;
    return 0;
}

int custos_spool_open(const char *dir, uint64_t max_bytes, custos_spool_t **out)
{
    custos_spool_t *s = calloc(1, sizeof(*s));
    int rc = CUSTOS_ENOMEM;
    char path[4200];
    *out = NULL;
    if (!s || !(s->dir = strdup(dir)))
        goto fail;
    s->max_bytes = max_bytes;
    s->wfd = -1;
    s->cursor_fd = -1;
    if ((rc = mkdirs(dir)) != 0)
        goto fail;
    DIR *d = opendir(dir);
    if (!d) {
        rc = CUSTOS_EIO;
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != 24 || strcmp(e->d_name + 20, ".seg") != 0)
            continue;
        char *end;
        uint64_t no = strtoull(e->d_name, &end, 10);
        if (end != e->d_name + 20)
            continue;
        struct stat st;
        seg_path(s, no, path, sizeof(path));
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if ((rc = push_seg(s, no, (uint64_t)st.st_size)) != 0) {
            closedir(d);
            goto fail;
        }
    }
    closedir(d);
    if (s->nsegs > 1)
        qsort(s->segs, s->nsegs, sizeof(*s->segs), cmp_seg);
    s->next_no = s->nsegs ? s->segs[s->nsegs - 1].no + 1 : 1;

    snprintf(path, sizeof(path), "%s/cursor", dir);
    s->cursor_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->cursor_fd < 0) {
        rc = CUSTOS_EIO;
        goto fail;
    }
    /* one writer per spool: a second custos on the same directory would interleave segments */
    if (flock(s->cursor_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? CUSTOS_EUNAVAIL : CUSTOS_EIO;
        goto fail;
    }
    char line[64] = {0};
    ssize_t n = pread(s->cursor_fd, line, sizeof(line) - 1, 0);
    uint64_t cno = 0, coff = 0;
    if (n > 0 && sscanf(line, "%" SCNu64 " %" SCNu64, &cno, &coff) == 2) {
        /* drop segments before the cursor's (finished but not yet deleted) */
        while (s->nsegs && s->segs[0].no < cno) {
            seg_path(s, s->segs[0].no, path, sizeof(path));
            unlink(path);
            memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*s->segs));
            s->nsegs--;
        }
        if (s->nsegs && s->segs[0].no == cno)
            s->read_off = coff <= s->segs[0].size ? coff : s->segs[0].size;
    }
    s->peek_end = s->read_off;
    *out = s;
    return 0;
fail:
    custos_spool_close(s);
    return rc;
}

uint64_t custos_spool_bytes(const custos_spool_t *s)
{
    uint64_t t = 0;
    for (size_t i = 0; i < s->nsegs; i++)
        t += s->segs[i].size;
    return t - s->read_off;
}

bool custos_spool_empty(const custos_spool_t *s)
{
    return custos_spool_bytes(s) == 0;
}

static int open_writer(custos_spool_t *s)
{
    char path[4200];
    uint64_t no = s->next_no++;
    seg_path(s, no, path, sizeof(path));
    s->wfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (s->wfd < 0)
        return CUSTOS_EIO;
    int rc = push_seg(s, no, 0);
    if (rc != 0) {
        close(s->wfd);
        s->wfd = -1;
        unlink(path);
        return rc;
    }
    /* make the new directory entry durable */
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CUSTOS_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int custos_spool_append(custos_spool_t *s, const char *const *recs, const size_t *lens, size_t n, size_t *appended)
{
    custos_buf_t b;
    size_t k = 0;
    int rc = 0;
    *appended = 0;
    if (n == 0)
        return 0;
    uint64_t used = custos_spool_bytes(s);
    custos_buf_init(&b, 0);
    for (; k < n; k++) {
        if (used + lens[k] + 1 > s->max_bytes)
            break;
        if ((rc = custos_buf_append(&b, recs[k], lens[k])) != 0 || (rc = custos_buf_append_lit(&b, "\n")) != 0)
            break;
        used += lens[k] + 1;
    }
    if (rc != 0 || k == 0)
        goto out;
    if (s->wfd < 0 || s->segs[s->nsegs - 1].size >= SEG_MAX_BYTES) {
        if (s->wfd >= 0) {
            close(s->wfd);
            s->wfd = -1;
        }
        if ((rc = open_writer(s)) != 0)
            goto out;
    }
    if ((rc = write_all(s->wfd, custos_buf_peek(&b), custos_buf_size(&b))) != 0) {
        /* a partial line may be on disk: never append after it */
        struct stat st;
        if (fstat(s->wfd, &st) == 0)
            s->segs[s->nsegs - 1].size = (uint64_t)st.st_size;
        close(s->wfd);
        s->wfd = -1;
        goto out;
    }
    s->segs[s->nsegs - 1].size += custos_buf_size(&b);
    *appended = k;
    if (fdatasync(s->wfd) != 0)
        rc = CUSTOS_EIO;
out:
    custos_buf_dispose(&b);
    return rc;
}

/* Drops segs[0] (fully read). */
static void drop_first(custos_spool_t *s)
{
    char path[4200];
    if (s->nsegs == 1 && s->wfd >= 0) {
        close(s->wfd);
        s->wfd = -1;
    }
    seg_path(s, s->segs[0].no, path, sizeof(path));
    unlink(path);
    memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof(*s->segs));
    s->nsegs--;
    s->read_off = 0;
}

/* Drops fully read segments at the front; persists the cursor when something was dropped. */
static int drop_finished(custos_spool_t *s)
{
    bool dropped = false;
    while (s->nsegs && s->read_off >= s->segs[0].size) {
        drop_first(s);
        dropped = true;
    }
    s->peek_end = s->read_off;
    return dropped ? write_cursor(s) : 0;
}

int custos_spool_peek(custos_spool_t *s, size_t max, custos_buf_t *buf, const char **recs, size_t *lens, size_t *n)
{
    char path[4200];
    int rc;
    *n = 0;
    custos_buf_reset(buf);
    for (;;) {
        if ((rc = drop_finished(s)) != 0)
            return rc;
        if (!s->nsegs || max == 0)
            return 0;
        seg_path(s, s->segs[0].no, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return CUSTOS_EIO;
        size_t want = READ_CHUNK;
        bool skip = false;
        for (;;) {
            uint64_t avail = s->segs[0].size - s->read_off;
            size_t len = avail < want ? (size_t)avail : want;
            custos_buf_reset(buf);
            if ((rc = custos_buf_reserve(buf, len)) != 0)
                break;
            ssize_t got = pread(fd, buf->data, len, (off_t)s->read_off);
            if (got < 0) {
                rc = CUSTOS_EIO;
                break;
            }
            buf->len = (size_t)got;
            buf->data[buf->len] = 0;
            const char *p = buf->data, *end = buf->data + buf->len;
            size_t k = 0;
            while (k < max && p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                    break;
                if (nl > p) { /* empty lines are skipped */
                    recs[k] = p;
                    lens[k] = (size_t)(nl - p);
                    k++;
                }
                p = nl + 1;
            }
            if (p > buf->data) {
                *n = k;
                s->peek_end = s->read_off + (uint64_t)(p - buf->data);
                break;
            }
            if ((uint64_t)got < avail && want < RECORD_MAX) { /* a line longer than the chunk */
                want *= 4;
                continue;
            }
            /* a torn tail (crash) or an over-long line: skip the rest of this segment */
            CUSTOS_WARN("audit spool: skipping %" PRIu64 " unreadable bytes at the end of segment %" PRIu64, avail,
                        s->segs[0].no);
            skip = true;
            break;
        }
        close(fd);
        if (rc != 0)
            return rc;
        if (skip) {
            s->read_off = s->segs[0].size;
            continue;
        }
        if (*n > 0)
            return 0;
        /* only empty lines: consume them and go on */
        s->read_off = s->peek_end;
    }
}

int custos_spool_consume(custos_spool_t *s)
{
    if (!s->nsegs)
        return 0;
    s->read_off = s->peek_end;
    while (s->nsegs && s->read_off >= s->segs[0].size)
        drop_first(s);
    s->peek_end = s->read_off;
    return write_cursor(s);
}

void custos_spool_close(custos_spool_t *s)
{
    if (!s)
        return;
    if (s->wfd >= 0)
        close(s->wfd);
    if (s->cursor_fd >= 0)
        close(s->cursor_fd);
    free(s->segs);
    free(s->dir);
    free(s);
}
