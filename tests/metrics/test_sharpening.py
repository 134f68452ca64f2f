"""Sharpening is measured apart from accuracy: correct samples, distinct correct answers per
correct sample and the whole pass@k curve come with every checked evaluation, and answers are
compared as the task's checker reads them (the data source's ``normalize`` hook)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from polylora.data.example import Example
from polylora.data.words import WordChecker, WordTask
from polylora.metrics.passk import pass_at_k_per_prompt
from polylora.metrics.suite import PromptGenerations, score_generations


def word_prompt() -> Example:
    """A builtin word-task prompt and two of its correct answers."""
    return WordTask(n_examples=1, seed=0).load()[0]


def test_sharpening_metrics_and_the_pass_at_k_curve_come_with_checked_samples() -> None:
    example = word_prompt()
    right = example.response
    other = next((r for r in example.all_references if r.lower() != right.lower()), None)
    assert other is not None
    # 4 correct of 6; as the checker reads them: right, right, other, right → 2 distinct
    samples = [right, f"{right.upper()}.", other, "zzzqx", f"'{right}'", "qqq"]
    scores = score_generations([PromptGenerations(example, samples)], ["pass@1"],
                               checker=WordChecker(), normalize=WordTask.normalize,
                               show_progress=False)
    row = scores.per_prompt[0]
    assert [c.correct for c in scores.checks[0]] == [True, True, True, False, True, False]
    assert row["correct_samples"] == 4
    assert row["distinct_correct"] == 2
    assert row["distinct_per_correct"] == pytest.approx(0.5)
    flags = [c.correct for c in scores.checks[0]]
    for k in range(1, 7):  # the curve: every k up to the samples per prompt
        assert scores.aggregate[f"pass@{k}"] == pytest.approx(pass_at_k_per_prompt(flags, k))


def test_no_correct_sample_leaves_distinct_per_correct_undefined() -> None:
    example = word_prompt()
    scores = score_generations([PromptGenerations(example, ["zzzqx", "qqq"])], ["pass@1"],
                               checker=WordChecker(), show_progress=False)
    assert scores.per_prompt[0]["correct_samples"] == 0
    assert math.isnan(scores.per_prompt[0]["distinct_per_correct"])


def test_word_diversity_reads_answers_as_the_checker_does() -> None:
    """ "apple", "Apple." and "'apple'" are one answer to the checker, so to diversity too."""
    example = word_prompt()
    same = ["apple", "Apple.", "'apple'"]
    plain = score_generations([PromptGenerations(example, same)], ["distinct_1"],
                              show_progress=False)
    read = score_generations([PromptGenerations(example, same)], ["distinct_1"],
                             normalize=WordTask.normalize, show_progress=False)
    assert plain.aggregate["distinct_1"] == 1.0
    assert read.aggregate["distinct_1"] == pytest.approx(1 / 3)


def test_the_word_source_hands_its_normalize_to_evaluation(
    compose_cfg: Callable[..., Any],
) -> None:
    from polylora.train.preparation import prepare

    prep = prepare(compose_cfg(["+experiment=smoke"]))
    assert prep.normalize is not None and prep.normalize("  Apple. is red") == "apple"
