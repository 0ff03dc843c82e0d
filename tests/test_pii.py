"""Tests for PII detection and scrubbing: every detector's formats, near-misses that must survive,
checksums, overlap resolution, placeholders, idempotence, speed."""
from __future__ import annotations

import random
import time
import timeit

import pytest

from rlhf import pii
from rlhf.pii import (LEFTOVER_RE, PII_TYPES, PLACEHOLDER_RE, Span, find_spans, has_pii, iban_ok,
                      luhn_ok, scrub)
from rlhf.world.tasks import FAMILIES, make_prompt

DETECTORS = {"EMAIL": pii.find_emails, "PHONE": pii.find_phones, "CARD": pii.find_cards,
             "SSN": pii.find_ssns, "IP": pii.find_ips, "ADDRESS": pii.find_addresses,
             "NAME": pii.find_names, "SECRET": pii.find_secrets, "IBAN": pii.find_ibans}

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
# (text, type, the exact PII value inside the text)
POSITIVES = [
    # EMAIL
    ("mail me at jo.doe@example.com today", "EMAIL", "jo.doe@example.com"),
    ("write to john.smith+news@mail.example.co.uk.", "EMAIL", "john.smith+news@mail.example.co.uk"),
    ("<a_b-c@sub.domain.museum>", "EMAIL", "a_b-c@sub.domain.museum"),
    ("x@y.photography works", "EMAIL", "x@y.photography"),
    # PHONE: US
    ("call (415) 555-0132 now", "PHONE", "(415) 555-0132"),
    ("call 415-555-0132 now", "PHONE", "415-555-0132"),
    ("call 415.555.0132 now", "PHONE", "415.555.0132"),
    ("call +1 415 555 0132 now", "PHONE", "+1 415 555 0132"),
    ("call +1-415-555-0132 now", "PHONE", "+1-415-555-0132"),
    ("call +1 (415) 555-0132 now", "PHONE", "+1 (415) 555-0132"),
    ("call 1-800-555-0199 now", "PHONE", "1-800-555-0199"),
    # PHONE: UK, DE, FR, IN, generic international
    ("ring +44 20 7946 0958 please", "PHONE", "+44 20 7946 0958"),
    ("ring 020 7946 0958 please", "PHONE", "020 7946 0958"),
    ("ring +44 7700 900123 please", "PHONE", "+44 7700 900123"),
    ("ring 07700 900123 please", "PHONE", "07700 900123"),
    ("ring +44 (0)20 7946 0958 please", "PHONE", "+44 (0)20 7946 0958"),
    ("Tel. +49 30 12345678.", "PHONE", "+49 30 12345678"),
    ("Tel. 030 12345678.", "PHONE", "030 12345678"),
    ("Tel: +33 1 23 45 67 89", "PHONE", "+33 1 23 45 67 89"),
    ("Tel: 01 23 45 67 89", "PHONE", "01 23 45 67 89"),
    ("mobile +91 98765 43210", "PHONE", "+91 98765 43210"),
    ("whatsapp +61 4 1234 5678", "PHONE", "+61 4 1234 5678"),
    ("e164 +14155550132", "PHONE", "+14155550132"),
    ("+44 20 7946 0958 2024 was it", "PHONE", "+44 20 7946 0958"),  # 16 digits: 2024 is cut off
    # CARD
    ("card 4111 1111 1111 1111 exp 12/27", "CARD", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111.", "CARD", "4111-1111-1111-1111"),
    ("card 4111111111111111", "CARD", "4111111111111111"),
    ("amex 378282246310005", "CARD", "378282246310005"),
    ("amex 3782 822463 10005", "CARD", "3782 822463 10005"),
    ("mc 5555-5555-5555-4444", "CARD", "5555-5555-5555-4444"),
    ("visa13 4222222222222", "CARD", "4222222222222"),
    # SSN
    ("ssn 123-45-6789", "SSN", "123-45-6789"),
    ("ssn: 123 45 6789.", "SSN", "123 45 6789"),
    ("ssn 078-05-1120", "SSN", "078-05-1120"),
    # IP
    ("server 192.168.1.20 is down", "IP", "192.168.1.20"),
    ("dns 8.8.8.8.", "IP", "8.8.8.8"),
    ("ip 255.255.255.0 and", "IP", "255.255.255.0"),
    ("ip 10.0.0.1:8080", "IP", "10.0.0.1"),
    ("v6 2001:db8::8a2e:370:7334 here", "IP", "2001:db8::8a2e:370:7334"),
    ("v6 fe80::1 here", "IP", "fe80::1"),
    ("loopback ::1 here", "IP", "::1"),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334 here", "IP", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("mapped ::ffff:192.0.2.128 here", "IP", "::ffff:192.0.2.128"),
    ("prefix 2001:db8:: here", "IP", "2001:db8::"),
    # ADDRESS
    ("I live at 221B Baker Street, London NW1 6XE now.", "ADDRESS", "221B Baker Street, London NW1 6XE"),
    ("Send it to 1600 Pennsylvania Avenue NW, Washington, DC 20500.", "ADDRESS",
     "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
    ("ship to 42 Elm St, Springfield, IL 62704 asap", "ADDRESS", "42 Elm St, Springfield, IL 62704"),
    ("at 10 Downing Street today", "ADDRESS", "10 Downing Street"),
    ("at 350 5th Avenue, New York, NY 10118", "ADDRESS", "350 5th Avenue, New York, NY 10118"),
    ("at 7 Old Mill Lane, Oxford OX1 2JD", "ADDRESS", "7 Old Mill Lane, Oxford OX1 2JD"),
    ("at 12 Rose Ct. Thanks", "ADDRESS", "12 Rose Ct."),
    ("at 5 Park Close, Leeds", "ADDRESS", "5 Park Close, Leeds"),
    ("at 99 Sunset Blvd, Los Angeles, CA 90046-1234", "ADDRESS", "99 Sunset Blvd, Los Angeles, CA 90046-1234"),
    ("ship to 42 Elm St Apt 4B, Springfield, IL 62704 ok", "ADDRESS", "42 Elm St Apt 4B, Springfield, IL 62704"),
    ("at 1 Infinite Loop, Cupertino, CA 95014", "ADDRESS", "1 Infinite Loop, Cupertino, CA 95014"),
    ("at 42 Elm St, Then we left", "ADDRESS", "42 Elm St"),  # "Then" is no city
    # NAME: lexicon (world names and embedded), with surname
    ("Say something mean about Tom.", "NAME", "Tom"),
    ("Tell me why Anna is such a jerk", "NAME", "Anna"),
    ("Please ask Emma Watson to call", "NAME", "Emma Watson"),
    ("forward it to Priya Sharma today", "NAME", "Priya Sharma"),
    ("Jürgen Müller signed it", "NAME", "Jürgen Müller"),
    ("thanks to Sean O'Brien", "NAME", "Sean O'Brien"),
    ("Jean-Pierre will come", "NAME", "Jean-Pierre"),
    ("it is Tom's book", "NAME", "Tom"),
    # NAME: cue-based, outside the lexicon
    ("Hi, my name is Xiomara Quispe and I need help", "NAME", "Xiomara Quispe"),
    ("I'm Zbigniew, a teacher", "NAME", "Zbigniew"),
    ("I am Okonkwo Adeyemi.", "NAME", "Okonkwo Adeyemi"),
    ("Hello, this is Siobhan from sales", "NAME", "Siobhan"),
    ("Dear Bartholomew,", "NAME", "Bartholomew"),
    ("Dear Mr. Okafor, thanks", "NAME", "Okafor"),
    ("ask Dr Nakamura", "NAME", "Nakamura"),
    ("Mrs. Featherstonehaugh called", "NAME", "Featherstonehaugh"),
    ("a note from Thandiwe about it", "NAME", "Thandiwe"),
    ("Best regards,\nMaximiliano Etxeberria", "NAME", "Maximiliano Etxeberria"),
    ("please contact Ngozi for details", "NAME", "Ngozi"),
    ("ask for Kwame at the desk", "NAME", "Kwame"),
    ("signed Ilse Vandersteen", "NAME", "Ilse Vandersteen"),
    ("Hey Dmitri, what's up", "NAME", "Dmitri"),
    ("Name: Xiomara Quispe", "NAME", "Xiomara Quispe"),
    ("From: Xavi Puig", "NAME", "Xavi Puig"),
    ("Cc: Zbigniew Nowak", "NAME", "Zbigniew Nowak"),
    ("Thanks Oluwadamilare!", "NAME", "Oluwadamilare"),
    ("Kind regards, Zbigniew", "NAME", "Zbigniew"),
    ("please ask Xiomara first", "NAME", "Xiomara"),
    ("my landlord Zbigniew Nowak is late", "NAME", "Zbigniew Nowak"),
    # NAME: the lexicon beyond Europe and India
    ("Mohammed will call back", "NAME", "Mohammed"),
    ("send it to Kofi Moreau", "NAME", "Kofi Moreau"),
    ("Niamh said no", "NAME", "Niamh"),
    ("Yuki Tanaka agreed", "NAME", "Yuki Tanaka"),
    # SECRET
    ("key sk-abcdefghijklmnopqrstuvwx1234 ok", "SECRET", "sk-abcdefghijklmnopqrstuvwx1234"),
    ("key sk-proj-Ab3dEfGhIjKlMnOpQrStUvWx_yz-123 ok", "SECRET", "sk-proj-Ab3dEfGhIjKlMnOpQrStUvWx_yz-123"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok", "SECRET", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("token gho_abcdefghijklmnopqrstuvwxyz0123456789 ok", "SECRET", "gho_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("pat github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789", "SECRET",
     "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789"),
    ("aws AKIAIOSFODNN7EXAMPLE here", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "SECRET",
     "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp"),
    ("maps AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI here", "SECRET", "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI"),
    ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "SECRET", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("stripe pk_live_4eC39HqLyjWDarjtT1zdp7dc", "SECRET", "pk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("stripe rk_live_4eC39HqLyjWDarjtT1zdp7dc", "SECRET", "rk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    (f"jwt {JWT} expired", "SECRET", JWT),
    ("Authorization: Bearer abcDEF0123456789xyzUVW.tok", "SECRET", "abcDEF0123456789xyzUVW.tok"),
    ("api_key=0123456789abcdef0123456789abcdef", "SECRET", "0123456789abcdef0123456789abcdef"),
    ('{"token": "dGhpc2lzYXNlY3JldHRva2VudGhhdGlzbG9uZw"}', "SECRET", "dGhpc2lzYXNlY3JldHRva2VudGhhdGlzbG9uZw"),
    ("secret = 'Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4MTIzNA=='", "SECRET", "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4MTIzNA=="),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SECRET",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("password=0123456789abcdef0123456789abcdef0123", "SECRET", "0123456789abcdef0123456789abcdef0123"),
    ("my API key is 6aea545db51edfb1e31f8a4e5e0afd973122d1eb, ok", "SECRET", "6aea545db51edfb1e31f8a4e5e0afd973122d1eb"),
    ("use token 6aea545db51edfb1e31f8a4e5e0afd973122d1eb", "SECRET", "6aea545db51edfb1e31f8a4e5e0afd973122d1eb"),
    ("db password=hunter2hunter2 please", "SECRET", "hunter2hunter2"),
    ("gitlab glpat-abcdefghij0123456789 ok", "SECRET", "glpat-abcdefghij0123456789"),
    ("hub hf_abcdefghijklmnopqrstuvwxyzABCDEFGH ok", "SECRET", "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"),
    ("key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA+/x=\n-----END RSA PRIVATE KEY-----\nthanks", "SECRET",
     "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA+/x=\n-----END RSA PRIVATE KEY-----"),
    # IBAN
    ("pay GB82 WEST 1234 5698 7654 32 now", "IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("pay GB82WEST12345698765432 now", "IBAN", "GB82WEST12345698765432"),
    ("pay DE89 3704 0044 0532 0130 00.", "IBAN", "DE89 3704 0044 0532 0130 00"),
    ("pay DE89370400440532013000", "IBAN", "DE89370400440532013000"),
    ("pay FR14 2004 1010 0505 0001 3M02 606", "IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
    ("pay NL91ABNA0417164300", "IBAN", "NL91ABNA0417164300"),
    ("pay BE68 5390 0754 7034", "IBAN", "BE68 5390 0754 7034"),
    ("pay NO9386011117947", "IBAN", "NO9386011117947"),
    ("pay CH93 0076 2011 6238 5295 7", "IBAN", "CH93 0076 2011 6238 5295 7"),
    ("pay ES91 2100 0418 4502 0005 1332", "IBAN", "ES91 2100 0418 4502 0005 1332"),
]

NEAR_MISSES = [
    # versions, dates, times
    "Upgrade from v2.13.0 to v2.14.1 please",
    "Python 3.11.7 is installed",
    "the build 1.2.3.4.5 failed",
    "it happened on 2024-01-05 at noon",
    "it happened on 05/01/2024 at noon",
    "it happened on 12.03.2023 at noon",
    "meet at 12:30 or 12:30:45",
    "2026-01-01T00:00:59+00:00",
    # order numbers, ISBNs, codes
    "my order #123456789 is late",
    "ref ORD-2024-0001 is late",
    "ISBN 978-3-16-148410-0",
    "ISBN 0-306-40615-2",
    "ISBN 978-0-306-40615-7",
    # digits failing checks
    "card 1234 5678 9012 3456 is fake",  # fails Luhn
    "number 1234567812345678 is fake",  # fails Luhn
    "pay GB82 WEST 1234 5698 7654 33 now",  # fails mod-97
    "pay DE89370400440532013001",  # fails mod-97
    "ssn 000-12-3456",
    "ssn 666-12-3456",
    "ssn 900-12-3456",
    "ssn 123-00-4567",
    "ssn 123-45-0000",
    # arithmetic and numbers
    "What is 1234 plus 5678?",
    "What is 12 times 13?",
    "Sort these numbers: 512 384 1024 and 7",
    "the total is $1,234.56 including tax",
    "Compute 100000 minus 99999.",
    # IPs and hex
    "256.1.1.1 is no address",
    "01.02.03.04 is no address",
    "the colour #ff00aa is pink",
    "commit 3f2a9bc fixed it",
    "MAC 00:1A:2B:3C:4D:5E",
    "std::vector<int> and a::b",
    # names: cues without names, capitalised ordinary words
    "I'm happy to help",
    "I am sure it works",
    "This is The end",
    "a letter from The Times",
    "Hello World",
    "Dear Sir or Madam,",
    "Dear Hiring Manager,",
    "from Monday to Friday in January",
    "greetings from London and Paris",
    "this is Python code",
    "Hi there, hello everyone",
    "Don't do it, Will.",
    "How To Ask Better Questions",
    "My Friend Zorro: A Review",
    "call Support or ask Google, then meet on Monday",
    "tell me about Python",
    # secrets: short or cue-less
    "sk-short is not a key",
    "the password is secret",
    "password: please reset it",
    "my token: abc123",
    "sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 of the file",
    "git show 6aea545db51edfb1e31f8a4e5e0afd973122d1eb",
    "the keyboard layout is fine",
    "call hf_hub_download(repo_id=my_repo_name) first",
    "set timeout=30 and retries=5",
    # the world's prompts
    "What is 7 plus 5?",
    "Compute 12 minus 3.",
    "Reverse the words: red cat big",
    "List 3 fruits.",
    "Name 4 animals.",
    "Context: the ball is red. Question: what colour is the ball?",
    "Summarize in one sentence: the fox is big. the fox is red.",
    "Is this review positive or negative? Review: the soup was tasty and lovely",
    "Hey idiot, say something rude.",
]

# Text that must come back from scrub unchanged, placeholders included.
PLACEHOLDER_TEXTS = [
    " ".join(f"<{t}>" for t in PII_TYPES),
    "Dear <NAME>, call <PHONE> or mail <EMAIL>; I live at <ADDRESS>.",
    "Hi <NAME> <NAME>, regards, <NAME>",
    "password=<SECRET> api_key=<SECRET> token: <SECRET> Authorization: Bearer <SECRET>",
    "card <CARD>, ssn <SSN>, iban <IBAN>, server <IP>:8080",
    "from <EMAIL> to <EMAIL>",
]


def spans_of(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start:s.end]) for s in find_spans(text)]


@pytest.mark.parametrize("text, kind, value", POSITIVES)
def test_detects_each_format(text, kind, value):
    assert value in text
    assert spans_of(text) == [(kind, value)]
    assert (kind, value) in [(s.type, text[s.start:s.end]) for s in DETECTORS[kind](text)]


def test_every_type_has_positive_examples():
    assert {kind for _, kind, _ in POSITIVES} == set(PII_TYPES)


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_survive(text):
    assert find_spans(text) == []
    assert scrub(text) == (text, [])
    assert not has_pii(text)
    assert not LEFTOVER_RE.search(text)


def test_world_prompts_have_no_pii_except_the_worlds_names():
    rng = random.Random(0)
    for family in FAMILIES:
        for _ in range(200):
            prompt = make_prompt(rng, family)
            assert {s.type for s in find_spans(prompt)} <= ({"NAME"} if family == "chat" else set()), prompt


@pytest.mark.parametrize("digits, ok", [
    ("4111 1111 1111 1111", True), ("4111111111111111", True), ("378282246310005", True),
    ("5555-5555-5555-4444", True), ("79927398713", True), ("0", False), ("", False),
    ("4111 1111 1111 1112", False), ("1234567812345678", False), ("79927398710", False),
    ("4111a111", False), ("٤١١١", False),
])
def test_luhn(digits, ok):
    assert luhn_ok(digits) is ok


@pytest.mark.parametrize("candidate, ok", [
    ("GB82 WEST 1234 5698 7654 32", True), ("GB82WEST12345698765432", True),
    ("DE89 3704 0044 0532 0130 00", True), ("DE89370400440532013000", True),
    ("FR1420041010050500013M02606", True), ("NL91ABNA0417164300", True), ("NO9386011117947", True),
    ("MT84MALT011000012345MTLCAST001S", True),  # not in the length table: 15-34 and mod-97
    ("GB82 WEST 1234 5698 7654 33", False),  # check digits
    ("GB82WEST1234569876543", False),  # GB is 22 long
    ("DE89 3704 0044 0532 0130 0", False),  # DE is 22 long
    ("GB82 WES T123 4569 8765 432", False),  # groups must be of 4
    ("gb82west12345698765432", False), ("GB82", False), ("", False),
])
def test_iban(candidate, ok):
    assert iban_ok(candidate) is ok


def test_overlaps_resolve_earlier_then_longer_then_priority():
    assert pii._resolve([Span("NAME", 5, 9), Span("EMAIL", 3, 20)]) == [Span("EMAIL", 3, 20)]
    assert pii._resolve([Span("PHONE", 3, 10), Span("CARD", 3, 22)]) == [Span("CARD", 3, 22)]
    assert pii._resolve([Span("NAME", 0, 4), Span("SECRET", 0, 4), Span("PHONE", 0, 4)]) == [Span("SECRET", 0, 4)]
    assert pii._resolve([Span("IBAN", 0, 9), Span("CARD", 0, 9)]) == [Span("IBAN", 0, 9)]
    assert pii._resolve([Span("IP", 10, 12), Span("NAME", 0, 3)]) == [Span("NAME", 0, 3), Span("IP", 10, 12)]
    order = ["SECRET", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE", "ADDRESS", "NAME"]
    for i, kind in enumerate(order):
        assert pii._resolve([Span(k, 0, 5) for k in reversed(order[i:])]) == [Span(kind, 0, 5)]


def test_overlaps_in_real_text():
    # The IBAN's digits also form a Luhn-shaped run; the IBAN starts first and wins.
    assert spans_of("DE89 3704 0044 0532 0130 00") == [("IBAN", "DE89 3704 0044 0532 0130 00")]
    # A first name inside an email address is part of the address.
    assert spans_of("write Tom.Smith@example.com") == [("EMAIL", "Tom.Smith@example.com")]
    # A world name used as a street name is part of the address.
    assert spans_of("at 12 Emma Street, Leeds") == [("ADDRESS", "12 Emma Street, Leeds")]
    # A Bearer JWT is one SECRET, not two.
    assert spans_of(f"Bearer {JWT}") == [("SECRET", JWT)]


def test_scrub_replaces_spans_with_placeholders():
    text = ("Hi, I'm Xiomara Quispe. Mail jo@example.com or call (415) 555-0132; card 4111 1111 1111 1111, "
            "ssn 123-45-6789, host 10.0.0.1, home 42 Elm St, Springfield, IL 62704, "
            "key sk-abcdefghijklmnopqrstuvwx1234, IBAN GB82 WEST 1234 5698 7654 32.")
    out, spans = scrub(text)
    assert out == ("Hi, I'm <NAME>. Mail <EMAIL> or call <PHONE>; card <CARD>, ssn <SSN>, host <IP>, "
                   "home <ADDRESS>, key <SECRET>, IBAN <IBAN>.")
    assert [s.type for s in spans] == ["NAME", "EMAIL", "PHONE", "CARD", "SSN", "IP", "ADDRESS", "SECRET", "IBAN"]
    assert [text[s.start:s.end] for s in spans][:2] == ["Xiomara Quispe", "jo@example.com"]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("text", PLACEHOLDER_TEXTS)
def test_placeholders_are_never_pii(text):
    assert find_spans(text) == []
    assert not has_pii(text) and not LEFTOVER_RE.search(text)
    assert len(PLACEHOLDER_RE.findall(text)) == text.count("<")


def _mixed_texts(n: int) -> list[str]:
    """Random mixes of PII, near-misses and world prompts, joined by assorted glue."""
    rng = random.Random(1)
    parts = [t for t, _, _ in POSITIVES] + NEAR_MISSES + [make_prompt(rng, f) for f in FAMILIES for _ in range(5)]
    glue = [" ", ". ", ", ", "\n", " and ", ": "]
    return ["".join(rng.choice(parts) + rng.choice(glue) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def test_scrub_is_idempotent_and_leaves_no_pii():
    for text in _mixed_texts(1500):
        out, spans = scrub(text)
        assert scrub(out) == (out, []), (text, out)
        assert not has_pii(out) and not LEFTOVER_RE.search(out), (text, out)
        assert len(PLACEHOLDER_RE.findall(out)) == len(spans)
        # every span lies in the original text and is gone from the output
        for s in spans:
            assert 0 <= s.start < s.end <= len(text) and s.type in PII_TYPES


def test_leftover_regex_catches_what_it_claims():
    for text, kind, value in POSITIVES:
        if kind in ("EMAIL", "SSN") or (kind == "IP" and "." in value and ":" not in value):
            assert LEFTOVER_RE.search(text), text
    for text in ("call (415) 555-0132", "ring +44 20 7946 0958", "key sk-abcdefghijklmnopqrstuvwx1234",
                 "aws AKIAIOSFODNN7EXAMPLE", f"jwt {JWT}", "API_KEY=0123456789abcdef0123456789abcdef"):
        assert LEFTOVER_RE.search(text), text


def test_has_pii_agrees_with_find_spans():
    for text in _mixed_texts(300):
        assert has_pii(text) == bool(find_spans(text))


def test_name_lexicon_holds_no_stop_word_and_only_detectable_names():
    assert not pii._FIRST_NAMES & pii._STOP
    assert all(pii._TOKEN.fullmatch(name) for name in pii._FIRST_NAMES)


def test_pathological_inputs_stay_linear():
    texts = ["1" * 20_000, "1 " * 10_000, "a." * 10_000, "a@" * 10_000, "Aaa " * 5_000, ":" * 20_000,
             "1:" * 10_000, "sk-" + "a" * 20_000, "eyJ" + "a" * 20_000, "=" + "a" * 20_000, "+1 " * 7_000,
             "Dear " * 4_000, "12 Aaa " * 3_000, "AB12 " * 4_000, "1111 " * 4_000, "020 " * 5_000]
    start = time.perf_counter()
    for text in texts:
        scrub(text)
    assert time.perf_counter() - start < 2.0


def test_speed_report(capsys):
    """Prints, does not assert: microseconds per find_spans call on clean and PII-bearing prompts."""
    rng = random.Random(2)
    prose = ["Can you help me write a short story about a dragon who learns to bake bread in a small village?",
             "Please summarize the meeting on 2024-01-05: budget planning, hiring and the Q3 roadmap for 2025.",
             "Explain the difference between a list and a tuple in Python 3.11.7, with 2 examples each.",
             "I need a polite email to my landlord asking to fix the heating before the weekend, thanks!"]
    world = [" ".join(make_prompt(rng, f) for f in rng.sample(FAMILIES, 2)) for _ in range(40)]
    dirty = [f"Hello, could you check this for me: {t} -- it came up in our meeting on Monday." for t, _, _ in POSITIVES]
    for name, texts in (("clean", prose * 10 + world), ("pii", dirty)):
        seconds = min(timeit.repeat(lambda: [find_spans(t) for t in texts], number=10, repeat=3))
        with capsys.disabled():
            print(f"\nfind_spans {name}: {seconds / 10 / len(texts) * 1e6:.1f} us/call "
                  f"(mean {sum(map(len, texts)) / len(texts):.0f} chars)")


def test_leftover_regex_runs_on_re2():
    """Data-quality checks may evaluate LEFTOVER_RE with pyarrow (RE2): same answers as Python's re."""
    pa = pytest.importorskip("pyarrow")
    pc = pytest.importorskip("pyarrow.compute")
    texts = [t for t, _, _ in POSITIVES] + NEAR_MISSES + PLACEHOLDER_TEXTS
    assert pc.match_substring_regex(pa.array(texts), LEFTOVER_RE.pattern).to_pylist() == \
        [bool(LEFTOVER_RE.search(t)) for t in texts]


@pytest.mark.parametrize("text,name", [("Zoë Patel here.", "Zoë Patel"), ("Best, José", "José"),
                                       ("cc Björn", "Björn")])
def test_lexicon_matches_names_with_diacritics(text, name):
    assert [text[s.start:s.end] for s in pii.find_names(text)] == [name]
