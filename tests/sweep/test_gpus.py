"""One GPU per parallel job."""

from __future__ import annotations

import pytest

from polylora.sweep.gpus import gpu_for_job


def test_gpu_for_job_cycles_over_the_listed_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYLORA_GPUS", "0,1,3")
    assert [gpu_for_job(n) for n in range(5)] == ["0", "1", "3", "0", "1"]
    monkeypatch.setenv("POLYLORA_GPUS", "")
    assert gpu_for_job(4) == ""
