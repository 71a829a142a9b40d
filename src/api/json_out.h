/* SPDX-License-Identifier: Apache-2.0
 * JSON writers shared by the API handlers that build their answers by hand (admin, reviews, content safety). Each
 * appends to b and returns 0 or the buffer's error (CUSTOS_ENOMEM, CUSTOS_ETOOBIG past its cap), for chains of the
 * form rc = rc ? rc : ...; not thread-safe beyond b. */
#ifndef CUSTOS_API_JSON_OUT_H
#define CUSTOS_API_JSON_OUT_H

#include "util/buf.h"
#include "util/json.h"

#include <string.h>

/* s (not NULL) as a JSON string. */
static inline int custos_api_put_str(custos_buf_t *b, const char *s)
{
    return custos_json_append_string(b, s, strlen(s));
}

/* A member: lead as it is (such as "{\"id\":" or ",\"name\":"), then s (not NULL) as a JSON string. */
static inline int custos_api_put_member(custos_buf_t *b, const char *lead, const char *s)
{
    int rc = custos_buf_append_str(b, lead);
    return rc ? rc : custos_api_put_str(b, s);
}

#endif
