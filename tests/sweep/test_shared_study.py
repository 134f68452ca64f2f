"""Several sweeper processes on one Optuna study in a real PostgreSQL server: together they
stop at exactly ``n_trials`` with one MLflow parent run, all exiting 0 when they start at the
same moment on a fresh tracking store; a worker killed mid-trial leaves its trial FAIL by
heartbeat and another worker runs it again.

Real Hydra multiruns in subprocesses on the tiny model (2 steps, no generation).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from polylora.sweep import tags

pytestmark = pytest.mark.slow  # several sweeper processes, each loading torch: ~1-3 min each

SMOKE_LR = ["+experiment=smoke", "+hparams_search=lr", "train.max_steps=2",
            "train.eval_every=2", "train.save_every=2", "eval.enabled=false"]


def env(**extra: str) -> dict[str, str]:
    out = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }
    out.pop("MLFLOW_TRACKING_URI", None)
    out.pop(tags.PARENT_RUN_ENV, None)
    return out


def worker(cwd: Path, study_url: str, tracking_url: str, *args: str) -> list[str]:
    """One sweeper process's command line (``hydra.sweeper.n_jobs=1``)."""
    return [sys.executable, "-m", "polylora", "-m", *SMOKE_LR, "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.storage={study_url}", f"tracking.uri={tracking_url}",
            f"hydra.sweep.dir={cwd}/multirun", *args]


def study_trials(study_url: str) -> list[Any]:
    import optuna

    return optuna.load_study(study_name="smoke-lr", storage=study_url).trials


def sweep_runs(tracking_url: str) -> tuple[Any, list[Any]]:
    """The one parent run of the sweep and its children (fails if there are several)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_url)
    exp = client.get_experiment_by_name("polylora")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    return parent, children


def test_three_workers_started_together_stop_at_n_trials(postgres: Any, tmp_path: Path) -> None:
    """launchers/parallel_workers.sh 3, no stagger, study AND MLflow store on fresh PostgreSQL
    databases: 5 trials, one parent run, five finished children, every worker exits 0. The
    study URL carries a password (the test server's trust authentication ignores it): no log,
    Hydra dump or MLflow param shows it."""
    password = "pw-not-for-logs-7731"
    study_url = postgres.create_database("optuna").replace("polylora@",
                                                           f"polylora:{password}@")
    tracking_url = postgres.create_database("mlflow")
    cmd = worker(tmp_path, study_url, tracking_url, "hydra.sweeper.n_trials=5")
    args = [a for a in cmd[4:] if a != "hydra.sweeper.n_jobs=1"]  # the recipe sets it
    proc = subprocess.run(["bash", str(REPO / "launchers" / "parallel_workers.sh"), "3", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env=env(STAGGER_S="0", LOG_DIR=str(tmp_path / "logs")))
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("*.log")}
    assert proc.returncode == 0, {k: v[-1500:] for k, v in logs.items()}
    assert len(logs) == 3 and not any("polylora: error" in text for text in logs.values())
    assert [t.state.name for t in study_trials(study_url)] == ["COMPLETE"] * 5
    parent, children = sweep_runs(tracking_url)
    assert sorted(int(r.data.tags[tags.TRIAL_TAG]) for r in children) == [0, 1, 2, 3, 4]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sweep.storage"].startswith("postgresql+psycopg://")
    dumps = [p.read_text() for p in tmp_path.rglob("*.yaml")] + [p.read_text() for p in
                                                               tmp_path.rglob("*.log")]
    assert dumps and not any(password in text for text in dumps)
    assert all(password not in str(r.data.params) for r in [parent, *children])


def _wait_for_running_trial(study_url: str, proc: subprocess.Popen[str],
                            timeout: float = 300) -> int:
    """The number of a RUNNING trial with its parameters set (killed mid-run, not between ask
    and suggest)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            running = [t for t in study_trials(study_url)
                       if t.state.name == "RUNNING" and t.params]
        except Exception:  # the study is not created yet
            running = []
        if running:
            return int(running[0].number)
        time.sleep(0.3)
    raise AssertionError(f"no trial started (worker exit code {proc.poll()})")


def test_a_worker_killed_mid_trial_is_retried_and_the_study_ends_at_n_trials(
        postgres: Any, tmp_path: Path) -> None:
    study_url = postgres.create_database("optuna")
    tracking_url = f"sqlite:///{tmp_path}/mlflow.db"
    args = ("hydra.sweeper.n_trials=4", "hydra.sweeper.heartbeat_interval=1")
    cmd = worker(tmp_path, study_url, tracking_url, *args)
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    others: list[subprocess.Popen[str]] = []
    try:
        killed = _wait_for_running_trial(study_url, first)
        others = [subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
                  for _ in range(2)]
        os.killpg(first.pid, signal.SIGKILL)  # the worker and any process it started
        first.wait(timeout=60)
        outputs = [p.communicate(timeout=900)[0] for p in others]
    finally:
        for p in [first, *others]:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)
    assert [p.returncode for p in others] == [0, 0], [o[-2000:] for o in outputs]
    assert any(f"trial {killed} was interrupted" in o for o in outputs)

    trials = study_trials(study_url)
    states = {t.number: t.state.name for t in trials}
    assert states[killed] == "FAIL"
    assert sorted(states.values()) == ["COMPLETE"] * 4 + ["FAIL"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state.name == "COMPLETE" and retry.params == trials[killed].params
    _, children = sweep_runs(tracking_url)
    finished = sorted(int(r.data.tags[tags.TRIAL_TAG]) for r in children
                      if r.info.status == "FINISHED")
    assert finished == sorted(n for n, s in states.items() if s == "COMPLETE")
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}
