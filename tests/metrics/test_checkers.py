"""Heuristic checker rules and the checker factory."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import jail_or_skip

from polylora.data.checking import Checker
from polylora.data.example import Example
from polylora.errors import ConfigError
from polylora.metrics.checkers import (
    HeuristicChecker,
    build_checker,
    checker_types,
    register_checker_type,
    repeated_ngram_fraction,
)

EX = Example(id="e1", prompt="Describe a cat.", response="A cat is a small furry animal.")


def test_conforms_to_checker_protocol() -> None:
    assert isinstance(HeuristicChecker(min_words=1), Checker)


def test_word_limits() -> None:
    checker = HeuristicChecker(min_words=2, max_words=4)
    assert checker(EX, "one two").correct
    assert not checker(EX, "one").correct
    too_long = checker(EX, "one two three four five")
    assert not too_long.correct
    assert too_long.details == {"rule/min_words": 1.0, "rule/max_words": 0.0}


def test_repetition_rule() -> None:
    # trigrams of "a b c a b c": abc bca cab abc → 1 repeat of 4
    assert repeated_ngram_fraction("a b c a b c", 3) == pytest.approx(1 / 4)
    assert repeated_ngram_fraction("too short", 3) == 0.0
    assert not HeuristicChecker(no_repetition=True)(EX, "a b c a b c").correct
    assert HeuristicChecker(no_repetition=True)(EX, "a b c d e f").correct
    assert HeuristicChecker(max_repeated_ngram_fraction=0.3)(EX, "a b c a b c").correct
    result = HeuristicChecker(max_repeated_ngram_fraction=0.2)(EX, "A b c a B c")
    assert not result.correct and result.details == {"rule/repetition": 0.0}


def test_substring_rules_case_insensitive_by_default() -> None:
    checker = HeuristicChecker(must_contain=["cat", "fur"], must_not_contain=["dog"])
    assert checker(EX, "The CAT has Fur.").correct
    missing = checker(EX, "The cat is bald.")
    assert not missing.correct and missing.details["rule/must_contain"] == 0.0
    forbidden = checker(EX, "A cat with fur chased a dog.")
    assert not forbidden.correct and forbidden.details["rule/must_not_contain"] == 0.0
    assert not HeuristicChecker(must_contain=["Cat"], case_sensitive=True)(EX, "cat").correct


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "no rules"),
        ({"min_words": 5, "max_words": 2}, "min_words=5 > max_words=2"),
        ({"max_repeated_ngram_fraction": 1.5}, r"in \[0, 1\]"),
        ({"min_words": -1}, "≥ 0"),
        ({"must_contain": "cat"}, "list of strings"),
    ],
)
def test_invalid_configuration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HeuristicChecker(**kwargs)


def test_build_heuristic_from_config() -> None:
    checker = build_checker({"type": "heuristic", "min_words": 2, "must_contain": ("cat",)})
    assert isinstance(checker, HeuristicChecker)
    assert checker(EX, "a cat").correct and not checker(EX, "a dog").correct


def test_build_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown checker type 'regex'.*heuristic, humaneval"):
        build_checker({"type": "regex"})
    with pytest.raises(ConfigError, match=r"unknown option.*min_word.*valid options"):
        build_checker({"type": "heuristic", "min_word": 3})


def test_build_humaneval_requires_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"eval\.allow_code_execution=true"):
        build_checker({"type": "humaneval"})
    jail_or_skip()
    checker = build_checker({"type": "humaneval", "timeout": 2}, allow_code_execution=True)
    assert checker.name == "humaneval"
    assert build_checker({"type": "humaneval", "allow_code_execution": True}).name == "humaneval"


def test_register_checker_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from polylora.metrics import checkers

    monkeypatch.setattr(checkers, "_FACTORIES", dict(checkers._FACTORIES))

    def exact(answer: str) -> Checker:
        return HeuristicChecker(must_contain=[answer])

    register_checker_type("exact", exact)
    assert "exact" in checker_types()
    assert build_checker({"type": "exact", "answer": "x"})(EX, "x").correct
    with pytest.raises(ValueError):
        register_checker_type("exact", HeuristicChecker)
