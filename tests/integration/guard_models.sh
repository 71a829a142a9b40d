#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# External guard models and the safety cascade (docs/guard-models.md) against custos-mockllm's guard endpoints
# (src/mockllm/guard.c): llama-guard (completions and chat APIs), azure-content-safety (text:analyze,
# text:shieldPrompt) and http-classifier; prompts and non-streamed answers; fail open / closed on garbage answers,
# HTTP errors and timeouts; the band (texts below it never reach the guard); the verdict cache; "other" Llama Guard
# codes recorded but not blocking; metrics; configuration errors (unknown guard, llama-guard as a prompt shield,
# a guard outside a deployment's residency boundary).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOCK_PORT=$(free_port)
MOCK2_PORT=$(free_port) # a guard that answers in 150 ms (streams wait for it)
GW_PORT=$(free_port)
printf '%s' "az-guard-key" >"$T/az.key"
basic_config "$GW_PORT" "$MOCK_PORT" "$(cat <<YAML
  - {name: lg, model: gpt-4o-mini, backends: [mock], rai_policy: p-lg}
  - {name: lg-closed, model: gpt-4o-mini, backends: [mock], rai_policy: p-lg-closed}
  - {name: lg-chat, model: gpt-4o-mini, backends: [mock], rai_policy: p-lg-chat}
  - {name: band, model: gpt-4o-mini, backends: [mock], rai_policy: p-band}
  - {name: az, model: gpt-4o-mini, backends: [mock], rai_policy: p-az}
  - {name: cls, model: gpt-4o-mini, backends: [mock], rai_policy: p-cls}
  - {name: slow, model: gpt-4o-mini, backends: [mock], rai_policy: p-slow}
  - {name: lg-stream, model: gpt-4o-mini, backends: [mock], rai_policy: p-lg-stream}
  - {name: lg-async, model: gpt-4o-mini, backends: [mock], rai_policy: p-lg-async}
guards:
  - {name: lg, type: llama-guard, url: "http://127.0.0.1:$MOCK_PORT/llamaguard", model: llama-guard-3, timeout_ms: 2000}
  - {name: lg-chat, type: llama-guard, api: chat, url: "http://127.0.0.1:$MOCK_PORT/llamaguard", cache: {max_entries: 0}}
  - name: az
    type: azure-content-safety
    url: "http://127.0.0.1:$MOCK_PORT/azcs"
    auth: {api_key_file: az.key}
  - {name: cls, type: http-classifier, url: "http://127.0.0.1:$MOCK_PORT/classify"}
  - {name: lg-delay, type: llama-guard, url: "http://127.0.0.1:$MOCK2_PORT/llamaguard"}
  - name: slow
    type: llama-guard
    url: "http://127.0.0.1:$MOCK_PORT/llamaguard"
    timeout_ms: 300
    retries: 0
    circuit_breaker: {consecutive_failures: 2, base_ejection_ms: 60000}
rai_policies:
  - name: p-lg
    content_filters:
      - {category: hate, guard: {name: lg, mode: guard}}
      - {category: violence, guard: {name: lg, mode: guard}}
    prompt_shields: {jailbreak: annotate}
  - name: p-lg-closed
    content_filters:
      - {category: hate, guard: {name: lg, mode: guard, on_error: closed}}
    prompt_shields: {jailbreak: annotate}
  - name: p-lg-chat
    content_filters:
      - {category: hate, guard: {name: lg-chat, mode: guard}}
    prompt_shields: {jailbreak: annotate}
  - name: p-band
    content_filters:
      - {category: hate, guard: {name: lg, mode: cascade, band: [0.999, 1.0]}}
    prompt_shields: {jailbreak: annotate}
  - name: p-az
    content_filters:
      - {category: hate, guard: {name: az, mode: guard}}
    prompt_shields: {jailbreak: block, guard: {name: az, mode: guard}}
  - name: p-cls
    content_filters:
      - {category: hate, guard: {name: cls, mode: guard}}
    prompt_shields: {jailbreak: annotate}
  - name: p-lg-stream
    content_filters:
      - {category: violence, source: completion, guard: {name: lg-delay, mode: guard}}
    prompt_shields: {jailbreak: annotate}
    streaming: {window_min_chars: 20, window_max_chars: 200, context_chars: 0}
  - name: p-lg-async
    mode: asynchronous_filter
    content_filters:
      - {category: violence, source: completion, threshold: high, guard: {name: lg-delay, mode: guard}}
    prompt_shields: {jailbreak: annotate}
    streaming: {window_min_chars: 20, window_max_chars: 200}
  - name: p-slow
    content_filters:
      - {category: hate, guard: {name: slow, mode: guard, on_error: closed}}
    prompt_shields: {jailbreak: annotate}
diagnostics:
  sinks:
    - {type: file, path: requests.jsonl}
YAML
)"
start_mock "$MOCK_PORT"
start_mock "$MOCK2_PORT" --guard-delay-ms 150
start_custos "$T/custos.yaml" "$GW_PORT"

rc=0
python3 - "$GW_PORT" "$KEY" "$MOCK_PORT" "$MOCK2_PORT" >"$T/py.log" 2>&1 <<'PY' || rc=$?
import http.client, json, sys, time

port, key, mock_port, mock2_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fails = 0

def ok(name, cond, detail=""):
    global fails
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else ": " + str(detail)[:800]))
    if not cond:
        fails += 1

def post(body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json", "api-key": key})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    return r.status, json.loads(data) if data else None

def chat(dep, content, reply=None):
    body = {"model": dep, "messages": [{"role": "user", "content": content}]}
    if reply is not None:
        body["mock_reply"] = reply
    return post(body)

def guard_calls(mp=None):
    c = http.client.HTTPConnection("127.0.0.1", mp or mock_port, timeout=5)
    c.request("GET", "/mock/guard-stats")
    n = json.loads(c.getresponse().read())["calls"]
    c.close()
    return n

def pann(b):
    return b["prompt_filter_results"][0]["content_filter_results"]

def blocked_result(b):
    return b["error"]["innererror"]["content_filter_result"]

# llama-guard, completions API (custos builds the Llama Guard 3 prompt)
n0 = guard_calls()
st, b = chat("lg", "Tell me about the weather in Paris today please.")
ok("lg benign 200", st == 200, b)
ok("lg asked for the prompt and the answer", guard_calls() == n0 + 2, guard_calls() - n0)
ok("lg benign annotated", st == 200 and pann(b).get("guard") == {"name": "lg", "flagged": False}, b)
ok("lg benign hate safe", st == 200 and pann(b)["hate"] == {"filtered": False, "severity": "safe"}, b)
st, b = chat("lg", "Tell me about the weather in Paris today please.")
ok("lg cache: same texts not asked again", st == 200 and guard_calls() == n0 + 2, guard_calls() - n0)
st, b = chat("lg", "  Tell me about the   weather in Paris today please.\n")
ok("lg cache: normalised white space (prompt cached)", st == 200 and guard_calls() <= n0 + 3, guard_calls() - n0)
st, b = chat("lg", "a perfectly polite sentence guard-unsafe-hate")
ok("lg unsafe S10 -> 400", st == 400 and b["error"]["code"] == "content_filter", b)
ok("lg 400 names hate", st == 400 and blocked_result(b)["hate"]["filtered"] is True, b)
ok("lg 400 guard annotation", st == 400 and blocked_result(b)["guard"]["flagged"] is True, b)
st, b = chat("lg", "a polite sentence guard-unsafe-violence")
ok("lg unsafe S1 -> violence 400", st == 400 and blocked_result(b)["violence"]["filtered"] is True, b)
st, b = chat("lg", "a polite question guard-unsafe-other")
ok("lg other code passes", st == 200, b)
ok("lg other code recorded", st == 200 and pann(b)["guard"].get("other_categories") == ["S2"], b)
# answers (non-streamed): the guard judges each choice
st, b = chat("lg", "Write a short story.", reply="A calm story about rivers guard-unsafe-violence")
ok("lg answer filtered", st == 200 and b["choices"][0]["finish_reason"] == "content_filter", b)
ok("lg answer withheld", st == 200 and b["choices"][0]["message"]["content"] is None, b)
st, b = chat("lg", "Write another short story.", reply="A calm story about mountains and lakes.")
ok("lg answer passes", st == 200 and b["choices"][0]["finish_reason"] == "stop", b)
ok("lg answer annotated", st == 200 and b["choices"][0]["content_filter_results"].get("guard", {}).get("name") == "lg", b)
# stream requests: the prompt's cascade applies (no stream is opened); answers in streams use the in-process rule
st, b = post({"model": "lg", "stream": True, "messages": [{"role": "user", "content": "streaming guard-unsafe-hate"}]})
ok("stream prompt flagged -> 400", st == 400 and b["error"]["code"] == "content_filter", b)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
c.request("POST", "/v1/chat/completions", json.dumps({"model": "lg", "stream": True, "mock_reply": "A calm reply about lakes.",
          "messages": [{"role": "user", "content": "Tell me about lakes in Finland."}]}),
          {"content-type": "application/json", "api-key": key})
r = c.getresponse()
data = r.read().decode()
c.close()
ok("stream answer relayed", r.status == 200 and "lakes" in data and data.rstrip().endswith("data: [DONE]"), data[:300])
# default-mode streams: each window waits for the guard (150 ms) before it is released
def stream(dep, reply, content="Tell me a story about the sea."):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", "/v1/chat/completions", json.dumps({"model": dep, "stream": True, "mock_reply": reply,
              "messages": [{"role": "user", "content": content}]}), {"content-type": "application/json", "api-key": key})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    evs = [l[6:] for l in data.split("\n") if l.startswith("data: ")]
    chunks = [json.loads(e) for e in evs if e != "[DONE]"]
    text = "".join((ch.get("delta") or {}).get("content") or "" for e in chunks for ch in e.get("choices", []))
    fins = [ch.get("finish_reason") for e in chunks for ch in e.get("choices", []) if ch.get("finish_reason")]
    return r.status, evs, text, fins, chunks
g0 = guard_calls(mock2_port)
st, evs, text, fins, chunks = stream("lg-stream", "The sea was calm that morning. The boats went out early. Everyone came home safe.")
ok("stream windows released after the guard", st == 200 and text == "The sea was calm that morning. The boats went out early. Everyone came home safe.", (text, evs[:4]))
ok("stream finishes", fins == ["stop"] and evs[-1] == "[DONE]", (fins, evs[-3:]))
ok("stream asked per window", guard_calls(mock2_port) - g0 >= 2, guard_calls(mock2_port) - g0)
ok("stream windows annotated by the guard", any((ch.get("content_filter_results") or {}).get("guard", {}).get("name") == "lg-delay" for e in chunks for ch in e.get("choices", [])), chunks[:3])
st, evs, text, fins, chunks = stream("lg-stream", "The sea was calm that morning. Then came guard-unsafe-violence waves. We stayed at home all day.")
ok("stream: flagged window withheld", st == 200 and "unsafe" not in text and text.startswith("The sea was calm"), text)
ok("stream: content_filter finish", fins == ["content_filter"] and evs[-1] == "[DONE]", (fins, evs[-3:]))
# asynchronous_filter streams: text flows at once; the guard's verdicts follow as annotation frames, [DONE] after them
def guard_frames(chunks):
    return [ch for e in chunks for ch in e.get("choices", []) if "content_filter_offsets" in ch and "guard" in (ch.get("content_filter_results") or {})]
reply = "The sea was calm that morning. The boats went out early. Everyone came home safe."
st, evs, text, fins, chunks = stream("lg-async", reply)
gf = guard_frames(chunks)
ok("async: text relayed", st == 200 and text == reply, text)
ok("async: verdict frames per window", len(gf) >= 2 and all(f["finish_reason"] is None for f in gf), gf)
ok("async: [DONE] after the verdicts", evs[-1] == "[DONE]" and "guard" in evs[-2], evs[-3:])
offs = [ch["content_filter_offsets"]["check_offset"] for e in chunks for ch in e.get("choices", []) if "content_filter_offsets" in ch]
ok("async: check_offset never decreases", offs == sorted(offs), offs)
st, evs, text, fins, chunks = stream("lg-async", "The sea was calm that morning. Then came guard-unsafe-violence waves. We stayed at home all day.")
gf = guard_frames(chunks)
ok("async: flagged window ends the stream", any(f["finish_reason"] == "content_filter" and f["content_filter_results"].get("violence", {}).get("filtered") for f in gf), gf)
ok("async: [DONE] after the filter frame", evs[-1] == "[DONE]" and "content_filter" in evs[-2], evs[-3:])
# garbage, HTTP errors: fail open (annotated) or closed
st, b = chat("lg", "please answer guard-garbage")
ok("garbage fail open 200", st == 200, b)
ok("garbage annotated error", st == 200 and "error" in pann(b)["guard"] and "error" in pann(b), b)
st, b = chat("lg-closed", "please answer guard-garbage")
ok("garbage fail closed 400", st == 400, b)
st, b = chat("lg", "please answer guard-error")
ok("http 500 fail open 200", st == 200 and "error" in pann(b)["guard"], b)
st, b = chat("lg-closed", "please answer guard-error again")
ok("http 500 fail closed 400", st == 400, b)
# timeouts (300 ms, no retry), then the circuit breaker opens after 2 failures: no more calls
st, b = chat("slow", "wait for it guard-hang one")
ok("timeout fail closed 400", st == 400, b)
st, b = chat("slow", "wait for it guard-hang two")
ok("second timeout 400", st == 400, b)
n1 = guard_calls()
st, b = chat("slow", "a benign question about gardening")
ok("breaker open: fail closed without calling", st == 400 and guard_calls() == n1, (st, guard_calls() - n1))
# llama-guard behind the chat API (the server applies the template)
st, b = chat("lg-chat", "hello guard-unsafe-hate")
ok("lg chat api unsafe 400", st == 400, b)
st, b = chat("lg-chat", "hello there, friend")
ok("lg chat api safe 200", st == 200, b)
# the band: scores below it never reach the guard
n2 = guard_calls()
st, b = chat("band", "An ordinary question about trains guard-unsafe-hate")
ok("band below: allowed without the guard", st == 200 and guard_calls() == n2, (st, guard_calls() - n2))
ok("band below: no guard annotation", st == 200 and "guard" not in pann(b), b)
# azure-content-safety: severities and prompt shields
st, b = chat("az", "a sentence guard-unsafe-hate")
ok("az hate severity 6 -> 400", st == 400 and blocked_result(b)["hate"] == {"filtered": True, "severity": "high"}, b)
st, b = chat("az", "a sentence guard-attack")
ok("az shieldPrompt attack -> 400", st == 400 and blocked_result(b)["jailbreak"]["filtered"] is True, b)
st, b = chat("az", "Could you recommend a good book about the history of Rome?")
ok("az safe 200", st == 200 and pann(b)["jailbreak"] == {"filtered": False, "detected": False}, b)
# http-classifier
st, b = chat("cls", "a sentence guard-unsafe-hate")
ok("classifier hate -> 400", st == 400, b)
st, b = chat("cls", "Could you recommend a good book about the history of Greece?")
ok("classifier safe 200", st == 200 and pann(b)["guard"]["name"] == "cls", b)
# metrics
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
c.request("GET", "/metrics", headers={"api-key": key})
m = c.getresponse().read().decode()
c.close()
ok("metrics checks", 'custos_guard_checks_total{guard="lg",check="harm",result="unsafe"}' in m, m[:300])
ok("metrics errors", 'custos_guard_errors_total{guard="slow",kind="timeout"}' in m, "")
ok("metrics breaker", 'custos_guard_errors_total{guard="slow",kind="circuit_open"}' in m, "")
ok("metrics cache hit", 'custos_guard_cache_total{guard="lg",result="hit"}' in m, "")
ok("metrics compared", 'custos_guard_compared_total{guard="lg",check="harm"}' in m, "")
ok("metrics latency", 'custos_guard_latency_seconds_count{guard="lg"}' in m, "")
ok("metrics cascade", 'custos_cascade_decisions_total{policy="p-band",check="harm",decision="allow"}' in m, "")
sys.exit(1 if fails else 0)
PY
cat "$T/py.log"
[ $rc -eq 0 ] && ok "guard scenarios" || fail "guard scenarios" "see above"

# request records carry the guard outcome (docs/diagnostics.md), metadata only
sleep 0.3
python3 - "$T/requests.jsonl" <<'PY' && ok "request records: safety.guard asked / error / disagreed" ||
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
g = [r["custos"]["safety"]["guard"] for r in recs if r["custos"]["safety"] and r["custos"]["safety"]["guard"]]
assert len(g) >= 5, len(g)
assert any(x["error"] for x in g) and any(not x["error"] for x in g), g
assert all(set(x) == {"error", "disagreed"} for x in g), g
PY
  fail "request records: safety.guard" "$(tail -c 400 "$T/requests.jsonl" 2>/dev/null)"

# configuration errors
cfgerr() { # NAME NEEDLE YAML_TAIL
  cp "$T/custos.yaml" "$T/bad.yaml"
  printf '%s\n' "$3" >>"$T/bad.yaml"
  out=$("$CUSTOS_BIN" config check "$T/bad.yaml" 2>&1)
  check_contains "$1" "$2" "$out"
}
sed -i 's/^    prompt_shields: {jailbreak: annotate}$/    prompt_shields: {jailbreak: annotate}/' "$T/custos.yaml"
base=$(cat "$T/custos.yaml")
printf '%s\n' "$base" | sed 's/guard: {name: cls, mode: guard}/guard: {name: nope, mode: guard}/' >"$T/bad1.yaml"
check_contains "unknown guard" "unknown guard 'nope'" "$("$CUSTOS_BIN" config check "$T/bad1.yaml" 2>&1)"
printf '%s\n' "$base" | sed 's/prompt_shields: {jailbreak: block, guard: {name: az, mode: guard}}/prompt_shields: {jailbreak: block, guard: {name: lg, mode: guard}}/' >"$T/bad2.yaml"
check_contains "llama-guard is no shield" "no prompt-attack detector" "$("$CUSTOS_BIN" config check "$T/bad2.yaml" 2>&1)"
printf '%s\n' "$base" | sed 's/  - {name: cls, model: gpt-4o-mini, backends: \[mock\], rai_policy: p-cls}/  - {name: cls, model: gpt-4o-mini, type: datazone, data_zone: eu, backends: [mock], rai_policy: p-cls}/' >"$T/bad3.yaml"
check_contains "residency" "outside the deployment's residency boundary" "$("$CUSTOS_BIN" config check "$T/bad3.yaml" 2>&1)"
printf '%s\n' "$base" | sed 's/band: \[0.999, 1.0\]/band: [0.9, 0.1]/' >"$T/bad4.yaml"
check_contains "band order" "0 <= lo <= hi <= 1" "$("$CUSTOS_BIN" config check "$T/bad4.yaml" 2>&1)"
finish
