#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# HTTP audit sink driver against a recording receiver (sink_receiver.py): NDJSON, Splunk HEC and Elasticsearch _bulk
# bodies, gzip, auth headers, HTTPS with verification; a receiver answering 500 or down makes deliver() fail, and with
# the framework's retry every record arrives exactly once, in order.
source "$(dirname "$0")/lib.sh"

SEND=${CUSTOS_TOOLS:-$CUSTOS_SRC/build/tools}/audit_send

ctl() { curl -sS --max-time 5 -o /dev/null -X POST --data "$2" "http://127.0.0.1:$1/_ctl"; }

for i in $(seq 1 23); do
  printf '{"v":1,"seq":%d,"deployment":"demo","status":200,"note":"caf\u00e9 \\"q\\""}\n' "$i"
done >"$T/records"

# check_log NAME LOG FORMAT [INDEX]: the 2xx-answered requests carry every record exactly once, in order, in FORMAT.
check_log() {
  python3 - "$T/records" "$2" "$3" "${4:-}" <<'PY' && ok "$1: every record once, in order, $3 framing" || fail "$1" "see $2"
import json, sys
recs = [l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8")]
fmt, index = sys.argv[3], sys.argv[4]
got = []
for line in open(sys.argv[2], encoding="utf-8"):
    e = json.loads(line)
    if e["status"] != 200:
        continue
    body = e["body"]
    assert body.endswith("\n"), "body must end with a newline"
    lines = body[:-1].split("\n")
    if fmt == "ndjson":
        got += lines
    elif fmt == "splunk_hec":
        for l in lines:
            o = json.loads(l)
            assert o.get("sourcetype") == "custos:request", o
            assert (o.get("index") == index) if index else ("index" not in o), o
            got.append(json.dumps(o["event"], separators=(",", ":"), ensure_ascii=False))
    else:
        assert len(lines) % 2 == 0
        for a, d in zip(lines[0::2], lines[1::2]):
            act = json.loads(a)
            assert act == ({"create": {"_index": index}} if index else {"create": {}}), act
            got.append(d)
norm = lambda s: json.dumps(json.loads(s), separators=(",", ":"), ensure_ascii=False)
assert [norm(g) for g in got] == [norm(r) for r in recs], (len(got), len(recs))
if fmt == "ndjson":
    assert got == recs  # byte-exact
PY
}
# field LOG N PATH: a field of the N-th logged request (python expression on e).
field() { python3 -c 'import json,sys; e=[json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2])]; print(eval(sys.argv[3]))' "$1" "$2" "$3"; }

P=$(free_port)
start_sink_receiver "$P" "$T/ndjson.log"

# 1. NDJSON, bearer token, no gzip, batches of 10
export SINK_TOKEN="tok-ndjson-123"
out=$("$SEND" --type http --url "http://127.0.0.1:$P/ingest/" --format ndjson --token-env SINK_TOKEN --batch 10 \
  <"$T/records" 2>&1) || true
check_contains "ndjson: delivered" "failures=0" "$out"
check_log "ndjson" "$T/ndjson.log" ndjson
check "ndjson: three requests for 23 records in batches of 10" 3 "$(wc -l <"$T/ndjson.log")"
check "ndjson: path" "/ingest" "$(field "$T/ndjson.log" 0 'e["path"]')"
check "ndjson: content type" "application/x-ndjson" "$(field "$T/ndjson.log" 0 'e["headers"]["content-type"]')"
check "ndjson: bearer token" "Bearer tok-ndjson-123" "$(field "$T/ndjson.log" 0 'e["headers"]["authorization"]')"
check "ndjson: not compressed" "None" "$(field "$T/ndjson.log" 0 'e["headers"].get("content-encoding")')"
check_contains "token never logged" "failures=0" "$(printf '%s' "$out" | grep -v tok-ndjson-123)"
kill "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true

# 2. Splunk HEC, gzip, index, default endpoint
P=$(free_port)
start_sink_receiver "$P" "$T/hec.log"
export SINK_TOKEN="hec-0000-1111"
out=$("$SEND" --type http --url "http://127.0.0.1:$P" --format splunk_hec --token-env SINK_TOKEN --index main \
  --gzip 1 --batch 7 <"$T/records" 2>&1) || true
check_contains "hec: delivered" "failures=0" "$out"
check_log "hec" "$T/hec.log" splunk_hec main
check "hec: endpoint" "/services/collector/event" "$(field "$T/hec.log" 0 'e["path"]')"
check "hec: Splunk auth scheme" "Splunk hec-0000-1111" "$(field "$T/hec.log" 0 'e["headers"]["authorization"]')"
check "hec: gzip" "gzip" "$(field "$T/hec.log" 0 'e["headers"]["content-encoding"]')"
check "hec: compressed body is smaller" "True" "$(field "$T/hec.log" 0 'e["raw_len"] < len(e["body"].encode())')"

# 3. Elasticsearch _bulk with action lines, gzip; errors:true with a 429 item fails the batch, 409 only is accepted
kill "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true
P=$(free_port)
start_sink_receiver "$P" "$T/es.log"
export SINK_TOKEN="es-api-key"
out=$("$SEND" --type http --url "http://127.0.0.1:$P/" --format elasticsearch --token-env SINK_TOKEN \
  --index custos-audit --gzip 1 --batch 23 <"$T/records" 2>&1) || true
check_contains "es: delivered" "failures=0" "$out"
check_log "es" "$T/es.log" elasticsearch custos-audit
check "es: endpoint" "/_bulk" "$(field "$T/es.log" 0 'e["path"]')"
check "es: ApiKey auth scheme" "ApiKey es-api-key" "$(field "$T/es.log" 0 'e["headers"]["authorization"]')"
ctl "$P" '{"es_item_status": [429]}'
out=$(head -3 "$T/records" | "$SEND" --type http --url "http://127.0.0.1:$P" --format elasticsearch 2>&1) && rc=0 || rc=$?
check "es: an item failing with 429 fails the batch" 1 "$rc"
ctl "$P" '{"es_item_status": [409, 201]}'
out=$(head -3 "$T/records" | "$SEND" --type http --url "http://127.0.0.1:$P" --format elasticsearch 2>&1) && rc=0 || rc=$?
check "es: items already there (409) count as accepted" 0 "$rc"
kill "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true

# 4. Receiver answering 500 three times: deliver fails each time, the retried batches arrive exactly once, in order
P=$(free_port)
start_sink_receiver "$P" "$T/r500.log"
ctl "$P" '{"fail_next": 3}'
out=$("$SEND" --type http --url "http://127.0.0.1:$P" --format ndjson --gzip 1 --batch 5 --retries 10 --retry-ms 20 \
  <"$T/records" 2>&1) || true
check_contains "500s: deliver failed three times, then all delivered" "failures=3" "$out"
check "500s: three requests answered 500" 3 "$(grep -c '"status": 500' "$T/r500.log")"
check_log "500s" "$T/r500.log" ndjson
kill "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true

# 5. Receiver down, then up on the same port (retries every 100 ms); also a restart between batches (stale keep-alive)
P=$(free_port)
"$SEND" --type http --url "http://127.0.0.1:$P" --format ndjson --batch 4 --retries 200 --retry-ms 100 \
  --timeout-ms 2000 <"$T/records" >"$T/down.out" 2>&1 &
SEND_PID=$!
PIDS+=($SEND_PID)
sleep 1
start_sink_receiver "$P" "$T/down.log"
wait_exit "$SEND_PID" 30
check "outage: audit_send finished and delivered" 0 "$EXIT_RC"
check_contains "outage: deliver failed while the receiver was down" "deliver failed" "$(cat "$T/down.out")"
check_log "outage" "$T/down.log" ndjson

# 6. HTTPS with the peer verified against ca_file (IP SAN), gzip; a CA that did not sign it fails
make_cert srv
make_cert other
SP=$(free_port)
start_sink_receiver "$SP" "$T/tls.log" "$T/srv.crt" "$T/srv.key"
out=$("$SEND" --type http --url "https://127.0.0.1:$SP/bulk" --ca "$T/srv.crt" --gzip 1 --batch 8 \
  <"$T/records" 2>&1) || true
check_contains "https: delivered" "failures=0" "$out"
check_log "https" "$T/tls.log" ndjson
out=$(head -2 "$T/records" | "$SEND" --type http --url "https://localhost:$SP/bulk" --ca "$T/other.crt" 2>&1) && rc=0 || rc=$?
check "https with a wrong CA: deliver fails" 1 "$rc"
check_contains "https with a wrong CA: verification named" "certificate verification failed" "$out"
check "https with a wrong CA: nothing more received" 3 "$(wc -l <"$T/tls.log")"

# 7. End to end through custos: the receiver is down while requests are served (the framework spools, retries with
#    backoff), then comes up: every request's record arrives exactly once, in request order, in Splunk HEC format.
MP=$(free_port)
GP=$(free_port)
RP=$(free_port)
start_mock "$MP" --quiet
printf '%s' "hec-e2e-token" >"$T/hec.token"
basic_config "$GP" "$MP" "diagnostics:
  spool_dir: spool
  sinks:
    - type: http
      url: \"http://127.0.0.1:$RP\"
      format: splunk_hec
      token_file: hec.token
      index: custos
      batch_max_records: 3
      flush_ms: 50
      timeout_ms: 2000"
start_custos "$T/custos.yaml" "$GP"
: >"$T/ids"
for i in $(seq 1 8); do
  req "e2e$i" -H "api-key: $KEY" -H 'Content-Type: application/json' --data "$CHAT_BODY" \
    "http://127.0.0.1:$GP/openai/deployments/demo/chat/completions?api-version=2024-10-21" >/dev/null
  hdr "e2e$i" x-request-id >>"$T/ids"
done
check "e2e: eight request ids" 8 "$(grep -c . "$T/ids")"
sleep 1
start_sink_receiver "$RP" "$T/e2e.log"
deadline=$(( $(date +%s) + 40 ))
got=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  got=$(python3 -c 'import json,sys
n=0
for l in open(sys.argv[1]):
    e=json.loads(l)
    if e["status"]==200: n+=len(e["body"].splitlines())
print(n)' "$T/e2e.log" 2>/dev/null || echo 0)
  [ "$got" -ge 8 ] && break
  sleep 0.2
done
sleep 0.5
python3 - "$T/ids" "$T/e2e.log" <<'PY' && ok "e2e: every record once, in order, after the outage" || fail "e2e" "see $T/e2e.log"
import json, sys
ids = [l.strip() for l in open(sys.argv[1]) if l.strip()]
got = []
for l in open(sys.argv[2]):
    e = json.loads(l)
    if e["status"] != 200:
        continue
    assert e["path"] == "/services/collector/event", e["path"]
    assert e["headers"]["authorization"] == "Splunk hec-e2e-token"
    assert e["headers"]["content-encoding"] == "gzip"
    for line in e["body"].splitlines():
        o = json.loads(line)
        assert o["index"] == "custos" and o["sourcetype"] == "custos:request"
        got.append(o["event"]["custos"]["requestId"])
assert got == ids, (got, ids)
PY
check_contains "e2e: custos logged the outage" "delivery failed" "$(cat "$T/custos.log")"
check "e2e: the token never reaches custos' log" 0 "$(grep -c hec-e2e-token "$T/custos.log" || true)"
stop_custos_clean

finish
