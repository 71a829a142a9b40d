#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Syslog audit sink driver against a real rsyslogd (Debian's rsyslog + rsyslog-gnutls) on loopback: RFC 5424
# header fields and the JSON record as MSG, intact, in order, over UDP, TCP (octet counting) and TLS (RFC 5425);
# TLS with the wrong CA and a closed TCP port make deliver() fail.
source "$(dirname "$0")/lib.sh"

SEND=${CUSTOS_TOOLS:-$CUSTOS_SRC/build/tools}/audit_send
RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
[ -x "$RSYSLOGD" ] || { echo "rsyslogd missing (scripts/bootstrap installs rsyslog)"; exit 1; }
[ -f /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 ||
  { echo "rsyslog-gnutls missing (scripts/bootstrap installs it)"; exit 1; }

UP=$(free_port)
TP=$(free_port)
SP=$(free_port)
make_cert srv
make_cert other
mkdir -p "$T/rs"
cat >"$T/rsyslog.conf" <<CONF
global(workDirectory="$T/rs" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="$T/srv.crt" defaultNetstreamDriverCertFile="$T/srv.crt"
       defaultNetstreamDriverKeyFile="$T/srv.key")
module(load="imudp")
module(load="imtcp" maxSessions="20")
template(name="fields" type="string"
         string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
ruleset(name="udp") { action(type="omfile" file="$T/udp.log" template="fields") }
ruleset(name="tcp") { action(type="omfile" file="$T/tcp.log" template="fields") }
ruleset(name="tls") { action(type="omfile" file="$T/tls.log" template="fields") }
input(type="imudp" address="127.0.0.1" port="$UP" ruleset="udp")
input(type="imtcp" address="127.0.0.1" port="$TP" ruleset="tcp")
input(type="imtcp" address="127.0.0.1" port="$SP" ruleset="tls" streamDriver.name="gtls" streamDriver.mode="1"
      streamDriver.authMode="anon")
CONF
start_rsyslog() {
  "$RSYSLOGD" -n -f "$T/rsyslog.conf" -i "$T/rsyslogd.pid" >>"$T/rsyslogd.log" 2>&1 &
  RS_PID=$!
  PIDS+=($RS_PID)
  wait_port "$TP" 20
  wait_port "$SP" 20
}
start_rsyslog

# Records: plain, unicode and quotes, brackets (look like structured data), and a big one (> 8 KiB, over TCP framing).
BIG=$(python3 -c 'print("x" * 20000)')
{
  for i in 1 2 3 4 5; do printf '{"v":1,"seq":%d,"deployment":"demo","status":200}\n' "$i"; done
  printf '%s\n' '{"v":1,"seq":6,"deployment":"d\u00e9mo \"q\" – ü","note":"[x y=\"1\"] ] \\"}'
  printf '{"v":1,"seq":7,"pad":"%s"}\n' "$BIG"
} >"$T/records"
N=$(wc -l <"$T/records")

# wait_lines FILE N: waits up to 10 s for N lines in FILE.
wait_lines() {
  local deadline=$(( $(date +%s) + 10 ))
  until [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# verify NAME FILE: every line carries the expected header fields and exactly the record sent, in order.
verify() {
  python3 - "$T/records" "$2" <<'PY' && ok "$1: header fields and records intact, in order" || fail "$1" "see $2"
import re, sys
recs = [l.rstrip("\n") for l in open(sys.argv[1], encoding="utf-8")]
lines = [l.rstrip("\n") for l in open(sys.argv[2], encoding="utf-8")]
assert len(lines) == len(recs), (len(lines), len(recs))
for rec, line in zip(recs, lines):
    pri, ts, host, app, procid, msgid, sd, msg = line.split("|", 7)
    assert pri == "134", pri                      # local0 (16) * 8 + info (6)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|\+00:00)", ts), ts
    assert host == "audit-host", host
    assert app == "custos-test", app
    assert procid.isdigit(), procid
    assert msgid == "request", msgid
    assert sd == "-", sd
    assert msg == rec, (msg[:200], rec[:200])
PY
}

# UDP: the 20 KB record fits one datagram (rsyslog maxMessageSize 64k)
out=$("$SEND" --type syslog --address "udp://127.0.0.1:$UP" --app-name custos-test --hostname audit-host \
  --facility 16 <"$T/records" 2>&1) || true
check_contains "udp: all delivered" "failures=0" "$out"
wait_lines "$T/udp.log" "$N" || true
verify "udp" "$T/udp.log"

# TCP with octet counting, two batches (one connection kept)
out=$("$SEND" --type syslog --address "tcp://127.0.0.1:$TP" --app-name custos-test --hostname audit-host \
  --batch 4 <"$T/records" 2>&1) || true
check_contains "tcp: all delivered" "failures=0" "$out"
wait_lines "$T/tcp.log" "$N" || true
verify "tcp" "$T/tcp.log"

# across_restart NAME URI LOG [ARGS...]: delivers the records in batches of 3 with pauses, restarting the collector
# after the first batch: the closed connection is noticed and replaced before the next batch, nothing is lost.
across_restart() {
  local name=$1 uri=$2 log=$3 before
  shift 3
  before=$(wc -l <"$log")
  "$SEND" --type syslog --address "$uri" --app-name custos-test --hostname audit-host --batch 3 \
    --pause-ms 2500 --retries 50 --retry-ms 200 "$@" <"$T/records" >"$T/$name.out" 2>&1 &
  SEND_PID=$!
  PIDS+=($SEND_PID)
  wait_lines "$log" $((before + 3)) || true
  kill -TERM "$RS_PID"
  wait_exit "$RS_PID" 10
  start_rsyslog
  wait_exit "$SEND_PID" 30
  check "$name: audit_send delivered everything" 0 "$EXIT_RC"
  wait_lines "$log" $((before + N)) || true
  tail -n +$((before + 1)) "$log" >"$T/$name.log"
  verify "$name" "$T/$name.log"
}
across_restart "tcp across a collector restart" "tcp://127.0.0.1:$TP" "$T/tcp.log"

# TLS, peer verified against the collector's certificate (IP SAN 127.0.0.1)
out=$("$SEND" --type syslog --address "tls://127.0.0.1:$SP" --ca "$T/srv.crt" --app-name custos-test \
  --hostname audit-host --batch 3 <"$T/records" 2>&1) || true
check_contains "tls: all delivered" "failures=0" "$out"
wait_lines "$T/tls.log" "$N" || true
verify "tls" "$T/tls.log"
# ... by hostname too (DNS SAN localhost)
printf '{"v":1,"seq":99}\n' | "$SEND" --type syslog --address "tls://localhost:$SP" --ca "$T/srv.crt" \
  --app-name custos-test --hostname audit-host >"$T/tls-name.out" 2>&1 || true
check_contains "tls by host name: delivered" "failures=0" "$(cat "$T/tls-name.out")"
# wait for that record to land before the next test counts lines (rsyslog writes asynchronously)
wait_lines "$T/tls.log" $((N + 1)) || true

across_restart "tls across a collector restart" "tls://127.0.0.1:$SP" "$T/tls.log" --ca "$T/srv.crt"

# TLS with a CA that did not sign the collector's certificate: deliver fails, nothing arrives
before=$(wc -l <"$T/tls.log")
out=$(printf '{"v":1,"seq":100}\n' | "$SEND" --type syslog --address "tls://127.0.0.1:$SP" --ca "$T/other.crt" \
  --retries 1 --retry-ms 50 2>&1) && rc=0 || rc=$?
check "tls with a wrong CA: audit_send fails" 1 "$rc"
check_contains "tls with a wrong CA: deliver reports an error" "deliver failed" "$out"
check_contains "tls with a wrong CA: verification named in the log" "certificate verification failed" "$out"
sleep 0.3
check "tls with a wrong CA: nothing delivered" "$before" "$(wc -l <"$T/tls.log")"

# TCP to a closed port: deliver fails (the framework keeps the records)
CP=$(free_port)
out=$(printf '{"v":1}\n' | "$SEND" --type syslog --address "tcp://127.0.0.1:$CP" --timeout-ms 1000 2>&1) && rc=0 || rc=$?
check "tcp to a closed port: deliver fails" 1 "$rc"

# bad facility is a config error at open
out=$(printf '{"v":1}\n' | "$SEND" --type syslog --address "udp://127.0.0.1:$UP" --facility 24 2>&1) && rc=0 || rc=$?
check_contains "facility out of range refused at open" "open failed" "$out"

if grep -qiE 'error|fail' "$T/rsyslogd.log"; then
  echo "rsyslogd said:"; cat "$T/rsyslogd.log"
fi
finish
