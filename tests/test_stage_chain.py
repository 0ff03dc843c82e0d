"""tests/stage_chain.py runs scripts in turn in one process, each with its own argv as __main__,
and stops at the first that exits non-zero, with its code."""

import os
import subprocess
import sys
from pathlib import Path

CHAIN = Path(__file__).with_name("stage_chain.py")
SCRIPT = """import sys
if __name__ == "__main__":
    open(sys.argv[1], "a").write(" ".join(sys.argv[2:]) + "\\n")
    sys.exit(int(sys.argv[2]))
"""


def test_each_script_gets_its_own_argv_and_a_failure_stops_the_chain(tmp_path):
    script, log = tmp_path / "s.py", tmp_path / "log"
    script.write_text(SCRIPT)
    ok = subprocess.run([sys.executable, str(CHAIN), str(script), str(log), "0", "a", "--", str(script), str(log),
                         "0", "b"], capture_output=True, text=True)
    assert ok.returncode == 0 and log.read_text() == "0 a\n0 b\n"
    log.unlink()
    bad = subprocess.run([sys.executable, str(CHAIN), str(script), str(log), "3", "--", str(script), str(log), "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 3 and log.read_text() == "3\n" and "exited with 3" in bad.stderr


def test_under_several_ranks_no_rank_starts_a_stage_before_every_rank_finished_the_one_before(tmp_path):
    """Rank 0 writes its output 1.5 s into the first stage, rank 1 at once; rank 1's second stage
    must find rank 0's output, as when each stage is its own torchrun launch."""
    write = tmp_path / "write.py"
    write.write_text("import os, sys, time\nif __name__ == '__main__':\n"
                     "    time.sleep(1.5 if os.environ['RANK'] == '0' else 0)\n"
                     "    open(sys.argv[1] + os.environ['RANK'], 'w').write('done')\n")
    read = tmp_path / "read.py"
    read.write_text("import sys\nif __name__ == '__main__':\n    sys.exit(0 if open(sys.argv[1]).read() == 'done' else 5)\n")
    out = str(tmp_path / "out")
    ranks = [subprocess.Popen([sys.executable, str(CHAIN), str(write), out, "--", str(read), out + "0"], cwd=tmp_path,
                              env={**os.environ, "WORLD_SIZE": "2", "RANK": str(r), "MASTER_PORT": "1234"},
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in ranks]
    assert results == [(0, ""), (0, "")]
    assert sorted(p.name for p in (tmp_path / ".stage_chain" / "1234").iterdir()) == ["1.0", "1.1", "2.0", "2.1"]
