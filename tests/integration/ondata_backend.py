# SPDX-License-Identifier: Apache-2.0
# Test backend for groundedness_chat.sh (not a test itself): answers POST .../chat/completions like Azure OpenAI "on
# your data": the message (or the first stream delta) carries context.citations with one retrieved passage; the answer
# text is the request's "mock_reply". Streams (chunked SSE) when "stream": true.
# Usage: python3 ondata_backend.py PORT
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
CITATIONS = [{"content": "The Eiffel Tower is 330 metres tall and was completed in 1889 in Paris.",
              "title": "Eiffel Tower", "url": "https://example.org/eiffel", "filepath": None, "chunk_id": "0"}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        text = req.get("mock_reply", "")
        base = {"id": "chatcmpl-ondata", "created": 1, "model": req.get("model", "m")}
        if not req.get("stream"):
            body = json.dumps(dict(base, object="chat.completion", choices=[{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": text, "context": {"citations": CITATIONS,
                                                                                "intent": "[]"}}}],
                usage={"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20})).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        chunk = dict(base, object="chat.completion.chunk")
        deltas = [{"role": "assistant", "context": {"citations": CITATIONS, "intent": "[]"}}]
        deltas += [{"content": text[i:i + 6]} for i in range(0, len(text), 6)]
        events = [dict(chunk, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in deltas]
        events.append(dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        for ev in [json.dumps(e) for e in events] + ["[DONE]"]:
            data = ("data: %s\n\n" % ev).encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
