"""The real pipeline end to end, at its smallest sizes, through the Prefect flow's CLI, in a
fresh git + DVC copy of the repo: ten DVC stages (the design's nine, ppo as ppo@ptx and ppo@plain),
one MLflow parent run with ten children, loadable checkpoints; then a one-key params change reruns
only the stages that read it and what follows them."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlhf import tracking, workspace, world
from test_evaluation import check_report_against_metrics

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["synthesize", "ingest", "demonstrations", "pretrain", "sft", "comparisons",
          "reward_model", "ppo@ptx", "ppo@plain", "evaluate"]
TINY = {
    "world": {"n_users": 40, "prompts_per_user": 4.0, "n_shards": 2, "corpus_docs": 300},
    "pretrain": {"vocab_size": 400, "n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 96,
                 "steps": 10, "batch_size": 8},
    "sft": {"epochs": 1, "batch_size": 16},
    "comparisons": {"k_min": 4, "k_max": 6, "max_prompts": 16, "max_val_prompts": 8, "max_new_tokens": 8},
    "reward_model": {"batch_size": 4, "average_seeds": 2},
    "ppo": {"steps": 2, "batch_size": 4, "minibatch_size": 2, "ppo_epochs": 2, "max_new_tokens": 8,
            "ptx_batch_size": 2, "max_kl": 1000.0},
    "evaluate": {"max_prompts": 12, "max_new_tokens": 8},
}


def pipeline_env(root: Path) -> dict:
    """The environment a pipeline run in `root` gets: its own MLflow store, no analytics, no parent
    MLflow run from outside, and this interpreter's folder first on PATH (dvc.yaml calls `python`)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "DVC_NO_ANALYTICS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop(tracking.PARENT_ENV, None)
    return env


def flow_run(root: Path, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "flows.pipeline", "run", "--root", str(root)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out


def readme_snippets() -> dict[str, str]:
    """README's Python blocks, each under the model folder or registry path it reads (SNIPPET_CHECKS'
    keys), else under its first line."""
    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    return {next((m for m in SNIPPET_CHECKS if m in b), b.partition("\n")[0]): b for b in blocks}


# what each README block must give, run after it in the same interpreter
SNIPPET_CHECKS = {
    # the rewards transformers alone gives are the project's own (rlhf.reward.score), padding and all
    '"models/rm"': """
from rlhf import models, reward
expected = reward.score(reward.load("models/rm"), models.load_tokenizer("models/rm"), [prompt] * len(responses), responses)
assert len(set(map(len, texts))) > 1, texts  # the batch is padded
assert torch.allclose(rewards, torch.tensor(expected), atol=1e-5), (rewards, expected)
""",
    # the champion downloaded from the registry is a policy that answers
    '"models:/': """
ids = tokenizer("Instruction: Name a colour.\\nResponse:", return_tensors="pt")
assert policy.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] > ids["input_ids"].shape[1]
""",
}


def run_readme_snippets(root: Path, env: dict) -> None:
    """Every Python block of README, as a user pastes it, in the finished run's folder: the model
    folders it names and the MLflow registry it reads are the run's. One interpreter runs them all
    (its imports paid once), each block in a namespace of its own."""
    snippets = readme_snippets()
    assert set(snippets) == set(SNIPPET_CHECKS), f"README Python blocks {sorted(snippets)}, checks {sorted(SNIPPET_CHECKS)}"
    blocks = [(key, code + SNIPPET_CHECKS[key]) for key, code in snippets.items()]
    program = (f"import sys\nfor key, code in {blocks!r}:\n"
               "    print('README block', key, file=sys.stderr, flush=True)\n"
               "    exec(compile(code, 'README block ' + key, 'exec'), {'__name__': '__main__'})\n")
    out = subprocess.run([sys.executable, "-c", program], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


def statuses(stdout: str) -> dict[str, str]:
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] and line.split()[0] in STAGES]
    return {r[0]: " ".join(r[1:-1]) for r in rows}


@pytest.mark.slow(seconds=320)
def test_real_pipeline_end_to_end(tmp_path):
    root = workspace.scratch_copy(ROOT, tmp_path / "repo", TINY)
    params = yaml.safe_load((root / "params.yaml").read_text())
    env = pipeline_env(root) | {"PREFECT_HOME": str(tmp_path / "prefect")}

    first = flow_run(root, env)
    assert statuses(first.stdout) == {s: "ran" for s in STAGES}, first.stdout
    assert "Headline metrics" in first.stdout and "make mlflow-ui" in first.stdout
    evaluation = json.loads((root / "metrics" / "eval.json").read_text())
    for policy in ("base", "sft", "ppo_ptx", "ppo_plain"):
        assert 0.0 <= evaluation[f"eval/{policy}/gold_score"] <= 1.0
    for policy in ("ppo_ptx", "ppo_plain"):
        assert f"eval/{policy}/kl_to_sft" in evaluation and f"eval/{policy}/heldout_lm_loss" in evaluation
    for policy in ("base", "prompted_base", "sft", "ppo_ptx", "ppo_plain"):
        for key in ("win_rate_vs_sft", "win_rate_vs_prompted_base_rm", "hallucination_rate", "toxicity/biased",
                    "pii_rate"):
            assert 0.0 <= evaluation[f"eval/{policy}/{key}"] <= 1.0, (policy, key)
        lo, mid, hi = (evaluation[f"eval/{policy}/win_rate_vs_sft{s}"] for s in ("_lo", "", "_hi"))
        assert lo <= mid <= hi
    # the report's table is metrics/eval.json's figures; every plot is an image with something drawn
    check_report_against_metrics((root / "reports" / "eval" / "report.md").read_text(), evaluation,
                                 ["base", "prompted_base", "sft", "ppo_ptx", "ppo_plain"])
    import matplotlib.image

    for name in ("win_rates", "gold_by_family", "toxicity", "ppo_curves", "rm_calibration"):
        image = matplotlib.image.imread(root / "plots" / "eval" / f"{name}.png")
        assert image.shape[0] > 100 and image.std() > 0.01, name
    # the first candidate becomes champion, and the summary says so
    assert evaluation["eval/promotion/promoted"] == 1.0 and evaluation["eval/promotion/champion_version"] == 1.0
    assert "promotion: candidate instructgpt-policy v1 promoted to champion" in first.stdout
    run_readme_snippets(root, env)

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    for name in ("base", "sft", "ppo/ptx", "ppo/plain"):
        AutoTokenizer.from_pretrained(root / "models" / name)
        AutoModelForCausalLM.from_pretrained(root / "models" / name)
    # the default likelihood reward model: its class's code is saved with it
    rm = AutoModelForSequenceClassification.from_pretrained(root / "models" / "rm", trust_remote_code=True)
    assert type(rm).__name__ == "GPT2LikelihoodReward" and rm.config.rlhf_likelihood_coef > 0
    rm_metrics = json.loads((root / "metrics" / "reward_model.json").read_text())
    assert rm.config.num_labels == 1 and rm.config.rlhf_reward_shift == rm_metrics["rm/reward_shift"]
    assert 0 <= rm_metrics["rm/val_accuracy"] <= 1
    assert f"Reward model (metrics/reward_model.json): {rm_metrics['rm/val_accuracy']:.4f} of the val pairs" in first.stdout
    # against the labeler's own agreement with gold: its noise came with the rankings (labeler.json)
    assert 0 <= rm_metrics["rm/val_expected_accuracy"] <= rm_metrics["rm/val_expected_ceiling"] <= 1
    assert rm_metrics["rm/val_labeler_shortfall"] == pytest.approx(
        rm_metrics["rm/val_labeler_gold_agreement"] - rm_metrics["rm/val_accuracy"])
    for key in ("rm/val_labeler_shortfall", "rm/val_expected_shortfall"):  # 95% intervals over the val prompts,
        # which on this tiny val set may end on the figure itself, summed in another order
        assert rm_metrics[f"{key}_lo"] - 1e-12 <= rm_metrics[key] <= rm_metrics[f"{key}_hi"] + 1e-12
    assert (f"{rm_metrics['rm/val_labeler_shortfall']:.4f} more than the RM: 95% interval over the val prompts "
            f"{rm_metrics['rm/val_labeler_shortfall_lo']:.4f} to {rm_metrics['rm/val_labeler_shortfall_hi']:.4f}"
            in first.stdout)
    # two members, weight-averaged: their own figures beside the average's, their curves one after the other
    assert rm_metrics["rm/average_seeds"] == 2
    assert rm_metrics["rm/members/val_accuracy_min"] <= rm_metrics["rm/members/val_accuracy_mean"] \
        <= rm_metrics["rm/members/val_accuracy_max"]
    curve = (root / "plots" / "reward_model" / "loss.csv").read_text().splitlines()
    assert curve[0] == "step,loss,accuracy,member" and {row.split(",")[-1] for row in curve[1:]} == {"0.0", "1.0"}
    per_family = {k.rsplit("/", 1)[1] for k in rm_metrics if k.startswith("rm/val_accuracy_gold/")}
    assert per_family and per_family <= {*world.FAMILIES, "other"}
    assert (root / "plots" / "reward_model" / "calibration.csv").read_text().startswith("bin_low,bin_high,predicted")

    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    try:
        parent = tracking.last_pipeline_run(params["common"]["experiment"], root)
        kids = tracking.child_runs(parent.info.run_id, root)
        assert sorted(k.data.tags[tracking.STAGE_TAG] for k in kids) == sorted(STAGES)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        for k in kids:
            assert k.info.status == "FINISHED" and k.data.params and k.data.metrics, k.data.tags
            assert k.data.tags[tracking.CACHED_TAG] == "false"
            artifacts = {a.path for a in client.list_artifacts(k.info.run_id)}
            assert "metrics" in artifacts, (k.data.tags[tracking.STAGE_TAG], artifacts)
            if k.data.tags[tracking.STAGE_TAG] in ("pretrain", "sft", "reward_model", "ppo@ptx", "ppo@plain"):
                assert "model" in artifacts
        assert parent.data.metrics["eval/ppo_ptx/gold_score"] == evaluation["eval/ppo_ptx/gold_score"]
        for key in ("rm/val_accuracy", "rm/val_accuracy_gold", "rm/val_labeler_gold_agreement",
                    "rm/val_labeler_shortfall", "rm/val_labeler_shortfall_lo", "rm/val_labeler_shortfall_hi"):
            assert parent.data.metrics[key] == rm_metrics[key]

        # one ppo key: only the two ppo stages and evaluate rerun; the rest is up to date
        params["ppo"]["kl_coef"] = 0.1
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        second = flow_run(root, env)
        expected = {s: "up to date" for s in STAGES} | {"ppo@ptx": "ran", "ppo@plain": "ran", "evaluate": "ran"}
        assert statuses(second.stdout) == expected, second.stdout
        # the second candidate meets the champion head to head: promoted or not, the gate says why
        second_eval = json.loads((root / "metrics" / "eval.json").read_text())
        assert second_eval["eval/promotion/candidate_version"] == 2.0
        assert "eval/promotion/win_rate_vs_champion" in second_eval and "promotion: candidate instructgpt-policy v2" in second.stdout
        aliases = client.get_registered_model("instructgpt-policy").aliases
        assert str(aliases["candidate"]) == "2"
        assert str(aliases["champion"]) == ("2" if second_eval["eval/promotion/promoted"] else "1")
        parent2 = tracking.last_pipeline_run(params["common"]["experiment"], root)
        assert parent2.data.tags["rlhf.params_changed"] == "ppo.kl_coef"
        assert len(tracking.child_runs(parent2.info.run_id, root)) == len(STAGES)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI")


def own_data(root: Path) -> list[str]:
    """A user's own prompt logs (none of them a prompt of the embedded world, one with an email in
    it) in data/incoming, demonstrations of the first 150 and ranked lists for the next 100 in
    data/import; returns the prompts."""
    import random

    rng = random.Random(0)
    things = ["the sea", "a cat", "winter", "coffee", "a train", "the moon", "bread", "a river"]
    asks = ["Write a short poem about {}", "Describe {} in one sentence", "Give me three facts about {}",
            "Why do people like {}?", "Tell a joke about {}"]
    rows = [{"prompt_id": f"own-{u}-{j}", "user_id": f"user{u}",
             "prompt": rng.choice(asks).format(rng.choice(things)) + f" (take {u}.{j})"}
            for u in range(60) for j in range(5)]
    rows[7]["prompt"] += " Reply to jane.doe@example.com"
    (root / "data" / "incoming" / "own.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    demos = [{"prompt": r["prompt"], "response": "Here is a short answer about it."} for r in rows[:150]]
    (root / "data" / "import" / "demonstrations" / "own.jsonl").write_text("".join(json.dumps(d) + "\n" for d in demos))
    ranked = [{"prompt": r["prompt"], "completions": ["A clear and kind answer.", "An answer.", "no"]}
              for r in rows[150:250]]
    (root / "data" / "import" / "comparisons" / "own.jsonl").write_text("".join(json.dumps(d) + "\n" for d in ranked))
    return [r["prompt"] for r in rows]


@pytest.mark.slow(seconds=170)
def test_pipeline_on_ones_own_data_and_a_llama_style_base_model(tmp_path):
    """Bring your own data and model, as README says: `world.n_users: 0` (no world prompts) and
    `world.corpus_docs: 0` (no world text: the pretraining corpus is the user's own Parquet file in
    data/import/corpus, which PPO-ptx and evaluation's held-out LM loss read), prompt
    logs in data/incoming, imported demonstrations and rankings with held-out shares, SFT selected
    by validation loss, and `pretrain.base` a Llama-style checkpoint shaped like a hub one (RMSNorm
    and no bias after it, attention dropout only, a BOS token, no pad token, a long context, a chat
    template that writes the BOS token, which every stage formats prompts with). Every
    stage runs with `dvc repro`, the checkpoint in data/import/base, whose files DVC tracks; the
    reward shift that no weight can carry is in the RM's config,
    and the project's reward functions apply it; neither the RM nor the evaluation has gold figures to
    report, and the promotion gate judges by the reward model. Only PPO-ptx (`ppo.variants: [ptx]`):
    the first test runs plain PPO, and here a stage process fewer (20-25 s on 2 cores)."""
    import pandas as pd
    from test_reward import causal_lm_checkpoint
    from test_train import CHAT
    from tokenizers.processors import TemplateProcessing

    from rlhf import models, reward

    overrides = {"world": TINY["world"] | {"n_users": 0, "corpus_docs": 0},
                 "pretrain": TINY["pretrain"] | {"base": "data/import/base"},
                 "demonstrations": {"source": "import", "import_val_fraction": 0.2},
                 "comparisons": TINY["comparisons"] | {"source": "import", "import_val_fraction": 0.2},
                 "sft": TINY["sft"] | {"select_by": "val_loss"},
                 "reward_model": TINY["reward_model"] | {"likelihood_coef": 0.0},  # the paper's head: any family
                 "ppo": TINY["ppo"] | {"variants": ["ptx"]}}
    root = workspace.scratch_copy(ROOT, tmp_path / "repo", TINY | overrides)
    base = root / "data" / "import" / "base"  # where DVC tracks the checkpoint's files
    prompts = own_data(root)
    env = pipeline_env(root)

    def repro(*targets):
        out = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=root, env=env,
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]

    import random

    texts = world.generate_corpus(random.Random(1), 300)  # the user's own text; the checkpoint was trained on it
    own_corpus = root / "data" / "import" / "corpus" / "own.parquet"
    pd.DataFrame({"text": texts, "url": "https://example.com"}).to_parquet(own_corpus)
    tok = models.train_tokenizer(texts + prompts, 400)
    # as Llama's: a BOS token of its own before every text, no pad token
    tok.bos_token, tok.pad_token = models.PAD, None
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{models.PAD} $A",
                                                              special_tokens=[(models.PAD, tok.bos_token_id)])
    tok.chat_template = CHAT  # as Llama 3's: it starts with the BOS token, which the tokenizer adds too
    # Llama 3's context: the blocks of pretraining text stay at pretrain.n_positions tokens
    causal_lm_checkpoint("llama", base, tok, texts, steps=30, context=131072)
    repro()

    written = sorted(f.stem for f in (root / "metrics").glob("*.json"))
    assert written == sorted(s.replace("@", "_").replace("evaluate", "eval") for s in STAGES if s != "ppo@plain")
    assert not (root / "models" / "ppo" / "plain").exists()
    split = pd.concat([pd.read_parquet(root / "data" / "prompts" / f"{s}.parquet") for s in ("train", "val", "test")])
    # every own row in a split, and nothing of the world's (its shards are empty)
    assert len(split) == 300 and split.prompt_id.str.startswith("own-").all()
    ingest = json.loads((root / "metrics" / "ingest.json").read_text())
    assert ingest["ingest/quarantined"] == 0 and ingest["ingest/pii/email"] == 1
    assert not split.prompt.str.contains("jane.doe@example.com").any()
    assert json.loads((root / "metrics" / "synthesize.json").read_text())["synthesize/corpus_docs"] == 0
    assert math.isfinite(json.loads((root / "metrics" / "ppo_ptx.json").read_text())["ppo/ptx_loss"])
    for name in ("base", "sft", "ppo/ptx"):
        assert json.loads((root / "models" / name / "config.json").read_text())["model_type"] == "llama", name
    rm = reward.load(root / "models" / "rm")
    rm_metrics = json.loads((root / "metrics" / "reward_model.json").read_text())
    assert type(rm).__name__ == "LlamaForSequenceClassification"
    shift = rm_metrics["rm/reward_shift"]
    assert getattr(rm.config, reward.OFFSET_KEY) == pytest.approx(shift) == rm.config.rlhf_reward_shift
    assert rm_metrics["rm/val_pairs"] > 0 and 0 <= rm_metrics["rm/val_accuracy"] <= 1
    assert not [k for k in rm_metrics if "gold" in k or "expected" in k]  # imported rankings: no gold, no labeler
    demos = pd.read_parquet(root / "data" / "sft" / "train.parquet")
    scores = reward.score(rm, models.load_tokenizer(root / "models" / "rm"), list(demos.prompt), list(demos.response))
    assert abs(sum(scores) / len(scores)) < 1e-4
    sft = json.loads((root / "metrics" / "sft.json").read_text())
    assert "sft/val_loss" in sft and not [k for k in sft if "gold" in k]
    evaluation = json.loads((root / "metrics" / "eval.json").read_text())
    assert "eval/ppo_ptx/kl_to_sft" in evaluation and "eval/ppo_ptx/win_rate_vs_sft_rm" in evaluation
    assert evaluation["eval/heldout_lm_tokens"] > 0  # 5% of the user's 300 documents: there is no other text
    # the gold labeler cannot judge own prompts: no gold figure, no gold plot; the RM judges, the gate too
    assert evaluation["eval/gold_prompts"] == 0 and not [k for k in evaluation if "gold_score" in k]
    assert not [k for k in evaluation if k.endswith(("win_rate_vs_sft", "win_rate_vs_prompted_base"))]
    report = (root / "reports" / "eval" / "report.md").read_text()
    policies = ["base", "prompted_base", "sft", "ppo_ptx"]
    check_report_against_metrics(report, evaluation, policies)
    assert not [k for k in evaluation if "ppo_plain" in k]
    assert "every win rate is the reward model's" in report and "by the gold labeler" not in report
    assert sorted(f.name for f in (root / "plots" / "eval").glob("*.png")) == [
        "ppo_curves.png", "rm_calibration.png", "toxicity.png", "win_rates.png"]
    assert json.loads((root / "reports" / "eval" / "promotion.json").read_text())["judge"] == "the reward model"
    # the prompted base was shown the user's own demonstrations, not the world's tasks
    prefix = (root / "reports" / "eval" / "few_shot_prefix.txt").read_text()
    shots = re.findall(r"### user:\n(.*?)\n\n### assistant:\n", prefix, re.S)  # as earlier turns of the chat
    assert len(shots) == 3 and set(shots) <= set(pd.read_parquet(root / "data" / "sft" / "train.parquet").prompt)
    # the chat template travels with every model, to the policy the registry holds
    assert models.load_tokenizer(root / "models" / "ppo" / "ptx").chat_template == CHAT
    repro("--force", "--single-item", "evaluate")  # a second candidate, the same policy: a tie by the RM, not promoted
    promotion = json.loads((root / "reports" / "eval" / "promotion.json").read_text())
    assert not promotion["promoted"] and promotion["win_rate"] == 0.5 and promotion["champion_before"] == "1"
    assert "judged by the reward model" in promotion["reason"]
    # the checkpoint replaced in place (trained on): DVC sees it and would rerun pretrain and what follows
    def status() -> str:
        return subprocess.run([sys.executable, "-m", "dvc", "status", "pretrain"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=300).stdout
    assert "modified:" not in status()
    causal_lm_checkpoint("llama", base, tok, texts, steps=2, seed=1, context=131072)
    assert "modified:" in status() and "data/import/base" in status()
