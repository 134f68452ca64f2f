"""Killing a run after a checkpoint and resuming gives the same final adapter as a run that
was never interrupted (CPU, same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from helpers import REPO
from safetensors.torch import load_file

COMMON = [
    "+experiment=smoke",
    "train.max_steps=24",
    "train.eval_every=3",
    "train.save_every=3",
    "train.early_stopping_patience=0",
    "train.save_total_limit=10",
    "eval.enabled=false",
    "lora.dropout=0.1",
]


def start(tmp_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polylora",
            *COMMON,
            f"hydra.run.dir={run_dir}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_and_resume_matches_uninterrupted(tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    # Slow each step down so the kill lands between checkpoint 3 and the end.
    proc = start(tmp_path, resumed, "train.batch_size=16")
    ckpt = resumed / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (resumed / "adapter").exists(), "the kill came too late to test resuming"

    proc = start(tmp_path, resumed, "train.batch_size=16", "train.resume=true")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    straight16 = tmp_path / "straight16"
    proc = start(tmp_path, straight16, "train.batch_size=16")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    a = load_file(straight16 / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)
