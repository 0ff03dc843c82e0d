"""Stage demonstrations: a demonstration for each SFT prompt (simulated labeler, or imported)."""

from pathlib import Path

import pandas as pd

from rlhf import cli, demonstrations

SECTIONS = ("demonstrations",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--prompts", type=Path, required=True, help="folder of {train,val}.parquet prompts")
    p.add_argument("--out", type=Path, required=True, help="folder for {train,val}.parquet demonstrations")
    args = p.parse_args()
    with cli.stage("demonstrations", args, SECTIONS) as (cfg, run):
        c = cfg["demonstrations"]
        args.out.mkdir(parents=True, exist_ok=True)
        metrics, set_aside = {}, []
        for split in ("train", "val"):
            if c.source == "import":
                # imported demonstrations are all training data; validation keeps the labeler's
                demos, skipped = (demonstrations.from_jsonl(Path(c.import_path)) if split == "train"
                                  else demonstrations.from_labeler(pd.read_parquet(args.prompts / "val.parquet")))
            else:
                prompts = pd.read_parquet(args.prompts / f"{split}.parquet")
                if split == "train" and c.max_prompts:
                    prompts = prompts.head(c.max_prompts)
                demos, skipped = demonstrations.from_labeler(prompts)
            demos.to_parquet(args.out / f"{split}.parquet", index=False)
            set_aside.append(skipped.assign(split=split))
            metrics[f"demonstrations/{split}"] = len(demos)
            metrics[f"demonstrations/{split}_set_aside"] = len(skipped)
        pd.concat(set_aside).to_parquet(args.out / "set_aside.parquet", index=False)
        run.write_metrics(args.metrics, metrics)
        print(metrics)


if __name__ == "__main__":
    main()
