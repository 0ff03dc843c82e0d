"""Run stage scripts one after another in this one process, each as `python SCRIPT ARGS...` would
run it (its own sys.argv, run as __main__), so that their imports are paid once:

    python tests/stage_chain.py stages/a.py --x 1 -- stages/b.py --y 2

On this 2-core machine a stage process spends 5-15 s importing torch, transformers and mlflow
before it does anything; the tests that need several stages only to make a later one's inputs, or
that start each stage under torchrun, use this. A stage that exits non-zero stops the chain with
its exit code."""

import runpy
import sys


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
    the message to stderr and gives 1, as the interpreter does)."""
    sys.argv = list(cmd)
    try:
        runpy.run_path(cmd[0], run_name="__main__")
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    for cmd in commands(argv):
        code = run_one(cmd)
        if code:
            print(f"stage_chain: {cmd[0]} exited with {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
