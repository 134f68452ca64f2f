"""Which metrics a run computes: checker metrics left out (and said so) on checker-less data,
an error when the user named them or optimizes one."""

from __future__ import annotations

import logging

import pytest

from polylora.errors import ConfigError
from polylora.metrics.selection import check_optimized_metrics, fit_eval_metrics

NAMES = ["test_loss", "accuracy", "pass@1", "pass@3", "self_bleu", "rouge_l"]


def test_with_a_checker_nothing_changes() -> None:
    assert fit_eval_metrics(NAMES, has_checker=True, explicit=True) == (NAMES, [])


def test_without_a_checker_the_defaults_adapt_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="polylora.metrics.selection"):
        kept, left = fit_eval_metrics(NAMES, has_checker=False, explicit=False, data_name="jsonl")
    assert kept == ["test_loss", "self_bleu", "rouge_l"]
    assert left == ["accuracy", "pass@1", "pass@3"]
    (record,) = caplog.records
    assert "left out accuracy, pass@1, pass@3" in record.getMessage()
    assert "checker=heuristic" in record.getMessage()


def test_presets_expand_before_leaving_out() -> None:
    kept, left = fit_eval_metrics(["quick"], has_checker=False, explicit=False)
    assert "pass@10" in left and "sample_accuracy" in left
    assert "semantic_diversity" in kept and not any(k.startswith("pass@") for k in kept)


def test_named_on_the_command_line_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"eval\.metrics has pass@3.*checker=heuristic"):
        fit_eval_metrics(["test_loss", "pass@3"], has_checker=False, explicit=True)
    with pytest.raises(ConfigError, match="bogus"):
        fit_eval_metrics(["bogus"], has_checker=True, explicit=False)


def test_an_optimized_checker_metric_needs_a_checker() -> None:
    check_optimized_metrics(["pass@10"], has_checker=True, data_name="words")
    check_optimized_metrics(["loss", "self_bleu"], has_checker=False, data_name="jsonl")
    with pytest.raises(ConfigError, match=r"optimized_metric=pass@10 needs a task checker"):
        check_optimized_metrics(["pass@10"], has_checker=False, data_name="jsonl")
