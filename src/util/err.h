/* SPDX-License-Identifier: Apache-2.0
 * Error codes shared by every module: functions return 0 on success or one of these (negative). */
#ifndef CUSTOS_UTIL_ERR_H
#define CUSTOS_UTIL_ERR_H

enum {
    CUSTOS_OK = 0,
    CUSTOS_ENOMEM = -1,    /* allocation failed */
    CUSTOS_EINVAL = -2,    /* bad argument or malformed input */
    CUSTOS_ETOOBIG = -3,   /* a capped buffer or limit was exceeded */
    CUSTOS_EIO = -4,       /* system call failed (see errno at the failing site) */
    CUSTOS_EAGAIN = -5,    /* would block; try again when the fd is ready */
    CUSTOS_EPROTO = -6,    /* protocol violation by the peer */
    CUSTOS_ETIMEDOUT = -7, /* a deadline passed */
    CUSTOS_ENOTFOUND = -8, /* no such object */
    CUSTOS_ECLOSED = -9,   /* the peer closed the connection */
    CUSTOS_ETLS = -10,     /* TLS handshake or record error */
    CUSTOS_EDEPTH = -11,   /* nesting limit exceeded */
    CUSTOS_EUNAVAIL = -12, /* no backend or resource available */
    CUSTOS_EDECRYPT = -13, /* a sealed value failed its integrity check (tampered, or wrong key) */
    CUSTOS_EKEYGONE = -14, /* the key a sealed value needs was destroyed (crypto-shredded) */
};

/* Returns a static, human-readable description of rc. Never NULL. Thread-safe. */
const char *custos_strerror(int rc);

#endif
