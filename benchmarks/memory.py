"""Activation checkpointing (`<stage>.activation_checkpointing`): the memory a training step holds
and the time it takes, with and without it, on the project's loop (`rlhf.train.fit`).

    python benchmarks/memory.py [--n-layer 6] [--n-embd 512] [--batch-size 8] [--seq-len 256] [--device cpu]

A GPT-2-style model of the given shape trains `--steps` steps of the next-token loss (`lm.lm_loss`,
as pretraining and SFT compute it) on random token blocks, once without activation checkpointing
and once with it, each in a fresh process so that neither inherits the other's memory. Memory is
the process's peak: on CPU its peak resident set (`ru_maxrss`) and that peak minus the resident set
just before training (what training added: gradients, AdamW's two moments and the activations),
with glibc's allocator set as the stages set it (`rlhf.startup.tune_malloc`); on CUDA
`torch.cuda.max_memory_allocated` (bf16 autocast, as the stages train there) and the same peak
minus the model's own weights. Time is the median step after the first two. Both runs start from
the same weights and batches, so their losses must agree step for step (the largest difference is
printed). Figures, never a pass/fail. Prints a table, then as its last line one JSON object.
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

    from rlhf import data, lm, train

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab_size, n_positions=args.seq_len, n_embd=args.n_embd,
                                       n_layer=args.n_layer, n_head=args.n_head,
                                       activation_function="gelu_pytorch_tanh",
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    blocks = torch.randint(0, args.vocab_size, (args.batch_size * args.steps, args.seq_len),
                           generator=torch.Generator().manual_seed(args.seed))
    cuda = args.device == "cuda"
    accel = train.accelerator(args.device)
    before = resident_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []

    def on_step(step: int, row: dict) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    history = train.fit(model, data.block_batches(blocks, args.batch_size, args.seed), lm.lm_loss,
                        steps=args.steps, lr=1e-4, accel=accel, on_step=on_step,
                        activation_checkpointing=args.child == "on")
    steps = [b - a for a, b in zip([start, *stamps], stamps)][WARMUP_STEPS:]
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        added = peak - weights
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        added = peak - before
    return {"peak_mb": peak / 2**20, "training_mb": added / 2**20, "s_per_step": statistics.median(steps),
            "losses": [h["train/loss"] for h in history], "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=512)
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=6, help=f"optimizer steps per run (the first {WARMUP_STEPS} untimed)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the CPUs this process may use)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", choices=["off", "on"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps <= WARMUP_STEPS:
        p.error(f"--steps must be more than the {WARMUP_STEPS} untimed steps")
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
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--threads", str(args.threads), "--child", mode],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"the run with activation checkpointing {mode} failed:\n{out.stderr[-3000:]}")
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    off, on = runs["off"], runs["on"]
    loss_diff = max(abs(a - b) for a, b in zip(off["losses"], on["losses"]))
    memory = "peak allocated (CUDA)" if args.device == "cuda" else "peak resident set"
    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd} ({args.n_head} heads), {off['params']:,} parameters, "
          f"vocab {args.vocab_size}; batch {args.batch_size} x {args.seq_len} tokens; {args.device}, "
          f"{args.threads} threads; {args.steps} steps, step time the median after step {WARMUP_STEPS}")
    print()
    print(f"{'activation checkpointing':<26}{memory + ' MiB':>28}{'added by training MiB':>24}{'s/step':>9}")
    for mode, r in (("off", off), ("on", on)):
        print(f"{mode:<26}{r['peak_mb']:>28,.0f}{r['training_mb']:>24,.0f}{r['s_per_step']:>9.3f}")
    print()
    print(f"the same maths: the two runs' losses differ by at most {loss_diff:.2e}")
    result = {"device": args.device, "model_params": off["params"], "n_layer": args.n_layer, "n_embd": args.n_embd,
              "batch_size": args.batch_size, "seq_len": args.seq_len, "steps": args.steps,
              "peak_mb_off": off["peak_mb"], "peak_mb_on": on["peak_mb"],
              "training_mb_off": off["training_mb"], "training_mb_on": on["training_mb"],
              "training_memory_ratio_on_over_off": on["training_mb"] / off["training_mb"],
              "s_per_step_off": off["s_per_step"], "s_per_step_on": on["s_per_step"],
              "time_ratio_on_over_off": on["s_per_step"] / off["s_per_step"], "max_loss_difference": loss_diff}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
