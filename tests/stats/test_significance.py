"""Tests for polylora.stats.significance: values checked against hand computation or scipy
directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from polylora.errors import PolyloraError
from polylora.stats.significance import (
    StatsError,
    TestResult,
    bonferroni,
    bootstrap_ci,
    cohens_d,
    holm,
    mann_whitney,
    margin_of_error,
    paired_cohens_d,
    wilcoxon_paired,
)

# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_the_mean() -> None:
    values = np.random.default_rng(1).normal(0.5, 0.1, size=200)
    est, low, high = bootstrap_ci(values, n_resamples=2_000, seed=7)
    again = bootstrap_ci(values, n_resamples=2_000, seed=7)
    assert (est, low, high) == tuple(again)
    assert est == pytest.approx(float(np.mean(values)))
    assert low < est < high
    # Width close to the normal-theory 95 % interval: 2 * 1.96 * s / sqrt(n).
    expected = 2 * 1.96 * np.std(values, ddof=1) / math.sqrt(values.size)
    assert high - low == pytest.approx(expected, rel=0.15)
    other = bootstrap_ci(values, n_resamples=2_000, seed=8)
    assert (other.low, other.high) != (low, high)


def test_bootstrap_confidence_widens_interval_and_named_fields() -> None:
    values = list(range(30))
    ci90 = bootstrap_ci(values, confidence=0.90, n_resamples=2_000)
    ci99 = bootstrap_ci(values, confidence=0.99, n_resamples=2_000)
    assert ci99.low < ci90.low and ci99.high > ci90.high
    assert ci90.estimate == pytest.approx(14.5)


def test_bootstrap_custom_statistic_with_and_without_axis_support() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    est, low, high = bootstrap_ci(values, n_resamples=500, statistic=np.median)
    assert est == 3.0 and low <= est <= high
    # A statistic without an axis argument takes the per-row fallback, same answer.
    est2, low2, high2 = bootstrap_ci(
        values, n_resamples=500, statistic=lambda x: float(np.median(x))
    )
    assert (est2, low2, high2) == (est, low, high)


def test_bootstrap_chunking_keeps_results_bounded_for_large_samples() -> None:
    values = np.random.default_rng(0).random(5_000)
    est, low, high = bootstrap_ci(values, n_resamples=1_000)
    assert low < est < high and high - low < 0.05


def test_bootstrap_single_value_and_errors() -> None:
    assert tuple(bootstrap_ci([0.7])) == (0.7, 0.7, 0.7)
    with pytest.raises(StatsError, match="at least 1 value"):
        bootstrap_ci([])
    with pytest.raises(StatsError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(StatsError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(StatsError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_stats_error_is_a_polylora_error_and_a_value_error() -> None:
    with pytest.raises(PolyloraError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([])


# ----------------------------------------------------------------------------- tests


def test_mann_whitney_matches_scipy_and_reports_sizes() -> None:
    a = [0.1, 0.2, 0.25, 0.3, 0.4]
    b = [0.35, 0.5, 0.55, 0.6, 0.7, 0.8]
    res = mann_whitney(a, b)
    ref = sps.mannwhitneyu(a, b, alternative="two-sided")
    assert isinstance(res, TestResult)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert (res.test, res.n_a, res.n_b, res.alternative) == ("Mann-Whitney U", 5, 6, "two-sided")
    # a (baseline) smaller than b: the one-sided "less" p is half the two-sided one.
    assert mann_whitney(a, b, alternative="less").pvalue == pytest.approx(ref.pvalue / 2)
    assert mann_whitney(a, b, alternative="greater").pvalue > 0.9


def test_mann_whitney_identical_constants_and_bad_input() -> None:
    assert mann_whitney([1, 1, 1], [1, 1, 1]).pvalue == 1.0
    with pytest.raises(StatsError, match="alternative"):
        mann_whitney([1], [2], alternative="bigger")  # type: ignore[arg-type]
    with pytest.raises(StatsError, match=r"\(b\)"):
        mann_whitney([1, 2], [])


def test_wilcoxon_paired_matches_scipy_and_handles_zero_differences() -> None:
    a = [0.2, 0.4, 0.1, 0.5, 0.3, 0.6, 0.2, 0.45]
    b = [0.3, 0.6, 0.2, 0.55, 0.5, 0.7, 0.35, 0.5]
    res = wilcoxon_paired(a, b)
    ref = sps.wilcoxon(a, b)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert (res.test, res.n_a, res.n_b) == ("Wilcoxon signed-rank", 8, 8)
    assert wilcoxon_paired(a, b, alternative="less").pvalue < res.pvalue

    same = wilcoxon_paired([0.5, 0.5, 0.7], [0.5, 0.5, 0.7])
    assert (same.statistic, same.pvalue) == (0.0, 1.0)


def test_wilcoxon_paired_rejects_unequal_lengths() -> None:
    with pytest.raises(StatsError, match="differ in length"):
        wilcoxon_paired([1, 2, 3], [1, 2])


# ----------------------------------------------------------------------------- effect sizes


def test_cohens_d_hand_computed_and_sign_convention() -> None:
    a = [1.0, 2.0, 3.0]  # mean 2, var 1
    b = [3.0, 4.0, 5.0]  # mean 4, var 1 → pooled sd 1
    assert cohens_d(a, b) == pytest.approx(2.0)
    assert cohens_d(b, a) == pytest.approx(-2.0)
    # Unequal sizes: pooled var = (1*0.5 + 3*(5/3)) / 4 = 1.375.
    a2, b2 = [1.0, 2.0], [2.0, 3.0, 4.0, 5.0]
    assert cohens_d(a2, b2) == pytest.approx((3.5 - 1.5) / math.sqrt(1.375))


def test_cohens_d_zero_variance_and_too_few_values() -> None:
    assert cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0
    assert cohens_d([1.0, 1.0], [2.0, 2.0]) == math.inf
    assert cohens_d([2.0, 2.0], [1.0, 1.0]) == -math.inf
    assert cohens_d([1.0], [1.0, 3.0]) == pytest.approx(1.0 / math.sqrt(2.0))
    with pytest.raises(StatsError, match="at least 3 values"):
        cohens_d([1.0], [2.0])


def test_paired_cohens_d() -> None:
    a = [1.0, 2.0, 3.0, 4.0]
    b = [2.0, 4.0, 4.0, 6.0]  # diffs 1, 2, 1, 2: mean 1.5, sd sqrt(1/3)
    assert paired_cohens_d(a, b) == pytest.approx(1.5 / math.sqrt(1 / 3))
    assert paired_cohens_d([1.0, 2.0], [2.0, 3.0]) == math.inf
    assert paired_cohens_d([1.0, 2.0], [1.0, 2.0]) == 0.0
    with pytest.raises(StatsError, match="differ in length"):
        paired_cohens_d([1.0, 2.0, 3.0], [1.0, 2.0])


# ----------------------------------------------------------------------------- corrections


def test_bonferroni_hand_computed() -> None:
    assert bonferroni([0.01, 0.04, 0.3]) == pytest.approx([0.03, 0.12, 0.9])
    assert bonferroni([0.5, 0.2]) == [1.0, 0.4]
    assert bonferroni([]) == []


def test_holm_hand_computed_in_input_order() -> None:
    # Sorted: 0.01*4=0.04, 0.02*3=0.06, 0.03*2=0.06, 0.04*1=0.04 → cummax 0.04, 0.06, 0.06, 0.06.
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # Capped at 1 and monotone: 0.4*3=1.2→1, then max(1, 0.45*2) = 1.
    assert holm([0.4, 0.45, 0.9]) == [1.0, 1.0, 1.0]
    assert holm([0.001, 0.2]) == pytest.approx([0.002, 0.2])
    assert holm([]) == []


def test_holm_is_monotone_and_never_above_bonferroni() -> None:
    p = list(np.random.default_rng(3).random(12) ** 3)
    adj, bon = holm(p), bonferroni(p)
    order = np.argsort(p)
    assert all(np.diff(np.array(adj)[order]) >= 0)
    assert all(h <= bf + 1e-12 for h, bf in zip(adj, bon, strict=True))
    assert all(h >= raw for h, raw in zip(adj, p, strict=True))


def test_corrections_reject_invalid_pvalues() -> None:
    with pytest.raises(StatsError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])
    with pytest.raises(StatsError):
        bonferroni([float("nan")])


# ----------------------------------------------------------------------------- proportions


def test_margin_of_error_ten_points_at_n_100() -> None:
    moe = margin_of_error(0.5, 100)
    assert moe == pytest.approx(1.959964 * 0.05, rel=1e-5)
    assert round(moe, 2) == 0.10  # "±10 % at 95 % confidence" for n = 100
    assert margin_of_error(0.5, 400) == pytest.approx(moe / 2)
    assert margin_of_error(0.0, 50) == 0.0
    assert margin_of_error(0.5, 100, confidence=0.99) > moe
    with pytest.raises(StatsError, match="n=0"):
        margin_of_error(0.5, 0)
    with pytest.raises(StatsError, match=r"p=1\.2"):
        margin_of_error(1.2, 10)


# ----------------------------------------------------------------------------- verdict


def test_unpaired_primitives_agree_on_a_clear_difference() -> None:
    rng = np.random.default_rng(11)
    baseline = rng.normal(0.40, 0.1, size=100)
    candidate = rng.normal(0.55, 0.1, size=100)
    test = mann_whitney(baseline, candidate, alternative="less")
    d = cohens_d(baseline, candidate)
    assert d > 1.0
    assert test.pvalue < 0.01
