/* SPDX-License-Identifier: Apache-2.0
 * Test tool: opens one audit sink driver (syslog, http or kafka) from command-line settings and delivers the records
 * read from stdin (one JSON object per line) in batches, retrying a failed batch like the audit framework does. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/sink.h"
#include "util/err.h"

static void usage(void)
{
    fprintf(stderr, "usage: audit_send --type syslog|http|kafka [--address URI] [--url URL] [--format F]\n"
                    "  [--token-env NAME] [--index I] [--gzip 0|1] [--ca FILE] [--app-name A] [--facility N]\n"
                    "  [--hostname H] [--timeout-ms MS] [--brokers B] [--topic T] [--prop k=v]...\n"
                    "  [--batch N] [--retries R] [--retry-ms MS] [--pause-ms MS]   < records (one per line)\n");
    exit(2);
}

static int parse_hostport(char *hp, custos_audit_sink_config_t *c)
{
    char *colon = strrchr(hp, ':');
    if (!colon)
        return -1;
    *colon = 0;
    if (hp[0] == '[') {
        hp++;
        char *rb = strchr(hp, ']');
        if (rb)
            *rb = 0;
    }
    c->host = hp;
    c->port = (uint16_t)atoi(colon + 1);
    return 0;
}

int main(int argc, char **argv)
{
    static char *keys[64], *vals[64];
    custos_audit_sink_config_t c = {0};
    size_t batch = 100;
    int retries = 0, retry_ms = 200, pause_ms = 0;
    const custos_audit_sink_driver_t *d = NULL;
    signal(SIGPIPE, SIG_IGN);
    c.app_name = "custos";
    c.facility = 16;
    c.timeout_ms = 5000;
    c.gzip = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--type")) {
            c.type_name = v;
            if (!strcmp(v, "syslog")) {
                c.type = CUSTOS_AUDIT_SINK_SYSLOG;
                d = &custos_audit_sink_syslog;
            } else if (!strcmp(v, "http")) {
                c.type = CUSTOS_AUDIT_SINK_HTTP;
                d = &custos_audit_sink_http;
            } else if (!strcmp(v, "kafka")) {
                c.type = CUSTOS_AUDIT_SINK_KAFKA;
                d = &custos_audit_sink_kafka;
            } else {
                usage();
            }
        } else if (!strcmp(a, "--address")) {
            c.address = strdup(v);
            char *rest = strstr(v, "://");
            if (!rest)
                usage();
            c.transport = !strncmp(v, "udp", 3)   ? CUSTOS_SYSLOG_UDP
                          : !strncmp(v, "tcp", 3) ? CUSTOS_SYSLOG_TCP
                                                  : CUSTOS_SYSLOG_TLS;
            if (parse_hostport(rest + 3, &c) != 0)
                usage();
        } else if (!strcmp(a, "--url")) {
            c.url = v;
        } else if (!strcmp(a, "--format")) {
            c.format = !strcmp(v, "splunk_hec")      ? CUSTOS_HTTP_SINK_SPLUNK_HEC
                       : !strcmp(v, "elasticsearch") ? CUSTOS_HTTP_SINK_ELASTICSEARCH
                                                     : CUSTOS_HTTP_SINK_NDJSON;
        } else if (!strcmp(a, "--token-env")) {
            c.token = getenv(v);
            c.token_len = c.token ? strlen(c.token) : 0;
        } else if (!strcmp(a, "--index")) {
            c.index = v;
        } else if (!strcmp(a, "--gzip")) {
            c.gzip = atoi(v) != 0;
        } else if (!strcmp(a, "--ca")) {
            c.ca_file = v;
        } else if (!strcmp(a, "--app-name")) {
            c.app_name = v;
        } else if (!strcmp(a, "--facility")) {
            c.facility = (unsigned)atoi(v);
        } else if (!strcmp(a, "--hostname")) {
            c.hostname = v;
        } else if (!strcmp(a, "--timeout-ms")) {
            c.timeout_ms = (uint32_t)atoi(v);
        } else if (!strcmp(a, "--brokers")) {
            c.brokers = v;
        } else if (!strcmp(a, "--topic")) {
            c.topic = v;
        } else if (!strcmp(a, "--prop")) {
            char *eq = strchr(v, '=');
            if (!eq || c.n_properties == 64)
                usage();
            *eq = 0;
            keys[c.n_properties] = v;
            vals[c.n_properties++] = eq + 1;
        } else if (!strcmp(a, "--batch")) {
            batch = (size_t)atoi(v);
        } else if (!strcmp(a, "--retries")) {
            retries = atoi(v);
        } else if (!strcmp(a, "--retry-ms")) {
            retry_ms = atoi(v);
        } else if (!strcmp(a, "--pause-ms")) {
            pause_ms = atoi(v); /* between successful batches */
        } else {
            usage();
        }
    }
    if (!d || batch == 0)
        usage();
    c.property_keys = keys;
    c.property_values = vals;

    /* records: one per line */
    size_t n = 0, cap = 0;
    char **recs = NULL;
    size_t *lens = NULL;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t ll;
    while ((ll = getline(&line, &lcap, stdin)) > 0) {
        while (ll > 0 && (line[ll - 1] == '\n' || line[ll - 1] == '\r'))
            line[--ll] = 0;
        if (ll == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            recs = realloc(recs, cap * sizeof(*recs));
            lens = realloc(lens, cap * sizeof(*lens));
            if (!recs || !lens)
                return 1;
        }
        recs[n] = strdup(line);
        lens[n++] = (size_t)ll;
    }
    free(line);

    char err[512] = "";
    void *st = NULL;
    int rc = d->open(&c, &st, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "open failed: %s (%s)\n", err, custos_strerror(rc));
        return 1;
    }
    int failures = 0;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < batch ? n - off : batch;
        rc = d->deliver(st, (const char *const *)recs + off, lens + off, k);
        if (rc != 0) {
            fprintf(stderr, "deliver failed: %s\n", custos_strerror(rc));
            if (++failures > retries)
                break;
            usleep((useconds_t)retry_ms * 1000);
            continue;
        }
        off += k;
        fprintf(stderr, "delivered %zu\n", off);
        if (pause_ms && off < n)
            usleep((useconds_t)pause_ms * 1000);
    }
    d->close(st);
    printf("failures=%d\n", failures);
    for (size_t i = 0; i < n; i++)
        free(recs[i]);
    free(recs);
    free(lens);
    free(c.address);
    return rc == 0 ? 0 : 1;
}
