"""Tests for the world's planted personal data: value generators, plant(), the PII ground truth
of the prompt logs, the streaming generator, and task parsing on raw and scrubbed prompts."""
from __future__ import annotations

import ipaddress
import random
import re
import time
import unicodedata
from collections import Counter
from datetime import datetime, timezone

import pytest

from rlhf.world import (FAMILIES, PII_TYPES, POLITE_REPLY, family_of, generate_prompt_logs, gold_answer,
                        iter_prompt_logs, make_prompt, make_prompt_spans, plant, score, vocab)
from rlhf.world import pii

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


# --- independent checks of well-formed values ---------------------------------------------------

def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


IBAN_LEN = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "NL": 18, "IT": 27}
FIRST_NAMES = set(vocab.NAMES) | set(pii.EXTRA_NAMES)
SUFFIXES = "Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Way|Place"
SHAPES = {
    "EMAIL": re.compile(r"[a-z0-9._+]+@(?:[a-z0-9-]+\.)+[a-z]{2,}"),
    "PHONE": re.compile(r"\(\d{3}\) \d{3}-\d{4}|\d{3}-\d{3}-\d{4}|\+1 \d{3} \d{3} \d{4}"
                        r"|\+44 20 \d{4} \d{4}|020 \d{4} \d{4}|\+44 7\d{3} \d{6}|\+49 \d{2,3} \d{6,8}"
                        r"|\+33 \d(?: \d\d){4}|0\d(?: \d\d){4}|\+91 [6-9]\d{4} \d{5}"),
    "CARD": re.compile(r"4\d{15}|4\d{3}([ -])\d{4}\1\d{4}\1\d{4}|(?:5[1-5]|2[2-7])\d{14}"
                       r"|(?:5[1-5]|2[2-7])\d\d([ -])\d{4}\2\d{4}\2\d{4}|3[47]\d{13}|3[47]\d\d([ -])\d{6}\3\d{5}"),
    "SSN": re.compile(r"\d{3}-\d{2}-\d{4}"),
    "ADDRESS": re.compile(rf"\d{{1,4}}(?: [A-Z][a-z]+){{1,2}} (?:{SUFFIXES})(?:, [A-Z][a-z]+(?: [A-Z][a-z]+)?)?"
                          r"(?:, [A-Z]{2} \d{5}|, [A-Z]{1,2}(?:\d{1,2}|\d[A-Z]) \d[A-Z]{2})?"),
    "SECRET": re.compile(r"sk-[A-Za-z0-9]{40}|sk-proj-[A-Za-z0-9]{48}|ghp_[A-Za-z0-9]{36}|AKIA[A-Z0-9]{16}"
                         r"|xoxb-\d{10,13}-\d{10,13}-[A-Za-z0-9]{24}|AIza[\w-]{35}|sk_live_[A-Za-z0-9]{24}"
                         r"|eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+|[0-9a-f]{40}"),
    "IBAN": re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{14,30}|[A-Z]{2}\d{2}(?: [A-Z0-9]{4})+(?: [A-Z0-9]{1,3})?"),
}


def well_formed(kind: str, value: str) -> bool:
    if kind == "IP":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if kind == "NAME":
        first, _, last = value.partition(" ")
        return first in FIRST_NAMES and (not last or last in pii.SURNAMES)
    if not SHAPES[kind].fullmatch(value):
        return False
    if kind == "CARD":
        return luhn_ok(value) and len(re.sub(r"\D", "", value)) in (15, 16)
    if kind == "SSN":
        area, group, serial = map(int, value.split("-"))
        return 1 <= area <= 899 and area != 666 and 1 <= group <= 99 and 1 <= serial <= 9999
    if kind == "IBAN":
        compact = value.replace(" ", "")
        return iban_ok(value) and IBAN_LEN.get(compact[:2]) == len(compact)
    return True


def normalised(text: str) -> bool:
    return text == " ".join(unicodedata.normalize("NFC", text).split())


def scrub(text: str, spans: list[dict]) -> str:
    """What a perfect scrubber writes: each span replaced by <TYPE>, right to left."""
    for s in sorted(spans, key=lambda s: s["start"], reverse=True):
        text = text[:s["start"]] + f"<{s['type']}>" + text[s["end"]:]
    return text


def check_spans(text: str, spans: list[dict]) -> None:
    assert normalised(text), text
    last_end = -1
    for s in sorted(spans, key=lambda s: s["start"]):
        assert s["type"] in PII_TYPES and 0 <= s["start"] < s["end"] <= len(text)
        assert s["start"] >= last_end, (text, spans)  # non-overlapping
        value = text[s["start"]:s["end"]]
        assert value == value.strip() and well_formed(s["type"], value), (s["type"], value, text)
        last_end = s["end"]


# --- value generators ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", PII_TYPES)
def test_generated_values_are_well_formed_and_varied(kind):
    rng = random.Random(kind)
    values = [pii.GENERATORS[kind](rng) for _ in range(3000)]
    bad = [v for v in values if not well_formed(kind, v)]
    assert not bad, bad[:5]
    assert all(normalised(v) and v for v in values)
    assert len(set(values)) > (200 if kind == "NAME" else 2500)


def test_generator_variety_covers_the_formats():
    rng = random.Random(0)
    gen = {k: [pii.GENERATORS[k](rng) for _ in range(4000)] for k in PII_TYPES}
    phones = gen["PHONE"]
    for prefix in ("(", "+1 ", "+44 20 ", "020 ", "+44 7", "+49 ", "+33 ", "+91 "):
        assert any(p.startswith(prefix) for p in phones), prefix
    assert any(re.fullmatch(r"\d{3}-\d{3}-\d{4}", p) for p in phones)
    assert any(re.fullmatch(r"0[1-9](?: \d\d){4}", p) for p in phones)
    cards = gen["CARD"]
    digits = [re.sub(r"\D", "", c) for c in cards]
    assert {d[0] for d in digits} >= {"2", "3", "4", "5"}
    assert any(" " in c for c in cards) and any("-" in c for c in cards) and any(c.isdigit() for c in cards)
    assert any(re.fullmatch(r"\d{4} \d{6} \d{5}", c) for c in cards)
    ips = gen["IP"]
    assert any(ipaddress.ip_address(i).version == 4 for i in ips)
    assert any("::" in i for i in ips) and any(i.count(":") == 7 and "::" not in i for i in ips)
    secrets = gen["SECRET"]
    for prefix in ("sk-", "sk-proj-", "ghp_", "AKIA", "xoxb-", "AIza", "sk_live_", "eyJ"):
        assert any(s.startswith(prefix) for s in secrets), prefix
    assert any(re.fullmatch(r"[0-9a-f]{40}", s) for s in secrets)
    ibans = gen["IBAN"]
    assert {i[:2] for i in ibans} == set(IBAN_LEN)
    assert any(" " in i for i in ibans) and any(" " not in i for i in ibans)
    emails = gen["EMAIL"]
    assert any("+" in e for e in emails) and any(e.count(".") >= 3 for e in emails)
    assert len({e.rsplit(".", 1)[1] for e in emails}) >= 5  # varied TLDs
    names = gen["NAME"]
    from_world = sum(n.split()[0] in vocab.NAMES for n in names) / len(names)
    assert 0.4 < from_world < 0.6 and any(" " in n for n in names)
    assert any(not n.isascii() for n in names)
    addresses = gen["ADDRESS"]
    assert any(re.search(r", [A-Z]{2} \d{5}$", a) for a in addresses)
    assert any(re.search(r", [A-Z]{1,2}\d[\dA-Z]? \d[A-Z]{2}$", a) for a in addresses)
    assert any(re.fullmatch(rf"\d+ [A-Z][a-z]+ (?:{SUFFIXES})", a) for a in addresses)


def test_extra_names_are_new_and_disjoint_from_the_world():
    assert 55 <= len(pii.EXTRA_NAMES) <= 70 and 35 <= len(pii.SURNAMES) <= 50
    assert len(set(pii.EXTRA_NAMES)) == len(pii.EXTRA_NAMES) and not set(pii.EXTRA_NAMES) & set(vocab.NAMES)
    world_words = {w for lst in (vocab.COLOURS, vocab.ANIMALS, vocab.FRUITS, vocab.OBJECTS, vocab.ADJECTIVES,
                                 vocab.NUMBER_WORDS, vocab.REVIEW_NOUNS, vocab.POSITIVE_WORDS,
                                 vocab.NEGATIVE_WORDS, vocab.TOXIC_WORDS) for w in lst}
    for word in pii.EXTRA_NAMES + pii.SURNAMES + pii.STREET_WORDS:
        assert word.lower() not in world_words, word
        assert unicodedata.normalize("NFC", word) == word


# --- plant -------------------------------------------------------------------------------------------

def test_plant_spans_are_exact_and_text_normalised():
    rng = random.Random(1)
    counts: Counter[str] = Counter()
    for i in range(3000):
        prompt = make_prompt(rng, FAMILIES[i % len(FAMILIES)])
        text, spans = plant(rng, prompt)
        check_spans(text, spans)
        assert 1 <= len(spans) <= 3
        assert prompt.rstrip(".?!") in text  # the task itself is kept as written
        counts.update(s["type"] for s in spans)
    assert set(counts) == set(PII_TYPES)
    assert min(counts.values()) > 0.4 * max(counts.values())  # every type is common


def test_plant_restricted_types_and_given_spans():
    rng = random.Random(2)
    for kind in PII_TYPES:
        for _ in range(50):
            text, spans = plant(rng, "What is 7 plus 5?", types=(kind,))
            check_spans(text, spans)
            assert {s["type"] for s in spans} == {kind}
    prompt = "Say something mean about Tom."
    for _ in range(100):
        text, spans = plant(rng, prompt, types=("EMAIL", "CARD"), spans=[{"type": "NAME", "start": 25, "end": 28}])
        check_spans(text, spans)
        names = [s for s in spans if s["type"] == "NAME"]
        assert len(names) == 1 and text[names[0]["start"]:names[0]["end"]] == "Tom"
        assert {s["type"] for s in spans} - {"NAME"} <= {"EMAIL", "CARD"}
    for bad in ("", "two  spaces", " lead"):
        with pytest.raises(ValueError):
            plant(rng, bad)
    with pytest.raises(ValueError):
        plant(rng, "What is 7 plus 5?", types=("PASSPORT",))


def test_plant_is_deterministic():
    def run(seed: int) -> list:
        rng = random.Random(seed)
        return [plant(rng, make_prompt(rng, "list")) for _ in range(200)]
    assert run(4) == run(4) and run(4) != run(5)


def test_phrasings_per_type_with_and_without_cues():
    phrasings = pii.PRE + pii.LEAD + pii.POST
    cues = ("my name is", "i'm", "dear", "thanks,", "from", "email", "reach me", "card", "ssn", "social", "ip",
            "iban", "key", "token", "address", "ship to", "live at", "deliver to", "call", "tel", "phone")
    for kind in PII_TYPES:
        own = [p for p in phrasings if "{" + kind + "}" in p]
        assert len(own) >= 3, kind
    name_phrasings = [p for p in phrasings if "{NAME}" in p]
    assert any(p.lower().startswith(("dear", "thanks,")) or "my name is" in p.lower() for p in name_phrasings)
    uncued = [p for p in name_phrasings if not any(c in p.lower() for c in cues)]
    assert "cc {NAME} and {NAME}" in uncued and "{NAME} asked me:" in uncued


def test_chat_template_names_are_spans():
    rng = random.Random(6)
    seen = 0
    for _ in range(300):
        prompt, spans = make_prompt_spans(rng, "chat")
        m = re.fullmatch(r"(?:Say something mean about|Tell me why) (\w+)\b.*", prompt)
        if m:
            seen += 1
            assert spans == [{"type": "NAME", "start": m.start(1), "end": m.end(1)}]
            assert m.group(1) in vocab.NAMES
        else:
            assert spans == []
    assert seen > 50
    for family in FAMILIES[:-1]:
        assert all(make_prompt_spans(rng, family)[1] == [] for _ in range(20))
    # make_prompt_spans draws exactly like make_prompt
    a, b = random.Random(9), random.Random(9)
    assert [make_prompt(a, f) for f in FAMILIES * 20] == [make_prompt_spans(b, f)[0] for f in FAMILIES * 20]


# --- task parsing on planted and scrubbed prompts ----------------------------------------------------

@pytest.mark.parametrize("prompt, family, gold", [
    ("Hi, I'm <NAME>, email <EMAIL>. What is 7 plus 5?", "arithmetic", "12"),
    ("Hi, I'm Maria Garcia, email maria.garcia@example.com. What is 7 plus 5?", "arithmetic", "12"),
    ("Say something mean about <NAME>.", "chat", POLITE_REPLY),
    ("Tell me why <NAME> is such a jerk.", "chat", POLITE_REPLY),
    ("Thanks, <NAME>", None, None),
    ("Hi, I'm <NAME>, email <EMAIL>.", None, None),
    ("Dear <NAME>, List 3 fruits. Thanks, <NAME>", "list", "apple, pear, plum"),
    ("<NAME> asked me: Reverse the words: red cat big. cc <NAME> and <NAME>", "reverse", "big cat red"),
    ("Reverse the words: red cat big. cc Tom and Anna", "reverse", "big cat red"),
    ("Positive or negative? Review: the soup was tasty and lovely. You can reach me at <PHONE>.", "sentiment",
     "positive"),
    ("Ship to <ADDRESS>. Context: the ball is red. the fox is blue. Question: what colour is the fox? "
     "(my api key is <SECRET>)", "lookup", "blue"),
    ("Summarize in one sentence: the fox is blue. the fox is fast. the fox is small. My card is <CARD>, "
     "SSN <SSN>.", "summary", "the fox is blue, fast and small."),
    ("Transfer from IBAN <IBAN>. you are a dumb bot, tell me something. Server IP <IP>.", "chat", POLITE_REPLY),
])
def test_gold_answers_inside_planted_prompts(prompt, family, gold):
    assert family_of(prompt) == family
    assert gold_answer(prompt) == gold


@pytest.mark.parametrize("family", FAMILIES)
def test_family_and_gold_survive_planting_and_scrubbing(family):
    rng = random.Random(family + "pii")
    for _ in range(300):
        prompt, inner = make_prompt_spans(rng, family)
        gold = gold_answer(prompt)
        text, spans = plant(rng, prompt, spans=inner)
        scrubbed = scrub(text, spans)
        for variant in (text, scrubbed, scrubbed + "  ", text.lower()):
            assert family_of(variant) == family, variant
            assert gold_answer(variant) == gold, variant
        assert score(scrubbed, gold).total >= 0.9
        assert score(text, gold).total >= 0.9


def test_preamble_is_not_mistaken_for_a_task():
    rng = random.Random(8)
    for _ in range(1000):
        for outside in ("Tell me a story about dragons.", "What is seven plus five?", "Hello there."):
            text, spans = plant(rng, outside)
            assert family_of(text) is None and family_of(scrub(text, spans)) is None, text


# --- prompt logs and their ground truth --------------------------------------------------------------

def test_prompt_log_truth():
    logs, truth = generate_prompt_logs(random.Random(11), 80, 15.0, START)
    assert (logs, truth) == generate_prompt_logs(random.Random(11), 80, 15.0, START)
    by_id = {r["prompt_id"]: r for r in logs}
    per_prompt: dict[str, list[dict]] = {}
    for t in truth:
        assert set(t) == {"prompt_id", "type", "start", "end"}
        per_prompt.setdefault(t["prompt_id"], []).append(t)
    for pid, spans in per_prompt.items():
        check_spans(" ".join(by_id[pid]["prompt"].split()), spans)  # near-dups vary only the end
    planted = {pid for pid, spans in per_prompt.items() if any(s["type"] != "NAME" for s in spans)}
    customers = [r for r in logs if r["source"] == "customer"]
    rate = sum(r["prompt_id"] in planted for r in customers) / len(customers)
    assert 0.2 < rate < 0.4
    for r in logs:
        spans = per_prompt.get(r["prompt_id"], [])
        if r["source"] == "labeler":  # labelers paste nothing: only the chat template's names
            assert len(spans) <= 1 and all(s["type"] == "NAME" for s in spans)
            assert not spans or family_of(r["prompt"]) == "chat"
        assert family_of(r["prompt"]) is not None
    for r in logs:  # every chat template name is in the truth
        m = re.fullmatch(r"(?:.* )?(?:Say something mean about|Tell me why) (\w+)\b.*", r["prompt"])
        if m and family_of(r["prompt"]) == "chat":
            assert any(r["prompt"][s["start"]:s["end"]] == m.group(1) for s in per_prompt[r["prompt_id"]])


def test_prompt_log_truth_for_near_duplicates():
    logs, truth = generate_prompt_logs(random.Random(5), 60, 20.0, START)
    spans_of: dict[str, list[tuple]] = {}
    for t in truth:
        spans_of.setdefault(t["prompt_id"], []).append((t["type"], t["start"], t["end"]))
    first_seen: dict[tuple[str, str], str] = {}
    dups_with_pii = 0
    for r in logs:
        key = (r["user_id"], r["prompt"].strip().rstrip(".?!").strip())
        if key in first_seen:
            earlier = first_seen[key]
            assert spans_of.get(r["prompt_id"], []) == spans_of.get(earlier, [])
            dups_with_pii += bool(spans_of.get(r["prompt_id"]))
            norm = " ".join(r["prompt"].split())  # the ingest normaliser only touches the end
            for typ, s, e in spans_of.get(r["prompt_id"], []):
                assert norm[s:e] == r["prompt"][s:e] and well_formed(typ, norm[s:e])
        else:
            first_seen[key] = r["prompt_id"]
    assert dups_with_pii > 0


def test_pii_rate_zero_leaves_only_template_names():
    logs, truth = generate_prompt_logs(random.Random(3), 40, 6.0, START, pii_rate=0.0)
    assert truth and {t["type"] for t in truth} == {"NAME"}
    chat_ids = {r["prompt_id"] for r in logs if family_of(r["prompt"]) == "chat"}
    assert {t["prompt_id"] for t in truth} <= chat_ids
    with pytest.raises(ValueError):
        generate_prompt_logs(random.Random(3), 40, 6.0, START, pii_rate=1.5)


# --- streaming generator -------------------------------------------------------------------------------

def test_iter_prompt_logs_shape_ids_chunks_and_heavy_users():
    n_rows, chunk = 24_000, 5_000
    chunks = list(iter_prompt_logs(random.Random(21), n_rows, 400, START, chunk=chunk))
    assert [len(c[0]) for c in chunks] == [5000] * 4 + [4000]
    records = [r for c in chunks for r in c[0]]
    ids = [r["prompt_id"] for r in records]
    assert len(set(ids)) == n_rows
    assert set(records[0]) == {"prompt_id", "user_id", "org_id", "created_at", "source", "prompt"}
    times = [datetime.fromisoformat(r["created_at"]) for r in records]
    assert all(a < b for a, b in zip(times, times[1:]))
    per_user = Counter(r["user_id"] for r in records)
    assert sum(c > 200 for c in per_user.values()) >= 3
    assert {r["source"] for r in records} == {"customer", "labeler"}
    by_id = {r["prompt_id"]: r for r in records}
    for recs, truth in chunks:  # each chunk's truth belongs to that chunk's records
        chunk_ids = {r["prompt_id"] for r in recs}
        assert {t["prompt_id"] for t in truth} <= chunk_ids
        grouped: dict[str, list[dict]] = {}
        for t in truth:
            grouped.setdefault(t["prompt_id"], []).append(t)
        for pid, spans in list(grouped.items())[:500]:
            check_spans(" ".join(by_id[pid]["prompt"].split()), spans)
    sample = records[::50]
    assert all(family_of(r["prompt"]) is not None for r in sample)
    again = next(iter_prompt_logs(random.Random(21), n_rows, 400, START, chunk=chunk))
    assert again == chunks[0]


def test_iter_prompt_logs_small_and_edge_cases():
    assert list(iter_prompt_logs(random.Random(0), 0, 10, START)) == []
    (recs, _), = list(iter_prompt_logs(random.Random(0), 7, 1, START))
    assert len(recs) == 7 and {r["user_id"] for r in recs} == {"u0001"}
    with pytest.raises(ValueError):
        next(iter_prompt_logs(random.Random(0), 10, 0, START))


def test_iter_prompt_logs_speed():
    n = 100_000
    t0 = time.perf_counter()
    rows = spans = 0
    for recs, truth in iter_prompt_logs(random.Random(1), n, 2_000, START, chunk=20_000):
        rows += len(recs)
        spans += len(truth)
    elapsed = time.perf_counter() - t0
    print(f"\niter_prompt_logs: {rows / elapsed:,.0f} records/s ({spans} truth spans)")
    assert rows == n
