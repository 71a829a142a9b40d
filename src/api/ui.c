/* SPDX-License-Identifier: Apache-2.0
 * The reviewer web UI's static files (api/ui.h). Why embedded: `custos serve` stays a single binary with nothing to
 * install next to it, the page always matches the API of the binary serving it, and serving never touches the file
 * system (no path handling, no traversal to defend against). */
#include "api/ui.h"

#include <string.h>

bool custos_ui_path(const char *path, size_t len)
{
    return (len == 3 && memcmp(path, "/ui", 3) == 0) || (len >= 4 && memcmp(path, "/ui/", 4) == 0);
}

const custos_ui_asset_t *custos_ui_find(const char *path, size_t len)
{
    if (len < 4 || memcmp(path, "/ui/", 4) != 0)
        return NULL;
    const char *name = path + 3; /* "/..." */
    size_t n = len - 3;
    if (n == 1) {
        name = "/index.html";
        n = 11;
    }
    for (size_t i = 0; i < custos_ui_n_assets; i++) {
        const custos_ui_asset_t *a = &custos_ui_assets[i];
        if (strlen(a->path) == n && memcmp(a->path, name, n) == 0)
            return a;
    }
    return NULL;
}

const char *custos_ui_content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "application/octet-stream";
}

#define H(n, v)                                                                                                        \
    {                                                                                                                  \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                                             \
    }

void custos_ui_handle(custos_worker_t *w, custos_http_req_t *req)
{
    (void)w;
    if (strcmp(req->method, "GET") != 0) {
        custos_http_header_t allow[1] = {H("allow", "GET")};
        custos_http_respond_error(req, 405, "405", "Method not allowed for this route.", allow, 1);
        return;
    }
    if (req->path_len == 3) { /* "/ui": relative links in the page need the trailing slash */
        custos_http_header_t h[2] = {H("location", "/ui/"), H("cache-control", "no-cache")};
        custos_http_respond(req, 308, h, 2, NULL, 0);
        return;
    }
    const custos_ui_asset_t *a = custos_ui_find(req->path, req->path_len);
    if (!a) {
        custos_http_respond_error(req, 404, "404", "Resource not found", NULL, 0);
        return;
    }
    const char *ct = custos_ui_content_type(a->path);
    custos_http_header_t h[] = {
        {"content-type", 12, ct, strlen(ct)},
        H("content-security-policy", CUSTOS_UI_CSP),
        H("x-content-type-options", "nosniff"),
        H("x-frame-options", "DENY"),
        H("referrer-policy", "no-referrer"),
        H("cache-control", "no-cache"), /* revalidated after an upgrade; the page's API calls use no-store */
    };
    custos_http_respond(req, 200, h, sizeof(h) / sizeof(h[0]), (const char *)a->data, a->len);
}
