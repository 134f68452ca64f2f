"""The headline's second design as a recipe: it runs end to end at smoke size through the
pipeline with a report whose numbers match the MLflow runs it names, resumes an interrupted
launch without rerunning finished runs, and refuses to resume on other code."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from polylora.data.words import CONSTRAINTS_OF_KIND, prompt_kind
from polylora.recipes import headline_v2 as recipe
from polylora.record.names import LAUNCH_TAG
from polylora.report import headline_v2 as v2
from polylora.report import headline_v2_report as v2_report


def table(report: str, section: str) -> list[list[str]]:
    """The first Markdown table of ``## section`` as rows of cells (header and rule dropped)."""
    body = report.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


@pytest.mark.slow  # a subprocess end to end; runs in make test-slow
def test_smoke_recipe_end_to_end(tmp_path: Path) -> None:
    """Two seeds × (SFT + four arms + a temperature for two arms) on the tiny model; every
    section in order; every run it names is in MLflow with the numbers the report shows."""
    out = tmp_path / "out"
    code = recipe.main(["--smoke", "--seeds", "1,2", "--temperatures", "0.7",
                        "--sweep-arms", "ce,polychromic", "--out", str(out)], REPO, "test")
    assert code == 0
    check_report(out, tmp_path)


def check_report(out: Path, tmp_path: Path) -> None:
    """The report in ``out`` against the MLflow runs its launch file names."""
    import mlflow

    report = (out / recipe.V2.report_name).read_text(encoding="utf-8")
    heads = re.findall(r"^## (.+)$", report, flags=re.M)
    assert heads == list(v2.SECTIONS)
    images = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", report, flags=re.M)
    assert len(images) == 2  # pass@k curves and the temperature frontier
    for image in images:
        assert (out / image).read_bytes()[:4] == b"\x89PNG"
    launch = v2.Launch.load(out / recipe.V2.launch_file)
    assert len(launch.runs) == 2 * (1 + 4 + 2)
    outcome = re.search(r"^\*\*(.+?)\*\*:", report.split("## Outcome\n", 1)[1], flags=re.M)
    assert outcome and outcome.group(1) in v2.OUTCOMES

    client = mlflow.MlflowClient(tracking_uri=launch.tracking_uri)
    rows = table(report, "Runs")
    assert [r[0].strip("`") for r in rows] == [r.run_id for r in launch.runs]
    for cells, ref in zip(rows, launch.runs, strict=True):
        run = client.get_run(ref.run_id)
        assert run.data.tags[LAUNCH_TAG] == launch.launch_id
        assert run.info.status == "FINISHED"
        assert float(run.data.params["eval.temperature"]) == float(cells[4]) == ref.temperature
        assert cells[5] == f"{run.data.metrics['eval/pass_at_10']:.3f}"
        local = client.download_artifacts(ref.run_id, "eval/generations.jsonl", str(tmp_path))
        gens = [json.loads(line) for line in Path(local).read_text().splitlines() if line]
        two = [g["scores"]["pass@10"] for g in gens
               if CONSTRAINTS_OF_KIND[prompt_kind(g["prompt"])] == 2]
        assert two and cells[6] == f"{sum(two) / len(two):.3f}"
        if ref.stage == "temperature":
            assert run.data.params["train.enabled"] == "False"
            assert run.data.params["model.adapter"].startswith("runs:/")
    by_arm = {(r.arm, r.seed): r.run_id for r in launch.runs if r.stage == "arm"}
    sft = {r.seed: r.run_id for r in launch.runs if r.stage == "sft"}
    for (_, seed), run_id in by_arm.items():  # stage 1 continues its seed's SFT adapter
        params = client.get_run(run_id).data.params
        assert params["model.adapter"] == f"runs:/{sft[seed]}/adapter"
    csv_rows = list(csv.DictReader((out / "headline_v2_files" / "per_prompt.csv").open()))
    for cells, ref in zip(rows, launch.runs, strict=True):  # the CSV holds the analysis's input
        two = [float(r["pass@10"]) for r in csv_rows
               if r["run_id"] == ref.run_id and r["kind"] == "two"]
        assert two and cells[6] == f"{sum(two) / len(two):.3f}"
    assert {"pass@1", "pass@10", v2.DISTINCT} <= set(csv_rows[0])
    assert "Incomplete launch" not in report
    seed_one = [x for x in v2.load(client, launch, ["pass@1", "pass@10"]) if x.ref.seed == 1]
    partial = v2_report.render(launch, seed_one)  # as if interrupted after seed 1
    assert "**Incomplete launch**: 1 of 2 planned seeds" in partial
    assert "**inconclusive**" in partial.split("## Design", 1)[0]
    per_kind = table(report, "Results per prompt kind")
    assert {r[0] for r in per_kind} == {v2.ARM_LABEL[a] for a in ("sft", *v2.ARMS)}
    primary = table(report, "Primary endpoint")
    assert any(r[0] == "polychromic" and r[2] == "primary" for r in primary)
    # the seed-level t over seed means, beside the crossed interval
    assert all(r[4].endswith("(n = 2)") for r in primary)


def test_interrupted_launch_resumes_without_rerunning_finished_runs(tmp_path: Path) -> None:
    """A launch killed after its fifth run keeps those five (saved after each run); resuming
    runs only the rest, and each (stage, arm, seed, temperature) appears once."""
    calls: list[list[str]] = []

    def job(overrides: Any) -> tuple[str, float]:
        if len(calls) == 5 and not resumed:
            raise KeyboardInterrupt
        calls.append(list(overrides))
        temp = next((float(o.split("=", 1)[1]) for o in overrides
                     if o.startswith("eval.temperature=")), 1.0)
        return f"run{len(calls)}", temp

    launch = v2.Launch(launch_id="L", experiment="e", tracking_uri="sqlite:///x.db",
                       seeds=[1, 2], arms=list(v2.ARMS), temperatures=[0.7], command="c",
                       sesoi=0.05, smoke=True)
    saved = tmp_path / recipe.V2.launch_file
    resumed = False
    with pytest.raises(KeyboardInterrupt):
        recipe.run_design(launch, tmp_path, sweep_arms=["ce"], job=job, log=lambda _: None,
                          on_run=lambda la: la.save(saved))
    assert len(v2.Launch.load(saved).runs) == 5
    resumed = True
    again = recipe.run_design(v2.Launch.load(saved), tmp_path, sweep_arms=["ce"], job=job,
                              log=lambda _: None, on_run=lambda la: la.save(saved))
    keys = [(r.stage, r.arm, r.seed, r.temperature) for r in again.runs]
    assert len(keys) == len(set(keys)) == 2 * (1 + len(v2.ARMS) + 1)
    assert len(calls) == len(keys)
    sft2 = next(r.run_id for r in again.runs if r.stage == "sft" and r.seed == 2)
    assert any(f"model.adapter=runs:/{sft2}/adapter" in c for c in calls)


def test_resume_marks_the_interrupted_run_killed(tmp_path: Path) -> None:
    """A run the interruption left RUNNING (tagged with the launch, not in its record) is
    marked KILLED on resume; finished runs and other launches' runs are left alone."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("headline_v2")
    kept = client.create_run(exp, tags={LAUNCH_TAG: "L"}).info.run_id
    client.set_terminated(kept)
    orphan = client.create_run(exp, tags={LAUNCH_TAG: "L"}).info.run_id
    other = client.create_run(exp, tags={LAUNCH_TAG: "M"}).info.run_id
    launch = v2.Launch(launch_id="L", experiment="headline_v2", tracking_uri=uri, seeds=[1, 2],
                       arms=list(v2.ARMS), temperatures=[0.7], command="c", sesoi=0.05,
                       runs=[v2.RunRef(kept, "sft", "sft", 1, 1.0)])
    assert recipe.close_interrupted(launch) == [orphan]
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(kept).info.status == "FINISHED"
    assert client.get_run(other).info.status == "RUNNING"


def test_resume_refuses_to_mix_code_revisions_unless_told(tmp_path: Path) -> None:
    """The launch record carries the code revision and versions; ``--resume`` on other code
    stops before any run, naming what differs, unless ``--allow-mixed-revisions``."""
    from polylora.record.provenance import provenance

    here = provenance()
    launch = v2.Launch(launch_id="L", experiment="e", tracking_uri="sqlite:///x.db",
                       seeds=[1, 2], arms=list(v2.ARMS), temperatures=[0.7], command="c",
                       sesoi=0.05, smoke=True, provenance=[here])
    recipe.check_same_code(launch, dict(here), allow_mixed=False)  # same code: goes on
    other = {**here, "code.commit": "0" * 40}
    with pytest.raises(SystemExit, match=r"--resume would mix code revisions in launch L: "
                                         r"code.commit .*--allow-mixed-revisions"):
        recipe.check_same_code(launch, other, allow_mixed=False)
    recipe.check_same_code(launch, other, allow_mixed=True)
    with pytest.raises(SystemExit, match="records no code revision"):
        recipe.check_same_code(v2.Launch.load(launch.save(tmp_path / "old.json")).__class__(
            **{**launch.__dict__, "provenance": []}), here, allow_mixed=False)
    # through the command: a launch recorded on another commit is not resumed
    launch.provenance = [other]
    launch.save(tmp_path / recipe.V2.launch_file)
    with pytest.raises(SystemExit, match="would mix code revisions"):
        recipe.main(["--resume", "--out", str(tmp_path)], tmp_path, "c")
    assert v2.Launch.load(tmp_path / recipe.V2.launch_file).runs == []
