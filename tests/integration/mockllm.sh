#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# custos-mockllm end to end over loopback with curl: routes, streaming, embeddings, Azure errors,
# auth, fault injection, stats and a clean exit on SIGTERM.
set -euo pipefail

BIN=${MOCKLLM_BIN:-build/custos-mockllm}
[[ -x $BIN ]] || { echo "mockllm binary not found: $BIN" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

TMP=$(mktemp -d)
PID=
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    [[ -f $TMP/err ]] && { echo "--- mockllm stderr:" >&2; tail -20 "$TMP/err" >&2; }
    exit 1
}

KEY=mock-secret-key
"$BIN" --listen 127.0.0.1:0 --workers 2 --api-key "$KEY" --quiet 2>"$TMP/err" &
PID=$!
PORT=
for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^custos-mockllm listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$TMP/err" | head -1)
    [[ -n $PORT ]] && break
    kill -0 "$PID" 2>/dev/null || fail "mockllm exited early"
    sleep 0.05
done
[[ -n $PORT ]] || fail "no listening line"
URL=http://127.0.0.1:$PORT
AUTH=(-H "authorization: Bearer $KEY")
CHAT='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"CANARY-91b2 hello"}]}'

# req NAME ARGS... : runs curl, leaves body in $TMP/NAME.body, headers in $TMP/NAME.hdr, prints the status.
req() {
    local name=$1
    shift
    curl -sS --max-time 10 -o "$TMP/$name.body" -D "$TMP/$name.hdr" -w '%{http_code}' "$@"
}
expect_status() { [[ $2 == "$3" ]] || fail "$1: status $2, expected $3: $(cat "$TMP/$1.body" 2>/dev/null)"; }
expect_body() { grep -q -- "$2" "$TMP/$1.body" || fail "$1: body lacks $2: $(head -c 400 "$TMP/$1.body")"; }
expect_hdr() { grep -qi -- "$2" "$TMP/$1.hdr" || fail "$1: headers lack $2"; }

# health
st=$(req health "$URL/healthz")
expect_status health "$st" 200

# chat completion
st=$(req chat "${AUTH[@]}" -H 'content-type: application/json' -d "$CHAT" "$URL/v1/chat/completions")
expect_status chat "$st" 200
expect_body chat '"object":"chat.completion"'
expect_body chat '"id":"chatcmpl-mock-'
expect_body chat '"model":"gpt-4o-mini"'
expect_body chat '"content":"This is a mock reply to 1 message.'
expect_body chat '"finish_reason":"stop"'
expect_body chat '"usage":{"prompt_tokens":'
expect_body chat '"system_fingerprint":"custos-mockllm"'
expect_hdr chat '^x-custos-mock: 1'
expect_hdr chat '^content-type: application/json'
grep -q CANARY "$TMP/chat.body" && fail "chat: reply echoes user content"

# max_tokens cut -> finish_reason length
st=$(req cut "${AUTH[@]}" -d '{"model":"m","max_tokens":3,"messages":[{"role":"user","content":"x"}]}' \
    "$URL/v1/chat/completions")
expect_status cut "$st" 200
expect_body cut '"content":"This is a"'
expect_body cut '"finish_reason":"length"'

# streamed chat with usage
st=$(req stream "${AUTH[@]}" -N \
    -d '{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}' \
    "$URL/v1/chat/completions")
expect_status stream "$st" 200
expect_hdr stream '^content-type: text/event-stream'
[[ $(grep -c '^data: ' "$TMP/stream.body") -eq 20 ]] || fail "stream: expected 20 events (role+16+finish+usage+DONE)"
expect_body stream '"delta":{"role":"assistant","content":""}'
expect_body stream '"choices":\[\],"usage":{"prompt_tokens":3,"completion_tokens":16,"total_tokens":19}'
[[ $(grep '^data: ' "$TMP/stream.body" | tail -1) == 'data: [DONE]' ]] || fail "stream: does not end with [DONE]"

# legacy completions
st=$(req cmpl "${AUTH[@]}" -d '{"model":"m","prompt":"x","max_tokens":2}' "$URL/v1/completions")
expect_status cmpl "$st" 200
expect_body cmpl '"object":"text_completion"'
expect_body cmpl '"text":"This is"'

# embeddings: float and base64
st=$(req emb "${AUTH[@]}" -d '{"model":"text-embedding-3-small","input":["a","b"],"dimensions":4}' "$URL/v1/embeddings")
expect_status emb "$st" 200
expect_body emb '"object":"list"'
expect_body emb '"index":1,"embedding":\[[-0-9.e]*,[-0-9.e]*,[-0-9.e]*,[-0-9.e]*\]'
st=$(req emb64 "${AUTH[@]}" -d '{"model":"e","input":"a","encoding_format":"base64"}' "$URL/v1/embeddings")
expect_status emb64 "$st" 200
expect_body emb64 '"embedding":"[A-Za-z0-9+/]\{43\}="'

# models
st=$(req models "${AUTH[@]}" "$URL/v1/models")
expect_status models "$st" 200
expect_body models '"object":"model"'

# auth: missing and wrong keys -> Azure 401; api-key header works
st=$(req noauth -d "$CHAT" "$URL/v1/chat/completions")
expect_status noauth "$st" 401
expect_body noauth '"code":"401"'
st=$(req badauth -H 'api-key: wrong' -d "$CHAT" "$URL/v1/chat/completions")
expect_status badauth "$st" 401
st=$(req apikey -H "api-key: $KEY" -d "$CHAT" "$URL/openai/v1/chat/completions")
expect_status apikey "$st" 200

# Azure deployment routes
st=$(req az_nover "${AUTH[@]}" -d '{"messages":[{"role":"user","content":"x"}]}' \
    "$URL/openai/deployments/dep-1/chat/completions")
expect_status az_nover "$st" 400
expect_body az_nover '"code":"MissingApiVersionParameter"'
st=$(req az "${AUTH[@]}" -d '{"messages":[{"role":"user","content":"x"}]}' \
    "$URL/openai/deployments/dep-1/chat/completions?api-version=2024-10-21")
expect_status az "$st" 200
expect_body az '"model":"dep-1"'

# 429 fault with retry-after
st=$(req f429 "${AUTH[@]}" -H 'x-mock-fault: status=429;retry_after=2' -d "$CHAT" "$URL/v1/chat/completions")
expect_status f429 "$st" 429
expect_hdr f429 '^retry-after: 2'
expect_body f429 '"code":"429"'

# malformed fault spec -> 400
st=$(req fbad "${AUTH[@]}" -H 'x-mock-fault: status=abc' -d "$CHAT" "$URL/v1/chat/completions")
expect_status fbad "$st" 400

# reset -> connection closed without a response
if curl -sS --max-time 10 -o /dev/null "${AUTH[@]}" -H 'x-mock-fault: reset' -d "$CHAT" "$URL/v1/chat/completions" \
    2>/dev/null; then
    fail "reset: request succeeded"
fi

# fail_first: two failures for this key, then success
codes=""
for _ in 1 2 3; do
    codes+=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} ' "${AUTH[@]}" -H 'x-mock-key: retry-test' \
        -H 'x-mock-fault: fail_first=2;status=503' -d "$CHAT" "$URL/v1/chat/completions")
done
[[ $codes == "503 503 200 " ]] || fail "fail_first: got '$codes'"

# echo of the presented credential (hash only)
st=$(req echo "${AUTH[@]}" -H 'x-mock-echo-headers: 1' -d "$CHAT" "$URL/v1/chat/completions?x=1")
expect_status echo "$st" 200
sum=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
expect_body echo "\"mock_auth\":{\"scheme\":\"bearer\",\"sha256\":\"$sum\"}"
expect_body echo '"mock_path":"/v1/chat/completions?x=1"'
grep -q "$KEY" "$TMP/echo.body" && fail "echo: raw key in body"

# stats
st=$(req stats "$URL/mock/stats")
expect_status stats "$st" 200
expect_body stats '"requests":'
expect_body stats '"fail_first_passed":1'

# clean exit on SIGTERM
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
[[ $rc -eq 0 ]] || fail "exit status $rc after SIGTERM"
echo "mockllm integration: OK"
