"""The tracking store from many processes: a fresh mlflow.db opened by several runs at once,
a database locked beyond MLflow's timeout, and store failures as one readable line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import REPO

from polylora.record import store as tracking_store
from polylora.record import tracking, writer
from polylora.record.store import TrackingError

OPEN_AND_RUN = """
import sys
import mlflow
from polylora.record import tracking
tracking.setup(sys.argv[1], "race")
with mlflow.start_run():
    mlflow.log_param("worker", sys.argv[2])
"""


def test_runs_opening_a_fresh_store_together_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_RUN, uri, str(i)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]  # was: alembic 'expected to match one row'
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.data.params["worker"] for r in runs) == ["0", "1", "2"]


def test_a_store_locked_too_long_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    tracking.setup(uri, "locked")
    monkeypatch.setattr(tracking_store, "RETRIES", 1)  # retrying is tested below
    monkeypatch.setattr(tracking_store, "BACKOFF_S", 0.01)
    with mlflow.start_run():
        holder = sqlite3.connect(db, timeout=0.1, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(TrackingError, match=r"stayed locked while trying to log metrics"):
                writer.log_metrics({"x": 1.0})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        writer.log_metrics({"x": 2.0})  # works again once the lock is gone


def test_store_failures_become_one_line() -> None:
    from mlflow.exceptions import MlflowException

    def broken() -> None:
        raise MlflowException("Run 'abc' not found\nTraceback-like detail")

    with pytest.raises(TrackingError) as info:
        tracking_store.call("reopen the run", "sqlite:///x.db", broken)
    assert str(info.value) == (
        "the MLflow store sqlite:///x.db failed to reopen the run: MlflowException: "
        "Run 'abc' not found"
    )
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "done"

    assert tracking_store.call("write", "u", flaky) == "done" and len(attempts) == 3


def test_sqlite_path() -> None:
    assert tracking_store.sqlite_path("sqlite:////a/b.db") == Path("/a/b.db")
    assert tracking_store.sqlite_path("sqlite:///rel.db?x=1") == Path("rel.db")
    assert tracking_store.sqlite_path("http://host:5000") is None


def test_an_unusable_store_path_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(TrackingError, match=r"cannot create the MLflow store .*tracking\.uri"):
        tracking.setup(f"sqlite:///{blocker / 'mlflow.db'}", "x")


def test_a_server_experiment_with_local_artifacts_is_refused() -> None:
    """Through a tracking server, a ``file:`` (or bare path) artifact location would put each
    machine's artifacts on its own disk; proxied and remote locations pass, as does any
    location for a local store."""
    server = "http://user:pw@127.0.0.1:5000"
    for local in ("file:///home/me/mlruns/1", "/home/me/mlruns/1", "mlruns/1"):
        with pytest.raises(TrackingError, match=r"tracking\.experiment=") as err:
            tracking_store.check_artifact_location(server, "exp", local)
        assert "pw@" not in str(err.value)
    for remote in ("mlflow-artifacts:/1", "s3://bucket/mlflow/1", "gs://b/1"):
        tracking_store.check_artifact_location(server, "exp", remote)
    tracking_store.check_artifact_location("sqlite:///mlflow.db", "exp", "file:///x/mlruns/1")
