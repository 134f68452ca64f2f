"""The statistics of a comparison, pure (no MLflow, no files): every group × metric as a mean
over seeds with a t-interval, and every other group against the baseline through
:func:`polylora.stats.analysis.analyse` (effects, the plan's gatekeeping, exclusions)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from polylora.errors import ConfigError, PolyloraError
from polylora.record import reader as mlruns
from polylora.report.comparison.model import ComparisonResult, GroupSummary, RunData
from polylora.stats import intervals
from polylora.stats.analysis import Plan, analyse

__all__ = ["available_metrics", "compare_groups", "group_prompt_means", "resolve_metrics"]


def _metric_order(name: str) -> tuple[int, int, str]:
    match = re.fullmatch(r"pass@(\d+)", name)
    if match:
        return (0, int(match.group(1)), name)
    rank = {"accuracy": 1, "sample_accuracy": 2}.get(name, 3)
    return (rank, 0, name)


def available_metrics(runs: Iterable[RunData]) -> list[str]:
    """Metrics logged by at least one run (final or per prompt) that the registry knows."""
    from polylora.metrics.registry import get_metric

    names: set[str] = set()
    for r in runs:
        names.update(r.metrics)
        names.update(r.per_prompt)
    known = []
    for name in names:
        try:
            get_metric(name)
        except ConfigError:
            continue
        known.append(name)
    return sorted(known, key=_metric_order)


def resolve_metrics(requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """Registry names for ``requested`` (``eval/pass@10``, ``pass_at_10`` ... accepted), each
    checked against ``available``; None/empty means all of ``available``."""
    from polylora.metrics.registry import get_metric

    if not available:
        raise PolyloraError(
            "the selected runs logged no eval/<metric> known to the metric registry; "
            "were they evaluated (eval.enabled=true)?"
        )
    if not requested:
        return list(available)
    out: list[str] = []
    for raw in requested:
        name = mlruns.canonical_metric(raw.strip())
        if not name:
            continue
        if name not in available:
            raise PolyloraError(
                f"metric {raw.strip()!r} is not logged by any selected run; available: "
                f"{', '.join(available)}"
            )
        get_metric(name)  # direction must be known (available ones are)
        if name not in out:
            out.append(name)
    if not out:
        raise PolyloraError(f"--metrics names no metric; available: {', '.join(available)}")
    return out


def group_prompt_means(runs: Iterable[RunData], metric: str) -> dict[str, float]:
    """Each prompt's score averaged over the runs (seeds) that scored it."""
    acc: dict[str, list[float]] = {}
    for r in runs:
        for pid, value in r.per_prompt.get(metric, {}).items():
            acc.setdefault(pid, []).append(value)
    return {pid: float(np.mean(v)) for pid, v in sorted(acc.items())}


def compare_groups(
    runs: Sequence[RunData],
    baseline: str,
    metrics: Sequence[str] | None = None,
    plan: Plan | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> ComparisonResult:
    """Compare every group of ``runs`` with ``baseline`` on ``metrics`` (see the module doc).

    Pure: no MLflow, no files. Raises :class:`~polylora.errors.PolyloraError` for an unknown
    baseline, a metric no run has, or a declared primary endpoint the runs did not log.
    """
    from polylora.metrics.registry import get_metric

    if not runs:
        raise PolyloraError("compare_groups: no runs given")
    plan = plan or Plan()
    by_group: dict[str, list[RunData]] = {}
    for r in runs:
        by_group.setdefault(r.group, []).append(r)
    if baseline not in by_group:
        raise PolyloraError(
            f"baseline group {baseline!r} has no runs; groups: {', '.join(sorted(by_group))}"
        )
    groups = [baseline, *sorted(g for g in by_group if g != baseline)]
    available = available_metrics(runs)
    chosen = resolve_metrics(metrics, available)
    for declared in [plan.primary, *plan.noninferiority]:
        if declared and declared not in available:
            raise PolyloraError(
                f"compare.primary/noninferiority names {declared!r}, which the selected runs "
                f"did not log; logged: {', '.join(available)} (fix compare.* in the config, "
                "or pass --primary/--noninferiority)"
            )
        if declared and declared not in chosen:
            chosen.append(declared)
    hib = {m: get_metric(m).higher_is_better for m in chosen}
    notes: list[str] = []

    summaries: list[GroupSummary] = []
    for g in groups:
        for m in chosen:
            values = [r.metrics[m] for r in by_group[g]
                      if m in r.metrics and math.isfinite(r.metrics[m])]
            n_prompts = len(group_prompt_means(by_group[g], m))
            if not values:
                summaries.append(GroupSummary(g, m, 0, math.nan, math.nan, math.nan, n_prompts))
                continue
            ci = intervals.t_interval(values, confidence)
            summaries.append(GroupSummary(g, m, len(values), ci.estimate, ci.low, ci.high,
                                          n_prompts, ci.note))
    ordered = {g: by_group[g] for g in groups}
    effects, excluded = analyse(ordered, baseline, chosen, hib, plan, confidence)
    if len(groups) == 1:
        notes.append(f"only one group ({baseline}): nothing to test; use --group-by or --filter")
    elif not plan.primary:
        notes.append("no primary endpoint was declared (compare.primary): every test is "
                     "exploratory; declare one in the experiment's config before the runs")
    crossed = [e for e in effects if e.method.startswith("crossed")]
    if len(groups) > 1 and not crossed:
        notes.append("no per-prompt scores for seeds both arms share: Δ comes from seed-level "
                     "tests only (run both arms with the same seeds and keep "
                     "eval/generations.jsonl)")
    kinds = {r.checkpoint for r in runs if r.checkpoint}
    if len(kinds) > 1:
        notes.append(f"groups evaluated different checkpoints ({', '.join(sorted(kinds))}): "
                     "set the same train.checkpoint for every arm")
    return ComparisonResult(
        baseline=baseline, groups=groups, metrics=chosen, higher_is_better=hib,
        summaries=summaries, effects=effects, excluded=excluded, plan=plan,
        runs={g: by_group[g] for g in groups}, confidence=confidence, seed=seed, notes=notes,
    )

