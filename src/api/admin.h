/* SPDX-License-Identifier: Apache-2.0
 * Admin API v1 (/admin/v1/...): API keys (create, list, revoke) and role assignments (create, list,
 * delete), JSON in and out, guarded by RBAC (admin at "/"); every change is recorded with
 * custos_governance_event before it is committed. Also the `custos keys` command line. */
#ifndef CUSTOS_API_ADMIN_H
#define CUSTOS_API_ADMIN_H

#include "api/gateway.h"
#include "net/http_server.h"

#include <stdbool.h>
#include <stddef.h>

#define CUSTOS_ADMIN_MAX_BODY 16384 /* admin request bodies larger than this get 413 */

/* True when path (raw, without query) is under /admin/. */
bool custos_admin_path(const char *path, size_t len);

/* Handles one /admin/ request on worker w (its thread): authenticate, authorize (admin), route, act,
 * answer. Store writes are synchronous SQLite calls on the worker (admin traffic is rare); after a
 * change the identity snapshot is rebuilt and handed to every worker. */
void custos_admin_handle(custos_worker_t *w, custos_http_req_t *req);

/* `custos keys create|list|revoke ...` (argv[0] == "keys"). Prints to stdout/stderr; returns the exit
 * status (0 ok, 1 failure, 2 usage). */
int custos_keys_cli(int argc, char **argv);

#endif
