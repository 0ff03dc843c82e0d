"""dvc.yaml, params.yaml and stages/ agree with each other and with the layering rules."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlhf import config
from rlhf.workspace import scratch_copy

ROOT = Path(__file__).resolve().parents[1]
# a foreach stage (ppo: one per ppo.variants entry) is checked on its template
DVC = {name: stage.get("do", stage) for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()}
PARAMS = config.read_params(ROOT / "params.yaml")
DESIGN_STAGES = ["synthesize", "ingest", "pretrain", "demonstrations", "sft", "comparisons",
                 "reward_model", "ppo", "evaluate"]


def script_of(stage: dict) -> Path:
    return ROOT / re.search(r"python (stages/\S+\.py)", stage["cmd"]).group(1)


def test_the_nine_stages_of_the_design():
    assert list(DVC) == DESIGN_STAGES


@pytest.mark.parametrize("name", list(DVC))
def test_stage_agrees_with_params_and_scripts(name):
    stage = DVC[name]
    script = script_of(stage)
    assert script.exists(), f"{name}: {script} missing"
    assert str(script.relative_to(ROOT)) in stage["deps"] and "src/rlhf" in stage["deps"]
    assert "stages/_checkout.py" in stage["deps"]  # which package the script imports
    for key in stage["params"]:
        section, _, field = key.partition(".")
        assert section in PARAMS, f"{name}: params section {section} not in params.yaml"
        if field:
            assert field in PARAMS[section], f"{name}: params key {key} not in params.yaml"
    # every section the script loads is listed, so editing it reruns the stage
    sections = ast.literal_eval(re.search(r"SECTIONS = (\(.*?\))", script.read_text()).group(1))
    listed = {k.partition(".")[0] for k in stage["params"]}
    assert set(sections) <= listed, f"{name}: loads {sections}, dvc.yaml lists {listed}"
    # every metrics file is passed to the script, the path written once
    for m in stage.get("metrics", []):
        assert f"--metrics {next(iter(m))}" in stage["cmd"]


def test_every_output_path_is_an_argument_written_once():
    for name, stage in DVC.items():
        for out in stage.get("outs", []):
            assert out in stage["cmd"], f"{name}: out {out} not passed on the command line"
        text = script_of(stage).read_text()
        for literal in re.findall(r'"((?:data|models|metrics|plots|reports)/[^"]*)"', text):
            pytest.fail(f"{name}: path {literal!r} hard-coded in its script")


@pytest.mark.parametrize("name", DESIGN_STAGES)
def test_stage_help(name, monkeypatch, run_script):
    # in this process: a new one per stage spent 5-6 s each on imports (the pipeline tests run
    # every script as its own process)
    monkeypatch.chdir(ROOT)
    code, out, _ = run_script(script_of(DVC[name]), "--help")
    assert code == 0 and "--params" in out and "params.yaml keys read" in out


def test_every_stage_imports_its_own_checkouts_package_first():
    for path in sorted((ROOT / "stages").glob("*.py")):
        if path.name == "_checkout.py":
            continue
        modules = [n.names[0].name if isinstance(n, ast.Import) else n.module
                   for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert "_checkout" in modules, f"{path.name} does not import _checkout"
        first_rlhf = next(i for i, m in enumerate(modules) if m.split(".")[0] == "rlhf")
        assert modules.index("_checkout") < first_rlhf, f"{path.name} imports rlhf before _checkout"


def test_a_copy_of_the_checkout_runs_its_own_package(tmp_path):
    """As DVC runs a queued or --temp experiment: the stages of a copy of the repository (under
    .dvc/tmp/exps/) import the copy's src/rlhf, not the installed (editable) workspace's."""
    copy = tmp_path / "exp"
    for item in ("stages", "src"):
        shutil.copytree(ROOT / item, copy / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with (copy / "src" / "rlhf" / "__init__.py").open("a") as f:
        f.write("\nprint('rlhf imported from', __file__)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RLHF_PREFORK")}
    out = subprocess.run([sys.executable, "stages/synthesize.py", "--help"], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"rlhf imported from {copy / 'src' / 'rlhf' / '__init__.py'}" in out.stdout


def test_the_flow_of_another_checkout_runs_its_own_package(tmp_path):
    """`python -m flows.pipeline` in another clone or worktree that shares this virtual environment
    (whose editable install points here) runs that clone's src/rlhf, as its stages do."""
    copy = tmp_path / "clone"
    for item in ("flows", "stages", "src"):
        shutil.copytree(ROOT / item, copy / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RLHF_PREFORK")}
    out = subprocess.run([sys.executable, "-c", "import flows.pipeline, rlhf; print(rlhf.__file__)"], cwd=copy,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(copy / "src" / "rlhf" / "__init__.py")


def test_only_tracking_imports_mlflow_and_only_flows_import_prefect():
    for path in list((ROOT / "src").rglob("*.py")) + list((ROOT / "stages").rglob("*.py")):
        tree = ast.parse(path.read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "prefect" not in mods, f"{path} imports prefect"
        if path.name != "tracking.py":
            assert "mlflow" not in mods, f"{path} imports mlflow"


def test_ppo_variants_are_stages_of_one_script():
    out = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    ppo_stages = [s for s in out.stdout.split() if s.startswith("ppo")]
    assert ppo_stages == [f"ppo@{v}" for v in PARAMS["ppo"]["variants"]] == ["ppo@ptx", "ppo@plain"]
    assert "--variant ${item}" in DVC["ppo"]["cmd"] and "models/ppo/${item}" in DVC["ppo"]["outs"]
    assert "models/ppo" in DVC["evaluate"]["deps"] and "ppo.variants" in DVC["evaluate"]["params"]


def test_dvc_validates_the_graph():
    out = subprocess.run([sys.executable, "-m", "dvc", "dag", "--md"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def stage_deps(root: Path) -> dict[str, list[str]]:
    """Each stage's deps as DVC resolves dvc.yaml against the params file of `root`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.name: [d.def_path for d in s.deps] for s in repo.index.stages}


def test_imported_files_are_dependencies_of_their_stage(tmp_path):
    # the default import folders are in the repo (a clone has the deps), kept by their READMEs
    for section in ("demonstrations", "comparisons"):
        assert (ROOT / PARAMS[section]["import_path"] / "README.md").is_file()
    deps = stage_deps(ROOT)
    assert PARAMS["demonstrations"]["import_path"] in deps["demonstrations"]
    assert PARAMS["comparisons"]["import_path"] in deps["comparisons"]
    # a path named in params.yaml, outside the repo, is what the stage then depends on, and only it
    mine = tmp_path / "mine.jsonl"
    mine.write_text("")
    repo = scratch_copy(ROOT, tmp_path / "repo", {"comparisons": {"import_path": str(mine), "source": "import"}})
    deps = stage_deps(repo)
    assert str(mine) in deps["comparisons"] and PARAMS["comparisons"]["import_path"] not in deps["comparisons"]
    assert str(mine) not in deps["demonstrations"] and str(mine) not in deps["reward_model"]


def test_bytecode_caches_do_not_make_a_stage_look_changed(tmp_path, monkeypatch):
    """A stage process that imports src/rlhf writes __pycache__ there wherever bytecode is written
    (Python's default): with the project's .dvcignore, DVC leaves it out of the folder's hash, so
    a finished run stays up to date."""
    import shutil

    from dvc.repo import Repo

    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "mod.py").write_text("X = 1\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  make:\n    cmd: echo made > out.txt\n    deps: [src]\n"
                                       "    outs: [out.txt]\n")
    monkeypatch.chdir(tmp_path)  # DVC resolves its default targets against the working directory
    Repo.init(str(tmp_path), no_scm=True)
    with Repo(str(tmp_path)) as repo:
        repo.reproduce()
        cache = tmp_path / "src" / "pkg" / "__pycache__"
        cache.mkdir()
        (cache / "mod.cpython-311.pyc").write_bytes(b"\x00" * 16)
        assert repo.status() == {}
        (tmp_path / "src" / "pkg" / "mod.py").write_text("X = 2\n")  # a real change still shows
        assert "make" in repo.status()
