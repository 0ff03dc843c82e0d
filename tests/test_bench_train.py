"""benchmarks/train.py runs end to end on a tiny configuration, ends with its JSON line, and its two
SFT runs (ours and the HF Trainer) did the same maths on the same batches."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"pretrain_tokens_per_s", "sft_tokens_per_s", "hf_trainer_sft_tokens_per_s", "ratio_ours_over_hf",
        "sft_final_loss_ours", "sft_final_loss_hf", "device", "steps", "batch_size", "seq_len", "model_params",
        "sft_warmup_run_tokens_per_s"}


@pytest.mark.slow(seconds=15)
def test_bench_train_tiny():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train.py"), "--steps", "5", "--rounds", "1",
                          "--batch-size", "4", "--seq-len", "128", "--n-layer", "1", "--n-embd", "32",
                          "--vocab-size", "300", "--docs", "200", "--demos", "30", "--threads", "1"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == KEYS
    assert (result["device"], result["steps"], result["batch_size"], result["seq_len"]) == ("cpu", 5, 4, 128)
    assert result["model_params"] > 0 and result["sft_warmup_run_tokens_per_s"] is None  # CUDA only
    for key in ("pretrain_tokens_per_s", "sft_tokens_per_s", "hf_trainer_sft_tokens_per_s", "ratio_ours_over_hf"):
        assert result[key] > 0 and math.isfinite(result[key])
    assert math.isclose(result["sft_final_loss_ours"], result["sft_final_loss_hf"], rel_tol=1e-4)
    assert "identical batches in the same order" in out.stdout
