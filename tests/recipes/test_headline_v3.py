"""The headline's third design as a recipe: it runs its own experiment files through the
second design's steps, and at smoke size end to end writes a report whose numbers match the
MLflow runs and reproduce from its two tables alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REPO

from polylora.recipes import headline_v2 as recipe
from polylora.recipes.headline_v3 import V3
from polylora.report import headline_v2 as v2
from polylora.report import headline_v3 as v3


def test_the_third_design_runs_its_own_files_without_a_temperature_sweep(
        tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def job(overrides: Any) -> tuple[str, float]:
        calls.append(list(overrides))
        return f"run{len(calls)}", 1.0

    args, _ = recipe.parse_args(["--smoke"], V3)
    assert args.temperature_list == [] and args.sweep_list == []
    launch = v2.Launch(launch_id="L", experiment="e", tracking_uri="sqlite:///x.db",
                       seeds=[1, 2], arms=list(v3.ARMS), temperatures=args.temperature_list,
                       command="c", sesoi=V3.sesoi, smoke=True, design=V3.design)
    recipe.run_design(launch, tmp_path, sweep_arms=args.sweep_list, job=job,
                      log=lambda _: None)
    experiments = [next(o for o in c if o.startswith("+experiment=")) for c in calls]
    assert len(calls) == 2 * (1 + len(v3.ARMS))
    assert experiments[:2] == ["+experiment=[headline_v3_sft,headline_v3_smoke]",
                               "+experiment=[headline_v3_ce,headline_v3_smoke]"]
    assert all("headline_v2" not in e for e in experiments)
    assert "tracking.group=headline_v3_polychromic" in calls[4]


def test_from_tables_is_only_for_a_report_rewrite(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:  # before any run
        recipe.main(["--smoke", "--from-tables", "--seeds", "1,2", "--out", str(tmp_path)],
                    REPO, "c", V3)
    assert stop.value.code == 2 and not any(tmp_path.iterdir())
    assert "pass it with --report-only" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess-sized end to end (about 2 min); runs in make test-slow
def test_smoke_recipe_end_to_end(tmp_path: Path) -> None:
    import mlflow

    out = tmp_path / "out"
    assert recipe.main(["--smoke", "--seeds", "1,2", "--out", str(out)], REPO, "test", V3) == 0
    report = (out / V3.report_name).read_text(encoding="utf-8")
    launch = v2.Launch.load(out / V3.launch_file)
    assert launch.design == "headline_v3" and len(launch.runs) == 2 * (1 + len(v3.ARMS))
    client = mlflow.MlflowClient(tracking_uri=launch.tracking_uri)
    folder = out / "headline_v3_files"
    runs = {r["run_id"]: r for r in csv.DictReader((folder / "runs.csv").open())}
    scores = list(csv.DictReader((folder / "per_prompt.csv").open()))
    for ref in launch.runs:
        run = client.get_run(ref.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["experiment"].startswith("headline_v3")
        history = client.get_metric_history(ref.run_id, "train/differs_from_pass1")
        logged = runs[ref.run_id]["differs_from_pass1"]
        if ref.arm in ("grpo", "passk", "polychromic"):
            assert history and float(logged) == pytest.approx(
                np.mean([m.value for m in history]), abs=1e-5)
        else:
            assert not history and logged == ""
        local = client.download_artifacts(ref.run_id, "eval/generations.jsonl", str(tmp_path))
        gens = [json.loads(line) for line in Path(local).read_text().splitlines() if line]
        mine = {r["prompt_id"]: float(r["pass@16"]) for r in scores if r["run_id"] == ref.run_id}
        assert mine == {str(g["id"]): pytest.approx(g["scores"]["pass@16"], abs=1e-6)
                        for g in gens}
    # the report again, from the two tables alone, without the store
    (out / "mlflow.db").rename(tmp_path / "moved.db")
    assert recipe.main(["--report-only", "--from-tables", "--out", str(out)], REPO, "test",
                       V3) == 0
    assert (out / V3.report_name).read_text(encoding="utf-8") == report
