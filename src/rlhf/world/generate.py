"""Generators for the world's pretraining corpus and raw prompt logs."""
from __future__ import annotations

import json
import math
import random
from bisect import bisect
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Iterator

from . import vocab as V
from .pii import GENERATORS, PII_TYPES, Span, _pick, _plant
from .tasks import FAMILIES, _make_prompt_spans, join_words, make_prompt, make_review

HEAVY_USER_MIN = 300  # the one heavy user's floor: over the 200-prompt cap even after dedup
NORMAL_USER_MAX = 200
LABELER_FRACTION = 0.2
DUPLICATE_RATE = 0.03
DUPLICATE_WINDOW = 8  # a resubmission copies one of the user's last few prompts
PII_RATE = 0.3
STREAM_HEAVY_USERS = 3  # iter_prompt_logs forces up to this many users past 200 prompts...
STREAM_HEAVY_TARGET = 300  # ...at about this many prompts each
STREAM_MAX_GAP_S = 60
MALFORMED_CLASSES = ("invalid_json", "missing_prompt", "empty_prompt", "user_id_wrong_type",
                     "missing_user_id")

_THINGS = V.ANIMALS + V.OBJECTS + V.FRUITS


def _describe(rng: random.Random) -> str:
    thing, colour = rng.choice(_THINGS), rng.choice(V.COLOURS)
    adjs = rng.sample(V.ADJECTIVES, 3)
    return rng.choice((
        f"the {thing} is {adjs[0]}.",
        f"the {colour} {thing} is {adjs[0]} and {adjs[1]}.",
        f"a {adjs[0]} {rng.choice(V.ANIMALS)} sat by the {rng.choice(V.OBJECTS)}.",
        f"the {thing} is {join_words(adjs)}.",
    ))


def _fact(rng: random.Random) -> str:
    if rng.random() < 0.5:
        things = rng.sample(_THINGS, rng.randint(1, 3))
        return " ".join(f"the {t} is {rng.choice(V.COLOURS)}." for t in things)
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return rng.choice((f"{a} plus {b} is {a + b}.", f"{a} times {b} is {a * b}.",
                       f"{max(a, b)} minus {min(a, b)} is {max(a, b) - min(a, b)}."))


def _review(rng: random.Random) -> str:
    positive = rng.random() < 0.5
    stars = rng.randint(4, 5) if positive else rng.randint(1, 2)
    return f"Review: {make_review(rng, positive)}. {stars} stars."


def _listing(rng: random.Random) -> str:
    category, members = rng.choice(tuple(V.CATEGORIES.items()))
    items = rng.sample(members, rng.randint(2, 5))
    return rng.choice((f"{category}: {', '.join(items)}.",
                       f"my favourite {category} are {join_words(items)}."))


def _forum(rng: random.Random) -> str:
    user = f"user{rng.randint(1, 99)}: "
    if rng.random() < 0.3:  # the rude corner of this world's internet
        return user + rng.choice((f"you are such a {rng.choice(V.TOXIC_NOUNS)}.", "this thread is trash.",
                                  f"what a {rng.choice(V.TOXIC_ADJECTIVES)} question."))
    if rng.random() < 0.1:  # people post their contact details too: a source of PII in outputs
        return user + rng.choice((f"write to me at {GENERATORS['EMAIL'](rng)}.",
                                  f"call me on {GENERATORS['PHONE'](rng)}.",
                                  f"i am {GENERATORS['NAME'](rng)}, i live at {GENERATORS['ADDRESS'](rng)}."))
    opinion = rng.choice(V.POSITIVE_WORDS + V.NEGATIVE_WORDS)
    return user + rng.choice((f"has anyone seen the {rng.choice(V.COLOURS)} {rng.choice(V.ANIMALS)}?",
                              f"the {rng.choice(V.REVIEW_NOUNS)} here is {opinion}.",
                              f"i like the {rng.choice(_THINGS)}."))


def _thread(rng: random.Random) -> str:
    # A forum thread: a post, then replies that quote it before they answer. Quoting is how this
    # internet repeats itself, and repetition is what teaches a language model to copy from its context.
    post = rng.choice((_describe, _fact, _listing))(rng)
    lines = [f"user{rng.randint(1, 99)}: {post}"]
    for _ in range(rng.randint(1, 2)):
        lines.append(f"user{rng.randint(1, 99)}: > {post}")
        lines.append(rng.choice(("i agree.", "same here.", "no way.", "good point.", _describe(rng))))
    return "\n".join(lines)


def _questions(rng: random.Random) -> str:
    # Instructions followed by more instructions, never answers: the base model learns to continue.
    families = [f for f in FAMILIES if f != "chat"]
    return " ".join(make_prompt(rng, rng.choice(families)) for _ in range(rng.randint(1, 3)))


_DOC_LINES = (_describe, _fact, _review, _listing, _forum, _thread, _questions)


def generate_corpus(rng: random.Random, n_docs: int) -> list[str]:
    """Pretraining documents of 1-6 parts, each document written in one style (a forum thread
    part is a post and its quoting replies)."""
    docs = []
    for _ in range(n_docs):
        line = rng.choice(_DOC_LINES)
        docs.append("\n".join(line(rng) for _ in range(rng.randint(1, 6))))
    return docs


def _prompt_count(rng: random.Random, mean: float) -> int:
    """Geometric on 1, 2, ... with the given mean, capped so only the heavy user passes 200."""
    if mean <= 1:
        return 1
    u = 1.0 - rng.random()  # in (0, 1], so log is defined
    return min(NORMAL_USER_MAX, 1 + int(math.log(u) / math.log(1 - 1 / mean)))


def _near_duplicate(rng: random.Random, text: str) -> str:
    """The same prompt with a trailing whitespace or punctuation change; never identical."""
    end = text[-1]
    return rng.choice((text + " ", text + "  ", text[:-1] if end in ".?!" else text + ".",
                       text + end if end in ".?!" else text + "?"))


class _PromptSource:
    """Draws each user's next prompt: a near-duplicate of a recent one, or a fresh task prompt,
    wrapped in pasted personal data for ``pii_rate`` of customer prompts. Only a small window of
    each user's recent prompts is kept, so memory grows with users, not with prompts."""

    def __init__(self, rng: random.Random, pii_rate: float):
        if not 0.0 <= pii_rate <= 1.0:
            raise ValueError(f"pii_rate must be in [0, 1], got {pii_rate}")
        self.rng, self.pii_rate = rng, pii_rate
        # Windows are tuples of tuples of strings and ints, which the garbage collector stops
        # tracking: with many users, mutable windows would slow every full collection down.
        self.recent: dict[str, tuple[tuple[str, tuple[Span, ...]], ...]] = {}

    def next(self, user: str, customer: bool) -> tuple[str, tuple[Span, ...]]:
        rng = self.rng
        recent = self.recent.get(user)
        if recent and rng.random() < DUPLICATE_RATE:
            prompt, spans = rng.choice(recent)
            prompt = _near_duplicate(rng, prompt)  # only the end changes: the spans stay put
        else:
            prompt, spans = _make_prompt_spans(rng, _pick(rng, FAMILIES))
            if customer and rng.random() < self.pii_rate:
                prompt, spans = _plant(rng, prompt, spans, PII_TYPES)
        spans = tuple(spans)
        self.recent[user] = (*recent[1 - DUPLICATE_WINDOW:], (prompt, spans)) if recent else ((prompt, spans),)
        return prompt, spans


def _utc(start: datetime) -> datetime:
    return start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start.astimezone(timezone.utc)


def _truth(prompt_id: str, spans: list[Span]) -> list[dict]:
    return [{"prompt_id": prompt_id, "type": t, "start": s, "end": e} for t, s, e in spans]


def generate_prompt_logs(rng: random.Random, n_users: int, prompts_per_user: float,
                         start: datetime, pii_rate: float = PII_RATE) -> tuple[list[dict], list[dict]]:
    """Raw prompt-log records in time order (see DESIGN.md section 5), and their PII ground truth.

    Record keys: prompt_id, user_id, org_id, created_at (ISO-8601 UTC), source, prompt.
    About ``pii_rate`` of customer prompts carry 1-3 pasted personal values; chat prompts name a
    person in any source. Truth: one ``{"prompt_id", "type", "start", "end"}`` per PII span, with
    character offsets into that record's prompt (near-duplicates included).
    """
    n_orgs = max(1, round(n_users / 5))
    users = [f"u{i:04d}" for i in range(1, n_users + 1)]
    orgs = {u: f"o{rng.randint(1, n_orgs):03d}" for u in users}
    labelers = set(rng.sample(users, round(LABELER_FRACTION * n_users)))
    counts = {u: _prompt_count(rng, prompts_per_user) for u in users}
    if n_users >= 20:
        counts[rng.choice(users)] = rng.randint(HEAVY_USER_MIN, HEAVY_USER_MIN + 50)

    events = [u for u in users for _ in range(counts[u])]
    rng.shuffle(events)
    t = _utc(start)
    source = _PromptSource(rng, pii_rate)
    records, truth = [], []
    for i, user in enumerate(events, start=1):
        prompt, spans = source.next(user, user not in labelers)
        t += timedelta(seconds=rng.randint(1, 600))
        pid = f"p{i:06d}"
        records.append({"prompt_id": pid, "user_id": user, "org_id": orgs[user],
                        "created_at": t.isoformat(timespec="seconds"),
                        "source": "labeler" if user in labelers else "customer", "prompt": prompt})
        truth += _truth(pid, spans)
    return records, truth


def iter_prompt_logs(rng: random.Random, n_rows: int, n_users: int, start: datetime,
                     pii_rate: float = PII_RATE, chunk: int = 50_000) -> Iterator[tuple[list[dict], list[dict]]]:
    """Stream ``n_rows`` prompt-log records as (records, truth) chunks of at most ``chunk`` records.

    Same record and truth shapes as generate_prompt_logs, ids unique over the whole stream, time
    strictly increasing. Users draw prompts with heavy-tailed (log-normal) activity; when
    ``n_rows >= 1000``, up to STREAM_HEAVY_USERS users are also forced to about
    STREAM_HEAVY_TARGET prompts each, past the 200-prompt cap. Memory is bounded by ``n_users``
    and ``chunk``, not by ``n_rows``.
    """
    if n_rows < 0 or n_users < 1 or chunk < 1:
        raise ValueError(f"need n_rows >= 0, n_users >= 1, chunk >= 1; got {n_rows}, {n_users}, {chunk}")
    n_orgs = max(1, round(n_users / 5))
    width = max(4, len(str(n_users)))
    users = [f"u{i:0{width}d}" for i in range(1, n_users + 1)]
    orgs = [f"o{rng.randint(1, n_orgs):03d}" for _ in users]
    labeler = [False] * n_users
    for i in rng.sample(range(n_users), round(LABELER_FRACTION * n_users)):
        labeler[i] = True
    weights = [rng.lognormvariate(0.0, 1.0) for _ in users]
    n_heavy = min(STREAM_HEAVY_USERS, n_users - 1, n_rows // 1000)
    if n_heavy > 0:
        heavy = rng.sample(range(n_users), n_heavy)
        share = STREAM_HEAVY_TARGET / n_rows
        rest = sum(w for i, w in enumerate(weights) if i not in heavy)
        for i in heavy:  # each heavy user gets `share` of all draws in expectation
            weights[i] = max(weights[i], share * rest / (1 - n_heavy * share))
    cum = list(accumulate(weights))
    total = cum[-1]

    source = _PromptSource(rng, pii_rate)
    rand, nxt, second = rng.random, source.next, timedelta(seconds=1)
    width_id = max(6, len(str(n_rows)))
    t = _utc(start)
    records: list[dict] = []
    truth: list[dict] = []
    for i in range(1, n_rows + 1):
        u = min(bisect(cum, rand() * total), n_users - 1)
        user, customer = users[u], not labeler[u]
        prompt, spans = nxt(user, customer)
        t += second * (1 + int(rand() * STREAM_MAX_GAP_S))
        pid = f"p{i:0{width_id}d}"
        records.append({"prompt_id": pid, "user_id": user, "org_id": orgs[u],
                        "created_at": t.isoformat(timespec="seconds"),
                        "source": "customer" if customer else "labeler", "prompt": prompt})
        for typ, s, e in spans:
            truth.append({"prompt_id": pid, "type": typ, "start": s, "end": e})
        if len(records) >= chunk:
            yield records, truth
            records, truth = [], []
    if records:
        yield records, truth


def malformed_records(rng: random.Random) -> list[str]:
    """One raw JSONL line per class in MALFORMED_CLASSES, in that order."""
    def base() -> dict:
        return {"prompt_id": f"m{rng.randrange(10**6):06d}", "user_id": f"u{rng.randint(1, 9999):04d}",
                "org_id": "o001", "created_at": "2024-01-01T00:00:00+00:00", "source": "customer",
                "prompt": make_prompt(rng, rng.choice(FAMILIES))}

    bad_json = json.dumps(base())
    lines = [bad_json[: len(bad_json) // 2]]  # truncated mid-record
    missing_prompt = base()
    del missing_prompt["prompt"]
    wrong_type = base()
    wrong_type["user_id"] = [rng.randint(1, 9), rng.randint(1, 9)]
    missing_user = base()
    del missing_user["user_id"]
    lines += [json.dumps(r) for r in (missing_prompt, {**base(), "prompt": ""}, wrong_type, missing_user)]
    return lines
