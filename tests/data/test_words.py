"""The builtin word task: deterministic, many correct answers, exact checker."""

from __future__ import annotations

from polylora.data.example import Example
from polylora.data.words import WordChecker, WordTask, accepted_words


def test_generation_is_deterministic_and_targets_are_valid() -> None:
    a = WordTask(n_examples=50, seed=3).load()
    b = WordTask(n_examples=50, seed=3).load()
    assert a == b
    assert len({e.id for e in a}) == 50
    checker = WordChecker()
    for e in a:
        assert e.fields["n_answers"] >= 20
        for ref in e.all_references:  # every reference answer is itself correct
            assert checker(e, ref).correct, (e.prompt, ref)


def test_different_seeds_differ() -> None:
    assert WordTask(n_examples=20, seed=1).load() != WordTask(n_examples=20, seed=2).load()


def test_checker_verdicts() -> None:
    ex = Example(id="x", prompt="p", response="bread", fields={"start": "b", "length": 5})
    check = WordChecker()
    assert check(ex, "bread").correct
    assert check(ex, '"Bread."').correct  # quotes, case, punctuation
    assert not check(ex, "brea").correct  # wrong length
    assert not check(ex, "apple").correct  # wrong start
    assert not check(ex, "bxqzt").correct  # not a word
    assert check(ex, "bxqzt").details == {"valid_word": 0.0, "meets_constraint": 1.0}
    assert not check(ex, "").correct
    ends = Example(id="y", prompt="p", response="bay", fields={"start": "b", "end": "y"})
    assert check(ends, "berry").correct
    assert not check(ends, "bread").correct
    assert "berry" in accepted_words()
