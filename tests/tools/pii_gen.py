#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Deterministic generator of a structured-PII test set with hard negatives: JSONL rows
# {"text", "spans":[{"type","start","end"}], "src"} (offsets in code points). Usage: pii_gen.py [ROWS] [SEED] > out.jsonl
import json
import random
import sys

R = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
FIRST = ["José", "Anna", "Zoë", "Mark", "Priya", "Łukasz", "Chen", "Fatima", "Olivier", "Sam"]
LAST = ["García", "Smith", "Müller", "Nguyen", "O'Brien", "Kowalski", "Dubois", "Patel"]
DOM = ["example.com", "mail.example.org", "hospital.example.net", "clinic.test"]


def luhn_digit(s):
    tot = 0
    for i, ch in enumerate(reversed(s)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        tot += v
    return str((10 - tot % 10) % 10)


def digits(n):
    return "".join(R.choice("0123456789") for _ in range(n))


def email():
    return f"{R.choice(['j', 'anna', 'm.smith', 'priya_p', 'chen.li'])}{R.randint(1, 99)}@{R.choice(DOM)}"


def phone():
    a, e, s = R.randint(201, 989), R.randint(200, 999), R.randint(0, 9999)
    return R.choice([f"({a}) {e}-{s:04d}", f"{a}-{e}-{s:04d}", f"{a}.{e}.{s:04d}", f"+1 {a} {e} {s:04d}",
                     f"+1-{a}-{e}-{s:04d}", f"+44 20 7946 {R.randint(0, 9999):04d}", f"020 7946 {s:04d}",
                     f"07700 900{R.randint(0, 999):03d}", f"+49 30 {R.randint(1000000, 9999999)}",
                     f"01 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
                     f"+33 1 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}"])


def ssn():
    a = R.choice([x for x in range(1, 900) if x != 666])
    return f"{a:03d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"


def card():
    kind = R.choice(["visa", "mc", "amex", "disc"])
    if kind == "amex":
        b = R.choice(["34", "37"]) + digits(12)
        b += luhn_digit(b)
        return R.choice([f"{b[:4]} {b[4:10]} {b[10:]}", b, f"{b[:4]}-{b[4:10]}-{b[10:]}"])
    b = {"visa": "4", "mc": str(R.randint(51, 55)), "disc": "6011"}[kind]
    b += digits(15 - len(b))
    b += luhn_digit(b)
    sep = R.choice([" ", "-", ""])
    return sep.join(b[i:i + 4] for i in range(0, 16, 4))


def iban():
    cc, bban = R.choice([("DE", lambda: digits(18)), ("GB", lambda: "NWBK" + digits(14)),
                         ("FR", lambda: digits(23)), ("NL", lambda: "ABNA" + digits(10))])
    b = bban()
    num = "".join(str(int(ch, 36)) for ch in b + cc + "00")
    chk = 98 - int(num) % 97
    s = f"{cc}{chk:02d}{b}"
    return R.choice([s, " ".join(s[i:i + 4] for i in range(0, len(s), 4))])


def ipv4():
    return ".".join(str(R.randint(1, 254)) for _ in range(4))


def ipv6():
    return R.choice(["2001:db8:85a3::8a2e:370:7334", f"fe80::{R.randint(1, 65535):x}:{R.randint(1, 65535):x}",
                     "2001:0db8:0000:0000:0000:ff00:0042:8329", "::1"])


def url():
    return R.choice([f"https://portal.example.org/patients/{R.randint(1, 9999)}?view=full",
                     f"http://example.com/a/b", f"www.example.net/records"])


def date():
    y, m, d = R.randint(1940, 2030), R.randint(1, 12), R.randint(1, 28)
    mon = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"][m - 1]
    return R.choice([f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{mon} {d}, {y}", f"{d} {mon} {y}",
                     f"{d:02d}.{m:02d}.{y}"])


def npi():
    b = R.choice("12") + digits(8)
    return b + luhn_digit("80840" + b)


def dea():
    b = R.choice("ABFM") + R.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + digits(6)
    d = [int(x) for x in b[2:]]
    return b + str((d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10)


def mbi():
    L = "ACDEFGHJKMNPQRTUVWXY"
    an = L + "0123456789"
    s = (R.choice("123456789") + R.choice(L) + R.choice(an) + R.choice("0123456789") + R.choice(L) + R.choice(an) +
         R.choice("0123456789") + R.choice(L) + R.choice(L) + digits(2))
    return R.choice([s, f"{s[:4]}-{s[4:7]}-{s[7:]}"])


POS = [  # (template, {slot: (type, generator)})
    ("Please email {} about the referral.", "EMAIL", email),
    ("Contact: {}", "EMAIL", email),
    ("Call the patient at {} after 5pm.", "PHONE", phone),
    ("Tel. {} (ward 3)", "PHONE", phone),
    ("SSN: {}", "US_SSN", ssn),
    ("Her social security number is {}.", "US_SSN", ssn),
    ("Paid with card {} yesterday.", "CREDIT_CARD", card),
    ("Visa {}", "CREDIT_CARD", card),
    ("Wire it to IBAN {} please.", "IBAN", iban),
    ("Login from {} failed.", "IP_ADDRESS", ipv4),
    ("The host {} is unreachable", "IP_ADDRESS", ipv6),
    ("Results are at {} for review.", "URL", url),
    ("Seen in clinic on {}, stable.", "DATE", date),
    ("DOB: {}", "DATE_OF_BIRTH", date),
    ("Patient born {} in Lyon.", "DATE_OF_BIRTH", date),
    ("Referring provider NPI {}.", "US_NPI", npi),
    ("Prescriber DEA {}", "US_DEA", dea),
    ("Medicare MBI {} on file", "MEDICARE_MBI", mbi),
    ("Passport number {} (US).", "US_PASSPORT", lambda: digits(9)),
    ("Driver's license {} expired.", "US_DRIVER_LICENSE",
     lambda: R.choice(["D", "A", "K"]) + digits(7)),
    ("Lives at 12 Main St, Boston, MA {}.", "ZIP", lambda: f"0{R.randint(1000, 9999)}"),
    ("Zip code: {}", "ZIP", lambda: f"{R.randint(10000, 99999)}"),
    ("MRN: {}", "MRN", lambda: digits(R.randint(6, 10))),
    ("Medical record number {} admitted.", "MRN", lambda: digits(8)),
]

NEG = [
    lambda: f"Order #{digits(9)} shipped on time.",
    lambda: f"Your order number {digits(12)} is confirmed.",
    lambda: f"See ORD-2024-{digits(6)} for details.",
    lambda: "ISBN 978-3-16-148410-0 is the second edition.",
    lambda: f"ISBN 0-306-40615-2, page {R.randint(1, 400)}.",
    lambda: f"Logged at 2024-03-05T{R.randint(10, 23)}:22:31Z by the job.",
    lambda: f"Build finished at {R.randint(10, 23)}:{R.randint(10, 59)}:{R.randint(10, 59)}.",
    lambda: f"Upgrade to version {R.randint(1, 12)}.{R.randint(0, 20)}.{R.randint(0, 9)} now.",
    lambda: f"Released v{R.randint(1, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)} today.",
    lambda: f"SKU {R.randint(1000, 9999)}-{R.randint(100, 999)}-{R.randint(1000, 9999)} is out of stock.",
    lambda: f"Part no. 800-{R.randint(10, 99)}-{R.randint(1000, 9999)} fits the pump.",
    lambda: f"Model X-{R.randint(100, 999)}-{R.randint(1000, 9999)} recalled.",
    lambda: "Request id 550e8400-e29b-41d4-a716-446655440000 timed out.",
    lambda: "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 verified",
    lambda: f"commit {R.choice(['3f2a9c1', '0a1b2c3d4e5f'])} reverted",
    lambda: f"Ticket {digits(7)} closed; reference {R.randint(1000, 9999)}-{R.randint(10, 99)}-{R.randint(1000, 9999)}.",
    lambda: f"Total was $1,{R.randint(100, 999)}.{R.randint(10, 99)} for {R.randint(2, 9)} items.",
    lambda: f"pi is 3.14159 and e is 2.71828; {R.randint(10, 99)} patients improved.",
    lambda: f"Tracking 1Z999AA1{digits(11)} arrives Monday.",
    lambda: f"Firmware build 2.14.3.{R.randint(1, 9)} deployed.",
]

FILL = ["Note:", "Ça va —", "Patiënt stable.", "Re:", "日本語のメモ。", "OK.", ""]


def row():
    text, spans = "", []
    parts = R.randint(1, 3)
    for _ in range(parts):
        f = R.choice(FILL)
        if f:
            text += f + " "
        if R.random() < 0.35:
            text += R.choice(NEG)() + " "
            continue
        tpl, typ, gen = R.choice(POS)
        val = gen()
        pre, post = tpl.split("{}")
        text += pre
        start = len(text)
        text += val
        spans.append({"type": typ, "start": start, "end": len(text)})
        text += post + " "
    return {"text": text.rstrip(), "spans": spans, "src": "pii_gen"}


for _ in range(ROWS):
    sys.stdout.write(json.dumps(row(), ensure_ascii=False) + "\n")
