"""Registry: directions for sweeps, the builtin names, and errors for unknown names."""

from __future__ import annotations

import pytest

from polylora.errors import ConfigError
from polylora.metrics import registry
from polylora.metrics.registry import (
    MetricSpec,
    add_metric,
    get_metric,
    list_metrics,
    metric_direction,
    register_metric,
)


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("loss", "minimize"),
        ("eval/loss", "minimize"),
        ("perplexity", "minimize"),
        ("eval/perplexity", "minimize"),
        ("accuracy", "maximize"),
        ("eval/sample_accuracy", "maximize"),
        ("pass@1", "maximize"),
        ("eval/pass@10", "maximize"),
        ("eval/pass_at_10", "maximize"),  # MLflow's spelling (it rejects '@')
        ("eval/test_loss", "minimize"),
        ("eval/test_perplexity", "minimize"),
        ("pass@7", "maximize"),  # any k works
        ("judge_win_rate", "maximize"),
        ("self_bleu", "minimize"),
        ("eval/semantic_diversity", "maximize"),
        ("distinct_2", "maximize"),
        ("rouge_l", "maximize"),
        ("bertscore_f1", "maximize"),
        ("embedding_similarity", "maximize"),
    ],
)
def test_metric_direction(name: str, direction: str) -> None:
    assert metric_direction(name) == direction


def test_builtin_names_registered() -> None:
    expected = {
        "loss", "perplexity", "accuracy", "sample_accuracy", "pass@1", "pass@3", "pass@5",
        "pass@10", "judge_win_rate", "self_bleu", "distinct_1", "distinct_2", "distinct_3",
        "semantic_diversity", "rouge_1", "rouge_2", "rouge_l", "bertscore_f1",
        "embedding_similarity",
    }  # fmt: skip
    assert expected <= set(list_metrics())
    assert list_metrics() == sorted(list_metrics())


def test_model_and_judge_metrics_are_not_computed_in_suite() -> None:
    assert not get_metric("perplexity").computed_in_suite
    assert "model" in get_metric("perplexity").needs
    assert not get_metric("eval/loss").computed_in_suite
    assert not get_metric("judge_win_rate").computed_in_suite
    assert get_metric("pass@3").computed_in_suite
    assert get_metric("pass@3").needs == frozenset({"samples", "checker"})


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_metric("eval/bleu_score")
    message = str(info.value)
    assert "bleu_score" in message and "self_bleu" in message and "\n" not in message
    with pytest.raises(ConfigError):
        metric_direction("pass@0")


def test_register_metric_decorator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_metric("toxicity", higher_is_better=False, needs={"samples"}, description="t")
    def toxicity(samples: list[str]) -> float:
        return 0.0

    assert toxicity(["x"]) == 0.0  # the decorated function is returned unchanged
    assert metric_direction("eval/toxicity") == "minimize"
    # identical re-registration is a no-op, a conflicting one is an error
    add_metric(MetricSpec("toxicity", False, frozenset({"samples"}), "t"))
    with pytest.raises(ValueError, match="already registered"):
        add_metric(MetricSpec("toxicity", True, frozenset({"samples"}), "t"))


def test_spec_rejects_unknown_needs() -> None:
    with pytest.raises(ValueError, match="unknown needs"):
        MetricSpec("x", True, frozenset({"gpu"}), "bad")
