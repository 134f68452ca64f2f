"""What a comparison reads and produces: one run's numbers (:class:`RunData`), a group's mean
with its interval (:class:`GroupSummary`) and the whole result (:class:`ComparisonResult`).
Plain data, no MLflow objects, so the statistics and the renderers stay pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from polylora.stats.analysis import Effect, Plan

__all__ = ["ComparisonResult", "GroupSummary", "RunData"]


@dataclass
class RunData:
    """One run as the statistics need it (no MLflow objects)."""

    run_id: str
    group: str
    metrics: dict[str, float]  # final eval metrics, registry names ("pass@10")
    per_prompt: dict[str, dict[str, float]] = field(default_factory=dict)  # metric → id → score
    seed: str | None = None
    name: str | None = None
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # "train/loss" → pts
    checkpoint: str | None = None  # train.checkpoint: final | best
    evaluated_step: float | None = None  # the step of the weights evaluated
    steps: float | None = None  # steps trained
    cost_usd: float | None = None  # run/cost_usd: compute + judge


@dataclass(frozen=True)
class GroupSummary:
    """Mean of a metric over a group's runs (seeds) with its t-interval."""

    group: str
    metric: str
    n_runs: int
    mean: float
    low: float
    high: float
    n_prompts: int  # prompts with per-prompt scores (seed-averaged), 0 if none
    note: str = ""


@dataclass
class ComparisonResult:
    """Everything :func:`~polylora.report.comparison.compute.compare_groups` computed;
    :mod:`~polylora.report.comparison.render` and :mod:`~polylora.report.comparison.csv_export`
    write it out."""

    baseline: str
    groups: list[str]  # baseline first
    metrics: list[str]
    higher_is_better: dict[str, bool]
    summaries: list[GroupSummary]
    effects: list[Effect]
    excluded: dict[str, str]
    plan: Plan
    runs: dict[str, list[RunData]]
    confidence: float = 0.95
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self, group: str, metric: str) -> GroupSummary | None:
        """The summary cell for ``(group, metric)``, if any run of the group has the metric."""
        return next((s for s in self.summaries if s.group == group and s.metric == metric), None)

    def effect(self, group: str, metric: str) -> Effect | None:
        """``group`` vs the baseline on ``metric``."""
        return next((e for e in self.effects if e.group == group and e.metric == metric), None)
