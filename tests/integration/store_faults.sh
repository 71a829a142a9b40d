#!/usr/bin/env bash
# The SQLite store and the local key under a running custos: key files made at first start (modes), KEK
# rotate / destroy / list, purge, kill -9 of writers mid-transaction (the store opens cleanly, integrity_check
# ok), a locked database (clear error, then works), a deleted database file (clear log line, no crash).
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
GP=$(free_port)
start_mock "$MP"
basic_config "$GP" "$MP" "storage: {path: state/custos.db, busy_timeout_ms: 500, poll_interval_ms: 300}
retention: {content: {days: 7}}"
mkdir -p "$T/state"
C=(-c "$T/custos.yaml")
DB=$T/state/custos.db
WRITER=${CUSTOS_TOOLS:-$(dirname "$CUSTOS_BIN")/tools}/store_writer

start_custos "$T/custos.yaml" "$GP"
# an authenticated request that reaches no model (this test is about the store, not content)
chat() { req "$1" "http://127.0.0.1:$GP/v1/models" -H "api-key: ${2:-$KEY}"; }
check "custos serves with a fresh store" 200 "$(chat c1)"
check_contains "start-up names the store and key version" "store: sqlite, schema" "$(cat "$T/custos.log")"
check "key directory made 0700 at first start" 700 "$(stat -c %a "$T/custos-keys")"
check "key file made 0600 at first start" 600 "$(stat -c %a "$T/custos-keys/kek-1.key")"
check "key file is 32 bytes" 32 "$(stat -c %s "$T/custos-keys/kek-1.key")"
check "database file is 0600" 600 "$(stat -c %a "$DB")"

# --- key versions ---
out=$("$CUSTOS_BIN" kek list "${C[@]}" 2>&1) || true
check_contains "kek list shows version 1 current" "current" "$out"
out=$("$CUSTOS_BIN" kek rotate "${C[@]}" 2>&1) && rc=0 || rc=$?
check "kek rotate exit" 0 "$rc"
check_contains "kek rotate names version 2" "key version 2 is current" "$out"
check "version 2 key file" 600 "$(stat -c %a "$T/custos-keys/kek-2.key")"
"$WRITER" "$T/custos.yaml" 5 >/dev/null 2>&1 && ok "writes under version 2" || fail "writes under version 2"
"$CUSTOS_BIN" kek destroy "${C[@]}" 2 --yes >"$T/d.out" 2>&1 && rc=0 || rc=$?
check "destroying the current version is refused" 1 "$rc"
check_contains "refusal says why" "is the current key version" "$(cat "$T/d.out")"
"$CUSTOS_BIN" kek destroy "${C[@]}" 1 >"$T/d.out" 2>&1 && rc=0 || rc=$?
check "destroy without --yes only explains" 2 "$rc"
[ -e "$T/custos-keys/kek-1.key" ] && ok "version 1 still there" || fail "version 1 still there"
out=$("$CUSTOS_BIN" kek destroy "${C[@]}" 1 --yes 2>&1) && rc=0 || rc=$?
check "destroy version 1" 0 "$rc"
# the one record under version 1: the governance log's signing key (docs/governance-log.md), made at first start
check_contains "destroy says how many records" "destroyed key version 1: 1 records" "$out"
[ -e "$T/custos-keys/kek-1.key" ] && fail "version 1 key file removed" || ok "version 1 key file removed"
out=$("$CUSTOS_BIN" kek list "${C[@]}" 2>&1) || true
check_contains "kek list shows the destroyed version" "destroyed" "$out"
out=$("$CUSTOS_BIN" kek destroy "${C[@]}" 1 --yes 2>&1) && rc=0 || rc=$?
check "destroying it again fails" 1 "$rc"
out=$("$CUSTOS_BIN" purge "${C[@]}" 2>&1) && rc=0 || rc=$?
check "purge exit" 0 "$rc"
check_contains "purge reports" "older than 7 days" "$out"

# --- kill -9 during writes (custos keeps serving next to the writers) ---
kill9_writers "$WRITER" "$T/custos.yaml" 3
check "integrity_check after kill -9" ok "$(sqlite3 "$DB" 'PRAGMA integrity_check' 2>&1)"
"$CUSTOS_BIN" keys list "${C[@]}" >/dev/null 2>&1 && ok "store opens after kill -9" || fail "store opens after kill -9"
"$WRITER" "$T/custos.yaml" 3 >/dev/null 2>&1 && ok "store writable after kill -9" || fail "store writable after kill -9"
check "custos still serves" 200 "$(chat c2)"

# --- a locked database: a clear error, then it works again ---
python3 - "$DB" >"$T/lock.out" 2>&1 <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(4)
c.execute("ROLLBACK")
PY
lp=$!
wait_log '^locked' "$T/lock.out" 10 || true
out=$("$CUSTOS_BIN" keys create "${C[@]}" --principal p --role inference.user 2>&1) && rc=0 || rc=$?
check "key create while locked fails" 1 "$rc"
check_contains "locked: clear error" "database is locked" "$out"
wait "$lp" 2>/dev/null || true
"$CUSTOS_BIN" keys create "${C[@]}" --principal p --role inference.user >/dev/null 2>&1 && ok "works once unlocked" ||
  fail "works once unlocked"

# --- the database file deleted under a running custos ---
rm -f "$DB" "$DB-wal" "$DB-shm"
wait_log 'database file is gone' "$T/custos.log" 10 && ok "deleted database: clear log line" ||
  fail "deleted database: clear log line" "$(tail -5 "$T/custos.log")"
check "custos keeps serving with the keys it has" 200 "$(chat c3)"
ADMIN_ST=$(req a1 "http://127.0.0.1:$GP/admin/v1/keys" -H "api-key: $KEY")
[ "$ADMIN_ST" != 000 ] && ok "admin API answers ($ADMIN_ST), no crash" || fail "admin API answers"
stop_custos_clean
finish
