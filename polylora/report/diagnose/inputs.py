"""What the overfitting decision matrix reads: one run's curves and recorded settings, the
decision boundaries, and the matrix's columns (which experiment runs each column)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CE", "OBJECTIVES", "POLYCHROMIC", "Columns", "RunCurves", "Thresholds"]

#: The objectives the rules know, by config name (files of ``conf/objective/``).
CE = "ce"
POLYCHROMIC = "polychromic"
OBJECTIVES = (CE, POLYCHROMIC)


@dataclass
class RunCurves:
    """What the decision matrix needs from one training run, as the run recorded it; optional
    fields enable more rules."""

    train_loss: list[tuple[int, float]]  # (step, value)
    eval_loss: list[tuple[int, float]]
    steps_per_epoch: int | None
    eval_perplexity: float | None
    n_train_examples: int | None
    diversity: float | None = None  # e.g. eval/semantic_diversity, in [0, 1]
    quality: float | None = None  # e.g. eval/accuracy or rouge, higher is better
    objective: str = CE  # the objective's config name (tag polylora.objective)
    diversity_weight: float | None = None  # λ (param objective.pg_weight)
    experiment: str | None = None  # tag polylora.experiment: the commands rerun it
    baseline_quality: float | None = None  # the CE baseline's quality, to judge "poor quality"


@dataclass(frozen=True)
class Columns:
    """The matrix's standard and conservative columns as experiments, per objective, and the λ
    a diversity-aware objective has by default (its config's). Read from
    ``conf/diagnose/columns.yaml`` and ``conf/objective/`` by :func:`load_columns`; empty means
    the commands can only rerun the run's own experiment."""

    standard: Mapping[str, str] = field(default_factory=dict)  # objective → experiment
    conservative: Mapping[str, str] = field(default_factory=dict)  # objective → experiment
    default_lambda: Mapping[str, float] = field(default_factory=dict)  # objective → λ

    def is_conservative(self, experiment: str | None) -> bool:
        """Whether ``experiment`` already runs the conservative column."""
        return experiment is not None and experiment in self.conservative.values()


@dataclass(frozen=True)
class Thresholds:
    """Decision boundaries; defaults are the small-data strategy's numbers where it gives them."""

    gap_monitor: float = 0.2  # gap in [0.2, 0.4] → monitor
    gap_act: float = 0.4  # gap > 0.4 → conservative
    gap_watch: float = 0.3  # standard-size data: adjust the config if the gap exceeds this
    smoothing_window: int = 5  # train points averaged for the gap
    eval_rise_margin: float = 0.05  # eval-loss rise above its minimum that counts
    underfit_rel_drop: float = 0.10  # relative train-loss drop over the last quarter
    underfit_gap: float = -0.2  # eval this far below train → underfitting sign
    perplexity_low: float = 5.0  # "reasonable (5-20)"
    perplexity_high: float = 20.0
    perplexity_act: float = 40.0  # "skyrocketing": twice the top of the range
    diversity_good: float = 0.3  # diversity "stable (0.3-0.5)"
    diversity_collapse: float = 0.1  # collapse: "dropping below 0.1"
    quality_poor: float = 0.25  # absolute floor, used without a baseline_quality
    quality_tolerance: float = 0.05  # relative loss vs baseline_quality that counts as poor
    lambda_max: float = 1.0  # raising λ stops here (λ is relative to CE)
