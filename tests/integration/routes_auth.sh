#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Routes, methods, client authentication, Azure wire errors, models, health/metrics endpoints,
# request-id headers, and upstream path/credential rewriting for azure and openai backends.
source "$(dirname "$0")/lib.sh"

MP=$(free_port)  # open mock: openai + azure backends
KP=$(free_port)  # mock that enforces an API key
GP=$(free_port)
start_mock "$MP" --quiet
start_mock "$KP" --quiet --api-key upstream-secret
export UPKEY=upstream-secret UPKEY_BAD=not-the-secret
basic_config "$GP" "$MP" "  - name: azdemo
    model: gpt-4o
    type: global
    backends: [az]
  - name: keyed
    type: global
    backends: [keyed-ok]
  - name: badkey
    type: global
    backends: [keyed-bad]"
# add the extra backends (basic_config has one backend list; splice ours in before deployments:)
python3 - "$T/custos.yaml" "$MP" "$KP" <<'PY'
import sys
p, mp, kp = sys.argv[1:]
s = open(p).read()
extra = f"""  - name: az
    provider: azure
    url: "http://127.0.0.1:{mp}"
    api_version: "2024-06-01"
    deployment: up-dep
    auth: {{api_key_env: UPKEY}}
  - name: keyed-ok
    provider: openai
    url: "http://127.0.0.1:{kp}"
    auth: {{api_key_env: UPKEY}}
  - name: keyed-bad
    provider: openai
    url: "http://127.0.0.1:{kp}"
    auth: {{api_key_env: UPKEY_BAD}}
deployments:"""
s = s.replace("deployments:", extra, 1)
open(p, "w").write(s)
PY
"$CUSTOS_BIN" config check "$T/custos.yaml" >"$T/check.out" 2>&1 && ok "config check" ||
  fail "config check" "$(cat "$T/check.out")"
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
AUTH=(-H "authorization: Bearer $KEY")
JSON=(-H 'content-type: application/json')
AZ_401="Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."
AZ_404="The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."

# --- unknown route / wrong method ---
st=$(req nf "${AUTH[@]}" "$U/v2/whatever")
check "unknown route -> 404" 404 "$st"
check_contains "unknown route: JSON error" '"error"' "$(cat "$T/nf.body")"
[ -n "$(jfield "$T/nf.body" error.code)" ] && ok "404: error.code present" || fail "404: error.code present" "$(cat "$T/nf.body")"
st=$(req nf2 "${AUTH[@]}" "$U/openai/deployments/demo/nope?api-version=2024-10-21")
check "unknown Azure operation -> 404" 404 "$st"
st=$(req m405 "${AUTH[@]}" "$U/v1/chat/completions")
check "GET on a POST route -> 405" 405 "$st"
check "405: allow header" POST "$(hdr m405 allow)"
st=$(req m405b "${AUTH[@]}" "${JSON[@]}" -d '{}' "$U/v1/models")
check "POST on a GET route -> 405" 405 "$st"
check "405: allow GET" GET "$(hdr m405b allow)"

# --- client authentication ---
before=$(mock_requests "$MP")
st=$(req nokey "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "missing key -> 401" 401 "$st"
check "401: error.code" 401 "$(jfield "$T/nokey.body" error.code)"
check "401: exact Azure message" "$AZ_401" "$(jfield "$T/nokey.body" error.message)"
st=$(req wrongkey -H 'api-key: wrong-key' "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "wrong key (api-key) -> 401" 401 "$st"
check "wrong key: exact Azure message" "$AZ_401" "$(jfield "$T/wrongkey.body" error.message)"
st=$(req wrongbearer -H 'authorization: Bearer wrong-key' "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "wrong key (bearer) -> 401" 401 "$st"
st=$(req basic -H "authorization: Basic $KEY" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "Basic scheme -> 401" 401 "$st"
st=$(req nokeymodels "$U/v1/models")
check "models without key -> 401" 401 "$st"
st=$(req nokeyunknown "${JSON[@]}" -d '{"model":"nope","messages":[]}' "$U/v1/chat/completions")
check "unknown deployment without key -> 401 (no deployment probing)" 401 "$st"
check "unauthenticated requests not forwarded" "$before" "$(mock_requests "$MP")"
st=$(req apikey -H "api-key: $KEY" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "api-key header -> 200" 200 "$st"
st=$(req bearer "${AUTH[@]}" "${JSON[@]}" -d "$CHAT_BODY" "$U/v1/chat/completions")
check "Authorization: Bearer -> 200" 200 "$st"
check_contains "chat completion body" '"object":"chat.completion"' "$(cat "$T/bearer.body")"

# --- Azure routes ---
AZB='{"messages":[{"role":"user","content":"hello"}]}'
st=$(req aznover "${AUTH[@]}" "${JSON[@]}" -d "$AZB" "$U/openai/deployments/demo/chat/completions")
check "Azure route without api-version -> 400" 400 "$st"
check "missing api-version: code" MissingApiVersionParameter "$(jfield "$T/aznover.body" error.code)"
st=$(req azok -H "api-key: $KEY" "${JSON[@]}" -d "$AZB" "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21")
check "Azure route with api-version -> 200" 200 "$st"
st=$(req azemptyver "${AUTH[@]}" "${JSON[@]}" -d "$AZB" "$U/openai/deployments/demo/chat/completions?api-version=")
check "Azure route with an empty api-version -> 400" 400 "$st"
check "Azure route: model reported" gpt-4o-mini "$(jfield "$T/azok.body" model)"
st=$(req azv1 "${AUTH[@]}" "${JSON[@]}" -d "$CHAT_BODY" "$U/openai/v1/chat/completions")
check "/openai/v1/chat/completions model=demo -> 200" 200 "$st"
st=$(req aznodep "${AUTH[@]}" "${JSON[@]}" -d "$AZB" "$U/openai/deployments/nope/chat/completions?api-version=2024-10-21")
check "unknown deployment (Azure route) -> 404" 404 "$st"
check "unknown deployment: code" DeploymentNotFound "$(jfield "$T/aznodep.body" error.code)"
check "unknown deployment: exact message" "$AZ_404" "$(jfield "$T/aznodep.body" error.message)"
st=$(req oanodep "${AUTH[@]}" "${JSON[@]}" -d '{"model":"nope","messages":[{"role":"user","content":"x"}]}' "$U/v1/chat/completions")
check "unknown deployment (model=) -> 404" 404 "$st"
check "unknown deployment (model=): code" DeploymentNotFound "$(jfield "$T/oanodep.body" error.code)"
st=$(req nomodel "${AUTH[@]}" "${JSON[@]}" -d '{"messages":[{"role":"user","content":"x"}]}' "$U/v1/chat/completions")
check "no model on /v1 -> 400" 400 "$st"
st=$(req badstream "${AUTH[@]}" "${JSON[@]}" -d '{"model":"demo","stream":"yes","messages":[]}' "$U/v1/chat/completions")
check "stream not boolean -> 400" 400 "$st"
st=$(req notobj "${AUTH[@]}" "${JSON[@]}" -d '[1,2]' "$U/v1/chat/completions")
check "JSON array body -> 400" 400 "$st"

# --- models ---
st=$(req models "${AUTH[@]}" "$U/v1/models")
check "GET /v1/models -> 200" 200 "$st"
ids=$(python3 -c 'import json,sys; print(",".join(sorted(m["id"] for m in json.load(open(sys.argv[1]))["data"])))' "$T/models.body" 2>/dev/null || true)
check "models list ids" "azdemo,badkey,demo,keyed" "$ids"
st=$(req model1 "${AUTH[@]}" "$U/v1/models/demo")
check "GET /v1/models/demo -> 200" 200 "$st"
check "model id" demo "$(jfield "$T/model1.body" id)"
st=$(req model2 "${AUTH[@]}" "$U/v1/models/nope")
check "GET /v1/models/nope -> 404" 404 "$st"

# --- health, readiness, metrics (no key needed) ---
st=$(req healthz "$U/healthz")
check "/healthz -> 200" 200 "$st"
st=$(req readyz "$U/readyz")
check "/readyz -> 200" 200 "$st"
st=$(req metrics "$U/metrics")
check "/metrics -> 200" 200 "$st"
m=$(cat "$T/metrics.body")
check_contains "metrics: custos_requests_total" "custos_requests_total{" "$m"
check_contains "metrics: custos_overhead_seconds_bucket" "custos_overhead_seconds_bucket{" "$m"
check_contains "metrics: 401s counted" 'status="401"' "$m"
# the gateway's own overhead on loopback is far below 100 ms: every proxied chat request lands below that bucket
ovh=$(python3 - "$T/metrics.body" <<'PY'
import re, sys
b = {}
for line in open(sys.argv[1]):
    m = re.match(r'custos_overhead_seconds_bucket\{route="chat_completions",le="([^"]+)"\} (\d+)', line)
    if m:
        b[m.group(1)] = int(m.group(2))
print("ok" if b.get("+Inf", 0) > 0 and b.get("0.1") == b.get("+Inf") else f"bad {b}")
PY
)
check "metrics: overhead histogram below 100 ms for every chat request" ok "$ovh"
grep -q "$KEY" "$T/metrics.body" && fail "metrics: no key material" "key found" || ok "metrics: no key material"

# --- request ids: every response carries x-request-id == apim-request-id (UUID) ---
for n in nf m405 nokey bearer aznover aznodep models model2 healthz readyz metrics; do
  a=$(hdr "$n" x-request-id)
  b=$(hdr "$n" apim-request-id)
  if [[ $a =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] && [ "$a" = "$b" ]; then
    ok "request id on $n"
  else
    fail "request id on $n" "x-request-id '$a' apim-request-id '$b'"
  fi
done
[ "$(hdr bearer x-request-id)" != "$(hdr apikey x-request-id)" ] && ok "request ids differ per request" ||
  fail "request ids differ per request" "same id twice"
raw_http "$GP" "GET /x HTTP/1.1\\r\\nHost: gw\\r\\nBad Header: x\\r\\n\\r\\n" --dump "$T/proto.raw" >/dev/null
grep -qi '^x-request-id: ' "$T/proto.raw" && ok "request id on a protocol error" ||
  fail "request id on a protocol error" "$(head -c 300 "$T/proto.raw")"

# --- upstream rewriting: azure backend gets /openai/deployments/up-dep/...?api-version=... ---
before=$(mock_stat "$MP" by_route.azure_chat_completions)
st=$(req azup "${AUTH[@]}" "${JSON[@]}" -d '{"model":"azdemo","messages":[{"role":"user","content":"x"}]}' "$U/v1/chat/completions")
check "deployment on an azure backend -> 200" 200 "$st"
check "azure backend: upstream Azure deployment route used" "$((before + 1))" "$(mock_stat "$MP" by_route.azure_chat_completions)"
# the mock reports the deployment name from the path as the model
check "azure backend: upstream deployment name is up-dep" up-dep "$(jfield "$T/azup.body" model)"
st=$(req azup2 -H "api-key: $KEY" "${JSON[@]}" -d "$AZB" "$U/openai/deployments/azdemo/chat/completions?api-version=2024-10-21")
check "Azure client route -> azure backend -> 200" 200 "$st"
check "openai backend: upstream /v1 route used" 1 "$(python3 -c "print(1 if int('$(mock_stat "$MP" by_route.chat_completions)') >= 1 else 0)")"

# --- upstream credentials ---
st=$(req keyed "${AUTH[@]}" "${JSON[@]}" -d '{"model":"keyed","messages":[{"role":"user","content":"x"}]}' "$U/v1/chat/completions")
check "backend api key accepted by upstream -> 200" 200 "$st"
st=$(req badkey "${AUTH[@]}" "${JSON[@]}" -d '{"model":"badkey","messages":[{"role":"user","content":"x"}]}' "$U/v1/chat/completions")
check "wrong backend api key: upstream 401 passed through" 401 "$st"
check "upstream 401 body passed through" 401 "$(jfield "$T/badkey.body" error.code)"
grep -q "upstream-secret\|not-the-secret" "$T/custos.log" && fail "log: no upstream keys" "key in log" || ok "log: no upstream keys"
stop_custos_clean

finish
