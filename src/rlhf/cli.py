"""What every stage CLI shares: `--params`, config loading, the stage's MLflow run."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from rlhf import config, tracking


def parser(doc: str, sections: tuple[str, ...]) -> argparse.ArgumentParser:
    """An argument parser whose --help lists the params keys the stage reads."""
    lines = []
    for s in sections:
        for key, text in config.describe_keys(config.SECTIONS[s]).items():
            lines.append(f"  {s}.{key}: {text}")
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="params.yaml keys read:\n" + "\n".join(lines))
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--metrics", required=True, help="the stage's DVC metrics file (JSON)")
    return p


@contextmanager
def stage(name: str, args: argparse.Namespace, sections: tuple[str, ...]) -> Iterator[tuple[dict, tracking.Run]]:
    """Load the stage's configs (exit 2 with the message on a bad params file) and open its run.

    Yields ({section: config}, run); `common` is always loaded."""
    try:
        cfgs = {s: config.load(s, args.params) for s in ("common", *sections)}
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if not is_main_process():
        yield cfgs, tracking.NullRun()
        return
    logged = {s: config.as_dict(c) for s, c in cfgs.items()}
    with tracking.stage_run(name, cfgs["common"].experiment, logged) as run:
        yield cfgs, run


def cores() -> int:
    """The CPUs this process may run on (all of them where the OS does not say)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def omp_threads() -> int | None:
    """The torch threads OMP_NUM_THREADS asks for, when it is set to a positive number."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else None


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch, or the only process: the one that writes."""
    return int(os.environ.get("RANK", "0")) == 0


def write_curve(path: str, rows: list[dict], columns: dict[str, str]) -> None:
    """A DVC plot CSV: a `step` column, then `columns` (csv name -> key in each row)."""
    import csv
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *columns])
        for step, row in enumerate(rows):
            w.writerow([step, *(row.get(k, "") for k in columns.values())])
