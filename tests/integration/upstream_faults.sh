#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Backend faults behind custos: 429 with retry-after, 5xx failover, dead backends, transient failures,
# resets mid-stream, malformed JSON, first-byte timeouts; and the residency boundary at config check.
source "$(dirname "$0")/lib.sh"

OKP=$(free_port)    # healthy
R429=$(free_port)   # always 429, retry-after 1 s
R429L=$(free_port)  # always 429, retry-after 30 s (beyond max_retry_after_ms)
R503=$(free_port)   # always 503
FLAKY=$(free_port)  # 503 twice, then fine
RESET=$(free_port)  # resets after 3 events / half a body
BADJ=$(free_port)   # malformed JSON
SLOW=$(free_port)   # 3 s before answering
R500=$(free_port)   # always 500
DRIP=$(free_port)   # stream events 300 ms apart
DEAD1=$(free_port)  # nothing listens
DEAD2=$(free_port)
GP=$(free_port)
start_mock "$OKP" --quiet
start_mock "$R429" --quiet --fault 'status=429;retry_after=1'
start_mock "$R429L" --quiet --fault 'status=429;retry_after=30'
start_mock "$R503" --quiet --fault 'status=503'
start_mock "$FLAKY" --quiet --fault 'fail_first=2;status=503'
start_mock "$RESET" --quiet --fault 'reset_mid_stream=3'
start_mock "$BADJ" --quiet --fault 'malformed_json'
start_mock "$SLOW" --quiet --fault 'latency=3000'
start_mock "$R500" --quiet --fault 'status=500'
start_mock "$DRIP" --quiet --fault 'drip=300'

printf '%s' "$KEY" >"$T/key"
be() { printf '  - {name: %s, provider: openai, url: "http://127.0.0.1:%s", priority: %s}\n' "$1" "$2" "${3:-0}"; }
dep() { printf '  - {name: %s, model: gpt-4o-mini, type: global, backends: [%s]}\n' "$1" "$2"; }
{
  config_head "$GP"
  cat <<YAML
upstream:
  max_attempts: 3
  first_byte_timeout_ms: 500
  connect_timeout_ms: 1000
  backoff_base_ms: 50
  backoff_max_ms: 200
  max_retry_after_ms: 5000
backends:
YAML
  be ok "$OKP" 1
  be r429 "$R429"
  be r429l "$R429L"
  be r503 "$R503" 0
  be flaky "$FLAKY"
  be reset "$RESET"
  be badj "$BADJ"
  be slow "$SLOW"
  be dead1 "$DEAD1" 0
  be dead2 "$DEAD2" 1
  be r500 "$R500"
  be drip "$DRIP"
  echo "deployments:"
  dep d429 r429
  dep d429l r429l
  dep failover "ok, r503"
  dep deadfirst "ok, dead1"
  dep down "dead1, dead2"
  dep flaky flaky
  dep reset reset
  dep badj badj
  dep slow slow
  dep d500 r500
  dep drip drip
} >"$T/custos.yaml"
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
AUTH=(-H "authorization: Bearer $KEY")
JSON=(-H 'content-type: application/json')
chat() { printf '{"model":"%s","messages":[{"role":"user","content":"hello"}]%s}' "$1" "${2:-}"; }

# --- 429 with retry-after 1: retried up to max_attempts, then surfaced with retry-after ---
t0=$(date +%s%N)
st=$(req r429 "${AUTH[@]}" "${JSON[@]}" -d "$(chat d429)" "$U/v1/chat/completions")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "upstream 429 -> 429 after retries" 429 "$st"
check "429: retry-after passed through" 1 "$(hdr r429 retry-after)"
check "429: upstream saw max_attempts (3) requests" 3 "$(mock_requests "$R429")"
[ "$ms" -ge 1900 ] && ok "429: waited retry-after between attempts (${ms} ms)" ||
  fail "429: waited retry-after between attempts" "only ${ms} ms for 3 attempts with retry-after 1 s"
check "429: body is the upstream error" 429 "$(jfield "$T/r429.body" error.code)"

# --- 429 asking for longer than max_retry_after_ms: surfaced at once ---
st=$(req r429l "${AUTH[@]}" "${JSON[@]}" -d "$(chat d429l)" "$U/v1/chat/completions")
check "429 retry-after 30 s > max_retry_after_ms -> 429" 429 "$st"
check "429 long: one upstream attempt" 1 "$(mock_requests "$R429L")"
check "429 long: retry-after passed through" 30 "$(hdr r429l retry-after)"

# --- 503 on the priority-0 backend, healthy priority-1 backend: failover ---
okb=$(mock_requests "$OKP")
st=$(req failover "${AUTH[@]}" "${JSON[@]}" -d "$(chat failover)" "$U/v1/chat/completions")
check "503 on backend A, B healthy -> 200 via B" 200 "$st"
check "failover: A tried first (once)" 1 "$(mock_requests "$R503")"
check "failover: B served" "$((okb + 1))" "$(mock_requests "$OKP")"
st=$(req deadfirst "${AUTH[@]}" "${JSON[@]}" -d "$(chat deadfirst)" "$U/v1/chat/completions")
check "connection refused on A, B healthy -> 200 via B" 200 "$st"

# --- both backends down: 503 ServiceUnavailable naming the deployment ---
t0=$(date +%s%N)
st=$(req down "${AUTH[@]}" "${JSON[@]}" -d "$(chat down)" "$U/v1/chat/completions")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "all backends down -> 503" 503 "$st"
check "all down: code" ServiceUnavailable "$(jfield "$T/down.body" error.code)"
check_contains "all down: message names the deployment" "'down'" "$(jfield "$T/down.body" error.message)"
[ "$ms" -lt 5000 ] && ok "all down: answered in ${ms} ms" || fail "all down: answered quickly" "${ms} ms"

# --- transient 503 twice, then success: retried to 200 ---
st=$(req flaky "${AUTH[@]}" "${JSON[@]}" -d "$(chat flaky)" "$U/v1/chat/completions")
check "503, 503, 200 upstream -> 200" 200 "$st"
check "transient: three upstream requests" 3 "$(mock_requests "$FLAKY")"

# --- reset mid-stream: some chunks, an in-band SSE error, a clean end ---
rc=0
curl -sS -N --max-time 10 -o "$T/reset.body" -w '%{http_code}' "${AUTH[@]}" "${JSON[@]}" \
  -d "$(chat reset ',"stream":true')" "$U/v1/chat/completions" >"$T/reset.code" 2>"$T/reset.err" || rc=$?
check "reset mid-stream: curl exits 0 (clean chunked end)" 0 "$rc"
check "reset mid-stream: status 200" 200 "$(cat "$T/reset.code")"
nev=$(grep -c '^data: {"id"' "$T/reset.body" || true)
[ "$nev" -ge 1 ] && ok "reset mid-stream: client got $nev chunks first" || fail "reset mid-stream: chunks first" "$(head -c 300 "$T/reset.body")"
last=$(grep '^data: ' "$T/reset.body" | tail -1)
check_contains "reset mid-stream: last event is an error" 'data: {"error":' "$last"
check_contains "reset mid-stream: error code" '"code":"upstream_incomplete"' "$last"
grep -q '^data: \[DONE\]' "$T/reset.body" && fail "reset mid-stream: no [DONE]" "[DONE] present" ||
  ok "reset mid-stream: no [DONE] after a cut stream"
# the same backend cutting a non-streamed body halfway
st=$(req resetwhole "${AUTH[@]}" "${JSON[@]}" -d "$(chat reset)" "$U/v1/chat/completions")
check "reset mid-body (non-streamed) -> 502" 502 "$st"
check "reset mid-body: code" BadGateway "$(jfield "$T/resetwhole.body" error.code)"

# --- malformed JSON with 200: custos passes the backend's body through unchanged ---
st=$(req badj "${AUTH[@]}" "${JSON[@]}" -d "$(chat badj)" "$U/v1/chat/completions")
check "malformed upstream JSON (200) -> passed through as 200" 200 "$st"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/badj.body" 2>/dev/null &&
  fail "malformed upstream JSON: body passed through verbatim" "body parses" ||
  ok "malformed upstream JSON: body passed through verbatim (not valid JSON)"
check "malformed upstream JSON: not retried" 1 "$(mock_requests "$BADJ")"
rc=0
curl -sS -N --max-time 10 -o "$T/badjs.body" "${AUTH[@]}" "${JSON[@]}" \
  -d "$(chat badj ',"stream":true')" "$U/v1/chat/completions" 2>/dev/null || rc=$?
check "malformed JSON in a stream: clean end" 0 "$rc"
check "malformed JSON in a stream: ends with [DONE]" 'data: [DONE]' "$(grep '^data: ' "$T/badjs.body" | tail -1)"

# --- upstream slower than first_byte_timeout_ms: 503 after max_attempts, bounded time ---
t0=$(date +%s%N)
st=$(req slow "${AUTH[@]}" "${JSON[@]}" -d "$(chat slow)" "$U/v1/chat/completions")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "latency 3 s > first_byte_timeout 500 ms -> 503" 503 "$st"
check "slow: code" ServiceUnavailable "$(jfield "$T/slow.body" error.code)"
check_contains "slow: message says timed out" "timed out" "$(jfield "$T/slow.body" error.message)"
check "slow: three attempts" 3 "$(mock_requests "$SLOW")"
[ "$ms" -lt 6000 ] && ok "slow: answered in ${ms} ms (< 6 s)" || fail "slow: bounded time" "${ms} ms"
st=$(req slowstream "${AUTH[@]}" "${JSON[@]}" -d "$(chat slow ',"stream":true')" "$U/v1/chat/completions")
check "slow stream (nothing sent yet) -> 503" 503 "$st"

# --- upstream 500: not retryable, passed through after one attempt ---
st=$(req r500 "${AUTH[@]}" "${JSON[@]}" -d "$(chat d500)" "$U/v1/chat/completions")
check "upstream 500 -> 500 passed through" 500 "$st"
check "upstream 500: one attempt (not retried)" 1 "$(mock_requests "$R500")"

# --- client goes away mid-stream: custos cancels upstream and keeps serving ---
rc=0
curl -sS -N --max-time 1 -o "$T/gone.body" "${AUTH[@]}" "${JSON[@]}" \
  -d "$(chat drip ',"stream":true')" "$U/v1/chat/completions" 2>/dev/null || rc=$?
check "client timeout mid-stream (curl exit 28)" 28 "$rc"
grep -q '^data: ' "$T/gone.body" && ok "client got events before leaving" || fail "client got events before leaving" "none"
sleep 0.5
st=$(req aftergone "${AUTH[@]}" "${JSON[@]}" -d "$(chat drip)" "$U/v1/chat/completions")
check "after a client left mid-stream: still serving" 200 "$st"

# metrics saw the upstream errors
st=$(req metrics "$U/metrics")
check_contains "metrics: upstream errors by kind" 'custos_upstream_errors_total{backend="slow",kind="timeout"}' "$(cat "$T/metrics.body")"
check_contains "metrics: client abort counted as 499" 'deployment="drip",status="499"' "$(cat "$T/metrics.body")"
check_contains "metrics: retries counted" 'custos_upstream_retries_total{deployment="d429"}' "$(cat "$T/metrics.body")"

# --- residency boundary: config check refuses regional/datazone deployments with outside backends ---
resid() { # NAME DEPLOYMENT_YAML
  cat >"$T/$1.yaml" <<YAML
listeners:
  - address: "127.0.0.1:$GP"
identity:
  api_keys:
    - {name: test, key_file: key}
backends:
  - {name: sweden, provider: openai, url: "http://127.0.0.1:1", region: swedencentral, data_zone: eu}
  - {name: eastus, provider: openai, url: "http://127.0.0.1:2", region: eastus, data_zone: us}
deployments:
$2
YAML
}
resid regional '  - {name: eu-only, type: regional, region: swedencentral, backends: [sweden, eastus]}'
rc=0
"$CUSTOS_BIN" config check "$T/regional.yaml" >"$T/regional.out" 2>&1 || rc=$?
check "regional deployment with a backend in another region: rejected (exit 1)" 1 "$rc"
out=$(cat "$T/regional.out")
check_contains "regional: names the backend's region" eastus "$out"
check_contains "regional: names the deployment's region" swedencentral "$out"
check_contains "regional: FILE:LINE:COL" "$T/regional.yaml:10:" "$out"
resid datazone '  - {name: eu-zone, type: datazone, data_zone: eu, backends: [eastus]}'
rc=0
"$CUSTOS_BIN" config check "$T/datazone.yaml" >"$T/datazone.out" 2>&1 || rc=$?
check "datazone deployment with a backend in another zone: rejected (exit 1)" 1 "$rc"
out=$(cat "$T/datazone.out")
check_contains "datazone: names the backend's zone" "data zone us" "$out"
check_contains "datazone: names the deployment's zone" "data zone eu" "$out"
resid noregion '  - {name: eu-only, type: regional, region: swedencentral, backends: [sweden, nowhere]}
  ' 
python3 - "$T/noregion.yaml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read().replace("backends:\n", "backends:\n  - {name: nowhere, provider: openai, url: \"http://127.0.0.1:3\"}\n", 1)
open(p, "w").write(s)
PY
rc=0
"$CUSTOS_BIN" config check "$T/noregion.yaml" >"$T/noregion.out" 2>&1 || rc=$?
check "regional deployment with a region-less backend: rejected" 1 "$rc"
check_contains "region-less backend: message" "has no region" "$(cat "$T/noregion.out")"
resid good '  - {name: eu-only, type: regional, region: swedencentral, backends: [sweden]}
  - {name: eu-zone, type: datazone, data_zone: eu, backends: [sweden]}'
rc=0
"$CUSTOS_BIN" config check "$T/good.yaml" >"$T/good.out" 2>&1 || rc=$?
check "in-boundary regional and datazone deployments: accepted" 0 "$rc"
stop_custos_clean

finish
