/* SPDX-License-Identifier: Apache-2.0
 * Tamper-evident governance log: an append-only JSON-lines file of administrative acts, each record carrying the
 * SHA-256 of its predecessor (docs/governance-log.md), plus the verifier behind `custos audit verify`. */
#ifndef CUSTOS_AUDIT_GOVLOG_H
#define CUSTOS_AUDIT_GOVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct custos_config;
struct custos_storage_config;

/* Field caps (bytes, before JSON escaping). Longer values are refused with CUSTOS_ETOOBIG. */
#define CUSTOS_GOVLOG_MAX_ACTOR 256
#define CUSTOS_GOVLOG_MAX_ACTION 64 /* [a-z0-9._-]+ */
#define CUSTOS_GOVLOG_MAX_TARGET 512
#define CUSTOS_GOVLOG_MAX_DETAILS 4096 /* details JSON object, depth <= 4 */
/* Events accepted before custos_govlog_open_global(); further ones are refused with CUSTOS_EUNAVAIL. */
#define CUSTOS_GOVLOG_PREOPEN_MAX 1024
/* Hex SHA-256 length (without NUL). */
#define CUSTOS_GOVLOG_HEX 64
/* Signed checkpoints (docs/governance-log.md): with a signing key, a checkpoint record follows every
 * CUSTOS_GOVLOG_CHECKPOINT_RECORDS records, the first event after CUSTOS_GOVLOG_CHECKPOINT_INTERVAL_S seconds without
 * one, the start of signing and the close of the process-wide log. Key ids are 16 hex digits. */
#define CUSTOS_GOVLOG_CHECKPOINT_RECORDS 100
#define CUSTOS_GOVLOG_CHECKPOINT_INTERVAL_S 3600
#define CUSTOS_GOVLOG_KEY_ID_LEN 16
/* Public keys one verification accepts (a log that lived through key replacements). */
#define CUSTOS_GOVLOG_MAX_PUBKEYS 8

/* Appends one governance event; thread-safe; returns 0 or a negative code. actor: principal id (or "system"/"cli"),
 * action: e.g. "key.create", "key.revoke", "role_assignment.create", "role_assignment.delete", "config.reload",
 * "config.reload_failed", "blocklist.update", "policy.update", "key.rotate", "review.decide"; target: an id/name;
 * details: NULL or a small JSON object of METADATA only (never prompt/completion content, never secrets).
 * Goes to the process-wide log. Before custos_govlog_open_global() the event (with its time) is held in memory (at
 * most CUSTOS_GOVLOG_PREOPEN_MAX) and written, in order, when the log opens. Returns CUSTOS_EINVAL (NULL/empty
 * actor/action/target, bad action characters, details not a JSON object), CUSTOS_ETOOBIG (caps above),
 * CUSTOS_EUNAVAIL (log closed, failed to open, refusing after a torn tail, or pre-open buffer full), CUSTOS_EIO
 * (write/fsync failed; the log then refuses further appends), CUSTOS_ENOMEM. When it returns 0 the record is on
 * disk (fsync'd) or, before open, buffered. Callers performing an administrative act should fail the act when this
 * returns an error. */
int custos_governance_event(const char *actor, const char *action, const char *target, const char *details_json);

/* Opens (creating with mode 0600 if absent) the process-wide governance log at path, verifies the whole existing
 * chain so appends continue it (seq, prev), then writes the events buffered before open. Returns 0, CUSTOS_EPROTO
 * when the file is torn (partial last line) or fails verification -- the log then stays refusing (events return
 * CUSTOS_EUNAVAIL) until an operator runs `custos audit verify` / `custos audit repair` and restarts --,
 * CUSTOS_EIO, CUSTOS_ENOMEM, or CUSTOS_EINVAL (already open). Details go to the operational log. Thread-safe. */
int custos_govlog_open_global(const char *path);

/* Closes the process-wide log; later events return CUSTOS_EUNAVAIL. Drops any pre-open buffer. Thread-safe. */
void custos_govlog_close_global(void);

/* Makes the process-wide log sign checkpoints with the Ed25519 key whose 32-byte private seed is given (copied), and
 * writes one at once when the last record is not a checkpoint. Returns 0, CUSTOS_EUNAVAIL (not open), CUSTOS_EINVAL,
 * or an append error. Thread-safe. */
int custos_govlog_global_set_signing_key(const unsigned char seed[32]);

/* The governance log's signing key, sealed in the store (namespace "govlog", id "signing-key"; docs/keys.md): loads
 * it, or with create generates it (OpenSSL) and seals it when there is none or when it was crypto-shredded with its
 * KEK version (then *replaced = true; may be NULL). seed receives the 32-byte private seed (the caller cleanses it).
 * Returns 0, CUSTOS_ENOTFOUND (none and !create), CUSTOS_EKEYGONE (shredded and !create), or the store's / vault's
 * codes with err filled (never key material). */
int custos_govlog_signing_seed(const struct custos_storage_config *sc, bool create, unsigned char seed[32],
                               bool *replaced, char *err, size_t errlen);

/* Start-up: loads or creates the signing key (custos_govlog_signing_seed), makes the process-wide log sign with it,
 * and writes its public key (PEM) to "<governance_log>.pub" (mode 0644) when that file is absent or holds another key.
 * Returns 0 or a negative code with err filled. */
int custos_govlog_enable_signing(const struct custos_config *cfg, char *err, size_t errlen);

/* PEM (SubjectPublicKeyInfo) of the public half of seed into a malloc'd string *pem, and its key id into
 * key_id[CUSTOS_GOVLOG_KEY_ID_LEN + 1] (may be NULL). Returns 0 or CUSTOS_ENOMEM. */
int custos_govlog_public_key_pem(const unsigned char seed[32], char **pem, char *key_id);

/* Copies the process-wide log's head hash (hex, NUL-terminated) into out[CUSTOS_GOVLOG_HEX + 1] and its last seq
 * into *seq (either may be NULL). Returns 0 or CUSTOS_EUNAVAIL (not open). Thread-safe. */
int custos_govlog_global_head(char *out, uint64_t *seq);

/* SHA-256 of the file at path as hex into out[CUSTOS_GOVLOG_HEX + 1] (for details such as "config_sha256": proves
 * which file was applied without recording its content). Returns 0, CUSTOS_EIO or CUSTOS_ENOMEM. Thread-safe. */
int custos_govlog_file_sha256(const char *path, char *out);

/* --- Instance API (the global log wraps one; tests and tools use it directly) --- */

typedef struct custos_govlog custos_govlog_t;

/* Opens/creates path as a governance log whose first record's prev is genesis_hex (NULL: 64 zeros). Verifies the
 * existing chain; returns 0 and *out, or CUSTOS_EPROTO (torn or tampered: run the verifier), CUSTOS_EINVAL,
 * CUSTOS_EIO, CUSTOS_ENOMEM. Appends are serialised by a mutex within the handle and by flock(2) across handles and
 * processes: several custos processes may share one file; each append first takes in (and checks) the records
 * others appended, so the chain stays linear. A foreign record that does not continue the chain, or a file that
 * shrank, makes the handle refuse (CUSTOS_EUNAVAIL). */
int custos_govlog_open(const char *path, const char *genesis_hex, custos_govlog_t **out);

/* Appends one record (see custos_governance_event for arguments and codes). time_ms: wall-clock ms since the epoch,
 * 0 for now. Thread-safe. */
int custos_govlog_append(custos_govlog_t *log, uint64_t time_ms, const char *actor, const char *action,
                         const char *target, const char *details_json);

/* Head hash hex into out[CUSTOS_GOVLOG_HEX + 1] and last seq into *seq (either may be NULL). Thread-safe. */
void custos_govlog_head(custos_govlog_t *log, char *out, uint64_t *seq);

/* Signs checkpoints with the Ed25519 key of the 32-byte private seed from now on (see
 * CUSTOS_GOVLOG_CHECKPOINT_RECORDS). Returns 0 or CUSTOS_EINVAL. Thread-safe. */
int custos_govlog_set_signing_key(custos_govlog_t *log, const unsigned char seed[32]);

/* Appends a signed checkpoint now unless the last record is one. Returns 0, CUSTOS_EINVAL (no signing key) or an
 * append error. Thread-safe. */
int custos_govlog_checkpoint(custos_govlog_t *log);

/* Closes the file and frees log (NULL is fine). */
void custos_govlog_free(custos_govlog_t *log);

/* --- Verification (custos audit verify) --- */

typedef struct custos_govlog_verify_result {
    uint64_t records;                 /* complete lines read */
    uint64_t last_seq;                /* seq of the last record (0 if none) */
    unsigned problems;                /* findings reported (0: intact) */
    int torn;                         /* 1 when the last line is partial (no newline) */
    uint64_t first_bad_line;          /* 1-based line of the first finding, 0 if none */
    char head[CUSTOS_GOVLOG_HEX + 1]; /* hash of the last complete record (genesis if none) */
    uint64_t checkpoints;             /* valid checkpoints (signature checked when a public key was given) */
    uint64_t last_checkpoint_seq;     /* seq of the last valid checkpoint record (0: none) */
    uint64_t last_checkpoint_line;
    uint64_t unsigned_tail; /* records after the last valid checkpoint (all of them when there is none) */
    int signatures_checked; /* 1 when a public key was given */
} custos_govlog_verify_result_t;

/* Verifies the file at path. Each finding is written to report (may be NULL) as one line
 * "line L (seq N): KIND: explanation", KIND one of malformed, modified, deleted, inserted, reordered, duplicate,
 * forged, torn, truncated. genesis_hex: expected prev of the first record (NULL: zeros). expect_head_hex (NULL: not
 * checked): a head kept elsewhere; it must be the hash of some record in the verified chain, otherwise the tail was
 * truncated or rewritten. Returns 0 (intact), CUSTOS_EPROTO (findings; see *res), CUSTOS_ENOTFOUND (no file),
 * CUSTOS_EIO (cannot read), CUSTOS_EINVAL (bad hex argument) or CUSTOS_ENOMEM. *res (may be NULL) is filled in every
 * case it can be. */
int custos_govlog_verify_file(const char *path, const char *genesis_hex, const char *expect_head_hex, FILE *report,
                              custos_govlog_verify_result_t *res);

/* Same, also checking checkpoints: pubkey_paths[0..npub) (npub 0: signatures not checked, only the checkpoint's form
 * and link; at most CUSTOS_GOVLOG_MAX_PUBKEYS) name PEM Ed25519 public keys (custos audit pubkey, "<log>.pub", older
 * keys after a replacement); every checkpoint must be signed by one of them (matched by key id) and sign its
 * predecessor, else a "checkpoint" finding. signed_tail: records after the last valid checkpoint are a
 * "truncated" finding (a stopped custos ends its log with one); otherwise they are only counted in
 * res->unsigned_tail. CUSTOS_EINVAL also when the key file is unreadable or not Ed25519. */
int custos_govlog_verify_file_signed(const char *path, const char *genesis_hex, const char *expect_head_hex,
                                     const char *const *pubkey_paths, size_t npub, bool signed_tail, FILE *report,
                                     custos_govlog_verify_result_t *res);

/* Removes a torn (partial, newline-less) last line, and nothing else, after checking that everything before it
 * verifies; the removed bytes are saved to "<path>.torn.<unix-ms>", and a "govlog.repair" record (actor "cli") is
 * appended so the repair is itself in the chain. Returns 0 (repaired or nothing to repair; *repaired set to 1/0),
 * CUSTOS_EPROTO (the complete records fail verification: evidence is left untouched), CUSTOS_EIO, CUSTOS_ENOMEM.
 * Must not run while custos has the log open. */
int custos_govlog_repair_file(const char *path, const char *genesis_hex, FILE *report, int *repaired);

#endif
