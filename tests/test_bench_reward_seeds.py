"""benchmarks/reward_seeds.py: the weight average, the spread over seeds, and an end-to-end run on a
tiny pipeline folder (the one reward_gap's tests build) with the project's params."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from test_bench_reward_gap import tiny_run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "reward_seeds.py"
spec = importlib.util.spec_from_file_location("reward_seeds", SCRIPT)
seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds)


def test_summary_is_mean_min_and_max_of_each_figure():
    out = seeds.summary([(0.7, 0.6), (0.8, 0.5), (0.9, 0.7)])
    assert out["gold"] == pytest.approx({"mean": 0.8, "min": 0.7, "max": 0.9})
    assert out["labeler"] == pytest.approx({"mean": 0.6, "min": 0.5, "max": 0.7})


def run(run_script, folder: Path, *extra: str) -> dict:
    """The benchmark on `folder`, in this process, one torch thread; its JSON summary."""
    code, out, err = run_script(SCRIPT, "--run", folder, "--threads", "1", *extra)
    assert code == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_runs_end_to_end_and_is_deterministic_per_seed(tmp_path, run_script):
    folder = tiny_run(tmp_path)
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    first = run(run_script, folder, "--seeds", "2", "--lr", "1e-3", "5e-3")
    assert [r["lr"] for r in first["runs"]] == [1e-3, 5e-3] and first["val_prompts"] == 4
    for r in first["runs"]:
        assert r["epochs"] == 1 and len(r["seeds"]) == 2
        assert r["gold"]["min"] <= r["gold"]["mean"] <= r["gold"]["max"] and 0 <= r["labeler"]["mean"] <= 1
    # one seed: its own figures again, and the average of one model is that model
    again = run(run_script, folder, "--seeds", "1", "--lr", "1e-3")["runs"][0]
    assert again["seeds"][0] == first["runs"][0]["seeds"][0] == again["weight_average"]
    assert (again["likelihood_coef"], again["lm_coef"]) == (0.15, 0.0)  # the project's params
    # the paper's head is another model: other figures
    other = run(run_script, folder, "--seeds", "1", "--lr", "1e-3", "--likelihood-coef", "0")["runs"][0]
    assert (other["likelihood_coef"], other["lm_coef"]) == (0.0, 0.0) and other["seeds"][0] != again["seeds"][0]


def test_the_paper_head_with_an_lm_loss_is_a_usage_error(tmp_path, run_script):
    folder = tiny_run(tmp_path)
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    code, _, err = run_script(SCRIPT, "--run", folder, "--seeds", "1", "--likelihood-coef", "0", "--lm-coef", "1")
    assert code == 2 and "lm_coef 1.0 needs the likelihood reward model" in err


def test_a_folder_without_a_finished_run_is_an_error_naming_what_is_missing(tmp_path, run_script):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    code, _, err = run_script(SCRIPT, "--run", tmp_path)
    assert code != 0 and f"{tmp_path / 'models' / 'sft' / 'config.json'} not found" in err
