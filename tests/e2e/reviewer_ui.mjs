// SPDX-License-Identifier: Apache-2.0
// The reviewer UI (/ui, docs/reviewer-ui.md) in headless Chromium (Debian's chromium, driven by playwright-core):
// sign in with keys and the keyboard, see the queue, open items, approve / edit / reject, read the deployment cards;
// every decision is checked through the review API. Run by tests/integration/reviewer_ui.sh, which starts custos and
// custos-mockllm with a high-tier use case. Environment: CUSTOS_URL, APP_KEY (bound to the use case), REVIEWER_KEY,
// CHROMIUM (browser binary), SCREENSHOT_DIR (fresh screenshots), UPDATE_SCREENSHOTS=1 (also refresh the committed
// references in tests/ui/screenshots/).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BASE = process.env.CUSTOS_URL;
const APP_KEY = process.env.APP_KEY;
const REVIEWER_KEY = process.env.REVIEWER_KEY;
const OIDC_TOKEN = process.env.OIDC_TOKEN; // a JWT from tests/tools/test_idp with a role mapped to reviewer
const SHOTS = process.env.SCREENSHOT_DIR || "/tmp";
const REF_SHOTS = join(dirname(fileURLToPath(import.meta.url)), "..", "ui", "screenshots");
// the first request carries a tool result: a source, against which the (stand-in) answer is checked for groundedness
const SOURCE = "Claim 4471 was filed on 3 March 2026 for water damage in the kitchen. It was approved on 2 April 2026 for 1,200 EUR.";
const PROMPTS = [
  [
    { role: "user", content: "Please draft a short letter telling the claimant that claim 4471 was approved." },
    { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "claim_record", arguments: "{\"claim\":4471}" } }] },
    { role: "tool", tool_call_id: "call_1", content: SOURCE },
  ],
  [{ role: "user", content: "Summarise the claim history for the customer in two sentences." }],
  [{ role: "user", content: "List the documents the claimant still has to send for claim 5120." }],
];

let browser, page;
const problems = []; // console errors and CSP violations seen by the page
const ids = [];

async function shot(name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === "1") {
    mkdirSync(REF_SHOTS, { recursive: true });
    await page.screenshot({ path: join(REF_SHOTS, name + ".png"), fullPage: true });
  }
}

async function apiGet(path, key) {
  const r = await fetch(BASE + path, { headers: { Authorization: "Bearer " + key } });
  return { status: r.status, body: await r.json() };
}

async function openItem(id) {
  await page.getByRole("link", { name: "Open item " + id }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: "Item " + id }).waitFor();
  await page.locator("#item-output pre").first().waitFor();
}

before(async () => {
  // real chat requests under the high-tier use case: each answer is withheld and queued for review
  for (const p of PROMPTS) {
    const r = await fetch(BASE + "/v1/chat/completions", {
      method: "POST",
      headers: { "api-key": APP_KEY, "Content-Type": "application/json" },
      body: JSON.stringify({ model: "demo", messages: p }),
    });
    const j = await r.json();
    assert.equal(r.status, 200, JSON.stringify(j).slice(0, 300));
    assert.equal(j.choices[0].message.content, "", "high tier: the content is withheld");
    assert.equal(j.custos_review.status, "pending");
    ids.push(j.custos_review.id);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await ctx.newPage();
  page.on("console", (m) => {
    // a refused fetch is logged by Chromium as "Failed to load resource"; the test makes some on purpose (401, 422)
    if (m.type() === "error" && !/^Failed to load resource: the server responded with a status of (401|422)/.test(m.text()))
      problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
});

after(async () => {
  if (browser) await browser.close();
});

test("/ui is served with its content types, CSP and no credential", async () => {
  const r = await page.goto(BASE + "/ui");
  assert.equal(r.status(), 200);
  assert.equal(new URL(page.url()).pathname, "/ui/", "redirected to /ui/");
  const h = r.headers();
  assert.match(h["content-type"], /^text\/html/);
  assert.match(h["content-security-policy"], /default-src 'self'/);
  assert.equal(h["x-content-type-options"], "nosniff");
  const js = await fetch(BASE + "/ui/app.js");
  assert.match(js.headers.get("content-type"), /^text\/javascript/);
  const css = await fetch(BASE + "/ui/app.css");
  assert.match(css.headers.get("content-type"), /^text\/css/);
  assert.equal((await fetch(BASE + "/ui/nope.js")).status, 404);
  await page.getByRole("heading", { level: 1, name: "Sign in" }).waitFor();
});

test("sign-in form is labelled and keyboard-operable in order", async () => {
  // every form control has a label; the status region is live
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, textarea")].filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id || e.name)
  );
  assert.deepEqual(unlabelled, []);
  assert.equal(await page.getAttribute("#status", "aria-live"), "polite");
  assert.equal(await page.getAttribute("#status", "role"), "status");
  // Tab order: skip link, the credential type, the credential, the sign-in button
  // focus moves to the view's heading; Tab then walks the form in order, Shift+Tab back to the skip link
  const active = () => page.evaluate(() => document.activeElement.id || document.activeElement.getAttribute("name"));
  assert.equal(await active(), "signin-h");
  const order = [];
  for (const key of ["Tab", "Tab", "Tab", "Shift+Tab", "Shift+Tab", "Shift+Tab"]) {
    await page.keyboard.press(key);
    order.push(await active());
  }
  assert.deepEqual(order, ["kind", "credential", "signin-submit", "credential", "kind", "skip"]);
  await shot("signin");
});

test("a wrong key is refused with an alert", async () => {
  await page.getByLabel("Credential", { exact: true }).fill("not-a-key");
  await page.keyboard.press("Enter");
  await page.locator("#alert", { hasText: "Sign-in failed" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("custos.credential")), null);
});

test("sign in with the reviewer key; the queue lists the pending items", async () => {
  await page.getByLabel("Credential", { exact: true }).fill(REVIEWER_KEY);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: "Review queue" }).waitFor();
  for (const id of ids) await page.locator(`tr[data-id="${id}"]`).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("custos.credential")), REVIEWER_KEY);
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  // API data is never cached
  for (const path of ["/v1/reviews?limit=1", "/v1/reviews/" + ids[0] + "/item", "/v1/models/demo"]) {
    const r = await fetch(BASE + path, { headers: { Authorization: "Bearer " + REVIEWER_KEY } });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get("cache-control"), "no-store", path);
  }
  const row = page.locator(`tr[data-id="${ids[0]}"]`);
  assert.match(await row.innerText(), /claims-letters/);
  assert.match(await row.innerText(), /high/);
  await shot("queue");
});

test("open an item: prompt, output, safety annotations, sources, groundedness", async () => {
  await openItem(ids[0]);
  assert.match(await page.locator("#item-prompt").innerText(), /claim 4471 was approved/);
  assert.match(await page.locator("#item-output").innerText(), /mock reply/);
  assert.match(await page.locator("#item-safety").innerText(), /hate/);
  assert.match(await page.locator("#item-safety").innerText(), /jailbreak/);
  assert.match(await page.locator("#item-sources").innerText(), /Source 1 \(tool call_1\)/i);
  assert.match(await page.locator("#item-sources").innerText(), /water damage in the kitchen/);
  assert.match(await page.locator("#item-safety").innerText(), /ungrounded_material/);
  // the stand-in's lorem-ipsum answer is not supported by the source: marked in the output
  assert.match(await page.locator("#item-grounded").innerText(), /ungrounded passage\(s\), marked in the output/);
  assert.ok((await page.locator("#item-output mark.ungrounded").count()) >= 1);
  await shot("item");
});

test("approve", async () => {
  await page.getByRole("button", { name: "Submit decision" }).click();
  await page.locator("#status", { hasText: `Item ${ids[0]} approved` }).waitFor();
  await page.getByRole("heading", { level: 1, name: "Review queue" }).waitFor();
  const r = await apiGet("/v1/reviews/" + ids[0], REVIEWER_KEY);
  assert.equal(r.status, 200);
  assert.equal(r.body.status, "approved");
  assert.equal(r.body.decision, "approve");
});

test("edit, with the edited text released to the requester", async () => {
  await page.locator(`tr[data-id="${ids[1]}"]`).waitFor();
  await openItem(ids[1]);
  await page.getByLabel("Edit the output, then release it").check();
  const edited = "Dear claimant, your claim history: two claims, both settled. Kind regards.";
  await page.getByLabel("Edited output").fill(edited);
  await page.getByLabel(/^Reason/).fill("Mock output replaced with the verified history.");
  await shot("item-edit");
  await page.getByRole("button", { name: "Submit decision" }).click();
  await page.locator("#status", { hasText: `Item ${ids[1]} edited` }).waitFor();
  const r = await apiGet("/v1/reviews/" + ids[1], REVIEWER_KEY);
  assert.equal(r.status, 200);
  assert.equal(r.body.status, "edited");
  const c = await apiGet("/v1/reviews/" + ids[1] + "/completion", APP_KEY);
  assert.equal(c.status, 200);
  assert.equal(c.body.choices[0].message.content, edited);
});

test("reject needs a reason, then is recorded", async () => {
  await page.locator(`tr[data-id="${ids[2]}"]`).waitFor();
  await openItem(ids[2]);
  await page.getByLabel("Reject the output").check();
  await page.getByRole("button", { name: "Submit decision" }).click();
  await page.locator("#alert", { hasText: "A reason is required to reject" }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "reason", "focus moves to the reason");
  await page.keyboard.type("Not appropriate to send to a claimant.");
  await page.getByRole("button", { name: "Submit decision" }).click();
  await page.locator("#status", { hasText: `Item ${ids[2]} rejected` }).waitFor();
  const r = await apiGet("/v1/reviews/" + ids[2], REVIEWER_KEY);
  assert.equal(r.status, 422);
  assert.equal(r.body.error.code, "review_rejected");
  await page.locator("#queue-empty").waitFor({ state: "visible" });
});

test("deployment cards page", async () => {
  await page.getByRole("link", { name: "Deployment cards" }).click();
  await page.getByRole("heading", { level: 1, name: "Deployment cards" }).waitFor();
  const card = page.locator('section[data-deployment="demo"]');
  await card.waitFor();
  const text = await card.innerText();
  assert.match(text, /drafting claim letters/);
  assert.match(text, /stand-in model/);
  assert.match(text, /Policy in force: grounded/);
  assert.match(text, /harm \(harm\.json\)/);
  await shot("models");
});

test("sign out clears the credential", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { level: 1, name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("custos.credential")), null);
});

test("sign in with an OIDC token; the decided items are listed", async () => {
  assert.ok(OIDC_TOKEN && OIDC_TOKEN.split(".").length === 3, "a JWT from the test identity provider");
  await page.getByLabel("OIDC access token").check();
  await page.getByLabel("Credential", { exact: true }).fill(OIDC_TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "Review queue" }).waitFor();
  await page.getByLabel("Status").selectOption("all");
  await page.getByRole("button", { name: "Show" }).click();
  for (const id of ids) await page.locator(`tr[data-id="${id}"]`).waitFor();
  const statuses = await page.locator("#queue-body tr td:last-child").allInnerTexts();
  assert.deepEqual([...statuses].sort(), ["approved", "edited", "rejected"]);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { level: 1, name: "Sign in" }).waitFor();
});

test("a credential without the reviewer role sees only the deployment cards", async () => {
  await page.getByLabel("API key").check();
  await page.getByLabel("Credential", { exact: true }).fill(APP_KEY);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: "Deployment cards" }).waitFor();
  await page.locator("#status", { hasText: "without the reviewer role" }).waitFor();
  await page.locator('section[data-deployment="demo"]').waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { level: 1, name: "Sign in" }).waitFor();
});

test("no console errors or CSP violations", () => {
  assert.deepEqual(problems, []);
});
