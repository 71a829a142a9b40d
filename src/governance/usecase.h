/* SPDX-License-Identifier: Apache-2.0
 * The use-case registry at request time (docs/reviews.md): which use case a request runs under (header, or a
 * default bound to the caller), and whether it may run (known, deployment allowed, validated and not expired).
 * The registry itself is config (use_cases:, validated at load, including the minimum policy); these functions are
 * pure lookups over the immutable snapshot: thread-safe, no allocation. */
#ifndef CUSTOS_GOVERNANCE_USECASE_H
#define CUSTOS_GOVERNANCE_USECASE_H

#include "config/config.h"
#include "util/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CUSTOS_USECASE_HEADER "x-custos-use-case"

/* Outcome of custos_usecase_resolve. */
typedef enum {
    CUSTOS_UC_NONE = 0,           /* no use case: the request runs ungoverned */
    CUSTOS_UC_OK,                 /* *out is set */
    CUSTOS_UC_REQUIRED,           /* 403 use_case_required */
    CUSTOS_UC_NOT_FOUND,          /* 403 use_case_not_found */
    CUSTOS_UC_DEPLOYMENT_DENIED,  /* 403 use_case_deployment_not_allowed */
    CUSTOS_UC_NOT_VALIDATED,      /* 403 use_case_not_validated */
    CUSTOS_UC_VALIDATION_EXPIRED, /* 403 use_case_validation_expired */
} custos_uc_result_t;

/* Who is calling, for bindings. Every field may be NULL. */
typedef struct custos_uc_caller {
    const char *key_name; /* API key name (config) or id (store) */
    const char *principal;
    const char *app_id;
} custos_uc_caller_t;

/* Use case by id, or NULL. O(n). */
const custos_use_case_config_t *custos_usecase_find(const custos_config_t *c, const char *id, size_t id_len);

/* The use case bound to the caller (api key, then principal, then app id), or NULL. */
const custos_use_case_config_t *custos_usecase_bound(const custos_config_t *c, const custos_uc_caller_t *caller);

/* Resolves the request's use case: header value hdr[0..hdr_len) (NULL when absent), else the caller's binding; then
 * checks deployment and validation at now_s. *out is set for CUSTOS_UC_OK and for the refusals after lookup. */
custos_uc_result_t custos_usecase_resolve(const custos_config_t *c, const char *hdr, size_t hdr_len,
                                          const custos_uc_caller_t *caller, const char *deployment, int64_t now_s,
                                          const custos_use_case_config_t **out);

/* The 403 error code and message for a refusal (static strings); NULL for CUSTOS_UC_NONE / CUSTOS_UC_OK. */
const char *custos_usecase_error_code(custos_uc_result_t r);
const char *custos_usecase_error_message(custos_uc_result_t r);

/* Appends the use case as the admin API's JSON object (docs/reviews.md); validation.current says whether it is
 * validated and unexpired at now_s. Returns 0, CUSTOS_ETOOBIG or CUSTOS_ENOMEM. */
int custos_usecase_write_json(custos_buf_t *b, const custos_use_case_config_t *u, int64_t now_s);

/* "high" | "elevated" | "standard". */
const char *custos_usecase_tier_name(custos_usecase_tier_t t);

#endif
