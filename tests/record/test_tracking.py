"""MLflow tracking on a real sqlite store: a run ends FINISHED, FAILED or KILLED as the job
did, the flattened config arrives as params (in batches, credentials dropped), a resumed run
is the same run, a sweep trial is its parent's child, and datasets are logged per split."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import mlflow
import optuna
import pytest
from omegaconf import DictConfig, OmegaConf

from polylora.record import names, tracking, writer


def _cfg(mlflow_uri: str, **extra: object) -> DictConfig:
    """The part of a run's config that ``mlflow_run`` reads, in a fresh experiment."""
    base = {
        "experiment": "unit",
        "seed": 3,
        "tracking": {"uri": mlflow_uri, "experiment": f"tracking-{uuid.uuid4().hex[:8]}",
                     "run_name": None, "system_metrics": False},
    }
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(extra))


def _client(cfg: DictConfig) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)


def test_flatten_joins_keys_with_dots_and_keeps_lists_whole() -> None:
    nested = {"a": {"b": {"c": 1}, "d": [1, 2]}, "e": "x", "f": {}}
    assert tracking.flatten(nested) == {"a.b.c": 1, "a.d": [1, 2], "e": "x"}


def test_config_params_spell_metric_names_for_mlflow_and_cap_long_values() -> None:
    cfg = OmegaConf.create({"optimized_metric": "eval/pass@1", "eval": {"pass@k": 2},
                            "notes": "x" * 7000, "judge": {"api_key": "sk-x"}})
    params = tracking.config_params(cfg)
    assert params["optimized_metric"] == "eval/pass@1"  # values are left as they are
    assert params["eval.pass_at_k"] == "2"
    assert len(params["notes"]) == 6000
    assert not any("api_key" in key for key in params)
    assert tracking.RESOLVED_PRECISION not in params  # no hardware group, nothing resolved


def test_git_commit_names_the_head_and_marks_a_dirty_tree(tmp_path: Path) -> None:
    assert tracking.git_commit(tmp_path) is None  # not a repository
    env = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("one\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert tracking.git_commit(tmp_path) == head
    (tmp_path / "f.txt").write_text("two\n")
    assert tracking.git_commit(tmp_path) == f"{head}-dirty"


def test_setup_creates_the_experiment_in_the_training_view(mlflow_uri: str) -> None:
    name = f"setup-{uuid.uuid4().hex[:8]}"
    tracking.setup(mlflow_uri, name)
    tracking.setup(mlflow_uri, name)  # a second job on the same experiment: no error
    experiment = mlflow.MlflowClient(mlflow_uri).get_experiment_by_name(name)
    assert experiment is not None
    assert experiment.tags[names.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND
    assert mlflow.get_tracking_uri() == mlflow_uri


def test_a_run_logs_every_param_in_batches_and_ends_finished(mlflow_uri: str) -> None:
    many = {f"p{i:03d}": i for i in range(230)}  # more than MLflow's 100 params per batch
    cfg = _cfg(mlflow_uri, many=many, token="hf_" + "a" * 30)
    with tracking.mlflow_run(cfg, {"polylora.group": "g", "empty": None}) as run:
        run_id = run.info.run_id
    got = _client(cfg).get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "unit-s3"
    assert {k for k in got.data.params if k.startswith("many.")} == {f"many.{k}" for k in many}
    assert got.data.params["many.p229"] == "229"
    assert "token" not in got.data.params  # a credential key is never a param
    assert got.data.tags["polylora.group"] == "g" and "empty" not in got.data.tags
    assert mlflow.active_run() is None


def test_a_run_that_raises_ends_failed_and_the_error_propagates(mlflow_uri: str) -> None:
    cfg = _cfg(mlflow_uri)
    with pytest.raises(RuntimeError, match="boom"), tracking.mlflow_run(cfg, {}) as run:
        run_id = run.info.run_id
        raise RuntimeError("boom")
    assert _client(cfg).get_run(run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


@pytest.mark.parametrize("stop", [KeyboardInterrupt, optuna.TrialPruned])
def test_a_run_stopped_from_outside_ends_killed(mlflow_uri: str,
                                                stop: type[BaseException]) -> None:
    cfg = _cfg(mlflow_uri)
    with pytest.raises(stop), tracking.mlflow_run(cfg, {}) as run:
        run_id = run.info.run_id
        raise stop()
    assert _client(cfg).get_run(run_id).info.status == "KILLED"


def test_a_resumed_run_reopens_the_same_run_without_logging_params_again(
    mlflow_uri: str,
) -> None:
    cfg = _cfg(mlflow_uri, lr=0.1)
    with tracking.mlflow_run(cfg, {}) as run:
        run_id = run.info.run_id
        writer.log_metrics({"train/loss": 2.0}, step=1)
    changed = OmegaConf.merge(cfg, {"lr": 0.5})  # a changed param would be refused by MLflow
    with tracking.mlflow_run(changed, {}, resume_run_id=run_id) as again:
        assert again.info.run_id == run_id
        writer.log_metrics({"train/loss": 1.0}, step=2)
    client = _client(cfg)
    assert client.get_run(run_id).data.params["lr"] == "0.1"
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0)]
    assert len(client.search_runs([client.get_experiment_by_name(
        cfg.tracking.experiment).experiment_id])) == 1


def test_a_sweep_trial_is_a_child_of_the_parent_run_and_run_name_wins(
    mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(mlflow_uri)
    with tracking.mlflow_run(cfg, {}) as parent:
        parent_id = parent.info.run_id
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent_id)
    named = OmegaConf.merge(cfg, {"tracking": {"run_name": "trial-a"}})
    with tracking.mlflow_run(named, {}) as child:
        child_id = child.info.run_id
    got = _client(cfg).get_run(child_id)
    assert got.data.tags["mlflow.parentRunId"] == parent_id
    assert got.info.run_name == "trial-a"


def test_datasets_are_logged_per_non_empty_split(mlflow_uri: str) -> None:
    from polylora.data.example import Example

    train = [Example(id=f"t{i}", prompt=f"p{i}", response=f"r{i}") for i in range(3)]
    cfg = _cfg(mlflow_uri)
    with tracking.mlflow_run(cfg, {}) as run:
        tracking.log_datasets({"train": train, "test": []}, "words", {"origin": "unit"})
    inputs = _client(cfg).get_run(run.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["words-train"]
    assert [t.value for t in inputs[0].tags if t.key == "mlflow.data.context"] == ["train"]
