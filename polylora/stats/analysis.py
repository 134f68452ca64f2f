"""The confirmatory analysis of a comparison: one primary endpoint, a Holm family of
secondaries behind it (serial gatekeeping), non-inferiority for quality metrics, and what the
design could detect. Pure: :class:`~polylora.report.comparison.model.RunData` in, rows out.

Unit of analysis. Every run is one seed; every seed scores the same fixed prompts. Where both
arms ran the same seeds and logged per-prompt scores, Δ (candidate − baseline, native units)
and its CI come from the crossed random-effects model of the per-(seed, prompt) differences
(:func:`polylora.stats.intervals.crossed_difference`: seeds and prompts both random). Otherwise the
paired t-test over shared seeds, else Welch's t over seed means. Alongside, as sensitivity
analyses: the paired t over seeds (d_z beside it) and the Wilcoxon signed-rank over
seed-averaged prompts (which treats the seeds as fixed: the rank-biserial r beside it).

The plan (:class:`Plan`) is read from the runs' logged config (``compare.*``), i.e. declared
before the runs; ``polylora compare --primary ...`` overrides it and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from polylora.stats import intervals, power
from polylora.stats import significance as stats

__all__ = ["DUPLICATE_OF", "Effect", "Plan", "analyse", "estimate", "exclusions", "judge"]

#: Metrics that are monotone transforms of another: testing both tests one thing twice.
DUPLICATE_OF = {"perplexity": "loss", "test_perplexity": "test_loss"}
#: A metric taking one value on at least this share of the prompt scores carries no signal
#: (distinct-2/3 of one-word answers are 0 almost everywhere).
DEGENERATE_SHARE = 0.8


@dataclass(frozen=True)
class Plan:
    """``compare.*``: the analysis declared before the runs."""

    primary: str | None = None
    direction: str = "increase"
    secondary: tuple[str, ...] | None = None
    noninferiority: Mapping[str, float] = field(default_factory=dict)
    alpha: float = 0.05
    power: float = 0.80
    source: str = "config"  # "config" (logged with the runs) or "command line"

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Plan | None:
        """The plan a run logged (flattened ``compare.*`` params), None if it logged none."""
        import ast

        from polylora.record.names import canonical_metric as canonical_name

        prefix = "compare.noninferiority."
        if "compare.primary" not in params and not any(k.startswith(prefix) for k in params):
            return None

        def parse(key: str, default: Any) -> Any:
            raw = params.get(key)
            if raw in (None, "", "None", "null"):
                return default
            try:
                return ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                return raw

        ni = {k[len(prefix):]: float(v) for k, v in params.items() if k.startswith(prefix)}
        sec = parse("compare.secondary", None)
        primary = parse("compare.primary", None)
        return cls(
            primary=canonical_name(primary) if primary else None,
            direction=str(parse("compare.direction", "increase")),
            secondary=tuple(canonical_name(m) for m in sec) if sec else None,
            noninferiority={canonical_name(k): v for k, v in ni.items()},
            alpha=float(parse("compare.alpha", 0.05)),
            power=float(parse("compare.power", 0.8)),
        )


@dataclass
class Effect:
    """One candidate group vs the baseline on one metric."""

    group: str
    metric: str
    role: str  # primary | secondary | non-inferiority | excluded
    method: str = ""
    n_seeds: int = 0
    n_prompts: int = 0
    delta: float = math.nan  # candidate − baseline, native units
    low: float = math.nan
    high: float = math.nan
    se: float = math.nan
    df: float = math.nan
    pvalue: float = math.nan
    p_holm: float = math.nan
    mde: float = math.nan
    verdict: str = ""
    reason: str = ""  # why excluded
    seed_test: intervals.PairedSeedTest | None = None
    wilcoxon_p: float = math.nan
    rank_biserial: float = math.nan
    ni: intervals.NonInferiority | None = None
    components: intervals.VarianceComponents | None = None


def _seed_means(runs: Sequence[Any], metric: str) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for i, r in enumerate(runs):
        if metric in r.metrics and math.isfinite(r.metrics[metric]):
            acc.setdefault(str(r.seed if r.seed is not None else f"run{i}"), []).append(
                r.metrics[metric])
    return {s: float(np.mean(v)) for s, v in acc.items()}


def _prompt_table(runs: Sequence[Any], metric: str, seeds: Sequence[str],
                  prompts: Sequence[str]) -> np.ndarray:
    """seeds × prompts of per-prompt scores (runs of one seed averaged)."""
    out = np.empty((len(seeds), len(prompts)))
    for i, s in enumerate(seeds):
        members = [r for r in runs if str(r.seed) == s]
        for j, p in enumerate(prompts):
            out[i, j] = np.mean([r.per_prompt[metric][p] for r in members])
    return out


def _common_prompts(runs: Sequence[Any], metric: str) -> list[str]:
    sets = [set(r.per_prompt.get(metric, {})) for r in runs]
    return sorted(set.intersection(*sets)) if sets and all(sets) else []


def estimate(base: Sequence[Any], cand: Sequence[Any], metric: str,
              confidence: float) -> Effect:
    """Δ of ``cand`` − ``base`` on ``metric`` by the best design-respecting method available
    (crossed seeds × prompts, else paired t over seeds, else Welch), plus the sensitivity
    tests; role and verdict are left to :func:`analyse`."""
    e = Effect("", metric, "")
    sb, sc = _seed_means(base, metric), _seed_means(cand, metric)
    shared = sorted(set(sb) & set(sc), key=str)
    if len(shared) >= 2:
        e.seed_test = intervals.paired_seed_test(sb, sc, confidence)
    members = [r for r in [*base, *cand] if str(r.seed) in shared]
    prompts = _common_prompts(members, metric) if len(shared) >= 2 else []
    if len(prompts) >= 2:
        diffs = (_prompt_table(cand, metric, shared, prompts)
                 - _prompt_table(base, metric, shared, prompts))
        cd = intervals.crossed_difference(diffs, confidence)
        e.method, e.components = "crossed seeds × prompts", cd.components
        e.delta, e.low, e.high, e.se, e.df, e.pvalue = (cd.delta, cd.low, cd.high, cd.se,
                                                        cd.df, cd.pvalue)
        e.n_seeds, e.n_prompts = len(shared), len(prompts)
        per_prompt = diffs.mean(axis=0)
        if np.any(per_prompt != 0):
            res = stats.wilcoxon_paired(np.zeros_like(per_prompt), per_prompt)
            e.wilcoxon_p = res.pvalue
            ranks = sps.rankdata(np.abs(per_prompt[per_prompt != 0]))
            pos = ranks[per_prompt[per_prompt != 0] > 0].sum()
            e.rank_biserial = float((2 * pos - ranks.sum()) / ranks.sum())
        else:
            e.wilcoxon_p, e.rank_biserial = 1.0, 0.0
    elif e.seed_test is not None:
        t = e.seed_test
        e.method, e.n_seeds = "paired t over seeds", len(shared)
        e.delta, e.low, e.high, e.pvalue, e.df = t.delta, t.low, t.high, t.pvalue, t.df
        e.se = abs(t.delta / t.statistic) if t.statistic not in (0, math.inf) else math.nan
    elif len(sb) >= 2 and len(sc) >= 2:
        a, b = np.array(list(sb.values())), np.array(list(sc.values()))
        va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
        e.method, e.n_seeds = "Welch t over seeds (arms do not share seeds)", a.size + b.size
        e.delta, e.se = float(b.mean() - a.mean()), math.sqrt(va + vb)
        e.df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if e.se else 1.0
        if e.se > 0:
            half = float(sps.t.ppf(0.5 + confidence / 2, e.df)) * e.se
            e.low, e.high = e.delta - half, e.delta + half
            e.pvalue = float(2 * sps.t.sf(abs(e.delta) / e.se, e.df))
    else:
        e.method = "not testable (fewer than 2 seeds per arm)"
    return e


def exclusions(runs: Sequence[Any], metrics: Sequence[str]) -> dict[str, str]:
    """Metrics that must not enter a test family, with the reason: duplicates (the same
    values in every run as an earlier metric, or a monotone transform of one) and degenerate
    metrics (one value on ≥ 80 % of the prompt scores)."""
    out: dict[str, str] = {}
    for m in metrics:
        src = DUPLICATE_OF.get(m)
        if src in metrics:
            out[m] = f"monotone transform of {src} (same test)"
            continue
        values = [r.metrics.get(m) for r in runs]
        for prev in metrics[: metrics.index(m)]:
            if prev in out:
                continue
            other = [r.metrics.get(prev) for r in runs]
            if all(v is not None and w is not None and math.isclose(v, w, abs_tol=1e-12)
                   for v, w in zip(values, other, strict=True)):
                out[m] = f"duplicate of {prev} (equal in every run)"
                break
        if m in out:
            continue
        scores = np.array([v for r in runs for v in r.per_prompt.get(m, {}).values()])
        if scores.size:
            vals, counts = np.unique(scores, return_counts=True)
            share = counts.max() / scores.size
            if share >= DEGENERATE_SHARE:
                out[m] = (f"degenerate: {share:.0%} of prompt scores equal "
                          f"{vals[counts.argmax()]:g}")
    return out


def _claim(delta_low: float, delta_high: float, direction: str) -> str:
    if direction == "increase":
        return ("confirmed" if delta_low > 0 else
                "opposite direction" if delta_high < 0 else "not shown")
    return ("confirmed" if delta_high < 0 else
            "opposite direction" if delta_low > 0 else "not shown")


def judge(effects: Sequence[Effect], higher_is_better: Mapping[str, bool], plan: Plan,
          excluded: Mapping[str, str]) -> None:
    """Give one group's effects their role (primary, non-inferiority, secondary, excluded),
    MDE, Holm-adjusted p and verdict, in place."""
    family: list[Effect] = []
    primary_ok = None
    for e in effects:
        m = e.metric
        if math.isfinite(e.se) and e.se > 0 and e.df >= 1:
            e.mde = power.mde(e.se, e.df, plan.alpha, plan.power)
        better = 1.0 if higher_is_better[m] else -1.0
        if m == plan.primary:
            e.role = "primary"
            e.verdict = (_claim(e.low, e.high, plan.direction) if math.isfinite(e.low)
                         else "not testable")
            primary_ok = e.verdict == "confirmed"
        elif m in plan.noninferiority:
            e.role = "non-inferiority"
            if math.isfinite(e.se) and math.isfinite(e.delta):
                e.ni = intervals.noninferiority(better * e.delta, e.se, e.df,
                                                plan.noninferiority[m], plan.alpha / 2)
                e.verdict = e.ni.verdict
            else:
                e.verdict = "not testable"
        elif m in excluded:
            e.role, e.reason = "excluded", excluded[m]
        elif plan.secondary is not None and m not in plan.secondary:
            e.role, e.reason = "excluded", "not in compare.secondary"
        else:
            e.role = "secondary"
            family.append(e)
    testable = [e for e in family if math.isfinite(e.pvalue)]
    for e, p in zip(testable, stats.holm([e.pvalue for e in testable]) if testable else [],
                    strict=True):
        e.p_holm = p
        sig = p < plan.alpha
        if primary_ok is None:
            e.verdict = "exploratory: " + ("significant" if sig else "not significant")
        elif not primary_ok:
            e.verdict = "not tested (gate: primary not confirmed)" + (
                "; exploratory p < α" if sig else "")
        else:
            e.verdict = "significant" if sig else "not significant"


def analyse(runs_by_group: Mapping[str, Sequence[Any]], baseline: str, metrics: Sequence[str],
            higher_is_better: Mapping[str, bool], plan: Plan,
            confidence: float = 0.95) -> tuple[list[Effect], dict[str, str]]:
    """Effects of every candidate group vs ``baseline`` and the excluded metrics."""
    all_runs = [r for rs in runs_by_group.values() for r in rs]
    excluded = exclusions(all_runs, list(metrics))
    if plan.primary:
        excluded.pop(plan.primary, None)  # declared before the runs: always analysed
    effects: list[Effect] = []
    base = runs_by_group[baseline]
    for g in [g for g in runs_by_group if g != baseline]:
        group_effects = []
        for m in metrics:
            e = estimate(base, runs_by_group[g], m, confidence)
            e.group = g
            group_effects.append(e)
        judge(group_effects, higher_is_better, plan, excluded)
        effects.extend(group_effects)
    return effects, excluded
