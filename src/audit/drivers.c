/* SPDX-License-Identifier: Apache-2.0
 * Table of built-in audit sink drivers (sink.h). */
#include "audit/sink.h"

const custos_audit_sink_driver_t *custos_audit_sink_driver_find(custos_audit_sink_type_t type)
{
    switch (type) {
    case CUSTOS_AUDIT_SINK_FILE:
        return &custos_audit_sink_file;
    case CUSTOS_AUDIT_SINK_SYSLOG:
        return &custos_audit_sink_syslog;
    case CUSTOS_AUDIT_SINK_HTTP:
        return &custos_audit_sink_http;
    case CUSTOS_AUDIT_SINK_KAFKA:
        return &custos_audit_sink_kafka;
    }
    return NULL;
}
