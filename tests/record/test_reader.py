"""Tests for polylora.record.reader against a real MLflow sqlite store."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import pytest

from polylora.errors import PolyloraError
from polylora.record import reader as mlruns


@pytest.fixture
def store(mlflow_uri: str, tmp_path: Path) -> tuple[object, str, str]:
    """A client, a fresh experiment (artifacts under tmp) and its name."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    name = f"runs-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(name, artifact_location=(tmp_path / "art").as_uri())
    return client, exp_id, name


def _run(client: object, exp_id: str, tags: dict[str, str], status: str = "FINISHED") -> str:
    run = client.create_run(exp_id, tags=tags)  # type: ignore[attr-defined]
    client.set_terminated(run.info.run_id, status)  # type: ignore[attr-defined]
    return run.info.run_id


def test_canonical_metric_names() -> None:
    assert mlruns.canonical_metric("eval/pass_at_10") == "pass@10"
    assert mlruns.canonical_metric("eval/pass@3") == "pass@3"
    assert mlruns.canonical_metric("pass_at_1") == "pass@1"
    assert mlruns.canonical_metric("eval/self_bleu") == "self_bleu"


def test_per_prompt_scores_skip_nan_and_average_duplicates() -> None:
    rows = [
        {"id": "a", "scores": {"pass@1": 1.0, "accuracy": math.nan, "loss": 2.0}},
        {"id": "b", "scores": {"pass@1": 0.0, "accuracy": 1.0, "note": "x"}},
        {"id": "a", "scores": {"pass@1": 0.5}},
        {"scores": {"pass@1": 1.0}},  # no id: ignored
    ]
    assert mlruns.per_prompt_scores(rows) == {
        "pass@1": {"a": 0.75, "b": 0.0},
        "accuracy": {"b": 1.0},
        "test_loss": {"a": 2.0},  # the rows' "loss" is the evaluation subset's NLL
    }
    assert mlruns.per_prompt_scores(rows, ["eval/pass_at_1"]) == {"pass@1": {"a": 0.75, "b": 0.0}}


def test_select_runs_excludes_failed_and_comparison_runs(store: tuple) -> None:
    client, exp_id, name = store
    keep = _run(client, exp_id, {"polylora.group": "baseline"})
    other = _run(client, exp_id, {"polylora.group": "poly"})
    _run(client, exp_id, {"polylora.group": "baseline"}, status="FAILED")
    comparison = _run(client, exp_id, {mlruns.KIND_TAG: mlruns.COMPARISON_KIND})
    _run(client, exp_id, {mlruns.ROLE_TAG: "sweep", "polylora.group": "baseline"})
    got = mlruns.select_runs(client, name)
    assert [r.run_id for r in got] == [keep, other]
    # Launchers find compare's run here rather than in its printout.
    assert [r.run_id for r in mlruns.comparison_runs(client, name)] == [comparison]
    assert mlruns.comparison_runs(client, name, since_ms=2**62) == []
    filtered = mlruns.select_runs(client, name, "tags.polylora.group = 'poly'")
    assert [r.run_id for r in filtered] == [other]
    groups, missing = mlruns.group_runs(got, "polylora.group")
    assert list(groups) == ["baseline", "poly"] and missing == []
    with pytest.raises(PolyloraError, match="invalid --filter"):
        mlruns.select_runs(client, name, "tags.x === 'y'")
    with pytest.raises(PolyloraError, match="no experiment named 'nope'"):
        mlruns.select_runs(client, "nope")


def test_metric_history_drops_the_final_step0_evaluation(store: tuple) -> None:
    from mlflow.entities import Metric

    client, exp_id, _ = store
    run_id = _run(client, exp_id, {})
    t0 = 1_700_000_000_000
    points = [Metric("eval/loss", v, t0 + i, s)
              for i, (s, v) in enumerate([(10, 1.0), (20, 0.8), (30, 0.7)])]
    points.append(Metric("eval/loss", 0.9, t0 + 100, 0))  # the pipeline's step-less final eval
    client.log_batch(run_id, metrics=points)
    assert mlruns.metric_history(client, run_id, "eval/loss") == [(10, 1.0), (20, 0.8), (30, 0.7)]
    assert len(mlruns.metric_history(client, run_id, "eval/loss", training_only=False)) == 4
    assert mlruns.final_value(client, run_id, "eval/loss") == 0.9
    assert mlruns.final_value(client, run_id, "eval/missing") is None


def test_load_generations_roundtrip(store: tuple, tmp_path: Path) -> None:
    client, exp_id, _ = store
    run_id = _run(client, exp_id, {})
    assert mlruns.load_generations(client, run_id) is None
    path = tmp_path / "generations.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "scores": {"accuracy": 1.0}})
                              for i in ("x", "y")) + "\n")
    client.log_artifact(run_id, str(path), "eval")
    rows = mlruns.load_generations(client, run_id)
    assert [r["id"] for r in rows or []] == ["x", "y"]


def test_get_run_and_client_errors(store: tuple, tmp_path: Path) -> None:
    client, exp_id, _ = store
    run_id = _run(client, exp_id, {"polylora.objective": "CrossEntropyObjective",
                                   "polylora.seed": "42"})
    info = mlruns.get_run(client, run_id)
    assert info.status == "FINISHED" and info.seed == "42"
    assert mlruns.objective_kind(info) == "ce"
    with pytest.raises(PolyloraError, match="no run with id 'deadbeef'"):
        mlruns.get_run(client, "deadbeef")
    missing = tmp_path / "nothing.db"
    with pytest.raises(PolyloraError, match="does not exist"):
        mlruns.get_client(f"sqlite:///{missing}")
    assert not missing.exists()


def test_objective_kind_from_param() -> None:
    info = mlruns.RunInfo("r", "0", "FINISHED",
                          params={"objective._target_": "polylora.objectives.polychromic."
                                                        "PolychromicObjective"})
    assert mlruns.objective_kind(info) == "polychromic"
    assert mlruns.objective_kind(mlruns.RunInfo("r", "0", "FINISHED")) is None
