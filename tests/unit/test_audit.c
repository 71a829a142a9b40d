/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for src/audit: the request record's exact JSON, caller IP masking, api-version filtering, the sink
 * framework (queue, spool, replay in order exactly once, restart, spool bound), the file sink's rotation and the
 * diagnostics config section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/record.h"
#include "audit/sink.h"
#include "config/config.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/json.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/custos-audit-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---------- record ---------- */

static void full_record(custos_audit_record_t *r)
{
    custos_audit_record_init(r);
    r->time_ms = 1700000000123ull;
    r->request_time_ms = 1700000000000ull;
    strcpy(r->request_id, "0b5e7a4c-1f2d-4e3a-9b8c-7d6e5f4a3b2c");
    r->op = CUSTOS_AUDIT_OP_CHAT;
    r->api = CUSTOS_AUDIT_API_AZURE;
    custos_audit_set_api_version(r, "2024-10-21", 10);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.168.1.77", &sin.sin_addr);
    custos_audit_set_caller(r, (struct sockaddr *)&sin, sizeof(sin), true);
    custos_audit_copy_name(r->deployment, sizeof(r->deployment), "gpt4o");
    custos_audit_copy_name(r->model, sizeof(r->model), "gpt-4o");
    custos_audit_copy_name(r->backend, sizeof(r->backend), "azure-se");
    custos_audit_copy_name(r->region, sizeof(r->region), "swedencentral");
    custos_audit_copy_name(r->data_zone, sizeof(r->data_zone), "eu");
    r->status = 200;
    r->total_us = 12345;
    r->upstream_us = 10000;
    r->request_bytes = 120;
    r->response_bytes = 456;
    r->prompt_tokens = 10;
    r->completion_tokens = 5;
    r->stream = true;
    r->retries = 1;
    custos_audit_note_header(r, "API-Key", 7);
    custos_audit_note_header(r, "x-canary-secret", 15);
    custos_audit_note_header(r, "User-Agent", 10);
}

static void test_record_exact_json(void **state)
{
    (void)state;
    custos_audit_record_t r;
    full_record(&r);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_audit_record_encode(&r, "custos/test", &b), 0);
    const char *want =
        "{\"time\":\"2023-11-14T22:13:20.123Z\",\"resourceId\":\"custos/test\",\"category\":\"RequestResponse\","
        "\"operationName\":\"ChatCompletions_Create\",\"callerIpAddress\":\"192.168.1.0\","
        "\"correlationId\":\"0b5e7a4c-1f2d-4e3a-9b8c-7d6e5f4a3b2c\",\"durationMs\":12,\"resultSignature\":\"200\","
        "\"properties\":{\"apiName\":\"Azure OpenAI\",\"requestTime\":\"2023-11-14T22:13:20.000Z\","
        "\"requestLength\":120,\"responseTime\":\"2023-11-14T22:13:20.123Z\",\"responseLength\":456,"
        "\"objectId\":null,\"streamType\":\"Streaming\",\"modelDeploymentName\":\"gpt4o\",\"modelName\":\"gpt-4o\","
        "\"modelVersion\":null},\"custos\":{\"schemaVersion\":\"1.2\","
        "\"requestId\":\"0b5e7a4c-1f2d-4e3a-9b8c-7d6e5f4a3b2c\",\"apiVersion\":\"2024-10-21\",\"principalId\":null,"
        "\"authType\":null,\"backend\":\"azure-se\",\"region\":\"swedencentral\",\"dataZone\":\"eu\",\"status\":200,"
        "\"totalMs\":12,\"upstreamMs\":10,\"overheadUs\":2345,\"tokens\":{\"prompt\":10,\"completion\":5,"
        "\"total\":15},\"stream\":true,\"retries\":1,\"headers\":[\"api-key\",\"user-agent\"],\"safety\":null,"
        "\"useCase\":null,\"quota\":null}}";
    assert_string_equal(custos_buf_peek(&b), want);
    custos_buf_dispose(&b);

    /* unknowns: empty strings and tokens become null, no caller */
    custos_audit_record_init(&r);
    r.time_ms = r.request_time_ms = 0;
    r.status = 404;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_audit_record_encode(&r, NULL, &b), 0);
    assert_non_null(strstr(custos_buf_peek(&b), "\"callerIpAddress\":null"));
    assert_non_null(strstr(custos_buf_peek(&b), "\"modelDeploymentName\":null"));
    assert_non_null(strstr(custos_buf_peek(&b), "\"tokens\":{\"prompt\":null,\"completion\":null,\"total\":null}"));
    assert_non_null(strstr(custos_buf_peek(&b), "\"operationName\":\"Other\""));
    assert_null(strchr(custos_buf_peek(&b), '\n'));
    custos_buf_dispose(&b);

    /* content filtering outcome: severities (null = not screened), flags and counts only */
    full_record(&r);
    r.safety_screened = true;
    const int8_t ps[4] = {0, 1, 6, 0}, cs[4] = {-1, -1, -1, -1};
    memcpy(r.prompt_severity, ps, 4);
    memcpy(r.completion_severity, cs, 4);
    r.prompt_filtered = true;
    r.jailbreak_detected = true;
    r.pii_prompt = 2;
    r.blocklist_hits = 1;
    r.pii_prompt_types[CUSTOS_PII_EMAIL] = 1;
    r.pii_prompt_types[CUSTOS_PII_PHONE] = 1;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_audit_record_encode(&r, "custos/test", &b), 0);
    assert_non_null(
        strstr(custos_buf_peek(&b),
               "\"safety\":{\"prompt\":{\"hate\":0,\"sexual\":1,\"violence\":6,\"selfHarm\":0,\"filtered\":true,"
               "\"pii\":2,\"piiTypes\":{\"EMAIL\":1,\"PHONE\":1}},\"completion\":{\"hate\":null,\"sexual\":null,"
               "\"violence\":null,\"selfHarm\":null,\"filtered\":false,\"pii\":0,\"piiTypes\":{}},"
               "\"jailbreak\":true,\"indirectAttack\":false,\"blocklistHits\":1,\"error\":false,\"ungrounded\":null,"
               "\"guard\":null},"
               "\"useCase\""));
    custos_buf_dispose(&b);

    /* groundedness, guard models, use case and tier, quota outcome */
    r.ungrounded = 1;
    r.guard_asked = true;
    r.guard_disagreed = true;
    custos_audit_copy_name(r.use_case, sizeof(r.use_case), "prior-auth");
    custos_audit_copy_name(r.tier, sizeof(r.tier), "elevated");
    r.quota = CUSTOS_AUDIT_QUOTA_LIMITED;
    r.quota_tokens = true;
    r.quota_remaining_requests = 7;
    r.quota_remaining_tokens = 0;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_audit_record_encode(&r, "custos/test", &b), 0);
    assert_non_null(strstr(custos_buf_peek(&b),
                           "\"ungrounded\":true,\"guard\":{\"error\":false,\"disagreed\":true}},\"useCase\":{\"id\":"
                           "\"prior-auth\",\"tier\":\"elevated\"},"
                           "\"quota\":{\"outcome\":\"limited\",\"limit\":\"tokens\",\"remainingRequests\":7,"
                           "\"remainingTokens\":0}}}"));
    custos_buf_dispose(&b);
    r.quota = CUSTOS_AUDIT_QUOTA_ADMITTED;
    r.quota_remaining_tokens = -1;
    r.op = CUSTOS_AUDIT_OP_CS_SHIELD_PROMPT;
    r.api = CUSTOS_AUDIT_API_CONTENT_SAFETY;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_audit_record_encode(&r, "custos/test", &b), 0);
    assert_non_null(strstr(custos_buf_peek(&b), "\"quota\":{\"outcome\":\"admitted\",\"limit\":null,"
                                                "\"remainingRequests\":7,\"remainingTokens\":null}"));
    assert_non_null(strstr(custos_buf_peek(&b), "\"operationName\":\"ContentSafety_ShieldPrompt\""));
    assert_non_null(strstr(custos_buf_peek(&b), "\"apiName\":\"Azure AI Content Safety\""));
    custos_buf_dispose(&b);
}

/* The encoder writes into room reserved once per record: a record with every string at its longest, every PII type
 * at its largest count and every optional part present must still fit, come out as valid JSON, and leave what the
 * buffer held before untouched. A string that needs escaping takes the slow path and the record stays valid. */
static void test_record_largest_and_escaped(void **state)
{
    (void)state;
    custos_audit_record_t r;
    full_record(&r);
    memset(r.principal_id, 'p', sizeof(r.principal_id) - 1);
    memset(r.auth_type, 'a', sizeof(r.auth_type) - 1);
    memset(r.deployment, 'd', sizeof(r.deployment) - 1);
    memset(r.model, 'm', sizeof(r.model) - 1);
    memset(r.backend, 'b', sizeof(r.backend) - 1);
    memset(r.region, 'r', sizeof(r.region) - 1);
    memset(r.data_zone, 'z', sizeof(r.data_zone) - 1);
    memset(r.use_case, 'u', sizeof(r.use_case) - 1);
    memset(r.tier, 't', sizeof(r.tier) - 1);
    r.total_us = r.upstream_us = r.request_bytes = r.response_bytes = UINT64_MAX;
    r.prompt_tokens = r.completion_tokens = INT64_MAX;
    r.retries = UINT32_MAX;
    r.headers_present = (1u << CUSTOS_AUDIT_HDR_COUNT) - 1;
    r.safety_screened = true;
    for (int k = 0; k < 4; k++)
        r.prompt_severity[k] = r.completion_severity[k] = 7;
    r.pii_prompt = r.pii_completion = r.blocklist_hits = UINT32_MAX;
    for (int t = 0; t < CUSTOS_PII_NTYPES; t++)
        r.pii_prompt_types[t] = r.pii_completion_types[t] = UINT16_MAX;
    r.ungrounded = 1;
    r.guard_asked = r.guard_error = r.guard_disagreed = true;
    r.quota = CUSTOS_AUDIT_QUOTA_LIMITED;
    r.quota_remaining_requests = r.quota_remaining_tokens = INT64_MAX;
    r.caller_family = AF_INET6;
    memset(r.caller_addr, 0xab, sizeof(r.caller_addr));

    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_buf_append_lit(&b, "before\n"), 0);
    assert_int_equal(custos_audit_record_encode(&r, "custos/gw-1", &b), 0);
    assert_non_null(b.data);
    assert_memory_equal(b.data, "before\n", 7);
    const char *rec = b.data + 7;
    assert_int_equal(custos_json_validate(rec, strlen(rec), 8, NULL, NULL), 0);
    assert_non_null(strstr(rec, "\"piiTypes\":{\"EMAIL\":65535,"));
    assert_non_null(strstr(rec, "\"durationMs\":18446744073709551"));
    assert_non_null(strstr(rec, "\"limit\":\"requests\""));
    size_t largest = strlen(rec);

    /* a resource id JSON must escape (quote, backslash, control character, invalid UTF-8), long enough to need the
     * buffer to grow while the record is written */
    char rid[6000];
    for (size_t i = 0; i < sizeof(rid) - 1; i++)
        rid[i] = "a\"\\\x01\xff"[i % 5];
    rid[sizeof(rid) - 1] = 0;
    custos_buf_reset(&b);
    assert_int_equal(custos_audit_record_encode(&r, rid, &b), 0);
    rec = custos_buf_peek(&b);
    assert_int_equal(custos_json_validate(rec, strlen(rec), 8, NULL, NULL), 0);
    assert_non_null(strstr(rec, "\"resourceId\":\"a\\\"\\\\\\u0001"));
    assert_true(strlen(rec) > largest + sizeof(rid));
    custos_buf_dispose(&b);

    /* a buffer whose cap leaves no room: CUSTOS_ETOOBIG and nothing written */
    custos_buf_init(&b, 512);
    assert_int_equal(custos_buf_append_lit(&b, "kept"), 0);
    assert_int_equal(custos_audit_record_encode(&r, "x", &b), CUSTOS_ETOOBIG);
    assert_string_equal(custos_buf_peek(&b), "kept");
    custos_buf_dispose(&b);
}

static void test_record_names_and_versions(void **state)
{
    (void)state;
    custos_audit_record_t r;
    custos_audit_record_init(&r);
    /* names are copied only when they look like names */
    custos_audit_copy_name(r.deployment, sizeof(r.deployment), "CANARY secret text");
    assert_string_equal(r.deployment, "");
    custos_audit_copy_name(r.deployment, sizeof(r.deployment), "dep\"x");
    assert_string_equal(r.deployment, "");
    char long_name[100];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[99] = 0;
    custos_audit_copy_name(r.deployment, sizeof(r.deployment), long_name);
    assert_string_equal(r.deployment, "");
    custos_audit_copy_name(r.deployment, sizeof(r.deployment), "ok-name_1.2");
    assert_string_equal(r.deployment, "ok-name_1.2");
    /* api-version: only strict forms */
    custos_audit_set_api_version(&r, "2024-10-21", 10);
    assert_string_equal(r.api_version, "2024-10-21");
    custos_audit_set_api_version(&r, "2024-09-15-preview", 18);
    assert_string_equal(r.api_version, "2024-09-15-preview");
    custos_audit_set_api_version(&r, "preview", 7);
    assert_string_equal(r.api_version, "preview");
    custos_audit_set_api_version(&r, "CANARY-7f3a", 11);
    assert_string_equal(r.api_version, "");
    custos_audit_set_api_version(&r, "2024-10-2x", 10);
    assert_string_equal(r.api_version, "");
    custos_audit_set_api_version(&r, "2024-10-21-CANARY", 17);
    assert_string_equal(r.api_version, "");
    /* header names: allowlist only */
    custos_audit_note_header(&r, "X-Canary", 8);
    assert_int_equal(r.headers_present, 0);
    custos_audit_note_header(&r, "authorization", 13);
    assert_int_equal(r.headers_present, CUSTOS_AUDIT_HDR_AUTHORIZATION);
}

static const char *caller_of(const struct sockaddr *sa, socklen_t len, bool mask, char *out, size_t n)
{
    custos_audit_record_t r;
    custos_audit_record_init(&r);
    custos_audit_set_caller(&r, sa, len, mask);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_audit_record_encode(&r, "x", &b), 0);
    const char *p = strstr(custos_buf_peek(&b), "\"callerIpAddress\":");
    assert_non_null(p);
    p += 18;
    const char *e = strchr(p, ',');
    snprintf(out, n, "%.*s", (int)(e - p), p);
    custos_buf_dispose(&b);
    return out;
}

static void test_ip_masking(void **state)
{
    (void)state;
    char out[64];
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "203.0.113.254", &s4.sin_addr);
    assert_string_equal(caller_of((struct sockaddr *)&s4, sizeof(s4), true, out, sizeof(out)), "\"203.0.113.0\"");
    assert_string_equal(caller_of((struct sockaddr *)&s4, sizeof(s4), false, out, sizeof(out)), "\"203.0.113.254\"");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8:aaaa:bbbb:1234:5678:9abc:def0", &s6.sin6_addr);
    assert_string_equal(caller_of((struct sockaddr *)&s6, sizeof(s6), true, out, sizeof(out)),
                        "\"2001:db8:aaaa:bbbb::\"");
    assert_string_equal(caller_of((struct sockaddr *)&s6, sizeof(s6), false, out, sizeof(out)),
                        "\"2001:db8:aaaa:bbbb:1234:5678:9abc:def0\"");
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &s6.sin6_addr);
    assert_string_equal(caller_of((struct sockaddr *)&s6, sizeof(s6), true, out, sizeof(out)), "\"10.1.2.0\"");
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    assert_string_equal(caller_of((struct sockaddr *)&su, sizeof(su), true, out, sizeof(out)), "\"unix\"");
    assert_string_equal(caller_of(NULL, 0, true, out, sizeof(out)), "null");
}

/* ---------- fake driver ---------- */

typedef struct fake {
    pthread_mutex_t mu;
    int fail_next;    /* deliveries to refuse */
    bool fail_always; /* refuse everything */
    char **got;
    size_t ngot, cap;
    unsigned calls;
} fake_t;

static fake_t *fake_current; /* the driver's open() picks this up */

static int fake_open(const custos_audit_sink_config_t *cfg, void **state, char *err, size_t errlen)
{
    (void)cfg;
    (void)err;
    (void)errlen;
    *state = fake_current;
    return 0;
}

static int fake_deliver(void *state, const char *const *recs, const size_t *lens, size_t n)
{
    fake_t *f = state;
    pthread_mutex_lock(&f->mu);
    f->calls++;
    if (f->fail_always || f->fail_next > 0) {
        if (f->fail_next > 0)
            f->fail_next--;
        pthread_mutex_unlock(&f->mu);
        return CUSTOS_EIO;
    }
    for (size_t i = 0; i < n; i++) {
        if (f->ngot == f->cap) {
            f->cap = f->cap ? f->cap * 2 : 64;
            f->got = realloc(f->got, f->cap * sizeof(char *));
        }
        f->got[f->ngot++] = strndup(recs[i], lens[i]);
    }
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static void fake_close(void *state)
{
    (void)state;
}

static const custos_audit_sink_driver_t fake_driver = {"fake", fake_open, fake_deliver, fake_close, NULL};

static void fake_init(fake_t *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
}

static size_t fake_count(fake_t *f)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->ngot;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void fake_dispose(fake_t *f)
{
    for (size_t i = 0; i < f->ngot; i++)
        free(f->got[i]);
    free(f->got);
    pthread_mutex_destroy(&f->mu);
}

static void seq_record(custos_audit_record_t *r, unsigned i)
{
    custos_audit_record_init(r);
    snprintf(r->request_id, sizeof(r->request_id), "00000000-0000-4000-8000-%012u", i);
    r->status = 200;
    r->time_ms = 1700000000000ull;
}

/* Checks that f got records first..first+n-1 exactly once, in order. */
static void assert_sequence(fake_t *f, unsigned first, unsigned n)
{
    assert_int_equal(f->ngot, n);
    for (unsigned i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "\"requestId\":\"00000000-0000-4000-8000-%012u\"", first + i);
        if (!strstr(f->got[i], id))
            fail_msg("record %u is not %u: %.200s", i, first + i, f->got[i]);
    }
}

/* Waits (bounded) until f holds n records. */
static void wait_count(fake_t *f, size_t n)
{
    for (int i = 0; i < 2000 && fake_count(f) < n; i++)
        usleep(5000);
}

static custos_audit_sink_config_t sink_cfg(const char *name, unsigned batch)
{
    custos_audit_sink_config_t c;
    memset(&c, 0, sizeof(c));
    c.name = (char *)name;
    c.type_name = (char *)"fake";
    c.batch_max_records = batch;
    return c;
}

/* A file sink's config: path (borrowed), rotation at max_bytes keeping max_files. */
static custos_audit_sink_config_t file_cfg(char *path, unsigned batch, uint64_t max_bytes, unsigned max_files)
{
    custos_audit_sink_config_t c = sink_cfg("file", batch);
    c.type = CUSTOS_AUDIT_SINK_FILE;
    c.path = path;
    c.max_bytes = max_bytes;
    c.max_files = max_files;
    return c;
}

static void test_deliver_in_order(void **state)
{
    (void)state;
    fake_t f;
    fake_init(&f);
    fake_current = &f;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool-order", tmpdir);
    custos_audit_sink_config_t sc = sink_cfg("s1", 7);
    const custos_audit_sink_driver_t *drv[1] = {&fake_driver};
    custos_audit_options_t o = {.spool_dir = spool, .spool_max_bytes = 1 << 24, .queue_max_records = 100000};
    custos_audit_t *a = NULL;
    char err[256];
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    custos_audit_record_t r;
    for (unsigned i = 0; i < 500; i++) {
        seq_record(&r, i);
        custos_audit_submit(a, &r);
    }
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_sink_stats_t st;
    assert_int_equal(custos_audit_sink_stats(a, 0, &st), 0);
    assert_int_equal(st.delivered, 500);
    assert_int_equal(st.spooled, 0);
    assert_int_equal(st.dropped, 0);
    custos_audit_free(a);
    assert_sequence(&f, 0, 500);
    fake_dispose(&f);
}

static void test_outage_spool_replay(void **state)
{
    (void)state;
    fake_t f;
    fake_init(&f);
    f.fail_next = 5;
    fake_current = &f;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool-outage", tmpdir);
    custos_audit_sink_config_t sc = sink_cfg("s1", 50);
    const custos_audit_sink_driver_t *drv[1] = {&fake_driver};
    custos_audit_options_t o = {.spool_dir = spool,
                                .spool_max_bytes = 1 << 24,
                                .queue_max_records = 100000,
                                .retry_min_ms = 1,
                                .retry_max_ms = 4};
    custos_audit_t *a = NULL;
    char err[256];
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    custos_audit_record_t r;
    for (unsigned i = 0; i < 1000; i++) {
        seq_record(&r, i);
        custos_audit_submit(a, &r);
        if (i % 100 == 0)
            custos_audit_flush(a, 10000); /* interleave deliveries with submissions */
    }
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_sink_stats_t st;
    for (int i = 0; i < 2000; i++) { /* bounded wait for the replay to finish */
        custos_audit_sink_stats(a, 0, &st);
        if (st.delivered + st.replayed == 1000 && st.spool_bytes == 0)
            break;
        usleep(5000);
    }
    assert_true(st.spooled > 0);
    assert_int_equal(st.delivered + st.replayed, 1000);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.spool_bytes, 0);
    custos_audit_free(a);
    assert_true(f.calls > 5);
    assert_sequence(&f, 0, 1000);
    fake_dispose(&f);
}

static void test_restart_replays_spool(void **state)
{
    (void)state;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool-restart", tmpdir);
    custos_audit_sink_config_t sc = sink_cfg("s1", 16);
    const custos_audit_sink_driver_t *drv[1] = {&fake_driver};
    custos_audit_options_t o = {.spool_dir = spool,
                                .spool_max_bytes = 1 << 24,
                                .queue_max_records = 100000,
                                .retry_min_ms = 1,
                                .retry_max_ms = 2};
    char err[256];
    custos_audit_record_t r;

    /* first run: the sink is down the whole time */
    fake_t down;
    fake_init(&down);
    down.fail_always = true;
    fake_current = &down;
    custos_audit_t *a = NULL;
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    for (unsigned i = 0; i < 300; i++) {
        seq_record(&r, i);
        custos_audit_submit(a, &r);
    }
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_sink_stats_t st;
    custos_audit_sink_stats(a, 0, &st);
    assert_int_equal(st.spooled, 300);
    assert_true(st.spool_bytes > 0);
    custos_audit_free(a);
    assert_int_equal(down.ngot, 0);
    fake_dispose(&down);

    /* second run: the sink is up; old records come first, then new ones */
    fake_t up;
    fake_init(&up);
    fake_current = &up;
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    for (unsigned i = 300; i < 350; i++) {
        seq_record(&r, i);
        custos_audit_submit(a, &r);
    }
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    wait_count(&up, 350);
    custos_audit_free(a);
    assert_sequence(&up, 0, 350);
    fake_dispose(&up);

    /* third run: nothing left to replay */
    fake_t again;
    fake_init(&again);
    fake_current = &again;
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_free(a);
    assert_int_equal(again.ngot, 0);
    fake_dispose(&again);
}

static void test_spool_full_drops_counted(void **state)
{
    (void)state;
    fake_t f;
    fake_init(&f);
    f.fail_always = true;
    fake_current = &f;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool-full", tmpdir);
    custos_audit_sink_config_t sc = sink_cfg("tiny", 10);
    const custos_audit_sink_driver_t *drv[1] = {&fake_driver};
    custos_audit_options_t o = {.spool_dir = spool,
                                .spool_max_bytes = 8192,
                                .queue_max_records = 100000,
                                .retry_min_ms = 1000,
                                .retry_max_ms = 1000};
    custos_audit_t *a = NULL;
    char err[256];
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    custos_audit_record_t r;
    for (unsigned i = 0; i < 100; i++) {
        seq_record(&r, i);
        custos_audit_submit(a, &r);
    }
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_sink_stats_t st;
    custos_audit_sink_stats(a, 0, &st);
    assert_true(st.spooled > 0);
    assert_true(st.dropped > 0);
    assert_int_equal(st.spooled + st.dropped, 100);
    assert_true(st.spool_bytes <= 8192);
    /* the dropped count is exported */
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(custos_audit_metrics(a), &b), 0);
    char line[128];
    snprintf(line, sizeof(line), "custos_audit_dropped_total{sink=\"tiny\",reason=\"spool_full\"} %llu",
             (unsigned long long)st.dropped);
    assert_non_null(strstr(custos_buf_peek(&b), line));
    assert_non_null(strstr(custos_buf_peek(&b), "custos_audit_spool_bytes{sink=\"tiny\"}"));
    assert_non_null(strstr(custos_buf_peek(&b), "custos_audit_queue_depth{sink=\"tiny\"} 0"));
    custos_buf_dispose(&b);
    custos_audit_free(a);
    fake_dispose(&f);
}

static void test_queue_full_drops_counted(void **state)
{
    (void)state;
    /* a driver that blocks until released keeps the sink thread busy so the queue fills */
    fake_t f;
    fake_init(&f);
    fake_current = &f;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool-queue", tmpdir);
    custos_audit_sink_config_t sc = sink_cfg("q", 10);
    const custos_audit_sink_driver_t *drv[1] = {&fake_driver};
    custos_audit_options_t o = {.spool_dir = spool, .spool_max_bytes = 1 << 24, .queue_max_records = 16};
    custos_audit_t *a = NULL;
    char err[256];
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    pthread_mutex_lock(&f.mu); /* the sink thread blocks in deliver */
    custos_audit_record_t r;
    seq_record(&r, 0);
    custos_audit_submit(a, &r);
    while (true) { /* wait until the thread took the first record (queue empty again) */
        custos_buf_t b;
        custos_buf_init(&b, 0);
        custos_metrics_render(custos_audit_metrics(a), &b);
        bool empty = strstr(custos_buf_peek(&b), "custos_audit_queue_depth{sink=\"q\"} 0") != NULL;
        custos_buf_dispose(&b);
        if (empty)
            break;
        usleep(1000);
    }
    for (unsigned i = 1; i < 41; i++) {
        seq_record(&r, i);
        custos_audit_submit(a, &r);
    }
    custos_audit_sink_stats_t st;
    custos_audit_sink_stats(a, 0, &st);
    assert_int_equal(st.dropped, 40 - 16);
    pthread_mutex_unlock(&f.mu);
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_free(a);
    assert_int_equal(f.ngot, 17);
    fake_dispose(&f);
}

static void test_spool_single_owner(void **state)
{
    (void)state;
    fake_t f;
    fake_init(&f);
    fake_current = &f;
    char spool[128];
    snprintf(spool, sizeof(spool), "%s/spool-owner", tmpdir);
    custos_audit_sink_config_t sc = sink_cfg("s1", 10);
    const custos_audit_sink_driver_t *drv[1] = {&fake_driver};
    custos_audit_options_t o = {.spool_dir = spool, .spool_max_bytes = 1 << 20, .queue_max_records = 100};
    custos_audit_t *a = NULL, *b = NULL;
    char err[256] = "";
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &a, err, sizeof(err)), 0);
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &b, err, sizeof(err)), CUSTOS_EUNAVAIL);
    assert_null(b);
    assert_non_null(strstr(err, "in use by another process"));
    custos_audit_free(a);
    assert_int_equal(custos_audit_new_with(&o, &sc, drv, 1, &b, err, sizeof(err)), 0);
    custos_audit_free(b);
    fake_dispose(&f);
}

/* ---------- file sink ---------- */

static size_t count_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t n = 0;
    int c;
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    fclose(fp);
    return n;
}

static void test_file_sink_rotation(void **state)
{
    (void)state;
    char path[128], p1[140], p2[140], p3[140];
    snprintf(path, sizeof(path), "%s/requests.jsonl", tmpdir);
    snprintf(p1, sizeof(p1), "%s.1", path);
    snprintf(p2, sizeof(p2), "%s.2", path);
    snprintf(p3, sizeof(p3), "%s.3", path);
    custos_audit_sink_config_t c = file_cfg(path, 10, 1000, 2);
    c.max_age_s = 0;
    const custos_audit_sink_driver_t *d = custos_audit_sink_driver_find(CUSTOS_AUDIT_SINK_FILE);
    assert_ptr_equal(d, &custos_audit_sink_file);
    void *st = NULL;
    char err[256];
    assert_int_equal(d->open(&c, &st, err, sizeof(err)), 0);
    char rec[128];
    for (unsigned i = 0; i < 100; i++) {
        int n = snprintf(rec, sizeof(rec), "{\"n\":%03u,\"pad\":\"%090d\"}", i, 0); /* 108 bytes + newline */
        const char *recs[1] = {rec};
        size_t lens[1] = {(size_t)n};
        assert_int_equal(d->deliver(st, recs, lens, 1), 0);
    }
    d->close(st);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(sb.st_size <= 1000);
    assert_int_equal(stat(p1, &sb), 0);
    assert_true(sb.st_size <= 1000);
    assert_int_equal(stat(p2, &sb), 0);
    assert_int_not_equal(stat(p3, &sb), 0);
    /* 9 lines fit in 1000 bytes: 100 = 11 files of 9 + 1; the newest file holds 1, the two kept before it 9 each */
    assert_int_equal(count_lines(path), 1);
    assert_int_equal(count_lines(p1), 9);
    assert_int_equal(count_lines(p2), 9);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(rec, sizeof(rec), fp));
    fclose(fp);
    assert_non_null(strstr(rec, "\"n\":099"));

    /* age rotation */
    c.max_bytes = 1 << 20;
    c.max_age_s = 1;
    assert_int_equal(d->open(&c, &st, err, sizeof(err)), 0);
    const char *recs[1] = {"{\"age\":1}"};
    size_t lens[1] = {9};
    assert_int_equal(d->deliver(st, recs, lens, 1), 0);
    sleep(1);
    assert_int_equal(d->deliver(st, recs, lens, 1), 0);
    d->close(st);
    assert_int_equal(count_lines(path), 1);
    assert_int_equal(count_lines(p1), 2); /* the earlier file (099 and the first age record) */
}

/* One batch mixing records that lie back to back with their '\n' (written as they are) and loose strings (copied):
 * the file holds every line once, in order. */
static void test_file_sink_runs(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/runs.jsonl", tmpdir);
    custos_audit_sink_config_t c = file_cfg(path, 10, 1 << 20, 1);
    void *st = NULL;
    char err[256];
    assert_int_equal(custos_audit_sink_file.open(&c, &st, err, sizeof(err)), 0);
    static const char run1[] = "{\"n\":1}\n{\"n\":2}\n", run2[] = "{\"n\":5}\n{\"n\":6}\n";
    const char *recs[6] = {run1, run1 + 8, "{\"n\":3}", "{\"n\":4}", run2, run2 + 8};
    size_t lens[6] = {7, 7, 7, 7, 7, 7};
    assert_int_equal(custos_audit_sink_file.deliver(st, recs, lens, 6), 0);
    custos_audit_sink_file.close(st);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char got[128] = "";
    size_t n = fread(got, 1, sizeof(got) - 1, fp);
    fclose(fp);
    got[n] = 0;
    assert_string_equal(got, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n{\"n\":6}\n");
}

/* Whether a thread of this process is called name (/proc/self/task/N/comm; the name may take a moment to be set). */
static bool thread_named(const char *name)
{
    for (int tries = 0; tries < 200; tries++) {
        DIR *d = opendir("/proc/self/task");
        assert_non_null(d);
        bool found = false;
        for (struct dirent *de; !found && (de = readdir(d));) {
            char p[300], comm[32] = "";
            snprintf(p, sizeof(p), "/proc/self/task/%s/comm", de->d_name);
            FILE *f = de->d_name[0] != '.' ? fopen(p, "r") : NULL;
            if (!f)
                continue;
            if (fgets(comm, sizeof(comm), f))
                comm[strcspn(comm, "\n")] = 0;
            fclose(f);
            found = strcmp(comm, name) == 0;
        }
        closedir(d);
        if (found)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_file_sink_through_framework(void **state)
{
    (void)state;
    char path[128], spool[128];
    snprintf(path, sizeof(path), "%s/fw.jsonl", tmpdir);
    snprintf(spool, sizeof(spool), "%s/spool-fw", tmpdir);
    custos_audit_sink_config_t c = file_cfg(path, 100, 1 << 20, 1);
    const custos_audit_sink_driver_t *drv[1] = {&custos_audit_sink_file};
    custos_audit_options_t o = {.spool_dir = spool, .spool_max_bytes = 1 << 24, .queue_max_records = 1000};
    custos_audit_t *a = NULL;
    char err[256];
    assert_int_equal(custos_audit_new_with(&o, &c, drv, 1, &a, err, sizeof(err)), 0);
    assert_true(thread_named("audit-file"));
    custos_audit_record_t r;
    full_record(&r);
    for (unsigned i = 0; i < 25; i++)
        custos_audit_submit(a, &r);
    assert_int_equal(custos_audit_flush(a, 10000), 0);
    custos_audit_free(a);
    assert_int_equal(count_lines(path), 25);
}

/* ---------- config ---------- */

#define DIGEST_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define MIN_ALL                                                                                                        \
    "listeners:\n  - address: \"127.0.0.1:8443\"\n"                                                                    \
    "identity:\n  api_keys:\n    - name: demo\n      sha256: \"" DIGEST_TEST "\"\n"                                    \
    "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"                            \
    "deployments:\n  - name: demo\n    backends: [mock]\n"

static void test_config_diagnostics(void **state)
{
    (void)state;
    setenv("CUSTOS_TEST_SINK_TOKEN", "tok-123", 1);
    const char *yaml = MIN_ALL "diagnostics:\n"
                               "  mask_client_ip: false\n"
                               "  spool_dir: /var/spool/custos\n"
                               "  spool_max_bytes: 2097152\n"
                               "  queue_max_records: 1024\n"
                               "  sinks:\n"
                               "    - type: file\n"
                               "      path: /tmp/x.jsonl\n"
                               "    - type: syslog\n"
                               "      address: \"tcp://[::1]:6514\"\n"
                               "      facility: local3\n"
                               "    - type: http\n"
                               "      url: \"https://siem.example:8088/services/collector\"\n"
                               "      format: splunk_hec\n"
                               "      token_env: CUSTOS_TEST_SINK_TOKEN\n"
                               "      gzip: false\n"
                               "    - type: kafka\n"
                               "      brokers: \"k1:9092,k2:9092\"\n"
                               "      topic: custos-requests\n"
                               "      properties:\n"
                               "        linger.ms: 5\n"
                               "    - type: file\n"
                               "      name: second\n"
                               "      path: y.jsonl\n";
    custos_config_t *c = NULL;
    char err[512] = "";
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    const custos_diagnostics_config_t *d = &c->diagnostics;
    assert_false(d->mask_client_ip);
    assert_string_equal(d->spool_dir, "/var/spool/custos");
    assert_int_equal(d->spool_max_bytes, 2097152);
    assert_int_equal(d->queue_max_records, 1024);
    assert_int_equal(d->n_sinks, 5);
    assert_string_equal(d->sinks[0].name, "file-1");
    assert_int_equal(d->sinks[0].max_bytes, 104857600);
    assert_int_equal(d->sinks[0].max_files, 10);
    assert_int_equal(d->sinks[0].max_age_s, 86400);
    assert_int_equal(d->sinks[0].batch_max_records, 500);
    assert_string_equal(d->sinks[1].name, "syslog");
    assert_int_equal(d->sinks[1].transport, CUSTOS_SYSLOG_TCP);
    assert_string_equal(d->sinks[1].host, "::1");
    assert_int_equal(d->sinks[1].port, 6514);
    assert_int_equal(d->sinks[1].facility, 19);
    assert_string_equal(d->sinks[1].app_name, "custos");
    assert_int_equal(d->sinks[2].format, CUSTOS_HTTP_SINK_SPLUNK_HEC);
    assert_string_equal(d->sinks[2].token, "tok-123");
    assert_true(d->sinks[2].https);
    assert_string_equal(d->sinks[2].host, "siem.example");
    assert_int_equal(d->sinks[2].port, 8088);
    assert_string_equal(d->sinks[2].url_path, "/services/collector");
    assert_false(d->sinks[2].gzip);
    assert_int_equal(d->sinks[2].flush_ms, 1000);
    assert_int_equal(d->sinks[2].timeout_ms, 10000);
    assert_string_equal(d->sinks[3].topic, "custos-requests");
    assert_string_equal(d->sinks[3].client_id, "custos");
    assert_int_equal(d->sinks[3].n_properties, 1);
    assert_string_equal(d->sinks[3].property_keys[0], "linger.ms");
    assert_string_equal(d->sinks[3].property_values[0], "5");
    assert_string_equal(d->sinks[4].name, "second");
    assert_string_equal(d->sinks[4].path, "y.jsonl");
    /* reload detection: same text -> unchanged; a changed sink -> changed */
    custos_config_t *same = NULL, *other = NULL;
    assert_int_equal(custos_config_load_string("t.yaml", yaml, strlen(yaml), &same, err, sizeof(err)), 0);
    assert_false(custos_audit_config_changed(&c->diagnostics, &same->diagnostics));
    char *changed = strdup(yaml);
    memcpy(strstr(changed, "local3"), "local4", 6);
    assert_int_equal(custos_config_load_string("t.yaml", changed, strlen(changed), &other, err, sizeof(err)), 0);
    assert_true(custos_audit_config_changed(&c->diagnostics, &other->diagnostics));
    free(changed);
    custos_config_unref(same);
    custos_config_unref(other);
    custos_config_unref(c);

    /* defaults without the section */
    rc = custos_config_load_string("t.yaml", MIN_ALL, strlen(MIN_ALL), &c, err, sizeof(err));
    assert_int_equal(rc, 0);
    assert_true(c->diagnostics.mask_client_ip);
    assert_string_equal(c->diagnostics.spool_dir, "spool");
    assert_int_equal(c->diagnostics.n_sinks, 0);
    custos_config_unref(c);

    /* errors */
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {MIN_ALL "diagnostics:\n  sinks:\n    - type: file\n      path: a\n      address: x\n",
         "t.yaml:18:7: unknown key 'address' in diagnostics.sinks[0]"},
        {MIN_ALL "diagnostics:\n  sinks:\n    - type: file\n",
         "t.yaml:16:7: diagnostics.sinks[0]: missing required key 'path'"},
        {MIN_ALL "diagnostics:\n  sinks:\n    - type: syslog\n      address: \"http://x:1\"\n",
         "t.yaml:17:16: diagnostics.sinks[0].address: must start with udp://, tcp:// or tls://"},
        {MIN_ALL "diagnostics:\n  sinks:\n    - type: nope\n",
         "t.yaml:16:13: diagnostics.sinks[0].type: expected one of file, syslog, http, kafka"},
        {MIN_ALL "diagnostics:\n  queue_max_records: 1\n",
         "t.yaml:15:22: diagnostics.queue_max_records: 1 is out of range (min 16, max 10000000)"},
        {MIN_ALL "diagnostics:\n  sinks:\n    - type: file\n      path: a\n    - type: file\n      name: file-1\n      "
                 "path: b\n",
         "t.yaml:19:13: diagnostics.sinks[1].name: duplicate sink name 'file-1' (also diagnostics.sinks[0])"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = NULL;
        rc = custos_config_load_string("t.yaml", bad[i].yaml, strlen(bad[i].yaml), &c, err, sizeof(err));
        assert_true(rc < 0);
        assert_null(c);
        if (strcmp(err, bad[i].want) != 0)
            fail_msg("case %zu: got '%s', want '%s'", i, err, bad[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_exact_json),
        cmocka_unit_test(test_record_largest_and_escaped),
        cmocka_unit_test(test_record_names_and_versions),
        cmocka_unit_test(test_ip_masking),
        cmocka_unit_test(test_deliver_in_order),
        cmocka_unit_test(test_outage_spool_replay),
        cmocka_unit_test(test_restart_replays_spool),
        cmocka_unit_test(test_spool_full_drops_counted),
        cmocka_unit_test(test_queue_full_drops_counted),
        cmocka_unit_test(test_spool_single_owner),
        cmocka_unit_test(test_file_sink_rotation),
        cmocka_unit_test(test_file_sink_runs),
        cmocka_unit_test(test_file_sink_through_framework),
        cmocka_unit_test(test_config_diagnostics),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
