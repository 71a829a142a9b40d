/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target: arbitrary bytes from a client into the HTTP/1.1 server (parser, limits,
 * pipelining, chunked decoding, error answers), over a socketpair, with small limits so that the
 * limit paths are reached. Any crash, sanitizer report or hang is a finding. */
#include "core/loop.h"
#include "net/http_server.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static custos_loop_t *g_loop;
static custos_http_server_t *g_srv;

static void handler(custos_http_req_t *req, void *ud)
{
    (void)ud;
    /* touch what a real handler reads */
    size_t l = 0;
    (void)custos_http_req_header(req, "content-type", &l);
    (void)custos_http_req_query(req, "api-version");
    if (req->path_len > 1 && req->path[1] == 's') {
        custos_http_stream_start(req, 200, NULL, 0);
        custos_http_stream_write(req, req->body, req->body_len);
        custos_http_stream_end(req);
        return;
    }
    custos_http_respond(req, 200, NULL, 0, req->body, req->body_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_loop) {
        custos_loop_new(&g_loop);
        custos_http_server_opts_t o;
        memset(&o, 0, sizeof(o));
        custos_http_limits_default(&o.limits);
        o.limits.max_header_bytes = 2048;
        o.limits.max_headers = 16;
        o.limits.max_body_bytes = 4096;
        o.limits.max_url_bytes = 512;
        o.on_request = handler;
        custos_http_server_new(g_loop, &o, &g_srv);
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return 0;
    if (custos_http_server_adopt(g_srv, sv[0], NULL, NULL, 0) < 0) {
        close(sv[1]);
        return 0;
    }
    size_t off = 0;
    char buf[65536];
    for (int i = 0; i < 10000; i++) {
        if (off < size) {
            ssize_t w = write(sv[1], data + off, size - off);
            if (w > 0)
                off += (size_t)w;
            if (off == size)
                shutdown(sv[1], SHUT_WR);
        }
        custos_loop_run_once(g_loop, 0);
        ssize_t r;
        while ((r = read(sv[1], buf, sizeof(buf))) > 0) {
        }
        if (r == 0 || custos_http_server_conn_count(g_srv) == 0)
            break;
    }
    close(sv[1]);
    /* whatever is left (a connection waiting for more input) is closed by the next iterations */
    for (int i = 0; i < 4 && custos_http_server_conn_count(g_srv) > 0; i++)
        custos_loop_run_once(g_loop, 0);
    return 0;
}
