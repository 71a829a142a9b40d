#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The official `@azure-rest/ai-content-safety` npm client, unmodified (version pinned in tests/e2e/package.json),
# against custos' Content Safety routes over TLS (tests/e2e/content_safety_client.mjs): text:analyze, blocklists,
# shieldPrompt. Needs node >= 20 and npm (installs the packages into tests/e2e/node_modules on first run); skips
# (77) without them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E2E=$CUSTOS_SRC/tests/e2e
PKG=@azure-rest/ai-content-safety
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then echo "SKIP: node/npm not installed"; exit 77; fi
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || { echo "SKIP: node < 20"; exit 77; }

want=$(node -p "require('$E2E/package.json').dependencies['$PKG']")
have=$(node -p "try { require('$E2E/node_modules/$PKG/package.json').version } catch { '' }")
if [ "$want" != "$have" ]; then
  (cd "$E2E" && npm install --no-audit --no-fund --loglevel=error) || { fail "npm install $PKG@$want"; finish; }
fi
echo "# $PKG $want"

MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
make_cert gw
printf '%s' "cs-admin-key-1" >"$T/admin.key"
basic_config "$GW_PORT" "$MOCK_PORT"
sed -i "s|^  - address: \"127.0.0.1:$GW_PORT\"|&\n    tls: {cert: gw.crt, key: gw.key}|" "$T/custos.yaml"
sed -i "s|^      key_file: key$|&\n    - {name: admin, key_file: admin.key, principal: cs-admin, roles: [admin]}|" "$T/custos.yaml"
grep -q 'tls: {cert: gw.crt' "$T/custos.yaml" && grep -q 'admin.key' "$T/custos.yaml" ||
  { fail "config" "could not edit the config"; finish; }

start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"

rc=0
(cd "$E2E" && CUSTOS_URL="https://127.0.0.1:$GW_PORT" CUSTOS_KEY="cs-admin-key-1" NODE_EXTRA_CA_CERTS="$T/gw.crt" \
  timeout 120 node --test --test-reporter=spec content_safety_client.mjs) >"$T/node.log" 2>&1 || rc=$?
cat "$T/node.log"
if [ "$rc" -eq 0 ]; then
  ok "$PKG $want against custos"
else
  fail "$PKG $want against custos" "node --test exited $rc"
  echo "--- custos log:" && tail -40 "$T/custos.log"
fi
finish
