"""benchmarks/reward.py runs end to end on a tiny configuration and ends with its JSON line: K-way and
pairwise runs over the same data, K-way needing fewer forward passes per pair."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"kway_examples_per_s", "pairwise_examples_per_s", "speed_ratio", "ideal_ratio_sequences",
        "paper_ratio_k_minus_1_over_2", "kway_forward_passes", "pairwise_forward_passes", "kway_val_accuracy",
        "pairwise_val_accuracy", "kway_val_accuracy_gold", "pairwise_val_accuracy_gold", "kway_steps",
        "pairwise_steps", "prompts", "pairs", "mean_k", "model_params", "kway_same_compute_val_accuracy",
        "kway_same_compute_val_accuracy_gold", "device",
        "cold_kway_examples_per_s", "cold_pairwise_examples_per_s"}


@pytest.mark.slow(seconds=15)
def test_bench_reward_tiny():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reward.py"), "--steps", "3", "--prompts", "30",
                          "--val-prompts", "10", "--n-layer", "1", "--n-embd", "32", "--vocab-size", "300",
                          "--docs", "200", "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == KEYS and result["device"] == "cpu"
    assert result["cold_kway_examples_per_s"] is None and result["cold_pairwise_examples_per_s"] is None  # CUDA only
    assert result["kway_steps"] == result["pairwise_steps"] == 3 and result["prompts"] == 30
    for key in ("kway_examples_per_s", "pairwise_examples_per_s", "speed_ratio"):
        assert result[key] > 0 and math.isfinite(result[key])
    for key in ("kway_val_accuracy", "pairwise_val_accuracy", "kway_val_accuracy_gold", "pairwise_val_accuracy_gold",
                "kway_same_compute_val_accuracy", "kway_same_compute_val_accuracy_gold"):
        assert 0 <= result[key] <= 1
    # about as many sequences per step both ways, so K-way covers several times the pairs
    assert result["kway_forward_passes"] == pytest.approx(result["pairwise_forward_passes"], rel=0.2)
    assert 4 <= result["mean_k"] <= 9 and result["ideal_ratio_sequences"] == pytest.approx(
        2 * result["paper_ratio_k_minus_1_over_2"], abs=2e-3)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_bench_reward_cuda_without_gpu_says_so(run_script):
    code, _, err = run_script(ROOT / "benchmarks" / "reward.py", "--device", "cuda")
    assert code != 0 and "torch sees no CUDA device" in err
