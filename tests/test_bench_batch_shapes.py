"""benchmarks/batch_shapes.py runs end to end on a tiny model and ends with its JSON line."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "batch_shapes.py")


def test_bench_batch_shapes_tiny():
    out = subprocess.run([sys.executable, SCRIPT, "--shapes", "3", "--min-rows", "2", "--max-rows", "6",
                          "--min-len", "8", "--max-len", "32", "--n-layer", "1", "--n-embd", "16", "--n-head", "2",
                          "--vocab-size", "64", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["device"], result["precision"], result["shapes"]) == ("cpu", "fp32", 3)
    for key in ("new_shape_ms", "same_shapes_again_ms", "bucketed_ms", "one_shape_ms"):
        assert result[key] > 0 and math.isfinite(result[key])
    assert result["cost_per_new_shape_ms"] == pytest.approx(result["new_shape_ms"] - result["same_shapes_again_ms"],
                                                            abs=0.02)
    assert "new shapes" in out.stdout and "one shape" in out.stdout


def test_bench_batch_shapes_rejects_bad_ranges(run_script):
    code, _, err = run_script(SCRIPT, "--min-rows", "9", "--max-rows", "4")
    assert code == 2 and "--min-rows" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_bench_batch_shapes_cuda_without_gpu_says_so(run_script):
    code, _, err = run_script(SCRIPT, "--device", "cuda")
    assert code != 0 and "torch sees no CUDA device" in err
