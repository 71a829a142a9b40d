#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Identity end to end: stored API keys (custos keys CLI, SIGHUP reload), revoked and expired keys, RBAC
# scopes (PermissionDenied), the admin API (keys and role assignments, admin-only, governance-logged),
# conditional access on keys, disable_local_auth (AuthenticationTypeDisabled), and OIDC tokens against
# tests/tools/test_idp (missing role, role at another deployment's scope, MFA required, network not allowed).
source "$(dirname "$0")/lib.sh"

: "${CUSTOS_TOOLS:=$CUSTOS_SRC/build/tools}"
IDP_BIN=$CUSTOS_TOOLS/test_idp

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --quiet
printf '%s' "admin-key-0123456789" >"$T/admin.key"

# the IdP (HTTPS on loopback) for the token cases
make_cert idp
"$IDP_BIN" --cert "$T/idp.crt" --key "$T/idp.key" --port 0 --port-file "$T/idp.port" >"$T/idp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -s "$T/idp.port" ] && break; sleep 0.05; done
ISS="https://127.0.0.1:$(cat "$T/idp.port")"
tok() { curl -sS --max-time 5 --cacert "$T/idp.crt" "$ISS/token?$1"; }

cat >"$T/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 2000}
listeners:
  - address: "127.0.0.1:$GP"
identity:
  api_keys:
    - {name: root, key_file: admin.key, principal: ops-admin, roles: [admin]}
  oidc:
    - issuer: "$ISS"
      audience: ["api://custos"]
      ca_file: idp.crt
  role_map:
    Inference.User: inference.user
  role_assignments:
    - {principal: user-other, role: inference.user, scope: /deployments/other}
    - {group: grp-demo, role: inference.user, scope: /deployments/demo}
  conditional_access:
    - name: corp-network-only
      when: {deployments: [locked]}
      require: {networks: ["10.0.0.0/8"]}
    - name: mfa-for-mfa-dep
      when: {deployments: [mfa-dep], principal_types: [user]}
      require: {mfa: true}
storage: {path: state/custos.db}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, backends: [mock]}
  - {name: other, backends: [mock]}
  - {name: locked, backends: [mock]}
  - {name: mfa-dep, backends: [mock]}
YAML
mkdir -p "$T/state"
C=(-c "$T/custos.yaml")

# --- keys created with the CLI before start ---
K_USER=$("$CUSTOS_BIN" keys create "${C[@]}" --principal alice --role inference.user --name alice-key 2>"$T/create.err")
check_contains "keys create prints the key once" "sk-custos-" "$K_USER"
check "the key is 53 characters" 53 "${#K_USER}"
check_contains "keys create reports the id on stderr" "created key key_" "$(cat "$T/create.err")"
K_SCOPED=$("$CUSTOS_BIN" keys create "${C[@]}" --principal bob --role inference.user --scope /deployments/other 2>/dev/null)
K_EXP=$("$CUSTOS_BIN" keys create "${C[@]}" --principal carol --role inference.user --expires-in 1 --name exp 2>/dev/null)
K_AUD=$("$CUSTOS_BIN" keys create "${C[@]}" --principal dave --role auditor,reviewer 2>/dev/null)
# expire "exp" (as if a day had passed)
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update api_keys set expires=1 where name='exp'\"); c.commit()" "$T/state/custos.db"
"$CUSTOS_BIN" keys list "${C[@]}" >"$T/list.out" 2>&1
check "keys list shows 4 keys" 4 "$(grep -c '^key_' "$T/list.out")"
check_contains "keys list marks the expired key" "expired" "$(grep ' exp ' "$T/list.out")"
if grep -q "sk-custos-" "$T/list.out" "$T/state/custos.db"; then fail "no plaintext key in list or store"; else ok "no plaintext key in list or store"; fi
bad_rc=0; "$CUSTOS_BIN" keys create "${C[@]}" --principal x --role superuser >/dev/null 2>&1 || bad_rc=$?
check "unknown role refused (exit 2)" 2 "$bad_rc"

start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
ADMIN=(-H "api-key: admin-key-0123456789")
chat() { # chat NAME DEPLOYMENT HEADER...
  local name=$1 dep=$2
  shift 2
  req "$name" "$@" -H 'content-type: application/json' \
    -d "{\"model\":\"$dep\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" "$U/v1/chat/completions"
}

check "CLI key, api-key header -> 200" 200 "$(chat k1 demo -H "api-key: $K_USER")"
check "CLI key, Authorization: Bearer -> 200" 200 "$(chat k2 demo -H "authorization: Bearer $K_USER")"
check "Azure route with the CLI key -> 200" 200 "$(req k3 -H "api-key: $K_USER" -H 'content-type: application/json' \
  -d '{"messages":[{"role":"user","content":"hi"}]}' "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21")"
check "Ocp-Apim-Subscription-Key is not a credential outside Content Safety" 401 \
  "$(chat k4 demo -H "ocp-apim-subscription-key: $K_USER")"
check "expired key -> 401" 401 "$(chat exp demo -H "api-key: $K_EXP")"
check "expired key: Azure 401 code" 401 "$(jfield "$T/exp.body" error.code)"
check "unknown sk-custos key -> 401" 401 "$(chat unk demo -H "api-key: sk-custos-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")"
check "no credential -> 401" 401 "$(chat none demo)"

# --- RBAC ---
check "key scoped to /deployments/other on demo -> 401" 401 "$(chat sc1 demo -H "api-key: $K_SCOPED")"
check "PermissionDenied code" PermissionDenied "$(jfield "$T/sc1.body" error.code)"
check "PermissionDenied message" "Principal does not have access to API/Operation." "$(jfield "$T/sc1.body" error.message)"
check "same key on other -> 200" 200 "$(chat sc2 other -H "api-key: $K_SCOPED")"
check "PermissionDenied also for a deployment that does not exist" 401 "$(chat sc3 nonexistent -H "api-key: $K_SCOPED")"
check "key without an inference role -> 401" 401 "$(chat aud demo -H "api-key: $K_AUD")"
check "models list shows only what the key may call" '["other"]' \
  "$(req ml -H "api-key: $K_SCOPED" "$U/v1/models" >/dev/null; python3 -c 'import json,sys; print(json.dumps([m["id"] for m in json.load(open(sys.argv[1]))["data"]]))' "$T/ml.body")"

# --- conditional access on keys ---
check "CA: network not allowed -> 403" 403 "$(chat ca1 locked -H "api-key: $K_USER")"
check "CA: code" ConditionalAccessDenied "$(jfield "$T/ca1.body" error.code)"
check "CA: message names the policy and reason" \
  "Conditional access policy 'corp-network-only' denied the request: the source network is not allowed." \
  "$(jfield "$T/ca1.body" error.message)"
check "CA for users only does not apply to keys" 200 "$(chat ca2 mfa-dep -H "api-key: $K_USER")"

# --- admin API ---
check "admin API without credential -> 401" 401 "$(req a0 "$U/admin/v1/keys")"
check "admin API with a non-admin key -> 401" 401 "$(req a1 -H "api-key: $K_USER" "$U/admin/v1/keys")"
check "non-admin: PermissionDenied" PermissionDenied "$(jfield "$T/a1.body" error.code)"
check "admin key can list" 200 "$(req a2 "${ADMIN[@]}" "$U/admin/v1/keys")"
check "list has the 4 stored keys" 4 "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]))' "$T/a2.body")"
if grep -q '"key"' "$T/a2.body"; then fail "list never shows keys"; else ok "list never shows keys"; fi
check "admin create -> 201" 201 "$(req a3 "${ADMIN[@]}" -H 'content-type: application/json' \
  -d '{"principal":"erin","roles":["inference.user"],"scope":"/deployments/demo","expires_in_days":30,"name":"erin-key"}' \
  "$U/admin/v1/keys")"
K_NEW=$(jfield "$T/a3.body" key)
ID_NEW=$(jfield "$T/a3.body" id)
check_contains "created key returned once" "sk-custos-" "$K_NEW"
check "created key scope" "/deployments/demo" "$(jfield "$T/a3.body" scope)"
check "admin-created key works at once" 200 "$(chat n1 demo -H "authorization: Bearer $K_NEW")"
check "admin-created key works on every worker" 200 "$(chat n1b demo -H "authorization: Bearer $K_NEW")"
check "admin-created key is scoped" 401 "$(chat n2 other -H "authorization: Bearer $K_NEW")"
check "bad create body -> 400" 400 "$(req a4 "${ADMIN[@]}" -d '{"principal":"x","roles":["root"]}' "$U/admin/v1/keys")"
check "unknown field -> 400" 400 "$(req a5 "${ADMIN[@]}" -d '{"principal":"x","roles":["admin"],"evil":1}' "$U/admin/v1/keys")"
check "wrong method -> 405" 405 "$(req a6 "${ADMIN[@]}" -X PUT "$U/admin/v1/keys")"
check "unknown admin route -> 404" 404 "$(req a7 "${ADMIN[@]}" "$U/admin/v1/nope")"
check "admin revoke -> 200" 200 "$(req a8 "${ADMIN[@]}" -X DELETE "$U/admin/v1/keys/$ID_NEW")"
check "revoked key -> 401 at once" 401 "$(chat n3 demo -H "authorization: Bearer $K_NEW")"
check "revoked key -> 401 on every worker" 401 "$(chat n3b demo -H "authorization: Bearer $K_NEW")"
check "revoke again -> 404" 404 "$(req a9 "${ADMIN[@]}" -X DELETE "$U/admin/v1/keys/$ID_NEW")"

# role assignments: give bob (scoped to other) demo as well, then take it away
check "role assignment create -> 201" 201 "$(req r1 "${ADMIN[@]}" \
  -d '{"principal":"bob","role":"inference.user","scope":"/deployments/demo"}' "$U/admin/v1/role-assignments")"
RA_ID=$(jfield "$T/r1.body" id)
check "bob can now call demo" 200 "$(chat r2 demo -H "api-key: $K_SCOPED")"
check "role assignments list: config + store" 3 \
  "$(req r3 "${ADMIN[@]}" "$U/admin/v1/role-assignments" >/dev/null; python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]))' "$T/r3.body")"
check "role assignment delete -> 200" 200 "$(req r4 "${ADMIN[@]}" -X DELETE "$U/admin/v1/role-assignments/$RA_ID")"
check "bob is denied demo again" 401 "$(chat r5 demo -H "api-key: $K_SCOPED")"
check "bad role assignment -> 400" 400 "$(req r6 "${ADMIN[@]}" -d '{"principal":"a","group":"b","role":"admin"}' "$U/admin/v1/role-assignments")"
check "non-admin cannot assign roles" 401 "$(req r7 -H "api-key: $K_USER" -d '{"principal":"alice","role":"admin"}' "$U/admin/v1/role-assignments")"

# --- CLI revoke + SIGHUP ---
ALICE_ID=$(awk '$2 == "alice-key" {print $1}' "$T/list.out")
"$CUSTOS_BIN" keys revoke "${C[@]}" "$ALICE_ID" 2>/dev/null && ok "keys revoke" || fail "keys revoke"
gen_before=$(grep -c "identity: .* API keys active" "$T/custos.log" || true)
kill -HUP "$CUSTOS_PID"
for _ in $(seq 1 100); do [ "$(grep -c "identity: .* API keys active" "$T/custos.log")" -gt "$gen_before" ] && break; sleep 0.05; done
sleep 0.2
check "CLI-revoked key -> 401 after SIGHUP" 401 "$(chat rv1 demo -H "api-key: $K_USER")"
check "CLI-revoked key -> 401 (second worker too)" 401 "$(chat rv2 demo -H "api-key: $K_USER")"

# --- tokens (OIDC via test_idp) ---
check "token with the mapped role -> 200" 200 "$(chat t1 demo -H "authorization: Bearer $(tok 'roles=Inference.User&oid=u1')")"
check "token without a role -> 401 PermissionDenied" 401 "$(chat t2 demo -H "authorization: Bearer $(tok 'oid=u2')")"
check "token without a role: code" PermissionDenied "$(jfield "$T/t2.body" error.code)"
check "token: role at another deployment's scope -> 401" 401 "$(chat t3 demo -H "authorization: Bearer $(tok 'oid=user-other')")"
check "token: role at its own deployment's scope -> 200" 200 "$(chat t4 other -H "authorization: Bearer $(tok 'oid=user-other')")"
check "token: group assignment -> 200" 200 "$(chat t5 demo -H "authorization: Bearer $(tok 'oid=u5&groups=x,grp-demo')")"
check "token: MFA required but absent -> 403" 403 \
  "$(chat t6 mfa-dep -H "authorization: Bearer $(tok 'roles=Inference.User&oid=u6&upn=u6@example.com&amr=pwd')")"
check "token: MFA reason" "Conditional access policy 'mfa-for-mfa-dep' denied the request: multi-factor authentication is required." \
  "$(jfield "$T/t6.body" error.message)"
check "token: with MFA -> 200" 200 \
  "$(chat t7 mfa-dep -H "authorization: Bearer $(tok 'roles=Inference.User&oid=u7&upn=u7@example.com&amr=pwd,mfa')")"
check "token: network not allowed -> 403" 403 "$(chat t8 locked -H "authorization: Bearer $(tok 'roles=Inference.User&oid=u8')")"
check "token: admin API needs admin -> 401" 401 "$(req t9 -H "authorization: Bearer $(tok 'roles=Inference.User&oid=u9')" "$U/admin/v1/keys")"
check "token: bad token -> 401" 401 "$(chat t10 demo -H "authorization: Bearer $(tok 'roles=Inference.User&tamper=1')")"

# --- governance log: every admin change, metadata only ---
GOV=$(ls "$T"/*.jsonl 2>/dev/null | head -1)
if [ -n "$GOV" ]; then
  for a in key.create key.revoke role_assignment.create role_assignment.delete; do
    check_contains "governance log has $a" "\"action\":\"$a\"" "$(cat "$GOV")"
  done
  check_contains "governance actor is the admin principal" '"actor":"ops-admin"' "$(cat "$GOV")"
  # keys created and revoked with the CLI are recorded too (actor "cli"), and the chain stays valid
  n_cli=$(grep -c '"actor":"cli"' "$GOV" || true)
  if [ "$n_cli" -ge 5 ]; then ok "CLI key changes are in the governance log ($n_cli)"; else fail "CLI key changes logged" "only $n_cli cli records"; fi
  check_contains "CLI revoke is in the governance log" "\"actor\":\"cli\",\"action\":\"key.revoke\"" "$(cat "$GOV")"
  vout=$("$CUSTOS_BIN" audit verify "$GOV" 2>&1) && vrc=0 || vrc=$?
  check "governance log verifies after CLI and admin changes" 0 "$vrc"
  if grep -q "sk-custos-" "$GOV"; then fail "no key in the governance log"; else ok "no key in the governance log"; fi
else
  fail "governance log written" "no *.jsonl in $T"
fi
if grep -q "sk-custos-\|admin-key-0123456789" "$T/custos.log"; then fail "no keys in the log"; else ok "no keys in the log"; fi
stop_custos_clean

# --- disable_local_auth ---
GP2=$(free_port)
sed -e "s/127.0.0.1:$GP/127.0.0.1:$GP2/" -e 's/^identity:$/identity:\n  disable_local_auth: true/' \
  "$T/custos.yaml" >"$T/nolocal.yaml"
start_custos "$T/nolocal.yaml" "$GP2"
U="http://127.0.0.1:$GP2"
check "disable_local_auth: config key -> 403" 403 "$(chat d1 demo -H "api-key: admin-key-0123456789")"
check "AuthenticationTypeDisabled" AuthenticationTypeDisabled "$(jfield "$T/d1.body" error.code)"
check "AuthenticationTypeDisabled message" "Key based authentication is disabled for this resource." \
  "$(jfield "$T/d1.body" error.message)"
check "disable_local_auth: stored key as Bearer -> 403" 403 "$(chat d2 demo -H "authorization: Bearer $K_SCOPED")"
check "disable_local_auth: unknown key -> 403 too" 403 "$(chat d3 demo -H "api-key: whatever")"
check "disable_local_auth: tokens still work" 200 "$(chat d4 demo -H "authorization: Bearer $(tok 'roles=Inference.User&oid=u1')")"
stop_custos_clean

finish
