"""``polylora compare``: groups of finished MLflow runs against a baseline, with statistics
a reviewer would accept.

Pipeline: select the FINISHED runs of an experiment (optionally an MLflow filter), group them
by a tag (``polylora.group``: one group = one config over several seeds), then:

* every group × metric: the mean over seeds with a **t-interval** (and a statement when there
  are too few seeds for an interval to be informative);
* every other group vs the baseline (:mod:`polylora.stats.analysis`): **Δ in native units
  with its CI** as the effect, from the crossed seeds × prompts random-effects model where
  the arms share seeds and per-prompt scores exist (else a paired t over seeds, else Welch);
  the **primary endpoint** declared in the runs' config (``compare.primary`` + direction)
  decides the verdict; secondaries form one **Holm** family behind it (serial gatekeeping),
  duplicates and degenerate metrics excluded with the reason; **non-inferiority** at
  ``compare.noninferiority`` margins; the **MDE** at the configured power; sensitivity
  analyses (paired t over seeds with d_z, Wilcoxon over seed-averaged prompts with r);
* which checkpoint each group evaluated (``train.checkpoint``, the step).

This module is the command; the parts live in :mod:`polylora.report.comparison` (pure
statistics in ``compute``, Markdown in ``render``, CSV in ``csv_export``, plots in ``figures``,
MLflow in ``store``). :func:`run` writes ``report.md``, ``summary.csv``, ``tests.csv`` and PNG
plots to ``--out``, prints the tables, and logs everything as a run named ``comparison``
tagged ``polylora.kind=comparison`` (which later selections skip).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from polylora.errors import PolyloraError
from polylora.record import reader as mlruns
from polylora.report.comparison import render
from polylora.report.comparison.compute import available_metrics, compare_groups, resolve_metrics
from polylora.report.comparison.csv_export import write_csv
from polylora.report.comparison.figures import make_plots
from polylora.report.comparison.model import RunData
from polylora.report.comparison.store import (
    choose_baseline,
    collect_runs,
    log_comparison,
    resolve_plan,
)

__all__ = ["add_arguments", "run"]


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
    report = render.report(result, f"Comparison: {args.experiment}", context, plots_made)
    (out / "report.md").write_text(report, encoding="utf-8")
    write_csv(result, out)

    print(f"# Comparison: {args.experiment} (baseline: {baseline})\n")
    print(render.summary_markdown(result))
    print(render.verdict_markdown(result))
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
