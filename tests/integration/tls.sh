#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# TLS listeners: https with curl, protocol floor (1.1 refused, 1.2 allowed, min_version 1.3), ALPN,
# certificate reload on SIGHUP, and the plain-HTTP-on-a-public-address rule at config check.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
GP=$(free_port)   # min_version 1.2 (default)
GP3=$(free_port)  # min_version 1.3
start_mock "$MP" --quiet
make_cert_cn srv first-cert
printf '%s' "$KEY" >"$T/key"
tls_config() { # FILE PORT EXTRA_TLS
  cat >"$1" <<YAML
server: {workers: 2, drain_timeout_ms: 5000}
limits: {header_timeout_ms: 1500}
listeners:
  - address: "127.0.0.1:$2"
    tls: {cert: srv.crt, key: srv.key$3}
identity:
  api_keys:
    - {name: test, key_file: key}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, model: gpt-4o-mini, type: global, backends: [mock]}
YAML
}
tls_config "$T/tls12.yaml" "$GP" ""
tls_config "$T/tls13.yaml" "$GP3" ', min_version: "1.3"'
start_custos "$T/tls12.yaml" "$GP"
PID12=$CUSTOS_PID
start_custos "$T/tls13.yaml" "$GP3"
U="https://127.0.0.1:$GP"

# s_client PORT ARGS...: one handshake; output in $T/sc.out; returns openssl's status.
s_client() {
  local port=$1
  shift
  timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername localhost "$@" </dev/null >"$T/sc.out" 2>&1
}
subject() { # PORT -> the served certificate's subject
  timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -noout -subject 2>/dev/null || true
}

# --- https with curl ---
st=$(req https --cacert "$T/srv.crt" -H "authorization: Bearer $KEY" -H 'content-type: application/json' \
  -d "$CHAT_BODY" "$U/v1/chat/completions")
check "https chat with --cacert -> 200" 200 "$st"
st=$(req https_health --cacert "$T/srv.crt" "https://localhost:$GP/healthz")
check "https by host name localhost -> 200" 200 "$st"
st=$(req https_noca "$U/healthz")
check "https without trusting the cert: curl refuses (exit 60)" 60 "$(cat "$T/https_noca.rc")"
st=$(req plain_on_tls "http://127.0.0.1:$GP/healthz")
[ "$st" = 000 ] && ok "plain HTTP to the TLS port: no HTTP answer" || fail "plain HTTP to the TLS port" "status $st"
got=$(raw_http "$GP" "GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" --tls)
check "raw request over TLS -> 200" "200 OPEN" "$got"

# --- a client that never finishes the handshake is dropped after header_timeout_ms (1500) ---
res=$(python3 - "$GP" <<'PY'
import socket, sys, time
out = []
for hello in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):  # nothing / a truncated ClientHello
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=8)
    t0 = time.monotonic()
    s.sendall(hello)
    try:
        d = s.recv(100)
        out.append("closed" if not d else "data")
    except socket.timeout:
        out.append("open")
    except OSError:
        out.append("closed")
    out.append("%.1f" % (time.monotonic() - t0))
print(" ".join(out))
PY
)
read -r st1 t1 st2 t2 <<<"$res"
check "TLS port, silent client: closed" closed "$st1"
check "TLS port, truncated ClientHello: closed" closed "$st2"
python3 -c "import sys; sys.exit(0 if max(float('$t1'), float('$t2')) <= 5 else 1)" &&
  ok "TLS handshake timeout within 5 s (${t1}s, ${t2}s)" || fail "TLS handshake timeout within 5 s" "${t1}s, ${t2}s"

# --- protocol floor ---
# SECLEVEL=0 lets the client itself offer TLS 1.1, so a failure is the server's refusal.
if s_client "$GP" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'; then
  fail "TLS 1.1 refused" "handshake succeeded: $(grep -m1 Protocol "$T/sc.out")"
else
  ok "TLS 1.1 refused"
  grep -qi 'alert protocol version' "$T/sc.out" &&
    ok "TLS 1.1: refused for its protocol version" || fail "TLS 1.1: refusal reason" "$(tail -3 "$T/sc.out")"
fi
s_client "$GP" -tls1_2 && ok "TLS 1.2 accepted" || fail "TLS 1.2 accepted" "$(tail -3 "$T/sc.out")"
check_contains "TLS 1.2 negotiated" "TLSv1.2" "$(grep -m1 -E 'Protocol *:' "$T/sc.out" || true)"
s_client "$GP" -tls1_3 && ok "TLS 1.3 accepted" || fail "TLS 1.3 accepted" "$(tail -3 "$T/sc.out")"
if s_client "$GP3" -tls1_2; then
  fail "min_version 1.3: TLS 1.2 refused" "handshake succeeded"
else
  ok "min_version 1.3: TLS 1.2 refused"
fi
s_client "$GP3" -tls1_3 && ok "min_version 1.3: TLS 1.3 accepted" || fail "min_version 1.3: TLS 1.3 accepted" "$(tail -3 "$T/sc.out")"
st=$(req https13 --cacert "$T/srv.crt" "https://127.0.0.1:$GP3/healthz")
check "min_version 1.3: curl -> 200" 200 "$st"

# --- ALPN ---
s_client "$GP" -alpn h2,http/1.1 || true
check_contains "ALPN h2,http/1.1 -> http/1.1" "ALPN protocol: http/1.1" "$(cat "$T/sc.out")"
s_client "$GP" -alpn h2 || true
check_contains "ALPN h2 only -> none negotiated" "No ALPN negotiated" "$(cat "$T/sc.out")"
rc=0
curl -sS --max-time 10 --http2 --cacert "$T/srv.crt" -o /dev/null -w '%{http_version}' "$U/healthz" >"$T/h2.out" 2>&1 || rc=$?
check "curl --http2 falls back to HTTP/1.1" "0 1.1" "$rc $(cat "$T/h2.out")"

# --- certificate reload on SIGHUP ---
check_contains "serving the first certificate" "CN = first-cert" "$(subject "$GP")"
make_cert_cn new second-cert
cp "$T/new.crt" "$T/srv.crt"
cp "$T/new.key" "$T/srv.key"
n=$(grep -c 'reload: configuration' "$T/custos.log" || true)
kill -HUP "$PID12"
deadline=$(( $(date +%s) + 10 ))
while [ "$(grep -c 'reload: configuration' "$T/custos.log" || true)" -le "$n" ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 0.05
done
check_contains "after SIGHUP: new connections see the new certificate" "CN = second-cert" "$(subject "$GP")"
st=$(req https_after --cacert "$T/srv.crt" "$U/healthz")
check "after reload: curl trusting the new cert -> 200" 200 "$st"
# a broken certificate on reload keeps the current one
echo "not a certificate" >"$T/srv.crt"
kill -HUP "$PID12"
wait_log "reload: .*keeping" "$T/custos.log" 10 && ok "broken certificate on reload: logged and kept" ||
  fail "broken certificate on reload: logged" "$(tail -3 "$T/custos.log")"
check_contains "broken certificate on reload: still serving second-cert" "CN = second-cert" "$(subject "$GP")"
cp "$T/new.crt" "$T/srv.crt"

# --- plain HTTP on a public address needs insecure: true ---
cat >"$T/public.yaml" <<YAML
listeners:
  - address: "0.0.0.0:$GP"
identity:
  api_keys:
    - {name: test, key_file: key}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, type: global, backends: [mock]}
YAML
rc=0
"$CUSTOS_BIN" config check "$T/public.yaml" >"$T/public.out" 2>&1 || rc=$?
check "plain HTTP on 0.0.0.0 without insecure: config check exit 1" 1 "$rc"
check_contains "plain HTTP on 0.0.0.0: clear message" "plain HTTP on a non-loopback address needs insecure: true" "$(cat "$T/public.out")"
check_contains "plain HTTP on 0.0.0.0: FILE:LINE:COL" "$T/public.yaml:2:" "$(cat "$T/public.out")"
sed -i 's/address: "0.0.0.0:[0-9]*"/&\n    insecure: true/' "$T/public.yaml"
rc=0
"$CUSTOS_BIN" config check "$T/public.yaml" >"$T/public2.out" 2>&1 || rc=$?
check "plain HTTP on 0.0.0.0 with insecure: true: accepted" 0 "$rc"

kill -0 "$PID12" 2>/dev/null && ok "custos (TLS) still running" || fail "custos (TLS) still running" "exited"
stop_custos_clean "$PID12"
stop_custos_clean

finish
