/* SPDX-License-Identifier: Apache-2.0
 * Non-blocking socket reads and writes, plain or TLS (OpenSSL directly on the fd, no BIO pairs), with
 * one mapping of errors for the server and the upstream client. Thread-safety: as the fd and SSL. */
#ifndef CUSTOS_NET_SOCKIO_H
#define CUSTOS_NET_SOCKIO_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Reads up to cap bytes from fd, through ssl when it is not NULL. Returns >0 bytes, 0 on EOF (for TLS:
 * close_notify, or an EOF without it, which sets *unclean), CUSTOS_EAGAIN (*want_write is set when TLS
 * needs the socket writable first), CUSTOS_EIO (reset or other socket error) or CUSTOS_ETLS. */
ssize_t custos_sock_read(int fd, SSL *ssl, void *buf, size_t cap, bool *want_write, bool *unclean);

/* Writes up to len bytes (MSG_NOSIGNAL for plain sockets; the process must ignore SIGPIPE for TLS).
 * Returns >0 bytes written, CUSTOS_EAGAIN (*want_read is set when TLS needs the socket readable first),
 * CUSTOS_EIO or CUSTOS_ETLS. */
ssize_t custos_sock_write(int fd, SSL *ssl, const void *buf, size_t len, bool *want_read);

#endif
