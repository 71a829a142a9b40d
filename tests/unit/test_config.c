/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for src/config: full and default configs, every kind of error with its line:column,
 * key_env / key_file hashing, relative paths, lookups, the summary and the refcount. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "config/config.h"
#include "util/err.h"

#define DIGEST_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" /* sha256("test") */

/* A minimal valid config; tests append or prepend fragments. */
#define MIN_LISTENERS "listeners:\n  - address: \"127.0.0.1:8443\"\n"
#define MIN_IDENTITY "identity:\n  api_keys:\n    - name: demo\n      sha256: \"" DIGEST_TEST "\"\n"
#define MIN_BACKENDS "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"
#define MIN_DEPLOYMENTS "deployments:\n  - name: demo\n    backends: [mock]\n"
#define MIN_ALL MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS MIN_DEPLOYMENTS

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/custos-config-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes content to a new file under tmpdir; returns its malloc'd path. */
static char *write_tmp(const char *base, const char *content)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", tmpdir, base) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

static char *write_mkstemp(const char *content)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/fileXXXXXX", tmpdir) > 0);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

static custos_config_t *load_ok(const char *yaml)
{
    custos_config_t *c = NULL;
    char err[512] = "";
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("unexpected error: %s", err);
    assert_non_null(c);
    return c;
}

/* Loads yaml, expects failure with exactly `want` as the message. */
static void load_err(const char *yaml, const char *want)
{
    custos_config_t *c = (custos_config_t *)1;
    char err[512] = "";
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));
    assert_true(rc < 0);
    assert_null(c);
    if (strcmp(err, want) != 0)
        fail_msg("error mismatch\n  got:  %s\n  want: %s", err, want);
}

static void sha256_hex(const char *s, unsigned char out[32])
{
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
}

/* ---------- valid configs ---------- */

static void test_full_config(void **state)
{
    (void)state;
    char *cert = write_mkstemp("CERT");
    char *key = write_mkstemp("KEY");
    char *ca = write_mkstemp("CA");
    char *keyfile = write_mkstemp("filekey\n");
    char *upkey = write_mkstemp("sk-upstream-123\r\n");
    setenv("CUSTOS_TEST_ENV_KEY", "envkey", 1);
    setenv("CUSTOS_TEST_AOAI_KEY", "aoai-secret", 1);
    char *yaml = NULL;
    assert_true(asprintf(&yaml,
                         "server:\n"
                         "  workers: 4\n"
                         "  drain_timeout_ms: 5000\n"
                         "  log_level: debug\n"
                         "listeners:\n"
                         "  - address: \"0.0.0.0:8443\"\n"
                         "    tls:\n"
                         "      cert: %s\n"
                         "      key: %s\n"
                         "      min_version: \"1.3\"\n"
                         "      ciphers: \"ECDHE-RSA-AES128-GCM-SHA256\"\n"
                         "  - address: \"[::1]:8080\"\n"
                         "  - address: \"unix:/run/custos.sock\"\n"
                         "  - address: \"10.0.0.1:80\"\n"
                         "    insecure: true\n"
                         "limits:\n"
                         "  max_header_bytes: 32768\n"
                         "  max_headers: 50\n"
                         "  max_body_bytes: 1048576\n"
                         "  max_url_bytes: 4096\n"
                         "  max_json_depth: 32\n"
                         "  max_response_bytes: 2097152\n"
                         "  max_sse_event_bytes: 65536\n"
                         "  header_timeout_ms: 1000\n"
                         "  body_timeout_ms: 2000\n"
                         "  idle_timeout_ms: 3000\n"
                         "  max_connections: 100\n"
                         "upstream:\n"
                         "  connect_timeout_ms: 1001\n"
                         "  first_byte_timeout_ms: 1002\n"
                         "  idle_timeout_ms: 1003\n"
                         "  max_attempts: 5\n"
                         "  backoff_base_ms: 50\n"
                         "  backoff_max_ms: 500\n"
                         "  max_retry_after_ms: 0x10\n"
                         "  pool_max_idle: 8\n"
                         "identity:\n"
                         "  api_keys:\n"
                         "    - name: hex\n"
                         "      sha256: \"" DIGEST_TEST "\"\n"
                         "    - {name: env, key_env: CUSTOS_TEST_ENV_KEY}\n"
                         "    - name: file\n"
                         "      key_file: %s\n"
                         "backends:\n"
                         "  - name: aoai-eastus\n"
                         "    provider: azure\n"
                         "    url: \"https://example.openai.azure.com\"\n"
                         "    api_version: \"2024-06-01\"\n"
                         "    deployment: gpt4o-prod\n"
                         "    auth: {api_key_env: CUSTOS_TEST_AOAI_KEY}\n"
                         "    region: eastus\n"
                         "    data_zone: us\n"
                         "    attributes: {no_training: true, zero_data_retention: true}\n"
                         "    tls: {ca_file: %s, verify: false}\n"
                         "    priority: 5\n"
                         "    max_connections: 32\n"
                         "  - name: oai\n"
                         "    provider: openai\n"
                         "    url: \"https://api.openai.com/v1/\"\n"
                         "    model: gpt-4o-2024-08-06\n"
                         "    auth: {api_key_file: %s}\n"
                         "    region: eastus\n"
                         "    data_zone: us\n"
                         "    priority: -1\n"
                         "  - name: local\n"
                         "    provider: openai-compatible\n"
                         "    url: \"http://[::1]:9000\"\n"
                         "deployments:\n"
                         "  - name: gpt-4o\n"
                         "    model: gpt-4o\n"
                         "    type: regional\n"
                         "    region: eastus\n"
                         "    backends: [aoai-eastus, oai]\n"
                         "  - name: zone\n"
                         "    type: datazone\n"
                         "    data_zone: us\n"
                         "    backends: [oai]\n"
                         "  - name: any\n"
                         "    backends:\n"
                         "      - local\n",
                         cert, key, keyfile, ca, upkey) > 0);
    custos_config_t *c = load_ok(yaml);

    assert_string_equal(c->source, "t.yaml");
    assert_int_equal(c->server.workers, 4);
    assert_int_equal(c->server.drain_timeout_ms, 5000);
    assert_int_equal(c->server.log_level, CUSTOS_LOG_DEBUG);

    assert_int_equal(c->n_listeners, 4);
    const custos_listener_config_t *l = &c->listeners[0];
    assert_string_equal(l->address, "0.0.0.0:8443");
    assert_int_equal(l->kind, CUSTOS_ADDR_TCP);
    assert_string_equal(l->host, "0.0.0.0");
    assert_int_equal(l->port, 8443);
    assert_false(l->loopback);
    assert_false(l->insecure);
    assert_non_null(l->tls);
    assert_string_equal(l->tls->cert, cert);
    assert_string_equal(l->tls->key, key);
    assert_int_equal(l->tls->min_version, 0x0304);
    assert_string_equal(l->tls->ciphers, "ECDHE-RSA-AES128-GCM-SHA256");
    l = &c->listeners[1];
    assert_string_equal(l->host, "::1");
    assert_int_equal(l->port, 8080);
    assert_true(l->loopback);
    assert_null(l->tls);
    l = &c->listeners[2];
    assert_int_equal(l->kind, CUSTOS_ADDR_UNIX);
    assert_string_equal(l->unix_path, "/run/custos.sock");
    assert_null(l->host);
    assert_true(l->loopback);
    l = &c->listeners[3];
    assert_true(l->insecure);
    assert_false(l->loopback);
    assert_int_equal(l->port, 80);

    assert_int_equal(c->limits.max_header_bytes, 32768);
    assert_int_equal(c->limits.max_headers, 50);
    assert_int_equal(c->limits.max_body_bytes, 1048576);
    assert_int_equal(c->limits.max_url_bytes, 4096);
    assert_int_equal(c->limits.max_json_depth, 32);
    assert_int_equal(c->limits.max_response_bytes, 2097152);
    assert_int_equal(c->limits.max_sse_event_bytes, 65536);
    assert_int_equal(c->limits.header_timeout_ms, 1000);
    assert_int_equal(c->limits.body_timeout_ms, 2000);
    assert_int_equal(c->limits.idle_timeout_ms, 3000);
    assert_int_equal(c->limits.max_connections, 100);

    assert_int_equal(c->upstream.connect_timeout_ms, 1001);
    assert_int_equal(c->upstream.first_byte_timeout_ms, 1002);
    assert_int_equal(c->upstream.idle_timeout_ms, 1003);
    assert_int_equal(c->upstream.max_attempts, 5);
    assert_int_equal(c->upstream.backoff_base_ms, 50);
    assert_int_equal(c->upstream.backoff_max_ms, 500);
    assert_int_equal(c->upstream.max_retry_after_ms, 16); /* core-schema hex integer */
    assert_int_equal(c->upstream.pool_max_idle, 8);

    unsigned char d[32];
    assert_int_equal(c->identity.n_api_keys, 3);
    assert_string_equal(c->identity.api_keys[0].name, "hex");
    sha256_hex("test", d);
    assert_memory_equal(c->identity.api_keys[0].sha256, d, 32);
    assert_string_equal(c->identity.api_keys[1].name, "env");
    sha256_hex("envkey", d);
    assert_memory_equal(c->identity.api_keys[1].sha256, d, 32);
    assert_string_equal(c->identity.api_keys[2].name, "file");
    sha256_hex("filekey", d); /* trailing newline stripped */
    assert_memory_equal(c->identity.api_keys[2].sha256, d, 32);

    assert_int_equal(c->n_backends, 3);
    const custos_backend_config_t *b = custos_config_find_backend(c, "aoai-eastus");
    assert_ptr_equal(b, &c->backends[0]);
    assert_int_equal(b->provider, CUSTOS_PROVIDER_AZURE);
    assert_string_equal(b->url, "https://example.openai.azure.com");
    assert_true(b->https);
    assert_string_equal(b->host, "example.openai.azure.com");
    assert_int_equal(b->port, 443);
    assert_string_equal(b->path_prefix, "");
    assert_string_equal(b->api_version, "2024-06-01");
    assert_string_equal(b->deployment, "gpt4o-prod");
    assert_null(b->model);
    assert_string_equal(b->api_key, "aoai-secret");
    assert_int_equal(b->api_key_len, 11);
    assert_string_equal(b->region, "eastus");
    assert_string_equal(b->data_zone, "us");
    assert_true(b->no_training);
    assert_true(b->zero_data_retention);
    assert_string_equal(b->ca_file, ca);
    assert_false(b->tls_verify);
    assert_int_equal(b->priority, 5);
    assert_int_equal(b->max_connections, 32);

    b = custos_config_find_backend(c, "oai");
    assert_non_null(b);
    assert_int_equal(b->provider, CUSTOS_PROVIDER_OPENAI);
    assert_string_equal(b->host, "api.openai.com");
    assert_string_equal(b->path_prefix, "/v1");
    assert_null(b->api_version);
    assert_string_equal(b->model, "gpt-4o-2024-08-06");
    assert_string_equal(b->api_key, "sk-upstream-123"); /* CRLF stripped */
    assert_true(b->tls_verify);
    assert_int_equal(b->priority, -1);
    assert_int_equal(b->max_connections, 256);

    b = custos_config_find_backend(c, "local");
    assert_non_null(b);
    assert_int_equal(b->provider, CUSTOS_PROVIDER_OPENAI_COMPATIBLE);
    assert_false(b->https);
    assert_string_equal(b->host, "::1");
    assert_int_equal(b->port, 9000);
    assert_null(b->api_key);
    assert_null(b->region);

    assert_int_equal(c->n_deployments, 3);
    const custos_deployment_config_t *dep = custos_config_find_deployment(c, "gpt-4o");
    assert_ptr_equal(dep, &c->deployments[0]);
    assert_string_equal(dep->model, "gpt-4o");
    assert_int_equal(dep->type, CUSTOS_DEPLOYMENT_REGIONAL);
    assert_string_equal(dep->region, "eastus");
    assert_null(dep->data_zone);
    assert_int_equal(dep->n_backends, 2);
    /* sorted by priority: oai (-1) before aoai-eastus (5) */
    assert_string_equal(dep->backends[0]->name, "oai");
    assert_string_equal(dep->backends[1]->name, "aoai-eastus");
    dep = custos_config_find_deployment(c, "zone");
    assert_int_equal(dep->type, CUSTOS_DEPLOYMENT_DATAZONE);
    assert_string_equal(dep->data_zone, "us");
    assert_string_equal(dep->model, "zone"); /* default = name */
    dep = custos_config_find_deployment(c, "any");
    assert_int_equal(dep->type, CUSTOS_DEPLOYMENT_GLOBAL);
    assert_int_equal(dep->n_backends, 1);
    assert_ptr_equal(dep->backends[0], custos_config_find_backend(c, "local"));

    /* exact, case-sensitive lookups */
    assert_null(custos_config_find_deployment(c, "GPT-4o"));
    assert_null(custos_config_find_deployment(c, "gpt-4"));
    assert_null(custos_config_find_backend(c, "OAI"));
    assert_null(custos_config_find_deployment(NULL, "any"));

    custos_config_unref(c);
    free(yaml);
    free(cert);
    free(key);
    free(ca);
    free(keyfile);
    free(upkey);
    unsetenv("CUSTOS_TEST_ENV_KEY");
    unsetenv("CUSTOS_TEST_AOAI_KEY");
}

static void test_defaults(void **state)
{
    (void)state;
    custos_config_t *c = load_ok(MIN_ALL);
    assert_int_equal(c->server.workers, 0);
    assert_int_equal(c->server.drain_timeout_ms, 30000);
    assert_int_equal(c->server.log_level, CUSTOS_LOG_INFO);
    assert_int_equal(c->n_listeners, 1);
    assert_string_equal(c->listeners[0].host, "127.0.0.1");
    assert_int_equal(c->listeners[0].port, 8443);
    assert_true(c->listeners[0].loopback);
    assert_false(c->listeners[0].insecure);
    assert_null(c->listeners[0].tls);
    assert_int_equal(c->limits.max_header_bytes, 16384);
    assert_int_equal(c->limits.max_headers, 100);
    assert_int_equal(c->limits.max_body_bytes, 4194304);
    assert_int_equal(c->limits.max_url_bytes, 8192);
    assert_int_equal(c->limits.max_json_depth, 64);
    assert_int_equal(c->limits.max_response_bytes, 16777216);
    assert_int_equal(c->limits.max_sse_event_bytes, 1048576);
    assert_int_equal(c->limits.header_timeout_ms, 10000);
    assert_int_equal(c->limits.body_timeout_ms, 30000);
    assert_int_equal(c->limits.idle_timeout_ms, 60000);
    assert_int_equal(c->limits.max_connections, 16384);
    assert_int_equal(c->upstream.connect_timeout_ms, 5000);
    assert_int_equal(c->upstream.first_byte_timeout_ms, 120000);
    assert_int_equal(c->upstream.idle_timeout_ms, 120000);
    assert_int_equal(c->upstream.max_attempts, 3);
    assert_int_equal(c->upstream.backoff_base_ms, 100);
    assert_int_equal(c->upstream.backoff_max_ms, 2000);
    assert_int_equal(c->upstream.max_retry_after_ms, 10000);
    assert_int_equal(c->upstream.pool_max_idle, 64);
    const custos_backend_config_t *b = &c->backends[0];
    assert_int_equal(b->provider, CUSTOS_PROVIDER_OPENAI);
    assert_false(b->https);
    assert_string_equal(b->host, "127.0.0.1");
    assert_int_equal(b->port, 8081);
    assert_string_equal(b->path_prefix, "");
    assert_null(b->api_version);
    assert_null(b->deployment);
    assert_null(b->model);
    assert_null(b->api_key);
    assert_null(b->region);
    assert_null(b->data_zone);
    assert_false(b->no_training);
    assert_false(b->zero_data_retention);
    assert_null(b->ca_file);
    assert_true(b->tls_verify);
    assert_int_equal(b->priority, 0);
    assert_int_equal(b->max_connections, 256);
    const custos_deployment_config_t *d = &c->deployments[0];
    assert_string_equal(d->model, "demo");
    assert_int_equal(d->type, CUSTOS_DEPLOYMENT_GLOBAL);
    assert_null(d->region);
    assert_null(d->data_zone);
    custos_config_unref(c);
}

static void test_tls_and_azure_defaults(void **state)
{
    (void)state;
    char *cert = write_mkstemp("CERT");
    char *yaml = NULL;
    assert_true(asprintf(&yaml,
                         "listeners:\n  - address: \"0.0.0.0:443\"\n    tls: {cert: %s, key: %s}\n" MIN_IDENTITY
                         "backends:\n  - {name: a, provider: azure, url: \"https://x.openai.azure.com:8443/base\"}\n"
                         "deployments:\n  - {name: d, backends: [a]}\n",
                         cert, cert) > 0);
    custos_config_t *c = load_ok(yaml);
    assert_int_equal(c->listeners[0].tls->min_version, 0x0303);
    assert_string_equal(c->listeners[0].tls->ciphers, CUSTOS_TLS_DEFAULT_CIPHERS);
    assert_string_equal(c->backends[0].api_version, "2024-10-21");
    assert_null(c->backends[0].deployment);
    assert_int_equal(c->backends[0].port, 8443);
    assert_string_equal(c->backends[0].path_prefix, "/base");
    custos_config_unref(c);
    free(yaml);
    free(cert);
}

static void test_json_config(void **state)
{
    (void)state;
    const char *json =
        "{\"listeners\": [{\"address\": \"localhost:8000\"}],\n"
        " \"identity\": {\"api_keys\": [{\"name\": \"k\", \"sha256\": \"" DIGEST_TEST "\"}]},\n"
        " \"backends\": [{\"name\": \"m\", \"provider\": \"openai\", \"url\": \"http://127.0.0.1:1\"}],\n"
        " \"deployments\": [{\"name\": \"d\", \"backends\": [\"m\"]}],\n"
        " \"limits\": {\"max_headers\": 20}}\n";
    custos_config_t *c = load_ok(json);
    assert_true(c->listeners[0].loopback);
    assert_int_equal(c->limits.max_headers, 20);
    custos_config_unref(c);
    /* JSON duplicate keys are rejected too */
    load_err("{\"server\": {\"workers\": 1, \"workers\": 2}}", "t.yaml:1:27: duplicate key 'workers'");
}

/* ---------- errors with positions ---------- */

static void test_err_unknown_key(void **state)
{
    (void)state;
    load_err("listeners:\n  - address: \"127.0.0.1:8443\"\n    listner: x\n",
             "t.yaml:3:5: unknown key 'listner' in listeners[0]");
    load_err(MIN_ALL "firewall: {}\n", "t.yaml:14:1: unknown key 'firewall' at the top level");
    load_err("identity:\n  saml: []\n" MIN_LISTENERS, "t.yaml:2:3: unknown key 'saml' in identity");
    load_err("server:\n  workers: 1\n  bogus: 2\n", "t.yaml:3:3: unknown key 'bogus' in server");
}

static void test_err_bad_type(void **state)
{
    (void)state;
    load_err("server:\n  workers: \"4\"\n",
             "t.yaml:2:12: server.workers: expected an integer, got a string (write the number without quotes or "
             "suffix)");
    load_err("server:\n  workers: 4k\n",
             "t.yaml:2:12: server.workers: expected an integer, got a string (write the number without quotes or "
             "suffix)");
    load_err("server: [1]\n", "t.yaml:1:9: server: expected a mapping, got a sequence");
    load_err("listeners: {address: x}\n", "t.yaml:1:12: listeners: expected a sequence, got a mapping");
    load_err("limits:\n  max_headers: 1.5\n" MIN_LISTENERS,
             "t.yaml:2:16: limits.max_headers: expected an integer, got a number");
    load_err("- a\n", "t.yaml:1:1: the configuration must be a mapping, got a sequence");
    load_err("", "t.yaml:1:1: the configuration must be a mapping, got an empty document");
}

static void test_err_duplicate_key(void **state)
{
    (void)state;
    load_err("server:\n  workers: 1\n  workers: 2\n", "t.yaml:3:3: duplicate key 'workers'");
    load_err(MIN_ALL "listeners: []\n", "t.yaml:14:1: duplicate key 'listeners'");
}

static void test_err_yes_as_bool(void **state)
{
    (void)state;
    load_err("listeners:\n  - address: \"0.0.0.0:80\"\n    insecure: yes\n",
             "t.yaml:3:15: listeners[0].insecure: expected a boolean (true or false), got the string 'yes' (YAML 1.2: "
             "only true and false are booleans)");
    load_err("listeners:\n  - address: \"0.0.0.0:80\"\n    insecure: 1\n",
             "t.yaml:3:15: listeners[0].insecure: expected a boolean (true or false), got an integer");
    /* core-schema spellings are booleans */
    custos_config_t *c = load_ok(MIN_IDENTITY MIN_BACKENDS MIN_DEPLOYMENTS
                                 "listeners:\n  - address: \"0.0.0.0:80\"\n    insecure: True\n");
    assert_true(c->listeners[0].insecure);
    custos_config_unref(c);
    /* yes in a string field stays a string */
    c = load_ok(MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS "deployments:\n  - {name: d, model: yes, backends: [mock]}\n");
    assert_string_equal(c->deployments[0].model, "yes");
    custos_config_unref(c);
}

static void test_err_range(void **state)
{
    (void)state;
    load_err("limits:\n  max_headers: 5\n" MIN_LISTENERS,
             "t.yaml:2:16: limits.max_headers: 5 is out of range (min 8, max 1000)");
    load_err("limits:\n  max_body_bytes: 268435457\n" MIN_LISTENERS,
             "t.yaml:2:19: limits.max_body_bytes: 268435457 is out of range (min 1024, max 268435456)");
    load_err("server:\n  workers: -1\n", "t.yaml:2:12: server.workers: -1 is out of range (min 0, max 256)");
    load_err("upstream:\n  max_attempts: 11\n" MIN_LISTENERS,
             "t.yaml:2:17: upstream.max_attempts: 11 is out of range (min 1, max 10)");
    load_err("server:\n  workers: 99999999999999999999\n",
             "t.yaml:2:12: integer '99999999999999999999' is out of range (64-bit signed)");
    load_err("upstream:\n  backoff_base_ms: 500\n  backoff_max_ms: 100\n" MIN_LISTENERS,
             "t.yaml:3:19: upstream.backoff_max_ms: 100 is below upstream.backoff_base_ms (500)");
}

static void test_err_missing_required(void **state)
{
    (void)state;
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - name: mock\n    provider: openai\n" MIN_DEPLOYMENTS,
             "t.yaml:8:5: backends[0]: missing required key 'url'");
    load_err(MIN_IDENTITY, "t.yaml:1:1: missing required key 'listeners'");
    load_err(MIN_LISTENERS MIN_BACKENDS MIN_DEPLOYMENTS,
             "t.yaml:1:1: identity.api_keys: at least one key is required (custos is never open by default)");
    load_err(MIN_LISTENERS "identity:\n  api_keys: []\n" MIN_BACKENDS MIN_DEPLOYMENTS,
             "t.yaml:4:13: identity.api_keys: at least one key is required (custos is never open by default)");
    load_err("listeners: []\n", "t.yaml:1:12: listeners: at least one entry is required");
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - name: x\n" MIN_BACKENDS MIN_DEPLOYMENTS,
             "t.yaml:5:7: identity.api_keys[0]: one of sha256, key_env, key_file is required");
}

static void test_err_enum(void **state)
{
    (void)state;
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - name: mock\n    provider: openai\n    url: \"http://h\"\n"
                                        "  - name: two\n    provider: bedrock\n",
             "t.yaml:12:15: backends[1].provider: expected one of openai, azure, openai-compatible");
    load_err("server: {log_level: verbose}\n",
             "t.yaml:1:21: server.log_level: expected one of debug, info, warn, error");
}

static void test_err_unknown_backend(void **state)
{
    (void)state;
    load_err(MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS "deployments:\n  - name: demo\n    backends: [mock, nope]\n",
             "t.yaml:13:22: deployments[0].backends[1]: unknown backend 'nope'");
    load_err(MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS "deployments:\n  - name: demo\n    backends: [mock, mock]\n",
             "t.yaml:13:22: deployments[0].backends[1]: backend 'mock' is listed twice");
    load_err(MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS "deployments:\n  - name: demo\n    backends: [Mock]\n",
             "t.yaml:13:16: deployments[0].backends[0]: unknown backend 'Mock'");
}

static void test_err_region(void **state)
{
    (void)state;
    const char *backends = "backends:\n"
                           "  - {name: e, provider: openai, url: \"http://h\", region: eastus, data_zone: us}\n"
                           "  - {name: w, provider: openai, url: \"http://h\", region: westeurope, data_zone: eu}\n"
                           "  - {name: n, provider: openai, url: \"http://h\"}\n";
    char *y = NULL;
    assert_true(asprintf(&y,
                         MIN_LISTENERS MIN_IDENTITY "%sdeployments:\n  - name: r\n    type: regional\n"
                                                    "    region: eastus\n    backends: [e, w]\n",
                         backends) > 0);
    load_err(y, "t.yaml:15:19: deployments[0].backends[1]: backend w is in region westeurope, outside regional "
                "deployment r's region eastus");
    free(y);
    assert_true(asprintf(&y,
                         MIN_LISTENERS MIN_IDENTITY "%sdeployments:\n  - name: r\n    type: regional\n"
                                                    "    region: eastus\n    backends: [n]\n",
                         backends) > 0);
    load_err(y, "t.yaml:15:16: deployments[0].backends[0]: backend n has no region; regional deployment r needs "
                "region eastus");
    free(y);
    assert_true(asprintf(&y,
                         MIN_LISTENERS MIN_IDENTITY "%sdeployments:\n  - name: z\n    type: datazone\n"
                                                    "    data_zone: eu\n    backends:\n      - w\n      - e\n",
                         backends) > 0);
    load_err(y, "t.yaml:17:9: deployments[0].backends[1]: backend e is in data zone us, outside datazone deployment "
                "z's data zone eu");
    free(y);
    assert_true(asprintf(&y,
                         MIN_LISTENERS MIN_IDENTITY "%sdeployments:\n  - name: r\n    type: regional\n"
                                                    "    backends: [e]\n",
                         backends) > 0);
    load_err(y, "t.yaml:12:5: deployments[0]: type regional requires region");
    free(y);
    assert_true(asprintf(&y,
                         MIN_LISTENERS MIN_IDENTITY "%sdeployments:\n  - name: g\n    region: eastus\n"
                                                    "    backends: [e]\n",
                         backends) > 0);
    load_err(y, "t.yaml:13:5: deployments[0].region: only valid for type regional");
    free(y);
    /* a valid datazone deployment */
    assert_true(asprintf(&y,
                         MIN_LISTENERS MIN_IDENTITY "%sdeployments:\n  - name: z\n    type: datazone\n"
                                                    "    data_zone: eu\n    backends: [w]\n",
                         backends) > 0);
    custos_config_t *c = load_ok(y);
    assert_string_equal(c->deployments[0].backends[0]->name, "w");
    custos_config_unref(c);
    free(y);
}

static void test_err_plain_http(void **state)
{
    (void)state;
    load_err("listeners:\n  - address: \"0.0.0.0:8080\"\n",
             "t.yaml:2:14: listeners[0].address: plain HTTP on a non-loopback address needs insecure: true");
    load_err("listeners:\n  - address: \"[::]:8080\"\n",
             "t.yaml:2:14: listeners[0].address: plain HTTP on a non-loopback address needs insecure: true");
    load_err("listeners:\n  - address: \"::1:8080\"\n",
             "t.yaml:2:14: listeners[0].address: IPv6 addresses need brackets, e.g. [::1]:8443");
    load_err("listeners:\n  - address: \"127.0.0.1:0\"\n",
             "t.yaml:2:14: listeners[0].address: port must be an integer 1..65535");
    load_err("listeners:\n  - address: \"unix:rel.sock\"\n",
             "t.yaml:2:14: listeners[0].address: unix socket path must be absolute (unix:/path/to.sock)");
    load_err("listeners:\n  - address: \"127.0.0.1:80\"\n  - address: \"127.0.0.1:80\"\n",
             "t.yaml:3:14: listeners[1].address: same address as listeners[0]");
    /* 127.0.0.0/8 and localhost are loopback */
    custos_config_t *c = load_ok(MIN_IDENTITY MIN_BACKENDS MIN_DEPLOYMENTS
                                 "listeners:\n  - address: \"127.1.2.3:80\"\n  - address: \"LOCALHOST:81\"\n");
    assert_true(c->listeners[0].loopback);
    assert_true(c->listeners[1].loopback);
    custos_config_unref(c);
}

static void test_err_alias_anchor_tag(void **state)
{
    (void)state;
    load_err("server: &s\n  workers: 1\nlimits: *s\n",
             "t.yaml:1:9: YAML anchors and aliases are not supported (write the value out in full)");
    load_err("a: 1\nb: *x\n", "t.yaml:2:4: YAML anchors and aliases are not supported (write the value out in full)");
    load_err("server:\n  workers: !!int 3\n", "t.yaml:2:12: YAML tags are not supported");
    load_err("a: 1\n---\nb: 2\n", "t.yaml:2:1: only one YAML document is allowed");
    load_err("? [a]\n: 1\n", "t.yaml:1:3: complex mapping keys (a sequence as a key) are not supported");
}

static void test_err_syntax(void **state)
{
    (void)state;
    custos_config_t *c = NULL;
    char err[512];
    const char *y = "server:\n  workers: [1, 2\n";
    assert_int_equal(custos_config_load_string("t.yaml", y, strlen(y), &c, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(c);
    assert_true(strncmp(err, "t.yaml:3:1: YAML syntax error: ", 31) == 0);
    y = "a: \"\\xff\"\n"; /* a valid document: the escape is U+00FF */
    assert_int_equal(custos_config_load_string("t.yaml", y, strlen(y), &c, err, sizeof(err)), CUSTOS_EINVAL);
    assert_string_equal(err, "t.yaml:1:1: unknown key 'a' at the top level");
    const char bad_utf8[] = "a: \xff\xfe\n";
    assert_int_equal(custos_config_load_string("t.yaml", bad_utf8, sizeof(bad_utf8) - 1, &c, err, sizeof(err)),
                     CUSTOS_EINVAL);
    assert_non_null(strstr(err, "YAML syntax error"));
}

static void depth_doc(char *buf, size_t n, int brackets)
{
    size_t j = 0;
    j += (size_t)snprintf(buf, n, "a: ");
    for (int i = 0; i < brackets; i++)
        buf[j++] = '[';
    for (int i = 0; i < brackets; i++)
        buf[j++] = ']';
    buf[j++] = '\n';
    buf[j] = 0;
}

static void test_err_depth(void **state)
{
    (void)state;
    char doc[256];
    /* root mapping is depth 1; 63 sequences inside reach depth 64 (allowed) */
    depth_doc(doc, sizeof(doc), 63);
    load_err(doc, "t.yaml:1:1: unknown key 'a' at the top level");
    depth_doc(doc, sizeof(doc), 64);
    load_err(doc, "t.yaml:1:67: nesting deeper than 64 levels");
    custos_config_t *c = NULL;
    char err[256];
    assert_int_equal(custos_config_load_string("t.yaml", doc, strlen(doc), &c, err, sizeof(err)), CUSTOS_EDEPTH);
}

static void test_err_too_big(void **state)
{
    (void)state;
    size_t n = CUSTOS_CONFIG_MAX_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    custos_config_t *c = NULL;
    char err[256];
    assert_int_equal(custos_config_load_string("t.yaml", big, n, &c, err, sizeof(err)), CUSTOS_ETOOBIG);
    assert_string_equal(err, "t.yaml:1:1: document is larger than 4194304 bytes (4 MiB)");
    char *path = write_tmp("big.yaml", "");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(big, 1, n, f), n);
    fclose(f);
    assert_int_equal(custos_config_load_file(path, &c, err, sizeof(err)), CUSTOS_ETOOBIG);
    assert_non_null(strstr(err, ":1:1: configuration is larger than 4194304 bytes (4 MiB)"));
    free(path);
    free(big);
}

static void test_err_misc(void **state)
{
    (void)state;
    load_err(MIN_LISTENERS MIN_IDENTITY
             "backends:\n  - {name: a, provider: openai, url: \"http://h\"}\n  - {name: a, provider: openai, url: "
             "\"http://h\"}\n" MIN_DEPLOYMENTS,
             "t.yaml:9:12: backends[1].name: duplicate name 'a' (also backends[0])");
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - {name: \"bad name\", provider: openai, url: \"http://h\"}\n",
             "t.yaml:8:12: backends[0].name: must match [A-Za-z0-9._-]{1,64}");
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - {name: a, provider: openai, url: \"ftp://h\"}\n",
             "t.yaml:8:38: backends[0].url: must start with http:// or https://");
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - {name: a, provider: openai, url: \"http://u:p@h\"}\n",
             "t.yaml:8:38: backends[0].url: must not contain credentials (use auth)");
    load_err(MIN_LISTENERS MIN_IDENTITY
             "backends:\n  - {name: a, provider: openai, url: \"http://h\", api_version: x}\n",
             "t.yaml:8:50: backends[0].api_version: only valid for provider azure");
    load_err(MIN_LISTENERS MIN_IDENTITY
             "backends:\n  - {name: a, provider: openai, url: \"http://h\", region: EastUS}\n",
             "t.yaml:8:58: backends[0].region: must match [a-z0-9-]{1,64} (lowercase)");
    load_err(MIN_LISTENERS MIN_IDENTITY
             "backends:\n  - {name: a, provider: openai, url: \"http://h\", tls: {verify: false}}\n",
             "t.yaml:8:55: backends[0].tls: only valid for an https:// url");
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - {name: x, sha256: \"abc\"}\n",
             "t.yaml:5:25: identity.api_keys[0].sha256: expected 64 hexadecimal digits");
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - {name: x, sha256: \"" DIGEST_TEST "\", key_env: A}\n",
             "t.yaml:5:93: identity.api_keys[0]: exactly one of sha256, key_env, key_file is allowed");
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - {name: x, sha256: \"" DIGEST_TEST
                           "\"}\n    - {name: y, sha256: \"" DIGEST_TEST "\"}\n",
             "t.yaml:6:7: identity.api_keys[1]: same key as identity.api_keys[0]");
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - {name: x, sha256: \"" DIGEST_TEST
                           "\"}\n    - {name: x, key_env: HOME}\n",
             "t.yaml:6:14: identity.api_keys[1].name: duplicate name 'x' (also identity.api_keys[0])");
}

/* ---------- rai_policies and safety (docs/content-filtering.md) ---------- */

static void load_err_has(const char *yaml, const char *needle)
{
    custos_config_t *c = NULL;
    char err[512] = "";
    int rc = custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));
    assert_true(rc < 0);
    assert_null(c);
    if (!strstr(err, needle))
        fail_msg("error mismatch\n  got:  %s\n  want (substring): %s", err, needle);
}

static void test_rai_policies(void **state)
{
    (void)state;
    custos_config_t *c = load_ok(MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS
                                 "deployments:\n  - name: a\n    backends: [mock]\n"
                                 "  - name: b\n    backends: [mock]\n    rai_policy: strict\n"
                                 "rai_policies:\n  - name: strict\n    mode: asynchronous_filter\n"
                                 "    content_filters:\n"
                                 "      - {category: Self Harm, source: completion, threshold: low}\n"
                                 "      - {category: violence, threshold: high, blocking: false}\n"
                                 "      - {category: HATE, source: prompt, enabled: false, blocking: false}\n"
                                 "    prompt_shields: {jailbreak: annotate, indirect_attack: block}\n"
                                 "    pii: {prompt: redact, completion: block}\n"
                                 "    blocklists: [clinic-terms, {name: other, blocking: false, source: prompt}]\n"
                                 "    streaming: {window_max_chars: 500, window_min_chars: 50, context_chars: 0}\n"
                                 "safety: {max_text_bytes: 65536, pii: {mrn_format: 'MRN-#######'}}\n");
    const custos_deployment_config_t *a = custos_config_find_deployment(c, "a");
    const custos_deployment_config_t *b = custos_config_find_deployment(c, "b");
    /* the built-in default: medium, enabled, blocking, both directions; jailbreak block; indirect annotate */
    assert_string_equal(a->rai->name, CUSTOS_RAI_DEFAULT_POLICY);
    for (int k = 0; k < CUSTOS_RAI_NCAT; k++)
        for (int d = 0; d < CUSTOS_RAI_NSRC; d++) {
            assert_true(a->rai->filters[k][d].enabled && a->rai->filters[k][d].blocking);
            assert_int_equal(a->rai->filters[k][d].threshold, 4);
        }
    assert_int_equal(a->rai->jailbreak, CUSTOS_RAI_BLOCK);
    assert_int_equal(a->rai->indirect_attack, CUSTOS_RAI_ANNOTATE);
    assert_int_equal(a->rai->pii[0], CUSTOS_RAI_PII_OFF);
    assert_int_equal(a->rai->mode, CUSTOS_RAI_MODE_DEFAULT);
    const custos_rai_policy_config_t *p = b->rai;
    assert_string_equal(p->name, "strict");
    assert_int_equal(p->mode, CUSTOS_RAI_MODE_ASYNC);
    assert_int_equal(p->filters[CUSTOS_RAI_SELF_HARM][CUSTOS_RAI_COMPLETION].threshold, 2);
    assert_int_equal(p->filters[CUSTOS_RAI_SELF_HARM][CUSTOS_RAI_PROMPT].threshold, 4);
    assert_int_equal(p->filters[CUSTOS_RAI_VIOLENCE][CUSTOS_RAI_PROMPT].threshold, 6);
    assert_false(p->filters[CUSTOS_RAI_VIOLENCE][CUSTOS_RAI_COMPLETION].blocking);
    assert_true(p->filters[CUSTOS_RAI_VIOLENCE][CUSTOS_RAI_COMPLETION].enabled);
    assert_false(p->filters[CUSTOS_RAI_HATE][CUSTOS_RAI_PROMPT].enabled);
    assert_true(p->filters[CUSTOS_RAI_HATE][CUSTOS_RAI_COMPLETION].enabled);
    assert_int_equal(p->jailbreak, CUSTOS_RAI_ANNOTATE);
    assert_int_equal(p->indirect_attack, CUSTOS_RAI_BLOCK);
    assert_int_equal(p->pii[CUSTOS_RAI_PROMPT], CUSTOS_RAI_PII_REDACT);
    assert_int_equal(p->pii[CUSTOS_RAI_COMPLETION], CUSTOS_RAI_PII_BLOCK);
    assert_int_equal(p->n_blocklists, 2);
    assert_string_equal(p->blocklists[0].name, "clinic-terms");
    assert_true(p->blocklists[0].blocking && p->blocklists[0].source[0] && p->blocklists[0].source[1]);
    assert_false(p->blocklists[1].blocking);
    assert_true(p->blocklists[1].source[CUSTOS_RAI_PROMPT] && !p->blocklists[1].source[CUSTOS_RAI_COMPLETION]);
    assert_int_equal(p->window_max_chars, 500);
    assert_int_equal(p->window_min_chars, 50);
    assert_int_equal(p->context_chars, 0);
    assert_int_equal(c->safety.max_text_bytes, 65536);
    assert_string_equal(c->safety.pii_mrn_format, "MRN-#######");
    assert_ptr_equal(custos_config_find_rai_policy(c, "strict"), p);
    assert_null(custos_config_find_rai_policy(c, "nope"));
    custos_config_unref(c);

#define DEP_P MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS "deployments:\n  - name: a\n    backends: [mock]\n"
    load_err_has(MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS
                 "deployments:\n  - name: a\n    backends: [mock]\n    rai_policy: nope\n",
                 "deployments[0].rai_policy: unknown policy 'nope'");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    content_filters: [{category: profanity}]\n",
                 "rai_policies[0].content_filters[0].category: unknown category 'profanity'");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    content_filters: [{category: hate, enabled: false}]\n",
                 "blocking needs enabled: true");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    content_filters: [{category: hate, threshold: safe}]\n",
                 "threshold: expected one of low, medium, high");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    mode: asynchronous_filter\n    pii: {prompt: placeholder}\n",
                 "cannot be combined with pii.prompt: placeholder");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    pii: {completion: placeholder}\n",
                 "placeholder applies to prompts only");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n  - name: x\n", "duplicate name 'x'");
    load_err_has(DEP_P "rai_policies:\n  - name: Microsoft.DefaultV2\n", "is the built-in default policy");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    blocklists: [a, a]\n", "blocklist 'a' is listed twice");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    blocklists: ['bad name']\n", "blocklist names are");
    load_err_has(DEP_P "rai_policies:\n  - name: x\n    streaming: {window_min_chars: 600, window_max_chars: 500}\n",
                 "window_min_chars must not exceed window_max_chars");
    load_err_has(DEP_P "safety: {max_text_bytes: 10}\n", "safety.max_text_bytes");
    load_err_has(DEP_P "safety: {harm_model: /nonexistent/harm.model}\n", "safety.harm_model: cannot read");
#undef DEP_P
}

/* rai_policies[].groundedness and safety.groundedness (api/cf_grounded.h, api/cs_reasoning.h) */
static void test_groundedness_keys(void **state)
{
    (void)state;
#define DEP_G MIN_LISTENERS MIN_IDENTITY MIN_BACKENDS "deployments:\n  - name: a\n    backends: [mock]\n"
    custos_config_t *c =
        load_ok(DEP_G "  - name: b\n    backends: [mock]\n    rai_policy: g\n"
                      "rai_policies:\n  - name: g\n"
                      "    groundedness: {enabled: true, action: block, threshold: 0.7, domain: Medical}\n"
                      "safety: {groundedness: {reasoning_deployment: a, reasoning_timeout_ms: 5000}}\n");
    const custos_rai_policy_config_t *p = custos_config_find_deployment(c, "b")->rai;
    assert_true(p->groundedness.enabled && p->groundedness.medical);
    assert_int_equal(p->groundedness.action, CUSTOS_RAI_BLOCK);
    assert_true(p->groundedness.threshold > 0.69f && p->groundedness.threshold < 0.71f);
    assert_false(custos_config_find_deployment(c, "a")->rai->groundedness.enabled); /* default: off */
    assert_string_equal(c->safety.grounded_reasoning_deployment, "a");
    assert_int_equal(c->safety.grounded_reasoning_timeout_ms, 5000);
    custos_config_unref(c);
    c = load_ok(DEP_G "rai_policies:\n  - name: g\n    groundedness: {enabled: true}\n");
    p = custos_config_find_rai_policy(c, "g");
    assert_int_equal(p->groundedness.action, CUSTOS_RAI_ANNOTATE);
    assert_true(p->groundedness.threshold == 0.5f && !p->groundedness.medical);
    assert_null(c->safety.grounded_reasoning_deployment);
    assert_int_equal(c->safety.grounded_reasoning_timeout_ms, 30000);
    custos_config_unref(c);
    load_err_has(DEP_G "rai_policies:\n  - name: g\n    groundedness: {enabled: true, threshold: 0.3}\n",
                 "rai_policies[0].groundedness.threshold: must be from 0.5 to 0.99");
    load_err_has(DEP_G "rai_policies:\n  - name: g\n    groundedness: {enabled: true, threshold: high}\n",
                 "groundedness.threshold: expected a number");
    load_err_has(DEP_G "rai_policies:\n  - name: g\n    groundedness: {action: redact}\n",
                 "groundedness.action: expected one of annotate, block");
    load_err_has(DEP_G "rai_policies:\n  - name: g\n    groundedness: {domain: Legal}\n",
                 "groundedness.domain: expected one of Generic, Medical");
    load_err_has(DEP_G "rai_policies:\n  - name: g\n    groundedness: {enabled: true, task: QnA}\n", "task");
    load_err_has(DEP_G "safety: {groundedness: {reasoning_deployment: nope}}\n",
                 "safety.groundedness.reasoning_deployment: no deployment is named 'nope'");
    load_err_has(DEP_G "safety: {groundedness: {reasoning_timeout_ms: 5}}\n",
                 "safety.groundedness.reasoning_timeout_ms");
#undef DEP_G
}

static void test_key_env_and_file(void **state)
{
    (void)state;
    unsetenv("CUSTOS_TEST_MISSING");
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - name: x\n      key_env: CUSTOS_TEST_MISSING\n",
             "t.yaml:6:16: identity.api_keys[0].key_env: environment variable CUSTOS_TEST_MISSING is not set or empty");
    setenv("CUSTOS_TEST_EMPTY", "", 1);
    load_err(MIN_LISTENERS "identity:\n  api_keys:\n    - name: x\n      key_env: CUSTOS_TEST_EMPTY\n",
             "t.yaml:6:16: identity.api_keys[0].key_env: environment variable CUSTOS_TEST_EMPTY is not set or empty");
    unsetenv("CUSTOS_TEST_EMPTY");

    char *missing = NULL;
    assert_true(asprintf(&missing, "%s/does-not-exist", tmpdir) > 0);
    char *y = NULL, *want = NULL;
    assert_true(asprintf(&y, MIN_LISTENERS "identity:\n  api_keys:\n    - name: x\n      key_file: %s\n", missing) > 0);
    assert_true(asprintf(&want,
                         "t.yaml:6:17: identity.api_keys[0].key_file: cannot read '%s': No such file or directory",
                         missing) > 0);
    load_err(y, want);
    free(y);
    free(want);

    assert_true(asprintf(&y, MIN_LISTENERS "identity:\n  api_keys:\n    - name: x\n      key_file: %s\n", tmpdir) > 0);
    assert_true(asprintf(&want, "t.yaml:6:17: identity.api_keys[0].key_file: '%s' is not a regular file", tmpdir) > 0);
    load_err(y, want);
    free(y);
    free(want);

    char *empty = write_mkstemp("\n");
    assert_true(asprintf(&y, MIN_LISTENERS "identity:\n  api_keys:\n    - name: x\n      key_file: %s\n", empty) > 0);
    assert_true(asprintf(&want, "t.yaml:6:17: identity.api_keys[0].key_file: '%s' is empty", empty) > 0);
    load_err(y, want);
    free(y);
    free(want);

    /* key_file hashing: trailing newline stripped; same digest as key_env of the same key */
    char *kf = write_mkstemp("s3cr3t-key\n");
    setenv("CUSTOS_TEST_KEY2", "other-key", 1);
    assert_true(asprintf(&y,
                         MIN_LISTENERS "identity:\n  api_keys:\n    - {name: f, key_file: %s}\n"
                                       "    - {name: e, key_env: CUSTOS_TEST_KEY2}\n" MIN_BACKENDS MIN_DEPLOYMENTS,
                         kf) > 0);
    custos_config_t *c = load_ok(y);
    unsigned char d[32];
    sha256_hex("s3cr3t-key", d);
    assert_memory_equal(c->identity.api_keys[0].sha256, d, 32);
    sha256_hex("other-key", d);
    assert_memory_equal(c->identity.api_keys[1].sha256, d, 32);
    custos_config_unref(c);
    free(y);

    /* backend api key from env; header-unsafe keys refused; missing env refused */
    setenv("CUSTOS_TEST_UP", "bad key", 1);
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - name: a\n    provider: openai\n    url: \"http://h\"\n"
                                        "    auth: {api_key_env: CUSTOS_TEST_UP}\n",
             "t.yaml:11:25: backends[0].auth.api_key_env: the key contains spaces or characters not allowed in an HTTP "
             "header");
    unsetenv("CUSTOS_TEST_UP");
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - name: a\n    provider: openai\n    url: \"http://h\"\n"
                                        "    auth: {api_key_env: CUSTOS_TEST_UP}\n",
             "t.yaml:11:25: backends[0].auth.api_key_env: environment variable CUSTOS_TEST_UP is not set or empty");
    load_err(MIN_LISTENERS MIN_IDENTITY "backends:\n  - name: a\n    provider: openai\n    url: \"http://h\"\n"
                                        "    auth: {}\n",
             "t.yaml:11:11: backends[0].auth: one of api_key_env, api_key_file, bearer_env, bearer_file, oauth2, "
             "api_key_secret, bearer_secret is required");
    unsetenv("CUSTOS_TEST_KEY2");
    free(missing);
    free(empty);
    free(kf);
}

static void test_load_file_relative_paths(void **state)
{
    (void)state;
    char *kf = write_tmp("client.key", "relkey\n");
    char *pem = write_tmp("server.pem", "PEM");
    char *cfg = write_tmp(
        "custos.yaml", "listeners:\n  - address: \"0.0.0.0:8443\"\n"
                       "    tls: {cert: server.pem, key: ./server.pem}\n"
                       "identity:\n  api_keys:\n    - {name: r, key_file: client.key}\n" MIN_BACKENDS MIN_DEPLOYMENTS);
    custos_config_t *c = NULL;
    char err[512] = "";
    int rc = custos_config_load_file(cfg, &c, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c->source, cfg);
    unsigned char d[32];
    sha256_hex("relkey", d);
    assert_memory_equal(c->identity.api_keys[0].sha256, d, 32);
    char *real = realpath(pem, NULL), *want = NULL;
    assert_non_null(real);
    assert_string_equal(c->listeners[0].tls->cert, real); /* resolved against the file's directory */
    assert_true(c->listeners[0].tls->key[0] == '/');
    char *real2 = realpath(c->listeners[0].tls->key, NULL);
    assert_non_null(real2);
    assert_string_equal(real2, real);
    free(real);
    free(real2);
    custos_config_unref(c);

    /* errors from a file name the file */
    char *bad = write_tmp("bad.yaml", "server:\n  listner: 1\n");
    assert_int_equal(custos_config_load_file(bad, &c, err, sizeof(err)), CUSTOS_EINVAL);
    assert_true(asprintf(&want, "%s:2:3: unknown key 'listner' in server", bad) > 0);
    assert_string_equal(err, want);
    free(want);

    char *none = NULL;
    assert_true(asprintf(&none, "%s/nope.yaml", tmpdir) > 0);
    assert_int_equal(custos_config_load_file(none, &c, err, sizeof(err)), CUSTOS_EIO);
    assert_null(c);
    assert_true(asprintf(&want, "%s: cannot open: No such file or directory", none) > 0);
    assert_string_equal(err, want);
    free(want);
    free(none);
    free(bad);
    free(kf);
    free(pem);
    free(cfg);
}

static void test_summary_has_no_secrets(void **state)
{
    (void)state;
    setenv("CUSTOS_TEST_SUMMARY", "sk-very-secret-canary", 1);
    custos_config_t *c = load_ok(MIN_LISTENERS "identity:\n  api_keys:\n    - {name: k, key_env: CUSTOS_TEST_SUMMARY}\n"
                                               "backends:\n  - name: mock\n    provider: openai\n"
                                               "    url: \"http://127.0.0.1:8081\"\n"
                                               "    auth: {api_key_env: CUSTOS_TEST_SUMMARY}\n" MIN_DEPLOYMENTS);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(custos_config_dump_summary(c, f), 0);
    fclose(f);
    assert_non_null(strstr(buf, "127.0.0.1:8443"));
    assert_non_null(strstr(buf, "demo  model demo  global  -> mock"));
    assert_non_null(strstr(buf, "auth api-key"));
    assert_null(strstr(buf, "sk-very-secret-canary"));
    free(buf);
    custos_config_unref(c);
    unsetenv("CUSTOS_TEST_SUMMARY");
}

static void *ref_worker(void *arg)
{
    custos_config_t *c = arg;
    for (int i = 0; i < 20000; i++) {
        custos_config_t *r = custos_config_ref(c);
        custos_config_unref(r);
    }
    custos_config_unref(c); /* drop the reference handed to this thread */
    return NULL;
}

static void test_refcount(void **state)
{
    (void)state;
    custos_config_t *c = load_ok(MIN_ALL);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_ptr_equal(custos_config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 2);
    custos_config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_null(custos_config_ref(NULL));
    custos_config_unref(NULL);

    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        custos_config_ref(c);
        assert_int_equal(pthread_create(&t[i], NULL, ref_worker, c), 0);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(atomic_load(&c->refs), 1);
    custos_config_unref(c); /* frees: ASan reports a leak or double free if the count were wrong */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_tls_and_azure_defaults),
        cmocka_unit_test(test_json_config),
        cmocka_unit_test(test_err_unknown_key),
        cmocka_unit_test(test_err_bad_type),
        cmocka_unit_test(test_err_duplicate_key),
        cmocka_unit_test(test_err_yes_as_bool),
        cmocka_unit_test(test_err_range),
        cmocka_unit_test(test_err_missing_required),
        cmocka_unit_test(test_err_enum),
        cmocka_unit_test(test_err_unknown_backend),
        cmocka_unit_test(test_err_region),
        cmocka_unit_test(test_err_plain_http),
        cmocka_unit_test(test_err_alias_anchor_tag),
        cmocka_unit_test(test_err_syntax),
        cmocka_unit_test(test_err_depth),
        cmocka_unit_test(test_err_too_big),
        cmocka_unit_test(test_err_misc),
        cmocka_unit_test(test_rai_policies),
        cmocka_unit_test(test_groundedness_keys),
        cmocka_unit_test(test_key_env_and_file),
        cmocka_unit_test(test_load_file_relative_paths),
        cmocka_unit_test(test_summary_has_no_secrets),
        cmocka_unit_test(test_refcount),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
