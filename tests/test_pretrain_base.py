"""The pretrain stage with `pretrain.base`: a checkpoint in data/import/base (a DVC dependency of the
stage, so its files are tracked) loads silently; one named elsewhere loads with a note that DVC tracks
only the name."""

import json
from pathlib import Path

import pytest
import yaml

from rlhf import models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_pretrain(run_script, monkeypatch, tmp_path):
    """`run_pretrain(base)`: the pretrain stage with `pretrain.base` = base, in tmp_path and in this
    process (`run_script`), with its own MLflow store; (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def run(base: str) -> tuple[int, str]:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["pretrain"].update(base=base, batch_size=4)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        code, _, err = run_script(ROOT / "stages" / "pretrain.py", "--params", "params.yaml", "--corpus", "corpus.jsonl",
                                  "--tracked-base", "data/import/base", "--out", "out", "--checkpoints", "checkpoints",
                                  "--metrics", "pretrain.json", "--curves", "loss.csv")
        return code, err
    return run


def test_a_base_outside_data_import_base_is_loaded_with_a_note(tmp_path, run_pretrain):
    docs = [f"the cat {i} is red. the dog {i} is blue. they sat on mat {i}." for i in range(300)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    tok = models.train_tokenizer(docs, 300)
    for folder in (tmp_path / "elsewhere", tmp_path / "data" / "import" / "base"):
        models.save(models.new_causal_lm(tok, 1, 2, 16, 32), tok, folder)

    code, err = run_pretrain(str(tmp_path / "elsewhere"))
    assert code == 0, err[-3000:]
    assert f"note: DVC tracks pretrain.base={tmp_path / 'elsewhere'} by its value only" in err
    code, err = run_pretrain("data/import/base")
    assert code == 0, err[-3000:]
    assert "note: DVC tracks" not in err and (tmp_path / "out" / "config.json").exists()
