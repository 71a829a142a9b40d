/* SPDX-License-Identifier: Apache-2.0
 * HTTP/1.1 server connections: strict, bounded parsing (llhttp in strict mode), keep-alive,
 * pipelining (one request handled at a time per connection, in order), TLS on the socket,
 * whole or streamed (chunked) responses with backpressure, and JSON errors in the OpenAI/Azure shape.
 *
 * Threading: a custos_http_server_t belongs to one worker loop; every function here must be
 * called on that loop's thread. */
#ifndef CUSTOS_NET_HTTP_SERVER_H
#define CUSTOS_NET_HTTP_SERVER_H

#include "core/loop.h"
#include "util/arena.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct custos_http_server custos_http_server_t;
typedef struct custos_http_conn custos_http_conn_t;
typedef struct custos_http_req custos_http_req_t;
typedef struct custos_tls custos_tls_t;

typedef struct custos_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} custos_http_header_t;

/* Limits applied to every request (defaults in brackets; docs/config.md names them). */
typedef struct custos_http_limits {
    size_t max_header_bytes;    /* request line + headers [16384]  -> 431 */
    size_t max_headers;         /* header count [100]              -> 431 */
    size_t max_body_bytes;      /* decoded body [4 MiB]            -> 413 */
    size_t max_url_bytes;       /* request target [8192]           -> 414 */
    uint32_t header_timeout_ms; /* from first byte to end of headers [10000] -> 408 */
    uint32_t body_timeout_ms;   /* from end of headers to end of body [30000] -> 408 */
    uint32_t idle_timeout_ms;   /* keep-alive idle [60000]; closes silently */
    uint32_t max_connections;   /* per worker [16384]; further accepts are closed at once */
    size_t max_output_buffer;   /* per connection; streaming producers pause above high watermark [256 KiB] */
} custos_http_limits_t;

void custos_http_limits_default(custos_http_limits_t *l);

/* One request. Valid from on_request until the response is finished (or on_abort ran).
 * All pointers point into connection or arena memory: copy what must outlive the request. */
struct custos_http_req {
    custos_http_conn_t *conn;
    custos_arena_t *arena; /* freed when the request ends */
    const char *method;    /* "GET", "POST", ... */
    const char *path;      /* decoded? no: raw path, without query, NUL-terminated */
    size_t path_len;
    const char *query; /* raw query without '?', NUL-terminated, "" if none */
    size_t query_len;
    custos_http_header_t *headers; /* names as received; use custos_http_req_header() to look up */
    size_t nheaders;
    const char *body; /* decoded body (chunked already removed), NUL-terminated */
    size_t body_len;
    int http_minor;               /* 0 or 1 (HTTP/1.x) */
    bool keep_alive;              /* what the client asked for */
    bool tls;                     /* arrived over TLS */
    uint64_t start_ns;            /* monotonic: first byte of the request seen */
    char request_id[37];          /* UUID v4, also sent as x-request-id and apim-request-id */
    struct sockaddr_storage peer; /* client address (AF_UNIX for unix sockets) */
    socklen_t peer_len;
    /* Client address for "source network" decisions: the TCP peer (port included), or, when the peer is a
     * trusted proxy, the rightmost untrusted X-Forwarded-For / Forwarded hop (port 0). Set to peer here;
     * replaced by the network ACL (api/access.c, net/acl.h) before routing. AF_UNIX for unix sockets. */
    struct sockaddr_storage client_addr;
    /* Mutual TLS: names of the verified client certificate (net/peercert.h), owned by the connection;
     * NULL without a client certificate. */
    const struct custos_peer_cert *client_cert;

    /* Set by the handler: */
    void *handler_data;
    /* Called when the output buffer drained below the low watermark after
     * custos_http_stream_congested() returned true. */
    void (*on_writable)(custos_http_req_t *req);
    /* Called at most once if the request ends before the handler finished its response (client
     * closed, error, shutdown). The handler must stop using req (and free what it owns) inside it. */
    void (*on_abort)(custos_http_req_t *req);
};

typedef void (*custos_http_handler_fn)(custos_http_req_t *req, void *ud);

typedef struct custos_http_server_opts {
    custos_http_limits_t limits;
    custos_http_handler_fn on_request;
    void *ud;
    /* Extra response headers added to every response (e.g. "strict-transport-security"). */
} custos_http_server_opts_t;

/* Creates a server on loop. Takes no ownership of listeners; add them with custos_http_server_listen. */
int custos_http_server_new(custos_loop_t *loop, const custos_http_server_opts_t *opts, custos_http_server_t **out);
/* Stops accepting (the listening sockets are shut down, so new connections are refused; the fds stay
 * open for their owner to close), closes idle connections, lets in-flight requests finish; calls done()
 * when the last connection closed (may be immediately). */
void custos_http_server_drain(custos_http_server_t *s, void (*done)(void *), void *arg);
/* Aborts every remaining connection (after a drain deadline) and frees the server. */
void custos_http_server_free(custos_http_server_t *s);
/* Starts accepting on listen_fd (already bound and listening, non-blocking). tls may be NULL (plain HTTP).
 * shared=true when several loops poll the same fd (EPOLLEXCLUSIVE is used). The fd stays owned by the caller. */
int custos_http_server_listen(custos_http_server_t *s, int listen_fd, custos_tls_t *tls, bool shared);
/* Takes over an already-connected, non-blocking socket as if it had been accepted (tests, fuzzing,
 * socket activation). tls may be NULL. On failure the fd is closed. */
int custos_http_server_adopt(custos_http_server_t *s, int fd, custos_tls_t *tls, const struct sockaddr *peer,
                             socklen_t peer_len);
/* Replaces limits for new requests (config reload). */
void custos_http_server_set_limits(custos_http_server_t *s, const custos_http_limits_t *l);
/* Open connections on this server. */
size_t custos_http_server_conn_count(const custos_http_server_t *s);

/* Case-insensitive header lookup; returns the first value (NUL-terminated) or NULL. */
const char *custos_http_req_header(const custos_http_req_t *req, const char *name, size_t *len);
/* Query parameter value, percent-decoded into the request arena; NULL if absent. */
const char *custos_http_req_query(custos_http_req_t *req, const char *name);

/* Whole response. Adds content-length, date, x-request-id, apim-request-id. headers may be NULL.
 * Returns 0, or a negative code if the connection is already gone (the request is then finished anyway). */
int custos_http_respond(custos_http_req_t *req, int status, const custos_http_header_t *headers, size_t nheaders,
                        const char *body, size_t body_len);
/* JSON error body {"error":{"code":code,"message":message,"type":type,"param":null}} with content-type json.
 * type may be NULL (then "invalid_request_error" for 4xx, "server_error" for 5xx). */
int custos_http_respond_error(custos_http_req_t *req, int status, const char *code, const char *message,
                              const custos_http_header_t *headers, size_t nheaders);

/* Appends the JSON error body used by custos_http_respond_error to b (for callers that build their own). */
struct custos_buf;
int custos_http_error_body(struct custos_buf *b, int status, const char *code, const char *message, const char *type);

/* Streamed response: head now, body in pieces (chunked on HTTP/1.1, close-delimited on 1.0). */
int custos_http_stream_start(custos_http_req_t *req, int status, const custos_http_header_t *headers, size_t nheaders);
int custos_http_stream_write(custos_http_req_t *req, const char *data, size_t len);
/* True when buffered output is above the high watermark: stop producing until on_writable. */
bool custos_http_stream_congested(const custos_http_req_t *req);
/* Ends the stream cleanly (terminating chunk). */
int custos_http_stream_end(custos_http_req_t *req);
/* Ends the response abnormally: the connection is closed without a clean end of body. */
void custos_http_abort(custos_http_req_t *req);

const char *custos_http_status_text(int status);

#endif
