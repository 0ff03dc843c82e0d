"""K-way comparisons: sample K responses per prompt, rank them with the simulated labeler."""

from __future__ import annotations

import random

import pandas as pd

from rlhf import models
from rlhf.config import ComparisonsConfig
from rlhf.evaluation import gold_scores


def rank(gold: list[float], noise: float, rng: random.Random) -> list[int]:
    """The labeler's rank of each response (0 = best): gold score plus Gaussian noise; exact
    ties after noise are broken by position, so every ranking is total."""
    noisy = [g + rng.gauss(0.0, noise) if noise > 0 else g for g in gold]
    order = sorted(range(len(gold)), key=lambda i: (-noisy[i], i))
    ranks = [0] * len(gold)
    for r, i in enumerate(order):
        ranks[i] = r
    return ranks


def agreement(gold: list[list[float]], ranks: list[list[int]]) -> float | None:
    """Share of pairs with distinct gold scores that the ranking orders like gold does (None
    when no pair has distinct gold scores)."""
    agree = total = 0
    for g, r in zip(gold, ranks):
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if g[i] != g[j]:
                    total += 1
                    agree += (g[i] > g[j]) == (r[i] < r[j])
    return agree / total if total else None


def sample_and_rank(model, tokenizer, prompts: pd.DataFrame, cfg: ComparisonsConfig,
                    rng: random.Random) -> tuple[pd.DataFrame, float | None]:
    texts = list(prompts.prompt)
    flat = models.generate(model, tokenizer, texts, cfg.max_new_tokens, temperature=cfg.temperature,
                           num_return_sequences=cfg.k)
    responses = [flat[i * cfg.k:(i + 1) * cfg.k] for i in range(len(texts))]
    gold = [gold_scores([p] * cfg.k, rs) for p, rs in zip(texts, responses)]
    ranks = [rank(g, cfg.labeler_noise, rng) for g in gold]
    table = pd.DataFrame({"prompt_id": list(prompts.prompt_id), "prompt": texts, "responses": responses,
                          "gold_scores": gold, "ranks": ranks})
    return table, agreement(gold, ranks)
