#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Canary test (docs/diagnostics.md): prompts, completions, documents, headers, query strings, keys and deployment
# names carrying a unique canary string go through every route (OpenAI, Azure, Azure v1; chat, completions,
# embeddings; streaming; client and upstream errors) with file, HTTP and syslog request-record sinks. Then every file
# custos wrote (sinks, spool, governance log, anything under its directory), every sink's received output and custos'
# stderr must contain zero canary hits -- while the records themselves must be there, one per request.
source "$(dirname "$0")/lib.sh"

CANARY="CANARY-7f3a$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
GW="$T/gw"   # custos' config, outputs and stderr: everything here is searched
REQ="$T/req" # the client's side (bodies with completions): not searched
mkdir -p "$GW/sinks" "$REQ"

# --- a backend that answers with the canary in completions, embeddings, headers and error bodies ---
cat >"$T/backend.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PORT, CANARY = int(sys.argv[1]), sys.argv[2]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-canary-upstream", CANARY)
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"{}")
        text = json.dumps(body)
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if "FAIL400" in text:
            return self.send(400, {"error": {"message": "bad input " + CANARY, "type": "invalid_request_error",
                                             "param": CANARY, "code": CANARY}})
        if self.path.endswith("/embeddings"):
            return self.send(200, {"object": "list", "model": CANARY, "usage": usage,
                                   "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}]})
        if self.path.endswith("/chat/completions") and body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-canary-upstream", CANARY)
            self.end_headers()
            def ev(obj):
                d = ("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(d), d))
            for part in ["Here ", "is ", CANARY]:
                ev({"id": "c1", "object": "chat.completion.chunk", "model": "m",
                    "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]})
            ev({"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [], "usage": usage})
            ev("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.endswith("/chat/completions"):
            return self.send(200, {"id": "c1", "object": "chat.completion", "model": "m", "usage": usage,
                                   "choices": [{"index": 0, "finish_reason": "stop",
                                                "message": {"role": "assistant", "content": "reply " + CANARY}}]})
        return self.send(200, {"id": "c2", "object": "text_completion", "model": "m", "usage": usage,
                               "choices": [{"index": 0, "finish_reason": "stop", "text": "reply " + CANARY}]})

ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
PY

# --- a UDP syslog receiver writing every datagram as a line ---
cat >"$T/syslog_udp.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[3], "w").close()  # bound: ready
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        d, _ = s.recvfrom(65536)
        f.write(d.rstrip(b"\n") + b"\n")
PY

BP=$(free_port)
RP=$(free_port)
SP=$(free_port)
GP=$(free_port)
python3 "$T/backend.py" "$BP" "$CANARY" >"$T/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BP"
python3 "$(dirname "$0")/sink_receiver.py" "$RP" "$GW/sinks/http.jsonl" >"$GW/sinks/http-receiver.err" 2>&1 &
PIDS+=($!)
wait_port "$RP"
python3 "$T/syslog_udp.py" "$SP" "$GW/sinks/syslog.log" "$T/syslog.ready" >"$GW/sinks/syslog-receiver.err" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -e "$T/syslog.ready" ] && break; sleep 0.05; done

printf '%s' "$KEY" >"$GW/key"
{ config_head "$GP" && cat <<YAML; } >"$GW/custos.yaml"
backends:
  - name: canary-openai
    provider: openai
    url: "http://127.0.0.1:$BP"
    region: westeurope
    data_zone: eu
  - name: canary-azure
    provider: azure
    url: "http://127.0.0.1:$BP"
deployments:
  - name: demo
    model: gpt-4o-mini
    backends: [canary-openai]
    rai_policy: canary
  - name: azdemo
    model: gpt-4o
    backends: [canary-azure]
    rai_policy: canary
  - name: pii
    model: gpt-4o-mini
    backends: [canary-openai]
    rai_policy: pii
rai_policies:
  # the random hex canary can look like an encoded payload to the jailbreak detector (a known false-positive class,
  # see docs/models/shields.md); this test is about logs, so jailbreak only annotates here
  - name: canary
    prompt_shields: {jailbreak: annotate}
  - name: pii
    pii: {prompt: placeholder, completion: annotate}
diagnostics:
  spool_dir: spool
  sinks:
    - type: file
      path: requests.jsonl
    - type: file
      name: rotating
      path: rotating.jsonl
      max_bytes: 4096
      max_files: 3
    - type: http
      url: "http://127.0.0.1:$RP/ingest"
      format: ndjson
      flush_ms: 100
    - type: syslog
      address: "udp://127.0.0.1:$SP"
storage: {path: custos.db}
retention: {content: none}
YAML

"$CUSTOS_BIN" serve -c "$GW/custos.yaml" >>"$GW/custos.log" 2>&1 &
CUSTOS_PID=$!
PIDS+=($CUSTOS_PID)
wait_port "$GP"
U="http://127.0.0.1:$GP"
AUTH=(-H "api-key: $KEY")
JSON=(-H 'content-type: application/json')
CH=(-H "x-canary: $CANARY" -H "user-agent: agent-$CANARY" -H "x-ms-client-request-id: $CANARY"
  -H "traceparent: 00-$CANARY-01" -H "openai-organization: $CANARY")
SENT=0
IDS=()

# send NAME EXPECTED_STATUS CURL_ARGS...: one request; its x-request-id is remembered.
send() {
  local name=$1 want=$2
  shift 2
  local st
  st=$(curl -sS --max-time 10 -o "$REQ/$name.body" -D "$REQ/$name.hdr" -w '%{http_code}' "$@" 2>"$REQ/$name.err" ||
    true)
  check "$name -> $want" "$want" "$st"
  SENT=$((SENT + 1))
  IDS+=("$(tr -d '\r' <"$REQ/$name.hdr" | awk -F': ' 'tolower($1) == "x-request-id" { print $2; exit }')")
}

chat() { printf '{"model":"%s","messages":[{"role":"system","content":"system %s"},{"role":"user","content":"%s"}],"user":"%s"%s}' "$1" "$CANARY" "$2" "$CANARY" "${3:-}"; }
DOCS=",\"data_sources\":[{\"type\":\"azure_search\",\"parameters\":{\"documents\":[\"doc $CANARY\"]}}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"$CANARY\"}}]"

send chat 200 "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "$(chat demo "prompt $CANARY" "$DOCS")" "$U/v1/chat/completions?x=$CANARY"
check_contains "the backend's completion reached the client" "$CANARY" "$(cat "$REQ/chat.body")"
send stream 200 -N "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "$(chat demo "stream $CANARY" ',"stream":true')" "$U/v1/chat/completions"
check_contains "streamed canary reached the client" "$CANARY" "$(cat "$REQ/stream.body")"
send completions 200 "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "{\"model\":\"demo\",\"prompt\":\"complete $CANARY\"}" "$U/v1/completions"
send embeddings 200 "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "{\"model\":\"demo\",\"input\":[\"embed $CANARY\"]}" "$U/v1/embeddings"
send azure_chat 200 "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "$(chat x "azure $CANARY" "$DOCS")" "$U/openai/deployments/azdemo/chat/completions?api-version=2024-10-21&c=$CANARY"
send azure_stream 200 -N "${AUTH[@]}" "${JSON[@]}" -d "$(chat x "azure stream $CANARY" ',"stream":true')" "$U/openai/deployments/azdemo/chat/completions?api-version=2024-10-21"
send azure_embed 200 "${AUTH[@]}" "${JSON[@]}" -d "{\"input\":\"$CANARY\"}" "$U/openai/deployments/azdemo/embeddings?api-version=2024-10-21"
send azure_completions 200 "${AUTH[@]}" "${JSON[@]}" -d "{\"prompt\":\"$CANARY\"}" "$U/openai/deployments/azdemo/completions?api-version=2024-10-21"
send azure_v1 200 "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "$(chat azdemo "v1 $CANARY")" "$U/openai/v1/chat/completions?api-version=preview"
# the api-version value itself carries the canary
send azure_badver 200 "${AUTH[@]}" "${JSON[@]}" -d "$(chat x "v $CANARY")" "$U/openai/deployments/azdemo/chat/completions?api-version=$CANARY"
# errors
send invalid_json 400 "${AUTH[@]}" "${JSON[@]}" -d "{\"model\":\"demo\",\"messages\":[{\"content\":\"$CANARY\" oops" "$U/v1/chat/completions"
send not_object 400 "${AUTH[@]}" "${JSON[@]}" -d "[\"$CANARY\"]" "$U/v1/chat/completions"
send bad_key 401 -H "api-key: $CANARY" "${JSON[@]}" -d "$(chat demo "$CANARY")" "$U/v1/chat/completions"
send bad_bearer 401 -H "authorization: Bearer $CANARY" "${JSON[@]}" -d "$(chat demo "$CANARY")" "$U/v1/chat/completions"
send unknown_dep 404 "${AUTH[@]}" "${JSON[@]}" -d "$(chat "$CANARY" "hi")" "$U/v1/chat/completions"
send unknown_dep_azure 404 "${AUTH[@]}" "${JSON[@]}" -d "$(chat x "hi")" "$U/openai/deployments/$CANARY/chat/completions?api-version=2024-10-21"
send unknown_path 404 "${AUTH[@]}" "$U/v1/$CANARY"
send wrong_type 415 "${AUTH[@]}" -H "content-type: text/plain" -d "$CANARY" "$U/v1/chat/completions"
send upstream_400 400 "${AUTH[@]}" "${JSON[@]}" -d "$(chat demo "FAIL400 $CANARY")" "$U/v1/chat/completions"
check_contains "the backend's error body reached the client" "$CANARY" "$(cat "$REQ/upstream_400.body")"
# content filtering: a blocked prompt, PII placeholders (kept in memory only), a prompt over the filter's limit
send cf_blocked 400 "${AUTH[@]}" "${JSON[@]}" -d "$(chat demo "I will stab you and burn your house down and kill your whole family tonight $CANARY")" "$U/v1/chat/completions"
check_contains "blocked prompt: content_filter" "content_filter" "$(cat "$REQ/cf_blocked.body")"
send cf_blocked_stream 400 "${AUTH[@]}" "${JSON[@]}" -d "$(chat demo "I will stab you and burn your house down and kill your whole family tonight $CANARY" ',"stream":true')" "$U/v1/chat/completions"
send cf_pii 200 "${AUTH[@]}" "${JSON[@]}" -d "$(chat pii "mail $CANARY@example.com or call 212-555-0147 about $CANARY")" "$U/v1/chat/completions"
PII_ID=${IDS[${#IDS[@]} - 1]}
send cf_pii_stream 200 -N "${AUTH[@]}" "${JSON[@]}" -d "$(chat pii "mail $CANARY@example.com now" ',"stream":true')" "$U/v1/chat/completions"
# the Content Safety data plane (docs/content-safety-api.md): text, prompts, documents, answers and sources
CS=contentsafety
CSV="api-version=2024-09-01"
send cs_analyze 200 "${AUTH[@]}" "${JSON[@]}" "${CH[@]}" -d "{\"text\":\"analyze $CANARY\"}" "$U/$CS/text:analyze?$CSV"
send cs_shield 200 "${AUTH[@]}" "${JSON[@]}" -d "{\"userPrompt\":\"shield $CANARY\",\"documents\":[\"doc $CANARY\"]}" "$U/$CS/text:shieldPrompt?$CSV"
send cs_grounded 200 "${AUTH[@]}" "${JSON[@]}" -d "{\"domain\":\"Generic\",\"task\":\"Summarization\",\"text\":\"answer $CANARY\",\"groundingSources\":[\"source $CANARY\"]}" "$U/$CS/text:detectGroundedness?api-version=2024-09-15-preview"
send cs_bad 400 "${AUTH[@]}" "${JSON[@]}" -d "{\"text\":\"$CANARY\",\"categories\":[\"$CANARY\"]}" "$U/$CS/text:analyze?$CSV"
send cs_lists 200 "${AUTH[@]}" "$U/$CS/text/blocklists?$CSV"
# enough traffic to rotate the small file sink a few times
for i in $(seq 1 12); do
  send "more$i" 200 "${AUTH[@]}" "${JSON[@]}" -d "$(chat demo "more $i $CANARY")" "$U/v1/chat/completions"
done

# stop: the sinks flush (deliver or spool) before exit
# the store's WAL is folded into the database when custos closes it: keep a copy of both as they are now
mkdir -p "$GW/store-at-end"
cp "$GW"/custos.db* "$GW/store-at-end/" 2>/dev/null || true
kill -TERM "$CUSTOS_PID"
wait_exit "$CUSTOS_PID" 20
check "custos exits 0 on SIGTERM" 0 "$EXIT_RC"
sleep 0.2 # let the UDP receiver write the last datagrams

# --- records were written: one per request, with the expected metadata ---
PII_ID=$PII_ID python3 - "$GW/requests.jsonl" "$SENT" "${IDS[@]}" <<'PY' && ok "file sink: one valid record per request" || fail "file sink records" "see $GW/requests.jsonl"
import json, sys
path, sent, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
recs = [json.loads(l) for l in open(path)]
assert len(recs) == sent, (len(recs), sent)
got = {r["custos"]["requestId"] for r in recs}
missing = [i for i in ids if i not in got]
assert not missing, missing
by = {r["custos"]["requestId"]: r for r in recs}
chat = by[ids[0]]
assert chat["operationName"] == "ChatCompletions_Create" and chat["properties"]["modelDeploymentName"] == "demo"
assert chat["custos"]["backend"] == "canary-openai" and chat["custos"]["region"] == "westeurope"
assert chat["custos"]["tokens"] == {"prompt": 11, "completion": 7, "total": 18}, chat["custos"]["tokens"]
assert chat["callerIpAddress"] == "127.0.0.0"
assert "x-ms-client-request-id" in chat["custos"]["headers"] and "api-key" in chat["custos"]["headers"]
stream = by[ids[1]]
assert stream["custos"]["stream"] is True and stream["properties"]["streamType"] == "Streaming"
assert stream["properties"]["responseLength"] > 0
az = by[ids[4]]
assert az["properties"]["apiName"] == "Azure OpenAI" and az["custos"]["apiVersion"] == "2024-10-21"
assert by[ids[9]]["custos"]["apiVersion"] is None  # the canary api-version is not recorded
cs = [by[ids[i]] for i in range(len(ids)) if ids[i] and by[ids[i]]["properties"]["apiName"] == "Azure AI Content Safety"]
assert [r["operationName"] for r in cs] == ["ContentSafety_AnalyzeText", "ContentSafety_ShieldPrompt",
                                            "ContentSafety_DetectGroundedness", "ContentSafety_AnalyzeText",
                                            "ContentSafety_Blocklists"], [r["operationName"] for r in cs]
assert [r["resultSignature"] for r in cs] == ["200", "200", "200", "400", "200"]
assert all(r["custos"]["principalId"] == "key:test" and r["custos"]["authType"] == "api_key" for r in cs), cs[0]
assert cs[0]["custos"]["apiVersion"] == "2024-09-01" and cs[0]["properties"]["requestLength"] > 0
import os
pii = by[os.environ["PII_ID"]]["custos"]["safety"]["prompt"]
assert pii["pii"] >= 2 and pii["piiTypes"].get("EMAIL") == 1 and pii["piiTypes"].get("PHONE") == 1, pii
for i in (14, 15):  # unknown deployments: not recorded
    assert by[ids[i]]["properties"]["modelDeploymentName"] is None, by[ids[i]]
    assert by[ids[i]]["resultSignature"] == "404"
PY
# authenticated requests carry the principal id and auth type (an id, never the key)
n_pr=$(grep -c '"principalId":"key:test","authType":"api_key"' "$GW/sinks/syslog.log" 2>/dev/null || echo 0)
[ "$n_pr" -ge 1 ] && ok "records carry principalId and authType ($n_pr)" || fail "principal in records" "none"
n_http=$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["body"].splitlines()) for l in open(sys.argv[1]) if json.loads(l)["status"] == 200))' "$GW/sinks/http.jsonl" 2>/dev/null || echo 0)
check "http sink: every record arrived" "$SENT" "$n_http"
n_sys=$(grep -c 'RequestResponse' "$GW/sinks/syslog.log" 2>/dev/null || echo 0)
check "syslog sink (UDP, loopback): every record arrived" "$SENT" "$n_sys"
n_rot=$(cat "$GW"/rotating.jsonl* 2>/dev/null | wc -l)
[ -e "$GW/rotating.jsonl.1" ] && ok "rotating file sink rotated" || fail "rotating file sink rotated" "$(ls "$GW")"
[ "$n_rot" -ge 1 ] && ok "rotating file sink holds records" || fail "rotating file sink holds records"

# --- the store (retention.content: none): the database, its WAL and the key directory are part of the search ---
[ -s "$GW/custos.db" ] && ok "store database present (searched below)" || fail "store database present" "$(ls "$GW")"
[ -e "$GW/store-at-end/custos.db-wal" ] && ok "store WAL as it was at the end of the run (searched below)" ||
  fail "store WAL snapshot" "$(ls "$GW/store-at-end")"
check "no sealed content rows under retention none" 0 "$(sqlite3 "$GW/custos.db" "SELECT COUNT(*) FROM sealed WHERE ns = 'content'" 2>&1)"
[ -e "$GW/custos-keys/kek-1.key" ] && ok "local KEK made at first start (searched below)" || fail "local KEK present"

# --- zero canary hits in everything custos wrote or sent ---
nfiles=$(find "$GW" -type f | wc -l)
hits=$(grep -r -l -a -F -- "$CANARY" "$GW" 2>/dev/null || true)
if [ -z "$hits" ]; then
  ok "zero canary hits in $nfiles files (sinks, spool, logs, stderr)"
else
  fail "canary leaked" "$(for f in $hits; do echo "$f: $(grep -a -o -F -m1 -- "$CANARY" "$f" | head -1)"; done)"
fi
# the search works: the canary is findable where it is expected (the client's copies)
grep -r -q -F -- "$CANARY" "$REQ" && ok "canary present on the client side (search sanity)" ||
  fail "search sanity" "canary not found in client bodies"
cp "$GW/custos.log" "$T/custos.log" 2>/dev/null || true
sanitizer_clean
finish
