"""Stage ppo: PPO-ptx of the SFT policy against the reward model, with a per-token KL penalty to
the SFT model and pretraining gradients mixed in (`--variant ptx`); `--variant plain` is the same
run with ptx_coef 0 and no pretraining batch (plain PPO, the baseline of the alignment tax)."""

import dataclasses
import shutil
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

import pandas as pd  # noqa: E402

from rlhf import cli, config, data, hashing, models, ppo, reward, train  # noqa: E402

SECTIONS = ("ppo", "demonstrations", "comparisons", "pretrain")  # prompt shares; n_positions: ptx blocks
CURVES = {"rm_score": "ppo/rm_score", "kl": "ppo/kl", "kl_coef": "ppo/kl_coef", "entropy": "ppo/entropy",
          "response_length": "ppo/response_length", "policy_loss": "ppo/loss/policy",
          "value_loss": "ppo/loss/value", "ptx_loss": "ppo/ptx_loss", "clip_fraction": "ppo/clip_fraction",
          "approx_kl": "ppo/approx_kl"}
SKIP = ("/lr", "/grad_norm", "/kl_coef")  # not averaged into the final metrics


def ppo_prompts(train_split: pd.DataFrame, start: float) -> list[str]:
    """The PPO prompt set: train prompts whose id hashes into [start, 1), after the SFT and RM
    prompts' shares; customers' only (the paper's PPO prompts come from the API) unless none are."""
    prompts = train_split[hashing.prompt_role_mask(list(train_split.prompt_id), start, 1.0)]
    customer = prompts[prompts.source == "customer"]
    texts = list((customer if len(customer) else prompts).prompt)
    if not texts:
        raise ValueError(f"no PPO prompts: demonstrations.prompt_share + comparisons.prompt_share is {start:.3f}, "
                         "which leaves no train prompts for PPO")
    return texts


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--variant", choices=["ptx", "plain"], required=True,
                   help="ptx: ppo.ptx_coef; plain: ptx_coef 0 (the DVC stage ppo@<variant>)")
    p.add_argument("--sft", type=Path, required=True, help="HF-format SFT model (policy and reference)")
    p.add_argument("--rm", type=Path, required=True, help="HF-format reward model (reward and value model)")
    p.add_argument("--prompts", type=Path, required=True, help="folder of train.parquet prompts")
    p.add_argument("--corpus", type=Path, nargs="+", required=True,
                   help="pretraining corpus files and folders, for the ptx term")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format policy")
    p.add_argument("--curves", required=True, help="CSV of the per-iteration curves (a DVC plot)")
    p.add_argument("--checkpoints", type=Path, required=True, help="folder for resumable training state")
    args = p.parse_args()
    with cli.stage(f"ppo@{args.variant}", args, SECTIONS) as (cfg, run):
        c, common = cfg["ppo"], cfg["common"]
        if args.variant == "plain":
            c = dataclasses.replace(c, ptx_coef=0.0)
        train.set_seed(common.seed)
        accel = train.accelerator(common.device)
        tokenizer = models.load_tokenizer(args.sft)
        policy = models.load_causal_lm(args.sft, dropout=0.0)
        ref = models.load_causal_lm(args.sft, dropout=0.0)
        texts = ppo_prompts(pd.read_parquet(args.prompts / "train.parquet"),
                            cfg["demonstrations"].prompt_share + cfg["comparisons"].prompt_share)
        blocks = None
        if c.ptx_coef > 0:  # the pretraining corpus minus the documents evaluation holds out
            train_docs, _ = data.split_corpus(data.read_corpus(args.corpus), common.seed)
            blocks = data.pack_blocks(tokenizer, train_docs, models.text_block(policy, cfg["pretrain"].n_positions))
        trainer = ppo.PPOTrainer(ppo.PolicyAndValue(policy, reward.load(args.rm)), ref, reward.load(args.rm),
                                 tokenizer, c, texts, seed=common.seed, accel=accel, ptx_blocks=blocks)
        run_id = train.fingerprint(config.as_dict(c), common.seed, accel.num_processes, texts,
                                   train.folder_digest(args.sft), train.folder_digest(args.rm),
                                   None if blocks is None else train.tensor_digest(blocks))

        def on_iteration(it: int, metrics: dict, samples: list[dict]) -> None:
            run.log_metrics(metrics, it)
            run.log_table(samples, "samples.json")

        history = trainer.train(checkpoint_dir=args.checkpoints, checkpoint_every=common.checkpoint_every,
                                run_id=run_id, on_iteration=on_iteration)
        if cli.is_main_process():
            last = history[-max(1, len(history) // 5):]  # the mean over the last fifth of iterations
            metrics = {k: sum(h[k] for h in last) / len(last) for k in last[0] if not k.endswith(SKIP)}
            metrics.update({"ppo/rm_score_first": history[0]["ppo/rm_score"], "ppo/iterations": len(history),
                            "ppo/kl_coef_final": history[-1]["ppo/kl_coef"], "ppo/processes": accel.num_processes})
            cli.write_curve(args.curves, history, CURVES)
            models.save(trainer.model.policy, tokenizer, args.out)
            shutil.rmtree(args.checkpoints, ignore_errors=True)
            run.write_metrics(args.metrics, metrics)
            run.log_artifacts(args.out, "model")
            print({k: round(v, 4) for k, v in metrics.items()})


if __name__ == "__main__":
    main()
