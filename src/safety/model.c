/* SPDX-License-Identifier: Apache-2.0
 * Loading (mmap + validation) and writing of the hashed linear model format (model.h). */
#include "safety/model.h"

#include "safety/normalize.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

_Static_assert(sizeof(custos_model_head_t) == 60, "head layout");
_Static_assert(sizeof(custos_model_header_t) == 48 + 8 * 60 + 24, "header layout");
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model format is little-endian; add byte swapping for this platform"
#endif

static uint32_t model_crc(const custos_model_header_t *h, const void *w, size_t wlen)
{
    custos_model_header_t c = *h;
    c.checksum = 0;
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)&c, sizeof(c));
    const unsigned char *p = w;
    while (wlen) {
        uInt n = wlen > (1u << 30) ? (1u << 30) : (uInt)wlen;
        crc = crc32(crc, p, n);
        p += n;
        wlen -= n;
    }
    return (uint32_t)crc;
}

static int fail(char *err, size_t errlen, int rc, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return rc;
}

/* Validates the bytes of a model; returns 0 or an error with a reason in err. */
static int validate(const void *buf, size_t len, char *err, size_t errlen)
{
    if (len < sizeof(custos_model_header_t))
        return fail(err, errlen, CUSTOS_EINVAL, "model file truncated (shorter than its header)");
    custos_model_header_t h;
    memcpy(&h, buf, sizeof(h));
    if (memcmp(h.magic, CUSTOS_MODEL_MAGIC, 8) != 0)
        return fail(err, errlen, CUSTOS_EINVAL, "not a custos model file (bad magic)");
    if (h.version < CUSTOS_MODEL_MIN_VERSION || h.version > CUSTOS_MODEL_VERSION)
        return fail(err, errlen, CUSTOS_EINVAL, "unsupported model format version");
    if ((h.version == 1 && h.min_feats) || h.min_feats > CUSTOS_MODEL_MAX_MIN_FEATS)
        return fail(err, errlen, CUSTOS_EINVAL, "model feature-count floor out of range");
    if (h.header_size != sizeof(h) || h.kind != CUSTOS_MODEL_KIND_HASHED_LINEAR)
        return fail(err, errlen, CUSTOS_EINVAL, "unsupported model header size or kind");
    if (h.hash_bits < 16 || h.hash_bits > 22 || h.n_heads < 1 || h.n_heads > CUSTOS_MODEL_MAX_HEADS ||
        h.word_ngrams > 3 || h.char_max > 8 || h.char_min > h.char_max || (h.char_max && !h.char_min) ||
        (h.norm_flags & ~(unsigned)CUSTOS_NORM_ALL))
        return fail(err, errlen, CUSTOS_EINVAL, "model feature configuration out of range");
    uint64_t want = ((uint64_t)1 << h.hash_bits) * h.n_heads;
    if (h.weights_offset != sizeof(h) || h.weights_size != want || len != sizeof(h) + want)
        return fail(err, errlen, CUSTOS_EINVAL, "model file size does not match its header (truncated or corrupt)");
    for (uint32_t i = 0; i < h.n_heads; i++) {
        const custos_model_head_t *hd = &h.heads[i];
        if (memchr(hd->name, 0, sizeof(hd->name)) == NULL || !hd->name[0])
            return fail(err, errlen, CUSTOS_EINVAL, "model head name invalid");
        float prev = 0;
        if (!isfinite(hd->scale) || !isfinite(hd->bias) || !isfinite(hd->platt_a) || !isfinite(hd->platt_b))
            return fail(err, errlen, CUSTOS_EINVAL, "model head parameters not finite");
        for (int k = 0; k < 7; k++) {
            if (!(hd->bands[k] >= prev && hd->bands[k] <= 1.0f))
                return fail(err, errlen, CUSTOS_EINVAL, "model severity bands not increasing in [0,1]");
            prev = hd->bands[k];
        }
    }
    if (model_crc(&h, (const char *)buf + sizeof(h), (size_t)want) != h.checksum)
        return fail(err, errlen, CUSTOS_EINVAL, "model checksum mismatch (corrupt file)");
    return 0;
}

int custos_model_open(const char *path, custos_model_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char msg[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, sizeof(msg), "cannot open model %s: %s", path, strerror(errno));
        return fail(err, errlen, CUSTOS_EIO, msg);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, CUSTOS_EIO, "model path is not a regular file");
    }
    if ((uint64_t)st.st_size > CUSTOS_MODEL_MAX_SIZE) {
        close(fd);
        return fail(err, errlen, CUSTOS_ETOOBIG, "model file larger than 64 MiB");
    }
    if (st.st_size == 0) {
        close(fd);
        return fail(err, errlen, CUSTOS_EINVAL, "model file is empty");
    }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return fail(err, errlen, CUSTOS_EIO, "cannot mmap model file");
    int rc = validate(base, (size_t)st.st_size, msg, sizeof(msg));
    custos_model_t *m = NULL;
    if (rc == 0 && !(m = calloc(1, sizeof(*m))))
        rc = CUSTOS_ENOMEM, snprintf(msg, sizeof(msg), "out of memory");
    if (rc < 0) {
        free(m);
        munmap(base, (size_t)st.st_size);
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, msg);
        return rc;
    }
    m->base = base;
    m->size = (size_t)st.st_size;
    m->mapped = 1;
    m->h = base;
    m->w = (const int8_t *)((const char *)base + sizeof(custos_model_header_t));
    *out = m;
    return 0;
}

int custos_model_from_buffer(const void *buf, size_t len, custos_model_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = validate(buf, len, err, errlen);
    if (rc < 0)
        return rc;
    custos_model_t *m = calloc(1, sizeof(*m));
    void *copy = malloc(len);
    if (!m || !copy) {
        free(m);
        free(copy);
        return fail(err, errlen, CUSTOS_ENOMEM, "out of memory");
    }
    memcpy(copy, buf, len);
    m->base = copy;
    m->size = len;
    m->h = copy;
    m->w = (const int8_t *)((const char *)copy + sizeof(custos_model_header_t));
    *out = m;
    return 0;
}

void custos_model_free(custos_model_t *m)
{
    if (!m)
        return;
    if (m->mapped)
        munmap(m->base, m->size);
    else
        free(m->base);
    free(m);
}

int custos_model_serialize(const custos_model_header_t *h, const int8_t *w, void **out, size_t *outlen)
{
    *out = NULL;
    if (h->hash_bits < 16 || h->hash_bits > 22 || h->n_heads < 1 || h->n_heads > CUSTOS_MODEL_MAX_HEADS ||
        h->min_feats > CUSTOS_MODEL_MAX_MIN_FEATS)
        return CUSTOS_EINVAL;
    custos_model_header_t c = *h;
    memcpy(c.magic, CUSTOS_MODEL_MAGIC, 8);
    /* v1 when there is no floor, so models trained without one stay byte-identical and readable by older binaries */
    c.version = c.min_feats ? CUSTOS_MODEL_VERSION : CUSTOS_MODEL_MIN_VERSION;
    c.header_size = sizeof(c);
    c.kind = CUSTOS_MODEL_KIND_HASHED_LINEAR;
    c.weights_offset = sizeof(c);
    c.weights_size = ((uint64_t)1 << c.hash_bits) * c.n_heads;
    c.checksum = model_crc(&c, w, (size_t)c.weights_size);
    size_t len = sizeof(c) + (size_t)c.weights_size;
    char *buf = malloc(len);
    if (!buf)
        return CUSTOS_ENOMEM;
    memcpy(buf, &c, sizeof(c));
    memcpy(buf + sizeof(c), w, (size_t)c.weights_size);
    *out = buf;
    *outlen = len;
    return 0;
}

int custos_model_write(const char *path, const custos_model_header_t *h, const int8_t *w)
{
    void *buf = NULL;
    size_t len = 0;
    char tmp[4096];
    int rc = custos_model_serialize(h, w, &buf, &len);
    if (rc < 0)
        return rc;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
        rc = CUSTOS_EINVAL;
        goto fail;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = CUSTOS_EIO;
        goto fail;
    }
    int bad = fwrite(buf, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        rc = CUSTOS_EIO;
        goto fail;
    }
fail:
    free(buf);
    return rc;
}

int custos_model_check_heads(const custos_model_t *m, const char *const *names, int n)
{
    if (!m || m->h->n_heads != (uint32_t)n)
        return CUSTOS_EINVAL;
    for (int c = 0; c < n; c++)
        if (strcmp(m->h->heads[c].name, names[c]) != 0)
            return CUSTOS_EINVAL;
    return 0;
}
