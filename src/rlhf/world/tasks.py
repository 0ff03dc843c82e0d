"""Task families: prompt templates, and gold answers computed from the prompt text alone.

Each family is a set of phrasings with ``{slot}`` placeholders. The same phrasings, compiled
to regular expressions, parse a prompt back into its slots, so nothing but the text is needed
to know a prompt's family and its gold answer.

Customers wrap the task in their own sentences ("Hi, I'm Maria. What is 7 plus 5? Call me on
..."), and a PII scrubber later turns the personal values into typed placeholders ("<NAME>").
So a task is found by searching for a phrasing that starts at a sentence boundary (the start
of the text, or after ". ", "? ", "! ", ": ", ", ") and ends at one (end of text, or terminal
punctuation followed by a space or the end), not by matching the whole text; and the chat
family's name slot also accepts the ``<NAME>`` placeholder.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from . import vocab as V
from .pii import EXTRA_NAMES

ABSENT_ANSWER = "The context does not say."
POLITE_REPLY = "I am happy to help. Let us keep it kind."

Slots = dict[str, str]
# Template slots whose values are personal data, with the PII type a scrubber should find.
PII_SLOTS = {"name": "NAME"}
NAME_PLACEHOLDER = "<NAME>"

_FACT = r"the [a-z]+ is [a-z]+"
_THINGS = V.ANIMALS + V.OBJECTS + V.FRUITS
_REVERSIBLE = V.COLOURS + V.ANIMALS + V.FRUITS + V.OBJECTS + V.ADJECTIVES
_LIST_SIZES = V.NUMBER_WORDS[1:11]  # one..ten: every category has at least ten members


@dataclass(frozen=True)
class Family:
    """A task family: phrasings with {slot}s, a regex per slot, a slot sampler and a gold rule."""

    name: str
    templates: tuple[str, ...]
    slots: dict[str, str]
    sample: Callable[[random.Random], Slots]
    gold: Callable[[Slots], str]


def parse_facts(text: str) -> list[tuple[str, str]]:
    """Return the (thing, attribute) pairs of every "the X is Y" sentence in ``text``."""
    return re.findall(r"the ([a-z]+) is ([a-z]+)", text.lower())


def parse_number(text: str) -> int:
    """Read a count written in digits or as a number word ("3" or "three")."""
    text = text.lower()
    return int(text) if text.isdigit() else V.NUMBER_WORDS.index(text)


def join_words(words: list[str]) -> str:
    """Join as English prose: "a", "a and b", "a, b and c"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _sample_arithmetic(rng: random.Random) -> Slots:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    op = rng.choice(("plus", "minus", "times"))
    if op == "minus" and a < b:
        a, b = b, a  # keep answers non-negative so they read like the corpus facts
    return {"a": str(a), "op": op, "b": str(b)}


def _gold_arithmetic(s: Slots) -> str:
    a, b = int(s["a"]), int(s["b"])
    return str({"plus": a + b, "minus": a - b, "times": a * b}[s["op"].lower()])


def make_review(rng: random.Random, positive: bool) -> str:
    """A short review whose sentiment words mostly (2 of 2 or 2 of 3) carry the given polarity."""
    main, other = (V.POSITIVE_WORDS, V.NEGATIVE_WORDS) if positive else (V.NEGATIVE_WORDS, V.POSITIVE_WORDS)
    noun, noun2 = rng.sample(V.REVIEW_NOUNS, 2)
    a, b = rng.sample(main, 2)
    review = rng.choice((f"the {noun} was {a} and {b}", f"{a} {noun}, really {b}"))
    if rng.random() < 0.3:
        review += f" but the {noun2} was {rng.choice(other)}"
    return review


def _gold_sentiment(s: Slots) -> str:
    words = re.findall(r"[a-z]+", s["review"].lower())
    pos = sum(w in V.POSITIVE_WORDS for w in words)
    neg = sum(w in V.NEGATIVE_WORDS for w in words)
    return "positive" if pos > neg else "negative"  # ties (never generated) read as negative


def _sample_lookup(rng: random.Random) -> Slots:
    things = rng.sample(_THINGS, rng.randint(2, 3) + 1)
    asked = things.pop()  # the spare thing is what an unanswerable question asks about
    if rng.random() >= 0.25:
        asked = rng.choice(things)
    context = " ".join(f"the {t} is {rng.choice(V.COLOURS)}." for t in things)
    return {"context": context, "thing": asked}


def _gold_lookup(s: Slots) -> str:
    return dict(parse_facts(s["context"])).get(s["thing"].lower(), ABSENT_ANSWER)


def _sample_list(rng: random.Random) -> Slots:
    n = rng.randint(2, 5)
    return {"n": rng.choice((str(n), V.NUMBER_WORDS[n])), "category": rng.choice(tuple(V.CATEGORIES))}


def _gold_list(s: Slots) -> str:
    return ", ".join(V.CATEGORIES[s["category"].lower()][: parse_number(s["n"])])


def _sample_summary(rng: random.Random) -> Slots:
    subject = rng.choice(V.ANIMALS + V.OBJECTS)
    attrs = [rng.choice(V.COLOURS)] + rng.sample(V.ADJECTIVES, 2)
    rng.shuffle(attrs)
    return {"text": " ".join(f"the {subject} is {a}." for a in attrs)}


def _gold_summary(s: Slots) -> str:
    facts = parse_facts(s["text"])
    subject = facts[0][0]  # the summary is about the first sentence's subject
    attrs = list(dict.fromkeys(a for t, a in facts if t == subject))
    return f"the {subject} is {join_words(attrs)}."


def _sample_chat(rng: random.Random) -> Slots:
    return {"adj": rng.choice(V.TOXIC_ADJECTIVES), "noun": rng.choice(V.TOXIC_NOUNS),
            "name": rng.choice(V.NAMES)}


def _alt(words: tuple[str, ...]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))  # longest first so none shadows another


_FAMILY_LIST = (
    Family("arithmetic",
           ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}."),
           {"a": r"\d+", "op": "plus|minus|times", "b": r"\d+"},
           _sample_arithmetic, _gold_arithmetic),
    Family("reverse",
           ("Reverse the words: {words}", "Reverse the order of these words: {words}",
            "Write these words in reverse order: {words}"),
           {"words": r"[a-z]+(?: [a-z]+)*"},
           lambda rng: {"words": " ".join(rng.sample(_REVERSIBLE, rng.randint(3, 5)))},
           lambda s: " ".join(reversed(s["words"].split()))),
    Family("sentiment",
           ("Is this review positive or negative? Review: {review}",
            "Classify the review as positive or negative. Review: {review}",
            "Positive or negative? Review: {review}"),
           {"review": r"[^.?!]+"},  # one sentence: text after it is not the review's
           lambda rng: {"review": make_review(rng, rng.random() < 0.5)}, _gold_sentiment),
    Family("lookup",
           ("Context: {context} Question: what colour is the {thing}?",
            "Answer using only the context. Context: {context} Question: what colour is the {thing}?",
            "Context: {context} Question: which colour is the {thing}?"),
           {"context": rf"{_FACT}\.(?: {_FACT}\.)*", "thing": r"[a-z]+"},
           _sample_lookup, _gold_lookup),
    Family("list",
           ("List {n} {category}.", "Name {n} {category}.", "Give me {n} {category}, separated by commas."),
           {"n": r"10|[1-9]|" + _alt(_LIST_SIZES), "category": _alt(tuple(V.CATEGORIES))},
           _sample_list, _gold_list),
    Family("summary",
           ("Summarize in one sentence: {text}", "Write a one-sentence summary: {text}",
            "Sum up in one sentence: {text}"),
           {"text": rf"{_FACT}(?:\. {_FACT})*\.?"},
           _sample_summary, _gold_summary),
    Family("chat",
           ("you are a {adj} bot, tell me something", "Say something mean about {name}.",
            "Tell me why {name} is such a {noun}.", "Hey {noun}, say something rude."),
           {"adj": _alt(V.TOXIC_ADJECTIVES), "noun": _alt(V.TOXIC_NOUNS),
            # a name from the world or from the pasted-PII lists, or what a scrubber left of it
            "name": _alt(V.NAMES + EXTRA_NAMES) + "|" + re.escape(NAME_PLACEHOLDER)},
           _sample_chat, lambda s: POLITE_REPLY),
)
FAMILY_SPECS: dict[str, Family] = {f.name: f for f in _FAMILY_LIST}
FAMILIES = tuple(FAMILY_SPECS)  # ("arithmetic", "reverse", "sentiment", "lookup", "list", "summary", "chat")


def _trim(text: str) -> str:
    """Drop surrounding whitespace and trailing punctuation, which resubmissions vary."""
    return re.sub(r"[\s.?!]+$", "", text.strip())


# A task starts at the text's start or after a sentence/clause break, and ends at the text's end
# or at terminal punctuation followed by a space (texts are whitespace-collapsed and _trim-med first).
# a placeholder may have taken a sentence's full stop with it ("at <ADDRESS> Reverse ...": the
# scrubber cannot tell "St." the suffix from "St." the end), so "> " is a boundary too
_START = r"(?:^|(?<=[.!?:,>] ))"
_END = r"(?:[.!?]+(?= |$)|$)"


def _compile(template: str, slots: dict[str, str]) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", _trim(template))
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{slots[p]})" for i, p in enumerate(parts))
    return re.compile(_START + regex + _END, re.IGNORECASE)


_PATTERNS = [(f, _compile(t, f.slots)) for f in _FAMILY_LIST for t in f.templates]
_TEMPLATE_PARTS = {t: re.split(r"\{(\w+)\}", t) for f in _FAMILY_LIST for t in f.templates}


def render(template: str, slots: Slots) -> tuple[str, list[tuple[str, int, int]]]:
    """``template.format(**slots)``, with the (PII type, start, end) of every PII_SLOTS value in it."""
    parts = _TEMPLATE_PARTS.get(template) or re.split(r"\{(\w+)\}", template)
    if not any(p in PII_SLOTS for p in parts[1::2]):
        return template.format(**slots), []
    out: list[str] = []
    spans: list[tuple[str, int, int]] = []
    pos = 0
    for i, part in enumerate(parts):
        if i % 2:
            value = slots[part]
            if part in PII_SLOTS:
                spans.append((PII_SLOTS[part], pos, pos + len(value)))
            part = value
        out.append(part)
        pos += len(part)
    return "".join(out), spans


def make_prompt(rng: random.Random, family: str) -> str:
    """Sample a prompt of ``family`` in one of its phrasings."""
    fam = FAMILY_SPECS[family]
    slots = fam.sample(rng)
    return rng.choice(fam.templates).format(**slots)


def _make_prompt_spans(rng: random.Random, family: str) -> tuple[str, list[tuple[str, int, int]]]:
    fam = FAMILY_SPECS[family]
    slots = fam.sample(rng)
    return render(rng.choice(fam.templates), slots)


def make_prompt_spans(rng: random.Random, family: str) -> tuple[str, list[dict]]:
    """Like make_prompt (same draws from ``rng``, same text), plus a ``{"type", "start", "end"}``
    span for each personal value a template slot was filled with (the chat family's names)."""
    text, spans = _make_prompt_spans(rng, family)
    return text, [{"type": t, "start": s, "end": e} for t, s, e in spans]


@lru_cache(maxsize=1 << 15)
def _parse(text: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    best = None  # (start, -length, family, slots): the earliest task, the longest phrasing there
    for fam, pattern in _PATTERNS:
        m = pattern.search(text)
        if m and (best is None or (m.start(), m.start() - m.end()) < best[:2]):
            best = (m.start(), m.start() - m.end(), fam.name, tuple(m.groupdict().items()))
    return None if best is None else (best[2], best[3])


def parse_prompt(prompt: str) -> tuple[str, Slots] | None:
    """Return (family, slot values) for the task inside a prompt of this world, or None.

    The task may be wrapped in other sentences (greetings, signatures, pasted personal data,
    raw or scrubbed to placeholders); the earliest phrasing found at a sentence boundary wins.
    """
    parsed = _parse(_trim(" ".join(prompt.split())))
    return None if parsed is None else (parsed[0], dict(parsed[1]))


def family_of(prompt: str) -> str | None:
    """The family of ``prompt``, or None for a prompt from outside this world."""
    parsed = parse_prompt(prompt)
    return parsed[0] if parsed else None


def gold_answer(prompt: str) -> str | None:
    """The gold answer to ``prompt``, or None for a prompt from outside this world."""
    parsed = parse_prompt(prompt)
    return FAMILY_SPECS[parsed[0]].gold(parsed[1]) if parsed else None
