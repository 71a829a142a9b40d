/* SPDX-License-Identifier: Apache-2.0
 * Blocklist matcher: word boundaries, normalisation evasions, regexes, unsupported constructs, stream matching
 * across chunk boundaries, 100,000 terms, the hub, and the SQLite store. */
#include "safety/blocklist.h"
#include "safety/blocklist_store.h"
#include "util/err.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define WW (CUSTOS_BLOCKLIST_WHOLE_WORD | CUSTOS_BLOCKLIST_NORMALIZE)

typedef struct hits {
    char ids[64][40];
    size_t start[64], end[64];
    size_t n;
} hits_t;

static int on_hit(void *ud, const custos_blocklist_hit_t *h)
{
    hits_t *x = ud;
    if (x->n < 64) {
        snprintf(x->ids[x->n], sizeof(x->ids[0]), "%s", h->item_id);
        x->start[x->n] = h->start;
        x->end[x->n] = h->end;
        x->n++;
    }
    return 0;
}

static bool has_hit(const hits_t *h, const char *id)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->ids[i], id) == 0)
            return true;
    return false;
}

static custos_blocklists_t *build1(const custos_blocklist_item_def_t *items, size_t n)
{
    custos_blocklist_def_t l = {"list1", items, n};
    custos_blocklists_t *set = NULL;
    char err[256];
    int rc = custos_blocklists_build(&l, 1, &set, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "build: %s\n", err);
    assert_int_equal(rc, 0);
    return set;
}

static hits_t scan(const custos_blocklists_t *set, const char *text)
{
    hits_t h;
    memset(&h, 0, sizeof(h));
    custos_blocklist_scratch_t s;
    custos_blocklist_scratch_init(&s);
    assert_int_equal(custos_blocklists_scan(set, NULL, 0, text, strlen(text), &s, on_hit, &h), 0);
    custos_blocklist_scratch_dispose(&s);
    return h;
}

static void test_word_boundaries(void **state)
{
    (void)state;
    custos_blocklist_item_def_t items[] = {
        {"a", "ass", WW},
        {"b", "bad word", WW},
        {"c", "sub", CUSTOS_BLOCKLIST_NORMALIZE}, /* substring allowed */
        {"d", "rawterm", CUSTOS_BLOCKLIST_WHOLE_WORD},
    };
    custos_blocklists_t *set = build1(items, 4);
    hits_t h = scan(set, "a classic assessment");
    assert_int_equal(h.n, 0);
    h = scan(set, "you ass!");
    assert_int_equal(h.n, 1);
    assert_true(has_hit(&h, "a"));
    assert_int_equal(h.start[0], 4);
    assert_int_equal(h.end[0], 7);
    h = scan(set, "ASS");
    assert_true(has_hit(&h, "a"));
    h = scan(set, "a BAD   WORD here and a subway");
    assert_true(has_hit(&h, "b"));
    assert_true(has_hit(&h, "c"));
    h = scan(set, "rawterms and xrawterm");
    assert_false(has_hit(&h, "d"));
    h = scan(set, "a RawTerm.");
    assert_true(has_hit(&h, "d"));
    custos_blocklists_unref(set);
}

static void test_normalisation_evasions(void **state)
{
    (void)state;
    custos_blocklist_item_def_t items[] = {{"k", "kill", WW}, {"h", "hate", WW}};
    custos_blocklists_t *set = build1(items, 2);
    const char *evasions[] = {
        "i will k\xe2\x80\x8bi\xe2\x80\x8bl\xe2\x80\x8bl you",         /* zero-width spaces */
        "i will k i l l you",                                          /* spaced out */
        "i will k1ll you",                                             /* leetspeak */
        "i will \xd0\xbaill you",                                      /* Cyrillic ka */
        "i will \xef\xbd\x8b\xef\xbd\x89\xef\xbd\x8c\xef\xbd\x8c you", /* fullwidth */
        "i will KILLLLL you",                                          /* case and repeats */
    };
    for (size_t i = 0; i < sizeof(evasions) / sizeof(*evasions); i++) {
        hits_t h = scan(set, evasions[i]);
        if (!has_hit(&h, "k"))
            fail_msg("evasion %zu not caught", i);
        /* offsets are bytes of the original text and cover the evasion */
        assert_int_equal(h.start[0], 7);
        assert_true(h.end[0] > h.start[0] && h.end[0] <= strlen(evasions[i]) - 4);
    }
    hits_t h = scan(set, "skill and h4t3 speech");
    assert_false(has_hit(&h, "k"));
    assert_true(has_hit(&h, "h"));
    /* invalid UTF-8 is repaired, not refused */
    h = scan(set, "\xff kill \xfe");
    assert_true(has_hit(&h, "k"));
    assert_int_equal(h.start[0], 2);
    assert_int_equal(h.end[0], 6);
    custos_blocklists_unref(set);
}

static void test_regex(void **state)
{
    (void)state;
    custos_blocklist_item_def_t items[] = {
        {"r1", "b[i1][a@][s\\$]", CUSTOS_BLOCKLIST_REGEX},
        {"r2", "\\d{3}-\\d{2}-\\d{4}", CUSTOS_BLOCKLIST_REGEX},
        {"r3", "(a+)+$", CUSTOS_BLOCKLIST_REGEX},    /* catastrophic for backtracking engines; linear here */
        {"r4", "\\bcat\\b", CUSTOS_BLOCKLIST_REGEX}, /* \b: compiled without Unicode classes */
    };
    custos_blocklists_t *set = build1(items, 4);
    hits_t h = scan(set, "that is B1@$ed, SSN 123-45-6789");
    assert_true(has_hit(&h, "r1"));
    assert_true(has_hit(&h, "r2"));
    assert_false(has_hit(&h, "r3"));
    assert_false(has_hit(&h, "r4"));
    h = scan(set, "a Cat!");
    assert_true(has_hit(&h, "r4"));
    h = scan(set, "concatenate");
    assert_false(has_hit(&h, "r4"));
    char big[40000];
    memset(big, 'a', sizeof(big) - 2);
    big[sizeof(big) - 2] = '!';
    big[sizeof(big) - 1] = 0;
    h = scan(set, big);
    assert_false(has_hit(&h, "r3"));
    big[sizeof(big) - 2] = 'a';
    h = scan(set, big);
    assert_true(has_hit(&h, "r3"));
    custos_blocklists_unref(set);
}

static void test_unsupported(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(custos_blocklist_item_check("(a)\\1", 5, CUSTOS_BLOCKLIST_REGEX, err, sizeof(err)), CUSTOS_EINVAL);
    assert_non_null(strstr(err, "regex"));
    assert_int_equal(custos_blocklist_item_check("foo(?=bar)", 10, CUSTOS_BLOCKLIST_REGEX, err, sizeof(err)),
                     CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check("(?<!x)foo", 9, CUSTOS_BLOCKLIST_REGEX, err, sizeof(err)),
                     CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check("a*", 2, CUSTOS_BLOCKLIST_REGEX, err, sizeof(err)), CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check("[", 1, CUSTOS_BLOCKLIST_REGEX, err, sizeof(err)), CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check("\xe2\x80\x8b", 3, WW, err, sizeof(err)), CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check("\xff", 1, WW, err, sizeof(err)), CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check("", 0, WW, err, sizeof(err)), CUSTOS_EINVAL);
    char longt[200];
    memset(longt, 'x', sizeof(longt));
    assert_int_equal(custos_blocklist_item_check(longt, 129, WW, err, sizeof(err)), CUSTOS_EINVAL);
    assert_int_equal(custos_blocklist_item_check(longt, 128, WW, err, sizeof(err)), 0);
    /* a bad regex in a build names the list and the item id, never the text */
    custos_blocklist_item_def_t items[] = {{"good", "fine", WW}, {"item-42", "secret(?=word)", CUSTOS_BLOCKLIST_REGEX}};
    custos_blocklist_def_t l = {"mylist", items, 2};
    custos_blocklists_t *set = NULL;
    assert_int_equal(custos_blocklists_build(&l, 1, &set, err, sizeof(err)), CUSTOS_EIO);
    assert_non_null(strstr(err, "item-42"));
    assert_null(strstr(err, "secret"));
    assert_null(set);
}

static void stream_chunks(const custos_blocklists_t *set, const char *const *chunks, size_t n, hits_t *h)
{
    memset(h, 0, sizeof(*h));
    custos_blocklist_scratch_t s;
    custos_blocklist_scratch_init(&s);
    custos_blocklist_stream_t *st = NULL;
    assert_int_equal(custos_blocklist_stream_new(set, NULL, 0, &st), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(custos_blocklist_stream_feed(st, chunks[i], strlen(chunks[i]), &s, on_hit, h), 0);
    assert_int_equal(custos_blocklist_stream_close(st, &s, on_hit, h), 0);
    custos_blocklist_scratch_dispose(&s);
}

static void test_stream_chunk_boundaries(void **state)
{
    (void)state;
    custos_blocklist_item_def_t items[] = {
        {"t", "forbidden phrase", WW},
        {"r", "secret-[0-9]{4}", CUSTOS_BLOCKLIST_REGEX},
        {"w", "ass", WW},
    };
    custos_blocklists_t *set = build1(items, 3);
    hits_t h;
    const char *c1[] = {"this is a forb", "idden phr", "ase, and the code is secr", "et-12", "34 ok"};
    stream_chunks(set, c1, 5, &h);
    assert_true(has_hit(&h, "t"));
    assert_true(has_hit(&h, "r"));
    assert_false(has_hit(&h, "w"));
    /* absolute offsets from the stream start */
    for (size_t i = 0; i < h.n; i++)
        if (strcmp(h.ids[i], "t") == 0) {
            assert_int_equal(h.start[i], 10);
            assert_int_equal(h.end[i], 26);
        }
    /* a whole word split across chunks that then continues: no hit ("ass" + "essment") */
    const char *c2[] = {"an ass", "essment of risk"};
    stream_chunks(set, c2, 2, &h);
    assert_false(has_hit(&h, "w"));
    /* ... and one that ends at the end of the stream is reported by close */
    const char *c3[] = {"you ", "ass"};
    stream_chunks(set, c3, 2, &h);
    assert_true(has_hit(&h, "w"));
    /* evasion split across chunks, and a UTF-8 character split across chunks */
    const char *c4[] = {"forbid\xe2\x80", "\x8b"
                                          "den phrase"};
    stream_chunks(set, c4, 2, &h);
    assert_true(has_hit(&h, "t"));
    /* a long stream: the carry-over window is bounded, each item reported once */
    char chunk[64];
    custos_blocklist_scratch_t s;
    custos_blocklist_scratch_init(&s);
    custos_blocklist_stream_t *st = NULL;
    memset(&h, 0, sizeof(h));
    assert_int_equal(custos_blocklist_stream_new(set, NULL, 0, &st), 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(chunk, sizeof(chunk), "%s", i % 500 == 7 ? "forbidden " : "lorem ipsum ");
        assert_int_equal(custos_blocklist_stream_feed(st, chunk, strlen(chunk), &s, on_hit, &h), 0);
        if (i % 500 == 7)
            assert_int_equal(custos_blocklist_stream_feed(st, "phrase ", 7, &s, on_hit, &h), 0);
    }
    assert_int_equal(custos_blocklist_stream_close(st, &s, on_hit, &h), 0);
    assert_int_equal(h.n, 1);
    custos_blocklist_scratch_dispose(&s);
    custos_blocklists_unref(set);
}

static void test_selection_and_hub(void **state)
{
    (void)state;
    custos_blocklist_item_def_t a[] = {{"a1", "apple", WW}};
    custos_blocklist_item_def_t b[] = {{"b1", "banana", WW}};
    custos_blocklist_def_t lists[] = {{"fruitA", a, 1}, {"fruitB", b, 1}};
    custos_blocklists_t *set = NULL;
    assert_int_equal(custos_blocklists_build(lists, 2, &set, NULL, 0), 0);
    assert_int_equal(custos_blocklists_count(set), 2);
    assert_true(custos_blocklists_has(set, "fruitB"));
    custos_blocklist_scratch_t s;
    custos_blocklist_scratch_init(&s);
    hits_t h;
    memset(&h, 0, sizeof(h));
    const char *only_b[] = {"fruitB"};
    assert_int_equal(custos_blocklists_scan(set, only_b, 1, "apple banana", 12, &s, on_hit, &h), 0);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.ids[0], "b1");
    const char *missing[] = {"nope"};
    assert_int_equal(custos_blocklists_scan(set, missing, 1, "apple", 5, &s, on_hit, &h), CUSTOS_ENOTFOUND);
    custos_blocklist_def_t dup[] = {{"x", a, 1}, {"x", b, 1}};
    custos_blocklists_t *bad = NULL;
    assert_int_equal(custos_blocklists_build(dup, 2, &bad, NULL, 0), CUSTOS_EINVAL);

    custos_blocklist_hub_t *hub = NULL;
    assert_int_equal(custos_blocklist_hub_new(&hub), 0);
    custos_blocklist_view_t v = {0};
    const custos_blocklists_t *cur = custos_blocklist_view_get(hub, &v);
    assert_int_equal(custos_blocklists_count(cur), 0);
    custos_blocklist_hub_publish(hub, custos_blocklists_ref(set));
    cur = custos_blocklist_view_get(hub, &v);
    assert_ptr_equal(cur, set);
    assert_ptr_equal(custos_blocklist_view_get(hub, &v), set);
    /* a stream keeps its set alive after a swap */
    custos_blocklist_stream_t *st = NULL;
    assert_int_equal(custos_blocklist_stream_new(cur, NULL, 0, &st), 0);
    custos_blocklists_t *empty = NULL;
    assert_int_equal(custos_blocklists_build(NULL, 0, &empty, NULL, 0), 0);
    custos_blocklist_hub_publish(hub, empty);
    custos_blocklists_unref(set);
    assert_ptr_equal(custos_blocklist_view_get(hub, &v), empty);
    memset(&h, 0, sizeof(h));
    assert_int_equal(custos_blocklist_stream_feed(st, "an apple ", 9, &s, on_hit, &h), 0);
    assert_int_equal(custos_blocklist_stream_close(st, &s, on_hit, &h), 0);
    assert_int_equal(h.n, 1);
    custos_blocklist_view_dispose(&v);
    custos_blocklist_hub_free(hub);
    custos_blocklist_scratch_dispose(&s);
}

/* Workers read the newest set through their views while another thread keeps publishing new ones (ASan catches a
 * set freed while in use). */
typedef struct reader_arg {
    custos_blocklist_hub_t *hub;
    atomic_int *stop;
    size_t scans, hits;
} reader_arg_t;

static int count_hit(void *ud, const custos_blocklist_hit_t *h)
{
    (void)h;
    ((reader_arg_t *)ud)->hits++;
    return 0;
}

static void *reader(void *p)
{
    reader_arg_t *a = p;
    custos_blocklist_view_t v = {0};
    custos_blocklist_scratch_t s;
    custos_blocklist_scratch_init(&s);
    while (!atomic_load(a->stop)) {
        const custos_blocklists_t *set = custos_blocklist_view_get(a->hub, &v);
        custos_blocklist_stream_t *st = NULL;
        if (custos_blocklist_stream_new(set, NULL, 0, &st) == 0) {
            custos_blocklist_stream_feed(st, "the gen", 7, &s, count_hit, a);
            custos_blocklists_scan(set, NULL, 0, "a gen term here", 15, &s, count_hit, a);
            custos_blocklist_stream_feed(st, " term", 5, &s, count_hit, a);
            custos_blocklist_stream_close(st, &s, count_hit, a);
        }
        a->scans++;
    }
    custos_blocklist_scratch_dispose(&s);
    custos_blocklist_view_dispose(&v);
    return NULL;
}

static void test_hub_threads(void **state)
{
    (void)state;
    custos_blocklist_hub_t *hub = NULL;
    assert_int_equal(custos_blocklist_hub_new(&hub), 0);
    atomic_int stop = 0;
    pthread_t th[3];
    reader_arg_t args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (reader_arg_t){hub, &stop, 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    }
    for (int g = 0; g < 40; g++) {
        custos_blocklist_item_def_t items[] = {{"t", "gen term", WW},
                                               {"r", g % 2 ? "ge[n]" : "term", CUSTOS_BLOCKLIST_REGEX}};
        custos_blocklist_def_t l = {g % 3 ? "a" : "b", items, 2};
        custos_blocklists_t *set = NULL;
        assert_int_equal(custos_blocklists_build(&l, 1, &set, NULL, 0), 0);
        custos_blocklist_hub_publish(hub, set);
    }
    atomic_store(&stop, 1);
    size_t hits = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        hits += args[i].hits;
    }
    assert_true(hits > 0);
    custos_blocklist_hub_free(hub);
}

static void test_100k_terms(void **state)
{
    (void)state;
    enum { N = 100000 };
    custos_blocklist_item_def_t *items = calloc(N, sizeof(*items));
    char(*texts)[24] = calloc(N, 24);
    char(*ids)[16] = calloc(N, 16);
    assert_non_null(items);
    for (int i = 0; i < N; i++) {
        /* letters only, so leetspeak folding does not touch them */
        unsigned v = (unsigned)i * 2654435761u;
        snprintf(texts[i], 24, "zq%c%c%c%c%cterm", 'a' + v % 26, 'a' + (v / 26) % 26, 'a' + (v / 676) % 26,
                 'a' + (v / 17576) % 26, 'a' + (unsigned)i % 26);
        snprintf(ids[i], 16, "i%d", i);
        items[i] = (custos_blocklist_item_def_t){ids[i], texts[i], WW};
    }
    custos_blocklists_t *set = build1(items, N);
    assert_int_equal(custos_blocklists_items(set), N);
    assert_true(custos_blocklists_bytes(set) > 0);
    char text[128];
    snprintf(text, sizeof(text), "benign words then %s and more", texts[77777]);
    hits_t h = scan(set, text);
    assert_true(has_hit(&h, "i77777"));
    custos_blocklists_unref(set);
    free(items);
    free(texts);
    free(ids);
}

static void test_store(void **state)
{
    (void)state;
    char path[] = "/tmp/custos-blstore-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    custos_storage_config_t sc = {.driver = CUSTOS_STORAGE_SQLITE, .path = path};
    custos_blstore_t *st = NULL;
    assert_int_equal(custos_blstore_open(&sc, false, &st), CUSTOS_ENOTFOUND);
    assert_int_equal(custos_blstore_open(&sc, true, &st), 0);
    bool created = false;
    assert_int_equal(custos_blstore_list_upsert(st, "L1", "first", 100, &created, NULL, NULL), 0);
    assert_true(created);
    assert_int_equal(custos_blstore_list_upsert(st, "L1", NULL, 101, &created, NULL, NULL), 0);
    assert_false(created);
    custos_blstore_item_t it[2] = {{.text = "hate", .description = "d", .flags = WW},
                                   {.text = "x[0-9]+y", .flags = CUSTOS_BLOCKLIST_REGEX}};
    assert_int_equal(custos_blstore_items_upsert(st, "L1", it, 2, 100, NULL, NULL), 0);
    char id0[CUSTOS_BLOCKLIST_ID_LEN];
    memcpy(id0, it[0].id, sizeof(id0));
    assert_int_equal(strlen(id0), 36);
    /* same text again: same id */
    custos_blstore_item_t again = {.text = "hate", .description = "changed", .flags = WW};
    assert_int_equal(custos_blstore_items_upsert(st, "L1", &again, 1, 100, NULL, NULL), 0);
    assert_string_equal(again.id, id0);
    assert_int_equal(custos_blstore_items_upsert(st, "nope", &again, 1, 100, NULL, NULL), CUSTOS_ENOTFOUND);
    custos_blstore_close(st);
    custos_blocklists_t *set = NULL;
    char err[256];
    assert_int_equal(custos_blstore_build_config(&sc, &set, NULL, err, sizeof(err)), 0);
    assert_int_equal(custos_blocklists_items(set), 2);
    hits_t h = scan(set, "I HATE x123y");
    assert_int_equal(h.n, 2);
    assert_true(has_hit(&h, id0));
    custos_blocklists_unref(set);
    assert_int_equal(custos_blstore_open(&sc, false, &st), 0);
    const char *rm[] = {id0, "unknown"};
    assert_int_equal(custos_blstore_items_remove(st, "L1", rm, 2, NULL, NULL), 0);
    assert_int_equal(custos_blstore_list_delete(st, "L1", NULL, NULL), 0);
    assert_int_equal(custos_blstore_list_delete(st, "L1", NULL, NULL), CUSTOS_ENOTFOUND);
    custos_blstore_close(st);
    assert_int_equal(custos_blstore_build_config(&sc, &set, NULL, err, sizeof(err)), 0);
    assert_int_equal(custos_blocklists_items(set), 0);
    custos_blocklists_unref(set);
    unlink(path);
    char wal[64];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
}

static int one_item_text(void *ud, const custos_blstore_item_t *it)
{
    snprintf(ud, 64, "%s", it->text);
    return 0;
}

/* A SQLite file from before migration 3 (blocklists in their own tables, made by the old blocklist_store.c, no
 * store schema or with an older one): the rows are kept and served through the store. */
static void test_store_migrates_old_tables(void **state)
{
    (void)state;
    char path[] = "/tmp/custos-blstore-old-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    custos_store_opts_t o = {.driver = CUSTOS_STORE_SQLITE, .path = path, .no_migrate = true};
    custos_store_t *raw = NULL;
    assert_int_equal(custos_store_open(&o, &raw, NULL, 0), 0);
    static const char *const OLD[] = {
        "CREATE TABLE blocklists(name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '',"
        " created INTEGER NOT NULL, updated INTEGER NOT NULL)",
        "CREATE TABLE blocklist_items(id TEXT PRIMARY KEY, blocklist TEXT NOT NULL, text TEXT NOT NULL,"
        " is_regex INTEGER NOT NULL, flags INTEGER NOT NULL, description TEXT NOT NULL DEFAULT '',"
        " created INTEGER NOT NULL, UNIQUE(blocklist, is_regex, text))",
        "CREATE INDEX blocklist_items_list ON blocklist_items(blocklist)",
        "INSERT INTO blocklists VALUES('old', 'kept', 1, 2)",
        "INSERT INTO blocklist_items VALUES('11111111-2222-4333-8444-555555555555', 'old', 'forbidden', 0, 6, '', 1)",
        NULL};
    for (const char *const *q = OLD; *q; q++)
        assert_int_equal(custos_store_exec(raw, *q, NULL, 0, NULL, NULL, NULL), 0);
    custos_store_close(raw);
    custos_storage_config_t sc = {.driver = CUSTOS_STORAGE_SQLITE, .path = path};
    custos_blocklists_t *set = NULL;
    char err[256];
    int64_t v = -1;
    assert_int_equal(custos_blstore_build_config(&sc, &set, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 0);
    assert_int_equal(custos_blocklists_items(set), 1);
    hits_t h = scan(set, "this is FORBIDDEN here");
    assert_true(has_hit(&h, "11111111-2222-4333-8444-555555555555"));
    custos_blocklists_unref(set);
    custos_blstore_t *st = NULL;
    assert_int_equal(custos_blstore_open(&sc, false, &st), 0);
    char text[64] = "";
    assert_int_equal(custos_blstore_item_get(st, "old", "11111111-2222-4333-8444-555555555555", one_item_text, text),
                     0);
    assert_string_equal(text, "forbidden");
    /* the old table has no seq column: SQLite's rowid orders it, new writes work and count */
    custos_blstore_item_t it = {.text = "newer", .flags = WW};
    assert_int_equal(custos_blstore_items_upsert(st, "old", &it, 1, 3, NULL, NULL), 0);
    assert_int_equal(custos_blstore_version(st, &v), 0);
    assert_int_equal(v, 1);
    custos_blstore_close(st);
    unlink(path);
    char wal[64];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_word_boundaries),
        cmocka_unit_test(test_normalisation_evasions),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_stream_chunk_boundaries),
        cmocka_unit_test(test_selection_and_hub),
        cmocka_unit_test(test_hub_threads),
        cmocka_unit_test(test_100k_terms),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_store_migrates_old_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
