/* SPDX-License-Identifier: Apache-2.0
 * Listen addresses ("127.0.0.1:8443", "[::1]:8443", "localhost:8443", "unix:/path") and the
 * listening sockets made from them, plus private/loopback address classification. */
#ifndef CUSTOS_NET_LISTENER_H
#define CUSTOS_NET_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>

#define CUSTOS_LISTENER_DEFAULT_BACKLOG 511

typedef struct custos_addr {
    int family;                 /* AF_INET, AF_INET6 or AF_UNIX */
    struct sockaddr_storage ss; /* ready for bind() */
    socklen_t len;              /* length of the address in ss */
    char text[128];             /* canonical form: "127.0.0.1:8443", "[::1]:8443", "unix:/path" */
    bool is_loopback;           /* 127/8, ::1 (or v4-mapped 127/8); unix sockets count as local: true */
} custos_addr_t;

/* Parses a listen address. Accepted forms: IPv4 literal with port, bracketed IPv6 literal with port
 * (no zone id), "localhost:<port>" (always 127.0.0.1, no resolver), and "unix:<path>" (path shorter than
 * sun_path). Ports are decimal 0..65535 without sign or leading zeros (0 = ephemeral, for tests).
 * Anything else, including host names and trailing garbage, is CUSTOS_EINVAL. Thread-safe. */
int custos_addr_parse(const char *s, custos_addr_t *out);

/* Opens a listening socket for a: non-blocking, close-on-exec, SO_REUSEADDR, SO_REUSEPORT when reuseport
 * (TCP only), IPV6_V6ONLY for IPv6. For unix sockets a leftover socket file at the path is removed first
 * (only if it is a socket and nobody accepts on it; a live one is EADDRINUSE), and the new file gets
 * mode 0660. backlog <= 0 means CUSTOS_LISTENER_DEFAULT_BACKLOG. Returns 0 and the fd in *fd_out (owned by
 * the caller), or CUSTOS_EIO with errno set by the failing call (CUSTOS_EINVAL for a bad a). */
int custos_listener_open(const custos_addr_t *a, bool reuseport, int backlog, int *fd_out);

/* Port a TCP socket is bound to (useful after binding port 0), or a negative CUSTOS_E* code. */
int custos_listener_port(int fd);

/* True for addresses that are not on the public internet: 10/8, 172.16/12, 192.168/16, 127/8, 169.254/16,
 * ::1, fc00::/7, fe80::/10, the IPv4-mapped (::ffff:a.b.c.d) forms of the IPv4 ranges, and AF_UNIX peers.
 * False for NULL and for other families. Thread-safe. */
bool custos_addr_is_private(const struct sockaddr *sa);

#endif
