#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `custos evidence` (docs/evidence.md): for the demo configuration `make run` writes (scripts/run-demo) and for a
# governed configuration, the JSON report validates against docs/evidence.schema.json (python3-jsonschema), and the
# Markdown and HTML forms list the same controls with the same status. Store facts (key version and age) appear once
# custos has started and created its store. Deployment cards: GET /v1/models/{id} carries custos_card.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python3 -c 'import jsonschema' 2>/dev/null || { echo "SKIP: python3-jsonschema not installed"; exit 77; }
SCHEMA=$CUSTOS_SRC/docs/evidence.schema.json

# validate NAME JSON_FILE: the report is valid under the schema (and the schema itself is a valid 2020-12 schema).
validate() {
  local out
  if out=$(python3 - "$SCHEMA" "$2" 2>&1 <<'PY'
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
errors = sorted(Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2]))), key=lambda e: list(e.path))
for e in errors[:5]:
    print("/".join(map(str, e.path)), e.message[:300])
sys.exit(1 if errors else 0)
PY
  ); then ok "$1: JSON valid under docs/evidence.schema.json"; else fail "$1: JSON valid under the schema" "$out"; fi
}

# same_controls NAME BASE: BASE.json, BASE.md and BASE.html list the same control ids with the same status.
same_controls() {
  local out
  if out=$(python3 - "$2" 2>&1 <<'PY'
import json, re, sys, html
base = sys.argv[1]
controls = [(c["id"], c["status"], c["title"]) for c in json.load(open(base + ".json"))["controls"]]
md = open(base + ".md", encoding="utf-8").read()
ht = open(base + ".html", encoding="utf-8").read()
md_ids = re.findall(r"^## .* \(`([a-z0-9-]+)`\)$", md, re.M)
md_status = dict(re.findall(r"^\| `([a-z0-9-]+)` \| .*? \| ([a-z_]+) \|", md, re.M))
ht_ids = re.findall(r'<section id="([a-z0-9-]+)" data-control=', ht)
ht_status = dict(re.findall(r'<section id="([a-z0-9-]+)" data-control="[^"]*">\n<h2>.*?</h2>\n<p>Status: <span class="status">([a-z_]+)</span>', ht))
ids = [c[0] for c in controls]
problems = []
if md_ids != ids: problems.append("markdown sections %s != %s" % (md_ids, ids))
if ht_ids != ids: problems.append("html sections %s != %s" % (ht_ids, ids))
for cid, st, title in controls:
    if md_status.get(cid) != st: problems.append("markdown status of %s: %s != %s" % (cid, md_status.get(cid), st))
    if ht_status.get(cid) != st: problems.append("html status of %s: %s != %s" % (cid, ht_status.get(cid), st))
    if html.escape(title, quote=True) not in ht: problems.append("html lacks title " + title)
print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
  ); then ok "$1: markdown and HTML list the same controls and statuses as JSON"; else fail "$1: same controls" "$out"; fi
}

# control FILE ID FIELD: one field of control ID in the JSON report.
control() {
  python3 - "$1" "$2" "$3" <<'PY' 2>/dev/null || true
import json, sys
for c in json.load(open(sys.argv[1]))["controls"]:
    if c["id"] == sys.argv[2]:
        v = c
        for k in sys.argv[3].split("."):
            v = v[int(k)] if isinstance(v, list) else v[k]
        print(v if not isinstance(v, (dict, list)) else json.dumps(v))
PY
}

# fact FILE ID NAME: the value of fact NAME in control ID.
fact() {
  python3 - "$1" "$2" "$3" <<'PY' 2>/dev/null || true
import json, sys
for c in json.load(open(sys.argv[1]))["controls"]:
    if c["id"] == sys.argv[2]:
        for f in c["facts"]:
            if f["name"] == sys.argv[3]:
                v = f["value"]
                print(v if not isinstance(v, (dict, list)) else json.dumps(v))
PY
}

# ---------- 1. the demo configuration, exactly as scripts/run-demo writes it ----------
DEMO=$T/demo
mkdir -p "$DEMO/tls"
CUSTOS_PORT=$(free_port)
MOCK_PORT=$(free_port)
awk '/cat >"\$VAR\/custos.yaml" <<YAML/{on=1; next} on && /^YAML$/{exit} on' "$CUSTOS_SRC/scripts/run-demo" >"$T/demo.tmpl"
[ -s "$T/demo.tmpl" ] || { fail "demo config extracted from scripts/run-demo"; finish; }
CUSTOS_PORT=$CUSTOS_PORT MOCK_PORT=$MOCK_PORT python3 - "$T/demo.tmpl" >"$DEMO/custos.yaml" <<'PY'
import os, re, sys
t = open(sys.argv[1]).read().replace("\\`", "`")
print(re.sub(r"\$(CUSTOS_PORT|MOCK_PORT)", lambda m: os.environ[m.group(1)], t), end="")
PY
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$DEMO/tls/dev.key" -out "$DEMO/tls/dev.crt" >/dev/null 2>&1
printf 'sk-custos-demo-%s' "$(openssl rand -hex 24)" >"$DEMO/demo-api-key"
check "demo config is valid" 0 "$("$CUSTOS_BIN" config check "$DEMO/custos.yaml" >/dev/null 2>&1; echo $?)"

for fmt in json md html; do
  rc=0
  "$CUSTOS_BIN" evidence -c "$DEMO/custos.yaml" --format "$fmt" -o "$T/demo0.$fmt" 2>"$T/ev.err" || rc=$?
  check "demo (no store yet): evidence --format $fmt exits 0" 0 "$rc"
done
validate "demo (no store yet)" "$T/demo0.json"
same_controls "demo (no store yet)" "$T/demo0"
check "no store yet: store not read" "False" "$(jfield "$T/demo0.json" source.store.read)"
check "evidence does not create the store" "no" "$([ -e "$DEMO/custos.db" ] && echo yes || echo no)"
check "demo: TLS listener in force" "in_force" "$(control "$T/demo0.json" transmission-tls status)"
check "demo: lowest TLS version" "1.2" "$(fact "$T/demo0.json" transmission-tls "lowest TLS version accepted")"
check "demo: no network section" "not_configured" "$(control "$T/demo0.json" network-acl status)"
check "demo: HIPAA mapping of authentication" '["164.312(d)", "164.312(a)(2)(i)"]' \
  "$(control "$T/demo0.json" authentication mappings.hipaa)"
check "demo: the demo deployment has a card" "1 of 1" "$(fact "$T/demo0.json" transparency "deployments with a card")"
check "demo: use-case registry not configured" "not_configured" "$(control "$T/demo0.json" use-cases status)"
check "demo: evaluation results listed" '["harm", "shields", "pii", "grounded"]' \
  "$(fact "$T/demo0.json" transparency "evaluation results" | sed 's/, "fairness"//')"

# custos creates the store and key version 1 at its first start; the report then reads them.
start_custos "$DEMO/custos.yaml" "$CUSTOS_PORT"
stop_custos_clean
for fmt in json md html; do
  "$CUSTOS_BIN" evidence -c "$DEMO/custos.yaml" --format "$fmt" -o "$T/demo1.$fmt" 2>"$T/ev.err" ||
    fail "demo: evidence --format $fmt after start" "$(cat "$T/ev.err")"
done
validate "demo (store)" "$T/demo1.json"
same_controls "demo (store)" "$T/demo1"
check "store read" "True" "$(jfield "$T/demo1.json" source.store.read)"
check "store driver" "sqlite" "$(jfield "$T/demo1.json" source.store.driver)"
check "current key version from the store" "1" "$(fact "$T/demo1.json" encryption-at-rest "current key version")"
check "current key age in days" "0" "$(fact "$T/demo1.json" encryption-at-rest "current key age (days)")"
check "config sha256" "$(sha256sum "$DEMO/custos.yaml" | cut -d' ' -f1)" "$(jfield "$T/demo1.json" source.config_sha256)"
if grep -q "sk-custos-demo" "$T"/demo1.* "$T"/demo0.*; then fail "no API key in the reports"; else ok "no API key in the reports"; fi

# ---------- 2. a governed configuration: network ACL, TLS 1.3, card, plain HTTP exposed ----------
G=$T/gov
mkdir -p "$G"
cp "$DEMO/tls/dev.crt" "$DEMO/tls/dev.key" "$G/"
printf 'gov-key-1' >"$G/key"
GW_PORT=$(free_port)
cat >"$G/custos.yaml" <<YAML
listeners:
  - address: "127.0.0.1:$GW_PORT"
    tls: {cert: dev.crt, key: dev.key, min_version: "1.3"}
  - address: "0.0.0.0:$(free_port)"
    insecure: true
network:
  public_network_access: enabled
  default_action: deny
  ip_rules: ["127.0.0.1/32", "10.0.0.0/8"]
identity:
  api_keys:
    - {name: ops, key_file: key, roles: [admin]}
retention:
  content: {days: 30}
backends:
  - {name: m, provider: openai, url: "http://127.0.0.1:$(free_port)", region: westeurope, data_zone: eu}
rai_policies:
  - name: strict
    content_filters: [{category: hate, threshold: low}]
    pii: {prompt: redact}
deployments:
  - name: eu-chat
    type: datazone
    data_zone: eu
    rai_policy: strict
    backends: [m]
    card:
      description: "Drafts replies to customer e-mails for agents to edit."
      owner: "support-platform@example.com"
      intended_uses: ["first drafts of replies", "summaries of long threads"]
      out_of_scope_uses: ["medical, legal or financial advice"]
      limitations: ["may state wrong facts confidently", "English and German only"]
use_cases:
  - id: replies
    owner: "support-platform@example.com"
    tier: high
    deployments: [eu-chat]
    validation: {validated: true, evidence: "VAL-7", date: "2025-01-01", expires: "2099-01-01"}
  - id: old-letters
    owner: "claims@example.com"
    tier: elevated
    deployments: [eu-chat]
    validation: {validated: true, evidence: "VAL-1", date: "2019-10-01", expires: "2020-10-01", required: true}
YAML
check "governed config is valid" 0 "$("$CUSTOS_BIN" config check "$G/custos.yaml" >"$T/gcheck.out" 2>&1; echo $?)"
for fmt in json md html; do
  "$CUSTOS_BIN" evidence -c "$G/custos.yaml" --format "$fmt" -o "$T/gov.$fmt" 2>"$T/ev.err" ||
    fail "governed: evidence --format $fmt" "$(cat "$T/ev.err")"
done
validate "governed" "$T/gov.json"
same_controls "governed" "$T/gov"
check "governed: ACL in force" "in_force" "$(control "$T/gov.json" network-acl status)"
check "governed: exposed plain HTTP needs attention" "attention" "$(control "$T/gov.json" transmission-tls status)"
check "governed: retention days" "30" "$(fact "$T/gov.json" retention "retention (days)")"
check "governed: residency bounded" "in_force" "$(control "$T/gov.json" residency status)"
check "governed: card counted" "1 of 1" "$(fact "$T/gov.json" transparency "deployments with a card")"
check "governed: an expired validation needs attention" "attention" "$(control "$T/gov.json" use-cases status)"
check "governed: validation states" "validated expired" "$(python3 -c '
import json, sys
for c in json.load(open(sys.argv[1]))["controls"]:
    if c["id"] == "use-cases":
        print(" ".join(u["validation"] for u in c["facts"][0]["value"]))' "$T/gov.json")"
check "governed: human review in force" "in_force" "$(control "$T/gov.json" human-review status)"
check "governed: PII screening counted" "1" "$(fact "$T/gov.json" content-safety "deployments screening prompts for PII")"
check_contains "governed: policy threshold in the report" '"threshold": "low"' "$(cat "$T/gov.json")"
rc=0
"$CUSTOS_BIN" evidence -c "$G/custos.yaml" --format pdf >/dev/null 2>&1 || rc=$?
check "unknown format is a usage error" 2 "$rc"

# ---------- 3. the card at GET /v1/models/{id} ----------
sed -i "/0.0.0.0:/,+1d" "$G/custos.yaml"
start_custos "$G/custos.yaml" "$GW_PORT"
code=$(req card --cacert "$G/dev.crt" -H "api-key: gov-key-1" "https://127.0.0.1:$GW_PORT/v1/models/eu-chat")
check "GET /v1/models/eu-chat" 200 "$code"
check "model object shape kept" "model" "$(jfield "$T/card.body" object)"
check "card: intended use" "first drafts of replies" "$(jfield "$T/card.body" custos_card.intended_uses.0)"
check "card: limitation" "English and German only" "$(jfield "$T/card.body" custos_card.limitations.1)"
check "card: policy name" "strict" "$(jfield "$T/card.body" custos_card.policy.name)"
check "card: PII prompt action" "redact" "$(jfield "$T/card.body" custos_card.policy.pii.prompt)"
check "card: data zone" "eu" "$(jfield "$T/card.body" custos_card.data_handling.data_zone)"
check "card: retention" "30" "$(jfield "$T/card.body" custos_card.data_handling.retention.content_days)"
check "card: harm evaluation from models/eval/harm.json" \
  "$(jfield "$CUSTOS_SRC/models/eval/harm.json" summary.any_harm_auprc)" \
  "$(jfield "$T/card.body" custos_card.evaluations.0.result.summary.any_harm_auprc)"
check "card: no backend URL" "" "$(grep -o '127.0.0.1' "$T/card.body" | head -1)"
check "models answer is not cached" "no-store" "$(hdr card cache-control)"
stop_custos_clean
finish
