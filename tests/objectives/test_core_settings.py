"""The sampled-set core's settings check: every bad value in one ConfigError, each with its
fix; good settings pass."""

from __future__ import annotations

from typing import Any

import pytest

from polylora.errors import ConfigError
from polylora.objectives.core_settings import check_core_settings, is_number

GOOD: dict[str, Any] = dict(
    weight_name="pg_weight", pg_weight=1.0, ce_weight=1.0, n_generations=4, temperature=1.0,
    top_p=1.0, max_new_tokens=32, generate_every=1, advantage_norm="group_std",
    pg_normalizer="constant", kl_weight=0.0, kl_estimator="k1", no_signal_patience=5,
    collapse_floor=0.1, collapse_patience=3, hacking_window=6, micro_batch=None,
    memory_budget_mb=1200.0,
)


def test_good_settings_pass() -> None:
    check_core_settings(**GOOD)
    check_core_settings(**{**GOOD, "micro_batch": 2, "memory_budget_mb": None})


def test_every_bad_value_is_listed_in_one_error() -> None:
    bad = {**GOOD, "n_generations": 9, "kl_estimator": "k3", "micro_batch": 0,
           "collapse_floor": 2.0}
    with pytest.raises(ConfigError) as caught:
        check_core_settings(**bad)
    message = str(caught.value)
    assert "objective.n_generations must be between 2 and 8, got 9" in message
    assert "objective.kl_estimator='k3' is unknown; use one of k1, k2" in message
    assert "objective.micro_batch must be an integer >= 1, got 0" in message
    assert "objective.collapse_floor must be in [0, 1], got 2.0" in message


def test_nothing_to_train_names_the_weight_key() -> None:
    with pytest.raises(ConfigError, match=r"objective\.ce_weight and objective\.lam are both 0"):
        check_core_settings(**{**GOOD, "weight_name": "lam", "pg_weight": 0, "ce_weight": 0})


def test_is_number_refuses_bools_and_non_finite_values() -> None:
    assert is_number(3) and is_number(0.5)
    assert not is_number(True) and not is_number(float("nan")) and not is_number("1")
