"""Helpers shared by tests (importable; conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def runs_of(cfg: object) -> list[object]:
    """All MLflow runs of the config's tracking experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)  # type: ignore[attr-defined]
    exp = client.get_experiment_by_name(cfg.tracking.experiment)  # type: ignore[attr-defined]
    return [] if exp is None else client.search_runs([exp.experiment_id])
