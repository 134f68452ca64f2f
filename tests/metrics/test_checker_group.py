"""The `checker` config group: every option composes into data.checker and scores a hand-made
case whose answer is known; data picks its default checker, checker=... on the command line
wins; humaneval runs real HumanEval code only with the opt-in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from polylora.data.example import Example
from polylora.errors import ConfigError
from polylora.metrics.checkers import checker_from_config

JSONL = ["data=jsonl", "data.path=unused.jsonl"]


def checker_for(compose_cfg: Callable[..., Any], *overrides: str) -> Any:
    cfg = compose_cfg(list(overrides))
    return checker_from_config(cfg.data.checker, cfg.eval.allow_code_execution), cfg


def test_data_picks_its_checker_and_the_command_line_wins(compose_cfg: Callable[..., Any]) -> None:
    assert compose_cfg([]).data.checker._target_ == "polylora.data.words.WordChecker"
    assert compose_cfg(["data=words_small"]).data.checker._target_.endswith("WordChecker")
    assert compose_cfg(["data=triage"]).data.checker._target_.endswith("FieldChecker")
    assert compose_cfg(JSONL).data.checker is None
    assert compose_cfg(["data=triage", "checker=none"]).data.checker is None
    heuristic = compose_cfg(["data=words", "checker=heuristic"]).data.checker
    assert heuristic._target_.endswith("HeuristicChecker")
    assert compose_cfg(["data=humaneval"]).data.checker._target_.endswith("HumanEvalChecker")


def test_none(compose_cfg: Callable[..., Any]) -> None:
    checker, _ = checker_for(compose_cfg, *JSONL, "checker=none")
    assert checker is None


def test_words(compose_cfg: Callable[..., Any]) -> None:
    checker, _ = checker_for(compose_cfg, *JSONL, "checker=words")
    ex = Example(id="w", prompt="A word starting with 'b'.", response="bread",
                 fields={"start": "b"})
    assert checker(ex, "bread").correct
    assert not checker(ex, "apple").correct


def test_fields_needs_field_names_then_scores_each(compose_cfg: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match=r"data\.checker\.field_names=<value>"):
        checker_for(compose_cfg, *JSONL, "checker=fields")
    checker, _ = checker_for(compose_cfg, *JSONL, "checker=fields",
                             "data.checker.field_names=[severity,component]")
    ex = Example(id="f", prompt="Triage.", response="severity: high\ncomponent: ui")
    both = checker(ex, '{"severity": "high", "component": "ui"}')
    assert both.correct and both.details["field_acc/severity"] == 1.0
    one = checker(ex, "severity: high\ncomponent: db")
    assert not one.correct and one.details["field_acc/component"] == 0.0


def test_heuristic_defaults_and_overrides(compose_cfg: Callable[..., Any]) -> None:
    checker, _ = checker_for(compose_cfg, *JSONL, "checker=heuristic",
                             "data.checker.must_not_contain=[as an ai]")
    ex = Example(id="h", prompt="How was your day?", response="Quiet, thanks for asking.")
    assert checker(ex, "Quiet, but I finished the book I started last week.").correct
    assert not checker(ex, "Fine.").correct  # under min_words
    assert not checker(ex, "As an AI I do not have days, but thanks.").correct
    assert not checker(ex, "good day " * 10).correct  # repeated trigrams


def test_humaneval_needs_the_opt_in(compose_cfg: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match=r"eval\.allow_code_execution=true"):
        checker_for(compose_cfg, "data=humaneval")


def test_humaneval_runs_a_real_problem(compose_cfg: Callable[..., Any]) -> None:
    from polylora.data.humaneval import HumanEvalSource

    checker, _ = checker_for(compose_cfg, "data=humaneval", "eval.allow_code_execution=true")
    (problem,) = HumanEvalSource(task_ids=["HumanEval/0"]).load()
    assert checker(problem, problem.response).correct  # the canonical solution
    assert not checker(problem, "    return False\n").correct
    # the checker's own opt-in works too
    own, _ = checker_for(compose_cfg, "data=humaneval", "data.checker.allow_code_execution=true")
    assert own(problem, problem.response).correct


def test_a_type_spec_builds_through_the_factory(compose_cfg: Callable[..., Any]) -> None:
    checker, _ = checker_for(compose_cfg, *JSONL, "data.checker={type:heuristic,min_words:2}")
    ex = Example(id="t", prompt="Say hi.", response="Hi there.")
    assert checker(ex, "hi there").correct and not checker(ex, "hi").correct
    with pytest.raises(ConfigError, match="unknown checker type 'nope'"):
        checker_for(compose_cfg, *JSONL, "data.checker={type:nope}")
