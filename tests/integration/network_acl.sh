#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Network ACL, evaluated before anything else: public_network_access disabled admits loopback;
# default_action deny answers Azure's 403 (exact body, policy-id) before authentication and without
# reaching the backend; X-Forwarded-For / Forwarded are believed only from trusted_proxies (rightmost
# untrusted hop wins, spoofing from an untrusted peer is ignored, malformed headers fall back to the
# peer and are counted); an IPv6 listener with an IPv6 rule.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)
start_mock "$MP" --quiet
printf '%s' "$KEY" >"$T/key"
DENY_BODY='{"error":{"code":"403","message":"Access denied due to Virtual Network/Firewall rules."}}'

# cfg FILE NETWORK_YAML LISTENERS_YAML (each instance gets its own directory: state files live next to the config)
cfg() {
  mkdir -p "$(dirname "$1")"
  cp "$T/key" "$(dirname "$1")/key"
  cat >"$1" <<YAML
server: {workers: 2, drain_timeout_ms: 2000}
listeners:
$3
identity:
  api_keys:
    - {name: test, key_file: key}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
deployments:
  - {name: demo, model: gpt-4o-mini, type: global, backends: [mock]}
network:
$2
YAML
}
chat() { # NAME URL [CURL ARGS...] -> status
  local name=$1 url=$2
  shift 2
  req "$name" -H "api-key: $KEY" -H 'content-type: application/json' -d "$CHAT_BODY" "$@" "$url/v1/chat/completions"
}
metric() { # FILE NAME -> value (0 if absent)
  awk -v n="$2" '$1 == n { print $2; found=1 } END { if (!found) print 0 }' "$1"
}

# --- A: public access disabled admits private ranges: loopback is in ---
PA=$(free_port)
cfg "$T/a/a.yaml" "  public_network_access: disabled" "  - address: \"127.0.0.1:$PA\""
start_custos "$T/a/a.yaml" "$PA"
check "disabled: loopback client admitted (200)" 200 "$(chat a_ok "http://127.0.0.1:$PA")"
check "disabled: authentication still runs after the ACL (401 without a key)" 401 \
  "$(req a_nokey -H 'content-type: application/json' -d "$CHAT_BODY" "http://127.0.0.1:$PA/v1/chat/completions")"

# --- B: enabled + deny + ip_rules 10.1.2.3, no trusted proxies: loopback refused before auth ---
PB=$(free_port)
cfg "$T/b/b.yaml" '  public_network_access: enabled
  default_action: deny
  ip_rules: ["10.1.2.3"]' "  - address: \"127.0.0.1:$PB\""
start_custos "$T/b/b.yaml" "$PB"
before=$(mock_requests "$MP")
check "deny: loopback with a valid key -> 403" 403 "$(chat b_key "http://127.0.0.1:$PB")"
check "deny: exact Azure body" "$DENY_BODY" "$(cat "$T/b_key.body")"
check "deny: policy-id header" "ThrowExceptionDueToTrafficDenied" "$(hdr b_key policy-id)"
check "deny: content-type json" "application/json" "$(hdr b_key content-type)"
check "deny: no key needed to get 403 (before authentication)" 403 \
  "$(req b_nokey -H 'content-type: application/json' -d "$CHAT_BODY" "http://127.0.0.1:$PB/v1/chat/completions")"
check "deny: body of the key-less 403" "$DENY_BODY" "$(cat "$T/b_nokey.body")"
check "deny: spoofed X-Forwarded-For from an untrusted peer is ignored" 403 \
  "$(chat b_spoof "http://127.0.0.1:$PB" -H 'X-Forwarded-For: 10.1.2.3')"
check "deny: spoofed Forwarded from an untrusted peer is ignored" 403 \
  "$(chat b_spoof2 "http://127.0.0.1:$PB" -H 'Forwarded: for=10.1.2.3')"
check "deny: unknown routes are refused too (before routing)" 403 "$(req b_404 "http://127.0.0.1:$PB/nope")"
check "deny: the backend never saw a request" "$before" "$(mock_requests "$MP")"
got=$(raw_http "$PB" "GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" --expect 2)
check "deny: keep-alive connection stays usable after a 403" "403 403 OPEN" "$got"

# --- C: trusted proxy on loopback; rules 10.1.2.3 and 2001:db8::/32 ---
PC=$(free_port)
cfg "$T/c/c.yaml" '  default_action: deny
  ip_rules: ["10.1.2.3", "2001:db8::/32"]
  trusted_proxies: ["127.0.0.1/32", "::1"]' "  - address: \"127.0.0.1:$PC\""
start_custos "$T/c/c.yaml" "$PC"
U="http://127.0.0.1:$PC"
check "proxy: XFF 10.1.2.3 from a trusted proxy -> admitted" 200 "$(chat c1 "$U" -H 'X-Forwarded-For: 10.1.2.3')"
check "proxy: XFF 203.0.113.5 -> 403" 403 "$(chat c2 "$U" -H 'X-Forwarded-For: 203.0.113.5')"
check "proxy: rightmost untrusted hop wins (10.1.2.3, 203.0.113.5) -> 403" 403 \
  "$(chat c3 "$U" -H 'X-Forwarded-For: 10.1.2.3, 203.0.113.5')"
check "proxy: client-supplied left part ignored (203.0.113.5, 10.1.2.3) -> 200" 200 \
  "$(chat c4 "$U" -H 'X-Forwarded-For: 203.0.113.5, 10.1.2.3')"
check "proxy: trusted hops skipped (10.1.2.3, 127.0.0.1) -> 200" 200 \
  "$(chat c5 "$U" -H 'X-Forwarded-For: 10.1.2.3, 127.0.0.1')"
check "proxy: Forwarded for=\"[2001:db8::1]\" -> 200" 200 "$(chat c6 "$U" -H 'Forwarded: for="[2001:db8::1]"')"
check "proxy: Forwarded for=\"[2001:db9::1]:4711\" -> 403" 403 \
  "$(chat c7 "$U" -H 'Forwarded: for="[2001:db9::1]:4711";proto=http')"
check "proxy: malformed XFF -> the proxy's own address -> 403" 403 "$(chat c8 "$U" -H 'X-Forwarded-For: garbage')"
check "proxy: Forwarded for=unknown -> the proxy's own address -> 403" 403 \
  "$(chat c9 "$U" -H 'Forwarded: for=unknown')"
check "proxy: no forwarding header -> the proxy itself (not in ip_rules) -> 403" 403 "$(chat c10 "$U")"
st=$(req c_metrics -H 'X-Forwarded-For: 10.1.2.3' "$U/metrics")
check "metrics reachable through the admitted address" 200 "$st"
check "custos_network_denied_total counts the 403s" 6 "$(metric "$T/c_metrics.body" custos_network_denied_total)"
check "custos_network_forwarded_invalid_total counts the malformed headers" 2 \
  "$(metric "$T/c_metrics.body" custos_network_forwarded_invalid_total)"
if grep -q '10\.1\.2\.3\|203\.0\.113' "$T/c_metrics.body"; then fail "no IP addresses in metrics"; else ok "no IP addresses in metrics"; fi

# --- D: IPv6 listener with an IPv6 rule ---
P6=$(free_port)
P4=$(free_port)
cfg "$T/d/d.yaml" '  default_action: deny
  ip_rules: ["::1/128"]' "  - address: \"[::1]:$P6\"
  - address: \"127.0.0.1:$P4\""
start_custos "$T/d/d.yaml" "$P4"
check "ipv6: client ::1 on [::1] admitted by the ::1/128 rule" 200 "$(chat d6 "http://[::1]:$P6")"
check "ipv6: IPv4 loopback client refused" 403 "$(chat d4 "http://127.0.0.1:$P4")"

# --- config errors name the line and column ---
cfg "$T/bad/bad.yaml" '  ip_rules: ["10.0.0.1/8"]' "  - address: \"127.0.0.1:1\""
out=$("$CUSTOS_BIN" config check "$T/bad/bad.yaml" 2>&1 || true)
check_contains "bad CIDR refused with file:line:col" "bad.yaml:12:14: network.ip_rules[0]: '10.0.0.1/8'" "$out"

stop_custos_clean "$CUSTOS_PID"
finish
