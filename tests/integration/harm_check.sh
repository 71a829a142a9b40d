#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# custos check / eval / train harm: the PRODUCT.md batch-screening contract (one output line per input line, same
# order, four category objects, error lines that never echo the text), oversize and malformed lines, eval's report,
# and the train CLI on the small fixture.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODEL=$CUSTOS_SRC/models/harm.model
FIX=$CUSTOS_SRC/tests/fixtures/harm

# 1. train CLI on the fixture (fast), twice: identical bytes
"$CUSTOS_BIN" train harm --data "$FIX" --out "$T/fx1.model" --bits 16 2>"$T/train.log"
check "train exit" 0 $?
"$CUSTOS_BIN" train harm --data "$FIX" --out "$T/fx2.model" --bits 16 2>/dev/null
check "train deterministic" "$(sha256sum <"$T/fx1.model")" "$(sha256sum <"$T/fx2.model")"
check_contains "train reads only commercial_ok files" "tiny.jsonl" "$(cat "$T/train.log")"
case "$(cat "$T/train.log")" in *excluded*) fail "excluded file read" ;; *) ok "non-commercial file skipped" ;; esac
rc=0; "$CUSTOS_BIN" train harm --out "$T/x.model" 2>/dev/null || rc=$?
check "train usage error" 2 "$rc"
[ -f "$MODEL" ] || MODEL=$T/fx1.model

# 2. check: contract shape on good and bad lines
python3 - "$T/in.jsonl" <<'PY'
import json, sys
rows = [
    {"id": "a", "text": "How do I kill a stuck Python process?", "role": "user"},
    {"id": "b", "text": "I will stab you and burn your house down", "role": "assistant"},
    {"id": 7, "text": "", "role": "document"},
    {"id": "d", "text": "no role given \u200b with a zero-width space and \u00e9"},
]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")
    f.write('{"id":"e","text":"SECRET-TEXT-1 unterminated\n')          # invalid JSON
    f.write('{"id":"f","txt":"SECRET-TEXT-2"}\n')                       # missing text
    f.write('["SECRET-TEXT-3"]\n')                                      # not an object
    f.write('{"id":"h","text":"SECRET-TEXT-4","role":"robot"}\n')       # bad role
    f.write('\n')                                                       # blank line: skipped
    f.write('{"id":"i","text":"' + "x" * (5 * 1024 * 1024) + '"}\n')    # > 4 MiB line
    f.write('{"id":"j","text":"still fine after errors"}\n')
    f.write('{"id":"k","text":"' + "a" * (3 * 1024 * 1024) + '"}\n')    # large but allowed
PY
printf '{"id":"u","text":"bad \xff\xfe bytes, no final newline"}' >> "$T/in.jsonl"
"$CUSTOS_BIN" check --model "$MODEL" < "$T/in.jsonl" > "$T/out.jsonl" 2>"$T/check.err"
check "check exit" 0 $?
python3 - "$T/out.jsonl" > "$T/verdict" <<'PY'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
ids = []
problems = []
for l in lines:
    o = json.loads(l)
    ids.append(o.get("id"))
    if "SECRET-TEXT" in l:
        problems.append("text echoed")
    if "error" in o:
        continue
    for c in ("hate", "sexual", "violence", "self_harm"):
        v = o.get(c)
        if not isinstance(v, dict) or not (0 <= v["score"] <= 1) or v["severity"] not in range(8):
            problems.append(f"bad {c} in {o.get('id')}")
print(json.dumps(ids))
errs = [json.loads(l).get("id") for l in lines if "error" in json.loads(l)]
print(json.dumps(errs))
print(json.dumps(problems))
b = json.loads(lines[1])
a = json.loads(lines[0])
print("ordered" if b["violence"]["score"] > a["violence"]["score"] else "unordered")
print(json.loads(lines[2])["violence"]["severity"])
PY
check "one line per input, same order" '["a", "b", 7, "d", null, "f", null, "h", null, "j", "k", "u"]' "$(sed -n 1p "$T/verdict")"
check "error lines" '[null, "f", null, "h", null]' "$(sed -n 2p "$T/verdict")"
check "shape ok, text never echoed" '[]' "$(sed -n 3p "$T/verdict")"
check "threat scores above benign kill" "ordered" "$(sed -n 4p "$T/verdict")"
check "empty text severity 0" "0" "$(sed -n 5p "$T/verdict")"

# --checks: only the selected detectors' fields, the same values as the full run
"$CUSTOS_BIN" check --model "$MODEL" --checks harm < "$T/in.jsonl" > "$T/harm-only.jsonl" 2>/dev/null
check "check --checks harm exit" 0 $?
check "--checks harm: harm fields only, same scores" "same" "$(python3 - "$T/out.jsonl" "$T/harm-only.jsonl" <<'PY'
import json, sys
full = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
only = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
keys = ["id", "hate", "sexual", "violence", "self_harm"]
ok = len(full) == len(only) and all(
    (o == f) if "error" in f else (sorted(o) == sorted(keys) and all(o[k] == f[k] for k in keys))
    for f, o in zip(full, only))
print("same" if ok else "different")
PY
)"
rc=0; "$CUSTOS_BIN" check --checks harm,nosuch </dev/null >/dev/null 2>&1 || rc=$?
check "--checks with an unknown name: usage error" 2 "$rc"

# 3. unknown flag, missing / corrupt model
rc=0; "$CUSTOS_BIN" check --bogus </dev/null >/dev/null 2>&1 || rc=$?
check "check usage error" 2 "$rc"
head -c 1000 "$MODEL" > "$T/bad.model"
rc=0; "$CUSTOS_BIN" check --model "$T/bad.model" </dev/null >/dev/null 2>"$T/bad.err" || rc=$?
check "corrupt model refused" 1 "$rc"
check_contains "corrupt model reason" "size does not match" "$(cat "$T/bad.err")"

# 4. eval on the fixture
"$CUSTOS_BIN" eval --task harm --model "$T/fx1.model" "$FIX/harm/tiny.jsonl" > "$T/eval.txt"
check "eval exit" 0 $?
check_contains "eval per-category table" "AUPRC" "$(cat "$T/eval.txt")"
check_contains "eval any row" "any " "$(cat "$T/eval.txt")"
check_contains "eval throughput" "MB/s" "$(cat "$T/eval.txt")"
check_contains "eval per source" "tiny" "$(cat "$T/eval.txt")"
rc=0; "$CUSTOS_BIN" eval --task nosuch x.jsonl >/dev/null 2>&1 || rc=$?
check "eval unknown task" 2 "$rc"
finish
