#!/usr/bin/env bash
# Backend credentials sealed in the store: `custos secrets put` (value on stdin), a backend with
# auth.api_key_secret, config check before and after, requests reach the backend with the key, and the value
# is nowhere in plain text in the store or any file custos wrote.
source "$(dirname "$0")/lib.sh"

SECRET="upstream-secret-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --api-key "$SECRET"
mkdir -p "$T/gw"
printf '%s' "$KEY" >"$T/gw/key"
cat >"$T/gw/custos.yaml" <<YAML
server: {workers: 2}
listeners:
  - address: "127.0.0.1:$GP"
identity:
  api_keys:
    - {name: test, key_file: key}
backends:
  - name: mock
    provider: openai
    url: "http://127.0.0.1:$MP"
    auth: {api_key_secret: upstream}
deployments:
  - {name: demo, model: m, backends: [mock]}
YAML
C=(-c "$T/gw/custos.yaml")
out=$("$CUSTOS_BIN" config check "$T/gw/custos.yaml" 2>&1) && rc=0 || rc=$?
check "config check before the secret exists fails" 1 "$rc"
check_contains "and says which secret" "no secret 'upstream' in the store" "$out"
printf '%s\n' "$SECRET" | "$CUSTOS_BIN" secrets put "${C[@]}" upstream >"$T/put.out" 2>&1 && ok "secrets put" ||
  fail "secrets put" "$(cat "$T/put.out")"
grep -q -- "$SECRET" "$T/put.out" && fail "put never prints the value" || ok "put never prints the value"
out=$("$CUSTOS_BIN" secrets list "${C[@]}" 2>&1) || true
check_contains "secrets list names it" "upstream" "$out"
case "$out" in *"$SECRET"*) fail "list never prints the value" ;; *) ok "list never prints the value" ;; esac
"$CUSTOS_BIN" config check "$T/gw/custos.yaml" >"$T/check.out" 2>&1 && ok "config check with the stored secret" ||
  fail "config check with the stored secret" "$(cat "$T/check.out")"
"$CUSTOS_BIN" serve "${C[@]}" >>"$T/custos.log" 2>&1 &
CUSTOS_PID=$!
PIDS+=($CUSTOS_PID)
wait_port "$GP"
check "request reaches the backend with the sealed key" 200 "$(req e1 "http://127.0.0.1:$GP/v1/embeddings" \
  -H "api-key: $KEY" -H 'content-type: application/json' -d '{"model":"demo","input":"x"}')"
hits=$(grep -r -l -a -F -- "$SECRET" "$T/gw" 2>/dev/null || true)
[ -z "$hits" ] && ok "the secret is in no file custos wrote (store sealed)" || fail "secret leaked" "$hits"
"$CUSTOS_BIN" secrets delete "${C[@]}" upstream >/dev/null 2>&1 && ok "secrets delete" || fail "secrets delete"
out=$("$CUSTOS_BIN" config check "$T/gw/custos.yaml" 2>&1) && rc=0 || rc=$?
check "config check after delete fails again" 1 "$rc"
stop_custos_clean
finish
