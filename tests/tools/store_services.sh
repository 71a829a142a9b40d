# Throwaway PostgreSQL 15 and SoftHSM2 for store tests (sourced after tests/integration/lib.sh, not run).
# pg_start: initdb + pg_ctl on 127.0.0.1:$PG_PORT in a temp dir, password auth (scram-sha-256) for the
#   superuser "custos"; sets PG_URL (libpq conninfo, no password), PG_PWFILE (the password), PG_DIR.
#   PostgreSQL refuses to run as root: as root the cluster runs as the unprivileged "postgres" user that
#   Debian's postgresql-15 package creates (runuser); as any other user it runs as that user.
# hsm_start: a SoftHSM2 token "custos-test" (user PIN 1234) in a temp dir; sets SOFTHSM2_CONF, HSM_MODULE.
# store_services_stop: stops both (registered with the EXIT trap by the *_start functions).
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR= PG_AS=() HSM_DIR=

store_services_stop() {
  if [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ]; then
    "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -n "$PG_DIR" ] && rm -rf "$PG_DIR"
  [ -n "$HSM_DIR" ] && rm -rf "$HSM_DIR"
  PG_DIR= HSM_DIR=
}
trap 'store_services_stop; cleanup' EXIT

pg_start() {
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL 15 is not installed ($PG_BIN/initdb): run scripts/bootstrap" >&2; return 1; }
  PG_DIR=$(mktemp -d /tmp/custos-pg.XXXXXX)
  chmod 755 "$PG_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "running as root, and there is no 'postgres' user to run PostgreSQL" >&2; return 1; }
    chown postgres "$PG_DIR"
    PG_AS=(runuser -u postgres --)
  fi
  PG_PORT=$(free_port)
  PG_PWFILE=$T/pg-password
  printf 'pg-%s\n' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" >"$PG_PWFILE"
  cp "$PG_PWFILE" "$PG_DIR/pw" && chmod 644 "$PG_DIR/pw"
  "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U custos --auth=scram-sha-256 --pwfile="$PG_DIR/pw" \
    --no-sync -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  rm -f "$PG_DIR/pw"
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c full_page_writes=off" start \
    >/dev/null || { cat "$PG_DIR/pg.log" >&2; return 1; }
  PG_URL="host=127.0.0.1 port=$PG_PORT dbname=postgres user=custos"
}

hsm_start() {
  command -v softhsm2-util >/dev/null || { echo "softhsm2 is not installed: run scripts/bootstrap" >&2; return 1; }
  HSM_MODULE=${HSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
  HSM_DIR=$(mktemp -d /tmp/custos-hsm.XXXXXX)
  mkdir "$HSM_DIR/tokens"
  printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$HSM_DIR" >"$HSM_DIR/softhsm2.conf"
  export SOFTHSM2_CONF=$HSM_DIR/softhsm2.conf
  softhsm2-util --init-token --free --label custos-test --pin 1234 --so-pin 5678 >/dev/null
}
