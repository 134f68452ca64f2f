"""What every training run records about speed, load and cost: MLflow's system metrics,
``train/tokens_per_s`` and ``generation/tokens_per_s`` at each logging step, and
``run/cost_usd`` (the smoke experiment on the tiny model, a real MLflow store)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from helpers import runs_of

from polylora.model import throughput
from polylora.run.pipeline import execute


def test_counter_and_rates() -> None:
    counter = throughput.TokenCounter()
    counter.add(30, 1.5)
    counter.add(10, 0.5)
    assert counter.snapshot() == (40, 2.0)
    assert throughput.rate(40, 2.0) == 20.0
    assert throughput.rate(40, 0.0) is None
    start = throughput.GENERATION.snapshot()
    assert throughput.generation_since(start) == {}
    throughput.GENERATION.add(12, 0.25)
    assert throughput.generation_since(start) == {"generation/tokens_per_s": 48.0,
                                                  "generation/tokens": 12.0}


def test_a_training_run_records_system_metrics_speed_and_cost(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["+experiment=smoke", "tracking.system_metrics_interval_s=0.5",
                       "hardware.price_per_hour=3.6"], output_dir=tmp_path / "speed")
    execute(cfg)
    (run,) = runs_of(cfg)
    metrics = run.data.metrics
    assert "system/cpu_utilization_percentage" in metrics  # MLflow's own monitor
    assert metrics["system/system_memory_usage_megabytes"] > 0
    client = mlflow.MlflowClient(cfg.tracking.uri)
    speed = client.get_metric_history(run.info.run_id, "train/tokens_per_s")
    assert sorted(m.step for m in speed) == [2, 4, 6]  # each logging step (logging_steps=2)
    assert all(m.value > 0 for m in speed)
    assert 0 < metrics["train/tokens"] <= 6 * cfg.train.batch_size * cfg.data.max_length
    assert metrics["generation/tokens_per_s"] > 0 and metrics["generation/tokens"] > 0
    wall = metrics["run/wall_time_s"]
    assert metrics["run/compute_cost_usd"] == pytest.approx(3.6 * wall / 3600, rel=1e-6)
    assert metrics["run/cost_usd"] == pytest.approx(metrics["run/compute_cost_usd"])


def test_system_metrics_can_be_turned_off(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["+experiment=smoke", "tracking.system_metrics=false",
                       "tracking.system_metrics_interval_s=0.5", "train.max_steps=2",
                       "eval.enabled=false"], output_dir=tmp_path / "quiet")
    execute(cfg)
    (run,) = runs_of(cfg)
    assert not [k for k in run.data.metrics if k.startswith("system/")]
    assert run.data.metrics["run/cost_usd"] == 0.0  # a local CPU costs nothing by default
