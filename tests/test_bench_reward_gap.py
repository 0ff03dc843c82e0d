"""benchmarks/reward_gap.py: its accounting of agreement lost against a perfect gold ranker, a second
labeler, the copy oracle, a likelihood reward model's two parts and their rescaling, its errors on runs it
cannot read, and an end-to-end run on a tiny pipeline folder."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rlhf import comparisons, lm, models, reward, world

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reward_gap.py"
spec = importlib.util.spec_from_file_location("reward_gap", SCRIPT)
gap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gap)

NOISE = 0.2
PAIRS = 13
VAL = pd.DataFrame({
    "prompt_id": ["a", "b", "c", "d"],
    "prompt": ["Write these words in reverse order: lemon blue soft",
               "Summarize in one sentence: the plate is soft. the plate is quiet.",
               "Compute 8 times 18.",
               "Context: the book is red. the banana is teal. Question: what colour is the book?"],
    "responses": [["soft blue lemon", "soft pear lemon", "I can not help with that."],
                  ["the plate is soft and quiet.", "the lunch is soft and quiet.", "the plate is soft and quiet."],
                  ["144", "144. Hope this helps.", "27"],
                  ["red", "teal", "pear", "lemon"]],
    "ranks": [[0, 2, 1], [0, 1, 0], [1, 0, 2], [0, 1, 2, 2]],  # the labeler swapped two close pairs
    "gold_scores": [[1.0, 0.5, 0.4], [1.0, 0.5, 1.0], [1.0, 0.9, 0.4], [1.0, 0.5, 0.4, 0.4]],
})


def test_a_perfect_gold_ranker_loses_nothing_and_an_inverted_one_loses_everything_above_chance():
    ceiling = comparisons.expected_agreement([list(g) for g in VAL.gold_scores], NOISE)
    perfect = gap.agreement_lost(VAL, [list(g) for g in VAL.gold_scores], NOISE)
    assert perfect["pairs"] == 3 + 2 + 3 + 5 == PAIRS  # tied gold (identical summaries, two lookups) is left out
    assert perfect["ceiling"] == pytest.approx(ceiling) and perfect["expected"] == pytest.approx(ceiling)
    assert sum(perfect["lost"].values()) == pytest.approx(0.0)
    inverted = gap.agreement_lost(VAL, [[-x for x in g] for g in VAL.gold_scores], NOISE)
    assert inverted["expected"] == pytest.approx(1 - ceiling)
    assert sum(inverted["lost"].values()) == pytest.approx(inverted["ceiling"] - inverted["expected"])
    # one inverted reverse pair, gold gap 0.5: lost 2 Phi(0.5 / (0.2 sqrt 2)) - 1 of the 13 pairs, filed as sure
    rewards = [[1.0, 2.0, 0.0]] + [list(g) for g in VAL.gold_scores[1:]]
    one = gap.agreement_lost(VAL, rewards, NOISE)
    keep = comparisons.keep_probability(0.5, NOISE)
    assert keep >= gap.SURE and one["lost"] == pytest.approx({"reverse/sure": (2 * keep - 1) / PAIRS, **{
        k: 0.0 for k in one["lost"] if k != "reverse/sure"}})


def test_fresh_labelers_agree_with_the_first_and_with_gold_as_the_closed_form_expects():
    gold = [list(g) for g in VAL.gold_scores]
    out = gap.agreement_lost(VAL, gold, NOISE)
    assert out["second_labeler"] == pytest.approx(comparisons.expected_inter_labeler_agreement(gold, NOISE))
    assert out["second_labeler"] < out["ceiling"]  # two noisy labelers agree less than one agrees with gold
    # against noise-free ranks a fresh labeler agrees as often as a labeler agrees with gold
    exact = VAL.assign(ranks=[comparisons.competition_ranks(g) for g in gold])
    assert gap.fresh_labelers(exact, 0.0, draws=3) == ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    draws, with_gold = gap.fresh_labelers(exact, NOISE, draws=3000)
    assert sum(draws) / len(draws) == pytest.approx(out["ceiling"], abs=0.01)
    assert with_gold == draws  # the val rankings here are gold's, so the two figures coincide draw by draw
    assert draws != gap.fresh_labelers(exact, NOISE, draws=3000, seed=1)[0]  # a seed gives its own draws
    assert (draws, with_gold) == gap.fresh_labelers(exact, NOISE, draws=3000)  # and the same ones again
    # against the noisy val rankings, a fresh labeler's agreement with gold still centres on the ceiling
    _, with_gold = gap.fresh_labelers(VAL, NOISE, draws=3000)
    assert sum(with_gold) / len(with_gold) == pytest.approx(out["ceiling"], abs=0.01)


def test_the_copy_oracle_penalises_content_words_absent_from_the_prompt_on_copy_families_only():
    assert gap.content_words("soft pear lemon") - gap.content_words(VAL.prompt[0]) == {"pear"}
    assert gap.content_words("I can not help with that. Hope this helps.") == set()
    flat = [[0.0] * len(r) for r in VAL.responses]
    gold = [list(g) for g in VAL.gold_scores]
    without = gap.reward.validation_metrics(flat, [list(k) for k in VAL.ranks], gold)
    assert without["rm/val_accuracy_gold"] == 0.0  # all tied: no pair counts as agreeing
    # from equal rewards, only 'pear' (reverse, lookup), 'lunch' (summary) and 'lemon' (lookup) drop:
    # reverse gets 1 pair right, summary 2, lookup 4, arithmetic (not a copy family) none
    out = gap.copy_oracle(VAL, flat, 1.0)
    assert out["rm/val_accuracy_gold"] == pytest.approx(7 / PAIRS)


def test_rescaling_the_likelihood_part_per_family_finds_where_it_helps_and_where_it_hurts():
    gold = [list(g) for g in VAL.gold_scores]
    head = [[0.01 * x for x in g] for g in gold]  # gold's order, faintly
    # the likelihood part: gold's order on reverse and summary, the inverse on arithmetic, flat on lookup
    sign = {"reverse": 1.0, "summary": 1.0, "arithmetic": -1.0, "lookup": 0.0}
    likelihood = [[sign[world.parse_prompt(p)[0]] * x for x in g] for p, g in zip(VAL.prompt, gold)]
    assert gap.rescaled(VAL, head, likelihood, {})[2] == pytest.approx([-0.99, -0.891, -0.396])
    assert gap.rescaled(VAL, head, likelihood, {"arithmetic": 0.0})[2] == head[2]
    assert gap.rescaled(VAL, [[1.0] * len(g) for g in gold], likelihood, {"reverse": 2.0})[0] == [3.0, 2.0, 1.8]
    scales = gap.best_rescale(VAL, head, likelihood, NOISE)
    # arithmetic's inverted order is best dropped, leaving the head's; where nothing beats the reward as
    # given (every scale keeps gold's order on reverse and summary; lookup's part is flat), it stays at 1
    assert scales == {"arithmetic": 0.0, "reverse": 1.0, "summary": 1.0, "lookup": 1.0}
    as_given, best = (gap.agreement_lost(VAL, gap.rescaled(VAL, head, likelihood, s), NOISE)["expected"]
                      for s in ({}, scales))
    assert best > as_given
    # a head that orders arithmetic as strongly as gold does: every scale keeps its order, so 1 stays
    head[2] = [10 * x for x in gold[2]]
    assert gap.best_rescale(VAL, head, likelihood, NOISE)["arithmetic"] == 1.0


def test_a_likelihood_reward_model_splits_into_its_head_and_c_times_the_sft_log_likelihood(tmp_path):
    run = tiny_run(tmp_path)
    rm, tok = reward.load(run / "models" / "rm"), models.load_tokenizer(run / "models" / "rm")
    responses = [list(r) for r in VAL.responses]
    total = reward.group_rewards(rm, tok, list(VAL.prompt), responses)
    head, likelihood = gap.reward_parts(rm, tok, VAL, total)
    assert rm.config.rlhf_likelihood_coef == COEF  # restored after the split
    for t, h, x in zip(total, head, likelihood):
        assert [a + b for a, b in zip(h, x)] == pytest.approx(t)
    # the untrained RM's trunk is the SFT model's: its part is c x the SFT log-likelihood of response + EOS
    sft = models.load_causal_lm(run / "models" / "sft")
    flat = lm.response_logprobs(sft, tok, [p for p, rs in zip(VAL.prompt, responses) for _ in rs],
                                [r for rs in responses for r in rs])
    assert [x for xs in likelihood for x in xs] == pytest.approx([COEF * x for x in flat], abs=1e-4)
    paper = reward.from_sft(run / "models" / "sft")
    paper.config.pad_token_id = tok.pad_token_id
    assert gap.reward_parts(paper, tok, VAL, total) is None


LOOKUPS = ["Context: the book is red. the banana is teal. Question: what colour is the book?",
           "Context: the fig is grey. the cup is teal. the owl is pink. Question: what colour is the owl?",
           "Context: the cat is blue. Question: which colour is the drum?",
           "Compute 8 times 18."]


def test_context_reading_sees_binding_and_presence_in_a_model_that_reads_the_context_and_none_in_one_that_cannot():
    assert [(a, c) for _, a, c in gap.lookup_questions(LOOKUPS)] == [
        ("red", ["red", "teal"]), ("pink", ["grey", "teal", "pink"]), (None, ["blue"])]

    def gold(prompts, responses):  # a judge that reads the context: the gold labeler
        return [world.score(p, r).total for p, r in zip(prompts, responses)]

    def flat(prompts, responses):
        return [0.0] * len(prompts)

    def first_colour(prompts, responses):  # prefers the colours the context names first
        return [-gap.lookup_questions([p])[0][2].index(r) for p, r in zip(prompts, responses)]

    reads = gap.context_reading(LOOKUPS, gold, first_colour)
    assert reads["lookup_prompts"] == 3 and reads["binding_pairs"] == 1 + 2
    assert reads["rm_binding"] == 1.0
    assert reads["sft_binding"] == pytest.approx(1 / 3)  # right only where the answer comes first (the book)
    assert reads["rm_absent_beats_colour_on_absent"] == 1.0 and reads["rm_absent_beats_colour_on_present"] == 0.0
    assert reads["rm_absent_answer_on_absent"] > reads["rm_absent_answer_on_present"]
    blind = gap.context_reading(LOOKUPS, flat, flat)
    assert blind["rm_binding"] == blind["sft_binding"] == 0.5  # ties count half: chance
    assert blind["rm_absent_beats_colour_on_absent"] == blind["rm_absent_beats_colour_on_present"] == 0.5
    assert gap.context_reading(LOOKUPS[3:], gold, gold) == {"lookup_prompts": 0, "binding_pairs": 0}


def test_the_context_blind_ranker_ties_the_colours_of_a_context_and_keeps_every_other_gold_score():
    book = VAL.prompt[3]
    assert [gap.answer_kind(book, r) for r in ("red", "teal.", "silver", "red and teal", "The context does not say.",
                                               "pear")] == ["context", "context", "other", "other", "absent", "none"]
    blind = gap.context_blind(VAL)
    assert blind[:3] == [list(g) for g in VAL.gold_scores[:3]]  # not lookup: gold as it is
    # red (right) and teal (wrong) are both a colour of the context, right half the time: 0.5 x 0.5 + the rest
    assert blind[3] == pytest.approx([0.75, 0.75, 0.4, 0.4])
    out = gap.agreement_lost(VAL, blind, NOISE)
    keep = comparisons.keep_probability(0.5, NOISE)
    assert out["ceiling"] - out["expected"] == pytest.approx(keep / PAIRS)  # the one tied pair, red over teal


def test_a_folder_without_a_finished_run_is_an_error_naming_what_is_missing(tmp_path, run_script):
    code, _, err = run_script(SCRIPT, "--run", tmp_path)
    assert code != 0
    assert "no finished pipeline run" in err and str(tmp_path / "models" / "rm") in err
    code, _, err = run_script(SCRIPT, "--run", tmp_path, "--draws", "0")
    assert code != 0 and "--draws must be at least 1, got 0" in err


COEF = 0.3


def tiny_run(root: Path, labeler_splits: tuple[str, ...] | None = ("train", "val")) -> Path:
    """A pipeline folder with a 1-layer SFT model, an untrained likelihood RM from it (c = COEF),
    comparisons and the labeler's noise."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    texts = [p + " " + r for p, rs in zip(VAL.prompt, VAL.responses) for r in rs] * 10
    tok = models.train_tokenizer(texts, 300)
    torch.manual_seed(0)
    cfg = dict(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2, pad_token_id=tok.pad_token_id,
               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    for name in ("sft", "base"):
        models.save(GPT2LMHeadModel(GPT2Config(**cfg)), tok, root / "models" / name)
    rm = reward.from_sft(root / "models" / "sft", COEF)
    rm.config.pad_token_id = tok.pad_token_id
    models.save(rm, tok, root / "models" / "rm")
    (root / "data" / "comparisons").mkdir(parents=True)
    train = pd.concat([VAL] * 10, ignore_index=True)
    train.to_parquet(root / "data" / "comparisons" / "train.parquet")
    VAL.to_parquet(root / "data" / "comparisons" / "val.parquet")
    if labeler_splits is not None:  # as the comparisons stage writes it; None: every ranking imported
        (root / "data" / "comparisons" / comparisons.LABELER_FILE).write_text(
            json.dumps({"noise": NOISE, "splits": list(labeler_splits)}))
    return root


def test_runs_end_to_end_on_a_tiny_folder_and_prints_its_figures(tmp_path):
    run = tiny_run(tmp_path)
    out = subprocess.run([sys.executable, str(SCRIPT), "--run", str(run), "--probe-prompts", "30", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["val_pairs"] == PAIRS and result["labeler_noise"] == NOISE
    # the labeler swapped two of the gold-ordered pairs (reverse 0.5 / 0.4, arithmetic 1.0 / 0.9)
    assert result["labeler_vs_gold"] == pytest.approx(11 / PAIRS, abs=1e-4)
    assert result["target"] == pytest.approx(11 / PAIRS - 0.05, abs=1e-4)
    assert result["expected_ceiling"] == pytest.approx(
        comparisons.expected_agreement([list(g) for g in VAL.gold_scores], NOISE), abs=1e-4)
    assert sum(result["lost"].values()) == pytest.approx(result["expected_ceiling"] - result["expected_rm"], abs=1e-3)
    assert set(result["oracle"]) == {str(w) for w in gap.ORACLE_WEIGHTS}
    second = result["second_labeler"]
    assert second["draws"] == 20 and 0.0 <= second["min"] <= second["mean"] <= second["max"] <= 1.0
    assert 0 <= second["reach_target"] <= 20
    assert 0.5 < result["expected_second_labeler"] < result["expected_ceiling"]
    assert set(result["probe"]) >= {"layer0", "layer1", "tokens", "majority"}
    for key in ("layer0", "layer1", "majority"):
        assert 0.0 <= result["probe"][key] <= 1.0 and math.isfinite(result["probe"][key])
    assert result["expected_context_blind"] <= result["expected_ceiling"]
    parts = result["parts"]
    assert set(parts["gold_by_family"]) == {"reverse", "summary", "arithmetic", "lookup"}
    for acc in parts["gold_by_family"].values():
        assert set(acc) == {"head", "likelihood", "sum"} and all(0.0 <= a <= 1.0 for a in acc.values())
    assert set(parts["scales"]) == set(parts["gold_by_family"]) and set(parts["scales"].values()) <= set(gap.RESCALES)
    assert parts["copy_weight"] in gap.ORACLE_WEIGHTS
    assert parts["expected_rescaled"] >= result["expected_rm"] - 1e-4  # the scales include the trained reward's 1
    assert parts["expected_rescaled_copy"] <= result["expected_ceiling"] + 1e-4
    reads = result["context_reading"]
    assert reads["lookup_prompts"] == 1 and reads["binding_pairs"] == 1  # the book: red against teal
    assert reads["rm_binding"] in (0.0, 0.5, 1.0) and reads["sft_binding"] in (0.0, 0.5, 1.0)
    # an untrained base model copies nothing: both readings cost about ln(vocab) per token
    vocab = models.load_tokenizer(run / "models" / "base").__len__()
    for reading in ("first", "second"):
        assert result["copying"][reading] == pytest.approx(math.log(vocab), abs=1.0)


@pytest.mark.parametrize("labeler_splits", [None, ("train",)], ids=["all-imported", "val-imported"])
def test_imported_rankings_are_refused(tmp_path, run_script, labeler_splits):
    run = tiny_run(tmp_path, labeler_splits)
    code, _, err = run_script(SCRIPT, "--run", run)
    assert code != 0 and "imported" in err and "val.parquet" in err
