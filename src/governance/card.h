/* SPDX-License-Identifier: Apache-2.0
 * Deployment cards (transparency): what a deployment is for, its limits, the content-filtering policy in force,
 * where its data is processed and kept, and the measured evaluation results of the safety models. Served as the
 * `custos_card` extension field of GET /v1/models/{id}, shown by the reviewer UI (/ui) and summarised by
 * `custos evidence`. See docs/reviewer-ui.md ("Deployment cards") and docs/config.md (deployments[].card,
 * safety.eval_dir).
 *
 * Nothing here reads prompt or completion content; a card holds configuration and evaluation metadata only. */
#ifndef CUSTOS_GOVERNANCE_CARD_H
#define CUSTOS_GOVERNANCE_CARD_H

#include "config/config.h"

#include <json-c/json.h>

/* Evaluation result files read from the evaluation directory, in this order (docs/reviewer-ui.md). A missing file
 * is left out; one that is not a JSON object (or is larger than CUSTOS_CARD_EVAL_MAX_BYTES) is listed with an
 * error instead of its result. A result whose compact JSON exceeds CUSTOS_CARD_EVAL_EMBED_BYTES is cut to its
 * top-level members of at most CUSTOS_CARD_EVAL_MEMBER_BYTES each, with "truncated": true and "omitted": [keys]
 * added (cards stay small; the full file stays where it is). */
#define CUSTOS_CARD_EVAL_FILES                                                                                         \
    {                                                                                                                  \
        "harm.json", "shields.json", "pii.json", "grounded.json", "fairness.json"                                      \
    }
#define CUSTOS_CARD_EVAL_MAX_BYTES ((size_t)4 * 1024 * 1024)
#define CUSTOS_CARD_EVAL_EMBED_BYTES ((size_t)16 * 1024)
#define CUSTOS_CARD_EVAL_MEMBER_BYTES ((size_t)4 * 1024)
/* How long read evaluation files are reused before the directory is read again (seconds). */
#define CUSTOS_CARD_EVAL_TTL_S 30

/* The evaluation directory in force: cfg->safety.eval_dir, else the shipped models/eval (found like the models,
 * safety/safety.h custos_safety_default_model). Writes into buf (cap bytes) and returns it. */
const char *custos_card_eval_dir(const custos_config_t *cfg, char *buf, size_t cap);

/* Evaluation results as a new JSON array: [{"name":"harm","file":"harm.json","result":{...}} | {..., "error":"..."}].
 * Files are read at most once per CUSTOS_CARD_EVAL_TTL_S per directory (a process-wide cache behind a mutex;
 * thread-safe). Returns 0 and *out (caller puts), or CUSTOS_ENOMEM. */
int custos_card_evaluations(const custos_config_t *cfg, json_object **out);

/* The resolved rai_policy of d as a new JSON object (name, mode, content_filters[], prompt_shields, pii,
 * blocklists[]). Returns NULL on allocation failure. Thread-safe (reads the immutable config only). */
json_object *custos_card_policy(const custos_deployment_config_t *d);

/* Data handling of d: residency type, region / data zone, where each backend is, backend requirements and the
 * content retention in force. New object or NULL (allocation failure). Thread-safe. */
json_object *custos_card_data_handling(const custos_config_t *cfg, const custos_deployment_config_t *d);

/* The whole card of d: deployment, model, the operator's card fields (description, owner, intended_uses,
 * out_of_scope_uses, limitations), policy, data_handling, evaluations. Returns 0 and *out, or CUSTOS_ENOMEM. */
int custos_card_build(const custos_config_t *cfg, const custos_deployment_config_t *d, json_object **out);

/* Names of an RAI action / PII action / filter threshold (static strings). */
const char *custos_card_action_name(custos_rai_action_t a);
const char *custos_card_pii_action_name(custos_rai_pii_action_t a);
const char *custos_card_threshold_name(unsigned threshold);

#endif
