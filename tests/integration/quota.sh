#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Quotas (docs/quotas.md): x-ratelimit-remaining-* on answers, Azure's 429 (body, retry-after,
# retry-after-ms, policy-id) for the request and the token limit, max_tokens × n in the estimate,
# correction with the backend's usage; two replicas sharing one quota through Redis (redis-server on
# loopback in the test's temp dir); Redis down → each replica's on_failure mode (local / closed),
# visible in the metrics; Redis back → shared again.
source "$(dirname "$0")/lib.sh"

command -v redis-server >/dev/null || { echo "redis-server missing (scripts/bootstrap)"; exit 1; }

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --quiet

# Windows are aligned to wall-clock time: start early in a 10 s window and not at the end of a minute,
# so that no window ends in the middle of a check.
align() {
  local ms
  ms=$(date +%s%3N)
  while [ $((ms % 10000)) -gt "${1:-3000}" ] || [ $((ms % 60000)) -gt 50000 ]; do
    sleep 0.2
    ms=$(date +%s%3N)
  done
}

# (prompt shields off: these tests are about quotas, and a shield's verdict on "hello" is not theirs to judge)
QUIET="rai_policies:
  - name: quiet
    prompt_shields: {jailbreak: 'off', indirect_attack: 'off'}"
basic_config "$GP" "$MP" "    rai_policy: quiet
$QUIET"
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
AUTH=(-H "api-key: $KEY" -H 'content-type: application/json')
st=$(req n0 "${AUTH[@]}" -d "$CHAT_BODY" "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21")
check "no quota -> 200" 200 "$st"
check "no quota: no x-ratelimit-remaining-requests" "" "$(hdr n0 x-ratelimit-remaining-requests)"

# the quotas arrive with a reload (the tokenizers are loaded then)
basic_config "$GP" "$MP" "    quota: {tpm: 100000, rpm: 12}      # 12 RPM over 10 s windows: 2 requests per window
    rai_policy: quiet
  - name: tok
    model: gpt-4o
    type: global
    backends: [mock]
    rai_policy: quiet
    quota: {tpm: 1000, rpm: 6000}
  - name: pp
    model: gpt-4o
    type: global
    backends: [mock]
    rai_policy: quiet
    quota: {tpm: 100000, rpm: 6000, per_principal: {rpm: 6}}   # each caller: 1 request per 10 s window
rai_policies:
  - name: quiet
    prompt_shields: {jailbreak: 'off', indirect_attack: 'off'}
quotas:
  rpm_window_s: 10
diagnostics:
  sinks:
    - {type: file, path: requests.jsonl}"
# a second caller
printf '%s' "other-key-456" >"$T/key2"
basic_config_keys '{name: other, key_file: key2}'
kill -HUP "$CUSTOS_PID"
wait_log "reload: configuration .* applied" "$T/custos.log" 10 && ok "reload with quotas applied" ||
  fail "reload with quotas" "$(tail -3 "$T/custos.log")"
sleep 0.5 # the workers pick the new snapshot up (posted to their loops)

# --- request limit (RPM over a 10 s window) ---
align 3000
st=$(req r1 "${AUTH[@]}" -d "$CHAT_BODY" "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21")
check "first request -> 200" 200 "$st"
check "200 carries x-ratelimit-remaining-requests" 1 "$(hdr r1 x-ratelimit-remaining-requests)"
rt=$(hdr r1 x-ratelimit-remaining-tokens)
[ -n "$rt" ] && [ "$rt" -gt 99000 ] && [ "$rt" -lt 100000 ] && ok "200 carries x-ratelimit-remaining-tokens ($rt)" ||
  fail "200 carries x-ratelimit-remaining-tokens" "'$rt'"
st=$(req r2 "${AUTH[@]}" -d "$STREAM_BODY" "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21")
check "second request (streamed) -> 200" 200 "$st"
check "stream carries x-ratelimit-remaining-requests" 0 "$(hdr r2 x-ratelimit-remaining-requests)"
st=$(req r3 "${AUTH[@]}" -d "$CHAT_BODY" "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21")
check "third request in the window -> 429" 429 "$st"
check "429 error.code" 429 "$(jfield "$T/r3.body" error.code)"
check_contains "429 message (Azure's)" "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after" "$(jfield "$T/r3.body" error.message)"
check_contains "429 message: quota increase link" "https://aka.ms/oai/quotaincrease" "$(jfield "$T/r3.body" error.message)"
ra=$(hdr r3 retry-after)
ram=$(hdr r3 retry-after-ms)
[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 10 ] && ok "retry-after in 1..10 s ($ra)" || fail "retry-after" "'$ra'"
[ -n "$ram" ] && [ "$ram" -ge 1 ] && [ "$ram" -le 10000 ] && [ $(((ram + 999) / 1000)) -eq "$ra" ] &&
  ok "retry-after-ms matches retry-after ($ram)" || fail "retry-after-ms" "'$ram' vs '$ra'"
check "429 x-ratelimit-remaining-requests" 0 "$(hdr r3 x-ratelimit-remaining-requests)"
check "429 policy-id" DeploymentRatelimit-Call "$(hdr r3 policy-id)"
check "429 content-type" application/json "$(hdr r3 content-type)"
check "the mock saw three requests (one before the reload)" 3 "$(mock_requests "$MP")"

# --- token limit: prompt + max_tokens × max(n, best_of), corrected with usage ---
st=$(req t1 "${AUTH[@]}" -d '{"model":"tok","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}' "$U/v1/chat/completions")
check "max_tokens 900 under 1000 TPM -> 200" 200 "$st"
rt=$(hdr t1 x-ratelimit-remaining-tokens)
[ -n "$rt" ] && [ "$rt" -lt 100 ] && ok "the estimate was charged (remaining $rt)" || fail "estimate charged" "'$rt'"
st=$(req t2 "${AUTH[@]}" -d '{"model":"tok","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}' "$U/v1/chat/completions")
check "again max_tokens 900: the first was corrected to its usage -> 200" 200 "$st"
st=$(req t3 "${AUTH[@]}" -d '{"model":"tok","max_tokens":400,"n":3,"messages":[{"role":"user","content":"hi"}]}' "$U/v1/chat/completions")
check "max_tokens 400 × n 3 over 1000 TPM -> 429" 429 "$st"
check_contains "token 429 message" "have exceeded token rate limit" "$(jfield "$T/t3.body" error.message)"
check "token 429 policy-id" DeploymentRatelimit-Token "$(hdr t3 policy-id)"
ra=$(hdr t3 retry-after)
[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 60 ] && ok "token retry-after within the minute ($ra)" || fail "token retry-after" "'$ra'"

# --- the request records carry the quota outcome (docs/diagnostics.md) ---
for _ in $(seq 50); do
  [ "$(grep -c . "$T/requests.jsonl" 2>/dev/null)" -ge 6 ] && break
  sleep 0.1
done
python3 - "$T/requests.jsonl" "$(hdr r1 x-request-id)" "$(hdr r3 x-request-id)" "$(hdr t3 x-request-id)" <<'PY' &&
import json, sys
by = {r["custos"]["requestId"]: r for r in map(json.loads, open(sys.argv[1]))}
r1, r3, t3 = (by[i]["custos"]["quota"] for i in sys.argv[2:5])
assert r1 == {"outcome": "admitted", "limit": None, "remainingRequests": 1, "remainingTokens": r1["remainingTokens"]}, r1
assert 99000 < r1["remainingTokens"] < 100000, r1
assert r3["outcome"] == "limited" and r3["limit"] == "requests" and r3["remainingRequests"] == 0, r3
assert t3["outcome"] == "limited" and t3["limit"] == "tokens", t3
assert by[sys.argv[4]]["resultSignature"] == "429"
PY
  ok "request records: quota outcome admitted / limited by requests / limited by tokens" ||
  fail "request records: quota outcome" "$(tail -c 600 "$T/requests.jsonl")"

# --- per-principal share of a deployment ---
PB='{"model":"pp","messages":[{"role":"user","content":"hello"}]}'
align 3000
st=$(req p1 "${AUTH[@]}" -d "$PB" "$U/v1/chat/completions")
check "caller test: first request -> 200" 200 "$st"
st=$(req p2 "${AUTH[@]}" -d "$PB" "$U/v1/chat/completions")
check "caller test: second request in the window -> 429" 429 "$st"
check "per-principal 429 policy-id" PrincipalRatelimit-Call "$(hdr p2 policy-id)"
check_contains "per-principal 429 message" "exceeded call rate limit of your current principal quota" "$(jfield "$T/p2.body" error.message)"
st=$(req p3 -H "api-key: other-key-456" -H 'content-type: application/json' -d "$PB" "$U/v1/chat/completions")
check "caller other: own share -> 200" 200 "$st"

curl -sS "$U/metrics" >"$T/m1.txt"
check_contains "metrics: request refusal" 'custos_quota_rejected_total{scope="deployment",kind="requests"} 1' "$(cat "$T/m1.txt")"
check_contains "metrics: token refusal" 'custos_quota_rejected_total{scope="deployment",kind="tokens"} 1' "$(cat "$T/m1.txt")"
check_contains "metrics: per-principal refusal" 'custos_quota_rejected_total{scope="deployment_principal",kind="requests"} 1' "$(cat "$T/m1.txt")"
stop_custos_clean

# --- two replicas share one quota through Redis ---
RP=$(free_port)
mkdir -p "$T/redis"
start_redis() {
  redis-server --port "$RP" --bind 127.0.0.1 --dir "$T/redis" --save '' --appendonly no \
    --logfile "$T/redis.out" --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  PIDS+=($REDIS_PID)
  wait_port "$RP"
}
start_redis
AP=$(free_port)
BP=$(free_port)
replica() { # NAME PORT ON_FAILURE
  { config_head "$2" && cat <<YAML; } >"$T/$1.yaml"
backends:
  - name: mock
    provider: openai
    url: "http://127.0.0.1:$MP"
deployments:
  - name: shared
    model: gpt-4o
    backends: [mock]
    rai_policy: quiet
    quota: {tpm: 100000, rpm: 24}     # 4 requests per 10 s window, for both replicas together
  - name: roomy
    model: gpt-4o
    backends: [mock]
    rai_policy: quiet
    quota: {tpm: 100000, rpm: 6000}
rai_policies:
  - name: quiet
    prompt_shields: {jailbreak: 'off', indirect_attack: 'off'}
quotas:
  rpm_window_s: 10
  redis: {host: 127.0.0.1, port: $RP, sync_interval_ms: 50, timeout_ms: 100, on_failure: $3}
YAML
  "$CUSTOS_BIN" serve -c "$T/$1.yaml" >>"$T/custos-$1.log" 2>&1 &
  PIDS+=($!)
  eval "${1}_PID=$!"
  wait_port "$2"
}
replica a "$AP" local
replica b "$BP" closed
SB='{"model":"shared","messages":[{"role":"user","content":"hello"}]}'
metric() { curl -sS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
wait_metric() { # PORT NAME VALUE SECONDS
  local deadline=$(( $(date +%s) + $4 ))
  until [ "$(metric "$1" "$2")" = "$3" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
wait_metric "$AP" custos_quota_redis_up 1 10 && ok "replica a: Redis up" || fail "replica a: Redis up" "$(metric "$AP" custos_quota_redis_up)"
wait_metric "$BP" custos_quota_redis_up 1 10 && ok "replica b: Redis up" || fail "replica b: Redis up" "$(metric "$BP" custos_quota_redis_up)"

align 3000
for i in 1 2; do
  st=$(req sa$i "${AUTH[@]}" -d "$SB" "http://127.0.0.1:$AP/v1/chat/completions")
  check "replica a request $i -> 200" 200 "$st"
done
sleep 0.4 # a few sync intervals
for i in 1 2; do
  st=$(req sb$i "${AUTH[@]}" -d "$SB" "http://127.0.0.1:$BP/v1/chat/completions")
  check "replica b request $i -> 200" 200 "$st"
done
check "replica b sees a's requests (remaining after the 4th)" 0 "$(hdr sb2 x-ratelimit-remaining-requests)"
sleep 0.4
st=$(req sa3 "${AUTH[@]}" -d "$SB" "http://127.0.0.1:$AP/v1/chat/completions")
check "replica a: the 5th request of the shared window -> 429" 429 "$st"
st=$(req sb3 "${AUTH[@]}" -d "$SB" "http://127.0.0.1:$BP/v1/chat/completions")
check "replica b: also 429" 429 "$st"
keys=$(redis-cli -p "$RP" --scan --pattern 'custos:quota:d/shared:*' | wc -l)
[ "$keys" -ge 2 ] && ok "window counters in Redis ($keys keys)" || fail "window counters in Redis" "$keys"
total=0 # over the request windows (idle replicas also keep the current window's key alive, at 0)
for k in $(redis-cli -p "$RP" --scan --pattern 'custos:quota:d/shared:r10:*'); do
  total=$((total + $(redis-cli -p "$RP" get "$k")))
done
check "Redis holds the shared request count" 4 "$total"

# --- Redis down: a (on_failure local) decides alone, b (closed) refuses; metrics show it ---
kill "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null || true
wait_metric "$AP" custos_quota_redis_up 0 10 && ok "replica a: Redis down in metrics" || fail "replica a: Redis down" ""
wait_metric "$BP" custos_quota_redis_up 0 10 && ok "replica b: Redis down in metrics" || fail "replica b: Redis down" ""
RB='{"model":"roomy","messages":[{"role":"user","content":"hello"}]}'
st=$(req fa "${AUTH[@]}" -d "$RB" "http://127.0.0.1:$AP/v1/chat/completions")
check "Redis down, on_failure local -> 200" 200 "$st"
st=$(req fb "${AUTH[@]}" -d "$RB" "http://127.0.0.1:$BP/v1/chat/completions")
check "Redis down, on_failure closed -> 503" 503 "$st"
[ -n "$(hdr fb retry-after)" ] && ok "503 carries retry-after" || fail "503 retry-after" ""
check "fallback counted (local)" 1 "$(metric "$AP" 'custos_quota_fallback_total{mode="local"}')"
check "fallback counted (closed)" 1 "$(metric "$BP" 'custos_quota_fallback_total{mode="closed"}')"
e=$(metric "$AP" custos_quota_redis_sync_errors_total)
[ -n "$e" ] && [ "$e" -ge 1 ] && ok "sync errors counted ($e)" || fail "sync errors counted" "'$e'"

# --- Redis back: shared again ---
start_redis
wait_metric "$AP" custos_quota_redis_up 1 10 && ok "replica a: Redis back" || fail "replica a: Redis back" ""
wait_metric "$BP" custos_quota_redis_up 1 10 && ok "replica b: Redis back" || fail "replica b: Redis back" ""
st=$(req fb2 "${AUTH[@]}" -d "$RB" "http://127.0.0.1:$BP/v1/chat/completions")
check "Redis back, replica b -> 200" 200 "$st"

stop_custos_clean "$a_PID"
stop_custos_clean "$b_PID"
finish
