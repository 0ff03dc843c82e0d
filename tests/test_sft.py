"""The sft stage on prompts from outside the embedded world (a user's own data): checkpoint
selection by gold score is refused with the key to change, and selection by validation loss runs
and reports no gold figures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from rlhf import models

ROOT = Path(__file__).resolve().parents[1]


def run_sft(root: Path, select_by: str) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sft"].update(select_by=select_by, epochs=1, batch_size=4, eval_every=1, eval_prompts=4, max_new_tokens=4)
    (root / f"{select_by}.yaml").write_text(yaml.safe_dump(params))
    out = root / select_by
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return subprocess.run([sys.executable, str(ROOT / "stages" / "sft.py"), "--params", str(root / f"{select_by}.yaml"),
                           "--base", str(root / "base"), "--demos", str(root / "sft"), "--out", str(out / "model"),
                           "--checkpoints", str(out / "checkpoints"), "--metrics", str(out / "sft.json"),
                           "--curves", str(out / "loss.csv")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_own_prompts_need_selection_by_validation_loss(tmp_path):
    prompts = ["Write a haiku about the sea", "Explain what a mutex is", "Translate 'hello' to French",
               "Give me a name for a cat", "Summarize the plot of Hamlet", "What should I cook tonight?"]
    responses = ["Waves fold into foam.", "A lock that one thread holds at a time.", "Bonjour.", "Miso.",
                 "A prince avenges his father.", "Pasta with tomatoes."]
    (tmp_path / "sft").mkdir()
    demos = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(6)], "prompt": prompts, "response": responses})
    demos.to_parquet(tmp_path / "sft" / "train.parquet", index=False)
    demos.to_parquet(tmp_path / "sft" / "val.parquet", index=False)
    tok = models.train_tokenizer(prompts + responses, 300)
    models.save(models.new_causal_lm(tok, 1, 2, 16, 64), tok, tmp_path / "base")

    refused = run_sft(tmp_path, "gold_score")
    assert refused.returncode != 0
    assert (f"error: sft.select_by is gold_score, but none of the 4 validation prompts in "
            f"{tmp_path / 'sft' / 'val.parquet'} is a prompt of the embedded world") in refused.stderr
    assert "set sft.select_by: val_loss" in refused.stderr and not (tmp_path / "gold_score" / "model").exists()
    ran = run_sft(tmp_path, "val_loss")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (tmp_path / "val_loss" / "model" / "config.json").exists()
    metrics = json.loads((tmp_path / "val_loss" / "sft.json").read_text())  # gold cannot judge these prompts
    assert metrics["sft/best_epoch"] == 1.0 and "sft/val_loss" in metrics and not [k for k in metrics if "gold" in k]
