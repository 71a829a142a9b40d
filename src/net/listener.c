/* SPDX-License-Identifier: Apache-2.0
 * Strict listen-address parsing, listening sockets (TCP with SO_REUSEPORT, unix with stale-file
 * cleanup) and private/loopback address classification. */
#include "net/listener.h"
#include "util/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ADDR_MAX_INPUT 256

/* Decimal port 0..65535, whole string, no sign, no leading zeros. */
static int parse_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return CUSTOS_EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CUSTOS_EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return CUSTOS_EINVAL;
    *out = (uint16_t)v;
    return 0;
}

static bool v4_is_loopback(const unsigned char *b)
{
    return b[0] == 127;
}

static bool v4_is_private(const unsigned char *b)
{
    return b[0] == 10 || b[0] == 127 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
           (b[0] == 169 && b[1] == 254);
}

static bool v6_is_v4mapped(const unsigned char *b)
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(b, prefix, sizeof(prefix)) == 0;
}

static bool v6_is_loopback(const unsigned char *b)
{
    static const unsigned char one[16] = {[15] = 1};
    return memcmp(b, one, sizeof(one)) == 0 || (v6_is_v4mapped(b) && v4_is_loopback(b + 12));
}

static int parse_unix(const char *path, custos_addr_t *out)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(sun->sun_path) || n + 5 >= sizeof(out->text))
        return CUSTOS_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
            return CUSTOS_EINVAL;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->family = AF_UNIX;
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    out->is_loopback = true;
    snprintf(out->text, sizeof(out->text), "unix:%s", path);
    return 0;
}

int custos_addr_parse(const char *s, custos_addr_t *out)
{
    custos_addr_t a;
    memset(&a, 0, sizeof(a));
    if (!s || !out || strnlen(s, ADDR_MAX_INPUT + 1) > ADDR_MAX_INPUT)
        return CUSTOS_EINVAL;

    if (strncmp(s, "unix:", 5) == 0) {
        int rc = parse_unix(s + 5, &a);
        if (rc < 0)
            return rc;
        *out = a;
        return 0;
    }

    char host[ADDR_MAX_INPUT + 1];
    const char *port_s;
    bool v6 = false;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return CUSTOS_EINVAL;
        size_t hl = (size_t)(end - s - 1);
        memcpy(host, s + 1, hl);
        host[hl] = 0;
        port_s = end + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || strchr(s, ':') != colon) /* exactly one colon: bare IPv6 must be bracketed */
            return CUSTOS_EINVAL;
        size_t hl = (size_t)(colon - s);
        memcpy(host, s, hl);
        host[hl] = 0;
        port_s = colon + 1;
    }
    uint16_t port;
    if (host[0] == 0 || parse_port(port_s, &port) < 0)
        return CUSTOS_EINVAL;

    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return CUSTOS_EINVAL;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        a.family = AF_INET6;
        a.len = sizeof(*sin6);
        a.is_loopback = v6_is_loopback(sin6->sin6_addr.s6_addr);
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf));
        snprintf(a.text, sizeof(a.text), "[%s]:%u", buf, (unsigned)port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
        if (strcmp(host, "localhost") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) /* strict dotted quad, no leading zeros */
            return CUSTOS_EINVAL;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        a.family = AF_INET;
        a.len = sizeof(*sin);
        a.is_loopback = v4_is_loopback((const unsigned char *)&sin->sin_addr);
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf));
        snprintf(a.text, sizeof(a.text), "%s:%u", buf, (unsigned)port);
    }
    *out = a;
    return 0;
}

/* Removes a leftover unix socket file at path. Fails with EADDRINUSE if something still accepts on it,
 * and refuses (ENOTSOCK) to remove anything that is not a socket. */
static int unix_remove_stale(const struct sockaddr_un *sun, socklen_t len)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) < 0)
        return errno == ENOENT ? 0 : CUSTOS_EIO;
    if (!S_ISSOCK(st.st_mode)) {
        errno = ENOTSOCK;
        return CUSTOS_EIO;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return CUSTOS_EIO;
    int r = connect(probe, (const struct sockaddr *)sun, len);
    int e = errno;
    close(probe);
    if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
        errno = EADDRINUSE;
        return CUSTOS_EIO;
    }
    if (unlink(sun->sun_path) < 0 && errno != ENOENT)
        return CUSTOS_EIO;
    return 0;
}

int custos_listener_open(const custos_addr_t *a, bool reuseport, int backlog, int *fd_out)
{
    int fd = -1, saved;
    const int one = 1;
    *fd_out = -1;
    if (!a || (a->family != AF_INET && a->family != AF_INET6 && a->family != AF_UNIX)) {
        errno = EINVAL;
        return CUSTOS_EINVAL;
    }
    if (backlog <= 0)
        backlog = CUSTOS_LISTENER_DEFAULT_BACKLOG;

    if (a->family == AF_UNIX && unix_remove_stale((const struct sockaddr_un *)&a->ss, a->len) < 0)
        return CUSTOS_EIO;
    fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (a->family != AF_UNIX) {
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
            goto fail;
        if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
            goto fail;
        if (a->family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
            goto fail;
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        goto fail;
    /* Nobody can connect before listen(), so tightening the mode here leaves no window. */
    if (a->family == AF_UNIX && chmod(((const struct sockaddr_un *)&a->ss)->sun_path, 0660) < 0)
        goto fail;
    if (listen(fd, backlog) < 0)
        goto fail;
    *fd_out = fd;
    return 0;

fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
    return CUSTOS_EIO;
}

int custos_listener_port(int fd)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return CUSTOS_EIO;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return CUSTOS_EINVAL;
}

bool custos_addr_is_private(const struct sockaddr *sa)
{
    if (!sa)
        return false;
    if (sa->sa_family == AF_UNIX)
        return true;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        return v4_is_private((const unsigned char *)&sin.sin_addr);
    }
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof(sin6));
        const unsigned char *b = sin6.sin6_addr.s6_addr;
        if (v6_is_v4mapped(b))
            return v4_is_private(b + 12);
        return v6_is_loopback(b) || (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
    }
    return false;
}
