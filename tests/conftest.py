"""Shared test helpers."""

import os
import subprocess
import sys

import pytest


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
