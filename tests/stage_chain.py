"""Run stage scripts one after another in this one process, each as `python SCRIPT ARGS...` would
run it (its own sys.argv, run as __main__), so that their imports are paid once:

    python tests/stage_chain.py stages/a.py --x 1 -- stages/b.py --y 2

On this 2-core machine a stage process spends 5-15 s importing torch, transformers and mlflow
before it does anything; the tests that need several stages only to make a later one's inputs, or
that start each stage under torchrun, use this. A stage that exits non-zero stops the chain with
its exit code.

Under torchrun every rank runs the chain, and a stage's rank 0 writes its outputs after the other
ranks are done with it (the reward model's validation, a model's save): the ranks wait for each
other between stages (`wait_for_ranks`), as separate torchrun launches per stage would."""

import os
import runpy
import sys
import time
from pathlib import Path


def commands(argv: list[str]) -> list[list[str]]:
    """argv split at each `--`; empty pieces are dropped."""
    out: list[list[str]] = [[]]
    for a in argv:
        if a == "--":
            out.append([])
        else:
            out[-1].append(a)
    return [c for c in out if c]


def run_one(cmd: list[str]) -> int:
    """Run `python cmd[0] cmd[1:]` in this process; its exit code (a `sys.exit("message")` prints
    the message to stderr and gives 1, as the interpreter does). The script's folder goes first on
    sys.path, as the interpreter puts it (a stage imports `_checkout` from there)."""
    sys.argv = list(cmd)
    folder = os.path.dirname(os.path.abspath(cmd[0]))
    if sys.path[:1] != [folder]:
        sys.path.insert(0, folder)
    try:
        runpy.run_path(cmd[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


def wait_for_ranks(done: int, timeout: float = 600.0) -> None:
    """Under torchrun: mark this rank done with `done` stages and wait until every rank is (marker
    files under .stage_chain/<master port>/ in the working directory; no process group needed)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return
    folder = Path(".stage_chain") / os.environ.get("MASTER_PORT", "0")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{done}.{os.environ.get('RANK', '0')}").touch()
    deadline = time.monotonic() + timeout
    while not all((folder / f"{done}.{rank}").exists() for rank in range(world)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"stage_chain: not every one of {world} ranks finished stage {done} in {timeout} s")
        time.sleep(0.2)


def main(argv: list[str]) -> int:
    for i, cmd in enumerate(commands(argv), 1):
        code = run_one(cmd)
        if code:
            print(f"stage_chain: {cmd[0]} exited with {code}", file=sys.stderr)
            return code
        wait_for_ranks(i)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
