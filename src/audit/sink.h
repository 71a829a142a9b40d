/* SPDX-License-Identifier: Apache-2.0
 * Audit sink driver interface: a transport (file, syslog, http, kafka) that the sink framework (audit.h) drives from
 * the sink's own thread. Drivers see only encoded records (metadata-only JSON objects, docs/diagnostics.md). */
#ifndef CUSTOS_AUDIT_SINK_H
#define CUSTOS_AUDIT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct custos_audit_sink_driver {
    const char *type; /* "file", "syslog", "http", "kafka" */
    /* Creates the driver state from its config entry (custos_audit_sink_config_t in config/config.h; borrowed, valid
     * until close returns). err gets a message (never a secret). Returns 0 or a negative CUSTOS_E* code; a failed
     * open is fatal for custos start-up. Called on the thread that starts the audit subsystem. */
    int (*open)(const struct custos_audit_sink_config *cfg, void **state, char *err, size_t errlen);
    /* Delivers records in order; each is one JSON object text of lens[i] bytes, followed in memory by a '\n' that
     * lens[i] does not count (records taken from the queue or the spool are also back to back, so a driver may write
     * a run of them in one piece: recs[i + 1] == recs[i] + lens[i] + 1). Returns 0 when all n were
     * accepted (handed over durably as far as the transport allows), or a negative CUSTOS_E* code: the framework keeps
     * them (spool) and calls deliver again later with the same records first. Called only on the sink's own thread. */
    int (*deliver)(void *state, const char *const *recs, const size_t *lens, size_t n);
    /* Releases the state (flush what the transport buffers first). Called once, on the sink's thread or after it has
     * been joined; NULL-safe on the framework side (not called when open failed). */
    void (*close)(void *state);
    /* Optional (NULL: none). Called on the sink's thread after each round while no record is pending, and when the
     * time it last asked for has come: does deferred work (the file driver's delayed fdatasync) and returns the ms
     * until it wants to be called again, 0 for never (until the next round). */
    uint32_t (*idle)(void *state);
} custos_audit_sink_driver_t;

/* Built-in drivers. The file driver is in sink_file.c; the others in sink_syslog.c, sink_http.c, sink_kafka.c. */
extern const custos_audit_sink_driver_t custos_audit_sink_file;
extern const custos_audit_sink_driver_t custos_audit_sink_syslog;
extern const custos_audit_sink_driver_t custos_audit_sink_http;
extern const custos_audit_sink_driver_t custos_audit_sink_kafka;

/* Driver for a config type, or NULL when this build has none for it. Table in drivers.c. Thread-safe. */
const custos_audit_sink_driver_t *custos_audit_sink_driver_find(custos_audit_sink_type_t type);

#endif
