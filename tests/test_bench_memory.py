"""benchmarks/memory.py runs end to end on a tiny model, ends with its JSON line, and its two runs,
without and with activation checkpointing, did the same maths."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "memory.py")


@pytest.mark.slow(seconds=20)
def test_bench_memory_tiny():
    out = subprocess.run([sys.executable, SCRIPT, "--n-layer", "2", "--n-embd", "32", "--n-head", "2",
                          "--vocab-size", "300", "--batch-size", "4", "--seq-len", "32", "--steps", "3",
                          "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["device"], result["n_layer"], result["batch_size"], result["seq_len"], result["steps"]) == \
        ("cpu", 2, 4, 32, 3)
    assert result["model_params"] > 0 and result["max_loss_difference"] < 1e-5
    for key in ("peak_mb_off", "peak_mb_on", "training_mb_off", "training_mb_on", "s_per_step_off",
                "s_per_step_on", "training_memory_ratio_on_over_off", "time_ratio_on_over_off"):
        assert result[key] > 0 and math.isfinite(result[key]), key
    assert result["time_ratio_on_over_off"] == pytest.approx(result["s_per_step_on"] / result["s_per_step_off"])
    assert "peak resident set" in out.stdout and "the same maths" in out.stdout


def test_bench_memory_needs_more_steps_than_it_leaves_untimed(run_script):
    code, _, err = run_script(SCRIPT, "--steps", "2")
    assert code == 2 and "--steps must be more than" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_bench_memory_cuda_without_gpu_says_so(run_script):
    code, _, err = run_script(SCRIPT, "--device", "cuda")
    assert code == 2 and "torch sees no CUDA device" in err
