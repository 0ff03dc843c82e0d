"""tests/stage_chain.py runs scripts in turn in one process, each with its own argv as __main__,
and stops at the first that exits non-zero, with its code."""

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
