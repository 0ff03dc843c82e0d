"""Stage evaluate: base, SFT and the PPO policies (PPO-ptx and, when trained, plain PPO) on test
prompts (held-out users), judged by the gold labeler and the reward model; the alignment tax as
each policy's LM loss on held-out pretraining text; each PPO policy's KL to SFT; metrics, a plot
and a report."""

from pathlib import Path

import pandas as pd

from rlhf import cli, data, evaluation, lm, models, ppo, reward, train

SECTIONS = ("evaluate", "ppo")


def plot_by_family(table: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({f for v in table.values() for f in v})
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(table)
    for i, (policy, scores) in enumerate(table.items()):
        ax.bar([j + i * width for j in range(len(families))], [scores.get(f, 0.0) for f in families],
               width, label=policy)
    ax.set_xticks([j + width * (len(table) - 1) / 2 for j in range(len(families))], families)
    ax.set_ylabel("mean gold score")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Gold score per task family, test prompts")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    for name in ("base", "sft", "rm"):
        p.add_argument(f"--{name}", type=Path, required=True, help=f"HF-format {name} model")
    p.add_argument("--ppo", type=Path, required=True, help="folder with one HF-format policy per ppo.variants entry")
    p.add_argument("--prompts", type=Path, required=True, help="folder of test.parquet prompts")
    p.add_argument("--corpus", type=Path, required=True, help="pretraining corpus (JSONL): its held-out documents")
    p.add_argument("--plots", type=Path, required=True, help="folder for PNG plots")
    p.add_argument("--report", type=Path, required=True, help="folder for report.md")
    args = p.parse_args()
    with cli.stage("evaluate", args, SECTIONS) as (cfg, run):
        c, ppo_cfg, seed = cfg["evaluate"], cfg["ppo"], cfg["common"].seed
        train.set_seed(seed)
        device = models.pick_device(cfg["common"].device)
        test = pd.read_parquet(args.prompts / "test.parquet")
        if c.max_prompts:
            test = test.head(c.max_prompts)
        prompts = list(test.prompt)
        tokenizer = models.load_tokenizer(args.sft)
        rm = reward.load(args.rm).to(device).eval()
        sft = models.load_causal_lm(args.sft).to(device).eval()
        # the alignment tax: LM loss on the pretraining documents that pretraining and ptx never saw
        _, held_out = data.split_corpus(data.read_corpus(args.corpus), seed)
        blocks = data.pack_blocks(tokenizer, held_out, models.max_positions(sft))
        lm_batches = [data.lm_batch(x) for x in blocks.split(32)]
        responses, gold, rm_scores, lm_loss, kl = {}, {}, {}, {}, {}
        prefix = evaluation.few_shot_prefix(c.few_shot, seed)
        ppo_policies = [(f"ppo_{v}", args.ppo / v, "") for v in ppo_cfg.variants]
        for policy, path, shots in [("base", args.base, ""), ("prompted_base", args.base, prefix),
                                    ("sft", args.sft, ""), *ppo_policies]:
            model = models.load_causal_lm(path).to(device)
            tok = models.load_tokenizer(path)
            responses[policy] = models.generate(model, tok, prompts, c.max_new_tokens, do_sample=False, prefix=shots)
            gold[policy] = evaluation.gold_scores(prompts, responses[policy])
            rm_scores[policy] = reward.score(rm, tokenizer, prompts, responses[policy])
            if not shots:
                lm_loss[policy] = lm.mean_lm_loss(model, lm_batches)
            if policy.startswith("ppo_"):  # sampled as in training: the quantity ppo.max_kl bounds
                kl[policy] = ppo.kl_to_reference(model, sft, tok, prompts, ppo_cfg.max_new_tokens, seed=seed,
                                                 temperature=ppo_cfg.temperature)
        metrics, families = {"eval/test_prompts": len(prompts), "eval/heldout_lm_tokens": blocks.numel()}, {}
        for policy in responses:
            families[policy] = evaluation.by_family(prompts, gold[policy])
            metrics.update({
                f"eval/{policy}/gold_score": sum(gold[policy]) / len(prompts),
                f"eval/{policy}/rm_score": sum(rm_scores[policy]) / len(prompts),
                f"eval/{policy}/win_rate_vs_sft": evaluation.win_rate(gold[policy], gold["sft"]),
                f"eval/{policy}/win_rate_vs_prompted_base": evaluation.win_rate(gold[policy], gold["prompted_base"]),
                f"eval/{policy}/response_words": sum(len(r.split()) for r in responses[policy]) / len(prompts),
                **{f"eval/{policy}/gold_score/{f}": s for f, s in families[policy].items()}})
            if policy in lm_loss:
                metrics[f"eval/{policy}/heldout_lm_loss"] = lm_loss[policy]
            if policy in kl:
                metrics[f"eval/{policy}/kl_to_sft"] = kl[policy]
                metrics[f"eval/{policy}/lm_loss_rise_over_sft"] = lm_loss[policy] - lm_loss["sft"]
        if "ppo_plain" in kl and lm_loss["ppo_plain"] > lm_loss["sft"]:
            # the paper's claim for ptx: a smaller rise in pretraining loss than plain PPO's
            metrics["eval/ppo_ptx/tax_over_plain_tax"] = ((lm_loss["ppo_ptx"] - lm_loss["sft"])
                                                          / (lm_loss["ppo_plain"] - lm_loss["sft"]))
        plot_by_family(families, args.plots / "gold_by_family.png")
        args.report.mkdir(parents=True, exist_ok=True)
        lines = ["# Evaluation on test prompts (held-out users)", "",
                 f"{len(prompts)} prompts; gold labeler scores in [0, 1]; win rate vs SFT counts ties half.", "",
                 "Held-out LM loss: pretraining documents no policy trained on (the alignment tax). KL to SFT: "
                 "nats per sampled response.", "",
                 "| policy | gold score | win rate vs SFT | win rate vs prompted base | RM score | words "
                 "| held-out LM loss | KL to SFT |",
                 "|---|---|---|---|---|---|---|---|"]
        for policy in responses:
            cells = [(k, ".3f") for k in ("gold_score", "win_rate_vs_sft", "win_rate_vs_prompted_base", "rm_score")]
            cells += [("response_words", ".1f"), ("heldout_lm_loss", ".4f"), ("kl_to_sft", ".3f")]
            values = [format(metrics[f"eval/{policy}/{k}"], f) if f"eval/{policy}/{k}" in metrics else "-"
                      for k, f in cells]
            lines.append(f"| {policy} | " + " | ".join(values) + " |")
        lines += ["", "## Sample responses", ""]
        for i in range(min(5, len(prompts))):
            lines.append(f"- **{prompts[i]}**")
            lines += [f"  - {policy}: {responses[policy][i]!r}" for policy in responses]
        (args.report / "report.md").write_text("\n".join(lines) + "\n")
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.plots, "plots")
        run.log_artifacts(args.report, "report")
        print({k: round(v, 3) for k, v in metrics.items() if k.count("/") == 2})


if __name__ == "__main__":
    main()
