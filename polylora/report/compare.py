"""``polylora compare``: groups of finished MLflow runs against a baseline, with statistics
a reviewer would accept.

Long module (~850 lines): one CLI report; its split into selection, statistics table and
rendering is the redesign's next step.

Pipeline: select the FINISHED runs of an experiment (optionally an MLflow filter), group them
by a tag (``polylora.group``: one group = one config over several seeds), then:

* every group × metric: the mean over seeds with a **t-interval** (and a statement when there
  are too few seeds for an interval to be informative);
* every other group vs the baseline (:mod:`polylora.report.analysis`): **Δ in native units
  with its CI** as the effect, from the crossed seeds × prompts random-effects model where
  the arms share seeds and per-prompt scores exist (else a paired t over seeds, else Welch);
  the **primary endpoint** declared in the runs' config (``compare.primary`` + direction)
  decides the verdict; secondaries form one **Holm** family behind it (serial gatekeeping),
  duplicates and degenerate metrics excluded with the reason; **non-inferiority** at
  ``compare.noninferiority`` margins; the **MDE** at the configured power; sensitivity
  analyses (paired t over seeds with d_z, Wilcoxon over seed-averaged prompts with r);
* which checkpoint each group evaluated (``train.checkpoint``, the step).

The statistics are pure (:func:`compare_groups` on :class:`RunData`); :func:`run` is the MLflow
glue: it writes ``report.md``, ``summary.csv``, ``tests.csv`` and PNG plots to ``--out``,
prints the tables, and logs everything as a run named ``comparison`` tagged
``polylora.kind=comparison`` (which later selections skip).
"""

# Long module (~850 lines): the report's result types, their rendering and the MLflow glue
# (selection, CLI) belong together; the statistics live in report/analysis.py.
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from polylora import intervals
from polylora.errors import ConfigError, PolyloraError
from polylora.record import reader as mlruns
from polylora.report.analysis import Effect, Plan, analyse

__all__ = [
    "ComparisonResult",
    "GroupSummary",
    "Plan",
    "RunData",
    "add_arguments",
    "available_metrics",
    "choose_baseline",
    "compare_groups",
    "group_prompt_means",
    "resolve_metrics",
    "run",
]

QUALITY_PREFERENCE = ("accuracy", "pass@1", "rouge_l", "sample_accuracy",
                      "embedding_similarity", "bertscore_f1")
#: Metrics logged both as a training curve (by step) and once more by the final evaluation
#: (step 0, logged last): the final evaluation's value is the one compared.
FINAL_EVAL_CURVES = ("eval/loss", "eval/perplexity")
DIVERSITY_PREFERENCE = ("semantic_diversity", "distinct_2", "self_bleu", "distinct_1",
                        "distinct_3")


# --------------------------------------------------------------------------- data


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
    """Everything :func:`compare_groups` computed; renders as Markdown and CSV."""

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

    # ----------------------------------------------------------------- rendering

    def summary_markdown(self) -> str:
        """Metrics × groups: ``mean [t-interval]`` over seeds."""
        pct = f"{self.confidence:.0%}"
        head = ["metric"]
        for g in self.groups:
            mark = " (baseline)" if g == self.baseline and g != "baseline" else ""
            head.append(f"{g}{mark} (n={len(self.runs.get(g, []))})")
        lines = [f"Mean over seeds [{pct} t-interval over seeds]; ↑ higher is better, "
                 "↓ lower is better.", "", _md_row(head), _md_row(["---"] * len(head))]
        for m in self.metrics:
            cells = [f"{m} {'↑' if self.higher_is_better[m] else '↓'}"]
            for g in self.groups:
                s = self.summary(g, m)
                if s is None or s.n_runs == 0:
                    cells.append("–")
                    continue
                cell = f"{_num(s.mean)} [{_num(s.low)}, {_num(s.high)}]"
                if s.n_runs != len(self.runs.get(g, [])):
                    cell += f" (n={s.n_runs})"
                cells.append(cell)
            lines.append(_md_row(cells))
        small = sorted({s.note for s in self.summaries if s.note})
        if small:
            lines += ["", *(f"Note: {n}." for n in small)]
        return "\n".join(lines) + "\n"

    def plan_markdown(self) -> str:
        """The analysis plan and where it came from."""
        p = self.plan
        ni = ", ".join(f"{m} (margin {v:g})" for m, v in p.noninferiority.items()) or "none"
        src = {"config": "declared in the runs' config before they ran",
               "command line": "given on the command line after the runs (not pre-registered)",
               }.get(p.source, p.source)
        lines = [
            f"- **primary endpoint:** {p.primary or 'none declared'}"
            + (f", claimed to {p.direction}" if p.primary else "") + f" ({src})",
            f"- **non-inferiority:** {ni}; one-sided α = {p.alpha / 2:g} (the lower bound of "
            f"the {1 - p.alpha:.0%} CI against −margin)",
            f"- **secondaries:** {', '.join(p.secondary) if p.secondary else 'every other metric'}"
            f", Holm-adjusted as one family at α = {p.alpha:g}"
            + (", tested only if the primary is confirmed (serial gatekeeping)"
               if p.primary else ", exploratory (no primary endpoint declared)"),
            f"- **power:** MDE = the |Δ| a two-sided test at α = {p.alpha:g} detects with "
            f"{p.power:.0%} power, from this design's variance components",
        ]
        if self.excluded:
            lines.append("- **excluded from the family:** " + "; ".join(
                f"{m}: {why}" for m, why in self.excluded.items()))
        return "\n".join(lines) + "\n"

    def effects_markdown(self, roles: Sequence[str]) -> str:
        """Δ with CI, p, MDE and verdict for the effects of the given roles."""
        rows = [e for e in self.effects if e.role in roles]
        if not rows:
            return "None.\n"
        pct = f"{self.confidence:.0%}"
        head = ["group", "metric", f"Δ (cand − base) [{pct} CI]", "method", "seeds × prompts",
                "p", "p Holm", "MDE (80% power)" if self.plan.power == 0.8 else
                f"MDE ({self.plan.power:.0%} power)", "verdict"]
        lines = [_md_row(head), _md_row(["---"] * len(head))]
        for e in rows:
            arrow = "↑" if self.higher_is_better[e.metric] else "↓"
            lines.append(_md_row([
                e.group, f"{e.metric} {arrow}",
                f"{_signed(e.delta)} [{_signed(e.low)}, {_signed(e.high)}]", e.method,
                f"{e.n_seeds} × {e.n_prompts}" if e.n_prompts else f"{e.n_seeds} seeds",
                _p(e.pvalue), _p(e.p_holm), f"±{_num(e.mde)}" if math.isfinite(e.mde) else "–",
                f"**{e.verdict}**" if e.verdict else "–",
            ]))
        return "\n".join(lines) + "\n"

    def power_sentences(self) -> list[str]:
        """'This design can detect ...' for the primary endpoint (the MDE), one per group."""
        out = []
        for e in self.effects:
            if e.role == "primary" and math.isfinite(e.mde):
                design = (f"{e.n_seeds} seeds × {e.n_prompts} prompts" if e.n_prompts
                          else f"{e.n_seeds} seeds")
                out.append(f"This design ({e.group} vs {self.baseline}, {design}) can detect "
                           f"|Δ| ≥ {e.mde:.3f} {e.metric} with {self.plan.power:.0%} power at "
                           f"two-sided α = {self.plan.alpha:g}; `polylora plan` sizes a design "
                           "for a smaller effect.")
        return [*out, ""] if out else []

    def sensitivity_markdown(self) -> str:
        """Paired t over seeds (d_z) and Wilcoxon over seed-averaged prompts (r)."""
        rows = [e for e in self.effects if e.role != "excluded"]
        if not rows:
            return "None.\n"
        head = ["group", "metric", "paired t over seeds: Δ [CI], p", "d_z",
                "Wilcoxon (prompts, seeds fixed): p", "rank-biserial r"]
        lines = [_md_row(head), _md_row(["---"] * len(head))]
        for e in rows:
            t = e.seed_test
            lines.append(_md_row([
                e.group, e.metric,
                f"{_signed(t.delta)} [{_signed(t.low)}, {_signed(t.high)}], p = {_p(t.pvalue)}"
                f" (n = {len(t.seeds)})" if t else "– (no shared seeds)",
                _signed(t.d_z) if t else "–", _p(e.wilcoxon_p), _signed(e.rank_biserial),
            ]))
        return "\n".join(lines) + "\n"

    def checkpoints_markdown(self) -> str:
        """Which step of each run was evaluated."""
        lines = [_md_row(["group", "checkpoint", "evaluated step / steps trained"]),
                 _md_row(["---"] * 3)]
        for g in self.groups:
            rs = self.runs.get(g, [])
            kinds = sorted({r.checkpoint or "unrecorded" for r in rs})
            steps = ", ".join(
                f"{_int(r.evaluated_step)}/{_int(r.steps)}" for r in rs) or "–"
            lines.append(_md_row([g, ", ".join(kinds), steps]))
        return "\n".join(lines) + "\n"

    def runs_markdown(self) -> str:
        """The run ids used, per group."""
        lines = [_md_row(["group", "run id", "run name", "seed"]), _md_row(["---"] * 4)]
        for g in self.groups:
            for r in self.runs.get(g, []):
                lines.append(_md_row([g, f"`{r.run_id}`", r.name or "", r.seed or ""]))
        return "\n".join(lines) + "\n"

    def verdict_markdown(self) -> str:
        """Primary and non-inferiority tables (what the command prints)."""
        return (self.effects_markdown(["primary"]) + "\n"
                + self.effects_markdown(["non-inferiority"]))

    def to_markdown(
        self,
        title: str = "Comparison",
        context: Mapping[str, str] | None = None,
        plots: Mapping[str, str] | None = None,
    ) -> str:
        """The full report."""
        out = [f"# {title}", ""]
        for key, value in (context or {}).items():
            out.append(f"- **{key}:** {value}")
        out += [
            f"- **baseline:** {self.baseline}",
            "- **sign:** Δ = candidate − baseline in the metric's own units (↑: higher is "
            "better, ↓: lower is better)",
            "",
            "## Analysis plan", "", self.plan_markdown(),
            "## Primary endpoint", "", self.effects_markdown(["primary"]),
            *self.power_sentences(),
            "## Non-inferiority", "", self.effects_markdown(["non-inferiority"]),
            "## Secondary endpoints", "", self.effects_markdown(["secondary"]),
            "## Excluded metrics", "", self.effects_markdown(["excluded"]),
            "## Groups × metrics", "", self.summary_markdown(),
            "## Sensitivity analyses", "",
            "The paired t over seeds uses one number per seed (d_z is its standardized effect);"
            " the Wilcoxon over seed-averaged prompts treats the seeds as fixed, so it "
            "overstates certainty when seeds differ (r is its rank-biserial effect).", "",
            self.sensitivity_markdown(),
            "## Evaluated checkpoints", "", self.checkpoints_markdown(),
        ]
        if plots:
            out += ["## Plots", ""]
            out += [f"![{name}]({file})" for name, file in plots.items()]
            out.append("")
        out += ["## Runs used", "", self.runs_markdown()]
        if self.notes:
            out += ["## Notes", "", *(f"- {n}" for n in self.notes), ""]
        return "\n".join(out)

    def write_csv(self, folder: str | Path) -> tuple[Path, Path]:
        """``summary.csv`` (groups × metrics with CI) and ``tests.csv`` (one row per effect)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary_path = folder / "summary.csv"
        with summary_path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["group", "metric", "higher_is_better", "n_runs", "mean", "ci_low",
                        "ci_high", "ci_method", "n_prompts", "is_baseline"])
            for s in self.summaries:
                w.writerow([s.group, s.metric, self.higher_is_better[s.metric], s.n_runs,
                            s.mean, s.low, s.high, "t over seeds", s.n_prompts,
                            s.group == self.baseline])
        tests_path = folder / "tests.csv"
        with tests_path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["group", "metric", "role", "method", "n_seeds", "n_prompts", "delta",
                        "ci_low", "ci_high", "se", "df", "p", "p_holm", "mde", "verdict",
                        "reason", "ni_margin", "ni_p", "seed_delta", "seed_ci_low",
                        "seed_ci_high", "seed_p", "seed_d_z", "wilcoxon_p", "rank_biserial",
                        "var_seed", "var_prompt", "var_residual"])
            for e in self.effects:
                t, vc = e.seed_test, e.components
                w.writerow([
                    e.group, e.metric, e.role, e.method, e.n_seeds, e.n_prompts, e.delta,
                    e.low, e.high, e.se, e.df, e.pvalue, e.p_holm, e.mde, e.verdict, e.reason,
                    e.ni.margin if e.ni else "", e.ni.pvalue if e.ni else "",
                    *((t.delta, t.low, t.high, t.pvalue, t.d_z) if t else ("",) * 5),
                    e.wilcoxon_p, e.rank_biserial,
                    *((vc.seed, vc.prompt, vc.residual) if vc else ("",) * 3),
                ])
        return summary_path, tests_path


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _int(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else str(int(x))


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.3f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _signed(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return f"{x:+.3f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:.2e}" if x < 1e-4 else f"{x:.4f}"


# --------------------------------------------------------------------------- statistics


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


# --------------------------------------------------------------------------- MLflow glue


def choose_baseline(groups: Mapping[str, Sequence[mlruns.RunInfo]], requested: str | None) -> str:
    """``requested`` if it is a group; else the group named ``baseline``, else the only group
    named ``baseline*``, else the only group whose runs use the CE objective."""
    names = sorted(groups)
    if requested:
        if requested not in groups:
            raise PolyloraError(
                f"--baseline {requested!r} is not a group; groups: {', '.join(names)}"
            )
        return requested
    if "baseline" in groups:
        return "baseline"
    prefixed = [g for g in names if g.lower().startswith("baseline")]
    if len(prefixed) == 1:
        return prefixed[0]
    ce = [g for g in names if all(mlruns.objective_kind(r) == "ce" for r in groups[g])]
    if len(prefixed) > 1:
        raise PolyloraError(
            f"several baseline groups ({', '.join(prefixed)}); pick one with --baseline"
        )
    if len(ce) == 1:
        return ce[0]
    if len(names) == 1:
        return names[0]
    raise PolyloraError(
        "cannot tell which group is the baseline (none is named baseline*, "
        f"{len(ce)} use the CE objective); pass --baseline, one of: {', '.join(names)}"
    )


def collect_runs(
    client: Any,
    selected: Mapping[str, Sequence[mlruns.RunInfo]],
    metrics: Sequence[str],
    curves: bool = True,
) -> tuple[list[RunData], list[str]]:
    """:class:`RunData` for the grouped runs: final metrics, per-prompt scores of ``metrics``,
    train/eval loss curves. Also returns the ids of runs without a generations artifact."""
    out: list[RunData] = []
    without: list[str] = []
    for group, members in selected.items():
        for info in members:
            rows = mlruns.load_generations(client, info.run_id)
            if rows is None:
                without.append(info.run_id)
            per_prompt = mlruns.per_prompt_scores(rows or [], metrics)
            final = mlruns.eval_metrics(info)
            for key in FINAL_EVAL_CURVES:  # also training curves: take the last logged value
                if key in info.metrics:
                    value = mlruns.final_value(client, info.run_id, key)
                    if value is not None and math.isfinite(value):
                        final[mlruns.canonical_metric(key)] = value
            data = RunData(info.run_id, group, final, per_prompt, seed=info.seed, name=info.name,
                           checkpoint=info.tags.get("polylora.checkpoint"),
                           evaluated_step=info.metrics.get("train/evaluated_step",
                                                           info.metrics.get("train/steps")),
                           steps=info.metrics.get("train/steps"))
            if curves:
                for key in ("train/loss", "eval/loss"):
                    if key in info.metrics:
                        data.curves[key] = mlruns.metric_history(client, info.run_id, key)
            out.append(data)
    return out, without


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
    from polylora import plots
    from polylora.errors import DataError
    from polylora.metrics.registry import get_metric

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
    loss = {g: [(r.curves.get("train/loss", []), r.curves.get("eval/loss", []))
                for r in result.runs[g]] for g in result.groups}
    try:
        plots.loss_curves(loss, out / "loss_curves.png")
        made["train and eval loss"] = "loss_curves.png"
    except DataError:
        notes.append("no train/loss or eval/loss curves: loss plot skipped")
    return made, notes


def log_comparison(
    client: Any, experiment_id: str, out: Path, result: ComparisonResult,
    params: Mapping[str, str], report: str,
) -> str:
    """Log ``out`` as a FINISHED run named ``comparison`` tagged ``polylora.kind=comparison``."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.time import get_current_time_millis

    n_runs = sum(len(v) for v in result.runs.values())
    tags = {
        mlruns.KIND_TAG: mlruns.COMPARISON_KIND,
        "polylora.baseline": result.baseline,
        "polylora.compared_groups": ",".join(result.groups)[:4000],
        "mlflow.note.content": report[:4000],
    }
    created = client.create_run(experiment_id, run_name="comparison", tags=tags)
    run_id = created.info.run_id
    try:
        now = get_current_time_millis()
        client.log_batch(
            run_id,
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            metrics=[Metric("compare/n_runs", float(n_runs), now, 0),
                     Metric("compare/n_groups", float(len(result.groups)), now, 0)],
            tags=[RunTag("polylora.compared_runs",
                         ",".join(r.run_id for g in result.groups for r in result.runs[g])[:4000])],
        )
        client.log_artifacts(run_id, str(out))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def resolve_plan(infos: Sequence[mlruns.RunInfo],
                 args: argparse.Namespace) -> tuple[Plan, list[str]]:
    """The plan the runs logged (they must agree), with command-line overrides applied."""
    notes: list[str] = []
    logged = {}
    for r in infos:
        p = Plan.from_params(r.params)
        if p is not None:
            logged[r.run_id] = p
    plans = {(p.primary, p.direction, tuple(sorted(p.noninferiority.items())))
             for p in logged.values()}
    plan = Plan()
    if len(plans) > 1:
        raise PolyloraError(
            "the selected runs declared different analysis plans (compare.primary/direction/"
            f"noninferiority: {sorted(plans, key=str)}); select runs of one plan with --filter, "
            "or pass --primary and --noninferiority"
        )
    if logged:
        plan = next(iter(logged.values()))
    overrides: dict[str, Any] = {}
    if getattr(args, "primary", None):
        overrides["primary"] = mlruns.canonical_metric(args.primary)
    if getattr(args, "direction", None):
        overrides["direction"] = args.direction
    if getattr(args, "noninferiority", None):
        margins = {}
        for item in args.noninferiority:
            name, _, value = item.partition("=")
            try:
                margins[mlruns.canonical_metric(name.strip())] = float(value)
            except ValueError:
                raise PolyloraError(f"--noninferiority {item!r}: use METRIC=MARGIN, e.g. "
                                    "pass@1=0.03") from None
            if not margins[mlruns.canonical_metric(name.strip())] > 0:
                raise PolyloraError(f"--noninferiority {item!r}: the margin must be > 0")
        overrides["noninferiority"] = margins
    for key in ("alpha", "power"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    changed = {k for k, v in overrides.items() if getattr(plan, k) != v}
    if changed & {"primary", "direction", "noninferiority"}:
        overrides["source"] = "command line"
        if logged:
            notes.append("the command line changed the analysis plan the runs declared ("
                         + ", ".join(sorted(changed)) + "): the report marks it post hoc")
    plan = replace(plan, **overrides)
    if not 0 < plan.alpha < 0.5 or not plan.alpha < plan.power < 1:
        raise PolyloraError(f"need 0 < --alpha < 0.5 and alpha < --power < 1, got "
                            f"{plan.alpha}, {plan.power}")
    return plan, notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``polylora compare`` options."""
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--group-by", default=mlruns.GROUP_TAG,
                        help="tag (or params.<key>) whose value groups runs (default: %(default)s)")
    parser.add_argument("--filter", default=None,
                        help="MLflow filter string, e.g. \"tags.polylora.experiment = 'x'\"")
    parser.add_argument("--baseline", default=None,
                        help="baseline group (default: 'baseline', baseline*, or the CE group)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metrics (default: every eval metric logged)")
    parser.add_argument("--primary", default=None,
                        help="primary endpoint, overriding the runs' compare.primary (the report "
                             "then says it was not declared before the runs)")
    parser.add_argument("--direction", choices=("increase", "decrease"), default=None,
                        help="what the candidate is claimed to do to the primary endpoint")
    parser.add_argument("--noninferiority", action="append", default=None,
                        metavar="METRIC=MARGIN",
                        help="non-inferiority margin, e.g. pass@1=0.03 (repeatable; overrides "
                             "the runs' compare.noninferiority)")
    parser.add_argument("--alpha", type=float, default=None, help="test level (default 0.05)")
    parser.add_argument("--power", type=float, default=None,
                        help="power of the MDE (default 0.8)")
    parser.add_argument("--quality-metric", default=None, help="y axis of the scatter plot")
    parser.add_argument("--diversity-metric", default=None, help="x axis of the scatter plot")
    parser.add_argument("--out", default=None,
                        help="output folder (default: reports/compare-<timestamp>)")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log the comparison as an MLflow run")


def run(args: argparse.Namespace) -> int:
    """Select, group, compare, write the report and plots, print the tables, log to MLflow."""
    client = mlruns.get_client(args.tracking_uri)
    exp_id = mlruns.experiment_id(client, args.experiment)
    selected = mlruns.select_runs(client, args.experiment, args.filter)
    where = f"--filter {args.filter!r}" if args.filter else "(no --filter)"
    if not selected:
        raise PolyloraError(
            f"no FINISHED runs in experiment {args.experiment!r} match {where} "
            "(comparison runs are never selected)"
        )
    grouped, missing = mlruns.group_runs(selected, args.group_by)
    if not grouped:
        raise PolyloraError(
            f"none of the {len(selected)} FINISHED runs in experiment {args.experiment!r} "
            f"matching {where} has {args.group_by!r} to group by; pass --group-by"
        )
    baseline = choose_baseline(grouped, args.baseline)
    infos = [r for members in grouped.values() for r in members]
    logged = sorted({m for r in infos for m in mlruns.eval_metrics(r)})
    available = available_metrics([RunData(r.run_id, "", mlruns.eval_metrics(r)) for r in infos])
    requested = [m for m in (args.metrics or "").split(",") if m.strip()]
    try:
        metrics = resolve_metrics(requested, available)
    except PolyloraError as exc:
        if not available and logged:
            raise PolyloraError(f"{exc} (logged: {', '.join(logged)})") from None
        raise
    for extra in (args.quality_metric, args.diversity_metric):
        if extra:
            resolve_metrics([extra], available)
    plan, plan_notes = resolve_plan(infos, args)
    data, without = collect_runs(client, grouped, metrics)
    result = compare_groups(data, baseline, metrics, plan=plan)
    result.notes.extend(plan_notes)
    if not args.baseline and baseline != "baseline":
        result.notes.insert(0, f"baseline chosen automatically: {baseline!r} (named baseline*, "
                               "or the only CE group); pass --baseline to pick another")
    if missing:
        result.notes.append(
            f"{len(missing)} run(s) without {args.group_by!r} skipped: "
            + ", ".join(r.run_id for r in missing[:10]) + (" ..." if len(missing) > 10 else "")
        )
    if without:
        result.notes.append(
            f"{len(without)} run(s) have no {mlruns.GENERATIONS_ARTIFACT}: "
            + ", ".join(without[:10]) + (" ..." if len(without) > 10 else "")
        )

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("reports") / f"compare-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    plots_made, plot_notes = make_plots(
        result, out,
        quality=mlruns.canonical_metric(args.quality_metric) if args.quality_metric else None,
        diversity=mlruns.canonical_metric(args.diversity_metric) if args.diversity_metric else None,
    )
    result.notes.extend(plot_notes)
    context = {
        "experiment": args.experiment,
        "tracking URI": client.tracking_uri,
        "filter": args.filter or "none",
        "grouped by": args.group_by,
        "runs": f"{len(data)} FINISHED runs in {len(result.groups)} groups",
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    report = result.to_markdown(f"Comparison: {args.experiment}", context, plots_made)
    (out / "report.md").write_text(report, encoding="utf-8")
    result.write_csv(out)

    print(f"# Comparison: {args.experiment} (baseline: {baseline})\n")
    print(result.summary_markdown())
    print(result.verdict_markdown())
    for note in result.notes:
        print(f"note: {note}")
    print(f"\nreport: {out / 'report.md'} (+ summary.csv, tests.csv, "
          f"{', '.join(plots_made.values()) or 'no plots'})")
    if not args.no_log:
        params = {
            "experiment": args.experiment, "group_by": args.group_by, "baseline": baseline,
            "filter": args.filter or "", "metrics": ",".join(metrics),
            "primary": plan.primary or "", "direction": plan.direction,
            "plan_source": plan.source,
        }
        run_id = log_comparison(client, exp_id, out, result, params, report)
        print(f"logged comparison run {run_id} (tag {mlruns.KIND_TAG}={mlruns.COMPARISON_KIND})")
    sys.stdout.flush()
    return 0
