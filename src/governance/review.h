/* SPDX-License-Identifier: Apache-2.0
 * The human review queue (docs/reviews.md): one row per review item in the store's `reviews` table (metadata only,
 * migration 4), the item's content sealed in the vault (namespace "content", id "review.<id>"), decisions recorded
 * in the governance log inside the store transaction, lazy expiry of pending items past their deadline, and the
 * statistics behind `custos evidence`.
 *
 * Threads: every function takes the store (and vault) handle it works on; a handle is used by one thread at a time
 * (store/store.h). custos_review_local() gives the calling thread its own cached pair. All calls block on the store:
 * the gateway calls them on its worker only for governed requests and the review API (documented cost). */
#ifndef CUSTOS_GOVERNANCE_REVIEW_H
#define CUSTOS_GOVERNANCE_REVIEW_H

#include "config/config.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct custos_vault;

#define CUSTOS_REVIEW_ID_LEN 28              /* "rev_" + 24 hex digits */
#define CUSTOS_REVIEW_MAX_REASON 4096        /* decision reason, bytes */
#define CUSTOS_REVIEW_MAX_TEXT (512u * 1024) /* edited text, bytes (sealed with the reason in one 1 MiB record) */
#define CUSTOS_REVIEW_MAX_LIST 200           /* items per list page */

typedef enum {
    CUSTOS_REVIEW_PENDING = 0,
    CUSTOS_REVIEW_APPROVED,
    CUSTOS_REVIEW_EDITED,
    CUSTOS_REVIEW_REJECTED,
    CUSTOS_REVIEW_EXPIRED,
    CUSTOS_REVIEW_NSTATUS
} custos_review_status_t;

/* Tiers (same order as custos_usecase_tier_t in config/config.h). */
#define CUSTOS_REVIEW_NTIER 3

typedef enum { CUSTOS_REVIEW_HOLD = 0, CUSTOS_REVIEW_SIGNOFF, CUSTOS_REVIEW_QA } custos_review_kind_t;

typedef enum { CUSTOS_DECISION_APPROVE = 0, CUSTOS_DECISION_EDIT, CUSTOS_DECISION_REJECT } custos_review_decision_t;

/* One item's metadata (no content). Strings are NUL-terminated copies. */
typedef struct custos_review_meta {
    char id[CUSTOS_REVIEW_ID_LEN + 1];
    char request_id[40];
    char use_case[72];
    char tier[16]; /* "high" | "elevated" | "standard" */
    char kind[16]; /* "hold" | "signoff" | "qa" */
    char deployment[72];
    char model[264];
    char operation[32]; /* "chat_completions" | "completions" */
    bool stream;
    char requester[264]; /* principal id of the caller */
    custos_review_status_t status;
    int64_t created_s, deadline_s, decided_s; /* decided_s 0 = not decided */
    char reviewer[264];                       /* "" when not decided */
    char decision[16];                        /* "approve" | "edit" | "reject" | "" */
    bool content_stored;
    char safety[1024]; /* JSON object: content-filter summary (metadata only) */
} custos_review_meta_t;

/* Status / tier / kind names and parsing. Parse functions return -1 for an unknown name. */
const char *custos_review_status_name(custos_review_status_t s);
int custos_review_status_parse(const char *s);
const char *custos_review_kind_name(custos_review_kind_t k);
const char *custos_review_decision_name(custos_review_decision_t d);
int custos_review_decision_parse(const char *s);

/* A fresh id "rev_" + 24 hex (getrandom) into out[CUSTOS_REVIEW_ID_LEN + 1]. Returns 0 or CUSTOS_EIO. */
int custos_review_new_id(char *out);
/* True when s looks like an id (shape only). */
bool custos_review_id_valid(const char *s, size_t n);

/* Deterministic QA sampling: fnv1a64(request_id) % 1000000 < rate_ppm. */
bool custos_review_sampled(const char *request_id, uint32_t rate_ppm);

/* Inserts an item (m->status is stored as given, normally pending) and, when content is not NULL, seals content[0..n)
 * under "review.<id>" with expires_s (0 = never). Row and sealed record in one transaction. Returns 0 or a store /
 * vault code. */
int custos_review_enqueue(custos_store_t *st, struct custos_vault *v, const custos_review_meta_t *m,
                          const void *content, size_t n, int64_t expires_s);

/* Marks pending items whose deadline passed as expired. *count (may be NULL) = items changed. */
int custos_review_expire(custos_store_t *st, int64_t now_s, int64_t *count);

/* Reads one item's metadata (after expiring it if due). Returns 0, CUSTOS_ENOTFOUND or a store code. */
int custos_review_get(custos_store_t *st, const char *id, int64_t now_s, custos_review_meta_t *out);

/* Unseals the item's content ("review.<id>") or its decision record ("review.<id>.decision" when decision).
 * Returns 0 with *out malloc'd (caller frees; NUL-terminated), CUSTOS_ENOTFOUND (never stored, or purged),
 * CUSTOS_EKEYGONE, CUSTOS_EDECRYPT, CUSTOS_EIO. */
int custos_review_content(struct custos_vault *v, const char *id, bool decision, unsigned char **out, size_t *n);

/* Lists items newest first. status < 0 = all; use_case / tier NULL = any; after NULL = from the newest. fn is called
 * per item (non-zero stops and is returned). *more is set when more items follow the page. */
typedef int (*custos_review_list_fn)(void *ud, const custos_review_meta_t *m);
int custos_review_list(custos_store_t *st, int status, const char *use_case, const char *tier, const char *after,
                       unsigned limit, int64_t now_s, custos_review_list_fn fn, void *ud, bool *more);

/* Decides a pending item: checks it is pending and not past its deadline, seals {"text","reason"} as
 * "review.<id>.decision" (when text or reason is given), updates the row, and appends one governance-log record
 * (action "review.decide", details with SHA-256 of text and reason, never the text) inside the same transaction.
 * Returns 0 (out updated), CUSTOS_ENOTFOUND, CUSTOS_EAGAIN (already decided), CUSTOS_ETIMEDOUT (expired),
 * CUSTOS_ETOOBIG (text and reason do not fit one sealed record once JSON-escaped), or a store / vault / governance-log
 * code (the decision is rolled back). */
int custos_review_decide(custos_store_t *st, struct custos_vault *v, const char *id, const char *reviewer,
                         custos_review_decision_t d, const char *text, size_t text_len, const char *reason,
                         int64_t now_s, custos_review_meta_t *out);

/* ---------- statistics (custos evidence, docs/reviews.md) ---------- */

typedef struct custos_review_stats {
    int64_t total;
    int64_t by_status[CUSTOS_REVIEW_NSTATUS];                           /* indexed by custos_review_status_t */
    int64_t by_tier_status[CUSTOS_REVIEW_NTIER][CUSTOS_REVIEW_NSTATUS]; /* [high, elevated, standard][status] */
    int64_t decided;                                                    /* approved + edited + rejected */
    double median_decision_s;     /* created -> decided over decided items; -1 when none */
    int64_t oldest_pending_age_s; /* now - created of the oldest pending item; -1 when none */
} custos_review_stats_t;

/* Fills *out over all items (use_case NULL) or one use case's, after expiring due items. Returns 0 or a store code. */
int custos_review_stats(custos_store_t *st, const char *use_case, int64_t now_s, custos_review_stats_t *out);

/* Tier index 0..2 for "high" / "elevated" / "standard", -1 otherwise. */
int custos_review_tier_index(const char *tier);

/* ---------- per-thread handles for the serving process ---------- */

/* The calling thread's store and vault for storage sc, opened on first use and kept until the thread exits
 * (reopened when sc names another store). Returns 0 or a negative code with err filled. */
int custos_review_local(const custos_storage_config_t *sc, custos_store_t **st, struct custos_vault **v, char *err,
                        size_t errlen);
/* Closes the calling thread's handles (after a store error: the next custos_review_local reconnects, e.g. once a
 * PostgreSQL server is back). Handles obtained before are invalid afterwards. */
void custos_review_local_drop(void);

#endif
