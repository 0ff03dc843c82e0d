"""The Prefect flow: runs the DVC stage graph in DAG order, the variants of one `foreach` stage
(ppo@ptx, ppo@plain) side by side (`flow.max_parallel`), every other stage alone.

Orchestration only: each task is `dvc repro --single-item <stage>`, so DVC decides what is up to
date; the flow adds retries, logs, the MLflow parent run and the schedule.

    python -m flows.pipeline run     # one pipeline run, then a summary
    python -m flows.pipeline serve   # serve on params.yaml's schedule.cron (needs a Prefect server)
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# A first run starts Prefect's temporary server on a fresh database; on a slow machine that took
# longer than Prefect's 20 s default and the run failed before any stage. Set before prefect loads.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# this checkout's src/rlhf ahead of the installed package, as every stage has it (stages/_checkout.py):
# the flow's own code and the warm process it starts for the stages (rlhf.prefork.server) are then
# this checkout's too, in another clone or worktree that shares a virtual environment
runpy.run_path(str(Path(__file__).resolve().parents[1] / "stages" / "_checkout.py"))

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.futures import wait  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

from rlhf import cli, config, prefork, tracking  # noqa: E402

FLOW_NAME = "instructgpt-pipeline"
HEADLINE_FILE = "evaluate"  # the stage whose metrics are the pipeline's headline figures
# the reward model's figures the summary shows and the parent run records beside the headline
REWARD_STAGE = "reward_model"
REWARD_KEYS = ("rm/val_accuracy", "rm/val_labeler_gold_agreement", "rm/val_accuracy_gold", "rm/val_labeler_shortfall",
               "rm/val_labeler_shortfall_lo", "rm/val_labeler_shortfall_hi")
PROMOTION_FILE = "reports/eval/promotion.json"  # the promotion gate's decision, written by evaluate
HEADLINE_COLUMNS = {"gold_score": "gold", "win_rate_vs_sft": "win vs SFT", "win_rate_vs_prompted_base": "win vs base",
                    "rm_score": "RM score", "win_rate_vs_sft_rm": "RM win v SFT", "hallucination_rate": "hallucinate",
                    "toxicity": "toxicity", "heldout_lm_loss": "LM loss", "kl_to_sft": "KL to SFT"}
# metric under eval/<policy>/ -> column title; the gold ones are absent on a user's own prompts


def stage_graph(root: Path) -> list[tuple[str, list[str], set[str]]]:
    """(stage, its metrics files, the stages it depends on) in the DAG order read from dvc.yaml,
    ties in file order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # DVC's edges point from a stage to the stages it depends on
        stages = list(repo.index.stages)
        position = {s.name: i for i, s in enumerate(stages)}
        order = nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: position[s.name])
        return [(s.name, [str(o.def_path) for o in s.outs if o.metric], {u.name for u in graph.successors(s)})
                for s in order]


def batches(graph: list[tuple[str, list[str], set[str]]], max_parallel: int) -> list[list[str]]:
    """The stages in the order the flow runs them, each inner list at once: a stage of a DVC
    `foreach` (`name@item`) takes along the other items of its foreach whose inputs have all been
    made by then (so none of them needs another), up to `max_parallel` stages; every other stage,
    or any stage with `max_parallel` 1, runs alone. The DAG order of `graph` is kept otherwise."""
    needs = {name: up for name, _, up in graph}
    done: set[str] = set()
    out: list[list[str]] = []
    for name, _, _ in graph:
        if name in done:
            continue
        group = [name]
        if "@" in name:
            family = name.split("@")[0] + "@"
            group += [other for other, _, _ in graph if other.startswith(family) and other not in done
                      and other != name and needs[other] <= done][:max_parallel - 1]
        out.append(group)
        done.update(group)
    return out


def cpu_threads() -> int:
    """The torch threads a stage process gets when it runs alone: OMP_NUM_THREADS when set, else
    the CPUs this process may run on."""
    return cli.omp_threads() or cli.cores()


def gpus() -> list[str]:
    """The GPUs stage processes may use: those CUDA_VISIBLE_DEVICES names when it is set (empty:
    none), else those nvidia-smi lists (none without it)."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def side_by_side_envs(env: dict[str, str], n: int) -> list[dict[str, str]]:
    """The environments of n stages run side by side: each an equal share of the torch threads
    (`cpu_threads`, at least one) and, where there are at least n GPUs, a share of its own of them
    (`CUDA_VISIBLE_DEVICES`, contiguous, the first ones one larger when they do not divide evenly);
    with fewer GPUs every stage sees them all."""
    threads, devices = str(max(1, cpu_threads() // n)), gpus()
    sizes = [len(devices) // n + (i < len(devices) % n) for i in range(n)]
    envs = []
    for i in range(n):
        e = {**env, "OMP_NUM_THREADS": threads}
        if len(devices) >= n:
            e["CUDA_VISIBLE_DEVICES"] = ",".join(devices[sum(sizes[:i]):sum(sizes[:i + 1])])
        envs.append(e)
    return envs


def stage_env(parent_run_id: str | None = None) -> dict[str, str]:
    """The environment of a stage process: this interpreter's bin first on PATH (dvc.yaml's
    `python` is ours) and the parent run's id, when given, for the stage's MLflow child run."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k != tracking.PARENT_ENV}
    return {**env, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            **({tracking.PARENT_ENV: parent_run_id} if parent_run_id else {})}


_STARTED_EARLY: dict[str, str] = {}  # `early_start`'s warm process, for the flow it wraps


@contextmanager
def warm_start(enabled: bool) -> Iterator[dict[str, str]]:
    """The stages' environment's addition for `flow.prefork`: a running `rlhf.prefork` server's
    socket, on CPU-only Linux machines (a forked child cannot start CUDA that its parent had), else
    nothing. Started before anything else, so it imports while the flow sets up; inside
    `early_start`, the one it started."""
    if _STARTED_EARLY:
        yield dict(_STARTED_EARLY)
        return
    if not enabled or gpus():
        yield {}
        return
    with prefork.server(stage_env()) as path:
        yield {prefork.ENV: path} if path else {}


@contextmanager
def early_start(cfg: dict, root: Path) -> Iterator[None]:
    """What the flow waits for at its start, begun before it, while Prefect starts its temporary
    server (8 s; 18 s on a fresh clone's database): the warm process's imports (`warm_start`) and,
    where the flow will start that server (no `PREFECT_API_URL`), MLflow's store
    (`tracking.open_early`). `python -m flows.pipeline run` wraps the flow in it; a served flow
    starts the warm process itself."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        # the server's modules first, here: the flow imports them as it starts the server (sqlalchemy,
        # pydantic, opentelemetry among them, 3.2 s), and MLflow's thread imports the same packages;
        # two threads importing one package at once can meet a partly initialised module
        import prefect.server.api.server  # noqa: F401

        tracking.open_early(cfg["common"].experiment, root)
    with warm_start(cfg["flow"].prefork) as warm:
        _STARTED_EARLY.update(warm)
        try:
            yield
        finally:
            _STARTED_EARLY.clear()


@task
def run_stage(stage: str, root: str, env: dict[str, str]) -> dict:
    """`dvc repro --single-item <stage>`, its output streamed into the Prefect log. Returns
    {"status": 'ran' or 'up to date', "seconds": its wall time}; raises when the stage fails.
    DVC waits for its repo lock (`--wait-for-lock`): it holds it while it checks and records a
    stage, not while the stage's command runs, so stages side by side take turns only there."""
    logger = get_run_logger()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    ran = False
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            logger.info(line)
            tail = (tail + [line])[-20:]
        ran = ran or line.startswith(f"Running stage '{stage}'")
    if proc.wait() != 0:
        raise RuntimeError(f"stage '{stage}' failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return {"status": "ran" if ran else "up to date", "seconds": round(time.perf_counter() - start, 1)}


@flow(name=FLOW_NAME)
def pipeline(root: str = ".", params_file: str = "params.yaml") -> dict:
    """Run every DVC stage in DAG order under one MLflow parent run; return what ran."""
    logger = get_run_logger()
    root_path = Path(root).resolve()
    params_path = root_path / params_file
    cfg = config.load_all(params_path)  # a bad params file fails here, before any stage
    experiment = cfg["common"].experiment
    graph = stage_graph(root_path)
    stage_task = run_stage.with_options(retries=cfg["flow"].retries,
                                        retry_delay_seconds=cfg["flow"].retry_delay_s)
    metric_files = {stage: files for stage, files, _ in graph}
    stages: dict[str, dict] = {}
    with warm_start(cfg["flow"].prefork) as warm, \
            tracking.pipeline_run(experiment, config.read_params(params_path), root_path,
                                  run_name=flow_run.get_name()) as parent:
        env = {**stage_env(parent.run_id), **warm}
        if warm:
            logger.info(f"stages start warm: forked from a process that has imported torch & co. ({warm[prefork.ENV]})")
        for group in batches(graph, cfg["flow"].max_parallel):
            envs = [env] if len(group) == 1 else side_by_side_envs(env, len(group))
            if len(group) > 1:  # the threads shared: torch's threads spin, so more threads than cores stall
                logger.info(f"{', '.join(group)}: side by side, " + "; ".join(
                    f"{s}: {e['OMP_NUM_THREADS']} torch thread(s)"
                    + (f", GPU(s) {e['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in e else "")
                    for s, e in zip(group, envs)))
            futures = [stage_task.with_options(name=f"stage-{s}").submit(s, str(root_path), e)
                       for s, e in zip(group, envs)]
            wait(futures)  # every one finishes (and DVC records it) before a failure stops the flow
            results = []
            for f in futures:
                try:
                    results.append(f.result())
                except Exception as e:  # noqa: BLE001 (raised below, once the others are recorded)
                    results.append(e)
            for stage, result in zip(group, results):
                if isinstance(result, Exception):
                    continue
                stages[stage] = result
                if result["status"] == "up to date":
                    tracking.record_cached_stage(parent.run_id, stage, experiment,
                                                 [root_path / m for m in metric_files[stage]], root_path)
                else:
                    tracking.retag_latest_child(parent.run_id, stage, root_path)
                logger.info(f"{stage}: {result['status']} in {result['seconds']} s")
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise failed[0]
        headline, reward_figures = {}, {}
        for stage, files in metric_files.items():
            if stage in (HEADLINE_FILE, REWARD_STAGE):
                for m in files:
                    figures = json.loads((root_path / m).read_text())
                    if stage == HEADLINE_FILE:
                        headline.update(figures)
                    else:
                        reward_figures.update({k: figures[k] for k in REWARD_KEYS if k in figures})
        parent.log_metrics({**headline, **reward_figures})
        promotion = promotion_line(root_path, stages.get(HEADLINE_FILE, {}).get("status") == "ran")
        if promotion:
            parent.set_tags({"promotion": promotion})
    return {"parent_run_id": parent.run_id, "experiment": experiment, "stages": stages,
            "headline": headline, "reward_model": reward_figures, "promotion": promotion}


def promotion_line(root: Path, evaluated: bool) -> str | None:
    """The promotion gate's decision as evaluate wrote it; a cached evaluate made none this time."""
    path = root / PROMOTION_FILE
    if not path.exists():
        return None
    line = json.loads(path.read_text())["summary"]
    return line if evaluated else f"evaluate up to date, no new candidate; last decision: {line}"


def summary(result: dict) -> str:
    lines = ["", "Pipeline run finished.", "", f"{'stage':<16}{'status':<12}seconds"]
    lines += [f"{s:<16}{r['status']:<12}{r['seconds']}" for s, r in result["stages"].items()]
    ran = [s for s, r in result["stages"].items() if r["status"] == "ran"]
    lines += ["", f"{len(ran)} stage(s) ran, {len(result['stages']) - len(ran)} up to date.", "",
              "Headline metrics (metrics/eval.json; reports/eval/report.md has the full table):"]
    from rlhf.evaluation import TITLES

    h = result["headline"]
    policies = [p for p in TITLES if f"eval/{p}/rm_score" in h]  # every evaluated policy has one
    lines.append(f"  {'policy':<16}" + "".join(f"{t:>13}" for t in HEADLINE_COLUMNS.values()))
    lines += [f"  {TITLES[p]:<16}" + "".join(f"{h[f'eval/{p}/{c}']:>13.4f}" if f"eval/{p}/{c}" in h else f"{'-':>13}"
                                   for c in HEADLINE_COLUMNS) for p in policies]
    rm = result.get("reward_model") or {}
    if "rm/val_accuracy" in rm:
        line = f"Reward model (metrics/reward_model.json): {rm['rm/val_accuracy']:.4f} of the val pairs ranked as the labeler did"
        if "rm/val_labeler_gold_agreement" in rm:  # the simulated labeler's val rankings: gold is known
            line += f" (the labeler agrees with gold on {rm['rm/val_labeler_gold_agreement']:.4f}"
            if "rm/val_labeler_shortfall_lo" in rm:  # issue 5 allows the RM 0.05 less
                line += (f", {rm['rm/val_labeler_shortfall']:.4f} more than the RM: 95% interval over the val prompts "
                         f"{rm['rm/val_labeler_shortfall_lo']:.4f} to {rm['rm/val_labeler_shortfall_hi']:.4f}")
            line += ")"
        if "rm/val_accuracy_gold" in rm:
            line += f", {rm['rm/val_accuracy_gold']:.4f} as gold does"
        lines += ["", line]
    if result.get("promotion"):
        lines += ["", result["promotion"]]
    lines += ["", f"MLflow parent run: {result['parent_run_id']} (experiment '{result['experiment']}')",
              "  MLflow UI:  make mlflow-ui    then open http://127.0.0.1:5000",
              "  Prefect UI: make server       then open http://127.0.0.1:4200",
              "  DVC:        dvc metrics show  |  dvc plots show  |  dvc exp run -S ppo.kl_coef=0.1", ""]
    return "\n".join(lines)


def serve(root: Path, params_file: str) -> None:
    """Serve the flow on the cron schedule in params.yaml (the Prefect server must be running)."""
    from prefect.schedules import Cron

    cfg = config.load_all(root / params_file)
    s = cfg["schedule"]
    pipeline.serve(name=s.deployment, schedules=[Cron(s.cron, timezone=s.timezone)],
                   parameters={"root": str(root), "params_file": params_file},
                   description="Retrain on the prompts that arrived (data/incoming/); DVC reruns only what changed.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["run", "serve"])
    p.add_argument("--root", type=Path, default=Path("."), help="the repo with dvc.yaml (default: .)")
    p.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    args = p.parse_args(argv)
    root = args.root.resolve()
    try:
        cfg = config.load_all(root / args.params)
    except config.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        serve(root, args.params)
        return 0
    try:
        with early_start(cfg, root):
            result = pipeline(root=str(root), params_file=args.params)
    except Exception as e:  # the stage's own output is in the log above
        print(f"\nPipeline run FAILED: {e}", file=sys.stderr)
        return 1
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
