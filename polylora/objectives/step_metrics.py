"""Per-step bookkeeping of the sampled-set core: which optimizer step and micro-batch a call
is, the scalars a step logs (``train/...``), and the training-health monitors fed once per
optimizer step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polylora.objectives.advantages import grpo_advantages, normalize_advantages
from polylora.objectives.monitors import (
    MonitorWarning,
    NoSignalMonitor,
    TrainingMonitor,
    emit_warning,
)
from polylora.record import names


class StepCounter:
    """(optimizer step, micro-batch within it) of each call: the Trainer's step when it
    gives one (so ``generate_every`` and the monitors continue after ``train.resume``), else
    this counter's own count of calls."""

    def __init__(self) -> None:
        self._calls = 0  # the fallback count (no Trainer telling the step)
        self._seen_step: int | None = None
        self._micro_in_step = 0

    def position(self, step: int | None, ga: int) -> tuple[int, int]:
        """Count one call of gradient accumulation ``ga`` at the Trainer's ``step``."""
        if step is None:
            fallback, micro = divmod(self._calls, ga)
            self._calls += 1
            return fallback, micro
        if step != self._seen_step:
            self._seen_step, self._micro_in_step = step, 0
        micro = self._micro_in_step
        self._micro_in_step += 1
        return step, micro


class StepMonitors:
    """The collapse / reward-hacking monitor and the no-signal monitor, fed the mean of an
    optimizer step's micro-batches; the warnings that fired, in order."""

    def __init__(self, monitor: TrainingMonitor, no_signal: NoSignalMonitor,
                 watch_signal: bool) -> None:
        self.monitor = monitor
        self.no_signal = no_signal
        self.watch_signal = watch_signal  # λ > 0: a step without signal is worth a warning
        self.warnings: list[MonitorWarning] = []
        self._step_obs: list[tuple[float, float, bool]] = []

    def observe(self, step: int, micro: int, ga: int, diversity: float, quality: float,
                has_signal: bool) -> None:
        """Record one micro-batch; at the last of its step, feed the monitors."""
        self._step_obs.append((diversity, quality, has_signal))
        if micro < ga - 1:
            return
        d = float(np.mean([o[0] for o in self._step_obs]))
        q = float(np.mean([o[1] for o in self._step_obs]))
        signal = any(o[2] for o in self._step_obs)
        self._step_obs.clear()
        fired = self.monitor.observe(step, d, q)
        if self.watch_signal:
            fired += self.no_signal.observe(step, signal)
        for warning in fired:
            self.warnings.append(warning)
            emit_warning(warning)


@dataclass(frozen=True)
class StepTimes:
    """Seconds spent sampling, scoring and in the teacher-forced passes of one step (their
    backward too when micro-batched; the rest runs in the Trainer after the step)."""

    generation: float
    scoring: float
    learning: float


#: Two unit-length advantage vectors closer than this in every entry point the same way.
SAME_DIRECTION_TOL = 1e-6


def _unit(values: Sequence[float]) -> np.ndarray:
    """``values`` scaled to unit length (a zero vector stays zero)."""
    v = np.asarray(values, dtype=float)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def pass1_advantages(rewards: Sequence[float]) -> list[float]:
    """GRPO's std-scaled advantages of one group's 0/1 rewards (what pass@1 RL would train
    on, for comparison: the scale does not matter, only the direction)."""
    return normalize_advantages([grpo_advantages(rewards)], "group_std")[0]


def differs_from_pass1(advantages: Sequence[Sequence[float]],
                       rewards: Sequence[Sequence[float]]) -> float | None:
    """Share of groups whose advantages (as the policy gradient weighs them) are not a
    positive multiple of pass@1 RL's on the same rewards; None unless every reward is 0 or 1.

    Within a group, advantages that are a positive multiple of GRPO's move the policy the same
    way; across groups their sizes may still differ. A group with no signal under one rule and
    some under the other counts as different.
    """
    if not rewards or any(r not in (0.0, 1.0) for rs in rewards for r in rs):
        return None
    differ = [
        bool(np.max(np.abs(_unit(a) - _unit(pass1_advantages(r))), initial=0.0)
             > SAME_DIRECTION_TOL)
        for a, r in zip(advantages, rewards, strict=True)
    ]
    return float(np.mean(differ))


def ce_only_metrics(quality_loss: float, ce_weight: float) -> dict[str, float]:
    """The scalars of a step without generation: the CE term and the weighted loss."""
    return {names.TRAIN_QUALITY_LOSS: quality_loss,
            names.TRAIN_COMBINED_LOSS: ce_weight * quality_loss}


def generation_metrics(
    *, pg_loss: float, combined_loss: float, diversity: float, quality: float,
    advantages: Sequence[Sequence[float]], has_signal: bool,
    sample_ids: Sequence[Sequence[Sequence[int]]], times: StepTimes,
) -> dict[str, float]:
    """The scalars of a generation step besides its CE and KL terms."""
    return {
        names.TRAIN_PG_LOSS: pg_loss,
        names.TRAIN_COMBINED_LOSS: combined_loss,
        names.TRAIN_DIVERSITY_SCORE: diversity,
        names.TRAIN_SAMPLE_QUALITY: quality,
        names.TRAIN_ADVANTAGE_ABS: float(np.mean([abs(a) for aa in advantages for a in aa])),
        names.TRAIN_NO_SIGNAL: float(not has_signal),
        names.TRAIN_SAMPLE_TOKENS: float(np.mean([len(s) for ss in sample_ids for s in ss])),
        names.TRAIN_GENERATION_TIME: times.generation,
        names.TRAIN_SCORING_TIME: times.scoring,
        names.TRAIN_LEARNING_TIME: times.learning,
    }
