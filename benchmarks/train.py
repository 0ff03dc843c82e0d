"""Training throughput of the project's loop (`rlhf.train.fit`), and the same SFT job run by the
Hugging Face `Trainer` in the same process for comparison.

    python benchmarks/train.py [--steps 100] [--batch-size 32] [--seq-len 128] [--n-layer 2] [--n-embd 128]

Builds its own data in a temporary folder with the project's code: the world's pretraining corpus,
demonstrations (world prompts of every family with their gold answers), a byte-level BPE tokenizer
and a GPT-2-style model sized by `params.yaml`'s `pretrain` section (flags override). Then:

1. pretrain: `fit` + `lm_loss` on packed blocks for --steps steps;
2. SFT, ours: `fit` on `encode_pairs` examples padded per batch by `example_batches`
   (response-only labels), starting from the model of step 1; padded on the left, as the sft stage
   does, so that `lm_loss` runs the LM head over the response span only;
3. SFT, HF `Trainer`: the same initial weights (a deep copy taken before either SFT run), the same
   examples in the same batches in the same order (padded on the right, its usual collator) (a sampler that replays `example_batches`'
   shuffle), the same AdamW and cosine-with-warmup schedule, clipping at 1.0, no eval, no saving.

Throughput is measured from the end of step 2 to the end of the last step (per-step timestamps),
so the first two steps (allocation, lazy initialisation) are excluded from both. On CUDA an
untimed SFT run over the same batches comes first: under bf16 each batch shape not seen before
costs about 175 ms once (benchmarks/batch_shapes.py), which would otherwise fall on whichever side
runs first. SFT tokens are the non-pad tokens processed (sum of attention_mask); padded tokens are
reported too. Both SFT runs' per-step losses are compared to show they did the same maths.
Timings are figures, never a pass/fail. Prints a table, then as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from rlhf import cli, config, data, lm, models, train, world  # noqa: E402
from rlhf.losses import IGNORE  # noqa: E402

WARMUP_STEPS = 2  # steps excluded from every throughput figure


def build_data(folder: Path, seed: int, n_docs: int, n_demos: int) -> tuple[list[str], list[str], list[str]]:
    """The world's corpus and demonstrations, written to `folder` and read back with the
    project's reader; returns (docs, prompts, responses)."""
    docs = world.generate_corpus(random.Random(seed), n_docs)
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    rng = random.Random(seed + 1)
    prompts, responses = [], []
    i = 0
    while len(prompts) < n_demos:
        prompt = world.make_prompt(rng, world.FAMILIES[i % len(world.FAMILIES)])
        i += 1
        answer = world.gold_answer(prompt)
        if answer is not None:
            prompts.append(prompt)
            responses.append(answer)
    (folder / "demos.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in zip(prompts, responses)))
    return data.read_corpus(corpus), prompts, responses


def throughput(stamps: list[float], tokens_per_step: list[int]) -> tuple[float, float, int]:
    """(tokens/s, seconds, tokens) over the steps after the warm-up steps; `stamps[i]` is the end
    time of step i, `tokens_per_step[i]` its tokens."""
    seconds = stamps[-1] - stamps[WARMUP_STEPS - 1]
    tokens = sum(tokens_per_step[WARMUP_STEPS:len(stamps)])
    return tokens / seconds, seconds, tokens


def tapped(batches, log: list):
    """Pass batches through, keeping each one (to count its tokens and compare the order)."""
    for b in batches:
        log.append(b)
        yield b


def pretrain(model, blocks: torch.Tensor, args, lr: float) -> dict:
    stamps: list[float] = []
    history = train.fit(model, data.block_batches(blocks, args.batch_size, args.seed), lm.lm_loss,
                        steps=args.steps, lr=lr, warmup_steps=args.steps // 20, accel=train.accelerator(args.device),
                        prefix="pretrain", on_step=lambda s, row: stamps.append(time.perf_counter()))
    per_step = [args.batch_size * blocks.shape[1]] * args.steps
    tps, seconds, tokens = throughput(stamps, per_step)
    return {"tokens_per_s": tps, "seconds": seconds, "tokens": tokens,
            "final_loss": history[-1]["pretrain/loss"]}


def sft_ours(model, examples: list[dict], pad_id: int, args, lr: float, warmup: int) -> dict:
    stamps: list[float] = []
    seen: list[dict] = []
    batches = tapped(data.example_batches(examples, args.batch_size, pad_id, args.seed, left=True), seen)
    torch.manual_seed(args.seed)
    history = train.fit(model, batches, lm.lm_loss, steps=args.steps, lr=lr, warmup_steps=warmup,
                        grad_clip=1.0, accel=train.accelerator(args.device), prefix="sft",
                        on_step=lambda s, row: stamps.append(time.perf_counter()))
    return summarise(stamps, seen, [row["sft/loss"] for row in history])


def sft_hf(model, examples: list[dict], pad_id: int, args, lr: float, warmup: int, out_dir: Path) -> dict:
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    class Examples(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return self.rows[i]

    class SameOrder(torch.utils.data.Sampler):
        """Each epoch the index order `data.example_batches` uses: one random.Random(seed)
        reshuffling one list in place, epoch after epoch."""

        def __init__(self, n: int, seed: int):
            self.n, self.rng, self.order = n, random.Random(seed), list(range(n))

        def __len__(self):
            return self.n

        def __iter__(self):
            self.rng.shuffle(self.order)
            return iter(list(self.order))

    seen: list[dict] = []
    on_cuda = args.device == "cuda"

    def collator(features: list[dict]) -> dict:
        """Right padding with the pad id; labels IGNORE (-100) on padding (the prompt's are
        already IGNORE in the examples)."""
        pad = torch.nn.utils.rnn.pad_sequence
        ids = [torch.tensor(f["input_ids"]) for f in features]
        batch = {"input_ids": pad(ids, batch_first=True, padding_value=pad_id),
                 "attention_mask": pad([torch.ones_like(x) for x in ids], batch_first=True, padding_value=0),
                 "labels": pad([torch.tensor(f["labels"]) for f in features], batch_first=True,
                               padding_value=IGNORE)}
        seen.append(batch)
        return batch

    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if on_cuda:  # the step's kernels have run, as fit's loss.item() makes sure for ours
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    losses: list[torch.Tensor] = []

    class BenchTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            if args.hf_order == "ours":
                return SameOrder(len(self.train_dataset), args.seed)
            return super()._get_train_sampler(train_dataset)

        def training_step(self, *a, **kw):
            loss = super().training_step(*a, **kw)
            losses.append(loss)  # already detached; no sync here
            return loss

    targs = dict(output_dir=str(out_dir), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                 gradient_accumulation_steps=1, learning_rate=lr, weight_decay=0.0, max_grad_norm=1.0,
                 eval_strategy="no", save_strategy="no", logging_strategy="no", report_to=[],
                 disable_tqdm=True, use_cpu=not on_cuda, bf16=on_cuda, dataloader_num_workers=0, dataloader_pin_memory=False,
                 remove_unused_columns=False, seed=args.seed)
    optimizers = (None, None)
    if args.hf_optimizer == "ours":
        # the same optimizer and LR schedule objects fit() builds
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: train.cosine_with_warmup(s, args.steps, warmup))
        optimizers = (opt, sched)
    else:  # the Trainer's own: torch AdamW built by it, its cosine schedule with linear warmup from 0
        targs.update(optim="adamw_torch", lr_scheduler_type="cosine", warmup_steps=warmup)
    trainer = BenchTrainer(model=model, args=TrainingArguments(**targs), train_dataset=Examples(examples),
                           data_collator=collator, optimizers=optimizers, callbacks=[Stamp()])
    trainer.remove_callback(PrinterCallback)  # it would print the end-of-training metrics
    torch.manual_seed(args.seed)
    trainer.train()
    return summarise(stamps, seen, [x.item() for x in losses])


def summarise(stamps: list[float], seen: list[dict], losses: list[float]) -> dict:
    steps = len(stamps)
    real = [int(b["attention_mask"].sum()) for b in seen[:steps]]
    padded = [b["input_ids"].numel() for b in seen[:steps]]
    tps, seconds, tokens = throughput(stamps, real)
    return {"tokens_per_s": tps, "padded_tokens_per_s": throughput(stamps, padded)[0], "seconds": seconds,
            "tokens": tokens, "padded_tokens": sum(padded[WARMUP_STEPS:]), "losses": losses,
            "final_loss": losses[-1], "batches": seen[:steps], "steps": steps}


def combine(results: list[dict]) -> dict:
    """Several runs of one side: throughput over all their timed steps; losses and batches of the
    first run (every run of a side does the same maths on the same batches)."""
    seconds = sum(r["seconds"] for r in results)
    tokens = sum(r["tokens"] for r in results)
    padded = sum(r["padded_tokens"] for r in results)
    return {**results[0], "seconds": seconds, "tokens": tokens, "padded_tokens": padded,
            "tokens_per_s": tokens / seconds, "padded_tokens_per_s": padded / seconds,
            "per_run_tokens_per_s": [r["tokens_per_s"] for r in results],
            "final_losses": [r["final_loss"] for r in results]}


def same_batches(a: list[dict], b: list[dict]) -> bool:
    """The same examples in the same batches and order, whichever side each batch is padded on."""
    def rows(batch: dict) -> list[tuple]:
        keep = batch["attention_mask"].bool()
        return [(tuple(i[m].tolist()), tuple(lab[m].tolist()))
                for i, lab, m in zip(batch["input_ids"], batch["labels"], keep)]
    return len(a) == len(b) and all(rows(x) == rows(y) for x, y in zip(a, b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pre = config.load("pretrain", ROOT / "params.yaml")
    sft = config.load("sft", ROOT / "params.yaml")
    world_cfg = config.load("world", ROOT / "params.yaml")
    common = config.load("common", ROOT / "params.yaml")
    p.add_argument("--steps", type=int, default=100,
                   help="optimizer steps of each of the three runs (the first 2 are not timed)")
    p.add_argument("--batch-size", type=int, default=pre.batch_size)
    p.add_argument("--seq-len", type=int, default=pre.n_positions,
                   help="pretraining block length, the model's positions and the SFT truncation length")
    p.add_argument("--n-layer", type=int, default=pre.n_layer)
    p.add_argument("--n-head", type=int, default=pre.n_head)
    p.add_argument("--n-embd", type=int, default=pre.n_embd)
    p.add_argument("--vocab-size", type=int, default=pre.vocab_size)
    p.add_argument("--docs", type=int, default=world_cfg.corpus_docs, help="corpus documents")
    p.add_argument("--demos", type=int, default=1500, help="demonstrations (SFT examples)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="SFT dropout (the pipeline uses sft.dropout; with dropout > 0 the two SFT runs draw "
                        "different masks, so their losses no longer match step for step)")
    p.add_argument("--hf-order", choices=["ours", "hf"], default="ours",
                   help="Trainer batch order: 'ours' replays example_batches' shuffle (identical batches), "
                        "'hf' is the Trainer's own random sampler")
    p.add_argument("--hf-optimizer", choices=["ours", "hf"], default="ours",
                   help="'ours' gives the Trainer the AdamW + cosine_with_warmup that fit() uses; 'hf' lets it "
                        "build its own (optim adamw_torch, lr_scheduler_type cosine: its warmup starts at 0)")
    p.add_argument("--rounds", type=int, default=2,
                   help="SFT runs of each side, in alternating order (ours, HF, HF, ours, ...); the SFT figures "
                        "are over all of them")
    p.add_argument("--threads", type=int, default=cli.cores())
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: both sides on the GPU with bf16 autocast (fit through accelerate, the Trainer with bf16=True)")
    p.add_argument("--seed", type=int, default=common.seed)
    args = p.parse_args()
    if args.steps <= WARMUP_STEPS:
        p.error(f"--steps must be more than the {WARMUP_STEPS} warm-up steps")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    torch.set_num_threads(args.threads)
    train.set_seed(args.seed)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        docs, prompts, responses = build_data(tmp, args.seed, args.docs, args.demos)
        tokenizer = models.train_tokenizer(docs, args.vocab_size)
        torch.manual_seed(args.seed)
        model = models.new_causal_lm(tokenizer, args.n_layer, args.n_head, args.n_embd, args.seq_len)
        n_params = sum(p.numel() for p in model.parameters())
        blocks = data.pack_blocks(tokenizer, docs, args.seq_len)
        examples = data.encode_pairs(tokenizer, prompts, responses, args.seq_len)
        setup_s = time.perf_counter() - started

        pt = pretrain(model, blocks, args, pre.lr)

        # SFT starts from the pretrained weights; both copies are taken before either SFT run
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            setattr(model.config, name, args.dropout)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = args.dropout
        # every SFT run starts from its own deep copy of the same pretrained weights, taken before
        # any SFT run trains; rounds alternate the order (ours, HF, HF, ours, ...) so that a machine
        # getting busier or quieter during the benchmark does not favour one side
        runs: dict[str, list[tuple[dict, torch.nn.Module]]] = {"ours": [], "hf": []}
        cold = None
        if args.device == "cuda":
            # CUDA pays once per new batch shape (kernel choice, memory pool growth); both sides see
            # the same shapes, so an untimed run over the same batches first keeps that cost off
            # whichever side would run first
            cold = sft_ours(copy.deepcopy(model), examples, tokenizer.pad_token_id, args, sft.lr, sft.warmup_steps)
        copies = [(copy.deepcopy(model), copy.deepcopy(model)) for _ in range(args.rounds)]
        for r, (ours_model, hf_model) in enumerate(copies):
            for side in (("ours", "hf") if r % 2 == 0 else ("hf", "ours")):
                if side == "ours":
                    result = sft_ours(ours_model, examples, tokenizer.pad_token_id, args, sft.lr, sft.warmup_steps)
                else:
                    result = sft_hf(hf_model, examples, tokenizer.pad_token_id, args, sft.lr, sft.warmup_steps,
                                    tmp / f"hf-{r}")
                runs[side].append((result, ours_model if side == "ours" else hf_model))

    ours, hf = combine([r for r, _ in runs["ours"]]), combine([r for r, _ in runs["hf"]])
    ours_model, hf_model = runs["ours"][0][1], runs["hf"][0][1]
    identical = same_batches(ours["batches"], hf["batches"])
    diffs = [abs(a - b) for a, b in zip(ours["losses"], hf["losses"])]
    weight_diff = max((a - b).abs().max().item()
                      for a, b in zip(ours_model.state_dict().values(), hf_model.state_dict().values()))
    ratio = ours["tokens_per_s"] / hf["tokens_per_s"]
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    cut = sum(len(e["input_ids"]) == args.seq_len for e in examples)
    measured = args.steps - WARMUP_STEPS

    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd} ({args.n_head} heads), {n_params:,} parameters, "
          f"vocab {len(tokenizer)}; torch {torch.__version__}, {args.device}, {args.threads} threads")
    print(f"data: {len(docs)} docs -> {len(blocks)} blocks of {args.seq_len}; {len(examples)} SFT examples, "
          f"mean {mean_len:.1f} tokens ({cut} cut at --seq-len); batch {args.batch_size}; {args.steps} steps per run, "
          f"throughput over steps {WARMUP_STEPS + 1}..{args.steps} ({measured} steps)")
    print()
    print(f"{'run':<22}{'tokens/s':>12}{'padded tok/s':>14}{'s/step':>9}{'final loss':>12}")
    print(f"{'pretrain (ours)':<22}{pt['tokens_per_s']:>12,.0f}{pt['tokens_per_s']:>14,.0f}"
          f"{pt['seconds'] / measured:>9.3f}{pt['final_loss']:>12.4f}")
    for name, r in (("sft (ours: fit)", ours), ("sft (HF Trainer)", hf)):
        print(f"{name:<22}{r['tokens_per_s']:>12,.0f}{r['padded_tokens_per_s']:>14,.0f}"
              f"{r['seconds'] / (measured * args.rounds):>9.3f}{r['final_loss']:>12.4f}")
    print()
    print(f"sft: {args.rounds} run(s) per side, alternating order; tokens/s per run: ours "
          + ", ".join(f"{x:,.0f}" for x in ours["per_run_tokens_per_s"]) + "; HF "
          + ", ".join(f"{x:,.0f}" for x in hf["per_run_tokens_per_s"]))
    if cold:
        print(f"sft warm-up run (ours, untimed, first over these batch shapes on CUDA): {cold['tokens_per_s']:,.0f} "
              "tokens/s")
    print(f"sft tokens/s ours / HF Trainer: {ratio:.3f} (>= 1.0 means ours is at least as fast)")
    order = ("identical batches in the same order (Trainer sampler replays example_batches' shuffle; "
             "verified batch by batch)" if identical else
             f"different batches or order (--hf-order {args.hf_order}): losses are not comparable step by step")
    print(f"sft batch order: {order}")
    optim = ("the same torch AdamW + cosine_with_warmup schedule objects" if args.hf_optimizer == "ours"
             else "the Trainer's own (optim adamw_torch, lr_scheduler_type cosine)")
    print(f"sft optimizer: {optim}; dropout {args.dropout}")
    print(f"sft same maths: per-step training loss |ours - HF| max {max(diffs):.2e}, mean "
          f"{sum(diffs) / len(diffs):.2e} over {len(diffs)} steps; final weights max |diff| {weight_diff:.2e}; "
          f"final losses of every run: ours {ours['final_losses']}, HF {hf['final_losses']}")
    print(f"set-up (data, tokenizer, model) {setup_s:.1f} s; whole benchmark {time.perf_counter() - started:.1f} s")
    print(json.dumps({
        "pretrain_tokens_per_s": round(pt["tokens_per_s"], 1),
        "sft_tokens_per_s": round(ours["tokens_per_s"], 1),
        "hf_trainer_sft_tokens_per_s": round(hf["tokens_per_s"], 1),
        "ratio_ours_over_hf": round(ratio, 4),
        "sft_final_loss_ours": round(ours["final_loss"], 6),
        "sft_final_loss_hf": round(hf["final_loss"], 6),
        "device": args.device, "steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
        "model_params": n_params, "sft_warmup_run_tokens_per_s": round(cold["tokens_per_s"], 1) if cold else None,
    }), flush=True)


if __name__ == "__main__":
    main()
