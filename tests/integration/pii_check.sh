#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# custos check fills "pii" (fixed shape type/start/end, code points of the original text) and custos eval --task pii
# meets the quality bar on the generated set with hard negatives: structured recall >= 0.99 at precision >= 0.95.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=$CUSTOS_SRC/models/harm.model
[ -f "$MODEL" ] || { echo "ok - skipped: no harm model"; exit 0; }

# 1. check: the pii array
python3 - "$T/in.jsonl" <<'PY'
import json, sys
rows = [{"id": "a", "text": "Zoë 😀 mail zoe@example.com, SSN 123-45-6789"},
        {"id": "b", "text": "ISBN 978-3-16-148410-0, version 10.4.2, order #100234987"}]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
PY
"$CUSTOS_BIN" check --model "$MODEL" <"$T/in.jsonl" >"$T/out.jsonl" 2>"$T/check.err"
check "check exit" 0 $?
out=$(python3 - "$T/out.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
print(json.dumps(rows[0]["pii"], separators=(",", ":")), json.dumps(rows[1]["pii"]))
PY
)
check "check pii spans" '[{"type":"EMAIL","start":11,"end":26},{"type":"US_SSN","start":32,"end":43}] []' "$out"

# 2. eval on the generated set
python3 "$CUSTOS_SRC/tests/tools/pii_gen.py" 3000 11 >"$T/gen.jsonl"
"$CUSTOS_BIN" eval --task pii "$T/gen.jsonl" >"$T/eval.txt" 2>&1
check "eval exit" 0 $?
line=$(grep '^structured' "$T/eval.txt")
read -r _ gold pred p r _ <<<"$line"
python3 -c "import sys; p,r=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if p>=0.95 and r>=0.99 else 1)" "$p" "$r"
check "structured P>=0.95 R>=0.99 (P=$p R=$r gold=$gold)" 0 $?
check_contains "eval per type" "MEDICARE_MBI" "$(cat "$T/eval.txt")"
printf '%s\n' '{"text":"Anna uses Photoshop","spans":[{"type":"PRODUCT","start":10,"end":19}]}' >"$T/product.jsonl"
check_contains "PRODUCT reported as not covered" "not covered" "$("$CUSTOS_BIN" eval --task pii "$T/product.jsonl")"
# the name / address tagger (models/pii_ner.model) in custos check and custos eval
if [ -f "$CUSTOS_SRC/models/pii_ner.model" ]; then
    printf '%s\n' '{"id":"n","text":"Patient John Smith was seen at 42 Oak Street yesterday."}' >"$T/ner.jsonl"
    out=$(CUSTOS_MODEL_DIR="$CUSTOS_SRC/models" "$CUSTOS_BIN" check --checks pii <"$T/ner.jsonl")
    check "check tagger spans" '{"id":"n","pii":[{"type":"PERSON","start":8,"end":18},{"type":"STREET_ADDRESS","start":31,"end":44}]}' "$out"
    printf '%s\n' '{"text":"Patient John Smith was seen at 42 Oak Street yesterday.","spans":[{"type":"PERSON","start":8,"end":18}]}' >"$T/person.jsonl"
    line=$(grep '^PERSON' <("$CUSTOS_BIN" eval --task pii --model "$CUSTOS_SRC/models/pii_ner.model" "$T/person.jsonl"))
    check "eval PERSON" "PERSON 1 1 1.0000 1.0000 1.0000 1.0000 1.0000 1.0000" "$(echo $line)"
    line=$(grep '^PERSON' <("$CUSTOS_BIN" eval --task pii --model none "$T/person.jsonl"))
    check "eval --model none: structured only" "PERSON 1 0 0.0000 0.0000 0.0000 0.0000 0.0000 0.0000" "$(echo $line)"
fi
# exact vs overlap matching: the gold span is one code point short of the e-mail address
printf '%s\n' '{"text":"é mail a@b.io","spans":[{"type":"EMAIL","start":7,"end":12}]}' >"$T/ov.jsonl"
line=$(grep '^EMAIL' <("$CUSTOS_BIN" eval --task pii "$T/ov.jsonl"))
check "exact miss, overlap hit" "EMAIL 1 1 0.0000 0.0000 0.0000 1.0000 1.0000 1.0000" "$(echo $line)"
rc=0; "$CUSTOS_BIN" eval --task pii --mrn-format "MRN-" "$T/gen.jsonl" >/dev/null 2>&1 || rc=$?
check "bad mrn format is a usage error" 2 "$rc"
finish
