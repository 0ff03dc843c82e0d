"""Stage ppo: RL of the SFT policy against the reward model, with a per-token KL penalty to the
SFT model and pretraining-gradient mixing (PPO-ptx)."""

import random
from pathlib import Path

import pandas as pd

from rlhf import cli, data, models, ppo, reward, train

SECTIONS = ("ppo",)


def prompt_batches(prompts: list[str], batch_size: int, seed: int):
    rng = random.Random(seed)
    while True:
        yield rng.sample(prompts, min(batch_size, len(prompts)))


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--sft", type=Path, required=True, help="HF-format SFT model (policy and reference)")
    p.add_argument("--rm", type=Path, required=True, help="HF-format reward model")
    p.add_argument("--prompts", type=Path, required=True, help="folder of train.parquet prompts")
    p.add_argument("--corpus", type=Path, required=True, help="pretraining corpus (JSONL) for the ptx term")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format policy")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    args = p.parse_args()
    with cli.stage("ppo", args, SECTIONS) as (cfg, run):
        c, seed = cfg["ppo"], cfg["common"].seed
        train.set_seed(seed)
        device = models.pick_device(cfg["common"].device)
        tokenizer = models.load_tokenizer(args.sft)
        policy = models.load_causal_lm(args.sft, dropout=0.0).to(device)
        ref = models.load_causal_lm(args.sft, dropout=0.0).to(device).eval().requires_grad_(False)
        rm = reward.load(args.rm).to(device).eval().requires_grad_(False)
        prompts = pd.read_parquet(args.prompts / "train.parquet")
        customer = prompts[prompts.source == "customer"]
        texts = list((customer if len(customer) else prompts).prompt)
        ptx = None
        if c.ptx_coef > 0:  # plain PPO draws no pretraining batch at all
            blocks = data.pack_blocks(tokenizer, data.read_corpus(args.corpus), models.max_positions(policy))
            ptx = data.block_batches(blocks, c.batch_size, seed)
        step_fn = ppo.PolicyGradientStep(ref, rm, tokenizer, c, ptx)
        history = train.fit(policy, prompt_batches(texts, c.batch_size, seed), step_fn, steps=c.steps,
                            lr=c.lr, accel=train.accelerator(cfg["common"].device), prefix="ppo",
                            on_step=lambda s, row: run.log_metrics(row, s))
        last = history[-max(1, len(history) // 5):]  # the mean over the last fifth of steps
        metrics = {k: sum(h[k] for h in last) / len(last) for k in last[0] if not k.endswith(("/lr", "/grad_norm"))}
        metrics["ppo/rm_score_first"] = history[0]["ppo/rm_score"]
        cli.write_curve(args.curves, history,
                        {"rm_score": "ppo/rm_score", "kl": "ppo/kl", "ptx_loss": "ppo/ptx_loss"})
        models.save(policy, tokenizer, args.out)
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.out, "model")
        print(metrics)


if __name__ == "__main__":
    main()
