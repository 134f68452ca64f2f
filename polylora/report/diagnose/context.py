"""One run's curves validated and sorted, the numbers several rules share (the gap, the eval
minimum), and the commands the rules suggest (built from the run's experiment and the
matrix's columns, never from names written here)."""

from __future__ import annotations

import math

import numpy as np

from polylora.errors import ConfigError, DataError
from polylora.report.diagnose.inputs import OBJECTIVES, Columns, RunCurves, Thresholds

__all__ = [
    "COMMAND_PREFIX",
    "DIVERSITY_WEIGHT_OVERRIDE",
    "EPOCHS_OVERRIDE",
    "RANK32_OVERRIDE",
    "SEEDS",
    "SEED_OVERRIDE",
    "RunContext",
    "command",
]

COMMAND_PREFIX = "python -m polylora"
EPOCHS_OVERRIDE = "train.epochs"  # polylora/conf/config.yaml: train.epochs
SEED_OVERRIDE = "seed"
SEEDS = "42,123,456"  # the three training seeds of the comparison protocol
DIVERSITY_WEIGHT_OVERRIDE = "objective.pg_weight"
RANK32_OVERRIDE = "lora=r32"


def command(experiment: str | None, *overrides: str, multirun: bool = False) -> str | None:
    """``python -m polylora [-m] +experiment=NAME OVERRIDES``; None without an experiment."""
    if experiment is None:
        return None
    parts = [COMMAND_PREFIX, *(["-m"] if multirun else []), f"+experiment={experiment}"]
    return " ".join([*parts, *overrides])


class RunContext:
    """Validated, sorted curves plus the derived numbers several rules share."""

    def __init__(self, curves: RunCurves, th: Thresholds, columns: Columns) -> None:
        if curves.objective not in OBJECTIVES:
            raise ConfigError(
                f"objective={curves.objective!r} is unknown to diagnose; use "
                + " or ".join(repr(o) for o in OBJECTIVES)
            )
        if not curves.train_loss:
            raise DataError(
                "no train/loss points in this run: it logged no training loss; "
                "check the run id and that logging_steps is smaller than the run's steps"
            )
        if not curves.eval_loss:
            raise DataError(
                "no eval/loss points in this run: enable evaluation during training "
                "(eval every epoch or every N steps) and re-run"
            )
        if curves.steps_per_epoch is not None and curves.steps_per_epoch < 1:
            raise DataError(f"steps_per_epoch={curves.steps_per_epoch} must be >= 1 or None")
        if th.smoothing_window < 1:
            raise ConfigError(f"smoothing_window={th.smoothing_window} must be >= 1")
        self.curves = curves
        self.th = th
        self.columns = columns
        self.objective = curves.objective
        self.experiment = curves.experiment or columns.standard.get(curves.objective)
        self.conservative = columns.is_conservative(self.experiment)
        train = sorted((int(s), float(v)) for s, v in curves.train_loss)
        evals = sorted((int(s), float(v)) for s, v in curves.eval_loss)
        self.n_nonfinite_train = sum(not math.isfinite(v) for _, v in train)
        self.n_nonfinite_eval = sum(not math.isfinite(v) for _, v in evals)
        self.train = [(s, v) for s, v in train if math.isfinite(v)]
        self.evals = [(s, v) for s, v in evals if math.isfinite(v)]
        if not self.train or not self.evals:
            which = "train" if not self.train else "eval"
            target = columns.conservative.get(self.objective)
            raise DataError(
                f"every {which} loss value is NaN or infinite: training diverged; "
                "lower the learning rate"
                + (f" (e.g. +experiment={target})" if target else "") + " and re-run"
            )
        # The gap: last eval point vs. smoothed train loss at or before that step.
        self.eval_step, self.eval_last = self.evals[-1]
        before = [p for p in self.train if p[0] <= self.eval_step]
        if before:
            window = before[-th.smoothing_window :]
        else:  # eval logged before any train point: use the nearest train points
            window = sorted(self.train, key=lambda p: abs(p[0] - self.eval_step))[
                : th.smoothing_window
            ]
        self.train_at_eval = float(np.mean([v for _, v in window]))
        self.train_window = len(window)
        self.train_window_steps = (min(s for s, _ in window), max(s for s, _ in window))
        self.gap = self.eval_last - self.train_at_eval
        # Eval minimum (first occurrence) and the rise after it.
        values = [v for _, v in self.evals]
        i_min = int(np.argmin(values))
        self.eval_min_step, self.eval_min = self.evals[i_min]
        self.eval_rise = self.eval_last - self.eval_min
        self.eval_rising = i_min < len(self.evals) - 1 and self.eval_rise > th.eval_rise_margin

    def epoch(self, step: int) -> int | None:
        """1-based epoch containing ``step`` (a step at an epoch's end belongs to that epoch)."""
        spe = self.curves.steps_per_epoch
        if spe is None:
            return None
        return max(1, math.ceil(step / spe))

    def epoch_text(self, step: int) -> str:
        """``epoch N`` for ``step``, or ``epoch unknown`` without steps per epoch."""
        e = self.epoch(step)
        return f"epoch {e}" if e is not None else "epoch unknown"

    def rerun(self, *overrides: str, multirun: bool = False) -> str | None:
        """The run's own experiment again, with ``overrides``."""
        return command(self.experiment, *overrides, multirun=multirun)

    def conservative_command(self) -> str | None:
        """The conservative column for this objective; None when the run is already on it
        (or the columns name none)."""
        if self.conservative:
            return None
        return command(self.columns.conservative.get(self.objective))

    def current_lambda(self) -> tuple[float | None, str]:
        """λ as the run recorded it, else the objective's default (said so), else None."""
        if self.curves.diversity_weight is not None:
            return float(self.curves.diversity_weight), ""
        default = self.columns.default_lambda.get(self.objective)
        if default is None:
            return None, " (not recorded)"
        return float(default), f" (assumed: the {self.objective} objective's default λ)"

    def raised_lambda(self, lam: float) -> float | None:
        """λ doubled up to the cap; from 0, the objective's default λ."""
        if lam > 0:
            return min(self.th.lambda_max, 2 * lam)
        return self.columns.default_lambda.get(self.objective)
