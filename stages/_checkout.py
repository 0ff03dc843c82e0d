"""Imported by every stage script before anything from `rlhf`: this checkout's `src/` goes first on
sys.path, ahead of the installed package.

`make setup` installs `rlhf` editable, pointing at the folder it ran in. DVC runs queued and
temporary experiments (`dvc exp run --queue`, `--temp`) in a copy of the repository under
`.dvc/tmp/exps/`, and records that copy's `src/rlhf` as the stages' dependency; without this, the
copy's stages would import the workspace's `src/rlhf`, which is not the experiment's code when
the experiment changed it, or when the workspace changed after the experiment was queued. The
flow (`flows/pipeline.py`) runs this file too, and starts its warm process with the package it
imported; that process makes the same reckoning (`rlhf.prefork.other_checkout`) and leaves a stage
of another checkout to start cold. Standard library only."""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
if SRC not in sys.path[:1]:
    sys.path.insert(0, SRC)
