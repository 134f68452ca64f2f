"""The overfitting decision matrix as pure logic: a run's curves in, a diagnosis out.

Every rule (:mod:`~polylora.report.diagnose.rules`) runs; the verdict is the worst level found,
its headline and ``next_command`` come from the highest-priority finding at that level. Nothing
here touches MLflow, files or models, so the matrix is unit-testable; the CLI
(:mod:`polylora.cli.diagnose`) reads a run and the columns into its inputs.
"""

from __future__ import annotations

from polylora.report.diagnose.context import RunContext
from polylora.report.diagnose.findings import LEVEL_LABEL, LEVEL_RANK, Diagnosis, Finding, Level
from polylora.report.diagnose.inputs import Columns, RunCurves, Thresholds
from polylora.report.diagnose.rules import RULE_PRIORITY, RULES

__all__ = ["diagnose"]


def diagnose(
    curves: RunCurves, thresholds: Thresholds | None = None, columns: Columns | None = None
) -> Diagnosis:
    """Apply the overfitting decision matrix to one run's curves.

    ``columns`` name the experiments of the standard and conservative columns; without them
    the commands only rerun the run's own experiment. Raises
    :class:`~polylora.errors.DataError` when the run has no train or eval loss points (nothing
    to judge) and :class:`~polylora.errors.ConfigError` for an unknown objective.
    """
    ctx = RunContext(curves, thresholds or Thresholds(), columns or Columns())
    findings: list[Finding] = [f for rule in RULES for f in rule(ctx)]
    findings.sort(key=lambda f: RULE_PRIORITY.index(f.rule))
    level: Level = max((f.level for f in findings), key=LEVEL_RANK.__getitem__)
    top = [f for f in findings if f.level == level]
    headline = top[0]
    next_command = headline.command or next((f.command for f in top if f.command), None)
    verdict = f"{LEVEL_LABEL[level]}: {headline.message}"
    if level != "ok" and len(top) > 1:
        verdict += f" (+{len(top) - 1} more {level} finding(s))"
    return Diagnosis(findings=findings, verdict=verdict, next_command=next_command, level=level)
