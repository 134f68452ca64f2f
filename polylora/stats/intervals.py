"""Confidence intervals and tests with the right unit of analysis for seed × prompt designs.

An experiment arm is trained with several seeds and every run is scored on the same fixed
evaluation prompts, so a score ``y[s, p]`` has two sources of randomness: the seed (init, data
order, sampling: a lucky seed moves every prompt) and the prompt (which prompts were drawn).
Treating either as fixed overstates certainty. This module provides:

* :func:`t_interval`: the mean over seeds with a Student-t interval (a percentile bootstrap of
  3 values is ``[min, max]`` and covers ~75 %, not 95 %), and a statement when n is too small
  for an interval to be informative;
* :func:`paired_seed_test`: a paired t-test over seeds where both arms share the seeds (same
  init and data order), with ``d_z`` of the seed differences (the effect that test measures);
* :func:`crossed_difference`: the arm difference Δ with a CI from the crossed random-effects
  model ``d[s, p] = μ + a_s + b_p + e_sp`` (seeds and prompts both random), its variance
  components estimated from the balanced two-way ANOVA (method of moments, the REML estimate
  when none is truncated at 0) and Satterthwaite degrees of freedom;
* :func:`noninferiority`: the one-sided test of "candidate worse by at least the margin", with
  a verdict in those words.

Sign convention (as :mod:`polylora.stats.significance`): differences are candidate − baseline
on values already oriented so that higher is better (negate lower-is-better metrics first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from polylora.stats.significance import StatsError

__all__ = [
    "INFORMATIVE_MIN_N",
    "CrossedDifference",
    "NonInferiority",
    "PairedSeedTest",
    "SeedInterval",
    "VarianceComponents",
    "crossed_difference",
    "noninferiority",
    "paired_seed_test",
    "t_interval",
    "variance_components",
]

#: Below this many seeds a 95 % t-interval is at least ±2.78 standard errors wide (df ≤ 3:
#: ±3.18, and ±4.30 at n = 3): it can be computed but rarely excludes anything.
INFORMATIVE_MIN_N = 5


def _finite(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.size and not np.all(np.isfinite(arr)):
        raise StatsError(f"{name}: values contain NaN or infinity; drop or fix them first")
    return arr


def _tcrit(confidence: float, df: float) -> float:
    return float(sps.t.ppf(0.5 + confidence / 2.0, df))


def _two_sided_p(t: float, df: float) -> float:
    if math.isnan(t):
        return math.nan
    return float(2.0 * sps.t.sf(abs(t), df))


@dataclass(frozen=True)
class SeedInterval:
    """Mean over n seeds with its t-interval; ``note`` says when the interval says little."""

    estimate: float
    low: float
    high: float
    n: int
    sd: float
    confidence: float = 0.95

    @property
    def informative(self) -> bool:
        """False when n is below :data:`INFORMATIVE_MIN_N` (or no interval exists)."""
        return self.n >= INFORMATIVE_MIN_N and math.isfinite(self.low)

    @property
    def note(self) -> str:
        """Empty, or one sentence on why this interval should not be read as evidence."""
        if self.n < 2:
            return f"n = {self.n} seed: no interval (the spread between seeds is unknown)"
        if self.n < INFORMATIVE_MIN_N:
            return (f"n = {self.n} seeds: the {self.confidence:.0%} t-interval is "
                    f"±{_tcrit(self.confidence, self.n - 1):.2f} standard errors wide, too few "
                    f"seeds for an informative interval (use ≥ {INFORMATIVE_MIN_N})")
        return ""


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> SeedInterval:
    """Mean of ``values`` (one per seed) with the Student-t interval ``mean ± t·sd/√n``.

    n = 1 gives NaN bounds (no spread to estimate); identical values give a zero-width interval.
    """
    arr = _finite(values, "t_interval").reshape(-1)
    if arr.size == 0:
        raise StatsError("t_interval: no values; check that the runs logged this metric")
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence={confidence} must lie strictly between 0 and 1")
    mean = float(arr.mean())
    if arr.size < 2:
        return SeedInterval(mean, math.nan, math.nan, 1, math.nan, confidence)
    sd = float(arr.std(ddof=1))
    half = _tcrit(confidence, arr.size - 1) * sd / math.sqrt(arr.size)
    return SeedInterval(mean, mean - half, mean + half, int(arr.size), sd, confidence)


@dataclass(frozen=True)
class PairedSeedTest:
    """Paired t-test over the seeds both arms ran (Δ = candidate − baseline)."""

    delta: float
    low: float
    high: float
    statistic: float
    pvalue: float
    df: int
    d_z: float  # mean / sd of the per-seed differences: the effect the paired t tests
    seeds: tuple[str, ...]


def paired_seed_test(
    baseline: Mapping[str, float], candidate: Mapping[str, float], confidence: float = 0.95
) -> PairedSeedTest:
    """Paired t-test of ``candidate[s] - baseline[s]`` over the seeds in both mappings.

    Equivalent to ``scipy.stats.ttest_rel``; needs at least 2 shared seeds. Zero spread of
    the differences gives p = 1 when Δ = 0 and p = 0 otherwise.
    """
    shared = sorted(set(baseline) & set(candidate), key=str)
    if len(shared) < 2:
        raise StatsError(
            f"paired_seed_test: {len(shared)} seed(s) shared by both arms; a paired test over "
            "seeds needs ≥ 2 (run both arms with the same seeds)"
        )
    d = _finite([candidate[s] - baseline[s] for s in shared], "paired_seed_test")
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    if se == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        p = 1.0 if mean == 0.0 else 0.0
        return PairedSeedTest(mean, mean, mean, t, p, n - 1, t, tuple(map(str, shared)))
    t = mean / se
    half = _tcrit(confidence, n - 1) * se
    return PairedSeedTest(mean, mean - half, mean + half, t, _two_sided_p(t, n - 1), n - 1,
                          mean / sd, tuple(map(str, shared)))


@dataclass(frozen=True)
class VarianceComponents:
    """Crossed random effects of a seeds × prompts table: ``y = μ + a_s + b_p + e_sp``."""

    n_seeds: int
    n_prompts: int
    seed: float  # σ²_a: how much a seed moves every prompt
    prompt: float  # σ²_b: how much prompts differ
    residual: float  # σ²_e: seed × prompt interaction plus sampling noise
    ms_seed: float
    ms_prompt: float
    ms_residual: float

    def variance_of_mean(self, n_seeds: int | None = None, n_prompts: int | None = None,
                         residual_scale: float = 1.0) -> float:
        """Var of the grand mean for a design of ``n_seeds`` × ``n_prompts`` (default: this
        one); ``residual_scale`` multiplies σ²_e (e.g. n_pilot / n samples per prompt)."""
        s = n_seeds or self.n_seeds
        p = n_prompts or self.n_prompts
        return self.seed / s + self.prompt / p + residual_scale * self.residual / (s * p)


def variance_components(table: np.ndarray) -> VarianceComponents:
    """ANOVA estimates of the crossed variance components of a full ``seeds × prompts`` table.

    With mean squares MS_s (seeds, df S−1), MS_p (prompts, df P−1), MS_e (df (S−1)(P−1)):
    σ²_e = MS_e, σ²_a = (MS_s − MS_e)/P, σ²_b = (MS_p − MS_e)/S, each truncated at 0.
    """
    y = _finite(table, "variance_components")
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        raise StatsError(
            f"variance_components: need a seeds × prompts table with ≥ 2 of each, got shape "
            f"{y.shape}"
        )
    s, p = y.shape
    grand = y.mean()
    seed_means, prompt_means = y.mean(axis=1), y.mean(axis=0)
    ms_s = p * float(np.sum((seed_means - grand) ** 2)) / (s - 1)
    ms_p = s * float(np.sum((prompt_means - grand) ** 2)) / (p - 1)
    resid = y - seed_means[:, None] - prompt_means[None, :] + grand
    ms_e = float(np.sum(resid**2)) / ((s - 1) * (p - 1))
    return VarianceComponents(s, p, max(0.0, (ms_s - ms_e) / p), max(0.0, (ms_p - ms_e) / s),
                              ms_e, ms_s, ms_p, ms_e)


@dataclass(frozen=True)
class CrossedDifference:
    """Δ (mean of candidate − baseline over seeds × prompts) with its crossed-model CI."""

    delta: float
    low: float
    high: float
    se: float
    df: float  # Satterthwaite
    statistic: float
    pvalue: float
    components: VarianceComponents
    confidence: float = 0.95


def crossed_difference(diffs: np.ndarray, confidence: float = 0.95) -> CrossedDifference:
    """Δ with a CI treating seeds AND prompts as random (``diffs[s, p]`` = cand − base).

    Var(Δ̂) = (MS_s + MS_p − MS_e) / (S·P) (unbiased under the crossed model; floored at
    MS_e / (S·P)), with Satterthwaite's df for that combination of mean squares. With few
    seeds the seed term dominates and df is close to S − 1: the interval is as wide as the
    seeds make it, however many prompts there are.
    """
    y = _finite(diffs, "crossed_difference")
    vc = variance_components(y)
    s, p = y.shape
    terms = [(vc.ms_seed, s - 1, 1.0), (vc.ms_prompt, p - 1, 1.0),
             (vc.ms_residual, (s - 1) * (p - 1), -1.0)]
    combo = sum(c * ms for ms, _, c in terms)
    if combo <= vc.ms_residual:  # negative components: fall back on the residual alone
        combo = vc.ms_residual
        df = float((s - 1) * (p - 1))
    else:
        denom = sum((c * ms) ** 2 / dfi for ms, dfi, c in terms)
        df = combo**2 / denom if denom > 0 else math.inf
    se = math.sqrt(combo / (s * p))
    delta = float(y.mean())
    if se == 0.0:
        t = 0.0 if delta == 0.0 else math.copysign(math.inf, delta)
        p_val = 1.0 if delta == 0.0 else 0.0
        return CrossedDifference(delta, delta, delta, 0.0, df, t, p_val, vc, confidence)
    t = delta / se
    half = _tcrit(confidence, df) * se
    return CrossedDifference(delta, delta - half, delta + half, se, df, t,
                             _two_sided_p(t, df), vc, confidence)


@dataclass(frozen=True)
class NonInferiority:
    """One-sided test of H0: Δ ≤ −margin (candidate worse by at least ``margin``)."""

    margin: float
    delta: float
    low: float  # lower bound of the two-sided (1 − 2α) interval, i.e. one-sided 1 − α
    high: float
    pvalue: float
    alpha: float
    verdict: str


#: How a non-inferiority verdict that holds begins ("non-inferiority not shown" does not).
NONINFERIOR = "non-inferior ("


def is_noninferior(verdict: str) -> bool:
    """True for the verdict :func:`noninferiority` gives when non-inferiority is shown."""
    return verdict.startswith(NONINFERIOR)


def noninferiority(delta: float, se: float, df: float, margin: float,
                   alpha: float = 0.025) -> NonInferiority:
    """Non-inferiority of the candidate at ``margin`` (in the metric's units, > 0).

    p = P(T_df ≥ (Δ + margin) / se). Verdicts: ``"non-inferior (margin m)"`` when the one-sided
    (1 − α) lower bound exceeds −margin; ``"inferior (worse by more than m)"`` when even the
    upper bound is below −margin; otherwise ``"non-inferiority not shown (margin m)"``, which
    is not evidence of a loss either. α = 0.025 one-sided matches a two-sided 95 % CI.
    """
    if not margin > 0:
        raise StatsError(f"non-inferiority margin must be > 0, got {margin}; e.g. 0.03")
    if not 0.0 < alpha < 0.5:
        raise StatsError(f"non-inferiority alpha must lie in (0, 0.5), got {alpha}")
    if se == 0.0:
        low = high = delta
        pvalue = 0.0 if delta > -margin else 1.0
    else:
        q = float(sps.t.ppf(1.0 - alpha, df))
        low, high = delta - q * se, delta + q * se
        pvalue = float(sps.t.sf((delta + margin) / se, df))
    if low > -margin:
        verdict = f"{NONINFERIOR}margin {margin:g})"
    elif high < -margin:
        verdict = f"inferior (worse by more than {margin:g})"
    else:
        verdict = f"non-inferiority not shown (margin {margin:g})"
    return NonInferiority(margin, delta, low, high, pvalue, alpha, verdict)
