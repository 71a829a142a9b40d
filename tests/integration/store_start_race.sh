#!/usr/bin/env bash
# Processes starting at the same time on one fresh store (SQLite file and local key directory shared; then a fresh
# PostgreSQL database with a shared key directory): the schema is made once, key version 1 is created once and
# appears complete or not at all (temporary file + link(2), store transaction around the first start), so neither
# process refuses to start; the governance-log signing key is made once too (both replicas sign with it). Several rounds of two `custos kek list` (the same store + key start-up path as serve,
# without listeners), then rounds of two `custos serve`.
source "$(dirname "$0")/lib.sh"
source "$CUSTOS_SRC/tests/tools/store_services.sh"
pg_start
export PGPASSWORD
PGPASSWORD=$(cat "$PG_PWFILE")
MP=$(free_port)
start_mock "$MP"
printf '%s' "admin-key-123" >"$T/admin.key"
cp "$PG_PWFILE" "$T/pgpw"

# conf FILE DRIVER ROUND PORT: a config on round ROUND's store and key directory
conf() {
  local storage
  mkdir -p "$(dirname "$1")"
  if [ "$2" = postgres ]; then
    storage="{driver: postgres, url: \"host=127.0.0.1 port=$PG_PORT dbname=race$3 user=custos\", password_file: $T/pgpw, encryption: {key_dir: \"$T/$2-$3/keys\"}}"
  else
    storage="{path: \"$T/$2-$3/custos.db\", encryption: {key_dir: \"$T/$2-$3/keys\"}}"
  fi
  cat >"$1" <<YAML
server: {workers: 1, drain_timeout_ms: 1000}
listeners:
  - address: "127.0.0.1:$4"
identity:
  api_keys:
    - {name: root, key_file: $T/admin.key, principal: ops-admin, roles: [admin]}
storage: $storage
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, backends: [mock]}
YAML
}

round=0
fresh() { # DRIVER: a new store and key directory; sets R
  round=$((round + 1))
  R=$round
  mkdir -p "$T/$1-$R"
  if [ "$1" = postgres ]; then "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U custos "race$R" || return 1; fi
}

for driver in sqlite postgres; do
  bad=0
  for _ in 1 2 3 4 5 6 7 8; do
    fresh "$driver"
    conf "$T/$driver-$R/a.yaml" "$driver" "$R" "$(free_port)"
    "$CUSTOS_BIN" kek list -c "$T/$driver-$R/a.yaml" >"$T/$driver-$R/a.out" 2>&1 &
    pa=$!
    "$CUSTOS_BIN" kek list -c "$T/$driver-$R/a.yaml" >"$T/$driver-$R/b.out" 2>&1 &
    pb=$!
    ra=0 rb=0
    wait "$pa" || ra=$?
    wait "$pb" || rb=$?
    keys=$(find "$T/$driver-$R/keys" -type f | wc -l)
    size=$(stat -c %s "$T/$driver-$R/keys/kek-1.key" 2>/dev/null || echo 0)
    if [ "$ra" -ne 0 ] || [ "$rb" -ne 0 ] || [ "$keys" -ne 1 ] || [ "$size" -ne 32 ] ||
      [ "$(grep -c '^ *1 ' "$T/$driver-$R/a.out")" -ne 1 ] || ! cmp -s "$T/$driver-$R/a.out" "$T/$driver-$R/b.out"; then
      bad=$((bad + 1))
      echo "round $R ($driver): exit $ra/$rb, $keys key files, kek-1.key $size bytes" >&2
      cat "$T/$driver-$R/a.out" "$T/$driver-$R/b.out" >&2
    fi
  done
  check "$driver: 8 rounds of two processes starting together on a fresh store all start, one key" 0 "$bad"
done

for driver in sqlite postgres; do
  bad=0
  for _ in 1 2 3; do
    fresh "$driver"
    PA=$(free_port)
    PB=$(free_port)
    conf "$T/$driver-$R/a/custos.yaml" "$driver" "$R" "$PA"
    conf "$T/$driver-$R/b/custos.yaml" "$driver" "$R" "$PB"
    "$CUSTOS_BIN" serve -c "$T/$driver-$R/a/custos.yaml" >"$T/$driver-$R/a.log" 2>&1 &
    pa=$!
    "$CUSTOS_BIN" serve -c "$T/$driver-$R/b/custos.yaml" >"$T/$driver-$R/b.log" 2>&1 &
    pb=$!
    PIDS+=("$pa" "$pb")
    if ! wait_port "$PA" 30 || ! wait_port "$PB" 30; then
      bad=$((bad + 1))
      tail -3 "$T/$driver-$R"/*.log >&2
    fi
    for p in "$pa" "$pb"; do
      kill -TERM "$p" 2>/dev/null || true
      wait_exit "$p" 15
      [ "$EXIT_RC" = 0 ] || { bad=$((bad + 1)); echo "serve exited $EXIT_RC" >&2; }
    done
    # one governance-log signing key in the store, used by both (each replica writes its public key file)
    cmp -s "$T/$driver-$R/a/governance.jsonl.pub" "$T/$driver-$R/b/governance.jsonl.pub" ||
      { bad=$((bad + 1)); echo "round $R ($driver): the replicas sign with different keys" >&2; }
  done
  check "$driver: 3 rounds of two replicas started together serve, share one signing key and stop cleanly" 0 "$bad"
done
leftovers=$(find "$T" -name 'kek-*.tmp-*' | wc -l)
check "no temporary key files left behind" 0 "$leftovers"
finish
