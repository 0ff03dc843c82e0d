"""MLflow tracking for stages and pipeline runs (the Model Registry is promotion.py's).

A pipeline run (the Prefect flow) is a parent MLflow run; each stage it runs opens a child run.
The parent's id travels to stage processes in `RLHF_PARENT_RUN_ID` (not `MLFLOW_RUN_ID`, which
would make the stage resume the parent instead of nesting under it). Under plain `dvc repro` the
variable is unset and each stage run stands alone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

PARENT_ENV = "RLHF_PARENT_RUN_ID"
STAGE_TAG = "rlhf.stage"
CACHED_TAG = "rlhf.cached"
PIPELINE_TAG = "rlhf.pipeline"
_BATCH = 100  # MLflow's limit on params per log_batch call
_METRIC_BATCH = 1000  # MLflow's limit on metrics per log_batch call
FLUSH_SECONDS = 2.0  # step metrics wait at most this long in memory before they are written


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) that holds dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "dvc.yaml").exists():
            return p
    return here


def tracking_uri(root: Path | None = None) -> str:
    """`MLFLOW_TRACKING_URI` when set, else a sqlite file at the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


_opening: threading.Thread | None = None  # open_early's thread, while it runs


def open_early(experiment: str, root: str | Path | None = None) -> None:
    """Import MLflow and open the project's store and `experiment` (creating the store's tables and
    the experiment on a first run) in a thread, for a caller with other waiting to do: the flow
    calls it before Prefect starts its temporary server, which took 7 s of MLflow's first tables
    off the flow's start (EPYC). This module's next call waits for the thread; a failure is left
    for that call to meet and report."""
    global _opening
    root = project_root(root)

    def open_store() -> None:
        try:
            _experiment_id(_client(root), experiment, root)
        except Exception:  # noqa: BLE001 (the caller's own first call raises it, with its context)
            pass

    _opening = threading.Thread(target=open_store, name="mlflow-open-early", daemon=True)
    _opening.start()


def _client(root: Path | None = None):
    import logging

    opening = _opening
    if opening is not None and opening is not threading.current_thread():
        opening.join()  # one store per process: MLflow caches it by URI, unlocked

    from mlflow.tracking import MlflowClient

    # alembic announces every schema migration of a new sqlite store at INFO
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri(root))


def _experiment_id(client, name: str, root: Path) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # artifacts beside a local sqlite store (not in the cwd); a server decides for itself
    uri = tracking_uri(root)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created by a concurrent process in between
        return client.get_experiment_by_name(name).experiment_id


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        else:
            out[key] = v
    return out


def git_commit(root: Path) -> str:
    """HEAD's commit, with '-dirty' when tracked files have changed; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def dvc_dep_tags(stage: str, root: Path) -> dict[str, str]:
    """`dvc.dep.<path>` -> md5 for each dep of `stage` recorded in dvc.lock (none if absent)."""
    lock = root / "dvc.lock"
    if not lock.exists():
        return {}
    entry = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage, {})
    return {f"dvc.dep.{d['path']}": str(d.get("md5", "")) for d in entry.get("deps", [])}


class Run:
    """One open MLflow run: step metrics, params, artifacts, and the stage's metrics file.

    Step metrics are written in batches, at most FLUSH_SECONDS after they are logged and whenever
    the run ends (one write per training step costs 10-16 ms on a 2-core machine, 2-4% of the
    default pipeline); the MLflow UI's curves trail the training by that much."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id
        self._pending: list = []
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, str(v)) for k, v in flatten(params).items()]
        for i in range(0, len(flat), _BATCH):
            self.client.log_batch(self.run_id, params=flat[i:i + _BATCH])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[i:i + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Numeric metrics at `step`; names stay as given (namespaced like `sft/loss`)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the step metrics logged since the last write."""
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), _METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=pending[i:i + _METRIC_BATCH])
        self._last_flush = time.monotonic()

    def log_artifacts(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a whole directory (a checkpoint, a report, plots)."""
        p = Path(local_path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        elif p.exists():
            self.client.log_artifact(self.run_id, str(p), artifact_path)
        else:
            raise FileNotFoundError(f"artifact {p} does not exist")

    def log_table(self, rows: list[dict], artifact_file: str) -> None:
        """Rows appended to a table artifact (JSON) that the MLflow UI shows as a table."""
        if rows:
            self.client.log_table(self.run_id, {k: [r[k] for r in rows] for k in rows[0]}, artifact_file)

    def register_model_version(self, name: str, artifact_path: str, tags: Mapping[str, str]) -> str:
        """A new version of registered model `name` (created if missing) whose source is this
        run's artifact folder `artifact_path`; returns the version."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        try:
            self.client.create_registered_model(name)
        except MlflowException as e:  # exists already (perhaps created by a concurrent run)
            if e.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{artifact_path}"
        return str(self.client.create_model_version(name, source, run_id=self.run_id, tags=dict(tags)).version)

    def download_model_version(self, name: str, version: str, dst: str | Path) -> Path:
        """The files of a registered model version, downloaded under `dst`; their folder."""
        import mlflow

        uri = self.client.get_model_version_download_uri(name, version)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst),
                                                        tracking_uri=self.client.tracking_uri))

    def write_metrics(self, path: str | Path, metrics: Mapping[str, Any]) -> None:
        """Write the stage's DVC metrics file and mirror the same figures into this run."""
        bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise ValueError(f"non-finite metric(s) {bad} refused for {path}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(metrics), indent=2, sort_keys=True) + "\n")
        self.log_metrics(metrics)
        self.log_artifacts(path, "metrics")


class NullRun:
    """What ranks other than 0 of a multi-process stage get: rank 0 alone logs and writes."""

    run_id = ""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...
    def flush(self) -> None: ...
    def log_artifacts(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_table(self, rows: list[dict], artifact_file: str) -> None: ...
    def write_metrics(self, path: str | Path, metrics: Mapping[str, Any]) -> None: ...


@contextmanager
def _open_run(client, exp_id: str, tags: dict, name: str | None, params: Mapping[str, Any] | None) -> Iterator[Run]:
    """Create a run, yield it, and end it FINISHED, FAILED (the body raised) or KILLED (Ctrl-C)."""
    info = client.create_run(exp_id, tags=tags, run_name=name).info
    run = Run(client, info.run_id)
    status = "FAILED"
    try:
        if params:
            run.log_params(params)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:  # the buffered step metrics land before the run is closed, whichever way it ends
        run.flush()
        client.set_terminated(info.run_id, status)


@contextmanager
def stage_run(stage: str, experiment: str, params: Mapping[str, Any] | None = None,
              root: str | Path | None = None) -> Iterator[Run]:
    """Open the MLflow run of one stage: a child of the pipeline run when `RLHF_PARENT_RUN_ID`
    is set, a standalone run otherwise. Ends FAILED (and re-raises) when the body raises."""
    root = project_root(root)
    client = _client(root)
    exp_id = _experiment_id(client, experiment, root)
    tags = {STAGE_TAG: stage, CACHED_TAG: "false", "rlhf.git_commit": git_commit(root),
            **dvc_dep_tags(stage, root)}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    with _open_run(client, exp_id, tags, stage, params) as run:
        yield run


@contextmanager
def pipeline_run(experiment: str, params: Mapping[str, Any], root: str | Path | None = None,
                 run_name: str | None = None) -> Iterator[Run]:
    """The parent run of one pipeline run. Logs every param (flattened) and tags the ones that
    differ from the previous pipeline run, so comparing two runs in the UI shows what changed."""
    root = project_root(root)
    client = _client(root)
    exp_id = _experiment_id(client, experiment, root)
    flat = {k: str(v) for k, v in flatten(params).items()}
    previous = last_pipeline_run(experiment, root)
    changed = sorted(k for k in flat if previous is not None and previous.data.params.get(k) != flat[k])
    tags = {PIPELINE_TAG: "true", "rlhf.git_commit": git_commit(root),
            "rlhf.params_changed": (", ".join(changed) or "(none)") if previous is not None else "(first run)"}
    with _open_run(client, exp_id, tags, run_name, flat) as run:
        yield run


def last_pipeline_run(experiment: str, root: str | Path | None = None):
    """The most recent finished pipeline run of `experiment`, or None."""
    root = project_root(root)
    client = _client(root)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id],
                              f"tags.`{PIPELINE_TAG}` = 'true' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def record_cached_stage(parent_run_id: str, stage: str, experiment: str, metrics_paths: list[Path],
                        root: str | Path | None = None) -> str:
    """A child run for a stage DVC found up to date: it carries the stage's current metrics and
    points at the run that produced them, so every pipeline run has one child per stage."""
    root = project_root(root)
    client = _client(root)
    exp_id = _experiment_id(client, experiment, root)
    source = client.search_runs([exp_id], f"tags.`{STAGE_TAG}` = '{stage}' and tags.`{CACHED_TAG}` = 'false' "
                                "and attributes.status = 'FINISHED'",
                                order_by=["attributes.start_time DESC"], max_results=1)
    tags = {STAGE_TAG: stage, CACHED_TAG: "true", "mlflow.parentRunId": parent_run_id,
            "rlhf.git_commit": git_commit(root), **dvc_dep_tags(stage, root)}
    if source:
        tags["rlhf.source_run_id"] = source[0].info.run_id
    info = client.create_run(exp_id, tags=tags, run_name=stage).info
    run = Run(client, info.run_id)
    if source:
        run.log_params(source[0].data.params)
    for path in map(Path, metrics_paths):
        if path.is_file():
            run.log_metrics(json.loads(path.read_text()))
            run.log_artifacts(path, "metrics")
    run.flush()
    client.set_terminated(info.run_id, "FINISHED")
    return info.run_id


def child_runs(parent_run_id: str, root: str | Path | None = None) -> list:
    """The child runs of a pipeline run, oldest first."""
    client = _client(project_root(root))
    parent = client.get_run(parent_run_id)
    return client.search_runs([parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=1000)


def retag_latest_child(parent_run_id: str, stage: str, root: str | Path | None = None) -> None:
    """Re-tag the stage's newest child run with the dep md5s of the dvc.lock DVC just wrote
    (at its start the run could only see the previous lock)."""
    root = project_root(root)
    runs = [r for r in child_runs(parent_run_id, root) if r.data.tags.get(STAGE_TAG) == stage]
    if runs:
        Run(_client(root), runs[-1].info.run_id).set_tags(dvc_dep_tags(stage, root))


def get_run(run_id: str, root: str | Path | None = None):
    return _client(project_root(root)).get_run(run_id)
