/* SPDX-License-Identifier: Apache-2.0
 * Perimeter stage: network ACL (net/acl.h over the config's compiled rules) and mutual-TLS principal
 * mapping (net/peercert.h against identity.client_certificates). Runs on the worker thread. */
#include "api/access.h"
#include "net/acl.h"
#include "net/peercert.h"
#include "util/cidr.h"
#include "util/log.h"

int custos_access_metrics_init(custos_metrics_t *reg, custos_gateway_metrics_t *m)
{
    static const char *const l_p[] = {"principal"};
    int rc = custos_metrics_counter(reg, "custos_network_denied_total",
                                    "Requests refused by the network ACL (403 before authentication).", NULL, 0,
                                    &m->network_denied);
    rc = rc ? rc
            : custos_metrics_counter(reg, "custos_network_forwarded_invalid_total",
                                     "Unusable X-Forwarded-For / Forwarded headers from trusted proxies (the proxy's "
                                     "own address was used).",
                                     NULL, 0, &m->network_forwarded_invalid);
    rc = rc ? rc
            : custos_metrics_counter(reg, "custos_mtls_requests_total",
                                     "Requests over mutual TLS by mapped principal (\"_unmapped\" if none).", l_p, 1,
                                     &m->mtls_requests);
    return rc;
}

static void count(custos_worker_t *w, custos_metric_family_t *f, const char *label)
{
    const char *lv[1] = {label};
    custos_metric_series_t *s = custos_metrics_series(f, label ? lv : NULL);
    if (s)
        custos_metrics_inc(s, w->idx, 1);
}

const custos_client_cert_config_t *custos_access_cert_principal(const custos_config_t *cfg,
                                                                const custos_http_req_t *req)
{
    const custos_peer_cert_t *pc = req->client_cert;
    if (!pc)
        return NULL;
    for (size_t i = 0; i < cfg->identity.n_client_certificates; i++) {
        const custos_client_cert_config_t *cc = &cfg->identity.client_certificates[i];
        if (custos_peercert_matches(pc, (custos_peercert_match_t)cc->match, cc->value))
            return cc;
    }
    return NULL;
}

bool custos_access_gate(custos_worker_t *w, custos_http_req_t *req)
{
    const custos_config_t *cfg = w->cfg;
    if (!cfg->network.configured && !req->client_cert)
        return false;
    if (req->client_cert) {
        const custos_client_cert_config_t *cc = custos_access_cert_principal(cfg, req);
        count(w, w->gw->m.mtls_requests, cc ? cc->principal : "_unmapped");
    }
    if (!cfg->network.configured)
        return false;
    const custos_acl_t *acl = cfg->network.acl;
    custos_ip_t client;
    custos_acl_source_t src =
        custos_acl_client(&acl->trusted_proxies, &req->peer, req->headers, req->nheaders, &client);
    if (src == CUSTOS_ACL_FROM_LOCAL)
        return false; /* unix socket: local by construction */
    if (src == CUSTOS_ACL_FROM_FORWARDED)
        custos_ip_to_sockaddr(&client, &req->client_addr);
    else if (src == CUSTOS_ACL_FROM_MALFORMED)
        count(w, w->gw->m.network_forwarded_invalid, NULL);
    if (custos_acl_admits(acl, &client))
        return false;
    count(w, w->gw->m.network_denied, NULL);
    CUSTOS_DEBUG("network: request %s refused by the network ACL", req->request_id);
    static const char body[] = CUSTOS_ACL_DENY_BODY;
    custos_http_header_t h[2] = {{"content-type", 12, "application/json", 16},
                                 {"policy-id", 9, CUSTOS_ACL_DENY_POLICY_ID, sizeof(CUSTOS_ACL_DENY_POLICY_ID) - 1}};
    custos_http_respond(req, 403, h, 2, body, sizeof(body) - 1);
    return true;
}
