/* SPDX-License-Identifier: Apache-2.0
 * Trainer of the name / address tagger (custos train pii, pii_ner.h): reads the commercial_ok pii/ sets of
 * MANIFEST.tsv, generates more sentences from templates of its own filled with the pii/resources value lists, and
 * trains an averaged perceptron over the hashed token features, quantised to int8 (model.h). Deterministic. Train /
 * dev split: wnut17 by its own split; generated rows by template AND by identity / company (both held out). */
#include "safety/pii_ner.h"
#include "safety/train.h"
#include "safety/train_internal.h"

#include "util/err.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NT CUSTOS_PII_NER_NTAGS
#define MAX_ROW_SPANS 32
#define GEN_PER_TEMPLATE 300
#define DEV_MOD 5 /* template / identity / company index % DEV_MOD == DEV_MOD - 1 -> dev */

typedef struct prow {
    char *text;
    size_t len;
    uint32_t ns;
    struct {
        uint32_t start, end; /* code points */
        uint8_t tag;
    } sp[MAX_ROW_SPANS];
    uint8_t dev;
    const char *src;
} prow_t;

typedef struct prows {
    prow_t *v;
    size_t n, cap;
} prows_t;

static int prow_push(prows_t *r, prow_t *row)
{
    return custos_train_push(&r->v, &r->n, &r->cap, row, sizeof(*row));
}

/* Source label -> tag (0 = not an entity we tag). */
static uint8_t tag_of(const char *type)
{
    static const struct {
        const char *name;
        uint8_t tag;
    } map[] = {
        {"PERSON", 1}, {"STREET_ADDRESS", 2}, {"ORGANIZATION", 3}, {"CORPORATION", 3}, {"GROUP", 3}, {"LOCATION", 4},
        {"GPE", 4},    {"ADDRESS", 2},        {"ORG", 3},          {"PER", 1}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].name, type) == 0)
            return map[i].tag;
    return 0;
}

/* ---- source sets ---- */

static int load_jsonl(const char *path, const char *src, prows_t *rows, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return CUSTOS_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, f) >= 0) {
        json_object *j = json_tokener_parse(line), *t, *spans, *orig, *split;
        if (!j || !json_object_object_get_ex(j, "text", &t)) {
            json_object_put(j);
            continue;
        }
        prow_t r = {0};
        r.src = src;
        r.text = strdup(json_object_get_string(t));
        r.len = r.text ? strlen(r.text) : 0;
        if (json_object_object_get_ex(j, "orig", &orig) && json_object_object_get_ex(orig, "split", &split))
            r.dev = strcmp(json_object_get_string(split), "dev") == 0;
        if (json_object_object_get_ex(j, "spans", &spans))
            for (size_t k = 0; k < json_object_array_length(spans) && r.ns < MAX_ROW_SPANS; k++) {
                json_object *sp = json_object_array_get_idx(spans, k), *ty, *st, *en;
                if (!json_object_object_get_ex(sp, "type", &ty) || !json_object_object_get_ex(sp, "start", &st) ||
                    !json_object_object_get_ex(sp, "end", &en))
                    continue;
                uint8_t tg = tag_of(json_object_get_string(ty));
                if (!tg)
                    continue;
                r.sp[r.ns].start = (uint32_t)json_object_get_int(st);
                r.sp[r.ns].end = (uint32_t)json_object_get_int(en);
                r.sp[r.ns++].tag = tg;
            }
        json_object_put(j);
        if (!r.text || (rc = prow_push(rows, &r)) < 0) {
            free(r.text);
            rc = CUSTOS_ENOMEM;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

typedef struct pii_load {
    prows_t *rows;
    int files;
} pii_load_t;

static int pii_load_one(void *ud, const char *fn, const char *path, const char *notes, char *err, size_t errlen)
{
    pii_load_t *l = ud;
    (void)notes;
    size_t fl = strlen(fn);
    if (strncmp(fn, "pii/", 4) != 0 || strchr(fn + 4, '/') || fl < 11 || strcmp(fn + fl - 6, ".jsonl") != 0)
        return 0;
    static char srcs[8][64];
    if (l->files >= 8)
        return 0;
    snprintf(srcs[l->files], sizeof(srcs[l->files]), "%.*s", (int)(fl - 10), fn + 4);
    return load_jsonl(path, srcs[l->files++], l->rows, err, errlen);
}

/* Loads every pii/NAME.jsonl file of MANIFEST.tsv with commercial_ok = yes. */
static int load_manifest(const custos_train_opts_t *o, prows_t *rows, char *err, size_t errlen)
{
    pii_load_t l = {rows, 0};
    int rc = custos_train_manifest_each(o->data_dir, pii_load_one, &l, err, errlen);
    if (rc == 0 && !l.files) {
        snprintf(err, errlen, "%s/MANIFEST.tsv lists no commercial_ok pii/*.jsonl file", o->data_dir);
        rc = CUSTOS_EINVAL;
    }
    return rc;
}

/* ---- generator resources ---- */

enum {
    F_GIVEN,
    F_MID,
    F_SUR,
    F_TITLE,
    F_STREET,
    F_CITY,
    F_STATE,
    F_ZIP,
    F_COUNTRY,
    F_EMAIL,
    F_PHONE,
    F_BDAY,
    F_JOB,
    F_COMPANY,
    F_NF
};
static const char *const FNG_COLS[F_NF] = {
    "GivenName", "MiddleInitial", "Surname",      "Title",           "StreetAddress", "City",       "StateFull",
    "ZipCode",   "CountryFull",   "EmailAddress", "TelephoneNumber", "Birthday",      "Occupation", "Company"};

typedef struct ident {
    char *f[F_NF];
} ident_t;

typedef struct res {
    ident_t *id;
    size_t nid;
    char **org;
    size_t norg;
} res_t;

/* Template slots filled with one identity field as it is (tag 0: not an entity the tagger learns). */
typedef struct field_slot {
    char slot;
    uint8_t field, tag;
} field_slot_t;

static const field_slot_t field_slots[] = {
    {'G', F_GIVEN, 1}, {'S', F_SUR, 1},   {'A', F_STREET, 2}, {'C', F_CITY, 4}, {'R', F_STATE, 4}, {'K', F_COUNTRY, 4},
    {'Z', F_ZIP, 0},   {'E', F_EMAIL, 0}, {'P', F_PHONE, 0},  {'D', F_BDAY, 0}, {'J', F_JOB, 0}};

static const field_slot_t *field_slot(char slot)
{
    for (size_t i = 0; i < sizeof(field_slots) / sizeof(field_slots[0]); i++)
        if (field_slots[i].slot == slot)
            return &field_slots[i];
    return NULL;
}

/* Splits one CSV line (RFC 4180 quotes) in place into at most max fields. */
static int csv_split(char *s, char **fld, int max)
{
    int n = 0;
    while (n < max) {
        char *w = s;
        fld[n++] = w;
        if (*s == '"') {
            s++;
            for (;;) {
                if (!*s)
                    break;
                if (*s == '"' && s[1] == '"') {
                    *w++ = '"';
                    s += 2;
                } else if (*s == '"') {
                    s++;
                    break;
                } else
                    *w++ = *s++;
            }
            while (*s && *s != ',')
                s++;
        } else {
            while (*s && *s != ',')
                *w++ = *s++;
        }
        int more = *s == ',';
        if (*s)
            s++;
        *w = 0;
        if (!more)
            break;
    }
    return n;
}

static int load_resources(const custos_train_opts_t *o, res_t *r, char *err, size_t errlen)
{
    char path[4200], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0, col[F_NF];
    snprintf(path, sizeof(path), "%s/pii/resources/FakeNameGenerator.com_3000.csv", o->data_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return CUSTOS_EIO;
    }
    int first = 1;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        char *fld[64];
        int nf = csv_split(line, fld, 64);
        if (first) {
            first = 0;
            if (nf && strncmp(fld[0], "\xef\xbb\xbf", 3) == 0)
                fld[0] += 3;
            for (int k = 0; k < F_NF; k++) {
                col[k] = -1;
                for (int i = 0; i < nf; i++)
                    if (strcmp(fld[i], FNG_COLS[k]) == 0)
                        col[k] = i;
                if (col[k] < 0) {
                    snprintf(err, errlen, "%s: no column %s", path, FNG_COLS[k]);
                    rc = CUSTOS_EINVAL;
                    goto out;
                }
            }
            continue;
        }
        ident_t id;
        int ok = 1;
        for (int k = 0; k < F_NF; k++)
            if (!(id.f[k] = strdup(col[k] < nf ? fld[col[k]] : "")))
                ok = 0;
        void *nv = ok ? realloc(r->id, (r->nid + 1) * sizeof(ident_t)) : NULL;
        if (!nv) {
            for (int k = 0; k < F_NF; k++)
                free(id.f[k]);
            rc = CUSTOS_ENOMEM;
            goto out;
        }
        r->id = nv;
        r->id[r->nid++] = id;
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/pii/resources/companies_and_organizations.csv", o->data_dir);
    if (!(f = fopen(path, "r"))) {
        snprintf(err, errlen, "cannot open %s", path);
        rc = CUSTOS_EIO;
        goto done;
    }
    first = 1;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        char *fld[4];
        csv_split(line, fld, 4);
        if (first || !fld[0][0]) {
            first = 0;
            continue;
        }
        void *nv = realloc(r->org, (r->norg + 1) * sizeof(char *));
        if (!nv || !(((char **)nv)[r->norg] = strdup(fld[0]))) {
            if (nv)
                r->org = nv;
            rc = CUSTOS_ENOMEM;
            goto out;
        }
        r->org = nv;
        r->norg++;
    }
out:
    fclose(f);
done:
    free(line);
    if (rc == 0 && (r->nid < 100 || r->norg < 100)) {
        snprintf(err, errlen, "pii/resources: too few identities or organisations");
        rc = CUSTOS_EINVAL;
    }
    return rc;
}

/* ---- sentence templates (our own). Slots: {N} full name, {G} given name, {S} surname (PERSON); {T} title;
 * {A} street address (STREET_ADDRESS); {C} city, {R} state / region, {K} country (LOCATION); {O} organisation
 * (ORGANIZATION); {Z} postcode, {E} e-mail, {P} phone, {D} birth date, {J} occupation (not tagged here). ---- */

static const char *const TEMPLATES[] = {
    /* clinical notes */
    "Patient {N} was seen today for follow-up of type 2 diabetes.",
    "Pt: {N}, DOB {D}. Lives at {A}, {C}. Referred by Dr. {S}.",
    "{T} {S} presented to the ED with chest pain radiating to the left arm.",
    "Discharge summary for {N}. Follow up with Dr. {G} {S} at {O} in two weeks.",
    "The patient, {G} {S}, reports worsening symptoms of Parkinson's disease since March.",
    "Seen by {N} (attending). Plan: continue metformin, recheck A1c in 3 months.",
    "Home address: {A}, {C}, {R} {Z}. Emergency contact: {N}, {P}.",
    "{N} is a {J} with a history of hypertension and Crohn's disease.",
    "Consult requested by Dr. {S} regarding {G}'s elevated troponin.",
    "Mother ({N}) reports the child has had a fever for three days.",
    "Patient name: {N}\nAddress: {A}\nCity: {C}\nPhone: {P}",
    "History obtained from the patient's daughter, {G} {S}, who lives on {A}.",
    "Radiology report for {N}: no acute findings. Read by Dr. {N}.",
    "Family history notable for Alzheimer's disease (father) and Down syndrome (sibling).",
    "Transferred from {O} to our unit; patient {S}, {G} is stable.",
    /* e-mail */
    "Hi {G},\n\nThanks for sending the contract. I will forward it to {N} at {O} today.\n\nBest,\n{N}",
    "Dear {T} {S},\nYour parcel will be delivered to {A}, {C} on Monday.",
    "From: {N} <{E}>\nTo: {N}\nSubject: Meeting at {O}",
    "Please update my mailing address to {A}, {C}, {R} {Z}. Regards, {N}",
    "Hello team, {N} from {O} will join the call on Thursday.",
    "Kind regards,\n{N}\n{J}, {O}\n{A}\n{C}, {K}",
    "Can you ask {G} whether the invoice from {O} was paid?",
    "I met {N} at the conference in {C} last week; she works for {O}.",
    "Thanks {G}! I'll send the samples to {A} by Friday.",
    "Cc: {N}; {N}. Please review the attached draft before Tuesday.",
    /* chat */
    "hey its {G}, can u pick me up at {A} later?",
    "my name is {N} and i live in {C}",
    "Can you write a cover letter for {N} applying to {O}?",
    "Draft a reply to {G} {S} saying I can't make it to {C} this weekend.",
    "I'm moving from {C} to {K} next month, any tips?",
    "{G} said the new office is at {A}.",
    "Who is the CEO of {O}?",
    "Summarize this: {N} signed a lease for {A} in {C}, {R}.",
    "What time does the {O} office in {C} open?",
    "Tell {G} I said hi!",
    /* forms and records */
    "Name: {N} | Address: {A} | City: {C} | Country: {K}",
    "Applicant: {S}, {G}\nEmployer: {O}\nOccupation: {J}",
    "Ship to: {N}, {A}, {C} {Z}, {K}",
    "Billing contact {N}, {O}, {A}, {C}, {R}",
    "Tenant: {N}. Property: {A}, {C}. Landlord: {O}.",
    "Full name: {N}\nDate of birth: {D}\nPlace of birth: {C}, {K}",
    "Insured: {N}; Policy holder address: {A}",
    "Witness statement given by {N}, resident of {C}.",
    "Customer {N} ({E}) changed the delivery address to {A}.",
    "Beneficiary: {N}, {A}, {C}",
    /* logs and code */
    "2024-03-01T10:22:11Z INFO user={G}.{S} action=login org=\"{O}\"",
    "customer = {\"name\": \"{N}\", \"street\": \"{A}\", \"city\": \"{C}\"}",
    "INSERT INTO clients (name, address) VALUES ('{N}', '{A}');",
    "assert get_owner(repo) == \"{N}\"",
    "[warn] shipment to {A}, {C} delayed; notify {N}",
    "author: {N} <{E}>",
    /* news / prose */
    "{N}, a spokesperson for {O}, declined to comment.",
    "The {O} plant in {C}, {R} will close next year, {N} told reporters.",
    "After years in {K}, {N} returned to {C} to open a bakery on {A}.",
    "{O} announced that {N} will become chief financial officer.",
    "Police said the fire started at a house on {A} early on Sunday.",
    "{G} {S} won the {C} marathon for the second time.",
    "Residents of {C} gathered outside {O} headquarters on Monday.",
    "According to {N}, the bridge in {C} needs urgent repairs.",
    "The report by {O} lists {K} among the fastest-growing markets.",
    "{T} {S} and {T} {S} will host the dinner at their home on {A}.",
    /* hard negatives and near misses (entities only where slotted) */
    "Main Street Bank approved the loan for {N} on Friday.",
    "I read it in the Wall Street Journal this morning.",
    "Parkinson's disease and Huntington's disease are both neurodegenerative.",
    "The Apgar score was 9 at five minutes. Gram stain negative.",
    "Monday: Review the Q3 budget. Tuesday: Board meeting.",
    "Please Note: The Office Will Be Closed On Friday For The Holiday.",
    "Take two tablets of Tylenol every six hours as needed for pain.",
    "The Smith chart and the Gaussian distribution are covered in Chapter 4.",
    "Click Save, then open Settings and choose Advanced Options.",
    "New York style pizza is different from Chicago deep dish.",
    "We used the Kaplan-Meier estimator and a Cox proportional hazards model.",
    "Order #4471 shipped via Express Mail; Tracking Number Pending.",
    "Great Barrier Reef tours sell out fast in December.",
    "Use Python 3.11 and the Linux kernel 6.1 for the build.",
    "Hodgkin lymphoma and Graves' disease were ruled out.",
    "The Fifth Avenue store of {O} opened in 1998.",
    /* capitalised labels in front of identifiers and record fields (the structured scanner's territory) */
    "Build 2.14.3 finished at 20:46:27.",
    "Results: within normal limits. Next visit in three weeks.",
    "ISBN 978-3-16-148410-0 is out of print.",
    "SKU 4420-331-0983 is back in stock.",
    "Prescriber DEA AB1234563 verified.",
    "Logged in from 10.0.0.12 at 09:14.",
    "Medicare MBI 1EG4-TE5-MK73 on file.",
    "NPI 1234567893 confirmed by the clinic.",
    "Passport number 350492589 (US).",
    "Visa ending 4242 was charged $19.99.",
    "Patient born {D}, stable.",
    "Ticket #48213 closed. Tracking 1Z999AA10123456784 delivered.",
    "Wire transfer to IBAN DE89 3704 0044 0532 0130 00 pending.",
    "Patiënt stabiel. Ça va mieux aujourd'hui.",
    "SSN: 238-82-2485. DOB: {D}. MRN 00482913.",
    "Contact: {E} or call {P}.",
    "Invoice INV-2024-0042 due Friday; PO 77812 attached.",
    "Version 10.4.2 fixes the Login Page and the Export Button.",
    "Status: Approved. Priority: High. Owner: Team Alpha.",
    "BP 120/80, HR 72, SpO2 98% on RA. Plan: Continue Current Meds.",
    "ERROR Timeout after 30s (Retry 3 of 5) in PaymentService.",
    "Q: What is the Capital Gains Tax rate? A: It depends.",
    "Heart Rate Variability and Blood Pressure Trends are shown in Figure 2.",
    "Thanks, Team! Have A Great Weekend.",
};

#define NTEMPLATES (sizeof(TEMPLATES) / sizeof(TEMPLATES[0]))

typedef struct gbuf {
    char b[2048];
    size_t n;
    uint32_t cp;
} gbuf_t;

static void gput(gbuf_t *g, const char *s)
{
    for (; *s && g->n + 1 < sizeof(g->b); s++) {
        g->b[g->n++] = *s;
        g->cp += ((unsigned char)*s & 0xc0) != 0x80;
    }
    g->b[g->n] = 0;
}

static uint64_t rnd(uint64_t *s, uint64_t n)
{
    return custos_train_rng_next(s) % n;
}

/* Picks an identity / organisation index on side dev of the split. */
static size_t pick(uint64_t *s, size_t n, int dev)
{
    for (;;) {
        size_t i = (size_t)rnd(s, n);
        if ((i % DEV_MOD == DEV_MOD - 1) == dev)
            return i;
    }
}

static int generate(const res_t *r, prows_t *rows, uint32_t seed)
{
    uint64_t s = custos_train_mix64(seed ^ 0x5049494e45520001ULL) | 1;
    for (size_t t = 0; t < NTEMPLATES; t++) {
        int dev = t % DEV_MOD == DEV_MOD - 1;
        int reps = strchr(TEMPLATES[t], '{') ? GEN_PER_TEMPLATE : 40;
        for (int k = 0; k < reps; k++) {
            gbuf_t g = {.n = 0};
            prow_t row = {0};
            row.dev = (uint8_t)dev;
            row.src = "generated";
            int lower = rnd(&s, 12) == 0;
            for (const char *p = TEMPLATES[t]; *p;) {
                if (p[0] != '{' || !p[1] || p[2] != '}') {
                    char c[2] = {*p++, 0};
                    gput(&g, c);
                    continue;
                }
                char slot = p[1];
                p += 3;
                const ident_t *id = &r->id[pick(&s, r->nid, dev)];
                uint32_t st = g.cp;
                uint8_t tag = 0;
                char tmp[512];
                switch (slot) {
                case 'N': {
                    int form = (int)rnd(&s, 10);
                    int mid = id->f[F_MID][0] != 0;
                    if ((form == 6 || form == 7) && mid) {
                        snprintf(tmp, sizeof(tmp), "%s %s. %s", id->f[F_GIVEN], id->f[F_MID], id->f[F_SUR]);
                    } else if (form == 8 && mid) { /* initial: the whole first code point */
                        int il = id->f[F_GIVEN][0] != 0;
                        while (id->f[F_GIVEN][il] && ((unsigned char)id->f[F_GIVEN][il] & 0xc0) == 0x80)
                            il++;
                        snprintf(tmp, sizeof(tmp), "%.*s. %s", il, id->f[F_GIVEN], id->f[F_SUR]);
                    } else {
                        snprintf(tmp, sizeof(tmp), "%s %s", id->f[F_GIVEN], id->f[F_SUR]);
                    }
                    tag = 1;
                    break;
                }
                case 'T':
                    snprintf(tmp, sizeof(tmp), "%s", id->f[F_TITLE][0] ? id->f[F_TITLE] : "Mr.");
                    break;
                case 'O':
                    snprintf(tmp, sizeof(tmp), "%s", r->org[pick(&s, r->norg, dev)]), tag = 3;
                    break;
                default: {
                    const field_slot_t *fs = field_slot(slot);
                    if (fs) {
                        snprintf(tmp, sizeof(tmp), "%s", id->f[fs->field]);
                        tag = fs->tag;
                    } else {
                        snprintf(tmp, sizeof(tmp), "{%c}", slot);
                    }
                    break;
                }
                }
                if (lower)
                    for (char *q = tmp; *q; q++)
                        if (*q >= 'A' && *q <= 'Z')
                            *q = (char)(*q + 32);
                gput(&g, tmp);
                if (tag && row.ns && row.sp[row.ns - 1].tag == tag && row.sp[row.ns - 1].end + 1 == st &&
                    g.b[g.n - strlen(tmp) - 1] == ' ') {
                    row.sp[row.ns - 1].end = g.cp; /* "{G} {S}" is one name */
                } else if (tag && g.cp > st && row.ns < MAX_ROW_SPANS) {
                    row.sp[row.ns].start = st;
                    row.sp[row.ns].end = g.cp;
                    row.sp[row.ns++].tag = tag;
                }
            }
            if (lower)
                for (size_t q = 0; q < g.n; q++)
                    if (g.b[q] >= 'A' && g.b[q] <= 'Z')
                        g.b[q] = (char)(g.b[q] + 32);
            row.text = strdup(g.b);
            row.len = g.n;
            if (!row.text || prow_push(rows, &row) < 0) {
                free(row.text);
                return CUSTOS_ENOMEM;
            }
        }
    }
    return 0;
}

/* ---- training ---- */

typedef struct tokset {
    uint32_t *feat; /* nfeat per token */
    uint8_t *nf, *tag;
    size_t *row_start; /* first token of row i; row_start[nrows] = total */
    size_t n, cap;
} tokset_t;

static int featurize(const prows_t *rows, uint32_t seed, uint32_t mask, tokset_t *ts)
{
    ts->row_start = malloc((rows->n + 1) * sizeof(size_t));
    size_t tcap = 1024;
    custos_pii_ner_tok_t *tk = malloc(tcap * sizeof(*tk));
    if (!ts->row_start || !tk) {
        free(tk);
        return CUSTOS_ENOMEM;
    }
    for (size_t r = 0; r < rows->n; r++) {
        const prow_t *row = &rows->v[r];
        ts->row_start[r] = ts->n;
        if (row->dev)
            continue;
        if (row->len + 1 > tcap) {
            size_t nc = row->len + 1;
            void *nv = realloc(tk, nc * sizeof(*tk));
            if (!nv) {
                free(tk);
                return CUSTOS_ENOMEM;
            }
            tk = nv;
            tcap = nc;
        }
        size_t pos = 0, cpos = 0;
        size_t nt = custos_pii_ner_tokenize(row->text, row->len, &pos, &cpos, tk, tcap);
        if (ts->n + nt > ts->cap) {
            size_t nc = (ts->n + nt) * 2;
            void *a = realloc(ts->feat, nc * CUSTOS_PII_NER_MAX_FEATS * sizeof(uint32_t));
            if (a)
                ts->feat = a;
            void *b = realloc(ts->nf, nc);
            if (b)
                ts->nf = b;
            void *c = realloc(ts->tag, nc);
            if (c)
                ts->tag = c;
            if (!a || !b || !c) {
                free(tk);
                return CUSTOS_ENOMEM;
            }
            ts->cap = nc;
        }
        for (size_t i = 0; i < nt; i++) {
            size_t id = ts->n++;
            ts->nf[id] =
                (uint8_t)custos_pii_ner_features(tk, nt, i, seed, mask, ts->feat + id * CUSTOS_PII_NER_MAX_FEATS);
            uint8_t tg = 0;
            for (uint32_t k = 0; k < row->ns; k++)
                if (tk[i].cs >= row->sp[k].start && tk[i].cs < row->sp[k].end)
                    tg = row->sp[k].tag;
            ts->tag[id] = tg;
        }
    }
    ts->row_start[rows->n] = ts->n;
    free(tk);
    return 0;
}

static int write_dev(const char *path, const prows_t *rows)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return CUSTOS_EIO;
    for (size_t r = 0; r < rows->n; r++) {
        const prow_t *row = &rows->v[r];
        if (!row->dev)
            continue;
        json_object *j = json_object_new_object(), *sp = json_object_new_array();
        json_object_object_add(j, "text", json_object_new_string_len(row->text, (int)row->len));
        for (uint32_t k = 0; k < row->ns; k++) {
            json_object *o = json_object_new_object();
            json_object_object_add(o, "type", json_object_new_string(custos_pii_ner_heads[row->sp[k].tag]));
            json_object_object_add(o, "start", json_object_new_int64(row->sp[k].start));
            json_object_object_add(o, "end", json_object_new_int64(row->sp[k].end));
            json_object_array_add(sp, o);
        }
        json_object_object_add(j, "spans", sp);
        json_object_object_add(j, "src", json_object_new_string(row->src));
        fprintf(f, "%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);
    }
    return fclose(f) == 0 ? 0 : CUSTOS_EIO;
}

int custos_train_pii(const custos_train_opts_t *o, char *err, size_t errlen)
{
    prows_t rows = {0};
    res_t res = {0};
    tokset_t ts = {0};
    float *w = NULL;
    double *u = NULL;
    int8_t *q = NULL;
    size_t *order = NULL;
    uint32_t bits = o->hash_bits ? o->hash_bits : 18, epochs = o->epochs ? o->epochs : 10, seed = o->seed ? o->seed : 1;
    uint32_t mask = (1u << bits) - 1;
    size_t nb = (size_t)1 << bits;
    int rc;
    if ((rc = load_manifest(o, &rows, err, errlen)) < 0 || (rc = load_resources(o, &res, err, errlen)) < 0)
        goto out;
    size_t nsrc = rows.n;
    if ((rc = generate(&res, &rows, seed)) < 0)
        goto out;
    size_t ndev = 0;
    for (size_t r = 0; r < rows.n; r++)
        ndev += rows.v[r].dev;
    custos_train_log(o, "pii: %zu source rows, %zu generated rows (%zu templates), %zu dev rows\n", nsrc, rows.n - nsrc,
                     (size_t)NTEMPLATES, ndev);
    if (o->dev_out && (rc = write_dev(o->dev_out, &rows)) < 0) {
        snprintf(err, errlen, "cannot write %s", o->dev_out);
        goto out;
    }
    if ((rc = featurize(&rows, seed, mask, &ts)) < 0)
        goto out;
    custos_train_log(o, "pii: %zu training tokens, %u buckets\n", ts.n, (unsigned)nb);
    if (!ts.n || !ts.nf || !ts.tag || !ts.feat) {
        snprintf(err, errlen, "no training rows");
        rc = CUSTOS_EINVAL;
        goto out;
    }
    w = calloc(nb * NT, sizeof(float));
    u = calloc(nb * NT, sizeof(double));
    q = calloc(nb * NT, 1);
    order = malloc((rows.n + 1) * sizeof(size_t));
    if (!w || !u || !q || !order) {
        rc = CUSTOS_ENOMEM;
        goto out;
    }
    for (size_t r = 0; r < rows.n; r++)
        order[r] = r;
    uint64_t rs = custos_train_mix64(seed) | 1;
    double c = 1;
    for (uint32_t ep = 0; ep < epochs; ep++) {
        custos_train_shuffle(order, rows.n, &rs);
        size_t errs = 0;
        for (size_t oi = 0; oi < rows.n; oi++) {
            size_t r = order[oi];
            for (size_t ti = ts.row_start[r]; ti < ts.row_start[r + 1]; ti++) {
                const uint32_t *f = ts.feat + ti * CUSTOS_PII_NER_MAX_FEATS;
                float z[NT] = {0};
                for (uint8_t k = 0; k < ts.nf[ti]; k++)
                    for (int h = 0; h < NT; h++)
                        z[h] += w[(size_t)f[k] * NT + h];
                int best = 0;
                for (int h = 1; h < NT; h++)
                    if (z[h] > z[best])
                        best = h;
                int y = ts.tag[ti];
                if (best != y) {
                    errs++;
                    for (uint8_t k = 0; k < ts.nf[ti]; k++) {
                        size_t b = (size_t)f[k] * NT;
                        w[b + y] += 1, u[b + y] += c;
                        w[b + best] -= 1, u[b + best] -= c;
                    }
                }
                c++;
            }
        }
        custos_train_log(o, "pii: epoch %u: %zu token errors of %zu\n", ep + 1, errs, ts.n);
    }
    /* averaged weights: w - u / c; int8 with one scale per head (the quantiser's +-127 clamp never bites: the largest
     * |w| maps to 127) */
    custos_model_header_t h = {0};
    h.hash_bits = bits;
    h.hash_seed = seed;
    h.n_heads = NT;
    for (size_t k = 0; k < nb * NT; k++)
        w[k] = (float)(w[k] - u[k] / c);
    for (int hd = 0; hd < NT; hd++) {
        snprintf(h.heads[hd].name, sizeof(h.heads[hd].name), "%s", custos_pii_ner_heads[hd]);
        h.heads[hd].scale = custos_train_quantize_head(w, nb, NT, (size_t)hd, q);
        h.heads[hd].platt_a = 1;
    }
    if ((rc = custos_model_write(o->out, &h, q)) < 0)
        snprintf(err, errlen, "cannot write %s", o->out);
out:
    for (size_t r = 0; r < rows.n; r++)
        free(rows.v[r].text);
    free(rows.v);
    for (size_t i = 0; i < res.nid; i++)
        for (int k = 0; k < F_NF; k++)
            free(res.id[i].f[k]);
    free(res.id);
    for (size_t i = 0; i < res.norg; i++)
        free(res.org[i]);
    free(res.org);
    free(ts.feat);
    free(ts.nf);
    free(ts.tag);
    free(ts.row_start);
    free(w);
    free(u);
    free(q);
    free(order);
    return rc;
}
