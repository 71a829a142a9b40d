#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Request records survive sink outages and custos restarts (docs/diagnostics.md): with the HTTP sink's receiver down,
# records spool to disk; custos stops and starts again; when the receiver comes up every record arrives exactly once,
# in request order. Then a live outage (receiver killed and restarted while custos serves) gives the same result.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
GP=$(free_port)
RP=$(free_port)
start_mock "$MP" --quiet
basic_config "$GP" "$MP" "diagnostics:
  spool_dir: spool
  sinks:
    - type: http
      name: siem
      url: \"http://127.0.0.1:$RP/ingest\"
      flush_ms: 20
      batch_max_records: 7
      timeout_ms: 2000"
U="http://127.0.0.1:$GP"
IDS=()

# send N: N sequential chat requests; their x-request-ids are appended to IDS.
send() {
  for _ in $(seq 1 "$1"); do
    curl -sS --max-time 10 -o /dev/null -D "$T/h" -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
      -d "$CHAT_BODY" "$U/v1/chat/completions" || true
    IDS+=("$(tr -d '\r' <"$T/h" | awk -F': ' 'tolower($1) == "x-request-id" { print $2; exit }')")
  done
}
metric() { curl -sS --max-time 5 "$U/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# wait_metric NAME SECONDS: until the metric is present and > 0
wait_metric() {
  local deadline=$(($(date +%s) + $2)) v
  while :; do
    v=$(metric "$1")
    [ -n "$v" ] && [ "${v%.*}" -gt 0 ] 2>/dev/null && return 0
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
start_recv() { start_sink_receiver "$RP" "$T/recv.jsonl"; }
# received: request ids the receiver accepted (2xx), in arrival order
received() { received_request_ids "$T/recv.jsonl"; }
# wait_received N SECONDS
wait_received() {
  local deadline=$(($(date +%s) + $2))
  until [ "$(received | wc -l)" -ge "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
check_order() {
  local want got
  want=$(printf '%s\n' "${IDS[@]}")
  got=$(received)
  if [ "$want" = "$got" ]; then ok "$1: ${#IDS[@]} records, each exactly once, in order"; else
    fail "$1" "want ${#IDS[@]} ids, got $(echo "$got" | grep -c .): $(diff <(echo "$want") <(echo "$got") | head -5)"
  fi
}

# --- 1. receiver down: records spool; custos restarts with a spool ---
start_custos "$T/custos.yaml" "$GP"
send 20
wait_metric 'custos_audit_spool_bytes{sink="siem"}' 15 && ok "receiver down: records spooled" ||
  fail "records spooled" "$(curl -sS "$U/metrics" | grep audit)"
stop_custos_clean
segs=$(find "$T/spool/siem" -name '*.seg' -size +0 | wc -l)
[ "$segs" -ge 1 ] && ok "spool segment on disk after stop" || fail "spool segment on disk" "$(ls -la "$T/spool/siem")"
grep -q 'left in the spool, replayed at the next start' "$T/custos.log" && ok "stop reports the spool" ||
  fail "stop reports the spool" "$(tail -5 "$T/custos.log")"

start_recv
start_custos "$T/custos.yaml" "$GP"
send 5
wait_received 25 20 || true
check_order "restart with spool"
v=$(metric 'custos_audit_records_total{sink="siem",outcome="replayed"}')
[ "${v:-0}" -ge 20 ] 2>/dev/null && ok "replayed records counted ($v)" || fail "replayed counted" "got '${v:-}'"

# --- 2. live outage: receiver killed and restarted while custos serves ---
kill "$RECV_PID"
wait "$RECV_PID" 2>/dev/null || true
send 12
wait_metric 'custos_audit_spool_bytes{sink="siem"}' 15 && ok "live outage: records spooled" || fail "live outage spooled"
start_recv
send 3
wait_received 40 30 || true
check_order "live outage and recovery"
v=$(metric 'custos_audit_dropped_total{sink="siem",reason="spool_full"}')
check "nothing dropped" 0 "${v:-0}"
stop_custos_clean
[ -z "$(find "$T/spool/siem" -name '*.seg' -size +0)" ] && ok "spool empty after recovery" || fail "spool empty"
finish
