/* SPDX-License-Identifier: Apache-2.0
 * Kafka audit sink driver against librdkafka's built-in mock cluster: records arrive in order with key = deployment,
 * deliver() fails while the broker is down and the same records then arrive exactly once after it is back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "audit/sink.h"
#include "util/err.h"

#define TOPIC "custos-audit"

typedef struct fixture {
    rd_kafka_t *owner; /* handle owning the mock cluster */
    rd_kafka_mock_cluster_t *mc;
    char *bootstraps;
    custos_audit_sink_config_t cfg;
    char *keys[3], *vals[3];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char why[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", why, sizeof(why));
    f->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    assert_non_null(f->owner);
    f->mc = rd_kafka_mock_cluster_new(f->owner, 1);
    assert_non_null(f->mc);
    f->bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(f->mc));
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, TOPIC, 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    f->cfg.type = CUSTOS_AUDIT_SINK_KAFKA;
    f->cfg.type_name = "kafka";
    f->cfg.brokers = f->bootstraps;
    f->cfg.topic = TOPIC;
    f->cfg.client_id = "custos-test";
    f->cfg.timeout_ms = 1500;
    f->keys[0] = "linger.ms";
    f->vals[0] = "5";
    f->keys[1] = "acks"; /* overridden: the driver always uses acks=all */
    f->vals[1] = "1";
    f->keys[2] = "reconnect.backoff.max.ms"; /* quick reconnect after the simulated outage */
    f->vals[2] = "200";
    f->cfg.property_keys = f->keys;
    f->cfg.property_values = f->vals;
    f->cfg.n_properties = 3;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->owner);
    free(f->bootstraps);
    free(f);
    return 0;
}

/* Consumes everything in partition 0 from the beginning until `want` messages arrived (or 15 s passed). */
static size_t consume_all(fixture_t *f, size_t want, char **payloads, char **keys)
{
    char why[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", f->bootstraps, why, sizeof(why)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test", why, sizeof(why)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", why, sizeof(why)), RD_KAFKA_CONF_OK);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    size_t got = 0;
    bool eof = false;
    for (int polls = 0; polls < 150 && !(eof && got >= want); polls++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof = true;
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            eof = false;
            if (got < want + 16) {
                payloads[got] = strndup(m->payload, m->len);
                keys[got] = m->key ? strndup(m->key, m->key_len) : NULL;
            }
            got++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return got;
}

static void make_records(size_t first, size_t n, char **recs, size_t *lens)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = first + i;
        char b[256];
        if (k % 5 == 4)
            snprintf(b, sizeof(b), "{\"seq\":%zu,\"properties\":{\"modelDeploymentName\":null}}", k); /* no key */
        else
            snprintf(b, sizeof(b),
                     "{\"seq\":%zu,\"properties\":{\"modelName\":\"gpt-4o\",\"modelDeploymentName\":\"dep-%zu\"}}", k,
                     k % 3);
        recs[i] = strdup(b);
        lens[i] = strlen(b);
    }
}

static void free_records(char **recs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(recs[i]);
        recs[i] = NULL;
    }
}

static void check_consumed(char **payloads, char **keys, size_t got, size_t want)
{
    char *exp[64];
    size_t lens[64];
    assert_int_equal(got, want);
    make_records(0, want, exp, lens);
    for (size_t i = 0; i < want; i++) {
        assert_string_equal(payloads[i], exp[i]);
        if (i % 5 == 4) {
            assert_null(keys[i]);
        } else {
            char k[16];
            snprintf(k, sizeof(k), "dep-%zu", i % 3);
            assert_non_null(keys[i]);
            assert_string_equal(keys[i], k);
        }
    }
    free_records(exp, want);
    free_records(payloads, got);
    free_records(keys, got);
}

static void test_deliver_in_order_with_keys(void **state)
{
    fixture_t *f = *state;
    char *recs[20], *payloads[64] = {0}, *keys[64] = {0};
    size_t lens[20];
    char err[256] = "";
    void *st = NULL;
    assert_int_equal(custos_audit_sink_kafka.open(&f->cfg, &st, err, sizeof(err)), 0);
    make_records(0, 20, recs, lens);
    assert_int_equal(custos_audit_sink_kafka.deliver(st, (const char *const *)recs, lens, 12), 0);
    assert_int_equal(custos_audit_sink_kafka.deliver(st, (const char *const *)recs + 12, lens + 12, 8), 0);
    custos_audit_sink_kafka.close(st);
    free_records(recs, 20);
    size_t got = consume_all(f, 20, payloads, keys);
    check_consumed(payloads, keys, got, 20);
}

static void test_outage_then_exactly_once(void **state)
{
    fixture_t *f = *state;
    char *recs[30], *payloads[64] = {0}, *keys[64] = {0};
    size_t lens[30];
    char err[256] = "";
    void *st = NULL;
    assert_int_equal(custos_audit_sink_kafka.open(&f->cfg, &st, err, sizeof(err)), 0);
    make_records(0, 30, recs, lens);
    assert_int_equal(custos_audit_sink_kafka.deliver(st, (const char *const *)recs, lens, 10), 0);
    assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    /* the batch cannot be acknowledged: deliver reports failure after its timeout (the framework keeps it) */
    int rc = custos_audit_sink_kafka.deliver(st, (const char *const *)recs + 10, lens + 10, 10);
    assert_true(rc < 0);
    assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    /* the framework retries with the same records first, plus newer ones */
    rc = -1;
    for (int attempt = 0; attempt < 5 && rc != 0; attempt++)
        rc = custos_audit_sink_kafka.deliver(st, (const char *const *)recs + 10, lens + 10, 20);
    assert_int_equal(rc, 0);
    custos_audit_sink_kafka.close(st);
    free_records(recs, 30);
    size_t got = consume_all(f, 30, payloads, keys);
    check_consumed(payloads, keys, got, 30);
}

/* A batch whose third message is refused by the broker (the others acknowledged): deliver fails, and when the framework
 * calls again with the same records first, only the refused one is produced again: every record exactly once, the
 * retried one after the records that followed it in its batch. */
static void test_partial_batch_not_duplicated(void **state)
{
    fixture_t *f = *state;
    char *recs[8], *payloads[64] = {0}, *keys[64] = {0};
    size_t lens[8];
    char err[256] = "";
    void *st = NULL;
    char *k[2] = {"batch.num.messages", "max.in.flight"}, *v[2] = {"1", "1"};
    custos_audit_sink_config_t c = f->cfg;
    c.property_keys = k;
    c.property_values = v;
    c.n_properties = 2;
    assert_int_equal(custos_audit_sink_kafka.open(&c, &st, err, sizeof(err)), 0);
    make_records(0, 8, recs, lens);
    /* Produce is API key 0: two requests succeed, the third fails with a non-retriable error */
    rd_kafka_mock_push_request_errors(f->mc, 0, 3, RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_RESP_ERR_NO_ERROR,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    assert_true(custos_audit_sink_kafka.deliver(st, (const char *const *)recs, lens, 5) < 0);
    int rc = -1;
    for (int attempt = 0; attempt < 5 && rc != 0; attempt++)
        rc = custos_audit_sink_kafka.deliver(st, (const char *const *)recs, lens, 8);
    assert_int_equal(rc, 0);
    custos_audit_sink_kafka.close(st);
    free_records(recs, 8);
    size_t got = consume_all(f, 8, payloads, keys);
    /* consumed: 0 1 3 4 2 5 6 7 */
    char *tmp_p = payloads[4], *tmp_k = keys[4];
    memmove(payloads + 3, payloads + 2, 2 * sizeof(char *));
    memmove(keys + 3, keys + 2, 2 * sizeof(char *));
    payloads[2] = tmp_p;
    keys[2] = tmp_k;
    check_consumed(payloads, keys, got, 8);
}

static void test_open_rejects_bad_config(void **state)
{
    fixture_t *f = *state;
    custos_audit_sink_config_t c = f->cfg;
    char *k[1] = {"no.such.property"}, *v[1] = {"secret-value"};
    char err[256] = "";
    void *st = NULL;
    c.property_keys = k;
    c.property_values = v;
    c.n_properties = 1;
    assert_int_equal(custos_audit_sink_kafka.open(&c, &st, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(st);
    assert_non_null(strstr(err, "no.such.property"));
    assert_null(strstr(err, "secret-value")); /* values may be secrets: never echoed */
    c = f->cfg;
    c.topic = NULL;
    assert_int_equal(custos_audit_sink_kafka.open(&c, &st, err, sizeof(err)), CUSTOS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deliver_in_order_with_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_then_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_batch_not_duplicated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_rejects_bad_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
