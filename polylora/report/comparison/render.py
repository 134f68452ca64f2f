"""The comparison as Markdown: the analysis plan, the effect tables (primary, non-inferiority,
secondary, excluded), groups × metrics, sensitivity analyses, checkpoints, runs, and the full
report :func:`report` writes to ``report.md``. Tables go through :mod:`polylora.render.markdown`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from polylora.render.markdown import pval, signed, table
from polylora.report.comparison.model import ComparisonResult
from polylora.stats.analysis import Effect

__all__ = ["checkpoints_markdown", "effects_markdown", "plan_markdown", "power_sentences",
           "report", "runs_markdown", "sensitivity_markdown", "summary_markdown",
           "verdict_markdown"]


def summary_markdown(result: ComparisonResult) -> str:
    """Metrics × groups: ``mean [t-interval]`` over seeds."""
    pct = f"{result.confidence:.0%}"
    head = ["metric"]
    for g in result.groups:
        mark = " (baseline)" if g == result.baseline and g != "baseline" else ""
        head.append(f"{g}{mark} (n={len(result.runs.get(g, []))})")
    rows = []
    for m in result.metrics:
        cells = [f"{m} {'↑' if result.higher_is_better[m] else '↓'}"]
        for g in result.groups:
            s = result.summary(g, m)
            if s is None or s.n_runs == 0:
                cells.append("–")
                continue
            cell = f"{_num(s.mean)} [{_num(s.low)}, {_num(s.high)}]"
            if s.n_runs != len(result.runs.get(g, [])):
                cell += f" (n={s.n_runs})"
            cells.append(cell)
        rows.append(cells)
    lines = [f"Mean over seeds [{pct} t-interval over seeds]; ↑ higher is better, "
             "↓ lower is better.", "", *table(head, rows)]
    small = sorted({s.note for s in result.summaries if s.note})
    if small:
        lines += ["", *(f"Note: {n}." for n in small)]
    return "\n".join(lines) + "\n"


def plan_markdown(result: ComparisonResult) -> str:
    """The analysis plan and where it came from."""
    p = result.plan
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
    if result.excluded:
        lines.append("- **excluded from the family:** " + "; ".join(
            f"{m}: {why}" for m, why in result.excluded.items()))
    return "\n".join(lines) + "\n"


def seed_level_cell(e: Effect) -> str:
    """The paired t over seed means, ``Δ [CI] (n seeds)``, or "–" without shared seeds."""
    t = e.seed_test
    if t is None:
        return "–"
    return f"{signed(t.delta)} [{signed(t.low)}, {signed(t.high)}] (n = {len(t.seeds)})"


def effects_markdown(result: ComparisonResult, roles: Sequence[str],
                     seed_level: bool = False) -> str:
    """Δ with CI, p, MDE and verdict for the effects of the given roles; ``seed_level`` adds
    the t interval over seed means beside Δ's (crossed) interval, so that with few seeds a
    reader sees both readings."""
    effects = [e for e in result.effects if e.role in roles]
    if not effects:
        return "None.\n"
    pct = f"{result.confidence:.0%}"
    head = ["group", "metric", f"Δ (cand − base) [{pct} CI]",
            *([f"seed-level t over seed means [{pct} CI]"] if seed_level else []),
            "method", "seeds × prompts",
            "p", "p Holm", "MDE (80% power)" if result.plan.power == 0.8 else
            f"MDE ({result.plan.power:.0%} power)", "verdict"]
    rows = []
    for e in effects:
        arrow = "↑" if result.higher_is_better[e.metric] else "↓"
        rows.append([
            e.group, f"{e.metric} {arrow}",
            f"{signed(e.delta)} [{signed(e.low)}, {signed(e.high)}]",
            *([seed_level_cell(e)] if seed_level else []), e.method,
            f"{e.n_seeds} × {e.n_prompts}" if e.n_prompts else f"{e.n_seeds} seeds",
            pval(e.pvalue), pval(e.p_holm), f"±{_num(e.mde)}" if math.isfinite(e.mde) else "–",
            f"**{e.verdict}**" if e.verdict else "–",
        ])
    return "\n".join(table(head, rows)) + "\n"


def power_sentences(result: ComparisonResult) -> list[str]:
    """'This design can detect ...' for the primary endpoint (the MDE), one per group."""
    out = []
    for e in result.effects:
        if e.role == "primary" and math.isfinite(e.mde):
            design = (f"{e.n_seeds} seeds × {e.n_prompts} prompts" if e.n_prompts
                      else f"{e.n_seeds} seeds")
            out.append(f"This design ({e.group} vs {result.baseline}, {design}) can detect "
                       f"|Δ| ≥ {e.mde:.3f} {e.metric} with {result.plan.power:.0%} power at "
                       f"two-sided α = {result.plan.alpha:g}; `polylora plan` sizes a design "
                       "for a smaller effect.")
    return [*out, ""] if out else []


def sensitivity_markdown(result: ComparisonResult) -> str:
    """Paired t over seeds (d_z) and Wilcoxon over seed-averaged prompts (r)."""
    effects = [e for e in result.effects if e.role != "excluded"]
    if not effects:
        return "None.\n"
    head = ["group", "metric", "paired t over seeds: Δ [CI], p", "d_z",
            "Wilcoxon (prompts, seeds fixed): p", "rank-biserial r"]
    rows = []
    for e in effects:
        t = e.seed_test
        rows.append([
            e.group, e.metric,
            f"{signed(t.delta)} [{signed(t.low)}, {signed(t.high)}], p = {pval(t.pvalue)}"
            f" (n = {len(t.seeds)})" if t else "– (no shared seeds)",
            signed(t.d_z) if t else "–", pval(e.wilcoxon_p), signed(e.rank_biserial),
        ])
    return "\n".join(table(head, rows)) + "\n"


def checkpoints_markdown(result: ComparisonResult) -> str:
    """Which step of each run was evaluated."""
    rows = []
    for g in result.groups:
        rs = result.runs.get(g, [])
        kinds = sorted({r.checkpoint or "unrecorded" for r in rs})
        steps = ", ".join(
            f"{_int(r.evaluated_step)}/{_int(r.steps)}" for r in rs) or "–"
        rows.append([g, ", ".join(kinds), steps])
    head = ["group", "checkpoint", "evaluated step / steps trained"]
    return "\n".join(table(head, rows)) + "\n"


def cost_markdown(result: ComparisonResult) -> str:
    """Each group's cost (``run/cost_usd``: compute at ``hardware.price_per_hour`` plus the
    judge): in all, per finished run, and as a multiple of the baseline's per run."""
    per_run: dict[str, float | None] = {}
    rows = []
    for g in result.groups:
        costs = [r.cost_usd for r in result.runs.get(g, []) if r.cost_usd is not None]
        per_run[g] = sum(costs) / len(costs) if costs else None
    base = per_run.get(result.baseline)
    total = 0.0
    for g in result.groups:
        costs = [r.cost_usd for r in result.runs.get(g, []) if r.cost_usd is not None]
        total += sum(costs)
        mean = per_run[g]
        ratio = f"{mean / base:.2f}×" if mean is not None and base else "–"
        rows.append([g, str(len(costs)), f"${sum(costs):.4f}" if costs else "–",
                     f"${mean:.4f}" if mean is not None else "–", ratio])
    head = ["group", "runs with a cost", "cost", "cost per finished run", "× baseline"]
    lines = table(head, rows)
    lines += ["", f"All groups: ${total:.4f} (run/cost_usd = hardware.price_per_hour × wall "
                  "time + the LLM judge; 0 on a local CPU unless a price is set)."]
    return "\n".join(lines) + "\n"


def runs_markdown(result: ComparisonResult) -> str:
    """The run ids used, per group."""
    rows = [[g, f"`{r.run_id}`", r.name or "", r.seed or ""]
            for g in result.groups for r in result.runs.get(g, [])]
    return "\n".join(table(["group", "run id", "run name", "seed"], rows)) + "\n"


def verdict_markdown(result: ComparisonResult) -> str:
    """Primary and non-inferiority tables (what the command prints)."""
    return (effects_markdown(result, ["primary"], seed_level=True) + "\n"
            + effects_markdown(result, ["non-inferiority"]))


def report(
    result: ComparisonResult,
    title: str = "Comparison",
    context: Mapping[str, str] | None = None,
    plots: Mapping[str, str] | None = None,
) -> str:
    """The full report."""
    out = [f"# {title}", ""]
    for key, value in (context or {}).items():
        out.append(f"- **{key}:** {value}")
    out += [
        f"- **baseline:** {result.baseline}",
        "- **sign:** Δ = candidate − baseline in the metric's own units (↑: higher is "
        "better, ↓: lower is better)",
        "",
        "## Analysis plan", "", plan_markdown(result),
        "## Primary endpoint", "", effects_markdown(result, ["primary"], seed_level=True),
        *power_sentences(result),
        "## Non-inferiority", "", effects_markdown(result, ["non-inferiority"]),
        "## Secondary endpoints", "", effects_markdown(result, ["secondary"]),
        "## Excluded metrics", "", effects_markdown(result, ["excluded"]),
        "## Groups × metrics", "", summary_markdown(result),
        "## Sensitivity analyses", "",
        "The paired t over seeds uses one number per seed (d_z is its standardized effect);"
        " the Wilcoxon over seed-averaged prompts treats the seeds as fixed, so it "
        "overstates certainty when seeds differ (r is its rank-biserial effect).", "",
        sensitivity_markdown(result),
        "## Evaluated checkpoints", "", checkpoints_markdown(result),
        "## Cost", "", cost_markdown(result),
    ]
    if plots:
        out += ["## Plots", ""]
        out += [f"![{name}]({file})" for name, file in plots.items()]
        out.append("")
    out += ["## Runs used", "", runs_markdown(result)]
    if result.notes:
        out += ["## Notes", "", *(f"- {n}" for n in result.notes), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- numbers


def _int(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else str(int(x))


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.3f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


