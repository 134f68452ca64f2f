"""``polylora compare`` end to end: synthetic runs with known per-prompt scores logged to a real
MLflow sqlite store, the report files, the logged comparison run and the one-line errors."""

from __future__ import annotations

import csv
import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from report.comparison.synthetic import (
    FINAL_LOSS,
    GROUPS,
    IDS,
    SCORES,
    SEEDS,
    diff_table,
    seed_values,
)

from polylora.cli.main import main
from polylora.stats import intervals

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def log_synthetic_runs(uri: str, root: Path) -> str:
    """Log SCORES as FINISHED runs like the pipeline does (+ a FAILED and an ungrouped run)."""
    import mlflow
    from mlflow.entities import Metric

    from polylora.record.names import mlflow_metric_name

    client = mlflow.MlflowClient(tracking_uri=uri)
    name = f"compare-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(name, artifact_location=(root / "artifacts").as_uri())
    mlflow.set_tracking_uri(uri)
    t0 = 1_700_000_000_000
    for (group, seed), scores in SCORES.items():
        tags = {"polylora.group": group, "polylora.objective": GROUPS[group][0],
                "polylora.seed": str(seed), "polylora.experiment": group}
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{group}-{seed}", tags=tags) as run:
            rid = run.info.run_id
            mlflow.log_params({"seed": seed, "lora.rank": 16, "compare.primary": "pass@10",
                               "compare.direction": "increase",
                               "compare.noninferiority.rouge_l": 0.05})
            off = 0.1 * list(GROUPS).index(group) + 0.01 * SEEDS.index(seed)
            curve = [Metric("train/loss", 1.5 * math.exp(-s / 40) + 0.5 + off, t0 + s, s)
                     for s in range(5, 101, 5)]
            curve += [Metric("eval/loss", 0.6 + off + 0.9 * math.exp(-s / 40), t0 + s, s)
                      for s in (25, 50, 75, 100)]
            final = {f"eval/{m}": float(np.mean(list(v.values()))) for m, v in scores.items()}
            final["eval/loss"] = FINAL_LOSS[(group, seed)]  # test-subset loss, logged last
            curve += [Metric(mlflow_metric_name(k), v, t0 + 500, 0) for k, v in final.items()]
            client.log_batch(rid, metrics=curve)
            rows = [{"id": i, "prompt": f"q {i}", "references": ["r"], "samples": ["s"],
                     "greedy": "s", "correct": None,
                     "scores": {m: scores[m][i] for m in scores}} for i in IDS]
            path = root / rid / "generations.jsonl"
            path.parent.mkdir()
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            client.log_artifact(rid, str(path), "eval")
    with mlflow.start_run(experiment_id=exp_id, tags={"polylora.group": "baseline"}):
        mlflow.log_metric("eval/rouge_l", 99.0)
        mlflow.end_run(status="FAILED")
    with mlflow.start_run(experiment_id=exp_id):  # e.g. a sweep parent: no group tag
        mlflow.log_metric("eval/rouge_l", 0.5)
    return name


@pytest.fixture(scope="module")
def experiment(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield log_synthetic_runs(mlflow_uri, tmp_path_factory.mktemp("compare"))


def test_cli_end_to_end(experiment: str, mlflow_uri: str, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    out = tmp_path / "report"
    rc = main(["compare", "--experiment", experiment, "--tracking-uri", mlflow_uri,
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "baseline: baseline" in printed and "| rouge_l ↑ |" in printed
    assert "**confirmed**" in printed and "**non-inferior (margin 0.05)**" in printed
    for name in ("report.md", "summary.csv", "tests.csv", "passk.png",
                 "quality_diversity.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    report = (out / "report.md").read_text()
    assert "1 run(s) without 'polylora.group' skipped" in report
    assert "pass@10, claimed to increase (declared in the runs' config" in report
    assert report.count("`") >= 18  # the nine run ids are listed
    # summary.csv: 3 groups × 4 metrics (pass@10, loss, rouge_l, self_bleu), FAILED run out.
    with (out / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 12, sorted({r["metric"] for r in summary})
    assert {r["n_runs"] for r in summary} == {"3"}
    loss = next(r for r in summary if r["group"] == "baseline" and r["metric"] == "loss")
    # eval/loss is also a training curve: the final evaluation's value (logged last) counts.
    expected_loss = np.mean([FINAL_LOSS[("baseline", s)] for s in SEEDS])
    assert float(loss["mean"]) == pytest.approx(expected_loss)
    assert loss["higher_is_better"] == "False"
    rouge = next(r for r in summary if r["group"] == "baseline" and r["metric"] == "rouge_l")
    ci = intervals.t_interval(seed_values("baseline", "rouge_l"))
    assert (float(rouge["mean"]), float(rouge["ci_low"]), float(rouge["ci_high"])) == \
        pytest.approx((ci.estimate, ci.low, ci.high))
    # tests.csv reproduces the crossed model from the per-prompt artifacts.
    with (out / "tests.csv").open() as f:
        tests = list(csv.DictReader(f))
    row = next(t for t in tests if t["group"] == "polychromic_0.3" and t["metric"] == "self_bleu")
    ref = intervals.crossed_difference(diff_table("polychromic_0.3", "self_bleu"))
    assert float(row["p"]) == pytest.approx(ref.pvalue, rel=1e-9)
    assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((ref.low, ref.high))
    primary = next(t for t in tests if t["group"] == "polychromic_0.3"
                   and t["metric"] == "pass@10")
    assert primary["role"] == "primary" and primary["verdict"] == "confirmed"

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    logged = client.search_runs([exp.experiment_id],
                                filter_string="tags.`polylora.kind` = 'comparison'")
    assert len(logged) == 1
    comp = logged[0]
    assert comp.info.run_name == "comparison" and comp.info.status == "FINISHED"
    assert comp.data.tags["polylora.baseline"] == "baseline"
    assert comp.data.params["metrics"] == "pass@10,loss,rouge_l,self_bleu"
    assert comp.data.params["primary"] == "pass@10"
    names = {f.path for f in client.list_artifacts(comp.info.run_id)}
    assert {"report.md", "summary.csv", "tests.csv", "passk.png"} <= names

    # A second comparison does not select the logged comparison run.
    again = tmp_path / "again"
    assert main(["compare", "--experiment", experiment, "--tracking-uri", mlflow_uri,
                 "--out", str(again), "--no-log", "--metrics", "eval/rouge_l",
                 "--primary", "rouge_l"]) == 0
    text = (again / "report.md").read_text()
    assert "9 FINISHED runs in 3 groups" in text
    assert "given on the command line after the runs (not pre-registered)" in text
    assert len(client.search_runs([exp.experiment_id],
                                  filter_string="tags.`polylora.kind` = 'comparison'")) == 1


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line.startswith("polylora: error:")]
    assert len(err) == 1
    return err[0]


def test_cli_no_matching_runs_is_one_line_exit_2(
    experiment: str, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["compare", "--experiment", experiment, "--tracking-uri", mlflow_uri,
               "--filter", "tags.`polylora.group` = 'nope'", "--out", str(tmp_path / "x"),
               "--no-log"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert f"no FINISHED runs in experiment '{experiment}' match" in line
    assert not (tmp_path / "x").exists()


def test_cli_unknown_metric_lists_available(
    experiment: str, mlflow_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["compare", "--experiment", experiment, "--tracking-uri", mlflow_uri,
               "--metrics", "bertscore_f1", "--out", str(tmp_path / "x"), "--no-log"])
    assert rc == 2
    line = _one_error_line(capsys)
    assert "'bertscore_f1' is not logged by any selected run" in line
    assert "available: pass@10, loss, rouge_l, self_bleu" in line


def test_cli_unknown_experiment_and_baseline(
    experiment: str, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "--experiment", "missing-exp", "--tracking-uri", mlflow_uri,
                 "--no-log"]) == 2
    assert "no experiment named 'missing-exp'" in _one_error_line(capsys)
    assert main(["compare", "--experiment", experiment, "--tracking-uri", mlflow_uri,
                 "--baseline", "zzz", "--no-log"]) == 2
    assert "--baseline 'zzz' is not a group; groups: baseline, polychromic_0.1" in \
        _one_error_line(capsys)
