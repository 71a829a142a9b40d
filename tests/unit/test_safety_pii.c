/* SPDX-License-Identifier: Apache-2.0
 * Structured PII scanner: every validator with valid and near-miss values, each type in context, hard negatives,
 * code-point offsets after multi-byte UTF-8, the organisation MRN format and the span cap. */
#include "safety/pii.h"

#include "util/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static custos_safety_scratch_t sc;

static int setup(void **st)
{
    (void)st;
    custos_safety_scratch_init(&sc, 1u << 20);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    custos_safety_scratch_dispose(&sc);
    return 0;
}

static size_t scan(const custos_pii_t *p, const char *text, custos_pii_span_t *sp, size_t cap)
{
    size_t n = 0;
    assert_int_equal(custos_pii_scan(p, text, strlen(text), &sc, sp, cap, &n), 0);
    return n;
}

/* Asserts that text yields exactly one span of type covering needle (located by bytes, compared in code points). */
static void expect1(const custos_pii_t *p, const char *text, int type, const char *needle)
{
    custos_pii_span_t sp[8];
    size_t n = scan(p, text, sp, 8);
    if (n != 1 || sp[0].type != type)
        fail_msg("'%s': %zu spans, first %s (want %s)", text, n, n ? custos_pii_type_name(sp[0].type) : "-",
                 custos_pii_type_name(type));
    const char *at = strstr(text, needle);
    assert_non_null(at);
    uint32_t cps = 0, len = 0;
    for (const char *q = text; q < at; q++)
        cps += ((unsigned char)*q & 0xc0) != 0x80;
    for (const char *q = at; q < at + strlen(needle); q++)
        len += ((unsigned char)*q & 0xc0) != 0x80;
    assert_int_equal(sp[0].start, cps);
    assert_int_equal(sp[0].end, cps + len);
    assert_true(sp[0].score >= 0.5f && sp[0].score <= 1.0f);
}

static void expect0(const custos_pii_t *p, const char *text)
{
    custos_pii_span_t sp[8];
    size_t n = scan(p, text, sp, 8);
    if (n)
        fail_msg("'%s': unexpected %s [%u,%u)", text, custos_pii_type_name(sp[0].type), sp[0].start, sp[0].end);
}

static void test_validators(void **st)
{
    (void)st;
    assert_true(custos_pii_luhn("79927398713", 11));
    assert_false(custos_pii_luhn("79927398710", 11));
    assert_true(custos_pii_ssn_valid("123456789"));
    assert_false(custos_pii_ssn_valid("000456789"));
    assert_false(custos_pii_ssn_valid("666456789"));
    assert_false(custos_pii_ssn_valid("900456789"));
    assert_false(custos_pii_ssn_valid("123006789"));
    assert_false(custos_pii_ssn_valid("123450000"));
    assert_true(custos_pii_card_valid("4111111111111111", 16));
    assert_true(custos_pii_card_valid("378282246310005", 15));
    assert_true(custos_pii_card_valid("5555555555554444", 16));
    assert_false(custos_pii_card_valid("4111111111111112", 16)); /* Luhn */
    assert_false(custos_pii_card_valid("9111111111111119", 16)); /* no known IIN (Luhn ok) */
    assert_false(custos_pii_card_valid("411111111111", 12));
    assert_true(custos_pii_iban_valid("DE89370400440532013000", 22));
    assert_true(custos_pii_iban_valid("GB82WEST12345698765432", 22));
    assert_false(custos_pii_iban_valid("DE89370400440532013001", 22)); /* mod 97 */
    assert_false(custos_pii_iban_valid("DE8937040044053201300", 21));  /* length for DE */
    assert_false(custos_pii_iban_valid("QQ89370400440532013000", 22)); /* no such country */
    assert_true(custos_pii_npi_valid("1234567893"));
    assert_false(custos_pii_npi_valid("1234567890"));
    assert_false(custos_pii_npi_valid("3234567893"));
    assert_true(custos_pii_dea_valid("AB1234563"));
    assert_true(custos_pii_dea_valid("ab1234563"));
    assert_false(custos_pii_dea_valid("AB1234564"));
    assert_false(custos_pii_dea_valid("IB1234563")); /* I is no registrant type */
    assert_true(custos_pii_mbi_valid("1EG4TE5MK73"));
    assert_false(custos_pii_mbi_valid("0EG4TE5MK73")); /* first 1-9 */
    assert_false(custos_pii_mbi_valid("1SG4TE5MK73")); /* S excluded */
    assert_false(custos_pii_mbi_valid("1EG4TE5MK7A"));
    assert_true(custos_pii_ipv4_valid("192.168.1.20", 12));
    assert_false(custos_pii_ipv4_valid("192.168.01.20", 13));
    assert_false(custos_pii_ipv4_valid("256.1.1.1", 9));
    assert_false(custos_pii_ipv4_valid("1.2.3", 5));
    assert_true(custos_pii_ipv6_valid("2001:db8::1", 11));
    assert_true(custos_pii_ipv6_valid("::ffff:192.0.2.1", 16));
    assert_false(custos_pii_ipv6_valid("2001:db8:::1", 12));
    assert_false(custos_pii_ipv6_valid("12345::1", 8));
}

static void test_types_in_context(void **st)
{
    (void)st;
    expect1(NULL, "write to jose.p+x@mail.example.com today", CUSTOS_PII_EMAIL, "jose.p+x@mail.example.com");
    expect1(NULL, "call (617) 555-0134 now", CUSTOS_PII_PHONE, "(617) 555-0134");
    expect1(NULL, "ring +44 20 7946 0958.", CUSTOS_PII_PHONE, "+44 20 7946 0958");
    expect1(NULL, "office 020 7946 0958", CUSTOS_PII_PHONE, "020 7946 0958");
    expect1(NULL, "bureau 01 23 45 67 89", CUSTOS_PII_PHONE, "01 23 45 67 89");
    expect1(NULL, "phone 6175550134", CUSTOS_PII_PHONE, "6175550134");
    expect1(NULL, "id 123-45-6789 here", CUSTOS_PII_US_SSN, "123-45-6789");
    expect1(NULL, "SSN 123456789", CUSTOS_PII_US_SSN, "123456789");
    expect1(NULL, "card 4111-1111-1111-1111 ok", CUSTOS_PII_CREDIT_CARD, "4111-1111-1111-1111");
    expect1(NULL, "amex 3782 822463 10005", CUSTOS_PII_CREDIT_CARD, "3782 822463 10005");
    expect1(NULL, "IBAN DE89 3704 0044 0532 0130 00.", CUSTOS_PII_IBAN, "DE89 3704 0044 0532 0130 00");
    expect1(NULL, "to GB82WEST12345698765432", CUSTOS_PII_IBAN, "GB82WEST12345698765432");
    expect1(NULL, "from 10.0.0.254:", CUSTOS_PII_IP_ADDRESS, "10.0.0.254");
    expect1(NULL, "from fe80::1ff:fe23:4567:890a", CUSTOS_PII_IP_ADDRESS, "fe80::1ff:fe23:4567:890a");
    expect1(NULL, "see https://example.org/a?b=1).", CUSTOS_PII_URL, "https://example.org/a?b=1");
    expect1(NULL, "seen 2021-03-14 in clinic", CUSTOS_PII_DATE, "2021-03-14");
    expect1(NULL, "seen on March 5, 2021", CUSTOS_PII_DATE, "March 5, 2021");
    expect1(NULL, "DOB: 03/14/1975", CUSTOS_PII_DATE_OF_BIRTH, "03/14/1975");
    expect1(NULL, "born 5 May 1980", CUSTOS_PII_DATE_OF_BIRTH, "5 May 1980");
    expect1(NULL, "NPI 1234567893", CUSTOS_PII_US_NPI, "1234567893");
    expect1(NULL, "DEA AB1234563", CUSTOS_PII_US_DEA, "AB1234563");
    expect1(NULL, "MBI 1EG4-TE5-MK73", CUSTOS_PII_MEDICARE_MBI, "1EG4-TE5-MK73");
    expect1(NULL, "passport 123456789", CUSTOS_PII_US_PASSPORT, "123456789");
    expect1(NULL, "passport no. A12345678", CUSTOS_PII_US_PASSPORT, "A12345678");
    expect1(NULL, "driver's license D1234567", CUSTOS_PII_US_DRIVER_LICENSE, "D1234567");
    expect1(NULL, "Boston, MA 02139", CUSTOS_PII_ZIP, "02139");
    expect1(NULL, "zip 90210-1234", CUSTOS_PII_ZIP, "90210-1234");
    expect1(NULL, "MRN: 00123456", CUSTOS_PII_MRN, "00123456");
}

static void test_near_misses(void **st)
{
    (void)st;
    expect0(NULL, "id 666-45-6789 here");      /* SSN area 666 */
    expect0(NULL, "id 123-00-6789 here");      /* SSN group 00 */
    expect0(NULL, "id 923-45-6789 here");      /* SSN area 9xx */
    expect0(NULL, "card 4111 1111 1111 1112"); /* Luhn */
    expect0(NULL, "IBAN DE89 3704 0044 0532 0130 01");
    expect0(NULL, "from 10.0.0.256 now");
    expect0(NULL, "from 10.0.01.25 now");
    expect0(NULL, "NPI 1234567890");
    expect0(NULL, "DEA AB1234564");
    expect0(NULL, "MBI 1SG4-TE5-MK73");
    expect0(NULL, "seen 2021-02-30 in clinic");
    expect0(NULL, "call (117) 555-0134 now"); /* NANP area cannot start with 1 */
    expect0(NULL, "123456789");               /* bare nine digits, no context */
    expect0(NULL, "a 5 digit number 02139");  /* ZIP needs context */
    expect0(NULL, "1234567 without MRN context");
}

static void test_hard_negatives(void **st)
{
    (void)st;
    expect0(NULL, "Order #100234987 shipped; order number 482913004411 confirmed");
    expect0(NULL, "See ORD-2024-004815 for details");
    expect0(NULL, "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2");
    expect0(NULL, "Logged at 2024-03-05T10:22:31Z and 2024-03-05 10:22:31");
    expect0(NULL, "at 10:22:31 the job ended");
    expect0(NULL, "version 10.4.2, v3.2.1.5 and firmware build 2.14.3.1");
    expect0(NULL, "SKU 4420-331-0983 and part no. 800-55-1234");
    expect0(NULL, "Request id 550e8400-e29b-41d4-a716-446655440000 timed out");
    expect0(NULL, "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 ok");
    expect0(NULL, "sha1 5994471abb01112afcc18159f6cc74b4f511b998 ok");
    expect0(NULL, "Total $1,234.56 for 3 items; pi 3.14159");
    expect0(NULL, "MAC 00:1a:2b:3c:4d:5e and time 12:30");
}

static void test_utf8_offsets(void **st)
{
    (void)st;
    /* 2-, 3- and 4-byte characters and an invisible zero-width space before the match */
    expect1(NULL, "Patiënt José — 日本 😀 mail jose@example.com", CUSTOS_PII_EMAIL, "jose@example.com");
    expect1(NULL, "Zoë\xe2\x80\x8b SSN: 123-45-6789", CUSTOS_PII_US_SSN, "123-45-6789");
    /* fullwidth digits are NFKC-folded for matching; offsets still point into the original */
    expect1(NULL, "Müller card ４１１１ １１１１ １１１１ １１１１", CUSTOS_PII_CREDIT_CARD,
            "４１１１ １１１１ １１１１ １１１１");
    /* several spans, in order */
    custos_pii_span_t sp[8];
    size_t n = scan(NULL, "é a@b.io, 🙂 (617) 555-0134", sp, 8);
    assert_int_equal(n, 2);
    assert_int_equal(sp[0].type, CUSTOS_PII_EMAIL);
    assert_int_equal(sp[0].start, 2);
    assert_int_equal(sp[0].end, 8);
    assert_int_equal(sp[1].type, CUSTOS_PII_PHONE);
    assert_int_equal(sp[1].start, 12);
    assert_int_equal(sp[1].end, 26);
}

static void test_mrn_format_and_cap(void **st)
{
    (void)st;
    custos_pii_t *p = NULL;
    char err[128];
    custos_pii_opts_t bad = {.mrn_format = "MRN-"};
    assert_int_equal(custos_pii_new(&bad, &p, err, sizeof(err)), CUSTOS_EINVAL);
    assert_null(p);
    custos_pii_opts_t o = {.mrn_format = "MRN-#######"};
    assert_int_equal(custos_pii_new(&o, &p, err, sizeof(err)), 0);
    expect1(p, "chart MRN-0012345 reviewed", CUSTOS_PII_MRN, "MRN-0012345");
    expect1(p, "lower mrn-0012345 too", CUSTOS_PII_MRN, "mrn-0012345");
    expect0(p, "MRN-001234 is too short");
    custos_pii_free(p);
    /* the cap bounds the output; the scan still succeeds */
    custos_pii_span_t sp[2];
    assert_int_equal(scan(NULL, "a@b.io c@d.io e@f.io g@h.io", sp, 2), 2);
    assert_int_equal(sp[1].start, 7);
    assert_string_equal(custos_pii_type_name(CUSTOS_PII_US_DRIVER_LICENSE), "US_DRIVER_LICENSE");
    assert_int_equal(custos_pii_type_from_name("MRN"), CUSTOS_PII_MRN);
    assert_int_equal(custos_pii_type_from_name("GROUP"), -1);
    assert_true(custos_pii_in_phi(CUSTOS_PII_MEDICARE_MBI));
    /* oversize input is refused */
    custos_safety_scratch_t small;
    custos_safety_scratch_init(&small, 8);
    size_t n = 0;
    assert_int_equal(custos_pii_scan(NULL, "0123456789", 10, &small, sp, 2, &n), CUSTOS_ETOOBIG);
    custos_safety_scratch_dispose(&small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validators),   cmocka_unit_test(test_types_in_context),
        cmocka_unit_test(test_near_misses),  cmocka_unit_test(test_hard_negatives),
        cmocka_unit_test(test_utf8_offsets), cmocka_unit_test(test_mrn_format_and_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
