"""Two CPU processes (torchrun, gloo) run pretrain, sft, reward_model and ppo (PPO-ptx) to completion as
data-parallel ranks: all train, rank 0 alone writes the model, the metrics and the MLflow run, and
the models load. sft, reward_model and ppo recompute their activations in the backward pass
(`activation_checkpointing`) and train LoRA adapters (`lora`), which DDP must carry too. The stage
scripts run as dvc.yaml gives them, several to a process (tests/stage_chain.py) so that the imports
are paid once per launch rather than once per stage."""

import json
import math
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rlhf import reward, tracking, workspace

ROOT = Path(__file__).resolve().parents[1]
LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": "all-linear"}
TINY = {"world": {"n_users": 40, "prompts_per_user": 4.0, "n_shards": 2, "corpus_docs": 300},
        "pretrain": {"vocab_size": 400, "n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 96,
                     "steps": 12, "batch_size": 8},
        "sft": {"epochs": 2, "batch_size": 16, "eval_prompts": 8, "max_new_tokens": 8,
                "activation_checkpointing": True, "lora": {**LORA, "dropout": 0.1}},
        "comparisons": {"k_min": 4, "k_max": 6, "max_prompts": 16, "max_val_prompts": 8, "max_new_tokens": 8},
        "reward_model": {"batch_size": 4, "average_seeds": 2, "length_groups": 3, "activation_checkpointing": True,
                         "lora": LORA},
        "ppo": {"steps": 3, "batch_size": 4, "minibatch_size": 2, "ppo_epochs": 2, "max_new_tokens": 8,
                "ptx_batch_size": 2, "max_kl": 1000.0, "activation_checkpointing": True, "lora": LORA}}
TWO_RANKS = ("pretrain", "sft", "reward_model", "ppo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow(seconds=90)
def test_pretrain_sft_reward_model_and_ppo_on_two_cpu_ranks(tmp_path):
    root = workspace.scratch_copy(ROOT, tmp_path / "repo", TINY)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop(tracking.PARENT_ENV, None)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]

    def args(name: str) -> list[str]:  # `python stages/x.py ...` without the `python`
        return shlex.split(stages[name]["do"]["cmd"].replace("${item}", "ptx") if name == "ppo"
                           else stages[name]["cmd"])[1:]

    # in dvc.yaml's order; each group is one launch
    for group in (["synthesize", "ingest", "demonstrations"], ["pretrain", "sft"], ["comparisons"],
                  ["reward_model", "ppo"]):
        cmd = [str(ROOT / "tests" / "stage_chain.py")]
        for name in group:
            cmd += [*args(name), "--"]
        if group[0] in TWO_RANKS:  # python chain ... -> torchrun chain ...
            assert set(group) <= set(TWO_RANKS)
            cmd = ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *cmd]
        out = subprocess.run([sys.executable, *cmd], cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{group}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    pretrain = json.loads((root / "metrics/pretrain.json").read_text())
    assert pretrain["pretrain/processes"] == 2
    curve = (root / "plots/pretrain/loss.csv").read_text().splitlines()
    assert float(curve[-1].split(",")[1]) < float(curve[1].split(",")[1])  # it trained
    sft = json.loads((root / "metrics/sft.json").read_text())
    assert sft["sft/steps"] >= 1 and 0.0 <= sft["sft/val_gold_score"] <= 1.0

    # two averaged members, each trained over both ranks' shares of the prompts, each step in three
    # passes by length (reward_model.length_groups)
    rm = json.loads((root / "metrics/reward_model.json").read_text())
    assert rm["rm/steps"] == math.ceil(rm["rm/train_prompts"] / (TINY["reward_model"]["batch_size"] * 2))
    assert rm["rm/average_seeds"] == 2 and 0.0 <= rm["rm/val_accuracy"] <= 1.0

    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForCausalLM

    ppo = json.loads((root / "metrics/ppo_ptx.json").read_text())
    assert ppo["ppo/processes"] == 2 and ppo["ppo/iterations"] == 3 and "ppo/ptx_loss" in ppo

    # LoRA: the saved models are plain ones whose embeddings (no adapter) are the base model's
    base, sft_model = (AutoModelForCausalLM.from_pretrained(root / f"models/{m}") for m in ("base", "sft"))
    policy, rm_model = AutoModelForCausalLM.from_pretrained(root / "models/ppo/ptx"), reward.load(root / "models/rm")
    for m in (sft_model, policy, rm_model):
        assert not any("lora" in k or "base_layer" in k for k in m.state_dict())
        assert torch.equal(m.get_input_embeddings().weight, base.get_input_embeddings().weight)
    assert not torch.equal(sft_model.transformer.h[0].attn.c_attn.weight, base.transformer.h[0].attn.c_attn.weight)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("instructgpt").experiment_id])
    by_stage = [r.data.tags[tracking.STAGE_TAG] for r in runs]
    assert sorted(by_stage) == sorted(["synthesize", "ingest", "demonstrations", "pretrain", "sft", "comparisons",
                                       "reward_model", "ppo@ptx"])  # rank 0 only
