"""MDE and plans: against the normal-theory formula by hand and against simulated t-tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from polylora.stats import power
from polylora.stats.intervals import VarianceComponents
from polylora.stats.significance import StatsError


def test_mde_tends_to_the_normal_formula() -> None:
    # (z_0.975 + z_0.80) · SE = (1.959964 + 0.841621) · SE
    assert power.mde(0.01, df=1e6) == pytest.approx(2.801585 * 0.01, rel=1e-4)


def test_mde_has_the_target_power_in_simulated_t_tests() -> None:
    """At the MDE, 80 % of simulated paired t-tests (4 seeds) reject at α = 0.05."""
    n, sd = 4, 0.05
    se = sd / math.sqrt(n)
    effect = power.mde(se, df=n - 1)
    rng = np.random.default_rng(0)
    d = rng.normal(effect, sd, size=(20_000, n))
    p = sps.ttest_1samp(d, 0.0, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.80, abs=0.015)
    assert power.power(effect, se, n - 1) == pytest.approx(0.80, abs=1e-6)


def test_plan_finds_designs_that_reach_the_target() -> None:
    vc = VarianceComponents(3, 60, seed=0.0004, prompt=0.01, residual=0.04,
                            ms_seed=0.0, ms_prompt=0.0, ms_residual=0.04)
    designs = power.plan(vc, n_samples_pilot=10, target=0.05)
    assert designs, "some design in the grid reaches 0.05"
    assert all(d.mde <= 0.05 for d in designs)
    costs = [d.seeds * d.prompts * d.samples for d in designs]
    assert costs == sorted(costs)
    best = designs[0]
    se = math.sqrt(vc.variance_of_mean(best.seeds, best.prompts, 10 / best.samples))
    assert best.se == pytest.approx(se)
    # the seed variance bounds what more prompts can buy: an impossible target finds nothing
    assert power.plan(vc, 10, target=0.001) == []
    with pytest.raises(StatsError, match="> 0"):
        power.plan(vc, 10, target=0.0)
