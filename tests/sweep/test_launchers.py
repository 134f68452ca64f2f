"""Sweeps end to end on the tiny model: real Hydra multiruns in subprocesses, a real sqlite
Optuna study and a real sqlite MLflow store, one tmp dir per test as the working directory.

The sweep's pieces on their own are in the neighbouring files.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

from polylora.sweep import tags

LAUNCHERS = REPO / "launchers"

#: The smoke experiment, shorter still: 2 steps, validation loss only (no generation).
FAST = ["train.max_steps=2", "train.eval_every=2", "train.save_every=2", "eval.enabled=false"]


def recipe_env(**extra: str) -> dict[str, str]:
    """The environment the recipes and polylora run with in these tests."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",  # the tiny model: threads only add overhead
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop(tags.PARENT_RUN_ENV, None)
    return env


def run_polylora(cwd: Path, *args: str, recipe: str = "local_sequential.sh",
                 recipe_args: tuple[str, ...] = (), sweeper: bool = True,
                 timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """``launchers/<recipe> <recipe_args> <args>`` in ``cwd``, with stores under ``cwd``."""
    stores = [f"tracking.uri=sqlite:///{cwd}/mlflow.db"]
    if sweeper:
        stores.append(f"hydra.sweeper.storage=sqlite:///{cwd}/optuna.db")
    return subprocess.run(
        ["bash", str(LAUNCHERS / recipe), *recipe_args, *args, *stores],
        cwd=cwd, env=recipe_env(**env), capture_output=True, text=True, timeout=timeout,
    )


def mlflow_runs(cwd: Path) -> list[object]:
    """Every run of the ``polylora`` experiment in ``cwd``'s MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cwd}/mlflow.db")
    exp = client.get_experiment_by_name("polylora")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def read_summary(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


# --- end to end ----------------------------------------------------------------------------


def test_three_trial_sweep_has_one_parent_three_children_and_a_summary(tmp_path: Path) -> None:
    import mlflow
    import optuna

    proc = run_polylora(tmp_path, "+experiment=smoke", "+hparams_search=lr",
                        "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]

    runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    assert len(children) == 3 and len(runs) == 4
    assert sorted(r.data.tags[tags.TRIAL_TAG] for r in children) == ["0", "1", "2"]
    assert {r.data.tags[tags.STUDY_TAG] for r in children} == {"smoke-lr"}
    assert {r.info.status for r in [*children, parent]} == {"FINISHED"}
    assert {r.info.run_name for r in children} == {f"smoke-lr-trial-{i}" for i in range(3)}

    study = optuna.load_study(study_name="smoke-lr", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["polylora.best_trial"] == str(study.best_trial.number)
    assert float(parent.data.tags["best_param.train.learning_rate"]) == pytest.approx(
        study.best_params["train.learning_rate"])
    assert parent.data.params["search.train.learning_rate"] == "tag(log, interval(1e-5, 1e-3))"
    assert parent.data.params["sweep.direction"] == "minimize"  # eval/loss, from the registry
    assert study.user_attrs[tags.PARENT_ATTR] == parent.info.run_id

    sweep_dir = tmp_path / "multirun" / "smoke-lr"
    rows = read_summary(sweep_dir / tags.SUMMARY_CSV)
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    by_run = {r.info.run_id: r for r in children}
    for row in rows:
        child = by_run[row["run_id"]]
        assert row["state"] == "COMPLETE"
        assert float(row["eval/loss"]) == pytest.approx(study.trials[int(row["trial"])].value)
        assert float(row["train.learning_rate"]) > 0
        assert float(row["train_eval_gap"]) == pytest.approx(
            child.data.metrics["train/eval_gap"])
        assert float(row["duration_s"]) > 0
    md = (sweep_dir / tags.SUMMARY_MD).read_text()
    assert md.count("| COMPLETE |") == 3
    # each trial in its own subdir named by trial number, with its adapter
    assert all((sweep_dir / str(i) / "adapter" / "adapter_config.json").exists()
               for i in range(3))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {tags.SUMMARY_CSV, tags.SUMMARY_MD} <= logged


def test_seed_multirun_groups_runs_for_aggregation(tmp_path: Path) -> None:
    proc = run_polylora(tmp_path, "+experiment=smoke", "seed=42,123,456", *FAST, sweeper=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(tmp_path)
    assert sorted(int(r.data.tags["polylora.seed"]) for r in runs) == [42, 123, 456]
    assert {r.data.tags["polylora.group"] for r in runs} == {"smoke"}
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.slow  # a subprocess end to end; runs in make test-slow
def test_local_parallel_runs_trials_in_worker_processes_one_gpu_each(tmp_path: Path) -> None:
    """launchers/local_parallel.sh: trials run in joblib worker processes, are still children
    of the sweep's run, and job N sees GPU POLYLORA_GPUS[N] (never used on a CPU machine)."""
    from omegaconf import OmegaConf

    proc = run_polylora(tmp_path, "+experiment=smoke", "+hparams_search=lr",
                        "hydra.sweeper.n_trials=2", *FAST, recipe="local_parallel.sh",
                        recipe_args=("2",), POLYLORA_GPUS="7,8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    assert sorted(r.data.tags[tags.TRIAL_TAG] for r in children) == ["0", "1"]
    assert {r.info.status for r in children} == {"FINISHED"}
    sweep_dir = tmp_path / "multirun" / "smoke-lr"
    assert len(read_summary(sweep_dir / tags.SUMMARY_CSV)) == 2
    hydra_cfgs = [OmegaConf.load(sweep_dir / str(n) / ".hydra" / "hydra.yaml") for n in (0, 1)]
    assert [c.hydra.job.env_set.CUDA_VISIBLE_DEVICES for c in hydra_cfgs] == ["7", "8"]
    assert {c.hydra.launcher._target_.rsplit(".", 1)[-1] for c in hydra_cfgs} == {
        "JoblibLauncher"}


def test_slurm_recipe_composes_a_submitit_launcher(tmp_path: Path) -> None:
    """launchers/slurm.sh (printed with DRY_RUN=1) selects the submitit Slurm launcher; its
    Hydra config composes (checked with --cfg, nothing is submitted)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    printed = subprocess.run(
        ["bash", str(LAUNCHERS / "slurm.sh"), "+experiment=smoke", "+hparams_search=lr",
         "hydra.launcher.partition=gpu"],
        env=recipe_env(DRY_RUN="1"), capture_output=True, text=True, check=True).stdout
    cmd = shlex.split(printed)
    assert cmd[:4] == [sys.executable, "-m", "polylora", "-m"]
    shown = subprocess.run([*cmd[:3], *cmd[4:], "--cfg", "hydra", "-p", "hydra.launcher"],
                           cwd=tmp_path, env=recipe_env(), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "SlurmLauncher" in shown.stdout and "partition: gpu" in shown.stdout
    assert "gpus_per_node: 1" in shown.stdout


def test_ray_recipe_says_clearly_when_the_plugin_is_missing() -> None:
    proc = subprocess.run(["bash", str(LAUNCHERS / "ray.sh"), "+experiment=smoke"],
                          env=recipe_env(DRY_RUN="1"), capture_output=True, text=True)
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        assert proc.returncode == 3
        assert "pip install '.[ray]'" in proc.stderr
    else:
        assert proc.returncode == 0 and "hydra/launcher=ray" in proc.stdout
