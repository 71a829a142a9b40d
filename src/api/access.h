/* SPDX-License-Identifier: Apache-2.0
 * The perimeter stage of the gateway, run before routing: network ACL (403 in Azure's shape, before
 * authentication) and the mutual-TLS client certificate → workload principal mapping. */
#ifndef CUSTOS_API_ACCESS_H
#define CUSTOS_API_ACCESS_H

#include "api/gateway.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "net/http_server.h"

#include <stdbool.h>

/* Registers custos_network_denied_total, custos_network_forwarded_invalid_total and
 * custos_mtls_requests_total{principal} in reg. Call once, before workers start. Returns 0 or a negative code. */
int custos_access_metrics_init(custos_metrics_t *reg, custos_gateway_metrics_t *m);

/* Runs first for every request on worker w (its thread). Sets req->client_addr (TCP peer, or the client
 * named by a trusted proxy) and, when the network ACL refuses that address, answers 403
 * {"error":{"code":"403","message":"Access denied due to Virtual Network/Firewall rules."}} with
 * policy-id: ThrowExceptionDueToTrafficDenied and returns true: the caller must not touch req again.
 * Without a network: section and without a client certificate it is one branch. Allocation-free. */
bool custos_access_gate(custos_worker_t *w, custos_http_req_t *req);

/* Mutual TLS: the identity.client_certificates entry (principal, roles, scope) matching the request's
 * verified client certificate, first match in config order; NULL when the connection has no client
 * certificate or no entry matches. Borrowed from cfg (valid while the caller holds cfg). Thread-safe. */
const custos_client_cert_config_t *custos_access_cert_principal(const custos_config_t *cfg,
                                                                const custos_http_req_t *req);

#endif
