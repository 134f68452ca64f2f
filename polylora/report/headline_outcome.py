"""The headline report's outcome paragraphs, generated from compare's effects only: the
declared primary endpoint decides, quality is judged by non-inferiority, and a null result
states the minimum detectable effect."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from polylora.render.markdown import pval, signed
from polylora.report.headline_format import duration, num
from polylora.report.headline_inputs import (
    DIVERSITY_METRICS,
    FEW_SHOT,
    MID_RANGE,
    PASSK_METRICS,
    QUALITY_METRICS,
    ZERO_SHOT,
    GroupCost,
    SummaryCell,
    TestCell,
    primary_tests,
)
from polylora.stats import significance as stats

__all__ = ["outcome"]


def _effect_phrase(t: TestCell) -> str:
    ci = f"Δ = {signed(t.delta, 3)} [{signed(t.low, 3)}, {signed(t.high, 3)}]"
    extra = f"p = {pval(t.p)}" + (f", Holm p = {pval(t.p_holm)}" if math.isfinite(t.p_holm) else "")
    design = f"{t.n_seeds} seeds × {t.n_prompts} prompts" if t.n_prompts else f"{t.n_seeds} seeds"
    return f"{ci}; {t.method}, {design}; {extra}"


def _sentence(metric: str, t: TestCell | None, base: SummaryCell | None,
              cand: SummaryCell | None, baseline: str, candidate: str) -> str:
    """One sentence on ``metric``: the means, Δ with its CI, and the verdict of its role."""
    means = ""
    if base is not None and cand is not None:
        lower = "" if base.higher_is_better else ", lower is better"
        means = f"{baseline} {num(base.mean)} vs {candidate} {num(cand.mean)}{lower}; "
    if t is None or not math.isfinite(t.delta):
        return f"{metric}: no estimate available ({means.rstrip('; ') or 'no values'})."
    role = {"primary": "primary endpoint", "non-inferiority": "non-inferiority",
            "secondary": "secondary", "excluded": f"excluded: {t.reason}"}.get(t.role, t.role)
    return f"{metric} ({role}): {means}{_effect_phrase(t)}: **{t.verdict or '–'}**."


def outcome(
    summary: Mapping[tuple[str, str], SummaryCell],
    tests: Sequence[TestCell],
    baseline: str,
    candidate: str,
    costs: Mapping[str, GroupCost] | None = None,
    lambda_best: str | None = None,
) -> list[str]:
    """Paragraphs stating the result as what it is, generated from compare's effects only:
    the declared primary endpoint decides; non-inferiority speaks for quality."""
    rows = primary_tests(tests, candidate)

    def s(group: str, metric: str) -> SummaryCell | None:
        return summary.get((group, metric))

    def bullets(metrics: Sequence[str]) -> list[str]:
        return ["- " + _sentence(m, rows.get(m), s(baseline, m), s(candidate, m), baseline,
                                 candidate)
                for m in metrics if s(baseline, m) is not None or m in rows]

    paras: list[str] = []
    prim = next((t for t in rows.values() if t.role == "primary"), None)
    if prim is None:
        answer = (f"**Answer: undetermined.** No primary endpoint was declared for {candidate} "
                  f"against {baseline} (compare.primary), so no test is confirmatory.")
    else:
        stat = _effect_phrase(prim)
        mde = (f" This design can detect |Δ| ≥ {num(prim.mde)} {prim.metric} (80% power, "
               "α = 0.05)" if math.isfinite(prim.mde) else "")
        if prim.verdict == "confirmed":
            answer = (f"**Answer: yes, on this task and budget.** {candidate} changed "
                      f"{prim.metric} in the declared direction ({stat}).")
        elif prim.verdict == "opposite direction":
            answer = (f"**Answer: no.** {prim.metric} moved against the declared direction "
                      f"with {candidate} ({stat}).")
        else:
            answer = (f"**Answer: not shown on this task and budget.** The primary endpoint "
                      f"{prim.metric}: {stat}; the interval includes 0.{mde}: a smaller effect "
                      "may exist (absence of evidence is not evidence of absence).")
    paras.append("\n".join([answer, "", "**pass@k**:", "", *bullets(PASSK_METRICS)]))
    quality = bullets([m for m in QUALITY_METRICS])
    if quality:
        paras.append("\n".join(["**Single-generation quality** (non-inferiority at the "
                                 "declared margins: the lower CI bound must stay above "
                                 "−margin):", "", *quality]))
    diversity = bullets(DIVERSITY_METRICS)
    if diversity:
        paras.append("\n".join(["**Diversity** (secondaries: tested only if the primary is "
                                 "confirmed):", "", *diversity]))

    notes: list[str] = [
        f"The old criterion (p < {stats.MIN_PVALUE} and Cohen's d > {stats.MIN_EFFECT_SIZE})"
        " is not applied: a d on prompt means measures the spread between prompts, not the "
        "effect; the verdict is the declared primary endpoint's confidence interval."]
    ce_p1, ce_p10 = s(baseline, "pass@1"), s(baseline, "pass@10")
    lo, hi = MID_RANGE

    def inside(cell: SummaryCell | None) -> bool:
        return cell is not None and lo <= cell.mean <= hi

    if ce_p1 is not None:
        text = (f"{baseline}'s pass@1 is {num(ce_p1.mean)}, "
                f"{'inside' if inside(ce_p1) else 'outside'} the {lo}–{hi} range in which "
                "DESIGN.md expects the task to show a pass@k difference between objectives")
        if ce_p10 is not None and not inside(ce_p1):
            text += (f"; its pass@10 is {num(ce_p10.mean)}, "
                     + ("inside that range, so pass@10 has room to move either way"
                        if inside(ce_p10) else "also outside it: a null result here says "
                        "little about the method"))
        notes.append(text + ".")
    refs = []
    for ref in (ZERO_SHOT, FEW_SHOT):
        cell = s(ref, "pass@1")
        if cell is not None:
            refs.append(f"{ref.replace('_', '-')} {num(cell.mean)}")
    if refs and ce_p1 is not None:
        notes.append(f"For reference (means only, untested here): pass@1 of the base model "
                     f"was {' and '.join(refs)}, against {num(ce_p1.mean)} after CE fine-tuning.")
    n_seeds = max((c.n_runs for (g, _), c in summary.items() if g == baseline), default=0)
    if 0 < n_seeds < 5:
        notes.append(f"With {n_seeds} seeds per arm the seed-to-seed variance is estimated "
                     f"from {n_seeds - 1} degree(s) of freedom: intervals are wide by "
                     "construction (`polylora plan` sizes a design for a target effect).")
    if costs and baseline in costs and candidate in costs:
        b, c = costs[baseline], costs[candidate]
        if math.isfinite(b.train_wall_s) and b.train_wall_s > 0:
            notes.append(
                f"Cost: {candidate} trained in {duration(c.train_wall_s)} per run against "
                f"{duration(b.train_wall_s)} for {baseline} "
                f"({c.train_wall_s / b.train_wall_s:.2f}× the training wall time)."
            )
    if prim is None or prim.verdict != "confirmed":
        notes.append(lambda_best or "The λ sweep was not run for this report "
                     "(`python launchers/headline.py --lambda-sweep`).")
    paras.append(" ".join(notes))
    return paras
