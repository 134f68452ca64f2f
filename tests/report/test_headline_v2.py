"""The headline's second design: stage-1 arms differ in the objective only, the task has enough
two-constraint test prompts, and the outcome rule says what the plan says (the recipe that
runs it: tests/recipes/test_headline_v2.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from omegaconf import OmegaConf

from polylora.data.words import CONSTRAINTS_OF_KIND, prompt_kind
from polylora.record.tracking import flatten
from polylora.report import headline_v2 as v2
from polylora.stats.analysis import Effect

ALLOWED_DIFF = ("objective.", "experiment", "tracking.group")


def resolved(cfg: Any) -> dict[str, Any]:
    return flatten(OmegaConf.to_container(cfg, resolve=True))


@pytest.mark.parametrize("arm", ["grpo", "polychromic", "passk"])
def test_rl_arms_differ_from_ce_continued_in_the_objective_only(
    compose_cfg: Callable[..., Any], arm: str
) -> None:
    ce = resolved(compose_cfg(["+experiment=headline_v2_ce"]))
    rl = resolved(compose_cfg([f"+experiment=headline_v2_{arm}"]))
    diff = {k for k in ce.keys() | rl.keys() if ce.get(k, "<absent>") != rl.get(k, "<absent>")}
    assert sorted(k for k in diff if not k.startswith(ALLOWED_DIFF)) == []
    assert rl["objective.ce_weight"] == 0.0  # pure RL from the SFT adapter
    assert rl["objective.temperature"] == ce["eval.temperature"] == 1.0
    assert rl["objective.n_generations"] == 4
    # PKPO's credit is not std-scaled per group (that would erase its pass@k weighting)
    assert rl["objective.advantage_norm"] == ("none" if arm == "passk" else "group_std")
    assert ce["lora.dropout"] == 0.0 and ce["train.lr_scheduler"] == "constant"
    assert ce["train.early_stopping_patience"] == 0  # same steps for every arm


def test_sft_and_arms_share_everything_but_training_length(
    compose_cfg: Callable[..., Any],
) -> None:
    sft = compose_cfg(["+experiment=headline_v2_sft"])
    ce = compose_cfg(["+experiment=headline_v2_ce"])
    for section in ("model", "data", "eval", "lora", "compare"):
        assert resolved(sft[section]) == resolved(ce[section]), section
    assert sft.model.name == "smollm2_135m" and sft.tracking.log_adapter


def test_task_has_a_hundred_two_constraint_test_prompts(compose_cfg: Callable[..., Any]) -> None:
    from polylora.evaluate.evaluation import eval_subset
    from polylora.run.pipeline import prepare

    cfg = compose_cfg(["+experiment=headline_v2_sft"])
    prep = prepare(cfg)
    subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
    two = [e for e in subset if CONSTRAINTS_OF_KIND[prompt_kind(e.prompt)] == 2]
    assert len(two) >= 100 and len(subset) - len(two) >= 50  # both kinds, per-kind results
    assert cfg.eval.n_samples >= 20 and 10 in cfg.eval.ks


def effect(low: float, high: float, verdict: str = "") -> Effect:
    return Effect("g", "m", "", delta=(low + high) / 2, low=low, high=high, verdict=verdict)


@pytest.mark.parametrize(("collapse", "primary", "inside", "word"), [
    ((-0.5, 0.2), (0.1, 0.2), False, "not testable here"),
    ((-0.5, -0.1), (-0.02, 0.03), False, "falsified"),
    ((-0.5, -0.1), (0.06, 0.2), True, "falsified"),
    ((-0.5, -0.1), (0.06, 0.2), False, "supported"),
    ((-0.5, -0.1), (-0.02, 0.2), False, "inconclusive"),
    ((float("nan"), float("nan")), (0.06, 0.2), False, "inconclusive"),  # one seed: no CI
])
def test_outcome_follows_the_preregistered_rule(
    collapse: tuple[float, float], primary: tuple[float, float], inside: bool, word: str
) -> None:
    out = v2.decide(effect(*primary), effect(-0.01, 0.02, "non-inferior (margin 0.03)"),
                    effect(*collapse), effect(0.1, 0.5), inside, sesoi=0.05)
    assert out.word == word and out.word in v2.OUTCOMES
