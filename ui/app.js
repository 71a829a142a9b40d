// SPDX-License-Identifier: Apache-2.0
// custos reviewer UI (docs/reviewer-ui.md): sign in with an API key or OIDC token (sessionStorage, sent as a bearer
// token), the review queue, one item (prompt, output, safety annotations, sources, groundedness), decisions, and the
// deployment cards. Plain DOM: every value from the API is inserted as text (textContent), never as HTML.
"use strict";

(function () {
  const STORE_KEY = "custos.credential";
  const $ = (id) => document.getElementById(id);
  const views = ["signin", "queue", "item", "models"];
  let queueAfter = null;
  let queueSeq = 0; // answers to an older queue request are dropped
  let notice = null; // a confirmation announced together with the next view's own status line
  let currentItem = null;

  // ---------- helpers ----------

  function credential() {
    return sessionStorage.getItem(STORE_KEY);
  }

  function say(msg) {
    $("alert").textContent = "";
    $("status").textContent = msg;
  }

  function warn(msg) {
    $("status").textContent = "";
    $("alert").textContent = msg;
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function utc(s) {
    if (s === null || s === undefined || s === 0) return "-";
    return new Date(s * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // Calls the custos API with the stored credential; API data is never cached (no-store).
  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + (credential() || "") };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let j = null;
    try {
      j = await r.json();
    } catch (e) {
      j = null;
    }
    if (!r.ok) {
      const err = (j && j.error) || {};
      throw new ApiError(r.status, err.code || String(r.status), err.message || "Request failed (" + r.status + ").");
    }
    return j;
  }

  function handleError(e) {
    if (e instanceof ApiError && e.status === 401 && !/Permission/i.test(e.code)) {
      sessionStorage.removeItem(STORE_KEY);
      warn("The credential was not accepted (" + e.code + "). Sign in again.");
      location.hash = "#/signin";
      return;
    }
    warn(e instanceof ApiError ? e.message + " (" + e.code + ")" : "Could not reach custos: " + e.message);
  }

  function show(name) {
    for (const v of views) $("view-" + v).hidden = v !== name;
    $("nav").hidden = name === "signin";
    $("nav-queue").removeAttribute("aria-current");
    $("nav-models").removeAttribute("aria-current");
    if (name === "queue" || name === "item") $("nav-queue").setAttribute("aria-current", "page");
    if (name === "models") $("nav-models").setAttribute("aria-current", "page");
    const h = $("view-" + name).querySelector("h1");
    if (h) h.focus();
  }

  // ---------- sign in ----------

  async function signIn(ev) {
    ev.preventDefault();
    const value = $("credential").value.trim();
    if (!value) {
      warn("Enter an API key or a token.");
      $("credential").focus();
      return;
    }
    sessionStorage.setItem(STORE_KEY, value);
    $("credential").value = "";
    try {
      await api("GET", "/v1/reviews?limit=1");
      say("Signed in.");
      if (location.hash === "#/queue") route();
      else location.hash = "#/queue"; // hashchange routes
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && /Permission/i.test(e.code)) {
        notice = "Signed in without the reviewer role: only deployment cards are available.";
        say(notice);
        if (location.hash === "#/models") route();
        else location.hash = "#/models";
        return;
      }
      sessionStorage.removeItem(STORE_KEY);
      warn(e instanceof ApiError ? "Sign-in failed: " + e.message : "Could not reach custos.");
      $("credential").focus();
    }
  }

  function signOut() {
    sessionStorage.removeItem(STORE_KEY);
    currentItem = null;
    say("Signed out.");
    location.hash = "#/signin";
  }

  // ---------- queue ----------

  function safetyCell(s) {
    if (!s) return "-";
    const flags = [];
    if (s.prompt_filtered) flags.push("prompt filtered");
    if (s.completion_filtered) flags.push("output filtered");
    if (s.jailbreak_detected) flags.push("jailbreak");
    if (s.indirect_attack_detected) flags.push("indirect attack");
    if (s.pii_prompt) flags.push("PII in prompt: " + s.pii_prompt);
    if (s.pii_completion) flags.push("PII in output: " + s.pii_completion);
    if (s.blocklist_hits) flags.push("blocklist: " + s.blocklist_hits);
    let max = -1;
    for (const k of ["prompt_severity", "completion_severity"])
      for (const v of Object.values(s[k] || {})) if (typeof v === "number" && v > max) max = v;
    if (max > 0) flags.push("max severity " + max);
    return flags.length ? el("span", { class: "flag" }, flags.join(", ")) : "none";
  }

  function queueRow(it) {
    const link = el("a", { href: "#/item/" + encodeURIComponent(it.id), "aria-label": "Open item " + it.id }, it.id);
    return el(
      "tr",
      { "data-id": it.id },
      el("td", null, link),
      el("td", null, it.use_case || "-"),
      el("td", { class: it.tier === "high" ? "tier-high" : null }, it.tier || "-"),
      el("td", null, it.deployment || "-"),
      el("td", null, it.requester || "-"),
      el("td", null, utc(it.created)),
      el("td", null, utc(it.deadline)),
      el("td", null, safetyCell(it.safety)),
      el("td", null, it.status || "-")
    );
  }

  async function loadQueue(more) {
    const status = $("f-status").value;
    const uc = $("f-usecase").value.trim();
    const q = new URLSearchParams({ status, limit: "50" });
    if (uc) q.set("use_case", uc);
    if (more && queueAfter) q.set("after", queueAfter);
    const seq = ++queueSeq;
    $("queue-caption").textContent = status === "all" ? "All items" : "Items with status " + status;
    try {
      const j = await api("GET", "/v1/reviews?" + q.toString());
      if (seq !== queueSeq) return;
      if (!more) clear($("queue-body"));
      for (const it of j.data || []) $("queue-body").append(queueRow(it));
      queueAfter = j.last_id || null;
      $("queue-more").hidden = !j.has_more;
      const n = $("queue-body").rows.length;
      $("queue-empty").hidden = n !== 0;
      $("queue-table").hidden = n === 0;
      say((notice ? notice + " " : "") + n + (n === 1 ? " item" : " items") + " in the list.");
      notice = null;
    } catch (e) {
      handleError(e);
    }
  }

  // ---------- one item ----------

  function kvTable(obj, caption) {
    const t = el("table", { class: "kv" });
    if (caption) t.append(el("caption", null, caption));
    const body = el("tbody");
    for (const [k, v] of Object.entries(obj || {})) {
      const shown = v !== null && typeof v === "object" ? JSON.stringify(v) : v === null ? "-" : String(v);
      body.append(el("tr", null, el("th", { scope: "row" }, k), el("td", null, shown)));
    }
    t.append(body);
    return t;
  }

  // Azure-style content_filter_results ({hate: {filtered, severity}, jailbreak: {filtered, detected}, pii: ...}).
  function filterTable(results, caption) {
    const t = el("table", { class: "grid" });
    t.append(el("caption", null, caption));
    t.append(
      el(
        "thead",
        null,
        el("tr", null, el("th", { scope: "col" }, "Check"), el("th", { scope: "col" }, "Result"),
           el("th", { scope: "col" }, "Filtered"))
      )
    );
    const body = el("tbody");
    for (const [k, v] of Object.entries(results || {})) {
      let result = "";
      if (v && typeof v === "object") {
        if ("severity" in v) result = "severity " + v.severity;
        else if ("detected" in v) result = v.detected ? "detected" : "not detected";
        else result = JSON.stringify(v);
      } else result = String(v);
      const filtered = v && typeof v === "object" && v.filtered ? "yes" : "no";
      body.append(el("tr", null, el("th", { scope: "row" }, k), el("td", null, result),
                     el("td", { class: filtered === "yes" ? "flag" : null }, filtered)));
    }
    t.append(body);
    return t;
  }

  // Ungrounded passages of the first choice as code-point ranges [start, end): custos' annotation
  // (ungrounded_material: details[].completion_start_offset / completion_end_offset, code points), or Azure's
  // detectGroundedness shape (ungroundedDetails[].text), located in the text.
  function ungroundedRanges(g, text) {
    if (!g || typeof g !== "object") return [];
    const cps = Array.from(text || "");
    const out = [];
    for (const d of g.details || []) {
      const a = d && d.completion_start_offset, b = d && d.completion_end_offset;
      if (Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b > a && b <= cps.length) out.push([a, b]);
    }
    for (const d of g.ungroundedDetails || g.ungrounded_details || []) {
      const i = d && typeof d.text === "string" && d.text ? (text || "").indexOf(d.text) : -1;
      if (i >= 0) {
        const a = Array.from(text.slice(0, i)).length;
        out.push([a, a + Array.from(d.text).length]);
      }
    }
    return out.sort((x, y) => x[0] - y[0]);
  }

  // Output text with ungrounded ranges marked (<mark>), built from text nodes only.
  function markedText(text, ranges) {
    const pre = el("pre", { class: "text" });
    const cps = Array.from(text || "");
    let pos = 0;
    for (const [a, b] of ranges) {
      if (a < pos) continue;
      pre.append(document.createTextNode(cps.slice(pos, a).join("")));
      pre.append(el("mark", { class: "ungrounded", title: "ungrounded" }, cps.slice(a, b).join("")));
      pos = b;
    }
    pre.append(document.createTextNode(cps.slice(pos).join("")));
    return pre;
  }

  function renderItem(it) {
    currentItem = it;
    $("item-h").textContent = "Item " + it.id;
    const meta = clear($("item-meta"));
    const rows = [
      ["Status", it.status],
      ["Use case", it.use_case],
      ["Tier", it.tier],
      ["Kind", it.kind],
      ["Deployment", it.deployment],
      ["Model", it.model],
      ["Requester", it.requester],
      ["Request id", it.request_id],
      ["Created (UTC)", utc(it.created)],
      ["Deadline (UTC)", utc(it.deadline)],
    ];
    if (it.decision) rows.push(["Decision", it.decision + " by " + (it.reviewer || "?") + " at " + utc(it.decided_at)]);
    for (const [k, v] of rows) meta.append(el("dt", null, k), el("dd", null, v === undefined || v === null ? "-" : v));

    const prompt = clear($("item-prompt"));
    const req = it.request;
    if (!req) prompt.append(el("p", null, it.content_purged ? "Content purged by retention." : "No content stored."));
    else if (Array.isArray(req.messages))
      for (const m of req.messages) {
        const content = messageText(m);
        prompt.append(el("div", { class: "msg" }, el("p", { class: "role" }, m.role || "?"),
                         el("pre", { class: "text" }, content)));
      }
    else prompt.append(el("pre", { class: "text" }, typeof req.prompt === "string" ? req.prompt : JSON.stringify(req)));

    const out = clear($("item-output"));
    const outputs = Array.isArray(it.output) ? it.output : [];
    const ranges = outputs.length ? ungroundedRanges(it.groundedness, outputs[0].text || "") : [];
    if (!outputs.length) out.append(el("p", null, "No output stored."));
    outputs.forEach((o, n) => {
      out.append(el("div", { class: "msg" },
                    el("p", { class: "role" }, "choice " + (o.index ?? 0) + " · finish_reason " + (o.finish_reason || "-")),
                    markedText(o.text || "", n === 0 ? ranges : [])));
    });
    if (it.edited_text) out.append(el("h3", null, "Edited text"), el("pre", { class: "text" }, it.edited_text));
    if (it.reason) out.append(el("h3", null, "Reason"), el("pre", { class: "text" }, it.reason));

    const saf = clear($("item-safety"));
    if (it.safety) saf.append(kvTable(flattenSafety(it.safety), "Summary"));
    for (const p of it.prompt_filter_results || [])
      saf.append(filterTable(p.content_filter_results, "Prompt " + (p.prompt_index ?? 0)));
    for (const o of outputs)
      if (o.content_filter_results) saf.append(filterTable(o.content_filter_results, "Output choice " + (o.index ?? 0)));

    const src = clear($("item-sources"));
    const sources = Array.isArray(it.sources) ? it.sources : [];
    if (!sources.length) src.append(el("p", null, "No sources in the prompt."));
    sources.forEach((s, i) => {
      const label = "Source " + (i + 1) + (s.role ? " (" + s.role + (s.tool_call_id ? " " + s.tool_call_id : "") + ")" : "");
      src.append(el("div", { class: "msg" }, el("p", { class: "role" }, label), el("pre", { class: "text" }, s.content || "")));
    });

    const g = clear($("item-grounded"));
    if (!it.groundedness) g.append(el("p", null, "Not checked for this item."));
    else {
      g.append(el("p", null, ranges.length ? ranges.length + " ungrounded passage(s), marked in the output." : "No ungrounded passage."));
      const summary = Object.assign({}, it.groundedness);
      delete summary.ungroundedDetails;
      delete summary.ungrounded_details;
      delete summary.details;
      g.append(kvTable(summary));
      const cps = Array.from(outputs.length ? outputs[0].text || "" : "");
      const list = el("ul");
      for (const [a, b] of ranges) list.append(el("li", null, cps.slice(a, b).join("")));
      if (ranges.length) g.append(list);
    }

    const pending = it.status === "pending";
    $("decide-form").hidden = !pending;
    $("decide-h").hidden = false;
    $("decided").hidden = pending;
    if (!pending) $("decided").textContent = "This item is " + it.status + "; no decision can be taken.";
    $("edit-text").value = outputs.length ? outputs[0].text || "" : "";
    $("reason").value = "";
    document.querySelector('input[name="decision"][value="approve"]').checked = true;
    $("edit-wrap").hidden = true;
  }

  // A chat message's content as text: strings as they are, text parts joined, tool calls named.
  function messageText(m) {
    const parts = [];
    if (typeof m.content === "string") parts.push(m.content);
    else if (Array.isArray(m.content))
      for (const p of m.content) parts.push(p && p.type === "text" ? p.text : "[" + (p && p.type ? p.type : "part") + "]");
    for (const t of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
      const f = (t && t.function) || {};
      parts.push("tool call " + (t.id || "") + ": " + (f.name || "?") + "(" + (f.arguments || "") + ")");
    }
    return parts.join("\n");
  }

  function flattenSafety(s) {
    const flat = {};
    for (const [k, v] of Object.entries(s)) {
      if (v && typeof v === "object" && !Array.isArray(v))
        for (const [k2, v2] of Object.entries(v)) flat[k + "." + k2] = v2;
      else flat[k] = v;
    }
    return flat;
  }

  async function loadItem(id) {
    clear($("item-meta"));
    $("item-h").textContent = "Item " + id;
    try {
      renderItem(await api("GET", "/v1/reviews/" + encodeURIComponent(id) + "/item"));
      say("Item " + id + " loaded.");
    } catch (e) {
      handleError(e);
    }
  }

  async function decide(ev) {
    ev.preventDefault();
    if (!currentItem) return;
    const decision = document.querySelector('input[name="decision"]:checked').value;
    const reason = $("reason").value.trim();
    const body = { decision };
    if (decision === "edit") {
      body.text = $("edit-text").value;
      if (!body.text.trim()) {
        warn("Enter the edited output.");
        $("edit-text").focus();
        return;
      }
    }
    if ((decision === "edit" || decision === "reject") && !reason) {
      warn("A reason is required to " + decision + ".");
      $("reason").focus();
      return;
    }
    if (reason) body.reason = reason;
    $("decide-submit").disabled = true;
    try {
      const r = await api("POST", "/v1/reviews/" + encodeURIComponent(currentItem.id) + "/decision", body);
      const past = { approve: "approved", edit: "edited", reject: "rejected" }[decision];
      notice = "Item " + currentItem.id + " " + past + " (status " + (r && r.status ? r.status : past) + ").";
      say(notice);
      location.hash = "#/queue";
    } catch (e) {
      handleError(e);
    } finally {
      $("decide-submit").disabled = false;
    }
  }

  // ---------- deployment cards ----------

  function list(items, empty) {
    if (!items || !items.length) return el("p", null, empty);
    const ul = el("ul");
    for (const i of items) ul.append(el("li", null, i));
    return ul;
  }

  function renderCard(m) {
    const c = m.custos_card || {};
    const id = "card-" + m.id.replace(/[^A-Za-z0-9_-]/g, "_");
    const sec = el("section", { class: "card", "aria-labelledby": id, "data-deployment": m.id });
    sec.append(el("h2", { id }, m.id + (c.model && c.model !== m.id ? " (" + c.model + ")" : "")));
    if (c.description) sec.append(el("p", null, c.description));
    if (c.owner) sec.append(el("p", null, "Owner: " + c.owner));
    sec.append(el("h3", null, "Intended uses"), list(c.intended_uses, "Not stated."));
    sec.append(el("h3", null, "Out of scope"), list(c.out_of_scope_uses, "Not stated."));
    sec.append(el("h3", null, "Limitations"), list(c.limitations, "Not stated."));
    const p = c.policy || {};
    sec.append(el("h3", null, "Policy in force: " + (p.name || "?")));
    const ft = el("table", { class: "grid" });
    ft.append(el("caption", null, "Content filters (" + (p.mode || "default") + " mode)"));
    ft.append(el("thead", null, el("tr", null, el("th", { scope: "col" }, "Category"), el("th", { scope: "col" }, "Direction"),
                                   el("th", { scope: "col" }, "Threshold"), el("th", { scope: "col" }, "Blocking"))));
    const fb = el("tbody");
    for (const f of p.content_filters || [])
      fb.append(el("tr", null, el("th", { scope: "row" }, f.category), el("td", null, f.source),
                   el("td", null, f.enabled ? f.threshold : "off"), el("td", null, f.blocking ? "yes" : "no")));
    ft.append(fb);
    sec.append(ft);
    sec.append(kvTable({
      "jailbreak": (p.prompt_shields || {}).jailbreak,
      "indirect attack": (p.prompt_shields || {}).indirect_attack,
      "PII in prompts": (p.pii || {}).prompt,
      "PII in outputs": (p.pii || {}).completion,
      "blocklists": (p.blocklists || []).map((b) => b.name).join(", ") || "none",
    }, "Other checks"));
    const d = c.data_handling || {};
    sec.append(el("h3", null, "Data handling"));
    const ret = d.retention || {};
    sec.append(kvTable({
      "residency": d.residency,
      "region": d.region,
      "data zone": d.data_zone,
      "backends": (d.backends || []).map((b) => {
        const where = [b.region, b.data_zone].filter(Boolean).join(", ");
        return where ? b.backend + " (" + where + ")" : b.backend;
      }).join("; "),
      "prompt and output content stored": ret.content_stored ? "yes, " + ret.content_days + " days" : "no",
    }));
    sec.append(el("h3", null, "Evaluation results"));
    const evs = c.evaluations || [];
    if (!evs.length) sec.append(el("p", null, "No evaluation results published."));
    for (const e of evs) {
      if (e.error) {
        sec.append(el("p", null, e.file + ": " + e.error));
        continue;
      }
      const r = e.result || {};
      let shown;
      if (r.summary && typeof r.summary === "object") shown = Object.assign({ task: r.task || e.name, dataset: r.dataset || "-" }, r.summary);
      else {
        // no summary: the result's small top-level members (e.g. fairness: kind, sentences, gate)
        shown = {};
        for (const [k, v] of Object.entries(r)) {
          const s = v !== null && typeof v === "object" ? JSON.stringify(v) : String(v);
          if (s.length <= 400 && k !== "omitted" && k !== "truncated") shown[k] = v;
        }
      }
      sec.append(kvTable(shown, e.name + " (" + e.file + ")"));
    }
    return sec;
  }

  async function loadModels() {
    const box = clear($("models-list"));
    try {
      const j = await api("GET", "/v1/models");
      const data = j.data || [];
      if (!data.length) box.append(el("p", null, "This credential may not call any deployment."));
      for (const m of data) box.append(renderCard(await api("GET", "/v1/models/" + encodeURIComponent(m.id))));
      say((notice ? notice + " " : "") + data.length + " deployment card(s).");
      notice = null;
    } catch (e) {
      handleError(e);
    }
  }

  // ---------- routing ----------

  function route() {
    const h = location.hash || "#/queue";
    if (!credential()) {
      show("signin");
      if (h !== "#/signin") history.replaceState(null, "", "#/signin");
      return;
    }
    const m = h.match(/^#\/item\/([A-Za-z0-9_]{1,64})$/);
    if (m) {
      show("item");
      loadItem(m[1]);
    } else if (h === "#/models") {
      show("models");
      loadModels();
    } else {
      show("queue");
      queueAfter = null;
      loadQueue(false);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("queue-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      queueAfter = null;
      loadQueue(false);
    });
    $("queue-more").addEventListener("click", () => loadQueue(true));
    $("decide-form").addEventListener("submit", decide);
    for (const r of document.querySelectorAll('input[name="decision"]'))
      r.addEventListener("change", () => {
        $("edit-wrap").hidden = document.querySelector('input[name="decision"]:checked').value !== "edit";
      });
    window.addEventListener("hashchange", route);
    route();
  });
})();
