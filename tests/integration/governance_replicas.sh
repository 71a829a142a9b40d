#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The review queue shared by two replicas on one throwaway PostgreSQL 15 (docs/reviews.md): a high-tier answer
# withheld on replica a is listed, read (decrypted with the shared key) and decided on replica b, and released on
# a; two reviewers deciding one item at once on both replicas: exactly one decision wins, the other gets 409;
# each decision is one record in the deciding replica's governance log, and both logs verify; with the database down a
# high-tier answer fails closed (503, nothing released), and the replica reconnects once it is back.
source "$(dirname "$0")/lib.sh"
source "$CUSTOS_SRC/tests/tools/store_services.sh"
pg_start

MP=$(free_port)
start_mock "$MP"
mkdir -m 700 "$T/keys"
replica() { # NAME PORT
  mkdir -p "$T/$1"
  printf '%s' app-key-1 >"$T/$1/app.key"
  printf '%s' rev-key-1 >"$T/$1/rev.key"
  printf '%s' rev2-key-1 >"$T/$1/rev2.key"
  cp "$PG_PWFILE" "$T/$1/pgpw"
  cat >"$T/$1/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 2000}
listeners:
  - address: "127.0.0.1:$2"
identity:
  api_keys:
    - {name: app, key_file: app.key, principal: svc-app}
    - {name: rev, key_file: rev.key, principal: alice, roles: [reviewer]}
    - {name: rev2, key_file: rev2.key, principal: carol, roles: [reviewer], scope: /deployments/demo}
storage:
  driver: postgres
  url: "$PG_URL"
  password_file: pgpw
  encryption: {key_dir: "$T/keys"}
retention: {content: {days: 1}}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, backends: [mock]}
use_cases:
  - {id: letters, owner: o, tier: high, deployments: [demo], validation: {validated: true, evidence: V1},
     bind: {api_keys: [app]}}
YAML
}
start_replicas "two replicas on one database"
A="http://127.0.0.1:$PA"
B="http://127.0.0.1:$PB"
ask() { req "$1" "$2/v1/chat/completions" -H 'authorization: Bearer app-key-1' -H 'content-type: application/json' \
  -d "{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"mock_reply\":\"$3\"}"; }

s=$(ask h1 "$A" "REPLICATEDTEXT")
I1=$(jfield "$T/h1.body" custos_review.id)
check "replica a withholds" "200 pending" "$s $(jfield "$T/h1.body" custos_review.status)"
s=$(req l "$B/v1/reviews" -H 'authorization: Bearer rev-key-1')
check_contains "replica b lists a's item" "\"id\":\"$I1\"" "$(cat "$T/l.body")"
s=$(req it "$B/v1/reviews/$I1/item" -H 'authorization: Bearer rev-key-1')
check "replica b decrypts a's item" "200 REPLICATEDTEXT" "$s $(jfield "$T/it.body" output.0.text)"
s=$(req d "$B/v1/reviews/$I1/decision" -H 'authorization: Bearer rev-key-1' -H 'content-type: application/json' \
  -d '{"decision":"approve"}')
check "replica b decides" 200 "$s"
s=$(req c "$A/v1/reviews/$I1/completion" -H 'authorization: Bearer app-key-1')
check "replica a releases b's approval" "200 REPLICATEDTEXT" "$s $(jfield "$T/c.body" choices.0.message.content)"

# a race: both replicas decide the same item at once
ask h2 "$A" "RACE" >/dev/null
I2=$(jfield "$T/h2.body" custos_review.id)
req ra "$A/v1/reviews/$I2/decision" -H 'authorization: Bearer rev-key-1' -H 'content-type: application/json' \
  -d '{"decision":"reject","reason":"r1"}' >"$T/ra.code" &
RA=$!
req rb "$B/v1/reviews/$I2/decision" -H 'authorization: Bearer rev2-key-1' -H 'content-type: application/json' \
  -d '{"decision":"approve"}' >"$T/rb.code" &
RB=$!
wait "$RA" "$RB" 2>/dev/null || true
codes=$(printf '%s\n%s\n' "$(cat "$T/ra.code")" "$(cat "$T/rb.code")" | sort | tr '\n' ' ')
check "concurrent decisions: exactly one wins, the other gets 409" "200 409 " "$codes"
ga=$(grep -c '"action":"review.decide"' "$T/a/governance.jsonl" || true)
gb=$(grep -c '"action":"review.decide"' "$T/b/governance.jsonl" || true)
check "one governance record per decision across replicas" 2 "$((ga + gb))"
# the database goes away: a high-tier answer is not released (fails closed); once it is back, the replica reconnects
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1
s=$(ask down "$A" "WHILEDOWN")
check "database down: 503 review_unavailable, nothing released" "503 review_unavailable" "$s $(jfield "$T/down.body" error.code)"
if grep -q WHILEDOWN "$T/down.body"; then fail "database down: no completion byte" ""; else ok "database down: no completion byte"; fi
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/pg.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c full_page_writes=off" start >/dev/null
ok=0
for i in $(seq 1 20); do
  s=$(ask up "$A" "AFTER")
  [ "$s" = 200 ] && { ok=1; break; }
  sleep 0.5
done
check "database back: the replica reconnects and queues again" "1 pending" "$ok $(jfield "$T/up.body" custos_review.status)"
kill -TERM "$A_PID" "$B_PID"
wait_exit "$A_PID" 15
wait_exit "$B_PID" 15
for r in a b; do
  rc=0
  "$CUSTOS_BIN" audit verify "$T/$r/governance.jsonl" >/dev/null 2>&1 || rc=$?
  check "replica $r: governance log verifies" 0 "$rc"
done
sanitizer_clean
finish
