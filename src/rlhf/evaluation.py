"""Judging policies: gold scores per task family and win rates (ties count half)."""

from __future__ import annotations

import random
from collections import defaultdict

from rlhf import world
from rlhf.models import format_prompt


def gold_scores(prompts: list[str], responses: list[str]) -> list[float]:
    return [world.score(p, r).total for p, r in zip(prompts, responses)]


def by_family(prompts: list[str], scores: list[float]) -> dict[str, float]:
    """Mean score per task family (unrecognised prompts under 'other')."""
    groups: dict[str, list[float]] = defaultdict(list)
    for p, s in zip(prompts, scores):
        groups[world.family_of(p) or "other"].append(s)
    return {f: sum(v) / len(v) for f, v in sorted(groups.items())}


def win_rate(a: list[float], b: list[float]) -> float:
    """Share of prompts where score a beats score b; a tie counts half."""
    if len(a) != len(b) or not a:
        raise ValueError(f"win_rate needs two equal, non-empty score lists, got {len(a)} and {len(b)}")
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)) / len(a)


def few_shot_prefix(k: int, seed: int = 0) -> str:
    """k demonstrations of different task families in the policy template: the paper's
    "GPT-3 (prompted)" baseline puts the base model in instruction-following mode this way."""
    rng = random.Random(seed)
    families = list(world.FAMILIES)
    rng.shuffle(families)
    shots = []
    for family in (families * k)[:k]:
        prompt = world.make_prompt(rng, family)
        shots.append(f"{format_prompt(prompt)} {world.gold_answer(prompt)}\n\n")
    return "".join(shots)
