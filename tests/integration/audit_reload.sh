#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Request-record sinks are re-created on SIGHUP (docs/diagnostics.md, "Reload"): custos starts without sinks and a
# reload adds one; its path changes, another sink is added and later removed, while requests keep coming. Every request's record is written exactly once: the
# ones before a reload to the old file, the ones after it to the new one.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --quiet
U="http://127.0.0.1:$GP"

# config PATH [EXTRA_SINK_YAML]: the file sink "reqlog" writes to PATH
config() {
  basic_config "$GP" "$MP" "diagnostics:
  spool_dir: spool
  sinks:
    - type: file
      name: reqlog
      path: $1
${2:-}"
}
EXTRA="    - type: file
      name: extra
      path: x.jsonl"

# send N TAG: N sequential chat requests; the x-request-ids of the 200s go to $T/ids.TAG
send() {
  local code
  : >>"$T/ids.$2"
  for _ in $(seq 1 "$1"); do
    code=$(curl -sS --max-time 10 -o /dev/null -D "$T/h.$2" -w '%{http_code}' -H "authorization: Bearer $KEY" \
      -H 'content-type: application/json' -d "$CHAT_BODY" "$U/v1/chat/completions" 2>/dev/null) || true
    [ "$code" = 200 ] && tr -d '\r' <"$T/h.$2" | awk -F': ' 'tolower($1) == "x-request-id" { print $2; exit }' >>"$T/ids.$2"
  done
  return 0
}
# ids FILE...: request ids of the records in the files, in file order
ids() {
  python3 - "$@" <<'PY' 2>/dev/null || true
import json, sys
for f in sys.argv[1:]:
    try:
        for line in open(f):
            print(json.loads(line)["custos"]["requestId"])
    except FileNotFoundError:
        pass
PY
}
# reload N: SIGHUP, then wait until the Nth reload has been applied
reload() {
  kill -HUP "$CUSTOS_PID"
  local deadline=$(($(date +%s) + 20))
  until [ "$(grep -c 'reload: configuration .* applied' "$T/custos.log")" -ge "$1" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { fail "reload $1 applied" "$(tail -5 "$T/custos.log")"; return 0; }
    sleep 0.05
  done
}

# 0. started without any sink: a reload adds the first one
basic_config "$GP" "$MP"
start_custos "$T/custos.yaml" "$GP"
send 3 N
config a.jsonl
reload 1
send 10 A

# 1. path a -> b, sink "extra" added: records before the reload are in a, after it in b (and in x)
config b.jsonl "$EXTRA"
reload 2
send 10 B
check "first sink added by a reload: its records, in order, none from before it" "$(cat "$T/ids.A")" "$(ids "$T/a.jsonl")"
check_contains "log: changed sink re-created" "audit sink reqlog re-created with new settings" "$(cat "$T/custos.log")"
check_contains "log: new sink added" "audit sink extra added" "$(cat "$T/custos.log")"

# 2. path b -> c and "extra" removed while three clients keep sending
send 30 P1 &
S1=$!
send 30 P2 &
S2=$!
send 30 P3 &
S3=$!
sleep 0.3
config c.jsonl
reload 3
wait "$S1" "$S2" "$S3"
send 5 C
check_contains "log: sink removed" "audit sink extra removed" "$(cat "$T/custos.log")"
stop_custos_clean

SENT=$(cat "$T"/ids.B "$T"/ids.P1 "$T"/ids.P2 "$T"/ids.P3 "$T"/ids.C | sort)
GOT=$(ids "$T/b.jsonl" "$T/c.jsonl" | sort)
N=$(echo "$SENT" | grep -c .)
if [ "$SENT" = "$GOT" ] && [ "$N" -eq 105 ]; then
  ok "path change under load: $N records, each exactly once across b and c"
else
  fail "path change under load" "sent $N, got $(echo "$GOT" | grep -c .) ($(diff <(echo "$SENT") <(echo "$GOT") | head -4 | tr '\n' ' '))"
fi
check "records after the reloads: in the new file" "$(cat "$T/ids.C")" "$(ids "$T/c.jsonl" | tail -5)"
check "old file untouched after the reload" "" "$(ids "$T/a.jsonl" | grep -F -x -f "$T/ids.B" || true)"
XS=$(ids "$T/x.jsonl")
check "added sink: got every record sent while it existed" "" "$(grep -v -x -F -f <(echo "$XS") "$T/ids.B" || true)"
check "added sink: no duplicates" "$(echo "$XS" | sort -u | grep -c .)" "$(echo "$XS" | grep -c .)"
check "removed sink: nothing after its removal" "" "$(echo "$XS" | grep -x -F -f "$T/ids.C" || true)"

# 3. a changed sink takes over its predecessor's spool: an HTTP sink whose receiver is down spools; a reload changes
# its batch size; when the receiver comes up, every record (spooled by the old version, queued by the new) arrives
# exactly once, in request order
RP=$(free_port)
hconfig() {
  basic_config "$GP" "$MP" "diagnostics:
  spool_dir: spool2
  sinks:
    - type: http
      name: siem
      url: \"http://127.0.0.1:$RP/ingest\"
      flush_ms: 20
      batch_max_records: $1
      timeout_ms: 2000"
}
hconfig 7
: >"$T/custos.log"
start_custos "$T/custos.yaml" "$GP"
send 8 H
deadline=$(($(date +%s) + 15))
until curl -sS "$U/metrics" | grep -q '^custos_audit_spool_bytes{sink="siem"} [1-9]'; do
  [ "$(date +%s)" -lt "$deadline" ] || { fail "receiver down: records spooled"; break; }
  sleep 0.1
done
hconfig 3
reload 1
check_contains "log: http sink re-created" "audit sink siem re-created with new settings" "$(cat "$T/custos.log")"
send 6 H
start_sink_receiver "$RP" "$T/recv.jsonl"
received() { received_request_ids "$T/recv.jsonl"; }
deadline=$(($(date +%s) + 40))
until [ "$(received | wc -l)" -ge 14 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.2
done
check "spool handed over: 14 records exactly once, in order" "$(cat "$T/ids.H")" "$(received)"
stop_custos_clean
finish
