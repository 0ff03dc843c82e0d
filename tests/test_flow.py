"""The Prefect flow on a tiny pipeline in a temporary git + DVC repo: DAG order from dvc.yaml,
a second run skips every stage, a failing stage is retried and then fails the flow."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rlhf import tracking

ROOT = Path(__file__).resolve().parents[1]

STEP = textwrap.dedent("""\
    import sys, pathlib
    name = sys.argv[1]
    with open("order.log", "a") as f:
        f.write(name + "\\n")
    for inp in sys.argv[3:]:
        assert pathlib.Path(inp).exists(), inp
    pathlib.Path(sys.argv[2]).write_text(name)
    pathlib.Path("metrics").mkdir(exist_ok=True)
    pathlib.Path(f"metrics/{name}.json").write_text('{"%s/done": 1}' % name)
    """)
# a foreach item that notes its torch threads and, given a wait, waits for its sibling to start
SIDE = textwrap.dedent("""\
    import os, pathlib, sys, time
    item, other, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pathlib.Path(f"started_{item}").write_text(os.environ.get("OMP_NUM_THREADS", "") + " "
                                               + os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
    deadline = time.time() + wait
    while not pathlib.Path(f"started_{other}").exists() and time.time() < deadline:
        time.sleep(0.05)
    pathlib.Path(f"side_{item}.txt").write_text(str(pathlib.Path(f"started_{other}").exists()))
    """)
THREADS = "import os, pathlib; pathlib.Path('after.txt').write_text(os.environ.get('OMP_NUM_THREADS', ''))"
BOOM = textwrap.dedent("""\
    with open("attempts.log", "a") as f:
        f.write("attempt\\n")
    raise SystemExit("boom: this stage always fails")
    """)


def tiny_stage(name, out, deps=(), params=("common.seed",)):
    return {"cmd": f"python step.py {name} {out} {' '.join(deps)}".strip(),
            "deps": ["step.py", *deps], "params": list(params), "outs": [out],
            "metrics": [{f"metrics/{name}.json": {"cache": False}}]}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["flow"].update(retries=2, retry_delay_s=0, prefork=False)  # test_prefork.py runs it warm

    def make(stages, **flow):
        params["flow"].update(flow)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        (tmp_path / "step.py").write_text(STEP)
        (tmp_path / "boom.py").write_text(BOOM)
        (tmp_path / "side.py").write_text(SIDE)
        (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
        subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
        return tmp_path
    return make


def run_flow(root):
    from flows.pipeline import pipeline

    return pipeline(root=str(root))


def test_dag_order_skip_and_params_rerun(harness, repo):
    # listed out of order on purpose: the flow must follow the graph, not the file
    root = repo({
        "c": tiny_stage("c", "c.txt", deps=["b.txt"]),
        "a": tiny_stage("a", "a.txt"),
        "b": tiny_stage("b", "b.txt", deps=["a.txt"], params=("common.seed", "sft.lr")),
        "z": tiny_stage("z", "z.txt"),
    })
    first = run_flow(root)
    assert (root / "order.log").read_text().split() == ["a", "b", "c", "z"]
    assert list(first["stages"]) == ["a", "b", "c", "z"]
    assert {s["status"] for s in first["stages"].values()} == {"ran"}

    second = run_flow(root)
    assert {s["status"] for s in second["stages"].values()} == {"up to date"}
    assert (root / "order.log").read_text().split() == ["a", "b", "c", "z"]
    # every pipeline run has one child run per stage, cached ones carrying the metrics
    kids = tracking.child_runs(second["parent_run_id"], root)
    assert sorted(k.data.tags[tracking.STAGE_TAG] for k in kids) == ["a", "b", "c", "z"]
    assert all(k.data.tags[tracking.CACHED_TAG] == "true" for k in kids)
    assert {k.data.tags[tracking.STAGE_TAG]: k.data.metrics for k in kids}["b"] == {"b/done": 1.0}

    # a param only b reads reruns b and what depends on it, nothing else
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sft"]["lr"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    third = run_flow(root)
    assert {k: s["status"] for k, s in third["stages"].items()} == \
        {"a": "up to date", "b": "ran", "c": "up to date", "z": "up to date"}
    parent = tracking.get_run(third["parent_run_id"], root)
    assert parent.data.tags["rlhf.params_changed"] == "sft.lr"


def test_batches_run_a_foreachs_ready_items_together_and_everything_else_alone():
    from flows.pipeline import batches

    graph = [("data", [], set()), ("ppo@ptx", [], {"data"}), ("other", [], {"data"}),
             ("ppo@plain", [], {"data"}), ("ppo@x", [], {"data"}),
             ("chain@a", [], {"data"}), ("chain@b", [], {"chain@a"}),  # b needs a: never side by side
             ("eval", [], {"ppo@ptx", "ppo@plain", "ppo@x", "chain@b", "other"})]
    assert batches(graph, 1) == [[n] for n, _, _ in graph]
    assert batches(graph, 2) == [["data"], ["ppo@ptx", "ppo@plain"], ["other"], ["ppo@x"], ["chain@a"],
                                 ["chain@b"], ["eval"]]
    assert batches(graph, 8) == [["data"], ["ppo@ptx", "ppo@plain", "ppo@x"], ["other"], ["chain@a"],
                                 ["chain@b"], ["eval"]]


@pytest.mark.parametrize("visible, n, expected", [
    ("0,1,2,3", 2, ["0,1", "2,3"]), ("0,1,2", 2, ["0,1", "2"]), ("3,5", 2, ["3", "5"]),
    ("0", 2, ["0", "0"]), ("", 2, ["", ""]), ("0,1", 3, ["0,1", "0,1", "0,1"])])  # too few: all see all
def test_side_by_side_stages_share_the_threads_and_split_the_gpus(monkeypatch, visible, n, expected):
    from flows.pipeline import side_by_side_envs

    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    envs = side_by_side_envs({"KEEP": "1", "CUDA_VISIBLE_DEVICES": visible}, n)
    assert [e["OMP_NUM_THREADS"] for e in envs] == [str(max(1, 5 // n))] * n
    assert all(e["KEEP"] == "1" for e in envs)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == expected


def test_without_cuda_visible_devices_the_gpus_are_what_nvidia_smi_lists(monkeypatch, tmp_path):
    from flows.pipeline import gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpus() == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "none"))  # no nvidia-smi: no GPU
    assert gpus() == []


@pytest.mark.parametrize("max_parallel", [2, 1])
def test_a_foreachs_items_run_side_by_side_with_the_threads_shared(harness, repo, monkeypatch, max_parallel):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # names only: nothing here uses a GPU
    wait = 120 if max_parallel > 1 else 0  # alone, an item would wait for nothing
    side = {"foreach": {"x": "y", "y": "x"},
            "do": {"cmd": f"python side.py ${{key}} ${{item}} {wait}", "deps": ["side.py", "a.txt"],
                   "outs": ["side_${key}.txt"]}}
    root = repo({"a": tiny_stage("a", "a.txt"), "side": side,
                 "after": {"cmd": f'python -c "{THREADS}"', "deps": ["side_x.txt", "side_y.txt"],
                           "outs": ["after.txt"]}}, max_parallel=max_parallel)
    result = run_flow(root)
    assert list(result["stages"]) == ["a", "side@x", "side@y", "after"]
    assert {s["status"] for s in result["stages"].values()} == {"ran"}
    if max_parallel > 1:  # each saw the other start, and had half the threads and a GPU of its own
        assert [(root / f"side_{i}.txt").read_text() for i in "xy"] == ["True", "True"]
        assert [(root / f"started_{i}").read_text() for i in "xy"] == ["2 0", "2 1"]
    else:  # x finished before y started, each with every thread and GPU
        assert (root / "side_x.txt").read_text() == "False"
        assert [(root / f"started_{i}").read_text() for i in "xy"] == ["4 0,1", "4 0,1"]
    assert (root / "after.txt").read_text() == "4"  # a stage alone gets every thread again
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert {"side@x", "side@y", "after"} <= set(lock)  # DVC recorded both items
    again = run_flow(root)  # and both are up to date after it
    assert {s["status"] for s in again["stages"].values()} == {"up to date"}


def test_when_one_item_fails_the_one_beside_it_still_finishes_and_is_recorded(harness, repo):
    side = {"foreach": {"x": "y", "bad": "x"},
            "do": {"cmd": "python side.py ${key} ${item} 0", "deps": ["side.py", "a.txt"], "outs": ["side_${key}.txt"]}}
    root = repo({"a": tiny_stage("a", "a.txt"), "side": side}, retries=0)
    (root / "side.py").write_text('import sys\nif sys.argv[1] == "bad":\n    raise SystemExit("bad item")\n' + SIDE)
    with pytest.raises(RuntimeError, match="stage 'side@bad' failed"):
        run_flow(root)
    assert (root / "side_x.txt").exists() and not (root / "side_bad.txt").exists()
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert "side@x" in lock and "side@bad" not in lock


def test_failing_stage_is_retried_then_fails_the_flow(harness, repo):
    root = repo({"a": tiny_stage("a", "a.txt"),
                 "boom": {"cmd": "python boom.py", "deps": ["boom.py", "a.txt"], "outs": ["never.txt"]},
                 "after": tiny_stage("after", "after.txt", deps=["never.txt"])})
    with pytest.raises(RuntimeError, match="stage 'boom' failed"):
        run_flow(root)
    assert (root / "attempts.log").read_text().count("attempt") == 3  # 1 + flow.retries
    assert (root / "order.log").read_text().split() == ["a"]  # nothing after the failed stage ran
    # the pipeline's parent run is marked FAILED, so it never counts as the last good run
    assert tracking.last_pipeline_run("instructgpt", root) is None
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    parents = client.search_runs([client.get_experiment_by_name("instructgpt").experiment_id],
                                 "tags.`rlhf.pipeline` = 'true'")
    assert [p.info.status for p in parents] == ["FAILED"]


def test_summary_lists_every_policy_with_or_without_gold_figures():
    from flows.pipeline import summary

    stages = {"evaluate": {"status": "ran", "seconds": 1.0}}
    gold = {"eval/sft/gold_score": 0.8, "eval/sft/rm_score": 0.0, "eval/ppo_ptx/gold_score": 0.9,
            "eval/ppo_ptx/rm_score": 1.25, "eval/ppo_ptx/win_rate_vs_sft_rm": 0.7}
    own = {k: v for k, v in gold.items() if "gold" not in k}  # a user's own prompts: the RM's figures only
    for headline in (gold, own):
        text = summary({"stages": stages, "headline": headline, "parent_run_id": "r", "experiment": "e"})
        rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()
                if line.startswith(("  SFT", "  PPO-ptx"))}
        assert rows["SFT"][:5] == ["0.8000" if headline is gold else "-", "-", "-", "0.0000", "-"]
        assert rows["PPO-ptx"][3:5] == ["1.2500", "0.7000"]
        assert "Reward model" not in text  # no reward_model figures given


def test_summary_gives_the_reward_models_figures_with_gold_where_known():
    from flows.pipeline import summary

    base = {"stages": {"reward_model": {"status": "ran", "seconds": 1.0}}, "headline": {}, "parent_run_id": "r",
            "experiment": "e"}
    simulated = {"rm/val_accuracy": 0.659, "rm/val_labeler_gold_agreement": 0.722, "rm/val_accuracy_gold": 0.8265}
    text = summary(base | {"reward_model": simulated})
    assert ("Reward model (metrics/reward_model.json): 0.6590 of the val pairs ranked as the labeler did "
            "(the labeler agrees with gold on 0.7220), 0.8265 as gold does") in text
    interval = {"rm/val_labeler_shortfall": 0.063, "rm/val_labeler_shortfall_lo": 0.0412,
                "rm/val_labeler_shortfall_hi": 0.08}
    assert ("(the labeler agrees with gold on 0.7220, 0.0630 more than the RM: 95% interval over the val prompts "
            "0.0412 to 0.0800), 0.8265 as gold does") in summary(base | {"reward_model": simulated | interval})
    imported = summary(base | {"reward_model": {"rm/val_accuracy": 0.7}})  # val rankings from files: no gold
    line = next(x for x in imported.splitlines() if x.startswith("Reward model"))
    assert line == "Reward model (metrics/reward_model.json): 0.7000 of the val pairs ranked as the labeler did"


def test_the_summary_imports_no_torch():
    """The summary's policy titles come from rlhf.evaluation, which imported torch (2.3 s) for a
    function the flow never calls, at the end of every `make run`."""
    code = ("import sys\nfrom flows.pipeline import summary\n"
            "summary({'stages': {}, 'headline': {'eval/sft/rm_score': 0.0}, 'parent_run_id': 'r', 'experiment': 'e'})\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm process runs on Linux only")
def test_early_start_begins_the_warm_process_and_mlflow_before_the_flow_which_uses_them(tmp_path, monkeypatch):
    """`python -m flows.pipeline run` starts the warm process and opens MLflow's store before
    Prefect starts its temporary server; the flow inside uses that process, starting no second one.
    (No `PREFECT_API_URL`, as in `make run`: the `harness` fixture sets one in this worker.)"""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import pipeline as fp
    from rlhf import config, prefork

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(fp, "gpus", lambda: [])
    cfg = config.load_all(ROOT / "params.yaml")
    with temporary_settings(restore_defaults={PREFECT_API_URL}), fp.early_start(cfg, tmp_path):
        early = dict(fp._STARTED_EARLY)
        assert os.path.exists(early[prefork.ENV])
        with fp.warm_start(True) as warm:
            assert warm == early
        assert tracking.last_pipeline_run(cfg["common"].experiment, tmp_path) is None  # waits for the store
        assert tracking._client(tmp_path).get_experiment_by_name(cfg["common"].experiment) is not None
    assert not fp._STARTED_EARLY and not os.path.exists(early[prefork.ENV])
    with fp.warm_start(False) as warm:  # outside it, the flow decides for itself again
        assert warm == {}


@pytest.mark.parametrize("api_url", [None, "http://127.0.0.1:4200/api"])
def test_mlflow_opens_early_only_for_a_temporary_server_and_after_its_imports(api_url):
    """MLflow's thread overlaps the temporary server's start, and starts only once the flow's process
    has imported what that start imports (MLflow imports many of the same packages); with a server of
    one's own there is no start to overlap, and nothing is opened early. In a fresh interpreter."""
    code = textwrap.dedent("""\
        import dataclasses, sys
        from flows import pipeline as fp
        from rlhf import config, tracking
        calls = []
        tracking.open_early = lambda experiment, root: calls.append("prefect.server.api.server" in sys.modules)
        cfg = config.load_all("params.yaml")
        cfg = {**cfg, "flow": dataclasses.replace(cfg["flow"], prefork=False)}
        before = "prefect.server.api.server" in sys.modules
        with fp.early_start(cfg, fp.Path(".")):
            pass
        print(before, calls)
        """)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == ("False []" if api_url else "False [True]")


@pytest.mark.parametrize("given, expected", [(None, 120.0), ("7", 7.0)])
def test_the_temporary_server_gets_time_to_start_unless_told_otherwise(given, expected):
    """Prefect's 20 s default for its temporary server to come up was too short for a first run on a
    slow machine; the flow allows 120 s, and a value the user set wins."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    if given is not None:
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = given
    code = ("import flows.pipeline\n"
            "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s\n"
            "print(s.value())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) == expected
