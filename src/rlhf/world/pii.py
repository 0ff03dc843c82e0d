"""Personal data that customers paste into prompts, with the exact ground truth of every span.

Generation only: each ``PII_TYPES`` entry has a value generator ``(rng) -> str`` in
``GENERATORS``, and ``plant`` wraps a task prompt in the sentences customers write around it
("Hi, I'm {NAME}, email {EMAIL}. <prompt> You can reach me at {PHONE}."), returning the new text
and the character offsets of every planted value, so that a scrubber written elsewhere can be
measured for precision and recall per type. Nothing here detects PII.

Texts are returned in the ingest normal form (NFC, single spaces, no surrounding whitespace), so
offsets into the returned text are offsets into the ingested prompt too.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import string
import unicodedata
from typing import Callable

from . import vocab as V

PII_TYPES = ("EMAIL", "PHONE", "CARD", "SSN", "IP", "ADDRESS", "NAME", "SECRET", "IBAN")
PLACEHOLDERS = {t: f"<{t}>" for t in PII_TYPES}  # what a scrubber writes in place of a value

# First names from outside the world's own NAMES, of varied origins (NFC; a few non-ASCII).
EXTRA_NAMES = (
    "Maria", "José", "Priya", "Wei", "Fatima", "Olga", "Kwame", "Hiroshi", "Siobhan", "Aisha",
    "Mohammed", "Yuki", "Ana", "Luis", "Sofia", "Mateo", "Ingrid", "Lars", "Björn", "Zoë",
    "François", "Chiara", "Giulia", "Dmitri", "Svetlana", "Nadia", "Omar", "Leila", "Ravi", "Anjali",
    "Arjun", "Mei", "Jin", "Min-jun", "Thanh", "Amara", "Chidi", "Ngozi", "Kofi", "Abebe",
    "Tariq", "Yasmin", "Mehmet", "Elif", "Agnieszka", "Pavel", "Niamh", "Declan", "Camila", "Valentina",
    "Diego", "Alejandro", "Aroha", "Sione", "Malia", "Ahmed", "Hana", "Kenji", "Sakura", "Rajesh",
)
SURNAMES = (
    "Garcia", "Smith", "Müller", "Patel", "Nguyen", "Kim", "Okafor", "Rossi", "Novak", "Kowalski",
    "Ivanova", "Tanaka", "Silva", "Johansson", "O'Brien", "Dubois", "Schmidt", "Martínez", "Hernández",
    "Chen", "Wang", "Singh", "Khan", "Ali", "Mensah", "Haddad", "Cohen", "Yilmaz", "Andersen",
    "Papadopoulos", "Murphy", "Byrne", "Fischer", "Moreau", "Lopez", "Sato", "Suzuki", "Park",
    "Nakamura", "Jones",
)
EMAIL_DOMAINS = (
    "example.com", "example.org", "example.net", "mail.example.com", "example.co.uk", "example.de",
    "example.fr", "corp.example.io", "eu.mail.example.com", "example-mail.com", "inbox.example.in",
    "example.edu", "students.example.ac.uk", "example.com.au",
)
EMAIL_TAGS = ("news", "work", "shop", "2024", "spam", "billing")
STREET_WORDS = (
    "Oak", "Maple", "Elm", "Main", "High", "Church", "Park", "Station", "Mill", "Cedar", "Willow",
    "Lincoln", "Washington", "Victoria", "Sunset", "River", "Lake", "Hill", "Spring", "Chestnut",
    "Pine", "Birch", "Market", "Bridge", "Kings", "Queens", "Harbour", "Meadow", "Orchard",
    "Jefferson", "Madison", "Highland", "Fairview", "North", "South", "Baker", "Abbey", "Castle",
)
STREET_SUFFIXES = ("Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Ln", "Drive", "Dr",
                   "Boulevard", "Blvd", "Court", "Way", "Place")
CITIES = ("Springfield", "Riverside", "Portland", "Austin", "Denver", "Boston", "Seattle", "London",
          "Manchester", "Leeds", "Bristol", "Glasgow", "Oakland", "Salem", "Fairfax", "Cambridge",
          "Oxford", "Brighton", "San Diego", "New York")
US_STATES = ("CA", "NY", "TX", "WA", "OR", "MA", "IL", "CO", "FL", "GA", "NC", "VA", "AZ", "MN")

_BASE62 = string.ascii_letters + string.digits
_UPPER_DIGITS = string.ascii_uppercase + string.digits
_B64URL = _BASE62 + "-_"
_HEX = "0123456789abcdef"


def _pick(rng: random.Random, seq):
    """rng.choice without its rejection sampling: about 3x faster, uniform to within 2**-53."""
    return seq[int(rng.random() * len(seq))]


def _digits(rng: random.Random, n: int) -> str:
    return f"{rng.randrange(10 ** n):0{n}d}"


def _ascii(name: str) -> str:
    """Lower-case ASCII letters only, for email local parts: "Zoë" -> "zoe", "O'Brien" -> "obrien"."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", folded.lower())


# --- value generators ------------------------------------------------------------------------

def first_name(rng: random.Random) -> str:
    """A first name: from the world's NAMES about half of the time, else from EXTRA_NAMES."""
    return _pick(rng, V.NAMES if rng.random() < 0.5 else EXTRA_NAMES)


def gen_name(rng: random.Random) -> str:
    """A first name, sometimes followed by a surname."""
    first = first_name(rng)
    return f"{first} {_pick(rng, SURNAMES)}" if rng.random() < 0.4 else first


_LOCAL_PARTS = (
    lambda f, l, r: f"{f}.{l}", lambda f, l, r: f"{f}.{l}", lambda f, l, r: f"{f}_{l}",
    lambda f, l, r: f"{f}{l}", lambda f, l, r: f"{f[0]}.{l}", lambda f, l, r: f"{f[0]}{l}",
    lambda f, l, r: f"{f}{r.randint(1, 99)}", lambda f, l, r: f"{l}.{f}",
    lambda f, l, r: f"{f}+{_pick(r, EMAIL_TAGS)}", lambda f, l, r: f"{f}.{l}+{_pick(r, EMAIL_TAGS)}",
)
_ASCII_FIRST = tuple(_ascii(n) for n in V.NAMES + EXTRA_NAMES)
_ASCII_LAST = tuple(_ascii(n) for n in SURNAMES)


def gen_email(rng: random.Random) -> str:
    """first.last, f.last, first+tag, ... at an example-like domain (subdomains, varied TLDs)."""
    local = _pick(rng, _LOCAL_PARTS)(_pick(rng, _ASCII_FIRST), _pick(rng, _ASCII_LAST), rng)
    return f"{local}@{_pick(rng, EMAIL_DOMAINS)}"


def _us_phone(rng: random.Random) -> str:
    area = f"{rng.randint(2, 9)}{_digits(rng, 2)}"
    exch = "555" if rng.random() < 0.5 else f"{rng.randint(2, 9)}{_digits(rng, 2)}"
    line = _digits(rng, 4)
    return _pick(rng, (f"({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"+1 {area} {exch} {line}"))


def _uk_phone(rng: random.Random) -> str:
    a, b = _digits(rng, 4), _digits(rng, 4)
    return _pick(rng, (f"+44 20 {a} {b}", f"020 {a} {b}", f"+44 7{_digits(rng, 3)} {_digits(rng, 6)}"))


def _de_phone(rng: random.Random) -> str:
    return f"+49 {_pick(rng, ('30', '40', '89', '69', '221', '211', '711'))} {_digits(rng, rng.randint(6, 8))}"


def _fr_phone(rng: random.Random) -> str:
    pairs = " ".join(_digits(rng, 2) for _ in range(4))
    first = _pick(rng, "1234567")
    return f"+33 {first} {pairs}" if rng.random() < 0.5 else f"0{first} {pairs}"


def _in_phone(rng: random.Random) -> str:
    return f"+91 {rng.randint(6, 9)}{_digits(rng, 4)} {_digits(rng, 5)}"


_PHONES = (_us_phone, _us_phone, _uk_phone, _de_phone, _fr_phone, _in_phone)


def gen_phone(rng: random.Random) -> str:
    """US, UK, DE, FR or IN formats, international or national."""
    return _pick(rng, _PHONES)(rng)


def luhn_complete(payload: str) -> str:
    """``payload`` followed by its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # these become the odd positions (from the right) once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return payload + str(-total % 10)


def gen_card(rng: random.Random) -> str:
    """Visa (16), Mastercard (16) or Amex (15) with a valid Luhn digit; plain or grouped."""
    kind = rng.randrange(3)
    if kind == 0:
        number = luhn_complete("4" + _digits(rng, 14))
    elif kind == 1:
        prefix = str(rng.randint(51, 55)) if rng.random() < 0.7 else str(rng.randint(2221, 2720))
        number = luhn_complete(prefix + _digits(rng, 15 - len(prefix)))
    else:
        number = luhn_complete(_pick(rng, ("34", "37")) + _digits(rng, 12))
    sep = _pick(rng, ("", " ", "-"))
    if not sep:
        return number
    groups = (number[:4], number[4:10], number[10:]) if len(number) == 15 else \
        (number[:4], number[4:8], number[8:12], number[12:])
    return sep.join(groups)


def gen_ssn(rng: random.Random) -> str:
    """AAA-GG-SSSS with area 001-899 except 666, group 01-99, serial 0001-9999."""
    area = rng.randint(1, 898)
    area += area >= 666  # skip 666, so 667..899 stay reachable
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def gen_ip(rng: random.Random) -> str:
    """IPv4 dotted quad (public or private ranges), or IPv6 full or compressed."""
    if rng.random() < 0.7:
        first = _pick(rng, (10, 172, 192, rng.randint(1, 223), rng.randint(1, 223)))
        if first == 192:
            return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    groups = [0x2001, 0x0DB8] if rng.random() < 0.5 else [rng.randint(0x2000, 0x3FFF), rng.randrange(1 << 16)]
    groups += [rng.randrange(1 << 16) for _ in range(6)]
    zeros = rng.randint(0, 4)
    if zeros:
        at = rng.randint(2, 8 - zeros)
        groups[at:at + zeros] = [0] * zeros
    addr = ipaddress.IPv6Address(int("".join(f"{g:04x}" for g in groups), 16))
    return addr.exploded if rng.random() < 0.3 else addr.compressed


def _uk_postcode(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNOPRSTUWYZ"
    area = "".join(rng.choices(letters, k=rng.randint(1, 2)))
    district = str(rng.randint(1, 29))
    if rng.random() < 0.15:
        district = f"{rng.randint(1, 9)}{_pick(rng, 'ABEHMNPRVWXY')}"
    return f"{area}{district} {rng.randint(0, 9)}{''.join(rng.choices('ABDEFGHJLNPQRSTUWXYZ', k=2))}"


def gen_address(rng: random.Random) -> str:
    """<number> <Street Words> <Suffix>[, <City>][, <ST> <ZIP5> | , <UK postcode>]."""
    street = " ".join(rng.sample(STREET_WORDS, _pick(rng, (1, 1, 1, 2))))
    addr = f"{rng.randint(1, 9999)} {street} {_pick(rng, STREET_SUFFIXES)}"
    if rng.random() < 0.6:
        addr += f", {_pick(rng, CITIES)}"
    r = rng.random()
    if r < 0.35:
        addr += f", {_pick(rng, US_STATES)} {rng.randint(1001, 99950):05d}"
    elif r < 0.5:
        addr += f", {_uk_postcode(rng)}"
    return addr


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


_JWT_HEADERS = tuple(_b64url(json.dumps(h, separators=(",", ":")).encode())
                     for h in ({"alg": "HS256", "typ": "JWT"}, {"alg": "RS256", "typ": "JWT"}))


def _jwt(rng: random.Random) -> str:
    payload = {"sub": _digits(rng, 10), "name": first_name(rng), "iat": rng.randint(1_500_000_000, 1_750_000_000)}
    body = _b64url(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{_pick(rng, _JWT_HEADERS)}.{body}.{''.join(rng.choices(_B64URL, k=43))}"


def gen_secret(rng: random.Random) -> str:
    """An API-key-like string in one of the common vendor shapes, a JWT, or a 40-hex token."""
    kind = rng.randrange(9)
    if kind == 0:
        return "sk-" + "".join(rng.choices(_BASE62, k=40))
    if kind == 1:
        return "sk-proj-" + "".join(rng.choices(_BASE62, k=48))
    if kind == 2:
        return "ghp_" + "".join(rng.choices(_BASE62, k=36))
    if kind == 3:
        return "AKIA" + "".join(rng.choices(_UPPER_DIGITS, k=16))
    if kind == 4:
        return (f"xoxb-{rng.randint(1, 9)}{_digits(rng, rng.randint(9, 12))}-{rng.randint(1, 9)}"
                f"{_digits(rng, rng.randint(9, 12))}-{''.join(rng.choices(_BASE62, k=24))}")
    if kind == 5:
        return "AIza" + "".join(rng.choices(_B64URL, k=35))
    if kind == 6:
        return "sk_live_" + "".join(rng.choices(_BASE62, k=24))
    if kind == 7:
        return _jwt(rng)
    return "".join(rng.choices(_HEX, k=40))


def iban_check(country: str, bban: str) -> str:
    """The two mod-97 check digits of an IBAN with this country code and BBAN."""
    rearranged = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(rearranged) % 97:02d}"


def _bban(rng: random.Random, country: str) -> str:
    up = string.ascii_uppercase
    if country == "DE":
        return _digits(rng, 18)
    if country == "GB":
        return "".join(rng.choices(up, k=4)) + _digits(rng, 14)
    if country == "FR":
        return _digits(rng, 10) + "".join(rng.choices(_UPPER_DIGITS, k=11)) + _digits(rng, 2)
    if country == "ES":
        return _digits(rng, 20)
    if country == "NL":
        return "".join(rng.choices(up, k=4)) + _digits(rng, 10)
    return _pick(rng, up) + _digits(rng, 10) + "".join(rng.choices(_UPPER_DIGITS, k=12))  # IT


IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "NL": 18, "IT": 27}


def gen_iban(rng: random.Random) -> str:
    """A mod-97-valid IBAN of DE, GB, FR, ES, NL or IT; plain or grouped by 4 with spaces."""
    country = _pick(rng, tuple(IBAN_LENGTHS))
    bban = _bban(rng, country)
    iban = country + iban_check(country, bban) + bban
    if rng.random() < 0.5:
        return iban
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": gen_email, "PHONE": gen_phone, "CARD": gen_card, "SSN": gen_ssn, "IP": gen_ip,
    "ADDRESS": gen_address, "NAME": gen_name, "SECRET": gen_secret, "IBAN": gen_iban,
}


# --- planting -----------------------------------------------------------------------------------
# Sentences customers put around a task. PRE come before it, LEAD directly before it (and only
# when no PRE sentence is used), POST after it. Some carry a cue ("my name is", "Dear", "from"),
# some do not ("cc {NAME} and {NAME}", "{IP} is down.").

PRE = (
    "Hi, I'm {NAME}, email {EMAIL}.", "Hi, I'm {NAME}.", "My name is {NAME}.", "This is {NAME} from support.",
    "{NAME} here.", "Email: {EMAIL}.", "{EMAIL} here, quick question.", "Writing from {EMAIL}.",
    "Call {PHONE} if needed.", "Phone {PHONE}.", "Ship to {ADDRESS}.", "My address is {ADDRESS}.",
    "Transfer from IBAN {IBAN}.", "My IBAN is {IBAN}.", "Using key {SECRET}.", "Ran export API_KEY={SECRET} first.",
    "{IP} is down again.", "My SSN is {SSN}.", "Card on file: {CARD}.", "Hi, {NAME} ({EMAIL}) from {ADDRESS}.",
)
LEAD = ("Dear {NAME},", "{NAME} asked me:", "From {NAME}:", "Hello {NAME},", "Question from {NAME}:")
POST = (
    "You can reach me at {PHONE}.", "Call me on {PHONE}.", "Text {PHONE} when done.", "Tel: {PHONE}",
    "My card is {CARD}, SSN {SSN}.", "Charge {CARD}.", "Use card {CARD} for billing.", "Card {CARD} exp 09/27.",
    "SSN {SSN}.", "My social is {SSN}.", "{SSN} is the number on file.",
    "(my api key is {SECRET})", "Token: {SECRET}", "Here is the key {SECRET} if you need it.",
    "Server IP {IP}.", "Connecting from {IP}.", "ping {IP} fails.",
    "Thanks, {NAME}", "cc {NAME} and {NAME}", "Best, {NAME}", "Ask {NAME} if unsure.",
    "I live at {ADDRESS}.", "Deliver to {ADDRESS} by Friday.", "{ADDRESS}",
    "IBAN {IBAN}.", "Refund to {IBAN} please.", "Wire from {IBAN}, contact {PHONE}.",
    "Reply to {EMAIL}.", "My email is {EMAIL}.", "cc {EMAIL}", "Thanks, {NAME} <{EMAIL}>",
)

_SLOT = re.compile(r"\{([A-Z]+)\}")


def _snippet(kind: str, template: str) -> tuple[str, str, tuple[str, ...], list[str]]:
    return kind, template, tuple(_SLOT.findall(template)), _SLOT.split(template)


_SNIPPETS = [_snippet("pre", t) for t in PRE] + [_snippet("lead", t) for t in LEAD] + \
            [_snippet("post", t) for t in POST]
_BY_TYPE: dict[str, list] = {t: [s for s in _SNIPPETS if t in s[2]] for t in PII_TYPES}
_N_VALUES = (1, 1, 1, 2, 2, 3)  # how many values a planted prompt carries

Span = tuple[str, int, int]


_OPTIONS: dict[tuple, list] = {}


def _options(typ: str, allowed: tuple[str, ...], kinds: tuple[str, ...], room: int) -> list:
    key = (typ, allowed, kinds, room)
    found = _OPTIONS.get(key)
    if found is None:
        found = _OPTIONS[key] = [s for s in _BY_TYPE[typ] if s[0] in kinds and len(s[2]) <= room
                                 and all(t in allowed for t in s[2])]
    return found


def _choose(rng: random.Random, allowed: tuple[str, ...]) -> list:
    """Snippets carrying 1-3 values, all of types in ``allowed``; at most one LEAD, never with a PRE."""
    target, chosen, n = _pick(rng, _N_VALUES), [], 0
    kinds = ("pre", "lead", "post")
    while n < target:
        options = _options(_pick(rng, allowed), allowed, kinds, target - n)
        if not options:
            if chosen:
                break
            continue  # with nothing chosen yet, every allowed type has a single-value snippet
        snip = _pick(rng, options)
        chosen.append(snip)
        n += len(snip[2])
        if snip[0] == "lead":
            kinds = ("post",)
        elif snip[0] == "pre":
            kinds = ("pre", "post")
    return chosen


def _plant(rng: random.Random, prompt: str, prompt_spans: list[Span],
           allowed: tuple[str, ...]) -> tuple[str, list[Span]]:
    chosen = _choose(rng, allowed)
    before = [s for s in chosen if s[0] != "post"]  # PRE sentences, or a single LEAD
    after = [s for s in chosen if s[0] == "post"]
    out: list[str] = []
    spans: list[Span] = []
    pos = 0

    def emit(snip) -> None:
        nonlocal pos
        for i, part in enumerate(snip[3]):
            if i % 2:
                value = GENERATORS[part](rng)
                spans.append((part, pos, pos + len(value)))
                part = value
            out.append(part)
            pos += len(part)

    for snip in before:
        emit(snip)
        out.append(" ")
        pos += 1
    spans.extend((t, pos + s, pos + e) for t, s, e in prompt_spans)
    body = prompt
    if after and body[-1] not in ".?!":
        body += "."  # end the task's sentence so the postscript cannot read as part of it
    out.append(body)
    pos += len(body)
    for snip in after:
        out.append(" ")
        pos += 1
        emit(snip)
    spans.sort(key=lambda s: s[1])
    return "".join(out), spans


def plant(rng: random.Random, prompt: str, types: tuple[str, ...] | None = None,
          spans: list[dict] | None = None) -> tuple[str, list[dict]]:
    """Embed 1-3 personal values of ``types`` (default: all PII_TYPES) around ``prompt``.

    Returns the new text, in ingest normal form, and one ``{"type", "start", "end"}`` per PII span
    in it, sorted by start, with ``text[start:end]`` exactly the value. ``spans`` are PII spans
    already inside ``prompt`` (e.g. a chat template's name); they are shifted and returned too.
    """
    allowed = PII_TYPES if types is None else tuple(types)
    unknown = set(allowed) - set(PII_TYPES)
    if not allowed or unknown:
        raise ValueError(f"types must be a non-empty subset of {PII_TYPES}, got {types!r}")
    if not prompt or normalize(prompt) != prompt:
        raise ValueError(f"plant needs a non-empty prompt in normal form (NFC, single spaces), got {prompt!r}")
    inner = [(d["type"], d["start"], d["end"]) for d in spans or ()]
    text, out = _plant(rng, prompt, inner, allowed)
    return text, [{"type": t, "start": s, "end": e} for t, s, e in out]


def normalize(text: str) -> str:
    """The ingest normal form: Unicode NFC and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).split())
