/* SPDX-License-Identifier: Apache-2.0
 * Tests for metrics: shard sums, gauges, histograms, escaping, the series cap, exact exposition output
 * and concurrent updates from several threads. */
#include "metrics/metrics.h"
#include "util/buf.h"
#include "util/err.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static const char *const route_code[] = {"route", "code"};
static const char *const route_only[] = {"route"};

static void test_counter_sum_across_shards(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(4);
    assert_non_null(m);
    assert_int_equal(custos_metrics_nshards(m), 4);
    custos_metric_family_t *f = NULL;
    assert_int_equal(custos_metrics_counter(m, "req_total", "Requests.", route_code, 2, &f), 0);
    const char *v1[] = {"chat", "200"};
    const char *v2[] = {"chat", "500"};
    custos_metric_series_t *a = custos_metrics_series(f, v1);
    custos_metric_series_t *b = custos_metrics_series(f, v2);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    const char *v1_again[] = {"chat", "200"};
    assert_ptr_equal(custos_metrics_series(f, v1_again), a);
    for (unsigned s = 0; s < 4; s++)
        custos_metrics_inc(a, s, s + 1);
    custos_metrics_inc(a, 9, 100); /* out of range folds into shard 1 */
    custos_metrics_inc(b, 2, 7);
    assert_int_equal(custos_metrics_counter_value(a), 110);
    assert_int_equal(custos_metrics_counter_value(b), 7);
    /* Wrong-kind updates and NULL handles are no-ops. */
    custos_metrics_gauge_add(a, 0, 5);
    custos_metrics_observe(a, 0, 1.0);
    custos_metrics_inc(NULL, 0, 1);
    assert_int_equal(custos_metrics_counter_value(a), 110);
    custos_metrics_free(m);
}

static void test_gauge(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(3);
    custos_metric_family_t *f = NULL;
    assert_int_equal(custos_metrics_gauge(m, "conns", "Open connections.", NULL, 0, &f), 0);
    custos_metric_series_t *g = custos_metrics_series(f, NULL);
    assert_non_null(g);
    custos_metrics_gauge_add(g, 0, 10);
    custos_metrics_gauge_add(g, 1, -3);
    custos_metrics_gauge_add(g, 2, -9); /* a shard may go negative: connection moved between threads */
    assert_int_equal(custos_metrics_gauge_value(g), -2);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(m, &b), 0);
    assert_non_null(strstr(custos_buf_peek(&b), "\nconns -2\n"));
    custos_buf_dispose(&b);
    custos_metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(2);
    custos_metric_family_t *f = NULL;
    const double bounds[] = {0.01, 0.1, 1, 10};
    assert_int_equal(custos_metrics_histogram(m, "lat_seconds", "Latency.", bounds, 4, route_only, 1, &f), 0);
    const char *v[] = {"chat"};
    custos_metric_series_t *h = custos_metrics_series(f, v);
    custos_metrics_observe(h, 0, 0.0);   /* le 0.01 */
    custos_metrics_observe(h, 1, 0.01);  /* boundary is inclusive: le 0.01 */
    custos_metrics_observe(h, 0, 0.5);   /* le 1 */
    custos_metrics_observe(h, 1, 1.0);   /* le 1 */
    custos_metrics_observe(h, 0, 100.0); /* +Inf */
    custos_metrics_observe(h, 0, NAN);   /* ignored */
    assert_int_equal(custos_metrics_histogram_count(h), 5);
    assert_true(fabs(custos_metrics_histogram_sum(h) - 101.51) < 1e-9);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(m, &b), 0);
    const char *want = "# HELP lat_seconds Latency.\n"
                       "# TYPE lat_seconds histogram\n"
                       "lat_seconds_bucket{route=\"chat\",le=\"0.01\"} 2\n"
                       "lat_seconds_bucket{route=\"chat\",le=\"0.1\"} 2\n"
                       "lat_seconds_bucket{route=\"chat\",le=\"1\"} 4\n"
                       "lat_seconds_bucket{route=\"chat\",le=\"10\"} 4\n"
                       "lat_seconds_bucket{route=\"chat\",le=\"+Inf\"} 5\n"
                       "lat_seconds_sum{route=\"chat\"} 101.51\n"
                       "lat_seconds_count{route=\"chat\"} 5\n";
    assert_string_equal(custos_buf_peek(&b), want);
    custos_buf_dispose(&b);
    custos_metrics_free(m);
}

static void test_escaping(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(1);
    custos_metric_family_t *f = NULL;
    assert_int_equal(custos_metrics_counter(m, "esc_total", "Help with \\ and\nnewline \"quoted\".", route_only, 1, &f),
                     0);
    const char *v[] = {"a\"b\\c\nd"};
    custos_metrics_inc(custos_metrics_series(f, v), 0, 1);
    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(m, &b), 0);
    assert_string_equal(custos_buf_peek(&b), "# HELP esc_total Help with \\\\ and\\nnewline \"quoted\".\n"
                                             "# TYPE esc_total counter\n"
                                             "esc_total{route=\"a\\\"b\\\\c\\nd\"} 1\n");
    custos_buf_dispose(&b);
    custos_metrics_free(m);
}

static void test_series_cap_overflow(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(1);
    custos_metrics_set_max_series(m, 3);
    custos_metric_family_t *f = NULL;
    assert_int_equal(custos_metrics_counter(m, "capped_total", "Capped.", route_code, 2, &f), 0);
    char r[16];
    custos_metric_series_t *s[3];
    for (int i = 0; i < 3; i++) {
        snprintf(r, sizeof(r), "r%d", i);
        const char *v[] = {r, "200"};
        s[i] = custos_metrics_series(f, v);
        assert_non_null(s[i]);
        custos_metrics_inc(s[i], 0, 1);
    }
    const char *v4[] = {"r3", "200"};
    const char *v5[] = {"r4", "404"};
    custos_metric_series_t *o1 = custos_metrics_series(f, v4);
    custos_metric_series_t *o2 = custos_metrics_series(f, v5);
    assert_non_null(o1);
    assert_ptr_equal(o1, o2);
    const char *other[] = {"_other", "_other"};
    assert_ptr_equal(custos_metrics_series(f, other), o1);
    /* Existing series are still found after the cap is reached. */
    const char *v0[] = {"r0", "200"};
    assert_ptr_equal(custos_metrics_series(f, v0), s[0]);
    /* Overlong label values go to the overflow series too. */
    char longv[CUSTOS_METRICS_MAX_LABEL_VALUE + 2];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = 0;
    const char *vl[] = {longv, "200"};
    assert_ptr_equal(custos_metrics_series(f, vl), o1);
    custos_metrics_inc(o1, 0, 2);
    custos_metrics_inc(o2, 0, 3);

    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(m, &b), 0);
    assert_string_equal(custos_buf_peek(&b), "# HELP capped_total Capped.\n"
                                             "# TYPE capped_total counter\n"
                                             "capped_total{route=\"r0\",code=\"200\"} 1\n"
                                             "capped_total{route=\"r1\",code=\"200\"} 1\n"
                                             "capped_total{route=\"r2\",code=\"200\"} 1\n"
                                             "capped_total{route=\"_other\",code=\"_other\"} 5\n");
    custos_buf_dispose(&b);
    custos_metrics_free(m);
}

static void test_render_exact(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(2);
    custos_metric_family_t *req = NULL, *conns = NULL, *lat = NULL, *plain = NULL, *unused = NULL;
    assert_int_equal(custos_metrics_counter(m, "custos_requests_total", "Requests handled.", route_code, 2, &req), 0);
    assert_int_equal(custos_metrics_gauge(m, "custos_connections", "Open connections.", NULL, 0, &conns), 0);
    const double b3[] = {0.005, 0.1, 1};
    assert_int_equal(
        custos_metrics_histogram(m, "custos_latency_seconds", "Request latency.", b3, 3, route_only, 1, &lat), 0);
    const double b1[] = {1};
    assert_int_equal(custos_metrics_histogram(m, "custos_plain_seconds", "", b1, 1, NULL, 0, &plain), 0);
    assert_int_equal(custos_metrics_counter(m, "custos_unused_total", "No series yet.", route_only, 1, &unused), 0);

    const char *chat200[] = {"chat", "200"};
    const char *emb500[] = {"embeddings", "500"};
    custos_metrics_inc(custos_metrics_series(req, chat200), 0, 3);
    custos_metrics_inc(custos_metrics_series(req, chat200), 1, 4);
    custos_metrics_inc(custos_metrics_series(req, emb500), 1, 1);
    custos_metric_series_t *c = custos_metrics_series(conns, NULL);
    custos_metrics_gauge_add(c, 0, 5);
    custos_metrics_gauge_add(c, 1, -2);
    const char *chat[] = {"chat"};
    custos_metric_series_t *l = custos_metrics_series(lat, chat);
    custos_metrics_observe(l, 0, 0.00390625);
    custos_metrics_observe(l, 1, 0.0625);
    custos_metrics_observe(l, 0, 0.5);
    custos_metrics_observe(l, 1, 2);
    custos_metrics_observe(custos_metrics_series(plain, NULL), 0, 1);

    custos_buf_t b;
    custos_buf_init(&b, 0);
    assert_int_equal(custos_metrics_render(m, &b), 0);
    const char *want = "# HELP custos_requests_total Requests handled.\n"
                       "# TYPE custos_requests_total counter\n"
                       "custos_requests_total{route=\"chat\",code=\"200\"} 7\n"
                       "custos_requests_total{route=\"embeddings\",code=\"500\"} 1\n"
                       "# HELP custos_connections Open connections.\n"
                       "# TYPE custos_connections gauge\n"
                       "custos_connections 3\n"
                       "# HELP custos_latency_seconds Request latency.\n"
                       "# TYPE custos_latency_seconds histogram\n"
                       "custos_latency_seconds_bucket{route=\"chat\",le=\"0.005\"} 1\n"
                       "custos_latency_seconds_bucket{route=\"chat\",le=\"0.1\"} 2\n"
                       "custos_latency_seconds_bucket{route=\"chat\",le=\"1\"} 3\n"
                       "custos_latency_seconds_bucket{route=\"chat\",le=\"+Inf\"} 4\n"
                       "custos_latency_seconds_sum{route=\"chat\"} 2.56640625\n"
                       "custos_latency_seconds_count{route=\"chat\"} 4\n"
                       "# HELP custos_plain_seconds \n"
                       "# TYPE custos_plain_seconds histogram\n"
                       "custos_plain_seconds_bucket{le=\"1\"} 1\n"
                       "custos_plain_seconds_bucket{le=\"+Inf\"} 1\n"
                       "custos_plain_seconds_sum 1\n"
                       "custos_plain_seconds_count 1\n"
                       "# HELP custos_unused_total No series yet.\n"
                       "# TYPE custos_unused_total counter\n";
    assert_string_equal(custos_buf_peek(&b), want);

    /* A capped output buffer reports ETOOBIG. */
    custos_buf_t small;
    custos_buf_init(&small, 64);
    assert_int_equal(custos_metrics_render(m, &small), CUSTOS_ETOOBIG);
    custos_buf_dispose(&small);
    custos_buf_dispose(&b);
    custos_metrics_free(m);
}

static void test_invalid_registration(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(1);
    custos_metric_family_t *f = NULL;
    const char *const bad_label[] = {"__reserved"};
    const char *const le[] = {"le"};
    const char *const dup[] = {"a", "a"};
    const char *const dash[] = {"a-b"};
    const double ok_bounds[] = {1, 2};
    const double unsorted[] = {2, 1};
    const double nan_bounds[] = {1, NAN};
    assert_int_equal(custos_metrics_counter(m, "1abc", "", NULL, 0, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_counter(m, "a-b", "", NULL, 0, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_counter(m, "", "", NULL, 0, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_counter(m, "ok:name_total", "", NULL, 0, &f), 0);
    assert_int_equal(custos_metrics_gauge(m, "ok:name_total", "", NULL, 0, &f), CUSTOS_EINVAL); /* duplicate */
    assert_int_equal(custos_metrics_counter(m, "x_total", "", bad_label, 1, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_counter(m, "x_total", "", dup, 2, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_counter(m, "x_total", "", dash, 1, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_counter(m, "x_total", "", le, 1, &f), 0); /* "le" is fine outside histograms */
    assert_int_equal(custos_metrics_histogram(m, "h1", "", ok_bounds, 2, le, 1, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_histogram(m, "h2", "", unsorted, 2, NULL, 0, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_histogram(m, "h3", "", nan_bounds, 2, NULL, 0, &f), CUSTOS_EINVAL);
    assert_int_equal(custos_metrics_histogram(m, "h4", "", ok_bounds, 0, NULL, 0, &f), CUSTOS_EINVAL);
    assert_null(f);
    assert_null(custos_metrics_new(0));
    custos_metrics_free(m);
    custos_metrics_free(NULL);
}

#define NTHREADS 4
#define NINCS 100000

typedef struct worker_arg {
    custos_metric_family_t *counter;
    custos_metric_family_t *hist;
    unsigned shard;
} worker_arg_t;

static void *worker(void *p)
{
    worker_arg_t *a = p;
    const char *shared[] = {"chat", "200"};
    char own[16];
    snprintf(own, sizeof(own), "w%u", a->shard);
    const char *mine[] = {own, "200"};
    const char *hv[] = {"chat"};
    custos_metric_series_t *h = custos_metrics_series(a->hist, hv);
    for (unsigned i = 0; i < NINCS; i++) {
        /* Lookups race with creation of other threads' series. */
        custos_metric_series_t *s = custos_metrics_series(a->counter, (i & 1) ? shared : mine);
        custos_metrics_inc(s, a->shard, 1);
        if ((i & 1023) == 0)
            custos_metrics_observe(h, a->shard, 0.5);
    }
    return NULL;
}

static atomic_int g_stop;
static void *scraper(void *p)
{
    custos_metrics_t *m = p;
    while (!g_stop) {
        custos_buf_t b;
        custos_buf_init(&b, 0);
        custos_metrics_render(m, &b);
        custos_buf_dispose(&b);
    }
    return NULL;
}

static void test_threads_exact_total(void **state)
{
    (void)state;
    custos_metrics_t *m = custos_metrics_new(NTHREADS);
    custos_metric_family_t *cf = NULL, *hf = NULL;
    const double bounds[] = {0.1, 1};
    assert_int_equal(custos_metrics_counter(m, "t_total", "", route_code, 2, &cf), 0);
    assert_int_equal(custos_metrics_histogram(m, "t_seconds", "", bounds, 2, route_only, 1, &hf), 0);
    pthread_t th[NTHREADS], sc;
    worker_arg_t args[NTHREADS];
    g_stop = 0;
    assert_int_equal(pthread_create(&sc, NULL, scraper, m), 0);
    for (unsigned i = 0; i < NTHREADS; i++) {
        args[i] = (worker_arg_t){.counter = cf, .hist = hf, .shard = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    g_stop = 1;
    pthread_join(sc, NULL);

    const char *shared[] = {"chat", "200"};
    assert_int_equal(custos_metrics_counter_value(custos_metrics_series(cf, shared)), NTHREADS * NINCS / 2);
    uint64_t total = custos_metrics_counter_value(custos_metrics_series(cf, shared));
    for (unsigned i = 0; i < NTHREADS; i++) {
        char own[16];
        snprintf(own, sizeof(own), "w%u", i);
        const char *mine[] = {own, "200"};
        uint64_t v = custos_metrics_counter_value(custos_metrics_series(cf, mine));
        assert_int_equal(v, NINCS / 2);
        total += v;
    }
    assert_int_equal(total, (uint64_t)NTHREADS * NINCS);
    const char *hv[] = {"chat"};
    custos_metric_series_t *h = custos_metrics_series(hf, hv);
    assert_int_equal(custos_metrics_histogram_count(h), NTHREADS * ((NINCS + 1023) / 1024));
    custos_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_sum_across_shards),
        cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_series_cap_overflow),
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_invalid_registration),
        cmocka_unit_test(test_threads_exact_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
