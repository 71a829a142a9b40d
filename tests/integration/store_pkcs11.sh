#!/usr/bin/env bash
# custos with its key-encryption key in an HSM: a SoftHSM2 token made in a temp dir (SOFTHSM2_CONF). The KEK
# is generated in the token at first start, rotation adds "<label>.v2", rewrap moves data keys to it; a wrong
# or missing PIN, or an unknown token, stops start-up with a clear message (and never prints the PIN).
source "$(dirname "$0")/lib.sh"
source "$CUSTOS_SRC/tests/tools/store_services.sh"
hsm_start

MP=$(free_port)
GP=$(free_port)
start_mock "$MP"
printf '1234' >"$T/pin"
chmod 600 "$T/pin"
p11_config() { # TOKEN PIN_LINE
  basic_config "$GP" "$MP" "storage:
  path: state/custos.db
  encryption:
    provider: pkcs11
    pkcs11: {module: $HSM_MODULE, token: $1, key_label: custos-kek, $2}"
}
p11_config custos-test "pin_file: pin"
mkdir -p "$T/state"
C=(-c "$T/custos.yaml")
WRITER=${CUSTOS_TOOLS:-$(dirname "$CUSTOS_BIN")/tools}/store_writer

start_custos "$T/custos.yaml" "$GP"
check "custos serves with its KEK in the HSM" 200 "$(req m1 "http://127.0.0.1:$GP/v1/models" -H "api-key: $KEY")"
check_contains "start-up names the pkcs11 provider" "key version 1 (pkcs11)" "$(cat "$T/custos.log")"
[ -e "$T/custos-keys" ] && fail "no local key directory with pkcs11" || ok "no local key directory with pkcs11"
"$WRITER" "$T/custos.yaml" 20 >/dev/null 2>&1 && ok "sealed writes through the token" || fail "sealed writes through the token"
out=$("$CUSTOS_BIN" kek rotate "${C[@]}" 2>&1) && rc=0 || rc=$?
check "kek rotate in the token" 0 "$rc"
out=$("$CUSTOS_BIN" kek list "${C[@]}" 2>&1) || true
check_contains "version 2 is the token object custos-kek.v2" "custos-kek.v2" "$out"
out=$("$CUSTOS_BIN" kek rewrap "${C[@]}" 2>&1) && rc=0 || rc=$?
check "kek rewrap" 0 "$rc"
# 20 written + the governance log's signing key (sealed at first start, docs/governance-log.md)
check_contains "rewrap moved every record" "re-wrapped 21 records under key version 2" "$out"
out=$("$CUSTOS_BIN" kek destroy "${C[@]}" 1 --yes 2>&1) && rc=0 || rc=$?
check "destroy version 1 in the token" 0 "$rc"
check_contains "nothing was lost (all rewrapped)" "0 records are now unreadable" "$out"
stop_custos_clean

# --- faults: refuse to start, clearly ---
printf '9999' >"$T/pin"
check_serve_refuses "wrong PIN" "wrong PIN" "$T/custos.yaml"
grep -q 9999 "$T/fail.log" && fail "the PIN is never printed" || ok "the PIN is never printed"
p11_config custos-test "pin_env: CUSTOS_TEST_UNSET_PIN"
check_serve_refuses "missing PIN" "CUSTOS_TEST_UNSET_PIN is not set" "$T/custos.yaml"
printf '1234' >"$T/pin"
p11_config no-such-token "pin_file: pin"
check_serve_refuses "unknown token" "no token labelled 'no-such-token'" "$T/custos.yaml"
finish
