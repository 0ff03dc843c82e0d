"""benchmarks/memory.py runs end to end on a tiny model and ends with its JSON line; its four runs
(every weight or LoRA, each without and with activation checkpointing) did the maths they should."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "memory.py")


@pytest.mark.slow(seconds=45)
def test_bench_memory_tiny():
    out = subprocess.run([sys.executable, SCRIPT, "--n-layer", "2", "--n-embd", "32", "--n-head", "2",
                          "--vocab-size", "300", "--batch-size", "4", "--seq-len", "32", "--steps", "3",
                          "--threads", "1", "--lora-rank", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["device"], result["n_layer"], result["batch_size"], result["seq_len"], result["steps"],
            result["lora_rank"]) == ("cpu", 2, 4, 32, 3, 2)
    assert result["max_loss_difference_checkpointing"] < 1e-5 and result["first_loss_difference_lora"] < 1e-6
    assert result["trainable_params_full"] == result["trainable_params_full_ckpt"] == result["model_params"] > 0
    # rank 2 on c_attn (32 -> 96), attn.c_proj and mlp.c_proj (-> 32), mlp.c_fc (-> 128), in two layers
    lora = 2 * 2 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))
    assert result["trainable_params_lora"] == result["trainable_params_lora_ckpt"] == lora
    for mode in ("full", "full_ckpt", "lora", "lora_ckpt"):
        for key in ("peak_mb", "training_mb", "s_per_step"):
            assert result[f"{key}_{mode}"] > 0 and math.isfinite(result[f"{key}_{mode}"]), (key, mode)
        assert result[f"grads_and_adamw_mb_{mode}"] == pytest.approx(12 * result[f"trainable_params_{mode}"] / 2**20)
    for mode in ("full_ckpt", "lora", "lora_ckpt"):
        assert result[f"time_ratio_{mode}_over_full"] == pytest.approx(
            result[f"s_per_step_{mode}"] / result["s_per_step_full"])
        assert result[f"training_memory_ratio_{mode}_over_full"] == pytest.approx(
            result[f"training_mb_{mode}"] / result["training_mb_full"])
    assert "peak resident set" in out.stdout and "the same maths" in out.stdout


def test_bench_memory_needs_more_steps_than_it_leaves_untimed(run_script):
    code, _, err = run_script(SCRIPT, "--steps", "2")
    assert code == 2 and "--steps must be more than" in err
    code, _, err = run_script(SCRIPT, "--lora-rank", "0")
    assert code == 2 and "--lora-rank must be at least 1" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_bench_memory_cuda_without_gpu_says_so(run_script):
    code, _, err = run_script(SCRIPT, "--device", "cuda")
    assert code == 2 and "torch sees no CUDA device" in err
