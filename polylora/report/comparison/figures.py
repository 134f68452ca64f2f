"""The comparison's plots: pass@k per group, quality against diversity, train and eval loss
(drawn by :mod:`polylora.render.plots`)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from polylora.record import names
from polylora.report.comparison.compute import available_metrics
from polylora.report.comparison.model import ComparisonResult, RunData
from polylora.stats import intervals

__all__ = ["DIVERSITY_PREFERENCE", "QUALITY_PREFERENCE", "make_plots", "passk_series"]

#: The scatter plot's default axes: the first of these that a run logged.
QUALITY_PREFERENCE = ("accuracy", "pass@1", "rouge_l", "sample_accuracy",
                      "embedding_similarity", "bertscore_f1")
DIVERSITY_PREFERENCE = ("semantic_diversity", "distinct_2", "self_bleu", "distinct_1",
                        "distinct_3")


def passk_series(runs: Sequence[RunData]) -> dict[str, dict[int, tuple[float, float, float]]]:
    """``{group: {k: (mean, CI low, CI high)}}`` of every pass@k the runs logged (t-interval
    over seeds; a single seed has no interval and is drawn as a point)."""
    out: dict[str, dict[int, tuple[float, float, float]]] = {}
    by_group: dict[str, list[RunData]] = {}
    for r in runs:
        by_group.setdefault(r.group, []).append(r)
    for g, members in by_group.items():
        ks = sorted({int(m.split("@")[1]) for r in members for m in r.metrics
                     if re.fullmatch(r"pass@\d+", m)})
        for k in ks:
            values = [r.metrics[f"pass@{k}"] for r in members if f"pass@{k}" in r.metrics]
            ci = intervals.t_interval(values)
            low, high = (ci.low, ci.high) if math.isfinite(ci.low) else (ci.estimate,) * 2
            out.setdefault(g, {})[k] = (ci.estimate, low, high)
    return out



def _first_available(preferred: Sequence[str], available: Sequence[str]) -> str | None:
    return next((m for m in preferred if m in available), None)


def make_plots(
    result: ComparisonResult,
    out: Path,
    quality: str | None = None,
    diversity: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Write the comparison's PNGs into ``out``; returns ``{title: file name}`` and notes for
    plots that had nothing to show."""
    from polylora.errors import DataError
    from polylora.metrics.registry import get_metric
    from polylora.render import plots

    all_runs = [r for g in result.groups for r in result.runs[g]]
    made: dict[str, str] = {}
    notes: list[str] = []
    series = passk_series(all_runs)
    ordered = {g: series[g] for g in result.groups if g in series}
    if ordered:
        plots.passk_curves(ordered, out / "passk.png")
        made["pass@k per group"] = "passk.png"
    else:
        notes.append("no pass@k metrics: pass@k plot skipped")
    available = available_metrics(all_runs)
    q = quality or _first_available(QUALITY_PREFERENCE, available)
    d = diversity or _first_available(DIVERSITY_PREFERENCE, available)
    if q and d:
        pts = [(r.group, r.metrics[q], r.metrics[d]) for r in all_runs
               if q in r.metrics and d in r.metrics]
        try:
            plots.quality_diversity_scatter(pts, out / "quality_diversity.png", q, d,
                                            not get_metric(d).higher_is_better)
            made[f"{q} vs {d}"] = "quality_diversity.png"
        except DataError:
            notes.append(f"no run has both {q} and {d}: quality-diversity plot skipped")
    else:
        notes.append("no quality or diversity metric logged: quality-diversity plot skipped")
    loss = {g: [(r.curves.get(names.TRAIN_LOSS, []), r.curves.get(names.VAL_LOSS, []))
                for r in result.runs[g]] for g in result.groups}
    try:
        plots.loss_curves(loss, out / "loss_curves.png")
        made["train and eval loss"] = "loss_curves.png"
    except DataError:
        notes.append("no train/loss or eval/loss curves: loss plot skipped")
    return made, notes

