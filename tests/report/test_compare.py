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

from polylora import stats
from polylora.cli import main
from polylora.errors import PolyloraError
from polylora.report.compare import (
    TEST_PAIRED,
    TEST_PROMPTS,
    TEST_SEEDS,
    RunData,
    compare_groups,
)

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


def hand_cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                       / (len(a) + len(b) - 2))
    return (b.mean() - a.mean()) / pooled


# --------------------------------------------------------------------------- pure statistics


def test_pvalues_and_effect_sizes_match_scipy_and_hand_computation() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"])
    assert res.groups == ["baseline", "polychromic_0.1", "polychromic_0.3"]
    assert res.higher_is_better == {"rouge_l": True, "self_bleu": False, "pass@10": True}
    for group in ("polychromic_0.1", "polychromic_0.3"):
        for metric in ("rouge_l", "self_bleu", "pass@10"):
            sign = 1.0 if metric != "self_bleu" else -1.0  # self-BLEU: lower is better
            a, b = prompt_means("baseline", metric), prompt_means(group, metric)
            t = res.tests_for(group, metric)
            assert set(t) == {TEST_PAIRED, TEST_PROMPTS, TEST_SEEDS}
            # Two-sided p-values: scipy on the raw values (the sign flip must not change them).
            assert t[TEST_PROMPTS].pvalue == pytest.approx(sps.mannwhitneyu(a, b).pvalue,
                                                           rel=1e-12)
            assert t[TEST_PAIRED].pvalue == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-12)
            sa, sb = seed_values("baseline", metric), seed_values(group, metric)
            assert t[TEST_SEEDS].pvalue == pytest.approx(sps.mannwhitneyu(sa, sb).pvalue)
            assert (t[TEST_PROMPTS].n_a, t[TEST_PROMPTS].n_b) == (24, 24)
            assert (t[TEST_SEEDS].n_a, t[TEST_SEEDS].n_b) == (3, 3)
            # Cohen's d by hand, signed so that "better" is positive.
            assert t[TEST_PROMPTS].effect == pytest.approx(sign * hand_cohens_d(a, b), rel=1e-9)
            assert t[TEST_SEEDS].effect == pytest.approx(sign * hand_cohens_d(sa, sb), rel=1e-9)
            diff = sign * (b - a)
            assert t[TEST_PAIRED].effect == pytest.approx(diff.mean() / diff.std(ddof=1))
    # The planted effects: polychromic_0.3 is clearly better on all three metrics.
    strong = res.tests_for("polychromic_0.3", "self_bleu")[TEST_PROMPTS]
    assert strong.effect > 1.0 and strong.pvalue < 1e-4


def test_bonferroni_and_holm_columns() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"])
    for kind in (TEST_PAIRED, TEST_PROMPTS, TEST_SEEDS):
        family = [t for t in res.tests if t.test == kind]
        assert len(family) == 6  # 2 groups × 3 metrics
        raw = [t.pvalue for t in family]
        for t in family:
            assert t.p_bonferroni == pytest.approx(min(1.0, 6 * t.pvalue))
        # Holm by hand: sorted ascending, (m − i)·p, running maximum, capped at 1.
        order = np.argsort(raw, kind="stable")
        running, expected = 0.0, [0.0] * 6
        for i, idx in enumerate(order):
            running = max(running, min(1.0, (6 - i) * raw[idx]))
            expected[idx] = running
        assert [t.p_holm for t in family] == pytest.approx(expected)


def test_verdicts_follow_seed_004_criteria() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"])
    gain = res.pass10_gain["polychromic_0.3"]
    assert gain == pytest.approx(seed_values("polychromic_0.3", "pass@10").mean()
                                 / seed_values("baseline", "pass@10").mean() - 1)
    assert gain is not None and gain > 0.2
    for metric in ("rouge_l", "self_bleu", "pass@10"):
        v = res.verdict("polychromic_0.3", metric)
        assert v is not None and v.primary == TEST_PAIRED  # same prompts → paired test decides
        paired = res.tests_for("polychromic_0.3", metric)[TEST_PAIRED]
        assert v.p_adjusted == paired.p_holm
        assert v.d == res.tests_for("polychromic_0.3", metric)[TEST_PROMPTS].effect
        assert v.verdict == stats.success_verdict(v.p_adjusted, v.d, gain) == "strong"
        assert v.delta > 0
    weak = res.verdict("polychromic_0.1", "self_bleu")
    assert weak is not None and weak.verdict in ("not significant", "no effect")
    # The lower-is-better sign flip is stated in the report.
    md = res.to_markdown()
    assert "sign flipped" in md and "self_bleu" in md
    assert "| self_bleu ↓ |" in md


def test_bootstrap_ci_is_deterministic_for_a_fixed_seed() -> None:
    data = run_data()
    first = compare_groups(data, "baseline", ["rouge_l"], seed=0)
    again = compare_groups(data, "baseline", ["rouge_l"], seed=0)
    assert first.summaries == again.summaries
    s = first.summary("polychromic_0.3", "rouge_l")
    assert s is not None
    expected = stats.bootstrap_ci(seed_values("polychromic_0.3", "rouge_l"), seed=0)
    assert (s.mean, s.low, s.high) == pytest.approx(tuple(expected))
    assert s.low <= s.mean <= s.high and s.n_runs == 3 and s.n_prompts == 24
    # The seed is really used: with many runs the interval moves with it.
    many = [RunData(f"r{i}", "baseline", {"rouge_l": float(v)})
            for i, v in enumerate(np.random.default_rng(1).normal(0.5, 0.1, 12))]
    ci0 = compare_groups(many, "baseline", ["rouge_l"], seed=0).summaries[0]
    ci1 = compare_groups(many, "baseline", ["rouge_l"], seed=1).summaries[0]
    assert (ci0.low, ci0.high) != (ci1.low, ci1.high)


def test_unknown_metric_and_baseline_errors() -> None:
    with pytest.raises(PolyloraError, match=r"not logged by any selected run; available: pass@10"):
        compare_groups(run_data(), "baseline", ["bertscore_f1"])
    with pytest.raises(PolyloraError, match="baseline group 'nope' has no runs"):
        compare_groups(run_data(), "nope", ["rouge_l"])


def test_seed_only_comparison_without_per_prompt_scores() -> None:
    data = [RunData(r.run_id, r.group, r.metrics, seed=r.seed) for r in run_data()]
    res = compare_groups(data, "baseline", ["rouge_l"])
    v = res.verdict("polychromic_0.3", "rouge_l")
    assert v is not None and v.primary == TEST_SEEDS
    assert v.verdict == "not significant"  # 3 vs 3 seeds cannot reach p < 0.05
    assert any("cannot reach p < 0.05" in n for n in res.notes)


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
            mlflow.log_params({"seed": seed, "lora.rank": 16})
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
               "--out", str(out), "--seed", "0", "--n-resamples", "2000"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "baseline: baseline" in printed and "| rouge_l ↑ |" in printed
    assert "**strong**" in printed
    for name in ("report.md", "summary.csv", "tests.csv", "passk.png",
                 "quality_diversity.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC
    report = (out / "report.md").read_text()
    assert "1 run(s) without 'polylora.group' skipped" in report
    assert report.count("`") >= 18  # the nine run ids are listed
    # summary.csv: 3 groups × 4 metrics (pass@10, loss, rouge_l, self_bleu), FAILED run out.
    with (out / "summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 12 and {r["n_runs"] for r in summary} == {"3"}
    loss = next(r for r in summary if r["group"] == "baseline" and r["metric"] == "loss")
    # eval/loss is also a training curve: the final evaluation's value (logged last) counts.
    expected_loss = np.mean([FINAL_LOSS[("baseline", s)] for s in SEEDS])
    assert float(loss["mean"]) == pytest.approx(expected_loss)
    assert loss["higher_is_better"] == "False"
    rouge = next(r for r in summary if r["group"] == "baseline" and r["metric"] == "rouge_l")
    ci = stats.bootstrap_ci(seed_values("baseline", "rouge_l"), n_resamples=2000, seed=0)
    assert float(rouge["mean"]) == pytest.approx(ci.estimate)
    assert (float(rouge["ci_low"]), float(rouge["ci_high"])) == pytest.approx((ci.low, ci.high))
    # tests.csv reproduces scipy from the per-prompt artifacts.
    with (out / "tests.csv").open() as f:
        tests = list(csv.DictReader(f))
    row = next(t for t in tests if t["group"] == "polychromic_0.3"
               and t["metric"] == "self_bleu" and t["test"] == TEST_PROMPTS)
    a, b = prompt_means("baseline", "self_bleu"), prompt_means("polychromic_0.3", "self_bleu")
    assert float(row["p"]) == pytest.approx(sps.mannwhitneyu(a, b).pvalue, rel=1e-9)
    assert float(row["effect"]) == pytest.approx(-hand_cohens_d(a, b), rel=1e-9)
    assert {"p_bonferroni", "p_holm"} <= set(row)
    primary = next(t for t in tests if t["group"] == "polychromic_0.3"
                   and t["metric"] == "pass@10" and t["primary"] == "True")
    assert primary["test"] == TEST_PAIRED and primary["verdict"] == "strong"

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    logged = client.search_runs([exp.experiment_id],
                                filter_string="tags.`polylora.kind` = 'comparison'")
    assert len(logged) == 1
    comp = logged[0]
    assert comp.info.run_name == "comparison" and comp.info.status == "FINISHED"
    assert comp.data.tags["polylora.baseline"] == "baseline"
    assert comp.data.params["metrics"] == "pass@10,loss,rouge_l,self_bleu"
    names = {f.path for f in client.list_artifacts(comp.info.run_id)}
    assert {"report.md", "summary.csv", "tests.csv", "passk.png"} <= names

    # A second comparison does not select the logged comparison run.
    again = tmp_path / "again"
    assert main(["compare", "--experiment", experiment, "--tracking-uri", mlflow_uri,
                 "--out", str(again), "--no-log", "--metrics", "eval/rouge_l",
                 "--n-resamples", "500"]) == 0
    assert "9 FINISHED runs in 3 groups" in (again / "report.md").read_text()
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
    from polylora.report.compare import choose_baseline
    from polylora.report.runs import RunInfo

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
