#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# OIDC bearer tokens end to end against tests/tools/test_idp (HTTPS on loopback, keys via discovery): every
# algorithm reaches the mock, a negative matrix answers 401, an unknown kid triggers exactly one JWKS refetch
# per min_refetch_s, rotation is picked up, cached keys keep working while the IdP is down; and upstream
# credentials: a static bearer token and an OAuth2 client-credentials token (fetched once, cached).
source "$(dirname "$0")/lib.sh"

: "${CUSTOS_TOOLS:=$CUSTOS_SRC/build/tools}"
IDP_BIN=$CUSTOS_TOOLS/test_idp
CHAT='{"messages":[{"role":"user","content":"hi"}]}'

make_cert idp
"$IDP_BIN" --cert "$T/idp.crt" --key "$T/idp.key" --port 0 --port-file "$T/idp.port" \
  --client-id custos-up --client-secret up-secret --access-token oauth-upstream-token >"$T/idp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -s "$T/idp.port" ] && break; sleep 0.05; done
IP=$(cat "$T/idp.port")
ISS="https://127.0.0.1:$IP"
idp() { curl -sS --max-time 5 --cacert "$T/idp.crt" "$ISS$1"; }
stat() { idp /admin/stats | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
# wait_stat NAME MIN: waits (up to 10 s) until the IdP counter NAME reaches MIN
wait_stat() {
  for _ in $(seq 1 200); do [ "$(stat "$1")" -ge "$2" ] && return 0; sleep 0.05; done
  return 1
}

MP=$(free_port)   # backend: plain mock (no auth)
MB=$(free_port)   # backend: requires the static bearer
MO=$(free_port)   # backend: requires the OAuth2 token
GP=$(free_port)
start_mock "$MP" --quiet
start_mock "$MB" --quiet --api-key static-bearer-1
start_mock "$MO" --quiet --api-key oauth-upstream-token
printf '%s' "$KEY" >"$T/key"
export CUSTOS_TEST_UP_BEARER=static-bearer-1 CUSTOS_TEST_UP_SECRET=up-secret CUSTOS_TEST_BAD_SECRET=wrong
cat >"$T/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 2000}
limits: {max_header_bytes: 65536} # so that the token cap (16 KiB), not the header cap, refuses big tokens
listeners:
  - address: "127.0.0.1:$GP"
identity:
  api_keys:
    - {name: test, key_file: key}
  oidc:
    - issuer: "$ISS"
      audience: ["api://custos", "https://cognitiveservices.azure.com"]
      ca_file: idp.crt
      min_refetch_s: 3
  role_map:
    Inference.User: inference.user
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MP"}
  - name: bearer
    provider: openai
    url: "http://127.0.0.1:$MB"
    auth: {bearer_env: CUSTOS_TEST_UP_BEARER}
  - name: oauth
    provider: openai
    url: "http://127.0.0.1:$MO"
    auth:
      oauth2:
        token_url: "$ISS/oauth2/token"
        client_id: custos-up
        client_secret_env: CUSTOS_TEST_UP_SECRET
        scope: "api://upstream/.default"
        ca_file: idp.crt
  - name: oauthbad
    provider: openai
    url: "http://127.0.0.1:$MO"
    auth:
      oauth2: {token_url: "$ISS/oauth2/token", client_id: custos-up, client_secret_env: CUSTOS_TEST_BAD_SECRET, ca_file: idp.crt}
deployments:
  - {name: demo, model: gpt-4o-mini, type: global, backends: [mock]}
  - {name: viaoauthbad, model: gpt-4o-mini, type: global, backends: [oauthbad]}
  - {name: viabearer, model: gpt-4o-mini, type: global, backends: [bearer]}
  - {name: viaoauth, model: gpt-4o-mini, type: global, backends: [oauth]}
YAML
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"

# call NAME TOKEN [DEPLOYMENT]: chat completion with the bearer token; prints the status
call() {
  req "$1" -H "authorization: Bearer $2" -H 'content-type: application/json' \
    -d "{\"model\":\"${3:-demo}\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" "$U/v1/chat/completions"
}
tok() { idp "/token?roles=Inference.User&$1"; }

check "startup fetched keys through discovery" 1 "$(stat discovery)"
check "startup fetched the JWKS once" 1 "$(stat jwks)"

# --- every algorithm reaches the backend ---
before=$(mock_requests "$MP")
for alg in RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA; do
  check "$alg token -> 200" 200 "$(call "ok_$alg" "$(tok "alg=$alg&oid=o-$alg")")"
done
check "the mock saw the 9 requests" $((before + 9)) "$(mock_requests "$MP")"
check "aud array with one accepted value -> 200" 200 \
  "$(call aud_arr "$(tok 'aud=x,https://cognitiveservices.azure.com')")"
check "API keys still work next to tokens" 200 "$(call apikey "$KEY")"

# --- negative matrix: all 401, nothing reaches the backend ---
before=$(mock_requests "$MP")
neg() { check "$1 -> 401" 401 "$(call "neg_$1" "$2")"; }
neg expired "$(tok 'exp_in=-120')"
neg not_yet_valid "$(tok 'nbf_in=600')"
neg issued_in_future "$(tok 'iat_in=600')"
neg wrong_issuer "$(tok 'iss=https://evil.example')"
neg wrong_audience "$(tok 'aud=api://other')"
neg bad_signature "$(tok 'tamper=1')"
neg alg_none "$(tok 'alg=none')"
neg rs256_key_as_hs256_secret "$(tok 'alg=HS256')"
neg crit_header "$(tok 'crit=1')"
neg missing_exp "$(tok 'no_exp=1')"
neg oversized "$(tok 'pad=20000')"
neg garbage_jwt_shape "eyJhbGciOiJSUzI1NiJ9.eyJ.AAAA"
check "401 body is Azure's shape" "401" "$(jfield "$T/neg_expired.body" error.code)"
check "no rejected token reached the backend" "$before" "$(mock_requests "$MP")"

# --- unknown kid: one refetch per min_refetch_s, then 401 ---
sleep 3 # past min_refetch_s since startup
j0=$(stat jwks)
neg unknown_kid "$(tok 'kid=no-such-key')"
wait_stat jwks $((j0 + 1)) || true
neg unknown_kid_again "$(tok 'kid=no-such-key')"
neg unknown_kid_third "$(tok 'kid=no-such-key')"
sleep 0.5
check "unknown kid: exactly one JWKS refetch" $((j0 + 1)) "$(stat jwks)"

# --- rotation: a token signed with new keys works once they are published and refetched ---
idp /admin/stage >/dev/null
staged=$(tok 'key=staged&alg=ES256')
neg staged_key_not_published "$staged"
idp /admin/publish >/dev/null
sleep 3
j1=$(stat jwks)
call rot1 "$staged" >/dev/null # unknown kid → refetch
wait_stat jwks $((j1 + 1)) || true
st=000
for _ in $(seq 1 50); do st=$(call rot2 "$staged"); [ "$st" = 200 ] && break; sleep 0.1; done
check "rotated key works after the refetch" 200 "$st"

# --- IdP down: cached keys keep working, refetches fail quietly ---
idp /admin/down >/dev/null
sleep 3
j2=$(stat jwks)
d2=$(stat discovery)
neg unknown_kid_while_down "$(tok 'kid=other-missing')"
for _ in $(seq 1 100); do [ "$(stat discovery)" -gt "$d2" ] && break; sleep 0.05; done
check "a refetch was attempted while down (discovery got 503)" $((d2 + 1)) "$(stat discovery)"
check "jwks not reached while down" "$j2" "$(stat jwks)"
check "cached keys still work while the IdP is down" 200 "$(call down_ok "$(tok 'alg=ES256')")"
check "cached EdDSA key too" 200 "$(call down_ok2 "$(tok 'alg=EdDSA')")"
grep -q "fetching keys failed" "$T/custos.log" && ok "failed refetch logged" || fail "failed refetch logged" "no log line"
idp /admin/up >/dev/null

# --- upstream credentials ---
check "static bearer backend -> 200" 200 "$(call up_bearer "$KEY" viabearer)"
check "oauth2 backend -> 200" 200 "$(call up_oauth "$KEY" viaoauth)"
check "oauth2 backend again -> 200" 200 "$(call up_oauth2 "$KEY" viaoauth)"
check "oauth2 token fetched once and cached" 1 "$(stat oauth2_issued)"
before=$(mock_requests "$MO")
check "oauth2 backend whose client secret is refused -> 503" 503 "$(call up_oauthbad "$KEY" viaoauthbad)"
check_contains "503 names the missing credential" "no upstream credential" "$(cat "$T/up_oauthbad.body")"
check "nothing was sent without a credential" "$before" "$(mock_requests "$MO")"
grep -q "oauth2: token for client custos-up .* failed" "$T/custos.log" && ok "token failure logged" ||
  fail "token failure logged" "no log line"

# --- the openai npm client's Azure form with an AD token provider (skipped without node >= 20 / the package) ---
E2E=$CUSTOS_SRC/tests/e2e
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] &&
  [ -f "$E2E/node_modules/openai/package.json" ]; then
  rc=0
  (cd "$E2E" && CUSTOS_URL="$U" IDP_URL="$ISS" NODE_EXTRA_CA_CERTS="$T/idp.crt" \
    timeout 60 node --test --test-reporter=spec openai_ad_token.mjs) >"$T/node.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then ok "openai SDK AzureOpenAI with azureADTokenProvider"; else
    fail "openai SDK AzureOpenAI with azureADTokenProvider" "node exited $rc"; cat "$T/node.log"; fi
else
  echo "# skipped: openai SDK with azureADTokenProvider (needs node >= 20 and tests/e2e/node_modules; see openai_sdk.sh)"
fi

# --- no token or secret in the log ---
if grep -q "eyJ" "$T/custos.log" || grep -q "up-secret\|static-bearer-1\|oauth-upstream-token" "$T/custos.log"; then
  fail "no tokens or secrets in the log" "found in $T/custos.log"
else
  ok "no tokens or secrets in the log"
fi

finish
