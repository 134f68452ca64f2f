"""``optimized_metric``: which split a metric is on; a search refuses the test split."""

from __future__ import annotations

from pathlib import Path

import pytest

from polylora.sweep.optimized_metric import check_search_metrics, metric_split, optimized_metrics


def test_search_on_a_test_metric_is_refused_and_named_with_its_fix() -> None:
    from polylora.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optimized_metric=val/pass@10 \(scored on"):
        check_search_metrics(["eval/pass@10"])
    with pytest.raises(ConfigError, match=r"\[val/loss,val/pass@10\]"):
        check_search_metrics(["eval/test_loss", "pass_at_10"])
    check_search_metrics(["eval/loss", "val/pass@10", "train/final_loss"])  # accepted
    assert [metric_split(m) for m in ("eval/loss", "val/accuracy", "eval/accuracy",
                                             "train/loss")] == [
        "validation", "validation", "test", "train"]


def test_default_optimized_metric_is_a_validation_metric(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg([], output_dir=tmp_path)
    assert [metric_split(m) for m in optimized_metrics(cfg.optimized_metric)] == [
        "validation"]
