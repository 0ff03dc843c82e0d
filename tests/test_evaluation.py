"""Judging helpers: win rate with ties, per-family means, the few-shot prefix of the prompted base."""

import pytest

from rlhf import evaluation, world


def test_win_rate_counts_ties_half():
    assert evaluation.win_rate([1.0, 0.5, 0.0, 0.3], [0.0, 0.5, 1.0, 0.3]) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    with pytest.raises(ValueError):
        evaluation.win_rate([1.0], [])


def test_by_family():
    prompts = ["What is 1 plus 2?", "What is 2 plus 2?", "List 3 fruits.", "hello there"]
    assert evaluation.by_family(prompts, [1.0, 0.0, 0.5, 0.2]) == {"arithmetic": 0.5, "list": 0.5, "other": 0.2}


def test_few_shot_prefix_shows_k_solved_examples():
    prefix = evaluation.few_shot_prefix(3, seed=1)
    assert prefix == evaluation.few_shot_prefix(3, seed=1) != evaluation.few_shot_prefix(3, seed=2)
    shots = [s for s in prefix.split("\n\n") if s]
    assert len(shots) == 3
    families = set()
    for shot in shots:
        instruction, response = shot.split("\nResponse: ")
        prompt = instruction.removeprefix("Instruction: ")
        assert response == world.gold_answer(prompt)
        families.add(world.family_of(prompt))
    assert len(families) == 3
