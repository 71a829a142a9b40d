/* SPDX-License-Identifier: Apache-2.0
 * File sink driver: appends records as JSON lines to `path`, fdatasync()s at most every fsync_interval_ms (from its
 * idle hook when no batch follows; 0: after every batch), and rotates by size and age (path -> path.1 -> ... ->
 * path.max_files, the oldest deleted). A failed write is truncated away, so the framework's retry never leaves a torn
 * or duplicated line. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/sink.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

typedef struct file_sink {
    const custos_audit_sink_config_t *cfg;
    int fd;
    uint64_t size;
    uint64_t opened_ms; /* wall clock when this file was opened or created (age rotation) */
    uint64_t synced_ms; /* monotonic time of the last fdatasync (fsync_interval_ms) */
    bool dirty;         /* written since the last fdatasync */
    custos_buf_t buf;
} file_sink_t;

static int file_open(file_sink_t *f)
{
    f->fd = open(f->cfg->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (f->fd < 0)
        return CUSTOS_EIO;
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        close(f->fd);
        f->fd = -1;
        return CUSTOS_EIO;
    }
    f->size = (uint64_t)st.st_size;
    f->opened_ms = custos_wall_ms();
    return 0;
}

static int file_rotate(file_sink_t *f)
{
    const char *p = f->cfg->path;
    size_t pl = strlen(p);
    char *from = malloc(pl + 16), *to = malloc(pl + 16);
    int rc = 0;
    if (!from || !to) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    if (f->fd >= 0) {
        fdatasync(f->fd);
        close(f->fd);
        f->fd = -1;
    }
    if (f->cfg->max_files == 0) {
        if (unlink(p) != 0 && errno != ENOENT)
            rc = CUSTOS_EIO;
    } else {
        for (unsigned i = f->cfg->max_files; i >= 1; i--) {
            snprintf(to, pl + 16, "%s.%u", p, i);
            if (i == 1)
                snprintf(from, pl + 16, "%s", p);
            else
                snprintf(from, pl + 16, "%s.%u", p, i - 1);
            if (rename(from, to) != 0 && errno != ENOENT)
                rc = CUSTOS_EIO;
        }
    }
    if (rc == 0)
        rc = file_open(f);
out:
    free(from);
    free(to);
    return rc;
}

static int file_sink_open(const custos_audit_sink_config_t *cfg, void **state, char *err, size_t errlen)
{
    file_sink_t *f = calloc(1, sizeof(*f));
    *state = NULL;
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return CUSTOS_ENOMEM;
    }
    f->cfg = cfg;
    f->fd = -1;
    custos_buf_init(&f->buf, 0);
    if (!cfg->path || file_open(f) != 0) {
        snprintf(err, errlen, "cannot open %s: %s", cfg->path ? cfg->path : "(no path)", strerror(errno));
        free(f);
        return CUSTOS_EIO;
    }
    *state = f;
    return 0;
}

/* Writes n bytes at the end of the file; on failure truncates the file back to f->size, taking back all of this batch
 * (the framework retries all of it, so no line is torn or doubled). */
static int file_write(file_sink_t *f, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (ftruncate(f->fd, (off_t)f->size) != 0) {
                close(f->fd);
                f->fd = -1;
            }
            return CUSTOS_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int file_sink_deliver(void *state, const char *const *recs, const size_t *lens, size_t n)
{
    file_sink_t *f = state;
    int rc;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += lens[i] + 1;
    bool too_big = f->size > 0 && f->size + len > f->cfg->max_bytes;
    bool too_old =
        f->cfg->max_age_s > 0 && f->size > 0 && custos_wall_ms() - f->opened_ms >= f->cfg->max_age_s * 1000ull;
    if (f->fd < 0 || too_big || too_old) {
        if ((rc = f->fd < 0 ? file_open(f) : file_rotate(f)) != 0)
            return rc;
    }
    /* Records that lie back to back, each followed by its '\n' (sink.h), go out as they are: one write per run, no
     * copy. Anything else is copied into lines first. */
    for (size_t i = 0; i < n;) {
        size_t j = i, run = 0;
        while (j < n && recs[j][lens[j]] == '\n' && (j == i || recs[j] == recs[j - 1] + lens[j - 1] + 1)) {
            run += lens[j] + 1;
            j++;
        }
        if (j > i) {
            if ((rc = file_write(f, recs[i], run)) != 0)
                return rc;
        } else {
            custos_buf_reset(&f->buf);
            for (; j < n && recs[j][lens[j]] != '\n'; j++) {
                if ((rc = custos_buf_append(&f->buf, recs[j], lens[j])) != 0 ||
                    (rc = custos_buf_append_lit(&f->buf, "\n")) != 0)
                    return rc;
            }
            run = custos_buf_size(&f->buf);
            if ((rc = file_write(f, custos_buf_peek(&f->buf), run)) != 0)
                return rc;
        }
        i = j;
    }
    /* Durability: written lines survive a crash of custos at once (page cache); fdatasync makes them survive a
     * power loss, after every batch by default or at most every fsync_interval_ms (cheaper at high rates). */
    uint64_t now = custos_now_ms();
    if (f->cfg->fsync_interval_ms && now - f->synced_ms < f->cfg->fsync_interval_ms) {
        f->size += len;
        f->dirty = true; /* synced by a later batch or by file_sink_idle */
        return 0;
    }
    f->synced_ms = now;
    f->dirty = false;
    if (fdatasync(f->fd) != 0) {
        if (ftruncate(f->fd, (off_t)f->size) != 0) {
            close(f->fd);
            f->fd = -1;
        }
        return CUSTOS_EIO;
    }
    f->size += len;
    return 0;
}

/* The deferred fdatasync when no batch follows: bounds what a power loss can take to ~fsync_interval_ms. */
static uint32_t file_sink_idle(void *state)
{
    file_sink_t *f = state;
    if (!f->dirty || f->fd < 0)
        return 0;
    uint64_t now = custos_now_ms();
    if (now - f->synced_ms < f->cfg->fsync_interval_ms)
        return (uint32_t)(f->cfg->fsync_interval_ms - (now - f->synced_ms));
    f->synced_ms = now;
    f->dirty = false;
    if (fdatasync(f->fd) != 0)
        CUSTOS_WARN("audit file sink %s: fdatasync failed: %s", f->cfg->name, strerror(errno));
    return 0;
}

static void file_sink_close(void *state)
{
    file_sink_t *f = state;
    if (!f)
        return;
    if (f->fd >= 0) {
        fdatasync(f->fd);
        close(f->fd);
    }
    custos_buf_dispose(&f->buf);
    free(f);
}

const custos_audit_sink_driver_t custos_audit_sink_file = {
    .type = "file",
    .open = file_sink_open,
    .deliver = file_sink_deliver,
    .idle = file_sink_idle,
    .close = file_sink_close,
};
