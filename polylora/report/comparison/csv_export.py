"""The comparison as CSV files: ``summary.csv`` (groups × metrics with their t-interval) and
``tests.csv`` (one row per effect with every statistic), for spreadsheets and later reports."""

from __future__ import annotations

import csv
from pathlib import Path

from polylora.report.comparison.model import ComparisonResult

__all__ = ["write_csv"]


def write_csv(result: ComparisonResult, folder: str | Path) -> tuple[Path, Path]:
    """``summary.csv`` (groups × metrics with CI) and ``tests.csv`` (one row per effect)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary_path = folder / "summary.csv"
    with summary_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["group", "metric", "higher_is_better", "n_runs", "mean", "ci_low",
                    "ci_high", "ci_method", "n_prompts", "is_baseline"])
        for s in result.summaries:
            w.writerow([s.group, s.metric, result.higher_is_better[s.metric], s.n_runs,
                        s.mean, s.low, s.high, "t over seeds", s.n_prompts,
                        s.group == result.baseline])
    tests_path = folder / "tests.csv"
    with tests_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["group", "metric", "role", "method", "n_seeds", "n_prompts", "delta",
                    "ci_low", "ci_high", "se", "df", "p", "p_holm", "mde", "verdict",
                    "reason", "ni_margin", "ni_p", "seed_delta", "seed_ci_low",
                    "seed_ci_high", "seed_p", "seed_d_z", "wilcoxon_p", "rank_biserial",
                    "var_seed", "var_prompt", "var_residual"])
        for e in result.effects:
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
