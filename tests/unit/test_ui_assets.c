/* SPDX-License-Identifier: Apache-2.0
 * Unit tests for src/api/ui.c and the embedded reviewer UI (cmake/embed_files.cmake): every file under ui/ is in the
 * binary byte for byte, lookups map /ui/ to index.html and refuse anything else, content types by extension. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ui.h"

/* Reads ui/NAME from the source tree (tests run in the repository root). */
static char *read_source(const char *name, size_t *len)
{
    char p[256];
    snprintf(p, sizeof(p), "ui/%s", name);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_embedded_match_sources(void **state)
{
    (void)state;
    static const char *const names[] = {"index.html", "app.js", "app.css", "favicon.svg"};
    assert_true(custos_ui_n_assets >= 4);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/ui/%s", names[i]);
        const custos_ui_asset_t *a = custos_ui_find(path, strlen(path));
        assert_non_null(a);
        size_t len = 0;
        char *src = read_source(names[i], &len);
        assert_non_null(src);
        assert_int_equal(a->len, len);
        assert_memory_equal(a->data, src, len);
        assert_int_equal(a->data[a->len], 0); /* NUL after the bytes */
        free(src);
    }
}

static void test_lookup(void **state)
{
    (void)state;
    const custos_ui_asset_t *idx = custos_ui_find("/ui/", 4);
    assert_non_null(idx);
    assert_string_equal(idx->path, "/index.html");
    assert_null(custos_ui_find("/ui", 3));
    assert_null(custos_ui_find("/ui/nope.js", 11));
    assert_null(custos_ui_find("/ui/../ui/app.js", 16));
    assert_null(custos_ui_find("/ui//app.js", 11));
    assert_null(custos_ui_find("/uiapp.js", 9));
    assert_true(custos_ui_path("/ui", 3));
    assert_true(custos_ui_path("/ui/x", 5));
    assert_false(custos_ui_path("/uix", 4));
    assert_false(custos_ui_path("/v1/ui", 6));
}

static void test_content_types(void **state)
{
    (void)state;
    assert_string_equal(custos_ui_content_type("/index.html"), "text/html; charset=utf-8");
    assert_string_equal(custos_ui_content_type("/app.js"), "text/javascript; charset=utf-8");
    assert_string_equal(custos_ui_content_type("/app.css"), "text/css; charset=utf-8");
    assert_string_equal(custos_ui_content_type("/favicon.svg"), "image/svg+xml");
    assert_string_equal(custos_ui_content_type("/x.bin"), "application/octet-stream");
    assert_non_null(strstr(CUSTOS_UI_CSP, "default-src 'self'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_match_sources),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_content_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
