/* SPDX-License-Identifier: Apache-2.0
 * The reviewer web UI at /ui (docs/reviewer-ui.md): static files from ui/, embedded into the binary at build time
 * (cmake/embed_files.cmake generates the asset table), served with their content types, a Content-Security-Policy
 * of default-src 'self' and no-cache. The files carry no data: the page calls the review and models APIs with the
 * credential the user signs in with, so serving them needs no authentication (the network ACL still applies). */
#ifndef CUSTOS_API_UI_H
#define CUSTOS_API_UI_H

#include "api/gateway.h"
#include "net/http_server.h"

#include <stdbool.h>
#include <stddef.h>

/* One embedded file: path "/name" under /ui, its bytes (NUL-terminated after len) and length. */
typedef struct custos_ui_asset {
    const char *path;
    const unsigned char *data;
    size_t len;
} custos_ui_asset_t;

/* Generated table (build directory ui_assets.c). */
extern const custos_ui_asset_t custos_ui_assets[];
extern const size_t custos_ui_n_assets;

/* Content-Security-Policy sent with every /ui answer. */
#define CUSTOS_UI_CSP "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/* True for "/ui" and paths under "/ui/". */
bool custos_ui_path(const char *path, size_t len);

/* The embedded asset for a path under /ui ("/ui/" = "/index.html"), or NULL. Pure; thread-safe. */
const custos_ui_asset_t *custos_ui_find(const char *path, size_t len);

/* Content type for an asset path by extension (static string). */
const char *custos_ui_content_type(const char *path);

/* Answers req: GET /ui -> 308 to /ui/; GET /ui/... -> the file or 404; other methods 405. Worker thread. */
void custos_ui_handle(custos_worker_t *w, custos_http_req_t *req);

#endif
