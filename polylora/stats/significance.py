"""Statistics that make a baseline-vs-candidate comparison publishable.

Primitives only: bootstrap confidence intervals, rank tests (Mann-Whitney U for independent
samples, Wilcoxon signed-rank for paired ones), Cohen's d, multiple-comparison corrections
(Bonferroni, Holm) and the margin of error of a proportion. Intervals over seeds and
crossed designs are in :mod:`polylora.stats.intervals`; the compare report composes them.

Conventions used throughout:

* ``a`` is the **baseline**, ``b`` the **candidate**.
* Effect sizes (:func:`cohens_d`, :func:`paired_cohens_d`) are **positive when b > a**, i.e.
  when the candidate scores higher. For a lower-is-better metric (self-BLEU, loss) negate the
  values, or swap the arguments, before calling.
* Test ``alternative`` follows scipy: ``"greater"`` means *a* tends to be greater than *b*,
  ``"less"`` that *a* tends to be smaller (candidate better on a higher-is-better metric).
* Bad input raises :class:`StatsError`, which is both a :class:`~polylora.errors.PolyloraError`
  (one readable line for the CLI) and a :class:`ValueError` (for library callers).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy import stats as sps

from polylora.errors import PolyloraError

__all__ = [
    "MIN_EFFECT_SIZE",
    "MIN_PVALUE",
    "ConfidenceInterval",
    "StatsError",
    "TestResult",
    "bonferroni",
    "bootstrap_ci",
    "cohens_d",
    "holm",
    "mann_whitney",
    "margin_of_error",
    "paired_cohens_d",
    "wilcoxon_paired",
]

Alternative = Literal["two-sided", "less", "greater"]
_ALTERNATIVES = ("two-sided", "less", "greater")

# The old "success criterion" (p < 0.05 and d > 0.3), quoted by the headline report only to say
# why it is no longer applied: the verdict is the declared primary endpoint's interval.
MIN_PVALUE = 0.05
MIN_EFFECT_SIZE = 0.3


class StatsError(PolyloraError, ValueError):
    """Input a statistic cannot be computed from (empty sample, NaN, mismatched pairs...)."""


class ConfidenceInterval(NamedTuple):
    """A point estimate with its confidence interval; unpacks as ``(estimate, low, high)``."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """Outcome of a hypothesis test, with the sample sizes needed to report it."""

    __test__ = False  # not a pytest test class despite the name

    statistic: float
    pvalue: float
    test: str
    n_a: int
    n_b: int
    alternative: str = "two-sided"


def _as_sample(values: Sequence[float] | np.ndarray, name: str, min_size: int = 1) -> np.ndarray:
    """Return ``values`` as a finite 1-D float array, or raise a :class:`StatsError` naming it."""
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise StatsError(f"{name}: values must be numbers ({exc}); pass a list of floats") from exc
    if arr.size < min_size:
        raise StatsError(
            f"{name}: need at least {min_size} value(s), got {arr.size}; "
            "check that the run produced per-example scores"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise StatsError(
            f"{name}: {bad} of {arr.size} values are NaN or infinite; drop or fix them first"
        )
    return arr


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise StatsError(
            f"alternative={alternative!r} is not supported; use one of {', '.join(_ALTERNATIVES)}"
        )


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence={confidence} must lie strictly between 0 and 1, e.g. 0.95")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    statistic: Callable[..., float | np.ndarray] = np.mean,
    method: Literal["percentile", "BCa", "basic"] = "percentile",
) -> ConfidenceInterval:
    """Bootstrap confidence interval of ``statistic(values)`` (``scipy.stats.bootstrap``).

    Right for many independent units (e.g. the prompts of one run); wrong for a handful of
    seeds: a percentile bootstrap of 3 values is ``[min, max]``, which covers the mean about
    75 % of the time, so use :func:`polylora.stats.intervals.t_interval` there. ``seed`` fixes the
    resampling (identical inputs give identical intervals). A single value, or values with no
    spread, give ``(v, v, v)``: there is no spread to estimate.
    """
    arr = _as_sample(values, "bootstrap_ci")
    _check_confidence(confidence)
    if n_resamples < 1:
        raise StatsError(f"n_resamples={n_resamples} must be >= 1 (10_000 is a good default)")
    estimate = float(statistic(arr))
    if arr.size == 1 or np.all(arr == arr[0]):
        return ConfidenceInterval(estimate, estimate, estimate)

    def stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
        try:
            return np.asarray(statistic(x, axis=axis), dtype=float)
        except TypeError:  # a statistic without an axis argument
            return np.apply_along_axis(lambda row: float(statistic(row)), axis, x)

    res = sps.bootstrap(
        (arr,), stat, confidence_level=confidence, n_resamples=n_resamples, method=method,
        rng=np.random.default_rng(seed), vectorized=True, batch=max(1, 2_000_000 // arr.size),
    )
    return ConfidenceInterval(estimate, float(res.confidence_interval.low),
                              float(res.confidence_interval.high))


def mann_whitney(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alternative: Alternative = "two-sided",
) -> TestResult:
    """Mann-Whitney U test for two independent samples (``scipy.stats.mannwhitneyu``).

    Non-parametric, so it suits bounded, skewed per-example scores. ``statistic`` is U of ``a``;
    ``alternative="less"`` tests whether the baseline ``a`` tends to be smaller than ``b``.
    Two samples of identical constant values give p = 1.0.
    """
    _check_alternative(alternative)
    x = _as_sample(a, "mann_whitney (a)")
    y = _as_sample(b, "mann_whitney (b)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.mannwhitneyu(x, y, alternative=alternative)
    pvalue = float(res.pvalue)
    if math.isnan(pvalue):  # degenerate input: no evidence either way
        pvalue = 1.0
    return TestResult(
        statistic=float(res.statistic),
        pvalue=pvalue,
        test="Mann-Whitney U",
        n_a=int(x.size),
        n_b=int(y.size),
        alternative=alternative,
    )


def wilcoxon_paired(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alternative: Alternative = "two-sided",
) -> TestResult:
    """Wilcoxon signed-rank test on paired samples (``scipy.stats.wilcoxon(a, b)``).

    Use it when ``a[i]`` and ``b[i]`` score the same prompt (same fixed evaluation subset), which
    is more powerful than :func:`mann_whitney`. Differences are ``a - b``, so
    ``alternative="less"`` tests whether the baseline scores lower. Zero differences are dropped
    (scipy's ``"wilcox"`` method); when every difference is zero the runs are indistinguishable
    and the result is statistic 0.0, p = 1.0 rather than an error.
    """
    _check_alternative(alternative)
    x = _as_sample(a, "wilcoxon_paired (a)")
    y = _as_sample(b, "wilcoxon_paired (b)")
    if x.size != y.size:
        raise StatsError(
            f"wilcoxon_paired: paired samples differ in length ({x.size} vs {y.size}); "
            "score both runs on the same examples, or use mann_whitney for unpaired samples"
        )
    result = TestResult(0.0, 1.0, "Wilcoxon signed-rank", int(x.size), int(y.size), alternative)
    if np.all(x - y == 0):
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (RuntimeWarning, UserWarning))
        res = sps.wilcoxon(x, y, alternative=alternative)
    pvalue = float(res.pvalue)
    if math.isnan(pvalue):
        pvalue = 1.0
    return TestResult(
        statistic=float(res.statistic),
        pvalue=pvalue,
        test=result.test,
        n_a=result.n_a,
        n_b=result.n_b,
        alternative=alternative,
    )


def _standardized(diff: float, sd: float) -> float:
    """``diff / sd`` with zero spread handled: 0.0 when diff is 0, else signed infinity."""
    if sd > 0.0:
        return diff / sd
    if diff == 0.0:
        return 0.0
    return math.copysign(math.inf, diff)


def cohens_d(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cohen's d of independent samples: ``(mean(b) - mean(a)) / pooled SD``.

    **Sign: positive when b (the candidate) has the higher mean.** The pooled SD uses ``ddof=1``
    variances weighted by their degrees of freedom. With zero variance in both samples the
    result is 0.0 for equal means and ``±inf`` otherwise (perfect separation); it needs at
    least three values in total.
    """
    x = _as_sample(a, "cohens_d (a)")
    y = _as_sample(b, "cohens_d (b)")
    dof = x.size + y.size - 2
    if dof < 1:
        raise StatsError(
            f"cohens_d: need at least 3 values in total to pool a variance, got {x.size}+{y.size}"
        )
    ss = (x.size - 1) * (np.var(x, ddof=1) if x.size > 1 else 0.0)
    ss += (y.size - 1) * (np.var(y, ddof=1) if y.size > 1 else 0.0)
    pooled_sd = math.sqrt(ss / dof)
    return _standardized(float(np.mean(y) - np.mean(x)), pooled_sd)


def paired_cohens_d(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cohen's d_z of paired samples: ``mean(b - a) / SD(b - a)`` (``ddof=1``).

    The paired counterpart of :func:`cohens_d` (same sign: positive when the candidate ``b``
    is better); zero spread of the differences gives 0.0 or ``±inf`` as there.
    """
    x = _as_sample(a, "paired_cohens_d (a)", min_size=2)
    y = _as_sample(b, "paired_cohens_d (b)", min_size=2)
    if x.size != y.size:
        raise StatsError(
            f"paired_cohens_d: paired samples differ in length ({x.size} vs {y.size}); "
            "score both runs on the same examples, or use cohens_d"
        )
    diff = y - x
    return _standardized(float(np.mean(diff)), float(np.std(diff, ddof=1)))


def _as_pvalues(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(pvalues, dtype=float).reshape(-1)
    if np.any(~np.isfinite(arr)) or np.any((arr < 0.0) | (arr > 1.0)):
        raise StatsError(f"p-values must lie in [0, 1], got {arr.tolist()}")
    return arr


def bonferroni(pvalues: Sequence[float] | np.ndarray) -> list[float]:
    """Bonferroni-adjusted p-values: ``min(1, m * p)`` for m tests, in the input order.

    Controls the family-wise error rate; compare the adjusted values with the usual alpha.
    """
    arr = _as_pvalues(pvalues)
    return [float(v) for v in np.minimum(1.0, arr * arr.size)]


def holm(pvalues: Sequence[float] | np.ndarray) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    Sort ascending; the i-th smallest (0-based) becomes ``max_{j<=i} min(1, (m - j) * p_(j))``,
    so adjusted values are monotone in the raw ones and never exceed Bonferroni's. Same
    family-wise guarantee as Bonferroni with more power.
    """
    arr = _as_pvalues(pvalues)
    m = arr.size
    order = np.argsort(arr, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * arr[order])
    adjusted_sorted = np.maximum.accumulate(scaled)
    adjusted = np.empty(m, dtype=float)
    adjusted[order] = adjusted_sorted
    return [float(v) for v in adjusted]


def margin_of_error(p: float, n: int, confidence: float = 0.95,
                    z: float | None = None) -> float:
    """Half-width of the normal-approximation CI of a proportion: ``z * sqrt(p(1-p)/n)``.

    Sizes evaluation subsets: p = 0.5, n = 100 gives about ±0.098 (the "±10 % at 95 %" rule).
    The approximation is poor when ``n*p`` or ``n*(1-p)`` is below ~5; use
    :func:`bootstrap_ci` there. ``z`` fixes the quantile instead of ``confidence`` (logged
    metrics use the rounded 1.96, so their values stay comparable with earlier runs).
    """
    if not 0.0 <= p <= 1.0:
        raise StatsError(f"margin_of_error: proportion p={p} must lie in [0, 1]")
    if n < 1:
        raise StatsError(f"margin_of_error: sample size n={n} must be >= 1")
    if z is None:
        _check_confidence(confidence)
        z = float(sps.norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    return z * math.sqrt(p * (1.0 - p) / n)
