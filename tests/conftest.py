"""Shared test helpers."""

import os
import subprocess
import sys

import pytest

import stage_chain


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
