"""benchmarks/ppo.py runs end to end on a tiny configuration and ends with its JSON line; with TRL
installed it also ran TRL's PPOTrainer on the same job, and without TRL (or datasets, mlflow, dvc, prefect:
the GPU machine has none of them) it still prints our figures."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "2", "--warmup", "1", "--rounds", "1", "--batch-size", "4", "--minibatch-size", "2", "--ppo-epochs", "2",
        "--max-new-tokens", "6", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--n-positions", "96",
        "--vocab-size", "300", "--docs", "200", "--threads", "1"]
KEYS = {"device", "episodes_per_s", "seconds_per_iteration", "trl_episodes_per_s", "ratio_ours_over_trl",
        "trl_version", "batch_size", "minibatch_size", "ppo_epochs", "response_length", "steps", "model_params"}


def run(args: list[str], python_prefix: list[str] = ()) -> dict:
    out = subprocess.run([sys.executable, *python_prefix, str(ROOT / "benchmarks" / "ppo.py"), *TINY, *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == KEYS
    assert (result["batch_size"], result["ppo_epochs"], result["response_length"]) == (4, 2, 6)
    assert result["episodes_per_s"] > 0 and set(result["seconds_per_iteration"]) == {"rollout", "scoring", "update"}
    return result


@pytest.mark.slow(seconds=15)
def test_bench_ppo_tiny_against_trl():
    pytest.importorskip("trl.experimental.ppo")
    result = run([])
    assert result["trl_version"] and result["trl_episodes_per_s"] > 0 and math.isfinite(result["ratio_ours_over_trl"])


BLOCK = ("import sys; sys.modules.update(dict.fromkeys(['trl', 'datasets', 'mlflow', 'dvc', 'prefect'])); "
         "sys.argv = sys.argv[1:]; import runpy; runpy.run_path(sys.argv[0], run_name='__main__')")


@pytest.mark.slow(seconds=15)
def test_bench_ppo_runs_without_trl_datasets_mlflow_dvc_or_prefect():
    result = run([], python_prefix=["-c", BLOCK])  # importing any of them raises ImportError
    assert result["trl_version"] is None and result["trl_episodes_per_s"] is None
