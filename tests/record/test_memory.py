"""The allocator setting of :mod:`polylora.record.memory`: tensors freed after a phase leave the
resident set instead of staying in the heap and adding to the next phase's peak."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from polylora.record import memory

# In a fresh interpreter: free a 16 MiB tensor (glibc's dynamic threshold then rises to it),
# allocate 200 one-MiB tensors each followed by a small tensor that stays, free the big ones
# and report how much of their 200 MiB is still resident.
_PROBE = """
import json, sys
import psutil, torch
from polylora.record import memory
applied = memory.return_freed_memory() if sys.argv[1] == "on" else False
rss = lambda: psutil.Process().memory_info().rss / 2**20
big = torch.ones(4 * 2**20)
del big
before = rss()
big, small = [], []
for _ in range(200):
    big.append(torch.ones(2**18))
    small.append(torch.ones(64))
grown = rss() - before
del big
print(json.dumps({"applied": applied, "grown": grown, "kept": rss() - before}))
"""


def _probe(mode: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_tensors_leave_the_resident_set() -> None:
    on, off = _probe("on"), _probe("off")
    assert on["applied"] is True and off["applied"] is False
    assert on["grown"] > 150 and off["grown"] > 150  # both held the 200 MiB
    assert on["kept"] < 30, on  # returned to the system when freed
    assert off["kept"] > 150, off  # glibc's default keeps them in the heap (what it fixes)


def test_setting_changes_no_value() -> None:
    import torch

    torch.manual_seed(0)
    x = torch.randn(300, 300)
    before = (x @ x).sum().item()
    memory.return_freed_memory()
    assert (x @ x).sum().item() == before
