"""Tests for polylora.render.plots: every figure is a real, non-empty PNG."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from polylora.errors import DataError
from polylora.render import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 2000  # axes, labels and lines, not an empty canvas


def test_passk_curves(tmp_path: Path) -> None:
    series = {
        "baseline": {1: (0.2, 0.15, 0.25), 5: (0.4, 0.35, 0.45), 10: (0.5, 0.4, 0.6)},
        "polychromic_0.3": {1: (0.18, 0.1, 0.2), 5: (0.5, 0.45, 0.55), 10: (0.65, 0.6, 0.7)},
    }
    out = plots.passk_curves(series, tmp_path / "sub" / "passk.png")
    assert out == tmp_path / "sub" / "passk.png"
    assert_png(out)


def test_quality_diversity_scatter_skips_nan_runs(tmp_path: Path) -> None:
    pts = [("a", 0.5, 0.2), ("a", 0.55, 0.25), ("b", 0.45, 0.4), ("b", math.nan, 0.1)]
    assert_png(plots.quality_diversity_scatter(pts, tmp_path / "qd.png", "accuracy",
                                               "self_bleu", diversity_lower_is_better=True))
    with pytest.raises(DataError, match="no run has both"):
        plots.quality_diversity_scatter([("a", math.nan, 0.1)], tmp_path / "none.png")


def test_loss_curves(tmp_path: Path) -> None:
    train = [(s, 1.0 / (1 + s / 50)) for s in range(5, 201, 5)]
    evals = [(s, 0.1 + 1.0 / (1 + s / 60)) for s in range(50, 201, 50)]
    curves = {"baseline": [(train, evals), (train[:-3], evals[:-1])], "poly": [(train, [])]}
    assert_png(plots.loss_curves(curves, tmp_path / "loss.png"))
    with pytest.raises(DataError, match="no train/loss"):
        plots.loss_curves({"a": [([], [])]}, tmp_path / "empty.png")


def test_passk_plot_from_pipeline_metrics(tmp_path: Path) -> None:
    metrics = {
        "eval/pass@1": 0.3, "eval/pass@5": 0.55, "eval/pass_at_10": 0.7,
        "eval/pass@1_moe": 0.05, "eval/accuracy": 0.4, "eval/pass@3": math.nan,
    }
    out = plots.passk_plot(metrics, tmp_path / "p.png")
    assert_png(out)
    default = plots.passk_plot({"pass@1": 0.2, "pass@2": 0.3})
    assert default.name == "passk.png" and default.exists()
    assert_png(default)
    with pytest.raises(DataError, match="no pass@k metric among eval/accuracy"):
        plots.passk_plot({"eval/accuracy": 0.4})


def test_temperature_frontier(tmp_path: Path) -> None:
    points = {"CE continued": {0.7: (0.30, 0.50), 1.0: (0.25, 0.60), 1.3: (0.15, 0.62)},
              "polychromic": {1.0: (0.28, 0.66)}}
    assert_png(plots.temperature_frontier(points, tmp_path / "frontier.png"))
    with pytest.raises(DataError, match="no points"):
        plots.temperature_frontier({"a": {}}, tmp_path / "none.png")
