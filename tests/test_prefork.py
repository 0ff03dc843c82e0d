"""rlhf.prefork: a stage script handed to the warm server runs there as it would have run cold
(arguments, working directory, environment, standard streams, exit status, signals), and falls
back to running cold when the server is absent or its environment differs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlhf import prefork

ROOT = Path(__file__).resolve().parents[1]

# a stage script: hands itself over first, then reports where and how it ran
STAGE = textwrap.dedent("""\
    import os, sys
    from rlhf import prefork

    if __name__ == "__main__":
        prefork.delegate(__file__)

    import json, pathlib, time
    mode = sys.argv[1]
    report = {"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv, "cwd": os.getcwd(),
              "given": os.environ.get("GIVEN"), "server_env": os.environ.get(prefork.ENV),
              "stdin": sys.stdin.read() if mode == "stdin" else None, "path0": sys.path[0]}
    if "torch" in sys.modules:
        report["threads"] = sys.modules["torch"].get_num_threads()
    pathlib.Path("report.json").write_text(json.dumps(report))
    print("to stdout", mode)
    print("to stderr", mode, file=sys.stderr)
    if mode == "exit3":
        sys.exit(3)
    if mode == "message":
        sys.exit("a message for stderr")
    if mode == "raise":
        raise ValueError("broken stage")
    if mode == "kill9":
        os.kill(os.getpid(), 9)
    if mode == "sleep":
        time.sleep(120)
    """)


@pytest.fixture
def server(tmp_path):
    """A prefork server in a process of its own (started as the flow starts it), importing only
    what each test names; yields (socket path, server pid)."""
    procs = []

    def start(preload=("json",), drop=()):
        env = {k: v for k, v in {**os.environ, "GIVEN": "yes"}.items() if k not in drop and k != prefork.ENV}
        path = str(tmp_path / f"s{len(procs)}.sock")
        code = f"import sys; from rlhf import prefork; prefork.serve(sys.argv[1], preload={tuple(preload)!r})"
        proc = subprocess.Popen([sys.executable, "-c", code, path], env=env)
        procs.append(proc)
        deadline = time.time() + 60
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.02)
        return path, proc.pid

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=60)


def run_stage(tmp_path, mode, socket_path=None, env=(), drop=(), **kw):
    """`python <tmp_path>/stages/stage.py MODE "x y"` in <tmp_path>/work, with RLHF_PREFORK set to
    `socket_path` when given; returns the finished process and the stage's report."""
    script = tmp_path / "stages" / "stage.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(STAGE)
    env = {k: v for k, v in {**os.environ, "GIVEN": "yes", **dict(env)}.items() if k not in drop and k != prefork.ENV}
    if socket_path:
        env[prefork.ENV] = socket_path
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "report.json").unlink(missing_ok=True)
    out = subprocess.run([sys.executable, str(script), mode, "x y"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=120, **kw)
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").exists() else None
    return out, report


def test_a_delegated_stage_runs_in_a_child_of_the_server_as_it_would_cold(tmp_path, server):
    path, server_pid = server()
    out, report = run_stage(tmp_path, "stdin", path, input="from stdin\n")
    assert out.returncode == 0, out.stderr
    assert report["ppid"] == server_pid  # forked by the server, not started by us
    assert report["argv"] == [str(tmp_path / "stages" / "stage.py"), "stdin", "x y"]
    assert report["cwd"] == str(tmp_path / "work")
    assert report["path0"] == str(tmp_path / "stages")  # as `python stages/stage.py` has it
    assert report["given"] == "yes"  # the command's environment
    assert report["server_env"] is None  # and not the socket: its own children start cold
    assert report["stdin"] == "from stdin\n"
    assert out.stdout == "to stdout stdin\n" and out.stderr == "to stderr stdin\n"
    cold, cold_report = run_stage(tmp_path, "stdin", None, input="from stdin\n")
    assert cold_report["ppid"] != server_pid
    assert {k: v for k, v in cold_report.items() if k not in ("pid", "ppid")} == \
        {k: v for k, v in report.items() if k not in ("pid", "ppid")}
    assert (cold.stdout, cold.stderr) == (out.stdout, out.stderr)


@pytest.mark.parametrize("mode, code, stderr_has", [
    ("exit3", 3, "to stderr"), ("message", 1, "a message for stderr"),
    ("raise", 1, "ValueError: broken stage"), ("kill9", -9, "to stderr")])
def test_the_stages_exit_status_is_the_commands(tmp_path, server, mode, code, stderr_has):
    path, server_pid = server()
    out, report = run_stage(tmp_path, mode, path)
    assert report["ppid"] == server_pid
    assert out.returncode == code
    assert stderr_has in out.stderr
    if mode == "raise":  # the traceback, as the interpreter prints it
        assert "Traceback (most recent call last)" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])  # a stopped flow; Ctrl-C
def test_a_signal_to_the_command_stops_the_stage(tmp_path, server, sig):
    path, server_pid = server()
    script = tmp_path / "stages" / "stage.py"
    script.parent.mkdir()
    script.write_text(STAGE)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "GIVEN": "yes", prefork.ENV: path}
    proc = subprocess.Popen([sys.executable, str(script), "sleep"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (work / "report.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    report = json.loads((work / "report.json").read_text())
    assert report["ppid"] == server_pid  # it runs in the server's child
    stage_pid = report["pid"]
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == -sig  # the command dies of the stage's death
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):  # and the stage is gone, reaped by the server
        os.kill(stage_pid, 0)


def test_without_a_server_or_with_another_environment_the_stage_runs_cold(tmp_path, server):
    out, report = run_stage(tmp_path, "exit3", str(tmp_path / "no-such.sock"))
    assert out.returncode == 3 and report["ppid"] == os.getpid()  # ran in the process we started
    assert "starting cold" in out.stderr
    path, server_pid = server()
    out, report = run_stage(tmp_path, "exit3", path, env={"SOMETHING_ELSE": "1"})
    assert out.returncode == 3 and report["ppid"] == os.getpid()
    assert "differs from the server's in SOMETHING_ELSE; starting cold" in out.stderr
    # the per-stage variables may differ: threads, GPUs, the MLflow parent run, what dvc sets
    out, report = run_stage(tmp_path, "exit3", path, env={"OMP_NUM_THREADS": "1", "RLHF_PARENT_RUN_ID": "r",
                                                          "DVC_ROOT": str(tmp_path)})
    assert report["ppid"] == server_pid and out.returncode == 3


def test_env_difference_names_every_other_variable():
    from rlhf import tracking

    assert tracking.PARENT_ENV in prefork.PER_STAGE  # the flow sets it per run, after the server started
    server = {"PATH": "/a", "OMP_NUM_THREADS": "2", "HOME": "/h"}
    assert prefork.env_difference(server, {**server, "OMP_NUM_THREADS": "1", "DVC_STAGE": "x"}) == []
    assert prefork.env_difference(server, {"PATH": "/b", "OMP_NUM_THREADS": "2", "NEW": "1"}) == ["HOME", "NEW", "PATH"]


def test_a_stage_gets_the_torch_threads_its_environment_asks_for(tmp_path, server):
    """OpenMP read OMP_NUM_THREADS when the server imported torch; the child sets what its own
    environment says, and the server's default when it says nothing."""
    threads = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    path, server_pid = server(preload=("torch",), drop=threads)
    _, report = run_stage(tmp_path, "exit3", path, env={"OMP_NUM_THREADS": "1"})
    assert report["ppid"] == server_pid and report["threads"] == 1
    _, report = run_stage(tmp_path, "exit3", path, drop=threads)
    code = "import torch; print(torch.get_num_threads())"
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k not in threads})
    assert report["ppid"] == server_pid and report["threads"] == int(cold.stdout)


def test_the_server_context_starts_and_stops_the_server(tmp_path):
    """As the flow starts it: every module of PRELOAD imported, then a stage forked."""
    env = {k: v for k, v in {**os.environ, "GIVEN": "yes"}.items() if k != prefork.ENV}
    with prefork.server(env) as path:
        assert path and os.path.exists(path)
        folder = Path(path).parent
        out, report = run_stage(tmp_path, "exit3", path)
        assert out.returncode == 3 and "starting cold" not in out.stderr
        server_pid = report["ppid"]
        assert server_pid != os.getpid()
    assert not folder.exists()
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


def test_the_server_exits_without_the_interpreters_teardown(tmp_path):
    """`main` (what `server` runs) leaves at once after SIGTERM, with status 0: tearing down an
    interpreter that imported torch & co. took 3.4 s, which the flow waited for at its end."""
    path, mark = str(tmp_path / "s.sock"), tmp_path / "teardown"
    code = (f"import atexit, sys; from rlhf import prefork; atexit.register(open, {str(mark)!r}, 'w'); "
            "prefork.serve = lambda path, preload=(): open(path, 'w').close() or print('served'); "
            "prefork.main(sys.argv[1])")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "served\n", out.stderr
    assert not mark.exists()  # atexit handlers are the teardown's: they did not run


FAULTS = textwrap.dedent("""\
    import resource, sys
    from rlhf import startup
    print(startup.tune_malloc())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):  # a training step's churn: the same few 8 MiB blocks freed and taken again
        blocks = [bytearray(8 << 20) for _ in range(3)]
        del blocks
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize("env, tuned", [({}, True), ({"RLHF_TUNE_MALLOC": "0"}, False),
                                        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, False),
                                        ({"MALLOC_ARENA_MAX_": "2"}, False)])
def test_the_allocator_keeps_freed_blocks_unless_told_otherwise(env, tuned):
    """Tuned, blocks freed and allocated again cost no page faults; as glibc has it (the user's
    choice), it gives the freed heap top back and faults the pages in again on every round."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("RLHF_TUNE_MALLOC", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", FAULTS], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    said, faults = out.stdout.split()
    assert said == str(tuned)
    if tuned:
        assert int(faults) < 2048 * 3 * 3  # the first round's pages, then none
    else:
        assert int(faults) > 2048 * 3 * 50


def test_a_stage_from_another_checkout_runs_cold(tmp_path, server):
    """A stage imports the `src/rlhf` beside its own folder first (stages/_checkout.py), so a
    server that imported another one (the workspace's, for a DVC experiment's copy) refuses it."""
    assert prefork.other_checkout(str(ROOT / "stages" / "sft.py")) is None  # the package this test imported
    (tmp_path / "src" / "rlhf").mkdir(parents=True)
    reason = prefork.other_checkout(str(tmp_path / "stages" / "stage.py"))
    assert str(tmp_path / "src" / "rlhf") in reason
    path, server_pid = server()
    out, report = run_stage(tmp_path, "exit3", path)
    assert out.returncode == 3 and report["ppid"] == os.getpid()  # ran in the process we started
    assert f"{reason}; starting cold" in out.stderr


def test_the_server_imports_the_package_of_the_process_that_starts_it(tmp_path):
    """The flow of another clone runs that clone's src/rlhf (flows/pipeline.py runs
    stages/_checkout.py), so the server it starts must too, or it would refuse that clone's stages."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    script = tmp_path / "stages" / "stage.py"
    script.parent.mkdir()
    script.write_text(STAGE)
    (tmp_path / "work").mkdir()
    code = textwrap.dedent(f"""\
        import os, subprocess, sys
        sys.path.insert(0, {str(tmp_path / "src")!r})
        from rlhf import prefork
        env = {{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", prefork.ENV)}}
        with prefork.server(env) as path:
            out = subprocess.run([sys.executable, {str(script)!r}, "exit3"], cwd={str(tmp_path / "work")!r},
                                 env={{**env, prefork.ENV: path}}, capture_output=True, text=True, timeout=300)
        print(out.returncode, prefork.__file__, os.getpid())
        print(out.stderr)
        """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", prefork.ENV)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"3 {tmp_path / 'src' / 'rlhf' / 'prefork.py'}"), out.stdout
    assert "starting cold" not in out.stdout
    report = json.loads((tmp_path / "work" / "report.json").read_text())
    assert report["ppid"] != int(out.stdout.split()[2])  # forked by the server, not started cold by the flow
