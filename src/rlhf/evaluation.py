"""Judging policies: gold scores per task family and win rates (ties count half)."""

from __future__ import annotations

from collections import defaultdict

from rlhf import world


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
