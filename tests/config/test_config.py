"""Every experiment file composes and validates; bad values give ConfigError."""

from __future__ import annotations

import pytest
from helpers import CONF_DIR

from polylora.errors import ConfigError
from polylora.train.config_checks import validate

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
    from polylora.model.loading import lora_alpha

    for rank in (4, 8, 16, 32):
        cfg = compose_cfg([f"lora=r{rank}", "lora.alpha_ratio=4"])
        assert lora_alpha(cfg.lora) == 4 * rank


def test_every_problem_is_listed_in_one_error(compose_cfg) -> None:
    """``validate`` collects every group's problems into one ConfigError (one line)."""
    cfg = compose_cfg(["lora.rank=0", "train.batch_size=0", "hardware.precision=fp8",
                       "optimized_metric=val/nope"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert message.startswith("4 problems in the config: (1) lora.rank must be a positive")
    for part in ("(2) train.batch_size must be > 0", "(3) hardware.precision='fp8' is unknown",
                 "(4) optimized_metric=val/nope: unknown metric 'nope'"):
        assert part in message
    assert "\n" not in message


def test_each_group_check_returns_its_problems(compose_cfg) -> None:
    from polylora.train import config_checks as validation

    cfg = compose_cfg(["train.eval_every=0", "eval.max_new_tokens=0"])
    assert validation.check_train(cfg) == ["train.eval_every and save_every must be > 0"]
    assert validation.check_eval(cfg) == ["eval.max_new_tokens must be >= 1"]
    assert validation.check_model(cfg) == [] and validation.check_lora(cfg) == []
    assert validation.problems(cfg) == [*validation.check_train(cfg),
                                        *validation.check_eval(cfg)]


def test_judge_settings_are_checked_before_any_run(compose_cfg) -> None:
    cfg = compose_cfg(["eval.judge.enabled=true", "eval.judge.baseline_run=abc",
                       "eval.judge.model=some-new-model", "eval.judge.answers=best",
                       "eval.judge.max_calls=0"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    message = str(info.value)
    assert "eval.judge.max_calls=0 must be >= 1" in message
    assert "eval.judge.model='some-new-model' has no known price" in message
    assert "eval.judge.answers='best'; use greedy or first_sample" in message
    priced = compose_cfg(["eval.judge.enabled=true", "eval.judge.baseline_run=abc",
                          "eval.judge.model=some-new-model", "eval.judge.price_per_mtok_in=1",
                          "eval.judge.price_per_mtok_out=2"])
    validate(priced)


def test_custom_metric_declarations_and_names_are_checked(compose_cfg) -> None:
    """A declared custom metric may be the optimized metric before it is registered; a bad
    declaration is listed with the other problems (importing it is the registration's check)."""
    declared = ("eval.custom_metrics=[{name:answer_words,_target_:mylab.answer_words,"
                "direction:minimize}]")
    validate(compose_cfg([declared, "optimized_metric=val/answer_words"]))
    bad = declared.replace("minimize", "up").replace("mylab.answer_words", "/tmp/x.py")
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg([bad, "optimized_metric=val/answer_words"]))
    message = str(info.value)
    assert message.startswith("2 problems in the config:")
    where = "eval.custom_metrics[0] (answer_words)"
    assert f"{where}: direction must be maximize or minimize" in message
    assert f"{where}: _target_ must be a dotted import" in message


def test_validation_metric_needs_the_evaluation(compose_cfg) -> None:
    cfg = compose_cfg(["+experiment=smoke", "optimized_metric=val/pass@2", "eval.enabled=false"])
    with pytest.raises(ConfigError, match=r"val/pass@2, scored on the validation split, but "
                                          r"eval.enabled=false"):
        validate(cfg)
