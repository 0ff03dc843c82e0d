"""No planted personal data survives ingest: every file ingest writes and everything it logs to
MLflow is scanned for every planted PII value, and none is found."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from rlhf import workspace

ROOT = Path(__file__).resolve().parents[1]
SMALL_WORLD = {"world": {"n_users": 60, "prompts_per_user": 6.0, "n_shards": 3, "corpus_docs": 50, "pii_rate": 0.6}}


def planted_values(raw_dir: Path, truth_path: Path) -> dict[str, set[str]]:
    prompts = {}
    for shard in sorted(raw_dir.glob("*.jsonl")):
        for line in shard.read_text().splitlines():
            try:
                r = json.loads(line)
                prompts[r["prompt_id"]] = " ".join(r["prompt"].split())
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                pass
    values: dict[str, set[str]] = {}
    for line in truth_path.read_text().splitlines():
        t = json.loads(line)
        values.setdefault(t["type"], set()).add(prompts[t["prompt_id"]][t["start"]:t["end"]])
    return values


def readable(path: Path) -> str:
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv()
    return path.read_bytes().decode("utf-8", "replace")


def test_no_planted_pii_in_any_ingest_output_or_mlflow_record(tmp_path):
    root = workspace.scratch_copy(ROOT, tmp_path / "repo", SMALL_WORLD)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # dvc.yaml's python
    env.pop("RLHF_PARENT_RUN_ID", None)
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name in ("synthesize", "ingest"):
        out = subprocess.run(stages[name]["cmd"], shell=True, cwd=root, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        if name == "ingest":
            logged = out.stdout + out.stderr
    values = planted_values(root / "data/raw/prompts", root / "data/raw/pii_truth.jsonl")
    assert set(values) == {"EMAIL", "PHONE", "CARD", "SSN", "IP", "ADDRESS", "NAME", "SECRET", "IBAN"}
    written = [p for d in ("data/prompts", "data/quarantine", "reports/ingest", "metrics/ingest.json", "mlartifacts")
               for p in ([root / d] if (root / d).is_file() else (root / d).rglob("*")) if p.is_file()]
    assert any(p.suffix == ".html" for p in written) and any(p.name == "train.parquet" for p in written)
    texts = {str(p.relative_to(root)): readable(p) for p in written}
    texts["mlflow.db"] = (root / "mlflow.db").read_bytes().decode("utf-8", "replace")
    texts["stage log"] = logged
    # a first name is a word: look for it as one, not inside other words; every other value as a
    # substring (one pass per text for the names, not one regex search per value and text: 50 s)
    names = re.compile(r"\b(?:%s)\b" % "|".join(map(re.escape, sorted(values["NAME"], key=len, reverse=True))))
    leaks = []
    for where, text in texts.items():
        leaks += [f"NAME {m.group()!r} in {where}" for m in names.finditer(text)]
        leaks += [f"{kind} {v!r} in {where}" for kind, vals in values.items() if kind != "NAME" for v in vals if v in text]
    assert not leaks, "\n".join(leaks[:20])
