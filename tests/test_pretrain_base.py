"""The pretrain stage with `pretrain.base`: a checkpoint in data/import/base (a DVC dependency of the
stage, so its files are tracked) loads silently; one named elsewhere loads with a note that DVC tracks
only the name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from rlhf import models

ROOT = Path(__file__).resolve().parents[1]


def run_pretrain(root: Path, base: str) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["pretrain"].update(base=base, batch_size=4)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return subprocess.run([sys.executable, str(ROOT / "stages" / "pretrain.py"), "--params", "params.yaml",
                           "--corpus", "corpus.jsonl", "--tracked-base", "data/import/base", "--out", "out", "--checkpoints", "checkpoints",
                           "--metrics", "pretrain.json", "--curves", "loss.csv"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_base_outside_data_import_base_is_loaded_with_a_note(tmp_path):
    docs = [f"the cat {i} is red. the dog {i} is blue. they sat on mat {i}." for i in range(300)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tok = models.train_tokenizer(docs, 300)
    for folder in (tmp_path / "elsewhere", tmp_path / "data" / "import" / "base"):
        models.save(models.new_causal_lm(tok, 1, 2, 16, 32), tok, folder)

    elsewhere = run_pretrain(tmp_path, str(tmp_path / "elsewhere"))
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    assert f"note: DVC tracks pretrain.base={tmp_path / 'elsewhere'} by its value only" in elsewhere.stderr
    tracked = run_pretrain(tmp_path, "data/import/base")
    assert tracked.returncode == 0, tracked.stderr[-3000:]
    assert "note: DVC tracks" not in tracked.stderr and (tmp_path / "out" / "config.json").exists()
