"""``polylora compare``: groups of finished MLflow runs against a baseline, with statistics.

Pipeline: select the FINISHED runs of an experiment (optionally an MLflow filter), group them
by a tag (``polylora.group``: one group = one config over several seeds), then for every group
and metric report the mean over seeds with a 95% bootstrap CI, and for every other group vs the
baseline:

* **Mann-Whitney U over per-prompt scores** (from each run's ``eval/generations.jsonl``; a
  prompt's score is first averaged over the group's seeds, so each prompt counts once);
* **Mann-Whitney U over seeds** (each run's final ``eval/<metric>``);
* **paired Wilcoxon signed-rank** over the prompts both groups were scored on (same ids);
* **Cohen's d** (independent; per prompt and per seed) and the paired **d_z**;
* **Bonferroni and Holm** adjusted p-values, each test kind corrected across its family of
  (group, metric) tests;
* seed 004's **verdict** (:func:`polylora.stats.success_verdict`): the primary test's adjusted
  p (``--correction``, default Holm) with Cohen's d, and the group's pass@10 gain for "strong".
  The primary test is the paired Wilcoxon when both groups were scored on the same prompts,
  else the per-prompt Mann-Whitney, else (no per-prompt scores) the per-seed one.

Directions come from the metric registry: for lower-is-better metrics (self-BLEU, loss,
perplexity) values are negated before Δ and d, so **positive always means "candidate better"**;
two-sided p-values do not depend on the sign.

The statistics are pure (:func:`compare_groups` on :class:`RunData`); :func:`run` is the MLflow
glue: it writes ``report.md``, ``summary.csv``, ``tests.csv`` and PNG plots to ``--out``,
prints the tables, and logs everything as a run named ``comparison`` tagged
``polylora.kind=comparison`` (which later selections skip).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from polylora import stats
from polylora.errors import ConfigError, PolyloraError
from polylora.report import runs as mlruns

__all__ = [
    "TEST_PAIRED",
    "TEST_PROMPTS",
    "TEST_SEEDS",
    "ComparisonResult",
    "GroupSummary",
    "RunData",
    "TestRow",
    "VerdictRow",
    "add_arguments",
    "available_metrics",
    "choose_baseline",
    "compare_groups",
    "group_prompt_means",
    "resolve_metrics",
    "run",
]

TEST_PROMPTS = "Mann-Whitney U (prompts)"
TEST_SEEDS = "Mann-Whitney U (seeds)"
TEST_PAIRED = "Wilcoxon signed-rank (paired prompts)"
_TEST_ORDER = (TEST_PAIRED, TEST_PROMPTS, TEST_SEEDS)
CORRECTIONS = ("holm", "bonferroni", "none")

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


@dataclass(frozen=True)
class GroupSummary:
    """Mean of a metric over a group's runs (seeds) with its bootstrap CI."""

    group: str
    metric: str
    n_runs: int
    mean: float
    low: float
    high: float
    n_prompts: int  # prompts with per-prompt scores (seed-averaged), 0 if none


@dataclass
class TestRow:
    """One significance test of a group against the baseline on one metric."""

    __test__ = False  # not a pytest class

    group: str
    metric: str
    test: str
    n_a: int
    n_b: int
    statistic: float
    pvalue: float
    effect_name: str  # "d" or "d_z"; positive = candidate better
    effect: float
    p_bonferroni: float = math.nan
    p_holm: float = math.nan


@dataclass(frozen=True)
class VerdictRow:
    """Seed 004's verdict for one (group, metric) against the baseline."""

    group: str
    metric: str
    delta: float  # mean over seeds, candidate − baseline, sign-flipped for lower-is-better
    rel_delta: float  # delta / |baseline mean|
    primary: str | None  # the test whose adjusted p decides
    pvalue: float
    p_adjusted: float
    d: float
    verdict: str


@dataclass
class ComparisonResult:
    """Everything :func:`compare_groups` computed; renders as Markdown and CSV."""

    baseline: str
    groups: list[str]  # baseline first
    metrics: list[str]
    higher_is_better: dict[str, bool]
    summaries: list[GroupSummary]
    tests: list[TestRow]
    verdicts: list[VerdictRow]
    pass10_gain: dict[str, float | None]
    runs: dict[str, list[RunData]]
    correction: str = "holm"
    seed: int = 0
    confidence: float = 0.95
    notes: list[str] = field(default_factory=list)

    def summary(self, group: str, metric: str) -> GroupSummary | None:
        """The summary cell for ``(group, metric)``, if any run of the group has the metric."""
        return next((s for s in self.summaries if s.group == group and s.metric == metric), None)

    def tests_for(self, group: str, metric: str) -> dict[str, TestRow]:
        """The tests of ``group`` vs the baseline on ``metric``, by test kind."""
        return {t.test: t for t in self.tests if t.group == group and t.metric == metric}

    def verdict(self, group: str, metric: str) -> VerdictRow | None:
        """The verdict row for ``(group, metric)``."""
        return next((v for v in self.verdicts if v.group == group and v.metric == metric), None)

    # ----------------------------------------------------------------- rendering

    def summary_markdown(self) -> str:
        """Metrics × groups: ``mean [CI low, CI high]`` over seeds."""
        pct = f"{self.confidence:.0%}"
        head = ["metric"]
        for g in self.groups:
            mark = " (baseline)" if g == self.baseline and g != "baseline" else ""
            head.append(f"{g}{mark} (n={len(self.runs.get(g, []))})")
        lines = [f"Mean over seeds [{pct} bootstrap CI]; ↑ higher is better, ↓ lower is better.",
                 "", _md_row(head), _md_row(["---"] * len(head))]
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
        return "\n".join(lines) + "\n"

    def verdict_markdown(self) -> str:
        """One row per (group, metric): Δ, primary test, adjusted p, d, verdict."""
        if not self.verdicts:
            return "No other group to compare with the baseline.\n"
        corr = {"holm": "Holm", "bonferroni": "Bonferroni", "none": "no"}[self.correction]
        head = ["group", "metric", "Δ vs baseline (better +)", "rel. Δ", "primary test", "p",
                f"p ({corr}-adjusted)", "Cohen's d (better +)", "verdict"]
        lines = [_md_row(head), _md_row(["---"] * len(head))]
        for v in self.verdicts:
            lines.append(_md_row([
                v.group, v.metric, _signed(v.delta), _pct(v.rel_delta), v.primary or "–",
                _p(v.pvalue), _p(v.p_adjusted), _signed(v.d), f"**{v.verdict}**",
            ]))
        gains = [f"{g}: {_pct(x)}" for g, x in self.pass10_gain.items() if x is not None]
        if gains:
            lines += ["", f"pass@10 gain over the baseline (strong needs > "
                          f"{stats.STRONG_PASS10_IMPROVEMENT:.0%}): {'; '.join(gains)}"]
        return "\n".join(lines) + "\n"

    def tests_markdown(self) -> str:
        """Every test with raw, Bonferroni- and Holm-adjusted p and its effect size."""
        if not self.tests:
            return "No tests (a single group).\n"
        head = ["group", "metric", "test", "n (base, cand)", "statistic", "p", "p Bonferroni",
                "p Holm", "effect (better +)"]
        lines = [_md_row(head), _md_row(["---"] * len(head))]
        for t in self.tests:
            lines.append(_md_row([
                t.group, t.metric, t.test, f"{t.n_a}, {t.n_b}", _num(t.statistic), _p(t.pvalue),
                _p(t.p_bonferroni), _p(t.p_holm), f"{t.effect_name} = {_signed(t.effect)}",
            ]))
        return "\n".join(lines) + "\n"

    def runs_markdown(self) -> str:
        """The run ids used, per group."""
        lines = [_md_row(["group", "run id", "run name", "seed"]), _md_row(["---"] * 4)]
        for g in self.groups:
            for r in self.runs.get(g, []):
                lines.append(_md_row([g, f"`{r.run_id}`", r.name or "", r.seed or ""]))
        return "\n".join(lines) + "\n"

    def to_markdown(
        self,
        title: str = "Comparison",
        context: Mapping[str, str] | None = None,
        plots: Mapping[str, str] | None = None,
    ) -> str:
        """The full report: selection, tables, tests, verdicts, run ids, notes, plots."""
        lower = [m for m in self.metrics if not self.higher_is_better[m]]
        out = [f"# {title}", ""]
        for key, value in (context or {}).items():
            out.append(f"- **{key}:** {value}")
        out += [
            f"- **baseline:** {self.baseline}",
            f"- **bootstrap:** {self.confidence:.0%} percentile CI over seeds, seed {self.seed}",
            f"- **verdict:** seed 004: success = adjusted p < {stats.MIN_PVALUE} and d > "
            f"{stats.MIN_EFFECT_SIZE}; strong = p < {stats.STRONG_PVALUE}, d > "
            f"{stats.STRONG_EFFECT_SIZE} and pass@10 gain > "
            f"{stats.STRONG_PASS10_IMPROVEMENT:.0%}",
            "- **sign:** Δ and effect sizes are positive when the candidate is better"
            + (f"; for lower-is-better metrics ({', '.join(lower)}) the values were negated "
               "first (sign flipped)" if lower else ""),
            "",
            "## Groups × metrics", "", self.summary_markdown(),
            "## Verdicts vs the baseline", "", self.verdict_markdown(),
            "## Significance tests", "",
            "Each test kind is corrected across its family of (group, metric) tests.", "",
            self.tests_markdown(),
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
        """``summary.csv`` (groups × metrics with CI) and ``tests.csv`` (+ verdicts)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary_path = folder / "summary.csv"
        with summary_path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["group", "metric", "higher_is_better", "n_runs", "mean", "ci_low",
                        "ci_high", "n_prompts", "is_baseline"])
            for s in self.summaries:
                w.writerow([s.group, s.metric, self.higher_is_better[s.metric], s.n_runs,
                            s.mean, s.low, s.high, s.n_prompts, s.group == self.baseline])
        tests_path = folder / "tests.csv"
        with tests_path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["group", "metric", "test", "n_baseline", "n_candidate", "statistic",
                        "p", "p_bonferroni", "p_holm", "effect_name", "effect", "primary",
                        "verdict"])
            for t in self.tests:
                v = self.verdict(t.group, t.metric)
                primary = v is not None and v.primary == t.test
                w.writerow([t.group, t.metric, t.test, t.n_a, t.n_b, t.statistic, t.pvalue,
                            t.p_bonferroni, t.p_holm, t.effect_name, t.effect, primary,
                            v.verdict if primary and v else ""])
        return summary_path, tests_path


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


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


def _pct(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "–"
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return f"{x:+.1%}"


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


def _safe(fn: Any, *args: Any) -> float:
    try:
        return float(fn(*args))
    except stats.StatsError:
        return math.nan


def _pass10_gain(base: Sequence[RunData], cand: Sequence[RunData]) -> float | None:
    a = [r.metrics["pass@10"] for r in base if "pass@10" in r.metrics]
    b = [r.metrics["pass@10"] for r in cand if "pass@10" in r.metrics]
    if not a or not b:
        return None
    ma, mb = float(np.mean(a)), float(np.mean(b))
    if ma == 0:
        return 0.0 if mb == 0 else math.inf
    return mb / ma - 1.0


def _min_mwu_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided exact Mann-Whitney p for samples of these sizes."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def compare_groups(
    runs: Sequence[RunData],
    baseline: str,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    correction: str = "holm",
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> ComparisonResult:
    """Compare every group of ``runs`` with ``baseline`` on ``metrics`` (see the module doc).

    Pure: no MLflow, no files. ``seed`` fixes the bootstrap, so equal inputs give equal CIs.
    Raises :class:`~polylora.errors.PolyloraError` for an unknown baseline or a metric no run
    has, :class:`~polylora.errors.ConfigError` for an unknown correction.
    """
    from polylora.metrics.registry import get_metric

    if correction not in CORRECTIONS:
        raise ConfigError(f"correction={correction!r}; use one of {', '.join(CORRECTIONS)}")
    if not runs:
        raise PolyloraError("compare_groups: no runs given")
    by_group: dict[str, list[RunData]] = {}
    for r in runs:
        by_group.setdefault(r.group, []).append(r)
    if baseline not in by_group:
        raise PolyloraError(
            f"baseline group {baseline!r} has no runs; groups: {', '.join(sorted(by_group))}"
        )
    groups = [baseline, *sorted(g for g in by_group if g != baseline)]
    chosen = resolve_metrics(metrics, available_metrics(runs))
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
            ci = stats.bootstrap_ci(values, confidence=confidence, n_resamples=n_resamples,
                                    seed=seed)
            summaries.append(GroupSummary(g, m, len(values), ci.estimate, ci.low, ci.high,
                                          n_prompts))

    tests: list[TestRow] = []
    primaries: dict[tuple[str, str], tuple[str | None, float]] = {}  # → (test, d for verdict)
    pass10 = {g: _pass10_gain(by_group[baseline], by_group[g]) for g in groups[1:]}
    no_prompt_metrics: set[str] = set()
    for g in groups[1:]:
        for m in chosen:
            sign = 1.0 if hib[m] else -1.0
            base_vals = [sign * r.metrics[m] for r in by_group[baseline] if m in r.metrics]
            cand_vals = [sign * r.metrics[m] for r in by_group[g] if m in r.metrics]
            row_tests: dict[str, TestRow] = {}
            d_seeds = math.nan
            if base_vals and cand_vals:
                res = stats.mann_whitney(base_vals, cand_vals)
                d_seeds = _safe(stats.cohens_d, base_vals, cand_vals)
                row_tests[TEST_SEEDS] = TestRow(g, m, TEST_SEEDS, res.n_a, res.n_b,
                                                res.statistic, res.pvalue, "d", d_seeds)
            pa = group_prompt_means(by_group[baseline], m)
            pb = group_prompt_means(by_group[g], m)
            d_prompts = math.nan
            paired_full = False
            if pa and pb:
                a = [sign * v for v in pa.values()]
                b = [sign * v for v in pb.values()]
                res = stats.mann_whitney(a, b)
                d_prompts = _safe(stats.cohens_d, a, b)
                row_tests[TEST_PROMPTS] = TestRow(g, m, TEST_PROMPTS, res.n_a, res.n_b,
                                                  res.statistic, res.pvalue, "d", d_prompts)
                shared = sorted(pa.keys() & pb.keys())
                if len(shared) >= 2:
                    xa = [sign * pa[i] for i in shared]
                    xb = [sign * pb[i] for i in shared]
                    res = stats.wilcoxon_paired(xa, xb)
                    dz = _safe(stats.paired_cohens_d, xa, xb)
                    row_tests[TEST_PAIRED] = TestRow(g, m, TEST_PAIRED, res.n_a, res.n_b,
                                                     res.statistic, res.pvalue, "d_z", dz)
                    paired_full = set(pa) == set(pb)
                    if not paired_full:
                        notes.append(
                            f"{g} vs {baseline} on {m}: {len(shared)} shared prompts of "
                            f"{len(pa)} / {len(pb)}; the per-prompt Mann-Whitney decides"
                        )
            else:
                no_prompt_metrics.add(m)
            if paired_full:
                primary: str | None = TEST_PAIRED
            elif TEST_PROMPTS in row_tests:
                primary = TEST_PROMPTS
            elif TEST_SEEDS in row_tests:
                primary = TEST_SEEDS
            else:
                primary = None
            d_verdict = d_prompts if TEST_PROMPTS in row_tests else d_seeds
            primaries[(g, m)] = (primary, d_verdict)
            tests.extend(row_tests[k] for k in _TEST_ORDER if k in row_tests)

    for kind in _TEST_ORDER:
        family = [t for t in tests if t.test == kind]
        if not family:
            continue
        bonf = stats.bonferroni([t.pvalue for t in family])
        holm = stats.holm([t.pvalue for t in family])
        for t, pb_, ph in zip(family, bonf, holm, strict=True):
            t.p_bonferroni, t.p_holm = pb_, ph

    cells = {(s.group, s.metric): s for s in summaries}
    verdicts: list[VerdictRow] = []
    for g in groups[1:]:
        for m in chosen:
            primary, d = primaries[(g, m)]
            base, cand = cells[(baseline, m)], cells[(g, m)]
            sign = 1.0 if hib[m] else -1.0
            delta = sign * (cand.mean - base.mean)
            rel = delta / abs(base.mean) if base.mean != 0.0 else math.nan
            if primary is None:
                verdicts.append(VerdictRow(g, m, delta, rel, None, math.nan, math.nan, d,
                                           "not tested"))
                continue
            t = next(t for t in tests if t.group == g and t.metric == m and t.test == primary)
            p_adj = {"holm": t.p_holm, "bonferroni": t.p_bonferroni, "none": t.pvalue}[correction]
            verdict = stats.success_verdict(p_adj, d, pass10[g])
            verdicts.append(VerdictRow(g, m, delta, rel, primary, t.pvalue, p_adj, d, verdict))

    # ------------------------------------------------------------------ notes
    if no_prompt_metrics and len(groups) > 1:
        notes.append(
            f"no per-prompt scores for {', '.join(sorted(no_prompt_metrics, key=_metric_order))} "
            "in the baseline's or a candidate's eval/generations.jsonl: only the per-seed test "
            "applies there"
        )
    if len(groups) > 1:
        n_base = len(by_group[baseline])
        small = [g for g in groups[1:] if _min_mwu_p(n_base, len(by_group[g])) >= stats.MIN_PVALUE]
        if small:
            notes.append(
                f"with {n_base} baseline seed(s) the per-seed Mann-Whitney cannot reach "
                f"p < {stats.MIN_PVALUE} for {', '.join(small)} (smallest possible two-sided p: "
                f"{', '.join(_p(_min_mwu_p(n_base, len(by_group[g]))) for g in small)}); "
                "run more seeds or rely on the per-prompt tests"
            )
        if all(v is None for v in pass10.values()):
            notes.append("pass@10 was not logged: 'strong' is judged on p and d only")
    if len(groups) == 1:
        notes.append(f"only one group ({baseline}): nothing to test; use --group-by or --filter")
    return ComparisonResult(
        baseline=baseline, groups=groups, metrics=chosen, higher_is_better=hib,
        summaries=summaries, tests=tests, verdicts=verdicts, pass10_gain=pass10,
        runs={g: by_group[g] for g in groups}, correction=correction, seed=seed,
        confidence=confidence, notes=notes,
    )


def passk_series(
    runs: Sequence[RunData], seed: int = 0, n_resamples: int = 10_000
) -> dict[str, dict[int, tuple[float, float, float]]]:
    """``{group: {k: (mean, CI low, CI high)}}`` of every pass@k the runs logged."""
    out: dict[str, dict[int, tuple[float, float, float]]] = {}
    by_group: dict[str, list[RunData]] = {}
    for r in runs:
        by_group.setdefault(r.group, []).append(r)
    for g, members in by_group.items():
        ks = sorted({int(m.split("@")[1]) for r in members for m in r.metrics
                     if re.fullmatch(r"pass@\d+", m)})
        for k in ks:
            values = [r.metrics[f"pass@{k}"] for r in members if f"pass@{k}" in r.metrics]
            ci = stats.bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
            out.setdefault(g, {})[k] = (ci.estimate, ci.low, ci.high)
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
            data = RunData(info.run_id, group, final, per_prompt, seed=info.seed, name=info.name)
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
    from polylora.errors import DataError
    from polylora.metrics.registry import get_metric
    from polylora.report import plots

    all_runs = [r for g in result.groups for r in result.runs[g]]
    made: dict[str, str] = {}
    notes: list[str] = []
    series = passk_series(all_runs, seed=result.seed)
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
    parser.add_argument("--correction", choices=CORRECTIONS, default="holm",
                        help="p-value adjustment used for the verdict (default: %(default)s)")
    parser.add_argument("--quality-metric", default=None, help="y axis of the scatter plot")
    parser.add_argument("--diversity-metric", default=None, help="x axis of the scatter plot")
    parser.add_argument("--out", default=None,
                        help="output folder (default: reports/compare-<timestamp>)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--n-resamples", type=int, default=10_000,
                        help="bootstrap resamples (default: %(default)s)")
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
    data, without = collect_runs(client, grouped, metrics)
    result = compare_groups(data, baseline, metrics, seed=args.seed,
                            correction=args.correction, n_resamples=args.n_resamples)
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
            "filter": args.filter or "", "metrics": ",".join(metrics), "seed": str(args.seed),
            "correction": args.correction, "n_resamples": str(args.n_resamples),
        }
        run_id = log_comparison(client, exp_id, out, result, params, report)
        print(f"logged comparison run {run_id} (tag {mlruns.KIND_TAG}={mlruns.COMPARISON_KIND})")
    sys.stdout.flush()
    return 0
