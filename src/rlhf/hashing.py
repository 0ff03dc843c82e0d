"""Stable salted hashes: the same key always lands in the same place, whatever else arrives."""

from __future__ import annotations

import hashlib


def unit_hash(key: str, salt: str) -> float:
    """A salted hash of `key` mapped to [0, 1)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64


ROLE_SALT = "prompt-role"


def prompt_role_mask(prompt_ids: list[str], start: float, end: float) -> list[bool]:
    """True for the prompts whose stable hash falls in [start, end): the train split is shared out
    between SFT, RM and PPO prompts by disjoint ranges, so no prompt serves two of them and a
    prompt keeps its role as new prompts arrive."""
    return [start <= unit_hash(str(p), ROLE_SALT) < end for p in prompt_ids]
