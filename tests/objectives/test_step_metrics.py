"""Per-step bookkeeping: the step position with and without the Trainer's step, the monitors
fed once per optimizer step with the mean of its micro-batches, and the logged names."""

from __future__ import annotations

from polylora.objectives.monitors import NoSignalMonitor, TrainingMonitor
from polylora.objectives.step_metrics import (
    StepCounter,
    StepMonitors,
    StepTimes,
    ce_only_metrics,
    generation_metrics,
)
from polylora.record import names


def test_position_follows_the_trainers_step_else_counts_calls() -> None:
    counted = StepCounter()
    assert [counted.position(None, 2) for _ in range(5)] == [(0, 0), (0, 1), (1, 0), (1, 1),
                                                              (2, 0)]
    given = StepCounter()
    assert [given.position(s, 2) for s in (7, 7, 8, 8)] == [(7, 0), (7, 1), (8, 0), (8, 1)]


class RecordingMonitor(TrainingMonitor):
    """A TrainingMonitor that keeps what it was fed."""

    def __init__(self) -> None:
        super().__init__(collapse_floor=0.1, patience=3, window=6)
        self.seen: list[tuple[int, float, float]] = []

    def observe(self, step: int, diversity: float, quality: float):  # type: ignore[override]
        self.seen.append((step, diversity, quality))
        return super().observe(step, diversity, quality)


def test_monitors_see_each_optimizer_step_once_as_the_mean() -> None:
    recording = RecordingMonitor()
    monitors = StepMonitors(recording, NoSignalMonitor(patience=1), watch_signal=True)
    monitors.observe(0, 0, 2, diversity=0.2, quality=1.0, has_signal=False)
    assert recording.seen == []  # the step's first micro-batch: not yet
    monitors.observe(0, 1, 2, diversity=0.4, quality=0.0, has_signal=False)
    assert recording.seen == [(0, 0.30000000000000004, 0.5)]
    assert [w.kind for w in monitors.warnings] == ["no_signal"]


def test_metric_names_come_from_the_record() -> None:
    assert ce_only_metrics(2.0, 0.5) == {names.TRAIN_QUALITY_LOSS: 2.0,
                                         names.TRAIN_COMBINED_LOSS: 1.0}
    logged = generation_metrics(pg_loss=0.1, combined_loss=2.1, diversity=0.5, quality=1.0,
                                advantages=[[1.0, -1.0]], has_signal=True,
                                sample_ids=[[[1, 2], [3]]], times=StepTimes(1.0, 2.0, 3.0))
    assert logged[names.TRAIN_ADVANTAGE_ABS] == 1.0
    assert logged[names.TRAIN_SAMPLE_TOKENS] == 1.5
    assert logged[names.TRAIN_NO_SIGNAL] == 0.0
    assert all(name.startswith("train/") for name in logged)
