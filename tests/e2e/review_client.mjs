// SPDX-License-Identifier: Apache-2.0
// The official `openai` npm client against a high-tier use case (docs/reviews.md): a withheld completion, whole and
// streamed, parses as a normal answer with empty content and the custos_review extension. Run by
// tests/integration/governance_tiers.sh. Environment: CUSTOS_URL, CUSTOS_KEY. Prints one JSON line.
import OpenAI from "openai";

const client = new OpenAI({
  apiKey: process.env.CUSTOS_KEY,
  baseURL: `${process.env.CUSTOS_URL}/v1`,
  maxRetries: 0,
  timeout: 15000,
  defaultHeaders: { "x-custos-use-case": "letters" },
});
const ask = { model: "demo", messages: [{ role: "user", content: "hello" }], mock_reply: "SDKSECRET" };

const { data: whole, response } = await client.chat.completions.create(ask).withResponse();
const stream = await client.chat.completions.create({ ...ask, stream: true });
let text = "";
let review = null;
let finish = null;
for await (const chunk of stream) {
  for (const ch of chunk.choices) {
    text += ch.delta?.content ?? "";
    finish = ch.finish_reason ?? finish;
  }
  if (chunk.custos_review) review = chunk.custos_review;
}
console.log(
  JSON.stringify({
    content: whole.choices[0].message.content,
    finish: whole.choices[0].finish_reason,
    status: whole.custos_review?.status,
    header: response.headers.get("x-custos-review-id") === whole.custos_review?.id,
    stream_text: text,
    stream_finish: finish,
    stream_status: review?.status,
  }),
);
