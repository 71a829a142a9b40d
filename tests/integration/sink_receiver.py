# SPDX-License-Identifier: Apache-2.0
# Test receiver for the HTTP audit sink (sourced by sink_http.sh, not a test itself): an HTTP/1.1 keep-alive server on
# 127.0.0.1:PORT that appends every ingestion request (path, status it answered, headers, gunzipped body) as one JSON
# line to LOG. Control: POST /_ctl {"fail_next": K} answers the next K requests 500; {"es_item_status": [..]} makes the
# next _bulk answer "errors": true with those item statuses (then the remaining items 201).
# Usage: python3 sink_receiver.py PORT LOG [CERT KEY]   (with CERT and KEY: HTTPS)
import gzip
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, LOG = int(sys.argv[1]), sys.argv[2]
state = {"fail_next": 0, "es_item_status": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_ctl":
            state.update(json.loads(raw))
            return self.reply(200, {"ok": True})
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        status, resp = 200, {"text": "Success", "code": 0}
        if state["fail_next"] > 0:
            state["fail_next"] -= 1
            status, resp = 500, {"error": "injected"}
        elif self.path.endswith("/_bulk"):
            n = len(body.decode().splitlines()) // 2
            st = state["es_item_status"] + [201] * n
            state["es_item_status"] = []
            items = [{"create": {"status": s}} for s in st[:n]]
            resp = {"took": 1, "errors": any(s >= 300 for s in st[:n]), "items": items}
        entry = {
            "path": self.path,
            "status": status,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "raw_len": len(raw),
            "body": body.decode("utf-8"),
        }
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.reply(status, resp)


ThreadingHTTPServer.allow_reuse_address = True
srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
if len(sys.argv) > 4:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
