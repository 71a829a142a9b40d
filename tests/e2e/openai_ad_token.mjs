// SPDX-License-Identifier: Apache-2.0
// End to end: the official `openai` npm client's Azure form with an Entra-style AD token provider
// (azureADTokenProvider) against custos, tokens minted by tests/tools/test_idp. Run by tests/integration/oidc.sh.
// Environment: CUSTOS_URL (custos base URL, no trailing slash), IDP_URL (test_idp's issuer URL),
// NODE_EXTRA_CA_CERTS (test_idp's certificate).
import { test } from "node:test";
import assert from "node:assert/strict";
import { AzureOpenAI, AuthenticationError } from "openai";

const URL_BASE = process.env.CUSTOS_URL;
const IDP = process.env.IDP_URL;
assert.ok(URL_BASE && IDP, "CUSTOS_URL and IDP_URL must be set");

let calls = 0;
function provider(query) {
  return async () => {
    calls++;
    const r = await fetch(`${IDP}/token?${query}`);
    assert.equal(r.status, 200);
    return (await r.text()).trim();
  };
}
const common = { endpoint: URL_BASE, apiVersion: "2024-10-21", deployment: "demo", maxRetries: 0, timeout: 15000 };
const good = "alg=RS256&aud=https://cognitiveservices.azure.com&oid=sdk-user&roles=Inference.User&amr=pwd,mfa";
const MESSAGES = [{ role: "user", content: "Say something." }];

test("AzureOpenAI with azureADTokenProvider: chat completion", async () => {
  const azure = new AzureOpenAI({ ...common, azureADTokenProvider: provider(good) });
  const c = await azure.chat.completions.create({ model: "demo", messages: MESSAGES });
  assert.equal(c.object, "chat.completion");
  assert.ok(c.choices[0].message.content.length > 0);
  assert.ok(calls >= 1, "the token provider was not called");
});

test("AzureOpenAI with azureADTokenProvider: streaming", async () => {
  const azure = new AzureOpenAI({ ...common, azureADTokenProvider: provider(good) });
  const stream = await azure.chat.completions.create({ model: "demo", messages: MESSAGES, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.ok(text.length > 0, "no streamed content");
});

test("AzureOpenAI with an expired token: AuthenticationError (401)", async () => {
  const azure = new AzureOpenAI({ ...common, azureADTokenProvider: provider(`${good}&exp_in=-600`) });
  await assert.rejects(azure.chat.completions.create({ model: "demo", messages: MESSAGES }), (e) => {
    assert.ok(e instanceof AuthenticationError, `expected AuthenticationError, got ${e}`);
    assert.equal(e.status, 401);
    return true;
  });
});
