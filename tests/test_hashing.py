"""Stable hashes: prompt roles are disjoint, stable and in proportion."""

from rlhf.hashing import prompt_role_mask, unit_hash
from rlhf.ingest import split_of


def test_unit_hash_is_stable_salted_and_in_range():
    assert unit_hash("a", "s") == unit_hash("a", "s") != unit_hash("a", "t")
    assert all(0 <= unit_hash(str(i), "s") < 1 for i in range(1000))


def test_prompt_roles_are_disjoint_cover_everything_and_keep_their_share():
    ids = [f"prompt-{i}" for i in range(4000)]
    sft, rm, ppo = (prompt_role_mask(ids, a, b) for a, b in ((0, 0.5), (0.5, 0.75), (0.75, 1.0)))
    assert all(sum(roles) == 1 for roles in zip(sft, rm, ppo))  # each prompt has exactly one role
    assert abs(sum(sft) / 4000 - 0.5) < 0.03 and abs(sum(rm) / 4000 - 0.25) < 0.03
    # a prompt keeps its role when others arrive
    assert prompt_role_mask(ids[:10], 0, 0.5) == sft[:10]


def test_user_split_is_unchanged_by_the_shared_hash():
    # ingest's user split reads the same hash: the split of a user never changes with a refactor
    assert [split_of(f"u{i}", "instructgpt-v1", 0.1, 0.1) for i in range(8)] == [
        "train" if unit_hash(f"u{i}", "instructgpt-v1") >= 0.2 else
        "test" if unit_hash(f"u{i}", "instructgpt-v1") < 0.1 else "val" for i in range(8)]
