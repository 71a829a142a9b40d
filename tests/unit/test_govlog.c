/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for audit/govlog.h: append + verify, every tampering kind detected at the right line, restart
 * continuity, torn-tail refusal and repair, the process-wide log (pre-open buffer, 4 concurrent writers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <unistd.h>

#include "audit/govlog.h"
#include "util/err.h"
#include "util/json.h"

#define MAXL 64

static char g_dir[256];

typedef struct lines {
    char *l[MAXL];
    size_t n;
} lines_t;

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", g_dir, name);
}

static void read_lines(const char *path, lines_t *ls)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    ls->n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    while ((k = getline(&line, &cap, f)) > 0) {
        assert_true(ls->n < MAXL);
        ls->l[ls->n++] = strdup(line);
    }
    free(line);
    fclose(f);
}

static void write_lines(const char *path, const lines_t *ls)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < ls->n; i++)
        fputs(ls->l[i], f);
    fclose(f);
}

static void free_lines(lines_t *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->l[i]);
    ls->n = 0;
}

/* Writes n events to a fresh log at path (genesis as given); head (may be NULL) gets the head hash. */
static void make_log(const char *path, const char *genesis, int n, char *head)
{
    unlink(path);
    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(path, genesis, &log), 0);
    for (int i = 1; i <= n; i++) {
        char target[32], details[64];
        snprintf(target, sizeof(target), "key-%d", i);
        snprintf(details, sizeof(details), "{\"n\":%d,\"name\":\"k\\u00e9y \\\"%d\\\"\"}", i, i);
        assert_int_equal(custos_govlog_append(log, 1700000000123ull + (uint64_t)i, "admin-1",
                                              i % 2 ? "key.create" : "key.revoke", target, details),
                         0);
    }
    if (head)
        custos_govlog_head(log, head, NULL);
    custos_govlog_free(log);
}

/* Verifies path; returns rc, report text in *report (caller frees). */
static int verify(const char *path, const char *expect, custos_govlog_verify_result_t *res, char **report)
{
    size_t sz = 0;
    FILE *m = open_memstream(report, &sz);
    assert_non_null(m);
    int rc = custos_govlog_verify_file(path, NULL, expect, m, res);
    fclose(m);
    return rc;
}

/* Expects verification to fail with a finding that starts with want (e.g. "line 3 (seq 3): modified"). */
static void expect_finding(const char *path, const char *expect_head, const char *want)
{
    custos_govlog_verify_result_t res;
    char *report = NULL;
    int rc = verify(path, expect_head, &res, &report);
    if (rc != CUSTOS_EPROTO || !strstr(report, want))
        fail_msg("want finding '%s', rc %d, report:\n%s", want, rc, report);
    assert_true(res.problems >= 1);
    free(report);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/custos-govlog-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Must run first: the process-wide log starts in the pre-open state. */
static void test_global_preopen_buffer(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "global-pre.jsonl");
    assert_int_equal(custos_governance_event("system", "service.start", "custos", NULL), 0);
    assert_int_equal(custos_governance_event("admin", "key.create", "k1", "{\"scope\":\"all\"}"), 0);
    char head[CUSTOS_GOVLOG_HEX + 1];
    assert_int_equal(custos_govlog_global_head(head, NULL), CUSTOS_EUNAVAIL);
    assert_int_equal(custos_govlog_open_global(p), 0);
    assert_int_equal(custos_govlog_open_global(p), CUSTOS_EINVAL);
    assert_int_equal(custos_governance_event("admin", "key.revoke", "k1", NULL), 0);
    uint64_t seq = 0;
    assert_int_equal(custos_govlog_global_head(head, &seq), 0);
    assert_int_equal(seq, 3);
    custos_govlog_close_global();
    assert_int_equal(custos_governance_event("admin", "key.revoke", "k2", NULL), CUSTOS_EUNAVAIL);

    lines_t ls;
    read_lines(p, &ls);
    assert_int_equal(ls.n, 3);
    assert_non_null(strstr(ls.l[0], "\"action\":\"service.start\""));
    assert_non_null(strstr(ls.l[1], "\"details\":{\"scope\":\"all\"}"));
    assert_non_null(strstr(ls.l[2], "\"action\":\"key.revoke\""));
    free_lines(&ls);
    custos_govlog_verify_result_t res;
    char *report = NULL;
    assert_int_equal(verify(p, head, &res, &report), 0);
    assert_int_equal(res.records, 3);
    assert_string_equal(res.head, head);
    free(report);
}

static void test_append_verify_format(void **state)
{
    (void)state;
    char p[300], head[CUSTOS_GOVLOG_HEX + 1];
    path_in(p, sizeof(p), "basic.jsonl");
    make_log(p, NULL, 5, head);
    lines_t ls;
    read_lines(p, &ls);
    assert_int_equal(ls.n, 5);
    const char *want0 = "{\"v\":1,\"seq\":1,\"time\":\"2023-11-14T22:13:20.124Z\",\"actor\":\"admin-1\","
                        "\"action\":\"key.create\",\"target\":\"key-1\",\"details\":{\"n\":1,\"name\":\"k\xc3\xa9y "
                        "\\\"1\\\"\"},\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\","
                        "\"hash\":\"";
    assert_memory_equal(ls.l[0], want0, strlen(want0));
    assert_non_null(strstr(ls.l[4], "\"seq\":5,"));
    assert_non_null(strstr(ls.l[4], head));
    free_lines(&ls);

    custos_govlog_verify_result_t res;
    char *report = NULL;
    assert_int_equal(verify(p, NULL, &res, &report), 0);
    assert_string_equal(report, "");
    assert_int_equal(res.records, 5);
    assert_int_equal(res.last_seq, 5);
    assert_int_equal(res.problems, 0);
    assert_string_equal(res.head, head);
    free(report);

    /* genesis: a log continued from an archived head verifies only with that genesis */
    char g[] = "abababababababababababababababababababababababababababababababab";
    path_in(p, sizeof(p), "genesis.jsonl");
    make_log(p, g, 2, NULL);
    assert_int_equal(custos_govlog_verify_file(p, g, NULL, NULL, &res), 0);
    expect_finding(p, NULL, "line 1 (seq 1): deleted");
    /* an empty log is intact; a missing one is reported */
    path_in(p, sizeof(p), "empty.jsonl");
    make_log(p, NULL, 0, NULL);
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), 0);
    assert_int_equal(res.records, 0);
    path_in(p, sizeof(p), "missing.jsonl");
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), CUSTOS_ENOTFOUND);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "args.jsonl");
    unlink(p);
    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(p, "xyz", &log), CUSTOS_EINVAL);
    assert_int_equal(custos_govlog_open(p, NULL, &log), 0);
    assert_int_equal(custos_govlog_append(log, 0, "a", "Key.Create", "t", NULL), CUSTOS_EINVAL);
    assert_int_equal(custos_govlog_append(log, 0, "", "key.create", "t", NULL), CUSTOS_EINVAL);
    assert_int_equal(custos_govlog_append(log, 0, "a", "key.create", NULL, NULL), CUSTOS_EINVAL);
    assert_int_equal(custos_govlog_append(log, 0, "a", "key.create", "t", "[1]"), CUSTOS_EINVAL);
    assert_int_equal(custos_govlog_append(log, 0, "a", "key.create", "t", "{\"a\":"), CUSTOS_EINVAL);
    assert_int_equal(custos_govlog_append(log, 0, "a", "key.create", "t", "{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}"),
                     CUSTOS_EINVAL);
    char big[CUSTOS_GOVLOG_MAX_DETAILS + 16];
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = 0;
    assert_int_equal(custos_govlog_append(log, 0, "a", "key.create", "t", big), CUSTOS_ETOOBIG);
    char actor[CUSTOS_GOVLOG_MAX_ACTOR + 2];
    memset(actor, 'a', sizeof(actor) - 1);
    actor[sizeof(actor) - 1] = 0;
    assert_int_equal(custos_govlog_append(log, 0, actor, "key.create", "t", NULL), CUSTOS_ETOOBIG);
    /* control characters and invalid UTF-8 are escaped / replaced; the record still verifies */
    assert_int_equal(custos_govlog_append(log, 0, "a\n\x01", "key.create", "t\xff", "{\"x\":\"\\u0001\"}"), 0);
    uint64_t seq;
    custos_govlog_head(log, NULL, &seq);
    assert_int_equal(seq, 1);
    custos_govlog_free(log);
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, NULL), 0);
}

static void test_modified(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "mod.jsonl");
    make_log(p, NULL, 5, NULL);
    lines_t ls;
    read_lines(p, &ls);
    char *at = strstr(ls.l[2], "key-3");
    assert_non_null(at);
    at[4] = '9'; /* target key-3 -> key-9, hash left as is */
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 3 (seq 3): modified");
    free_lines(&ls);

    /* a field added: no longer canonical */
    make_log(p, NULL, 5, NULL);
    read_lines(p, &ls);
    char *v = ls.l[1];
    char *nl = malloc(strlen(v) + 16);
    snprintf(nl, strlen(v) + 16, "{\"x\":1,%s", v + 1);
    free(ls.l[1]);
    ls.l[1] = nl;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 2: malformed");
    free_lines(&ls);
}

static void test_deleted(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "del.jsonl");
    make_log(p, NULL, 5, NULL);
    lines_t ls;
    read_lines(p, &ls);
    free(ls.l[2]);
    memmove(&ls.l[2], &ls.l[3], 2 * sizeof(char *));
    ls.n--;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 3 (seq 4): deleted: seq 3..3 missing between seq 2 (line 2) and seq 4 (line 3)");
    free_lines(&ls);

    /* the first record deleted */
    make_log(p, NULL, 3, NULL);
    read_lines(p, &ls);
    free(ls.l[0]);
    memmove(&ls.l[0], &ls.l[1], 2 * sizeof(char *));
    ls.n--;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 1 (seq 2): deleted: seq 1..1 missing");
    free_lines(&ls);
}

static void test_inserted(void **state)
{
    (void)state;
    char p[300], q[300];
    path_in(p, sizeof(p), "ins.jsonl");
    path_in(q, sizeof(q), "ins-forge.jsonl");
    make_log(p, NULL, 5, NULL);
    /* a forged record with a valid (recomputed) hash but a prev from another chain */
    make_log(q, "1111111111111111111111111111111111111111111111111111111111111111", 3, NULL);
    lines_t ls, fs;
    read_lines(p, &ls);
    read_lines(q, &fs);
    memmove(&ls.l[3], &ls.l[2], 3 * sizeof(char *));
    ls.l[2] = strdup(fs.l[2]);
    ls.n++;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 3 (seq 3): inserted");
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), CUSTOS_EPROTO);
    assert_int_equal(res.problems, 1);
    assert_int_equal(res.first_bad_line, 3);
    free_lines(&ls);
    free_lines(&fs);

    /* a forged record whose prev copies the real predecessor's hash (a fork), placed after the real successor */
    make_log(p, NULL, 5, NULL);
    read_lines(p, &ls);
    fs.n = 2;
    fs.l[0] = strdup(ls.l[0]);
    fs.l[1] = strdup(ls.l[1]);
    write_lines(q, &fs);
    free_lines(&fs);
    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(q, NULL, &log), 0);
    assert_int_equal(custos_govlog_append(log, 0, "mallory", "role_assignment.create", "mallory", NULL), 0);
    custos_govlog_free(log);
    read_lines(q, &fs);
    memmove(&ls.l[4], &ls.l[3], 2 * sizeof(char *));
    ls.l[3] = strdup(fs.l[2]); /* 1 2 3 X 4 5 */
    ls.n++;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 4 (seq 3): inserted");
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), CUSTOS_EPROTO);
    assert_int_equal(res.problems, 1);
    free_lines(&ls);
    free_lines(&fs);

    /* a duplicated (replayed) record */
    make_log(p, NULL, 3, NULL);
    read_lines(p, &ls);
    ls.l[ls.n] = strdup(ls.l[1]);
    ls.n++;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 4 (seq 2): duplicate: this record repeats line 2");
    free_lines(&ls);
}

static void test_reordered(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "swap.jsonl");
    make_log(p, NULL, 5, NULL);
    lines_t ls;
    read_lines(p, &ls);
    char *t = ls.l[1];
    ls.l[1] = ls.l[2];
    ls.l[2] = t;
    write_lines(p, &ls);
    expect_finding(p, NULL, "line 2 (seq 3): reordered: seq 3 appears before its predecessor seq 2 at line 3");
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), CUSTOS_EPROTO);
    assert_int_equal(res.problems, 1);
    free_lines(&ls);
}

static void test_truncated_tail(void **state)
{
    (void)state;
    char p[300], head[CUSTOS_GOVLOG_HEX + 1], head3[CUSTOS_GOVLOG_HEX + 1];
    path_in(p, sizeof(p), "trunc.jsonl");
    make_log(p, NULL, 3, head3);
    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(p, NULL, &log), 0);
    assert_int_equal(custos_govlog_append(log, 0, "a", "policy.update", "p", NULL), 0);
    assert_int_equal(custos_govlog_append(log, 0, "a", "policy.update", "p", NULL), 0);
    custos_govlog_head(log, head, NULL);
    custos_govlog_free(log);
    custos_govlog_verify_result_t res;
    /* an older head is fine: the log grew after it was noted */
    assert_int_equal(custos_govlog_verify_file(p, NULL, head3, NULL, &res), 0);
    assert_int_equal(custos_govlog_verify_file(p, NULL, head, NULL, &res), 0);

    lines_t ls;
    read_lines(p, &ls);
    ls.n = 3;
    write_lines(p, &ls);
    ls.n = 5;
    free_lines(&ls);
    /* without the external head the cut is invisible; with it, it is reported */
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), 0);
    expect_finding(p, head, "line 4 (seq 4): truncated: the expected head");
    char upper[CUSTOS_GOVLOG_HEX + 1];
    for (int i = 0; i <= CUSTOS_GOVLOG_HEX; i++)
        upper[i] = (char)(head3[i] >= 'a' && head3[i] <= 'f' ? head3[i] - 32 : head3[i]);
    assert_int_equal(custos_govlog_verify_file(p, NULL, upper, NULL, &res), 0);
    assert_int_equal(custos_govlog_verify_file(p, NULL, "nothex", NULL, &res), CUSTOS_EINVAL);
}

static void test_torn_and_repair(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "torn.jsonl");
    make_log(p, NULL, 4, NULL);
    lines_t ls;
    read_lines(p, &ls);
    ls.l[ls.n] = strdup(ls.l[3]);
    ls.l[ls.n][40] = 0; /* a partial line, no newline: the crash-mid-write shape */
    ls.n++;
    write_lines(p, &ls);
    free_lines(&ls);
    expect_finding(p, NULL, "line 5: torn");
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), CUSTOS_EPROTO);
    assert_int_equal(res.torn, 1);
    assert_int_equal(res.records, 4);

    /* the log refuses to open (and so to append) until repaired */
    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(p, NULL, &log), CUSTOS_EPROTO);
    assert_null(log);

    FILE *devnull = fopen("/dev/null", "w");
    int repaired = -1;
    assert_int_equal(custos_govlog_repair_file(p, NULL, devnull, &repaired), 0);
    assert_int_equal(repaired, 1);
    assert_int_equal(custos_govlog_verify_file(p, NULL, NULL, NULL, &res), 0);
    assert_int_equal(res.records, 5);
    read_lines(p, &ls);
    assert_non_null(strstr(ls.l[4], "\"action\":\"govlog.repair\""));
    assert_non_null(strstr(ls.l[4], "\"removed_bytes\":40"));
    free_lines(&ls);
    assert_int_equal(custos_govlog_repair_file(p, NULL, devnull, &repaired), 0);
    assert_int_equal(repaired, 0);

    /* repair never touches a log whose complete records are tampered with */
    read_lines(p, &ls);
    char *at = strstr(ls.l[1], "key-2");
    at[4] = '7';
    ls.l[ls.n] = strdup("{\"v\":1,\"se");
    ls.n++;
    write_lines(p, &ls);
    free_lines(&ls);
    assert_int_equal(custos_govlog_repair_file(p, NULL, devnull, &repaired), CUSTOS_EPROTO);
    assert_int_equal(repaired, 0);
    expect_finding(p, NULL, "line 2 (seq 2): modified");
    expect_finding(p, NULL, "line 6: torn");
    fclose(devnull);
}

static void test_restart_continues_chain(void **state)
{
    (void)state;
    char p[300], head1[CUSTOS_GOVLOG_HEX + 1], head2[CUSTOS_GOVLOG_HEX + 1];
    path_in(p, sizeof(p), "restart.jsonl");
    make_log(p, NULL, 3, head1);
    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(p, NULL, &log), 0);
    uint64_t seq;
    custos_govlog_head(log, head2, &seq);
    assert_int_equal(seq, 3);
    assert_string_equal(head1, head2);
    assert_int_equal(custos_govlog_append(log, 0, "system", "config.reload", "custos.yaml", NULL), 0);
    custos_govlog_free(log);
    assert_int_equal(custos_govlog_open(p, NULL, &log), 0);
    assert_int_equal(custos_govlog_append(log, 0, "system", "service.stop", "custos", NULL), 0);
    custos_govlog_head(log, head2, &seq);
    assert_int_equal(seq, 5);
    custos_govlog_free(log);
    lines_t ls;
    read_lines(p, &ls);
    assert_int_equal(ls.n, 5);
    assert_non_null(strstr(ls.l[3], "\"seq\":4,"));
    assert_non_null(strstr(ls.l[3], head1)); /* prev of seq 4 is the head before the restart */
    free_lines(&ls);
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file(p, NULL, head2, NULL, &res), 0);
    assert_int_equal(res.records, 5);

    /* a tampered log refuses to open */
    read_lines(p, &ls);
    char *t = ls.l[0];
    ls.l[0] = ls.l[1];
    ls.l[1] = t;
    write_lines(p, &ls);
    free_lines(&ls);
    assert_int_equal(custos_govlog_open(p, NULL, &log), CUSTOS_EPROTO);
}

/* Two handles (as two custos processes would have) share one file: each append continues the other's chain. */
static void test_shared_file(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "shared.jsonl");
    unlink(p);
    custos_govlog_t *a = NULL, *b = NULL;
    assert_int_equal(custos_govlog_open(p, NULL, &a), 0);
    assert_int_equal(custos_govlog_open(p, NULL, &b), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(custos_govlog_append(a, 0, "a", "policy.update", "p", NULL), 0);
        assert_int_equal(custos_govlog_append(b, 0, "b", "policy.update", "p", NULL), 0);
        assert_int_equal(custos_govlog_append(b, 0, "b", "policy.update", "p", NULL), 0);
    }
    char ha[CUSTOS_GOVLOG_HEX + 1], hb[CUSTOS_GOVLOG_HEX + 1];
    uint64_t sa, sb;
    custos_govlog_head(a, ha, &sa);
    custos_govlog_head(b, hb, &sb);
    assert_int_equal(sa, 7); /* a has not seen b's last two yet */
    assert_int_equal(sb, 9);
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file(p, NULL, hb, NULL, &res), 0);
    assert_int_equal(res.records, 9);

    /* a line that does not continue the chain, written behind the handles' backs: both refuse */
    FILE *f = fopen(p, "a");
    fputs("{\"v\":1}\n", f);
    fclose(f);
    assert_int_equal(custos_govlog_append(a, 0, "a", "policy.update", "p", NULL), CUSTOS_EUNAVAIL);
    assert_int_equal(custos_govlog_append(a, 0, "a", "policy.update", "p", NULL), CUSTOS_EUNAVAIL);
    assert_int_equal(custos_govlog_append(b, 0, "b", "policy.update", "p", NULL), CUSTOS_EUNAVAIL);
    custos_govlog_free(a);
    custos_govlog_free(b);
    expect_finding(p, NULL, "line 10: malformed");
}

#define NTHREADS 4
#define PER_THREAD 50

static void *writer(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char target[32];
        snprintf(target, sizeof(target), "t%ld-%d", id, i);
        if (custos_governance_event("admin", "blocklist.update", target, "{\"terms\":3}") != 0)
            return (void *)1;
    }
    custos_json_thread_cleanup();
    return NULL;
}

static void test_global_concurrent(void **state)
{
    (void)state;
    char p[300];
    path_in(p, sizeof(p), "concurrent.jsonl");
    unlink(p);
    assert_int_equal(custos_govlog_open_global(p), 0);
    pthread_t th[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer, (void *)i), 0);
    for (int i = 0; i < NTHREADS; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    char head[CUSTOS_GOVLOG_HEX + 1];
    uint64_t seq;
    assert_int_equal(custos_govlog_global_head(head, &seq), 0);
    assert_int_equal(seq, NTHREADS * PER_THREAD);
    custos_govlog_close_global();
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file(p, NULL, head, NULL, &res), 0);
    assert_int_equal(res.records, NTHREADS * PER_THREAD);
    assert_string_equal(res.head, head);

    /* a torn log leaves the process-wide log refusing */
    FILE *f = fopen(p, "a");
    fputs("{\"v\":1", f);
    fclose(f);
    assert_int_equal(custos_govlog_open_global(p), CUSTOS_EPROTO);
    assert_int_equal(custos_governance_event("admin", "key.create", "k", NULL), CUSTOS_EUNAVAIL);
    custos_govlog_close_global();
}

/* Signed checkpoints: every CUSTOS_GOVLOG_CHECKPOINT_RECORDS records and on demand; verified with the public key, a
 * different key is a finding, the records after the last checkpoint are counted as the unsigned tail. */
#define PUBS(x) (const char *const[]){(x)}, 1

static void test_signed_checkpoints(void **state)
{
    (void)state;
    char p[300], pub[300], pub2[300];
    path_in(p, sizeof(p), "signed.jsonl");
    path_in(pub, sizeof(pub), "signed.pub");
    path_in(pub2, sizeof(pub2), "other.pub");
    unsigned char seed[32], seed2[32];
    for (int i = 0; i < 32; i++) {
        seed[i] = (unsigned char)(i * 7 + 1);
        seed2[i] = (unsigned char)(i * 5 + 3);
    }
    char *pem = NULL, kid[CUSTOS_GOVLOG_KEY_ID_LEN + 1];
    assert_int_equal(custos_govlog_public_key_pem(seed, &pem, kid), 0);
    assert_int_equal(strlen(kid), CUSTOS_GOVLOG_KEY_ID_LEN);
    FILE *f = fopen(pub, "w");
    fputs(pem, f);
    fclose(f);
    free(pem);
    assert_int_equal(custos_govlog_public_key_pem(seed2, &pem, NULL), 0);
    f = fopen(pub2, "w");
    fputs(pem, f);
    fclose(f);
    free(pem);

    custos_govlog_t *log = NULL;
    assert_int_equal(custos_govlog_open(p, NULL, &log), 0);
    assert_int_equal(custos_govlog_checkpoint(log), CUSTOS_EINVAL); /* no key yet */
    assert_int_equal(custos_govlog_set_signing_key(log, seed), 0);
    for (int i = 0; i < CUSTOS_GOVLOG_CHECKPOINT_RECORDS + 5; i++)
        assert_int_equal(custos_govlog_append(log, 0, "admin-1", "key.create", "k", NULL), 0);
    uint64_t seq;
    custos_govlog_head(log, NULL, &seq);
    assert_int_equal(seq, CUSTOS_GOVLOG_CHECKPOINT_RECORDS + 6); /* one checkpoint after record 100 */
    custos_govlog_verify_result_t res;
    assert_int_equal(custos_govlog_verify_file_signed(p, NULL, NULL, PUBS(pub), false, NULL, &res), 0);
    assert_int_equal(res.checkpoints, 1);
    assert_int_equal(res.last_checkpoint_seq, CUSTOS_GOVLOG_CHECKPOINT_RECORDS + 1);
    assert_int_equal(res.unsigned_tail, 5);
    assert_int_equal(custos_govlog_verify_file_signed(p, NULL, NULL, PUBS(pub), true, NULL, &res), CUSTOS_EPROTO);
    assert_int_equal(custos_govlog_checkpoint(log), 0);
    assert_int_equal(custos_govlog_checkpoint(log), 0); /* the last record is one already: nothing written */
    custos_govlog_head(log, NULL, &seq);
    assert_int_equal(seq, CUSTOS_GOVLOG_CHECKPOINT_RECORDS + 7);
    custos_govlog_free(log);
    assert_int_equal(custos_govlog_verify_file_signed(p, NULL, NULL, PUBS(pub), true, NULL, &res), 0);
    assert_int_equal(res.checkpoints, 2);
    assert_int_equal(res.unsigned_tail, 0);
    assert_int_equal(custos_govlog_verify_file_signed(p, NULL, NULL, PUBS(pub2), false, NULL, &res), CUSTOS_EPROTO);
    assert_int_equal(res.problems, 2);
    const char *both[2] = {pub2, pub}; /* a log that lived through a key replacement: either key */
    assert_int_equal(custos_govlog_verify_file_signed(p, NULL, NULL, both, 2, true, NULL, &res), 0);
    assert_int_equal(res.checkpoints, 2);
    assert_int_equal(custos_govlog_verify_file_signed(p, NULL, NULL, PUBS("/nonexistent.pub"), false, NULL, &res),
                     CUSTOS_EINVAL);
    /* a reopened log continues: the checkpoint state is read back */
    assert_int_equal(custos_govlog_open(p, NULL, &log), 0);
    assert_int_equal(custos_govlog_set_signing_key(log, seed), 0);
    assert_int_equal(custos_govlog_checkpoint(log), 0);
    custos_govlog_head(log, NULL, &seq);
    assert_int_equal(seq, CUSTOS_GOVLOG_CHECKPOINT_RECORDS + 7);
    custos_govlog_free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_global_preopen_buffer),
        cmocka_unit_test(test_append_verify_format),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_modified),
        cmocka_unit_test(test_deleted),
        cmocka_unit_test(test_inserted),
        cmocka_unit_test(test_reordered),
        cmocka_unit_test(test_truncated_tail),
        cmocka_unit_test(test_torn_and_repair),
        cmocka_unit_test(test_restart_continues_chain),
        cmocka_unit_test(test_global_concurrent),
        cmocka_unit_test(test_shared_file),
        cmocka_unit_test(test_signed_checkpoints),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
