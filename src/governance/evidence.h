/* SPDX-License-Identifier: Apache-2.0
 * `custos evidence`: the controls in force, read from the live configuration and the store, each mapped to
 * HIPAA Security Rule §164.312 technical safeguards, SOC 2 (CC6, CC7), ISO/IEC 27001:2022 Annex A, ISO/IEC 42001
 * Annex A and the NIST AI RMF functions, with a shared-responsibility split (what custos enforces, what stays with
 * the customer). One report model (a JSON tree, docs/evidence.schema.json) rendered as JSON, Markdown or HTML, so
 * the three forms always list the same controls. docs/evidence.md describes every control and mapping.
 *
 * Never reads prompt or completion content, secrets or key material: configuration facts, counts, ages and names. */
#ifndef CUSTOS_GOVERNANCE_EVIDENCE_H
#define CUSTOS_GOVERNANCE_EVIDENCE_H

#include "config/config.h"
#include "governance/review.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CUSTOS_EVIDENCE_SCHEMA_VERSION 1

typedef enum { CUSTOS_EVIDENCE_JSON = 0, CUSTOS_EVIDENCE_MD, CUSTOS_EVIDENCE_HTML } custos_evidence_format_t;

/* What the store says (gathered by custos_evidence_gather; zeroed = not available). */
typedef struct custos_evidence_store_facts {
    bool available;  /* the store could be opened and read */
    char error[256]; /* why not, when !available (no secret in it) */
    char driver[16]; /* "sqlite" | "postgres" */
    /* key-encryption keys (kek_versions) */
    bool kek_known;       /* at least one version recorded */
    uint32_t kek_current; /* highest active version */
    char kek_provider[16];
    int64_t kek_created_s; /* of the current version */
    int64_t kek_active, kek_destroyed;
    /* stored API keys and role assignments (store/, docs/admin-api.md) */
    int64_t keys_active;           /* not revoked, not expired */
    int64_t keys_without_expiry;   /* active ones with no expiry */
    int64_t keys_oldest_created_s; /* 0 when none */
    int64_t store_roles[5];        /* role assignments in the store, by role bit index (inference.user .. admin) */
    int64_t key_roles[5];          /* active stored keys holding each role */
    /* review queue (governance/review.h) */
    bool reviews_available;
    custos_review_stats_t reviews;
} custos_evidence_store_facts_t;

/* Opens the configured store without creating it and reads the facts above. Never fails: problems are recorded
 * in f->error (f->available false) or leave the review part unavailable. */
void custos_evidence_gather(const custos_config_t *cfg, int64_t now_s, custos_evidence_store_facts_t *f);

/* Builds the report for cfg (facts may be NULL: store facts "not gathered") at wall-clock time now_s. config_sha256
 * (64 hex digits, or NULL) identifies the configuration file read. Returns 0 and *out (caller puts), or
 * CUSTOS_ENOMEM. Deterministic for equal inputs. */
int custos_evidence_build(const custos_config_t *cfg, const custos_evidence_store_facts_t *facts, int64_t now_s,
                          const char *config_sha256, json_object **out);

/* Writes report (from custos_evidence_build) to f in format fmt. Returns 0 or CUSTOS_EIO / CUSTOS_ENOMEM. */
int custos_evidence_render(json_object *report, custos_evidence_format_t fmt, FILE *f);

/* `custos evidence -c FILE [--format json|md|html] [-o OUT]` (argv[0] = "evidence"). Exit status 0, 1 (config or
 * output error) or 2 (usage). */
int custos_evidence_cli(int argc, char **argv);

#endif
