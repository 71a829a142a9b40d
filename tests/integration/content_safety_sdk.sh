#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The official `@azure-rest/ai-content-safety` npm client, unmodified (version pinned in tests/e2e/package.json),
# against custos' Content Safety routes over TLS (tests/e2e/content_safety_client.mjs): text:analyze, blocklists,
# shieldPrompt. Needs node >= 20 and npm (installs the packages into tests/e2e/node_modules on first run); skips
# (77) without them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKG=@azure-rest/ai-content-safety
need_node20
npm_pinned "$PKG"
echo "# $PKG $NPM_VERSION"

MOCK_PORT=$(free_port)
GW_PORT=$(free_port)
make_cert gw
printf '%s' "cs-admin-key-1" >"$T/admin.key"
basic_config "$GW_PORT" "$MOCK_PORT"
basic_config_tls "$GW_PORT" gw && basic_config_keys '{name: admin, key_file: admin.key, principal: cs-admin, roles: [admin]}' ||
  { fail "config" "could not edit the config"; finish; }

start_mock "$MOCK_PORT"
start_custos "$T/custos.yaml" "$GW_PORT"

node_test "$PKG $NPM_VERSION against custos" content_safety_client.mjs CUSTOS_URL="https://127.0.0.1:$GW_PORT" \
  CUSTOS_KEY="cs-admin-key-1" NODE_EXTRA_CA_CERTS="$T/gw.crt" || true
finish
