#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The official `openai` npm client, unmodified (version pinned in tests/e2e/package.json), against custos over TLS
# in front of custos-mockllm: OpenAI and AzureOpenAI forms, streaming and not (tests/e2e/openai_client.mjs).
# Needs node >= 20 and npm (installs the package into tests/e2e/node_modules on first run); skips (77) without them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E2E=$CUSTOS_SRC/tests/e2e
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then echo "SKIP: node/npm not installed"; exit 77; fi
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || { echo "SKIP: node < 20"; exit 77; }

# Install the pinned client unless that exact version is already there.
want=$(node -p "require('$E2E/package.json').dependencies.openai")
have=$(node -p "try { require('$E2E/node_modules/openai/package.json').version } catch { '' }")
if [ "$want" != "$have" ]; then
  (cd "$E2E" && npm install --no-audit --no-fund --loglevel=error) || { fail "npm install openai@$want"; finish; }
fi
echo "# openai npm client $want"

MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
make_cert gw
basic_config "$GW_PORT" "$MOCK_PORT"
# serve the listener over TLS with the test certificate (paths relative to the config file)
sed -i "s|^  - address: \"127.0.0.1:$GW_PORT\"|&\n    tls: {cert: gw.crt, key: gw.key}|" "$T/custos.yaml"
grep -q 'tls: {cert: gw.crt' "$T/custos.yaml" || { fail "config" "could not add tls to the listener"; finish; }

start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"

rc=0
(cd "$E2E" && CUSTOS_URL="https://127.0.0.1:$GW_PORT" CUSTOS_KEY="$KEY" NODE_EXTRA_CA_CERTS="$T/gw.crt" \
  timeout 120 node --test --test-reporter=spec openai_client.mjs) >"$T/node.log" 2>&1 || rc=$?
cat "$T/node.log"
if [ "$rc" -eq 0 ]; then
  ok "openai SDK $want against custos"
else
  fail "openai SDK $want against custos" "node --test exited $rc"
  echo "--- custos log:" && tail -40 "$T/custos.log"
  echo "--- mock log:" && tail -20 "$T/mock-$MOCK_PORT.log"
fi
finish
