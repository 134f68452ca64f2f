"""Tests for polylora.record.writer's logging through a client (runs other than the active one)
and onto the active run, against a real MLflow sqlite store; the reader's child runs and
artifact downloads read what it wrote."""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow

from polylora.record import names, reader, writer
from polylora.tracking import store_client


def _experiment(uri: str, tmp_path: Path) -> tuple[object, str]:
    client = store_client(uri)
    exp_id = client.create_experiment(f"writer-{uuid.uuid4().hex[:8]}",
                                      artifact_location=(tmp_path / "art").as_uri())
    return client, exp_id


def test_log_batch_writes_every_param_metric_and_tag(mlflow_uri: str, tmp_path: Path) -> None:
    client, exp_id = _experiment(mlflow_uri, tmp_path)
    run_id = client.create_run(exp_id).info.run_id  # type: ignore[attr-defined]
    params = {f"p{i}": str(i) for i in range(150)}  # more than one MLflow batch holds
    writer.log_batch(client, run_id, params=params,
                     metrics={names.COMPARE_N_RUNS: 3.0}, tags={names.BASELINE_TAG: "ce"},
                     step=7)
    run = reader.get_run(client, run_id)
    assert run.params == params
    assert run.metrics == {names.COMPARE_N_RUNS: 3.0}
    assert run.tags[names.BASELINE_TAG] == "ce"
    assert reader.metric_history(client, run_id, names.COMPARE_N_RUNS) == [(7, 3.0)]


def test_children_and_artifacts_read_back_what_was_written(mlflow_uri: str,
                                                           tmp_path: Path) -> None:
    client, exp_id = _experiment(mlflow_uri, tmp_path)
    parent = client.create_run(exp_id).info.run_id  # type: ignore[attr-defined]
    child = {names.PARENT_TAG: parent}
    done = client.create_run(exp_id, tags=child).info.run_id  # type: ignore[attr-defined]
    client.set_terminated(done, "FINISHED")  # type: ignore[attr-defined]
    running = client.create_run(exp_id, tags=child).info.run_id  # type: ignore[attr-defined]
    client.create_run(exp_id)  # type: ignore[attr-defined]  # not a child
    children = reader.child_runs(client, [exp_id], parent)
    assert sorted(r.info.run_id for r in children) == sorted([done, running])
    assert [r.info.run_id for r in reader.child_runs(client, [exp_id], parent,
                                                     running_only=True)] == [running]

    note = tmp_path / "note.txt"
    note.write_text("hello", encoding="utf-8")
    writer.log_run_artifact(client, parent, note, names.EVAL_ARTIFACTS)
    local = reader.download_artifact(
        run_id=parent, artifact_path=f"{names.EVAL_ARTIFACTS}/note.txt", tracking_uri=mlflow_uri)
    assert local.read_text(encoding="utf-8") == "hello"


def test_active_run_tags_and_metrics(mlflow_uri: str, tmp_path: Path) -> None:
    client, exp_id = _experiment(mlflow_uri, tmp_path)
    writer.set_active_run_tag(names.warning_tag("x"), "step 1")  # no active run: nothing
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run(experiment_id=exp_id) as active:
        writer.set_active_run_tag(names.warning_tag("diversity_collapse"), "step 7")
        writer.log_metrics({"eval/pass@2": 0.5, names.TRAIN_LOSS: float("nan")}, step=3)
    run = reader.get_run(client, active.info.run_id)
    assert run.tags["polylora.warning.diversity_collapse"] == "step 7"
    assert run.metrics == {"eval/pass_at_2": 0.5}  # MLflow's spelling; NaN left out
