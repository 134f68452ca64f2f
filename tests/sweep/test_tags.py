"""Trial tags and study names: the overrides a trial runs with."""

from __future__ import annotations

from polylora.sweep.tags import study_name, trial_overrides


def test_trial_overrides_parse_and_merge_into_tracking_tags(compose_cfg) -> None:
    overrides = trial_overrides(7, "exp-it's/lr", "abc123")
    cfg = compose_cfg(["+experiment=smoke", "+tracking.tags={keep:'me'}", *overrides])
    assert dict(cfg.tracking.tags) == {
        "keep": "me", "polylora.trial": "7", "polylora.study": "exp-it's/lr",
        "mlflow.parentRunId": "abc123",
    }
    assert cfg.tracking.run_name == "exp-it's/lr-trial-7"


def test_study_name() -> None:
    assert study_name("baseline", "rank") == "baseline-rank"
    assert study_name("baseline", None) == "baseline-sweep"
