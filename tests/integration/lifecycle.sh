#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Process lifecycle: config check errors with positions, SIGHUP reload (invalid file keeps the running
# config, a valid one applies), SIGTERM drain (in-flight stream completes, new connections refused,
# exit 0 within the deadline) and a drain deadline that cuts a long request.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --quiet --delay-ms 100
AUTH=(-H "authorization: Bearer $KEY")
JSON=(-H 'content-type: application/json')

# --- config check: unknown key -> FILE:LINE:COL, exit 1 ---
basic_config "$GP" "$MP"
cp "$T/custos.yaml" "$T/unknown.yaml"
sed -i 's/^    provider: openai$/    provider: openai\n    colour: blue/' "$T/unknown.yaml"
line=$(grep -n 'colour: blue' "$T/unknown.yaml" | cut -d: -f1)
rc=0
"$CUSTOS_BIN" config check "$T/unknown.yaml" >"$T/unknown.out" 2>&1 || rc=$?
check "config check: unknown key -> exit 1" 1 "$rc"
out=$(cat "$T/unknown.out")
check_contains "config check: FILE:LINE:COL of the unknown key" "$T/unknown.yaml:$line:5:" "$out"
check_contains "config check: names the key" colour "$out"
rc=0
"$CUSTOS_BIN" config check "$T/custos.yaml" >"$T/valid.out" 2>&1 || rc=$?
check "config check: valid file -> exit 0" 0 "$rc"
grep -q "$KEY" "$T/valid.out" && fail "config check summary: no key" "key printed" || ok "config check summary: no key"
rc=0
"$CUSTOS_BIN" config check "$T/missing.yaml" >"$T/missing.out" 2>&1 || rc=$?
check "config check: missing file -> exit 1" 1 "$rc"
rc=0
"$CUSTOS_BIN" serve -c "$T/unknown.yaml" >"$T/serve-bad.out" 2>&1 || rc=$?
check "serve with an invalid config: exit 2" 2 "$rc"

# --- SIGHUP reload ---
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
demo2() { printf '{"model":"demo2","messages":[{"role":"user","content":"x"}]}'; }
st=$(req d2before "${AUTH[@]}" "${JSON[@]}" -d "$(demo2)" "$U/v1/chat/completions")
check "before reload: demo2 unknown -> 404" 404 "$st"

good=$(cat "$T/custos.yaml")
printf '%s\n  - {name: demo2, model: gpt-4o, type: global, backends: [mock]\n' "$good" >"$T/custos.yaml" # broken YAML
kill -HUP "$CUSTOS_PID"
wait_log "keeping the running configuration" "$T/custos.log" 10 && ok "invalid config on SIGHUP: logged and kept" ||
  fail "invalid config on SIGHUP: logged" "$(tail -3 "$T/custos.log")"
check_contains "invalid config on SIGHUP: log names the file and position" "$T/custos.yaml:" \
  "$(grep 'keeping the running configuration' "$T/custos.log")"
st=$(req d1after_bad "${AUTH[@]}" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "after the invalid reload: demo still served" 200 "$st"
st=$(req d2after_bad "${AUTH[@]}" "${JSON[@]}" -d "$(demo2)" "$U/v1/chat/completions")
check "after the invalid reload: demo2 still unknown" 404 "$st"

printf '%s\n  - {name: demo2, model: gpt-4o, type: global, backends: [mock]}\n' "$good" >"$T/custos.yaml"
kill -HUP "$CUSTOS_PID"
wait_log "reload: configuration .* applied \(2 deployments" "$T/custos.log" 10 && ok "valid config on SIGHUP: applied" ||
  fail "valid config on SIGHUP: applied" "$(tail -3 "$T/custos.log")"
# the new snapshot is posted to every worker's loop: give them a moment
deadline=$(( $(date +%s) + 5 ))
until [ "$(req d2poll "${AUTH[@]}" "${JSON[@]}" -d "$(demo2)" "$U/v1/chat/completions")" = 200 ] ||
  [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
st=$(req d2after "${AUTH[@]}" "${JSON[@]}" -d "$(demo2)" "$U/v1/chat/completions")
check "after reload: demo2 -> 200" 200 "$st"
check "after reload: demo2's model" gpt-4o "$(jfield "$T/d2after.body" model)"
for i in 1 2 3 4; do # both workers have the new snapshot
  st=$(req "d2w$i" "${AUTH[@]}" "${JSON[@]}" -d "$(demo2)" "$U/v1/chat/completions")
  check "after reload: demo2 on a new connection ($i)" 200 "$st"
done
st=$(req d2models "${AUTH[@]}" "$U/v1/models/demo2")
check "after reload: /v1/models/demo2 -> 200" 200 "$st"

# --- SIGTERM drain: the in-flight stream completes, new connections refused, exit 0 ---
curl -sS -N --max-time 30 -o "$T/drain.body" "${AUTH[@]}" "${JSON[@]}" -d "$STREAM_BODY" \
  "$U/v1/chat/completions" 2>"$T/drain.err" &
CURL_PID=$!
deadline=$(( $(date +%s) + 10 ))
until grep -q '^data: ' "$T/drain.body" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.05; done
grep -q '^data: ' "$T/drain.body" && ok "drain: stream started" || fail "drain: stream started" "no data"
t0=$(date +%s%N)
kill -TERM "$CUSTOS_PID"
wait_log "draining" "$T/custos.log" 5 || true
sleep 0.2
rc=0
t1=$(date +%s%N)
curl -sS --max-time 3 -o /dev/null "$U/healthz" 2>"$T/newconn.err" || rc=$?
cms=$(( ($(date +%s%N) - t1) / 1000000 ))
echo "# new connection during drain: curl exit $rc after ${cms} ms: $(cat "$T/newconn.err")"
case "$rc" in
  7) ok "drain: new connection refused (curl exit $rc)" ;;
  *) fail "drain: new connection refused" "curl exit $rc ($(cat "$T/newconn.err"); 28 = accepted by the kernel but never served)" ;;
esac
crc=0
wait "$CURL_PID" || crc=$?
check "drain: in-flight stream client exits 0" 0 "$crc"
check "drain: in-flight stream ends with [DONE]" 'data: [DONE]' "$(grep '^data: ' "$T/drain.body" | tail -1)"
# every word of the answer arrived (the content filter releases it in screened windows, not word by word)
words=$(python3 -c '
import json, sys
t = ""
for l in open(sys.argv[1]):
    if l.startswith("data: {"):
        for c in json.loads(l[6:]).get("choices", []):
            t += (c.get("delta") or {}).get("content") or ""
print(len(t.split()))' "$T/drain.body" 2>/dev/null || echo 0)
check "drain: in-flight stream has the whole answer" 16 "$words"
wait_exit "$CUSTOS_PID" 10
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "drain: custos exits 0" 0 "$EXIT_RC"
[ "$ms" -lt 5000 ] && ok "drain: exited within drain_timeout_ms (${ms} ms)" || fail "drain: exited within the deadline" "${ms} ms"
grep -q 'drain deadline passed' "$T/custos.log" && fail "drain: finished before the deadline" "deadline passed" ||
  ok "drain: finished before the deadline"

# --- drain deadline: a request longer than drain_timeout_ms is cut, custos still exits 0 ---
GP2=$(free_port)
basic_config "$GP2" "$MP"
sed -i 's/drain_timeout_ms: 5000/drain_timeout_ms: 500/' "$T/custos.yaml"
start_custos "$T/custos.yaml" "$GP2"
curl -sS -N --max-time 30 -o "$T/cut.body" "${AUTH[@]}" "${JSON[@]}" -d "$STREAM_BODY" \
  "http://127.0.0.1:$GP2/v1/chat/completions" 2>/dev/null &
CURL_PID=$!
deadline=$(( $(date +%s) + 10 ))
until grep -q '^data: ' "$T/cut.body" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.05; done
# an idle keep-alive connection must not hold the drain either
python3 -c 'import socket,time,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); time.sleep(20)' "$GP2" &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
sleep 0.2
t0=$(date +%s%N)
kill -TERM "$CUSTOS_PID"
wait_exit "$CUSTOS_PID" 10
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "drain deadline: custos exits 0" 0 "$EXIT_RC"
[ "$ms" -lt 3000 ] && ok "drain deadline: exited soon after 500 ms (${ms} ms)" || fail "drain deadline: bounded exit" "${ms} ms"
wait "$CURL_PID" 2>/dev/null || true
grep -q '^data: \[DONE\]' "$T/cut.body" && fail "drain deadline: long stream was cut" "it completed" ||
  ok "drain deadline: long stream was cut"
grep -q 'drain deadline passed' "$T/custos.log" && ok "drain deadline: logged" || fail "drain deadline: logged" "$(tail -3 "$T/custos.log")"
kill "$IDLE_PID" 2>/dev/null || true
sanitizer_clean

finish
