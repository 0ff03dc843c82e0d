"""PII detection and scrubbing for raw user prompts: pure functions, precompiled, fast.

``find_spans`` runs nine detectors (EMAIL, PHONE, CARD, SSN, IP, ADDRESS, NAME, SECRET, IBAN),
resolves overlaps and returns sorted, non-overlapping spans; ``scrub`` replaces each span with
``<TYPE>``. What a regex cannot validate is checked in code (Luhn for cards, ISO 13616 mod-97 for
IBANs, digit counts for phones, octet ranges for IPv4, ``ipaddress`` for IPv6, issued ranges for
SSNs), so near-misses such as versions, dates, times, ISBNs, order numbers, prices, hex colours and
arithmetic survive.

Speed (every prompt of a large ingest passes through here): each pattern that scans a whole text
opens with one character class or literal, so the regex engine skips straight to candidate
characters, and the "not preceded by" guard is a lookbehind over that first character, e.g.
``[0-9](?<![\\w.-][0-9])``. One scan (``_NUMBER_HINT``) tells which number detectors can find
anything at all, and the text detectors sit behind ``in`` checks ('@' for EMAIL, key prefixes for
SECRET, colons for IPv6); a typical clean prompt costs a few microseconds.

The name detector (``find_names``) is the least precise by nature. It catches:

- any first name of a lexicon (the world's ``NAMES`` plus ~500 common first names: English,
  Spanish, French, German and Indian ones first, then Arabic, African, Irish, East Asian, Slavic,
  Italian, Nordic, ...), capitalised, anywhere in the text, with the capitalised word right after
  it taken as a surname ("Anna Schmidt", "Priya Sharma", "Kenji O'Brien");
- one or two capitalised words right after a cue, whatever the name: "my name is", "I'm", "I am",
  "this is", "Dear", "Hi", "Hello", "Hey", "from", "contact", "ask for", "call me", "Mr.",
  "Mrs.", "Ms.", "Dr.", "Prof."; sign-offs ("Regards,", "Thanks", "Cheers,", "signed"); headers
  ("Name:", "From:", "To:", "Cc:", "Attn:"); and, in lower case only, verbs ("ask", "tell",
  "email", "ping", "meet", "call") and relations ("my friend", "my boss", "landlord", ...).

It misses: names outside the lexicon without a cue ("Zbigniew called", "Ask Zbigniew" in Title
Case); lower-case names ("anna"); a surname that is a stop word ("Anna London" gives only "Anna");
initials ("J. Smith"); first names that are also common words, left out of the lexicon on purpose
(Will, May, June, Mark, Grace, Hope, Jordan, Austin, ...); non-Latin-1 scripts. It over-matches a
capitalised non-name after a cue that the stop list lacks ("this is Kubernetes", "I am Learning"),
and a lexicon name used as a thing ("Iris petals"); the stop list holds articles, pronouns, days,
months, common sentence starters, assistants, departments and well-known places and companies.

Other known gaps: a US number with spaces only ("415 555 0132", no "+1") reads as a list of
numbers and is left alone; secrets with neither a known prefix nor a key name before them; street
addresses without a street suffix or in lower case; IBANs in lower case.
"""
from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable

from rlhf.world.pii import EXTRA_NAMES
from rlhf.world.vocab import NAMES

PII_TYPES = ("EMAIL", "PHONE", "CARD", "SSN", "IP", "ADDRESS", "NAME", "SECRET", "IBAN")
# Which span wins when two start at the same place with the same length.
_PRIORITY = {t: i for i, t in enumerate(
    ("SECRET", "EMAIL", "IBAN", "CARD", "SSN", "IP", "PHONE", "ADDRESS", "NAME"))}

PLACEHOLDER_RE = re.compile(r"<(?:" + "|".join(PII_TYPES) + r")>")

_A = re.ASCII  # number patterns: ASCII \d and \w are both what we mean and faster to scan


@dataclass(frozen=True)
class Span:
    """A detected PII span: ``text[start:end]`` is of kind ``type`` (one of PII_TYPES)."""

    type: str
    start: int
    end: int


def _finditer(pattern: re.Pattern[str], text: str) -> Iterable[re.Match[str]]:
    """``pattern.finditer(text)``, but a plain search first: most texts have no match, and a
    failed search costs less than setting up an iterator."""
    m = pattern.search(text)
    return () if m is None else pattern.finditer(text, m.start())


def _fitted(kind: str, pattern: re.Pattern[str], text: str, ok: Callable[[str], bool]) -> list[Span]:
    """Spans of ``pattern``'s matches, each cut to its longest prefix ending before a separator
    that passes ``ok``: a grouped number may run on into the next one ("+44 20 7946 0958 2024").
    After a candidate that fails, the search goes on inside it, where the real one may start
    ("020 7946 0958 4111 1111 1111 1111" holds a phone, then a card)."""
    spans = []
    m = pattern.search(text)
    while m:
        candidate = m.group()
        while candidate and not ok(candidate):
            candidate = candidate[:max(candidate.rfind(" "), candidate.rfind("-"), candidate.rfind("."),
                                       candidate.rfind("/"), 0)]
        if candidate:
            spans.append(Span(kind, m.start(), m.start() + len(candidate)))
        m = pattern.search(text, m.start() + max(len(candidate), 1))
    return spans


# -- EMAIL ----------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"[A-Za-z0-9_%+-](?<![\w.%+-].)[A-Za-z0-9_%+-]*(?:\.[A-Za-z0-9_%+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])")


def find_emails(text: str) -> list[Span]:
    """Email addresses: dotted and plus-tagged local parts, subdomains, TLDs of 2-24 letters."""
    if "@" not in text:
        return []
    return [Span("EMAIL", m.start(), m.end()) for m in _finditer(_EMAIL, text)]


# -- PHONE ----------------------------------------------------------------------------------------

# International: +cc, then groups split by one separator (an optional "(0)" or "(415)" group), or
# +cc and the number run together; 8-15 digits in all, checked in code.
_PHONE_INTL = re.compile(
    r"\+(?<![\w+]\+)\d{1,3}"
    r"(?:(?:[ .-]?\(\d{1,4}\)[ .-]?|[ .-])\d{1,10}(?:[ .-]\d{1,10}){0,6}|\d{7,14})"
    r"(?![\w]|[.-]\d)", _A)
# US/NANP: (415) 555-0132, 415-555-0132, 415.555.0132, 1 415 555 0132, 1-800-555-0199. A bare
# "415 555 0132" is left alone: with spaces only, it reads as a list of numbers.
_PHONE_US = re.compile(
    r"[(0-9](?<![\w+.-][(0-9])"
    r"(?:(?<=\()\d{3}\)[ .-]?\d{3}[ .-]"  # (415) 555-
    r"|(?<=1)(?<!:1)([ .-])(?:\(\d{3}\)[ .-]?\d{3}[ .-]|\d{3}\1\d{3}\1)"  # 1 (415) 555- / 1-415-555-
    r"|(?<=\d)\d\d([.-])\d{3}\2)"  # 415-555-
    r"\d{4}(?![\w]|[.-]\d)", _A)
# National with a trunk 0 (UK, DE, FR, ...): one separator kind throughout and 10-12 digits,
# checked in code, so dates such as 05/01/2024 (8 digits) stay out.
_PHONE_NATIONAL = re.compile(r"0(?<![\w+.-]0)\d{1,4}([ ./-])\d{2,8}(?:\1\d{2,8}){0,3}(?![\w]|[.-]\d)", _A)


def _ndigits(s: str) -> int:
    return sum(map(str.isdigit, s))


def find_phones(text: str) -> list[Span]:
    """Phone numbers: +cc international (8-15 digits), US (NANP) and trunk-0 national formats."""
    spans = [Span("PHONE", m.start(), m.end()) for m in _finditer(_PHONE_US, text)]
    if "+" in text:
        spans += _fitted("PHONE", _PHONE_INTL, text, lambda c: 8 <= _ndigits(c) <= 15)
    if "0" in text:
        spans += _fitted("PHONE", _PHONE_NATIONAL, text, lambda c: 10 <= _ndigits(c) <= 12)
    return spans


# -- CARD -----------------------------------------------------------------------------------------

_CARD = re.compile(
    r"[0-9](?<![\w.-][0-9])(?:\d{12,18}"
    r"|\d{3}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{1,3})?"  # 4-4-4-4 (13-19 digits)
    r"|\d{3}([ -])\d{6}\2\d{4,5}"  # Amex 4-6-5, Diners 4-6-4
    r")(?![\w]|[.-]\d)", _A)
_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """True if ``digits`` (spaces and dashes allowed) passes the Luhn checksum."""
    s = digits.replace(" ", "").replace("-", "")
    if len(s) < 2 or not s.isascii() or not s.isdigit():
        return False
    total = sum(map(int, s[-1::-2])) + sum(_LUHN_DOUBLED[int(c)] for c in s[-2::-2])
    return total % 10 == 0


def _card_ok(candidate: str) -> bool:
    return 13 <= _ndigits(candidate) <= 19 and luhn_ok(candidate)


def find_cards(text: str) -> list[Span]:
    """Payment card numbers of 13-19 digits, plain or grouped (4-4-4-4, 4-6-5), passing Luhn."""
    return _fitted("CARD", _CARD, text, _card_ok)


# -- SSN ------------------------------------------------------------------------------------------

_SSN = re.compile(r"[0-9](?<![\w.-][0-9])\d\d([- ])\d\d\1\d{4}(?![\w]|[.-]\d)", _A)


def _ssn_ok(ssn: str) -> bool:
    # Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
    area, group, serial = ssn[:3], ssn[4:6], ssn[7:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def find_ssns(text: str) -> list[Span]:
    """US social security numbers 123-45-6789 / 123 45 6789 with a valid area, group and serial."""
    return [Span("SSN", m.start(), m.end()) for m in _finditer(_SSN, text) if _ssn_ok(m.group())]


# -- IP -------------------------------------------------------------------------------------------

# No neighbouring dot-number, so version strings like 1.2.3.4.5 are not read as an address.
_IPV4 = re.compile(r"[0-9](?<![\w.][0-9])\d{0,2}(?:\.\d{1,3}){3}(?![\w]|\.\d)", _A)
# A candidate of 2-7 "hex:" groups (the first char already taken), then a hex group or an IPv4
# tail; ipaddress decides.
_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.].)(?:(?<=:)|[0-9A-Fa-f]{0,3}:)(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)", _A)


def _ipv4_ok(candidate: str) -> bool:
    # Octets 0-255 without leading zeros ("01.02.03.04" is no address).
    return all(p == "0" or (p[0] != "0" and int(p) <= 255) for p in candidate.split("."))


def _ipv6_ok(candidate: str) -> bool:
    # A digit is required so that "dead::beef"-like identifiers and a bare "::" stay out; times
    # (12:30:45) and MAC addresses fail as they have neither "::" nor eight groups.
    if not any(map(str.isdigit, candidate)):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _find_ipv4(text: str) -> list[Span]:
    return [Span("IP", m.start(), m.end()) for m in _finditer(_IPV4, text) if _ipv4_ok(m.group())]


def _find_ipv6(text: str) -> list[Span]:
    if "::" not in text and text.count(":") < 7:
        return []
    return [Span("IP", m.start(), m.end()) for m in _finditer(_IPV6, text) if _ipv6_ok(m.group())]


def find_ips(text: str) -> list[Span]:
    """IPv4 dotted quads with octets 0-255 (no leading zeros) and IPv6 (full or with '::')."""
    return (_find_ipv4(text) if "." in text else []) + _find_ipv6(text)


# -- stop words: capitalised words that are not people's names --------------------------------------

_PLACES = frozenset("""
Africa America Amsterdam Asia Athens Atlanta Australia Austria Bangalore Barcelona Beijing Belgium
Berlin Boston Brazil Britain Brussels Cairo California Canada Chicago China Delhi Denmark Dubai
Dublin Edinburgh England Europe Finland Florida France Frankfurt Geneva Germany Glasgow Greece
Hamburg Holland Hollywood India Ireland Israel Italy Japan Kenya Lisbon London Madrid Manchester
Mexico Miami Milan Montreal Moscow Mumbai Munich Netherlands Nigeria Norway Ohio Oxford Pakistan
Paris Poland Portugal Prague Rome Russia Scotland Seattle Singapore Spain Springfield Stockholm
Sweden Switzerland Sydney Texas Tokyo Toronto Turkey Ukraine Vancouver Vienna Wales Warsaw
Washington Zurich
""".split())
# Words that start sentences, follow cues ("I'm Sorry", "from The", "Dear Hiring Manager"), or
# name companies and things. Cities are kept apart: an address's ", City" may be one of _PLACES.
_COMMON_CAPS = frozenset("""
A About After Again All Also Am An And Another Answer Any Are As Ask At Be Because Been Before
Best Both But By Calculate Call Can Classify Compute Context Could Customer Dear Did Do Does
Done Each Even Every Everyone Few For From Give Go Going Good Great Had Has Have He Hello Help
Her Here Hers Hey Hi Him His Home How However I If In Is It Its Just Last Let List Many Me Mine
More Most My Name Next No Nobody None Nor Not Nothing Now Of Off Oh Ok Okay On Once One Only Or
Other Our Out Over Please Positive Negative Question Questions Regards Reply Review Reverse Same
Say See She Should Signed Sincerely Since So Some Someone Something Sorry Still Sum Summarize
Summary Support Sure Team Tell Than Thank Thanks That The Their Them Then There These They This
Those Though To Today Tomorrow Too Under Until Up Us Very Was We Well Were What When Where Which
While Who Whom Whose Why With Without Work World Would Write Yes Yesterday Yet You Your Yours
Monday Tuesday Wednesday Thursday Friday Saturday Sunday
January February March April May June July August September October November December
Mr Mrs Ms Miss Dr Prof Sir Madam Madame Mister Doctor Professor Sr Jr
Glad Happy Fine Interested Looking Trying Writing Working Sending Asking Important Urgent Scratch
Add Check Choose Compare Convert Correct Create Describe Draft Edit Explain Find Fix Generate
Imagine Improve Make Might Must Provide Remove Rewrite Show Suggest Translate Upgrade Use Will
Hiring Valued Friend Friends Colleague Colleagues Editor Committee Board Members Applicant
Candidate Client Landlord Neighbour Neighbor Teacher Student Students Parents User Users Owner
Admin Manager Sales Billing Account Accounts Office Department Service Services Company Marketing
Finance Legal Engineering Security Operations Research Product Design Reception Accounting Payroll
Compliance Mom Mum Dad Siri Alexa Cortana Claude Gemini Copilot Bard Zoom Slack Teams Skype
WhatsApp Discord
Amazon Apple Facebook Google Microsoft Netflix OpenAI GitHub Twitter Tesla Uber Python Java
JavaScript Linux Windows Excel English French German Spanish Hindi Chinese
Christmas Easter Internet Earth Moon Sun God Bank
""".split())
_STREET_SUFFIXES = ("Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln",
                    "Drive", "Dr", "Court", "Ct", "Way", "Place", "Pl", "Terrace", "Close", "Crescent",
                    "Parkway", "Pkwy", "Highway", "Hwy", "Square", "Sq", "Loop", "Row", "Gardens", "Mews",
                    "Circle", "Cir", "Trail", "Plaza", "Grove")
# Street words are stop words too, so a name never swallows the end of an address ("Hi St Tom").
_STOP = _COMMON_CAPS | _PLACES | frozenset(_STREET_SUFFIXES)

# -- ADDRESS --------------------------------------------------------------------------------------

_SUFFIX = "(?:" + "|".join(_STREET_SUFFIXES) + ")"
_ADDRESS = re.compile(
    r"[0-9](?<![\w.,-][0-9])\d{0,4}[A-Z]?\s+"  # house number: 42, 221B
    r"(?:(?:[A-Z][a-z'-]*|\d+(?:st|nd|rd|th))\s+){1,3}"  # 1-3 capitalised words, or 5th
    + _SUFFIX + r"\b\.?"
    r"(?:\s+(?:NE|NW|SE|SW|N|S|E|W)\b)?"  # 1600 Pennsylvania Avenue NW
    r"(?:,?\s+(?:(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl)\.?\s*|#)#?[A-Za-z0-9-]+)?",  # Apt 4B, #12
    _A)
_CITY = re.compile(r",\s*([A-Z][a-z]+(?:[ -][A-Z][a-z]+){0,2})\b", _A)
# US [state] + ZIP (IL 62704, DC 20500-0001) or a UK postcode (NW1 6XE, SW1A 1AA).
_ZIP = re.compile(r",?\s+(?:(?:[A-Z]{2}\s+)?\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})\b", _A)


def _address_end(text: str, end: int) -> int:
    """Extend a street match over an optional ", City" and a ZIP or postcode."""
    city = _CITY.match(text, end)
    if city:
        words = city.group(1).split()
        keep = 0
        while keep < len(words) and words[keep] not in _COMMON_CAPS:
            keep += 1
        if keep:
            end = city.start(1) + len(" ".join(words[:keep]))
    zip_ = _ZIP.match(text, end)
    return zip_.end() if zip_ else end


def find_addresses(text: str) -> list[Span]:
    """US/UK street addresses: number, 1-3 capitalised words, a street suffix, [, City] [ZIP]."""
    return [Span("ADDRESS", m.start(), _address_end(text, m.end())) for m in _finditer(_ADDRESS, text)]


# -- NAME -----------------------------------------------------------------------------------------

# Common first names that are not also common English words (no Will, May, Grace, Jordan, ...):
# English, Spanish, French, German, Indian, then Arabic, African, Irish, East Asian, Slavic,
# Italian, Portuguese, Nordic, Turkish, Dutch and Hebrew ones.
_EXTRA_NAMES = """
James John Robert Michael William Richard Joseph Thomas Charles Christopher Daniel Matthew
Anthony Steven Paul Andrew Joshua Kevin Brian George Edward Timothy Jason Jeffrey Ryan Jacob
Nicholas Jonathan Stephen Justin Scott Brandon Benjamin Samuel Gregory Alexander Patrick Raymond
Dennis Tyler Aaron Nathan Peter Kyle Walter Harold Jeremy Ethan Keith Roger Sean Arthur Noah
Jesse Joe Dylan Albert Bruce Gabriel Alan Logan Ralph Eugene Vincent Russell Philip Oliver Harry
Liam Lucas Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa
Margaret Sandra Ashley Kimberly Emily Donna Michelle Dorothy Carol Amanda Melissa Deborah
Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy Angela Helen Brenda Pamela Nicole Samantha
Katherine Christine Rachel Catherine Janet Maria Heather Diane Julie Olivia Kelly Christina
Lauren Megan Hannah Jacqueline Alice Sophia Isabella Charlotte Amelia Mia Chloe Zoe Lily Ella
Alejandro Carlos Diego Javier Miguel Pablo Sergio Luis Jorge Fernando Antonio Manuel Francisco
Rafael Andrés Mateo Santiago Lucía Sofía Carmen Isabel Elena Marta Valentina Camila Gabriela
Pilar Dolores Guadalupe Pierre Nicolas Julien Antoine Mathieu François Jean-Pierre Camille Chloé
Manon Léa Inès Sophie Céline Amélie Élodie Hugo Théo Baptiste Guillaume Thierry Sylvie Isabelle
Nathalie Valérie Hans Klaus Jürgen Stefan Wolfgang Uwe Dieter Lukas Jonas Moritz Lena Leonie
Anja Katrin Sabine Ursula Monika Petra Birgit Heike Tobias Florian Sebastian Matthias Andreas
Markus Aarav Vivaan Aditya Arjun Rohan Rahul Amit Anil Sunil Vikram Ravi Sanjay Suresh Ramesh
Rajesh Arun Deepak Manoj Vijay Priya Ananya Aisha Diya Isha Kavya Neha Pooja Sneha Anjali
Deepika Lakshmi Sunita Meera Divya Shreya Riya Aditi Nisha Kiran Jane Bob Mike Chris Kate Katie
Steve Dave Jim Tim Tony Nick Andy Alex Dan Josh Luke Ian Neil Simon Colin Martin Jenny Ellie Beth
Juan José Ana Pedro Javi Marisol Marie Louise Jacques Michel Philippe Alain Émilie Karl Heinz
Helga Gisela Fritz Günter Jörg Vikas Pradeep Gaurav Ankit Nikhil Sachin Kavita Rekha Swati Anand
Ganesh Mohan Rohit Abhishek Akash Varun Karan Shruti Nandini
Mohammed Muhammad Mohamed Ahmed Ali Omar Fatima Layla Leila Nadia Yusuf Youssef Hassan Hussein Khalid
Karim Zainab Mariam Samir Tariq Rania Amira Ibrahim Mustafa Hamza Bilal Imran Ayesha Farhan Sana
Kofi Kwame Kwabena Ama Abena Adwoa Chidi Chiamaka Ngozi Emeka Obinna Adaeze Oluwaseun Tunde Femi
Amara Zuri Thabo Sipho Thandiwe Nia Jabari Wanjiru Akinyi Niamh Siobhan Aoife Ciara Declan Eoin
Cian Padraig Saoirse Orla Roisin Fergus Callum Ewan Eilidh Ailsa Seamus Conor Aidan Brendan Yuki
Kenji Hiroshi Takashi Haruto Sakura Aiko Akira Hana Ren Wei Jing Mei Ming Hui Xiu Minh Linh Thanh
Huong Jiwoo Minjun Seoyeon Hyun Olga Dmitri Ivan Sergei Natasha Anastasia Svetlana Igor Vladimir
Pavel Katya Tatiana Yuri Boris Mikhail Giovanni Giuseppe Marco Luca Francesca Giulia Chiara
Alessandro Matteo Lorenzo João Thiago Beatriz Larissa Fernanda Luiz Lars Sven Ingrid Astrid Nils
Erik Freya Sigrid Magnus Henrik Mehmet Emre Zeynep Burak Katarzyna Piotr Tomasz Agnieszka
Marek Joost Sanne Daan Bram Femke Yael Noa Avi Moshe Tamar Eitan
"""


@functools.lru_cache(maxsize=65536)
def _fold(word: str) -> str:
    """The word without diacritics, so the lexicon's Zoe and Jose also catch Zoë and José."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


# the world's own name lexicon (its first names and the other first names it plants) and ~500 more
_FIRST_NAMES = frozenset(_fold(n) for n in (*NAMES, *EXTRA_NAMES, *_EXTRA_NAMES.split()))
_UP, _LO = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
# A capitalised token: Tom, O'Brien, McDonald, Jean-Pierre, Min-jun, Jürgen (Latin-1 letters).
_TOKEN = re.compile(
    rf"[{_UP}](?<![\w'’-].)(?:['’][{_UP}])?[{_LO}]+(?:[{_UP}][{_LO}]+)?(?:-[{_UP}{_LO}][{_LO}]+)?(?!\w)")
# Words right before a name, in any case. Sign-offs may take a comma ("Regards, Anna"), headers
# a colon ("From: Anna").
_SIGN_OFFS = ("regards", "best regards", "kind regards", "thanks", "thank you", "cheers", "sincerely",
              "yours", "yours truly", "love", "best wishes", "warmly", "signed")
_HEADERS = ("name", "from", "to", "cc", "by", "contact", "attn", "author", "customer", "client",
            "patient", "signed")
_CUES = (("my name is", "name is", "i'm", "i’m", "i am", "this is", "dear", "hi", "hello", "hey",
          "from", "contact", "ask for", "call me", "mr.", "mrs.", "ms.", "dr.", "prof.", "mr", "mrs",
          "ms", "dr", "prof")
         + _SIGN_OFFS + tuple(w + "," for w in _SIGN_OFFS) + tuple(w + ":" for w in _HEADERS))
# Verbs and relations count only in lower case: "ask Anna", "my friend Anna", but not the Title
# Case of a headline ("How To Ask Better Questions").
_LOWER_CUES = ("ask", "tell", "email", "e-mail", "ping", "meet", "met", "call", "cc", "wife",
               "husband", "son", "daughter", "brother", "sister", "mother", "father", "mom", "mum",
               "dad", "friend", "colleague", "coworker", "boss", "manager", "partner", "neighbour",
               "neighbor", "cousin", "uncle", "aunt", "teacher", "tutor", "roommate", "landlord")
_CUE_AT_END = re.compile(r"[^\w'’](?:" + "|".join(re.escape(c) for c in _CUES + _LOWER_CUES) + r")$")


def _after_cue(text: str, start: int) -> bool:
    """True if a cue, then whitespace, comes right before ``start``."""
    if start == 0 or not text[start - 1].isspace():
        return False
    lo = max(0, start - 24)
    tail = text[lo:start].rstrip()
    low = tail.lower()
    if not (low.endswith(_CUES) or tail.endswith(_LOWER_CUES)):  # cheap checks before the regex
        return False
    return _CUE_AT_END.search(" " + low if lo == 0 else low) is not None


def _surname_end(text: str, end: int) -> int:
    """End of a capitalised, non-stop-word token right after ``end`` (one space), else ``end``."""
    if text[end:end + 1] != " ":
        return end
    m = _TOKEN.match(text, end + 1)
    return m.end() if m and m.group() not in _STOP else end


def find_names(text: str) -> list[Span]:
    """People's names: lexicon first names (+ surname) and capitalised words after name cues."""
    if _STOP.issuperset(_TOKEN.findall(text)):  # the usual case: only stop words, no names
        return []
    spans: list[Span] = []
    last = 0
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        if start < last:  # already taken as a surname
            continue
        word = m.group()
        if _fold(word) not in _FIRST_NAMES and (word in _STOP or not _after_cue(text, start)):
            continue
        last = _surname_end(text, end)
        spans.append(Span("NAME", start, last))
    return spans


# -- SECRET ---------------------------------------------------------------------------------------

_SECRET = re.compile(
    r"(?<![\w-])(?:"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|(?:[A-Za-z0-9+/=\s]*[A-Za-z0-9+/=])?)"
    r"|sk-(?:proj-)?[A-Za-z0-9_-]{20,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|(?:hf|npm)_[A-Za-z0-9]{30,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35,}"
    r"|[spr]k_(?:live|test)_[0-9A-Za-z]{10,}"
    r"|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
    r")(?![\w-])")
# Only the value is the secret: "Bearer <token>"; a 32+ character hex or base64url value right
# after a key name ("api_key=...", "token: ...", "my API key is ...", "secret '...'"); an 8+
# character value after "password=". The key name before a value is checked after the value.
_BEARER = re.compile(r"\b[Bb]earer\s+([A-Za-z0-9._~+/-]{16,}=*)")
_KEY_HINTS = ("key", "token", "secret", "passw", "pwd")  # in the lower-cased text
_LONG_VALUE = re.compile(r"([A-Za-z0-9_+/-](?<![\w+/-].)[A-Za-z0-9_+/-]{31,}={0,2})(?![\w+/=-])")
_KEY_NAME = re.compile(
    r"(?i)(?:key|token|secret|password|passwd|pwd)s?[\"']?(?:\s*[:=]\s*|\s+(?:is\s+|was\s+)?)[\"']?$")
_PASSWORD_VALUE = re.compile(r"=\s*[\"']?([^\s\"',;<>]{8,})")  # no <>: "<SECRET>" is 8 long
_PASSWORD_NAME = re.compile(r"(?i)(?<![a-z0-9])(?:password|passwd|pwd)[\"']?\s*$")


def _values(text: str, value: re.Pattern[str], key: re.Pattern[str]) -> list[Span]:
    """Spans of ``value``'s group 1 where the 40 characters before the match end with ``key``."""
    return [Span("SECRET", m.start(1), m.end(1)) for m in _finditer(value, text)
            if key.search(text, max(0, m.start() - 40), m.start())]


def find_secrets(text: str) -> list[Span]:
    """API keys and tokens: known prefixes, JWTs, Bearer tokens, long values after key names."""
    spans = []
    # Literal hints, each quicker than a scan: every prefixed form holds one of them.
    if ("_" in text or "sk-" in text or "AKIA" in text or "ASIA" in text or "xox" in text
            or "AIza" in text or "eyJ" in text or "glpat-" in text or "PRIVATE KEY" in text):
        spans += [Span("SECRET", m.start(), m.end()) for m in _finditer(_SECRET, text)]
    if "earer" in text:
        spans += [Span("SECRET", m.start(1), m.end(1)) for m in _finditer(_BEARER, text)]
    low = text.lower()
    if any(h in low for h in _KEY_HINTS):
        spans += _values(text, _LONG_VALUE, _KEY_NAME)
    if "=" in text:
        spans += _values(text, _PASSWORD_VALUE, _PASSWORD_NAME)
    return spans


# -- IBAN -----------------------------------------------------------------------------------------

_IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21,
                 "AT": 20, "PL": 28, "SE": 24, "IE": 22, "PT": 25, "DK": 18, "NO": 15, "FI": 18}
_IBAN_SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_IBAN_LETTERS = {c: str(c - 55) for c in range(ord("A"), ord("Z") + 1)}  # A=10 ... Z=35
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)"
    r"(?![A-Za-z0-9])", _A)


def iban_ok(candidate: str) -> bool:
    """True for a valid IBAN (ISO 13616 mod-97, per-country length), plain or in groups of 4."""
    groups = candidate.split(" ")
    if len(groups) > 1 and (any(len(g) != 4 for g in groups[:-1]) or not 1 <= len(groups[-1]) <= 4):
        return False
    s = "".join(groups)
    if not _IBAN_SHAPE.fullmatch(s) or len(s) != _IBAN_LENGTHS.get(s[:2], len(s)):
        return False
    return int((s[4:] + s[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def find_ibans(text: str) -> list[Span]:
    """IBANs, plain or grouped by 4, that pass mod-97."""
    return _fitted("IBAN", _IBAN, text, iban_ok)


# -- all together ---------------------------------------------------------------------------------

# One scan tells which number detectors can find anything: "+<digit>" (international phone), "XX99"
# (IBAN), 9+ digits with short separators (phone, card, SSN, IPv4), "9.9.9" (short IPv4) or a digit
# before a capitalised word (house number). Each branch only looks ahead, so a match is one digit
# long and never hides the evidence starting at the next one.
_NUMBER_HINT = re.compile(
    r"[0-9](?:(?<=\+[0-9])(?P<intl>)"
    r"|(?<=[A-Z]{2}[0-9])(?=[0-9])(?P<iban>)"
    r"|(?<![0-9][0-9])(?=(?:[ ().\-/]{0,2}[0-9]){8})(?P<digits>)"  # at a group's first digit only
    r"|(?<![0-9][0-9])(?=[0-9]{0,2}\.[0-9]{1,3}\.[0-9])(?P<dotted>)"
    r"|(?=[A-Z]?\s+[A-Z0-9])(?P<house>))", _A)


def _find_all(text: str) -> list[Span]:
    """Every detector's spans, overlapping, in no particular order."""
    found = find_names(text) + find_secrets(text) + find_emails(text) + _find_ipv6(text)
    first = _NUMBER_HINT.search(text)
    if first is None:
        return found
    hints = {m.lastgroup for m in _NUMBER_HINT.finditer(text, first.start())}
    if "intl" in hints or "digits" in hints:
        found += find_cards(text) + find_ssns(text) + find_phones(text) + _find_ipv4(text)
    elif "dotted" in hints:
        found += _find_ipv4(text)
    if "house" in hints:
        found += find_addresses(text)
    if "iban" in hints:
        found += find_ibans(text)
    return found


def _resolve(found: list[Span]) -> list[Span]:
    """Sorted, non-overlapping spans: the earlier start wins; on an equal start the longer span;
    on an identical span the type first in SECRET > EMAIL > IBAN > CARD > SSN > IP > PHONE >
    ADDRESS > NAME."""
    if len(found) < 2:
        return found
    spans, last = [], -1
    for s in sorted(found, key=lambda s: (s.start, s.start - s.end, _PRIORITY[s.type])):
        if s.start >= last:
            spans.append(s)
            last = s.end
    return spans


def find_spans(text: str) -> list[Span]:
    """All PII spans of ``text``, from every detector, sorted and non-overlapping (see _resolve)."""
    return _resolve(_find_all(text))


def scrub(text: str) -> tuple[str, list[Span]]:
    """Replace each PII span with ``<TYPE>``; return the new text and the spans in ``text``."""
    spans = find_spans(text)
    if not spans:
        return text, spans
    parts, pos = [], 0
    for s in spans:
        parts += [text[pos:s.start], "<", s.type, ">"]
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts), spans


def has_pii(text: str) -> bool:
    """True when ``find_spans`` finds anything in ``text``."""
    return bool(_find_all(text))


# A coarse leftover check for data-quality expectations on scrubbed text: the formats a regex
# alone can confirm (email, SSN, IPv4, +cc and US phones, prefixed secrets, "key=<32+ chars>"). It has no lookarounds
# or backreferences, so RE2-based engines (pyarrow, pandas string[pyarrow]) accept it as well.
# Card and IBAN checksums and names need code: use ``has_pii`` for those.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
LEFTOVER_RE = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}"
    r"|(?:^|[^\w.-])(?:00[1-9]|0[1-9][0-9]|[1-578][0-9][0-9]|6[0-57-9][0-9]|66[0-57-9])"
    r"(?:-(?:0[1-9]|[1-9][0-9])-|[ ](?:0[1-9]|[1-9][0-9])[ ])"
    r"(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9][0-9]|[1-9][0-9]{3})(?:$|[^\w.-]|[.-](?:$|[^0-9]))"
    rf"|(?:^|[^\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?:$|[^\w.]|\.(?:$|[^0-9]))"
    r"|(?:^|[^\w+])\+[0-9]{1,3}(?:[ .-]|[ .-]?\([0-9]{1,4}\)[ .-]?)[0-9]{1,10}(?:[ .-][0-9]{2,10}){1,5}"
    r"(?:$|[^0-9])"
    r"|(?:^|[^\w+])\+[0-9]{8,15}(?:$|[^0-9])"
    r"|(?:^|[^\w+.-])(?:\([0-9]{3}\)[ .-]?[0-9]{3}[ .-]|[0-9]{3}-[0-9]{3}-|[0-9]{3}\.[0-9]{3}\.)[0-9]{4}"
    r"(?:$|[^\w.-]|[.-](?:$|[^0-9]))"
    r"|\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35,}"
    r"|[spr]k_live_[0-9A-Za-z]{10,}|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"
    r"|(?i:key|token|secret|password|passwd|pwd)[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9_+/-]{32}")
