/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for the request record encoder (audit/record.h custos_audit_record_encode), which writes through
 * a cursor into room reserved once per record: any bytes fill the record (every string field cut at its size, any
 * bytes inside, including quotes, control characters and invalid UTF-8) and the rest is the resource id. The output
 * must be one valid JSON object appended after what the buffer held, and a buffer with a small cap must refuse it
 * without changing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/record.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_audit_record: check failed: %s (line %d)\n", #cond, __LINE__);                       \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define TERMINATE(field) (r.field[sizeof(r.field) - 1] = 0)
/* a bool holding another byte than 0 or 1 is undefined behaviour: read it as a byte */
#define FIXBOOL(field) (r.field = (*(const uint8_t *)&r.field & 1) != 0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    custos_audit_record_t r;
    size_t n = size < sizeof(r) ? size : sizeof(r);
    custos_audit_record_init(&r);
    memcpy(&r, data, n);
    TERMINATE(request_id);
    TERMINATE(api_version);
    TERMINATE(principal_id);
    TERMINATE(auth_type);
    TERMINATE(deployment);
    TERMINATE(model);
    TERMINATE(backend);
    TERMINATE(region);
    TERMINATE(data_zone);
    TERMINATE(use_case);
    TERMINATE(tier);
    /* enums and flags as the gateway sets them (the encoder's contract: valid values) */
    r.op = (custos_audit_op_t)((unsigned)r.op % (CUSTOS_AUDIT_OP_CS_BLOCKLISTS + 1));
    r.api = (custos_audit_api_t)((unsigned)r.api % (CUSTOS_AUDIT_API_CONTENT_SAFETY + 1));
    r.quota = (custos_audit_quota_t)((unsigned)r.quota % (CUSTOS_AUDIT_QUOTA_UNAVAILABLE + 1));
    static const int families[4] = {0, 2 /* AF_INET */, 10 /* AF_INET6 */, 1 /* AF_UNIX */};
    r.caller_family = families[(unsigned)r.caller_family % 4];
    FIXBOOL(stream);
    FIXBOOL(safety_screened);
    FIXBOOL(prompt_filtered);
    FIXBOOL(completion_filtered);
    FIXBOOL(jailbreak_detected);
    FIXBOOL(indirect_attack_detected);
    FIXBOOL(filter_error);
    FIXBOOL(guard_asked);
    FIXBOOL(guard_error);
    FIXBOOL(guard_disagreed);
    FIXBOOL(quota_tokens);

    char *rid = NULL;
    if (size > n) {
        rid = malloc(size - n + 1);
        CHECK(rid != NULL);
        memcpy(rid, data + n, size - n);
        rid[size - n] = 0;
    }

    custos_buf_t b;
    custos_buf_init(&b, 0);
    CHECK(custos_buf_append_lit(&b, "[1,") == 0);
    int rc = custos_audit_record_encode(&r, rid, &b);
    CHECK(rc == 0);
    CHECK(memcmp(b.data, "[1,", 3) == 0);
    CHECK(custos_buf_append_lit(&b, "]") == 0);
    size_t errpos = 0;
    const char *errmsg = NULL;
    if (custos_json_validate(b.data, b.len, 8, &errpos, &errmsg) != 0) {
        fprintf(stderr, "fuzz_audit_record: invalid JSON at %zu: %s\n", errpos, errmsg ? errmsg : "?");
        abort();
    }
    custos_buf_dispose(&b);

    custos_buf_init(&b, 256);
    CHECK(custos_buf_append_lit(&b, "kept") == 0);
    CHECK(custos_audit_record_encode(&r, rid, &b) == CUSTOS_ETOOBIG);
    CHECK(strcmp(custos_buf_peek(&b), "kept") == 0);
    custos_buf_dispose(&b);
    free(rid);
    return 0;
}
