"""Tracking through a real ``mlflow server`` (``launchers/mlflow_ui.sh``): allowed Host
headers; a sweep logged over HTTP on a PostgreSQL backend with proxied artifacts, its best
adapter fetched by ``runs:/<id>/adapter`` from another directory, ``polylora compare`` on the
same server; an experiment whose artifacts would go to a local path is refused with the fix."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO
from servers import MlflowServer, mlflow_server

from polylora.record.store import TrackingError
from polylora.sweep import tags


def _status(url: str, host: str) -> int:
    """The status of an API call (``/health`` is exempt from Host checks) sent with the Host
    header ``host``."""
    address = url.removeprefix("http://")
    conn = http.client.HTTPConnection(address, timeout=30)
    try:
        conn.request("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
                     headers={"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow  # two server starts: ~20-40 s
def test_mlflow_ui_sh_allows_this_machines_names_and_refuses_others(tmp_path: Path) -> None:
    """MLflow 3 refuses unknown Host headers; the launcher allows this machine's name (what
    compute nodes use with HOST=0.0.0.0), loopback, and what ALLOWED_HOSTS adds."""
    with mlflow_server(f"sqlite:///{tmp_path}/mlflow.db", tmp_path) as server:
        port = server.url.rsplit(":", 1)[1]
        assert _status(server.url, f"{socket.gethostname()}:{port}") == 200
        assert _status(server.url, f"127.0.0.1:{port}") == 200
        assert _status(server.url, f"attacker.example:{port}") in (400, 403)
    extra = tmp_path / "extra"
    extra.mkdir()
    with mlflow_server(f"sqlite:///{extra}/mlflow.db", extra,
                       ALLOWED_HOSTS="mlflow.lab.example:*") as server:
        port = server.url.rsplit(":", 1)[1]
        assert _status(server.url, f"mlflow.lab.example:{port}") == 200
        assert _status(server.url, f"{socket.gethostname()}:{port}") in (400, 403)


@pytest.mark.slow  # PostgreSQL + mlflow server start: ~15-30 s
def test_an_experiment_with_local_artifacts_is_refused_with_the_fix(
        mlflow_http: MlflowServer, tmp_path: Path) -> None:
    """An experiment created against a local store keeps a ``file:`` location; through the
    server every machine would write its artifacts to its own disk."""
    import mlflow

    from polylora.record import tracking
    from polylora.sweep.parent_run import ParentRun

    client = mlflow.MlflowClient(tracking_uri=mlflow_http.url)
    client.create_experiment("made-on-a-laptop", artifact_location=f"file://{tmp_path}/mlruns")
    with pytest.raises(TrackingError, match=r"file://.*tracking\.experiment="):
        tracking.setup(mlflow_http.url, "made-on-a-laptop")
    with pytest.raises(TrackingError, match=r"tracking\.experiment="):
        ParentRun.open(mlflow_http.url, "made-on-a-laptop", "s", None, {}, {})
    tracking.setup(mlflow_http.url, "made-by-the-server")  # a new one: proxied, accepted
    exp = client.get_experiment_by_name("made-by-the-server")
    assert exp.artifact_location.startswith("mlflow-artifacts:")


def _env(tracking_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop(tags.PARENT_RUN_ENV, None)
    env.pop("MLFLOW_TRACKING_URI", None)
    if tracking_url:
        env["MLFLOW_TRACKING_URI"] = tracking_url
    return env


LOAD_ADAPTER = """
import sys
from omegaconf import OmegaConf
from peft import PeftModel
from polylora.model import loading as models
from polylora.record.reader import resolve_adapter
path = models.check_adapter_folder(resolve_adapter(sys.argv[1]), sys.argv[1])
cfg = OmegaConf.load(sys.argv[2])
base, _ = models.load_base_model(cfg.model, cfg.hardware)
model = PeftModel.from_pretrained(base, str(path))
print("LOADED", path, sum(1 for k in model.state_dict() if "lora_" in k))
"""


@pytest.mark.slow
def test_a_sweep_logged_over_http_keeps_everything_on_the_server(
        mlflow_http: MlflowServer, tmp_path: Path) -> None:
    import mlflow

    worker, elsewhere = tmp_path / "worker", tmp_path / "elsewhere"
    worker.mkdir()
    elsewhere.mkdir()
    experiment = "over-http"
    sweep = subprocess.run(
        [sys.executable, "-m", "polylora", "-m", "+experiment=smoke", "+hparams_search=lr",
         "hydra.sweeper.n_trials=2", "train.max_steps=2", "train.eval_every=2",
         "train.save_every=2", f"hydra.sweeper.storage=sqlite:///{worker}/optuna.db",
         f"tracking.uri={mlflow_http.url}", f"tracking.experiment={experiment}"],
        cwd=worker, env=_env(), capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    client = mlflow.MlflowClient(tracking_uri=mlflow_http.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    trials = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    assert len(trials) == 2 and {r.info.status for r in trials} == {"FINISHED"}
    best = next(r for r in trials
                if r.data.tags[tags.TRIAL_TAG] == parent.data.tags["polylora.best_trial"])

    # artifacts are in the server's store, none on the worker's disk
    stored = list(mlflow_http.artifacts.rglob("adapter_model.safetensors"))
    assert any(best.info.run_id in p.parts for p in stored), stored
    assert not list(worker.rglob("mlruns")) and not list(worker.rglob("mlartifacts"))

    # the best adapter, by its MLflow URI, from a directory that never saw the sweep
    config = next(p for p in (worker / "multirun").rglob("config.yaml")
                  if p.parent.name != ".hydra")
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_ADAPTER, f"runs:/{best.info.run_id}/adapter", str(config)],
        cwd=elsewhere, env=_env(mlflow_http.url), capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    line = next(ln for ln in loaded.stdout.splitlines() if ln.startswith("LOADED"))
    assert int(line.rsplit(" ", 1)[1]) > 0 and str(worker) not in line

    # polylora compare reads the same server
    out = elsewhere / "compare"
    compare = subprocess.run(
        [str(Path(sys.executable).parent / "polylora"), "compare", "--experiment", experiment,
         "--tracking-uri", mlflow_http.url, "--out", str(out), "--no-log"],
        cwd=elsewhere, env=_env(), capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0, compare.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "smoke" in report
