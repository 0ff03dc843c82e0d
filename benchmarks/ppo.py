"""PPO throughput of the project's trainer (`rlhf.ppo.PPOTrainer`), and of TRL's PPOTrainer on
the same job in the same process for comparison.

    python benchmarks/ppo.py [--device cpu|cuda] [--steps 8] [--batch-size 32] [--max-new-tokens 16]

Self-contained and offline: it builds the world's corpus and prompts, a byte-level BPE tokenizer, a
GPT-2-style policy sized by `params.yaml`'s `pretrain` section and a reward model of the same shape
(its scalar head on the same trunk), saves both to a temporary folder, and both sides load them from
there: policy and reference from the policy, reward and value model from the RM. Both run plain PPO
(no ptx; TRL has none) with the same batch (episodes per iteration), minibatch, PPO epochs,
response length (stopping at EOS), temperature 1, learning rate, KL coefficient, clip ranges and
GAE settings, and on CUDA both under bf16 autocast (TRL's through ACCELERATE_MIXED_PRECISION,
which its bare Accelerator() reads; the run stops if TRL's accelerator is not in bf16). TRL runs
with gradient checkpointing off (its default is on, which would only slow it), no sample
generations and no saving.

Episodes/s is measured from the end of the warm-up iterations to the end of the last one (per
iteration timestamps: TRL's `on_step_end`, our `on_iteration`). Our seconds per iteration are split
into rollout (sampling), scoring (RM, reference and policy log-probs, values, then the KL penalty
and GAE) and update (the PPO epochs). Rounds alternate the order (ours, TRL, TRL, ours, ...) so a
machine getting busier does not favour one side. Timings are figures, never a pass/fail. Prints a
table, then as its last line one JSON object.

TRL is a benchmark-only dependency (`pip install -e .[bench]`); without it, our figures are printed
and the TRL fields are null. Nothing here imports mlflow, dvc or prefect.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def parse_args() -> argparse.Namespace:
    from rlhf import config

    pre, ppo_cfg, common = (config.load(s, ROOT / "params.yaml") for s in ("pretrain", "ppo", "common"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--steps", type=int, default=8, help="timed PPO iterations of each run")
    p.add_argument("--warmup", type=int, default=1, help="iterations before the timed ones (not timed)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each side, in alternating order")
    p.add_argument("--batch-size", type=int, default=ppo_cfg.batch_size, help="episodes per iteration")
    p.add_argument("--minibatch-size", type=int, default=ppo_cfg.minibatch_size)
    p.add_argument("--ppo-epochs", type=int, default=ppo_cfg.ppo_epochs)
    p.add_argument("--max-new-tokens", type=int, default=ppo_cfg.max_new_tokens, help="response length")
    p.add_argument("--lr", type=float, default=ppo_cfg.lr)
    p.add_argument("--n-layer", type=int, default=pre.n_layer)
    p.add_argument("--n-head", type=int, default=pre.n_head)
    p.add_argument("--n-embd", type=int, default=pre.n_embd)
    p.add_argument("--n-positions", type=int, default=pre.n_positions)
    p.add_argument("--vocab-size", type=int, default=pre.vocab_size)
    p.add_argument("--docs", type=int, default=1000, help="corpus documents the tokenizer is trained on")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=common.seed)
    p.add_argument("--no-trl", action="store_true", help="our side only")
    args = p.parse_args()
    if args.batch_size % args.minibatch_size:
        p.error("--batch-size must be a multiple of --minibatch-size")
    if min(args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--steps and --rounds must be at least 1, --warmup at least 0")
    args.ppo = ppo_cfg
    return args


def build(folder: Path, args) -> tuple[list[str], int]:
    """Tokenizer, policy and reward model saved to `folder` (HF format); returns the prompts and
    the policy's parameter count."""
    import torch

    from rlhf import models, world

    docs = world.generate_corpus(random.Random(args.seed), args.docs)
    tok = models.train_tokenizer(docs, args.vocab_size)
    torch.manual_seed(args.seed)
    policy = models.new_causal_lm(tok, args.n_layer, args.n_head, args.n_embd, args.n_positions)
    models.save(policy, tok, folder / "policy")
    from transformers import GPT2ForSequenceClassification

    rm_cfg = copy.deepcopy(policy.config)
    rm_cfg.num_labels = 1
    torch.manual_seed(args.seed + 1)
    rm = GPT2ForSequenceClassification(rm_cfg)
    rm.transformer.load_state_dict(policy.transformer.state_dict())  # the RM starts from the policy's trunk
    models.save(rm, tok, folder / "rm")
    # world prompts of every family that fit the context with the response (TRL cuts none)
    rng = random.Random(args.seed)
    room = args.n_positions - args.max_new_tokens - 1
    prompts = [world.make_prompt(rng, world.FAMILIES[i % len(world.FAMILIES)]) for i in range(1024)]
    prompts = [p for p in prompts if len(tok(models.format_prompt(tok, p))["input_ids"]) <= room][:512]
    if len(prompts) < args.batch_size:
        sys.exit(f"only {len(prompts)} prompts fit --n-positions {args.n_positions} with --max-new-tokens")
    return prompts, sum(p.numel() for p in policy.parameters())


def run_ours(folder: Path, prompts: list[str], args) -> dict:
    import dataclasses

    from rlhf import models, ppo, reward, train

    cfg = dataclasses.replace(args.ppo, steps=args.warmup + args.steps, batch_size=args.batch_size,
                              minibatch_size=args.minibatch_size, ppo_epochs=args.ppo_epochs,
                              max_new_tokens=args.max_new_tokens, temperature=1.0, lr=args.lr, ptx_coef=0.0,
                              adaptive_kl=False, max_kl=1e9, sample_every=0)
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # a TRL run before this one left its own state
    tok = models.load_tokenizer(folder / "policy")
    model = ppo.PolicyAndValue(models.load_causal_lm(folder / "policy"), reward.load(folder / "rm"))
    trainer = ppo.PPOTrainer(model, models.load_causal_lm(folder / "policy"), reward.load(folder / "rm"), tok, cfg,
                             prompts, seed=args.seed, accel=train.accelerator(args.device))
    rows: list[dict] = []
    trainer.train(on_iteration=lambda it, m, samples: rows.append(m))
    timed = rows[args.warmup:]
    seconds = sum(r["ppo/time/iteration"] for r in timed)
    phase = lambda *names: sum(r[f"ppo/time/{n}"] for r in timed for n in names) / len(timed)  # noqa: E731
    return {"episodes_per_s": args.batch_size * len(timed) / seconds, "seconds": seconds,
            "rollout_s": phase("generate"), "scoring_s": phase("score", "advantages"), "update_s": phase("update"),
            "response_length": sum(r["ppo/response_length"] for r in timed) / len(timed)}


def run_trl(folder: Path, prompts: list[str], args, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, PrinterCallback,
                              TrainerCallback)
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rlhf import models

    tok = models.load_tokenizer(folder / "policy")
    tok.padding_side = "left"
    ids = [tok(models.format_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
    dataset = Dataset.from_dict({"input_ids": ids})
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            if args.device == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    c = args.ppo
    config = PPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
        num_mini_batches=args.batch_size // args.minibatch_size, num_ppo_epochs=args.ppo_epochs,
        total_episodes=args.batch_size * (args.warmup + args.steps), local_rollout_forward_batch_size=args.batch_size,
        response_length=args.max_new_tokens, stop_token="eos", temperature=1.0, learning_rate=args.lr,
        kl_coef=c.kl_coef, cliprange=c.clip_range, cliprange_value=c.value_clip_range, vf_coef=c.vf_coef,
        gamma=c.gamma, lam=c.lam, num_sample_generations=0, gradient_checkpointing=False,
        bf16=args.device == "cuda", use_cpu=args.device == "cpu", report_to=[], save_strategy="no",
        logging_strategy="no", disable_tqdm=True, seed=args.seed, dataloader_num_workers=0)
    # TRL's PPOTrainer builds a bare Accelerator(), which takes its precision from this variable;
    # transformers 4.x set it from bf16=True, transformers 5 no longer does (TRL would run in fp32)
    os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if args.device == "cuda" else "no"
    trainer = PPOTrainer(
        args=config, processing_class=tok, model=AutoModelForCausalLM.from_pretrained(folder / "policy"),
        ref_model=AutoModelForCausalLM.from_pretrained(folder / "policy"),
        reward_model=AutoModelForSequenceClassification.from_pretrained(folder / "rm", num_labels=1),
        value_model=AutoModelForSequenceClassification.from_pretrained(folder / "rm", num_labels=1),
        train_dataset=dataset, eval_dataset=dataset.select(range(args.batch_size)), callbacks=[Stamp()])
    trainer.remove_callback(PrinterCallback)
    if trainer.accelerator.mixed_precision != config.mixed_precision:
        sys.exit(f"TRL's accelerator runs in {trainer.accelerator.mixed_precision}, not {config.mixed_precision}")
    start = time.perf_counter()
    trainer.train()
    stamps.insert(0, start)
    timed = stamps[args.warmup:]
    seconds = timed[-1] - timed[0]
    return {"episodes_per_s": args.batch_size * (len(timed) - 1) / seconds, "seconds": seconds}


def combine(runs: list[dict]) -> dict:
    """Several runs of one side: episodes/s over all their timed iterations; phases averaged."""
    seconds = sum(r["seconds"] for r in runs)
    episodes = sum(r["episodes_per_s"] * r["seconds"] for r in runs)
    out = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    out.update(episodes_per_s=episodes / seconds, seconds=seconds, per_run=[r["episodes_per_s"] for r in runs])
    return out


def main() -> None:
    args = parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # TRL's accelerator would otherwise take a GPU
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    trl_version = None
    if not args.no_trl:
        try:
            import trl
            from trl.experimental.ppo import PPOTrainer  # noqa: F401  (trl > 1.9 has no PPOTrainer)

            trl_version = trl.__version__
        except ImportError as e:
            print(f"TRL not available ({e}); install it with: pip install -e .[bench]")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        tmp = Path(tmp)
        prompts, n_params = build(tmp, args)
        runs: dict[str, list[dict]] = {"ours": [], "trl": []}
        for r in range(args.rounds):
            for side in (("ours", "trl") if r % 2 == 0 else ("trl", "ours")):
                if side == "ours":
                    runs["ours"].append(run_ours(tmp, prompts, args))
                elif trl_version:
                    runs["trl"].append(run_trl(tmp, prompts, args, tmp / f"trl-{r}"))
    ours = combine(runs["ours"])
    trl_side = combine(runs["trl"]) if runs["trl"] else None
    ratio = ours["episodes_per_s"] / trl_side["episodes_per_s"] if trl_side else None

    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"model: GPT-2 {args.n_layer} layers x {args.n_embd} ({args.n_head} heads), {n_params:,} parameters, "
          f"vocab {args.vocab_size}; policy, reference, reward and value model of that size; torch {torch.__version__}, "
          f"{device}")
    print(f"job: plain PPO, {args.batch_size} episodes per iteration, minibatches of {args.minibatch_size}, "
          f"{args.ppo_epochs} PPO epochs, responses up to {args.max_new_tokens} tokens (mean "
          f"{ours['response_length']:.1f}), {args.warmup} warm-up + {args.steps} timed iterations, {args.rounds} "
          f"round(s)")
    print()
    print(f"{'run':<22}{'episodes/s':>12}{'s/iteration':>13}{'rollout':>10}{'scoring':>10}{'update':>10}")
    print(f"{'ours (PPOTrainer)':<22}{ours['episodes_per_s']:>12.1f}{args.batch_size / ours['episodes_per_s']:>13.3f}"
          f"{ours['rollout_s']:>10.3f}{ours['scoring_s']:>10.3f}{ours['update_s']:>10.3f}")
    if trl_side:
        print(f"{'TRL ' + trl_version:<22}{trl_side['episodes_per_s']:>12.1f}"
              f"{args.batch_size / trl_side['episodes_per_s']:>13.3f}")
        print(f"\nepisodes/s ours / TRL: {ratio:.2f}; per run: ours "
              + ", ".join(f"{x:.1f}" for x in ours["per_run"]) + "; TRL " + ", ".join(f"{x:.1f}" for x in trl_side["per_run"]))
    else:
        print("\nTRL: not run (not installed, or --no-trl)")
    print(f"whole benchmark {time.perf_counter() - started:.1f} s")
    print(json.dumps({
        "device": args.device, "episodes_per_s": round(ours["episodes_per_s"], 2),
        "seconds_per_iteration": {"rollout": round(ours["rollout_s"], 4), "scoring": round(ours["scoring_s"], 4),
                                  "update": round(ours["update_s"], 4)},
        "trl_episodes_per_s": round(trl_side["episodes_per_s"], 2) if trl_side else None,
        "ratio_ours_over_trl": round(ratio, 3) if ratio else None, "trl_version": trl_version,
        "batch_size": args.batch_size, "minibatch_size": args.minibatch_size, "ppo_epochs": args.ppo_epochs,
        "response_length": args.max_new_tokens, "steps": args.steps, "model_params": n_params,
    }), flush=True)


if __name__ == "__main__":
    main()
