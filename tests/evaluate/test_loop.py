"""The evaluation loop on the tiny model inside a real MLflow run: validation loss and the test
evaluation's metrics are returned and logged, generations and their artifacts written, the
validation subset scored under val/ names, and a judge without a baseline refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
from helpers import CHEAP_EVAL
from omegaconf import OmegaConf

from polylora.errors import ConfigError
from polylora.evaluate import loop as eval_loop
from polylora.model.loading import load_base_model
from polylora.record import names, tracking
from polylora.train.preparation import prepare, prompt_format


@pytest.fixture(scope="module")
def setup(compose_module_cfg) -> tuple[Any, ...]:
    """The smoke config (cheap metrics, 2 prompts × 2 samples), its data, model and format."""
    cfg = compose_module_cfg(["+experiment=smoke", *CHEAP_EVAL.split(), "eval.subset_size=2",
                              "eval.n_samples=2", "eval.val_subset_size=2"])
    prep = prepare(cfg)
    model, tok = load_base_model(cfg.model, cfg.hardware)
    return cfg, prep, model.eval(), tok, prompt_format(cfg, prep.splits.train)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_adapter_returns_logs_and_writes_the_test_evaluation(
    setup: tuple[Any, ...], tmp_path: Path
) -> None:
    cfg, prep, model, tok, fmt = setup
    with tracking.mlflow_run(cfg, {}) as run:
        metrics = eval_loop.evaluate_adapter(
            cfg, prep, model, tok, fmt, tmp_path, step=3,
            row_fields=lambda example_id: {"route": f"to-{example_id}"})
    assert {names.VAL_LOSS, names.VAL_PERPLEXITY, "eval/pass@1", "eval/pass@2",
            names.TEST_LOSS} <= set(metrics)
    assert metrics[names.VAL_LOSS] > 0
    rows = _rows(tmp_path / names.GENERATIONS_FILE)
    assert len(rows) == 2 and all(len(r["samples"]) == 2 for r in rows)
    assert all(r["route"] == f"to-{r['id']}" for r in rows)

    client = mlflow.MlflowClient(cfg.tracking.uri)
    (loss,) = client.get_metric_history(run.info.run_id, names.VAL_LOSS)
    assert loss.step == 3 and loss.value == pytest.approx(metrics[names.VAL_LOSS])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, names.EVAL_ARTIFACTS)}
    assert {names.GENERATIONS_ARTIFACT, f"{names.EVAL_ARTIFACTS}/{names.PASSK_PLOT_FILE}",
            names.SAMPLES_TABLE_ARTIFACT} <= logged


def test_with_evaluation_off_only_the_validation_loss_is_computed(
    setup: tuple[Any, ...], tmp_path: Path
) -> None:
    cfg, prep, model, tok, fmt = setup
    off = OmegaConf.merge(cfg, {"eval": {"enabled": False}})
    with tracking.mlflow_run(off, {}):
        metrics = eval_loop.evaluate_adapter(off, prep, model, tok, fmt, tmp_path)
    assert set(metrics) == {names.VAL_LOSS, names.VAL_PERPLEXITY}
    assert not (tmp_path / names.GENERATIONS_FILE).exists()


def test_validation_eval_scores_the_validation_subset_under_val_names(
    setup: tuple[Any, ...], tmp_path: Path
) -> None:
    cfg, prep, model, tok, fmt = setup
    with tracking.mlflow_run(cfg, {}):
        metrics = eval_loop.validation_eval(cfg, prep, model, tok, fmt, tmp_path)
    assert metrics and all(k.startswith(names.VAL_PREFIX) for k in metrics)
    assert "val/pass@1" in metrics and "val/test_loss" not in metrics  # no model metrics
    val_ids = {r["id"] for r in _rows(tmp_path / names.VAL_GENERATIONS_FILE)}
    assert len(val_ids) == 2 and val_ids <= {e.id for e in prep.splits.val}


def test_a_judge_without_a_baseline_run_is_a_config_error(
    setup: tuple[Any, ...], tmp_path: Path
) -> None:
    cfg, prep, model, tok, fmt = setup
    judged = OmegaConf.merge(cfg, {"eval": {"judge": {"enabled": True, "baseline_run": None}}})
    with pytest.raises(ConfigError, match=r"eval\.judge\.baseline_run"), \
            tracking.mlflow_run(judged, {}):
        eval_loop.evaluate_adapter(judged, prep, model, tok, fmt, tmp_path)
