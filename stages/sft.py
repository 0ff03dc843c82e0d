"""Stage sft: supervised fine-tuning of the base model on demonstrations, loss on response
tokens only, cosine decay with warmup, residual dropout."""

import math
from pathlib import Path

import pandas as pd

from rlhf import cli, data, evaluation, lm, models, train

SECTIONS = ("sft",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--base", type=Path, required=True, help="HF-format base model")
    p.add_argument("--demos", type=Path, required=True, help="folder of {train,val}.parquet demonstrations")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format SFT model")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    args = p.parse_args()
    with cli.stage("sft", args, SECTIONS) as (cfg, run):
        c, seed = cfg["sft"], cfg["common"].seed
        train.set_seed(seed)
        tokenizer = models.load_tokenizer(args.base)
        model = models.load_causal_lm(args.base, dropout=c.dropout).to(models.pick_device(cfg["common"].device))
        max_len = models.max_positions(model)
        tr, va = (pd.read_parquet(args.demos / f"{s}.parquet") for s in ("train", "val"))
        train_ex = data.encode_pairs(tokenizer, list(tr.prompt), list(tr.response), max_len)
        val_ex = data.encode_pairs(tokenizer, list(va.prompt), list(va.response), max_len)
        steps = c.epochs * math.ceil(len(train_ex) / c.batch_size)
        history = train.fit(model, data.example_batches(train_ex, c.batch_size, tokenizer.pad_token_id, seed),
                            lm.lm_loss, steps=steps, lr=c.lr, warmup_steps=c.warmup_steps, prefix="sft",
                            on_step=lambda s, row: run.log_metrics(row, s))
        val_batches = [data.collate(val_ex[i:i + c.batch_size], tokenizer.pad_token_id)
                       for i in range(0, len(val_ex), c.batch_size)]
        responses = models.generate(model, tokenizer, list(va.prompt), max_new_tokens=24, do_sample=False)
        scores = evaluation.gold_scores(list(va.prompt), responses)
        metrics = {"sft/train_loss": history[-1]["sft/loss"], "sft/val_loss": lm.mean_lm_loss(model, val_batches),
                   "sft/val_gold_score": sum(scores) / len(scores), "sft/steps": steps,
                   **{f"sft/val_gold_score/{f}": s for f, s in evaluation.by_family(list(va.prompt), scores).items()}}
        cli.write_curve(args.curves, history, {"loss": "sft/loss"})
        models.save(model, tokenizer, args.out)
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.out, "model")
        print(metrics)


if __name__ == "__main__":
    main()
