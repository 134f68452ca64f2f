"""Roles, directions and verdicts of report.analysis on hand-made effects."""

from __future__ import annotations

import math

import pytest

from polylora.stats.analysis import Effect, Plan, judge


def effect(metric: str, delta: float, low: float, high: float, se: float = 0.01,
           p: float = 0.5) -> Effect:
    return Effect("cand", metric, "", method="paired t over seeds", n_seeds=5, delta=delta,
                  low=low, high=high, se=se, df=4, pvalue=p)


def test_declared_decrease_is_confirmed_only_below_zero() -> None:
    plan = Plan(primary="self_bleu", direction="decrease")
    down, up = effect("self_bleu", -0.05, -0.08, -0.02), effect("self_bleu", 0.05, 0.02, 0.08)
    judge([down], {"self_bleu": False}, plan, {})
    judge([up], {"self_bleu": False}, plan, {})
    assert (down.verdict, up.verdict) == ("confirmed", "opposite direction")


def test_noninferiority_is_oriented_by_the_metric_direction() -> None:
    """A loss rising by 0.02 is a 0.02 *worsening*: inside a 0.05 margin, outside a 0.01 one."""
    plan = Plan(noninferiority={"loss": 0.05, "test_loss": 0.01})
    loss, test_loss = effect("loss", 0.02, 0.0, 0.04, se=0.002), effect("test_loss", 0.02, 0.0,
                                                                        0.04, se=0.002)
    judge([loss, test_loss], {"loss": False, "test_loss": False}, plan, {})
    assert loss.verdict == "non-inferior (margin 0.05)"
    assert test_loss.verdict == "inferior (worse by more than 0.01)"


def test_secondaries_are_holm_adjusted_behind_a_confirmed_primary() -> None:
    plan = Plan(primary="pass@10")
    prim = effect("pass@10", 0.1, 0.05, 0.15, p=0.001)
    a, b = effect("rouge_l", 0.1, 0.0, 0.2, p=0.01), effect("self_bleu", 0.1, 0.0, 0.2, p=0.04)
    skipped = effect("distinct_2", 0.0, -0.1, 0.1, p=0.001)
    judge([prim, a, b, skipped], {"pass@10": True, "rouge_l": True, "self_bleu": False,
                                  "distinct_2": True}, plan, {"distinct_2": "degenerate"})
    assert prim.verdict == "confirmed"
    assert (a.p_holm, b.p_holm) == pytest.approx((0.02, 0.04))
    assert (a.verdict, b.verdict) == ("significant", "significant")
    assert skipped.role == "excluded" and math.isnan(skipped.p_holm)
    assert prim.mde > 0  # computed from se and df


def test_plan_is_read_from_the_runs_logged_config() -> None:
    params = {"compare.primary": "pass_at_10", "compare.direction": "increase",
              "compare.noninferiority.pass_at_1": "0.03", "compare.secondary": "None",
              "compare.alpha": "0.05", "compare.power": "0.8"}
    plan = Plan.from_params(params)
    assert plan.primary == "pass@10" and plan.noninferiority == {"pass@1": 0.03}
    assert plan.secondary is None and plan.source == "config"
    assert Plan.from_params({"seed": "1"}) is None
