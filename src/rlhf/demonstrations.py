"""Demonstrations for SFT: written by the simulated labeler, or imported from files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rlhf import world

COLUMNS = ["prompt_id", "prompt", "response"]


def from_labeler(prompts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The gold answer as the demonstration; prompts the world cannot answer are set aside
    (returned second, with a reason) rather than dropped."""
    answers = [world.gold_answer(p) for p in prompts.prompt]
    has = pd.Series([a is not None for a in answers], index=prompts.index)
    demos = prompts[has].assign(response=[a for a in answers if a is not None])[COLUMNS]
    skipped = prompts[~has][["prompt_id"]].assign(reason="labeler: no task family recognised")
    return demos.reset_index(drop=True), skipped.reset_index(drop=True)


def from_jsonl(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """prompt/response JSONL records; bad ones quarantined with file, line and reason."""
    rows, bad = [], []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                bad.append({"prompt_id": None, "reason": f"{path}: line {n}: invalid JSON: {e}"})
                continue
            problem = next((f"field '{k}': missing or not a non-empty string" for k in ("prompt", "response")
                            if not isinstance(rec, dict) or not isinstance(rec.get(k), str) or not rec[k].strip()), None)
            if problem:
                bad.append({"prompt_id": None, "reason": f"{path}: line {n}: {problem}"})
                continue
            rows.append({"prompt_id": str(rec.get("prompt_id", f"{path.stem}-{n}")),
                         "prompt": rec["prompt"], "response": rec["response"]})
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(bad, columns=["prompt_id", "reason"])
