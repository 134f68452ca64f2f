"""The headline's third design: its arms differ in the objective only, its analysis reads
nothing but the two tables (and gives the same numbers after a CSV round trip), and the
outcome rule says what the plan says, in the plan's order."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report.test_headline_v2 import ALLOWED_DIFF, resolved

from polylora.report import headline_v3 as v3
from polylora.report.headline_v2 import Launch
from polylora.report.headline_v3_report import SECTIONS, render
from polylora.stats.analysis import Effect


@pytest.mark.parametrize("arm", ["grpo", "polychromic", "passk"])
def test_rl_arms_differ_from_ce_continued_in_the_objective_only(
    compose_cfg: Callable[..., Any], arm: str
) -> None:
    ce = resolved(compose_cfg(["+experiment=headline_v3_ce"]))
    rl = resolved(compose_cfg([f"+experiment=headline_v3_{arm}"]))
    diff = {k for k in ce.keys() | rl.keys() if ce.get(k, "<absent>") != rl.get(k, "<absent>")}
    assert sorted(k for k in diff if not k.startswith(ALLOWED_DIFF)) == []
    assert rl["objective.ce_weight"] == 0.0 and rl["objective.n_generations"] == 8
    assert rl["objective.temperature"] == ce["eval.temperature"] == 0.7
    # PKPO's credit keeps its weighting across prompts: one constant per batch, not per group
    assert rl["objective.advantage_norm"] == ("batch_std" if arm == "passk" else "group_std")
    assert ce["eval.n_samples"] == 32 and ce["compare.primary"] == v3.Settings().primary
    assert ce["lora.dropout"] == 0.0 and ce["train.lr_scheduler"] == "constant"


def test_stage_zero_is_the_second_designs_sft_evaluated_with_more_samples(
    compose_cfg: Callable[..., Any],
) -> None:
    v2 = resolved(compose_cfg(["+experiment=headline_v2_sft"]))
    sft = resolved(compose_cfg(["+experiment=headline_v3_sft"]))
    diff = {k for k in v2.keys() | sft.keys() if v2.get(k) != sft.get(k)}
    assert {k.split(".")[0] for k in diff} <= {"eval", "compare", "experiment", "tracking"}
    assert sorted(k for k in diff if k.startswith("tracking.")) == ["tracking.group"]
    assert sft["eval.n_samples"] == 32 and v2["eval.n_samples"] == 20


def synthetic(effect: float, seeds: int = 3, prompts: int = 40, sharpen: float = -0.2,
              differs: float = 0.5, seed: int = 0) -> v3.Tables:
    """Tables in which polychromic − GRPO's primary is ``effect`` per prompt (plus noise) and
    GRPO's distinct answers per correct sample sit ``sharpen`` from SFT's."""
    rng = np.random.default_rng(seed)
    runs, scores = [], {}
    kinds = {f"p{i}": ("two" if i % 3 else "one") for i in range(prompts)}
    base = {p: rng.uniform(0.2, 0.8) for p in kinds}
    shift = {"sft": 0.0, "ce": 0.0, "grpo": 0.0, "passk": effect / 2, "polychromic": effect}
    for s in range(1, seeds + 1):
        for arm in ("sft", *v3.ARMS):
            rid = f"{arm}-{s}"
            runs.append(v3.RunRow(rid, "sft" if arm == "sft" else "arm", arm, s,
                                  differs if arm == "polychromic" else
                                  (0.0 if arm == "grpo" else math.nan), 40.0))
            noise = {p: rng.normal(0, 0.02) for p in kinds}
            own = {f"pass@{k}": {p: float(np.clip(base[p] + shift[arm] + noise[p], 0, 1))
                                 for p in kinds} for k in v3.PASSK_KS}
            own[v3.SHARPENING] = {p: 0.8 + (sharpen if arm == "grpo" else 0.0) + noise[p]
                                  for p in kinds}
            scores[rid] = own
    return v3.Tables(runs, scores, kinds)


def test_analysis_finds_a_planted_effect_and_survives_the_csv_round_trip(
        tmp_path: Path) -> None:
    tables = synthetic(effect=0.1)
    result = v3.analyse(tables, v3.Settings())
    assert result.primary.method == "crossed seeds × prompts"
    assert result.primary.low < 0.1 < result.primary.high and result.primary.low > 0.05
    assert result.sharpening.high < 0 and result.differs["polychromic"] == 0.5
    assert result.outcome.word == "supported"
    v3.write_tables(tmp_path, tables.runs, tables.scores, tables.kinds)
    again = v3.analyse(v3.read_tables(tmp_path), v3.Settings())
    assert again.primary.delta == pytest.approx(result.primary.delta, abs=1e-5)
    assert again.primary.high == pytest.approx(result.primary.high, abs=1e-5)
    assert again.outcome == result.outcome


@pytest.mark.parametrize(("tables", "word", "needle"), [
    (synthetic(0.1, sharpen=0.0), "not testable here", "did not sharpen"),
    (synthetic(0.1, differs=0.2), "not testable here", "0.20 of its training groups"),
    (synthetic(-0.05), "falsified", "below the smallest effect of interest"),
    (synthetic(0.1), "supported", "beats pass@1 RL"),
])
def test_outcome_rule_in_the_plans_order(tables: v3.Tables, word: str, needle: str) -> None:
    outcome = v3.analyse(tables, v3.Settings()).outcome
    assert outcome.word == word and needle in outcome.reason


def test_a_wide_interval_is_inconclusive_and_a_pass1_loss_is_a_trade_off() -> None:
    sharp = Effect("", "x", "", delta=-0.2, low=-0.3, high=-0.1)
    wide = Effect("", "pass@16", "", delta=0.03, low=-0.02, high=0.08)
    assert v3.decide(wide, "non-inferior (margin 0.03)", sharp, 0.5,
                     v3.Settings()).word == "inconclusive"
    up = Effect("", "pass@16", "", delta=0.1, low=0.02, high=0.18)
    for verdict in ("non-inferiority not shown (margin 0.03)",
                    "inferior (worse by more than 0.03)"):
        assert v3.decide(up, verdict, sharp, 0.5, v3.Settings()).word == "trade-off"
    nan = Effect("", "x", "", delta=math.nan, low=math.nan, high=math.nan)
    assert v3.decide(up, "non-inferior", nan, 0.5, v3.Settings()).word == "inconclusive"


def test_report_states_the_outcome_and_every_section_from_the_tables() -> None:
    tables = synthetic(0.1)
    result = v3.analyse(tables, v3.Settings())
    launch = Launch("L", "headline_v3", "sqlite:///x", [1, 2, 3], list(v3.ARMS), [], "cmd",
                    0.05, design="headline_v3")
    text = render(launch, tables, result)
    import re

    assert re.findall(r"^## (.+)$", text, flags=re.M) == list(SECTIONS)
    assert text.split("## Outcome\n\n", 1)[1].startswith("**supported**")
    assert f"{result.primary.delta:+.3f}" in text
    assert "Incomplete launch" not in text
    partial = v3.Tables([r for r in tables.runs if r.seed == 1], tables.scores, tables.kinds)
    assert "**Incomplete launch**: 1 of 3 planned seeds" in render(
        launch, partial, v3.analyse(partial, v3.Settings()))
