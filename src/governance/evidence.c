/* SPDX-License-Identifier: Apache-2.0
 * The evidence report (evidence.h): controls in force, mapped to frameworks, rendered as JSON, Markdown or HTML.
 * The mappings are the custos team's reading of each framework (docs/evidence.md explains every one); an auditor
 * decides what they are worth. */
#include "governance/evidence.h"

#include "governance/card.h"
#include "safety/evalreport.h"
#include "store/store.h"
#include "util/err.h"
#include "util/time.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_AGE_ATTENTION_DAYS 365 /* a KEK older than this is flagged for rotation (docs/keys.md) */
#define NROLES 5

static const char *const FRAMEWORK_IDS[] = {"hipaa", "soc2", "iso27001", "iso42001", "nist_ai_rmf"};
static const char *const FRAMEWORK_NAMES[] = {
    "HIPAA Security Rule, 45 CFR 164.312 (technical safeguards)",
    "SOC 2 Trust Services Criteria: CC6 (logical and physical access), CC7 (system operations)",
    "ISO/IEC 27001:2022 Annex A",
    "ISO/IEC 42001:2023 Annex A",
    "NIST AI Risk Management Framework 1.0 functions",
};
#define NFRAMEWORKS 5

/* ---------- small helpers ---------- */

static json_object *jstr(const char *s)
{
    return json_object_new_string(s ? s : "");
}

static json_object *jfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_object *jfmt(const char *fmt, ...)
{
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    return json_object_new_string(b);
}

/* A control under construction. */
typedef struct ctl {
    const struct ctl_def *def;
    json_object *o, *facts;
} ctl_t;

/* A control's fixed part, one row of CONTROLS: build adds the facts and ends with ctl_end (exactly once). refs: one
 * string per framework in FRAMEWORK_IDS order, references separated by '|' ("" = none). custos / customer: the
 * responsibility split. */
typedef struct ctl_def {
    const char *id, *title, *area;
    void (*build)(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s);
    const char *refs[NFRAMEWORKS];
    const char *custos, *customer;
} ctl_def_t;

/* Appends the control object to controls: id, title, area, facts (filled by fact()). */
static ctl_t ctl_new(json_object *controls, const ctl_def_t *def)
{
    ctl_t c = {def, json_object_new_object(), json_object_new_array()};
    json_object_object_add(c.o, "id", jstr(def->id));
    json_object_object_add(c.o, "title", jstr(def->title));
    json_object_object_add(c.o, "area", jstr(def->area));
    json_object_object_add(c.o, "facts", c.facts);
    json_object_array_add(controls, c.o);
    return c;
}

static void fact(ctl_t *c, const char *name, json_object *value)
{
    json_object *f = json_object_new_object();
    json_object_object_add(f, "name", jstr(name));
    json_object_object_add(f, "value", value); /* NULL: JSON null (not known / not applicable) */
    json_object_array_add(c->facts, f);
}

/* Completes the control after its facts: status (in_force | partial | attention | not_configured), summary (one
 * line), then the mappings and responsibility of its definition. */
static void ctl_end(ctl_t *c, const char *status, json_object *summary)
{
    json_object_object_add(c->o, "status", jstr(status));
    json_object_object_add(c->o, "summary", summary);
    json_object *m = json_object_new_object();
    for (int i = 0; i < NFRAMEWORKS; i++) {
        json_object *a = json_object_new_array();
        const char *s = c->def->refs[i];
        while (s && *s) {
            const char *e = strchr(s, '|');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            json_object_array_add(a, json_object_new_string_len(s, (int)n));
            s = e ? e + 1 : NULL;
        }
        json_object_object_add(m, FRAMEWORK_IDS[i], a);
    }
    json_object_object_add(c->o, "mappings", m);
    json_object *r = json_object_new_object();
    json_object_object_add(r, "custos", jstr(c->def->custos));
    json_object_object_add(r, "customer", jstr(c->def->customer));
    json_object_object_add(c->o, "responsibility", r);
}

static const char *role_label(int i)
{
    return custos_config_role_name(1u << i);
}

/* ---------- the controls ---------- */

/* Adds one to counts[r] for every role bit r set in roles. */
static void count_roles(int64_t counts[NROLES], unsigned roles)
{
    for (int r = 0; r < NROLES; r++)
        counts[r] += (roles >> r) & 1u;
}

typedef json_object *(*deployment_card_fn)(const custos_config_t *cfg, const custos_deployment_config_t *d);

/* An array of card(cfg, d) for every deployment in config order, each object given "deployment": d's name last. */
static json_object *per_deployment(const custos_config_t *cfg, deployment_card_fn card)
{
    json_object *deps = json_object_new_array();
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const custos_deployment_config_t *d = &cfg->deployments[i];
        json_object *o = card(cfg, d);
        json_object_object_add(o, "deployment", jstr(d->name));
        json_object_array_add(deps, o);
    }
    return deps;
}

static json_object *card_policy(const custos_config_t *cfg, const custos_deployment_config_t *d)
{
    return custos_card_policy(d);
}

static void c_network(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    const custos_network_config_t *n = &cfg->network;
    fact(c, "network section configured", json_object_new_boolean(n->configured));
    fact(c, "public_network_access", jstr(!n->configured || n->public_access ? "enabled" : "disabled"));
    fact(c, "default_action", jstr(n->configured && n->default_deny ? "deny" : "allow"));
    fact(c, "ip_rules", json_object_new_int64((int64_t)n->n_ip_rules));
    fact(c, "trusted_proxies", json_object_new_int64((int64_t)n->n_trusted_proxies));
    if (!n->configured)
        ctl_end(c, "not_configured", jstr("no network section: every client address is admitted"));
    else if (!n->public_access || n->default_deny)
        ctl_end(c, "in_force",
                jfmt("clients outside %zu admitted prefix(es) get 403 before authentication", n->n_ip_rules));
    else
        ctl_end(c, "partial", jstr("network section present, public access enabled with default allow"));
}

static void c_tls(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    size_t tls = 0, plain_loop = 0, plain_exposed = 0, mtls = 0;
    int minv = 0x0304;
    json_object *ls = json_object_new_array();
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const custos_listener_config_t *l = &cfg->listeners[i];
        json_object *e = json_object_new_object();
        json_object_object_add(e, "address", jstr(l->address));
        json_object_object_add(e, "tls", json_object_new_boolean(l->tls != NULL));
        if (l->tls) {
            tls++;
            if (l->tls->min_version < minv)
                minv = l->tls->min_version;
            if (l->tls->client_ca)
                mtls++;
            json_object_object_add(e, "min_version", jstr(l->tls->min_version >= 0x0304 ? "1.3" : "1.2"));
            json_object_object_add(e, "client_certificates", json_object_new_boolean(l->tls->client_ca != NULL));
        } else if (l->loopback) {
            plain_loop++;
        } else {
            plain_exposed++;
        }
        json_object_object_add(e, "loopback", json_object_new_boolean(l->loopback));
        json_object_array_add(ls, e);
    }
    fact(c, "listeners", ls);
    fact(c, "TLS listeners", json_object_new_int64((int64_t)tls));
    fact(c, "lowest TLS version accepted", tls ? jstr(minv >= 0x0304 ? "1.3" : "1.2") : jstr("none"));
    fact(c, "plain HTTP on loopback / unix socket", json_object_new_int64((int64_t)plain_loop));
    fact(c, "plain HTTP on a non-loopback address (insecure: true)", json_object_new_int64((int64_t)plain_exposed));
    fact(c, "listeners requiring client certificates (mTLS)", json_object_new_int64((int64_t)mtls));
    if (plain_exposed)
        ctl_end(c, "attention", jfmt("%zu listener(s) serve plain HTTP on a non-loopback address", plain_exposed));
    else if (tls == cfg->n_listeners)
        ctl_end(c, "in_force", jfmt("every listener is TLS %s or newer", minv >= 0x0304 ? "1.3" : "1.2"));
    else
        ctl_end(c, "partial", jstr("plain HTTP only on loopback or unix sockets (a local proxy terminates TLS)"));
}

static void c_identity(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    const custos_identity_config_t *id = &cfg->identity;
    json_object *methods = json_object_new_array();
    if (!id->disable_local_auth)
        json_object_array_add(methods, jstr("api_key"));
    if (id->n_oidc)
        json_object_array_add(methods, jstr("oidc_token"));
    if (id->n_client_certificates)
        json_object_array_add(methods, jstr("client_certificate"));
    fact(c, "methods accepted", methods);
    fact(c, "API keys in the configuration (stored as SHA-256)", json_object_new_int64((int64_t)id->n_api_keys));
    fact(c, "local authentication (API keys) disabled", json_object_new_boolean(id->disable_local_auth));
    json_object *iss = json_object_new_array();
    for (size_t i = 0; i < id->n_oidc; i++)
        json_object_array_add(iss, jstr(id->oidc[i].issuer));
    fact(c, "OIDC issuers", iss);
    fact(c, "client certificate mappings", json_object_new_int64((int64_t)id->n_client_certificates));
    if (f && f->available) {
        fact(c, "API keys in the store (active)", json_object_new_int64(f->keys_active));
        fact(c, "stored API keys without expiry", json_object_new_int64(f->keys_without_expiry));
        if (f->keys_oldest_created_s) {
            char t[32];
            custos_fmt_utc(f->keys_oldest_created_s, t, sizeof(t));
            fact(c, "oldest active stored API key created", jstr(t));
        }
    }
    ctl_end(c, "in_force",
            jfmt("every inference, review and admin request is authenticated (%zu method(s))",
                 json_object_array_length(methods)));
}

static void c_rbac(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    const custos_identity_config_t *id = &cfg->identity;
    int64_t cfgroles[NROLES] = {0};
    for (size_t i = 0; i < id->n_api_keys; i++)
        count_roles(cfgroles, id->api_keys[i].roles);
    for (size_t i = 0; i < id->n_client_certificates; i++)
        count_roles(cfgroles, id->client_certificates[i].roles);
    for (size_t i = 0; i < id->n_role_assignments; i++)
        count_roles(cfgroles, id->role_assignments[i].role);
    json_object *sum = json_object_new_array();
    for (int r = 0; r < NROLES; r++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "role", jstr(role_label(r)));
        json_object_object_add(e, "config", json_object_new_int64(cfgroles[r]));
        json_object_object_add(e, "store",
                               f && f->available ? json_object_new_int64(f->store_roles[r] + f->key_roles[r]) : NULL);
        json_object_array_add(sum, e);
    }
    fact(c, "holders per role (keys, certificates, assignments)", sum);
    fact(c, "role assignments in the configuration", json_object_new_int64((int64_t)id->n_role_assignments));
    fact(c, "token role mappings (role_map)", json_object_new_int64((int64_t)id->n_role_map));
    json_object *ca = json_object_new_array();
    for (size_t i = 0; i < id->n_ca_policies; i++)
        json_object_array_add(ca, jstr(id->ca_policies[i].name));
    fact(c, "conditional access policies", ca);
    ctl_end(c, "in_force",
            jfmt("roles at / or /deployments/{name}; %zu conditional access polic%s", id->n_ca_policies,
                 id->n_ca_policies == 1 ? "y" : "ies"));
}

static void c_keys(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    const custos_storage_config_t *s = &cfg->storage;
    fact(c, "store", jstr(s->driver == CUSTOS_STORAGE_POSTGRES ? "postgres" : "sqlite"));
    fact(c, "key provider", jstr(s->kek_provider == CUSTOS_KEK_PKCS11 ? "pkcs11 (HSM)" : "local (key files)"));
    fact(c, "sealing", jstr("AES-256-GCM envelope per record, data keys wrapped by the key-encryption key"));
    const char *status = "in_force";
    char summary[256];
    snprintf(summary, sizeof(summary), "sealed records under a %s key-encryption key",
             s->kek_provider == CUSTOS_KEK_PKCS11 ? "PKCS#11 (HSM)" : "local");
    if (f && f->available && f->kek_known) {
        int64_t age_d = (now_s - f->kek_created_s) / 86400;
        fact(c, "current key version", json_object_new_int64(f->kek_current));
        fact(c, "current key age (days)", json_object_new_int64(age_d < 0 ? 0 : age_d));
        fact(c, "key versions active / destroyed",
             jfmt("%lld / %lld", (long long)f->kek_active, (long long)f->kek_destroyed));
        if (age_d > KEY_AGE_ATTENTION_DAYS) {
            status = "attention";
            snprintf(summary, sizeof(summary),
                     "the current key-encryption key is %lld days old (rotate: custos kek "
                     "rotate)",
                     (long long)age_d);
        }
    } else {
        fact(c, "current key version", jstr(f && f->available ? "none yet (created at first start)" : "not read"));
    }
    ctl_end(c, status, jstr(summary));
}

static void c_retention(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    const custos_retention_config_t *r = &cfg->retention;
    fact(c, "prompt and completion content", jstr(r->content_none ? "never stored" : "stored sealed"));
    fact(c, "retention (days)", r->content_none ? NULL : json_object_new_int64(r->content_days));
    fact(c, "request records", jstr("metadata only (no prompt or completion text)"));
    ctl_end(c, "in_force",
            r->content_none ? jstr("no prompt or completion content is kept")
                            : jfmt("content kept sealed and purged after %lld days", (long long)r->content_days));
}

static void c_residency(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    size_t bounded = 0;
    for (size_t i = 0; i < cfg->n_deployments; i++)
        if (cfg->deployments[i].type != CUSTOS_DEPLOYMENT_GLOBAL || cfg->deployments[i].n_require_regions)
            bounded++;
    fact(c, "deployments", per_deployment(cfg, custos_card_data_handling));
    ctl_end(c, bounded == cfg->n_deployments ? "in_force" : "partial",
            jfmt("%zu of %zu deployment(s) bounded to a region or data zone", bounded, cfg->n_deployments));
}

static void c_policies(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    size_t pii = 0;
    for (size_t i = 0; i < cfg->n_deployments; i++)
        if (cfg->deployments[i].rai->pii[CUSTOS_RAI_PROMPT] != CUSTOS_RAI_PII_OFF)
            pii++;
    fact(c, "policies", per_deployment(cfg, card_policy));
    fact(c, "deployments screening prompts for PII", json_object_new_int64((int64_t)pii));
    ctl_end(c, "in_force",
            jfmt("every prompt and completion of %zu deployment(s) is screened in-process", cfg->n_deployments));
}

static void c_diagnostics(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    const custos_diagnostics_config_t *dg = &cfg->diagnostics;
    json_object *sinks = json_object_new_array();
    for (size_t i = 0; i < dg->n_sinks; i++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "name", jstr(dg->sinks[i].name));
        json_object_object_add(e, "type", jstr(dg->sinks[i].type_name));
        json_object_array_add(sinks, e);
    }
    fact(c, "diagnostics sinks", sinks);
    fact(c, "client IP masked in records", json_object_new_boolean(dg->mask_client_ip));
    fact(c, "governance log (hash-chained, signed checkpoints)", jstr(dg->governance_log));
    fact(c, "records", jstr("metadata only: who, what route and deployment, outcome, filter results; never content"));
    ctl_end(c, dg->n_sinks ? "in_force" : "partial",
            dg->n_sinks
                ? jfmt("request records to %zu sink(s); admin and review acts in the governance log", dg->n_sinks)
                : jstr("no diagnostics sink: only the governance log records activity"));
}

static const char *tier_name(custos_usecase_tier_t t)
{
    return t == CUSTOS_TIER_HIGH ? "high" : t == CUSTOS_TIER_ELEVATED ? "elevated" : "standard";
}

static void c_use_cases(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    json_object *ucs = json_object_new_array();
    size_t problems = 0;
    for (size_t i = 0; i < cfg->n_use_cases; i++) {
        const custos_use_case_config_t *u = &cfg->use_cases[i];
        const char *vs = !u->validation_required && !u->validated ? "not_required"
                         : !u->validated                          ? "not_validated"
                         : u->expires_s && u->expires_s < now_s   ? "expired"
                                                                  : "validated";
        if (strcmp(vs, "not_validated") == 0 || strcmp(vs, "expired") == 0)
            problems++;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "id", jstr(u->id));
        json_object_object_add(e, "tier", jstr(tier_name(u->tier)));
        json_object_object_add(e, "owner", u->owner ? jstr(u->owner) : NULL);
        json_object_object_add(e, "validation", jstr(vs));
        json_object_object_add(e, "validation_expires", u->validation_expires ? jstr(u->validation_expires) : NULL);
        json_object_object_add(e, "evidence", u->evidence ? jstr(u->evidence) : NULL);
        json_object_object_add(e, "regulatory_review", json_object_new_boolean(u->regulatory_review));
        json_object_object_add(e, "review_deadline_s", json_object_new_int64(u->review_deadline_s));
        if (u->tier == CUSTOS_TIER_STANDARD)
            json_object_object_add(e, "qa_sample_rate", json_object_new_double(u->qa_sample_rate));
        json_object *ds = json_object_new_array();
        for (size_t k = 0; k < u->n_deployments; k++)
            json_object_array_add(ds, jstr(u->deployments[k]));
        json_object_object_add(e, "deployments", ds);
        json_object_array_add(ucs, e);
    }
    fact(c, "use cases", ucs);
    fact(c, "use case required on every request", json_object_new_boolean(cfg->governance.require_use_case));
    if (!cfg->n_use_cases)
        ctl_end(c, "not_configured", jstr("no use case registered: requests run ungoverned"));
    else if (problems)
        ctl_end(c, "attention", jfmt("%zu use case(s) need validation (requests under them are refused)", problems));
    else
        ctl_end(
            c, cfg->governance.require_use_case ? "in_force" : "partial",
            jfmt("%zu use case(s)%s", cfg->n_use_cases,
                 cfg->governance.require_use_case ? ", required on every request" : "; requests may run without one"));
}

static void c_review(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    size_t tiers[3] = {0};
    for (size_t i = 0; i < cfg->n_use_cases; i++)
        if ((unsigned)cfg->use_cases[i].tier < 3)
            tiers[cfg->use_cases[i].tier]++;
    fact(c, "use cases by tier (high / elevated / standard)", jfmt("%zu / %zu / %zu", tiers[0], tiers[1], tiers[2]));
    if (f && f->reviews_available) {
        const custos_review_stats_t *s = &f->reviews;
        json_object *st = json_object_new_object();
        for (int k = 0; k < CUSTOS_REVIEW_NSTATUS; k++)
            json_object_object_add(st, custos_review_status_name((custos_review_status_t)k),
                                   json_object_new_int64(s->by_status[k]));
        fact(c, "items by status", st);
        json_object *bt = json_object_new_object();
        static const char *const tn[3] = {"high", "elevated", "standard"};
        for (int t = 0; t < CUSTOS_REVIEW_NTIER && t < 3; t++) {
            json_object *x = json_object_new_object();
            for (int k = 0; k < CUSTOS_REVIEW_NSTATUS; k++)
                json_object_object_add(x, custos_review_status_name((custos_review_status_t)k),
                                       json_object_new_int64(s->by_tier_status[t][k]));
            json_object_object_add(bt, tn[t], x);
        }
        fact(c, "items by tier and status", bt);
        fact(c, "items total", json_object_new_int64(s->total));
        fact(c, "median decision time (s)",
             s->median_decision_s < 0 ? NULL : json_object_new_int64((int64_t)(s->median_decision_s + 0.5)));
        fact(c, "oldest pending item age (s)",
             s->oldest_pending_age_s < 0 ? NULL : json_object_new_int64(s->oldest_pending_age_s));
    } else {
        fact(c, "review statistics", jstr(f && f->available ? "not available" : "store not read"));
    }
    if (tiers[0] + tiers[1] == 0)
        ctl_end(c, "not_configured", jstr("no high or elevated use case: no output is held for review"));
    else
        ctl_end(c, "in_force",
                jfmt("outputs of %zu high-tier use case(s) withheld until approved; %zu elevated marked as drafts",
                     tiers[0], tiers[1]));
}

static void c_transparency(ctl_t *c, const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s)
{
    size_t cards = 0;
    json_object *missing = json_object_new_array();
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const custos_card_config_t *k = &cfg->deployments[i].card;
        if (k->n_intended_uses || k->n_limitations || k->description)
            cards++;
        else
            json_object_array_add(missing, jstr(cfg->deployments[i].name));
    }
    fact(c, "deployments with a card", jfmt("%zu of %zu", cards, cfg->n_deployments));
    fact(c, "deployments without card text", missing);
    char dir[PATH_MAX];
    fact(c, "evaluation directory", jstr(custos_card_eval_dir(cfg, dir, sizeof(dir))));
    json_object *ev = NULL, *names = json_object_new_array();
    if (custos_card_evaluations(cfg, &ev) == 0) {
        for (size_t i = 0; i < json_object_array_length(ev); i++) {
            json_object *e = json_object_array_get_idx(ev, i), *n = NULL, *err = NULL;
            json_object_object_get_ex(e, "name", &n);
            bool bad = json_object_object_get_ex(e, "error", &err);
            json_object_array_add(names, jfmt("%s%s", json_object_get_string(n), bad ? " (unreadable)" : ""));
        }
    }
    json_object_put(ev);
    fact(c, "evaluation results", names);
    ctl_end(c, cards == cfg->n_deployments ? "in_force" : "partial",
            jfmt("%zu of %zu deployment(s) publish intended uses and limitations at GET /v1/models/{id}", cards,
                 cfg->n_deployments));
}

/* ---------- build ---------- */

/* Every control in report order: what it is, where it maps, who does what, and its builder. */
static const ctl_def_t CONTROLS[] = {
    {"network-acl",
     "Network access control",
     "access_control",
     c_network,
     {"164.312(a)(1)", "CC6.1|CC6.6", "A.8.20|A.8.22", "", "MANAGE"},
     "Refuses requests from addresses outside the configured rules (403) before routing or authentication.",
     "Firewalls, private networking and the host's own network hardening; keeping ip_rules current."},
    {"transmission-tls",
     "Transmission security (TLS listeners)",
     "transmission_security",
     c_tls,
     {"164.312(e)(1)|164.312(e)(2)(i)|164.312(e)(2)(ii)", "CC6.1|CC6.7", "A.8.20|A.8.21|A.8.24|A.5.14", "", "MANAGE"},
     "TLS 1.2+ (configurable 1.3) with AEAD cipher suites on every TLS listener; plain HTTP refused on non-loopback "
     "addresses unless explicitly marked insecure; verified TLS to backends by default.",
     "Certificates and their renewal, TLS termination in front of loopback listeners, the network path to clients and "
     "to model providers."},
    {"authentication",
     "Person or entity authentication",
     "identity",
     c_identity,
     {"164.312(d)|164.312(a)(2)(i)", "CC6.1|CC6.2", "A.5.16|A.5.17|A.8.5", "", "GOVERN"},
     "Authenticates every request (API key digests, OIDC tokens verified against the issuer's keys, mutual TLS "
     "certificates); unknown, revoked or expired credentials get 401.",
     "Issuing, distributing and revoking keys; the identity provider (MFA, joiner/mover/leaver process); unique "
     "accounts per person."},
    {"authorization",
     "Role-based access and conditional access",
     "access_control",
     c_rbac,
     {"164.312(a)(1)", "CC6.1|CC6.3", "A.5.15|A.5.18|A.8.2|A.8.3", "A.3.2", "GOVERN"},
     "Enforces roles (inference.user, contributor, reviewer, auditor, admin) per deployment scope and conditional "
     "access (MFA, networks, token age, claims, hours) on every request.",
     "Deciding who gets which role, periodic access reviews, emergency-access procedure."},
    {"encryption-at-rest",
     "Encryption at rest and key management",
     "cryptography",
     c_keys,
     {"164.312(a)(2)(iv)|164.312(c)(1)", "CC6.1", "A.8.24", "", "MANAGE"},
     "Seals stored secrets and retained content (authenticated encryption), rotation, re-wrapping and crypto-shredding "
     "(custos kek); key material in OpenSSL's secure heap or inside the HSM.",
     "Protecting key files or the HSM and its PIN, rotation schedule, backups of the store and keys, disk encryption "
     "of the host."},
    {"retention",
     "Content retention and disposal",
     "data_handling",
     c_retention,
     {"", "CC6.5", "A.8.10|A.5.33|A.5.34", "A.7.2", "MANAGE"},
     "Stores no content unless retention.content is set; purges sealed content after the configured days (custos "
     "purge, the store watcher); crypto-shredding by destroying a key version.",
     "Choosing a retention period that meets legal holds and record-keeping duties; retention in backends, diagnostics "
     "sinks and backups outside custos."},
    {"residency",
     "Data residency per deployment",
     "data_handling",
     c_residency,
     {"", "CC6.7", "A.5.23|A.5.34", "A.10.3", "MAP|MANAGE"},
     "Routes each request only to backends inside its deployment's residency boundary and requirements (regional, data "
     "zone, zero data retention, no training); 503 rather than leaving the boundary.",
     "Contracts with model providers (business associate agreements, data processing terms), the accuracy of backends' "
     "region and attribute labels."},
    {"content-safety",
     "Content safety policy per deployment",
     "ai_safety",
     c_policies,
     {"164.312(e)(1)", "CC6.7|CC7.2", "A.8.11|A.8.12", "A.6.2.6|A.9.2", "MEASURE|MANAGE"},
     "Screens prompts and completions (harm categories, prompt attacks, PII, blocklists) under each deployment's "
     "policy; blocks, redacts or annotates before text reaches the model or the client.",
     "Choosing thresholds fit for the use, reviewing false positives and negatives, blocklists' contents, safety of "
     "the models behind the backends."},
    {"audit-logging",
     "Audit controls: request records and governance log",
     "logging",
     c_diagnostics,
     {"164.312(b)|164.312(c)(1)|164.312(c)(2)", "CC7.2|CC7.3", "A.8.15|A.8.16", "A.6.2.8", "GOVERN|MANAGE"},
     "Writes a metadata record per request to the configured sinks (spooled while a sink is down) and a tamper-evident "
     "governance log (custos audit verify).",
     "Collecting, retaining and reviewing the records (SIEM), alerting and incident response, keeping the governance "
     "log's public key and head hashes outside the host."},
    {"use-cases",
     "AI use-case registry, risk tiers and validation",
     "ai_governance",
     c_use_cases,
     {"", "", "", "A.5.2|A.6.2.4|A.9.3|A.9.4", "GOVERN|MAP"},
     "Refuses requests under unknown, unvalidated or expired use cases and deployments outside a use case; rejects at "
     "load a deployment whose policy is weaker than its use case's minimum.",
     "Impact assessments, the validation itself and its evidence, the choice of risk tier, ownership."},
    {"human-review",
     "Human oversight: review queue",
     "ai_governance",
     c_review,
     {"", "", "", "A.6.2.6|A.9.2", "MANAGE"},
     "Withholds high-tier outputs until a reviewer approves or edits them, marks elevated ones as drafts, samples "
     "standard ones; every decision is a governance-log record.",
     "Staffing reviewers with the competence for the domain, review deadlines, acting on rejected items."},
    {"transparency",
     "Deployment cards and safety evaluations",
     "ai_transparency",
     c_transparency,
     {"", "", "", "A.6.2.7|A.8.2|A.6.2.4", "MAP|MEASURE"},
     "Serves each deployment's card (intended uses, limitations, policy in force, data handling, measured evaluation "
     "results) to callers and reviewers.",
     "Writing accurate cards, evaluating the models on the organisation's own data, communicating limitations to end "
     "users."},
};

int custos_evidence_build(const custos_config_t *cfg, const custos_evidence_store_facts_t *f, int64_t now_s,
                          const char *config_sha256, json_object **out)
{
    char t[32];
    json_object *r = json_object_new_object();
    *out = NULL;
    if (!r)
        return CUSTOS_ENOMEM;
    custos_fmt_utc(now_s, t, sizeof(t));
    json_object_object_add(r, "schema_version", json_object_new_int(CUSTOS_EVIDENCE_SCHEMA_VERSION));
    json_object_object_add(r, "generated_at", jstr(t));
    json_object *src = json_object_new_object();
    json_object_object_add(src, "config", jstr(cfg->source));
    json_object_object_add(src, "config_sha256", config_sha256 ? jstr(config_sha256) : NULL);
    json_object *st = json_object_new_object();
    json_object_object_add(st, "read", json_object_new_boolean(f && f->available));
    json_object_object_add(st, "driver", f && f->available ? jstr(f->driver) : NULL);
    json_object_object_add(st, "error", f && !f->available && f->error[0] ? jstr(f->error) : NULL);
    json_object_object_add(src, "store", st);
    json_object_object_add(r, "source", src);
    json_object *fw = json_object_new_array();
    for (int i = 0; i < NFRAMEWORKS; i++) {
        json_object *e = json_object_new_object();
        json_object_object_add(e, "id", jstr(FRAMEWORK_IDS[i]));
        json_object_object_add(e, "name", jstr(FRAMEWORK_NAMES[i]));
        json_object_array_add(fw, e);
    }
    json_object_object_add(r, "frameworks", fw);
    json_object *controls = json_object_new_array();
    json_object_object_add(r, "controls", controls);
    for (size_t i = 0; i < sizeof(CONTROLS) / sizeof(CONTROLS[0]); i++) {
        ctl_t c = ctl_new(controls, &CONTROLS[i]);
        CONTROLS[i].build(&c, cfg, f, now_s);
    }
    json_object_object_add(r, "disclaimer",
                           jstr("Generated from the configuration and store as read at generated_at. It lists the "
                                "technical controls custos enforces and maps them to framework references; it is "
                                "evidence for an assessment, not a certification or attestation."));
    *out = r;
    return 0;
}

/* ---------- store facts ---------- */

static int kek_row(void *ud, const custos_sv_t *c, size_t n)
{
    custos_evidence_store_facts_t *f = ud;
    if (n < 4 || c[0].type != CUSTOS_SV_INT || c[2].type != CUSTOS_SV_TEXT || c[3].type != CUSTOS_SV_INT)
        return 0;
    bool active = c[2].n == 6 && memcmp(c[2].p, "active", 6) == 0;
    if (!active) {
        f->kek_destroyed++;
        return 0;
    }
    f->kek_active++;
    if (!f->kek_known || (uint32_t)c[0].i > f->kek_current) {
        f->kek_known = true;
        f->kek_current = (uint32_t)c[0].i;
        f->kek_created_s = c[3].i;
        size_t pn = c[1].type == CUSTOS_SV_TEXT && c[1].n < sizeof(f->kek_provider) ? c[1].n : 0;
        memcpy(f->kek_provider, c[1].p, pn);
        f->kek_provider[pn] = 0;
    }
    return 0;
}

static int key_row(void *ud, const custos_sv_t *c, size_t n)
{
    custos_evidence_store_facts_t *f = ud;
    if (n < 3 || c[0].type != CUSTOS_SV_INT || c[1].type != CUSTOS_SV_INT || c[2].type != CUSTOS_SV_INT)
        return 0;
    f->keys_active++;
    count_roles(f->key_roles, (unsigned)c[0].i);
    if (c[2].i == 0)
        f->keys_without_expiry++;
    if (!f->keys_oldest_created_s || c[1].i < f->keys_oldest_created_s)
        f->keys_oldest_created_s = c[1].i;
    return 0;
}

static int role_row(void *ud, const custos_sv_t *c, size_t n)
{
    custos_evidence_store_facts_t *f = ud;
    if (n < 2 || c[0].type != CUSTOS_SV_INT || c[1].type != CUSTOS_SV_INT)
        return 0;
    for (int r = 0; r < NROLES; r++)
        if (c[0].i == (1 << r))
            f->store_roles[r] += c[1].i;
    return 0;
}

void custos_evidence_gather(const custos_config_t *cfg, int64_t now_s, custos_evidence_store_facts_t *f)
{
    custos_store_t *st = NULL;
    char err[256];
    memset(f, 0, sizeof(*f));
    int rc = custos_store_open_config(&cfg->storage, false, &st, err, sizeof(err));
    if (rc != 0) {
        snprintf(f->error, sizeof(f->error), "%s",
                 rc == CUSTOS_ENOTFOUND ? "no store yet (created at first start)" : err);
        return;
    }
    snprintf(f->driver, sizeof(f->driver), "%s", custos_store_driver_name(custos_store_driver(st)));
    custos_sv_t now = custos_sv_int(now_s);
    rc = custos_store_exec(st, "SELECT version, provider, state, created FROM kek_versions", NULL, 0, kek_row, f, NULL);
    rc = rc ? rc
            : custos_store_exec(st,
                                "SELECT roles, created, expires FROM api_keys WHERE revoked = 0 AND (expires = 0 OR "
                                "expires > ?)",
                                &now, 1, key_row, f, NULL);
    rc = rc ? rc
            : custos_store_exec(st, "SELECT role, COUNT(*) FROM role_assignments GROUP BY role", NULL, 0, role_row, f,
                                NULL);
    if (rc != 0) {
        snprintf(f->error, sizeof(f->error), "reading the store failed: %s", custos_strerror(rc));
        custos_store_close(st);
        return;
    }
    f->available = true;
    f->reviews_available = custos_review_stats(st, NULL, now_s, &f->reviews) == 0;
    custos_store_close(st);
}

/* ---------- rendering ---------- */

static const char *sget(json_object *o, const char *k)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, k, &v) && v ? json_object_get_string(v) : "";
}

/* A fact value as one line of text: strings as they are, null as "-", everything else as compact JSON. */
static const char *value_text(json_object *v)
{
    if (!v)
        return "-";
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void md_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|' || *s == '\\' || *s == '*' || *s == '_' || *s == '`' || *s == '<' || *s == '>' || *s == '[' ||
            *s == ']')
            fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

static void refs_text(json_object *ctl, const char *fw, char *out, size_t cap)
{
    json_object *m = NULL, *a = NULL;
    out[0] = 0;
    if (!json_object_object_get_ex(ctl, "mappings", &m) || !json_object_object_get_ex(m, fw, &a))
        return;
    size_t n = json_object_array_length(a), off = 0;
    for (size_t i = 0; i < n && off < cap; i++)
        off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? ", " : "",
                                json_object_get_string(json_object_array_get_idx(a, i)));
    if (n == 0)
        snprintf(out, cap, "-");
}

static void render_md(json_object *r, FILE *f)
{
    json_object *controls = NULL, *src = NULL, *fw = NULL;
    json_object_object_get_ex(r, "controls", &controls);
    json_object_object_get_ex(r, "source", &src);
    json_object_object_get_ex(r, "frameworks", &fw);
    fprintf(f, "# custos evidence report\n\nGenerated %s from `", sget(r, "generated_at"));
    md_text(f, sget(src, "config"));
    fprintf(f, "` (SHA-256 `%s`).\n\n", sget(src, "config_sha256"));
    md_text(f, sget(r, "disclaimer"));
    fprintf(f, "\n\nFrameworks:\n\n");
    for (size_t i = 0; i < json_object_array_length(fw); i++) {
        json_object *e = json_object_array_get_idx(fw, i);
        fprintf(f, "- `%s`: ", sget(e, "id"));
        md_text(f, sget(e, "name"));
        fputc('\n', f);
    }
    fprintf(f, "\n## Summary\n\n| id | control | status | HIPAA 164.312 | SOC 2 | ISO/IEC 27001 | ISO/IEC 42001 | "
               "NIST AI RMF |\n|---|---|---|---|---|---|---|---|\n");
    size_t n = json_object_array_length(controls);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(controls, i);
        fprintf(f, "| `%s` | ", sget(c, "id"));
        md_text(f, sget(c, "title"));
        fprintf(f, " | %s |", sget(c, "status"));
        for (int k = 0; k < NFRAMEWORKS; k++) {
            char refs[512];
            refs_text(c, FRAMEWORK_IDS[k], refs, sizeof(refs));
            fputc(' ', f);
            md_text(f, refs);
            fputs(" |", f);
        }
        fputc('\n', f);
    }
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(controls, i), *facts = NULL, *resp = NULL;
        json_object_object_get_ex(c, "facts", &facts);
        json_object_object_get_ex(c, "responsibility", &resp);
        fprintf(f, "\n## ");
        md_text(f, sget(c, "title"));
        fprintf(f, " (`%s`)\n\nStatus: **%s**: ", sget(c, "id"), sget(c, "status"));
        md_text(f, sget(c, "summary"));
        fprintf(f, "\n\n| fact | value |\n|---|---|\n");
        for (size_t k = 0; k < json_object_array_length(facts); k++) {
            json_object *x = json_object_array_get_idx(facts, k), *v = NULL;
            json_object_object_get_ex(x, "value", &v);
            fputs("| ", f);
            md_text(f, sget(x, "name"));
            fputs(" | ", f);
            md_text(f, value_text(v));
            fputs(" |\n", f);
        }
        fprintf(f, "\n| custos enforces | the customer keeps |\n|---|---|\n| ");
        md_text(f, sget(resp, "custos"));
        fputs(" | ", f);
        md_text(f, sget(resp, "customer"));
        fputs(" |\n", f);
    }
}

static void render_html(json_object *r, FILE *f)
{
    json_object *controls = NULL, *src = NULL, *fw = NULL;
    json_object_object_get_ex(r, "controls", &controls);
    json_object_object_get_ex(r, "source", &src);
    json_object_object_get_ex(r, "frameworks", &fw);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>custos evidence report</title>\n"
          "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem;color:#1b1b1b}"
          "table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #999;padding:.25rem .5rem;"
          "text-align:left;vertical-align:top}th{background:#eee}code{font-size:.9em}"
          ".status{font-weight:bold}</style></head><body>\n<h1>custos evidence report</h1>\n<p>Generated ",
          f);
    custos_report_esc(f, sget(r, "generated_at"));
    fputs(" from <code>", f);
    custos_report_esc(f, sget(src, "config"));
    fputs("</code> (SHA-256 <code>", f);
    custos_report_esc(f, sget(src, "config_sha256"));
    fputs("</code>).</p>\n<p>", f);
    custos_report_esc(f, sget(r, "disclaimer"));
    fputs("</p>\n<h2>Frameworks</h2>\n<ul>\n", f);
    for (size_t i = 0; i < json_object_array_length(fw); i++) {
        json_object *e = json_object_array_get_idx(fw, i);
        fputs("<li><code>", f);
        custos_report_esc(f, sget(e, "id"));
        fputs("</code>: ", f);
        custos_report_esc(f, sget(e, "name"));
        fputs("</li>\n", f);
    }
    fputs("</ul>\n<h2>Summary</h2>\n<table><thead><tr><th scope=\"col\">id</th><th scope=\"col\">control</th>"
          "<th scope=\"col\">status</th><th scope=\"col\">HIPAA 164.312</th><th scope=\"col\">SOC 2</th>"
          "<th scope=\"col\">ISO/IEC 27001</th><th scope=\"col\">ISO/IEC 42001</th><th scope=\"col\">NIST AI RMF</th>"
          "</tr></thead><tbody>\n",
          f);
    size_t n = json_object_array_length(controls);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(controls, i);
        fputs("<tr><td><code>", f);
        custos_report_esc(f, sget(c, "id"));
        fputs("</code></td><td><a href=\"#", f);
        custos_report_esc(f, sget(c, "id"));
        fputs("\">", f);
        custos_report_esc(f, sget(c, "title"));
        fputs("</a></td><td class=\"status\">", f);
        custos_report_esc(f, sget(c, "status"));
        fputs("</td>", f);
        for (int k = 0; k < NFRAMEWORKS; k++) {
            char refs[512];
            refs_text(c, FRAMEWORK_IDS[k], refs, sizeof(refs));
            fputs("<td>", f);
            custos_report_esc(f, refs);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table>\n", f);
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(controls, i), *facts = NULL, *resp = NULL;
        json_object_object_get_ex(c, "facts", &facts);
        json_object_object_get_ex(c, "responsibility", &resp);
        fputs("<section id=\"", f);
        custos_report_esc(f, sget(c, "id"));
        fputs("\" data-control=\"", f);
        custos_report_esc(f, sget(c, "id"));
        fputs("\">\n<h2>", f);
        custos_report_esc(f, sget(c, "title"));
        fputs(" (<code>", f);
        custos_report_esc(f, sget(c, "id"));
        fputs("</code>)</h2>\n<p>Status: <span class=\"status\">", f);
        custos_report_esc(f, sget(c, "status"));
        fputs("</span>: ", f);
        custos_report_esc(f, sget(c, "summary"));
        fputs("</p>\n<table><thead><tr><th scope=\"col\">fact</th><th scope=\"col\">value</th></tr></thead><tbody>\n",
              f);
        for (size_t k = 0; k < json_object_array_length(facts); k++) {
            json_object *x = json_object_array_get_idx(facts, k), *v = NULL;
            json_object_object_get_ex(x, "value", &v);
            fputs("<tr><td>", f);
            custos_report_esc(f, sget(x, "name"));
            fputs("</td><td>", f);
            custos_report_esc(f, value_text(v));
            fputs("</td></tr>\n", f);
        }
        fputs("</tbody></table>\n<table><thead><tr><th scope=\"col\">custos enforces</th><th scope=\"col\">the "
              "customer keeps</th></tr></thead><tbody><tr><td>",
              f);
        custos_report_esc(f, sget(resp, "custos"));
        fputs("</td><td>", f);
        custos_report_esc(f, sget(resp, "customer"));
        fputs("</td></tr></tbody></table>\n</section>\n", f);
    }
    fputs("</body></html>\n", f);
}

int custos_evidence_render(json_object *report, custos_evidence_format_t fmt, FILE *f)
{
    if (fmt == CUSTOS_EVIDENCE_JSON) {
        const char *s = json_object_to_json_string_ext(report, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
            return CUSTOS_ENOMEM;
        fputs(s, f);
        fputc('\n', f);
    } else if (fmt == CUSTOS_EVIDENCE_MD) {
        render_md(report, f);
    } else {
        render_html(report, f);
    }
    return ferror(f) ? CUSTOS_EIO : 0;
}

/* ---------- command line ---------- */

static int file_sha256(const char *path, char out[65])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return CUSTOS_EIO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[8192], md[32];
    unsigned int mdl = 0;
    int rc = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : CUSTOS_ENOMEM;
    size_t n;
    while (!rc && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (EVP_DigestUpdate(ctx, buf, n) != 1)
            rc = CUSTOS_EIO;
    if (!rc && (ferror(f) || EVP_DigestFinal_ex(ctx, md, &mdl) != 1))
        rc = CUSTOS_EIO;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    for (unsigned i = 0; !rc && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return rc;
}

static int evidence_usage(void)
{
    fprintf(stderr, "usage: custos evidence -c FILE [--format json|md|html] [-o OUT]\n"
                    "  the controls in force, mapped to HIPAA 164.312, SOC 2, ISO/IEC 27001, ISO/IEC 42001 and the "
                    "NIST AI RMF (docs/evidence.md)\n");
    return 2;
}

int custos_evidence_cli(int argc, char **argv)
{
    const char *cfgpath = NULL, *outpath = NULL, *fmtname = "json";
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            cfgpath = argv[++i];
        else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            outpath = argv[++i];
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            fmtname = argv[++i];
        else
            return evidence_usage();
    }
    custos_evidence_format_t fmt;
    if (strcmp(fmtname, "json") == 0)
        fmt = CUSTOS_EVIDENCE_JSON;
    else if (strcmp(fmtname, "md") == 0 || strcmp(fmtname, "markdown") == 0)
        fmt = CUSTOS_EVIDENCE_MD;
    else if (strcmp(fmtname, "html") == 0)
        fmt = CUSTOS_EVIDENCE_HTML;
    else
        return evidence_usage();
    if (!cfgpath)
        return evidence_usage();
    char err[1024], sha[65];
    custos_config_t *cfg = NULL;
    if (custos_config_load_file(cfgpath, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int64_t now = (int64_t)time(NULL);
    custos_evidence_store_facts_t facts;
    custos_evidence_gather(cfg, now, &facts);
    json_object *report = NULL;
    int rc = custos_evidence_build(cfg, &facts, now, file_sha256(cfgpath, sha) == 0 ? sha : NULL, &report);
    custos_config_unref(cfg);
    if (rc != 0) {
        fprintf(stderr, "custos evidence: %s\n", custos_strerror(rc));
        return 1;
    }
    FILE *f = outpath ? fopen(outpath, "w") : stdout;
    if (!f) {
        fprintf(stderr, "custos evidence: cannot write %s: %s\n", outpath, strerror(errno));
        json_object_put(report);
        return 1;
    }
    rc = custos_evidence_render(report, fmt, f);
    json_object_put(report);
    if (outpath && fclose(f) != 0)
        rc = CUSTOS_EIO;
    if (rc != 0) {
        fprintf(stderr, "custos evidence: writing the report failed: %s\n", custos_strerror(rc));
        return 1;
    }
    return 0;
}
