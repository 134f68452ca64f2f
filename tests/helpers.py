"""Helpers shared by tests (importable; conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "polylora" / "conf"


def runs_of(cfg: object) -> list[object]:
    """All MLflow runs of the config's tracking experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)  # type: ignore[attr-defined]
    exp = client.get_experiment_by_name(cfg.tracking.experiment)  # type: ignore[attr-defined]
    return [] if exp is None else client.search_runs([exp.experiment_id])


def tiny_configs() -> tuple[object, object, object]:
    """(model, hardware, lora) configs for the tiny random model on CPU, as test defaults."""
    from omegaconf import OmegaConf

    model = OmegaConf.create(
        {
            "source": "tiny_random",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "num_kv_heads": 2,
            "init_seed": 0,
            "trust_remote_code": False,
        }
    )
    hardware = OmegaConf.create(
        {
            "device": "cpu",
            "precision": "fp32",
            "load_in_4bit": False,
            "gradient_checkpointing": False,
        }
    )
    lora = OmegaConf.create(
        {
            "rank": 4,
            "alpha": 8.0,
            "alpha_ratio": None,
            "dropout": 0.0,
            "target_modules": "all-linear",
            "bias": "none",
        }
    )
    return model, hardware, lora


def jail_or_skip() -> None:
    """Skip a test that needs the code jail where it cannot be built (the reason names what
    to install); fail instead under ``POLYLORA_REQUIRE_JAIL=1`` (CI)."""
    import os

    import pytest

    from polylora.sandbox import jail_problem

    problem = jail_problem()
    if problem is None:
        return
    if os.environ.get("POLYLORA_REQUIRE_JAIL") == "1":
        pytest.fail(problem)
    pytest.skip(f"no jail here: {problem}")
