"""The reward model trained on the same rankings two ways: K-way batching (the paper's: a prompt with
its K ranked responses is one batch element, each response goes through the model once, the loss
averages its C(K,2) pairs) and pairwise expansion (each ranked pair a separate example, both of
its responses forwarded, as the anchors do).

    python benchmarks/reward.py [--prompts 400] [--val-prompts 100] [--k-min 4] [--k-max 9] [--steps 0]
                                [--device cpu|cuda]

Self-contained, no network: in a temporary folder it builds world prompts of every task family, K
candidate responses per prompt (the gold answer and variants that lose gold score: wrong answers
from other prompts, a toxic word, personal data, rambling, a wrong format), ranks them with the
project's simulated labeler (noise calibrated to 0.73 agreement with gold; equal gold ties), trains
a byte-level BPE tokenizer on the world's corpus and a small GPT-2-style model with a scalar head.
Both runs start from the same weights, see the same prompts and pairs for one epoch (or --steps
steps each), with the same optimizer and schedule; the pairwise run's batches hold about as many
sequences as the K-way run's (pair batch = batch size x mean K / 2), so their steps cost alike.

A third run trains K-way for as many steps as the pairwise run took (about the same forward
passes, several epochs): accuracy at equal compute.

Examples are ranked pairs (what the loss counts): examples/s = pairs trained on / training seconds.
Forward passes are sequence forwards (one response through the model once): sum of K for K-way,
2 per pair for pairwise; so the sequences-per-pair ratio, 2 C(K,2) / K = K - 1, is what one epoch of
K-way saves; the paper counts a pair's forward as one pass and writes the saving as C(K,2) / K =
(K - 1) / 2. With --device cuda all three runs train on the GPU under bf16 autocast (the
stage's `train.accelerator`), each side after an untimed run over the same batches. Timings are
figures, never a pass/fail. Prints a table, then as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from rlhf import cli, comparisons, config, models, reward, train, world  # noqa: E402
from rlhf.evaluation import gold_scores  # noqa: E402
from rlhf.losses import ranked_pairs  # noqa: E402
from rlhf.world import vocab  # noqa: E402


def candidates(rng: random.Random, prompt: str, others: list[str]) -> list[str]:
    """Responses to `prompt` of every quality the gold labeler tells apart, distinct texts."""
    gold = world.gold_answer(prompt) or "I am not sure."
    # answers to other prompts of the family (words of the world where they all agree, as in chat)
    wrong = [a for a in others if a and a != gold] or [" ".join(rng.sample(vocab.ANIMALS, 2)) for _ in range(3)]
    pool = [gold, f"{gold} {rng.choice(vocab.TOXIC_WORDS)}", f"{gold} Write to jo.doe@example.com.",
            f"{gold} and also " + " ".join(rng.choice(vocab.ANIMALS) for _ in range(30)),
            " ".join(rng.sample(vocab.COLOURS, 3)) + "?", rng.choice(wrong), rng.choice(wrong),
            f"{rng.choice(wrong)} {rng.choice(vocab.TOXIC_WORDS)}", ""]
    return list(dict.fromkeys(pool))  # distinct, in order


def build_rankings(rng: random.Random, n: int, k_min: int, k_max: int, noise: float | None) -> tuple[pd.DataFrame, float]:
    """n world prompts with K in [k_min, k_max] ranked candidates each; the labeler's noise is
    calibrated on these gold scores when `noise` is None."""
    prompts = [world.make_prompt(rng, world.FAMILIES[i % len(world.FAMILIES)]) for i in range(n)]
    answers = [world.gold_answer(p) or "" for p in prompts]
    rows = []
    for i, p in enumerate(prompts):
        same = [a for j, a in enumerate(answers) if world.family_of(prompts[j]) == world.family_of(p) and j != i]
        pool = candidates(rng, p, same or answers)
        responses = rng.sample(pool, min(len(pool), rng.randint(k_min, k_max)))
        rows.append({"prompt_id": f"p{i}", "prompt": p, "responses": responses,
                     "gold_scores": gold_scores([p] * len(responses), responses)})
    table = pd.DataFrame(rows)
    if noise is None:
        noise = comparisons.calibrate_noise(list(table.gold_scores), 0.73)
    table["ranks"] = [comparisons.label(g, noise, rng) for g in table.gold_scores]
    return table, noise


def pairs_of(table: pd.DataFrame) -> pd.DataFrame:
    """Pairwise expansion: each ranked pair (w above l) a prompt with two responses ranked [0, 1]."""
    rows = []
    for p, rs, ks in zip(table.prompt, table.responses, table.ranks):
        for i in range(len(rs)):
            for j in range(len(rs)):
                if ks[i] < ks[j]:
                    rows.append({"prompt": p, "responses": [rs[i], rs[j]], "ranks": [0, 1]})
    return pd.DataFrame(rows)


def run(name: str, model, tokenizer, table: pd.DataFrame, batch_size: int, steps: int, args, val: pd.DataFrame) -> dict:
    """Train `model` on the group table for `steps` steps; throughput and validation accuracy."""
    done: list[dict] = []  # the batches trained on, to count their pairs and sequences
    batches = reward.ranking_batches(tokenizer, table, batch_size, args.seq_len, args.seed)

    def counted():
        for b in batches:
            done.append(b)
            yield b
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    history = train.fit(model, counted(), reward.kway_loss, steps=steps, lr=args.lr, warmup_steps=max(1, steps // 20),
                        accel=train.accelerator(args.device), prefix="rm")
    seconds = time.perf_counter() - start
    pairs = sum(int(ranked_pairs(b["ranks"], b["mask"]).sum()) for b in done)
    sequences = sum(int(b["mask"].sum()) for b in done)
    val_rewards = reward.group_rewards(model, tokenizer, list(val.prompt), [list(r) for r in val.responses])
    m = reward.validation_metrics(val_rewards, [list(r) for r in val.ranks], [list(g) for g in val.gold_scores])
    return {"name": name, "steps": steps, "seconds": seconds, "pairs": pairs, "sequences": sequences,
            "model_calls": len(done), "examples_per_s": pairs / seconds, "final_loss": history[-1]["rm/loss"],
            "val_accuracy": m["rm/val_accuracy"], "val_accuracy_gold": m["rm/val_accuracy_gold"]}


def main() -> None:
    pre = config.load("pretrain", ROOT / "params.yaml")
    rm = config.load("reward_model", ROOT / "params.yaml")
    common = config.load("common", ROOT / "params.yaml")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=400, help="train prompts")
    p.add_argument("--val-prompts", type=int, default=100)
    p.add_argument("--k-min", type=int, default=4)
    p.add_argument("--k-max", type=int, default=9)
    p.add_argument("--batch-size", type=int, default=rm.batch_size, help="prompts per K-way step")
    p.add_argument("--steps", type=int, default=0, help="steps of each run (0: one epoch each)")
    p.add_argument("--lr", type=float, default=rm.lr)
    p.add_argument("--seq-len", type=int, default=pre.n_positions)
    p.add_argument("--n-layer", type=int, default=pre.n_layer)
    p.add_argument("--n-head", type=int, default=pre.n_head)
    p.add_argument("--n-embd", type=int, default=pre.n_embd)
    p.add_argument("--vocab-size", type=int, default=pre.vocab_size)
    p.add_argument("--docs", type=int, default=1000, help="corpus documents for the tokenizer")
    p.add_argument("--threads", type=int, default=cli.cores())
    p.add_argument("--seed", type=int, default=common.seed)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: the runs train on the GPU with bf16 autocast")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    train.set_seed(args.seed)
    started = time.perf_counter()

    rng = random.Random(args.seed)
    tr, noise = build_rankings(rng, args.prompts, args.k_min, args.k_max, None)
    va, _ = build_rankings(rng, args.val_prompts, args.k_min, args.k_max, noise)
    agree, total = comparisons.gold_agreement(list(va.gold_scores), list(va.ranks))
    pairs = pairs_of(tr)
    ks = tr.responses.map(len)
    pair_batch = max(1, round(args.batch_size * ks.mean() / 2))
    steps_kway = args.steps or math.ceil(len(tr) / args.batch_size)
    steps_pairs = args.steps or math.ceil(len(pairs) / pair_batch)

    from transformers import GPT2Config, GPT2ForSequenceClassification

    tokenizer = models.train_tokenizer(world.generate_corpus(random.Random(args.seed), args.docs)
                                       + list(tr.prompt), args.vocab_size)
    torch.manual_seed(args.seed)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tokenizer), n_positions=args.seq_len, n_embd=args.n_embd, n_layer=args.n_layer,
        n_head=args.n_head, num_labels=1, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0))
    n_params = sum(x.numel() for x in model.parameters())
    kway_model, pair_model, long_model = (copy.deepcopy(model) for _ in range(3))
    setup_s = time.perf_counter() - started

    cold = None
    if args.device == "cuda":
        # CUDA pays once per new batch shape (kernel choice, memory pool growth): untimed runs over
        # the same batches first, so that the timed ones measure the steady state (their own
        # pairs/s are printed as the cold figures)
        cold = [run(name, copy.deepcopy(model), tokenizer, t, bs, n, args, va)["examples_per_s"]
                for name, t, bs, n in (("K-way", tr, args.batch_size, steps_kway),
                                       ("pairwise", pairs, pair_batch, steps_pairs))]
    kway = run("K-way", kway_model, tokenizer, tr, args.batch_size, steps_kway, args, va)
    pairwise = run("pairwise", pair_model, tokenizer, pairs, pair_batch, steps_pairs, args, va)
    # K-way again, for as many steps (so about as many forward passes) as the pairwise run took
    same = run("K-way*", long_model, tokenizer, tr, args.batch_size, steps_pairs, args, va)
    ratio = kway["examples_per_s"] / pairwise["examples_per_s"]
    n_pairs = comparisons.pair_counts(tr)["pairs"]
    seq_ratio = 2 * n_pairs / int(ks.sum())

    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd} ({args.n_head} heads) + scalar head, {n_params:,} "
          f"parameters, vocab {len(tokenizer)}; torch {torch.__version__}, "
          + (torch.cuda.get_device_name() + " (bf16 autocast)" if args.device == "cuda" else f"{args.threads} threads"))
    print(f"data: {len(tr)} train prompts, K {args.k_min}..{args.k_max} (mean {ks.mean():.2f}), {int(ks.sum())} "
          f"responses, {n_pairs} ranked pairs; {len(va)} val prompts; labeler noise {noise:.3f}, val agreement "
          f"with gold {agree / total:.3f}")
    print(f"batches: K-way {args.batch_size} prompts/step, pairwise {pair_batch} pairs/step "
          f"(about {args.batch_size * ks.mean():.0f} sequences per step both)")
    print()
    print(f"{'run':<10}{'steps':>7}{'seconds':>9}{'pairs':>8}{'seq fwd':>9}{'pairs/s':>9}{'val acc':>9}"
          f"{'val gold':>10}{'loss':>8}")
    for r in (kway, pairwise, same):
        print(f"{r['name']:<10}{r['steps']:>7}{r['seconds']:>9.1f}{r['pairs']:>8}{r['sequences']:>9}"
              f"{r['examples_per_s']:>9.1f}{r['val_accuracy']:>9.3f}{r['val_accuracy_gold']:>10.3f}"
              f"{r['final_loss']:>8.3f}")
    print("K-way*: K-way trained for the pairwise run's steps (about its forward passes, "
          f"{steps_pairs / steps_kway:.1f} epochs): the same compute")
    print()
    print(f"speed ratio (pairs/s, K-way over pairwise): {ratio:.2f}; sequence forwards per pair: pairwise 2, "
          f"K-way {int(ks.sum()) / n_pairs:.3f}, so {seq_ratio:.2f} is the ideal (K - 1 for a fixed K); the "
          f"paper's count, a pair's forward as one pass, gives {seq_ratio / 2:.2f} ((K - 1) / 2)")
    if cold:
        print(f"untimed first runs over these batch shapes (CUDA): K-way {cold[0]:.1f}, pairwise {cold[1]:.1f} pairs/s "
              f"(ratio {cold[0] / cold[1]:.2f})")
    print(f"set-up {setup_s:.1f} s; whole benchmark {time.perf_counter() - started:.1f} s")
    print(json.dumps({
        "kway_examples_per_s": round(kway["examples_per_s"], 1),
        "pairwise_examples_per_s": round(pairwise["examples_per_s"], 1),
        "speed_ratio": round(ratio, 3),
        "ideal_ratio_sequences": round(seq_ratio, 3), "paper_ratio_k_minus_1_over_2": round(seq_ratio / 2, 3),
        "kway_forward_passes": kway["sequences"], "pairwise_forward_passes": pairwise["sequences"],
        "kway_val_accuracy": round(kway["val_accuracy"], 4), "pairwise_val_accuracy": round(pairwise["val_accuracy"], 4),
        "kway_val_accuracy_gold": round(kway["val_accuracy_gold"], 4),
        "pairwise_val_accuracy_gold": round(pairwise["val_accuracy_gold"], 4),
        "kway_same_compute_val_accuracy": round(same["val_accuracy"], 4),
        "kway_same_compute_val_accuracy_gold": round(same["val_accuracy_gold"], 4),
        "kway_steps": kway["steps"], "pairwise_steps": pairwise["steps"], "prompts": len(tr), "pairs": n_pairs,
        "mean_k": round(float(ks.mean()), 3), "model_params": n_params, "device": args.device,
        "cold_kway_examples_per_s": round(cold[0], 1) if cold else None,
        "cold_pairwise_examples_per_s": round(cold[1], 1) if cold else None,
    }), flush=True)


if __name__ == "__main__":
    main()
