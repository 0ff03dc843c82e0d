"""Warm stage start-up: one process imports torch, transformers, pandas, MLflow and the rest once,
then forks a child for each stage command, which runs the stage script as `python stages/x.py`
would have, with the command's arguments, working directory, environment and standard streams.

A stage process spends 4-13 s importing on a 2-core machine before its first line of work; the
flow (`flows.pipeline`, `flow.prefork`) starts `serve` beside its stages on CPU-only Linux machines
and names its socket in RLHF_PREFORK. Each stage script calls `delegate(__file__)` (through
`rlhf.startup.begin`) before its own imports: with RLHF_PREFORK set it hands its command to the
server and exits with the stage's exit status (a signal to it is passed on to the stage);
without it, or when the server cannot take the command (gone, an environment that differs in
more than the per-stage variables below, or a script from another checkout, which must import its
own `src/rlhf`), the script goes on and runs cold, as it always does under `dvc repro`.

    python -m rlhf.prefork SOCKET    # serve until SIGTERM (the flow's `server` does this, with the
                                     # package it imported first on sys.path)

Only stdlib at module level: a stage imports this before anything heavy.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time
from contextlib import contextmanager
from typing import Iterator

ENV = "RLHF_PREFORK"
# What may differ between the server's environment and a stage's: read after start-up, not at import.
PER_STAGE = (ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "RLHF_PARENT_RUN_ID",  # tracking.PARENT_ENV
             "PWD", "OLDPWD", "SHLVL", "_")
PER_STAGE_PREFIXES = ("DVC_",)  # what `dvc repro` sets for a stage's command
# What the server imports before it forks (any that are not installed are skipped).
PRELOAD = ("numpy", "pandas", "pyarrow.parquet", "torch", "transformers", "accelerate",
           "transformers.models.gpt2.modeling_gpt2", "mlflow", "mlflow.store.tracking.sqlalchemy_store",
           "matplotlib.pyplot", "great_expectations", "rlhf.cli", "rlhf.train", "rlhf.models",
           "rlhf.evaluation", "rlhf.ingest")
_HEADER = struct.Struct("!Q")
READY_TIMEOUT_S = 600.0  # how long a stage waits for the server to take its command


def supported() -> bool:
    """Linux only (fork after these imports is what DataLoader workers do there)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def env_difference(server_env: dict[str, str], env: dict[str, str]) -> list[str]:
    """The variables, other than the per-stage ones, whose values differ between the two."""
    return sorted(k for k in set(server_env) | set(env)
                  if server_env.get(k) != env.get(k) and k not in PER_STAGE and not k.startswith(PER_STAGE_PREFIXES))


PACKAGE = os.path.dirname(os.path.abspath(__file__))  # the src/rlhf this process imported


def other_checkout(script: str) -> str | None:
    """Why `script` may not run in this server: the `src/rlhf` beside its folder, which a stage
    imports first (stages/_checkout.py), is not the package this server imported (a DVC
    experiment's copy of the repository, another clone). None when it is, or when there is none."""
    theirs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(script))), "src", "rlhf")
    if os.path.isdir(theirs) and os.path.realpath(theirs) != os.path.realpath(PACKAGE):
        return f"the stage's checkout has its own package, {theirs}; this server imported {PACKAGE}"
    return None


def _send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    body = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [_HEADER.pack(len(body))], fds)
    else:
        sock.sendall(_HEADER.pack(len(body)))
    sock.sendall(body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("prefork: the other end closed the connection")
        data += chunk
    return data


def _recv(sock: socket.socket, max_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if max_fds:
        head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
        if len(head) < _HEADER.size:  # recv_fds may return part of the header
            head += _recv_exact(sock, _HEADER.size - len(head))
    else:
        head = _recv_exact(sock, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(sock, size)), fds


# -- the stage's side ---------------------------------------------------------------------------

def delegate(script: str) -> None:
    """Run this stage script in the prefork server and exit with its status; return (and let the
    script run here, cold) when RLHF_PREFORK is unset or the server cannot take it."""
    path = os.environ.get(ENV)
    if not path or not supported():
        return
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        _send(sock, {"argv": [os.path.abspath(script), *sys.argv[1:]], "cwd": os.getcwd(),
                     "env": dict(os.environ)}, [0, 1, 2])
        sock.settimeout(READY_TIMEOUT_S)  # it may still be importing; past this, start cold
        reply, _ = _recv(sock)
        sock.settimeout(None)
    except (OSError, ConnectionError, ValueError) as e:
        print(f"prefork: {path}: {e}; starting cold", file=sys.stderr)
        return
    if "refused" in reply:
        print(f"prefork: {reply['refused']}; starting cold", file=sys.stderr)
        return
    pid = reply["pid"]

    def forward(signum, frame):  # Ctrl-C, or dvc / the flow stopping the stage
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, forward)
    try:
        status, _ = _recv(sock)
    except (OSError, ConnectionError, ValueError):
        print(f"prefork: the server at {path} went away while stage pid {pid} ran", file=sys.stderr)
        os._exit(1)
    if "signal" in status:  # die of the same signal, as the stage did
        if status["signal"] not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(status["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), status["signal"])
        os._exit(128 + status["signal"])  # a signal that does not kill: the shell's code for it
    os._exit(status["exit"])


# -- the server's side --------------------------------------------------------------------------

def _preload(modules: tuple[str, ...]) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _closed(conn: socket.socket) -> bool:
    """Whether the stage at the other end has hung up."""
    if not select.select([conn], [], [], 0)[0]:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _run_child(request: dict, fds: list[int], default_threads: int, imported_env: dict[str, str]) -> None:
    """In the forked child: become the stage process and run its script; never returns."""
    import atexit
    import runpy
    import traceback

    code = 1
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({**imported_env, **request["env"]})  # what the imports set, as in a cold start
        os.environ.pop(ENV, None)  # the stage's own children start cold
        script, *args = request["argv"]
        sys.argv = [script, *args]
        sys.path[0] = os.path.dirname(script)
        if "torch" in sys.modules:  # OpenMP read OMP_NUM_THREADS when the server started
            from rlhf import cli

            sys.modules["torch"].set_num_threads(cli.omp_threads() or default_threads)
        if "numpy" in sys.modules:  # a fresh process's global numpy state, not the server's
            sys.modules["numpy"].random.seed()
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:  # as the interpreter would: die of SIGINT
            atexit._run_exitfuncs()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # as the interpreter would: the traceback, exit 1
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 (a closed pipe: nothing more to say)
                pass
        os._exit(code)


def serve(path: str, preload: tuple[str, ...] = PRELOAD) -> None:
    """Bind `path`, import `preload`, then fork a child per stage command until SIGTERM, when the
    stages still running get SIGTERM too. Connections made while it imports wait for it."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    listener.bind(path)
    listener.listen(64)
    env = dict(os.environ)
    from rlhf import startup

    startup.tune_malloc()  # as each stage sets it, before the imports fill the heap its children share
    _preload(preload)
    imported_env = {k: v for k, v in os.environ.items() if k not in env}  # set by the imports themselves
    torch = sys.modules.get("torch")
    default_threads = torch.get_num_threads() if torch else 1
    if torch is not None and torch.cuda.is_initialized():  # a forked child cannot use CUDA then
        raise SystemExit("prefork: CUDA was initialised while importing; not serving")
    children: dict[int, socket.socket] = {}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda s, f: None)
    stopping = []
    signal.signal(signal.SIGTERM, lambda s, f: stopping.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stopping.append(s))
    try:
        while not stopping:
            try:
                ready, _, _ = select.select([listener, wake_r], [], [])
            except InterruptedError:
                ready = []
            if wake_r in ready:
                os.read(wake_r, 512)
            while children:  # reap and report every stage that ended
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = children.pop(pid)
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
                try:
                    _send(conn, {"signal": sig} if sig else {"exit": os.WEXITSTATUS(status)})
                except OSError:
                    pass
                conn.close()
            if listener in ready and not stopping:
                conn, _ = listener.accept()
                conn.settimeout(60)
                try:
                    request, fds = _recv(conn, max_fds=3)
                except (OSError, ConnectionError, ValueError):
                    conn.close()
                    continue
                conn.settimeout(None)
                differ = env_difference(env, request.get("env", {}))
                elsewhere = other_checkout((request.get("argv") or [""])[0])
                if differ or elsewhere or len(fds) != 3:
                    for fd in fds:
                        os.close(fd)
                    reason = (f"the environment differs from the server's in {', '.join(differ)}" if differ
                              else elsewhere or "the standard streams did not arrive")
                    _send(conn, {"refused": reason})
                    conn.close()
                    continue
                if _closed(conn):  # the stage gave up waiting and runs cold: not a second time here
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                    continue
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    for s in (signal.SIGCHLD, signal.SIGTERM):
                        signal.signal(s, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    for c in (listener, conn, *children.values()):
                        c.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    _run_child(request, fds, default_threads, imported_env)
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                try:
                    _send(conn, {"pid": pid})
                except OSError:
                    pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def main(path: str) -> None:
    """`serve`, then exit at once: the interpreter's own teardown, with torch, transformers, MLflow
    and great_expectations imported, took 3.4 s (EPYC), which the flow waited for at its end. By
    then the stages have ended, the socket is gone, and nothing is left to flush but stdio."""
    serve(path)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


@contextmanager
def server(env: dict[str, str]) -> Iterator[str | None]:
    """Start `serve` in a process of its own with `env` (the environment the stages will get, less
    the per-stage variables) and yield its socket path, or None where it is not supported; stop it
    (and any stage it still runs) at exit. Start it early: stages that connect while it imports
    wait for it."""
    if not supported():
        yield None
        return
    import shutil
    import subprocess
    import tempfile

    folder = tempfile.mkdtemp(prefix="rlhf-prefork-")  # short: a socket path is limited to ~100 bytes
    path = os.path.join(folder, "socket")
    # the package this process imported, not whichever one is installed: the stages it forks import
    # their checkout's src/rlhf (stages/_checkout.py), and so does the flow that starts it
    src = os.path.dirname(PACKAGE)
    code = f"import sys; sys.path.insert(0, {src!r}); from rlhf import prefork; prefork.main(sys.argv[1])"
    proc = subprocess.Popen([sys.executable, "-c", code, path], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):  # it binds before it imports: a stage started now finds it
            if os.path.exists(path) or proc.poll() is not None:
                break
            time.sleep(0.05)
        yield path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m rlhf.prefork SOCKET")
    main(sys.argv[1])
