"""Preparing a job: the configured objective is built, its data check runs exactly once per run
(before any model loads, not again when training binds it), and a bad objective setting is
one readable ConfigError naming the key and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polylora.errors import ConfigError
from polylora.objectives.ce import CrossEntropyObjective
from polylora.objectives.grpo import GRPOObjective
from polylora.objectives.passk import PassKObjective
from polylora.objectives.polychromic import PolychromicObjective
from polylora.run.pipeline import execute
from polylora.train.preparation import prepare


@pytest.mark.parametrize(("choice", "cls"), [
    ("ce", CrossEntropyObjective),
    ("polychromic", PolychromicObjective),
    ("grpo", GRPOObjective),
    ("passk", PassKObjective),
])
def test_prepare_builds_the_configured_objective(
    compose_cfg: Callable[..., Any], choice: str, cls: type
) -> None:
    prepared = prepare(compose_cfg(["+experiment=smoke", f"objective={choice}"]))
    assert type(prepared.objective) is cls
    assert prepared.checker is not None and prepared.splits.train


def test_check_data_runs_once_per_run(
    compose_cfg: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole run (prepare, then training binds the objective) checks the data once."""
    calls: list[bool] = []
    original = PolychromicObjective.check_data

    def counted(self: PolychromicObjective, has_checker: bool) -> None:
        calls.append(has_checker)
        original(self, has_checker)

    monkeypatch.setattr(PolychromicObjective, "check_data", counted)
    cfg = compose_cfg(["+experiment=smoke_polychromic", "objective.diversity_metric=distinct",
                       "train.max_steps=2", "eval.enabled=false"],
                      output_dir=tmp_path / "run")
    result = execute(cfg)
    assert result.metrics["train/steps"] == 2
    assert calls == [True]


def test_a_data_check_failure_stops_preparation(compose_cfg: Callable[..., Any]) -> None:
    """GRPO's reward is the checker's verdict: data without a checker fails in prepare."""
    with pytest.raises(ConfigError, match="checker"):
        prepare(compose_cfg(["+experiment=smoke", "objective=grpo", "checker=none"]))


def test_a_bad_objective_setting_is_one_readable_error(compose_cfg: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        prepare(compose_cfg(["+experiment=smoke", "objective=grpo",
                             "objective.n_generations=20", "objective.temperature=0"]))
    message = str(caught.value)
    assert "objective.n_generations must be between 2 and 8, got 20" in message
    assert "objective.temperature must be > 0, got 0" in message
