"""Stage reward_model: the SFT trunk with a scalar head (plus, with reward_model.likelihood_coef >
0, that many times the trunk's log-likelihood of the response: rlhf.likelihood_reward), trained on
K-way rankings (a prompt with its K ranked responses is one batch element, all K in one forward
pass, the loss averaged over its C(K,2) pairs; with reward_model.lm_coef > 0, plus an LM loss on the
best-ranked responses); with reward_model.average_seeds N > 1, N such models from seeds seed .. seed
+ N - 1 with their weights averaged into the one saved (WARM); then a bias shift so that
demonstrations score mean 0, stored in the weights; then validation accuracy against the labeler's
ranks, against gold, per K, against gold per task family (and the averaged members' own figures),
against the simulated labeler's own agreement with gold (measured and expected), and a calibration
plot, beside two yardsticks scored on the same pairs (response length; the SFT model's
log-likelihood)."""

import copy
import csv
import shutil
import statistics
import tempfile
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

import pandas as pd  # noqa: E402

from rlhf import cli, comparisons, config, models, reward, train  # noqa: E402

SECTIONS = ("reward_model",)


def member_metrics(model, members: list[dict], tokenizer, va: pd.DataFrame, ranks, gold) -> dict:
    """With several averaged members: each member's validation accuracy against the labeler and
    against gold, as mean, min and max, to read the average's figures against."""
    if len(members) < 2:
        return {}
    scorer, figures = copy.deepcopy(model), {}
    for state in members:
        scorer.load_state_dict(state)
        rewards = reward.group_rewards(scorer, tokenizer, list(va.prompt), [list(r) for r in va.responses])
        for key, value in reward.validation_metrics(rewards, ranks, gold).items():
            if key in ("rm/val_accuracy", "rm/val_accuracy_gold"):
                figures.setdefault(key, []).append(value)
    return {f"rm/members/{key.removeprefix('rm/')}_{name}": f(values)
            for key, values in figures.items()
            for name, f in (("mean", statistics.fmean), ("min", min), ("max", max))}


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--sft", type=Path, required=True, help="HF-format SFT model (the RM's initialisation)")
    p.add_argument("--comparisons", type=Path, required=True, help="folder of {train,val}.parquet rankings")
    p.add_argument("--demonstrations", type=Path, required=True,
                   help="folder of train.parquet demonstrations: their mean reward is shifted to 0")
    p.add_argument("--out", type=Path, required=True, help="folder for the HF-format reward model")
    p.add_argument("--checkpoints", type=Path, required=True, help="folder for resumable training state")
    p.add_argument("--curves", required=True, help="CSV of the training curves (a DVC plot)")
    p.add_argument("--calibration", type=Path, required=True, help="CSV of the calibration curve (a DVC plot)")
    args = p.parse_args()
    with cli.stage("reward_model", args, SECTIONS) as (cfg, run):
        c, common = cfg["reward_model"], cfg["common"]
        train.set_seed(common.seed)
        tokenizer = models.load_tokenizer(args.sft)
        accel = train.accelerator(common.device, c.grad_accum)
        tr, va = (pd.read_parquet(args.comparisons / f"{s}.parquet") for s in ("train", "val"))
        tr, skipped = reward.rankable(tr)
        if tr.empty:
            raise SystemExit(f"error: no train prompt in {args.comparisons} has two responses ranked apart")
        steps = reward.train_steps(len(tr), c, accel.num_processes)
        run_id = train.fingerprint(config.as_dict(c), common.seed, accel.num_processes,
                                   tr[["prompt", "responses", "ranks"]].to_json())
        model, history, members = reward.train_averaged(
            args.sft, tokenizer, tr, c, common.seed, accel, on_step=lambda s, row: run.log_metrics(row, s),
            checkpoint_dir=args.checkpoints, checkpoint_every=common.checkpoint_every, run_id=run_id)
        if not cli.is_main_process():
            return
        # 1. shift: demonstrations score mean 0, in the weights a plain from_pretrained loads
        demos = pd.read_parquet(args.demonstrations / "train.parquet")
        shift = reward.center_on(model, tokenizer, list(demos.prompt), list(demos.response))
        # 2. validation against the labeler's ranks and the gold ordering, per K; calibration
        val_rewards = reward.group_rewards(model, tokenizer, list(va.prompt), [list(r) for r in va.responses])
        gold = [None if g is None else list(g) for g in va.gold_scores]
        ranks = [list(r) for r in va.ranks]
        labeler = comparisons.read_labeler(args.comparisons)  # None: imported rankings
        noise = labeler["noise"] if labeler and "val" in labeler["splits"] else None
        last_loss = {row["rm/member"]: row["rm/loss"] for row in history}  # each member's last step
        metrics = {"rm/train_loss": sum(last_loss.values()) / len(last_loss), "rm/steps": steps,
                   "rm/average_seeds": c.average_seeds, "rm/train_prompts": len(tr),
                   "rm/train_prompts_without_pairs": skipped, "rm/reward_shift": shift,
                   **reward.validation_metrics(val_rewards, ranks, gold, prompts=list(va.prompt), noise=noise,
                                               bootstrap=c.bootstrap, seed=common.seed),
                   **member_metrics(model, members, tokenizer, va, ranks, gold)}
        # 3. yardsticks on the same pairs: response length, and the SFT model's own likelihood
        sft_lm = models.load_causal_lm(args.sft).to(next(model.parameters()).device)
        metrics.update(reward.baseline_metrics(sft_lm, tokenizer, list(va.prompt),
                                               [list(r) for r in va.responses], ranks, gold))
        del sft_lm
        rows = reward.calibration(val_rewards, ranks)
        args.calibration.parent.mkdir(parents=True, exist_ok=True)
        with args.calibration.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["bin_low", "bin_high", "predicted", "observed", "pairs"])
            w.writeheader()
            w.writerows(rows)
        cli.write_curve(args.curves, history, {"loss": "rm/loss", "accuracy": "rm/train_accuracy",
                                               "member": "rm/member"})
        reward.save(model, tokenizer, args.out)
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.calibration, "plots")
        with tempfile.TemporaryDirectory() as tmp:  # the PNG is for MLflow; DVC plots draw the CSV
            reward.plot_calibration(rows, Path(tmp) / "calibration.png")
            run.log_artifacts(Path(tmp) / "calibration.png", "plots")
        run.log_artifacts(args.out, "model")
        shutil.rmtree(args.checkpoints, ignore_errors=True)
        print(metrics)


if __name__ == "__main__":
    main()
