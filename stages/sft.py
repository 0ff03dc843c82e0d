"""Stage sft: supervised fine-tuning of the base model on demonstrations: loss on response tokens
only, cosine decay with warmup, residual dropout, several epochs; every sft.eval_every epochs the
validation loss and the mean gold score of greedy responses to the validation prompts that the gold
labeler can score (the embedded world's; none of a user's own); the best evaluated epoch is kept."""

import math
import shutil
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

import pandas as pd  # noqa: E402

from rlhf import cli, config, data, evaluation, lm, models, train  # noqa: E402

SECTIONS = ("sft",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--base", type=Path, required=True, help="HF-format base model")
    p.add_argument("--demos", type=Path, required=True, help="folder of {train,val}.parquet demonstrations")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format SFT model (the best epoch)")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    p.add_argument("--checkpoints", type=Path, required=True, help="folder for resumable training state")
    args = p.parse_args()
    with cli.stage("sft", args, SECTIONS) as (cfg, run):
        c, common = cfg["sft"], cfg["common"]
        train.set_seed(common.seed)
        accel = train.accelerator(common.device, c.grad_accum)
        tokenizer = models.load_tokenizer(args.base)
        model = models.load_causal_lm(args.base, dropout=c.dropout)
        max_len = models.max_positions(model)
        tr, va = (pd.read_parquet(args.demos / f"{s}.parquet") for s in ("train", "val"))
        train_ex = data.encode_pairs(tokenizer, list(tr.prompt), list(tr.response), max_len)
        val_ex = data.encode_pairs(tokenizer, list(va.prompt), list(va.response), max_len)
        val_batches = [data.collate([val_ex[i] for i in idx], tokenizer.pad_token_id, left=True)
                       for idx in data.length_batches(val_ex, c.batch_size)]
        asked = list(va.prompt)[: c.eval_prompts or None]
        gold_prompts = [asked[i] for i in evaluation.world_prompt_positions(asked)]
        if c.select_by == "gold_score" and not gold_prompts:
            raise SystemExit(f"error: sft.select_by is gold_score, but none of the {len(asked)} validation "
                             f"prompts in {args.demos / 'val.parquet'} is a prompt of the embedded world, the only "
                             "prompts the gold labeler can score; set sft.select_by: val_loss")
        per_epoch = math.ceil(len(train_ex) / (c.batch_size * c.grad_accum * accel.num_processes))
        steps = c.epochs * per_epoch
        best_dir = args.checkpoints / "best"  # beside the training state: survives a kill and a rerun

        def on_eval(step: int, state: dict) -> None:
            """Score the epoch; keep the model when it is the best so far (rank 0 only)."""
            if not cli.is_main_process():
                return
            # `model` is the bare module (fit wraps it for DDP internally): no collective ops here
            row, by_family = {"sft/epoch": step / per_epoch, "sft/val_loss": lm.mean_lm_loss(model, val_batches)}, {}
            if gold_prompts:
                responses = models.generate(model, tokenizer, gold_prompts, c.max_new_tokens, do_sample=False)
                scores = evaluation.gold_scores(gold_prompts, responses)
                row["sft/val_gold_score"] = sum(scores) / len(scores)
                by_family = {f"sft/val_gold_score/{f}": s for f, s in evaluation.by_family(gold_prompts, scores).items()}
            run.log_metrics(row, step)
            score = row["sft/val_gold_score"] if c.select_by == "gold_score" else -row["sft/val_loss"]
            if score > state.get("best", -math.inf):
                state.update(best=score, best_epoch=row["sft/epoch"], best_by_family=by_family, best_row=row)
                models.save(model, tokenizer, best_dir)

        state: dict = {}
        run_id = train.fingerprint(config.as_dict(c), common.seed, accel.num_processes, train_ex)
        history = train.fit(model, data.example_batches(train_ex, c.batch_size, tokenizer.pad_token_id, common.seed, left=True),
                            lm.lm_loss_by_length(c.length_groups), steps=steps, lr=c.lr, warmup_steps=c.warmup_steps, grad_accum=c.grad_accum,
                            accel=accel, prefix="sft", on_step=lambda s, row: run.log_metrics(row, s),
                            eval_every=per_epoch * c.eval_every, on_eval=on_eval, checkpoint_dir=args.checkpoints,
                            checkpoint_every=common.checkpoint_every, run_id=run_id, state=state,
                            activation_checkpointing=c.activation_checkpointing, lora=c.lora)
        if cli.is_main_process():
            shutil.copytree(best_dir, args.out, dirs_exist_ok=True)
            shutil.rmtree(args.checkpoints)
            metrics = {"sft/train_loss": history[-1]["sft/loss"], "sft/steps": steps, "sft/best_epoch": state["best_epoch"],
                       **{k: v for k, v in state["best_row"].items() if k != "sft/epoch"}, **state["best_by_family"]}
            cli.write_curve(args.curves, history, {"loss": "sft/loss"})
            run.write_metrics(args.metrics, metrics)
            run.log_artifacts(args.out, "model")
            print(metrics)


if __name__ == "__main__":
    main()
