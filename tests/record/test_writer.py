"""polylora.record.writer against a real MLflow sqlite store and an output folder: logging
through a client (runs other than the active one) and onto the active run (metrics cleaned,
tags redacted, nothing from DDP worker ranks), the run's tags, config, data summary,
generations and final metrics under the record's names; the reader reads back what it wrote."""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from omegaconf import DictConfig, OmegaConf

from polylora.data.example import Example
from polylora.data.size_buckets import dataset_size_bucket
from polylora.data.splits import Splits
from polylora.record import names, reader, tracking, writer
from polylora.record.redaction import REDACTED
from polylora.record.tracking import store_client


def _cfg(mlflow_uri: str) -> DictConfig:
    """The part of a run's config that ``tracking.mlflow_run`` reads, in a fresh experiment."""
    return OmegaConf.create({
        "experiment": "unit", "seed": 3,
        "tracking": {"uri": mlflow_uri, "experiment": f"writer-{uuid.uuid4().hex[:8]}",
                     "run_name": None, "system_metrics": False}})


def _client(cfg: DictConfig) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)


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


def _splits() -> Splits:
    def examples(prefix: str, n: int) -> list[Example]:
        return [Example(id=f"{prefix}{i}", prompt=f"p{i}", response=f"r{i}") for i in range(n)]

    return Splits(train=examples("t", 5), val=examples("v", 2), test=examples("s", 3),
                  groups={"train": ["a", "b"], "val": ["c"], "test": ["d"]})


def test_objective_name_is_found_by_target_outside_hydra() -> None:
    from polylora.objectives.ce import CrossEntropyObjective

    target = f"{CrossEntropyObjective.__module__}.{CrossEntropyObjective.__qualname__}"
    assert writer.objective_name(OmegaConf.create({"objective": {"_target_": target}})) == "ce"
    unknown = OmegaConf.create({"objective": {"_target_": "my.pkg.MyObjective"}})
    assert writer.objective_name(unknown) == "MyObjective"


def test_run_tags_name_the_experiment_group_seed_and_extra(compose_cfg) -> None:
    cfg = compose_cfg(["+experiment=smoke", "+tracking.tags.owner=lab",
                       "data.partition_by=topic", "data.partition_value=maths"])
    tags = writer.run_tags(cfg, writer.merge_tags("ties", ["r1", "r2"], density=0.5))
    assert tags[names.EXPERIMENT_TAG] == "smoke"
    assert tags[names.GROUP_TAG] == "smoke"
    assert tags[names.OBJECTIVE_TAG] == "ce"
    assert tags[names.SEED_TAG] == str(cfg.seed)
    assert tags[names.CHECKPOINT_TAG] == "final"
    assert tags[names.OUTPUT_DIR_TAG] == cfg.output_dir
    assert tags[names.PARTITION_TAG] == "topic=maths"
    assert tags["owner"] == "lab"
    assert tags[names.MERGE_TAG] == "ties" and tags[names.MERGE_SOURCES_TAG] == "r1,r2"
    assert all(isinstance(v, str) for v in tags.values())
    evaluate_only = OmegaConf.merge(cfg, {"train": {"enabled": False}})
    assert names.CHECKPOINT_TAG not in writer.run_tags(evaluate_only)


def test_merge_tags_hold_only_what_was_given() -> None:
    assert writer.merge_tags("linear", ["a", "b"]) == {
        names.MERGE_TAG: "linear", names.MERGE_SOURCES_TAG: "a,b"}
    full = writer.merge_tags("route", ["a"], weights=[0.25, 1.0], density=0.3, k=2,
                             weighting="softmax")
    assert full[names.MERGE_WEIGHTS_TAG] == "0.25,1"
    assert full[names.MERGE_DENSITY_TAG] == "0.3"
    assert full[names.MERGE_K_TAG] == "2"
    assert full[names.MERGE_WEIGHTING_TAG] == "softmax"


def test_rows_and_metrics_round_trip_through_the_output_folder(tmp_path: Path) -> None:
    rows = [{"id": "x", "samples": ["été", "b"]}, {"id": "y", "samples": []}]
    path = writer.write_rows(rows, tmp_path / "deep" / "rows.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert "été" in lines[0]  # UTF-8 text, not \u escapes
    written = writer.write_metrics({"b": 2.0, "a": 1.5}, tmp_path)
    assert written.name == names.METRICS_FILE
    assert list(json.loads(written.read_text())) == ["a", "b"]  # sorted by name
    assert writer.read_metrics(tmp_path) == {"a": 1.5, "b": 2.0}


def test_recorded_run_writes_id_config_and_data_summary(compose_cfg, tmp_path: Path) -> None:
    secret = "sk-" + "c" * 24
    cfg = compose_cfg(["+experiment=smoke", f"+tracking.tags.note={secret}"])
    out = tmp_path / "out"
    out.mkdir()
    splits = _splits()
    with writer.recorded_run(cfg, writer.run_tags(cfg), splits, ["bert_score"], out) as active:
        run_id = active.info.run_id
        writer.write_generations([{"id": "s0"}], out)
        writer.write_generations([{"id": "v0"}], out, validation=True)
    assert (out / names.RUN_ID_FILE).read_text() == run_id
    config_text = (out / names.CONFIG_FILE).read_text()
    assert secret not in config_text and REDACTED in config_text
    report = json.loads((out / names.SPLIT_REPORT_FILE).read_text())
    assert report["counts"] == {"train": 5, "val": 2, "test": 3}

    client = mlflow.MlflowClient(cfg.tracking.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics[names.data_size_metric("train")] == 5.0
    assert run.data.metrics[names.DATA_TOTAL] == 10.0
    assert run.data.metrics[names.data_groups_metric("train")] == 2.0
    assert run.data.tags[names.DATASET_SIZE_BUCKET_TAG] == dataset_size_bucket(5)
    assert run.data.tags[names.METRICS_LEFT_OUT_TAG] == "bert_score"
    assert run.data.tags["note"] == REDACTED
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {names.CONFIG_FILE, names.SPLIT_REPORT_FILE, names.EVAL_ARTIFACTS,
            names.VAL_ARTIFACTS} <= top
    assert [a.path for a in client.list_artifacts(run_id, names.EVAL_ARTIFACTS)] == [
        names.GENERATIONS_ARTIFACT]
    assert [a.path for a in client.list_artifacts(run_id, names.VAL_ARTIFACTS)] == [
        f"{names.VAL_ARTIFACTS}/{names.VAL_GENERATIONS_FILE}"]
    datasets = sorted(d.dataset.name for d in run.inputs.dataset_inputs)
    assert datasets == sorted(f"{cfg.data.name}-{s}" for s in ("train", "validation", "test"))


def test_finish_run_adds_time_memory_and_cost_and_skips_the_curve(
    compose_cfg, tmp_path: Path
) -> None:
    cfg = compose_cfg(["+experiment=smoke"])
    out = tmp_path / "out"
    out.mkdir()
    metrics = {"eval/pass@1": 0.5, names.VAL_LOSS: 9.0, "judge/cost_usd": 0.25}
    started = time.time() - 36.0
    with writer.recorded_run(cfg, {}, _splits(), [], out) as active:
        writer.finish_run(metrics, out, started, step=7, price_per_hour=10.0)
    assert metrics[names.RUN_WALL_TIME] >= 36.0 and metrics[names.RUN_PEAK_RSS] > 0
    compute = metrics["run/compute_cost_usd"]
    assert compute == pytest.approx(10.0 * metrics[names.RUN_WALL_TIME] / 3600)
    assert metrics["run/cost_usd"] == pytest.approx(compute + 0.25)
    assert writer.read_metrics(out) == pytest.approx(metrics)
    client = mlflow.MlflowClient(cfg.tracking.uri)
    logged = client.get_run(active.info.run_id).data.metrics
    assert logged["eval/pass_at_1"] == 0.5 and logged["run/cost_usd"] == pytest.approx(
        metrics["run/cost_usd"])
    assert names.VAL_LOSS not in logged  # the validation curve is logged at its own steps
    (point,) = client.get_metric_history(active.info.run_id, "eval/pass_at_1")
    assert point.step == 7


def test_metrics_drop_non_finite_and_non_numbers_and_rename_at(mlflow_uri: str) -> None:
    cfg = _cfg(mlflow_uri)
    with tracking.mlflow_run(cfg, {}) as run:
        writer.log_metrics({"eval/pass@2": 0.5, "nan": math.nan, "inf": math.inf,
                              "text": "x", "count": 3}, step=4)  # type: ignore[dict-item]
        writer.log_metrics({"nan": math.nan})  # nothing left to log: no call, no error
    metrics = _client(cfg).get_run(run.info.run_id).data.metrics
    assert metrics == {"eval/pass_at_2": 0.5, "count": 3.0}


def test_tags_are_redacted_by_key_by_value_and_inside_overrides(mlflow_uri: str) -> None:
    secret = "sk-" + "b" * 24
    cfg = _cfg(mlflow_uri)
    with tracking.mlflow_run(cfg, {"judge.api_key": "plain"}) as run:
        writer.set_tags({"note": f"key {secret}",
                           "polylora.overrides": f"seed=1 +judge.api_key={secret}"})
    tags = _client(cfg).get_run(run.info.run_id).data.tags
    assert tags["judge.api_key"] == REDACTED
    assert tags["note"] == f"key {REDACTED}"
    assert tags["polylora.overrides"] == f"seed=1 +judge.api_key={REDACTED}"


def test_artifacts_log_a_file_and_a_folder(mlflow_uri: str, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inner.txt").write_text("in")
    (tmp_path / "single.txt").write_text("one")
    cfg = _cfg(mlflow_uri)
    with tracking.mlflow_run(cfg, {}) as run:
        writer.log_artifact(tmp_path / "single.txt", "files")
        writer.log_artifact(tmp_path / "folder", "tree")
    client = _client(cfg)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "files")] == ["files/single.txt"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "tree")] == ["tree/inner.txt"]


def test_worker_ranks_record_nothing(mlflow_uri: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f.txt").write_text("x")
    cfg = _cfg(mlflow_uri)
    with tracking.mlflow_run(cfg, {}) as run:
        monkeypatch.setenv("RANK", "1")
        assert not tracking.is_main_process()
        writer.log_metrics({"m": 1.0})
        writer.set_tags({"t": "v"})
        writer.log_artifact(tmp_path / "f.txt")
        monkeypatch.setenv("RANK", "0")
    got = _client(cfg).get_run(run.info.run_id)
    assert got.data.metrics == {} and "t" not in got.data.tags
    assert _client(cfg).list_artifacts(run.info.run_id) == []
