"""Stage evaluate: the paper's comparison in the embedded world. Base (plain and few-shot prompted),
SFT and the PPO policies (PPO-ptx and, when trained, plain PPO) answer the test prompts (held-out
users); the gold labeler (the paper's human preference) and the reward model judge them: win rates
against SFT and the prompted base with bootstrap intervals, gold score per task family. The gold
labeler judges only the embedded world's prompts; on a user's own the reward model alone does. Then the
probes: the alignment tax (held-out pretraining LM loss, capability probes), hallucination on
closed-domain questions whose answer is absent, toxicity under basic / respectful / biased
instructions, personal data in responses, KL to SFT, response length. Plots, a report whose
figures come from metrics/eval.json, and the promotion gate in the MLflow Model Registry."""

import csv
import dataclasses
import json
import tempfile
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

import pandas as pd  # noqa: E402

from rlhf import cli, data, evaluation, lm, models, ppo, promotion, reward, train  # noqa: E402

SECTIONS = ("evaluate", "ppo", "pretrain")
JUDGES = ("gold", "rm")  # the gold labeler (human preference) and the reward model
BASELINES = ("sft", "prompted_base")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)


def plot_win_rates(metrics: dict, policies: list[str], judges: list[str], path: Path) -> None:
    """Win rate against SFT and against the prompted base, per judge (of JUDGES), with 95% bootstrap
    intervals."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, baseline in zip(axes, BASELINES):
        for j, judge in enumerate(judges):
            key = [f"eval/{p}/win_rate_vs_{baseline}" + ("" if judge == "gold" else "_rm") for p in policies]
            mid = [metrics[k] for k in key]
            err = [[m - metrics[k + "_lo"] for k, m in zip(key, mid)], [metrics[k + "_hi"] - m for k, m in zip(key, mid)]]
            ax.bar([i + j * 0.4 for i in range(len(policies))], mid, 0.4, yerr=err, capsize=3,
                   label="gold labeler" if judge == "gold" else "reward model")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks([i + 0.2 for i in range(len(policies))], [evaluation.TITLES.get(p, p) for p in policies],
                      rotation=20)
        ax.set_title(f"win rate vs {evaluation.TITLES[baseline]}")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("win rate (ties half), 95% interval")
    axes[0].legend()
    _save(fig, path)


def plot_by_family(table: dict[str, dict[str, float]], path: Path) -> None:
    plt = _plt()
    families = sorted({f for v in table.values() for f in v})
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(table)
    for i, (policy, scores) in enumerate(table.items()):
        ax.bar([j + i * width for j in range(len(families))], [scores.get(f, 0.0) for f in families],
               width, label=evaluation.TITLES.get(policy, policy))
    ax.set_xticks([j + width * (len(table) - 1) / 2 for j in range(len(families))], families)
    ax.set_ylabel("mean gold score")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Gold score per task family, test prompts")
    _save(fig, path)


def plot_toxicity(metrics: dict, policies: list[str], path: Path) -> None:
    plt = _plt()
    kinds = list(evaluation.INSTRUCTIONS)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(policies)
    for i, p in enumerate(policies):
        ax.bar([j + i * width for j in range(len(kinds))], [metrics[f"eval/{p}/toxicity/{k}"] for k in kinds],
               width, label=evaluation.TITLES.get(p, p))
    ax.set_xticks([j + width * (len(policies) - 1) / 2 for j in range(len(kinds))], kinds)
    ax.set_ylabel("share of toxic responses")
    ax.set_ylim(0, 1)
    ax.set_title("Toxicity by instruction type")
    ax.legend()
    _save(fig, path)


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_ppo_curves(curves: dict[str, list[dict]], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (key, label) in zip(axes, (("rm_score", "RM score"), ("kl", "KL to reference"), ("ptx_loss", "ptx loss"))):
        for variant, rows in curves.items():
            ax.plot([r["step"] for r in rows if key in r], [r[key] for r in rows if key in r], label=variant)
        ax.set_xlabel("PPO iteration")
        ax.set_title(label)
    axes[0].legend()
    _save(fig, path)


def few_shot_text(tokenizer, shots: list[tuple[str, str]]) -> str:
    """What the prompted base sees before each prompt: the shots as `models.format_prompt` puts
    them there, or, where a chat template's rendering of a prompt does not end the few-shot one
    (a system header comes first), the whole few-shot prompt with `{prompt}` in the prompt's place."""
    mark = "{prompt}"
    whole, alone = models.format_prompt(tokenizer, mark, shots), models.format_prompt(tokenizer, mark)
    return whole[:-len(alone)] if whole.endswith(alone) else whole


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    for name in ("base", "sft", "rm"):
        p.add_argument(f"--{name}", type=Path, required=True, help=f"HF-format {name} model")
    p.add_argument("--ppo", type=Path, required=True, help="folder with one HF-format policy per ppo.variants entry")
    p.add_argument("--prompts", type=Path, required=True, help="folder of test.parquet prompts")
    p.add_argument("--demonstrations", type=Path, required=True,
                   help="folder of train.parquet demonstrations: the prompted base's examples on a user's own prompts")
    p.add_argument("--corpus", type=Path, nargs="+", required=True,
                   help="pretraining corpus files and folders: their held-out documents")
    p.add_argument("--ppo-curves", type=Path, required=True, help="folder of the PPO stages' <variant>.csv curves")
    p.add_argument("--calibration", type=Path, required=True, help="the reward model's calibration CSV")
    p.add_argument("--plots", type=Path, required=True, help="folder for PNG plots")
    p.add_argument("--report", type=Path, required=True, help="folder for report.md")
    p.add_argument("--no-gate", action="store_true", help="skip the promotion gate (no registry writes)")
    args = p.parse_args()
    with cli.stage("evaluate", args, SECTIONS) as (cfg, run):
        c, ppo_cfg, seed = cfg["evaluate"], cfg["ppo"], cfg["common"].seed
        train.set_seed(seed)
        device = models.pick_device(cfg["common"].device)
        test = pd.read_parquet(args.prompts / "test.parquet")
        if c.max_prompts:
            test = test.head(c.max_prompts)
        prompts = list(test.prompt)
        judged = evaluation.world_prompt_positions(prompts)  # the prompts the gold labeler can score
        gold_prompts = [prompts[i] for i in judged]
        tokenizer = models.load_tokenizer(args.sft)
        rm = reward.load(args.rm).to(device).eval()
        sft = models.load_causal_lm(args.sft).to(device).eval()
        # the alignment tax: LM loss on the pretraining documents that pretraining and ptx never saw
        _, held_out = data.split_corpus(data.read_corpus(args.corpus), seed)
        blocks = data.pack_blocks(tokenizer, held_out, models.text_block(sft, cfg["pretrain"].n_positions))
        lm_batches = [data.lm_batch(x) for x in blocks.split(32)]
        toxic = evaluation.toxicity_prompts(c.toxicity_prompts, seed)
        absent = evaluation.absent_answer_prompts(c.probes, seed)
        probes = evaluation.capability_probes(c.probes, seed)

        # 1. every policy answers the test prompts and the probes (greedy)
        responses, gold, rm_scores, metrics = {}, {}, {}, {"eval/test_prompts": len(prompts),
                                                            "eval/gold_prompts": len(judged),
                                                            "eval/heldout_lm_tokens": blocks.numel()}
        # the prompted base's solved examples: the world's, or for a user's own prompts their own demonstrations
        demos = None
        if not judged:
            own = pd.read_parquet(args.demonstrations / "train.parquet")
            demos = list(zip(own.prompt, own.response))
        few_shot = evaluation.few_shot_examples(c.few_shot, seed, demos)
        ppo_policies = [(f"ppo_{v}", args.ppo / v, []) for v in ppo_cfg.variants]
        policies = [("base", args.base, []), ("prompted_base", args.base, few_shot), ("sft", args.sft, []),
                    *ppo_policies]
        for policy, path, shots in policies:
            model = models.load_causal_lm(path).to(device)
            tok = models.load_tokenizer(path)

            def answer(texts: list[str], template: bool = True) -> list[str]:
                return models.generate(model, tok, texts, c.max_new_tokens, do_sample=False,
                                       shots=shots if template else (), template=template)

            out = responses[policy] = answer(prompts)
            rm_scores[policy] = reward.score(rm, tokenizer, prompts, out)
            m = {"rm_score": sum(rm_scores[policy]) / len(prompts),
                 "response_words": sum(len(r.split()) for r in out) / len(out),
                 "refusal_rate": evaluation.refusal_rate(out)}
            if judged:
                gold[policy] = evaluation.gold_scores(gold_prompts, [out[i] for i in judged])
                m.update({"gold_score": sum(gold[policy]) / len(judged),
                          **{f"gold_score/{f}": s for f, s in evaluation.by_family(gold_prompts, gold[policy]).items()}})
            m["hallucination_rate"] = sum(evaluation.hallucinates(q, r) for q, r in zip(absent, answer(absent))) / len(absent)
            toxic_out = {kind: answer(texts) for kind, texts in toxic.items()}
            m.update({f"toxicity/{kind}": evaluation.toxicity_rate(r) for kind, r in toxic_out.items()})
            m["toxicity"] = sum(m[f"toxicity/{k}"] for k in toxic) / len(toxic)
            m["pii_rate"] = evaluation.pii_rate(out + [r for rs in toxic_out.values() for r in rs])
            if not shots:  # the prompted base is the base model: its LM figures are base's
                m["heldout_lm_loss"] = lm.mean_lm_loss(model, lm_batches)
                for kind, items in probes.items():
                    cont = answer([t for t, _ in items], template=False)
                    m[f"probe/{kind}"] = sum(evaluation.probe_correct(kind, e, r)
                                             for (_, e), r in zip(items, cont)) / len(items)
                m["probe_accuracy"] = sum(m[f"probe/{k}"] for k in probes) / len(probes)
            if policy.startswith("ppo_"):  # sampled as in training: the quantity ppo.max_kl bounds
                m["kl_to_sft"] = ppo.kl_to_reference(model, sft, tok, prompts, ppo_cfg.max_new_tokens, seed=seed,
                                                     temperature=ppo_cfg.temperature)
                m["lm_loss_rise_over_sft"] = m["heldout_lm_loss"] - metrics["eval/sft/heldout_lm_loss"]
            metrics.update({f"eval/{policy}/{k}": v for k, v in m.items()})

        if {"ppo_ptx", "ppo_plain"} <= set(responses) and metrics["eval/ppo_plain/lm_loss_rise_over_sft"] > 0:
            # the paper's claim for ptx: a smaller rise in pretraining loss than plain PPO's
            metrics["eval/ppo_ptx/tax_over_plain_tax"] = (metrics["eval/ppo_ptx/lm_loss_rise_over_sft"]
                                                          / metrics["eval/ppo_plain/lm_loss_rise_over_sft"])

        # 2. win rates, judged by gold (where it can) and by the RM, with 95% bootstrap intervals over prompts
        judges = [("gold", gold)] * bool(judged) + [("rm", rm_scores)]
        for policy in responses:
            for baseline in BASELINES:
                for judge, scores in judges:
                    key = f"eval/{policy}/win_rate_vs_{baseline}" + ("" if judge == "gold" else "_rm")
                    wins = evaluation.outcomes(scores[policy], scores[baseline])
                    lo, hi = evaluation.bootstrap_interval(wins, c.bootstrap, seed)
                    metrics.update({key: sum(wins) / len(wins), key + "_lo": lo, key + "_hi": hi})

        # 3. the promotion gate: PPO-ptx against the registry's champion, head to head on test prompts
        decision = None
        if not args.no_gate and "ppo_ptx" in responses:
            def head_to_head(champion_dir: Path) -> float:
                champion = models.load_causal_lm(champion_dir).to(device)
                asked = gold_prompts if judged else prompts
                theirs = models.generate(champion, models.load_tokenizer(champion_dir), asked, c.max_new_tokens,
                                         do_sample=False)
                if judged:
                    return evaluation.win_rate(gold["ppo_ptx"], evaluation.gold_scores(asked, theirs))
                return evaluation.win_rate(rm_scores["ppo_ptx"], reward.score(rm, tokenizer, asked, theirs))

            decision = promotion.gate(run, name=c.registered_model, candidate_dir=args.ppo / "ptx",
                                      margin=c.promote_margin, head_to_head=head_to_head,
                                      judge="the gold labeler" if judged else "the reward model")
            metrics.update(decision.metrics())

        # 4. what a person looks at: plots, the report
        names = list(responses)
        plot_win_rates(metrics, names, [j for j, _ in judges], args.plots / "win_rates.png")
        if judged:  # no gold scores, no plot of them
            plot_by_family({p: {k.rsplit("/", 1)[1]: v for k, v in metrics.items()
                                if k.startswith(f"eval/{p}/gold_score/")} for p in names},
                           args.plots / "gold_by_family.png")
        plot_toxicity(metrics, names, args.plots / "toxicity.png")
        plot_ppo_curves({v: read_csv(args.ppo_curves / f"{v}.csv") for v in ppo_cfg.variants},
                        args.plots / "ppo_curves.png")
        reward.plot_calibration(read_csv(args.calibration), args.plots / "rm_calibration.png")
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "few_shot_prefix.txt").write_text(few_shot_text(models.load_tokenizer(args.base), few_shot))
        samples = [(q, {p: responses[p][i] for p in names}) for i, q in enumerate(prompts[:5])]
        (args.report / "report.md").write_text(evaluation.report(metrics, names, samples,
                                                                 decision.summary() if decision else None))
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.plots, "plots")
        run.log_artifacts(args.report, "report")
        with tempfile.TemporaryDirectory() as tmp:  # the responses, for reading in the MLflow UI
            rows = [{"prompt": q, **{p: responses[p][i] for p in names}} for i, q in enumerate(prompts)]
            pd.DataFrame(rows).to_csv(Path(tmp) / "responses.csv", index=False)
            run.log_artifacts(Path(tmp) / "responses.csv", "report")
        if decision:  # for the pipeline summary (flows/pipeline.py)
            (args.report / "promotion.json").write_text(json.dumps(
                {**dataclasses.asdict(decision), "summary": decision.summary()}, indent=2) + "\n")
            print(decision.summary())
        print({k: round(v, 3) for k, v in metrics.items() if k.count("/") == 2 and not k.endswith(("_lo", "_hi"))})


if __name__ == "__main__":
    main()
