"""Stage comparisons: sample K responses per RM prompt from the SFT model and have the simulated
labeler rank them by gold score plus noise."""

import random
from pathlib import Path

import pandas as pd

from rlhf import cli, comparisons, models, train

SECTIONS = ("comparisons",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--sft", type=Path, required=True, help="HF-format SFT model")
    p.add_argument("--prompts", type=Path, required=True, help="folder of {train,val}.parquet prompts")
    p.add_argument("--out", type=Path, required=True, help="folder for {train,val}.parquet rankings")
    args = p.parse_args()
    with cli.stage("comparisons", args, SECTIONS) as (cfg, run):
        c, seed = cfg["comparisons"], cfg["common"].seed
        train.set_seed(seed)
        tokenizer = models.load_tokenizer(args.sft)
        model = models.load_causal_lm(args.sft).to(models.pick_device(cfg["common"].device))
        rng = random.Random(seed)
        args.out.mkdir(parents=True, exist_ok=True)
        metrics = {}
        for split in ("train", "val"):
            prompts = pd.read_parquet(args.prompts / f"{split}.parquet")
            if split == "train" and c.max_prompts:
                prompts = prompts.sample(n=min(c.max_prompts, len(prompts)), random_state=seed)
            table, agreement = comparisons.sample_and_rank(model, tokenizer, prompts, c, rng)
            table.to_parquet(args.out / f"{split}.parquet", index=False)
            metrics[f"comparisons/{split}_prompts"] = len(table)
            if agreement is not None:
                metrics[f"comparisons/{split}_labeler_gold_agreement"] = agreement
        run.write_metrics(args.metrics, metrics)
        print(metrics)


if __name__ == "__main__":
    main()
