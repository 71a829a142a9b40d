/* SPDX-License-Identifier: Apache-2.0
 * The store test suite (store/store.h, auth/keystore on the store, crypto/ vault): every case runs on SQLite
 * and, when CUSTOS_TEST_PG_URL names a PostgreSQL database (tests/integration/store_pg.sh starts a throwaway
 * PostgreSQL 15 and sets it), on PostgreSQL too. The PKCS#11 cases run when CUSTOS_TEST_P11_MODULE,
 * CUSTOS_TEST_P11_TOKEN and CUSTOS_TEST_P11_PIN are set (tests/integration/store_pkcs11.sh makes a SoftHSM2
 * token); otherwise they are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/keystore.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "safety/blocklist_store.h"
#include "store/store.h"
#include "util/err.h"

static char dir[64];

typedef struct {
    custos_storage_driver_t driver;
    bool pkcs11;
} variant_t;

static variant_t V_SQLITE = {CUSTOS_STORAGE_SQLITE, false}, V_PG = {CUSTOS_STORAGE_POSTGRES, false},
                 V_SQLITE_P11 = {CUSTOS_STORAGE_SQLITE, true}, V_PG_P11 = {CUSTOS_STORAGE_POSTGRES, true};

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/custos-store-test-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char db_path[128], key_dir[128];
static custos_storage_config_t sc;
static char pin_buf[64];

/* A fresh, empty store for variant v; skips the test when v's backend is not available. */
static void fresh(const variant_t *v)
{
    static int n;
    memset(&sc, 0, sizeof(sc));
    sc.driver = v->driver;
    sc.busy_timeout_ms = 300;
    snprintf(db_path, sizeof(db_path), "%s/s%d.db", dir, ++n);
    snprintf(key_dir, sizeof(key_dir), "%s/keys%d", dir, n);
    sc.key_dir = key_dir;
    if (v->driver == CUSTOS_STORAGE_POSTGRES) {
        const char *url = getenv("CUSTOS_TEST_PG_URL");
        if (!url || !url[0])
            skip();
        sc.url = (char *)url;
        custos_store_t *s = NULL;
        char err[256];
        custos_store_opts_t o = {.driver = CUSTOS_STORE_POSTGRES, .conninfo = url, .no_migrate = true};
        int rc = custos_store_open(&o, &s, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "pg: %s\n", err);
        assert_int_equal(rc, 0);
        /* start from nothing: drop everything the previous case made */
        assert_int_equal(custos_store_exec(s, "DROP SCHEMA public CASCADE", NULL, 0, NULL, NULL, NULL), 0);
        assert_int_equal(custos_store_exec(s, "CREATE SCHEMA public", NULL, 0, NULL, NULL, NULL), 0);
        custos_store_close(s);
    } else {
        sc.path = db_path;
    }
    if (v->pkcs11) {
        const char *m = getenv("CUSTOS_TEST_P11_MODULE"), *t = getenv("CUSTOS_TEST_P11_TOKEN"),
                   *p = getenv("CUSTOS_TEST_P11_PIN");
        if (!m || !t || !p)
            skip();
        static char label[40];
        snprintf(label, sizeof(label), "custos-kek-%d", n); /* a fresh key per case on the shared token */
        sc.kek_provider = CUSTOS_KEK_PKCS11;
        sc.pkcs11_module = (char *)m;
        sc.pkcs11_token = (char *)t;
        sc.pkcs11_key_label = label;
        snprintf(pin_buf, sizeof(pin_buf), "%s", p);
        sc.pkcs11_pin = pin_buf;
        sc.pkcs11_pin_len = strlen(pin_buf);
    }
}

static custos_store_t *open_store(void)
{
    custos_store_t *s = NULL;
    char err[256] = "";
    int rc = custos_store_open_config(&sc, true, &s, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

/* ---------- store ---------- */

static int count_row(void *ud, const custos_sv_t *c, size_t n)
{
    assert_int_equal(n, 1);
    *(int64_t *)ud = c[0].i;
    return 0;
}

static void test_migrations(void **state)
{
    fresh(*state);
    custos_store_t *s = open_store();
    int64_t v = 0, g = -1;
    assert_int_equal(custos_store_schema_version(s, &v), 0);
    assert_int_equal(v, custos_store_schema_latest());
    assert_int_equal(custos_store_generation(s, &g), 0);
    assert_int_equal(g, 0);
    custos_store_close(s);
    /* reopening runs nothing twice */
    s = open_store();
    assert_int_equal(custos_store_schema_version(s, &v), 0);
    assert_int_equal(v, custos_store_schema_latest());
    int64_t rows = 0;
    assert_int_equal(custos_store_exec(s, "SELECT COUNT(*) FROM schema_migrations", NULL, 0, count_row, &rows, NULL),
                     0);
    assert_int_equal(rows, custos_store_schema_latest());
    /* a store from a newer custos is refused */
    custos_sv_t p = custos_sv_int(999);
    assert_int_equal(
        custos_store_exec(s, "INSERT INTO schema_migrations(version, applied) VALUES(?, 0)", &p, 1, NULL, NULL, NULL),
        0);
    custos_store_close(s);
    char err[256] = "";
    assert_int_equal(custos_store_open_config(&sc, true, &s, err, sizeof(err)), CUSTOS_EIO);
    assert_non_null(strstr(err, "newer"));
}

typedef struct {
    int n;
    char text[64];
    unsigned char blob[8];
    size_t blen;
    int64_t i;
    bool null_seen;
} row_t;

static int values_row(void *ud, const custos_sv_t *c, size_t n)
{
    row_t *r = ud;
    assert_int_equal(n, 4);
    r->n++;
    assert_int_equal(c[0].type, CUSTOS_SV_TEXT);
    snprintf(r->text, sizeof(r->text), "%s", (const char *)c[0].p);
    assert_int_equal(c[1].type, CUSTOS_SV_BLOB);
    r->blen = c[1].n;
    memcpy(r->blob, c[1].p, c[1].n < 8 ? c[1].n : 8);
    assert_int_equal(c[2].type, CUSTOS_SV_INT);
    r->i = c[2].i;
    r->null_seen = c[3].type == CUSTOS_SV_NULL;
    return 0;
}

static void test_values_and_conflicts(void **state)
{
    fresh(*state);
    custos_store_t *s = open_store();
    assert_int_equal(custos_store_exec(s, "CREATE TABLE t(k TEXT PRIMARY KEY, b {BLOB}, i BIGINT, z TEXT{SEQCOL})",
                                       NULL, 0, NULL, NULL, NULL),
                     0);
    const unsigned char blob[5] = {0, 1, 0xff, '?', 0};
    custos_sv_t p[4] = {custos_sv_text("it's ? quoted"), custos_sv_blob(blob, 5), custos_sv_int(-9000000000LL),
                        custos_sv_text(NULL)};
    int64_t ch = 0;
    assert_int_equal(custos_store_exec(s, "INSERT INTO t(k, b, i, z) VALUES(?, ?, ?, ?)", p, 4, NULL, NULL, &ch), 0);
    assert_int_equal(ch, 1);
    /* the same primary key again: a conflict, told apart from other errors */
    assert_int_equal(custos_store_exec(s, "INSERT INTO t(k, b, i, z) VALUES(?, ?, ?, ?)", p, 4, NULL, NULL, NULL),
                     CUSTOS_EAGAIN);
    row_t r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(
        custos_store_exec(s, "SELECT k, b, i, z FROM t WHERE k = ? ORDER BY {SEQ}", p, 1, values_row, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.text, "it's ? quoted");
    assert_int_equal(r.blen, 5);
    assert_memory_equal(r.blob, blob, 5);
    assert_true(r.i == -9000000000LL);
    assert_true(r.null_seen);
    /* wrong parameter count and bad SQL are errors, not crashes; errmsg never holds values */
    assert_int_equal(custos_store_exec(s, "SELECT k FROM t WHERE k = ?", NULL, 0, NULL, NULL, NULL), CUSTOS_EINVAL);
    assert_int_equal(custos_store_exec(s, "SELEC nonsense", NULL, 0, NULL, NULL, NULL), CUSTOS_EIO);
    assert_null(strstr(custos_store_errmsg(s), "quoted"));
    /* rollback discards */
    assert_int_equal(custos_store_begin(s), 0);
    assert_int_equal(custos_store_exec(s, "DELETE FROM t", NULL, 0, NULL, NULL, &ch), 0);
    assert_int_equal(ch, 1);
    custos_store_rollback(s);
    int64_t rows = 0;
    assert_int_equal(custos_store_exec(s, "SELECT COUNT(*) FROM t", NULL, 0, count_row, &rows, NULL), 0);
    assert_int_equal(rows, 1);
    custos_store_close(s);
}

/* ---------- keystore on the store ---------- */

static int n_keys(void *ud, const custos_key_record_t *r)
{
    (void)r;
    (*(int *)ud)++;
    return 0;
}

static int n_ras(void *ud, const custos_ra_record_t *r)
{
    (void)r;
    (*(int *)ud)++;
    return 0;
}

static void test_keystore(void **state)
{
    fresh(*state);
    custos_keystore_t *ks = NULL;
    assert_int_equal(custos_keystore_open_config(&sc, true, &ks, NULL, 0), 0);
    int64_t g0, g1;
    assert_int_equal(custos_store_generation(custos_keystore_store(ks), &g0), 0);
    char key[CUSTOS_KEY_TEXT_LEN + 1];
    custos_key_spec_t spec = {"k1", "alice", CUSTOS_ROLE_INFERENCE_USER, "/deployments/demo", 3600};
    custos_key_record_t rec, found;
    assert_int_equal(custos_keystore_key_create(ks, &spec, 1000, NULL, NULL, key, &rec), 0);
    assert_int_equal(custos_keystore_key_find(ks, rec.sha256, &found), 0);
    assert_string_equal(found.id, rec.id);
    assert_string_equal(found.principal, "alice");
    assert_string_equal(found.scope, "/deployments/demo");
    assert_int_equal(found.expires_s, 4600);
    custos_key_spec_t spec2 = {NULL, "bob", CUSTOS_ROLE_ADMIN, NULL, 0};
    custos_key_record_t rec2;
    assert_int_equal(custos_keystore_key_create(ks, &spec2, 1000, NULL, NULL, key, &rec2), 0);
    int n = 0;
    assert_int_equal(custos_keystore_key_list(ks, n_keys, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(custos_keystore_key_revoke(ks, rec.id, 2000, NULL, NULL), 0);
    assert_int_equal(custos_keystore_key_revoke(ks, rec.id, 2000, NULL, NULL), CUSTOS_ENOTFOUND);
    assert_int_equal(custos_keystore_key_find(ks, rec.sha256, &found), 0);
    assert_int_equal(found.revoked_s, 2000);
    custos_ra_record_t ra;
    memset(&ra, 0, sizeof(ra));
    ra.kind = CUSTOS_RA_GROUP;
    snprintf(ra.subject, sizeof(ra.subject), "engineers");
    ra.role = CUSTOS_ROLE_CONTRIBUTOR;
    snprintf(ra.scope, sizeof(ra.scope), "/");
    assert_int_equal(custos_keystore_ra_create(ks, &ra, 3000, NULL, NULL), 0);
    n = 0;
    assert_int_equal(custos_keystore_ra_list(ks, n_ras, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(custos_keystore_ra_delete(ks, ra.id, NULL, NULL), 0);
    assert_int_equal(custos_keystore_ra_delete(ks, ra.id, NULL, NULL), CUSTOS_ENOTFOUND);
    /* every write bumped the change counter replicas poll */
    assert_int_equal(custos_store_generation(custos_keystore_store(ks), &g1), 0);
    assert_int_equal(g1 - g0, 5);
    custos_keystore_close(ks);
}

/* ---------- the vault ---------- */

static custos_vault_t *open_vault(custos_store_t *s)
{
    custos_vault_t *v = NULL;
    char err[512] = "";
    int rc = custos_vault_open(&sc, s, &v, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "vault: %s\n", err);
    assert_int_equal(rc, 0);
    return v;
}

static void expect_get(custos_vault_t *v, const char *ns, const char *id, const char *want)
{
    unsigned char *out = NULL;
    size_t n = 0;
    assert_int_equal(custos_vault_get(v, ns, id, &out, &n), 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    free(out);
}

static int get_rc(custos_vault_t *v, const char *ns, const char *id)
{
    unsigned char *out = NULL;
    size_t n = 0;
    int rc = custos_vault_get(v, ns, id, &out, &n);
    free(out);
    return rc;
}

typedef struct {
    unsigned char *b;
    size_t *n;
} blob_cap_t;

static int blob_row(void *ud, const custos_sv_t *c, size_t n)
{
    blob_cap_t *x = ud;
    assert_int_equal(n, 1);
    assert_int_equal(c[0].type, CUSTOS_SV_BLOB);
    assert_true(c[0].n <= 4096);
    memcpy(x->b, c[0].p, c[0].n);
    *x->n = c[0].n;
    return 0;
}

static int read_blob(custos_store_t *s, const char *sql, const char *id, unsigned char *b, size_t *n)
{
    blob_cap_t x = {b, n};
    custos_sv_t p = custos_sv_text(id);
    return custos_store_exec(s, sql, &p, 1, blob_row, &x, NULL);
}

/* Flips one byte of column col of record ("content", id) directly in the store (read, flip, write back). */
static void flip(custos_store_t *s, const char *col, const char *id)
{
    char sql[160], upd[200];
    snprintf(sql, sizeof(sql), "SELECT %s FROM sealed WHERE ns = 'content' AND id = ?", col);
    snprintf(upd, sizeof(upd), "UPDATE sealed SET %s = ? WHERE ns = 'content' AND id = ?", col);
    unsigned char b[4096];
    size_t n = 0;
    assert_int_equal(read_blob(s, sql, id, b, &n), 0);
    assert_true(n > 4);
    b[n / 2] ^= 0x01;
    custos_sv_t q[2] = {custos_sv_blob(b, n), custos_sv_text(id)};
    assert_int_equal(custos_store_exec(s, upd, q, 2, NULL, NULL, NULL), 0);
}

static void test_vault_seal_and_faults(void **state)
{
    fresh(*state);
    custos_store_t *s = open_store();
    custos_vault_t *v = open_vault(s);
    assert_int_equal(custos_vault_current(v), 1);
    const char *secret = "the canary sings at midnight";
    assert_int_equal(custos_vault_put(v, "content", "r1", secret, strlen(secret), 100, 0), 0);
    assert_int_equal(custos_vault_put(v, "content", "r2", "second", 6, 100, 0), 0);
    assert_int_equal(custos_vault_put(v, "content", "r3", "third", 5, 100, 0), 0);
    assert_int_equal(custos_vault_put(v, "content", "empty", "", 0, 100, 0), 0);
    expect_get(v, "content", "r1", secret);
    expect_get(v, "content", "empty", "");
    /* the ciphertext is not the plaintext */
    unsigned char b[4096];
    size_t n = 0;
    assert_int_equal(read_blob(s, "SELECT ct FROM sealed WHERE ns = 'content' AND id = ?", "r1", b, &n), 0);
    assert_int_equal(n, strlen(secret) + CUSTOS_TAG_LEN);
    assert_null(memmem(b, n, "canary", 6));
    /* bad input */
    assert_int_equal(custos_vault_put(v, "Bad NS", "x", "a", 1, 0, 0), CUSTOS_EINVAL);
    assert_int_equal(custos_vault_put(v, "content", "", "a", 1, 0, 0), CUSTOS_EINVAL);
    assert_int_equal(get_rc(v, "content", "missing"), CUSTOS_ENOTFOUND);
    /* a flipped byte in the ciphertext, the nonce or the wrapped key: a decryption error for that record only */
    flip(s, "ct", "r1");
    assert_int_equal(get_rc(v, "content", "r1"), CUSTOS_EDECRYPT);
    flip(s, "wrapped", "r2");
    assert_int_equal(get_rc(v, "content", "r2"), CUSTOS_EDECRYPT);
    flip(s, "nonce", "r3");
    assert_int_equal(get_rc(v, "content", "r3"), CUSTOS_EDECRYPT);
    expect_get(v, "content", "empty", "");
    /* AAD binds the record id: a value moved to another id does not open */
    assert_int_equal(custos_vault_put(v, "content", "a", "alpha", 5, 100, 0), 0);
    assert_int_equal(custos_vault_put(v, "content", "b", "bravo", 5, 100, 0), 0);
    assert_int_equal(custos_store_exec(s, "DELETE FROM sealed WHERE id = 'b'", NULL, 0, NULL, NULL, NULL), 0);
    assert_int_equal(custos_store_exec(s, "UPDATE sealed SET id = 'b' WHERE id = 'a'", NULL, 0, NULL, NULL, NULL), 0);
    assert_int_equal(get_rc(v, "content", "b"), CUSTOS_EDECRYPT);
    /* the key version column is bound too */
    assert_int_equal(custos_vault_put(v, "content", "c", "charlie", 7, 100, 0), 0);
    assert_int_equal(
        custos_store_exec(s, "UPDATE sealed SET seal_version = 2 WHERE id = 'c'", NULL, 0, NULL, NULL, NULL), 0);
    assert_int_equal(get_rc(v, "content", "c"), CUSTOS_EDECRYPT);
    custos_vault_close(v);
    custos_store_close(s);
}

typedef struct {
    int n;
    int64_t records[8];
    char state[8][16];
    int current;
} vers_t;

static int ver_cb(void *ud, const custos_kek_version_info_t *i)
{
    vers_t *x = ud;
    if (x->n < 8) {
        x->records[x->n] = i->records;
        snprintf(x->state[x->n], sizeof(x->state[x->n]), "%s", i->state);
        if (i->current)
            x->current = (int)i->version;
    }
    x->n++;
    return 0;
}

static void test_vault_rotate_rewrap_destroy(void **state)
{
    fresh(*state);
    custos_store_t *s = open_store();
    custos_vault_t *v = open_vault(s);
    char err[512] = "";
    for (int i = 0; i < 300; i++) { /* more than one rewrap batch */
        char id[16];
        snprintf(id, sizeof(id), "old%d", i);
        assert_int_equal(custos_vault_put(v, "content", id, "old content", 11, 100, 0), 0);
    }
    uint32_t nv = 0;
    assert_int_equal(custos_vault_rotate(v, 200, &nv, err, sizeof(err)), 0);
    assert_int_equal(nv, 2);
    assert_int_equal(custos_vault_current(v), 2);
    assert_int_equal(custos_vault_put(v, "content", "new", "new content", 11, 200, 0), 0);
    expect_get(v, "content", "old7", "old content");
    expect_get(v, "content", "new", "new content");
    /* a second vault (another process, a replica) sees version 2 as current */
    custos_vault_t *v2 = open_vault(s);
    assert_int_equal(custos_vault_current(v2), 2);
    custos_vault_close(v2);
    /* destroying the current version is refused */
    assert_int_equal(custos_vault_destroy(v, 2, 300, &(int64_t){0}, err, sizeof(err)), CUSTOS_EINVAL);
    /* rotate again, rewrap everything onto 3, destroy 1 and 2: nothing lost */
    assert_int_equal(custos_vault_rotate(v, 250, &nv, err, sizeof(err)), 0);
    int64_t count = 0, failed = 0;
    assert_int_equal(custos_vault_rewrap(v, &count, &failed), 0);
    assert_int_equal(count, 301);
    assert_int_equal(failed, 0);
    assert_int_equal(custos_vault_rewrap(v, &count, &failed), 0);
    assert_int_equal(count, 0);
    assert_int_equal(custos_vault_destroy(v, 1, 300, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 0);
    expect_get(v, "content", "old7", "old content");
    expect_get(v, "content", "new", "new content");
    /* records under a destroyed version are gone for good (crypto-shredding) */
    assert_int_equal(custos_vault_put(v, "content", "doomed", "x", 1, 300, 0), 0);
    assert_int_equal(custos_vault_rotate(v, 400, &nv, err, sizeof(err)), 0);
    assert_int_equal(nv, 4);
    assert_int_equal(custos_vault_destroy(v, 3, 500, &count, err, sizeof(err)), 0);
    assert_int_equal(count, 302);
    assert_int_equal(get_rc(v, "content", "doomed"), CUSTOS_EKEYGONE);
    assert_int_equal(get_rc(v, "content", "old7"), CUSTOS_EKEYGONE);
    assert_int_equal(custos_vault_rewrap(v, &count, &failed), 0);
    assert_int_equal(count, 0);
    assert_int_equal(custos_vault_destroy(v, 3, 500, &count, err, sizeof(err)), CUSTOS_ENOTFOUND);
    vers_t x;
    memset(&x, 0, sizeof(x));
    assert_int_equal(custos_vault_versions(v, ver_cb, &x), 0);
    assert_int_equal(x.n, 4);
    assert_string_equal(x.state[0], "destroyed");
    assert_string_equal(x.state[2], "destroyed");
    assert_string_equal(x.state[3], "active");
    assert_int_equal(x.current, 4);
    custos_vault_close(v);
    custos_store_close(s);
}

static void test_purge(void **state)
{
    fresh(*state);
    custos_store_t *s = open_store();
    custos_vault_t *v = open_vault(s);
    assert_int_equal(custos_vault_put(v, "content", "old", "o", 1, 1000, 0), 0);
    assert_int_equal(custos_vault_put(v, "content", "new", "n", 1, 90000, 0), 0);
    assert_int_equal(custos_vault_put(v, "secret", "s", "s", 1, 1000, 0), 0);
    assert_int_equal(custos_vault_put(v, "secret", "exp", "e", 1, 1000, 5000), 0);
    int64_t count = 0;
    /* one day of retention at t = 100000: "old" (and the expired secret) go */
    assert_int_equal(custos_vault_purge(s, "content", 100000, 86400, &count), 0);
    assert_int_equal(count, 2);
    assert_int_equal(get_rc(v, "content", "old"), CUSTOS_ENOTFOUND);
    expect_get(v, "content", "new", "n");
    expect_get(v, "secret", "s", "s");
    /* retention none: all content goes */
    assert_int_equal(custos_vault_purge(s, "content", 100000, -1, &count), 0);
    assert_int_equal(count, 1);
    custos_vault_close(v);
    custos_store_close(s);
}

/* ---------- faults specific to one backend ---------- */

static void test_local_key_faults(void **state)
{
    (void)state;
    fresh(&V_SQLITE);
    custos_store_t *s = open_store();
    custos_vault_t *v = open_vault(s);
    assert_int_equal(custos_vault_put(v, "content", "r", "x", 1, 1, 0), 0);
    custos_vault_close(v);
    char kf[256], err[512] = "";
    snprintf(kf, sizeof(kf), "%s/kek-1.key", key_dir);
    struct stat st;
    assert_int_equal(stat(kf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 32);
    assert_int_equal(stat(key_dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* a key file others can read is refused */
    assert_int_equal(chmod(kf, 0644), 0);
    assert_int_not_equal(custos_vault_open(&sc, s, &v, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "0600"));
    assert_int_equal(chmod(kf, 0600), 0);
    /* a deleted key file: refuse to start (never silently make a new key for existing data) */
    char moved[300];
    snprintf(moved, sizeof(moved), "%s.moved", kf);
    assert_int_equal(rename(kf, moved), 0);
    assert_int_not_equal(custos_vault_open(&sc, s, &v, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "kek-1.key"));
    assert_int_equal(rename(moved, kf), 0);
    v = open_vault(s);
    expect_get(v, "content", "r", "x");
    custos_vault_close(v);
    custos_store_close(s);
}

static void test_sqlite_faults(void **state)
{
    (void)state;
    fresh(&V_SQLITE);
    char err[256] = "";
    custos_store_t *s = NULL;
    /* missing file, no create */
    assert_int_equal(custos_store_open_config(&sc, false, &s, err, sizeof(err)), CUSTOS_ENOTFOUND);
    /* not a database */
    int fd = open(db_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    char junk[4096];
    memset(junk, 'J', sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    assert_int_equal(custos_store_open_config(&sc, false, &s, err, sizeof(err)), CUSTOS_EIO);
    assert_non_null(strstr(err, "not a database"));
    unlink(db_path);
    /* locked: another writer holds the lock past the busy timeout */
    custos_store_t *a = open_store();
    assert_int_equal(custos_store_begin(a), 0);
    assert_int_equal(custos_store_bump(a), 0);
    custos_store_t *b = open_store(); /* schema already current: opening needs no write lock */
    assert_int_equal(custos_store_begin(b), CUSTOS_ETIMEDOUT);
    assert_non_null(strstr(custos_store_errmsg(b), "locked"));
    custos_store_rollback(a);
    assert_int_equal(custos_store_begin(b), 0);
    assert_int_equal(custos_store_commit(b), 0);
    custos_store_close(a);
    custos_store_close(b);
}

static void test_pkcs11_bad_pin(void **state)
{
    (void)state;
    fresh(&V_SQLITE_P11);
    char err[512] = "";
    custos_kek_t *k = NULL;
    snprintf(pin_buf, sizeof(pin_buf), "000000");
    sc.pkcs11_pin_len = 6;
    assert_int_equal(custos_kek_open(&sc, &k, err, sizeof(err)), CUSTOS_EUNAVAIL);
    assert_non_null(strstr(err, "wrong PIN"));
    assert_null(strstr(err, "000000"));
    sc.pkcs11_pin = NULL;
    sc.pkcs11_pin_len = 0;
    assert_int_equal(custos_kek_open(&sc, &k, err, sizeof(err)), CUSTOS_EUNAVAIL);
    assert_non_null(strstr(err, "PIN"));
    sc.pkcs11_pin = pin_buf;
    snprintf(pin_buf, sizeof(pin_buf), "%s", getenv("CUSTOS_TEST_P11_PIN"));
    sc.pkcs11_pin_len = strlen(pin_buf);
    sc.pkcs11_token = "no-such-token";
    assert_int_equal(custos_kek_open(&sc, &k, err, sizeof(err)), CUSTOS_ENOTFOUND);
    assert_non_null(strstr(err, "no-such-token"));
}

/* ---------- configuration: storage, encryption, retention ---------- */

#define CFG_BASE                                                                                                       \
    "listeners:\n  - address: \"127.0.0.1:8443\"\n"                                                                    \
    "identity:\n  api_keys:\n    - name: demo\n      sha256: "                                                         \
    "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n"                                           \
    "backends:\n  - name: mock\n    provider: openai\n    url: \"http://127.0.0.1:8081\"\n"                            \
    "deployments:\n  - name: demo\n    backends: [mock]\n"

static custos_config_t *cfg_load(const char *extra, char *err, size_t errlen)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml), "%s%s", CFG_BASE, extra);
    custos_config_t *c = NULL;
    err[0] = 0;
    (void)custos_config_load_string("t.yaml", yaml, strlen(yaml), &c, err, errlen);
    return c;
}

static void cfg_bad(const char *extra, const char *needle)
{
    char err[768];
    custos_config_t *c = cfg_load(extra, err, sizeof(err));
    if (c)
        custos_config_unref(c);
    assert_null(c);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_config_keys(void **state)
{
    (void)state;
    char err[768];
    custos_config_t *c = cfg_load("", err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(c->storage.driver, CUSTOS_STORAGE_SQLITE);
    assert_non_null(c->storage.path);
    assert_int_equal(c->storage.poll_interval_ms, 2000);
    assert_int_equal(c->storage.busy_timeout_ms, 5000);
    assert_int_equal(c->storage.kek_provider, CUSTOS_KEK_LOCAL);
    assert_non_null(strstr(c->storage.key_dir, "custos-keys"));
    assert_true(c->retention.content_none);
    custos_config_unref(c);
    setenv("CUSTOS_TEST_PGPW", "pw-123", 1);
    c = cfg_load("storage:\n  driver: postgres\n  url: \"host=127.0.0.1 dbname=custos\"\n"
                 "  password_env: CUSTOS_TEST_PGPW\n  poll_interval_ms: 250\n"
                 "retention: {content: {days: 30}}\n",
                 err, sizeof(err));
    if (!c)
        fprintf(stderr, "%s\n", err);
    assert_non_null(c);
    assert_int_equal(c->storage.driver, CUSTOS_STORAGE_POSTGRES);
    assert_string_equal(c->storage.password, "pw-123");
    assert_int_equal(c->storage.poll_interval_ms, 250);
    assert_false(c->retention.content_none);
    assert_int_equal(c->retention.content_days, 30);
    custos_config_unref(c);
    c = cfg_load("retention: {content: none}\n", err, sizeof(err));
    assert_non_null(c);
    assert_true(c->retention.content_none);
    custos_config_unref(c);
    cfg_bad("storage: {driver: postgres}\n", "driver postgres needs url");
    cfg_bad("storage: {driver: mysql}\n", "expected one of sqlite, postgres");
    cfg_bad("storage: {url: \"host=x\"}\n", "only used with driver: postgres");
    cfg_bad("storage: {driver: postgres, url: \"host=x password=secret\"}\n", "must not contain a password");
    cfg_bad("storage: {password_env: CUSTOS_TEST_PGPW}\n", "only used with driver: postgres");
    cfg_bad("storage: {encryption: {provider: pkcs11}}\n", "needs a pkcs11 mapping");
    cfg_bad("storage: {encryption: {pkcs11: {token: t}}}\n", "only allowed with provider: pkcs11");
    cfg_bad("storage: {encryption: {provider: pkcs11, pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token: t, "
            "key_label: k}}}\n",
            "one of pin_env, pin_file is required");
    cfg_bad("storage: {encryption: {provider: pkcs11, pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token: t, "
            "key_label: k, pin_env: CUSTOS_TEST_NO_SUCH_PIN}}}\n",
            "CUSTOS_TEST_NO_SUCH_PIN is not set");
    cfg_bad("retention: {content: forever}\n", "expected none or a mapping");
    cfg_bad("retention: {content: {days: 0}}\n", "out of range");
    cfg_bad("retention: {content: {}}\n", "missing required key 'days'");
    cfg_bad("retention: {logs: none}\n", "unknown key 'logs'");
    unsetenv("CUSTOS_TEST_PGPW");
}

/* ---------- blocklists (safety/blocklist_store.h) on the store ---------- */

static int bl_item_text(void *ud, const custos_blstore_item_t *it)
{
    char *out = ud;
    size_t n = strlen(out);
    snprintf(out + n, 128 - n, "%s%s", n ? "," : "", it->text);
    return 0;
}

static int bl_list_desc(void *ud, const custos_blstore_list_t *l)
{
    snprintf(ud, 64, "%s=%s", l->name, l->description);
    return 0;
}

static int bl_fail_hook(void *ud)
{
    (void)ud;
    return CUSTOS_EPROTO;
}

static void test_blocklists(void **state)
{
    fresh(*state);
    custos_blstore_t *st = NULL;
    assert_int_equal(custos_blstore_open(&sc, true, &st), 0);
    int64_t v = -1, g = -1;
    assert_int_equal(custos_blstore_version(st, &v), 0);
    assert_int_equal(v, 0);
    bool created = false;
    assert_int_equal(custos_blstore_list_upsert(st, "B", "second", 10, &created, NULL, NULL), 0);
    assert_true(created);
    assert_int_equal(custos_blstore_list_upsert(st, "A", "first", 10, &created, NULL, NULL), 0);
    assert_int_equal(custos_blstore_list_upsert(st, "A", NULL, 11, &created, NULL, NULL), 0);
    assert_false(created);
    char buf[128] = "";
    assert_int_equal(custos_blstore_list_get(st, "A", bl_list_desc, buf), 0);
    assert_string_equal(buf, "A=first");
    custos_blstore_item_t it[3] = {{.text = "zeta", .flags = CUSTOS_BLOCKLIST_WHOLE_WORD},
                                   {.text = "alpha", .description = "d", .flags = CUSTOS_BLOCKLIST_WHOLE_WORD},
                                   {.text = "x[0-9]+y", .flags = CUSTOS_BLOCKLIST_REGEX}};
    assert_int_equal(custos_blstore_items_upsert(st, "A", it, 3, 12, NULL, NULL), 0);
    custos_blstore_item_t again = {.text = "alpha", .description = "changed", .flags = CUSTOS_BLOCKLIST_WHOLE_WORD};
    assert_int_equal(custos_blstore_items_upsert(st, "A", &again, 1, 13, NULL, NULL), 0);
    assert_string_equal(again.id, it[1].id);
    assert_int_equal(custos_blstore_items_upsert(st, "nope", &again, 1, 13, NULL, NULL), CUSTOS_ENOTFOUND);
    /* insertion order, paged */
    buf[0] = 0;
    assert_int_equal(custos_blstore_items(st, "A", 0, 0, bl_item_text, buf), 0);
    assert_string_equal(buf, "zeta,alpha,x[0-9]+y");
    buf[0] = 0;
    assert_int_equal(custos_blstore_items(st, "A", 1, 1, bl_item_text, buf), 0);
    assert_string_equal(buf, "alpha");
    buf[0] = 0;
    assert_int_equal(custos_blstore_item_get(st, "A", it[2].id, bl_item_text, buf), 0);
    assert_string_equal(buf, "x[0-9]+y");
    assert_int_equal(custos_blstore_item_get(st, "A", "no-such-id", bl_item_text, buf), CUSTOS_ENOTFOUND);
    /* every write bumped both counters (the NOTFOUND one rolled back) */
    assert_int_equal(custos_blstore_version(st, &v), 0);
    assert_int_equal(v, 5);
    custos_store_t *other = open_store();
    assert_int_equal(custos_store_generation(other, &g), 0);
    assert_int_equal(g, 5);
    /* a hook that fails rolls the change and the counters back */
    custos_blstore_item_t rolled = {.text = "rolled", .flags = CUSTOS_BLOCKLIST_WHOLE_WORD};
    assert_int_equal(custos_blstore_items_upsert(st, "A", &rolled, 1, 14, bl_fail_hook, NULL), CUSTOS_EPROTO);
    assert_int_equal(custos_blstore_store_version(other, &v), 0);
    assert_int_equal(v, 5);
    /* another handle (a replica) builds the same set from one snapshot */
    custos_blstore_t *b = NULL;
    assert_int_equal(custos_blstore_wrap(other, &b), 0);
    custos_blocklists_t *set = NULL;
    char err[256] = "";
    assert_int_equal(custos_blstore_build_snapshot(b, &set, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 5);
    assert_int_equal(custos_blocklists_count(set), 2);
    assert_int_equal(custos_blocklists_items(set), 3);
    custos_blocklists_unref(set);
    const char *rm[] = {it[0].id, "unknown"};
    assert_int_equal(custos_blstore_items_remove(st, "A", rm, 2, NULL, NULL), 0);
    assert_int_equal(custos_blstore_list_delete(st, "B", NULL, NULL), 0);
    assert_int_equal(custos_blstore_list_delete(st, "B", NULL, NULL), CUSTOS_ENOTFOUND);
    assert_int_equal(custos_blstore_build_config(&sc, &set, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 7);
    assert_int_equal(custos_blocklists_count(set), 1);
    assert_int_equal(custos_blocklists_items(set), 2);
    custos_blocklists_unref(set);
    custos_blstore_close(b);
    custos_store_close(other);
    custos_blstore_close(st);
}

#define ALL(f)                                                                                                         \
    cmocka_unit_test_prestate(f, &V_SQLITE), cmocka_unit_test_prestate(f, &V_PG),                                      \
        cmocka_unit_test_prestate(f, &V_SQLITE_P11), cmocka_unit_test_prestate(f, &V_PG_P11)
#define BOTH(f) cmocka_unit_test_prestate(f, &V_SQLITE), cmocka_unit_test_prestate(f, &V_PG)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_migrations),
        BOTH(test_values_and_conflicts),
        BOTH(test_keystore),
        ALL(test_vault_seal_and_faults),
        ALL(test_vault_rotate_rewrap_destroy),
        BOTH(test_purge),
        BOTH(test_blocklists),
        cmocka_unit_test(test_local_key_faults),
        cmocka_unit_test(test_sqlite_faults),
        cmocka_unit_test(test_pkcs11_bad_pin),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
