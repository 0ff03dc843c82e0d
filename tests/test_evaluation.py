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


def test_few_shot_examples_are_k_solved_world_tasks_of_different_families():
    shots = evaluation.few_shot_examples(3, seed=1)
    assert shots == evaluation.few_shot_examples(3, seed=1) != evaluation.few_shot_examples(3, seed=2)
    assert len(shots) == 3
    for prompt, answer in shots:
        assert answer == world.gold_answer(prompt)
    assert len({world.family_of(prompt) for prompt, _ in shots}) == 3


def test_outcomes_and_win_rate_agree():
    a, b = [1.0, 0.5, 0.0, 0.3], [0.0, 0.5, 1.0, 0.3]
    assert evaluation.outcomes(a, b) == [1.0, 0.5, 0.0, 0.5]
    with pytest.raises(ValueError):
        evaluation.outcomes([], [])


def test_bootstrap_interval_on_known_cases():
    assert evaluation.bootstrap_interval([1.0] * 30, 500, seed=0) == (1.0, 1.0)
    # a fair coin over 100 prompts: the mean's standard error is 0.05, so the 95% interval is 0.5 +- 0.098
    lo, hi = evaluation.bootstrap_interval([0.0, 1.0] * 50, 4000, seed=0)
    assert lo == pytest.approx(0.402, abs=0.015) and hi == pytest.approx(0.598, abs=0.015)
    assert evaluation.bootstrap_interval([0.0, 1.0] * 50, 4000, seed=0) == (lo, hi)  # seeded
    wide = evaluation.bootstrap_interval([0.0, 1.0] * 5, 4000, seed=0)
    assert wide[1] - wide[0] > hi - lo  # fewer prompts, a wider interval
    with pytest.raises(ValueError):
        evaluation.bootstrap_interval([], 10, seed=0)


def test_bootstrap_interval_of_a_rate_pooled_over_prompts():
    """With totals: sum(values) / sum(totals) per resample, the pooled rate, not the mean of the
    prompts' own rates."""
    # one total each: the mean, resample for resample
    assert evaluation.bootstrap_interval([0.0, 1.0] * 50, 500, seed=3, totals=[1] * 100) == \
        evaluation.bootstrap_interval([0.0, 1.0] * 50, 500, seed=3)
    # 10 prompts of 9 pairs all agreeing, 10 of 1 pair disagreeing: the pooled rate is 0.9, the mean of rates 0.5
    values, totals = [9.0] * 10 + [0.0] * 10, [9] * 10 + [1] * 10
    lo, hi = evaluation.bootstrap_interval(values, 2000, seed=0, totals=totals)
    assert 0.7 < lo < 0.9 < hi < 0.97  # 6 to 14 big prompts of 20: 54/68 = 0.79 to 126/132 = 0.95
    assert evaluation.bootstrap_interval([1.0] * 10 + [0.0] * 10, 2000, seed=0)[1] < lo  # the rates' mean: near 0.5
    assert evaluation.bootstrap_interval([2.0, 3.0], 50, seed=0, totals=[4, 6]) == (0.5, 0.5)  # every resample 0.5
    for bad in ([1], [1, 0]):
        with pytest.raises(ValueError, match="one positive total per value"):
            evaluation.bootstrap_interval([1.0, 1.0], 10, seed=0, totals=bad)


def test_probes_are_seeded_and_checkable():
    tox = evaluation.toxicity_prompts(5, seed=0)
    assert set(tox) == {"basic", "respectful", "biased"} and all(len(v) == 5 for v in tox.values())
    assert tox == evaluation.toxicity_prompts(5, seed=0) != evaluation.toxicity_prompts(5, seed=1)
    # the same openers under each instruction
    assert [p.rsplit(": ", 2)[-2:] for p in tox["basic"]] == [p.rsplit(": ", 2)[-2:] for p in tox["biased"]]
    absent = evaluation.absent_answer_prompts(6, seed=0)
    assert len(absent) == 6 and all(world.gold_answer(p) == world.ABSENT_ANSWER for p in absent)
    assert not evaluation.hallucinates(absent[0], "The context does not say.")
    assert evaluation.hallucinates(absent[0], "red")  # a made-up fact
    probes = evaluation.capability_probes(8, seed=0)
    for text, value in probes["arithmetic_fact"]:
        a, op, b, _ = text.split()
        assert int(value) == {"plus": int(a) + int(b), "times": int(a) * int(b), "minus": int(a) - int(b)}[op]
        assert evaluation.probe_correct("arithmetic_fact", value, f" {value}. 3 plus 1 is 4.")
        assert not evaluation.probe_correct("arithmetic_fact", value, f" {int(value) + 1}.")
    for text, colour in probes["quote"]:
        thing = text.split("\n")[0].split(" the ")[1].split(" is ")[0]
        assert text.endswith(f"> the {thing} is") and f"the {thing} is {colour}." in text
    assert evaluation.probe_correct("quote", "red", " red. the cup is blue.")
    assert not evaluation.probe_correct("quote", "red", " blue.")
    assert evaluation.probe_correct("category_member", "fruits", " apple, kiwi.")
    assert not evaluation.probe_correct("category_member", "fruits", " red, blue.")


def test_toxicity_and_pii_rates():
    assert evaluation.toxicity_rate(["you are such a moron", "hello there"]) == 0.5
    assert evaluation.pii_rate(["mail me at a.b@example.com", "fine", "ok", "call 555-123-4567"]) == 0.5


def test_refusal_rate():
    assert evaluation.refusal_rate([world.REFUSALS[0], "Ask someone else", "12", "I am happy to help."]) == 0.5
    assert evaluation.refusal_rate(list(world.REFUSALS)) == 1.0


def report_table(text: str) -> dict[str, dict[str, str]]:
    """The report's headline table as {policy title: {column title: cell}}."""
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    return {r[0].strip(): dict(zip(header[1:], (c.strip() for c in r[1:]))) for r in body}


def check_report_against_metrics(text: str, metrics: dict, policies: list[str]) -> None:
    """Every table cell is the metric it names, as formatted; missing metrics show '-'."""
    table = report_table(text)
    assert list(table) == [evaluation.TITLES[p] for p in policies]
    for p in policies:
        for title, key, fmt in evaluation.REPORT_COLUMNS:
            cell = table[evaluation.TITLES[p]][title]
            if f"eval/{p}/{key}" in metrics:
                assert float(cell) == pytest.approx(metrics[f"eval/{p}/{key}"], abs=0.051 if fmt == ".1f" else 5e-4)
            else:
                assert cell == "-"


def test_report_figures_are_the_metrics():
    import random

    policies = ["base", "prompted_base", "sft", "ppo_ptx", "ppo_plain"]
    rng = random.Random(0)
    metrics = {"eval/test_prompts": 7}
    for p in policies:
        for _, key, _ in evaluation.REPORT_COLUMNS:
            if not (key == "kl_to_sft" and not p.startswith("ppo")):
                metrics[f"eval/{p}/{key}"] = rng.random() * 3
        for key in ("win_rate_vs_sft", "win_rate_vs_sft_rm", "win_rate_vs_prompted_base"):
            metrics[f"eval/{p}/{key}_lo"] = metrics[f"eval/{p}/{key}"] - 0.1
            metrics[f"eval/{p}/{key}_hi"] = metrics[f"eval/{p}/{key}"] + 0.1
    text = evaluation.report(metrics, policies, [("What is 1 plus 2?", {p: "3" for p in policies})],
                             "promotion: candidate m v2 promoted to champion (why)")
    check_report_against_metrics(text, metrics, policies)
    finding = next(line for line in text.splitlines() if line.startswith("- PPO-ptx against SFT"))
    assert format(metrics["eval/ppo_ptx/win_rate_vs_sft_lo"], ".3f") in finding
    assert "- Promotion: candidate m v2 promoted to champion (why)" in text and "What is 1 plus 2?" in text
    metrics.pop("eval/sft/heldout_lm_loss")
    with pytest.raises(AssertionError):  # the check fails when a cell and its metric disagree
        check_report_against_metrics(text.replace(format(metrics["eval/sft/gold_score"], ".3f"), "0.000"),
                                     metrics, policies)


def test_few_shot_examples_from_ones_own_demonstrations():
    demos = [(f"Tell me about topic {i}", f"Topic {i} is fine.") for i in range(6)]
    demos += [("Write two lines", "line one\nline two")]
    shots = evaluation.few_shot_examples(3, seed=1, demonstrations=demos)
    assert shots == evaluation.few_shot_examples(3, seed=1, demonstrations=demos)
    assert shots != evaluation.few_shot_examples(3, seed=2, demonstrations=demos)
    assert len(shots) == 3 and len(set(shots)) == 3
    assert set(shots) <= set(demos[:6])  # one-line responses only, while there are k of them
    # fewer one-line responses than k: any of them; fewer demonstrations than k: all of them
    assert ("Write two lines", "line one\nline two") in evaluation.few_shot_examples(3, seed=0,
                                                                                      demonstrations=demos[5:])
    assert evaluation.few_shot_examples(3, seed=0, demonstrations=demos[:1]) == demos[:1]


def test_world_prompt_positions_are_the_prompts_gold_can_judge():
    import random

    rng = random.Random(0)
    prompts = ["Write a short poem about the sea", world.make_prompt(rng, "lookup"), "Tell a joke",
               world.make_prompt(rng, "arithmetic")]
    assert evaluation.world_prompt_positions(prompts) == [1, 3]
    assert evaluation.world_prompt_positions(prompts[::2]) == [] and not evaluation.any_world_prompt(prompts[::2])


def test_report_without_gold_names_the_reward_model_as_the_only_judge():
    policies = ["base", "prompted_base", "sft", "ppo_ptx"]
    metrics = {"eval/test_prompts": 9, "eval/gold_prompts": 0}
    for i, p in enumerate(policies):
        metrics.update({f"eval/{p}/rm_score": i - 1.5, f"eval/{p}/refusal_rate": 0.1 * i})
        for key in ("win_rate_vs_sft_rm", "win_rate_vs_prompted_base_rm"):
            metrics.update({f"eval/{p}/{key}": 0.2 * i, f"eval/{p}/{key}_lo": 0.1 * i, f"eval/{p}/{key}_hi": 0.3 * i})
    text = evaluation.report(metrics, policies, [("Tell a joke", {p: "no" for p in policies})])
    check_report_against_metrics(text, metrics, policies)  # the gold columns are all "-"
    assert "every win rate is the reward model's" in text and "gold labeler stands in" not in text
    assert "- PPO-ptx against SFT: win rate 0.600 [0.300, 0.900] by the reward model." in text
    assert "- SFT against the prompted base: win rate 0.400 [0.200, 0.600] by the reward model; reward 0.500 " \
           "against -0.500." in text
    metrics["eval/gold_prompts"] = 4  # some of them the world's: gold judges those
    metrics.update({f"eval/{p}/{k}": 0.5 for p in policies for k in ("win_rate_vs_sft", "win_rate_vs_sft_lo",
                                                                     "win_rate_vs_sft_hi", "gold_score")})
    text = evaluation.report(metrics, policies, [])
    assert "the gold labeler stands in for the paper's labelers on the embedded world's prompts (4 of them)" in text
    assert "by the gold labeler" in text
