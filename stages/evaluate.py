"""Stage evaluate: base, SFT and PPO policies on test prompts (held-out users), judged by the
gold labeler and the reward model; metrics, a plot and a report."""

from pathlib import Path

import pandas as pd

from rlhf import cli, evaluation, models, reward, train

SECTIONS = ("evaluate",)


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
    for name in ("base", "sft", "ppo", "rm"):
        p.add_argument(f"--{name}", type=Path, required=True, help=f"HF-format {name} model")
    p.add_argument("--prompts", type=Path, required=True, help="folder of test.parquet prompts")
    p.add_argument("--plots", type=Path, required=True, help="folder for PNG plots")
    p.add_argument("--report", type=Path, required=True, help="folder for report.md")
    args = p.parse_args()
    with cli.stage("evaluate", args, SECTIONS) as (cfg, run):
        c = cfg["evaluate"]
        train.set_seed(cfg["common"].seed)
        device = models.pick_device(cfg["common"].device)
        test = pd.read_parquet(args.prompts / "test.parquet")
        if c.max_prompts:
            test = test.head(c.max_prompts)
        prompts = list(test.prompt)
        tokenizer = models.load_tokenizer(args.sft)
        rm = reward.load(args.rm).to(device).eval()
        responses, gold, rm_scores = {}, {}, {}
        prefix = evaluation.few_shot_prefix(c.few_shot, cfg["common"].seed)
        for policy, path, shots in (("base", args.base, ""), ("prompted_base", args.base, prefix),
                                    ("sft", args.sft, ""), ("ppo", args.ppo, "")):
            model = models.load_causal_lm(path).to(device)
            tok = models.load_tokenizer(path)
            responses[policy] = models.generate(model, tok, prompts, c.max_new_tokens, do_sample=False, prefix=shots)
            gold[policy] = evaluation.gold_scores(prompts, responses[policy])
            rm_scores[policy] = reward.score(rm, tokenizer, prompts, responses[policy])
        metrics, families = {"eval/test_prompts": len(prompts)}, {}
        for policy in responses:
            families[policy] = evaluation.by_family(prompts, gold[policy])
            metrics.update({
                f"eval/{policy}/gold_score": sum(gold[policy]) / len(prompts),
                f"eval/{policy}/rm_score": sum(rm_scores[policy]) / len(prompts),
                f"eval/{policy}/win_rate_vs_sft": evaluation.win_rate(gold[policy], gold["sft"]),
                f"eval/{policy}/win_rate_vs_prompted_base": evaluation.win_rate(gold[policy], gold["prompted_base"]),
                f"eval/{policy}/response_words": sum(len(r.split()) for r in responses[policy]) / len(prompts),
                **{f"eval/{policy}/gold_score/{f}": s for f, s in families[policy].items()}})
        plot_by_family(families, args.plots / "gold_by_family.png")
        args.report.mkdir(parents=True, exist_ok=True)
        lines = ["# Evaluation on test prompts (held-out users)", "",
                 f"{len(prompts)} prompts; gold labeler scores in [0, 1]; win rate vs SFT counts ties half.", "",
                 "| policy | gold score | win rate vs SFT | win rate vs prompted base | RM score | words |",
                 "|---|---|---|---|---|---|"]
        for policy in responses:
            m = lambda k: metrics[f"eval/{policy}/{k}"]  # noqa: E731
            lines.append(f"| {policy} | {m('gold_score'):.3f} | {m('win_rate_vs_sft'):.3f} | "
                         f"{m('win_rate_vs_prompted_base'):.3f} | {m('rm_score'):.3f} | {m('response_words'):.1f} |")
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
