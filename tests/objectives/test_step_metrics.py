"""Per-step bookkeeping: the step position with and without the Trainer's step, the monitors
fed once per optimizer step with the mean of its micro-batches, and the logged names."""

from __future__ import annotations

import pytest

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


def polychromic_scaled(samples: list[str], rewards: list[float]) -> list[float]:
    """Polychromic's std-scaled advantages (mean q × distinct, marginal) of one group."""
    from polylora.objectives.advantages import (
        compute_advantages,
        normalize_advantages,
        subset_scorer,
    )
    from polylora.objectives.sampling import distinct_fraction

    keys = [s.strip().lower() for s in samples]
    f = subset_scorer(rewards, lambda t: distinct_fraction([samples[i] for i in t]),
                      "polychromic", keys)
    return normalize_advantages([compute_advantages(len(samples), f, "marginal")],
                                "group_std")[0]


def test_polychromic_moves_like_pass1_rl_when_every_answer_differs() -> None:
    """All answers distinct: every subset of a size has the same diversity, so the set score
    is linear in the rewards and the std-scaled advantages are GRPO's, for any count right."""
    from polylora.objectives.step_metrics import differs_from_pass1

    samples = ["ant", "bee", "cat", "dog"]
    groups = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0],
              [0.0, 0.0, 0.0, 0.0]]
    advantages = [polychromic_scaled(samples, r) for r in groups]
    assert differs_from_pass1(advantages, groups) == 0.0


def test_repeated_answers_make_polychromic_differ_from_pass1_rl() -> None:
    from polylora.objectives.step_metrics import differs_from_pass1

    groups = [(["ant", "ant", "cat", "dog"], [1.0, 1.0, 0.0, 0.0]),  # a correct answer twice
              (["ant", "bee", "cat", "cat"], [1.0, 0.0, 0.0, 0.0]),  # a wrong answer twice
              (["ant", "bee", "cat", "dog"], [1.0, 0.0, 0.0, 0.0])]  # all distinct: same
    advantages = [polychromic_scaled(s, r) for s, r in groups]
    assert differs_from_pass1(advantages, [r for _, r in groups]) == pytest.approx(2 / 3)


def test_pass1_rl_itself_and_its_multiples_do_not_differ() -> None:
    from polylora.objectives.grpo import grpo_advantages
    from polylora.objectives.step_metrics import differs_from_pass1, pass1_advantages

    rewards = [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
    assert differs_from_pass1([grpo_advantages(r) for r in rewards], rewards) == 0.0  # Dr. GRPO
    assert differs_from_pass1([pass1_advantages(r) for r in rewards], rewards) == 0.0
    flipped = [[-a for a in pass1_advantages(r)] for r in rewards]
    assert differs_from_pass1(flipped, rewards) == pytest.approx(2 / 3)  # the zero group agrees


def test_pkpo_credit_differs_where_a_group_has_a_correct_sample() -> None:
    """PKPO never pushes a wrong sample down; GRPO does: their directions differ in every
    group with a spread of rewards, and agree (no signal) in the others."""
    from polylora.objectives.passk import pkpo_advantages
    from polylora.objectives.step_metrics import differs_from_pass1

    rewards = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0] * 4, [1.0] * 4]
    advantages = [pkpo_advantages(r, 2) for r in rewards]
    # all correct: PKPO credits C(0, 1)/C(3, 1) = 0 each, GRPO 0: the same (no signal)
    assert differs_from_pass1(advantages, rewards) == pytest.approx(0.5)


def test_graded_rewards_have_no_pass1_contrast() -> None:
    from polylora.objectives.step_metrics import differs_from_pass1

    assert differs_from_pass1([[0.1, -0.1]], [[0.7, 0.2]]) is None
    assert differs_from_pass1([], []) is None
