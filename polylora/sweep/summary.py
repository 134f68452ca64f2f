"""The per-trial summary table of a sweep (``summary.csv`` + ``summary.md`` in the sweep
directory) and the study's best trial or Pareto front.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylora.record import names
from polylora.record.names import ERROR_ATTR, RUN_COST, TRAIN_STEPS, TRAIN_TOKENS, TRAIN_WALL_TIME
from polylora.render import markdown
from polylora.sweep.optimized_metric import metric_split
from polylora.sweep.tags import SUMMARY_CSV, SUMMARY_MD


@dataclass
class TrialRow:
    """One row of the summary table."""

    trial: int
    state: str
    values: dict[str, float | None]
    params: dict[str, Any]
    train_eval_gap: float | None
    duration_s: float | None
    run_id: str | None
    error: str | None
    steps: float | None = None  # training steps done (a pruned trial stops early)
    cost_usd: float | None = None
    tokens_per_s: float | None = None  # training input tokens per second of training


def train_eval_gap(metrics: Mapping[str, float]) -> float | None:
    """``train/eval_gap`` as logged, else ``eval/loss − train/final_loss``, else None."""
    if names.TRAIN_EVAL_GAP in metrics:
        return float(metrics[names.TRAIN_EVAL_GAP])
    if names.VAL_LOSS in metrics and names.TRAIN_FINAL_LOSS in metrics:
        return float(metrics[names.VAL_LOSS]) - float(metrics[names.TRAIN_FINAL_LOSS])
    return None


def trial_rows(trials: Sequence[Any], metric_names: Sequence[str],
               children: Mapping[int, Any]) -> list[TrialRow]:
    """Rows from Optuna's frozen trials joined with their MLflow child runs."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        run = children.get(t.number)
        metrics = dict(run.data.metrics) if run is not None else {}
        values: dict[str, float | None] = dict.fromkeys(metric_names)
        if t.values is not None:
            values = dict(zip(metric_names, t.values, strict=False))
        duration = None
        if run is not None and run.info.end_time and run.info.start_time:
            duration = (run.info.end_time - run.info.start_time) / 1000.0
        elif t.datetime_start is not None and t.datetime_complete is not None:
            duration = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(TrialRow(
            trial=t.number,
            state=t.state.name,
            values=values,
            params=dict(t.params),
            train_eval_gap=train_eval_gap(metrics),
            duration_s=duration,
            run_id=run.info.run_id if run is not None else None,
            error=t.user_attrs.get(ERROR_ATTR),
            steps=metrics.get(TRAIN_STEPS),
            cost_usd=metrics.get(RUN_COST),
            tokens_per_s=_train_rate(metrics),
        ))
    return rows


def _train_rate(metrics: Mapping[str, float]) -> float | None:
    """A trial's mean training tokens per second (``train/tokens`` / ``train/wall_time_s``)."""
    tokens, seconds = metrics.get(TRAIN_TOKENS), metrics.get(TRAIN_WALL_TIME)
    if tokens is None or not seconds:
        return None
    return float(tokens) / float(seconds)


@dataclass
class StudyTotals:
    """What a whole study did and cost: trials by state, steps trained, dollars, speed."""

    states: dict[str, int]
    steps: float
    cost_usd: float
    tokens_per_s: float | None

    @property
    def finished(self) -> int:
        """Trials that ran to the end (COMPLETE)."""
        return self.states.get("COMPLETE", 0)

    @property
    def cost_per_finished_trial_usd(self) -> float | None:
        """The study's whole cost (pruned and failed trials included) per finished trial."""
        return self.cost_usd / self.finished if self.finished else None

    def metrics(self) -> dict[str, float]:
        """The totals as the parent run's ``study/*`` metrics."""
        out = {names.study_trials_metric(k): float(v) for k, v in self.states.items()}
        out |= {names.STUDY_STEPS: self.steps, names.STUDY_COST: self.cost_usd}
        if self.cost_per_finished_trial_usd is not None:
            out[names.STUDY_COST_PER_FINISHED_TRIAL] = self.cost_per_finished_trial_usd
        if self.tokens_per_s is not None:
            out[names.STUDY_TRAIN_TOKENS_PER_S] = self.tokens_per_s
        return out

    def lines(self) -> list[str]:
        """The summary's totals as Markdown lines."""
        states = ", ".join(f"{n} {k}" for k, n in sorted(self.states.items()))
        per = self.cost_per_finished_trial_usd
        speed = f"{self.tokens_per_s:.4g}" if self.tokens_per_s is not None else "n/a"
        return [f"Trials: {states or 'none'}. Steps trained: {self.steps:.0f}.",
                f"Cost: ${self.cost_usd:.4f} in all, "
                + (f"${per:.4f} per finished trial" if per is not None else "no finished trial")
                + f" (run/cost_usd: hardware.price_per_hour x wall time + judge). "
                f"Training speed: {speed} tokens/s (mean over trials)."]


def study_totals(rows: Sequence[TrialRow]) -> StudyTotals:
    """Totals over a study's rows."""
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    speeds = [r.tokens_per_s for r in rows if r.tokens_per_s is not None]
    return StudyTotals(
        states=states,
        steps=sum(r.steps or 0.0 for r in rows),
        cost_usd=sum(r.cost_usd or 0.0 for r in rows),
        tokens_per_s=sum(speeds) / len(speeds) if speeds else None,
    )


def _columns(rows: Sequence[TrialRow], metric_names: Sequence[str]) -> list[str]:
    params: list[str] = []
    for row in rows:
        params += [p for p in row.params if p not in params]
    return ["trial", "state", *metric_names, *params, "train_eval_gap", "steps", "duration_s",
            "tokens_per_s", "cost_usd", "run_id", "error"]


def _record(row: TrialRow) -> dict[str, Any]:
    return {"trial": row.trial, "state": row.state, **row.values, **row.params,
            "train_eval_gap": row.train_eval_gap, "steps": row.steps,
            "duration_s": row.duration_s, "tokens_per_s": row.tokens_per_s,
            "cost_usd": row.cost_usd, "run_id": row.run_id, "error": row.error}


def _cell(value: Any) -> str:
    """A rounded table value (escaping is :func:`polylora.render.markdown.cell`'s)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_summary(rows: Sequence[TrialRow], metric_names: Sequence[str], out_dir: Path,
                  title: str = "") -> tuple[Path, Path]:
    """``summary.csv`` (full precision) and ``summary.md`` (rounded) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = _columns(rows, metric_names)
    csv_path = out_dir / SUMMARY_CSV
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            record = _record(row)
            writer.writerow({c: "" if record.get(c) is None else record.get(c) for c in columns})
    md_path = out_dir / SUMMARY_MD
    lines = [f"# {title}", ""] if title else []
    lines += markdown.table(columns, ([_cell(_record(row).get(c)) for c in columns]
                                      for row in rows))
    lines += ["", *study_totals(rows).lines()]
    lines += ["", "Optimized on: " + "; ".join(
        f"{m} ({metric_split(m)} split)" for m in metric_names
    ) + ". Test-split metrics are never optimized; report them once, for the chosen config."]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def best_summary(study: Any, metric_names: Sequence[str]) -> dict[str, Any]:
    """Best trial (one objective) or Pareto front (several) of an Optuna study; {} if none."""
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return {}
    if len(metric_names) == 1:
        best = study.best_trial
        return {"trial": best.number, "value": best.value, "params": dict(best.params)}
    front = study.best_trials
    return {
        "pareto_trials": [t.number for t in front],
        "solutions": [{"trial": t.number, "params": dict(t.params),
                       "values": dict(zip(metric_names, t.values, strict=False))}
                      for t in front],
    }
