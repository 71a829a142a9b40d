#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Signed checkpoints in the governance log (docs/governance-log.md): custos creates an Ed25519 key at first start
# (sealed in the store), writes its public key next to the log, and signs checkpoints; `custos audit verify --pubkey`
# checks them and catches a tampered checkpoint, a checkpoint forged with another key, and records deleted after the
# last checkpoint (reported distinctly; a failure with --signed-tail). Logs without checkpoints still verify.
source "$(dirname "$0")/lib.sh"

GP=$(free_port)
MP=$(free_port)
basic_config "$GP" "$MP"
G="$T/governance.jsonl"
V() { "$CUSTOS_BIN" audit verify "$@"; }

start_custos "$T/custos.yaml" "$GP"
stop_custos_clean
check "public key written next to the log" 1 "$([ -s "$G.pub" ] && echo 1 || echo 0)"
check_contains "public key is PEM" "BEGIN PUBLIC KEY" "$(cat "$G.pub")"
rc=0
"$CUSTOS_BIN" audit pubkey -c "$T/custos.yaml" >"$T/pub.pem" 2>"$T/pub.err" || rc=$?
check "custos audit pubkey: exit 0" 0 "$rc"
check "custos audit pubkey prints the same key" "$(cat "$G.pub")" "$(cat "$T/pub.pem")"
check "start, checkpoint, stop, checkpoint" "service.start govlog.checkpoint service.stop govlog.checkpoint" \
  "$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["action"] for l in open(sys.argv[1])))' "$G")"

rc=0
out=$(V --pubkey "$G.pub" "$G") || rc=$?
check "verify --pubkey: exit 0" 0 "$rc"
check_contains "verify --pubkey: both checkpoints signed" "checkpoints: 2 with valid signatures, the last at seq 4" "$out"
case $out in *"unsigned tail"*) fail "no unsigned tail" "$out" ;; *) ok "no unsigned tail" ;; esac
rc=0
out=$(V "$G") || rc=$?
check "verify without a key: exit 0" 0 "$rc"
check_contains "verify without a key says signatures were not checked" "signatures NOT checked" "$out"
cp "$G" "$T/pristine.jsonl"

# rehash FILE LINE PYEXPR: rewrites record LINE (1-based) of FILE: d = its parsed JSON, PYEXPR modifies it, then the
# hash is recomputed (as a forger who can write the file would), so only the signature can tell.
rehash() {
  python3 - "$@" <<'PY'
import hashlib, json, sys
path, n, expr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ls = open(path).readlines()
d = json.loads(ls[n - 1])
exec(expr)
d.pop("hash")
canon = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
d["hash"] = hashlib.sha256(canon.encode()).hexdigest()
ls[n - 1] = json.dumps(d, separators=(",", ":"), ensure_ascii=False) + "\n"
open(path, "w").writelines(ls)
PY
}
tamper_check() {
  local name=$1 want=$2 rc=0 out
  shift 2
  out=$(V "$@" "$G") || rc=$?
  check "$name: verify exits 1" 1 "$rc"
  check_contains "$name: location and kind" "$want" "$out"
  cp "$T/pristine.jsonl" "$G"
}

# 1. a checkpoint's signature changed (hash recomputed)
rehash "$G" 4 'd["details"]["sig"] = ("0" if d["details"]["sig"][0] != "0" else "1") + d["details"]["sig"][1:]'
tamper_check "tampered checkpoint signature" "line 4 (seq 4): checkpoint: bad signature" --pubkey "$G.pub"
# 2. a checkpoint that claims to cover another record
rehash "$G" 4 'd["details"]["seq"] = 2'
tamper_check "checkpoint covering another record" "line 4 (seq 4): checkpoint: does not sign its predecessor"
# 3. a checkpoint forged with another key (correct form, valid signature by that key, hash recomputed)
openssl genpkey -algorithm ed25519 -out "$T/other.key" 2>/dev/null
openssl pkey -in "$T/other.key" -pubout -out "$T/other.pub" 2>/dev/null
python3 - "$G" >"$T/msg" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).readlines()[3])
sys.stdout.write("custos-govlog-checkpoint-v1\n%d\n%s\n" % (d["seq"] - 1, d["prev"]))
PY
openssl pkeyutl -sign -inkey "$T/other.key" -rawin -in "$T/msg" -out "$T/sig" 2>/dev/null
SIG=$(xxd -p -c 256 "$T/sig")
OTHER_ID=$(openssl pkey -pubin -in "$T/other.pub" -outform DER 2>/dev/null | tail -c 32 | sha256sum | cut -c1-16)
rehash "$G" 4 "d['details']['sig'] = '$SIG'; d['details']['key'] = '$OTHER_ID'; d['target'] = '$OTHER_ID'"
tamper_check "checkpoint forged with another key" "line 4 (seq 4): checkpoint: signed with another key" \
  --pubkey "$G.pub"
rehash "$G" 4 "d['details']['sig'] = '$SIG'"
tamper_check "another key's signature under our key id" "line 4 (seq 4): checkpoint: bad signature" \
  --pubkey "$G.pub"
rc=0
V --pubkey "$T/other.pub" "$G" >/dev/null || rc=$?
check "verify with the wrong public key: exit 1" 1 "$rc"

# 4. records deleted after the last checkpoint: a second run adds start, checkpoint, reload, stop, checkpoint
start_custos "$T/custos.yaml" "$GP"
kill -HUP "$CUSTOS_PID"
wait_log "reload: configuration .* applied" "$T/custos.log" 10 || fail "reload applied" "$(tail -3 "$T/custos.log")"
stop_custos_clean
check "second run: 9 records" 9 "$(wc -l <"$G")"
cp "$G" "$T/run2.jsonl"
sed -i '8,9d' "$G" # service.stop and the final checkpoint
rc=0
out=$(V --pubkey "$G.pub" "$G") || rc=$?
check "tail deleted past a checkpoint: the chain still verifies" 0 "$rc"
check_contains "tail deleted past a checkpoint: reported distinctly" \
  "unsigned tail: 1 record(s) after the last checkpoint" "$out"
rc=0
out=$(V --pubkey "$G.pub" --signed-tail "$G") || rc=$?
check "--signed-tail: exit 1" 1 "$rc"
check_contains "--signed-tail: truncation after the last checkpoint" \
  "line 7 (seq 7): truncated: 1 record(s) after the last signed checkpoint (seq 6)" "$out"

# 5. a log from before signed checkpoints (no checkpoint records) still verifies
python3 - "$T/old.jsonl" <<'PY'
import hashlib, json, sys
prev = "0" * 64
with open(sys.argv[1], "w") as f:
    for seq in (1, 2, 3):
        d = {"v": 1, "seq": seq, "time": "2026-01-01T00:00:00.000Z", "actor": "system", "action": "config.reload",
             "target": "custos.yaml", "details": {}, "prev": prev}
        canon = json.dumps(d, separators=(",", ":"))
        prev = hashlib.sha256(canon.encode()).hexdigest()
        f.write(canon[:-1] + ',"hash":"' + prev + '"}\n')
PY
rc=0
out=$(V --pubkey "$G.pub" "$T/old.jsonl") || rc=$?
check "log without checkpoints: exit 0" 0 "$rc"
check_contains "log without checkpoints: said so" "checkpoints: none" "$out"
rc=0
V --pubkey "$T/custos.yaml" "$G" >/dev/null 2>&1 || rc=$?
check "a key file that is not an Ed25519 PEM key: exit 1" 1 "$rc"

# 6. key replacement: the KEK version the signing key is sealed under is destroyed without a rewrap; the next start
# makes a new key and records govlog.key_replaced; the old public key is kept; the log verifies with both keys
cp "$T/run2.jsonl" "$G"
cp "$G.pub" "$T/key1.pub"
"$CUSTOS_BIN" kek rotate -c "$T/custos.yaml" >/dev/null 2>&1 || fail "kek rotate"
"$CUSTOS_BIN" kek destroy -c "$T/custos.yaml" 1 --yes >/dev/null 2>&1 || fail "kek destroy 1"
start_custos "$T/custos.yaml" "$GP"
stop_custos_clean
check_contains "key replaced: recorded in the log" '"action":"govlog.key_replaced"' "$(cat "$G")"
check "key replaced: the old public key is kept next to the log" "$(cat "$T/key1.pub")" "$(cat "$G".pub.*)"
case $(cat "$G.pub") in "$(cat "$T/key1.pub")") fail "key replaced: new public key written" ;; *) ok "key replaced: new public key written" ;; esac
rc=0
out=$(V --pubkey "$T/key1.pub" --pubkey "$G.pub" --signed-tail "$G") || rc=$?
check "key replaced: verify with both keys: exit 0" 0 "$rc"
rc=0
out=$(V --pubkey "$G.pub" "$G") || rc=$?
check "key replaced: the new key alone does not vouch for the old checkpoints" 1 "$rc"
check_contains "key replaced: old checkpoints named" "checkpoint: signed with another key" "$out"
finish
