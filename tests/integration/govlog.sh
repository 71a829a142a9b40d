#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Governance log end to end: custos records service.start, config.reload (valid SIGHUP), config.reload_failed
# (invalid SIGHUP) and service.stop; `custos audit verify` passes, then catches each tampering kind with its line;
# a torn log stops start-up until `custos audit repair`, after which the chain continues. custos signs checkpoints
# (govlog.checkpoint records, after service.start and at the close): their signatures are tested in govlog_signed.sh.
source "$(dirname "$0")/lib.sh"

GP=$(free_port)
MP=$(free_port)
basic_config "$GP" "$MP"
G="$T/governance.jsonl"
V() { "$CUSTOS_BIN" audit verify "$@"; }
# gov_has ACTION [SECONDS]: waits until the governance log holds a record with that action
gov_has() { wait_log "\"action\":\"$1\"" "$G" "${2:-10}"; }

start_custos "$T/custos.yaml" "$GP"
gov_has service.start && ok "service.start recorded" || fail "service.start recorded" "$(cat "$G" 2>&1)"
check "governance log is private (0600)" 600 "$(stat -c %a "$G")"

good=$(cat "$T/custos.yaml")
printf '%s\n  - {name: demo2, model: gpt-4o, type: global, backends: [mock]\n' "$good" >"$T/custos.yaml" # broken
kill -HUP "$CUSTOS_PID"
gov_has config.reload_failed && ok "invalid SIGHUP: config.reload_failed recorded" ||
  fail "invalid SIGHUP: config.reload_failed recorded" "$(tail -3 "$T/custos.log")"
printf '%s\n  - {name: demo2, model: gpt-4o, type: global, backends: [mock]}\n' "$good" >"$T/custos.yaml"
kill -HUP "$CUSTOS_PID"
gov_has 'config.reload",' && ok "valid SIGHUP: config.reload recorded" ||
  fail "valid SIGHUP: config.reload recorded" "$(tail -3 "$T/custos.log")"
wait_log "reload: configuration .* applied" "$T/custos.log" 10 || fail "reload applied" "$(tail -3 "$T/custos.log")"
stop_custos_clean
gov_has service.stop 1 && ok "service.stop recorded" || fail "service.stop recorded" "$(cat "$G")"

line() { sed -n "$1p" "$G"; }
check_contains "reload record: sender pid and config hash" "\"sender_pid\":$$" "$(grep '"config.reload"' "$G")"
sha=$(sha256sum "$T/custos.yaml" | cut -d' ' -f1)
check_contains "reload record: config_sha256 of the applied file" "\"config_sha256\":\"$sha\"" \
  "$(grep '"config.reload"' "$G")"
check_contains "reload_failed record: reason, no error text" '"reason":"invalid_config"}' \
  "$(grep 'config.reload_failed' "$G")"
check "six records (start, checkpoint, reload_failed, reload, stop, checkpoint)" 6 "$(wc -l <"$G")"
check_contains "records are seq 1..6" '"seq":6,' "$(line 6)"
check_contains "checkpoint after service.start" '"action":"govlog.checkpoint"' "$(line 2)"
check_contains "the log of a stopped custos ends with a checkpoint" '"action":"govlog.checkpoint"' "$(line 6)"

rc=0
out=$(V "$G") || rc=$?
check "verify intact log: exit 0" 0 "$rc"
head=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["hash"])' "$G")
check "verify intact log: summary" "ok: 6 records, head $head" "$(echo "$out" | tail -1)"
rc=0
V --expect-head "$head" "$G" >/dev/null || rc=$?
check "verify with the current head: exit 0" 0 "$rc"
cp "$G" "$T/pristine.jsonl"

# tamper NAME EXPECTED_SUBSTRING [VERIFY ARGS...]: runs verify on the tampered $G, expects exit 1 and the
# substring; then restores the pristine file.
tamper_check() {
  local name=$1 want=$2 rc=0 out
  shift 2
  out=$(V "$@" "$G") || rc=$?
  check "$name: verify exits 1" 1 "$rc"
  check_contains "$name: location and kind" "$want" "$out"
  cp "$T/pristine.jsonl" "$G"
}

sed -i '3s/"reason":"invalid_config"/"reason":"operator_ok"/' "$G"
tamper_check "modified field" "line 3 (seq 3): modified"
sed -i '3d' "$G"
tamper_check "deleted record" "line 3 (seq 4): deleted: seq 3..3 missing between seq 2 (line 2) and seq 4 (line 3)"
python3 - "$G" <<'PY'
import sys
p = sys.argv[1]
ls = open(p).readlines()
ls[1], ls[2] = ls[2], ls[1]
open(p, "w").writelines(ls)
PY
tamper_check "swapped records" "line 2 (seq 3): reordered"
# a forged record with a correctly recomputed hash, but a prev that matches no record
python3 - "$G" <<'PY'
import hashlib, json, sys
p = sys.argv[1]
ls = open(p).readlines()
canon = ('{"v":1,"seq":3,"time":"2026-01-01T00:00:00.000Z","actor":"mallory","action":"role_assignment.create",'
         '"target":"mallory","details":{},"prev":"' + "ab" * 32 + '"}')
h = hashlib.sha256(canon.encode()).hexdigest()
ls.insert(2, canon[:-1] + ',"hash":"' + h + '"}\n')
open(p, "w").writelines(ls)
PY
tamper_check "inserted forged record" "line 3 (seq 3): inserted"
sed -i '$d' "$G"
rc=0
V "$G" >/dev/null || rc=$?
check "tail truncation without an external head is invisible" 0 "$rc"
sed -i '$d' "$G"
tamper_check "truncated tail with --expect-head" "line 5 (seq 5): truncated" --expect-head "$head"

# a torn last line (crash mid-write): verify reports it, custos refuses to start, repair fixes it
printf '{"v":1,"seq":7,"time":"2026-' >>"$G"
rc=0
out=$(V "$G") || rc=$?
check "torn line: verify exits 1" 1 "$rc"
check_contains "torn line: location" "line 7: torn" "$out"
rc=0
"$CUSTOS_BIN" serve -c "$T/custos.yaml" >"$T/serve-torn.out" 2>&1 || rc=$?
check "torn log: serve refuses to start (exit 2)" 2 "$rc"
check_contains "torn log: message names the log" "governance log $G" "$(cat "$T/serve-torn.out")"
rc=0
"$CUSTOS_BIN" audit repair "$G" >"$T/repair.out" 2>&1 || rc=$?
check "repair: exit 0" 0 "$rc"
check "repair: torn bytes saved" 1 "$(ls "$G".torn.* | wc -l)"
rc=0
out=$(V "$G") || rc=$?
check "after repair: verify ok" 0 "$rc"
check_contains "after repair: 7 records" "ok: 7 records" "$out"
rc=0
"$CUSTOS_BIN" audit repair "$T/pristine.jsonl" >/dev/null 2>&1 || rc=$?
check "repair of an intact log: no-op exit 0" 0 "$rc"
sed -i '3s/invalid_config/whatever_else/' "$T/pristine.jsonl"
printf '{"v":1' >>"$T/pristine.jsonl"
rc=0
"$CUSTOS_BIN" audit repair "$T/pristine.jsonl" >/dev/null 2>&1 || rc=$?
check "repair refuses a tampered log" 1 "$rc"

# the chain continues across a restart
start_custos "$T/custos.yaml" "$GP"
wait_log '"seq":8,.*"action":"service.start"' "$G" 10 && ok "restart: service.start continues at seq 8" ||
  fail "restart: service.start continues" "$(tail -2 "$G")"
stop_custos_clean
rc=0
out=$(V "$G") || rc=$?
check "after restart: verify ok" 0 "$rc"
check_contains "after restart: 11 records (start, checkpoint, stop, checkpoint)" "ok: 11 records" "$out"

# diagnostics.governance_log moves the file (relative to the config file)
mkdir -p "$T/gov"
basic_config "$GP" "$MP" "diagnostics: {governance_log: gov/custom.jsonl}"
start_custos "$T/custos.yaml" "$GP"
wait_log 'service.start' "$T/gov/custom.jsonl" 10 && ok "diagnostics.governance_log honoured" ||
  fail "diagnostics.governance_log honoured" "$(ls "$T/gov")"
stop_custos_clean

rc=0
V "$T/nonexistent.jsonl" >/dev/null 2>&1 || rc=$?
check "verify of a missing file: exit 1" 1 "$rc"
rc=0
"$CUSTOS_BIN" audit verify >/dev/null 2>&1 || rc=$?
check "verify without FILE: usage, exit 2" 2 "$rc"
finish
