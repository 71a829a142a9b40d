#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The reviewer UI (/ui, docs/reviewer-ui.md) end to end in headless Chromium: custos + custos-mockllm with a high-tier
# use case; tests/e2e/reviewer_ui.mjs creates pending reviews through real chat requests, signs in, approves, edits
# and rejects through the UI and checks each decision through the review API. Screenshots of every screen go to
# $T/screenshots (references: tests/ui/screenshots/; UPDATE_SCREENSHOTS=1 refreshes them).
# Needs node >= 20, npm (installs tests/e2e's pinned playwright-core on first run) and Debian's chromium; skips (77)
# without them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM=${CHROMIUM:-$(command -v chromium || true)}
need_node20
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium not installed (scripts/bootstrap installs it)"; exit 77; }

npm_pinned playwright-core
echo "# playwright-core $NPM_VERSION, $("$CHROMIUM" --version 2>/dev/null | head -1)"

: "${CUSTOS_TOOLS:=$CUSTOS_SRC/build/tools}"
MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
# an OIDC issuer (tests/tools/test_idp) for the token sign-in
make_cert idp
"$CUSTOS_TOOLS/test_idp" --cert "$T/idp.crt" --key "$T/idp.key" --port 0 --port-file "$T/idp.port" >"$T/idp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -s "$T/idp.port" ] && break; sleep 0.05; done
ISS="https://127.0.0.1:$(cat "$T/idp.port")"
printf 'app-key-ui-1' >"$T/app.key"
printf 'reviewer-key-ui-1' >"$T/reviewer.key"
cat >"$T/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 5000}
listeners:
  - address: "127.0.0.1:$GW_PORT"
identity:
  api_keys:
    - {name: app, key_file: app.key}
    - {name: reviewer, key_file: reviewer.key, roles: [reviewer, inference.user], principal: "alice@example.com"}
  oidc:
    - {issuer: "$ISS", audience: ["api://custos"], ca_file: idp.crt}
  role_map:
    Claims.Reviewer: reviewer
retention:
  content: {days: 7}
backends:
  - {name: mock, provider: openai, url: "http://127.0.0.1:$MOCK_PORT"}
rai_policies:
  - name: grounded
    groundedness: {enabled: true, action: annotate}
deployments:
  - name: demo
    model: gpt-4o-mini
    rai_policy: grounded
    backends: [mock]
    card:
      description: "Drafts letters to claimants for a claims handler to review."
      owner: "claims-platform@example.com"
      intended_uses: ["drafting claim letters", "summarising claim histories"]
      out_of_scope_uses: ["decisions on claims"]
      limitations: ["stand-in model (custos-mockllm): deterministic text, not a real LLM"]
use_cases:
  - id: claims-letters
    description: "Drafts letters to claimants"
    owner: "claims-platform@example.com"
    tier: high
    deployments: [demo]
    validation: {validated: true, evidence: "VAL-2026-031", date: "2026-10-01", expires: "2099-10-01"}
    bind: {api_keys: [app]}
YAML
start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"

OIDC_TOKEN=$(curl -sS --max-time 5 --cacert "$T/idp.crt" "$ISS/token?roles=Claims.Reviewer&oid=bob-oid&upn=bob@example.com")
NODE_TEST_TIMEOUT=180 node_test "reviewer UI in headless Chromium" reviewer_ui.mjs CUSTOS_URL="http://127.0.0.1:$GW_PORT" \
  APP_KEY=app-key-ui-1 REVIEWER_KEY=reviewer-key-ui-1 OIDC_TOKEN="$OIDC_TOKEN" CHROMIUM="$CHROMIUM" \
  SCREENSHOT_DIR="$T/screenshots" || true
for s in signin queue item item-edit models; do
  if [ -s "$T/screenshots/$s.png" ]; then ok "screenshot $s.png"; else fail "screenshot $s.png" "missing"; fi
done
# the governance log holds the three decisions (metadata and hashes only)
n=$(grep -c '"review.decide"' "$T/governance.jsonl" 2>/dev/null || true)
check "three decisions in the governance log" 3 "$n"
if grep -q "Not appropriate to send" "$T/governance.jsonl" "$T/custos.log" 2>/dev/null; then
  fail "no decision text in logs"
else
  ok "no decision text in logs"
fi
# custos evidence reads the review statistics from the store
"$CUSTOS_BIN" evidence -c "$T/custos.yaml" -o "$T/evidence.json" 2>"$T/evidence.err" || fail "custos evidence" "$(cat "$T/evidence.err")"
stats=$(python3 - "$T/evidence.json" <<'PY' 2>&1
import json, sys
for c in json.load(open(sys.argv[1]))["controls"]:
    if c["id"] == "human-review":
        s = {f["name"]: f["value"] for f in c["facts"]}["items by status"]
        print(s["pending"], s["approved"], s["edited"], s["rejected"])
PY
)
check "evidence: review statistics (pending approved edited rejected)" "0 1 1 1" "$stats"
stop_custos_clean
finish
