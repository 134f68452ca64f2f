"""Tests for ``polylora compare``: statistics against scipy / hand computation, on synthetic runs
with known per-prompt scores logged to a real MLflow sqlite store, and the CLI end to end."""

from __future__ import annotations

import csv
import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from polylora import intervals, stats
from polylora.cli import main
from polylora.errors import PolyloraError
from polylora.report.compare import Plan, RunData, compare_groups

IDS = [f"p{i:02d}" for i in range(24)]
SEEDS = (42, 123, 456)
# group → (objective tag, rouge_l shift, self_bleu shift, pass@10 shift)
GROUPS = {
    "baseline": ("CrossEntropyObjective", 0.0, 0.0, 0.0),
    "polychromic_0.3": ("PolychromicObjective", 0.15, -0.12, 0.25),
    "polychromic_0.1": ("PolychromicObjective", 0.01, 0.0, 0.02),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_scores() -> dict[tuple[str, int], dict[str, dict[str, float]]]:
    """(group, seed) → metric → prompt id → score; deterministic."""
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.2, 0.6, size=len(IDS))
    out: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    for group, (_, d_rouge, d_bleu, d_pass) in GROUPS.items():
        for seed in SEEDS:
            noise = rng.normal(0.0, 0.05, size=(3, len(IDS)))
            rouge = np.clip(difficulty + d_rouge + noise[0], 0, 1)
            bleu = np.clip(0.5 - 0.3 * difficulty + d_bleu + noise[1], 0, 1)
            pass10 = np.clip(difficulty + 0.2 + d_pass + noise[2], 0, 1)
            out[(group, seed)] = {
                "rouge_l": dict(zip(IDS, rouge.tolist(), strict=True)),
                "self_bleu": dict(zip(IDS, bleu.tolist(), strict=True)),
                "pass@10": dict(zip(IDS, pass10.tolist(), strict=True)),
            }
    return out


SCORES = synthetic_scores()
FINAL_LOSS = {key: 0.8 + 0.01 * i for i, key in enumerate(SCORES)}


def run_data() -> list[RunData]:
    return [
        RunData(f"{g}-{s}", g, {m: float(np.mean(list(v.values()))) for m, v in sc.items()},
                per_prompt=sc, seed=str(s))
        for (g, s), sc in SCORES.items()
    ]


def prompt_means(group: str, metric: str) -> np.ndarray:
    """Each prompt's score averaged over the group's seeds, in id order."""
    return np.array([np.mean([SCORES[(group, s)][metric][i] for s in SEEDS]) for i in IDS])


def seed_values(group: str, metric: str) -> np.ndarray:
    return np.array([np.mean(list(SCORES[(group, s)][metric].values())) for s in SEEDS])


# --------------------------------------------------------------------------- pure statistics

PLAN = Plan(primary="pass@10", direction="increase", noninferiority={"rouge_l": 0.05})


def diff_table(group: str, metric: str) -> np.ndarray:
    """seeds × prompts of candidate − baseline, by hand."""
    return np.array([[SCORES[(group, s)][metric][i] - SCORES[("baseline", s)][metric][i]
                      for i in IDS] for s in SEEDS])


def test_delta_ci_and_sensitivity_tests_match_hand_computation_and_scipy() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"], plan=PLAN)
    assert res.groups == ["baseline", "polychromic_0.1", "polychromic_0.3"]
    e = res.effect("polychromic_0.3", "self_bleu")
    d = diff_table("polychromic_0.3", "self_bleu")
    ref = intervals.crossed_difference(d)
    assert e.method == "crossed seeds × prompts" and (e.n_seeds, e.n_prompts) == (3, 24)
    assert (e.delta, e.low, e.high, e.pvalue) == pytest.approx(
        (d.mean(), ref.low, ref.high, ref.pvalue))
    assert e.delta < 0  # native units: self-BLEU fell (lower is better)
    seed_diff = seed_values("polychromic_0.3", "self_bleu") - seed_values("baseline", "self_bleu")
    t = sps.ttest_rel(seed_values("polychromic_0.3", "self_bleu"),
                      seed_values("baseline", "self_bleu"))
    assert e.seed_test.pvalue == pytest.approx(t.pvalue)
    assert e.seed_test.d_z == pytest.approx(seed_diff.mean() / seed_diff.std(ddof=1))
    per_prompt = d.mean(axis=0)
    assert e.wilcoxon_p == pytest.approx(sps.wilcoxon(per_prompt).pvalue)
    assert e.mde > 0


def test_primary_endpoint_gates_a_holm_family_of_secondaries() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"], plan=PLAN)
    strong = res.effect("polychromic_0.3", "pass@10")
    assert strong.role == "primary" and strong.verdict == "confirmed" and strong.low > 0
    bleu = res.effect("polychromic_0.3", "self_bleu")
    assert bleu.role == "secondary"
    family = [e for e in res.effects if e.group == "polychromic_0.3" and e.role == "secondary"]
    assert [e.p_holm for e in family] == pytest.approx(stats.holm([e.pvalue for e in family]))
    assert bleu.verdict == "significant"
    weak = res.effect("polychromic_0.1", "pass@10")
    assert weak.verdict == "not shown"  # +0.02 with 3 seeds: the CI includes 0
    assert res.effect("polychromic_0.1", "self_bleu").verdict.startswith("not tested (gate")
    ni = res.effect("polychromic_0.3", "rouge_l")
    assert ni.role == "non-inferiority" and ni.verdict == "non-inferior (margin 0.05)"
    text = res.to_markdown()
    for heading in ("## Analysis plan", "## Primary endpoint", "## Non-inferiority",
                    "## Secondary endpoints", "## Sensitivity analyses",
                    "## Evaluated checkpoints"):
        assert heading in text
    assert "too few seeds for an informative interval" in text


def test_no_declared_primary_makes_every_test_exploratory() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "pass@10"])
    assert {e.verdict.split(":")[0] for e in res.effects} == {"exploratory"}
    assert any("no primary endpoint was declared" in n for n in res.notes)


def test_duplicate_and_degenerate_metrics_leave_the_family() -> None:
    runs = [RunData(r.run_id, r.group, dict(r.metrics), per_prompt=dict(r.per_prompt),
                    seed=r.seed) for r in run_data()]  # copies: SCORES is shared
    rng = np.random.default_rng(0)
    for r in runs:
        r.metrics["pass@1"] = r.metrics["sample_accuracy"] = float(rng.uniform())
        r.metrics["distinct_2"] = 0.05
        r.per_prompt["distinct_2"] = {i: (1.0 if k == 0 else 0.0) for k, i in enumerate(IDS)}
    res = compare_groups(runs, "baseline", ["pass@1", "sample_accuracy", "distinct_2",
                                            "pass@10"], plan=PLAN)
    assert res.excluded["sample_accuracy"] == "duplicate of pass@1 (equal in every run)"
    assert res.excluded["distinct_2"].startswith("degenerate: 96% of prompt scores equal 0")
    assert res.effect("polychromic_0.3", "sample_accuracy").role == "excluded"
    assert "pass@1" not in res.excluded


def test_seed_level_tests_without_per_prompt_scores() -> None:
    data = [RunData(r.run_id, r.group, r.metrics, seed=r.seed) for r in run_data()]
    e = compare_groups(data, "baseline", ["rouge_l"]).effect("polychromic_0.3", "rouge_l")
    assert e.method == "paired t over seeds"
    ref = sps.ttest_rel(seed_values("polychromic_0.3", "rouge_l"),
                        seed_values("baseline", "rouge_l"))
    assert e.pvalue == pytest.approx(ref.pvalue)
    unpaired = [RunData(r.run_id, r.group, r.metrics, seed=f"{r.group}{r.seed}")
                for r in run_data()]
    e = compare_groups(unpaired, "baseline", ["rouge_l"]).effect("polychromic_0.3", "rouge_l")
    assert e.method.startswith("Welch")
    ref = sps.ttest_ind(seed_values("polychromic_0.3", "rouge_l"),
                        seed_values("baseline", "rouge_l"), equal_var=False)
    assert e.pvalue == pytest.approx(ref.pvalue)


def test_summary_cells_are_t_intervals_over_seeds() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l"])
    cell = res.summary("baseline", "rouge_l")
    ci = intervals.t_interval(seed_values("baseline", "rouge_l"))
    assert (cell.mean, cell.low, cell.high) == pytest.approx((ci.estimate, ci.low, ci.high))


def test_plan_is_read_from_the_runs_logged_config() -> None:
    params = {"compare.primary": "pass_at_10", "compare.direction": "increase",
              "compare.noninferiority.pass_at_1": "0.03", "compare.secondary": "None",
              "compare.alpha": "0.05", "compare.power": "0.8"}
    plan = Plan.from_params(params)
    assert plan.primary == "pass@10" and plan.noninferiority == {"pass@1": 0.03}
    assert plan.secondary is None and plan.source == "config"
    assert Plan.from_params({"seed": "1"}) is None


def test_unknown_metric_and_baseline_errors() -> None:
    with pytest.raises(PolyloraError, match=r"not logged by any selected run; available: pass@10"):
        compare_groups(run_data(), "baseline", ["bertscore_f1"])
    with pytest.raises(PolyloraError, match="baseline group 'nope' has no runs"):
        compare_groups(run_data(), "nope", ["rouge_l"])
    with pytest.raises(PolyloraError, match=r"compare\.primary/noninferiority names 'accuracy'"):
        compare_groups(run_data(), "baseline", ["rouge_l"], plan=Plan(primary="accuracy"))


# --------------------------------------------------------------------------- MLflow + CLI


def log_synthetic_runs(uri: str, root: Path) -> str:
    """Log SCORES as FINISHED runs like the pipeline does (+ a FAILED and an ungrouped run)."""
    import mlflow
    from mlflow.entities import Metric

    from polylora.tracking import mlflow_metric_name

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


def test_choose_baseline() -> None:
    from polylora.record.reader import RunInfo
    from polylora.report.compare import choose_baseline

    def info(objective: str) -> RunInfo:
        return RunInfo("r", "0", "FINISHED", tags={"polylora.objective": objective})

    ce, poly = info("CrossEntropyObjective"), info("PolychromicObjective")
    assert choose_baseline({"baseline": [ce], "baseline_conservative": [ce]}, None) == "baseline"
    assert choose_baseline({"baseline_r8": [ce], "poly": [poly]}, None) == "baseline_r8"
    assert choose_baseline({"lora": [ce], "poly": [poly]}, None) == "lora"
    assert choose_baseline({"lora": [ce], "poly": [poly]}, "poly") == "poly"
    with pytest.raises(PolyloraError, match="several baseline groups"):
        choose_baseline({"baseline_a": [ce], "baseline_b": [ce]}, None)
    with pytest.raises(PolyloraError, match="pass --baseline, one of: a, b"):
        choose_baseline({"a": [poly], "b": [poly]}, None)
