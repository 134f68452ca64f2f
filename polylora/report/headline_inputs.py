"""The headline report's inputs: compare's ``summary.csv`` / ``tests.csv`` read back, the
launch's runs and their wall times, where the report reads from, and which metrics and groups
it shows."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polylora.record import names
from polylora.record import reader as mlruns

__all__ = [
    "DIVERSITY_METRICS",
    "FEW_SHOT",
    "MID_RANGE",
    "PASSK_METRICS",
    "QUALITY_METRICS",
    "TABLE_METRICS",
    "ZERO_SHOT",
    "GroupCost",
    "ReportInputs",
    "SummaryCell",
    "TestCell",
    "group_costs",
    "portable",
    "primary_tests",
    "read_summary",
    "read_tests",
    "runs_of_launch",
    "to_float",
]

#: Columns of the results table (registry names), in order.
TABLE_METRICS = ("pass@1", "pass@3", "pass@5", "pass@10", "accuracy", "sample_accuracy",
                 "self_bleu", "distinct_1", "distinct_2", "semantic_diversity")
#: Metrics the outcome paragraph discusses: the question (pass@k), single-generation quality,
#: diversity.
PASSK_METRICS = ("pass@1", "pass@3", "pass@5", "pass@10")
QUALITY_METRICS = ("pass@1", "accuracy")
DIVERSITY_METRICS = ("semantic_diversity", "self_bleu", "distinct_1")
ZERO_SHOT, FEW_SHOT = "zero_shot", "few_shot"
#: DESIGN.md: a task shows a pass@k difference between objectives only if the fine-tuned
#: model's pass@1 lands mid-range.
MID_RANGE = (0.2, 0.6)

@dataclass(frozen=True)
class SummaryCell:
    """One (group, metric) row of compare's ``summary.csv``."""

    group: str
    metric: str
    higher_is_better: bool
    n_runs: int
    mean: float
    low: float
    high: float
    n_prompts: int


@dataclass(frozen=True)
class TestCell:
    """One row of compare's ``tests.csv``: the candidate vs the baseline on one metric."""

    __test__ = False  # not a pytest class

    group: str
    metric: str
    role: str  # primary | secondary | non-inferiority | excluded
    method: str
    n_seeds: int
    n_prompts: int
    delta: float  # candidate − baseline, native units
    low: float
    high: float
    p: float
    p_holm: float
    mde: float
    verdict: str
    reason: str = ""
    seed_p: float = math.nan
    seed_d_z: float = math.nan
    wilcoxon_p: float = math.nan

    @property
    def primary(self) -> bool:
        """Whether this is the declared primary endpoint."""
        return self.role == "primary"


@dataclass(frozen=True)
class GroupCost:
    """Mean wall times of a group's runs (seconds)."""

    group: str
    n_runs: int
    run_wall_s: float
    train_wall_s: float
    steps: float

    @property
    def seconds_per_step(self) -> float:
        """Training wall time per optimizer step (NaN without training)."""
        return self.train_wall_s / self.steps if self.steps > 0 else math.nan


@dataclass
class ReportInputs:
    """Where the report's numbers come from."""

    experiment: str
    tracking_uri: str
    launch_id: str | None
    baseline: str
    candidate: str
    compare_dir: Path
    all_groups_dir: Path | None = None
    launch: Mapping[str, Any] = field(default_factory=dict)
    lambda_summary: Path | None = None
    #: Paths under this folder (the checkout) are written relative to it, so the committed
    #: report reads the same on every machine.
    root: Path | None = None


def portable(text: str, root: Path | None) -> str:
    """``text`` with absolute paths under ``root`` made relative to it (sqlite URIs too)."""
    if root is None:
        return text
    prefix = str(Path(root).resolve()).rstrip("/") + "/"
    return text.replace(f"sqlite:///{prefix}", "sqlite:///").replace(prefix, "")


def to_float(value: str | None) -> float:
    """A CSV cell as a float; NaN when empty or not a number."""
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_summary(path: Path) -> dict[tuple[str, str], SummaryCell]:
    """compare's ``summary.csv`` keyed by ``(group, metric)``."""
    out: dict[tuple[str, str], SummaryCell] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cell = SummaryCell(
                group=row["group"], metric=row["metric"],
                higher_is_better=row["higher_is_better"] == "True",
                n_runs=int(row["n_runs"]), mean=to_float(row["mean"]), low=to_float(row["ci_low"]),
                high=to_float(row["ci_high"]), n_prompts=int(row.get("n_prompts") or 0),
            )
            out[(cell.group, cell.metric)] = cell
    return out


def read_tests(path: Path) -> list[TestCell]:
    """compare's ``tests.csv``."""
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.append(TestCell(
                group=row["group"], metric=row["metric"], role=row["role"],
                method=row["method"], n_seeds=int(row["n_seeds"] or 0),
                n_prompts=int(row["n_prompts"] or 0), delta=to_float(row["delta"]),
                low=to_float(row["ci_low"]), high=to_float(row["ci_high"]), p=to_float(row["p"]),
                p_holm=to_float(row["p_holm"]), mde=to_float(row["mde"]), verdict=row["verdict"],
                reason=row.get("reason") or "", seed_p=to_float(row.get("seed_p")),
                seed_d_z=to_float(row.get("seed_d_z")), wilcoxon_p=to_float(row.get("wilcoxon_p")),
            ))
    return out


def primary_tests(tests: Sequence[TestCell], group: str) -> dict[str, TestCell]:
    """``group``'s effect row per metric (role, Δ with CI, verdict)."""
    return {t.metric: t for t in tests if t.group == group}


def runs_of_launch(inputs: ReportInputs) -> list[mlruns.RunInfo]:
    """The FINISHED runs of the experiment, only the launch's when a launch id is given."""
    client = mlruns.get_client(inputs.tracking_uri)
    where = f"tags.`{names.LAUNCH_TAG}` = '{inputs.launch_id}'" if inputs.launch_id else None
    return mlruns.select_runs(client, inputs.experiment, where)


def group_costs(runs: Sequence[mlruns.RunInfo]) -> dict[str, GroupCost]:
    """Mean ``run/wall_time_s``, ``train/wall_time_s`` and ``train/steps`` per group."""
    by_group: dict[str, list[mlruns.RunInfo]] = {}
    for r in runs:
        by_group.setdefault(r.tags.get(mlruns.GROUP_TAG, "?"), []).append(r)

    def mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.nan

    return {
        g: GroupCost(
            group=g, n_runs=len(rs),
            run_wall_s=mean([r.metrics.get(names.RUN_WALL_TIME, math.nan) for r in rs]),
            train_wall_s=mean([r.metrics.get(names.TRAIN_WALL_TIME, math.nan) for r in rs]),
            steps=mean([r.metrics.get(names.TRAIN_STEPS, math.nan) for r in rs]),
        )
        for g, rs in sorted(by_group.items())
    }
