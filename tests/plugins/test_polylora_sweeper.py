"""The ``polylora_optuna`` sweeper: discovery, directions, resume to ``n_trials`` after a kill,
failing trials, several workers on one study, and one-line errors on bad input.

Real Hydra multiruns in subprocesses on the tiny model, real sqlite Optuna and MLflow stores.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import CONF_DIR, REPO

from polylora.sweep import tags
from polylora.sweep.optimized_metric import metric_split, optimized_metrics

#: The smoke experiment, shorter still: 2 steps, validation loss only (no generation).
SMOKE_LR = ["+experiment=smoke", "+hparams_search=lr", "train.max_steps=2",
            "train.eval_every=2", "train.save_every=2", "eval.enabled=false"]


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",  # the tiny model: threads only add overhead
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop(tags.PARENT_RUN_ENV, None)
    return env


def _command(cwd: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "polylora", "-m", *args,
            f"tracking.uri=sqlite:///{cwd}/mlflow.db",
            f"hydra.sweeper.storage=sqlite:///{cwd}/optuna.db"]


def sweep(cwd: Path, *args: str, timeout: float = 300,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a sweep to the end in ``cwd`` (``env``: variables added to the test environment)."""
    return subprocess.run(_command(cwd, *args), cwd=cwd, env={**_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def trial_states(cwd: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial in ``cwd``'s study database, read with plain sqlite."""
    db = cwd / "optuna.db"
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return list(conn.execute("SELECT number, state FROM trials ORDER BY number"))
        except sqlite3.OperationalError:  # tables not created yet
            return []


def has_params(cwd: Path, number: int) -> bool:
    """Whether trial ``number`` has its parameters recorded (read with plain sqlite)."""
    with sqlite3.connect(cwd / "optuna.db", timeout=30) as conn:
        try:
            (count,) = conn.execute(
                "SELECT COUNT(*) FROM trial_params p JOIN trials t ON p.trial_id = t.trial_id "
                "WHERE t.number = ?", (number,)).fetchone()
        except sqlite3.OperationalError:
            return False
    return count > 0


def load_study(cwd: Path, name: str = "smoke-lr") -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/optuna.db")


def mlflow_runs(cwd: Path) -> list[object]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cwd}/mlflow.db")
    exp = client.get_experiment_by_name("polylora")
    return [] if exp is None else client.search_runs([exp.experiment_id])


# --- in process: discovery and configuration ------------------------------------------------


def test_plugin_is_discovered_and_its_config_registered() -> None:
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [c.__name__ for c in Plugins.instance().discover(Sweeper)]
    assert "PolyloraOptunaSweeper" in names
    node = ConfigStore.instance().load("hydra/sweeper/polylora_optuna.yaml").node
    assert node._target_.endswith("PolyloraOptunaSweeper")
    assert node.storage == "sqlite:///optuna.db" and node.direction is None
    assert node.resume is True and node.max_failure_rate == 1.0


@pytest.mark.parametrize("search", ["rank", "lr", "lambda", "rank_lambda", "n_generations",
                                    "pareto"])
def test_every_search_config_composes(search: str) -> None:
    """Each ``+hparams_search=...`` selects the polylora sweeper, names its study after the
    experiment and sweeps into ``multirun/<study>``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from polylora.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=["+experiment=smoke_polychromic",
                                           f"+hparams_search={search}"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("PolyloraOptunaSweeper")
    assert sweeper.study_name == f"smoke_polychromic-{search}"
    assert cfg.hydra.sweep.dir == f"multirun/smoke_polychromic-{search}"
    assert sweeper.params
    if "rank" in search:
        assert cfg.lora.alpha_ratio == 4.0  # α/r held constant across ranks
    if search == "pareto":
        assert list(cfg.optimized_metric) == ["val/pass@10", "val/semantic_diversity"]
    # a search selects on validation metrics only (the default eval/loss is the val curve)
    names = optimized_metrics(cfg.optimized_metric)
    assert {metric_split(n) for n in names} == {"validation"}


def test_direction_comes_from_the_metric_registry() -> None:
    from polylora.errors import ConfigError
    from polylora.sweep.sweeper import PolyloraOptunaSweeperImpl

    def impl(direction: object) -> PolyloraOptunaSweeperImpl:
        return PolyloraOptunaSweeperImpl(None, direction, None, None, 1, 1, 1.0, None, None)

    assert impl(None)._directions(["eval/loss"]) == ["minimize"]
    assert impl(None)._directions(["val/pass@10", "val/semantic_diversity"]) == [
        "maximize", "maximize"]
    assert impl(None)._directions(["val/pass_at_4"]) == ["maximize"]
    assert impl("maximize")._directions(["eval/loss"]) == ["maximize"]  # explicit wins
    with pytest.raises(ConfigError, match="optimized_metric=eval/nope"):
        impl(None)._directions(["eval/nope"])
    with pytest.raises(ConfigError, match="1 direction"):
        impl("maximize")._directions(["val/pass@1", "val/self_bleu"])
    with pytest.raises(ConfigError, match="computed on the test split"):
        impl(None)._directions(["eval/pass@1"])


def test_bad_sweeper_settings_are_listed_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from polylora.sweep.sweeper import PolyloraOptunaSweeperImpl

    with pytest.raises(SystemExit) as info:
        PolyloraOptunaSweeperImpl(None, None, None, None, -1, 0, 1.0, None, None,
                                  heartbeat_interval=10, grace_period=5)
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("polylora: error: 2 problems in the config: (1) hydra.sweeper.grace"
                           "_period=5 must exceed hydra.sweeper.heartbeat_interval=10")
    assert "(2) hydra.sweeper.n_jobs must be >= 1 and n_trials >= 0" in line


# --- subprocess sweeps ----------------------------------------------------------------------


@pytest.mark.slow  # a subprocess end to end; runs in make test-slow
def test_killed_sweep_resumes_to_n_trials(tmp_path: Path) -> None:
    """Kill the sweeper while trial 1 runs; the same command ends with three COMPLETE trials:
    trial 1 (no more heartbeats) is FAIL and a copy with its parameters ran in its place."""
    args = [*SMOKE_LR, "hydra.sweeper.n_trials=3", "hydra.sweeper.heartbeat_interval=1"]
    proc = subprocess.Popen(_command(tmp_path, *args), cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            states = [s for _, s in trial_states(tmp_path)]
            if (states.count("COMPLETE") == 1 and states.count("RUNNING") == 1
                    and has_params(tmp_path, 1)):  # killed mid-run, not between ask and suggest
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
    assert trial_states(tmp_path) == [(0, "COMPLETE"), (1, "RUNNING")]

    done = sweep(tmp_path, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trial 1 was interrupted" in done.stdout + done.stderr
    study = load_study(tmp_path)
    states = {t.number: t.state.name for t in study.trials}
    assert states[0] == "COMPLETE" and states[1] == "FAIL"
    assert sorted(states.values()) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert retry.state.name == "COMPLETE" and retry.params == study.trials[1].params
    complete = sorted(str(n) for n, s in states.items() if s == "COMPLETE")

    runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    assert len(parents) == 1  # the resumed sweep reused the parent run
    children = [r for r in runs
                if r.data.tags.get(tags.PARENT_TAG) == parents[0].info.run_id]
    finished = sorted(r.data.tags[tags.TRIAL_TAG] for r in children
                      if r.info.status == "FINISHED")
    assert finished == complete
    # a run the kill cut short (if trial 1 had started one) is KILLED, not left RUNNING
    assert {r.info.status for r in children} <= {"FINISHED", "KILLED"}

    again = sweep(tmp_path, *args)  # complete: nothing left to run
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(load_study(tmp_path).trials) == 4


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """Grid over a valid and an invalid learning rate: one FAIL, one COMPLETE, exit 0."""
    proc = sweep(tmp_path, *SMOKE_LR, "hydra/sweeper/sampler=grid",
                 "train.learning_rate=choice(1e-4,-1.0)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(tmp_path)
    by_state = {t.state.name: t for t in study.trials}
    assert sorted(by_state) == ["COMPLETE", "FAIL"]
    assert by_state["FAIL"].params["train.learning_rate"] == -1.0
    assert "train.learning_rate must be > 0" in by_state["FAIL"].user_attrs[tags.ERROR_ATTR]
    summary = (tmp_path / "multirun" / "smoke-lr" / tags.SUMMARY_MD).read_text()
    assert "| FAIL |" in summary and "train.learning_rate must be > 0" in summary


@pytest.mark.slow
def test_parallel_workers_share_one_study_and_stop_at_n_trials(tmp_path: Path) -> None:
    """launchers/parallel_workers.sh: two sweeper processes started together on one sqlite
    study end with exactly n_trials trials and one parent run."""
    env = {**_env(), "PYTHON": sys.executable, "STAGGER_S": "0",
           "LOG_DIR": str(tmp_path / "logs")}
    proc = subprocess.run(["bash", str(REPO / "launchers" / "parallel_workers.sh"), "2",
                           *_command(tmp_path, *SMOKE_LR, "hydra.sweeper.n_trials=3")[4:]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    logs = "".join(p.read_text()[-1500:] for p in (tmp_path / "logs").glob("*.log"))
    assert proc.returncode == 0, logs
    assert proc.stdout.count("worker ") == 2
    study = load_study(tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    runs = mlflow_runs(tmp_path)
    (parent,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    assert sorted(r.data.tags[tags.TRIAL_TAG] for r in children) == ["0", "1", "2"]


@pytest.mark.slow
def test_pareto_search_records_two_objectives_and_the_front(tmp_path: Path) -> None:
    """+hparams_search=pareto: the task returns one value per metric, both directions come
    from the registry (maximize), the parent run names the Pareto-optimal trials."""
    proc = sweep(tmp_path, "+experiment=smoke_polychromic", "+hparams_search=pareto",
                 "hydra.sweeper.n_trials=2", "optimized_metric=[val/pass@2,val/distinct_2]",
                 "train.max_steps=2", "train.eval_every=2", "train.save_every=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(tmp_path, "smoke_polychromic-pareto")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    assert all(len(t.values) == 2 for t in study.trials)
    (parent,) = [r for r in mlflow_runs(tmp_path)
                 if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    front = {t.number for t in study.best_trials}
    assert {int(n) for n in parent.data.tags["polylora.pareto_trials"].split(",")} == front
    summary = (tmp_path / "multirun" / "smoke_polychromic-pareto" / tags.SUMMARY_CSV)
    header = summary.read_text().splitlines()[0].split(",")
    assert header[2:4] == ["val/pass@2", "val/distinct_2"]


CUSTOM_METRIC_MODULE = '''
def answer_chars(answers: list[str]) -> float:
    """Mean number of characters per answer."""
    return sum(len(a) for a in answers) / len(answers)
'''


def test_a_custom_metric_is_the_sweeps_objective(tmp_path: Path) -> None:
    """``optimized_metric=val/answer_chars``, a metric of the user's own from a module on
    PYTHONPATH: the sweeper registers it, takes its declared direction, and each trial's value
    in the study is the metric the trial's run logged to MLflow."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mylab_sweep_metrics.py").write_text(CUSTOM_METRIC_MODULE)
    env = {"PYTHONPATH": os.pathsep.join([str(lib), _env()["PYTHONPATH"]]),
           "POLYLORA_TRUSTED_TARGETS": "mylab_sweep_metrics"}
    declared = ("eval.custom_metrics=[{name:answer_chars,"
                "_target_:mylab_sweep_metrics.answer_chars,direction:minimize}]")
    proc = sweep(tmp_path, "+experiment=smoke", "+hparams_search=lr", "hydra.sweeper.n_trials=2",
                 "train.max_steps=2", "train.eval_every=2", "train.save_every=2",
                 "eval.metrics=[accuracy]", "eval.subset_size=2", "eval.val_subset_size=2",
                 "eval.n_samples=2", "eval.ks=[1,2]", declared,
                 "optimized_metric=val/answer_chars", env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(tmp_path)
    assert [d.name for d in study.directions] == ["MINIMIZE"]  # the metric's declared one
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
    (parent,) = [r for r in mlflow_runs(tmp_path) if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    assert parent.data.params["sweep.optimized_metric"] == "val/answer_chars"
    children = {int(r.data.tags[tags.TRIAL_TAG]): r for r in mlflow_runs(tmp_path)
                if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id}
    assert sorted(children) == [0, 1]
    for trial in study.trials:
        logged = children[trial.number].data.metrics["val/answer_chars"]
        assert trial.values == [pytest.approx(logged)]
        assert logged > 0  # the tiny model answers something: a real mean, not a default

    untrusted = sweep(tmp_path, "+experiment=smoke", "+hparams_search=lr", declared,
                      "optimized_metric=val/answer_chars", "hydra.sweeper.study_name=other",
                      env={**env, "POLYLORA_TRUSTED_TARGETS": ""}, timeout=120)
    assert untrusted.returncode == 2 and "Traceback" not in untrusted.stderr
    assert ("eval.custom_metrics[0] (answer_chars): mylab_sweep_metrics.answer_chars is outside "
            "the trusted targets") in untrusted.stderr, untrusted.stderr[-2000:]


# Each case also runs in process (tests/sweep/test_sweeper.py); through the command line, one
# case by default and the others under -m slow.
@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["optimized_metric=eval/nope"],
                     "optimized_metric=eval/nope: unknown metric", marks=pytest.mark.slow),
        pytest.param(["optimized_metric=eval/pass@1"],
                     "optimized_metric=eval/pass@1 is computed on the test split",
                     marks=pytest.mark.slow),
        (["lora.rnk=choice(4,8)"], "the search space does not fit the config"),
        pytest.param(["hydra/sweeper/sampler=grid"],
                     "the grid sampler needs discrete parameters", marks=pytest.mark.slow),
        pytest.param(["hydra.sweeper.heartbeat_interval=10", "hydra.sweeper.grace_period=5"],
                     "hydra.sweeper.grace_period=5 must exceed "
                     "hydra.sweeper.heartbeat_interval=10", marks=pytest.mark.slow),
    ],
    ids=["unknown-metric", "test-metric", "unknown-key", "grid-on-interval", "grace-period"],
)
def test_bad_input_is_one_line_before_any_trial(tmp_path: Path, args: list[str],
                                                message: str) -> None:
    proc = sweep(tmp_path, *SMOKE_LR, *args, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("polylora: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert trial_states(tmp_path) == []
    if "rnk" in args[0]:
        assert "rnk" in errors[0] and "Did you mean: 'rank'" in errors[0]
