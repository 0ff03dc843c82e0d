"""Pipeline wall-clock figures with the default params, in a scratch copy of the project:
a cold run, a second run with nothing changed, and a run after one params.yaml change.

    python benchmarks/pipeline.py [--change ppo.kl_coef=0.1] [--keep DIR]

Prints the per-stage table of each run, then as its last line one JSON object with the figures.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rlhf import workspace  # noqa: E402


def timed_run(root: Path, env: dict) -> tuple[float, dict[str, str], str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "flows.pipeline", "run", "--root", str(root)], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(out.stdout[-3000:] + out.stderr[-3000:])
    table = out.stdout[out.stdout.index("stage "):out.stdout.index("Headline")]
    status = {line.split()[0]: " ".join(line.split()[1:-1]) for line in table.splitlines()[1:]
              if line.strip() and not line.split()[0][0].isdigit()}
    return seconds, status, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--change", default="ppo.kl_coef=0.1", help="section.key=value for the third run")
    p.add_argument("--keep", type=Path, help="build the scratch copy here and keep it (its metrics, models, "
                   "report and mlflow.db) instead of a temporary folder; must not exist")
    args = p.parse_args()
    key, value = args.change.split("=", 1)
    section, field = key.split(".", 1)
    if args.keep and args.keep.exists():
        sys.exit(f"error: --keep {args.keep} exists already")
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep.resolve() if args.keep else Path(tmp)
        root = workspace.scratch_copy(ROOT, base / "repo")
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
               "PREFECT_HOME": str(base / "prefect"), "DVC_NO_ANALYTICS": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        figures = {}
        for name in ("cold", "no_change", "one_change"):
            if name == "one_change":
                params = yaml.safe_load((root / "params.yaml").read_text())
                params[section][field] = yaml.safe_load(value)
                (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            seconds, status, table = timed_run(root, env)
            print(f"== {name} run: {seconds:.1f} s\n{table}")
            figures[f"{name}_s"] = round(seconds, 1)
            figures[f"{name}_ran"] = [s for s, v in status.items() if v == "ran"]
        figures["change"] = args.change
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
