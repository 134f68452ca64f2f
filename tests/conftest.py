"""Shared fixtures: offline mode, composing the real config into a tmp dir, a per-worker
MLflow sqlite store, and per-worker real servers (PostgreSQL, ``mlflow server``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per xdist worker (and per subprocess it starts): several workers each
    # spinning 2+ OpenMP threads on a 2-core machine slow every step down by an order.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

from helpers import CONF_DIR
from servers import MlflowServer, Postgres, mlflow_server, postgres_server

pytest_plugins = ["embedding_fixtures"]


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store per test worker (schema migration runs once, not per test)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _composer(mlflow_uri: str, default_output: Path) -> Callable[..., object]:
    """A function composing ``polylora/conf/config.yaml`` with overrides into
    ``default_output`` (or the given folder), tracked in one fresh MLflow experiment."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from polylora.config import register_configs

    register_configs()
    experiment = f"test-{uuid.uuid4().hex[:8]}"

    def _compose(overrides: list[str], output_dir: Path | None = None) -> object:
        # fp32 unless the test picks its hardware: tests compare numbers to the last digit
        chooses_hardware = any(o.lstrip("+~").startswith("hardware") for o in overrides)
        pinned = [] if chooses_hardware else ["hardware.autocast=off"]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR)):
            return compose(
                config_name="config",
                overrides=[
                    f"output_dir={output_dir or default_output}",
                    f"tracking.uri={mlflow_uri}",
                    f"tracking.experiment={experiment}",
                    *pinned,
                    *overrides,
                ],
            )

    return _compose


@pytest.fixture
def compose_cfg(tmp_path: Path, mlflow_uri: str) -> Callable[..., object]:
    """Compose ``polylora/conf/config.yaml`` with overrides, output and MLflow experiment
    per test."""
    return _composer(mlflow_uri, tmp_path / "run")


@pytest.fixture(scope="module")
def compose_module_cfg(tmp_path_factory: pytest.TempPathFactory,
                       mlflow_uri: str) -> Callable[..., object]:
    """``compose_cfg`` for a module's shared fixtures: one output folder and MLflow experiment
    for the whole module (a run made once and read by several tests)."""
    return _composer(mlflow_uri, tmp_path_factory.mktemp("module") / "run")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server per test process (each xdist worker starts its own), on
    127.0.0.1; skipped with the reason if it cannot start, failed under CI."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """A fresh, empty PostgreSQL database for one test (its SQLAlchemy URL)."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def mlflow_http(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[MlflowServer]:
    """One ``mlflow server`` per test process on a PostgreSQL database, artifacts proxied to
    a folder of its own (``launchers/mlflow_ui.sh``)."""
    backend = postgres.create_database("mlflow")
    with mlflow_server(backend, tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server
