"""The headline experiment: the two arms differ in the objective only, the baselines share the
arms' model/data/evaluation, the recipe runs end to end (smoke size) and its report carries
every section with numbers that match the MLflow runs they name."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import REPO
from omegaconf import OmegaConf

from polylora.record.tracking import flatten
from polylora.report import headline

LAUNCHER = REPO / "launchers" / "headline.py"
#: Keys the two arms may differ in (the objective, its name, and the group derived from it).
ALLOWED_DIFF = ("objective.", "experiment", "tracking.group")


def load_launcher() -> ModuleType:
    """launchers/headline.py as a module (launchers/ is not a package)."""
    spec = importlib.util.spec_from_file_location("headline_launcher", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def resolved(cfg: Any) -> dict[str, Any]:
    """The config as a flat ``{dotted key: value}`` dict, interpolations resolved."""
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def differing(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize(("ce", "poly"), [("headline_ce", "headline_polychromic"),
                                          ("headline_smoke_ce", "headline_smoke_polychromic")])
def test_arms_differ_only_in_the_objective(compose_cfg: Callable[..., Any], ce: str,
                                           poly: str) -> None:
    a = resolved(compose_cfg([f"+experiment={ce}"]))
    b = resolved(compose_cfg([f"+experiment={poly}"]))
    diff = differing(a, b)
    unexpected = sorted(k for k in diff if not k.startswith(ALLOWED_DIFF))
    assert not unexpected, f"{ce} and {poly} differ outside the objective: " + ", ".join(
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in unexpected)
    assert a["objective._target_"].endswith("CrossEntropyObjective")
    assert b["objective._target_"].endswith("PolychromicObjective")
    assert {"experiment", "tracking.group"} <= diff
    assert a["tracking.group"] == ce and b["tracking.group"] == poly


def test_full_arms_use_the_embedded_model_and_the_word_task(
    compose_cfg: Callable[..., Any],
) -> None:
    cfg = compose_cfg(["+experiment=headline_polychromic"])
    assert cfg.model.name == "smollm2_135m" and cfg.data.name == "words"
    assert cfg.eval.name == "headline" and max(cfg.eval.ks) == 10 <= cfg.eval.n_samples
    assert cfg.objective.pg_weight == 0.3 and cfg.objective.n_generations == 3
    assert cfg.train.max_steps > 0 and cfg.train.save_every % cfg.train.eval_every == 0


def test_headline_task_mixes_kinds_with_many_common_answers(
    compose_cfg: Callable[..., Any],
) -> None:
    """The calibrated task (docs/results/README.md): every kind in the test split, every prompt
    with at least 50 correct common-word targets, every reference accepted by the checker."""
    from polylora.run.pipeline import prepare

    prep = prepare(compose_cfg(["+experiment=headline_ce"]))
    test = prep.splits.test
    assert len(test) == 60 and prep.checker is not None
    kinds = {"length" if "length" in e.fields else "end" if "end" in e.fields else "start"
             for e in test}
    assert kinds == {"start", "length", "end"}
    for e in test:
        assert e.fields["n_answers"] >= 50
        assert all(prep.checker(e, ref).correct for ref in e.all_references), e.prompt


@pytest.mark.parametrize("smoke", [False, True])
def test_baselines_share_model_data_and_evaluation(compose_cfg: Callable[..., Any],
                                                   smoke: bool) -> None:
    arms = load_launcher().SMOKE if smoke else load_launcher().FULL
    ce = compose_cfg([f"+experiment={arms.ce}"])
    zero, few = (compose_cfg([f"+experiment={b}"]) for b in arms.baselines)
    for cfg, name in ((zero, "zero_shot"), (few, "few_shot")):
        assert cfg.experiment == name and cfg.tracking.group == name
        assert not cfg.train.enabled and not cfg.lora.enabled
        for section in ("model", "eval"):
            assert resolved(cfg[section]) == resolved(ce[section]), (name, section)
        assert differing(resolved(cfg.data), resolved(ce.data)) <= {"few_shot"}
    assert few.data.few_shot == 5 and zero.data.few_shot == 0


# --------------------------------------------------------------------------- end to end


def results_table(report: str) -> dict[str, dict[str, str]]:
    """The Results section's table: group → {column header: cell}."""
    section = report.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = {}
    for line in rows[2:]:
        values = [c.strip() for c in line.strip("|").split("|")]
        out[values[0]] = dict(zip(header, values, strict=True))
    return out


@pytest.mark.slow  # a subprocess end to end; runs in make test-slow
def test_smoke_recipe_end_to_end(tmp_path: Path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--smoke", "--seeds", "1,2", "--tracking-uri", uri,
         "--out", str(tmp_path / "results")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report_path = tmp_path / "results" / "headline.md"
    report = report_path.read_text(encoding="utf-8")

    # every section, in order
    positions = [report.find(f"\n## {name}\n") for name in headline.SECTIONS]
    assert all(p >= 0 for p in positions), [n for n, p in zip(headline.SECTIONS, positions,
                                                               strict=True) if p < 0]
    assert positions == sorted(positions)

    # the plots the report links exist next to it
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {Path(link).name for link in links} >= {"passk.png", "quality_diversity.png"}
    for link in links:
        assert (report_path.parent / link).exists(), link

    # numbers match the MLflow runs the report names
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("headline_smoke")
    runs = [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("polylora.kind") != "comparison"]
    by_group: dict[str, list[Any]] = {}
    for r in runs:
        by_group.setdefault(r.data.tags["polylora.group"], []).append(r)
    assert set(by_group) == {"headline_smoke_ce", "headline_smoke_polychromic", "zero_shot",
                             "few_shot"}
    assert all(len(v) == 2 for v in by_group.values())
    table = results_table(report)
    assert {"zero_shot", "few_shot"} <= set(table)
    for group, members in by_group.items():
        for metric, key in (("pass@1", "eval/pass_at_1"), ("pass@10", "eval/pass_at_10"),
                            ("semantic_diversity", "eval/semantic_diversity")):
            mean = sum(r.data.metrics[key] for r in members) / len(members)
            cell = next(v for k, v in table[group].items() if k.startswith(metric + " "))
            assert math.isclose(float(cell.split(" [")[0]), mean, abs_tol=5e-4), (group, metric)
        assert table[group]["n"] == "2"
        for r in members:
            assert r.info.run_id in report
    comparisons = [r for r in client.search_runs([exp.experiment_id])
                   if r.data.tags.get("polylora.kind") == "comparison"]
    assert len(comparisons) == 2 and all(r.info.run_id in report for r in comparisons)
    assert "polychromic" in report.split("## Cost", 1)[1].split("\n## ", 1)[0]
    # the committed report names no path of the machine it ran on inside the checkout
    assert f"{REPO}/" not in report and "-m polylora -m" in report


@pytest.mark.slow
def test_smoke_recipe_with_lambda_sweep(tmp_path: Path) -> None:
    """--lambda-sweep runs the λ grid (+hparams_search=lambda) and the report includes its
    summary.csv; its trials carry the launch tag and stay out of the comparison."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--smoke", "--seeds", "1", "--lambda-sweep",
         "--lambdas", "0.1,0.5", "--tracking-uri", uri, "--out", str(tmp_path / "results")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = (tmp_path / "results" / "headline.md").read_text(encoding="utf-8")
    section = report.split("\n## λ sweep\n", 1)[1].split("\n## ", 1)[0]
    assert "summary.csv" in section and section.count("| COMPLETE |") == 2
    client = mlflow.MlflowClient(tracking_uri=uri)
    sweep = client.get_experiment_by_name("headline_smoke-lambda")
    trials = [r for r in client.search_runs([sweep.experiment_id])
              if r.data.tags.get("polylora.role") != "sweep"]
    assert len(trials) == 2 and all("polylora.launch" in r.data.tags for r in trials)
    assert all(r.info.run_id in section for r in trials)


def test_v2_hands_over_to_the_recipe_with_the_one_launch_tag(tmp_path: Path) -> None:
    """``--v2`` runs polylora.recipes.headline_v2 (here: a report-only call with no launch
    to report, refused by the recipe), and the launcher tags runs with the record's name."""
    from polylora.recipes import headline_v2
    from polylora.record.names import LAUNCH_TAG

    launcher = load_launcher()
    assert launcher.LAUNCH_TAG == LAUNCH_TAG == "polylora.launch"
    with pytest.raises(SystemExit, match=f"no launch to report at .*{headline_v2.V2.launch_file}"):
        launcher.main(["--v2", "--report-only", "--out", str(tmp_path)])
