/* SPDX-License-Identifier: Apache-2.0 */
#include "net/sockio.h"
#include "util/err.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <sys/socket.h>

static int clamp_int(size_t n)
{
    return n > INT_MAX ? INT_MAX : (int)n;
}

ssize_t custos_sock_read(int fd, SSL *ssl, void *buf, size_t cap, bool *want_write, bool *unclean)
{
    *want_write = false;
    *unclean = false;
    if (!ssl) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return n;
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? CUSTOS_EAGAIN : CUSTOS_EIO;
    }
    ERR_clear_error();
    int n = SSL_read(ssl, buf, clamp_int(cap));
    if (n > 0)
        return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ:
        return CUSTOS_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want_write = true;
        return CUSTOS_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0) {
            *unclean = true;
            return 0;
        }
        return CUSTOS_EIO;
    default:
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            *unclean = true;
            ERR_clear_error();
            return 0;
        }
        ERR_clear_error();
        return CUSTOS_ETLS;
    }
}

ssize_t custos_sock_write(int fd, SSL *ssl, const void *buf, size_t len, bool *want_read)
{
    *want_read = false;
    if (!ssl) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? CUSTOS_EAGAIN : CUSTOS_EIO;
    }
    ERR_clear_error();
    int n = SSL_write(ssl, buf, clamp_int(len));
    if (n > 0)
        return n;
    int e = SSL_get_error(ssl, n);
    if (e == SSL_ERROR_WANT_WRITE)
        return CUSTOS_EAGAIN;
    if (e == SSL_ERROR_WANT_READ) {
        *want_read = true;
        return CUSTOS_EAGAIN;
    }
    ERR_clear_error();
    return e == SSL_ERROR_SYSCALL ? CUSTOS_EIO : CUSTOS_ETLS;
}
