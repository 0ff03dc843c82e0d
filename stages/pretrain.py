"""Stage pretrain: train a BPE tokenizer and a small GPT-style base LM on the corpus, or load
the checkpoint named by pretrain.base and train nothing."""

import sys
import time
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

from rlhf import cli, config, data, lm, models, train  # noqa: E402

SECTIONS = ("pretrain",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--corpus", type=Path, nargs="+", required=True,
                   help="pretraining corpus files and folders (the synthesized corpus and data/import/corpus)")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format base model")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    p.add_argument("--checkpoints", type=Path, required=True, help="folder for resumable training state")
    p.add_argument("--tracked-base", type=Path, required=True,
                   help="the folder dvc.yaml lists as a dependency of this stage, for a base checkpoint of one's own")
    args = p.parse_args()
    with cli.stage("pretrain", args, SECTIONS) as (cfg, run):
        c, common = cfg["pretrain"], cfg["common"]
        train.set_seed(common.seed)
        accel = train.accelerator(common.device, c.grad_accum)
        train_docs, val_docs = data.split_corpus(data.read_corpus(args.corpus), common.seed)
        if c.base:
            tokenizer, model = models.load_tokenizer(c.base), models.load_causal_lm(c.base)
            if Path(c.base).is_dir() and not Path(c.base).resolve().is_relative_to(args.tracked_base.resolve()):
                print(f"note: DVC tracks pretrain.base={c.base} by its value only; a checkpoint replaced there in "
                      f"place reruns nothing. In {args.tracked_base}/ its files are a dependency of this stage.",
                      file=sys.stderr)
        else:
            tokenizer = models.train_tokenizer(train_docs, c.vocab_size)
            model = models.new_causal_lm(tokenizer, c.n_layer, c.n_head, c.n_embd, c.n_positions)
        block = models.text_block(model, c.n_positions)
        val_blocks = data.pack_blocks(tokenizer, val_docs, block)[: 4 * c.batch_size]
        val_batches = [data.lm_batch(x) for x in val_blocks.split(c.batch_size)]
        history, tokens_per_s = [], 0.0
        if not c.base:
            blocks = data.pack_blocks(tokenizer, train_docs, block)
            run_id = train.fingerprint(config.as_dict(c), common.seed, accel.num_processes, train.tensor_digest(blocks))
            start = time.perf_counter()
            history = train.fit(model, data.block_batches(blocks, c.batch_size, common.seed), lm.lm_loss,
                                steps=c.steps, lr=c.lr, warmup_steps=c.steps // 20, grad_accum=c.grad_accum,
                                accel=accel, prefix="pretrain", on_step=lambda s, row: run.log_metrics(row, s),
                                checkpoint_dir=args.checkpoints, checkpoint_every=common.checkpoint_every,
                                run_id=run_id)
            tokens = len(history) * c.batch_size * c.grad_accum * block * accel.num_processes
            tokens_per_s = tokens / (time.perf_counter() - start)
        if cli.is_main_process():
            cli.write_curve(args.curves, history, {"loss": "pretrain/loss"})
            models.save(model, tokenizer, args.out)
            metrics = {"pretrain/val_loss": lm.mean_lm_loss(model, val_batches),
                       "pretrain/tokens_per_s": tokens_per_s,
                       "pretrain/params": sum(p.numel() for p in model.parameters()),
                       "pretrain/vocab_size": len(tokenizer), "pretrain/processes": accel.num_processes}
            if history:
                metrics["pretrain/train_loss"] = history[-1]["pretrain/loss"]
            run.write_metrics(args.metrics, metrics)
            run.log_artifacts(args.out, "model")
            print(metrics)


if __name__ == "__main__":
    main()
