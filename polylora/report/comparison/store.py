"""The comparison's side of the MLflow store: read the grouped runs in as :class:`RunData`,
choose the baseline and the analysis plan they declared, log the comparison back as a run
named ``comparison`` tagged ``polylora.kind=comparison`` (which later selections skip)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from polylora.errors import PolyloraError
from polylora.record import names, writer
from polylora.record import reader as mlruns
from polylora.report.comparison.model import ComparisonResult, RunData
from polylora.stats.analysis import Plan

__all__ = ["FINAL_EVAL_CURVES", "choose_baseline", "collect_runs", "log_comparison",
           "resolve_plan"]

#: Metrics logged both as a training curve (by step) and once more by the final evaluation
#: (step 0, logged last): the final evaluation's value is the one compared.
FINAL_EVAL_CURVES = (names.VAL_LOSS, names.VAL_PERPLEXITY)


def choose_baseline(groups: Mapping[str, Sequence[mlruns.RunInfo]], requested: str | None) -> str:
    """``requested`` if it is a group; else the group named ``baseline``, else the only group
    named ``baseline*``, else the only group whose runs use the CE objective."""
    group_names = sorted(groups)
    if requested:
        if requested not in groups:
            raise PolyloraError(
                f"--baseline {requested!r} is not a group; groups: {', '.join(group_names)}"
            )
        return requested
    if "baseline" in groups:
        return "baseline"
    prefixed = [g for g in group_names if g.lower().startswith("baseline")]
    if len(prefixed) == 1:
        return prefixed[0]
    ce = [g for g in group_names if all(mlruns.objective_kind(r) == "ce" for r in groups[g])]
    if len(prefixed) > 1:
        raise PolyloraError(
            f"several baseline groups ({', '.join(prefixed)}); pick one with --baseline"
        )
    if len(ce) == 1:
        return ce[0]
    if len(group_names) == 1:
        return group_names[0]
    raise PolyloraError(
        "cannot tell which group is the baseline (none is named baseline*, "
        f"{len(ce)} use the CE objective); pass --baseline, one of: {', '.join(group_names)}"
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
                           checkpoint=info.tags.get(names.CHECKPOINT_TAG),
                           evaluated_step=info.metrics.get(names.TRAIN_EVALUATED_STEP,
                                                           info.metrics.get(names.TRAIN_STEPS)),
                           steps=info.metrics.get(names.TRAIN_STEPS),
                           cost_usd=info.metrics.get(names.RUN_COST))
            if curves:
                for key in (names.TRAIN_LOSS, names.VAL_LOSS):
                    if key in info.metrics:
                        data.curves[key] = mlruns.metric_history(client, info.run_id, key)
            out.append(data)
    return out, without


def log_comparison(
    client: Any, experiment_id: str, out: Path, result: ComparisonResult,
    params: Mapping[str, str], report: str,
) -> str:
    """Log ``out`` as a FINISHED run named ``comparison`` tagged ``polylora.kind=comparison``."""
    n_runs = sum(len(v) for v in result.runs.values())
    tags = {
        names.KIND_TAG: names.COMPARISON_KIND,
        names.BASELINE_TAG: result.baseline,
        names.COMPARED_GROUPS_TAG: ",".join(result.groups)[:4000],
        names.NOTE_TAG: report[:4000],
    }
    created = client.create_run(experiment_id, run_name="comparison", tags=tags)
    run_id = created.info.run_id
    try:
        compared = ",".join(r.run_id for g in result.groups for r in result.runs[g])
        writer.log_batch(
            client, run_id,
            params={k: str(v)[:6000] for k, v in params.items()},
            metrics={names.COMPARE_N_RUNS: float(n_runs),
                     names.COMPARE_N_GROUPS: float(len(result.groups))},
            tags={names.COMPARED_RUNS_TAG: compared[:4000]},
        )
        writer.log_run_artifact(client, run_id, out)
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

