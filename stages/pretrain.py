"""Stage pretrain: train a BPE tokenizer and a small GPT-style base LM on the corpus, or load
the checkpoint named by pretrain.base and train nothing."""

import random
import time
from pathlib import Path

from rlhf import cli, data, lm, models, train

SECTIONS = ("pretrain",)
HELD_OUT = 0.05  # share of corpus documents kept for the validation loss


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--corpus", type=Path, required=True, help="pretraining corpus (JSONL)")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format base model")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    args = p.parse_args()
    with cli.stage("pretrain", args, SECTIONS) as (cfg, run):
        c, seed = cfg["pretrain"], cfg["common"].seed
        train.set_seed(seed)
        device = models.pick_device(cfg["common"].device)
        docs = data.read_corpus(args.corpus)
        random.Random(seed).shuffle(docs)
        n_val = max(1, int(len(docs) * HELD_OUT))
        val_docs, train_docs = docs[:n_val], docs[n_val:]
        if c.base:
            tokenizer, model = models.load_tokenizer(c.base), models.load_causal_lm(c.base)
            history, tokens_per_s = [], 0.0
        else:
            tokenizer = models.train_tokenizer(train_docs, c.vocab_size)
            model = models.new_causal_lm(tokenizer, c.n_layer, c.n_head, c.n_embd, c.n_positions)
        model.to(device)
        block = min(c.n_positions, models.max_positions(model))
        val_blocks = data.pack_blocks(tokenizer, val_docs, block)[: 4 * c.batch_size]
        val_batches = [data.lm_batch(x) for x in val_blocks.split(c.batch_size)]
        if not c.base:
            blocks = data.pack_blocks(tokenizer, train_docs, block)
            start = time.perf_counter()
            history = train.fit(model, data.block_batches(blocks, c.batch_size, seed), lm.lm_loss,
                                steps=c.steps, lr=c.lr, warmup_steps=c.steps // 20, prefix="pretrain",
                                on_step=lambda s, row: run.log_metrics(row, s))
            tokens_per_s = c.steps * c.batch_size * block / (time.perf_counter() - start)
        cli.write_curve(args.curves, history, {"loss": "pretrain/loss"})
        models.save(model, tokenizer, args.out)
        metrics = {"pretrain/val_loss": lm.mean_lm_loss(model, val_batches),
                   "pretrain/tokens_per_s": tokens_per_s,
                   "pretrain/params": sum(p.numel() for p in model.parameters()),
                   "pretrain/vocab_size": len(tokenizer)}
        if history:
            metrics["pretrain/train_loss"] = history[-1]["pretrain/loss"]
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.out, "model")
        print(metrics)


if __name__ == "__main__":
    main()
