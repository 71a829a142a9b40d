#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Mutual TLS: a listener with tls.client_ca requires a client certificate that chains to that CA
# (no certificate or one from another CA: the handshake is refused); a verified certificate's SAN URI /
# subject maps to a workload principal (identity.client_certificates), visible in
# custos_mtls_requests_total{principal}; the certificate itself is never logged.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
GP=$(free_port)
start_mock "$MP" --quiet
make_cert srv
printf '%s' "$KEY" >"$T/key"

# ca NAME: a CA certificate and key.  leaf CA NAME SUBJ SAN: a client certificate signed by CA.
ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$T/$1.key" -out "$T/$1.crt" >/dev/null 2>&1
}
leaf() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$3" \
    -keyout "$T/$2.key" -out "$T/$2.csr" >/dev/null 2>&1
  printf 'subjectAltName=%s\nextendedKeyUsage=clientAuth\n' "$4" >"$T/$2.ext"
  openssl x509 -req -in "$T/$2.csr" -CA "$T/$1.crt" -CAkey "$T/$1.key" -CAcreateserial -days 2 \
    -extfile "$T/$2.ext" -out "$T/$2.crt" >/dev/null 2>&1
}
ca goodca
ca evilca
leaf goodca app1 "/O=Example/CN=app1" "URI:spiffe://example.org/ns/test/sa/app1,DNS:app1.example.org"
leaf goodca batch "/O=Example/CN=batch" "DNS:batch.example.org"
leaf goodca stranger "/O=Example/CN=stranger" "DNS:stranger.example.org"
leaf evilca forged "/O=Example/CN=app1" "URI:spiffe://example.org/ns/test/sa/app1"

cat >"$T/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 2000}
listeners:
  - address: "127.0.0.1:$GP"
    tls: {cert: srv.crt, key: srv.key, client_ca: goodca.crt}
identity:
  api_keys:
    - {name: test, key_file: key}
  client_certificates:
    - {san_uri: "spiffe://example.org/ns/test/sa/app1", principal: wl-app1}
    - {subject: "CN=batch,O=Example", principal: wl-batch, roles: [auditor]}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, model: gpt-4o-mini, type: global, backends: [mock]}
YAML
start_custos "$T/custos.yaml" "$GP"
U="https://127.0.0.1:$GP"
chat() { # NAME [CURL ARGS...]
  local name=$1
  shift
  req "$name" --cacert "$T/srv.crt" -H "api-key: $KEY" -H 'content-type: application/json' -d "$CHAT_BODY" "$@" \
    "$U/v1/chat/completions"
}

before=$(mock_requests "$MP")
check "no client certificate: no HTTP answer" 000 "$(chat nocert)"
check "certificate from another CA: no HTTP answer" 000 "$(chat forged --cert "$T/forged.crt" --key "$T/forged.key")"
check "the backend saw nothing from refused clients" "$before" "$(mock_requests "$MP")"
check "verified certificate (SAN URI mapped) -> 200" 200 "$(chat app1 --cert "$T/app1.crt" --key "$T/app1.key")"
check "verified certificate (subject mapped) -> 200" 200 "$(chat batch --cert "$T/batch.crt" --key "$T/batch.key")"
check "verified but unmapped certificate -> 200 (keys still authenticate)" 200 \
  "$(chat stranger --cert "$T/stranger.crt" --key "$T/stranger.key")"
if timeout 10 openssl s_client -connect "127.0.0.1:$GP" -servername localhost -CAfile "$T/srv.crt" </dev/null \
  >"$T/sc.out" 2>&1 && grep -q "Acceptable client certificate CA names" "$T/sc.out"; then
  ok "server asks for a client certificate and names its CA"
else
  grep -q "Acceptable client certificate CA names" "$T/sc.out" && ok "server asks for a client certificate and names its CA" ||
    fail "CertificateRequest" "$(head -c 400 "$T/sc.out")"
fi
check_contains "the CA named is goodca" "CN = goodca" "$(cat "$T/sc.out")"

st=$(req metrics --cacert "$T/srv.crt" --cert "$T/app1.crt" --key "$T/app1.key" "$U/metrics")
check "metrics over mTLS" 200 "$st"
m=$(cat "$T/metrics.body")
check_contains "principal wl-app1 counted (chat + this scrape)" 'custos_mtls_requests_total{principal="wl-app1"} 2' "$m"
check_contains "principal wl-batch counted" 'custos_mtls_requests_total{principal="wl-batch"} 1' "$m"
check_contains "unmapped certificate counted" 'custos_mtls_requests_total{principal="_unmapped"} 1' "$m"
if grep -q "BEGIN CERTIFICATE\|spiffe://" "$T/custos.log"; then fail "certificates are never logged"; else ok "certificates are never logged"; fi

# config check: an unreadable client_ca is refused with its position
sed "s|client_ca: goodca.crt|client_ca: missing.crt|" "$T/custos.yaml" >"$T/bad.yaml"
out=$("$CUSTOS_BIN" config check "$T/bad.yaml" 2>&1 || true)
check_contains "missing client_ca refused at load" "bad.yaml:4:51: listeners[0].tls.client_ca: cannot read" "$out"

stop_custos_clean
finish
