"""Trials through a real launcher: ``hydra/launcher=submitit_local`` (submitit's Slurm code
path without a scheduler) runs each trial as its own submitit job, on an Optuna study in a
real PostgreSQL server, and the sweep still ends at exactly ``n_trials``."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from polylora.sweep import tags

pytestmark = pytest.mark.slow  # three submitit jobs, each a fresh Python loading torch: 1-3 min


def test_submitit_local_runs_each_trial_as_a_job_and_stops_at_n_trials(
        postgres: Any, tmp_path: Path) -> None:
    import mlflow
    import optuna

    study_url = postgres.create_database("optuna")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop(tags.PARENT_RUN_ENV, None)
    sweep_dir = tmp_path / "multirun"
    # n_jobs above n_trials: the sweeper asks only the 3 trials the study still owes
    proc = subprocess.run(
        [sys.executable, "-m", "polylora", "-m", "+experiment=smoke", "+hparams_search=lr",
         "train.max_steps=2", "train.eval_every=2", "train.save_every=2", "eval.enabled=false",
         "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20",
         "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=4",
         f"hydra.sweeper.storage={study_url}", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    study = optuna.load_study(study_name="smoke-lr", storage=study_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    # each trial ran as a submitit job of its own: one job folder and result per trial,
    # in a process other than the sweeper's
    jobs = [p for p in (sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 3
    for job in jobs:
        (result,) = job.glob("*_result.pkl")
        with result.open("rb") as f:
            outcome, _ = pickle.load(f)
        assert outcome == "success"
        assert "Job completed successfully" in next(job.glob("*_log.out")).read_text()

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("polylora").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    assert sorted(int(r.data.tags[tags.TRIAL_TAG]) for r in children) == [0, 1, 2]
    assert {r.info.status for r in children} == {"FINISHED"}
