"""The builtin word task: deterministic, many correct answers, exact checker."""

from __future__ import annotations

import pytest

from polylora.data.example import Example
from polylora.data.words import (
    WordChecker,
    WordTask,
    accepted_words,
    common_words,
    is_inflection,
    lowercase_dictionary_words,
)
from polylora.errors import ConfigError


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


def test_inflections_of_dictionary_words_are_accepted() -> None:
    accepted = accepted_words()
    for word in ("years", "using", "called", "tried", "running", "friends"):
        assert word in accepted, word
    assert "viktor" not in accepted  # frequent, but a name and no inflection of a word
    dictionary = frozenset({"try", "run", "use", "stop"})
    assert is_inflection("tried", dictionary)
    assert is_inflection("running", dictionary)
    assert is_inflection("using", dictionary)
    assert is_inflection("stopped", dictionary)
    assert not is_inflection("trying", frozenset({"cat"}))
    assert not is_inflection("tries", frozenset())


def test_start_only_prompts() -> None:
    examples = WordTask(n_examples=30, seed=0, kinds=["start"], min_answers=50).load()
    checker = WordChecker()
    for e in examples:
        assert set(e.fields) == {"start", "n_answers"}
        assert "starts with" in e.prompt or "beginning with" in e.prompt or "starting" in e.prompt
        for ref in e.all_references:
            assert ref.startswith(e.fields["start"])
            assert checker(e, ref).correct
    # a start-only prompt accepts any English word with that first letter
    ex = Example(id="s", prompt="p", response="bread", fields={"start": "b"})
    assert checker(ex, "banana").correct
    assert not checker(ex, "apple").correct


def test_kinds_are_drawn_evenly() -> None:
    examples = WordTask(n_examples=300, seed=1, kinds=["start", "length", "end"]).load()
    counts = {"start": 0, "length": 0, "end": 0}
    for e in examples:
        kind = "length" if "length" in e.fields else "end" if "end" in e.fields else "start"
        counts[kind] += 1
    assert all(70 <= c <= 130 for c in counts.values()), counts


def test_common_word_targets() -> None:
    examples = WordTask(
        n_examples=60, seed=0, min_zipf=3.5, min_answers=50, kinds=["start", "length", "end"]
    ).load()
    common = common_words(3.5)
    lower = lowercase_dictionary_words()
    checker = WordChecker()
    for e in examples:
        assert e.fields["n_answers"] >= 50
        for ref in e.all_references:
            assert common[ref] >= 3.5, ref
            assert ref in lower or is_inflection(ref, lower), ref  # no proper nouns
            assert checker(e, ref).correct, (e.prompt, ref)
    # rare dictionary words never become targets
    rare = {r for e in WordTask(n_examples=60, seed=0, min_zipf=None).load()
            for r in e.all_references}
    assert rare - set(common), "min_zipf=None draws from the whole dictionary"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ["colour"]}, "data.source.kinds"),
        ({"kinds": []}, "data.source.kinds"),
        ({"kinds": ["start"], "min_answers": 100_000}, "min_answers"),
    ],
)
def test_invalid_task_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WordTask(n_examples=5, **kwargs).load()


def test_prompt_kind_reads_every_template_back() -> None:
    """The report splits prompts by kind from their text alone (generations.jsonl keeps no
    fields): every generated prompt maps back to the kind it was drawn as."""
    from polylora.data.words import CONSTRAINTS_OF_KIND, prompt_kind

    examples = WordTask(n_examples=300, seed=3).load()
    for e in examples:
        drawn = "length" if "length" in e.fields else "end" if "end" in e.fields else "start"
        assert prompt_kind(e.prompt) == drawn, e.prompt
    assert {CONSTRAINTS_OF_KIND[prompt_kind(e.prompt)] for e in examples} == {1, 2}
    assert prompt_kind("Name a fruit. Answer with the word only.") is None
    assert prompt_kind("Name an English word that starts with 'ab'. Answer with the word only.") \
        is None  # two letters: not a template of the task
