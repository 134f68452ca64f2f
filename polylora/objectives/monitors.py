"""Training-health monitors of the sampled-set objectives (pure), and how a warning is emitted.

- ``TrainingMonitor``: diversity collapse and reward hacking, from (diversity, quality) per
  generation step.
- ``NoSignalMonitor``: the policy-gradient term had no signal (every advantage 0) for K
  generation steps in a row, e.g. every sample wrong: the RL term is doing nothing.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorWarning:
    """A training-health warning: ``kind`` names the MLflow tag, ``step`` where it fired."""

    kind: str
    step: int
    message: str


class TrainingMonitor:
    """Watches (diversity, quality) per generation step for two failure signs.

    - ``diversity_collapse``: mean diversity below ``collapse_floor`` for ``patience``
      consecutive observations (the adapter answers every prompt the same way).
    - ``reward_hacking``: over the last ``window`` observations, diversity rose by more than
      ``min_change`` (mean of the later half minus the earlier half) while sample quality fell
      by more than ``min_change`` (diverse but worse answers: the diversity term is winning).

    Each warning fires once per episode and re-arms when its condition clears. Pure: no
    logging or MLflow here (see :func:`emit_warning`).
    """

    def __init__(
        self,
        collapse_floor: float = 0.1,
        patience: int = 3,
        window: int = 6,
        min_change: float = 0.05,
        weight_name: str = "pg_weight",
    ) -> None:
        self.collapse_floor = collapse_floor
        self.patience = patience
        self.window = max(window, 2)
        self.min_change = min_change
        self.weight_name = weight_name  # the knob the messages tell the user to turn
        self._below = 0
        self._collapse_active = False
        self._hacking_active = False
        self._history: deque[tuple[float, float]] = deque(maxlen=self.window)

    def observe(self, step: int, diversity: float, quality: float) -> list[MonitorWarning]:
        """Record one observation; return the warnings that fire on it."""
        out: list[MonitorWarning] = []
        self._below = self._below + 1 if diversity < self.collapse_floor else 0
        if self._below >= self.patience and not self._collapse_active:
            self._collapse_active = True
            out.append(MonitorWarning(
                "diversity_collapse", step,
                f"diversity collapse at step {step}: mean set diversity {diversity:.3f} below "
                f"objective.collapse_floor={self.collapse_floor} for {self._below} consecutive "
                f"generation steps (raise objective.{self.weight_name} or objective.temperature)",
            ))
        elif self._below == 0:
            self._collapse_active = False
        self._history.append((diversity, quality))
        hacking = False
        if len(self._history) == self.window:
            half = self.window // 2
            early, late = list(self._history)[:half], list(self._history)[-half:]
            d_up = np.mean([d for d, _ in late]) - np.mean([d for d, _ in early])
            q_down = np.mean([q for _, q in early]) - np.mean([q for _, q in late])
            hacking = d_up > self.min_change and q_down > self.min_change
            if hacking and not self._hacking_active:
                out.append(MonitorWarning(
                    "reward_hacking", step,
                    f"possible reward hacking at step {step}: over the last {self.window} "
                    f"generation steps diversity rose by {d_up:.3f} while sample quality fell "
                    f"by {q_down:.3f} (lower objective.{self.weight_name})",
                ))
        self._hacking_active = hacking
        return out


def emit_warning(warning: MonitorWarning) -> None:
    """Log the warning and tag the active MLflow run (``polylora.warning.<kind>=step N``)."""
    log.warning(warning.message)
    try:
        from polylora.record import names, writer

        writer.set_active_run_tag(names.warning_tag(warning.kind), f"step {warning.step}")
    except Exception as exc:  # tracking must never stop training
        log.debug("could not tag the MLflow run: %s", exc)


class NoSignalMonitor:
    """Counts consecutive generation steps on which every advantage was 0.

    Fires once per episode after ``patience`` such steps (re-arms when a step has a signal).
    The message names the fixes: the PG term cannot learn from sets that are all wrong (or
    all right), so the run is plain CE (or nothing, with ``objective.ce_weight=0``).
    """

    def __init__(self, patience: int = 5) -> None:
        self.patience = patience
        self._silent = 0

    def observe(self, step: int, has_signal: bool) -> list[MonitorWarning]:
        """Record one generation step; return the warning when it fires."""
        if has_signal:
            self._silent = 0
            return []
        self._silent += 1
        if self._silent != self.patience:
            return []
        return [MonitorWarning(
            "no_signal", step,
            f"no policy-gradient signal at step {step}: every advantage was 0 for "
            f"{self.patience} generation steps in a row (e.g. every sample wrong, or every "
            "sample right), so the RL term changes nothing; start from a CE adapter "
            "(model.adapter=runs:/<run_id>/adapter), keep objective.ce_weight > 0, raise "
            "objective.n_generations or objective.temperature, or use an easier task",
        )]
