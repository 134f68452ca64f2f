"""Kill a polychromic run after a checkpoint and resume it: the final adapter equals an
uninterrupted run's (same seed). Exercises the objective's step counter (generate_every 2
follows the Trainer's restored global_step) and the restored sampling RNG."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import REPO
from safetensors.torch import load_file

COMMON = [
    "+experiment=smoke_polychromic",
    "objective.diversity_metric=distinct",  # no MiniLM load: seconds per run
    "objective.generate_every=2",
    "objective.max_new_tokens=4",
    "train.max_steps=9",
    "train.eval_every=3",
    "train.save_every=3",
    "train.early_stopping_patience=0",
    "train.save_total_limit=10",
    "eval.enabled=false",
]


def start(tmp_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "polylora", *COMMON, f"hydra.run.dir={run_dir}",
         f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", *extra],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow  # a subprocess end to end; runs in make test-slow
def test_kill_and_resume_polychromic_matches_uninterrupted(tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    proc = start(tmp_path, resumed)
    ckpt = resumed / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert proc.poll() is None, f"run ended before its first checkpoint: {proc.stderr.read()}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (resumed / "adapter").exists(), "the kill came too late to test resuming"

    proc = start(tmp_path, resumed, "train.resume=true")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    straight = tmp_path / "straight"
    proc = start(tmp_path, straight)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
