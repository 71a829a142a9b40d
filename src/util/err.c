/* SPDX-License-Identifier: Apache-2.0 */
#include "util/err.h"

const char *custos_strerror(int rc)
{
    switch (rc) {
    case CUSTOS_OK:
        return "ok";
    case CUSTOS_ENOMEM:
        return "out of memory";
    case CUSTOS_EINVAL:
        return "invalid argument or input";
    case CUSTOS_ETOOBIG:
        return "size limit exceeded";
    case CUSTOS_EIO:
        return "i/o error";
    case CUSTOS_EAGAIN:
        return "would block";
    case CUSTOS_EPROTO:
        return "protocol error";
    case CUSTOS_ETIMEDOUT:
        return "timed out";
    case CUSTOS_ENOTFOUND:
        return "not found";
    case CUSTOS_ECLOSED:
        return "connection closed";
    case CUSTOS_ETLS:
        return "tls error";
    case CUSTOS_EDEPTH:
        return "nesting too deep";
    case CUSTOS_EUNAVAIL:
        return "unavailable";
    case CUSTOS_EDECRYPT:
        return "decryption failed (integrity check)";
    case CUSTOS_EKEYGONE:
        return "key destroyed";
    default:
        return "unknown error";
    }
}
