"""``polylora plan`` on the synthetic pilot of test_compare (real MLflow sqlite store)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import pytest
from report.test_compare import SCORES, SEEDS, diff_table, log_synthetic_runs

from polylora.cli.main import main
from polylora.stats import intervals, power


@pytest.fixture(scope="module")
def pilot(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield log_synthetic_runs(mlflow_uri, tmp_path_factory.mktemp("plan"))


def test_plan_prints_the_pilot_mde_and_designs_that_reach_the_target(
    pilot: str, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["plan", "--experiment", pilot, "--tracking-uri", mlflow_uri,
               "--baseline", "baseline", "--candidate", "polychromic_0.1", "--target", "0.03",
               "--samples", "10,20", "--pilot-samples", "10"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Plan for pass@10" in out  # the runs' compare.primary
    cd = intervals.crossed_difference(diff_table("polychromic_0.1", "pass@10"))
    mde = power.mde(cd.se, cd.df)
    assert f"this design can detect |Δ| ≥ {mde:.4f} pass@10" in out
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|$", out,
                      re.MULTILINE)
    assert rows and all(float(r[3]) <= 0.03 for r in rows)
    first = tuple(int(x) for x in rows[0][:3])
    vc = cd.components
    scale = 10 / first[2]  # residual variance scales with pilot samples / samples
    se = math.sqrt(vc.variance_of_mean(first[0], first[1], scale))
    df = power.design_df(vc, first[0], first[1], scale)
    assert float(rows[0][3]) == pytest.approx(power.mde(se, df), abs=1e-4)
    assert len(SEEDS) == 3 and SCORES  # the pilot: 3 seeds × 24 prompts


def test_plan_needs_a_metric_target_and_two_groups(
    pilot: str, mlflow_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "--experiment", pilot, "--tracking-uri", mlflow_uri,
                 "--target", "0", "--candidate", "polychromic_0.1"]) == 2
    assert "--target must be > 0" in capsys.readouterr().err
    assert main(["plan", "--experiment", pilot, "--tracking-uri", mlflow_uri,
                 "--target", "0.05"]) == 2
    assert "pass --candidate, one of" in capsys.readouterr().err
