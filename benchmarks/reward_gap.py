"""Where the reward model loses agreement with the simulated labeler, on a finished pipeline run.

    python benchmarks/reward_gap.py [--run DIR] [--probe-prompts 300]

DIR is a project folder after `make run` (default: this repo) or the `repo` folder that
`python benchmarks/pipeline.py --keep DIR` leaves. It reads models/rm, models/sft,
data/comparisons/{train,val}.parquet and the labeler's noise std from data/comparisons/labeler.json
(what the comparisons stage writes beside the rankings, as the reward_model stage reads it), so it
needs val rankings from the embedded world's labeler, and it trains nothing. It prints:

1. The RM's accuracy against gold and against the labeler's val rankings, the labeler's own
   agreement with gold (what a perfect gold ranker scores against the labeler) and issue 5's target,
   that agreement minus 0.05. Beside them, the paper's yardstick: a second labeler as noisy as the
   first, ranking the same val samples, and how often it agrees with the first labeler's ranks
   (expected: the mean of l^2 + (1 - l)^2 over the pairs, l as in 2; and realized over --draws
   seeded draws). The paper compares its RM's accuracy on held-out labelers with how often labelers
   agree with each other. The same draws give the labeler's own agreement with gold draw by draw:
   how far the target moves with the noise alone.
2. Agreement lost per task family. A pair whose gold scores differ by d keeps its gold order in the
   labeler's ranking with probability l = Phi(d / (sigma sqrt 2)), so a ranker that inverts it loses
   2l - 1 of expected agreement against a perfect gold ranker (l when it ties the pair). Summed per
   family over all val pairs: the RM's shortfall from the ceiling, split where the labeler is sure
   (l >= 0.9) and where it is not.
3. A copy oracle: the RM's reward minus b per content word of the world (its colours, animals,
   fruits, objects, adjectives, review nouns) in the response but not in the prompt, on the families
   whose answers take their words from the prompt (reverse, summary, lookup): what the RM would score
   if it could make that one check.
4. A probe of the SFT trunk the RM starts from: logistic regression, per layer, from a response
   token's hidden state to "this token occurs in the prompt", on tokens whose in-prompt rate is
   between 0.15 and 0.85 (so that the token alone does not decide), with train and test split by
   prompt; layer 0 (the embeddings) is the baseline.
5. Whether the models read the context of a lookup question (closed QA), the family that loses
   the most agreement. Binding: on questions whose context holds the answer, how often the RM
   scores the right colour above another colour of the same context, both written as the answer
   alone, and how often the SFT policy gives it the higher likelihood. Presence: the RM's mean
   reward for "The context does not say." where the context lacks the answer and where it holds
   it, and how often that beats a colour answer (a colour the context names on the former, the
   right one on the latter): a model that reads the context ranks it first on the former and
   last on the latter. Ties count half; 0.5 is chance. A context-blind ranker: gold scores, except
   that a lookup response's correctness is replaced by the mean correctness of the val lookup
   responses of its kind (one colour of the context, other attributes, the absent answer,
   nothing); its expected agreement with the labeler says how much of issue 5's 0.05 allowance a
   reward model that cannot read the context loses on lookup even when it is right about all
   else. Copying: the base model's mean loss on a seeded random run of the world's words read a
   first and a second time in one sequence (an induction head makes the second reading cheap).
6. A likelihood reward model's two parts (`reward_model.likelihood_coef` > 0; absent for the
   paper's head): per family, accuracy against gold of the head alone (with its bias), of c x the
   trunk's log-likelihood of the response alone, and of their sum, the reward. Then the likelihood
   part rescaled per family by the best of RESCALES on these val pairs (an upper bound on what a
   reward model that weighs its likelihood by the kind of prompt could gain, read off the pairs it
   is scored on), alone and with the copy oracle of 3 on top at its best weight: what the
   reward model would score against the labeler with both.

Figures, never a pass/fail. Prints a table, then as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from rlhf import comparisons, data, evaluation, lm, losses, models, reward  # noqa: E402
from rlhf.likelihood_reward import COEF_KEY  # noqa: E402
from rlhf.world import ABSENT_ANSWER, gold_answer, parse_prompt, vocab  # noqa: E402
from rlhf.world import score as world_score  # noqa: E402
from rlhf.world.labeler import ABSENT_MARKERS, ATTRIBUTES, WEIGHTS  # noqa: E402
from rlhf.world.tasks import parse_facts  # noqa: E402

COPY_FAMILIES = ("reverse", "summary", "lookup")
CONTENT_WORDS = frozenset(vocab.COLOURS + vocab.ANIMALS + vocab.FRUITS + vocab.OBJECTS + vocab.ADJECTIVES
                          + vocab.REVIEW_NOUNS)
ORACLE_WEIGHTS = (0.25, 0.5, 1.0, 1.5)
RESCALES = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
SURE = 0.9
MARGIN = 0.05  # issue 5: the RM against the labeler, at least the labeler's agreement with gold minus this


def inputs(run: Path) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    folder = run / "data" / "comparisons"
    needed = [run / "models" / "rm", run / "models" / "sft", folder / "val.parquet", folder / "train.parquet"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        sys.exit(f"error: {run} has no finished pipeline run (missing {', '.join(missing)}): run `make run` "
                 "there first, or pass --run DIR/repo after `python benchmarks/pipeline.py --keep DIR`")
    labeler = comparisons.read_labeler(folder)
    val = pd.read_parquet(needed[2])
    if labeler is None or "val" not in labeler["splits"] or val.gold_scores.isna().any():
        sys.exit(f"error: {needed[2]}: the val rankings were imported (no gold scores, or no "
                 f"{folder / comparisons.LABELER_FILE} that names val among the labeler's splits); this "
                 "benchmark reads the embedded world's simulated labeler")
    return val, pd.read_parquet(needed[3]), float(labeler["noise"])


def agreement_lost(val: pd.DataFrame, rewards: list[list[float]], noise: float) -> dict:
    """Expected agreement with the labeler of a perfect gold ranker and of `rewards`, and where the
    difference comes from, per family, sure and unsure pairs apart."""
    n, ceiling, expected = 0, 0.0, 0.0
    lost: dict[str, float] = defaultdict(float)
    for prompt, gold, r in zip(val.prompt, val.gold_scores, rewards):
        fam = evaluation.family(prompt)
        for keep, got in comparisons.ranker_pairs(list(gold), r, noise):
            n += 1
            ceiling += keep
            expected += got
            lost[f"{fam}/{'sure' if keep >= SURE else 'unsure'}"] += keep - got
    second = comparisons.expected_inter_labeler_agreement([list(g) for g in val.gold_scores], noise)
    return {"pairs": n, "ceiling": ceiling / n, "expected": expected / n, "second_labeler": second,
            "lost": {k: v / n for k, v in sorted(lost.items(), key=lambda kv: -kv[1])}}


def fresh_labelers(val: pd.DataFrame, noise: float, draws: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Fresh labelers (the same noise, each its own draws) on the val samples: per draw, the
    agreement with the val rankings on their ranked pairs, and the agreement with gold (how far
    the labeler's own figure, on which the target rests, moves from one draw to the next)."""
    rng = random.Random(seed)
    ranks = [list(k) for k in val.ranks]
    gold = [list(g) for g in val.gold_scores]
    with_rankings, with_gold = [], []
    for _ in range(draws):
        other = [comparisons.label(g, noise, rng) for g in gold]
        agree, total = reward.accuracy_counts([[-k for k in r] for r in other], ranks)  # rank 0 is the best
        with_rankings.append(agree / total)
        agree, total = comparisons.gold_agreement(gold, other)
        with_gold.append(agree / total)
    return with_rankings, with_gold


def content_words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) & CONTENT_WORDS


def copy_checked(val: pd.DataFrame, rewards: list[list[float]], weight: float) -> list[list[float]]:
    """`rewards` minus `weight` per content word of the world in a response but not in its prompt,
    on COPY_FAMILIES."""
    adjusted = []
    for prompt, responses, r in zip(val.prompt, val.responses, rewards):
        if evaluation.family(prompt) in COPY_FAMILIES:
            allowed = content_words(prompt)
            r = [x - weight * len(content_words(t) - allowed) for x, t in zip(r, responses)]
        adjusted.append(list(r))
    return adjusted


def copy_oracle(val: pd.DataFrame, rewards: list[list[float]], weight: float) -> dict[str, float]:
    return reward.validation_metrics(copy_checked(val, rewards, weight), [list(k) for k in val.ranks],
                                     [list(g) for g in val.gold_scores])


def reward_parts(rm, tokenizer, val: pd.DataFrame,
                 rewards: list[list[float]]) -> tuple[list[list[float]], list[list[float]]] | None:
    """A likelihood reward model's `rewards` on the val responses split into the head's part (with
    its bias) and the likelihood's (c x log p(response)); None for the paper's head."""
    coef = float(getattr(rm.config, COEF_KEY, 0.0))
    if not coef:
        return None
    setattr(rm.config, COEF_KEY, 0.0)  # the model reads it at every forward pass
    try:
        head = reward.group_rewards(rm, tokenizer, list(val.prompt), [list(r) for r in val.responses])
    finally:
        setattr(rm.config, COEF_KEY, coef)
    return head, [[t - h for t, h in zip(ts, hs)] for ts, hs in zip(rewards, head)]


def rescaled(val: pd.DataFrame, head: list[list[float]], likelihood: list[list[float]],
             scales: dict[str, float]) -> list[list[float]]:
    """head + scale x likelihood, the scale of each prompt's family (1 for a family not in `scales`)."""
    return [[h + scales.get(evaluation.family(p), 1.0) * x for h, x in zip(hs, xs)]
            for p, hs, xs in zip(val.prompt, head, likelihood)]


def best_rescale(val: pd.DataFrame, head: list[list[float]], likelihood: list[list[float]],
                 noise: float) -> dict[str, float]:
    """Per family, the scale of the likelihood part among RESCALES with the most expected agreement
    with the labeler on these val pairs; 1 (the reward as trained) where nothing does better. A pair
    never spans two prompts, so each family's scale is chosen with the others at 1."""
    best = {}
    for fam in sorted({evaluation.family(p) for p in val.prompt}):
        def expected(scale: float) -> float:
            return agreement_lost(val, rescaled(val, head, likelihood, {fam: scale}), noise)["expected"]
        best[fam] = max((1.0,) + tuple(s for s in RESCALES if s != 1.0), key=expected)  # ties keep 1
    return best


def likelihood_split(val: pd.DataFrame, head: list[list[float]], likelihood: list[list[float]],
                     rewards: list[list[float]], noise: float) -> dict:
    """Section 6's figures from a likelihood RM's two parts (`reward_parts`) and their sum `rewards`."""
    ranks, golds = [list(k) for k in val.ranks], [list(g) for g in val.gold_scores]
    by = {name: reward.validation_metrics(x, ranks, golds, prompts=list(val.prompt))
          for name, x in (("head", head), ("likelihood", likelihood), ("sum", rewards))}
    scales = best_rescale(val, head, likelihood, noise)
    scaled = rescaled(val, head, likelihood, scales)
    checked = {w: copy_checked(val, scaled, w) for w in ORACLE_WEIGHTS}
    expected = {w: agreement_lost(val, x, noise)["expected"] for w, x in checked.items()}
    weight = max(ORACLE_WEIGHTS, key=expected.__getitem__)
    prefix = "rm/val_accuracy_gold/"
    return {"gold_by_family": {key[len(prefix):]: {name: m[key] for name, m in by.items()}
                               for key in sorted(by["sum"]) if key.startswith(prefix)},
            "scales": scales, "expected_rescaled": agreement_lost(val, scaled, noise)["expected"],
            "copy_weight": weight, "expected_rescaled_copy": expected[weight],
            "rescaled_copy_vs_labeler": reward.validation_metrics(checked[weight], ranks, golds)["rm/val_accuracy"]}


def fit_probe(x_train, y_train, x_test, y_test, steps: int = 200) -> float:
    """Test accuracy of an L2-regularised logistic regression (standardised features, L-BFGS)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    w = torch.zeros(x_train.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x_train @ w + b, y_train) + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((x_test @ w + b > 0).float() == y_test).float().mean().item()


@torch.no_grad()
def in_prompt_probe(model, tok, table: pd.DataFrame, n_prompts: int) -> dict:
    model.eval()
    rows = []  # (prompt index, token id, in prompt, hidden state per layer)
    for p, (prompt, responses) in enumerate(zip(table.prompt[:n_prompts], table.responses[:n_prompts])):
        for e in data.encode_pairs(tok, [prompt] * len(responses), list(responses), models.max_positions(model)):
            ids = torch.tensor([e["input_ids"]])
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
            prompt_ids = {t for t, label in zip(e["input_ids"], e["labels"]) if label == data.IGNORE}
            for pos, (t, label) in enumerate(zip(e["input_ids"], e["labels"])):
                if label != data.IGNORE and t != tok.eos_token_id:
                    rows.append((p, t, t in prompt_ids, [h[0, pos] for h in hidden]))
    seen: dict[int, list[bool]] = defaultdict(list)
    for _, t, inside, _ in rows:
        seen[t].append(inside)
    rows = [r for r in rows if 0.15 < sum(seen[r[1]]) / len(seen[r[1]]) < 0.85]
    if len(rows) < 20:
        sys.exit("error: too few ambiguous response tokens for the probe; raise --probe-prompts")
    cut = int(0.7 * n_prompts)
    train = [r for r in rows if r[0] < cut]
    test = [r for r in rows if r[0] >= cut]
    y_train = torch.tensor([float(r[2]) for r in train])
    y_test = torch.tensor([float(r[2]) for r in test])
    out = {"tokens": len(rows), "in_prompt_share": sum(r[2] for r in rows) / len(rows),
           "majority": max(y_test.mean().item(), 1 - y_test.mean().item())}
    for layer in range(len(rows[0][3])):
        out[f"layer{layer}"] = fit_probe(torch.stack([r[3][layer] for r in train]), y_train,
                                         torch.stack([r[3][layer] for r in test]), y_test)
    return out


def lookup_questions(prompts) -> list[tuple[str, str | None, list[str]]]:
    """(prompt, its answer or None when the context lacks it, the context's colours) per lookup prompt."""
    out = []
    for prompt in prompts:
        parsed = parse_prompt(prompt)
        if parsed is None or parsed[0] != "lookup":
            continue
        answer = gold_answer(prompt)
        out.append((prompt, None if answer == ABSENT_ANSWER else answer,
                    [colour for _, colour in parse_facts(parsed[1]["context"])]))
    return out


def answer_kind(prompt: str, response: str) -> str:
    """What a lookup response names: one colour of the context ('context'), other attributes
    ('other'), no attribute but the absent-answer wording ('absent'), or nothing ('none')."""
    context = {colour for _, colour in parse_facts(parse_prompt(prompt)[1]["context"])}
    named = set(re.findall(r"[a-z]+", response.lower())) & ATTRIBUTES
    if not named:
        return "absent" if any(m in response.lower() for m in ABSENT_MARKERS) else "none"
    return "context" if len(named) == 1 and named <= context else "other"


def context_blind(val: pd.DataFrame) -> list[list[float]]:
    """Section 5's context-blind ranker: the val responses' gold scores, with each lookup
    response's `correct` part replaced by the mean of that part over the val lookup responses of
    its `answer_kind`."""
    lookups = {i for i, p in enumerate(val.prompt) if evaluation.family(p) == "lookup"}
    parts = {(i, j): (answer_kind(val.prompt[i], r), world_score(val.prompt[i], r).parts["correct"])
             for i in lookups for j, r in enumerate(val.responses[i])}
    kinds: dict[str, list[float]] = defaultdict(list)
    for kind, correct in parts.values():
        kinds[kind].append(correct)
    weight = WEIGHTS["correct"]
    return [[g + weight * (statistics.fmean(kinds[parts[i, j][0]]) - parts[i, j][1]) if i in lookups else g
             for j, g in enumerate(gold)] for i, gold in enumerate(val.gold_scores)]


def beats(a: float, b: float) -> float:
    return 1.0 if a > b else 0.5 if a == b else 0.0


def context_reading(prompts, rm_score, lm_score) -> dict:
    """Section 5's binding and presence figures. `rm_score` and `lm_score` map (prompts, responses)
    to one number per pair: the RM's reward and the SFT policy's log-likelihood."""
    questions = lookup_questions(prompts)
    pairs = [(p, answer, other) for p, answer, colours in questions if answer is not None
             for other in dict.fromkeys(colours) if other != answer]
    out: dict = {"lookup_prompts": len(questions), "binding_pairs": len(pairs)}
    if pairs:
        ps = [p for p, _, _ in pairs]
        for name, score in (("rm", rm_score), ("sft", lm_score)):
            right, other = score(ps, [a for _, a, _ in pairs]), score(ps, [o for _, _, o in pairs])
            out[f"{name}_binding"] = statistics.fmean(beats(r, o) for r, o in zip(right, other))
    for kind, present in (("absent", False), ("present", True)):
        # against the right answer where the context holds one, else against a colour it names
        chosen = [(p, answer or colours[0]) for p, answer, colours in questions if (answer is not None) == present]
        if chosen:
            ps = [p for p, _ in chosen]
            absent, colour = rm_score(ps, [ABSENT_ANSWER] * len(ps)), rm_score(ps, [c for _, c in chosen])
            out[f"rm_absent_answer_on_{kind}"] = statistics.fmean(absent)
            out[f"rm_absent_beats_colour_on_{kind}"] = statistics.fmean(beats(a, c) for a, c in zip(absent, colour))
    return out


@torch.no_grad()
def copying(base: Path, words: int = 15, sequences: int = 32, seed: int = 0) -> dict:
    """The base model's mean loss per token on random runs of the world's words, read once and
    then again in the same sequence."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base)).eval()
    tok = models.load_tokenizer(base)
    rng = random.Random(seed)
    pool = sorted(CONTENT_WORDS)
    runs = [tok(" ".join(rng.choice(pool) for _ in range(words)), add_special_tokens=False)["input_ids"]
            for _ in range(sequences)]
    n = min(*map(len, runs), models.max_positions(model) // 2)
    ids = torch.tensor([r[:n] + r[:n] for r in runs])
    logits = model(input_ids=ids).logits[:, :-1]
    loss = -losses.gather_logprobs(logits, ids[:, 1:])  # loss of token t + 1, from position t
    return {"first": loss[:, : n - 1].mean().item(), "second": loss[:, n:].mean().item()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=ROOT, help="a project folder with a finished pipeline run")
    p.add_argument("--probe-prompts", type=int, default=300, help="train comparison prompts the probe reads")
    p.add_argument("--draws", type=int, default=20, help="draws of a second labeler")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.draws < 1:
        p.error(f"--draws must be at least 1, got {args.draws}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    val, train, noise = inputs(args.run)

    rm, rm_tok = reward.load(args.run / "models" / "rm"), models.load_tokenizer(args.run / "models" / "rm")
    sft, sft_tok = models.load_causal_lm(args.run / "models" / "sft"), models.load_tokenizer(args.run / "models" / "sft")
    rewards = reward.group_rewards(rm, rm_tok, list(val.prompt), [list(r) for r in val.responses])
    met = reward.validation_metrics(rewards, [list(k) for k in val.ranks], [list(g) for g in val.gold_scores])
    labeler_agree, labeler_pairs = comparisons.gold_agreement([list(g) for g in val.gold_scores],
                                                              [list(k) for k in val.ranks])
    labeler = labeler_agree / labeler_pairs
    target = labeler - MARGIN
    gap = agreement_lost(val, rewards, noise)
    blind = agreement_lost(val, context_blind(val), noise)
    others, redrawn = fresh_labelers(val, noise, args.draws)
    oracle = {w: copy_oracle(val, rewards, w) for w in ORACLE_WEIGHTS}
    probe = in_prompt_probe(sft, sft_tok, train, args.probe_prompts)
    reading = context_reading(list(val.prompt), lambda ps, rs: reward.score(rm, rm_tok, ps, rs),
                              lambda ps, rs: lm.response_logprobs(sft, sft_tok, ps, rs))
    base = args.run / "models" / "base"
    copied = copying(base) if (base / "config.json").exists() else None
    parts = reward_parts(rm, rm_tok, val, rewards)
    split = likelihood_split(val, *parts, rewards, noise) if parts else None

    print(f"val pairs {met['rm/val_pairs']}; labeler noise sigma {noise:.3f}")
    print(f"RM vs gold {met['rm/val_accuracy_gold']:.3f}; RM vs labeler {met['rm/val_accuracy']:.3f}; labeler vs gold "
          f"{labeler:.3f}; target (labeler vs gold - {MARGIN}) {target:.3f}")
    print(f"expected agreement with the labeler: perfect gold ranker {gap['ceiling']:.3f}, this RM {gap['expected']:.3f}, "
          f"a second labeler {gap['second_labeler']:.3f}")
    reach = int(sum(o >= target for o in others))
    print(f"a second labeler against the val rankings over {len(others)} draws: mean {sum(others) / len(others):.3f}, "
          f"min {min(others):.3f}, max {max(others):.3f}; {reach} of {len(others)} reach the target")
    print(f"the labeler's agreement with gold over {len(redrawn)} fresh draws of its noise on these samples: "
          f"mean {statistics.fmean(redrawn):.3f}, sd {statistics.pstdev(redrawn):.3f}, "
          f"min {min(redrawn):.3f}, max {max(redrawn):.3f}")
    print("agreement lost against a perfect gold ranker, by family (sure: the labeler keeps the gold order "
          f"with probability >= {SURE}):")
    for key, value in gap["lost"].items():
        print(f"  {key:<22} {value:.4f}")
    print("copy oracle (reward - b per content word absent from the prompt, on " + ", ".join(COPY_FAMILIES) + "):")
    for w, m in oracle.items():
        print(f"  b = {w:<5} RM vs gold {m['rm/val_accuracy_gold']:.3f}  RM vs labeler {m['rm/val_accuracy']:.3f}")
    print(f"probe 'this response token occurs in the prompt' on {probe['tokens']} ambiguous tokens "
          f"(majority class {probe['majority']:.3f}):")
    for layer in range(sum(k.startswith("layer") for k in probe)):
        print(f"  layer {layer} {probe[f'layer{layer}']:.3f}" + ("  (embeddings)" if layer == 0 else ""))
    print(f"reading the context on {reading['lookup_prompts']} lookup val prompts (0.5 is chance):")
    if "rm_binding" in reading:
        print(f"  binding: the right colour of the context above another, RM {reading['rm_binding']:.3f}, "
              f"SFT likelihood {reading['sft_binding']:.3f} ({reading['binding_pairs']} pairs)")
    for kind, where, against in (("absent", "lacks", "a colour it names"), ("present", "holds", "the answer")):
        if f"rm_absent_answer_on_{kind}" in reading:
            print(f"  the context {where} the answer: the RM's reward for '{ABSENT_ANSWER}' "
                  f"{reading[f'rm_absent_answer_on_{kind}']:+.3f}, above {against} "
                  f"{reading[f'rm_absent_beats_colour_on_{kind}']:.3f}")
    print(f"  a ranker that is gold everywhere but cannot read a lookup context: expected agreement "
          f"{blind['expected']:.3f}, {gap['ceiling'] - blind['expected']:.3f} below the perfect ranker's "
          f"(issue 5 allows {MARGIN})")
    if copied:
        print(f"copying: the base model's loss on a random run of the world's words, first reading "
              f"{copied['first']:.2f}, second {copied['second']:.2f}")
    if split:
        print("the reward's two parts, head + c x log p(response): accuracy against gold by family")
        print(f"  {'family':<11} {'head':>6} {'likelihood':>11} {'sum':>6}")
        for fam, acc in split["gold_by_family"].items():
            print(f"  {fam:<11} {acc['head']:>6.3f} {acc['likelihood']:>11.3f} {acc['sum']:>6.3f}")
        print("the likelihood part rescaled per family, the best of " + ", ".join(map(str, RESCALES)) + " on these val "
              "pairs (an upper bound): " + ", ".join(f"{f} {x:g}" for f, x in split["scales"].items())
              + f"; expected agreement {split['expected_rescaled']:.3f} (as trained {gap['expected']:.3f})")
        print(f"  and with the copy oracle at b = {split['copy_weight']:g} on top: expected "
              f"{split['expected_rescaled_copy']:.3f} (ceiling - {MARGIN}: {gap['ceiling'] - MARGIN:.3f}), against "
              f"the labeler {split['rescaled_copy_vs_labeler']:.3f} (target {target:.3f})")
    best = max(oracle, key=lambda w: oracle[w]["rm/val_accuracy"])
    print(json.dumps({
        "val_pairs": met["rm/val_pairs"], "labeler_noise": round(noise, 4),
        "rm_vs_gold": round(met["rm/val_accuracy_gold"], 4), "rm_vs_labeler": round(met["rm/val_accuracy"], 4),
        "labeler_vs_gold": round(labeler, 4), "target": round(target, 4),
        "expected_ceiling": round(gap["ceiling"], 4), "expected_rm": round(gap["expected"], 4),
        "expected_second_labeler": round(gap["second_labeler"], 4),
        "second_labeler": {"mean": round(sum(others) / len(others), 4), "min": round(min(others), 4),
                           "max": round(max(others), 4), "draws": len(others), "reach_target": reach},
        "labeler_vs_gold_redrawn": {"mean": round(statistics.fmean(redrawn), 4),
                                    "sd": round(statistics.pstdev(redrawn), 4), "min": round(min(redrawn), 4),
                                    "max": round(max(redrawn), 4), "draws": len(redrawn)},
        "lost": {k: round(v, 4) for k, v in gap["lost"].items()},
        "oracle": {str(w): round(m["rm/val_accuracy"], 4) for w, m in oracle.items()},
        "oracle_best_weight": best, "oracle_best_vs_labeler": round(oracle[best]["rm/val_accuracy"], 4),
        "probe": {k: round(v, 4) for k, v in probe.items()},
        "context_reading": {k: round(v, 4) if isinstance(v, float) else v for k, v in reading.items()},
        "expected_context_blind": round(blind["expected"], 4),
        "copying": {k: round(v, 4) for k, v in copied.items()} if copied else None,
        "parts": {**split, **{k: round(split[k], 4) for k in ("expected_rescaled", "expected_rescaled_copy",
                                                              "rescaled_copy_vs_labeler")},
                  "gold_by_family": {f: {k: round(v, 4) for k, v in acc.items()}
                                     for f, acc in split["gold_by_family"].items()}} if split else None,
    }))


if __name__ == "__main__":
    main()
