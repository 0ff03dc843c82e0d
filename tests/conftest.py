"""Shared test helpers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import stage_chain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def script_runner(tmp_path):
    """`make(text)` writes a training script (its `{tests}` filled with this folder, so it can import
    the test modules) and returns `run(ckpt, out, kill_at)`, which runs it in a fresh process: the
    script kills itself with SIGKILL at step (or iteration) `kill_at`, 0 for never."""
    def make(text: str):
        script = tmp_path / "run.py"
        script.write_text(text.format(tests=os.path.dirname(__file__)))

        def run(ckpt, out, kill_at: int) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, str(script), str(ckpt), str(out), str(kill_at)],
                                  capture_output=True, text=True)
        return run
    return make


@pytest.fixture
def run_script(monkeypatch, capsys):
    """`run_script(path, *args)` runs a script as `python path args` would, in this process, and
    returns (exit code, stdout, stderr): for the usage errors and missing inputs a script reports
    before it works, without a new process that imports torch again (5-13 s each on 2 cores).
    sys.argv, sys.path and torch's thread count are restored after."""
    import torch

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    threads = torch.get_num_threads()

    def run(path, *args):
        capsys.readouterr()
        code = stage_chain.run_one([str(path), *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err
    yield run
    torch.set_num_threads(threads)


@pytest.fixture
def run_stage(run_script, monkeypatch, tmp_path):
    """`run_stage(stage, updates, *args, params="params.yaml")`: `stages/<stage>.py args` in tmp_path
    and in this process (`run_script`), with its own MLflow store, on the repo's params.yaml with
    `updates` ({section: {key: value}}) over it, written to tmp_path / params; (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def run(stage: str, updates: dict, *args, params: str = "params.yaml") -> tuple[int, str]:
        values = yaml.safe_load((ROOT / "params.yaml").read_text())
        for section, keys in updates.items():
            values[section].update(keys)
        (tmp_path / params).write_text(yaml.safe_dump(values))
        code, _, err = run_script(ROOT / "stages" / f"{stage}.py", "--params", tmp_path / params, *args)
        return code, err
    return run


def pytest_collection_modifyitems(config, items):
    """Under `make test` (xdist, 2 workers, work stealing) deal the tests marked slow to the
    workers before anything else, heaviest first, each to the worker with the least slow work so
    far (by the marker's `seconds`, its rough time there on 2 cores; 60 if not given).

    Work stealing hands worker i the i-th contiguous slice of the collection and steals from the
    tail of a queue; left in file order, the two pipeline tests sat in one slice one after the
    other (320 + 202 s of a 655 s suite on the EPYC). Every worker collects, and orders alike."""
    workers = getattr(config, "workerinput", {}).get("workercount") or config.getoption("numprocesses", None)
    if not isinstance(workers, int) or workers < 2:  # (a worker sees dist "no": it cannot check for worksteal)
        return
    cost = {i: i.get_closest_marker("slow").kwargs.get("seconds", 60) for i in items if i.get_closest_marker("slow")}
    rest = [i for i in items if i not in cost]
    dealt: list[list] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for item in sorted(cost, key=cost.get, reverse=True):
        w = load.index(min(load))
        dealt[w].append(item)
        load[w] += cost[item]
    ordered, left = [], len(items)
    for w in range(workers):  # the slice sizes xdist's work stealing hands out
        size = left // (workers - w)
        left -= size
        take = max(0, size - len(dealt[w]))
        ordered += dealt[w] + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest
