"""Swapping the objective over an experiment written for another: the common policy-gradient
settings carry under one name, a setting of another objective is one ConfigError naming the key,
the objective chosen, where it was set and the fix, and every swap the docs show runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polylora.errors import ConfigError
from polylora.objectives.ce import CrossEntropyObjective
from polylora.objectives.grpo import GRPOObjective
from polylora.objectives.passk import PassKObjective
from polylora.objectives.polychromic import PolychromicObjective
from polylora.objectives.settings import accepted_keys


def prepared(compose_cfg: Callable[..., Any], overrides: list[str]) -> Any:
    from polylora.train.preparation import prepare

    return prepare(compose_cfg(overrides)).objective


@pytest.mark.parametrize(("swap", "cls", "extra"), [
    # the swaps the rl_from_ce experiment and docs/objective.md show
    (["objective=polychromic"], PolychromicObjective, {}),
    (["objective=passk"], PassKObjective, {"k": 4}),
    (["objective=passk", "objective.ce_weight=0"], PassKObjective, {"k": 4}),
])
def test_rl_from_ce_swaps_carry_the_common_settings(
    compose_cfg: Callable[..., Any], swap: list[str], cls: type, extra: dict[str, Any]
) -> None:
    objective = prepared(compose_cfg, ["+experiment=rl_from_ce", "model.adapter=unused", *swap])
    assert type(objective) is cls
    # λ, CE weight and N set by the experiment under one name, whatever the objective
    assert (objective.pg_weight, objective.ce_weight, objective.n_generations) == (1.0, 0.0, 4)
    assert all(getattr(objective, k) == v for k, v in extra.items())


def test_a_setting_of_another_objective_is_one_error_with_the_fix(
    compose_cfg: Callable[..., Any],
) -> None:
    with pytest.raises(ConfigError) as caught:
        prepared(compose_cfg, ["+experiment=smoke_polychromic", "objective=grpo"])
    message = str(caught.value)
    assert ("objective.diversity_metric is a setting of objective=polychromic, not of "
            "objective=grpo (the objective chosen); it was set in experiment smoke_polychromic "
            "(polylora/conf/experiment/smoke_polychromic.yaml)") in message
    assert "~objective.diversity_metric" in message and "objective.quality is" in message
    assert "unexpected keyword" not in message
    # the fix it names works; the settings both objectives share carried across
    objective = prepared(compose_cfg, ["+experiment=smoke_polychromic", "objective=grpo",
                                       "~objective.diversity_metric", "~objective.quality"])
    assert type(objective) is GRPOObjective
    assert (objective.n_generations, objective.max_new_tokens) == (3, 6)


def test_polychromic_to_ce_names_every_leftover_key(compose_cfg: Callable[..., Any]) -> None:
    with pytest.raises(ConfigError, match=r"objective.pg_weight is a setting of objective=.*"
                                          r"not of objective=ce .*experiment polychromic_0.3"):
        prepared(compose_cfg, ["+experiment=polychromic_0.3", "objective=ce"])


def test_accepted_keys_follow_the_shared_core() -> None:
    core = accepted_keys(GRPOObjective)
    assert core is not None and {"pg_weight", "temperature", "kl_weight"} <= core
    assert "diversity_metric" not in core
    assert {"k", "advantage_norm"} <= (accepted_keys(PassKObjective) or set())
    assert accepted_keys(CrossEntropyObjective) == set()

    class OwnKwargs(CrossEntropyObjective):
        def __init__(self, **anything: Any) -> None:
            self.anything = anything

    assert accepted_keys(OwnKwargs) is None  # may take anything: not checked


def test_a_swapped_objective_trains(compose_cfg: Callable[..., Any], tmp_path: Path) -> None:
    """``+experiment=rl_from_ce objective=polychromic`` runs end to end (tiny model)."""
    from polylora.run import pipeline

    cfg = compose_cfg(["+experiment=rl_from_ce", "objective=polychromic", "model=tiny_random",
                       "lora=r4", "data=words_small", "train.max_steps=2", "eval.enabled=false",
                       "objective.max_new_tokens=4", "objective.diversity_metric=distinct",
                       "objective.quality=none"], output_dir=tmp_path / "run")
    result = pipeline.execute(cfg)
    assert result.metrics["train/steps"] == 2


def test_every_shipped_experiment_sets_only_its_objectives_settings(
    compose_cfg: Callable[..., Any],
) -> None:
    from helpers import CONF_DIR

    from polylora.train.preparation import check_swapped_objective

    experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    assert "rl_from_ce" in experiments
    for name in experiments:
        check_swapped_objective(compose_cfg([f"+experiment={name}"]))  # raises if not
