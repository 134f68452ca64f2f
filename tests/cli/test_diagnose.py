"""Tests for ``polylora diagnose RUN_ID``: synthetic runs in a real MLflow sqlite store."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import pytest

from polylora.cli.diagnose import fetch_curves
from polylora.cli.main import main

CE = "polylora.objectives.ce.CrossEntropyObjective"
POLY = "polylora.objectives.polychromic.PolychromicObjective"
T0 = 1_700_000_000_000


def flat_train(end: float = 0.6, start: float = 1.2) -> list[tuple[int, float]]:
    """A converged train loss, logged every 10 steps up to step 200."""
    return [(s, end + (start - end) * math.exp(-s / 30)) for s in range(10, 201, 10)]


@pytest.fixture
def store(mlflow_uri: str, tmp_path: Path) -> tuple[object, str]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    name = f"diag-{uuid.uuid4().hex[:8]}"
    return client, client.create_experiment(name, artifact_location=tmp_path.as_uri())


def log_run(
    client: object,
    exp_id: str,
    *,
    experiment: str,
    objective: str,
    train: list[tuple[int, float]],
    evals: list[tuple[int, float]],
    final: dict[str, float],
    params: dict[str, str] | None = None,
    steps_per_epoch: int | None = None,
) -> str:
    """A FINISHED run logged like the pipeline: curves by step, then the final evaluation at
    step 0 (later timestamps), data sizes, params and tags."""
    from mlflow.entities import Metric, Param

    run = client.create_run(exp_id, tags={  # type: ignore[attr-defined]
        "polylora.experiment": experiment, "polylora.group": experiment,
        "polylora.objective": objective.rsplit(".", 1)[-1]})
    rid = run.info.run_id
    metrics = [Metric("train/loss", v, T0 + s, s) for s, v in train]
    metrics += [Metric("eval/loss", v, T0 + s, s) for s, v in evals]
    metrics += [Metric("eval/perplexity", math.exp(v), T0 + s, s) for s, v in evals]
    if steps_per_epoch:
        metrics += [Metric("train/epoch", s / steps_per_epoch, T0 + s, s) for s, _ in train]
    metrics += [Metric(k, v, T0 + 10_000, 0) for k, v in final.items()]
    all_params = {"objective._target_": objective, "data.name": "words", **(params or {})}
    client.log_batch(rid, metrics=metrics,  # type: ignore[attr-defined]
                     params=[Param(k, v) for k, v in all_params.items()])
    client.set_terminated(rid, "FINISHED")  # type: ignore[attr-defined]
    return rid


def diagnose_cli(uri: str, run_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["diagnose", run_id, "--tracking-uri", uri])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_healthy_run(store: tuple, mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    client, exp_id = store
    # A final eval/loss 2.08 logged without a step (step 0, after the curve) must not pose as a
    # curve point (it would make the gap 1.5 → act).
    rid = log_run(client, exp_id, experiment="baseline", objective=CE, train=flat_train(),
                  evals=[(100, 0.70), (200, 0.65)], steps_per_epoch=100,
                  final={"eval/loss": 2.08, "eval/perplexity": 8.0, "eval/accuracy": 0.5,
                         "data/train": 1000.0})
    inputs = fetch_curves(client, rid)
    assert inputs.curves.eval_loss == [(100, 0.70), (200, 0.65)]
    assert inputs.curves.steps_per_epoch == 100 and inputs.curves.n_train_examples == 1000
    assert inputs.curves.eval_perplexity == 8.0 and inputs.curves.quality == 0.5
    rc, out = diagnose_cli(mlflow_uri, rid, capsys)
    assert rc == 0
    assert "## Diagnosis: healthy" in out
    assert "train/eval gap 0.048" in out
    assert "| steps per epoch | 100 (train/epoch: step 200 at epoch 2) |" in out
    assert "| training examples | 1000 (data/train) |" in out
    assert "python -m polylora -m +experiment=baseline seed=42,123,456" in out


def test_overfitting_small_data_run_goes_conservative(
    store: tuple, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client, exp_id = store
    train = [(s, 1.0 - 0.7 * s / 200) for s in range(10, 201, 10)]  # down to 0.3
    rid = log_run(client, exp_id, experiment="baseline", objective=CE, train=train,
                  evals=[(100, 1.0), (200, 1.2)],
                  params={"train.batch_size": "6", "train.grad_accum": "1"},
                  final={"eval/perplexity": 12.0, "data/train": 600.0})
    rc, out = diagnose_cli(mlflow_uri, rid, capsys)
    assert rc == 0
    assert "## Diagnosis: act" in out
    assert "600 examples / (batch 6 × grad_accum 1)" in out  # steps per epoch = 100
    assert "eval loss rising after epoch 1" in out
    assert "<800: conservative" in out
    assert "```bash\npython -m polylora +experiment=baseline_conservative\n```" in out


def test_polychromic_good_diversity_poor_quality_lowers_lambda(
    store: tuple, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client, exp_id = store
    healthy = {"train": flat_train(), "evals": [(100, 0.70), (200, 0.65)],
               "steps_per_epoch": 100}
    log_run(client, exp_id, experiment="baseline", objective=CE, **healthy,  # type: ignore[arg-type]
            final={"eval/accuracy": 0.5, "eval/perplexity": 8.0, "data/train": 1000.0})
    rid = log_run(client, exp_id, experiment="polychromic_0.3", objective=POLY,
                  **healthy,  # type: ignore[arg-type]
                  params={"objective.diversity_weight": "0.3"},
                  final={"eval/accuracy": 0.2, "eval/semantic_diversity": 0.45,
                         "eval/perplexity": 8.0, "data/train": 1000.0})
    inputs = fetch_curves(client, rid)
    assert inputs.curves.objective == "polychromic" and inputs.curves.diversity_weight == 0.3
    assert inputs.curves.baseline_quality == 0.5 and inputs.curves.diversity == 0.45
    rc, out = diagnose_cli(mlflow_uri, rid, capsys)
    assert rc == 0
    assert "## Diagnosis: act" in out and "good diversity" in out and "poor quality" in out
    assert "mean eval/accuracy of 1 CE run(s)" in out
    assert "python -m polylora +experiment=polychromic_0.3 objective.pg_weight=0.15" in out


def test_diversity_derived_from_self_bleu(store: tuple) -> None:
    client, exp_id = store
    rid = log_run(client, exp_id, experiment="baseline", objective=CE, train=flat_train(),
                  evals=[(100, 0.7), (200, 0.65)], final={"eval/self_bleu": 0.8})
    inputs = fetch_curves(client, rid)
    assert inputs.curves.diversity == pytest.approx(0.2)
    assert "derived: 1 − eval/self_bleu" in inputs.sources["diversity"]
    assert inputs.curves.steps_per_epoch is None  # no epoch curve, no data size


def test_unknown_run_and_run_without_eval_loss(
    store: tuple, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = diagnose_cli(mlflow_uri, "0123456789abcdef", capsys)
    assert rc == 2
    assert "polylora: error: no run with id '0123456789abcdef'" in out
    assert len([line for line in out.splitlines() if line.startswith("polylora: error")]) == 1
    client, exp_id = store
    rid = log_run(client, exp_id, experiment="baseline", objective=CE, train=flat_train(),
                  evals=[], final={})
    rc, out = diagnose_cli(mlflow_uri, rid, capsys)
    assert rc == 2 and "polylora: error: no eval/loss points in this run" in out


def test_own_experiment_names_and_columns(
    store: tuple, mlflow_uri: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A researcher's experiment names: the commands rerun the recorded experiment, the
    conservative switch comes from --conservative or the user's --columns file."""
    client, exp_id = store
    train = [(s, 1.0 - 0.7 * s / 200) for s in range(10, 201, 10)]
    rid = log_run(client, exp_id, experiment="lab_ce", objective=CE, train=train,
                  evals=[(100, 1.0), (200, 1.2)], steps_per_epoch=100,
                  final={"eval/perplexity": 12.0, "data/train": 1000.0})
    rc = main(["diagnose", rid, "--tracking-uri", mlflow_uri, "--conservative", "lab_ce_safe"])
    out = capsys.readouterr().out
    assert rc == 0 and "```bash\npython -m polylora +experiment=lab_ce_safe\n```" in out
    assert "conservative lab_ce_safe (--conservative)" in out
    columns = tmp_path / "columns.yaml"
    columns.write_text("standard: {ce: lab_ce}\nconservative: {ce: lab_ce_careful}\n")
    rc = main(["diagnose", rid, "--tracking-uri", mlflow_uri, "--columns", str(columns)])
    out = capsys.readouterr().out
    assert rc == 0 and "```bash\npython -m polylora +experiment=lab_ce_careful\n```" in out
    rc = main(["diagnose", rid, "--tracking-uri", mlflow_uri, "--columns",
               str(tmp_path / "nope.yaml")])
    captured = capsys.readouterr()
    assert rc == 2 and "polylora: error: no columns file" in captured.out + captured.err
