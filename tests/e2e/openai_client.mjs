// SPDX-License-Identifier: Apache-2.0
// End to end: the official, unmodified `openai` npm client against custos (proxying to custos-mockllm), in its
// OpenAI and AzureOpenAI forms, with only the base URL and the key changed. Run by tests/integration/openai_sdk.sh.
// Environment: CUSTOS_URL (e.g. https://127.0.0.1:8443, no trailing slash), CUSTOS_KEY (a valid custos API key),
// NODE_EXTRA_CA_CERTS (the gateway's certificate).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { AzureOpenAI, AuthenticationError, NotFoundError } from "openai";

const URL_BASE = process.env.CUSTOS_URL;
const KEY = process.env.CUSTOS_KEY;
assert.ok(URL_BASE && KEY, "CUSTOS_URL and CUSTOS_KEY must be set");

const API_VERSION = "2024-10-21";
const DEFAULT_DIMS = 8; // custos-mockllm's embedding length when no 'dimensions' is asked for
const MESSAGES = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Say something." },
];

// maxRetries 0: a failure must show, not be retried away.
const common = { apiKey: KEY, maxRetries: 0, timeout: 15000 };
const openai = new OpenAI({ ...common, baseURL: `${URL_BASE}/v1` });
const azure = new AzureOpenAI({ ...common, endpoint: URL_BASE, apiVersion: API_VERSION, deployment: "demo" });
const azureV1 = new OpenAI({ ...common, baseURL: `${URL_BASE}/openai/v1` });

function checkCompletion(c) {
  assert.equal(c.object, "chat.completion");
  assert.equal(c.choices.length, 1);
  const ch = c.choices[0];
  assert.equal(ch.message.role, "assistant");
  assert.equal(typeof ch.message.content, "string");
  assert.ok(ch.message.content.length > 0, "content is empty");
  assert.equal(ch.finish_reason, "stop");
  assert.ok(c.usage.total_tokens > 0, "usage.total_tokens not positive");
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
  return ch.message.content;
}

// Streams a chat request and returns {content, usage, finish, chunks}.
async function streamChat(client, model) {
  const stream = await client.chat.completions.create({
    model,
    messages: MESSAGES,
    stream: true,
    stream_options: { include_usage: true },
  });
  let content = "";
  let finish = null;
  let last = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.object === "" && chunk.choices.length === 0 && chunk.prompt_filter_results) {
      // Azure's first frame: the prompt's content-filter annotations (docs/content-filtering.md)
      assert.equal(chunk.prompt_filter_results[0].prompt_index, 0);
      continue;
    }
    assert.equal(chunk.object, "chat.completion.chunk");
    for (const ch of chunk.choices) {
      if (ch.delta?.content) content += ch.delta.content;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    last = chunk;
  }
  assert.ok(chunks > 2, `only ${chunks} chunks`);
  assert.ok(last.usage, "last chunk carries no usage");
  assert.equal(last.choices.length, 0, "usage chunk has choices");
  assert.ok(last.usage.total_tokens > 0);
  return { content, usage: last.usage, finish };
}

function checkEmbeddings(e, n, dims) {
  assert.equal(e.object, "list");
  assert.equal(e.data.length, n);
  e.data.forEach((d, i) => {
    assert.equal(d.index, i);
    assert.equal(d.embedding.length, dims);
    for (const x of d.embedding) assert.ok(Number.isFinite(x), "embedding value not finite");
  });
  assert.ok(e.usage.prompt_tokens > 0);
}

test("OpenAI: chat, non-streaming and streaming agree", async () => {
  const c = await openai.chat.completions.create({ model: "demo", messages: MESSAGES });
  const content = checkCompletion(c);
  const s = await streamChat(openai, "demo");
  assert.equal(s.content, content);
  assert.equal(s.finish, "stop");
  assert.deepEqual(
    [s.usage.prompt_tokens, s.usage.completion_tokens, s.usage.total_tokens],
    [c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens],
  );
});

test("OpenAI: response headers carry the request id", async () => {
  const { data, response } = await openai.chat.completions
    .create({ model: "demo", messages: MESSAGES })
    .withResponse();
  checkCompletion(data);
  assert.equal(response.status, 200);
  const rid = response.headers.get("x-request-id");
  assert.match(rid ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(response.headers.get("apim-request-id"), rid);
  assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
});

test("OpenAI: legacy completions", async () => {
  const c = await openai.completions.create({ model: "demo", prompt: "Say something.", max_tokens: 4 });
  assert.equal(c.object, "text_completion");
  assert.equal(c.choices.length, 1);
  assert.equal(typeof c.choices[0].text, "string");
  assert.ok(c.choices[0].text.length > 0);
  assert.equal(c.choices[0].finish_reason, "length");
  assert.ok(c.usage.total_tokens > 0);
});

test("OpenAI: embeddings (SDK default base64) and dimensions", async () => {
  checkEmbeddings(await openai.embeddings.create({ model: "demo", input: "hello" }), 1, DEFAULT_DIMS);
  checkEmbeddings(await openai.embeddings.create({ model: "demo", input: ["a", "b", "c"], dimensions: 5 }), 3, 5);
  const f = await openai.embeddings.create({ model: "demo", input: "x", encoding_format: "float" });
  checkEmbeddings(f, 1, DEFAULT_DIMS);
  assert.ok(Array.isArray(f.data[0].embedding));
});

test("OpenAI: models.list includes demo", async () => {
  const ids = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  assert.ok(ids.includes("demo"), `models: ${ids.join(",")}`);
  const m = await openai.models.retrieve("demo");
  assert.equal(m.id, "demo");
});

test("OpenAI: wrong key is an AuthenticationError (401)", async () => {
  const bad = new OpenAI({ ...common, apiKey: "wrong-key-000", baseURL: `${URL_BASE}/v1` });
  await assert.rejects(bad.chat.completions.create({ model: "demo", messages: MESSAGES }), (e) => {
    assert.ok(e instanceof AuthenticationError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, 401);
    assert.ok(e.headers.get("x-request-id"));
    return true;
  });
  const badAzure = new AzureOpenAI({ ...common, apiKey: "wrong-key-000", endpoint: URL_BASE, apiVersion: API_VERSION });
  await assert.rejects(badAzure.chat.completions.create({ model: "demo", messages: MESSAGES }), AuthenticationError);
});

test("OpenAI: unknown model is a NotFoundError (404)", async () => {
  await assert.rejects(openai.chat.completions.create({ model: "no-such-deployment", messages: MESSAGES }), (e) => {
    assert.ok(e instanceof NotFoundError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, 404);
    assert.equal(e.code, "DeploymentNotFound");
    return true;
  });
  await assert.rejects(openai.models.retrieve("no-such-deployment"), NotFoundError);
  const azMissing = new AzureOpenAI({ ...common, endpoint: URL_BASE, apiVersion: API_VERSION, deployment: "nope" });
  await assert.rejects(azMissing.chat.completions.create({ model: "nope", messages: MESSAGES }), NotFoundError);
});

test("AzureOpenAI (deployment route): chat, streaming, embeddings", async () => {
  // The SDK requires 'model'; the deployment in the path is what selects it.
  const { data, response } = await azure.chat.completions
    .create({ model: "ignored-by-azure", messages: MESSAGES })
    .withResponse();
  const content = checkCompletion(data);
  assert.equal(new URL(response.url).pathname, "/openai/deployments/demo/chat/completions");
  assert.equal(new URL(response.url).searchParams.get("api-version"), API_VERSION);
  assert.ok(response.headers.get("apim-request-id"));
  const s = await streamChat(azure, "ignored-by-azure");
  assert.equal(s.content, content);
  assert.equal(s.finish, "stop");
  checkEmbeddings(await azure.embeddings.create({ model: "ignored", input: ["p", "q"] }), 2, DEFAULT_DIMS);
  checkEmbeddings(await azure.embeddings.create({ model: "ignored", input: "p", dimensions: 3 }), 1, 3);
});

test("AzureOpenAI without a fixed deployment takes it from 'model'", async () => {
  const az = new AzureOpenAI({ ...common, endpoint: URL_BASE, apiVersion: API_VERSION });
  checkCompletion(await az.chat.completions.create({ model: "demo", messages: MESSAGES }));
});

test("OpenAI client on the Azure v1 route (/openai/v1)", async () => {
  const { data, response } = await azureV1.chat.completions
    .create({ model: "demo", messages: MESSAGES })
    .withResponse();
  const content = checkCompletion(data);
  assert.equal(new URL(response.url).pathname, "/openai/v1/chat/completions");
  const s = await streamChat(azureV1, "demo");
  assert.equal(s.content, content);
  checkEmbeddings(await azureV1.embeddings.create({ model: "demo", input: "z" }), 1, DEFAULT_DIMS);
  const ids = [];
  for await (const m of azureV1.models.list()) ids.push(m.id);
  assert.ok(ids.includes("demo"));
});
