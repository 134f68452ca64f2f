"""What a run costs in dollars: compute (``hardware.price_per_hour`` × wall time) plus the LLM
judge's API spend, logged as ``run/cost_usd`` on every run and summed per study.

``hardware.price_per_hour`` null means the default for the hardware found: 0 on a local CPU,
an indicative on-demand cloud price per GPU for a few common GPUs (times the processes of a
multi-GPU run). Set it to your own rate; the defaults are rough and date quickly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from polylora.record.names import COMPUTE_COST, JUDGE_COST, RUN_COST

#: Indicative on-demand USD per GPU-hour (major clouds, 2025), matched against the CUDA
#: device name, most specific first. Override with ``hardware.price_per_hour``.
GPU_PRICE_PER_HOUR: dict[str, float] = {
    "H200": 3.50,
    "H100": 2.50,
    "A100": 1.50,
    "L40S": 1.00,
    "A10G": 1.00,
    "L4": 0.80,
    "V100": 0.90,
    "T4": 0.35,
    "RTX 4090": 0.40,
}



def default_price_per_hour(device_name: str | None, processes: int = 1) -> float:
    """The table's price for a CUDA device name (0 for a CPU, None, or a GPU not listed),
    times the number of processes (one GPU each)."""
    if not device_name:
        return 0.0
    for key, price in GPU_PRICE_PER_HOUR.items():
        if key.lower() in device_name.lower():
            return price * max(processes, 1)
    return 0.0


def price_per_hour(hardware: Any) -> float:
    """``hardware.price_per_hour`` if set, else the default for the device this run uses."""
    explicit = getattr(hardware, "price_per_hour", None) if not isinstance(hardware, Mapping) \
        else hardware.get("price_per_hour")
    if explicit is not None:
        return float(explicit)
    device = str(getattr(hardware, "device", None) or "cpu")
    if device == "cpu":
        return 0.0
    import torch

    if not torch.cuda.is_available():
        return 0.0
    return default_price_per_hour(torch.cuda.get_device_name(0),
                                  int(os.environ.get("WORLD_SIZE", "1")))


def run_cost(price: float, wall_time_s: float, metrics: Mapping[str, float]) -> dict[str, float]:
    """``run/compute_cost_usd`` and ``run/cost_usd`` (compute + the judge's ``judge/cost_usd``
    where the run called it)."""
    compute = price * max(wall_time_s, 0.0) / 3600.0
    judge = float(metrics.get(JUDGE_COST, 0.0) or 0.0)
    return {COMPUTE_COST: compute, RUN_COST: compute + judge}
