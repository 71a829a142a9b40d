#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# POST /contentsafety/text:detectGroundedness?api-version=2024-09-15-preview with curl (docs/content-safety-api.md):
# response shape and offsets (UTF-8, UTF-16, code points), Generic / Medical, Summarization / QnA, limits, errors,
# reasoning:true without a judge deployment answered 400 (groundedness_chat.sh tests the judge), metrics.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
basic_config "$GW_PORT" "$MOCK_PORT"
start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"
B="http://127.0.0.1:$GW_PORT/contentsafety/text:detectGroundedness"
V="api-version=2024-09-15-preview"
K=(-H "api-key: $KEY" -H "Content-Type: application/json")
jf() { jfield "$T/$1" "$2"; }

SRC='"groundingSources":["The patient was started on metformin 500 mg twice daily at the Café Müller clinic. Her HbA1c was 8.1 % in March."]'
check "supported summary: 200" 200 "$(req ok "${K[@]}" -d '{"domain":"Generic","task":"Summarization","text":"Metformin 500 mg twice daily was started.",'"$SRC"'}' "$B?$V")"
check "  ungroundedDetected false" False "$(jf ok.body ungroundedDetected)"
check "  ungroundedPercentage 0" 0 "$(jf ok.body ungroundedPercentage)"
check "  no details" "[]" "$(jf ok.body ungroundedDetails)"

# "Café Müller" (é, ü: 2 bytes each) and an emoji (4 bytes, 2 UTF-16 units) before the ungrounded sentence
TXT='Metformin 500 mg twice daily was started at the Café Müller clinic. 😀 The dose was raised to 2000 mg after one week.'
check "dose contradiction: 200" 200 "$(req bad "${K[@]}" -d '{"text":"'"$TXT"'",'"$SRC"'}' "$B?$V")"
check "  ungroundedDetected true" True "$(jf bad.body ungroundedDetected)"
check "  one detail" 1 "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["ungroundedDetails"]))' "$T/bad.body")"
exp=$(python3 - "$TXT" <<'PY'
import sys
t = sys.argv[1]
s = t[t.index("\U0001F600"):]
pre = t[: t.index("\U0001F600")]
u16 = lambda x: len(x.encode("utf-16-le")) // 2
print(s, len(pre.encode()), u16(pre), len(pre), len(s.encode()), u16(s), len(s))
PY
)
got=$(python3 - "$T/bad.body" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["ungroundedDetails"][0]
o, l = d["offset"], d["length"]
print(d["text"], o["utf8"], o["utf16"], o["codePoint"], l["utf8"], l["utf16"], l["codePoint"])
PY
)
check "  detail text and offsets in utf8 / utf16 / codePoint" "$exp" "$got"
pct=$(jf bad.body ungroundedPercentage)
check "  percentage between 0 and 1" ok "$(python3 -c "print('ok' if 0 < $pct < 1 else 'bad')")"

check "QnA with query: 200" 200 "$(req qna "${K[@]}" -d '{"task":"QnA","qna":{"query":"What was her HbA1c in March?"},"text":"Her HbA1c was 9.4 % in March.",'"$SRC"'}' "$B?$V")"
check "  wrong value detected" True "$(jf qna.body ungroundedDetected)"
check "Medical domain accepted" 200 "$(req med "${K[@]}" -d '{"domain":"Medical","text":"Her HbA1c was 8.1 % in March.",'"$SRC"'}' "$B?$V")"
check "  supported" False "$(jf med.body ungroundedDetected)"
check "multi-source support" False "$(req ms "${K[@]}" -d '{"text":"The clinic opens at 8 am. Dr. Okafor works on Tuesdays.","groundingSources":["The clinic opens at 8 am.","Dr. Okafor works on Tuesdays and Fridays."]}' "$B?$V" >/dev/null; jf ms.body ungroundedDetected)"

# errors
check "QnA without query: 400" 400 "$(req noq "${K[@]}" -d '{"task":"QnA","text":"x",'"$SRC"'}' "$B?$V")"
check "  InvalidRequestBody" InvalidRequestBody "$(jf noq.body error.code)"
check "bad domain: 400" 400 "$(req dom "${K[@]}" -d '{"domain":"Legal","text":"x",'"$SRC"'}' "$B?$V")"
check "missing groundingSources: 400" 400 "$(req nos "${K[@]}" -d '{"text":"x"}' "$B?$V")"
check "empty text: 400" 400 "$(req empty "${K[@]}" -d '{"text":"",'"$SRC"'}' "$B?$V")"
long=$(python3 -c 'print("a" * 7501)')
check "text over 7500 chars: 400" 400 "$(req long "${K[@]}" -d '{"text":"'"$long"'",'"$SRC"'}' "$B?$V")"
big=$(python3 -c 'import json; print(json.dumps(["b" * 30000, "c" * 25001]))')
check "sources over 55000 chars: 400" 400 "$(req big "${K[@]}" -d '{"text":"x","groundingSources":'"$big"'}' "$B?$V")"
check "GA api-version: 400" 400 "$(req ga "${K[@]}" -d '{"text":"x",'"$SRC"'}' "$B?api-version=2024-09-01")"
check "GET: 405" 405 "$(req get -H "api-key: $KEY" "$B?$V")"
check "no key: 401" 401 "$(req nokey -H "Content-Type: application/json" -d '{"text":"x",'"$SRC"'}' "$B?$V")"
check "reasoning true without a judge deployment: 400" 400 "$(req rs "${K[@]}" -d '{"text":"x","reasoning":true,'"$SRC"'}' "$B?$V")"
check "  InvalidRequestBody" InvalidRequestBody "$(jf rs.body error.code)"
check_contains "  says how to configure one" "reasoning_deployment" "$(jf rs.body error.message)"
check "reasoning, llmResource naming no custos deployment: 400" 400 "$(req rs2 "${K[@]}" -d '{"text":"x","reasoning":true,"llmResource":{"resourceType":"AzureOpenAI","azureOpenAIEndpoint":"https://x.openai.azure.com/","azureOpenAIDeploymentName":"nope"}'",$SRC"'}' "$B?$V")"
check "reasoning false: 200" 200 "$(req rf "${K[@]}" -d '{"text":"x","reasoning":false,'"$SRC"'}' "$B?$V")"

curl -sS --max-time 5 "http://127.0.0.1:$GW_PORT/metrics" >"$T/metrics.txt" || true
check_contains "metrics: groundedness requests counted" 'route="contentsafety_detect_groundedness",deployment="",status="200"' "$(cat "$T/metrics.txt")"
finish
