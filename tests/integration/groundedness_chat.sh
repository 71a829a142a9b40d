#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Groundedness on the chat path (docs/content-filtering.md "Groundedness") and the reasoning mode of
# text:detectGroundedness (docs/content-safety-api.md "Reasoning"), against custos-mockllm (answers scripted with
# "mock_reply"; the mock's judge answers custos' reasoning prompt by a fixed rule):
# number / date / negation / dosage contradictions flagged, a supported paraphrase and multi-source support not,
# tool-message, <documents> and "on your data" citation sources (ondata_backend.py), no sources -> no annotation, action block -> finish_reason content_filter
# (whole answers and held streams), streaming annotation frames (default and asynchronous_filter), the request
# record's safety.ungrounded; reasoning: reasons per span, llmResource naming a deployment, a judge answering
# garbage or a made-up quote -> 502 (its text never logged), the judge call recorded metadata-only.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOCK_PORT=$(free_port)
SLOW_PORT=$(free_port)
BAD_PORT=$(free_port)
ODD_PORT=$(free_port)
DOWN_PORT=$(free_port) # nothing listens there
GW_PORT=$(free_port)
basic_config "$GW_PORT" "$MOCK_PORT" "$(cat <<YAML
  - name: judge-slow
    model: gpt-4o
    backends: [slow]
  - name: judge-500
    model: gpt-4o
    backends: [bad]
  - name: judge-down
    model: gpt-4o
    backends: [down]
  - name: g-ondata
    model: gpt-4o
    backends: [ondata]
    rai_policy: g-annotate
YAML
)
$(mock_deployments g-annotate:g-annotate g-block:g-block g-medical:g-medical g-async:g-async)
$(cat <<'YAML'
  - name: judge
    model: gpt-4o
    backends: [mock]
  - name: judge2
    model: gpt-4o
    backends: [mock]
safety:
  groundedness: {reasoning_deployment: judge, reasoning_timeout_ms: 2000}
rai_policies:
  - name: g-annotate
    prompt_shields: {jailbreak: annotate}
    streaming: {window_min_chars: 10, window_max_chars: 200, context_chars: 50}
    groundedness: {enabled: true}
  - name: g-block
    prompt_shields: {jailbreak: annotate}
    streaming: {window_min_chars: 10, window_max_chars: 200, context_chars: 50}
    groundedness: {enabled: true, action: block}
  - name: g-medical
    prompt_shields: {jailbreak: annotate}
    groundedness: {enabled: true, domain: Medical, threshold: 0.5}
  - name: g-async
    mode: asynchronous_filter
    prompt_shields: {jailbreak: annotate}
    groundedness: {enabled: true, action: block}
diagnostics:
  spool_dir: spool
  sinks:
    - type: file
      name: reqlog
      path: records.jsonl
YAML
)"
# two more backends for the judge's failures: a slow one (past reasoning_timeout_ms) and one answering 500
python3 - "$T/custos.yaml" "$MOCK_PORT" "$SLOW_PORT" "$BAD_PORT" "$ODD_PORT" "$DOWN_PORT" <<'PY'
import sys
p, mock, slow, bad, odd, down = sys.argv[1:]
y = open(p).read()
at = '    url: "http://127.0.0.1:%s"\n' % mock
extra = ''.join('  - {name: %s, provider: openai, url: "http://127.0.0.1:%s"}\n' % nb for nb in (("slow", slow), ("bad", bad), ("ondata", odd), ("down", down)))
open(p, "w").write(y.replace(at, at + extra, 1))
PY
start_mock "$MOCK_PORT"
start_mock "$SLOW_PORT" --fault "latency=6000"
start_mock "$BAD_PORT" --fault "status=500"
python3 "$(dirname "${BASH_SOURCE[0]}")/ondata_backend.py" "$ODD_PORT" >"$T/ondata.log" 2>&1 &
PIDS+=($!)
wait_port "$ODD_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"
U="http://127.0.0.1:$GW_PORT/v1/chat/completions"
K=(-H "Authorization: Bearer $KEY" -H "Content-Type: application/json")
jf() { jfield "$T/$1" "$2"; }
# body DEPLOYMENT REPLY MESSAGES_JSON [EXTRA]: a chat request whose answer is REPLY
body() { printf '{"model":"%s","mock_reply":%s,"messages":%s%s}' "$1" "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")" "$3" "${4:-}"; }
TOWER='The Eiffel Tower is 330 metres tall and was completed in 1889 in Paris.'
# tool-call conversation: the tool's output is the source
toolmsgs() {
  python3 - "$1" <<'PY'
import json, sys
print(json.dumps([
    {"role": "user", "content": "How tall is the Eiffel Tower?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "lookup", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": sys.argv[1]}]))
PY
}
M_TOWER=$(toolmsgs "$TOWER")
# ask NAME DEPLOYMENT REPLY MESSAGES_JSON [EXTRA]: sends body(...) to the chat route; prints the status
ask() { req "$1" "${K[@]}" -d "$(body "$2" "$3" "$4" "${5:-}")" "$U"; }
um() { jf "$1.body" "choices.0.content_filter_results.ungrounded_material.$2"; }

# ---- whole answers, action annotate ----
check "number contradiction: 200" 200 "$(ask num g-annotate 'The Eiffel Tower is 450 metres tall. It was completed in 1889.' "$M_TOWER")"
check "  ungrounded_material.detected" True "$(um num detected)"
check "  not filtered (annotate)" False "$(um num filtered)"
check "  first span: the contradicting sentence (code points 0-36)" "0 36" "$(um num details.0.completion_start_offset) $(um num details.0.completion_end_offset)"
check "  answer delivered" "stop" "$(jf num.body choices.0.finish_reason)"
check "  content kept" "The Eiffel Tower is 450 metres tall. It was completed in 1889." "$(jf num.body choices.0.message.content)"
check "date contradiction flagged" True "$(ask date g-annotate 'The Eiffel Tower was completed in 1925. It is 330 metres tall.' "$M_TOWER" >/dev/null; um date detected)"
check "  span is the date sentence" "0 39" "$(um date details.0.completion_start_offset) $(um date details.0.completion_end_offset)"
M_MED=$(toolmsgs 'The medication is safe to take with food. It does not cause drowsiness.')
check "negation flagged" True "$(ask neg g-annotate 'The medication causes drowsiness. It is safe to take with food.' "$M_MED" >/dev/null; um neg detected)"
M_DOSE=$(toolmsgs 'The recommended dose of amoxicillin for adults is 500 mg every 8 hours.')
check "dosage flagged (Medical domain)" True "$(ask dose g-medical 'The recommended adult dose of amoxicillin is 900 mg every 8 hours.' "$M_DOSE" >/dev/null; um dose detected)"
check "supported paraphrase not flagged" False "$(ask para g-annotate 'Completed in 1889, the Eiffel Tower in Paris is 330 metres tall.' "$M_TOWER" >/dev/null; um para detected)"
check "  no details" "[]" "$(um para details)"
M_TWO=$(python3 -c 'import json; print(json.dumps([{"role":"user","content":"Tell me about the tower."},{"role":"tool","tool_call_id":"a","content":"The Eiffel Tower was completed in 1889."},{"role":"tool","tool_call_id":"b","content":"The tower is 330 metres tall and stands in Paris."}]))')
check "multi-source support not flagged" False "$(ask multi g-annotate 'The Eiffel Tower was completed in 1889. It is 330 metres tall and stands in Paris.' "$M_TWO" >/dev/null; um multi detected)"
M_DOCS=$(python3 -c 'import json,sys; print(json.dumps([{"role":"user","content":"Answer from the documents. <documents>"+sys.argv[1]+"</documents> How tall is it?"}]))' "$TOWER")
check "<documents> sources: contradiction flagged" True "$(ask docs g-annotate 'The Eiffel Tower is 450 metres tall.' "$M_DOCS" >/dev/null; um docs detected)"
check "<documents> sources: support not flagged" False "$(ask docs2 g-annotate 'The Eiffel Tower is 330 metres tall.' "$M_DOCS" >/dev/null; um docs2 detected)"
check "no sources: 200" 200 "$(ask nosrc g-annotate 'The Eiffel Tower is 450 metres tall.' '[{"role":"user","content":"How tall is the Eiffel Tower?"}]')"
check "  no ungrounded_material annotation" "" "$(um nosrc detected)"
check "  the other annotations are there" False "$(jf nosrc.body choices.0.content_filter_results.hate.filtered)"
check "policy without groundedness: no annotation" "" "$(ask off demo 'The Eiffel Tower is 450 metres tall.' "$M_TOWER" >/dev/null; um off detected)"

M_Q='[{"role":"user","content":"How tall is the Eiffel Tower?"}]'
check "on your data: citations in the answer are sources" True "$(ask od1 g-ondata 'The Eiffel Tower is 450 metres tall.' "$M_Q" >/dev/null; um od1 detected)"
check "  supported answer not flagged" False "$(ask od2 g-ondata 'The Eiffel Tower is 330 metres tall.' "$M_Q" >/dev/null; um od2 detected)"
check "  citations passed on" "Eiffel Tower" "$(jf od1.body choices.0.message.context.citations.0.title)"

# ---- action block ----
check "block: 200" 200 "$(ask blk g-block 'The Eiffel Tower is 450 metres tall.' "$M_TOWER")"
check "  finish_reason content_filter" content_filter "$(jf blk.body choices.0.finish_reason)"
check "  content withheld" None "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$T/blk.body")"
check "  filtered and detected" "True True" "$(um blk filtered) $(um blk detected)"
check "block, supported answer: delivered" "stop" "$(ask blk2 g-block 'The Eiffel Tower is 330 metres tall.' "$M_TOWER" >/dev/null; jf blk2.body choices.0.finish_reason)"
check "  not filtered" False "$(um blk2 filtered)"

# ---- streaming ----
sse_choices() { # FILE: one line per data event with choices: finish_reason|content|ungrounded_material json
  python3 - "$1" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.strip()
    if not line.startswith("data: ") or line == "data: [DONE]":
        continue
    ev = json.loads(line[6:])
    for c in ev.get("choices", []):
        d = c.get("delta") or {}
        um = (c.get("content_filter_results") or {}).get("ungrounded_material")
        print("%s|%s|%s" % (c.get("finish_reason"), d.get("content") or "", json.dumps(um, sort_keys=True) if um else ""))
PY
}
# sask NAME DEPLOYMENT REPLY MESSAGES_JSON: ask with "stream":true; prints the status and writes the stream's choices
# (sse_choices) to $T/NAME.ev
sask() {
  local st
  st=$(ask "$1" "$2" "$3" "$4" ',"stream":true')
  sse_choices "$T/$1.body" >"$T/$1.ev"
  echo "$st"
}
stext() { cut -d'|' -f2 "$T/$1.ev" | tr -d '\n'; } # NAME: the text the stream delivered
slast() { grep -v '^$' "$T/$1.body" | tail -1 | tr -d '\r'; } # NAME: the stream's last line
check "stream annotate: 200" 200 "$(sask s1 g-annotate 'The Eiffel Tower is 450 metres tall. It was completed in 1889.' "$M_TOWER")"
check "  text delivered" "The Eiffel Tower is 450 metres tall. It was completed in 1889." "$(stext s1)"
check_contains "  annotation frame with ungrounded_material" '"completion_start_offset": 0' "$(cat "$T/s1.ev")"
check_contains "  detected" '"detected": true' "$(cat "$T/s1.ev")"
check "  stream ends with [DONE]" "data: [DONE]" "$(slast s1)"
check "stream block: 200" 200 "$(sask s2 g-block 'The Eiffel Tower is 450 metres tall. It was completed in 1889.' "$M_TOWER")"
check "  no text sent (held, then withheld)" "" "$(stext s2)"
check_contains "  finish_reason content_filter" 'content_filter|' "$(cat "$T/s2.ev")"
check_contains "  filtered" '"filtered": true' "$(cat "$T/s2.ev")"
check "  [DONE]" "data: [DONE]" "$(slast s2)"
check "stream block, supported: 200" 200 "$(sask s3 g-block 'The Eiffel Tower is 330 metres tall. It was completed in 1889.' "$M_TOWER")"
check "  text released whole after the check" "The Eiffel Tower is 330 metres tall. It was completed in 1889." "$(stext s3)"
check_contains "  annotation: not detected" '"detected": false' "$(cat "$T/s3.ev")"
check_contains "  finish_reason stop" 'stop|' "$(cat "$T/s3.ev")"
check "stream asynchronous_filter: 200" 200 "$(sask s4 g-async 'The Eiffel Tower is 450 metres tall.' "$M_TOWER")"
check "  text relayed at once (async cannot un-send)" "The Eiffel Tower is 450 metres tall." "$(stext s4)"
check_contains "  annotation frame: detected, filtered, finish_reason content_filter" '"completion_start_offset": 0}], "detected": true, "filtered": true}' "$(grep '^content_filter||' "$T/s4.ev")"
check "  [DONE]" "data: [DONE]" "$(slast s4)"

sask od3 g-ondata 'The Eiffel Tower is 450 metres tall.' "$M_Q" >/dev/null
check "on your data, streamed: text delivered" "The Eiffel Tower is 450 metres tall." "$(stext od3)"
check_contains "  delta.context citations are sources: detected" '"detected": true' "$(cat "$T/od3.ev")"
check_contains "  context passed on to the client" '"citations"' "$(cat "$T/od3.body")"

# ---- reasoning (text:detectGroundedness) ----
G="http://127.0.0.1:$GW_PORT/contentsafety/text:detectGroundedness?api-version=2024-09-15-preview"
GK=(-H "api-key: $KEY" -H "Content-Type: application/json")
TXT='The Eiffel Tower is 450 metres tall. It is in Paris. It opened in 1889.'
# reason NAME TEXT [EXTRA]: text:detectGroundedness with reasoning, TEXT against the source $TOWER, EXTRA appended
# to the body's members; prints the status
reason() { req "$1" "${GK[@]}" -d '{"text":"'"$2"'","groundingSources":["'"$TOWER"'"],"reasoning":true'"${3:-}"'}' "$G"; }
check "reasoning: 200" 200 "$(reason r1 "$TXT")"
check "  ungroundedDetected" True "$(jf r1.body ungroundedDetected)"
check "  one detail" 1 "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["ungroundedDetails"]))' "$T/r1.body")"
check "  the span" "The Eiffel Tower is 450 metres tall. 0 0 0 36 36 36" "$(python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))["ungroundedDetails"][0]; o,l=d["offset"],d["length"]
print(d["text"], o["utf8"], o["utf16"], o["codePoint"], l["utf8"], l["utf16"], l["codePoint"])' "$T/r1.body")"
check "  reason from the judge" "The sources do not mention 450." "$(jf r1.body ungroundedDetails.0.reason)"
check "  percentage" ok "$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["ungroundedPercentage"]; print("ok" if abs(p-36/71)<0.01 else p)' "$T/r1.body")"
check "reasoning, all grounded: not detected" "False []" "$(reason r2 'It is 330 metres tall.' >/dev/null; echo "$(jf r2.body ungroundedDetected) $(jf r2.body ungroundedDetails)")"
check "llmResource names a deployment: 200" 200 "$(reason r3 'It is 331 metres tall.' ',"llmResource":{"resourceType":"AzureOpenAI","azureOpenAIEndpoint":"https://x.openai.azure.com/","azureOpenAIDeploymentName":"judge2"}')"
check "  reason" "The sources do not mention 331." "$(jf r3.body ungroundedDetails.0.reason)"
check "fenced verdict accepted" 200 "$(reason r4 'MOCK_JUDGE_FENCED It is 331 metres tall.')"
check "judge answers garbage: 502" 502 "$(reason r5 'MOCK_JUDGE_GARBAGE It is 331 metres tall.')"
check "  BadGateway" BadGateway "$(jf r5.body error.code)"
check_contains "  names the deployment" "judge deployment 'judge'" "$(jf r5.body error.message)"
check "judge quotes text that is not there: 502" 502 "$(reason r6 'MOCK_JUDGE_BADQUOTE It is 331 metres tall.')"
# llm NAME DEPLOYMENT: reason, with llmResource naming DEPLOYMENT as the judge
llm() { reason "$1" 'It is 331 metres tall.' ',"llmResource":{"resourceType":"AzureOpenAI","azureOpenAIDeploymentName":"'"$2"'"}'; }
check "judge slower than reasoning_timeout_ms: 504" 504 "$(llm r8 judge-slow)"
check "  GatewayTimeout" GatewayTimeout "$(jf r8.body error.code)"
check "judge answering 500: 502" 502 "$(llm r9 judge-500)"
check_contains "  names the status" "HTTP 500" "$(jf r9.body error.message)"
check "judge backend down (retried through the pipeline): 503" 503 "$(llm r10 judge-down)"
check "  ServiceUnavailable" ServiceUnavailable "$(jf r10.body error.code)"
check_contains "  the pipeline's reason (attempts, boundary)" "attempts" "$(jf r10.body error.message)"
check "bad llmResource: 400" 400 "$(req r7 "${GK[@]}" -d '{"text":"x","groundingSources":["y"],"reasoning":true,"llmResource":{"resourceType":"OpenAI"}}' "$G")"
if grep -q 'Looks grounded to me\|never had\|331 metres' "$T/custos.log"; then fail "judge text never logged"; else ok "judge text never logged"; fi

# ---- request records (metadata only) ----
sleep 0.5
python3 - "$T/records.jsonl" >"$T/rec.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    c = r["custos"]
    print(r["operationName"], r["properties"]["modelDeploymentName"], c["authType"], c["status"],
          (c.get("safety") or {}).get("ungrounded"))
PY
check_contains "judge call recorded (internal, deployment judge)" "ChatCompletions_Create judge internal 200" "$(cat "$T/rec.txt")"
check_contains "detectGroundedness recorded" "ContentSafety_DetectGroundedness" "$(cat "$T/rec.txt")"
check_contains "chat record: safety.ungrounded true" "ChatCompletions_Create g-annotate api_key 200 True" "$(cat "$T/rec.txt")"
check_contains "chat record: safety.ungrounded false" "ChatCompletions_Create g-annotate api_key 200 False" "$(cat "$T/rec.txt")"
if grep -q 'Eiffel\|metres' "$T/records.jsonl"; then fail "records hold no content"; else ok "records hold no content"; fi
stop_custos_clean
finish
