"""Every experiment file composes and validates; bad values give ConfigError."""

from __future__ import annotations

import pytest
from helpers import CONF_DIR

from polylora.config import validate
from polylora.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_experiments_exist() -> None:
    assert {"baseline", "baseline_conservative", "smoke"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(compose_cfg, name: str) -> None:
    cfg = compose_cfg([f"+experiment={name}"])
    validate(cfg)
    assert cfg.experiment == name


def test_baseline_columns_match_the_standard_and_conservative_columns(compose_cfg) -> None:
    std = compose_cfg(["+experiment=baseline"])
    con = compose_cfg(["+experiment=baseline_conservative"])
    assert (std.lora.rank, std.lora.dropout, std.train.learning_rate) == (16, 0.1, 2e-4)
    assert (con.lora.rank, con.lora.dropout, con.train.learning_rate) == (8, 0.15, 1e-4)
    assert (std.data.split.train, std.data.split.val, std.data.split.test) == (0.8, 0.1, 0.1)
    assert (con.data.split.train, con.data.split.val, con.data.split.test) == (0.7, 0.15, 0.15)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lora.rank=0", "lora.rank"),
        ("lora.rank=-4", "lora.rank"),
        ("data.split.train=0.5", "sum to 1"),
        ("lora.dropout=1.5", "lora.dropout"),
        ("eval.n_samples=3", "eval.n_samples"),
        ("train.learning_rate=0", "train.learning_rate"),
        ("data.sampler=nope", "data.sampler"),
        ("hardware.precision=fp8", "hardware.precision"),
        ("hardware.autocast=fp8", "hardware.autocast"),
        ("train.save_every=7", "multiple"),
        ("train.checkpoint=middle", "train.checkpoint"),
        ("compare.direction=up", "compare.direction"),
        ("+compare.noninferiority.accuracy=0", "margins must be > 0"),
        ("compare.power=0.01", "compare.alpha"),
    ],
)
def test_invalid_values_are_named(compose_cfg, override: str, message: str) -> None:
    cfg = compose_cfg([override])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_wrong_type_fails_at_composition(compose_cfg) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_cfg(["lora.rank=abc"])


def test_alpha_ratio_holds_alpha_over_rank(compose_cfg) -> None:
    from polylora.models import lora_alpha

    for rank in (4, 8, 16, 32):
        cfg = compose_cfg([f"lora=r{rank}", "lora.alpha_ratio=4"])
        assert lora_alpha(cfg.lora) == 4 * rank
