"""The ``polylora_optuna`` sweep loop in process: real Hydra multiruns of the real config with
a cheap task function in place of training, a real sqlite Optuna study and MLflow store. A
re-run resumes to n_trials, a failing trial is recorded and the sweep goes on, bad input is
one error line before any trial. (tests/plugins runs the same through ``python -m polylora``.)"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
import mlflow
import optuna
import pytest
from helpers import CONF_DIR
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from polylora.config import register_configs
from polylora.sweep.tags import ERROR_ATTR, ROLE_TAG, SUMMARY_CSV, SUMMARY_MD

STUDY = "smoke-lr"


def _distance_to_1e4(cfg: DictConfig) -> float:
    """A stand-in for training: the trial's "loss" is how far its learning rate is from 1e-4
    in decades (a negative rate fails as training would)."""
    lr = float(cfg.train.learning_rate)
    if lr <= 0:
        raise ValueError(f"train.learning_rate must be > 0, got {lr}")
    return abs(math.log10(lr) + 4.0)


def _sweep(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, *args: str,
           task: Callable[[DictConfig], float] = _distance_to_1e4) -> None:
    """``python -m polylora -m +experiment=smoke +hparams_search=lr ARGS`` in this process,
    with ``task`` as the job, the study in ``tmp_path/optuna.db``, the sweep dir under it."""
    register_configs()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "polylora", "-m", "+experiment=smoke", "+hparams_search=lr",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db",
        f"tracking.uri={mlflow_uri}", f"tracking.experiment=sweep-{tmp_path.name}",
        "hydra.sweeper.heartbeat_interval=1",
        # the test process keeps its own logging (Hydra's would replace pytest's handlers)
        "hydra/job_logging=none", "hydra/hydra_logging=none", *args])
    main = hydra.main(config_path=str(CONF_DIR), config_name="config")(task)
    main()


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path}/optuna.db")


def test_a_rerun_resumes_the_study_to_n_trials_under_one_parent_run(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sweep(tmp_path, mlflow_uri, monkeypatch, "hydra.sweeper.n_trials=3")
    study = _study(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    # eval/loss is minimized: the direction comes from the metric registry
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE]

    _sweep(tmp_path, mlflow_uri, monkeypatch, "hydra.sweeper.n_trials=5")
    study = _study(tmp_path)
    assert len(study.trials) == 5  # resumed to n_trials, not 3 + 5
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:
        expected = abs(math.log10(trial.params["train.learning_rate"]) + 4.0)
        assert trial.value == pytest.approx(expected)

    sweep_dir = tmp_path / "multirun" / STUDY
    assert (sweep_dir / SUMMARY_MD).is_file() and (sweep_dir / SUMMARY_CSV).is_file()
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.best_value == pytest.approx(min(t.value for t in study.trials))
    assert results.best_params == study.best_params

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(f"sweep-{tmp_path.name}")
    parents = [r for r in client.search_runs([experiment.experiment_id])
               if r.data.tags.get(ROLE_TAG) == "sweep"]
    assert len(parents) == 1  # the re-run reused the study's parent run
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.params["sweep.optimized_metric"] == "eval/loss"
    assert parents[0].data.params["sweep.direction"] == "minimize"


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sweep(tmp_path, mlflow_uri, monkeypatch, "hydra/sweeper/sampler=grid",
           "train.learning_rate=choice(1e-4,-1.0)")
    by_state = {t.state: t for t in _study(tmp_path).trials}
    assert set(by_state) == {TrialState.COMPLETE, TrialState.FAIL}
    failed = by_state[TrialState.FAIL]
    assert failed.params["train.learning_rate"] == -1.0
    assert "train.learning_rate must be > 0" in failed.user_attrs[ERROR_ATTR]
    assert by_state[TrialState.COMPLETE].value == pytest.approx(0.0)
    summary = (tmp_path / "multirun" / STUDY / SUMMARY_MD).read_text()
    assert "| FAIL |" in summary and "train.learning_rate must be > 0" in summary


def test_a_sweep_where_every_trial_fails_exits_1(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(cfg: DictConfig) -> float:
        raise RuntimeError("the job crashed")

    with pytest.raises(SystemExit) as stopped:
        _sweep(tmp_path, mlflow_uri, monkeypatch, "hydra.sweeper.n_trials=2", task=crash)
    assert stopped.value.code == 1
    assert "polylora: error:" in capsys.readouterr().err
    assert {t.state for t in _study(tmp_path).trials} == {TrialState.FAIL}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimized_metric=eval/nope"], "optimized_metric=eval/nope: unknown metric"),
        (["optimized_metric=eval/pass@1"], "optimized_metric=eval/pass@1 is computed on the "
                                           "test split"),
        (["lora.rnk=choice(4,8)"], "the search space does not fit the config"),
        (["hydra/sweeper/sampler=grid"], "the grid sampler needs discrete parameters"),
        (["hydra.sweeper.heartbeat_interval=10", "hydra.sweeper.grace_period=5"],
         "hydra.sweeper.grace_period=5 must exceed hydra.sweeper.heartbeat_interval=10"),
        (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs must be >= 1"),
    ],
    ids=["unknown-metric", "test-metric", "unknown-key", "grid-on-interval", "grace-period",
         "no-jobs"],
)
def test_bad_input_is_one_error_line_and_exit_2_before_any_trial(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    ran: list[DictConfig] = []

    def task(cfg: DictConfig) -> float:
        ran.append(cfg)
        return 0.0

    with pytest.raises(SystemExit) as stopped:
        _sweep(tmp_path, mlflow_uri, monkeypatch, *args, task=task)
    assert stopped.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("polylora: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert ran == []
    assert not (tmp_path / "optuna.db").exists()  # refused before the study was opened
    if "rnk" in args[0]:
        assert "rnk" in errors[0] and "Did you mean: 'rank'" in errors[0]
