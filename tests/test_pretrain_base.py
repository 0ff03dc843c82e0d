"""The pretrain stage with `pretrain.base`: a checkpoint in data/import/base (a DVC dependency of the
stage, so its files are tracked) loads silently; one named elsewhere loads with a note that DVC tracks
only the name."""

import json

import pytest

from rlhf import models


@pytest.fixture
def run_pretrain(run_stage):
    """`run_pretrain(base)`: the pretrain stage with `pretrain.base` = base, in tmp_path (`run_stage`)."""
    def run(base: str) -> tuple[int, str]:
        return run_stage("pretrain", {"pretrain": {"base": base, "batch_size": 4}}, "--corpus", "corpus.jsonl",
                         "--tracked-base", "data/import/base", "--out", "out", "--checkpoints", "checkpoints",
                         "--metrics", "pretrain.json", "--curves", "loss.csv")
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
