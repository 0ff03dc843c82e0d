"""What a new batch shape costs: one training step (forward, backward, AdamW) of the default GPT-2
model on batches of shapes it has not seen before, on the same shapes again, on shapes bucketed to
multiples (rows of 8, lengths of 16), and on one shape throughout.

    python benchmarks/batch_shapes.py [--device cpu|cuda] [--precision bf16|fp32] [--sdp default|no-cudnn|math]

Why: the stages batch by prompt, so every batch has its own (rows, length), the reward model's
most of all (rows = the sum of its prompts' K). On an H200 under bf16 autocast (torch 2.11) each
new shape cost about 175 ms once, and fp32 nothing (README "Training"). --sdp picks the
scaled-dot-product-attention kernels on CUDA (no-cudnn: all but cuDNN's; math: the plain one),
to tell whether the attention kernels' per-shape set-up is that cost. The padded batches have a
third of every row masked, as left padding does. Steps are timed one by one, the device
synchronised around each. Timings are figures, never a pass/fail. Prints a table, then as its last
line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from rlhf import config  # noqa: E402


def main() -> None:
    pre = config.load("pretrain", ROOT / "params.yaml")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="bf16: autocast on CUDA, as the stages train there (ignored on CPU, which trains in fp32)")
    p.add_argument("--sdp", choices=["default", "no-cudnn", "math"], default="default",
                   help="attention kernels torch may pick on CUDA")
    p.add_argument("--shapes", type=int, default=40, help="batches of each kind")
    p.add_argument("--min-rows", type=int, default=32)
    p.add_argument("--max-rows", type=int, default=72)
    p.add_argument("--min-len", type=int, default=40)
    p.add_argument("--max-len", type=int, default=pre.n_positions)
    p.add_argument("--n-layer", type=int, default=pre.n_layer)
    p.add_argument("--n-head", type=int, default=pre.n_head)
    p.add_argument("--n-embd", type=int, default=pre.n_embd)
    p.add_argument("--vocab-size", type=int, default=pre.vocab_size)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    if not (0 < args.min_rows <= args.max_rows and 3 <= args.min_len <= args.max_len):
        p.error("need 0 < --min-rows <= --max-rows and 3 <= --min-len <= --max-len")
    if args.threads:
        torch.set_num_threads(args.threads)
    on_cuda = args.device == "cuda"
    if on_cuda and args.sdp != "default":
        torch.backends.cuda.enable_cudnn_sdp(False)
        if args.sdp == "math":
            torch.backends.cuda.enable_flash_sdp(False)
            torch.backends.cuda.enable_mem_efficient_sdp(False)
    autocast = on_cuda and args.precision == "bf16"

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab_size, n_positions=args.max_len, n_embd=args.n_embd,
                                       n_layer=args.n_layer, n_head=args.n_head, bos_token_id=0, eos_token_id=0,
                                       pad_token_id=0)).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    def step(rows: int, length: int) -> float:
        ids = torch.randint(1, args.vocab_size, (rows, length), device=args.device)
        mask = torch.ones(rows, length, dtype=torch.long, device=args.device)
        mask[:, : length // 3] = 0  # left padding
        labels = ids.masked_fill(mask == 0, -100)
        sync()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        sync()
        return (time.perf_counter() - start) * 1e3

    def draw() -> tuple[int, int]:
        return rng.randint(args.min_rows, args.max_rows), rng.randint(args.min_len, args.max_len)

    fixed = ((args.min_rows + args.max_rows) // 2, (args.min_len + args.max_len) // 2)
    for _ in range(5):  # process start-up costs (CUDA context, first kernels) land here, untimed
        step(*fixed)
    seen = {fixed}
    new = []
    while len(new) < args.shapes:  # shapes not seen before, none twice
        s = draw()
        if s not in seen:
            seen.add(s)
            new.append(s)
    up = lambda x, m: -(-x // m) * m  # noqa: E731
    bucketed = [(up(r, 8), min(up(n, 16), args.max_len)) for r, n in (draw() for _ in range(args.shapes))]
    kinds = {"new shapes": [step(*s) for s in new], "the same shapes again": [step(*s) for s in new],
             f"bucketed ({len(set(bucketed) - seen)} new of {len(bucketed)})": [step(*s) for s in bucketed],
             "one shape": [step(*fixed) for _ in range(args.shapes)]}
    stats = {k: {"mean_ms": sum(v) / len(v), "median_ms": sorted(v)[len(v) // 2], "max_ms": max(v)}
             for k, v in kinds.items()}
    first, again = stats["new shapes"]["mean_ms"], stats["the same shapes again"]["mean_ms"]
    bucket = next(v for k, v in stats.items() if k.startswith("bucketed"))["mean_ms"]

    device = torch.cuda.get_device_name() if on_cuda else f"CPU, {torch.get_num_threads()} threads"
    n_params = sum(x.numel() for x in model.parameters())
    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd} ({args.n_head} heads), {n_params:,} parameters; "
          f"torch {torch.__version__}, {device}, {'bf16 autocast' if autocast else 'fp32'}, sdp {args.sdp}")
    print(f"batches: rows {args.min_rows}..{args.max_rows}, length {args.min_len}..{args.max_len}, "
          f"{args.shapes} of each kind")
    print()
    print(f"{'batches':<28}{'mean ms':>10}{'median ms':>11}{'max ms':>9}")
    for k, v in stats.items():
        print(f"{k:<28}{v['mean_ms']:>10.1f}{v['median_ms']:>11.1f}{v['max_ms']:>9.1f}")
    print()
    print(f"a new shape costs {first - again:.1f} ms once (new minus the same shapes again)")
    print(json.dumps({"device": args.device, "precision": "bf16" if autocast else "fp32", "sdp": args.sdp,
                      "new_shape_ms": round(first, 2), "same_shapes_again_ms": round(again, 2),
                      "bucketed_ms": round(bucket, 2), "one_shape_ms": round(stats["one shape"]["mean_ms"], 2),
                      "cost_per_new_shape_ms": round(first - again, 2), "shapes": args.shapes,
                      "model_params": n_params}), flush=True)


if __name__ == "__main__":
    main()
