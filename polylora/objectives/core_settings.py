"""The sampled-set core's settings check: every bad ``objective.*`` value of the RL
objectives (polychromic, grpo, passk) in one ConfigError, each with its fix."""

from __future__ import annotations

import math
from typing import Any

from polylora.errors import Problems
from polylora.objectives.advantages import ADVANTAGE_NORMS

MIN_GENERATIONS, MAX_GENERATIONS = 2, 8
PG_NORMALIZERS: tuple[str, ...] = ("constant", "sample_mean")
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_core_settings(
    *,
    weight_name: str,
    pg_weight: Any,
    ce_weight: Any,
    n_generations: Any,
    temperature: Any,
    top_p: Any,
    max_new_tokens: Any,
    generate_every: Any,
    advantage_norm: Any,
    pg_normalizer: Any,
    kl_weight: Any,
    kl_estimator: Any,
    no_signal_patience: Any,
    collapse_floor: Any,
    collapse_patience: Any,
    hacking_window: Any,
    micro_batch: Any,
    memory_budget_mb: Any,
) -> None:
    """Raise one ConfigError listing every core setting out of range (``weight_name``: the
    config key of λ)."""
    p = "objective."
    w = weight_name
    found = Problems()
    need = found.check  # records the message when the condition fails
    need(is_number(pg_weight) and pg_weight >= 0,
         f"{p}{w} must be a number >= 0, got {pg_weight!r}")
    need(is_number(ce_weight) and ce_weight >= 0,
         f"{p}ce_weight must be a number >= 0, got {ce_weight!r}")
    need(isinstance(n_generations, int) and not isinstance(n_generations, bool)
         and MIN_GENERATIONS <= n_generations <= MAX_GENERATIONS,
         f"{p}n_generations must be between {MIN_GENERATIONS} and {MAX_GENERATIONS}, "
         f"got {n_generations!r}")
    need(is_number(temperature) and temperature > 0,
         f"{p}temperature must be > 0, got {temperature!r}")
    need(is_number(top_p) and 0 < top_p <= 1, f"{p}top_p must be in (0, 1], got {top_p!r}")
    need(top_p == 1 or (pg_weight == 0 and kl_weight == 0),
         f"{p}top_p={top_p} is not supported by the policy-gradient term (its log-probs "
         "must be those of the distribution sampled from, and polylora does not "
         f"renormalize over the nucleus); use {p}top_p=1.0 (lower {p}temperature instead)")
    need(advantage_norm in ADVANTAGE_NORMS, f"{p}advantage_norm={advantage_norm!r} is "
         f"unknown; use one of {', '.join(ADVANTAGE_NORMS)}")
    need(pg_normalizer in PG_NORMALIZERS, f"{p}pg_normalizer={pg_normalizer!r} is "
         f"unknown; use one of {', '.join(PG_NORMALIZERS)}")
    need(is_number(kl_weight) and kl_weight >= 0,
         f"{p}kl_weight must be a number >= 0, got {kl_weight!r}")
    need(kl_estimator in KL_ESTIMATORS, f"{p}kl_estimator={kl_estimator!r} is unknown; "
         f"use one of {', '.join(KL_ESTIMATORS)} (k3 as a loss has the reverse KL's "
         "gradient)")
    for key, value in (("max_new_tokens", max_new_tokens), ("generate_every", generate_every),
                       ("no_signal_patience", no_signal_patience),
                       ("collapse_patience", collapse_patience),
                       ("hacking_window", hacking_window),
                       ("micro_batch", 1 if micro_batch is None else micro_batch)):
        need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
             f"{p}{key} must be an integer >= 1, got {value!r}")
    need(memory_budget_mb is None or (is_number(memory_budget_mb) and memory_budget_mb > 0),
         f"{p}memory_budget_mb must be a number > 0 or null (no budget), got "
         f"{memory_budget_mb!r}")
    need(is_number(collapse_floor) and 0 <= collapse_floor <= 1,
         f"{p}collapse_floor must be in [0, 1], got {collapse_floor!r}")
    if all(is_number(x) for x in (ce_weight, pg_weight, kl_weight)):  # else listed above
        need(ce_weight > 0 or pg_weight > 0 or kl_weight > 0,
             f"{p}ce_weight and {p}{w} are both 0: nothing to train; set one > 0")
        need(ce_weight > 0 or generate_every == 1,
             f"{p}ce_weight=0 (pure RL) needs {p}generate_every=1: the steps in between "
             "would have no loss")
    found.raise_any()
