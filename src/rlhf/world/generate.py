"""Generators for the world's pretraining corpus and raw prompt logs."""
from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

from . import vocab as V
from .tasks import FAMILIES, join_words, make_prompt, make_review

HEAVY_USER_MIN = 210  # the one heavy user's floor, above the 200-prompt cap on everyone else
NORMAL_USER_MAX = 200
LABELER_FRACTION = 0.2
DUPLICATE_RATE = 0.03
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
    opinion = rng.choice(V.POSITIVE_WORDS + V.NEGATIVE_WORDS)
    return user + rng.choice((f"has anyone seen the {rng.choice(V.COLOURS)} {rng.choice(V.ANIMALS)}?",
                              f"the {rng.choice(V.REVIEW_NOUNS)} here is {opinion}.",
                              f"i like the {rng.choice(_THINGS)}."))


def _questions(rng: random.Random) -> str:
    # Instructions followed by more instructions, never answers: the base model learns to continue.
    families = [f for f in FAMILIES if f != "chat"]
    return " ".join(make_prompt(rng, rng.choice(families)) for _ in range(rng.randint(1, 3)))


_DOC_LINES = (_describe, _fact, _review, _listing, _forum, _questions)


def generate_corpus(rng: random.Random, n_docs: int) -> list[str]:
    """Pretraining documents of 1-6 lines, each document written in one style."""
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


def generate_prompt_logs(rng: random.Random, n_users: int, prompts_per_user: float,
                         start: datetime) -> list[dict]:
    """Raw prompt-log records in time order (see DESIGN.md section 5).

    Keys: prompt_id, user_id, org_id, created_at (ISO-8601 UTC), source, prompt.
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
    t = start.replace(tzinfo=timezone.utc) if start.tzinfo is None else start.astimezone(timezone.utc)
    history: dict[str, list[str]] = {u: [] for u in users}
    records = []
    for i, user in enumerate(events, start=1):
        if history[user] and rng.random() < DUPLICATE_RATE:
            prompt = _near_duplicate(rng, rng.choice(history[user]))
        else:
            prompt = make_prompt(rng, rng.choice(FAMILIES))
        history[user].append(prompt)
        t += timedelta(seconds=rng.randint(1, 600))
        records.append({"prompt_id": f"p{i:06d}", "user_id": user, "org_id": orgs[user],
                        "created_at": t.isoformat(timespec="seconds"),
                        "source": "labeler" if user in labelers else "customer", "prompt": prompt})
    return records


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
