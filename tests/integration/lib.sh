# Shared helpers for integration tests (sourced, not run). Each test gets a private temp dir, starts
# custos-mockllm and custos on loopback ports, and cleans up on exit.
# Environment (set by ctest): CUSTOS_BIN, MOCKLLM_BIN, CUSTOS_SRC.
set -euo pipefail

: "${CUSTOS_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${CUSTOS_BIN:=$CUSTOS_SRC/build/custos}"
: "${MOCKLLM_BIN:=$CUSTOS_SRC/build/custos-mockllm}"

T=$(mktemp -d /tmp/custos-test.XXXXXX)
PIDS=()
FAILS=0
PASSES=0

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_TMP:-0}" = 1 ] || [ "$FAILS" -gt 0 ]; then echo "test files kept in $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

# free_port: prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: waits until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port=$1 deadline=$(( $(date +%s) + ${2:-20} ))
  while ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "port $port did not open" >&2; return 1; }
    sleep 0.05
  done
}

# start_mock PORT [ARGS...]: starts custos-mockllm on 127.0.0.1:PORT; log in $T/mock-PORT.log.
start_mock() {
  local port=$1; shift
  "$MOCKLLM_BIN" --listen "127.0.0.1:$port" --workers 1 "$@" >"$T/mock-$port.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}

# make_cert NAME: self-signed EC certificate for 127.0.0.1/localhost in $T/NAME.crt, $T/NAME.key.
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$T/$1.key" -out "$T/$1.crt" >/dev/null 2>&1
}

# start_custos CONFIG_FILE PORT: starts custos with CONFIG_FILE; waits for PORT; log in $T/custos.log.
# Sets CUSTOS_PID.
start_custos() {
  "$CUSTOS_BIN" serve -c "$1" >>"$T/custos.log" 2>&1 &
  CUSTOS_PID=$!
  PIDS+=($CUSTOS_PID)
  wait_port "$2"
}

# basic_config GW_PORT MOCK_PORT [EXTRA_YAML]: writes $T/custos.yaml with one deployment "demo"
# backed by the mock, and the API key "test-key-123" (also in $T/key).
basic_config() {
  printf '%s' "test-key-123" >"$T/key"
  cat >"$T/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 5000}
listeners:
  - address: "127.0.0.1:$1"
identity:
  api_keys:
    - name: test
      key_file: key
backends:
  - name: mock
    provider: openai
    url: "http://127.0.0.1:$2"
deployments:
  - name: demo
    model: gpt-4o-mini
    type: global
    backends: [mock]
${3:-}
YAML
}

KEY=test-key-123

# ok NAME / fail NAME MSG: record a result; the script's exit status is 1 if anything failed.
ok() { PASSES=$((PASSES + 1)); echo "ok - $1"; }
fail() { FAILS=$((FAILS + 1)); echo "not ok - $1: ${2:-}"; }
# check NAME EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "expected '$2', got '$3'"; fi; }
# check_contains NAME NEEDLE HAYSTACK
check_contains() { case "$3" in *"$2"*) ok "$1" ;; *) fail "$1" "'$2' not found in: ${3:0:400}" ;; esac; }
finish() {
  echo "$PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}

# ---------- added helpers (fault and bad-input tests) ----------

# raw_http PORT REQUEST [ARGS...]: sends REQUEST bytes verbatim over one TCP connection (Python
# escapes such as \r\n are decoded; see rawhttp.py); prints "STATUS... CLOSED|OPEN". Never fails.
raw_http() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/rawhttp.py" "$@" || echo "ERROR"
}

# req NAME CURL_ARGS...: runs curl (10 s cap), body in $T/NAME.body, headers in $T/NAME.hdr; prints
# the HTTP status (000 if there was none). Never fails; curl's exit code is left in $T/NAME.rc.
req() {
  local name=$1 rc=0
  shift
  curl -sS --max-time "${REQ_MAX_TIME:-10}" -o "$T/$name.body" -D "$T/$name.hdr" -w '%{http_code}' "$@" \
    2>"$T/$name.err" || rc=$?
  echo "$rc" >"$T/$name.rc"
}

# jfield FILE KEY.PATH: prints a field of the JSON document in FILE ("" if absent or not JSON);
# list indices are numbers (data.0.id).
jfield() {
  python3 - "$1" "$2" <<'PY' 2>/dev/null || true
import json, sys
try:
    v = json.load(open(sys.argv[1], "rb"))
    for k in sys.argv[2].split("."):
        v = v[int(k)] if isinstance(v, list) else v[k]
    print(v if not isinstance(v, (dict, list)) else json.dumps(v))
except Exception:
    pass
PY
}

# hdr NAME HEADER: prints the value of HEADER (case-insensitive) from $T/NAME.hdr ("" if absent).
hdr() {
  tr -d '\r' <"$T/$1.hdr" | awk -v h="$(printf '%s' "$2" | tr 'A-Z' 'a-z')" -F': ' \
    'tolower($1) == h { sub(/^[^:]*: /, ""); print; exit }'
}

# mock_requests PORT: the mock's total request count from /mock/stats.
mock_requests() {
  curl -sS --max-time 5 "http://127.0.0.1:$1/mock/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' 2>/dev/null || echo "?"
}

# mock_stat PORT KEY.PATH: one field of the mock's /mock/stats (e.g. by_route.azure_chat_completions).
mock_stat() {
  curl -sS --max-time 5 -o "$T/.mockstats" "http://127.0.0.1:$1/mock/stats" || true
  jfield "$T/.mockstats" "$2"
}

# wait_exit PID SECONDS: waits for PID (a child of this shell) to exit; sets EXIT_RC to its exit
# status, or to "running" at the deadline. Call it directly, not in $(...): a subshell cannot wait.
wait_exit() {
  local pid=$1 deadline=$(( $(date +%s) + $2 ))
  EXIT_RC=running
  while kill -0 "$pid" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 0
    sleep 0.05
  done
  EXIT_RC=0
  wait "$pid" 2>/dev/null || EXIT_RC=$?
}

# wait_log PATTERN FILE SECONDS: waits until FILE contains PATTERN (grep -E); returns 1 on timeout.
wait_log() {
  local deadline=$(( $(date +%s) + $3 ))
  until grep -Eq -- "$1" "$2" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

CHAT_BODY='{"model":"demo","messages":[{"role":"user","content":"hello"}]}'
STREAM_BODY='{"model":"demo","stream":true,"messages":[{"role":"user","content":"hello"}]}'

# make_cert_cn NAME CN: like make_cert, with subject CN=CN (SANs stay localhost and 127.0.0.1).
make_cert_cn() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=$2" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$T/$1.key" -out "$T/$1.crt" >/dev/null 2>&1
}

# stop_custos_clean [PID]: SIGTERMs custos (default $CUSTOS_PID) and records whether it exits 0 within
# 15 s; then sanitizer_clean.
stop_custos_clean() {
  local pid=${1:-$CUSTOS_PID}
  kill -TERM "$pid" 2>/dev/null || true
  wait_exit "$pid" 15
  check "custos ($pid) exits 0 on SIGTERM" 0 "$EXIT_RC"
  sanitizer_clean
}

# sanitizer_clean: records whether the logs in $T (custos and mocks) are free of sanitizer reports.
sanitizer_clean() {
  if grep -l -E 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' "$T"/*.log >/dev/null 2>&1; then
    fail "no sanitizer reports" "$(grep -h -m1 -A8 -E 'Sanitizer|runtime error:' "$T"/*.log | head -30)"
  else
    ok "no sanitizer reports"
  fi
}
