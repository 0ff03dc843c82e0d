"""Activation checkpointing and LoRA (`<stage>.activation_checkpointing`, `<stage>.lora`): the
memory a training step holds and the time it takes, with and without each, on the project's loop
(`rlhf.train.fit`).

    python benchmarks/memory.py [--n-layer 6] [--n-embd 512] [--batch-size 8] [--seq-len 256]
                                [--lora-rank 8] [--device cpu]

A GPT-2-style model of the given shape trains `--steps` steps of the next-token loss (`lm.lm_loss`,
as pretraining and SFT compute it) on random token blocks four times: every weight trained without
and with activation checkpointing, then LoRA of rank `--lora-rank` on every linear layer of the
blocks (`target_modules: all-linear`) without and with it; each in a fresh process so that none
inherits another's memory. Memory is the process's peak: on CPU its peak resident set (`ru_maxrss`)
and that peak minus the resident set just before training (what training added: gradients, AdamW's
two moments and the activations), with glibc's allocator set as the stages set it
(`rlhf.startup.tune_malloc`); on CUDA `torch.cuda.max_memory_allocated` (bf16 autocast, as the
stages train there) and the same peak minus the model's own weights; beside them, the gradients and
AdamW's moments of the trained parameters, which LoRA shrinks (12 bytes each). Time is the median
step after the first two. All runs start from the same weights and batches: checkpointing must not
change the losses (the largest difference is printed), and LoRA's first loss is full training's
(its updates start at zero). Figures, never a pass/fail. Prints a table, then as its last line one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

WARMUP_STEPS = 2  # steps left out of the step time
# the four runs: (LoRA, activation checkpointing)
MODES = {"full": (False, False), "full_ckpt": (False, True), "lora": (True, False), "lora_ckpt": (True, True)}


def state_mb(trainable: int) -> float:
    """MiB of the gradients and AdamW's two moments of `trainable` float32 parameters: what training
    keeps per trained weight, whatever the activations."""
    return 3 * 4 * trainable / 2**20


def resident_bytes() -> int:
    """This process's resident set now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(args) -> dict:
    """One training run in this process; its figures."""
    from rlhf import startup

    startup.tune_malloc()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf import config, data, lm, train

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab_size, n_positions=args.seq_len, n_embd=args.n_embd,
                                       n_layer=args.n_layer, n_head=args.n_head,
                                       activation_function="gelu_pytorch_tanh",
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable: list[int] = []
    blocks = torch.randint(0, args.vocab_size, (args.batch_size * args.steps, args.seq_len),
                           generator=torch.Generator().manual_seed(args.seed))
    cuda = args.device == "cuda"
    accel = train.accelerator(args.device)
    lora, checkpointing = MODES[args.child]
    if lora:
        import peft  # noqa: F401  (fit imports it; its modules are not what training adds)
    before = resident_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []

    def on_step(step: int, row: dict) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        if not trainable:  # under LoRA, the adapters (the weights are frozen until training ends)
            trainable.append(sum(p.numel() for p in model.parameters() if p.requires_grad))

    start = time.perf_counter()
    history = train.fit(model, data.block_batches(blocks, args.batch_size, args.seed), lm.lm_loss,
                        steps=args.steps, lr=1e-4, accel=accel, on_step=on_step, activation_checkpointing=checkpointing,
                        lora=config.LoraConfig(rank=args.lora_rank, alpha=2.0 * args.lora_rank, dropout=0.0,
                                               target_modules="all-linear") if lora else None)
    steps = [b - a for a, b in zip([start, *stamps], stamps)][WARMUP_STEPS:]
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        added = peak - weights
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        added = peak - before
    return {"peak_mb": peak / 2**20, "training_mb": added / 2**20, "s_per_step": statistics.median(steps),
            "losses": [h["train/loss"] for h in history], "params": sum(p.numel() for p in model.parameters()),
            "trainable": trainable[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=6, help=f"optimizer steps per run (the first {WARMUP_STEPS} untimed)")
    p.add_argument("--lora-rank", type=int, default=8, help="rank of the LoRA runs (alpha = 2 x rank)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps <= WARMUP_STEPS:
        p.error(f"--steps must be more than the {WARMUP_STEPS} untimed steps")
    if args.lora_rank < 1:
        p.error("--lora-rank must be at least 1")
    if args.device == "cuda" and not args.child:
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda, but torch sees no CUDA device")
    if args.threads is None:
        from rlhf import cli

        args.threads = cli.cores()
    if args.child:
        print(json.dumps(child(args)))
        return

    runs = {}
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--threads", str(args.threads), "--child", mode],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"the {mode} run failed:\n{out.stderr[-3000:]}")
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    full = runs["full"]

    def loss_diff(a: str, b: str) -> float:
        return max(abs(x - y) for x, y in zip(runs[a]["losses"], runs[b]["losses"]))

    memory = "peak allocated (CUDA)" if args.device == "cuda" else "peak resident set"
    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd} ({args.n_head} heads), {full['params']:,} parameters, "
          f"vocab {args.vocab_size}; batch {args.batch_size} x {args.seq_len} tokens; {args.device}, "
          f"{args.threads} threads; {args.steps} steps, step time the median after step {WARMUP_STEPS}; "
          f"LoRA rank {args.lora_rank} on every linear layer of the blocks")
    print()
    print(f"{'weights trained':<18}{'checkpointing':>14}{'trained params':>16}{'grads + AdamW MiB':>19}"
          f"{memory + ' MiB':>28}{'added by training MiB':>24}{'s/step':>9}")
    for mode, (lora, checkpointing) in MODES.items():
        r = runs[mode]
        print(f"{'LoRA' if lora else 'all':<18}{'on' if checkpointing else 'off':>14}{r['trainable']:>16,}"
              f"{state_mb(r['trainable']):>19,.1f}{r['peak_mb']:>28,.0f}{r['training_mb']:>24,.0f}"
              f"{r['s_per_step']:>9.3f}")
    print()
    print(f"the same maths: checkpointing changes the losses by at most {loss_diff('full', 'full_ckpt'):.2e} "
          f"(all weights) and {loss_diff('lora', 'lora_ckpt'):.2e} (LoRA); LoRA's first loss is full training's "
          f"to {abs(runs['lora']['losses'][0] - full['losses'][0]):.2e}")
    result = {"device": args.device, "model_params": full["params"], "n_layer": args.n_layer, "n_embd": args.n_embd,
              "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps, "lora_rank": args.lora_rank}
    for mode, r in runs.items():
        result.update({f"peak_mb_{mode}": r["peak_mb"], f"training_mb_{mode}": r["training_mb"],
                       f"s_per_step_{mode}": r["s_per_step"], f"trainable_params_{mode}": r["trainable"],
                       f"grads_and_adamw_mb_{mode}": state_mb(r["trainable"])})
    for mode in ("full_ckpt", "lora", "lora_ckpt"):
        result[f"training_memory_ratio_{mode}_over_full"] = runs[mode]["training_mb"] / full["training_mb"]
        result[f"time_ratio_{mode}_over_full"] = runs[mode]["s_per_step"] / full["s_per_step"]
    result.update({"max_loss_difference_checkpointing": max(loss_diff("full", "full_ckpt"),
                                                            loss_diff("lora", "lora_ckpt")),
                   "first_loss_difference_lora": abs(runs["lora"]["losses"][0] - full["losses"][0])})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
