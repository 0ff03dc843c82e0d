"""The promotion gate: which PPO-ptx policy the MLflow Model Registry calls `champion`.

Every evaluate run registers its policy as a new version of one registered model and points the
alias `candidate` at it. The alias `champion`, the policy to serve, moves to the candidate only
when the candidate beats the current champion head to head on the test prompts, by a win rate of at
least 0.5 + `evaluate.promote_margin` (ties count half), or when there is no champion yet. The judge
is the gold labeler on the embedded world's test prompts and the reward model on a user's own
(stages/evaluate.py); the reason names it.
The margin keeps the champion from flapping between two policies of equal quality on noise, and
scheduled retraining never replaces a better model with a worse one.

The champion is compared from the files registered for it (downloaded from the registry), not
from whatever a local folder holds now. The decision and its reason go to the evaluate run (tags
and metrics) and to the new model version (tags).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CANDIDATE = "candidate"  # alias of the newest registered policy, and the run's artifact path for it
CHAMPION = "champion"  # alias of the policy that won every head-to-head since it was promoted
_EPS = 1e-12  # a win rate exactly at the threshold promotes despite float rounding


def decide(win_rate: float | None, margin: float, champion: str | None = None,
           judge: str = "the gold labeler") -> tuple[bool, str]:
    """(promoted, reason) for a candidate that won `win_rate` of the test prompts against the
    champion (ties half); None when there is no champion. `champion` (a version) and `judge` (who
    scored the two policies' responses) only name them in the reason."""
    if not 0.0 <= margin <= 0.5:
        raise ValueError(f"promote_margin must be in [0, 0.5], got {margin}")
    if win_rate is None:
        return True, "no champion yet: the first candidate becomes champion"
    if not 0.0 <= win_rate <= 1.0:
        raise ValueError(f"win rate must be in [0, 1], got {win_rate}")
    threshold = 0.5 + margin
    against = f"champion v{champion}" if champion is not None else "the champion"
    reason = (f"candidate won {win_rate:.4g} of test prompts against {against}, judged by {judge} "
              f"(needs >= {threshold:.4g} = 0.5 + promote_margin {margin:g})")
    return win_rate >= threshold - _EPS, reason


@dataclass(frozen=True)
class Decision:
    """The outcome of one gate: versions are registry version strings ("3")."""

    promoted: bool
    reason: str
    name: str
    candidate_version: str
    champion_before: str | None
    champion_after: str
    win_rate: float | None  # the candidate's win rate against champion_before; None if none
    judge: str = "the gold labeler"  # who judged the head-to-head

    def metrics(self) -> dict[str, float]:
        """Numeric figures for metrics/eval.json and the run."""
        out = {"eval/promotion/promoted": float(self.promoted),
               "eval/promotion/candidate_version": float(int(self.candidate_version)),
               "eval/promotion/champion_version": float(int(self.champion_after))}
        if self.win_rate is not None:
            out["eval/promotion/win_rate_vs_champion"] = float(self.win_rate)
        return out

    def summary(self) -> str:
        """One line for the pipeline summary."""
        head = f"promotion: candidate {self.name} v{self.candidate_version}"
        if self.promoted:
            return f"{head} promoted to champion ({self.reason})"
        return f"{head} not promoted; champion stays v{self.champion_before} ({self.reason})"


def register(run, name: str, candidate_dir: str | Path) -> str:
    """Log `candidate_dir` (a model folder) to `run` under `candidate/`, register it as a new
    version of `name` (created if missing) and point the alias `candidate` at it; the version."""
    run.log_artifacts(candidate_dir, CANDIDATE)
    version = run.register_model_version(name, CANDIDATE, {"candidate_dir": str(candidate_dir)})
    run.client.set_registered_model_alias(name, CANDIDATE, version)
    return version


def champion(client, name: str) -> str | None:
    """The version the alias `champion` points at, or None. (`get_model_version_by_alias` raises
    INVALID_PARAMETER_VALUE for a missing alias; the registered model's alias map does not.)"""
    version = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if version is None else str(version)


def gate(run, name: str, candidate_dir: str | Path, margin: float,
         head_to_head: Callable[[Path], float], judge: str = "the gold labeler") -> Decision:
    """Register the policy in `candidate_dir` as a new version of `name` (alias `candidate`),
    compare it with the current champion through `head_to_head(champion_dir)` (the candidate's
    win rate against the policy in that folder as `judge` scores them, ties half), move `champion`
    to it when `decide` says so, and log the decision to `run` and to the new version."""
    decide(None, margin)  # a bad margin fails before anything is registered
    client = run.client
    version = register(run, name, candidate_dir)
    before = champion(client, name)
    win_rate = None
    if before is not None:
        with tempfile.TemporaryDirectory(prefix="champion-") as tmp:
            win_rate = float(head_to_head(run.download_model_version(name, before, tmp)))
    promoted, reason = decide(win_rate, margin, before, judge)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    decision = Decision(promoted, reason, name, version, before, version if promoted else before, win_rate, judge)

    run.set_tags({"promotion.decision": "promoted" if promoted else "refused",
                  "promotion.reason": reason,
                  "promotion.judge": judge,
                  "promotion.candidate_version": version,
                  "promotion.champion_version": decision.champion_after})
    run.log_metrics(decision.metrics())
    for key, value in {"decision": "promoted" if promoted else "refused", "reason": reason, "judge": judge,
                       "win_rate_vs_champion": "n/a" if win_rate is None else f"{win_rate:.6g}"}.items():
        client.set_model_version_tag(name, version, key, value)
    return decision
