/* SPDX-License-Identifier: Apache-2.0
 * Check-digit and format validators of the structured PII types (pure functions, thread-safe). */
#include "safety/pii.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

int custos_pii_luhn(const char *d, size_t n)
{
    if (n < 2)
        return 0;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[n - 1 - i] < '0' || d[n - 1 - i] > '9')
            return 0;
        unsigned v = (unsigned)(d[n - 1 - i] - '0');
        if (i & 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

static int alldig(const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] < '0' || d[i] > '9')
            return 0;
    return 1;
}

static unsigned num(const char *d, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(d[i] - '0');
    return v;
}

int custos_pii_ssn_valid(const char *d)
{
    if (!alldig(d, 9))
        return 0;
    unsigned area = num(d, 3), group = num(d + 3, 2), serial = num(d + 5, 4);
    return area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
}

int custos_pii_card_valid(const char *d, size_t n)
{
    if (n < 13 || n > 19 || !alldig(d, n))
        return 0;
    unsigned p1 = num(d, 1), p2 = num(d, 2), p3 = num(d, 3), p4 = num(d, 4), p6 = num(d, 6);
    int iin = p1 == 4                                                                                 /* Visa */
              || (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)                                 /* Mastercard */
              || p2 == 34 || p2 == 37                                                                 /* Amex */
              || p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649) || (p6 >= 622126 && p6 <= 622925) /* Discover */
              || (p4 >= 3528 && p4 <= 3589)                                                           /* JCB */
              || (p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38                                     /* Diners */
              || p2 == 62                                                                             /* UnionPay */
              || p2 == 50 || (p2 >= 56 && p2 <= 58) || p2 == 67;                                      /* Maestro */
    if ((p2 == 34 || p2 == 37) && n != 15) /* Amex is always 15 digits */
        return 0;
    if (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n != 16) /* Mastercard 16 */
        return 0;
    if (p1 == 4 && n != 13 && n != 16 && n != 19) /* Visa 13, 16, 19 */
        return 0;
    return iin && custos_pii_luhn(d, n);
}

/* IBAN lengths per country (ISO 13616 registry). */
static const struct {
    char cc[3];
    unsigned char len;
} iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
    {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28},
    {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23},
    {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26},
    {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
    {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18},
    {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
    {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

int custos_pii_iban_length(const char *cc);
int custos_pii_iban_length(const char *cc)
{
    char u[2] = {(char)toupper((unsigned char)cc[0]), (char)toupper((unsigned char)cc[1])};
    for (size_t i = 0; i < sizeof(iban_len) / sizeof(iban_len[0]); i++)
        if (iban_len[i].cc[0] == u[0] && iban_len[i].cc[1] == u[1])
            return iban_len[i].len;
    return 0;
}

int custos_pii_iban_valid(const char *s, size_t n)
{
    if (n < 15 || n > 34 || !isalpha((unsigned char)s[0]) || !isalpha((unsigned char)s[1]) ||
        !isdigit((unsigned char)s[2]) || !isdigit((unsigned char)s[3]))
        return 0;
    if ((size_t)custos_pii_iban_length(s) != n)
        return 0;
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[(k + 4) % n];
        if (isdigit(c))
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else if (isalpha(c))
            rem = (rem * 100 + (unsigned)(toupper(c) - 'A' + 10)) % 97;
        else
            return 0;
    }
    return rem == 1;
}

int custos_pii_npi_valid(const char *d)
{
    if (!alldig(d, 10) || (d[0] != '1' && d[0] != '2'))
        return 0;
    char b[15];
    memcpy(b, "80840", 5);
    memcpy(b + 5, d, 10);
    return custos_pii_luhn(b, 15);
}

int custos_pii_dea_valid(const char *s)
{
    static const char reg[] = "ABCDEFGHJKLMPRSTUX"; /* registrant types (incl. mid-level practitioners M) */
    int c0 = toupper((unsigned char)s[0]), c1 = toupper((unsigned char)s[1]);
    if (!c0 || !strchr(reg, c0) || !(isalpha(c1) || c1 == '9') || !alldig(s + 2, 7))
        return 0;
    unsigned d[7];
    for (int i = 0; i < 7; i++)
        d[i] = (unsigned)(s[2 + i] - '0');
    unsigned sum = d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5]);
    return sum % 10 == d[6];
}

int custos_pii_mbi_valid(const char *s)
{
    /* C A AN N A AN N A A N N; letters exclude S L O I B Z */
    static const char pat[] = "CAXNAXNAANN";
    for (int i = 0; i < 11; i++) {
        int c = toupper((unsigned char)s[i]);
        int letter = c >= 'A' && c <= 'Z' && !strchr("SLOIBZ", c);
        int digit = c >= '0' && c <= '9';
        switch (pat[i]) {
        case 'C':
            if (!(c >= '1' && c <= '9'))
                return 0;
            break;
        case 'A':
            if (!letter)
                return 0;
            break;
        case 'N':
            if (!digit)
                return 0;
            break;
        default:
            if (!letter && !digit)
                return 0;
        }
    }
    return 1;
}

int custos_pii_ipv4_valid(const char *s, size_t n)
{
    int parts = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && isdigit((unsigned char)s[j]) && j - i < 4)
            j++;
        if (j == i || j - i > 3 || (j - i > 1 && s[i] == '0') || num(s + i, j - i) > 255)
            return 0;
        parts++;
        if (j == n)
            break;
        if (s[j] != '.' || parts == 4)
            return 0;
        i = j + 1;
        if (i == n)
            return 0;
    }
    return parts == 4;
}

int custos_pii_ipv6_valid(const char *s, size_t n)
{
    char b[64];
    if (n < 2 || n >= sizeof(b))
        return 0;
    memcpy(b, s, n);
    b[n] = 0;
    struct in6_addr a;
    return inet_pton(AF_INET6, b, &a) == 1;
}
