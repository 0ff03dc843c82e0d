"""A fresh git + DVC copy of the project, for trying params in isolation, tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# what a pipeline run needs: the graph, the code its stages run, and the folders dvc.yaml depends on
# (incoming prompts, imported demonstrations and rankings, an imported base checkpoint, a corpus of
# one's own), each kept in git by its README
PROJECT_FILES = ("dvc.yaml", "stages", "src", "flows", "data/incoming/README.md",
                 "data/import/demonstrations/README.md", "data/import/comparisons/README.md",
                 "data/import/base/README.md", "data/import/corpus/README.md")


def scratch_copy(src_root: str | Path, dst: str | Path,
                 overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """Copy the project at `src_root` into the new folder `dst` with params.yaml's sections
    updated by `overrides`, and make it a git + DVC repo of its own."""
    src_root, dst = Path(src_root), Path(dst)
    dst.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for item in PROJECT_FILES:
        src, target = src_root / item, dst / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore)
        else:
            shutil.copy(src, target)
    params = yaml.safe_load((src_root / "params.yaml").read_text())
    for section, values in (overrides or {}).items():
        params[section].update(values)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=dst, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=dst, check=True)
    return dst
