#!/usr/bin/env bash
# Two custos replicas on one throwaway PostgreSQL 15 (tests/tools/store_services.sh): both start at once (the
# schema is made once, under an advisory lock); a key created with the CLI, a key revoked on one replica and a
# role assignment made on the other reach both within the documented delay (storage.poll_interval_ms, here
# 500 ms; the test allows 15 s and prints what it measured); so does a blocklist made on one replica through the
# Content Safety API (it blocks a prompt on the other; removing the item there unblocks it on the first). Then
# kill -9 of writers on PostgreSQL.
source "$(dirname "$0")/lib.sh"
source "$CUSTOS_SRC/tests/tools/store_services.sh"
pg_start

MP=$(free_port)
start_mock "$MP"
mkdir -m 700 "$T/keys"
printf '%s' "admin-key-123" >"$T/admin.key"
replica() { # NAME PORT
  mkdir -p "$T/$1"
  cp "$T/admin.key" "$T/$1/admin.key"
  cp "$PG_PWFILE" "$T/$1/pgpw"
  cat >"$T/$1/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 2000}
listeners:
  - address: "127.0.0.1:$2"
identity:
  api_keys:
    - {name: root, key_file: admin.key, principal: ops-admin, roles: [admin]}
storage:
  driver: postgres
  url: "$PG_URL"
  password_file: pgpw
  poll_interval_ms: 500
  encryption: {key_dir: "$T/keys"}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
rai_policies:
  - {name: p, blocklists: [shared], prompt_shields: {jailbreak: annotate}}
deployments:
  - {name: demo, backends: [mock]}
  - {name: other, backends: [mock]}
  - {name: guarded, backends: [mock], rai_policy: p}
YAML
}
start_replicas "two replicas started together on one database"
check_contains "replica a: postgres store" "store: postgres" "$(cat "$T/custos-a.log")"

models() { req "$1" "http://127.0.0.1:$2/v1/models" -H "api-key: $3"; }
ADMIN=(-H "api-key: admin-key-123" -H 'content-type: application/json')
# until NAME PORT KEY EXPECTED: polls until the replica on PORT answers EXPECTED; prints seconds taken
until_status() {
  local start now
  start=$(date +%s%N)
  for _ in $(seq 1 300); do
    [ "$(models "$1" "$2" "$3")" = "$4" ] && break
    sleep 0.05
  done
  now=$(date +%s%N)
  echo "$(( (now - start) / 1000000 ))"
}

# --- a key made with the CLI (against replica a's config) reaches both ---
K=$("$CUSTOS_BIN" keys create -c "$T/a/custos.yaml" --principal dave --role inference.user --scope /deployments/other 2>/dev/null)
[ -n "$K" ] && ok "CLI key created in PostgreSQL" || fail "CLI key created in PostgreSQL"
ms=$(until_status m1 "$PB" "$K" 200)
check "replica b accepts the new key (after ${ms} ms)" 200 "$(models m2 "$PB" "$K")"
ms=$(until_status m3 "$PA" "$K" 200)
check "replica a accepts the new key (after ${ms} ms)" 200 "$(models m4 "$PA" "$K")"
check_contains "dave sees only 'other'" '"other"' "$(cat "$T/m4.body")"
case "$(cat "$T/m4.body")" in *'"demo"'*) fail "dave does not see demo yet" ;; *) ok "dave does not see demo yet" ;; esac

# --- a role assignment made on replica b reaches replica a ---
check "role assignment on b" 201 "$(req r1 "${ADMIN[@]}" -d '{"principal":"dave","role":"inference.user","scope":"/deployments/demo"}' "http://127.0.0.1:$PB/admin/v1/role-assignments")"
start=$(date +%s%N)
for _ in $(seq 1 300); do
  models m5 "$PA" "$K" >/dev/null
  grep -q '"demo"' "$T/m5.body" && break
  sleep 0.05
done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check_contains "replica a applies b's role assignment (after ${ms} ms)" '"demo"' "$(cat "$T/m5.body")"

# --- a revocation on replica a reaches replica b ---
ID=$(jfield "$T/r1.body" id)
KID=$("$CUSTOS_BIN" keys list -c "$T/a/custos.yaml" 2>/dev/null | awk '$3 == "dave" {print $1; exit}')
check "revoke on a" 200 "$(req v1 "${ADMIN[@]}" -X DELETE "http://127.0.0.1:$PA/admin/v1/keys/$KID")"
check "replica a rejects it at once" 401 "$(models m6 "$PA" "$K")"
ms=$(until_status m7 "$PB" "$K" 401)
check "replica b rejects it (after ${ms} ms)" 401 "$(models m8 "$PB" "$K")"
[ -n "$ID" ] && ok "role assignment id returned" || fail "role assignment id returned"

# --- a blocklist made on replica a (Content Safety API) blocks a prompt on replica b, and back ---
CS=(-H "api-key: admin-key-123" -H 'content-type: application/json')
V="api-version=2024-09-01"
chat() { # NAME PORT: a prompt naming the blocklisted term; prints the status
  req "$1" -H "api-key: admin-key-123" -H 'content-type: application/json' \
    -d '{"model":"guarded","messages":[{"role":"user","content":"tell me about zorblaxian gadgets"}]}' \
    "http://127.0.0.1:$2/v1/chat/completions"
}
until_chat() { # NAME PORT EXPECTED: polls; prints milliseconds taken
  local start i
  start=$(date +%s%N)
  for i in $(seq 1 300); do
    [ "$(chat "$1$i" "$2")" = "$3" ] && break
    sleep 0.05
  done
  echo "$(( ($(date +%s%N) - start) / 1000000 ))"
}
# a list the policy names that does not exist yet is a check that cannot run: fail closed (docs/content-filtering.md)
check "b before the blocklist exists: fails closed" content_filter_error "$(chat c0 "$PB" >/dev/null; jfield "$T/c0.body" error.code)"
check "blocklist created on a" 201 "$(req bl1 -X PATCH "${CS[@]}" -d '{"description":"shared"}' "http://127.0.0.1:$PA/contentsafety/text/blocklists/shared?$V")"
check "item added on a" 200 "$(req bl2 "${CS[@]}" -d '{"blocklistItems":[{"text":"zorblaxian"}]}' "http://127.0.0.1:$PA/contentsafety/text/blocklists/shared:addOrUpdateBlocklistItems?$V")"
check "replica a blocks at once" 400 "$(chat c1 "$PA")"
ms=$(until_chat cb "$PB" 400)
check "replica b blocks the prompt (after ${ms} ms)" 400 "$(chat c2 "$PB")"
check "  with error.code content_filter" content_filter "$(jfield "$T/c2.body" error.code)"
check "replica b lists a's blocklist" shared "$(req bl3 "${CS[@]}" "http://127.0.0.1:$PB/contentsafety/text/blocklists/shared?$V" >/dev/null; jfield "$T/bl3.body" blocklistName)"
BID=$(jfield "$T/bl2.body" blocklistItems.0.blocklistItemId)
check "item removed on b" 204 "$(req bl4 "${CS[@]}" -d "{\"blocklistItemIds\":[\"$BID\"]}" "http://127.0.0.1:$PB/contentsafety/text/blocklists/shared:removeBlocklistItems?$V")"
ms=$(until_chat ca "$PA" 200)
check "replica a allows the prompt again (after ${ms} ms)" 200 "$(chat c3 "$PA")"
grep -q zorblaxian "$T"/custos-*.log && fail "blocklist terms never logged" || ok "blocklist terms never logged"

# --- kill -9 of writers on PostgreSQL ---
WRITER=${CUSTOS_TOOLS:-$(dirname "$CUSTOS_BIN")/tools}/store_writer
kill9_writers "$WRITER" "$T/a/custos.yaml" 2
"$WRITER" "$T/b/custos.yaml" 3 >/dev/null 2>&1 && ok "store writable after kill -9" || fail "store writable after kill -9"
"$CUSTOS_BIN" keys list -c "$T/b/custos.yaml" >/dev/null 2>&1 && ok "store readable after kill -9" ||
  fail "store readable after kill -9"
check "replicas still serve" 200 "$(models m9 "$PB" admin-key-123)"

cp "$T/custos-a.log" "$T/custos.log"
stop_custos_clean "$A_PID"
stop_custos_clean "$B_PID"

# --- faults: a wrong password, then the database down: custos refuses to start, saying why ---
printf 'not-the-password\n' >"$T/a/pgpw"
check_serve_refuses "wrong database password" "password authentication failed" "$T/a/custos.yaml"
grep -q not-the-password "$T/fail.log" && fail "the password is never printed" || ok "the password is never printed"
cp "$PG_PWFILE" "$T/a/pgpw"
store_services_stop
check_serve_refuses "database down" "storage postgres: cannot open" "$T/a/custos.yaml"
finish
