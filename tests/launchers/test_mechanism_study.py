"""The exact mechanism study: its enumerated update is the estimator's exact expectation
(closed forms for pass@1 and pass@k RL), and a run writes the figure and CSV it documents."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from helpers import REPO

SCRIPT = REPO / "launchers" / "mechanism_study.py"


def load() -> ModuleType:
    """launchers/mechanism_study.py as a module (launchers/ is not a package)."""
    spec = importlib.util.spec_from_file_location("mechanism_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ms = load()
N = 4


@pytest.fixture(scope="module")
def task() -> object:
    return ms.make_task(prompts=5, answers=7, seed=3)


def policy(task: object) -> np.ndarray:
    theta = np.random.default_rng(1).normal(0, 0.5, task.answers)  # type: ignore[attr-defined]
    return ms.softmax(theta[None, :] + task.offsets)  # type: ignore[attr-defined]


def test_group_probabilities_sum_to_one(task: object) -> None:
    table = ms.group_table(task, N, ms.grpo("none"))
    probs = ms.group_probs(table, policy(task))
    assert probs.shape == (5, len(table.groups))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)


def test_pass_at_1_rl_update_is_the_scaled_gradient_of_expected_reward(task: object) -> None:
    """Unscaled GRPO: E = (N − 1)/N · π ⊙ (r − J) per prompt (the group mean holds the sample)."""
    pi = policy(task)
    r = task.correct.astype(float)  # type: ignore[attr-defined]
    j = (pi * r).sum(axis=1, keepdims=True)
    exact = (N - 1) / N * pi * (r - j)
    update = ms.expected_update(ms.group_table(task, N, ms.grpo("none")), pi, N)
    np.testing.assert_allclose(update, exact, atol=1e-12)
    # With 0/1 rewards, std-scaling per group reweights each prompt by its own factor (one per
    # prompt, different between prompts): not a constant factor of ∇J.
    scaled = ms.expected_update(ms.group_table(task, N, ms.grpo("group_std")), pi, N)
    ratios = [row_s[row_e != 0] / row_e[row_e != 0] for row_s, row_e in zip(scaled, exact,
                                                                             strict=True)]
    assert all(np.ptp(r) < 1e-9 for r in ratios)
    assert np.ptp([r[0] for r in ratios]) > 1e-3


@pytest.mark.parametrize("k", [2, 3])
def test_pass_at_k_rl_update_is_the_gradient_of_pass_at_k_over_k(task: object, k: int) -> None:
    """Unscaled PKPO: E = (1/k) ∇ pass@k = (1 − p)^(k−1) · π ⊙ (r − p), p = π(correct)."""
    pi = policy(task)
    r = task.correct.astype(float)  # type: ignore[attr-defined]
    p = (pi * r).sum(axis=1, keepdims=True)
    exact = (1 - p) ** (k - 1) * pi * (r - p)
    update = ms.expected_update(ms.group_table(task, N, ms.pkpo(k, "none")), pi, N)
    np.testing.assert_allclose(update, exact, atol=1e-12)


def test_sharpening_metric_falls_as_mass_concentrates(task: object) -> None:
    spread = ms.softmax(np.zeros((5, 7)))
    peaked = ms.softmax(np.where(task.correct, 0.0, -30.0)  # type: ignore[attr-defined]
                        + np.eye(7)[np.argmax(task.correct, axis=1)] * 8)  # type: ignore[attr-defined]
    assert ms.distinct_per_correct(task, peaked) < ms.distinct_per_correct(task, spread)
    assert ms.pass_at_k(task, peaked, 1) > 0.99


def test_run_writes_figure_and_csv_and_pass_at_1_rl_sharpens_more_than_ce(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]
                                                                  ) -> None:
    assert ms.main(["--steps", "40", "--prompts", "6", "--answers", "8", "--out",
                    str(tmp_path)]) == 0
    assert (tmp_path / "mechanism.png").stat().st_size > 10_000
    rows = (tmp_path / "mechanism.csv").read_text().splitlines()
    assert rows[0].startswith("arm,step,pass@1")
    assert len(rows) == 1 + 7 * 41  # 7 arms × (40 steps + the start)
    end = {r.split(",")[0]: r.split(",") for r in rows[1:] if r.split(",")[1] == "40"}
    per_correct = {name: float(row[-1]) for name, row in end.items()}
    # pass@1 RL concentrates the correct mass more than CE continued does.
    assert per_correct["pass@1 RL (GRPO)"] < per_correct["CE continued"]
    assert "differ from GRPO's" in capsys.readouterr().out
