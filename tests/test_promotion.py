"""The promotion gate: the decision rule, and the registry's aliases, the files compared and what
is logged, on a real sqlite MLflow store with tiny fake model folders."""

from pathlib import Path

import pytest

from rlhf import promotion, tracking

NAME = "instructgpt-policy"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def model_dir(root: Path, tag: str) -> Path:
    """A stand-in for a Hugging Face model folder whose files say which policy it is."""
    d = root / f"model-{tag}"
    d.mkdir()
    (d / "config.json").write_text(f'{{"policy": "{tag}"}}\n')
    (d / "model.safetensors").write_bytes(tag.encode() * 8)
    return d


def never(champion_dir: Path) -> float:
    raise AssertionError("head_to_head called without a champion")


def run_gate(project: Path, tag: str, head_to_head, margin: float = 0.05) -> tuple[promotion.Decision, str]:
    with tracking.stage_run("evaluate", "exp", root=project) as run:
        decision = promotion.gate(run, NAME, model_dir(project, tag), margin, head_to_head)
    return decision, run.run_id


def aliases() -> dict[str, str]:
    return {k: str(v) for k, v in tracking._client().get_registered_model(NAME).aliases.items()}


# decide: the rule alone

def test_decide_promotes_above_the_margin_and_names_the_figures():
    promoted, reason = promotion.decide(0.62, 0.05, champion="3")
    assert promoted
    assert reason == ("candidate won 0.62 of test prompts against champion v3, judged by the gold labeler "
                      "(needs >= 0.55 = 0.5 + promote_margin 0.05)")
    assert promotion.decide(0.62, 0.05, "3", judge="the reward model")[1].startswith(
        "candidate won 0.62 of test prompts against champion v3, judged by the reward model (needs")


def test_decide_refuses_below_the_margin():
    assert promotion.decide(0.54, 0.05) == (
        False, "candidate won 0.54 of test prompts against the champion, judged by the gold labeler "
               "(needs >= 0.55 = 0.5 + promote_margin 0.05)")
    assert not promotion.decide(0.5, 0.05)[0]
    assert not promotion.decide(0.0, 0.0)[0]


def test_decide_promotes_exactly_at_the_threshold():
    assert promotion.decide(0.55, 0.05)[0]
    assert promotion.decide(57 / 100, 0.07)[0]  # 0.5 + 0.07 is 0.5700000000000001 in floats
    assert promotion.decide(0.5, 0.0)[0]
    assert promotion.decide(1.0, 0.5)[0]


def test_decide_first_champion():
    assert promotion.decide(None, 0.05) == (True, "no champion yet: the first candidate becomes champion")


@pytest.mark.parametrize("win_rate, margin", [(-0.01, 0.05), (1.01, 0.05), (float("nan"), 0.05),
                                              (0.6, -0.01), (0.6, 0.51), (None, float("nan"))])
def test_decide_rejects_bad_inputs(win_rate, margin):
    with pytest.raises(ValueError):
        promotion.decide(win_rate, margin)


def test_decision_metrics_and_summary():
    first = promotion.Decision(True, "no champion yet", NAME, "1", None, "1", None)
    assert first.metrics() == {"eval/promotion/promoted": 1.0, "eval/promotion/candidate_version": 1.0,
                               "eval/promotion/champion_version": 1.0}
    assert first.summary() == f"promotion: candidate {NAME} v1 promoted to champion (no champion yet)"
    refused = promotion.Decision(False, "too close", NAME, "4", "3", "3", 0.5)
    assert refused.metrics() == {"eval/promotion/promoted": 0.0, "eval/promotion/candidate_version": 4.0,
                                 "eval/promotion/champion_version": 3.0,
                                 "eval/promotion/win_rate_vs_champion": 0.5}
    assert refused.summary() == f"promotion: candidate {NAME} v4 not promoted; champion stays v3 (too close)"


# gate: the registry

def test_gate_first_candidate_becomes_champion(project):
    decision, run_id = run_gate(project, "one", never)
    assert decision == promotion.Decision(True, "no champion yet: the first candidate becomes champion",
                                          NAME, "1", None, "1", None)
    assert aliases() == {"candidate": "1", "champion": "1"}
    r = tracking.get_run(run_id)
    assert r.data.tags["promotion.decision"] == "promoted"
    assert r.data.tags["promotion.champion_version"] == "1"
    assert r.data.metrics == decision.metrics()
    mv = tracking._client().get_model_version(NAME, "1")
    assert mv.run_id == run_id and mv.source.endswith(f"{run_id}/artifacts/candidate")
    assert mv.tags["decision"] == "promoted" and mv.tags["win_rate_vs_champion"] == "n/a"


def test_gate_keeps_a_better_champion_and_promotes_a_clear_winner(project):
    run_gate(project, "one", never)
    seen: list[tuple[str, bytes]] = []

    def against(win_rate: float):
        def head_to_head(champion_dir: Path) -> float:
            seen.append(((champion_dir / "config.json").read_text(),
                         (champion_dir / "model.safetensors").read_bytes()))
            return win_rate
        return head_to_head

    # a candidate no better than the champion: registered, but the champion stays
    second, run_id = run_gate(project, "two", against(0.5))
    assert not second.promoted and second.win_rate == 0.5
    assert (second.candidate_version, second.champion_before, second.champion_after) == ("2", "1", "1")
    assert aliases() == {"candidate": "2", "champion": "1"}
    r = tracking.get_run(run_id)
    assert r.data.tags["promotion.decision"] == "refused"
    assert r.data.tags["promotion.reason"] == second.reason == (
        "candidate won 0.5 of test prompts against champion v1, judged by the gold labeler "
        "(needs >= 0.55 = 0.5 + promote_margin 0.05)")
    assert r.data.tags["promotion.judge"] == "the gold labeler"
    assert r.data.tags["promotion.candidate_version"] == "2"
    assert r.data.tags["promotion.champion_version"] == "1"
    assert r.data.metrics["eval/promotion/promoted"] == 0.0
    assert r.data.metrics["eval/promotion/win_rate_vs_champion"] == 0.5
    tags = tracking._client().get_model_version(NAME, "2").tags
    assert tags["decision"] == "refused" and tags["reason"] == second.reason and tags["judge"] == "the gold labeler"
    assert tags["win_rate_vs_champion"] == "0.5"

    # a clear winner takes the alias; it was compared with v1 (still champion), not with v2
    third, _ = run_gate(project, "three", against(0.7))
    assert third.promoted and (third.champion_before, third.champion_after) == ("1", "3")
    assert aliases() == {"candidate": "3", "champion": "3"}
    assert "promoted to champion" in third.summary()

    # each time, head_to_head got the champion's registered files, not the candidate's folder
    assert seen == [('{"policy": "one"}\n', b"one" * 8)] * 2
    # and the next candidate is compared with v3's files
    fourth, _ = run_gate(project, "four", against(0.3))
    assert not fourth.promoted and seen[-1] == ('{"policy": "three"}\n', b"three" * 8)
    assert aliases() == {"candidate": "4", "champion": "3"}


def test_gate_champion_files_come_from_the_registry(project):
    run_gate(project, "one", never)
    (project / "model-one" / "config.json").write_text("overwritten after registration\n")

    def head_to_head(champion_dir: Path) -> float:
        assert (champion_dir / "config.json").read_text() == '{"policy": "one"}\n'
        assert not champion_dir.resolve().is_relative_to((project / "model-one").resolve())
        return 0.9
    assert run_gate(project, "two", head_to_head)[0].promoted


def test_gate_rejects_a_bad_margin_before_registering(project):
    with pytest.raises(ValueError), tracking.stage_run("evaluate", "exp", root=project) as run:
        promotion.gate(run, NAME, model_dir(project, "one"), -0.1, never)
    assert tracking._client().search_registered_models() == []
