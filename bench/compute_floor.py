"""The compute floor every benchmark prints beside its measurement: a step's matmul FLOPs
(counted by ``torch.utils.flop_counter`` while the step runs) over this CPU's measured matmul
rate, so the distance to the hardware's limit is visible.

The rate is measured on the shapes that dominate SmolLM2-135M's steps (a 576-wide hidden state
against its 1,536-wide MLP), in fp32 or under bf16 autocast as the benchmark runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_rate(bf16: bool = False, rows: int = 2048, inner: int = 576, cols: int = 1536,
                seconds: float = 1.0) -> float:
    """FLOP/s of (rows × inner) @ (inner × cols) on this machine with the current threads."""
    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx, torch.no_grad():
        for _ in range(3):  # warm-up (oneDNN picks its kernels)
            a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            reps += 1
        elapsed = time.perf_counter() - start
    return 2.0 * rows * inner * cols * reps / elapsed


def counted_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn`` once under the FLOP counter: (its result, matmul FLOPs forward + backward)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


def floor_line(label: str, flops: int, rate: float, measured_s: float | None = None) -> str:
    """``label: N GFLOP of matmuls / R GFLOP/s = floor s (measured m s, m/floor × the floor)``."""
    floor = flops / rate
    line = (f"compute floor, {label}: {flops / 1e9:.0f} GFLOP of matmuls / "
            f"{rate / 1e9:.0f} GFLOP/s measured = {floor:.2f} s")
    if measured_s is not None:
        line += f" (measured {measured_s:.2f} s, {measured_s / floor:.1f}x the floor)"
    return line
