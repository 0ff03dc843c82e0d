"""Stage reward_model: the SFT trunk with a scalar head, trained on K-way rankings (all C(K,2)
pairs of a prompt in one batch element)."""

import math
from pathlib import Path

import pandas as pd
import torch

from rlhf import cli, models, reward, train
from rlhf.losses import pairwise_accuracy

SECTIONS = ("reward_model",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--sft", type=Path, required=True, help="HF-format SFT model (the RM's initialisation)")
    p.add_argument("--comparisons", type=Path, required=True, help="folder of {train,val}.parquet rankings")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format reward model")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    args = p.parse_args()
    with cli.stage("reward_model", args, SECTIONS) as (cfg, run):
        c, seed = cfg["reward_model"], cfg["common"].seed
        train.set_seed(seed)
        tokenizer = models.load_tokenizer(args.sft)
        accel = train.accelerator(cfg["common"].device)
        model = reward.from_sft(args.sft)
        model.config.pad_token_id = tokenizer.pad_token_id
        max_len = models.max_positions(model)
        tr, va = (pd.read_parquet(args.comparisons / f"{s}.parquet") for s in ("train", "val"))
        steps = c.epochs * math.ceil(len(tr) / c.batch_size)
        history = train.fit(model, reward.ranking_batches(tokenizer, tr, c.batch_size, max_len, seed), reward.kway_loss,
                            steps=steps, lr=c.lr, accel=accel, prefix="rm", on_step=lambda s, row: run.log_metrics(row, s))
        with torch.no_grad():
            val = reward.group_batch(tokenizer, list(va.prompt), [list(r) for r in va.responses],
                                     [list(r) for r in va.ranks], max_len)
            r = reward.rewards(model, val).cpu()
            gold_ranks = torch.tensor([[sorted(g, reverse=True).index(x) for x in g] for g in va.gold_scores])
            metrics = {"rm/train_loss": history[-1]["rm/loss"], "rm/steps": steps,
                       "rm/val_accuracy": pairwise_accuracy(r, val["ranks"]).item(),
                       "rm/val_accuracy_gold": pairwise_accuracy(r, gold_ranks).item()}
        cli.write_curve(args.curves, history, {"loss": "rm/loss", "accuracy": "rm/train_accuracy"})
        models.save(model, tokenizer, args.out)
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.out, "model")
        print(metrics)


if __name__ == "__main__":
    main()
