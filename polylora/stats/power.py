"""Power and minimum detectable effect (MDE) of seeds × prompts × samples designs.

From the variance components a pilot comparison estimated
(:class:`polylora.stats.intervals.VarianceComponents` of the per-(seed, prompt) differences), the
standard error of Δ for a design of S seeds × P prompts × n samples per prompt is

    SE² = σ²_seed / S + σ²_prompt / P + σ²_resid · (n_pilot / n) / (S · P)

where scaling the residual by n_pilot / n assumes it is sampling noise of the per-prompt score
(exact for a mean over samples such as pass@1; an optimistic approximation otherwise: part of
the residual is seed × prompt interaction, which more samples do not remove). The MDE is the
true Δ a two-sided t-test at level α detects with the given power, solved exactly on the
noncentral t distribution with the design's Satterthwaite df (≈ S − 1 when seeds dominate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize
from scipy import stats as sps

from polylora.stats.intervals import VarianceComponents
from polylora.stats.significance import StatsError

__all__ = ["Design", "design_df", "mde", "plan", "power"]


def power(effect: float, se: float, df: float, alpha: float = 0.05) -> float:
    """Power of a two-sided t-test at level ``alpha`` when the true Δ is ``effect``."""
    if se <= 0:
        raise StatsError(f"power: standard error must be > 0, got {se}")
    crit = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    nc = abs(effect) / se
    upper = float(sps.nct.sf(crit, df, nc))
    lower = float(sps.nct.cdf(-crit, df, nc))  # the wrong-sign rejections: NaN once negligible
    return upper + (lower if math.isfinite(lower) else 0.0)


def mde(se: float, df: float, alpha: float = 0.05, target_power: float = 0.80) -> float:
    """Smallest |Δ| detected with ``target_power`` by a two-sided t-test (noncentral t).

    For large df this tends to (z_{1−α/2} + z_{power}) · se = 2.80 · se at α 0.05, power 0.8.
    """
    if se <= 0 or not math.isfinite(se):
        raise StatsError(f"mde: standard error must be finite and > 0, got {se}")
    if not 0.0 < alpha < 1.0 or not alpha < target_power < 1.0:
        raise StatsError(f"mde: need 0 < alpha < power < 1, got alpha={alpha}, "
                         f"power={target_power}")
    if df < 1:
        raise StatsError(f"mde: need ≥ 1 degree of freedom (≥ 2 seeds), got df={df:.2f}")
    crit = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    upper = se * (2.0 * crit + 10.0)  # power ≈ 1 there; larger noncentralities give NaN
    return float(optimize.brentq(lambda e: power(e, se, df, alpha) - target_power, 0.0, upper,
                                 xtol=se * 1e-9))


def design_df(vc: VarianceComponents, n_seeds: int, n_prompts: int,
              residual_scale: float = 1.0) -> float:
    """Satterthwaite df of Δ's variance for a design, from the pilot's components."""
    s, p = n_seeds, n_prompts
    e = residual_scale * vc.residual
    ms_s, ms_p = e + p * vc.seed, e + s * vc.prompt  # expected mean squares of that design
    combo = ms_s + ms_p - e
    denom = ms_s**2 / max(s - 1, 1) + ms_p**2 / max(p - 1, 1) + e**2 / max((s - 1) * (p - 1), 1)
    return combo**2 / denom if denom > 0 else math.inf


@dataclass(frozen=True)
class Design:
    """A design and what it can detect."""

    seeds: int
    prompts: int
    samples: int
    se: float
    df: float
    mde: float


def _design(vc: VarianceComponents, s: int, p: int, n: int, n_pilot: int, alpha: float,
            target_power: float) -> Design:
    scale = n_pilot / n
    se = math.sqrt(vc.variance_of_mean(s, p, scale))
    df = design_df(vc, s, p, scale)
    return Design(s, p, n, se, df, mde(se, df, alpha, target_power) if se > 0 else 0.0)


def plan(vc: VarianceComponents, n_samples_pilot: int, target: float, alpha: float = 0.05,
         target_power: float = 0.80, seeds: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20),
         prompts: tuple[int, ...] | None = None,
         samples: tuple[int, ...] | None = None) -> list[Design]:
    """Designs (seeds × prompts × samples) whose MDE is ≤ ``target``, cheapest first.

    Cost is counted as seeds × prompts × samples (generations to evaluate; training cost
    grows with seeds alone, so among equal costs fewer seeds come first). Returns [] when no
    design in the grid reaches the target (the seed term σ²_seed / S then bounds the MDE).
    """
    if target <= 0:
        raise StatsError(f"plan: target effect must be > 0, got {target}")
    prompts = prompts or tuple(sorted({vc.n_prompts, 2 * vc.n_prompts, 4 * vc.n_prompts}))
    samples = samples or tuple(sorted({n_samples_pilot, 2 * n_samples_pilot}))
    found = [
        d for s in seeds for p in prompts for n in samples
        if (d := _design(vc, s, p, n, n_samples_pilot, alpha, target_power)).mde <= target
    ]
    return sorted(found, key=lambda d: (d.seeds * d.prompts * d.samples, d.seeds))
