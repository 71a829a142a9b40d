#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Use cases and human review end to end (docs/reviews.md): config rejections (high tier without retained content, a
# deployment weaker than the minimum policy); 403s (unknown, not allowed, unvalidated, expired, required); high tier
# withholds the completion (whole and streamed: no content byte reaches the client) until a reviewer approves or
# edits it; elevated releases a draft that signs off; standard queues an exact deterministic QA sample; pending items
# expire at their deadline (410); one governance-log record per decision, never the text, and `custos audit verify`
# passes; retention.content none stores metadata only.
source "$(dirname "$0")/lib.sh"

GP=$(free_port)
MP=$(free_port)
start_mock "$MP"
printf '%s' app-key-1 >"$T/app.key"
printf '%s' rev-key-1 >"$T/rev.key"
printf '%s' bob-key-1 >"$T/bob.key"
printf '%s' plain-key-1 >"$T/plain.key"
printf '%s' adm-key-1 >"$T/adm.key"

# config RETENTION USE_CASES_YAML [EXTRA_TOP_LEVEL]
config() {
  cat >"$T/custos.yaml" <<YAML
server: {workers: 2, drain_timeout_ms: 5000}
listeners:
  - address: "127.0.0.1:$GP"
identity:
  api_keys:
    - {name: app, key_file: app.key, principal: svc-app}
    - {name: rev, key_file: rev.key, principal: alice, roles: [reviewer]}
    - {name: bob, key_file: bob.key, principal: bob}
    - {name: plain, key_file: plain.key, principal: plain}
    - {name: adm, key_file: adm.key, principal: root, roles: [admin]}
backends:
  - name: mock
    provider: openai
    url: "http://127.0.0.1:$MP"
rai_policies:
  - name: lax
    content_filters:
      - {category: hate, threshold: high}
deployments:
  - {name: demo, model: gpt-4o-mini, type: global, backends: [mock]}
  - {name: demo2, model: gpt-4o-mini, type: global, backends: [mock]}
  - {name: laxdep, model: gpt-4o-mini, type: global, backends: [mock], rai_policy: lax}
retention:
  content: $1
diagnostics:
  sinks: [{type: file, name: req, path: requests.jsonl}]
$2
${3:-}
YAML
}

UC_ALL='use_cases:
  - id: letters
    owner: claims@example.com
    tier: high
    deployments: [demo]
    minimum_policy: {filters: {hate: medium}, jailbreak: block}
    validation: {validated: true, evidence: VAL-1, date: "2026-01-01"}
    bind: {api_keys: [app]}
  - id: drafts
    owner: ops@example.com
    tier: elevated
    deployments: [demo]
  - id: qa
    owner: ops@example.com
    tier: standard
    deployments: [demo]
    qa_sample_rate: 0.3
  - id: unval
    owner: x@example.com
    tier: high
    deployments: [demo]
  - id: stale
    owner: x@example.com
    tier: high
    deployments: [demo]
    validation: {validated: true, evidence: VAL-2, expires: "2020-01-01"}
  - id: elsewhere
    owner: x@example.com
    tier: standard
    deployments: [demo2]
  - id: quick
    owner: x@example.com
    tier: high
    deployments: [demo]
    review_deadline_s: 2
    validation: {validated: true, evidence: VAL-3}'

# ---------- config rejections ----------
config none "$UC_ALL"
rc=0
out=$("$CUSTOS_BIN" config check "$T/custos.yaml" 2>&1) || rc=$?
check "high tier with retention.content none: config rejected" 1 "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check_contains "rejection names the reason" "needs the content stored for its reviewers, but retention.content is none" "$out"
config "{days: 7}" 'use_cases:
  - {id: strict, owner: o, tier: standard, deployments: [laxdep], minimum_policy: {filters: {hate: medium}}}'
rc=0
out=$("$CUSTOS_BIN" config check "$T/custos.yaml" 2>&1) || rc=$?
check "deployment weaker than the minimum policy: config rejected" 1 "$([ "$rc" -ne 0 ] && echo 1 || echo 0)"
check_contains "rejection names deployment and rule" "deployment laxdep's rai_policy lax is weaker than the use case's minimum_policy (filters.hate" "$out"

# ---------- the gateway ----------
config "{days: 7}" "$UC_ALL" 'governance: {require_use_case: true}'
start_custos "$T/custos.yaml" "$GP"
U="http://127.0.0.1:$GP"
G="$T/governance.jsonl"
chat() { # chat NAME KEY USE_CASE BODY
  local h=()
  [ -n "$3" ] && h=(-H "x-custos-use-case: $3")
  req "$1" "$U/v1/chat/completions" -H "authorization: Bearer $2" -H 'content-type: application/json' "${h[@]}" -d "$4"
}
body() { printf '{"model":"%s","messages":[{"role":"user","content":"hello"}],"mock_reply":"%s"%s}' "$1" "$2" "${3:-}"; }

s=$(chat nf bob-key-1 nosuch "$(body demo x)")
check "unknown use case: 403" 403 "$s"
check "unknown use case: code" use_case_not_found "$(jfield "$T/nf.body" error.code)"
s=$(chat na bob-key-1 elsewhere "$(body demo x)")
NARID=$(hdr na x-request-id)
check "deployment not allowed for the use case: 403 use_case_deployment_not_allowed" "403 use_case_deployment_not_allowed" \
  "$s $(jfield "$T/na.body" error.code)"
s=$(chat nv bob-key-1 unval "$(body demo x)")
check "unvalidated high-tier use case: 403 use_case_not_validated" "403 use_case_not_validated" "$s $(jfield "$T/nv.body" error.code)"
s=$(chat ex bob-key-1 stale "$(body demo x)")
check "expired validation: 403 use_case_validation_expired" "403 use_case_validation_expired" "$s $(jfield "$T/ex.body" error.code)"
s=$(chat rq plain-key-1 "" "$(body demo x)")
check "no use case while required: 403 use_case_required" "403 use_case_required" "$s $(jfield "$T/rq.body" error.code)"
before=$(mock_requests "$MP")

# high tier, bound to the app key: withheld
SECRET=SECRETLETTERTEXT
s=$(chat h1 app-key-1 "" "$(body demo "$SECRET one")")
check "high tier: 200" 200 "$s"
check "high tier: content withheld (empty string)" "" "$(jfield "$T/h1.body" choices.0.message.content)"
check "high tier: status pending" pending "$(jfield "$T/h1.body" custos_review.status)"
check "high tier: finish_reason is the backend's" stop "$(jfield "$T/h1.body" choices.0.finish_reason)"
H1=$(jfield "$T/h1.body" custos_review.id)
H1RID=$(hdr h1 x-request-id)
check "high tier: x-custos-review-id header" "$H1" "$(hdr h1 x-custos-review-id)"
check "high tier: url" "/v1/reviews/$H1/completion" "$(jfield "$T/h1.body" custos_review.url)"
if grep -q "$SECRET" "$T/h1.body"; then fail "high tier: no completion byte in the answer" "$(cat "$T/h1.body")"; else ok "high tier: no completion byte in the answer"; fi

# high tier, streamed: nothing but the withheld chunk and [DONE]
s=$(chat h2 app-key-1 letters "$(body demo "$SECRET two" ',"stream":true')")
check "high tier stream: 200" 200 "$s"
check_contains "high tier stream: event stream" "text/event-stream" "$(hdr h2 content-type)"
if grep -q "$SECRET" "$T/h2.body"; then fail "high tier stream: no content delta reaches the client" "$(cat "$T/h2.body")"; else ok "high tier stream: no content delta reaches the client"; fi
check "high tier stream: one chunk then [DONE]" "2" "$(grep -c '^data: ' "$T/h2.body")"
check_contains "high tier stream: ends with [DONE]" "data: [DONE]" "$(tail -2 "$T/h2.body")"
H2=$(hdr h2 x-custos-review-id)
check_contains "high tier stream: review annotation in the chunk" "\"custos_review\":{\"id\":\"$H2\",\"status\":\"pending\"" "$(cat "$T/h2.body")"
check "high tier stream: chunk content is empty" "" "$(sed -n 's/^data: {/{/p' "$T/h2.body" | head -1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["delta"]["content"])')"

# the legacy completions route and the Azure route are held the same way
s=$(req cp "$U/v1/completions" -H "authorization: Bearer app-key-1" -H 'content-type: application/json' \
  -d "{\"model\":\"demo\",\"prompt\":\"hello\",\"mock_reply\":\"$SECRET comp\"}")
check "completions: withheld" "200 pending" "$s $(jfield "$T/cp.body" custos_review.status)$(jfield "$T/cp.body" choices.0.text)"
s=$(req az "$U/openai/deployments/demo/chat/completions?api-version=2024-10-21" -H "api-key: app-key-1" \
  -H 'content-type: application/json' -d "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"mock_reply\":\"$SECRET az\"}")
check "azure route: withheld" "200 pending" "$s $(jfield "$T/az.body" custos_review.status)$(jfield "$T/az.body" choices.0.message.content)"
if grep -q "$SECRET" "$T/cp.body" "$T/az.body"; then fail "no completion byte on the other routes" ""; else ok "no completion byte on the other routes"; fi

# requester checks and reviewer API
s=$(req st1 "$U/v1/reviews/$H1" -H "authorization: Bearer app-key-1")
check "status while pending: 409 review_pending" "409 review_pending" "$s $(jfield "$T/st1.body" error.code)"
s=$(req co1 "$U/v1/reviews/$H1/completion" -H "authorization: Bearer app-key-1")
check "completion while pending: 409" 409 "$s"
s=$(req l1 "$U/v1/reviews?status=pending" -H "authorization: Bearer rev-key-1")
check "reviewer lists pending items: 200" 200 "$s"
check_contains "list holds the item" "\"id\":\"$H1\"" "$(cat "$T/l1.body")"
if grep -q "$SECRET" "$T/l1.body"; then fail "list carries no content" "$(cat "$T/l1.body")"; else ok "list carries no content"; fi
s=$(req l2 "$U/v1/reviews" -H "authorization: Bearer app-key-1")
check "non-reviewer cannot list: 401" 401 "$s"
s=$(req it "$U/v1/reviews/$H1/item" -H "authorization: Bearer rev-key-1")
check "reviewer reads the item: 200" 200 "$s"
check "item: decrypted output" "$SECRET one" "$(jfield "$T/it.body" output.0.text)"
check "item: prompt messages" "hello" "$(jfield "$T/it.body" request.messages.0.content)"
s=$(req it2 "$U/v1/reviews/$H1/item" -H "authorization: Bearer app-key-1")
check "requester cannot read the item: 401" 401 "$s"

dec() { req "$1" "$U/v1/reviews/$2/decision" -H "authorization: Bearer ${4:-rev-key-1}" -H 'content-type: application/json' -d "$3"; }
s=$(dec d0 "$H1" '{"decision":"edit","text":"EDITEDTEXT"}')
check "edit without reason: 400" 400 "$s"
s=$(dec d0b "$H1" '{"decision":"approve"}' app-key-1)
check "requester cannot decide: 401" 401 "$s"
s=$(dec d1 "$H1" '{"decision":"edit","text":"EDITEDTEXT","reason":"tone REASONTEXT"}')
check "edit: 200 edited" "200 edited" "$s $(jfield "$T/d1.body" status)"
s=$(dec d1b "$H1" '{"decision":"approve"}')
check "second decision: 409 review_already_decided" "409 review_already_decided" "$s $(jfield "$T/d1b.body" error.code)"
s=$(req co2 "$U/v1/reviews/$H1/completion" -H "authorization: Bearer app-key-1")
check "requester fetches the edited completion" "200 EDITEDTEXT" "$s $(jfield "$T/co2.body" choices.0.message.content)"
check "released completion says edited" edited "$(jfield "$T/co2.body" custos_review.status)"
s=$(req co3 "$U/v1/reviews/$H1/completion" -H "authorization: Bearer bob-key-1")
check "another principal cannot fetch it: 404" 404 "$s"
s=$(req st2 "$U/v1/reviews/$H1" -H "authorization: Bearer app-key-1")
check "status after the decision: 200 edited" "200 edited" "$s $(jfield "$T/st2.body" status)"
s=$(dec d2 "$H2" '{"decision":"approve"}')
check "approve the streamed one: 200" 200 "$s"
s=$(req co4 "$U/v1/reviews/$H2/completion" -H "authorization: Bearer app-key-1")
check "approved completion is the original text" "200 $SECRET two" "$s $(jfield "$T/co4.body" choices.0.message.content)"

s=$(chat h3 app-key-1 "" "$(body demo "$SECRET three")")
H3=$(jfield "$T/h3.body" custos_review.id)
s=$(dec d3 "$H3" '{"decision":"reject","reason":"wrong REASONTEXT"}')
check "reject: 200 rejected" "200 rejected" "$s $(jfield "$T/d3.body" status)"
s=$(req st3 "$U/v1/reviews/$H3" -H "authorization: Bearer app-key-1")
check "rejected: 422 review_rejected with the decision" "422 review_rejected reject" \
  "$s $(jfield "$T/st3.body" error.code) $(jfield "$T/st3.body" review.decision)"

# elevated: a draft that signs off
s=$(chat e1 bob-key-1 drafts "$(body demo "draft text")")
check "elevated: released" "200 draft text" "$s $(jfield "$T/e1.body" choices.0.message.content)"
check "elevated: marked as draft" "draft draft" "$(jfield "$T/e1.body" custos_review.status) $(hdr e1 x-custos-review-status)"
E1=$(hdr e1 x-custos-review-id)
s=$(req es1 "$U/v1/reviews/$E1" -H "authorization: Bearer bob-key-1")
check "elevated: not signed yet: 409" 409 "$s"
dec de "$E1" '{"decision":"approve"}' >/dev/null
s=$(req es2 "$U/v1/reviews/$E1" -H "authorization: Bearer bob-key-1")
check "elevated: signed: 200 approved" "200 approved" "$s $(jfield "$T/es2.body" status)"

# deadline expiry
s=$(chat q1 app-key-1 quick "$(body demo "late")")
Q1=$(jfield "$T/q1.body" custos_review.id)
sleep 3
s=$(req qs "$U/v1/reviews/$Q1" -H "authorization: Bearer app-key-1")
check "past the deadline: 410 review_expired" "410 review_expired" "$s $(jfield "$T/qs.body" error.code)"
s=$(dec dq "$Q1" '{"decision":"approve"}')
check "deciding an expired item: 410" 410 "$s"

# standard: exact deterministic QA sample
: >"$T/rids"
for i in $(seq 1 40); do
  chat qa$i bob-key-1 qa "$(body demo "qa $i")" >/dev/null
  hdr qa$i x-request-id >>"$T/rids"
  grep -q custos_review "$T/qa$i.body" && fail "standard answers are unmarked" "$(cat "$T/qa$i.body")"
done
want=$(python3 - "$T/rids" <<'PY'
import sys
n = 0
for rid in open(sys.argv[1]).read().split():
    h = 0xcbf29ce484222325
    for b in rid.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    n += h % 1000000 < 300000
print(n)
PY
)
req ql "$U/v1/reviews?status=all&use_case=qa&limit=200" -H "authorization: Bearer rev-key-1" >/dev/null
got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]))' "$T/ql.body")
check "QA sample: exactly the hashed request ids ($want of 40)" "$want" "$got"
[ "$want" -ge 4 ] && [ "$want" -le 22 ] && ok "QA sample roughly 30%" || fail "QA sample roughly 30%" "$want of 40"

# governance log: one record per decision, hashes only
ndec=$(grep -c '"action":"review.decide"' "$G" || true)
check "one governance record per decision (edit, approve, reject, approve)" 4 "$ndec"
check_contains "decision record carries the text hash" "\"text_sha256\":\"$(printf %s EDITEDTEXT | sha256sum | cut -d' ' -f1)\"" "$(grep review.decide "$G")"
if grep -q -e EDITEDTEXT -e REASONTEXT -e "$SECRET" "$G"; then fail "no content in the governance log" "$(grep review "$G")"; else ok "no content in the governance log"; fi
if grep -q -e EDITEDTEXT -e REASONTEXT -e "$SECRET" "$T/custos.log"; then fail "no content in the operational log" ""; else ok "no content in the operational log"; fi
# the official openai npm client tolerates the withheld answer, whole and streamed (skipped without node)
E2E="$CUSTOS_SRC/tests/e2e"
if command -v node >/dev/null && [ -d "$E2E/node_modules/openai" ]; then
  out=$(cd "$E2E" && CUSTOS_URL="$U" CUSTOS_KEY=app-key-1 timeout 60 node review_client.mjs 2>&1) || true
  check "openai npm client: withheld answer parses (whole and streamed)" \
    '{"content":"","finish":"stop","status":"pending","header":true,"stream_text":"","stream_finish":"stop","stream_status":"pending"}' \
    "$(echo "$out" | tail -1)"
else
  echo "# openai npm client not installed: SDK check skipped"
fi
# the registry through the admin API
s=$(req ucl "$U/admin/v1/use-cases" -H "authorization: Bearer adm-key-1")
check "admin API lists the use cases" "200 7" "$s $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]))' "$T/ucl.body")"
s=$(req uc1 "$U/admin/v1/use-cases/stale" -H "authorization: Bearer adm-key-1")
check "admin API: one use case with its validation state" "200 high False 2020-01-01" \
  "$s $(jfield "$T/uc1.body" tier) $(jfield "$T/uc1.body" validation.current) $(jfield "$T/uc1.body" validation.expires)"
s=$(req uc2 "$U/admin/v1/use-cases/nope" -H "authorization: Bearer adm-key-1")
check "admin API: unknown use case 404" 404 "$s"
s=$(req uc3 "$U/admin/v1/use-cases" -H "authorization: Bearer rev-key-1")
check "admin API: needs admin (401)" 401 "$s"
s=$(curl -sS "$U/metrics")
check_contains "metrics: decisions counter" 'custos_review_decisions_total{use_case="letters",decision="edit"} 1' "$s"
check_contains "metrics: pending gauge" 'custos_review_pending{tier="high"}' "$s"
stop_custos_clean
rc=0
"$CUSTOS_BIN" audit verify "$G" >"$T/verify.out" 2>&1 || rc=$?
check "custos audit verify passes" 0 "$rc"
check "the store is the default SQLite file" 1 "$([ -s "$T/custos.db" ] && echo 1 || echo 0)"
if grep -a -q -e "$SECRET" -e EDITEDTEXT -e REASONTEXT "$T"/custos.db*; then fail "the store holds content only sealed" ""; else
  ok "the store holds content only sealed (no plaintext in custos.db*)"; fi
check_contains "request record names the use case and tier" '"useCase":{"id":"letters","tier":"high"}' \
  "$(grep "$H1RID" "$T/requests.jsonl" || true)"
check_contains "a refused request's record names the use case" '"status":403' "$(grep "$NARID" "$T/requests.jsonl" || true)"
check_contains "... with its tier" '"useCase":{"id":"elsewhere","tier":"standard"}' "$(grep "$NARID" "$T/requests.jsonl" || true)"
if grep -q -e "$SECRET" -e EDITEDTEXT "$T/requests.jsonl"; then fail "no content in request records" ""; else ok "no content in request records"; fi

# ---------- retention none: metadata only ----------
config none 'use_cases:
  - {id: qa, owner: o, tier: standard, deployments: [demo], qa_sample_rate: 1.0}'
start_custos "$T/custos.yaml" "$GP"
s=$(chat r1 bob-key-1 qa "$(body demo "kept nowhere")")
check "retention none: answer released" "200 kept nowhere" "$s $(jfield "$T/r1.body" choices.0.message.content)"
req rl "$U/v1/reviews?use_case=qa" -H "authorization: Bearer rev-key-1" >/dev/null
R1=$(jfield "$T/rl.body" data.0.id)
check "retention none: the QA item is queued without content" "False" "$(jfield "$T/rl.body" data.0.content_stored)"
req ri "$U/v1/reviews/$R1/item" -H "authorization: Bearer rev-key-1" >/dev/null
check "retention none: item has no output" None "$(jfield "$T/ri.body" output)"
stop_custos_clean
finish
