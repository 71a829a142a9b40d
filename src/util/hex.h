/* SPDX-License-Identifier: Apache-2.0
 * Hexadecimal digits. Pure; thread-safe. */
#ifndef CUSTOS_UTIL_HEX_H
#define CUSTOS_UTIL_HEX_H

/* Value of one hexadecimal digit (either case), or -1. */
static inline int custos_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
