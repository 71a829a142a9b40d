#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Routing inside the residency boundary (docs/routing.md): a datazone "us" deployment never reaches the EU
# backend, also while every US backend is down (503 naming the boundary); failover by priority and
# re-admission by active health checks; `requires` attributes; weighted round-robin (3:1 over 400 requests);
# least outstanding requests; sticky routing by header; passive ejection and half-open re-admission; reload;
# /readyz and the backend metrics.
source "$(dirname "$0")/lib.sh"

US1=$(free_port); US2=$(free_port); EU1=$(free_port); US3=$(free_port)
W3=$(free_port); W1=$(free_port); SLOWA=$(free_port); FASTB=$(free_port); GP=$(free_port)
start_mock "$US1" --quiet; US1_PID=${PIDS[-1]}
start_mock "$US2" --quiet; US2_PID=${PIDS[-1]}
start_mock "$EU1" --quiet
start_mock "$US3" --quiet; US3_PID=${PIDS[-1]}
start_mock "$W3" --quiet
start_mock "$W1" --quiet
start_mock "$SLOWA" --quiet --fault 'latency=1500'
start_mock "$FASTB" --quiet

printf '%s' "$KEY" >"$T/key"
HC='health_check: {interval_ms: 200, timeout_ms: 150, healthy_threshold: 2, unhealthy_threshold: 2}'
{ config_head "$GP" && cat <<YAML; } >"$T/custos.yaml"
upstream:
  max_attempts: 3
  connect_timeout_ms: 500
  first_byte_timeout_ms: 5000
  backoff_base_ms: 20
  backoff_max_ms: 50
  outlier_detection: {consecutive_failures: 2, base_ejection_ms: 60000, max_ejection_ms: 120000}
backends:
  - {name: us1, provider: openai, url: "http://127.0.0.1:$US1", region: eastus, data_zone: us, $HC}
  - {name: us2, provider: openai, url: "http://127.0.0.1:$US2", region: westus, data_zone: us, priority: 1, $HC}
  - name: eu1
    provider: openai
    url: "http://127.0.0.1:$EU1"
    region: swedencentral
    data_zone: eu
    attributes: {zero_data_retention: true, no_training: true}
  - name: us3
    provider: openai
    url: "http://127.0.0.1:$US3"
    region: eastus
    data_zone: us
    attributes: {zero_data_retention: true, no_training: true}
  - {name: w3, provider: openai, url: "http://127.0.0.1:$W3", weight: 3}
  - {name: w1, provider: openai, url: "http://127.0.0.1:$W1", weight: 1}
  - {name: slowa, provider: openai, url: "http://127.0.0.1:$SLOWA"}
  - {name: fastb, provider: openai, url: "http://127.0.0.1:$FASTB"}
deployments:
  - {name: usdz, model: gpt-4o-mini, type: datazone, data_zone: us, backends: [us1, us2]}
  - {name: eudz, model: gpt-4o-mini, type: datazone, data_zone: eu, backends: [eu1]}
  - name: zdr-us
    type: global
    backends: [eu1, us3]
    requires: {zero_data_retention: true, no_training: true, regions: [eastus, westus]}
  - {name: weighted, type: global, backends: [w3, w1]}
  - {name: lor, type: global, balance: least_outstanding, backends: [slowa, fastb]}
  - {name: sticky, type: global, sticky_header: X-Session-Id, backends: [w3, w1, fastb]}
YAML
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"

# Requests are embeddings: they are not content-filtered, so only routing decides their fate.
# bulk DEPLOYMENT N [HEADER:VALUE] [CONCURRENT_SPACING_MS]: N requests; prints "STATUS COUNT" lines.
cat >"$T/bulk.py" <<'PY'
import http.client, json, sys, threading, time
port, key, dep, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
hdr = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
spacing = float(sys.argv[6]) / 1000 if len(sys.argv) > 6 else None
body = json.dumps({"model": dep, "input": "hello"})
heads = {"authorization": "Bearer " + key, "content-type": "application/json"}
if hdr:
    k, v = hdr.split(":", 1)
    heads[k] = v
counts, lock = {}, threading.Lock()
def one(conn):
    conn.request("POST", "/v1/embeddings", body, heads)
    r = conn.getresponse(); r.read()
    with lock:
        counts[r.status] = counts.get(r.status, 0) + 1
if spacing is None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    for _ in range(n):
        one(c)
else:
    ts = []
    for _ in range(n):
        t = threading.Thread(target=lambda: one(http.client.HTTPConnection("127.0.0.1", port, timeout=20)))
        t.start(); ts.append(t); time.sleep(spacing)
    for t in ts:
        t.join()
for s, c in sorted(counts.items()):
    print(s, c)
PY
bulk() { python3 "$T/bulk.py" "$GP" "$KEY" "$@"; }
served() { mock_stat "$1" by_route.embeddings; }
# wait_state BACKEND STATE SECONDS: waits until /readyz reports STATE for BACKEND.
wait_state() {
  local deadline=$(( $(date +%s) + $3 ))
  while :; do
    curl -sS --max-time 2 -o "$T/readyz.json" "$U/readyz" 2>/dev/null || true
    [ "$(jfield "$T/readyz.json" "backends.$1.state")" = "$2" ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# --- /readyz lists every backend, healthy at start ---
st=$(req ready "$U/readyz")
check "/readyz -> 200" 200 "$st"
check "/readyz: us1 healthy" healthy "$(jfield "$T/ready.body" backends.us1.state)"
check "/readyz: eu1 listed" healthy "$(jfield "$T/ready.body" backends.eu1.state)"

# --- datazone us: priority group 0 (us1) serves; never the EU backend ---
check "usdz: 20 requests -> 200" "200 20" "$(bulk usdz 20)"
check "usdz: all on us1 (priority 0)" 20 "$(served "$US1")"
check "usdz: none on us2 (priority 1, failover only)" 0 "$(served "$US2")"
check "usdz: none on eu1" 0 "$(served "$EU1")"
check "eudz (eu1 itself is up): 200" "200 1" "$(bulk eudz 1)"

# --- us1 down: failover to us2, passive ejection and failing probes ---
kill "$US1_PID"; wait "$US1_PID" 2>/dev/null || true
check "us1 down: usdz still 200 (failover to us2)" "200 10" "$(bulk usdz 10)"
check "us1 down: us2 served" 10 "$(served "$US2")"
check "us1 down: none on eu1" 1 "$(served "$EU1")"
if wait_state us1 unhealthy 5; then ok "us1 down: /readyz says unhealthy"; else
  fail "us1 down: /readyz says unhealthy" "$(cat "$T/readyz.json")"; fi

# --- every US backend down: 503 naming the boundary, still never the EU backend ---
kill "$US2_PID"; wait "$US2_PID" 2>/dev/null || true
st=$(req alldown -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"model":"usdz","input":"hello"}' "$U/v1/embeddings")
check "all US down: 503" 503 "$st"
check "all US down: code" ServiceUnavailable "$(jfield "$T/alldown.body" error.code)"
msg=$(jfield "$T/alldown.body" error.message)
check_contains "all US down: message names the boundary" "data zone us" "$msg"
check_contains "all US down: message says not sent outside" "not sent outside the boundary" "$msg"
check "all US down: 10 more requests -> 503" "503 10" "$(bulk usdz 10)"
check "all US down: eu1 never reached by usdz" 1 "$(served "$EU1")"
if wait_state us2 unhealthy 5; then ok "us2 down: /readyz says unhealthy"; else
  fail "us2 down: /readyz says unhealthy" "$(cat "$T/readyz.json")"; fi
st=$(req metrics1 "$U/metrics")
check_contains "metrics: custos_backend_up us1 0" 'custos_backend_up{backend="us1"} 0' "$(cat "$T/metrics1.body")"
check_contains "metrics: custos_backend_state us1 unhealthy" \
  'custos_backend_state{backend="us1",state="unhealthy"} 1' "$(cat "$T/metrics1.body")"
check_contains "metrics: eu1 up" 'custos_backend_up{backend="eu1"} 1' "$(cat "$T/metrics1.body")"

# --- us1 back: the active health check re-admits it (its 60 s ejection has not run out) ---
start_mock "$US1" --quiet
if wait_state us1 healthy 5; then ok "us1 back: /readyz says healthy again"; else
  fail "us1 back: healthy again" "$(cat "$T/readyz.json")"; fi
check "us1 back: usdz -> 200" "200 5" "$(bulk usdz 5)"
check "us1 back: served by us1" 5 "$(served "$US1")"

# --- requires: zero_data_retention + no_training + regions: eu1 is never eligible ---
check "zdr-us: 10 requests -> 200" "200 10" "$(bulk zdr-us 10)"
check "zdr-us: all on us3" 10 "$(served "$US3")"
kill "$US3_PID"; wait "$US3_PID" 2>/dev/null || true
st=$(req zdrdown -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d '{"model":"zdr-us","input":"hello"}' "$U/v1/embeddings")
check "zdr-us, us3 down: 503" 503 "$st"
check_contains "zdr-us: message names the requirements" "requires zero_data_retention, no_training, regions eastus|westus" \
  "$(jfield "$T/zdrdown.body" error.message)"
check "zdr-us: eu1 never reached" 1 "$(served "$EU1")"
# us3 has no health_check: passive outlier detection alone ejected it (2 failures in a row)
st=$(req metrics3 "$U/metrics")
check_contains "metrics: us3 ejected by outlier detection" 'custos_backend_ejections_total{backend="us3"} 1' \
  "$(cat "$T/metrics3.body")"
check_contains "metrics: us3 state ejected" 'custos_backend_state{backend="us3",state="ejected"} 1' \
  "$(cat "$T/metrics3.body")"
check "/readyz: us3 ejected" ejected "$(curl -sS "$U/readyz" -o "$T/r3.json"; jfield "$T/r3.json" backends.us3.state)"

# --- weighted round-robin 3:1 over 400 requests (tolerance ±10%) ---
check "weighted: 400 -> 200" "200 400" "$(bulk weighted 400)"
a=$(served "$W3"); b=$(served "$W1")
if [ "$a" -ge 270 ] && [ "$a" -le 330 ] && [ $((a + b)) -eq 400 ]; then ok "weighted: w3 $a, w1 $b (3:1 ±10%)"; else
  fail "weighted: 3:1" "w3 $a, w1 $b"; fi

# --- least outstanding: a slow backend (1.5 s) gets few of 20 concurrent requests ---
check "lor: 20 concurrent -> 200" "200 20" "$(bulk lor 20 '' 30)"
sa=$(served "$SLOWA"); fb=$(served "$FASTB")
if [ "$sa" -le 4 ] && [ $((sa + fb)) -eq 20 ]; then ok "lor: slow $sa, fast $fb"; else
  fail "lor: slow backend avoided" "slow $sa, fast $fb"; fi

# --- sticky header: one key always lands on one backend; keys spread ---
w3=$(served "$W3"); w1=$(served "$W1"); fb=$(served "$FASTB")
check "sticky: 30 with one key -> 200" "200 30" "$(bulk sticky 30 'x-session-id:user-42')"
d3=$(( $(served "$W3") - w3 )); d1=$(( $(served "$W1") - w1 )); db=$(( $(served "$FASTB") - fb ))
case "$d3 $d1 $db" in
  "30 0 0" | "0 30 0" | "0 0 30") ok "sticky: one backend took all 30 ($d3/$d1/$db)" ;;
  *) fail "sticky: one backend" "$d3/$d1/$db" ;;
esac
w3=$(served "$W3"); w1=$(served "$W1"); fb=$(served "$FASTB")
for i in $(seq 1 30); do bulk sticky 1 "x-session-id:key-$i" >/dev/null; done
used=0
[ "$(served "$W3")" -gt "$w3" ] && used=$((used + 1))
[ "$(served "$W1")" -gt "$w1" ] && used=$((used + 1))
[ "$(served "$FASTB")" -gt "$fb" ] && used=$((used + 1))
[ "$used" -ge 2 ] && ok "sticky: 30 keys spread over $used backends" || fail "sticky: keys spread" "$used backend(s)"

# --- config check: requires that no listed backend meets is refused ---
sed -e 's/regions: \[eastus, westus\]/regions: [northeurope]/' "$T/custos.yaml" >"$T/bad.yaml"
rc=0
"$CUSTOS_BIN" config check "$T/bad.yaml" >"$T/bad.out" 2>&1 || rc=$?
check "requires met by no backend: config rejected" 1 "$rc"
check_contains "requires: message" "no backend of deployment zdr-us has the required attributes" "$(cat "$T/bad.out")"
sed -e 's/backends: \[us1, us2\]/backends: [us1, us2, eu1]/' "$T/custos.yaml" >"$T/bad2.yaml"
rc=0
"$CUSTOS_BIN" config check "$T/bad2.yaml" >"$T/bad2.out" 2>&1 || rc=$?
check "datazone us listing an EU backend: config rejected" 1 "$rc"

# --- passive detection alone (no health_check): ejected, then re-admitted by a half-open trial ---
P1=$(free_port); P2=$(free_port); GP2=$(free_port); KP=$(free_port)
start_mock "$P1" --quiet; P1_PID=${PIDS[-1]}
start_mock "$P2" --quiet
start_mock "$KP" --quiet --api-key upstream-secret-1 # health checks must present the backend's key
printf '%s' upstream-secret-1 >"$T/upkey"
cat >"$T/passive.yaml" <<YAML
server: {workers: 1, drain_timeout_ms: 5000}
listeners:
  - address: "127.0.0.1:$GP2"
identity:
  api_keys:
    - {name: test, key_file: key}
storage: {path: passive.db}
diagnostics: {governance_log: passive-governance.jsonl}
upstream:
  connect_timeout_ms: 500
  backoff_base_ms: 20
  backoff_max_ms: 50
  outlier_detection: {consecutive_failures: 1, base_ejection_ms: 2000, max_ejection_ms: 8000}
backends:
  - {name: p1, provider: openai, url: "http://127.0.0.1:$P1"}
  - {name: p2, provider: openai, url: "http://127.0.0.1:$P2", priority: 1}
  - name: keyed
    provider: openai
    url: "http://127.0.0.1:$KP"
    auth: {api_key_file: upkey}
    health_check: {interval_ms: 100, timeout_ms: 100, healthy_threshold: 1, unhealthy_threshold: 1}
  - {name: nokey, provider: openai, url: "http://127.0.0.1:$KP", health_check: {interval_ms: 100, timeout_ms: 100, unhealthy_threshold: 1}}
deployments:
  - {name: pdep, type: global, backends: [p1, p2]}
YAML
"$CUSTOS_BIN" serve -c "$T/passive.yaml" >>"$T/custos-passive.log" 2>&1 &
C2=$!; PIDS+=("$C2"); wait_port "$GP2"
pbulk() { python3 "$T/bulk.py" "$GP2" "$KEY" "$@"; }
pstate() { curl -sS --max-time 2 -o "$T/pready.json" "http://127.0.0.1:$GP2/readyz" 2>/dev/null; jfield "$T/pready.json" "backends.$1.state"; }
check "passive: 3 requests on p1" "200 3" "$(pbulk pdep 3)"
kill "$P1_PID"; wait "$P1_PID" 2>/dev/null || true
check "passive: p1 down -> 200 via p2" "200 4" "$(pbulk pdep 4)"
check "passive: p1 ejected after one failure" ejected "$(pstate p1)"
check "passive: p2 served the 4" 4 "$(served "$P2")"
start_mock "$P1" --quiet
sleep 2.3 # past the 2 s ejection
check "passive: p1 half-open once the ejection ran out" half_open "$(pstate p1)"
check "passive: next request -> 200" "200 1" "$(pbulk pdep 1)"
check "passive: the trial went to p1" 1 "$(served "$P1")"
check "passive: trial succeeded, p1 healthy" healthy "$(pstate p1)"
check "passive: p1 serves again" "200 5" "$(pbulk pdep 5)"
check "passive: all on p1" 6 "$(served "$P1")"
# active checks carry the backend's credential: the keyed backend passes, the same server without the key fails
check "health check with the backend's API key: healthy" healthy "$(pstate keyed)"
check "health check without the key (401): unhealthy" unhealthy "$(pstate nokey)"
st=$(req pmetrics "http://127.0.0.1:$GP2/metrics")
if grep -Eq 'custos_backend_probes_total\{backend="keyed",result="success"\} [1-9]' "$T/pmetrics.body"; then
  ok "metrics: keyed probes succeed"; else fail "metrics: keyed probes succeed" "$(grep probes_total "$T/pmetrics.body")"; fi
kill -TERM "$C2"; wait_exit "$C2" 15
check "passive custos exits 0" 0 "$EXIT_RC"

# --- SIGHUP reload: new weights apply; health state (us3's ejection) is kept ---
sed -i -e 's/weight: 3}/weight: 1}/' -e "/name: us2/s/, $HC//" "$T/custos.yaml"
grep -q "name: us2.*health_check" "$T/custos.yaml" && fail "test setup: us2 health_check removed" "sed"
a0=$(served "$W3"); b0=$(served "$W1")
kill -HUP "$CUSTOS_PID"
if wait_log "reload: configuration .* applied" "$T/custos.log" 10; then ok "reload applied"; else fail "reload applied" "no log line"; fi
check "after reload: 200 requests -> 200" "200 200" "$(bulk weighted 200)"
check "after reload: weights now 1:1 (w3)" 100 "$(( $(served "$W3") - a0 ))"
check "after reload: weights now 1:1 (w1)" 100 "$(( $(served "$W1") - b0 ))"
st=$(req metrics2 "$U/metrics")
check_contains "after reload: us3's ejection kept" 'custos_backend_state{backend="us3",state="ejected"} 1' \
  "$(cat "$T/metrics2.body")"
check "after reload: usdz still served by us1" "200 3" "$(bulk usdz 3)"
us2st=$(curl -sS "$U/readyz" -o "$T/r4.json"; jfield "$T/r4.json" backends.us2.state)
[ "$us2st" != unhealthy ] && ok "after reload: us2's health_check removed, its probe verdict dropped ($us2st)" ||
  fail "after reload: us2's probe verdict dropped" "$us2st"

stop_custos_clean
finish
