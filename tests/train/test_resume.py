"""Killing a run after a checkpoint and resuming gives the same final adapter as a run that
was never interrupted (CPU, same seed); a changed training config is refused on resume; an
incomplete last checkpoint is skipped; SIGTERM ends the run KILLED with a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
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


def test_an_incomplete_last_checkpoint_is_skipped(tmp_path: Path) -> None:
    from polylora.train.trainer import last_checkpoint

    for step, complete in ((3, True), (6, True), (9, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-6"
    assert last_checkpoint(tmp_path / "none") is None


def test_resume_with_a_changed_rank_is_refused_naming_the_keys(
    tmp_path: Path, compose_cfg: Callable[..., Any]
) -> None:
    from polylora.errors import ConfigError
    from polylora.run import pipeline
    from polylora.train import resume

    run_dir = tmp_path / "run"
    small = ["+experiment=smoke", "train.max_steps=3", "eval.enabled=false"]
    pipeline.execute(compose_cfg(small, output_dir=run_dir))
    assert (run_dir / "checkpoints" / resume.RECORD).is_file()
    changed = compose_cfg([*small, "train.resume=true", "lora.rank=8"], output_dir=run_dir)
    with pytest.raises(ConfigError, match=r"differs from the checkpoint's in lora\.rank"):
        pipeline.execute(changed)
    # evaluation settings may change on resume; the training ones match, so it goes on
    same = compose_cfg([*small, "train.resume=true", "eval.n_samples=2"], output_dir=run_dir)
    assert resume.changed_keys(same, run_dir / "checkpoints") == []


def test_sigterm_ends_the_run_killed_with_a_resumable_checkpoint(tmp_path: Path) -> None:
    import mlflow

    from polylora.train.trainer import last_checkpoint

    run_dir = tmp_path / "run"
    proc = start(
        tmp_path,
        run_dir,
        "train.max_steps=100000",
        "train.save_every=100000",
        "train.eval_every=100000",
        "train.logging_steps=1",
    )
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.time() + 300
    while True:  # wait until training has logged a step
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.5)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        if runs and client.get_metric_history(runs[0].info.run_id, "train/loss"):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143
    err = proc.stderr.read()
    assert "Traceback" not in err and "train.resume=true" in err
    assert client.get_run(runs[0].info.run_id).info.status == "KILLED"
    checkpoint = last_checkpoint(run_dir / "checkpoints")
    assert checkpoint is not None and (checkpoint / "trainer_state.json").is_file()


def test_resuming_a_finished_run_leaves_its_weights_and_says_so(
    tmp_path: Path, compose_cfg: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A run that reached max_steps, resumed: no step is trained (no checkpoint past
    max_steps), the adapter it evaluates is the one it finished with, and the log says so."""
    import json
    import logging

    from polylora.run import pipeline

    run_dir = tmp_path / "run"
    small = ["+experiment=smoke", "train.max_steps=4", "train.save_every=2",
             "train.eval_every=2", "eval.enabled=false"]
    first = pipeline.execute(compose_cfg(small, output_dir=run_dir))
    adapter = run_dir / "adapter" / "adapter_model.safetensors"
    finished = load_file(adapter)
    with caplog.at_level(logging.INFO, logger="polylora"):
        again = pipeline.execute(compose_cfg([*small, "train.resume=true"], output_dir=run_dir))
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    state = json.loads((run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json")
                       .read_text())
    assert state["global_step"] == 4
    reloaded = load_file(adapter)
    assert finished.keys() == reloaded.keys()
    assert all(torch.equal(finished[k], reloaded[k]) for k in finished)
    trained = {n: p.detach() for n, p in again.model.named_parameters() if "lora_" in n}
    kept = {n: p.detach() for n, p in first.model.named_parameters() if "lora_" in n}
    assert trained.keys() == kept.keys() and all(torch.equal(trained[n], kept[n]) for n in kept)
    assert again.metrics["train/steps"] == 4
    assert any("already reached max_steps 4" in r.getMessage() for r in caplog.records)
