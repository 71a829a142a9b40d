#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Content filtering on the inference path (docs/content-filtering.md) against custos-mockllm's scripted replies
# ("mock_reply"): prompt and completion annotations, the 400 content_filter answer (also for stream requests, and
# never sent upstream), finish_reason content_filter per choice with n > 1, threshold / enabled / blocking
# semantics, PII annotate / redact / placeholder (round trip) / block, unscreened image parts, a check that cannot
# run (fail closed when blocking, error annotation when annotate-only), streaming in default mode (windows,
# first frame, violation ends the choice, nothing after it) and asynchronous_filter mode (offsets, stop), and
# normalisation evasions (zero-width characters, spaced letters) still caught at the gateway.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
basic_config "$GW_PORT" "$MOCK_PORT" "$(mock_deployments lenient:lenient annotate:annotate-only pii:pii-placeholder \
  pii-redact:pii-redact pii-block:pii-block stream:small-windows async:async bl:blocklists bl-missing:blocklist-missing)
$(cat <<'YAML'
safety: {max_text_bytes: 4096}
rai_policies:
  - name: lenient
    content_filters:
      - {category: violence, source: prompt, threshold: high, blocking: false}
      - {category: hate, source: both, enabled: false, blocking: false}
    prompt_shields: {jailbreak: annotate}
  - name: annotate-only
    content_filters:
      - {category: hate, blocking: false}
      - {category: sexual, blocking: false}
      - {category: violence, blocking: false}
      - {category: self_harm, blocking: false}
    prompt_shields: {jailbreak: annotate, indirect_attack: annotate}
  - name: pii-placeholder
    prompt_shields: {jailbreak: annotate}
    pii: {prompt: placeholder, completion: annotate}
  - name: pii-redact
    prompt_shields: {jailbreak: annotate}
    pii: {prompt: redact, completion: redact}
  - name: pii-block
    prompt_shields: {jailbreak: annotate}
    pii: {prompt: block}
  - name: small-windows
    prompt_shields: {jailbreak: annotate}
    pii: {prompt: placeholder}
    streaming: {window_min_chars: 20, window_max_chars: 200, context_chars: 100}
  - name: async
    mode: asynchronous_filter
    prompt_shields: {jailbreak: annotate}
    streaming: {window_min_chars: 20, window_max_chars: 80}
  - name: blocklists
    prompt_shields: {jailbreak: annotate}
    blocklists: [clinic-terms, {name: watch, blocking: false}]
    streaming: {window_min_chars: 20, window_max_chars: 60, context_chars: 40}
  - name: blocklist-missing
    prompt_shields: {jailbreak: annotate}
    blocklists: [no-such-list]
YAML
)"
# an admin key for the blocklist routes
printf '%s' "cf-admin-key-456" >"$T/admin.key"
basic_config_keys '{name: admin, key_file: admin.key, roles: [admin]}' || { fail "config" "admin key not added"; finish; }
start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"

python3 - "$GW_PORT" "$KEY" "$MOCK_PORT" "cf-admin-key-456" >"$T/py.log" 2>&1 <<'PY'
import http.client, json, sys

port, key, mock_port, admin_key = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
fails = 0

def ok(name, cond, detail=""):
    global fails
    print(("ok - " if cond else "not ok - ") + name + ("" if cond else ": " + str(detail)[:600]))
    if not cond:
        fails += 1

def post(path, body, stream=False):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", path, json.dumps(body), {"content-type": "application/json", "api-key": key})
    r = c.getresponse()
    data = r.read().decode()
    c.close()
    if stream and r.getheader("content-type", "").startswith("text/event-stream"):
        events = [l[6:] for l in data.split("\n") if l.startswith("data: ")]
        return r.status, events
    return r.status, json.loads(data) if data else None

def mock_count():
    c = http.client.HTTPConnection("127.0.0.1", mock_port, timeout=5)
    c.request("GET", "/mock/stats")
    n = json.loads(c.getresponse().read())["requests"]
    c.close()
    return n

CHAT = "/v1/chat/completions"
BENIGN = "What is the capital of France?"
VIOLENT = "I will stab you and burn your house down and kill your whole family tonight."
CATS = ["hate", "sexual", "violence", "self_harm"]

def chat(dep, content, **kw):
    body = {"model": dep, "messages": [{"role": "user", "content": content}]}
    body.update(kw)
    return post(CHAT, body, stream=kw.get("stream", False))

# 1. benign prompt, default policy: annotations everywhere
st, b = chat("demo", BENIGN)
ok("benign 200", st == 200, b)
pr = b["prompt_filter_results"][0]
ok("prompt_filter_results shape", pr["prompt_index"] == 0 and all(pr["content_filter_results"][c] == {"filtered": False, "severity": "safe"} for c in CATS), pr)
ok("jailbreak annotation", pr["content_filter_results"]["jailbreak"] == {"filtered": False, "detected": False}, pr)
cr = b["choices"][0]["content_filter_results"]
ok("choice annotation", all(cr[c]["filtered"] is False for c in CATS) and "jailbreak" not in cr, cr)
ok("content passes", b["choices"][0]["message"]["content"].startswith("This is a mock reply"), b)

# 2. harmful prompt: 400 content_filter, nothing sent upstream
before = mock_count()
st, b = chat("demo", VIOLENT)
ok("harmful prompt 400", st == 400, b)
e = b["error"]
ok("400 body (azure-wire 2.3)", e["code"] == "content_filter" and e["param"] == "prompt" and e["type"] is None and e["status"] == 400 and "linkid=2198766" in e["message"], e)
inner = e["innererror"]
ok("innererror.content_filter_result", inner["code"] == "ResponsibleAIPolicyViolation" and inner["content_filter_result"]["violence"]["filtered"] is True and inner["content_filter_result"]["violence"]["severity"] in ("medium", "high"), inner)
ok("blocked prompt never reached the backend", mock_count() == before, (before, mock_count()))
st, b = chat("demo", VIOLENT, stream=True)
ok("stream request blocked with 400 JSON before any SSE", st == 400 and isinstance(b, dict) and b["error"]["code"] == "content_filter", b)
sev = inner["content_filter_result"]["violence"]["severity"]

# 3. threshold / blocking / enabled semantics (lenient: violence prompt annotate-only at high; hate disabled)
st, b = chat("lenient", VIOLENT)
ok("non-blocking category passes", st == 200, b)
pcr = b["prompt_filter_results"][0]["content_filter_results"]
ok("annotated with its severity, not filtered", pcr["violence"] == {"filtered": False, "severity": sev}, pcr)
ok("disabled category absent", "hate" not in pcr and "sexual" in pcr, pcr)
ok("disabled in both directions", "hate" not in b["choices"][0]["content_filter_results"], b["choices"][0])

# 4. completions: per-prompt results and the blocked prompt's index
st, b = post("/v1/completions", {"model": "demo", "prompt": [BENIGN, VIOLENT]})
ok("completions: harmful second prompt -> 400", st == 400 and b["error"]["innererror"]["content_filter_result"]["violence"]["filtered"], b)
st, b = post("/v1/completions", {"model": "demo", "prompt": [BENIGN, "Tell me about Paris."]})
ok("completions: one result per prompt", st == 200 and [p["prompt_index"] for p in b["prompt_filter_results"]] == [0, 1], b)

# 5. completion filtered, n > 1: only that choice
st, b = chat("demo", BENIGN, n=2, mock_reply=["Paris is the capital of France.", VIOLENT])
ok("n=2 200", st == 200, b)
c0, c1 = b["choices"]
ok("choice 0 finishes normally", c0["finish_reason"] == "stop" and c0["message"]["content"] == "Paris is the capital of France.", c0)
ok("choice 1 content_filter, content withheld", c1["finish_reason"] == "content_filter" and c1["message"]["content"] is None, c1)
ok("choice 1 annotation filtered", c1["content_filter_results"]["violence"]["filtered"] is True, c1)
ok("prompt annotations on a filtered answer", "prompt_filter_results" in b, b)
st, b = post("/v1/completions", {"model": "demo", "prompt": BENIGN, "mock_reply": VIOLENT})
ok("completions: blocked completion text withheld", st == 200 and b["choices"][0]["finish_reason"] == "content_filter" and b["choices"][0]["text"] == "", b)

# 6. normalisation evasions still caught at the gateway
zw = "\u200b".join(VIOLENT)
st, b = chat("demo", zw)
ok("zero-width evasion blocked", st == 400, b)
spaced = "I will s t a b you and b u r n your house down and k i l l your whole family tonight."
st, b = chat("demo", spaced)
ok("spaced-letters evasion blocked", st == 400, b)

# 7. content parts: text screened, images counted as unscreened
parts = [{"type": "text", "text": VIOLENT}, {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]
st, b = post(CHAT, {"model": "demo", "messages": [{"role": "user", "content": parts}]})
ok("text part screened", st == 400, b)
parts[0]["text"] = BENIGN
st, b = post(CHAT, {"model": "demo", "messages": [{"role": "user", "content": parts}]})
ok("image part unscreened and said so", st == 200 and b["prompt_filter_results"][0]["content_filter_results"].get("unscreened_parts") == 1, b)

# 8. a check that cannot run (text over safety.max_text_bytes = 4096)
big = ("The weather is mild today. " * 200)
st, b = chat("demo", big)
ok("blocking check that cannot run: 500, not sent", st == 500 and b["error"]["code"] == "content_filter_error", b)
st, b = chat("annotate", big)
ok("annotate-only check that cannot run: passes", st == 200, b)
ok("... with content_filter_results.error", b["prompt_filter_results"][0]["content_filter_results"].get("error") == {"code": "content_filter_error", "message": "The contents are not filtered"}, b)

# 9. PII: placeholder round trip, redact, block, annotate offsets
msg = "Please email jane.roe@example.com about claim 4. Her SSN is 123-45-6789."
st, b = chat("pii", msg, mock_reply="__echo__")
ok("placeholder: 200", st == 200, b)
ok("placeholders restored in the answer", b["choices"][0]["message"]["content"] == msg, b["choices"][0])
ppii = b["prompt_filter_results"][0]["content_filter_results"]["pii"]
ok("prompt pii annotation", ppii["detected"] and ppii["action"] == "placeholder" and ppii["types"] == {"EMAIL": 1, "US_SSN": 1}, ppii)
cpii = b["choices"][0]["content_filter_results"]["pii"]
ok("completion pii annotate with offsets", cpii["action"] == "annotate" and {"type": "EMAIL", "offset": 13, "length": 20} in cpii["entities"], cpii)
st, b = chat("pii-redact", msg, mock_reply="__echo__")
ok("redact: the backend saw labels only", st == 200 and b["choices"][0]["message"]["content"] == "Please email [EMAIL] about claim 4. Her SSN is [US_SSN].", b)
st, b = chat("pii-block", msg)
ok("pii block: 400", st == 400 and b["error"]["innererror"]["content_filter_result"]["pii"]["filtered"] is True, b)
st, b = chat("pii-block", BENIGN)
ok("pii block: clean prompt passes", st == 200, b)
st, b = chat("pii", msg, mock_reply="__echo__", stream=True)
text = "".join((json.loads(e)["choices"][0]["delta"].get("content") or "") for e in b[1:] if e != "[DONE]" and json.loads(e)["choices"])
ok("placeholders restored in a stream", st == 200 and text == msg, text)

# an identifier split across upstream chunks (one word each) is redacted before it is released
st, ev = chat("pii-redact", BENIGN, stream=True, mock_reply="Her number is 212 555 0147 today. Call her soon.")
text = "".join((json.loads(e)["choices"][0].get("delta", {}).get("content") or "") for e in ev[1:] if e != "[DONE]" and json.loads(e)["choices"])
ok("PII split across stream chunks redacted", st == 200 and "[PHONE]" in text and "0147" not in text, text)

# 10. streaming, default mode
st, ev = chat("stream", BENIGN, stream=True, n=2, mock_reply=["Paris is the capital. It is in France. It has many museums and parks.", "Here is a calm opening sentence with several ordinary words in it. " + VIOLENT + " More text after the violation."])
ok("stream 200", st == 200 and ev[-1] == "[DONE]", ev[-3:])
first = json.loads(ev[0])
ok("first frame: prompt annotations, empty choices", first["choices"] == [] and first["id"] == "" and first["object"] == "" and first["created"] == 0 and "prompt_filter_results" in first, first)
chunks = [json.loads(e) for e in ev[1:-1]]
by = {0: "", 1: ""}
fin = {}
for c in chunks:
    for ch in c["choices"]:
        by[ch["index"]] += ch.get("delta", {}).get("content") or ""
        if ch.get("finish_reason"):
            fin[ch["index"]] = ch["finish_reason"]
ok("choice 0 released whole", by[0] == "Paris is the capital. It is in France. It has many museums and parks.", by[0])
ok("choice 0 stop", fin.get(0) == "stop", fin)
ok("choice 1 stopped by the filter", fin.get(1) == "content_filter", fin)
ok("nothing after the violation released", "More text after" not in by[1] and "stab" not in by[1], by[1])
content_chunks = [ch for c in chunks for ch in c["choices"] if ch.get("delta", {}).get("content")]
ok("content chunks carry content_filter_results", content_chunks and all("content_filter_results" in ch for ch in content_chunks), content_chunks[:2])
ok("windows, not tokens", len(content_chunks) < 12, len(content_chunks))
# a harmful phrase split across upstream chunks (one word per chunk) is judged whole
st, ev = chat("stream", BENIGN, stream=True, mock_reply=VIOLENT)
fr = [ch.get("finish_reason") for e in ev[1:-1] for ch in json.loads(e)["choices"]]
ok("split across chunks still caught", "content_filter" in fr, ev)

# 11. streaming, asynchronous_filter mode
st, ev = chat("async", BENIGN, stream=True, mock_reply="One calm sentence here. Another calm sentence follows. " + VIOLENT + " " + "Trailing words keep coming. " * 60)
objs = [json.loads(e) for e in ev[1:] if e != "[DONE]"]
ann = [o for o in objs if o["id"] == "" and o["choices"] and "content_filter_offsets" in o["choices"][0]]
text_chunks = [o for o in objs if o["id"] != ""]
ok("async: text relayed verbatim, unannotated", text_chunks and all("content_filter_results" not in ch for o in text_chunks for ch in o["choices"]), text_chunks[:1])
ok("async: annotation frames with offsets", len(ann) >= 2 and all(o["object"] == "" and o["created"] == 0 and o["usage"] is None for o in ann), ann[:1])
chk = [o["choices"][0]["content_filter_offsets"]["check_offset"] for o in ann]
ok("async: check_offset non-decreasing", chk == sorted(chk), chk)
ok("async: violation frame", ann[-1]["choices"][0]["finish_reason"] == "content_filter", ann[-1])
sent = "".join(ch["delta"].get("content") or "" for o in text_chunks for ch in o["choices"])
vio_at = sent.find("stab")
ok("async: stream stopped within 1000 chars of the violation", vio_at >= 0 and len(sent) - vio_at <= 1000 and ev[-1] == "[DONE]", (vio_at, len(sent)))

# 12. blocklists (created through the Content Safety API): prompt, completion, stream split across chunks
def cs(method, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path + "?api-version=2024-09-01", json.dumps(body) if body is not None else None,
              {"content-type": "application/merge-patch+json" if method == "PATCH" else "application/json",
               "Ocp-Apim-Subscription-Key": admin_key})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data
st, _ = cs("PATCH", "/contentsafety/text/blocklists/clinic-terms", {"description": "test"})
ok("blocklist created", st in (200, 201), st)
st, _ = cs("POST", "/contentsafety/text/blocklists/clinic-terms:addOrUpdateBlocklistItems",
           {"blocklistItems": [{"text": "zorblax"}, {"text": "project nightingale"}]})
ok("blocklist items added", st == 200, st)
cs("PATCH", "/contentsafety/text/blocklists/watch", {})
cs("POST", "/contentsafety/text/blocklists/watch:addOrUpdateBlocklistItems", {"blocklistItems": [{"text": "quarterly"}]})
st, b = chat("bl", "Tell me about Zorblax please.")
ok("blocklist term in the prompt -> 400", st == 400 and b["error"]["innererror"]["content_filter_result"]["custom_blocklists"] == {"filtered": True, "details": [{"filtered": True, "id": "clinic-terms"}]}, b)
st, b = chat("bl", "Tell me about zor\u200bblax please.")
ok("blocklist evasion (zero-width) still caught", st == 400, b)
st, b = chat("bl", "Tell me about Z O R B L A X please.")
ok("blocklist evasion (spaced letters) still caught", st == 400, b)
st, b = chat("bl", "How were the quarterly numbers?")
cbl = b["prompt_filter_results"][0]["content_filter_results"].get("custom_blocklists") if st == 200 else None
ok("non-blocking list annotates only", st == 200 and cbl == {"filtered": False, "details": [{"filtered": False, "id": "watch"}]}, b)
st, b = chat("bl", BENIGN, mock_reply="The answer mentions Project Nightingale in passing.")
ok("blocklist term in the completion -> content_filter", st == 200 and b["choices"][0]["finish_reason"] == "content_filter" and b["choices"][0]["content_filter_results"]["custom_blocklists"]["filtered"], b)
long_answer = "This answer is long enough to need several windows of text. " * 2 + "The code name is project nightingale, kept quiet. " + "More words follow here. " * 4
st, ev = chat("bl", BENIGN, stream=True, mock_reply=long_answer)
ev = ev if isinstance(ev, list) else []
body = "".join((json.loads(e)["choices"][0].get("delta", {}).get("content") or "") for e in ev[1:] if e != "[DONE]" and json.loads(e)["choices"])
fr = [ch.get("finish_reason") for e in ev[1:] if e != "[DONE]" for ch in json.loads(e)["choices"]]
ok("blocklist term split across chunks and windows caught in a stream", "content_filter" in fr and "nightingale" not in body.lower(), (fr, body))
st, b = chat("bl-missing", BENIGN)
ok("a blocking list that does not exist: fail closed", st == 500 and b["error"]["code"] == "content_filter_error", b)

# 13. embeddings are not filtered
st, b = post("/v1/embeddings", {"model": "demo", "input": VIOLENT})
ok("embeddings pass unfiltered", st == 200 and "prompt_filter_results" not in b, b)

sys.exit(1 if fails else 0)
PY
rc=$?
cat "$T/py.log"
if [ "$rc" -eq 0 ]; then ok "content filtering"; else fail "content filtering" "see above"; fi

# no prompt or completion text in custos's log
if grep -q "stab you\|jane.roe\|123-45-6789" "$T/custos.log"; then fail "no content in the log"; else ok "no content in the log"; fi
finish
