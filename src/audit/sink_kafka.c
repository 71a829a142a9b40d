/* SPDX-License-Identifier: Apache-2.0
 * Kafka audit sink driver (librdkafka, the protocol Event Hubs also speaks): idempotent producer with acks=all,
 * key = the record's deployment (properties.modelDeploymentName); deliver() returns only once every message of the
 * batch has its delivery report. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>

#include "audit/sink.h"
#include "util/err.h"
#include "util/log.h"
#include "util/time.h"

/* Extra wait for delivery reports beyond message.timeout.ms before the batch's messages are purged. */
#define KAFKA_GRACE_MS 2000
#define KAFKA_PENDING ((rd_kafka_resp_err_t)-100000)

typedef struct kafka_state {
    const custos_audit_sink_config_t *cfg; /* borrowed, valid until close */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int timeout_ms;               /* message.timeout.ms we set (config timeout_ms, default 10000) */
    int wait_ms;                  /* effective message.timeout.ms (properties may change it; 0 there = timeout_ms) */
    size_t outstanding;           /* messages without a delivery report yet */
    rd_kafka_resp_err_t last_err; /* last error logged (logged once per change) */
    /* exactly-once across retries: of the last failed batch (done_n records, fingerprint done_fp), the records with
     * done[i] set were acknowledged; when deliver() is called again with the same records first, they are skipped */
    bool *done;
    size_t done_n;
    uint64_t done_fp;
} kafka_state_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_state_t *s = opaque;
    rd_kafka_resp_err_t *slot = m->_private;
    (void)rk;
    if (slot)
        *slot = m->err;
    if (s->outstanding)
        s->outstanding--;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 3)
        CUSTOS_ERROR("kafka sink: %s: %s", fac, buf);
    else if (level <= 4)
        CUSTOS_WARN("kafka sink: %s: %s", fac, buf);
    else
        CUSTOS_DEBUG("kafka sink: %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_state_t *s = opaque;
    (void)rk;
    if ((rd_kafka_resp_err_t)err != s->last_err)
        CUSTOS_WARN("kafka sink: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    s->last_err = (rd_kafka_resp_err_t)err;
}

static void destroy_producer(kafka_state_t *s)
{
    if (s->rkt)
        rd_kafka_topic_destroy(s->rkt);
    s->rkt = NULL;
    if (s->rk) {
        rd_kafka_flush(s->rk, s->timeout_ms);
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(s->rk, 0);
        rd_kafka_destroy(s->rk);
    }
    s->rk = NULL;
}

static int set_prop(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(conf, k, v, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        /* the value may be a secret: name only the key */
        snprintf(err, errlen, "kafka sink: property %s: %s", k, why);
        return CUSTOS_EINVAL;
    }
    return 0;
}

static int create_producer(kafka_state_t *s, char *err, size_t errlen)
{
    const custos_audit_sink_config_t *cfg = s->cfg;
    char tmo[16], why[256];
    int rc = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return CUSTOS_ENOMEM;
    snprintf(tmo, sizeof(tmo), "%d", s->timeout_ms);
    rc = set_prop(conf, "bootstrap.servers", cfg->brokers, err, errlen);
    if (rc == 0)
        rc = set_prop(conf, "client.id", cfg->client_id ? cfg->client_id : "custos", err, errlen);
    if (rc == 0)
        rc = set_prop(conf, "message.timeout.ms", tmo, err, errlen);
    if (rc == 0) /* broker restarts are reported through error_cb once; idle disconnects are normal */
        rc = set_prop(conf, "log.connection.close", "false", err, errlen);
    for (size_t i = 0; rc == 0 && i < cfg->n_properties; i++)
        rc = set_prop(conf, cfg->property_keys[i], cfg->property_values[i], err, errlen);
    /* the delivery guarantees are not negotiable: applied last */
    if (rc == 0)
        rc = set_prop(conf, "enable.idempotence", "true", err, errlen);
    if (rc == 0)
        rc = set_prop(conf, "acks", "all", err, errlen);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    size_t tl = sizeof(tmo);
    s->wait_ms = s->timeout_ms;
    if (rd_kafka_conf_get(conf, "message.timeout.ms", tmo, &tl) == RD_KAFKA_CONF_OK && atoi(tmo) > 0)
        s->wait_ms = atoi(tmo);
    rd_kafka_conf_set_opaque(conf, s);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka sink: %s", why);
        return CUSTOS_EINVAL;
    }
    s->rkt = rd_kafka_topic_new(s->rk, cfg->topic, NULL);
    if (!s->rkt) {
        snprintf(err, errlen, "kafka sink: topic %s: %s", cfg->topic, rd_kafka_err2str(rd_kafka_last_error()));
        destroy_producer(s);
        return CUSTOS_EINVAL;
    }
    return 0;
}

static void kafka_close(void *state)
{
    kafka_state_t *s = state;
    if (!s)
        return;
    destroy_producer(s);
    free(s->done);
    free(s);
}

static int kafka_open(const custos_audit_sink_config_t *cfg, void **state, char *err, size_t errlen)
{
    int rc;
    *state = NULL;
    if (!cfg->brokers || !*cfg->brokers || !cfg->topic || !*cfg->topic) {
        snprintf(err, errlen, "kafka sink: brokers and topic are required");
        return CUSTOS_EINVAL;
    }
    kafka_state_t *s = calloc(1, sizeof(*s));
    if (!s)
        return CUSTOS_ENOMEM;
    s->cfg = cfg;
    s->timeout_ms = cfg->timeout_ms ? (int)cfg->timeout_ms : 10000;
    rc = create_producer(s, err, errlen);
    if (rc != 0) {
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static uint64_t fingerprint(const char *const *recs, const size_t *lens, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < sizeof(size_t); j++) {
            h ^= (lens[i] >> (8 * j)) & 0xff;
            h *= 1099511628211ull;
        }
        for (size_t j = 0; j < lens[i]; j++) {
            h ^= (unsigned char)recs[i][j];
            h *= 1099511628211ull;
        }
    }
    return h;
}

/* The record's deployment, properties.modelDeploymentName (docs/diagnostics.md), malloc'd, or NULL (no key). */
static char *record_key(const char *rec, size_t len, size_t *key_len)
{
    json_tokener *tok = json_tokener_new();
    json_object *o, *props, *v;
    char *key = NULL;
    if (!tok)
        return NULL;
    o = json_tokener_parse_ex(tok, rec, (int)len);
    if (o && json_object_object_get_ex(o, "properties", &props) &&
        json_object_object_get_ex(props, "modelDeploymentName", &v) && json_object_is_type(v, json_type_string)) {
        *key_len = (size_t)json_object_get_string_len(v);
        key = malloc(*key_len + 1);
        if (key)
            memcpy(key, json_object_get_string(v), *key_len + 1);
    }
    json_object_put(o);
    json_tokener_free(tok);
    return key;
}

static int kafka_deliver(void *state, const char *const *recs, const size_t *lens, size_t n)
{
    kafka_state_t *s = state;
    int rc = 0;
    rd_kafka_resp_err_t *res = NULL;
    bool *acked = NULL;
    char err[256];

    if (n == 0)
        return 0;
    if (s->rk && rd_kafka_fatal_error(s->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        CUSTOS_WARN("kafka sink: producer hit a fatal error; recreating it");
        destroy_producer(s);
    }
    if (!s->rk && create_producer(s, err, sizeof(err)) != 0) {
        CUSTOS_WARN("%s", err);
        return CUSTOS_EUNAVAIL;
    }
    res = malloc(n * sizeof(*res));
    acked = calloc(n, sizeof(*acked));
    if (!res || !acked) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    /* records acknowledged in the previous (failed) call with the same records first are not produced again */
    if (s->done_n && s->done_n <= n && fingerprint(recs, lens, s->done_n) == s->done_fp)
        memcpy(acked, s->done, s->done_n * sizeof(*acked));
    uint64_t deadline = custos_now_ms() + (uint64_t)s->wait_ms + KAFKA_GRACE_MS;
    for (size_t i = 0; i < n; i++) {
        res[i] = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (acked[i])
            continue;
        size_t klen = 0;
        char *key = record_key(recs[i], lens[i], &klen);
        res[i] = KAFKA_PENDING;
        for (;;) {
            if (rd_kafka_produce(s->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)recs[i], lens[i], key,
                                 klen, &res[i]) == 0) {
                s->outstanding++;
                break;
            }
            rd_kafka_resp_err_t e = rd_kafka_last_error();
            if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && custos_now_ms() < deadline) {
                rd_kafka_poll(s->rk, 100);
                continue;
            }
            res[i] = e;
            break;
        }
        free(key);
        if (res[i] != KAFKA_PENDING) {
            /* not enqueued: neither it nor the records after it are produced now (kept in order for the retry) */
            for (size_t j = i + 1; j < n; j++)
                res[j] = acked[j] ? RD_KAFKA_RESP_ERR_NO_ERROR : res[i];
            break;
        }
    }
    /* wait for every delivery report of this batch; past the deadline, purge what is left and collect its reports */
    bool purged = false;
    while (s->outstanding > 0) {
        uint64_t now = custos_now_ms();
        if (now >= deadline && !purged) {
            rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            purged = true;
        }
        rd_kafka_poll(s->rk, purged ? 100 : (int)(deadline - now < 100 ? deadline - now : 100));
    }
    size_t failed = 0;
    rd_kafka_resp_err_t first = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; i < n; i++) {
        if (res[i] == RD_KAFKA_RESP_ERR_NO_ERROR) {
            acked[i] = true;
        } else if (failed++ == 0) {
            first = res[i] == KAFKA_PENDING ? RD_KAFKA_RESP_ERR__TIMED_OUT : res[i];
        }
    }
    free(s->done);
    s->done = NULL;
    s->done_n = 0;
    if (failed) {
        if (first != s->last_err)
            CUSTOS_WARN("kafka sink: delivery failed (%s); %zu of %zu records will be retried",
                        rd_kafka_err2name(first), failed, n);
        s->last_err = first;
        s->done = acked;
        acked = NULL;
        s->done_n = n;
        s->done_fp = fingerprint(recs, lens, n);
        rc = (first == RD_KAFKA_RESP_ERR__TIMED_OUT || first == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) ? CUSTOS_ETIMEDOUT
                                                                                                  : CUSTOS_EUNAVAIL;
    } else if (s->last_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        CUSTOS_INFO("kafka sink: delivering again");
        s->last_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    }
out:
    free(res);
    free(acked);
    return rc;
}

const custos_audit_sink_driver_t custos_audit_sink_kafka = {
    .type = "kafka",
    .open = kafka_open,
    .deliver = kafka_deliver,
    .close = kafka_close,
};
