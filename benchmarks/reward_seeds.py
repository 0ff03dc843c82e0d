"""The reward model over training seeds and learning rates, and the weight average of each lr's
models, on a finished pipeline run's SFT model and comparisons.

    python benchmarks/reward_seeds.py [--run DIR] [--seeds 6] [--lr 5e-4 2e-4 ...] [--epochs 1]
                                      [--likelihood-coef C] [--lm-coef L]

DIR is a project folder after `make run` (default: this repo) or the `repo` folder that `python
benchmarks/pipeline.py --keep DIR` leaves. For each lr, one reward model per seed 0, 1, ... is
trained as the reward_model stage trains it (`reward.from_sft` on models/sft, `reward.train` on the
rankable rows of data/comparisons/train.parquet, the run's params.yaml `reward_model` section with
--lr, --epochs, --likelihood-coef and --lm-coef put in; the seed sets the scalar head's
initialisation and the batch order) and scored on data/comparisons/val.parquet: pairwise accuracy
against the labeler's ranks and against gold, as the stage reports them. Then the seeds' models of
that lr are averaged, weight by weight, into one model (WARM, Rame et al. 2024), which is scored the
same way. With the run's own params (and common.seed 0), seed 0 is the stage's model at
`reward_model.average_seeds: 1`, and the average of `--seeds N` is the stage's model at
`average_seeds: N`. The stage's demonstrations-mean-0 shift is left out: it moves every reward alike
and changes no ordering.

Figures, never a pass/fail. Prints a line per model and per lr, then as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from rlhf import config, models, reward, train  # noqa: E402


def score(model, tokenizer, val: pd.DataFrame) -> tuple[float, float]:
    """(accuracy against gold, against the labeler) on the val rankings, ties in reward counted as the stage does."""
    rewards = reward.group_rewards(model, tokenizer, list(val.prompt), [list(r) for r in val.responses])
    met = reward.validation_metrics(rewards, [list(k) for k in val.ranks],
                                    [None if g is None else list(g) for g in val.gold_scores])
    return met.get("rm/val_accuracy_gold", float("nan")), met["rm/val_accuracy"]


def summary(rows: list[tuple[float, float]]) -> dict:
    """Mean, min and max of each figure over the seeds."""
    out = {}
    for i, name in enumerate(("gold", "labeler")):
        values = [r[i] for r in rows]
        out[name] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=ROOT, help="a project folder with a finished pipeline run")
    p.add_argument("--seeds", type=int, default=6, help="training seeds per lr: 0, 1, ...")
    p.add_argument("--lr", type=float, nargs="+", help="peak learning rates (default: the run's reward_model.lr)")
    p.add_argument("--epochs", type=int, help="passes over the comparisons (default: the run's reward_model.epochs)")
    p.add_argument("--likelihood-coef", type=float,
                   help="the likelihood term's weight, 0 for the paper's head (default: the run's reward_model.likelihood_coef)")
    p.add_argument("--lm-coef", type=float,
                   help="the LM loss's weight on the best-ranked responses, 0 for none (default: the run's reward_model.lm_coef)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1, got {args.seeds}")
    torch.set_num_threads(args.threads)
    c = config.load("reward_model", args.run / "params.yaml")
    sft = args.run / "models" / "sft"
    tables = {s: args.run / "data" / "comparisons" / f"{s}.parquet" for s in ("train", "val")}
    for path in [sft / "config.json", *tables.values()]:
        if not path.exists():
            sys.exit(f"error: {path} not found: --run must be a project folder after a pipeline run")
    tr, _ = reward.rankable(pd.read_parquet(tables["train"]))
    val = pd.read_parquet(tables["val"])
    tokenizer = models.load_tokenizer(sft)
    accel = train.accelerator("cpu", c.grad_accum)

    figures = []
    for lr in args.lr or [c.lr]:
        try:
            cfg = dataclasses.replace(
                c, lr=lr, epochs=args.epochs or c.epochs,
                likelihood_coef=c.likelihood_coef if args.likelihood_coef is None else args.likelihood_coef,
                lm_coef=c.lm_coef if args.lm_coef is None else args.lm_coef)
        except config.ConfigError as e:
            p.error(f"{e} (--likelihood-coef, --lm-coef)")
        tag = f"likelihood_coef {cfg.likelihood_coef:g}, lm_coef {cfg.lm_coef:g}, lr {lr:g}"
        rows, states = [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            model, _ = reward.train_one(sft, tokenizer, tr, cfg, seed, accel)
            seconds = time.perf_counter() - start
            rows.append(score(model, tokenizer, val))
            states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            print(f"{tag}, {cfg.epochs} epoch(s), seed {seed}: gold {rows[-1][0]:.3f}, labeler {rows[-1][1]:.3f} "
                  f"({seconds:.1f} s of training)", flush=True)
        model.load_state_dict(reward.average_states(states))
        averaged = score(model, tokenizer, val)
        spread = summary(rows)
        print(f"{tag}: over {args.seeds} seeds gold {spread['gold']['mean']:.3f} "
              f"({spread['gold']['min']:.3f}-{spread['gold']['max']:.3f}), labeler {spread['labeler']['mean']:.3f} "
              f"({spread['labeler']['min']:.3f}-{spread['labeler']['max']:.3f}); weight average gold "
              f"{averaged[0]:.3f}, labeler {averaged[1]:.3f}", flush=True)
        figures.append({"lr": lr, "epochs": cfg.epochs, "likelihood_coef": cfg.likelihood_coef, "lm_coef": cfg.lm_coef,
                        "steps": reward.train_steps(len(tr), cfg),
                        "seeds": [{"gold": g, "labeler": lab} for g, lab in rows], **spread,
                        "weight_average": {"gold": averaged[0], "labeler": averaged[1]}})
    print(json.dumps({"run": str(args.run), "train_prompts": len(tr), "val_prompts": len(val), "runs": figures}))


if __name__ == "__main__":
    main()
