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

# config_head GW_PORT: prints the head of a config: the server block, one plain HTTP listener on 127.0.0.1:GW_PORT
# and the API key "test" read from the file "key" next to the config (the caller writes $KEY there and prints the
# rest: backends, deployments...).
config_head() {
  cat <<YAML
server: {workers: 2, drain_timeout_ms: 5000}
listeners:
  - address: "127.0.0.1:$1"
identity:
  api_keys:
    - name: test
      key_file: key
YAML
}

# basic_config GW_PORT MOCK_PORT [EXTRA_YAML]: writes $T/custos.yaml with one deployment "demo"
# backed by the mock, and the API key "test-key-123" (also in $T/key).
basic_config() {
  printf '%s' "test-key-123" >"$T/key"
  {
    config_head "$1"
    cat <<YAML
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
  } >"$T/custos.yaml"
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

# ---------- shared setup (config edits, npm clients, replicas, receivers) ----------

# basic_config_tls GW_PORT NAME: serves basic_config's listener on GW_PORT over TLS with the certificate from
# make_cert NAME (paths relative to the config file). Returns 1 if $T/custos.yaml could not be edited.
basic_config_tls() {
  sed -i "s|^  - address: \"127.0.0.1:$1\"|&\n    tls: {cert: $2.crt, key: $2.key}|" "$T/custos.yaml"
  grep -qF "    tls: {cert: $2.crt, key: $2.key}" "$T/custos.yaml"
}

# basic_config_keys ENTRY...: adds API keys "    - ENTRY", in order, after basic_config's key "test"; each ENTRY is a
# YAML flow mapping such as {name: admin, key_file: admin.key, roles: [admin]} (no '|', '&' or '\').
# Returns 1 if $T/custos.yaml could not be edited.
basic_config_keys() {
  local add="" e
  for e in "$@"; do add+="\\n    - $e"; done
  sed -i "s|^      key_file: key\$|&$add|" "$T/custos.yaml"
  for e in "$@"; do grep -qF -- "    - $e" "$T/custos.yaml" || return 1; done
}

# mock_deployments NAME:POLICY...: prints deployments (items of the deployments: list, for basic_config's
# EXTRA_YAML) named NAME on model gpt-4o-mini and the backend "mock", each with rai_policy POLICY.
mock_deployments() {
  local d
  for d in "$@"; do
    printf '  - name: %s\n    model: gpt-4o-mini\n    backends: [mock]\n    rai_policy: %s\n' "${d%%:*}" "${d#*:}"
  done
}

# need_node20: ends the test as skipped (exit 77) unless node >= 20 and npm are installed.
need_node20() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then echo "SKIP: node/npm not installed"; exit 77; fi
  [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || { echo "SKIP: node < 20"; exit 77; }
}

# npm_pinned PACKAGE: makes sure tests/e2e/node_modules holds PACKAGE at the version tests/e2e/package.json pins
# (runs npm install there otherwise) and sets NPM_VERSION to that version. If the install fails it records
# "npm install PACKAGE@VERSION" as failed and ends the test. Needs node (need_node20).
npm_pinned() {
  local e2e=$CUSTOS_SRC/tests/e2e have
  NPM_VERSION=$(node -p "require('$e2e/package.json').dependencies['$1']")
  have=$(node -p "try { require('$e2e/node_modules/$1/package.json').version } catch { '' }")
  if [ "$NPM_VERSION" != "$have" ]; then
    (cd "$e2e" && npm install --no-audit --no-fund --loglevel=error) || { fail "npm install $1@$NPM_VERSION"; finish || exit; }
  fi
}

# node_test NAME SCRIPT [VAR=VALUE...]: runs `node --test SCRIPT` in tests/e2e (capped at NODE_TEST_TIMEOUT seconds,
# default 120) with the extra environment VAR=VALUE...; prints its output (also in $T/node.log) and records NAME:
# passed if it exits 0, else failed with the tail of custos' log, and then returns 1.
node_test() {
  local name=$1 script=$2 rc=0
  shift 2
  (cd "$CUSTOS_SRC/tests/e2e" && env "$@" timeout "${NODE_TEST_TIMEOUT:-120}" node --test --test-reporter=spec "$script") \
    >"$T/node.log" 2>&1 || rc=$?
  cat "$T/node.log"
  if [ "$rc" -eq 0 ]; then
    ok "$name"
  else
    fail "$name" "node --test exited $rc"
    echo "--- custos log:" && tail -40 "$T/custos.log"
    return 1
  fi
}

# start_replicas OK_NAME: starts two custos replicas on one shared store. Picks ports PA and PB, calls the test's
# `replica NAME PORT` (which writes $T/NAME/custos.yaml) for a and b, starts both at once (logs $T/custos-a.log,
# $T/custos-b.log; PIDs in A_PID, B_PID, stopped at exit) and records OK_NAME once both listen (30 s each), or
# "replicas start" as failed with the logs' last lines.
start_replicas() {
  PA=$(free_port)
  PB=$(free_port)
  replica a "$PA"
  replica b "$PB"
  "$CUSTOS_BIN" serve -c "$T/a/custos.yaml" >>"$T/custos-a.log" 2>&1 &
  A_PID=$!
  "$CUSTOS_BIN" serve -c "$T/b/custos.yaml" >>"$T/custos-b.log" 2>&1 &
  B_PID=$!
  PIDS+=("$A_PID" "$B_PID")
  if wait_port "$PA" 30 && wait_port "$PB" 30; then ok "$1"; else fail "replicas start" "$(tail -3 "$T"/custos-*.log)"; fi
}

# check_serve_refuses NAME NEEDLE CONFIG: runs `custos serve -c CONFIG` (30 s cap, output in $T/fail.log) and checks
# that it refuses to start (exit 2, "NAME: custos refuses to start") saying NEEDLE ("NAME: message").
check_serve_refuses() {
  local rc=0
  timeout 30 "$CUSTOS_BIN" serve -c "$3" >"$T/fail.log" 2>&1 || rc=$?
  check "$1: custos refuses to start" 2 "$rc"
  check_contains "$1: message" "$2" "$(cat "$T/fail.log")"
}

# kill9_writers WRITER CONFIG COUNT: COUNT times, starts the store_writer tool WRITER on CONFIG (output in
# $T/wI.out), waits until it is writing (prints "ready", up to 20 s) and kills it with SIGKILL 0.1-0.5 s later.
kill9_writers() {
  local i wp
  for i in $(seq 1 "$3"); do
    "$1" "$2" >"$T/w$i.out" 2>&1 &
    wp=$!
    wait_log '^ready' "$T/w$i.out" 20 || true
    sleep 0.$((RANDOM % 5 + 1))
    kill -9 "$wp" 2>/dev/null || true
    wait "$wp" 2>/dev/null || true
  done
}

# start_sink_receiver PORT RECORD_FILE [CERT KEY]: starts sink_receiver.py on 127.0.0.1:PORT (HTTPS with CERT and
# KEY) recording each request it gets as one JSON line in RECORD_FILE (its stderr appended to $T/recv.err); sets
# RECV_PID (stopped at exit); waits for PORT.
start_sink_receiver() {
  python3 "$(dirname "${BASH_SOURCE[0]}")/sink_receiver.py" "$@" >>"$T/recv.err" 2>&1 &
  RECV_PID=$!
  PIDS+=("$RECV_PID")
  wait_port "$1"
}

# received_request_ids RECORD_FILE: prints the custos.requestId of every record in the NDJSON bodies that
# sink_receiver.py answered with 2xx, in arrival order (nothing if RECORD_FILE is missing).
received_request_ids() {
  python3 - "$1" <<'PY' 2>/dev/null || true
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if 200 <= e["status"] < 300:
        for rec in e["body"].splitlines():
            print(json.loads(rec)["custos"]["requestId"])
PY
}
