"""MLflow tracking: parent and child runs across processes, FAILED on exception, params, tags,
metrics mirrored from the stage's metrics file."""

import json
import subprocess
import sys
import textwrap

import pytest

from rlhf import tracking


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "dvc.lock").write_text(textwrap.dedent("""\
        schema: '2.0'
        stages:
          sft:
            cmd: python stages/sft.py
            deps:
            - path: data/sft
              md5: abc123.dir
            - path: stages/sft.py
              md5: def456
        """))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_standalone_stage_run_logs_params_tags_metrics_artifacts(project):
    with tracking.stage_run("sft", "exp", {"sft": {"lr": 0.001, "epochs": 2}}) as run:
        run.log_metrics({"sft/loss": 2.0}, step=0)
        run.log_metrics({"sft/loss": 1.0}, step=1)
        run.write_metrics(project / "metrics" / "sft.json", {"sft/val_loss": 1.5})
    r = tracking.get_run(run.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.params == {"sft.lr": "0.001", "sft.epochs": "2"}
    assert r.data.tags[tracking.STAGE_TAG] == "sft"
    assert "mlflow.parentRunId" not in r.data.tags
    assert r.data.tags["dvc.dep.data/sft"] == "abc123.dir" and r.data.tags["dvc.dep.stages/sft.py"] == "def456"
    assert r.data.metrics == {"sft/loss": 1.0, "sft/val_loss": 1.5}
    history = run.client.get_metric_history(run.run_id, "sft/loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0)]
    assert json.loads((project / "metrics" / "sft.json").read_text()) == {"sft/val_loss": 1.5}
    assert [a.path for a in run.client.list_artifacts(run.run_id, "metrics")] == ["metrics/sft.json"]


def test_step_metrics_are_written_in_batches_and_all_of_them_by_the_end(project, monkeypatch):
    monkeypatch.setattr(tracking, "FLUSH_SECONDS", 3600.0)
    with tracking.stage_run("sft", "exp") as run:
        for step in range(5):
            run.log_metrics({"sft/loss": 1.0 / (step + 1), "sft/lr": 0.1}, step)
        assert run.client.get_metric_history(run.run_id, "sft/loss") == []  # not written yet
        run.flush()
        assert len(run.client.get_metric_history(run.run_id, "sft/loss")) == 5
        run.log_metrics({"sft/loss": 0.1}, 5)
    history = run.client.get_metric_history(run.run_id, "sft/loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)] + [(5, 0.1)]
    monkeypatch.setattr(tracking, "FLUSH_SECONDS", 0.0)  # every call writes
    with tracking.stage_run("sft", "exp") as run:
        run.log_metrics({"sft/loss": 2.0}, 0)
        assert [m.value for m in run.client.get_metric_history(run.run_id, "sft/loss")] == [2.0]


@pytest.mark.parametrize("error, status", [(ZeroDivisionError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_metrics_logged_before_a_failure_are_kept(project, monkeypatch, error, status):
    monkeypatch.setattr(tracking, "FLUSH_SECONDS", 3600.0)
    with pytest.raises(error):
        with tracking.stage_run("sft", "exp") as run:
            run.log_metrics({"sft/loss": 3.0}, 7)
            raise error
    r = tracking.get_run(run.run_id)
    assert r.info.status == status and r.data.metrics == {"sft/loss": 3.0}


def test_failed_on_exception(project):
    with pytest.raises(ZeroDivisionError):
        with tracking.stage_run("sft", "exp") as run:
            1 / 0
    assert tracking.get_run(run.run_id).info.status == "FAILED"


def test_non_finite_metric_refused(project):
    with pytest.raises(ValueError, match="non-finite"):
        with tracking.stage_run("sft", "exp") as run:
            run.write_metrics(project / "m.json", {"sft/loss": float("nan")})
    assert not (project / "m.json").exists()


def test_child_runs_across_processes(project):
    child = textwrap.dedent("""\
        import sys
        from rlhf import tracking
        with tracking.stage_run(sys.argv[1], "exp", {"x": 1}) as run:
            run.log_metrics({"m": 1.0})
            if sys.argv[1] == "bad":
                raise SystemExit("stage failed")
        """)
    with tracking.pipeline_run("exp", {"ppo": {"kl_coef": 0.02}}) as parent:
        env = {**__import__("os").environ, tracking.PARENT_ENV: parent.run_id}
        for stage in ("a", "b", "bad"):
            subprocess.run([sys.executable, "-c", child, stage], env=env, cwd=project)
    kids = tracking.child_runs(parent.run_id)
    assert [k.data.tags[tracking.STAGE_TAG] for k in kids] == ["a", "b", "bad"]
    assert [k.info.status for k in kids] == ["FINISHED", "FINISHED", "FAILED"]
    assert all(k.data.tags["mlflow.parentRunId"] == parent.run_id for k in kids)
    p = tracking.get_run(parent.run_id)
    assert p.info.status == "FINISHED" and p.data.params == {"ppo.kl_coef": "0.02"}
    assert p.data.tags["rlhf.params_changed"] == "(first run)"


def test_pipeline_run_tags_changed_params_and_fails(project):
    with tracking.pipeline_run("exp", {"ppo": {"kl_coef": 0.02, "lr": 1}}):
        pass
    with tracking.pipeline_run("exp", {"ppo": {"kl_coef": 0.05, "lr": 1}}) as second:
        pass
    assert tracking.get_run(second.run_id).data.tags["rlhf.params_changed"] == "ppo.kl_coef"
    with pytest.raises(RuntimeError):
        with tracking.pipeline_run("exp", {}) as third:
            raise RuntimeError("stage failed")
    assert tracking.get_run(third.run_id).info.status == "FAILED"


def test_cached_stage_points_at_its_source_run(project):
    with tracking.stage_run("sft", "exp", {"sft": {"lr": 0.1}}) as source:
        source.write_metrics(project / "sft.json", {"sft/val_loss": 0.5})
    with tracking.pipeline_run("exp", {}) as parent:
        cached = tracking.record_cached_stage(parent.run_id, "sft", "exp", [project / "sft.json"])
    r = tracking.get_run(cached)
    assert r.data.tags[tracking.CACHED_TAG] == "true"
    assert r.data.tags["rlhf.source_run_id"] == source.run_id
    assert r.data.tags["mlflow.parentRunId"] == parent.run_id
    assert r.data.metrics == {"sft/val_loss": 0.5} and r.data.params == {"sft.lr": "0.1"}
    assert [a.path for a in source.client.list_artifacts(cached, "metrics")] == ["metrics/sft.json"]


def test_open_early_opens_the_store_in_a_thread_and_the_next_call_waits_for_it(project):
    tracking.open_early("exp")
    assert tracking.last_pipeline_run("exp") is None  # no race with the thread for MLflow's store
    assert not tracking._opening.is_alive()
    assert tracking._client().get_experiment_by_name("exp") is not None


def test_open_early_leaves_a_failure_to_the_next_call(project, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'dvc.yaml' / 'mlflow.db'}")  # under a file
    tracking.open_early("exp")  # raises nothing, here or in its thread
    with pytest.raises(Exception, match="dvc.yaml"):
        tracking.last_pipeline_run("exp")
    assert "Exception in thread" not in capfd.readouterr().err


def test_default_tracking_uri_is_sqlite_at_project_root(project, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert tracking.tracking_uri() == f"sqlite:///{project / 'mlflow.db'}"
