#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# 10,000 idle client connections: custos keeps serving, its memory grows by less than 10 KiB per
# connection, and the custos_client_connections gauge counts them.
source "$(dirname "$0")/lib.sh"

NCONN=10000
want=30000
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=$want
[ "$hard" -lt "$want" ] && want=$hard
if [ "$want" -lt $((NCONN + 200)) ]; then
  echo "skipping: the open-files hard limit ($hard) is below $((NCONN + 200)); raise it to run this test"
  ok "skipped: open-files hard limit $hard too low"
  finish
  exit $?
fi
ulimit -n "$want"
echo "# ulimit -n $(ulimit -n)"

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --quiet
basic_config "$GP" "$MP" "limits:
  max_connections: 20000
  header_timeout_ms: 300000
  idle_timeout_ms: 300000"
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
AUTH=(-H "authorization: Bearer $KEY")
JSON=(-H 'content-type: application/json')
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$CUSTOS_PID/status"; }
gauge() {
  curl -sS --max-time 10 "$U/metrics" | awk '$1 == "custos_client_connections" {print $2}' || true
}

# warm up: a few requests so per-thread allocations happen before the baseline
for i in 1 2 3 4 5 6; do
  st=$(req "warm$i" "${AUTH[@]}" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
done
check "warm-up request -> 200" 200 "$st"
sleep 1.2
rss0=$(rss_kb)
echo "# custos RSS before: ${rss0} KiB"

# open NCONN idle connections (non-blocking connects, wait until all are established)
python3 - "$GP" "$NCONN" "$T/conns.ready" <<'PY' &
import selectors, socket, sys, time, signal
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
socks, pending = [], set()
sel = selectors.DefaultSelector()
deadline = time.monotonic() + 40
opened = 0
while opened < n or pending:
    # keep at most 2000 handshakes in flight so the accept queues never overflow
    while opened < n and len(pending) < 2000:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
        pending.add(s)
        sel.register(s, selectors.EVENT_WRITE)
        opened += 1
    for key, _ in sel.select(timeout=1.0):
        s = key.fileobj
        sel.unregister(s)
        pending.discard(s)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            print("connect error", err, file=sys.stderr)
            sys.exit(1)
    if time.monotonic() > deadline:
        print("timed out with", len(pending), "pending", file=sys.stderr)
        sys.exit(1)
with open(ready + ".tmp", "w") as f:
    f.write(str(len(socks)))
import os
os.rename(ready + ".tmp", ready)
time.sleep(300)
PY
HOLD_PID=$!
PIDS+=("$HOLD_PID")
deadline=$(( $(date +%s) + 50 ))
until [ -f "$T/conns.ready" ] || ! kill -0 "$HOLD_PID" 2>/dev/null || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.1; done
check "opened $NCONN idle connections" "$NCONN" "$(cat "$T/conns.ready" 2>/dev/null || echo none)"

# the gauge is published once per second per worker; wait until every connection is accepted
deadline=$(( $(date +%s) + 20 ))
g=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 2
  g=$(gauge)
  [ "${g:-0}" -ge "$NCONN" ] 2>/dev/null && break
done
[ "${g:-0}" -ge "$NCONN" ] 2>/dev/null && ok "custos_client_connections >= $NCONN ($g)" ||
  fail "custos_client_connections >= $NCONN" "gauge reads '$g'"

st=$(req during "${AUTH[@]}" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "normal request with $NCONN idle connections open -> 200" 200 "$st"
st=$(req during_stream "${AUTH[@]}" "${JSON[@]}" -d "$STREAM_BODY" "$U/v1/chat/completions")
check "streamed request with $NCONN idle connections open -> 200" 200 "$st"

rss1=$(rss_kb)
echo "# custos RSS after: ${rss1} KiB"
per=$(( (rss1 - rss0) * 1024 / NCONN ))
echo "$NCONN idle connections: RSS +$(( (rss1 - rss0) / 1024 )) MiB, $per bytes/conn (build: ${CUSTOS_BIN})" | tee "$T/idle-rss.txt"
[ "$per" -lt 10240 ] && ok "memory per idle connection < 10 KiB ($per bytes)" ||
  fail "memory per idle connection < 10 KiB" "$per bytes"

# let them go: the gauge falls back and custos keeps serving
kill "$HOLD_PID" 2>/dev/null || true
wait "$HOLD_PID" 2>/dev/null || true
deadline=$(( $(date +%s) + 20 ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 1.5
  g=$(gauge)
  [ "${g:-99999}" -lt 10 ] 2>/dev/null && break
done
[ "${g:-99999}" -lt 10 ] 2>/dev/null && ok "connections released (gauge $g)" || fail "connections released" "gauge reads '$g'"
st=$(req after "${AUTH[@]}" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "request after the idle connections closed -> 200" 200 "$st"
stop_custos_clean

finish
