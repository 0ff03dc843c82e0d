"""The sft stage on prompts from outside the embedded world (a user's own data): checkpoint
selection by gold score is refused with the key to change, and selection by validation loss runs
and reports no gold figures."""

import json

import pandas as pd
import pytest

from rlhf import models


@pytest.fixture
def run_sft(run_stage, tmp_path):
    """`run_sft(select_by)`: the sft stage on tmp_path's base and demonstrations (`run_stage`)."""
    def run(select_by: str) -> tuple[int, str]:
        out = tmp_path / select_by
        sft = dict(select_by=select_by, epochs=1, batch_size=4, eval_every=1, eval_prompts=4, max_new_tokens=4)
        return run_stage("sft", {"sft": sft}, "--base", tmp_path / "base", "--demos", tmp_path / "sft",
                         "--out", out / "model", "--checkpoints", out / "checkpoints", "--metrics", out / "sft.json",
                         "--curves", out / "loss.csv", params=f"{select_by}.yaml")
    return run


def test_own_prompts_need_selection_by_validation_loss(tmp_path, run_sft):
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

    code, err = run_sft("gold_score")
    assert code != 0
    assert (f"error: sft.select_by is gold_score, but none of the 4 validation prompts in "
            f"{tmp_path / 'sft' / 'val.parquet'} is a prompt of the embedded world") in err
    assert "set sft.select_by: val_loss" in err and not (tmp_path / "gold_score" / "model").exists()
    code, err = run_sft("val_loss")
    assert code == 0, err[-3000:]
    assert (tmp_path / "val_loss" / "model" / "config.json").exists()
    metrics = json.loads((tmp_path / "val_loss" / "sft.json").read_text())  # gold cannot judge these prompts
    assert metrics["sft/best_epoch"] == 1.0 and "sft/val_loss" in metrics and not [k for k in metrics if "gold" in k]
