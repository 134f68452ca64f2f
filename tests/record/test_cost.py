"""A run's dollar cost: the default price per hour of the hardware found, an explicit
``hardware.price_per_hour``, and compute plus the judge's spend."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from polylora.record import cost


def test_common_gpus_have_a_default_price_and_a_cpu_costs_nothing() -> None:
    assert cost.default_price_per_hour("NVIDIA H100 80GB HBM3") == cost.GPU_PRICE_PER_HOUR["H100"]
    assert cost.default_price_per_hour("NVIDIA H200") == cost.GPU_PRICE_PER_HOUR["H200"]
    assert cost.default_price_per_hour("NVIDIA A100-SXM4-80GB", processes=4) == pytest.approx(
        4 * cost.GPU_PRICE_PER_HOUR["A100"])
    assert cost.default_price_per_hour("Tesla T4") == cost.GPU_PRICE_PER_HOUR["T4"]
    assert cost.default_price_per_hour("Some Future Accelerator") == 0.0
    assert cost.default_price_per_hour(None) == 0.0
    cpu = OmegaConf.create({"device": "cpu", "price_per_hour": None})
    assert cost.price_per_hour(cpu) == 0.0


def test_an_explicit_price_wins() -> None:
    hardware = OmegaConf.create({"device": "cpu", "price_per_hour": 0.12})
    assert cost.price_per_hour(hardware) == 0.12
    assert cost.price_per_hour({"device": "cuda", "price_per_hour": 2}) == 2.0


def test_run_cost_is_compute_plus_the_judge() -> None:
    out = cost.run_cost(3.6, 1800.0, {"judge/cost_usd": 0.25, "eval/loss": 1.0})
    assert out == {"run/compute_cost_usd": pytest.approx(1.8), "run/cost_usd": pytest.approx(2.05)}
    assert cost.run_cost(0.0, 100.0, {}) == {"run/compute_cost_usd": 0.0, "run/cost_usd": 0.0}
