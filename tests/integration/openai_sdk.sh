#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The official `openai` npm client, unmodified (version pinned in tests/e2e/package.json), against custos over TLS
# in front of custos-mockllm: OpenAI and AzureOpenAI forms, streaming and not (tests/e2e/openai_client.mjs).
# Needs node >= 20 and npm (installs the package into tests/e2e/node_modules on first run); skips (77) without them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_node20
npm_pinned openai
echo "# openai npm client $NPM_VERSION"

MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
make_cert gw
basic_config "$GW_PORT" "$MOCK_PORT"
basic_config_tls "$GW_PORT" gw || { fail "config" "could not add tls to the listener"; finish; }

start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"

node_test "openai SDK $NPM_VERSION against custos" openai_client.mjs CUSTOS_URL="https://127.0.0.1:$GW_PORT" \
  CUSTOS_KEY="$KEY" NODE_EXTRA_CA_CERTS="$T/gw.crt" || { echo "--- mock log:" && tail -20 "$T/mock-$MOCK_PORT.log"; }
finish
