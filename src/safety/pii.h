/* SPDX-License-Identifier: Apache-2.0
 * Structured PII / PHI identifiers: a single-pass hand-written scanner (no regex, no backtracking) with validators
 * (Luhn, mod-97, SSN ranges, NPI, DEA, MBI) and context words. Offsets are code points of the original text. */
#ifndef CUSTOS_SAFETY_PII_H
#define CUSTOS_SAFETY_PII_H

#include "safety/model.h"
#include "safety/normalize.h"

#include <stddef.h>
#include <stdint.h>

typedef enum custos_pii_type {
    CUSTOS_PII_EMAIL,
    CUSTOS_PII_PHONE,
    CUSTOS_PII_US_SSN,
    CUSTOS_PII_CREDIT_CARD,
    CUSTOS_PII_IBAN,
    CUSTOS_PII_IP_ADDRESS,
    CUSTOS_PII_URL,
    CUSTOS_PII_DATE,
    CUSTOS_PII_DATE_OF_BIRTH,
    CUSTOS_PII_US_NPI,
    CUSTOS_PII_US_DEA,
    CUSTOS_PII_MEDICARE_MBI,
    CUSTOS_PII_US_PASSPORT,
    CUSTOS_PII_US_DRIVER_LICENSE,
    CUSTOS_PII_ZIP,
    CUSTOS_PII_MRN,
    /* learned tagger (pii_ner.h; only with a pii_ner model loaded) */
    CUSTOS_PII_PERSON,
    CUSTOS_PII_STREET_ADDRESS,
    CUSTOS_PII_ORGANIZATION,
    CUSTOS_PII_LOCATION,
    CUSTOS_PII_NTYPES
} custos_pii_type_t;

#define CUSTOS_PII_NER_ALL 0xfu /* custos_pii_opts_t.ner_types: PERSON, STREET_ADDRESS, ORGANIZATION, LOCATION */

/* One finding: [start, end) in code points of the original text; score in [0,1]. */
typedef struct custos_pii_span {
    uint32_t start, end;
    float score;
    uint8_t type; /* custos_pii_type_t */
} custos_pii_span_t;

typedef struct custos_pii_opts {
    const char *mrn_format;    /* organisation MRN pattern, e.g. "MRN-#######": # digit, A letter, ? letter or digit,
                                  anything else literal (case-insensitive); NULL = context-gated 6..10 digits only */
    float min_score;           /* report spans scoring at least this; 0 = 0.5 */
    const custos_model_t *ner; /* name / address tagger (pii_ner.h), borrowed: must outlive the scanner; NULL = the
                                  structured types only */
    unsigned ner_types;        /* tagger types reported: bit (type - CUSTOS_PII_PERSON) per type; 0 = PERSON and
                                  STREET_ADDRESS only (the PHI ones: ORGANIZATION and LOCATION are less accurate and
                                  would make a PII block policy refuse "capital of France?"); CUSTOS_PII_NER_ALL = all */
} custos_pii_opts_t;

/* Immutable scanner configuration; thread-safe to share once created. */
typedef struct custos_pii custos_pii_t;

/* Creates a scanner. opts may be NULL (defaults). Returns 0, CUSTOS_EINVAL (bad mrn_format: empty, longer than 32,
 * or without a '#'/'A'/'?'; reason in err) or CUSTOS_ENOMEM. */
int custos_pii_new(const custos_pii_opts_t *opts, custos_pii_t **out, char *err, size_t errlen);
void custos_pii_free(custos_pii_t *p);

/* Scans text[0..len) (any bytes; invalid UTF-8 counts one code point per byte). p NULL = defaults. Writes up to cap
 * non-overlapping spans in text order to out and their number to *n (findings past cap are dropped). Tagger spans
 * that overlap a structured finding are dropped (the structured one wins). Uses scratch
 * (one per thread). Returns 0, CUSTOS_ETOOBIG (len over the scratch limit) or CUSTOS_ENOMEM. */
int custos_pii_scan(const custos_pii_t *p, const char *text, size_t len, custos_safety_scratch_t *scratch,
                    custos_pii_span_t *out, size_t cap, size_t *n);

/* "EMAIL", "US_SSN", ... (the names of the check contract); NULL when out of range. */
const char *custos_pii_type_name(int type);
/* The type for a name, or -1. */
int custos_pii_type_from_name(const char *name);
/* 1 if the type belongs to the HIPAA Safe Harbor group "phi" (see docs/pii.md), else 0. Every structured type does,
 * and PERSON and STREET_ADDRESS; ORGANIZATION and LOCATION (countries, states, most cities) do not. */
int custos_pii_in_phi(int type);

/* ---- validators (pii_validators.c); digits / chars are ASCII, n their count. Return 1 valid, 0 not. ---- */
int custos_pii_luhn(const char *digits, size_t n);
int custos_pii_ssn_valid(const char *d9);           /* area 000/666/9xx, group 00, serial 0000 invalid */
int custos_pii_card_valid(const char *d, size_t n); /* 13..19 digits, known IIN prefix, Luhn */
int custos_pii_iban_valid(const char *s, size_t n); /* compact, upper-case or lower-case; country length + mod 97 */
int custos_pii_npi_valid(const char *d10);          /* Luhn over "80840" + the 10 digits, first digit 1 or 2 */
int custos_pii_dea_valid(const char *s9);           /* 2 letters + 7 digits with the DEA check digit */
int custos_pii_mbi_valid(const char *s11);          /* CMS Medicare Beneficiary Identifier format */
int custos_pii_ipv4_valid(const char *s, size_t n); /* dotted quad, no leading zeros */
int custos_pii_ipv6_valid(const char *s, size_t n); /* RFC 4291 text form (with optional embedded v4) */

#endif
